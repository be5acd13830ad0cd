# -*- test-case-name: tests.test_filters_privacy -*-
"""
The C{privacy} filter: what the origin learns about the client and the
proxy.

Configuration (C{[filter.privacy]}), every key optional::

    via = true                  # false: the proxy's own Via entry is
                                # removed from requests and responses
                                # (entries of other proxies stay)
    forwarded_for = "pass"      # X-Forwarded-For: "pass" (leave as the
                                # client sent it), "append" (add the
                                # client's address to the list), "set"
                                # (only the client's address), "remove"
    forwarded = "pass"          # Forwarded (RFC 7239): "pass", "append"
                                # (add for=...;host=...;proto=... for this
                                # hop), "set" (only this hop), "remove"
    remove = ["From"]           # request fields removed from every request
    replace = {User-Agent = "Mozilla/5.0"}
                                # request fields whose value is replaced
                                # when the client sent them
    referer = "pass"            # "pass", "origin" (cut to scheme://host/),
                                # "remove"
    strip_cookies_for = ["tracker.example"]
                                # Cookie removed from requests to these
                                # domains and their subdomains, and
                                # Set-Cookie from their responses;
                                # host names or addresses as in
                                # [access] blocked_domains (a URL or
                                # "*" stops the start)

Field names in C{remove} and C{replace} are matched case-insensitively.
Fields the proxy manages itself (framing, Host, hop-by-hop fields) cannot
be listed.

With C{via = false} the filter removes the Via elements whose received-by
is the proxy's pseudonym, from requests and responses, and keeps every
other element (of a comma-separated list too).  The core appends its Via
field (C{1.0 <pseudonym>} or C{1.1 <pseudonym>}, after the version of the
message it received) to every request it forwards and every response it
relays, before the filters see them; so the pseudonym is the received-by
of the last Via field of each such message, read afresh each time and
never carried from one message to the next.  A request addressed to the
proxy itself (its status page) gets no Via from the core, and the filter
removes nothing from it.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Optional, Union

from zope.interface import alsoProvides, implementer

from proxyapp.filters.access import DomainSet
from proxyapp.filters.headers import TOKEN_CHARS, checkFieldName, checkFieldValue
from proxyapp.interfaces import IRequestFilter, IResponseFilter
from proxyapp.message import Headers, RequestHead, ResponseHead

MODES = ("pass", "append", "set", "remove")
REFERER_MODES = ("pass", "origin", "remove")


def _viaElements(value: bytes) -> list[bytes]:
    """
    Split a Via field value into its elements at the commas outside
    comments (which may nest and hold quoted pairs, RFC 9110 section 5.6.5).

    @return: the elements, without surrounding whitespace, empty ones
        dropped.
    """
    elements = []
    depth = 0
    escaped = False
    start = 0
    for i, c in enumerate(value):
        if escaped:
            escaped = False
        elif depth and c == 0x5C:  # backslash
            escaped = True
        elif c == 0x28:  # (
            depth += 1
        elif c == 0x29 and depth:  # )
            depth -= 1
        elif c == 0x2C and not depth:  # ,
            elements.append(value[start:i].strip())
            start = i + 1
    elements.append(value[start:].strip())
    return [e for e in elements if e]


def _receivedBy(element: bytes) -> Optional[bytes]:
    """
    @return: the received-by of a Via element, lowercase, or C{None} if it
        has none.
    """
    parts = element.split(None, 2)
    return parts[1].lower() if len(parts) >= 2 else None


def ownViaToken(headers: Headers, version: bytes) -> Optional[bytes]:
    """
    @return: the proxy's pseudonym (lowercase) as the received-by of the
        Via field the core appended to a message of C{version}: the last Via
        field, if it is exactly C{<version number> <pseudonym>}; else
        C{None}.
    """
    values = headers.getAll(b"via")
    if not values:
        return None
    parts = values[-1].split()
    if len(parts) != 2 or parts[0] != version.rpartition(b"/")[2]:
        return None
    if b"," in parts[1] or b"(" in parts[1]:
        return None
    return parts[1].lower()


def removeVia(headers: Headers, token: bytes) -> None:
    """
    Remove the Via elements whose received-by is C{token} (lowercase),
    keeping the other elements, in order, and fields left empty out.
    """
    fields = [(n, v) for n, v in headers if n.lower() == b"via"]
    kept = []
    changed = False
    for name, value in fields:
        elements = _viaElements(value)
        others = [e for e in elements if _receivedBy(e) != token]
        if len(others) != len(elements):
            changed = True
            if others:
                kept.append((name, b", ".join(others)))
        else:
            kept.append((name, value))
    if not changed:
        return
    headers.remove(b"via")
    for name, value in kept:
        headers.add(name, value)


def _clientIP(
    request: RequestHead,
) -> Optional[Union[ipaddress.IPv4Address, ipaddress.IPv6Address]]:
    """
    @return: the client's address (IPv4-mapped IPv6 as IPv4), or C{None}
        when it is unknown or not an IP address.
    """
    if request.clientAddress is None:
        return None
    try:
        address = ipaddress.ip_address(request.clientAddress[0].split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _nodeName(request: RequestHead) -> bytes:
    """
    @return: the client as an RFC 7239 node: an IPv4 address, a quoted
        bracketed IPv6 address, or C{unknown}.
    """
    address = _clientIP(request)
    if address is None:
        return b"unknown"
    if address.version == 6:
        return b'"[' + str(address).encode("ascii") + b']"'
    return str(address).encode("ascii")


def _clientText(request: RequestHead) -> bytes:
    """
    @return: the client's address for X-Forwarded-For, or C{unknown}.
    """
    address = _clientIP(request)
    return b"unknown" if address is None else str(address).encode("ascii")


def _quoteHost(authority: bytes) -> bytes:
    # host= values with a port or brackets need quoting (RFC 7239 4).
    if all(c in TOKEN_CHARS for c in authority):
        return authority
    return b'"' + authority.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


@implementer(IRequestFilter)
class PrivacyFilter:
    """
    Removes or rewrites what identifies the client (and, optionally, the
    proxy) to the origin.

    It also provides L{IResponseFilter} only when it has something to do
    on responses (C{strip_cookies_for}, C{via = false}), so that an unused
    hook costs the proxy nothing.
    """

    def __init__(
        self,
        via: bool = True,
        forwardedFor: str = "pass",
        forwarded: str = "pass",
        remove: tuple[bytes, ...] = (),
        replace: tuple[tuple[bytes, bytes], ...] = (),
        referer: str = "pass",
        stripCookiesFor: Optional[DomainSet] = None,
    ) -> None:
        self.via = via
        self.forwardedFor = forwardedFor
        self.forwarded = forwarded
        self.remove = remove
        self.replace = replace
        self.referer = referer
        self.stripCookiesFor = (
            stripCookiesFor if stripCookiesFor is not None else DomainSet()
        )
        if not via or len(self.stripCookiesFor):
            alsoProvides(self, IResponseFilter)

    def filterRequest(self, request: RequestHead) -> RequestHead:
        headers = request.headers
        if not self.via and request.host is not None:
            # Only a request with a target carries the core's Via.
            token = ownViaToken(headers, request.version)
            if token is not None:
                removeVia(headers, token)
        if self.forwardedFor != "pass":
            self._forwardedFor(request, headers)
        if self.forwarded != "pass":
            self._forwarded(request, headers)
        for name in self.remove:
            headers.remove(name)
        for name, value in self.replace:
            if name in headers:
                headers.set(name, value)
        if self.referer != "pass":
            self._referer(headers)
        if (
            len(self.stripCookiesFor)
            and request.host is not None
            and self.stripCookiesFor.match(request.host)
        ):
            headers.remove(b"cookie")
        return request

    def _forwardedFor(self, request: RequestHead, headers: Headers) -> None:
        mode = self.forwardedFor
        if mode == "remove":
            headers.remove(b"x-forwarded-for")
            return
        client = _clientText(request)
        existing = headers.getAll(b"x-forwarded-for")
        if mode == "append" and existing:
            headers.set(b"X-Forwarded-For", b", ".join(existing + [client]))
        else:
            headers.set(b"X-Forwarded-For", client)

    def _forwarded(self, request: RequestHead, headers: Headers) -> None:
        mode = self.forwarded
        if mode == "remove":
            headers.remove(b"forwarded")
            return
        element = b"for=" + _nodeName(request)
        if request.authority:
            element += b";host=" + _quoteHost(request.authority)
        element += b";proto=" + (request.scheme or "http").encode("ascii")
        existing = headers.getAll(b"forwarded")
        if mode == "append" and existing:
            headers.set(b"Forwarded", b", ".join(existing + [element]))
        else:
            headers.set(b"Forwarded", element)

    def _referer(self, headers: Headers) -> None:
        if self.referer == "remove":
            headers.remove(b"referer")
            return
        referer = headers.get(b"referer")
        if referer is None:
            return
        scheme, sep, rest = referer.partition(b"://")
        if not sep:
            headers.remove(b"referer")
            return
        end = len(rest)
        for delimiter in (b"/", b"?", b"#"):
            found = rest.find(delimiter)
            if found != -1 and found < end:
                end = found
        authority = rest[:end].rpartition(b"@")[2]
        headers.set(b"Referer", scheme + b"://" + authority + b"/")

    def filterResponse(
        self, request: RequestHead, response: ResponseHead
    ) -> ResponseHead:
        if (
            len(self.stripCookiesFor)
            and request.host is not None
            and self.stripCookiesFor.match(request.host)
        ):
            response.headers.remove(b"set-cookie")
        if not self.via:
            token = ownViaToken(response.headers, response.version)
            if token is not None:
                removeVia(response.headers, token)
        return response


def _choice(config: dict[str, Any], key: str, choices: tuple[str, ...]) -> str:
    value = config.get(key, "pass")
    if value not in choices:
        raise ValueError(
            f"privacy: {key}: expected one of {', '.join(repr(c) for c in choices)}, got {value!r}"
        )
    return value  # type: ignore[no-any-return]


KEYS = (
    "via",
    "forwarded_for",
    "forwarded",
    "remove",
    "replace",
    "referer",
    "strip_cookies_for",
)


def makeFilter(config: dict[str, Any]) -> PrivacyFilter:
    """
    Build the privacy filter from its table (see the module docstring).

    @raise ValueError: naming the bad key and what was expected.
    """
    unknown = set(config) - set(KEYS)
    if unknown:
        raise ValueError(
            f"privacy: unknown key(s) {', '.join(sorted(unknown))}; expected {', '.join(KEYS)}"
        )
    via = config.get("via", True)
    if not isinstance(via, bool):
        raise ValueError(f"privacy: via: expected true or false, got {via!r}")
    forwardedFor = _choice(config, "forwarded_for", MODES)
    forwarded = _choice(config, "forwarded", MODES)
    referer = _choice(config, "referer", REFERER_MODES)
    removeList = config.get("remove", [])
    if not isinstance(removeList, list):
        raise ValueError(
            f"privacy: remove: expected a list of header field names, got {removeList!r}"
        )
    remove = tuple(
        checkFieldName(name, "privacy: remove").lower() for name in removeList
    )
    replaceTable = config.get("replace", {})
    if not isinstance(replaceTable, dict):
        raise ValueError(
            f"privacy: replace: expected a table of field names to values, got {replaceTable!r}"
        )
    replace = tuple(
        (
            checkFieldName(name, "privacy: replace"),
            checkFieldValue(value, f"privacy: replace: {name}"),
        )
        for name, value in replaceTable.items()
    )
    domains = config.get("strip_cookies_for", [])
    if not isinstance(domains, list) or not all(
        isinstance(d, str) and d for d in domains
    ):
        raise ValueError(
            f"privacy: strip_cookies_for: expected a list of domain names, got {domains!r}"
        )
    stripCookiesFor = DomainSet(domains, "privacy: strip_cookies_for")
    return PrivacyFilter(
        via, forwardedFor, forwarded, remove, replace, referer, stripCookiesFor
    )
