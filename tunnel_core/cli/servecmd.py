"""``tunnel-client serve``: the tunnel service in production mode; also the queue-engine flags of ``dev``."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from tunnel_core.cli.commands import HELP
from tunnel_core.cli.console import IO

SIZE_RE = r"^(\d+)([KkMm]i?[Bb]?)?$"
ENCRYPTION_KEY_ENV = "TUNNEL_ENGINE_ENCRYPTION_KEY"


def add_engine_flags(p: argparse.ArgumentParser) -> None:
    """--engine-queue-backend / --engine-redis-url (reference names), shared by serve and dev."""
    p.add_argument("--engine-queue-backend", choices=["inmem", "redis"], default=None,
                   help="where queued commands live: inmem (this process) or redis (shared by several "
                   "instances, survives restarts) [TUNNEL_ENGINE_QUEUE_BACKEND] (default inmem)")
    p.add_argument("--engine-redis-url", default=None, metavar="URL|REF",
                   help="redis://[:password@]host:port/db, rediss://... for TLS, or an env:NAME / file:/path "
                   "reference to one [TUNNEL_ENGINE_REDIS_URL]")
    p.add_argument("--engine-encryption-key", action="append", default=[], metavar="REF",
                   help="secret (32+ characters, env:NAME or file:/path) that encrypts queued commands in Redis, "
                   "the same on every instance; repeat to rotate (the first encrypts) "
                   f"[default env:{ENCRYPTION_KEY_ENV}; required by serve on Redis]")


def engine_settings(args: argparse.Namespace, env: Mapping[str, str]) -> tuple[str | None, str | None]:
    """(backend, redis url) from the flags, with a reference URL resolved (the URL may hold a password)."""
    from tunnel_core.config.refs import is_reference, resolve_ref

    url = args.engine_redis_url
    if url and is_reference(url):
        url = resolve_ref(url, setting="--engine-redis-url", env=env)
    return args.engine_queue_backend, url


def engine_keys(args: argparse.Namespace, env: Mapping[str, str], *, required: bool) -> list[str]:
    """The resolved --engine-encryption-key secrets ([] when none is given and none is ``required``)."""
    from tunnel_core.config.refs import is_reference, resolve_ref
    from tunnel_core.errors import ConfigError

    refs: list[str] = args.engine_encryption_key
    if not refs and (required or env.get(ENCRYPTION_KEY_ENV)):
        if not env.get(ENCRYPTION_KEY_ENV):
            raise ConfigError(f"--engine-encryption-key: required with the redis queue (queued commands hold the "
                              f"callers' headers and Redis writes them to disk); set {ENCRYPTION_KEY_ENV} or give "
                              "env:NAME / file:/path to a secret of 32+ characters, the same on every instance")
        refs = [f"env:{ENCRYPTION_KEY_ENV}"]
    keys = []
    for ref in refs:
        if not is_reference(ref):
            raise ConfigError("--engine-encryption-key: give a reference (env:NAME or file:/path), not the key itself")
        keys.append(resolve_ref(ref, setting="--engine-encryption-key", env=env).strip())
    return keys


def engine_backend(args: argparse.Namespace, env: Mapping[str, str]) -> Any:
    """The queue backend the engine flags select (for ``dev tunnel-service``)."""
    from tunnel_core.devservice.backends import build_backend

    kind, url = engine_settings(args, env)
    return build_backend(kind, url, env=env, encryption_keys=engine_keys(args, env, required=False))


def register(sub: Any) -> None:
    s = sub.add_parser(
        "serve", help=HELP["serve"],
        description="Serve the tunnel runtime API and the MCP front door POST /v1/mcp/{tunnel_id} on a host "
        "that hosted MCP clients can reach, with TLS, request-size and per-tunnel rate limits, /healthz, "
        "/readyz and /metrics. Keys are given by reference (env:NAME or file:/path). With "
        "--engine-queue-backend redis, run as many instances as needed behind any load balancer. "
        "See docs/self-hosting.md.",
    )
    s.add_argument("--listen", default="127.0.0.1:8080", metavar="HOST:PORT",
                   help="address to serve on (0.0.0.0:8080 in a container)")
    s.add_argument("--tunnel-id", action="append", default=[], metavar="ID",
                   help="tunnel to serve (repeatable; none by default: tunnels may also be created with the admin API)")
    s.add_argument("--runtime-api-key", action="append", default=[], metavar="[TUNNEL_ID=]REF",
                   help="runtime key clients present, env:NAME or file:/path (repeatable, for rotation); "
                   "TUNNEL_ID=REF binds it to that tunnel, a bare REF is valid for the --tunnel-id tunnels "
                   "(default env:CONTROL_PLANE_API_KEY when --tunnel-id is given)")
    s.add_argument("--caller-token", action="append", default=[], metavar="TUNNEL_ID=REF",
                   help="caller token for one tunnel's front door (header X-Tunnel-Caller-Token), env:NAME or "
                   "file:/path (repeatable); more are minted with 'tunnel-client admin caller-tokens create'")
    s.add_argument("--front-door-auth", action="append", default=[], metavar="[TUNNEL_ID=]token|none",
                   help="whether front-door callers need a caller token: token (default) or none, for every "
                   "tunnel or, with TUNNEL_ID=, for one (repeatable); none is logged as a warning")
    s.add_argument("--admin-api-key", action="append", default=[], metavar="[ORG=]REF",
                   help="admin key for the tunnel and credential API, env:NAME or file:/path (repeatable); "
                   "ORG=REF limits the key to tunnels of organization ORG")
    s.add_argument("--data-dir", default="", metavar="DIR",
                   help="keep admin-created tunnels and credentials here (SQLite; inmem queue only: with "
                   "redis they live in Redis)")
    s.add_argument("--response-timeout", default="30s", metavar="DURATION",
                   help="response_timeout given to each front-door command")
    add_engine_flags(s)
    s.add_argument("--instance-id", default="", metavar="ID",
                   help="name of this instance in shard tokens, logs and /healthz (default random per process)")
    s.add_argument("--tls-cert-file", default="", metavar="PATH", help="serve HTTPS with this PEM certificate chain")
    s.add_argument("--tls-key-file", default="", metavar="PATH", help="PEM private key of --tls-cert-file")
    s.add_argument("--tls-key-password", default="", metavar="REF",
                   help="password of an encrypted --tls-key-file, env:NAME or file:/path")
    s.add_argument("--tls-client-ca-file", default="", metavar="PATH",
                   help="require a client certificate signed by a CA in this PEM file on every connection "
                   "(mutual TLS; needs --tls-cert-file)")
    s.add_argument("--max-request-body", default="4MiB", metavar="SIZE",
                   help="largest request body accepted (413 request_body_too_large above it)")
    s.add_argument("--rate-limit", type=float, default=0.0, metavar="RPS",
                   help="front-door requests per second per tunnel, shared by all instances on Redis "
                   "(429 rate_limit_exceeded + Retry-After; 0 = off)")
    s.add_argument("--rate-limit-burst", type=int, default=0, metavar="N",
                   help="requests allowed at once before --rate-limit applies (default 2 x rate)")
    s.add_argument("--runtime-rate-limit", type=float, default=0.0, metavar="RPS",
                   help="poll/response/metadata requests per second per tunnel (0 = off)")
    s.add_argument("--max-queued", type=int, default=10_000, metavar="N",
                   help="commands queued per tunnel lane before the front door answers 503 tunnel_queue_full")
    s.add_argument("--max-connections", type=int, default=0, metavar="N",
                   help="concurrent connections served; connections beyond it get 503 too_many_connections, "
                   "except /healthz, /readyz and /metrics, which keep a reserve of 16 (0 = unlimited)")
    s.add_argument("--max-header-size", default="64KiB", metavar="SIZE",
                   help="largest request line + headers accepted (431 above it)")
    s.add_argument("--max-headers", type=int, default=100, metavar="N",
                   help="most header fields per request (431 above it)")
    s.add_argument("--header-timeout", default="10s", metavar="DURATION",
                   help="a request's headers must arrive within this (408, connection closed); also how long "
                   "a new connection may stay silent")
    s.add_argument("--body-timeout", default="15s", metavar="DURATION",
                   help="a request body must arrive within this after its headers (connection closed)")
    s.add_argument("--idle-timeout", default="30s", metavar="DURATION",
                   help="close a kept-alive connection that sends no new request for this long")
    s.add_argument("--max-json-depth", type=int, default=64, metavar="N",
                   help="front-door bodies nested deeper get 400 invalid_json_payload")
    s.add_argument("--caller-rate-limit", type=float, default=0.0, metavar="RPS",
                   help="front-door (and other unauthenticated) requests per second per caller address, "
                   "shared by all instances on Redis (429 rate_limit_exceeded; 0 = off)")
    s.add_argument("--caller-rate-limit-burst", type=int, default=0, metavar="N",
                   help="requests a caller may send at once before --caller-rate-limit applies (default 2 x rate)")
    s.add_argument("--forwarded-allow-ips", default="", metavar="LIST",
                   help="comma-separated proxy addresses (or *) whose X-Forwarded-For names the caller's address "
                   "(default: none; the peer address is the caller)")
    s.add_argument("--url-file", default="", metavar="PATH", help="write a JSON description here (0600)")
    s.add_argument("--log.level", dest="log_level", default="info", metavar="LEVEL")
    s.add_argument("--log.format", dest="log_format", default="struct-text", choices=["struct-text", "json"])
    s.set_defaults(handler=cmd_serve)


def parse_size(value: str, flag: str) -> int:
    import re

    from tunnel_core.errors import ConfigError

    m = re.match(SIZE_RE, value.strip())
    if not m:
        raise ConfigError(f"{flag}: invalid size {value!r}; use bytes or forms like 512KiB, 4MiB")
    n = int(m.group(1))
    unit = (m.group(2) or "").lower()[:1]
    return n * {"": 1, "k": 1024, "m": 1024 * 1024}[unit]


def split_binding(spec: str, flag: str) -> tuple[str | None, str]:
    """``TUNNEL_ID=REF`` -> (tunnel id, ref); a bare ``REF`` -> (None, ref). Checks the id and that REF is a reference.

    Errors never echo the value: a literal key given by mistake may contain '='.
    """
    from tunnel_core.config.refs import is_reference
    from tunnel_core.errors import ConfigError
    from tunnel_core.wire.models import TUNNEL_ID_RE

    spec = spec.strip()
    tunnel_id: str | None = None
    if not is_reference(spec) and "=" in spec:
        head, rest = spec.split("=", 1)
        if not TUNNEL_ID_RE.match(head):
            raise ConfigError(f"{flag}: the part before '=' is not a tunnel id (tunnel_ followed by 32 lowercase "
                              "letters or digits); use TUNNEL_ID=env:NAME or TUNNEL_ID=file:/path")
        tunnel_id, spec = head, rest
    if not is_reference(spec):
        raise ConfigError(f"{flag}: give a reference (env:NAME or file:/path), not the key itself")
    return tunnel_id, spec


def front_door_policy(specs: list[str]) -> Any:
    """The FrontDoorPolicy of ``--front-door-auth`` values (``token``, ``none``, ``TUNNEL_ID=token|none``)."""
    from tunnel_core.devservice.credentials import FrontDoorPolicy
    from tunnel_core.errors import ConfigError
    from tunnel_core.ops.samples import check_tunnel_id

    default = True
    open_: set[str] = set()
    closed: set[str] = set()
    for spec in specs:
        tunnel, _, mode = spec.strip().rpartition("=")
        if mode not in ("token", "none"):
            raise ConfigError(f"--front-door-auth: {spec!r} is invalid; use token, none or TUNNEL_ID=token|none")
        if not tunnel:
            default = mode == "token"
            continue
        check_tunnel_id(tunnel, "--front-door-auth")
        (closed if mode == "token" else open_).add(tunnel)
        (open_ if mode == "token" else closed).discard(tunnel)
    return FrontDoorPolicy(default=default, open_tunnels=frozenset(open_), closed_tunnels=frozenset(closed))


def _credentials(args: argparse.Namespace, env: Mapping[str, str], tunnel_ids: list[str]) -> dict[str, Any]:
    """Runtime keys, caller tokens and admin keys from the flags, resolved; every secret distinct."""
    from tunnel_core.config.refs import is_reference, resolve_api_key
    from tunnel_core.devservice.admin import split_admin_key_spec
    from tunnel_core.errors import ConfigError

    unbound: set[str] = set()
    bound: list[tuple[str, str]] = []
    runtime_specs = args.runtime_api_key or (["env:CONTROL_PLANE_API_KEY"] if tunnel_ids else [])
    for spec in runtime_specs:
        tunnel_id, ref = split_binding(spec, "--runtime-api-key")
        key = resolve_api_key(ref, setting="--runtime-api-key", env=env)
        if tunnel_id is None:
            unbound.add(key)
        else:
            bound.append((tunnel_id, key))
    callers: list[tuple[str, str]] = []
    for spec in args.caller_token:
        tunnel_id, ref = split_binding(spec, "--caller-token")
        if tunnel_id is None:
            raise ConfigError(f"--caller-token {ref}: bind it to a tunnel, TUNNEL_ID={ref}")
        callers.append((tunnel_id, resolve_api_key(ref, setting="--caller-token", env=env)))
    runtime = unbound | {k for _, k in bound}
    if runtime & {t for _, t in callers}:
        raise ConfigError("--caller-token: caller tokens must differ from the runtime keys")
    admin_keys: dict[str, str | None] = {}
    for spec in args.admin_api_key:
        org, ref = split_admin_key_spec(spec)
        if not is_reference(ref):
            raise ConfigError("--admin-api-key: give a reference (env:NAME or file:/path), not the key itself")
        key = resolve_api_key(ref, setting="--admin-api-key", env=env)
        if key in runtime or key in {t for _, t in callers}:
            raise ConfigError(f"--admin-api-key {ref}: admin keys must differ from the runtime keys and caller tokens")
        admin_keys[key] = org
    return {"runtime_keys": unbound, "bound_runtime_keys": bound, "caller_tokens": callers, "admin_keys": admin_keys}


def build_options(args: argparse.Namespace, env: Mapping[str, str]) -> Any:
    """ServeOptions from the command line; every secret is resolved from its reference here."""
    from pathlib import Path

    from tunnel_core.cli.flags import duration_flag as _duration
    from tunnel_core.config.refs import is_reference, resolve_ref
    from tunnel_core.devservice.serve import ServeOptions
    from tunnel_core.errors import ConfigError
    from tunnel_core.ops.samples import check_tunnel_id

    tunnel_ids = [check_tunnel_id(t) for t in args.tunnel_id]
    creds = _credentials(args, env, tunnel_ids)
    served = list(dict.fromkeys([*tunnel_ids, *(t for t, _ in creds["bound_runtime_keys"])]))
    if not served and not creds["admin_keys"]:
        raise ConfigError("serve: nothing to serve; give --tunnel-id ID (with --runtime-api-key), or "
                          "--admin-api-key to create tunnels through the admin API")
    if args.tls_client_ca_file and not args.tls_cert_file:
        raise ConfigError("--tls-client-ca-file: needs --tls-cert-file and --tls-key-file (mutual TLS is TLS)")
    if args.tls_client_ca_file and not Path(args.tls_client_ca_file).is_file():
        raise ConfigError(f"--tls-client-ca-file: {args.tls_client_ca_file} is not a readable file")
    if bool(args.tls_cert_file) != bool(args.tls_key_file):
        raise ConfigError("--tls-cert-file and --tls-key-file: give both (PEM certificate chain and its key)")
    for flag, path in (("--tls-cert-file", args.tls_cert_file), ("--tls-key-file", args.tls_key_file)):
        if path and not Path(path).is_file():
            raise ConfigError(f"{flag}: {path} is not a readable file")
    password = ""
    if args.tls_key_password:
        if not is_reference(args.tls_key_password):
            raise ConfigError("--tls-key-password: give a reference (env:NAME or file:/path)")
        password = resolve_ref(args.tls_key_password, setting="--tls-key-password", env=env)
    for flag, value in (("--rate-limit", args.rate_limit), ("--runtime-rate-limit", args.runtime_rate_limit),
                        ("--rate-limit-burst", args.rate_limit_burst), ("--max-queued", args.max_queued),
                        ("--max-connections", args.max_connections), ("--caller-rate-limit", args.caller_rate_limit),
                        ("--caller-rate-limit-burst", args.caller_rate_limit_burst)):
        if value < 0:
            raise ConfigError(f"{flag}: must not be negative")
    for flag, value in (("--max-headers", args.max_headers), ("--max-json-depth", args.max_json_depth)):
        if value < 1:
            raise ConfigError(f"{flag}: must be at least 1")
    timeouts = {flag: _duration(getattr(args, flag[2:].replace("-", "_")), flag)
                for flag in ("--header-timeout", "--body-timeout", "--idle-timeout")}
    if min(timeouts.values()) <= 0:
        raise ConfigError("--header-timeout, --body-timeout, --idle-timeout: must be above 0s")
    header_size = parse_size(args.max_header_size, "--max-header-size")
    if header_size < 1024:
        raise ConfigError("--max-header-size: must be at least 1KiB")
    kind, url = engine_settings(args, env)
    queue_backend = kind or env.get("TUNNEL_ENGINE_QUEUE_BACKEND", "") or "inmem"
    encryption_keys = engine_keys(args, env, required=queue_backend == "redis")
    return ServeOptions(
        listen=args.listen, tunnel_ids=served, runtime_keys=creds["runtime_keys"],
        unbound_key_tunnels=frozenset(tunnel_ids), bound_runtime_keys=creds["bound_runtime_keys"],
        caller_tokens=creds["caller_tokens"], front_door=front_door_policy(args.front_door_auth),
        admin_keys=creds["admin_keys"], data_dir=args.data_dir, tls_client_ca_file=args.tls_client_ca_file,
        response_timeout=_duration(args.response_timeout, "--response-timeout"),
        queue_backend=queue_backend, redis_url=url or "", encryption_keys=encryption_keys,
        instance_id=args.instance_id, tls_cert_file=args.tls_cert_file, tls_key_file=args.tls_key_file,
        tls_key_password=password, max_body=parse_size(args.max_request_body, "--max-request-body"),
        rate_limit=args.rate_limit, rate_burst=args.rate_limit_burst, runtime_rate_limit=args.runtime_rate_limit,
        max_queued=args.max_queued, max_connections=args.max_connections, max_header_size=header_size,
        max_headers=args.max_headers, header_timeout=timeouts["--header-timeout"],
        body_timeout=timeouts["--body-timeout"], idle_timeout=timeouts["--idle-timeout"],
        max_json_depth=args.max_json_depth, caller_rate_limit=args.caller_rate_limit,
        caller_rate_burst=args.caller_rate_limit_burst, forwarded_allow_ips=args.forwarded_allow_ips,
    )


def cmd_serve(args: argparse.Namespace, io: IO) -> int:
    import json
    from pathlib import Path

    import anyio

    from tunnel_core.cli.lifecycle import run_async
    from tunnel_core.devservice.serve import Served, build_service, run_service
    from tunnel_core.devservice.store import StoreError
    from tunnel_core.errors import ConfigError
    from tunnel_core.fileutil import write_setting_file
    from tunnel_core.logs import add_secret_value, setup_logging

    options = build_options(args, io.env)
    for secret in [*options.runtime_keys, *options.admin_keys, options.tls_key_password, *options.encryption_keys,
                   *(k for _, k in options.bound_runtime_keys), *(t for _, t in options.caller_tokens)]:
        if secret:
            add_secret_value(secret)
    setup_logging(level=args.log_level, fmt=args.log_format)
    try:
        service = build_service(options, io.env)
    except StoreError as exc:
        raise ConfigError(f"--data-dir: {exc}") from None

    def on_ready(served: Served) -> None:
        desc = {"control_plane_base_url": served.base_url, "instance_id": served.instance_id,
                "queue_backend": options.queue_backend, "health_url": f"{served.base_url}/healthz",
                "metrics_url": f"{served.base_url}/metrics", "front_door_auth": options.front_door.describe(),
                "tunnels": [{"tunnel_id": t, "mcp_url": f"{served.base_url}/v1/mcp/{t}"} for t in options.tunnel_ids]}
        if args.url_file:
            write_setting_file("--url-file", Path(args.url_file), json.dumps(desc, indent=2) + "\n")
        io.out(f"Tunnel service: {served.base_url} (instance {served.instance_id}, queue {options.queue_backend})")
        for t in options.tunnel_ids:
            io.out(f"MCP URL: {served.base_url}/v1/mcp/{t}")

    async def main(stop: anyio.Event) -> None:
        await run_service(options, service, stop, on_ready)

    run_async(main)
    return 0
