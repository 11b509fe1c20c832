"""Harpoon's allow-list: static targets from configuration plus OAuth URLs found by discovery.

Auto-registration rule for a discovered URL (the reference's):

- a record on the trusted MCP origin registers when its host is *private* (loopback,
  RFC 1918 / fc00::/7, configured suffixes or patterns) or when it sits on a PRMD
  resource/source host (or a subdomain of that DNS name);
- a record *off* the trusted origin (``disallow_private``) registers only when its exact
  origin equals a trusted PRMD resource/source origin. A private address alone is not
  enough, so a PRMD cannot steer Harpoon at arbitrary internal endpoints.

Labels are ``oauth-<role>-<index>`` (``oauth-registration-endpoint-0``), with ``-1``,
``-2``... on collisions; the same URL and role is never registered twice.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import field
from typing import Any
from urllib.parse import urlsplit

from tunnel_core.config.network import HarpoonSettings
from tunnel_core.httpio import origin_of
from tunnel_core.oauth.discovery import DiscoveredURL
from tunnel_core.records import record

log = logging.getLogger("tunnel_client.harpoon")

LABEL_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
REGISTRATION_SCOPE = "oauth-protected-resource-host"
_PRIVATE_NETS = [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")]


@record(frozen=True, slots=True)
class HarpoonTarget:
    label: str
    url: str
    description: str = ""
    category: str = "config"
    source: str = "config"
    tags: tuple[str, ...] = ()
    inclusion_reason: str = ""
    unix_socket: str = ""

    @property
    def role(self) -> str:
        return next((t[5:] for t in self.tags if t.startswith("role=")), "")

    def info(self) -> dict[str, Any]:
        """What list_targets shows (never the URL)."""
        return {"label": self.label, "description": self.description, "category": self.category,
                "source": self.source, "tags": list(self.tags), "allowed_methods": ["GET", "POST", "PUT"]}


@record(slots=True)
class HostClassifier:
    """Decides whether a host counts as private for OAuth auto-registration."""

    loopback: bool = True
    private: bool = True
    suffixes: tuple[str, ...] = ()
    patterns: tuple[re.Pattern[str], ...] = ()

    @classmethod
    def from_settings(cls, s: HarpoonSettings) -> HostClassifier:
        return cls(s.hosts_include_loopback, s.hosts_include_private, s.hosts_include_suffix,
                   tuple(re.compile(p) for p in s.hosts_include_regex))

    def classify(self, host: str) -> tuple[bool, str]:
        host = host.lower().rstrip(".").strip("[]")
        if not host:
            return False, "empty-host"
        try:
            addr: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
        except ValueError:
            addr = None
        if self.loopback and (host == "localhost" or host.endswith(".localhost") or (addr and addr.is_loopback)):
            return True, "loopback"
        if self.private and addr is not None and any(addr in net for net in _PRIVATE_NETS):
            return True, "private-network"
        for suffix in self.suffixes:
            if host == suffix or host.endswith("." + suffix):
                return True, f"suffix:{suffix}"
        for pattern in self.patterns:
            if pattern.search(host):
                return True, f"regex:{pattern.pattern}"
        return False, "public-host"


class Registry:
    """Labels to targets; ``on_change`` fires whenever the set changes (server-info header)."""

    def __init__(self, on_change: Callable[[], None] | None = None) -> None:
        self._targets: dict[str, HarpoonTarget] = {}
        self.version = 0
        self.on_change = on_change

    def __len__(self) -> int:
        return len(self._targets)

    def __iter__(self) -> Iterator[HarpoonTarget]:
        return iter(list(self._targets.values()))

    def lookup(self, label: str) -> HarpoonTarget | None:
        return self._targets.get(label)

    def register(self, target: HarpoonTarget) -> None:
        if not LABEL_RE.match(target.label):
            raise ValueError(f"invalid label {target.label!r}")
        if target.label in self._targets:
            raise ValueError(f"label {target.label!r} is already registered")
        self._targets[target.label] = target
        self.version += 1
        if self.on_change is not None:
            self.on_change()

    def label_for_url(self, url: str) -> str | None:
        """The label of the target whose URL is exactly ``url`` (origin compared canonically)."""
        for t in self._targets.values():
            if t.url == url or (origin_of(t.url) == origin_of(url) and _rest(t.url) == _rest(url)):
                return t.label
        return None

    def allowed(self, url: str) -> bool:
        return self.label_for_url(url) is not None


def _rest(url: str) -> str:
    parts = urlsplit(url)
    return (parts.path or "/") + ("?" + parts.query if parts.query else "")


def _host(url: str) -> str:
    return (urlsplit(url).hostname or "").lower().rstrip(".")


@record(slots=True)
class _ResourcePolicy:
    """Hosts and exact origins of the trusted PRMD resource/source records of one bundle."""

    hosts: list[tuple[str, bool]] = field(default_factory=list)  # (host, subdomains allowed)
    origins: set[str] = field(default_factory=set)

    @classmethod
    def of(cls, records: Iterable[DiscoveredURL]) -> _ResourcePolicy:
        policy = cls()
        for r in records:
            if r.source != "oauth" or r.disallow_private or r.role not in ("prmd-resource", "prmd-source"):
                continue
            policy.origins.add(origin_of(r.url))
            host = _host(r.url)
            if not host:
                continue
            try:
                ipaddress.ip_address(host.strip("[]"))
                entry = (host, False)
            except ValueError:
                # A DNS name with a dot stands for its own subdomains (the reference uses the
                # public-suffix list here; a bare single-label name never widens).
                entry = (host, "." in host)
            if entry not in policy.hosts:
                policy.hosts.append(entry)
        return policy

    def allows(self, record: DiscoveredURL) -> bool:
        if record.source != "oauth":
            return False
        if record.disallow_private:
            return origin_of(record.url) in self.origins
        host = _host(record.url)
        return any(host == h or (sub and host.endswith("." + h)) for h, sub in self.hosts)


def should_register(record: DiscoveredURL, classifier: HostClassifier, policy: _ResourcePolicy) -> tuple[bool, str]:
    private, reason = classifier.classify(_host(record.url))
    if record.disallow_private:
        if policy.allows(record):
            return True, REGISTRATION_SCOPE
        return False, "private-host-registration-disabled" if private else reason
    if private:
        return True, reason
    if policy.allows(record):
        return True, REGISTRATION_SCOPE
    return False, reason


def register_discovered(registry: Registry, records: list[DiscoveredURL], classifier: HostClassifier,
                        unix_socket_for: Callable[[str], str] | None = None) -> list[str]:
    """Register the allowed records of one discovery bundle; returns the new labels."""
    policy = _ResourcePolicy.of(records)
    added: list[str] = []
    for found in records:
        allowed, reason = should_register(found, classifier, policy)
        fields = {"url": found.url, "role": found.role, "inclusion_reason": reason}
        if not allowed:
            log.info("harpoon host auto-registration skipped", extra=fields)
            continue
        if any(t.url == found.url and t.role == found.role for t in registry):
            continue
        base = f"oauth-{found.role}-{found.index}"
        label = base
        n = 0
        while registry.lookup(label) is not None:
            n += 1
            label = f"{base[: 63 - len(str(n))]}-{n}"
        tags = [f"role={found.role}"] + ([f"group={found.group}"] if found.group else [])
        target = HarpoonTarget(label, found.url, found.description, "oauth", "oauth", tuple(tags), reason,
                               unix_socket_for(found.url) if unix_socket_for else "")
        registry.register(target)
        added.append(label)
        log.info("harpoon host auto-registered", extra={**fields, "label": label})
    return added
