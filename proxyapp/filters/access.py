# -*- test-case-name: tests.test_filters_access -*-
"""
The C{access} filter: which clients may use the proxy, and which domains
nobody may reach through it (HTTP and CONNECT alike).

Client patterns are fnmatch wildcards (C{192.168.*}), CIDR blocks
(C{10.0.0.0/8}, C{fd00::/8}) or single addresses; IPv4-mapped IPv6
addresses (C{::ffff:10.1.2.3}), clients and entries alike, match as their
IPv4 form.  With no
C{allowed_clients}, loopback and the private ranges are allowed, so a proxy
bound to a public address is never an open proxy by accident.

Blocked domains match themselves and every subdomain (C{*.example.com}
and C{.example.com} mean the same as C{example.com}).  Lookups walk the
host's label suffixes through a set, so they cost one probe per label
whatever the list's size.  An entry that no host could match (a URL such
as C{http://example.com/}, a path, C{*}, a CIDR block, characters no host
name has) stops the start, naming the key, or the file and line, and the
entry.

Entries and request hosts are normalised the same way before they are
compared: case, trailing dots, a port, percent-encoding, brackets around
IPv6 literals, IDNA (a Unicode name is stored as its punycode form, under
both the IDNA 2003 mapping the request parser uses and the UTS 46 / IDNA
2008 one browsers use, so C{faß.de} blocks both C{fass.de} and
C{xn--fa-hia.de}), IPv4 addresses in the numeric forms C{inet_aton}
accepts (C{2130706433}, C{0x7f.1}) are reduced to dotted quads, and IPv6
literals that reach an IPv4 address (IPv4-mapped C{::ffff:10.1.2.3} or
C{::ffff:a01:203}, and the well-known NAT64 prefix C{64:ff9b::/96}) are
reduced to that IPv4 address, so blocking C{10.1.2.3} blocks them too.

Configuration (C{[access]})::

    allowed_clients = ["127.0.0.1", "192.168.*", "10.0.0.0/8", "fd00::/8"]
                                # fnmatch patterns, CIDR blocks, addresses;
                                # "*" allows everyone (logged at start);
                                # default: loopback and private ranges
    blocked_domains = ["example.com"]   # with all subdomains; host names
                                # (*.example.com and .example.com mean
                                # the same), Unicode names, IP addresses
    blocked_domains_files = ["/etc/webproxy/blocklist.txt"]
                                # one domain per line, or hosts format
                                # ("0.0.0.0 ads.example"); "#" comments

(C{connect_ports} in C{[access]} is enforced by the proxy core, before
any filter.)
"""

from __future__ import annotations

import ipaddress
import re
import socket
from fnmatch import fnmatchcase
from typing import Any, Iterable, Optional, Union
from urllib.parse import unquote, urlsplit

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
    brackets, lowercase, no trailing dot, percent-decoded, IDNA (punycode,
    the IDNA 2003 mapping the request parser applies) for Unicode names,
    canonical text for IP addresses.
    """
    return _hostForms(host)[0]


def _hostForms(host: str) -> list[str]:
    """
    @return: the normalised host (see L{normaliseHost}), then any other
        form the same Unicode name takes (UTS 46, IDNA 2008).
    """
    host = host.strip()
    if host.startswith("["):
        host = host[1 : host.find("]")] if "]" in host else host[1:]
    elif host.count(":") == 1:
        host = host.rsplit(":", 1)[0]
    if "%" in host:
        host = unquote(host)
    host = host.rstrip(".").lower()
    forms = [host]
    if not host.isascii():
        forms = []
        try:
            forms.append(host.encode("idna").decode("ascii").lower())
        except UnicodeError:
            pass
        try:
            import idna

            modern = idna.encode(host, uts46=True).decode("ascii")
            if modern not in forms:
                forms.append(modern)
        except (ImportError, UnicodeError, ValueError):
            # idna.IDNAError is a UnicodeError.
            pass
        if not forms:
            forms = [host]
    elif host[:1].isdigit() or ":" in host:
        forms[0] = _canonicalAddress(host)
    return forms


# RFC 6052's well-known NAT64 prefix: on a network with a NAT64 gateway,
# 64:ff9b::a.b.c.d reaches a.b.c.d.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def _canonicalAddress(host: str) -> str:
    """
    @return: the canonical text of an IP address in any form the resolver
        accepts (C{inet_aton}'s numeric forms for IPv4), or C{host}
        unchanged if it is no address.  An IPv6 address that reaches an
        IPv4 one is that IPv4 address: IPv4-mapped (C{::ffff:a.b.c.d},
        which an C{AF_INET6} socket connects to as IPv4) and the
        well-known NAT64 prefix (C{64:ff9b::a.b.c.d}).
    """
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        if isinstance(address, ipaddress.IPv6Address):
            mapped = _embeddedIPv4(address)
            if mapped is not None:
                return str(mapped)
        return str(address)
    if ":" not in host:
        try:
            return socket.inet_ntoa(socket.inet_aton(host))
        except OSError:
            pass
    return host


def _embeddedIPv4(address: ipaddress.IPv6Address) -> Optional[ipaddress.IPv4Address]:
    """
    @return: the IPv4 address C{address} reaches, if it is IPv4-mapped or
        in the well-known NAT64 prefix, else C{None}.
    """
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


def _mappedNetwork(network: _Network) -> _Network:
    """
    @return: C{network} as an IPv4 block if it lies within the IPv4-mapped
        range (C{::ffff:10.0.0.0/104} is C{10.0.0.0/8}), since clients'
        mapped addresses are matched in their IPv4 form; else C{network}.
    """
    if (
        isinstance(network, ipaddress.IPv6Network)
        and network.prefixlen >= 96
        and network.network_address in _MAPPED
    ):
        return ipaddress.IPv4Network(
            (int(network.network_address) & 0xFFFFFFFF, network.prefixlen - 96)
        )
    return network


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
                network = ipaddress.ip_network(pattern, strict=False)
            except ValueError:
                pass
            else:
                self._networks.append(_mappedNetwork(network))
                continue
            if not any(c in pattern for c in "*?["):
                raise ValueError(
                    f"allowed_clients: {pattern!r} is not an address, a CIDR block or an fnmatch pattern"
                )
            glob = pattern.lower()
            if glob.startswith("::ffff:") and ":" not in glob[7:]:
                # Clients' mapped addresses are matched in their IPv4 form.
                glob = glob[7:]
            self._globs.append(glob)
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
        if (
            isinstance(address, ipaddress.IPv6Address)
            and address.ipv4_mapped is not None
        ):
            address = address.ipv4_mapped
        for network in self._networks:
            if address.version == network.version and address in network:
                return True
        text = str(address)
        return any(fnmatchcase(text, glob) for glob in self._globs)


# A host name as entries and lookups store it: dot-separated labels of
# letters, digits, "-" and "_" (common in real names, if not in RFC 952),
# at most 63 characters each, the last one not all digits (a name ending in
# a number is parsed as an IPv4 address by browsers and resolvers alike).
_HOST_NAME = re.compile(r"(?:[a-z0-9_-]{1,63}\.)*(?=[0-9]*[a-z_-])[a-z0-9_-]{1,63}")


def _entryForms(entry: str) -> Optional[list[str]]:
    """
    @return: the forms a domain set stores for C{entry} (see
        L{_hostForms}; a leading C{*.} or C{.} is dropped), or C{None} if
        one of them is neither a host name nor an IP address, so that no
        request's host could equal it.
    """
    name = entry.strip()
    if name.startswith("*."):
        name = name[2:]
    elif name.startswith("."):
        name = name[1:]
    # A port is dropped (the entry covers every port), but it must be
    # one: "http://example.com/" would otherwise lose its "://example.com/"
    # as a port and become the name "http".
    port = None
    if name.startswith("["):
        host, bracket, rest = name[1:].partition("]")
        if not bracket or not (rest == "" or rest.startswith(":")):
            return None
        if rest:
            port = rest[1:]
    elif name.count(":") == 1:
        host, _, port = name.partition(":")
    else:
        host = name
    if port is not None and not (port.isdigit() and 0 < int(port) < 65536):
        return None
    forms = _hostForms(host)
    for form in forms:
        isName = len(form) <= 253 and _HOST_NAME.fullmatch(form) is not None
        if not isName and not _isAddress(form):
            return None
    return forms


def _notADomain(entry: str, where: Optional[str]) -> ValueError:
    """
    @return: the error for an entry no host can match, naming C{where} and
        the entry, and what to write instead.
    """
    text = entry.strip()
    if text == "*":
        hint = (
            "a wildcard may only start a domain, as in *.example.com, which"
            " means the same as example.com"
        )
    elif "/" in text:
        try:
            ipaddress.ip_network(text, strict=False)
        except ValueError:
            try:
                host = urlsplit(text if "://" in text else "//" + text).hostname
            except ValueError:
                host = None
            hint = "give the host alone"
            if host and _entryForms(host):
                hint += f", e.g. {host}"
        else:
            hint = "a CIDR block; give domain names or single addresses"
    elif text.rstrip(".").rpartition(".")[2].isdigit():
        hint = "it ends in a number but is no IPv4 address"
    else:
        hint = (
            "expected a host name such as example.com or *.example.com, or an"
            " IP address"
        )
    prefix = f"{where}: " if where else ""
    return ValueError(f"{prefix}{entry!r} is not a domain name ({hint})")


def _everyAddress(pattern: str) -> bool:
    """
    @return: whether C{pattern} is a CIDR block of every IPv4 or every IPv6
        address (C{0.0.0.0/0}, C{::/0}).
    """
    try:
        return ipaddress.ip_network(pattern, strict=False).prefixlen == 0
    except ValueError:
        return False


class DomainSet:
    """
    A set of domains, each matched with all its subdomains (the blocked
    domains, and the C{hosts} lists of other filters).

    Entries are host names (C{example.com}, with C{*.example.com} and
    C{.example.com} meaning the same), Unicode names, and IPv4 or IPv6
    addresses, all normalised as L{normaliseHost} describes.  An entry no
    host could ever match (a URL, C{*}, spaces or other characters no host
    name has) is refused when it is added.
    """

    def __init__(
        self, domains: Iterable[str] = (), where: Optional[str] = None
    ) -> None:
        """
        @param domains: entries to L{add}.
        @param where: names the setting they come from, in errors.
        @raise ValueError: as L{add}.
        """
        self._domains: set[str] = set()
        for domain in domains:
            self.add(domain, where)

    def __len__(self) -> int:
        return len(self._domains)

    def add(self, domain: str, where: Optional[str] = None) -> None:
        """
        Add one entry.

        @param where: names the setting (or file and line) the entry comes
            from, in errors.
        @raise ValueError: naming C{where} and the entry, if no host could
            match it.
        """
        forms = _entryForms(domain)
        if forms is None:
            raise _notADomain(domain, where)
        self._domains.update(forms)

    def loadFile(self, path: str) -> int:
        """
        Add the domains listed in a file, one per line, or in hosts-file
        format (C{0.0.0.0 ads.example other.example}); C{#} starts a
        comment.

        @return: how many names were read.
        @raise ValueError: naming the file if it cannot be read, or the
            file, the line and the entry if no host could match an entry.
        """
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                text = f.read()
        except OSError as e:
            raise ValueError(f"blocked_domains_files: cannot read {path}: {e.strerror}")
        count = 0
        domains = self._domains
        add = domains.add
        plainName = _HOST_NAME.fullmatch
        for number, line in enumerate(text.splitlines(), 1):
            hashAt = line.find("#")
            if hashAt != -1:
                line = line[:hashAt]
            fields = line.split()
            if not fields:
                continue
            if len(fields) > 1 and (
                fields[0] in _SINK_ADDRESSES or _isAddress(fields[0])
            ):
                fields = fields[1:]
            for name in fields:
                name = name.rstrip(".").lower()
                if name in _HOSTS_FILE_NAMES:
                    continue
                if (
                    name.isascii()
                    and name[:1].isalpha()
                    and len(name) <= 253
                    and plainName(name)
                ):
                    # The common case, kept cheap for lists of 100,000.
                    add(name)
                    count += 1
                else:
                    before = len(domains)
                    self.add(name, f"blocked_domains_files: {path} line {number}")
                    count += len(domains) > before
        return count

    def match(self, host: str) -> Optional[str]:
        """
        @return: the blocked entry that C{host} falls under, or C{None}.
        """
        domains = self._domains
        if not domains:
            return None
        if (
            host.isascii()
            and "%" not in host
            and ":" not in host
            and not host[:1].isdigit()
        ):
            host = host.rstrip(".").lower()
        else:
            host = normaliseHost(host)
            if host in domains:
                return host
            if ":" in host or _isAddress(host):
                # An address has no parent domains.
                return None
        while True:
            if host in domains:
                return host
            dot = host.find(".")
            if dot == -1:
                return None
            host = host[dot + 1 :]


# The addresses hosts-format block lists use, recognised without parsing.
_SINK_ADDRESSES = frozenset(["0.0.0.0", "127.0.0.1", "::", "::1", "0"])
_HOSTS_FILE_NAMES = frozenset(
    [
        "localhost",
        "localhost.localdomain",
        "local",
        "broadcasthost",
        "ip6-localhost",
        "ip6-loopback",
        "0.0.0.0",
    ]
)


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
            log.info(
                "refused client {client}: not in allowed_clients", client=address[0]
            )
            response = errorResponse(
                403, "Your address is not allowed to use this proxy.", request.url()
            )
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
                response = errorResponse(
                    403, f"Access to {entry} is blocked by this proxy.", request.url()
                )
                response.reason = f"blocked domain {entry}"
                return response
        return None

    def filterRequest(self, request: RequestHead) -> Union[RequestHead, Response]:
        address = request.clientAddress
        if (address is None or self.clients.allows(address[0])) and not (
            request.host is not None and self.blocked._domains
        ):
            # The usual case, without another call: an allowed client and
            # no block list to look at.
            return request
        return self._check(request) or request

    def filterTunnel(self, request: RequestHead) -> Optional[Response]:
        return self._check(request)


def makeFilter(config: dict[str, Any]) -> AccessFilter:
    """
    Build the access filter from C{[access]} settings.

    @raise ValueError: naming the bad setting.
    """
    keys = ("allowed_clients", "blocked_domains", "blocked_domains_files")
    unknown = set(config) - set(keys)
    if unknown:
        raise ValueError(
            f"unknown access setting(s): {', '.join(sorted(unknown))}; expected {', '.join(keys)}"
        )
    for key in keys:
        value = config.get(key, [])
        if not isinstance(value, list) or not all(
            isinstance(v, str) and v for v in value
        ):
            raise ValueError(
                f"access: {key}: expected a list of non-empty strings, got {value!r}"
            )
    patterns = config.get("allowed_clients", DEFAULT_ALLOWED)
    clients = ClientPolicy(patterns)
    for pattern in patterns:
        if pattern == "*" or _everyAddress(pattern):
            log.warn(
                "allowed_clients contains {pattern!r}: this proxy is open to every"
                " client that can reach it",
                pattern=pattern,
            )
    blocked = DomainSet(config.get("blocked_domains", []), "blocked_domains")
    for path in config.get("blocked_domains_files", []):
        blocked.loadFile(path)
    return AccessFilter(clients, blocked)
