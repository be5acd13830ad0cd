"""
Integration tests: SIGHUP makes a running C{twistd webproxy --config FILE}
re-read its file.  New requests see the new configuration at once, while a
download and a CONNECT tunnel in flight carry on undisturbed; a file that
has become invalid is logged and the running configuration stays.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from .origin import pattern
from .support import Conn, Origin, Proxy, waitForLog

SIZE = 32 * 1024 * 1024
FIRST = 1024 * 1024


def get(proxy: Proxy, url: str, headers: bytes = b"") -> "object":
    """
    One GET through the proxy on a new connection.
    """
    authority = url.split("/")[2].encode()
    with Conn.open(proxy.port) as c:
        c.send(
            b"GET %s HTTP/1.1\r\nHost: %s\r\n%sConnection: close\r\n\r\n"
            % (url.encode(), authority, headers)
        )
        return c.readResponse()


def connect(proxy: Proxy, authority: bytes) -> tuple:
    """
    Open a CONNECT tunnel.

    @return: the response and the open connection.
    """
    c = Conn.open(proxy.port)
    c.send(b"CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (authority, authority))
    return c.readResponse(b"CONNECT"), c


def echoThroughTunnel(tunnel: Conn, path: bytes, close: bool = False) -> bytes:
    """
    Send a request to the origin through an open tunnel.

    @param close: ask the origin to close the connection after answering
        (which then ends the tunnel).
    @return: the echoed request head.
    """
    extra = b"Connection: close\r\n" if close else b""
    tunnel.send(b"GET /echo%s HTTP/1.1\r\nHost: origin\r\n%s\r\n" % (path, extra))
    response = tunnel.readResponse()
    assert response.status == 200, response
    if close:
        closed, rest = tunnel.waitClosed()
        assert closed and rest == b"", rest
    return response.body


MANY_HEADERS = b"".join(b"X-H%d: v\r\n" % i for i in range(10))


@pytest.fixture
def configured(workdir: Path, origin: Origin, tmp_path: Path):
    """
    A proxy started with a configuration file that allows CONNECT to the
    origin's port and blocks nothing.

    @return: the proxy and the file's path.
    """
    path = tmp_path / "webproxy.toml"
    path.write_text(BASE % origin.port)
    proxy = Proxy(workdir, ["--config", str(path)])
    yield proxy, path
    proxy.stop()


BASE = "[access]\nconnect_ports = [%d]\n"


def changedConfig(port: int) -> str:
    return f'[limits]\nmax_headers = 5\n[access]\nconnect_ports = [{port}]\nblocked_domains = ["localhost"]\n'


def test_reloadAppliesToNewRequestsOnly(configured, origin: Origin) -> None:
    """
    After SIGHUP with a changed file, new requests and tunnels see the new
    block list and limits, also on an existing keep-alive connection; a
    download in flight completes byte-exact and an open tunnel keeps
    working.
    """
    proxy, path = configured
    localhost = "http://localhost:%d/echo" % origin.port
    assert get(proxy, localhost).status == 200
    assert get(proxy, origin.url("/echo"), MANY_HEADERS).status == 200

    # A long download, read only partly: the proxy holds it paused.
    download = Conn.open(proxy.port, timeout=20)
    download.send(
        b"GET %s HTTP/1.1\r\nHost: %s\r\n\r\n"
        % (origin.url("/bytes?n=%d" % SIZE).encode(), origin.authority.encode())
    )
    head = download.readUntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    assert b"Content-Length: %d" % SIZE in head
    received = [download.readExact(FIRST)]

    # An open tunnel to the origin.
    response, tunnel = connect(proxy, b"127.0.0.1:%d" % origin.port)
    assert response.status == 200
    assert echoThroughTunnel(tunnel, b"/before").startswith(b"GET /echo/before ")

    path.write_text(changedConfig(origin.port))
    os.kill(proxy.pid, signal.SIGHUP)
    log = waitForLog(proxy, "configuration reloaded")
    # The download is still in flight (its access log line comes at the end).
    assert "/bytes?n=%d" % SIZE not in log

    try:
        # New requests see the new configuration.
        blocked = get(proxy, localhost)
        assert blocked.status == 403, blocked
        assert b"localhost" in blocked.body
        assert get(proxy, origin.url("/echo")).status == 200
        assert get(proxy, origin.url("/echo"), MANY_HEADERS).status == 431
        refused, c = connect(proxy, b"localhost:%d" % origin.port)
        c.close()
        assert refused.status == 403

        # The tunnel opened before still carries bytes both ways.
        assert echoThroughTunnel(tunnel, b"/after").startswith(b"GET /echo/after ")
        assert echoThroughTunnel(tunnel, b"/last", close=True).startswith(
            b"GET /echo/last "
        )

        # The download completes, byte for byte.
        received.append(download.readExact(SIZE - FIRST, timeout=30))
        assert b"".join(received) == pattern(0, SIZE)
        waitForLog(proxy, "/bytes?n=%d" % SIZE)

        # The next request on that same connection gets the new chain.
        download.send(
            b"GET %s HTTP/1.1\r\nHost: localhost:%d\r\n\r\n"
            % (localhost.encode(), origin.port)
        )
        assert download.readResponse().status == 403
    finally:
        download.close()
        tunnel.close()


def test_invalidFileKeepsRunningConfiguration(configured, origin: Origin) -> None:
    """
    After SIGHUP with an invalid file, the error is logged naming the file
    and the key, the previous configuration stays in force, tunnels and
    connections stay up, and a corrected file is picked up by the next
    SIGHUP.
    """
    proxy, path = configured
    localhost = "http://localhost:%d/echo" % origin.port
    path.write_text(changedConfig(origin.port))
    os.kill(proxy.pid, signal.SIGHUP)
    waitForLog(proxy, "configuration reloaded")
    assert get(proxy, localhost).status == 403

    response, tunnel = connect(proxy, b"127.0.0.1:%d" % origin.port)
    assert response.status == 200
    try:
        path.write_text("[limits]\nmax_headers = -1\n[access]\nblocked_domains = []\n")
        os.kill(proxy.pid, signal.SIGHUP)
        log = waitForLog(proxy, "reload failed")
        [line] = [line for line in log.splitlines() if "reload failed" in line]
        assert str(path) in line
        assert "[limits] max_headers" in line

        # The old configuration still applies.
        assert get(proxy, localhost).status == 403
        assert get(proxy, origin.url("/echo"), MANY_HEADERS).status == 431
        assert echoThroughTunnel(tunnel, b"/still").startswith(b"GET /echo/still ")
        assert echoThroughTunnel(tunnel, b"/last", close=True).startswith(
            b"GET /echo/last "
        )

        # Not TOML at all: refused the same way.
        path.write_text("[limits\n")
        os.kill(proxy.pid, signal.SIGHUP)
        waitForLog(proxy, "reload failed", count=2)
        assert get(proxy, localhost).status == 403

        # Fixed: the next SIGHUP applies it.
        path.write_text(BASE % origin.port)
        os.kill(proxy.pid, signal.SIGHUP)
        waitForLog(proxy, "configuration reloaded", count=2)
        assert get(proxy, localhost).status == 200
        assert get(proxy, origin.url("/echo"), MANY_HEADERS).status == 200
        assert proxy.process.proc.poll() is None
    finally:
        tunnel.close()


def test_stopAfterTunnelDrainsPromptly(configured, origin: Origin) -> None:
    """
    A tunnel opened before a reload and ended after it leaves nothing in
    flight: SIGTERM then stops the proxy at once, with every exchange
    drained, instead of waiting for the drain timeout.
    """
    proxy, path = configured
    response, tunnel = connect(proxy, b"127.0.0.1:%d" % origin.port)
    assert response.status == 200
    try:
        path.write_text(changedConfig(origin.port))
        os.kill(proxy.pid, signal.SIGHUP)
        waitForLog(proxy, "configuration reloaded")
        assert echoThroughTunnel(tunnel, b"/last", close=True).startswith(
            b"GET /echo/last "
        )
    finally:
        tunnel.close()
    time.sleep(0.2)
    started = time.monotonic()
    proxy.process.proc.terminate()
    proxy.process.proc.wait(15)
    elapsed = time.monotonic() - started
    log = proxy.process.logPath.read_text(errors="replace")
    assert "drained: every request in flight completed" in log, log[-2000:]
    assert elapsed < 2.0
