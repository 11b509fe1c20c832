"""Admin API of the local tunnel service: tunnel CRUD authorised by admin keys.

Routes (``Authorization: Bearer <admin key>``):

``POST /v1/tunnels``                create ``{name, description?, organization_ids?, workspace_ids?, tenant_ids?}``
``GET /v1/tunnels?<scope>=<id>``    list by exactly one of organization_id / workspace_id / tenant_id
``GET /v1/tunnels/{id}``            the full tunnel; a *runtime* key gets the runtime metadata view instead
``POST /v1/tunnels/{id}``           update only the given fields (id lists replace)
``DELETE /v1/tunnels/{id}``         delete, with every credential bound to it; answers with the deleted tunnel
``POST /v1/tunnels/{id}/runtime_keys``              mint a runtime key for the tunnel (``key`` shown once)
``GET /v1/tunnels/{id}/runtime_keys``               list them (ids and dates, never the key)
``DELETE /v1/tunnels/{id}/runtime_keys/{key_id}``   revoke one
``.../caller_tokens[/{token_id}]``                  the same for front-door caller tokens (``token``)

Admin keys are distinct from runtime keys: a runtime key on a management route is 403
``tunnel_management_permission_required``. An admin key may be scoped to one organization
(``ORG=env:NAME`` on the command line): it then manages only tunnels attached to that
organization and may not attach others, nor mint or list credentials of others' tunnels (they are
404 to it). Every answer carries ``x-request-id``; errors use the
``{"error": {message, type, param, code}}`` envelope. Tunnels and credentials live in the
registry (``devservice.registry``): a change is seen by every instance sharing it, and a created
tunnel is pollable at once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tunnel_core.devservice.broker import Broker
from tunnel_core.devservice.credentials import CALLER_TOKEN, RUNTIME_KEY, Gate, mint
from tunnel_core.devservice.registry import RegistryUnavailable
from tunnel_core.devservice.store import SCOPES, CredentialRecord, TunnelRecord
from tunnel_core.wire.models import TUNNEL_ID_RE

log = logging.getLogger("tunnel_client.tunnelservice.admin")

MAX_PRINCIPALS = 10  # per kind, like the hosted service's documented limit
MAX_NAME = 256
MAX_DESCRIPTION = 2048
ID_FIELDS = ("organization_ids", "workspace_ids", "tenant_ids")
_PRINCIPAL_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
_SCOPE_SPEC = re.compile(r"^([A-Za-z0-9_.:-]+)=((?:env|file):.+)$")

Endpoint = Callable[[Request], Awaitable[Response]]
SECRET_FIELD = {RUNTIME_KEY: "key", CALLER_TOKEN: "token"}  # the field of the create answer holding the secret


@dataclass(frozen=True, slots=True)
class AdminKey:
    """A resolved admin key; ``organization_id`` None means it may manage any organization."""

    key: str = field(repr=False)
    organization_id: str | None = None

    @property
    def fingerprint(self) -> str:
        return "admin_key_" + hashlib.sha256(self.key.encode()).hexdigest()[:12]


def split_admin_key_spec(spec: str) -> tuple[str | None, str]:
    """``env:NAME`` -> (None, ref); ``org_1=env:NAME`` -> ("org_1", ref). The reference is not resolved here."""
    m = _SCOPE_SPEC.match(spec.strip())
    if m:
        return m.group(1), m.group(2)
    return None, spec.strip()


class _Problem(Exception):
    def __init__(self, status: int, message: str, code: str | None, *, param: str | None = None,
                 typ: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.param, self.typ = status, message, code, param, typ


def _request_id() -> str:
    return "req_" + secrets.token_hex(16)


def _error(p: _Problem, request_id: str) -> JSONResponse:
    body = {"error": {"message": p.message, "type": p.typ, "param": p.param, "code": p.code}}
    return JSONResponse(body, status_code=p.status, headers={"x-request-id": request_id})


def _ok(data: dict[str, Any], request_id: str) -> JSONResponse:
    return JSONResponse(data, headers={"x-request-id": request_id})


def _ids(body: dict[str, Any], key: str) -> tuple[str, ...] | None:
    if key not in body or body[key] is None:
        return None
    value = body[key]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _Problem(400, f"Invalid type for '{key}': expected an array of strings.", "invalid_type", param=key)
    cleaned = [v.strip() for v in value]
    for v in cleaned:
        if not _PRINCIPAL_RE.match(v):
            raise _Problem(400, f"Invalid value in '{key}': {v[:64]!r} is not an id.", "invalid_value", param=key)
    if len(set(cleaned)) != len(cleaned):
        raise _Problem(400, f"Duplicate values in '{key}'.", "invalid_value", param=key)
    if len(cleaned) > MAX_PRINCIPALS:
        raise _Problem(400, f"'{key}' has {len(cleaned)} entries; at most {MAX_PRINCIPALS} are allowed.",
                       "tunnel_principal_limit_exceeded", param=key)
    return tuple(cleaned)


def _text(body: dict[str, Any], key: str, limit: int, *, required: bool) -> str | None:
    if key not in body or body[key] is None:
        if required:
            raise _Problem(400, f"Missing required parameter: '{key}'.", "missing_required_parameter", param=key)
        return None
    value = body[key]
    if not isinstance(value, str):
        raise _Problem(400, f"Invalid type for '{key}': expected a string.", "invalid_type", param=key)
    if required and not value.strip():
        raise _Problem(400, f"'{key}' must not be empty.", "invalid_value", param=key)
    if len(value) > limit:
        raise _Problem(400, f"'{key}' is longer than {limit} characters.", "invalid_value", param=key)
    return value.strip() if key == "name" else value


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = json.loads(raw) if raw.strip() else None
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise _Problem(400, "The request body must be a JSON object.", "invalid_json_payload")
    unknown = sorted(set(body) - {"name", "description", *ID_FIELDS})
    if unknown:
        raise _Problem(400, f"Unrecognized request argument supplied: {unknown[0]}", "unknown_parameter",
                       param=unknown[0])
    return body


def build_admin_routes(
    broker: Broker, gate: Gate, *, admin_keys: dict[str, str | None], runtime_metadata: Endpoint,
) -> list[Route]:
    """Routes to put before the runtime ones; GET /v1/tunnels/{id} hands non-admin callers to ``runtime_metadata``."""
    keys = [AdminKey(k, org) for k, org in admin_keys.items()]
    registry = gate.registry
    if registry.persistent:
        log.info("tunnel registry loaded", extra={"where": registry.where, "tunnels": len(registry.tunnels)})

    def bearer(request: Request) -> str:
        auth = request.headers.get("authorization", "")
        return auth[7:].strip() if auth.lower().startswith("bearer ") else ""

    def admin_of(request: Request) -> AdminKey | None:
        token = bearer(request)
        if not token:
            return None
        return next((k for k in keys if hmac.compare_digest(token, k.key)), None)

    def require_admin(request: Request) -> AdminKey:
        key = admin_of(request)
        if key is not None:
            return key
        if gate.is_runtime_key(bearer(request)):
            raise _Problem(403, "Runtime API keys cannot manage tunnels; use an admin key with Tunnels Read and "
                           "Manage permission.", "tunnel_management_permission_required", typ="permission_error")
        raise _Problem(401, "Missing or invalid admin API key.", "invalid_api_key")

    def visible(key: AdminKey, rec: TunnelRecord) -> bool:
        return key.organization_id is None or key.organization_id in rec.organization_ids

    def check_attach(key: AdminKey, orgs: tuple[str, ...]) -> None:
        if key.organization_id is None:
            return
        if orgs != (key.organization_id,):
            raise _Problem(403, f"This admin key manages tunnels of organization {key.organization_id} only; "
                           f"set organization_ids to [{key.organization_id!r}].",
                           "tunnel_management_permission_required", param="organization_ids",
                           typ="permission_error")

    def lookup(tunnel_id: str) -> TunnelRecord | None:
        rec = registry.tunnels.get(tunnel_id)
        if rec is None and tunnel_id in broker.tunnels:
            q = broker.tunnels[tunnel_id]  # served from --tunnel-id: no principals, not yet stored
            rec = TunnelRecord(id=tunnel_id, name=q.name, description=q.description)
        return rec

    def tunnel_for(request: Request, key: AdminKey) -> TunnelRecord:
        tunnel_id = request.path_params["tunnel_id"]
        if not TUNNEL_ID_RE.match(tunnel_id):
            raise _Problem(400, "The tunnel ID is not a tunnel_<32 lowercase alphanumeric> value.",
                           "invalid_tunnel_id_format", param="tunnel_id")
        rec = lookup(tunnel_id)
        if rec is None or not visible(key, rec):
            raise _Problem(404, f"Tunnel {tunnel_id} not found.", "tunnel_not_found", typ="not_found_error")
        return rec

    def handle(fn: Callable[[Request, str], Awaitable[Response]]) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            request_id = _request_id()
            try:
                try:
                    return await fn(request, request_id)
                except RegistryUnavailable:
                    raise _Problem(503, "The tunnel registry is unavailable; retry.", "tunnel_transport_unavailable",
                                   typ="server_error") from None
            except _Problem as p:
                log.info("admin request refused", extra={"method": request.method, "path": request.url.path,
                                                         "status_code": p.status, "error_code": p.code,
                                                         "request_id": request_id})
                return _error(p, request_id)

        return endpoint

    async def create(request: Request, request_id: str) -> Response:
        key = require_admin(request)
        body = await _json_body(request)
        name = _text(body, "name", MAX_NAME, required=True) or ""
        description = _text(body, "description", MAX_DESCRIPTION, required=False) or ""
        orgs, wss, tenants = (_ids(body, f) or () for f in ID_FIELDS)
        if not (orgs or wss or tenants):
            raise _Problem(400, "A tunnel needs at least one of organization_ids, workspace_ids or tenant_ids.",
                           "missing_required_parameter", param="organization_ids")
        check_attach(key, orgs)
        rec = TunnelRecord(id="tunnel_" + secrets.token_hex(16), name=name, description=description,
                           creator=key.fingerprint, organization_ids=orgs, workspace_ids=wss, tenant_ids=tenants)
        rec = await registry.put_tunnel(rec)
        log.info("tunnel created", extra={"tunnel_id": rec.id, "request_id": request_id})
        return _ok(rec.to_json(), request_id)

    async def list_tunnels(request: Request, request_id: str) -> Response:
        key = require_admin(request)
        given = [(s, request.query_params[s]) for s in SCOPES if request.query_params.get(s)]
        if len(given) != 1:
            raise _Problem(400, "Provide exactly one of organization_id, workspace_id or tenant_id.",
                           "missing_required_parameter", param="organization_id")
        scope, value = given[0]
        if scope == "organization_id" and key.organization_id not in (None, value):
            raise _Problem(403, f"This admin key cannot list tunnels of organization {value}.",
                           "tunnel_management_permission_required", param="organization_id",
                           typ="permission_error")
        found = [r.to_json() for r in sorted(registry.tunnels.values(), key=lambda t: (t.created_at, t.id))
                 if r.in_scope(scope, value) and visible(key, r)]
        return _ok({"tunnels": found}, request_id)

    async def get_tunnel(request: Request, request_id: str) -> Response:
        key = admin_of(request)
        if key is None:
            resp = await runtime_metadata(request)
            resp.headers["x-request-id"] = request_id
            return resp
        return _ok(tunnel_for(request, key).to_json(), request_id)

    async def update(request: Request, request_id: str) -> Response:
        key = require_admin(request)
        rec = tunnel_for(request, key)
        body = await _json_body(request)
        changes: dict[str, Any] = {}
        name = _text(body, "name", MAX_NAME, required="name" in body)
        if name is not None:
            changes["name"] = name
        description = _text(body, "description", MAX_DESCRIPTION, required=False)
        if description is not None:
            changes["description"] = description
        for f in ID_FIELDS:
            ids = _ids(body, f)
            if ids is not None:
                changes[f] = ids
        if not changes:
            raise _Problem(400, "Provide at least one field to update.", "missing_required_parameter")
        if "organization_ids" in changes:
            check_attach(key, changes["organization_ids"])
        new = replace(rec, **changes)
        if not (new.organization_ids or new.workspace_ids or new.tenant_ids):
            raise _Problem(400, "A tunnel needs at least one of organization_ids, workspace_ids or tenant_ids.",
                           "missing_required_parameter", param="organization_ids")
        new = await registry.put_tunnel(new)
        log.info("tunnel updated", extra={"tunnel_id": new.id, "fields": ",".join(sorted(changes)),
                                          "request_id": request_id})
        return _ok(new.to_json(), request_id)

    async def delete(request: Request, request_id: str) -> Response:
        key = require_admin(request)
        rec = tunnel_for(request, key)
        if rec.id not in registry.tunnels:
            raise _Problem(409, f"Tunnel {rec.id} is served from --tunnel-id; remove the flag and restart to stop "
                           "serving it.", "tunnel_configured_by_flag", param="tunnel_id")
        await registry.delete_tunnel(rec.id)  # waiting callers are released as the broker follows the registry
        log.info("tunnel deleted", extra={"tunnel_id": rec.id, "request_id": request_id})
        return _ok(rec.to_json(), request_id)

    def credential_routes(kind: str) -> list[Route]:
        """Mint, list and revoke one kind of credential of one tunnel."""
        label = kind.replace("_", " ")

        async def create(request: Request, request_id: str) -> Response:
            key = require_admin(request)
            rec = tunnel_for(request, key)
            cred_id, secret, dig = mint(kind)
            cred = CredentialRecord(id=cred_id, kind=kind, tunnel_id=rec.id, digest=dig, creator=key.fingerprint)
            if not await registry.add_credential(cred, static_tunnel=rec.id not in registry.tunnels):
                raise _Problem(404, f"Tunnel {rec.id} not found.", "tunnel_not_found", typ="not_found_error")
            log.info(f"{label} created", extra={"tunnel_id": rec.id, "credential_id": cred_id,
                                                 "request_id": request_id})
            return _ok({**cred.to_json(), SECRET_FIELD[kind]: secret}, request_id)

        async def listing(request: Request, request_id: str) -> Response:
            rec = tunnel_for(request, require_admin(request))
            found = sorted(registry.credentials_of(kind, rec.id).values(), key=lambda c: (c.created_at, c.id))
            return _ok({f"{kind}s": [c.to_json() for c in found]}, request_id)

        async def revoke(request: Request, request_id: str) -> Response:
            rec = tunnel_for(request, require_admin(request))
            wanted = request.path_params["credential_id"]
            gone = await registry.revoke_credential(kind, rec.id, wanted)
            if gone is None:
                raise _Problem(404, f"No {label} {wanted[:64]!r} on tunnel {rec.id}.", f"{kind}_not_found",
                               typ="not_found_error")
            log.info(f"{label} revoked", extra={"tunnel_id": rec.id, "credential_id": gone.id,
                                                "request_id": request_id})
            return _ok({**gone.to_json(), "revoked": True}, request_id)

        async def collection(request: Request, request_id: str) -> Response:
            return await (create if request.method == "POST" else listing)(request, request_id)

        path = f"/v1/tunnels/{{tunnel_id}}/{kind}s"
        return [Route(path, handle(collection), methods=["GET", "POST"]),
                Route(path + "/{credential_id}", handle(revoke), methods=["DELETE"])]

    async def collection(request: Request, request_id: str) -> Response:
        if request.method == "POST":
            return await create(request, request_id)
        return await list_tunnels(request, request_id)

    async def item(request: Request, request_id: str) -> Response:
        if request.method == "GET":
            return await get_tunnel(request, request_id)
        if request.method == "POST":
            return await update(request, request_id)
        return await delete(request, request_id)

    return [
        Route("/v1/tunnels", handle(collection), methods=["GET", "POST"]),
        Route("/v1/tunnels/{tunnel_id}", handle(item), methods=["GET", "POST", "DELETE"]),
        *credential_routes(RUNTIME_KEY),
        *credential_routes(CALLER_TOKEN),
    ]
