# -*- test-case-name: tests.test_relay -*-
"""
The tunnel relay: once a CONNECT tunnel (or a 101 protocol switch) joins
two plain TCP connections, this relay moves their bytes both ways with
large reads into one shared buffer and sends straight from it, without a
C{bytes} object, a C{dataReceived} call or Twisted's write buffer per
chunk.

Theory of operation
===================

L{TunnelRelay.start} switches both transports' C{__class__} to a small
subclass (the way L{proxyapp.fastio} does) whose C{doRead} and C{doWrite}
call the relay instead of C{recv}/C{dataReceived} and Twisted's write
buffer.  The protocols stay attached and see nothing more until their
C{connectionLost}.

Each direction (A->B, B->A) is in one of these states:

  - I{reading}: nothing is held and the source is registered for
    reading.  On a readable event the relay reads up to L{READ_SIZE}
    bytes from the source into the process's one read buffer and at once
    sends them to the destination, repeating while reads come back large,
    up to L{EVENT_BUDGET} bytes per event so one busy tunnel cannot starve
    the others (epoll is level-triggered: the rest comes on the next
    turn);
  - I{blocked}: the destination returned C{EAGAIN} with bytes still
    unsent.  Those bytes are copied out of the shared buffer and held by
    the direction; the source is unregistered for reading and the
    destination registered for writing; its writable event sends what is
    held and, once nothing is, switches back to reading.  So at most one
    read's worth of bytes per direction is ever held in this process, and
    a slow reader pushes back on the sender through the TCP windows, as
    with producers.  Reads start at L{MIN_READ_SIZE}, double with every
    read the destination takes whole, up to L{READ_SIZE}, and drop back
    whenever it refuses bytes: a slow reader's direction holds a read or
    two of 64 KiB, a fast stream reads 1 MiB at a time;
  - I{ended}: the source returned end of file.  After what is held is
    sent, the destination's write side is shut down (C{SHUT_WR}, the
    half-close passes through) and the other direction keeps running.

A tunnel at rest holds no buffer of its own: the read buffer is shared by
every relay in the process (they all run in the reactor thread, and a
read's bytes are sent, or copied out, before the next read).

A direction that reads fast (L{BULK_BURST} bytes within L{BULK_WINDOW},
about 131 MB/s) enters I{bulk mode}: its source gets a receive low-water
mark (C{SO_RCVLOWAT}) of L{BULK_LOWAT}, or a quarter of its receive
buffer while that is smaller (a new connection's buffer starts at 128
KiB and Linux grows it as the stream runs; the checks below raise the
mark with it; under L{BULK_MIN_MARK} the mode waits), so that epoll
reports it once that much is waiting (or at end of file, or on an error)
rather than at every arriving segment or TLS record.  Each wake-up of
the relay's CPU by the sender's, and of the receiver's by the relay's,
is an inter-processor interrupt, which a virtual machine makes costly;
waiting for more saves most of them, and each send then hands the
receiver half a megabyte at once.  A check every L{BULK_CHECK} seconds
keeps the mode while reads come, and otherwise (the burst ended, the
stream slowed down, or a pause holds the source back) lowers the mark
again and reads what waits below it, so the last bytes of a burst wait
at most about twice L{BULK_CHECK}.  While the destination holds the
direction back (I{blocked}) the mode stays and the checks stop: the
source is not read then anyway, and leaving would mean climbing back
through small reads once the destination drains.  The checks resume when
it does.  Interactive traffic never reaches the threshold: a TLS
handshake or a request and its answer are relayed at once.

When both directions have ended, both transports are closed with
C{loseConnection}.  Any other error (C{ECONNRESET}, C{EPIPE}, ...) closes
both with C{abortConnection}.  Either way the classes are restored
first, so it is Twisted's own code that closes the sockets and calls each
protocol's C{connectionLost}.

Calls from outside while the relay runs:

  - C{loseConnection} (and C{stopProducing}) on either transport stops
    reading both sources, sends what both directions hold, then closes
    both connections: the tunnel is cut, but bytes already taken from one
    socket are not dropped, just as Twisted flushes its write buffer;
  - C{abortConnection} on either transport closes both at once;
  - C{connectionLost} delivered by the reactor (reactor shutdown, an error
    event) aborts the other transport, then runs Twisted's normal
    C{connectionLost};
  - C{pauseProducing}/C{resumeProducing} pause and resume reading from
    that transport;
  - C{write}, C{writeSequence} and C{loseWriteConnection} raise
    C{RuntimeError}: the bytes would be interleaved with the relayed ones
    at an arbitrary point.

TCP urgent data (C{MSG_OOB}) is dropped, as Twisted's reads (and so the
Python relay) drop it: a read stops short of the urgent byte and the next
one skips it.

Limits, the same as a Twisted transport whose reading is paused: a peer
that resets while the relay is neither reading from nor writing to its
socket (its own direction blocked or ended, the other idle) is noticed
only when the other direction next moves bytes; and a drain after
C{loseConnection} waits as long as the destination does not read (abort
to cut it short).

Why copy, and not C{splice(2)}
==============================

Earlier versions joined the sockets with C{splice(2)}
through a 1 MiB pipe per direction, so the bytes never left the kernel.
That halves the relay's own CPU per byte, but on loopback it slows the
processes at both ends: the receiver gets the sender's own pages, the
kernel frees them on the CPU that sent them last (deferred skb freeing),
the relay's, and the sender then takes its page allocations from the
shared zone instead of its CPU's free lists; nginx and curl spent 13-17 %
more CPU per byte, and with them on one CPU that CPU is the bottleneck.
A read and a send copy each byte twice but hand each process pages of
its own CPU.

Measured with C{bench/run.py}'s CONNECT setup (a 100 MiB download from
nginx over TLS through the proxy; proxy on CPU 0, nginx and curl on CPU
1) on a 2-CPU AMD EPYC VM, in paired downloads through one proxy whose
relay switched between them (12 rounds per comparison; MB/s as a share
of the direct downloads in the same rounds, proxy CPU seconds per GB; in
these trials the bulk-mode threshold scaled with the mark):

  - C{splice(2)}, 128 KiB mark (the relay before): 0.76-0.79x direct,
    0.31-0.34 s/GB;
  - C{splice(2)}, 512 KiB mark: 0.78x, 0.24 s/GB;
  - copy, 256 KiB reads, 128 KiB mark: 0.89x, 0.59 s/GB;
  - copy, 1 MiB reads, 256 KiB mark: 0.88x, 0.48 s/GB;
  - copy, 1 MiB reads, 512 KiB mark: 0.92x, 0.39-0.43 s/GB;
  - copy, 2 MiB reads, 512 KiB mark: 0.89x, 0.46 s/GB;
  - Squid 5.7 (a copying relay in C), in the same trials: 0.80-0.83x,
    0.82 s/GB.

This relay as committed (1 MiB reads, 512 KiB mark, threshold 131 MB/s),
in a later trial of 15 rounds: 0.93x direct at 0.42 s/GB; Squid in that
trial 0.86x at 0.87 s/GB.  Reads starting at L{MIN_READ_SIZE} (added after
that) changed nothing measurable: 0.88x direct at 0.50 s/GB against
0.85x at 0.53 s/GB without, 12 rounds each on a slower stretch of the
host.

With a copy, waiting for more per wake-up pays twice: fewer reads and
sends here, and fewer, larger deliveries to the receiver, each of which
wakes it.  Through a network card the chain of pages is broken anyway.

Measured before, and not worth it with C{splice(2)}: 64 KiB pipes or
256 KiB ones; one splice per readiness event instead of reading on; Nagle
on instead of C{TCP_NODELAY}; a fixed C{SO_RCVBUF} (20-45 % more CPU);
C{TCP_NOTSENT_LOWAT} (moves curl's share of the sending here); a
low-water mark fixed on both sockets (TLS handshakes stall, their small
messages never reaching it).  C{SPLICE_F_MORE} corked the destination
(400 ms per round trip of an interactive protocol).

Like L{proxyapp.fastio}, this module checks the Twisted internals it uses
(L{supported}) and refuses to start otherwise, so a Twisted upgrade costs
speed, not correctness; C{tests/test_relay.py} fails loudly in that case.
Checked with Twisted 26.10.
"""

from __future__ import annotations

import errno
import socket
import sys
from typing import Any, Optional

from twisted.internet import tcp
from twisted.python.failure import Failure

from proxyapp import fastio

READ_SIZE = 1 << 20
"""
Most bytes asked of one read, and the size of the one read buffer all
relays share.
"""

MIN_READ_SIZE = 64 * 1024
"""
Bytes a direction asks of a read at first and again after its
destination refused bytes; every read the destination then takes whole
doubles it, up to L{READ_SIZE}.  A fast stream is back at full size after
four reads, while a slow reader's direction holds at most a read or two
of this size instead of a whole L{READ_SIZE}.
"""

EVENT_BUDGET = 4 * READ_SIZE
"""
Bytes one direction moves per readiness event at most, for fairness.
"""

BULK_LOWAT = 512 * 1024
"""
Receive low-water mark (C{SO_RCVLOWAT}) of a source in bulk mode.
"""

BULK_MIN_MARK = 128 * 1024
"""
Smallest mark bulk mode starts with: a source whose receive buffer is
under four times this (a new connection's starts at 128 KiB) reads on
eagerly until Linux has grown it, which a fast stream makes it do within
its first few megabytes.  This is the value measured with L{BULK_LOWAT}
(a quarter of it); the relay before had 32 KiB with a 128 KiB mark.
"""

BULK_CHECK = 0.001
"""
Seconds between a bulk-mode direction's checks: one that read nothing
since the last check (and is not blocked on its destination) leaves bulk
mode and reads what waits below the mark.
"""

BULK_BURST = 256 * 1024
"""
Bytes a direction must read within L{BULK_WINDOW} to enter bulk mode.
Small enough that a stream gets there in a few dozen TLS records, and
again soon after a pause; large enough that a handshake or a page's small
objects do not.
"""

BULK_WINDOW = 0.002
"""
Seconds within which L{BULK_BURST} bytes must arrive to enter bulk mode
(about 131 MB/s).
"""

_WOULD_BLOCK = frozenset([errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR])
_WOULD_BLOCK_WRITE = _WOULD_BLOCK | {errno.ENOBUFS}

# Relay states.
_NEW = 0
_RUNNING = 1
_DRAINING = 2
_FINISHED = 3

# Methods of tcp.Connection the relayed subclasses override or call, and
# attributes start() reads to decide whether it may take a transport over.
_CONNECTION_METHODS = (
    "doRead",
    "doWrite",
    "connectionLost",
    "readConnectionLost",
    "loseConnection",
    "abortConnection",
    "loseWriteConnection",
    "pauseProducing",
    "resumeProducing",
    "stopProducing",
    "startReading",
    "stopReading",
    "startWriting",
    "stopWriting",
    "write",
    "writeSequence",
)
_CONNECTION_ATTRIBUTES = (
    "dataBuffer",
    "offset",
    "connected",
    "disconnecting",
    "disconnected",
    "producer",
    "_aborting",
    "_writeDisconnecting",
    "_writeDisconnected",
)
_TRANSPORT_ATTRIBUTES = ("socket", "reactor", "_tempDataLen")

# What the relay sets on a transport it takes over (removed again at the end).
_RELAY_ATTRIBUTES = ("_tunnelRelay", "_tunnelOut", "_tunnelIn")

# Per-instance overrides that mean someone else already hooked the
# transport (abortConnection() sets doRead and doWrite on the instance).
_INSTANCE_OVERRIDES = ("doRead", "doWrite", "connectionLost", "loseConnection")


def available() -> bool:
    """
    @return: whether this system has what the relay relies on: Linux, whose
        epoll honours a socket's receive low-water mark (C{SO_RCVLOWAT}).
    """
    return sys.platform.startswith("linux") and hasattr(socket, "SO_RCVLOWAT")


_buffer: Optional[memoryview] = None


def _readBuffer() -> memoryview:
    """
    @return: the read buffer every relay in this process shares.
    """
    global _buffer
    if _buffer is None:
        _buffer = memoryview(bytearray(READ_SIZE))
    return _buffer


_EMPTY = memoryview(b"")


def supported() -> bool:
    """
    @return: whether this Twisted's TCP connection class still has the
        methods and attributes the relayed subclasses override, call or
        read.
    """
    return all(
        callable(getattr(tcp.Connection, name, None)) for name in _CONNECTION_METHODS
    ) and all(hasattr(tcp.Connection, name) for name in _CONNECTION_ATTRIBUTES)


class _Direction:
    """
    One direction of a relay: its source and destination transports and
    the bytes taken from the source that the destination has not accepted
    yet.

    @ivar held: bytes read from the source and not yet accepted by the
        destination.  Outside L{TunnelRelay._pump} they are never a view of
        the shared read buffer.
    @ivar delivered: bytes accepted by the destination so far.
    @ivar blocked: the destination refused bytes: the source is not read
        and the destination is registered for writing.
    @ivar paused: reading from the source was paused from outside.
    @ivar ended: nothing more will be read from the source (end of file,
        or the relay is draining).
    @ivar done: ended, drained and the destination's write side shut down.
    @ivar burst: bytes read since C{burstStart}, outside bulk mode.
    @ivar burstStart: when counting towards C{burst} started.
    @ivar bulk: the source's receive low-water mark is raised (to C{mark}).
    @ivar mark: in bulk mode, the source's receive low-water mark.
    @ivar quiet: in bulk mode, nothing was read since the last check.
    @ivar check: the pending check of bulk mode, if any.
    """

    __slots__ = (
        "source",
        "destination",
        "recvInto",
        "send",
        "readSize",
        "held",
        "delivered",
        "blocked",
        "paused",
        "ended",
        "done",
        "burst",
        "burstStart",
        "bulk",
        "mark",
        "quiet",
        "check",
    )

    def __init__(self, source: Any, destination: Any) -> None:
        self.source = source
        self.destination = destination
        self.recvInto = source.socket.recv_into
        self.send = destination.socket.send
        self.readSize = MIN_READ_SIZE
        self.held = _EMPTY
        self.delivered = 0
        self.blocked = False
        self.paused = False
        self.ended = False
        self.done = False
        self.burst = 0
        self.burstStart = 0.0
        self.bulk = False
        self.mark = 1
        self.quiet = False
        self.check: Any = None


class TunnelRelay:
    """
    Relay bytes both ways between two connected plain-TCP Twisted
    transports, with large reads into a shared buffer and sends from it.

    Precondition for L{start}: neither side has half-closed yet (no
    C{readConnectionLost} delivered, no C{loseWriteConnection} asked) and
    no producer is registered on either transport.  L{start} checks what
    it can (end of file already waiting on a socket, write side shut down,
    producers, buffered writes) and refuses rather than guess.

    @ivar bytesAtoB: bytes delivered to B that came from A.
    @ivar bytesBtoA: bytes delivered to A that came from B.
    """

    def __init__(self, a: Any, b: Any) -> None:
        """
        @param a: the client-side transport (a C{tcp.Server} or
            L{proxyapp.fastio.FastServer}).
        @param b: the upstream transport (a C{tcp.Client} or
            L{proxyapp.fastio.FastClient}).
        """
        self._a = a
        self._b = b
        self._reactor: Any = None
        self._state = _NEW
        self._aToB: Optional[_Direction] = None
        self._bToA: Optional[_Direction] = None
        self._directions: tuple[_Direction, ...] = ()
        self._buffer = _EMPTY

    @property
    def bytesAtoB(self) -> int:
        """
        Bytes delivered to B that came from A.
        """
        return self._aToB.delivered if self._aToB is not None else 0

    @property
    def bytesBtoA(self) -> int:
        """
        Bytes delivered to A that came from B.
        """
        return self._bToA.delivered if self._bToA is not None else 0

    @property
    def running(self) -> bool:
        """
        Whether the relay has started and not finished yet.
        """
        return self._state in (_RUNNING, _DRAINING)

    def start(self) -> bool:
        """
        Take both transports over: from now on their protocols receive no
        C{dataReceived}, only C{connectionLost} once the tunnel ends.

        @return: C{True} if the relay runs; C{False}, with nothing changed,
            if it cannot (see L{TunnelRelay} for the conditions), in which
            case the caller keeps relaying in Python.
        """
        if self._state != _NEW or not available() or not supported():
            return False
        a, b = self._a, self._b
        if a is b or not _canTakeOver(a) or not _canTakeOver(b):
            return False
        self._buffer = _readBuffer()
        self._aToB = aToB = _Direction(a, b)
        self._bToA = bToA = _Direction(b, a)
        self._directions = (aToB, bToA)
        self._reactor = reactor = a.reactor
        aToB.burstStart = bToA.burstStart = reactor.seconds()
        self._state = _RUNNING
        for transport, out, into in ((a, aToB, bToA), (b, bToA, aToB)):
            transport.__class__ = _RELAYED[type(transport)]
            transport._tunnelRelay = self
            transport._tunnelOut = out
            transport._tunnelIn = into
            # Nothing is buffered (checked above), so nothing to write;
            # bytes already in the socket are reported by the next poll.
            transport.stopWriting()
            transport.startReading()
        return True

    # -- moving bytes ----------------------------------------------------------

    def _pump(self, direction: _Direction) -> None:
        """
        Move what can be moved now in one direction: send what is held,
        then read from the source and send, until the source has nothing
        more, the destination is full, or the event's budget is spent.
        """
        if self._state == _FINISHED:
            return
        buffer = self._buffer
        recvInto = direction.recvInto
        budget = EVENT_BUDGET
        while True:
            if direction.held and not self._flush(direction):
                return
            if direction.ended:
                self._endDirection(direction)
                return
            if direction.paused or budget <= 0:
                return
            size = direction.readSize
            try:
                moved = recvInto(buffer, size)
            except OSError as e:
                if e.errno not in _WOULD_BLOCK:
                    self._finish(abort=True)
                return
            if not moved:
                direction.ended = True
                direction.source.stopReading()
                continue
            direction.held = buffer[:moved]
            if not self._flush(direction):
                return
            if size < READ_SIZE:
                direction.readSize = size * 2
            if direction.bulk:
                direction.quiet = False
            else:
                direction.burst += moved
                if direction.burst >= BULK_BURST:
                    self._burstRead(direction)
            if moved < size >> 2:
                # A small read means the socket is drained for now: wait
                # for the next readable event rather than spend a system
                # call on EAGAIN.  A large one means a bulk stream still
                # arriving: reading on saves a trip through the reactor.
                budget = 0
            else:
                budget -= moved

    # -- bulk mode -----------------------------------------------------------

    def _burstRead(self, direction: _Direction) -> None:
        """
        C{direction} has read L{BULK_BURST} bytes outside bulk mode: if that
        was fast enough, switch its source to bulk mode.
        """
        now = self._reactor.seconds()
        fast = now - direction.burstStart <= BULK_WINDOW
        direction.burst = 0
        direction.burstStart = now
        if not fast:
            return
        mark = _markFor(direction.source.socket)
        if mark < BULK_MIN_MARK or not self._setMark(direction, mark):
            return
        direction.bulk = True
        direction.quiet = False
        self._scheduleCheck(direction)

    def _scheduleCheck(self, direction: _Direction) -> None:
        direction.check = self._reactor.callLater(
            BULK_CHECK, self._checkBulk, direction
        )

    def _checkBulk(self, direction: _Direction) -> None:
        """
        Every L{BULK_CHECK} seconds in bulk mode: stay while reads come;
        otherwise lower the mark and read what waits below it.  A direction
        whose destination holds it back (blocked) stays in the mode
        without checks: its source is not read meanwhile, and leaving
        would cost a climb back through small reads (one per TLS record)
        once the destination drains; L{_flush} resumes the checks then.
        """
        direction.check = None
        if self._state != _RUNNING or direction.ended:
            return
        if direction.blocked:
            direction.quiet = False
            return
        if not direction.quiet:
            direction.quiet = True
            if direction.mark < BULK_LOWAT:
                self._raiseMark(direction)
            self._scheduleCheck(direction)
            return
        direction.bulk = False
        direction.burstStart = self._reactor.seconds()
        if not self._setMark(direction, 1):
            # Bytes below the mark would never be reported.
            self._finish(abort=True)
            return
        if not direction.paused:
            # Whatever waits is below the mark, so no event reports it.
            # An exception here would only be logged by the reactor, with
            # the tunnel left running: end it first.
            try:
                self._pump(direction)
            except BaseException:
                self._finish(abort=True)
                raise

    def _raiseMark(self, direction: _Direction) -> None:
        """
        Raise a bulk-mode source's mark as far as its receive buffer, which
        Linux grows while the stream runs, now allows.
        """
        mark = _markFor(direction.source.socket)
        if mark > direction.mark:
            self._setMark(direction, mark)

    def _setMark(self, direction: _Direction, mark: int) -> bool:
        """
        Set the receive low-water mark of C{direction}'s source.

        @return: whether it could be set.
        """
        try:
            direction.source.socket.setsockopt(
                socket.SOL_SOCKET, socket.SO_RCVLOWAT, mark
            )
        except OSError:
            return False
        direction.mark = mark
        return True

    def _flush(self, direction: _Direction) -> bool:
        """
        Send what the direction holds to the destination.

        @return: whether nothing is held any more; if something is, the
            direction is now blocked on the destination (or the relay
            failed and finished).
        """
        held = direction.held
        send = direction.send
        while held:
            try:
                sent = send(held)
            except OSError as e:
                if e.errno in _WOULD_BLOCK_WRITE:
                    if held.obj is self._buffer.obj:
                        # What is left must outlive the shared buffer's
                        # next read: copy it out before anything else runs.
                        direction.held = _EMPTY
                        try:
                            held = memoryview(bytes(held))
                        except MemoryError:
                            self._finish(abort=True)
                            return False
                    direction.held = held
                    direction.readSize = MIN_READ_SIZE
                    if not direction.blocked:
                        direction.blocked = True
                        direction.source.stopReading()
                        direction.destination.startWriting()
                    return False
                direction.held = _EMPTY
                self._finish(abort=True)
                return False
            if not sent:
                # Cannot happen on a stream socket; do not spin.
                direction.held = _EMPTY
                self._finish(abort=True)
                return False
            direction.delivered += sent
            held = held[sent:]
        direction.held = _EMPTY
        if direction.blocked:
            direction.blocked = False
            direction.destination.stopWriting()
            if not (direction.ended or direction.paused):
                direction.source.startReading()
            if direction.bulk and direction.check is None and not direction.ended:
                # Checks stop while blocked; paused or not, one must run
                # again, or bytes below the mark would never be reported.
                self._scheduleCheck(direction)
        return True

    def _endDirection(self, direction: _Direction) -> None:
        """
        The source of C{direction} ended and everything it sent is
        delivered: pass the half-close on and, once both directions are
        done, close both connections.
        """
        if direction.done:
            return
        direction.done = True
        direction.source.stopReading()
        destination = direction.destination
        try:
            destination.socket.shutdown(socket.SHUT_WR)
        except OSError:
            self._finish(abort=True)
            return
        # What Twisted's own half-close records: later writes are dropped
        # and loseConnection() closes at once.
        destination._writeDisconnected = True
        if all(other.done for other in self._directions):
            self._finish(abort=False)

    # -- calls from the transports --------------------------------------------

    def _sourceEnded(self, direction: _Direction) -> None:
        """
        The reactor saw the source hang up without a readable event.
        """
        if self._state == _FINISHED:
            return
        direction.ended = True
        self._pump(direction)

    def _pause(self, direction: _Direction) -> None:
        direction.paused = True
        direction.source.stopReading()

    def _resume(self, direction: _Direction) -> None:
        direction.paused = False
        if self._state == _RUNNING and not (direction.ended or direction.blocked):
            direction.source.startReading()

    def _drain(self) -> None:
        """
        Close the tunnel from outside (C{loseConnection} on either
        transport): read nothing more, deliver what is held, then
        close both connections.
        """
        if self._state != _RUNNING:
            return
        self._state = _DRAINING
        for direction in self._directions:
            direction.ended = True
            direction.source.stopReading()
        for direction in self._directions:
            if self._state == _FINISHED:
                return
            self._pump(direction)

    def _transportLost(self, transport: Any) -> None:
        """
        The reactor delivered C{connectionLost} to one of the transports
        (reactor shutdown, an error event): abort the other.  (The relay
        itself never returns a reason from C{doRead}/C{doWrite}, so a clean
        C{ConnectionDone} does not come this way.)
        """
        self._finish(abort=True, lost=transport)

    def _finish(self, abort: bool, lost: Any = None) -> None:
        """
        End the relay: hand both transports back to Twisted's own classes,
        and close both connections through Twisted so
        that every protocol's C{connectionLost} runs.

        @param abort: close with C{abortConnection} (an error) rather than
            C{loseConnection}.
        @param lost: a transport that is already in C{connectionLost}, to
            leave alone.
        """
        if self._state == _FINISHED:
            return
        self._state = _FINISHED
        for direction in self._directions:
            if direction.check is not None:
                direction.check.cancel()
                direction.check = None
        transports = (self._a, self._b)
        for transport in transports:
            relayed = type(transport)
            if relayed in _BASES:
                transport.__class__ = _BASES[relayed]
            for name in _RELAY_ATTRIBUTES:
                transport.__dict__.pop(name, None)
        self._buffer = _EMPTY
        for transport in transports:
            if transport is lost:
                continue
            if abort:
                transport.abortConnection()
            else:
                transport.loseConnection()


def _markFor(source: socket.socket) -> int:
    """
    @return: the receive low-water mark bulk mode can give C{source} now
        (see L{fastio.markFor}): L{BULK_LOWAT} at most.
    """
    return fastio.markFor(source, BULK_LOWAT)


def _canTakeOver(transport: Any) -> bool:
    """
    @return: whether C{transport} is a connected plain TCP transport of a
        class the relay knows, with nothing buffered, no producer, both
        directions open and nobody else hooked into it.
    """
    if type(transport) not in _RELAYED:
        return False
    if not all(hasattr(transport, name) for name in _TRANSPORT_ATTRIBUTES):
        return False
    instance = transport.__dict__
    if any(name in instance for name in _INSTANCE_OVERRIDES):
        return False
    if getattr(transport, "TLS", False):
        return False
    if (
        not transport.connected
        or transport.disconnecting
        or transport.disconnected
        or transport._aborting
        or transport._writeDisconnecting
        or transport._writeDisconnected
    ):
        return False
    if transport.producer is not None:
        return False
    if len(transport.dataBuffer) - transport.offset or transport._tempDataLen:
        return False
    skt = transport.socket
    if skt.type != socket.SOCK_STREAM or skt.family not in (
        socket.AF_INET,
        socket.AF_INET6,
    ):
        return False
    # A peer that already half-closed: its end of file is waiting (or was
    # already delivered as readConnectionLost, which Twisted does not
    # record on the transport).  Either way the caller's relay handles it.
    try:
        peeked = skt.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        return True
    except OSError:
        return False
    return bool(peeked)


class _RelayedTransport:
    """
    Overrides for a transport taken over by a L{TunnelRelay}; mixed in
    before Twisted's (or L{proxyapp.fastio}'s) TCP transport class.
    """

    _tunnelBase: Any
    _tunnelRelay: TunnelRelay
    _tunnelOut: _Direction
    _tunnelIn: _Direction

    def doRead(self) -> None:
        self._tunnelRelay._pump(self._tunnelOut)

    def doWrite(self) -> None:
        self._tunnelRelay._pump(self._tunnelIn)

    def readConnectionLost(self, reason: Failure) -> None:
        self._tunnelRelay._sourceEnded(self._tunnelOut)

    def connectionLost(self, reason: Failure) -> None:
        base = self._tunnelBase
        relay = self.__dict__.get("_tunnelRelay")
        if relay is not None:
            relay._transportLost(self)
        base.connectionLost(self, reason)

    def loseConnection(self) -> None:
        self._tunnelRelay._drain()

    def abortConnection(self) -> None:
        self._tunnelRelay._finish(abort=True)

    def pauseProducing(self) -> None:
        self._tunnelRelay._pause(self._tunnelOut)

    def resumeProducing(self) -> None:
        self._tunnelRelay._resume(self._tunnelOut)

    def write(self, data: bytes) -> None:
        raise RuntimeError("cannot write to a transport a TunnelRelay runs")

    def writeSequence(self, iovec: Any) -> None:
        raise RuntimeError("cannot write to a transport a TunnelRelay runs")

    def loseWriteConnection(self) -> None:
        raise RuntimeError("cannot half-close a transport a TunnelRelay runs")


class _RelayedServer(_RelayedTransport, tcp.Server):
    _tunnelBase = tcp.Server


class _RelayedClient(_RelayedTransport, tcp.Client):
    _tunnelBase = tcp.Client


class _RelayedFastServer(_RelayedTransport, fastio.FastServer):
    _tunnelBase = fastio.FastServer


class _RelayedFastClient(_RelayedTransport, fastio.FastClient):
    _tunnelBase = fastio.FastClient


_RELAYED: dict[type, type] = {
    cls._tunnelBase: cls
    for cls in (_RelayedServer, _RelayedClient, _RelayedFastServer, _RelayedFastClient)
}
_BASES: dict[type, type] = {relayed: base for base, relayed in _RELAYED.items()}
