# -*- test-case-name: tests.test_service -*-
"""
Tests for L{proxyapp.service.ProxyService}: listening on every endpoint
description, swapping configuration and filters on reload (SIGHUP), keeping
the old configuration when the file has become invalid, and draining on
stop.

The reactor is a L{MemoryReactorClock}: listening is recorded, not done,
and drain deadlines advance only when the test says so.
"""

from __future__ import annotations

import os
import signal
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.error import CannotListenError, ConnectionDone
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import capturedLogs, formatEvent
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from proxyapp.chain import FilterChain
from proxyapp.config import Settings
from proxyapp.message import Response
from proxyapp.protocol import ProxyFactory
from proxyapp.service import ProxyService, StartFailed
from proxyapp.tap import Options, listenDescriptions
from proxyapp.testing import makeRequestHead
from tests import temporaryDirectory


class Reactor(MemoryReactorClock):
    """
    A memory reactor that also runs C{callFromThread} calls (at once), as
    the signal handlers use it.
    """

    def callFromThread(self, f: Any, *args: Any, **kwargs: Any) -> None:
        f(*args, **kwargs)


class ConfigMixin:
    """
    Writes a configuration file and builds a service from it the way
    C{makeService} does.
    """

    def setUp(self) -> None:
        self.directory = temporaryDirectory(self, "webproxy-service-")
        self.path = os.path.join(self.directory, "webproxy.toml")
        self.reactor = Reactor()

    def write(self, text: str) -> None:
        with open(self.path, "w", encoding="utf-8") as f:
            f.write(text)

    def makeService(self, *argv: str, installSignals: bool = False) -> ProxyService:
        options = Options()
        options.parseOptions(["--config", self.path, *argv])
        settings = options["settings"]
        service = ProxyService(
            settings,
            listenDescriptions(settings),
            self.reactor,
            options=options,
            filters=options["built-filters"],
            installSignals=installSignals,
        )
        return service


def blocked(service: ProxyService, url: bytes) -> bool:
    """
    @return: whether the running chain refuses C{url} with 403.
    """
    result = service.factory.chain.filterRequest(makeRequestHead(url=url))
    return isinstance(result, Response) and result.head.status == 403


class ListenTests(ConfigMixin, SynchronousTestCase):
    """
    Starting the service listens on every description with one factory.
    """

    def test_listensOnEveryDescription(self) -> None:
        """
        C{port}/C{interface} and each C{listen} description become
        listening ports sharing one L{ProxyFactory}.
        """
        self.write(
            '[server]\nport = 3128\ninterface = "127.0.0.2"\nlisten = ["tcp:8123", "unix:%s"]\n'
            % os.path.join(self.directory, "s")
        )
        service = self.makeService()
        service.startService()
        self.addCleanup(service.stopService)
        self.assertIsInstance(service.factory, ProxyFactory)
        [(port1, factory1, _, interface1), (port2, factory2, _, interface2)] = (
            self.reactor.tcpServers
        )
        self.assertEqual((port1, interface1), (3128, "127.0.0.2"))
        self.assertEqual(port2, 8123)
        self.assertIs(factory1, service.factory)
        self.assertIs(factory2, service.factory)
        [(address, factory3, _, _, _)] = self.reactor.unixServers
        self.assertEqual(address, os.path.join(self.directory, "s"))
        self.assertIs(factory3, service.factory)
        self.assertEqual(len(service.ports), 3)

    def test_listensWhilePrivileged(self) -> None:
        """
        Under twistd, listening happens in C{privilegedStartService},
        before C{--uid}/C{--gid} drop privileges (a port below 1024), and
        C{startService} then does not listen again.
        """
        self.write("[server]\nport = 80\n")
        service = self.makeService()
        service.privilegedStartService()
        self.assertEqual([p[0] for p in self.reactor.tcpServers], [80])
        factory = service.factory
        service.startService()
        self.addCleanup(service.stopService)
        self.assertEqual(len(self.reactor.tcpServers), 1)
        self.assertIs(service.factory, factory)

    def test_chainFromFilters(self) -> None:
        """
        The factory's chain holds the built filters (the access filter
        first) with the configured deadline; its settings are the
        service's.
        """
        self.write("[filters]\ndeadline = 0.25\n")
        service = self.makeService()
        service.startService()
        self.addCleanup(service.stopService)
        self.assertIsInstance(service.factory.chain, FilterChain)
        self.assertEqual(service.factory.chain.names(), ["access"])
        self.assertEqual(service.factory.chain.deadline, 0.25)
        self.assertIs(service.factory.chain.reactor, self.reactor)
        self.assertIs(service.factory.settings, service.settings)

    def test_signals(self) -> None:
        """
        With C{installSignals}, SIGHUP reloads (through the reactor) and
        the previous handlers come back on stop.
        """
        self.write("")
        previous = signal.getsignal(signal.SIGHUP)
        service = self.makeService(installSignals=True)
        service.startService()
        try:
            self.assertEqual(signal.getsignal(signal.SIGHUP), service._onHangup)
            self.write('[access]\nblocked_domains = ["hup.example"]\n')
            with capturedLogs():
                service._onHangup(signal.SIGHUP, None)
            self.assertTrue(blocked(service, b"http://hup.example/"))
        finally:
            service.stopService()
        self.assertEqual(signal.getsignal(signal.SIGHUP), previous)


class FakeAccessLog:
    """
    Records that the service closed its access log.
    """

    closed = False

    def close(self) -> None:
        self.closed = True


class RefusingReactor(Reactor):
    """
    A memory reactor on which TCP ports cannot listen (a port in use).
    """

    def listenTCP(self, port: int, factory: Any, backlog: int = 50, interface: str = "") -> Any:  # type: ignore[override]
        raise CannotListenError(interface, port, OSError(98, "Address already in use"))


class ListenFailureTests(ConfigMixin, SynchronousTestCase):
    """
    A listener that cannot listen stops the start.
    """

    def test_startFails(self) -> None:
        """
        C{startService} raises C{SystemExit} with one line naming the
        description and the error (twistd then exits with status 1; it
        used to log the error, stop the reactor and exit 0), having closed
        what it had opened.
        """
        self.write("")
        self.reactor = RefusingReactor()
        service = self.makeService("--port", "3128")
        service.accessLog = FakeAccessLog()
        with capturedLogs():
            error = self.assertRaises(StartFailed, service.startService)
        self.assertIsInstance(error, SystemExit)
        self.assertIsInstance(error, Exception)
        message = str(error)
        self.assertTrue(
            message.startswith("webproxy: cannot listen on tcp:3128"), message
        )
        self.assertIn("Address already in use", message)
        self.assertNotIn("\n", message)
        self.assertEqual(service.ports, [])
        self.assertTrue(service.accessLog.closed)


class ReloadTests(ConfigMixin, SynchronousTestCase):
    """
    L{ProxyService.reload} swaps settings and filter chain atomically, or
    keeps both when the new file is invalid.
    """

    def setUp(self) -> None:
        ConfigMixin.setUp(self)
        self.write(
            '[limits]\nmax_headers = 50\n[access]\nblocked_domains = ["old.example"]\n'
        )
        self.service = self.makeService()
        self.service.startService()
        self.addCleanup(self.service.stopService)

    def test_swaps(self) -> None:
        """
        A changed file gives the factory new settings and a new chain; the
        old chain object (still used by exchanges in flight) is untouched.
        """
        oldSettings, oldChain = (
            self.service.factory.settings,
            self.service.factory.chain,
        )
        self.write(
            '[limits]\nmax_headers = 60\n[access]\nblocked_domains = ["new.example"]\n[filters]\ndeadline = 2\n'
        )
        with capturedLogs() as events:
            self.assertTrue(self.service.reload())
        factory = self.service.factory
        self.assertIsNot(factory.settings, oldSettings)
        self.assertIsNot(factory.chain, oldChain)
        self.assertIs(self.service.settings, factory.settings)
        self.assertEqual(factory.settings.maxHeaders, 60)
        self.assertEqual(factory.chain.deadline, 2.0)
        self.assertTrue(blocked(self.service, b"http://new.example/"))
        self.assertFalse(blocked(self.service, b"http://old.example/"))
        # The old objects are as they were.
        self.assertEqual(oldSettings.maxHeaders, 50)
        self.assertIsInstance(
            oldChain.filterRequest(makeRequestHead(url=b"http://old.example/")),
            Response,
        )
        self.assertTrue(any("reloaded" in formatEvent(e) for e in events))

    def test_poolAndConnectTimeout(self) -> None:
        """
        The pool's size and idle timeout, the connect timeout (held by the
        default endpoints too) and the response head limits reach the
        upstream pool; they used to stay as first built.
        """
        pool = self.service.factory.pool
        oldEndpoints = pool.endpointForTarget
        self.write(
            "[pool]\nsize = 0\ntotal_size = 3\nidle_timeout = 5\n[timeouts]\nconnect = 2\n"
            "[limits]\nmax_headers = 60\n"
        )
        with capturedLogs():
            self.assertTrue(self.service.reload())
        self.assertIs(self.service.factory.pool, pool)
        self.assertEqual(
            (pool.maxIdle, pool.maxIdleTotal, pool.idleTimeout), (0, 3, 5.0)
        )
        self.assertEqual(pool.settings.connectTimeout, 2.0)
        self.assertEqual(pool.settings.maxHeaders, 60)
        self.assertIsNot(pool.endpointForTarget, oldEndpoints)
        endpoint = pool.endpointForTarget("192.0.2.1", 80)
        self.assertEqual(endpoint._timeout, 2.0)

    def test_viaPseudonymKept(self) -> None:
        """
        The proxy's Via name survives a reload (it identifies the process
        for loop detection).
        """
        before = self.service.settings.viaPseudonym
        self.write("")
        self.assertTrue(self.service.reload())
        self.assertEqual(self.service.factory.settings.viaPseudonym, before)

    def test_viaPseudonymChanged(self) -> None:
        """
        A C{via_pseudonym} the file sets, or changes, or stops setting, is
        taken at a reload: new requests and responses carry it, and loops
        are recognised by it.  It was kept silently before.
        """
        self.write('[server]\nvia_pseudonym = "first"\n')
        service = self.makeService()
        service.startService()
        self.addCleanup(service.stopService)
        self.assertEqual(service.factory.viaValues[b"HTTP/1.1"], b"1.1 first")
        self.write('[server]\nvia_pseudonym = "Second"\n')
        with capturedLogs():
            self.assertTrue(service.reload())
        self.assertEqual(service.factory.viaValues[b"HTTP/1.1"], b"1.1 Second")
        self.assertEqual(service.factory.viaToken, b"second")
        self.assertEqual(service.factory.viaLine, b"Via: 1.1 Second\r\n\r\n")
        self.write("")
        with capturedLogs():
            self.assertTrue(service.reload())
        generated = service.factory.settings.viaPseudonym
        self.assertNotEqual(generated, "Second")
        self.write("\n")
        with capturedLogs():
            self.assertTrue(service.reload())
        self.assertEqual(service.factory.settings.viaPseudonym, generated)

    def test_invalidKeepsOld(self) -> None:
        """
        An invalid file is logged, naming the file and the key, and the
        running settings and chain stay.
        """
        settings, chain = self.service.factory.settings, self.service.factory.chain
        self.write("[limits]\nmax_headers = -1\n")
        with capturedLogs() as events:
            self.assertFalse(self.service.reload())
        self.assertIs(self.service.factory.settings, settings)
        self.assertIs(self.service.factory.chain, chain)
        self.assertIs(self.service.settings, settings)
        self.assertTrue(blocked(self.service, b"http://old.example/"))
        messages = [formatEvent(e) for e in events]
        [message] = [m for m in messages if "reload failed" in m]
        self.assertIn(self.path, message)
        self.assertIn("[limits] max_headers", message)

    def test_invalidTomlKeepsOld(self) -> None:
        """
        A file that is not TOML any more is refused the same way.
        """
        chain = self.service.factory.chain
        self.write("[limits\n")
        with capturedLogs():
            self.assertFalse(self.service.reload())
        self.assertIs(self.service.factory.chain, chain)

    def test_unknownFilterKeepsOld(self) -> None:
        """
        Enabling a filter that is not installed is refused; the old chain
        stays.
        """
        chain = self.service.factory.chain
        self.write('[filters]\nenabled = ["nosuch"]\n')
        with capturedLogs() as events:
            self.assertFalse(self.service.reload())
        self.assertIs(self.service.factory.chain, chain)
        self.assertTrue(any("nosuch" in formatEvent(e) for e in events))

    def test_missingFileKeepsOld(self) -> None:
        """
        A file that has disappeared is refused; the old settings stay.
        """
        settings = self.service.factory.settings
        os.remove(self.path)
        with capturedLogs():
            self.assertFalse(self.service.reload())
        self.assertIs(self.service.factory.settings, settings)

    def test_recoversAfterInvalid(self) -> None:
        """
        After a refused reload, fixing the file and reloading again works.
        """
        self.write("[limits]\nmax_headers = -1\n")
        with capturedLogs():
            self.assertFalse(self.service.reload())
        self.write('[access]\nblocked_domains = ["fixed.example"]\n')
        self.assertTrue(self.service.reload())
        self.assertTrue(blocked(self.service, b"http://fixed.example/"))

    def test_commandLineStillWins(self) -> None:
        """
        A reload re-applies the command line over the new file.
        """
        self.write("[limits]\nmax_headers = 10\n")
        service = self.makeService("--max-headers", "20")
        service.startService()
        self.addCleanup(service.stopService)
        self.write("[limits]\nmax_headers = 30\n")
        self.assertTrue(service.reload())
        self.assertEqual(service.factory.settings.maxHeaders, 20)

    def test_listenChangeWarns(self) -> None:
        """
        Changed listening addresses are not applied (that needs a restart),
        which is logged; the rest of the file is applied.
        """
        self.write('[server]\nport = 9999\n[access]\nblocked_domains = ["x.example"]\n')
        with capturedLogs() as events:
            self.assertTrue(self.service.reload())
        self.assertTrue(any("restart" in formatEvent(e) for e in events))
        self.assertTrue(blocked(self.service, b"http://x.example/"))
        self.assertEqual(len(self.reactor.tcpServers), 1)

    def test_listenRevertedDoesNotWarn(self) -> None:
        """
        After a reload that changed the port (not applied, warned about),
        putting the listening port back is no change, so no second warning.
        """
        self.write("[server]\nport = 9999\n")
        with capturedLogs():
            self.assertTrue(self.service.reload())
        self.write("")
        with capturedLogs() as events:
            self.assertTrue(self.service.reload())
        self.assertFalse(any("restart" in formatEvent(e) for e in events))

    def test_notUtf8KeepsOld(self) -> None:
        """
        A file that is no longer UTF-8 is refused with the usual one-line
        message, not a critical traceback; the old chain stays.
        """
        chain = self.service.factory.chain
        with open(self.path, "wb") as f:
            f.write(b'[server]\nvia_pseudonym = "caf\xe9"\n')
        with capturedLogs() as events:
            self.assertFalse(self.service.reload())
        self.assertIs(self.service.factory.chain, chain)
        messages = [formatEvent(e) for e in events]
        [message] = [m for m in messages if "reload failed" in m]
        self.assertIn("not UTF-8", message)

    def test_accessLogErrorNamesKey(self) -> None:
        """
        An access log path that cannot be opened is refused naming the file
        and the key.
        """
        directory = os.path.dirname(self.path)
        self.write(f"[log]\naccess_log = {directory!r}\n")
        with capturedLogs() as events:
            self.assertFalse(self.service.reload())
        messages = [formatEvent(e) for e in events]
        [message] = [m for m in messages if "reload failed" in m]
        self.assertIn(f"{self.path}: [log] access_log: cannot open access log", message)

    def test_unexpectedErrorKeepsOld(self) -> None:
        """
        Should building the new configuration raise anything else, the
        reload is refused and logged, and the old settings stay.
        """
        import proxyapp.tap

        def broken(options: Any) -> Any:
            raise RuntimeError("boom")

        self.patch(proxyapp.tap, "reloadSettings", broken)
        settings = self.service.factory.settings
        with capturedLogs() as events:
            self.assertFalse(self.service.reload())
        self.assertIs(self.service.factory.settings, settings)
        self.assertTrue(any("reload failed" in formatEvent(e) for e in events))
        self.flushLoggedErrors(RuntimeError)

    def test_reopenLogsSaysOnlyWhatHappened(self) -> None:
        """
        SIGUSR1 logs "access log reopened" only when the new file was
        opened; when it could not be (the writer reports that), it does not
        claim so.
        """
        for opened in (True, False):
            self.service.accessLog = FakeAccessLog()
            self.service.accessLog.reopen = lambda: opened  # type: ignore[attr-defined]
            with capturedLogs() as events:
                self.service.reopenLogs()
            said = any("access log reopened" in formatEvent(e) for e in events)
            self.assertEqual(said, opened)
        self.service.accessLog = None

    def test_noOptions(self) -> None:
        """
        A service built without options (no file) has nothing to reload.
        """
        service = ProxyService(
            Settings(viaPseudonym="p"), [], self.reactor, installSignals=False
        )
        service.startService()
        self.addCleanup(service.stopService)
        with capturedLogs():
            self.assertFalse(service.reload())


class FakeConnection:
    """
    Stands in for a L{ProxyProtocol} during drain: busy until told
    otherwise, closing (and leaving the factory's set) when idle.
    """

    def __init__(self, factory: ProxyFactory, busy: bool) -> None:
        self.factory = factory
        self.isBusy = busy
        self.closed = False
        self.aborted = False
        self.transport = self
        factory.connections.add(self)

    def busy(self) -> bool:
        return self.isBusy

    def closeIfIdle(self) -> None:
        if not self.isBusy:
            self.closed = True
            self.factory.connections.discard(self)

    def abortConnection(self) -> None:
        self.aborted = True
        self.factory.connections.discard(self)


class ClosingTransport(StringTransport):
    """
    A transport whose C{loseConnection} ends the connection at once.
    """

    def loseConnection(self) -> None:
        if self.connected:
            self.connected = False
            self.protocol.connectionLost(Failure(ConnectionDone()))


class DrainTests(ConfigMixin, SynchronousTestCase):
    """
    Stopping the service stops listening, closes idle connections at once
    and lets busy ones finish for up to C{drain_timeout} seconds.
    """

    def setUp(self) -> None:
        ConfigMixin.setUp(self)
        self.write('[server]\ndrain_timeout = 2\n[log]\naccess_log = "off"\n')
        self.service = self.makeService()
        self.service.startService()

    def test_idleClosedAtOnce(self) -> None:
        """
        With only idle connections (a real proxy protocol among them), stop
        completes without waiting.
        """
        protocol = self.service.factory.buildProtocol(None)
        transport = ClosingTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
        transport.protocol = protocol
        protocol.makeConnection(transport)
        idle = FakeConnection(self.service.factory, busy=False)
        with capturedLogs():
            d = self.service.stopService()
        self.successResultOf(d)
        self.assertTrue(idle.closed)
        self.assertFalse(transport.connected)
        self.assertEqual(self.service.factory.connections, set())
        self.assertTrue(self.service.factory.draining)

    def test_busyFinishes(self) -> None:
        """
        A busy connection is waited for; when its exchange completes it is
        closed and the stop completes, without aborting anything.
        """
        busy = FakeConnection(self.service.factory, busy=True)
        with capturedLogs() as events:
            d = self.service.stopService()
            self.assertNoResult(d)
            self.reactor.advance(1.0)
            self.assertNoResult(d)
            busy.isBusy = False
            self.reactor.advance(0.05)
            self.successResultOf(d)
        self.assertTrue(busy.closed)
        self.assertFalse(busy.aborted)
        self.assertTrue(any("drained" in formatEvent(e) for e in events))

    def test_drainTimeout(self) -> None:
        """
        A connection still busy after C{drain_timeout} is aborted, which is
        logged.
        """
        busy = FakeConnection(self.service.factory, busy=True)
        idle = FakeConnection(self.service.factory, busy=False)
        with capturedLogs() as events:
            d = self.service.stopService()
            self.assertTrue(idle.closed)
            self.reactor.advance(1.9)
            self.assertNoResult(d)
            for _ in range(10):
                self.reactor.advance(0.05)
            self.successResultOf(d)
        self.assertTrue(busy.aborted)
        self.assertTrue(any("drain timeout" in formatEvent(e) for e in events))

    def test_stepsLogged(self) -> None:
        """
        Every step of the drain is logged, to the access log's close.
        """
        service = self.makeService()
        service.accessLog = accessLog = FakeAccessLog()
        with capturedLogs() as events:
            service.startService()
            self.successResultOf(service.stopService())
        text = [formatEvent(e) for e in events]
        for step in (
            "stopped accepting",
            "drained",
            "closing 0 idle upstream connection(s)",
            "access log flushed and closed",
        ):
            self.assertTrue(any(step in line for line in text), (step, text))
        self.assertTrue(accessLog.closed)

    def test_signalsKeptWhileDraining(self) -> None:
        """
        SIGUSR1 and SIGHUP keep their handlers until the drain is over: a
        logrotate SIGUSR1 meanwhile used to meet the default action, which
        kills the process and loses the access log's waiting records.
        """
        previous = signal.getsignal(signal.SIGUSR1)
        service = self.makeService(installSignals=True)
        service.startService()
        busy = FakeConnection(service.factory, busy=True)
        with capturedLogs():
            d = service.stopService()
            self.assertEqual(signal.getsignal(signal.SIGUSR1), service._onUser1)
            self.assertEqual(signal.getsignal(signal.SIGHUP), service._onHangup)
            busy.isBusy = False
            self.reactor.advance(0.05)
            self.successResultOf(d)
        self.assertEqual(signal.getsignal(signal.SIGUSR1), previous)

    def test_secondSignalEndsDrain(self) -> None:
        """
        A second SIGINT or SIGTERM during the drain ends it at once: the
        connections still busy are closed as at its timeout, and each step
        is logged.  Before, Twisted's own handler tried to stop the
        stopping reactor again (a critical traceback) and the drain ran its
        whole timeout.  The handlers in place before come back afterwards.
        """
        for number in (signal.SIGINT, signal.SIGTERM):
            previous = signal.getsignal(number)
            service = self.makeService(installSignals=True)
            service.startService()
            busy = FakeConnection(service.factory, busy=True)
            with capturedLogs() as events:
                d = service.stopService()
                handler = signal.getsignal(number)
                self.assertEqual(handler, service._onStopAgain)
                self.reactor.advance(0.5)
                self.assertNoResult(d)
                handler(number, None)
                self.reactor.advance(0.05)
                self.successResultOf(d)
            self.assertTrue(busy.aborted)
            text = [formatEvent(e) for e in events]
            name = signal.Signals(number).name
            for step in (
                f"{name} during the drain: ending it now",
                "drain ended: closing 1 connection(s) still in flight",
            ):
                self.assertTrue(any(step in line for line in text), (step, text))
            self.assertEqual(signal.getsignal(number), previous)

    def test_stopsListeningFirst(self) -> None:
        """
        The listening ports are stopped as soon as the stop begins.
        """
        ports = list(self.service.ports)
        self.assertTrue(ports)
        FakeConnection(self.service.factory, busy=True)
        with capturedLogs():
            d = self.service.stopService()
            self.assertEqual(self.service.ports, [])
            self.reactor.advance(3)
        self.successResultOf(d)
