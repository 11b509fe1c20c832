"""HTTP status texts as both sides put them in synthesized JSON-RPC errors (``error.message``)."""

from __future__ import annotations


def status_text(code: int) -> str:
    """The reason phrase of ``code``; "Bad Gateway" for a code HTTP does not define."""
    from http import HTTPStatus  # an error path: the enum's ~60 members are not built at every start

    try:
        return HTTPStatus(code).phrase
    except ValueError:
        return "Bad Gateway"
