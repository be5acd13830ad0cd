# -*- test-case-name: tests.test_message -*-
"""
HTTP message heads as plain values: no parsing, no I/O, no Twisted.

Field names and values are C{bytes} in wire order; lookups are
case-insensitive.  L{RequestHead} and L{ResponseHead} are what the parser
produces, what filters see and what the protocol serializes again.
L{Response} is a complete short response (an error page, a filter's
refusal) that the proxy writes to the client itself.
"""

from __future__ import annotations

import re
from html import escape
from typing import Any, Iterable, Iterator, Optional

from proxyapp import __version__

PRODUCT = b"webproxy/" + __version__.encode("ascii")

# RFC 9110 section 7.6.1 names these, plus every field that Connection lists;
# Proxy-Connection is a widely sent non-standard relative of Connection.
HOP_BY_HOP = frozenset(
    [
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authorization",
        b"proxy-authenticate",
        b"te",
        b"upgrade",
    ]
)
"""
Fields the proxy never copies from one hop to the next.  Framing fields
(Content-Length, Transfer-Encoding) are not here: the parser only accepts
framings the proxy forwards unchanged, and the protocol adjusts them itself
where a hop needs another framing (an HTTP/1.0 client, a close-delimited
body).
"""


# A field line as the parser validated it: name, colon, value, CRLF.
_FIELD_LINE = re.compile(
    rb"^([-!#$%&'*+.^_`|~0-9A-Za-z]+):[ \t]*((?:[^\r\n]*[^\r\n \t])?)[ \t]*\r\n",
    re.MULTILINE,
)

# Connection tokens whose removal the fixed hop-by-hop names already cover:
# connection options that name no field (RFC 9112 sections 9.3 and 9.6),
# and the fixed names themselves.
_CONNECTION_OPTIONS = HOP_BY_HOP | frozenset([b"close"])

# Fields that Connection may not nominate for removal: the message's framing
# was decided by them when it was parsed, so dropping one would forward a
# message whose body the next hop reads differently (a request smuggled
# inside another's body; a response the client cannot delimit), and the
# request's Host names where it goes.
_NEVER_NOMINATED = frozenset([b"content-length", b"transfer-encoding", b"host"])


TOKEN_CHARS = (
    b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)
"""
The characters of an RFC 9110 token (field names, methods, codings).
"""

_FIELD_VALUE = re.compile(rb"[\t\x20-\x7e\x80-\xff]*\Z")


def isToken(value: bytes) -> bool:
    """
    @return: whether C{value} is an RFC 9110 token.
    """
    return bool(value) and not value.translate(None, TOKEN_CHARS)


def isFieldValue(value: bytes) -> bool:
    """
    @return: whether C{value} is free of control characters but tab.
    """
    return _FIELD_VALUE.match(value) is not None


def checkField(name: bytes, value: bytes) -> None:
    """
    Check a field a filter (or the proxy) adds: the name a token, the value
    free of control characters but tab (RFC 9110 section 5.5), both bytes.

    @raise ValueError: naming the field otherwise.
    """
    if (
        type(name) is not bytes
        or type(value) is not bytes
        or not isToken(name)
        or not isFieldValue(value)
    ):
        raise ValueError(f"not a valid header field: {name!r}: {value!r}")


class FieldNames:
    """
    A set of lowercase field names that L{Headers.hasAny} looks for with one
    C-level search of the received block.
    """

    __slots__ = ("names", "_pattern")

    def __init__(self, names: Iterable[bytes]) -> None:
        self.names = frozenset(name.lower() for name in names)
        self._pattern = re.compile(
            rb"\n(?:"
            + b"|".join(re.escape(name) for name in sorted(self.names))
            + rb"):"
        )


HOP_BY_HOP_FIELDS = FieldNames(HOP_BY_HOP)
"""
L{HOP_BY_HOP} for L{Headers.hasAny}.
"""


# Search needles by field name as callers spell it: C{b"\\nname:"} for the
# lowercased block, and the lowercase name.  Callers name the same few
# fields over and over; this saves making three bytes objects per lookup.
_NEEDLES: dict[bytes, tuple[bytes, bytes]] = {}


def _needle(name: bytes) -> tuple[bytes, bytes]:
    """
    @return: C{(b"\\n" + lowercase name + b":", lowercase name)}, cached for
        the first thousand names.
    """
    lower = name.lower()
    entry = (b"\n" + lower + b":", lower)
    if len(_NEEDLES) < 1024:
        _NEEDLES[name] = entry
    return entry


class Headers:
    """
    An ordered multi-map of header fields.

    A parsed head keeps its field lines as received (C{_block}, validated
    by the parser) and answers lookups with C-level searches of a
    lowercased copy; the lines become Python objects only when something
    needs them as objects (iteration, C{set} of a new value, C{remove}).
    On the per-request path nothing does: the proxy reads a few fields,
    drops hop-by-hop lines in place, appends C{Via}, and sends the block
    on with the appended fields.

    @ivar _block: the field lines as received, each ending in CRLF, or
        C{None} once they were turned into C{_fields}.
    @ivar _lowered: C{b"\\n"} plus C{_block} lowercased, for lookups.
    @ivar _fields: C{[lowercase name, name as received, value]} lists in
        wire order: every field once C{_block} is C{None}, otherwise the
        fields added after the block.  The lowercase name is computed once,
        when the field is added, so lookups never lowercase again.
    @ivar _received: C{(_block, _lowered)} as they were when the block was
        turned into C{_fields}, for L{received}; C{None} until then.
    """

    __slots__ = ("_fields", "_block", "_lowered", "_received")

    def __init__(self, fields: Optional[list[tuple[bytes, bytes]]] = None) -> None:
        self._block: Optional[bytes] = None
        self._lowered = b""
        self._fields: list[list[bytes]] = []
        self._received: Optional[tuple[bytes, bytes]] = None
        if fields:
            for name, value in fields:
                checkField(name, value)
                self._fields.append([name.lower(), name, value])

    @classmethod
    def _fromBlock(cls, block: bytes, lowered: Optional[bytes] = None) -> "Headers":
        """
        Adopt a block of field lines the parser validated.

        @param lowered: C{b"\\n" + block.lower()}, if the caller has made
            it already; made here otherwise.
        """
        headers = cls.__new__(cls)
        headers._block = block
        headers._lowered = b"\n" + block.lower() if lowered is None else lowered
        headers._fields = []
        headers._received = None
        return headers

    @classmethod
    def _fromParsed(cls, fields: list[list[bytes]]) -> "Headers":
        """
        Adopt a list of C{[lowercase, name, value]} the parser built.
        """
        headers = cls.__new__(cls)
        headers._block = None
        headers._lowered = b""
        headers._fields = fields
        headers._received = None
        return headers

    def _materialize(self) -> list[list[bytes]]:
        """
        Turn the received block into C{_fields} (before the added ones).
        """
        block = self._block
        if block is not None:
            self._fields = [
                [name.lower(), name, value]
                for name, value in _FIELD_LINE.findall(block)
            ] + self._fields
            if self._received is None:
                self._received = (block, self._lowered)
            self._block = None
            self._lowered = b""
        return self._fields

    def _blockValues(self, lower: bytes, lowercase: bool = False) -> list[bytes]:
        """
        @param lowercase: whether to return the values lowercased.
        @return: the values of the received fields called C{lower}.
        """
        lowered = self._lowered
        needle = b"\n" + lower + b":"
        position = lowered.find(needle)
        if position == -1:
            return []
        # Offsets in the lowercased copy are one more than in the block.
        if lowercase:
            source, shift = lowered, len(needle)
        else:
            source, shift = self._block, len(needle) - 1  # type: ignore[assignment]
        values = []
        while position != -1:
            start = position + shift
            values.append(source[start : source.find(b"\r", start)].strip(b" \t"))
            position = lowered.find(needle, position + len(needle))
        return values

    def __iter__(self) -> Iterator[tuple[bytes, bytes]]:
        for _, name, value in self._materialize():
            yield name, value

    def __len__(self) -> int:
        if self._block is not None:
            return self._block.count(b"\r\n") + len(self._fields)
        return len(self._fields)

    def __contains__(self, name: bytes) -> bool:
        needle, lower = _NEEDLES.get(name) or _needle(name)
        if self._block is not None and needle in self._lowered:
            return True
        for field in self._fields:
            if field[0] == lower:
                return True
        return False

    def __repr__(self) -> str:
        return f"Headers({list(self)!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return list(self) == list(other)

    def hasAny(self, names: FieldNames) -> bool:
        """
        @return: whether any field is called one of C{names}.
        """
        if self._block is not None and names._pattern.search(self._lowered):
            return True
        allNames = names.names
        for field in self._fields:
            if field[0] in allNames:
                return True
        return False

    def get(self, name: bytes, default: Optional[bytes] = None) -> Optional[bytes]:
        """
        @return: the value of the first field called C{name}, or C{default}.
        """
        needle, lower = _NEEDLES.get(name) or _needle(name)
        block = self._block
        if block is not None:
            position = self._lowered.find(needle)
            if position != -1:
                start = position + len(needle) - 1
                return block[start : block.find(b"\r", start)].strip(b" \t")
        for field in self._fields:
            if field[0] == lower:
                return field[2]
        return default

    def received(self, name: bytes) -> Optional[bytes]:
        """
        The value of the first field called C{name} in the block of field
        lines as the parser took it, whatever was set, added or removed
        since: what the sender said, for the access log, after filters may
        have changed the head.

        Only the proxy's own removal of hop-by-hop lines (before filters
        run) may have happened before, which leaves every end-to-end field
        as it was.  Headers made in code, not parsed, have no such block and
        answer as L{get} (unless L{receivedAs} gave them one); so do the
        new C{headers} a filter put on the head it was given.

        @return: the value, or L{None}.
        """
        received = self._received
        if received is None:
            if self._block is None:
                return self.get(name)
            block, lowered = self._block, self._lowered
        else:
            block, lowered = received
        needle = _NEEDLES.get(name) or _needle(name)
        position = lowered.find(needle[0])
        if position == -1:
            return None
        start = position + len(needle[0]) - 1
        return block[start : block.find(b"\r", start)].strip(b" \t")

    def receivedAs(self, other: "Headers") -> None:
        """
        Answer L{received} from what C{other} received: the fields of a
        head a filter built anew, which stands for the client's.
        """
        if other is self:
            return
        received = other._received
        if received is None and other._block is not None:
            received = (other._block, other._lowered)
        self._received = received

    def getAll(self, name: bytes) -> list[bytes]:
        """
        @return: the values of every field called C{name}, in wire order.
        """
        lower = name.lower()
        values = self._blockValues(lower) if self._block is not None else []
        for field in self._fields:
            if field[0] == lower:
                values.append(field[2])
        return values

    def getTokens(self, name: bytes) -> list[bytes]:
        """
        @return: the comma-separated list elements of every field called
            C{name}, stripped and lowercased (for Connection, TE and the like).
        """
        tokens: list[bytes] = []
        lower = name.lower()
        values = self._blockValues(lower, True) if self._block is not None else []
        for field in self._fields:
            if field[0] == lower:
                values.append(field[2].lower())
        for value in values:
            for token in value.split(b","):
                token = token.strip(b" \t")
                if token:
                    tokens.append(token)
        return tokens

    def add(self, name: bytes, value: bytes) -> None:
        """
        Append a field, after any existing fields of that name.

        @raise ValueError: if C{name} is not a token or C{value} holds a
            control character (CR and LF would add lines to the head).
        """
        checkField(name, value)
        self._fields.append([name.lower(), name, value])

    def addTrusted(self, name: bytes, value: bytes) -> None:
        """
        L{add} without the check, for fields known to be valid (the proxy's
        own Via entry, added to every message).
        """
        self._fields.append([name.lower(), name, value])

    def set(self, name: bytes, value: bytes) -> None:
        """
        Replace every field called C{name} with one field, at the position of
        the first one (or at the end if there was none).

        @raise ValueError: as L{add}.
        """
        checkField(name, value)
        lower = name.lower()
        block = self._block
        if block is not None and not self._fields:
            # The usual case for Host: one field that already says so.
            lowered = self._lowered
            needle = b"\n" + lower + b":"
            position = lowered.find(needle)
            if position == -1:
                self._fields.append([lower, name, value])
                return
            if lowered.find(needle, position + 1) == -1:
                start = position + len(needle) - 1
                if block[start : block.find(b"\r", start)].strip(b" \t") == value:
                    return
        fields = self._materialize()
        for index, field in enumerate(fields):
            if field[0] == lower:
                field[2] = value
                fields[index + 1 :] = [f for f in fields[index + 1 :] if f[0] != lower]
                return
        fields.append([lower, name, value])

    def remove(self, name: bytes) -> bool:
        """
        Remove every field called C{name}.

        @return: whether any field was removed.
        """
        if name not in self:
            return False
        lower = name.lower()
        self._fields = [f for f in self._materialize() if f[0] != lower]
        return True

    def removeHopByHop(
        self,
        keep: frozenset[bytes] = frozenset(),
        connection: Optional[list[bytes]] = None,
    ) -> None:
        """
        Remove the hop-by-hop fields (RFC 9110 section 7.6.1): Connection,
        every field Connection names, and L{HOP_BY_HOP}.  Content-Length,
        Transfer-Encoding and Host stay even when Connection names them:
        the message was framed by them as received.

        @param keep: lowercase names to keep even so (C{b"upgrade"} while a
            protocol upgrade is being negotiated).
        @param connection: C{getTokens(b"connection")}, if the caller has
            it already.
        """
        for field in self._fields:
            if field[0] in HOP_BY_HOP:
                break
        else:
            block = self._block
            if block is None:
                return
            lowered = self._lowered
            found = HOP_BY_HOP_FIELDS._pattern.search(lowered)
            if found is None:
                # The common case on the per-request path: nothing to
                # remove.
                return
            if connection is None:
                connection = self.getTokens(b"connection")
            if not keep and _CONNECTION_OPTIONS.issuperset(connection):
                # Only fixed names to drop: cut their lines out of the
                # block without parsing the rest.  A match starts at the
                # LF before its line, which in the block (one byte
                # shorter) is where the line starts.
                pieces = []
                kept = 0
                search = HOP_BY_HOP_FIELDS._pattern.search
                while found is not None:
                    start = found.start()
                    pieces.append(block[kept:start])
                    kept = lowered.find(b"\n", start + 1)
                    found = search(lowered, kept)
                pieces.append(block[kept:])
                block = b"".join(pieces)
                self._block = block
                self._lowered = b"\n" + block.lower()
                return
        if connection is None:
            connection = self.getTokens(b"connection")
        drop = set(HOP_BY_HOP)
        drop.update(connection)
        drop.difference_update(keep)
        drop.difference_update(_NEVER_NOMINATED)
        self._fields = [f for f in self._materialize() if f[0] not in drop]

    def copy(self) -> "Headers":
        """
        @return: an independent copy.
        """
        headers = Headers._fromParsed([list(f) for f in self._fields])
        headers._block = self._block
        headers._lowered = self._lowered
        headers._received = self._received
        return headers

    def serialize(self) -> bytes:
        """
        @return: the fields as C{name: value\\r\\n} lines.
        """
        fields = self._fields
        block = self._block
        if block is not None:
            if not fields:
                return block
            if len(fields) == 1:
                # The usual case: Via appended to the received fields.
                field = fields[0]
                return b"".join((block, field[1], b": ", field[2], b"\r\n"))
        lines = [f[1] + b": " + f[2] + b"\r\n" for f in fields]
        if block is not None:
            lines.insert(0, block)
        return b"".join(lines)


class RequestHead:
    """
    A request's head, as received and as filters see it.

    @ivar method: the method token, e.g. C{b"GET"}.
    @ivar target: the request-target exactly as received.
    @ivar version: C{b"HTTP/1.1"} or C{b"HTTP/1.0"}.
    @ivar headers: the header fields.
    @ivar scheme: C{"http"}, C{"https"}, or C{None} for origin-form and
        authority-form (CONNECT) targets.
    @ivar host: the target host as text (IPv6 without brackets), or C{None}
        for origin-form targets.
    @ivar port: the target port.
    @ivar authority: the target's authority bytes, used as Host upstream.
    @ivar path: the origin-form target (path and query) to send upstream.
    @ivar clientAddress: C{(host, port)} of the client, or C{None}.
    @ivar user: the authenticated proxy user, if any (set by the C{auth}
        filter).
    @ivar credentials: the value of the C{Proxy-Authorization} field the
        client sent, kept here because the field itself is hop-by-hop and
        is removed before filters run; C{None} if there was none.
    """

    __slots__ = (
        "method",
        "target",
        "version",
        "headers",
        "scheme",
        "host",
        "port",
        "authority",
        "path",
        "clientAddress",
        "user",
        "credentials",
    )

    def __init__(
        self,
        method: bytes,
        target: bytes,
        version: bytes = b"HTTP/1.1",
        headers: Optional[Headers] = None,
    ) -> None:
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers if headers is not None else Headers()
        self.scheme: Optional[str] = None
        self.host: Optional[str] = None
        self.port = 0
        self.authority = b""
        self.path = target
        self.clientAddress: Optional[tuple[str, int]] = None
        self.user: Optional[str] = None
        self.credentials: Optional[bytes] = None

    def __repr__(self) -> str:
        return f"<RequestHead {self.method!r} {self.target!r} {self.version!r}>"

    def url(self) -> str:
        """
        @return: the target as text, for logs and error pages.
        """
        return self.target.decode("latin-1")

    def serialize(self) -> bytes:
        """
        @return: the head as sent upstream: origin-form target, HTTP/1.1.
        """
        return b"".join(
            (
                self.method,
                b" ",
                self.path,
                b" HTTP/1.1\r\n",
                self.headers.serialize(),
                b"\r\n",
            )
        )


class ResponseHead:
    """
    A response's head.

    @ivar status: the status code.
    @ivar reason: the reason phrase bytes (may be empty).
    @ivar version: the version the sender used.
    @ivar headers: the header fields.
    """

    __slots__ = ("status", "reason", "version", "headers")

    def __init__(
        self,
        status: int,
        reason: bytes = b"",
        headers: Optional[Headers] = None,
        version: bytes = b"HTTP/1.1",
    ) -> None:
        self.status = status
        self.reason = reason
        self.version = version
        self.headers = headers if headers is not None else Headers()

    def __repr__(self) -> str:
        return f"<ResponseHead {self.status} {self.reason!r}>"

    def serialize(self) -> bytes:
        """
        @return: the head as the proxy sends it (always as HTTP/1.1).
        """
        return b"".join(
            (
                b"HTTP/1.1 %d %s\r\n" % (self.status, self.reason),
                self.headers.serialize(),
                b"\r\n",
            )
        )


REASONS = {
    100: b"Continue",
    101: b"Switching Protocols",
    200: b"OK",
    204: b"No Content",
    304: b"Not Modified",
    400: b"Bad Request",
    403: b"Forbidden",
    404: b"Not Found",
    405: b"Method Not Allowed",
    407: b"Proxy Authentication Required",
    408: b"Request Timeout",
    413: b"Content Too Large",
    414: b"URI Too Long",
    417: b"Expectation Failed",
    429: b"Too Many Requests",
    431: b"Request Header Fields Too Large",
    500: b"Internal Server Error",
    501: b"Not Implemented",
    502: b"Bad Gateway",
    503: b"Service Unavailable",
    504: b"Gateway Timeout",
    505: b"HTTP Version Not Supported",
    508: b"Loop Detected",
}


class Response:
    """
    A complete response the proxy writes itself: an error page, a filter's
    answer, the status page.

    @ivar head: the response head.
    @ivar body: the whole body (short by construction).
    @ivar reason: why the proxy answered, for the access log.
    @ivar decider: the name of the filter that answered, if one did.
    """

    __slots__ = ("head", "body", "reason", "decider")

    def __init__(self, head: ResponseHead, body: bytes = b"", reason: str = "") -> None:
        self.head = head
        self.body = body
        self.reason = reason
        self.decider: Optional[str] = None

    def __repr__(self) -> str:
        return f"<Response {self.head.status} {self.reason!r}>"


def simpleResponse(
    status: int,
    body: bytes,
    contentType: bytes = b"text/plain; charset=utf-8",
    reason: str = "",
) -> Response:
    """
    Build a L{Response} with a body and its Content-Type.
    """
    head = ResponseHead(status, REASONS.get(status, b"Unknown"))
    head.headers.add(b"Content-Type", contentType)
    return Response(head, body, reason)


def errorResponse(status: int, reason: str, target: str = "") -> Response:
    """
    Build the proxy's short text/html error page.

    @param status: the status code.
    @param reason: the cause, in words a user can act on.
    @param target: the request target the error concerns, if known.
    """
    title = "%d %s" % (status, REASONS.get(status, b"Error").decode("ascii"))
    parts = [
        "<!DOCTYPE html>\n<html><head><title>",
        title,
        "</title></head><body><h1>",
        title,
        "</h1><p>",
        escape(reason),
        "</p>",
    ]
    if target:
        parts += ["<p>Target: <code>", escape(target), "</code></p>"]
    parts += ["<hr><address>", PRODUCT.decode("ascii"), "</address></body></html>\n"]
    response = simpleResponse(
        status,
        "".join(parts).encode("utf-8", "replace"),
        b"text/html; charset=utf-8",
        reason,
    )
    response.head.headers.add(b"Cache-Control", b"no-store")
    return response


def _headersDefect(headers: Any) -> Optional[str]:
    if not isinstance(headers, Headers):
        return f"headers is {type(headers).__name__}, not Headers"
    fields = headers._fields
    if fields:
        # Whole-list checks at C speed: a field holds no control character
        # exactly when the values joined hold none, and so for token names.
        try:
            names = [field[1] for field in fields]
            values = [field[2] for field in fields]
        except (TypeError, IndexError, KeyError):
            return "invalid header field list"
        kinds = set(map(type, names))
        kinds.update(map(type, values))
        if kinds != {bytes}:
            return "header field names and values must be bytes"
        if not all(names) or b"".join(names).translate(None, TOKEN_CHARS):
            return "a header field name is not a token"
        if not isFieldValue(b"".join(values)):
            return "a header field value holds a control character (CR, LF, NUL...)"
    if headers._block is not None and type(headers._block) is not bytes:
        return "invalid header block"
    return None


def _responseHeadDefect(head: Any) -> Optional[str]:
    if not isinstance(head, ResponseHead):
        return f"a Response whose head is {type(head).__name__}"
    status = head.status
    if (
        not isinstance(status, int)
        or isinstance(status, bool)
        or not 100 <= status <= 599
    ):
        return f"status {status!r:.40} is not a number from 100 to 599"
    reason = head.reason
    if type(reason) is not bytes or not isFieldValue(reason):
        return f"reason phrase {reason!r:.80} is not bytes free of control characters"
    if type(head.version) is not bytes:
        return "version is not bytes"
    return _headersDefect(head.headers)


def messageDefect(message: Any) -> Optional[str]:
    """
    Check the structure of a message a filter that is not built in returned
    or changed in place: the types the proxy relies on, and nothing that
    would add lines to a head (a CR or LF in a reason phrase or a field
    added behind L{Headers.add}'s back).  Targets and methods of requests
    are checked where they are forwarded.

    @return: what is wrong, or C{None}.
    """
    if isinstance(message, RequestHead):
        if type(message.method) is not bytes or type(message.version) is not bytes:
            return "method and version must be bytes"
        if type(message.target) is not bytes or type(message.path) is not bytes:
            return "target and path must be bytes"
        if type(message.authority) is not bytes:
            return "authority must be bytes"
        if message.host is not None and type(message.host) is not str:
            return "host must be str or None"
        if message.user is not None and type(message.user) is not str:
            return "user must be str or None"
        if message.scheme not in (None, "http", "https"):
            return f"scheme {message.scheme!r:.40} is not None, 'http' or 'https'"
        if type(message.port) is not int or not 0 <= message.port <= 65535:
            return f"port {message.port!r:.40} is not a number from 0 to 65535"
        return _headersDefect(message.headers)
    if isinstance(message, ResponseHead):
        return _responseHeadDefect(message)
    if isinstance(message, Response):
        why = _responseHeadDefect(message.head)
        if why is not None:
            return why
        if message.head.status < 200:
            return f"an answer with the interim status {message.head.status}"
        if type(message.body) is not bytes:
            return f"body is {type(message.body).__name__}, not bytes"
        if type(message.reason) is not str:
            return "reason (for the access log) is not str"
        return None
    return None
