"""
Integration tests for the policy filters over real sockets: the client
allow list (clients bound to other 127.x.y.z addresses stand in for other
machines), the block list and attempts to get around it, proxy
authentication with a real curl (HTTP and CONNECT), throttling of failed
logins, privacy, header and body rewriting (with an origin in this process
that sends its bodies a few bytes at a time, so matches straddle reads),
and a SIGHUP swapping the policy under open connections.

Names other than C{localhost} do not resolve here (see C{dnsshim}), so a
blocked unresolvable name must get 403, where an unblocked one gets 502.
"""

from __future__ import annotations

import base64
import gzip
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator, Tuple

import bcrypt
import pytest

from proxyapp.filters import access

from .support import (
    TIMEOUT,
    Closed,
    Conn,
    Origin,
    Proxy,
    Response,
    childEnv,
    echoHeaders,
    splitEcho,
    waitForLog,
)

APR1_PASSWORD = ("bob", "password", "$apr1$saltsalt$yAAkm4libquA.ZWLHbSBq/")
SHA512_PASSWORD = (
    "carol",
    "Hello world!",
    "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1",
)


def writeConfig(directory: Path, text: str, name: str = "webproxy.toml") -> Path:
    """
    @return: the path of a new configuration file holding C{text}.
    """
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def connFrom(source: str, port: int, timeout: float = TIMEOUT) -> Conn:
    """
    Connect to the proxy on 127.0.0.1 from the local address C{source}, as
    another machine would.
    """
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    return Conn(s)


def exchange(
    port: int, raw: bytes, source: str = "127.0.0.1", method: bytes = b"GET"
) -> Response:
    """
    Send C{raw} on a new connection from C{source} and read one response.
    """
    with connFrom(source, port) as c:
        c.send(raw)
        return c.readResponse(method)


def get(
    port: int,
    url: str,
    source: str = "127.0.0.1",
    headers: bytes = b"",
    host: bytes = b"",
) -> Response:
    """
    One absolute-form GET (the Host field is the URL's authority unless
    C{host} is given).
    """
    authority = host or url.split("/")[2].encode("utf-8")
    raw = b"GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n%s\r\n" % (
        url.encode("utf-8"),
        authority,
        headers,
    )
    return exchange(port, raw, source)


def connect(
    port: int, authority: str, source: str = "127.0.0.1", headers: bytes = b""
) -> Response:
    """
    One CONNECT; the connection is closed after the response head.
    """
    raw = b"CONNECT %s HTTP/1.1\r\nHost: %s\r\n%s\r\n" % (
        authority.encode(),
        authority.encode(),
        headers,
    )
    return exchange(port, raw, source, b"CONNECT")


def curl(*args: str) -> subprocess.CompletedProcess:
    """
    Run curl with no proxy from the environment.
    """
    exe = shutil.which("curl")
    assert exe, "curl is required for these tests"
    return subprocess.run(
        [exe, "--silent", "--show-error", "--max-time", "15", "--noproxy", "", *args],
        capture_output=True,
        timeout=20,
        env=childEnv(shim=False),
    )


def originRequests(origin: Origin) -> int:
    """
    @return: how many requests C{origin} has answered (its own stats
        requests left out).
    """
    return origin.stats()["requests"]


# -- the allow list ---------------------------------------------------------------


@pytest.fixture
def allowListProxy(makeProxy, makeOrigin, tmp_path) -> Iterator[Tuple[Proxy, Origin]]:
    origin = makeOrigin()
    config = writeConfig(
        tmp_path,
        f"""
[access]
allowed_clients = ["127.0.0.1", "127.0.1.*", "127.0.2.0/24"]
connect_ports = [{origin.port}]
""",
    )
    yield makeProxy("--config", str(config)), origin


def test_allowListAdmits(allowListProxy) -> None:
    """
    Listed addresses, wildcard patterns and CIDR blocks reach the origin.
    """
    proxy, origin = allowListProxy
    for source in ["127.0.0.1", "127.0.1.5", "127.0.2.77"]:
        r = get(proxy.port, origin.url("/echo?allowed"), source)
        assert r.status == 200, (source, r)
        assert r.header(b"x-conn") is not None


def test_allowListBypassAttempts(allowListProxy) -> None:
    """
    From an address outside the list, every way of asking gets 403 (or no
    forwarding at all), on HTTP and CONNECT, and the origin sees nothing.
    """
    proxy, origin = allowListProxy
    before = originRequests(origin)
    outsider = "127.0.0.2"
    target = origin.url("/echo?outsider")
    attempts = [
        b"GET %s HTTP/1.1\r\nHost: %s\r\n\r\n"
        % (target.encode(), origin.authority.encode()),
        b"GET %s HTTP/1.0\r\n\r\n" % target.encode(),
        b"GET %s HTTP/1.1\r\nHost: %s\r\nX-Forwarded-For: 127.0.0.1\r\nForwarded: for=127.0.0.1\r\nX-Real-IP: 127.0.0.1\r\n\r\n"
        % (target.encode(), origin.authority.encode()),
        b"GET %s HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
        % (origin.url("/ws").encode(), origin.authority.encode()),
        b"POST %s HTTP/1.1\r\nHost: %s\r\nContent-Length: 3\r\n\r\nabc"
        % (target.encode(), origin.authority.encode()),
        b"GET http://localhost:%d/echo HTTP/1.1\r\nHost: localhost\r\n\r\n"
        % origin.port,
    ]
    for raw in attempts:
        r = exchange(proxy.port, raw, outsider)
        assert r.status == 403, (raw, r)
        assert r.header(b"x-conn") is None
        assert len(r.body) < 1024
    r = connect(proxy.port, origin.authority, outsider)
    assert r.status == 403
    for source in ["127.0.3.1", "127.1.1.5"]:
        assert get(proxy.port, target, source).status == 403, source
    # Two requests pipelined: neither reaches the origin.
    with connFrom(outsider, proxy.port) as c:
        one = b"GET %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (
            target.encode(),
            origin.authority.encode(),
        )
        c.send(one + one)
        assert c.readResponse().status == 403
        try:
            assert c.readResponse().status == 403
        except Closed:
            # Closing after a refusal is as good.
            pass
    # A request to the proxy itself (origin form) is never forwarded.
    r = exchange(
        proxy.port,
        b"GET /echo HTTP/1.1\r\nHost: %s\r\n\r\n" % origin.authority.encode(),
        outsider,
    )
    assert r.header(b"x-conn") is None
    assert originRequests(origin) == before
    waitForLog(proxy, "refused client 127.0.0.2")


def test_defaultAllowsLoopbackOnly(makeProxy, origin, tmp_path) -> None:
    """
    Without C{allowed_clients} every loopback address is allowed (the
    default is loopback plus private ranges).
    """
    proxy = makeProxy(
        "--config", str(writeConfig(tmp_path, "[access]\nblocked_domains = []\n"))
    )
    assert get(proxy.port, origin.url("/echo"), "127.0.0.2").status == 200
    assert get(proxy.port, origin.url("/echo"), "127.8.9.10").status == 200


# -- the block list ----------------------------------------------------------------


@pytest.fixture(scope="module")
def blockListProxy(workdir, origin, tlsOrigin) -> Iterator[Proxy]:
    directory = workdir / "policy-block"
    directory.mkdir(exist_ok=True)
    listFile = directory / "hosts.txt"
    listFile.write_text(
        "# a hosts file\n0.0.0.0 ads.example tracker.example\nfromfile.example\n",
        encoding="utf-8",
    )
    config = writeConfig(
        directory,
        f"""
[access]
blocked_domains = ["blocked.example", "bücher.example", "localhost", "127.0.0.3"]
blocked_domains_files = ["{listFile}"]
connect_ports = [443, {tlsOrigin.port}, {origin.port}, "10-20"]
""",
    )
    p = Proxy(directory, ["--config", str(config)])
    yield p
    p.stop()


@pytest.mark.parametrize(
    "url",
    [
        "http://blocked.example/",
        "http://BLOCKED.EXAMPLE/",
        "http://Blocked.Example./",
        "http://blocked.example../",
        "http://blocked.example:8080/x",
        "http://bl%6Fcked.example/",
        "http://%62%6C%6F%63%6B%65%64.%65%78%61%6D%70%6C%65/",
        "http://deep.sub.blocked.example/",
        "http://xn--bcher-kva.example/",
        "http://XN--BCHER-KVA.example/",
        "http://b%C3%BCcher.example/",
        "http://www.b%C3%9Ccher.example/",
        "http://ads.example/banner",
        "http://x.tracker.example/",
        "http://fromfile.example/",
        "http://2130706435/",
        "http://0x7f.0.0.3/",
    ],
)
def test_blockedHttp(blockListProxy, url) -> None:
    """
    A blocked domain gets 403 however its name is written (an unblocked
    unresolvable name would get 502).
    """
    r = get(blockListProxy.port, url)
    assert r.status == 403, r


def test_blockedRealHost(blockListProxy, origin) -> None:
    """
    C{localhost} is blocked in every spelling, while the same origin by
    address is reached: the refusal is the block list, not resolution.
    """
    for host in ["localhost", "LOCALHOST", "localhost.", "LocalHost.."]:
        r = get(blockListProxy.port, "http://%s:%d/echo" % (host, origin.port))
        assert r.status == 403, host
        assert r.header(b"x-conn") is None
    assert get(blockListProxy.port, origin.url("/echo")).status == 200
    # The target decides, not a Host field that disagrees with it.
    r = get(
        blockListProxy.port,
        "http://localhost:%d/echo" % origin.port,
        host=b"127.0.0.1:%d" % origin.port,
    )
    assert r.status == 403


def test_unblockedUnresolvable(blockListProxy) -> None:
    """
    The control: a name that is not blocked is looked up and fails (502).
    """
    assert get(blockListProxy.port, "http://notblocked.example/").status == 502
    assert get(blockListProxy.port, "http://blocked.example.evil/").status == 502
    assert get(blockListProxy.port, "http://notblocked-example/").status == 502


@pytest.mark.parametrize(
    "authority",
    [
        "blocked.example:443",
        "BLOCKED.example.:443",
        "sub.blocked.example:443",
        "xn--bcher-kva.example:443",
        "ads.example:443",
    ],
)
def test_blockedConnect(blockListProxy, authority) -> None:
    """
    CONNECT to a blocked domain gets 403.
    """
    assert connect(blockListProxy.port, authority).status == 403


def test_blockedConnectRealHost(blockListProxy, tlsOrigin) -> None:
    """
    CONNECT to C{localhost} is refused while the same origin by address is
    tunnelled; C{[access] connect_ports} ranges are honoured.
    """
    assert connect(blockListProxy.port, "localhost:%d" % tlsOrigin.port).status == 403
    assert connect(blockListProxy.port, "LOCALHOST.:%d" % tlsOrigin.port).status == 403
    assert connect(blockListProxy.port, "127.0.0.1:%d" % tlsOrigin.port).status == 200
    # connect_ports: a port in a configured range is tried (nothing
    # listens there: 502), one outside every range is refused (403).
    assert connect(blockListProxy.port, "127.0.0.1:15").status == 502
    assert connect(blockListProxy.port, "127.0.0.1:25").status == 403
    waitForLog(blockListProxy, "domain localhost is blocked")


def test_rawUnicodeHostNotForwarded(blockListProxy) -> None:
    """
    A raw UTF-8 host in the target is refused by the parser, never
    forwarded.
    """
    r = exchange(
        blockListProxy.port,
        "GET http://bücher.example/ HTTP/1.1\r\nHost: bücher.example\r\n\r\n".encode(
            "utf-8"
        ),
    )
    assert r.status in (400, 403)


def test_largeBlockList(makeProxy, origin, tmp_path) -> None:
    """
    A 100,000-entry list loads in under a second, a lookup against it costs
    about what one against a single entry does, and the running proxy
    enforces its last entry.
    """
    listFile = tmp_path / "big.txt"
    listFile.write_text(
        "".join(f"0.0.0.0 host{i}.ads{i % 97}.example\n" for i in range(100000)),
        encoding="utf-8",
    )
    start = time.perf_counter()
    big = access.makeFilter({"blocked_domains_files": [str(listFile)]})
    loaded = time.perf_counter() - start
    assert loaded < 1.0, loaded
    assert len(big.blocked) == 100000
    small = access.makeFilter({"blocked_domains": ["one.example"]})

    def perLookup(f: access.AccessFilter) -> float:
        hosts = [f"www.page{i}.site{i % 13}.example.org" for i in range(20000)]
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            for host in hosts:
                f.blocked.match(host)
            best = min(best, (time.perf_counter() - start) / len(hosts))
        return best

    bigCost, smallCost = perLookup(big), perLookup(small)
    assert bigCost < 20e-6, bigCost
    assert bigCost < 3 * smallCost, (bigCost, smallCost)
    proxy = makeProxy(
        "--config",
        str(
            writeConfig(tmp_path, f'[access]\nblocked_domains_files = ["{listFile}"]\n')
        ),
    )
    assert (
        get(proxy.port, f"http://www.host99999.ads{99999 % 97}.example/").status == 403
    )
    assert get(proxy.port, origin.url("/echo")).status == 200


# -- authentication ----------------------------------------------------------------


@pytest.fixture(scope="module")
def htpasswd(workdir) -> Path:
    path = workdir / "policy-htpasswd"
    path.write_bytes(
        b"alice:"
        + bcrypt.hashpw(b"s3cret:with:colons", bcrypt.gensalt(10)).replace(
            b"$2b$", b"$2y$"
        )
        + b"\n"
        + b"\n".join(
            f"{user}:{hashed}".encode()
            for user, _, hashed in [APR1_PASSWORD, SHA512_PASSWORD]
        )
        + b"\n"
    )
    return path


@pytest.fixture(scope="module")
def authProxy(workdir, htpasswd, origin, tlsOrigin) -> Iterator[Proxy]:
    directory = workdir / "policy-auth"
    directory.mkdir(exist_ok=True)
    config = writeConfig(
        directory,
        f"""
[auth]
htpasswd = "{htpasswd}"
realm = "Policy Test"
failure_delay = 0.0

[access]
connect_ports = [{tlsOrigin.port}]
""",
    )
    p = Proxy(directory, ["--config", str(config)])
    yield p
    p.stop()


def test_curlProxyUserHttp(authProxy, origin) -> None:
    """
    C{curl --proxy-user} gets through on HTTP with bcrypt, APR1 and
    SHA-512-crypt entries; the origin never sees Proxy-Authorization; the
    access log names the user.
    """
    for user, password in [
        ("alice", "s3cret:with:colons"),
        APR1_PASSWORD[:2],
        SHA512_PASSWORD[:2],
    ]:
        r = curl(
            "-x",
            "http://127.0.0.1:%d" % authProxy.port,
            "--proxy-user",
            f"{user}:{password}",
            origin.url(f"/echo?{user}"),
        )
        assert r.returncode == 0, r.stderr
        head, _ = splitEcho(r.stdout)
        assert head.startswith(b"GET /echo?%s HTTP/1.1\r\n" % user.encode())
        assert b"proxy-authorization" not in dict(echoHeaders(head))
    for user in ["alice", APR1_PASSWORD[0], SHA512_PASSWORD[0]]:
        waitForLog(authProxy, f" - {user} [")


def test_curlProxyUserConnect(authProxy, tlsOrigin, certificate) -> None:
    """
    C{curl -p --proxy-user} opens an authenticated CONNECT tunnel to an
    HTTPS origin.
    """
    r = curl(
        "-p",
        "-x",
        "http://127.0.0.1:%d" % authProxy.port,
        "--proxy-user",
        "alice:s3cret:with:colons",
        "--cacert",
        str(certificate[0]),
        "https://localhost:%d/echo?tls" % tlsOrigin.port,
    )
    assert r.returncode == 0, r.stderr
    head, _ = splitEcho(r.stdout)
    assert head.startswith(b"GET /echo?tls HTTP/1.1\r\n")
    assert b"proxy-authorization" not in dict(echoHeaders(head))


def test_curlWrongPassword(authProxy, origin, tlsOrigin, certificate) -> None:
    """
    A wrong password or none gets 407 with the Basic challenge, on HTTP and
    CONNECT.
    """
    proxyUrl = "http://127.0.0.1:%d" % authProxy.port
    r = curl(
        "-x",
        proxyUrl,
        "--proxy-user",
        "alice:wrong",
        "-o",
        os.devnull,
        "-w",
        "%{http_code}",
        origin.url("/echo"),
    )
    assert r.stdout == b"407", (r.stdout, r.stderr)
    r = curl("-x", proxyUrl, "-D", "-", "-o", os.devnull, origin.url("/echo"))
    assert r.stdout.startswith(b"HTTP/1.1 407 ")
    assert (
        b'Proxy-Authenticate: Basic realm="Policy Test", charset="UTF-8"\r\n'
        in r.stdout
    )
    r = curl(
        "-p",
        "-x",
        proxyUrl,
        "--proxy-user",
        "alice:wrong",
        "--cacert",
        str(certificate[0]),
        "-o",
        os.devnull,
        "-w",
        "%{http_connect}",
        "https://localhost:%d/echo" % tlsOrigin.port,
    )
    assert r.returncode != 0
    assert r.stdout == b"407", (r.stdout, r.stderr)
    r = curl(
        "-p",
        "-x",
        proxyUrl,
        "--cacert",
        str(certificate[0]),
        "-o",
        os.devnull,
        "-w",
        "%{http_connect}",
        "https://localhost:%d/echo" % tlsOrigin.port,
    )
    assert r.stdout == b"407", (r.stdout, r.stderr)


def test_proxyAuthorizationNeverForwarded(authProxy, origin) -> None:
    """
    Right credentials sent by hand, also listed in Connection, do not reach
    the origin.
    """

    token = base64.b64encode(b"bob:password")
    r = get(
        authProxy.port,
        origin.url("/echo"),
        headers=b"Proxy-Authorization: Basic %s\r\nConnection: Proxy-Authorization\r\n"
        % token,
    )
    assert r.status == 200
    head, _ = splitEcho(r.body)
    assert token not in head
    assert b"proxy-authorization" not in head.lower()


def test_failuresThrottled(makeProxy, htpasswd, origin, tmp_path) -> None:
    """
    Each recent failure from a client delays the 407 more; past
    C{block_after} failures the client gets 429, even with the right
    password, while another address still gets in.
    """
    config = writeConfig(
        tmp_path,
        f"""
[filters]
enabled = ["auth"]

[filter.auth]
htpasswd = "{htpasswd}"
failure_delay = 0.4
max_delay = 1.0
block_after = 4
""",
    )
    proxy = makeProxy("--config", str(config))

    def attempt(password: bytes, source: str = "127.0.0.1") -> Tuple[int, float]:
        start = time.monotonic()
        r = get(
            proxy.port,
            origin.url("/echo"),
            source,
            b"Proxy-Authorization: Basic %s\r\n" % base64.b64encode(b"bob:" + password),
        )
        return r.status, time.monotonic() - start

    results = [attempt(b"guess%d" % i) for i in range(4)]
    assert [status for status, _ in results] == [407, 407, 407, 429]
    for (_, elapsed), expected in zip(results, [0.4, 0.8, 1.0]):
        assert expected - 0.05 <= elapsed < expected + 1.0, results
    assert results[3][1] < 0.4, results
    assert attempt(b"password")[0] == 429
    assert attempt(b"password", "127.0.0.5")[0] == 200
    waitForLog(proxy, "too many failed proxy authentication attempts from 127.0.0.1")


# -- privacy, headers, rewriting ---------------------------------------------------------

TOKEN = b"SECRET-TOKEN"
TEXT = b"".join(b"<p>%d: the %s is here</p>\n" % (i, TOKEN) for i in range(150))


def _bomb() -> bytes:
    """
    @return: a gzip-encoded page of 64 MiB of spaces (64 KiB compressed).
    """
    deflater = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = b" " * (1 << 20)
    return b"".join([deflater.compress(block) for _ in range(64)] + [deflater.flush()])


BOMB = _bomb()


class _PieceHandler(BaseHTTPRequestHandler):
    """
    Serves C{/text} (text/html) and C{/gzip} (the same, gzip-encoded) in
    five-byte writes with a pause between them, so that the proxy reads the
    body in many small pieces; C{/bomb}, a gzip bomb, at once.
    """

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.path.startswith("/bomb"):
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(BOMB)))
            self.end_headers()
            self.wfile.write(BOMB)
            return
        body = gzip.compress(TEXT) if self.path.startswith("/gzip") else TEXT
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Set-Cookie", "id=42")
        if self.path.startswith("/gzip"):
            self.send_header("Content-Encoding", "gzip")
        self.end_headers()
        for i in range(0, len(body), 5):
            self.wfile.write(body[i : i + 5])
            time.sleep(0.0005)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def pieceOrigin() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _PieceHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def rewritingProxy(workdir) -> Iterator[Proxy]:
    directory = workdir / "policy-rewrite"
    directory.mkdir(exist_ok=True)
    config = writeConfig(
        directory,
        """
[filters]
enabled = ["privacy", "headers", "rewrite"]

[filter.privacy]
via = false
forwarded_for = "set"
forwarded = "set"
remove = ["From"]
replace = {User-Agent = "Mozilla/5.0 (webproxy)"}
strip_cookies_for = ["127.0.0.1"]

[filter.headers]
request_set = {X-Proxied = "yes"}
request_remove = ["X-Internal"]
response_remove = ["X-Conn"]
response_add = {X-Filtered = "headers"}

[filter.rewrite]
media_types = ["text/html", "application/octet-stream"]

[[filter.rewrite.rule]]
search = "SECRET-TOKEN"
replace = "public"

[[filter.rewrite.rule]]
search = '(\\d+): the public'
replace = 'line \\1: the public'
regex = true
max_match = 64
""",
    )
    p = Proxy(directory, ["--config", str(config)])
    yield p
    p.stop()


def test_privacyAndHeaders(rewritingProxy, origin) -> None:
    """
    The origin sees the privacy and header edits (no From, replaced
    User-Agent, X-Forwarded-For and Forwarded of this hop, no Via of this
    proxy, no cookie); the client sees the response edits.
    """
    r = get(
        rewritingProxy.port,
        origin.url("/echo?privacy"),
        headers=b"From: me@example.com\r\nUser-Agent: curl/8\r\nCookie: id=1\r\nX-Internal: 1\r\n"
        b"X-Forwarded-For: 10.9.9.9\r\nVia: 1.0 elsewhere\r\n",
    )
    assert r.status == 200
    head, _ = splitEcho(r.body)
    seen = dict(echoHeaders(head))
    assert b"from" not in seen
    assert b"cookie" not in seen
    assert b"x-internal" not in seen
    assert seen[b"user-agent"] == b"Mozilla/5.0 (webproxy)"
    assert seen[b"x-forwarded-for"] == b"127.0.0.1"
    assert (
        seen[b"forwarded"]
        == b'for=127.0.0.1;host="%s";proto=http' % origin.authority.encode()
    )
    assert seen[b"x-proxied"] == b"yes"
    assert [v for n, v in echoHeaders(head) if n == b"via"] == [b"1.0 elsewhere"]
    assert r.header(b"x-conn") is None
    assert r.header(b"x-filtered") == b"headers"
    assert r.headerValues(b"via") == []


def test_rewriteEchoedBody(rewritingProxy, origin) -> None:
    """
    A large body (here an echo of an upload) is rewritten as it streams,
    re-framed without Content-Length.
    """
    upload = b"".join(b"%s %d\n" % (TOKEN, i) for i in range(20000))
    raw = (
        b"POST %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
        % (
            origin.url("/echo?upload").encode(),
            origin.authority.encode(),
            len(upload),
            upload,
        )
    )
    r = exchange(rewritingProxy.port, raw)
    assert r.status == 200
    assert r.header(b"content-length") is None
    _, body = splitEcho(r.body)
    assert body == upload.replace(TOKEN, b"public")


@pytest.mark.parametrize("path", ["/text", "/gzip"])
def test_rewriteStraddling(rewritingProxy, pieceOrigin, path) -> None:
    """
    A body arriving five bytes at a time (every match straddles reads),
    plain or gzip-encoded, is rewritten completely by both rules and keeps
    its coding; Set-Cookie from the listed domain is gone.
    """
    r = get(rewritingProxy.port, "http://127.0.0.1:%d%s" % (pieceOrigin, path))
    assert r.status == 200
    body = r.body
    if path == "/gzip":
        assert r.header(b"content-encoding") == b"gzip"
        body = gzip.decompress(body)
    assert body == b"".join(
        b"<p>line %d: the public is here</p>\n" % i for i in range(150)
    )
    assert TOKEN not in body
    assert r.header(b"set-cookie") is None


def test_rewriteBombPassesThrough(rewritingProxy, pieceOrigin) -> None:
    """
    A gzip body that inflates 1,000-fold is not decoded past
    C{max_inflate_ratio} (200): it reaches the client byte for byte as the
    origin sent it (re-framed), and the proxy says why.
    """
    r = get(rewritingProxy.port, "http://127.0.0.1:%d/bomb" % pieceOrigin)
    assert r.status == 200
    assert r.header(b"content-encoding") == b"gzip"
    assert r.body == BOMB
    waitForLog(rewritingProxy, "inflates more than 200 to 1 (max_inflate_ratio)")


# -- reload --------------------------------------------------------------------------


def test_reloadSwapsPolicy(makeProxy, origin, tmp_path) -> None:
    """
    SIGHUP swaps the block list: a keep-alive connection's next request and
    a tunnel opened before the reload carry on, under the new policy.
    """
    config = writeConfig(
        tmp_path,
        f'[access]\nblocked_domains = ["localhost"]\nconnect_ports = [{origin.port}]\n',
    )
    proxy = makeProxy("--config", str(config))
    target = "http://localhost:%d/echo" % origin.port
    request = b"GET %s HTTP/1.1\r\nHost: localhost:%d\r\n\r\n" % (
        target.encode(),
        origin.port,
    )
    with proxy.connect() as keepAlive, proxy.connect() as tunnel:
        keepAlive.send(request)
        assert keepAlive.readResponse().status == 403
        tunnel.send(
            b"CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n"
            % (origin.authority.encode(), origin.authority.encode())
        )
        assert tunnel.readResponse(b"CONNECT").status == 200
        tunnel.send(b"GET /echo?before HTTP/1.1\r\nHost: x\r\n\r\n")
        assert tunnel.readResponse().status == 200
        config.write_text(
            f'[access]\nblocked_domains = ["blocked.example"]\nconnect_ports = [{origin.port}]\n'
        )
        os.kill(proxy.pid, signal.SIGHUP)
        waitForLog(proxy, "configuration reloaded")
        keepAlive.send(request)
        assert keepAlive.readResponse().status == 200
        tunnel.send(b"GET /echo?through HTTP/1.1\r\nHost: x\r\n\r\n")
        assert tunnel.readResponse().status == 200
    assert get(proxy.port, "http://blocked.example/").status == 403
