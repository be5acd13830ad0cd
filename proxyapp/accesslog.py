# -*- test-case-name: tests.test_accesslog -*-
"""
The access log: one line per request, cheap enough for the hot path.

Theory of operation
===================

The protocol fills in an L{AccessRecord} as the request proceeds (plain
attribute stores on a C{__slots__} object) and hands it to
L{AccessLogWriter.log} when the exchange is over.  The writer formats it at
once into a string (so the record can be dropped), appends the string to a
list, and writes the list to the file in one C{write} when it has grown to
C{bufferLimit} characters or when a C{flushInterval} timer fires.  The timer
is started by the first record after a flush, so an idle proxy has no timer
at all.  The per-request cost is therefore one formatting call and one list
append; system calls are amortised over hundreds of lines.  This is why the
access log does not go through L{twisted.logger}: one logger event per
request, formatted to a file, costs 42% of the proxy's throughput.

The formatters avoid work that does not change from line to line: the
calendar part of each time stamp is computed once per second and cached,
escaping is skipped after one C{str.isascii}/C{str.isprintable} scan shows
there is nothing to escape, and no regular expression runs per record.

Formats
=======

All formats write one line per record, ending in C{"\\n"}.  Everything
that came from the client or the origin is escaped, so a line can never be
split or forged by a request; client and upstream addresses come from the
transport and are written as they are.  Text fields are best decoded from
the wire with ISO-8859-1: every byte then maps to one character, and the
escapes below reproduce the original bytes exactly (a character above
U+00FF, which ISO-8859-1 decoding never produces, is escaped as its UTF-8
bytes).

B{combined} (L{formatCombined}): the Apache/NCSA combined format, plus four
trailing fields::

  host - user [dd/Mon/yyyy:HH:MM:SS +0000] "METHOD target VERSION" status bytes "referer" "user-agent" duration_ms upstream=ADDR filter=FILTER client=ADDR

  - The time is the request's start, in UTC.
  - Strings are escaped as Apache's C{ap_escape_logitem} does: C{\\"},
    C{\\\\}, C{\\b \\n \\r \\t \\v}, and C{\\xhh} for any other byte outside
    0x20-0x7E.
  - As in Apache: a missing user, referer or user agent is C{-}, an empty
    user is C{""}, a request that was never parsed is C{"-"}, a status of 0
    (no response was sent) is C{-}, and zero bytes are C{-} (C{%b}).
  - C{bytes} counts everything sent to the client, head included (Apache's
    C{%O}): for a proxy the bytes on the wire are what matters.
  - C{duration_ms} is an integer number of milliseconds (truncated, like
    Squid's); C{ADDR} is C{ip:port}, C{[ipv6]:port}, or C{-} when no
    upstream was contacted; C{FILTER} is C{-}, C{name}, or
    C{name:"reason"} (reason escaped as above); C{client=} repeats the
    client's address with its port.  Parsers that do not
    anchor their pattern at the end of the line (GoAccess's C{COMBINED},
    Logstash's C{COMBINEDAPACHELOG}) ignore the extra fields; a pattern
    anchored with C{$} needs them added.

B{squid} (L{formatSquid}): Squid's native format, as written by Squid's
C{Log::Format::SquidNative} (C{logformat squid %ts.%03tu %6tr %>a
%Ss/%03>Hs %<st %rm %ru %[un %Sh/%<a %mt})::

  1700000000.123    150 127.0.0.1 TCP_MISS/200 1234 GET http://example.com/ - HIER_DIRECT/93.184.216.34 text/html

  - The time stamp is when the exchange ended (C{start + duration}), as in
    Squid, which stamps lines when it writes them.
  - The result code is C{TCP_DENIED} when a filter refused with a 4xx (the
    blocklist's 403, authentication's 407), C{TCP_REDIRECT} when a filter
    answered with a 3xx, C{TCP_TUNNEL} for CONNECT, C{TCP_MISS} for any
    other request that reached an upstream, and C{NONE_NONE} for the rest
    (errors without an upstream, e.g. a malformed request).  C{NONE_NONE} is
    what Squid 4 and later write; Squid 3 wrote C{NONE}.
  - The status is zero-padded to three digits (C{000} when none was sent),
    the bytes are those sent to the client, head included.
  - The user is C{-} or encoded as Squid encodes user names (C{%xx} for
    control characters, non-ASCII, C{%}, C{[} and C{]}, C{\\r} C{\\n} and
    C{\\\\} as backslash escapes), and additionally C{%20} for a space,
    which Squid leaves as is and which would shift every later field.
  - The method and URL have control characters, spaces and non-ASCII
    percent-encoded; a request that was never parsed is logged as Squid
    logs one: C{NONE error:invalid-request}.
  - The hierarchy field is C{HIER_DIRECT/ip} when an upstream was
    contacted and C{HIER_NONE/-} otherwise; the media type is the
    response's type up to the first C{;}, tab or space, or C{-}.

B{json} (L{formatJSON}): one compact JSON object per line, ASCII only,
with these keys in this order: C{time} (the request's start,
C{"2023-11-14T22:13:20.123Z"}), C{client_ip}, C{client_port}, C{user},
C{method}, C{target}, C{version}, C{status}, C{bytes_in}, C{bytes_out},
C{duration_ms} (a number with three decimals), C{upstream_ip},
C{upstream_port}, C{referer}, C{user_agent}, C{content_type}, C{filter},
C{filter_reason}, C{tunnel} (a boolean).  Missing values are C{null}.

In every format, a negative duration (the clock was stepped back during
the request) is written as 0.

This module does not import C{twisted.internet}: the writer is given its
reactor.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii
from typing import IO, TYPE_CHECKING, Any, Callable, Optional

from twisted.logger import Logger

from proxyapp.console import checkColourMode, colourWanted, realStream

if TYPE_CHECKING:
    from twisted.internet.interfaces import IDelayedCall, IReactorTime

__all__ = [
    "AccessLogWriter",
    "AccessRecord",
    "FORMATTERS",
    "formatCombined",
    "formatJSON",
    "formatSquid",
    "openAccessLog",
]


@dataclass(slots=True, kw_only=True)
class AccessRecord:
    """
    What the access log knows about one request.

    The protocol creates one when a request starts and assigns attributes
    as it learns them; every attribute has a default, so a record for a
    request that failed early is still complete.

    @ivar start: C{time.time()} when the request started.
    @ivar duration: seconds from start until the exchange ended.
    @ivar clientHost: the client's IP address.
    @ivar clientPort: the client's TCP port.
    @ivar user: the authenticated user name, or L{None}.
    @ivar method: the request method; empty if the request line was never
        parsed.
    @ivar target: the URL as requested, in absolute form; C{"host:port"}
        for CONNECT.
    @ivar version: the request's HTTP version, e.g. C{"HTTP/1.1"}.
    @ivar status: the status code sent to the client; 0 if none was sent.
    @ivar bytesIn: bytes received from the client, head included.
    @ivar bytesOut: bytes sent to the client, head included.
    @ivar upstreamHost: the upstream's resolved IP address, or L{None} if no
        upstream was contacted.
    @ivar upstreamPort: the upstream's port, or L{None}.
    @ivar referer: the request's C{Referer} header, or L{None}.
    @ivar userAgent: the request's C{User-Agent} header, or L{None}.
    @ivar contentType: the response's media type, or L{None}.
    @ivar filterName: the name of the filter that decided the outcome (e.g.
        C{"blocklist"}, C{"auth"}), or L{None}.
    @ivar filterReason: why that filter decided so, or L{None}.
    @ivar tunnel: C{True} for a CONNECT tunnel.
    """

    start: float = 0.0
    duration: float = 0.0
    clientHost: str = "-"
    clientPort: int = 0
    user: Optional[str] = None
    method: str = ""
    target: str = ""
    version: str = ""
    status: int = 0
    bytesIn: int = 0
    bytesOut: int = 0
    upstreamHost: Optional[str] = None
    upstreamPort: Optional[int] = None
    referer: Optional[str] = None
    userAgent: Optional[str] = None
    contentType: Optional[str] = None
    filterName: Optional[str] = None
    filterReason: Optional[str] = None
    tunnel: bool = False


# ---------------------------------------------------------------------------
# Escaping.  Each escaper has a fast test (a few C-level scans of a short
# string) and a slow per-character path taken only when the test fails.

_APACHE_ESCAPES = {
    "\b": "\\b",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
    "\\": "\\\\",
    '"': '\\"',
}

# The same escapes as a str.translate() table covering all of ASCII.
_APACHE_TABLE: dict[int, str] = {
    code: "\\x%02x" % code for code in (*range(0x20), 0x7F)
}
_APACHE_TABLE.update((ord(char), escape) for char, escape in _APACHE_ESCAPES.items())


def _wireBytes(char: str) -> bytes:
    """
    Return the bytes a character stood for on the wire.

    @param char: one character.

    @return: its ISO-8859-1 byte when it has one; the byte it smuggles when
        it is a C{surrogateescape} surrogate; otherwise its UTF-8 encoding.
    """
    code = ord(char)
    if code < 0x100:
        return bytes((code,))
    try:
        return char.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return char.encode("utf-8", "surrogatepass")


def _escapeApacheSlow(value: str) -> str:
    """
    Escape C{value} as Apache's C{ap_escape_logitem} does.

    @param value: text that contains at least one character to escape.

    @return: the escaped text, printable ASCII only.
    """
    if value.isascii():
        return value.translate(_APACHE_TABLE)
    out = []
    for char in value:
        if char in _APACHE_ESCAPES:
            out.append(_APACHE_ESCAPES[char])
        elif " " <= char <= "~":
            out.append(char)
        else:
            out.extend("\\x%02x" % byte for byte in _wireBytes(char))
    return "".join(out)


def _escapeApache(value: str) -> str:
    """
    Escape C{value} for a quoted field of the combined format.

    @param value: any text.

    @return: C{value} itself when it is printable ASCII without C{"} or
        C{\\}, else its escaped form (see L{_escapeApacheSlow}).
    """
    if (
        value.isascii()
        and value.isprintable()
        and '"' not in value
        and "\\" not in value
    ):
        return value
    return _escapeApacheSlow(value)


def _percentEncodeSlow(value: str) -> str:
    """
    Percent-encode spaces, control characters and non-ASCII in C{value}.

    @param value: text that contains at least one character to encode.

    @return: the encoded text.
    """
    out = []
    for char in value:
        if "!" <= char <= "~":
            out.append(char)
        else:
            out.extend("%%%02X" % byte for byte in _wireBytes(char))
    return "".join(out)


def _percentEncode(value: str) -> str:
    """
    Make C{value} safe as one space-separated field (Squid's method and
    URL).

    @param value: any text.

    @return: C{value} itself when it is printable ASCII without spaces,
        else its percent-encoded form.
    """
    if value.isascii() and value.isprintable() and " " not in value:
        return value
    return _percentEncodeSlow(value)


def _squidUser(user: Optional[str]) -> str:
    """
    Encode a user name as Squid's C{QuoteUrlEncodeUsername} does, and also
    encode spaces.

    @param user: the user name, or L{None}.

    @return: C{-} for L{None} or an empty name, else the encoded name.
    """
    if not user:
        return "-"
    if (
        user.isascii()
        and user.isprintable()
        and " " not in user
        and "%" not in user
        and "[" not in user
        and "]" not in user
        and "\\" not in user
    ):
        return user
    out = []
    for char in user:
        if char == "\r":
            out.append("\\r")
        elif char == "\n":
            out.append("\\n")
        elif char == "\\":
            out.append("\\\\")
        elif "!" <= char <= "~" and char not in "%[]":
            out.append(char)
        else:
            out.extend("%%%02x" % byte for byte in _wireBytes(char))
    return "".join(out)


def _squidMediaType(contentType: Optional[str]) -> str:
    """
    Reduce a content type to the media type Squid logs.

    @param contentType: a media type or a whole C{Content-Type} value, or
        L{None}.

    @return: the text before the first C{;}, tab or space, percent-encoded
        if needed, or C{-} if that is empty.
    """
    if not contentType:
        return "-"
    if ";" in contentType or " " in contentType or "\t" in contentType:
        for separator in ";\t ":
            contentType = contentType.partition(separator)[0]
        if not contentType:
            return "-"
    return _percentEncode(contentType)


def _hostPort(host: Optional[str], port: Optional[int]) -> str:
    """
    Join an address and a port for the combined format's C{upstream=}.

    @param host: an IPv4 or IPv6 address, or L{None}.
    @param port: a port number, or L{None}.

    @return: C{-} without an address, C{[host]:port} for IPv6,
        C{host:port} otherwise, or just the (bracketed) host without a
        port.
    """
    if host is None:
        return "-"
    if ":" in host:
        host = "[" + host + "]"
    if port is None:
        return host
    return f"{host}:{port}"


# ---------------------------------------------------------------------------
# Time stamps.  Each format caches the text for the last second it saw; a
# cache miss costs one gmtime() and one %-format.  Month names come from a
# table because strftime("%b") follows the locale.

_MONTHS = (
    "Jan",
    "Feb",
    "Mar",
    "Apr",
    "May",
    "Jun",
    "Jul",
    "Aug",
    "Sep",
    "Oct",
    "Nov",
    "Dec",
)

_combinedSecond = -1
_combinedStamp = ""
_squidSecond = -1
_squidStamp = ""
_jsonSecond = -1
_jsonStamp = ""

# "000" to "999": milliseconds and status codes without a format spec, which
# costs about 0.25 us each in an f-string.
_THREE_DIGITS = tuple("%03d" % number for number in range(1000))


def _combinedTime(second: int) -> str:
    """
    Format a second for the combined format.

    @param second: seconds since the epoch.

    @return: e.g. C{"14/Nov/2023:22:13:20 +0000"}.
    """
    tm = time.gmtime(second)
    return "%02d/%s/%04d:%02d:%02d:%02d +0000" % (
        tm.tm_mday,
        _MONTHS[tm.tm_mon - 1],
        tm.tm_year,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
    )


def _isoTime(second: int) -> str:
    """
    Format a second as the ISO-8601 prefix of the JSON format's C{time}.

    @param second: seconds since the epoch.

    @return: e.g. C{"2023-11-14T22:13:20"}.
    """
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))


# ---------------------------------------------------------------------------
# Formatters.


def formatCombined(record: AccessRecord) -> str:
    """
    Format a record in the combined format (see the module docstring).

    @param record: the request to describe.

    @return: one line ending in C{"\\n"}.
    """
    global _combinedSecond, _combinedStamp
    second = int(record.start)
    if second != _combinedSecond:
        _combinedStamp = _combinedTime(second)
        _combinedSecond = second

    user = record.user
    if user is None:
        userText = "-"
    elif user:
        userText = _escapeApache(user)
    else:
        userText = '""'

    method = record.method
    if method:
        version = record.version
        request = _escapeApache(
            f"{method} {record.target} {version}"
            if version
            else f"{method} {record.target}"
        )
    else:
        request = "-"

    # Whole microseconds, so 0.15 s is 150 ms and not 149.99999 ms; a
    # negative duration (the clock was stepped back) is logged as 0.
    elapsed = int(record.duration * 1e6 + 0.5)
    if elapsed < 0:
        elapsed = 0
    status = record.status
    bytesOut = record.bytesOut
    referer = record.referer
    userAgent = record.userAgent
    filterName = record.filterName
    if filterName is None:
        filterText = "-"
    elif record.filterReason is None:
        filterText = _escapeApache(filterName)
    else:
        filterText = (
            f'{_escapeApache(filterName)}:"{_escapeApache(record.filterReason)}"'
        )

    return (
        f"{record.clientHost} - {userText} [{_combinedStamp}] "
        f'"{request}" {status if status > 0 else "-"} '
        f'{bytesOut if bytesOut else "-"} '
        f'"{"-" if referer is None else _escapeApache(referer)}" '
        f'"{"-" if userAgent is None else _escapeApache(userAgent)}" '
        f"{elapsed // 1000} "
        f"upstream={_hostPort(record.upstreamHost, record.upstreamPort)} "
        f"filter={filterText} "
        f"client={_hostPort(record.clientHost, record.clientPort)}\n"
    )


def _squidResult(record: AccessRecord) -> str:
    """
    Choose Squid's result code (C{%Ss}) for a record.

    @param record: the request to describe.

    @return: C{TCP_DENIED}, C{TCP_REDIRECT}, C{TCP_TUNNEL}, C{TCP_MISS} or
        C{NONE_NONE} (see the module docstring).
    """
    if record.filterName is not None:
        statusClass = record.status // 100
        if statusClass == 4:
            return "TCP_DENIED"
        if statusClass == 3:
            return "TCP_REDIRECT"
    if record.tunnel:
        return "TCP_TUNNEL"
    if record.upstreamHost is not None:
        return "TCP_MISS"
    return "NONE_NONE"


def formatSquid(record: AccessRecord) -> str:
    """
    Format a record in Squid's native format (see the module docstring).

    @param record: the request to describe.

    @return: one line ending in C{"\\n"}.
    """
    global _squidSecond, _squidStamp
    duration = record.duration
    micros = int((record.start + duration) * 1e6 + 0.5)
    elapsed = int(duration * 1e6 + 0.5)
    if elapsed < 0:
        elapsed = 0
    second = micros // 1000000
    if second != _squidSecond:
        _squidStamp = "%9d." % (second,)
        _squidSecond = second
    status = record.status
    method = record.method
    if method:
        method = _percentEncode(method)
        url = _percentEncode(record.target) if record.target else "-"
    else:
        method = "NONE"
        url = "error:invalid-request"
    upstream = record.upstreamHost
    return (
        f"{_squidStamp}{_THREE_DIGITS[micros // 1000 % 1000]} "
        f"{str(elapsed // 1000).rjust(6)} {record.clientHost} "
        f"{_squidResult(record)}/"
        f"{_THREE_DIGITS[status] if 0 <= status < 1000 else status} "
        f"{record.bytesOut} {method} {url} {_squidUser(record.user)} "
        f'{"HIER_NONE/-" if upstream is None else "HIER_DIRECT/" + upstream} '
        f"{_squidMediaType(record.contentType)}\n"
    )


def formatJSON(record: AccessRecord) -> str:
    """
    Format a record as one line of JSON (see the module docstring).

    @param record: the request to describe.

    @return: one line ending in C{"\\n"}.
    """
    global _jsonSecond, _jsonStamp
    micros = int(record.start * 1e6 + 0.5)
    second = micros // 1000000
    if second != _jsonSecond:
        _jsonStamp = _isoTime(second)
        _jsonSecond = second
    duration = int(record.duration * 1e6 + 0.5)
    if duration < 0:
        duration = 0
    # Optional strings are inlined rather than passed to a helper: a Python
    # call per field would cost more than the encoding itself.
    quote = encode_basestring_ascii
    user = record.user
    upstreamHost = record.upstreamHost
    upstreamPort = record.upstreamPort
    referer = record.referer
    userAgent = record.userAgent
    contentType = record.contentType
    filterName = record.filterName
    filterReason = record.filterReason
    return (
        f'{{"time":"{_jsonStamp}.{_THREE_DIGITS[micros // 1000 % 1000]}Z",'
        f'"client_ip":{quote(record.clientHost)},'
        f'"client_port":{record.clientPort},'
        f'"user":{"null" if user is None else quote(user)},'
        f'"method":{quote(record.method)},'
        f'"target":{quote(record.target)},'
        f'"version":{quote(record.version)},'
        f'"status":{record.status},'
        f'"bytes_in":{record.bytesIn},'
        f'"bytes_out":{record.bytesOut},'
        f'"duration_ms":{duration // 1000}.{_THREE_DIGITS[duration % 1000]},'
        f'"upstream_ip":{"null" if upstreamHost is None else quote(upstreamHost)},'
        f'"upstream_port":{"null" if upstreamPort is None else upstreamPort},'
        f'"referer":{"null" if referer is None else quote(referer)},'
        f'"user_agent":{"null" if userAgent is None else quote(userAgent)},'
        f'"content_type":{"null" if contentType is None else quote(contentType)},'
        f'"filter":{"null" if filterName is None else quote(filterName)},'
        f'"filter_reason":{"null" if filterReason is None else quote(filterReason)},'
        f'"tunnel":{"true" if record.tunnel else "false"}}}\n'
    )


FORMATTERS: dict[str, Callable[[AccessRecord], str]] = {
    "combined": formatCombined,
    "squid": formatSquid,
    "json": formatJSON,
}
"""
The formatters by the name users give them (C{--access-log-format}).
"""


# ---------------------------------------------------------------------------
# Colour, for access logs shown on a terminal.

_RESET = "\x1b[0m"
_STATUS_COLOURS = {
    2: "\x1b[32m",  # green
    3: "\x1b[36m",  # cyan
    4: "\x1b[33m",  # yellow
    5: "\x1b[31m",  # red
}


def _colourLine(line: str, status: int) -> str:
    """
    Wrap a formatted line in the colour of its status class.

    @param line: one line ending in C{"\\n"}.
    @param status: the status code sent to the client.

    @return: the line coloured for 2xx-5xx (reset before the newline), or
        unchanged for 0, 1xx and anything else.
    """
    colour = _STATUS_COLOURS.get(status // 100)
    if colour is None:
        return line
    return colour + line[:-1] + _RESET + "\n"


def _isStandardStream(stream: IO[Any]) -> bool:
    """
    Tell whether a stream is the process's standard output or error, which
    the access log must never close.

    @param stream: a file object.

    @return: C{True} for C{sys.stdout}, C{sys.stderr} and their originals.
    """
    return (
        stream is sys.stdout
        or stream is sys.stderr
        or stream is sys.__stdout__
        or stream is sys.__stderr__
    )


# ---------------------------------------------------------------------------
# The writer.


class AccessLogWriter:
    """
    Buffer formatted access log lines and write them in batches.

    All methods are meant to be called from the reactor thread; in
    particular a signal handler must not call L{reopen} directly but
    schedule it with C{reactor.callFromThread}.

    Write errors (disk full, a closed file, ...) never propagate to the
    caller of L{log} or L{flush}: the first one is reported through
    L{twisted.logger}, and the lines of every failed batch are dropped, so
    memory stays bounded.  After a batch is written successfully, the next
    error is reported again.

    @ivar file: the file object currently written to.
    """

    _log = Logger()

    def __init__(
        self,
        reactor: IReactorTime,
        opener: Callable[[], IO[str]],
        formatter: Callable[[AccessRecord], str],
        flushInterval: float = 1.0,
        bufferLimit: int = 65536,
        colorize: Optional[bool] = None,
    ) -> None:
        """
        Open the log file by calling C{opener}.

        @param reactor: provides C{callLater} for the flush timer.
        @param opener: returns a writable I{text} file object; called now,
            and again by each L{reopen}.  Its exceptions propagate from
            here.
        @param formatter: turns a record into one line, e.g.
            L{formatCombined}.
        @param flushInterval: the longest time, in seconds, a line stays in
            memory before it is written.
        @param bufferLimit: write as soon as this many characters are
            buffered; 0 writes every line at once.
        @param colorize: C{True} to colour lines by status class, C{False}
            never to, L{None} to colour only when the opened file is a
            terminal (re-decided after each L{reopen}).
        """
        self._reactor = reactor
        self._opener = opener
        self._formatter = formatter
        self._flushInterval = flushInterval
        self._bufferLimit = bufferLimit
        self._colorizeSetting = colorize
        self._buffer: list[str] = []
        self._buffered = 0
        self._timer: Optional[IDelayedCall] = None
        self._closed = False
        # Set while errors are being suppressed, cleared by a good write.
        self._failing = False
        self._formatFailing = False
        self.file = opener()
        self._colorize = self._decideColour(self.file)

    def _decideColour(self, stream: IO[str]) -> bool:
        """
        Apply the C{colorize} setting to a newly opened file.

        @param stream: the file.

        @return: whether lines written to it get colour.
        """
        if self._colorizeSetting is None:
            return colourWanted(stream, "auto")
        return self._colorizeSetting

    def newRecord(self) -> AccessRecord:
        """
        Make an empty record for a request that is starting.

        @return: a new L{AccessRecord} with every attribute at its default.
        """
        return AccessRecord()

    def log(self, record: AccessRecord) -> None:
        """
        Format a record and buffer the line.

        @param record: the finished request.  It is not kept.
        """
        if self._closed:
            self._reportError("Access log {file} is closed; dropping records")
            return
        try:
            line = self._formatter(record)
        except Exception:
            if not self._formatFailing:
                self._formatFailing = True
                self._log.failure("Access log: cannot format {record!r}", record=record)
            return
        if self._colorize:
            line = _colourLine(line, record.status)
        self._buffer.append(line)
        self._buffered += len(line)
        if self._buffered >= self._bufferLimit:
            self.flush()
        elif self._timer is None:
            self._timer = self._reactor.callLater(self._flushInterval, self._timedFlush)

    def _timedFlush(self) -> None:
        """
        Write the buffer when the flush timer fires.
        """
        self._timer = None
        self.flush()

    def flush(self) -> None:
        """
        Write all buffered lines now, in one C{write}, and stop the timer.
        """
        timer = self._timer
        if timer is not None:
            self._timer = None
            timer.cancel()
        if not self._buffer:
            return
        data = "".join(self._buffer)
        self._buffer = []
        self._buffered = 0
        try:
            self.file.write(data)
            self.file.flush()
        except Exception as error:
            self._reportError("Access log: cannot write to {file}: {error}", error)
        else:
            self._failing = False

    def _reportError(self, message: str, error: Optional[Exception] = None) -> None:
        """
        Report an error through L{twisted.logger}, unless an earlier one is
        still being suppressed.

        @param message: the log format string; may use C{{file}} and
            C{{error}}.
        @param error: the exception, if any.
        """
        if self._failing:
            return
        self._failing = True
        self._log.error(
            message,
            file=getattr(self.file, "name", repr(self.file)),
            error=error,
        )

    def reopen(self) -> None:
        """
        Flush, then switch to a newly opened file (for C{logrotate}).

        Lines logged before this call go to the old file.  If C{opener}
        fails, the error is reported and the old file stays in use, so no
        line is lost.  The old file is closed unless it is a standard
        stream or the very object C{opener} returned again.
        """
        if self._closed:
            return
        self.flush()
        try:
            newFile = self._opener()
        except Exception as error:
            self._log.error(
                "Access log: cannot reopen {file}: {error}; "
                "still writing to the old file",
                file=getattr(self.file, "name", repr(self.file)),
                error=error,
            )
            return
        oldFile = self.file
        self.file = newFile
        self._colorize = self._decideColour(newFile)
        self._failing = False
        if oldFile is not newFile:
            self._closeFile(oldFile)

    def _closeFile(self, stream: IO[str]) -> None:
        """
        Close a file we opened, reporting (not raising) any error.

        @param stream: the file; standard streams are left open.
        """
        if _isStandardStream(stream):
            return
        try:
            stream.close()
        except Exception as error:
            self._log.error(
                "Access log: cannot close {file}: {error}",
                file=getattr(stream, "name", repr(stream)),
                error=error,
            )

    def close(self) -> None:
        """
        Flush, stop the timer and close the file (unless it is a standard
        stream).  Records logged afterwards are dropped, and that is
        reported once.  Closing twice does nothing.
        """
        if self._closed:
            return
        self.flush()
        self._closed = True
        self._failing = False
        self._closeFile(self.file)


def openAccessLog(
    spec: str, reactor: IReactorTime, formatName: str, colored: str = "auto"
) -> Optional[AccessLogWriter]:
    """
    Open the access log described by command-line options.

    @param spec: C{"off"} for no access log, C{"-"} for standard output, or
        a path, opened for appending (made absolute now, so that a later
        L{AccessLogWriter.reopen} finds the same file after C{twistd}
        changes directory).
    @param reactor: provides C{callLater} for the flush timer.
    @param formatName: C{"combined"}, C{"squid"} or C{"json"}.
    @param colored: C{"auto"} (colour when standard output is a terminal),
        C{"always"} (colour on standard output even when it is not a
        terminal) or C{"never"}.  Lines written to a path are never
        coloured, whatever this says.

    @return: the writer, or L{None} for C{"off"}.

    @raise ValueError: for an unknown format or colour mode (the message
        names the allowed values), or a path that cannot be opened (the
        message names the path and the reason).
    """
    formatter = FORMATTERS.get(formatName)
    if formatter is None:
        raise ValueError(
            f"unknown access log format {formatName!r}: choose one of "
            + ", ".join(FORMATTERS)
        )
    # Validated even when unused, so a typo is reported whatever the other
    # options say.
    checkColourMode(colored)
    if spec == "off":
        return None
    if spec == "-":
        # Captured now: once twistd has started logging, sys.stdout is a
        # LoggingFile that would turn every line into a log event.
        stream = realStream(sys.stdout)
        return AccessLogWriter(
            reactor,
            lambda: stream,
            formatter,
            colorize=colourWanted(stream, colored),
        )
    if not spec:
        raise ValueError("access log path is empty (use '-' or 'off')")
    path = os.path.abspath(spec)

    def opener() -> IO[str]:
        return open(path, "a", encoding="utf-8", errors="backslashreplace")

    try:
        return AccessLogWriter(reactor, opener, formatter, colorize=False)
    except OSError as error:
        raise ValueError(
            f"cannot open access log {path!r}: {error.strerror or error}"
        ) from error
