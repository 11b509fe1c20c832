"""HTTP status texts as both sides put them in synthesized JSON-RPC errors (``error.message``)."""

from __future__ import annotations

from http import HTTPStatus


def status_text(code: int) -> str:
    """The reason phrase of ``code``; "Bad Gateway" for a code HTTP does not define."""
    try:
        return HTTPStatus(code).phrase
    except ValueError:
        return "Bad Gateway"
