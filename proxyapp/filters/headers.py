# -*- test-case-name: tests.test_filters_headers -*-
"""
The C{headers} filter: add, set or remove request and response fields,
for every host or only for some.

Configuration (C{[filter.headers]}).  The top-level table is one rule; each
C{[[filter.headers.rule]]} adds another.  Rules run in order (the top-level
one first); within a rule, removals run first, then C{set}, then C{add}::

    [filter.headers]
    request_remove = ["X-Debug-Token"]      # names removed from requests
    request_set = {X-Proxy = "webproxy"}    # replaces every field of that
                                            # name with one (added if absent)
    request_add = {Accept-Language = "en"}  # appended after any of that
                                            # name; a list adds several
    response_remove = ["Server"]
    response_set = {X-Frame-Options = "DENY"}
    response_add = {Link = ["<a>; rel=x", "<b>; rel=y"]}

    [[filter.headers.rule]]
    hosts = ["example.com"]                 # this rule only for these
                                            # domains and their subdomains
    request_set = {X-Example = "1"}

A top-level C{hosts} limits the top-level rule the same way.  C{hosts}
entries are written as C{[access] blocked_domains} entries are (host names,
C{*.example.com}, IP addresses); one no host could match, such as a URL or
C{*}, stops the start.  Field names are matched case-insensitively and
sent as written.  Fields the proxy manages itself (Content-Length,
Transfer-Encoding, Host, Connection and the other hop-by-hop fields, Via)
cannot be named.  CONNECT tunnels carry no headers the proxy could change.
"""

from __future__ import annotations

from typing import Any, Optional

from zope.interface import alsoProvides, implementer

from proxyapp.filters.access import DomainSet
from proxyapp.interfaces import IRequestFilter, IResponseFilter
from proxyapp import message
from proxyapp.message import Headers, RequestHead, ResponseHead

EDIT_KEYS = (
    "request_remove",
    "request_set",
    "request_add",
    "response_remove",
    "response_set",
    "response_add",
)
RULE_KEYS = ("hosts",) + EDIT_KEYS

# Fields whose meaning the proxy owns: changing them would break framing,
# routing or hop-by-hop handling.
MANAGED = frozenset(
    [
        b"content-length",
        b"transfer-encoding",
        b"host",
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authorization",
        b"proxy-authenticate",
        b"te",
        b"trailer",
        b"upgrade",
        b"via",
    ]
)

TOKEN_CHARS = frozenset(message.TOKEN_CHARS)


def checkFieldName(name: Any, where: str) -> bytes:
    """
    @return: C{name} as bytes if it is a field name a filter may change.
    @raise ValueError: naming C{where} otherwise.
    """
    if (
        not isinstance(name, str)
        or not name.isascii()
        or not message.isToken(name.encode("ascii"))
    ):
        raise ValueError(f"{where}: expected a header field name, got {name!r}")
    raw = name.encode("ascii")
    if raw.lower() in MANAGED:
        raise ValueError(
            f"{where}: {name} is managed by the proxy and cannot be changed by a filter"
        )
    return raw


def checkFieldValue(value: Any, where: str) -> bytes:
    """
    @return: C{value} encoded as a field value.
    @raise ValueError: for a non-string or one with control characters.
    """
    if not isinstance(value, str) or not message.isFieldValue(value.encode("utf-8")):
        raise ValueError(
            f"{where}: expected a field value without control characters, got {value!r}"
        )
    return value.strip().encode("utf-8")


class Edits:
    """
    The changes to one message's fields.

    @ivar remove: lowercase names to remove.
    @ivar set: C{(name, value)} pairs to set.
    @ivar add: C{(name, value)} pairs to append.
    """

    __slots__ = ("remove", "set", "add")

    def __init__(
        self,
        remove: tuple[bytes, ...] = (),
        set: tuple[tuple[bytes, bytes], ...] = (),
        add: tuple[tuple[bytes, bytes], ...] = (),
    ) -> None:
        self.remove = remove
        self.set = set
        self.add = add

    def __bool__(self) -> bool:
        return bool(self.remove or self.set or self.add)

    def apply(self, headers: Headers) -> None:
        for name in self.remove:
            headers.remove(name)
        for name, value in self.set:
            headers.set(name, value)
        for name, value in self.add:
            headers.add(name, value)


class Rule:
    """
    Edits for requests and responses, for some hosts or all.

    @ivar hosts: the domains the rule is limited to, or C{None} for all.
    """

    __slots__ = ("hosts", "request", "response")

    def __init__(
        self, hosts: Optional[DomainSet], request: Edits, response: Edits
    ) -> None:
        self.hosts = hosts
        self.request = request
        self.response = response

    def appliesTo(self, request: RequestHead) -> bool:
        if self.hosts is None:
            return True
        return request.host is not None and self.hosts.match(request.host) is not None


@implementer(IRequestFilter)
class HeadersFilter:
    """
    Applies configured field edits.  Provides L{IResponseFilter} too when
    some rule edits responses.
    """

    def __init__(self, rules: list[Rule]) -> None:
        self.rules = rules
        self._requestRules = [r for r in rules if r.request]
        self._responseRules = [r for r in rules if r.response]
        if self._responseRules:
            alsoProvides(self, IResponseFilter)

    def filterRequest(self, request: RequestHead) -> RequestHead:
        for rule in self._requestRules:
            if rule.appliesTo(request):
                rule.request.apply(request.headers)
        return request

    def filterResponse(
        self, request: RequestHead, response: ResponseHead
    ) -> ResponseHead:
        for rule in self._responseRules:
            if rule.appliesTo(request):
                rule.response.apply(response.headers)
        return response


def _names(value: Any, where: str) -> tuple[bytes, ...]:
    if not isinstance(value, list):
        raise ValueError(
            f"{where}: expected a list of header field names, got {value!r}"
        )
    return tuple(checkFieldName(name, where).lower() for name in value)


def _pairs(value: Any, where: str, many: bool) -> tuple[tuple[bytes, bytes], ...]:
    what = "a table of field names to values" + (
        " (a value or a list of values)" if many else ""
    )
    if not isinstance(value, dict):
        raise ValueError(f"{where}: expected {what}, got {value!r}")
    pairs = []
    for name, values in value.items():
        raw = checkFieldName(name, where)
        if many and isinstance(values, list):
            if not values:
                raise ValueError(
                    f"{where}: {name}: expected a value or a non-empty list of values, got []"
                )
            for one in values:
                pairs.append((raw, checkFieldValue(one, f"{where}: {name}")))
        else:
            pairs.append((raw, checkFieldValue(values, f"{where}: {name}")))
    return tuple(pairs)


def parseRule(table: dict[str, Any], where: str) -> Rule:
    """
    @raise ValueError: naming the bad key.
    """
    unknown = set(table) - set(RULE_KEYS)
    if unknown:
        raise ValueError(
            f"{where}: unknown key(s) {', '.join(sorted(unknown))}; expected {', '.join(RULE_KEYS)}"
        )
    hosts: Optional[DomainSet] = None
    if "hosts" in table:
        domains = table["hosts"]
        if (
            not isinstance(domains, list)
            or not domains
            or not all(isinstance(d, str) and d for d in domains)
        ):
            raise ValueError(
                f"{where}: hosts: expected a non-empty list of domain names, got {domains!r}"
            )
        hosts = DomainSet(domains, f"{where}: hosts")
    edits = []
    for side in ("request", "response"):
        edits.append(
            Edits(
                _names(table.get(f"{side}_remove", []), f"{where}: {side}_remove"),
                _pairs(
                    table.get(f"{side}_set", {}), f"{where}: {side}_set", many=False
                ),
                _pairs(table.get(f"{side}_add", {}), f"{where}: {side}_add", many=True),
            )
        )
    return Rule(hosts, edits[0], edits[1])


def makeFilter(config: dict[str, Any]) -> HeadersFilter:
    """
    Build the headers filter from its table (see the module docstring).

    @raise ValueError: naming the bad key and what was expected.
    """
    top = {k: v for k, v in config.items() if k != "rule"}
    rules = []
    first = parseRule(top, "headers")
    if first.request or first.response:
        rules.append(first)
    elif "hosts" in top:
        raise ValueError("headers: hosts is set but the top-level table edits nothing")
    extra = config.get("rule", [])
    if not isinstance(extra, list) or not all(isinstance(t, dict) for t in extra):
        raise ValueError(
            f"headers: rule: expected [[filter.headers.rule]] tables, got {extra!r}"
        )
    for index, table in enumerate(extra, 1):
        rule = parseRule(table, f"headers: rule {index}")
        if not (rule.request or rule.response):
            raise ValueError(
                f"headers: rule {index}: edits nothing; expected one of {', '.join(EDIT_KEYS)}"
            )
        rules.append(rule)
    return HeadersFilter(rules)
