# -*- test-case-name: tests.test_tap -*-
"""
The one way a running proxy gets built: command-line L{Options} and
L{makeService}, used by the C{twistd webproxy} plugin and by C{proxy.tac}.
"""

from __future__ import annotations

import resource
import socket
import secrets
import sys
from typing import Any, Optional

from twisted.application import service
from twisted.internet import defer, endpoints, task
from twisted.logger import Logger
from twisted.python import usage

from proxyapp import __version__
from proxyapp.config import PortSet, Settings

log = Logger()

# (option name, Settings attribute, coerce, help).  The option defaults are
# None so that, once a configuration file is read, we can tell an option the
# user gave from one left at its default; the real defaults live in
# L{Settings}.
_VALUE_OPTIONS = [
    ("port", "p", "port", int, "TCP port to listen on, on --interface."),
    ("interface", "i", "interface", str, "Address to listen on for --port."),
    ("max-request-line", None, "maxRequestLine", int, "Longest request line accepted (else 414)."),
    ("max-header-bytes", None, "maxHeaderBytes", int, "Largest request header section accepted (else 431)."),
    ("max-headers", None, "maxHeaders", int, "Most header fields in a request (else 431)."),
    ("max-body-bytes", None, "maxBodyBytes", int, "Largest request body accepted, 0 for unlimited (else 413)."),
    ("connect-timeout", None, "connectTimeout", float, "Seconds to connect to an upstream (else 504)."),
    ("header-timeout", None, "headerTimeout", float, "Seconds a client has to send a request head (else the connection is closed)."),
    ("idle-timeout", None, "idleTimeout", float, "Seconds an idle keep-alive client connection is kept."),
    ("upstream-timeout", None, "upstreamTimeout", float, "Seconds to wait for an upstream's response head (else 504)."),
    ("pool-size", None, "poolSize", int, "Idle upstream connections kept per origin."),
    ("pool-idle-timeout", None, "poolIdleTimeout", float, "Seconds an idle upstream connection is kept."),
    ("drain-timeout", None, "drainTimeout", float, "Seconds to let requests in flight finish on SIGTERM/SIGINT."),
    ("via-pseudonym", None, "viaPseudonym", str, "The name this proxy gives itself in Via (default: host name plus a random tag)."),
    ("access-log", None, "accessLog", str, "Access log: '-' for standard output, a file path, or 'off'."),
    ("log-format", None, "logFormat", str, "Access log format: combined, squid or json."),
    ("colored", None, "colored", str, "Colour console output: auto, always or never."),
]

_POSITIVE = {
    "maxRequestLine", "maxHeaderBytes", "maxHeaders", "connectTimeout", "headerTimeout",
    "idleTimeout", "upstreamTimeout", "poolIdleTimeout",
}
_NON_NEGATIVE = {"maxBodyBytes", "poolSize", "drainTimeout", "port"}


def _coerce(kind: type) -> Any:
    def coerce(value: str) -> Any:
        try:
            return kind(value)
        except ValueError:
            raise ValueError(f"{value!r} is not {'an integer' if kind is int else 'a number' if kind is float else 'valid'}")

    coerce.coerceDoc = ""  # type: ignore[attr-defined]
    return coerce


class Options(usage.Options):
    """
    C{twistd webproxy} options.  Repeatable options (C{--listen},
    C{--connect-port}) accumulate in order.
    """

    synopsis = "[options]"
    longdesc = (
        "A strict, streaming HTTP/1.1 forward proxy with CONNECT tunnelling. "
        "Point clients at it with e.g. curl -x http://127.0.0.1:8080."
    )
    optParameters = [
        [name, short, None, f"{text} [default: {getattr(Settings(), attr)}]", _coerce(kind)]
        for name, short, attr, kind, text in _VALUE_OPTIONS
    ]

    def __init__(self) -> None:
        usage.Options.__init__(self)
        self["listen"] = []
        self["connect-ports"] = []

    def opt_listen(self, description: str) -> None:
        """
        Listen on a Twisted endpoint, e.g. tcp:8080:interface=0.0.0.0,
        tcp6:8080:interface=\\:\\:1 or unix:/run/webproxy.sock
        (repeatable).
        """
        self["listen"].append(description)

    def opt_connect_port(self, spec: str) -> None:
        """
        A port CONNECT may reach: PORT, LOW-HIGH or * (repeatable;
        default 443 only).
        """
        try:
            PortSet([spec])
        except ValueError as e:
            raise usage.UsageError(f"--connect-port: {e}")
        self["connect-ports"].append(spec)

    def opt_version(self) -> None:
        """
        Print the version and exit.
        """
        print(f"webproxy {__version__}")
        sys.exit(0)

    def postOptions(self) -> None:
        self["settings"] = settingsFromOptions(self)


def settingsFromOptions(options: Options) -> Settings:
    """
    Build L{Settings} from parsed options over the defaults.

    @raise usage.UsageError: naming the option and what it expects.
    """
    settings = Settings()
    for name, _, attr, _, _ in _VALUE_OPTIONS:
        value = options[name]
        if value is not None:
            setattr(settings, attr, value)
    settings.listen = list(options["listen"])
    if options["connect-ports"]:
        settings.connectPorts = PortSet(options["connect-ports"])
    for name, _, attr, _, _ in _VALUE_OPTIONS:
        value = getattr(settings, attr)
        if attr in _POSITIVE and not value > 0:
            raise usage.UsageError(f"--{name} must be greater than 0, not {value!r}")
        if attr in _NON_NEGATIVE and value < 0:
            raise usage.UsageError(f"--{name} must not be negative, not {value!r}")
    if settings.port > 65535:
        raise usage.UsageError(f"--port must be 0-65535, not {settings.port}")
    if settings.logFormat not in ("combined", "squid", "json"):
        raise usage.UsageError(f"--log-format must be combined, squid or json, not {settings.logFormat!r}")
    if settings.colored not in ("auto", "always", "never"):
        raise usage.UsageError(f"--colored must be auto, always or never, not {settings.colored!r}")
    if options["via-pseudonym"] is None:
        settings.viaPseudonym = f"{socket.gethostname() or 'webproxy'}-{secrets.token_hex(3)}"
    elif not settings.viaPseudonym or any(c in settings.viaPseudonym for c in " ,\t()"):
        raise usage.UsageError("--via-pseudonym must be one token without spaces, commas or parentheses")
    for description in settings.listen:
        if ":" not in description:
            raise usage.UsageError(f"--listen {description!r} is not an endpoint description such as tcp:8080")
    return settings


def listenDescriptions(settings: Settings, portGiven: bool) -> list[str]:
    """
    @return: the endpoint descriptions to listen on: C{--port} on
        C{--interface} (unless only C{--listen} was given), then every
        C{--listen}.
    """
    descriptions = []
    if portGiven or not settings.listen:
        interface = settings.interface.replace(":", "\\:")
        descriptions.append(f"tcp:{settings.port}:interface={interface}")
    descriptions.extend(settings.listen)
    return descriptions


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


class ProxyService(service.Service):
    """
    Listens on every configured endpoint and, on stop, drains: stop
    accepting at once, let exchanges and tunnels in flight finish for up
    to C{drainTimeout} seconds, then close what is left.
    """

    def __init__(self, settings: Settings, descriptions: list[str], reactor: Any = None, accessLog: Any = None, chain: Any = None) -> None:
        self.settings = settings
        self.descriptions = descriptions
        self._reactor = reactor
        self.accessLog = accessLog
        self.chain = chain
        self.factory: Any = None
        self.ports: list[Any] = []

    @property
    def reactor(self) -> Any:
        if self._reactor is None:
            from twisted.internet import reactor

            self._reactor = reactor
        return self._reactor

    def startService(self) -> None:
        from proxyapp.protocol import ProxyFactory

        service.Service.startService(self)
        before, after = raiseFileLimit()
        log.info("open-file limit: {before} -> {after}", before=before, after=after)
        self.factory = ProxyFactory(self.reactor, self.settings, chain=self.chain, accessLog=self.accessLog)
        for description in self.descriptions:
            endpoint = endpoints.serverFromString(self.reactor, description)
            d = endpoint.listen(self.factory)
            d.addCallbacks(self._listening, self._listenFailed, callbackArgs=(description,), errbackArgs=(description,))

    def _listening(self, port: Any, description: str) -> None:
        self.ports.append(port)
        log.info("webproxy {version} listening on {address} ({description})", version=__version__, address=port.getHost(), description=description)

    def _listenFailed(self, reason: Any, description: str) -> None:
        log.critical("cannot listen on {description}: {error}", description=description, error=reason.getErrorMessage())
        self.reactor.callWhenRunning(self._stopReactor)

    def _stopReactor(self) -> None:
        if self.reactor.running:
            self.reactor.stop()

    def stopService(self) -> defer.Deferred:
        service.Service.stopService(self)
        return defer.ensureDeferred(self._drain())

    async def _drain(self) -> None:
        factory = self.factory
        ports, self.ports = self.ports, []
        await defer.gatherResults([defer.maybeDeferred(port.stopListening) for port in ports])
        if factory is None:
            return
        factory.draining = True
        busy = factory.busyConnections()
        log.info("stopped accepting; draining {busy} connection(s) in flight for up to {timeout:g} s", busy=busy, timeout=self.settings.drainTimeout)
        for connection in list(factory.connections):
            connection.closeIfIdle()
        deadline = self.reactor.seconds() + self.settings.drainTimeout
        while factory.connections and self.reactor.seconds() < deadline:
            await task.deferLater(self.reactor, 0.05, lambda: None)
            for connection in list(factory.connections):
                if not connection.busy():
                    connection.closeIfIdle()
        left = len(factory.connections)
        if left:
            log.warn("drain timeout: closing {left} connection(s) still in flight", left=left)
            for connection in list(factory.connections):
                connection.transport.abortConnection()
        else:
            log.info("drained: every request in flight completed")
        factory.pool.closeAll()
        if self.accessLog is not None:
            self.accessLog.close()


def makeService(options: Options, reactor: Any = None) -> service.MultiService:
    """
    Build the proxy service from parsed options: the single construction
    path for C{twistd webproxy}, C{proxy.tac} and the tests.
    """
    settings: Settings = options["settings"]
    top = service.MultiService()
    top.setName("webproxy")
    descriptions = listenDescriptions(settings, options["port"] is not None)
    proxy = ProxyService(settings, descriptions, reactor)
    proxy.setName("proxy")
    proxy.setServiceParent(top)
    return top
