# -*- test-case-name: tests.test_accesslog -*-
"""
Tests for L{proxyapp.accesslog}.
"""

from __future__ import annotations

import errno
import io
import json
import os
import sys
import time
from typing import Any, Callable, Optional

from hypothesis import given, settings
from hypothesis import strategies as st

from twisted.internet.task import Clock
from twisted.logger import Logger, LoggingFile, LogLevel, capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from proxyapp.accesslog import (
    FORMATTERS,
    AccessLogWriter,
    AccessRecord,
    Exchange,
    _combinedLines,
    formatCombined,
    formatJSON,
    formatSquid,
    openAccessLog,
    recordFromExchange,
)
from proxyapp.message import Headers, RequestHead
from tests import temporaryDirectory

# 1700000000 is 2023-11-14T22:13:20Z.
START = 1700000000.123


def makeRecord(**fields: Any) -> AccessRecord:
    """
    Make a record for a plain proxied GET, with some fields replaced.

    @param fields: attributes to set instead of the defaults used here.

    @return: the record.
    """
    values: dict[str, Any] = dict(
        start=START,
        duration=0.15,
        clientHost="127.0.0.1",
        clientPort=54321,
        method="GET",
        target="http://example.com/",
        version="HTTP/1.1",
        status=200,
        bytesIn=78,
        bytesOut=1234,
        upstreamHost="93.184.216.34",
        upstreamPort=80,
        userAgent="curl/8.4.0",
        contentType="text/html",
    )
    values.update(fields)
    return AccessRecord(**values)


def makeExchange(
    *,
    request: Optional[RequestHead] = None,
    status: int = 200,
    upstream: Optional[tuple[str, int]] = ("93.184.216.34", 80),
    decidedBy: Optional[tuple[str, Optional[str]]] = None,
    contentType: Optional[str] = "text/html",
) -> Exchange:
    """
    Make an exchange as the protocol logs it: by default, a proxied GET
    with a User-Agent that took 0.15 s.

    @return: the exchange.
    """
    if request is None:
        request = RequestHead(
            b"GET",
            b"http://example.com/",
            b"HTTP/1.1",
            Headers._fromBlock(b"Host: example.com\r\nUser-Agent: curl/8.4.0\r\n"),
        )
    return (
        ("127.0.0.1", 54321),
        request,
        START,
        START + 0.15,
        status,
        78,
        1234,
        upstream,
        decidedBy,
        contentType,
        False,
        False,
    )


def connectRecord(**fields: Any) -> AccessRecord:
    """
    Make a record for a CONNECT tunnel, with some fields replaced.

    @param fields: attributes to set instead of the defaults used here.

    @return: the record.
    """
    values: dict[str, Any] = dict(
        method="CONNECT",
        target="example.com:443",
        bytesOut=5000,
        upstreamPort=443,
        userAgent=None,
        contentType=None,
        tunnel=True,
    )
    values.update(fields)
    return makeRecord(**values)


class FakeTerminal(io.StringIO):
    """
    An in-memory text stream that claims to be a terminal.
    """

    def isatty(self) -> bool:
        """
        @return: C{True}.
        """
        return True


class RecordingFile(io.StringIO):
    """
    An in-memory text stream that counts C{write} calls and can be told to
    fail them.

    @ivar writes: the number of C{write} calls.
    @ivar error: the exception C{write} raises, or L{None}.
    """

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0
        self.error: Exception | None = None
        self.closedForTest = False

    def write(self, text: str) -> int:
        """
        Count the call, then fail with L{error} or write C{text}.

        @param text: the text to write.

        @return: the number of characters written.
        """
        self.writes += 1
        if self.error is not None:
            raise self.error
        return super().write(text)

    def close(self) -> None:
        """
        Mark the file closed without discarding its contents, so tests can
        still read them.
        """
        self.closedForTest = True


class AccessRecordTests(SynchronousTestCase):
    """
    Tests for L{AccessRecord}.
    """

    def test_defaults(self) -> None:
        """
        Every attribute has a default describing a request about which
        nothing is known yet.
        """
        record = AccessRecord()
        self.assertEqual(
            (
                record.start,
                record.duration,
                record.clientHost,
                record.clientPort,
                record.user,
                record.method,
                record.target,
                record.version,
                record.status,
                record.bytesIn,
                record.bytesOut,
                record.upstreamHost,
                record.upstreamPort,
                record.referer,
                record.userAgent,
                record.contentType,
                record.filterName,
                record.filterReason,
                record.tunnel,
            ),
            (
                0.0,
                0.0,
                "-",
                0,
                None,
                "",
                "",
                "",
                0,
                0,
                0,
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                False,
            ),
        )

    def test_slots(self) -> None:
        """
        Records have no instance dictionary, so a misspelt attribute is an
        error instead of a silently ignored value.
        """
        record = AccessRecord()
        self.assertFalse(hasattr(record, "__dict__"))
        with self.assertRaises(AttributeError):
            record.statusCode = 200  # type: ignore[attr-defined]

    def test_newRecord(self) -> None:
        """
        L{AccessLogWriter.newRecord} makes a new record with the defaults
        each time.
        """
        writer = AccessLogWriter(Clock(), io.StringIO, formatCombined)
        first = writer.newRecord()
        self.assertEqual(first, AccessRecord())
        self.assertIsNot(writer.newRecord(), first)

    def test_mutable(self) -> None:
        """
        Attributes can be assigned as the request proceeds.
        """
        record = AccessRecord(start=1.0)
        record.status = 404
        record.bytesOut += 10
        self.assertEqual((record.status, record.bytesOut), (404, 10))


class RecordFromExchangeTests(SynchronousTestCase):
    """
    Tests for L{recordFromExchange}.
    """

    def test_proxied(self) -> None:
        """
        Every field of the record comes from the exchange; text is decoded
        from the wire with ISO-8859-1.
        """
        request = RequestHead(
            b"GET",
            b"http://example.com/\xe9",
            b"HTTP/1.1",
            Headers._fromBlock(
                b"Host: example.com\r\nreferer: http://a/\r\nUSER-AGENT: ua\xff\r\n"
            ),
        )
        request.user = "alice"
        record = recordFromExchange(
            makeExchange(
                request=request,
                status=403,
                decidedBy=("blocklist", "example.com"),
                contentType="text/plain",
            )
        )
        self.assertEqual(
            record,
            makeRecord(
                duration=START + 0.15 - START,
                user="alice",
                target="http://example.com/\xe9",
                status=403,
                referer="http://a/",
                userAgent="ua\xff",
                contentType="text/plain",
                filterName="blocklist",
                filterReason="example.com",
            ),
        )

    def test_addedFields(self) -> None:
        """
        Fields added to the head after it was received are found too.
        """
        request = RequestHead(b"GET", b"http://example.com/")
        request.headers.add(b"User-Agent", b"added")
        record = recordFromExchange(makeExchange(request=request))
        self.assertEqual((record.userAgent, record.referer), ("added", None))

    def test_withoutRequestHeaders(self) -> None:
        """
        Asked not to, it leaves the user agent and referer unset.
        """
        record = recordFromExchange(makeExchange(), requestHeaders=False)
        self.assertEqual((record.method, record.userAgent), ("GET", None))

    def test_refill(self) -> None:
        """
        A record given to fill in is filled completely: nothing of the
        exchange it described before carries over.
        """
        request = RequestHead(
            b"GET",
            b"http://example.com/",
            headers=Headers._fromBlock(b"User-Agent: a\r\nReferer: b\r\n"),
        )
        request.user = "alice"
        busy = makeExchange(request=request, decidedBy=("auth", "no"))
        exchange = makeExchange(upstream=None)
        bare = (exchange[0], None) + exchange[2:]
        for later in (exchange, bare):
            record = recordFromExchange(busy)
            self.assertIs(recordFromExchange(later, True, record), record)  # type: ignore[arg-type]
            self.assertEqual(record, recordFromExchange(later))  # type: ignore[arg-type]

    def test_noRequest(self) -> None:
        """
        An exchange without a request head, no upstream and no deciding
        filter has those fields at their defaults.
        """
        exchange = makeExchange(upstream=None)
        record = recordFromExchange((exchange[0], None) + exchange[2:])
        self.assertEqual(
            (
                record.method,
                record.target,
                record.version,
                record.user,
                record.userAgent,
                record.upstreamHost,
                record.upstreamPort,
                record.filterName,
                record.filterReason,
            ),
            ("", "", "", None, None, None, None, None, None),
        )


class FormatCombinedTests(SynchronousTestCase):
    """
    Tests for L{formatCombined}.
    """

    def test_proxied(self) -> None:
        """
        A proxied request is written in the combined format followed by the
        duration, the upstream address, the filter and the client's
        address with its port.
        """
        self.assertEqual(
            formatCombined(makeRecord()),
            '127.0.0.1 - - [14/Nov/2023:22:13:20 +0000] "GET http://example.com/'
            ' HTTP/1.1" 200 1234 "-" "curl/8.4.0" 150 upstream=93.184.216.34:80'
            " filter=- client=127.0.0.1:54321\n",
        )

    def test_missingValues(self) -> None:
        """
        A request that was never parsed nor answered is written with Apache's
        placeholders: C{"-"} for the request line, C{-} for status and bytes.
        """
        record = AccessRecord(start=START, clientHost="10.0.0.1", clientPort=1)
        self.assertEqual(
            formatCombined(record),
            '10.0.0.1 - - [14/Nov/2023:22:13:20 +0000] "-" - - "-" "-" 0'
            " upstream=- filter=- client=10.0.0.1:1\n",
        )

    def test_noVersion(self) -> None:
        """
        A request line without a version is written without one.
        """
        self.assertIn(
            '"GET http://example.com/" 200',
            formatCombined(makeRecord(version="")),
        )

    def test_user(self) -> None:
        """
        The user is written as is, C{""} when empty, and escaped.
        """
        self.assertIn(" - alice [", formatCombined(makeRecord(user="alice")))
        self.assertIn(' - "" [', formatCombined(makeRecord(user="")))
        self.assertIn(' - a\\"b [', formatCombined(makeRecord(user='a"b')))

    def test_userNonAscii(self) -> None:
        """
        A non-ASCII user name is written as its UTF-8 bytes, escaped, as the
        client's credentials carry it (authentication decodes it as UTF-8);
        before, characters below U+0100 were written as one ISO-8859-1 byte.
        A name that was not UTF-8 keeps its bytes.
        """
        self.assertIn(
            " - \\xc3\\xbcml\\xe2\\x82\\xac [",
            formatCombined(makeRecord(user="\xfcml\u20ac")),
        )
        self.assertIn(
            " - \\xff [",
            formatCombined(makeRecord(user=b"\xff".decode("utf-8", "surrogateescape"))),
        )

    def test_escaping(self) -> None:
        """
        Quotes, backslashes, control characters and non-ASCII characters are
        escaped as Apache escapes them; ISO-8859-1 characters as their byte,
        others as their UTF-8 bytes.
        """
        record = makeRecord(
            target='http://example.com/"q"',
            referer="http://r/\\x",
            userAgent='a"b\\c\nd\re\tf\bg\vh\x01i\x7fj\xe9k\u20acl',
        )
        self.assertEqual(
            formatCombined(record),
            '127.0.0.1 - - [14/Nov/2023:22:13:20 +0000] "GET'
            ' http://example.com/\\"q\\" HTTP/1.1" 200 1234 "http://r/\\\\x"'
            ' "a\\"b\\\\c\\nd\\re\\tf\\bg\\vh\\x01i\\x7fj\\xe9k\\xe2\\x82\\xacl"'
            " 150 upstream=93.184.216.34:80 filter=- client=127.0.0.1:54321\n",
        )

    def test_escapingASCII(self) -> None:
        """
        ASCII-only text with control characters is escaped the same way.
        """
        self.assertIn(
            '"a\\x01\\x7f\\t\\"b"',
            formatCombined(makeRecord(userAgent='a\x01\x7f\t"b')),
        )

    def test_surrogateEscape(self) -> None:
        """
        A character produced by C{surrogateescape} decoding is written as the
        byte it stands for.
        """
        userAgent = b"x\xffy".decode("utf-8", "surrogateescape")
        self.assertIn('"x\\xffy"', formatCombined(makeRecord(userAgent=userAgent)))

    def test_ipv6(self) -> None:
        """
        An IPv6 client is written as is, an IPv6 upstream in brackets.
        """
        record = makeRecord(
            clientHost="2001:db8::2", upstreamHost="2001:db8::1", upstreamPort=443
        )
        line = formatCombined(record)
        self.assertTrue(line.startswith("2001:db8::2 - - ["), line)
        self.assertIn(" upstream=[2001:db8::1]:443 ", line)
        self.assertIn(" client=[2001:db8::2]:", line)

    def test_upstreamWithoutPort(self) -> None:
        """
        An upstream address without a port is written alone.
        """
        self.assertIn(
            " upstream=192.0.2.1 ",
            formatCombined(makeRecord(upstreamHost="192.0.2.1", upstreamPort=None)),
        )

    def test_connect(self) -> None:
        """
        A CONNECT tunnel is written with its authority-form target.
        """
        self.assertEqual(
            formatCombined(connectRecord()),
            '127.0.0.1 - - [14/Nov/2023:22:13:20 +0000] "CONNECT example.com:443'
            ' HTTP/1.1" 200 5000 "-" "-" 150 upstream=93.184.216.34:443'
            " filter=- client=127.0.0.1:54321\n",
        )

    def test_filter(self) -> None:
        """
        The deciding filter is written with its escaped reason, or alone.
        """
        denied = makeRecord(
            status=403,
            upstreamHost=None,
            upstreamPort=None,
            filterName="blocklist",
            filterReason='host "example.com" is listed',
        )
        self.assertIn(
            ' upstream=- filter=blocklist:"host \\"example.com\\" is listed" client=',
            formatCombined(denied),
        )
        self.assertIn(
            " filter=auth client=", formatCombined(makeRecord(filterName="auth"))
        )

    def test_duration(self) -> None:
        """
        The duration is written in whole milliseconds, truncated.
        """
        self.assertIn('" 0 upstream', formatCombined(makeRecord(duration=0.0009)))
        self.assertIn('" 1 upstream', formatCombined(makeRecord(duration=0.001)))
        self.assertIn('" 12345 upstream', formatCombined(makeRecord(duration=12.3456)))

    def test_timestamps(self) -> None:
        """
        Time stamps are right when consecutive records alternate between
        seconds, months and years (the per-second cache is invalidated).
        """
        for start, expected in [
            (946684799.9, "[31/Dec/1999:23:59:59 +0000]"),
            (946684800.0, "[01/Jan/2000:00:00:00 +0000]"),
            (946684799.1, "[31/Dec/1999:23:59:59 +0000]"),
            (START, "[14/Nov/2023:22:13:20 +0000]"),
            (START + 0.5, "[14/Nov/2023:22:13:20 +0000]"),
            (START + 1, "[14/Nov/2023:22:13:21 +0000]"),
        ]:
            self.assertIn(expected, formatCombined(makeRecord(start=start)))


class FormatSquidTests(SynchronousTestCase):
    """
    Tests for L{formatSquid}.
    """

    def test_proxied(self) -> None:
        """
        A proxied request is a C{TCP_MISS} with the upstream's address,
        stamped with the time the exchange ended.
        """
        self.assertEqual(
            formatSquid(makeRecord()),
            "1700000000.273    150 127.0.0.1 TCP_MISS/200 1234 GET"
            " http://example.com/ - HIER_DIRECT/93.184.216.34 text/html\n",
        )

    def test_tunnel(self) -> None:
        """
        A CONNECT tunnel is a C{TCP_TUNNEL} with an authority-form URL and no
        media type.
        """
        self.assertEqual(
            formatSquid(connectRecord()),
            "1700000000.273    150 127.0.0.1 TCP_TUNNEL/200 5000 CONNECT"
            " example.com:443 - HIER_DIRECT/93.184.216.34 -\n",
        )

    def test_denied(self) -> None:
        """
        A request refused by a filter with a 4xx is C{TCP_DENIED} without a
        hierarchy peer.
        """
        record = makeRecord(
            status=403,
            bytesOut=320,
            upstreamHost=None,
            upstreamPort=None,
            filterName="blocklist",
            duration=0.001,
        )
        self.assertEqual(
            formatSquid(record),
            "1700000000.124      1 127.0.0.1 TCP_DENIED/403 320 GET"
            " http://example.com/ - HIER_NONE/- text/html\n",
        )

    def test_authRequired(self) -> None:
        """
        A 407 from the authentication filter is C{TCP_DENIED}, for tunnels
        too.
        """
        record = connectRecord(
            status=407, upstreamHost=None, upstreamPort=None, filterName="auth"
        )
        self.assertIn(" TCP_DENIED/407 ", formatSquid(record))

    def test_redirect(self) -> None:
        """
        A 3xx answered by a filter is C{TCP_REDIRECT}.
        """
        record = makeRecord(status=302, upstreamHost=None, filterName="rewrite")
        self.assertIn(" TCP_REDIRECT/302 ", formatSquid(record))

    def test_filterLetThrough(self) -> None:
        """
        A filter named on a request that was forwarded and answered 2xx
        does not make it a denial.
        """
        self.assertIn(" TCP_MISS/200 ", formatSquid(makeRecord(filterName="via")))

    def test_errorWithoutUpstream(self) -> None:
        """
        A malformed request is C{NONE_NONE}, logged the way Squid logs one.
        """
        record = AccessRecord(
            start=START,
            clientHost="127.0.0.1",
            status=400,
            bytesOut=120,
            contentType="text/plain",
        )
        self.assertEqual(
            formatSquid(record),
            "1700000000.123      0 127.0.0.1 NONE_NONE/400 120 NONE"
            " error:invalid-request - HIER_NONE/- text/plain\n",
        )

    def test_upstreamError(self) -> None:
        """
        An error after an upstream was contacted (a 502) is still a
        C{TCP_MISS} with the upstream's address.
        """
        record = makeRecord(status=502)
        self.assertIn(
            " TCP_MISS/502 1234 GET http://example.com/ - HIER_DIRECT/93.184.216.34 ",
            formatSquid(record),
        )

    def test_noResponse(self) -> None:
        """
        A request that got no response has status C{000}.
        """
        record = makeRecord(status=0, bytesOut=0, upstreamHost=None)
        self.assertIn(" NONE_NONE/000 0 GET ", formatSquid(record))

    def test_fieldWidths(self) -> None:
        """
        Milliseconds are zero-padded to three digits and the elapsed time is
        right-aligned in six columns, growing when it does not fit.
        """
        self.assertTrue(
            formatSquid(makeRecord(start=1700000000.005, duration=0)).startswith(
                "1700000000.005      0 "
            )
        )
        self.assertTrue(
            formatSquid(makeRecord(start=1700000000.0, duration=123.4567)).startswith(
                "1700000123.456 123456 "
            )
        )
        self.assertTrue(
            formatSquid(makeRecord(start=1700000000.0, duration=1234.5)).startswith(
                "1700001234.500 1234500 "
            )
        )
        self.assertTrue(
            formatSquid(makeRecord(start=99.0, duration=0)).startswith(
                "       99.000      0 "
            )
        )

    def test_user(self) -> None:
        """
        The user is encoded as Squid encodes user names, with spaces encoded
        too so the fields stay aligned.
        """
        record = makeRecord(user="alice smith%[x]\\y\r\n\x01\xe9")
        self.assertIn(
            " alice%20smith%25%5bx%5d\\\\y\\r\\n%01%c3%a9 HIER_DIRECT/",
            formatSquid(record),
        )
        # As Squid logs the name from the credentials: its UTF-8 bytes.
        self.assertIn(
            " %c3%bcmlaut HIER_DIRECT/", formatSquid(makeRecord(user="\xfcmlaut"))
        )
        self.assertIn(" - HIER_DIRECT/", formatSquid(makeRecord(user="")))
        self.assertIn(" bob HIER_DIRECT/", formatSquid(makeRecord(user="bob")))

    def test_urlEncoding(self) -> None:
        """
        Spaces, control characters and non-ASCII in the method or URL are
        percent-encoded so the line keeps its fields.
        """
        record = makeRecord(method="G T", target="http://example.com/a b\n\xe9")
        self.assertIn(" G%20T http://example.com/a%20b%0A%E9 - ", formatSquid(record))

    def test_mediaType(self) -> None:
        """
        Only the media type is logged: parameters are cut off, and an empty
        type is C{-}.
        """
        self.assertTrue(
            formatSquid(makeRecord(contentType="text/html; charset=utf-8")).endswith(
                " text/html\n"
            )
        )
        self.assertTrue(
            formatSquid(makeRecord(contentType="text/plain\tx")).endswith(
                " text/plain\n"
            )
        )
        self.assertTrue(
            formatSquid(makeRecord(contentType="; charset=x")).endswith(" -\n")
        )
        self.assertTrue(formatSquid(makeRecord(contentType="")).endswith(" -\n"))

    def test_ipv6(self) -> None:
        """
        IPv6 client and upstream addresses are written as Squid writes
        them, without brackets.
        """
        record = makeRecord(clientHost="2001:db8::2", upstreamHost="2001:db8::1")
        line = formatSquid(record)
        self.assertIn("    150 2001:db8::2 TCP_MISS/200 ", line)
        self.assertIn(" HIER_DIRECT/2001:db8::1 text/html\n", line)


class FormatJSONTests(SynchronousTestCase):
    """
    Tests for L{formatJSON}.
    """

    def test_exact(self) -> None:
        """
        A record is one compact JSON object with the documented keys in the
        documented order.
        """
        self.assertEqual(
            formatJSON(makeRecord(referer="http://example.com/a")),
            '{"time":"2023-11-14T22:13:20.123Z","client_ip":"127.0.0.1",'
            '"client_port":54321,"user":null,"method":"GET",'
            '"target":"http://example.com/","version":"HTTP/1.1","status":200,'
            '"bytes_in":78,"bytes_out":1234,"duration_ms":150.000,'
            '"upstream_ip":"93.184.216.34","upstream_port":80,'
            '"referer":"http://example.com/a","user_agent":"curl/8.4.0",'
            '"content_type":"text/html","filter":null,"filter_reason":null,'
            '"tunnel":false,"aborted":false}\n',
        )

    def test_allFields(self) -> None:
        """
        Every field round-trips through a JSON parser, including quotes,
        control characters and non-ASCII text, and the line is ASCII.
        """
        record = connectRecord(
            user='al"ice',
            status=403,
            bytesIn=200,
            upstreamHost="2001:db8::1",
            referer="r\\\n",
            userAgent="\xe9\u20ac",
            contentType="text/html; charset=utf-8",
            filterName="blocklist",
            filterReason="listed\x00",
            duration=1.2345678,
        )
        line = formatJSON(record)
        self.assertTrue(line.isascii())
        self.assertEqual(line.count("\n"), 1)
        self.assertEqual(
            json.loads(line),
            {
                "time": "2023-11-14T22:13:20.123Z",
                "client_ip": "127.0.0.1",
                "client_port": 54321,
                "user": 'al"ice',
                "method": "CONNECT",
                "target": "example.com:443",
                "version": "HTTP/1.1",
                "status": 403,
                "bytes_in": 200,
                "bytes_out": 5000,
                "duration_ms": 1234.568,
                "upstream_ip": "2001:db8::1",
                "upstream_port": 443,
                "referer": "r\\\n",
                "user_agent": "\xe9\u20ac",
                "content_type": "text/html; charset=utf-8",
                "filter": "blocklist",
                "filter_reason": "listed\x00",
                "tunnel": True,
                "aborted": False,
            },
        )

    def test_missingValues(self) -> None:
        """
        Missing values are C{null}, as the module says: a request that was
        never parsed has no method, target or version (they were C{""}).
        """
        parsed = json.loads(formatJSON(AccessRecord(start=START)))
        self.assertEqual(
            [key for key, value in parsed.items() if value is None],
            [
                "user",
                "method",
                "target",
                "version",
                "upstream_ip",
                "upstream_port",
                "referer",
                "user_agent",
                "content_type",
                "filter",
                "filter_reason",
            ],
        )
        self.assertEqual(parsed["status"], 0)
        parsed = json.loads(formatJSON(makeRecord(version="")))
        self.assertEqual((parsed["method"], parsed["version"]), ("GET", ""))

    def test_milliseconds(self) -> None:
        """
        The time has exactly three decimals, rounded to the microsecond and
        then truncated, across second boundaries.
        """
        for start, expected in [
            (1700000000.0, "2023-11-14T22:13:20.000Z"),
            (1700000000.999, "2023-11-14T22:13:20.999Z"),
            (1700000000.9999996, "2023-11-14T22:13:21.000Z"),
            (1700000001.0005, "2023-11-14T22:13:21.000Z"),
        ]:
            self.assertEqual(
                json.loads(formatJSON(makeRecord(start=start)))["time"], expected
            )


class FormatterContractTests(SynchronousTestCase):
    """
    Tests that hold for every formatter.
    """

    def test_registry(self) -> None:
        """
        L{FORMATTERS} maps the user-visible names to the formatters.
        """
        self.assertEqual(
            FORMATTERS,
            {"combined": formatCombined, "squid": formatSquid, "json": formatJSON},
        )

    def test_oneLine(self) -> None:
        """
        Line breaks in any text field never split a record's line.
        """
        nasty = "a\r\nb\nc\x85d\u2028e"
        record = makeRecord(
            user=nasty,
            method=nasty,
            target=nasty,
            version=nasty,
            referer=nasty,
            userAgent=nasty,
            contentType=nasty,
            filterName=nasty,
            filterReason=nasty,
        )
        for name, formatter in FORMATTERS.items():
            line = formatter(record)
            self.assertEqual(line.splitlines(), [line[:-1]], name)
            self.assertTrue(line.endswith("\n"), name)


class NegativeDurationTests(SynchronousTestCase):
    """
    Tests for durations made negative by a clock stepped back.
    """

    def test_negativeDuration(self) -> None:
        """
        Every format writes a negative duration as 0.
        """
        record = makeRecord(duration=-0.5)
        self.assertIn('" 0 upstream=', formatCombined(record))
        self.assertIn(".623      0 127.0.0.1 ", formatSquid(record))
        self.assertEqual(json.loads(formatJSON(record))["duration_ms"], 0)


class WriterTests(SynchronousTestCase):
    """
    Tests for L{AccessLogWriter}'s batching, reopening and error handling.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.file = RecordingFile()
        self.line = formatCombined(makeRecord())

    def makeWriter(self, **kwargs: Any) -> AccessLogWriter:
        """
        Make a writer on L{file} and L{clock} with the combined format.

        @param kwargs: more arguments for L{AccessLogWriter}.

        @return: the writer.
        """
        return AccessLogWriter(self.clock, lambda: self.file, formatCombined, **kwargs)

    def test_idleHasNoTimer(self) -> None:
        """
        A writer that has nothing buffered has no timer.
        """
        writer = self.makeWriter()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        writer.log(makeRecord())
        self.clock.advance(1)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_writtenWhenTimerFires(self) -> None:
        """
        Nothing is written before the flush interval has passed; then all
        buffered lines are written in one C{write}.
        """
        writer = self.makeWriter(flushInterval=2.0)
        writer.log(makeRecord())
        writer.log(makeRecord())
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.clock.advance(1.999)
        self.assertEqual((self.file.getvalue(), self.file.writes), ("", 0))
        self.clock.advance(0.001)
        self.assertEqual(self.file.getvalue(), self.line * 2)
        self.assertEqual(self.file.writes, 1)

    def test_timerStartsAfterFlush(self) -> None:
        """
        The timer is started by the first record after a flush, not by the
        flush.
        """
        writer = self.makeWriter(flushInterval=1.0)
        writer.log(makeRecord())
        self.clock.advance(1.0)
        self.clock.advance(0.5)
        writer.log(makeRecord())
        [call] = self.clock.getDelayedCalls()
        self.assertEqual(call.getTime(), 2.5)

    def test_writtenAtBufferLimit(self) -> None:
        """
        Lines are written as soon as the buffer reaches the limit, and the
        pending timer is cancelled.
        """
        writer = self.makeWriter(bufferLimit=len(self.line) * 2)
        writer.log(makeRecord())
        self.assertEqual(self.file.getvalue(), "")
        writer.log(makeRecord())
        self.assertEqual(self.file.getvalue(), self.line * 2)
        self.assertEqual(self.file.writes, 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_bufferLimitZero(self) -> None:
        """
        A buffer limit of 0 writes every line at once, without a timer.
        """
        writer = self.makeWriter(bufferLimit=0)
        writer.log(makeRecord())
        self.assertEqual(self.file.getvalue(), self.line)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_flush(self) -> None:
        """
        L{AccessLogWriter.flush} writes buffered lines at once and stops the
        timer; with nothing buffered it writes nothing.
        """
        writer = self.makeWriter()
        writer.flush()
        self.assertEqual(self.file.writes, 0)
        writer.log(makeRecord())
        writer.flush()
        self.assertEqual(self.file.getvalue(), self.line)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_close(self) -> None:
        """
        L{AccessLogWriter.close} flushes, stops the timer and closes the file;
        closing again does nothing.
        """
        writer = self.makeWriter()
        writer.log(makeRecord())
        writer.close()
        writer.close()
        self.assertEqual(self.file.getvalue(), self.line)
        self.assertTrue(self.file.closedForTest)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_logAfterClose(self) -> None:
        """
        Records logged after L{AccessLogWriter.close} are dropped without
        raising, and that is reported once.
        """
        writer = self.makeWriter()
        writer.close()
        with capturedLogs() as events:
            writer.log(makeRecord())
            writer.log(makeRecord())
        self.assertEqual(len(events), 1)
        self.assertEqual(events[0]["log_level"], LogLevel.error)
        self.assertEqual(self.file.getvalue(), "")
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_writeErrorDoesNotRaise(self) -> None:
        """
        A failing C{write} (disk full) does not raise into the caller, is
        reported once while it persists, and again after a recovery.
        """
        writer = self.makeWriter(bufferLimit=0)
        self.file.error = OSError(errno.ENOSPC, "No space left on device")
        with capturedLogs() as events:
            writer.log(makeRecord())
            writer.log(makeRecord())
            self.file.error = None
            writer.log(makeRecord())
            self.file.error = OSError(errno.ENOSPC, "No space left on device")
            writer.log(makeRecord())
        self.assertEqual(len(events), 2)
        self.assertIn(
            "No space left on device", events[0]["log_format"].format(**events[0])
        )
        self.assertEqual(self.file.getvalue(), self.line)

    def test_timedWriteErrorDoesNotRaise(self) -> None:
        """
        A write failing when the timer fires does not raise from the
        reactor's call.
        """
        writer = self.makeWriter()
        self.file.error = OSError(errno.EIO, "I/O error")
        with capturedLogs() as events:
            writer.log(makeRecord())
            self.clock.advance(1)
        self.assertEqual(len(events), 1)

    def test_closedFileDoesNotRaise(self) -> None:
        """
        Writing to a file that was closed behind the writer's back does not
        raise.
        """
        stream = io.StringIO()
        writer = AccessLogWriter(self.clock, lambda: stream, formatCombined)
        stream.close()
        with capturedLogs() as events:
            writer.log(makeRecord())
            writer.flush()
        self.assertEqual(len(events), 1)

    def test_formatErrorDoesNotRaise(self) -> None:
        """
        A formatter that fails drops the record and reports the failure,
        without raising into the caller.
        """

        def broken(record: AccessRecord) -> str:
            raise RuntimeError("broken formatter")

        writer = AccessLogWriter(self.clock, lambda: self.file, broken)
        with capturedLogs() as events:
            writer.log(makeRecord())
        self.assertEqual(len(events), 1)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        writer.flush()
        self.assertEqual(self.file.writes, 0)

    def test_reopenAfterRename(self) -> None:
        """
        After the log file is renamed (as C{logrotate} does), lines logged
        before L{AccessLogWriter.reopen} go to the renamed file and lines
        logged after it to a new file at the original path.
        """
        path = os.path.join(temporaryDirectory(self), "access.log")
        writer = openAccessLog(path, self.clock, "combined", "never")
        assert writer is not None
        writer.log(makeRecord(status=200))
        writer.flush()
        os.rename(path, path + ".1")
        writer.log(makeRecord(status=201))
        oldFile = writer.file
        writer.reopen()
        self.assertTrue(oldFile.closed)
        writer.log(makeRecord(status=202))
        writer.close()
        with open(path + ".1") as rotated, open(path) as current:
            self.assertEqual(
                rotated.read(),
                formatCombined(makeRecord(status=200))
                + formatCombined(makeRecord(status=201)),
            )
            self.assertEqual(current.read(), formatCombined(makeRecord(status=202)))

    def test_reopenFailureKeepsOldFile(self) -> None:
        """
        If the file cannot be opened again, the error is reported and the
        writer keeps writing to the old file.
        """
        files: list[Callable[[], RecordingFile]] = [lambda: self.file]

        def opener() -> RecordingFile:
            if not files:
                raise PermissionError(errno.EACCES, "Permission denied")
            return files.pop()()

        writer = AccessLogWriter(self.clock, opener, formatCombined)
        with capturedLogs() as events:
            writer.reopen()
        self.assertEqual(len(events), 1)
        self.assertIs(writer.file, self.file)
        self.assertFalse(self.file.closedForTest)
        writer.log(makeRecord())
        writer.flush()
        self.assertEqual(self.file.getvalue(), self.line)

    def test_reopenLeavesStandardOutputOpen(self) -> None:
        """
        Reopening or closing a log on standard output never closes it.
        """
        stdout = RecordingFile()
        self.patch(sys, "stdout", stdout)
        writer = AccessLogWriter(self.clock, lambda: sys.stdout, formatCombined)
        writer.log(makeRecord())
        writer.reopen()
        writer.close()
        self.assertFalse(stdout.closedForTest)
        self.assertEqual(stdout.getvalue(), self.line)


class ExchangeWriterTests(SynchronousTestCase):
    """
    Tests for L{AccessLogWriter.logExchange}: exchanges are kept as they
    are and formatted a batch at a time.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.file = RecordingFile()

    def makeWriter(
        self, formatter: Callable[[AccessRecord], str] = formatCombined, **kwargs: Any
    ) -> AccessLogWriter:
        """
        Make a writer on L{file} and L{clock}.

        @param formatter: the format, combined by default.
        @param kwargs: more arguments for L{AccessLogWriter}.

        @return: the writer.
        """
        return AccessLogWriter(self.clock, lambda: self.file, formatter, **kwargs)

    def test_writtenWhenTimerFires(self) -> None:
        """
        Exchanges are formatted and written together when the flush timer
        fires, as their records would be.
        """
        writer = self.makeWriter(flushInterval=1.0)
        exchanges = [makeExchange(status=200), makeExchange(status=404)]
        for exchange in exchanges:
            writer.logExchange(exchange)
        self.clock.advance(0.9)
        self.assertEqual(self.file.getvalue(), "")
        self.clock.advance(0.1)
        self.assertEqual(self.file.writes, 1)
        self.assertEqual(
            self.file.getvalue(),
            "".join(formatCombined(recordFromExchange(e)) for e in exchanges),
        )
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_batchLimit(self) -> None:
        """
        Exchanges are written once C{bufferLimit} characters' worth of
        them wait (128 characters each), without waiting for the timer.
        """
        writer = self.makeWriter(bufferLimit=3 * 128)
        writer.logExchange(makeExchange())
        writer.logExchange(makeExchange())
        self.assertEqual(self.file.writes, 0)
        writer.logExchange(makeExchange())
        self.assertEqual(self.file.writes, 1)
        self.assertEqual(len(self.file.getvalue().splitlines()), 3)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_bufferLimitZero(self) -> None:
        """
        With C{bufferLimit=0} each exchange is written at once.
        """
        writer = self.makeWriter(bufferLimit=0)
        writer.logExchange(makeExchange())
        self.assertEqual(self.file.writes, 1)

    def test_orderKept(self) -> None:
        """
        Records logged between exchanges are written in the order they
        were logged.
        """
        writer = self.makeWriter()
        writer.logExchange(makeExchange(status=201))
        writer.log(makeRecord(status=202))
        writer.logExchange(makeExchange(status=203))
        writer.flush()
        statuses = [
            line.split('" ')[1][:3] for line in self.file.getvalue().splitlines()
        ]
        self.assertEqual(statuses, ["201", "202", "203"])

    def test_everyFormat(self) -> None:
        """
        Each format writes an exchange as it writes the record made from
        it, with the request fields the format prints.
        """
        for name, formatter in FORMATTERS.items():
            self.file = RecordingFile()
            writer = self.makeWriter(formatter)
            writer.logExchange(makeExchange())
            writer.flush()
            record = recordFromExchange(makeExchange(), writer.logsRequestHeaders)
            self.assertEqual(self.file.getvalue(), formatter(record), name)

    def test_coloured(self) -> None:
        """
        Coloured, each line of a batch gets its own status's colour.
        """
        writer = self.makeWriter(colorize=True)
        writer.logExchange(makeExchange(status=200))
        writer.logExchange(makeExchange(status=404))
        writer.flush()
        first, second = self.file.getvalue().splitlines()
        self.assertTrue(first.startswith("\x1b[32m"))
        self.assertTrue(second.startswith("\x1b[33m"))

    def test_failedBatchFormattedOneByOne(self) -> None:
        """
        If formatting a batch fails, each exchange is formatted on its own:
        the ones that cannot be are dropped, the rest written, and the
        failure is reported once.
        """
        writer = self.makeWriter()
        exchanges = [makeExchange(status=201), makeExchange(status=202)]
        broken: Any = ("not", "an", "exchange")
        with capturedLogs() as events:
            writer.logExchange(exchanges[0])
            writer.logExchange(broken)
            writer.logExchange(exchanges[1])
            writer.flush()
        self.assertEqual(
            self.file.getvalue(),
            "".join(formatCombined(recordFromExchange(e)) for e in exchanges),
        )
        self.assertEqual(len(events), 1)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)

    def test_afterClose(self) -> None:
        """
        An exchange logged after L{AccessLogWriter.close} is dropped and
        that is reported.
        """
        writer = self.makeWriter()
        writer.close()
        with capturedLogs() as events:
            writer.logExchange(makeExchange())
        writer.flush()
        self.assertEqual(len(events), 1)
        self.assertEqual(self.file.writes, 0)

    def test_closeWritesWaiting(self) -> None:
        """
        L{AccessLogWriter.close} writes the exchanges still waiting.
        """
        writer = self.makeWriter()
        writer.logExchange(makeExchange())
        writer.close()
        self.assertEqual(
            self.file.getvalue(), formatCombined(recordFromExchange(makeExchange()))
        )


class ColourTests(SynchronousTestCase):
    """
    Tests for colouring access log lines.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.patch(os, "environ", {"TERM": "xterm"})

    def logStatuses(self, writer: AccessLogWriter, stream: io.StringIO) -> list[str]:
        """
        Log one record per status class and return the lines written.

        @param writer: the writer to log with.
        @param stream: the stream the writer writes to.

        @return: the lines, with their newlines.
        """
        for status in (200, 301, 404, 503, 101, 0):
            writer.log(makeRecord(status=status))
        writer.flush()
        return stream.getvalue().splitlines(True)

    def test_colourByStatusClass(self) -> None:
        """
        With colour on, 2xx lines are green, 3xx cyan, 4xx yellow, 5xx red,
        and 1xx or no status plain; the colour is reset before the newline.
        """
        stream = io.StringIO()
        writer = AccessLogWriter(
            self.clock, lambda: stream, formatCombined, colorize=True
        )
        lines = self.logStatuses(writer, stream)
        for line, status, colour in zip(
            lines,
            (200, 301, 404, 503, 101, 0),
            ("\x1b[32m", "\x1b[36m", "\x1b[33m", "\x1b[31m", None, None),
        ):
            plain = formatCombined(makeRecord(status=status))
            if colour is None:
                self.assertEqual(line, plain)
            else:
                self.assertEqual(line, colour + plain[:-1] + "\x1b[0m\n")

    def test_colourOff(self) -> None:
        """
        With C{colorize=False} nothing is coloured, even on a terminal.
        """
        stream = FakeTerminal()
        writer = AccessLogWriter(
            self.clock, lambda: stream, formatCombined, colorize=False
        )
        self.assertNotIn("\x1b", "".join(self.logStatuses(writer, stream)))

    def test_colourAutomatic(self) -> None:
        """
        With C{colorize=None} lines are coloured only on a terminal.
        """
        terminal = FakeTerminal()
        writer = AccessLogWriter(self.clock, lambda: terminal, formatCombined)
        self.assertIn("\x1b[32m", "".join(self.logStatuses(writer, terminal)))
        stream = io.StringIO()
        writer = AccessLogWriter(self.clock, lambda: stream, formatCombined)
        self.assertNotIn("\x1b", "".join(self.logStatuses(writer, stream)))

    def test_neverColourPaths(self) -> None:
        """
        A log written to a path has no colour, even with C{"always"}.
        """
        path = os.path.join(temporaryDirectory(self), "access.log")
        writer = openAccessLog(path, self.clock, "combined", "always")
        assert writer is not None
        for status in (200, 404, 503):
            writer.log(makeRecord(status=status))
        writer.close()
        with open(path) as written:
            self.assertNotIn("\x1b", written.read())

    def test_standardOutputAlways(self) -> None:
        """
        C{"always"} colours standard output even when it is not a terminal.
        """
        stdout = io.StringIO()
        self.patch(sys, "stdout", stdout)
        writer = openAccessLog("-", self.clock, "squid", "always")
        assert writer is not None
        self.assertIn("\x1b[32m", "".join(self.logStatuses(writer, stdout)))

    def test_standardOutputAuto(self) -> None:
        """
        C{"auto"} colours standard output only when it is a terminal and
        C{NO_COLOR} is not set; C{"never"} never does.
        """
        for stdout, mode, environ, coloured in [
            (FakeTerminal(), "auto", {"TERM": "xterm"}, True),
            (io.StringIO(), "auto", {"TERM": "xterm"}, False),
            (FakeTerminal(), "auto", {"NO_COLOR": "1"}, False),
            (FakeTerminal(), "never", {"TERM": "xterm"}, False),
        ]:
            self.patch(sys, "stdout", stdout)
            self.patch(os, "environ", environ)
            writer = openAccessLog("-", self.clock, "combined", mode)
            assert writer is not None
            output = "".join(self.logStatuses(writer, stdout))
            self.assertEqual("\x1b[" in output, coloured, (stdout, mode, environ))


class OpenAccessLogTests(SynchronousTestCase):
    """
    Tests for L{openAccessLog}.
    """

    def setUp(self) -> None:
        self.clock = Clock()

    def test_off(self) -> None:
        """
        C{"off"} means no access log.
        """
        self.assertIsNone(openAccessLog("off", self.clock, "combined", "auto"))

    def test_formats(self) -> None:
        """
        Each format name selects its formatter.
        """
        stdout = io.StringIO()
        self.patch(sys, "stdout", stdout)
        for name, formatter in FORMATTERS.items():
            writer = openAccessLog("-", self.clock, name, "never")
            assert writer is not None
            writer.log(makeRecord())
            writer.flush()
            self.assertTrue(stdout.getvalue().endswith(formatter(makeRecord())))

    def test_unknownFormat(self) -> None:
        """
        An unknown format is a L{ValueError} naming the allowed ones, even
        when the log is off.
        """
        for spec in ("off", "-"):
            error = self.assertRaises(
                ValueError, openAccessLog, spec, self.clock, "apache", "auto"
            )
            self.assertIn("'apache'", str(error))
            self.assertIn("combined, squid, json", str(error))

    def test_unknownColourMode(self) -> None:
        """
        An unknown colour mode is a L{ValueError} naming the allowed ones.
        """
        error = self.assertRaises(
            ValueError, openAccessLog, "off", self.clock, "combined", "yes"
        )
        self.assertIn("auto, always, never", str(error))

    def test_unopenablePath(self) -> None:
        """
        A path that cannot be opened is a L{ValueError} naming the path and
        the reason.
        """
        path = os.path.join(temporaryDirectory(self), "missing", "access.log")
        error = self.assertRaises(
            ValueError, openAccessLog, path, self.clock, "combined", "auto"
        )
        self.assertIn(repr(path), str(error))
        self.assertIn("No such file or directory", str(error))

    def test_emptyPath(self) -> None:
        """
        An empty path is a L{ValueError}.
        """
        self.assertRaises(ValueError, openAccessLog, "", self.clock, "json", "auto")

    def test_appends(self) -> None:
        """
        An existing log file is appended to.
        """
        path = os.path.join(temporaryDirectory(self), "access.log")
        with open(path, "w") as existing:
            existing.write("old\n")
        writer = openAccessLog(path, self.clock, "json", "never")
        assert writer is not None
        writer.log(makeRecord())
        writer.close()
        with open(path) as written:
            self.assertEqual(written.read(), "old\n" + formatJSON(makeRecord()))

    def test_relativePathMadeAbsolute(self) -> None:
        """
        A relative path is resolved when the log is opened, so a reopen
        after a change of directory finds the same file.
        """
        directory = temporaryDirectory(self)
        os.makedirs(os.path.join(directory, "elsewhere"))
        cwd = os.getcwd()
        os.chdir(directory)
        self.addCleanup(os.chdir, cwd)
        writer = openAccessLog("access.log", self.clock, "squid", "never")
        assert writer is not None
        os.chdir("elsewhere")
        writer.reopen()
        writer.log(makeRecord())
        writer.close()
        self.assertEqual(writer.file.name, os.path.join(directory, "access.log"))
        self.assertFalse(os.path.exists("access.log"))

    def test_standardOutputCapturedAtOpen(self) -> None:
        """
        The log on C{"-"} writes to the standard output of the time it was
        opened, not to the L{LoggingFile} C{twistd} installs later, and
        writes to the real standard output if it is already installed.
        """
        stdout = io.StringIO()
        self.patch(sys, "stdout", stdout)
        writer = openAccessLog("-", self.clock, "combined", "never")
        assert writer is not None
        self.patch(sys, "stdout", LoggingFile(Logger()))
        writer.log(makeRecord())
        writer.flush()
        self.assertEqual(stdout.getvalue(), formatCombined(makeRecord()))

        realStdout = io.StringIO()
        self.patch(sys, "__stdout__", realStdout)
        writer = openAccessLog("-", self.clock, "combined", "never")
        assert writer is not None
        writer.log(makeRecord())
        writer.flush()
        self.assertEqual(realStdout.getvalue(), formatCombined(makeRecord()))


# ---------------------------------------------------------------------------
# Differential tests: the formatters' fast paths against plain reference
# implementations of the documented formats, on arbitrary records.


def wireBytes(char: str) -> bytes:
    """
    The bytes a character stands for, as the module docstring describes.

    @param char: one character.

    @return: its ISO-8859-1 byte, the byte a C{surrogateescape} surrogate
        smuggles, or its UTF-8 encoding.
    """
    if ord(char) < 0x100:
        return bytes([ord(char)])
    if 0xDC80 <= ord(char) <= 0xDCFF:
        return bytes([ord(char) - 0xDC00])
    return char.encode("utf-8", "surrogatepass")


def apacheEscape(text: str) -> str:
    """
    Escape text one character at a time, as C{ap_escape_logitem} does.

    @param text: any text.

    @return: the escaped text.
    """
    named = {"\b": "\\b", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}
    out = []
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif char in named:
            out.append(named[char])
        elif " " <= char <= "~":
            out.append(char)
        else:
            out.extend("\\x%02x" % byte for byte in wireBytes(char))
    return "".join(out)


def hostPort(host: Optional[str], port: Optional[int]) -> str:
    """
    Write an address as the combined format's C{upstream=} and C{client=}.
    """
    if host is None:
        return "-"
    if ":" in host:
        host = f"[{host}]"
    return host if port is None else f"{host}:{port}"


def referenceCombined(record: AccessRecord) -> str:
    """
    Format a record in the combined format, the simple way.

    @param record: the record.

    @return: the line.
    """
    stamp = time.strftime("%d/%%s/%Y:%H:%M:%S +0000", time.gmtime(int(record.start)))
    month = time.gmtime(int(record.start)).tm_mon
    stamp = stamp % (
        "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()[month - 1],
    )
    if record.user is None:
        user = "-"
    elif record.user == "":
        user = '""'
    else:
        user = apacheEscape(
            "".join(userBytes(char).decode("latin-1") for char in record.user)
        )
    if not record.method:
        request = "-"
    elif record.version:
        request = apacheEscape(f"{record.method} {record.target} {record.version}")
    else:
        request = apacheEscape(f"{record.method} {record.target}")
    if record.filterName is None:
        filterText = "-"
    elif record.filterReason is None:
        filterText = apacheEscape(record.filterName)
    else:
        filterText = (
            f'{apacheEscape(record.filterName)}:"{apacheEscape(record.filterReason)}"'
        )
    referer = "-" if record.referer is None else apacheEscape(record.referer)
    userAgent = "-" if record.userAgent is None else apacheEscape(record.userAgent)
    milliseconds = max(int(record.duration * 1e6 + 0.5), 0) // 1000
    return (
        f"{record.clientHost} - {user} [{stamp}] "
        f'"{request}" {record.status if record.status > 0 else "-"} '
        f'{record.bytesOut if record.bytesOut else "-"} '
        f'"{referer}" "{userAgent}" {milliseconds} '
        f"upstream={hostPort(record.upstreamHost, record.upstreamPort)} "
        f"filter={filterText} client={hostPort(record.clientHost, record.clientPort)}\n"
    )


def squidEncode(text: str) -> str:
    """
    Percent-encode spaces, control characters and non-ASCII, the simple way.
    """
    return "".join(
        char if "!" <= char <= "~" else "".join("%%%02X" % b for b in wireBytes(char))
        for char in text
    )


def userBytes(char: str) -> bytes:
    """
    The bytes a character of a user name stands for: its UTF-8 encoding, or
    the byte a C{surrogateescape} surrogate smuggles.
    """
    try:
        return char.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return char.encode("utf-8", "surrogatepass")


def squidUser(user: Optional[str]) -> str:
    """
    Encode a user name for Squid's format, the simple way.
    """
    if not user:
        return "-"
    out = []
    for char in user:
        if char in "\r\n\\":
            out.append({"\r": "\\r", "\n": "\\n", "\\": "\\\\"}[char])
        elif "!" <= char <= "~" and char not in "%[]":
            out.append(char)
        else:
            out.extend("%%%02x" % b for b in userBytes(char))
    return "".join(out)


def referenceSquid(record: AccessRecord) -> str:
    """
    Format a record in Squid's format, the simple way.

    @param record: the record.

    @return: the line.
    """
    micros = int((record.start + record.duration) * 1e6 + 0.5)
    elapsed = max(int(record.duration * 1e6 + 0.5), 0) // 1000
    if record.filterName is not None and record.status // 100 == 4:
        result = "TCP_DENIED"
    elif record.filterName is not None and record.status // 100 == 3:
        result = "TCP_REDIRECT"
    elif record.tunnel:
        result = "TCP_TUNNEL"
    elif record.upstreamHost is not None:
        result = "TCP_MISS"
    else:
        result = "NONE_NONE"
    if record.aborted:
        result += "_ABORTED"
    if record.method:
        request = f"{squidEncode(record.method)} {squidEncode(record.target) or '-'}"
    else:
        request = "NONE error:invalid-request"
    mediaType = "-"
    if record.contentType:
        cut = record.contentType
        for separator in ";\t ":
            cut = cut.partition(separator)[0]
        mediaType = squidEncode(cut) or "-"
    hierarchy = (
        "HIER_NONE/-"
        if record.upstreamHost is None
        else "HIER_DIRECT/" + record.upstreamHost
    )
    status = "%03d" % record.status if record.status >= 0 else str(record.status)
    return (
        f"{micros // 1000000:9d}.{micros // 1000 % 1000:03d} {elapsed:6d} "
        f"{record.clientHost} {result}/{status} {record.bytesOut} {request} "
        f"{squidUser(record.user)} {hierarchy} {mediaType}\n"
    )


def referenceJSON(record: AccessRecord) -> str:
    """
    Format a record as JSON, the simple way.

    @param record: the record.

    @return: the line.
    """
    micros = int(record.start * 1e6 + 0.5)
    duration = max(int(record.duration * 1e6 + 0.5), 0)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(micros // 1000000))
    members = [
        ("time", json.dumps(f"{stamp}.{micros // 1000 % 1000:03d}Z")),
        ("client_ip", json.dumps(record.clientHost)),
        ("client_port", json.dumps(record.clientPort)),
        ("user", json.dumps(record.user)),
        # A request never parsed has no method, target or version: null.
        ("method", json.dumps(record.method or None)),
        ("target", json.dumps(record.target if record.method else None)),
        ("version", json.dumps(record.version if record.method else None)),
        ("status", json.dumps(record.status)),
        ("bytes_in", json.dumps(record.bytesIn)),
        ("bytes_out", json.dumps(record.bytesOut)),
        ("duration_ms", f"{duration // 1000}.{duration % 1000:03d}"),
        ("upstream_ip", json.dumps(record.upstreamHost)),
        ("upstream_port", json.dumps(record.upstreamPort)),
        ("referer", json.dumps(record.referer)),
        ("user_agent", json.dumps(record.userAgent)),
        ("content_type", json.dumps(record.contentType)),
        ("filter", json.dumps(record.filterName)),
        ("filter_reason", json.dumps(record.filterReason)),
        ("tunnel", json.dumps(record.tunnel)),
        ("aborted", json.dumps(record.aborted)),
    ]
    return "{" + ",".join(f'"{key}":{value}' for key, value in members) + "}\n"


# Text that is mostly clean, as real fields are, so that both the fast and
# the slow paths are taken, with every kind of character that needs care.
fieldText = st.text(
    alphabet=st.one_of(
        st.sampled_from("aZ09/.:-_ ;%[]"),
        st.sampled_from('"\\\x00\x01\b\t\n\v\r\x1b\x7f\x80\x85\xa0\xe9\xff'),
        st.sampled_from("\u0100\u20ac\u2028\udc80\udcff\ud800\U0001f600"),
        st.characters(),
    ),
    max_size=12,
)
cleanText = st.text(alphabet=st.sampled_from("aZ09/.:-_;"), max_size=12)
anyText = st.one_of(cleanText, fieldText)
optionalText = st.one_of(st.none(), anyText)
host = st.one_of(
    st.sampled_from(["127.0.0.1", "192.0.2.1", "::1", "2001:db8::1"]), cleanText
)

records = st.builds(
    AccessRecord,
    start=st.one_of(
        st.floats(min_value=0, max_value=4e9),
        st.sampled_from([START, START + 0.999, 946684799.9999999, 0.0]),
    ),
    duration=st.one_of(
        st.floats(min_value=-10, max_value=1e5),
        st.sampled_from([0.0, 0.0009995, 0.999, 0.9995, 1.0, -0.0000004]),
    ),
    clientHost=host,
    clientPort=st.integers(min_value=0, max_value=65535),
    user=optionalText,
    method=st.one_of(st.sampled_from(["GET", "CONNECT", ""]), anyText),
    target=anyText,
    version=st.one_of(st.sampled_from(["HTTP/1.1", ""]), anyText),
    status=st.integers(min_value=-2, max_value=1200),
    bytesIn=st.integers(min_value=0, max_value=10**9),
    bytesOut=st.integers(min_value=0, max_value=10**9),
    upstreamHost=st.one_of(st.none(), host),
    upstreamPort=st.one_of(st.none(), st.integers(min_value=0, max_value=65535)),
    referer=optionalText,
    userAgent=st.one_of(st.none(), st.sampled_from(["curl/7.88.1"]), anyText),
    contentType=st.one_of(
        st.none(), st.sampled_from(["text/html", "text/html; charset=utf-8"]), anyText
    ),
    filterName=optionalText,
    filterReason=optionalText,
    tunnel=st.booleans(),
    aborted=st.booleans(),
)


# Bytes as they come off the wire: mostly clean, with every kind of byte the
# combined format escapes.
cleanBytes = st.text(alphabet=st.sampled_from("aZ09/.:-_;"), max_size=12).map(
    str.encode
)
wire = st.one_of(
    cleanBytes,
    st.lists(
        st.sampled_from(
            list(b'aZ09/.:-_ ;%[]"\\\x00\x01\x08\t\x0b\x1b\x7f\x80\x85\xa0\xe9\xff')
        ),
        max_size=12,
    ).map(bytes),
)
# Header values as a validated block can hold them: no CR or LF.
fieldNames = st.sampled_from(
    [b"Host", b"User-Agent", b"user-agent", b"Referer", b"REFERER", b"X-Other"]
)
fieldLists = st.lists(
    st.tuples(fieldNames, st.one_of(st.sampled_from([b"curl/7.88.1"]), wire)),
    max_size=4,
)


@st.composite
def exchanges(draw: Callable[..., Any]) -> Exchange:
    """
    Make any exchange the protocol could log: with or without a request,
    its fields received as a block or built as a list, and fields added
    after receipt.
    """
    request = None
    if draw(st.integers(min_value=0, max_value=9)):
        fields = draw(fieldLists)
        if draw(st.booleans()):
            headers = Headers._fromBlock(
                b"".join(name + b": " + value + b"\r\n" for name, value in fields)
            )
        else:
            # Any bytes, even what Headers.add refuses: the log escapes
            # whatever a head may carry.
            headers = Headers()
            for name, value in fields:
                headers.addTrusted(name, value)
        for name, value in draw(fieldLists):
            headers.addTrusted(name, value)
        request = RequestHead(
            draw(st.one_of(st.sampled_from([b"GET", b"CONNECT", b""]), wire)),
            draw(wire),
            draw(st.one_of(st.sampled_from([b"HTTP/1.1", b""]), wire)),
            headers,
        )
        request.user = draw(optionalText)
    start = draw(
        st.one_of(
            st.floats(min_value=0, max_value=4e9),
            st.sampled_from([START, START + 0.999, 946684799.9999999, 0.0]),
        )
    )
    duration = draw(
        st.one_of(
            st.floats(min_value=-10, max_value=1e5),
            st.sampled_from([0.0, 0.0009995, 0.999, 0.9995, 1.0, -0.0000004]),
        )
    )
    return (
        (draw(host), draw(st.integers(min_value=0, max_value=65535))),
        request,
        start,
        start + duration,
        draw(st.integers(min_value=-2, max_value=1200)),
        draw(st.integers(min_value=0, max_value=10**9)),
        draw(st.integers(min_value=0, max_value=10**9)),
        draw(
            st.one_of(
                st.none(), st.tuples(host, st.integers(min_value=0, max_value=65535))
            )
        ),
        draw(st.one_of(st.none(), st.tuples(anyText, optionalText))),
        draw(optionalText),
        draw(st.booleans()),
        draw(st.booleans()),
    )


class DifferentialTests(SynchronousTestCase):
    """
    The formatters write exactly what simple reference implementations of
    the documented formats write, for any record.
    """

    @settings(max_examples=1500, deadline=None)
    @given(st.lists(records, min_size=1, max_size=4))
    def test_combined(self, batch: list[AccessRecord]) -> None:
        """
        L{formatCombined} matches the reference, for records logged one
        after another (so its caches are exercised too).
        """
        for record in batch:
            self.assertEqual(formatCombined(record), referenceCombined(record))

    @settings(max_examples=1000, deadline=None)
    @given(st.lists(records, min_size=1, max_size=4))
    def test_squid(self, batch: list[AccessRecord]) -> None:
        """
        L{formatSquid} matches the reference.
        """
        for record in batch:
            self.assertEqual(formatSquid(record), referenceSquid(record))

    @settings(max_examples=1000, deadline=None)
    @given(st.lists(records, min_size=1, max_size=4))
    def test_json(self, batch: list[AccessRecord]) -> None:
        """
        L{formatJSON} matches the reference.
        """
        for record in batch:
            self.assertEqual(formatJSON(record), referenceJSON(record))

    @settings(max_examples=1500, deadline=None)
    @given(st.lists(exchanges(), min_size=1, max_size=4))
    def test_combinedExchanges(self, batch: list[Exchange]) -> None:
        """
        The combined format's batch formatter writes each exchange as
        L{formatCombined} writes the record made from it.
        """
        self.assertEqual(
            _combinedLines(batch),
            [formatCombined(recordFromExchange(exchange)) for exchange in batch],
        )

    def test_durationsOfExchanges(self) -> None:
        """
        The batch formatter rounds durations as L{formatCombined} does,
        also right at the edge of a millisecond.
        """
        request = RequestHead(b"GET", b"/")
        batch = [
            (("127.0.0.1", 1), request, 1000.0, 1000.0 + duration, 200, 0, 0)
            + (None, None, None, False, False)
            for duration in (0.0009995, 0.0009994, 0.9995, 0.15, 1.0, 5.0, -0.0004)
        ]
        lines = _combinedLines(batch)  # type: ignore[arg-type]
        self.assertEqual(
            lines,
            [formatCombined(recordFromExchange(e)) for e in batch],  # type: ignore[arg-type]
        )
        self.assertEqual(
            [line.split('" ')[-1].split()[0] for line in lines],
            ["1", "0", "999", "150", "1000", "5000", "0"],
        )

    def test_everyByteOfExchanges(self) -> None:
        """
        Every byte, alone or next to clean bytes, in every field of an
        exchange's request, is written by the combined format's batch
        formatter as by L{formatCombined}.
        """
        batch = []
        for code in range(0x100):
            byte = bytes([code])
            for value in (byte, b"a" + byte + b"b"):
                for method, target, version in (
                    (value, b"/", b"HTTP/1.1"),
                    (b"GET", value, b"HTTP/1.1"),
                    (b"GET", b"/", value),
                ):
                    batch.append(
                        makeExchange(request=RequestHead(method, target, version))
                    )
                if code not in b"\r\n":
                    for name in (b"User-Agent", b"Referer"):
                        block = b"Host: a\r\n" + name + b": " + value + b"\r\n"
                        request = RequestHead(
                            b"GET", b"/", b"HTTP/1.1", Headers._fromBlock(block)
                        )
                        batch.append(makeExchange(request=request))
        self.assertEqual(
            _combinedLines(batch),
            [formatCombined(recordFromExchange(exchange)) for exchange in batch],
        )

    def test_everyByte(self) -> None:
        """
        Every character from U+0000 to U+0100, alone or next to clean text,
        in every escaped field, is written as the reference writes it: the
        fast paths' byte tables miss none.
        """
        for code in range(0x101):
            char = chr(code)
            for text in (char, f"a{char}b"):
                for fields in (
                    {"target": text},
                    {"method": text},
                    {"version": text},
                    {"userAgent": text},
                    {"referer": text},
                    {"user": text},
                    {"filterName": text},
                    {"filterName": "f", "filterReason": text},
                    {"contentType": text},
                ):
                    record = makeRecord(**fields)
                    self.assertEqual(
                        formatCombined(record), referenceCombined(record), fields
                    )
                    self.assertEqual(
                        formatSquid(record), referenceSquid(record), fields
                    )

    def test_cachedHeaderStaysClean(self) -> None:
        """
        A user agent seen clean before is still written as is, and a dirty
        one that follows is still escaped.
        """
        clean = makeRecord(userAgent="Mozilla/5.0 (X11)")
        dirty = makeRecord(userAgent='Mozilla/5.0 "(X11)')
        for _ in range(3):
            self.assertIn('"Mozilla/5.0 (X11)"', formatCombined(clean))
            self.assertIn('"Mozilla/5.0 \\"(X11)"', formatCombined(dirty))

    def test_connectionCaches(self) -> None:
        """
        Records of different connections interleaved get their own addresses
        in every format, also after the caches have been cleared for being
        full.
        """
        for port in range(3000):
            record = makeRecord(clientPort=port, upstreamPort=port % 7 or None)
            self.assertEqual(formatCombined(record), referenceCombined(record))
            self.assertEqual(formatJSON(record), referenceJSON(record))


class FieldsPrintedTests(SynchronousTestCase):
    """
    L{AccessLogWriter} tells the protocol which optional fields its format
    prints.
    """

    def test_byFormat(self) -> None:
        """
        The combined format prints the user agent and referer but not the
        content type, Squid's the content type but neither header, JSON
        all three, and so does any other formatter.
        """
        seen = {}
        for name, formatter in [
            *FORMATTERS.items(),
            ("custom", lambda record: "x\n"),
        ]:
            writer = AccessLogWriter(Clock(), lambda: io.StringIO(), formatter)
            seen[name] = (writer.logsContentType, writer.logsRequestHeaders)
        self.assertEqual(
            seen,
            {
                "combined": (False, True),
                "squid": (True, False),
                "json": (True, True),
                "custom": (True, True),
            },
        )
