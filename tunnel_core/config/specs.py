"""The table of runtime settings: flag, environment variable, YAML key and default for each.

Names follow the reference implementation exactly so existing scripts, env files and
profiles keep working. The table drives the argparse flags, env lookup and YAML fallback.
"""

from __future__ import annotations

from typing import Any

from tunnel_core.records import record


@record(frozen=True, slots=True)
class Spec:
    key: str  # YAML dotted path; also the internal name
    flag: str
    env: str | None
    default: Any
    help: str
    aliases: tuple[str, ...] = ()
    repeat: bool = False  # flag may be given several times
    env_sep: str | None = None  # how a repeatable env value is split
    boolean: bool = False
    metavar: str | None = None

    @property
    def dest(self) -> str:
        return "cfg__" + self.key.replace(".", "__")


SPECS: tuple[Spec, ...] = (
    Spec("ca_bundle", "--ca-bundle", "CA_BUNDLE", "",
         "PEM file of extra CA certificates added to the system trust for every outbound TLS connection",
         metavar="PATH"),
    Spec("http_proxy", "--http-proxy", "TUNNEL_CLIENT_HTTP_PROXY", "",
         "proxy for all outbound traffic, http(s)://host:port or env:NAME (default: HTTP(S)_PROXY/NO_PROXY)",
         metavar="URL"),
    Spec("control_plane.base_url", "--control-plane.base-url", "CONTROL_PLANE_BASE_URL", "https://api.openai.com",
         "tunnel control plane base URL (host root)", aliases=("--control-plane-base-url",), metavar="URL"),
    Spec("control_plane.url_path", "--control-plane.url-path", "CONTROL_PLANE_URL_PATH", "",
         "path prefix inserted before /v1/... (must start with /)", aliases=("--control-plane-url-path",),
         metavar="PATH"),
    Spec("control_plane.tunnel_id", "--control-plane.tunnel-id", "CONTROL_PLANE_TUNNEL_ID", "",
         "tunnel id, tunnel_<32 lowercase letters or digits>", aliases=("--control-plane-tunnel-id",),
         metavar="ID"),
    Spec("control_plane.organization_id", "--control-plane.organization-id", "CONTROL_PLANE_ORGANIZATION_ID", "",
         "organization id sent as OpenAI-Organization", aliases=("--control-plane-organization-id",),
         metavar="ID"),
    Spec("control_plane.api_key", "--control-plane.api-key", None, "",
         "runtime API key reference, env:NAME or file:/path (default: $CONTROL_PLANE_API_KEY, then $OPENAI_API_KEY)",
         aliases=("--control-plane-api-key",), metavar="REF"),
    Spec("control_plane.http_proxy", "--control-plane.http-proxy", "CONTROL_PLANE_HTTP_PROXY", "",
         "proxy for control-plane traffic, http(s)://host:port or env:NAME (default: --http-proxy)",
         metavar="URL"),
    Spec("control_plane.client_cert", "--control-plane.client-cert", "CONTROL_PLANE_CLIENT_CERT", "",
         "client certificate (PEM) for the control plane; path, env:NAME or file:/path",
         aliases=("--control-plane-client-cert",), metavar="PATH"),
    Spec("control_plane.client_key", "--control-plane.client-key", "CONTROL_PLANE_CLIENT_KEY", "",
         "private key (PEM) of --control-plane.client-cert", aliases=("--control-plane-client-key",),
         metavar="PATH"),
    Spec("control_plane.max_inflight_requests", "--control-plane.max-inflight", "CONTROL_PLANE_MAX_INFLIGHT_REQUESTS",
         20, "commands worked on at once, from poll to posted response; calls waiting for their caller's "
         "answer are not counted, up to 2N+1 held in all (1..10000)", metavar="N"),
    Spec("control_plane.poll_timeout", "--control-plane.poll-timeout", "CONTROL_PLANE_POLL_TIMEOUT", "30s",
         "long-poll wait asked of the control plane", metavar="DURATION"),
    Spec("control_plane.poll_deadline_guardrail", "--control-plane.poll-deadline-guardrail",
         "CONTROL_PLANE_POLL_DEADLINE_GUARDRAIL", "5s", "extra time allowed on top of the poll timeout",
         metavar="DURATION"),
    Spec("control_plane.poll_channels", "--control-plane.poll-channel", "CONTROL_PLANE_POLL_CHANNELS", None,
         "channel to poll (repeatable); unset polls every channel", repeat=True, env_sep=",", metavar="NAME"),
    Spec("control_plane.extra_headers", "--control-plane.extra-headers", "CONTROL_PLANE_EXTRA_HEADERS", None,
         "static header 'Name: value' on every control-plane request; value may be env:NAME or file:/path "
         "(repeatable)", repeat=True, env_sep=",", metavar="HEADER"),
    Spec("mcp.server_urls", "--mcp.server-url", "MCP_SERVER_URL", None,
         "Streamable HTTP MCP server URL, or channel=NAME,url=URL (repeatable)", aliases=("--mcp-server-url",),
         repeat=True, env_sep="\n", metavar="URL"),
    Spec("mcp.commands", "--mcp.command", "MCP_COMMAND", None,
         "stdio MCP server command line, or channel=NAME,command=CMD (repeatable)", aliases=("--mcp-command",),
         repeat=True, env_sep="\n", metavar="CMD"),
    Spec("mcp.http_proxy", "--mcp.http-proxy", "MCP_HTTP_PROXY", "",
         "proxy for MCP traffic, http(s)://host:port or env:NAME (default: --http-proxy)", metavar="URL"),
    Spec("mcp.client_cert", "--mcp.client-cert", "MCP_CLIENT_CERT", "",
         "client certificate (PEM) presented to the MCP origin only; path, env:NAME or file:/path",
         metavar="PATH"),
    Spec("mcp.client_key", "--mcp.client-key", "MCP_CLIENT_KEY", "",
         "private key (PEM) of --mcp.client-cert", metavar="PATH"),
    Spec("mcp.extra_headers", "--mcp.extra-headers", "MCP_EXTRA_HEADERS", None,
         "static header 'Name: value' sent to the MCP URL only; value may be env:NAME or file:/path (repeatable)",
         aliases=("--mcp-extra-headers",), repeat=True, env_sep=",", metavar="HEADER"),
    Spec("mcp.discovery_extra_headers", "--mcp.discovery-extra-headers", "MCP_DISCOVERY_EXTRA_HEADERS", None,
         "static header for OAuth discovery and the startup probe on the MCP origin (repeatable)",
         aliases=("--mcp-discovery-extra-headers",), repeat=True, env_sep=",", metavar="HEADER"),
    Spec("mcp.max_concurrent_requests", "--mcp.max-concurrent-requests", "MCP_MAX_CONCURRENT_REQUESTS", 10,
         "calls running against MCP targets at once", metavar="N"),
    Spec("mcp.startup_wait_timeout", "--mcp.startup-wait-timeout", "MCP_STARTUP_WAIT_TIMEOUT", "0s",
         "wait this long for the MCP target to accept connections before polling (0s = off)", metavar="DURATION"),
    Spec("mcp.connection_max_ttl", "--mcp.connection-max-ttl", "MCP_CONNECTION_MAX_TTL", "10m",
         "upper bound on one command's MCP stream", metavar="DURATION"),
    Spec("health.listen_addr", "--health.listen-addr", "HEALTH_LISTEN_ADDR", "127.0.0.1:8080",
         "operator listener for /healthz, /readyz, /metrics and /ui (:0 = ephemeral port)",
         aliases=("--health-listen-addr",), metavar="HOST:PORT"),
    Spec("health.unix_socket", "--health.unix-socket", "HEALTH_UNIX_SOCKET", "",
         "serve the operator listener on this Unix socket instead of TCP", aliases=("--health-unix-socket",),
         metavar="PATH"),
    Spec("health.url_file", "--health.url-file", "HEALTH_URL_FILE", "",
         "write the operator listener's base URL to this file after binding", aliases=("--health-url-file",),
         metavar="PATH"),
    Spec("process.pid_file", "--pid.file", "PID_FILE", "", "write the process id to this file", metavar="PATH"),
    Spec("log.level", "--log.level", "LOG_LEVEL", "info", "debug, info, warn or error", metavar="LEVEL"),
    Spec("log.format", "--log.format", "LOG_FORMAT", "", "json or struct-text (default: struct-text)",
         metavar="FORMAT"),
    Spec("log.file", "--log.file", "LOG_FILE", "", "append logs to this file (0600) instead of stderr",
         metavar="PATH"),
    Spec("log.http_raw_unsafe", "--log.http-raw-unsafe", "LOG_HTTP_RAW_UNSAFE", "false",
         "log every MCP HTTP request and response in full at debug level, secrets masked (true/false; "
         "debugging only)", boolean=True, metavar="BOOL"),
    Spec("admin_ui.allow_remote", "--allow-remote-ui", "ALLOW_REMOTE_UI", "false",
         "also serve /ui and /api/* to non-loopback clients (true/false; the flag alone means true)",
         boolean=True, metavar="BOOL"),
    Spec("admin_ui.open_browser", "--open-web-ui", "OPEN_WEB_UI", "false",
         "open /ui in a browser once the operator listener is up (true/false; the flag alone means true)",
         boolean=True, metavar="BOOL"),
    Spec("proxy.check_interval", "--proxy.check-interval", "PROXY_CHECK_INTERVAL", "60s",
         "how often each proxied route's proxy is checked (TCP connect, then CONNECT to the target)",
         metavar="DURATION"),
    Spec("admin_ui.log_buffer_events", "--admin-ui.log-buffer-events", "ADMIN_UI_LOG_BUFFER_EVENTS", 2000,
         "log events kept in memory for /ui, /api/logs and the support bundle (1..100000)", metavar="N"),
)

# Harpoon (the built-in outbound HTTP channel): kept after the others in --help.
SPECS += (
    Spec("harpoon.targets", "--harpoon.target", "HARPOON_TARGETS", None,
         "allow-listed HTTP target label=NAME,url=URL[,unix-socket=PATH][,desc=TEXT] (repeatable)",
         repeat=True, env_sep=";", metavar="SPEC"),
    Spec("harpoon.allow_plaintext_http", "--harpoon.allow-plaintext-http", "HARPOON_ALLOW_PLAINTEXT_HTTP", "false",
         "allow http:// Harpoon targets (true/false)", boolean=True, metavar="BOOL"),
    Spec("harpoon.max_response_bytes", "--harpoon.max-response-bytes", "HARPOON_MAX_RESPONSE_BYTES", 102400,
         "largest Harpoon response body (1..102400)", metavar="N"),
    Spec("harpoon.max_redirects", "--harpoon.max-redirects", "HARPOON_MAX_REDIRECTS", 5,
         "redirects Harpoon follows, each to an allow-listed URL (0..5)", metavar="N"),
    Spec("harpoon.http_proxy", "--harpoon.http-proxy", "HARPOON_HTTP_PROXY", "",
         "proxy for Harpoon calls, http(s)://host:port or env:NAME (default: --http-proxy)", metavar="URL"),
    Spec("harpoon.additional_transports", "--harpoon.additional-transport", "HARPOON_ADDITIONAL_TRANSPORTS", None,
         "also serve Harpoon over http-streamable at /harpoon/mcp on the operator listener (repeatable)",
         repeat=True, env_sep=";", metavar="TRANSPORT"),
    Spec("harpoon.capture_payloads", "--harpoon.capture-payloads", "HARPOON_CAPTURE_PAYLOADS", "false",
         "keep request and response bodies of Harpoon calls in /api/harpoon/calls (true/false; debugging only)",
         boolean=True, metavar="BOOL"),
    Spec("harpoon.hosts_include_suffix", "--harpoon.hosts-include-suffix", "HARPOON_HOSTS_INCLUDE_SUFFIX", None,
         "host suffix counted as private for OAuth auto-registration (repeatable)", repeat=True, env_sep=",",
         metavar="SUFFIX"),
    Spec("harpoon.hosts_include_regex", "--harpoon.hosts-include-regex", "HARPOON_HOSTS_INCLUDE_REGEX", None,
         "host pattern counted as private for OAuth auto-registration (repeatable)", repeat=True, env_sep=";",
         metavar="REGEX"),
    Spec("harpoon.hosts_include_loopback", "--harpoon.hosts-include-loopback", "HARPOON_HOSTS_INCLUDE_LOOPBACK",
         "true", "count loopback hosts as private (true/false)", boolean=True, metavar="BOOL"),
    Spec("harpoon.hosts_include_private", "--harpoon.hosts-include-private", "HARPOON_HOSTS_INCLUDE_PRIVATE",
         "true", "count RFC 1918 and fc00::/7 hosts as private (true/false)", boolean=True, metavar="BOOL"),
)

SPEC_BY_KEY = {s.key: s for s in SPECS}

# Environment variables only consulted when no flag/YAML key is set.
API_KEY_ENV_FALLBACKS = ("CONTROL_PLANE_API_KEY", "OPENAI_API_KEY")
