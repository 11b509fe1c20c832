"""Offline knowledge base: keyword retrieval over the docs, the help topics and the skill references.

Documents are split into sections at Markdown headings (a help topic is one section per
blank-line-separated block of a few paragraphs). A query is scored against every section
with a BM25-style weight of its terms, headings counting double; the best few excerpts
feed ``codex assistant`` (as context for the model) and its offline answer.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import tunnel_core
from tunnel_core.ops.topic_files import TOPIC_DIR, topic_names

EXCERPT_CHARS = 1200
_WORD = re.compile(r"[a-z0-9][a-z0-9_./:-]*[a-z0-9]|[a-z0-9]")
_HEADING = re.compile(r"^(#{1,4})\s+(.+?)\s*#*\s*$")
_SHORT_OK = frozenset({"id", "ui", "mcp", "url", "key", "tls", "cli", "api", "dcr", "rm", "ca", "ip", "os"})
_STOP = frozenset("""a an and are as at be but by can do does for from had has have how i if in into is it its me
my no not of on or our so that the their then there these they this to was we what when where which who why will
with you your use using used want need get set should would could about after before any all more most just also
than them other some such only own same very""".split())


def docs_dir() -> Path | None:
    """The user docs: shipped in the wheel (``tunnel_core/_bundle/docs``) or the checkout's ``docs/``."""
    package = Path(tunnel_core.__file__).resolve().parent
    for candidate in (package / "_bundle" / "docs", package.parent / "docs"):
        if candidate.is_dir():
            return candidate
    return None


def skill_references_dir() -> Path | None:
    from tunnel_core.codex.bundle import SKILL_NAME, source_root
    from tunnel_core.errors import ConfigError

    try:
        path = source_root("skills") / SKILL_NAME / "references"
    except ConfigError:
        return None
    return path if path.is_dir() else None


def terms(text: str) -> list[str]:
    """Lowercased words without stopwords; short words only when they are domain terms."""
    words = []
    for w in _WORD.findall(text.lower()):
        w = w.strip("./:-")
        if w and w not in _STOP and (len(w) > 2 or w in _SHORT_OK):
            words.append(w)
            if "-" in w or "_" in w or "/" in w or "." in w:  # also index the parts of flags, paths and names
                words.extend(p for p in re.split(r"[-_/.:]+", w) if len(p) > 2 and p not in _STOP)
    return words


@dataclass(frozen=True, slots=True)
class Section:
    source: str  # e.g. docs/quickstart.md, help/doctor, skill/runtimes.md
    heading: str
    text: str
    tf: Counter[str] = field(compare=False, hash=False)
    length: int = 0


@dataclass(frozen=True, slots=True)
class Match:
    source: str
    heading: str
    excerpt: str
    score: float


def _section(source: str, heading: str, body: str) -> Section | None:
    body = body.strip()
    if not body:
        return None
    words = terms(body) + terms(heading) * 2
    return Section(source, heading, body, Counter(words), len(words))


def split_markdown(source: str, text: str) -> list[Section]:
    """One section per heading (levels 1-4); text before the first heading belongs to the title."""
    out: list[Section] = []
    heading, lines = source, list[str]()
    in_code = False
    for line in text.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        m = None if in_code else _HEADING.match(line)
        if m:
            s = _section(source, heading, "\n".join(lines))
            if s:
                out.append(s)
            heading, lines = m.group(2), []
        else:
            lines.append(line)
    s = _section(source, heading, "\n".join(lines))
    if s:
        out.append(s)
    return out


def split_topic(name: str, text: str) -> list[Section]:
    """A help topic: its title line, then blocks of about 1,200 characters cut at blank lines."""
    title, _, body = text.partition("\n")
    out: list[Section] = []
    block: list[str] = []
    size = 0
    for para in re.split(r"\n\s*\n", body):
        if block and size + len(para) > EXCERPT_CHARS:
            s = _section(f"help/{name}", title.strip(), "\n\n".join(block))
            if s:
                out.append(s)
            block, size = [], 0
        block.append(para)
        size += len(para)
    s = _section(f"help/{name}", title.strip(), "\n\n".join(block))
    if s:
        out.append(s)
    return out


@dataclass(slots=True)
class KnowledgeBase:
    sections: list[Section]
    df: Counter[str] = field(default_factory=Counter)
    avg_len: float = 1.0

    def __post_init__(self) -> None:
        for s in self.sections:
            self.df.update(set(s.tf))
        self.avg_len = sum(s.length for s in self.sections) / max(1, len(self.sections))

    def search(self, query: str, limit: int = 3) -> list[Match]:
        """The best ``limit`` sections for ``query`` (none when no query term occurs anywhere)."""
        q = set(terms(query))
        n = len(self.sections)
        scored: list[tuple[float, Section]] = []
        for s in self.sections:
            score = 0.0
            for t in q:
                f = s.tf.get(t, 0)
                if not f:
                    continue
                idf = math.log(1 + (n - self.df[t] + 0.5) / (self.df[t] + 0.5))
                score += idf * f * 2.2 / (f + 1.2 * (0.25 + 0.75 * s.length / self.avg_len))
            if score > 0:
                scored.append((score, s))
        scored.sort(key=lambda p: (-p[0], p[1].source, p[1].heading))
        return [Match(s.source, s.heading, excerpt(s.text), round(score, 3)) for score, s in scored[:limit]]


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    text = text.strip()
    if len(text) <= limit:
        return text
    cut = text.rfind("\n", 0, limit)
    return text[: cut if cut > limit // 2 else limit].rstrip() + "\n..."


def build(docs: Path | None, topics: dict[str, str], references: Path | None) -> KnowledgeBase:
    """A knowledge base over the given sources (the tests pass their own)."""
    sections: list[Section] = []
    if docs is not None:
        for p in sorted(docs.rglob("*.md")):
            sections += split_markdown(f"docs/{p.relative_to(docs).as_posix()}", p.read_text(encoding="utf-8"))
    for name, text in sorted(topics.items()):
        sections += split_topic(name, text)
    if references is not None:
        for p in sorted(references.glob("*.md")):
            sections += split_markdown(f"skill/{p.name}", p.read_text(encoding="utf-8"))
    return KnowledgeBase(sections)


@lru_cache(maxsize=1)
def default_knowledge() -> KnowledgeBase:
    """The knowledge base of this installation (built once per process)."""
    topics = {n: (TOPIC_DIR / f"{n}.txt").read_text(encoding="utf-8") for n in topic_names()}
    return build(docs_dir(), topics, skill_references_dir())


def context_block(matches: list[Match]) -> str:
    """The excerpts as injected into an assistant thread (one labelled block per match)."""
    if not matches:
        return "knowledge.matches: none (answer from general tunnel-client knowledge and say so)"
    lines = [f"knowledge.matches: {len(matches)} excerpts from the tunnel-client docs and help topics"]
    for n, m in enumerate(matches, 1):
        lines += [f"knowledge.match.{n}.path: {m.source}", f"knowledge.match.{n}.heading: {m.heading}",
                  f"knowledge.match.{n}.excerpt_begin", m.excerpt, f"knowledge.match.{n}.excerpt_end"]
    return "\n".join(lines)


def offline_answer(question: str, kb: KnowledgeBase | None = None, limit: int = 3) -> str:
    """What ``codex assistant`` prints when Codex cannot answer: the best excerpts, labelled by source."""
    matches = (kb or default_knowledge()).search(question, limit)
    if not matches:
        return ("No passage of the tunnel-client docs or help topics matches that question.\n"
                "Try: tunnel-client help (topics), tunnel-client help quickstart, tunnel-client doctor --explain")
    out = []
    for m in matches:
        out += [f"## {m.heading}  [{m.source}]", "", m.excerpt, ""]
    return "\n".join(out).rstrip() + "\n"
