"""
Integration tests: CONNECT tunnels and protocol upgrades (101), where the
proxy stops parsing and relays bytes.
"""

from __future__ import annotations

import socket
import subprocess
import ssl
import time

import pytest

from .origin import pattern
from .support import Conn, freePort, openTunnel, splitEcho


def test_connectDisallowedPort(proxy, origin) -> None:
    """
    CONNECT to a port that is not allowed (by default only 443 and those
    given with --connect-port) is refused with 403.
    """
    port = freePort()
    resp, conn = proxy.request(
        b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % (port, port),
        b"CONNECT",
    )
    conn.close()
    assert resp.status == 403, resp


def test_connectTlsRawSocket(proxy, tlsOrigin, certificate) -> None:
    """
    An allowed CONNECT is answered C{200 Connection established}, then TLS
    runs end to end through the tunnel (the origin's certificate verifies).
    """
    c = openTunnel(proxy, tlsOrigin.authority)
    ctx = ssl.create_default_context(cafile=str(certificate[0]))
    with ctx.wrap_socket(c.sock, server_hostname="localhost") as tls:
        tls.settimeout(5)
        t = Conn(tls)
        t.send(b"GET /echo?tls HTTP/1.1\r\nHost: localhost\r\n\r\n")
        resp = t.readResponse()
        assert resp.status == 200, resp
        assert splitEcho(resp.body)[0].startswith(b"GET /echo?tls HTTP/1.1\r\n")
        t.send(b"GET /bytes?n=1000000 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert t.readResponse().body == pattern(0, 1000000)


def test_connectReasonPhrase(proxy, tlsOrigin) -> None:
    """
    The CONNECT success status line is C{HTTP/1.1 200 Connection established}.
    """
    c = proxy.connect()
    c.send(
        b"CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n"
        % ((tlsOrigin.authority.encode(),) * 2)
    )
    line = c.readUntil(b"\r\n")
    c.close()
    assert line.lower() == b"http/1.1 200 connection established\r\n"


def test_bytesAfterConnectHeadNotLost(proxy, origin) -> None:
    """
    Bytes sent in the same packet as the CONNECT head (here a whole HTTP
    request to a plain-HTTP origin) go through the tunnel.
    """
    c = openTunnel(
        proxy,
        origin.authority,
        trailing=b"GET /echo?same-packet HTTP/1.1\r\nHost: a\r\n\r\n",
    )
    with c:
        resp = c.readResponse()
        assert resp.status == 200, resp
        assert (
            splitEcho(resp.body)[0]
            == b"GET /echo?same-packet HTTP/1.1\r\nHost: a\r\n\r\n"
        )
        assert resp.header(b"via") is None, "the tunnel must not be parsed"


def test_tunnelHalfClose(proxy, origin) -> None:
    """
    A client that shuts down its sending side after the request still
    receives the whole response through the tunnel, then end of file.
    """
    with openTunnel(proxy, origin.authority) as c:
        c.send(b"GET /bytes?n=300000 HTTP/1.1\r\nHost: a\r\n\r\n")
        c.sock.shutdown(socket.SHUT_WR)
        resp = c.readResponse()
        assert resp.body == pattern(0, 300000)
        closed, extra = c.waitClosed(3)
        assert closed and extra == b""


def test_tunnelClientCloseClosesUpstream(makeProxy, makeOrigin) -> None:
    """
    When the client closes the tunnel, the proxy closes the upstream side.
    """
    fresh = makeOrigin()
    proxy = makeProxy("--connect-port", str(fresh.port))
    c = openTunnel(proxy, fresh.authority)
    c.send(b"GET /echo HTTP/1.1\r\nHost: a\r\n\r\n")
    assert c.readResponse().status == 200
    assert fresh.stats()["open"] == 1
    c.close()
    deadline = time.monotonic() + 3
    while fresh.stats()["open"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert fresh.stats()["open"] == 0


def test_tunnelUpstreamCloseClosesClient(proxy, origin) -> None:
    """
    When the origin closes its side, the client side of the tunnel is
    closed after the last bytes arrive.
    """
    with openTunnel(proxy, origin.authority) as c:
        c.send(b"GET /close?n=5000 HTTP/1.1\r\nHost: a\r\n\r\n")
        resp = c.readResponse()
        assert resp.framing == "close"
        assert resp.body == pattern(0, 5000)


def test_connectToClosedPort(makeProxy) -> None:
    """
    CONNECT to an allowed port where nothing listens gives 502.
    """
    port = freePort()
    proxy = makeProxy("--connect-port", str(port))
    resp, conn = proxy.request(
        b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % (port, port),
        b"CONNECT",
    )
    conn.close()
    assert resp.status == 502, resp


@pytest.mark.parametrize("scheme", ["http", "ws"])
def test_upgradeBecomesTunnel(proxy, origin, scheme) -> None:
    """
    A request with C{Connection: Upgrade} / C{Upgrade: websocket} is
    forwarded with its Upgrade field, the 101 comes back, and from then on
    the connection carries raw bytes both ways; the same with a C{ws://}
    target, as WebSocket clients (aiohttp) send it to a proxy.
    """
    url = scheme + origin.url("/ws")[len("http") :]
    with proxy.connect() as c:
        c.send(
            b"GET %s HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
            b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
            % (url.encode(), origin.authority.encode())
        )
        resp = c.readResponse()
        assert resp.status == 101, resp
        assert resp.header(b"upgrade") == b"websocket"
        assert b"upgrade" in resp.tokens(b"connection")
        for message in (
            b"\x81\x05hello",
            b"GET / HTTP/1.1\r\n\r\n",
            bytes(range(256)) * 40,
        ):
            c.send(message)
            assert c.readExact(len(message)) == message
        c.sock.shutdown(socket.SHUT_WR)
        closed, extra = c.waitClosed(3)
        assert closed and extra == b""


def test_closedTunnelsDoNotDelayShutdown(makeProxy, origin) -> None:
    """
    Once a CONNECT tunnel and an upgraded (101) connection have been closed
    by both sides, nothing is left in flight: on SIGTERM the proxy exits
    promptly instead of waiting for its drain timeout (10 s by default).
    """
    proxy = makeProxy("--connect-port", str(origin.port))
    with openTunnel(proxy, origin.authority) as c:
        c.send(b"GET /echo HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        assert c.readResponse().status == 200
    with proxy.connect() as c:
        c.send(
            b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
            % origin.url("/ws").encode()
        )
        assert c.readResponse().status == 101
        c.send(b"ping")
        assert c.readExact(4) == b"ping"
    assert proxy.get(origin.url("/echo")).status == 200
    time.sleep(0.5)
    start = time.monotonic()
    proxy.process.proc.terminate()
    try:
        proxy.process.proc.wait(5)
    except subprocess.TimeoutExpired:
        pass
    elapsed = time.monotonic() - start
    assert proxy.process.proc.poll() is not None and elapsed < 3, (
        "still running %.1fs after SIGTERM with no open connection" % elapsed
    )


def test_connectWithoutPortRefused(proxy, origin) -> None:
    """
    A CONNECT target must be host:port; without a port it is refused with
    400.
    """
    resp, conn = proxy.request(
        b"CONNECT 127.0.0.1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", b"CONNECT"
    )
    conn.close()
    assert resp.status == 400, resp


def test_closedTunnelsReleaseSockets(makeProxy, origin) -> None:
    """
    CONNECT tunnels and upgraded (101) connections that both sides have
    closed release their sockets: after twenty of each, the proxy has no
    more file descriptors open than before.
    """
    proxy = makeProxy("--connect-port", str(origin.port))
    assert proxy.get(origin.url("/echo")).status == 200
    baseline = proxy.openFiles()
    for i in range(20):
        with openTunnel(
            proxy,
            origin.authority,
            b"GET /echo HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        ) as c:
            assert c.readResponse().status == 200
        with proxy.connect() as c:
            c.send(
                b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
                % origin.url("/ws").encode()
            )
            assert c.readResponse().status == 101
            c.sock.shutdown(socket.SHUT_WR)
            assert c.waitClosed(3)[0]
    deadline = time.monotonic() + 3
    while proxy.openFiles() > baseline and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proxy.openFiles() <= baseline, "%d descriptors open, %d before" % (
        proxy.openFiles(),
        baseline,
    )
