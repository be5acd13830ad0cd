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
no password oracle: the n-th recent failure is answered
C{min(n * failure_delay, max_delay)} seconds after the attempt arrived (the
check's own time counts towards it), and once the address has
C{block_after} recent failures every attempt with credentials gets C{429
Too Many Requests} without any check, until the address has been quiet for
C{forget_after} seconds.  A check counts as a failure from the moment it
starts and is taken off only if it succeeds, so at most C{block_after}
checks per address are ever running or failed: parallel guesses are
bounded like sequential ones (while the address's checks still running
make up the count, a further attempt gets 503, below, rather than 429).
Requests without credentials (a client's usual first try) are not
failures.

At most C{max_checks} password checks run at once over all clients (each
occupies the reactor's thread pool, which real users' checks share); an
attempt beyond that gets C{503 Service Unavailable} with C{Retry-After: 1}
and no check.  Not 407, since the credentials may well be right and a
browser would prompt its user again; the answer does not depend on the
credentials, so it tells nothing about them.  Credentials verified
recently (C{cache_seconds}) need no check and are accepted even then.

C{deadline} is the chain's filter deadline, which the proxy passes in
from C{[filters] deadline} (a user cannot set it, nor C{on_error}: this
filter always fails closed).  A C{max_delay} set in the table must be below
it (the default one is cut to fit), and every answer comes a little before
it (C{deadline - min(0.5, deadline / 10)} seconds after the attempt),
throttled or not; a check still running then gets 503.  Built without it
(by hand, in tests) the filter does not bound its answers.

Configuration (C{[auth]}, or C{[filter.auth]} when enabled by name)::

    htpasswd = "/etc/webproxy/htpasswd"  # required; bcrypt ($2y$, $2b$,
                                         # $2a$; cost at most 13), SHA-crypt
                                         # ($5$, $6$; at most 1,000,000
                                         # rounds), Apache MD5 ($apr1$,
                                         # $1$), {SHA}; other, malformed or
                                         # costlier entries are logged at
                                         # start and cannot log in
    realm = "webproxy"          # named in Proxy-Authenticate; no '"' or '\\'
    failure_delay = 1.0         # seconds added per recent failure (0: none)
    max_delay = 4.0             # cap on that delay; below the filter
                                # deadline ([filters] deadline, 5 s)
    block_after = 20            # recent failures (and running checks)
                                # after which a client gets 429 without
                                # any check
    forget_after = 300.0        # seconds without a failure after which a
                                # client's failures are forgotten
    cache_seconds = 60.0        # how long a successful check is
                                # remembered (0: never)
    max_checks = 32             # password checks running at once, over
                                # all clients; beyond: 503
"""

from __future__ import annotations

import binascii
import math
from collections import OrderedDict
from typing import Any, Callable, Optional, Union

from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from proxyapp.config import finite
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
    "max_checks": 32,
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
    Recent authentication failures per client address, together with the
    address's password checks still running, forgotten after a quiet
    period; bounded in size (the oldest addresses go first).

    An attempt counts from the moment its check starts (L{start}) and is
    taken off again only if it succeeds (L{finish}), so parallel guesses
    count as soon as they are made, not when their checks come back.

    @ivar clock: returns the current time in seconds.
    """

    maxClients = 10000

    def __init__(self, forgetAfter: float, clock: Callable[[], float]) -> None:
        self.forgetAfter = forgetAfter
        self.clock = clock
        # client: [recent failures, checks running, time of the last attempt]
        self._counts: OrderedDict[str, list[float]] = OrderedDict()

    def _entry(self, client: str) -> Optional[list[float]]:
        entry = self._counts.get(client)
        if entry is not None and self.clock() - entry[2] >= self.forgetAfter:
            if not entry[1]:
                del self._counts[client]
                return None
            entry[0] = 0
        return entry

    def count(self, client: str) -> int:
        """
        @return: the client's recent failures plus its checks still
            running.
        """
        entry = self._entry(client)
        if entry is None:
            return 0
        return int(entry[0] + entry[1])

    def running(self, client: str) -> int:
        """
        @return: the client's checks still running.
        """
        entry = self._entry(client)
        return 0 if entry is None else int(entry[1])

    def _update(self, client: str, failures: int, running: int) -> int:
        entry = self._entry(client) or [0, 0, 0.0]
        entry[0] += failures
        entry[1] = max(0, entry[1] + running)
        entry[2] = self.clock()
        self._counts[client] = entry
        self._counts.move_to_end(client)
        while len(self._counts) > self.maxClients:
            self._counts.popitem(last=False)
        return int(entry[0] + entry[1])

    def record(self, client: str, failed: bool = True) -> int:
        """
        Note an attempt that needs no check: a failure adds one, any
        attempt restarts the quiet period.

        @return: L{count}, this attempt included.
        """
        return self._update(client, 1 if failed else 0, 0)

    def start(self, client: str) -> int:
        """
        Note that a check of the client's credentials starts; it counts
        like a failure until L{finish}.

        @return: L{count}, this check included.
        """
        return self._update(client, 0, 1)

    def finish(self, client: str, failed: bool) -> int:
        """
        Note that one of the client's checks ended: a failure stays
        counted, a success is taken off.

        @return: the client's recent failures, this one included (checks
            still running left out: this is the n-th failure).
        """
        return self._update(client, 1 if failed else 0, -1) - self.running(client)

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
    @ivar maxChecks: how many password checks may run at once, over all
        clients; beyond that an attempt gets 503 without a check.
    @ivar checking: how many password checks are running.
    @ivar deadline: the chain's filter deadline in seconds, if known:
        every answer then comes before it (see L{answerWithin}).
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
        maxChecks: int = 32,
        deadline: Optional[float] = None,
    ) -> None:
        self.checker = checker
        self.realm = realm
        self.failureDelay = failureDelay
        self.maxDelay = maxDelay
        self.blockAfter = blockAfter
        self.maxChecks = maxChecks
        self.deadline = deadline
        self.checking = 0
        # Credentials being checked -> the requests waiting for the outcome.
        self._inflight: dict[tuple[bytes, bytes], list[Deferred[Any]]] = {}
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

    @property
    def answerWithin(self) -> Optional[float]:
        """
        Seconds from an attempt's arrival within which the filter answers
        it: a little before L{deadline}, or C{None} (no bound) when the
        deadline is not known.
        """
        if self.deadline is None:
            return None
        return self.deadline - min(0.5, self.deadline / 10)

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
            count = self.failures.record(client)
            response, delay = self._failed(
                request, client, "<malformed>", "malformed Basic credentials", count
            )
            within = self.answerWithin
            if within is not None:
                delay = min(delay, within)
            if delay <= 0:
                return response
            from twisted.internet.task import deferLater

            return deferLater(self.reactor, delay, lambda: response)
        user, password = parsed
        # Checks still running count here, so parallel guesses are bounded
        # like sequential ones.
        count = self.failures.count(client)
        if count >= self.blockAfter:
            running = self.failures.running(client)
            if count - running < self.blockAfter:
                # Not (yet) blocked: wait for the address's running checks.
                return self._busy(
                    request,
                    f"{running} proxy authentication checks from {client} running",
                )
            self.failures.record(client, failed=False)
            return self._tooMany(request, client)
        if self.checker.cached(user, password):
            request.user = _userText(user)
            return allowed
        if self.checking >= self.maxChecks and (user, password) not in self._inflight:
            return self._busy(
                request, f"{self.checking} proxy authentication checks running"
            )
        return self._check(request, allowed, client, user, password)

    def _shared(self, client: str, user: bytes, password: bytes) -> "Deferred[Any]":
        """
        Check these credentials once, however many requests carry them at
        the same time (a browser opens several connections at once with
        the same credentials): the first starts the check, which alone
        counts as running and, if it fails, as the client's failure; the
        others wait for its outcome.

        @return: a L{Deferred} firing with C{(outcome, count)}: the avatar
            ID or the L{Failure}, and the first client's recent failures
            afterwards (checks still running left out).
        """
        key = (user, password)
        waiter: "Deferred[Any]" = Deferred()
        waiters = self._inflight.get(key)
        if waiters is not None:
            waiters.append(waiter)
            return waiter
        # Registered before the check starts: it may end at once.
        waiters = self._inflight[key] = [waiter]
        self.failures.start(client)
        self.checking += 1

        def done(outcome: Any) -> None:
            del self._inflight[key]
            self.checking -= 1
            count = self.failures.finish(client, isinstance(outcome, Failure))
            for each in waiters:
                each.callback((outcome, count))

        maybeDeferred(
            self.checker.requestAvatarId, UsernamePassword(user, password)
        ).addBoth(done)
        return waiter

    def _check(
        self,
        request: RequestHead,
        allowed: Optional[RequestHead],
        client: str,
        user: bytes,
        password: bytes,
    ) -> "Deferred[Any]":
        """
        Check the credentials (counted as running until the check really
        ends, even if the answer went out before) and answer: C{allowed},
        a delayed 407, 429, or, if the check outlasts L{answerWithin}, 503.
        """
        reactor = self.reactor
        started = reactor.seconds()
        timers: list[Any] = []

        def cancelTimers(_: object = None) -> None:
            while timers:
                timer = timers.pop()
                if timer.active():
                    timer.cancel()

        answer: "Deferred[Any]" = Deferred(cancelTimers)

        def give(value: Any) -> None:
            cancelTimers()
            if not answer.called:
                answer.callback(value)

        def checked(result: tuple[Any, int]) -> None:
            outcome, count = result
            if not isinstance(outcome, Failure):
                if not answer.called:
                    request.user = _userText(outcome)
                give(allowed)
                return
            if not outcome.check(UnauthorizedLogin):
                if answer.called:
                    log.failure("proxy authentication check failed", outcome)
                else:
                    cancelTimers()
                    answer.errback(outcome)
                return
            response, delay = self._failed(
                request, client, _userText(user), "wrong user name or password", count
            )
            within = self.answerWithin
            if within is not None:
                delay = min(delay, within)
            # The check's own time counts towards the delay.
            wait = started + delay - reactor.seconds()
            if wait <= 0 or answer.called:
                give(response)
            else:
                cancelTimers()
                timers.append(reactor.callLater(wait, give, response))

        within = self.answerWithin
        if within is not None:
            timers.append(
                reactor.callLater(
                    within,
                    lambda: give(
                        self._busy(
                            request,
                            f"proxy authentication check took over {within:g} s",
                        )
                    ),
                )
            )
        self._shared(client, user, password).addCallback(checked)
        return answer

    def _failed(
        self, request: RequestHead, client: str, user: str, why: str, count: int
    ) -> tuple[Response, float]:
        """
        Log a failure, the client's C{count}-th recent one.

        @return: the answer and how long after the attempt it is due.
        """
        log.info(
            "proxy authentication failed for {client} as {user!r}: {why} ({count} recent failures)",
            client=client,
            user=user,
            why=why,
            count=count,
        )
        if count >= self.blockAfter:
            return self._tooMany(request, client), 0.0
        response = self._refusal(request, f"proxy authentication failed: {why}")
        return response, min(self.failureDelay * count, self.maxDelay)

    def _refusal(self, request: RequestHead, reason: str) -> Response:
        response = errorResponse(
            407, "This proxy requires a user name and password.", request.url()
        )
        response.head.headers.add(b"Proxy-Authenticate", self._challenge)
        response.reason = reason
        return response

    def _busy(self, request: RequestHead, why: str) -> Response:
        # Not 407: the credentials may well be right, and a browser would
        # ask its user for them again.
        response = errorResponse(
            503,
            "The proxy is too busy to check your user name and password; try again shortly.",
            request.url(),
        )
        response.head.headers.add(b"Retry-After", b"1")
        response.reason = f"proxy authentication unavailable: {why}"
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
        or not finite(value)
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
    unknown = set(config) - {"htpasswd", "deadline"} - set(DEFAULTS)
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
    maxChecks = config.get("max_checks", DEFAULTS["max_checks"])
    if isinstance(maxChecks, bool) or not isinstance(maxChecks, int) or maxChecks < 1:
        raise ValueError(
            f"auth: max_checks: expected a positive integer, got {maxChecks!r}"
        )
    failureDelay = _number(config, "failure_delay")
    maxDelay = _number(config, "max_delay")
    forgetAfter = _number(config, "forget_after", positive=True)
    cacheSeconds = _number(config, "cache_seconds")
    deadline = config.get("deadline")
    if deadline is not None:
        if (
            isinstance(deadline, bool)
            or not isinstance(deadline, (int, float))
            or not deadline > 0
        ):
            raise ValueError(
                f"auth: deadline: expected a positive number of seconds, got {deadline!r}"
            )
        deadline = float(deadline)
        if "max_delay" not in config:
            # The default need not fit a short deadline: answers are due
            # before it anyway (AuthFilter.answerWithin).
            maxDelay = min(maxDelay, deadline - min(0.5, deadline / 10))
        elif maxDelay >= deadline:
            raise ValueError(
                f"auth: max_delay: {maxDelay:g} s is not below the filter deadline"
                f" ([filters] deadline = {deadline:g} s), so throttled answers would"
                " miss it; lower max_delay or raise the deadline"
            )
    passwords = HtpasswdFile(path)
    if not len(passwords):
        log.warn(
            "auth: {path} has no usable entries; every request will get 407", path=path
        )
    checker = HtpasswdChecker(passwords, cacheSeconds=cacheSeconds, runSlow=runSlow)
    return AuthFilter(
        checker,
        realm,
        failureDelay,
        maxDelay,
        blockAfter,
        forgetAfter,
        reactor,
        maxChecks,
        deadline,
    )
