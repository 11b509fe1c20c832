"""Runtime control-plane client: tunnel metadata, long poll, and response POSTs.

One keep-alive connection pool (``tunnel_core.httpio``) is
shared by every call of the process. Every request carries the Bearer runtime key, the client identity headers and
the current ``X-Tunnel-MCP-Server-Info`` value, plus the operator's ``--control-plane.extra-headers``
(which can never replace one of the client's own headers).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import quote

import anyio

from tunnel_core import CLIENT_NAME, USER_AGENT, __version__
from tunnel_core.httpio import HTTPPool
from tunnel_core.records import record
from tunnel_core.wire.messages import ResponsePayload, TunnelClientMetadata, commands_from_poll_body

log = logging.getLogger("tunnel_client.controlplane")

RETRY_AFTER_CAP = 60.0
WIRE_PROTOCOL_VERSION = "2026-08-25"

# Mitigation hints keyed by the service's stable error codes (shown in logs and CLI output).
MITIGATIONS: dict[str, str] = {
    "invalid_tunnel_id_format": "use the exact tunnel_... id from the tunnel settings",
    "rate_limit_exceeded": "reduce request volume; the client backs off and retries",
    "tunnel_transport_unavailable": "the tunnel service is unavailable; the client retries with backoff",
    "tunnel_use_forbidden": "check that the runtime API key belongs to a project allowed to use this tunnel",
    "tunnel_active_organization_required": "set --control-plane.organization-id / CONTROL_PLANE_ORGANIZATION_ID",
    "tunnel_missing_principals": "use a runtime API key whose organization or workspace is bound to the tunnel",
    "pending_request_not_found": "none for isolated races; the request was already answered or expired",
    "invalid_api_key": "check the runtime API key reference (CONTROL_PLANE_API_KEY or --control-plane.api-key)",
    "tunnel_not_found": "check the tunnel id; create the tunnel first with 'tunnel-client admin tunnels create'",
}


class ControlPlaneError(Exception):
    """The control plane answered with a non-success status."""

    def __init__(
        self,
        status: int,
        *,
        code: str = "",
        message: str = "",
        retry_after: float | None = None,
        request_id: str = "",
    ) -> None:
        super().__init__(f"HTTP {status}" + (f" {code}" if code else "") + (f": {message}" if message else ""))
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after
        self.request_id = request_id

    @property
    def mitigation(self) -> str:
        if self.code in MITIGATIONS:
            return MITIGATIONS[self.code]
        if self.status in (401, 403):
            return "check the runtime API key and that it may use this tunnel"
        if self.status == 404:
            return "check the tunnel id and control-plane base URL / url path"
        if self.status == 429 or self.status >= 500:
            return "transient; the client backs off and retries"
        return ""


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Retry-After as seconds (delta-seconds or HTTP-date), capped at 60 s; None when absent/invalid/past."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), RETRY_AFTER_CAP)
    import email.utils  # an HTTP-date here is rare: not loaded (with datetime, calendar) at every start

    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    delta = when.timestamp() - (now if now is not None else time.time())
    if delta <= 0:
        return None
    return min(delta, RETRY_AFTER_CAP)


def error_from_response(status: int, headers: Mapping[str, str], body: bytes) -> ControlPlaneError:
    """Build the error from a non-success answer; ``headers`` is looked up by lower-case name."""
    code = message = ""
    try:
        data = json.loads(body) if body else None
    except ValueError:
        data = None
    if isinstance(data, dict):
        err: dict[str, Any] = data["error"] if isinstance(data.get("error"), dict) else data
        code = str(err.get("code") or "")
        message = str(err.get("message") or err.get("detail") or "")[:300]
    return ControlPlaneError(
        status,
        code=code,
        message=message,
        retry_after=parse_retry_after(headers.get("retry-after")),
        request_id=headers.get("x-request-id", ""),
    )


@record(frozen=True, slots=True)
class PollResult:
    commands: list[Any]
    received_at: float  # event-loop clock (anyio.current_time) when the poll response headers arrived


class ControlPlaneClient:
    """Runtime endpoints of one tunnel. ``server_info`` returns the current header value."""

    def __init__(
        self,
        *,
        http: HTTPPool,
        base_url: str,
        tunnel_id: str,
        api_key: str,
        instance_id: str,
        server_info: Callable[[], str],
        organization_id: str = "",
        extra_headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        self._http = http
        self._root = f"{base_url.rstrip('/')}/v1/tunnels/{tunnel_id}"
        self._server_info = server_info
        static = {
            "Authorization": f"Bearer {api_key}",
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
            "X-Tunnel-Client-Name": CLIENT_NAME,
            "X-Tunnel-Client-Version": __version__,
            "X-Tunnel-Client-Instance-Id": instance_id,
            "X-Tunnel-Client-Wire-Protocol-Version": WIRE_PROTOCOL_VERSION,
        }
        if organization_id:
            static["OpenAI-Organization"] = organization_id
        own = {name.lower() for name in static} | {"x-tunnel-mcp-server-info"}
        operator = []
        for name, value in extra_headers:
            if name.lower() in own:  # settings refuse these; a header given twice must never reach the wire
                log.warning("control-plane extra header ignored: the client sets it", extra={"header": name})
                continue
            operator.append((name, value))
        self._static = [*operator, *static.items()]

    def url(self, suffix: str = "") -> str:
        """The runtime URL of this tunnel (``/poll``, ``/response``, or the metadata URL), for messages."""
        return self._root + suffix

    def _headers(self, *extra: tuple[str, str]) -> list[tuple[str, str]]:
        return [*self._static, ("X-Tunnel-MCP-Server-Info", self._server_info()), *extra]

    async def metadata(self, timeout: float = 10.0) -> TunnelClientMetadata:
        resp = await self._http.request("GET", self._root, headers=self._headers(), timeout=timeout)
        if resp.status != 200:
            raise error_from_response(resp.status, _lower(resp.header_items()), resp.body)
        return TunnelClientMetadata.parse(resp.body)

    async def poll(
        self, *, limit: int, timeout: float, guardrail: float, channels: tuple[str, ...] | None
    ) -> PollResult:
        query = f"?limit={limit}&timeout_ms={int(timeout * 1000)}" + "".join(
            f"&channel={quote(ch)}" for ch in channels or ()
        )
        async with self._http.stream(
            "GET", f"{self._root}/poll{query}", headers=self._headers(), timeout=timeout + guardrail
        ) as resp:
            # The event loop's clock, not time.monotonic(): deadlines are enforced with cancel scopes on
            # that clock, and uvloop's clock is cached per loop turn, so mixing the two can misjudge "0s".
            received_at = anyio.current_time()
            body = await resp.aread()
        if resp.status == 204:
            return PollResult([], received_at)
        if resp.status != 200:
            raise error_from_response(resp.status, _lower(resp.header_items()), body)
        return PollResult(commands_from_poll_body(body), received_at)

    async def post_response(
        self,
        payload: ResponsePayload,
        *,
        shard_token: str,
        client_request_id: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        """POST one response; raises ControlPlaneError on non-200, one of httpio.NetworkErrors on network failure."""
        extra = [("Content-Type", "application/json"), ("X-Tunnel-Shard-Token", shard_token)]
        if client_request_id:
            extra.append(("X-Client-Request-Id", client_request_id))
        resp = await self._http.request(
            "POST", f"{self._root}/response", content=payload.encode(), headers=self._headers(*extra), timeout=timeout
        )
        if resp.status != 200:
            raise error_from_response(resp.status, _lower(resp.header_items()), resp.body)


def _lower(items: list[tuple[str, str]]) -> dict[str, str]:
    return {k.lower(): v for k, v in items}
