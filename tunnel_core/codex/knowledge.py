"""The assistant's knowledge base: the user docs, the help topics and the skill references, ranked.

Sections come from :mod:`tunnel_core.codex.passages`, ranking from
:mod:`tunnel_core.codex.ranking`. Sources weigh differently: the docs and help topics are
written for the person asking; the skill references are written for the model and change
with the tool catalogue, so they rank lower, as do "differences from the reference" sections
and the docs index page, which answer no task. Troubleshooting pages are marked, so a
question that describes a symptom prefers them.

The same ranked sections feed both faces of ``codex assistant``: the offline answer
(:mod:`tunnel_core.codex.answer`) and the context injected into a Codex thread
(:func:`context_block`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import tunnel_core
from tunnel_core.codex.passages import Section, split_markdown, split_topic
from tunnel_core.codex.ranking import Fields, Index
from tunnel_core.codex.vocabulary import is_symptom, terms, tokens
from tunnel_core.ops.topic_files import topic_names, topic_text

SKILL_NAME = "tunnel-client"  # = bundle.SKILL_NAME (a test keeps them equal)
EXCERPT_CHARS = 1500
CONTEXT_MATCHES = 4
CANDIDATES = 12  # sections scored before cross-references are counted
LINK_SHARE = 0.3
SHOWS_COMMAND = 2.0  # a section showing the command the question names: near-decisive
QUOTED_TEXT = 1.5  # a section containing the message the question quotes

PRIOR_SKILL = 0.6
PRIOR_INDEX_PAGE = 0.5
PRIOR_DIFFERENCES = 0.4
_DIFFERENCES = re.compile(r"differ|reference implementation", re.IGNORECASE)


def _shipped(name: str) -> Path | None:
    """A directory shipped beside the code: in the wheel (``tunnel_core/_bundle/NAME``) or the checkout."""
    package = Path(tunnel_core.__file__).resolve().parent
    for candidate in (package / "_bundle" / name, package.parent / name):
        if candidate.is_dir():
            return candidate
    return None


def docs_dir() -> Path | None:
    """The user docs: shipped in the wheel (``tunnel_core/_bundle/docs``) or the checkout's ``docs/``."""
    return _shipped("docs")


def skill_references_dir() -> Path | None:
    """The plugin skill's references (found like ``bundle.source_root``, without importing the bundle models)."""
    skills = _shipped("skills")
    path = skills / SKILL_NAME / "references" if skills is not None else None
    return path if path is not None and path.is_dir() else None


@dataclass(frozen=True, slots=True)
class Match:
    section: Section
    score: float

    @property
    def cite(self) -> str:
        return self.section.cite

    @property
    def heading(self) -> str:
        return self.section.heading


def _troubleshooting(cite: str) -> bool:
    return "troubleshooting" in cite.split("#", 1)[0]


class KnowledgeBase:
    """The sections and their index."""

    def __init__(self, sections: list[Section]) -> None:
        self.sections = sections
        self._by_cite = {s.cite: n for n, s in enumerate(sections)}
        self._shows = [frozenset(sub for c in s.commands for sub in subcommands(c.command)) for s in sections]
        self._subcommands = frozenset().union(*self._shows)
        self.index = Index.build(
            Fields(s.heading, s.context, s.text, " ".join(c.command for c in s.commands), s.prior,
                   troubleshooting=_troubleshooting(s.source))
            for s in sections)

    def search(self, query: str, limit: int = 3) -> list[Match]:
        """The best ``limit`` sections for ``query`` (none when no query word occurs anywhere).

        Facts of the docs themselves re-rank the index's candidates. A question that names a
        command ("with dev proxy", "tunnel-client doctor") prefers the sections that show it; one
        that quotes a message ("unknown key") prefers the sections that contain it word for word.
        A candidate that sends the reader to another candidate ("for history, scrape /metrics
        ... (observability.md#metrics)") lends it a share of its score, so the page that holds
        the full answer can outrank the pointer.
        """
        scores = dict(self.index.search(query, max(limit, CANDIDATES)))
        named = self.named_subcommands(query)
        quoted = [q.lower() for q in _QUOTED.findall(query) if q.strip()]
        for p in scores:
            if named and self._shows[p] & named:
                scores[p] *= SHOWS_COMMAND
            text = self.sections[p].text.lower()
            if quoted and any(q in text for q in quoted):
                scores[p] *= QUOTED_TEXT  # a message the user pasted, found word for word
        lent = dict.fromkeys(scores, 0.0)
        symptom = is_symptom(query)
        for pos, score in scores.items():
            for target in self.sections[pos].links:
                to = self._by_cite.get(target)
                # A pointer to a troubleshooting entry ("if it fails, see ...") is no answer to a task.
                if to is not None and to in scores and to != pos and (symptom or not _troubleshooting(target)):
                    lent[to] = max(lent[to], LINK_SHARE * score)
        ranked = sorted(scores, key=lambda p: (-(scores[p] + lent[p]), p))[:limit]
        return [Match(self.sections[p], round(scores[p] + lent[p], 4)) for p in ranked]

    def named_subcommands(self, query: str) -> frozenset[str]:
        """The tunnel-client subcommands the question names, in its own words and any order.

        "create a new tunnel" names ``admin tunnels create`` (the family word of a three-word
        command may be left out); "with dev proxy" names ``dev proxy``; a one-word command
        ("run", "health" are ordinary English) only right after the program's name.
        """
        asked = set(terms(query)) | {t for t, _ in tokens(query, question=True)}
        lowered = " ".join(_QUESTION_WORD.findall(query.lower()))
        named = set()
        for sub in self._subcommands:
            words = sub.split()
            if len(words) == 1:
                if re.search(rf"\btunnel-client {re.escape(sub)}\b", lowered):
                    named.add(sub)
                continue
            needed = [terms(w)[:1] for w in (words[1:] if len(words) == 3 else words)]
            if all(t and t[0] in asked for t in needed):
                named.add(sub)
        return frozenset(named)


_QUESTION_WORD = re.compile(r"[a-z][a-z0-9-]*")
_QUOTED = re.compile(r"[\"“`]([^\"”`]{3,200})[\"”`]")
_SUBCOMMAND_WORD = re.compile(r"[a-z][a-z-]*")


def subcommands(command: str) -> tuple[str, ...]:
    """The subcommand paths a command line runs, up to three words, each prefix of two or more:
    ``tunnel-client admin --json tunnels create --name X`` -> ``admin tunnels``, ``admin tunnels
    create``; ``tunnel-client doctor --profile p`` -> ``doctor``."""
    words = command.split()
    if not words or words[0] != "tunnel-client":
        return ()
    path: list[str] = []
    for w in words[1:]:
        if w == "--json" and path:  # a switch between the words of a path
            continue
        if len(path) == 3 or not _SUBCOMMAND_WORD.fullmatch(w):
            break
        path.append(w)
    if len(path) == 1:
        return (path[0],)
    return tuple(" ".join(path[:n]) for n in range(2, len(path) + 1))


def _prior(section: Section, base: float) -> Section:
    p = base * (PRIOR_DIFFERENCES if _DIFFERENCES.search(section.heading) else 1.0)
    return section if p == 1.0 else replace(section, prior=p)


def build(docs: Path | None, topics: dict[str, str], references: Path | None) -> KnowledgeBase:
    """A knowledge base over the given sources (the tests pass their own)."""
    sections: list[Section] = []
    if docs is not None:
        for p in sorted(docs.rglob("*.md")):
            rel = p.relative_to(docs).as_posix()
            base = PRIOR_INDEX_PAGE if rel == "README.md" else 1.0
            sections += [_prior(s, base) for s in split_markdown(f"docs/{rel}", p.read_text(encoding="utf-8"))]
    for name, text in sorted(topics.items()):
        sections += split_topic(name, text)
    if references is not None:
        for p in sorted(references.glob("*.md")):
            text = p.read_text(encoding="utf-8")
            sections += [_prior(s, PRIOR_SKILL) for s in split_markdown(f"skill/{p.name}", text, "skill")]
    return KnowledgeBase(sections)


@lru_cache(maxsize=1)
def default_knowledge() -> KnowledgeBase:
    """The knowledge base of this installation (built once per process)."""
    topics = {n: topic_text(n) or "" for n in topic_names()}
    return build(docs_dir(), topics, skill_references_dir())


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    text = text.strip()
    if len(text) <= limit:
        return text
    cut = text.rfind("\n", 0, limit)
    return text[: cut if cut > limit // 2 else limit].rstrip() + "\n..."


def context_block(matches: list[Match]) -> str:
    """The ranked sections as injected into an assistant thread (one labelled block per section)."""
    if not matches:
        return "knowledge.matches: none (answer from general tunnel-client knowledge and say so)"
    lines = [f"knowledge.matches: {len(matches)} sections of the tunnel-client docs and help topics, best first; "
             "cite the path of each one you use"]
    for n, m in enumerate(matches, 1):
        where = f"{m.section.context} > {m.heading}" if m.section.context else m.heading
        lines += [f"knowledge.match.{n}.path: {m.cite}", f"knowledge.match.{n}.heading: {where}",
                  f"knowledge.match.{n}.excerpt_begin", excerpt(m.section.text), f"knowledge.match.{n}.excerpt_end"]
    return "\n".join(lines)
