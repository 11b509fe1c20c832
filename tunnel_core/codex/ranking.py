"""Ranked retrieval for the assistant: BM25F over short fielded passages.

A passage has four fields: its heading, its context (page title and parent headings), its
body and the commands it shows. Each field has its own length normalisation and boost
(BM25F), so a word in the heading counts more than one in the body, and a long table cannot
drown a heading.

A question becomes concepts: each of its words with its thesaurus expansions and, for a
compound, its parts (:mod:`vocabulary`). A concept scores once, through its best-matching
alternative, so synonyms are alternatives and not extra evidence. The sum is then scaled by:

- coverage: the share of the question's concepts the passage matches (one rare word cannot
  carry an unrelated passage);
- heading match: how much of the passage's heading the question names;
- the page: whether the question names the page (or parent section) the passage is in;
- proximity: pairs of question words adjacent in the heading or the body;
- intent: a question that describes a symptom prefers troubleshooting passages;
- the passage's prior, set by its source.

Pure and deterministic: no I/O, no randomness, ties broken by insertion order.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from tunnel_core.codex.vocabulary import EXPANSIONS, is_symptom, terms, tokens

K1 = 1.2
B = 0.75
HEADING_BOOST = 2.0
CONTEXT_BOOST = 0.5
COMMANDS_BOOST = 2.0
EXPANSION_WEIGHT = 0.35
PART_WEIGHT = 0.5
COVERAGE_FLOOR = 0.5
HEADING_MATCH = 1.0
PAGE_NAMED = 1.3
NAMED_IDF = 1.0  # a question word this common says nothing about which page
SYMPTOM_BOOST = 1.5
HEADING_PAIR = 0.25
BODY_PAIR = 0.1


@dataclass(frozen=True, slots=True)
class Fields:
    """One passage as the index sees it."""

    heading: str
    context: str  # page title and parent headings
    body: str
    commands: str = ""  # the exact commands the passage shows (also part of the body)
    prior: float = 1.0
    troubleshooting: bool = False  # from a page that starts from symptoms


# (field, boost, b): the heading is short and decisive, so it has its own saturation and a boost;
# the context (page title, parent headings) is shared by many passages and weighs less; a word
# of the question in a command means the passage shows how to do it.
_FIELDS = (("heading", HEADING_BOOST, 0.5), ("context", CONTEXT_BOOST, 0.5), ("body", 1.0, B),
           ("commands", COMMANDS_BOOST, 0.5))
@dataclass(slots=True)
class _Entry:
    tf: dict[str, Counter[str]]
    length: dict[str, int]
    heading_pairs: frozenset[str]  # adjacent terms, for proximity matches
    body_pairs: frozenset[str]
    prior: float
    troubleshooting: bool


@dataclass(frozen=True, slots=True)
class Concept:
    """One word of the question and its thesaurus expansions: ``{term: weight}``, the word itself at 1."""

    terms: dict[str, float]


def _pairs(words: Sequence[str], window: int = 1) -> frozenset[str]:
    """Unordered pairs of distinct terms at most ``window`` terms apart, as ``"a b"`` with a < b."""
    return frozenset(f"{a} {b}" if a < b else f"{b} {a}"
                     for i, a in enumerate(words) for b in words[i + 1 : i + 1 + window] if a != b)


@dataclass(slots=True)
class Index:
    """BM25F over passages given as :class:`Fields`; ``search`` returns (position, score) pairs."""

    entries: list[_Entry] = field(default_factory=list)
    df: Counter[str] = field(default_factory=Counter)
    avg_len: dict[str, float] = field(default_factory=dict)

    @classmethod
    def build(cls, passages: Iterable[Fields]) -> Index:
        index = cls()
        for p in passages:
            toks = {name: tokens(getattr(p, name)) for name, _, _ in _FIELDS}
            words = {name: [t for t, _ in ts] for name, ts in toks.items()}
            index.entries.append(_Entry(
                {name: Counter(ws) for name, ws in words.items()},
                {name: sum(1 for _, part in ts if not part) for name, ts in toks.items()},  # an identifier is one word
                _pairs(words["heading"]), _pairs(words["body"]), p.prior, p.troubleshooting))
            index.df.update(set().union(*words.values()))
        n = max(1, len(index.entries))
        index.avg_len = {name: max(1.0, sum(e.length[name] for e in index.entries) / n) for name, _, _ in _FIELDS}
        return index

    def idf(self, term: str) -> float:
        n, df = len(self.entries), self.df.get(term, 0)
        return math.log(1 + (n - df + 0.5) / (df + 0.5))

    def concepts(self, query: str) -> list[Concept]:
        """One concept per distinct word of ``query``: the word, its thesaurus expansions and, for a
        compound (``--mcp.client-cert``), its parts as looser alternatives. Terms that occur nowhere
        are dropped."""
        grouped: dict[str, dict[str, float]] = {}
        head = ""
        for t, part in tokens(query, question=True):
            if not part:
                head = t
                grouped.setdefault(t, {t: 1.0})
            elif head and t not in grouped:
                grouped[head].setdefault(t, PART_WEIGHT)
        out = []
        for t, alts in grouped.items():
            for x in sorted(EXPANSIONS.get(t, ())):
                alts.setdefault(x, EXPANSION_WEIGHT)
            kept = {x: w for x, w in alts.items() if x in self.df}
            if kept:
                out.append(Concept(kept))
        return out

    def query_weights(self, query: str) -> dict[str, float]:
        """Every term the query looks for, with its weight (the highest among the concepts naming it)."""
        weights: dict[str, float] = {}
        for c in self.concepts(query):
            for t, w in c.terms.items():
                weights[t] = max(w, weights.get(t, 0.0))
        return weights

    def search(self, query: str, limit: int = 5) -> list[tuple[int, float]]:
        concepts = self.concepts(query)
        if not concepts:
            return []
        idf = {t: self.idf(t) for c in concepts for t in c.terms}
        worth = [max(w * idf[t] for t, w in c.terms.items()) for c in concepts]
        asked_pairs = _pairs(terms(query), window=2)  # "create a new tunnel" pairs create with tunnel
        weights = self.query_weights(query)
        symptom = is_symptom(query)
        scored: list[tuple[float, int]] = []
        for pos, e in enumerate(self.entries):
            per_term = self._term_scores(e, idf)
            if not per_term:
                continue
            score = matched = 0.0
            for c, full in zip(concepts, worth, strict=True):
                # A concept counts once, through its best-matching word: synonyms are alternatives.
                best = max(((w * per_term[t], w * idf[t]) for t, w in c.terms.items() if t in per_term), default=None)
                if best is not None:
                    score += best[0]
                    matched += min(best[1], full)
            if score <= 0:
                continue
            share = matched / sum(worth)  # coverage: one rare word cannot carry an unrelated passage
            # Proximity: words of the question next to each other in the heading, or in the body.
            near = 1 + HEADING_PAIR * min(3, len(e.heading_pairs & asked_pairs)) \
                + BODY_PAIR * min(3, len(e.body_pairs & asked_pairs))
            asked = 1 + HEADING_MATCH * self._asked(e.tf["heading"], weights)
            # The question names the page (or parent section) this passage is in.
            named = any(weights.get(t) == 1.0 and self.idf(t) >= NAMED_IDF for t in e.tf["context"])
            intent = SYMPTOM_BOOST if symptom and e.troubleshooting else 1.0
            score *= e.prior * (COVERAGE_FLOOR + share) * asked * near * intent * (PAGE_NAMED if named else 1.0)
            scored.append((score, pos))
        scored.sort(key=lambda p: (-p[0], p[1]))
        return [(pos, round(score, 4)) for score, pos in scored[:limit]]

    def _term_scores(self, e: _Entry, idf: dict[str, float]) -> dict[str, float]:
        """BM25F of each query term in one passage, summed over its fields (terms absent: left out)."""
        out: dict[str, float] = {}
        for name, boost, b in _FIELDS:
            tf = e.tf[name]
            norm = K1 * (1 - b + b * e.length[name] / self.avg_len[name])
            for t, w in idf.items():
                f = tf.get(t)
                if f:
                    out[t] = out.get(t, 0.0) + boost * w * f * (K1 + 1) / (f + norm)
        return out

    def _asked(self, field_tf: Counter[str], weights: dict[str, float]) -> float:
        """How much of a heading (or of the page title) the question names: idf-weighted share, 0..1."""
        total = sum(self.idf(t) for t in field_tf)
        return sum(self.idf(t) * weights.get(t, 0.0) for t in field_tf) / total if total else 0.0
