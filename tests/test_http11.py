# -*- test-case-name: tests.test_http11 -*-
"""
Tests for L{proxyapp.http11}.

Every parse is run twice, once with the input delivered in one
C{receiveData} call and once a byte at a time, and both deliveries must
produce the same transcript (or the same error).
"""

from __future__ import annotations

import re
import sys
import time
from typing import Any, Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from proxyapp import http11
from proxyapp.http11 import (
    NEED_DATA,
    PAUSED,
    ClientProtocolError,
    EndOfMessage,
    ProtocolError,
    RequestParser,
    ResponseParser,
    UpstreamProtocolError,
    parseAuthority,
    wholeResponseHead,
)
from proxyapp.message import Headers, RequestHead, ResponseHead

ParserFactory = Callable[[], Any]


def whole(data: bytes) -> list[bytes]:
    """
    Deliver C{data} in one piece.
    """
    return [data]


def bytewise(data: bytes) -> list[bytes]:
    """
    Deliver C{data} one byte at a time.
    """
    return [data[i : i + 1] for i in range(len(data))]


MODES = [("whole", whole), ("bytewise", bytewise)]


def drain(parser: Any, events: list[Any]) -> None:
    """
    Append the parser's events to C{events} until it needs data or pauses.

    A run of C{PAUSED} answers is recorded once, so that a paused parser
    fed byte by byte yields the same transcript as one fed all at once.
    """
    while True:
        event = parser.nextEvent()
        if event is NEED_DATA:
            return
        if event is PAUSED:
            if not events or events[-1] is not PAUSED:
                events.append(PAUSED)
            return
        events.append(event)


def merge(events: list[Any]) -> list[Any]:
    """
    Join adjacent body pieces, so transcripts compare independently of how
    the body was sliced.
    """
    merged: list[Any] = []
    for event in events:
        if isinstance(event, bytes) and merged and isinstance(merged[-1], bytes):
            merged[-1] = merged[-1] + event
        else:
            merged.append(event)
    return merged


def feed(parser: Any, pieces: list[bytes], eof: bool = False) -> list[Any]:
    """
    Give C{pieces} to C{parser} one call each, draining events after each,
    then optionally signal EOF and drain again.

    @return: the merged transcript.
    """
    events: list[Any] = []
    for piece in pieces:
        parser.receiveData(piece)
        drain(parser, events)
    # Drain once more, so that feeding no bytes (after startNextCycle or
    # expectResponse) still collects what is already buffered.
    drain(parser, events)
    if eof:
        parser.receiveEOF()
        drain(parser, events)
    return merge(events)


def describe(event: Any) -> Any:
    """
    A comparable summary of one event.
    """
    if isinstance(event, RequestHead):
        return (
            "request",
            event.method,
            event.target,
            event.version,
            list(event.headers),
        )
    if isinstance(event, ResponseHead):
        return (
            "response",
            event.status,
            event.reason,
            event.version,
            list(event.headers),
        )
    if isinstance(event, bytes):
        return ("body", event)
    if isinstance(event, EndOfMessage):
        return ("end", None if event.trailers is None else list(event.trailers))
    if event is PAUSED:
        return "PAUSED"
    raise AssertionError(f"unexpected event {event!r}")


def responseParser(
    method: bytes = b"GET", **kwargs: Any
) -> Callable[[], ResponseParser]:
    """
    @return: a factory of response parsers expecting the response to
        C{method}.
    """

    def factory() -> ResponseParser:
        parser = ResponseParser(**kwargs)
        parser.expectResponse(method)
        return parser

    return factory


def requestParser(**kwargs: Any) -> Callable[[], RequestParser]:
    """
    @return: a factory of request parsers with the given limits.
    """
    return lambda: RequestParser(**kwargs)


class ParserTestMixin:
    """
    Assertions that run a parse in every delivery mode.
    """

    assertEqual: Callable[..., None]
    assertRaises: Callable[..., Any]
    assertIsInstance: Callable[..., None]
    fail: Callable[..., Any]

    def transcripts(
        self,
        data: bytes,
        factory: ParserFactory = RequestParser,
        eof: bool = False,
    ) -> list[tuple[str, Any, list[Any]]]:
        """
        Parse C{data} in every mode and check the modes agree.

        @return: C{(mode, parser, events)} for each mode.
        """
        results = []
        for mode, split in MODES:
            parser = factory()
            events = feed(parser, split(data), eof)
            results.append((mode, parser, events))
        first = [describe(e) for e in results[0][2]]
        for mode, _, events in results[1:]:
            self.assertEqual(
                [describe(e) for e in events], first, f"{mode} differs from whole"
            )
        return results

    def assertTranscript(
        self,
        data: bytes,
        expected: list[Any],
        factory: ParserFactory = RequestParser,
        eof: bool = False,
    ) -> list[tuple[str, Any, list[Any]]]:
        """
        Assert that parsing C{data} gives the described events C{expected}
        in every mode.
        """
        results = self.transcripts(data, factory, eof)
        for mode, _, events in results:
            self.assertEqual([describe(e) for e in events], expected, mode)
        return results

    def heads(self, data: bytes, factory: ParserFactory = RequestParser) -> list[Any]:
        """
        @return: the first event (a head) of C{data} parsed in every mode.
        """
        found = []
        for mode, _, events in self.transcripts(data, factory):
            if not events or not isinstance(events[0], (RequestHead, ResponseHead)):
                self.fail(f"{mode}: no head parsed from {data!r}: {events!r}")
            found.append(events[0])
        return found

    def assertRejected(
        self,
        data: bytes,
        status: int = 400,
        factory: ParserFactory = RequestParser,
        eof: bool = False,
    ) -> None:
        """
        Assert that parsing C{data} raises L{ClientProtocolError} with
        C{status} in every mode.
        """
        for mode, split in MODES:
            parser = factory()
            error = self.assertRaises(
                ClientProtocolError, feed, parser, split(data), eof
            )
            self.assertEqual((mode, error.status), (mode, status), str(error))

    def assertUpstreamRejected(
        self,
        data: bytes,
        method: bytes = b"GET",
        eof: bool = False,
    ) -> None:
        """
        Assert that parsing C{data} as the response to C{method} raises
        L{UpstreamProtocolError} (answered with 502) in every mode.
        """
        for mode, split in MODES:
            parser = responseParser(method)()
            error = self.assertRaises(
                UpstreamProtocolError, feed, parser, split(data), eof
            )
            self.assertEqual((mode, error.status), (mode, 502), str(error))


HOST = b"Host: example.com\r\n"


def get(
    target: bytes = b"/", version: bytes = b"HTTP/1.1", extra: bytes = b""
) -> bytes:
    """
    A GET request head with a Host field and C{extra} field lines.
    """
    return b"GET " + target + b" " + version + b"\r\n" + HOST + extra + b"\r\n"


def post(fields: bytes, body: bytes = b"") -> bytes:
    """
    A POST request with a Host field, C{fields} and C{body} as given.
    """
    return b"POST /submit HTTP/1.1\r\n" + HOST + fields + b"\r\n" + body


def chunkedPost(body: bytes) -> bytes:
    """
    A chunked POST request whose (already encoded) body is C{body}.
    """
    return post(b"Transfer-Encoding: chunked\r\n", body)


class ParseAuthorityTests(SynchronousTestCase):
    """
    Tests for L{parseAuthority}.
    """

    def test_hostAndPort(self) -> None:
        """
        A host and port are split, with the port as an integer.
        """
        self.assertEqual(parseAuthority(b"example.com:8080", 80), ("example.com", 8080))

    def test_defaultPort(self) -> None:
        """
        Without a port the default port is used.
        """
        self.assertEqual(parseAuthority(b"example.com", 443), ("example.com", 443))

    def test_emptyPortUsesDefault(self) -> None:
        """
        An empty port after the colon (allowed by RFC 3986) means the default port.
        """
        self.assertEqual(parseAuthority(b"example.com:", 80), ("example.com", 80))

    def test_portRequired(self) -> None:
        """
        Without a default port (CONNECT), a missing port is an error.
        """
        self.assertRaises(ValueError, parseAuthority, b"example.com", None)

    def test_emptyPortWhenRequired(self) -> None:
        """
        Without a default port, an empty port after the colon is an error.
        """
        self.assertRaises(ValueError, parseAuthority, b"example.com:", None)

    def test_hostCaseFolded(self) -> None:
        """
        The host is lowercased.
        """
        self.assertEqual(parseAuthority(b"ExAmPlE.COM", 80), ("example.com", 80))

    def test_percentEncodedHost(self) -> None:
        """
        A percent-encoded ASCII host is decoded and lowercased.
        """
        self.assertEqual(parseAuthority(b"ex%41mple.com", 80), ("example.com", 80))

    def test_idnaHost(self) -> None:
        """
        A percent-encoded UTF-8 host is returned IDNA-encoded.
        """
        self.assertEqual(
            parseAuthority(b"b%C3%BCcher.example:81", 80), ("xn--bcher-kva.example", 81)
        )

    def test_idnaHostCaseFolded(self) -> None:
        """
        An internationalised host with capitals is normalised to lowercase punycode.
        """
        self.assertEqual(
            parseAuthority(b"B%C3%9CCHER.example", 80), ("xn--bcher-kva.example", 80)
        )

    def test_invalidUTF8Host(self) -> None:
        """
        A percent-encoded host that is not UTF-8 is an error.
        """
        self.assertRaises(ValueError, parseAuthority, b"%FF%FE.example", 80)

    def test_rawNonASCIIHost(self) -> None:
        """
        Raw non-ASCII bytes are not allowed in an authority.
        """
        self.assertRaises(
            ValueError, parseAuthority, "bücher.example".encode("utf-8"), 80
        )

    def test_percentEncodedDelimiter(self) -> None:
        """
        A percent-encoded delimiter such as C{/} in the host is an error.
        """
        self.assertRaises(ValueError, parseAuthority, b"evil.com%2F.example.com", 80)

    def test_percentEncodedControlCharacter(self) -> None:
        """
        A host that decodes to a control character (CR, LF, NUL) is an error.
        """
        for host in [b"a%0D%0Ab.example", b"a%00b.example", b"a%09b.example"]:
            self.assertRaises(ValueError, parseAuthority, host, 80)

    def test_ipv6Literal(self) -> None:
        """
        An IPv6 literal is returned without brackets.
        """
        self.assertEqual(parseAuthority(b"[::1]:8080", 80), ("::1", 8080))

    def test_ipv6LiteralDefaultPort(self) -> None:
        """
        An IPv6 literal without a port gets the default port.
        """
        self.assertEqual(parseAuthority(b"[2001:DB8::1]", 443), ("2001:db8::1", 443))

    def test_ipv6Unterminated(self) -> None:
        """
        An IPv6 literal without its closing bracket is an error.
        """
        self.assertRaises(ValueError, parseAuthority, b"[::1:80", 80)

    def test_ipv6Garbage(self) -> None:
        """
        Anything but a port after an IPv6 literal is an error.
        """
        self.assertRaises(ValueError, parseAuthority, b"[::1]x:80", 80)

    def test_ipv6ZoneIdentifier(self) -> None:
        """
        An IPv6 zone identifier is not a forwardable target.
        """
        self.assertRaises(ValueError, parseAuthority, b"[fe80::1%25eth0]:80", 80)

    def test_unbracketedIPv6(self) -> None:
        """
        An IPv6 address without brackets is an error.
        """
        self.assertRaises(ValueError, parseAuthority, b"::1:80", 80)

    def test_userinfo(self) -> None:
        """
        Userinfo is not allowed.
        """
        self.assertRaises(ValueError, parseAuthority, b"user:pass@example.com", 80)

    def test_emptyHost(self) -> None:
        """
        An empty host is an error.
        """
        self.assertRaises(ValueError, parseAuthority, b":80", 80)
        self.assertRaises(ValueError, parseAuthority, b"", 80)

    def test_portOutOfRange(self) -> None:
        """
        Ports 0 and above 65535 are errors.
        """
        for port in [b"0", b"65536", b"99999", b"123456"]:
            self.assertRaises(ValueError, parseAuthority, b"example.com:" + port, 80)

    def test_portNotNumeric(self) -> None:
        """
        A port that is not decimal digits is an error.
        """
        for port in [b"http", b"-1", b"+80", b"8 0", b"0x50"]:
            self.assertRaises(ValueError, parseAuthority, b"example.com:" + port, 80)


class RequestLineTests(SynchronousTestCase, ParserTestMixin):
    """
    Request-line parsing (RFC 9112 section 3).
    """

    def test_standardMethods(self) -> None:
        """
        Every method of RFC 9110 and PATCH is parsed as given.
        """
        for method in [
            b"GET",
            b"HEAD",
            b"POST",
            b"PUT",
            b"DELETE",
            b"OPTIONS",
            b"TRACE",
            b"PATCH",
        ]:
            for head in self.heads(method + b" /x HTTP/1.1\r\n" + HOST + b"\r\n"):
                self.assertEqual(head.method, method)

    def test_extensionMethodPURGE(self) -> None:
        """
        The extension method PURGE is accepted.
        """
        for head in self.heads(b"PURGE /cached HTTP/1.1\r\n" + HOST + b"\r\n"):
            self.assertEqual(head.method, b"PURGE")

    def test_extensionMethodMKCOL(self) -> None:
        """
        The WebDAV extension method MKCOL is accepted.
        """
        for head in self.heads(b"MKCOL /dav/new/ HTTP/1.1\r\n" + HOST + b"\r\n"):
            self.assertEqual(head.method, b"MKCOL")

    def test_methodCaseKept(self) -> None:
        """
        Methods are case-sensitive and are not case-folded.
        """
        for head in self.heads(b"get / HTTP/1.1\r\n" + HOST + b"\r\n"):
            self.assertEqual(head.method, b"get")

    def test_invalidMethod(self) -> None:
        """
        A method that is not a token is refused with 400.
        """
        self.assertRejected(b"GE(T / HTTP/1.1\r\n" + HOST + b"\r\n")

    def test_emptyMethod(self) -> None:
        """
        A request line starting with a space (no method) is refused with 400.
        """
        self.assertRejected(b" / HTTP/1.1\r\n" + HOST + b"\r\n")

    def test_leadingEmptyLines(self) -> None:
        """
        Empty lines before the request line are ignored.
        """
        data = b"\r\n\r\n\r\n" + get()
        self.assertTranscript(
            data,
            [
                ("request", b"GET", b"/", b"HTTP/1.1", [(b"Host", b"example.com")]),
                ("end", None),
                "PAUSED",
            ],
        )

    def test_http10(self) -> None:
        """
        An HTTP/1.0 request keeps its version.
        """
        for head in self.heads(get(version=b"HTTP/1.0")):
            self.assertEqual(head.version, b"HTTP/1.0")

    def test_http11(self) -> None:
        """
        An HTTP/1.1 request keeps its version.
        """
        for head in self.heads(get()):
            self.assertEqual(head.version, b"HTTP/1.1")

    def test_http12TreatedAs11(self) -> None:
        """
        A higher HTTP/1.x minor version is treated as HTTP/1.1.
        """
        for head in self.heads(get(version=b"HTTP/1.2")):
            self.assertEqual(head.version, b"HTTP/1.1")

    def test_http20(self) -> None:
        """
        HTTP/2.0 in a request line is refused with 400.
        """
        self.assertRejected(get(version=b"HTTP/2.0"))

    def test_versionWithTrailingGarbage(self) -> None:
        """
        A version such as HTTP/1.1x is refused with 400.
        """
        self.assertRejected(get(version=b"HTTP/1.1x"))

    def test_lowercaseVersion(self) -> None:
        """
        The version name is case-sensitive: http/1.1 is refused with 400.
        """
        self.assertRejected(get(version=b"http/1.1"))

    def test_otherMalformedVersions(self) -> None:
        """
        Versions that are not HTTP/1.x are refused with 400.
        """
        for version in [
            b"HTTP/1",
            b"HTTP/1.",
            b"HTTP/11",
            b"HTTP/0.9",
            b"HTTP/1.10",
            b"HTTP/1.a",
            b"HTTPS/1.1",
        ]:
            self.assertRejected(get(version=version))

    def test_extraSpaceBetweenParts(self) -> None:
        """
        Two spaces between request-line parts are refused with 400.
        """
        self.assertRejected(b"GET  / HTTP/1.1\r\n" + HOST + b"\r\n")
        self.assertRejected(b"GET /  HTTP/1.1\r\n" + HOST + b"\r\n")

    def test_trailingSpace(self) -> None:
        """
        A space after the version is refused with 400.
        """
        self.assertRejected(b"GET / HTTP/1.1 \r\n" + HOST + b"\r\n")

    def test_leadingSpace(self) -> None:
        """
        A space before the method is refused with 400.
        """
        self.assertRejected(b" GET / HTTP/1.1\r\n" + HOST + b"\r\n")

    def test_tabSeparator(self) -> None:
        """
        A tab in place of a space in the request line is refused with 400.
        """
        self.assertRejected(b"GET\t/ HTTP/1.1\r\n" + HOST + b"\r\n")
        self.assertRejected(b"GET /\tHTTP/1.1\r\n" + HOST + b"\r\n")

    def test_tabInTarget(self) -> None:
        """
        A tab inside the request-target is refused with 400.
        """
        self.assertRejected(b"GET /a\tb HTTP/1.1\r\n" + HOST + b"\r\n")

    def test_missingVersion(self) -> None:
        """
        A request line without a version is refused with 400.
        """
        self.assertRejected(b"GET /\r\n" + HOST + b"\r\n")
        self.assertRejected(b"GET / \r\n" + HOST + b"\r\n")

    def test_missingTarget(self) -> None:
        """
        A request line without a target is refused with 400.
        """
        self.assertRejected(b"GET HTTP/1.1\r\n" + HOST + b"\r\n")
        self.assertRejected(b"GET  HTTP/1.1\r\n" + HOST + b"\r\n")

    def test_methodOnly(self) -> None:
        """
        A request line holding only a method is refused with 400.
        """
        self.assertRejected(b"GET\r\n" + HOST + b"\r\n")

    def test_controlCharacterInRequestLine(self) -> None:
        """
        A control character in the request line is refused with 400.
        """
        self.assertRejected(b"GET /a\x00b HTTP/1.1\r\n" + HOST + b"\r\n")
        self.assertRejected(b"GET /a\x7fb HTTP/1.1\r\n" + HOST + b"\r\n")

    def test_bareCRInRequestLine(self) -> None:
        """
        A bare CR in the request line is refused with 400.
        """
        self.assertRejected(b"GET /a\rb HTTP/1.1\r\n" + HOST + b"\r\n")


class EarlyRejectionTests(SynchronousTestCase, ParserTestMixin):
    """
    What can never become a valid request head is refused as soon as it
    shows, not when the rest of the head (or the header timeout) comes.
    """

    def assertRefusedEarly(self, data: bytes, reason: str) -> None:
        """
        Assert that C{data}, the start of a head without its empty line,
        is refused with 400 and C{reason} in every delivery mode.
        """
        self.assertRejected(data)
        error = self.assertRaises(ClientProtocolError, feed, RequestParser(), [data])
        self.assertEqual(error.reason, reason)

    def test_http09(self) -> None:
        """
        An HTTP/0.9 request line (no version) is refused once it ends.
        """
        self.assertRefusedEarly(b"GET /\r\n", "malformed request line")

    def test_badMethod(self) -> None:
        """
        A complete request line whose method is not a token is refused.
        """
        self.assertRefusedEarly(b"G(T / HTTP/1.1\r\n", "invalid method")

    def test_unsupportedVersion(self) -> None:
        """
        The HTTP/2 connection preface's first line is refused once it ends.
        """
        self.assertRefusedEarly(b"PRI * HTTP/2.0\r\n", "unsupported HTTP version")

    def test_controlByteInLine(self) -> None:
        """
        A NUL in a complete request line is refused before the head ends.
        """
        self.assertRefusedEarly(
            b"GET /\x00 HTTP/1.1\r\nHost: x",
            "invalid character (control, NUL or bare CR/LF) in the request head",
        )

    def test_tlsHandshake(self) -> None:
        """
        A TLS ClientHello (plain HTTP expected) is refused at its first
        bytes: they start with a control byte.
        """
        self.assertRefusedEarly(
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
            "invalid character (control, NUL or bare CR/LF) in the request head",
        )

    def test_nonTokenStart(self) -> None:
        """
        A line that starts with a byte no method holds is refused before
        it ends.
        """
        self.assertRefusedEarly(b'{"jsonrpc": ', "invalid method")

    def test_validPartsWait(self) -> None:
        """
        A valid start of a head, cut anywhere (including between the CR
        and the LF of a line end), is not refused: it waits for more.
        """
        head = b"GET http://example.com/a HTTP/1.1\r\nHost: example.com\r\n\r\n"
        for cut in range(1, len(head) - 1):
            self.assertEqual(feed(RequestParser(), [head[:cut]]), [], cut)

    def test_lineCheckedOnce(self) -> None:
        """
        A complete request line is checked when it first shows; the
        header lines after it arrive without the line being checked again
        (a head sent a byte at a time costs one check of its line).
        """
        parser = RequestParser()
        line = b"GET http://example.com/ HTTP/1.1\r\n"
        parser.receiveData(line)
        self.assertIs(parser.nextEvent(), NEED_DATA)
        checked = []
        original = http11._splitRequestLine
        self.patch(
            http11,
            "_splitRequestLine",
            lambda line: checked.append(line) or original(line),
        )
        for byte in b"Host: example.com\r":
            parser.receiveData(bytes([byte]))
            self.assertIs(parser.nextEvent(), NEED_DATA)
        self.assertEqual(checked, [])


class TargetFormTests(SynchronousTestCase, ParserTestMixin):
    """
    Request-target forms (RFC 9112 section 3.2).
    """

    def test_absoluteForm(self) -> None:
        """
        An absolute-form target fills in scheme, host, port, authority and path.
        """
        for head in self.heads(get(b"http://example.com/a/b?c=d")):
            self.assertEqual(
                (head.scheme, head.host, head.port, head.authority, head.path),
                ("http", "example.com", 80, b"example.com", b"/a/b?c=d"),
            )
            self.assertEqual(head.target, b"http://example.com/a/b?c=d")

    def test_absoluteFormExplicitPort(self) -> None:
        """
        An explicit port in an absolute-form target is used and kept in the authority.
        """
        for head in self.heads(get(b"http://example.com:8080/")):
            self.assertEqual(
                (head.host, head.port, head.authority),
                ("example.com", 8080, b"example.com:8080"),
            )

    def test_httpsDefaultPort(self) -> None:
        """
        An https target without a port gets port 443.
        """
        for head in self.heads(get(b"https://example.com/x")):
            self.assertEqual(
                (head.scheme, head.host, head.port, head.path),
                ("https", "example.com", 443, b"/x"),
            )

    def test_webSocketSchemes(self) -> None:
        """
        ws and wss targets (a WebSocket handshake sent to a proxy) name the
        origins http and https name: the scheme the proxy connects with
        is C{http} or C{https}, with their default ports; the target stays
        as the client wrote it.
        """
        for target, expected in [
            (b"ws://example.com/chat?a=1", ("http", 80, b"/chat?a=1")),
            (b"WSS://example.com/chat", ("https", 443, b"/chat")),
            (b"wss://example.com:8443", ("https", 8443, b"/")),
        ]:
            for head in self.heads(get(target)):
                self.assertEqual(
                    (head.scheme, head.port, head.path, head.target),
                    expected + (target,),
                )
        self.assertRejected(get(b"ws://example.com/a#frag"))

    def test_schemeCaseFolded(self) -> None:
        """
        The scheme is case-insensitive and reported in lowercase.
        """
        for head in self.heads(get(b"HTTP://example.com/")):
            self.assertEqual((head.scheme, head.port), ("http", 80))

    def test_ipv6Literal(self) -> None:
        """
        An IPv6 literal target gives the bare address as host.
        """
        for head in self.heads(get(b"http://[::1]:8080/x")):
            self.assertEqual(
                (head.host, head.port, head.authority, head.path),
                ("::1", 8080, b"[::1]:8080", b"/x"),
            )

    def test_emptyPath(self) -> None:
        """
        An absolute-form target without a path is sent upstream with path C{/}.
        """
        for head in self.heads(get(b"http://example.com")):
            self.assertEqual((head.host, head.path), ("example.com", b"/"))

    def test_emptyPathWithPort(self) -> None:
        """
        An absolute-form target with a port and no path gets path C{/}.
        """
        for head in self.heads(get(b"http://example.com:81")):
            self.assertEqual(
                (head.port, head.authority, head.path), (81, b"example.com:81", b"/")
            )

    def test_queryWithoutPath(self) -> None:
        """
        C{http://h?q=1} has host C{h} and path C{/?q=1}.
        """
        for head in self.heads(get(b"http://h?q=1")):
            self.assertEqual(
                (head.host, head.authority, head.path), ("h", b"h", b"/?q=1")
            )

    def test_pathByteExact(self) -> None:
        """
        Path and query are forwarded byte for byte, without decoding C{%2F} or normalising.
        """
        path = b"/a%2Fb/../c//d;p=1?x=%41&y=a+b&z=%zz&q=\"{|}^`\\[]!$'()*,@:"
        for head in self.heads(get(b"http://example.com" + path)):
            self.assertEqual(head.path, path)

    def test_obsTextInPathKept(self) -> None:
        """
        Bytes above 0x7F in the path are kept as received.
        """
        path = b"/caf\xc3\xa9?\xff"
        for head in self.heads(get(b"http://example.com" + path)):
            self.assertEqual(head.path, path)

    def test_atSignInPathIsNotUserinfo(self) -> None:
        """
        An C{@} after the authority belongs to the path.
        """
        for head in self.heads(get(b"http://example.com/@evil.com")):
            self.assertEqual((head.host, head.path), ("example.com", b"/@evil.com"))

    def test_hostCaseFolded(self) -> None:
        """
        The target host is lowercased while the authority is kept as received.
        """
        for head in self.heads(get(b"http://ExAmple.COM/")):
            self.assertEqual(
                (head.host, head.authority), ("example.com", b"ExAmple.COM")
            )

    def test_percentEncodedHost(self) -> None:
        """
        A percent-encoded host in the target is decoded.
        """
        for head in self.heads(get(b"http://ex%61mple.com/")):
            self.assertEqual(head.host, "example.com")

    def test_idnaHost(self) -> None:
        """
        A percent-encoded internationalised host becomes its IDNA form.
        """
        for head in self.heads(get(b"http://b%C3%BCcher.example/")):
            self.assertEqual(head.host, "xn--bcher-kva.example")

    def test_percentEncodedControlInHost(self) -> None:
        """
        A target host that decodes to CR LF is refused with 400.
        """
        self.assertRejected(get(b"http://a%0D%0Ab.example/"))

    def test_userinfoRejected(self) -> None:
        """
        Userinfo in an absolute-form target is refused with 400.
        """
        self.assertRejected(get(b"http://user:pass@example.com/"))
        self.assertRejected(get(b"http://example.com@evil.com/"))

    def test_fragmentRejected(self) -> None:
        """
        A fragment in an absolute-form target is refused with 400.
        """
        self.assertRejected(get(b"http://example.com/a#frag"))
        self.assertRejected(get(b"http://example.com#frag"))

    def test_fragmentInOriginFormRejected(self) -> None:
        """
        A fragment in an origin-form target is refused with 400.
        """
        self.assertRejected(get(b"/a#frag"))

    def test_unsupportedScheme(self) -> None:
        """
        A target URL that is not http, https, ws or wss is refused with 400.
        """
        self.assertRejected(get(b"ftp://example.com/"))
        self.assertRejected(get(b"wsx://example.com/"))
        self.assertRejected(get(b"://example.com/"))

    def test_invalidTargetHost(self) -> None:
        """
        An absolute-form target with an invalid host or port is refused with 400.
        """
        self.assertRejected(get(b"http:///path"))
        self.assertRejected(get(b"http://example.com:99999/"))
        self.assertRejected(get(b"http://exa mple.com/".replace(b" ", b"%20")))

    def test_originForm(self) -> None:
        """
        An origin-form target leaves scheme and host unset and is its own path.
        """
        for head in self.heads(get(b"/a/b?c")):
            self.assertEqual(
                (head.scheme, head.host, head.path), (None, None, b"/a/b?c")
            )

    def test_asteriskFormOptions(self) -> None:
        """
        C{OPTIONS *} is accepted.
        """
        for head in self.heads(b"OPTIONS * HTTP/1.1\r\n" + HOST + b"\r\n"):
            self.assertEqual((head.method, head.target), (b"OPTIONS", b"*"))

    def test_optionsForWholeServer(self) -> None:
        """
        C{OPTIONS} of an absolute URL with an empty path and no query is
        for the server as a whole: its path becomes C{*} (RFC 9112
        section 3.2.4).  Any other empty path becomes C{/}.
        """
        cases = [
            (b"OPTIONS", b"http://example.com", b"*"),
            (b"OPTIONS", b"http://example.com/", b"/"),
            (b"OPTIONS", b"http://example.com?q", b"/?q"),
            (b"GET", b"http://example.com", b"/"),
        ]
        for method, target, path in cases:
            data = method + b" " + target + b" HTTP/1.1\r\n" + HOST + b"\r\n"
            for head in self.heads(data):
                self.assertEqual(head.path, path, target)

    def test_asteriskFormOtherMethod(self) -> None:
        """
        The asterisk-form with a method other than OPTIONS is refused with 400.
        """
        self.assertRejected(get(b"*"))

    def test_authorityFormForGet(self) -> None:
        """
        An authority-form target is only allowed for CONNECT.
        """
        self.assertRejected(get(b"example.com:80"))

    def test_connectAuthorityForm(self) -> None:
        """
        A CONNECT target gives host, port and authority and no scheme.
        """
        data = b"CONNECT Example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"
        for head in self.heads(data):
            self.assertEqual(
                (head.method, head.scheme, head.host, head.port, head.authority),
                (b"CONNECT", None, "example.com", 443, b"Example.com:443"),
            )

    def test_connectIPv6(self) -> None:
        """
        CONNECT to an IPv6 literal gives the bare address.
        """
        data = b"CONNECT [::1]:443 HTTP/1.1\r\nHost: [::1]:443\r\n\r\n"
        for head in self.heads(data):
            self.assertEqual((head.host, head.port), ("::1", 443))

    def test_connectPortRequired(self) -> None:
        """
        CONNECT without a port is refused with 400.
        """
        self.assertRejected(
            b"CONNECT example.com HTTP/1.1\r\nHost: example.com\r\n\r\n"
        )
        self.assertRejected(
            b"CONNECT example.com: HTTP/1.1\r\nHost: example.com\r\n\r\n"
        )

    def test_connectUserinfo(self) -> None:
        """
        CONNECT with userinfo in the target is refused with 400.
        """
        self.assertRejected(
            b"CONNECT u:p@example.com:443 HTTP/1.1\r\nHost: example.com\r\n\r\n"
        )

    def test_connectOtherForms(self) -> None:
        """
        CONNECT with an origin-form or absolute-form target is refused with 400.
        """
        self.assertRejected(b"CONNECT / HTTP/1.1\r\nHost: example.com\r\n\r\n")
        self.assertRejected(
            b"CONNECT http://example.com:443/ HTTP/1.1\r\nHost: example.com\r\n\r\n"
        )

    def test_invalidHostHeader(self) -> None:
        """
        An origin-form request with an unparseable Host field is refused with 400.
        """
        self.assertRejected(b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n")
        self.assertRejected(b"GET / HTTP/1.1\r\nHost: u@example.com\r\n\r\n")


class HeaderFieldTests(SynchronousTestCase, ParserTestMixin):
    """
    Header field syntax and its smuggling defences (RFC 9112 section 5).
    """

    def test_fieldsInWireOrder(self) -> None:
        """
        Fields keep their order, name case and values, with OWS stripped.
        """
        data = b"GET / HTTP/1.1\r\nHost: example.com\r\nX-B:  two \t\r\nx-a:one\r\nX-B: three\r\n\r\n"
        for head in self.heads(data):
            self.assertEqual(
                list(head.headers),
                [
                    (b"Host", b"example.com"),
                    (b"X-B", b"two"),
                    (b"x-a", b"one"),
                    (b"X-B", b"three"),
                ],
            )

    def test_emptyFieldValue(self) -> None:
        """
        A field with an empty value is kept.
        """
        for head in self.heads(get(extra=b"X-Empty:\r\n")):
            self.assertEqual(head.headers.getAll(b"x-empty"), [b""])

    def test_obsTextInValueAllowed(self) -> None:
        """
        Bytes above 0x7F in a field value are allowed.
        """
        for head in self.heads(get(extra=b"X-Name: caf\xc3\xa9\r\n")):
            self.assertEqual(head.headers.get(b"x-name"), b"caf\xc3\xa9")

    def test_tabInValueAllowed(self) -> None:
        """
        HTAB inside a field value is allowed.
        """
        for head in self.heads(get(extra=b"X-Tab: a\tb\r\n")):
            self.assertEqual(head.headers.get(b"x-tab"), b"a\tb")

    def test_whitespaceBeforeColon(self) -> None:
        """
        Whitespace between a field name and the colon is refused with 400.
        """
        self.assertRejected(b"GET / HTTP/1.1\r\nHost : example.com\r\n\r\n")
        self.assertRejected(get(extra=b"Content-Length\t: 0\r\n"))

    def test_obsFold(self) -> None:
        """
        Obsolete line folding is refused with 400.
        """
        self.assertRejected(get(extra=b"X-Folded: a\r\n b\r\n"))
        self.assertRejected(get(extra=b"X-Folded: a\r\n\tb\r\n"))

    def test_obsFoldWithColon(self) -> None:
        """
        A folded continuation line that contains a colon is still refused with 400.
        """
        self.assertRejected(
            get(extra=b"X-Folded: a\r\n Transfer-Encoding: chunked\r\n")
        )

    def test_firstLineFolded(self) -> None:
        """
        A field line starting with whitespace right after the request line is refused with 400.
        """
        self.assertRejected(b"GET / HTTP/1.1\r\n Host: example.com\r\n\r\n")

    def test_bareCRInValue(self) -> None:
        """
        A bare CR in a field value is refused with 400.
        """
        self.assertRejected(get(extra=b"X-A: a\rb\r\n"))

    def test_bareCRAtEndOfValue(self) -> None:
        """
        A bare CR just before the CRLF ending a field line is refused with 400.
        """
        self.assertRejected(get(extra=b"X-A: a\r\r\n"))

    def test_bareLFInValue(self) -> None:
        """
        A bare LF in a field value is refused with 400.
        """
        self.assertRejected(get(extra=b"X-A: a\nb\r\n"))

    def test_bareLFLineEnd(self) -> None:
        """
        A field line ended by a bare LF is refused with 400.
        """
        self.assertRejected(get(extra=b"X-A: a\nX-B: b\r\n"))

    def test_nulInValue(self) -> None:
        """
        A NUL in a field value is refused with 400.
        """
        self.assertRejected(get(extra=b"X-A: a\x00b\r\n"))

    def test_otherControlCharacters(self) -> None:
        """
        Control characters other than HTAB, and DEL, in a field are refused with 400.
        """
        for control in [b"\x01", b"\x08", b"\x0b", b"\x0c", b"\x1b", b"\x1f", b"\x7f"]:
            self.assertRejected(get(extra=b"X-A: a" + control + b"b\r\n"))

    def test_controlCharacterInName(self) -> None:
        """
        A control character in a field name is refused with 400.
        """
        self.assertRejected(get(extra=b"X-\x00A: b\r\n"))

    def test_invalidFieldName(self) -> None:
        """
        A field name that is not a token is refused with 400.
        """
        self.assertRejected(get(extra=b"X(A): b\r\n"))
        self.assertRejected(get(extra=b"X\xc3\xa9: b\r\n"))

    def test_emptyFieldName(self) -> None:
        """
        A field line starting with a colon is refused with 400.
        """
        self.assertRejected(get(extra=b": value\r\n"))

    def test_lineWithoutColon(self) -> None:
        """
        A field line without a colon is refused with 400.
        """
        self.assertRejected(get(extra=b"NoColonHere\r\n"))

    def test_missingHostHTTP11(self) -> None:
        """
        An HTTP/1.1 request without Host is refused with 400.
        """
        self.assertRejected(b"GET / HTTP/1.1\r\n\r\n")

    def test_missingHostAbsoluteForm(self) -> None:
        """
        An HTTP/1.1 request without Host is refused with 400 even in absolute-form.
        """
        self.assertRejected(b"GET http://example.com/ HTTP/1.1\r\n\r\n")

    def test_duplicateHost(self) -> None:
        """
        Two Host fields are refused with 400.
        """
        self.assertRejected(
            b"GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n"
        )

    def test_duplicateIdenticalHost(self) -> None:
        """
        Two identical Host fields are still refused with 400.
        """
        self.assertRejected(
            b"GET / HTTP/1.1\r\nHost: a.example\r\nhost: a.example\r\n\r\n"
        )

    def test_http10WithoutHost(self) -> None:
        """
        An HTTP/1.0 request without Host is accepted.
        """
        self.assertTranscript(
            b"GET http://example.com/ HTTP/1.0\r\n\r\n",
            [
                ("request", b"GET", b"http://example.com/", b"HTTP/1.0", []),
                ("end", None),
                "PAUSED",
            ],
        )


class FramingTests(SynchronousTestCase, ParserTestMixin):
    """
    Content-Length and Transfer-Encoding (RFC 9112 section 6).
    """

    def test_contentLengthAndTransferEncoding(self) -> None:
        """
        Content-Length together with Transfer-Encoding is refused with 400.
        """
        self.assertRejected(
            post(b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n")
        )

    def test_transferEncodingAndContentLength(self) -> None:
        """
        Transfer-Encoding before Content-Length is refused with 400 too.
        """
        self.assertRejected(
            post(b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", b"0\r\n\r\n")
        )

    def test_differingContentLengthFields(self) -> None:
        """
        Two Content-Length fields with different values are refused with 400.
        """
        self.assertRejected(
            post(b"Content-Length: 5\r\nContent-Length: 6\r\n", b"hello!")
        )

    def test_differingContentLengthList(self) -> None:
        """
        A Content-Length list with different values is refused with 400.
        """
        self.assertRejected(post(b"Content-Length: 5, 6\r\n", b"hello!"))

    def test_identicalContentLengthFieldsCollapsed(self) -> None:
        """
        Identical Content-Length fields are accepted and forwarded as one field.
        """
        results = self.assertTranscript(
            post(b"Content-Length: 5\r\ncontent-length: 5\r\n", b"hello"),
            [
                (
                    "request",
                    b"POST",
                    b"/submit",
                    b"HTTP/1.1",
                    [(b"Host", b"example.com"), (b"Content-Length", b"5")],
                ),
                ("body", b"hello"),
                ("end", None),
                "PAUSED",
            ],
        )
        for _, _, events in results:
            self.assertEqual(events[0].headers.getAll(b"content-length"), [b"5"])

    def test_identicalContentLengthListCollapsed(self) -> None:
        """
        A Content-Length list of identical values is accepted and collapsed to one value.
        """
        for head in self.heads(post(b"Content-Length: 5, 5,5\r\n", b"hello")):
            self.assertEqual(head.headers.getAll(b"content-length"), [b"5"])

    def test_malformedContentLength(self) -> None:
        """
        Content-Length values that are not plain decimal digits are refused with 400.
        """
        for value in [
            b"-1",
            b"+5",
            b"0x10",
            b"",
            b"1 2",
            b"5.0",
            b"five",
            b"1e3",
            b",",
        ]:
            self.assertRejected(post(b"Content-Length: " + value + b"\r\n", b"hello"))

    def test_hugeContentLength(self) -> None:
        """
        A Content-Length with an absurd number of digits is refused with 400.
        """
        self.assertRejected(post(b"Content-Length: " + b"9" * 40 + b"\r\n"))

    def test_transferEncodingGzipChunked(self) -> None:
        """
        A transfer coding other than chunked (gzip, chunked) is refused with 501.
        """
        self.assertRejected(
            post(b"Transfer-Encoding: gzip, chunked\r\n", b"0\r\n\r\n"), 501
        )

    def test_transferEncodingSplitFields(self) -> None:
        """
        Transfer-Encoding fields are combined: gzip then chunked in two fields is refused with 501.
        """
        self.assertRejected(
            post(
                b"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n",
                b"0\r\n\r\n",
            ),
            501,
        )

    def test_transferEncodingChunkedGzip(self) -> None:
        """
        A Transfer-Encoding that does not end in chunked is refused with 400.
        """
        self.assertRejected(post(b"Transfer-Encoding: chunked, gzip\r\n", b"0\r\n\r\n"))

    def test_transferEncodingIdentity(self) -> None:
        """
        Transfer-Encoding: identity is refused with 400.
        """
        self.assertRejected(post(b"Transfer-Encoding: identity\r\n", b""))

    def test_transferEncodingEmpty(self) -> None:
        """
        An empty Transfer-Encoding is refused with 400.
        """
        self.assertRejected(post(b"Transfer-Encoding: \r\n", b""))

    def test_transferEncodingNotAToken(self) -> None:
        """
        A Transfer-Encoding with a non-token coding is refused with 400.
        """
        self.assertRejected(post(b'Transfer-Encoding: "chunked"\r\n', b"0\r\n\r\n"))

    def test_transferEncodingCaseInsensitive(self) -> None:
        """
        The chunked coding name is case-insensitive.
        """
        self.assertTranscript(
            post(b"Transfer-Encoding: Chunked\r\n", b"3\r\nabc\r\n0\r\n\r\n"),
            [
                (
                    "request",
                    b"POST",
                    b"/submit",
                    b"HTTP/1.1",
                    [(b"Host", b"example.com"), (b"Transfer-Encoding", b"Chunked")],
                ),
                ("body", b"abc"),
                ("end", None),
                "PAUSED",
            ],
        )

    def test_connectWithBody(self) -> None:
        """
        A CONNECT request declaring a body is refused with 400.
        """
        self.assertRejected(
            b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com\r\nContent-Length: 3\r\n\r\nabc"
        )


class ChunkedRequestTests(SynchronousTestCase, ParserTestMixin):
    """
    Chunked request bodies (RFC 9112 section 7.1).
    """

    def test_chunkedBody(self) -> None:
        """
        Chunks are decoded and followed by EndOfMessage without trailers.
        """
        data = chunkedPost(b"5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n")
        for _, _, events in self.transcripts(data):
            self.assertEqual(len(events), 4)
            self.assertEqual(events[1], b"hello, world")
            self.assertIsInstance(events[2], EndOfMessage)
            self.assertIsNone(events[2].trailers)
            self.assertIs(events[3], PAUSED)

    def test_hexSizes(self) -> None:
        """
        Chunk sizes are hexadecimal, in either case, and may have leading zeros.
        """
        body = b"a" * 26 + b"b" * 11
        data = chunkedPost(
            b"1A\r\n" + b"a" * 26 + b"\r\n000b\r\n" + b"b" * 11 + b"\r\n0\r\n\r\n"
        )
        for _, _, events in self.transcripts(data):
            self.assertEqual(events[1], body)

    def test_chunkExtensions(self) -> None:
        """
        Chunk extensions, tokens or quoted strings, are accepted and ignored.
        """
        data = chunkedPost(
            b"3;name\r\nabc\r\n"
            b"3 ; name = value\r\ndef\r\n"
            b'2;a=b;c="quoted \\" ;string"\r\ngh\r\n'
            b"0;last\r\n\r\n"
        )
        for _, _, events in self.transcripts(data):
            self.assertEqual(events[1], b"abcdefgh")
            self.assertIsInstance(events[2], EndOfMessage)

    def test_trailers(self) -> None:
        """
        Trailer fields are reported on the EndOfMessage event.
        """
        data = chunkedPost(b"3\r\nabc\r\n0\r\nX-Checksum: 123\r\nx-other:  v \r\n\r\n")
        self.assertTranscript(
            data,
            [
                (
                    "request",
                    b"POST",
                    b"/submit",
                    b"HTTP/1.1",
                    [(b"Host", b"example.com"), (b"Transfer-Encoding", b"chunked")],
                ),
                ("body", b"abc"),
                ("end", [(b"X-Checksum", b"123"), (b"x-other", b"v")]),
                "PAUSED",
            ],
        )

    def test_trailerLookup(self) -> None:
        """
        Trailers are L{Headers}, looked up case-insensitively.
        """
        data = chunkedPost(b"0\r\nX-Checksum: 123\r\n\r\n")
        for _, _, events in self.transcripts(data):
            self.assertIsInstance(events[1].trailers, Headers)
            self.assertEqual(events[1].trailers.get(b"x-checksum"), b"123")

    def test_trailerObsFold(self) -> None:
        """
        A folded trailer line is refused with 400.
        """
        self.assertRejected(chunkedPost(b"0\r\nX-A: a\r\n b\r\n\r\n"))

    def test_trailerWhitespaceBeforeColon(self) -> None:
        """
        Whitespace before the colon in a trailer is refused with 400.
        """
        self.assertRejected(chunkedPost(b"0\r\nX-A : a\r\n\r\n"))

    def test_trailerControlCharacter(self) -> None:
        """
        A NUL or bare CR in a trailer is refused with 400.
        """
        self.assertRejected(chunkedPost(b"0\r\nX-A: a\x00b\r\n\r\n"))
        self.assertRejected(chunkedPost(b"0\r\nX-A: a\rb\r\n\r\n"))

    def test_invalidChunkSizeLetters(self) -> None:
        """
        A chunk size that is not hexadecimal is refused with 400.
        """
        self.assertRejected(chunkedPost(b"zz\r\nabc\r\n0\r\n\r\n"))

    def test_negativeChunkSize(self) -> None:
        """
        A negative chunk size is refused with 400.
        """
        self.assertRejected(chunkedPost(b"-1\r\nabc\r\n0\r\n\r\n"))

    def test_emptyChunkSize(self) -> None:
        """
        An empty chunk-size line is refused with 400.
        """
        self.assertRejected(chunkedPost(b"\r\nabc\r\n0\r\n\r\n"))

    def test_chunkSizeLeadingSpace(self) -> None:
        """
        Whitespace before the chunk size is refused with 400.
        """
        self.assertRejected(chunkedPost(b" 3\r\nabc\r\n0\r\n\r\n"))

    def test_chunkSizeTrailingSpace(self) -> None:
        """
        Whitespace after the chunk size without an extension is refused with 400.
        """
        self.assertRejected(chunkedPost(b"3 \r\nabc\r\n0\r\n\r\n"))

    def test_chunkSizeHexPrefix(self) -> None:
        """
        A C{0x} prefix on a chunk size is refused with 400.
        """
        self.assertRejected(chunkedPost(b"0x3\r\nabc\r\n0\r\n\r\n"))

    def test_chunkSizeTooManyDigits(self) -> None:
        """
        A chunk size of more than 16 hex digits is refused with 400, even with leading zeros.
        """
        self.assertRejected(chunkedPost(b"0" * 16 + b"3\r\nabc\r\n0\r\n\r\n"))

    def test_chunkSizeOverflow(self) -> None:
        """
        A chunk size that would overflow a 64-bit integer is refused with 400.
        """
        self.assertRejected(chunkedPost(b"ffffffffffffffff\r\nabc\r\n0\r\n\r\n"))
        self.assertRejected(chunkedPost(b"1" + b"0" * 16 + b"\r\nabc\r\n0\r\n\r\n"))

    def test_chunkSizeLineTooLong(self) -> None:
        """
        A chunk-size line that never ends is refused with 400 once it is absurdly long.
        """
        self.assertRejected(chunkedPost(b"3;" + b"x" * 10000))

    def test_missingCRLFAfterChunk(self) -> None:
        """
        Chunk data not followed by CRLF is refused with 400.
        """
        self.assertRejected(chunkedPost(b"3\r\nabcX\r\n0\r\n\r\n"))

    def test_chunkTooLong(self) -> None:
        """
        A chunk with more data than its size declares is refused with 400.
        """
        self.assertRejected(chunkedPost(b"3\r\nabcd\r\n0\r\n\r\n"))

    def test_bareLFAfterChunk(self) -> None:
        """
        Chunk data followed by a bare LF is refused with 400.
        """
        self.assertRejected(chunkedPost(b"3\r\nabc\n0\r\n\r\n"))

    def test_bareCRAfterChunk(self) -> None:
        """
        Chunk data followed by a bare CR is refused with 400.
        """
        self.assertRejected(chunkedPost(b"3\r\nabc\r0\r\n\r\n"))

    def test_bareLFChunkSizeLine(self) -> None:
        """
        A chunk-size line ended by a bare LF is refused with 400.
        """
        self.assertRejected(chunkedPost(b"3\nabc\r\n0\r\n\r\n"))

    def test_splitAtEveryPosition(self) -> None:
        """
        A chunked request split in two at every byte position decodes to the same body and trailers.
        """
        data = chunkedPost(
            b"5;x=y\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nX-T: 1\r\n\r\n"
        )
        for index in range(len(data) + 1):
            events = feed(RequestParser(), [data[:index], data[index:]])
            self.assertEqual(
                [describe(e) for e in events[1:]],
                [("body", b"hello world"), ("end", [(b"X-T", b"1")]), "PAUSED"],
                f"split at {index}",
            )


class LimitTests(SynchronousTestCase, ParserTestMixin):
    """
    Request line and header section limits.
    """

    def requestLine(self, length: int) -> bytes:
        """
        @return: a GET request line of exactly C{length} bytes (no CRLF).
        """
        line = b"GET /" + b"a" * (length - len(b"GET / HTTP/1.1")) + b" HTTP/1.1"
        self.assertEqual(len(line), length)
        return line

    def test_requestLineTooLong(self) -> None:
        """
        A complete head whose request line is over maxRequestLine is refused with 414.
        """
        data = self.requestLine(65) + b"\r\n" + HOST + b"\r\n"
        self.assertRejected(data, 414, requestParser(maxRequestLine=64))

    def test_partialRequestLineTooLong(self) -> None:
        """
        A request line over maxRequestLine without its CRLF yet is refused with 414 already.
        """
        self.assertRejected(
            self.requestLine(200), 414, requestParser(maxRequestLine=64)
        )

    def test_partialRequestLineJustOver(self) -> None:
        """
        maxRequestLine + 1 bytes without a CRLF are refused with 414.
        """
        self.assertRejected(self.requestLine(65), 414, requestParser(maxRequestLine=64))

    def test_partialRequestLineAtLimit(self) -> None:
        """
        maxRequestLine bytes without a CRLF are not refused yet.
        """
        self.assertEqual(
            self.transcripts(self.requestLine(64), requestParser(maxRequestLine=64))[0][
                2
            ],
            [],
        )

    def test_requestLineAtLimit(self) -> None:
        """
        A request line of exactly maxRequestLine bytes is accepted however it arrives.
        """
        data = self.requestLine(64) + b"\r\n" + HOST + b"\r\n"
        for head in self.heads(data, requestParser(maxRequestLine=64)):
            self.assertEqual(len(head.target), 64 - len(b"GET  HTTP/1.1"))

    def test_requestLineUnderLimitPartial(self) -> None:
        """
        A request line under the limit followed by part of the header section is not refused.
        """
        data = self.requestLine(60) + b"\r\n" + HOST + b"X-Filler: " + b"x" * 100
        self.assertEqual(
            self.transcripts(data, requestParser(maxRequestLine=64))[0][2], []
        )

    def test_headerSectionTooLarge(self) -> None:
        """
        A complete head whose header section is over maxHeaderBytes is refused with 431.
        """
        data = get(extra=b"X-Big: " + b"x" * 300 + b"\r\n")
        self.assertRejected(data, 431, requestParser(maxHeaderBytes=256))

    def test_manyFieldsTooLarge(self) -> None:
        """
        Many small fields adding up to more than maxHeaderBytes are refused with 431.
        """
        data = get(extra=b"".join(b"X-F%d: v\r\n" % (i,) for i in range(60)))
        self.assertRejected(data, 431, requestParser(maxHeaderBytes=256))

    def test_partialHeaderSectionTooLarge(self) -> None:
        """
        A header section over maxHeaderBytes is refused with 431 before the head is complete.
        """
        data = b"GET / HTTP/1.1\r\n" + HOST + b"X-Big: " + b"x" * 1000
        self.assertRejected(
            data, 431, requestParser(maxRequestLine=64, maxHeaderBytes=256)
        )

    def test_partialHeaderSectionTooLargeDefaultRequestLine(self) -> None:
        """
        A partial header section over maxHeaderBytes is refused with 431 even when maxRequestLine is larger.
        """
        data = b"GET / HTTP/1.1\r\n" + HOST + b"X-Big: " + b"x" * 4000
        self.assertRejected(data, 431, requestParser(maxHeaderBytes=1024))

    def test_headerSectionUnderLimit(self) -> None:
        """
        A header section under maxHeaderBytes is accepted.
        """
        data = get(extra=b"X-Big: " + b"x" * 100 + b"\r\n")
        for head in self.heads(data, requestParser(maxHeaderBytes=256)):
            self.assertEqual(len(head.headers.get(b"x-big")), 100)

    def test_tooManyFields(self) -> None:
        """
        More than maxHeaders fields are refused with 431.
        """
        data = get(extra=b"X-A: 1\r\nX-B: 2\r\nX-C: 3\r\n")
        self.assertRejected(data, 431, requestParser(maxHeaders=3))

    def test_fieldsAtLimit(self) -> None:
        """
        Exactly maxHeaders fields are accepted.
        """
        data = get(extra=b"X-A: 1\r\nX-B: 2\r\n")
        for head in self.heads(data, requestParser(maxHeaders=3)):
            self.assertEqual(len(head.headers), 3)

    def test_trailersTooLarge(self) -> None:
        """
        A trailer section over maxHeaderBytes is refused.
        """
        data = chunkedPost(b"0\r\nX-Big: " + b"x" * 400 + b"\r\n\r\n")
        self.assertRejected(data, 400, requestParser(maxHeaderBytes=256))

    def test_trailerFieldsAtLimit(self) -> None:
        """
        Exactly maxHeaders trailer fields are accepted.
        """
        data = chunkedPost(b"0\r\nX-A: 1\r\nX-B: 2\r\nX-C: 3\r\n\r\n")
        for _, _, events in self.transcripts(data, requestParser(maxHeaders=3)):
            self.assertEqual(len(events[1].trailers), 3)

    def test_tooManyTrailerFields(self) -> None:
        """
        More than maxHeaders trailer fields are refused with 400, like too
        many header fields.
        """
        data = chunkedPost(b"0\r\nX-A: 1\r\nX-B: 2\r\nX-C: 3\r\nX-D: 4\r\n\r\n")
        self.assertRejected(data, 400, requestParser(maxHeaders=3))

    def test_manyTrailerLinesInOneRead(self) -> None:
        """
        Thousands of short trailer lines arriving at once, well under
        maxHeaderBytes, are refused with 400 (too many fields), not parsed
        one nested call per line until Python's recursion limit.
        """
        data = chunkedPost(b"1\r\na\r\n0\r\n" + b"a:b\r\n" * 3000 + b"\r\n")
        parser = RequestParser()
        error = self.assertRaises(ClientProtocolError, feed, parser, [data])
        self.assertEqual((error.status, error.reason), (400, "too many trailer fields"))

    def test_manyChunksInOneRead(self) -> None:
        """
        Thousands of chunks arriving at once decode to the whole body.
        """
        data = chunkedPost(b"1\r\na\r\n" * 5000 + b"0\r\n\r\n")
        events = feed(RequestParser(), [data])
        self.assertEqual(b"".join(e for e in events if type(e) is bytes), b"a" * 5000)
        self.assertIsInstance(events[-2], EndOfMessage)


class RequestBodyTests(SynchronousTestCase, ParserTestMixin):
    """
    Request bodies, pipelining, CONNECT and EOF.
    """

    def test_contentLengthBody(self) -> None:
        """
        A Content-Length body arrives as body events that join to exactly the body.
        """
        body = bytes(range(256)) * 3
        data = post(b"Content-Length: %d\r\n" % (len(body),), body)
        self.assertTranscript(
            data,
            [
                (
                    "request",
                    b"POST",
                    b"/submit",
                    b"HTTP/1.1",
                    [(b"Host", b"example.com"), (b"Content-Length", b"768")],
                ),
                ("body", body),
                ("end", None),
                "PAUSED",
            ],
        )

    def test_contentLengthBodySplit(self) -> None:
        """
        A Content-Length body split across reads is delivered in pieces that concatenate to the body.
        """
        body = b"0123456789"
        data = post(b"Content-Length: 10\r\n", body)
        parser = RequestParser()
        events = []
        for piece in [data[:-7], data[-7:-3], data[-3:]]:
            parser.receiveData(piece)
            drain(parser, events)
        pieces = [e for e in events if isinstance(e, bytes)]
        self.assertEqual(pieces, [b"012", b"3456", b"789"])
        self.assertIsInstance(events[-2], EndOfMessage)

    def test_bodyDoesNotSwallowNextRequest(self) -> None:
        """
        A body stops at Content-Length even when more bytes follow.
        """
        data = post(b"Content-Length: 3\r\n", b"abc") + get()
        for _, _, events in self.transcripts(data):
            self.assertEqual(
                [describe(e) for e in events[1:]],
                [("body", b"abc"), ("end", None), "PAUSED"],
            )

    def test_zeroContentLength(self) -> None:
        """
        Content-Length: 0 gives EndOfMessage right after the head.
        """
        self.assertTranscript(
            post(b"Content-Length: 0\r\n"),
            [
                (
                    "request",
                    b"POST",
                    b"/submit",
                    b"HTTP/1.1",
                    [(b"Host", b"example.com"), (b"Content-Length", b"0")],
                ),
                ("end", None),
                "PAUSED",
            ],
        )

    def test_noBody(self) -> None:
        """
        A request without Content-Length or Transfer-Encoding has no body.
        """
        self.assertTranscript(
            get(),
            [
                ("request", b"GET", b"/", b"HTTP/1.1", [(b"Host", b"example.com")]),
                ("end", None),
                "PAUSED",
            ],
        )

    def test_noBodyIgnoresFollowingBytes(self) -> None:
        """
        Bytes after a request without a body are not read as its body.
        """
        parser = RequestParser()
        parser.receiveData(get() + b"garbage")
        self.assertIsInstance(parser.nextEvent(), RequestHead)
        self.assertIsInstance(parser.nextEvent(), EndOfMessage)
        self.assertIs(parser.nextEvent(), PAUSED)
        self.assertEqual(parser.buffered(), len(b"garbage"))

    def test_pipelined(self) -> None:
        """
        After EndOfMessage the parser pauses until startNextCycle, then parses the next request.
        """
        first = post(b"Content-Length: 3\r\n", b"abc")
        second = get(b"/second")
        for mode, split in MODES:
            parser = RequestParser()
            events = feed(parser, split(first + second))
            self.assertEqual(
                [describe(e) for e in events[1:]],
                [("body", b"abc"), ("end", None), "PAUSED"],
                mode,
            )
            self.assertIs(parser.nextEvent(), PAUSED)
            self.assertIs(parser.nextEvent(), PAUSED)
            parser.startNextCycle()
            events = feed(parser, [])
            self.assertEqual(
                [describe(e) for e in events],
                [
                    (
                        "request",
                        b"GET",
                        b"/second",
                        b"HTTP/1.1",
                        [(b"Host", b"example.com")],
                    ),
                    ("end", None),
                    "PAUSED",
                ],
                mode,
            )

    def test_pipelinedChunked(self) -> None:
        """
        A chunked request followed by another is parsed in order across startNextCycle.
        """
        data = chunkedPost(b"3\r\nabc\r\n0\r\n\r\n") + get(b"/next")
        parser = RequestParser()
        events = feed(parser, bytewise(data))
        self.assertEqual(
            [describe(e) for e in events[1:]],
            [("body", b"abc"), ("end", None), "PAUSED"],
        )
        parser.startNextCycle()
        events = feed(parser, [])
        self.assertEqual(events[0].target, b"/next")

    def test_pipelinedWithEmptyLinesBetween(self) -> None:
        """
        Empty lines between pipelined requests are ignored.
        """
        parser = RequestParser()
        feed(parser, [get(b"/one") + b"\r\n" + get(b"/two")])
        parser.startNextCycle()
        events = feed(parser, [])
        self.assertEqual(events[0].target, b"/two")

    def test_startNextCycleMidMessage(self) -> None:
        """
        startNextCycle in the middle of a body does not abandon the body.
        """
        parser = RequestParser()
        events = feed(parser, [post(b"Content-Length: 5\r\n", b"ab")])
        parser.startNextCycle()
        events = merge(events + feed(parser, [b"cde"]))
        self.assertEqual(
            [describe(e) for e in events[1:]],
            [("body", b"abcde"), ("end", None), "PAUSED"],
        )

    def test_connect(self) -> None:
        """
        After a CONNECT head the parser pauses and takeBuffer returns the bytes after the head.
        """
        head = b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"
        tunnelled = b"\x16\x03\x01\x00\x05hello\r\n\r\nGET / HTTP/1.1\r\n"
        for mode, split in MODES:
            parser = RequestParser()
            events = feed(parser, split(head + tunnelled))
            self.assertEqual(
                [describe(e) for e in events],
                [
                    (
                        "request",
                        b"CONNECT",
                        b"example.com:443",
                        b"HTTP/1.1",
                        [(b"Host", b"example.com:443")],
                    ),
                    "PAUSED",
                ],
                mode,
            )
            self.assertEqual(parser.takeBuffer(), tunnelled, mode)

    def test_connectNothingAfter(self) -> None:
        """
        takeBuffer after a CONNECT head with nothing following returns no bytes.
        """
        for mode, split in MODES:
            parser = RequestParser()
            feed(
                parser,
                split(
                    b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"
                ),
            )
            self.assertEqual(parser.takeBuffer(), b"", mode)

    def test_connectIgnoresStartNextCycle(self) -> None:
        """
        A CONNECT parser stays paused even if startNextCycle is called.
        """
        parser = RequestParser()
        feed(
            parser,
            [
                b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"
                + get()
            ],
        )
        parser.startNextCycle()
        self.assertIs(parser.nextEvent(), PAUSED)

    def test_eofMidContentLengthBody(self) -> None:
        """
        EOF before the Content-Length body is complete raises ClientProtocolError.
        """
        self.assertRejected(post(b"Content-Length: 10\r\n", b"abc"), 400, eof=True)

    def test_eofMidChunk(self) -> None:
        """
        EOF inside chunk data raises ClientProtocolError.
        """
        self.assertRejected(chunkedPost(b"5\r\nab"), 400, eof=True)

    def test_eofMidChunkSize(self) -> None:
        """
        EOF inside a chunk-size line raises ClientProtocolError.
        """
        self.assertRejected(chunkedPost(b"5\r\nabcde\r\n1"), 400, eof=True)

    def test_eofBeforeLastChunk(self) -> None:
        """
        EOF after a chunk's CRLF but before the last chunk raises ClientProtocolError.
        """
        self.assertRejected(chunkedPost(b"5\r\nabcde\r\n"), 400, eof=True)

    def test_eofInTrailers(self) -> None:
        """
        EOF inside the trailer section raises ClientProtocolError.
        """
        self.assertRejected(chunkedPost(b"0\r\nX-T: 1\r\n"), 400, eof=True)

    def test_eofMidHead(self) -> None:
        """
        EOF in the middle of a request head is refused with 400.
        """
        self.assertRejected(b"GET / HTTP/1.1\r\nHost: exa", 400, eof=True)

    def test_eofMidRequestLine(self) -> None:
        """
        EOF in the middle of a request line is refused with 400.
        """
        self.assertRejected(b"GE", 400, eof=True)

    def test_eofBetweenRequests(self) -> None:
        """
        EOF with nothing buffered is not an error.
        """
        for mode, split in MODES:
            parser = RequestParser()
            events = feed(parser, split(b""), eof=True)
            self.assertEqual(events, [], mode)

    def test_eofAfterCompleteRequest(self) -> None:
        """
        EOF right after a complete request does not disturb its events.
        """
        self.assertTranscript(
            post(b"Content-Length: 2\r\n", b"ok"),
            [
                (
                    "request",
                    b"POST",
                    b"/submit",
                    b"HTTP/1.1",
                    [(b"Host", b"example.com"), (b"Content-Length", b"2")],
                ),
                ("body", b"ok"),
                ("end", None),
                "PAUSED",
            ],
            eof=True,
        )

    def test_headStarted(self) -> None:
        """
        headStarted is true only while part of a head is buffered.
        """
        parser = RequestParser()
        self.assertFalse(parser.headStarted())
        parser.receiveData(b"GET / HT")
        self.assertIs(parser.nextEvent(), NEED_DATA)
        self.assertTrue(parser.headStarted())
        parser.receiveData(b"TP/1.1\r\n" + HOST + b"\r\n")
        self.assertIsInstance(parser.nextEvent(), RequestHead)
        self.assertFalse(parser.headStarted())


class ResponseParserTests(SynchronousTestCase, ParserTestMixin):
    """
    Response parsing (RFC 9112 sections 4 and 6.3).
    """

    def test_statusLine(self) -> None:
        """
        A status line gives status, reason and version.
        """
        self.assertTranscript(
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
            [
                (
                    "response",
                    404,
                    b"Not Found",
                    b"HTTP/1.1",
                    [(b"Content-Length", b"0")],
                ),
                ("end", None),
                "PAUSED",
            ],
            responseParser(),
        )

    def test_reasonOptional(self) -> None:
        """
        A status line without a reason phrase gives an empty reason.
        """
        for data in [
            b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n",
            b"HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n",
        ]:
            for head in self.heads(data, responseParser()):
                self.assertEqual((head.status, head.reason), (200, b""))

    def test_reasonWithSpaces(self) -> None:
        """
        A reason phrase may contain spaces, tabs and obs-text.
        """
        for head in self.heads(
            b"HTTP/1.1 200 All\tgood caf\xe9\r\nContent-Length: 0\r\n\r\n",
            responseParser(),
        ):
            self.assertEqual(head.reason, b"All\tgood caf\xe9")

    def test_http10(self) -> None:
        """
        An HTTP/1.0 status line keeps its version.
        """
        for head in self.heads(
            b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", responseParser()
        ):
            self.assertEqual(head.version, b"HTTP/1.0")

    def test_contentLength(self) -> None:
        """
        A Content-Length response body is delivered exactly.
        """
        self.assertTranscript(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
            [
                ("response", 200, b"OK", b"HTTP/1.1", [(b"Content-Length", b"5")]),
                ("body", b"hello"),
                ("end", None),
                "PAUSED",
            ],
            responseParser(),
        )

    def test_chunked(self) -> None:
        """
        A chunked response body is decoded, with trailers on EndOfMessage.
        """
        self.assertTranscript(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;e=1\r\nwiki\r\n5\r\npedia\r\n0\r\nExpires: never\r\n\r\n",
            [
                (
                    "response",
                    200,
                    b"OK",
                    b"HTTP/1.1",
                    [(b"Transfer-Encoding", b"chunked")],
                ),
                ("body", b"wikipedia"),
                ("end", [(b"Expires", b"never")]),
                "PAUSED",
            ],
            responseParser(),
        )

    def test_untilClose(self) -> None:
        """
        A response without framing has a body that ends when the connection closes.
        """
        self.assertTranscript(
            b"HTTP/1.1 200 OK\r\n\r\nall of this until close",
            [
                ("response", 200, b"OK", b"HTTP/1.1", []),
                ("body", b"all of this until close"),
                ("end", None),
                "PAUSED",
            ],
            responseParser(),
            eof=True,
        )

    def test_untilCloseWaitsForEOF(self) -> None:
        """
        A close-delimited body does not end before EOF.
        """
        results = self.transcripts(b"HTTP/1.0 200 OK\r\n\r\nsome", responseParser())
        for mode, parser, events in results:
            self.assertEqual(
                [describe(e) for e in events[1:]], [("body", b"some")], mode
            )
            self.assertIs(parser.nextEvent(), NEED_DATA)
            parser.receiveEOF()
            self.assertIsInstance(parser.nextEvent(), EndOfMessage)

    def test_interimResponse(self) -> None:
        """
        A 1xx response is its own event, followed by the final response.
        """
        self.assertTranscript(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n"
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            [
                ("response", 100, b"Continue", b"HTTP/1.1", []),
                (
                    "response",
                    103,
                    b"Early Hints",
                    b"HTTP/1.1",
                    [(b"Link", b"</s.css>")],
                ),
                ("response", 200, b"OK", b"HTTP/1.1", [(b"Content-Length", b"2")]),
                ("body", b"ok"),
                ("end", None),
                "PAUSED",
            ],
            responseParser(b"POST"),
        )

    def test_switchingProtocols(self) -> None:
        """
        After a 101 response the parser pauses and takeBuffer returns the new protocol's bytes.
        """
        head = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
        after = b"\x81\x05hello"
        for mode, split in MODES:
            parser = responseParser()()
            events = feed(parser, split(head + after))
            self.assertEqual(
                [describe(e) for e in events],
                [
                    (
                        "response",
                        101,
                        b"Switching Protocols",
                        b"HTTP/1.1",
                        [(b"Upgrade", b"websocket"), (b"Connection", b"Upgrade")],
                    ),
                    "PAUSED",
                ],
                mode,
            )
            self.assertEqual(parser.takeBuffer(), after, mode)

    def test_headResponseHasNoBody(self) -> None:
        """
        A response to HEAD has no body, whatever its Content-Length says.
        """
        self.assertTranscript(
            b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n",
            [
                ("response", 200, b"OK", b"HTTP/1.1", [(b"Content-Length", b"1234")]),
                ("end", None),
                "PAUSED",
            ],
            responseParser(b"HEAD"),
        )

    def test_headResponseChunkedHasNoBody(self) -> None:
        """
        A chunked response to HEAD has no body.
        """
        self.assertTranscript(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            [
                (
                    "response",
                    200,
                    b"OK",
                    b"HTTP/1.1",
                    [(b"Transfer-Encoding", b"chunked")],
                ),
                ("end", None),
                "PAUSED",
            ],
            responseParser(b"HEAD"),
        )

    def test_noContent(self) -> None:
        """
        A 204 response has no body.
        """
        self.assertTranscript(
            b"HTTP/1.1 204 No Content\r\n\r\n",
            [
                ("response", 204, b"No Content", b"HTTP/1.1", []),
                ("end", None),
                "PAUSED",
            ],
            responseParser(),
        )

    def test_notModified(self) -> None:
        """
        A 304 response has no body even with a Content-Length.
        """
        self.assertTranscript(
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
            [
                (
                    "response",
                    304,
                    b"Not Modified",
                    b"HTTP/1.1",
                    [(b"Content-Length", b"10")],
                ),
                ("end", None),
                "PAUSED",
            ],
            responseParser(),
        )

    def assertConnectSwitches(self, statusLine: bytes) -> None:
        """
        Assert that C{statusLine} in answer to CONNECT is followed by a
        pause and that takeBuffer returns the bytes after the head.
        """
        for mode, split in MODES:
            parser = responseParser(b"CONNECT")()
            events = feed(parser, split(statusLine + b"\r\n\r\ntunnel bytes"))
            self.assertEqual([describe(e) for e in events[1:]], ["PAUSED"], mode)
            self.assertEqual(parser.takeBuffer(), b"tunnel bytes", mode)

    def test_connect200Switches(self) -> None:
        """
        A 200 response to CONNECT switches to a tunnel; takeBuffer returns what followed.
        """
        self.assertConnectSwitches(b"HTTP/1.1 200 Connection established")

    def test_connect2xxSwitches(self) -> None:
        """
        Any other 2xx response to CONNECT (here 206) also switches to a tunnel.
        """
        self.assertConnectSwitches(b"HTTP/1.1 206 Partial")

    def test_connect204Switches(self) -> None:
        """
        A 204 response to CONNECT is a 2xx too, so the connection becomes a tunnel (RFC 9112 section 6.3, rule 2).
        """
        self.assertConnectSwitches(b"HTTP/1.1 204 No Content")

    def test_connectFailureHasBody(self) -> None:
        """
        A non-2xx response to CONNECT has an ordinary body.
        """
        self.assertTranscript(
            b"HTTP/1.1 403 Forbidden\r\nContent-Length: 2\r\n\r\nno",
            [
                (
                    "response",
                    403,
                    b"Forbidden",
                    b"HTTP/1.1",
                    [(b"Content-Length", b"2")],
                ),
                ("body", b"no"),
                ("end", None),
                "PAUSED",
            ],
            responseParser(b"CONNECT"),
        )

    def test_identicalContentLengthCollapsed(self) -> None:
        """
        Identical duplicate Content-Length fields in a response are accepted as one.
        """
        for head in self.heads(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok",
            responseParser(),
        ):
            self.assertEqual(head.headers.getAll(b"content-length"), [b"2"])

    def test_eofMidBody(self) -> None:
        """
        EOF before a Content-Length response body is complete raises UpstreamProtocolError.
        """
        self.assertUpstreamRejected(
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", eof=True
        )

    def test_eofMidChunkedBody(self) -> None:
        """
        EOF before the last chunk raises UpstreamProtocolError.
        """
        self.assertUpstreamRejected(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n",
            eof=True,
        )

    def test_eofMidHead(self) -> None:
        """
        EOF in the middle of a response head raises UpstreamProtocolError.
        """
        self.assertUpstreamRejected(b"HTTP/1.1 200 OK\r\nContent-Len", eof=True)

    def test_eofBeforeResponse(self) -> None:
        """
        EOF before any response byte raises UpstreamProtocolError.
        """
        self.assertUpstreamRejected(b"", eof=True)

    def test_pausedBeforeExpectResponse(self) -> None:
        """
        A fresh parser does not parse anything until expectResponse is called.
        """
        parser = ResponseParser()
        parser.receiveData(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        self.assertIs(parser.nextEvent(), PAUSED)
        parser.expectResponse(b"GET")
        self.assertIsInstance(parser.nextEvent(), ResponseHead)

    def test_secondResponse(self) -> None:
        """
        After expectResponse again, the next response on the connection is parsed.
        """
        data = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\naHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nb"
        for mode, split in MODES:
            parser = responseParser()()
            events = feed(parser, split(data))
            self.assertEqual(
                [describe(e) for e in events[1:]],
                [("body", b"a"), ("end", None), "PAUSED"],
                mode,
            )
            parser.expectResponse(b"GET")
            events = feed(parser, [])
            self.assertEqual(
                [describe(e) for e in events[1:]],
                [("body", b"b"), ("end", None), "PAUSED"],
                mode,
            )

    def test_outstanding(self) -> None:
        """
        L{ResponseParser.outstanding} is what of a Content-Length body has
        not been received yet: bytes received but not consumed count as
        received, and it is 0 before the body, for other framings and once
        the body is complete.
        """
        parser = responseParser()()
        self.assertEqual(parser.outstanding(), 0)
        parser.receiveData(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nab")
        self.assertEqual(parser.outstanding(), 0)
        self.assertIsInstance(parser.nextEvent(), ResponseHead)
        self.assertEqual(parser.outstanding(), 98)
        self.assertEqual(parser.nextEvent(), b"ab")
        self.assertEqual(parser.outstanding(), 98)
        parser.receiveData(b"c" * 98)
        self.assertEqual(parser.outstanding(), 0)
        feed(parser, [])
        self.assertEqual(parser.outstanding(), 0)
        chunked = responseParser()()
        chunked.receiveData(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n64\r\nab"
        )
        feed(chunked, [])
        self.assertEqual(chunked.outstanding(), 0)

    def test_isIdleInitially(self) -> None:
        """
        A new response parser is idle.
        """
        self.assertTrue(ResponseParser().isIdle())

    def test_isIdleWhileExpecting(self) -> None:
        """
        A parser waiting for a response is not idle.
        """
        parser = responseParser()()
        self.assertFalse(parser.isIdle())

    def test_isIdleMidBody(self) -> None:
        """
        A parser in the middle of a body is not idle.
        """
        parser = responseParser()()
        feed(parser, [b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab"])
        self.assertFalse(parser.isIdle())

    def test_isIdleAfterResponse(self) -> None:
        """
        A parser that consumed a whole response with nothing after it is idle.
        """
        for mode, split in MODES:
            parser = responseParser()()
            feed(parser, split(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
            self.assertTrue(parser.isIdle(), mode)

    def test_notIdleWithExtraBytes(self) -> None:
        """
        A parser holding unsolicited bytes after a response is not idle.
        """
        parser = responseParser()()
        feed(parser, [b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokjunk"])
        self.assertFalse(parser.isIdle())

    def test_responseHeadTooLarge(self) -> None:
        """
        A response head over maxHeaderBytes raises UpstreamProtocolError.
        """
        data = b"HTTP/1.1 200 OK\r\nX-Big: " + b"x" * 1000
        for mode, split in MODES:
            parser = responseParser(maxHeaderBytes=256)()
            self.assertRaises(UpstreamProtocolError, feed, parser, split(data))

    def test_manyResponseTrailerLines(self) -> None:
        """
        A response with thousands of trailer lines, under maxHeaderBytes,
        is refused (502) as having too many trailer fields.
        """
        self.assertUpstreamRejected(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"1\r\na\r\n0\r\n" + b"a: b\r\n" * 3000 + b"\r\n"
        )

    def test_tooManyResponseFields(self) -> None:
        """
        More than maxHeaders response fields raise UpstreamProtocolError.
        """
        data = b"HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\nContent-Length: 0\r\n\r\n"
        for mode, split in MODES:
            parser = responseParser(maxHeaders=3)()
            self.assertRaises(UpstreamProtocolError, feed, parser, split(data))


class BodyViewTests(SynchronousTestCase):
    """
    A response parser hands out a large body piece that is only part of a
    read as a C{memoryview} of it, not a copy; small pieces, whole reads and
    every request body piece come as C{bytes}.
    """

    def events(self, parser: Any, *reads: bytes) -> list[Any]:
        found = []
        for data in reads:
            parser.receiveData(data)
            while True:
                event = parser.nextEvent()
                if event is NEED_DATA or event is PAUSED:
                    break
                found.append(event)
        return found

    def test_lengthDelimited(self) -> None:
        """
        The body that shares the head's read is a view from 16 KiB on; the
        next read, all body, is passed on as it is.
        """
        body = bytes(range(256)) * 160
        parser = responseParser()()
        head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body)
        events = self.events(parser, head + body[:20000], body[20000:])
        self.assertEqual(type(events[1]), memoryview)
        self.assertEqual(events[1], body[:20000])
        self.assertIs(type(events[2]), bytes)
        self.assertEqual(events[2], body[20000:])
        self.assertIsInstance(events[3], EndOfMessage)
        small = self.events(
            responseParser()(), b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
        )
        self.assertEqual(small[1], b"hello")
        self.assertIs(type(small[1]), bytes)

    def test_chunked(self) -> None:
        """
        A large chunk sharing a read with other bytes is a view too.
        """
        chunk = b"x" * 20000
        parser = responseParser()()
        events = self.events(
            parser,
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"4e20\r\n" + chunk + b"\r\n3\r\nabc\r\n0\r\n\r\n",
        )
        self.assertEqual(type(events[1]), memoryview)
        self.assertEqual(events[1], chunk)
        self.assertIs(type(events[2]), bytes)
        self.assertEqual(events[2], b"abc")

    def test_wholeResponse(self) -> None:
        """
        L{ResponseParser.wholeResponse} gives a large body as a view.
        """
        for size, kind in [(20000, memoryview), (100, bytes)]:
            parser = ResponseParser()
            parser.expectResponse(b"GET")
            result = parser.wholeResponse(
                b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size + b"y" * size
            )
            assert result is not None
            self.assertIs(type(result[2]), kind)
            self.assertEqual(result[2], b"y" * size)

    def test_requestBodiesAreBytes(self) -> None:
        """
        Request body pieces are always C{bytes}.
        """
        body = b"z" * 20000
        events = self.events(
            RequestParser(),
            b"POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: 20000\r\n\r\n" + body,
        )
        self.assertIs(type(events[1]), bytes)
        self.assertEqual(events[1], body)


class HeldReadTests(SynchronousTestCase):
    """
    A parser between messages does not keep its last read alive (a
    keep-alive or pooled connection would hold up to 1 MiB each), but
    keeps bytes it has not consumed.
    """

    def test_responseDiscard(self) -> None:
        """
        L{ResponseParser.discard} after a complete response drops the read
        it came in.
        """
        read = b"HTTP/1.1 200 OK\r\nContent-Length: 20000\r\n\r\n" + b"b" * 20000
        parser = ResponseParser()
        parser.expectResponse(b"GET")
        parser.receiveData(read)
        events = []
        while True:
            event = parser.nextEvent()
            if event is NEED_DATA or event is PAUSED:
                break
            events.append(event)
            if isinstance(event, EndOfMessage):
                break
        held = sys.getrefcount(read)
        del events
        parser.discard()
        self.assertLess(sys.getrefcount(read), held - 1)
        parser.expectResponse(b"GET")
        parser.receiveData(b"HTTP/1.1 204 No Content\r\n\r\n")
        self.assertEqual(type(parser.nextEvent()), ResponseHead)

    def test_unconsumedKept(self) -> None:
        """
        Bytes not consumed yet (a pipelined request behind the current one)
        stay through L{RequestParser.discard}.
        """
        parser = RequestParser()
        parser.receiveData(get(b"/one") + get(b"/two"))
        self.assertEqual(type(parser.nextEvent()), RequestHead)
        self.assertIsInstance(parser.nextEvent(), EndOfMessage)
        parser.discard()
        parser.startNextCycle()
        head = parser.nextEvent()
        assert isinstance(head, RequestHead)
        self.assertEqual(head.target, b"/two")

    def test_requestDiscard(self) -> None:
        """
        L{RequestParser.discard} drops a read it consumed whole, and the
        next message parses as usual.
        """
        read = post(b"Content-Length: 20000\r\n", b"u" * 20000)
        parser = RequestParser()
        parser.receiveData(read)
        self.assertEqual(type(parser.nextEvent()), RequestHead)
        self.assertEqual(len(parser.nextEvent()), 20000)  # type: ignore[arg-type]
        self.assertIsInstance(parser.nextEvent(), EndOfMessage)
        held = sys.getrefcount(read)
        parser.discard()
        self.assertEqual(sys.getrefcount(read), held - 1)
        parser.startNextCycle()
        parser.receiveData(get(b"/next"))
        self.assertEqual(type(parser.nextEvent()), RequestHead)


class MalformedResponseTests(SynchronousTestCase, ParserTestMixin):
    """
    Malformed responses raise L{UpstreamProtocolError}.
    """

    def test_upstreamErrorIsNotClientError(self) -> None:
        """
        UpstreamProtocolError is a ProtocolError with status 502, distinct from ClientProtocolError.
        """
        error = UpstreamProtocolError("x")
        self.assertIsInstance(error, ProtocolError)
        self.assertNotIsInstance(error, ClientProtocolError)
        self.assertEqual((error.status, str(error)), (502, "x"))

    def test_contentLengthAndTransferEncoding(self) -> None:
        """
        A response with Content-Length and Transfer-Encoding is refused.
        """
        self.assertUpstreamRejected(
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        )

    def test_badChunkSize(self) -> None:
        """
        A response with an invalid chunk size is refused.
        """
        self.assertUpstreamRejected(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"
        )

    def test_missingCRLFAfterChunk(self) -> None:
        """
        A response chunk not followed by CRLF is refused.
        """
        self.assertUpstreamRejected(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcd\r\n0\r\n\r\n"
        )

    def test_obsFold(self) -> None:
        """
        A response with obsolete line folding is refused.
        """
        self.assertUpstreamRejected(
            b"HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 0\r\n\r\n"
        )

    def test_bareCR(self) -> None:
        """
        A response with a bare CR in a field is refused.
        """
        self.assertUpstreamRejected(
            b"HTTP/1.1 200 OK\r\nX-A: a\rb\r\nContent-Length: 0\r\n\r\n"
        )

    def test_bareLF(self) -> None:
        """
        A response with a bare LF in a field is refused.
        """
        self.assertUpstreamRejected(
            b"HTTP/1.1 200 OK\r\nX-A: a\nb\r\nContent-Length: 0\r\n\r\n"
        )

    def test_nul(self) -> None:
        """
        A response with a NUL in a field is refused.
        """
        self.assertUpstreamRejected(
            b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 0\r\n\r\n"
        )

    def test_whitespaceBeforeColon(self) -> None:
        """
        A response with whitespace before a field's colon is refused.
        """
        self.assertUpstreamRejected(b"HTTP/1.1 200 OK\r\nContent-Length : 0\r\n\r\n")

    def test_differingContentLength(self) -> None:
        """
        A response with differing duplicate Content-Length fields is refused.
        """
        self.assertUpstreamRejected(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc"
        )

    def test_differingContentLengthList(self) -> None:
        """
        A response with a Content-Length list of differing values is refused.
        """
        self.assertUpstreamRejected(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2, 3\r\n\r\nabc"
        )

    def test_malformedContentLength(self) -> None:
        """
        A response with a malformed Content-Length is refused.
        """
        for value in [b"-1", b"+5", b"0x10", b"", b"1 2"]:
            self.assertUpstreamRejected(
                b"HTTP/1.1 200 OK\r\nContent-Length: " + value + b"\r\n\r\n"
            )

    def test_unsupportedTransferCoding(self) -> None:
        """
        A response with a transfer coding other than chunked is refused.
        """
        self.assertUpstreamRejected(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"
        )

    def test_badStatusLines(self) -> None:
        """
        Malformed status lines are refused.
        """
        for line in [
            b"HTTP/1.1 20 OK",
            b"HTTP/1.1 2000 OK",
            b"HTTP/1.1 abc OK",
            b"HTTP/1.1  200 OK",
            b"HTTP/1.1200 OK",
            b"http/1.1 200 OK",
            b"HTTP/2 200 OK",
            b"HTTP/2.0 200 OK",
            b"HTTP/1.1x 200 OK",
            b" HTTP/1.1 200 OK",
            b"ICY 200 OK",
            b"HTTP/1.1 099 Too Low",
            b"garbage",
        ]:
            self.assertUpstreamRejected(line + b"\r\nContent-Length: 0\r\n\r\n")

    def test_httpNineResponse(self) -> None:
        """
        A headless HTTP/0.9-style response is refused once the connection closes.
        """
        self.assertUpstreamRejected(b"<html>hello</html>", eof=True)


def encodeChunked(
    chunks: list[bytes],
    upper: bool,
    extensions: list[bytes],
    trailers: list[tuple[bytes, bytes]],
) -> bytes:
    """
    Encode C{chunks} as a chunked body with the given size case, chunk
    extensions (cycled over the chunks) and trailer fields.
    """
    out = []
    for index, chunk in enumerate(chunks):
        size = b"%X" % (len(chunk),) if upper else b"%x" % (len(chunk),)
        extension = extensions[index % len(extensions)] if extensions else b""
        out.append(size + extension + b"\r\n" + chunk + b"\r\n")
    out.append(b"0\r\n")
    for name, value in trailers:
        out.append(name + b": " + value + b"\r\n")
    out.append(b"\r\n")
    return b"".join(out)


_tokens = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyz0123456789-!#$%&'*+.^_`|~",
    min_size=1,
    max_size=8,
).map(lambda s: s.encode("ascii"))
_extensions = st.lists(
    st.one_of(
        _tokens.map(lambda t: b";" + t),
        st.tuples(_tokens, _tokens).map(lambda p: b";" + p[0] + b"=" + p[1]),
        st.tuples(
            _tokens,
            st.binary(max_size=6).filter(
                lambda b: not set(b) & set(b'"\\\r\n\x7f') and all(c >= 0x20 for c in b)
            ),
        ).map(lambda p: b";" + p[0] + b'="' + p[1] + b'"'),
    ),
    max_size=3,
)
_fieldNames = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-",
    min_size=1,
    max_size=10,
).map(lambda s: s.encode("ascii"))
_fieldValues = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyz0123456789 ,;=/", max_size=10
).map(lambda s: s.strip().encode("ascii"))


class ChunkedPropertyTests(SynchronousTestCase):
    """
    Property tests for chunked decoding.
    """

    @settings(
        max_examples=300,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(
        chunks=st.lists(st.binary(min_size=1, max_size=40), max_size=8),
        upper=st.booleans(),
        extensions=_extensions,
        trailers=st.lists(st.tuples(_fieldNames, _fieldValues), max_size=3),
        cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=12),
        response=st.booleans(),
    )
    def test_anySplitDecodesTheSame(
        self,
        chunks: list[bytes],
        upper: bool,
        extensions: list[bytes],
        trailers: list[tuple[bytes, bytes]],
        cuts: list[int],
        response: bool,
    ) -> None:
        """
        Any valid chunked body split at any positions decodes to the same bytes and trailers.
        """
        if response:
            parser: Any = responseParser()()
            head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        else:
            parser = RequestParser()
            head = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
        data = head + encodeChunked(chunks, upper, extensions, trailers)
        positions = sorted({cut % (len(data) + 1) for cut in cuts})
        pieces = [
            data[start:end]
            for start, end in zip([0] + positions, positions + [len(data)])
        ]
        events = feed(parser, pieces)
        body = b"".join(e for e in events if isinstance(e, bytes))
        self.assertEqual(body, b"".join(chunks))
        self.assertIs(events[-1], PAUSED)
        end = events[-2]
        self.assertIsInstance(end, EndOfMessage)
        self.assertEqual(
            list(end.trailers) if end.trailers is not None else [], trailers
        )
        self.assertEqual(parser.buffered(), 0)


# Pieces of request heads, valid and not, for comparing the quick path with
# the step-by-step one.
_headPieces = {
    "method": st.sampled_from(
        [b"GET"] * 6
        + [b"HEAD", b"POST", b"CONNECT", b"OPTIONS", b"G T", b"get", b"", b"M\x00"]
    ),
    "target": st.sampled_from(
        [
            b"/",
            b"/a?b=c",
            b"/a#frag",
            b"*",
            b"http://example.com/x",
            b"HTTP://Example.COM:8080/x?y",
            b"https://example.com/",
            b"http://example.com",
            b"http://user@example.com/",
            b"http:///x",
            b"http://[::1]:81/",
            b"http://ex%41mple.com/",
            b"http://exa mple.com/",
            b"ftp://example.com/",
            b"example.com:443",
            b"/\x80\xff",
            b"/\x7f",
            b"/a\tb",
        ]
    ),
    "version": st.sampled_from(
        [b"HTTP/1.1"] * 4
        + [b"HTTP/1.0"] * 2
        + [b"HTTP/1.2", b"HTTP/2.0", b"http/1.1", b"HTTP/1.1 "]
    ),
    "host": st.sampled_from(
        [[b"Host: example.com"]] * 6
        + [[b"Host: example.com:8080"], [], [b"Host: a", b"Host: b"]]
    ),
    "fields": st.lists(
        st.sampled_from(
            [
                b"Host: example.com",
                b"Host:",
                b"Host: a b",
                b"host:example.com",
                b"X-A: 1",
                b"X-A:   spaced   ",
                b"X-B: \x80\xff",
                b"X-C: a\x00b",
                b"X-D: a\x7fb",
                b"X-E: a\rb",
                b"X-E: a\nb",
                b"X F: 1",
                b"X-G : 1",
                b" folded",
                b"no colon",
                b": empty name",
                b"Content-Length: 3",
                b"Content-Length: 3, 3",
                b"Content-Length: x",
                b"Transfer-Encoding: chunked",
                b"Transfer-Encoding: gzip",
                b"Connection: close",
                b"Proxy-Connection: keep-alive",
            ]
        ),
        max_size=3,
    ),
}


class QuickHeadTests(SynchronousTestCase):
    """
    The quick request-head path accepts only what the step-by-step path
    accepts, and gives the same result.
    """

    @settings(max_examples=1500, deadline=None)
    @given(**_headPieces)
    def test_sameAsChecked(
        self,
        method: bytes,
        target: bytes,
        version: bytes,
        host: list[bytes],
        fields: list[bytes],
    ) -> None:
        """
        For any head, the quick path either declines or produces the request
        the step-by-step path produces, framing included.
        """
        head = method + b" " + target + b" " + version + b"\r\n"
        head += b"".join(field + b"\r\n" for field in host + fields) + b"\r\n"
        end = head.find(b"\r\n\r\n")
        quickParser = RequestParser()
        quickParser._buffer = head
        quick = quickParser._quickHead(head, 0, end)
        checkedParser = RequestParser()
        checkedParser._buffer = head
        try:
            checked = checkedParser._checkedHead(head, 0, end)
        except ClientProtocolError:
            self.assertIsNone(quick, head)
            return
        if quick is None:
            return
        self.assertEqual(
            (quick.method, quick.target, quick.version, list(quick.headers)),
            (checked.method, checked.target, checked.version, list(checked.headers)),
        )
        self.assertEqual(
            (quick.scheme, quick.host, quick.port, quick.authority, quick.path),
            (
                checked.scheme,
                checked.host,
                checked.port,
                checked.authority,
                checked.path,
            ),
        )
        self.assertEqual(
            (quickParser.framing, quickParser.remaining),
            (checkedParser.framing, checkedParser.remaining),
        )

    def test_quickPathTaken(self) -> None:
        """
        Ordinary proxy requests take the quick path (otherwise the test above
        proves nothing).
        """
        for head in [
            b"GET http://example.com/x HTTP/1.1\r\nHost: example.com\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: example.com\r\nX-A: 1\r\n\r\n",
            b"POST http://example.com/ HTTP/1.0\r\nHost: example.com\r\nContent-Length: 3\r\n\r\n",
        ]:
            parser = RequestParser()
            parser._buffer = head
            self.assertIsNotNone(
                parser._quickHead(head, 0, head.find(b"\r\n\r\n")), head
            )


def parserState(parser: Any) -> tuple[Any, ...]:
    """
    @return: what decides a parser's next events: its state, framing,
        bytes remaining and bytes buffered.
    """
    return (parser._state, parser.framing, parser.remaining, parser.buffered())


# Request fields for the whole-request shortcut: ordinary ones, the ones
# the proxy acts on (which make it decline), malformed ones.
_wholeRequestFields = st.lists(
    st.sampled_from(
        [
            b"User-Agent: curl/7.88.1",
            b"Accept: */*",
            b"X-A:   spaced   ",
            b"X-B: \x80\xff",
            b"X-C: a\x00b",
            b"X F: 1",
            b" folded",
            b"Host: example.com",
            b"HOST: example.com",
            b"Content-Length: 0",
            b"Transfer-Encoding: chunked",
            b"Connection: close",
            b"connection: keep-alive",
            b"Connection:Keep-Alive ",
            b"Connection: keep-alive, close",
            b"Keep-Alive: timeout=5",
            b"Proxy-Authorization: Basic eDp5",
            b"Proxy-Connection: keep-alive",
            b"proxy-connection:  KEEP-ALIVE",
            b"Proxy-Connection: close",
            b"TE: trailers",
            b"Tea: green",
            b"Upgrade: websocket",
            b"Via: 1.1 other",
            b"Max-Forwards: 3",
            b"Expect: 100-continue",
        ]
    ),
    max_size=4,
)


class WholeRequestTests(SynchronousTestCase):
    """
    L{RequestParser.wholeRequest} takes only what the event path takes, as
    the event path takes it, and declines everything the proxy acts on.
    """

    @settings(max_examples=1500, deadline=None)
    @given(
        method=st.sampled_from([b"GET", b"HEAD", b"POST", b"CONNECT", b"get"]),
        target=st.sampled_from(
            [
                b"http://example.com/a?b",
                b"http://example.com:8080/",
                b"http://EXAMPLE.com/",
                b"HTTP://example.com/",
                b"https://example.com/",
                b"http://example.com",
                b"http://ex%41mple.com/",
                b"http://user@example.com/",
                b"http://[::1]:81/",
                b"/a",
                b"http://example.com/#f",
            ]
        ),
        version=st.sampled_from([b"HTTP/1.1", b"HTTP/1.1", b"HTTP/1.0"]),
        host=st.sampled_from(
            [
                [b"Host: example.com"],
                [b"host:example.com  "],
                [b"Host: example.com:8080"],
                [b"Host: [::1]:81"],
                [b"Host: other"],
                [],
            ]
        ),
        fields=_wholeRequestFields,
        extra=st.sampled_from([b"", b"", b"xyz", b"GET / HTTP/1.1\r\n", b"\r\n"]),
    )
    def test_sameAsEvents(
        self,
        method: bytes,
        target: bytes,
        version: bytes,
        host: list[bytes],
        fields: list[bytes],
        extra: bytes,
    ) -> None:
        """
        Whenever the shortcut takes the bytes, the event path parses them to
        the same head (less the hop-by-hop fields the proxy removes), with
        nothing left over and the parser in the same state; and it never
        takes a request carrying a field the proxy acts on, but for
        Connection and Proxy-Connection saying keep-alive.
        """
        data = method + b" " + target + b" " + version + b"\r\n"
        data += b"".join(field + b"\r\n" for field in host + fields) + b"\r\n"
        data += extra
        whole = RequestParser()
        head = whole.wholeRequest(data)
        if head is None:
            self.assertEqual((whole.buffered(), whole.nextEvent()), (0, NEED_DATA))
            return
        for field in fields:
            name, _, value = field.partition(b":")
            name = name.strip().lower()
            if name in (b"connection", b"proxy-connection"):
                self.assertEqual(value.strip(b" \t").lower(), b"keep-alive", data)
            else:
                self.assertNotIn(
                    name,
                    {b"content-length", b"transfer-encoding", b"keep-alive"}
                    | {b"te", b"upgrade", b"via", b"max-forwards"},
                    data,
                )
                self.assertFalse(name.startswith(b"proxy-"), data)
        parser = RequestParser()
        events = feed(parser, [data])
        self.assertEqual(len(events), 3, events)
        self.assertIsInstance(events[1], EndOfMessage)
        self.assertIsNone(events[1].trailers)
        self.assertIs(events[2], PAUSED)
        expected = events[0]
        expected.headers.removeHopByHop()
        self.assertEqual(
            (head.method, head.target, head.version, list(head.headers)),
            (
                expected.method,
                expected.target,
                expected.version,
                list(expected.headers),
            ),
        )
        self.assertEqual(
            (head.scheme, head.host, head.port, head.authority, head.path),
            (
                expected.scheme,
                expected.host,
                expected.port,
                expected.authority,
                expected.path,
            ),
        )
        self.assertEqual(head.headers.get(b"host"), head.authority)
        self.assertEqual(parserState(whole), parserState(parser))

    def test_taken(self) -> None:
        """
        Ordinary proxied GET and HEAD requests take the shortcut (otherwise
        the test above proves nothing).
        """
        for data in [
            b"GET http://example.com/x HTTP/1.1\r\nHost: example.com\r\n\r\n",
            b"HEAD http://example.com:81/ HTTP/1.1\r\nhost:  example.com:81 \r\n"
            b"User-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n",
        ]:
            head = RequestParser().wholeRequest(data)
            self.assertIsNotNone(head, data)

    def test_keepAliveSetApart(self) -> None:
        """
        A browser's C{Proxy-Connection: keep-alive} and C{Connection:
        keep-alive} lines are taken out of the head the shortcut takes.
        """
        head = RequestParser().wholeRequest(
            b"GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n"
            b"Proxy-Connection: keep-alive\r\nUpgrade-Insecure-Requests: 1\r\n"
            b"connection: Keep-Alive\r\nAccept: */*\r\n\r\n"
        )
        assert head is not None
        self.assertEqual(
            head.headers.serialize(),
            b"Host: example.com\r\nUpgrade-Insecure-Requests: 1\r\nAccept: */*\r\n",
        )

    def test_declined(self) -> None:
        """
        The shortcut declines what it does not handle, leaving the parser
        untouched.
        """
        get = b"GET http://example.com/x HTTP/1.1\r\nHost: example.com\r\n\r\n"
        for data in [
            get[:-2],
            get + get,
            get.replace(b"Host: example.com", b"Host: example.org"),
            get.replace(b"HTTP/1.1", b"HTTP/1.0"),
            get.replace(b"http://example.com", b""),
            get.replace(b"\r\n\r\n", b"\r\nVia: 1.1 x\r\n\r\n"),
            get.replace(b"\r\n\r\n", b"\r\nProxy-Authorization: Basic eDp5\r\n\r\n"),
        ]:
            parser = RequestParser()
            self.assertIsNone(parser.wholeRequest(data), data)
            self.assertEqual(parser.nextEvent(), NEED_DATA)
        parser = RequestParser()
        parser.receiveData(b"G")
        self.assertIsNone(parser.wholeRequest(get))

    def test_hostileHostLine(self) -> None:
        """
        A long run of whitespace in a Host line that then fails to match
        costs time in proportion to its length, not more (a regression
        test: a lazy value between two runs of optional whitespace made
        the match try every split, seconds per request of a few KiB).
        """
        for tail in [b"\x01\r\n\r\n", b"x\r\nbad line\r\n\r\n"]:
            data = b"GET http://example.com/ HTTP/1.1\r\nHost:" + b" " * 3000 + tail
            started = time.monotonic()
            self.assertIsNone(RequestParser().wholeRequest(data))
            self.assertLess(time.monotonic() - started, 1.0)

    def test_limits(self) -> None:
        """
        A request over any of the parser's limits is left to the event
        path, which answers it with the right status.
        """
        get = (
            b"GET http://example.com/x HTTP/1.1\r\nHost: example.com\r\nX-A: 1\r\n\r\n"
        )
        for limits in [
            {"maxRequestLine": 30},
            {"maxHeaderBytes": 20},
            {"maxHeaders": 1},
        ]:
            self.assertIsNone(RequestParser(**limits).wholeRequest(get), limits)
            self.assertIsNotNone(RequestParser().wholeRequest(get))
        # A line set apart still counts.
        browser = get.replace(b"X-A: 1", b"Proxy-Connection: keep-alive")
        for limits in [{"maxHeaderBytes": 30}, {"maxHeaders": 1}]:
            self.assertIsNone(RequestParser(**limits).wholeRequest(browser), limits)
        self.assertIsNotNone(RequestParser().wholeRequest(browser))


# Response fields for the whole-response shortcut.
_wholeResponseFields = st.lists(
    st.sampled_from(
        [
            b"Server: nginx/1.22.1",
            b"Content-Type: text/plain",
            b"X-A:   spaced   ",
            b"X-C: a\x00b",
            b"X F: 1",
            b"Connection: keep-alive",
            b"connection:  Close ",
            b"Connection: upgrade",
            b"Connection: keep-alive, x-a",
            b"Keep-Alive: timeout=5",
            b"Transfer-Encoding: chunked",
            b"Proxy-Authenticate: Basic",
            b"TE: trailers",
            b"Upgrade: h2c",
            b"Content-Length: 5",
            b"Content-Length: x",
        ]
    ),
    max_size=4,
)


class WholeResponseTests(SynchronousTestCase):
    """
    L{ResponseParser.wholeResponse} takes only what the event path takes,
    as the event path takes it, less the Connection field it reports.
    """

    @settings(max_examples=1500, deadline=None)
    @given(
        method=st.sampled_from([b"GET", b"GET", b"POST", b"HEAD", b"CONNECT"]),
        statusLine=st.sampled_from(
            [
                b"HTTP/1.1 200 OK",
                b"HTTP/1.1 404 Not Found",
                b"HTTP/1.1 200 ",
                b"HTTP/1.1 200",
                b"HTTP/1.1 204 No Content",
                b"HTTP/1.1 304 Not Modified",
                b"HTTP/1.1 100 Continue",
                b"HTTP/1.0 200 OK",
                b"HTTP/1.1 200 O\x00K",
            ]
        ),
        length=st.sampled_from([[b"Content-Length: 5"], [b"content-length:5 "], []]),
        fields=_wholeResponseFields,
        body=st.sampled_from([b"hello", b"hell", b"hello!", b""]),
        maxHeaders=st.sampled_from([100, 100, 1, 2, 3]),
    )
    def test_sameAsEvents(
        self,
        method: bytes,
        statusLine: bytes,
        length: list[bytes],
        fields: list[bytes],
        body: bytes,
        maxHeaders: int,
    ) -> None:
        """
        Whenever the shortcut takes the bytes, the event path parses them to
        the same head (but for the Connection field, whose C{close} it
        reports), the same body and the same parser state.
        """
        data = statusLine + b"\r\n"
        data += b"".join(field + b"\r\n" for field in fields[:2] + length + fields[2:])
        data += b"\r\n" + body
        whole = ResponseParser(maxHeaders=maxHeaders)
        whole.expectResponse(method)
        taken = whole.wholeResponse(data)
        if taken is None:
            self.assertEqual((whole.buffered(), whole.nextEvent()), (0, NEED_DATA))
            return
        relayed, close, received = taken
        head = wholeResponseHead(relayed)
        # The bytes to relay are the head as parsed, with no empty line.
        self.assertEqual(head.serialize(), relayed + b"\r\n")
        parser = ResponseParser(maxHeaders=maxHeaders)
        parser.expectResponse(method)
        events = merge(feed(parser, [data]))
        expected = events[0]
        self.assertIsInstance(expected, ResponseHead)
        self.assertEqual(events[1:-2], [body] if body else [])
        self.assertIsInstance(events[-2], EndOfMessage)
        self.assertIs(events[-1], PAUSED)
        self.assertEqual(received, body)
        connection = expected.headers.getTokens(b"connection")
        self.assertEqual(close, b"close" in connection)
        self.assertLessEqual(set(connection), {b"close", b"keep-alive"})
        expected.headers.removeHopByHop()
        self.assertEqual(
            (head.status, head.reason, head.version, list(head.headers)),
            (
                expected.status,
                expected.reason,
                expected.version,
                list(expected.headers),
            ),
        )
        self.assertEqual(parserState(whole), parserState(parser))

    def test_taken(self) -> None:
        """
        An nginx-like response takes the shortcut, its Connection field set
        apart.
        """
        parser = ResponseParser()
        parser.expectResponse(b"GET")
        taken = parser.wholeResponse(
            b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Length: 5\r\n"
            b'Connection: keep-alive\r\nETag: "x"\r\n\r\nhello'
        )
        assert taken is not None
        relayed, close, body = taken
        self.assertEqual(
            relayed,
            b'HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Length: 5\r\nETag: "x"\r\n',
        )
        head = wholeResponseHead(relayed)
        self.assertEqual(
            (head.status, head.reason, list(head.headers), close, body),
            (
                200,
                b"OK",
                [(b"Server", b"nginx"), (b"Content-Length", b"5"), (b"ETag", b'"x"')],
                False,
                b"hello",
            ),
        )

    def test_declined(self) -> None:
        """
        The shortcut declines a response it does not handle whole, leaving
        the parser untouched.
        """
        ok = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
        for method, data in [
            (b"GET", ok[:-1]),
            (b"GET", ok + b"HTTP/1.1"),
            (b"HEAD", ok[:-5]),
            (
                b"GET",
                ok.replace(
                    b"\r\n\r\n", b"\r\nConnection: close\r\nConnection: close\r\n\r\n"
                ),
            ),
            (b"GET", ok.replace(b"\r\n\r\n", b"\r\nContent-Length: 5\r\n\r\n")),
        ]:
            parser = ResponseParser()
            parser.expectResponse(method)
            self.assertIsNone(parser.wholeResponse(data), data)
            self.assertEqual(parser.buffered(), 0)
        parser = ResponseParser(maxHeaders=0)
        parser.expectResponse(b"GET")
        self.assertIsNone(parser.wholeResponse(ok))


# The shortcut patterns as first written, with ordinary (backtracking)
# repeats and a plain lookahead on every field line: the reference that the
# faster forms in proxyapp.http11 must agree with, match for match.
_REFERENCE_FIELD = rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+:[\t\x20-\x7e\x80-\xff]*\r\n"
_REFERENCE_PLAIN_REQUEST = (
    rb"(?:(?!(?i:(?:host|content-length|transfer-encoding|connection|keep-alive"
    rb"|te|upgrade|via|max-forwards):|proxy-))" + _REFERENCE_FIELD + rb")*"
)
_REFERENCE_PLAIN_RESPONSE = (
    rb"(?:(?!(?i:(?:connection|content-length|transfer-encoding|keep-alive|te"
    rb"|upgrade):|proxy-))" + _REFERENCE_FIELD + rb")*"
)
_REFERENCE_LENGTH = rb"(?i:content-length):[ \t]*([0-9]{1,18})[ \t]*\r\n"
_REFERENCE_CONNECTION = rb"((?i:connection):[ \t]*((?i:keep-alive|close))[ \t]*\r\n)"
_REFERENCE_PATTERNS = {
    "_QUICK_REQUEST_LINE": re.compile(
        rb"([-!#$%&'*+.^_`|~0-9A-Za-z]+) "
        rb"((?:((?i:https?))://([^/?#\x00-\x20\x7f]+))?"
        rb'(/[!"$-~\x80-\xff]*)) HTTP/1\.([01])\r\n'
    ),
    "_FIELD_BLOCK": re.compile(rb"(?:" + _REFERENCE_FIELD + rb")*"),
    "_WHOLE_REQUEST": re.compile(
        rb"(GET|HEAD) (http://([^/?#\x00-\x20\x7f]+)(/[!\"$-~\x80-\xff]*))"
        rb" HTTP/1\.1\r\n("
        + _REFERENCE_PLAIN_REQUEST
        + rb"(?i:host):([\t\x20-\x7e\x80-\xff]*)\r\n"
        + _REFERENCE_PLAIN_REQUEST
        + rb")\r\n"
    ),
    "_WHOLE_RESPONSE": re.compile(
        rb"HTTP/1\.1 (?!204|304)[2-5][0-9][0-9] [\t\x20-\x7e\x80-\xff]*\r\n"
        + _REFERENCE_PLAIN_RESPONSE
        + rb"(?:"
        + _REFERENCE_LENGTH
        + _REFERENCE_PLAIN_RESPONSE
        + rb"(?:"
        + _REFERENCE_CONNECTION
        + _REFERENCE_PLAIN_RESPONSE
        + rb")?|"
        + _REFERENCE_CONNECTION
        + _REFERENCE_PLAIN_RESPONSE
        + _REFERENCE_LENGTH
        + _REFERENCE_PLAIN_RESPONSE
        + rb")\r\n"
    ),
}

# What heads are made of: first lines, field lines (names the shortcuts
# refuse, in either case, and names that start like them), and stray bytes
# that break a line (controls, lone line ends, digits, separators).
_FIRST_LINES = [
    b"HTTP/1.1 200 OK\r\n",
    b"HTTP/1.1 404 \r\n",
    b"HTTP/1.1 204 No Content\r\n",
    b"HTTP/1.1 304 Not Modified\r\n",
    b"HTTP/1.0 200 OK\r\n",
    b"GET http://a.example/ HTTP/1.1\r\n",
    b"HEAD http://a.example:8080/x?y HTTP/1.1\r\n",
    b"GET HTTPS://a.example/ HTTP/1.0\r\n",
    b"GET /p HTTP/1.1\r\n",
]
_FIELD_LINES = [
    b"Host: a.example\r\n",
    b"host:a.example:8080\r\n",
    b"Content-Length: 5\r\n",
    b"content-LENGTH:12 \r\n",
    b"Content-Length: \t 7\t \r\n",
    b"Content-Length: 1234567890123456789\r\n",
    b"Connection: keep-alive\r\n",
    b"CONNECTION: close\r\n",
    b"Connection:  keep-alive \t\r\n",
    b"Connection: upgrade\r\n",
    b"Transfer-Encoding: chunked\r\n",
    b"TE: trailers\r\n",
    b"Keep-Alive: 5\r\n",
    b"Upgrade: h2c\r\n",
    b"Via: 1.1 p\r\n",
    b"Max-Forwards: 3\r\n",
    b"Proxy-Authorization: Basic x\r\n",
    b"proxy-x: 1\r\n",
    b"Server: nginx\r\n",
    b"Tex: 1\r\n",
    b"T: 1\r\n",
    b"Contents: 1\r\n",
    b"Hosts: 1\r\n",
    b"Upgraded: 1\r\n",
    b"P: 1\r\n",
    b"X-Y: \t\x80z\xff \r\n",
    b'ETag: "6560f1bc-400"\r\n',
]
_STRAY = [b"\r", b"\n", b"\r\n", b" ", b"\t", b":", b"-", b"0", b"a", b"\x00", b"\x7f"]


class FastPatternTests(SynchronousTestCase):
    """
    The shortcut patterns are written for the speed of Python's engine
    (possessive repeats, a first-byte guard before each lookahead); they
    match exactly what the plainer reference forms above match.
    """

    def assertSameAsReference(self, data: bytes) -> None:
        """
        Each pattern matches (and fully matches) C{data} as its reference
        does, with the same groups.
        """
        for name, reference in _REFERENCE_PATTERNS.items():
            fast = getattr(http11, name)
            for method in ("match", "fullmatch"):
                expected = getattr(reference, method)(data)
                found = getattr(fast, method)(data)
                self.assertEqual(
                    found and (found.span(), found.groups()),
                    expected and (expected.span(), expected.groups()),
                    (name, method, data),
                )

    def test_pairsSameAsReference(self) -> None:
        """
        Every first line with every ordered pair of field lines (and with
        one or none) matches as the references do.
        """
        choices = [b""] + _FIELD_LINES
        for first in _FIRST_LINES:
            for one in choices:
                for two in choices:
                    for end in (b"\r\n", b"\r\nhello", b""):
                        self.assertSameAsReference(first + one + two + end)

    @settings(max_examples=1500, deadline=None)
    @given(
        first=st.sampled_from(_FIRST_LINES),
        fields=st.lists(st.sampled_from(_FIELD_LINES), max_size=8),
        end=st.sampled_from([b"\r\n", b"\r\nhello", b""]),
        stray=st.one_of(
            st.none(), st.tuples(st.sampled_from(_STRAY), st.integers(0, 400))
        ),
    )
    def test_sameAsReference(
        self,
        first: bytes,
        fields: list[bytes],
        end: bytes,
        stray: tuple[bytes, int] | None,
    ) -> None:
        """
        Longer heads, with a stray byte or line end anywhere or not, match
        as the references do.
        """
        data = first + b"".join(fields) + end
        if stray is not None:
            piece, at = stray
            at %= len(data) + 1
            data = data[:at] + piece + data[at:]
        self.assertSameAsReference(data)

    def test_usualHeadsMatch(self) -> None:
        """
        The usual request and response (what the comparison above is mostly
        about) do match, so that test compares matches, not only misses.
        """
        request = b"GET http://a.example/ HTTP/1.1\r\nHost: a.example\r\n\r\n"
        response = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
        self.assertIsNotNone(http11._WHOLE_REQUEST.fullmatch(request))
        self.assertIsNotNone(http11._WHOLE_RESPONSE.match(response))
        self.assertIsNotNone(http11._QUICK_REQUEST_LINE.match(request))


CHUNKED_OK = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"


class ProbedFramingTests(SynchronousTestCase, ParserTestMixin):
    """
    Limits and framing defects that a probe with misbehaving origins found
    taken or waited on.
    """

    def test_wholeResponseHeadOverLimit(self) -> None:
        """
        A response head larger than C{maxHeaderBytes} is refused however it
        arrives, whole in one read included, and the shortcut declines it.
        """
        data = (
            b"HTTP/1.1 200 OK\r\nX-Big: "
            + b"a" * 70000
            + b"\r\nContent-Length: 5\r\n\r\nhello"
        )
        self.assertUpstreamRejected(data)
        parser = responseParser()()
        self.assertIsNone(parser.wholeResponse(data))
        parser.receiveData(data)
        error = self.assertRaises(UpstreamProtocolError, parser.nextEvent)
        self.assertEqual(error.reason, "response header section too large")
        small = responseParser(maxHeaderBytes=100)()
        self.assertIsNone(
            small.wholeResponse(
                b"HTTP/1.1 200 OK\r\nX: "
                + b"a" * 100
                + b"\r\nContent-Length: 0\r\n\r\n"
            )
        )

    def test_longChunkLineArrivingWhole(self) -> None:
        """
        A chunk-size line over 4 KiB (a long extension) is refused even when
        its CRLF is already there.
        """
        line = b"5;ext=" + b"x" * 5000 + b"\r\nhello\r\n0\r\n\r\n"
        self.assertUpstreamRejected(CHUNKED_OK + line)
        self.assertRejected(chunkedPost(line))

    def test_bareLFChunkLine(self) -> None:
        """
        A chunk-size line ended by a bare LF is refused at once, not waited
        on: the CRLF will never come.
        """
        self.assertUpstreamRejected(CHUNKED_OK + b"5\nhello\n0\n\n")
        self.assertRejected(chunkedPost(b"5\nhello\n0\n\n"))

    def test_bareLFTrailers(self) -> None:
        """
        Trailers ended by bare LFs are refused at once too.
        """
        self.assertUpstreamRejected(CHUNKED_OK + b"0\r\nX-A: b\n\n")
        self.assertRejected(chunkedPost(b"0\r\nX-A: b\n\n"))

    def test_emptyFieldName(self) -> None:
        """
        A field line starting with its colon is named as an empty field
        name, not as a line without a colon.
        """
        parser = RequestParser()
        parser.receiveData(b"GET / HTTP/1.1\r\nHost: x\r\n: v\r\n\r\n")
        error = self.assertRaises(ClientProtocolError, parser.nextEvent)
        self.assertEqual((error.status, error.reason), (400, "empty header field name"))

    def faulty(self, data: bytes, method: bytes = b"GET") -> bool:
        parser = responseParser(method)()
        feed(parser, [data])
        return parser.faulty

    def test_faultyFraming(self) -> None:
        """
        Framing a status forbids marks the exchange faulty (its connection
        is not to be reused): a length above 0 or chunked coding on a 204,
        a length or chunked coding on a 1xx, chunked coding in HTTP/1.0.
        """
        for data in [
            b"HTTP/1.1 204 No Content\r\nContent-Length: 30\r\n\r\n",
            b"HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"HTTP/1.1 103 Early Hints\r\nContent-Length: 7\r\n\r\n",
            b"HTTP/1.1 100 Continue\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ]:
            self.assertTrue(self.faulty(data), data)

    def test_allowedFraming(self) -> None:
        """
        What the RFCs allow is not faulty: C{Content-Length: 0} on a 204, a
        length or chunked coding on a 304 or on a response to HEAD.
        """
        for data, method in [
            (b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n", b"GET"),
            (b"HTTP/1.1 304 Not Modified\r\nContent-Length: 30\r\n\r\n", b"GET"),
            (
                b"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n",
                b"GET",
            ),
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", b"HEAD"),
            (b"HTTP/1.1 204 No Content\r\nContent-Length: 30\r\n\r\n", b"HEAD"),
            (b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n", b"GET"),
        ]:
            self.assertFalse(self.faulty(data, method), data)

    def test_faultyResetPerExchange(self) -> None:
        """
        C{faulty} is about the current exchange: the next one starts clear.
        """
        parser = responseParser()()
        feed(parser, [b"HTTP/1.1 204 No Content\r\nContent-Length: 30\r\n\r\n"])
        self.assertTrue(parser.faulty)
        parser.expectResponse(b"GET")
        self.assertFalse(parser.faulty)
