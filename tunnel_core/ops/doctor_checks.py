"""The individual doctor checks that touch the outside world: network, sockets, files.

Each function returns one ``DoctorCheck``; none raises for the condition it checks.
HTTP goes through one short-timeout ``httpx2.Client`` (no environment proxies), so a
check never hangs doctor for more than a few seconds.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urljoin, urlsplit

import httpx2
from pydantic import BaseModel, Field

from tunnel_core import USER_AGENT
from tunnel_core.config.settings import Settings, parse_listen_addr
from tunnel_core.errors import ConfigError

Status = Literal["PASS", "FAIL", "SKIP", "WARN"]
HTTP_TIMEOUT = 2.0
PROBE_TIMEOUT = 1.0
MAX_METADATA_BYTES = 1024 * 1024
PLUGIN_NAMES = ("tunnel-mcp", "tunnel-client")
PRMD_SEGMENT = "/.well-known/oauth-protected-resource"
_RESOURCE_METADATA = re.compile(r'resource_metadata\s*=\s*(?:"([^"]*)"|([^\s,]+))', re.IGNORECASE)


class DoctorCheck(BaseModel):
    id: str
    status: Status
    summary: str
    why: str = ""
    evidence: list[str] = Field(default_factory=list)
    next: list[str] = Field(default_factory=list)


def http_client() -> httpx2.Client:
    return httpx2.Client(
        timeout=httpx2.Timeout(HTTP_TIMEOUT), trust_env=False, follow_redirects=False,
        headers={"User-Agent": USER_AGENT},
    )


def describe_error(exc: BaseException) -> str:
    """A short, secret-free description of a network failure."""
    text = re.sub(r"^\[Errno -?\d+\]\s*", "", str(exc).strip())
    if isinstance(exc, httpx2.TimeoutException):
        return f"no answer within {HTTP_TIMEOUT:g}s"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return text or type(exc).__name__


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.hostname or "", port


# ---------------------------------------------------------------------------- MCP target


def mcp_server_reachable(url: str, client: httpx2.Client, *, rerun: str = "rerun: tunnel-client doctor"
                         ) -> DoctorCheck:
    """Any HTTP answer counts; otherwise a plain TCP connect decides."""
    try:
        resp = client.get(url)
        return DoctorCheck(id="mcp_server_reachable", status="PASS", summary=f"HTTP {resp.status_code} from {url}")
    except httpx2.HTTPError as exc:
        http_error = describe_error(exc)
    host, port = _host_port(url)
    try:
        with socket.create_connection((host, port), timeout=HTTP_TIMEOUT):
            pass
        return DoctorCheck(id="mcp_server_reachable", status="PASS", summary=f"TCP connect succeeded to {host}:{port}")
    except OSError as exc:
        dial_error = describe_error(exc)
    return DoctorCheck(
        id="mcp_server_reachable", status="FAIL", summary=f"cannot reach {url}: {dial_error}",
        why="every MCP call from the tunnel is forwarded to this address; if doctor cannot reach it from this "
        "machine, the daemon cannot either and callers get errors.",
        evidence=[url, f"HTTP: {http_error}", f"TCP {host}:{port}: {dial_error}"],
        next=["start the MCP server, or fix the host, port or path of the MCP URL in the profile", rerun],
    )


def _www_authenticate_url(url: str, client: httpx2.Client) -> str | None:
    """The ``resource_metadata`` URL of a 401 Bearer challenge to an empty POST or a GET, if any."""
    for method in ("POST", "GET"):
        try:
            resp = client.request(method, url, headers={"Accept": "application/json"}, timeout=PROBE_TIMEOUT,
                                  content=b"" if method == "POST" else None)
        except httpx2.HTTPError:
            continue
        if resp.status_code != 401:
            continue
        for challenge in resp.headers.get_list("www-authenticate"):
            if not challenge.strip().lower().startswith("bearer"):
                continue
            m = _RESOURCE_METADATA.search(challenge)
            if m:
                found = (m.group(1) or m.group(2) or "").strip()
                if urlsplit(found).scheme in ("http", "https"):
                    return found
    return None


def prmd_candidates(url: str, probe_url: str | None) -> list[str]:
    """Where protected resource metadata may be, in the order discovery tries them."""
    parts = urlsplit(url)
    origin = f"{parts.scheme}://{parts.netloc}"
    path = parts.path.rstrip("/")
    out: list[str] = [probe_url] if probe_url else []
    if path:
        out.append(origin + (path if path.startswith(PRMD_SEGMENT) else PRMD_SEGMENT + path))
    out.append(origin + PRMD_SEGMENT)
    return list(dict.fromkeys(out))


def asm_candidates(issuer: str) -> list[str]:
    """Authorization server metadata addresses for ``issuer`` (RFC 8414, then OpenID Connect)."""
    parts = urlsplit(issuer)
    origin = f"{parts.scheme}://{parts.netloc}"
    path = parts.path.rstrip("/")
    out: list[str] = []
    for doc in ("oauth-authorization-server", "openid-configuration"):
        if path:
            out.append(f"{origin}{path}/.well-known/{doc}")
            out.append(f"{origin}/.well-known/{doc}{path}")
        else:
            out.append(f"{origin}/.well-known/{doc}")
    return list(dict.fromkeys(out))


def _fetch_json(url: str, client: httpx2.Client) -> tuple[int, Any, str]:
    """(status, decoded JSON or None, problem) for a metadata GET."""
    try:
        resp = client.get(url, headers={"Accept": "application/json"})
    except httpx2.HTTPError as exc:
        return 0, None, describe_error(exc)
    if resp.status_code != 200:
        return resp.status_code, None, f"HTTP {resp.status_code}"
    if not resp.content or len(resp.content) > MAX_METADATA_BYTES:
        return 200, None, "empty or oversized body"
    try:
        return 200, resp.json(), ""
    except ValueError:
        return 200, None, "body is not JSON"


_OAUTH_WHY = (
    "an HTTP MCP server that asks callers to sign in must publish its OAuth metadata (protected resource, then "
    "authorization server) so ChatGPT can start the sign-in; while discovery fails, /readyz stays not ready."
)
_OAUTH_NEXT = [
    "serve GET /.well-known/oauth-protected-resource/<mcp path> with a JSON document that has resource and "
    "authorization_servers",
    "serve the authorization server metadata at <authorization_servers[0]>/.well-known/oauth-authorization-server",
    "or, if the server does not use OAuth, answer 404 on those addresses",
    "compare with the demo server: tunnel-client dev mcp-stub; details: tunnel-client help oauth",
]


def oauth_metadata(url: str, client: httpx2.Client) -> DoctorCheck:
    """PASS when metadata is published completely or not at all (404 everywhere); FAIL otherwise."""
    probe_url = _www_authenticate_url(url, client)
    attempts: list[str] = []
    all_404 = True
    found: tuple[str, dict[str, Any]] | None = None
    for candidate in prmd_candidates(url, probe_url):
        status, doc, problem = _fetch_json(candidate, client)
        if status == 404:
            attempts.append(f"{candidate}: HTTP 404")
            continue
        all_404 = False
        if problem:
            attempts.append(f"{candidate}: {problem}")
            continue
        if not isinstance(doc, dict) or not isinstance(doc.get("resource"), str) or not doc["resource"]:
            attempts.append(f"{candidate}: JSON without a resource field")
            continue
        found = (candidate, doc)
        break
    if found is None:
        if all_404 and probe_url is None:
            return DoctorCheck(
                id="oauth_metadata", status="PASS",
                summary="no OAuth metadata published (HTTP 404 on every candidate); OAuth is optional",
                evidence=attempts,
            )
        worst = next((a for a in attempts if not a.endswith(": HTTP 404")), attempts[-1])
        return DoctorCheck(
            id="oauth_metadata", status="FAIL", summary=f"protected resource metadata unusable: {worst}",
            why=_OAUTH_WHY, evidence=attempts, next=list(_OAUTH_NEXT),
        )
    prmd_url, doc = found
    servers = doc.get("authorization_servers")
    if not isinstance(servers, list) or not servers or not isinstance(servers[0], str) or not servers[0]:
        return DoctorCheck(
            id="oauth_metadata", status="FAIL", summary=f"{prmd_url} names no authorization_servers",
            why=_OAUTH_WHY, evidence=[*attempts, f"{prmd_url}: authorization_servers missing or empty"],
            next=list(_OAUTH_NEXT),
        )
    issuer = urljoin(prmd_url, servers[0])
    for candidate in asm_candidates(issuer):
        _, asm, problem = _fetch_json(candidate, client)
        if not problem and isinstance(asm, dict) and asm.get("issuer"):
            return DoctorCheck(
                id="oauth_metadata", status="PASS",
                summary=f"protected resource {prmd_url}; authorization server {candidate}",
            )
        attempts.append(f"{candidate}: {problem or 'JSON without an issuer field'}")
    return DoctorCheck(
        id="oauth_metadata", status="FAIL",
        summary=f"authorization server metadata for {issuer} not found",
        why=_OAUTH_WHY, evidence=[f"{prmd_url}: protected resource metadata found", *attempts],
        next=list(_OAUTH_NEXT),
    )


def mcp_command_executable(command: str, env: Mapping[str, str], *, rerun: str = "rerun: tunnel-client doctor"
                           ) -> DoctorCheck:
    """The program, interpreter and script resolve; for ``python -m X``, X is importable by that interpreter."""
    from tunnel_core.ops.preflight import module_problem, preflight_stdio_command

    why = ("a stdio MCP server is started as a child process by `tunnel-client run`; if its program, "
           "interpreter, script or module is missing, every call through the tunnel fails.")
    try:
        resolved = preflight_stdio_command(command, env)
        problem = module_problem(command, env)
    except ConfigError as exc:
        return DoctorCheck(
            id="mcp_command_executable", status="FAIL", summary=str(exc), why=why, evidence=[command, str(exc)],
            next=["follow the fix: hint above, or correct mcp.commands in the profile",
                  "check the command by hand in the same shell: it must start and wait for input", rerun],
        )
    if problem:
        return DoctorCheck(
            id="mcp_command_executable", status="FAIL", summary=problem, why=why, evidence=[command, problem],
            next=["install the module into that interpreter's environment, or name the interpreter that has it "
                  "(for a virtual environment: /path/to/venv/bin/python -m MODULE)", rerun],
        )
    return DoctorCheck(id="mcp_command_executable", status="PASS", summary=resolved)


def mcp_initialize(settings: Settings, main: Any, *, rerun: str) -> DoctorCheck:
    """Start the main target the way ``run`` does and send it MCP ``initialize`` (doctor --online)."""
    import dataclasses

    import anyio

    from tunnel_core.runner import build_targets

    target = build_targets(dataclasses.replace(settings, bindings=(main,)), max_concurrent=1)[main.channel]

    async def probe() -> Any:
        async with anyio.create_task_group() as tg:
            start = getattr(target, "start", None)
            if start is not None:
                await start(tg)
            try:
                with anyio.fail_after(30):
                    return await target.probe()
            finally:
                tg.cancel_scope.cancel()
                await target.aclose()

    try:
        result = anyio.run(probe)
    except TimeoutError:
        result = None
    what = f"{'stdio server' if main.kind == 'stdio' else 'MCP server'} {main.target}"
    if result is not None and result.status == "ok":
        return DoctorCheck(id="mcp_initialize", status="PASS", summary=f"{what} answered initialize")
    if result is not None and result.status == "auth-required":
        return DoctorCheck(id="mcp_initialize", status="PASS",
                           summary=f"{what} is reachable; initialize requires auth ({result.error})")
    error = result.error if result is not None else "no answer within 30s"
    status: Status = "WARN" if result is not None and result.status == "timeout" else "FAIL"
    return DoctorCheck(
        id="mcp_initialize", status=status, summary=f"{what}: {error}",
        why="`run` sends this initialize to the main target at startup and reports not ready until it answers; "
        "callers get 502 while it fails.",
        evidence=[main.target, error],
        next=["run the same command (or curl the URL) by hand in the same environment and read its errors",
              "tunnel-client help troubleshooting", rerun],
    )


# ---------------------------------------------------------------------------- local listener


def _display_base(host: str, port: int) -> str:
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def health_listener(addr: str, *, rerun: str = "rerun: tunnel-client doctor") -> DoctorCheck:
    """Bind the operator address for real, then release it."""
    from tunnel_core.listen import bind_host

    host, port = parse_listen_addr(addr, what="--health.listen-addr", empty_host="")
    try:
        infos = socket.getaddrinfo(bind_host(host), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, socktype, proto, _, sockaddr = infos[0]
        with socket.socket(family, socktype, proto) as sock:
            if os.name != "nt":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(sockaddr)
            sock.listen(1)
            bound_port = sock.getsockname()[1]
    except OSError as exc:
        err = exc.strerror or str(exc)
        return DoctorCheck(
            id="health_listener", status="FAIL", summary=f"cannot bind {addr}: {err}",
            why="the daemon serves /healthz, /readyz, /metrics and /ui on this address and stops at startup if "
            "it cannot bind it.",
            evidence=[addr, err],
            next=["stop the process that holds the port, or choose another address with --health.listen-addr "
                  "(127.0.0.1:0 picks a free port; add --health.url-file FILE to publish it)",
                  rerun],
        )
    if port == 0:
        return DoctorCheck(
            id="health_listener", status="PASS", summary=f"ephemeral bind ok on {_display_base(host, bound_port)}",
            next=["the real port is chosen at startup; read it from the startup log or --health.url-file"],
        )
    return DoctorCheck(id="health_listener", status="PASS", summary=f"will bind {_display_base(host, port)}")


def ui(addr: str, listener_status: Status) -> DoctorCheck:
    if listener_status != "PASS":
        return DoctorCheck(id="ui", status="SKIP", summary="blocked by the health_listener check",
                           why="the status page is served on the operator address, which cannot be bound.",
                           next=["fix the health_listener check first"])
    host, port = parse_listen_addr(addr, what="--health.listen-addr", empty_host="")
    if port == 0:
        return DoctorCheck(
            id="ui", status="PASS",
            summary="ephemeral port; the /ui URL is in the startup log and the --health.url-file file",
        )
    return DoctorCheck(id="ui", status="PASS", summary=_display_base(host, port) + "/ui")


# ---------------------------------------------------------------------------- Codex


def codex_home(env: Mapping[str, str]) -> Path:
    explicit = (env.get("CODEX_HOME") or "").strip()
    if explicit:
        return Path(os.path.expanduser(explicit))
    home = (env.get("HOME") or "").strip() or os.path.expanduser("~")
    return Path(home) / ".codex"


def codex_plugin(env: Mapping[str, str]) -> DoctorCheck:
    home = codex_home(env)
    detected = home.is_dir() or shutil.which("codex", path=env.get("PATH", os.defpath)) is not None
    if not detected:
        return DoctorCheck(
            id="codex_plugin", status="SKIP", summary="Codex not detected locally",
            why="optional: with Codex and the tunnel-client plugin, Codex can run these setup steps for you.",
            evidence=[f"no {home} directory and no codex program on PATH"],
            next=["nothing to do unless you use Codex; see tunnel-client help plugin"],
        )
    for name in PLUGIN_NAMES:
        manifests = sorted(home.glob(f"plugins/cache/*/{name}/*/.codex-plugin/plugin.json"))
        if manifests:
            return DoctorCheck(id="codex_plugin", status="PASS", summary=str(manifests[-1].parent.parent))
    hint = "tunnel-client codex plugin install"
    return DoctorCheck(
        id="codex_plugin", status="SKIP", summary=f"Codex detected; tunnel-client plugin not installed (run `{hint}`)",
        why="optional: the plugin lets Codex run these setup steps for you from a plain-language request.",
        evidence=[f"CODEX_HOME: {home}", f"looked for: {home}/plugins/cache/*/{{{','.join(PLUGIN_NAMES)}}}/*"],
        next=[hint],
    )


# ---------------------------------------------------------------------------- control plane (--online)


def control_plane_online(settings: Settings, *, rerun: str = "rerun: tunnel-client doctor --online") -> DoctorCheck:
    """Read this tunnel's metadata with the runtime key: the first request `run` makes."""
    from tunnel_core import CLIENT_NAME, __version__
    from tunnel_core.controlplane.client import error_from_response

    url = f"{settings.control_plane_url}/v1/tunnels/{settings.tunnel_id}"
    headers = {
        "Authorization": f"Bearer {settings.api_key}",
        "Accept": "application/json",
        "X-Tunnel-Client-Name": CLIENT_NAME,
        "X-Tunnel-Client-Version": __version__,
    }
    if settings.organization_id:
        headers["OpenAI-Organization"] = settings.organization_id
    try:
        with httpx2.Client(timeout=httpx2.Timeout(10.0, connect=5.0), trust_env=False, follow_redirects=False,
                           headers={"User-Agent": USER_AGENT}) as client:
            resp = client.get(url, headers=headers)
    except httpx2.HTTPError as exc:
        err = describe_error(exc)
        return DoctorCheck(
            id="control_plane_online", status="FAIL", summary=f"cannot reach the control plane at {url}: {err}",
            why="the daemon long-polls this address for work; if it cannot reach it, no call reaches your server.",
            evidence=[url, err],
            next=["check --control-plane.base-url / CONTROL_PLANE_BASE_URL and --control-plane.url-path",
                  "check outbound HTTPS from this machine (proxy, firewall, DNS)",
                  rerun],
        )
    if resp.status_code != 200:
        return _control_plane_failure(error_from_response(resp.status_code, resp.headers, resp.content), url, settings,
                                      rerun)
    try:
        name = str(resp.json().get("name") or "")
    except (ValueError, AttributeError):
        name = ""
    return DoctorCheck(
        id="control_plane_online", status="PASS",
        summary=f"tunnel {settings.tunnel_id}{f' ({name})' if name and name != settings.tunnel_id else ''} "
        f"accepts the runtime key at {url}",
    )


def _control_plane_failure(exc: Any, url: str, settings: Settings, rerun: str) -> DoctorCheck:
    status: int = exc.status
    code = f" {exc.code}" if exc.code else ""
    evidence = [url, f"HTTP {status}{code}" + (f": {exc.message}" if exc.message else "")]
    if exc.request_id:
        evidence.append(f"request id {exc.request_id}")
    mitigation = exc.mitigation
    if status == 401:
        summary, why = f"runtime key rejected (HTTP 401{code})", "the control plane does not accept this runtime key."
        steps = [f"create or check the runtime key at https://platform.openai.com/settings/organization/api-keys "
                 f"and update {settings.api_key_source}"]
    elif status == 403:
        summary, why = (f"runtime key may not use this tunnel (HTTP 403{code})",
                        "the key is valid but its principal lacks permission to use this tunnel.")
        steps = ["grant the key's project or user the permission to use the tunnel (Tunnels page), "
                 "or use a runtime key from the organization that owns it"]
    elif status == 404:
        summary, why = (f"tunnel {settings.tunnel_id} not found (HTTP 404{code})",
                        "the control plane does not know this tunnel id at this base URL.")
        steps = ["copy the exact tunnel id from https://platform.openai.com/settings/organization/tunnels",
                 "check --control-plane.base-url and --control-plane.url-path"]
    elif status == 429 or status >= 500:
        return DoctorCheck(
            id="control_plane_online", status="WARN", summary=f"control plane busy or failing (HTTP {status}{code})",
            why="a transient control-plane problem; the daemon retries with backoff.",
            evidence=evidence, next=[mitigation or "retry later", rerun],
        )
    else:
        summary, why = f"unexpected answer HTTP {status}{code}", "the control plane refused the metadata request."
        steps = []
    if mitigation:
        steps.append(mitigation)
    steps.append(rerun)
    return DoctorCheck(id="control_plane_online", status="FAIL", summary=summary, why=why,
                       evidence=evidence, next=steps)
