# -*- test-case-name: tests.integration.test_operations -*-
"""
Integration tests for running the proxy in production: graceful drain on
SIGTERM/SIGINT, the access log file (formats, flush interval, no colour,
logrotate with SIGUSR1), the status page and the open-file limit.

Every test runs the real C{twistd -n webproxy} process against the real
origin (C{origin.py}) on 127.0.0.1.  Every loop is bounded in count and
time.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import re
import resource
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Tuple

import pytest

from proxyapp import __version__

from .origin import pattern
from .support import Closed, Conn, Origin, Proxy, Response, openTunnel

MiB = 1 << 20

# The large transfers of the drain test: sizes, and the rates at which the
# client reads the download and the origin reads the upload.  At these
# rates both take about 2.5 s, long enough to still be in flight when the
# signal arrives half a second in, short enough for the time budget.
DOWNLOAD_SIZE = 64 * MiB
DOWNLOAD_RATE = 26 * MiB
UPLOAD_SIZE = 32 * MiB
UPLOAD_RATE = 13 * MiB

# How long access log lines may stay in memory (AccessLogWriter's default
# flush interval), and the slack allowed on top for a loaded machine.
FLUSH_INTERVAL = 1.0
FLUSH_SLACK = 0.75

JSON_KEYS = [
    "time",
    "client_ip",
    "client_port",
    "user",
    "method",
    "target",
    "version",
    "status",
    "bytes_in",
    "bytes_out",
    "duration_ms",
    "upstream_ip",
    "upstream_port",
    "referer",
    "user_agent",
    "content_type",
    "filter",
    "filter_reason",
    "tunnel",
    "aborted",
]

COMBINED_LINE = re.compile(
    r"^(?P<host>\S+) - (?P<user>\S+) \[(?P<time>[^\]]+)\] "
    r'"(?P<request>(?:[^"\\]|\\.)*)" (?P<status>\d{3}|-) (?P<bytes>\d+|-) '
    r'"(?P<referer>(?:[^"\\]|\\.)*)" "(?P<agent>(?:[^"\\]|\\.)*)" '
    r"(?P<duration>\d+) upstream=(?P<upstream>\S+) filter=(?P<filter>.+)"
    r" client=(?P<client>\S+)$"
)

BLOCKED_DOMAIN = "blocked.example"


# ---------------------------------------------------------------------------
# Helpers.


def waitUntil(
    predicate: Callable[[], object], timeout: float, interval: float = 0.02
) -> object:
    """
    Poll C{predicate} until it returns something true or C{timeout} passes.

    @return: the last value of C{predicate} (false on timeout).
    """
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / interval) + 2):
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)
    return predicate()


def fullLog(proxy: Proxy) -> str:
    """
    @return: the proxy's whole twistd log (standard output and error).
    """
    proxy.process.logFile.flush()
    return proxy.process.logPath.read_text(errors="replace")


def waitForLog(proxy: Proxy, text: str, timeout: float = 5.0, count: int = 1) -> str:
    """
    Wait until C{text} appears C{count} times in the proxy's log.

    @return: the log.
    """
    waitUntil(lambda: fullLog(proxy).count(text) >= count, timeout)
    log = fullLog(proxy)
    assert log.count(text) >= count, "%r not logged:\n%s" % (text, log[-3000:])
    return log


def assertInOrder(log: str, steps: List[str]) -> None:
    """
    Assert that each of C{steps} appears in C{log}, in this order.
    """
    position = -1
    for step in steps:
        found = log.find(step, position + 1)
        assert found > position, "%r missing or out of order in:\n%s" % (
            step,
            log[-3000:],
        )
        position = found


def waitExit(proxy: Proxy, timeout: float) -> Optional[int]:
    """
    Wait for the proxy process to exit.

    @return: its return code, or C{None} if it is still running.
    """
    waitUntil(lambda: proxy.process.proc.poll() is not None, timeout, 0.01)
    return proxy.process.proc.poll()


def connectRefused(port: int) -> bool:
    """
    Try one new TCP connection to the proxy.

    @return: C{True} if it was refused, C{False} if it was accepted (it is
        closed again at once).  A connection reset while connecting counts
        as refused: the kernel had queued it on the listening socket when
        the proxy closed that socket, so the proxy never accepted it.
    """
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(1.0)
    try:
        s.connect(("127.0.0.1", port))
    except (ConnectionRefusedError, ConnectionResetError):
        return True
    finally:
        s.close()
    return False


@contextlib.contextmanager
def defaultSigint() -> Iterator[None]:
    """
    Let processes started inside the block handle SIGINT.

    A process inherits an I{ignored} SIGINT (a test run started in the
    background by a shell without job control), and twistd, like Python
    itself, then leaves it ignored, which is right for a background job.
    Installing Python's handler here makes SIGINT "default" in the child,
    which is how twistd is started from a terminal or a service manager.
    """
    try:
        previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    except ValueError:
        # Not the main thread: leave SIGINT alone.
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class Download(threading.Thread):
    """
    A raw-socket client downloading C{/bytes?n=size} through the proxy,
    reading at most C{rate} bytes per second and comparing every byte with
    the origin's pattern as it arrives.

    @ivar received: body bytes received (and checked) so far.
    @ivar mismatch: the offset of the first wrong byte, or C{None}.
    @ivar closedAfter: whether the proxy closed the connection right after
        the body (it must during a drain).
    @ivar error: an exception that ended the download early, or C{None}.
    @ivar finished: C{time.monotonic()} when the whole body was in.
    """

    def __init__(self, proxyPort: int, origin: Origin, size: int, rate: float) -> None:
        super().__init__(daemon=True)
        self.proxyPort = proxyPort
        self.origin = origin
        self.size = size
        self.rate = rate
        self.received = 0
        self.mismatch: Optional[int] = None
        self.closedAfter = False
        self.error: Optional[BaseException] = None
        self.finished: Optional[float] = None
        self.response: Optional[Response] = None

    def run(self) -> None:
        try:
            self._run()
        except BaseException as e:  # reported by the test
            self.error = e

    def _run(self) -> None:
        with Conn.open(self.proxyPort, timeout=10) as conn:
            conn.send(
                b"GET %s HTTP/1.1\r\nHost: %s\r\n\r\n"
                % (
                    self.origin.url("/bytes?n=%d" % self.size).encode(),
                    self.origin.authority.encode(),
                )
            )
            self.response = Response(conn.readUntil(b"\r\n\r\n", timeout=10))
            assert self.response.status == 200, self.response
            assert self.response.header(b"content-length") == b"%d" % self.size
            pending = bytes(conn.buf)
            del conn.buf[:]
            started = time.monotonic()
            deadline = started + 60
            sock = conn.sock
            while self.received < self.size:
                if not pending:
                    # Throttle: never ahead of the rate.
                    due = started + self.received / self.rate
                    now = time.monotonic()
                    if now >= deadline:
                        raise TimeoutError("download stalled at %d" % self.received)
                    if due > now:
                        time.sleep(min(due - now, 0.05))
                        continue
                    sock.settimeout(max(0.1, deadline - now))
                    pending = sock.recv(min(256 * 1024, self.size - self.received))
                    if not pending:
                        raise Closed("closed after %d bytes" % self.received)
                chunk, pending = pending[: self.size - self.received], b""
                if chunk != pattern(self.received, len(chunk)):
                    expected = pattern(self.received, len(chunk))
                    first = next(
                        i for i in range(len(chunk)) if chunk[i] != expected[i]
                    )
                    self.mismatch = self.received + first
                    return
                self.received += len(chunk)
            self.finished = time.monotonic()
            closed, extra = conn.waitClosed(timeout=5)
            self.closedAfter = closed and not extra


class Upload(threading.Thread):
    """
    A raw-socket client POSTing C{size} random bytes through the proxy to
    the origin's C{/upload?rate=R}, which reads them at C{rate} bytes per
    second and answers with their count and sha256.

    @ivar sent: body bytes handed to the kernel so far.
    @ivar answer: the origin's JSON answer, once received.
    @ivar closedAfter: whether the proxy closed the connection right after
        the response.
    """

    def __init__(self, proxyPort: int, origin: Origin, size: int, rate: float) -> None:
        super().__init__(daemon=True)
        self.proxyPort = proxyPort
        self.origin = origin
        self.size = size
        self.body = random.Random(20240611).randbytes(size)
        self.digest = hashlib.sha256(self.body).hexdigest()
        self.rate = rate
        self.sent = 0
        self.status: Optional[int] = None
        self.answer: Optional[dict] = None
        self.closedAfter = False
        self.error: Optional[BaseException] = None
        self.finished: Optional[float] = None

    def run(self) -> None:
        try:
            self._run()
        except BaseException as e:  # reported by the test
            self.error = e

    def _run(self) -> None:
        with Conn.open(self.proxyPort, timeout=30) as conn:
            conn.send(
                b"POST %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n"
                b"Content-Type: application/octet-stream\r\n\r\n"
                % (
                    self.origin.url("/upload?rate=%d" % self.rate).encode(),
                    self.origin.authority.encode(),
                    self.size,
                )
            )
            view = memoryview(self.body)
            step = 256 * 1024
            for offset in range(0, self.size, step):
                conn.sock.sendall(view[offset : offset + step])
                self.sent = min(self.size, offset + step)
            response = conn.readResponse(b"POST", timeout=30)
            self.status = response.status
            self.answer = json.loads(response.body)
            self.finished = time.monotonic()
            closed, extra = conn.waitClosed(timeout=5)
            self.closedAfter = closed and not extra


def exchange(proxy: Proxy, raw: bytes, method: bytes = b"GET") -> dict:
    """
    Send one request on a new connection, read the response, close.

    @return: what the client saw: C{port} (its own port), C{sent} and
        C{received} (bytes on the wire), C{response}, C{elapsed} seconds and
        C{ended} (C{time.monotonic()} after the close).
    """
    started = time.monotonic()
    with Conn.open(proxy.port) as conn:
        port = conn.sock.getsockname()[1]
        conn.send(raw)
        response = conn.readResponse(method)
    ended = time.monotonic()
    return {
        "port": port,
        "sent": len(raw),
        "received": len(response.rawHead) + len(response.body),
        "response": response,
        "elapsed": ended - started,
        "ended": ended,
    }


def tunnelExchange(proxy: Proxy, origin: Origin) -> dict:
    """
    Open a CONNECT tunnel to the origin, send one request through it, read
    the answer, close.

    @return: like L{exchange}, with the CONNECT response as C{response}
        and the tunnelled one as C{inner}.
    """
    started = time.monotonic()
    authority = origin.authority.encode()
    connect = b"CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (authority, authority)
    inner = b"GET /echo/tunnelled HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % (
        authority
    )
    with Conn.open(proxy.port) as conn:
        port = conn.sock.getsockname()[1]
        conn.send(connect)
        response = conn.readResponse(b"CONNECT")
        assert response.status == 200, response
        conn.send(inner)
        innerResponse = conn.readResponse()
        # The origin closes after Connection: close; read to the end so the
        # proxy sees both directions finish.
        closed, rest = conn.waitClosed()
        assert closed and not rest, rest
    ended = time.monotonic()
    return {
        "port": port,
        "sent": len(connect) + len(inner),
        "received": len(response.rawHead)
        + len(innerResponse.rawHead)
        + len(innerResponse.body),
        "response": response,
        "inner": innerResponse,
        "elapsed": ended - started,
        "ended": ended,
    }


def readRecords(path: Path) -> List[str]:
    """
    @return: the complete lines of the access log at C{path} (none if it
        does not exist).
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    text = data.decode("utf-8")
    return text.splitlines()[: text.count("\n")]


def waitForRecords(path: Path, count: int, timeout: float) -> Tuple[List[str], float]:
    """
    Wait until the access log has at least C{count} lines.

    @return: the lines and C{time.monotonic()} when they were first seen.
    """
    waitUntil(lambda: len(readRecords(path)) >= count, timeout, 0.01)
    return readRecords(path), time.monotonic()


def writeConfig(workdir: Path, name: str, body: str) -> Path:
    path = workdir / ("%s-%d.toml" % (name, time.monotonic_ns()))
    path.write_text(body)
    return path


# ---------------------------------------------------------------------------
# 1. Graceful drain.


@pytest.mark.parametrize(
    "signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"]
)
def test_drainFinishesTransfersInFlight(
    makeProxy, origin: Origin, workdir: Path, signum: int
) -> None:
    """
    On SIGTERM or SIGINT the proxy stops accepting at once (a new connection
    is refused) while a large download and a large upload in flight go on
    and complete byte-exact; the proxy then closes both connections and
    exits as twistd does after a clean stop, re-raising the signal, with
    each step in its log.  An idle keep-alive client is closed at once, and
    both drained exchanges are in the access log.
    """
    accessLog = workdir / ("drain-%d.log" % time.monotonic_ns())
    with defaultSigint():
        proxy = makeProxy(
            "--drain-timeout",
            "20",
            "--access-log",
            str(accessLog),
            "--log-format",
            "json",
        )
    # An idle keep-alive client: it has nothing in flight, so the drain
    # closes it at once instead of waiting for it.
    idle = Conn.open(proxy.port)
    idle.send(
        b"GET %s HTTP/1.1\r\nHost: %s\r\n\r\n"
        % (origin.url("/echo/idle").encode(), origin.authority.encode())
    )
    assert idle.readResponse().status == 200
    download = Download(proxy.port, origin, DOWNLOAD_SIZE, DOWNLOAD_RATE)
    upload = Upload(proxy.port, origin, UPLOAD_SIZE, UPLOAD_RATE)
    download.start()
    upload.start()
    inFlight = waitUntil(
        lambda: (download.received >= 4 * MiB and upload.sent >= 4 * MiB)
        or download.error
        or upload.error,
        10,
    )
    assert inFlight and not download.error and not upload.error, (
        download.error,
        upload.error,
    )
    assert download.received < DOWNLOAD_SIZE and upload.answer is None

    signalled = time.monotonic()
    os.kill(proxy.pid, signum)
    refused = waitUntil(lambda: connectRefused(proxy.port), 2.0, 0.01)
    refusedAt = time.monotonic()
    assert refused, "new connections still accepted after the signal"
    assert refusedAt - signalled < 1.0
    # Refused while both transfers were still going on, and the proxy alive.
    assert download.finished is None and download.received < DOWNLOAD_SIZE
    assert upload.answer is None
    assert proxy.process.proc.poll() is None
    with idle:
        closed, rest = idle.waitClosed(timeout=1.0)
    assert closed and not rest, "the idle keep-alive connection was kept open"
    assert download.finished is None, "the download ended before the idle client"

    download.join(30)
    upload.join(30)
    assert not download.is_alive() and not upload.is_alive()
    assert download.error is None, repr(download.error)
    assert download.mismatch is None, "download differs at byte %d" % download.mismatch
    assert download.received == DOWNLOAD_SIZE
    assert download.closedAfter, "the proxy kept the download's connection open"
    assert upload.error is None, repr(upload.error)
    assert upload.status == 200
    assert upload.answer == {"count": UPLOAD_SIZE, "sha256": upload.digest}
    assert upload.closedAfter, "the proxy kept the upload's connection open"

    code = waitExit(proxy, 5)
    exited = time.monotonic()
    assert code == -signum, (code, fullLog(proxy)[-2000:])
    # Drained, not timed out: it exits as soon as the last transfer is done.
    assert exited - max(download.finished, upload.finished) < 2.0
    name = signal.Signals(signum).name
    assertInOrder(
        fullLog(proxy),
        [
            "Received %s, shutting down." % name,
            "stopped accepting; draining 2 connection(s) in flight for up to 20 s",
            "drained: every request in flight completed",
            "Server Shut Down.",
        ],
    )
    assert "drain timeout" not in fullLog(proxy)
    # Both drained exchanges are in the access log, which is flushed before
    # the process exits.
    records = [json.loads(line) for line in readRecords(accessLog)]
    downloads = [
        r for r in records if r["target"] == origin.url("/bytes?n=%d" % DOWNLOAD_SIZE)
    ]
    uploads = [r for r in records if r["target"].startswith(origin.url("/upload?"))]
    assert len(downloads) == 1 and len(uploads) == 1, records
    assert downloads[0]["status"] == 200
    assert downloads[0]["bytes_out"] == len(download.response.rawHead) + DOWNLOAD_SIZE
    assert uploads[0]["status"] == 200
    assert uploads[0]["bytes_in"] > UPLOAD_SIZE


@pytest.mark.parametrize(
    "signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"]
)
def test_drainTimeoutCutsStalledTransfer(
    makeProxy, origin: Origin, signum: int
) -> None:
    """
    With C{--drain-timeout 1}, a download whose client stopped reading
    cannot finish: after the signal the proxy waits one second, cuts the
    connection, logs the drain timeout and exits (re-raising the signal)
    within about 1-3 seconds.
    """
    with defaultSigint():
        proxy = makeProxy("--drain-timeout", "1")
    size = 64 * MiB
    conn = Conn.open(proxy.port, timeout=10)
    try:
        conn.send(
            b"GET %s HTTP/1.1\r\nHost: %s\r\n\r\n"
            % (origin.url("/bytes?n=%d" % size).encode(), origin.authority.encode())
        )
        response = Response(conn.readUntil(b"\r\n\r\n"))
        assert response.status == 200
        # Stop reading: the socket buffers fill and the proxy pauses.
        time.sleep(0.3)

        signalled = time.monotonic()
        os.kill(proxy.pid, signum)
        code = waitExit(proxy, 6)
        elapsed = time.monotonic() - signalled
        assert code == -signum, (code, fullLog(proxy)[-2000:])
        assert 0.9 <= elapsed <= 3.0, elapsed

        # The client gets what was buffered, then the connection ends
        # (closed or reset) short of the body.
        received = len(conn.buf)
        for _ in range(10000):
            try:
                conn.sock.settimeout(5)
                data = conn.sock.recv(1 << 20)
            except ConnectionResetError:
                break
            if not data:
                break
            received += len(data)
        assert received < size
    finally:
        conn.close()
    log = fullLog(proxy)
    assertInOrder(
        log,
        [
            "Received %s, shutting down." % signal.Signals(signum).name,
            "stopped accepting; draining 1 connection(s) in flight for up to 1 s",
            "drain timeout: closing 1 connection(s) still in flight",
            "Server Shut Down.",
        ],
    )
    assert "drained: every request in flight completed" not in log


def _openTunnel(proxy: Proxy, origin: Origin) -> Conn:
    """
    Open a CONNECT tunnel to the origin and make one exchange through it,
    leaving the tunnel open.
    """
    conn = openTunnel(proxy, origin.authority)
    conn.send(b"GET /echo HTTP/1.1\r\nHost: a\r\n\r\n")
    assert conn.readResponse().status == 200
    return conn


def test_drainLetsTunnelFinish(makeProxy, origin: Origin) -> None:
    """
    A CONNECT tunnel open at SIGTERM keeps relaying during the drain; when
    its client closes it, the drain completes and the proxy exits without
    waiting for the drain timeout.
    """
    proxy = makeProxy("--connect-port", str(origin.port), "--drain-timeout", "20")
    conn = _openTunnel(proxy, origin)
    try:
        os.kill(proxy.pid, signal.SIGTERM)
        time.sleep(0.5)
        assert proxy.process.proc.poll() is None, "exited with a tunnel open"
        conn.send(b"GET /echo HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        assert conn.readResponse().status == 200
    finally:
        conn.close()
    code = waitExit(proxy, 10)
    assert code == -signal.SIGTERM, (code, fullLog(proxy)[-2000:])
    assertInOrder(
        fullLog(proxy),
        [
            "stopped accepting; draining 1 connection(s) in flight for up to 20 s",
            "drained: every request in flight completed",
        ],
    )


def test_drainTimeoutCutsOpenTunnel(makeProxy, origin: Origin) -> None:
    """
    A CONNECT tunnel still open when the drain timeout passes is cut: the
    client sees its connection end and the proxy exits within about 1-3
    seconds of the signal.
    """
    proxy = makeProxy("--connect-port", str(origin.port), "--drain-timeout", "1")
    conn = _openTunnel(proxy, origin)
    try:
        signalled = time.monotonic()
        os.kill(proxy.pid, signal.SIGTERM)
        code = waitExit(proxy, 6)
        elapsed = time.monotonic() - signalled
        assert code == -signal.SIGTERM, (code, fullLog(proxy)[-2000:])
        assert 0.9 <= elapsed <= 3.0, elapsed
        conn.sock.settimeout(5)
        try:
            assert conn.sock.recv(100) == b""
        except ConnectionResetError:
            pass
    finally:
        conn.close()
    assertInOrder(
        fullLog(proxy),
        [
            "stopped accepting; draining 1 connection(s) in flight for up to 1 s",
            "drain timeout: closing 1 connection(s) still in flight",
            "Server Shut Down.",
        ],
    )


def test_drainTimeoutStillLogsCutRequest(
    makeProxy, origin: Origin, workdir: Path
) -> None:
    """
    A download cut by the drain timeout still gets its access log record
    (status 200, fewer bytes than the body), like every other request:
    the record is written before the access log is closed.
    """
    accessLog = workdir / ("cut-%d.log" % time.monotonic_ns())
    proxy = makeProxy(
        "--drain-timeout", "1", "--access-log", str(accessLog), "--log-format", "json"
    )
    size = 64 * MiB
    target = origin.url("/bytes?n=%d" % size)
    with Conn.open(proxy.port, timeout=10) as conn:
        conn.send(
            b"GET %s HTTP/1.1\r\nHost: %s\r\n\r\n"
            % (target.encode(), origin.authority.encode())
        )
        assert Response(conn.readUntil(b"\r\n\r\n")).status == 200
        time.sleep(0.3)
        os.kill(proxy.pid, signal.SIGTERM)
        assert waitExit(proxy, 6) == -signal.SIGTERM
    waitForLog(proxy, "drain timeout: closing 1 connection(s) still in flight")
    records = [json.loads(line) for line in readRecords(accessLog)]
    cut = [r for r in records if r["target"] == target]
    assert len(cut) == 1, (
        "no access log record for the request cut by the drain timeout",
        records,
        fullLog(proxy)[-1500:],
    )
    assert cut[0]["status"] == 200
    assert 0 < cut[0]["bytes_out"] < size


# ---------------------------------------------------------------------------
# 2. The access log.


@pytest.fixture
def accessLogProxy(
    makeProxy, origin: Origin, workdir: Path, request: pytest.FixtureRequest
) -> Iterator[Tuple[Proxy, Path, str]]:
    """
    A proxy writing its access log in the format given by the test's
    parameter to a new file, with C{--colored always}, C{blocked.example}
    blocked by configuration and CONNECT allowed to the origin's port.
    """
    logFormat = request.param
    path = workdir / ("access-%s-%d.log" % (logFormat, time.monotonic_ns()))
    config = writeConfig(
        workdir, "access", '[access]\nblocked_domains = ["%s"]\n' % BLOCKED_DOMAIN
    )
    proxy = makeProxy(
        "--config",
        str(config),
        "--connect-port",
        str(origin.port),
        "--access-log",
        str(path),
        "--log-format",
        logFormat,
        "--colored",
        "always",
    )
    yield proxy, path, logFormat


def parseRecord(line: str, logFormat: str) -> dict:
    """
    Parse one access log line into common fields: C{client_ip},
    C{client_port} (json and combined), C{method}, C{target}, C{status}, C{bytes},
    C{duration_ms}, C{upstream} (C{ip:port}; squid: C{ip}), C{filter},
    C{reason}, and C{raw}.
    """
    if logFormat == "json":
        record = json.loads(line)
        assert list(record) == JSON_KEYS, line
        upstream = None
        if record["upstream_ip"] is not None:
            upstream = "%s:%d" % (record["upstream_ip"], record["upstream_port"])
        return {
            "client_ip": record["client_ip"],
            "client_port": record["client_port"],
            "method": record["method"],
            "target": record["target"],
            "status": record["status"],
            "bytes": record["bytes_out"],
            "bytes_in": record["bytes_in"],
            "duration_ms": record["duration_ms"],
            "upstream": upstream,
            "filter": record["filter"],
            "reason": record["filter_reason"],
            "tunnel": record["tunnel"],
            "raw": record,
        }
    if logFormat == "combined":
        m = COMBINED_LINE.match(line)
        assert m, line
        method, target, version = m.group("request").split(" ")
        assert version == "HTTP/1.1", line
        name, _, reason = m.group("filter").partition(":")
        clientIP, _, clientPort = m.group("client").rpartition(":")
        assert clientIP == m.group("host"), line
        return {
            "client_ip": m.group("host"),
            "client_port": int(clientPort),
            "method": method,
            "target": target,
            "status": int(m.group("status")),
            "bytes": int(m.group("bytes")),
            "duration_ms": int(m.group("duration")),
            "upstream": None if m.group("upstream") == "-" else m.group("upstream"),
            "filter": None if name == "-" else name,
            "reason": reason[1:-1] if reason else None,
            "raw": m.groupdict(),
        }
    assert logFormat == "squid"
    fields = line.split()
    assert len(fields) == 10, line
    stamp, elapsed, client, result, size, method, url, user, hierarchy, mediaType = (
        fields
    )
    assert re.fullmatch(r"\d{10}\.\d{3}", stamp), line
    assert re.fullmatch(r"\d+", elapsed), line
    code, _, status = result.partition("/")
    assert re.fullmatch(r"[A-Z_]+", code) and re.fullmatch(r"\d{3}", status), line
    assert user == "-", line
    how, _, peer = hierarchy.partition("/")
    assert how in ("HIER_DIRECT", "HIER_NONE"), line
    assert (how == "HIER_NONE") == (peer == "-"), line
    # The line is laid out with Squid's widths: "%ts.%03tu %6tr %>a ...".
    assert re.match(r"^\d{10}\.\d{3} [ \d]{5}\d ", line), line
    return {
        "time": float(stamp),
        "client_ip": client,
        "method": method,
        "target": url,
        "status": int(status),
        "code": code,
        "bytes": int(size),
        "duration_ms": int(elapsed),
        "upstream": None if peer == "-" else peer,
        "media_type": mediaType,
        "raw": fields,
    }


@pytest.mark.parametrize("accessLogProxy", ["combined", "squid", "json"], indirect=True)
def test_accessLogRecords(accessLogProxy, origin: Origin) -> None:
    """
    The access log file gets one record per request and per CONNECT tunnel,
    within the flush interval, naming client, method, target, status,
    bytes, duration and upstream; a refusal by the C{access} filter names
    the filter and its reason; the file holds no ANSI escapes although
    C{--colored always} is given.
    """
    proxy, path, logFormat = accessLogProxy
    # Records from the readiness probe (GET / to the proxy) reach the file
    # within the flush interval too; wait for them so that ours are counted
    # from a known point.
    waitUntil(lambda: readRecords(path), FLUSH_INTERVAL + FLUSH_SLACK, 0.01)
    before = len(readRecords(path))
    wallStart = time.time()

    authority = origin.authority.encode()
    plain = exchange(
        proxy,
        b"GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: ops-test\r\n\r\n"
        % (origin.url("/bytes?n=1000").encode(), authority),
    )
    assert plain["response"].status == 200
    slow = exchange(
        proxy,
        b"GET %s HTTP/1.1\r\nHost: %s\r\n\r\n"
        % (origin.url("/slow-head?delay=0.3").encode(), authority),
    )
    assert slow["response"].status == 200
    tunnel = tunnelExchange(proxy, origin)
    blockedTarget = "http://%s/x" % BLOCKED_DOMAIN
    blocked = exchange(
        proxy,
        b"GET %s HTTP/1.1\r\nHost: %s\r\n\r\n"
        % (blockedTarget.encode(), BLOCKED_DOMAIN.encode()),
    )
    assert blocked["response"].status == 403
    mine = [plain, slow, tunnel, blocked]

    lines, seen = waitForRecords(path, before + len(mine), 3 * FLUSH_INTERVAL)
    assert len(lines) >= before + len(mine), lines
    # The first of these exchanges started the flush timer.
    assert seen - plain["ended"] <= FLUSH_INTERVAL + FLUSH_SLACK
    time.sleep(0.3)
    data = path.read_bytes()
    assert b"\x1b" not in data, data[-500:]
    lines = readRecords(path)
    assert data.endswith(b"\n")
    records = [parseRecord(line, logFormat) for line in lines]
    probes = records[:before]
    assert all(r["method"] == "GET" and r["target"] == "/" for r in probes), probes
    ours = records[before:]
    assert len(ours) == len(mine), lines[before:]
    byTarget = {}
    for r in ours:
        assert r["target"] not in byTarget, "two records for %r" % r["target"]
        byTarget[r["target"]] = r
    originAddress = "127.0.0.1:%d" % origin.port
    expected = {
        origin.url("/bytes?n=1000"): ("GET", plain, 200, originAddress),
        origin.url("/slow-head?delay=0.3"): ("GET", slow, 200, originAddress),
        origin.authority: ("CONNECT", tunnel, 200, originAddress),
        blockedTarget: ("GET", blocked, 403, None),
    }
    assert set(byTarget) == set(expected), sorted(byTarget)
    for target, (method, seenByClient, status, upstream) in expected.items():
        r = byTarget[target]
        assert r["client_ip"] == "127.0.0.1", r
        assert r["method"] == method, r
        assert r["status"] == status, r
        # Everything sent to the client, head included.
        assert r["bytes"] == seenByClient["received"], (r, seenByClient["received"])
        assert 0 <= r["duration_ms"] <= seenByClient["elapsed"] * 1000 + 50, r
        if logFormat == "squid":
            assert r["upstream"] == (upstream and upstream.rsplit(":", 1)[0]), r
            assert wallStart - 1 <= r["time"] <= time.time() + 1, r
        else:
            assert r["upstream"] == upstream, r
        if logFormat != "squid":
            assert r["client_port"] == seenByClient["port"], r
        if logFormat == "json":
            assert r["bytes_in"] == seenByClient["sent"], r
            assert r["tunnel"] is (method == "CONNECT"), r
    assert byTarget[origin.url("/slow-head?delay=0.3")]["duration_ms"] >= 290

    refusal = byTarget[blockedTarget]
    if logFormat == "squid":
        # Squid's native layout has no field for it: TCP_DENIED says a
        # rule refused, and the proxy's own log names the filter.
        assert refusal["code"] == "TCP_DENIED", refusal
        assert byTarget[origin.authority]["code"] == "TCP_TUNNEL"
        assert byTarget[origin.url("/bytes?n=1000")]["code"] == "TCP_MISS"
        log = fullLog(proxy)
        assert "[proxyapp.filters.access#info] blocked %s" % blockedTarget in log, log
        assert "blocked domain %s" % BLOCKED_DOMAIN in log
    else:
        assert refusal["filter"] == "access", refusal
        assert refusal["reason"] == "blocked domain %s" % BLOCKED_DOMAIN, refusal
        for target in expected:
            if target != blockedTarget:
                assert byTarget[target]["filter"] is None, byTarget[target]


def test_coloredAlwaysColoursStandardOutput(makeProxy, origin: Origin) -> None:
    """
    C{--colored always} does colour an access log written to standard
    output (a green 2xx line), so the file test above shows that files are
    exempt, not that the option is ignored.
    """
    proxy = makeProxy("--access-log", "-", "--colored", "always")
    assert proxy.get(origin.url("/bytes?n=10")).status == 200
    log = waitForLog(proxy, "/bytes?n=10", timeout=FLUSH_INTERVAL + FLUSH_SLACK + 1)
    line = next(l for l in log.splitlines() if "/bytes?n=10" in l)
    assert line.startswith("\x1b[32m") and line.endswith("\x1b[0m"), repr(line)


# ---------------------------------------------------------------------------
# 3. logrotate.


def test_sigusr1ReopensAccessLog(makeProxy, origin: Origin, workdir: Path) -> None:
    """
    After the access log file is renamed and SIGUSR1 sent, new records go to
    a new file at the original path; records from before the signal
    (including ones still buffered when it arrived) stay in the renamed
    file.
    """
    path = workdir / ("rotate-%d.log" % time.monotonic_ns())
    rotated = path.with_name(path.name + ".1")
    proxy = makeProxy("--access-log", str(path), "--log-format", "json")

    def get(tag: str) -> None:
        assert proxy.get(origin.url("/echo/%s" % tag)).status == 200

    def tagged(lines: List[str]) -> List[str]:
        return [
            json.loads(l)["target"].rsplit("/", 1)[1]
            for l in lines
            if "/echo/" in json.loads(l)["target"]
        ]

    get("before-1")
    waitUntil(lambda: any("before-1" in l for l in readRecords(path)), 3)
    os.rename(path, rotated)
    # Logged after the rename but before the signal: still the old file.
    get("before-2")
    os.kill(proxy.pid, signal.SIGUSR1)
    waitForLog(proxy, "access log reopened")
    get("after-1")
    get("after-2")
    waitUntil(lambda: len(tagged(readRecords(path))) >= 2, 3)
    time.sleep(0.2)
    assert tagged(readRecords(rotated)) == ["before-1", "before-2"]
    assert tagged(readRecords(path)) == ["after-1", "after-2"]
    assert proxy.process.proc.poll() is None


# ---------------------------------------------------------------------------
# 4. Status.


def statusJSON(proxy: Proxy) -> dict:
    """
    @return: the proxy's C{/status.json}, asked in origin form.
    """
    result = exchange(
        proxy,
        b"GET /status.json HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n"
        % proxy.port,
    )
    response = result["response"]
    assert response.status == 200, response
    assert response.header(b"content-type").startswith(b"application/json")
    return json.loads(response.body)


def test_statusJSON(makeProxy, origin: Origin) -> None:
    """
    C{GET /status.json} sent to the proxy itself reports version, uptime,
    open client and upstream connections, requests served and bytes
    relayed, and the figures move with proxied traffic.
    """
    proxy = makeProxy()
    first = statusJSON(proxy)
    for key in (
        "version",
        "uptime_seconds",
        "client_connections",
        "upstream_connections",
        "requests",
        "bytes_from_clients",
        "bytes_to_clients",
    ):
        assert key in first, (key, first)
    assert first["version"] == __version__
    assert first["name"] == "webproxy"
    assert first["uptime_seconds"] >= 0

    size = 200_000
    held = Conn.open(proxy.port)
    try:
        raw = b"GET %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (
            origin.url("/bytes?n=%d" % size).encode(),
            origin.authority.encode(),
        )
        held.send(raw)
        response = held.readResponse()
        assert response.status == 200 and len(response.body) == size
        time.sleep(0.1)
        # The keep-alive client connection and its upstream are still open.
        during = statusJSON(proxy)
        assert during["client_connections"] >= first["client_connections"] + 1, during
        assert during["upstream_connections"] >= 1, during
        assert during["requests"] >= first["requests"] + 2, (first, during)
        assert during["bytes_to_clients"] >= first["bytes_to_clients"] + size, during
        assert during["bytes_from_clients"] >= first["bytes_from_clients"] + len(raw)
        assert during["uptime_seconds"] > first["uptime_seconds"]
    finally:
        held.close()

    # Once the client is gone, it is no longer counted as open.
    def fewerClients() -> bool:
        return statusJSON(proxy)["client_connections"] < during["client_connections"]

    assert waitUntil(fewerClients, 3, 0.05), statusJSON(proxy)


def test_statusPage(makeProxy) -> None:
    """
    C{GET /} sent to the proxy itself is an HTML page naming webproxy and
    its version.
    """
    proxy = makeProxy()
    result = exchange(
        proxy,
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n"
        % proxy.port,
    )
    response = result["response"]
    assert response.status == 200
    assert response.header(b"content-type").startswith(b"text/html")
    page = response.body.decode("utf-8")
    assert "<html" in page.lower()
    assert "webproxy %s" % __version__ in page, page


# ---------------------------------------------------------------------------
# 5. Open-file limit.


def test_openFileLimitRaisedAndLogged(makeProxy) -> None:
    """
    At start the proxy raises its open-file soft limit to the hard limit and
    logs "open-file limit raised from X to Y" with both values.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    # Start the proxy with a lower soft limit than it can have, so that
    # raising it is visible (the child inherits the limits).
    lowered = min(soft, 256, target)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowered, hard))
    try:
        proxy = makeProxy()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    log = waitForLog(proxy, "open-file limit raised from")
    assert "open-file limit raised from %d to %d" % (lowered, target) in log, log
    with open("/proc/%d/limits" % proxy.pid) as f:
        line = next(l for l in f if l.startswith("Max open files"))
    assert line.split()[3] == str(target), line
