# -*- test-case-name: tests.test_http11 -*-
"""
Sans-I/O HTTP/1.1 parsing (RFC 9112), strict enough to stop request
smuggling, with no Twisted imports.

Theory of operation
===================

A parser is fed bytes with C{receiveData} (and C{receiveEOF}) and asked for
events with C{nextEvent}, one at a time, like h11.  Events are:

  - a L{RequestHead} or L{ResponseHead} (a 1xx response head is an event of
    its own and the parser then waits for the next head);
  - C{bytes}: a piece of body, already de-chunked; a response parser
    hands out large pieces that are only part of a read as C{memoryview}s
    (L{ResponseParser._viewFrom});
  - L{EndOfMessage}, carrying trailer fields if there were any;
  - L{NEED_DATA}: nothing more can be parsed until more bytes arrive;
  - L{PAUSED}: the message is complete (or the connection switched
    protocols) and the parser will not look at further bytes until the
    caller says so with C{startNextCycle} (pipelining is answered in order
    because the caller only restarts after the response) or takes the
    remaining bytes with C{takeBuffer} (CONNECT and 101 tunnels).

For the common case there is a shortcut that skips the event loop:
C{wholeRequest} and C{wholeResponse} take one read that holds exactly one
usual message (a bodiless GET or HEAD; a length-delimited response with
its whole body) with one anchored match, leave the parser as the events
would have, and decline anything else untouched.

Malformed input raises L{ClientProtocolError} (request side: carries the
status code to answer with) or L{UpstreamProtocolError} (response side: the
proxy answers 502 and drops that connection).  The caller must not use a
parser again after it raised.

Body bytes are never copied more than once: the parser keeps its buffer as
C{bytes} plus an offset and hands out slices, or for large pieces of a
response views, which copy nothing.
"""

from __future__ import annotations

import re
import sys
from typing import Optional, Union
from urllib.parse import unquote_to_bytes

from proxyapp.message import TOKEN_CHARS, Headers, RequestHead, ResponseHead
from proxyapp.message import isToken as _isToken


class ProtocolError(Exception):
    """
    The peer sent something that is not HTTP/1.1 as RFC 9112 allows.

    @ivar status: the status code to answer with.
    @ivar reason: a short description naming the defect.
    """

    def __init__(self, status: int, reason: str) -> None:
        Exception.__init__(self, status, reason)
        self.status = status
        self.reason = reason

    def __str__(self) -> str:
        return self.reason


class ClientProtocolError(ProtocolError):
    """
    The client's request is malformed or over a limit (answer C{status}).
    """


class UpstreamProtocolError(ProtocolError):
    """
    The upstream's response is malformed (answer 502, do not reuse).
    """

    def __init__(self, reason: str) -> None:
        ProtocolError.__init__(self, 502, reason)


class _Sentinel:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


NEED_DATA = _Sentinel("NEED_DATA")
PAUSED = _Sentinel("PAUSED")


class EndOfMessage:
    """
    The end of a message's body.

    @ivar trailers: trailer fields of a chunked body, or C{None}.
    """

    __slots__ = ("trailers",)

    def __init__(self, trailers: Optional[Headers] = None) -> None:
        self.trailers = trailers

    def __repr__(self) -> str:
        return f"EndOfMessage({self.trailers!r})"


END = EndOfMessage()

Event = Union[RequestHead, ResponseHead, bytes, memoryview, EndOfMessage, _Sentinel]

# Body framings.
NO_BODY = 0
LENGTH = 1
CHUNKED = 2
UNTIL_CLOSE = 3

# Parser states.
_HEAD = 0
_BODY_LENGTH = 1
_CHUNK_SIZE = 2
_CHUNK_DATA = 3
_CHUNK_CRLF = 4
_TRAILERS = 5
_UNTIL_CLOSE = 6
_DONE = 7
_SWITCHED = 8

_TOKEN_CHARS = TOKEN_CHARS

# Control characters that may never appear in a head (everything below
# 0x20 but HTAB, CR and LF, plus DEL).  CR and LF are only allowed as CRLF
# pairs; L{_badHeadBytes} checks that by counting, which is much cheaper
# than a regular expression with look-arounds on the per-request path.
_CONTROL = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _badHeadBytes(head: bytes) -> bool:
    """
    @return: whether C{head} holds a forbidden control character, a bare CR
        or a bare LF.
    """
    if _CONTROL.search(head) is not None:
        return True
    pairs = head.count(b"\r\n")
    return head.count(b"\r") != pairs or head.count(b"\n") != pairs


_CHUNK_SIZE_LINE = re.compile(
    rb"([0-9A-Fa-f]{1,16})"
    rb"(?:[ \t]*;[ \t]*[-!#$%&'*+.^_`|~0-9A-Za-z]+"
    rb'(?:[ \t]*=[ \t]*(?:[-!#$%&\'*+.^_`|~0-9A-Za-z]+|"(?:[^"\\\x00-\x08\x0a-\x1f\x7f]|\\[\t\x20-\x7e\x80-\xff])*"))?)*'
)
_STATUS_LINE = re.compile(rb"HTTP/1\.([0-9]) ([0-9]{3})(?: ([\t\x20-\x7e\x80-\xff]*))?")
_DIGITS = re.compile(rb"[0-9]{1,18}")
_REG_NAME = re.compile(rb"[-A-Za-z0-9._~!$&'()*+,;=%]*")
_PORT = re.compile(rb"[0-9]{0,5}")
_MAX_CHUNK_LINE = 4096


_authorityCache: dict[tuple[bytes, Optional[int]], tuple[str, int]] = {}
_HOST_AFTER_DECODING = re.compile(r"[^\x00-\x20\x7f/\\@:?#\[\]]+")


def parseAuthority(authority: bytes, defaultPort: Optional[int]) -> tuple[str, int]:
    """
    Parse C{host[:port]} (RFC 3986 authority without userinfo).

    Hosts are returned lowercased, percent-decoded, IDNA-encoded when they
    were given as Unicode, and without brackets for IPv6 literals.  Results
    are cached: clients name the same few origins over and over.

    @param defaultPort: the port when none is given, or C{None} if a port is
        required (CONNECT).
    @raise ValueError: naming the defect.
    """
    key = (authority, defaultPort)
    cached = _authorityCache.get(key)
    if cached is not None:
        return cached
    result = _parseAuthority(authority, defaultPort)
    if len(_authorityCache) >= 4096:
        _authorityCache.clear()
    _authorityCache[key] = result
    return result


def _parseAuthority(authority: bytes, defaultPort: Optional[int]) -> tuple[str, int]:
    if b"@" in authority:
        raise ValueError("userinfo is not allowed in the authority")
    if authority.startswith(b"["):
        close = authority.find(b"]")
        if close == -1:
            raise ValueError("unterminated IPv6 literal")
        host = authority[1:close]
        rest = authority[close + 1 :]
        if rest and not rest.startswith(b":"):
            raise ValueError("garbage after IPv6 literal")
        portText = rest[1:] if rest else b""
        if not host or not all(c in b"0123456789abcdefABCDEF:." for c in host):
            # Zone identifiers and IPvFuture are not forwardable targets.
            raise ValueError("invalid IPv6 literal")
        hostText = host.decode("ascii").lower()
    else:
        host, colon, portText = authority.rpartition(b":")
        if not colon:
            host, portText = authority, b""
        elif not portText and defaultPort is None:
            raise ValueError("missing port")
        if not host or not _REG_NAME.fullmatch(host):
            raise ValueError("invalid host")
        raw = unquote_to_bytes(host) if b"%" in host else host
        try:
            hostText = raw.decode("ascii").lower()
        except UnicodeDecodeError:
            try:
                hostText = raw.decode("utf-8").encode("idna").decode("ascii")
            except UnicodeError:
                raise ValueError("invalid internationalized host name")
        if not _HOST_AFTER_DECODING.fullmatch(hostText):
            # Percent-encoding must not smuggle in controls or delimiters.
            raise ValueError("invalid host")
    if portText:
        if not _PORT.fullmatch(portText):
            raise ValueError("invalid port")
        port = int(portText)
        if not 0 < port < 65536:
            raise ValueError("port out of range")
    elif defaultPort is None:
        raise ValueError("missing port")
    else:
        port = defaultPort
    return hostText, port


# The regular expressions below are matched against every proxied request
# and response, so they are written for the speed of Python's engine: the
# repeats are possessive (*+, ++), as none of them ever needs to give back
# what it matched (each is followed by a byte it cannot match), which spares
# the engine the saved states of backtracking; see _plainFields for the
# lookahead.

# An RFC 9110 token (a method, a field name), and a field value's bytes (no
# controls but HTAB).
_TOKEN = rb"[-!#$%&'*+.^_`|~0-9A-Za-z]++"
_VALUE = rb"[\t\x20-\x7e\x80-\xff]*+"

# The usual request line, with the byte checks of the whole line: a token
# method, an origin-form or http(s) absolute-form target without a
# fragment, HTTP/1.1 or 1.0.  Anything else takes the step-by-step path.
_QUICK_REQUEST_LINE = re.compile(
    rb"(" + _TOKEN + rb") "
    rb"((?:((?i:https?))://([^/?#\x00-\x20\x7f]++))?"
    rb'(/[!"$-~\x80-\xff]*+)) HTTP/1\.([01])\r\n'
)

# One well-formed field line, ending in CRLF, with the byte checks included
# (no controls but HTAB, CR and LF only as its end).
_FIELD_LINE = _TOKEN + rb":" + _VALUE + rb"\r\n"

# A block of well-formed field lines.
_FIELD_BLOCK = re.compile(rb"(?:" + _FIELD_LINE + rb")*+")


def _plainFields(names: list[bytes], prefix: bytes) -> bytes:
    """
    @return: a pattern matching any number of well-formed field lines but
        those named one of C{names} or starting with C{prefix} (all
        lowercase, matched in any case).  Each line is looked ahead at for
        those names only when its first byte is one theirs start with: the
        case-insensitive alternatives are what the engine tries slowest,
        and most lines start with another letter.
    """
    firsts = sorted({bytes([name[0]]) for name in names + [prefix]})
    firstBytes = b"".join(first + first.upper() for first in firsts)
    return (
        rb"(?:(?=[^"
        + firstBytes
        + rb"]|(?!(?i:(?:"
        + b"|".join(re.escape(name) for name in names)
        + rb"):|"
        + re.escape(prefix)
        + rb")))"
        + _FIELD_LINE
        + rb")*+"
    )


# The whole of the usual proxied request, when one read brings exactly that:
# GET or HEAD of an http:// URL over HTTP/1.1, no body, well-formed fields,
# one Host field, and none of the fields the proxy acts on (framing,
# hop-by-hop, Via, Max-Forwards).  Groups: method, target, authority,
# path, the field block, the Host field's value.  See
# L{RequestParser.wholeRequest}.
_PLAIN_REQUEST_FIELDS = _plainFields(
    [
        b"host",
        b"content-length",
        b"transfer-encoding",
        b"connection",
        b"keep-alive",
        b"te",
        b"upgrade",
        b"via",
        b"max-forwards",
    ],
    b"proxy-",
)
_WHOLE_REQUEST = re.compile(
    rb"(GET|HEAD) (http://([^/?#\x00-\x20\x7f]++)(/[!\"$-~\x80-\xff]*+)) HTTP/1\.1\r\n"
    rb"(" + _PLAIN_REQUEST_FIELDS + rb"(?i:host):(" + _VALUE + rb")\r\n"
    rb"" + _PLAIN_REQUEST_FIELDS + rb")\r\n"
)

# A Connection or Proxy-Connection line saying keep-alive, with the CRLF
# before it (so only at a line start): what the request shortcut sets apart.
_KEEP_ALIVE_LINE = re.compile(
    rb"\r\n(?i:(?:proxy-)?connection):[ \t]*(?i:keep-alive)[ \t]*(?=\r\n)"
)

# The head of the usual response to it: HTTP/1.1, a final status but 204
# and 304, one Content-Length, no Transfer-Encoding and no hop-by-hop field
# but at most one Connection line saying keep-alive or close.  The two
# lines may come in either order, one alternative each.  Groups: the
# Content-Length value and the Connection line (with its value) of the
# first order, then the Connection line (with its value) and the
# Content-Length value of the second.  See L{ResponseParser.wholeResponse}.
_PLAIN_RESPONSE_FIELDS = _plainFields(
    [
        b"connection",
        b"content-length",
        b"transfer-encoding",
        b"keep-alive",
        b"te",
        b"upgrade",
    ],
    b"proxy-",
)
_LENGTH_LINE = rb"(?i:content-length):[ \t]*+([0-9]{1,18}+)[ \t]*+\r\n"
_CONNECTION_LINE = rb"((?i:connection):[ \t]*+((?i:keep-alive|close))[ \t]*+\r\n)"
_WHOLE_RESPONSE = re.compile(
    rb"HTTP/1\.1 (?!204|304)[2-5][0-9][0-9] "
    + _VALUE
    + rb"\r\n"
    + _PLAIN_RESPONSE_FIELDS
    + rb"(?:"
    + (_LENGTH_LINE + _PLAIN_RESPONSE_FIELDS)
    + rb"(?:"
    + (_CONNECTION_LINE + _PLAIN_RESPONSE_FIELDS)
    + rb")?|"
    + (_CONNECTION_LINE + _PLAIN_RESPONSE_FIELDS)
    + (_LENGTH_LINE + _PLAIN_RESPONSE_FIELDS)
    + rb")\r\n"
)


def wholeResponseHead(head: bytes) -> ResponseHead:
    """
    Make the L{ResponseHead} of a head that L{ResponseParser.wholeResponse}
    returned (it checked every byte: status line, then field lines).
    """
    lineEnd = head.find(b"\r\n")
    block = head[lineEnd + 2 :]
    return ResponseHead(
        int(head[9:12]),
        head[13:lineEnd],
        Headers._fromBlock(block),
    )


# ws and wss (RFC 6455 section 3) name the same origins as http and https:
# a WebSocket client with a proxy sends its handshake in absolute form with
# them (aiohttp does), and it is forwarded as any upgrade request is.
_ABSOLUTE_FORM = re.compile(rb"(https?|wss?)://([^/?#]*)([^#]*)", re.IGNORECASE)
_SECURE_SCHEMES = (b"https", b"wss")


def splitTarget(head: RequestHead) -> None:
    """
    Fill in C{scheme}, C{host}, C{port}, C{authority} and C{path} of C{head}
    from its request-target (RFC 9112 section 3.2).

    @raise ClientProtocolError: for a target no form allows.
    """
    target = head.target
    if head.method == b"CONNECT":
        try:
            head.host, head.port = parseAuthority(target, None)
        except ValueError as e:
            raise ClientProtocolError(400, f"invalid CONNECT target: {e}")
        head.authority = target
        head.path = b""
        return
    first = target[:1]
    if first == b"/":
        if b"#" in target:
            raise ClientProtocolError(400, "fragment in request target")
        return
    if target == b"*":
        if head.method != b"OPTIONS":
            raise ClientProtocolError(
                400, "asterisk-form target with a method other than OPTIONS"
            )
        return
    match = _ABSOLUTE_FORM.fullmatch(target)
    if match is None:
        if b"#" in target and target.lower().startswith(
            (b"http://", b"https://", b"ws://", b"wss://")
        ):
            raise ClientProtocolError(400, "fragment in request target")
        raise ClientProtocolError(
            400, "request target is not an http, https, ws or wss URL"
        )
    scheme, authority, path = match.groups()
    secure = scheme.lower() in _SECURE_SCHEMES
    if not path and head.method == b"OPTIONS":
        # RFC 9112 section 3.2.4: OPTIONS for the server as a whole reaches
        # it as asterisk-form.
        path = b"*"
    elif not path.startswith(b"/"):
        path = b"/" + path
    try:
        head.host, head.port = parseAuthority(authority, 443 if secure else 80)
    except ValueError as e:
        raise ClientProtocolError(400, f"invalid host in request target: {e}")
    head.scheme = "https" if secure else "http"
    head.authority = authority
    head.path = path


def _parseFields(lines: list[bytes], errorType: type) -> list[list[bytes]]:
    """
    Parse header (or trailer) field lines into C{[lower, name, value]} lists.
    """
    fields = []
    for line in lines:
        colon = line.find(b":")
        if colon <= 0:
            if line[:1] in (b" ", b"\t"):
                raise _fieldError(errorType, "obsolete line folding in a header field")
            if colon == 0:
                raise _fieldError(errorType, "empty header field name")
            raise _fieldError(errorType, "header line without a colon")
        name = line[:colon]
        if name.translate(None, _TOKEN_CHARS):
            if line[:1] in (b" ", b"\t"):
                raise _fieldError(errorType, "obsolete line folding in a header field")
            if name[-1:] in (b" ", b"\t"):
                raise _fieldError(
                    errorType, "whitespace before the colon in a header field"
                )
            raise _fieldError(errorType, "invalid header field name")
        fields.append([name.lower(), name, line[colon + 1 :].strip(b" \t")])
    return fields


def _rejectFieldBlock(block: bytes, errorType: type) -> ProtocolError:
    """
    Name the defect of a block of field lines that L{_FIELD_BLOCK} did not
    match, with the line-by-line parser.

    @return: the error to raise.
    """
    lines = block.split(b"\r\n")
    lines.pop()
    try:
        _parseFields(lines, errorType)
    except ProtocolError as e:
        return e
    return _fieldError(errorType, "malformed header field")


def _fieldError(errorType: type, reason: str) -> ProtocolError:
    if errorType is ClientProtocolError:
        return ClientProtocolError(400, reason)
    return UpstreamProtocolError(reason)


def _framing(
    headers: Headers, errorType: type, isRequest: bool, lowered: bytes = b""
) -> tuple[int, int]:
    """
    Decide a message's body framing from Content-Length and
    Transfer-Encoding (RFC 9112 section 6.3), refusing every ambiguity.

    @param lowered: the header block lowercased, after a leading LF, if the
        caller has it: the usual cases (no framing field, or one plain
        Content-Length) are then decided with C-level searches.
    @return: C{(framing, length)}.
    """
    if lowered and b"\ntransfer-encoding:" not in lowered:
        count = lowered.count(b"\ncontent-length:")
        if count == 0:
            return NO_BODY, 0
        if count == 1:
            value = headers.get(b"content-length")
            if value is not None and _DIGITS.fullmatch(value):
                return LENGTH, int(value)
    lengths = headers.getAll(b"content-length")
    codings = headers.getAll(b"transfer-encoding")
    if codings:
        te = b",".join(codings)
        if lengths:
            raise _fieldError(errorType, "both Content-Length and Transfer-Encoding")
        codings = [c.strip(b" \t").lower() for c in te.split(b",")]
        if codings == [b"chunked"]:
            return CHUNKED, 0
        if codings[-1] == b"chunked" and all(_isToken(c) for c in codings):
            if isRequest:
                raise ClientProtocolError(501, "transfer coding other than chunked")
            raise UpstreamProtocolError("transfer coding other than chunked")
        if isRequest:
            raise ClientProtocolError(400, "Transfer-Encoding does not end in chunked")
        raise UpstreamProtocolError("Transfer-Encoding does not end in chunked")
    if not lengths:
        return NO_BODY, 0
    values = set()
    for value in lengths:
        for item in value.split(b","):
            item = item.strip(b" \t")
            if not _DIGITS.fullmatch(item):
                raise _fieldError(errorType, "malformed Content-Length")
            values.add(int(item))
    if len(values) != 1:
        raise _fieldError(errorType, "conflicting Content-Length values")
    length = values.pop()
    if len(lengths) > 1 or b"," in lengths[0]:
        # Identical duplicates are allowed (RFC 9110 section 8.6) but are
        # forwarded as one field, so no later hop can read them otherwise.
        headers.set(b"Content-Length", b"%d" % (length,))
    return LENGTH, length


class _Parser:
    """
    What request and response parsing share: buffering, bodies, chunks.

    @ivar framing: the current message's body framing.
    @ivar remaining: bytes of the current body (or chunk) still expected.
    @ivar maxHeaderBytes: largest header section, and largest trailer
        section, accepted.
    @ivar maxHeaders: most header fields, and most trailer fields, accepted.
    """

    __slots__ = (
        "_buffer",
        "_offset",
        "_searchFrom",
        "_state",
        "_eof",
        "_trailerLines",
        "_trailerBytes",
        "maxHeaderBytes",
        "maxHeaders",
        "framing",
        "remaining",
    )

    _errorType: type = ProtocolError

    _viewFrom = sys.maxsize
    """
    Body pieces of at least this many bytes that are only part of a read
    come as a C{memoryview} of it instead of a copy (see
    L{ResponseParser._viewFrom}); requests always get C{bytes}.
    """

    def __init__(self, maxHeaderBytes: int, maxHeaders: int) -> None:
        self._buffer = b""
        self._offset = 0
        self._searchFrom = 0
        self._state = _HEAD
        self._eof = False
        self._trailerLines: list[bytes] = []
        self._trailerBytes = 0
        self.maxHeaderBytes = maxHeaderBytes
        self.maxHeaders = maxHeaders
        self.framing = NO_BODY
        self.remaining = 0

    def receiveData(self, data: bytes) -> None:
        """
        Add bytes received from the peer.
        """
        if self._offset >= len(self._buffer):
            self._buffer = data
            self._offset = 0
        else:
            self._buffer = self._buffer[self._offset :] + data
            self._searchFrom = max(0, self._searchFrom - self._offset)
            self._offset = 0

    def receiveEOF(self) -> None:
        """
        The peer closed its side; the next C{nextEvent} ends a body delimited
        by close or raises if a message was cut short.
        """
        self._eof = True

    def buffered(self) -> int:
        """
        @return: how many received bytes the parser has not consumed.
        """
        return len(self._buffer) - self._offset

    def outstanding(self) -> int:
        """
        @return: bytes of a body of known length that have not been
            received yet (0 in any other state, or once all have been).
        """
        if self._state == _BODY_LENGTH:
            return self.remaining - (len(self._buffer) - self._offset)
        return 0

    def takeBuffer(self) -> bytes:
        """
        Take the bytes received after a message that switched protocols
        (CONNECT, 101).  The parser is of no further use.
        """
        data = self._buffer[self._offset :]
        self._buffer = b""
        self._offset = 0
        return data

    def startNextCycle(self) -> None:
        """
        Let the parser go on to the next message once the current exchange is
        over (pipelined requests, or the next response on a reused
        connection).
        """
        if self._state == _DONE:
            self._state = _HEAD
            self._searchFrom = 0

    def discard(self) -> None:
        """
        Drop the received bytes already consumed, which the parser would
        keep until the next read: call it when done with a read, so that a
        connection waiting (a keep-alive client, an idle pooled upstream)
        does not hold its last read alive, up to 1 MiB of it
        (L{proxyapp.fastio}).  Bytes not consumed yet stay.
        """
        if self._offset >= len(self._buffer):
            self._buffer = b""
            self._offset = 0

    def endsHere(self) -> bool:
        """
        Finish the current message now if nothing of its body remains (no
        body at all, or a length-delimited body fully returned): the caller
        then acts as if L{nextEvent} had returned L{END}, and saves the call.

        @return: whether the message was finished.
        """
        if self._state == _BODY_LENGTH and self.remaining == 0:
            self._state = _DONE
            return True
        return False

    def _findHead(self) -> int:
        """
        @return: the offset of the CRLFCRLF ending the head, or -1.
        """
        end = self._buffer.find(b"\r\n\r\n", self._offset + self._searchFrom)
        if end == -1:
            self._searchFrom = max(0, len(self._buffer) - self._offset - 3)
        return end

    def _startBody(self, framing: int, length: int) -> None:
        self.framing = framing
        if framing == LENGTH:
            self.remaining = length
            self._state = _BODY_LENGTH
        elif framing == CHUNKED:
            self._state = _CHUNK_SIZE
        elif framing == UNTIL_CLOSE:
            self._state = _UNTIL_CLOSE
        else:
            # An empty body still ends with an EndOfMessage event.
            self.remaining = 0
            self._state = _BODY_LENGTH

    def _bodyEvent(self) -> Event:
        """
        Parse the next body event; called in every state but C{_HEAD}.
        """
        while True:
            state = self._state
            if state == _DONE or state == _SWITCHED:
                return PAUSED
            buffer = self._buffer
            offset = self._offset
            available = len(buffer) - offset
            if state == _BODY_LENGTH:
                if self.remaining == 0:
                    self._state = _DONE
                    return END
                if not available:
                    return self._needData("body cut short by the connection closing")
                take = min(available, self.remaining)
                self.remaining -= take
                self._offset = offset + take
                if offset == 0 and take == len(buffer):
                    return buffer
                if take >= self._viewFrom:
                    return memoryview(buffer)[offset : offset + take]
                return buffer[offset : offset + take]
            if state == _CHUNK_DATA:
                if not available:
                    return self._needData("chunk cut short by the connection closing")
                take = min(available, self.remaining)
                self.remaining -= take
                self._offset = offset + take
                if self.remaining == 0:
                    self._state = _CHUNK_CRLF
                if offset == 0 and take == len(buffer):
                    return buffer
                if take >= self._viewFrom:
                    return memoryview(buffer)[offset : offset + take]
                return buffer[offset : offset + take]
            if state == _CHUNK_SIZE:
                end = buffer.find(b"\r\n", offset)
                if end == -1:
                    if available > _MAX_CHUNK_LINE:
                        raise self._error("chunk size line too long")
                    if buffer.find(b"\n", offset) != -1:
                        # The CRLF waited for would never come.
                        raise self._error("bare LF line end in a chunked body")
                    return self._needData(
                        "chunked body cut short by the connection closing"
                    )
                if end - offset > _MAX_CHUNK_LINE:
                    raise self._error("chunk size line too long")
                line = buffer[offset:end]
                match = _CHUNK_SIZE_LINE.fullmatch(line)
                if match is None:
                    raise self._error("invalid chunk size line")
                size = int(match.group(1), 16)
                if size >= 1 << 62:
                    raise self._error("chunk size too large")
                self._offset = end + 2
                if size == 0:
                    self._state = _TRAILERS
                    self._trailerLines = []
                    self._trailerBytes = 0
                else:
                    self.remaining = size
                    self._state = _CHUNK_DATA
                continue
            if state == _CHUNK_CRLF:
                if available < 2:
                    if available == 1 and buffer[offset] != 13:
                        raise self._error("chunk data not followed by CRLF")
                    return self._needData(
                        "chunked body cut short by the connection closing"
                    )
                if buffer[offset : offset + 2] != b"\r\n":
                    raise self._error("chunk data not followed by CRLF")
                self._offset = offset + 2
                self._state = _CHUNK_SIZE
                continue
            if state == _TRAILERS:
                end = buffer.find(b"\r\n", offset)
                if end == -1:
                    if available + self._trailerBytes > self.maxHeaderBytes:
                        raise self._error("trailer section too large")
                    if buffer.find(b"\n", offset) != -1:
                        raise self._error("bare LF line end in a chunked body")
                    return self._needData(
                        "trailers cut short by the connection closing"
                    )
                line = buffer[offset:end]
                self._offset = end + 2
                if line:
                    self._trailerBytes += len(line) + 2
                    if self._trailerBytes > self.maxHeaderBytes:
                        raise self._error("trailer section too large")
                    if _badHeadBytes(line):
                        raise self._error("invalid character in a trailer field")
                    lines = self._trailerLines
                    if len(lines) >= self.maxHeaders:
                        raise self._error("too many trailer fields")
                    lines.append(line)
                    continue
                self._state = _DONE
                if not self._trailerLines:
                    return END
                fields = _parseFields(self._trailerLines, self._errorType)
                self._trailerLines = []
                return EndOfMessage(Headers._fromParsed(fields))
            if state == _UNTIL_CLOSE:
                if available:
                    self._offset = len(buffer)
                    return buffer if offset == 0 else buffer[offset:]
                if self._eof:
                    self._state = _DONE
                    return END
                return NEED_DATA
            raise AssertionError(f"unknown parser state {state}")

    def _needData(self, reason: str) -> Event:
        if self._eof:
            raise self._error(reason)
        return NEED_DATA

    def _error(self, reason: str) -> ProtocolError:
        return _fieldError(self._errorType, reason)


class RequestParser(_Parser):
    """
    Parses requests from a client.

    @ivar maxRequestLine: longest request line accepted (else 414).
    @ivar maxHeaderBytes: largest header section accepted (else 431).
    @ivar maxHeaders: most header fields accepted (else 431).
    """

    __slots__ = ("maxRequestLine", "_lineChecked")

    _errorType = ClientProtocolError

    def __init__(
        self,
        maxRequestLine: int = 8192,
        maxHeaderBytes: int = 65536,
        maxHeaders: int = 100,
    ) -> None:
        _Parser.__init__(self, maxHeaderBytes, maxHeaders)
        self.maxRequestLine = maxRequestLine
        # Where the request line checked ahead of its head's end starts
        # (L{_headIncomplete}), or -1.
        self._lineChecked = -1

    def headStarted(self) -> bool:
        """
        @return: whether part of a request head has been received (so a
            header timeout, not an idle timeout, applies).
        """
        return self._state == _HEAD and self._offset < len(self._buffer)

    def holdsNextRequest(self) -> bool:
        """
        @return: whether bytes of another request are buffered (not just
            empty lines, which RFC 9112 section 2.2 lets precede a request
            line and some clients send after a body).
        """
        return bool(self._buffer[self._offset :].strip(b"\r\n"))

    def wholeRequest(self, data: bytes) -> Optional[RequestHead]:
        """
        Take C{data}, just received, as one whole request if it is exactly
        the usual proxied request and nothing else is buffered: GET or
        HEAD of an C{http://} URL over HTTP/1.1, no body, well-formed
        fields, a Host field equal to the target's authority, and none of
        the fields the proxy acts on (framing, hop-by-hop, Via,
        Max-Forwards) but for a C{Connection} and a C{Proxy-Connection}
        line saying C{keep-alive}, which browsers send: those are taken
        out of the head (RFC 9112 section 9.6; they repeat HTTP/1.1's
        default).  The parser is then left as after L{nextEvent} returned
        the head and the message ended (bodiless, C{PAUSED}).

        This is the per-request path's shortcut: one C-level match instead
        of the event loop.  Everything it declines, it leaves untouched
        for L{receiveData} and L{nextEvent}, which accept or reject it as
        they always do.

        @return: the head, or C{None} if C{data} is anything else.
        """
        if (
            self._state != _HEAD
            or self._offset < len(self._buffer)
            or not data.endswith(b"\r\n\r\n")
            or len(data) > self.maxRequestLine + self.maxHeaderBytes + 4
        ):
            return None
        match = _WHOLE_REQUEST.fullmatch(data)
        setApart = lines = 0
        if match is None:
            # What browsers send: Connection or Proxy-Connection saying
            # keep-alive, HTTP/1.1's default, hop-by-hop and not forwarded.
            # Set those lines apart; the rest must match.
            stripped, lines = _KEEP_ALIVE_LINE.subn(b"", data, 2)
            if not lines:
                return None
            match = _WHOLE_REQUEST.fullmatch(stripped)
            if match is None:
                return None
            setApart = len(data) - len(stripped)
        method, target, authority, path, block, host = match.groups()
        # The limits count the lines set apart, as the event path does.
        size = len(block) + setApart
        if (
            host.strip(b" \t") != authority
            or match.start(5) - 2 > self.maxRequestLine
            or size > self.maxHeaderBytes
            # Field lines are at least 4 bytes each: short blocks need no count.
            or size > 4 * self.maxHeaders
            and block.count(b"\r\n") + lines > self.maxHeaders
        ):
            return None
        try:
            host, port = parseAuthority(authority, 80)
        except ValueError:
            return None
        request = RequestHead(
            method,
            target,
            b"HTTP/1.1",
            Headers._fromBlock(block),
        )
        request.scheme = "http"
        request.host = host
        request.port = port
        request.authority = authority
        request.path = path
        self.framing = NO_BODY
        self.remaining = 0
        self._state = _DONE
        return request

    def nextEvent(self) -> Event:
        """
        @return: the next event (see the module docstring).
        @raise ClientProtocolError: if the request is malformed.
        """
        if self._state != _HEAD:
            return self._bodyEvent()
        buffer = self._buffer
        offset = self._offset
        # RFC 9112 section 2.2: ignore empty lines before a request line.
        while buffer.startswith(b"\r\n", offset):
            offset += 2
        self._offset = offset
        end = self._findHead()
        if end == -1:
            return self._headIncomplete()
        self._offset = end + 4
        self._searchFrom = 0
        self._lineChecked = -1
        request = self._quickHead(buffer, offset, end)
        if request is None:
            request = self._checkedHead(buffer, offset, end)
        if request.method == b"CONNECT":
            self._state = _SWITCHED
        return request

    def _quickHead(self, buffer: bytes, offset: int, end: int) -> Optional[RequestHead]:
        """
        Parse the usual request head (origin-form or C{http(s)://} target,
        HTTP/1.1 or 1.0, well-formed fields) with two C-level matches
        that also do all the byte checks.

        @return: the head, or C{None} if anything is unusual, in which case
            L{_checkedHead} parses it again and names the defect.
        """
        line = _QUICK_REQUEST_LINE.match(buffer, offset, end + 2)
        if line is None:
            return None
        lineEnd = line.end()
        if lineEnd - 2 - offset > self.maxRequestLine:
            return None
        if end + 2 - lineEnd > self.maxHeaderBytes:
            return None
        block = buffer[lineEnd : end + 2]
        if _FIELD_BLOCK.fullmatch(block) is None:
            return None
        if block.count(b"\r\n") > self.maxHeaders:
            return None
        lowered = b"\n" + block.lower()
        if lowered.count(b"\nhost:") != 1:
            return None
        method, target, scheme, authority, path, minor = line.groups()
        if method == b"CONNECT":
            return None
        request = RequestHead(
            method,
            target,
            b"HTTP/1.1" if minor == b"1" else b"HTTP/1.0",
            Headers._fromBlock(block, lowered),
        )
        if scheme is not None:
            plain = scheme == b"http" or scheme.lower() == b"http"
            try:
                request.host, request.port = parseAuthority(
                    authority, 80 if plain else 443
                )
            except ValueError:
                return None
            request.scheme = "http" if plain else "https"
            request.authority = authority
            request.path = path
        else:
            try:
                parseAuthority(request.headers.get(b"host"), 80)  # type: ignore[arg-type]
            except ValueError:
                return None
        if b"\ntransfer-encoding:" in lowered or b"\ncontent-length:" in lowered:
            try:
                framing, length = _framing(
                    request.headers, ClientProtocolError, True, lowered
                )
            except ClientProtocolError:
                return None
            if framing == CHUNKED and minor == b"0":
                return None
            self._startBody(framing, length)
        else:
            # _startBody(NO_BODY, 0), inline: the usual GET.
            self.framing = NO_BODY
            self.remaining = 0
            self._state = _BODY_LENGTH
        return request

    def _checkedHead(self, buffer: bytes, offset: int, end: int) -> RequestHead:
        """
        Parse a request head step by step, raising L{ClientProtocolError}
        that names the first defect.
        """
        head = buffer[offset:end]
        lineEnd = buffer.find(b"\r\n", offset, end + 2)
        requestLine = buffer[offset:lineEnd]
        if len(requestLine) > self.maxRequestLine:
            raise ClientProtocolError(414, "request line too long")
        if end - lineEnd > self.maxHeaderBytes:
            raise ClientProtocolError(431, "header section too large")
        if _badHeadBytes(head):
            raise _badBytes()
        method, target, version = _splitRequestLine(requestLine)
        block = buffer[lineEnd + 2 : end + 2]
        if block.count(b"\r\n") > self.maxHeaders:
            raise ClientProtocolError(431, "too many header fields")
        if _FIELD_BLOCK.fullmatch(block) is None:
            raise _rejectFieldBlock(block, ClientProtocolError)
        lowered = b"\n" + block.lower()
        headers = Headers._fromBlock(block, lowered)
        request = RequestHead(method, target, version, headers)
        hosts = lowered.count(b"\nhost:")
        if hosts > 1:
            raise ClientProtocolError(400, "duplicate Host header")
        if hosts == 0 and version == b"HTTP/1.1":
            raise ClientProtocolError(400, "missing Host header")
        splitTarget(request)
        if request.host is None and hosts:
            host = headers.get(b"host")
            if host:
                try:
                    parseAuthority(host, 80)
                except ValueError as e:
                    raise ClientProtocolError(400, f"invalid Host header: {e}")
        framing, length = _framing(headers, ClientProtocolError, True, lowered)
        if framing == CHUNKED and version == b"HTTP/1.0":
            # RFC 9112 section 6.1: chunked framing from an HTTP/1.0 client
            # is faulty; a server cannot trust where it ends.
            raise ClientProtocolError(400, "Transfer-Encoding in an HTTP/1.0 request")
        if method == b"CONNECT":
            if framing != NO_BODY:
                raise ClientProtocolError(400, "CONNECT request with a body")
            return request
        self._startBody(framing, length)
        return request

    def _headIncomplete(self) -> Event:
        """
        Check the part of a request head received so far, so that what
        can never become a valid head is refused now rather than when the
        header timeout runs out: a request line that is too long, or that
        is complete and malformed (HTTP/0.9, an unknown version, a bad
        method), or that begins with what no request line can hold (a TLS
        handshake, say); bare LF line ends; a header section too large.
        """
        buffer = self._buffer
        offset = self._offset
        available = len(buffer) - offset
        if buffer.find(b"\n\n", offset) != -1:
            # Bare LF line ends: the CRLFCRLF we wait for would never come.
            raise ClientProtocolError(400, "bare LF line ends in the request head")
        limit = self.maxRequestLine
        lineEnd = buffer.find(b"\r\n", offset, offset + limit + 2)
        if lineEnd == -1:
            # One byte past the limit is allowed only if it is the CR of the
            # CRLF ending a line of exactly the limit.
            if available > limit + 1 or (
                available == limit + 1 and buffer[offset + limit] != 13
            ):
                raise ClientProtocolError(414, "request line too long")
            if available:
                partial = buffer[offset:]
                if partial[-1] == 13:
                    partial = partial[:-1]
                if _badHeadBytes(partial):
                    raise _badBytes()
                if partial and not _isToken(partial[:1]):
                    raise ClientProtocolError(400, "invalid method")
        else:
            if available - (lineEnd - offset) - 2 > self.maxHeaderBytes + 2:
                raise ClientProtocolError(431, "header section too large")
            if self._lineChecked != offset:
                line = buffer[offset:lineEnd]
                if _badHeadBytes(line):
                    raise _badBytes()
                _splitRequestLine(line)
                self._lineChecked = offset
        if self._eof and available:
            raise ClientProtocolError(
                400, "request head cut short by the connection closing"
            )
        return NEED_DATA


def _splitRequestLine(line: bytes) -> tuple[bytes, bytes, bytes]:
    """
    Check a request line (whose bytes L{_badHeadBytes} passed) and split it.

    @return: method, target and version (C{HTTP/1.1} for any later 1.x).
    @raise ClientProtocolError: if it is malformed.
    """
    parts = line.split(b" ")
    if len(parts) != 3:
        raise ClientProtocolError(400, "malformed request line")
    method, target, version = parts
    if not _isToken(method):
        raise ClientProtocolError(400, "invalid method")
    if not target or b"\t" in target:
        raise ClientProtocolError(400, "invalid request target")
    if version != b"HTTP/1.1" and version != b"HTTP/1.0":
        if (
            len(version) == 8
            and version.startswith(b"HTTP/1.")
            and version[7:].isdigit()
        ):
            version = b"HTTP/1.1"
        else:
            raise ClientProtocolError(400, "unsupported HTTP version")
    return method, target, version


def _badBytes() -> ClientProtocolError:
    return ClientProtocolError(
        400, "invalid character (control, NUL or bare CR/LF) in the request head"
    )


class ResponseParser(_Parser):
    """
    Parses responses from an upstream server.

    Before each response, call L{expectResponse} with the request's method,
    which decides whether the response can have a body (HEAD, CONNECT).

    @ivar faulty: whether the current exchange's responses framed
        themselves in a way the status forbids (RFC 9112 section 6.1,
        RFC 9110 section 8.6): a length or chunked coding on a 1xx, a
        length above 0 or a chunked coding on a 204, chunked coding in an
        HTTP/1.0 response.  The response is still taken as the status says
        (a 1xx or 204 has no body), but what the upstream sends next on the
        connection cannot be trusted, so it must not be reused.
    """

    __slots__ = ("_method", "faulty")

    _errorType = UpstreamProtocolError

    _viewFrom = 16 * 1024
    """
    A response's first read usually holds its head and as much of its body
    as has arrived, up to a megabyte: slicing the body off copied it once
    more in user space (4 % of the proxy's CPU relaying 1 MiB responses).
    A C{memoryview} costs the same whatever its size, so pieces from 16 KiB
    on come as views, which the relay hands to the kernel unjoined
    (L{proxyapp.fastio.gathers}).
    """

    def __init__(self, maxHeaderBytes: int = 65536, maxHeaders: int = 100) -> None:
        _Parser.__init__(self, maxHeaderBytes, maxHeaders)
        self._method = b"GET"
        self._state = _DONE
        self.faulty = False

    def expectResponse(self, method: bytes) -> None:
        """
        Get ready to parse the response to a request with this method.
        """
        self._method = method
        self._state = _HEAD
        self._searchFrom = 0
        self.faulty = False

    def wholeResponse(
        self, data: bytes
    ) -> Optional[tuple[bytes, bool, Union[bytes, memoryview]]]:
        """
        Take C{data}, just received, as one whole response if it is exactly
        the usual one and nothing else is buffered: HTTP/1.1, a final
        status other than 204 and 304 to a request other than HEAD and
        CONNECT, well-formed fields with one Content-Length, no
        Transfer-Encoding, no hop-by-hop field but at most one Connection
        field saying C{keep-alive} or C{close}, and the whole body.  The
        parser is then left as after L{nextEvent} returned the head, the
        body and the end of the message.

        The Connection field is taken out of the head (RFC 9112 section
        9.6; neither option names another field) and reported as a flag.
        The head comes back as bytes, ready to relay: no head object is
        made unless something needs one (L{wholeResponseHead}).

        This is the per-request path's shortcut: one C-level match instead
        of the event loop.  Everything it declines, it leaves untouched
        for L{receiveData} and L{nextEvent}.

        @return: C{(head, close, body)}: C{head} the status line and the
            field lines, each ending in CRLF, less the Connection line and
            the empty line; C{close} whether the upstream said
            C{Connection: close}; or C{None} if C{data} is anything else.
        """
        if self._state != _HEAD or self._offset < len(self._buffer):
            return None
        method = self._method
        if method == b"HEAD" or method == b"CONNECT":
            return None
        match = _WHOLE_RESPONSE.match(data)
        if match is None:
            return None
        end = match.end()
        if end - 4 > self.maxHeaderBytes:
            return None
        # Field lines are at least 4 bytes each: short heads need no count.
        # The Connection line counts, as in the event path.
        if end > 4 * self.maxHeaders and data.count(b"\r\n", 0, end) - 2 > (
            self.maxHeaders
        ):
            return None
        length, connection, value, connectionFirst, valueFirst, lengthAfter = (
            match.groups()
        )
        if length is None:
            length, connection, value = lengthAfter, connectionFirst, valueFirst
        if int(length) != len(data) - end:
            return None
        self.framing = LENGTH
        self.remaining = 0
        self._state = _DONE
        body = (
            memoryview(data)[end:] if len(data) - end >= self._viewFrom else data[end:]
        )
        if connection is None:
            return data[: end - 2], False, body
        cut, resume = match.span(2 if connectionFirst is None else 4)
        return (
            data[:cut] + data[resume : end - 2],
            len(value) == 5,  # close, not keep-alive
            body,
        )

    def nextEvent(self) -> Event:
        """
        @return: the next event (see the module docstring).
        @raise UpstreamProtocolError: if the response is malformed.
        """
        if self._state != _HEAD:
            return self._bodyEvent()
        end = self._findHead()
        if end == -1:
            available = len(self._buffer) - self._offset
            # Up to three bytes of the CRLFCRLF may be here already.
            if available > self.maxHeaderBytes + 3:
                raise UpstreamProtocolError("response header section too large")
            if self._buffer.find(b"\n\n", self._offset) != -1:
                raise UpstreamProtocolError("bare LF line ends in the response head")
            if self._eof:
                if available:
                    raise UpstreamProtocolError(
                        "response head cut short by the connection closing"
                    )
                raise UpstreamProtocolError("connection closed before a response")
            return NEED_DATA
        buffer = self._buffer
        offset = self._offset
        if end - offset > self.maxHeaderBytes:
            raise UpstreamProtocolError("response header section too large")
        self._offset = end + 4
        self._searchFrom = 0
        lineEnd = buffer.find(b"\r\n", offset, end + 2)
        # The status line and field block patterns include every byte
        # check, so a well-formed head costs two C-level matches.
        match = _STATUS_LINE.fullmatch(buffer, offset, lineEnd)
        block = buffer[lineEnd + 2 : end + 2]
        wellFormed = _FIELD_BLOCK.fullmatch(block) is not None
        if match is None or not wellFormed:
            if _badHeadBytes(buffer[offset:end]):
                raise UpstreamProtocolError(
                    "invalid character (control, NUL or bare CR/LF) in the response head"
                )
            if match is None:
                raise UpstreamProtocolError("malformed status line")
        if block.count(b"\r\n") > self.maxHeaders:
            raise UpstreamProtocolError("too many response header fields")
        if not wellFormed:
            raise _rejectFieldBlock(block, UpstreamProtocolError)
        lowered = b"\n" + block.lower()
        headers = Headers._fromBlock(block, lowered)
        minor, statusText, reason = match.groups()
        status = int(statusText)
        if not 100 <= status <= 599:
            raise UpstreamProtocolError("invalid status code")
        version = b"HTTP/1.0" if minor == b"0" else b"HTTP/1.1"
        response = ResponseHead(status, reason or b"", headers, version)
        if status < 200:
            if status == 101:
                self._state = _SWITCHED
            elif b"\ncontent-length:" in lowered or b"\ntransfer-encoding:" in lowered:
                self.faulty = True
            # Other interim responses leave the parser waiting for the next
            # head of the same exchange.
            return response
        framing, length = _framing(headers, UpstreamProtocolError, False, lowered)
        if framing == CHUNKED and minor == b"0":
            self.faulty = True
        method = self._method
        if method == b"CONNECT" and status < 300:
            # Any 2xx to CONNECT makes the connection a tunnel (RFC 9110
            # section 9.3.6), 204 included.
            self._state = _SWITCHED
        elif method == b"HEAD" or status == 204 or status == 304:
            if status == 204 and method != b"HEAD" and (framing == CHUNKED or length):
                self.faulty = True
            self._startBody(NO_BODY, 0)
        elif framing == NO_BODY:
            self._startBody(UNTIL_CLOSE, 0)
        else:
            self._startBody(framing, length)
        return response

    def isIdle(self) -> bool:
        """
        @return: whether the parser is between responses with nothing
            buffered (so the connection may be reused).
        """
        return self._state == _DONE and self._offset >= len(self._buffer)
