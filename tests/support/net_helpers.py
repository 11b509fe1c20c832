"""Enterprise-network test parts, all on 127.0.0.1: a forwarding proxy, TLS servers, test PKI,
and an OAuth client for the mcp SDK that follows the demo server's auto-approving /authorize.

``ForwardingProxy`` speaks plain HTTP forwarding (absolute-form requests) and CONNECT
tunnelling and logs every request. Its ``routes`` map an authority the client asks for
("127.0.0.1:<dead port>", "mcp.internal.invalid:80") to where the proxy really connects, so a
test can give the client an address that only the proxy can reach: the direct route is
refused (a bound, non-listening port) or never resolvable (``.invalid``), which proves the
traffic went through the proxy.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2
import uvicorn

from tests.support.servers import (
    START_TIMEOUT,
    BackgroundLoop,
    RunningServer,
    _QuietServer,
    _wait_started,
    bind_loopback,
)
from tests.support.tunnel import RecordingApp, TunnelService
from tunnel_core.devservice.app import ServiceConfig, build_service_app
from tunnel_core.devservice.broker import Broker

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "tls"
CA_BUNDLE = FIXTURES / "test_ca_bundle.pem"  # trusts SERVER_CERT (CN/SAN localhost, 127.0.0.1)
SERVER_CERT = FIXTURES / "test_server_cert.pem"
SERVER_KEY = FIXTURES / "test_server_key.pem"


# ---- forwarding proxy ----------------------------------------------------------------------------


@dataclass(slots=True)
class ProxyEntry:
    method: str  # CONNECT or the forwarded method
    target: str  # authority for CONNECT, absolute URL otherwise
    authority: str  # host:port the client asked for
    routed_to: str  # host:port the proxy connected to ("" when refused)
    headers: dict[str, str] = field(default_factory=dict)


class ForwardingProxy:
    """An HTTP forward proxy on the background loop (one connection per request: ``Connection: close``)."""

    def __init__(self, routes: dict[str, tuple[str, int]] | None = None, *, only_routes: bool = False,
                 rewrite_host: bool = False) -> None:
        self.routes = dict(routes or {})
        self.only_routes = only_routes  # refuse authorities without a route (502)
        self.rewrite_host = rewrite_host  # send the routed address as Host (a gateway for internal names)
        self.log: list[ProxyEntry] = []
        self._lock = threading.Lock()
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def entries(self) -> list[ProxyEntry]:
        with self._lock:
            return list(self.log)

    def seen(self, needle: str) -> list[ProxyEntry]:
        return [e for e in self.entries() if needle in e.target]

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _route(self, authority: str) -> tuple[str, int] | None:
        if authority in self.routes:
            return self.routes[authority]
        if self.only_routes:
            return None
        host, _, port = authority.rpartition(":")
        return host.strip("[]"), int(port)

    def _record(self, entry: ProxyEntry) -> None:
        with self._lock:
            self.log.append(entry)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._serve(reader, writer)
        finally:
            self._tasks.discard(task)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
            writer.close()
            return
        lines = head.decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ", 2)
        headers = [tuple(line.split(":", 1)) for line in lines[1:] if ":" in line]
        hdict = {k.strip().lower(): v.strip() for k, v in headers}
        if method == "CONNECT":
            authority = target
        else:
            parts = urlsplit(target)
            authority = parts.netloc if parts.port else f"{parts.hostname}:{80 if parts.scheme == 'http' else 443}"
        dest = self._route(authority)
        self._record(ProxyEntry(method, target, authority, f"{dest[0]}:{dest[1]}" if dest else "", hdict))
        if dest is None:
            writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            await _close(writer)
            return
        try:
            up_reader, up_writer = await asyncio.wait_for(asyncio.open_connection(*dest), 10)
        except (OSError, TimeoutError):
            writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            await _close(writer)
            return
        if method == "CONNECT":
            writer.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            await writer.drain()
            await _pipe_both(reader, writer, up_reader, up_writer)
            return
        parts = urlsplit(target)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        out = [f"{method} {path} {version}"]
        for k, v in headers:
            lk = k.strip().lower()
            if lk in ("proxy-connection", "proxy-authorization", "connection", "keep-alive"):
                continue
            if lk == "host" and self.rewrite_host and authority in self.routes:
                v = f" {dest[0]}:{dest[1]}"
            out.append(f"{k}:{v}")
        out.append("Connection: close")
        up_writer.write(("\r\n".join(out) + "\r\n\r\n").encode("latin-1"))
        await up_writer.drain()
        await _pipe_both(reader, writer, up_reader, up_writer, close_response=True)


async def _close(writer: asyncio.StreamWriter) -> None:
    try:
        await writer.drain()
        writer.close()
        await writer.wait_closed()
    except (ConnectionError, OSError):
        pass


async def _pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    try:
        while chunk := await src.read(65536):
            dst.write(chunk)
            await dst.drain()
    except (ConnectionError, OSError):
        pass


async def _pump_response(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    """Relay the upstream answer, marking it ``Connection: close`` so the client opens a new connection next."""
    try:
        head = await src.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        return
    lines = [ln for ln in head.decode("latin-1").split("\r\n")[:-2]
             if ln.split(":", 1)[0].strip().lower() not in ("connection", "keep-alive")]
    dst.write(("\r\n".join([*lines, "Connection: close"]) + "\r\n\r\n").encode("latin-1"))
    await _pump(src, dst)


async def _pipe_both(c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter, u_reader: asyncio.StreamReader,
                     u_writer: asyncio.StreamWriter, *, close_response: bool = False) -> None:
    upstream = asyncio.ensure_future(_pump(c_reader, u_writer))
    try:
        if close_response:
            await _pump_response(u_reader, c_writer)
        else:
            down = asyncio.ensure_future(_pump(u_reader, c_writer))
            await asyncio.wait({upstream, down}, return_when=asyncio.FIRST_COMPLETED)
            down.cancel()
    finally:
        upstream.cancel()
        await _close(u_writer)
        await _close(c_writer)


def start_proxy(bg: BackgroundLoop, **kwargs: Any) -> ForwardingProxy:
    proxy = ForwardingProxy(**kwargs)
    bg.call(proxy.start)
    return proxy


# ---- TLS servers -------------------------------------------------------------------------------


def serve_tls(bg: BackgroundLoop, app: Any, *, client_ca: Path | None = None) -> RunningServer:
    """Serve ``app`` over TLS with the test server certificate; with ``client_ca``, demand a client certificate."""
    import ssl

    sock = bind_loopback()
    options: dict[str, Any] = {"ssl_certfile": str(SERVER_CERT), "ssl_keyfile": str(SERVER_KEY)}
    if client_ca is not None:
        options.update(ssl_ca_certs=str(client_ca), ssl_cert_reqs=ssl.CERT_REQUIRED)
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="auto", ws="none",
                            timeout_graceful_shutdown=0.5, **options)  # type: ignore[arg-type]
    server = _QuietServer(config)
    done = bg.portal.start_task_soon(server.serve, [sock])
    bg.portal.start_task_soon(_wait_started, server, done).result(timeout=START_TIMEOUT)
    if done.done():
        done.result()
    return RunningServer(sock.getsockname()[1], server, done)


@dataclass(slots=True)
class ClientPKI:
    """A throw-away client CA and one client certificate it signed (PEM files)."""

    ca_cert: Path
    client_cert: Path
    client_key: Path
    other_cert: Path  # signed by another CA: must be refused
    other_key: Path


def make_client_pki(directory: Path) -> ClientPKI:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def ca(cn: str) -> tuple[Any, Any]:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(name(cn)).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                             content_commitment=False, key_encipherment=False,
                                             data_encipherment=False, key_agreement=False, encipher_only=False,
                                             decipher_only=False), critical=True)
                .sign(key, hashes.SHA256()))
        return key, cert

    def leaf(cn: str, ca_key: Any, ca_cert: Any) -> tuple[Any, Any]:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(ca_cert.subject)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
                .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                               critical=False)
                .sign(ca_key, hashes.SHA256()))
        return key, cert

    def write(path: Path, data: bytes) -> Path:
        path.write_bytes(data)
        path.chmod(0o600)
        return path

    def key_pem(key: Any) -> bytes:
        return bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))

    ca_key, ca_cert = ca("tunnel-client test client CA")
    c_key, c_cert = leaf("tunnel-client test client", ca_key, ca_cert)
    o_ca_key, o_ca_cert = ca("some other CA")
    o_key, o_cert = leaf("stranger", o_ca_key, o_ca_cert)
    pem = serialization.Encoding.PEM
    return ClientPKI(
        ca_cert=write(directory / "client-ca.pem", ca_cert.public_bytes(pem)),
        client_cert=write(directory / "client.pem", c_cert.public_bytes(pem)),
        client_key=write(directory / "client-key.pem", key_pem(c_key)),
        other_cert=write(directory / "other.pem", o_cert.public_bytes(pem)),
        other_key=write(directory / "other-key.pem", key_pem(o_key)),
    )


# ---- OAuth client for the mcp SDK ----------------------------------------------------------------


class MemoryTokenStorage:
    """``mcp.client.auth.TokenStorage`` in memory."""

    def __init__(self) -> None:
        self.tokens: Any = None
        self.client_info: Any = None

    async def get_tokens(self) -> Any:
        return self.tokens

    async def set_tokens(self, tokens: Any) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> Any:
        return self.client_info

    async def set_client_info(self, client_info: Any) -> None:
        self.client_info = client_info


REDIRECT_URI = "http://127.0.0.1:9/oauth/callback"  # never visited: /authorize's redirect is read, not followed


@dataclass(slots=True)
class AutoApprove:
    """redirect/callback handlers for ``OAuthClientProvider``: GET the authorization URL and read the code
    from the auto-approving server's redirect (what a browser and a local callback server would do)."""

    authorize_urls: list[str] = field(default_factory=list)
    _result: dict[str, str] = field(default_factory=dict)

    async def redirect(self, authorization_url: str) -> None:
        self.authorize_urls.append(authorization_url)
        async with httpx2.AsyncClient(trust_env=False, timeout=10.0) as client:
            resp = await client.get(authorization_url)
        assert resp.status_code == 302, f"/authorize answered {resp.status_code}: {resp.text}"
        location = resp.headers["location"]
        assert location.startswith(REDIRECT_URI), location
        query = parse_qs(urlsplit(location).query)
        assert "error" not in query, query
        self._result = {"code": query["code"][0], "state": query.get("state", [""])[0]}

    async def callback(self) -> Any:
        from mcp.shared.auth import AuthorizationCodeResult

        return AuthorizationCodeResult(code=self._result["code"], state=self._result["state"] or None)


def oauth_http_client(server_url: str, storage: MemoryTokenStorage, approve: AutoApprove) -> httpx2.AsyncClient:
    """An httpx2 client that runs the MCP OAuth flow (PRMD, AS metadata, DCR, PKCE code, token) on a 401."""
    from mcp.client.auth import OAuthClientProvider
    from mcp.shared.auth import OAuthClientMetadata

    metadata = OAuthClientMetadata(
        client_name="tunnel-client tests", redirect_uris=[REDIRECT_URI],  # type: ignore[list-item]
        grant_types=["authorization_code", "refresh_token"], response_types=["code"],
        token_endpoint_auth_method="none",
    )
    provider = OAuthClientProvider(server_url=server_url, client_metadata=metadata, storage=storage,
                                   redirect_handler=approve.redirect, callback_handler=approve.callback)
    return httpx2.AsyncClient(auth=provider, trust_env=False, timeout=httpx2.Timeout(20.0))


def start_oauth_service(bg: BackgroundLoop, runtime_key: str) -> TunnelService:
    """A local tunnel service with the hosted service's OAuth rewriting on (as ``dev tunnel-service`` runs)."""
    broker: Broker = bg.call(Broker)
    app = RecordingApp(build_service_app(broker, ServiceConfig(runtime_keys={runtime_key}, response_timeout=10.0,
                                                               rewrite_www_authenticate=True)))
    return TunnelService(bg, broker, app, bg.serve_service(app))
