"""Parsing request bodies of the tunnel service with a bound on JSON nesting.

Python's parser gives up near its recursion limit with ``RecursionError`` (a 500 if not
caught), and a command nested a few hundred levels deep can still break the tunnel client's
parser of a whole poll batch. The front door therefore refuses bodies nested deeper than
``max_depth`` (400 ``invalid_json_payload``) before parsing them.
"""

from __future__ import annotations

import json
import re
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
