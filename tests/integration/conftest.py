# -*- test-case-name: tests.integration -*-
"""
Fixtures for the integration tests: origin servers and proxies running as
real processes on 127.0.0.1 / ::1, each killed when its fixture ends.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator, List, Tuple

import pytest

from .support import LIVE_PROXIES, Origin, Proxy, makeCertificate


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "slow: takes tens of seconds (a real `pip install .` into a new virtualenv)",
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo
) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for p in LIVE_PROXIES:
            report.sections.append(("proxy %d log (tail)" % p.port, p.log()[-3000:]))


@pytest.fixture(scope="session")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """
    A directory for logs, certificates and virtualenvs of this run.
    """
    return tmp_path_factory.mktemp("integration")


@pytest.fixture(scope="session")
def certificate(workdir: Path) -> Tuple[Path, Path]:
    """
    (cert.pem, key.pem) of a self-signed certificate for 127.0.0.1, ::1 and
    localhost; the certificate is also the CA clients trust.
    """
    d = workdir / "tls"
    d.mkdir()
    return makeCertificate(d)


@pytest.fixture(scope="session")
def origin(workdir: Path) -> Iterator[Origin]:
    """
    A plain HTTP origin on 127.0.0.1, shared by the whole session.
    """
    o = Origin(workdir)
    yield o
    o.stop()


@pytest.fixture(scope="session")
def origin6(workdir: Path) -> Iterator[Origin]:
    """
    A plain HTTP origin on ::1.
    """
    o = Origin(workdir, host="::1")
    yield o
    o.stop()


@pytest.fixture(scope="session")
def tlsOrigin(workdir: Path, certificate: Tuple[Path, Path]) -> Iterator[Origin]:
    """
    An HTTPS origin on 127.0.0.1 using L{certificate}.
    """
    o = Origin(workdir, tls=certificate)
    yield o
    o.stop()


@pytest.fixture
def makeOrigin(workdir: Path) -> Iterator[Callable[..., Origin]]:
    """
    A factory for fresh origins (fresh counters), stopped after the test.
    """
    started: List[Origin] = []

    def make(**kwargs: object) -> Origin:
        o = Origin(workdir, **kwargs)  # type: ignore[arg-type]
        started.append(o)
        return o

    yield make
    for o in started:
        o.stop()


@pytest.fixture(scope="module")
def proxy(workdir: Path, origin: Origin, tlsOrigin: Origin) -> Iterator[Proxy]:
    """
    A proxy with default limits and timeouts, one per test module, allowed
    to CONNECT to both session origins.
    """
    p = Proxy(
        workdir,
        ["--connect-port", str(tlsOrigin.port), "--connect-port", str(origin.port)],
    )
    yield p
    p.stop()


@pytest.fixture
def makeProxy(workdir: Path) -> Iterator[Callable[..., Proxy]]:
    """
    A factory for proxies with the given command line options, stopped
    after the test.  Keyword arguments go to L{Proxy}.
    """
    started: List[Proxy] = []

    def make(*args: str, **kwargs: object) -> Proxy:
        p = Proxy(workdir, args, **kwargs)  # type: ignore[arg-type]
        started.append(p)
        return p

    yield make
    for p in started:
        p.stop()
