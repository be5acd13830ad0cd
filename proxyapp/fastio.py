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
import select
import socket
import sys
from typing import Any, Iterable, Union

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
in 8-12 reads of what has arrived; a receive low-water mark sized to the
rest of a Content-Length body (so it cannot stall) made that 6, with
throughput unchanged within the noise, so reads stay as they are.
"""

MAX_READ_SIZE = 1024 * 1024

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
