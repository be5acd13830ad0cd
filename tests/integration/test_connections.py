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
            c.send(
                get(
                    origin.url("/echo?k=%d" % i),
                    b"Connection: keep-alive\r\n",
                    b"HTTP/1.0",
                )
            )
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
            + b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
            % origin.url("/echo?p=3").encode()
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
        b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi"
        % fresh.url("/echo?post").encode()
    )
    conn.close()
    assert resp.status == 502, resp
    assert fresh.stats()["paths"] == {"1": ["/echo?drop-next=1", "/echo?post"]}


def test_pipelinedPostAfterOriginClose(proxy, makeOrigin) -> None:
    """
    An origin that closes right behind a response, without saying
    C{Connection: close} (its end of file in the segment with the response's
    last bytes), has its end of file waiting when a POST pipelined behind
    the request is forwarded: the POST goes over a new connection instead of
    the dead one (it got 502 before), and the origin sees it once.
    """
    fresh = makeOrigin()
    with proxy.connect() as c:
        c.send(
            get(fresh.url("/echo?close-corked=1"))
            + b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi"
            % fresh.url("/echo?post").encode()
        )
        first = c.readResponse()
        second = c.readResponse()
    assert first.status == 200, first
    assert second.status == 200, second
    assert second.body.endswith(b"hi")
    assert fresh.stats()["paths"] == {
        "1": ["/echo?close-corked=1"],
        "2": ["/echo?post"],
    }


def waitFor(predicate, timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def test_pipelinedErrorKeepsOrder(proxy, origin) -> None:
    """
    A pipelined request that fails (502, unreachable origin) is answered in
    its place, and the requests after it are still answered in order.
    """
    from .support import freePort

    dead = freePort()
    with proxy.connect() as c:
        c.send(
            get(origin.url("/echo?q=1"))
            + get("http://127.0.0.1:%d/unreachable" % dead)
            + get(origin.url("/echo?q=3"))
        )
        assert splitEcho(c.readResponse().body)[0].startswith(b"GET /echo?q=1 ")
        assert c.readResponse().status == 502
        third = c.readResponse()
        assert third.status == 200, third
        assert splitEcho(third.body)[0].startswith(b"GET /echo?q=3 ")


def test_clientAbortMidBodyClosesUpstream(proxy, makeOrigin) -> None:
    """
    A client that disconnects in the middle of a large response makes the
    proxy close that upstream connection (it cannot go back to the pool
    half-read), and the proxy keeps serving.
    """
    fresh = makeOrigin()
    with proxy.connect() as c:
        c.send(get(fresh.url("/bytes?n=%d" % (50 << 20))))
        c.readExact(100_000)
    assert waitFor(lambda: fresh.stats()["open"] == 0), fresh.stats()
    resp = proxy.get(fresh.url("/echo?after-abort"))
    assert resp.status == 200 and resp.header(b"x-conn") != b"1", resp


def test_clientAbortWhileWaitingClosesUpstream(proxy, makeOrigin) -> None:
    """
    A client that resets its connection while the origin has not answered
    yet makes the proxy close the upstream connection.  (A plain FIN is a
    half-close: the client may still be waiting for the answer.)
    """
    import socket
    import struct

    fresh = makeOrigin()
    c = proxy.connect()
    try:
        c.send(get(fresh.url("/hang")))
        assert waitFor(lambda: fresh.stats()["open"] == 1)
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    finally:
        c.close()
    assert waitFor(lambda: fresh.stats()["open"] == 0), fresh.stats()


def test_poolIdleTimeout(makeProxy, makeOrigin) -> None:
    """
    An idle pooled upstream connection is closed after --pool-idle-timeout.
    """
    fresh = makeOrigin()
    proxy = makeProxy("--pool-idle-timeout", "0.5")
    assert proxy.get(fresh.url("/echo")).status == 200
    assert fresh.stats()["open"] == 1
    assert waitFor(lambda: fresh.stats()["open"] == 0, timeout=3), fresh.stats()


def test_poolSize(makeProxy, makeOrigin) -> None:
    """
    At most --pool-size idle connections per origin are kept: after three
    concurrent requests finish, one upstream connection stays open.
    """
    fresh = makeOrigin()
    proxy = makeProxy("--pool-size", "1")
    conns = [proxy.connect() for _ in range(3)]
    try:
        for c in conns:
            c.send(get(fresh.url("/slow-head?delay=0.3")))
        for c in conns:
            assert c.readResponse().status == 200
    finally:
        for c in conns:
            c.close()
    assert fresh.stats()["connections"] == 3
    assert waitFor(lambda: fresh.stats()["open"] == 1), fresh.stats()
    time.sleep(0.3)
    assert fresh.stats()["open"] == 1


def test_manyConcurrentClients(proxy, origin) -> None:
    """
    Fifty clients connected at once, each pipelining two requests, all get
    their own answers.
    """
    conns = [proxy.connect(timeout=10) for _ in range(50)]
    try:
        for i, c in enumerate(conns):
            c.send(
                get(origin.url("/echo?c=%d&r=1" % i))
                + get(origin.url("/bytes?n=%d" % (1000 + i)))
            )
        for i, c in enumerate(conns):
            first = c.readResponse(timeout=10)
            assert splitEcho(first.body)[0].startswith(b"GET /echo?c=%d&r=1 " % i)
            assert len(c.readResponse(timeout=10).body) == 1000 + i
    finally:
        for c in conns:
            c.close()


def test_closedConnectionsReleaseSockets(makeProxy, origin) -> None:
    """
    Client connections that ended in every ordinary way (closed after the
    response, half-closed by the client, aborted mid-body, answered 502)
    release their sockets: the proxy's file descriptor count returns to
    where it was.
    """
    import socket

    from .support import freePort

    proxy = makeProxy()
    assert proxy.get(origin.url("/echo")).status == 200
    baseline = proxy.openFiles()
    dead = freePort()
    for i in range(10):
        with proxy.connect() as c:
            c.send(get(origin.url("/echo?close"), b"Connection: close\r\n"))
            assert c.readResponse().status == 200
        with proxy.connect() as c:
            c.send(get(origin.url("/echo?half")))
            c.sock.shutdown(socket.SHUT_WR)
            assert c.readResponse().status == 200
            assert c.waitClosed(3)[0]
        with proxy.connect() as c:
            c.send(get(origin.url("/bytes?n=%d" % (8 << 20))))
            c.readExact(1000)
        assert proxy.get("http://127.0.0.1:%d/" % dead).status == 502
    deadline = time.monotonic() + 3
    while proxy.openFiles() > baseline and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proxy.openFiles() <= baseline, "%d descriptors open, %d before" % (
        proxy.openFiles(),
        baseline,
    )
