"""Offline knowledge-base retrieval: splitting, ranking, the injected context block, the offline answer."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunnel_core.codex.knowledge import (
    build,
    context_block,
    default_knowledge,
    offline_answer,
    split_markdown,
    terms,
)


@pytest.fixture
def kb(tmp_path: Path):  # type: ignore[no-untyped-def]
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "runtimes.md").write_text(
        "# Runtimes\n\nIntro.\n\n## Connect\n\nUse `tunnel-client runtimes connect --alias A --mcp-command CMD`.\n\n"
        "## Stop\n\nUse runtimes stop to end a runtime.\n")
    (docs / "oauth.md").write_text("# OAuth\n\nProtected resource metadata and DCR.\n```\n# not a heading\n```\n")
    return build(docs, {"doctor": "doctor: checks\n\nCHECK lines and RESULT ok.\n\nmcp_command_executable."}, None)


def test_terms_keep_domain_words_and_split_flags() -> None:
    words = terms("How do I use --mcp-command with the UI and an id?")
    assert {"mcp", "command", "mcp-command", "ui", "id"} <= set(words)
    assert "the" not in words and "how" not in words


def test_headings_split_sections_but_not_code() -> None:
    sections = split_markdown("docs/x.md", "# A\none\n```\n# code\n```\n## B\ntwo\n")
    assert [s.heading for s in sections] == ["A", "B"]


def test_ranking_prefers_the_matching_section(kb) -> None:  # type: ignore[no-untyped-def]
    matches = kb.search("how do I connect with --mcp-command")
    assert (matches[0].source, matches[0].heading) == ("docs/runtimes.md", "Connect")
    assert kb.search("doctor RESULT")[0].source == "help/doctor"
    assert kb.search("zzzz qqqq") == []


def test_context_block_labels_each_excerpt(kb) -> None:  # type: ignore[no-untyped-def]
    block = context_block(kb.search("stop a runtime", limit=2))
    assert block.startswith("knowledge.matches: ")
    assert "knowledge.match.1.path: docs/runtimes.md" in block and "knowledge.match.1.excerpt_end" in block
    assert context_block([]).startswith("knowledge.matches: none")


def test_offline_answer_over_the_shipped_docs() -> None:
    answer = offline_answer("how do I install the codex plugin?")
    assert answer.startswith("## ") and "codex plugin install" in answer
    assert "No passage" in offline_answer("zzzzqqq", default_knowledge())
