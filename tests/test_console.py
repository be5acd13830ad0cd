# -*- test-case-name: tests.test_console -*-
"""
Tests for L{proxyapp.console}.
"""

from __future__ import annotations

import io
import os
import sys
from typing import Any

from twisted.logger import (
    ILogObserver,
    Logger,
    LoggingFile,
    LogLevel,
    textFileLogObserver,
)
from twisted.python.failure import Failure
from twisted.scripts.twistd import ServerOptions
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from proxyapp.console import (
    COLOUR_CHOICES,
    checkColourMode,
    colourWanted,
    consoleLogObserver,
    consoleObserverWanted,
    makeConsoleObserver,
    realStream,
)


class FakeTerminal(io.StringIO):
    """
    An in-memory text stream that claims to be a terminal.
    """

    def isatty(self) -> bool:
        """
        @return: C{True}.
        """
        return True


def makeEvent(level: Any = LogLevel.info, **extra: Any) -> dict[str, Any]:
    """
    Make a log event like L{twisted.logger.Logger} emits.

    @param level: the event's level.
    @param extra: more keys for the event.

    @return: the event.
    """
    event = {
        "log_format": "hello {who}",
        "who": "world",
        "log_level": level,
        "log_namespace": "proxyapp.test",
        "log_time": 1700000000.0,
        "log_source": None,
    }
    event.update(extra)
    return event


def classicText(event: dict[str, Any]) -> str:
    """
    Format an event with L{textFileLogObserver}, the reference.

    @param event: the event.

    @return: what the observer wrote.
    """
    stream = io.StringIO()
    textFileLogObserver(stream)(event)
    return stream.getvalue()


class ColourWantedTests(SynchronousTestCase):
    """
    Tests for L{colourWanted} and L{checkColourMode}.
    """

    def test_choices(self) -> None:
        """
        The modes are C{auto}, C{always} and C{never}, in that order.
        """
        self.assertEqual(COLOUR_CHOICES, ("auto", "always", "never"))
        for mode in COLOUR_CHOICES:
            self.assertEqual(checkColourMode(mode), mode)

    def test_invalid(self) -> None:
        """
        Any other mode is a L{ValueError} naming the allowed values.
        """
        for function, args in [
            (checkColourMode, ("yes",)),
            (colourWanted, (io.StringIO(), "yes")),
            (makeConsoleObserver, (io.StringIO(), "yes")),
        ]:
            error = self.assertRaises(ValueError, function, *args)
            self.assertIn("'yes'", str(error))
            self.assertIn("auto, always, never", str(error))

    def test_forced(self) -> None:
        """
        C{always} and C{never} ignore the stream and the environment.
        """
        environ = {"NO_COLOR": "1"}
        self.assertTrue(colourWanted(io.StringIO(), "always", environ))
        self.assertFalse(colourWanted(FakeTerminal(), "never", {}))

    def test_auto(self) -> None:
        """
        C{auto} colours a terminal, unless C{NO_COLOR} is set (to anything
        but the empty string) or C{TERM} is C{dumb}.
        """
        self.assertTrue(colourWanted(FakeTerminal(), "auto", {}))
        self.assertTrue(colourWanted(FakeTerminal(), "auto", {"NO_COLOR": ""}))
        self.assertFalse(colourWanted(io.StringIO(), "auto", {}))
        self.assertFalse(colourWanted(object(), "auto", {}))  # type: ignore[arg-type]
        self.assertFalse(colourWanted(FakeTerminal(), "auto", {"NO_COLOR": "1"}))
        self.assertFalse(colourWanted(FakeTerminal(), "auto", {"TERM": "dumb"}))

    def test_autoClosedStream(self) -> None:
        """
        A closed stream is not a terminal.
        """
        closed = io.StringIO()
        closed.close()
        self.assertFalse(colourWanted(closed, "auto", {}))

    def test_autoUsesProcessEnvironment(self) -> None:
        """
        Without an explicit environment, C{auto} reads C{os.environ}.
        """
        self.patch(os, "environ", {"NO_COLOR": "1"})
        self.assertFalse(colourWanted(FakeTerminal(), "auto"))
        self.patch(os, "environ", {})
        self.assertTrue(colourWanted(FakeTerminal(), "auto"))


class RealStreamTests(SynchronousTestCase):
    """
    Tests for L{realStream}.
    """

    def test_loggingFile(self) -> None:
        """
        A L{LoggingFile} is replaced by the original standard output, or by
        the original standard error when it logs at error level.
        """
        self.assertIs(realStream(LoggingFile(Logger())), sys.__stdout__)
        self.assertIs(
            realStream(LoggingFile(Logger(), level=LogLevel.error)), sys.__stderr__
        )

    def test_noOriginalStream(self) -> None:
        """
        Without an original standard stream, a L{LoggingFile} cannot be
        replaced, which is a L{ValueError} rather than endless recursion.
        """
        self.patch(sys, "__stdout__", None)
        self.assertRaises(ValueError, realStream, LoggingFile(Logger()))

    def test_otherStream(self) -> None:
        """
        Any other stream is returned unchanged.
        """
        stream = io.StringIO()
        self.assertIs(realStream(stream), stream)


class ConsoleObserverTests(SynchronousTestCase):
    """
    Tests for L{makeConsoleObserver} and L{consoleLogObserver}.
    """

    def test_interface(self) -> None:
        """
        The observer provides L{ILogObserver}, coloured or not.
        """
        for mode in COLOUR_CHOICES:
            self.assertTrue(
                verifyObject(ILogObserver, makeConsoleObserver(FakeTerminal(), mode))
            )

    def test_plainMatchesTextFileLogObserver(self) -> None:
        """
        Without colour, events are written exactly as
        L{textFileLogObserver} writes them.
        """
        for level in LogLevel.iterconstants():
            stream = FakeTerminal()
            makeConsoleObserver(stream, "never")(makeEvent(level))
            self.assertEqual(stream.getvalue(), classicText(makeEvent(level)))
        notTerminal = io.StringIO()
        makeConsoleObserver(notTerminal, "auto")(makeEvent(LogLevel.error))
        self.assertEqual(notTerminal.getvalue(), classicText(makeEvent(LogLevel.error)))

    def test_systemAndNamespace(self) -> None:
        """
        The C{[namespace#level]} or C{[system]} tag is kept.
        """
        stream = io.StringIO()
        observer = makeConsoleObserver(stream, "never")
        observer(makeEvent(LogLevel.warn))
        observer(makeEvent(log_system="ProxyProtocol,3,127.0.0.1"))
        first, second = stream.getvalue().splitlines()
        self.assertIn(" [proxyapp.test#warn] hello world", first)
        self.assertIn(" [ProxyProtocol,3,127.0.0.1] hello world", second)

    def test_colourByLevel(self) -> None:
        """
        With colour, debug is dim, info plain, warn yellow, error red and
        critical bold red, each reset before the newline.
        """
        for level, colour in [
            (LogLevel.debug, "\x1b[2m"),
            (LogLevel.info, None),
            (LogLevel.warn, "\x1b[33m"),
            (LogLevel.error, "\x1b[31m"),
            (LogLevel.critical, "\x1b[1;31m"),
        ]:
            stream = io.StringIO()
            makeConsoleObserver(stream, "always")(makeEvent(level))
            plain = classicText(makeEvent(level))
            if colour is None:
                self.assertEqual(stream.getvalue(), plain)
            else:
                self.assertEqual(stream.getvalue(), colour + plain[:-1] + "\x1b[0m\n")

    def test_autoOnTerminal(self) -> None:
        """
        C{auto} colours a terminal.
        """
        self.patch(os, "environ", {"TERM": "xterm"})
        stream = FakeTerminal()
        makeConsoleObserver(stream)(makeEvent(LogLevel.warn))
        self.assertTrue(stream.getvalue().startswith("\x1b[33m"))

    def test_failure(self) -> None:
        """
        An event with a failure includes its traceback, all inside the
        colour.
        """
        try:
            1 / 0
        except ZeroDivisionError:
            failure = Failure()
        stream = io.StringIO()
        makeConsoleObserver(stream, "always")(
            makeEvent(LogLevel.critical, log_failure=failure)
        )
        output = stream.getvalue()
        self.assertTrue(output.startswith("\x1b[1;31m"))
        self.assertTrue(output.endswith("\x1b[0m\n"))
        self.assertIn("Traceback", output)
        self.assertIn("ZeroDivisionError", output)
        self.assertEqual(output.count("\x1b[0m"), 1)

    def test_emptyEvent(self) -> None:
        """
        An event with nothing to show writes nothing.
        """
        stream = io.StringIO()
        makeConsoleObserver(stream, "always")({"log_level": LogLevel.error})
        self.assertEqual(stream.getvalue(), "")

    def test_loggingFileUnwrapped(self) -> None:
        """
        Given a L{LoggingFile}, the observer writes to the real standard
        output instead of logging its own output forever.
        """
        realStdout = io.StringIO()
        self.patch(sys, "__stdout__", realStdout)
        observer = makeConsoleObserver(LoggingFile(Logger()), "never")
        observer(makeEvent())
        self.assertEqual(realStdout.getvalue(), classicText(makeEvent()))

    def test_consoleLogObserver(self) -> None:
        """
        The C{twistd --logger} factory writes to standard output with
        automatic colour.
        """
        stdout = io.StringIO()
        self.patch(sys, "stdout", stdout)
        observer = consoleLogObserver()
        self.assertTrue(verifyObject(ILogObserver, observer))
        observer(makeEvent(LogLevel.error))
        self.assertEqual(stdout.getvalue(), classicText(makeEvent(LogLevel.error)))


class ConsoleObserverWantedTests(SynchronousTestCase):
    """
    Tests for L{consoleObserverWanted}.
    """

    def parse(self, *argv: str) -> ServerOptions:
        """
        Parse a C{twistd} command line.

        @param argv: the arguments, without the program name.

        @return: the parsed options.
        """
        options = ServerOptions()
        options.parseOptions(list(argv))
        return options

    def test_twistdCommandLines(self) -> None:
        """
        The console observer is wanted for a foreground run that logs to
        standard output, and not when a daemon, a log file, syslog or
        another observer was chosen.
        """
        self.assertTrue(consoleObserverWanted(self.parse("-n")))
        self.assertTrue(consoleObserverWanted(self.parse("-n", "--logfile=-")))
        self.assertFalse(consoleObserverWanted(self.parse()))
        self.assertFalse(
            consoleObserverWanted(self.parse("-n", "--logfile=twistd.log"))
        )
        self.assertFalse(
            consoleObserverWanted(
                self.parse("-n", "--logger=proxyapp.console.consoleLogObserver")
            )
        )
        if "syslog" in ServerOptions().keys():
            self.assertFalse(consoleObserverWanted(self.parse("-n", "--syslog")))

    def test_mappings(self) -> None:
        """
        Missing keys take C{twistd}'s defaults; a mapping without
        C{nodaemon} describes a platform where C{twistd} never daemonizes.
        """
        self.assertTrue(consoleObserverWanted({}))
        self.assertTrue(consoleObserverWanted({"nodaemon": True, "logfile": ""}))
        self.assertFalse(consoleObserverWanted({"nodaemon": False}))
        self.assertFalse(consoleObserverWanted({"logfile": "proxy.log"}))
