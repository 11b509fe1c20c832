"""The offline assistant's evaluation: everyday questions, the source each must cite first, what it must say.

The score is printed (``pytest -s``, or ``python -m tests.support.assistant_eval``); the test
fails below 90 % and lists the questions that failed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.assistant_eval import FIXTURE, UNSEEN, Case, cites, evaluate, load_cases, report, required
from tunnel_core.codex.knowledge import default_knowledge


def test_the_offline_assistant_answers_the_everyday_questions() -> None:
    cases = load_cases()
    assert len(cases) >= 20 and len({c.id for c in cases}) == len(cases)
    verdicts = evaluate(cases)
    print("\n" + report(verdicts))
    passed = sum(v.passed for v in verdicts)
    assert passed >= required(len(cases)), "failing questions:\n" + report([v for v in verdicts if not v.passed])


@pytest.mark.parametrize("fixture", [FIXTURE, UNSEEN], ids=["eval", "unseen"])
def test_every_expected_source_exists(fixture: Path) -> None:
    """A renamed heading fails here by name, not as a quiet drop in the score."""
    sections = default_knowledge().sections
    known = {s.cite for s in sections} | {s.source for s in sections}
    missing = [(c.id, want) for c in load_cases(fixture) for want in c.sources if want not in known]
    assert not missing, f"expected sources that no longer exist: {missing}"


@pytest.mark.parametrize("fixture", [FIXTURE, UNSEEN], ids=["eval", "unseen"])
def test_expected_sources_are_user_docs_not_skills(fixture: Path) -> None:
    """Skills are written for the model and change with the tools; the evaluation must not lean on them."""
    assert not [c.id for c in load_cases(fixture) for want in c.sources if not want.startswith(("docs/", "help/"))]


def test_the_score_counts_a_wrong_first_source_and_a_missing_phrase_as_failures() -> None:
    case = Case("x", "q?", ("docs/a.md#b",), ("tunnel-client run",))
    answers = iter([
        ("$ tunnel-client run", ["docs/a.md#b", "docs/c.md#d"]),
        ("$ tunnel-client run", ["docs/c.md#d", "docs/a.md#b"]),  # the right source, but second
        ("nothing useful", ["docs/a.md#b"]),
    ])
    right, wrong_source, wrong_text = evaluate([case] * 3, lambda question: next(answers))
    assert right.passed and not wrong_source.passed and not wrong_text.passed
    assert wrong_text.missing == ("tunnel-client run",)
    assert "score 1/3 (required 3)" in report([right, wrong_source, wrong_text])


def test_a_page_without_an_anchor_accepts_any_of_its_sections() -> None:
    assert cites("docs/oauth.md#discovery", "docs/oauth.md")
    assert cites("help/plugin", "help/plugin")
    assert not cites("docs/oauth.md#discovery", "docs/oauth.md#who-does-what")
    assert not cites("docs/oauth-more.md#x", "docs/oauth.md")
