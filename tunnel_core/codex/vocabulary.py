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
who why will with won't would you your configure configured configuring work works working
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
PHRASES: tuple[tuple[str, str], ...] = (
    (r"runtime (?:api )?keys?", "runtime-key"),
    (r"admin (?:api )?keys?", "admin-key"),
    (r"api keys?", "api-key"),
    (r"bad gateway", "502"),
    (r"gateway time-?out", "504"),
    (r"method not allowed", "405"),
    (r"certificate authorit(?:y|ies)|root ca|private ca", "ca-trust"),
    (r"client certificates?|mutual tls", "client-cert"),
    (r"unix(?: domain)? sockets?", "unix-socket"),
    (r"address already in use", "address-in-use"),
    (r"get rid of", "remove"),
    (r"dev proxy", "dev-proxy"),
    (r"crash(?:es|ing)? ?loop", "crash-loop"),
    (r"log(?:ging)? level|debug log(?:s|ging)?", "log-level"),
    (r"status page|operator (?:ui|page)", "operator-ui"),
    (r"self-host(?:ed|ing)?|host (?:it|the tunnel service) (?:myself|yourself)", "self-hosting"),
)
_CLI = re.compile(r"\bcommand[- ]line\b")
# One pass over the text for all phrases: group N+1 is phrase N.
_PHRASE = re.compile(r"\b(?:" + "|".join(f"({p})" for p, _ in PHRASES) + r")\b")
_PHRASE_TOKEN = {n: token for n, (_, token) in enumerate(PHRASES, 1)}


def _as_question(m: re.Match[str]) -> str:
    return _PHRASE_TOKEN[m.lastindex or 0]


def _as_passage(m: re.Match[str]) -> str:
    token = _PHRASE_TOKEN[m.lastindex or 0]
    return m.group(0) if m.group(0) == token else f"{m.group(0)} {token}"


def terms(text: str) -> list[str]:
    """Index terms of ``text``: stemmed words, and compound tokens both whole and split into parts."""
    return [t for t, _ in tokens(text)]


def tokens(text: str, *, question: bool = False) -> list[tuple[str, bool]]:
    """(term, is a part of a compound) for each term of ``text``.

    A phrase of PHRASES is kept and followed by its token in a passage, so either matches; in a
    question it is replaced by its token, so it counts as one thing asked, not three.
    """
    out: list[tuple[str, bool]] = []
    text = _CLI.sub("cli", text.lower())  # "the command line" is not about stdio commands
    text = _PHRASE.sub(_as_question if question else _as_passage, text)
    for raw in _WORD.findall(text):
        w = raw.strip("./:-$")
        if not w or w in _STOP:
            continue
        if not _PARTS.search(w):
            if (len(w) > 2 or w in _SHORT_OK) and (st := stem(w)) not in _STOP:
                out.append((st, False))
            continue
        out.append((w, False))
        if w in _WHOLE or "://" in w:  # a URL's host and path are examples, not topics
            continue
        out += [(stem(p), True) for p in _PARTS.split(w) if p and p not in _STOP and (len(p) > 2 or p in _SHORT_OK)]
    return out


# Groups of words a user and the docs use for one thing. Every word of a group expands to the
# others (at a lower weight than the word itself). Words are given plainly; they are stemmed like the text.
THESAURUS: tuple[tuple[str, ...], ...] = (
    ("readyz", "readiness", "ready", "not-ready"),
    ("healthz", "liveness", "alive", "healthy"),
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
    ("self-hosting", "serve"),
    ("redis", "scale", "replica", "scaling"),
    ("codex", "plugin"),
    ("laptop", "local", "locally", "demo", "account", "rehearse", "dev"),
    ("rotate", "rotation", "renew"),
    ("unix-socket", "unix", "socket", "uds"),
    ("operator-ui", "ui", "dashboard"),
    ("address-in-use", "errno", "port"),
    ("401", "invalid_api_key", "unauthorized"),
    ("profile", "yaml"),
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


