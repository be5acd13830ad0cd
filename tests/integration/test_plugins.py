"""
Integration tests: a third-party filter distribution, installed with plain
C{pip install} next to a plain C{pip install} of webproxy, is discovered,
stays off until enabled, and changes real traffic once enabled.

SLOW: the module builds one virtualenv (two real C{pip install}s, typically
20-90 seconds) and shares it between its tests.
"""

from __future__ import annotations

import os
import subprocess
import venv
from pathlib import Path
from typing import Dict, Iterator

import pytest

from .origin import pattern
from .support import REPO_ROOT, Conn, Origin, Proxy, copyCheckout, freePort

EXAMPLE = REPO_ROOT / "examples" / "webproxy-example-filter"
EXAMPLE_MODULE = "proxyapp.plugins.webproxy_example_filter"


pytestmark = pytest.mark.slow


def cleanEnv() -> Dict[str, str]:
    """
    The environment for the virtualenv's programs: nothing that would put
    the checkout on the path, no proxy variables.
    """
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")
    }
    return {k: v for k, v in env.items() if "proxy" not in k.lower()}


class Installed:
    """
    A virtualenv with webproxy and the example filter installed.

    @ivar root: the virtualenv.
    @ivar run: a working directory without the checkout in it.
    """

    def __init__(self, root: Path, run: Path, example: Path) -> None:
        self.root = root
        self.run = run
        self.example = example
        self.python = root / "bin" / "python"
        self.twistd = root / "bin" / "twistd"

    def call(
        self, *argv: str, timeout: float = 60, cwd: Path | None = None
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            list(argv),
            cwd=str(cwd or self.run),
            env=cleanEnv(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def sitePackages(self) -> Path:
        r = self.call(
            str(self.python),
            "-c",
            "import sysconfig; print(sysconfig.get_paths()['purelib'])",
        )
        assert r.returncode == 0, r.stderr
        return Path(r.stdout.strip())


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    """
    A fresh virtualenv with C{pip install <checkout>} and then
    C{pip install examples/webproxy-example-filter}, both plain (not
    editable), from copies so that nothing is built inside the checkout.
    """
    base = tmp_path_factory.mktemp("plugins")
    source = base / "webproxy"
    copyCheckout(source)
    example = source / "examples" / "webproxy-example-filter"
    root = base / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(root)
    run = base / "run"
    run.mkdir()
    env = Installed(root, run, example)
    for target in (source, example):
        r = env.call(
            str(env.python), "-m", "pip", "install", "--quiet", str(target), timeout=300
        )
        assert (
            r.returncode == 0
        ), f"pip install {target} failed:\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    yield env


def writeConfig(directory: Path, text: str) -> Path:
    path = directory / (
        "webproxy-%d.toml" % len(list(directory.glob("webproxy-*.toml")))
    )
    path.write_text(text)
    return path


def startProxy(workdir: Path, env: Installed, *args: str) -> Proxy:
    """
    Start the virtualenv's C{twistd webproxy} (not the checkout's).
    """
    port = freePort()
    argv = [
        str(env.twistd),
        "-n",
        "--pidfile=",
        "webproxy",
        "--port",
        str(port),
        "--interface",
        "127.0.0.1",
        *args,
    ]
    # An empty PYTHONPATH overrides the checkout that Proxy would put there.
    return Proxy(workdir, argv=argv, port=port, env={"PYTHONPATH": ""}, cwd=env.run)


def get(proxy: Proxy, origin: Origin, path: str) -> "object":
    with Conn.open(proxy.port) as c:
        c.send(
            b"GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n"
            % (origin.url(path).encode(), origin.authority.encode())
        )
        return c.readResponse()


def test_installedIntoPluginPackage(installed: Installed) -> None:
    """
    The example's single module lands in webproxy's plugin package in
    site-packages, and webproxy's own files there are untouched.
    """
    plugins = installed.sitePackages() / "proxyapp" / "plugins"
    assert (plugins / "webproxy_example_filter.py").is_file()
    assert (plugins / "proxyapp_builtins.py").is_file()
    assert "pluginPackagePaths" in (plugins / "__init__.py").read_text()
    r = installed.call(
        str(installed.python), "-m", "pip", "show", "--files", "webproxy-example-filter"
    )
    assert r.returncode == 0, r.stderr
    files = [
        line.strip()
        for line in r.stdout.split("Files:", 1)[1].splitlines()
        if line.strip()
    ]
    owned = [
        f
        for f in files
        if not f.startswith("webproxy_example_filter-") and "__pycache__" not in f
    ]
    assert owned == ["proxyapp/plugins/webproxy_example_filter.py"], files


def test_twistdHelpListsWebproxy(installed: Installed) -> None:
    """
    After a plain install, the virtualenv's C{twistd --help} lists
    C{webproxy}, from a directory without the checkout.
    """
    r = installed.call(str(installed.twistd), "--help")
    assert r.returncode == 0, r.stderr
    assert "webproxy" in r.stdout
    r = installed.call(
        str(installed.python), "-c", "import proxyapp; print(proxyapp.__file__)"
    )
    assert str(installed.root) in r.stdout, r.stdout


def test_listFilters(installed: Installed) -> None:
    """
    C{twistd webproxy --list-filters} shows the example with its
    description and origin module, next to the built-ins, and nothing
    broken.
    """
    r = installed.call(str(installed.twistd), "webproxy", "--list-filters")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    [example] = [line for line in lines if line.split()[:1] == ["example"]]
    assert "Adds X-Example-Filter to responses" in example
    assert f"[{EXAMPLE_MODULE}]" in example
    assert any(line.split()[:1] == ["access"] for line in lines)
    assert not [line for line in lines if line.startswith("BROKEN")], r.stdout
    assert "Traceback" not in r.stderr


def test_exampleOwnTests(installed: Installed) -> None:
    """
    The example's own tests pass against the installed distribution (they
    need only webproxy, no network).
    """
    tests = installed.example / "tests"
    r = installed.call(
        str(installed.python),
        "-m",
        "unittest",
        "-v",
        "test_webproxy_example_filter",
        cwd=tests,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "OK" in r.stderr


def test_installingDoesNotEnable(
    installed: Installed, workdir: Path, origin: Origin
) -> None:
    """
    Installed but not enabled, the example does nothing to traffic.
    """
    proxy = startProxy(workdir, installed)
    try:
        response = get(proxy, origin, "/echo/private")
        assert response.status == 200
        assert response.header(b"x-example-filter") is None
    finally:
        proxy.stop()


def test_enabledByConfigFile(installed: Installed, workdir: Path, makeOrigin) -> None:
    """
    Enabled in a configuration file with its own table, the example adds
    its greeting to real responses (bodies intact) and refuses blocked
    paths with 403 without contacting the origin.
    """
    origin = makeOrigin()
    config = writeConfig(
        installed.run,
        '[filters]\nenabled = ["example"]\n\n'
        '[filter.example]\ngreeting = "hello"\nblocked_paths = ["/echo/private"]\n',
    )
    proxy = startProxy(workdir, installed, "--config", str(config))
    try:
        before = origin.stats()["requests"]
        response = get(proxy, origin, "/bytes?n=200000")
        assert response.status == 200
        assert response.header(b"x-example-filter") == b"hello"
        assert response.body == pattern(0, 200000)
        refused = get(proxy, origin, "/echo/private/diary")
        assert refused.status == 403
        assert refused.header(b"x-example-filter") is None
        assert b"blocked by the example filter" in refused.body
        assert origin.stats()["requests"] == before + 1
        assert "filters: access, example" in proxy.log()
    finally:
        proxy.stop()


def test_enabledByOption(installed: Installed, workdir: Path, origin: Origin) -> None:
    """
    C{--filter example} enables it too (with its defaults).
    """
    proxy = startProxy(workdir, installed, "--filter", "example")
    try:
        response = get(proxy, origin, "/echo")
        assert response.status == 200
        assert response.header(b"x-example-filter") == b"hello"
    finally:
        proxy.stop()


def test_badTableStopsStart(installed: Installed) -> None:
    """
    A table the example refuses stops the start with one line naming the
    file, the table and the key.
    """
    config = writeConfig(
        installed.run,
        '[filters]\nenabled = ["example"]\n[filter.example]\ngreting = "hi"\n',
    )
    r = installed.call(
        str(installed.twistd), "-n", "--pidfile=", "webproxy", "--config", str(config)
    )
    assert r.returncode != 0
    assert "Traceback" not in r.stderr + r.stdout
    [line] = r.stderr.strip().splitlines()
    assert str(config) in line
    assert "[filter.example]" in line
    assert "greting" in line
