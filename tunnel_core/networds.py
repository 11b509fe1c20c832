"""Network failures in words: what was tried (the URL) and what happened, for readiness texts,
log lines and CLI errors. No exception class names, no credentials (no userinfo, no query).

Standard library only, so one-shot CLI commands (httpx2) and the relay (``tunnel_core.httpio``,
which maps its own exception tree first) share the same words.
"""

from __future__ import annotations

import errno
import re
import socket
import ssl
from urllib.parse import urlsplit

_ERRNO_WORDS = {
    errno.ECONNREFUSED: "connection refused",
    errno.ENETUNREACH: "network unreachable",
    errno.EHOSTUNREACH: "host unreachable",
    errno.ETIMEDOUT: "timed out",
    errno.ECONNRESET: "connection reset",
    errno.ECONNABORTED: "connection aborted",
    errno.EPIPE: "connection closed",
    errno.ENOENT: "no such socket file",
    errno.EACCES: "permission denied",
}
_ERRNO_IN_TEXT = re.compile(r"\[Errno (-?\d+)\]\s*([^,\]]*)")


def display_url(url: str) -> str:
    """``url`` as shown in messages: no query string, no userinfo."""
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return parts._replace(netloc=netloc, query="", fragment="").geturl()


def os_words(err: BaseException | None) -> str:
    """``connection refused``, ``host unreachable``, ... for an OSError (or its text when several were joined)."""
    if err is None:
        return "failed"
    code = getattr(err, "errno", None)
    text = str(err)
    if code is None:  # several addresses tried: "Multiple exceptions: [Errno 111] ..., [Errno 99] ..."
        found = _ERRNO_IN_TEXT.search(text)
        code = int(found.group(1)) if found else None
    if code in _ERRNO_WORDS:
        return _ERRNO_WORDS[code]
    words = getattr(err, "strerror", None) or re.sub(r"^\[Errno -?\d+\]\s*", "", text) or type(err).__name__
    return words[:1].lower() + words[1:]


def _chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in out and len(out) < 10:
        out.append(cur)
        cur = cur.__cause__ or cur.__context__
    return out


def describe_cause(exc: BaseException, url: str, *, timeout: float | None = None) -> str:
    """Words for any client's failure, read from the exception's cause chain (TLS, DNS, socket errors)."""
    where = display_url(url)
    chain = _chain(exc)
    for e in chain:
        if isinstance(e, ssl.SSLCertVerificationError):
            return f"TLS certificate of {where} not accepted: {e.verify_message or e.reason}"
        if isinstance(e, ssl.SSLError):
            return f"TLS handshake with {where} failed: {str(e.reason or e).replace('_', ' ').lower()}"
        if isinstance(e, socket.gaierror):
            return f"cannot resolve the host of {where}: {os_words(e)}"
    if any(isinstance(e, TimeoutError) or type(e).__name__.endswith(("Timeout", "TimeoutError")) for e in chain):
        return f"no answer from {where}" + (f" within {timeout:g}s" if timeout else " in time")
    for e in chain:
        if isinstance(e, OSError) and (e.errno is not None or e.strerror):
            return f"cannot connect to {where}: {os_words(e)}"
    found = _ERRNO_IN_TEXT.search(str(exc))
    if found:
        code = int(found.group(1))
        return f"cannot connect to {where}: {_ERRNO_WORDS.get(code) or found.group(2).strip().lower()}"
    if "disconnect" in type(exc).__name__.lower() or "closed" in str(exc).lower():
        return f"{where} closed the connection before answering"
    return f"request to {where} failed ({type(exc).__name__})"
