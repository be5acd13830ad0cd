# -*- test-case-name: tests.test_console -*-
"""
The operator's console: a coloured L{twisted.logger} observer for
foreground (C{twistd -n}) runs, and the colour policy shared with the
access log.

Theory of operation
===================

The console shows the same text C{twistd} writes to C{twistd.log}
(L{twisted.logger.textFileLogObserver}: time stamp, C{[namespace#level]},
message, and a failure's traceback), so operators can grep either.  The
only difference is colour: when it is on, each event is wrapped in one
ANSI escape chosen by its level (debug dim, info plain, warn yellow,
error red, critical bold red).

Whether colour is on is decided once, when the observer is made, by
L{colourWanted}: C{"always"} forces it, C{"never"} forbids it, and
C{"auto"} turns it on only for a terminal (C{stream.isatty()}), unless the
environment asks otherwise (C{NO_COLOR} set, see U{https://no-color.org},
or C{TERM=dumb}).

Installing the observer
=======================

C{twistd} picks its log observer in
C{twisted.application.app.AppLogger.start}: a C{--logger} factory first,
then an L{ILogObserver} component set on the C{Application}, then
C{--logfile}/C{--syslog}.  L{consoleLogObserver} is a zero-argument factory
for C{--logger}; L{consoleObserverWanted} tells the service maker whether a
given C{twistd} command line would log to the console anyway, so the
component can be set without overriding C{--logfile} or C{--syslog}.

This module does not import C{twisted.internet}.
"""

from __future__ import annotations

import os
import sys
from typing import IO, Any, Mapping

from twisted.logger import (
    FileLogObserver,
    ILogObserver,
    LoggingFile,
    LogLevel,
    formatEventAsClassicLogText,
    formatTime,
    timeFormatRFC3339,
)
from twisted.logger import LogEvent

__all__ = [
    "COLOUR_CHOICES",
    "checkColourMode",
    "colourWanted",
    "consoleLogObserver",
    "consoleObserverWanted",
    "makeConsoleObserver",
    "realStream",
]

COLOUR_CHOICES: tuple[str, ...] = ("auto", "always", "never")
"""
The accepted values of every C{colored} argument, in the order they are
shown to users.
"""

_RESET = "\x1b[0m"

# One SGR sequence per level; info is absent on purpose (plain text), so the
# common case costs one dict lookup and no string building.
_LEVEL_COLOURS: dict[Any, str] = {
    LogLevel.debug: "\x1b[2m",
    LogLevel.warn: "\x1b[33m",
    LogLevel.error: "\x1b[31m",
    LogLevel.critical: "\x1b[1;31m",
}


def realStream(stream: IO[Any] | LoggingFile) -> IO[Any]:
    """
    Return the stream that really reaches the process's standard output or
    error when C{stream} is a L{twisted.logger.LoggingFile}.

    After logging has begun, C{twistd} replaces C{sys.stdout} and
    C{sys.stderr} with L{LoggingFile}s, which turn every C{write} into a log
    event.  A log observer writing to one of those would feed itself
    forever, and an access log writing to one would pay for one log event
    per line, which is exactly what the access log exists to avoid.

    @param stream: a writable text stream or a L{LoggingFile}.

    @return: C{sys.__stderr__} for a L{LoggingFile} at error level,
        C{sys.__stdout__} for any other L{LoggingFile}, otherwise C{stream}
        itself.

    @raise ValueError: for a L{LoggingFile} when the process has no such
        original stream (C{pythonw} on Windows).
    """
    if not isinstance(stream, LoggingFile):
        return stream
    error = stream.level is LogLevel.error
    original = sys.__stderr__ if error else sys.__stdout__
    if original is None:
        raise ValueError("the process has no standard stream to write to")
    return original


def checkColourMode(colored: str) -> str:
    """
    Check a colour mode given by a user.

    @param colored: the mode to check.

    @return: C{colored}, if it is one of L{COLOUR_CHOICES}.

    @raise ValueError: otherwise; the message names the allowed values.
    """
    if colored not in COLOUR_CHOICES:
        raise ValueError(
            f"invalid colour mode {colored!r}: choose one of "
            + ", ".join(COLOUR_CHOICES)
        )
    return colored


def colourWanted(
    stream: IO[Any], colored: str, environ: Mapping[str, str] | None = None
) -> bool:
    """
    Decide whether text written to C{stream} should carry ANSI colour.

    @param stream: the stream the text goes to; only its C{isatty} method
        is used, and a stream without one counts as not a terminal.
    @param colored: C{"always"} (colour, even when C{stream} is not a
        terminal, e.g. for C{less -R}), C{"never"}, or C{"auto"} (colour only
        when C{stream} is a terminal and C{environ} has neither a non-empty
        C{NO_COLOR} nor C{TERM=dumb}).
    @param environ: the environment consulted by C{"auto"}; L{None} for
        C{os.environ}.

    @return: C{True} if colour escapes should be written.

    @raise ValueError: if C{colored} is not one of L{COLOUR_CHOICES}; the
        message names the allowed values.
    """
    if checkColourMode(colored) != "auto":
        return colored == "always"
    if environ is None:
        environ = os.environ
    if environ.get("NO_COLOR") or environ.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    if isatty is None:
        return False
    try:
        return bool(isatty())
    except ValueError:
        # isatty() on a closed file raises ValueError.
        return False


def _classicText(event: LogEvent) -> str | None:
    """
    Format C{event} exactly as L{twisted.logger.textFileLogObserver} does.

    @param event: a log event.

    @return: one line (continuation lines indented by a tab) ending in a
        newline, or L{None} for an event with nothing to show.
    """
    return formatEventAsClassicLogText(
        event, formatTime=lambda when: formatTime(when, timeFormatRFC3339)
    )


def _colouredText(event: LogEvent) -> str | None:
    """
    Format C{event} like L{_classicText} and wrap it in its level's colour.

    The reset goes before the final newline so a colour never bleeds into
    whatever the terminal prints next.

    @param event: a log event.

    @return: the coloured text, or L{None} for an event with nothing to
        show.
    """
    text = _classicText(event)
    if text is None:
        return None
    colour = _LEVEL_COLOURS.get(event.get("log_level"))
    if colour is None:
        return text
    return colour + text[:-1] + _RESET + "\n"


def makeConsoleObserver(
    stream: IO[Any] | LoggingFile, colored: str = "auto"
) -> ILogObserver:
    """
    Make a log observer for the operator console.

    @param stream: a writable text stream, normally C{sys.stdout}.  A
        L{twisted.logger.LoggingFile} is replaced by the real standard
        stream (see L{realStream}).
    @param colored: C{"auto"}, C{"always"} or C{"never"}; see
        L{colourWanted}.

    @return: an observer writing each event as
        L{twisted.logger.textFileLogObserver} would, coloured by level when
        colour is on, and flushing after each event.

    @raise ValueError: if C{colored} is not one of L{COLOUR_CHOICES}.
    """
    output = realStream(stream)
    if colourWanted(output, colored):
        return FileLogObserver(output, _colouredText)
    return FileLogObserver(output, _classicText)


def consoleLogObserver() -> ILogObserver:
    """
    Make the console observer for standard output with automatic colour.

    This is a factory for C{twistd --logger}::

        twistd -n --logger proxyapp.console.consoleLogObserver webproxy ...

    @return: C{makeConsoleObserver(sys.stdout, "auto")}.
    """
    return makeConsoleObserver(sys.stdout, "auto")


def consoleObserverWanted(config: Mapping[str, Any]) -> bool:
    """
    Tell whether C{twistd}, run with C{config}, would log to the console.

    Setting an L{ILogObserver} component on the C{Application} takes
    precedence over C{--logfile} and C{--syslog}, so the service maker
    should only do it when this returns C{True}: otherwise the operator's
    explicit choice would be silently ignored, and a daemon would log into
    C{/dev/null}.

    @param config: C{twistd}'s C{ServerOptions} (for a plugin, the
        C{parent} of the plugin's options), or any mapping with the same
        keys.  Missing keys take C{twistd}'s defaults; a missing
        C{"nodaemon"} means a platform where C{twistd} never daemonizes.

    @return: C{True} when no C{--logger} and no C{--syslog} were given, the
        process stays in the foreground, and C{--logfile} is absent or
        C{-}.
    """
    if config.get("logger") or config.get("syslog"):
        return False
    if not config.get("nodaemon", True):
        return False
    return config.get("logfile") in (None, "", "-")
