"""Byte-preserving edits of Codex's ``config.toml``.

``tomllib`` reads the file (to know what is configured); writes are plain text edits so
every byte the user wrote (comments, order, spacing) survives. The only edits are:
appending a block of tables at the end, replacing one ``enabled = false`` line, and
removing whole tables. ``tables()`` finds table headers the way a TOML parser would,
skipping brackets inside strings and multi-line strings.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from typing import Any

from tunnel_core.errors import ConfigError

_BARE = re.compile(r"[A-Za-z0-9_-]+")
_ENABLED_FALSE = re.compile(r"^(?P<indent>[ \t]*)enabled[ \t]*=[ \t]*false(?P<rest>[ \t]*(#[^\n]*)?)$")


@dataclass(frozen=True, slots=True)
class Table:
    """A ``[table]`` or ``[[array]]`` header and its body: ``text[start:end]``."""

    key: tuple[str, ...]
    start: int
    end: int
    array: bool


def quote_key(part: str) -> str:
    """A key part as TOML: bare when possible, else a basic string."""
    if _BARE.fullmatch(part):
        return part
    return '"' + part.replace("\\", "\\\\").replace('"', '\\"') + '"'


def dotted(key: tuple[str, ...]) -> str:
    return ".".join(quote_key(p) for p in key)


def parse(text: str, source: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source} is not valid TOML ({exc}); fix it, then run the command again") from None


def _parse_key(s: str) -> tuple[str, ...] | None:
    """The parts of a dotted key (``a."b.c".d``), or None when it is not one."""
    parts: list[str] = []
    i, n = 0, len(s)
    while True:
        while i < n and s[i] in " \t":
            i += 1
        if i < n and s[i] == '"':
            j = i + 1
            buf = []
            while j < n and s[j] != '"':
                if s[j] == "\\" and j + 1 < n:
                    esc = s[j + 1]
                    buf.append({"n": "\n", "t": "\t", '"': '"', "\\": "\\"}.get(esc, esc))
                    j += 2
                    continue
                buf.append(s[j])
                j += 1
            if j >= n:
                return None
            parts.append("".join(buf))
            i = j + 1
        elif i < n and s[i] == "'":
            j = s.find("'", i + 1)
            if j < 0:
                return None
            parts.append(s[i + 1:j])
            i = j + 1
        else:
            m = _BARE.match(s, i)
            if not m:
                return None
            parts.append(m.group(0))
            i = m.end()
        while i < n and s[i] in " \t":
            i += 1
        if i == n:
            return tuple(parts)
        if s[i] != ".":
            return None
        i += 1


def _header(line: str) -> tuple[tuple[str, ...], bool] | None:
    """(key, is_array) when ``line`` is a table header."""
    stripped = line.strip()
    body = stripped
    comment = body.find("#")
    # a '#' inside a quoted key part is not a comment; headers with such keys are rare, so
    # only cut at a '#' that follows the closing bracket
    if comment >= 0 and "]" in body[:comment]:
        body = body[:comment].rstrip()
    if body.startswith("[[") and body.endswith("]]"):
        key = _parse_key(body[2:-2])
        return (key, True) if key else None
    if body.startswith("[") and body.endswith("]"):
        key = _parse_key(body[1:-1])
        return (key, False) if key else None
    return None


def _scan(line: str, state: str, depth: int) -> tuple[str, int]:
    """After ``line``: the multi-line string state (empty, or the opening triple quote) and the bracket depth.

    The depth tells a line inside a multi-line array or inline table (``  ["a"]``) from a
    table header.
    """
    i, n = 0, len(line)
    while i < n:
        if state:
            end = line.find(state, i)
            if end < 0:
                return state, depth
            i = end + 3
            state = ""
            continue
        c = line[i]
        if c == "#":
            break
        if line.startswith('"""', i) or line.startswith("'''", i):
            state = line[i:i + 3]
            i += 3
            continue
        if c in "\"'":
            j = i + 1
            while j < n and line[j] != c:
                j += 2 if (c == '"' and line[j] == "\\") else 1
            i = j + 1
            continue
        if c in "[{":
            depth += 1
        elif c in "]}":
            depth = max(0, depth - 1)
        i += 1
    return state, depth


def tables(text: str) -> list[Table]:
    """Every table header in ``text`` with the span up to the next header (or the end)."""
    found: list[tuple[tuple[str, ...], int, bool]] = []
    state, depth = "", 0
    pos = 0
    for line in text.splitlines(keepends=True):
        bare = line.rstrip("\r\n")
        head = _header(bare) if not state and depth == 0 else None
        if head is not None:
            found.append((head[0], pos, head[1]))
        else:
            state, depth = _scan(bare, state, depth)
        pos += len(line)
    out = []
    for i, (key, start, array) in enumerate(found):
        end = found[i + 1][1] if i + 1 < len(found) else len(text)
        out.append(Table(key, start, end, array))
    return out


def append_block(text: str, block: str) -> tuple[str, str]:
    """``text`` with ``block`` appended after one blank line; returns (new text, exactly what was inserted).

    A file written with CRLF line ends gets CRLF in the block too.
    """
    newline = "\r\n" if "\r\n" in text else "\n"
    block = block.replace("\n", newline)
    if not text:
        sep = ""
    elif text.endswith(newline * 2):
        sep = ""
    elif text.endswith(newline):
        sep = newline
    else:
        sep = newline * 2
    inserted = sep + block
    return text + inserted, inserted


def remove_inserted(text: str, inserted: str) -> str | None:
    """``text`` without the last occurrence of ``inserted``, or None when it is not there verbatim."""
    at = text.rfind(inserted) if inserted else -1
    if at < 0:
        return None
    return text[:at] + text[at + len(inserted):]


def remove_tables(text: str, prefix: tuple[str, ...]) -> tuple[str, int]:
    """``text`` without every table whose key starts with ``prefix``; returns (text, tables removed)."""
    doomed = [t for t in tables(text) if t.key[:len(prefix)] == prefix]
    for t in reversed(doomed):
        text = text[:t.start] + text[t.end:]
    return text, len(doomed)


def enable_line(text: str, key: tuple[str, ...]) -> tuple[str, str, str] | None:
    """In table ``key``, replace ``enabled = false`` by ``enabled = true``: (new text, old line, new line)."""
    for t in tables(text):
        if t.key != key or t.array:
            continue
        body_start = text.index("\n", t.start) + 1 if "\n" in text[t.start:t.end] else t.end
        offset = body_start
        for line in text[body_start:t.end].splitlines(keepends=True):
            bare = line.rstrip("\r\n")
            m = _ENABLED_FALSE.match(bare)
            if m:
                new = f"{m.group('indent')}enabled = true{m.group('rest')}"
                return text[:offset] + new + text[offset + len(bare):], bare, new
            offset += len(line)
    return None


def restore_line(text: str, key: tuple[str, ...], current: str, original: str) -> str | None:
    """Undo ``enable_line``: put ``original`` back where ``current`` is in table ``key``."""
    for t in tables(text):
        if t.key != key or t.array:
            continue
        body = text[t.start:t.end]
        at = body.find("\n" + current)
        if at >= 0:
            at += t.start + 1
            return text[:at] + original + text[at + len(current):]
    return None
