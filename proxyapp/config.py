# -*- test-case-name: tests.test_config -*-
"""
The proxy's settings as plain values, and the TOML configuration file, with
no Twisted imports.

One registry, L{KEYS}, names every setting once: its C{[section] key} in the
file, its command-line option, its L{Settings} attribute, its type and the
values it allows.  The file loader, the command line (C{proxyapp.tap}) and
the example file's documentation all read it, so they cannot drift apart.
Precedence: built-in defaults, then the file, then the command line.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional

from proxyapp.message import isToken


class ConfigError(ValueError):
    """
    A setting is unknown, of the wrong type or impossible.  The message is
    one line naming where (file and key, or option) and what was expected.
    """


class PortSet:
    """
    The ports CONNECT may reach: single ports, C{LOW-HIGH} ranges, or C{*}.
    """

    __slots__ = ("_singles", "_ranges", "_any", "_specs")

    def __init__(self, specs: Iterable[str | int] = ("443",)) -> None:
        self._singles: set[int] = set()
        self._ranges: list[tuple[int, int]] = []
        self._any = False
        self._specs: list[str] = []
        for spec in specs:
            self.add(spec)

    def add(self, spec: str | int) -> None:
        """
        Allow one more port, range or C{*}.

        @raise ValueError: naming the malformed specification.
        """
        text = str(spec).strip()
        if text == "*":
            self._any = True
            self._specs.append(text)
            return
        low, dash, high = text.partition("-")
        try:
            first = int(low)
            last = int(high) if dash else first
        except ValueError:
            raise ValueError(f"{text!r} is not a port, a LOW-HIGH range or *")
        if not (0 < first <= last < 65536):
            raise ValueError(f"{text!r} is not within 1-65535 (low before high)")
        self._specs.append(text)
        if first == last:
            self._singles.add(first)
        else:
            self._ranges.append((first, last))

    def __contains__(self, port: int) -> bool:
        if self._any or port in self._singles:
            return True
        for low, high in self._ranges:
            if low <= port <= high:
                return True
        return False

    def __repr__(self) -> str:
        return f"PortSet({self._specs!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PortSet) and self._specs == other._specs

    def describe(self) -> str:
        """
        @return: the specifications as given, for messages.
        """
        return ", ".join(self._specs)


@dataclass
class Settings:
    """
    Everything that configures a running proxy.

    Sizes are in bytes and times in seconds.  C{maxBodyBytes} of 0 means
    unlimited.  C{filterTables} maps a filter name to its C{[filter.NAME]}
    table.
    """

    port: int = 8080
    interface: str = "127.0.0.1"
    listen: list[str] = field(default_factory=list)
    drainTimeout: float = 10.0
    viaPseudonym: str = ""
    connectPorts: PortSet = field(default_factory=PortSet)
    maxRequestLine: int = 8192
    maxHeaderBytes: int = 65536
    maxHeaders: int = 100
    maxBodyBytes: int = 0
    connectTimeout: float = 10.0
    headerTimeout: float = 30.0
    idleTimeout: float = 120.0
    upstreamTimeout: float = 120.0
    readTimeout: float = 900.0
    poolSize: int = 64
    poolTotalSize: int = 1024
    poolIdleTimeout: float = 30.0
    accessLog: str = "-"
    logFormat: str = "combined"
    colored: str = "auto"
    allowedClients: Optional[list[str]] = None
    blockedDomains: list[str] = field(default_factory=list)
    blockedDomainsFiles: list[str] = field(default_factory=list)
    htpasswd: Optional[str] = None
    authRealm: str = "webproxy"
    authFailureDelay: float = 1.0
    upstreamCaFile: Optional[str] = None
    # The certificates read from upstreamCaFile (by tap.loadSettings).
    upstreamAuthorities: tuple[Any, ...] = ()
    filters: list[str] = field(default_factory=list)
    filterDeadline: float = 5.0
    filterTables: dict[str, dict[str, Any]] = field(default_factory=dict)
    configFile: Optional[str] = None
    listenOnPort: bool = True
    # Whether viaPseudonym is the default made at start (host name and a
    # random tag), not set by the file or the command line.
    viaGenerated: bool = False


# -- value checks: each returns None when fine, else what was expected --------


def _int(
    low: int, high: Optional[int] = None, what: str = "an integer"
) -> Callable[[Any], Optional[str]]:
    def check(value: Any) -> Optional[str]:
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or value < low
            or (high is not None and value > high)
        ):
            return what
        return None

    return check


def finite(value: int | float) -> bool:
    """
    @return: whether C{value} is a finite number a float can hold (TOML
        and the command line allow C{nan}, C{inf} and integers too large
        for a float).
    """
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _number(low: float, strict: bool, what: str) -> Callable[[Any], Optional[str]]:
    def check(value: Any) -> Optional[str]:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return what
        if not finite(value) or value < low or (strict and value == low):
            return what
        return None

    return check


def _choice(*choices: str) -> Callable[[Any], Optional[str]]:
    what = "one of " + ", ".join(f'"{c}"' for c in choices)

    def check(value: Any) -> Optional[str]:
        return None if value in choices else what

    return check


def _string(value: Any) -> Optional[str]:
    return None if isinstance(value, str) and value else "a non-empty string"


def _strings(value: Any) -> Optional[str]:
    if isinstance(value, list) and all(isinstance(v, str) and v for v in value):
        return None
    return "a list of non-empty strings"


def _pseudonym(value: Any) -> Optional[str]:
    # RFC 9110 section 7.6.3: a Via received-by pseudonym is a token.
    if isinstance(value, str) and value.isascii() and isToken(value.encode("ascii")):
        return None
    return "one token of ASCII letters, digits and !#$%&'*+-.^_`|~"


def _ports(value: Any) -> Optional[str]:
    what = 'a list of ports, "LOW-HIGH" ranges or "*"'
    if not isinstance(value, list) or not value:
        return what
    try:
        PortSet([v for v in value if not isinstance(v, bool)])
    except ValueError:
        return what
    return (
        None
        if all(isinstance(v, (int, str)) and not isinstance(v, bool) for v in value)
        else what
    )


@dataclass(frozen=True)
class Key:
    """
    One setting: where it lives in the file, its option, its attribute.

    @ivar option: the command-line option name, or C{None} (file only).
    @ivar parse: turns an option's text into a value (C{int}, C{float},
        C{str}).
    @ivar check: returns C{None} for a valid value, else what is expected.
    """

    section: str
    key: str
    attr: str
    check: Callable[[Any], Optional[str]]
    option: Optional[str] = None
    parse: Callable[[str], Any] = str
    help: str = ""


_POSITIVE_INT = _int(1, None, "a positive integer")
_POSITIVE = _number(0, True, "a positive number of seconds")
_NON_NEGATIVE = _number(0, False, "a number of seconds, 0 or more")

KEYS = [
    Key(
        "server",
        "port",
        "port",
        _int(0, 65535, "a port number 0-65535"),
        "port",
        int,
        "TCP port to listen on, on --interface.",
    ),
    Key(
        "server",
        "interface",
        "interface",
        _string,
        "interface",
        str,
        "Address to listen on for --port.",
    ),
    Key(
        "server",
        "listen",
        "listen",
        _strings,
        None,
        str,
        "Twisted endpoint descriptions to listen on.",
    ),
    Key(
        "server",
        "drain_timeout",
        "drainTimeout",
        _NON_NEGATIVE,
        "drain-timeout",
        float,
        "Seconds to let requests in flight finish on SIGTERM/SIGINT.",
    ),
    Key(
        "server",
        "via_pseudonym",
        "viaPseudonym",
        _pseudonym,
        "via-pseudonym",
        str,
        "The name this proxy gives itself in Via (default: host name plus a random tag).",
    ),
    Key(
        "limits",
        "max_request_line",
        "maxRequestLine",
        _POSITIVE_INT,
        "max-request-line",
        int,
        "Longest request line accepted (else 414).",
    ),
    Key(
        "limits",
        "max_header_bytes",
        "maxHeaderBytes",
        _POSITIVE_INT,
        "max-header-bytes",
        int,
        "Largest header (or trailer) section accepted: a request's (else 431) or a response's (else 502).",
    ),
    Key(
        "limits",
        "max_headers",
        "maxHeaders",
        _POSITIVE_INT,
        "max-headers",
        int,
        "Most header (or trailer) fields accepted: in a request (else 431) or a response (else 502).",
    ),
    Key(
        "limits",
        "max_body_bytes",
        "maxBodyBytes",
        _int(0, None, "an integer, 0 (unlimited) or more"),
        "max-body-bytes",
        int,
        "Largest request body accepted, 0 for unlimited (else 413).",
    ),
    Key(
        "timeouts",
        "connect",
        "connectTimeout",
        _POSITIVE,
        "connect-timeout",
        float,
        "Seconds to connect to an upstream, name lookup and TLS handshake included (else 504).",
    ),
    Key(
        "timeouts",
        "header",
        "headerTimeout",
        _POSITIVE,
        "header-timeout",
        float,
        "Seconds a client has to send a request head (else 408 and closed).",
    ),
    Key(
        "timeouts",
        "idle",
        "idleTimeout",
        _POSITIVE,
        "idle-timeout",
        float,
        "Seconds an idle keep-alive client connection is kept.",
    ),
    Key(
        "timeouts",
        "upstream",
        "upstreamTimeout",
        _POSITIVE,
        "upstream-timeout",
        float,
        "Seconds to wait for an upstream's response head (else 504).",
    ),
    Key(
        "timeouts",
        "read",
        "readTimeout",
        _POSITIVE,
        "read-timeout",
        float,
        "Seconds a request body, response body or tunnel may go without a byte "
        "moving either way (then it is cut off; a stalled request body gets 408, "
        "or 504 when the upstream stopped reading it).",
    ),
    Key(
        "pool",
        "size",
        "poolSize",
        _int(0, None, "an integer, 0 or more"),
        "pool-size",
        int,
        "Idle upstream connections kept per origin.",
    ),
    Key(
        "pool",
        "total_size",
        "poolTotalSize",
        _int(0, None, "an integer, 0 or more"),
        "pool-total-size",
        int,
        "Idle upstream connections kept across all origins (a client naming many "
        "origins cannot make the proxy hold a descriptor for each).",
    ),
    Key(
        "pool",
        "idle_timeout",
        "poolIdleTimeout",
        _POSITIVE,
        "pool-idle-timeout",
        float,
        "Seconds an idle upstream connection is kept.",
    ),
    Key(
        "access",
        "allowed_clients",
        "allowedClients",
        _strings,
        None,
        str,
        "Client address patterns allowed to use the proxy.",
    ),
    Key(
        "access",
        "blocked_domains",
        "blockedDomains",
        _strings,
        None,
        str,
        "Domains refused with 403 (with their subdomains).",
    ),
    Key(
        "access",
        "blocked_domains_files",
        "blockedDomainsFiles",
        _strings,
        None,
        str,
        "Files of blocked domains (plain or hosts format).",
    ),
    Key(
        "access",
        "connect_ports",
        "connectPorts",
        _ports,
        None,
        str,
        "Ports CONNECT may reach.",
    ),
    Key(
        "auth",
        "htpasswd",
        "htpasswd",
        _string,
        "htpasswd",
        str,
        "htpasswd file enabling Basic proxy authentication.",
    ),
    Key(
        "auth",
        "realm",
        "authRealm",
        _string,
        "auth-realm",
        str,
        "Realm named in Proxy-Authenticate.",
    ),
    Key(
        "auth",
        "failure_delay",
        "authFailureDelay",
        _NON_NEGATIVE,
        None,
        float,
        "Seconds added per recent failure before answering 407.",
    ),
    Key(
        "log",
        "access_log",
        "accessLog",
        _string,
        "access-log",
        str,
        "Access log: '-' for standard output, a file path, or 'off'.",
    ),
    Key(
        "log",
        "format",
        "logFormat",
        _choice("combined", "squid", "json"),
        "log-format",
        str,
        "Access log format: combined, squid or json.",
    ),
    Key(
        "log",
        "colored",
        "colored",
        _choice("auto", "always", "never"),
        "colored",
        str,
        "Colour console output: auto, always or never.",
    ),
    Key(
        "filters",
        "enabled",
        "filters",
        _strings,
        None,
        str,
        "Filter names to run, in order.",
    ),
    Key(
        "tls",
        "upstream_ca_file",
        "upstreamCaFile",
        _string,
        "upstream-ca-file",
        str,
        "PEM file of certificate authorities trusted for https origins,"
        " besides the system's.",
    ),
    Key(
        "filters",
        "deadline",
        "filterDeadline",
        _POSITIVE,
        "filter-deadline",
        float,
        "Seconds a filter's asynchronous answer may take.",
    ),
]

KEYS_BY_OPTION = {k.option: k for k in KEYS if k.option}
_KEYS_BY_PLACE = {(k.section, k.key): k for k in KEYS}
SECTIONS = sorted({k.section for k in KEYS} | {"filter"})


def checkValue(key: Key, value: Any, where: str) -> Any:
    """
    Check one value for C{key}.

    @param where: how to name the place in a message (file and key, or
        the option).
    @return: the value, converted where the setting needs it.
    @raise ConfigError: naming the place and what was expected.
    """
    expected = key.check(value)
    if expected is not None:
        raise ConfigError(f"{where}: expected {expected}, got {value!r}")
    if key.attr == "connectPorts":
        return PortSet(value)
    if isinstance(value, int) and key.parse is float:
        return float(value)
    return value


def readConfigFile(path: str) -> dict[str, Any]:
    """
    Read and check a TOML configuration file.

    @return: L{Settings} attribute names to values, for the keys the file
        sets (plus C{filterTables}).
    @raise ConfigError: one line naming the file, the key and what was
        expected.
    """
    try:
        with open(path, "rb") as f:
            document = tomllib.load(f)
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the configuration file: {e.strerror}")
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}")
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"{path}: not valid TOML: byte 0x{e.object[e.start]:02x} at offset "
            f"{e.start} is not UTF-8 (TOML files are UTF-8)"
        )
    except RecursionError:
        raise ConfigError(f"{path}: not valid TOML: arrays or tables nested too deeply")
    values: dict[str, Any] = {}
    for section, table in document.items():
        if section not in SECTIONS:
            raise ConfigError(
                f"{path}: unknown section [{section}]; expected one of "
                + ", ".join(f"[{s}]" for s in SECTIONS)
            )
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: {section} must be a table ([{section}])")
        if section == "filter":
            tables = {}
            for name, filterTable in table.items():
                if not isinstance(filterTable, dict):
                    raise ConfigError(
                        f"{path}: filter.{name} must be a table ([filter.{name}])"
                    )
                tables[name] = filterTable
            values["filterTables"] = tables
            continue
        for name, value in table.items():
            key = _KEYS_BY_PLACE.get((section, name))
            if key is None:
                known = ", ".join(k.key for k in KEYS if k.section == section)
                raise ConfigError(
                    f"{path}: unknown key [{section}] {name}; expected one of {known}"
                )
            values[key.attr] = checkValue(key, value, f"{path}: [{section}] {name}")
    return values


def exampleKeys() -> list[Key]:
    """
    @return: every key, for documentation and the example file's test.
    """
    return list(KEYS)
