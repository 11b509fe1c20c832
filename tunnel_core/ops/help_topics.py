"""``help [topic]``: the task pages shipped with tunnel-client."""

from __future__ import annotations

from pydantic import BaseModel

from tunnel_core.errors import UsageError
from tunnel_core.ops.topic_files import topic_names, topic_text, topic_titles


class HelpTopicSummary(BaseModel):
    name: str
    title: str


class HelpTopic(BaseModel):
    name: str
    title: str
    text: str


def list_topics() -> list[HelpTopicSummary]:
    """Every topic with its one-line title, sorted by name."""
    return [HelpTopicSummary(name=n, title=t) for n, t in topic_titles()]


def unknown_topic_error(name: str) -> UsageError:
    return UsageError(f"unknown help topic {name!r}; available topics: {', '.join(topic_names())}")


def get_topic(name: str) -> HelpTopic:
    """One topic; raises UsageError listing the available topics when ``name`` is unknown."""
    name = name.strip()
    text = topic_text(name)
    if text is None:
        raise unknown_topic_error(name)
    return HelpTopic(name=name, title=text.split("\n", 1)[0].strip(), text=text)
