"""
Integration tests: the ways of running the proxy (twistd plugin, proxy.tac,
listeners given as endpoint strings) and installing it (C{pip install .}).
"""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import time
import venv

import pytest

from .support import (
    REPO_ROOT,
    TWISTD,
    Conn,
    Proxy,
    childEnv,
    copyCheckout,
    freePort,
    splitEcho,
)

OPTIONS = [
    "--port",
    "--interface",
    "--listen",
    "--connect-port",
    "--max-request-line",
    "--max-header-bytes",
    "--max-headers",
    "--connect-timeout",
    "--header-timeout",
    "--idle-timeout",
    "--upstream-timeout",
    "--pool-size",
    "--pool-idle-timeout",
]


def throughProxy(port: int, origin, host: str = "127.0.0.1", family=None) -> bytes:
    with Conn.open(port, host) as c:
        c.send(
            b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n"
            % origin.url("/echo?via-%d" % port).encode()
        )
        resp = c.readResponse()
    assert resp.status == 200, resp
    return splitEcho(resp.body)[0]


def test_twistdPluginServes(makeProxy, origin) -> None:
    """
    C{twistd -n webproxy --port N} listens on N and forwards requests.
    """
    proxy = makeProxy()
    assert throughProxy(proxy.port, origin).startswith(b"GET /echo?via-")


def test_helpListsOptions(workdir) -> None:
    """
    C{twistd webproxy --help} documents every option the proxy supports.
    """
    r = subprocess.run(
        [*TWISTD, "webproxy", "--help"],
        capture_output=True,
        timeout=30,
        cwd=str(workdir),
        env=childEnv(),
    )
    assert r.returncode == 0, r.stderr
    text = r.stdout.decode()
    for option in OPTIONS:
        assert option in text, option


def test_badOptionIsUsageError(workdir) -> None:
    """
    A malformed option value is refused at startup with a usage message,
    not a traceback.
    """
    r = subprocess.run(
        [*TWISTD, "-n", "--pidfile=", "webproxy", "--connect-port", "99999"],
        capture_output=True,
        timeout=30,
        cwd=str(workdir),
        env=childEnv(),
    )
    assert r.returncode != 0
    output = (r.stdout + r.stderr).decode()
    assert "Traceback" not in output, output
    assert "99999" in output, output


def test_tacRunsSameService(workdir, origin) -> None:
    """
    C{twistd -ny proxy.tac} runs the same proxy, on the port named by
    C{WEBPROXY_PORT}.
    """
    port = freePort()
    proxy = Proxy(
        workdir,
        argv=[*TWISTD, "-n", "-y", str(REPO_ROOT / "proxy.tac"), "--pidfile="],
        env={"WEBPROXY_PORT": str(port)},
        port=port,
    )
    try:
        assert throughProxy(port, origin).startswith(b"GET /echo?via-")
        resp, conn = proxy.request(
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % port
        )
        conn.close()
        assert b"webproxy" in resp.body.lower()
    finally:
        proxy.stop()


@pytest.mark.parametrize(
    "env, expected",
    [
        ({"WEBPROXY_PORT": "-1"}, "--port"),
        ({"WEBPROXY_ARGS": "--bogus"}, "bogus"),
        ({"WEBPROXY_ARGS": "--config 'x"}, "quotation"),
    ],
    ids=["bad-port", "unknown-option", "unbalanced-quote"],
)
def test_tacBadOptionIsOneLine(workdir, env, expected) -> None:
    """
    C{proxy.tac} refuses bad options in its environment with one line
    naming the problem and exit status 1, as C{twistd webproxy} does, not
    with twistd's "Failed to load application" traceback.
    """
    r = subprocess.run(
        [*TWISTD, "-n", "-y", str(REPO_ROOT / "proxy.tac"), "--pidfile="],
        capture_output=True,
        timeout=30,
        cwd=str(workdir),
        env=childEnv(env),
    )
    assert r.returncode == 1, r
    output = (r.stdout + r.stderr).decode()
    assert "Traceback" not in output, output
    assert "webproxy (proxy.tac): " in output, output
    assert expected in output, output


def test_tacPortFromConfigFile(workdir, origin) -> None:
    """
    Without C{WEBPROXY_PORT}, C{proxy.tac} listens where the configuration
    file says (it used to pass C{--port 8080} always, which overrode it).
    """
    port = freePort()
    config = workdir / ("tac-%d.toml" % port)
    config.write_text("[server]\nport = %d\n" % port)
    proxy = Proxy(
        workdir,
        argv=[*TWISTD, "-n", "-y", str(REPO_ROOT / "proxy.tac"), "--pidfile="],
        env={"WEBPROXY_ARGS": "--config %s" % config},
        port=port,
    )
    try:
        assert throughProxy(port, origin).startswith(b"GET /echo?via-")
    finally:
        proxy.stop()


def runWithTakenPort(workdir, twistdOptions, args) -> tuple[int, str]:
    """
    Run C{twistd [twistdOptions] webproxy [args]} while a port on 127.0.0.1
    is taken; C{"TAKEN"} in C{args} stands for it.

    @return: the exit status and the output.
    """
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = str(taken.getsockname()[1])
        r = subprocess.run(
            [
                *TWISTD,
                *twistdOptions,
                "webproxy",
                *[port if a == "TAKEN" else a for a in args],
            ],
            capture_output=True,
            timeout=30,
            cwd=str(workdir),
            env=childEnv(),
        )
    return r.returncode, (r.stdout + r.stderr).decode()


@pytest.mark.parametrize("where", ["port", "interface"])
def test_cannotListenExitsNonZero(workdir, where) -> None:
    """
    A port in use, or an interface the host does not have, stops the start
    with one line naming it and a non-zero exit status (it used to log the
    error and then exit 0, which service managers count as a clean stop).
    """
    if where == "port":
        args = ["--port", "TAKEN", "--interface", "127.0.0.1"]
    else:
        args = ["--port", str(freePort()), "--interface", "192.0.2.1"]
    status, output = runWithTakenPort(workdir, ["-n", "--pidfile="], args)
    assert status == 1, output
    assert "Traceback" not in output, output
    assert "webproxy: cannot listen on tcp:" in output, output


def test_cannotListenDaemonExits(workdir) -> None:
    """
    The same for a daemon (no C{-n}): the waiting parent exits 1 with the
    message and the pid file is removed (the start used to hang, the
    parent waiting for a status its child never sent).
    """
    pidfile = workdir / ("cannot-listen-%d.pid" % time.monotonic_ns())
    status, output = runWithTakenPort(
        workdir,
        ["--pidfile=%s" % pidfile, "--logfile=%s" % pidfile.with_suffix(".log")],
        ["--port", "TAKEN", "--interface", "127.0.0.1"],
    )
    assert status == 1, output
    assert "cannot listen on tcp:" in output, output
    assert not pidfile.exists()


def test_listenEndpoints(makeProxy, origin, workdir) -> None:
    """
    C{--listen} takes Twisted endpoint strings, repeatable: the proxy
    serves on an IPv6 TCP port and a UNIX socket besides C{--port}.
    """
    port6 = freePort("::1")
    sock = workdir / ("proxy-%d.sock" % port6)
    proxy = makeProxy(
        "--listen", "tcp6:%d:interface=\\:\\:1" % port6, "--listen", "unix:%s" % sock
    )
    assert throughProxy(proxy.port, origin).startswith(b"GET ")
    assert throughProxy(port6, origin, host="::1").startswith(b"GET ")
    u = socket.socket(socket.AF_UNIX)
    u.settimeout(5)
    u.connect(str(sock))
    with Conn(u) as c:
        c.send(
            b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % origin.url("/echo?unix").encode()
        )
        resp = c.readResponse()
    assert resp.status == 200, resp


def test_tlsListenerNegotiatesHTTP11(makeProxy, origin, certificate) -> None:
    """
    A TLS listener (C{--listen ssl:...}) completes handshakes with clients
    that offer ALPN, as curl and browsers do for an HTTPS proxy, choosing
    C{http/1.1}, and serves requests over it.  (Twisted's TLS layer failed
    such handshakes with an internal-error alert when the factory named no
    protocol.)
    """
    cert, key = certificate
    port = freePort()
    proxy = makeProxy(
        "--listen",
        "ssl:%d:interface=127.0.0.1:privateKey=%s:certKey=%s" % (port, key, cert),
    )
    context = ssl.create_default_context(cafile=str(cert))
    context.set_alpn_protocols(["h2", "http/1.1"])
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    with Conn(context.wrap_socket(raw, server_hostname="localhost")) as c:
        assert c.sock.selected_alpn_protocol() == "http/1.1"
        c.send(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % origin.url("/echo?tls").encode())
        resp = c.readResponse()
    assert resp.status == 200, resp
    assert throughProxy(proxy.port, origin).startswith(b"GET ")


def test_noDropinCacheInGit() -> None:
    """
    No C{dropin.cache} is tracked in git (it is generated per install).
    """
    r = subprocess.run(
        ["git", "ls-files"], cwd=str(REPO_ROOT), capture_output=True, timeout=30
    )
    assert r.returncode == 0, r.stderr
    assert not [f for f in r.stdout.decode().splitlines() if f.endswith("dropin.cache")]


@pytest.mark.slow
def test_pipInstall(workdir, origin) -> None:
    """
    SLOW (a real C{pip install .} into a fresh virtualenv, typically 20-60
    seconds): after a plain, non-editable install, C{twistd --help} lists
    C{webproxy}, and the installed C{twistd webproxy} serves, from a
    directory that does not contain the checkout.
    """
    src = workdir / "src"
    copyCheckout(src)
    env = workdir / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(env)
    python = env / "bin" / "python"
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")
    }
    clean = {k: v for k, v in clean.items() if "proxy" not in k.lower()}
    run = workdir / "run"
    run.mkdir()
    r = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "."],
        cwd=str(src),
        capture_output=True,
        timeout=180,
        env=clean,
    )
    assert r.returncode == 0, r.stderr.decode()[-3000:]
    r = subprocess.run(
        [str(env / "bin" / "twistd"), "--help"],
        cwd=str(run),
        capture_output=True,
        timeout=30,
        env=clean,
    )
    assert r.returncode == 0, r.stderr
    assert b"webproxy" in r.stdout, r.stdout
    r = subprocess.run(
        [str(python), "-c", "import proxyapp, sys; print(proxyapp.__file__)"],
        cwd=str(run),
        capture_output=True,
        timeout=30,
        env=clean,
    )
    assert r.returncode == 0, r.stderr
    assert str(env) in r.stdout.decode(), r.stdout
    port = freePort()
    proc = subprocess.Popen(
        [
            str(env / "bin" / "twistd"),
            "-n",
            "--pidfile=",
            "webproxy",
            "--port",
            str(port),
        ],
        cwd=str(run),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=clean,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                assert throughProxy(port, origin).startswith(b"GET ")
                break
            except OSError:
                assert time.monotonic() < deadline, "installed proxy did not start"
                assert proc.poll() is None, "installed proxy exited"
                time.sleep(0.1)
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
