"""
Integration tests: malformed or ambiguous messages from either side are
refused (400 from clients, 502 from origins) and never forwarded, and the
size limits answer 414 and 431.
"""

from __future__ import annotations

import socket
from typing import Iterator

import pytest

from .origin import BAD_RESPONSES
from .support import Closed, Conn, Origin, Proxy, splitEcho

# Each entry: the request head and body with {o} for the origin authority.
BAD_REQUESTS = {
    "cl-and-te": b"POST http://{o}/echo HTTP/1.1\r\nHost: {o}\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "te-and-cl": b"POST http://{o}/echo HTTP/1.1\r\nHost: {o}\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
    "duplicate-differing-cl": b"POST http://{o}/echo HTTP/1.1\r\nHost: {o}\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    "cl-list-differing": b"POST http://{o}/echo HTTP/1.1\r\nHost: {o}\r\nContent-Length: 5, 6\r\n\r\nhello!",
    "cl-letters": b"POST http://{o}/echo HTTP/1.1\r\nHost: {o}\r\nContent-Length: 5x\r\n\r\nhello",
    "cl-negative": b"POST http://{o}/echo HTTP/1.1\r\nHost: {o}\r\nContent-Length: -1\r\n\r\nhello",
    "cl-plus": b"POST http://{o}/echo HTTP/1.1\r\nHost: {o}\r\nContent-Length: +5\r\n\r\nhello",
    "cl-hex": b"POST http://{o}/echo HTTP/1.1\r\nHost: {o}\r\nContent-Length: 0x5\r\n\r\nhello",
    "cl-empty": b"POST http://{o}/echo HTTP/1.1\r\nHost: {o}\r\nContent-Length: \r\n\r\nhello",
    "chunk-size-invalid": b"POST http://{o}/echo HTTP/1.1\r\nHost: {o}\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    "chunk-size-overflow": b"POST http://{o}/echo HTTP/1.1\r\nHost: {o}\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
    "chunk-size-negative": b"POST http://{o}/echo HTTP/1.1\r\nHost: {o}\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n",
    "space-before-colon": b"GET http://{o}/echo HTTP/1.1\r\nHost: {o}\r\nX-Bad : value\r\n\r\n",
    "space-before-colon-host": b"GET http://{o}/echo HTTP/1.1\r\nHost : {o}\r\n\r\n",
    "obs-fold": b"GET http://{o}/echo HTTP/1.1\r\nHost: {o}\r\nX-Folded: a\r\n b\r\n\r\n",
    "bare-cr-in-value": b"GET http://{o}/echo HTTP/1.1\r\nHost: {o}\r\nX-Bad: a\rb\r\n\r\n",
    "bare-cr-line-end": b"GET http://{o}/echo HTTP/1.1\r\nHost: {o}\r\nX-Bad: a\r\r\n\r\n",
    "nul-in-value": b"GET http://{o}/echo HTTP/1.1\r\nHost: {o}\r\nX-Bad: a\x00b\r\n\r\n",
    "nul-in-name": b"GET http://{o}/echo HTTP/1.1\r\nHost: {o}\r\nX-B\x00ad: a\r\n\r\n",
    "missing-host-11": b"GET http://{o}/echo HTTP/1.1\r\nX-A: b\r\n\r\n",
    "duplicate-host": b"GET http://{o}/echo HTTP/1.1\r\nHost: {o}\r\nHost: other.example\r\n\r\n",
    "request-line-two-parts": b"GET http://{o}/echo\r\nHost: {o}\r\n\r\n",
    "request-line-double-space": b"GET  http://{o}/echo HTTP/1.1\r\nHost: {o}\r\n\r\n",
    "request-line-garbage": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
    "method-with-slash": b"GE/T http://{o}/echo HTTP/1.1\r\nHost: {o}\r\n\r\n",
    "target-with-space": b"GET http://{o}/e cho HTTP/1.1\r\nHost: {o}\r\n\r\n",
    "version-lowercase": b"GET http://{o}/echo http/1.1\r\nHost: {o}\r\n\r\n",
    "version-letters": b"GET http://{o}/echo HTTP/1.x\r\nHost: {o}\r\n\r\n",
    "version-missing-dot": b"GET http://{o}/echo HTTP/11\r\nHost: {o}\r\n\r\n",
    "chunk-data-overrun": b"POST http://{o}/echo HTTP/1.1\r\nHost: {o}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX\r\n0\r\n\r\n",
    "whitespace-before-first-header": b"GET http://{o}/echo HTTP/1.1\r\n X-A: b\r\nHost: {o}\r\n\r\n",
    "header-without-colon": b"GET http://{o}/echo HTTP/1.1\r\nHost: {o}\r\nNoColonHere\r\n\r\n",
    "empty-header-name": b"GET http://{o}/echo HTTP/1.1\r\nHost: {o}\r\n: value\r\n\r\n",
}

# A transfer coding other than chunked: 501 (not implemented) or 400.
UNSUPPORTED_CODINGS = {
    "te-gzip": b"POST http://{o}/echo HTTP/1.1\r\nHost: {o}\r\nTransfer-Encoding: gzip\r\n\r\nhello",
    "te-chunked-not-last": b"POST http://{o}/echo HTTP/1.1\r\nHost: {o}\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
    "te-chunked-then-identity": b"POST http://{o}/echo HTTP/1.1\r\nHost: {o}\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n",
    "te-unknown": b"POST http://{o}/echo HTTP/1.1\r\nHost: {o}\r\nTransfer-Encoding: frobnicate\r\n\r\nhello",
}


@pytest.fixture(scope="module")
def victim(workdir) -> Iterator[Origin]:
    """
    An origin used only by this module, so its request counter shows
    whether anything bad got through.
    """
    o = Origin(workdir)
    yield o
    o.stop()


def refused(proxy: Proxy, victim: Origin, raw: bytes, statuses) -> None:
    """
    Send C{raw} and check the status is in C{statuses}, the body is a short
    HTML page, the connection is closed afterwards and the origin received
    no request.
    """
    before = victim.stats()["requests"]
    raw = raw.replace(b"{o}", victim.authority.encode())
    resp, conn = proxy.request(raw)
    try:
        assert resp.status in statuses, resp
        closed, extra = conn.waitClosed(3)
        assert closed, "connection left open after %d" % resp.status
    finally:
        conn.close()
    assert victim.stats()["requests"] == before, "the bad request reached the origin"


@pytest.mark.parametrize("name", sorted(BAD_REQUESTS))
def test_badRequestRefused(proxy, victim, name: str) -> None:
    """
    Each malformed or ambiguous request is answered 400 by the proxy, the
    connection is closed, and the origin receives nothing.
    """
    refused(proxy, victim, BAD_REQUESTS[name], {400})


@pytest.mark.parametrize("name", sorted(UNSUPPORTED_CODINGS))
def test_unsupportedTransferCoding(proxy, victim, name: str) -> None:
    """
    A request whose final transfer coding is not chunked is refused with
    501 or 400 and not forwarded.
    """
    refused(proxy, victim, UNSUPPORTED_CODINGS[name], {400, 501})


def test_http2VersionRefused(proxy, victim) -> None:
    """
    An HTTP/2.0 request line on an HTTP/1 connection is refused (400 or 505)
    and not forwarded.
    """
    refused(
        proxy, victim, b"GET http://{o}/echo HTTP/2.0\r\nHost: {o}\r\n\r\n", {400, 505}
    )


def test_http10WithoutHostAccepted(proxy, victim) -> None:
    """
    HTTP/1.0 requests need no Host field: the proxy takes the host from the
    absolute-form target.
    """
    raw = b"GET http://%s/echo HTTP/1.0\r\n\r\n" % victim.authority.encode()
    resp, conn = proxy.request(raw)
    conn.close()
    assert resp.status == 200, resp


def test_errorBodyIsShortHtml(proxy, victim) -> None:
    """
    Error responses carry a short text/html body with a Content-Length.
    """
    raw = BAD_REQUESTS["cl-and-te"].replace(b"{o}", victim.authority.encode())
    resp, conn = proxy.request(raw)
    conn.close()
    assert resp.status == 400
    assert (resp.header(b"content-type") or b"").startswith(b"text/html"), resp
    assert resp.framing == "length"
    assert 0 < len(resp.body) < 2048


# Defects in the body, found after the (valid) head may already have been
# passed on: the client gets 502 or a response cut off by closing the
# connection, never a complete response.
BODY_DEFECTS = {"chunk-size", "chunk-overflow"}


@pytest.mark.parametrize("kind", sorted(BAD_RESPONSES))
def test_badResponseGives502(proxy, victim, kind: str) -> None:
    """
    A malformed or ambiguous upstream response becomes 502 for the client
    (for a defect in a chunked body the client's response may instead be
    cut off), and the upstream connection it came on is not used again.
    """
    warm = proxy.get(victim.url("/echo?warm"))
    assert warm.status == 200
    with proxy.connect() as c:
        c.send(
            b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % victim.url("/bad/" + kind).encode()
        )
        try:
            resp = c.readResponse()
        except Closed:
            assert kind in BODY_DEFECTS, "connection closed without a 502"
        else:
            assert resp.status == 502, resp
            assert (resp.header(b"content-type") or b"").startswith(b"text/html"), resp
    paths = victim.stats()["paths"]
    badConns = {c for c, targets in paths.items() if "/bad/" + kind in targets}
    assert badConns, paths
    for i in range(3):
        after = proxy.get(victim.url("/echo?after-%s-%d" % (kind, i)))
        assert after.status == 200, after
        assert (
            after.header(b"x-conn").decode() not in badConns
        ), "connection reused after a bad response"


@pytest.fixture(scope="module")
def limitedProxy(workdir, victim) -> Iterator[Proxy]:
    """
    A proxy with small limits: request line 1000 bytes, header section
    4000 bytes, 20 header fields.
    """
    p = Proxy(
        workdir,
        [
            "--max-request-line",
            "1000",
            "--max-header-bytes",
            "4000",
            "--max-headers",
            "20",
        ],
    )
    yield p
    p.stop()


def test_longRequestLine(limitedProxy, victim) -> None:
    """
    A request line over --max-request-line is answered 414; one just under
    it is forwarded.
    """
    base = b"GET http://%s/echo?" % victim.authority.encode()
    ok = base + b"a" * (900 - len(base)) + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    resp, conn = limitedProxy.request(ok)
    conn.close()
    assert resp.status == 200, resp
    refused(
        limitedProxy,
        victim,
        base + b"a" * 2000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        {414},
    )


def test_longRequestLineUnterminated(limitedProxy, victim) -> None:
    """
    The proxy answers 414 as soon as the request line is too long, without
    waiting for its end.
    """
    refused(limitedProxy, victim, b"GET http://{o}/echo?" + b"a" * 5000, {414})


def test_tooManyHeaders(limitedProxy, victim) -> None:
    """
    More header fields than --max-headers is answered 431; a few less is
    forwarded.
    """
    head = b"GET http://{o}/echo HTTP/1.1\r\nHost: {o}\r\n"
    ok = head + b"".join(b"X-H%d: v\r\n" % i for i in range(15)) + b"\r\n"
    resp, conn = limitedProxy.request(ok.replace(b"{o}", victim.authority.encode()))
    conn.close()
    assert resp.status == 200, resp
    refused(
        limitedProxy,
        victim,
        head + b"".join(b"X-H%d: v\r\n" % i for i in range(30)) + b"\r\n",
        {431},
    )


def test_headersTooLarge(limitedProxy, victim) -> None:
    """
    A header section over --max-header-bytes is answered 431, also when it
    is never terminated.
    """
    head = b"GET http://{o}/echo HTTP/1.1\r\nHost: {o}\r\n"
    refused(limitedProxy, victim, head + b"X-Big: " + b"v" * 5000 + b"\r\n\r\n", {431})
    refused(limitedProxy, victim, head + b"X-Big: " + b"v" * 8000, {431})


@pytest.mark.parametrize(
    "raw",
    [
        b"GET http://{o}/echo?lf HTTP/1.1\nHost: {o}\n\n",
        b"GET http://{o}/echo?lf HTTP/1.1\r\nHost: {o}\nX-A: b\r\n\r\n",
    ],
    ids=["all-lf", "one-lf"],
)
def test_bareLfLineEndsAnsweredPromptly(proxy, victim, raw: bytes) -> None:
    """
    A head with bare LF line ends is either accepted (RFC 9112 section 2.2
    allows treating LF as a line end) or refused with 400, at once: never
    left waiting for a CRLF CRLF that will not come.
    """
    resp, conn = proxy.request(
        raw.replace(b"{o}", victim.authority.encode()), timeout=3
    )
    conn.close()
    assert resp.status in (200, 400), resp
    if resp.status == 200:
        assert b"\n" not in splitEcho(resp.body)[0].replace(
            b"\r\n", b""
        ), "bare LF forwarded"


@pytest.mark.parametrize(
    "raw",
    [
        b"GET /\r\n",
        b"G(T http://{o}/echo HTTP/1.1\r\n",
        b"PRI * HTTP/2.0\r\n",
        b"GET http://{o}/\x00 HTTP/1.1\r\nHost: {o}",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
    ],
    ids=["http09", "bad-method", "h2-preface", "nul-in-line", "tls-hello"],
)
def test_hopelessHeadAnsweredAtOnce(proxy, victim, raw: bytes) -> None:
    """
    The start of a head that no more bytes could make valid (a complete
    request line that is malformed, or a first byte no method has, as in
    a TLS handshake sent to the plain port) is answered 400 at once, not
    after the header timeout.
    """
    resp, conn = proxy.request(
        raw.replace(b"{o}", victim.authority.encode()), timeout=3
    )
    conn.close()
    assert resp.status == 400, resp


def test_halfCloseMidHeadAnswered400(proxy, victim) -> None:
    """
    A client that half-closes in the middle of a head gets a 400 saying
    the head was cut short, then the connection closes.
    """
    conn = Conn.open(proxy.port, timeout=3)
    try:
        conn.send(
            b"GET http://%s/echo HTTP/1.1\r\nHost: 12" % victim.authority.encode()
        )
        conn.sock.shutdown(socket.SHUT_WR)
        resp = conn.readResponse(b"GET", timeout=3)
    finally:
        conn.close()
    assert resp.status == 400, resp
    assert b"cut short" in resp.body, resp


def test_manyTrailerFieldsRefused(proxy, victim) -> None:
    """
    A chunked request with a thousand short trailer lines (well under the
    header byte limit) is answered 400 as having too many trailer fields;
    the connection is not dropped without an answer.
    """
    o = victim.authority.encode()
    resp, conn = proxy.request(
        b"POST http://%s/echo HTTP/1.1\r\nHost: %s\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"1\r\na\r\n0\r\n" % (o, o) + b"a:b\r\n" * 1000 + b"\r\n",
        b"POST",
        timeout=3,
    )
    conn.close()
    assert resp.status == 400, resp
    assert b"too many trailer fields" in resp.body, resp
