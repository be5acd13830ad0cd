"""
Integration tests: what the proxy forwards, checked byte for byte with the
origin's C{/echo}, and message bodies in both directions.
"""

from __future__ import annotations

import hashlib
import json
import re
import time

import pytest

from .origin import pattern, patternDigest
from .support import echoHeaders, splitEcho


def forward(proxy, origin, raw: bytes, method: bytes = b"GET"):
    """
    Send C{raw} (with C{{o}} replaced by the origin's authority) through
    the proxy on a fresh connection.

    @return: the response; the connection is closed.
    """
    raw = raw.replace(b"{o}", origin.authority.encode())
    resp, conn = proxy.request(raw, method)
    conn.close()
    return resp


def test_absoluteFormBecomesOriginForm(proxy, origin) -> None:
    """
    An absolute-form request is forwarded in origin form, with the Host
    field taken from the target (the client's Host is replaced).
    """
    resp = forward(
        proxy,
        origin,
        b"GET http://{o}/echo/x?y=1 HTTP/1.1\r\nHost: wrong.example\r\nX-A: b\r\n\r\n",
    )
    assert resp.status == 200, resp
    head, body = splitEcho(resp.body)
    assert head.startswith(b"GET /echo/x?y=1 HTTP/1.1\r\n"), head
    hosts = [v for n, v in echoHeaders(head) if n == b"host"]
    assert hosts == [origin.authority.encode()], head
    assert (b"x-a", b"b") in echoHeaders(head)
    assert body == b""


def test_ipv6Literal(proxy, origin6) -> None:
    """
    An IPv6 literal target (C{http://[::1]:PORT/...}) reaches the origin on
    ::1, with the bracketed literal as Host.
    """
    resp = proxy.get(origin6.url("/echo?v6"))
    assert resp.status == 200, resp
    head, _ = splitEcho(resp.body)
    assert head.startswith(b"GET /echo?v6 HTTP/1.1\r\n"), head
    assert (b"host", origin6.authority.encode()) in echoHeaders(head)


@pytest.mark.parametrize(
    "target",
    [
        b"/echo/a%2Fb/c;p=1/-._~!$&'()*+,=:@?a=1&b=%20&c=/?%3F",
        b"/echo?a=1&b=%20",
        b"/echo/%E2%82%AC/%2e%2E/./../x",
        b"/echo//double//slash?",
        b"/echo?q=a+b&empty=&=v&flag",
    ],
)
def test_pathAndQueryByteExact(proxy, origin, target: bytes) -> None:
    """
    The path and query reach the origin exactly as the client wrote them:
    no decoding of C{%2F}, no normalisation of dot segments or slashes, no
    re-encoding of the query.
    """
    resp = forward(
        proxy, origin, b"GET http://{o}" + target + b" HTTP/1.1\r\nHost: {o}\r\n\r\n"
    )
    assert resp.status == 200, resp
    head, _ = splitEcho(resp.body)
    assert head.split(b"\r\n")[0] == b"GET " + target + b" HTTP/1.1"


@pytest.mark.parametrize(
    "method",
    [
        b"GET",
        b"POST",
        b"PUT",
        b"DELETE",
        b"PATCH",
        b"OPTIONS",
        b"PURGE",
        b"PROPFIND",
        b"M-SEARCH",
        b"X_CUSTOM.1",
    ],
)
def test_methods(proxy, origin, method: bytes) -> None:
    """
    Standard and extension methods are forwarded unchanged, with their
    bodies.
    """
    body = b"payload for " + method
    resp = forward(
        proxy,
        origin,
        method
        + b" http://{o}/echo HTTP/1.1\r\nHost: {o}\r\nContent-Length: %d\r\n\r\n"
        % len(body)
        + body,
    )
    assert resp.status == 200, resp
    head, got = splitEcho(resp.body)
    assert head.startswith(method + b" /echo HTTP/1.1\r\n"), head
    assert got == body


def test_contentLengthUpload(proxy, origin) -> None:
    """
    A 5 MiB Content-Length request body arrives complete and intact.
    """
    size = 5 << 20
    data = pattern(0, size)
    resp = forward(
        proxy,
        origin,
        b"POST http://{o}/upload HTTP/1.1\r\nHost: {o}\r\nContent-Length: %d\r\n\r\n"
        % size
        + data,
    )
    assert resp.status == 200, resp
    assert json.loads(resp.body) == {
        "count": size,
        "sha256": hashlib.sha256(data).hexdigest(),
    }


def test_chunkedUpload(proxy, origin) -> None:
    """
    A chunked request body (odd chunk sizes, a chunk extension, a trailer
    section) arrives complete and intact.
    """
    data = pattern(7, 300_000)
    chunks = []
    offset = 0
    for size in (1, 10, 4095, 65536, 100_000):
        chunks.append(b"%x;ext=1\r\n%s\r\n" % (size, data[offset : offset + size]))
        offset += size
    chunks.append(b"%x\r\n%s\r\n" % (len(data) - offset, data[offset:]))
    chunks.append(b"0\r\n\r\n")
    resp = forward(
        proxy,
        origin,
        b"POST http://{o}/upload HTTP/1.1\r\nHost: {o}\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"".join(chunks),
    )
    assert resp.status == 200, resp
    assert json.loads(resp.body) == {
        "count": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }


def test_chunkedUploadEchoed(proxy, origin) -> None:
    """
    The origin sees a correctly framed body for a chunked upload: the
    echoed body is the decoded payload.
    """
    resp = forward(
        proxy,
        origin,
        b"PUT http://{o}/echo HTTP/1.1\r\nHost: {o}\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
    )
    assert resp.status == 200, resp
    head, body = splitEcho(resp.body)
    assert body == b"abcde"


@pytest.mark.parametrize("route", ["/bytes", "/chunked", "/close"])
def test_responseBodies(proxy, origin, route: str) -> None:
    """
    Responses framed by Content-Length, chunked encoding and connection
    close all arrive complete (3 MB) and correctly framed for the client.
    """
    n = 3_000_000
    with proxy.connect(timeout=10) as c:
        c.send(
            b"GET %s HTTP/1.1\r\nHost: %s\r\n\r\n"
            % (origin.url(route + "?n=%d" % n).encode(), origin.authority.encode())
        )
        resp = c.readResponse(timeout=10)
    assert resp.status == 200, resp
    assert len(resp.body) == n
    assert hashlib.sha256(resp.body).hexdigest() == patternDigest(n)


def test_pauseMidBodyRelayedAtOnce(proxy, origin) -> None:
    """
    Bytes sent before an origin pauses mid-body reach the client long
    before the pause ends, even on a fast upstream connection that reads
    in bulk (one wake-up per half megabyte, see proxyapp.fastio.BULK_READ):
    the bytes left below its receive low-water mark are read within
    milliseconds.  A first large download on the same connection grows the
    upstream socket's receive buffer, so that bulk mode is entered, and
    the client reads in large pieces, so that it keeps up.
    """
    n, stallAt, stall = 16 << 20, (12 << 20) + 1000, 4.0
    with proxy.connect(timeout=20) as c:
        for query in (
            "n=%d" % (32 << 20),
            "n=%d&stall-at=%d&stall=%s" % (n, stallAt, stall),
        ):
            c.send(
                b"GET %s HTTP/1.1\r\nHost: %s\r\n\r\n"
                % (origin.url("/bytes?" + query).encode(), origin.authority.encode())
            )
            head = c.readUntil(b"\r\n\r\n", timeout=10)
            assert head.startswith(b"HTTP/1.1 200 "), head
            size = 32 << 20 if "stall" not in query else stallAt
            started = time.monotonic()
            before = c.readFast(size, timeout=stall + 10)
            waited = time.monotonic() - started
        after = c.readFast(n - stallAt, timeout=stall + 10)
    assert waited < stall / 2, waited
    body = before + after
    assert hashlib.sha256(body).hexdigest() == patternDigest(n)


def test_closeDelimitedKeepsClientConnection(proxy, origin) -> None:
    """
    A close-delimited upstream response is re-framed for a 1.1 client (or
    the client connection is closed after it); either way the client can
    tell where the body ends.
    """
    with proxy.connect() as c:
        c.send(
            b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % origin.url("/close?n=1000").encode()
        )
        resp = c.readResponse()
        assert resp.body == pattern(0, 1000)
        if resp.framing != "close":
            c.send(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % origin.url("/echo").encode())
            assert c.readResponse().status == 200


@pytest.mark.parametrize("route", ["/bytes", "/chunked", "/close"])
def test_headHasNoBody(proxy, origin, route: str) -> None:
    """
    A HEAD response has no body, whatever framing the same GET would use
    (Content-Length, chunked, or none at all): the next pipelined response
    follows the head directly.
    """
    with proxy.connect() as c:
        c.send(
            b"HEAD %s HTTP/1.1\r\nHost: x\r\n\r\n"
            % origin.url(route + "?n=1000").encode()
            + b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n"
            % origin.url("/echo?second").encode()
        )
        first = c.readResponse(b"HEAD")
        assert first.status == 200
        if route == "/bytes":
            assert first.header(b"content-length") == b"1000"
        second = c.readResponse()
        assert second.status == 200, second
        assert splitEcho(second.body)[0].startswith(b"GET /echo?second ")


@pytest.mark.parametrize("status,query", [(204, ""), (304, ""), (304, "?cl=5")])
def test_noBodyStatuses(proxy, origin, status: int, query: str) -> None:
    """
    204 and 304 responses have no body, even when the 304 carries a
    Content-Length; the next pipelined response follows the head directly.
    """
    with proxy.connect() as c:
        c.send(
            b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n"
            % origin.url("/status/%d%s" % (status, query)).encode()
            + b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % origin.url("/echo?after").encode()
        )
        first = c.readResponse()
        assert first.status == status
        assert b"transfer-encoding" not in first.headerNames()
        second = c.readResponse()
        assert second.status == 200, second
        assert splitEcho(second.body)[0].startswith(b"GET /echo?after ")


def test_interimResponseForwarded(proxy, origin) -> None:
    """
    A 1xx interim response (103 Early Hints) is passed to the client, with
    no body, before the final response.
    """
    with proxy.connect() as c:
        c.send(
            b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % origin.url("/status/103").encode()
        )
        interim = c.readResponse(interim=True)
        assert interim.status == 103, interim
        assert interim.header(b"x-interim") is not None
        final = c.readResponse()
        assert final.status == 200
        assert final.body == b"final\n"


def test_expectContinue(proxy, origin) -> None:
    """
    With C{Expect: 100-continue} the client receives the origin's
    100 Continue before sending the body, and then the final response.
    """
    with proxy.connect() as c:
        c.send(
            b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nExpect: 100-continue\r\n\r\n"
            % origin.url("/expect").encode()
        )
        interim = c.readResponse(interim=True, timeout=3)
        assert interim.status == 100, interim
        assert (
            interim.header(b"x-origin-100") == b"yes"
        ), "the 100 did not come from the origin"
        c.send(b"abcdef")
        final = c.readResponse()
        assert final.status == 200, final
        assert final.body == b"received 6\n"


def test_expectationFailed(proxy, origin) -> None:
    """
    An origin that refuses the expectation answers 417 and the client gets
    it without having sent the body.
    """
    with proxy.connect() as c:
        c.send(
            b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nExpect: 100-continue\r\n\r\n"
            % origin.url("/expect-reject").encode()
        )
        resp = c.readResponse(timeout=3)
        assert resp.status == 417, resp


def test_hopByHopRemovedFromRequest(proxy, origin) -> None:
    """
    Connection, every field it names, Keep-Alive, Proxy-Connection,
    Proxy-Authorization, TE and Upgrade (not upgrading) are not forwarded;
    end-to-end fields are.
    """
    resp = forward(
        proxy,
        origin,
        b"GET http://{o}/echo HTTP/1.1\r\nHost: {o}\r\n"
        b"Connection: X-Foo, keep-alive\r\nX-Foo: secret\r\nKeep-Alive: timeout=5\r\n"
        b"Proxy-Connection: keep-alive\r\nProxy-Authorization: Basic dXNlcjpwYXNz\r\n"
        b"TE: trailers\r\nUpgrade: h2c\r\nX-Bar: kept\r\n\r\n",
    )
    assert resp.status == 200, resp
    head, _ = splitEcho(resp.body)
    names = {n for n, _ in echoHeaders(head)}
    for gone in (
        b"x-foo",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authorization",
        b"te",
        b"upgrade",
    ):
        assert gone not in names, head
    for n, v in echoHeaders(head):
        if n == b"connection":
            assert {t.strip().lower() for t in v.split(b",")} <= {
                b"keep-alive",
                b"close",
            }, head
    assert (b"x-bar", b"kept") in echoHeaders(head)


def test_hopByHopRemovedFromResponse(proxy, origin) -> None:
    """
    Hop-by-hop fields of the response (Connection and the fields it names,
    Keep-Alive, Proxy-Connection, Upgrade, TE) are not passed to the client.
    """
    resp = proxy.get(origin.url("/hop"))
    assert resp.status == 200, resp
    names = set(resp.headerNames())
    for gone in (b"x-secret", b"keep-alive", b"proxy-connection", b"upgrade", b"te"):
        assert gone not in names, resp.rawHead
    assert set(resp.tokens(b"connection")) <= {b"keep-alive", b"close"}, resp.rawHead
    assert resp.header(b"x-kept") == b"yes"
    assert resp.body == b"hop\n"


def test_viaBothWays(proxy, origin) -> None:
    """
    The proxy appends a Via entry to the forwarded request and to the
    response, keeping an existing Via value in front of it.
    """
    resp = forward(
        proxy,
        origin,
        b"GET http://{o}/echo HTTP/1.1\r\nHost: {o}\r\nVia: 1.0 earlier\r\n\r\n",
    )
    assert resp.status == 200, resp
    head, _ = splitEcho(resp.body)
    via = b", ".join(v for n, v in echoHeaders(head) if n == b"via")
    assert re.match(rb"1\.0 earlier, 1\.1 \S+", via), head
    assert resp.header(b"via") is not None and resp.header(b"via").startswith(
        b"1.1 "
    ), resp.rawHead


@pytest.mark.parametrize("method", [b"TRACE", b"OPTIONS"])
def test_maxForwardsZeroAnsweredByProxy(proxy, makeOrigin, method: bytes) -> None:
    """
    TRACE and OPTIONS with C{Max-Forwards: 0} are answered by the proxy
    itself; the origin sees no request.
    """
    fresh = makeOrigin()
    resp = forward(
        proxy,
        fresh,
        method + b" http://{o}/echo HTTP/1.1\r\nHost: {o}\r\nMax-Forwards: 0\r\n\r\n",
    )
    assert 200 <= resp.status < 300, resp
    assert resp.header(b"x-conn") is None, resp
    assert fresh.stats()["requests"] == 0


@pytest.mark.parametrize("method", [b"TRACE", b"OPTIONS"])
def test_maxForwardsDecremented(proxy, origin, method: bytes) -> None:
    """
    TRACE and OPTIONS with C{Max-Forwards: 3} are forwarded with
    C{Max-Forwards: 2}.
    """
    resp = forward(
        proxy,
        origin,
        method + b" http://{o}/echo HTTP/1.1\r\nHost: {o}\r\nMax-Forwards: 3\r\n\r\n",
    )
    assert resp.status == 200, resp
    head, _ = splitEcho(resp.body)
    assert [v for n, v in echoHeaders(head) if n == b"max-forwards"] == [b"2"], head


def test_http10ClientForwarded(proxy, origin) -> None:
    """
    A chunked upstream response to an HTTP/1.0 client is re-framed so that
    a 1.0 client understands it (Content-Length or close, never chunked).
    """
    with proxy.connect() as c:
        c.send(b"GET %s HTTP/1.0\r\n\r\n" % origin.url("/chunked?n=5000").encode())
        resp = c.readResponse()
        assert resp.status == 200, resp
        assert resp.framing in ("length", "close"), resp
        assert resp.body == pattern(0, 5000)
