"""
Integration tests with real clients: curl (C{-x}, and C{-p -x} for a
CONNECT tunnel), the C{requests} library with C{proxies=...}, C{git clone}
(git's "dumb HTTP" protocol, plain and through a CONNECT tunnel) and
C{pip download} from a static PEP 503 index.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import os
import shutil
import ssl
import subprocess
import sys
import threading
import time
import zipfile
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Tuple

import pytest
import requests

from .origin import pattern, patternDigest
from .support import TIMEOUT, Proxy, childEnv, splitEcho


def curl(*args: str, timeout: float = 20) -> subprocess.CompletedProcess:
    exe = shutil.which("curl")
    assert exe, "curl is required for these tests"
    return subprocess.run(
        [exe, "--silent", "--show-error", "--max-time", "15", "--noproxy", "", *args],
        capture_output=True,
        timeout=timeout,
        env=childEnv(shim=False),
    )


def session() -> requests.Session:
    s = requests.Session()
    s.trust_env = False
    return s


def test_curlHttp(proxy, origin, tmp_path) -> None:
    """
    C{curl -x} fetches a 2 MB body and posts a form through the proxy.
    """
    out = tmp_path / "body"
    r = curl(
        "-x",
        "http://127.0.0.1:%d" % proxy.port,
        "-o",
        str(out),
        origin.url("/bytes?n=2000000"),
    )
    assert r.returncode == 0, r.stderr
    assert hashlib.sha256(out.read_bytes()).hexdigest() == patternDigest(2000000)
    r = curl(
        "-x",
        "http://127.0.0.1:%d" % proxy.port,
        "--data-binary",
        "a=1&b=2",
        origin.url("/echo?curl"),
    )
    assert r.returncode == 0, r.stderr
    head, body = splitEcho(r.stdout)
    assert head.startswith(b"POST /echo?curl HTTP/1.1\r\n")
    assert body == b"a=1&b=2"


def test_curlConnectTunnel(proxy, tlsOrigin, certificate, tmp_path) -> None:
    """
    C{curl -p -x} reaches an HTTPS origin through a CONNECT tunnel and
    verifies its certificate.
    """
    out = tmp_path / "body"
    r = curl(
        "-p",
        "-x",
        "http://127.0.0.1:%d" % proxy.port,
        "--cacert",
        str(certificate[0]),
        "-o",
        str(out),
        "https://localhost:%d/bytes?n=1000000" % tlsOrigin.port,
    )
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == pattern(0, 1000000)


def test_curlHttpsImpliesConnect(proxy, tlsOrigin, certificate) -> None:
    """
    For an https:// URL curl tunnels with CONNECT even without C{-p}; the
    request arrives at the origin unchanged (no Via: it was not parsed).
    """
    r = curl(
        "-x",
        "http://127.0.0.1:%d" % proxy.port,
        "--cacert",
        str(certificate[0]),
        "https://127.0.0.1:%d/echo?tunnelled" % tlsOrigin.port,
    )
    assert r.returncode == 0, r.stderr
    head, _ = splitEcho(r.stdout)
    assert head.startswith(b"GET /echo?tunnelled HTTP/1.1\r\n")
    assert b"\r\nvia:" not in head.lower()


def test_requestsHttp(proxy, origin) -> None:
    """
    C{requests} with an http proxy: GET, a streamed chunked upload, and a
    JSON response.
    """
    proxies = {"http": "http://127.0.0.1:%d" % proxy.port}
    with session() as s:
        r = s.get(origin.url("/bytes?n=300000"), proxies=proxies, timeout=10)
        assert r.status_code == 200
        assert r.content == pattern(0, 300000)
        data = pattern(3, 500000)

        def gen():
            for i in range(0, len(data), 100000):
                yield data[i : i + 100000]

        r = s.post(origin.url("/upload"), data=gen(), proxies=proxies, timeout=10)
        assert r.status_code == 200, r.text
        assert r.json() == {
            "count": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
        r = s.put(origin.url("/echo?json"), json={"a": 1}, proxies=proxies, timeout=10)
        head, body = splitEcho(r.content)
        assert json.loads(body) == {"a": 1}
        assert r.headers.get("Via")


def test_requestsHttpsThroughConnect(proxy, tlsOrigin, certificate) -> None:
    """
    C{requests} with an https URL and an http proxy tunnels with CONNECT and
    verifies the origin's certificate.
    """
    proxies = {"https": "http://127.0.0.1:%d" % proxy.port}
    with session() as s:
        r = s.get(
            "https://localhost:%d/bytes?n=200000" % tlsOrigin.port,
            proxies=proxies,
            verify=str(certificate[0]),
            timeout=10,
        )
        assert r.status_code == 200
        assert r.content == pattern(0, 200000)


# ---------------------------------------------------------------------------
# git and pip against a plain static file server.

# The Via pseudonym of the proxies below, so that the static server can tell
# a request that came through one.
VIA = "1.1 clients-test"


class StaticServer:
    """
    A plain static file server (the standard library's C{http.server},
    HTTP/1.1 with keep-alive) on 127.0.0.1, in threads of the test process,
    over TLS if given a certificate.

    @ivar seen: (path, Via field or C{None}) of every GET or HEAD received,
        in order.
    """

    def __init__(self, root: Path, tls: Optional[Tuple[Path, Path]] = None) -> None:
        self.seen: List[Tuple[str, Optional[str]]] = []
        seen = self.seen

        class Handler(SimpleHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Bounds every read, the TLS handshake and an idle keep-alive.
            timeout = TIMEOUT

            def send_head(self):  # type: ignore[no-untyped-def]
                seen.append((self.path, self.headers.get("Via")))
                return super().send_head()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(Handler, directory=str(root))
        )
        self.server.daemon_threads = True
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(tls[0]), str(tls[1]))
            # The handshake happens in the connection's own thread, on its
            # first read, not in the accepting one.
            self.server.socket = context.wrap_socket(
                self.server.socket, server_side=True, do_handshake_on_connect=False
            )
        self.scheme = "https" if tls else "http"
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}
        )
        self.thread.daemon = True
        self.thread.start()

    def url(self, path: str) -> str:
        return "%s://127.0.0.1:%d%s" % (self.scheme, self.port, path)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(TIMEOUT)


@pytest.fixture
def makeStatic() -> Iterator[Callable[..., StaticServer]]:
    """
    A factory for L{StaticServer}s, stopped after the test.
    """
    started: List[StaticServer] = []

    def make(root: Path, tls: Optional[Tuple[Path, Path]] = None) -> StaticServer:
        s = StaticServer(root, tls)
        started.append(s)
        return s

    yield make
    for s in started:
        s.stop()


def loggingProxy(makeProxy: Callable[..., Proxy], accessLog: Path, *args: str) -> Proxy:
    """
    A proxy with its own JSON access log at C{accessLog} and the Via
    pseudonym of L{VIA}.
    """
    return makeProxy(
        "--access-log",
        str(accessLog),
        "--log-format",
        "json",
        "--via-pseudonym",
        VIA.split()[1],
        *args,
    )


def accessRecords(
    path: Path, predicate: Callable[[List[dict]], bool], timeout: float = TIMEOUT
) -> List[dict]:
    """
    Wait (the log is written in batches, at least once a second) until the
    complete records of the JSON access log at C{path} satisfy
    C{predicate}.  The test harness's readiness probe (C{GET /} to the
    proxy itself) is left out.

    @return: the records, satisfying C{predicate} or not.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            text = path.read_text("utf-8")
        except FileNotFoundError:
            text = ""
        records = [
            record
            for record in map(json.loads, text.splitlines()[: text.count("\n")])
            if record["target"] != "/"
        ]
        if predicate(records) or time.monotonic() >= deadline:
            return records
        time.sleep(0.05)


def run(
    argv: List[str], env: dict, cwd: Optional[Path] = None, timeout: float = 30
) -> subprocess.CompletedProcess:
    """
    Run a client to completion, bounded by C{timeout}.
    """
    return subprocess.run(
        argv,
        capture_output=True,
        timeout=timeout,
        env=env,
        cwd=None if cwd is None else str(cwd),
        stdin=subprocess.DEVNULL,
    )


def cleanEnv(prefix: str, extra: dict) -> dict:
    """
    L{childEnv} without proxy variables (so no C{no_proxy} either) nor any
    inherited variable starting with C{prefix} (such as C{GIT_SSL_CAINFO},
    which overrides C{http.sslCAInfo}), plus C{extra}.
    """
    env = childEnv(shim=False)
    env = {k: v for k, v in env.items() if not k.startswith(prefix)}
    env.update(extra)
    return env


def gitEnv(home: Path) -> dict:
    """
    An environment for C{git}: no system or user configuration, fixed
    identity, no prompts.
    """
    return cleanEnv(
        "GIT_",
        {
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_AUTHOR_NAME": "Test",
            "GIT_AUTHOR_EMAIL": "test@example.invalid",
            "GIT_COMMITTER_NAME": "Test",
            "GIT_COMMITTER_EMAIL": "test@example.invalid",
            "LC_ALL": "C",
        },
    )


def git(*args: str, env: dict, cwd: Optional[Path] = None) -> str:
    exe = shutil.which("git")
    assert exe, "git is required for these tests"
    r = run([exe, *args], env, cwd, timeout=20)
    assert r.returncode == 0, (args, r.stderr.decode(errors="replace"))
    return r.stdout.decode()


def makeRepository(path: Path, env: dict) -> str:
    """
    Make a repository at C{path} with two commits (a text file, then a
    200 kB binary one beside a change to it), ready to be served by git's
    "dumb HTTP" protocol (C{git update-server-info}).

    @return: the hash of its HEAD commit.
    """
    git("init", "-q", "-b", "main", str(path), env=env)
    (path / "README").write_text("first\n")
    git("add", "README", env=env, cwd=path)
    git("commit", "-q", "-m", "first", env=env, cwd=path)
    (path / "README").write_text("first\nsecond\n")
    (path / "data.bin").write_bytes(os.urandom(200000))
    git("add", "README", "data.bin", env=env, cwd=path)
    git("commit", "-q", "-m", "second", env=env, cwd=path)
    git("update-server-info", env=env, cwd=path)
    return git("rev-parse", "HEAD", env=env, cwd=path).strip()


def checkClone(source: Path, clone: Path, head: str, env: dict) -> None:
    """
    C{clone} has C{source}'s history and HEAD commit, and its files.
    """
    assert git("rev-parse", "HEAD", env=env, cwd=clone).strip() == head
    assert git("log", "--format=%H", env=env, cwd=clone) == git(
        "log", "--format=%H", env=env, cwd=source
    )
    for name in ("README", "data.bin"):
        assert (clone / name).read_bytes() == (source / name).read_bytes(), name
    git("fsck", "--strict", "--no-progress", env=env, cwd=clone)


def test_gitCloneHttp(makeProxy, makeStatic, tmp_path) -> None:
    """
    C{git -c http.proxy=... clone} of an http:// URL works through the
    proxy with git's "dumb HTTP" protocol against a plain static server:
    the clone has the source's commits and files, every request the server
    answered carries the proxy's Via, and the proxy's access log has the
    same requests.
    """
    env = gitEnv(tmp_path)
    source = tmp_path / "source"
    head = makeRepository(source, env)
    server = makeStatic(source)
    accessLog = tmp_path / "access.log"
    proxy = loggingProxy(makeProxy, accessLog)
    clone = tmp_path / "clone"
    git(
        "-c",
        "http.proxy=http://127.0.0.1:%d" % proxy.port,
        "clone",
        "-q",
        server.url("/.git"),
        str(clone),
        env=env,
    )
    checkClone(source, clone, head, env)
    paths = [path for path, _ in server.seen]
    # The smart protocol is asked for first; a static server answers with
    # the plain info/refs, and git falls back to fetching files.
    assert paths[0] == "/.git/info/refs?service=git-upload-pack", paths
    assert any(p.startswith("/.git/objects/") for p in paths), paths
    assert [via for _, via in server.seen] == [VIA] * len(paths)
    records = accessRecords(accessLog, lambda r: len(r) >= len(paths))
    assert sorted(r["target"] for r in records) == sorted(server.url(p) for p in paths)
    assert {r["method"] for r in records} == {"GET"}


def test_gitCloneHttpsThroughConnect(
    makeProxy, makeStatic, certificate, tmp_path
) -> None:
    """
    C{git clone} of an https:// URL through the proxy tunnels with CONNECT
    (the proxy's access log has the tunnel, the server sees requests without
    the proxy's Via) and verifies the server's certificate.
    """
    env = gitEnv(tmp_path)
    source = tmp_path / "source"
    head = makeRepository(source, env)
    server = makeStatic(source, tls=certificate)
    accessLog = tmp_path / "access.log"
    proxy = loggingProxy(makeProxy, accessLog, "--connect-port", str(server.port))
    clone = tmp_path / "clone"
    git(
        "-c",
        "http.proxy=http://127.0.0.1:%d" % proxy.port,
        "-c",
        "http.sslCAInfo=%s" % certificate[0],
        "clone",
        "-q",
        server.url("/.git"),
        str(clone),
        env=env,
    )
    checkClone(source, clone, head, env)
    assert server.seen and all(via is None for _, via in server.seen), server.seen
    records = accessRecords(accessLog, lambda r: len(r) >= 1)
    assert records, "no access log record"
    for r in records:
        assert (r["method"], r["target"], r["status"], r["tunnel"]) == (
            "CONNECT",
            "127.0.0.1:%d" % server.port,
            200,
            True,
        ), r


def makeWheel(directory: Path, name: str, version: str) -> Path:
    """
    Write a minimal valid wheel (one module, METADATA, WHEEL and RECORD).

    @return: its path.
    """
    distInfo = "%s-%s.dist-info" % (name, version)
    files = {
        "%s/__init__.py" % name: b"VALUE = 1\n",
        distInfo
        + "/METADATA": (
            "Metadata-Version: 2.1\nName: %s\nVersion: %s\n" % (name, version)
        ).encode(),
        distInfo
        + "/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: true\n"
            b"Tag: py3-none-any\n"
        ),
    }
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
        record.append("%s,sha256=%s,%d" % (path, digest.decode(), len(data)))
    record.append(distInfo + "/RECORD,,")
    files[distInfo + "/RECORD"] = ("\n".join(record) + "\n").encode()
    wheel = directory / ("%s-%s-py3-none-any.whl" % (name, version))
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as z:
        for path, data in files.items():
            z.writestr(path, data)
    return wheel


def test_pipDownload(makeProxy, makeStatic, tmp_path) -> None:
    """
    C{pip download --proxy ...} finds a wheel in a static PEP 503 index and
    downloads it through the proxy, byte for byte, its hash checked by pip
    against the index's C{#sha256=}; both requests carry the proxy's Via at
    the server and are in the proxy's access log.
    """
    root = tmp_path / "index"
    (root / "packages").mkdir(parents=True)
    (root / "simple" / "somepkg").mkdir(parents=True)
    wheel = makeWheel(root / "packages", "somepkg", "1.0")
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    (root / "simple" / "index.html").write_text(
        '<!DOCTYPE html>\n<html><body><a href="somepkg/">somepkg</a></body></html>\n'
    )
    (root / "simple" / "somepkg" / "index.html").write_text(
        "<!DOCTYPE html>\n<html><body>"
        '<a href="../../packages/%s#sha256=%s">%s</a>'
        "</body></html>\n" % (wheel.name, digest, wheel.name)
    )
    server = makeStatic(root)
    accessLog = tmp_path / "access.log"
    proxy = loggingProxy(makeProxy, accessLog)
    dest = tmp_path / "downloads"
    env = cleanEnv(
        "PIP_",
        {
            "HOME": str(tmp_path),
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            "PIP_CONFIG_FILE": os.devnull,
            "PIP_NO_CACHE_DIR": "1",
            "PIP_NO_INPUT": "1",
        },
    )
    r = run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--timeout",
            "5",
            "--retries",
            "0",
            "--index-url",
            server.url("/simple/"),
            "--proxy",
            "http://127.0.0.1:%d" % proxy.port,
            "-d",
            str(dest),
            "somepkg==1.0",
        ],
        env,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    assert [p.name for p in dest.iterdir()] == [wheel.name]
    assert (dest / wheel.name).read_bytes() == wheel.read_bytes()
    expected = ["/simple/somepkg/", "/packages/" + wheel.name]
    assert server.seen == [(p, VIA) for p in expected]
    records = accessRecords(accessLog, lambda r: len(r) >= 2)
    assert [(r["method"], r["target"], r["status"]) for r in records] == [
        ("GET", server.url(p), 200) for p in expected
    ]
