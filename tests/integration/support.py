# -*- test-case-name: tests.integration -*-
"""
Helpers for the integration tests: a raw-socket HTTP/1.1 client that shows
exact bytes, the processes under test (origin and proxy) and a throwaway TLS
certificate.

Everything here talks to 127.0.0.1 or ::1 only, and every wait is bounded.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from tests import certificates

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent.parent
ORIGIN_SCRIPT = HERE / "origin.py"
DNS_SHIM = HERE / "dnsshim"

# twistd as a command: `python -m twisted` is the newer `twist` runner, which
# knows neither -n, --pidfile nor -y, so call twistd's entry point directly.
TWISTD = [
    sys.executable,
    "-c",
    "import sys; sys.argv[0] = 'twistd'; from twisted.scripts.twistd import run; run()",
]

# Default bound for any single wait in these tests.
TIMEOUT = 5.0

# Proxies running now (so that a failing test can show their logs).
LIVE_PROXIES: List["Proxy"] = []


def freePort(host: str = "127.0.0.1") -> int:
    """
    @return: a TCP port that was free on C{host} a moment ago.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class Response:
    """
    One parsed HTTP response.

    @ivar rawHead: status line and header lines as received, final CRLF
        included.
    @ivar headers: (name, value) pairs in wire order, names as received.
    @ivar framing: C{"none"}, C{"length"}, C{"chunked"} or C{"close"}.
    """

    def __init__(self, rawHead: bytes) -> None:
        self.rawHead = rawHead
        lines = rawHead[:-4].split(b"\r\n")
        self.statusLine = lines[0]
        parts = lines[0].split(b" ", 2)
        self.version = parts[0]
        self.status = int(parts[1])
        self.reason = parts[2] if len(parts) > 2 else b""
        self.headers: List[Tuple[bytes, bytes]] = []
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            self.headers.append((name, value.strip()))
        self.body = b""
        self.framing = "none"

    def header(self, name: bytes) -> Optional[bytes]:
        """
        @return: the first value of field C{name} (case-insensitive) or C{None}.
        """
        values = self.headerValues(name)
        return values[0] if values else None

    def headerValues(self, name: bytes) -> List[bytes]:
        return [v for n, v in self.headers if n.lower() == name.lower()]

    def headerNames(self) -> List[bytes]:
        return [n.lower() for n, _ in self.headers]

    def tokens(self, name: bytes) -> List[bytes]:
        out = []
        for v in self.headerValues(name):
            out.extend(t.strip().lower() for t in v.split(b",") if t.strip())
        return out

    def __repr__(self) -> str:
        return "<Response %r %d body bytes>" % (self.rawHead, len(self.body))


class Closed(Exception):
    """
    The peer closed the connection before the expected bytes arrived.
    """


class Conn:
    """
    A blocking client socket with a read buffer and deadlines.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()
        self.eof = False

    @classmethod
    def open(
        cls, port: int, host: str = "127.0.0.1", timeout: float = TIMEOUT
    ) -> "Conn":
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        s = socket.socket(family, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect((host, port))
        return cls(s)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> "Conn":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self, deadline: float, size: int = 65536) -> bool:
        """
        Read once into the buffer.

        @return: C{False} on end of file.
        """
        if self.eof:
            return False
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(
                "no data before the deadline; have %r" % bytes(self.buf[:300])
            )
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(size)
        except socket.timeout:
            raise TimeoutError(
                "no data before the deadline; have %r" % bytes(self.buf[:300])
            )
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def readUntil(
        self, delim: bytes, timeout: float = TIMEOUT, limit: int = 1 << 20
    ) -> bytes:
        deadline = time.monotonic() + timeout
        start = 0
        while True:
            i = self.buf.find(delim, start)
            if i >= 0:
                out = bytes(self.buf[: i + len(delim)])
                del self.buf[: i + len(delim)]
                return out
            start = max(0, len(self.buf) - len(delim))
            if len(self.buf) > limit:
                raise AssertionError("no %r in the first %d bytes" % (delim, limit))
            if not self._fill(deadline):
                raise Closed(
                    "closed before %r; have %r" % (delim, bytes(self.buf[:300]))
                )

    def readExact(self, n: int, timeout: float = TIMEOUT) -> bytes:
        deadline = time.monotonic() + timeout
        while len(self.buf) < n:
            if not self._fill(deadline):
                raise Closed("closed after %d of %d bytes" % (len(self.buf), n))
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def readFast(self, n: int, timeout: float = TIMEOUT) -> bytes:
        """
        Read exactly C{n} bytes in pieces of up to 1 MiB, to keep up with a
        fast sender.
        """
        deadline = time.monotonic() + timeout
        out = bytearray(n)
        view = memoryview(out)
        have = min(n, len(self.buf))
        out[:have] = self.buf[:have]
        del self.buf[:have]
        while have < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("%d of %d bytes before the deadline" % (have, n))
            self.sock.settimeout(left)
            try:
                got = self.sock.recv_into(view[have:], min(n - have, 1 << 20))
            except socket.timeout:
                raise TimeoutError("%d of %d bytes before the deadline" % (have, n))
            if not got:
                raise Closed("closed after %d of %d bytes" % (have, n))
            have += got
        return bytes(out)

    def readUntilClose(self, timeout: float = TIMEOUT, limit: int = 1 << 30) -> bytes:
        deadline = time.monotonic() + timeout
        while self._fill(deadline):
            if len(self.buf) > limit:
                raise AssertionError("more than %d bytes" % limit)
        out = bytes(self.buf)
        del self.buf[:]
        return out

    def waitClosed(self, timeout: float = TIMEOUT) -> Tuple[bool, bytes]:
        """
        Wait for the peer to close, keeping whatever arrives meanwhile.

        @return: whether end of file was seen within C{timeout}, and the
            bytes that arrived.
        """
        try:
            data = self.readUntilClose(timeout)
            return True, data
        except TimeoutError:
            data = bytes(self.buf)
            del self.buf[:]
            return False, data

    def readResponse(
        self, method: bytes = b"GET", timeout: float = TIMEOUT, interim: bool = False
    ) -> Response:
        """
        Read one response and its body, framed the way a client must
        (RFC 9112 section 6.3).

        @param interim: return 1xx responses instead of skipping them.
        """
        deadline = time.monotonic() + timeout
        while True:
            head = self.readUntil(
                b"\r\n\r\n", timeout=max(0.01, deadline - time.monotonic())
            )
            resp = Response(head)
            if 100 <= resp.status < 200 and resp.status != 101:
                if interim:
                    return resp
                continue
            break
        left = lambda: max(0.01, deadline - time.monotonic())  # noqa: E731
        if method == b"HEAD" or resp.status in (101, 204, 304) or resp.status < 200:
            return resp
        if method == b"CONNECT" and 200 <= resp.status < 300:
            return resp
        te = resp.tokens(b"transfer-encoding")
        cl = resp.header(b"content-length")
        if te:
            assert te[-1] == b"chunked", resp
            resp.framing = "chunked"
            resp.body = self.readChunked(left())
        elif cl is not None:
            resp.framing = "length"
            resp.body = self.readExact(int(cl), left())
        else:
            resp.framing = "close"
            resp.body = self.readUntilClose(left())
        return resp

    def readChunked(self, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        parts = []
        while True:
            line = self.readUntil(b"\r\n", max(0.01, deadline - time.monotonic()))
            size = int(line.split(b";")[0].strip(), 16)
            if size == 0:
                break
            parts.append(self.readExact(size, max(0.01, deadline - time.monotonic())))
            assert self.readExact(2, max(0.01, deadline - time.monotonic())) == b"\r\n"
        while (
            self.readUntil(b"\r\n", max(0.01, deadline - time.monotonic())) != b"\r\n"
        ):
            pass
        return b"".join(parts)


def request(
    port: int, raw: bytes, method: bytes = b"GET", timeout: float = TIMEOUT
) -> Tuple[Response, Conn]:
    """
    Open a connection to C{port}, send C{raw}, read one response.

    @return: the response and the still open connection (close it).
    """
    conn = Conn.open(port, timeout=timeout)
    conn.send(raw)
    return conn.readResponse(method, timeout=timeout), conn


def openTunnel(proxy: "Proxy", authority: str, trailing: bytes = b"") -> Conn:
    """
    Open a tunnel to C{authority} and check the proxy's 200.
    """
    c = proxy.connect()
    c.send(
        b"CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n"
        % (authority.encode(), authority.encode())
        + trailing
    )
    resp = c.readResponse(b"CONNECT")
    assert resp.status == 200, resp
    assert (
        b"transfer-encoding" not in resp.headerNames()
        and b"content-length" not in resp.headerNames()
    )
    return c


def splitEcho(body: bytes) -> Tuple[bytes, bytes]:
    """
    Split an C{/echo} response body into the request head the origin
    received (with its final CRLF CRLF) and the request body.
    """
    i = body.index(b"\r\n\r\n") + 4
    return body[:i], body[i:]


def echoHeaders(head: bytes) -> List[Tuple[bytes, bytes]]:
    """
    @return: (lower-cased name, value) pairs of an echoed request head.
    """
    out = []
    for line in head[:-4].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        out.append((name.lower(), value.strip()))
    return out


class ManagedProcess:
    """
    A subprocess with its output in a file, killed by L{stop}.
    """

    def __init__(
        self,
        argv: Sequence[str],
        logPath: Path,
        cwd: Path,
        env: Dict[str, str],
        stdout=None,
    ) -> None:
        self.argv = list(argv)
        self.logPath = logPath
        self.logFile = open(logPath, "wb")
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=stdout if stdout is not None else self.logFile,
            stderr=self.logFile,
            cwd=str(cwd),
            env=env,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        self.logFile.flush()
        try:
            return self.logPath.read_text(errors="replace")[-6000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(3)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.logFile.close()


def childEnv(
    extra: Optional[Dict[str, str]] = None, shim: bool = True
) -> Dict[str, str]:
    """
    An environment for processes under test: no proxy variables, the
    checkout first on the path, and (C{shim}) the DNS shim that keeps name
    resolution on this machine.
    """
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    paths = [str(REPO_ROOT)]
    if shim:
        paths.insert(0, str(DNS_SHIM))
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


class Origin:
    """
    A running C{origin.py}.
    """

    def __init__(
        self,
        workdir: Path,
        host: str = "127.0.0.1",
        tls: Optional[Tuple[Path, Path]] = None,
    ) -> None:
        self.host = host
        argv = [sys.executable, str(ORIGIN_SCRIPT), "--port", "0", "--interface", host]
        if tls:
            argv[2:2] = ["--tls", str(tls[0]), str(tls[1])]
        name = "origin-%s-%d-%s" % (
            host.replace(":", "_"),
            time.monotonic_ns(),
            "tls" if tls else "tcp",
        )
        self.process = ManagedProcess(
            argv,
            workdir / (name + ".log"),
            workdir,
            childEnv(shim=False),
            stdout=subprocess.PIPE,
        )
        self.port = self._readPort()

    def _readPort(self) -> int:
        import selectors

        sel = selectors.DefaultSelector()
        out = self.process.proc.stdout
        sel.register(out, selectors.EVENT_READ)
        deadline = time.monotonic() + 15
        line = b""
        try:
            while not line.endswith(b"\n"):
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    self.process.stop()
                    raise RuntimeError("origin did not start: " + self.process.log())
                chunk = os.read(out.fileno(), 100)
                if not chunk:
                    self.process.stop()
                    raise RuntimeError("origin exited: " + self.process.log())
                line += chunk
        finally:
            sel.close()
        m = re.match(rb"PORT (\d+)\n", line)
        assert m, line
        return int(m.group(1))

    @property
    def authority(self) -> str:
        if ":" in self.host:
            return "[%s]:%d" % (self.host, self.port)
        return "%s:%d" % (self.host, self.port)

    def url(self, path: str = "/") -> str:
        return "http://%s%s" % (self.authority, path)

    def stats(self) -> dict:
        """
        @return: the origin's counters, asked directly (not through a proxy).
        """
        with Conn.open(self.port, self.host) as c:
            c.send(b"GET /stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return json.loads(c.readResponse().body)

    def stop(self) -> None:
        self.process.stop()


class Proxy:
    """
    A running proxy (C{twistd -n --pidfile= webproxy ...} unless C{argv}
    says otherwise).
    """

    def __init__(
        self,
        workdir: Path,
        args: Sequence[str] = (),
        env: Optional[Dict[str, str]] = None,
        argv: Optional[Sequence[str]] = None,
        port: Optional[int] = None,
        cwd: Optional[Path] = None,
    ) -> None:
        self.port = port if port is not None else freePort()
        if argv is None:
            argv = [
                *TWISTD,
                "-n",
                "--pidfile=",
                "webproxy",
                "--port",
                str(self.port),
                "--interface",
                "127.0.0.1",
                *args,
            ]
        self.process = ManagedProcess(
            argv,
            workdir / ("proxy-%d-%d.log" % (self.port, time.monotonic_ns())),
            cwd or workdir,
            childEnv(env),
        )
        LIVE_PROXIES.append(self)
        try:
            self.waitReady()
        except BaseException:
            self.stop()
            raise

    def waitReady(self, timeout: float = 10.0) -> None:
        """
        Wait until C{GET /} on the proxy is answered.
        """
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            if self.process.proc.poll() is not None:
                raise RuntimeError(
                    "proxy exited (%s): %s"
                    % (self.process.proc.returncode, self.process.log())
                )
            try:
                with Conn.open(self.port, timeout=2) as c:
                    c.send(
                        b"GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n"
                        % self.port
                    )
                    c.readUntil(b"\r\n", timeout=2)
                    return
            except (OSError, Closed, TimeoutError) as e:
                last = e
            time.sleep(0.05)
        raise RuntimeError(
            "proxy not ready in %ss (%r): %s" % (timeout, last, self.process.log())
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def rss(self) -> int:
        """
        @return: the proxy process's resident set size in bytes.
        """
        with open("/proc/%d/status" % self.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")

    def openFiles(self) -> int:
        """
        @return: how many file descriptors the proxy process has open.
        """
        return len(os.listdir("/proc/%d/fd" % self.pid))

    def connect(self, timeout: float = TIMEOUT) -> Conn:
        return Conn.open(self.port, timeout=timeout)

    def request(
        self, raw: bytes, method: bytes = b"GET", timeout: float = TIMEOUT
    ) -> Tuple[Response, Conn]:
        return request(self.port, raw, method, timeout)

    def get(
        self, url: str, headers: bytes = b"", host: Optional[bytes] = None
    ) -> Response:
        """
        One absolute-form GET on a fresh connection that is then closed.
        """
        authority = re.match(r"https?://([^/]+)", url).group(1).encode()
        raw = b"GET %s HTTP/1.1\r\nHost: %s\r\n%s\r\n" % (
            url.encode(),
            host or authority,
            headers,
        )
        resp, conn = self.request(raw)
        conn.close()
        return resp

    def log(self) -> str:
        return self.process.log()

    def stop(self) -> None:
        self.process.stop()
        if self in LIVE_PROXIES:
            LIVE_PROXIES.remove(self)


def makeCertificate(directory: Path) -> Tuple[Path, Path]:
    """
    Write a self-signed certificate for 127.0.0.1, ::1 and localhost.

    @return: paths of the certificate and key PEM files.
    """
    key, cert = certificates.makeCertificate(
        altNames=("localhost", "127.0.0.1", "::1"), authority=True
    )
    certPath = directory / "cert.pem"
    keyPath = directory / "key.pem"
    certPath.write_bytes(certificates.certificatePEM(cert))
    keyPath.write_bytes(certificates.keyPEM(key))
    return certPath, keyPath


def copyCheckout(dest: Path) -> None:
    """
    Copy the checkout under test without build leftovers, so that
    C{pip install <copy>} writes nothing into the checkout.
    """
    shutil.copytree(
        REPO_ROOT,
        dest,
        ignore=shutil.ignore_patterns(
            ".git",
            "build",
            "dist",
            "*.egg-info",
            "__pycache__",
            "dropin.cache",
            ".venv",
            ".pytest_cache",
            ".mypy_cache",
            ".hypothesis",
            "_trial_temp*",
        ),
    )


def waitForLog(proxy: "Proxy", text: str, count: int = 1, timeout: float = 10.0) -> str:
    """
    Wait until C{text} appears C{count} times in the proxy's whole log.

    @return: the log.
    """
    deadline = time.monotonic() + timeout
    while True:
        proxy.process.logFile.flush()
        log = proxy.process.logPath.read_text(errors="replace")
        if log.count(text) >= count:
            return log
        assert proxy.process.proc.poll() is None, "proxy exited: " + log[-3000:]
        assert time.monotonic() < deadline, f"no {text!r} in the log: " + log[-3000:]
        time.sleep(0.05)
