"""OAuth Protected Resource Metadata discovery, run from inside the customer network.

Steps (the reference's order):

1. WWW-Authenticate probe of the MCP URL (empty POST, then GET; 1 s): a 401 whose Bearer
   challenge names an absolute ``resource_metadata`` URL adds that URL as first candidate.
2. Candidates, deduplicated: the probe URL, ``<origin>/.well-known/oauth-protected-resource/<path>``
   and ``<origin>/.well-known/oauth-protected-resource``.
3. Each candidate is fetched (GET, same-origin redirects only, body <= 1 MiB). 404/5xx/empty
   move on to the next one; the first other answer must be a PRMD with a non-empty
   ``resource``. When every failure was a timeout, one more pass with 2/4/8 s timeouts.
   The whole discovery is bounded (5 s).
4. Nothing advertised (no probe URL, every candidate 404) is *optional*: not an error.
5. Authorization-server metadata is fetched for ``authorization_servers[0]`` only (the
   source of truth; further entries are ignored). A document whose ``issuer`` differs is
   kept as a fallback, accepted when nothing matches exactly, and the mismatch recorded.

The client forwards what it found verbatim; rewriting ``resource`` to the tunnel URL is the
tunnel service's job (``tunnel_core.wire.prmd``).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, field
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import anyio

from tunnel_core import USER_AGENT
from tunnel_core.httpio import HTTPPool, NetworkErrors, origin_of
from tunnel_core.records import record
from tunnel_core.targets.headers import StaticHeaders
from tunnel_core.wire.challenge import require_absolute, resource_metadata_url

log = logging.getLogger("tunnel_client.oauth")

PRMD_SEGMENT = "/.well-known/oauth-protected-resource"
PRMD_BODY_LIMIT = 1 << 20
ASM_BODY_LIMIT = 1 << 20
DISCOVERY_BUDGET = 5.0
PROBE_BUDGET = 1.0
FIRST_PASS_TIMEOUT = 2.0
RETRY_TIMEOUTS = (2.0, 4.0, 8.0)
MAX_REDIRECTS = 10
ASM_DOCUMENTS = (("oauth-authorization-server", "/.well-known/oauth-authorization-server"),
                 ("openid-configuration", "/.well-known/openid-configuration"))
ASM_URL_FIELDS = ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri", "introspection_endpoint",
                  "registration_endpoint", "revocation_endpoint")


class DiscoveryError(Exception):
    """One discovery request failed; ``timeout`` tells the retry pass apart."""

    def __init__(self, message: str, *, timeout: bool = False) -> None:
        super().__init__(message)
        self.timeout = timeout


@record(slots=True)
class Attempt:
    url: str
    source: str  # www_authenticate | well_known_path | well_known_root
    tried: bool = False
    status_code: int = 0
    error: str = ""
    selected: bool = False


@record(slots=True)
class ASMAttempt:
    url: str
    document: str
    path_style: str  # prepend | append
    tried: bool = True
    selected: bool = False
    status_code: int = 0
    error: str = ""
    warning: str = ""
    issuer_mismatch: bool = False
    expected_issuer_url: str = ""
    metadata_issuer: str = ""


@record(slots=True)
class AuthServerMetadata:
    issuer_url: str
    selected_url: str = ""
    attempts: list[ASMAttempt] = field(default_factory=list)
    document: dict[str, Any] | None = None
    error: str = ""

    @property
    def issuer_mismatch(self) -> bool:
        return any(a.selected and a.issuer_mismatch for a in self.attempts)


@record(slots=True)
class ProbeStatus:
    attempted: bool = False
    url: str = ""
    error: str = ""


@record(slots=True)
class DiscoveryResult:
    """Everything one discovery run learned; ``ok`` means a PRMD was selected."""

    mcp_url: str
    started_at: float = field(default_factory=time.time)
    probe: ProbeStatus = field(default_factory=ProbeStatus)
    attempts: list[Attempt] = field(default_factory=list)
    url: str = ""
    status_code: int = 0
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    prmd: dict[str, Any] | None = None
    auth_server: AuthServerMetadata | None = None
    error: str = ""
    optional: bool = False  # nothing advertised, or nothing to discover: fine for readiness

    @property
    def ok(self) -> bool:
        return self.prmd is not None

    @property
    def unreachable(self) -> bool:
        """Failed without any HTTP answer: the server itself could not be reached."""
        tried = [a for a in self.attempts if a.tried]
        return not self.ok and bool(tried) and all(a.status_code == 0 for a in tried)

    @property
    def candidates(self) -> list[str]:
        return [a.url for a in self.attempts]

    @property
    def authorization_servers(self) -> list[str]:
        servers = (self.prmd or {}).get("authorization_servers")
        return [s for s in servers if isinstance(s, str)] if isinstance(servers, list) else []

    @property
    def metadata_source(self) -> str:
        if not self.ok:
            return "not_advertised" if self.optional else ""
        selected = next((a for a in self.attempts if a.selected), None)
        return "www_authenticate" if selected and selected.source == "www_authenticate" else "well_known"

    def snapshot(self) -> dict[str, Any]:
        """The /api/oauth shape of this result (reference field names)."""
        body: Any = None
        body_text = ""
        if self.body:
            try:
                body = json.loads(self.body)
            except ValueError:
                body_text = self.body.decode("utf-8", "replace")[:4096]
        metadata = {
            "url": self.url,
            "fetched_at": _iso(self.started_at) if self.ok else "",
            "status_code": self.status_code,
            "headers": _header_map(self.headers),
            "body": body,
            "body_text": body_text,
            "attempts": [asdict(a) for a in self.attempts],
            "auth_server_metadata": _asm_snapshot(self.auth_server),
        }
        servers = self.authorization_servers
        return {
            "discovery_urls": self.candidates,
            "metadata": metadata,
            "error": "" if self.optional else self.error,
            "www_authenticate_probe": asdict(self.probe),
            "metadata_source": self.metadata_source,
            "authorization_server_count": len(servers),
            "selected_authorization_server": servers[0] if servers else "",
            "optional": self.optional,
        }


def _asm_snapshot(asm: AuthServerMetadata | None) -> dict[str, Any] | None:
    if asm is None:
        return None
    return {"issuer_url": asm.issuer_url, "selected_url": asm.selected_url, "error": asm.error,
            "issuer_mismatch": asm.issuer_mismatch, "attempts": [asdict(a) for a in asm.attempts]}


def _header_map(items: list[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for k, v in items:
        out.setdefault(k, []).append(v)
    return out


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


# ---- candidates ---------------------------------------------------------------------------------


def well_known_candidates(mcp_url: str) -> list[tuple[str, str]]:
    """(url, source) of the RFC 9728 well-known locations for ``mcp_url``: path-specific, then root."""
    parts = urlsplit(mcp_url)
    root = urlunsplit((parts.scheme, parts.netloc, PRMD_SEGMENT, "", ""))
    out: list[tuple[str, str]] = []
    suffix = parts.path.strip("/")
    if suffix:
        path = "/" + suffix if suffix.startswith(PRMD_SEGMENT.lstrip("/")) else f"{PRMD_SEGMENT}/{suffix}"
        out.append((urlunsplit((parts.scheme, parts.netloc, path, "", "")), "well_known_path"))
    out.append((root, "well_known_root"))
    return out


def asm_candidates(issuer_url: str) -> list[tuple[str, str, str]]:
    """(url, document, path_style) for authorization-server metadata of ``issuer_url``.

    Per document: "prepend" puts the well-known segment before the issuer path, "append"
    after it; an issuer with a path tries "append" first.
    """
    parts = urlsplit(issuer_url)
    path = parts.path
    pathful = bool(path.strip("/"))
    seen: set[str] = set()
    out: list[tuple[str, str, str]] = []
    for document, well_known in ASM_DOCUMENTS:
        prepend_path = well_known + ("/" + path.lstrip("/") if path else "")
        append_path = (path.rstrip("/") + well_known) if path.rstrip("/") else well_known
        styles = [("prepend", prepend_path), ("append", append_path)]
        if pathful:
            styles.reverse()
        for style, p in styles:
            url = urlunsplit((parts.scheme, parts.netloc, p, parts.query, ""))
            if url not in seen:
                seen.add(url)
                out.append((url, document, style))
    return out


# ---- HTTP helpers -------------------------------------------------------------------------------


@record(slots=True)
class _Fetched:
    status: int
    headers: list[tuple[str, str]]
    body: bytes | None  # None: larger than the cap
    content_type: str = ""


class Discoverer:
    """Runs discovery for one MCP URL over the channel's own HTTP pool (proxy, CA bundle, mTLS)."""

    def __init__(self, mcp_url: str, http: HTTPPool, static: StaticHeaders | None = None, *,
                 budget: float = DISCOVERY_BUDGET, probe_budget: float = PROBE_BUDGET) -> None:
        self.mcp_url = mcp_url
        self._http = http
        self._static = static
        self._budget = budget
        self._probe_budget = probe_budget

    def _headers(self, url: str) -> list[tuple[str, str]]:
        headers = [("Accept", "application/json"), ("User-Agent", USER_AGENT)]
        if self._static:
            headers.extend(self._static.for_discovery(url))
        return headers

    async def _get(self, url: str, timeout: float, cap: int, method: str = "GET") -> _Fetched:
        """One request; follows redirects that stay on the first URL's origin."""
        origin = origin_of(url)
        for _ in range(MAX_REDIRECTS + 1):
            try:
                with anyio.fail_after(timeout):
                    async with self._http.stream(method, url, headers=self._headers(url),
                                                 content=b"" if method == "POST" else None,
                                                 timeout=timeout) as resp:
                        location = resp.header("location")
                        if resp.status in (301, 302, 303, 307, 308) and location:
                            target = urljoin(url, location)
                            if origin_of(target) != origin:
                                raise DiscoveryError(f"redirect from {url} blocked: destination must use the "
                                                     "discovery origin")
                            url = target
                            continue
                        body = await _read_capped(resp.aiter_bytes(), cap)
                        ctype = (resp.header("content-type") or "").split(";")[0].strip().lower()
                        return _Fetched(resp.status, resp.header_items(), body, ctype)
            except TimeoutError:
                raise DiscoveryError(f"{method} {url}: timed out after {timeout:g}s", timeout=True) from None
            except NetworkErrors as exc:
                from tunnel_core.targets.failures import classify_exception

                failure = classify_exception(exc)
                raise DiscoveryError(f"{method} {url}: {failure.source} error ({failure.kind})",
                                     timeout=failure.source == "timeout") from None
        raise DiscoveryError(f"{method} {url}: stopped after {MAX_REDIRECTS} redirects")

    # -- 1. probe --

    async def probe(self) -> ProbeStatus:
        status = ProbeStatus(attempted=True)
        errors: list[str] = []
        with anyio.move_on_after(self._probe_budget):
            for method in ("POST", "GET"):
                try:
                    got = await self._get(self.mcp_url, self._probe_budget, 64 * 1024, method=method)
                except DiscoveryError as exc:
                    errors.append(f"WWW-Authenticate probe {exc}")
                    continue
                if got.status != 401:
                    errors.append(f"WWW-Authenticate probe {method} got status {got.status}")
                    continue
                header = ", ".join(v for k, v in got.headers if k.lower() == "www-authenticate")
                if not header:
                    errors.append(f"WWW-Authenticate header missing ({method} 401)")
                    continue
                value = resource_metadata_url(header)
                if not value:
                    errors.append(f"resource_metadata missing in WWW-Authenticate Bearer challenge ({method} 401)")
                    continue
                try:
                    status.url = require_absolute(value)
                except ValueError as exc:
                    errors.append(f"{exc} ({method} 401)")
                    continue
                return status
        status.error = errors[-1] if errors else f"WWW-Authenticate probe timed out after {self._probe_budget:g}s"
        return status

    # -- the whole run --

    async def discover(self) -> DiscoveryResult:
        """Run discovery to completion within the budget; never raises for network faults."""
        result = DiscoveryResult(self.mcp_url)
        with anyio.move_on_after(self._budget) as scope:
            await self._run(result)
        if scope.cancelled_caught and not result.ok:
            result.error = result.error or f"oauth discovery did not finish within {self._budget:g}s"
        return result

    async def _run(self, result: DiscoveryResult) -> None:
        result.probe = await self.probe()
        seen: set[str] = set()
        candidates = ([(result.probe.url, "www_authenticate")] if result.probe.url else [])
        for url, source in [*candidates, *well_known_candidates(self.mcp_url)]:
            if url not in seen:
                seen.add(url)
                result.attempts.append(Attempt(url, source))
        timeouts_only = await self._pass(result, retry=False)
        if not result.ok and timeouts_only:
            log.warning("oauth discovery timed out for all candidates; retrying with longer timeouts")
            await self._pass(result, retry=True)
        if not result.ok:
            result.optional = (not result.probe.url and bool(result.attempts)
                               and all(a.tried and a.status_code == 404 for a in result.attempts))
            if result.optional:
                result.error = "protected resource metadata not advertised (HTTP 404 on every candidate)"
            return
        servers = result.authorization_servers
        if len(servers) > 1:
            log.info("oauth PRMD lists several authorization servers; only authorization_servers[0] is used",
                     extra={"authorization_server_count": len(servers)})
        if servers:
            result.auth_server = await self.fetch_auth_server_metadata(servers[0])

    async def _pass(self, result: DiscoveryResult, *, retry: bool) -> bool:
        """One pass over the candidates; True when every failure was a timeout."""
        timeouts_only = True
        last = len(result.attempts) - 1
        for i, attempt in enumerate(result.attempts):
            attempt.tried, attempt.selected, attempt.status_code, attempt.error = True, False, 0, ""
            try:
                got = await self._fetch_retrying(attempt.url, PRMD_BODY_LIMIT, retry)
            except DiscoveryError as exc:
                attempt.error = result.error = f"oauth discovery {exc}"
                timeouts_only = timeouts_only and exc.timeout
                continue
            timeouts_only = False
            attempt.status_code = got.status
            fallback_ok = (got.status == 404 or got.status >= 500) and i < last
            if got.body is None:
                attempt.error = result.error = f"oauth discovery response from {attempt.url} exceeds {PRMD_BODY_LIMIT} bytes"
            elif not got.body:
                attempt.error = result.error = f"oauth discovery empty body from {attempt.url} (status {got.status})"
            elif fallback_ok:
                attempt.error = result.error = f"oauth discovery status {got.status} from {attempt.url}"
            else:
                try:
                    prmd = validate_prmd(got.body)
                except ValueError as exc:
                    attempt.error = result.error = f"oauth discovery invalid metadata from {attempt.url}: {exc}"
                    if got.status >= 500 and i < last:
                        continue
                    return False
                attempt.selected = True
                result.url, result.status_code, result.headers, result.body = (
                    attempt.url, got.status, got.headers, got.body)
                result.prmd, result.error = prmd, ""
                return False
            if not fallback_ok:
                return False
        return timeouts_only

    async def _fetch_retrying(self, url: str, cap: int, retry: bool) -> _Fetched:
        if not retry:
            return await self._get(url, FIRST_PASS_TIMEOUT, cap)
        last: DiscoveryError | None = None
        for timeout in RETRY_TIMEOUTS:
            try:
                return await self._get(url, timeout, cap)
            except DiscoveryError as exc:
                if not exc.timeout:
                    raise
                last = exc
                log.debug("oauth discovery retrying after timeout", extra={"url": url, "timeout_s": timeout})
        assert last is not None
        raise last

    # -- 5. authorization server metadata --

    async def fetch_auth_server_metadata(self, issuer_url: str) -> AuthServerMetadata:
        """RFC 8414 / OIDC metadata of ``issuer_url``; issuer mismatches are accepted as a fallback."""
        out = AuthServerMetadata(issuer_url)
        try:
            candidates = asm_candidates(require_absolute(issuer_url))
        except ValueError as exc:
            out.error = f"oauth auth-server metadata: invalid issuer URL: {exc}"
            return out
        fallback: tuple[ASMAttempt, dict[str, Any]] | None = None
        errors: list[str] = []
        for url, document, style in candidates:
            attempt = ASMAttempt(url, document, style)
            out.attempts.append(attempt)
            try:
                got = await self._get(url, FIRST_PASS_TIMEOUT, ASM_BODY_LIMIT)
            except DiscoveryError as exc:
                attempt.error = str(exc)
                errors.append(attempt.error)
                continue
            attempt.status_code = got.status
            if got.status != 200:
                attempt.error = f"bad status {got.status}"
            elif got.content_type != "application/json":
                attempt.error = f"bad content type {got.content_type!r}"
            elif got.body is None:
                attempt.error = f"body exceeds {ASM_BODY_LIMIT} bytes"
            if attempt.error:
                errors.append(f"{url}: {attempt.error}")
                continue
            try:
                doc = json.loads(got.body or b"")
                if not isinstance(doc, dict):
                    raise ValueError("not a JSON object")
            except ValueError as exc:
                attempt.error = f"invalid JSON: {exc}"
                errors.append(f"{url}: {attempt.error}")
                continue
            issuer = doc.get("issuer") if isinstance(doc.get("issuer"), str) else ""
            if issuer != issuer_url:
                attempt.issuer_mismatch = True
                attempt.expected_issuer_url, attempt.metadata_issuer = issuer_url, str(issuer)
                attempt.warning = f"issuer mismatch: got {issuer!r} want {issuer_url!r}"
                if fallback is None:
                    fallback = (attempt, doc)
                continue
            attempt.selected = True
            out.selected_url, out.document = url, doc
            return out
        if fallback is not None:
            attempt, doc = fallback
            attempt.selected = True
            out.selected_url, out.document = attempt.url, doc
            log.warning("oauth auth-server metadata issuer differs from authorization_servers[0]",
                        extra={"expected_issuer_url": issuer_url, "metadata_issuer": attempt.metadata_issuer,
                               "selected_metadata_url": attempt.url})
            return out
        out.error = f"oauth auth-server metadata fetch failed for issuer {issuer_url!r}: " + "; ".join(errors)
        log.warning("oauth auth-server metadata fetch failed", extra={"issuer": issuer_url, "error": out.error})
        return out


async def _read_capped(chunks: Any, cap: int) -> bytes | None:
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > cap:
            return None
        parts.append(chunk)
    return b"".join(parts)


def validate_prmd(body: bytes) -> dict[str, Any]:
    """The decoded PRMD, or ValueError naming what is wrong with it."""
    try:
        doc = json.loads(body)
    except ValueError:
        raise ValueError("decode protected resource metadata: not JSON") from None
    if not isinstance(doc, dict):
        raise ValueError("protected resource metadata is not a JSON object")
    if not isinstance(doc.get("resource"), str) or not doc["resource"]:
        raise ValueError("protected resource metadata missing resource")
    servers = doc.get("authorization_servers")
    if servers is not None:
        if not isinstance(servers, list) or (servers and not isinstance(servers[0], str)):
            raise ValueError("authorization_servers must be a list of URLs")
        if servers and not urlsplit(servers[0]).scheme:
            raise ValueError("parse authorization server[0]: not an absolute URL")
    return doc


# ---- URLs published for Harpoon auto-registration -------------------------------------------------


@record(frozen=True, slots=True)
class DiscoveredURL:
    """One URL learned by discovery, with its role; ``disallow_private`` marks off-origin records."""

    url: str
    role: str
    description: str
    index: int = 0
    group: str = ""
    disallow_private: bool = False
    source: str = "oauth"


def _http_url(raw: Any) -> str:
    if not isinstance(raw, str) or not raw:
        return ""
    parts = urlsplit(raw)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return ""
    return raw


def discovered_urls(result: DiscoveryResult, trusted_mcp_url: str) -> list[DiscoveredURL]:
    """The URL bundle of one successful discovery (authorization_servers[0] is the only server used).

    A record not on the trusted MCP origin is marked ``disallow_private``: Harpoon registers it
    only on an exact PRMD resource/source origin, never merely because its host is private.
    """
    if not result.ok or result.prmd is None:
        return []
    trusted = origin_of(trusted_mcp_url)
    resource = _http_url(result.prmd.get("resource"))
    servers = result.authorization_servers
    key = result.url or resource or (servers[0] if servers else "default")
    import hashlib  # a discovery that found something: not loaded (with OpenSSL's digests) at every start

    group = "auth-server:" + hashlib.sha256(key.encode()).hexdigest()[:12] + ":0"

    def off_origin(url: str) -> bool:
        return origin_of(url) != trusted

    out: list[DiscoveredURL] = []
    if resource:
        out.append(DiscoveredURL(resource, "prmd-resource", "PRMD resource", disallow_private=off_origin(resource)))
    allow_as_private = False
    issuer_url = _http_url(servers[0]) if servers else ""
    if issuer_url:
        disallow = off_origin(issuer_url)
        allow_as_private = not disallow
        out.append(DiscoveredURL(issuer_url, "prmd-auth-server", "PRMD authorization server", group=group,
                                 disallow_private=disallow))
    if result.url:
        out.append(DiscoveredURL(result.url, "prmd-source", "PRMD source URL", disallow_private=off_origin(result.url)))
    asm = result.auth_server
    if asm is not None and asm.document is not None and issuer_url:
        issuer_origin = origin_of(issuer_url)
        doc = asm.document
        roles = [(asm.selected_url, "auth-server-metadata", "Auth server metadata URL"),
                 (doc.get("issuer"), "issuer", "Auth server issuer"),
                 (doc.get("token_endpoint"), "token-endpoint", "Auth server token endpoint"),
                 (doc.get("jwks_uri"), "jwks-uri", "Auth server JWKS URI"),
                 (doc.get("introspection_endpoint"), "introspection-endpoint", "Auth server introspection endpoint"),
                 (doc.get("registration_endpoint"), "registration-endpoint", "Auth server registration endpoint"),
                 (doc.get("revocation_endpoint"), "revocation-endpoint", "Auth server revocation endpoint")]
        for raw, role, description in roles:
            url = _http_url(raw)
            if url:
                out.append(DiscoveredURL(url, role, description, group=group,
                                         disallow_private=not allow_as_private or origin_of(url) != issuer_origin))
    return out
