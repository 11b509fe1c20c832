"""Cutting the docs and help topics into sections, and reading the commands and prose out of one.

A Markdown page is cut at its headings (levels 1-4; a heading inside a code fence is not
one). Each section knows its page title and parent headings, and its citation: the page and
the GitHub-style anchor of its heading (``docs/troubleshooting.md#readyz-answers-503``),
which opens the right place in any Markdown viewer. A help topic is cut into the blocks its
text is laid out in (an unindented line and what is indented under it) and is cited as
``help/NAME``, the argument of ``tunnel-client help``.

The commands of a section are its exact command lines, in document order: the lines of
shell code blocks (a trailing ``# comment`` is the step's note; ``\\`` continues a line),
``$ `` lines, the indented ``tunnel-client ...`` lines of a help topic, and inline
```tunnel-client ...``` spans of the prose.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

_HEADING = re.compile(r"^(#{1,4})\s+(.+?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)\s*([\w-]*)")
_SLUG_DROP = re.compile(r"[^\w\- ]")
_SHELL = frozenset({"sh", "bash", "shell", "console", "zsh"})
_INLINE = re.compile(r"`((?:tunnel-client|curl|export|ssh|codex|systemctl) [^`]+)`")
_HELP_CMD = re.compile(r"^\s+(?:\$\s+)?((?:tunnel-client|curl)\s.+?)(?:\s{2,}(.+))?$")
_DOLLAR = re.compile(r"^\s*\$\s+(.+)$")
_COMMENT = re.compile(r"\s+#\s+(.*)$")
_LINK = re.compile(r"\[([^\]]+)\]\([^)]+\)")
_LINK_TARGET = re.compile(r"\]\(([^)\s]+)\)")
_IMAGE = re.compile(r"!\[[^\]]*\]\([^)]+\)")
_BULLET = re.compile(r"^([-*]|\d+\.)\s+")


@dataclass(frozen=True, slots=True)
class Step:
    command: str
    note: str = ""


@dataclass(frozen=True, slots=True)
class Section:
    """One passage: ``cite`` is where it is (``docs/PAGE.md#anchor`` or ``help/TOPIC``)."""

    cite: str
    heading: str
    context: str  # page title and parent headings, outermost first, joined by " > "
    text: str
    kind: str  # "docs", "help" or "skill"
    commands: tuple[Step, ...] = ()
    prior: float = 1.0
    links: tuple[str, ...] = ()  # where it sends the reader: docs/PAGE.md#anchor, or docs/PAGE.md

    @property
    def source(self) -> str:
        """The file or topic, without the anchor."""
        return self.cite.split("#", 1)[0]


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lowercase, punctuation dropped, spaces to hyphens."""
    return _SLUG_DROP.sub("", heading.strip().lower()).replace(" ", "-")


def _plain(text: str) -> str:
    return text.replace("`", "")


def split_markdown(source: str, text: str, kind: str = "docs") -> list[Section]:
    """One section per heading; text before the first heading belongs to the page title."""
    out: list[Section] = []
    trail: list[tuple[int, str]] = []  # (level, heading) of the current section and its parents
    seen: dict[str, int] = {}
    lines: list[str] = []
    in_code = False

    def flush() -> None:
        if not trail:
            return
        heading = trail[-1][1]
        anchor = slug(heading)
        n = seen.get(anchor, 0)  # GitHub numbers repeated anchors, empty sections included
        seen[anchor] = n + 1
        body = _IMAGE.sub("", "\n".join(lines)).strip()  # a screenshot's alt text is not for a terminal
        if body:
            context = " > ".join(_plain(h) for _, h in trail[:-1])
            out.append(Section(f"{source}#{anchor}{f'-{n}' if n else ''}", _plain(heading), context, body, kind,
                               markdown_commands(body), links=links(source, body)))

    for line in text.splitlines():
        if _FENCE.match(line):
            in_code = not in_code
        m = None if in_code else _HEADING.match(line)
        if not m:
            lines.append(line)
            continue
        flush()
        level = len(m.group(1))
        while trail and trail[-1][0] >= level:
            trail.pop()
        trail.append((level, m.group(2)))
        lines = []
    flush()
    return out


def links(source: str, text: str) -> tuple[str, ...]:
    """What a Markdown text links to among the same docs: ``docs/page.md#anchor`` or a whole ``docs/page.md``."""
    folder = source.rsplit("/", 1)[0]
    out = []
    for target in _LINK_TARGET.findall(text):
        page, _, anchor = target.partition("#")
        if not page and anchor:
            out.append(f"{source}#{anchor}")
        elif page.endswith(".md") and "/" not in page:
            out.append(f"{folder}/{page}" + (f"#{anchor}" if anchor else ""))
    return tuple(dict.fromkeys(out))


def split_topic(name: str, text: str) -> list[Section]:
    """A help topic: one section per block (an unindented line and the indented lines under it)."""
    title, _, body = text.partition("\n")
    title = title.strip()
    blocks: list[list[str]] = []
    for line in body.splitlines():
        prev = blocks[-1][-1] if blocks else ""
        # An unindented line after a blank or an indented line starts a block; prose lines continue one.
        if not blocks or (line.strip() and not line[0].isspace() and (not prev.strip() or prev[0].isspace())):
            blocks.append([])
        blocks[-1].append(line)
    out: list[Section] = []
    for block in blocks:
        block_text = "\n".join(block).strip("\n").rstrip()  # keep the indentation of command lines
        if not block_text:
            continue
        first = block_text.splitlines()[0].strip()
        heading = first if _looks_like_heading(first) else title
        out.append(Section(f"help/{name}", heading, title if heading != title else "", block_text, "help",
                           topic_commands(block_text)))
    return out


def _looks_like_heading(line: str) -> bool:
    return len(line) <= 90 and not line.endswith(".") and (line.endswith(":") or line.split(" ", 1)[0].isupper())


# ---------------------------------------------------------------------------- commands


def _unique(steps: list[Step]) -> tuple[Step, ...]:
    seen: set[str] = set()
    out = []
    for s in steps:
        if s.command not in seen:
            seen.add(s.command)
            out.append(s)
    return tuple(out)


def _step(line: str) -> Step:
    m = _COMMENT.search(line)
    if m:
        return Step(line[: m.start()].strip(), m.group(1).strip())
    return Step(line.strip())


def _joined(lines: list[str], last: Step) -> Step:
    return Step("\n      ".join([*lines[:-1], last.command]), last.note)


def markdown_commands(text: str) -> tuple[Step, ...]:
    """The commands of a Markdown section, in document order."""
    steps: list[Step] = []
    lang: str | None = None  # None outside a fence
    pending: list[str] = []
    for line in text.splitlines():
        fence = _FENCE.match(line)
        if fence:
            lang = None if lang is not None else fence.group(2).lower()
            pending = []
            continue
        if lang is None:
            # An inline span is a command to run only with an argument: `tunnel-client serve` is a mention.
            steps += [Step(c.strip()) for c in _INLINE.findall(line) if len(c.split()) >= 3 or " -" in c]
        elif lang in _SHELL:
            stripped = line.strip()
            if not pending and (not stripped or stripped.startswith("#")):
                continue
            pending.append(stripped)
            if not stripped.endswith("\\"):
                steps.append(_joined(pending, _step(stripped)))
                pending = []
        elif (m := _DOLLAR.match(line)) is not None:
            steps.append(_step(m.group(1)))
    return _unique(steps)


def topic_commands(text: str) -> tuple[Step, ...]:
    """The commands of a help-topic block: indented ``tunnel-client``/``curl`` lines and ``$`` lines."""
    steps: list[Step] = []
    pending: list[str] = []
    for line in text.splitlines():
        if pending:  # the continuation of a command ending in a backslash
            pending.append(line.strip())
            if not line.rstrip().endswith("\\"):
                steps.append(_joined(pending, Step(pending[-1])))
                pending = []
            continue
        m = _HELP_CMD.match(line)
        if m is None:
            continue
        if m.group(1).rstrip().endswith("\\"):
            pending = [m.group(1).strip()]
        else:
            steps.append(Step(m.group(1).strip(), (m.group(2) or "").strip()))
    return _unique(steps)


# ---------------------------------------------------------------------------- prose


@dataclass(frozen=True, slots=True)
class Prose:
    """A paragraph or list item; ``example`` is the code block right after it when it ends with ':'."""

    text: str
    example: tuple[str, ...] = ()
    numbered: bool = False  # an item of a numbered list: a step of a procedure


def prose_units(text: str) -> list[Prose]:
    """Paragraphs and list items outside code fences and tables, with links reduced to their text."""
    units: list[Prose] = []
    current: list[str] = []
    code: list[str] | None = None  # lines of the open fence (None outside one)
    shell = False  # the open fence holds commands: those are steps, not an example
    introduced: int | None = None  # the unit (index) that a fence opening now would illustrate
    numbered = False

    def flush() -> None:
        nonlocal introduced
        joined = _LINK.sub(r"\1", _IMAGE.sub("", " ".join(current))).strip()
        current.clear()
        if joined:
            units.append(Prose(joined, numbered=numbered))
            introduced = len(units) - 1 if joined.endswith(":") else None

    for line in text.splitlines():
        fence = _FENCE.match(line)
        if fence:
            if code is None:
                flush()
                code, shell = [], fence.group(2).lower() in _SHELL
            else:
                if introduced is not None and code and not shell:
                    units[introduced] = replace(units[introduced], example=tuple(code))
                code, introduced = None, None
            continue
        if code is not None:
            if line.strip():
                code.append(line.rstrip())
            continue
        stripped = line.strip()
        if not stripped or stripped.startswith(("|", "![")):
            flush()
            continue
        if (bullet := _BULLET.match(stripped)) is not None:
            flush()
            numbered = bullet.group(1)[0].isdigit()
            stripped = stripped[bullet.end():]
        elif not current:
            numbered = False  # a paragraph of its own
        introduced = None
        current.append(stripped)
    flush()
    return units
