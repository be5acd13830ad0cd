# -*- test-case-name: tests.test_protocol -*-
"""
Tests for L{proxyapp.protocol}: the client and upstream connection state
machines, driven through L{StringTransport}s and a L{MemoryReactorClock}.

Every outgoing connection the proxy makes shows up in the reactor's
C{tcpClients}; a test plays the origin by building that connection's
protocol on a transport of its own.
"""

from __future__ import annotations

import gc
import json
import socket
import sys
import weakref
from http import HTTPStatus
from typing import Any, Callable, Optional

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import error
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
)
from twisted.internet.interfaces import IHalfCloseableProtocol, IPushProducer
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import capturedLogs, formatEvent
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from proxyapp import __version__, accesslog
from proxyapp.accesslog import (
    AccessRecord,
    Exchange,
    formatSquid,
    recordFromExchange,
)
from proxyapp.chain import EnabledFilter, FilterChain
from proxyapp.config import PortSet, Settings
from proxyapp.http11 import RequestParser, ResponseParser
from proxyapp.interfaces import (
    IBodyFilter,
    IRequestFilter,
    IResponseFilter,
    ITunnelFilter,
)
from proxyapp.message import (
    Headers,
    RequestHead,
    Response,
    ResponseHead,
    errorResponse,
)
from proxyapp import protocol
from proxyapp.protocol import (
    LINGER_IDLE,
    LINGER_TIME,
    PIPELINE_HOLD,
    ProxyFactory,
    ProxyProtocol,
)
from proxyapp.upstream import (
    BACKPRESSURE,
    UNSAFE_REUSE_IDLE,
    UpstreamProtocol,
    defaultEndpointFactory,
)
from tests.certificates import makeCertificate

PROXY_ADDRESS = IPv4Address("TCP", "127.0.0.1", 8080)
CLIENT_ADDRESS = IPv4Address("TCP", "127.0.0.1", 40000)
ORIGIN_ADDRESS = IPv4Address("TCP", "192.0.2.10", 80)
VIA = b"Via: 1.1 testproxy\r\n"


class Transport(StringTransport):
    """
    A L{StringTransport} that records half-closes.

    It is lenient about pausing or resuming after C{loseConnection}, as
    real TCP transports are.

    @ivar writeClosed: whether C{loseWriteConnection} was called.
    """

    writeClosed = False

    def __init__(self, hostAddress: Any = None, peerAddress: Any = None) -> None:
        StringTransport.__init__(self, hostAddress, peerAddress, lenient=True)

    def loseWriteConnection(self) -> None:
        self.writeClosed = True


def splitResponse(data: bytes) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """
    @return: the status code, the header fields in order and the bytes after
        the head of the first response in C{data}.
    """
    head, separator, rest = data.partition(b"\r\n\r\n")
    assert separator, f"no complete response head in {data!r}"
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ")[1])
    fields = []
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        fields.append((name, value.strip()))
    return status, fields, rest


def requestFields(data: bytes) -> list[tuple[bytes, bytes]]:
    """
    @return: the header fields of the request head at the start of C{data}.
    """
    return splitResponse(b"HTTP/1.1 000 -\r\n" + data.partition(b"\r\n")[2])[1]


def values(fields: list[tuple[bytes, bytes]], name: bytes) -> list[bytes]:
    """
    @return: the values of every field called C{name} (case-insensitive).
    """
    return [value for n, value in fields if n.lower() == name.lower()]


def dechunk(data: bytes) -> tuple[bytes, bytes]:
    """
    Decode a chunked body without trailers.

    @return: the body and whatever followed the last chunk.
    """
    body = b""
    while True:
        line, separator, data = data.partition(b"\r\n")
        assert separator, "chunked body cut short"
        size = int(line.split(b";")[0], 16)
        if size == 0:
            assert data.startswith(
                b"\r\n"
            ), f"trailers or junk after last chunk: {data!r}"
            return body, data[2:]
        body += data[:size]
        assert data[size : size + 2] == b"\r\n", "chunk data not followed by CRLF"
        data = data[size + 2 :]


class ProxyTestCase(SynchronousTestCase):
    """
    A proxy on a memory reactor with one connected client.

    @ivar bytewise: whether C{send} and C{reply} feed one byte per
        C{dataReceived} call instead of everything at once.
    """

    bytewise = False

    def setUp(self) -> None:
        self.start()

    def start(self, **overrides: Any) -> None:
        """
        (Re)build the proxy with these L{Settings} and connect a client.
        """
        overrides.setdefault("viaPseudonym", "testproxy")
        self.reactor = MemoryReactorClock()
        self.settings = Settings(**overrides)
        reactor = self.reactor
        self.factory = ProxyFactory(
            reactor,
            self.settings,
            lambda host, port: TCP4ClientEndpoint(reactor, host, port),
        )
        self.proxy, self.client = self.connectClient()

    def connectClient(self) -> tuple[ProxyProtocol, Transport]:
        """
        @return: a new client connection to the proxy and its transport.
        """
        proxy = self.factory.buildProtocol(PROXY_ADDRESS)
        transport = Transport(hostAddress=PROXY_ADDRESS, peerAddress=CLIENT_ADDRESS)
        proxy.makeConnection(transport)
        return proxy, transport

    def feed(self, protocol: Any, data: bytes) -> None:
        """
        Deliver C{data} to C{protocol}, stopping once its transport is
        closing: a real TCP transport stops reading on C{loseConnection}.
        """
        if self.bytewise:
            for i in range(len(data)):
                if protocol.transport.disconnecting:
                    return
                protocol.dataReceived(data[i : i + 1])
        else:
            protocol.dataReceived(data)

    def send(self, data: bytes, proxy: Optional[ProxyProtocol] = None) -> None:
        """
        Bytes from the client.
        """
        self.feed(proxy or self.proxy, data)

    def reply(self, upstream: Any, data: bytes) -> None:
        """
        Bytes from the origin.
        """
        self.feed(upstream, data)

    def accept(self, index: int = -1) -> tuple[Any, Transport]:
        """
        Complete an outgoing connection the proxy started.

        @return: the connection's protocol and transport.
        """
        factory = self.reactor.tcpClients[index][2]
        protocol = factory.buildProtocol(None)
        transport = Transport(peerAddress=ORIGIN_ADDRESS)
        protocol.makeConnection(transport)
        return protocol, transport

    def failConnect(self, exception: Exception, index: int = -1) -> None:
        """
        Make an outgoing connection attempt fail.
        """
        self.reactor.tcpClients[index][2].clientConnectionFailed(
            None, Failure(exception)
        )

    def target(self, index: int = -1) -> tuple[str, int]:
        host, port = self.reactor.tcpClients[index][:2]
        return host, port

    def forward(self, request: bytes) -> tuple[Any, Transport]:
        """
        Send a request and accept the upstream connection it opens.
        """
        self.send(request)
        return self.accept()

    def closeUpstream(self, upstream: Any) -> None:
        upstream.connectionLost(Failure(error.ConnectionDone()))


GET = b"GET http://example.com/a HTTP/1.1\r\nHost: example.com\r\n\r\n"
GET_CLOSE = (
    b"GET http://example.com/a HTTP/1.1\r\nHost: example.com\r\n"
    b"Connection: close\r\n\r\n"
)
GET_UP = b"GET /a HTTP/1.1\r\nHost: example.com\r\n" + VIA + b"\r\n"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
OK_DOWN = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n" + VIA + b"\r\nhello"


POST = b"POST http://example.com/a HTTP/1.1\r\nHost: example.com\r\nContent-Length: 2\r\n\r\nhi"


class PeekingSocket:
    """
    The socket of a pooled upstream connection, as L{proxyapp.upstream._quiet} peeks at it.

    @ivar peeks: how many times it was peeked at.
    """

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.peeks = 0

    def recv(self, size: int, flags: int) -> bytes:
        assert flags & socket.MSG_PEEK
        self.peeks += 1
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


class ForwardingTests(ProxyTestCase):
    """
    Requests and responses go through with the right targets, framing and
    header fields.
    """

    def test_interfaces(self) -> None:
        """
        Both protocols provide L{IHalfCloseableProtocol} and the read gates
        provide L{IPushProducer}.
        """
        upstream, _ = self.forward(GET)
        self.assertTrue(verifyObject(IHalfCloseableProtocol, self.proxy))
        self.assertTrue(verifyObject(IPushProducer, self.proxy.gate))
        inner = upstream._wrappedProtocol
        self.assertIsInstance(inner, UpstreamProtocol)
        self.assertTrue(verifyObject(IHalfCloseableProtocol, inner))
        self.assertTrue(verifyObject(IPushProducer, inner.gate))

    def test_forwardsOriginForm(self) -> None:
        """
        An absolute-form request is sent upstream in origin form with Via
        added.
        """
        _, transport = self.forward(GET)
        self.assertEqual(transport.value(), GET_UP)

    def test_defaultPort(self) -> None:
        """
        An http URL without a port connects to port 80 of its host.
        """
        self.send(b"GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n")
        self.assertEqual(self.target(), ("example.com", 80))

    def test_explicitPortAndHostFromTarget(self) -> None:
        """
        The connection goes to the target's host and port and Host is
        replaced by the target's authority, whatever Host the client sent.
        """
        _, transport = self.forward(
            b"GET http://example.com:8000/x HTTP/1.1\r\nHost: other.example\r\n\r\n"
        )
        self.assertEqual(self.target(), ("example.com", 8000))
        self.assertEqual(
            transport.value(),
            b"GET /x HTTP/1.1\r\nHost: example.com:8000\r\n" + VIA + b"\r\n",
        )

    def test_ipv6Literal(self) -> None:
        """
        An IPv6 literal target connects to the address without brackets and
        keeps the brackets in Host.
        """
        _, transport = self.forward(
            b"GET http://[::1]:8081/v6 HTTP/1.1\r\nHost: [::1]:8081\r\n\r\n"
        )
        self.assertEqual(self.target(), ("::1", 8081))
        self.assertEqual(
            transport.value(),
            b"GET /v6 HTTP/1.1\r\nHost: [::1]:8081\r\n" + VIA + b"\r\n",
        )

    def test_pathAndQueryByteExact(self) -> None:
        """
        The path and query go upstream exactly as received, percent-escapes
        and all.
        """
        _, transport = self.forward(
            b"GET http://example.com/a%2Fb/c;p=1?q=%20x&r=a+b&&s HTTP/1.1\r\nHost: example.com\r\n\r\n"
        )
        self.assertTrue(
            transport.value().startswith(
                b"GET /a%2Fb/c;p=1?q=%20x&r=a+b&&s HTTP/1.1\r\n"
            )
        )

    def test_queryWithoutPath(self) -> None:
        """
        A target with a query but no path is sent with the path C{/}.
        """
        _, transport = self.forward(
            b"GET http://example.com?x=1 HTTP/1.1\r\nHost: example.com\r\n\r\n"
        )
        self.assertTrue(transport.value().startswith(b"GET /?x=1 HTTP/1.1\r\n"))

    def test_extensionMethod(self) -> None:
        """
        A method the proxy does not know is forwarded unchanged.
        """
        _, transport = self.forward(
            b"PROPFIND http://example.com/dav/ HTTP/1.1\r\nHost: example.com\r\nDepth: 1\r\n\r\n"
        )
        self.assertEqual(
            transport.value(),
            b"PROPFIND /dav/ HTTP/1.1\r\nHost: example.com\r\nDepth: 1\r\n"
            + VIA
            + b"\r\n",
        )

    def test_http10RequestForwardedAsHttp11WithHost(self) -> None:
        """
        An HTTP/1.0 request without Host goes upstream as HTTP/1.1 with Host
        taken from the target.
        """
        _, transport = self.forward(b"GET http://example.com/old HTTP/1.0\r\n\r\n")
        fields = requestFields(transport.value())
        self.assertTrue(transport.value().startswith(b"GET /old HTTP/1.1\r\n"))
        self.assertEqual(values(fields, b"Host"), [b"example.com"])

    def test_viaNamesReceivedVersionOfRequest(self) -> None:
        """
        The Via added to a request from an HTTP/1.0 client names the version
        received, 1.0 (RFC 9110 section 7.6.3).
        """
        _, transport = self.forward(b"GET http://example.com/old HTTP/1.0\r\n\r\n")
        fields = requestFields(transport.value())
        self.assertEqual(values(fields, b"Via"), [b"1.0 testproxy"])

    def test_viaNamesReceivedVersionOfResponse(self) -> None:
        """
        The Via added to a response from an HTTP/1.0 origin names the version
        received, 1.0 (RFC 9110 section 7.6.3).
        """
        upstream, _ = self.forward(GET)
        self.reply(upstream, b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
        _, fields, _ = splitResponse(self.client.value())
        self.assertEqual(values(fields, b"Via"), [b"1.0 testproxy"])

    def test_viaAppendedToExisting(self) -> None:
        """
        Via fields from earlier hops are kept and the proxy's own entry comes
        after them.
        """
        _, transport = self.forward(
            b"GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\nVia: 1.0 other\r\n\r\n"
        )
        fields = requestFields(transport.value())
        self.assertEqual(values(fields, b"Via"), [b"1.0 other", b"1.1 testproxy"])

    def test_responseByContentLength(self) -> None:
        """
        A response framed by Content-Length reaches the client unchanged but
        for Via.
        """
        upstream, _ = self.forward(GET)
        self.reply(upstream, OK)
        self.assertEqual(self.client.value(), OK_DOWN)
        self.assertFalse(self.client.disconnecting)

    def test_contentLengthRequestBody(self) -> None:
        """
        A request body framed by Content-Length is streamed upstream after
        the head.
        """
        _, transport = self.forward(
            b"POST http://example.com/p HTTP/1.1\r\nHost: example.com\r\nContent-Length: 11\r\n\r\nhello world"
        )
        self.assertEqual(
            transport.value(),
            b"POST /p HTTP/1.1\r\nHost: example.com\r\nContent-Length: 11\r\n"
            + VIA
            + b"\r\nhello world",
        )

    def test_contentLengthBodyStreamsAfterConnect(self) -> None:
        """
        Body bytes arriving after the upstream connection is up are written
        upstream as they come.
        """
        _, transport = self.forward(
            b"POST http://example.com/p HTTP/1.1\r\nHost: example.com\r\nContent-Length: 11\r\n\r\n"
        )
        transport.clear()
        self.send(b"hello")
        self.assertEqual(transport.value(), b"hello")
        self.send(b" world")
        self.assertEqual(transport.value(), b"hello world")

    def test_chunkedRequestBody(self) -> None:
        """
        A chunked request body is sent upstream chunked, with the same
        content.
        """
        _, transport = self.forward(
            b"POST http://example.com/p HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n"
        )
        head, _, body = transport.value().partition(b"\r\n\r\n")
        self.assertEqual(
            head,
            b"POST /p HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n"
            + VIA[:-2],
        )
        self.assertEqual(dechunk(body), (b"hello world", b""))

    def test_chunkedResponse(self) -> None:
        """
        A chunked response reaches an HTTP/1.1 client chunked, with the same
        content, and the connection stays open.
        """
        upstream, _ = self.forward(GET)
        self.reply(
            upstream,
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n3\r\n!!!\r\n0\r\n\r\n",
        )
        status, fields, body = splitResponse(self.client.value())
        self.assertEqual(status, 200)
        self.assertEqual(values(fields, b"Transfer-Encoding"), [b"chunked"])
        self.assertEqual(dechunk(body), (b"hello!!!", b""))
        self.assertFalse(self.client.disconnecting)

    def test_chunkedResponseToHttp10Client(self) -> None:
        """
        A chunked response reaches an HTTP/1.0 client unchunked, delimited by
        closing the connection.
        """
        upstream, _ = self.forward(b"GET http://example.com/ HTTP/1.0\r\n\r\n")
        self.reply(
            upstream,
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        )
        _, fields, body = splitResponse(self.client.value())
        self.assertEqual(values(fields, b"Transfer-Encoding"), [])
        self.assertEqual(body, b"hello")
        self.assertTrue(self.client.disconnecting)

    def test_untilCloseResponseChunkedToHttp11Client(self) -> None:
        """
        A response delimited by the origin closing is re-chunked for an
        HTTP/1.1 client, which keeps its connection.
        """
        upstream, _ = self.forward(GET)
        self.reply(
            upstream, b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nhello "
        )
        self.reply(upstream, b"world")
        self.closeUpstream(upstream)
        status, fields, body = splitResponse(self.client.value())
        self.assertEqual(status, 200)
        self.assertEqual(values(fields, b"Transfer-Encoding"), [b"chunked"])
        self.assertEqual(dechunk(body), (b"hello world", b""))
        self.assertFalse(self.client.disconnecting)

    def test_untilCloseResponseToHttp10Client(self) -> None:
        """
        A response delimited by the origin closing reaches an HTTP/1.0 client
        as is, and the client connection is closed after it.
        """
        upstream, _ = self.forward(b"GET http://example.com/ HTTP/1.0\r\n\r\n")
        self.reply(
            upstream, b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nhello"
        )
        self.assertFalse(self.client.disconnecting)
        self.closeUpstream(upstream)
        _, fields, body = splitResponse(self.client.value())
        self.assertEqual(values(fields, b"Transfer-Encoding"), [])
        self.assertEqual(values(fields, b"Connection"), [b"close"])
        self.assertEqual(body, b"hello")
        self.assertTrue(self.client.disconnecting)

    def test_headResponseHasNoBody(self) -> None:
        """
        The response to HEAD ends with its head even though it announces a
        length, and the upstream connection is kept for reuse.
        """
        upstream, _ = self.forward(
            b"HEAD http://example.com/a HTTP/1.1\r\nHost: example.com\r\n\r\n"
        )
        self.reply(upstream, b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
        self.assertEqual(
            self.client.value(),
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n" + VIA + b"\r\n",
        )
        self.assertFalse(self.client.disconnecting)
        self.assertEqual(self.factory.pool.idleCount(), 1)

    def test_204HasNoBody(self) -> None:
        """
        A 204 response ends with its head and the upstream connection is kept.
        """
        upstream, _ = self.forward(GET)
        self.reply(upstream, b"HTTP/1.1 204 No Content\r\n\r\n")
        self.assertEqual(
            self.client.value(), b"HTTP/1.1 204 No Content\r\n" + VIA + b"\r\n"
        )
        self.assertFalse(self.client.disconnecting)
        self.assertEqual(self.factory.pool.idleCount(), 1)

    def test_204FramingFieldsDropped(self) -> None:
        """
        Content-Length and Transfer-Encoding, which a 204 must not carry
        (RFC 9110 section 8.6, RFC 9112 section 6.1), are not relayed;
        the other fields are.
        """
        for field in (b"Content-Length: 5", b"Transfer-Encoding: chunked"):
            self.start()
            upstream, _ = self.forward(GET)
            self.reply(
                upstream,
                b"HTTP/1.1 204 No Content\r\n%s\r\nX-A: b\r\n\r\n" % (field,),
            )
            self.assertEqual(
                self.client.value(),
                b"HTTP/1.1 204 No Content\r\nX-A: b\r\n" + VIA + b"\r\n",
            )

    def test_304HasNoBody(self) -> None:
        """
        A 304 response ends with its head even with a Content-Length, and the
        upstream connection is kept.
        """
        upstream, _ = self.forward(GET)
        self.reply(
            upstream,
            b'HTTP/1.1 304 Not Modified\r\nETag: "x"\r\nContent-Length: 10\r\n\r\n',
        )
        self.assertEqual(
            self.client.value(),
            b'HTTP/1.1 304 Not Modified\r\nETag: "x"\r\nContent-Length: 10\r\n'
            + VIA
            + b"\r\n",
        )
        self.assertEqual(self.factory.pool.idleCount(), 1)

    def test_100ContinueReachesHttp11Client(self) -> None:
        """
        A 100 Continue from the origin is passed to an HTTP/1.1 client, and
        the body sent after it goes upstream.
        """
        upstream, transport = self.forward(
            b"POST http://example.com/u HTTP/1.1\r\nHost: example.com\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"
        )
        self.assertIn(b"\r\nExpect: 100-continue\r\n", transport.value())
        self.reply(upstream, b"HTTP/1.1 100 Continue\r\n\r\n")
        self.assertTrue(self.client.value().startswith(b"HTTP/1.1 100 Continue\r\n"))
        self.assertTrue(self.client.value().endswith(b"\r\n\r\n"))
        transport.clear()
        self.send(b"hello")
        self.assertEqual(transport.value(), b"hello")
        self.client.clear()
        self.reply(upstream, OK)
        self.assertEqual(self.client.value(), OK_DOWN)
        self.assertFalse(self.client.disconnecting)

    def test_interimResponsesPausedBySlowClient(self) -> None:
        """
        From the first interim response on, a client that does not read
        pauses the upstream, as for a body (an origin could send 1xx without
        end); a final response streamed after them keeps that, and the end
        of the exchange lets both go.
        """
        upstream, transport = self.forward(GET)
        self.reply(upstream, b"HTTP/1.1 102 Processing\r\n\r\n")
        self.assertIs(self.client.producer, upstream._wrappedProtocol.gate)
        self.client.producer.pauseProducing()
        self.assertEqual(transport.producerState, "paused")
        self.client.producer.resumeProducing()
        self.assertEqual(transport.producerState, "producing")
        self.reply(
            upstream,
            b"HTTP/1.1 103 Early Hints\r\n\r\n"
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello",
        )
        self.assertIs(self.client.producer, upstream._wrappedProtocol.gate)
        self.reply(upstream, b"world")
        self.assertIsNone(self.client.producer)
        self.assertTrue(self.client.value().endswith(b"\r\n\r\nhelloworld"))
        self.assertEqual(self.factory.pool.idleCount(), 1)

    def test_417ClosesClientConnection(self) -> None:
        """
        A final answer to an C{Expect: 100-continue} request sent before the
        body reaches the client, and the client connection is closed after
        it.
        """
        upstream, _ = self.forward(
            b"POST http://example.com/u HTTP/1.1\r\nHost: example.com\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"
        )
        self.reply(
            upstream, b"HTTP/1.1 417 Expectation Failed\r\nContent-Length: 0\r\n\r\n"
        )
        status, fields, _ = splitResponse(self.client.value())
        self.assertEqual(status, 417)
        self.assertEqual(values(fields, b"Connection"), [b"close"])
        self.assertTrue(self.client.disconnecting)

    def test_interimNotSentToHttp10Client(self) -> None:
        """
        1xx responses are not forwarded to an HTTP/1.0 client; the final
        response is.
        """
        upstream, _ = self.forward(b"GET http://example.com/ HTTP/1.0\r\n\r\n")
        self.reply(
            upstream,
            b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\nHTTP/1.1 100 Continue\r\n\r\n",
        )
        self.assertEqual(self.client.value(), b"")
        self.reply(upstream, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        status, _, body = splitResponse(self.client.value())
        self.assertEqual((status, body), (200, b"ok"))

    def test_hopByHopRemovedFromRequest(self) -> None:
        """
        Connection, the fields it names, Keep-Alive, Proxy-Connection,
        Proxy-Authorization, TE and Upgrade are not forwarded upstream.
        """
        _, transport = self.forward(
            b"GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n"
            b"Connection: X-Secret, keep-alive\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\n"
            b"Proxy-Connection: keep-alive\r\nProxy-Authorization: Basic Zm9vOmJhcg==\r\n"
            b"TE: trailers\r\nUpgrade: h2c\r\nX-Kept: yes\r\n\r\n"
        )
        self.assertEqual(
            transport.value(),
            b"GET / HTTP/1.1\r\nHost: example.com\r\nX-Kept: yes\r\n" + VIA + b"\r\n",
        )

    def test_twoProxyAuthorizationFieldsRefused(self) -> None:
        """
        Proxy-Authorization is a singleton: a request with two (which
        would the auth filter check?) is answered 400 and not forwarded,
        and the connection stays usable.
        """
        self.send(
            b"GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n"
            b"Proxy-Authorization: Basic Zm9vOmJhcg==\r\n"
            b"Proxy-Authorization: Basic YWRtaW46YWRtaW4=\r\n\r\n"
        )
        status, _, body = splitResponse(self.client.value())
        self.assertEqual(status, 400)
        self.assertIn(b"more than one Proxy-Authorization field", body)
        self.assertEqual(self.reactor.tcpClients, [])
        self.client.clear()
        self.forward(GET)

    def test_earlyRefusalsCloseAsAsked(self) -> None:
        """
        A request refused before it is forwarded (two Proxy-Authorization
        fields, a loop seen in Via) closes the connection when the client
        asked for that: C{Connection: close}, or HTTP/1.0 without
        keep-alive.
        """
        for extra in (
            b"Proxy-Authorization: Basic YQ==\r\nProxy-Authorization: Basic Yg==\r\n",
            b"Via: 1.1 testproxy\r\n",
        ):
            for version, connection in (
                (b"HTTP/1.1", b"Connection: close\r\n"),
                (b"HTTP/1.0", b""),
            ):
                proxy, client = self.connectClient()
                self.send(
                    b"GET http://example.com/ %s\r\nHost: example.com\r\n%s%s\r\n"
                    % (version, connection, extra),
                    proxy,
                )
                status, fields, _ = splitResponse(client.value())
                case = (extra, version)
                self.assertIn(status, (400, 508), case)
                self.assertEqual(values(fields, b"connection"), [b"close"], case)
                self.assertTrue(client.disconnecting, case)

    def test_hopByHopRemovedFromResponse(self) -> None:
        """
        Connection, the fields it names, Keep-Alive, Proxy-Connection,
        Proxy-Authenticate, TE and Upgrade are not forwarded to the client.
        """
        upstream, _ = self.forward(GET)
        self.reply(
            upstream,
            b"HTTP/1.1 200 OK\r\nConnection: X-Internal\r\nX-Internal: 1\r\nKeep-Alive: timeout=5\r\n"
            b"Proxy-Connection: keep-alive\r\nProxy-Authenticate: Basic realm=x\r\nTE: trailers\r\n"
            b"Upgrade: h2c\r\nX-Kept: yes\r\nContent-Length: 0\r\n\r\n",
        )
        self.assertEqual(
            self.client.value(),
            b"HTTP/1.1 200 OK\r\nX-Kept: yes\r\nContent-Length: 0\r\n" + VIA + b"\r\n",
        )

    def test_traceMaxForwardsZeroAnsweredLocally(self) -> None:
        """
        TRACE with Max-Forwards 0 is answered by the proxy with the request
        echoed as message/http, without connecting anywhere.
        """
        request = b"TRACE http://example.com/t HTTP/1.1\r\nHost: example.com\r\nMax-Forwards: 0\r\nX-A: b\r\n\r\n"
        self.send(request)
        self.assertEqual(self.reactor.tcpClients, [])
        status, fields, body = splitResponse(self.client.value())
        self.assertEqual(status, 200)
        self.assertEqual(values(fields, b"Content-Type"), [b"message/http"])
        self.assertEqual(body, request)

    def test_optionsMaxForwardsZeroAnsweredLocally(self) -> None:
        """
        OPTIONS with Max-Forwards 0 is answered by the proxy with an Allow
        field, without connecting anywhere.
        """
        self.send(
            b"OPTIONS http://example.com/ HTTP/1.1\r\nHost: example.com\r\nMax-Forwards: 0\r\n\r\n"
        )
        self.assertEqual(self.reactor.tcpClients, [])
        status, fields, _ = splitResponse(self.client.value())
        self.assertEqual(status, 200)
        self.assertIn(b"TRACE", values(fields, b"Allow")[0])

    def test_maxForwardsDecremented(self) -> None:
        """
        TRACE with Max-Forwards 3 is forwarded with Max-Forwards 2.
        """
        _, transport = self.forward(
            b"TRACE http://example.com/t HTTP/1.1\r\nHost: example.com\r\nMax-Forwards: 3\r\n\r\n"
        )
        self.assertEqual(
            transport.value(),
            b"TRACE /t HTTP/1.1\r\nHost: example.com\r\nMax-Forwards: 2\r\n"
            + VIA
            + b"\r\n",
        )

    def test_maxForwardsIgnoredForGet(self) -> None:
        """
        Max-Forwards on a method other than TRACE and OPTIONS is forwarded
        untouched (RFC 9110 section 7.6.2).
        """
        _, transport = self.forward(
            b"GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\nMax-Forwards: 0\r\n\r\n"
        )
        self.assertIn(b"\r\nMax-Forwards: 0\r\n", transport.value())


class ForwardingBytewiseTests(ForwardingTests):
    """
    L{ForwardingTests} with every byte from client and origin arriving in a
    C{dataReceived} of its own.
    """

    bytewise = True


class PersistenceTests(ProxyTestCase):
    """
    Client connections stay open or close as HTTP/1.1 and HTTP/1.0 say, and
    upstream connections are pooled and reused.
    """

    def test_http11KeepAliveByDefault(self) -> None:
        """
        An HTTP/1.1 client connection stays open after a response and
        carries the next request.
        """
        upstream, transport = self.forward(GET)
        self.reply(upstream, OK)
        self.assertFalse(self.client.disconnecting)
        self.client.clear()
        transport.clear()
        self.send(GET)
        self.assertEqual(transport.value(), GET_UP)
        self.reply(upstream, OK)
        self.assertEqual(self.client.value(), OK_DOWN)

    def test_connectionCloseClosesAfterResponse(self) -> None:
        """
        C{Connection: close} from the client closes its connection after the
        response, which says C{Connection: close}.
        """
        upstream, _ = self.forward(
            b"GET http://example.com/a HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n"
        )
        self.assertFalse(self.client.disconnecting)
        self.reply(upstream, OK)
        _, fields, body = splitResponse(self.client.value())
        self.assertEqual(values(fields, b"Connection"), [b"close"])
        self.assertEqual(body, b"hello")
        self.assertTrue(self.client.disconnecting)

    def test_http10ClosesByDefault(self) -> None:
        """
        An HTTP/1.0 client connection is closed after the response.
        """
        upstream, _ = self.forward(b"GET http://example.com/a HTTP/1.0\r\n\r\n")
        self.reply(upstream, OK)
        _, _, body = splitResponse(self.client.value())
        self.assertEqual(body, b"hello")
        self.assertTrue(self.client.disconnecting)

    def test_http10KeepAlive(self) -> None:
        """
        An HTTP/1.0 client sending C{Connection: keep-alive} gets a response
        with C{Connection: keep-alive} and keeps its connection.
        """
        upstream, _ = self.forward(
            b"GET http://example.com/a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
        )
        self.reply(upstream, OK)
        _, fields, body = splitResponse(self.client.value())
        self.assertEqual(values(fields, b"Connection"), [b"keep-alive"])
        self.assertEqual(body, b"hello")
        self.assertFalse(self.client.disconnecting)

    def test_pipelinedRequestsAnsweredInOrder(self) -> None:
        """
        Two requests in one read are answered in order, and the second is not
        sent upstream before the first response is complete.
        """
        second = b"GET http://example.com/b HTTP/1.1\r\nHost: example.com\r\n\r\n"
        upstream, transport = self.forward(GET + second)
        self.assertEqual(transport.value(), GET_UP)
        self.reply(upstream, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfir")
        self.assertEqual(transport.value(), GET_UP)
        self.reply(upstream, b"st")
        self.reactor.advance(0)
        self.assertEqual(
            transport.value(),
            GET_UP + b"GET /b HTTP/1.1\r\nHost: example.com\r\n" + VIA + b"\r\n",
        )
        self.reply(upstream, b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecond")
        self.assertEqual(
            self.client.value(),
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n" + VIA + b"\r\nfirst"
            b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n" + VIA + b"\r\nsecond",
        )
        self.assertEqual(len(self.reactor.tcpClients), 1)

    def test_pipelinedRequestWaitsForClientToRead(self) -> None:
        """
        When an exchange ends with more than L{PIPELINE_HOLD} bytes of
        responses still unsent to the client, the proxy takes no further
        request from it (not even one already received, nor one answered
        locally) and stops reading it, until its transport has sent what it
        holds; then it goes on.  A client pipelining requests without
        reading the answers made them pile up in memory, one after another.
        """
        status = b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"
        second = b"GET http://example.com/b HTTP/1.1\r\nHost: example.com\r\n\r\n"
        upstream, transport = self.forward(GET + status + second)
        # What the client transport holds unsent (as fastio.unsent reads it).
        self.client.dataBuffer = b"x" * (PIPELINE_HOLD + 1)
        self.client.offset = self.client._tempDataLen = 0
        self.reply(upstream, OK)
        self.reactor.advance(0)
        self.assertEqual(transport.value(), GET_UP)
        self.assertEqual(self.client.value(), OK_DOWN)
        self.assertEqual(self.client.producerState, "paused")
        waiter = self.client.producer
        waiter.resumeProducing()
        self.reactor.advance(0)
        self.assertEqual(transport.value(), GET_UP)
        self.client.dataBuffer = b""
        waiter.resumeProducing()
        self.assertIsNone(self.client.producer)
        self.assertEqual(self.client.producerState, "producing")
        self.reactor.advance(0)
        self.assertIn(b"webproxy", self.client.value())
        self.assertEqual(
            transport.value(),
            GET_UP + b"GET /b HTTP/1.1\r\nHost: example.com\r\n" + VIA + b"\r\n",
        )

    def test_pipelinedLocalAnswersWaitForClient(self) -> None:
        """
        Requests the proxy answers itself wait for the client to read too.
        """
        status = b"GET /status.json HTTP/1.1\r\nHost: example.com\r\n\r\n"
        self.client.dataBuffer = b"x" * (PIPELINE_HOLD + 1)
        self.client.offset = self.client._tempDataLen = 0
        self.send(status * 3)
        self.assertEqual(self.client.value().count(b"HTTP/1.1 200 OK"), 1)
        self.client.dataBuffer = b""
        self.client.producer.resumeProducing()
        self.reactor.advance(0)
        self.assertEqual(self.client.value().count(b"HTTP/1.1 200 OK"), 3)

    def holdClient(self) -> None:
        """
        Make the client transport hold more than L{PIPELINE_HOLD} unsent
        bytes, as L{fastio.unsent} reads them.
        """
        self.client.dataBuffer = b"x" * (PIPELINE_HOLD + 1)
        self.client.offset = self.client._tempDataLen = 0

    def test_holdIsNotIdle(self) -> None:
        """
        A connection held for its client to read is not idle: the idle
        timeout does not close it under the requests it sent.  Reading
        nothing for C{readTimeout} seconds resets it; reading some keeps it.
        """
        self.start(idleTimeout=5, readTimeout=40)
        second = b"GET http://example.com/b HTTP/1.1\r\nHost: example.com\r\n\r\n"
        upstream, transport = self.forward(GET + second)
        self.holdClient()
        self.reply(upstream, OK)
        self.reactor.advance(30)
        self.assertFalse(self.client.disconnecting)
        self.client.dataBuffer = b"x" * PIPELINE_HOLD * 2
        self.reactor.advance(30)
        self.assertFalse(self.client.disconnecting)
        self.client.dataBuffer = b"x" * PIPELINE_HOLD
        self.reactor.advance(30)
        self.assertFalse(self.client.disconnecting)
        self.client.dataBuffer = b""
        self.client.producer.resumeProducing()
        self.reactor.advance(0)
        # (A new upstream connection: the pooled one idled out meanwhile.)
        upstream, transport = self.accept()
        self.assertEqual(
            transport.value(),
            b"GET /b HTTP/1.1\r\nHost: example.com\r\n" + VIA + b"\r\n",
        )
        # Held again, and this time the client reads nothing more.
        self.holdClient()
        self.reply(upstream, OK)
        with capturedLogs() as events:
            self.reactor.advance(50)
        self.assertTrue(self.client.disconnected or self.client.disconnecting)
        self.assertTrue(
            any("read nothing more for 40 s" in formatEvent(e) for e in events)
        )

    def test_drainWaitsForHeldRequests(self) -> None:
        """
        A graceful drain counts a connection held with requests already
        received as busy: they are answered once the client reads, the
        last with C{Connection: close}, and then it closes.  Held without
        any, it closes as idle connections do, lingering (bytes may wait
        unread in the kernel).
        """
        second = b"GET http://example.com/b HTTP/1.1\r\nHost: example.com\r\n\r\n"
        upstream, transport = self.forward(GET + second)
        self.holdClient()
        self.reply(upstream, OK)
        self.assertTrue(self.proxy.busy())
        self.factory.draining = True
        self.proxy.closeIfIdle()
        self.assertFalse(self.client.disconnecting)
        self.client.dataBuffer = b""
        self.client.producer.resumeProducing()
        self.reactor.advance(0)
        self.client.clear()
        self.reply(upstream, OK)
        status, fields, _ = splitResponse(self.client.value())
        self.assertEqual(values(fields, b"Connection"), [b"close"])
        self.assertTrue(self.client.disconnecting)
        # Held with nothing received.
        self.start()
        upstream, transport = self.forward(GET)
        self.holdClient()
        self.reply(upstream, OK)
        self.assertFalse(self.proxy.busy())
        self.proxy.closeIfIdle()
        self.assertTrue(self.client.disconnecting)

    def test_lateFilterAnswersWaitForClient(self) -> None:
        """
        A request answered by a filter's late (asynchronous) decision ends
        an exchange like any other: with the client holding too much
        unread, the next request waits, and a late answer does not take
        it either.
        """
        deciding = _Deciding()
        self.factory.chain = FilterChain([EnabledFilter("deciding", deciding)])
        status = b"GET /status.json HTTP/1.1\r\nHost: example.com\r\n\r\n"
        self.send(status * 3)
        self.holdClient()
        d, request = deciding.pending.pop(0)
        d.callback(request)
        self.reactor.advance(0)
        self.assertEqual(deciding.pending, [])
        self.assertEqual(self.client.value().count(b"HTTP/1.1 200 OK"), 1)
        self.client.dataBuffer = b""
        self.client.producer.resumeProducing()
        for _ in range(2):
            self.reactor.advance(0)
            d, request = deciding.pending.pop(0)
            d.callback(request)
        self.reactor.advance(0)
        self.assertEqual(self.client.value().count(b"HTTP/1.1 200 OK"), 3)

    def test_readDuringHoldWaits(self) -> None:
        """
        A read delivered during a hold (epoll can report the client
        readable in the same poll as the event that began the hold) is not
        taken by the whole-request shortcut: the request waits like any
        other, its response then gets backpressure, and the hold ends when
        the client has read.
        """
        second = b"GET http://example.com/b HTTP/1.1\r\nHost: example.com\r\n\r\n"
        upstream, transport = self.forward(GET)
        self.holdClient()
        self.reply(upstream, OK)
        transport.clear()
        self.send(second)
        self.reactor.advance(0)
        self.assertEqual(transport.value(), b"")
        self.client.dataBuffer = b""
        self.client.producer.resumeProducing()
        self.reactor.advance(0)
        self.assertEqual(
            transport.value(),
            b"GET /b HTTP/1.1\r\nHost: example.com\r\n" + VIA + b"\r\n",
        )
        self.reply(
            upstream, b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10
        )
        self.assertIs(self.client.producer, upstream._wrappedProtocol.gate)
        self.assertFalse(self.proxy._waitingForClient)

    def test_drainBetweenCatchUpAndNextRequest(self) -> None:
        """
        Between the end of a hold and the turn that takes the request it
        kept, a drain still counts the connection as busy.
        """
        second = b"GET http://example.com/b HTTP/1.1\r\nHost: example.com\r\n\r\n"
        upstream, transport = self.forward(GET + second)
        self.holdClient()
        self.reply(upstream, OK)
        self.factory.draining = True
        self.proxy.closeIfIdle()
        self.client.dataBuffer = b""
        self.client.producer.resumeProducing()
        self.proxy.closeIfIdle()
        self.reactor.advance(0)
        self.assertFalse(self.client.disconnecting)
        self.assertIn(b"GET /b", transport.value())

    def test_halfCloseDuringHold(self) -> None:
        """
        A client that half-closes during a hold still gets the answers to
        the requests it sent, once it has read the earlier ones.
        """
        second = b"GET http://example.com/b HTTP/1.1\r\nHost: example.com\r\n\r\n"
        upstream, transport = self.forward(GET + second)
        self.holdClient()
        self.reply(upstream, OK)
        self.proxy.readConnectionLost()
        self.assertFalse(self.client.disconnecting)
        self.client.dataBuffer = b""
        self.client.producer.resumeProducing()
        self.reactor.advance(0)
        self.assertIn(b"GET /b", transport.value())
        self.reply(upstream, OK)
        self.assertTrue(self.client.disconnecting)

    def test_reusesPooledConnection(self) -> None:
        """
        A second request to the same origin, from another client, reuses the
        idle upstream connection instead of connecting again.
        """
        upstream, transport = self.forward(GET)
        self.reply(upstream, OK)
        self.assertEqual(self.factory.pool.idleCount(), 1)
        proxy, client = self.connectClient()
        transport.clear()
        self.send(GET, proxy)
        self.assertEqual(len(self.reactor.tcpClients), 1)
        self.assertEqual(transport.value(), GET_UP)
        self.reply(upstream, OK)
        self.assertEqual(client.value(), OK_DOWN)

    def test_differentOriginNotReused(self) -> None:
        """
        A request to another origin opens a connection of its own.
        """
        upstream, _ = self.forward(GET)
        self.reply(upstream, OK)
        self.send(
            b"GET http://example.com:81/ HTTP/1.1\r\nHost: example.com:81\r\n\r\n"
        )
        self.assertEqual(len(self.reactor.tcpClients), 2)
        self.assertEqual(self.target(), ("example.com", 81))

    def test_poolSizeCap(self) -> None:
        """
        No more than C{poolSize} idle connections are kept per origin; a
        connection beyond that is closed when its exchange ends.
        """
        self.start(poolSize=1)
        first, firstTransport = self.forward(GET)
        proxy, client = self.connectClient()
        self.send(GET, proxy)
        second, secondTransport = self.accept()
        self.assertEqual(len(self.reactor.tcpClients), 2)
        self.reply(first, OK)
        self.reply(second, OK)
        self.assertEqual(client.value(), OK_DOWN)
        self.assertEqual(self.factory.pool.idleCount(), 1)
        self.assertFalse(firstTransport.disconnecting)
        self.assertTrue(secondTransport.disconnecting)

    def test_poolIdleTimeout(self) -> None:
        """
        An upstream connection idle in the pool for C{poolIdleTimeout}
        seconds is closed.
        """
        self.start(poolIdleTimeout=30, idleTimeout=1000)
        upstream, transport = self.forward(GET)
        self.reply(upstream, OK)
        self.reactor.advance(29)
        self.assertFalse(transport.disconnecting)
        self.reactor.advance(1)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.factory.pool.idleCount(), 0)

    def test_poolTotalSizeCap(self) -> None:
        """
        No more than C{poolTotalSize} idle connections are kept across all
        origins (a client naming many origins made the proxy hold a
        descriptor for each, up to C{poolSize} each, for the idle timeout):
        one released beyond it is closed.  The count follows takes, sweeps,
        closes and reloads.
        """
        self.start(poolTotalSize=2, poolIdleTimeout=30, idleTimeout=1000)
        pool = self.factory.pool
        transports = []
        for host in [b"a.example", b"b.example", b"c.example"]:
            proxy, client = self.connectClient()
            self.send(
                b"GET http://%s/ HTTP/1.1\r\nHost: %s\r\n\r\n" % (host, host), proxy
            )
            upstream, transport = self.accept()
            self.reply(upstream, OK)
            transports.append((upstream, transport))
        self.assertEqual(pool.idleCount(), 2)
        self.assertEqual([t.disconnecting for _, t in transports], [False, False, True])
        # A reuse takes one out; releasing it again puts it back.
        proxy, client = self.connectClient()
        self.send(b"GET http://a.example/ HTTP/1.1\r\nHost: a.example\r\n\r\n", proxy)
        self.assertEqual(pool.idleCount(), 1)
        self.reply(transports[0][0], OK)
        self.assertEqual(pool.idleCount(), 2)
        # An idle one the origin closes leaves the count.
        self.closeUpstream(transports[1][0])
        self.assertEqual(pool.idleCount(), 1)
        self.assertEqual(pool.idleCount(), sum(map(len, pool._idle.values())))
        # A reload to a smaller total closes the excess now.
        pool.reconfigure(Settings(poolTotalSize=0, viaPseudonym="testproxy"))
        self.assertEqual(pool.idleCount(), 0)
        self.assertTrue(transports[0][1].disconnecting)
        self.assertEqual(pool._idle, {})

    def test_poolTotalShrinkKeepsNewest(self) -> None:
        """
        A reload to a smaller total closes the least recently used idle
        connections across origins (it emptied origins in turn, keeping an
        older connection to another origin).
        """
        self.start(poolTotalSize=4, poolIdleTimeout=100, idleTimeout=1000)
        pool = self.factory.pool
        transports, upstreams = {}, []
        for name in [b"a1", b"b1", b"a2"]:
            host = b"a.example" if name.startswith(b"a") else b"b.example"
            proxy, _ = self.connectClient()
            self.send(
                b"GET http://%s/ HTTP/1.1\r\nHost: %s\r\n\r\n" % (host, host), proxy
            )
            upstream, transports[name] = self.accept()
            upstreams.append(upstream)
        for upstream in upstreams:
            # Released in this order, a second apart.
            self.reactor.advance(1)
            self.reply(upstream, OK)
        self.assertEqual(pool.idleCount(), 3)
        pool.reconfigure(
            Settings(poolTotalSize=1, poolIdleTimeout=100, viaPseudonym="testproxy")
        )
        self.assertEqual(
            {name: t.disconnecting for name, t in transports.items()},
            {b"a1": True, b"b1": True, b"a2": False},
        )
        self.assertEqual(pool.idleCount(), 1)
        self.assertEqual(list(pool._idle), [("http", "a.example", 80)])

    def test_poolCountAfterSweep(self) -> None:
        """
        The idle count follows the sweep of connections idle too long.
        """
        self.start(poolTotalSize=1, poolIdleTimeout=30, idleTimeout=1000)
        upstream, transport = self.forward(GET)
        self.reply(upstream, OK)
        self.reactor.advance(30)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.factory.pool.idleCount(), 0)
        upstream, transport = self.forward(GET)
        self.reply(upstream, OK)
        self.assertFalse(transport.disconnecting)
        self.assertEqual(self.factory.pool.idleCount(), 1)

    def test_releaseTwiceListsOnce(self) -> None:
        """
        Releasing a connection that is already idle changes nothing: it is
        never listed twice, so two clients can never be handed the same
        upstream connection.
        """
        wrapper, _ = self.forward(GET)
        upstream = self.proxy.upstream
        self.reply(wrapper, OK)
        pool = self.factory.pool
        pool.release(upstream)
        self.assertEqual(pool.idleCount(), 1)
        self.assertEqual(sum(map(len, pool._idle.values())), 1)
        first, _ = self.connectClient()
        second, _ = self.connectClient()
        self.send(GET, first)
        self.send(GET, second)
        self.assertIs(first.upstream, upstream)
        self.assertIsNot(second.upstream, upstream)
        self.assertEqual(len(self.reactor.tcpClients), 2)

    def test_removeNotPooledIsNoop(self) -> None:
        """
        Forgetting a connection that is not idle (in use, or already taken
        out) leaves the pool as it is.
        """
        wrapper, _ = self.forward(GET)
        pool = self.factory.pool
        pool.remove(self.proxy.upstream)
        self.assertEqual((pool.idleCount(), pool._idle), (0, {}))
        self.reply(wrapper, OK)
        self.assertEqual(pool.idleCount(), 1)

    def test_idleUpstreamClosingIsDropped(self) -> None:
        """
        An idle upstream connection that the origin closes leaves the pool,
        and the next request connects anew.
        """
        upstream, _ = self.forward(GET)
        self.reply(upstream, OK)
        self.closeUpstream(upstream)
        self.assertEqual(self.factory.pool.idleCount(), 0)
        self.send(GET)
        self.assertEqual(len(self.reactor.tcpClients), 2)

    def test_deadPooledConnectionRetriedForIdempotent(self) -> None:
        """
        When a reused connection closes before answering, a bodiless GET is
        sent again once on a new connection.
        """
        upstream, _ = self.forward(GET)
        self.reply(upstream, OK)
        self.client.clear()
        self.send(GET)
        self.assertEqual(len(self.reactor.tcpClients), 1)
        self.closeUpstream(upstream)
        self.assertEqual(len(self.reactor.tcpClients), 2)
        retry, transport = self.accept()
        self.assertEqual(transport.value(), GET_UP)
        self.reply(retry, OK)
        self.assertEqual(self.client.value(), OK_DOWN)

    def test_retriedOnlyOnce(self) -> None:
        """
        When the retried connection closes before answering too, the client
        gets 502 and no third connection is made.
        """
        upstream, _ = self.forward(GET)
        self.reply(upstream, OK)
        self.client.clear()
        self.send(GET)
        self.closeUpstream(upstream)
        retry, _ = self.accept()
        self.closeUpstream(retry)
        self.assertEqual(len(self.reactor.tcpClients), 2)
        status, _, _ = splitResponse(self.client.value())
        self.assertEqual(status, 502)

    def test_deadPooledConnectionPostGets502(self) -> None:
        """
        When a reused connection closes before answering a POST, the POST is
        not sent again and the client gets 502.
        """
        upstream, _ = self.forward(GET)
        self.reply(upstream, OK)
        self.client.clear()
        self.send(
            b"POST http://example.com/a HTTP/1.1\r\nHost: example.com\r\nContent-Length: 2\r\n\r\nhi"
        )
        self.closeUpstream(upstream)
        self.assertEqual(len(self.reactor.tcpClients), 1)
        status, _, _ = splitResponse(self.client.value())
        self.assertEqual(status, 502)

    def test_postNotSentOnLongIdleConnection(self) -> None:
        """
        A POST is not sent on a connection that has been idle for
        L{UNSAFE_REUSE_IDLE} seconds or more (the origin's keep-alive
        timeout may be closing it just then, and a lost POST cannot be sent
        again): it gets a new connection, and the idle one stays pooled
        for a GET.
        """
        upstream, transport = self.forward(GET)
        self.reply(upstream, OK)
        self.reactor.advance(UNSAFE_REUSE_IDLE)
        self.client.clear()
        self.send(POST)
        self.assertEqual(len(self.reactor.tcpClients), 2)
        self.assertEqual(self.factory.pool.idleCount(), 1)
        self.assertFalse(transport.disconnecting)
        fresh, freshTransport = self.accept()
        self.assertTrue(freshTransport.value().startswith(b"POST /a HTTP/1.1\r\n"))
        self.reply(fresh, OK)
        self.assertEqual(self.client.value(), OK_DOWN)
        # A GET from another client, while the new connection is busy.
        proxy, _ = self.connectClient()
        self.send(
            b"POST http://example.com/a HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5\r\n\r\nhel"
        )
        transport.clear()
        self.send(GET, proxy)
        self.assertEqual(transport.value(), GET_UP)
        self.assertEqual(len(self.reactor.tcpClients), 2)

    def test_postSentOnRecentlyIdleConnection(self) -> None:
        """
        A POST reuses a connection idle for less than L{UNSAFE_REUSE_IDLE}
        seconds on which nothing has arrived.
        """
        upstream, transport = self.forward(GET)
        self.reply(upstream, OK)
        self.reactor.advance(UNSAFE_REUSE_IDLE / 2)
        transport.clear()
        self.send(POST)
        self.assertEqual(len(self.reactor.tcpClients), 1)
        self.assertTrue(transport.value().startswith(b"POST /a HTTP/1.1\r\n"))

    def test_postNotSentWhereEndOfFileWaits(self) -> None:
        """
        A POST is not sent on a pooled connection whose socket already
        holds the origin's end of file (or stray bytes, or an error), which
        the reactor has not read yet: that connection is closed and the
        POST gets a new one.  A GET still takes such a connection (it is
        sent again if the connection proves dead) and costs no peek.
        """
        for peeked, method in [
            (b"", POST),
            (b"H", POST),
            (ConnectionResetError(), POST),
            (b"", GET),
        ]:
            self.start()
            upstream, transport = self.forward(GET)
            self.reply(upstream, OK)
            transport.socket = PeekingSocket(peeked)
            self.send(method)
            if method is GET:
                self.assertEqual(transport.socket.peeks, 0)
                self.assertEqual(len(self.reactor.tcpClients), 1)
                continue
            self.assertEqual(transport.socket.peeks, 1)
            self.assertTrue(transport.disconnecting, peeked)
            self.assertEqual(len(self.reactor.tcpClients), 2, peeked)
            self.assertEqual(self.factory.pool.idleCount(), 0)

    def test_postSentWhereNothingWaits(self) -> None:
        """
        A pooled connection whose peek finds nothing to read carries a
        POST.
        """
        upstream, transport = self.forward(GET)
        self.reply(upstream, OK)
        transport.socket = PeekingSocket(BlockingIOError())
        transport.clear()
        self.send(POST)
        self.assertEqual(transport.socket.peeks, 1)
        self.assertEqual(len(self.reactor.tcpClients), 1)
        self.assertTrue(transport.value().startswith(b"POST /a HTTP/1.1\r\n"))

    def test_responseConnectionCloseNotPooled(self) -> None:
        """
        An upstream connection whose response said C{Connection: close} is
        closed after the response, not pooled (RFC 9112 section 9.6).
        """
        upstream, transport = self.forward(GET)
        self.reply(
            upstream,
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
        )
        self.assertEqual(self.factory.pool.idleCount(), 0)
        self.assertTrue(transport.disconnecting)
        self.assertFalse(self.client.disconnecting)
        # Nothing is left behind for the origin either (an empty list per
        # origin stayed until a sweep, which only an idle connection starts).
        self.assertEqual(self.factory.pool._idle, {})

    def test_poolSizeZero(self) -> None:
        """
        With C{poolSize} 0 no connection is kept.
        """
        self.start(poolSize=0)
        upstream, transport = self.forward(GET)
        self.reply(upstream, OK)
        self.assertEqual(self.client.value(), OK_DOWN)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.factory.pool._idle, {})

    def test_http10ResponseNotPooled(self) -> None:
        """
        An upstream connection that answered with HTTP/1.0 and no keep-alive
        is not persistent, so it is not pooled (RFC 9112 section 9.3).
        """
        upstream, transport = self.forward(GET)
        self.reply(upstream, b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
        self.assertEqual(self.factory.pool.idleCount(), 0)
        self.assertTrue(transport.disconnecting)


class ClosingTests(ProxyTestCase):
    """
    Either side closing or half-closing outside a tunnel.
    """

    def test_clientHalfCloseAnsweredThenClosed(self) -> None:
        """
        A client that half-closes after its request gets the response, then
        its connection is closed.
        """
        upstream, _ = self.forward(GET)
        self.proxy.readConnectionLost()
        self.assertFalse(self.client.disconnecting)
        self.reply(upstream, OK)
        _, fields, body = splitResponse(self.client.value())
        self.assertEqual(body, b"hello")
        self.assertEqual(values(fields, b"Connection"), [b"close"])
        self.assertTrue(self.client.disconnecting)

    def test_idleClientHalfCloseCloses(self) -> None:
        """
        A client half-closing between requests has its connection closed.
        """
        self.proxy.readConnectionLost()
        self.assertTrue(self.client.disconnecting)

    def test_halfCloseMidHeadAnswered400(self) -> None:
        """
        A client half-closing in the middle of a request head gets a 400
        saying so, then its connection is closed.
        """
        self.send(b"GET http://example.com/ HTTP/1.1\r\nHost: exa")
        self.proxy.readConnectionLost()
        status, _, body = splitResponse(self.client.value())
        self.assertEqual(status, 400)
        self.assertIn(b"request head cut short by the connection closing", body)
        self.assertTrue(self.client.disconnecting)
        self.assertEqual(self.reactor.tcpClients, [])

    def test_halfCloseAfterPipelinedHeadAnswered(self) -> None:
        """
        A whole request waiting behind the one in progress when the client
        half-closes is still answered on the reused upstream connection,
        then the client's connection is closed.
        """
        upstream, transport = self.forward(GET + GET)
        self.proxy.readConnectionLost()
        self.reply(upstream, OK)
        self.reactor.advance(0)
        self.assertEqual(transport.value().count(b"GET /a HTTP/1.1"), 2)
        self.assertFalse(self.client.disconnecting)
        self.reply(upstream, OK)
        self.assertEqual(self.client.value().count(b"HTTP/1.1 200 OK"), 2)
        self.assertTrue(self.client.disconnecting)

    def test_halfCloseAfterTrailingEmptyLine(self) -> None:
        """
        An empty line after the request (which some clients send after a
        body) is no request: a client half-closing after it has its
        connection closed once the response is sent.
        """
        upstream, _ = self.forward(GET + b"\r\n")
        self.proxy.readConnectionLost()
        self.reply(upstream, OK)
        self.assertEqual(self.client.value().count(b"HTTP/1.1 200 OK"), 1)
        self.assertTrue(self.client.disconnecting)

    def test_halfCloseAfterPipelinedPartialHead(self) -> None:
        """
        Part of a head pipelined behind the request in progress when the
        client half-closes gets its 400 after the first response, not a
        wait for the header timeout.
        """
        upstream, _ = self.forward(GET + b"GET http://example.com/b HTTP/1.1\r\nHo")
        self.proxy.readConnectionLost()
        self.reply(upstream, OK)
        self.reactor.advance(0)
        data = self.client.value()
        first = data.index(b"HTTP/1.1 200 OK")
        self.assertGreater(data.index(b"HTTP/1.1 400 "), first)
        self.assertIn(b"request head cut short by the connection closing", data)
        self.assertTrue(self.client.disconnecting)

    def test_clientCloseMidExchangeClosesUpstream(self) -> None:
        """
        A client closing before its response is complete closes the upstream
        connection instead of pooling it.
        """
        upstream, transport = self.forward(GET)
        self.reply(upstream, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhel")
        self.proxy.connectionLost(Failure(error.ConnectionDone()))
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.factory.pool.idleCount(), 0)

    def test_clientCloseAfterExchangeKeepsPool(self) -> None:
        """
        A client closing after a complete exchange leaves the upstream
        connection in the pool.
        """
        upstream, transport = self.forward(GET)
        self.reply(upstream, OK)
        self.proxy.connectionLost(Failure(error.ConnectionDone()))
        self.assertFalse(transport.disconnecting)
        self.assertEqual(self.factory.pool.idleCount(), 1)

    def test_unsolicitedBytesOnIdleUpstream(self) -> None:
        """
        An idle pooled upstream that sends bytes nobody asked for is closed
        and never reused.
        """
        upstream, transport = self.forward(GET)
        self.reply(upstream, OK)
        upstream.dataReceived(b"HTTP/1.1 200 OK\r\n")
        self.assertTrue(transport.disconnecting)
        self.send(GET)
        self.assertEqual(len(self.reactor.tcpClients), 2)

    def test_upstreamHalfCloseOutsideTunnel(self) -> None:
        """
        An origin half-closing an HTTP connection gets the connection closed
        fully.
        """
        upstream, transport = self.forward(GET)
        self.reply(upstream, OK)
        upstream.readConnectionLost()
        self.assertTrue(transport.disconnecting)


_BIG_PUT = (
    b"PUT http://example.com/ HTTP/1.1\r\nHost: example.com\r\n"
    b"Content-Length: 1000\r\n\r\n"
)


class LingerTests(ProxyTestCase):
    """
    Closing after an answer the client may still be sending to, on a
    connection that can half-close: the sending side is shut down first
    and what the client still sends is read and dropped (RFC 9112 section
    9.6), so that closing with unread bytes does not reset the connection
    under the answer.
    """

    def setUp(self) -> None:
        super().setUp()
        self.patch(protocol, "halfCloses", lambda transport: True)

    def test_refusedBodyDropped(self) -> None:
        """
        A body over the limit gets its 413; the proxy then shuts down only
        its sending side, drops the body still coming, and closes once the
        client has closed too.
        """
        self.start(maxBodyBytes=100)
        self.send(_BIG_PUT + b"x" * 300)
        answered = self.client.value()
        status, _, body = splitResponse(answered)
        self.assertEqual(status, 413)
        self.assertIn(b"larger than the limit of 100 bytes", body)
        self.assertTrue(self.client.writeClosed)
        self.assertFalse(self.client.disconnecting)
        self.send(b"x" * 700 + GET)
        self.assertEqual(self.client.value(), answered)
        self.assertEqual(self.reactor.tcpClients, [])
        self.proxy.readConnectionLost()
        self.assertTrue(self.client.disconnecting)

    def test_malformedRequestLingers(self) -> None:
        """
        A client error (400) lingers too: more of whatever the client sent
        may be on its way.
        """
        self.send(b"GET http://example.com/ HTTP/1.1\r\nBad : x\r\n\r\n")
        self.assertEqual(splitResponse(self.client.value())[0], 400)
        self.assertTrue(self.client.writeClosed)
        self.assertFalse(self.client.disconnecting)

    def test_earlyAnswerLingers(self) -> None:
        """
        An upstream's answer that comes before the request body is all
        sent is relayed, then the connection lingers for the rest.
        """
        upstream, _ = self.forward(_BIG_PUT + b"x" * 10)
        self.reply(upstream, b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
        self.assertEqual(splitResponse(self.client.value())[0], 403)
        self.assertTrue(self.client.writeClosed)
        self.assertFalse(self.client.disconnecting)
        self.send(b"x" * 990)
        self.proxy.readConnectionLost()
        self.assertTrue(self.client.disconnecting)

    def test_unansweredPipelinedRequestLingers(self) -> None:
        """
        A request saying C{Connection: close} with another pipelined behind
        it: the second goes unanswered, and the connection lingers rather
        than close with it unread.
        """
        upstream, _ = self.forward(
            b"GET http://example.com/a HTTP/1.1\r\nHost: example.com\r\n"
            b"Connection: close\r\n\r\n" + GET
        )
        self.reply(upstream, OK)
        self.assertTrue(self.client.value().endswith(b"hello"))
        self.assertTrue(self.client.writeClosed)
        self.assertFalse(self.client.disconnecting)
        self.proxy.readConnectionLost()
        self.assertTrue(self.client.disconnecting)

    def test_silentClientClosedAfterIdleTime(self) -> None:
        """
        A client that sends nothing for L{LINGER_IDLE} seconds while the
        proxy lingers is closed.
        """
        self.start(maxBodyBytes=100)
        self.send(_BIG_PUT)
        self.reactor.advance(LINGER_IDLE - 0.5)
        self.assertFalse(self.client.disconnecting)
        self.reactor.advance(0.5)
        self.assertTrue(self.client.disconnecting)

    def test_lingerEndsInTime(self) -> None:
        """
        A client that keeps sending is closed L{LINGER_TIME} seconds after
        the answer, however much it still sends.
        """
        self.start(maxBodyBytes=100)
        self.send(_BIG_PUT)
        closedAt = None
        for second in range(1, 2 * int(LINGER_TIME)):
            self.reactor.advance(1)
            if self.client.disconnecting:
                closedAt = second
                break
            if second % 4 == 0:
                self.send(b"x")
        self.assertEqual(closedAt, LINGER_TIME)

    def test_wholeRequestClosesAtOnce(self) -> None:
        """
        Closing after a request that was read whole (here one saying
        C{Connection: close}) does not linger: nothing more is coming.
        """
        upstream, _ = self.forward(
            b"GET http://example.com/a HTTP/1.1\r\nHost: example.com\r\n"
            b"Connection: close\r\n\r\n"
        )
        self.reply(upstream, OK)
        self.assertTrue(self.client.disconnecting)
        self.assertFalse(self.client.writeClosed)

    def test_noLingerWithoutHalfClose(self) -> None:
        """
        A transport that cannot half-close (TLS) is closed at once.
        """
        self.patch(protocol, "halfCloses", lambda transport: False)
        self.start(maxBodyBytes=100)
        self.send(_BIG_PUT)
        self.assertTrue(self.client.disconnecting)
        self.assertFalse(self.client.writeClosed)

    def test_drainEndsLinger(self) -> None:
        """
        A graceful drain ends a linger at once (it can last L{LINGER_TIME}
        and the answer has gone out), and nothing starts lingering while
        the proxy drains.
        """
        self.start(maxBodyBytes=100)
        self.send(_BIG_PUT)
        self.assertFalse(self.client.disconnecting)
        self.proxy.closeIfIdle()
        self.assertTrue(self.client.disconnecting)
        self.factory.draining = True
        proxy, client = self.connectClient()
        self.send(_BIG_PUT, proxy)
        self.assertEqual(splitResponse(client.value())[0], 413)
        self.assertTrue(client.disconnecting)
        self.assertFalse(client.writeClosed)


class UpgradeTests(ProxyTestCase):
    """
    C{101 Switching Protocols} turns the exchange into a byte tunnel.
    """

    UPGRADE = (
        b"GET http://example.com/ws HTTP/1.1\r\nHost: example.com\r\n"
        b"Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
    )

    def test_upgradeRequestKeepsUpgrade(self) -> None:
        """
        An upgrade request goes upstream with Upgrade and C{Connection:
        Upgrade}.
        """
        _, transport = self.forward(self.UPGRADE)
        fields = requestFields(transport.value())
        self.assertEqual(values(fields, b"Upgrade"), [b"websocket"])
        self.assertEqual(values(fields, b"Connection"), [b"Upgrade"])

    def test_http10UpgradeIgnored(self) -> None:
        """
        Upgrade in an HTTP/1.0 request is ignored (RFC 9110 section 7.8):
        the request goes upstream without it, so no 101 can come back to
        a client that could not take one.
        """
        _, transport = self.forward(self.UPGRADE.replace(b"HTTP/1.1", b"HTTP/1.0"))
        fields = requestFields(transport.value())
        self.assertEqual(values(fields, b"Upgrade"), [])
        self.assertEqual(values(fields, b"Connection"), [])

    def test_h2cOfferDropped(self) -> None:
        """
        An offer of h2c is not passed on (its HTTP2-Settings field is
        hop-by-hop, and RFC 9113 deprecates it): alone, the request goes
        upstream as a plain one, with neither Upgrade nor HTTP2-Settings;
        beside another protocol, only the other is offered.
        """
        h2c = (
            b"GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n"
            b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
            b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"
        )
        upstream, transport = self.forward(h2c)
        fields = requestFields(transport.value())
        for name in (b"Upgrade", b"Connection", b"HTTP2-Settings"):
            self.assertEqual(values(fields, name), [], name)
        self.reply(upstream, OK)
        self.assertEqual(self.client.value(), OK_DOWN)
        self.assertFalse(self.client.disconnecting)

        # HTTP2-Settings goes with the h2c offer even when Connection does
        # not name it.
        self.client.clear()
        self.send(
            h2c.replace(b"Connection: Upgrade, HTTP2-Settings", b"Connection: Upgrade")
        )
        fields = requestFields(transport.value().split(b"\r\n\r\n", 1)[1])
        self.assertEqual(values(fields, b"HTTP2-Settings"), [])
        self.reply(upstream, OK)
        transport.clear()

        self.client.clear()
        self.send(h2c.replace(b"Upgrade: h2c", b"Upgrade: h2c, WebSocket"))
        fields = requestFields(transport.value())
        self.assertEqual(values(fields, b"Upgrade"), [b"websocket"])
        self.assertEqual(values(fields, b"Connection"), [b"Upgrade"])
        self.assertEqual(values(fields, b"HTTP2-Settings"), [])

    def test_switchingProtocolsTunnels(self) -> None:
        """
        After a 101 the bytes the origin sent behind its head reach the
        client, and bytes both ways afterwards pass unparsed.
        """
        upstream, transport = self.forward(self.UPGRADE)
        self.reply(
            upstream,
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n\x81\x02hi",
        )
        status, fields, rest = splitResponse(self.client.value())
        self.assertEqual(status, 101)
        self.assertEqual(values(fields, b"Upgrade"), [b"websocket"])
        self.assertEqual(rest, b"\x81\x02hi")
        transport.clear()
        self.send(b"GET / HTTP/1.1\r\n\r\n")
        self.assertEqual(transport.value(), b"GET / HTTP/1.1\r\n\r\n")
        self.client.clear()
        self.reply(upstream, b"HTTP/1.1 999 nonsense\r\n")
        self.assertEqual(self.client.value(), b"HTTP/1.1 999 nonsense\r\n")
        self.assertEqual(self.client.producerState, "producing")

    def test_switchingProtocolsWithoutUpgrade(self) -> None:
        """
        A 101 answering a request that asked for no upgrade is an upstream
        error: 502, and the upstream connection is closed.
        """
        upstream, transport = self.forward(GET)
        self.reply(
            upstream,
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        )
        status, _, _ = splitResponse(self.client.value())
        self.assertEqual(status, 502)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.factory.pool.idleCount(), 0)

    def test_upgradeDeclined(self) -> None:
        """
        An upgrade request answered with 200 is an ordinary exchange.
        """
        upstream, _ = self.forward(self.UPGRADE)
        self.reply(upstream, OK)
        self.assertEqual(self.client.value(), OK_DOWN)

    SWITCHED = (
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
        b"Upgrade: websocket\r\nSet-Cookie: a=b\r\n\r\n\x81\x02hi"
    )

    def useResponseFilter(self, answer: Callable[[Any, Any], Any]) -> None:
        @implementer(IResponseFilter)
        class Filter:
            def filterResponse(self, request: Any, response: Any) -> Any:
                return answer(request, response)

        self.factory.chain = FilterChain([EnabledFilter("f", Filter())])

    def stripCookies(self, request: Any, response: Any) -> Any:
        response.headers.remove(b"set-cookie")
        return response

    def test_responseFiltersSeeSwitch(self) -> None:
        """
        A 101 goes through the response filters like a final response (it
        used to skip them, so cookies a filter strips reached the client).
        """
        self.useResponseFilter(self.stripCookies)
        upstream, transport = self.forward(self.UPGRADE)
        self.reply(upstream, self.SWITCHED)
        status, fields, rest = splitResponse(self.client.value())
        self.assertEqual(status, 101)
        self.assertEqual(values(fields, b"set-cookie"), [])
        self.assertEqual(rest, b"\x81\x02hi")
        transport.clear()
        self.send(b"\x81\x00")
        self.assertEqual(transport.value(), b"\x81\x00")

    def test_switchAfterLateDecision(self) -> None:
        """
        A filter deciding later holds the switch; bytes either side sent
        meanwhile follow it.
        """
        pending: list[Deferred[Any]] = []

        def later(request: Any, response: Any) -> Deferred[Any]:
            d: Deferred[Any] = Deferred()
            d.addCallback(lambda _: self.stripCookies(request, response))
            pending.append(d)
            return d

        self.useResponseFilter(later)
        upstream, transport = self.forward(self.UPGRADE)
        self.reply(upstream, self.SWITCHED)
        self.assertEqual(self.client.value(), b"")
        self.send(b"\x81\x00")
        pending[0].callback(None)
        status, fields, rest = splitResponse(self.client.value())
        self.assertEqual((status, values(fields, b"set-cookie")), (101, []))
        self.assertEqual(rest, b"\x81\x02hi")
        self.assertTrue(transport.value().endswith(b"\r\n\r\n\x81\x00"))

    def test_switchRefused(self) -> None:
        """
        A filter answering the 101 with a response of its own refuses the
        upgrade: the client gets that response and its connection closes,
        and so does the upstream connection.
        """
        self.useResponseFilter(
            lambda request, response: errorResponse(403, "No.", request.url())
        )
        upstream, transport = self.forward(self.UPGRADE)
        self.reply(upstream, self.SWITCHED)
        status, _, _ = splitResponse(self.client.value())
        self.assertEqual(status, 403)
        self.assertTrue(self.client.disconnecting)
        self.assertTrue(transport.disconnecting)


class ConnectTests(ProxyTestCase):
    """
    CONNECT opens a byte tunnel to an allowed port.
    """

    CONNECT = b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"

    def tunnel(self, extra: bytes = b"") -> tuple[Any, Transport]:
        self.send(self.CONNECT + extra)
        upstream, transport = self.accept()
        self.assertEqual(
            self.client.value(), b"HTTP/1.1 200 Connection established\r\n\r\n"
        )
        self.client.clear()
        return upstream, transport

    def test_portNotAllowed(self) -> None:
        """
        CONNECT to a port outside C{connectPorts} is refused with 403 without
        connecting, and the connection is closed.
        """
        self.send(b"CONNECT example.com:25 HTTP/1.1\r\nHost: example.com:25\r\n\r\n")
        status, _, _ = splitResponse(self.client.value())
        self.assertEqual(status, 403)
        self.assertEqual(self.reactor.tcpClients, [])
        self.assertTrue(self.client.disconnecting)

    def test_connectsToTarget(self) -> None:
        """
        An allowed CONNECT connects to the target host and port, then
        answers C{200 Connection established}.
        """
        self.send(self.CONNECT)
        self.assertEqual(self.target(), ("example.com", 443))
        self.assertEqual(self.client.value(), b"")
        _, transport = self.accept()
        self.assertEqual(
            self.client.value(), b"HTTP/1.1 200 Connection established\r\n\r\n"
        )
        self.assertEqual(transport.value(), b"")

    def test_trailingBytesForwarded(self) -> None:
        """
        Bytes that arrived behind the CONNECT head in the same read are
        written upstream once connected.
        """
        _, transport = self.tunnel(b"\x16\x03\x01early")
        self.assertEqual(transport.value(), b"\x16\x03\x01early")

    def test_trailingBytesDoNotStallClient(self) -> None:
        """
        After a CONNECT that arrived with trailing bytes, the tunnel still
        reads from the client.
        """
        self.tunnel(b"\x16\x03\x01early")
        self.assertEqual(self.client.producerState, "producing")

    def test_bytesBothWays(self) -> None:
        """
        Bytes from either side of a tunnel reach the other unchanged.
        """
        upstream, transport = self.tunnel()
        self.assertEqual(self.client.producerState, "producing")
        self.send(b"GET / HTTP/1.1\r\n\r\n\x00")
        self.assertEqual(transport.value(), b"GET / HTTP/1.1\r\n\r\n\x00")
        self.reply(upstream, b"\x17\x03\x03server")
        self.assertEqual(self.client.value(), b"\x17\x03\x03server")

    def test_clientHalfClosePassedOn(self) -> None:
        """
        The client half-closing the tunnel half-closes the upstream
        connection.
        """
        _, transport = self.tunnel()
        self.proxy.readConnectionLost()
        self.assertTrue(transport.writeClosed)
        self.assertFalse(transport.disconnecting)

    def test_upstreamHalfClosePassedOn(self) -> None:
        """
        The origin half-closing the tunnel half-closes the client connection.
        """
        upstream, _ = self.tunnel()
        upstream.readConnectionLost()
        self.assertTrue(self.client.writeClosed)
        self.assertFalse(self.client.disconnecting)

    def test_clientCloseClosesUpstream(self) -> None:
        """
        The client's connection closing closes the upstream connection.
        """
        _, transport = self.tunnel()
        self.proxy.connectionLost(Failure(error.ConnectionDone()))
        self.assertTrue(transport.disconnecting)

    def test_upstreamCloseClosesClient(self) -> None:
        """
        The upstream connection closing closes the client connection.
        """
        upstream, _ = self.tunnel()
        self.closeUpstream(upstream)
        self.assertTrue(self.client.disconnecting)

    def test_connectRefused(self) -> None:
        """
        A CONNECT whose target refuses the connection is answered 502.
        """
        self.send(self.CONNECT)
        self.failConnect(error.ConnectionRefusedError())
        status, _, _ = splitResponse(self.client.value())
        self.assertEqual(status, 502)


class LoopTests(ProxyTestCase):
    """
    Requests addressed to the proxy itself are answered by it.
    """

    def test_statusPage(self) -> None:
        """
        Origin-form C{GET /} is answered with an HTML status page naming
        webproxy and its version.
        """
        self.send(b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n")
        status, fields, body = splitResponse(self.client.value())
        self.assertEqual(status, 200)
        self.assertTrue(values(fields, b"Content-Type")[0].startswith(b"text/html"))
        self.assertIn(b"webproxy", body)
        self.assertIn(__version__.encode("ascii"), body)
        self.assertEqual(values(fields, b"Content-Length"), [b"%d" % len(body)])
        self.assertEqual(self.reactor.tcpClients, [])

    def test_statusJson(self) -> None:
        """
        Origin-form C{GET /status.json} is answered with the status figures
        as JSON.
        """
        self.send(b"GET /status.json HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n")
        status, fields, body = splitResponse(self.client.value())
        self.assertEqual(status, 200)
        self.assertEqual(values(fields, b"Content-Type"), [b"application/json"])
        figures = json.loads(body)
        self.assertEqual(figures["name"], "webproxy")
        self.assertEqual(figures["version"], __version__)
        self.assertEqual(figures["client_connections"], 1)

    def test_ownAddressIsLoop(self) -> None:
        """
        An absolute-form request naming the proxy's own listening address,
        for anything but its own pages (or with another method), is answered
        508 without connecting.
        """
        for line in (
            b"GET http://127.0.0.1:8080/a",
            b"GET http://127.0.0.1:8080/status.json/x",
            b"POST http://127.0.0.1:8080/",
        ):
            proxy, client = self.connectClient()
            self.send(
                line
                + b" HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nContent-Length: 0\r\n\r\n",
                proxy,
            )
            status, _, _ = splitResponse(client.value())
            self.assertEqual(status, 508, line)
        self.assertEqual(self.reactor.tcpClients, [])

    def test_ownPagesThroughTheProxy(self) -> None:
        """
        The status pages asked for in absolute form, naming the proxy's own
        address (a browser set to use the proxy, a shell with C{http_proxy}
        set), are answered as in origin form, as Squid serves its own pages;
        nothing is forwarded.
        """
        self.send(
            b"GET http://127.0.0.1:8080/status.json?x HTTP/1.1\r\n"
            b"Host: 127.0.0.1:8080\r\n\r\n"
        )
        status, fields, body = splitResponse(self.client.value())
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body)["name"], "webproxy")
        self.client.clear()
        self.send(
            b"HEAD http://127.0.0.1:8080/ HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"
        )
        status, fields, body = splitResponse(self.client.value())
        self.assertEqual((status, body), (200, b""))
        self.assertTrue(values(fields, b"Content-Type")[0].startswith(b"text/html"))
        self.assertEqual(self.reactor.tcpClients, [])

    def test_ownViaIsLoop(self) -> None:
        """
        A request whose Via names this proxy's pseudonym is answered 508
        without connecting.
        """
        self.send(
            b"GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\nVia: 1.0 a, 1.1 testproxy\r\n\r\n"
        )
        status, _, _ = splitResponse(self.client.value())
        self.assertEqual(status, 508)
        self.assertEqual(self.reactor.tcpClients, [])

    def test_otherViaIsNotLoop(self) -> None:
        """
        A Via naming another proxy whose name merely contains this one's is
        forwarded.
        """
        self.send(
            b"GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\nVia: 1.1 testproxy-2\r\n\r\n"
        )
        self.assertEqual(len(self.reactor.tcpClients), 1)


class ConnectLoopTests(ProxyTestCase):
    """
    A CONNECT that leads back to the proxy under a name other than its
    own address is a forwarding loop too.
    """

    def setUp(self) -> None:
        self.start(connectPorts=PortSet(["443", "8080"]))

    def test_otherNameForOwnAddress(self) -> None:
        """
        A CONNECT target spelled so that the name check passes it
        (C{127.1}) but whose connection reaches the address the client
        reached the proxy on is answered 508 instead of a tunnel, and the
        connection to itself is closed.
        """
        self.send(b"CONNECT 127.1:8080 HTTP/1.1\r\nHost: 127.1:8080\r\n\r\n")
        factory = self.reactor.tcpClients[-1][2]
        upstream = factory.buildProtocol(None)
        transport = Transport(peerAddress=PROXY_ADDRESS)
        upstream.makeConnection(transport)
        status, fields, _ = splitResponse(self.client.value())
        self.assertEqual(status, 508)
        self.assertTrue(transport.disconnecting)
        self.assertTrue(self.client.disconnecting)

    def test_clientFromOwnUpstream(self) -> None:
        """
        A client connection that comes from one of the proxy's own
        upstream connections (the proxy connected to itself, here by an
        IPv4-mapped IPv6 address) asking for the proxy's port again is
        answered 508 without connecting: loops do not nest.  The proxy
        accepts that connection before its connecting side is told it is
        connected, as on loopback, so the check is made at the request.
        """
        self.send(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
        proxy = self.factory.buildProtocol(PROXY_ADDRESS)
        client = Transport(
            hostAddress=PROXY_ADDRESS,
            peerAddress=IPv4Address("TCP", "127.0.0.1", 50000),
        )
        proxy.makeConnection(client)
        factory = self.reactor.tcpClients[-1][2]
        upstream = factory.buildProtocol(None)
        upstream.makeConnection(
            Transport(
                hostAddress=IPv6Address("TCP", "::ffff:127.0.0.1", 50000),
                peerAddress=ORIGIN_ADDRESS,
            )
        )
        connects = len(self.reactor.tcpClients)
        self.send(
            b"CONNECT 2130706433:8080 HTTP/1.1\r\nHost: 2130706433:8080\r\n\r\n",
            proxy,
        )
        status, _, _ = splitResponse(client.value())
        self.assertEqual(status, 508)
        self.assertEqual(len(self.reactor.tcpClients), connects)

    def test_ownUpstreamClosedForgotten(self) -> None:
        """
        Once the proxy's upstream connections from an address are closed, a
        client connecting from that address (a port reused) is not taken
        for the proxy itself; while one of two sharing it (to different
        destinations) is open, the address is still the proxy's.
        """
        ends = self.factory.pool.ownEnds
        local = IPv4Address("TCP", "127.0.0.1", 50001)
        upstreams = []
        for host in (b"a.example", b"b.example"):
            proxy, _ = self.connectClient()
            self.send(
                b"GET http://%s/ HTTP/1.1\r\nHost: %s\r\n\r\n" % (host, host), proxy
            )
            upstream = self.reactor.tcpClients[-1][2].buildProtocol(None)
            upstream.makeConnection(
                Transport(hostAddress=local, peerAddress=ORIGIN_ADDRESS)
            )
            upstreams.append(upstream)
        self.assertEqual(ends, {("127.0.0.1", 50001): 2})
        self.closeUpstream(upstreams[0])
        self.assertEqual(ends, {("127.0.0.1", 50001): 1})
        self.closeUpstream(upstreams[1])
        self.assertEqual(ends, {})


class ErrorTests(ProxyTestCase):
    """
    Malformed requests, limits and upstream failures get the right status.
    """

    def assertErrorPage(self, status: int, closed: bool = True) -> None:
        code, fields, body = splitResponse(self.client.value())
        self.assertEqual(code, status)
        self.assertTrue(values(fields, b"Content-Type")[0].startswith(b"text/html"))
        self.assertEqual(values(fields, b"Content-Length"), [b"%d" % len(body)])
        if closed:
            self.assertEqual(values(fields, b"Connection"), [b"close"])
            self.assertTrue(self.client.disconnecting)

    def test_malformedHeader(self) -> None:
        """
        A header line with whitespace before the colon is answered 400 with
        an HTML page and the connection is closed, without connecting.
        """
        self.send(
            b"GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\nBad : x\r\n\r\n"
        )
        self.assertErrorPage(400)
        self.assertEqual(self.reactor.tcpClients, [])

    def test_missingHost(self) -> None:
        """
        An HTTP/1.1 request without Host is answered 400.
        """
        self.send(b"GET http://example.com/ HTTP/1.1\r\n\r\n")
        self.assertErrorPage(400)

    def test_contentLengthAndTransferEncoding(self) -> None:
        """
        A request with both Content-Length and Transfer-Encoding is answered
        400 without connecting (RFC 9112 section 6.3).
        """
        self.send(
            b"POST http://example.com/ HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        )
        self.assertErrorPage(400)
        self.assertEqual(self.reactor.tcpClients, [])

    def test_requestLineTooLong(self) -> None:
        """
        A request line longer than C{maxRequestLine} is answered 414.
        """
        self.start(maxRequestLine=100)
        self.send(
            b"GET http://example.com/"
            + b"a" * 200
            + b" HTTP/1.1\r\nHost: example.com\r\n\r\n"
        )
        self.assertErrorPage(414)
        self.assertEqual(self.reactor.tcpClients, [])

    def test_tooManyHeaders(self) -> None:
        """
        More header fields than C{maxHeaders} are answered 431.
        """
        self.start(maxHeaders=5)
        fields = b"".join(b"X-%d: %d\r\n" % (i, i) for i in range(6))
        self.send(
            b"GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n"
            + fields
            + b"\r\n"
        )
        self.assertErrorPage(431)
        self.assertEqual(self.reactor.tcpClients, [])

    def test_headerSectionTooLarge(self) -> None:
        """
        A header section larger than C{maxHeaderBytes} is answered 431.
        """
        self.start(maxHeaderBytes=200)
        self.send(
            b"GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\nX-Big: "
            + b"b" * 300
            + b"\r\n\r\n"
        )
        self.assertErrorPage(431)

    def test_contentLengthOverLimit(self) -> None:
        """
        A Content-Length above C{maxBodyBytes} is answered 413 without
        connecting, and the connection is closed.
        """
        self.start(maxBodyBytes=10)
        self.send(
            b"POST http://example.com/ HTTP/1.1\r\nHost: example.com\r\nContent-Length: 11\r\n\r\n"
        )
        self.assertErrorPage(413)
        self.assertEqual(self.reactor.tcpClients, [])

    def test_chunkedBodyOverLimit(self) -> None:
        """
        A chunked body growing past C{maxBodyBytes} is answered 413 (too
        large, not malformed) and the connection is closed.
        """
        self.start(maxBodyBytes=10)
        self.send(
            b"POST http://example.com/ HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"b\r\nhello world\r\n0\r\n\r\n"
        )
        self.assertErrorPage(413)
        body = splitResponse(self.client.value())[2]
        self.assertIn(b"Request too large: request body larger than the limit", body)

    def test_bodyAtLimitForwarded(self) -> None:
        """
        A body of exactly C{maxBodyBytes} is forwarded.
        """
        self.start(maxBodyBytes=5)
        _, transport = self.forward(
            b"POST http://example.com/ HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5\r\n\r\nhello"
        )
        self.assertTrue(transport.value().endswith(b"\r\n\r\nhello"))

    def test_connectRefused(self) -> None:
        """
        An origin refusing the connection is answered 502.
        """
        self.send(GET)
        self.failConnect(error.ConnectionRefusedError())
        self.assertErrorPage(502, closed=False)

    def test_dnsFailure(self) -> None:
        """
        A target host name that does not resolve is answered 502.
        """
        self.send(GET)
        self.failConnect(error.DNSLookupError("example.com"))
        self.assertErrorPage(502, closed=False)

    def test_connectTimeout(self) -> None:
        """
        A connection attempt that times out is answered 504.
        """
        self.send(GET)
        self.failConnect(error.TimeoutError())
        self.assertErrorPage(504, closed=False)

    def test_connectFailureKeepsClient(self) -> None:
        """
        After a failed connect the client connection carries the next
        request.
        """
        self.send(GET)
        self.failConnect(error.ConnectionRefusedError())
        self.client.clear()
        self.send(GET)
        self.assertEqual(len(self.reactor.tcpClients), 2)
        upstream, _ = self.accept()
        self.reply(upstream, OK)
        self.assertEqual(self.client.value(), OK_DOWN)

    def test_malformedResponse(self) -> None:
        """
        A malformed status line is answered 502 and the upstream connection
        is closed, not pooled.
        """
        upstream, transport = self.forward(GET)
        self.reply(upstream, b"HTTP/1.1 abc\r\nContent-Length: 0\r\n\r\n")
        self.assertErrorPage(502, closed=False)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.factory.pool.idleCount(), 0)

    def test_ambiguousResponseFraming(self) -> None:
        """
        A response with both Content-Length and Transfer-Encoding is answered
        502 and the upstream connection is closed.
        """
        upstream, transport = self.forward(GET)
        self.reply(
            upstream,
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        )
        self.assertErrorPage(502, closed=False)
        self.assertTrue(transport.disconnecting)

    def test_upstreamClosesBeforeResponse(self) -> None:
        """
        A new upstream connection closing before any response is answered
        502.
        """
        upstream, _ = self.forward(GET)
        self.closeUpstream(upstream)
        self.assertErrorPage(502, closed=False)
        self.assertIn(
            b"No valid response came from the upstream server: connection closed"
            b" before a response.",
            self.client.value(),
        )

    def test_upstreamResetBeforeResponse(self) -> None:
        """
        A reset before any response says so (it said "sent an invalid
        response").
        """
        upstream, _ = self.forward(GET)
        upstream.connectionLost(Failure(error.ConnectionLost()))
        self.assertErrorPage(502, closed=False)
        self.assertIn(
            b"No valid response came from the upstream server: the upstream"
            b" connection was lost before any response (",
            self.client.value(),
        )

    def test_upstreamClosesMidHead(self) -> None:
        """
        A close in the middle of a response head is a response cut short.
        """
        upstream, _ = self.forward(GET)
        self.reply(upstream, b"HTTP/1.1 200 OK\r\nContent-Le")
        self.closeUpstream(upstream)
        self.assertErrorPage(502, closed=False)
        self.assertIn(
            b"No valid response came from the upstream server: response head cut"
            b" short by the connection closing.",
            self.client.value(),
        )

    def test_upstreamClosesMidBody(self) -> None:
        """
        An upstream closing after the response head went out cuts the client
        connection short.
        """
        upstream, _ = self.forward(GET)
        self.reply(upstream, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello")
        self.assertFalse(self.client.disconnecting)
        self.closeUpstream(upstream)
        self.assertEqual(
            self.client.value(),
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n" + VIA + b"\r\nhello",
        )
        self.assertTrue(self.client.disconnecting)


class ErrorBytewiseTests(ErrorTests):
    """
    L{ErrorTests} with every byte arriving in a C{dataReceived} of its own.
    """

    bytewise = True


class SameReadTests(ProxyTestCase):
    """
    What happens when several things arrive in one C{dataReceived}.
    """

    def test_malformedResponseBodyInTheHeadsRead(self) -> None:
        """
        A response whose body breaks in the read that brought its head gets
        a 502 page: nothing was out yet (the client used to get an empty
        reply).  Once the head is out, the connection is cut instead.
        """
        upstream, transport = self.forward(GET)
        self.reply(
            upstream,
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        )
        code, fields, body = splitResponse(self.client.value())
        self.assertEqual(code, 502)
        self.assertEqual(values(fields, b"Connection"), [b"close"])
        self.assertIn(b"chunk", body)
        self.assertTrue(self.client.disconnecting)
        self.assertTrue(transport.disconnecting)

        self.start()
        upstream, transport = self.forward(GET)
        self.reply(upstream, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        self.reply(upstream, b"zz\r\n")
        self.assertTrue(self.client.value().startswith(b"HTTP/1.1 200 OK\r\n"))
        self.assertTrue(self.client.disconnecting)

    def test_malformedChunkNeverReachesUpstream(self) -> None:
        """
        A chunked request whose invalid chunk size arrives in the same read as
        its head is answered 400 and nothing is written upstream.
        """
        self.send(
            b"POST http://example.com/ HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n"
        )
        status, fields, _ = splitResponse(self.client.value())
        self.assertEqual(status, 400)
        self.assertTrue(values(fields, b"Content-Type")[0].startswith(b"text/html"))
        self.assertTrue(self.client.disconnecting)
        if self.reactor.tcpClients:
            _, transport = self.accept()
            self.assertEqual(transport.value(), b"")
            self.assertTrue(transport.disconnecting)

    def test_malformedSecondRequestAfterFirst(self) -> None:
        """
        A malformed request pipelined behind a good one is answered 400 after
        the first response.
        """
        upstream, _ = self.forward(GET + b"GET http://example.com/ HTTP/1.1\r\n\r\n")
        self.reply(upstream, OK)
        self.reactor.advance(0)
        self.assertTrue(self.client.value().startswith(OK_DOWN + b"HTTP/1.1 400 "))
        self.assertTrue(self.client.disconnecting)


class WholeMessageTests(ProxyTestCase):
    """
    A request or response that arrives whole in one read takes a shortcut
    (L{RequestParser.wholeRequest}, L{ResponseParser.wholeResponse},
    L{ProxyProtocol.relayWholeResponse}); what the proxy then sends either
    way, and whether it keeps the connections, is what the event path does
    with the same bytes in pieces.
    """

    def exchangeTwice(self, request: bytes, response: bytes, pieces: bool) -> Any:
        """
        Proxy C{request} and C{response} twice on one client connection,
        each in one read or in two.

        @return: everything observable: bytes sent upstream and to the
            client, connections opened, which ones are closing.
        """
        self.start()
        observed: list[Any] = []
        for _ in range(2):
            if self.client.disconnecting:
                break
            if pieces:
                self.send(request[:7])
                self.send(request[7:])
            else:
                self.send(request)
            if len(self.reactor.tcpClients) > len(observed) // 2:
                upstream, transport = self.accept()
            sent = transport.value()
            transport.clear()
            if pieces:
                self.reply(upstream, response[:12])
                self.reply(upstream, response[12:])
            else:
                self.reply(upstream, response)
            observed += [sent, transport.disconnecting]
        return (
            observed,
            self.client.value(),
            self.client.disconnecting,
            len(self.reactor.tcpClients),
        )

    @settings(max_examples=300, deadline=None)
    @given(
        method=st.sampled_from([b"GET", b"HEAD", b"POST"]),
        requestFields=st.lists(
            st.sampled_from(
                [
                    b"User-Agent: curl/7.88.1",
                    b"Connection: close",
                    b"Proxy-Connection: keep-alive",
                    b"connection: Keep-Alive",
                    b"Via: 1.1 other",
                    b"Content-Length: 0",
                ]
            ),
            max_size=2,
        ),
        status=st.sampled_from([b"200 OK", b"404 Not Found", b"204 No Content"]),
        responseFields=st.lists(
            st.sampled_from(
                [
                    b"Connection: keep-alive",
                    b"Connection: close",
                    b"Connection: x-a",
                    b"X-A: 1",
                    b"Keep-Alive: timeout=5",
                    b"Content-Type: text/plain",
                ]
            ),
            max_size=3,
        ),
    )
    def test_sameAsInPieces(
        self,
        method: bytes,
        requestFields: list[bytes],
        status: bytes,
        responseFields: list[bytes],
    ) -> None:
        """
        Whole or in pieces, an exchange puts the same bytes on every
        connection and leaves the same connections open.
        """
        request = method + b" http://example.com/a HTTP/1.1\r\nHost: example.com\r\n"
        request += b"".join(f + b"\r\n" for f in requestFields) + b"\r\n"
        body = b"" if status.startswith(b"204") else b"hello"
        response = b"HTTP/1.1 " + status + b"\r\n"
        response += b"".join(f + b"\r\n" for f in responseFields)
        response += b"Content-Length: %d\r\n\r\n" % (len(body),) + body
        self.assertEqual(
            self.exchangeTwice(request, response, False),
            self.exchangeTwice(request, response, True),
        )

    def test_shortcutsTaken(self) -> None:
        """
        A plain GET and an nginx-like answer take the shortcuts (otherwise
        the test above proves nothing).
        """
        taken: list[str] = []

        def spy(name: str, original: Any) -> Any:
            def wrapper(*args: Any) -> Any:
                result = original(*args)
                if result:
                    taken.append(name)
                return result

            return wrapper

        for name, owner, method in [
            ("request", RequestParser, "wholeRequest"),
            ("response", ResponseParser, "wholeResponse"),
            ("relay", ProxyProtocol, "relayWholeResponse"),
        ]:
            self.patch(owner, method, spy(name, getattr(owner, method)))
        upstream, transport = self.forward(GET)
        self.assertEqual(transport.value(), GET_UP)
        self.reply(
            upstream,
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\nhello",
        )
        self.assertEqual(self.client.value(), OK_DOWN)
        self.assertEqual(taken, ["request", "response", "relay"])
        self.assertFalse(transport.disconnecting)


class RecordingLog:
    """
    An access log that keeps the record made from each exchange it is
    given, as the real writer makes it when it formats the exchange.
    """

    logsContentType = True
    logsRequestHeaders = True

    def __init__(self) -> None:
        self.records: list[AccessRecord] = []
        self.exchanges: list[Exchange] = []

    def logExchange(self, exchange: Exchange) -> None:
        self.exchanges.append(exchange)
        self.records.append(recordFromExchange(exchange, self.logsRequestHeaders))


class AccessRecordTests(ProxyTestCase):
    """
    What the protocol tells the access log about each exchange.
    """

    def exchangeWithFields(self, log: RecordingLog) -> Any:
        """
        Log to C{log}, and proxy a GET with a User-Agent and a Referer
        answered with a Content-Type.

        @return: the upstream protocol, still connected.
        """
        self.factory.accessLog = log
        upstream, _ = self.forward(
            b"GET http://example.com/a HTTP/1.1\r\nHost: example.com\r\n"
            b"User-Agent: ua/1\r\nReferer: http://example.com/\r\n\r\n"
        )
        self.reply(
            upstream,
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello",
        )
        return upstream

    def test_connectPortRefusalLoggedAsAccessDecision(self) -> None:
        """
        A CONNECT refused for its port is logged as the access policy's
        decision, naming the port: Squid's format calls it C{TCP_DENIED/403},
        as Squid does.
        """
        log = RecordingLog()
        self.factory.accessLog = log
        self.send(b"CONNECT example.com:25 HTTP/1.1\r\nHost: example.com:25\r\n\r\n")
        [record] = log.records
        self.assertEqual(record.status, 403)
        self.assertEqual(record.filterName, "access")
        self.assertEqual(record.filterReason, "port 25 is not in connect_ports")
        self.assertIn(" TCP_DENIED/403 ", formatSquid(record))

    def test_failedConnectLogsAddressTried(self) -> None:
        """
        A refused or timed-out connection to an IP address logs that address
        as the upstream (Squid: C{TCP_MISS/502 ... HIER_DIRECT/ip}); to a
        host name, whose addresses the failure does not tell, none.
        """
        for target, failure, status, upstream in [
            ("127.0.0.1:81", error.ConnectionRefusedError(), 502, ("127.0.0.1", 81)),
            ("[::1]:82", error.TimeoutError(), 504, ("::1", 82)),
            ("example.com", error.ConnectionRefusedError(), 502, (None, None)),
        ]:
            self.start()
            log = RecordingLog()
            self.factory.accessLog = log
            self.send(
                b"GET http://%s/ HTTP/1.1\r\nHost: %s\r\n\r\n"
                % (target.encode(), target.encode())
            )
            self.failConnect(failure)
            [record] = log.records
            self.assertEqual(record.status, status)
            self.assertEqual((record.upstreamHost, record.upstreamPort), upstream)
            line = formatSquid(record)
            if upstream[0] is None:
                self.assertIn(" NONE_NONE/502 ", line)
                self.assertIn(" HIER_NONE/- ", line)
            else:
                self.assertIn(f" TCP_MISS/{status} ", line)
                self.assertIn(f" HIER_DIRECT/{upstream[0]} ", line)

    def test_fieldsOfEachExchange(self) -> None:
        """
        Each exchange on a keep-alive connection is logged with its own
        fields: nothing carries over from the previous one.
        """
        log = RecordingLog()
        upstream = self.exchangeWithFields(log)
        self.send(b"HEAD http://example.com/b HTTP/1.1\r\nHost: example.com\r\n\r\n")
        self.reply(upstream, b"HTTP/1.1 404 Not Found\r\nContent-Length: 5\r\n\r\n")
        first, second = log.records
        self.assertEqual(
            (
                first.method,
                first.target,
                first.status,
                first.userAgent,
                first.referer,
                first.contentType,
                first.upstreamHost,
                first.upstreamPort,
            ),
            (
                "GET",
                "http://example.com/a",
                200,
                "ua/1",
                "http://example.com/",
                "text/plain",
                "192.0.2.10",
                80,
            ),
        )
        self.assertEqual(
            (
                second.method,
                second.target,
                second.status,
                second.userAgent,
                second.referer,
                second.contentType,
                second.upstreamHost,
            ),
            ("HEAD", "http://example.com/b", 404, None, None, None, "192.0.2.10"),
        )
        self.assertEqual(
            (first.clientHost, first.clientPort, second.clientPort),
            ("127.0.0.1", 40000, 40000),
        )
        self.assertEqual(second.bytesOut, len(self.client.value()) - first.bytesOut)

    def test_requestFieldsAsTheClientSentThem(self) -> None:
        """
        The user agent and referer logged are the client's, not what the
        filters made of them: with the privacy filter replacing the one
        and removing the other, the origin gets the filtered head and the
        log the client's values.
        """
        from proxyapp.filters import privacy

        self.factory.chain = FilterChain(
            [
                EnabledFilter(
                    "privacy",
                    privacy.makeFilter(
                        {"replace": {"User-Agent": "Mozilla/5.0"}, "referer": "remove"}
                    ),
                )
            ]
        )
        log = RecordingLog()
        upstream = self.exchangeWithFields(log)
        sent = upstream.transport.value()
        self.assertIn(b"\r\nUser-Agent: Mozilla/5.0\r\n", sent)
        self.assertNotIn(b"ua/1", sent)
        self.assertNotIn(b"Referer", sent)
        [record] = log.records
        self.assertEqual(
            (record.userAgent, record.referer), ("ua/1", "http://example.com/")
        )
        # The writer's batch formatter (which reads the exchange) as well.
        [line] = accesslog._combinedLines(log.exchanges)
        self.assertIn(' "http://example.com/" "ua/1" ', line)

    def test_onlyWhatTheFormatPrints(self) -> None:
        """
        Fields the log's format does not print are not looked up: no
        content type for the combined format, no user agent or referer for
        Squid's.
        """
        log = RecordingLog()
        log.logsContentType = log.logsRequestHeaders = False
        self.exchangeWithFields(log)
        [record] = log.records
        self.assertEqual(
            (record.status, record.userAgent, record.referer, record.contentType),
            (200, None, None, None),
        )

    def test_unparsedHead(self) -> None:
        """
        A head that could not be parsed is logged as a request that never
        was (Squid's C{NONE error:invalid-request}, combined's C{"-"}), not
        as a request with method, target and version C{-}.
        """
        log = RecordingLog()
        self.factory.accessLog = log
        self.send(b"GARBAGE\r\n\r\n")
        [record] = log.records
        self.assertEqual(
            (record.status, record.method, record.target, record.version),
            (400, "", "", ""),
        )
        self.assertEqual(
            formatSquid(record).split()[5:7], ["NONE", "error:invalid-request"]
        )


class HeldMemoryTests(ProxyTestCase):
    """
    What a connection no longer needs is not kept alive: an idle pooled
    or a closed upstream connection's last read (up to 1 MiB each), a
    closed client connection.
    """

    def test_pooledConnectionHoldsNoRead(self) -> None:
        """
        An upstream connection back in the pool does not hold the last
        read of the response it relayed.
        """
        upstream, _ = self.forward(GET)
        body = b"b" * 20000
        alone = sys.getrefcount(body)
        self.reply(upstream, b"HTTP/1.1 200 OK\r\nContent-Length: 20000\r\n\r\n")
        self.reply(upstream, body)
        self.assertEqual(self.factory.pool.idleCount(), 1)
        self.assertEqual(sys.getrefcount(body), alone)

    def test_keepAliveClientHoldsNoRead(self) -> None:
        """
        A keep-alive client connection waiting for its next request does
        not hold the last read of its upload.
        """
        upstream, _ = self.forward(
            b"POST http://example.com/up HTTP/1.1\r\nHost: example.com\r\n"
            b"Content-Length: 20000\r\n\r\n"
        )
        body = b"u" * 20000
        alone = sys.getrefcount(body)
        self.send(body)
        self.reply(upstream, OK)
        self.assertEqual(splitResponse(self.client.value())[0], 200)
        self.assertFalse(self.client.disconnecting)
        self.assertEqual(sys.getrefcount(body), alone)

    def test_closedUpstreamHoldsNoRead(self) -> None:
        """
        An upstream connection lost in the middle of a body holds nothing
        it read: Twisted's connector keeps it in a reference cycle until
        the garbage collector's next full pass.
        """
        upstream, _ = self.forward(GET)
        # Ending in part of a chunk-size line, which the parser keeps.
        piece = b"4e20\r\n" + b"p" * 20000 + b"\r\n1"
        alone = sys.getrefcount(piece)
        self.reply(upstream, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        self.reply(upstream, piece)
        self.assertGreater(sys.getrefcount(piece), alone)
        upstream.connectionLost(Failure(error.ConnectionLost()))
        self.assertTrue(self.client.disconnecting)
        self.assertEqual(sys.getrefcount(piece), alone)

    def test_closedClientFreed(self) -> None:
        """
        A client connection that closed before its first head deadline is
        freed at once: the factory's watch over new connections does not
        keep it (and its transport's buffers) for C{header_timeout}.
        """
        proxy, transport = self.connectClient()
        watched = weakref.ref(proxy)
        proxy.connectionLost(Failure(error.ConnectionDone()))
        del proxy, transport
        gc.collect()
        self.assertIsNone(watched())
        # The watch still acts on the connections that stay.
        self.reactor.advance(self.settings.headerTimeout)
        self.assertTrue(self.client.disconnecting)


class TimeoutTests(ProxyTestCase):
    """
    Header, idle and upstream timeouts, driven by the memory clock.
    """

    def test_headerTimeout(self) -> None:
        """
        A connection that sent half a request head is closed after
        C{headerTimeout} seconds.
        """
        self.start(headerTimeout=5)
        self.send(b"GET http://example.com/ HTTP/1.1\r\nHo")
        self.reactor.advance(4.9)
        self.assertFalse(self.client.disconnecting)
        self.reactor.advance(0.1)
        self.assertTrue(self.client.disconnecting)

    def test_headerTimeoutAnswered408(self) -> None:
        """
        A connection that sent part of a head when the header timeout runs
        out gets a 408 saying so, and the exchange is logged; one that sent
        nothing gets no answer (there was no request).
        """
        self.start(headerTimeout=5)
        log = RecordingLog()
        self.factory.accessLog = log
        silent = self.connectClient()[1]
        self.send(b"GET http://example.com/ HTTP/1.1\r\nHo")
        self.reactor.advance(5)
        status, _, body = splitResponse(self.client.value())
        self.assertEqual(status, 408)
        self.assertIn(b"did not arrive within 5 seconds", body)
        self.assertEqual([r.status for r in log.records], [408])
        self.assertEqual(silent.value(), b"")
        self.assertTrue(silent.disconnecting)

    def test_headerTimeoutMessageSingular(self) -> None:
        """
        A timeout of one second is said as "1 second", not "1 seconds".
        """
        self.start(headerTimeout=1)
        self.send(b"GET http://example.com/ HTTP/1.1\r\nHo")
        self.reactor.advance(1)
        status, _, body = splitResponse(self.client.value())
        self.assertEqual(status, 408)
        self.assertIn(b"did not arrive within 1 second.", body)

    def test_silentConnectionsClosed(self) -> None:
        """
        Connections that never send anything are closed after
        C{headerTimeout} seconds, all of them through one timer of the
        factory rather than one per connection.
        """
        self.start(headerTimeout=5)
        others = [self.connectClient()[1] for _ in range(3)]
        self.assertEqual(len(self.reactor.getDelayedCalls()), 1)
        self.reactor.advance(4.9)
        self.assertFalse(any(t.disconnecting for t in [self.client] + others))
        self.reactor.advance(0.1)
        self.assertTrue(all(t.disconnecting for t in [self.client] + others))

    def test_idleTimeout(self) -> None:
        """
        A keep-alive connection idle after a response is closed after
        C{idleTimeout} seconds.
        """
        self.start(idleTimeout=10, poolIdleTimeout=1000)
        upstream, _ = self.forward(GET)
        self.reply(upstream, OK)
        self.reactor.advance(9.9)
        self.assertFalse(self.client.disconnecting)
        self.reactor.advance(0.1)
        self.assertTrue(self.client.disconnecting)

    def test_idleTimeoutRestartsWithNextRequest(self) -> None:
        """
        A request arriving on an idle connection keeps it from being closed
        by the idle timeout while the exchange is in flight.
        """
        self.start(
            idleTimeout=10, headerTimeout=100, upstreamTimeout=100, poolIdleTimeout=1000
        )
        upstream, _ = self.forward(GET)
        self.reply(upstream, OK)
        self.reactor.advance(5)
        self.send(GET)
        self.reactor.advance(20)
        self.assertFalse(self.client.disconnecting)

    def test_upstreamTimeout(self) -> None:
        """
        An upstream that sends no response head within C{upstreamTimeout}
        seconds gets the client a 504, and its connection is closed.
        """
        self.start(upstreamTimeout=7)
        _, transport = self.forward(GET)
        self.reactor.advance(6.9)
        self.assertEqual(self.client.value(), b"")
        self.reactor.advance(0.1)
        status, _, _ = splitResponse(self.client.value())
        self.assertEqual(status, 504)
        self.assertTrue(transport.disconnecting)

    def test_upstreamTimeoutNotAfterHead(self) -> None:
        """
        Once the response head arrived the upstream timeout no longer
        applies.
        """
        self.start(upstreamTimeout=7, idleTimeout=1000)
        upstream, _ = self.forward(GET)
        self.reply(upstream, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello")
        self.reactor.advance(8)
        self.assertFalse(self.client.disconnecting)
        self.assertNotIn(b"504", self.client.value())


@implementer(IBodyFilter)
class _Withholding:
    """
    A body filter that sends nothing of the body until it is complete.
    """

    def bodyTransform(self, request: Any, response: Any) -> Any:
        held: list[bytes] = []

        class Transform:
            def transform(self, chunk: bytes) -> bytes:
                held.append(chunk)
                return b""

            def finish(self) -> bytes:
                return b"".join(held)

        return Transform()


class _Gathering(Transport):
    """
    A client transport that takes views in C{writeSequence}, as a fast TCP
    transport does, and records the type of every piece written.
    """

    def __init__(self, hostAddress: Any = None, peerAddress: Any = None) -> None:
        Transport.__init__(self, hostAddress, peerAddress)
        self.pieces: list[type] = []

    def write(self, data: bytes) -> None:
        self.pieces.append(type(data))
        Transport.write(self, data)

    def writeSequence(self, data: Any) -> None:
        self.pieces.extend(map(type, data))
        Transport.writeSequence(self, data)


class LargePieceTests(ProxyTestCase):
    """
    A large body piece that shares a read with the response head comes from
    the parser as a view of the read: it reaches a fast transport unjoined
    and uncopied, anything else as C{bytes}, and filters as C{bytes}.
    """

    BODY = bytes(range(256)) * 160
    HEAD = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(BODY)

    def gathering(self) -> _Gathering:
        self.patch(protocol, "gathers", lambda transport: type(transport) is _Gathering)
        self.proxy = self.factory.buildProtocol(PROXY_ADDRESS)
        client = _Gathering(hostAddress=PROXY_ADDRESS, peerAddress=CLIENT_ADDRESS)
        self.proxy.makeConnection(client)
        self.client = client
        return client

    def assertRelayed(self) -> bytes:
        _, fields, body = splitResponse(self.client.value())
        if values(fields, b"transfer-encoding") == [b"chunked"]:
            body, _ = dechunk(body)
        self.assertEqual(body, self.BODY)
        self.assertEqual(self.factory.stats.bytesToClients, len(self.client.value()))
        return body

    def test_streamed(self) -> None:
        """
        In two reads (the general path), the first piece is a view handed
        to a gathering transport with the head in one C{writeSequence}.
        """
        client = self.gathering()
        upstream, _ = self.forward(GET)
        self.reply(upstream, self.HEAD + self.BODY[:20000])
        self.assertIn(memoryview, client.pieces)
        self.reply(upstream, self.BODY[20000:])
        self.assertRelayed()

    def test_whole(self) -> None:
        """
        In one read (the whole-response shortcut), the body is a view too.
        """
        client = self.gathering()
        upstream, _ = self.forward(GET)
        self.reply(upstream, self.HEAD + self.BODY)
        self.assertEqual(client.pieces, [bytes, bytes, memoryview])
        self.assertRelayed()

    def test_joinedForOtherTransports(self) -> None:
        """
        A transport that does not gather gets C{bytes}, joined: a
        L{StringTransport} refuses anything else.
        """
        for reads in (
            [self.HEAD + self.BODY],
            [self.HEAD + self.BODY[:20000], self.BODY[20000:]],
        ):
            self.start()
            upstream, _ = self.forward(GET)
            for data in reads:
                self.reply(upstream, data)
            self.assertRelayed()

    def test_filtersGetBytes(self) -> None:
        """
        Body filters, and response filters answering later (whose body
        events wait in a list), get C{bytes}.
        """
        seen: list[type] = []
        later: list[Deferred] = []

        @implementer(IBodyFilter)
        class Record:
            def bodyTransform(self, request: Any, response: Any) -> Any:
                class Transform:
                    def transform(self, chunk: Any) -> Any:
                        seen.append(type(chunk))
                        return chunk

                    def finish(self) -> bytes:
                        return b""

                return Transform()

        @implementer(IResponseFilter)
        class Later:
            def filterResponse(self, request: Any, response: Any) -> Any:
                d: Deferred = Deferred()
                later.append(d)
                d.addCallback(lambda _: response)
                return d

        for filters in ([Record()], [Later(), Record()]):
            seen.clear()
            self.start()
            self.factory.chain = FilterChain(
                [EnabledFilter("f%d" % i, f) for i, f in enumerate(filters)]
            )
            upstream, _ = self.forward(GET)
            self.reply(upstream, self.HEAD + self.BODY[:20000])
            self.reply(upstream, self.BODY[20000:])
            while later:
                later.pop().callback(None)
            self.assertRelayed()
            self.assertEqual(seen, [bytes, bytes])


class BulkReadTests(ProxyTestCase):
    """
    After each read of a streamed response, a fast upstream transport is
    told how much of a Content-Length body is still to come (see
    L{proxyapp.fastio.BULK_READ}).
    """

    def expecting(self) -> tuple[Any, list[tuple[int, int]]]:
        upstream, transport = self.forward(GET)
        upstream._wrappedProtocol.fast = True
        calls: list[tuple[int, int]] = []
        transport.expect = lambda received, outstanding: calls.append(  # type: ignore[attr-defined]
            (received, outstanding)
        )
        return upstream, calls

    def test_lengthDelimited(self) -> None:
        """
        Each read reports its size and what of the body is left, down to 0
        at its end.
        """
        upstream, calls = self.expecting()
        head = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n"
        self.reply(upstream, head + b"x" * 30000)
        self.reply(upstream, b"x" * 50000)
        self.reply(upstream, b"x" * 20000)
        self.assertEqual(
            calls, [(len(head) + 30000, 70000), (50000, 20000), (20000, 0)]
        )
        _, _, body = splitResponse(self.client.value())
        self.assertEqual(body, b"x" * 100000)

    def test_pausedReadsExpectNothing(self) -> None:
        """
        While reading from the upstream is paused (a slow client), reads
        report nothing to come, so the transport does not read in bulk.
        """
        upstream, calls = self.expecting()
        head = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n"
        self.reply(upstream, head + b"x" * 30000)
        upstream._wrappedProtocol.gate.pause(BACKPRESSURE)
        self.reply(upstream, b"x" * 50000)
        upstream._wrappedProtocol.gate.resume(BACKPRESSURE)
        self.reply(upstream, b"x" * 10000)
        self.assertEqual(
            calls, [(len(head) + 30000, 70000), (50000, 0), (10000, 10000)]
        )

    def test_chunked(self) -> None:
        """
        A chunked body has nothing of a known length to come.
        """
        upstream, calls = self.expecting()
        self.reply(
            upstream,
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"ffff\r\n" + b"x" * 1000,
        )
        self.assertTrue(calls)
        self.assertEqual([call for call in calls if call[1]], [])

    def test_whole(self) -> None:
        """
        A response that arrives whole in one read has nothing to come.
        """
        upstream, calls = self.expecting()
        self.reply(upstream, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nab")
        self.assertEqual([call for call in calls if call[1]], [])


class StallTests(ProxyTestCase):
    """
    A request body, response body or tunnel that stops moving for
    C{readTimeout} seconds is cut off.
    """

    POST = (
        b"POST http://example.com/up HTTP/1.1\r\nHost: example.com\r\n"
        b"Content-Length: 10\r\n\r\nabc"
    )
    PARTIAL = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nsome"

    def start(self, **overrides: Any) -> None:
        overrides.setdefault("idleTimeout", 1000)
        overrides.setdefault("upstreamTimeout", 1000)
        overrides.setdefault("poolIdleTimeout", 1000)
        super().start(**overrides)

    def moveThenStop(
        self, move: Callable[[int], object], times: int, flag: str = "disconnecting"
    ) -> None:
        """
        Call C{move} every 7 s, C{times} times (with readTimeout=8 the
        client transport's C{flag} stays false), then stop: the client is
        cut off no sooner than 8 s and no later than 10 s after the last
        move.
        """
        for i in range(times):
            self.wait(7)
            move(i)
        self.assertFalse(getattr(self.client, flag))
        self.wait(7.75)
        self.assertFalse(getattr(self.client, flag))
        self.wait(2.25)
        self.assertTrue(self.client.disconnected)

    def wait(self, seconds: float) -> None:
        """
        Let C{seconds} pass in steps of a quarter second, so that timers run
        on time as on a real reactor (one big C{advance} runs them late).
        """
        self.reactor.pump([0.25] * round(seconds * 4))

    def test_stalledResponseCutOff(self) -> None:
        """
        A response body that stops arriving is cut off with resets on both
        connections no sooner than C{readTimeout} seconds after its last
        byte, and no later than a quarter of that after.
        """
        self.start(readTimeout=8)
        upstream, transport = self.forward(GET)
        self.reply(upstream, self.PARTIAL)
        self.wait(7.75)
        self.assertFalse(self.client.disconnecting)
        self.assertFalse(transport.disconnecting)
        self.wait(2.25)
        self.assertTrue(self.client.disconnected)
        self.assertTrue(transport.disconnected)
        self.assertIn(b"some", self.client.value())

    def test_movingResponseNotCutOff(self) -> None:
        """
        A slow response body that keeps moving is not cut off, however long
        it takes in all; the watch starts over from its last byte.
        """
        self.start(readTimeout=8)
        upstream, transport = self.forward(GET)
        self.reply(upstream, self.PARTIAL)
        self.moveThenStop(lambda i: self.reply(upstream, b"x"), 10)

    def test_withheldBodyCountsAsMoving(self) -> None:
        """
        Body bytes arriving from the upstream keep the exchange alive even
        while a body filter holds them back from the client.
        """
        self.start(readTimeout=8)
        self.factory.chain = FilterChain([EnabledFilter("withhold", _Withholding())])
        upstream, transport = self.forward(GET)
        self.reply(upstream, self.PARTIAL)
        self.client.clear()
        for _ in range(5):
            self.wait(7)
            self.reply(upstream, b"x")
        self.assertEqual(self.client.value(), b"")
        self.assertFalse(self.client.disconnecting)
        self.reply(upstream, b"y" * 91)
        self.assertIn(b"somexxxxx" + b"y" * 91, self.client.value())

    def test_finishedExchangeNotWatched(self) -> None:
        """
        Once the response is complete the watch ends: an idle keep-alive
        connection is governed by C{idleTimeout} alone.
        """
        self.start(readTimeout=8, idleTimeout=100)
        upstream, _ = self.forward(GET)
        self.reply(upstream, self.PARTIAL)
        self.reply(upstream, b"x" * 96)
        self.wait(99)
        self.assertFalse(self.client.disconnecting)
        self.wait(1)
        self.assertTrue(self.client.disconnecting)
        self.assertFalse(self.client.disconnected)

    def test_unreadCloseReset(self) -> None:
        """
        A connection closing after its response, whose client does not read
        the rest, is reset C{readTimeout} seconds later.
        """
        self.start(readTimeout=8)
        upstream, _ = self.forward(GET_CLOSE)
        self.reply(upstream, OK)
        self.assertTrue(self.client.disconnecting)
        self.wait(7.75)
        self.assertFalse(self.client.disconnected)
        self.wait(0.25)
        self.assertTrue(self.client.disconnected)

    @staticmethod
    def holding(transport: Transport, count: int) -> None:
        """
        Make C{transport} report C{count} written bytes its peer has not
        read yet, as a TCP transport's buffer does.
        """
        transport.dataBuffer = b"x" * count  # type: ignore[attr-defined]
        transport.offset = 0  # type: ignore[attr-defined]
        transport._tempDataLen = 0  # type: ignore[attr-defined]

    def readSlowly(self) -> None:
        """
        The client reads 10 more bytes of what the proxy buffered for it.
        """
        self.client.offset += 10  # type: ignore[attr-defined]

    def test_drainingClientNotCutOff(self) -> None:
        """
        A client slowly reading what the proxy buffered for it is moving
        bytes, though nothing new arrives from the upstream meanwhile (it
        stays paused until the buffer is empty): it is not cut off.
        """
        self.start(readTimeout=8)
        upstream, _ = self.forward(GET)
        self.reply(upstream, self.PARTIAL)
        self.holding(self.client, 1000)
        self.moveThenStop(lambda i: self.readSlowly(), 10)

    def test_closeWaitsForDrainingClient(self) -> None:
        """
        A closing connection whose client still reads what was buffered is
        not reset while it reads; once it stops, it is, C{readTimeout}
        seconds later.
        """
        self.start(readTimeout=8)
        upstream, _ = self.forward(GET_CLOSE)
        self.reply(upstream, OK)
        self.assertTrue(self.client.disconnecting)
        self.holding(self.client, 1000)
        self.moveThenStop(lambda i: self.readSlowly(), 10, flag="disconnected")

    def test_upstreamFailureMidResponseWatchesClose(self) -> None:
        """
        A response cut short by its upstream closes the client connection;
        a client that reads nothing more of it is reset C{readTimeout}
        seconds later, not later.
        """
        self.start(readTimeout=8)
        upstream, _ = self.forward(GET)
        self.reply(upstream, self.PARTIAL)
        self.wait(3)
        self.holding(self.client, 1000)
        self.closeUpstream(upstream)
        self.assertTrue(self.client.disconnecting)
        self.wait(7.75)
        self.assertFalse(self.client.disconnected)
        # Watched afresh from the cut: the exchange's counters, reset when
        # it was logged, are no progress.
        self.wait(0.25)
        self.assertTrue(self.client.disconnected)

    def test_expectContinueStallIs504(self) -> None:
        """
        A client that asked for C{100 Continue} and waits for it before
        sending its body is not the one stalling: it gets a 504.
        """
        self.start(readTimeout=8)
        upstream, transport = self.forward(
            b"POST http://example.com/up HTTP/1.1\r\nHost: example.com\r\n"
            b"Expect: 100-continue\r\nContent-Length: 10\r\n\r\n"
        )
        self.wait(10)
        status, _, body = splitResponse(self.client.value())
        self.assertEqual(status, 504)
        self.assertIn(b"100 Continue", body)
        self.assertTrue(transport.disconnected)

    def test_tunnelUpstreamNotReadingReset(self) -> None:
        """
        When a tunnel's client is gone, what it sent last still goes to
        the upstream, but an upstream that reads none of it is reset
        C{readTimeout} seconds later; one that closes in time leaves no
        timer behind.
        """
        self.start(readTimeout=8)
        self.send(ConnectTests.CONNECT)
        upstream, transport = self.accept()
        self.send(b"data the upstream never reads")
        self.proxy.connectionLost(Failure(error.ConnectionDone()))
        self.assertTrue(transport.disconnecting)
        self.wait(7.75)
        self.assertFalse(transport.disconnected)
        self.wait(0.25)
        self.assertTrue(transport.disconnected)

        proxy, client = self.connectClient()
        self.send(ConnectTests.CONNECT, proxy)
        upstream, transport = self.accept()
        proxy.connectionLost(Failure(error.ConnectionDone()))
        self.closeUpstream(upstream)
        self.assertEqual(
            [
                call
                for call in self.reactor.getDelayedCalls()
                if call.func.__name__ == "_abortNow"
            ],
            [],
        )

    def test_stalledUploadGets408(self) -> None:
        """
        A request body that stops arriving gets a 408 and the upstream
        connection, holding half a request, is reset.
        """
        self.start(readTimeout=8)
        upstream, transport = self.forward(self.POST)
        self.wait(7)
        self.send(b"de")
        self.wait(7.75)
        self.assertEqual(self.client.value(), b"")
        self.wait(2.25)
        status, _, _ = splitResponse(self.client.value())
        self.assertEqual(status, 408)
        self.assertTrue(self.client.disconnecting)
        self.assertTrue(transport.disconnected)

    def test_upstreamNotReadingUploadGets504(self) -> None:
        """
        A request body held back because the upstream stopped reading it
        gets a 504.
        """
        self.start(readTimeout=8)
        upstream, transport = self.forward(self.POST)
        transport.producer.pauseProducing()
        self.wait(10)
        status, _, body = splitResponse(self.client.value())
        self.assertEqual(status, 504)
        self.assertIn(b"stopped reading", body)
        self.assertTrue(transport.disconnected)

    def test_idleTunnelCutOff(self) -> None:
        """
        A tunnel is cut off once no byte moved in either direction for
        C{readTimeout} seconds; bytes either way keep it open.
        """
        self.start(readTimeout=8)
        self.send(ConnectTests.CONNECT)
        upstream, transport = self.accept()
        self.moveThenStop(
            lambda i: self.send(b"ping") if i % 2 else self.reply(upstream, b"pong"), 6
        )
        self.assertTrue(transport.disconnected)


@implementer(IRequestFilter)
class _Deciding:
    """
    A request filter that answers later, through a L{Deferred}.
    """

    def __init__(self) -> None:
        self.pending: list[tuple[Deferred, Any]] = []

    def filterRequest(self, request: Any) -> Deferred:
        d: Deferred = Deferred()
        self.pending.append((d, request))
        return d


class RequestFilterTests(ProxyTestCase):
    """
    Requests whose filters answer later.
    """

    def test_bodyFollowsHeadAfterLateDecision(self) -> None:
        """
        A body that arrived with its head waits while the filters decide,
        and goes upstream after the head.
        """
        deciding = _Deciding()
        self.factory.chain = FilterChain([EnabledFilter("deciding", deciding)])
        self.send(
            b"POST http://example.com/up HTTP/1.1\r\nHost: example.com\r\n"
            b"Content-Length: 3\r\n\r\nabc"
        )
        self.assertEqual(self.reactor.tcpClients, [])
        d, request = deciding.pending[0]
        d.callback(request)
        _, transport = self.accept()
        self.assertTrue(transport.value().startswith(b"POST /up HTTP/1.1\r\n"))
        self.assertTrue(transport.value().endswith(b"\r\n\r\nabc"))

    def test_chunkedBodyAndNextRequestAfterLateDecision(self) -> None:
        """
        The same for a chunked body, and a pipelined request behind it is
        handled after the exchange.
        """
        deciding = _Deciding()
        self.factory.chain = FilterChain([EnabledFilter("deciding", deciding)])
        self.send(
            b"POST http://example.com/up HTTP/1.1\r\nHost: example.com\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n" + GET
        )
        d, request = deciding.pending[0]
        d.callback(request)
        upstream, transport = self.accept()
        head, _, body = transport.value().partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"POST /up HTTP/1.1"))
        self.assertEqual(body, b"3\r\nabc\r\n0\r\n\r\n")
        self.reply(upstream, OK)
        self.reactor.advance(0)
        self.assertEqual(len(deciding.pending), 2)
        d, request = deciding.pending[1]
        d.callback(request)
        self.assertTrue(transport.value().endswith(GET_UP))

    def test_responseUsesTheRequestsChain(self) -> None:
        """
        An exchange in flight when a reload swaps the chain runs its
        response through the chain its request went through (it used to
        get the new chain's response filters); the next request gets the
        new chain.
        """

        @implementer(IResponseFilter)
        class Stamp:
            def filterResponse(self, request: Any, response: Any) -> Any:
                response.headers.add(b"X-New", b"1")
                return response

        upstream, _ = self.forward(GET)
        self.factory.reconfigure(
            self.settings, FilterChain([EnabledFilter("stamp", Stamp())])
        )
        self.reply(upstream, OK)
        self.assertEqual(self.client.value(), OK_DOWN)
        self.client.clear()
        self.send(GET)
        self.reply(upstream, OK)
        _, fields, _ = splitResponse(self.client.value())
        self.assertEqual(values(fields, b"x-new"), [b"1"])

    def test_requestFramingPutRight(self) -> None:
        """
        A third-party filter that removes, adds or changes a request's
        framing fields does not change how the origin reads the body: the
        proxy puts them back as the client framed it (a POST whose
        Content-Length a filter removed went upstream without it, and its
        body became a second request).
        """

        @implementer(IRequestFilter)
        class Reframing:
            def filterRequest(self, request: Any) -> Any:
                headers = request.headers
                headers.remove(b"Content-Length")
                headers.remove(b"Transfer-Encoding")
                headers.add(b"Content-Length", b"99")
                return request

        self.factory.chain = FilterChain([EnabledFilter("reframing", Reframing())])
        self.assertTrue(self.factory.chain.mayReframe)
        smuggled = b"GET /admin HTTP/1.1\r\nHost: example.com\r\n\r\n"
        cases = [
            (
                b"POST http://example.com/ HTTP/1.1\r\nHost: example.com\r\n"
                b"Content-Length: %d\r\n\r\n" % len(smuggled) + smuggled,
                [b"%d" % len(smuggled)],
                [],
            ),
            (
                b"POST http://example.com/ HTTP/1.1\r\nHost: example.com\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
                [],
                [b"chunked"],
            ),
            (GET, [], []),
        ]
        for request, length, coding in cases:
            proxy, _ = self.connectClient()
            self.send(request, proxy)
            _, transport = self.accept()
            fields = requestFields(transport.value())
            self.assertEqual(values(fields, b"content-length"), length)
            self.assertEqual(values(fields, b"transfer-encoding"), coding)

    def test_responseFramingPutRight(self) -> None:
        """
        A third-party response filter that changes a response's framing
        fields, at once or through a Deferred, does not change how the
        client reads the body: the proxy puts them back as the upstream
        sent them (a Content-Length of 99 made the client wait for bytes
        that never came; a chunked coding made it misread the body).
        """
        later: list[Deferred] = []

        @implementer(IResponseFilter)
        class Reframing:
            def filterResponse(self, request: Any, response: Any) -> Any:
                response.headers.set(b"Content-Length", b"99")
                response.headers.add(b"Transfer-Encoding", b"chunked")
                if request.path == b"/later":
                    later.append(Deferred())
                    return later[-1]
                return response

        self.factory.chain = FilterChain([EnabledFilter("reframing", Reframing())])
        self.assertTrue(self.factory.chain.mayReframeResponses)
        upstream, _ = self.forward(GET)
        self.reply(upstream, OK)
        status, fields, body = splitResponse(self.client.value())
        self.assertEqual(values(fields, b"content-length"), [b"5"])
        self.assertEqual(values(fields, b"transfer-encoding"), [])
        self.assertEqual(body, b"hello")

        self.client.clear()
        self.send(GET.replace(b"/a", b"/later"))
        self.reply(upstream, OK)
        self.assertEqual(self.client.value(), b"")
        later[0].callback(
            ResponseHead(200, b"OK", Headers([(b"Content-Length", b"7")]))
        )
        status, fields, body = splitResponse(self.client.value())
        self.assertEqual(values(fields, b"content-length"), [b"5"])
        self.assertEqual(body, b"hello")

    def test_methodChangeRefused(self) -> None:
        """
        A filter that changes a method to or from HEAD or CONNECT gets 500
        and nothing goes upstream: a GET sent as HEAD left its client
        waiting for a body, a HEAD sent as GET put a body where the client
        reads the next response, and a GET sent as CONNECT opened a tunnel
        no tunnel filter saw.  Other changes are forwarded.
        """
        changes = {b"/head": b"HEAD", b"/get": b"GET", b"/connect": b"CONNECT"}

        @implementer(IRequestFilter)
        class Renaming:
            def filterRequest(self, request: Any) -> Any:
                request.method = changes.get(request.path, b"PUT")
                return request

        self.factory.chain = FilterChain([EnabledFilter("renaming", Renaming())])
        for method, path in [
            (b"GET", b"/head"),
            (b"HEAD", b"/get"),
            (b"GET", b"/connect"),
        ]:
            proxy, client = self.connectClient()
            self.send(
                b"%s http://example.com%s HTTP/1.1\r\nHost: example.com\r\n\r\n"
                % (method, path),
                proxy,
            )
            status, _, body = splitResponse(client.value())
            self.assertEqual(status, 500, (method, path))
            if method != b"HEAD":
                self.assertIn(b"changed the method from %s to" % method, body)
            self.assertEqual(self.reactor.tcpClients, [])
        self.send(GET)
        _, transport = self.accept()
        self.assertTrue(transport.value().startswith(b"PUT /a HTTP/1.1\r\n"))

    def test_newHeadForwarded(self) -> None:
        """
        A filter may return a C{RequestHead} built anew with an absolute-form
        target: the proxy forwards it there, with C{Host} to match (it used
        to answer it with its own status page).  One whose target is not an
        absolute URL gets 500.
        """

        @implementer(IRequestFilter)
        class Mirror:
            def filterRequest(self, request: Any) -> Any:
                if request.path == b"/bad":
                    return RequestHead(b"GET", b"/elsewhere")
                return RequestHead(
                    b"GET",
                    b"http://mirror.example:8081/b?q",
                    headers=Headers([(b"Host", b"example.com"), (b"X-Kept", b"1")]),
                )

        self.factory.chain = FilterChain([EnabledFilter("mirror", Mirror())])
        self.send(GET)
        self.assertEqual(self.target(), ("mirror.example", 8081))
        _, transport = self.accept()
        head = transport.value()
        self.assertTrue(head.startswith(b"GET /b?q HTTP/1.1\r\n"), head)
        fields = requestFields(head)
        self.assertEqual(values(fields, b"host"), [b"mirror.example:8081"])
        self.assertEqual(values(fields, b"x-kept"), [b"1"])

        proxy, client = self.connectClient()
        self.send(GET.replace(b"/a", b"/bad"), proxy)
        status, _, body = splitResponse(client.value())
        self.assertEqual(status, 500)
        self.assertIn(b"cannot be forwarded", body)
        self.assertEqual(len(self.reactor.tcpClients), 1)

    def test_failedTransformCutsResponse(self) -> None:
        """
        A body transform that fails mid-body, or in C{finish}, cuts the
        response short: the chunked body gets no last chunk and both
        connections close, so the client sees it incomplete (the rest used
        to pass untouched after the transformed part, as if whole); the
        failure is logged once.  Also when a Deferred response filter held
        the body; when the failure comes in the read that brought the head,
        nothing is out yet and the client gets a 502 instead.
        """

        class Failing:
            def __init__(self, when: bytes) -> None:
                self.when = when

            def transform(self, chunk: bytes) -> bytes:
                if self.when == b"chunk" and b"boom" in chunk:
                    raise ValueError("no")
                return chunk.upper()

            def finish(self) -> bytes:
                if self.when == b"finish":
                    raise ValueError("no")
                return b""

        @implementer(IBodyFilter)
        class FailingFilter:
            def bodyTransform(self, request: Any, response: Any) -> Any:
                return Failing(request.path[1:])

        held: list[Deferred] = []

        @implementer(IResponseFilter)
        class Holding:
            def filterResponse(self, request: Any, response: Any) -> Any:
                if request.headers.get(b"x-hold"):
                    held.append(Deferred())
                    return held[-1]
                return response

        for path, pieces, hold in [
            (b"/chunk", [b"hello", b"boom"], False),
            (b"/finish", [b"hello", b"world"], False),
            (b"/chunk", [b"hello", b"boom"], True),
            (b"/chunk", [b"boom"], False),
            (b"/finish", [b"hello"], False),
            (b"/chunk", [b"boom"], True),
        ]:
            log = RecordingLog()
            self.start()
            self.factory.accessLog = log
            self.factory.chain = FilterChain(
                [
                    EnabledFilter("holding", Holding()),
                    EnabledFilter("failing", FailingFilter()),
                ]
            )
            request = GET.replace(b"/a", path)
            if hold:
                request = request.replace(b"\r\n\r\n", b"\r\nX-Hold: 1\r\n\r\n")
            upstream, transport = self.forward(request)
            body = b"".join(pieces)
            head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body)
            self.reply(upstream, head + pieces[0])
            if hold:
                held[-1].callback(ResponseHead(200, b"OK", Headers()))
            if len(pieces) > 1:
                self.reply(upstream, pieces[1])
            case = (path, pieces, hold)
            data = self.client.value()
            status, _, body = splitResponse(data)
            if len(pieces) == 1:
                # Nothing was out yet: a proper 502 instead.
                self.assertEqual(status, 502, case)
                self.assertIn(b"body filter failing failed (ValueError)", body, case)
            else:
                self.assertEqual(status, 200, case)
                self.assertFalse(data.endswith(b"0\r\n\r\n"), case)
            self.assertTrue(self.client.disconnecting, case)
            self.assertTrue(transport.disconnecting, case)
            self.assertEqual(self.factory.pool.idleCount(), 0, case)
            [record] = log.records
            self.assertEqual(record.status, status, case)
            self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1, case)

    def test_builtInFiltersTrusted(self) -> None:
        """
        The built-in filters never change framing fields, so with only them
        the proxy skips that check.
        """
        from proxyapp.filters import access, privacy

        chain = FilterChain(
            [
                EnabledFilter("access", access.makeFilter({})),
                EnabledFilter("privacy", privacy.makeFilter({})),
            ]
        )
        self.assertFalse(chain.mayReframe)

    def test_filterResponseFramedByTheProxy(self) -> None:
        """
        A filter's own Response is framed by the proxy: its
        Transfer-Encoding is dropped (the head carried it beside our
        Content-Length), and a 204 or 304 goes out without a length or a
        body.
        """
        deciding = _Deciding()
        self.factory.chain = FilterChain([EnabledFilter("deciding", deciding)])
        for status, body, expected in [
            (200, b"hello", (b"5", b"hello")),
            (204, b"ignored", (None, b"")),
            (304, b"ignored", (None, b"")),
        ]:
            self.client.clear()
            self.send(GET)
            d, request = deciding.pending.pop()
            response = errorResponse(status, "filtered", request.url())
            response.body = body
            response.head.headers.set(b"Transfer-Encoding", b"chunked")
            d.callback(response)
            got, fields, rest = splitResponse(self.client.value())
            self.assertEqual(got, status)
            self.assertEqual(values(fields, b"transfer-encoding"), [])
            length = values(fields, b"content-length")
            self.assertEqual((length[0] if length else None, rest), expected)

    def test_maxForwardsZeroAfterFilters(self) -> None:
        """
        A TRACE or OPTIONS with C{Max-Forwards: 0}, which the proxy answers
        itself, is answered only once the filters let it by: a refused
        client gets the refusal (it used to get 200 and, for TRACE, its
        request echoed), an allowed one the proxy's answer.
        """
        deciding = _Deciding()
        self.factory.chain = FilterChain([EnabledFilter("deciding", deciding)])
        trace = (
            b"TRACE http://example.com/ HTTP/1.1\r\nHost: example.com\r\n"
            b"Max-Forwards: 0\r\n\r\n"
        )
        self.send(trace)
        self.assertEqual(self.client.value(), b"")
        d, request = deciding.pending[0]
        d.callback(errorResponse(403, "No.", request.url()))
        self.assertEqual(splitResponse(self.client.value())[0], 403)
        self.client.clear()
        self.send(trace)
        d, request = deciding.pending[1]
        d.callback(request)
        status, _, body = splitResponse(self.client.value())
        self.assertEqual(status, 200)
        self.assertTrue(body.startswith(b"TRACE "))
        self.assertEqual(self.reactor.tcpClients, [])


GET_10_KEEP_ALIVE = (
    b"GET http://example.com/a HTTP/1.0\r\nHost: example.com\r\n"
    b"Connection: keep-alive\r\n\r\n"
)


class ForeignFilterTests(ProxyTestCase):
    """
    What a filter that is not built in may not change is checked whatever
    the filter answers (from a review of 8d29dc7).
    """

    def useRequestFilter(self, filterRequest: Callable[[Any], Any]) -> None:
        @implementer(IRequestFilter)
        class Foreign:
            def filterRequest(self, request: Any) -> Any:
                return filterRequest(request)

        self.factory.chain = FilterChain([EnabledFilter("foreign", Foreign())])

    def assertWhole(self, client: Transport, status: int, head: bool = False) -> bytes:
        """
        The client got one response with C{status}, framed for its own
        method: the body its Content-Length announces, none for HEAD.
        """
        code, fields, body = splitResponse(client.value())
        self.assertEqual(code, status)
        [length] = values(fields, b"content-length")
        self.assertEqual(len(body), 0 if head else int(length))
        return body

    def assertRelayedForHttp10(self, upstream: Any) -> None:
        """
        A chunked response to an HTTP/1.0 keep-alive client reaches it
        without chunks (delimited by the close).
        """
        self.reply(
            upstream,
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n0\r\n\r\n",
        )
        _, fields, body = splitResponse(self.client.value())
        self.assertEqual(values(fields, b"transfer-encoding"), [])
        self.assertEqual(body, b"hello")

    def test_methodChangeThenAnswer(self) -> None:
        """
        A method changed to or from HEAD in place, by a filter that then
        answers itself, gets 500 framed for the client's own method (a
        GET turned HEAD got a 403 with a length and no body; a HEAD turned
        GET got a body the client read as its next response).
        """

        def change(request: Any) -> Any:
            request.method = b"GET" if request.method == b"HEAD" else b"HEAD"
            return errorResponse(403, "no")

        self.useRequestFilter(change)
        self.send(GET)
        body = self.assertWhole(self.client, 500)
        self.assertIn(b"changed the method from GET to HEAD", body)
        proxy, client = self.connectClient()
        self.send(GET.replace(b"GET", b"HEAD", 1), proxy)
        self.assertWhole(client, 500, head=True)
        self.assertEqual(self.reactor.tcpClients, [])

    def test_statusPageMethodChange(self) -> None:
        """
        The same for a request to the proxy's own status page.
        """

        def change(request: Any) -> Any:
            request.method = b"HEAD"
            return request

        self.useRequestFilter(change)
        self.send(b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n")
        self.assertWhole(self.client, 500)

    def test_newHeadBadTargetFramedForClient(self) -> None:
        """
        The 500 for a new head that cannot be forwarded is framed for the
        client's request, not for the new head's method.
        """
        for method, why in [
            (b"GET", b"cannot be forwarded"),
            (b"HEAD", b"changed the method from GET to HEAD"),
        ]:
            proxy, client = self.connectClient()
            self.useRequestFilter(lambda request: RequestHead(method, b"/elsewhere"))
            self.send(GET, proxy)
            body = self.assertWhole(client, 500)
            self.assertIn(why, body)

    def test_newHeadUnsafeTarget(self) -> None:
        """
        A new head whose target holds a space, CR or LF (a filter building
        it from untrusted text) is not written into a request line: 500.
        """
        for target in [
            b"http://mirror.example/a HTTP/1.1\r\nX-Injected: 1\r\n",
            b"http://mirror.example/a b",
        ]:
            proxy, client = self.connectClient()
            self.useRequestFilter(lambda request: RequestHead(b"GET", target))
            self.send(GET, proxy)
            self.assertWhole(client, 500)
        self.assertEqual(self.reactor.tcpClients, [])

    def test_unsafeRequestLineInPlace(self) -> None:
        """
        The same for a path a filter sets on the head it was given, and a
        method that is not a token (it added header lines upstream).
        """
        for name, value, why in [
            ("path", b"/a HTTP/1.1\r\nX-Injected: 1\r\nX-End: ", b"cannot carry"),
            ("method", b"GET /x HTTP/1.1\r\nX-Injected: 1\r\nX-End: GET", b"token"),
        ]:
            proxy, client = self.connectClient()
            self.useRequestFilter(
                lambda request: setattr(request, name, value) or request
            )
            self.send(GET, proxy)
            self.assertIn(why, self.assertWhole(client, 500))
        self.assertEqual(self.reactor.tcpClients, [])
        # What the parser takes (bytes above 0x7f, too) still goes through.
        self.useRequestFilter(lambda request: request)
        proxy, _ = self.connectClient()
        self.send(GET.replace(b"/a", b"/caf\xc3\xa9?q=%20"), proxy)
        _, transport = self.accept()
        self.assertTrue(
            transport.value().startswith(b"GET /caf\xc3\xa9?q=%20 HTTP/1.1")
        )

    def test_newHeadLoggedWithTheClientsFields(self) -> None:
        """
        The access log shows the client's User-Agent and Referer for a
        request a filter replaced with a head it built anew, not the new
        head's.
        """
        log = RecordingLog()
        self.factory.accessLog = log

        def mirror(request: Any) -> Any:
            head = RequestHead(b"GET", b"http://mirror.example/b")
            head.headers.add(b"User-Agent", b"filter/1")
            return head

        self.useRequestFilter(mirror)
        upstream, transport = self.forward(
            GET.replace(
                b"\r\n\r\n",
                b"\r\nUser-Agent: client/1\r\nReferer: http://r.example/\r\n\r\n",
            )
        )
        self.assertIn(b"User-Agent: filter/1", transport.value())
        self.reply(upstream, OK)
        [record] = log.records
        self.assertEqual(
            (record.target, record.userAgent, record.referer),
            ("http://mirror.example/b", "client/1", "http://r.example/"),
        )

    def test_newHeadTakesTheClientsPlace(self) -> None:
        """
        A new head takes the client's version (an HTTP/1.0 keep-alive
        client got a chunked body it cannot read), address and user, and
        carries the proxy's Via (which loop detection relies on).
        """
        seen = []

        def mirror(request: Any) -> Any:
            request.user = "alice"
            seen.append(request)
            return RequestHead(b"GET", b"http://mirror.example/b")

        self.useRequestFilter(mirror)
        upstream, transport = self.forward(GET_10_KEEP_ALIVE)
        self.assertEqual(
            values(requestFields(transport.value()), b"via"), [b"1.0 testproxy"]
        )
        request = self.proxy.request
        self.assertIsNot(request, seen[0])
        self.assertEqual(request.version, b"HTTP/1.0")
        self.assertEqual(request.clientAddress, ("127.0.0.1", 40000))
        self.assertEqual(request.user, "alice")
        self.assertRelayedForHttp10(upstream)

    def test_rerouteToSelf(self) -> None:
        """
        A filter that reroutes a request to the proxy's own address gets
        508, as a client naming it does.
        """

        def reroute(request: Any) -> Any:
            request.host, request.port = "127.0.0.1", 8080
            return request

        self.useRequestFilter(reroute)
        self.send(GET)
        body = self.assertWhole(self.client, 508)
        self.assertIn(b"forwarding loop", body)
        self.assertEqual(self.reactor.tcpClients, [])

    def useRestatus(self, statuses: dict[bytes, int]) -> None:
        """
        Enable a response filter that sets each response's status from
        C{statuses}, by request path.
        """

        @implementer(IResponseFilter)
        class Restatus:
            def filterResponse(self, request: Any, response: Any) -> Any:
                response.status = statuses[request.path]
                return response

        self.factory.chain = FilterChain([EnabledFilter("restatus", Restatus())])

    def test_responseStatusChange(self) -> None:
        """
        A response filter that changes the status to or from one without a
        body (204, 304) gets 502: the upstream's body would follow a 304
        head, or a 200 would wait for a body that never comes.  Other
        changes go through.
        """
        self.useRestatus({b"/a": 304, b"/b": 200, b"/c": 201})
        for path, reply, expected in [
            (b"/a", OK, 502),
            (b"/b", b"HTTP/1.1 304 Not Modified\r\n\r\n", 502),
            (b"/c", OK, 201),
        ]:
            proxy, client = self.connectClient()
            self.send(GET.replace(b"/a", path), proxy)
            upstream, _ = self.accept()
            self.reply(upstream, reply)
            body = self.assertWhole(client, expected)
            if expected == 502:
                self.assertIn(b"changed the status", body)
            else:
                self.assertEqual(body, b"hello")

    def test_responseStatusChangeOnHead(self) -> None:
        """
        An answer to HEAD has no body whatever its status, so a response
        filter may change it between 200, 204 and 304 (it used to get 502);
        a change to an interim 1xx still gets 502.
        """
        self.useRestatus({b"/a": 304, b"/b": 200, b"/c": 204, b"/d": 100})
        head = GET.replace(b"GET", b"HEAD")
        ok = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"
        notModified = b"HTTP/1.1 304 Not Modified\r\n"
        for path, reply, expected in [
            (b"/a", ok, 304),
            (b"/b", notModified, 200),
            (b"/c", ok, 204),
            (b"/d", ok, 502),
        ]:
            proxy, client = self.connectClient()
            self.send(head.replace(b"/a", path), proxy)
            upstream, _ = self.accept()
            # Each on its own upstream connection (none is pooled).
            self.reply(upstream, reply + b"Connection: close\r\n\r\n")
            code, fields, body = splitResponse(client.value())
            self.assertEqual((code, body), (expected, b""), path)
            if expected != 502:
                self.assertFalse(client.disconnecting, path)
            if expected == 204:
                # RFC 9110, 8.6: a 204 has no Content-Length.
                self.assertEqual(values(fields, b"content-length"), [])

    def test_responseFilterChangesRequest(self) -> None:
        """
        A response filter that changes the request's method or version (it
        is given the request head) does not change how the client's answer
        is framed: an HTTP/1.0 client got chunks, a GET turned HEAD got a
        replaced answer without its body.
        """

        @implementer(IResponseFilter)
        class Meddle:
            def filterResponse(self, request: Any, response: Any) -> Any:
                request.version = b"HTTP/1.1"
                if request.path == b"/deny":
                    request.method = b"HEAD"
                    return errorResponse(403, "no")
                return response

        self.factory.chain = FilterChain([EnabledFilter("meddle", Meddle())])
        upstream, _ = self.forward(GET_10_KEEP_ALIVE)
        self.assertRelayedForHttp10(upstream)
        proxy, client = self.connectClient()
        self.send(GET.replace(b"/a", b"/deny"), proxy)
        # The pooled connection carries it.
        self.assertEqual(len(self.reactor.tcpClients), 1)
        self.reply(upstream, OK)
        self.assertIn(b"403", self.assertWhole(client, 403))

    def test_bodyFilterFailsAfterStatusChange(self) -> None:
        """
        A body filter that changes the status and then raises is named as
        the failing filter (its status change used to answer for it, and
        the access log named no filter).
        """
        log = RecordingLog()
        self.factory.accessLog = log

        @implementer(IBodyFilter)
        class RestatusThenRaise:
            def bodyTransform(self, request: Any, response: Any) -> Any:
                response.status = 304
                raise ValueError("boom")

        self.factory.chain = FilterChain([EnabledFilter("bad", RestatusThenRaise())])
        upstream, transport = self.forward(GET)
        self.reply(upstream, OK)
        body = self.assertWhole(self.client, 502)
        self.assertIn(b"bad", body)
        [record] = log.records
        self.assertEqual(record.filterName, "bad")
        self.assertTrue(transport.disconnecting)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)

    def test_bodyFilterFraming(self) -> None:
        """
        A body filter that is not built in may adjust the head, but not its
        framing: a Content-Length it changes (returning no transform) is
        put back.
        """

        @implementer(IBodyFilter)
        class Lengthen:
            def bodyTransform(self, request: Any, response: Any) -> Any:
                response.headers.set(b"Content-Length", b"99")
                return None

        self.factory.chain = FilterChain([EnabledFilter("len", Lengthen())])
        self.assertTrue(self.factory.chain.mayReframeResponses)
        upstream, _ = self.forward(GET)
        self.reply(upstream, OK)
        self.assertEqual(self.assertWhole(self.client, 200), b"hello")

    def test_heldResponseThenBodyFilterStatus(self) -> None:
        """
        After a Deferred response filter, a body filter's status change is
        answered 502 and that is the whole answer: the held body does not
        follow it (it did, read as the next response, and then the end of
        the body raised in the Deferred).
        """
        later: list[tuple[Deferred, Any]] = []

        @implementer(IResponseFilter)
        class Later:
            def filterResponse(self, request: Any, response: Any) -> Any:
                d: Deferred = Deferred()
                later.append((d, response))
                return d

        @implementer(IBodyFilter)
        class Restatus:
            def bodyTransform(self, request: Any, response: Any) -> Any:
                response.status = 304
                return None

        self.factory.chain = FilterChain(
            [EnabledFilter("later", Later()), EnabledFilter("restatus", Restatus())]
        )
        upstream, transport = self.forward(GET)
        self.reply(upstream, OK)
        d, head = later[0]
        errors: list[Any] = []
        d.addErrback(errors.append)
        d.callback(head)
        body = self.assertWhole(self.client, 502)
        self.assertIn(b"changed the status from 200 to 304", body)
        self.assertEqual(errors, [])
        self.assertTrue(transport.disconnecting)

    def test_upgradeStatusChange(self) -> None:
        """
        A response filter that turns a 101 into another status gets 502 and
        no tunnel (the other status was sent, then the tunnel opened).
        """

        @implementer(IResponseFilter)
        class Restatus:
            def filterResponse(self, request: Any, response: Any) -> Any:
                response.status = 200
                return response

        self.factory.chain = FilterChain([EnabledFilter("restatus", Restatus())])
        upstream, transport = self.forward(UpgradeTests.UPGRADE)
        self.reply(
            upstream,
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
            b"Upgrade: websocket\r\n\r\n\x81\x02hi",
        )
        body = self.assertWhole(self.client, 502)
        self.assertIn(b"changed the status from 101 to 200", body)
        self.assertTrue(self.client.disconnecting)
        self.assertTrue(transport.disconnecting)

    def test_versionChangedInPlace(self) -> None:
        """
        The client's HTTP version frames its response whatever a filter sets
        on the head (an HTTP/1.0 keep-alive client got a chunked body).
        """

        def upgrade(request: Any) -> Any:
            request.version = b"HTTP/1.1"
            return request

        self.useRequestFilter(upgrade)
        upstream, _ = self.forward(GET_10_KEEP_ALIVE)
        self.assertRelayedForHttp10(upstream)

    def test_subclassedNewHead(self) -> None:
        """
        A new head of a subclass of C{RequestHead} is checked like one (a
        HEAD built for the client's GET was forwarded).
        """

        class MyHead(RequestHead):
            __slots__ = ()

        self.useRequestFilter(
            lambda request: MyHead(b"HEAD", b"http://mirror.example/b")
        )
        self.send(GET)
        self.assertEqual(self.reactor.tcpClients, [])
        self.assertWhole(self.client, 500)

    def test_ownAnswerContentTypeLogged(self) -> None:
        """
        The access log records the Content-Type of the proxy's own answer
        (its 502 page), not that of the upstream head it replaced.
        """
        log = RecordingLog()
        self.factory.accessLog = log
        upstream, _ = self.forward(GET)
        self.reply(
            upstream,
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\nzz\r\n",
        )
        [record] = log.records
        self.assertEqual(record.status, 502)
        self.assertEqual(record.contentType, "text/html; charset=utf-8")


class BackpressureTests(ProxyTestCase):
    """
    A slow reader pauses the fast writer, both ways.
    """

    def test_downloadBackpressure(self) -> None:
        """
        The client transport pausing its producer pauses reading from the
        upstream, and resuming resumes it.
        """
        upstream, transport = self.forward(GET)
        self.reply(upstream, b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nsome")
        self.assertIsNotNone(self.client.producer)
        self.client.producer.pauseProducing()
        self.assertEqual(transport.producerState, "paused")
        self.client.producer.resumeProducing()
        self.assertEqual(transport.producerState, "producing")

    def test_uploadBackpressure(self) -> None:
        """
        The upstream transport pausing its producer pauses reading from the
        client, and resuming resumes it.
        """
        _, transport = self.forward(
            b"POST http://example.com/ HTTP/1.1\r\nHost: example.com\r\nContent-Length: 100\r\n\r\nsome"
        )
        self.assertEqual(self.client.producerState, "producing")
        self.assertIsNotNone(transport.producer)
        transport.producer.pauseProducing()
        self.assertEqual(self.client.producerState, "paused")
        transport.producer.resumeProducing()
        self.assertEqual(self.client.producerState, "producing")

    def test_clientPausedWhileConnecting(self) -> None:
        """
        Reading from the client pauses while the upstream connection is being
        made and resumes once it is up.
        """
        self.send(
            b"POST http://example.com/ HTTP/1.1\r\nHost: example.com\r\nContent-Length: 100\r\n\r\n"
        )
        self.assertEqual(self.client.producerState, "paused")
        self.accept()
        self.assertEqual(self.client.producerState, "producing")

    def test_backpressureReasonsIndependent(self) -> None:
        """
        Backpressure lifting while the upstream is still connecting does not
        resume reading from the client.
        """
        proxy, client = self.proxy, self.client
        self.send(
            b"POST http://example.com/ HTTP/1.1\r\nHost: example.com\r\nContent-Length: 100\r\n\r\n"
        )
        proxy.gate.pauseProducing()
        proxy.gate.resumeProducing()
        self.assertEqual(client.producerState, "paused")

    def test_tunnelBackpressure(self) -> None:
        """
        In a CONNECT tunnel each side's transport pausing pauses reading from
        the other.
        """
        self.send(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
        _, transport = self.accept()
        self.client.producer.pauseProducing()
        self.assertEqual(transport.producerState, "paused")
        self.client.producer.resumeProducing()
        self.assertEqual(transport.producerState, "producing")
        transport.producer.pauseProducing()
        self.assertEqual(self.client.producerState, "paused")
        transport.producer.resumeProducing()
        self.assertEqual(self.client.producerState, "producing")

    def test_producersUnregisteredAfterExchange(self) -> None:
        """
        When an exchange completes, neither transport keeps the other's gate
        as its producer.
        """
        upstream, transport = self.forward(GET)
        self.reply(upstream, OK)
        self.assertIsNone(self.client.producer)
        self.assertIsNone(transport.producer)


class DefaultEndpointTests(SynchronousTestCase):
    """
    L{defaultEndpointFactory} resolves names and connects to addresses
    directly.
    """

    def test_kinds(self) -> None:
        """
        An IPv4 or IPv6 address gets a plain TCP endpoint (no resolution
        in a thread); a name gets a L{HostnameEndpoint}; each with the
        connect timeout.
        """
        reactor = MemoryReactorClock()
        endpointFor = defaultEndpointFactory(reactor, 7.0)
        for host, kind in [
            ("127.0.0.1", TCP4ClientEndpoint),
            ("::1", TCP6ClientEndpoint),
            ("localhost", HostnameEndpoint),
            ("127.0.0.1.example", HostnameEndpoint),
        ]:
            endpoint = endpointFor(host, 81)
            self.assertIs(type(endpoint), kind, host)
            if kind is not HostnameEndpoint:
                endpoint.connect(ProxyFactory(reactor, Settings()))
        self.assertEqual(
            [(host, port, timeout) for host, port, _, timeout, _ in reactor.tcpClients],
            [("127.0.0.1", 81, 7.0), ("::1", 81, 7.0)],
        )


class ReviewedFramingTests(ProxyTestCase):
    """
    Framing and connection-state cases a review found wrong: each test
    failed on the code before its fix.
    """

    def test_connectionCannotNominateRequestContentLength(self) -> None:
        """
        A request whose Connection field names Content-Length is forwarded
        with its Content-Length: dropping it would make the origin read the
        body as a second request that no filter saw (smuggling).
        """
        body = b"GET /admin HTTP/1.1\r\nHost: internal.example\r\n\r\n"
        _, transport = self.forward(
            b"POST http://example.com/ HTTP/1.1\r\nHost: example.com\r\n"
            b"Content-Length: %d\r\nConnection: Content-Length\r\n\r\n" % len(body)
            + body
        )
        sent = transport.value()
        fields = requestFields(sent)
        self.assertEqual(values(fields, b"content-length"), [b"%d" % len(body)])
        self.assertEqual(values(fields, b"connection"), [])
        self.assertTrue(sent.endswith(b"\r\n\r\n" + body))

    def test_connectionCannotNominateRequestTransferEncoding(self) -> None:
        """
        The same for a chunked request naming Transfer-Encoding, and for
        Host.
        """
        _, transport = self.forward(
            b"POST http://example.com/ HTTP/1.1\r\nHost: example.com\r\n"
            b"Transfer-Encoding: chunked\r\nConnection: transfer-encoding, host\r\n"
            b"\r\n5\r\nhello\r\n0\r\n\r\n"
        )
        fields = requestFields(transport.value())
        self.assertEqual(values(fields, b"transfer-encoding"), [b"chunked"])
        self.assertEqual(values(fields, b"host"), [b"example.com"])

    def test_connectionCannotNominateResponseFraming(self) -> None:
        """
        A response whose Connection field names its framing keeps it, so
        the client can find the body's end.
        """
        upstream, _ = self.forward(GET)
        self.reply(
            upstream,
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"
            b"Connection: content-length\r\n\r\nhello",
        )
        _, fields, body = splitResponse(self.client.value())
        self.assertEqual(values(fields, b"content-length"), [b"5"])
        self.assertEqual(body, b"hello")
        self.client.clear()
        self.send(GET)
        self.reply(
            upstream,
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
            b"Connection: Transfer-Encoding\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        )
        _, fields, body = splitResponse(self.client.value())
        self.assertEqual(values(fields, b"transfer-encoding"), [b"chunked"])
        self.assertEqual(dechunk(body), (b"hello", b""))

    def test_resetIsNotTheEndOfACloseDelimitedBody(self) -> None:
        """
        An upstream reset in the middle of a body delimited by the close
        (or a TLS connection cut without its closing alert, which Twisted
        reports the same way) is a failure: the HTTP/1.1 client gets no
        last chunk.
        """
        upstream, _ = self.forward(GET)
        self.reply(upstream, b"HTTP/1.1 200 OK\r\n\r\npartial")
        upstream.connectionLost(Failure(error.ConnectionLost()))
        _, fields, body = splitResponse(self.client.value())
        self.assertEqual(values(fields, b"transfer-encoding"), [b"chunked"])
        self.assertEqual(body, b"7\r\npartial\r\n")
        self.assertTrue(self.client.disconnecting)

    def test_cleanCloseEndsACloseDelimitedBody(self) -> None:
        """
        A clean close does end it (the counterpart of the test above).
        """
        upstream, _ = self.forward(GET)
        self.reply(upstream, b"HTTP/1.1 200 OK\r\n\r\npartial")
        self.closeUpstream(upstream)
        _, _, body = splitResponse(self.client.value())
        self.assertEqual(dechunk(body), (b"partial", b""))

    def test_truncatedBodyWithoutLengthResetsClient(self) -> None:
        """
        A response cut short whose body goes to the client delimited by the
        close (here: a chunked one de-chunked for an HTTP/1.0 client) resets
        the client connection, since a clean close would say "complete".
        """
        upstream, _ = self.forward(b"GET http://example.com/a HTTP/1.0\r\n\r\n")
        self.reply(
            upstream,
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
        )
        self.closeUpstream(upstream)
        _, _, body = splitResponse(self.client.value())
        self.assertEqual(body, b"hello")
        self.assertTrue(self.client.disconnected)

    def test_clientErrorMidCloseDelimitedResets(self) -> None:
        """
        The same when the client's own error (an upload over the body
        limit) cuts a close-delimited response short.
        """
        self.start(maxBodyBytes=10)
        upstream, _ = self.forward(
            b"POST http://example.com/up HTTP/1.1\r\nHost: example.com\r\n"
            b"Connection: close\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
        )
        self.reply(upstream, b"HTTP/1.1 200 OK\r\n\r\npartial")
        self.send(b"a\r\n0123456789\r\n")
        self.assertTrue(self.client.value().endswith(b"\r\n\r\npartial"))
        self.assertTrue(self.client.disconnected)

    def test_truncatedBodyWithLengthClosesClient(self) -> None:
        """
        With a length the client can tell for itself: a clean close, so it
        gets every byte that came.
        """
        upstream, _ = self.forward(GET)
        self.reply(upstream, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello")
        self.closeUpstream(upstream)
        self.assertTrue(self.client.disconnecting)
        self.assertFalse(self.client.disconnected)

    def test_failedConnectCloses(self) -> None:
        """
        A CONNECT whose connection failed is answered with a close: the
        parser was switched to the tunnel, so a next request on the same
        connection would never be read.
        """
        self.send(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
        self.failConnect(error.ConnectionRefusedError())
        status, fields, _ = splitResponse(self.client.value())
        self.assertEqual(status, 502)
        self.assertEqual(values(fields, b"connection"), [b"close"])
        self.assertTrue(self.client.disconnecting)

    def test_refusedConnectCloses(self) -> None:
        """
        Every refusal of a CONNECT closes, here the forwarding-loop 508
        (it kept the connection open with the parser switched to the
        tunnel, so the next request hung).
        """
        self.send(
            b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n"
            + VIA
            + b"\r\n"
        )
        status, fields, _ = splitResponse(self.client.value())
        self.assertEqual(status, 508)
        self.assertEqual(values(fields, b"connection"), [b"close"])
        self.assertTrue(self.client.disconnecting)

    def test_oneAnswerWhenBodyArrivesWithRefusedHead(self) -> None:
        """
        A request refused on its head (413 here) whose body came in the
        same read is answered once; the body is not parsed.
        """
        self.start(maxBodyBytes=10)
        self.send(
            b"POST http://example.com/ HTTP/1.1\r\nHost: example.com\r\n"
            b"Content-Length: 20\r\n\r\n" + b"x" * 20
        )
        out = self.client.value()
        self.assertEqual(out.count(b"HTTP/1.1 "), 1)
        self.assertEqual(splitResponse(out)[0], 413)

    def test_httpsTargetIdnaRefuses(self) -> None:
        """
        An https target whose host name IDNA refuses (an underscore) gets a
        502 naming the reason, not a traceback and a dropped connection.
        """
        self.send(
            b"GET https://my_host.example.com/ HTTP/1.1\r\n"
            b"Host: my_host.example.com\r\n\r\n"
        )
        status, _, body = splitResponse(self.client.value())
        self.assertEqual(status, 502)
        self.assertIn(b"no TLS certificate can name this host", body)
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_halfClosedIdleUpstreamNotReused(self) -> None:
        """
        A pooled connection whose origin half-closed is never handed out
        again, even before it has finished closing.
        """
        upstream, transport = self.forward(GET)
        self.reply(upstream, OK)
        upstream.readConnectionLost()
        self.assertTrue(transport.disconnecting)
        self.send(GET)
        self.assertEqual(len(self.reactor.tcpClients), 2)


class ProbedResponseTests(ProxyTestCase):
    """
    Responses from misbehaving origins, as a probe found them handled.
    """

    def test_204WithLengthNotReused(self) -> None:
        """
        A 204 saying it has a body (RFC 9110 section 8.6 forbids it) is
        relayed without one, and its connection is closed rather than
        pooled: the body it announced may still come, and would be taken
        as the next client's response.
        """
        upstream, transport = self.forward(GET)
        self.reply(upstream, b"HTTP/1.1 204 No Content\r\nContent-Length: 30\r\n\r\n")
        status, fields, _ = splitResponse(self.client.value())
        self.assertEqual(status, 204)
        self.assertEqual(values(fields, b"Content-Length"), [])
        self.assertEqual(self.factory.pool.idleCount(), 0)
        self.assertTrue(transport.disconnecting)

    def test_204WithZeroLengthReused(self) -> None:
        """
        C{Content-Length: 0} on a 204 says nothing wrong: the connection
        is pooled as usual.
        """
        upstream, transport = self.forward(GET)
        self.reply(upstream, b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
        self.assertEqual(self.factory.pool.idleCount(), 1)
        self.assertFalse(transport.disconnecting)

    def test_chunkedHTTP10NotReused(self) -> None:
        """
        An HTTP/1.0 response with chunked coding is relayed as framed, then
        its connection is closed (RFC 9112 section 6.1: faulty framing).
        """
        upstream, transport = self.forward(GET)
        self.reply(
            upstream,
            b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        )
        self.assertTrue(self.client.value().endswith(b"\r\n5\r\nhello\r\n0\r\n\r\n"))
        self.assertEqual(self.factory.pool.idleCount(), 0)
        self.assertTrue(transport.disconnecting)

    def test_interimFramingStripped(self) -> None:
        """
        A 1xx is relayed without the Content-Length or Transfer-Encoding an
        origin put on it, and the connection is not reused afterwards.
        """
        upstream, transport = self.forward(GET)
        self.reply(
            upstream,
            b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\nContent-Length: 7\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n",
        )
        self.reply(upstream, OK)
        interim = self.client.value().split(b"\r\n\r\n", 1)[0]
        self.assertTrue(interim.startswith(b"HTTP/1.1 103 Early Hints\r\n"), interim)
        self.assertIn(b"Link: </a>", interim)
        self.assertNotIn(b"Content-Length", interim)
        self.assertNotIn(b"Transfer-Encoding", interim)
        self.assertTrue(self.client.value().endswith(b"hello"))
        self.assertEqual(self.factory.pool.idleCount(), 0)
        self.assertTrue(transport.disconnecting)

    def test_noTransferEncodingToHTTP10Client(self) -> None:
        """
        A response to HEAD saying C{Transfer-Encoding: chunked} (allowed) is
        relayed without it to an HTTP/1.0 client, which must never see the
        field (RFC 9112 section 6.1).
        """
        upstream, _ = self.forward(
            b"HEAD http://example.com/a HTTP/1.0\r\nHost: example.com\r\n\r\n"
        )
        self.reply(upstream, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        status, fields, body = splitResponse(self.client.value())
        self.assertEqual((status, body), (200, b""))
        self.assertEqual(values(fields, b"Transfer-Encoding"), [])

    def test_malformedFinalAfterInterimIs502(self) -> None:
        """
        A final response that turns out malformed after a 1xx already went
        to the client is still answered with a 502 (its head had not gone
        out), not a silent close.
        """
        upstream, _ = self.forward(GET)
        self.reply(upstream, b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n")
        self.reply(upstream, CHUNKED_BAD)
        data = self.client.value()
        interim, final = data.split(b"\r\n\r\n", 1)
        self.assertTrue(interim.startswith(b"HTTP/1.1 103 "))
        self.assertEqual(splitResponse(final)[0], 502)

    def test_notRetriedBecauseOfBody(self) -> None:
        """
        A PUT with a body on a pooled connection found dead is not retried,
        and the 502 says why: its body was not kept (PUT is idempotent).
        """
        upstream, _ = self.forward(GET)
        self.reply(upstream, OK)
        self.client.clear()
        self.send(
            b"PUT http://example.com/a HTTP/1.1\r\nHost: example.com\r\n"
            b"Content-Length: 5\r\n\r\nhello"
        )
        self.closeUpstream(upstream)
        status, _, body = splitResponse(self.client.value())
        self.assertEqual(status, 502)
        self.assertIn(b"because its body was not kept", body)


CHUNKED_BAD = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"


class MalformedFilterResultTests(ProxyTestCase):
    """
    What a filter that is not built in returns or leaves in place is
    checked for the structure the proxy relies on: a malformed message gets
    an error answer naming the filter, never lines injected into a head, a
    head-less body, an invalid status or a connection left hanging (from a
    probe with a deliberately broken plugin).
    """

    def useFilter(self, **methods: Callable[..., Any]) -> None:
        interfaces = {
            "filterRequest": IRequestFilter,
            "filterResponse": IResponseFilter,
            "filterTunnel": ITunnelFilter,
            "bodyTransform": IBodyFilter,
        }
        provided = [interfaces[name] for name in methods]

        @implementer(*provided)
        class Evil:
            pass

        evil = Evil()
        for name, method in methods.items():
            setattr(evil, name, method)
        self.factory.chain = FilterChain(
            [EnabledFilter("evil", evil, onError="pass")], self.reactor
        )

    def assertAnswered(self, status: int) -> bytes:
        code, fields, body = splitResponse(self.client.value())
        self.assertEqual(code, status)
        [length] = values(fields, b"content-length")
        self.assertEqual(len(body), int(length))
        self.assertNotIn(b"X-Injected", self.client.value())
        self.assertIn(b"The filter &#x27;evil&#x27; returned a malformed message", body)
        return body

    def test_reasonWithCRLFInAnswer(self) -> None:
        """
        A request filter's answer whose reason phrase holds CRLF gets 500
        (even with C{on_error = "pass"}); the lines never reach the client.
        """
        self.useFilter(
            filterRequest=lambda request: Response(
                ResponseHead(200, b"OK\r\nX-Injected: yes"), b"hi"
            )
        )
        self.send(GET)
        self.assertAnswered(500)
        self.assertEqual(self.reactor.tcpClients, [])

    def test_interimStatusAsAnswer(self) -> None:
        """
        A filter's own answer must be final: a 100 would leave the client
        waiting for the real one (and take the next response for it).
        """
        for status in (100, 101, 99, 2000, -5):
            self.start()
            self.useFilter(
                filterRequest=lambda request, s=status: Response(ResponseHead(s), b"hi")
            )
            self.send(GET)
            self.assertAnswered(500)

    def test_requestBrokenInPlace(self) -> None:
        """
        A request filter that leaves the head with fields of the wrong type
        (a str path, a dict of headers, an int host) gets 500; the access
        log records the client's own target, and the connection goes on.
        """

        def strPath(request: Any) -> Any:
            request.path = "/str"
            return request

        def dictHeaders(request: Any) -> Any:
            request.headers = {b"a": b"b"}
            return None

        def intHost(request: Any) -> Any:
            request.host = 5
            request.target = "http://x/"
            return request

        for breaking in (strPath, dictHeaders, intHost):
            self.start()
            log = RecordingLog()
            self.factory.accessLog = log
            self.useFilter(filterRequest=breaking)
            self.send(GET)
            self.assertAnswered(500)
            self.assertEqual(
                [(r.status, r.target) for r in log.records],
                [(500, "http://example.com/a")],
            )
            self.assertFalse(self.client.disconnecting)
            self.assertEqual(self.reactor.tcpClients, [])

    def test_trustedFieldWithCRLF(self) -> None:
        """
        A field added behind C{Headers.add}'s back (C{addTrusted}) with a
        CRLF in its value gets 500 and never reaches the upstream.
        """

        def inject(request: Any) -> Any:
            request.headers.addTrusted(b"X-A", b"1\r\nX-Injected: yes")
            return request

        self.useFilter(filterRequest=inject)
        self.send(GET)
        self.assertAnswered(500)
        self.assertEqual(self.reactor.tcpClients, [])

    def test_responseReasonWithCRLF(self) -> None:
        """
        A response filter setting a reason phrase with CRLF gets 502, at
        once or through a Deferred.
        """
        for later in (False, True):
            self.start()

            def filterResponse(request: Any, response: Any) -> Any:
                response.reason = b"OK\r\nX-Injected: yes"
                return succeed(response) if later else response

            self.useFilter(filterResponse=filterResponse)
            upstream, _ = self.forward(GET)
            self.reply(upstream, OK)
            self.assertAnswered(502)

    def test_responseReasonStrThroughDeferred(self) -> None:
        """
        A str reason phrase set by a response filter that answers through a
        Deferred gets 502; the upstream's body never reaches the client
        without a head (it did, as if it were the response).
        """

        pending = []

        def hold(request: Any, response: Any) -> Any:
            response.reason = "Not Found"
            d: Deferred = Deferred()
            pending.append((d, response))
            return d

        self.useFilter(filterResponse=hold)
        upstream, _ = self.forward(GET)
        self.reply(upstream, OK)
        self.assertEqual(self.client.value(), b"")
        d, response = pending[0]
        d.callback(response)
        self.assertTrue(self.client.value().startswith(b"HTTP/1.1 502 "))
        self.assertAnswered(502)

    def test_statusOutOfRange(self) -> None:
        """
        A response filter setting status 2000 gets 502.
        """

        def filterResponse(request: Any, response: Any) -> Any:
            response.status = 2000
            return response

        self.useFilter(filterResponse=filterResponse)
        upstream, _ = self.forward(GET)
        self.reply(upstream, OK)
        self.assertAnswered(502)

    def test_bodyFilterReasonWithCRLF(self) -> None:
        """
        A body filter that changes the head's reason phrase to hold CRLF
        gets 502.
        """

        def bodyTransform(request: Any, response: Any) -> Any:
            response.reason = b"OK\r\nX-Injected: yes"
            return None

        self.useFilter(bodyTransform=bodyTransform)
        upstream, _ = self.forward(GET)
        self.reply(upstream, OK)
        self.assertAnswered(502)

    def test_tunnelRefusalWithCRLF(self) -> None:
        """
        A tunnel filter's refusal with CRLF in its reason phrase gets 500.
        """
        self.start(connectPorts=PortSet(["443"]))
        self.useFilter(
            filterTunnel=lambda request: Response(
                ResponseHead(403, b"No\r\nX-Injected: yes")
            )
        )
        self.send(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
        self.assertAnswered(500)

    def test_exceptionTextNotShown(self) -> None:
        """
        A filter's exception is named on the error page by its type only:
        its message may hold internals, or megabytes.
        """

        def fail(request: Any) -> Any:
            raise ValueError("secret internals " * 1000)

        self.useFilter(filterRequest=fail)
        self.factory.chain.filters[0].onError = "fail"
        self.factory.chain = FilterChain(self.factory.chain.filters, self.reactor)
        self.send(GET)
        code, _, body = splitResponse(self.client.value())
        self.assertEqual(code, 500)
        self.assertIn(b"failed (ValueError)", body)
        self.assertNotIn(b"secret", body)
        self.assertLess(len(body), 1024)
        self.flushLoggedErrors(ValueError)


def holdingChain() -> tuple[FilterChain, list[Deferred]]:
    """
    @return: a chain of one third-party response filter that answers every
        response head with a new L{Deferred}, and the list it keeps them in.
    """
    pending: list[Deferred] = []

    @implementer(IResponseFilter)
    class Hold:
        def filterResponse(self, request: Any, response: Any) -> Any:
            d: Deferred = Deferred()
            pending.append(d)
            return d

    return FilterChain([EnabledFilter("hold", Hold())]), pending


class FilterAnswerSafetyTests(ProxyTestCase):
    """
    The last line of defence around filters' answers.
    """

    def test_successAsTunnelRefusal(self) -> None:
        """
        A tunnel filter that answers a CONNECT with a 2xx of its own (which
        tells the client the tunnel is open) gets 500 instead.
        """

        @implementer(ITunnelFilter)
        class Sure:
            def filterTunnel(self, request: Any) -> Any:
                return Response(ResponseHead(200, b"OK"))

        self.start(connectPorts=PortSet(["443"]))
        self.factory.chain = FilterChain([EnabledFilter("sure", Sure())])
        self.send(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
        status, _, body = splitResponse(self.client.value())
        self.assertEqual(status, 500)
        self.assertIn(b"answered a CONNECT with 200", body)
        self.assertEqual(self.reactor.tcpClients, [])

    def test_errorActingOnDeferredAnswerResets(self) -> None:
        """
        If acting on a response filter's Deferred answer raises, the error
        is logged and the client's connection reset, not left open with
        the upstream's body going out without a head.
        """
        self.factory.chain, pending = holdingChain()
        upstream, upstreamTransport = self.forward(GET)
        self.reply(upstream, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello")

        def broken(*args: Any) -> None:
            raise RuntimeError("bug")

        self.patch(ProxyProtocol, "_sendResponseHead", broken)
        pending[0].callback(ResponseHead(200, b"OK", Headers()))
        self.reply(upstream, b"world")
        self.assertEqual(self.client.value(), b"")
        self.assertTrue(self.client.disconnected)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class AccessRecordProbeTests(ProxyTestCase):
    """
    Access records of exchanges that a probe found logged wrongly.
    """

    def setUp(self) -> None:
        super().setUp()
        self.log = RecordingLog()
        self.factory.accessLog = self.log

    def test_clientGoneMidResponseIsAborted(self) -> None:
        """
        A client that goes away before its response is complete is logged
        as aborted (Squid's C{TCP_MISS_ABORTED}); a complete exchange and a
        tunnel, which ends when a side closes, are not.
        """
        upstream, _ = self.forward(GET)
        self.reply(upstream, OK)
        self.send(GET)
        self.reply(upstream, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello")
        self.proxy.connectionLost(Failure(error.ConnectionLost()))
        self.assertEqual(
            [(r.status, r.aborted) for r in self.log.records],
            [(200, False), (200, True)],
        )
        self.assertIn(" TCP_MISS_ABORTED/200 ", formatSquid(self.log.records[1]))

    def test_tunnelNotAborted(self) -> None:
        """
        A tunnel's record is never marked aborted.
        """
        self.start(connectPorts=PortSet(["443"]))
        self.factory.accessLog = self.log
        self.send(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
        upstream, _ = self.accept()
        self.proxy.connectionLost(Failure(error.ConnectionDone()))
        [record] = self.log.records
        self.assertEqual((record.tunnel, record.aborted), (True, False))

    def test_pipelinedBytesInCountedPerRequest(self) -> None:
        """
        Two requests received in one read are each logged with their own
        bytes in, not the first with both.
        """
        first = GET
        second = GET.replace(b"/a", b"/bb")
        upstream, _ = self.forward(first + second)
        self.reply(upstream, OK)
        self.reactor.advance(0)
        self.reply(upstream, OK)
        self.assertEqual(
            [r.bytesIn for r in self.log.records], [len(first), len(second)]
        )
        self.assertEqual(self.factory.stats.bytesFromClients, len(first) + len(second))

    def test_headerTimeoutLoggedFromHeadStart(self) -> None:
        """
        A 408 for a head that did not arrive in time is logged with the
        time spent waiting for it, not as taking no time.
        """
        self.start(headerTimeout=3)
        self.factory.accessLog = self.log
        self.send(b"GET http://example.com/ HTTP/1.1\r\nHo")
        self.reactor.advance(3)
        [record] = self.log.records
        self.assertEqual(record.status, 408)
        self.assertTrue(2.5 < record.duration < 3.5, record.duration)


class ProbedRequestTests(ProxyTestCase):
    """
    Requests from real clients, as a probe found them handled.
    """

    def test_optionsForWholeServerForwardedAsAsterisk(self) -> None:
        """
        C{OPTIONS http://example.com} (empty path, no query) reaches the
        origin as C{OPTIONS *}, as the last proxy must send it.
        """
        _, transport = self.forward(
            b"OPTIONS http://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n"
        )
        self.assertTrue(
            transport.value().startswith(b"OPTIONS * HTTP/1.1\r\n"), transport.value()
        )


class TrailerRelayTests(ProxyTestCase):
    """
    Trailer sections are relayed without the fields a trailer cannot
    carry.
    """

    def test_responseTrailersCleaned(self) -> None:
        """
        Framing, routing and hop-by-hop fields in an upstream's trailers
        are not relayed; the others are.
        """
        upstream, _ = self.forward(GET)
        self.reply(
            upstream,
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
            b"0\r\nContent-Length: 99\r\nConnection: close\r\nHost: x\r\n"
            b"X-Checksum: abc\r\n\r\n",
        )
        self.assertTrue(
            self.client.value().endswith(b"\r\n0\r\nX-Checksum: abc\r\n\r\n"),
            self.client.value(),
        )

    def test_requestTrailersCleaned(self) -> None:
        """
        The same for a client's trailers forwarded upstream.
        """
        _, transport = self.forward(
            b"POST http://example.com/ HTTP/1.1\r\nHost: example.com\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
            b"0\r\nTransfer-Encoding: gzip\r\nKeep-Alive: 5\r\nX-Sum: 1\r\n\r\n"
        )
        self.assertTrue(
            transport.value().endswith(b"\r\n0\r\nX-Sum: 1\r\n\r\n"), transport.value()
        )


class FilterExitTests(ProxyTestCase):
    """
    A filter that calls C{sys.exit} while handling a request.
    """

    def test_exitIsAnswered(self) -> None:
        """
        The client gets a 500 naming the filter, as for any exception.
        """

        @implementer(IRequestFilter)
        class Exits:
            def filterRequest(self, request: Any) -> Any:
                raise SystemExit(3)

        self.factory.chain = FilterChain([EnabledFilter("exits", Exits())])
        self.send(GET)
        status, _, body = splitResponse(self.client.value())
        self.assertEqual(status, 500)
        self.assertIn(b"failed (SystemExit)", body)
        self.flushLoggedErrors(SystemExit)


class ReviewedSessionTests(ProxyTestCase):
    """
    Defects a review of this session's changes found in them.
    """

    def setUp(self) -> None:
        super().setUp()
        self.log = RecordingLog()
        self.factory.accessLog = self.log

    def test_refusedBodyCountsAllBytesIn(self) -> None:
        """
        The bytes of a refused body received with its head count for that
        request: they are not carried to a next request, which never comes.
        """
        self.start(maxBodyBytes=100)
        self.factory.accessLog = self.log
        data = _BIG_PUT + b"x" * 300
        self.send(data)
        [record] = self.log.records
        self.assertEqual((record.status, record.bytesIn), (413, len(data)))
        self.assertEqual(self.factory.stats.bytesFromClients, len(data))

    def test_abortedBeforeAnswerHasNoStatus(self) -> None:
        """
        A client that gives up on its second request before any answer is
        logged with no status (Squid's C{/000}), not the first one's.
        """
        upstream, _ = self.forward(GET)
        self.reply(upstream, OK)
        self.send(GET)
        self.proxy.connectionLost(Failure(error.ConnectionLost()))
        self.assertEqual(
            [(r.status, r.aborted) for r in self.log.records], [(200, False), (0, True)]
        )
        self.assertIn(" TCP_MISS_ABORTED/000 ", formatSquid(self.log.records[1]))

    def test_statusEnumFromFilter(self) -> None:
        """
        A third-party filter may answer with an C{http.HTTPStatus}.
        """

        @implementer(IRequestFilter)
        class Enum:
            def filterRequest(self, request: Any) -> Any:
                return Response(ResponseHead(HTTPStatus.FORBIDDEN, b"Forbidden"), b"no")

        self.factory.chain = FilterChain([EnabledFilter("enum", Enum())])
        self.send(GET)
        self.assertEqual(splitResponse(self.client.value())[:3:2], (403, b"no"))

    def test_subclassesChecked(self) -> None:
        """
        Subclasses of the message classes are checked like them.
        """

        class Head(ResponseHead):
            pass

        class Answer(Response):
            pass

        @implementer(IRequestFilter)
        class Sneaky:
            def filterRequest(self, request: Any) -> Any:
                return Answer(Head(403, b"Forbidden\r\nSet-Cookie: evil=1"), b"no")

        self.factory.chain = FilterChain([EnabledFilter("sneaky", Sneaky())])
        self.send(GET)
        self.assertEqual(splitResponse(self.client.value())[0], 500)
        self.assertNotIn(b"evil", self.client.value())

    def test_ownOptionsAnswered(self) -> None:
        """
        C{OPTIONS} for the proxy as a whole, in absolute form, is answered
        by the proxy like C{OPTIONS *}.
        """
        self.send(
            b"OPTIONS http://127.0.0.1:8080 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"
        )
        self.assertEqual(splitResponse(self.client.value())[0], 200)
        self.assertEqual(self.reactor.tcpClients, [])

    def test_upgradeHeldThenUpstreamLostIs502(self) -> None:
        """
        A 101 held by a response filter when the upstream goes away gets a
        502: nothing of it reached the client, whatever an earlier
        exchange on the connection sent (a 1xx left its count behind).
        """
        upstream, _ = self.forward(GET)
        self.reply(upstream, b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n")
        self.reply(
            upstream,
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        )
        self.factory.chain, pending = holdingChain()
        self.client.clear()
        self.send(UpgradeTests.UPGRADE)
        self.reply(
            upstream,
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
            b"Upgrade: websocket\r\n\r\n",
        )
        self.assertEqual(len(pending), 1)
        self.closeUpstream(upstream)
        self.assertEqual(splitResponse(self.client.value())[0], 502)


def makeX509(selfSigned: bool = True, notBefore: int = -1, notAfter: int = 2) -> Any:
    """
    @param notBefore: days from now the certificate becomes valid.
    @param notAfter: days from now it expires.
    @return: a certificate for C{example.com}, as pyOpenSSL's C{X509}.
    """
    from OpenSSL.crypto import X509

    _, cert = makeCertificate(
        "example.com", None if selfSigned else "Some CA", notBefore, notAfter
    )
    return X509.from_cryptography(cert)


class _TLSHandle:
    """
    What L{tlsFailure} asks of a TLS connection: the certificates the
    origin sent.
    """

    def __init__(self, chain: Optional[list]) -> None:
        self.chain = chain

    def get_peer_cert_chain(self) -> Optional[list]:
        return self.chain


VERIFY_FAILED = [("SSL routines", "", "certificate verify failed")]


class UpstreamTLSFailureTests(ProxyTestCase):
    """
    A TLS connection to an origin that fails before any response (its
    certificate not verified) gets a 502 naming the problem.
    """

    GET_TLS = b"GET https://example.com/a HTTP/1.1\r\nHost: example.com\r\n\r\n"

    def connectTLS(self, chain: Optional[list]) -> UpstreamProtocol:
        """
        Send an https request and complete its upstream connection, through
        the TLS layer, whose connection to OpenSSL reports the certificates
        C{chain} from the origin.

        @return: the upstream connection.
        """
        self.send(self.GET_TLS)
        self.assertEqual(self.target(), ("example.com", 443))
        protocol, _ = self.accept()
        # The endpoint's wrapper, then the TLS layer.
        upstream = protocol._wrappedProtocol.wrappedProtocol
        self.assertIsInstance(upstream, UpstreamProtocol)
        # Not handed out before its handshake is done.
        self.assertIsNone(self.proxy.upstream)
        upstream.transport.getHandle = lambda: _TLSHandle(chain)
        return upstream

    def failHandshake(self, reason: Exception, chain: Optional[list]) -> bytes:
        """
        Send an https request and fail its upstream connection with
        C{reason}, the origin having sent the certificates C{chain}.

        @return: the body of the answer, which must be a 502.
        """
        upstream = self.connectTLS(chain)
        upstream.connectionLost(Failure(reason))
        status, _, body = splitResponse(self.client.value())
        self.assertEqual(status, 502)
        self.assertNotIn(b"invalid response", body)
        self.assertEqual(self.flushLoggedErrors(), [])
        return body

    def test_selfSigned(self) -> None:
        from OpenSSL import SSL

        body = self.failHandshake(SSL.Error(VERIFY_FAILED), [makeX509()])
        self.assertIn(
            b"The TLS connection to example.com port 443 failed: its certificate"
            b" is self-signed",
            body,
        )

    def test_expired(self) -> None:
        from OpenSSL import SSL

        body = self.failHandshake(
            SSL.Error(VERIFY_FAILED), [makeX509(notBefore=-10, notAfter=-1)]
        )
        self.assertIn(b"its certificate has expired", body)

    def test_notYetValid(self) -> None:
        from OpenSSL import SSL

        body = self.failHandshake(
            SSL.Error(VERIFY_FAILED), [makeX509(notBefore=1, notAfter=10)]
        )
        self.assertIn(b"its certificate is not valid yet", body)

    def test_untrustedIssuer(self) -> None:
        from OpenSSL import SSL

        body = self.failHandshake(
            SSL.Error(VERIFY_FAILED), [makeX509(selfSigned=False)]
        )
        self.assertIn(b"not issued by an authority trusted here", body)

    def test_noCertificate(self) -> None:
        from OpenSSL import SSL

        body = self.failHandshake(SSL.Error(VERIFY_FAILED), None)
        self.assertIn(b"its certificate could not be verified", body)

    def test_unreadableCertificate(self) -> None:
        """
        A chain that cannot be read (an older C{cryptography}, an odd
        certificate) still gets its 502, not an exception in
        C{connectionLost}.
        """
        from OpenSSL import SSL

        body = self.failHandshake(SSL.Error(VERIFY_FAILED), [object()])
        self.assertIn(b"its certificate could not be verified", body)

    def test_wrongHost(self) -> None:
        from service_identity import VerificationError

        body = self.failHandshake(VerificationError(errors=[]), [makeX509()])
        self.assertIn(b"its certificate does not name this host", body)

    def test_malformedName(self) -> None:
        from service_identity import CertificateError

        body = self.failHandshake(
            CertificateError(
                "Certificate's DNS-ID b'*.*.example' contains too many wildcards."
            ),
            [makeX509()],
        )
        self.assertIn(b"its certificate gives a malformed name (Certificate", body)

    def test_otherTLSError(self) -> None:
        from OpenSSL import SSL

        body = self.failHandshake(
            SSL.Error([("SSL routines", "", "wrong version number")]), None
        )
        self.assertIn(b"failed: TLS error (wrong version number)", body)

    def test_handedOutAfterHandshake(self) -> None:
        """
        The connection carries the request once its handshake is done.
        """
        upstream = self.connectTLS(None)
        upstream.handshakeCompleted()
        self.assertIs(self.proxy.upstream, upstream)
        self.assertEqual(self.client.value(), b"")

    def test_handshakeUnderConnectTimeout(self) -> None:
        """
        An origin that accepts the connection but never completes the TLS
        handshake is under the connect deadline: 504 when it passes, and the
        connection is aborted.
        """
        upstream = self.connectTLS(None)
        self.reactor.advance(self.factory.settings.connectTimeout)
        status, _, body = splitResponse(self.client.value())
        self.assertEqual(status, 504)
        self.assertIn(b"Connecting to example.com port 443 timed out", body)
        self.assertTrue(upstream.transport.transport.disconnected)
        # Its connectionLost comes later and changes nothing.
        self.client.clear()
        upstream.connectionLost(Failure(error.ConnectionAborted()))
        self.assertEqual(self.client.value(), b"")
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_closedDuringHandshake(self) -> None:
        """
        An origin that closes during the handshake gets a 502 saying so.
        """
        body = self.failHandshake(error.ConnectionDone(), None)
        self.assertIn(
            b"failed: the origin closed the connection during the TLS handshake",
            body,
        )

    def test_abortedAtHandshakeEnd(self) -> None:
        """
        A handshake that completes on a connection already aborted (a host
        name check failing at its end) does not hand the connection out; its
        loss answers the request.
        """
        from service_identity import VerificationError

        upstream = self.connectTLS([makeX509()])
        upstream.transport.disconnecting = True
        upstream.handshakeCompleted()
        self.assertIsNone(self.proxy.upstream)
        upstream.connectionLost(Failure(VerificationError(errors=[])))
        status, _, body = splitResponse(self.client.value())
        self.assertEqual(status, 502)
        self.assertIn(b"its certificate does not name this host", body)

    def test_reloadClosesIdleTLS(self) -> None:
        """
        A reload closes the idle connections to https origins: they were
        verified under the old trust (a certificate authority removed from
        C{upstream_ca_file} must not be relied on until they time out).
        """
        upstream = self.connectTLS(None)
        upstream.handshakeCompleted()
        self.reply(upstream, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        pool = self.factory.pool
        self.assertEqual(pool.idleCount(), 1)
        self.factory.reconfigure(self.factory.settings, None)
        self.assertEqual(pool.idleCount(), 0)
        self.assertTrue(upstream.transport.disconnecting)

    def test_trustSetupFails(self) -> None:
        """
        A trust store that cannot be loaded gets a 502 saying so (and is
        logged), not an exception out of the request's connect.
        """
        from OpenSSL import SSL

        def broken() -> None:
            raise SSL.Error(
                [("x509 certificate routines", "", "cert already in hash table")]
            )

        self.patch(self.factory.pool, "_originTLS", broken)
        self.send(self.GET_TLS)
        status, _, body = splitResponse(self.client.value())
        self.assertEqual(status, 502)
        self.assertIn(b"TLS could not be set up", body)
        self.assertEqual(len(self.flushLoggedErrors(SSL.Error)), 1)

    def test_lostAfterResponseStarted(self) -> None:
        """
        A TLS error after response bytes arrived is a broken response, as
        before: the client connection is cut short.
        """
        from OpenSSL import SSL

        upstream = self.connectTLS(None)
        upstream.handshakeCompleted()
        self.reply(upstream, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        upstream.connectionLost(Failure(SSL.Error(VERIFY_FAILED)))
        self.assertTrue(self.client.value().startswith(b"HTTP/1.1 200 OK"))
        self.assertNotIn(b"502", self.client.value())
