# -*- test-case-name: tests.test_tap -*-
"""
The one way a running proxy gets built: command-line L{Options} and
L{makeService}, used by the C{twistd webproxy} plugin and by C{proxy.tac}.

Settings come from three layers, each overriding the one before: the
defaults in L{proxyapp.config.Settings}, the TOML file named by C{--config},
and the command line.  L{loadSettings} applies them and is run again on
SIGHUP, so a reload sees the same command-line overrides.
"""

from __future__ import annotations

import os
import secrets
import socket
import sys
from typing import Any, Optional

from twisted.application import service
from twisted.python import usage

from proxyapp import __version__
from proxyapp.config import (
    KEYS,
    KEYS_BY_OPTION,
    ConfigError,
    PortSet,
    Settings,
    checkValue,
    readConfigFile,
)


def _coerce(kind: Any, option: str) -> Any:
    def coerce(value: str) -> Any:
        try:
            return kind(value)
        except ValueError:
            raise ValueError(
                f"--{option}: {value!r} is not {'an integer' if kind is int else 'a number'}"
            )

    coerce.coerceDoc = ""  # type: ignore[attr-defined]
    return coerce


def _defaultText(value: object) -> str:
    """
    @return: how C{--help} shows a setting's default: C{none} when unset,
        the help text's own words when it is computed at start (an empty
        string, as the Via pseudonym).
    """
    if value is None:
        return "none"
    if value == "":
        return "(see above)"
    return str(value)


class Options(usage.Options):
    """
    C{twistd webproxy} options.  Repeatable options (C{--listen},
    C{--connect-port}, C{--filter}) accumulate in order.
    """

    synopsis = "[options]"
    longdesc = (
        "A strict, streaming HTTP/1.1 forward proxy with CONNECT tunnelling. "
        "Point clients at it with e.g. curl -x http://127.0.0.1:8080. "
        "Every option has a key in the --config file; the command line wins."
    )
    optFlags = [
        [
            "list-filters",
            None,
            "List the discovered filters with their descriptions and origin modules, then exit.",
        ],
    ]
    optParameters = [
        ["config", "c", None, "A TOML configuration file (see webproxy.example.toml)."],
    ] + [
        [
            key.option,
            "p" if key.option == "port" else "i" if key.option == "interface" else None,
            None,
            f"{key.help} [default: {_defaultText(getattr(Settings(), key.attr))}]",
            _coerce(key.parse, key.option) if key.parse is not str else None,
        ]
        for key in KEYS
        if key.option
    ]

    def __init__(self) -> None:
        usage.Options.__init__(self)
        self["listen"] = []
        self["connect-ports"] = []
        self["filters"] = []

    def opt_listen(self, description: str) -> None:
        """
        Listen on a Twisted endpoint, e.g. tcp:8080:interface=0.0.0.0,
        tcp6:8080:interface=\\:\\:1 or unix:/run/webproxy.sock
        (repeatable).
        """
        try:
            checkEndpoint(description, "--listen")
        except ConfigError as e:
            raise usage.UsageError(str(e))
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

    def opt_filter(self, name: str) -> None:
        """
        Enable a filter by name (repeatable; order is run order; replaces
        [filters] enabled from the file).
        """
        self["filters"].append(name)

    def opt_version(self) -> None:
        """
        Print the version and exit.
        """
        print(f"webproxy {__version__}")
        sys.exit(0)

    def postOptions(self) -> None:
        if self["list-filters"]:
            from proxyapp.discovery import describeFilters, findFilterFactories

            print(describeFilters(findFilterFactories()))
            sys.exit(0)
        # Relative paths are the start directory's, also at a reload after
        # twistd has changed to --rundir.
        self.startDirectory = os.getcwd()
        try:
            settings = loadSettings(self)
            from proxyapp.filters import buildChainFilters

            self["built-filters"] = buildChainFilters(settings)
        except ConfigError as e:
            # A bad file is not a usage mistake: say what is wrong in one
            # line, without the whole usage text.
            raise SystemExit(f"webproxy: {e}")
        self["settings"] = settings


# usage.Options shows an opt_ method's docstring as --help text, keeping
# the indentation of its continuation lines: make each one line.
for _name in dir(Options):
    if _name.startswith("opt_"):
        _method = getattr(Options, _name)
        if _method.__doc__:
            _method.__doc__ = " ".join(_method.__doc__.split())
del _name, _method


def loadSettings(options: Options) -> Settings:
    """
    Apply defaults, then the configuration file, then the command line.

    @raise ConfigError: for a bad file or a bad option value (one line).
    """
    settings = Settings()
    path = options["config"]
    # Where relative paths lead: twistd's --rundir changes the directory
    # after the start, and a reload still means the start's.
    start: Optional[str] = getattr(options, "startDirectory", None)
    fileValues: dict[str, Any] = {}
    if path == "":
        raise ConfigError("--config: an empty path names no file")
    if path is not None:
        settings.configFile = path
        fileValues = readConfigFile(os.path.join(start, path) if start else path)
        for attr, value in fileValues.items():
            setattr(settings, attr, value)
    for option, key in KEYS_BY_OPTION.items():
        value = options[option]
        if value is not None:
            try:
                setattr(settings, key.attr, checkValue(key, value, f"--{option}"))
            except ConfigError as e:
                raise usage.UsageError(str(e))
    if options["listen"]:
        settings.listen = list(options["listen"])
    if options["connect-ports"]:
        settings.connectPorts = PortSet(options["connect-ports"])
    if options["filters"]:
        settings.filters = list(options["filters"])
    # With only --listen endpoints, don't also listen on the default port.
    settings.listenOnPort = (
        options["port"] is not None or "port" in fileValues or not settings.listen
    )
    if start:
        # Made absolute now: the password file is also read again while
        # the proxy runs, in whatever directory it runs.
        if settings.htpasswd is not None:
            settings.htpasswd = os.path.join(start, settings.htpasswd)
        authTable = settings.filterTables.get("auth")
        if authTable is not None and isinstance(authTable.get("htpasswd"), str):
            authTable["htpasswd"] = os.path.join(start, authTable["htpasswd"])
        settings.blockedDomainsFiles = [
            os.path.join(start, name) for name in settings.blockedDomainsFiles
        ]
        if settings.upstreamCaFile is not None:
            settings.upstreamCaFile = os.path.join(start, settings.upstreamCaFile)
        if settings.accessLog not in ("-", "off"):
            settings.accessLog = os.path.join(start, settings.accessLog)
    if settings.upstreamCaFile is not None:
        # Read now, so that a bad file stops the start (or a reload) with a
        # line naming the setting rather than failing every https request.
        from proxyapp.tls import readAuthorities

        try:
            settings.upstreamAuthorities = readAuthorities(settings.upstreamCaFile)
        except ValueError as e:
            raise ConfigError(f"{whereSet(options, 'upstream-ca-file')}: {e}")
    if not settings.viaPseudonym:
        # Unique per process, so that a loop through several proxies on
        # one host is still recognised by its Via entry.
        settings.viaPseudonym = (
            f"{socket.gethostname() or 'webproxy'}-{secrets.token_hex(3)}"
        )
        settings.viaGenerated = True
    where = "--listen" if options["listen"] else f"{path}: [server] listen"
    for description in settings.listen:
        checkEndpoint(description, where)
    if settings.listenOnPort:
        try:
            checkEndpoint(listenDescriptions(settings)[0], "")
        except ConfigError:
            message = (
                f"{whereSet(options, 'interface')}: {settings.interface!r}"
                " is not an address to listen on"
            )
            if options["interface"] is not None:
                raise usage.UsageError(message)
            raise ConfigError(message)
    return settings


def whereSet(options: Options, option: str) -> str:
    """
    @return: how a message names where the setting of C{option} came from:
        the option, or the configuration file and its key (the default's
        key if no file set it).
    """
    if options[option] is not None:
        return f"--{option}"
    key = KEYS_BY_OPTION[option]
    place = f"[{key.section}] {key.key}"
    path = options["config"]
    return f"{path}: {place}" if path is not None else place


def checkEndpoint(description: str, where: str) -> None:
    """
    Parse an endpoint description without listening, so a bad one stops
    the start with one line instead of a traceback from C{startService}.

    @raise ConfigError: naming C{where} and the description.
    """
    from twisted.internet import endpoints
    from twisted.internet.testing import MemoryReactor

    reactor = MemoryReactor()
    try:
        endpoint = endpoints.serverFromString(reactor, description)
        if isinstance(endpoint, endpoints.SSL4ServerEndpoint):
            # The TLS context is made at the first handshake, and with it
            # the dhParameters file is read: a missing one would fail
            # every client, with a traceback each.  Make it now.
            endpoint.listen(None)  # type: ignore[arg-type]
            reactor.sslServers[0][2].getContext()
    except Exception as e:
        # ValueError and friends for bad syntax, OSError for a missing
        # certificate file (ssl:), RuntimeError for a dangling backslash,
        # OpenSSL's error for a missing DH parameters file: whatever an
        # endpoint parser raises means the same to the user.
        raise ConfigError(
            f"{where}: {description!r} is not a valid endpoint description such as tcp:8080 ({e})"
        )


def listenDescriptions(settings: Settings) -> list[str]:
    """
    @return: the endpoint descriptions to listen on: C{--port} on
        C{--interface} (unless only C{--listen} endpoints were given and no
        port), then every C{--listen}.
    """
    descriptions = []
    if settings.listenOnPort:
        interface = settings.interface.replace(":", "\\:")
        descriptions.append(f"tcp:{settings.port}:interface={interface}")
    descriptions.extend(settings.listen)
    return descriptions


class WebProxyService(service.MultiService):
    """
    The top-level service.  When attached to twistd's Application it also
    hands over the coloured console log observer (a service maker never
    sees the Application otherwise).

    @ivar consoleObserver: the observer to install, or C{None}.
    """

    consoleObserver: Any = None

    def setServiceParent(self, parent: Any) -> Any:
        from twisted.logger import ILogObserver
        from twisted.python.components import Componentized

        if (
            self.consoleObserver is not None
            and isinstance(parent, Componentized)
            and parent.getComponent(ILogObserver) is None
        ):
            parent.setComponent(ILogObserver, self.consoleObserver)
        return service.MultiService.setServiceParent(self, parent)


def makeService(options: Options, reactor: Any = None) -> service.MultiService:
    """
    Build the proxy service from parsed options: the single construction
    path for C{twistd webproxy}, C{proxy.tac} and the tests.
    """
    from proxyapp.accesslog import openAccessLog
    from proxyapp.console import consoleObserverWanted, makeConsoleObserver
    from proxyapp.service import ProxyService

    settings: Settings = options["settings"]
    top = WebProxyService()
    top.setName("webproxy")
    twistdConfig = getattr(options, "parent", None)
    if twistdConfig is not None and consoleObserverWanted(twistdConfig):
        top.consoleObserver = makeConsoleObserver(sys.stdout, settings.colored)
    if reactor is None:
        from twisted.internet import reactor as globalReactor

        reactor = globalReactor
    # Opened here, before twistd drops privileges, so a bad path stops the
    # start with one line.
    try:
        accessLog = openAccessLog(
            settings.accessLog, reactor, settings.logFormat, settings.colored
        )
    except ValueError as e:
        raise SystemExit(f"webproxy: {whereSet(options, 'access-log')}: {e}")
    descriptions = listenDescriptions(settings)
    proxy = ProxyService(
        settings,
        descriptions,
        reactor,
        options=options,
        filters=options.get("built-filters"),
        accessLog=accessLog,
    )
    proxy.setName("proxy")
    proxy.setServiceParent(top)
    return top


def reloadSettings(options: Options) -> tuple[Settings, Any]:
    """
    Read the configuration again (SIGHUP) with the same command line.

    @return: the new settings and their built filters.
    @raise ConfigError: if the file is now invalid.
    """
    from proxyapp.filters import buildChainFilters

    settings = loadSettings(options)
    return settings, buildChainFilters(settings)


__all__ = [
    "Options",
    "makeService",
    "loadSettings",
    "listenDescriptions",
    "reloadSettings",
]
