# -*- test-case-name: tests.test_service -*-
"""
The running proxy as a Twisted service: listening, reloading on SIGHUP,
reopening the access log on SIGUSR1, and draining on stop.
"""

from __future__ import annotations

import resource
import signal
from typing import Any, Optional

from twisted.application import service
from twisted.internet import defer, endpoints, task
from twisted.logger import Logger

from proxyapp import __version__
from proxyapp.chain import FilterChain
from proxyapp.config import ConfigError, Settings

log = Logger()


def raiseFileLimit() -> tuple[int, int]:
    """
    Raise the open-file soft limit as far as the hard limit allows, so many
    idle client connections fit.

    @return: the soft limit before and after.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            return soft, soft
        return soft, target
    return soft, soft


class StartFailed(SystemExit, Exception):
    """
    The service cannot start (an address it cannot listen on).

    Both kinds of exception on purpose: twistd's start-up catches
    C{Exception} to report it to a daemon's waiting parent (which then
    exits 1 with the message) and remove the pid file; uncaught, a
    C{SystemExit} ends the process with status 1 and the message alone, no
    traceback.
    """


class ProxyService(service.Service):
    """
    Listens on every configured endpoint with one L{ProxyFactory}.

    On stop it drains: stop accepting at once, let exchanges and tunnels in
    flight finish for up to C{drainTimeout} seconds, then close what is
    left.  On SIGHUP it re-reads the configuration and swaps settings and
    filter chain for new requests; connections in flight keep theirs.
    While it runs, memory freed after a burst goes back to the system
    (L{proxyapp.memory}).

    @ivar factory: the L{ProxyFactory}, once started.
    @ivar trimMemory: whether to start a L{proxyapp.memory.MemoryTrimmer}.
    """

    def __init__(
        self,
        settings: Settings,
        descriptions: list[str],
        reactor: Any = None,
        options: Any = None,
        filters: Optional[list[Any]] = None,
        installSignals: bool = True,
        accessLog: Any = None,
        trimMemory: bool = True,
    ) -> None:
        self.settings = settings
        self.descriptions = descriptions
        self._reactor = reactor
        self.options = options
        self.filters = filters or []
        self.installSignals = installSignals
        self.trimMemory = trimMemory
        self._trimmer: Any = None
        self.factory: Any = None
        self.accessLog: Any = accessLog
        self.ports: list[Any] = []
        self._oldHandlers: dict[int, Any] = {}

    @property
    def reactor(self) -> Any:
        if self._reactor is None:
            from twisted.internet import reactor

            self._reactor = reactor
        return self._reactor

    def privilegedStartService(self) -> None:
        """
        Listen while twistd still has the privileges it was started with
        (a port below 1024 with C{--uid}/C{--gid}, as Squid binds before
        dropping root); the rest of the start is L{startService}.
        """
        service.Service.privilegedStartService(self)
        self._listen()

    def startService(self) -> None:
        service.Service.startService(self)
        if self.factory is None:
            # Started without twistd's privileged step (tests, plain use).
            self._listen()
        if self.installSignals:
            self._installSignals()
        if self.trimMemory:
            from proxyapp.memory import MemoryTrimmer

            self._trimmer = MemoryTrimmer(self.reactor)
            self._trimmer.start()

    def _listen(self) -> None:
        """
        Raise the open-file limit, build the factory and listen on every
        description.

        @raise StartFailed: if any of them cannot be listened on.
        """
        from proxyapp.fastio import acceleratePolling
        from proxyapp.protocol import ProxyFactory

        if acceleratePolling(self.reactor):
            log.info(
                "epoll reactor: per-event logging context disabled (proxyapp.fastio)"
            )
        before, after = raiseFileLimit()
        if after > before:
            log.info(
                "open-file limit raised from {before} to {after}",
                before=before,
                after=after,
            )
        else:
            log.info(
                "open-file limit: {limit} (the hard limit allows no more)", limit=after
            )
        settings = self.settings
        chain = FilterChain(self.filters, self.reactor, settings.filterDeadline)
        self.factory = ProxyFactory(
            self.reactor, settings, chain=chain, accessLog=self.accessLog
        )
        if chain.active:
            log.info("filters: {names}", names=", ".join(chain.names()))
        self._startFailures: Optional[list[str]] = []
        for description in self.descriptions:
            endpoint = endpoints.serverFromString(self.reactor, description)
            d = endpoint.listen(self.factory)
            d.addCallbacks(
                self._listening,
                self._listenFailed,
                callbackArgs=(description,),
                errbackArgs=(description,),
            )
        failures, self._startFailures = self._startFailures, None
        if failures:
            # Listening failed at once (as TCP, UNIX and SSL endpoints do):
            # twistd has no exit status of its own to set, so the start
            # itself fails, with one line and status 1 for service managers
            # and scripts.
            for port in self.ports:
                port.stopListening()
            self.ports = []
            if self.accessLog is not None:
                self.accessLog.close()
            raise StartFailed("webproxy: " + "; ".join(failures))

    def _installSignals(self) -> None:
        for number, handler in (
            (signal.SIGHUP, self._onHangup),
            (signal.SIGUSR1, self._onUser1),
        ):
            try:
                self._oldHandlers[number] = signal.signal(number, handler)
            except ValueError:
                # Not the main thread (some test runners): no signals.
                return

    def _onHangup(self, number: int, frame: Any) -> None:
        self.reactor.callFromThread(self.reload)

    def _onUser1(self, number: int, frame: Any) -> None:
        self.reactor.callFromThread(self.reopenLogs)
        # twistd rotates its own log on SIGUSR1 when daemonized: keep that.
        previous = self._oldHandlers.get(signal.SIGUSR1)
        if callable(previous):
            previous(number, frame)

    def _listening(self, port: Any, description: str) -> None:
        self.ports.append(port)
        log.info(
            "webproxy {version} listening on {address} ({description})",
            version=__version__,
            address=port.getHost(),
            description=description,
        )

    _startFailures: Optional[list[str]] = None

    def _listenFailed(self, reason: Any, description: str) -> None:
        message = f"cannot listen on {description}: {reason.getErrorMessage()}"
        if self._startFailures is not None:
            # Said once, by startService's SystemExit.
            self._startFailures.append(message)
        else:
            # A listen that failed later (an endpoint that listens
            # asynchronously): stop.
            log.critical("{message}", message=message)
            self.reactor.callWhenRunning(self._stopReactor)

    def _stopReactor(self) -> None:
        if self.reactor.running:
            self.reactor.stop()

    def reload(self) -> bool:
        """
        Re-read the configuration file and swap settings and filters for new
        requests.  An invalid file is logged and the running configuration
        stays.

        @return: whether the new configuration is now in force.
        """
        from proxyapp.tap import reloadSettings

        if self.options is None:
            log.warn("SIGHUP: no configuration to reload")
            return False
        try:
            settings, filters = reloadSettings(self.options)
        except (ConfigError, SystemExit) as e:
            log.error(
                "reload failed, keeping the running configuration: {error}",
                error=str(e),
            )
            return False
        except Exception:
            log.failure("reload failed, keeping the running configuration")
            return False
        old = self.settings
        if settings.viaGenerated and old.viaGenerated:
            # The default name stays the process's own (a new random tag at
            # each reload would make each one look like another proxy).
            settings.viaPseudonym = old.viaPseudonym
        if (
            settings.listen != old.listen
            or settings.port != old.port
            or settings.interface != old.interface
        ):
            log.warn("reload: listening addresses changed; restart to apply that part")
            # The settings in force keep the addresses listened on, so that
            # a later reload compares with those.
            settings.listen = old.listen
            settings.port = old.port
            settings.interface = old.interface
        if (settings.accessLog, settings.logFormat, settings.colored) != (
            old.accessLog,
            old.logFormat,
            old.colored,
        ):
            from proxyapp.accesslog import openAccessLog

            try:
                accessLog = openAccessLog(
                    settings.accessLog,
                    self.reactor,
                    settings.logFormat,
                    settings.colored,
                )
            except ValueError as e:
                from proxyapp.tap import whereSet

                log.error(
                    "reload failed, keeping the running configuration: {where}: {error}",
                    where=whereSet(self.options, "access-log"),
                    error=str(e),
                )
                return False
            if self.accessLog is not None:
                self.accessLog.close()
            self.accessLog = accessLog
            self.factory.accessLog = accessLog
        chain = FilterChain(filters, self.reactor, settings.filterDeadline)
        self.settings = settings
        self.factory.reconfigure(settings, chain)
        log.info(
            "configuration reloaded; filters: {names}",
            names=", ".join(chain.names()) or "none",
        )
        return True

    def reopenLogs(self) -> None:
        """
        Reopen the access log file (after logrotate moved it).
        """
        if self.accessLog is not None and self.accessLog.reopen():
            log.info("access log reopened")

    def stopService(self) -> defer.Deferred:
        service.Service.stopService(self)
        if self._trimmer is not None:
            self._trimmer.stop()
            self._trimmer = None
        # Our signal handlers stay until the drain is over: a logrotate
        # SIGUSR1 during the drain must reopen the log, not (as the default
        # action would) kill the process and lose the records waiting.
        # A second SIGINT or SIGTERM ends the drain at once (Twisted's own
        # handlers would try to stop the stopping reactor again, which
        # logs a critical traceback and changes nothing).
        if self._oldHandlers:
            for number in (signal.SIGINT, signal.SIGTERM):
                self._oldHandlers.setdefault(
                    number, signal.signal(number, self._onStopAgain)
                )
        d = defer.ensureDeferred(self._drain())
        d.addBoth(self._restoreSignals)
        return d

    _hurried = False

    def _onStopAgain(self, number: int, frame: Any) -> None:
        self.reactor.callFromThread(self.hurry, signal.Signals(number).name)

    def hurry(self, why: str = "asked") -> None:
        """
        End a drain in progress now: close the connections still in flight
        at its next look, as its timeout would.
        """
        if not self._hurried:
            self._hurried = True
            log.warn("{why} during the drain: ending it now", why=why)

    def _restoreSignals(self, result: Any) -> Any:
        for number, handler in self._oldHandlers.items():
            signal.signal(number, handler)
        self._oldHandlers.clear()
        return result

    async def _drain(self) -> None:
        factory = self.factory
        ports, self.ports = self.ports, []
        await defer.gatherResults(
            [defer.maybeDeferred(port.stopListening) for port in ports]
        )
        if factory is None:
            return
        factory.draining = True
        log.info(
            "stopped accepting; draining {busy} connection(s) in flight for up to {timeout:g} s",
            busy=factory.busyConnections(),
            timeout=self.settings.drainTimeout,
        )
        deadline = self.reactor.seconds() + self.settings.drainTimeout
        while True:
            for connection in list(factory.connections):
                connection.closeIfIdle()
            if (
                not factory.connections
                or self._hurried
                or self.reactor.seconds() >= deadline
            ):
                break
            await task.deferLater(self.reactor, 0.05, lambda: None)
        left = len(factory.connections)
        if left:
            log.warn(
                "{why}: closing {left} connection(s) still in flight",
                why="drain ended" if self._hurried else "drain timeout",
                left=left,
            )
            for connection in list(factory.connections):
                connection.transport.abortConnection()
            # abortConnection delivers connectionLost on the next turn; the
            # cut exchanges write their access-log records then.
            await task.deferLater(self.reactor, 0, lambda: None)
        else:
            log.info("drained: every request in flight completed")
        log.info(
            "closing {idle} idle upstream connection(s)", idle=factory.pool.idleCount()
        )
        factory.pool.closeAll()
        factory.stopWatching()
        if self.accessLog is not None:
            self.accessLog.close()
            log.info("access log flushed and closed")
