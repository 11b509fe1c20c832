"""Help topics are package data with a title line; unknown topics list the valid ones."""

from __future__ import annotations

import pytest

from tunnel_core.codex.prompts import STARTER_PROMPTS
from tunnel_core.errors import UsageError
from tunnel_core.ops.help_topics import get_topic, list_topics

TOPICS = ["doctor", "oauth", "plugin", "quickstart", "samples", "troubleshooting"]


def test_the_reference_topics_ship() -> None:
    assert [t.name for t in list_topics()] == TOPICS
    assert all(t.title and len(t.title) < 90 for t in list_topics())


@pytest.mark.parametrize("name", TOPICS)
def test_topic_text(name: str) -> None:
    topic = get_topic(name)
    assert topic.text.startswith(topic.title)
    assert "tunnel-client" in topic.text


def test_unknown_topic_lists_available_topics() -> None:
    with pytest.raises(UsageError) as err:
        get_topic("nonsense")
    assert str(err.value) == f"unknown help topic 'nonsense'; available topics: {', '.join(TOPICS)}"


def test_quickstart_covers_the_first_use_path() -> None:
    text = get_topic("quickstart").text
    for needle in (
        "$ tunnel-client dev proxy",
        "$ tunnel-client init ",
        "$ tunnel-client doctor ",
        "$ tunnel-client run ",
        "https://platform.openai.com/settings/organization/tunnels",
        "https://platform.openai.com/settings/organization/api-keys",
        "https://platform.openai.com/settings/organization/admin-keys",
        "CONTROL_PLANE_API_KEY",
        "Starter prompts for Codex",
        "/ui",
    ):
        assert needle in text, needle
    assert text.index("dev proxy") < text.index("tunnel-client init")
    prompts = text.split("Starter prompts for Codex", 1)[1].split("More help", 1)[0]
    assert prompts.count('  - "') == 3
    # The same prompts as the plugin's defaultPrompt, never one that tells Codex to run the client itself.
    flat = " ".join(prompts.split())
    for starter in STARTER_PROMPTS[:3]:
        assert f'"{starter.text}"' in flat, starter.name
    assert "start `tunnel-client run" not in flat.lower().replace("never a foreground `tunnel-client run`", "")
