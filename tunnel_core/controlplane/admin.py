"""Admin control-plane client: tunnel CRUD on ``/v1/tunnels``, and the runtime keys and caller tokens of a
tunnel (``/v1/tunnels/{id}/runtime_keys``, ``/caller_tokens``; a self-hosted ``tunnel-client serve``
extension), with the admin key only.

Used by one-shot CLI commands (``admin tunnels``, ``runtimes``), so it is a plain synchronous
httpx2 client. Errors:

AdminError (TunnelClientError, exit 1)
├── AdminRequestError    the service answered non-2xx; carries method, path, status, request id,
│                        the envelope's code/type/message and a mitigation hint for the code
└── AdminTransportError  no usable answer (connect/TLS failure, timeout, undecodable body)

Messages never contain the key: it only travels in the Authorization header.
"""

from __future__ import annotations

import json
import secrets
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import httpx2
from pydantic import BaseModel, ConfigDict

from tunnel_core import CLIENT_NAME, USER_AGENT, __version__
from tunnel_core.config.refs import resolve_api_key
from tunnel_core.controlplane.client import MITIGATIONS
from tunnel_core.errors import ConfigError, TunnelClientError, UsageError

DEFAULT_BASE_URL = "https://api.openai.com"
REQUEST_TIMEOUT = 30.0
_INSTANCE_ID = secrets.token_hex(16)

# Hints for the codes the management API returns; runtime codes fall back to the shared table.
ADMIN_MITIGATIONS: dict[str, str] = {
    "tunnel_management_permission_required":
        "use an admin key or account with Tunnels Read and Manage for the target org/workspace",
    "tunnel_principal_association_unverified":
        "use an automatically verifiable org/workspace/tenant combination or request a reviewed association override",
    "tunnel_principal_limit_exceeded":
        "reduce each of tenant_ids, workspace_ids, and organization_ids to the documented maximum",
    "tunnel_active_organization_context_required":
        "select or pass the intended organization ID before managing tunnels",
    "invalid_api_key": "check the admin key reference (--admin-key or OPENAI_ADMIN_KEY) and that the key is active",
    "tunnel_not_found": "check the tunnel id; list tunnels with 'tunnel-client admin tunnels list --organization-id ...'",
    "runtime_key_not_found": "list the tunnel's keys with 'tunnel-client admin runtime-keys list --tunnel-id ...'",
    "caller_token_not_found": "list the tunnel's tokens with 'tunnel-client admin caller-tokens list --tunnel-id ...'",
}


def mitigation_for(code: str) -> str:
    return ADMIN_MITIGATIONS.get(code) or MITIGATIONS.get(code, "")


class AdminTunnel(BaseModel):
    """A tunnel as the management API returns it."""

    model_config = ConfigDict(extra="ignore")

    id: str
    name: str = ""
    description: str = ""
    creator: str | None = None
    tenant_ids: list[str] | None = None
    workspace_ids: list[str] | None = None
    organization_ids: list[str] | None = None
    request_id: str = ""

    def output(self) -> dict[str, Any]:
        """The CLI's JSON rendering: empty optional fields omitted, request id last when known."""
        out: dict[str, Any] = {"id": self.id, "name": self.name, "description": self.description}
        if self.creator:
            out["creator"] = self.creator
        for key in ("tenant_ids", "workspace_ids", "organization_ids"):
            value = getattr(self, key)
            if value:
                out[key] = value
        if self.request_id:
            out["request_id"] = self.request_id
        return out


class AdminTunnelList(BaseModel):
    model_config = ConfigDict(extra="ignore")

    tunnels: list[AdminTunnel] = []
    request_id: str = ""

    def output(self) -> dict[str, Any]:
        out: dict[str, Any] = {"tunnels": [t.model_copy(update={"request_id": ""}).output() for t in self.tunnels]}
        if self.request_id:
            out["request_id"] = self.request_id
        return out


CREDENTIAL_KINDS = {"runtime_key": "key", "caller_token": "token"}  # kind -> field holding the secret on create


class AdminCredential(BaseModel):
    """A runtime key or caller token of a tunnel; ``key`` / ``token`` only in the answer that minted it."""

    model_config = ConfigDict(extra="ignore")

    id: str
    key: str | None = None
    token: str | None = None
    tunnel_id: str = ""
    object: str = ""
    created_at: int = 0
    creator: str = ""
    revoked: bool | None = None
    request_id: str = ""

    def output(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True, exclude={"request_id"} if not self.request_id else set())


class AdminCredentialList(BaseModel):
    model_config = ConfigDict(extra="ignore")

    kind: str
    items: list[AdminCredential] = []
    request_id: str = ""

    def output(self) -> dict[str, Any]:
        out: dict[str, Any] = {f"{self.kind}s": [c.output() for c in self.items]}
        if self.request_id:
            out["request_id"] = self.request_id
        return out


class AdminError(TunnelClientError):
    """Base of admin client failures (exit 1)."""

    def json_error(self) -> dict[str, Any]:
        return {"error": {"message": str(self)}}


class AdminTransportError(AdminError):
    """The request got no usable answer: network, TLS, timeout or an undecodable body."""


class AdminRequestError(AdminError):
    """The management API answered with a non-2xx status."""

    def __init__(self, *, method: str, path: str, status_code: int, body: str, request_id: str, code: str,
                 error_type: str, message: str) -> None:
        self.method, self.path, self.status_code = method, path, status_code
        self.body, self.request_id = body, request_id
        self.code, self.error_type, self.message = code, error_type, message
        self.mitigation = mitigation_for(code)
        super().__init__(self._text())

    def _text(self) -> str:
        if self.method == "DELETE" and self.status_code == 404 and "Invalid URL" in self.body:
            text = (f"request {self.method} {self.path} failed: {self.status_code} delete is not exposed on this "
                    f"control-plane base URL yet; get/list/create/update may still work ({self.body[:300]})")
        else:
            parts = [p for p in (self.code, self.message or self.body[:300]) if p]
            detail = ": ".join(parts)
            if self.mitigation:
                detail = f"{detail} mitigation: {self.mitigation}" if detail else f"mitigation: {self.mitigation}"
            text = f"request {self.method} {self.path} failed: {self.status_code} {detail}".rstrip()
        if self.request_id:
            text += f" (x-request-id: {self.request_id})"
        return text

    def json_error(self) -> dict[str, Any]:
        err: dict[str, Any] = {"message": str(self), "method": self.method, "path": self.path,
                               "status_code": self.status_code}
        for key, value in (("request_id", self.request_id), ("code", self.code), ("type", self.error_type),
                           ("mitigation", self.mitigation)):
            if value:
                err[key] = value
        return {"error": err}


def _parse_error_body(body: bytes) -> tuple[str, str, str]:
    """(code, type, message) from the error envelope, or top-level message/type/code/detail."""
    try:
        data = json.loads(body) if body.strip() else None
    except ValueError:
        return "", "", ""
    if not isinstance(data, dict):
        return "", "", ""
    err = data["error"] if isinstance(data.get("error"), dict) else data
    message = err.get("message") or ""
    if not message and err is data and data.get("detail") is not None:
        detail = data["detail"]
        message = detail if isinstance(detail, str) else json.dumps(detail)
    return str(err.get("code") or ""), str(err.get("type") or ""), str(message)[:1024]


@dataclass(frozen=True, slots=True)
class AdminConnection:
    """Where and how to call the management API. ``key`` is resolved and must never be printed."""

    base_url: str
    url_path: str = ""
    key: str = field(default="", repr=False)
    ca_bundle: str = ""
    proxy: str | None = None


def _ssl_context(ca_bundle: str) -> ssl.SSLContext:
    from tunnel_core.httpio import default_ssl_context

    ctx = default_ssl_context()
    if ca_bundle:
        try:
            ctx.load_verify_locations(cafile=ca_bundle)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"--ca-bundle: cannot load {ca_bundle} ({exc}); give a PEM file of CA certificates") from None
    return ctx


def proxy_from_env(base_url: str, env: Mapping[str, str]) -> str | None:
    """HTTPS_PROXY / HTTP_PROXY from the given environment unless NO_PROXY or a loopback host excludes it."""
    parts = urlsplit(base_url)
    host = (parts.hostname or "").lower()
    if host in ("localhost", "127.0.0.1", "::1"):
        return None
    no_proxy = env.get("NO_PROXY") or env.get("no_proxy") or ""
    for entry in (e.strip().lower().lstrip(".") for e in no_proxy.split(",")):
        if entry == "*" or (entry and (host == entry or host.endswith("." + entry))):
            return None
    names = ("HTTPS_PROXY", "https_proxy") if parts.scheme == "https" else ("HTTP_PROXY", "http_proxy")
    return next((env[n] for n in names if env.get(n)), None)


def _check_base_url(value: str) -> str:
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"invalid control-plane.base-url: {value!r} is not an absolute http(s) URL")
    return value.strip().rstrip("/")


def _check_url_path(value: str) -> str:
    value = value.strip()
    if value in ("", "/"):
        return ""
    parts = urlsplit(value)
    if not value.startswith("/") or parts.scheme or parts.netloc or parts.query or parts.fragment:
        raise ConfigError(f"--control-plane.url-path / CONTROL_PLANE_URL_PATH: {value!r} must be a path starting with /")
    return value.rstrip("/")


def resolve_admin_key(flag: str, env: Mapping[str, str]) -> str:
    """``--admin-key`` (env:/file: only) > ``OPENAI_ADMIN_KEY``; raise ConfigError naming what to set."""
    flag = flag.strip()
    if flag:
        if not flag.startswith(("env:", "file:")):
            raise ConfigError("admin-key must use env: or file: prefixes")
        return resolve_api_key(flag, setting="--admin-key", env=env)
    if "OPENAI_ADMIN_KEY" in env:
        if not env["OPENAI_ADMIN_KEY"].strip():
            raise ConfigError("OPENAI_ADMIN_KEY must be non-empty")
        return resolve_api_key("env:OPENAI_ADMIN_KEY", setting="OPENAI_ADMIN_KEY", env=env)
    raise ConfigError("admin key is required; set --admin-key or OPENAI_ADMIN_KEY")


def read_only_key(flag: str, env: Mapping[str, str]) -> str:
    """The key for a read-only ``get``: the admin key, else CONTROL_PLANE_API_KEY, else OPENAI_API_KEY."""
    admin_unset = flag.strip() in ("", "env:OPENAI_ADMIN_KEY") and not env.get("OPENAI_ADMIN_KEY", "").strip()
    if not admin_unset:
        return resolve_admin_key(flag, env)
    for name in ("CONTROL_PLANE_API_KEY", "OPENAI_API_KEY"):
        if env.get(name, "").strip():
            return resolve_api_key(f"env:{name}", setting=name, env=env)
    raise ConfigError("tunnel get requires a runtime or admin key; set CONTROL_PLANE_API_KEY, OPENAI_API_KEY, "
                      "OPENAI_ADMIN_KEY, or --admin-key")


def connection_from_flags(
    env: Mapping[str, str], *, base_url: str | None, url_path: str | None, ca_bundle: str | None, key: str,
) -> AdminConnection:
    """Flags > environment > defaults for the base URL, URL path and CA bundle."""
    resolved_base = _check_base_url(base_url or env.get("CONTROL_PLANE_BASE_URL") or DEFAULT_BASE_URL)
    return AdminConnection(
        base_url=resolved_base,
        url_path=_check_url_path(url_path if url_path is not None else env.get("CONTROL_PLANE_URL_PATH", "")),
        key=key,
        ca_bundle=(ca_bundle if ca_bundle is not None else env.get("CA_BUNDLE", "")).strip(),
        proxy=proxy_from_env(resolved_base, env),
    )


def update_changes(
    *,
    name: str | None,
    description: str | None,
    organization_ids: list[str] | None,
    workspace_ids: list[str] | None,
    org_label: str = "organization_ids",
    ws_label: str = "workspace_ids",
) -> dict[str, Any]:
    """The body of a tunnel update: only the fields given (id lists replace); empty when nothing changes."""
    changes: dict[str, Any] = {}
    if name is not None:
        changes["name"] = name.strip()
    if description is not None:
        changes["description"] = description
    if organization_ids is not None:
        changes["organization_ids"] = clean_ids(organization_ids, org_label)
    if workspace_ids is not None:
        changes["workspace_ids"] = clean_ids(workspace_ids, ws_label)
    return changes


def clean_ids(values: Sequence[str] | None, flag: str) -> list[str]:
    """Split comma lists, trim, drop empties; duplicates are an error (as the reference does)."""
    out: list[str] = []
    for raw in values or []:
        out += [v.strip() for v in raw.split(",") if v.strip()]
    dups = sorted({v for v in out if out.count(v) > 1})
    if dups:
        raise UsageError(f"duplicate {flag} values: {', '.join(dups)}")
    return out


class AdminClient:
    """``/v1/tunnels`` CRUD. Use as a context manager, or call ``close``."""

    def __init__(self, conn: AdminConnection, *, timeout: float = REQUEST_TIMEOUT,
                 transport: httpx2.BaseTransport | None = None) -> None:
        if not conn.key:
            raise ConfigError("admin client: admin key is required")
        self._conn = conn
        self._client = httpx2.Client(
            timeout=timeout, trust_env=False, follow_redirects=False, proxy=conn.proxy,
            verify=_ssl_context(conn.ca_bundle) if conn.base_url.startswith("https") else True,
            transport=transport,
        )

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def _path(self, suffix: str) -> str:
        return f"{self._conn.url_path}/v1/tunnels{suffix}"

    def _call(self, method: str, suffix: str, *, params: dict[str, str] | None = None,
              body: dict[str, Any] | None = None) -> tuple[Any, str]:
        path = self._path(suffix)
        headers = {
            "Authorization": f"Bearer {self._conn.key}",
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
            "X-Tunnel-Client-Name": CLIENT_NAME,
            "X-Tunnel-Client-Version": __version__,
            "X-Tunnel-Client-Instance-Id": _INSTANCE_ID,
        }
        content = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            content = json.dumps(body).encode()
        try:
            resp = self._client.request(method, self._conn.base_url + path, params=params, headers=headers,
                                        content=content)
        except httpx2.HTTPError as exc:
            from tunnel_core.networds import describe_cause

            raise AdminTransportError(describe_cause(exc, self._conn.base_url + path)) from None
        request_id = resp.headers.get("x-request-id", "")
        if not 200 <= resp.status_code < 300:
            raw = resp.content[:4096]
            code, typ, message = _parse_error_body(raw)
            raise AdminRequestError(method=method, path=path, status_code=resp.status_code,
                                    body=raw.decode("utf-8", "replace").strip(), request_id=request_id, code=code,
                                    error_type=typ, message=message)
        try:
            return (resp.json() if resp.content.strip() else {}), request_id
        except ValueError:
            raise AdminTransportError(f"request {method} {path}: decode response: not JSON") from None

    def _tunnel(self, data: Any, request_id: str, method: str, path: str) -> AdminTunnel:
        if not isinstance(data, dict) or not isinstance(data.get("id"), str):
            raise AdminTransportError(f"request {method} {path}: decode response: no tunnel object")
        return AdminTunnel.model_validate({**data, "request_id": request_id})

    def create(self, *, name: str, description: str, organization_ids: Sequence[str] = (),
               workspace_ids: Sequence[str] = (), tenant_ids: Sequence[str] = ()) -> AdminTunnel:
        body: dict[str, Any] = {"name": name, "description": description}
        for key, ids in (("tenant_ids", tenant_ids), ("workspace_ids", workspace_ids),
                         ("organization_ids", organization_ids)):
            if ids:
                body[key] = list(ids)
        data, rid = self._call("POST", "", body=body)
        return self._tunnel(data, rid, "POST", self._path(""))

    def get(self, tunnel_id: str) -> AdminTunnel:
        suffix = "/" + quote(tunnel_id, safe="")
        data, rid = self._call("GET", suffix)
        return self._tunnel(data, rid, "GET", self._path(suffix))

    def list(self, *, organization_id: str = "", workspace_id: str = "", tenant_id: str = "") -> AdminTunnelList:
        params = {k: v for k, v in (("organization_id", organization_id), ("workspace_id", workspace_id),
                                    ("tenant_id", tenant_id)) if v}
        data, rid = self._call("GET", "", params=params)
        if not isinstance(data, dict) or not isinstance(data.get("tunnels", []), list):
            raise AdminTransportError(f"request GET {self._path('')}: decode response: no tunnels list")
        return AdminTunnelList.model_validate({"tunnels": data.get("tunnels", []), "request_id": rid})

    def update(self, tunnel_id: str, changes: Mapping[str, Any]) -> AdminTunnel:
        """Send only the given fields (name, description, *_ids); id lists replace the stored ones."""
        suffix = "/" + quote(tunnel_id, safe="")
        data, rid = self._call("POST", suffix, body=dict(changes))
        return self._tunnel(data, rid, "POST", self._path(suffix))

    def delete(self, tunnel_id: str) -> AdminTunnel:
        suffix = "/" + quote(tunnel_id, safe="")
        data, rid = self._call("DELETE", suffix)
        return self._tunnel(data, rid, "DELETE", self._path(suffix))

    def create_credential(self, tunnel_id: str, kind: str) -> AdminCredential:
        """Mint a ``runtime_key`` or ``caller_token`` for one tunnel; the answer holds the secret (once)."""
        suffix = f"/{quote(tunnel_id, safe='')}/{kind}s"
        data, rid = self._call("POST", suffix, body={})
        return self._credential(data, rid, "POST", self._path(suffix), secret=CREDENTIAL_KINDS[kind])

    def list_credentials(self, tunnel_id: str, kind: str) -> AdminCredentialList:
        suffix = f"/{quote(tunnel_id, safe='')}/{kind}s"
        data, rid = self._call("GET", suffix)
        items = data.get(f"{kind}s") if isinstance(data, dict) else None
        if not isinstance(items, list):
            raise AdminTransportError(f"request GET {self._path(suffix)}: decode response: no {kind}s list")
        return AdminCredentialList.model_validate({"kind": kind, "items": items, "request_id": rid})

    def revoke_credential(self, tunnel_id: str, kind: str, credential_id: str) -> AdminCredential:
        suffix = f"/{quote(tunnel_id, safe='')}/{kind}s/{quote(credential_id, safe='')}"
        data, rid = self._call("DELETE", suffix)
        return self._credential(data, rid, "DELETE", self._path(suffix))

    def _credential(self, data: Any, request_id: str, method: str, path: str, secret: str = "") -> AdminCredential:
        if not isinstance(data, dict) or not isinstance(data.get("id"), str) or (
                secret and not isinstance(data.get(secret), str)):
            raise AdminTransportError(f"request {method} {path}: decode response: no credential object")
        return AdminCredential.model_validate({**data, "request_id": request_id})
