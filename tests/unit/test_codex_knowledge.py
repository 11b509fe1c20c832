"""The assistant's knowledge base: sections and citations, commands, ranking, the composed answer."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from tunnel_core.codex.answer import compose, offline_answer
from tunnel_core.codex.knowledge import KnowledgeBase, build, context_block, default_knowledge, subcommands
from tunnel_core.codex.passages import (
    Section,
    Step,
    markdown_commands,
    prose_units,
    split_markdown,
    split_topic,
)
from tunnel_core.codex.ranking import EXPANSION_WEIGHT
from tunnel_core.codex.vocabulary import is_symptom, stem, terms

RUNTIMES = """# Runtimes

Runtimes run tunnel-client in the background: `tunnel-client run --profile NAME` under a supervisor.

## Keep a runtime running

```sh
tunnel-client runtimes connect --alias docs \\
  --mcp-command "python server.py"   # starts it detached
tunnel-client runtimes status docs
```

Add `--restart on-failure` and a supervisor restarts it when it crashes.

| Flag | Meaning |
|---|---|
| `--restart on-failure` | restart a crashed runtime with backoff |
| `--health-timeout DURATION` | how long connect waits |

## Stop it

Use `tunnel-client runtimes stop docs`; see [the status page](ui.md#status-page) for details.
"""

TROUBLE = """# Troubleshooting

## The caller gets 502

Cause: the relay could not reach the MCP server. Fix: start the server, or read the log:

```
level=ERROR msg="mcp call failed" source=connect
```

Nothing else to see here.
"""

UI = """# Operator UI

## Status page

The status page shows whether the runtime is running and ready, and the 502 errors it relayed.
"""

PROXY = """# Networking

## Proxies

Send everything through a corporate proxy:

```sh
tunnel-client run --http-proxy http://proxy:3128
```

## Private certificate authorities

Trust a private certificate authority with a PEM bundle:

```sh
tunnel-client run --ca-bundle /etc/ssl/corp.pem
```
"""

DOCTOR_TOPIC = """doctor: check a configuration before you start

  tunnel-client doctor --profile NAME              one line per check
  tunnel-client doctor --profile NAME --explain    why each failing check matters

Checks, in order:
  tunnel_id                the tunnel id is well formed
"""


@pytest.fixture
def kb(tmp_path: Path) -> KnowledgeBase:
    docs = tmp_path / "docs"
    docs.mkdir()
    for name, text in (("runtimes.md", RUNTIMES), ("troubleshooting.md", TROUBLE), ("ui.md", UI),
                       ("networking.md", PROXY)):
        (docs / name).write_text(text, encoding="utf-8")
    refs = tmp_path / "refs"
    refs.mkdir()
    (refs / "runtimes.md").write_text(RUNTIMES.replace("# Runtimes", "# Runtime tools"), encoding="utf-8")
    return build(docs, {"doctor": DOCTOR_TOPIC}, refs)


# ---------------------------------------------------------------------------- words


def test_terms_keep_domain_words_stem_inflections_and_split_flags() -> None:
    words = terms("How do I use --mcp-command with the UI and an id? It restarted, restarts, restarting.")
    assert {"mcp", "command", "mcp-command", "ui", "id", "restart"} <= set(words)
    assert "the" not in words and "how" not in words
    assert {stem("restarts"), stem("restarted"), stem("restarting")} == {"restart"}
    assert stem("proxies") == stem("proxy") and stem("stopped") == stem("stop")


def test_the_product_name_and_urls_are_not_split_into_topics() -> None:
    words = terms("tunnel-client run --mcp.server-url https://mcp.internal.example.com/mcp")
    assert "tunnel-client" in words and "tunnel" not in words and "client" not in words
    assert "internal" not in words and "mcp.server-url" in words and "server" in words


def test_a_phrase_is_one_thing_asked_and_both_ways_found_in_text(kb: KnowledgeBase) -> None:
    assert "502" in terms("the caller gets Bad Gateway")  # a passage keeps the words and gains the token
    concepts = kb.index.concepts("bad gateway from the tunnel")
    assert any("502" in c.terms for c in concepts) and not any("bad" in c.terms and c.terms["bad"] == 1.0
                                                                 for c in concepts)
    assert terms("from the command line") == ["cli"]  # not about stdio commands


@pytest.mark.parametrize(("question", "symptom"), [
    ("Why does readyz return 503?", True),
    ("My server keeps crashing", True),
    ("tunnel-client run dies with Address already in use. How do I fix it?", True),
    ("How do I make tunnel-client restart when it crashes?", False),  # a task, not a diagnosis
    ("How do I connect a stdio server?", False),
])
def test_a_question_that_describes_a_problem_is_a_symptom(question: str, symptom: bool) -> None:
    assert is_symptom(question) is symptom


# ---------------------------------------------------------------------------- sections


def test_sections_are_cut_at_headings_not_in_code_and_cited_with_github_anchors() -> None:
    text = "# Page\nintro\n```\n# not a heading\n```\n## `/readyz` answers 503\nx\n### Sub\ny\n## A\nz\n## A\nw\n"
    sections = split_markdown("docs/p.md", text)
    assert [s.cite for s in sections] == ["docs/p.md#page", "docs/p.md#readyz-answers-503", "docs/p.md#sub",
                                          "docs/p.md#a", "docs/p.md#a-1"]
    assert sections[2].context == "Page > /readyz answers 503" and sections[1].heading == "/readyz answers 503"


def test_a_help_topic_is_cut_into_its_blocks() -> None:
    sections = split_topic("doctor", DOCTOR_TOPIC)
    assert [s.heading for s in sections] == ["doctor: check a configuration before you start", "Checks, in order:"]
    assert all(s.cite == "help/doctor" for s in sections)
    assert sections[0].commands == (Step("tunnel-client doctor --profile NAME", "one line per check"),
                                    Step("tunnel-client doctor --profile NAME --explain",
                                         "why each failing check matters"))


def test_commands_come_from_shell_blocks_dollar_lines_and_inline_spans_in_order() -> None:
    text = ("Run `tunnel-client doctor --online` first.\n```sh\nexport KEY=x   # the key\n# a comment\n"
            "tunnel-client run \\\n  --profile p\n```\n```\nMCP URL: http://x\n$ curl -s http://x/readyz\n```\n")
    assert markdown_commands(text) == (Step("tunnel-client doctor --online"), Step("export KEY=x", "the key"),
                                       Step("tunnel-client run \\\n      --profile p"),
                                       Step("curl -s http://x/readyz"))


def test_prose_keeps_an_output_example_a_sentence_introduces_but_not_a_command_block() -> None:
    units = prose_units(TROUBLE.split("## The caller gets 502", 1)[1])
    assert units[0].text.startswith("Cause:") and units[0].example == ('level=ERROR msg="mcp call failed" '
                                                                       'source=connect',)
    units = prose_units("Run this:\n\n```sh\ntunnel-client run\n```\n")
    assert units[0].example == ()  # commands are steps, not an example


def test_subcommand_paths_of_a_command_line() -> None:
    assert subcommands("tunnel-client dev proxy --mcp-command X") == ("dev proxy",)
    assert subcommands("tunnel-client admin --json tunnels create --name X") == ("admin tunnels",
                                                                                "admin tunnels create")
    assert subcommands("tunnel-client doctor --profile p") == ("doctor",)
    assert subcommands("curl -s http://x") == ()


# ---------------------------------------------------------------------------- ranking


def test_ranking_prefers_the_section_whose_heading_the_question_names(kb: KnowledgeBase) -> None:
    assert kb.search("how do I stop it")[0].cite == "docs/runtimes.md#stop-it"
    assert kb.search("zzzz qqqq") == []


def test_a_symptom_prefers_the_troubleshooting_entry(kb: KnowledgeBase) -> None:
    assert kb.search("why do I get 502 errors")[0].cite == "docs/troubleshooting.md#the-caller-gets-502"


def test_the_thesaurus_finds_what_the_docs_call_it_but_the_own_word_counts_more(kb: KnowledgeBase) -> None:
    # Nobody "dies" in these docs; runtimes "crash".
    assert kb.search("my runtime dies, how do I bring it back?")[0].cite == "docs/runtimes.md#keep-a-runtime-running"
    assert kb.index.concepts("dies")[0].terms == {"crash": EXPANSION_WEIGHT}
    crash = kb.index.concepts("crash")[0].terms
    assert crash["crash"] == 1.0 and all(w < 1.0 for t, w in crash.items() if t != "crash")


def test_skill_references_rank_below_the_same_text_in_the_docs(kb: KnowledgeBase) -> None:
    cites = [m.cite for m in kb.search("keep a runtime running in the background", limit=5)]
    assert cites.index("docs/runtimes.md#keep-a-runtime-running") < cites.index("skill/runtimes.md#keep-a-runtime-running")


def test_a_section_that_points_to_another_lends_it_score(kb: KnowledgeBase) -> None:
    unlinked = KnowledgeBase([replace(s, links=()) for s in kb.sections])
    question = "status page running ready"
    pointer = next(s for s in kb.sections if s.cite == "docs/runtimes.md#stop-it")
    assert pointer.links == ("docs/ui.md#status-page",)
    before = {m.cite: m.score for m in unlinked.search(question, limit=5)}
    after = {m.cite: m.score for m in kb.search(question, limit=5)}
    assert after["docs/ui.md#status-page"] > before["docs/ui.md#status-page"]
    assert after["docs/runtimes.md#stop-it"] == before["docs/runtimes.md#stop-it"]


def test_a_question_naming_a_command_prefers_the_sections_that_show_it(kb: KnowledgeBase) -> None:
    assert kb.named_subcommands("what does runtimes status say?") == {"runtimes status"}
    assert kb.named_subcommands("how do I stop the runtime?") == {"runtimes stop"}  # own words, any order
    assert kb.named_subcommands("is it running?") == frozenset()  # "run" alone is English
    assert kb.named_subcommands("what does tunnel-client run do?") == {"run"}
    assert kb.search("how do I stop the runtime?")[0].cite == "docs/runtimes.md#stop-it"


# ---------------------------------------------------------------------------- the answer


def test_the_answer_is_composed_direct_answer_steps_settings_sources(kb: KnowledgeBase) -> None:
    answer = compose("how do I restart a runtime automatically when it crashes?", kb)
    assert answer.sources[0].cite == "docs/runtimes.md#keep-a-runtime-running"
    assert "--restart on-failure" in answer.summary
    assert answer.steps[0] == Step('tunnel-client runtimes connect --alias docs \\\n'
                                   '      --mcp-command "python server.py"', "starts it detached")
    assert any(row.startswith("--restart on-failure |") for row in answer.settings)
    text = answer.render()
    assert text.index("Steps:") < text.index("Sources:")
    assert "  1. docs/runtimes.md#keep-a-runtime-running (Keep a runtime running)" in text


def test_a_troubleshooting_answer_gives_cause_fix_and_the_example_to_look_for(kb: KnowledgeBase) -> None:
    answer = compose("why does the caller get 502?", kb)
    assert answer.summary.startswith("Cause: the relay could not reach the MCP server. Fix:")
    assert '    level=ERROR msg="mcp call failed" source=connect' in answer.summary
    assert "Nothing else" not in answer.summary


def test_a_runner_up_adds_its_steps_for_a_part_of_the_question_the_best_misses(kb: KnowledgeBase) -> None:
    answer = compose("corporate proxy and a private certificate authority bundle", kb)
    commands = [s.command for s in answer.steps]
    assert "tunnel-client run --http-proxy http://proxy:3128" in commands
    assert "tunnel-client run --ca-bundle /etc/ssl/corp.pem" in commands


def test_no_match_says_so_and_points_to_help(kb: KnowledgeBase) -> None:
    text = offline_answer("zzzz qqqq", kb)
    assert text.startswith("No section of the tunnel-client docs") and "tunnel-client help" in text


def test_context_block_labels_each_section(kb: KnowledgeBase) -> None:
    block = context_block(kb.search("stop a runtime", limit=2))
    assert block.startswith("knowledge.matches: 2 sections")
    assert "knowledge.match.1.path: docs/runtimes.md#stop-it" in block
    assert "knowledge.match.1.heading: Runtimes > Stop it" in block and "knowledge.match.2.excerpt_end" in block
    assert context_block([]).startswith("knowledge.matches: none")


def test_offline_answer_over_the_shipped_docs() -> None:
    text = offline_answer("how do I install the codex plugin?")
    assert "$ tunnel-client codex plugin install" in text and "\nSources:\n  1. " in text
    kb = default_knowledge()
    assert {s.kind for s in kb.sections} == {"docs", "help", "skill"}
    assert all(isinstance(s, Section) and s.text for s in kb.sections)


def test_the_skill_references_are_those_of_the_plugin_bundle() -> None:
    from tunnel_core.codex import bundle, knowledge

    assert knowledge.SKILL_NAME == bundle.SKILL_NAME
    assert knowledge.skill_references_dir() == bundle.source_root("skills") / bundle.SKILL_NAME / "references"
