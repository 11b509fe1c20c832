"""The words of the assistant's domain: how text becomes index terms, and what a question means.

Text is lowercased and lightly stemmed (``restarts``, ``restarted``, ``restarting`` ->
``restart``). Flags, paths and identifiers are indexed whole and by their parts
(``--mcp.client-cert`` -> ``mcp.client-cert``, ``mcp``, ``client``, ``cert``), except the
product's own name and URLs (an example host is not a topic). A few phrases name one thing
("bad gateway" is the 502 entry, "the command line" is not about stdio commands), and the
thesaurus joins the words a user says to the words the docs use ("crashes" ~ "exit",
"certificate authority" ~ ``--ca-bundle``).

This is the only module that knows tunnel-client's vocabulary; :mod:`ranking` is generic.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from functools import lru_cache

_WORD = re.compile(r"[a-z0-9$][a-z0-9_./:$-]*[a-z0-9]|[a-z0-9]")
_PARTS = re.compile(r"[-_/.:$]+")
_SHORT_OK = frozenset({"id", "ui", "mcp", "url", "key", "tls", "cli", "api", "dcr", "rm", "ca", "ip", "os", "pem",
                       "ssh", "log", "yml", "dns", "run", "pid", "rss", "get", "put", "jq", "sse"})
# Words that carry no topic in a question or a doc, including the verbs every question uses
# ("configure", "work"); command names such as run, get, set and help are kept.
_STOP = frozenset("""
a about after also all an and any are as at be before but by can cannot can't could did do does doesn't doing don't
for from got had has have here how i if i'm in into is isn't it it's its just know like made make makes me more most
my need no not now of on one only or other our out own please said same say says should so some such tell than that
the their them then there these they this through to use used using very via want was way we what when where which
who why will with won't would you your configure configured configuring work works working once
""".split())
_DOUBLE_OK = ("ll", "ss", "zz")
# The product's name is one word: split, it would put "tunnel" and "client" in every passage.
_WHOLE = frozenset({"tunnel-client"})


@lru_cache(maxsize=8192)
def stem(word: str) -> str:
    """A light suffix stripper: enough to join inflections, never a dictionary."""
    if len(word) <= 3 or not word.isalpha():
        return word
    for suffix, keep in (("ies", "y"), ("sses", "ss"), ("shes", "sh"), ("ches", "ch"), ("xes", "x")):
        if word.endswith(suffix) and len(word) > len(suffix) + 2:
            return word[: -len(suffix)] + keep
    if word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    for suffix in ("ing", "ed"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            if len(word) > 3 and word[-1] == word[-2] and word[-2:] not in _DOUBLE_OK:
                word = word[:-1]
            break
    if word.endswith("e") and len(word) > 4:
        word = word[:-1]
    return word


# Phrases that name one thing, and their token: a passage keeps the phrase and gains the token,
# a question's phrase becomes the token ("bad gateway" finds the 502 entry as one thing asked).
# "command line" becomes "cli" everywhere: it is not about stdio commands.
PHRASES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("runtime-key", ("runtime key", "runtime keys", "runtime api key", "runtime api keys")),
    ("admin-key", ("admin key", "admin keys", "admin api key", "admin api keys")),
    ("api-key", ("api key", "api keys")),
    ("502", ("bad gateway",)),
    ("504", ("gateway timeout", "gateway time-out")),
    ("405", ("method not allowed",)),
    ("ca-trust", ("certificate authority", "certificate authorities", "root ca", "private ca", "private cas")),
    ("client-cert", ("client certificate", "client certificates", "mutual tls")),
    ("unix-socket", ("unix socket", "unix sockets", "unix domain socket", "unix domain sockets")),
    ("address-in-use", ("address already in use",)),
    ("remove", ("get rid of",)),
    ("dev-proxy", ("dev proxy",)),
    ("crash-loop", ("crash loop", "crashing loop", "crashloop")),
    ("log-level", ("log level", "logging level", "debug log", "debug logs", "debug logging")),
    ("operator-ui", ("status page", "operator ui", "operator page")),
    ("self-hosting", ("self-host", "self-hosted", "host it myself", "host it yourself",
                      "host the tunnel service myself", "host the tunnel service yourself")),
    ("cli", ("command line", "command-line")),
)
_REPLACED = frozenset({"cli"})


def _phrase_index() -> dict[str, tuple[tuple[tuple[str, ...], str], ...]]:
    """First word -> (words, token) of every phrase variant starting with it, longest first."""
    index: dict[str, list[tuple[tuple[str, ...], str]]] = {}
    for token, variants in PHRASES:
        for variant in variants:
            words = tuple(variant.split())
            index.setdefault(words[0], []).append((words, token))
    return {w: tuple(sorted(v, key=lambda p: -len(p[0]))) for w, v in index.items()}


_PHRASE_INDEX = _phrase_index()


def terms(text: str) -> list[str]:
    """Index terms of ``text``: stemmed words, and compound tokens both whole and split into parts."""
    return [t for t, _ in tokens(text)]


def tokens(text: str, *, question: bool = False) -> list[tuple[str, bool]]:
    """(term, is a part of a compound) for each term of ``text``.

    A phrase of PHRASES is kept and followed by its token in a passage, so either matches; in a
    question it is replaced by its token, so it counts as one thing asked, not three.
    """
    raws = _WORD.findall(text.lower())
    out: list[tuple[str, bool]] = []
    i = 0
    while i < len(raws):
        for words, token in _PHRASE_INDEX.get(raws[i], ()):
            n = len(words)
            if tuple(raws[i : i + n]) != words:
                continue
            if question or token in _REPLACED:
                out += _word(token)  # in a question, the token's parts are looser alternatives
            else:
                for raw in raws[i : i + n]:
                    out += _word(raw)
                if words != (token,):
                    out.append((token, False))  # the words are already there: the token whole only
            i += n
            break
        else:
            out += _word(raws[i])
            i += 1
    return out


@lru_cache(maxsize=32768)
def _word(raw: str) -> tuple[tuple[str, bool], ...]:
    """The terms of one word of text (cached: the docs use a few thousand distinct words)."""
    w = raw.strip("./:-$")
    if not w or w in _STOP:
        return ()
    if not _PARTS.search(w):
        st = stem(w)
        return ((st, False),) if (len(w) > 2 or w in _SHORT_OK) and st not in _STOP else ()
    if w in _WHOLE or "://" in w:  # a URL's host and path are examples, not topics
        return ((w, False),)
    return ((w, False), *((stem(p), True) for p in _PARTS.split(w) if p and p not in _STOP
                          and (len(p) > 2 or p in _SHORT_OK)))


# Groups of words a user and the docs use for one thing. Every word of a group expands to the
# others (at a lower weight than the word itself). Words are given plainly; they are stemmed like the text.
THESAURUS: tuple[tuple[str, ...], ...] = (
    ("readyz", "readiness", "ready", "not-ready"),
    ("healthz", "liveness", "alive", "healthy", "health"),
    ("runtime-key", "control_plane_api_key"),
    ("admin-key", "openai_admin_key"),
    ("key", "credential", "secret"),
    ("proxy", "https_proxy", "http-proxy", "corporate"),
    ("ca-trust", "ca-bundle", "ca_bundle", "ca", "pem", "trust"),
    ("client-cert", "mtls", "mcp.client-cert", "certificate", "cert"),
    ("oauth", "bearer", "prmd", "sign", "login", "authorization"),
    ("crash", "die", "exit", "crash-loop"),
    ("restart", "on-failure", "automatically", "supervisor"),
    ("background", "detached", "daemon", "supervised", "nohup"),
    ("stop", "disconnect", "kill", "sigterm"),
    ("remove", "delete", "rm", "forget"),
    ("log-level", "debug", "verbose"),
    ("metric", "prometheus", "scrape", "monitoring", "alert"),
    ("stdio", "mcp-command", "stdin", "subprocess"),
    ("502", "bad", "gateway"),
    ("504", "timeout", "hang", "response_timeout"),
    ("405", "browser"),
    ("redis", "scale", "replica", "scaling"),
    ("codex", "plugin"),
    ("laptop", "local", "locally", "demo", "account", "rehearse", "dev"),
    ("rotate", "rotation", "renew"),
    ("unix-socket", "unix", "socket", "uds"),
    ("operator-ui", "ui", "dashboard"),
    ("address-in-use", "errno", "port"),
    ("401", "invalid_api_key", "unauthorized"),
    ("profile", "yaml"),
    ("channel", "several", "multiple"),  # several MCP servers behind one client are channels
    ("create", "new"),
    ("check", "doctor", "verify", "diagnose"),
)


def _expansions(groups: Iterable[Sequence[str]]) -> dict[str, frozenset[str]]:
    out: dict[str, set[str]] = {}
    for group in groups:
        stems = {t for word in group for t in terms(word)[:1]}  # a compound word whole, not its parts
        for s in stems:
            out.setdefault(s, set()).update(stems - {s})
    return {k: frozenset(v) for k, v in out.items()}


EXPANSIONS = _expansions(THESAURUS)


# A question that describes a problem rather than a task.
_SYMPTOM = re.compile(r"\b(why|error|errors|fails?|failed|failing|broken|wrong|crash\w*|keeps?|stuck|hangs?|"
                      r"says|dies|won't|doesn't|can't|cannot|not working|[45]0\d)\b")


def is_symptom(question: str) -> bool:
    """Whether the question describes a problem (then troubleshooting pages are preferred).

    "How do I make it restart when it crashes?" asks for a task, not a diagnosis.
    """
    q = question.lower()
    if _HOW_TO.search(q) and not _DIAGNOSE.search(q):
        return False
    return _SYMPTOM.search(q) is not None


_HOW_TO = re.compile(r"^\s*how (?:do|can|should) (?:i|we|you)\b|^\s*how to\b")
_DIAGNOSE = re.compile(r"\b(fix|why|wrong|debug|diagnose|find out)\b")


def clear_caches() -> None:
    """Forget the per-word caches (for measurements that want a cold start)."""
    stem.cache_clear()
    _word.cache_clear()
