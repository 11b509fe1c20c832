"""Where the help topic files live and how to read them, with no heavy imports.

Root ``--help`` lists the topic titles, so this module must stay cheap to import
(pathlib only). The first line of each topic file is its one-line title.
"""

from __future__ import annotations

from pathlib import Path

TOPIC_DIR = Path(__file__).resolve().parent.parent / "data" / "help_topics"
_SUFFIX = ".txt"


def topic_names() -> list[str]:
    """Names of the shipped topics, sorted."""
    return sorted(p.name[: -len(_SUFFIX)] for p in TOPIC_DIR.glob("*" + _SUFFIX) if not p.name.startswith("."))


def topic_text(name: str) -> str | None:
    """The full text of a topic, or None when there is no such topic."""
    if name not in topic_names():
        return None
    return (TOPIC_DIR / (name + _SUFFIX)).read_text(encoding="utf-8")


def topic_titles() -> list[tuple[str, str]]:
    """(name, title) of every topic, for listings."""
    out: list[tuple[str, str]] = []
    for name in topic_names():
        text = (TOPIC_DIR / (name + _SUFFIX)).read_text(encoding="utf-8")
        out.append((name, text.split("\n", 1)[0].strip()))
    return out
