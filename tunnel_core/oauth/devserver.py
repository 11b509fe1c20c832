"""A tiny in-memory OAuth 2.1 authorization server for the demo MCP server (``dev mcp-stub``).

Enough of the real thing to exercise the whole MCP authorization flow locally:

- Protected Resource Metadata (RFC 9728) at ``/.well-known/oauth-protected-resource[/mcp]``;
- authorization-server metadata (RFC 8414) at ``/.well-known/oauth-authorization-server``;
- dynamic client registration (RFC 7591) at ``/register``;
- ``/authorize``: authorization code with PKCE S256 only, approved automatically (it
  redirects straight back to the registered ``redirect_uri`` with ``code`` and ``state``);
- ``/token``: ``authorization_code`` and ``refresh_token`` grants (refresh tokens rotate);
- ``/revoke`` (RFC 7009) and an empty ``/jwks``;
- with ``require_auth``, ``/mcp`` answers 401 with
  ``WWW-Authenticate: Bearer resource_metadata="<base>/.well-known/oauth-protected-resource/mcp"``
  unless a live access token is presented.

URLs are built from the request's ``Host``, so the same server works behind a proxy or a
port mapping. Everything lives in memory and is lost on restart; this is a demo, not an
identity provider.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

PRMD_PATH = "/.well-known/oauth-protected-resource"
ASM_PATH = "/.well-known/oauth-authorization-server"
CODE_TTL = 300.0
SECRET_METHODS = ("client_secret_post", "client_secret_basic")


@dataclass(slots=True)
class StubOAuthOptions:
    require_auth: bool = False  # protect /mcp with bearer tokens
    issuer: str = ""  # "" = the request's base URL; anything else demonstrates an issuer mismatch
    authorization_server: str = ""  # PRMD authorization_servers[0]; "" = this server
    scopes: tuple[str, ...] = ("read", "write")
    token_ttl: int = 3600


@dataclass(slots=True)
class _Client:
    client_id: str
    client_secret: str | None
    redirect_uris: list[str]
    auth_method: str
    metadata: dict[str, Any]


@dataclass(slots=True)
class _Code:
    client_id: str
    redirect_uri: str
    challenge: str
    scope: str
    resource: str
    expires: float


@dataclass(slots=True)
class _Token:
    client_id: str
    scope: str
    resource: str
    expires: float = 0.0  # 0: refresh token, no expiry


@dataclass(slots=True)
class DevAuthServer:
    """State and routes of the demo authorization server."""

    options: StubOAuthOptions = field(default_factory=StubOAuthOptions)
    clients: dict[str, _Client] = field(default_factory=dict)
    codes: dict[str, _Code] = field(default_factory=dict)
    access: dict[str, _Token] = field(default_factory=dict)
    refresh: dict[str, _Token] = field(default_factory=dict)

    # -- metadata --

    def prmd(self, base: str) -> dict[str, Any]:
        return {"resource": f"{base}/mcp", "authorization_servers": [self.options.authorization_server or base],
                "scopes_supported": list(self.options.scopes), "bearer_methods_supported": ["header"]}

    def asm(self, base: str) -> dict[str, Any]:
        return {
            "issuer": self.options.issuer or base,
            "authorization_endpoint": f"{base}/authorize",
            "token_endpoint": f"{base}/token",
            "registration_endpoint": f"{base}/register",
            "revocation_endpoint": f"{base}/revoke",
            "jwks_uri": f"{base}/jwks",
            "scopes_supported": list(self.options.scopes),
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "token_endpoint_auth_methods_supported": ["none", *SECRET_METHODS],
            "code_challenge_methods_supported": ["S256"],
        }

    def token_valid(self, token: str) -> bool:
        t = self.access.get(token)
        return t is not None and t.expires > time.time()

    # -- endpoints --

    def routes(self) -> list[Route]:
        async def prmd(request: Request) -> Response:
            return JSONResponse(self.prmd(base_url(request)))

        async def asm(request: Request) -> Response:
            return JSONResponse(self.asm(base_url(request)))

        async def jwks(_: Request) -> Response:
            return JSONResponse({"keys": []})

        return [
            Route(PRMD_PATH, prmd, methods=["GET"]),
            Route(PRMD_PATH + "/mcp", prmd, methods=["GET"]),
            Route(ASM_PATH, asm, methods=["GET"]),
            Route("/jwks", jwks, methods=["GET"]),
            Route("/register", self._register, methods=["POST"]),
            Route("/authorize", self._authorize, methods=["GET"]),
            Route("/token", self._token, methods=["POST"]),
            Route("/revoke", self._revoke, methods=["POST"]),
        ]

    async def _register(self, request: Request) -> Response:
        try:
            meta = await request.json()
        except ValueError:
            meta = None
        if not isinstance(meta, dict):
            return _oauth_error("invalid_client_metadata", "the body must be a JSON object")
        uris = meta.get("redirect_uris")
        if not isinstance(uris, list) or not uris or not all(_redirect_ok(u) for u in uris):
            return _oauth_error("invalid_redirect_uri", "redirect_uris must be absolute http(s) URLs")
        method = meta.get("token_endpoint_auth_method") or "client_secret_basic"
        if method not in ("none", *SECRET_METHODS):
            return _oauth_error("invalid_client_metadata", f"unsupported token_endpoint_auth_method {method!r}")
        client = _Client("client_" + secrets.token_urlsafe(12),
                         secrets.token_urlsafe(24) if method in SECRET_METHODS else None, list(uris), method, meta)
        self.clients[client.client_id] = client
        body = {**meta, "client_id": client.client_id, "client_id_issued_at": int(time.time()),
                "token_endpoint_auth_method": method, "redirect_uris": client.redirect_uris}
        if client.client_secret:
            body.update(client_secret=client.client_secret, client_secret_expires_at=0)
        return JSONResponse(body, status_code=201, headers={"Cache-Control": "no-store"})

    async def _authorize(self, request: Request) -> Response:
        q = request.query_params
        client = self.clients.get(q.get("client_id", ""))
        redirect_uri = q.get("redirect_uri", "")
        if client is None:
            return _oauth_error("invalid_client", "unknown client_id")
        if redirect_uri not in client.redirect_uris:
            return _oauth_error("invalid_request", "redirect_uri is not registered for this client")

        def back(**params: str) -> Response:
            if q.get("state"):
                params["state"] = q["state"]
            sep = "&" if "?" in redirect_uri else "?"
            return RedirectResponse(f"{redirect_uri}{sep}{urlencode(params)}", status_code=302)

        if q.get("response_type") != "code":
            return back(error="unsupported_response_type")
        if q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
            return back(error="invalid_request", error_description="PKCE with code_challenge_method=S256 is required")
        scope = q.get("scope") or " ".join(self.options.scopes)
        code = secrets.token_urlsafe(24)
        self.codes[code] = _Code(client.client_id, redirect_uri, q["code_challenge"], scope, q.get("resource", ""),
                                 time.time() + CODE_TTL)
        return back(code=code)  # approved without asking: this is a local demo

    def _client_auth(self, request: Request, form: dict[str, str]) -> _Client | None:
        client_id, secret = form.get("client_id", ""), form.get("client_secret")
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("basic "):
            try:
                client_id, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
            except ValueError:
                return None
        client = self.clients.get(client_id)
        if client is None:
            return None
        if client.client_secret is not None and not hmac.compare_digest(secret or "", client.client_secret):
            return None
        return client

    async def _token(self, request: Request) -> Response:
        form = {k: str(v) for k, v in (await request.form()).items()}
        client = self._client_auth(request, form)
        if client is None:
            return _oauth_error("invalid_client", "client authentication failed", 401)
        grant = form.get("grant_type")
        if grant == "authorization_code":
            code = self.codes.pop(form.get("code", ""), None)
            if code is None or code.expires < time.time() or code.client_id != client.client_id:
                return _oauth_error("invalid_grant", "unknown, used or expired code")
            if form.get("redirect_uri") != code.redirect_uri:
                return _oauth_error("invalid_grant", "redirect_uri does not match the authorization request")
            digest = hashlib.sha256(form.get("code_verifier", "").encode()).digest()
            if base64.urlsafe_b64encode(digest).decode().rstrip("=") != code.challenge:
                return _oauth_error("invalid_grant", "PKCE verification failed")
            return self._issue(client.client_id, code.scope, form.get("resource") or code.resource)
        if grant == "refresh_token":
            old = self.refresh.pop(form.get("refresh_token", ""), None)
            if old is None or old.client_id != client.client_id:
                return _oauth_error("invalid_grant", "unknown refresh token")
            return self._issue(client.client_id, form.get("scope") or old.scope, old.resource)
        return _oauth_error("unsupported_grant_type", f"grant_type {grant!r} is not supported")

    def _issue(self, client_id: str, scope: str, resource: str) -> Response:
        access, refresh = "at_" + secrets.token_urlsafe(24), "rt_" + secrets.token_urlsafe(24)
        self.access[access] = _Token(client_id, scope, resource, time.time() + self.options.token_ttl)
        self.refresh[refresh] = _Token(client_id, scope, resource)
        return JSONResponse({"access_token": access, "token_type": "Bearer", "expires_in": self.options.token_ttl,
                             "refresh_token": refresh, "scope": scope},
                            headers={"Cache-Control": "no-store", "Pragma": "no-cache"})

    async def _revoke(self, request: Request) -> Response:
        form = {k: str(v) for k, v in (await request.form()).items()}
        if self._client_auth(request, form) is None:
            return _oauth_error("invalid_client", "client authentication failed", 401)
        token = form.get("token", "")
        self.access.pop(token, None)
        self.refresh.pop(token, None)
        return Response(status_code=200)

    # -- bearer protection of /mcp --

    def protect(self, app: ASGIApp) -> ASGIApp:
        """``app`` with bearer-token protection of ``/mcp`` when ``require_auth`` is set."""
        if not self.options.require_auth:
            return app
        return _BearerGuard(app, self)


def base_url(request: Request) -> str:
    return f"{request.url.scheme}://{request.headers.get('host', request.url.netloc)}"


def _redirect_ok(uri: Any) -> bool:
    if not isinstance(uri, str):
        return False
    parts = urlsplit(uri)
    return parts.scheme in ("http", "https") and bool(parts.netloc) and not parts.fragment


def _oauth_error(code: str, description: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": code, "error_description": description}, status_code=status,
                        headers={"Cache-Control": "no-store"})


class _BearerGuard:
    def __init__(self, app: ASGIApp, server: DevAuthServer) -> None:
        self.app = app
        self.server = server

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not (path == "/mcp" or path.startswith("/mcp/")):
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        auth = request.headers.get("authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        if token and self.server.token_valid(token):
            await self.app(scope, receive, send)
            return
        metadata = f"{base_url(request)}{PRMD_PATH}/mcp"
        challenge = f'Bearer resource_metadata="{metadata}"'
        if token:
            challenge = f'Bearer error="invalid_token", error_description="unknown or expired token", ' \
                        f'resource_metadata="{metadata}"'
        body = {"error": "invalid_token" if token else "unauthorized",
                "error_description": "authentication required: sign in via OAuth"}
        response = JSONResponse(body, status_code=401, headers={"WWW-Authenticate": challenge})
        await response(scope, receive, send)

