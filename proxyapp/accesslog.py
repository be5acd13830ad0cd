# -*- test-case-name: tests.test_accesslog -*-
"""
The access log: one line per request, cheap enough for the hot path.

Theory of operation
===================

When an exchange ends, the protocol hands L{AccessLogWriter.logExchange} a
plain tuple of what it knows (an L{Exchange}: addresses, times, status,
byte counts, the request head itself) and the writer appends it to a list;
nothing is looked up, decoded or formatted while the request ends.  The
writer formats the waiting exchanges together when a few dozen of them
have gathered, or when a C{flushInterval} timer fires (started by the first
exchange after a flush, so an idle proxy has no timer), and writes the
lines in one C{write}.  The combined format's batch formatter reads the
tuples directly, which costs about half as much as filling a record and
formatting it; other formats format the L{AccessRecord} that
L{recordFromExchange} makes of each.
Records can also be logged directly with L{AccessLogWriter.log}, which
formats at once; lines are written in the order they were logged either
way.  This is why the access log does not go through L{twisted.logger}: one
logger event per request, formatted to a file, costs 42% of the proxy's
throughput.

The formatters avoid work that does not change from line to line: the
calendar part of each time stamp is computed once per second and cached;
text that depends only on the connection (addresses, ports) is cached by
client and upstream address; header values (user agent, referer, content
type) seen clean before are remembered; escaping is skipped after one
C{bytes.translate} scan (see L{_keepTable}) shows there is nothing to
escape, and anything that does need escaping takes a separate slow path
that is the reference; no regular expression runs per record.  Every cache
is bounded and cleared when full.

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
    blocklist's 403, authentication's 407, and the 403 for a C{CONNECT} port
    outside C{connect_ports}, logged as the C{access} filter's decision),
    C{TCP_REDIRECT} when a filter answered with a 3xx, C{TCP_TUNNEL} for CONNECT, C{TCP_MISS} for any
    other request that reached an upstream, and C{NONE_NONE} for the rest
    (errors without an upstream, e.g. a malformed request).  C{NONE_NONE} is
    what Squid 4 and later write; Squid 3 wrote C{NONE}.  An exchange cut
    off before its response was complete (the client or the upstream went
    away) gets C{_ABORTED} appended, as Squid does: C{TCP_MISS_ABORTED/200}.
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
    contacted, or a connection to an IP address given in the target failed
    (refused, timed out: C{TCP_MISS/502}, as Squid logs it), and
    C{HIER_NONE/-} otherwise; the media type is the response's type up to
    the first C{;}, tab or space, or C{-}.

B{json} (L{formatJSON}): one compact JSON object per line, ASCII only,
with these keys in this order: C{time} (the request's start,
C{"2023-11-14T22:13:20.123Z"}), C{client_ip}, C{client_port}, C{user},
C{method}, C{target}, C{version}, C{status}, C{bytes_in}, C{bytes_out},
C{duration_ms} (a number with three decimals), C{upstream_ip},
C{upstream_port}, C{referer}, C{user_agent}, C{content_type}, C{filter},
C{filter_reason}, C{tunnel} (a boolean), C{aborted} (a boolean: the
exchange was cut off before its response was complete).  Missing values
are C{null}.

In every format, a negative duration (the clock was stepped back during
the request) is written as 0.

This module does not import C{twisted.internet}: the writer is given its
reactor.
"""

from __future__ import annotations

import os
import sys
import time
from math import floor
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii
from typing import IO, TYPE_CHECKING, Any, Callable, Optional

from twisted.logger import Logger

from proxyapp.console import checkColourMode, colourWanted, realStream

if TYPE_CHECKING:
    from twisted.internet.interfaces import IDelayedCall, IReactorTime

    from proxyapp.message import RequestHead

__all__ = [
    "AccessLogWriter",
    "AccessRecord",
    "Exchange",
    "FORMATTERS",
    "formatCombined",
    "formatJSON",
    "formatSquid",
    "openAccessLog",
    "recordFromExchange",
]


@dataclass(slots=True, kw_only=True)
class AccessRecord:
    """
    What the access log knows about one request.

    L{recordFromExchange} makes one from what the protocol logged, when the
    exchange is formatted; every attribute has a default, so a record for a
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
    @ivar referer: the request's C{Referer} header as the client sent it
        (filters may have changed or removed it since), or L{None}.
    @ivar userAgent: the request's C{User-Agent} header as the client sent
        it, or L{None}.
    @ivar contentType: the response's media type, or L{None}.
    @ivar filterName: the name of the filter that decided the outcome (e.g.
        C{"blocklist"}, C{"auth"}), or L{None}.
    @ivar filterReason: why that filter decided so, or L{None}.
    @ivar tunnel: C{True} for a CONNECT tunnel.
    @ivar aborted: C{True} if the exchange was cut off before its response
        was complete (the client or the upstream went away); never for a
        tunnel, which ends when either side closes.
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
    aborted: bool = False


Exchange = tuple[
    tuple[str, int],
    Optional["RequestHead"],
    float,
    float,
    int,
    int,
    int,
    Optional[tuple[str, int]],
    Optional[tuple[str, Optional[str]]],
    Optional[str],
    bool,
    bool,
]
"""
What the protocol hands to L{AccessLogWriter.logExchange} when an exchange
ends: a plain tuple, because building one costs a fraction of filling an
L{AccessRecord}.  In order:

  - the client's C{(host, port)};
  - the request's head, or L{None} if no request was parsed; it must not
    change afterwards, because it is read when the batch is formatted;
  - C{time.time()} when the request started, and when the exchange ended;
  - the status sent to the client, 0 if none;
  - bytes received from the client, and sent to it, heads included;
  - the upstream's C{(ip, port)}, or L{None};
  - the deciding filter's C{(name, reason)}, or L{None};
  - the response's media type, or L{None};
  - whether this was a CONNECT tunnel;
  - whether it was cut off before its response was complete.
"""


# An exchange's upstream or deciding filter when it has none.
_NOTHING = (None, None)


def recordFromExchange(
    exchange: Exchange,
    requestHeaders: bool = True,
    record: Optional[AccessRecord] = None,
) -> AccessRecord:
    """
    Make the record that describes an exchange.

    @param exchange: what the protocol logged.
    @param requestHeaders: whether to look up the C{User-Agent} and
        C{Referer} fields; a format that does not print them leaves them
        L{None}.
    @param record: a record to fill in (every attribute is set) instead of
        making a new one: a writer formatting a batch reuses one, which
        costs about half as much as making one per exchange.

    @return: C{record}, or a new record.
    """
    (
        (clientHost, clientPort),
        request,
        start,
        end,
        status,
        bytesIn,
        bytesOut,
        upstream,
        decidedBy,
        contentType,
        tunnel,
        aborted,
    ) = exchange
    if record is None:
        record = AccessRecord()
    record.start = start
    record.duration = end - start
    record.clientHost = clientHost
    record.clientPort = clientPort
    record.status = status
    record.bytesIn = bytesIn
    record.bytesOut = bytesOut
    record.contentType = contentType
    record.tunnel = tunnel
    record.aborted = aborted
    record.userAgent = record.referer = None
    if request is None:
        record.user = None
        record.method = record.target = record.version = ""
    else:
        record.user = request.user
        record.method = request.method.decode("latin-1")
        record.target = request.url()
        record.version = request.version.decode("latin-1")
        if requestHeaders:
            headers = request.headers
            userAgent = headers.received(b"user-agent")
            referer = headers.received(b"referer")
            if userAgent is not None:
                record.userAgent = userAgent.decode("latin-1")
            if referer is not None:
                record.referer = referer.decode("latin-1")
    record.upstreamHost, record.upstreamPort = upstream or _NOTHING
    record.filterName, record.filterReason = decidedBy or _NOTHING
    return record


# ---------------------------------------------------------------------------
# Escaping.  Each escaper has a fast test (a few C-level scans of a short
# string) and a slow per-character path taken only when the test fails.


def _keepTable(keep: bytes) -> bytes:
    """
    Make a C{bytes.translate} table that tells whether bytes are all in a
    set.

    C{bytes.translate} returns its argument itself when no byte changed, so
    C{raw.translate(table) is raw} holds exactly when every byte of C{raw}
    is in C{keep}: one C-level scan, about three times faster than
    C{str.isprintable}, and testing for any set of bytes at once.

    @param keep: the bytes in the set.

    @return: a 256-byte table mapping each byte of C{keep} to itself and
        every other byte to a different one.
    """
    return bytes(code if code in keep else (code + 1) % 256 for code in range(256))


_PRINTABLE = bytes(range(0x20, 0x7F))

# Bytes that Apache writes as they are: printable ASCII except '"' and "\\".
_APACHE_CLEAN = _keepTable(_PRINTABLE.replace(b'"', b"").replace(b"\\", b""))


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


def _apacheClean(value: str) -> bool:
    """
    Tell whether text needs no escaping in the combined format.

    @param value: any text.

    @return: C{True} if C{value} is printable ASCII without C{"} or C{\\}.
    """
    return value.isascii() and (raw := value.encode()).translate(_APACHE_CLEAN) is raw


# Header values (user agents, referers) known to need no escaping.  The same
# few values come back request after request, and a set lookup costs less
# than a scan, the more so the longer the value.  Cleared when it has grown
# to _CLEAN_HEADERS_LIMIT entries.
_cleanHeaders: set[str] = set()
_CLEAN_HEADERS_LIMIT = 1024


def _checkHeader(value: str) -> bool:
    """
    Tell whether a header value needs no escaping in the combined format,
    and remember it in L{_cleanHeaders} if so.

    @param value: the header value.

    @return: C{True} if C{value} is printable ASCII without C{"} or C{\\}.
    """
    if not _apacheClean(value):
        return False
    if len(_cleanHeaders) >= _CLEAN_HEADERS_LIMIT:
        _cleanHeaders.clear()
    _cleanHeaders.add(value)
    return True


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


def _userWire(user: str) -> str:
    """
    A user name as the text its UTF-8 bytes would be as ISO-8859-1, so the
    escapes (which reproduce ISO-8859-1 text byte for byte) write the bytes
    a client's credentials carry: C{%c3%bc} for C{ü}, as Squid logs it.
    Unlike fields read off the wire, a user name is text (authentication
    decodes it as UTF-8), and its characters below U+0100 are not bytes.
    """
    if user.isascii():
        return user
    try:
        raw = user.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        # A surrogate that stands for no byte: as its UTF-8 form.
        raw = b"".join(_utf8Bytes(char) for char in user)
    return raw.decode("latin-1")


def _utf8Bytes(char: str) -> bytes:
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
    for char in _userWire(user):
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


# Printable ASCII but the space: what Squid's method and URL fields keep.
_SQUID_CLEAN = _keepTable(bytes(range(0x21, 0x7F)))

# The media type Squid logs, by Content-Type value: the same few values come
# back response after response.  Cleared when it has grown to
# _SQUID_MEDIA_TYPES_LIMIT entries.
_squidMediaTypes: dict[str, str] = {}
_SQUID_MEDIA_TYPES_LIMIT = 256


def _cacheSquidMediaType(contentType: str) -> str:
    """
    Reduce a content type to the media type Squid logs, and cache it in
    L{_squidMediaTypes}.

    @param contentType: a media type or a whole C{Content-Type} value.

    @return: the same as L{_squidMediaType}.
    """
    mediaType = _squidMediaType(contentType)
    if len(_squidMediaTypes) >= _SQUID_MEDIA_TYPES_LIMIT:
        _squidMediaTypes.clear()
    _squidMediaTypes[contentType] = mediaType
    return mediaType


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

# The combined format's cache: the text around the time stamp for starts in
# [_combinedFrom, _combinedUntil), which float comparisons test more cheaply
# than int() would.
_combinedFrom = 0.0
_combinedUntil = 0.0
_combinedStamp = ""
_combinedAnonymous = ""
_squidSecond = -1
_squidStamp = ""
_jsonSecond = -1
_jsonStamp = ""

# "000" to "999": milliseconds and status codes without a format spec, which
# costs about 0.25 us each in an f-string.
_THREE_DIGITS = tuple("%03d" % number for number in range(1000))

# Squid's elapsed milliseconds, right-aligned in six columns: "   150".
_SQUID_ELAPSED = tuple(str(number).rjust(6) for number in range(1000))


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


# "0" to "999": small numbers without int.__format__.
_DECIMAL = tuple(str(number) for number in range(1000))

# The text between the request line and the bytes, by status: '" 200 '.
_COMBINED_STATUS = ('" - ',) + tuple(f'" {text} ' for text in _DECIMAL[1:])

# The text between the user agent and the upstream, by duration in whole
# milliseconds: '" 150 '.
_COMBINED_MILLISECONDS = tuple(f'" {number} ' for number in range(1000))


# The combined format's text from "upstream=" to the end of the line, by
# (client host, client port, upstream host, upstream port): the same for
# every request on a keep-alive connection.  Cleared when it has grown to
# _COMBINED_TAILS_LIMIT entries.
_combinedTails: dict[tuple[str, int, Optional[str], Optional[int]], str] = {}
_COMBINED_TAILS_LIMIT = 1024


def _combinedTail(key: tuple[str, int, Optional[str], Optional[int]]) -> str:
    """
    Format and cache the end of a combined line for a record without a
    filter.

    @param key: the client host and port and the upstream host and port.

    @return: e.g. C{"upstream=192.0.2.1:80 filter=- client=127.0.0.1:5000\\n"}.
    """
    clientHost, clientPort, upstreamHost, upstreamPort = key
    tail = (
        f"upstream={_hostPort(upstreamHost, upstreamPort)} filter=- "
        f"client={_hostPort(clientHost, clientPort)}\n"
    )
    if len(_combinedTails) >= _COMBINED_TAILS_LIMIT:
        _combinedTails.clear()
    _combinedTails[key] = tail
    return tail


def _cacheCombinedSecond(start: float) -> None:
    """
    Make the combined format's time stamp cache describe the second of
    C{start}.

    @param start: a record's start time.
    """
    global _combinedFrom, _combinedUntil, _combinedStamp, _combinedAnonymous
    second = int(start)
    stamp = _combinedTime(second)
    _combinedStamp = f' [{stamp}] "'
    _combinedAnonymous = f" - -{_combinedStamp}"
    if second >= 0:
        _combinedFrom = float(second)
        _combinedUntil = second + 1.0
    else:
        # int() truncates towards zero, so [second, second + 1) is not
        # this second's interval: do not cache.
        _combinedFrom = _combinedUntil = 0.0


def formatCombined(record: AccessRecord) -> str:
    """
    Format a record in the combined format (see the module docstring).

    @param record: the request to describe.

    @return: one line ending in C{"\\n"}.
    """
    start = record.start
    if not _combinedFrom <= start < _combinedUntil:
        _cacheCombinedSecond(start)
    method = record.method
    version = record.version
    request = f"{method} {record.target} {version}"
    userAgent = record.userAgent
    referer = record.referer
    user = record.user
    filterName = record.filterName
    # Whatever would need escaping, or a request line without its method
    # or version, goes the slow way; the request line is scanned as a whole
    # (the spaces are clean), the headers through a cache.
    if (
        not (method and version)
        or not request.isascii()
        or (raw := request.encode()).translate(_APACHE_CLEAN) is not raw
        or (
            userAgent is not None
            and userAgent not in _cleanHeaders
            and not _checkHeader(userAgent)
        )
        or (
            referer is not None
            and referer not in _cleanHeaders
            and not _checkHeader(referer)
        )
        or (
            (user is not None or filterName is not None)
            and not _apacheClean(
                f"{user or ''}{filterName or ''}{record.filterReason or ''}"
            )
        )
    ):
        return _formatCombinedEscaped(record)

    # Nothing needs escaping from here on.
    status = record.status
    bytesOut = record.bytesOut
    elapsed = floor(record.duration * 1e6 + 0.5) // 1000
    clientHost = record.clientHost
    if filterName is None:
        key = (clientHost, record.clientPort, record.upstreamHost, record.upstreamPort)
        tail = _combinedTails.get(key)
        if tail is None:
            tail = _combinedTail(key)
    else:
        reason = record.filterReason
        tail = (
            f"upstream={_hostPort(record.upstreamHost, record.upstreamPort)} "
            f"filter={filterName if reason is None else f'{filterName}:{chr(34)}{reason}{chr(34)}'} "
            f"client={_hostPort(clientHost, record.clientPort)}\n"
        )
    return (
        f"{clientHost}"
        f"{_combinedAnonymous if user is None else f' - {user or chr(34) * 2}{_combinedStamp}'}"
        f"{request}"
        f"{_COMBINED_STATUS[status] if 0 <= status < 1000 else _COMBINED_STATUS[0] if status < 0 else f'{chr(34)} {status} '}"
        f'{bytesOut if bytesOut else "-"}'
        f"""{' "-" "' if referer is None else f' "{referer}" "'}"""
        f'{"-" if userAgent is None else userAgent}'
        f"{_COMBINED_MILLISECONDS[elapsed] if 0 <= elapsed < 1000 else f'{chr(34)} {max(elapsed, 0)} '}"
        f"{tail}"
    )


def _formatCombinedEscaped(record: AccessRecord) -> str:
    """
    Format a record in the combined format (see the module docstring).

    @param record: the request to describe.

    @return: one line ending in C{"\\n"}.
    """
    user = record.user
    if user is None:
        userText = "-"
    elif user:
        userText = _escapeApache(_userWire(user))
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
        f"{record.clientHost} - {userText}{_combinedStamp}"
        f'{request}" {status if status > 0 else "-"} '
        f'{bytesOut if bytesOut else "-"} '
        f'"{"-" if referer is None else _escapeApache(referer)}" '
        f'"{"-" if userAgent is None else _escapeApache(userAgent)}" '
        f"{elapsed // 1000} "
        f"upstream={_hostPort(record.upstreamHost, record.upstreamPort)} "
        f"filter={filterText} "
        f"client={_hostPort(record.clientHost, record.clientPort)}\n"
    )


# Header values (user agents, referers) as received, known to need no
# escaping in the combined format, and their text.  Cleared when it has grown
# to _CLEAN_HEADERS_LIMIT entries.
_cleanHeaderTexts: dict[bytes, str] = {}


def _cleanHeaderText(value: bytes) -> Optional[str]:
    """
    Tell whether a header value as received needs no escaping in the
    combined format, and remember its text in L{_cleanHeaderTexts} if so.

    @param value: the header value.

    @return: its text, or L{None} if it needs escaping.
    """
    if value.translate(_APACHE_CLEAN) is not value:
        return None
    text = value.decode("ascii")
    if len(_cleanHeaderTexts) >= _CLEAN_HEADERS_LIMIT:
        _cleanHeaderTexts.clear()
    _cleanHeaderTexts[value] = text
    return text


def _combinedLines(exchanges: list[Exchange]) -> list[str]:
    """
    Format exchanges in the combined format.

    Each line is C{formatCombined(recordFromExchange(exchange))}.  The
    exchanges a proxy sees most (no user, no deciding filter, nothing to
    escape) are formatted straight from the tuple, which costs about half
    as much as making a record and formatting that; the rest are formatted
    through a record.

    @param exchanges: what the protocol logged.

    @return: one line per exchange, in order.
    """
    lines: list[str] = []
    append = lines.append
    texts = _cleanHeaderTexts
    for exchange in exchanges:
        (
            client,
            request,
            start,
            end,
            status,
            _,
            bytesOut,
            upstream,
            decidedBy,
            _,
            _,
            _,
        ) = exchange
        if (
            request is None
            or decidedBy is not None
            or request.user is not None
            or not 0 <= status < 1000
        ):
            append(formatCombined(recordFromExchange(exchange)))
            continue
        method = request.method
        version = request.version
        requestLine = b" ".join((method, request.target, version))
        headers = request.headers
        userAgent = headers.received(b"user-agent")
        referer = headers.received(b"referer")
        userAgentText: Optional[str] = "-"
        if userAgent is not None:
            userAgentText = texts.get(userAgent)
            if userAgentText is None:
                userAgentText = _cleanHeaderText(userAgent)
        refererText: Optional[str] = "-"
        if referer is not None:
            refererText = texts.get(referer)
            if refererText is None:
                refererText = _cleanHeaderText(referer)
        if (
            userAgentText is None
            or refererText is None
            or not (method and version)
            or requestLine.translate(_APACHE_CLEAN) is not requestLine
        ):
            append(formatCombined(recordFromExchange(exchange)))
            continue
        if not _combinedFrom <= start < _combinedUntil:
            _cacheCombinedSecond(start)
        # The same key as formatCombined's: (client host, client port,
        # upstream host, upstream port).
        key: tuple[str, int, Optional[str], Optional[int]]
        key = client + (upstream or _NOTHING)  # type: ignore[assignment]
        tail = _combinedTails.get(key)
        if tail is None:
            tail = _combinedTail(key)
        elapsed = floor((end - start) * 1e6 + 0.5) // 1000
        append(
            f"{client[0]}{_combinedAnonymous}{requestLine.decode('ascii')}"
            f"{_COMBINED_STATUS[status]}"
            f'{bytesOut if bytesOut else "-"}'
            f"""{' "-" "' if referer is None else f' "{refererText}" "'}"""
            f"{userAgentText}"
            f"{_COMBINED_MILLISECONDS[elapsed] if 0 <= elapsed < 1000 else f'{chr(34)} {max(elapsed, 0)} '}"
            f"{tail}"
        )
    return lines


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
    end = (record.start + duration) * 1e6 + 0.5
    # floor() is cheaper than int() and the same for non-negative numbers.
    micros = floor(end) if end >= 0.0 else int(end)
    elapsed = floor(duration * 1e6 + 0.5) // 1000
    second = micros // 1000000
    if second != _squidSecond:
        _squidStamp = "%9d." % (second,)
        _squidSecond = second
    status = record.status
    method = record.method
    if method:
        target = record.target
        probe = f"{method}{target}"
        if probe.isascii() and (raw := probe.encode()).translate(_SQUID_CLEAN) is raw:
            url = target or "-"
        else:
            method = _percentEncode(method)
            url = _percentEncode(target) if target else "-"
    else:
        method = "NONE"
        url = "error:invalid-request"
    upstream = record.upstreamHost
    if record.filterName is not None:
        result = _squidResult(record)
    elif record.tunnel:
        result = "TCP_TUNNEL"
    elif upstream is not None:
        result = "TCP_MISS"
    else:
        result = "NONE_NONE"
    if record.aborted:
        result += "_ABORTED"
    user = record.user
    contentType = record.contentType
    if contentType is None:
        mediaType = "-"
    else:
        mediaType = _squidMediaTypes.get(contentType) or _cacheSquidMediaType(
            contentType
        )
    return (
        f"{_squidStamp}{_THREE_DIGITS[micros // 1000 % 1000]} "
        f"{_SQUID_ELAPSED[elapsed] if 0 <= elapsed < 1000 else str(max(elapsed, 0)).rjust(6)} "
        f"{record.clientHost} {result}/"
        f"{_THREE_DIGITS[status] if 0 <= status < 1000 else status} "
        f"{record.bytesOut} {method} {url} {'-' if user is None else _squidUser(user)} "
        f'{"HIER_NONE/-" if upstream is None else f"HIER_DIRECT/{upstream}"} '
        f"{mediaType}\n"
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
    # floor() is cheaper than int() and, clamped at 0, the same.
    duration = floor(record.duration * 1e6 + 0.5)
    if duration < 0:
        duration = 0
    status = record.status
    # Optional strings are inlined rather than passed to a helper: a Python
    # call per field would cost more than the encoding itself.
    quote = encode_basestring_ascii
    user = record.user
    key = (
        record.clientHost,
        record.clientPort,
        record.upstreamHost,
        record.upstreamPort,
    )
    addresses = _jsonAddresses.get(key)
    if addresses is None:
        addresses = _cacheJSONAddresses(key)
    referer = record.referer
    userAgent = record.userAgent
    contentType = record.contentType
    filterName = record.filterName
    filterReason = record.filterReason
    method = record.method
    requestLine = (
        f'"method":{quote(method)},"target":{quote(record.target)},'
        f'"version":{quote(record.version)},'
        if method
        else _JSON_UNPARSED
    )
    return (
        f'{{"time":"{_jsonStamp}.{_THREE_DIGITS[micros // 1000 % 1000]}Z",'
        f"{addresses[0]}"
        f'"user":{"null" if user is None else quote(user)},'
        f"{requestLine}"
        f'"status":{_DECIMAL[status] if 0 <= status < 1000 else status},'
        f'"bytes_in":{record.bytesIn},'
        f'"bytes_out":{record.bytesOut},'
        f'"duration_ms":{_DECIMAL[duration // 1000] if duration < 1000000 else duration // 1000}.{_THREE_DIGITS[duration % 1000]},'
        f"{addresses[1]}"
        f'"referer":{"null" if referer is None else quote(referer)},'
        f'"user_agent":{"null" if userAgent is None else quote(userAgent)},'
        f'"content_type":{"null" if contentType is None else quote(contentType)},'
        f'"filter":{"null" if filterName is None else quote(filterName)},'
        f'"filter_reason":{"null" if filterReason is None else quote(filterReason)},'
        f'"tunnel":{"true" if record.tunnel else "false"},'
        f'"aborted":{"true" if record.aborted else "false"}}}\n'
    )


# A request never parsed: no method, target or version ("Missing values
# are null").
_JSON_UNPARSED = '"method":null,"target":null,"version":null,'


# The JSON format's address members, by (client host, client port, upstream
# host, upstream port): the same for every request on a keep-alive
# connection.  Cleared when it has grown to _JSON_ADDRESSES_LIMIT entries.
_jsonAddresses: dict[tuple[str, int, Optional[str], Optional[int]], tuple[str, str]] = (
    {}
)
_JSON_ADDRESSES_LIMIT = 1024


def _cacheJSONAddresses(
    key: tuple[str, int, Optional[str], Optional[int]],
) -> tuple[str, str]:
    """
    Format and cache the address members of a JSON line.

    @param key: the client host and port and the upstream host and port.

    @return: the C{client_ip} and C{client_port} members, and the
        C{upstream_ip} and C{upstream_port} members, each with its
        trailing comma.
    """
    clientHost, clientPort, upstreamHost, upstreamPort = key
    quote = encode_basestring_ascii
    addresses = (
        f'"client_ip":{quote(clientHost)},"client_port":{clientPort},',
        f'"upstream_ip":{"null" if upstreamHost is None else quote(upstreamHost)},'
        f'"upstream_port":{"null" if upstreamPort is None else upstreamPort},',
    )
    if len(_jsonAddresses) >= _JSON_ADDRESSES_LIMIT:
        _jsonAddresses.clear()
    _jsonAddresses[key] = addresses
    return addresses


FORMATTERS: dict[str, Callable[[AccessRecord], str]] = {
    "combined": formatCombined,
    "squid": formatSquid,
    "json": formatJSON,
}
"""
The formatters by the name users give them (C{--access-log-format}).
"""

# The record fields a built-in format does not print, so that the protocol
# need not look them up (see L{AccessLogWriter.logsContentType}).
_UNPRINTED: dict[Callable[[AccessRecord], str], frozenset[str]] = {
    formatCombined: frozenset(["contentType"]),
    formatSquid: frozenset(["userAgent", "referer"]),
}


# The formatters that format a batch of exchanges faster than through one
# record each (see L{AccessLogWriter.logExchange}).
_BATCH_FORMATTERS: dict[
    Callable[[AccessRecord], str], Callable[[list[Exchange]], list[str]]
] = {
    formatCombined: _combinedLines,
}

# About how many characters a line takes, to turn bufferLimit into a number
# of waiting exchanges.
_LINE_ESTIMATE = 128

# The most exchanges kept waiting.  Each keeps its request head alive; a few
# hundred of them make the cyclic garbage collector's young generations
# work noticeably harder (3,000 more instructions per request at 512 than at
# 64 or 128, measured with bench/instructions.py), while a batch of 64
# already spreads the write over enough lines.
_BATCH_LIMIT = 64


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
    @ivar logsContentType: whether the format prints the response's
        C{contentType} (the protocol does not look it up otherwise).
    @ivar logsRequestHeaders: whether the format prints the request's
        C{userAgent} and C{referer} (the protocol does not look them up
        otherwise).
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
        unprinted = _UNPRINTED.get(formatter, frozenset())
        self.logsContentType = "contentType" not in unprinted
        self.logsRequestHeaders = not {"userAgent", "referer"} <= unprinted
        self._flushInterval = flushInterval
        self._bufferLimit = bufferLimit
        self._formatExchanges = _BATCH_FORMATTERS.get(formatter)
        self._pending: list[Exchange] = []
        # Filled anew for each exchange formatted through a record.
        self._scratch = AccessRecord()
        self._pendingLimit = max(1, min(_BATCH_LIMIT, bufferLimit // _LINE_ESTIMATE))
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

    def logExchange(self, exchange: Exchange) -> None:
        """
        Keep an exchange to be formatted with the next batch.

        This is all the work done as the request ends: the batch is
        formatted and written when C{bufferLimit} characters' worth of exchanges (at 128
        characters a line, at most 64 exchanges) are waiting, or when the
        flush timer fires.

        @param exchange: the finished exchange.  The writer keeps it, and
            the request head in it, until the batch is written.
        """
        if self._closed:
            self._reportError("Access log {file} is closed; dropping records")
            return
        pending = self._pending
        pending.append(exchange)
        if len(pending) >= self._pendingLimit:
            self.flush()
        elif self._timer is None:
            self._timer = self._reactor.callLater(self._flushInterval, self._timedFlush)

    def log(self, record: AccessRecord) -> None:
        """
        Format a record and buffer the line.

        @param record: the finished request.  It is not kept.
        """
        if self._closed:
            self._reportError("Access log {file} is closed; dropping records")
            return
        if self._pending:
            self._formatPending()
        line = self._format(record)
        if line is None:
            return
        self._buffer.append(line)
        buffered = self._buffered + len(line)
        self._buffered = buffered
        if buffered >= self._bufferLimit:
            self.flush()
        elif self._timer is None:
            self._timer = self._reactor.callLater(self._flushInterval, self._timedFlush)

    def _format(self, record: AccessRecord) -> Optional[str]:
        """
        Format one record, coloured if wanted.

        @return: the line, or L{None} if the formatter failed (the first
            failure is reported).
        """
        try:
            line = self._formatter(record)
        except Exception:
            if not self._formatFailing:
                self._formatFailing = True
                self._log.failure("Access log: cannot format {record!r}", record=record)
            return None
        if self._colorize:
            line = _colourLine(line, record.status)
        return line

    def _formatPending(self) -> None:
        """
        Format the waiting exchanges into the buffer, in one batch when the
        format has a batch formatter.  If the batch fails, each exchange is
        formatted on its own, so that only the ones that cannot be are
        dropped.
        """
        exchanges = self._pending
        self._pending = []
        lines: Optional[list[str]] = None
        formatExchanges = self._formatExchanges
        if formatExchanges is not None:
            try:
                lines = formatExchanges(exchanges)
            except Exception:
                lines = None
            else:
                if self._colorize:
                    lines = [
                        _colourLine(line, exchange[4])
                        for line, exchange in zip(lines, exchanges)
                    ]
        if lines is None:
            lines = []
            for exchange in exchanges:
                try:
                    record = recordFromExchange(
                        exchange, self.logsRequestHeaders, self._scratch
                    )
                except Exception:
                    if not self._formatFailing:
                        self._formatFailing = True
                        self._log.failure(
                            "Access log: cannot describe {exchange!r}",
                            exchange=exchange,
                        )
                    continue
                line = self._format(record)
                if line is not None:
                    lines.append(line)
        self._buffer.extend(lines)
        self._buffered += sum(map(len, lines))

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
        if self._pending:
            self._formatPending()
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

    def reopen(self) -> bool:
        """
        Flush, then switch to a newly opened file (for C{logrotate}).

        Lines logged before this call go to the old file.  If C{opener}
        fails, the error is reported and the old file stays in use, so no
        line is lost.  The old file is closed unless it is a standard
        stream or the very object C{opener} returned again.

        @return: whether the new file is now in use.
        """
        if self._closed:
            return False
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
            return False
        oldFile = self.file
        self.file = newFile
        self._colorize = self._decideColour(newFile)
        self._failing = False
        if oldFile is not newFile:
            self._closeFile(oldFile)
        return True

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
