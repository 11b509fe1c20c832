"""The offline answer of ``codex assistant``: composed from the best-ranked sections, not pasted.

An answer has four parts, each taken verbatim from the docs so it stays true to them:

1. a short direct answer: the sentences of the best section that say most about the
   question (a troubleshooting entry's ``Cause:`` and ``Fix:`` first), with the example
   lines a chosen sentence introduces ("... in the client's log:");
2. the steps: the best section's numbered procedure when it has one, and the exact
   commands of the best section, then those of runner-up sections that score close to it
   or cover a part of the question the best one does not ("a proxy *and* a private CA");
3. the settings: rows of those sections' flag tables that match the question;
4. the sources: the sections consulted, cited as ``docs/PAGE.md#anchor`` or ``help/TOPIC``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from tunnel_core.codex.knowledge import KnowledgeBase, Match, default_knowledge
from tunnel_core.codex.passages import Section, Step, prose_units
from tunnel_core.codex.ranking import Concept
from tunnel_core.codex.vocabulary import terms

SOURCES = 3
MAX_STEPS = 6
RUNNER_UP_STEPS = 3
MAX_SETTINGS = 4
SUMMARY_CHARS = 480
EXAMPLE_LINES = 3
EXAMPLE_CHARS = 160
RUNNER_UP = 0.6  # a runner-up section adds its steps when it scores at least this share of the best
DISTINCT_IDF = 1.0  # a question word rarer than this is a part of the question a section may cover

_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z`(\"'])")
_ROW = re.compile(r"^\s*\|(.+)\|\s*$")
_FLAGLIKE = re.compile(r"`(--[\w.-]+[^`]*|[A-Z][A-Z0-9_]{3,})`")
_TROUBLESHOOTING = ("Cause:", "Fix:")


@dataclass(slots=True)
class Answer:
    question: str
    summary: str = ""
    procedure: list[str] = field(default_factory=list)  # the numbered steps of the best section, if any
    steps: list[Step] = field(default_factory=list)
    settings: list[str] = field(default_factory=list)
    sources: list[Match] = field(default_factory=list)

    def render(self) -> str:
        if not self.sources:
            return ("No section of the tunnel-client docs or help topics matches that question.\n"
                    "Try: tunnel-client help (topics), tunnel-client help quickstart, "
                    "tunnel-client doctor --explain\n")
        out = [self.summary, ""] if self.summary else []
        if self.procedure:
            out.append("Steps:")
            out += [f"  {n}. {item}" for n, item in enumerate(self.procedure, 1)]
            out.append("")
        if self.steps:
            out.append("Commands:" if self.procedure else "Steps:")
            out += [f"  $ {s.command}" + (f"    # {s.note}" if s.note else "") for s in self.steps]
            out.append("")
        if self.settings:
            out.append("Settings:")
            out += [f"  {row}" for row in self.settings]
            out.append("")
        out.append("Sources:")
        out += [f"  {n}. {m.cite} ({m.heading})" for n, m in enumerate(self.sources, 1)]
        return "\n".join(out) + "\n"


def compose(question: str, kb: KnowledgeBase | None = None) -> Answer:
    """The composed offline answer to ``question`` (no sources when nothing matches)."""
    kb = kb or default_knowledge()
    matches = kb.search(question, SOURCES)
    answer = Answer(question, sources=matches)
    if not matches:
        return answer
    relevance = {t: w * kb.index.idf(t) for t, w in kb.index.query_weights(question).items()}
    best = matches[0]
    numbered = [u.text for u in prose_units(best.section.text) if u.numbered]
    answer.procedure = numbered if len(numbered) >= 2 else []
    answer.summary = summary(best.section, relevance, skip_numbered=bool(answer.procedure))
    # The parts of the question: its distinctive words (a concept's first term is the word itself).
    parts = [c for c in kb.index.concepts(question) if kb.index.idf(next(iter(c.terms))) >= DISTINCT_IDF]
    covered = _covered(best.section, parts)
    contributing = [best]
    for m in matches[1:]:
        adds = _covered(m.section, parts) - covered
        if m.score >= RUNNER_UP * best.score or adds:
            contributing.append(m)
            covered |= adds
    seen: set[str] = set()
    for m in contributing:
        for step in m.section.commands[: MAX_STEPS if m is best else RUNNER_UP_STEPS]:
            if step.command not in seen and len(answer.steps) < MAX_STEPS:
                seen.add(step.command)
                answer.steps.append(step)
    answer.settings = settings([m.section for m in contributing], relevance)
    return answer


def offline_answer(question: str, kb: KnowledgeBase | None = None) -> str:
    """What ``codex assistant`` prints when it answers without Codex."""
    return compose(question, kb).render()


def _covered(section: Section, concepts: list[Concept]) -> set[int]:
    """Which of ``concepts`` (by position) the section's heading or text mentions."""
    words = set(terms(f"{section.heading}\n{section.text}"))
    return {n for n, c in enumerate(concepts) if words & c.terms.keys()}


def _weight(text: str, relevance: dict[str, float]) -> float:
    return sum(relevance.get(t, 0.0) for t in set(terms(text)))


def summary(section: Section, relevance: dict[str, float], *, skip_numbered: bool = False) -> str:
    """The sentences of ``section`` that say most about the question, in document order."""
    sentences: list[tuple[str, tuple[str, ...]]] = []  # (sentence, example lines it introduces)
    for unit in prose_units(section.text):
        if skip_numbered and unit.numbered:
            continue  # shown as the procedure
        parts = [p.strip() for p in _SENTENCE.split(unit.text) if p.strip()]
        sentences += [(p, unit.example if n == len(parts) - 1 else ()) for n, p in enumerate(parts)]
    if not sentences:
        return ""
    # A troubleshooting entry's Cause: and Fix: are the answer, whatever their length.
    chosen = [pos for pos, (sentence, _) in enumerate(sentences) if sentence.startswith(_TROUBLESHOOTING)]
    size = sum(len(sentences[pos][0]) for pos in chosen)
    room = 1 if chosen else 3
    scored = [(_weight(s, relevance) + (1.0 if pos == 0 else 0.0), pos) for pos, (s, _) in enumerate(sentences)]
    for score, pos in sorted(scored, key=lambda p: (-p[0], p[1])):
        if room == 0:
            break
        if pos in chosen or score <= 0 or (chosen and size + len(sentences[pos][0]) > SUMMARY_CHARS):
            continue
        chosen.append(pos)
        size += len(sentences[pos][0])
        room -= 1
    blocks: list[str] = []
    prose: list[str] = []
    for pos in sorted(chosen or [0]):
        sentence, example = sentences[pos]
        prose.append(sentence)
        if example:
            blocks += [" ".join(prose), "\n".join(f"    {_clip(line.strip())}" for line in example[:EXAMPLE_LINES])]
            prose = []
    if prose:
        blocks.append(" ".join(prose))
    return "\n".join(blocks)


def _clip(line: str) -> str:
    return line if len(line) <= EXAMPLE_CHARS else line[: EXAMPLE_CHARS - 3].rstrip() + "..."


def settings(sections: list[Section], relevance: dict[str, float]) -> list[str]:
    """Rows of flag tables that match the question, as ``flag | meaning`` lines."""
    rows: list[tuple[float, int, str]] = []
    for section in sections:
        for line in section.text.splitlines():
            m = _ROW.match(line)
            if not m or set(m.group(1).strip()) <= set("-: |"):
                continue
            cells = [c.strip() for c in m.group(1).split("|")]
            if not any(_FLAGLIKE.search(c) for c in cells[:2]):
                continue
            score = _weight(line, relevance)
            if score > 0:
                rows.append((score, len(rows), " | ".join(c for c in cells if c).replace("`", "")))
    best = sorted(rows, key=lambda r: (-r[0], r[1]))[:MAX_SETTINGS]
    return [text for _, _, text in sorted(best, key=lambda r: r[1])]
