"""Parsing request bodies of the tunnel service with a bound on JSON nesting.

Python's parser gives up near its recursion limit with ``RecursionError`` (a 500 if not
caught), and a command nested a few hundred levels deep can still break the tunnel client's
parser of a whole poll batch. The front door therefore refuses bodies nested deeper than
``max_depth`` (400 ``invalid_json_payload``) before parsing them.

An answer's ``resp_json`` is kept as the text the tunnel client sent (``parse_members``,
``JSONText``): the relay splices the MCP server's own bytes there, and the front door passes
them on as they are instead of encoding the parsed object again (``dumps_keeping`` does the
same when an answer crosses Redis to another instance).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

DEFAULT_MAX_DEPTH = 64

# A JSON string (escapes included) or one bracket: brackets inside strings do not nest.
_TOKENS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')
_OPENERS = frozenset(b"[{")


class JSONBodyError(ValueError):
    """The body is not acceptable JSON; the message says why (for the 400 answer)."""


def depth_exceeds(body: bytes, max_depth: int) -> bool:
    """True when brackets in ``body`` nest deeper than ``max_depth`` (strings are skipped)."""
    if body.count(b"[") + body.count(b"{") <= max_depth:  # cannot nest deeper than it has brackets
        return False
    depth = 0
    for m in _TOKENS.finditer(body):
        c = m.group()[0]
        if c in _OPENERS:
            depth += 1
            if depth > max_depth:
                return True
        elif c != 0x22:  # '"' starts a string token; anything else closes a bracket
            depth -= 1
    return False


def parse_json(body: bytes, max_depth: int = DEFAULT_MAX_DEPTH) -> Any:
    """The parsed body; JSONBodyError when it is not JSON or nests deeper than ``max_depth``."""
    if max_depth and depth_exceeds(body, max_depth):
        raise JSONBodyError(f"The JSON body is nested deeper than {max_depth} levels.")
    try:
        return json.loads(body)
    except RecursionError:
        raise JSONBodyError("The JSON body is nested too deeply.") from None
    except ValueError:
        raise JSONBodyError("The body is not valid JSON.") from None


_WS = re.compile(r"[ \t\n\r]*")
# A member name without escapes, and the colon after it; a name with escapes takes the long way.
_NAME = re.compile(r'[ \t\n\r]*"([^"\\\x00-\x1f]*)"[ \t\n\r]*:[ \t\n\r]*')
_AFTER = re.compile(r"[ \t\n\r]*([,}])")
# The json module's C scanner for one value, and its string reader (not in the type stubs).
_scan_once: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]
_scanstring: Callable[[str, int], tuple[str, int]] = json.decoder.scanstring  # type: ignore[attr-defined]


def _ws(text: str, i: int) -> int:
    """The index after the JSON whitespace at ``i``."""
    m = _WS.match(text, i)
    return m.end() if m is not None else i


class JSONText(dict[str, Any]):
    """A parsed JSON object that also keeps the exact text it was parsed from (``text``), so it can be
    passed on without being encoded again."""

    __slots__ = ("text",)

    def __init__(self, value: dict[str, Any], text: str) -> None:
        super().__init__(value)
        self.text = text


def parse_members(body: bytes | str, keep: str) -> tuple[Any, str | None]:
    """``json.loads(body)`` (same result, same errors), and when the body is a JSON object with a
    member ``keep``, that member's value exactly as written in the body (else None).

    Every value is read by the json module's own scanner; only the top-level object's framing
    is walked here.
    """
    text = body if isinstance(body, str) else body.decode(json.detect_encoding(body), "surrogatepass")
    i = _ws(text, 0)
    if text[i:i + 1] != "{":
        return json.loads(text), None
    obj: dict[str, Any] = {}
    kept: str | None = None
    i = _ws(text, i + 1)
    if text[i:i + 1] == "}":
        i += 1
    else:
        while True:
            m = _NAME.match(text, i)
            if m is not None:
                key, i = m.group(1), m.end()
            else:
                if text[i:i + 1] != '"':
                    raise json.JSONDecodeError("Expecting property name enclosed in double quotes", text, i)
                key, i = _scanstring(text, i + 1)
                i = _ws(text, i)
                if text[i:i + 1] != ":":
                    raise json.JSONDecodeError("Expecting ':' delimiter", text, i)
                i = _ws(text, i + 1)
            try:
                value, end = _scan_once(text, i)
            except StopIteration as err:
                raise json.JSONDecodeError("Expecting value", text, err.value) from None
            obj[key] = value
            if key == keep:
                kept = text[i:end]
            m = _AFTER.match(text, end)
            if m is None:
                raise json.JSONDecodeError("Expecting ',' delimiter", text, _ws(text, end))
            i = m.end()
            if m.group(1) == "}":
                break
            i = _ws(text, i)
    if _ws(text, i) != len(text):
        raise json.JSONDecodeError("Extra data", text, i)
    return obj, kept


def dumps_keeping(obj: dict[str, Any], key: str) -> str:
    """Compact JSON of ``obj``, with the member ``key`` written as its kept text when it is a ``JSONText``."""
    value = obj.get(key)
    if not isinstance(value, JSONText):
        return json.dumps(obj, separators=(",", ":"))
    rest = json.dumps({k: v for k, v in obj.items() if k != key}, separators=(",", ":"))
    return rest[:-1] + ("," if len(rest) > 2 else "") + json.dumps(key) + ":" + value.text + "}"


def loads_keeping(body: bytes | str, key: str) -> Any:
    """``json.loads(body)``, with an object member ``key`` that is itself an object kept as ``JSONText``."""
    value, text = parse_members(body, key)
    if text is not None and type(value.get(key)) is dict:
        value[key] = JSONText(value[key], text)
    return value
