"""``health``: probe a running daemon's operator endpoints (/healthz, /readyz, optionally /metrics).

The daemon is located by exactly one of a base URL, a URL file (what ``--health.url-file``
writes) or a loopback port; an optional pid or pid file is checked for a live process.
The result is ``ok`` only when every requested probe passed.
"""

from __future__ import annotations

import errno
import re
from pathlib import Path
from typing import Literal

import httpx2
from pydantic import BaseModel

from tunnel_core import USER_AGENT
from tunnel_core.errors import UsageError

PROBE_TIMEOUT = 2.0
MAX_BODY = 4096
POLL_METRIC = "commands_poll_last_successful_timestamp_seconds"


class Locator(BaseModel):
    kind: Literal["url", "url_file", "port"]
    url: str = ""
    url_file: str = ""
    port: int = 0
    resolved_base_url: str = ""
    error: str = ""


class ProcessProbe(BaseModel):
    pid: int = 0
    pid_file: str = ""
    running: bool = False
    error: str = ""


class EndpointProbe(BaseModel):
    url: str = ""
    ok: bool = False
    status: int = 0
    body: str = ""
    error: str = ""


class MetricProbe(BaseModel):
    url: str = ""
    value: float = 0.0
    ok: bool = False
    error: str = ""


class HealthReport(BaseModel):
    locator: Locator
    process: ProcessProbe | None = None
    base_url: str = ""
    ui_url: str = ""
    healthz: EndpointProbe
    readyz: EndpointProbe
    control_plane_poll: MetricProbe | None = None
    result: Literal["ok", "fail"]
    hint: str = ""  # the likely cause of a failure and what to do, in one sentence (not in the reference)


def normalize_base_url(raw: str) -> str:
    """Base URL from what a user or URL file gives: trims whitespace, a /healthz or /readyz suffix and slashes."""
    value = raw.strip()
    for suffix in ("/healthz", "/readyz"):
        if value.endswith(suffix):
            value = value[: -len(suffix)]
    return value.rstrip("/")


def check_inputs(url: str, url_file: str, port: int, pid: int, pid_file: str) -> None:
    """Raise UsageError (exit 1) for a command line that cannot be acted on."""
    given = [n for n, v in (("--url", url.strip()), ("--url-file", url_file.strip()), ("--port", port)) if v]
    if len(given) != 1:
        extra = f" (got {', '.join(given)})" if given else ""
        raise UsageError(f"give exactly one of --url, --url-file or --port{extra}")
    if port < 0 or port > 65535:
        raise UsageError(f"--port: {port} is not a port; use 1..65535")
    if url.strip() and not url.strip().startswith(("http://", "https://")):
        raise UsageError(f"--url: {url.strip()!r} is not an http(s) URL; use e.g. http://127.0.0.1:8080")
    if pid < 0:
        raise UsageError(f"--pid: {pid} is not a process id; use a positive number")
    if pid and pid_file.strip():
        raise UsageError("give at most one of --pid or --pid-file")


def locate(url: str, url_file: str, port: int) -> Locator:
    if url.strip():
        base = normalize_base_url(url)
        return Locator(kind="url", url=url.strip(), resolved_base_url=base,
                       error="" if base else "the URL is empty once /healthz and slashes are removed")
    if url_file.strip():
        loc = Locator(kind="url_file", url_file=url_file.strip())
        try:
            text = Path(loc.url_file).expanduser().read_text(encoding="utf-8")
        except OSError as exc:
            loc.error = f"cannot read {loc.url_file}: {exc.strerror or exc}"
            return loc
        loc.resolved_base_url = normalize_base_url(text)
        if not loc.resolved_base_url:
            loc.error = f"{loc.url_file} holds no URL (the daemon writes it once the operator listener is up)"
        return loc
    return Locator(kind="port", port=port, resolved_base_url=f"http://127.0.0.1:{port}")


def probe_process(pid: int, pid_file: str) -> ProcessProbe:
    import psutil

    probe = ProcessProbe(pid=pid, pid_file=pid_file.strip())
    if probe.pid_file:
        try:
            text = Path(probe.pid_file).expanduser().read_text(encoding="utf-8").strip()
        except OSError as exc:
            probe.error = f"cannot read {probe.pid_file}: {exc.strerror or exc}"
            return probe
        if not text.isdigit() or int(text) <= 0:
            probe.error = f"{probe.pid_file} does not hold a process id (found {text[:32]!r})"
            return probe
        probe.pid = int(text)
    try:
        proc = psutil.Process(probe.pid)
        probe.running = proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        probe.running = False
    except psutil.AccessDenied:
        probe.running = True
    return probe


def probe_endpoint(client: httpx2.Client, base: str, path: str) -> EndpointProbe:
    probe = EndpointProbe(url=base + path)
    try:
        with client.stream("GET", probe.url) as resp:
            body = b""
            for chunk in resp.iter_bytes():
                body += chunk
                if len(body) >= MAX_BODY:
                    break
    except httpx2.HTTPError as exc:
        probe.error = _describe(exc)
        return probe
    probe.status = resp.status_code
    probe.ok = 200 <= resp.status_code < 300
    probe.body = body[:MAX_BODY].decode("utf-8", "replace").strip()
    return probe


def metric_value(text: str, name: str) -> float | None:
    """The value of the first sample of metric ``name`` in Prometheus text format."""
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line == name or line.startswith((name + " ", name + "{")):
            try:
                return float(line.split()[-1])
            except ValueError:
                continue
    return None


def probe_poll_metric(client: httpx2.Client, base: str) -> MetricProbe:
    probe = MetricProbe(url=base + "/metrics")
    try:
        resp = client.get(probe.url)
    except httpx2.HTTPError as exc:
        probe.error = _describe(exc)
        return probe
    if resp.status_code != 200:
        probe.error = f"HTTP {resp.status_code}"
        return probe
    value = metric_value(resp.text, POLL_METRIC)
    if value is None:
        probe.error = f"metric {POLL_METRIC} is missing"
        return probe
    probe.value = value
    probe.ok = value > 0
    if not probe.ok:
        probe.error = "no successful control-plane poll yet"
    return probe


def _refused(exc: BaseException) -> bool:
    cur: BaseException | None = exc
    for _ in range(8):
        if cur is None:
            return False
        if isinstance(cur, ConnectionRefusedError) or getattr(cur, "errno", None) == errno.ECONNREFUSED:
            return True
        cur = cur.__cause__ or cur.__context__
    return "connection refused" in str(exc).lower()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, httpx2.TimeoutException):
        return f"no answer within {PROBE_TIMEOUT:g}s"
    if _refused(exc):
        return "connection refused: nothing is listening there"
    text = re.sub(r"^\[Errno -?\d+\]\s*", "", str(exc).strip())
    return text or type(exc).__name__


def _hint(locator: Locator, base: str, healthz: EndpointProbe, readyz: EndpointProbe,
          process: ProcessProbe | None) -> str:
    """One sentence on the likely cause of a failed probe."""
    if locator.error:
        return locator.error
    if healthz.error.startswith("connection refused"):
        down = process is not None and not process.running and not process.error
        return (f"the daemon is not listening at {base}" + (" (and its process is not running)" if down else "")
                + "; start it (tunnel-client run ...) or check the address"
                + (" in the URL file, which may be left over from an earlier run" if locator.kind == "url_file"
                   else ""))
    if healthz.error:
        return f"the daemon at {base} did not answer: {healthz.error}"
    if healthz.ok and not readyz.ok and readyz.body:
        return f"the daemon is alive but not ready: {readyz.body.splitlines()[0]}; see tunnel-client help troubleshooting"
    return ""


def inspect_health(
    *,
    url: str = "",
    url_file: str = "",
    port: int = 0,
    pid: int = 0,
    pid_file: str = "",
    require_control_plane_poll: bool = False,
) -> HealthReport:
    """Probe the daemon once; raises UsageError only for unusable input."""
    check_inputs(url, url_file, port, pid, pid_file)
    locator = locate(url, url_file, port)
    base = locator.resolved_base_url if not locator.error else ""
    healthz, readyz = EndpointProbe(), EndpointProbe()
    poll: MetricProbe | None = MetricProbe() if require_control_plane_poll else None
    if base:
        with httpx2.Client(timeout=PROBE_TIMEOUT, trust_env=False, follow_redirects=False,
                           headers={"User-Agent": USER_AGENT}) as client:
            healthz = probe_endpoint(client, base, "/healthz")
            readyz = probe_endpoint(client, base, "/readyz")
            if require_control_plane_poll:
                poll = probe_poll_metric(client, base)
    process = probe_process(pid, pid_file) if (pid or pid_file.strip()) else None
    ok = (
        not locator.error and healthz.ok and readyz.ok
        and (process is None or (process.running and not process.error))
        and (poll is None or poll.ok)
    )
    return HealthReport(
        locator=locator, process=process, base_url=base, ui_url=base + "/ui" if base else "",
        healthz=healthz, readyz=readyz, control_plane_poll=poll, result="ok" if ok else "fail",
        hint="" if ok else _hint(locator, base, healthz, readyz, process),
    )
