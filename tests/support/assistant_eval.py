"""Score the offline ``codex assistant`` on the everyday questions of ``tests/fixtures/assistant_eval.yaml``.

A question passes when the answer's first source is the expected one and the answer text
contains every expected phrase. Print the score and each question's verdict with
``python -m tests.support.assistant_eval`` (``-v`` adds the sources cited; ``--cases
tests/fixtures/assistant_eval_unseen.yaml`` scores the questions it was not tuned on).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "assistant_eval.yaml"
UNSEEN = FIXTURE.with_name("assistant_eval_unseen.yaml")  # questions the ranking was not tuned on; no bar
PASS_RATIO = 0.9  # the bar: 18 of 20

# question -> (answer text, cited sources in order)
Answerer = Callable[[str], tuple[str, list[str]]]


@dataclass(frozen=True, slots=True)
class Case:
    id: str
    question: str
    sources: tuple[str, ...]
    expect: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Verdict:
    case: Case
    cited: tuple[str, ...]
    missing: tuple[str, ...]

    @property
    def source_ok(self) -> bool:
        return bool(self.cited) and any(cites(self.cited[0], want) for want in self.case.sources)

    @property
    def passed(self) -> bool:
        return self.source_ok and not self.missing


def load_cases(path: Path = FIXTURE) -> list[Case]:
    cases = []
    for raw in yaml.safe_load(path.read_text(encoding="utf-8")):
        sources = raw["source"] if isinstance(raw["source"], list) else [raw["source"]]
        cases.append(Case(raw["id"], raw["question"], tuple(sources), tuple(raw.get("expect") or ())))
    return cases


def cites(cited: str, want: str) -> bool:
    """``want`` without an anchor names a whole page (or help topic): any of its sections counts."""
    return cited == want or ("#" not in want and cited.split("#", 1)[0] == want)


def required(total: int) -> int:
    return math.ceil(PASS_RATIO * total)


def default_answerer(question: str) -> tuple[str, list[str]]:
    from tunnel_core.codex.answer import compose

    answer = compose(question)
    return answer.render(), [s.cite for s in answer.sources]


def evaluate(cases: Sequence[Case], answer: Answerer = default_answerer) -> list[Verdict]:
    verdicts = []
    for case in cases:
        text, cited = answer(case.question)
        low = text.lower()
        missing = tuple(p for p in case.expect if p.lower() not in low)
        verdicts.append(Verdict(case, tuple(cited), missing))
    return verdicts


def report(verdicts: Sequence[Verdict], *, verbose: bool = False) -> str:
    lines = []
    for v in verdicts:
        first = v.cited[0] if v.cited else "(none)"
        line = f"{'PASS' if v.passed else 'FAIL'}  {v.case.id:<24} first={first}"
        if not v.source_ok:
            line += f"  want={' | '.join(v.case.sources)}"
        if v.missing:
            line += f"  missing={list(v.missing)}"
        lines.append(line)
        if verbose:
            lines.append(f"      Q: {v.case.question}")
            lines += [f"      {n}. {c}" for n, c in enumerate(v.cited, 1)]
    passed = sum(v.passed for v in verdicts)
    lines.append(f"score {passed}/{len(verdicts)} (required {required(len(verdicts))})")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=Path, default=FIXTURE)
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    verdicts = evaluate(load_cases(args.cases))
    print(report(verdicts, verbose=args.verbose))
    return 0 if sum(v.passed for v in verdicts) >= required(len(verdicts)) else 1


if __name__ == "__main__":
    sys.exit(main())
