"""
Integration tests with the tools people point at a proxy besides browsers
and curl: C{pip install} from a package index, and C{git clone}, each over
HTTP (absolute-form requests) and over HTTPS (a CONNECT tunnel, the
server's certificate verified), through the real proxy to a static file
server on 127.0.0.1.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import os
import shutil
import ssl
import subprocess
import sys
import threading
import zipfile
from functools import partial
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

import pytest
import requests

from .support import childEnv


class _Handler(http.server.SimpleHTTPRequestHandler):
    """
    Serves files and notes each request line with its C{Via} field, which
    the proxy adds: a request without one did not come through it.
    """

    seen: List[Tuple[str, str]]

    def send_head(self):  # type: ignore[no-untyped-def]
        self.seen.append((self.requestline, self.headers.get("Via", "")))
        return super().send_head()

    def log_message(self, format: str, *args: object) -> None:
        pass


Static = Tuple[str, Path, List[Tuple[str, str]]]


@pytest.fixture(params=["http", "https"])
def static(request, tmp_path: Path, certificate) -> Iterator[Static]:
    """
    A static file server on 127.0.0.1, plain or with TLS (the session's
    certificate): (its base URL, the directory it serves, the request lines
    and C{Via} fields it saw).
    """
    root = tmp_path / "www"
    root.mkdir()
    seen: List[Tuple[str, str]] = []
    handler = type("Handler", (_Handler,), {"seen": seen})
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), partial(handler, directory=str(root))
    )
    server.daemon_threads = True
    if request.param == "https":
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*map(str, certificate))
        # The handshake runs in the request's own thread, not in accept().
        server.socket = context.wrap_socket(
            server.socket, server_side=True, do_handshake_on_connect=False
        )
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield "%s://127.0.0.1:%d" % (
            request.param,
            server.server_address[1],
        ), root, seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@pytest.fixture
def tunnelProxy(makeProxy, static):
    """
    A proxy that may CONNECT to the static server's port.
    """
    return makeProxy("--connect-port", static[0].rsplit(":", 1)[1])


def _tunnels(proxy) -> int:
    """
    @return: how many CONNECT tunnels the proxy has opened so far.
    """
    with requests.Session() as s:
        s.trust_env = False
        r = s.get("http://127.0.0.1:%d/status.json" % proxy.port, timeout=10)
    return json.loads(r.content)["tunnels"]


def _checkRoute(proxy, base: str, seen: List[Tuple[str, str]], before: int) -> None:
    """
    Every request the server saw came through the proxy: with a C{Via}
    field over HTTP, through new tunnels over HTTPS (no C{Via}: the proxy
    relays the encrypted bytes and cannot add one).
    """
    assert seen
    if base.startswith("https:"):
        assert _tunnels(proxy) > before
        assert not any(via for _, via in seen), seen
    else:
        assert all(via for _, via in seen), seen


def _toolEnv(home: Path, extra: Dict[str, str]) -> Dict[str, str]:
    """
    An environment for pip or git under test: no proxy variables, and none
    of the machine's settings for them (certificate bundles in
    C{GIT_SSL_CAINFO}, C{PIP_CERT} or C{CURL_CA_BUNDLE}, which C{requests}
    prefers to pip's C{--cert}, would override the options given).
    """
    env = {
        name: value
        for name, value in childEnv(shim=False).items()
        if not name.startswith(("PIP_", "GIT_"))
        and name
        not in ("SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")
    }
    env.update(HOME=str(home), PIP_CONFIG_FILE=os.devnull, GIT_CONFIG_NOSYSTEM="1")
    env.update(extra)
    return env


def _digest(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _wheel(directory: Path) -> Path:
    """
    Write a minimal pure-Python wheel, webproxy_probe 1.0, into
    C{directory}.
    """
    info = "webproxy_probe-1.0.dist-info"
    files = {
        "webproxy_probe.py": b"VALUE = 'fetched through webproxy'\n",
        f"{info}/METADATA": (
            b"Metadata-Version: 2.1\nName: webproxy-probe\nVersion: 1.0\n"
        ),
        f"{info}/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: webproxy-tests\n"
            b"Root-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = "".join(
        f"{name},sha256={_digest(data)},{len(data)}\n" for name, data in files.items()
    )
    files[f"{info}/RECORD"] = (record + f"{info}/RECORD,,\n").encode()
    path = directory / "webproxy_probe-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return path


def test_pipInstall(tunnelProxy, static, certificate, tmp_path) -> None:
    """
    C{pip install --proxy} finds a package in a simple index and downloads
    its wheel through the proxy.
    """
    proxy = tunnelProxy
    base, root, seen = static
    before = _tunnels(proxy)
    wheel = _wheel(root)
    project = root / "simple" / "webproxy-probe"
    project.mkdir(parents=True)
    sha256 = hashlib.sha256(wheel.read_bytes()).hexdigest()
    (project / "index.html").write_text(
        f'<a href="../../{wheel.name}#sha256={sha256}">{wheel.name}</a>\n'
    )
    target = tmp_path / "target"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-cache-dir",
            "--disable-pip-version-check",
            "--no-input",
            "--retries",
            "0",
            "--timeout",
            "15",
            "--target",
            str(target),
            "--index-url",
            base + "/simple/",
            "--proxy",
            "http://127.0.0.1:%d" % proxy.port,
            "--cert",
            str(certificate[0]),
            "webproxy-probe",
        ],
        capture_output=True,
        timeout=120,
        env=_toolEnv(tmp_path, {}),
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert (target / "webproxy_probe.py").read_text() == (
        "VALUE = 'fetched through webproxy'\n"
    )
    paths = [line.split()[1] for line, via in seen]
    assert "/simple/webproxy-probe/" in paths
    assert "/" + wheel.name in paths
    _checkRoute(proxy, base, seen, before)


def _git(*args: str, cwd: Path, home: Path) -> subprocess.CompletedProcess:
    exe = shutil.which("git")
    assert exe, "git is required for these tests"
    return subprocess.run(
        [exe, "-c", "user.name=webproxy", "-c", "user.email=tests@localhost", *args],
        cwd=cwd,
        capture_output=True,
        timeout=60,
        env=_toolEnv(home, {"GIT_TERMINAL_PROMPT": "0"}),
    )


def test_gitClone(tunnelProxy, static, certificate, tmp_path) -> None:
    """
    C{git clone} with C{http.proxy} set fetches a repository through the
    proxy: the smart protocol's probe, then the dumb protocol's refs and
    objects.
    """
    proxy = tunnelProxy
    base, root, seen = static
    source = tmp_path / "source"
    source.mkdir()
    for args in (
        ("init", "-q", "-b", "main"),
        ("commit", "-q", "--allow-empty", "-m", "first"),
    ):
        done = _git(*args, cwd=source, home=tmp_path)
        assert done.returncode == 0, done.stderr
    (source / "README").write_text("cloned through webproxy\n")
    for args in (("add", "README"), ("commit", "-q", "-m", "second")):
        done = _git(*args, cwd=source, home=tmp_path)
        assert done.returncode == 0, done.stderr
    for args, cwd in (
        (("clone", "-q", "--bare", str(source), str(root / "repo.git")), tmp_path),
        (("update-server-info",), root / "repo.git"),
    ):
        done = _git(*args, cwd=cwd, home=tmp_path)
        assert done.returncode == 0, done.stderr

    before = _tunnels(proxy)
    done = _git(
        "-c",
        "http.proxy=http://127.0.0.1:%d" % proxy.port,
        "-c",
        "http.sslCAInfo=%s" % certificate[0],
        "clone",
        "-q",
        base + "/repo.git",
        str(tmp_path / "clone"),
        cwd=tmp_path,
        home=tmp_path,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert (tmp_path / "clone" / "README").read_text() == "cloned through webproxy\n"
    log = _git("log", "--format=%s", cwd=tmp_path / "clone", home=tmp_path)
    assert log.stdout.split() == [b"second", b"first"]
    assert any(line.split()[1].startswith("/repo.git/info/refs") for line, _ in seen)
    _checkRoute(proxy, base, seen, before)
