"""Built-in starter profiles: metadata, input checks and rendering.

Templates live in ``tunnel_core/data/samples/<name>.yaml``. They use two constructs only:
``{{ key }}`` (replaced by the value as a YAML scalar: strings double-quoted, booleans
bare) and whole-line ``{% if key %}`` / ``{% else %}`` / ``{% endif %}`` blocks.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BaseModel

from tunnel_core.config.refs import ENV_NAME_RE
from tunnel_core.errors import ConfigError, UsageError
from tunnel_core.wire.models import TUNNEL_ID_RE

SAMPLE_DIR = Path(__file__).resolve().parent.parent / "data" / "samples"
DEFAULT_BASE_URL = "https://api.openai.com"
DEFAULT_KEY_REF = "env:CONTROL_PLANE_API_KEY"
DEFAULT_HEALTH_LISTEN_ADDR = "127.0.0.1:8080"
DEFAULT_SAMPLE = "sample_mcp_with_dcr"
STDIO_SAMPLE = "sample_mcp_stdio_local"
EXAMPLE_TUNNEL_ID = "tunnel_0123456789abcdef0123456789abcdef"

_COMMON_OPTIONAL = (
    "--control-plane-base-url (default https://api.openai.com)",
    "--control-plane-url-path",
    "--control-plane-api-key-ref (default env:CONTROL_PLANE_API_KEY)",
    "--health-listen-addr (default 127.0.0.1:8080)",
    "--open-web-ui",
)


class SampleRequest(BaseModel):
    """The values a sample is rendered with (the flags of ``init`` / ``profiles add``)."""

    tunnel_id: str = ""
    base_url: str = DEFAULT_BASE_URL
    url_path: str = ""
    api_key_ref: str = DEFAULT_KEY_REF
    health_listen_addr: str = DEFAULT_HEALTH_LISTEN_ADDR
    open_browser: bool = False
    mcp_server_url: str = ""
    mcp_command: str = ""


class SampleInfo(BaseModel):
    name: str
    summary: str
    use_when: str
    required: list[str]
    optional: list[str]
    notes: list[str]
    target: str  # "http", "stdio" or "either": which MCP target flags the sample accepts


class SampleDetail(SampleInfo):
    yaml: str


SAMPLES: tuple[SampleInfo, ...] = (
    SampleInfo(
        name="sample_mcp_with_dcr",
        summary="HTTP or stdio MCP server, ready for OAuth metadata and dynamic client registration",
        use_when="your HTTP MCP server publishes OAuth protected-resource metadata, or you are not sure yet; "
        "it is the default of init",
        required=["--tunnel-id", "one of --mcp-server-url or --mcp-command"],
        optional=list(_COMMON_OPTIONAL),
        notes=[
            "The profile names the runtime key by reference (env:CONTROL_PLANE_API_KEY); the key stays out of the file.",
            "The target is bound to the main channel.",
            "For an HTTP target, startup fetches the OAuth metadata; a server without any (404) is still ready.",
        ],
        target="either",
    ),
    SampleInfo(
        name="sample_mcp_stdio_local",
        summary="Local MCP server started as a command and spoken to over stdio: the shortest first run",
        use_when="your MCP server is a program you start locally (python, node, npx, a binary)",
        required=["--tunnel-id", "--mcp-command"],
        optional=list(_COMMON_OPTIONAL),
        notes=[
            "The command is split like a shell would split it but runs without a shell: no pipes or $VARS.",
            "init checks that the program, its interpreter and its script exist before writing the profile.",
            "stdio servers have no OAuth metadata, so discovery is skipped.",
        ],
        target="stdio",
    ),
    SampleInfo(
        name="sample_mcp_remote_no_auth",
        summary="HTTP MCP server that uses no OAuth",
        use_when="your MCP server already listens on HTTP(S) and does not ask callers to sign in",
        required=["--tunnel-id", "--mcp-server-url"],
        optional=list(_COMMON_OPTIONAL),
        notes=[
            "A 404 on every OAuth metadata address means no OAuth, which is fine.",
            "Metadata endpoints that answer with errors (5xx, bad JSON) keep /readyz not ready.",
        ],
        target="http",
    ),
    SampleInfo(
        name="sample_mcp_enterprise_proxy",
        summary="HTTP or stdio MCP server on a network with an outbound proxy or a private CA",
        use_when="outbound traffic must go through a corporate HTTP(S) proxy, or TLS is signed by an internal CA",
        required=["--tunnel-id", "one of --mcp-server-url or --mcp-command"],
        optional=list(_COMMON_OPTIONAL),
        notes=[
            "http_proxy: env:HTTPS_PROXY routes control-plane and MCP traffic through the proxy.",
            "ca_bundle: env:ENTERPRISE_CA_BUNDLE adds your root CA; remove the line if public trust is enough.",
            "The daemon reads only the runtime key (CONTROL_PLANE_API_KEY); OPENAI_ADMIN_KEY is for admin commands.",
        ],
        target="either",
    ),
)

_EXAMPLES: dict[str, dict[str, str]] = {
    "sample_mcp_with_dcr": {"mcp_server_url": "http://127.0.0.1:3001/mcp"},
    "sample_mcp_stdio_local": {"mcp_command": "python /path/to/server.py"},
    "sample_mcp_remote_no_auth": {"mcp_server_url": "https://mcp.example.com/mcp"},
    "sample_mcp_enterprise_proxy": {"mcp_server_url": "https://mcp.internal.example.com/mcp"},
}


def sample_names() -> list[str]:
    return sorted(s.name for s in SAMPLES)


def find_sample(name: str) -> SampleInfo:
    """The sample called ``name``; raises UsageError naming the valid samples otherwise."""
    for s in SAMPLES:
        if s.name == name.strip():
            return s
    raise UsageError(
        f"unknown sample {name!r}; choose one of {', '.join(sample_names())} (tunnel-client profiles samples list)"
    )


def list_samples() -> list[SampleInfo]:
    return sorted(SAMPLES, key=lambda s: s.name)


def show_sample(name: str) -> SampleDetail:
    """Metadata plus the sample rendered with example values."""
    info = find_sample(name)
    req = SampleRequest.model_validate({"tunnel_id": EXAMPLE_TUNNEL_ID, **_EXAMPLES[info.name]})
    return SampleDetail(**info.model_dump(), yaml=render_sample(info.name, req))


def default_sample(mcp_server_url: str, mcp_command: str) -> str:
    """init's choice when --sample is omitted: stdio sample for a command alone, else the DCR sample."""
    if mcp_command.strip() and not mcp_server_url.strip():
        return STDIO_SAMPLE
    return DEFAULT_SAMPLE


# ---------------------------------------------------------------------------- checks


def check_tunnel_id(value: str, flag: str = "--tunnel-id") -> str:
    value = value.strip()
    if not value:
        raise ConfigError(
            f"{flag} is required; copy the tunnel_... id from the Tunnels page "
            "(https://platform.openai.com/settings/organization/tunnels); see tunnel-client help quickstart"
        )
    if not TUNNEL_ID_RE.match(value):
        raise ConfigError(f"{flag}: {value!r} is not a tunnel id; use tunnel_ followed by 32 lowercase letters or digits")
    return value


def check_key_ref(value: str, flag: str = "--control-plane-api-key-ref") -> str:
    """An ``env:NAME`` / ``file:/path`` reference. Anything else is refused without being echoed."""
    value = value.strip()
    if value.startswith("env:"):
        if not ENV_NAME_RE.match(value[4:]):
            raise ConfigError(f"{flag}: {value!r} does not name an environment variable; use env:NAME")
        return value
    if value.startswith("file:"):
        if not value[5:].strip():
            raise ConfigError(f"{flag}: file: needs a path; use file:/path/to/key")
        return value
    raise ConfigError(
        f"{flag}: expected a reference such as env:CONTROL_PLANE_API_KEY or file:/path/to/key; "
        "the value given is not one, so it was neither saved nor shown (it may be a key). "
        "Export the key as CONTROL_PLANE_API_KEY and pass env:CONTROL_PLANE_API_KEY"
    )


def check_http_url(value: str, flag: str) -> str:
    value = value.strip()
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{flag}: {value!r} is not an absolute http(s) URL; use e.g. http://127.0.0.1:3001/mcp")
    return value


def check_url_path(value: str, flag: str = "--control-plane-url-path") -> str:
    value = value.strip()
    if value in ("", "/"):
        return ""
    parts = urlsplit(value)
    if not value.startswith("/") or parts.scheme or parts.netloc or parts.query or parts.fragment:
        raise ConfigError(f"{flag}: {value!r} must be a path starting with / (no scheme, host or query)")
    return value


def check_listen_addr(value: str, flag: str = "--health-listen-addr") -> str:
    from tunnel_core.config.settings import parse_listen_addr

    value = value.strip() or DEFAULT_HEALTH_LISTEN_ADDR
    parse_listen_addr(value, what=flag)
    return value


def normalize_request(info: SampleInfo, req: SampleRequest) -> SampleRequest:
    """Check every input of ``req`` against what sample ``info`` needs; returns the cleaned request."""
    tunnel_id = check_tunnel_id(req.tunnel_id)
    url = req.mcp_server_url.strip()
    cmd = req.mcp_command.strip()
    if info.target == "either" and bool(url) == bool(cmd):
        raise ConfigError(f"{info.name} needs exactly one of --mcp-server-url URL or --mcp-command CMD")
    if info.target == "http":
        if not url:
            raise ConfigError(f"{info.name} needs --mcp-server-url URL (for a command use sample_mcp_stdio_local)")
        cmd = ""
    if info.target == "stdio":
        if not cmd:
            raise ConfigError(f"{info.name} needs --mcp-command CMD (for a URL use sample_mcp_remote_no_auth)")
        url = ""
    return SampleRequest(
        tunnel_id=tunnel_id,
        base_url=check_http_url(req.base_url or DEFAULT_BASE_URL, "--control-plane-base-url"),
        url_path=check_url_path(req.url_path),
        api_key_ref=check_key_ref(req.api_key_ref or DEFAULT_KEY_REF),
        health_listen_addr=check_listen_addr(req.health_listen_addr),
        open_browser=req.open_browser,
        mcp_server_url=check_http_url(url, "--mcp-server-url") if url else "",
        mcp_command=cmd,
    )


# ---------------------------------------------------------------------------- rendering

_PLACEHOLDER = re.compile(r"\{\{\s*([a-z_]+)\s*\}\}")
_DIRECTIVE = re.compile(r"^\{%\s*(if\s+([a-z_]+)|else|endif)\s*%\}$")


def _scalar(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    # A JSON string is a valid YAML double-quoted scalar.
    return json.dumps(str(value), ensure_ascii=False)


def render_template(template: str, values: dict[str, object]) -> str:
    """Expand placeholders and whole-line if/else/endif blocks (no nesting needed, none allowed)."""
    out: list[str] = []
    keep = True
    in_block = False
    for line in template.splitlines(keepends=True):
        m = _DIRECTIVE.match(line.strip())
        if m:
            word = m.group(1).split()[0]
            if word == "if":
                if in_block:
                    raise ValueError("nested {% if %} blocks are not supported")
                in_block, keep = True, bool(values.get(m.group(2)))
            elif word == "else":
                keep = not keep
            else:
                in_block, keep = False, True
            continue
        if keep:
            out.append(_PLACEHOLDER.sub(lambda mm: _scalar(values[mm.group(1)]), line))
    if in_block:
        raise ValueError("unterminated {% if %} block")
    return "".join(out)


def render_sample(name: str, req: SampleRequest) -> str:
    """Render sample ``name`` with ``req`` after checking the inputs; raises ConfigError on bad input."""
    info = find_sample(name)
    clean = normalize_request(info, req)
    template = (SAMPLE_DIR / f"{info.name}.yaml").read_text(encoding="utf-8")
    return render_template(template, clean.model_dump())
