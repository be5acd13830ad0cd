"""
The clients: wrk for request rates and latencies, curl for single downloads,
and plain sockets for idle connections.
"""

import errno
import os
import select
import socket
import subprocess
import time
from dataclasses import dataclass

from servers import cleanEnvironment, pinned

WRK_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "wrk_report.lua")


@dataclass
class WrkResult:
    """
    What one wrk run reported.

    @ivar errors: wrk's error counters (connect, read, write, status,
        timeout); status counts responses other than 2xx and 3xx.
    """

    requests: int
    seconds: float
    bytes: int
    errors: dict[str, int]
    p50Ms: float
    p99Ms: float
    meanMs: float
    maxMs: float

    @property
    def requestsPerSecond(self) -> float:
        return self.requests / self.seconds

    @property
    def megabytesPerSecond(self) -> float:
        return self.bytes / self.seconds / 1e6

    @property
    def errorCount(self) -> int:
        return sum(self.errors.values())

    def describeErrors(self) -> str:
        """
        @return: the non-zero error counters, e.g. C{"read errors 12"}.
        """
        return ", ".join(
            f"{kind} errors {count}" for kind, count in self.errors.items() if count
        )


def runWrk(
    wrk: str,
    cpu: int | None,
    originPort: int,
    path: str,
    connections: int,
    seconds: int,
    proxyPort: int | None = None,
) -> WrkResult:
    """
    Run wrk with one thread against the origin, directly or through the
    forward proxy on C{proxyPort} (absolute-form request-targets).

    @raise RuntimeError: if wrk fails or prints no result.
    """
    origin = f"127.0.0.1:{originPort}"
    env = cleanEnvironment()
    if proxyPort is None:
        url = f"http://{origin}{path}"
    else:
        url = f"http://127.0.0.1:{proxyPort}/"
        env.update(BENCH_TARGET=f"http://{origin}{path}", BENCH_HOST=origin)
    argv = pinned(
        cpu,
        [
            wrk,
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "--timeout",
            "10s",
            "-s",
            WRK_SCRIPT,
            url,
        ],
    )
    done = subprocess.run(
        argv, capture_output=True, text=True, env=env, timeout=seconds + 60
    )
    for line in done.stdout.splitlines():
        if line.startswith("BENCH_RESULT "):
            values = dict(item.split("=") for item in line.split()[1:])
            break
    else:
        raise RuntimeError(
            f"wrk printed no result (status {done.returncode}): "
            f"{(done.stdout + done.stderr)[-500:]}"
        )
    return WrkResult(
        requests=int(values["requests"]),
        seconds=int(values["duration_us"]) / 1e6,
        bytes=int(values["bytes"]),
        errors={
            key: int(values[key])
            for key in ("connect", "read", "write", "status", "timeout")
        },
        p50Ms=float(values["p50_us"]) / 1000,
        p99Ms=float(values["p99_us"]) / 1000,
        meanMs=float(values["mean_us"]) / 1000,
        maxMs=float(values["max_us"]) / 1000,
    )


@dataclass
class CurlResult:
    status: int
    size: int
    bytesPerSecond: float
    seconds: float

    @property
    def megabytesPerSecond(self) -> float:
        return self.bytesPerSecond / 1e6


def runCurl(
    curl: str,
    cpu: int | None,
    url: str,
    proxyPort: int | None = None,
    tunnel: bool = False,
    limitRate: str | None = None,
    timeout: float = 300.0,
    expectSize: int | None = None,
) -> CurlResult:
    """
    Download C{url} once with curl, discarding the body.

    @param tunnel: use CONNECT through the proxy (C{-p}); HTTPS URLs are
        fetched without verifying the self-signed certificate.
    @param limitRate: curl's C{--limit-rate} value, e.g. C{"10M"}.
    @raise RuntimeError: on a curl error, a status other than 200 or a body
        of the wrong size.
    """
    argv = [curl, "-sS", "-k", "-o", "/dev/null", "--max-time", str(int(timeout))]
    argv += ["-w", "%{http_code} %{size_download} %{speed_download} %{time_total}"]
    if proxyPort is not None:
        argv += ["-x", f"http://127.0.0.1:{proxyPort}"]
        if tunnel:
            argv.append("-p")
    if limitRate:
        argv += ["--limit-rate", limitRate]
    argv.append(url)
    done = subprocess.run(
        pinned(cpu, argv),
        capture_output=True,
        text=True,
        env=cleanEnvironment(),
        timeout=timeout + 30,
    )
    try:
        status, size, speed, total = done.stdout.split()
        result = CurlResult(int(status), int(size), float(speed), float(total))
    except ValueError:
        result = None
    if done.returncode != 0 or result is None or result.status != 200:
        raise RuntimeError(
            f"curl {url} failed (exit {done.returncode}): "
            f"{done.stdout.strip()} {done.stderr.strip()[-300:]}"
        )
    if expectSize is not None and result.size != expectSize:
        raise RuntimeError(f"curl {url}: got {result.size} bytes, not {expectSize}")
    return result


def openIdleConnections(
    port: int, count: int, timeout: float, batch: int = 100
) -> tuple[list[socket.socket], int]:
    """
    Open up to C{count} TCP connections to 127.0.0.1:C{port} that send
    nothing, C{batch} connects in flight at a time.

    @return: the connected sockets and the number of connects that failed.
        Stops early at C{timeout} seconds, after many failures, or when
        file descriptors or local ports run out.
    """
    connected: list[socket.socket] = []
    pending: dict[int, socket.socket] = {}
    poller = select.poll()
    failures = 0
    started = 0
    deadline = time.monotonic() + timeout
    exhausted = False
    try:
        while (started < count and not exhausted) or pending:
            if time.monotonic() > deadline or failures > max(count // 10, 10):
                break
            while not exhausted and started < count and len(pending) < batch:
                try:
                    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                except OSError:
                    exhausted = True
                    break
                s.setblocking(False)
                code = s.connect_ex(("127.0.0.1", port))
                started += 1
                if code in (0, errno.EINPROGRESS):
                    pending[s.fileno()] = s
                    poller.register(s.fileno(), select.POLLOUT)
                else:
                    s.close()
                    failures += 1
                    exhausted = code in (errno.EADDRNOTAVAIL, errno.EMFILE)
            for fd, _ in poller.poll(100):
                s = pending.pop(fd)
                poller.unregister(fd)
                if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                    s.close()
                    failures += 1
                else:
                    connected.append(s)
    finally:
        for s in pending.values():
            s.close()
            failures += 1
    return connected, failures


def countOpen(sockets: list[socket.socket]) -> int:
    """
    @return: how many of C{sockets} the server has not closed (nothing to
        read, no hang-up).
    """
    poller = select.poll()
    for s in sockets:
        poller.register(s.fileno(), select.POLLIN)
    return len(sockets) - len(poller.poll(0))
