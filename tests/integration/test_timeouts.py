"""
Integration tests: every wait of the proxy is bounded (connect, request
head, keep-alive idle, upstream response head, a stalled body or tunnel).

One proxy with 1 second timeouts serves the whole module.
"""

from __future__ import annotations

import json
import socket
import time
from typing import Iterator, List

import pytest

from .support import Proxy, openTunnel

TIMEOUT = 1.0


@pytest.fixture(scope="module")
def quickProxy(workdir, origin) -> Iterator[Proxy]:
    """
    A proxy whose connect, header, idle, upstream and read timeouts are all
    one second, allowed to CONNECT to the origin.
    """
    p = Proxy(
        workdir,
        [
            "--connect-timeout",
            str(TIMEOUT),
            "--header-timeout",
            str(TIMEOUT),
            "--idle-timeout",
            str(TIMEOUT),
            "--upstream-timeout",
            str(TIMEOUT),
            "--read-timeout",
            str(TIMEOUT),
            "--connect-port",
            str(origin.port),
        ],
    )
    yield p
    p.stop()


@pytest.fixture
def blackHole() -> Iterator[int]:
    """
    A port on 127.0.0.1 whose connection attempts never complete: a
    listening socket with a full accept queue, so new SYNs are dropped
    (Linux does this when the queue overflows), and the connect hangs as it
    would for an unreachable host.
    """
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers: List[socket.socket] = []
    for _ in range(8):
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        fillers.append(s)
    time.sleep(0.2)
    probe = socket.socket()
    probe.settimeout(0.5)
    try:
        with pytest.raises((socket.timeout, TimeoutError)):
            probe.connect(("127.0.0.1", port))
    finally:
        probe.close()
    yield port
    for s in fillers:
        s.close()
    listener.close()


def test_connectTimeout(quickProxy, blackHole) -> None:
    """
    An origin that never completes the TCP handshake gives 504 after
    --connect-timeout.
    """
    start = time.monotonic()
    resp = quickProxy.get("http://127.0.0.1:%d/" % blackHole)
    elapsed = time.monotonic() - start
    assert resp.status == 504, resp
    assert TIMEOUT * 0.8 <= elapsed < TIMEOUT + 3, elapsed


def test_upstreamTimeout(quickProxy, origin) -> None:
    """
    An origin that accepts the request but never answers gives 504 after
    --upstream-timeout.
    """
    start = time.monotonic()
    resp = quickProxy.get(origin.url("/hang"))
    elapsed = time.monotonic() - start
    assert resp.status == 504, resp
    assert TIMEOUT * 0.8 <= elapsed < TIMEOUT + 3, elapsed


def test_slowButInTimeHead(quickProxy, origin) -> None:
    """
    A response head that comes before --upstream-timeout is forwarded.
    """
    resp = quickProxy.get(origin.url("/slow-head?delay=0.3"))
    assert resp.status == 200, resp
    assert resp.body == b"slow\n"


def test_slowlorisHalfHead(quickProxy, origin) -> None:
    """
    A client that sends half a request head and waits is disconnected
    after --header-timeout.
    """
    with quickProxy.connect() as c:
        c.send(b"GET %s HTTP/1.1\r\nHost: x\r\n" % origin.url("/echo").encode())
        start = time.monotonic()
        closed, _ = c.waitClosed(TIMEOUT + 3)
        elapsed = time.monotonic() - start
    assert closed, "connection still open"
    assert elapsed >= TIMEOUT * 0.8, elapsed


def test_slowlorisTrickle(quickProxy, origin) -> None:
    """
    A client that keeps sending one header byte every 200 ms never finishes
    its head, and is disconnected once --header-timeout has passed since the
    head began (trickling does not reset the clock).
    """
    with quickProxy.connect() as c:
        c.send(b"GET %s HTTP/1.1\r\nHost: x\r\nX-Slow: " % origin.url("/echo").encode())
        start = time.monotonic()
        closed = False
        while time.monotonic() - start < TIMEOUT + 3:
            try:
                c.send(b"a")
            except OSError:
                closed = True
                break
            closed, _ = c.waitClosed(0.2)
            if closed:
                break
        elapsed = time.monotonic() - start
    assert closed, "connection still open after %.1fs of trickling" % elapsed
    assert elapsed < TIMEOUT + 2, elapsed


def test_idleKeepAliveClosed(quickProxy, origin) -> None:
    """
    A keep-alive connection with no new request is closed after
    --idle-timeout, and not before.
    """
    with quickProxy.connect() as c:
        c.send(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % origin.url("/echo").encode())
        assert c.readResponse().status == 200
        start = time.monotonic()
        closed, extra = c.waitClosed(TIMEOUT + 3)
        elapsed = time.monotonic() - start
    assert closed, "idle connection still open"
    assert extra == b"" or extra.startswith(b"HTTP/1.1 408"), extra
    assert elapsed >= TIMEOUT * 0.8, elapsed


def test_activeKeepAliveNotClosed(quickProxy, origin) -> None:
    """
    Requests spaced a bit under --idle-timeout apart keep the connection
    open for longer than the timeout in total.
    """
    with quickProxy.connect() as c:
        for i in range(4):
            c.send(
                b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n"
                % origin.url("/echo?i=%d" % i).encode()
            )
            assert c.readResponse().status == 200
            time.sleep(TIMEOUT * 0.5)


def test_stalledResponseCutOff(quickProxy, origin) -> None:
    """
    A response body that stops halfway is cut off once --read-timeout has
    passed without a byte (and not long after): the client has the head
    and the half, then the connection ends.
    """
    with quickProxy.connect() as c:
        c.send(
            b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % origin.url("/stall?n=100").encode()
        )
        start = time.monotonic()
        closed, data = c.waitClosed(TIMEOUT + 3)
        elapsed = time.monotonic() - start
    assert closed, "stalled response still open"
    assert data.startswith(b"HTTP/1.1 200 "), data
    assert data.endswith(b"\r\n\r\n" + b"s" * 100), data
    assert TIMEOUT * 0.8 <= elapsed < TIMEOUT * 1.25 + 1, elapsed


def test_stalledUploadGets408(quickProxy, origin) -> None:
    """
    A request body that stops halfway gets 408 once --read-timeout has
    passed without a byte.
    """
    with quickProxy.connect() as c:
        c.send(
            b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n"
            % origin.url("/upload").encode()
            + b"u" * 10
        )
        start = time.monotonic()
        resp = c.readResponse(timeout=TIMEOUT + 3)
        elapsed = time.monotonic() - start
        assert resp.status == 408, resp
        closed, _ = c.waitClosed(3)
    assert closed
    assert TIMEOUT * 0.8 <= elapsed < TIMEOUT * 1.25 + 1, elapsed


def test_idleTunnelCutOff(quickProxy, origin) -> None:
    """
    A tunnel in use stays open past --read-timeout; once idle for that
    long it is closed.
    """
    with openTunnel(quickProxy, origin.authority) as c:
        start = time.monotonic()
        for i in range(5):
            c.send(b"GET /echo?i=%d HTTP/1.1\r\nHost: a\r\n\r\n" % i)
            assert c.readResponse().status == 200
            time.sleep(TIMEOUT * 0.5)
        assert time.monotonic() - start > TIMEOUT * 2
        idleSince = time.monotonic()
        closed, extra = c.waitClosed(TIMEOUT + 3)
        elapsed = time.monotonic() - idleSince
    assert closed and extra == b"", extra
    # The cut comes at least TIMEOUT after the tunnel's last byte, which
    # passed about TIMEOUT / 2 before idleSince (less any lateness).
    assert TIMEOUT * 0.3 <= elapsed < TIMEOUT * 1.25 + 1, elapsed


def openClients(proxy: Proxy) -> int:
    """
    @return: the client connections the proxy has open, besides the one
        asking (which is closed before this returns).
    """
    with proxy.connect() as c:
        c.send(
            b"GET /status.json HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
            b"Connection: close\r\n\r\n" % proxy.port
        )
        resp = c.readResponse()
        # Once the proxy has closed this connection it no longer counts it.
        closed, _ = c.waitClosed(3)
    assert closed
    assert resp.status == 200, resp
    return json.loads(resp.body)["client_connections"] - 1


def test_clientNotReadingReleased(quickProxy, origin) -> None:
    """
    A client that asks for a large response and never reads any of it is
    disconnected about --read-timeout after the proxy's buffers filled
    (the transfer stalls: the upstream stays paused), so it holds no
    connection or memory for longer.
    """
    before = openClients(quickProxy)
    c = socket.socket()
    c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        c.connect(("127.0.0.1", quickProxy.port))
        c.sendall(
            b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            % origin.url("/bytes?n=20000000").encode()
        )
        time.sleep(0.5)
        assert openClients(quickProxy) == before + 1
        deadline = time.monotonic() + TIMEOUT * 1.25 + 3
        while openClients(quickProxy) > before and time.monotonic() < deadline:
            time.sleep(0.1)
        assert openClients(quickProxy) == before
    finally:
        c.close()


def test_tlsHandshakeUnderConnectTimeout(makeProxy) -> None:
    """
    An https origin that accepts the TCP connection but never answers the
    TLS handshake gives 504 after --connect-timeout, not after the longer
    --upstream-timeout (the handshake is part of connecting, as in Squid).
    """
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    # Never accepted: the kernel completes the TCP handshake, and the
    # ClientHello waits unread.
    listener.listen(8)
    port = listener.getsockname()[1]
    try:
        proxy = makeProxy("--connect-timeout", str(TIMEOUT), "--upstream-timeout", "30")
        start = time.monotonic()
        resp = proxy.get("https://127.0.0.1:%d/" % port)
        elapsed = time.monotonic() - start
    finally:
        listener.close()
    assert resp.status == 504, resp
    assert b"Connecting to 127.0.0.1 port %d timed out" % port in resp.body
    assert TIMEOUT * 0.8 <= elapsed < TIMEOUT + 3, elapsed
