# -*- test-case-name: tests.integration -*-
"""
A deliberately simple, byte-exact HTTP/1.1 origin server for the integration
tests.

It is built on a raw L{Protocol} instead of C{twisted.web} because the tests
need exact control over framing: they ask it for malformed responses, for
bodies delimited by closing the connection, for interim responses, and they
ask it to echo the request head byte for byte so that they can see exactly
what the proxy forwarded.

Run it as a script::

    python tests/integration/origin.py [--tls CERT KEY] [--interface ::1] --port 0

It prints C{PORT <n>} as the first (and only) line on standard output once it
is listening; everything else goes to standard error.

Every response carries C{X-Conn: <n>}, the number of the connection it was
sent on (counting from 1), so tests can see upstream connection reuse.
C{GET /stats} reports counters (see L{OriginProtocol._stats}); its own
connections and requests are left out of them.

Routes (path prefix, query parameters)::

    /echo...              200, body = request head as received + request body
    /bytes?n=N            N pattern bytes, Content-Length, streamed
      [&stall-at=K&stall=S]   (any of the three) after the first K bytes,
                          send nothing for S seconds
    /chunked?n=N          same, chunked
    /close?n=N            same, delimited by closing the connection
    /upload?rate=R        reads the body at R bytes/s, answers count and sha256
    /status/N[?cl=K]      status N (1xx: interim then 200; 204/304: no body)
    /expect               sends 100 Continue, then reads the body
    /expect-reject        417 without reading the body, then closes
    /ws                   101 Switching Protocols, then echoes raw bytes
    /hop                  a response full of hop-by-hop fields
    /bad/KIND             a malformed response (see L{BAD_RESPONSES})
    /slow-head?delay=S    waits S seconds before the response head
    /hang                 never answers
    /drop                 closes the connection without answering
    /interims             102 Processing heads without end, as fast as read
    /stats                JSON counters

Any request may add C{linger-close=S} (close the connection S seconds after
the response), C{close-corked=1} (close right behind the response, without
saying so, its last bytes and the end of file in one segment: C{TCP_CORK}
holds the response until the close) or C{drop-next=1} (the next request on
this connection is read and then the connection is closed without an
answer).
"""

from __future__ import annotations

import hashlib
import json
import socket
import sys
from typing import Dict, List, Optional, Tuple
from urllib.parse import parse_qs

from zope.interface import implementer

from twisted.internet.interfaces import IHalfCloseableProtocol, IPullProducer
from twisted.internet.protocol import Factory, Protocol

# The body pattern: a block whose length is prime, so that it never lines up
# with buffer sizes, repeated.  Byte i of every body is PATTERN_BLOCK[i % PERIOD].
PERIOD = 65521
PATTERN_BLOCK = bytes(((i * 131) ^ (i >> 8) ^ (i >> 3)) & 0xFF for i in range(PERIOD))
_PATTERN_TRIPLE = PATTERN_BLOCK * 3


def pattern(offset: int, size: int) -> bytes:
    """
    @return: C{size} bytes of the deterministic body pattern starting at
        C{offset}.
    """
    out = []
    while size > 0:
        start = offset % PERIOD
        n = min(size, 2 * PERIOD)
        out.append(_PATTERN_TRIPLE[start : start + n])
        offset += n
        size -= n
    return b"".join(out)


def patternDigest(n: int) -> str:
    """
    @return: the hex sha256 of the first C{n} pattern bytes.
    """
    h = hashlib.sha256()
    step = 1 << 20
    for offset in range(0, n, step):
        h.update(pattern(offset, min(step, n - offset)))
    return h.hexdigest()


BAD_RESPONSES: Dict[str, bytes] = {
    "cl-te": (
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n"
        b"X-Conn: %(conn)s\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    ),
    "chunk-size": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Conn: %(conn)s\r\n\r\n"
        b"zz\r\nhello\r\n0\r\n\r\n"
    ),
    "chunk-overflow": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Conn: %(conn)s\r\n\r\n"
        b"fffffffffffffffffffffffffffff\r\nhello\r\n0\r\n\r\n"
    ),
    "obs-fold": (
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Folded: a\r\n b\r\n"
        b"X-Conn: %(conn)s\r\n\r\nhello"
    ),
    "bare-cr": (
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Bad: a\rb\r\n"
        b"X-Conn: %(conn)s\r\n\r\nhello"
    ),
    "dup-cl": (
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n"
        b"X-Conn: %(conn)s\r\n\r\nhello!"
    ),
    "bad-cl": (
        b"HTTP/1.1 200 OK\r\nContent-Length: 5x\r\nX-Conn: %(conn)s\r\n\r\nhello"
    ),
    "space-colon": (
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Bad : a\r\n"
        b"X-Conn: %(conn)s\r\n\r\nhello"
    ),
    "nul": (
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Bad: a\x00b\r\n"
        b"X-Conn: %(conn)s\r\n\r\nhello"
    ),
    "status-line": b"HTTP/1.1 2x0 OK\r\nContent-Length: 5\r\nX-Conn: %(conn)s\r\n\r\nhello",
    "te-gzip": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nX-Conn: %(conn)s\r\n\r\nhello"
    ),
}

REASONS = {
    100: b"Continue",
    101: b"Switching Protocols",
    103: b"Early Hints",
    200: b"OK",
    204: b"No Content",
    304: b"Not Modified",
    400: b"Bad Request",
    404: b"Not Found",
    417: b"Expectation Failed",
    426: b"Upgrade Required",
}


class OriginStats:
    """
    Counters shared by all connections of one origin process.

    @ivar opened: connections accepted so far; also the last connection number.
    @ivar open: connections open now.
    @ivar requests: request heads parsed (not counting C{/stats}).
    @ivar paths: connection number -> request targets seen on it.
    @ivar bytesIn: connection number -> bytes received on it.
    @ivar statsConns: numbers of connections that asked for C{/stats}.
    @ivar openConns: numbers of the connections open now.
    @ivar interimBytes: bytes of C{/interims} responses written so far.
    """

    def __init__(self) -> None:
        self.opened = 0
        self.requests = 0
        self.paths: Dict[int, List[str]] = {}
        self.bytesIn: Dict[int, int] = {}
        self.statsConns: set = set()
        self.openConns: set = set()
        self.interimBytes = 0


@implementer(IPullProducer)
class PatternProducer:
    """
    Writes C{n} pattern bytes to a transport, one slice each time the transport
    asks for more, so that a 200 MiB body never sits in memory.

    @ivar framing: C{b"length"}, C{b"chunked"} or C{b"close"}.
    """

    slice = 256 * 1024

    def __init__(
        self,
        proto: "OriginProtocol",
        n: int,
        framing: bytes,
        stallAt: Optional[int] = None,
        stall: float = 0.0,
    ) -> None:
        self.proto = proto
        self.remaining = n
        self.offset = 0
        self.framing = framing
        self.stallAt = stallAt
        self.stall = stall

    def resumeProducing(self) -> None:
        transport = self.proto.transport
        if transport is None or self.proto.disconnected:
            return
        if self.remaining <= 0:
            return
        stallAt = self.stallAt
        if stallAt is not None and self.offset >= stallAt:
            # Nothing more for a while: the transport asks again only
            # once the producer is registered again.
            self.stallAt = None
            transport.unregisterProducer()
            self.proto.later(self.stall, self._unstall)
            return
        n = min(self.slice, self.remaining)
        if stallAt is not None:
            n = min(n, stallAt - self.offset)
        data = pattern(self.offset, n)
        self.offset += n
        self.remaining -= n
        if self.framing == b"chunked":
            transport.writeSequence([b"%x\r\n" % n, data, b"\r\n"])
        else:
            transport.write(data)
        if self.remaining <= 0:
            if self.framing == b"chunked":
                transport.write(b"0\r\n\r\n")
            transport.unregisterProducer()
            self.proto.responseDone(close=self.framing == b"close")

    def _unstall(self) -> None:
        transport = self.proto.transport
        if transport is not None and not self.proto.disconnected:
            transport.registerProducer(self, False)

    def stopProducing(self) -> None:
        self.remaining = 0


@implementer(IPullProducer)
class InterimProducer:
    """
    Writes 102 Processing heads, 64 KiB of them each time the transport asks
    for more, until the connection closes.
    """

    HEAD = b"HTTP/1.1 102 Processing\r\nX-Pad: " + b"p" * 100 + b"\r\n\r\n"
    BATCH = HEAD * (64 * 1024 // len(HEAD))

    def __init__(self, proto: "OriginProtocol") -> None:
        self.proto = proto

    def resumeProducing(self) -> None:
        if self.proto.transport is None or self.proto.disconnected:
            return
        self.proto.transport.write(self.BATCH)
        self.proto.factory.stats.interimBytes += len(self.BATCH)

    def stopProducing(self) -> None:
        pass


class Request:
    """
    One request as the origin received it.

    @ivar rawHead: the request line and header lines exactly as received,
        including the final empty line.
    """

    def __init__(self, rawHead: bytes) -> None:
        self.rawHead = rawHead
        lines = rawHead[:-4].split(b"\r\n")
        parts = lines[0].split(b" ")
        if len(parts) != 3:
            raise ValueError("bad request line")
        self.method, self.target, self.version = parts
        self.headers: List[Tuple[bytes, bytes]] = []
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            self.headers.append((name.strip().lower(), value.strip()))
        path, _, query = self.target.partition(b"?")
        self.path = path.decode("latin-1")
        self.query = {k: v[0] for k, v in parse_qs(query.decode("latin-1")).items()}
        self.body = bytearray()

    def header(self, name: bytes) -> Optional[bytes]:
        for n, v in self.headers:
            if n == name:
                return v
        return None

    def tokens(self, name: bytes) -> List[bytes]:
        out = []
        for n, v in self.headers:
            if n == name:
                out.extend(t.strip().lower() for t in v.split(b","))
        return out

    def wantsClose(self) -> bool:
        connection = self.tokens(b"connection")
        if b"close" in connection:
            return True
        return self.version == b"HTTP/1.0" and b"keep-alive" not in connection


@implementer(IHalfCloseableProtocol)
class OriginProtocol(Protocol):
    """
    Serves one connection; requests are handled strictly one after another,
    bytes of later (pipelined) requests wait in C{buf}.
    """

    def connectionMade(self) -> None:
        stats: OriginStats = self.factory.stats
        stats.opened += 1
        self.connNo = stats.opened
        stats.openConns.add(self.connNo)
        stats.paths[self.connNo] = []
        stats.bytesIn[self.connNo] = 0
        self.buf = bytearray()
        self.state = "head"
        self.req: Optional[Request] = None
        self.disconnected = False
        self.readEOF = False
        self.dropNext = False
        self.tunnel = False
        self.chunkState: Optional[str] = None
        self.chunkLeft = 0
        self.bodyLeft = 0
        self.upload: Optional[dict] = None
        self.paused = False
        self.delayed: list = []

    # connection events

    def dataReceived(self, data: bytes) -> None:
        self.factory.stats.bytesIn[self.connNo] += len(data)
        if self.tunnel:
            self.transport.write(data)
            return
        self.buf += data
        self.process()

    def readConnectionLost(self) -> None:
        self.readEOF = True
        if self.tunnel or self.state == "head" and not self.buf:
            self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        self.transport.loseConnection()

    def connectionLost(self, reason=None) -> None:
        self.disconnected = True
        self.factory.stats.openConns.discard(self.connNo)
        for call in self.delayed:
            if call.active():
                call.cancel()

    def later(self, seconds: float, f, *a) -> None:
        from twisted.internet import reactor

        self.delayed.append(reactor.callLater(seconds, f, *a))

    # request parsing

    def process(self) -> None:
        while not self.disconnected and not self.paused:
            if self.state == "head":
                end = self.buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(self.buf) > 1 << 20:
                        self.simple(400, b"head too large\n", close=True)
                    return
                raw = bytes(self.buf[: end + 4])
                del self.buf[: end + 4]
                try:
                    self.req = Request(raw)
                except ValueError:
                    self.simple(400, b"bad request line\n", close=True)
                    return
                if not self.startRequest():
                    return
            elif self.state == "body":
                if not self.readBody():
                    return
            else:
                # "respond": a response is being produced; later bytes wait.
                return

    def startRequest(self) -> bool:
        """
        Account for a new request head, pick its body framing and run the
        handlers that act before the body.

        @return: whether C{process} should go on.
        """
        req = self.req
        stats: OriginStats = self.factory.stats
        if req.path == "/stats":
            stats.statsConns.add(self.connNo)
        else:
            stats.requests += 1
            stats.paths[self.connNo].append(req.target.decode("latin-1"))
        if self.dropNext:
            self.transport.loseConnection()
            self.disconnected = True
            return False
        te = req.tokens(b"transfer-encoding")
        cl = req.header(b"content-length")
        self.chunkState = None
        self.bodyLeft = 0
        if te and te[-1] == b"chunked":
            self.chunkState = "size"
        elif cl is not None:
            try:
                self.bodyLeft = int(cl)
            except ValueError:
                self.simple(400, b"bad content-length\n", close=True)
                return False
        self.state = "body"
        path = req.path
        if path == "/expect-reject":
            self.simple(417, b"rejected\n", close=True)
            return False
        if path == "/expect" and b"100-continue" in req.tokens(b"expect"):
            self.transport.write(b"HTTP/1.1 100 Continue\r\nX-Origin-100: yes\r\n\r\n")
        if path == "/ws":
            if b"websocket" not in req.tokens(b"upgrade"):
                self.simple(426, b"upgrade required\n", close=True)
                return False
            self.transport.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nX-Conn: %d\r\n\r\n" % self.connNo
            )
            self.tunnel = True
            self.state = "tunnel"
            if self.buf:
                self.transport.write(bytes(self.buf))
                del self.buf[:]
            return False
        if path == "/upload":
            from twisted.internet import reactor

            self.upload = {
                "rate": float(req.query.get("rate", "1e12")),
                "count": 0,
                "hash": hashlib.sha256(),
                "start": reactor.seconds(),
            }
        return True

    def bodyData(self, data: bytes) -> None:
        if self.upload is not None:
            self.upload["count"] += len(data)
            self.upload["hash"].update(data)
        else:
            self.req.body += data

    def readBody(self) -> bool:
        """
        Consume body bytes from C{buf}.

        @return: whether C{process} should go on.
        """
        if self.chunkState is None:
            n = min(self.bodyLeft, len(self.buf))
            if n:
                self.bodyData(bytes(self.buf[:n]))
                del self.buf[:n]
                self.bodyLeft -= n
            if self.bodyLeft:
                self.throttle()
                return False
        else:
            while self.chunkState != "done":
                if self.chunkState == "size":
                    end = self.buf.find(b"\r\n")
                    if end < 0:
                        return False
                    line = bytes(self.buf[:end]).split(b";")[0].strip()
                    del self.buf[: end + 2]
                    try:
                        self.chunkLeft = int(line, 16)
                    except ValueError:
                        self.simple(400, b"bad chunk\n", close=True)
                        return False
                    self.chunkState = "data" if self.chunkLeft else "trailer"
                elif self.chunkState == "data":
                    n = min(self.chunkLeft, len(self.buf))
                    if n:
                        self.bodyData(bytes(self.buf[:n]))
                        del self.buf[:n]
                        self.chunkLeft -= n
                    if self.chunkLeft:
                        self.throttle()
                        return False
                    self.chunkState = "crlf"
                elif self.chunkState == "crlf":
                    if len(self.buf) < 2:
                        return False
                    del self.buf[:2]
                    self.chunkState = "size"
                elif self.chunkState == "trailer":
                    end = self.buf.find(b"\r\n")
                    if end < 0:
                        return False
                    del self.buf[: end + 2]
                    if end == 0:
                        self.chunkState = "done"
        self.state = "respond"
        self.respond()
        return True

    def throttle(self) -> None:
        """
        For C{/upload}: stop reading from the transport while we are ahead
        of the requested rate.
        """
        if self.upload is None:
            return
        from twisted.internet import reactor

        up = self.upload
        due = up["start"] + up["count"] / up["rate"]
        wait = due - reactor.seconds()
        if wait > 0.005 and not self.paused:
            self.paused = True
            self.transport.pauseProducing()
            self.later(wait, self.unthrottle)

    def unthrottle(self) -> None:
        self.paused = False
        if not self.disconnected:
            self.transport.resumeProducing()
            self.process()

    # responses

    def head(self, status: int, headers: List[Tuple[bytes, bytes]]) -> bytes:
        reason = REASONS.get(status, b"Status")
        lines = [b"HTTP/1.1 %d %s" % (status, reason)]
        lines.extend(b"%s: %s" % (n, v) for n, v in headers)
        lines.append(b"X-Conn: %d" % self.connNo)
        return b"\r\n".join(lines) + b"\r\n\r\n"

    def simple(
        self,
        status: int,
        body: bytes,
        close: bool = False,
        extra: Optional[List[Tuple[bytes, bytes]]] = None,
    ) -> None:
        headers = [(b"Content-Length", b"%d" % len(body))]
        headers.extend(extra or [])
        if close:
            headers.append((b"Connection", b"close"))
        self.state = "respond"
        out = self.head(status, headers)
        if self.req is None or self.req.method != b"HEAD":
            out += body
        self.transport.write(out)
        self.responseDone(close=close)

    def respond(self) -> None:
        req = self.req
        path = req.path
        q = req.query
        isHead = req.method == b"HEAD"
        if q.get("drop-next"):
            self.dropNext = True
        if q.get("close-corked"):
            self.transport.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
        if path.startswith("/echo"):
            self.simple(
                200,
                req.rawHead + bytes(req.body),
                extra=[(b"Content-Type", b"application/octet-stream")],
            )
        elif path in ("/bytes", "/chunked", "/close"):
            n = int(q.get("n", "0"))
            framing = {"/bytes": b"length", "/chunked": b"chunked", "/close": b"close"}[
                path
            ]
            if framing == b"length":
                headers = [(b"Content-Length", b"%d" % n)]
            elif framing == b"chunked":
                headers = [(b"Transfer-Encoding", b"chunked")]
            else:
                headers = []
            self.transport.write(self.head(200, headers))
            if isHead:
                self.responseDone()
            elif n == 0 and framing != b"chunked":
                self.responseDone(close=framing == b"close")
            else:
                stallAt = q.get("stall-at")
                self.transport.registerProducer(
                    PatternProducer(
                        self,
                        n,
                        framing,
                        None if stallAt is None else int(stallAt),
                        float(q.get("stall", "0")),
                    ),
                    False,
                )
        elif path == "/upload":
            up = self.upload
            self.upload = None
            body = json.dumps(
                {"count": up["count"], "sha256": up["hash"].hexdigest()}
            ).encode()
            self.simple(200, body, extra=[(b"Content-Type", b"application/json")])
        elif path.startswith("/status/"):
            status = int(path[len("/status/") :])
            if 100 <= status < 200:
                self.transport.write(
                    b"HTTP/1.1 %d %s\r\nX-Interim: %d\r\n\r\n"
                    % (status, REASONS.get(status, b"Info"), self.connNo)
                )
                self.simple(200, b"final\n")
            elif status in (204, 304):
                headers = []
                if "cl" in q:
                    headers.append((b"Content-Length", q["cl"].encode()))
                self.transport.write(self.head(status, headers))
                self.responseDone()
            else:
                self.simple(status, b"status %d\n" % status)
        elif path == "/expect":
            self.simple(200, b"received %d\n" % len(req.body))
        elif path == "/hop":
            self.simple(
                200,
                b"hop\n",
                extra=[
                    (b"Connection", b"X-Secret, keep-alive"),
                    (b"X-Secret", b"1"),
                    (b"Keep-Alive", b"timeout=5"),
                    (b"Proxy-Connection", b"keep-alive"),
                    (b"Upgrade", b"foo/1"),
                    (b"TE", b"trailers"),
                    (b"X-Kept", b"yes"),
                ],
            )
        elif path.startswith("/bad/"):
            kind = path[len("/bad/") :]
            raw = BAD_RESPONSES.get(kind)
            if raw is None:
                self.simple(404, b"no such bad kind\n")
                return
            self.transport.write(raw % {b"conn": b"%d" % self.connNo})
            # Stay open: a proxy that puts this connection back in its pool
            # would be caught by the test's next request.
            self.responseDone()
        elif path == "/slow-head":
            delay = float(q.get("delay", "1"))
            self.later(delay, self.simple, 200, b"slow\n")
        elif path == "/hang":
            pass
        elif path == "/stall":
            # Half of the announced body, then nothing more, ever.
            n = int(q.get("n", "100"))
            self.transport.write(
                self.head(200, [(b"Content-Length", b"%d" % (2 * n))]) + b"s" * n
            )
        elif path == "/interims":
            self.transport.registerProducer(InterimProducer(self), False)
        elif path == "/drop":
            self.transport.loseConnection()
            self.disconnected = True
        elif path == "/stats":
            stats: OriginStats = self.factory.stats
            mine = stats.statsConns
            body = json.dumps(
                {
                    "connections": stats.opened - len(mine),
                    "open": len(stats.openConns - mine),
                    "requests": stats.requests,
                    "paths": {
                        str(k): v for k, v in stats.paths.items() if k not in mine
                    },
                    "bytes": {
                        str(k): v for k, v in stats.bytesIn.items() if k not in mine
                    },
                    "interim_bytes": stats.interimBytes,
                }
            ).encode()
            self.simple(200, body, extra=[(b"Content-Type", b"application/json")])
        elif path == "/":
            self.simple(200, b"origin\n")
        else:
            self.simple(404, b"not found\n")

    def responseDone(self, close: bool = False) -> None:
        """
        The current response is completely written: close or go on with the
        next (possibly already buffered) request.
        """
        if self.disconnected:
            return
        req = self.req
        if close or (req is not None and req.wantsClose()):
            self.transport.loseConnection()
            self.disconnected = True
            return
        if req is not None and req.query.get("close-corked"):
            self.transport.loseConnection()
            self.disconnected = True
            return
        if req is not None and "linger-close" in req.query:
            self.later(float(req.query["linger-close"]), self.transport.loseConnection)
        self.state = "head"
        self.req = None
        if self.readEOF and not self.buf:
            self.transport.loseConnection()
            return
        from twisted.internet import reactor

        # Not re-entrantly: responseDone may be called from inside process().
        reactor.callLater(0, self.process)


class OriginFactory(Factory):
    protocol = OriginProtocol

    def __init__(self) -> None:
        self.stats = OriginStats()


def main(argv: List[str]) -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--interface", default="127.0.0.1")
    parser.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    args = parser.parse_args(argv)

    from twisted.internet import reactor

    factory = OriginFactory()
    if args.tls:
        from twisted.internet import ssl

        with open(args.tls[0], "rb") as c, open(args.tls[1], "rb") as k:
            cert = ssl.PrivateCertificate.loadPEM(c.read() + b"\n" + k.read())
        # Offer ALPN explicitly: without it some Twisted/pyOpenSSL versions
        # answer a client's ALPN extension with an internal-error alert.
        options = ssl.CertificateOptions(
            privateKey=cert.privateKey.original,
            certificate=cert.original,
            acceptableProtocols=[b"http/1.1"],
        )
        port = reactor.listenSSL(args.port, factory, options, interface=args.interface)
    else:
        port = reactor.listenTCP(args.port, factory, interface=args.interface)
    sys.stdout.write("PORT %d\n" % port.getHost().port)
    sys.stdout.flush()
    reactor.run()


if __name__ == "__main__":
    main(sys.argv[1:])
