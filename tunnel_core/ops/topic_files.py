"""Where the help topic files live and how to read them, with no heavy imports.

Root ``--help`` lists the topic titles, so this module must stay cheap to import
(``os`` only, not even pathlib). The first line of each topic file is its one-line title.
"""

from __future__ import annotations

import os

TOPIC_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "help_topics")
_SUFFIX = ".txt"


def topic_names() -> list[str]:
    """Names of the shipped topics, sorted."""
    return sorted(n[: -len(_SUFFIX)] for n in os.listdir(TOPIC_DIR) if n.endswith(_SUFFIX) and not n.startswith("."))


def topic_path(name: str) -> str:
    """The file of a topic (whether or not it exists)."""
    return os.path.join(TOPIC_DIR, name + _SUFFIX)


def _read(name: str) -> str:
    with open(topic_path(name), encoding="utf-8") as f:
        return f.read()


def topic_text(name: str) -> str | None:
    """The full text of a topic, or None when there is no such topic."""
    if name not in topic_names():
        return None
    return _read(name)


def topic_titles() -> list[tuple[str, str]]:
    """(name, title) of every topic, for listings."""
    return [(name, _read(name).split("\n", 1)[0].strip()) for name in topic_names()]


def topics_epilog() -> str:
    """The help-topic block of the root ``--help``."""
    lines = ["", "help topics (start with quickstart):"]
    lines += [f"  tunnel-client help {name:<16} {title}" for name, title in topic_titles()]
    return "\n".join(lines) + "\n"
