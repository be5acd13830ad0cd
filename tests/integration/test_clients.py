"""
Integration tests with real clients: curl (C{-x}, and C{-p -x} for a
CONNECT tunnel) and the C{requests} library with C{proxies=...}.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess

import requests

from .origin import pattern, patternDigest
from .support import childEnv, splitEcho


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
