# -*- test-case-name: tests.test_fastio -*-
"""
Faster socket I/O for the proxy's TCP connections and for the epoll
reactor: the one module that relies on Twisted internals.

Why (numbers in shared/PERFORMANCE.md): Twisted's C{write()} only buffers
and sends on the next reactor turn, which costs two extra C{epoll_ctl}
calls and a dispatch per write (Twisted ticket #5303 asks for sending at
once upstream); the reactor wraps every I/O event in a logging context
(C{log.callWithLogger}); and reads are 64 KiB at a time, which bulk
transfers outgrow.  Here:

  - L{accelerate} switches a connected C{tcp.Server} or C{tcp.Client} to a
    subclass that sends at once when nothing is buffered (falling back to
    Twisted's buffering for the rest), reads up to L{MAX_READ_SIZE} bytes
    at a time on bulk streams, and sets C{TCP_NODELAY} (required together with sending at once,
    or small writes wait for delayed ACKs);
  - a fast transport's C{expect} lets its protocol say how many bytes of
    a body are still to come; on a fast stream the transport then raises
    its receive low-water mark so that it wakes up once per half megabyte
    or so instead of at every arriving segment (see L{BULK_READ});
  - L{acceleratePolling} replaces an C{EPollReactor}'s C{doIteration} with
    the same loop minus the per-event logging context, calling C{doRead}
    itself for a plain read event (exceptions are logged and disconnect,
    as in C{_doReadOrWrite}, which handles every other event).

Both check that the attributes they rely on exist and do nothing
otherwise, so a Twisted upgrade that changes them costs speed, not
correctness; C{tests/test_fastio.py} fails loudly in that case.  Checked
with Twisted 24.7 to 26.10.
"""

from __future__ import annotations

import errno
import os
import re
import select
import socket
import sys
from typing import Any, Iterable, Optional, Union

from twisted.internet import endpoints, tcp
from twisted.python import log

READ_SIZE = 64 * 1024
"""
Bytes asked of C{recv} per read at first, as Twisted does.  A read that
fills the buffer quadruples the next one, up to L{MAX_READ_SIZE}: bulk
streams then cost a quarter or a sixteenth of the reads, while small
requests never pay for allocating a large buffer per C{recv}.  Twisted's
C{bufferSize} stays the write high-water mark for backpressure.

On loopback the proxy keeps up with nginx and reads each 1 MiB response
in 8-12 reads of what has arrived.  A receive low-water mark sized to the
whole rest of a body made that 6, with throughput unchanged within the
noise; capped at 512 KiB, it makes it about 4 and is faster (see
L{BULK_READ}).
"""

MAX_READ_SIZE = 1024 * 1024

BULK_READ = READ_SIZE
"""
A read at least this large enters I{bulk mode} when the protocol then
says (C{expect}) that more bytes of a body are to come: the socket's
receive low-water mark (C{SO_RCVLOWAT}) is raised to what is still to
come, at most L{BULK_LOWAT} or a quarter of the receive buffer
(L{markFor}), so that epoll reports the socket once that much waits.  A
read this large means the bytes arrive faster than the reactor takes
them, so waiting for more costs nothing, and each wake-up of this CPU by
the sender's is an inter-processor interrupt, which a virtual machine
makes costly; each read and send then moves half a megabyte.

A mark never exceeds what the protocol expects, so a body's last bytes
never wait for bytes that will not come.  An origin that slows down or
pauses mid-body would leave bytes below the mark: a check every
L{BULK_CHECK} seconds, shared by all transports in bulk mode, lowers the
mark of one that read nothing since the previous check (Linux reports
the socket readable at once if bytes wait), so such bytes wait about
twice L{BULK_CHECK} at most.  Reading paused for backpressure leaves the
mode the same way.  A stream that fills the mark more slowly than the
checks come (under about 250-500 MB/s) leaves the mode and enters it
again and again: its bytes then come in batches at most about 2 ms apart.

Measured on a 2-CPU AMD EPYC VM with C{bench/run.py}'s setup (proxy on
CPU 0; nginx and wrk on CPU 1; 1 MiB responses at c=10, where the
proxy's CPU is the bottleneck), in paired 5 s runs alternating with the
proxy before bulk mode: reads per response fell from 8.2 to 4.3 and
C{epoll_wait} calls from 6.1 to 2.4, and requests per second rose by
3-13 % (medians of 6-8 pairs, in three sets: 1,627 against 1,443; 1,408
against 1,280; 1,407 against 1,370, the host noisier then).  A 1 MiB
mark was slower than the proxy before (1,116); the tunnel relay
(L{proxyapp.relay}) found 512 KiB best too.  One 100 MiB download takes
half as many reads (664 against 1,511 for five) and 14 % less CPU per GB
(0.51 against 0.60 s, 21 paired downloads; MB/s 0.95x against 0.93x
direct).
"""

BULK_LOWAT = 512 * 1024
"""
Most bytes a bulk-mode socket waits for per wake-up.
"""

BULK_MIN_MARK = 128 * 1024
"""
Smallest mark that enters bulk mode: a socket whose receive buffer is
under four times this, even after L{BULK_GROW}, reads eagerly.
"""

BULK_GROW = 4 * BULK_LOWAT
"""
A mark set for a moment, once per connection, when a large read finds
the receive buffer too small for the mark it wants: Linux (4.18 and
later) then grows the buffer to hold this many bytes of payload, without
locking its size as C{SO_RCVBUF} would, so autotuning goes on.

Autotuning alone can leave a fast stream's buffer small for hundreds of
megabytes.  It grows a buffer by what the reader took within one round
trip, which on loopback lasts microseconds, while a small buffer keeps
each read small.  A new connection's buffer starts at 128 KiB
(C{tcp_rmem}).  Measured with C{bench/run.py}'s setup, the first 100 MiB
download on a new upstream connection ran at 670-1,027 MB/s and 0.9-1.5
s of CPU per GB in 8 fresh proxies out of 9, its buffer at 361-956 KiB,
and stayed that slow for up to three downloads; once the buffer had
grown, downloads ran at 1,200-2,200 MB/s and 0.3-0.6 s/GB.  With this growth,
none of 54 downloads in 9 fresh proxies ran below 1,234 MB/s or above
0.62 s/GB, the first of each included.  The buffer is an upper bound,
not an allocation: what it costs is what waits in it while reading is
paused for backpressure, as with any grown buffer.
"""

QUICK_ACK_READ = BULK_READ
"""
After a read at least this large, the socket is asked to acknowledge at
once (C{TCP_QUICKACK}) rather than delay its acknowledgements.

Linux delays acknowledgements on a connection that looks interactive,
which an upstream connection does (the proxy sends a request, then the
response comes): the delayed-acknowledgement timeout there is 40 ms.  The
origin's congestion control measures its delivery rate from those
acknowledgements, and BBR, the default on these VMs, paces each
connection at that rate.  Measured with C{bench/run.py}'s setup (1 MiB
GETs at c=10; C{ss -ti} on nginx's side of the proxy's connections, 3
paired 5 s runs): without quick acknowledgements the slowest of nginx's
connections were paced at 0.5-2.2 Gbit/s, at which one response takes
4-17 ms, and the p99 was 14.3-18.0 ms; with them the slowest were paced at
2.2-13.5 Gbit/s and the p99 was 7.7-8.7 ms, at 1,909-2,014 against
1,598-1,860 requests per second.  In 6 more pairs the p99 was 7.2-9.9 ms
against 12.4-22.5 ms, with requests per second 0.90-1.25x (median about
1.05x).  One 100 MiB download, 12 rounds through one proxy: 1,791 against
1,916 MB/s and 0.431 against 0.412 s of CPU per GB, within the noise.
Small reads (all of a small request's or response's) are left alone: one
system call each would cost more than it saves.
"""

BULK_CHECK = 0.001
"""
Seconds between the checks that end bulk mode for a socket that read
nothing since the previous one.
"""

_MAX_GATHER = 64
"""
Most pieces one gathering send takes; more are joined first (Linux takes
up to 1,024, and so many small pieces are cheaper joined).
"""

Buffer = Union[bytes, memoryview]

_RETRY = frozenset([errno.EWOULDBLOCK, errno.EAGAIN, errno.ENOBUFS, errno.EINTR])

# Attributes of a connected TCP transport that the subclasses rely on.
_TRANSPORT_ATTRIBUTES = (
    "dataBuffer",
    "offset",
    "_tempDataBuffer",
    "_tempDataLen",
    "_writeDisconnected",
    "_aborting",
    "socket",
    "producer",
    "streamingProducer",
    "producerPaused",
    "bufferSize",
)


class _FastConnectionMixin:
    """
    Send-at-once writes and large reads for a TCP transport.
    """

    dataBuffer: bytes
    _tempDataBuffer: list[bytes]
    offset: int
    _tempDataLen: int
    _writeDisconnected: bool
    _aborting: bool
    connected: int
    socket: Any
    producer: Any
    streamingProducer: bool
    producerPaused: bool
    bufferSize: int

    def _idle(self) -> bool:
        """
        @return: whether nothing is buffered and the connection takes
            writes, so that a write can go to the kernel at once.
        """
        return (
            self._tempDataLen == 0
            and self.offset == len(self.dataBuffer)
            and self.connected != 0
            and not self._writeDisconnected
            and not self._aborting
        )

    def _keep(self, piece: Buffer, sent: int, rest: list[Buffer]) -> None:
        """
        Buffer what the kernel did not take of a write into an empty buffer
        without copying it: the partly sent C{piece} becomes Twisted's
        buffer in place (slicing off its rest would copy up to a whole read,
        1 MiB), with the later pieces queued behind it unjoined.  Views
        are fine there: Twisted's C{doWrite} sends from its buffer through
        a C{memoryview} and joins queued pieces with C{bytes.join}.
        """
        self.dataBuffer = piece  # type: ignore[assignment]
        self.offset = sent
        if rest:
            self._tempDataBuffer = rest  # type: ignore[assignment]
            self._tempDataLen = sum(map(len, rest))
        # What _maybePauseProducer does, counting only the unsent bytes (it
        # counts the whole buffer, which here includes what was sent).
        producer = self.producer
        if (
            producer is not None
            and self.streamingProducer
            and len(piece) - sent + self._tempDataLen > self.bufferSize
        ):
            self.producerPaused = True
            producer.pauseProducing()
        self.startWriting()  # type: ignore[attr-defined]

    def write(self, data: bytes) -> None:
        # _idle, inline: this is every response's path.
        if (
            self._tempDataLen == 0
            and self.offset == len(self.dataBuffer)
            and type(data) is bytes
            and data
            and self.connected
            and not self._writeDisconnected
            and not self._aborting
        ):
            try:
                sent = self.socket.send(data)
            except OSError as e:
                if e.args[0] not in _RETRY:
                    # Let Twisted's write path find and report the error.
                    return super().write(data)  # type: ignore[misc]
                sent = 0
            if sent < len(data):
                self._keep(data, sent, [])
            return
        super().write(data)  # type: ignore[misc]

    def writeSequence(self, iovec: Iterable[Buffer]) -> None:
        """
        Send the pieces with one gathering C{sendmsg} when nothing is
        buffered, and buffer the rest without joining it.  Unlike Twisted's,
        this takes C{memoryview}s as well as C{bytes}, so a body that shares
        a read with its head goes out without being copied (see L{gathers}).
        """
        pieces = [piece for piece in iovec if piece]
        if 0 < len(pieces) <= _MAX_GATHER and _SENDMSG and self._idle():
            try:
                sent = self.socket.sendmsg(pieces)
            except OSError as e:
                if e.args[0] not in _RETRY:
                    # Let Twisted's write path find and report the error.
                    return super().write(b"".join(pieces))  # type: ignore[misc]
                sent = 0
            for index, piece in enumerate(pieces):
                size = len(piece)
                if sent < size:
                    self._keep(piece, sent, pieces[index + 1 :])
                    return
                sent -= size
        elif pieces:
            # Twisted's buffer takes bytes only.
            self.write(b"".join(pieces))

    _readSize = READ_SIZE

    _mark = 1
    """
    The socket's receive low-water mark: above 1 in bulk mode.
    """

    _readLately = False
    """
    In bulk mode: whether a read was consumed since the last check.
    """

    _grown = False
    """
    Whether the receive buffer was made to grow (L{BULK_GROW}).
    """

    def expect(self, received: int, outstanding: int) -> None:
        """
        The protocol has consumed a read of C{received} bytes and expects
        C{outstanding} more that its peer sends without waiting for
        anything (what is left of a body of known length; 0 for none or
        unknown).  A large read enters bulk mode (see L{BULK_READ}); in bulk
        mode the mark follows what is still to come, and nothing to come
        leaves the mode.
        """
        mark = self._mark
        if mark == 1:
            if (
                received < BULK_READ
                or outstanding < BULK_MIN_MARK
                or not self.connected
                or self.disconnecting  # type: ignore[attr-defined]
            ):
                return
            wanted = min(outstanding, markFor(self.socket, BULK_LOWAT))
            if wanted < min(outstanding, BULK_LOWAT) and not self._grown:
                wanted = self._grow(outstanding)
            if wanted < BULK_MIN_MARK or not _setMark(self.socket, wanted):
                return
            self._mark = wanted
            self._readLately = True
            _watchFor(self.reactor).add(self)  # type: ignore[attr-defined]
            return
        # In bulk mode (so connected: connectionLost leaves it).
        if outstanding <= 1:
            self._endBulk()
            return
        self._readLately = True
        wanted = min(outstanding, markFor(self.socket, BULK_LOWAT))
        if wanted <= 1:
            # The receive buffer cannot be read: leave, rather than stay
            # watched with a mark of 1.
            self._endBulk()
        elif wanted != mark and _setMark(self.socket, wanted):
            self._mark = wanted

    def _grow(self, outstanding: int) -> int:
        """
        Make Linux grow the receive buffer (see L{BULK_GROW}), once per
        connection.

        @return: the mark bulk mode can have now, for C{outstanding} bytes
            to come; the socket's mark is back at 1 if that is under
            L{BULK_MIN_MARK}.
        """
        self._grown = True
        if not _setMark(self.socket, BULK_GROW):
            return 0
        wanted = min(outstanding, markFor(self.socket, BULK_LOWAT))
        if wanted < BULK_MIN_MARK:
            _setMark(self.socket, 1)
        return wanted

    def _endBulk(self) -> None:
        """
        Leave bulk mode: whatever waits below the mark is reported by the
        next poll.
        """
        if self._mark == 1:
            return
        self._mark = 1
        _watchFor(self.reactor).discard(self)  # type: ignore[attr-defined]
        # On a closed socket this fails, which is fine.
        _setMark(getattr(self, "socket", None), 1)  # type: ignore[arg-type]

    def connectionLost(self, reason: Any) -> None:
        self._endBulk()
        super().connectionLost(reason)  # type: ignore[misc]

    def doRead(self) -> Any:
        size = self._readSize
        try:
            data = self.socket.recv(size)
        except OSError as e:
            if e.args[0] == errno.EWOULDBLOCK:
                return None
            from twisted.internet import main

            return main.CONNECTION_LOST
        received = len(data)
        if received >= QUICK_ACK_READ:
            _quickAck(self.socket)
        if received == size:
            if size < MAX_READ_SIZE:
                self._readSize = size * 4
        elif size > READ_SIZE and received < size // 8:
            self._readSize = READ_SIZE
        if not received:
            return self._dataReceived(data)  # type: ignore[attr-defined]
        # What tcp.Connection._dataReceived does for data, one call less.
        self.protocol.dataReceived(data)  # type: ignore[attr-defined]
        return None


def markFor(skt: socket.socket, most: int) -> int:
    """
    @return: the receive low-water mark C{skt} can be given now: C{most}, or
        a quarter of the socket's receive buffer if that is less (0 if it
        cannot be read).  Linux grows a buffer smaller than about twice the
        mark, and then clamps the window to the mark until autotuning
        catches up; a quarter stays clear of both.  A new connection's
        buffer starts at C{tcp_rmem}'s default (128 KiB) and grows as the
        stream runs.
    """
    try:
        space = skt.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    except (OSError, AttributeError):
        return 0
    return min(most, space // 4)


_TCP_QUICKACK: Optional[int] = getattr(socket, "TCP_QUICKACK", None)


def _quickAck(skt: socket.socket) -> None:
    """
    Ask C{skt} to acknowledge what arrives at once, for now (see
    L{QUICK_ACK_READ}); Linux leaves this mode by itself later.
    """
    if _TCP_QUICKACK is None:
        return
    try:
        skt.setsockopt(socket.IPPROTO_TCP, _TCP_QUICKACK, 1)
    except OSError:
        pass


def _setMark(skt: socket.socket, mark: int) -> bool:
    """
    Set C{skt}'s receive low-water mark.

    @return: whether it could be set.
    """
    if _SO_RCVLOWAT is None:
        return False
    try:
        skt.setsockopt(socket.SOL_SOCKET, _SO_RCVLOWAT, mark)
    except (OSError, AttributeError):
        return False
    return True


class _BulkWatch:
    """
    The check every L{BULK_CHECK} seconds of the transports in bulk mode
    (one timer for all of them): each that consumed no read since the
    previous check leaves the mode.
    """

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self.transports: set[Any] = set()
        self.call: Any = None

    def add(self, transport: Any) -> None:
        self.transports.add(transport)
        # (A call cancelled from outside, as trial's clean-up does, is
        # replaced.)
        if self.call is None or not self.call.active():
            self.call = self.reactor.callLater(BULK_CHECK, self.check)

    def discard(self, transport: Any) -> None:
        transports = self.transports
        transports.discard(transport)
        call = self.call
        if not transports and call is not None:
            self.call = None
            if call.active():
                call.cancel()

    def check(self) -> None:
        self.call = None
        for transport in list(self.transports):
            if transport._readLately:
                transport._readLately = False
            else:
                transport._endBulk()
        if self.transports and self.call is None:
            self.call = self.reactor.callLater(BULK_CHECK, self.check)


_watches: dict[Any, _BulkWatch] = {}


def _watchFor(reactor: Any) -> _BulkWatch:
    """
    @return: the bulk-mode watch of C{reactor}.
    """
    watch = _watches.get(reactor)
    if watch is None:
        watch = _watches[reactor] = _BulkWatch(reactor)
    return watch


def gathers(transport: Any) -> bool:
    """
    @return: whether C{transport.writeSequence} takes C{memoryview} pieces
        and sends them without joining them (a fast TCP transport); others
        want C{bytes}, best joined into one C{write}.
    """
    return _SENDMSG and type(transport) in _GATHERING


class FastServer(_FastConnectionMixin, tcp.Server):
    """
    A server-side TCP connection with send-at-once writes.
    """


class FastClient(_FastConnectionMixin, tcp.Client):
    """
    A client-side TCP connection with send-at-once writes.
    """


_FAST = {tcp.Server: FastServer, tcp.Client: FastClient}
_GATHERING = frozenset(_FAST.values())

# Gathering needs sendmsg, which Python's sockets lack on Windows.
_SENDMSG = hasattr(socket.socket, "sendmsg")


def _lowatOption(platform: str, release: str) -> Optional[int]:
    """
    @param platform: C{sys.platform}.
    @param release: the kernel's release, C{os.uname().release}.

    @return: the C{SO_RCVLOWAT} option number if bulk mode may use it: on
        Linux 4.18 and later, whose epoll honours the mark and which
        reports the bytes waiting below it at once when it is lowered
        (C{tcp_set_rcvlowat} calls C{tcp_data_ready}); older kernels would
        leave them unreported until more arrive.  L{None} elsewhere.
    """
    if not platform.startswith("linux"):
        return None
    match = re.match(r"(\d+)\.(\d+)", release)
    if match is None or (int(match.group(1)), int(match.group(2))) < (4, 18):
        return None
    return getattr(socket, "SO_RCVLOWAT", None)


_SO_RCVLOWAT = _lowatOption(
    sys.platform, os.uname().release if hasattr(os, "uname") else ""
)

# The endpoints' pass-through wrapper (private: if Twisted renames it, reads
# simply keep going through it).
_WRAPPING_PROTOCOL = getattr(endpoints, "_WrappingProtocol", None)


def unsent(transport: Any) -> int:
    """
    @return: bytes written to C{transport} that it still buffers, not yet
        accepted by the kernel; 0 for transports that do not say (TLS, test
        doubles).  Its peer reading them makes this fall.
    """
    try:
        return len(transport.dataBuffer) - transport.offset + transport._tempDataLen
    except (AttributeError, TypeError):
        return 0


def halfCloses(transport: Any) -> bool:
    """
    @return: whether C{transport} is a plain socket connection (TCP or
        UNIX) whose C{loseWriteConnection} shuts down just the sending
        side.  A TLS transport hands that call to the socket beneath it,
        behind the TLS layer's back, so it does not count.
    """
    return isinstance(transport, tcp.Connection)


def supported() -> bool:
    """
    @return: whether this Twisted's TCP transport classes have the methods
        the fast subclasses override or call.
    """
    return all(
        hasattr(tcp.Connection, name)
        for name in (
            "_dataReceived",
            "doRead",
            "startWriting",
            "write",
            "writeSequence",
            "setTcpNoDelay",
        )
    ) and all(
        hasattr(tcp.Connection, name)
        for name in ("dataBuffer", "offset", "_writeDisconnected")
    )


def accelerate(transport: Any, protocol: Any = None) -> bool:
    """
    Switch a connected plain TCP transport to its fast subclass and set
    C{TCP_NODELAY}.  Other transports (TLS, UNIX, test doubles) are left
    alone.

    @param protocol: the protocol the transport should deliver to, when an
        endpoint put its pass-through wrapper in between
        (C{twisted.internet.endpoints._WrappingProtocol}, which only
        forwards calls once connected): the wrapper is dropped so that
        every read costs one call less.

    @return: whether the transport was switched.
    """
    fast = _FAST.get(type(transport))
    if fast is None:
        return False
    for name in _TRANSPORT_ATTRIBUTES:
        if not hasattr(transport, name):
            return False
    transport.__class__ = fast
    if protocol is not None:
        wrapper = getattr(transport, "protocol", None)
        if (
            type(wrapper) is _WRAPPING_PROTOCOL
            and getattr(wrapper, "_wrappedProtocol", None) is protocol
        ):
            transport.protocol = protocol
    try:
        transport.setTcpNoDelay(True)
    except OSError:
        pass
    return True


def acceleratePolling(reactor: Any) -> bool:
    """
    Drop the per-event logging context from an epoll reactor's loop, and
    dispatch the usual event (readable, nothing else) to C{doRead} without
    going through C{_doReadOrWrite}: an exception or a returned reason
    disconnects the selectable as there.

    @return: whether the reactor was changed (only C{EPollReactor}s are).
    """
    try:
        from twisted.internet.epollreactor import EPollReactor
    except ImportError:
        return False
    if type(reactor) is not EPollReactor:
        return False
    if not all(
        hasattr(reactor, name)
        for name in (
            "_poller",
            "_selectables",
            "_doReadOrWrite",
            "_disconnectSelectable",
        )
    ):
        return False
    poller = reactor._poller
    selectables = reactor._selectables
    doReadOrWrite = reactor._doReadOrWrite
    disconnect = reactor._disconnectSelectable
    readable = select.EPOLLIN

    def doPoll(timeout: Any) -> None:
        if timeout is None:
            timeout = -1
        try:
            events = poller.poll(timeout, len(selectables))
        except OSError as err:
            if err.errno == errno.EINTR:
                return
            raise
        for fd, event in events:
            selectable = selectables.get(fd)
            if selectable is None:
                continue
            # As log.callWithLogger does around each event: an exception
            # (a protocol's connectionLost raising, say) is logged and the
            # other events of this poll still run.
            try:
                if event != readable or selectable.fileno() == -1:
                    doReadOrWrite(selectable, fd, event)
                    continue
                # The usual event, readable and nothing else: what
                # _doReadOrWrite does for it, one call less.
                try:
                    why = selectable.doRead()
                except BaseException:
                    why = sys.exc_info()[1]
                    log.err()
                if why:
                    disconnect(selectable, why, True)
            except KeyboardInterrupt:
                raise
            except BaseException:
                log.err()

    reactor.doIteration = doPoll  # type: ignore[method-assign]
    reactor.doPoll = doPoll  # type: ignore[method-assign]
    return True
