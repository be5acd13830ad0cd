# -*- test-case-name: tests.test_config -*-
"""
The proxy's settings as plain values, with no Twisted imports.

L{Settings} is what C{tap.makeService} builds from the command line (and
the configuration file) and what the protocol reads its limits and
timeouts from.  Every setting has a safe default.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable


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
        self._specs.append(text)
        if text == "*":
            self._any = True
            return
        low, dash, high = text.partition("-")
        try:
            first = int(low)
            last = int(high) if dash else first
        except ValueError:
            raise ValueError(f"{text!r} is not a port, a LOW-HIGH range or *")
        if not (0 < first <= last < 65536):
            raise ValueError(f"{text!r} is not within 1-65535 (low before high)")
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
    unlimited.
    """

    port: int = 8080
    interface: str = "127.0.0.1"
    listen: list[str] = field(default_factory=list)
    connectPorts: PortSet = field(default_factory=PortSet)
    maxRequestLine: int = 8192
    maxHeaderBytes: int = 65536
    maxHeaders: int = 100
    maxBodyBytes: int = 0
    connectTimeout: float = 10.0
    headerTimeout: float = 30.0
    idleTimeout: float = 120.0
    upstreamTimeout: float = 120.0
    poolSize: int = 64
    poolIdleTimeout: float = 30.0
    drainTimeout: float = 10.0
    viaPseudonym: str = "webproxy"
    accessLog: str = "-"
    logFormat: str = "combined"
    colored: str = "auto"
