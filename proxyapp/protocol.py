# -*- test-case-name: tests.test_protocol -*-
"""
The client connection's state machine; with L{proxyapp.upstream} (the
upstream side and its pool), the only modules that read or write HTTP on
transports.

Theory of operation
===================

A L{ProxyFactory} builds one L{ProxyProtocol} per client connection.  The
client side runs one exchange at a time: its L{RequestParser} is paused
after each request and restarted once the response is complete, so
pipelined requests are answered in order and a client can never make the
proxy buffer more than one read of requests ahead.

For each request the protocol checks it (loops, ports, Max-Forwards), runs
the filter chain, then takes an idle L{UpstreamProtocol} for the origin
from the L{ConnectionPool} (both in L{proxyapp.upstream}) or connects a new one.  Request bytes destined
upstream are collected in C{_pendingUp} while one C{dataReceived} call is
processed and written with one C{writeSequence} at its end; because of
that, a request whose body turns out malformed in the same read never
reaches the origin at all.

The usual exchange takes a shortcut: a bodiless request that arrives whole
in one read (L{RequestParser.wholeRequest}) goes straight to
L{ProxyProtocol._requestHead}, and a length-delimited response that
arrives whole (L{ResponseParser.wholeResponse}) is relayed in one step by
L{ProxyProtocol.relayWholeResponse} when nothing about the exchange needs
the event methods.  Either step declines without changing anything when
in doubt, and the general path then runs on the same bytes; the tests
compare the two.

Bodies stream: each side's transport is registered as the other's
streaming producer through a L{ReadGate}, so a slow reader pauses the
fast writer's socket reads.  A gate counts independent reasons to stay
paused (backpressure, waiting for an upstream, a pipelined request held
back) so that one reason going away does not undo another.

Timeouts use one lazily re-armed C{DelayedCall} per client connection: the
per-request path only moves a deadline attribute, and the timer, when it
fires early, re-arms itself for the current deadline.  Each phase of a
connection has one deadline: the request head (C{headerTimeout}), the
upstream's response head (C{upstreamTimeout}), a body or tunnel moving no
byte (C{readTimeout}, checked by comparing byte counters, never per byte),
a keep-alive wait (C{idleTimeout}) and a close the client does not let
finish (C{readTimeout} again).

CONNECT and C{101 Switching Protocols} join both connections into a
tunnel of opaque bytes: relayed by L{proxyapp.relay.TunnelRelay} (large
reads into a shared buffer, no Python per chunk) when both are plain TCP
on Linux, otherwise through C{dataReceived} and C{write} with the read
gates as producers.
"""

from __future__ import annotations

import re
import time
from collections import deque
from weakref import ReferenceType, ref
from typing import Any, Optional

from twisted.internet import error as ierror
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.interfaces import (
    IHalfCloseableProtocol,
    IProtocolNegotiationFactory,
    IPullProducer,
)
from twisted.internet.protocol import Protocol, ServerFactory
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from proxyapp import status as statuspage
from proxyapp.chain import TransformFailed
from proxyapp.config import Settings
from proxyapp.fastio import Buffer, accelerate, gathers, halfCloses, unsent
from proxyapp.relay import TunnelRelay
from proxyapp.http11 import (
    CHUNKED,
    END,
    LENGTH,
    NEED_DATA,
    NO_BODY,
    PAUSED,
    UNTIL_CLOSE,
    ClientProtocolError,
    EndOfMessage,
    RequestParser,
    UpstreamProtocolError,
    splitTarget,
    wholeResponseHead,
)
from proxyapp.message import (
    HOP_BY_HOP,
    HOP_BY_HOP_FIELDS,
    PRODUCT,
    FieldNames,
    Headers,
    RequestHead,
    Response,
    ResponseHead,
    errorResponse,
    isToken,
)
from proxyapp.status import Stats
from proxyapp.upstream import (
    BACKPRESSURE,
    PIPELINE,
    WAITING,
    ConnectionPool,
    EndpointFactory,
    ReadGate,
    TLSHandshakeError,
    UpstreamProtocol,
    addressOf,
    defaultEndpointFactory,
    shut,
)

log = Logger()

# Placeholder until a connection sends anything; a tuple, so that any
# accidental use before then fails loudly instead of sharing state.
_NO_BYTES: Any = ()

# Output of at least this many bytes in several pieces is handed to a fast
# transport unjoined (one gathering send); less is joined, which is cheaper
# than the gathering for small pieces.  ResponseParser._viewFrom's size.
_GATHER_FROM = 16 * 1024

PIPELINE_HOLD = 64 * 1024
"""
Bytes of responses a client may leave unread (still in its transport's
buffer, which the kernel has not taken) when an exchange ends, for the proxy
to go on to its next request; with more, the proxy reads and answers
nothing more from it until its buffer is empty.  A client pipelining
requests without reading the answers would otherwise have them pile up
here, one after another.
"""

# Methods RFC 9110 section 9.2.2 calls idempotent: safe to send again on a
# fresh connection when a reused one turns out to be dead.
IDEMPOTENT = frozenset([b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"])

# Request fields the proxy acts on (Max-Forwards only for TRACE and
# OPTIONS); a request with none of them skips all those checks.
_REQUEST_CONTROL_FIELDS = FieldNames(HOP_BY_HOP | frozenset([b"via", b"max-forwards"]))
_KEEP_UPGRADE = frozenset([b"upgrade"])

# Upgrade protocols never passed on.  h2c's upgrade needs its HTTP2-Settings
# field, which is hop-by-hop and so cannot cross a proxy, and RFC 9113
# (section 3.1) deprecates it; Squid drops it too.  Without the offer the
# request goes on as plain HTTP/1.1, which is what the client gets anyway.
_UNRELAYED_UPGRADES = frozenset([b"h2c"])


def _dropUnrelayedUpgrades(headers: Headers) -> bool:
    """
    Remove the protocols in L{_UNRELAYED_UPGRADES} from a request's
    C{Upgrade} field.

    @return: whether any protocol is left to upgrade to; if not, the field
        stays, and goes with the other hop-by-hop fields.
    """
    offered = headers.getTokens(b"upgrade")
    kept = [token for token in offered if token not in _UNRELAYED_UPGRADES]
    if len(kept) == len(offered):
        return True
    # Its settings go too, even when Connection does not name them.
    headers.remove(b"HTTP2-Settings")
    if not kept:
        return False
    headers.set(b"Upgrade", b", ".join(kept))
    return True


# Deadline kinds of a client connection.
_NO_DEADLINE = 0
_IDLE = 1
_HEAD = 2
_UPSTREAM = 3
_TRANSFER = 4
_CLOSING = 5
_LINGER = 6

# Closing after an answer the client may still be sending to (an error, an
# early answer to a request whose body is still coming) is lingering: the
# sending side is shut down, and what the client still sends is read and
# dropped until it closes too, or sends nothing for LINGER_IDLE seconds, or
# LINGER_TIME seconds have passed (nginx's lingering_timeout and
# lingering_time).  Closing with unread bytes would make the kernel reset the
# connection, and a client still sending would see the reset, not the answer
# (RFC 9112 section 9.6).  A graceful drain ends a linger at once, and none
# starts while the proxy drains.
LINGER_IDLE = 5.0
LINGER_TIME = 30.0

# What frames a message's body.
_FRAMING_FIELDS = FieldNames(frozenset([b"content-length", b"transfer-encoding"]))

# The request of an exchange whose head could not be parsed (answered 400,
# 414 or 431); the access log gets no request for it.
_UNPARSED = RequestHead(b"", b"", b"")


@implementer(IPullProducer)
class _WhenSent:
    """
    Registered on a client transport that holds more than L{PIPELINE_HOLD}
    unsent bytes as an exchange ends: the transport asks it for more once
    its buffer is empty, and it lets its protocol go on with the next
    request.
    """

    def __init__(self, protocol: "ProxyProtocol") -> None:
        self.protocol = protocol

    def resumeProducing(self) -> None:
        protocol = self.protocol
        transport = protocol.transport
        if unsent(transport) > PIPELINE_HOLD or transport.producer is not self:
            return
        transport.unregisterProducer()
        protocol._clientCaughtUp()

    def stopProducing(self) -> None:
        pass


@implementer(IProtocolNegotiationFactory)
class ProxyFactory(ServerFactory):
    """
    Builds a L{ProxyProtocol} per client connection and holds what they
    share: settings, the upstream pool, the filter chain, counters.

    @ivar connections: the open client connections (for graceful drain).
    """

    noisy = False

    def acceptableProtocols(self) -> list[bytes]:
        """
        The protocol a TLS listener (C{--listen ssl:...}) offers clients
        that ask with ALPN: HTTP/1.1 only.  Twisted's TLS layer answers
        every ALPN offer from this list, and fails the handshake when it is
        empty, so without it clients offering ALPN (curl to C{https://}
        URLs, browsers) could not connect.
        """
        return [b"http/1.1"]

    def __init__(
        self,
        reactor: Any,
        settings: Settings,
        endpointForTarget: Optional[EndpointFactory] = None,
        chain: Any = None,
        accessLog: Any = None,
    ) -> None:
        self.reactor = reactor
        self.settings = settings
        self.stats = Stats(reactor.seconds())
        # The default endpoints hold the connect timeout: rebuilt on reload.
        self._defaultEndpoints = endpointForTarget is None
        if endpointForTarget is None:
            endpointForTarget = defaultEndpointFactory(reactor, settings.connectTimeout)
        self.pool = ConnectionPool(reactor, endpointForTarget, settings, self.stats)
        self.chain = chain
        self.accessLog = accessLog
        self._nameSelf(settings.viaPseudonym)
        self.connections: set[ProxyProtocol] = set()
        self._fresh: deque[tuple[float, ReferenceType[ProxyProtocol]]] = deque()
        self._freshTimer: Any = None
        self.draining = False

    def _nameSelf(self, viaPseudonym: str) -> None:
        pseudonym = viaPseudonym.encode("ascii")
        # RFC 9110 section 7.6.3: a Via entry names the protocol version
        # the proxy received the message with.
        self.viaValues = {
            b"HTTP/1.0": b"1.0 " + pseudonym,
            b"HTTP/1.1": b"1.1 " + pseudonym,
        }
        # The Via line and the empty line closing a head, for the relay of
        # whole responses.
        self.viaLine = b"Via: " + self.viaValues[b"HTTP/1.1"] + b"\r\n\r\n"
        self.viaToken = pseudonym.lower()

    def reconfigure(self, settings: Settings, chain: Any) -> None:
        """
        Swap settings and filter chain (SIGHUP): new connections get the new
        settings and every new request the new chain; exchanges and tunnels
        in flight are untouched, but for the name in C{Via} (a loop sent
        out under the old name takes one more turn to be recognised).
        """
        self.settings = settings
        self.chain = chain
        self._nameSelf(settings.viaPseudonym)
        self.pool.reconfigure(
            settings,
            (
                defaultEndpointFactory(self.reactor, settings.connectTimeout)
                if self._defaultEndpoints
                else None
            ),
        )

    def watchFresh(self, protocol: "ProxyProtocol", deadline: float) -> None:
        """
        Watch the first head deadline of a new connection with one timer
        for all of them (deadlines arrive in order, so a queue suffices).

        The queue holds weak references: a connection that closes before
        its deadline (most do) is freed at once, with what its transport
        still buffered, instead of up to C{header_timeout} later.  After a
        burst of 500 downloads cut short, the strong references kept about
        a quarter of a gigabyte alive for those 30 seconds.
        """
        self._fresh.append((deadline, ref(protocol)))
        if self._freshTimer is None:
            self._freshTimer = self.reactor.callLater(
                max(0.0, deadline - self.reactor.seconds()), self._sweepFresh
            )

    def stopWatching(self) -> None:
        """
        Cancel the watch over new connections (at shutdown).
        """
        timer, self._freshTimer = self._freshTimer, None
        if timer is not None and timer.active():
            timer.cancel()
        self._fresh.clear()

    def _sweepFresh(self) -> None:
        self._freshTimer = None
        fresh = self._fresh
        now = self.reactor.seconds()
        while fresh and fresh[0][0] <= now:
            protocol = fresh.popleft()[1]()
            if protocol is not None:
                protocol.freshDeadlinePassed()
        if fresh:
            self._freshTimer = self.reactor.callLater(
                fresh[0][0] - now, self._sweepFresh
            )

    def buildProtocol(self, addr: Any) -> "ProxyProtocol":
        protocol = ProxyProtocol(self)
        return protocol

    def busyConnections(self) -> int:
        """
        @return: how many client connections have an exchange or tunnel in
            flight.
        """
        return sum(1 for c in self.connections if c.busy())


@implementer(IHalfCloseableProtocol)
class ProxyProtocol(Protocol):
    """
    One client connection: parses its requests, forwards them, relays the
    responses, and tunnels CONNECT.
    """

    transport: Any
    request: Optional[RequestHead] = None
    upstream: Optional[UpstreamProtocol] = None
    tunnel = False
    requestDone = False
    responseStarted = False
    chunkUp = False
    chunkDown = False
    closeAfter = False
    keepAlive = True
    readClosed = False
    record: Any = None
    bytesIn = 0
    bytesOut = 0
    bodyBytes = 0
    started = 0.0
    _attempt = 0
    _retryHead: Optional[bytes] = None
    _upgrading = False
    _dispatching = False
    _relay: Optional[TunnelRelay] = None
    _closed = False
    # Close by lingering (see LINGER_TIME); _lingerUntil is when it stops.
    _linger = False
    _lingerUntil = 0.0
    _lingerBytes = 0
    _chain: Any = None
    # The response going out has no length or chunks: its end is the
    # connection's close (the connection ends with it, so never reset).
    _closeDelimited = False
    status = 0
    reason = ""
    upstreamPeer: Optional[tuple[str, int]] = None
    decidedBy: Optional[tuple[str, str]] = None
    contentType: Optional[str] = None

    def __init__(self, factory: ProxyFactory) -> None:
        self.factory = factory
        self.reactor = factory.reactor
        settings = factory.settings
        self.settings = settings
        self.parser = RequestParser(
            settings.maxRequestLine, settings.maxHeaderBytes, settings.maxHeaders
        )
        # Created on the first bytes received (idle connections stay small).
        self._pendingUp: list[bytes] = _NO_BYTES
        self._out: list[Buffer] = _NO_BYTES
        self._deadline = 0.0
        self._deadlineKind = _NO_DEADLINE
        self._timer: Any = None
        self.gate: Optional[ReadGate] = None
        self.clientHost = "-"
        self.clientPort = 0
        self.clientAddress = (self.clientHost, self.clientPort)
        self.localHost = ""
        self.localPort: Optional[int] = None

    # -- connection events ---------------------------------------------------

    def connectionMade(self) -> None:
        accelerate(self.transport)
        self.gate = ReadGate(self.transport)
        peer = self.transport.getPeer()
        self.clientHost = getattr(peer, "host", "unix") or "unix"
        self.clientPort = getattr(peer, "port", 0) or 0
        self.clientAddress = (self.clientHost, self.clientPort)
        local = self.transport.getHost()
        self.localHost = getattr(local, "host", "")
        self.localPort = getattr(local, "port", None)
        factory = self.factory
        factory.connections.add(self)
        factory.stats.clientConnections += 1
        # No timer of our own yet: the factory watches the head deadline of
        # connections that have not sent anything, so an idle connection
        # costs no DelayedCall (10,000 idle clients are a benchmark case).
        self._deadlineKind = _HEAD
        self._deadline = self.reactor.seconds() + self.settings.headerTimeout
        factory.watchFresh(self, self._deadline)

    def dataReceived(self, data: bytes) -> None:
        self.bytesIn += len(data)
        if self._closed:
            # Answered an error and closing: the rest is not for us.
            return
        if self.tunnel:
            self.upstream.transport.write(data)  # type: ignore[union-attr]
            return
        if self._out is _NO_BYTES:
            self._out = []
            self._pendingUp = []
        parser = self.parser
        if self.request is None and not self._waitingForClient:
            request = parser.wholeRequest(data)
            if request is not None:
                self._wholeRequest(request)
                return
        parser.receiveData(data)
        self._dispatch()
        if (
            self._deadlineKind == _IDLE
            and self.request is None
            and parser.headStarted()
        ):
            # Part of the next head arrived: it has to be complete in time.
            # (A whole head, the usual case, never needs this deadline.)
            self._setDeadline(_HEAD, self.settings.headerTimeout)

    def freshDeadlinePassed(self) -> None:
        """
        The factory's watch over new connections found this one's first
        head deadline passed; act on it unless a timer of our own took
        over.
        """
        if self._timer is None and self._deadlineKind == _HEAD and not self._closed:
            self._timedOut()

    def _dispatch(self) -> None:
        """
        Process parser events until it needs data or pauses, then write what
        the events produced for the upstream in one call.
        """
        if self._waitingForClient:
            # Whoever calls (an asynchronous filter's answer, a read): the
            # next request waits until the client has read the last answers.
            return
        parser = self.parser
        self._dispatching = True
        try:
            while True:
                event = parser.nextEvent()
                if type(event) is bytes:
                    self._requestData(event)
                elif event is NEED_DATA:
                    break
                elif event is PAUSED:
                    if parser.buffered() and self.request is not None:
                        self.gate.pause(PIPELINE)  # type: ignore[union-attr]
                    break
                elif type(event) is RequestHead:
                    self._requestHead(event)
                    if self._filtering:
                        break
                    if self.request is None or self.tunnel:
                        # Answered locally and waiting for the next cycle
                        # (or closing: the rest is not read), or switched
                        # protocols.
                        if self.tunnel or self._closed or self._waitingForClient:
                            break
                        continue
                    if parser.endsHere():
                        # No body: the usual GET.
                        self._requestEnd(END)
                        if not parser.buffered():
                            break
                else:
                    self._requestEnd(event)  # type: ignore[arg-type]
                if self._closed:
                    break
        except ClientProtocolError as e:
            self._dispatching = False
            self._pendingUp = []
            self._clientError(e.status, e.reason)
            return
        self._dispatching = False
        # (The whole-request shortcut never keeps a read.)
        parser.discard()
        self._flushUp()

    def _wholeRequest(self, request: RequestHead) -> None:
        """
        Handle a usual bodiless request that arrived whole in one read
        (L{RequestParser.wholeRequest}): what L{_dispatch} does with its
        head and end events, without the parser's event loop.
        """
        self._dispatching = True
        self._requestHead(request, plain=True)
        if self.request is request:
            self._requestEnd(END)
        self._dispatching = False
        self._flushUp()

    def readConnectionLost(self) -> None:
        self.readClosed = True
        if self._linger and self._closed:
            # Answered and lingering: the client is done sending too.
            self._linger = False
            self._close()
            return
        if self.tunnel:
            upstream = self.upstream
            if upstream is not None:
                upstream.transport.loseWriteConnection()
                if upstream.readClosed:
                    self._closeTunnel()
            return
        if self.request is None:
            if self._waitingForClient and self.parser.headStarted():
                # Held: what was received is answered once the client has
                # read; the end of it then closes.
                self.parser.receiveEOF()
                return
            if self.parser.headStarted():
                # Bytes of a head came before the end: a whole (pipelined)
                # head is answered; one cut short gets its 400.
                self.parser.receiveEOF()
                self._dispatch()
                if self.request is not None:
                    return
            self.transport.loseConnection()
            return
        # The client finished sending: answer what it asked (and a whole
        # request pipelined behind it, which then closes), then close.
        parser = self.parser
        parser.receiveEOF()
        if not self.requestDone:
            self.closeAfter = True
            self._dispatch()
        elif not parser.holdsNextRequest():
            self.closeAfter = True

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self._closed = True
        factory = self.factory
        factory.connections.discard(self)
        factory.stats.clientConnections -= 1
        self._cancelTimer()
        upstream = self.upstream
        if upstream is not None:
            self.upstream = None
            upstream.client = None
            self._unregisterProducers(upstream)
            if self.tunnel:
                upstream.closing = True
                upstream.transport.loseConnection()
                if not upstream.transport.disconnected:
                    # What the client sent last still goes out, but an
                    # upstream that reads none of it is reset in time.
                    upstream.abortLater(self.settings.readTimeout)
            elif not (self.requestDone and self.responseDone()):
                # The client gave up mid-exchange: abort (RST), so that an
                # origin still working on the request learns at once.
                upstream.closing = True
                upstream.transport.abortConnection()
        if self.request is not None or self.tunnel:
            self._logExchange(incomplete=True)
        self.request = None

    # -- requests ------------------------------------------------------------

    def _requestHead(self, request: RequestHead, plain: bool = False) -> None:
        """
        Act on a request head: check it, run the request filters, forward.

        @param plain: whether the head is known to hold none of the fields
            the proxy acts on and a Host field equal to the target's
            authority (L{RequestParser.wholeRequest} checked).
        """
        factory = self.factory
        factory.stats.requests += 1
        self.request = request
        # The chain in force when the request came: its response runs
        # through the same one, even if a reload swaps the factory's.
        self._chain = factory.chain
        self.requestDone = False
        self.responseStarted = False
        self.bodyBytes = 0
        self._attempt = 0
        self.started = time.time()
        self._deadlineKind = _NO_DEADLINE
        request.clientAddress = self.clientAddress
        headers = request.headers
        # Most requests carry none of the fields the proxy acts on; one
        # search of the received block tells.
        control = not plain and headers.hasAny(_REQUEST_CONTROL_FIELDS)
        self._upgrading = False
        refusal = None
        if control:
            connection = headers.getTokens(b"connection")
            if request.version == b"HTTP/1.1":
                self.keepAlive = b"close" not in connection
            else:
                self.keepAlive = b"keep-alive" in connection
            credentials = headers.get(b"proxy-authorization")
            if credentials is not None:
                if len(headers.getAll(b"proxy-authorization")) > 1:
                    # Which would the auth filter check, which would a
                    # parent proxy?  A singleton field (RFC 9110 section
                    # 5.3) twice is refused, as a second Host is.
                    refusal = errorResponse(
                        400,
                        "The request has more than one Proxy-Authorization field.",
                        request.url(),
                    )
                request.credentials = credentials
            if refusal is None and b"via" in headers and self._hasOwnVia(headers):
                refusal = errorResponse(
                    508,
                    "This request has already passed through this proxy (forwarding loop).",
                    request.url(),
                )
            # RFC 9110 section 7.8: Upgrade in an HTTP/1.0 request is
            # ignored (removed below with the other hop-by-hop fields).
            self._upgrading = (
                b"upgrade" in connection
                and b"upgrade" in headers
                and request.version == b"HTTP/1.1"
            )
            if self._upgrading:
                self._upgrading = _dropUnrelayedUpgrades(headers)
        else:
            self.keepAlive = request.version == b"HTTP/1.1"
        if self.readClosed or factory.draining:
            self.keepAlive = False
        self.closeAfter = not self.keepAlive
        if refusal is not None:
            # Answered after the connection's fate is known: a client that
            # said close (or HTTP/1.0 without keep-alive) is not kept.
            return self._respond(refusal)

        if request.host is None:
            # Addressed to the proxy itself: its status page.
            return self._answerHere(request, statuspage.localResponse(request, factory))
        method = request.method
        if method == b"CONNECT":
            return self._connectRequest(request)
        if request.port == self.localPort and self._isSelf(request):
            if (
                (method == b"GET" or method == b"HEAD")
                and request.path.split(b"?", 1)[0] in statuspage.PAGES
                or method == b"OPTIONS"
                and request.path == b"*"
            ):
                # The status page asked for through the proxy (a browser
                # set to use it, a shell with http_proxy set), as Squid
                # serves its own pages: answered here, nothing forwarded.
                return self._answerHere(
                    request, statuspage.localResponse(request, factory)
                )
            return self._respond(
                errorResponse(
                    508,
                    "The request names this proxy's own address as its target (forwarding loop).",
                    request.url(),
                )
            )
        parser = self.parser
        framing = parser.framing
        if framing != NO_BODY:
            maxBody = self.settings.maxBodyBytes
            if maxBody and framing == LENGTH and parser.remaining > maxBody:
                return self._respond(
                    errorResponse(
                        413,
                        f"The request body is larger than the limit of {maxBody} bytes.",
                        request.url(),
                    ),
                    close=True,
                )
        if control:
            if method == b"TRACE" or method == b"OPTIONS":
                maxForwards = headers.get(b"max-forwards")
                if maxForwards is not None:
                    if not maxForwards.isdigit():
                        return self._respond(
                            errorResponse(
                                400, "Max-Forwards is not a number.", request.url()
                            )
                        )
                    if int(maxForwards) == 0:
                        # This proxy is the final recipient.
                        return self._answerHere(
                            request, statuspage.maxForwardsResponse(request)
                        )
                    headers.set(b"Max-Forwards", b"%d" % (int(maxForwards) - 1,))
            if self._upgrading:
                headers.removeHopByHop(_KEEP_UPGRADE)
                headers.add(b"Connection", b"Upgrade")
            else:
                headers.removeHopByHop()
        if not plain:
            headers.set(b"Host", request.authority)
        headers.addTrusted(b"Via", factory.viaValues[request.version])
        self.chunkUp = framing == CHUNKED

        chain = self._chain
        if chain is not None and chain.active:
            return self._runRequestFilters(chain, request)
        self._forward(request)

    def _answerHere(self, request: RequestHead, local: Response) -> None:
        """
        Answer a request the proxy itself is the final recipient of with
        C{local}, once the request filters (access, auth) have let it by.
        """
        chain = self._chain
        if chain is not None and chain.active:
            self._runRequestFilters(chain, request, local)
        else:
            self._respond(local)

    def _runRequestFilters(
        self, chain: Any, request: RequestHead, local: Optional[Response] = None
    ) -> None:
        """
        Run the request filters, then forward the request, or answer it
        with C{local} if given (the proxy is its final recipient).
        """
        mayReframe = chain.mayReframe
        if mayReframe:
            self._clientHead = (request.method, request.version)
        result = chain.filterRequest(request)
        if (
            result is request
            and request.host is not None
            and local is None
            and not mayReframe
        ):
            # The usual answer, at once: forward the head as it is.
            self._forward(request)
        elif isinstance(result, Deferred):
            # The body stays in the parser until the head is forwarded (or
            # answered): L{_dispatch} stops while this is set.
            self._filtering = True
            self.gate.pause(WAITING)  # type: ignore[union-attr]
            result.addCallback(self._requestFiltered, local).addErrback(
                self._filterAnswerFailed
            )
        else:
            self._requestFiltered(result, local)

    _filtering = False
    _clientHead = (b"", b"")

    def _requestFiltered(
        self, result: RequestHead | Response, local: Optional[Response] = None
    ) -> None:
        self._filtering = False
        if self.request is None:
            return
        gate = self.gate
        if gate.reasons & WAITING:  # type: ignore[union-attr]
            gate.resume(WAITING)  # type: ignore[union-attr]
        original = self.request
        why = None
        if self._chain.mayReframe:  # type: ignore[union-attr]
            why = self._headChange(original, result)
        if why is not None:
            self._filterBroke(original, why)
        elif type(result) is not RequestHead and isinstance(result, Response):
            if result.decider is not None:
                self.decidedBy = (result.decider, result.reason)
            self._respond(result)
        elif local is not None:
            # Answered here; the client's head frames the answer.
            self._respond(local)
        elif result is not original:
            self._forwardNew(original, result)
        elif result.host is not None:
            self._forward(result)
        else:
            self._respond(statuspage.localResponse(result, self.factory))
        if not self._dispatching:
            self._dispatch()

    def _headChange(
        self, original: RequestHead, result: RequestHead | Response
    ) -> Optional[str]:
        """
        Check what the request filters (one that is not built in ran) did
        to what frames the client's response.  The client's HTTP version is
        put back whatever they did.  The method's kind must stay: HEAD and
        CONNECT frame the response differently from any other method, so a
        change to or from them would misframe what the client reads.

        @return: C{None}, or what changed; then the client's own method is
            put back on C{original}, which frames the error answer.
        """
        method, original.version = self._clientHead
        for head in (original, result):
            if isinstance(head, RequestHead) and _methodClass(
                head.method
            ) != _methodClass(method):
                why = "changed the method from %s to %s" % (
                    method.decode("latin-1"),
                    head.method.decode("latin-1", "replace"),
                )
                original.method = method
                return why
        return None

    def _forward(self, request: RequestHead) -> None:
        """
        Queue the head for the upstream and find a connection for it.
        """
        framing = self.parser.framing
        chain = self._chain
        if chain is not None and chain.mayReframe:
            if _REQUEST_LINE_TARGET.fullmatch(request.path) is None:
                return self._filterBroke(
                    request, "set a target that a request line cannot carry"
                )
            if not isToken(request.method):
                return self._filterBroke(request, "set a method that is not a token")
            if request.port == self.localPort and self._isSelf(request):
                # A filter rerouted the request to the proxy itself.
                return self._filterBroke(
                    request,
                    "sent the request to this proxy's own address (forwarding loop)",
                    508,
                )
            self._frameRequest(request.headers, framing)
        head = request.serialize()
        self._pendingUp.append(head)
        self.bytesHeadUp = len(head)
        if framing == NO_BODY:
            self._retryHead = head
        else:
            self._retryHead = None
        key = (request.scheme or "http", request.host, request.port)  # type: ignore[assignment]
        upstream = self.factory.pool.take(
            key,  # type: ignore[arg-type]
            framing == NO_BODY and request.method in IDEMPOTENT,
        )
        if upstream is not None:
            self._attach(upstream)
        else:
            self._connect(key)  # type: ignore[arg-type]

    def _forwardNew(self, original: RequestHead, request: RequestHead) -> None:
        """
        A request filter returned a head it built anew.  It answers for the
        client's request: it takes the client's version (which frames the
        response), address and credentials, and the access log reads the
        client's fields through it (L{Headers.received}).  Without a target host, its
        scheme, host and port come from its target, as the parser takes
        them, and C{Host} is made to match; it carries the proxy's C{Via}
        like any forwarded request.  A target that is not an absolute URL,
        or that a request line cannot carry, is answered 500.
        """
        request.version = original.version
        request.clientAddress = original.clientAddress
        request.headers.receivedAs(original.headers)
        if request.user is None:
            request.user = original.user
        if request.credentials is None:
            request.credentials = original.credentials
        why = None
        if request.host is None:
            try:
                splitTarget(request)
            except ClientProtocolError as e:
                why = e.reason
            else:
                if request.host is None:
                    why = "its target is not an absolute URL"
                else:
                    request.headers.set(b"Host", request.authority)
        if why is not None:
            return self._filterBroke(
                original, f"returned a new request that cannot be forwarded ({why})"
            )
        headers = request.headers
        if b"via" not in headers or not self._hasOwnVia(headers):
            headers.addTrusted(b"Via", self.factory.viaValues[request.version])
        self.request = request
        self._forward(request)

    def _filterBroke(self, request: RequestHead, why: str, status: int = 500) -> None:
        """
        A request filter did what the proxy cannot forward: answer 500 (or
        C{status}).
        """
        self._respond(_filterError("request", why, status, request.url()))

    def _frameRequest(self, headers: Any, framing: int) -> None:
        """
        Make the framing fields of the head going upstream say what the
        proxy will send as its body, whatever a filter did to them: the
        body is relayed as the client framed it, so a Content-Length or
        Transfer-Encoding removed or added by a filter would make the
        origin read part of the body as another request.
        """
        if framing == NO_BODY:
            if headers.hasAny(_FRAMING_FIELDS):
                headers.remove(b"Content-Length")
                headers.remove(b"Transfer-Encoding")
        elif framing == LENGTH:
            # The body is still in the parser: its remaining length is the
            # declared one.
            length = b"%d" % (self.parser.remaining,)
            if headers.getAll(b"content-length") != [length] or (
                b"transfer-encoding" in headers
            ):
                headers.remove(b"Transfer-Encoding")
                headers.set(b"Content-Length", length)
        elif [v.lower() for v in headers.getAll(b"transfer-encoding")] != [
            b"chunked"
        ] or b"content-length" in headers:
            headers.remove(b"Content-Length")
            headers.set(b"Transfer-Encoding", b"chunked")

    def _connect(self, key: tuple[str, str, int]) -> None:
        self.gate.pause(WAITING)  # type: ignore[union-attr]
        request = self.request
        d = self.factory.pool.connect(key)
        d.addCallbacks(
            self._connected,
            self._connectFailed,
            errbackArgs=(request,),
            callbackArgs=(request,),
        )

    def _connected(self, upstream: UpstreamProtocol, request: RequestHead) -> None:
        if self.request is not request or self.transport.disconnected:
            upstream.closing = True
            upstream.transport.loseConnection()
            return
        self.gate.resume(WAITING)  # type: ignore[union-attr]
        if request.method == b"CONNECT":
            if upstream.peer == addressOf(self.transport.getHost()):
                # The target's name (127.1, a decimal or IPv4-mapped
                # address...) led back to the address this client
                # reached us on.
                shut(upstream)
                return self._respond(_connectLoop(request), close=True)
            return self._startTunnel(upstream)
        self._attach(upstream)
        if not self._dispatching:
            self._flushUp()

    def _connectFailed(self, reason: Failure, request: RequestHead) -> None:
        if self.request is not request:
            return
        self.gate.resume(WAITING)  # type: ignore[union-attr]
        self._pendingUp = []
        target = request.url()
        host = request.host
        if self.factory.accessLog is not None and (
            isIPAddress(host) or isIPv6Address(host)  # type: ignore[arg-type]
        ):
            # The address it failed at is the target's own: the access log
            # names it (Squid: TCP_MISS/... HIER_DIRECT/ip).
            self.upstreamPeer = (host, request.port)  # type: ignore[assignment]
        if reason.check(
            ierror.TimeoutError, defer.TimeoutError, ierror.ConnectingCancelledError
        ):
            # ConnectingCancelledError: our overall connect deadline
            # cancelled the endpoint's attempt.
            status, why = (
                504,
                f"Connecting to {request.host} port {request.port} timed out.",
            )
        elif reason.check(TLSHandshakeError):
            status, why = (
                502,
                f"The TLS connection to {request.host} port {request.port} failed: {reason.value}.",
            )
        elif reason.check(ierror.DNSLookupError):
            status, why = 502, f"The host name {request.host} could not be resolved."
        elif reason.check(ierror.ConnectionRefusedError):
            status, why = (
                502,
                f"{request.host} port {request.port} refused the connection.",
            )
        else:
            status, why = (
                502,
                f"Could not connect to {request.host} port {request.port}: {reason.getErrorMessage()}",
            )
        self._respond(errorResponse(status, why, target), close=not self.requestDone)

    def _attach(self, upstream: UpstreamProtocol) -> None:
        """
        Bind an upstream connection to the current exchange.
        """
        self.upstream = upstream
        upstream.client = self
        upstream.parser.expectResponse(self.request.method)  # type: ignore[union-attr]
        if self.factory.accessLog is not None:
            self.upstreamPeer = upstream.peer
        if not self.requestDone and self.parser.framing != NO_BODY:
            # A request body is still to come: a slow upstream pauses the
            # client.  (Producers are registered only for bodies that
            # stream; a message already in hand is written in one go.)
            upstream.transport.registerProducer(self.gate, True)
            self._watchTransfer()
        if self.requestDone:
            self._setDeadline(_UPSTREAM, self.settings.upstreamTimeout)

    def _flushUp(self) -> None:
        pending = self._pendingUp
        if pending and self.upstream is not None:
            self.upstream.transport.write(
                pending[0] if len(pending) == 1 else b"".join(pending)
            )
            self._pendingUp = []

    def _requestData(self, data: bytes) -> None:
        self.bodyBytes += len(data)
        maxBody = self.settings.maxBodyBytes
        if maxBody and self.bodyBytes > maxBody:
            raise ClientProtocolError(
                413, f"request body larger than the limit of {maxBody} bytes"
            )
        if self.request is None:
            # The request was answered locally; its body goes nowhere.
            return
        if self.chunkUp:
            self._pendingUp += [b"%x\r\n" % len(data), data, b"\r\n"]
        else:
            self._pendingUp.append(data)

    def _requestEnd(self, end: EndOfMessage) -> None:
        self.requestDone = True
        if self.request is None:
            self.parser.startNextCycle()
            return
        if self.chunkUp:
            if end.trailers is not None:
                self._pendingUp.append(b"0\r\n" + _trailerBlock(end.trailers) + b"\r\n")
            else:
                self._pendingUp.append(b"0\r\n\r\n")
        if self.upstream is not None and not self.responseStarted:
            self._setDeadline(_UPSTREAM, self.settings.upstreamTimeout)

    # -- responses -----------------------------------------------------------

    def responseDone(self) -> bool:
        """
        @return: whether the current response has been sent completely.
        """
        return self.responseStarted and self._responseComplete

    _responseComplete = False

    def responseHead(self, head: ResponseHead) -> None:
        """
        The upstream sent a response head (interim or final).
        """
        request = self.request
        status = head.status
        if status < 200:
            if status == 101:
                if not self._upgrading:
                    raise UpstreamProtocolError(
                        "101 Switching Protocols without an upgrade request"
                    )
                return self._switchProtocols(head)
            upstream = self.upstream
            if upstream.parser.faulty:  # type: ignore[union-attr]
                # A length or chunked coding on a 1xx: who knows what follows.
                upstream.closing = True  # type: ignore[union-attr]
            # Interim responses go on to HTTP/1.1 clients only, and never
            # with framing fields (RFC 9112 section 6.1, RFC 9110 section
            # 8.6).
            if request.version == b"HTTP/1.1":  # type: ignore[union-attr]
                headers = head.headers
                headers.removeHopByHop()
                headers.remove(b"Content-Length")
                headers.remove(b"Transfer-Encoding")
                self._out.append(head.serialize())
                if self.transport.producer is None:
                    # A client that does not read them pauses the upstream,
                    # as for a body: an origin could send 1xx without end.
                    self.transport.registerProducer(upstream.gate, True)  # type: ignore[union-attr]
            if self._deadlineKind == _UPSTREAM:
                self._setDeadline(_UPSTREAM, self.settings.upstreamTimeout)
            return
        self._deadlineKind = _NO_DEADLINE
        self.responseStarted = True
        self._responseComplete = False
        self._headAt = self.bytesOut
        self.status = status
        headers = head.headers
        if headers.hasAny(HOP_BY_HOP_FIELDS):
            connection = headers.getTokens(b"connection")
            if b"close" in connection or (
                head.version == b"HTTP/1.0" and b"keep-alive" not in connection
            ):
                # RFC 9112 sections 9.3 and 9.6: this connection ends with
                # this response.
                self.upstream.closing = True  # type: ignore[union-attr]
            headers.removeHopByHop(connection=connection)
        elif head.version == b"HTTP/1.0":
            self.upstream.closing = True  # type: ignore[union-attr]
        headers.addTrusted(b"Via", self.factory.viaValues[head.version])
        chain = self._chain
        if chain is not None and chain.hasResponseFilters:
            framing = (
                _framingOf(request, head) if chain.mayReframeResponses else None  # type: ignore[arg-type]
            )
            result = chain.filterResponse(request, head)  # type: ignore[arg-type]
            if isinstance(result, Deferred):
                # Hold body events until the filters decide; the upstream
                # stays paused meanwhile, so at most one read is held.
                self._held = []
                upstream = self.upstream
                assert upstream is not None
                upstream.gate.pause(WAITING)  # type: ignore[union-attr]
                result.addCallback(
                    self._responseFiltered, upstream, framing
                ).addErrback(self._filterAnswerFailed)
                return
            if framing is not None and not self._foreignChecked(result, framing):
                return
            if isinstance(result, Response):
                return self._replaceResponse(result)
            head = result
        self._sendResponseHead(head)

    _held: Optional[list[Any]] = None
    _transforms: Optional[list[Any]] = None
    # bytesOut when the final response head came: nothing of the response
    # reached the client while bytesOut is still that (1xx may have).
    _headAt = 0

    def _responseFiltered(
        self,
        result: ResponseHead | Response,
        upstream: UpstreamProtocol,
        framing: Optional[_Framing],
    ) -> None:
        if self.upstream is not upstream:
            return
        held, self._held = self._held, None
        upstream.gate.resume(WAITING)  # type: ignore[union-attr]
        if framing is not None and not self._foreignChecked(result, framing):
            return
        if isinstance(result, Response):
            return self._replaceResponse(result)
        self._sendResponseHead(result)
        if self.upstream is not upstream:
            # A body filter's change was answered 502 instead.
            return
        try:
            for event in held or ():
                if type(event) is bytes:
                    self.responseData(event)
                else:
                    self.responseEnd(event)
                    return
        except TransformFailed as e:
            upstream.closing = True
            return self.upstreamFailed(upstream, e.reason)
        self.flushToClient()

    def _foreignChecked(self, head: ResponseHead | Response, before: _Framing) -> bool:
        """
        After a filter that is not built in has seen a response head: put
        its framing fields back as the upstream sent them (the body is
        relayed as the upstream framed it), and the request's method and
        version, which frame the client's answer, as they were; or, if the
        filter changed the status to or from one that has no body (1xx,
        204, 304), answer 502 instead: the body would be read as the next
        response, or waited for.  An answer to HEAD has no body whatever
        its final status, so there only a change to or from 1xx counts.

        @param head: the response head the filters returned, or their
            L{Response} (then only the request is put back).
        @return: whether the head may go on.
        """
        status, lengths, codings, method, version = before
        request = self.request
        request.method, request.version = method, version  # type: ignore[union-attr]
        if isinstance(head, Response):
            return True
        if method == b"HEAD":
            changed = (head.status < 200) != (status < 200)
        else:
            changed = _bodiless(head.status) != _bodiless(status)
        if changed:
            self._replaceResponse(self._statusChanged(status, head.status))
            return False
        headers = head.headers
        if head.status == 204 and status != 204:
            # A HEAD's answer turned 204 (for other methods it got 502
            # above): a 204 carries no framing fields (RFC 9110, 8.6).
            lengths = codings = []
        if (
            headers.getAll(b"content-length") != lengths
            or headers.getAll(b"transfer-encoding") != codings
        ):
            headers.remove(b"Content-Length")
            headers.remove(b"Transfer-Encoding")
            for value in lengths:
                headers.addTrusted(b"Content-Length", value)
            for value in codings:
                headers.addTrusted(b"Transfer-Encoding", value)
        return True

    def _statusChanged(self, before: int, after: int) -> Response:
        """
        @return: the 502 for a response filter that changed the status in
            a way the body's framing cannot follow (logged).
        """
        return _filterError(
            "response",
            "changed the status from %d to %d" % (before, after),
            502,
            self.request.url(),  # type: ignore[union-attr]
        )

    def _replaceResponse(self, response: Response) -> None:
        """
        A response filter answered instead of the upstream: send its
        response and drop the upstream's body with its connection.
        """
        if response.decider is not None:
            self.decidedBy = (response.decider, response.reason)
        self._detachUpstream()
        self.responseStarted = False
        self._respond(response, close=not self.requestDone)

    def _noteContentType(self, headers: Any) -> None:
        """
        Keep the response's Content-Type for the access log (there is one),
        if its format prints it.
        """
        if self.factory.accessLog.logsContentType:
            contentType = headers.get(b"content-type")
            self.contentType = contentType.decode("latin-1") if contentType else None

    def _sendResponseHead(self, head: ResponseHead) -> None:
        request = self.request
        headers = head.headers
        if self.factory.accessLog is not None:
            self._noteContentType(headers)
        upstream = self.upstream
        parser = upstream.parser  # type: ignore[union-attr]
        framing = parser.framing
        streams = framing != NO_BODY and (
            framing != LENGTH or parser.remaining > parser.buffered()
        )
        chain = self._chain
        if chain is not None and chain.hasBodyFilters and framing != NO_BODY:
            before = (
                _framingOf(request, head) if chain.mayReframeResponses else None  # type: ignore[arg-type]
            )
            transforms = chain.bodyTransforms(request, head)  # type: ignore[arg-type]
            if type(transforms) is not list:
                # A body filter failed: its 502 replaces the response (and
                # names it), whatever else it changed.
                if before is not None:
                    self._foreignChecked(transforms, before)
                return self._replaceResponse(transforms)
            if before is not None and not self._foreignChecked(head, before):
                return
            if transforms:
                # A transformed body has a length nobody knows yet.
                self._transforms = transforms
                headers.remove(b"Content-Length")
                headers.remove(b"Transfer-Encoding")
                framing = UNTIL_CLOSE
        if streams:
            # The body streams: a slow client pauses the upstream (already
            # so after an interim response).
            if self.transport.producer is None:
                self.transport.registerProducer(upstream.gate, True)  # type: ignore[union-attr]
            self._watchTransfer()
        self.chunkDown = False
        if framing == UNTIL_CLOSE:
            if self.keepAlive and request.version == b"HTTP/1.1":  # type: ignore[union-attr]
                headers.set(b"Transfer-Encoding", b"chunked")
                self.chunkDown = True
            else:
                self.closeAfter = self._closeDelimited = True
        elif framing == CHUNKED:
            if request.version != b"HTTP/1.1":  # type: ignore[union-attr]
                headers.remove(b"Transfer-Encoding")
                self.closeAfter = self._closeDelimited = True
            else:
                self.chunkDown = True
        elif head.status == 204:
            # RFC 9110 section 8.6, RFC 9112 section 6.1: never on a 204
            # (the parser took it as bodiless whatever they said).
            headers.remove(b"Content-Length")
            headers.remove(b"Transfer-Encoding")
        elif framing == NO_BODY and request.version != b"HTTP/1.1":  # type: ignore[union-attr]
            # A HEAD or 304 may say it (RFC 9112 section 6.1), but never to
            # a client that did not say HTTP/1.1.
            headers.remove(b"Transfer-Encoding")
        if not self.requestDone:
            # We answer before reading the whole request body (an early
            # error, a 417): we cannot find the next request's start.
            self.closeAfter = True
        if self.closeAfter:
            headers.add(b"Connection", b"close")
        elif request.version != b"HTTP/1.1":  # type: ignore[union-attr]
            headers.add(b"Connection", b"keep-alive")
        self._out.append(head.serialize())

    def responseData(self, data: Buffer) -> None:
        """
        The upstream sent a piece of the response body: C{bytes}, or a
        C{memoryview} of a large piece (L{ResponseParser._viewFrom}), which
        filters see as C{bytes}.
        """
        if type(data) is memoryview and (
            self._held is not None or self._transforms is not None
        ):
            data = data.tobytes()
        if self._held is not None:
            self._held.append(data)
            return
        if self._transforms is not None:
            for transform in self._transforms:
                data = transform(data)
                if not data:
                    return
        if self.chunkDown:
            self._out += [b"%x\r\n" % len(data), data, b"\r\n"]
        else:
            self._out.append(data)

    def responseEnd(self, end: EndOfMessage) -> None:
        """
        The upstream's response is complete.
        """
        if self._held is not None:
            self._held.append(end)
            return
        transforms = self._transforms
        if transforms is not None:
            self._transforms = None
            for index, transform in enumerate(transforms):
                tail = transform.finish()
                for later in transforms[index + 1 :]:
                    if tail:
                        tail = later(tail)
                if tail:
                    self.responseData(tail)
        if self.chunkDown:
            if end.trailers is not None:
                self._out.append(b"0\r\n" + _trailerBlock(end.trailers) + b"\r\n")
            else:
                self._out.append(b"0\r\n\r\n")
        self._responseComplete = True
        upstream = self.upstream
        self.flushToClient()
        self._unregisterProducers(upstream)  # type: ignore[arg-type]
        self.upstream = None
        reusable = (
            self.requestDone
            and not upstream.closing  # type: ignore[union-attr]
            and upstream.parser.isIdle()  # type: ignore[union-attr]
            and upstream.parser.framing != UNTIL_CLOSE  # type: ignore[union-attr]
            and not upstream.parser.faulty  # type: ignore[union-attr]
        )
        if reusable:
            self.factory.pool.release(upstream)  # type: ignore[arg-type]
        else:
            upstream.client = None  # type: ignore[union-attr]
            upstream.closing = True  # type: ignore[union-attr]
            upstream.transport.loseConnection()  # type: ignore[union-attr]
        self._finishExchange()

    def relayWholeResponse(
        self, upstream: UpstreamProtocol, head: bytes, body: Buffer
    ) -> bool:
        """
        Relay a final response that arrived whole in one read
        (L{ResponseParser.wholeResponse}) in one step, when nothing about
        the exchange needs the general path: the request is complete, the
        connection stays open, both sides speak HTTP/1.1, and no response
        or body filter, held event or streaming producer is involved.
        What it does is what L{responseHead}, L{_sendResponseHead},
        L{responseData} and L{responseEnd} together do in that case, on
        the received bytes: the head as received (less its Connection
        line), the Via line, the body.

        @return: whether it relayed the response; if not, nothing changed
            and the caller goes through the event methods.
        """
        request = self.request
        factory = self.factory
        chain = self._chain
        if (
            request is None
            or not self.requestDone
            or self.closeAfter
            or request.version != b"HTTP/1.1"
            or self._out
            or self._held is not None
            or self.transport.producer is not None
            or upstream.transport.producer is not None
            or (
                chain is not None and (chain.hasResponseFilters or chain.hasBodyFilters)
            )
        ):
            return False
        self.status = int(head[9:12])
        self.responseStarted = True
        accessLog = factory.accessLog
        if accessLog is not None and accessLog.logsContentType:
            self._noteContentType(wholeResponseHead(head).headers)
        if type(body) is bytes:
            data = b"".join((head, factory.viaLine, body))
            self.bytesOut += len(data)
            self.transport.write(data)
        else:
            self._writePieces([head, factory.viaLine, body])
        self.upstream = None
        if upstream.closing:
            upstream.client = None
            upstream.transport.loseConnection()
        else:
            factory.pool.release(upstream)
        self._finishExchange()
        return True

    def flushToClient(self) -> None:
        """
        Write what the upstream's events produced for the client in one call.
        """
        out = self._out
        if out:
            self._out = []
            if len(out) == 1 and type(out[0]) is bytes:
                self.bytesOut += len(out[0])
                self.transport.write(out[0])
            else:
                self._writePieces(out)

    def _writePieces(self, pieces: list[Buffer]) -> None:
        """
        Write several pieces to the client: large ones (views of a read
        among them) unjoined and uncopied to a transport that gathers,
        anything else joined into one C{bytes}.
        """
        size = sum(map(len, pieces))
        self.bytesOut += size
        if size >= _GATHER_FROM and gathers(self.transport):
            self.transport.writeSequence(pieces)
        else:
            self.transport.write(b"".join(pieces))

    def upstreamFailed(self, upstream: UpstreamProtocol, reason: str) -> None:
        """
        The upstream connection broke or sent a malformed response.
        """
        if self.upstream is not upstream:
            return
        log.info(
            "{client}:{port} upstream error for {target}: {reason}",
            client=self.clientHost,
            port=self.clientPort,
            target=self.request.url() if self.request else "-",
            reason=reason,
        )
        self._detachUpstream()
        self._transforms = None
        if self.responseStarted and self.bytesOut == self._headAt:
            # The head is still in our buffer (the failure came in the read
            # that brought it): the client can still get a proper error
            # (after any 1xx it has had).
            self.responseStarted = False
            self._out = []
            return self._respond(
                errorResponse(
                    502,
                    f"The response could not be relayed: {reason}.",
                    self.request.url(),  # type: ignore[union-attr]
                ),
                close=True,
            )
        if self.responseStarted:
            # Part of the response is out: the only honest signal left is
            # to cut the client connection short.
            self._out = []
            self._logExchange(incomplete=True, reason=reason)
            self.request = None
            self._cutShort()
            return
        self._out = []
        self._respond(
            errorResponse(
                502,
                f"No valid response came from the upstream server: {reason}.",
                self.request.url(),  # type: ignore[union-attr]
            ),
            close=not self.requestDone,
        )

    def reusedConnectionDied(self, upstream: UpstreamProtocol) -> None:
        """
        A pooled connection was found closed when we used it: retry an
        idempotent, bodiless request once on a fresh connection.
        """
        if self.upstream is not upstream:
            return
        request = self.request
        self._detachUpstream()
        if self._retryHead is not None and request.method in IDEMPOTENT and self._attempt == 0:  # type: ignore[union-attr]
            self._attempt = 1
            self._pendingUp = [self._retryHead]
            self._connect((request.scheme or "http", request.host, request.port))  # type: ignore[union-attr, arg-type]
            return
        why = (
            "it is not idempotent"
            if request.method not in IDEMPOTENT  # type: ignore[union-attr]
            else (
                "its body was not kept"
                if self._retryHead is None
                else "it was retried once already"
            )
        )
        self._respond(errorResponse(502, f"The upstream connection closed before a response; the request was not retried because {why}.", request.url()), close=not self.requestDone)  # type: ignore[union-attr]

    def _detachUpstream(self, abort: bool = False) -> None:
        """
        End the current exchange's use of its upstream connection and close
        it (cleanly, or with a reset if C{abort}: its peer is not reading).
        """
        upstream = self.upstream
        if upstream is None:
            return
        self.upstream = None
        upstream.client = None
        upstream.closing = True
        self._unregisterProducers(upstream)
        if abort:
            upstream.transport.abortConnection()
        else:
            upstream.transport.loseConnection()

    def _unregisterProducers(self, upstream: UpstreamProtocol) -> None:
        if self.transport.producer is not None:
            self.transport.unregisterProducer()
        if upstream.transport.producer is not None:
            upstream.transport.unregisterProducer()
        gate = self.gate
        if gate.reasons & BACKPRESSURE:  # type: ignore[union-attr]
            gate.resume(BACKPRESSURE)  # type: ignore[union-attr]
        gate = upstream.gate
        if gate.reasons & BACKPRESSURE:  # type: ignore[union-attr]
            gate.resume(BACKPRESSURE)  # type: ignore[union-attr]

    # -- local answers ---------------------------------------------------------

    def _respond(self, response: Response, close: bool = False) -> None:
        """
        Answer the current request with a complete response of our own.
        """
        request = self.request
        self.status = response.head.status
        self.responseStarted = True
        self._responseComplete = True
        self.reason = response.reason
        if response.head.status >= 400 and response.reason:
            log.info(
                "{client}:{port} {status} for {target}: {reason}",
                client=self.clientHost,
                port=self.clientPort,
                status=response.head.status,
                target=request.url() if request is not None else "-",
                reason=response.reason,
            )
        if (
            close
            or not self.requestDone
            and request is not None
            and self.parser.framing != NO_BODY
        ):
            self.closeAfter = True
        elif request is not None and request.method == b"CONNECT":
            # Every answer we make to a CONNECT refuses the tunnel, and the
            # parser has switched to it: the next request would never be
            # read, so the connection closes (as Squid does).
            self.closeAfter = True
        headers = response.head.headers
        status = response.head.status
        # Our framing, whatever a filter's Response says: a length, or no
        # body at all where the status has none.
        headers.remove(b"Transfer-Encoding")
        if status < 200 or status == 204 or status == 304:
            headers.remove(b"Content-Length")
            isHead = True
        else:
            isHead = request is not None and request.method == b"HEAD"
            headers.set(b"Content-Length", b"%d" % (len(response.body),))
        if self.closeAfter:
            headers.set(b"Connection", b"close")
        elif request is not None and request.version != b"HTTP/1.1":
            headers.set(b"Connection", b"keep-alive")
        if self.factory.accessLog is not None:
            # This answer's, not an upstream head's it replaces.
            self._noteContentType(headers)
        self._out.append(response.head.serialize())
        if not isHead and response.body:
            self._out.append(response.body)
        self.flushToClient()
        if request is not None and request.method == b"CONNECT":
            self.requestDone = True
        if self.parser.framing == NO_BODY:
            self.requestDone = True
        self._finishExchange()

    def _clientError(
        self,
        status: int,
        reason: str,
        what: str = "",
        started: Optional[float] = None,
    ) -> None:
        """
        The client sent something malformed, too large or too slowly
        (C{what} says which; by default, what C{status} says): answer, then
        close, because we can no longer tell where its next request would
        start.
        """
        if not what:
            what = _CLIENT_ERRORS.get(status, "Malformed request")
        if self._closed:
            # Already answered and closing; this is about bytes after it.
            return
        self._detachUpstream()
        if self.responseStarted and not self._responseComplete:
            log.info(
                "{client}:{port} protocol error mid-response: {reason}",
                client=self.clientHost,
                port=self.clientPort,
                reason=reason,
            )
            self._cutShort()
            return
        self.closeAfter = True
        # More of whatever it was may still be on its way.
        self._linger = True
        self.requestDone = True
        self.responseStarted = False
        if self.request is None:
            # The head itself was malformed: answered under a placeholder,
            # logged as a request that was never parsed.
            self.started = time.time() if started is None else started
            self.request = _UNPARSED
            target = ""
        else:
            target = self.request.url()
        self._respond(errorResponse(status, f"{what}: {reason}.", target), close=True)

    # -- end of an exchange ----------------------------------------------------

    def _finishExchange(self) -> None:
        """
        Log the exchange, then close or get ready for the next request.
        """
        if not self.requestDone:
            # The response went out first (an early answer); the rest of
            # the request body is still arriving and is discarded as it
            # comes while the connection closes.
            self.closeAfter = True
            self._linger = True
        parser = self.parser
        # Bytes of the next (pipelined) request, received with this one's;
        # if the connection closes now they are nobody's.
        pending = 0 if self.closeAfter else parser.buffered()
        self._logExchange(carry=pending)
        self.request = None
        self.responseStarted = False
        self._responseComplete = False
        self.chunkDown = self.chunkUp = False
        if self.closeAfter:
            self._setDeadline(_NO_DEADLINE, 0)
            if parser.buffered():
                # Requests pipelined behind this one go unanswered: closing
                # with them unread would reset the connection under this
                # response (RFC 9112 section 9.6).
                self._linger = True
            self._close()
            return
        parser.startNextCycle()
        transport = self.transport
        if self._waitingForClient or (
            unsent(transport) > PIPELINE_HOLD and transport.producer is None
        ):
            # The client is not reading its responses: read and answer
            # nothing more from it until it has, and reset it if it reads
            # nothing for readTimeout seconds (it is not idle: answers
            # wait for it, and perhaps requests it sent).
            if not self._waitingForClient:
                self._waitingForClient = True
                self.gate.pause(PIPELINE)  # type: ignore[union-attr]
                transport.registerProducer(_WhenSent(self), False)
            self._watchTransfer(_CLOSING)
            return
        self._setDeadline(_IDLE, self.settings.idleTimeout)
        self._clientCaughtUp(pending)

    _waitingForClient = False

    def _clientCaughtUp(self, pending: Optional[int] = None) -> None:
        """
        Go on to the next request: read again, and handle a request already
        received (pipelined).
        """
        if self._waitingForClient:
            self._waitingForClient = False
            self._setDeadline(_IDLE, self.settings.idleTimeout)
        if pending is None:
            pending = self.parser.buffered()
        gate = self.gate
        if gate.reasons & PIPELINE:  # type: ignore[union-attr]
            gate.resume(PIPELINE)  # type: ignore[union-attr]
        if pending and not self._dispatching:
            self._resumeScheduled = True
            # A pipelined request is waiting; handle it on the next turn so
            # that we never re-enter the upstream's dataReceived.
            self.reactor.callLater(0, self._resumeDispatch)

    _resumeScheduled = False

    def _resumeDispatch(self) -> None:
        self._resumeScheduled = False
        if (
            self.request is None
            and not self.tunnel
            and not self.transport.disconnecting
            and not self._waitingForClient
        ):
            self._setDeadline(_HEAD, self.settings.headerTimeout)
            self._dispatch()

    def _cutShort(self) -> None:
        """
        End the client connection in the middle of a response body.  A body
        with a length or chunks shows it is incomplete when the connection
        closes; one delimited by the close would look complete, so that
        connection is reset instead.
        """
        if self._closeDelimited:
            self._closed = True
            self.transport.abortConnection()
        else:
            self._close()

    def _close(self) -> None:
        """
        Close the client connection once what it buffers has been sent.  A
        client that stops reading would keep it open forever: once nothing
        has moved for C{readTimeout} seconds it is reset instead (and so is
        a tunnel's upstream that stopped reading).

        If the client may still be sending (C{_linger}), only the sending
        side is shut down first; see L{LINGER_TIME}.
        """
        self._closed = True
        transport = self.transport
        if transport.producer is not None:
            transport.unregisterProducer()
        if (
            self._linger
            and not self.readClosed
            and not self.factory.draining
            and halfCloses(transport)
        ):
            transport.loseWriteConnection()
            gate = self.gate
            if gate.reasons:  # type: ignore[union-attr]
                # Read on, whatever held reading back: bytes are dropped now.
                gate.reasons = 0  # type: ignore[union-attr]
                transport.resumeProducing()
            self._lingerUntil = self.reactor.seconds() + LINGER_TIME
            self._lingerBytes = self.bytesIn
            self._setDeadline(_LINGER, LINGER_IDLE)
            return
        self._linger = False
        transport.loseConnection()
        if not transport.disconnected:
            self._watchTransfer(_CLOSING)

    def _lingered(self) -> None:
        """
        The linger deadline passed: wait on while the client still sends
        (up to L{LINGER_TIME} in all), else close.
        """
        now = self.reactor.seconds()
        left = self._lingerUntil - now
        if self.bytesIn != self._lingerBytes and left > 0:
            self._lingerBytes = self.bytesIn
            self._setDeadline(_LINGER, min(LINGER_IDLE, left))
            return
        self._deadlineKind = _NO_DEADLINE
        self._linger = False
        self._close()

    def _logExchange(
        self, incomplete: bool = False, reason: Optional[str] = None, carry: int = 0
    ) -> None:
        """
        Count and log the exchange that ends.

        @param incomplete: whether it was cut off before its response was
            complete.
        @param carry: how many of the bytes received belong to the next
            request (pipelined behind this one): they count for that one.
        """
        relay = self._relay
        if relay is not None:
            self._relay = None
            self.bytesIn += relay.bytesAtoB
            self.bytesOut += relay.bytesBtoA
        bytesIn = self.bytesIn - carry
        stats = self.factory.stats
        stats.bytesFromClients += bytesIn
        stats.bytesToClients += self.bytesOut
        accessLog = self.factory.accessLog
        request = self.request
        if accessLog is None or (request is None and not self.tunnel):
            self.bytesIn = carry
            self.bytesOut = self._headAt = self.status = 0
            return
        if request is _UNPARSED:
            request = None
        accessLog.logExchange(
            (
                self.clientAddress,
                request,
                self.started,
                time.time(),
                self.status if self.responseStarted or incomplete else 0,
                bytesIn,
                self.bytesOut,
                self.upstreamPeer,
                self.decidedBy,
                self.contentType,
                self.tunnel,
                incomplete and not self.tunnel,
            )
        )
        self.bytesIn = carry
        self.bytesOut = self._headAt = self.status = 0
        self.upstreamPeer = None
        self.decidedBy = None
        self.contentType = None

    # -- CONNECT and upgrades ----------------------------------------------------

    def _connectRequest(self, request: RequestHead) -> None:
        self.requestDone = True
        if request.port not in self.settings.connectPorts:
            # The access policy's refusal (TCP_DENIED in Squid's format).
            self.decidedBy = ("access", f"port {request.port} is not in connect_ports")
            return self._respond(
                errorResponse(
                    403,
                    f"CONNECT to port {request.port} is not allowed (allowed: {self.settings.connectPorts.describe()}).",
                    request.url(),
                ),
                close=True,
            )
        if self._isSelf(request):
            return self._respond(_connectLoop(request), close=True)
        chain = self._chain
        if chain is not None and chain.active:
            result = chain.filterTunnel(request)
            if isinstance(result, Deferred):
                self.gate.pause(WAITING)  # type: ignore[union-attr]
                result.addCallback(self._tunnelFiltered, request).addErrback(
                    self._filterAnswerFailed
                )
                return
            return self._tunnelFiltered(result, request)
        self._connect(("tcp", request.host, request.port))  # type: ignore[arg-type]

    def _filterAnswerFailed(self, failure: Failure) -> None:
        """
        Acting on what the filters decided, after they answered through a
        Deferred, raised (a bug, in the proxy or in something a filter left
        that the checks of L{messageDefect} do not cover).  Log it and reset
        the connection: the exchange is in no known state, and the client
        must not be left waiting on an open connection.
        """
        log.failure(
            "{client}:{port} error acting on the filters' answer; connection reset",
            failure,
            client=self.clientHost,
            port=self.clientPort,
        )
        if not self.transport.disconnected:
            self._abortAll()

    def _tunnelFiltered(self, result: Optional[Response], request: RequestHead) -> None:
        if self.request is not request:
            return
        self.gate.resume(WAITING)  # type: ignore[union-attr]
        if isinstance(result, Response):
            if result.head.status < 300:
                # A 2xx tells the client the tunnel is open: a refusal must
                # say otherwise.
                name = result.decider or "-"
                result = _filterError(
                    "tunnel",
                    f"({name}) answered a CONNECT with {result.head.status}, which says the tunnel is open",
                    500,
                    request.url(),
                )
                result.decider = name
            if result.decider is not None:
                self.decidedBy = (result.decider, result.reason)
            return self._respond(result, close=True)
        self._connect(("tcp", request.host, request.port))  # type: ignore[arg-type]

    def _startTunnel(self, upstream: UpstreamProtocol) -> None:
        self.factory.stats.tunnels += 1
        self.status = 200
        self.responseStarted = True
        self.upstreamPeer = upstream.peer
        self._out.append(b"HTTP/1.1 200 Connection established\r\n\r\n")
        self.flushToClient()
        self._joinTunnel(upstream, self.parser.takeBuffer(), b"")

    def _switchProtocols(self, head: ResponseHead) -> None:
        """
        The upstream accepted the upgrade: its 101 goes through the
        response filters like a final response (they may strip fields, or
        refuse the upgrade), then both connections become a tunnel.
        """
        upstream = self.upstream
        self.status = 101
        self.responseStarted = True
        self._headAt = self.bytesOut
        headers = head.headers
        headers.removeHopByHop(frozenset([b"upgrade"]))
        headers.add(b"Connection", b"Upgrade")
        headers.addTrusted(b"Via", self.factory.viaValues[head.version])
        chain = self._chain
        if chain is not None and chain.hasResponseFilters:
            result = chain.filterResponse(self.request, head)  # type: ignore[arg-type]
            if isinstance(result, Deferred):
                # What either side sends meanwhile waits in the parsers.
                upstream.gate.pause(WAITING)  # type: ignore[union-attr]
                result.addCallback(self._switchFiltered, upstream).addErrback(  # type: ignore[call-overload]
                    self._filterAnswerFailed
                )
                return
            self._switchFiltered(result, upstream)  # type: ignore[arg-type]
            return
        self._switch(head, upstream)  # type: ignore[arg-type]

    def _switchFiltered(
        self, result: ResponseHead | Response, upstream: UpstreamProtocol
    ) -> None:
        if self.upstream is not upstream:
            return
        if not isinstance(result, Response) and result.status != 101:
            result = self._statusChanged(101, result.status)
        if isinstance(result, Response):
            # Upgrade refused: the upstream has switched, so it goes; the
            # client may have switched too, so its connection closes.
            if result.decider is not None:
                self.decidedBy = (result.decider, result.reason)
            self._detachUpstream()
            self.responseStarted = False
            self._respond(result, close=True)
            return
        if upstream.gate.reasons & WAITING:  # type: ignore[union-attr]
            upstream.gate.resume(WAITING)  # type: ignore[union-attr]
        self._switch(result, upstream)

    def _switch(self, head: ResponseHead, upstream: UpstreamProtocol) -> None:
        self._out.append(head.serialize())
        self.flushToClient()
        self._joinTunnel(upstream, self.parser.takeBuffer(), upstream.parser.takeBuffer())  # type: ignore[arg-type]

    def _joinTunnel(
        self, upstream: UpstreamProtocol, toUpstream: bytes, toClient: bytes
    ) -> None:
        """
        From now on both connections carry opaque bytes (RFC 9110 section
        9.3.6): what either sends goes to the other, with backpressure both
        ways and half-closes passed on.
        """
        self.tunnel = True
        upstream.tunnel = True
        self._watchTransfer()
        # Whatever was held back as a pipelined request is tunnel data now.
        self.gate.resume(PIPELINE)  # type: ignore[union-attr]
        if self.upstream is not upstream:
            self.upstream = upstream
            upstream.client = self
        if toUpstream:
            upstream.transport.write(toUpstream)
        if toClient:
            self.transport.write(toClient)
            self.bytesOut += len(toClient)
        if not self.readClosed:
            # On Linux, two plain TCP connections with nothing buffered are
            # joined by the tunnel relay: no Python object or call per
            # chunk.  The relay wants no producers registered.
            self._unregisterProducers(upstream)
            relay = TunnelRelay(self.transport, upstream.transport)
            if relay.start():
                self._relay = relay
                return
        if self.transport.producer is None:
            self.transport.registerProducer(upstream.gate, True)
        if upstream.transport.producer is None:
            upstream.transport.registerProducer(self.gate, True)
        if self.readClosed:
            upstream.transport.loseWriteConnection()

    def upstreamHalfClosed(self) -> None:
        """
        The tunnel's upstream finished sending: pass the half-close on.
        """
        self.transport.loseWriteConnection()
        if self.readClosed:
            self._closeTunnel()

    def _closeTunnel(self) -> None:
        """
        Both directions of the tunnel are finished: close both connections
        (each flushes what it still buffers first).
        """
        upstream = self.upstream
        if upstream is not None:
            self._unregisterProducers(upstream)
            upstream.transport.loseConnection()
        self._close()

    def upstreamClosed(self) -> None:
        """
        The tunnel's upstream closed: close the client after flushing.
        """
        upstream = self.upstream
        if upstream is not None:
            self._unregisterProducers(upstream)
            self.upstream = None
        self._close()

    # -- loops -------------------------------------------------------------------

    def _hasOwnVia(self, headers: Any) -> bool:
        token = self.factory.viaToken
        for value in headers.getAll(b"via"):
            if token not in value.lower():
                continue
            for entry in value.split(b","):
                parts = entry.split()
                if len(parts) >= 2 and parts[1].lower() == token:
                    return True
        return False

    def _isSelf(self, request: RequestHead) -> bool:
        """
        @return: whether the target is this proxy's own listening address,
            by its name, or because this connection comes from the proxy
            itself (L{ConnectionPool.ownEnds}: a CONNECT, or a request to
            one of its addresses under another name) and asks for the same
            port again.
        """
        if request.port != self.localPort:
            return False
        # Checked now, not when this connection was accepted: on loopback
        # the proxy accepts its own connection before the connecting side
        # hears that it is connected (and adds it to ownEnds).
        if addressOf(self.transport.getPeer()) in self.factory.pool.ownEnds:
            return True
        host = request.host
        localHost = self.localHost
        if host == localHost:
            return True
        return host == "localhost" and (
            localHost.startswith("127.") or localHost == "::1"
        )

    # -- timeouts ------------------------------------------------------------------

    def _setDeadline(self, kind: int, seconds: float) -> None:
        self._deadlineKind = kind
        if kind == _NO_DEADLINE:
            return
        deadline = self.reactor.seconds() + seconds
        self._deadline = deadline
        timer = self._timer
        if timer is None:
            self._timer = self.reactor.callLater(seconds, self._timedOut)
        elif timer.getTime() > deadline:
            timer.reset(seconds)

    def _cancelTimer(self) -> None:
        timer = self._timer
        self._timer = None
        self._deadlineKind = _NO_DEADLINE
        if timer is not None and timer.active():
            timer.cancel()

    def _timedOut(self) -> None:
        self._timer = None
        kind = self._deadlineKind
        if kind == _NO_DEADLINE or self.transport.disconnected:
            return
        remaining = self._deadline - self.reactor.seconds()
        if remaining > 0:
            self._timer = self.reactor.callLater(remaining, self._timedOut)
            return
        if kind == _TRANSFER or kind == _CLOSING:
            self._checkTransfer()
            return
        if kind == _LINGER:
            self._lingered()
            return
        self._deadlineKind = _NO_DEADLINE
        if kind == _UPSTREAM:
            request = self.request
            log.info(
                "{client}:{port} upstream timeout for {target}",
                client=self.clientHost,
                port=self.clientPort,
                target=request.url() if request else "-",
            )
            self._detachUpstream()
            self._respond(
                errorResponse(
                    504,
                    f"The upstream server did not answer within {_seconds(self.settings.upstreamTimeout)}.",
                    request.url() if request else "",
                ),
                close=True,
            )
            return
        if kind == _HEAD:
            timeout = self.settings.headerTimeout
            log.info(
                "{client}:{port} closed: request head not received within {timeout:g} s",
                client=self.clientHost,
                port=self.clientPort,
                timeout=timeout,
            )
            if self.request is None and self.parser.headStarted():
                # Part of a head came: answer it (and log it) as nginx and
                # Apache do; a connection that sent nothing is just closed.
                # Logged from when the wait for the head began.
                began = self._deadline - timeout
                return self._clientError(
                    408,
                    f"the request head did not arrive within {_seconds(timeout)}",
                    started=time.time() - (self.reactor.seconds() - began),
                )
        self._close()

    # -- stalled transfers -------------------------------------------------------

    _moved = 0
    _movedAt = 0.0

    def _bytesMoved(self) -> int:
        """
        @return: a count that changes whenever a byte of the current
            transfer moves: from the client, to the client (when it reads
            it), from the upstream, to the upstream (when it reads it), or
            through the tunnel relay.
        """
        # Bytes handed to a transport count once its peer takes them: a
        # slow reader draining a full buffer is progress, and the upstream
        # stays paused until that buffer is empty.
        moved = self.bytesIn + self.bytesOut - unsent(self.transport)
        upstream = self.upstream
        if upstream is not None:
            moved += upstream.bytesStreamed - unsent(upstream.transport)
        relay = self._relay
        if relay is not None:
            moved += relay.bytesAtoB + relay.bytesBtoA
        return moved

    def _watchTransfer(self, kind: int = _TRANSFER) -> None:
        """
        Watch a request body, response body or tunnel from now until the
        exchange ends: once no byte has moved either way for
        C{readTimeout} seconds, it is cut off (L{_stalled}).

        Nothing is done per byte.  A timer compares the byte counters every
        quarter of the timeout, so a transfer is cut off between one and
        one and a quarter timeouts after its last byte, never sooner.
        """
        self._moved = self._bytesMoved()
        self._movedAt = self.reactor.seconds()
        self._setDeadline(kind, self.settings.readTimeout / 4)

    def _checkTransfer(self) -> None:
        now = self.reactor.seconds()
        moved = self._bytesMoved()
        if moved != self._moved:
            self._moved = moved
            self._movedAt = now
        timeout = self.settings.readTimeout
        left = self._movedAt + timeout - now
        kind = self._deadlineKind
        if left > 0:
            self._setDeadline(kind, min(timeout / 4, left))
            return
        self._deadlineKind = _NO_DEADLINE
        if kind == _CLOSING:
            log.info(
                "{client}:{port} reset: the client read nothing more for {timeout:g} s",
                client=self.clientHost,
                port=self.clientPort,
                timeout=timeout,
            )
            self._abortAll()
            return
        self._stalled()

    def _stalled(self) -> None:
        """
        No byte moved for C{readTimeout} seconds.  A request body still
        coming in is answered (408 if the client stopped sending, 504 if
        the upstream stopped reading it or owes the client a C{100
        Continue}); anything else is cut off with
        resets, since one side is not reading and a clean close would wait
        for it forever.
        """
        timeout = self.settings.readTimeout
        request = self.request
        if not self.tunnel and not self.responseStarted and request is not None:
            # The upstream is at fault if it stopped reading the body, or if
            # the client still waits for its 100 Continue (RFC 9110 section
            # 10.1.1) before sending any.
            upstreamStopped = self.gate.reasons & BACKPRESSURE or (  # type: ignore[union-attr]
                self.bodyBytes == 0
                and b"100-continue" in request.headers.getTokens(b"expect")
            )
            self._detachUpstream(abort=True)
            if upstreamStopped:
                status, why = (
                    504,
                    f"The upstream server stopped reading the request body, or sent no 100 Continue, for {timeout:g} seconds.",
                )
            else:
                status, why = (
                    408,
                    f"The request body stalled: nothing arrived for {timeout:g} seconds.",
                )
            self._respond(errorResponse(status, why, request.url()), close=True)
            return
        log.info(
            "{client}:{port} {what} stalled: no byte moved for {timeout:g} s; cut off",
            client=self.clientHost,
            port=self.clientPort,
            what=(
                f"tunnel to {request.url()}"
                if self.tunnel and request is not None
                else (
                    f"response for {request.url()}"
                    if request is not None
                    else "transfer"
                )
            ),
            timeout=timeout,
        )
        self._abortAll()

    def _abortAll(self) -> None:
        """
        Reset the client connection and the upstream one, if any.
        """
        self._detachUpstream(abort=True)
        self._closed = True
        self.transport.abortConnection()

    # -- drain -----------------------------------------------------------------------

    def busy(self) -> bool:
        """
        @return: whether an exchange or tunnel is in flight.
        """
        return (
            self.tunnel
            or self.request is not None
            or (
                (self._waitingForClient or self._resumeScheduled)
                and self.parser.buffered() > 0
            )
        )

    def closeIfIdle(self) -> None:
        """
        Close the connection now if it has no exchange in flight; otherwise
        make it close after the current one (graceful drain).
        """
        if self.busy():
            self.closeAfter = True
            self.keepAlive = False
        elif self._linger and self._closed:
            # Answered already: the process is stopping, so the linger
            # (which can last LINGER_TIME) ends now.
            self._linger = False
            self._close()
        elif not self._closed:
            if self._waitingForClient:
                # Bytes it sent may wait unread: closing on them would
                # reset the connection under the answers still going out.
                self._linger = True
            self._close()


# How _clientError introduces a client error of each status, other than 400.
_CLIENT_ERRORS = {
    408: "Request timeout",
    413: "Request too large",
    414: "Request too large",
    431: "Request too large",
}

_REQUEST_LINE_TARGET = re.compile(rb"[\x21-\x7e\x80-\xff]+")
"""
What a request-target may hold in a request line: no space and no control
character (the parser takes bytes above 0x7f, as servers do).
"""


def _filterError(side: str, why: str, status: int, target: str) -> Response:
    """
    Log what a request or response filter (C{side}) did that the proxy
    cannot relay, and make the error answer for it.
    """
    log.error(
        "a {side} filter {why} ({target}); answered {status}",
        side=side,
        why=why,
        target=target,
        status=status,
    )
    response = errorResponse(status, f"A filter {why}.", target)
    response.reason = f"filter error: {why}"
    return response


def _connectLoop(request: RequestHead) -> Response:
    return errorResponse(
        508, "The CONNECT target is this proxy itself (forwarding loop).", request.url()
    )


def _methodClass(method: bytes) -> bytes:
    """
    @return: what about a method decides how its response is framed
        (RFC 9112 section 6.3): C{HEAD}, C{CONNECT}, or C{b""} for any other.
    """
    return method if method == b"HEAD" or method == b"CONNECT" else b""


_Framing = tuple[int, list[bytes], list[bytes], bytes, bytes]


def _framingOf(request: RequestHead, head: ResponseHead) -> _Framing:
    """
    @return: what frames a response's body, as received: its status, the
        values of its framing fields, and the request's method and version.
    """
    headers = head.headers
    return (
        head.status,
        headers.getAll(b"content-length"),
        headers.getAll(b"transfer-encoding"),
        request.method,
        request.version,
    )


def _bodiless(status: int) -> bool:
    """
    @return: whether a response with this status never has a body.
    """
    return status < 200 or status == 204 or status == 304


__all__ = [
    "ProxyFactory",
    "ProxyProtocol",
    "PRODUCT",
]


def _seconds(duration: float) -> str:
    """
    @return: C{duration} for a message: C{"1 second"}, C{"2.5 seconds"}.
    """
    return f"{duration:g} second{'' if duration == 1 else 's'}"


# Fields never relayed in a trailer section: hop-by-hop ones, and those
# that frame or route a message, which a trailer cannot (RFC 9110 section
# 6.5.1).
_NOT_IN_TRAILERS = (b"Content-Length", b"Transfer-Encoding", b"Host", b"Trailer")


def _trailerBlock(trailers: Headers) -> bytes:
    """
    @return: the trailer fields to relay, serialized.
    """
    trailers.removeHopByHop()
    for name in _NOT_IN_TRAILERS:
        trailers.remove(name)
    return trailers.serialize()
