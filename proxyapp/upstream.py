# -*- test-case-name: tests.test_protocol -*-
"""
The upstream side: connections to origins (L{UpstreamProtocol}), the pool
that keeps them for reuse (L{ConnectionPool}), the endpoints that open
them, and the read gate both sides of an exchange pause each other with.

An L{UpstreamProtocol} parses responses and hands their events to the
L{proxyapp.protocol.ProxyProtocol} it serves (its C{client}); it knows
nothing of policy.  The client side drives it: takes it from the pool,
attaches itself, writes the request, and releases it when the exchange
completed cleanly.
"""

from __future__ import annotations

import socket
from collections import Counter
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable, Optional

from twisted.internet import defer
from twisted.internet import error as ierror
from twisted.internet.defer import Deferred
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    wrapClientTLS,
)
from twisted.internet.interfaces import (
    IHalfCloseableProtocol,
    IHandshakeListener,
    IPushProducer,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from proxyapp.chain import TransformFailed
from proxyapp.config import Settings
from proxyapp.fastio import Buffer, accelerate
from proxyapp.http11 import (
    END,
    NEED_DATA,
    PAUSED,
    ResponseParser,
    UpstreamProtocolError,
    wholeResponseHead,
)
from proxyapp.message import ResponseHead
from proxyapp.status import Stats

log = Logger()

if TYPE_CHECKING:
    from proxyapp.protocol import ProxyProtocol

# Reasons for a read gate to hold its transport paused (bit flags).
BACKPRESSURE = 1
WAITING = 2
PIPELINE = 4

UNSAFE_REUSE_IDLE = 1.0
"""
Seconds a pooled connection may have been idle and still carry a request
that cannot be sent again should the connection turn out dead (one with a
body, or whose method is not idempotent): past it such a request gets a
new connection, and the idle one stays for requests that can be retried.
An origin closes an idle connection when its keep-alive timeout runs out
(Apache's and Node's 5 s, Gunicorn's 2 s), and a request crossing that
close on the wire is lost; under a second of idleness is well clear of
those timeouts.  Squid goes further and never reuses an idle connection
for such requests (C{server_pconn_for_nonretriable}).
"""

EndpointFactory = Callable[[str, int], IStreamClientEndpoint]


@implementer(IPushProducer)
class ReadGate:
    """
    Pauses and resumes reading from one transport for several independent
    reasons; registered as the streaming producer of the other side's
    transport (its C{pauseProducing}/C{resumeProducing} are backpressure).
    """

    __slots__ = ("transport", "reasons")

    def __init__(self, transport: Any) -> None:
        self.transport = transport
        self.reasons = 0

    def pause(self, reason: int) -> None:
        if not self.reasons:
            self.transport.pauseProducing()
        self.reasons |= reason

    def resume(self, reason: int) -> None:
        if self.reasons & reason:
            self.reasons &= ~reason
            if not self.reasons:
                self.transport.resumeProducing()

    def pauseProducing(self) -> None:
        self.pause(BACKPRESSURE)

    def resumeProducing(self) -> None:
        self.resume(BACKPRESSURE)

    def stopProducing(self) -> None:
        # The transport we are registered with has gone; the protocols'
        # connectionLost methods tear the other side down.
        pass


class TLSHandshakeError(Exception):
    """
    The TLS handshake with an origin failed; C{str()} says why, for the
    502 (see L{tlsFailure}).
    """


@implementer(IHalfCloseableProtocol, IHandshakeListener)
class UpstreamProtocol(Protocol):
    """
    A connection to an origin server, reused across client exchanges.

    @ivar client: the L{ProxyProtocol} whose exchange uses this connection,
        or C{None} while it sits idle in the pool.
    @ivar key: the pool key C{(scheme, host, port)}.
    @ivar reused: whether this connection served an exchange before the
        current one (a dead reused connection allows a retry).
    @ivar received: whether any byte arrived during the current exchange.
    @ivar pooled: whether the connection is in its pool's idle list.
    @ivar fast: whether the transport is one of L{proxyapp.fastio}'s.
    """

    # A connected TCP (or TLS) transport: ITCPTransport plus IConsumer and
    # the FileDescriptor attributes (producer, disconnected) we read.
    transport: Any
    client: Optional["ProxyProtocol"] = None
    tunnel = False
    reused = False
    received = False
    idleSince = 0.0
    pooled = False
    closing = False
    bytesStreamed = 0
    fast = False

    peer: Optional[tuple[str, int]] = None
    local: Optional[tuple[str, int]] = None

    def __init__(
        self,
        pool: "ConnectionPool",
        key: tuple[str, str, int],
        maxHeaderBytes: int,
        maxHeaders: int,
    ) -> None:
        self.pool = pool
        self.key = key
        self.parser = ResponseParser(maxHeaderBytes, maxHeaders)
        self.gate: Optional[ReadGate] = None
        # For a TLS connection, fired by handshakeCompleted (or failed with
        # a TLSHandshakeError if the connection is lost before): see
        # ConnectionPool.connect.
        self.handshake: Optional[Deferred] = None

    def connectionMade(self) -> None:
        self.fast = accelerate(self.transport, self)
        self.gate = ReadGate(self.transport)
        pool = self.pool
        pool.stats.upstreamConnections += 1
        self.peer = peerOf(self)
        self.local = local = addressOf(self.transport.getHost())
        if local is not None:
            pool.ownEnds[local] += 1

    def handshakeCompleted(self) -> None:
        if self.transport.disconnecting:
            # Aborted during the handshake (a connect deadline, or a check
            # that failed in its last step): connectionLost fails it with
            # the reason.
            return
        handshake, self.handshake = self.handshake, None
        if handshake is not None:
            handshake.callback(self)

    def _cancelHandshake(self, handshake: Deferred) -> None:
        """
        The connect deadline passed during the TLS handshake: abort it.
        """
        self.handshake = None
        self.closing = True
        self.transport.abortConnection()

    def dataReceived(self, data: bytes) -> None:
        client = self.client
        if self.tunnel:
            client.transport.write(data)  # type: ignore[union-attr]
            client.bytesOut += len(data)  # type: ignore[union-attr]
            return
        if client is None:
            # Bytes on an idle connection: the origin is confused; never
            # hand this connection to anyone.
            self.closing = True
            self.transport.loseConnection()
            return
        self.received = True
        whole = self.parser.wholeResponse(data)
        if whole is not None:
            head, close, body = whole
            if close:
                self.closing = True
            if not client.relayWholeResponse(self, head, body):
                self._wholeResponse(client, wholeResponseHead(head), body)
            return
        # Counted for the stall watch (see L{ProxyProtocol._bytesMoved}):
        # a body filter may hold bytes back from the client.
        self.bytesStreamed += len(data)
        parser = self.parser
        parser.receiveData(data)
        self._parse(client)
        if self.fast:
            # A long body arriving fast is read in large pieces, one
            # wake-up per half megabyte or so (see fastio.BULK_READ); not
            # while reading is paused (a slow client), which would only
            # enter the mode for its check to end it.
            self.transport.expect(
                len(data), 0 if self.gate.reasons else parser.outstanding()  # type: ignore[union-attr]
            )

    def _wholeResponse(
        self, client: "ProxyProtocol", head: ResponseHead, body: Buffer
    ) -> None:
        """
        Relay a response that arrived whole in one read through the
        client's event methods: the events L{_parse} would have produced,
        without the parser's event loop.
        """
        try:
            client.responseHead(head)
            if self.client is client:
                if body:
                    client.responseData(body)
                client.responseEnd(END)
        except (UpstreamProtocolError, TransformFailed) as e:
            self.closing = True
            client.upstreamFailed(self, e.reason)
            return
        if client._out:
            client.flushToClient()

    def _parse(self, client: "ProxyProtocol") -> None:
        parser = self.parser
        try:
            while True:
                event = parser.nextEvent()
                if type(event) is bytes or type(event) is memoryview:
                    client.responseData(event)  # type: ignore[arg-type]
                    if parser.endsHere():
                        client.responseEnd(END)
                        break
                elif event is NEED_DATA or event is PAUSED:
                    break
                elif type(event) is ResponseHead:
                    client.responseHead(event)
                    if self.tunnel or self.client is not client:
                        break
                    if parser.endsHere():
                        client.responseEnd(END)
                        break
                else:
                    client.responseEnd(event)  # type: ignore[arg-type]
                    break
        except (UpstreamProtocolError, TransformFailed) as e:
            self.closing = True
            client.upstreamFailed(self, e.reason)
            return
        # An idle pooled connection must not hold its last read (the
        # whole-response shortcut never keeps one).
        parser.discard()
        if client._out:
            client.flushToClient()

    readClosed = False

    def readConnectionLost(self) -> None:
        self.readClosed = True
        if self.tunnel and self.client is not None:
            self.client.upstreamHalfClosed()
        else:
            # Never handed out of the pool again.
            self.closing = True
            self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        pass

    _abortTimer: Any = None

    def abortLater(self, seconds: float) -> None:
        """
        Reset this (closing) connection in C{seconds} unless it is closed
        by then.
        """
        self._abortTimer = self.pool.reactor.callLater(seconds, self._abortNow)

    def _abortNow(self) -> None:
        self._abortTimer = None
        self.transport.abortConnection()

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        try:
            self._lost(reason)
        finally:
            # Twisted's connector and endpoint objects keep a closed
            # connection's protocol in reference cycles, alive until the
            # cyclic garbage collector's next full pass, which can be
            # minutes away.  What the parser holds (up to its last read,
            # 1 MiB) must not wait for it: after 500 concurrent downloads,
            # 1,700 closed connections held 240 MB that way.
            self.parser.takeBuffer()

    def _lost(self, reason: Optional[Failure]) -> None:
        self.closing = True
        if self._abortTimer is not None:
            self._abortTimer.cancel()
            self._abortTimer = None
        pool = self.pool
        pool.stats.upstreamConnections -= 1
        local = self.local
        if local is not None:
            self.local = None
            ends = pool.ownEnds
            left = ends.get(local, 0) - 1
            if left > 0:
                ends[local] = left
            else:
                ends.pop(local, None)
        handshake = self.handshake
        if handshake is not None:
            self.handshake = None
            handshake.errback(TLSHandshakeError(_handshakeFailure(reason, self)))
            return
        client = self.client
        if client is None:
            self.pool.remove(self)
            return
        if self.tunnel:
            client.upstreamClosed()
            return
        if not self.received and self.reused:
            client.reusedConnectionDied(self)
            return
        if not (
            self.readClosed or reason is None or reason.check(ierror.ConnectionDone)
        ):
            # A reset, or TLS cut without its closing alert: not the end of
            # a body delimited by the close (RFC 9112 section 9.8), so never
            # relayed as a complete one.
            when = "" if self.received else " before any response"
            client.upstreamFailed(
                self,
                f"the upstream connection was lost{when} ({reason.getErrorMessage()})",
            )
            return
        self.parser.receiveEOF()
        self._parse(client)
        if self.client is client:
            client.upstreamFailed(
                self,
                "the upstream closed the connection before the response was complete",
            )


class ConnectionPool:
    """
    Idle upstream connections, kept per origin for reuse.

    @ivar maxIdle: most idle connections kept per origin; more are closed.
    @ivar maxIdleTotal: most idle connections kept across all origins; a
        connection released beyond it is closed (the ones already idle stay:
        no search for the oldest on the per-request path).
    @ivar idleTimeout: seconds an idle connection is kept.
    @ivar ownEnds: the local C{(host, port)} of every upstream connection
        open now (L{addressOf}'s form), with how many use it (connections
        to different destinations may share one): a client connecting from
        one of them is this proxy connected to itself.
    """

    def __init__(
        self,
        reactor: Any,
        endpointForTarget: EndpointFactory,
        settings: Settings,
        stats: Stats,
    ) -> None:
        self.reactor = reactor
        self.endpointForTarget = endpointForTarget
        self.settings = settings
        self.stats = stats
        self.maxIdle = settings.poolSize
        self.maxIdleTotal = settings.poolTotalSize
        self.idleTimeout = settings.poolIdleTimeout
        self._idle: dict[tuple[str, str, int], list[UpstreamProtocol]] = {}
        self._count = 0
        self.ownEnds: Counter[tuple[str, int]] = Counter()
        self._sweeper: Any = None

    def take(
        self, key: tuple[str, str, int], retriable: bool = True
    ) -> Optional[UpstreamProtocol]:
        """
        @param retriable: whether the request could be sent again on a new
            connection if this one turned out dead.  If not, only a
            connection idle for less than L{UNSAFE_REUSE_IDLE} seconds on
            which nothing has arrived (L{_quiet}: no end of file that the
            reactor has yet to read) is handed out.

        @return: an idle connection to C{key}, most recently used first, or
            C{None}.
        """
        idle = self._idle.get(key)
        if not idle:
            return None
        now = self.reactor.seconds()
        oldest = now - self.idleTimeout
        while idle:
            upstream = idle[-1]
            if not retriable and upstream.idleSince <= now - UNSAFE_REUSE_IDLE:
                # The rest are older still: keep them for requests that can
                # be retried.
                return None
            idle.pop()
            upstream.pooled = False
            self._count -= 1
            if (
                upstream.idleSince > oldest
                and not upstream.closing
                and (retriable or _quiet(upstream.transport))
            ):
                upstream.reused = True
                return upstream
            shut(upstream)
        return None

    def connect(self, key: tuple[str, str, int]) -> Deferred:
        """
        Open a new connection to C{key}.

        @return: a L{Deferred} firing with a connected L{UpstreamProtocol}.
        """
        scheme, host, port = key
        endpoint = self.endpointForTarget(host, port)
        if scheme == "https":
            try:
                tls = self._originTLS()
            except Exception as e:
                # The trust store could not be loaded: every https origin
                # gets its 502 saying so, and the next one tries again.
                log.failure("loading the trust for https origins")
                return defer.fail(
                    ierror.ConnectError(string=f"TLS could not be set up ({e})")
                )
            try:
                options = tls.creatorFor(host)
            except (UnicodeError, ValueError) as e:
                # A name the parser takes (an underscore, say) that IDNA
                # refuses: no certificate could be checked against it.
                return defer.fail(
                    ierror.ConnectError(
                        string=f"no TLS certificate can name this host ({e})"
                    )
                )
            endpoint = wrapClientTLS(options, endpoint)
        settings = self.settings
        upstream = UpstreamProtocol(
            self, key, settings.maxHeaderBytes, settings.maxHeaders
        )
        d = endpoint.connect(_OneUpstream(upstream))
        if scheme == "https":
            # The endpoint fires once TCP is connected; the connection is
            # handed out once the TLS handshake is done too, so that a
            # certificate that cannot be verified is a failure to connect,
            # and an origin that stalls the handshake is under the connect
            # deadline (as in Squid), not the response's.
            upstream.handshake = Deferred(upstream._cancelHandshake)
            d.addCallback(lambda _: upstream.handshake)
        # The endpoint's own timeout covers each TCP attempt; this one also
        # covers name resolution, which has no timeout of its own, and the
        # TLS handshake.
        return d.addTimeout(settings.connectTimeout, self.reactor)

    def release(self, upstream: UpstreamProtocol) -> None:
        """
        Keep a connection whose exchange completed cleanly, or close it if
        the origin already has enough idle ones here.  Releasing one already
        idle changes nothing (listed twice, it could be handed to two
        clients at once).
        """
        if upstream.pooled:
            return
        upstream.client = None
        upstream.received = False
        idle = self._idle.get(upstream.key)
        if (
            upstream.closing
            or len(idle or ()) >= self.maxIdle
            or self._count >= self.maxIdleTotal
        ):
            shut(upstream)
            return
        if idle is None:
            idle = self._idle[upstream.key] = []
        upstream.idleSince = self.reactor.seconds()
        upstream.pooled = True
        idle.append(upstream)
        self._count += 1
        if self._sweeper is None:
            self._sweeper = self.reactor.callLater(self.idleTimeout, self._sweep)

    def remove(self, upstream: UpstreamProtocol) -> None:
        """
        Forget a connection that closed while idle.
        """
        if not upstream.pooled:
            return
        upstream.pooled = False
        idle = self._idle[upstream.key]
        idle.remove(upstream)
        self._count -= 1
        if not idle:
            del self._idle[upstream.key]

    def _sweep(self) -> None:
        self._sweeper = None
        oldest = self.reactor.seconds() - self.idleTimeout
        for key, idle in list(self._idle.items()):
            # Each list is in release order, so the stale ones come first.
            while idle and idle[0].idleSince <= oldest:
                self._close(idle, 0)
            if not idle:
                del self._idle[key]
        if self._idle:
            self._sweeper = self.reactor.callLater(self.idleTimeout / 2, self._sweep)

    _tls: Any = None

    def _originTLS(self) -> Any:
        """
        @return: the L{proxyapp.tls.OriginTLS} of the current settings,
            made at the first connection to an https origin (OpenSSL is
            loaded, and the trust store read, only once it is needed).
        """
        if self._tls is None:
            from proxyapp.tls import OriginTLS

            self._tls = OriginTLS(self.settings.upstreamAuthorities)
        return self._tls

    def reconfigure(
        self, settings: Settings, endpointForTarget: Optional[EndpointFactory] = None
    ) -> None:
        """
        Take new settings (SIGHUP): pool sizes, idle timeout, connect
        timeout, response head limits and the trust for https origins (the
        system's store is read again too) apply to the connections opened,
        released or swept from now on; idle connections beyond the new sizes
        are closed now, the least recently used first, and so are idle
        connections to https origins, verified under the old trust.

        @param endpointForTarget: a new endpoint factory (the default one
            holds the connect timeout), or C{None} to keep the current one.
        """
        self.settings = settings
        self.maxIdle = settings.poolSize
        self.maxIdleTotal = settings.poolTotalSize
        self.idleTimeout = settings.poolIdleTimeout
        # Connections to https origins trust what the settings say now, and
        # the system's store as it is now: new ones, and no idle one made
        # under the old trust is used again.
        self._tls = None
        for key in [key for key in self._idle if key[0] == "https"]:
            idle = self._idle.pop(key)
            while idle:
                self._close(idle, len(idle) - 1)
        if endpointForTarget is not None:
            self.endpointForTarget = endpointForTarget
        for idle in self._idle.values():
            # The most recently used stay (take() pops from the end).
            while len(idle) > self.maxIdle:
                self._close(idle, 0)
        excess = self._count - self.maxIdleTotal
        if excess > 0:
            # Across origins too: the least recently used go.
            oldest = sorted(
                (
                    (upstream.idleSince, index, idle)
                    for idle in self._idle.values()
                    for index, upstream in enumerate(idle)
                ),
                key=lambda entry: entry[0],
            )[:excess]
            for _, index, idle in sorted(oldest, key=lambda o: -o[1]):
                self._close(idle, index)
        for key, idle in list(self._idle.items()):
            if not idle:
                del self._idle[key]
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        if self._idle:
            self._sweeper = self.reactor.callLater(self.idleTimeout / 2, self._sweep)

    def _close(self, idle: list[UpstreamProtocol], index: int) -> None:
        """
        Close the idle connection at C{index} of C{idle} and forget it.
        """
        self._count -= 1
        upstream = idle.pop(index)
        upstream.pooled = False
        shut(upstream)

    def idleCount(self) -> int:
        """
        @return: how many idle connections the pool holds.
        """
        return self._count

    def closeAll(self) -> None:
        """
        Close every idle connection (at shutdown).
        """
        if self._sweeper is not None and self._sweeper.active():
            self._sweeper.cancel()
        self._sweeper = None
        for idle in self._idle.values():
            for upstream in idle:
                upstream.pooled = False
                shut(upstream)
        self._idle.clear()
        self._count = 0


_PEEK = socket.MSG_PEEK | getattr(socket, "MSG_DONTWAIT", 0)


def _quiet(transport: Any) -> bool:
    """
    Whether nothing is waiting to be read on an idle connection: an origin
    that closed right behind its response (without saying C{Connection:
    close}) has its end of file queued there before the reactor has read
    it, typically when a pipelined request is forwarded in the same turn.
    One C{recv} with C{MSG_PEEK}; a transport without a socket (a test's,
    or TLS over something else) counts as quiet.
    """
    sock = getattr(transport, "socket", None)
    if sock is None:
        # TLS: the TCP transport beneath it.
        sock = getattr(getattr(transport, "transport", None), "socket", None)
        if sock is None:
            return True
    try:
        sock.recv(1, _PEEK)
    except BlockingIOError:
        return True
    except OSError:
        return False
    # End of file, or bytes nobody asked for (a 408, a TLS alert).
    return False


def _handshakeFailure(reason: Optional[Failure], upstream: UpstreamProtocol) -> str:
    """
    @return: why a TLS connection was lost before its handshake completed,
        for the 502.
    """
    if reason is None or reason.check(ierror.ConnectionDone):
        return "the origin closed the connection during the TLS handshake"
    return tlsFailure(reason, upstream.transport) or (
        "the connection was lost during the TLS handshake"
        f" ({reason.getErrorMessage()})"
    )


def tlsFailure(reason: Failure, transport: Any) -> Optional[str]:
    """
    Say why a connection to an origin failed in TLS, for the 502: the
    certificate's problem when it could not be verified (OpenSSL's error
    itself only says "certificate verify failed"), else OpenSSL's reasons.

    @param transport: the L{UpstreamProtocol}'s transport, whose
        C{getHandle} (TLS transports) gives the certificate the origin sent.
    @return: the reason, or C{None} if C{reason} is no TLS failure.
    """
    if reason.check("service_identity.exceptions.VerificationError"):
        return "its certificate does not name this host"
    if reason.check("service_identity.exceptions.CertificateError"):
        return f"its certificate gives a malformed name ({reason.getErrorMessage()})"
    if not reason.check("OpenSSL.SSL.Error"):
        return None
    errors = reason.value.args[0] if reason.value.args else None
    if not isinstance(errors, list) or not all(
        isinstance(e, tuple) and len(e) == 3 for e in errors
    ):
        return f"TLS error ({reason.getErrorMessage()})"
    reasons = [str(e[2]) for e in errors]
    if "certificate verify failed" not in reasons:
        return f"TLS error ({', '.join(reasons) or 'no reason given'})"
    try:
        return _certificateProblem(transport)
    except Exception:
        # Called while the connection is lost: an older cryptography (no
        # not_valid_after_utc before 42) or an odd chain must not leave the
        # client without an answer.
        return "its certificate could not be verified"


def _certificateProblem(transport: Any) -> str:
    """
    @return: what is wrong with the certificate the origin sent, as far as
        the chain tells (pyOpenSSL does not expose OpenSSL's verify result).
    """
    getHandle = getattr(transport, "getHandle", None)
    chain = getHandle().get_peer_cert_chain() if getHandle is not None else None
    if not chain:
        return "its certificate could not be verified"
    leaf = chain[0].to_cryptography()
    now = datetime.now(timezone.utc)
    if leaf.not_valid_after_utc < now:
        return "its certificate has expired"
    if leaf.not_valid_before_utc > now:
        return "its certificate is not valid yet"
    if len(chain) == 1 and leaf.issuer == leaf.subject:
        return "its certificate is self-signed, and not trusted here"
    return "its certificate was not issued by an authority trusted here"


def shut(upstream: UpstreamProtocol) -> None:
    """
    Close an upstream connection that is not to be used again.
    """
    upstream.closing = True
    upstream.transport.loseConnection()


class _OneUpstream(Factory):
    """
    Hands one prepared L{UpstreamProtocol} to an endpoint, quietly (the
    default factories log every upstream connection).
    """

    noisy = False

    def __init__(self, protocol: UpstreamProtocol) -> None:
        self.protocol = protocol  # type: ignore[assignment]

    def buildProtocol(self, addr: Any) -> UpstreamProtocol:  # type: ignore[override]
        return self.protocol  # type: ignore[return-value]


def defaultEndpointFactory(reactor: Any, connectTimeout: float) -> EndpointFactory:
    """
    Connect to origins with L{HostnameEndpoint}, or straight to an address
    when the target names one.

    We use C{HostnameEndpoint} rather than C{ClientCreator.connectTCP}:
    it resolves with getaddrinfo (IPv6 as well as IPv4, and IPv6 literals),
    tries every address with RFC 8305 "happy eyeballs" fallback, and
    applies the connect timeout across all attempts.  It also resolves an
    address literal, in a thread like any name; an address needs no
    resolving, so it gets a plain TCP endpoint instead (one attempt, the
    same timeout).
    """

    def endpointForTarget(host: str, port: int) -> IStreamClientEndpoint:
        if isIPAddress(host):
            return TCP4ClientEndpoint(reactor, host, port, timeout=connectTimeout)
        if isIPv6Address(host):
            return TCP6ClientEndpoint(reactor, host, port, timeout=connectTimeout)
        return HostnameEndpoint(reactor, host, port, timeout=connectTimeout)

    return endpointForTarget


def addressOf(address: Any) -> Optional[tuple[str, int]]:
    """
    @return: C{(host, port)} of a TCP address, an IPv4-mapped IPv6 host
        written as IPv4 (the form an IPv4 listener sees it in); C{None}
        for other kinds of address.
    """
    host = getattr(address, "host", None)
    if host is None:
        return None
    if host.startswith("::ffff:") and "." in host:
        host = host[7:]
    return host, getattr(address, "port", 0)


def peerOf(upstream: UpstreamProtocol) -> Optional[tuple[str, int]]:
    return addressOf(upstream.transport.getPeer())


__all__ = [
    "ConnectionPool",
    "ReadGate",
    "UpstreamProtocol",
    "defaultEndpointFactory",
]
