# -*- test-case-name: tests.test_filters_auth -*-
"""
The C{auth} filter: Basic proxy authentication (RFC 9110 section 11.7,
RFC 7617) against an htpasswd file, for plain HTTP requests and CONNECT
alike.

A request without valid credentials gets C{407 Proxy Authentication
Required} with C{Proxy-Authenticate: Basic realm="...", charset="UTF-8"}.
With valid ones, C{request.user} is the user name, which later filters and
the access log see.  The C{Proxy-Authorization} field itself never reaches
the origin (the proxy removes it as hop-by-hop before any filter runs; this
filter reads the copy in C{request.credentials}).

Checks go through a L{twisted.cred} checker
(L{proxyapp.filters.htpasswd.HtpasswdChecker}); bcrypt and SHA-crypt
checks run in the reactor's thread pool, and successful checks are
remembered for C{cache_seconds}, so the reactor never waits for a hash.

Repeated failures from one client address are throttled, so the proxy is
no password oracle: the n-th recent failure is answered after
C{min(n * failure_delay, max_delay)} seconds, and from the
C{block_after}-th on every attempt with credentials gets C{429 Too Many
Requests} without any check, until the address has been quiet for
C{forget_after} seconds.  Requests without credentials (a client's usual
first try) are not failures.

Configuration (C{[auth]}, or C{[filter.auth]} when enabled by name)::

    htpasswd = "/etc/webproxy/htpasswd"  # required; bcrypt ($2y$, $2b$,
                                         # $2a$), SHA-crypt ($5$, $6$),
                                         # Apache MD5 ($apr1$, $1$), {SHA}
    realm = "webproxy"          # named in Proxy-Authenticate; no '"' or '\\'
    failure_delay = 1.0         # seconds added per recent failure (0: none)
    max_delay = 4.0             # cap on that delay; keep it below the
                                # filter deadline ([filters] deadline, 5 s)
    block_after = 20            # recent failures after which a client
                                # gets 429 without any check
    forget_after = 300.0        # seconds without a failure after which a
                                # client's failures are forgotten
    cache_seconds = 60.0        # how long a successful check is
                                # remembered (0: never)
"""

from __future__ import annotations

import binascii
import math
from collections import OrderedDict
from typing import Any, Callable, Optional, Union

from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from proxyapp.filters.htpasswd import HtpasswdChecker, HtpasswdFile, RunSlow
from proxyapp.interfaces import IRequestFilter, ITunnelFilter
from proxyapp.message import RequestHead, Response, errorResponse

log = Logger()

DEFAULTS: dict[str, Any] = {
    "realm": "webproxy",
    "failure_delay": 1.0,
    "max_delay": 4.0,
    "block_after": 20,
    "forget_after": 300.0,
    "cache_seconds": 60.0,
}


def parseBasic(credentials: bytes) -> Optional[tuple[bytes, bytes]]:
    """
    Decode a C{Basic} C{Proxy-Authorization} value.

    @return: C{(user, password)} as bytes, or C{None} if the value is not
        well-formed Basic credentials.
    """
    scheme, _, token = credentials.strip().partition(b" ")
    if scheme.lower() != b"basic":
        return None
    token = token.strip()
    try:
        decoded = binascii.a2b_base64(token, strict_mode=True)
    except (binascii.Error, ValueError):
        return None
    user, colon, password = decoded.partition(b":")
    if not colon:
        return None
    return user, password


def _userText(user: bytes) -> str:
    try:
        return user.decode("utf-8")
    except UnicodeDecodeError:
        return user.decode("latin-1")


class FailureCounter:
    """
    Recent authentication failures per client address, forgotten after a
    quiet period; bounded in size (the oldest addresses go first).

    @ivar clock: returns the current time in seconds.
    """

    maxClients = 10000

    def __init__(self, forgetAfter: float, clock: Callable[[], float]) -> None:
        self.forgetAfter = forgetAfter
        self.clock = clock
        self._counts: OrderedDict[str, tuple[int, float]] = OrderedDict()

    def count(self, client: str) -> int:
        """
        @return: the client's recent failures.
        """
        entry = self._counts.get(client)
        if entry is None:
            return 0
        count, last = entry
        if self.clock() - last >= self.forgetAfter:
            del self._counts[client]
            return 0
        return count

    def record(self, client: str, failed: bool = True) -> int:
        """
        Note an attempt: a failure adds one, any attempt restarts the quiet
        period.

        @return: the client's recent failures, this one included.
        """
        count = self.count(client) + (1 if failed else 0)
        self._counts[client] = (count, self.clock())
        self._counts.move_to_end(client)
        while len(self._counts) > self.maxClients:
            self._counts.popitem(last=False)
        return count

    def __len__(self) -> int:
        return len(self._counts)


@implementer(IRequestFilter, ITunnelFilter)
class AuthFilter:
    """
    Requires Basic proxy credentials that the checker accepts.

    @ivar checker: an L{twisted.cred.checkers.ICredentialsChecker} for
        L{twisted.cred.credentials.IUsernamePassword}.
    @ivar reactor: provides C{callLater} and C{seconds}; the delays of
        throttled answers and the failure clock use it.  Defaults to the
        global reactor, imported when first needed.
    """

    def __init__(
        self,
        checker: HtpasswdChecker,
        realm: str = "webproxy",
        failureDelay: float = 1.0,
        maxDelay: float = 4.0,
        blockAfter: int = 20,
        forgetAfter: float = 300.0,
        reactor: Any = None,
    ) -> None:
        self.checker = checker
        self.realm = realm
        self.failureDelay = failureDelay
        self.maxDelay = maxDelay
        self.blockAfter = blockAfter
        self._reactor = reactor
        self.failures = FailureCounter(forgetAfter, lambda: self.reactor.seconds())
        self._challenge = b'Basic realm="%s", charset="UTF-8"' % (
            realm.encode("utf-8"),
        )

    @property
    def reactor(self) -> Any:
        if self._reactor is None:
            from twisted.internet import reactor

            self._reactor = reactor
        return self._reactor

    @reactor.setter
    def reactor(self, reactor: Any) -> None:
        self._reactor = reactor

    def filterRequest(
        self, request: RequestHead
    ) -> "Union[RequestHead, Response, Deferred[Any]]":
        return self._authenticate(request, request)

    def filterTunnel(
        self, request: RequestHead
    ) -> "Union[None, Response, Deferred[Any]]":
        return self._authenticate(request, None)

    def _authenticate(
        self, request: RequestHead, allowed: Optional[RequestHead]
    ) -> Any:
        credentials = request.credentials
        if credentials is None:
            return self._refusal(request, "proxy authentication required")
        client = request.clientAddress[0] if request.clientAddress else "-"
        parsed = parseBasic(credentials)
        if parsed is None:
            if not credentials.strip().lower().startswith(b"basic "):
                # Another scheme (Negotiate, Digest): not a guess at a
                # password, just a client that has to learn we want Basic.
                return self._refusal(request, "proxy authentication required (Basic)")
            return self._failed(
                request, client, "<malformed>", "malformed Basic credentials"
            )
        user, password = parsed
        if self.failures.count(client) >= self.blockAfter:
            self.failures.record(client, failed=False)
            return self._tooMany(request, client)
        if self.checker.cached(user, password):
            request.user = _userText(user)
            return allowed

        def succeeded(avatarId: bytes) -> Optional[RequestHead]:
            request.user = _userText(avatarId)
            return allowed

        def failed(failure: Failure) -> Any:
            failure.trap(UnauthorizedLogin)
            return self._failed(
                request, client, _userText(user), "wrong user name or password"
            )

        d = self.checker.requestAvatarId(UsernamePassword(user, password))
        return d.addCallbacks(succeeded, failed)

    def _failed(self, request: RequestHead, client: str, user: str, why: str) -> Any:
        count = self.failures.record(client)
        log.info(
            "proxy authentication failed for {client} as {user!r}: {why} ({count} recent failures)",
            client=client,
            user=user,
            why=why,
            count=count,
        )
        if count >= self.blockAfter:
            return self._tooMany(request, client)
        response = self._refusal(request, f"proxy authentication failed: {why}")
        delay = min(self.failureDelay * count, self.maxDelay)
        if delay <= 0:
            return response
        from twisted.internet.task import deferLater

        return deferLater(self.reactor, delay, lambda: response)

    def _refusal(self, request: RequestHead, reason: str) -> Response:
        response = errorResponse(
            407, "This proxy requires a user name and password.", request.url()
        )
        response.head.headers.add(b"Proxy-Authenticate", self._challenge)
        response.reason = reason
        return response

    def _tooMany(self, request: RequestHead, client: str) -> Response:
        response = errorResponse(
            429,
            "Too many failed proxy authentication attempts from your address; try again later.",
            request.url(),
        )
        response.head.headers.add(
            b"Retry-After", b"%d" % math.ceil(self.failures.forgetAfter)
        )
        response.reason = f"too many failed proxy authentication attempts from {client}"
        return response


def _number(config: dict[str, Any], key: str, positive: bool = False) -> float:
    value = config.get(key, DEFAULTS[key])
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or value < 0
        or (positive and value == 0)
    ):
        what = (
            "a positive number of seconds"
            if positive
            else "a number of seconds, 0 or more"
        )
        raise ValueError(f"auth: {key}: expected {what}, got {value!r}")
    return float(value)


def makeFilter(
    config: dict[str, Any], runSlow: Optional[RunSlow] = None, reactor: Any = None
) -> AuthFilter:
    """
    Build the auth filter from its table (see the module docstring).

    @param runSlow: how slow hash checks run (tests pass a synchronous
        one); the reactor's thread pool by default.
    @param reactor: the reactor for delays (tests pass a Clock).
    @raise ValueError: naming the bad key and what was expected.
    """
    unknown = set(config) - {"htpasswd"} - set(DEFAULTS)
    if unknown:
        known = ", ".join(["htpasswd", *DEFAULTS])
        raise ValueError(
            f"auth: unknown key(s) {', '.join(sorted(unknown))}; expected {known}"
        )
    path = config.get("htpasswd")
    if not isinstance(path, str) or not path:
        raise ValueError(
            f"auth: htpasswd: expected the path of an htpasswd file, got {path!r}"
        )
    realm = config.get("realm", DEFAULTS["realm"])
    if (
        not isinstance(realm, str)
        or not realm
        or any(c in realm for c in '"\\\r\n')
        or not realm.isprintable()
    ):
        raise ValueError(
            f"auth: realm: expected a non-empty string without quotes, backslashes or control characters, got {realm!r}"
        )
    blockAfter = config.get("block_after", DEFAULTS["block_after"])
    if (
        isinstance(blockAfter, bool)
        or not isinstance(blockAfter, int)
        or blockAfter < 1
    ):
        raise ValueError(
            f"auth: block_after: expected a positive integer, got {blockAfter!r}"
        )
    failureDelay = _number(config, "failure_delay")
    maxDelay = _number(config, "max_delay")
    forgetAfter = _number(config, "forget_after", positive=True)
    cacheSeconds = _number(config, "cache_seconds")
    passwords = HtpasswdFile(path)
    if not len(passwords):
        log.warn(
            "auth: {path} has no usable entries; every request will get 407", path=path
        )
    checker = HtpasswdChecker(passwords, cacheSeconds=cacheSeconds, runSlow=runSlow)
    return AuthFilter(
        checker, realm, failureDelay, maxDelay, blockAfter, forgetAfter, reactor
    )
