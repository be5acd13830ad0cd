"""
Integration tests: persistent and pipelined client connections, and reuse
of upstream connections.
"""

from __future__ import annotations

import time

from .support import splitEcho


def get(url: str, extra: bytes = b"", version: bytes = b"HTTP/1.1") -> bytes:
    return b"GET %s %s\r\nHost: x\r\n%s\r\n" % (url.encode(), version, extra)


def test_http11PersistentByDefault(proxy, origin) -> None:
    """
    An HTTP/1.1 client connection stays open for further requests.
    """
    with proxy.connect() as c:
        for i in range(3):
            c.send(get(origin.url("/echo?n=%d" % i)))
            resp = c.readResponse()
            assert resp.status == 200, resp
            assert splitEcho(resp.body)[0].startswith(b"GET /echo?n=%d " % i)


def test_http10KeepAlive(proxy, origin) -> None:
    """
    An HTTP/1.0 client that sends C{Connection: keep-alive} keeps its
    connection for a second request.
    """
    with proxy.connect() as c:
        for i in range(2):
            c.send(get(origin.url("/echo?k=%d" % i), b"Connection: keep-alive\r\n", b"HTTP/1.0"))
            resp = c.readResponse()
            assert resp.status == 200, resp
            assert resp.framing == "length", resp
            assert splitEcho(resp.body)[0].startswith(b"GET /echo?k=%d " % i)


def test_http10ClosedByDefault(proxy, origin) -> None:
    """
    An HTTP/1.0 request without keep-alive gets its response and then the
    connection is closed.
    """
    with proxy.connect() as c:
        c.send(get(origin.url("/echo"), version=b"HTTP/1.0"))
        resp = c.readResponse()
        assert resp.status == 200, resp
        closed, extra = c.waitClosed(3)
        assert closed and extra == b""


def test_connectionCloseHonoured(proxy, origin) -> None:
    """
    C{Connection: close} from a 1.1 client closes the connection after the
    response.
    """
    with proxy.connect() as c:
        c.send(get(origin.url("/echo"), b"Connection: close\r\n"))
        resp = c.readResponse()
        assert resp.status == 200, resp
        closed, extra = c.waitClosed(3)
        assert closed and extra == b""


def test_pipelinedAnsweredInOrder(proxy, origin) -> None:
    """
    Several requests sent in one packet are answered in order, even when
    the first one is the slowest.
    """
    with proxy.connect() as c:
        c.send(
            get(origin.url("/slow-head?delay=0.5"))
            + get(origin.url("/echo?p=2"))
            + b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc" % origin.url("/echo?p=3").encode()
            + get(origin.url("/bytes?n=10"))
        )
        first = c.readResponse()
        assert first.body == b"slow\n", first
        second = c.readResponse()
        assert splitEcho(second.body)[0].startswith(b"GET /echo?p=2 ")
        third = c.readResponse()
        head, body = splitEcho(third.body)
        assert head.startswith(b"POST /echo?p=3 ") and body == b"abc"
        fourth = c.readResponse()
        assert len(fourth.body) == 10


def test_upstreamConnectionReused(proxy, makeOrigin) -> None:
    """
    Sequential requests to one origin, on one client connection or on
    several, travel over a single upstream connection.
    """
    fresh = makeOrigin()
    conns = set()
    with proxy.connect() as c:
        for i in range(3):
            c.send(get(fresh.url("/echo?r=%d" % i)))
            resp = c.readResponse()
            assert resp.status == 200
            conns.add(resp.header(b"x-conn"))
    for i in range(2):
        resp = proxy.get(fresh.url("/echo?s=%d" % i))
        conns.add(resp.header(b"x-conn"))
    assert conns == {b"1"}
    assert fresh.stats()["connections"] == 1


def test_closedPooledConnectionNotUsed(proxy, makeOrigin) -> None:
    """
    An idle pooled connection that the origin has closed is noticed; the
    next request goes over a new connection and succeeds.
    """
    fresh = makeOrigin()
    first = proxy.get(fresh.url("/echo?linger-close=0.1"))
    assert first.header(b"x-conn") == b"1"
    time.sleep(0.6)
    second = proxy.get(fresh.url("/echo?after"))
    assert second.status == 200, second
    assert second.header(b"x-conn") == b"2"


def test_idempotentRequestRetried(proxy, makeOrigin) -> None:
    """
    When a pooled connection is closed by the origin as the next (idempotent)
    request arrives on it, the proxy retries on a fresh connection and the
    client never sees the failure.
    """
    fresh = makeOrigin()
    first = proxy.get(fresh.url("/echo?drop-next=1"))
    assert first.header(b"x-conn") == b"1"
    second = proxy.get(fresh.url("/echo?retry"))
    assert second.status == 200, second
    assert second.header(b"x-conn") == b"2"
    paths = fresh.stats()["paths"]
    assert paths == {"1": ["/echo?drop-next=1", "/echo?retry"], "2": ["/echo?retry"]}


def test_nonIdempotentRequestNotRetried(proxy, makeOrigin) -> None:
    """
    A POST lost the same way is not replayed: the client gets 502 and the
    origin saw it once.
    """
    fresh = makeOrigin()
    first = proxy.get(fresh.url("/echo?drop-next=1"))
    assert first.header(b"x-conn") == b"1"
    resp, conn = proxy.request(
        b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi" % fresh.url("/echo?post").encode()
    )
    conn.close()
    assert resp.status == 502, resp
    assert fresh.stats()["paths"] == {"1": ["/echo?drop-next=1", "/echo?post"]}
