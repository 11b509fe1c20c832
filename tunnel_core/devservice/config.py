"""What one tunnel service app is configured with (``dev tunnel-service``, ``dev proxy``, ``serve``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from tunnel_core.devservice.credentials import FrontDoorPolicy
from tunnel_core.devservice.jsonbody import DEFAULT_MAX_DEPTH
from tunnel_core.devservice.testcontrols import TestControls

MAX_BODY = 4 * 1024 * 1024


@dataclass(slots=True)
class ServiceConfig:
    runtime_keys: set[str] = field(default_factory=set, repr=False)  # unbound runtime keys
    # Tunnels an unbound runtime key may use; None = every tunnel (dev tunnel-service, dev proxy).
    unbound_key_tunnels: frozenset[str] | None = None
    bound_runtime_keys: list[tuple[str, str]] = field(default_factory=list, repr=False)  # (tunnel id, key)
    caller_tokens: list[tuple[str, str]] = field(default_factory=list, repr=False)  # (tunnel id, token)
    front_door: FrontDoorPolicy = field(default_factory=FrontDoorPolicy)  # default: no caller tokens needed
    response_timeout: float = 30.0
    max_poll_timeout: float = 60.0
    test_controls: TestControls | None = None  # fault knobs and request record, tests only
    admin_keys: dict[str, str | None] = field(default_factory=dict, repr=False)  # key -> org scope (None: any)
    data_dir: str = ""  # admin-created tunnels persist here (SQLite); "" keeps them in memory
    max_body: int = MAX_BODY  # front-door request and response-POST body cap, bytes
    max_json_depth: int = DEFAULT_MAX_DEPTH  # deeper front-door bodies get 400 invalid_json_payload
    # Point resource_metadata of relayed WWW-Authenticate headers at this service's PRMD route, as
    # the hosted service does (dev tunnel-service and dev proxy turn it on); off = exact pass-through.
    rewrite_www_authenticate: bool = True  # resource_metadata in a relayed 401 points at the tunnel
    # dev proxy --client-last-seen-timeout: a front-door call for a tunnel no client polled within this
    # many seconds (and none is polling now) is refused at once with 503 tunnel_client_not_seen,
    # instead of waiting out the response timeout; None = always wait (tunnel-service, serve).
    client_last_seen_timeout: float | None = None
