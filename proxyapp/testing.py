# -*- test-case-name: tests.test_testing -*-
"""
Helpers for filter authors' tests: build message heads, check a filter
against its interfaces, and run real traffic through an in-memory proxy
(client, proxy and a fake origin wired together without sockets).

Example::

    from proxyapp.testing import InMemoryProxy

    def test_blocksAds(self):
        proxy = InMemoryProxy([MyFilter()])
        response = proxy.get("http://ads.example/banner")
        self.assertEqual(response.status, 403)
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Optional, Union

from twisted.internet.address import IPv4Address
from twisted.internet.defer import succeed
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.testing import MemoryReactorClock, StringTransport
from zope.interface import implementer
from zope.interface.verify import verifyObject

from proxyapp.chain import EnabledFilter, FilterChain
from proxyapp.config import Settings
from proxyapp.http11 import (
    NEED_DATA,
    PAUSED,
    EndOfMessage,
    RequestParser,
    ResponseParser,
)
from proxyapp.message import (
    Headers,
    RequestHead,
    Response,
    ResponseHead,
    simpleResponse,
)

__all__ = [
    "makeRequestHead",
    "makeResponseHead",
    "makeResponse",
    "verifyFilter",
    "InMemoryProxy",
    "ProxiedResponse",
    "OriginRequest",
]

HeaderList = Iterable[tuple[bytes, bytes]]


def makeRequestHead(
    method: bytes = b"GET",
    url: bytes = b"http://example.com/",
    headers: HeaderList = (),
    client: tuple[str, int] = ("127.0.0.1", 50000),
    user: Optional[str] = None,
    version: bytes = b"HTTP/1.1",
) -> RequestHead:
    """
    Build a request head as the proxy would hand it to a filter, by parsing
    a real request (so targets are split exactly as in production).
    """
    fields = list(headers)
    if (
        not any(name.lower() == b"host" for name, _ in fields)
        and version == b"HTTP/1.1"
    ):
        authority = url.split(b"://", 1)[-1].split(b"/", 1)[0] if b"://" in url else url
        fields.insert(0, (b"Host", authority))
    raw = method + b" " + url + b" " + version + b"\r\n"
    raw += b"".join(name + b": " + value + b"\r\n" for name, value in fields) + b"\r\n"
    parser = RequestParser()
    parser.receiveData(raw)
    request = parser.nextEvent()
    assert isinstance(request, RequestHead)
    request.clientAddress = client
    request.user = user
    return request


def makeResponseHead(
    status: int = 200, headers: HeaderList = (), reason: bytes = b"OK"
) -> ResponseHead:
    """
    Build a response head.
    """
    return ResponseHead(status, reason, Headers(list(headers)))


def makeResponse(
    status: int = 200, body: bytes = b"", contentType: bytes = b"text/plain"
) -> Response:
    """
    Build a complete L{Response} (what a filter returns to answer itself).
    """
    return simpleResponse(status, body, contentType)


def verifyFilter(filter: object) -> list[Any]:
    """
    Check that C{filter} provides at least one filter interface and
    implements each one it claims, as the proxy does when it loads it.

    @return: the interfaces it provides.
    @raise AssertionError: if it provides none.
    @raise zope.interface.Invalid: if an implementation is wrong.
    """
    from proxyapp.discovery import FILTER_INTERFACES

    provided = [i for i in FILTER_INTERFACES if i.providedBy(filter)]
    if not provided:
        raise AssertionError(f"{filter!r} provides no filter interface")
    for interface in provided:
        verifyObject(interface, filter)
    return provided


class OriginRequest:
    """
    A request as the fake origin received it.

    @ivar head: the L{RequestHead} (origin-form target).
    @ivar body: the whole body.
    @ivar raw: the bytes of the head as received.
    """

    def __init__(self, head: RequestHead, body: bytes, raw: bytes) -> None:
        self.head = head
        self.body = body
        self.raw = raw


class ProxiedResponse:
    """
    A response as the client received it.

    @ivar status: the status code.
    @ivar headers: the L{Headers}.
    @ivar body: the de-chunked body.
    @ivar raw: every byte the client received.
    """

    def __init__(self, status: int, headers: Headers, body: bytes, raw: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.raw = raw

    def __repr__(self) -> str:
        return f"<ProxiedResponse {self.status} {len(self.body)} bytes>"


OriginHandler = Callable[
    [OriginRequest], Union[bytes, tuple[int, list[tuple[bytes, bytes]], bytes]]
]


def _defaultOrigin(
    request: OriginRequest,
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    return (
        200,
        [(b"Content-Type", b"text/plain")],
        b"hello from " + (request.head.headers.get(b"host") or b"?"),
    )


class _OriginTransport(StringTransport):
    """
    The upstream side's transport: what the proxy writes is parsed as
    requests and answered by the origin handler on the next reactor turn.
    """

    def __init__(self, harness: "InMemoryProxy", host: str, port: int) -> None:
        StringTransport.__init__(
            self, peerAddress=IPv4Address("TCP", "127.0.0.1", port)
        )
        self.harness = harness
        self.parser = RequestParser()
        self.protocol: Any = None
        self._head: Optional[RequestHead] = None
        self._body: list[bytes] = []
        self._raw = b""

    def write(self, data: bytes) -> None:
        StringTransport.write(self, data)
        self.parser.receiveData(data)
        while True:
            event = self.parser.nextEvent()
            if event is NEED_DATA or event is PAUSED:
                return
            if isinstance(event, RequestHead):
                self._head = event
                self._body = []
            elif isinstance(event, bytes):
                self._body.append(event)
            elif isinstance(event, EndOfMessage):
                request = OriginRequest(self._head, b"".join(self._body), b"")  # type: ignore[arg-type]
                self.harness.originRequests.append(request)
                self.parser.startNextCycle()
                self.harness.reactor.callLater(0, self._answer, request)

    def writeSequence(self, data: Iterable[bytes]) -> None:
        self.write(b"".join(data))

    def _answer(self, request: OriginRequest) -> None:
        answer = self.harness.origin(request)
        if isinstance(answer, bytes):
            raw = answer
        else:
            status, headers, body = answer
            fields = [(n, v) for n, v in headers if n.lower() != b"content-length"]
            fields.append((b"Content-Length", b"%d" % len(body)))
            head = ResponseHead(status, b"OK", Headers(fields))
            raw = head.serialize() + (b"" if request.head.method == b"HEAD" else body)
        if self.protocol is not None and self.connected:
            self.protocol.dataReceived(raw)

    def loseConnection(self) -> None:
        if self.connected:
            self.connected = False
            self.harness.reactor.callLater(0, self._lost)

    def abortConnection(self) -> None:
        self.loseConnection()

    def _lost(self) -> None:
        from twisted.internet.error import ConnectionDone
        from twisted.python.failure import Failure

        if self.protocol is not None:
            self.protocol.connectionLost(Failure(ConnectionDone()))

    def loseWriteConnection(self) -> None:
        pass


@implementer(IStreamClientEndpoint)
class _OriginEndpoint:
    def __init__(self, harness: "InMemoryProxy", host: str, port: int) -> None:
        self.harness = harness
        self.host = host
        self.port = port

    def connect(self, factory: Any) -> Any:
        protocol = factory.buildProtocol(None)
        transport = _OriginTransport(self.harness, self.host, self.port)
        transport.protocol = protocol
        self.harness.connections.append((self.host, self.port))
        protocol.makeConnection(transport)
        return succeed(protocol)


class _ClientTransport(StringTransport):
    def loseConnection(self) -> None:
        StringTransport.loseConnection(self)
        self.connected = False

    def loseWriteConnection(self) -> None:
        pass


class InMemoryProxy:
    """
    A real L{proxyapp.protocol.ProxyFactory} with the given filters, in
    front of a fake origin, driven by a L{MemoryReactorClock}.

    @ivar originRequests: every L{OriginRequest} the origin received.
    @ivar connections: C{(host, port)} of every upstream connection opened.
    """

    def __init__(
        self,
        filters: Iterable[Union[object, EnabledFilter]] = (),
        origin: OriginHandler = _defaultOrigin,
        settings: Optional[Settings] = None,
        client: tuple[str, int] = ("127.0.0.1", 50000),
    ) -> None:
        from proxyapp.protocol import ProxyFactory

        self.reactor = MemoryReactorClock()
        self.origin = origin
        self.originRequests: list[OriginRequest] = []
        self.connections: list[tuple[str, int]] = []
        enabled = [
            f if isinstance(f, EnabledFilter) else EnabledFilter(type(f).__name__, f)
            for f in filters
        ]
        self.chain = FilterChain(enabled, self.reactor)
        if settings is None:
            settings = Settings(viaPseudonym="webproxy-test")
        self.factory = ProxyFactory(
            self.reactor,
            settings,
            lambda host, port: _OriginEndpoint(self, host, port),
            chain=self.chain,
        )
        self.client = client

    def request(self, raw: bytes, maxTurns: int = 1000) -> ProxiedResponse:
        """
        Send raw request bytes from a fresh client connection and return
        the response the client received.
        """
        protocol = self.factory.buildProtocol(None)
        transport = _ClientTransport(
            hostAddress=IPv4Address("TCP", "127.0.0.1", 3128),
            peerAddress=IPv4Address("TCP", self.client[0], self.client[1]),
        )
        protocol.makeConnection(transport)
        protocol.dataReceived(raw)
        parser = ResponseParser()
        method = raw.split(b" ", 1)[0]
        parser.expectResponse(method)
        status, headers, body = 0, Headers(), []
        consumed = 0
        for _ in range(maxTurns):
            data = transport.value()
            if len(data) > consumed:
                parser.receiveData(data[consumed:])
                consumed = len(data)
            while True:
                event = parser.nextEvent()
                if isinstance(event, ResponseHead):
                    if event.status >= 200 or event.status == 101:
                        status, headers = event.status, event.headers
                elif isinstance(event, (bytes, memoryview)):
                    body.append(bytes(event))
                elif isinstance(event, EndOfMessage):
                    return ProxiedResponse(
                        status, headers, b"".join(body), transport.value()
                    )
                else:
                    break
            if method == b"CONNECT" and status:
                # A tunnel has no message end; its head is the answer.
                return ProxiedResponse(
                    status, headers, b"".join(body), transport.value()
                )
            if not transport.connected and parser.framing == 3:
                parser.receiveEOF()
                continue
            self.reactor.advance(0.01)
        raise AssertionError(
            f"no complete response after {maxTurns} turns; client got {transport.value()!r}"
        )

    def get(
        self,
        url: str,
        headers: HeaderList = (),
        method: bytes = b"GET",
        body: bytes = b"",
    ) -> ProxiedResponse:
        """
        Send one absolute-form request for C{url} and return the response.
        """
        target = url.encode("ascii")
        authority = target.split(b"://", 1)[-1].split(b"/", 1)[0]
        fields = [(b"Host", authority)] + list(headers)
        if body:
            fields.append((b"Content-Length", b"%d" % len(body)))
        raw = method + b" " + target + b" HTTP/1.1\r\n"
        raw += b"".join(n + b": " + v + b"\r\n" for n, v in fields) + b"\r\n" + body
        return self.request(raw)
