"""Who may use a tunnel: runtime keys (the tunnel client's side) and caller tokens (the front door).

Every credential is scoped to tunnels:

- a **runtime key** opens the runtime routes (metadata, poll, response) of the tunnels it is
  bound to, and nothing else: on another tunnel it gets 403 ``tunnel_use_forbidden``. Keys come
  from the command line (``TUNNEL_ID=REF`` binds one; an unbound ``REF`` is valid for the
  ``--tunnel-id`` tunnels of ``serve``, and for every tunnel of ``dev tunnel-service``) or are
  minted through the admin API for one tunnel;
- a **caller token** (header ``X-Tunnel-Caller-Token``) opens one tunnel's front door. When
  front-door authentication is on for a tunnel, a request without a valid token for *that*
  tunnel gets 401 with a JSON-RPC error and a ``WWW-Authenticate`` challenge naming the header,
  before its body is read. The header is removed from every front-door request, so it never
  reaches the tunnel client or the MCP server (``Authorization`` stays the MCP server's).

Secrets are compared as SHA-256 digests: the configured and minted ones are kept only as
digests, a presented one is hashed once and compared with ``hmac.compare_digest`` against the
digests of the tunnel in question. (On a failed check, a dictionary lookup by digest tells a
key of another tunnel, 403, from an unknown one, 401.)
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from starlette.types import ASGIApp, Receive, Scope, Send

from tunnel_core.devservice.registry import Registry

log = logging.getLogger("tunnel_client.tunnelservice")

CALLER_TOKEN_HEADER = "X-Tunnel-Caller-Token"
_HEADER_KEY = CALLER_TOKEN_HEADER.lower().encode()
RUNTIME_KEY = "runtime_key"
CALLER_TOKEN = "caller_token"
SECRET_PREFIX = {RUNTIME_KEY: "tcrk_", CALLER_TOKEN: "tcct_"}
ID_PREFIX = {RUNTIME_KEY: "rk_", CALLER_TOKEN: "ct_"}
# The front door and the PRMD route the service answers for it: both reach the tunnel client.
_GUARDED = re.compile(r"^(?:/\.well-known/oauth-protected-resource)?/v1/mcp/(tunnel_[a-z0-9]{32})/?$")

Verdict = Literal["ok", "forbidden", "invalid"]


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def mint(kind: str) -> tuple[str, str, str]:
    """(credential id, secret, digest) of a fresh credential: 256 random bits, URL-safe."""
    secret = SECRET_PREFIX[kind] + secrets.token_urlsafe(32)
    return ID_PREFIX[kind] + secrets.token_hex(8), secret, digest(secret)


def _any_equal(value: str, digests: Iterable[str]) -> bool:
    found = False
    for d in digests:
        found |= hmac.compare_digest(value, d)
    return found


@dataclass(frozen=True, slots=True)
class FrontDoorPolicy:
    """Whether a tunnel's front door needs a caller token: ``default`` unless the tunnel is listed."""

    default: bool = False
    open_tunnels: frozenset[str] = frozenset()  # --front-door-auth TUNNEL_ID=none
    closed_tunnels: frozenset[str] = frozenset()  # --front-door-auth TUNNEL_ID=token

    def required(self, tunnel_id: str) -> bool:
        if tunnel_id in self.closed_tunnels:
            return True
        if tunnel_id in self.open_tunnels:
            return False
        return self.default

    def describe(self) -> str:
        """'token', 'none' or 'mixed' (for /healthz and the start-up log)."""
        if self.default:
            return "mixed" if self.open_tunnels else "token"
        return "mixed" if self.closed_tunnels else "none"


class Gate:
    """The credentials of one service instance: static ones from flags, minted ones from the registry."""

    def __init__(
        self,
        registry: Registry,
        *,
        unbound_runtime_keys: Iterable[str] = (),
        unbound_tunnels: frozenset[str] | None = None,
        bound_runtime_keys: Iterable[tuple[str, str]] = (),
        caller_tokens: Iterable[tuple[str, str]] = (),
        policy: FrontDoorPolicy | None = None,
    ) -> None:
        self.registry = registry
        self.policy = policy or FrontDoorPolicy()
        self._any_tunnel: list[str] = []  # digests of keys valid for every tunnel (dev tunnel-service)
        self._static: dict[tuple[str, str], set[str]] = {}  # (kind, tunnel) -> digests
        self._static_kind: dict[str, str] = {}  # digest -> kind, for 401 vs 403
        bound = list(bound_runtime_keys)
        for key in unbound_runtime_keys:
            if unbound_tunnels is None:
                self._any_tunnel.append(digest(key))
                self._static_kind[digest(key)] = RUNTIME_KEY
            else:
                bound += [(t, key) for t in unbound_tunnels]
        for kind, pairs in ((RUNTIME_KEY, bound), (CALLER_TOKEN, list(caller_tokens))):
            for tunnel_id, secret in pairs:
                self._static.setdefault((kind, tunnel_id), set()).add(digest(secret))
                self._static_kind[digest(secret)] = kind

    def runtime(self, key: str, tunnel_id: str) -> Verdict:
        """May ``key`` use the runtime routes of ``tunnel_id``?"""
        if not key:
            return "invalid"
        d = digest(key)
        if _any_equal(d, self._any_tunnel) or self._matches(RUNTIME_KEY, d, tunnel_id):
            return "ok"
        return "forbidden" if self._kind_of(d) == RUNTIME_KEY else "invalid"

    def is_runtime_key(self, key: str) -> bool:
        return bool(key) and self._kind_of(digest(key)) == RUNTIME_KEY

    def caller_allowed(self, token: str, tunnel_id: str) -> bool:
        """Does the front door of ``tunnel_id`` let a request with ``token`` ('' = none) through?"""
        if not self.policy.required(tunnel_id):
            return True
        return bool(token) and self._matches(CALLER_TOKEN, digest(token), tunnel_id)

    def admits(self, route: str, headers: Iterable[tuple[bytes, bytes]], tunnel_id: str) -> bool:
        """Would a request with these raw headers pass the credential check of its route (``front_door``, or a
        runtime route)? The edge spends a tunnel's rate budget only on requests that would, so anonymous
        traffic cannot starve a tunnel's real callers and clients."""
        if route == "front_door":
            return self.caller_allowed(_header(headers, _HEADER_KEY), tunnel_id)
        auth = _header(headers, b"authorization")
        return auth[:7].lower() == "bearer " and self.runtime(auth[7:].strip(), tunnel_id) == "ok"

    def _matches(self, kind: str, d: str, tunnel_id: str) -> bool:
        return (_any_equal(d, self._static.get((kind, tunnel_id), ()))
                or _any_equal(d, self.registry.credentials_of(kind, tunnel_id)))

    def _kind_of(self, d: str) -> str:
        found = self.registry.credential(d)
        return found.kind if found is not None else self._static_kind.get(d, "")


def _header(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> str:
    return next((v.decode("latin-1").strip() for k, v in headers if k == name), "")


def unauthorized_body(reason: str) -> bytes:
    """The 401 answer of the front door: a JSON-RPC error (the body was not read, so ``id`` is null)."""
    message = ("Unauthorized: this tunnel's front door needs a caller token in the X-Tunnel-Caller-Token header"
               if reason == "caller_token_required" else
               "Unauthorized: the X-Tunnel-Caller-Token header does not hold a valid caller token for this tunnel")
    body = {"jsonrpc": "2.0", "id": None,
            "error": {"code": -32600, "message": message,
                      "data": {"code": reason, "header": CALLER_TOKEN_HEADER}}}
    return json.dumps(body, separators=(",", ":")).encode()


CHALLENGE = f'Tunnel-Caller-Token realm="tunnel", header="{CALLER_TOKEN_HEADER}"'


class FrontDoorGuard:
    """ASGI middleware in front of the service: caller tokens on the front door, and the header stripped.

    ``screen`` and ``refuse`` are the same check for a caller that has already matched the route
    (the service's raw front-door dispatch)."""

    def __init__(self, app: ASGIApp, gate: Gate) -> None:
        self.app = app
        self.gate = gate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = _GUARDED.match(scope["path"]) if scope["type"] == "http" else None
        if match is None:
            await self.app(scope, receive, send)
            return
        kept, refusal = self.screen(scope, match.group(1))
        if kept is None:
            await self.refuse(scope, send, match.group(1), refusal)
            return
        await self.app({**scope, "headers": kept}, receive, send)

    def screen(self, scope: Scope, tunnel_id: str) -> tuple[list[tuple[bytes, bytes]] | None, str]:
        """(the request's headers without the caller token, "") when the request may pass; else (None, the
        refusal code: ``caller_token_required`` or ``invalid_caller_token``)."""
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        token = ""
        kept = headers
        for name, _ in headers:
            if name == _HEADER_KEY:
                kept = []
                for name, value in headers:
                    if name == _HEADER_KEY:
                        token = token or value.decode("latin-1").strip()
                    else:
                        kept.append((name, value))
                break
        if self.gate.caller_allowed(token, tunnel_id):
            return kept, ""
        return None, "invalid_caller_token" if token else "caller_token_required"

    async def refuse(self, scope: Scope, send: Send, tunnel_id: str, code: str) -> None:
        """The 401 answer (and its log line) for a request ``screen`` refused."""
        log.info("front door request", extra={"status_code": 401, "tunnel_id": tunnel_id[:64],
                                              "http_method": scope.get("method", ""), "failure_source": code})
        data = unauthorized_body(code)
        await send({"type": "http.response.start", "status": 401, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
            (b"www-authenticate", CHALLENGE.encode())]})
        await send({"type": "http.response.body", "body": data})
