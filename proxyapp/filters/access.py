# -*- test-case-name: tests.test_filters_access -*-
"""
The C{access} filter: which clients may use the proxy, and which domains
nobody may reach through it (HTTP and CONNECT alike).

Client patterns are fnmatch wildcards (C{192.168.*}), CIDR blocks
(C{10.0.0.0/8}, C{fd00::/8}) or single addresses; IPv4-mapped IPv6
addresses (C{::ffff:10.1.2.3}) match as their IPv4 form.  With no
C{allowed_clients}, loopback and the private ranges are allowed, so a proxy
bound to a public address is never an open proxy by accident.

Blocked domains match themselves and every subdomain.  Lookups walk the
host's label suffixes through a set, so they cost one probe per label
whatever the list's size.
"""

from __future__ import annotations

import ipaddress
from fnmatch import fnmatchcase
from typing import Any, Optional, Union
from urllib.parse import unquote

from twisted.logger import Logger
from zope.interface import implementer

from proxyapp.interfaces import IRequestFilter, ITunnelFilter
from proxyapp.message import RequestHead, Response, errorResponse

log = Logger()

DEFAULT_ALLOWED = [
    "127.0.0.0/8",
    "::1",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "fc00::/7",
    "fe80::/10",
]

_Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]


def normaliseHost(host: str) -> str:
    """
    Reduce a host to the form blocked names are stored in: no port, no
    brackets, lowercase, no trailing dot, percent-decoded, IDNA (punycode)
    for Unicode names.
    """
    host = host.strip()
    if host.startswith("["):
        host = host[1 : host.find("]")] if "]" in host else host[1:]
    elif host.count(":") == 1:
        host = host.rsplit(":", 1)[0]
    if "%" in host:
        host = unquote(host)
    host = host.rstrip(".").lower()
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            pass
    return host


class ClientPolicy:
    """
    Decides whether a client address may use the proxy.
    """

    def __init__(self, patterns: list[str]) -> None:
        self.patterns = list(patterns)
        self.openToAll = "*" in patterns
        self._networks: list[_Network] = []
        self._globs: list[str] = []
        for pattern in patterns:
            if pattern == "*":
                continue
            try:
                self._networks.append(ipaddress.ip_network(pattern, strict=False))
                continue
            except ValueError:
                pass
            if not any(c in pattern for c in "*?["):
                raise ValueError(f"allowed_clients: {pattern!r} is not an address, a CIDR block or an fnmatch pattern")
            self._globs.append(pattern.lower())
        self._cache: dict[str, bool] = {}

    def allows(self, host: str) -> bool:
        """
        @return: whether the client at C{host} may use the proxy.
        """
        if self.openToAll:
            return True
        cached = self._cache.get(host)
        if cached is not None:
            return cached
        allowed = self._decide(host)
        if len(self._cache) > 10000:
            self._cache.clear()
        self._cache[host] = allowed
        return allowed

    def _decide(self, host: str) -> bool:
        if host == "unix":
            # A UNIX socket's clients are local processes.
            return True
        try:
            address: Any = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        for network in self._networks:
            if address.version == network.version and address in network:
                return True
        text = str(address)
        return any(fnmatchcase(text, glob) for glob in self._globs)


class DomainSet:
    """
    A set of blocked domains matched with all their subdomains.
    """

    def __init__(self) -> None:
        self._domains: set[str] = set()

    def __len__(self) -> int:
        return len(self._domains)

    def add(self, domain: str) -> None:
        domain = normaliseHost(domain)
        if domain.startswith("*."):
            domain = domain[2:]
        if domain:
            self._domains.add(domain)

    def loadFile(self, path: str) -> int:
        """
        Add the domains listed in a file, one per line, or in hosts-file
        format (C{0.0.0.0 ads.example other.example}); C{#} starts a
        comment.

        @return: how many names were read.
        @raise ValueError: naming the file if it cannot be read.
        """
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                text = f.read()
        except OSError as e:
            raise ValueError(f"blocked_domains_files: cannot read {path}: {e.strerror}")
        count = 0
        add = self._domains.add
        for line in text.splitlines():
            hashAt = line.find("#")
            if hashAt != -1:
                line = line[:hashAt]
            fields = line.split()
            if not fields:
                continue
            if len(fields) > 1 and _isAddress(fields[0]):
                fields = fields[1:]
            for name in fields:
                name = name.rstrip(".").lower()
                if not name.isascii() or "%" in name or ":" in name:
                    name = normaliseHost(name)
                if name and name not in ("localhost", "localhost.localdomain", "broadcasthost"):
                    add(name)
                    count += 1
        return count

    def match(self, host: str) -> Optional[str]:
        """
        @return: the blocked entry that C{host} falls under, or C{None}.
        """
        domains = self._domains
        if not domains:
            return None
        host = host.rstrip(".").lower()
        while True:
            if host in domains:
                return host
            dot = host.find(".")
            if dot == -1:
                return None
            host = host[dot + 1 :]


def _isAddress(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


@implementer(IRequestFilter, ITunnelFilter)
class AccessFilter:
    """
    Refuses clients outside the allow list and targets inside the block
    list with 403.
    """

    def __init__(self, clients: ClientPolicy, blocked: DomainSet) -> None:
        self.clients = clients
        self.blocked = blocked

    def _check(self, request: RequestHead) -> Optional[Response]:
        address = request.clientAddress
        if address is not None and not self.clients.allows(address[0]):
            log.info("refused client {client}: not in allowed_clients", client=address[0])
            response = errorResponse(403, "Your address is not allowed to use this proxy.", request.url())
            response.reason = "client not allowed"
            return response
        host = request.host
        if host is not None and self.blocked._domains:
            entry = self.blocked.match(host)
            if entry is not None:
                log.info(
                    "blocked {target} for {client}: domain {entry} is blocked",
                    target=request.url(),
                    client=address[0] if address else "-",
                    entry=entry,
                )
                response = errorResponse(403, f"Access to {entry} is blocked by this proxy.", request.url())
                response.reason = f"blocked domain {entry}"
                return response
        return None

    def filterRequest(self, request: RequestHead) -> Union[RequestHead, Response]:
        return self._check(request) or request

    def filterTunnel(self, request: RequestHead) -> Optional[Response]:
        return self._check(request)


def makeFilter(config: dict[str, Any]) -> AccessFilter:
    """
    Build the access filter from C{[access]} settings.

    @raise ValueError: naming the bad setting.
    """
    unknown = set(config) - {"allowed_clients", "blocked_domains", "blocked_domains_files"}
    if unknown:
        raise ValueError(f"unknown access setting(s): {', '.join(sorted(unknown))}")
    patterns = config.get("allowed_clients", DEFAULT_ALLOWED)
    clients = ClientPolicy(patterns)
    if clients.openToAll:
        log.warn('allowed_clients contains "*": this proxy is open to every client that can reach it')
    blocked = DomainSet()
    for domain in config.get("blocked_domains", []):
        blocked.add(domain)
    for path in config.get("blocked_domains_files", []):
        blocked.loadFile(path)
    return AccessFilter(clients, blocked)
