"""
Integration tests: the proxy's own answers (its page, loop detection) and
its error responses for unreachable origins.
"""

from __future__ import annotations

import re
import time
import sys

from .support import REPO_ROOT, Conn, freePort


def proxyVersion() -> str:
    sys.path.insert(0, str(REPO_ROOT))
    try:
        import proxyapp
    finally:
        sys.path.remove(str(REPO_ROOT))
    return proxyapp.__version__


def isShortHtml(resp) -> bool:
    return (resp.header(b"content-type") or b"").startswith(b"text/html") and 0 < len(
        resp.body
    ) < 2048


def test_ownPage(proxy) -> None:
    """
    An origin-form C{GET /} is answered by the proxy itself with a small
    HTML page naming the proxy and its version.
    """
    resp, conn = proxy.request(
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % proxy.port
    )
    conn.close()
    assert resp.status == 200, resp
    assert (resp.header(b"content-type") or b"").startswith(b"text/html"), resp
    assert len(resp.body) < 4096
    assert b"webproxy" in resp.body.lower()
    assert proxyVersion().encode() in resp.body


def test_requestToSelfIsLoop(proxy) -> None:
    """
    An absolute-form request naming the proxy's own listening address is a
    loop: 508.
    """
    for host in (b"127.0.0.1", b"localhost"):
        resp = proxy.get("http://%s:%d/echo" % (host.decode(), proxy.port))
        assert resp.status == 508, resp
        assert isShortHtml(resp), resp


def test_connectToSelfByOtherNamesIsLoop(makeProxy) -> None:
    """
    With CONNECT allowed to the proxy's own port, a CONNECT naming its
    address in another spelling (C{127.1}, a decimal or an IPv4-mapped
    IPv6 address) is a loop: 508, and no tunnel into itself is opened.
    """
    port = freePort()
    p = makeProxy("--connect-port", str(port), port=port)
    for authority in (b"127.1", b"2130706433", b"[::ffff:127.0.0.1]"):
        target = b"%s:%d" % (authority, port)
        resp, conn = p.request(
            b"CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (target, target), b"CONNECT"
        )
        conn.close()
        assert resp.status == 508, (authority, resp)
    status, conn = p.request(
        b"GET /status.json HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % port
    )
    conn.close()
    assert status.status == 200, status
    assert b'"upstream_connections": 0' in status.body, status.body


def test_connectLoopsDoNotNest(makeProxy) -> None:
    """
    A proxy listening on every address, with CONNECT allowed to its own
    port, tunnels once into itself through another of its addresses (the
    first hop cannot tell 127.0.0.2 is its own); inside that tunnel, a
    CONNECT back to it is a loop: 508, so tunnels into itself never nest.
    """
    port = freePort()
    makeProxy("--interface", "0.0.0.0", "--connect-port", str(port), port=port)
    conn = Conn.open(port, timeout=5)
    try:
        first = b"127.0.0.2:%d" % port
        conn.send(b"CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (first, first))
        assert conn.readResponse(b"CONNECT", timeout=5).status == 200
        again = b"127.0.0.1:%d" % port
        conn.send(b"CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (again, again))
        assert conn.readResponse(b"CONNECT", timeout=5).status == 508
    finally:
        conn.close()


def test_ownViaTokenIsLoop(proxy, origin) -> None:
    """
    A request that already carries this proxy's Via entry (learned from a
    response) is a loop: 508, and it is not forwarded.
    """
    first = proxy.get(origin.url("/echo"))
    via = first.header(b"via")
    assert via, first
    resp = proxy.get(
        origin.url("/echo?looped"), headers=b"Via: 1.1 elsewhere, %s\r\n" % via
    )
    assert resp.status == 508, resp
    assert not any(
        "/echo?looped" in t for ts in origin.stats()["paths"].values() for t in ts
    )


def test_closedPortIs502(proxy) -> None:
    """
    An origin address where nothing listens gives 502 with a short HTML body.
    """
    port = freePort()
    resp = proxy.get("http://127.0.0.1:%d/" % port)
    assert resp.status == 502, resp
    assert isShortHtml(resp), resp


def test_unknownHostIs502(proxy) -> None:
    """
    A host name that does not resolve gives 502 with a short HTML body.
    (The test processes resolve names only locally; see dnsshim.)
    """
    resp = proxy.get("http://nonexistent.invalid/")
    assert resp.status == 502, resp
    assert isShortHtml(resp), resp


def test_untrustedCertificateIs502(proxy, tlsOrigin) -> None:
    """
    An https URL whose origin's certificate the proxy cannot verify (the
    test certificate is self-signed, and the proxy does not trust it) gives
    502 naming the problem, not an "invalid response".
    """
    resp = proxy.get("https://127.0.0.1:%d/echo" % tlsOrigin.port)
    assert resp.status == 502, resp
    assert isShortHtml(resp), resp
    assert (
        b"The TLS connection to 127.0.0.1 port %d failed: its certificate is"
        b" self-signed" % tlsOrigin.port
    ) in resp.body, resp.body


def test_upstreamCaFileTrustsOrigin(makeProxy, tlsOrigin, certificate) -> None:
    """
    With the origin's authority in C{--upstream-ca-file}, the same https URL
    is fetched; the name in the URL is still checked (the certificate names
    127.0.0.1 and localhost, not 127.1).
    """
    proxy = makeProxy("--upstream-ca-file", str(certificate[0]))
    for host in ("127.0.0.1", "localhost"):
        resp = proxy.get("https://%s:%d/echo?ca" % (host, tlsOrigin.port))
        assert resp.status == 200, resp
        assert resp.body.startswith(b"GET /echo?ca HTTP/1.1\r\n"), resp.body
    # 127.1 is 127.0.0.1, but not a name the certificate gives.
    resp = proxy.get("https://127.1:%d/echo?ca" % tlsOrigin.port)
    assert resp.status == 502, resp
    assert b"its certificate does not name this host" in resp.body, resp.body


def test_originClosesWithoutAnswer(proxy, origin) -> None:
    """
    An origin that closes the connection without any response gives 502
    (a GET may be retried once, but then fails the same way).
    """
    resp = proxy.get(origin.url("/drop"))
    assert resp.status == 502, resp
    assert isShortHtml(resp), resp


def test_proxyStillServesAfterErrors(proxy, origin) -> None:
    """
    After all the errors above the proxy process still serves requests.
    """
    resp = proxy.get(origin.url("/echo?alive"))
    assert resp.status == 200, resp
    assert proxy.process.proc.poll() is None
    assert not re.search(r"Unhandled [Ee]rror", proxy.log()), proxy.log()


def test_refusalReachesClientStillSending(makeProxy, origin) -> None:
    """
    A client still sending a body the proxy refuses (413) can finish
    sending and then read the answer: the proxy shuts down only its
    sending side and drops what comes (RFC 9112 section 9.6).  Closing
    with unread bytes would make the kernel reset the connection, and the
    client's next send would fail with the answer unread.
    """
    p = makeProxy("--max-body-bytes", "100000")
    size = 4 * 1024 * 1024
    chunk = b"x" * 65536
    with Conn.open(p.port) as conn:
        conn.send(
            b"PUT %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n"
            % (origin.url("/put").encode(), origin.authority.encode(), size)
        )
        conn.send(chunk)
        # The proxy answers and closes meanwhile.
        time.sleep(0.3)
        for _ in range(size // len(chunk) - 1):
            conn.send(chunk)
        resp = conn.readResponse(b"PUT")
        assert resp.status == 413, resp
        assert resp.header(b"connection") == b"close", resp
        closed, _ = conn.waitClosed()
        assert closed
