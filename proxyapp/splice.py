# -*- test-case-name: tests.test_splice -*-
"""
Zero-copy relay for tunnels: Linux C{splice(2)} moves the bytes of a
CONNECT tunnel from one socket into a pipe and from the pipe into the other
socket without them ever reaching Python.

Why: a Python relay costs, per chunk, a C{recv} that copies into a new
C{bytes}, a C{dataReceived} call, a C{send} that copies it back into the
kernel and the reactor turns around them.  With splice the kernel passes
page references socket -> pipe -> socket; Python only sees one readiness
event and a few system calls per pipe-full (up to L{PIPE_SIZE} bytes).

Theory of operation
===================

L{SpliceRelay.start} switches both transports' C{__class__} to a small
subclass (the way L{proxyapp.fastio} does) whose C{doRead} and C{doWrite}
call the relay instead of C{recv}/C{dataReceived} and Twisted's write
buffer.  The protocols stay attached and see nothing more until their
C{connectionLost}.

Each direction (A->B, B->A) owns one non-blocking pipe and is in one of
these states:

  - I{reading}: the pipe is empty and the source is registered for
    reading.  On a readable event the relay splices source -> pipe and at
    once pipe -> destination, repeating while reads come back large, up
    to L{EVENT_BUDGET} bytes per event so one busy tunnel cannot starve
    the others (epoll is level-triggered: the rest comes on the next turn);
  - I{blocked}: the destination returned C{EAGAIN} with bytes still in
    the pipe.  The source is unregistered for reading and the destination
    registered for writing; its writable event flushes the pipe and, once
    empty, switches back to reading.  So at most one pipe of bytes per
    direction is ever in flight in this process, and a slow reader pushes
    back on the sender through the TCP windows, as with producers;
  - I{ended}: the source returned end of file (splice returned 0).  After
    the pipe is drained, the destination's write side is shut down
    (C{SHUT_WR}, the half-close passes through) and the other direction
    keeps running.

A direction that reads fast (L{BULK_BURST} bytes at over about 131 MB/s)
enters I{bulk mode}: its source gets a receive low-water mark
(C{SO_RCVLOWAT}) of L{BULK_LOWAT}, or a quarter of its receive buffer
while that is smaller (a new connection's buffer starts at 128 KiB and
Linux grows it as the stream runs; the checks below raise the mark with
it), so that epoll reports it once that much is waiting (or at end of
file, or on an error) rather than at every arriving segment or TLS
record.  Each wake-up of the relay's CPU by the sender's, and of the
receiver's by the relay's, is an inter-processor interrupt, which a
virtual machine makes costly; waiting for more saves most of them.  A
check every L{BULK_CHECK} seconds keeps the mode while reads come, and
otherwise (the burst ended, the stream slowed down, or a pause holds the
source back) lowers the mark again and reads what waits below it, so the
last bytes of a burst wait at most about twice L{BULK_CHECK}.  While the
destination holds the direction back (I{blocked}) the mode stays and the
checks stop: the source is not read then anyway, and leaving would mean
climbing back through small reads once the destination drains.  The
checks resume when it does.  Interactive traffic never reaches the
threshold: a TLS handshake or a request and its answer are relayed at
once.

When both directions have ended, both transports are closed with
C{loseConnection}.  Any other error (C{ECONNRESET}, C{EPIPE}, ...) closes
both with C{abortConnection}.  Either way the classes are restored
first, so it is Twisted's own code that closes the sockets and calls each
protocol's C{connectionLost}.

Calls from outside while the relay runs:

  - C{loseConnection} (and C{stopProducing}) on either transport stops
    reading both sources, drains both pipes, then closes both
    connections: the tunnel is cut, but bytes already taken from one
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

TCP urgent data (C{MSG_OOB}): the kernel's splice stops at the urgent
mark and never moves past it, so when a readable source splices nothing
and is at the mark, the relay reads past it with C{recv} into the pipe,
which drops the urgent byte as Twisted's reads (and so the Python relay)
do.

Limits, the same as a Twisted transport whose reading is paused: a peer
that resets while the relay is neither reading from nor writing to its
socket (its own direction blocked or ended, the other idle) is noticed
only when the other direction next moves bytes; and a drain after
C{loseConnection} waits as long as the destination does not read (abort
to cut it short).  Pipes count against C{pipe-user-pages-soft}: past it,
new pipes stay small (more system calls per byte, nothing else).

What it saves is the two copies per byte and most of the Python per
chunk; the kernel's TCP work (including, on loopback, the receiving
side's) stays and dominates once the copies are gone.

Where the saving goes on loopback (measured with C{bench/run.py
--scenarios connect}: proxy on one CPU, nginx and curl sharing the other,
which is the bottleneck): the relay uses about 0.6 of Squid's CPU per GB
but reaches only about 0.9 of its MB/s (Squid was faster in 56 of 66
paired rounds).  Without a copy, the client receives the origin's own
pages, and the kernel frees the segments the relay sent on the CPU that
allocated them (deferred skb freeing), so nginx's pages come free on the
proxy's CPU: nginx then takes about 93 % of its page allocations from
the shared zone instead of its CPU's free lists (0 % behind a copying
relay, 5 % direct), and nginx and curl spend 13-17 % more CPU per byte.
A copying relay (C{recv_into}/C{send}, as Squid does) gets that back,
9-17 % more MB/s, for 1.3 times this relay's CPU per GB; counting all
three processes, CPU per GB is the same either way.  Through a network
card the chain of pages is broken and the question does not arise.

Measured and not worth it: 64 KiB pipes (10-20 % more CPU, same MB/s)
or 256 KiB (same); one splice per readiness event instead of reading on
(same); Nagle on instead of C{TCP_NODELAY} (same); a fixed
C{SO_RCVBUF} (20-45 % more CPU); C{TCP_NOTSENT_LOWAT} (moves curl's
share of the sending here: 10-55 % more CPU, MB/s no better); a
low-water mark fixed on both sockets (TLS handshakes stall, their small
messages never reaching it).

Bulk mode, measured on the same setup in 20 pairs of downloads through
one proxy with the mode off and on in turn (C{bench/run.py} starts a
proxy per run, so the pairs were driven by hand, each followed by a
direct download): 0.80 of the direct MB/s instead of 0.75 (faster in 16
pairs of 20), 0.55 s of proxy CPU per GB instead of 0.81 (less in 15):
without it, a relay that keeps up with the sender wakes for every 30 KiB
or so.  In back-to-back downloads, as C{bench/run.py --scenarios connect}
makes them, the relay already reads larger pieces and the mode changes
neither figure beyond the noise.

A syscall trace of one 100 MiB download then showed most wake-ups
outside the mode: 16 KiB (one TLS record) per wake-up while a new
connection's receive buffer was still under four marks, which the mode
waited for, and while climbing back to the threshold after leaving it
whenever curl stopped reading for a millisecond.  With the mark scaled to
the buffer, a threshold of 256 KiB instead of 1 MiB, and no leaving while
blocked, the proxy returns from epoll about 230 times per download
instead of about 530, and 20 pairs as above gave 0.413 s of proxy CPU per
GB instead of 0.438 (less in 18 pairs of 20) and 0.83 of the direct MB/s
instead of 0.81 (faster in 11).  C{bench/run.py --scenarios connect}
again showed no difference beyond its noise (three alternating runs).

C{SPLICE_F_MORE} corks the destination: the last partial segment of
every burst waits for a timer (0.13 of the MB/s, 400 ms per round trip
of an interactive protocol), so it is never passed.

Like L{proxyapp.fastio}, this module checks the Twisted internals it uses
(L{supported}) and refuses to start otherwise, so a Twisted upgrade costs
speed, not correctness; C{tests/test_splice.py} fails loudly in that case.
Checked with Twisted 26.10.
"""

from __future__ import annotations

import errno
import os
import socket
import sys
from typing import Any, Optional

from twisted.internet import tcp
from twisted.python.failure import Failure

from proxyapp import fastio

PIPE_SIZE = 1 << 20
"""
Capacity asked for each pipe (C{F_SETPIPE_SZ}); Linux' default for
unprivileged processes allows up to 1 MiB (C{/proc/sys/fs/pipe-max-size}).
If refused (for example once the user's pipes exceed
C{/proc/sys/fs/pipe-user-pages-soft}) the pipe keeps its own size, which
costs more system calls per byte but nothing else.
"""

MIN_PIPE_SIZE = 64 * 1024
"""
Smallest pipe worth relaying through (Linux' default pipe size); with
smaller ones L{SpliceRelay.start} declines.
"""

EVENT_BUDGET = 4 * PIPE_SIZE
"""
Bytes one direction moves per readiness event at most, for fairness.
"""

BULK_LOWAT = 128 * 1024
"""
Receive low-water mark (C{SO_RCVLOWAT}) of a source in bulk mode.
"""

BULK_CHECK = 0.001
"""
Seconds between a bulk-mode direction's checks: one that read nothing
since the last check (and is not blocked on its destination) leaves bulk
mode and reads what waits below the mark.
"""

BULK_BURST = 256 * 1024
"""
Bytes a direction must read within C{BULK_BURST / BULK_LOWAT *
BULK_CHECK} seconds (2 ms: the rate at which L{BULK_LOWAT} arrives within
L{BULK_CHECK}, about 131 MB/s) to enter bulk mode.  Small enough that a
stream gets there in a few dozen TLS records, and again soon after a
pause; large enough that a handshake or a page's small objects do not.
"""

_F_SETPIPE_SZ = 1031
_F_GETPIPE_SZ = 1032

_WOULD_BLOCK = frozenset([errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR])
_WOULD_BLOCK_WRITE = _WOULD_BLOCK | {errno.ENOBUFS}

# Relay states.
_NEW = 0
_RUNNING = 1
_DRAINING = 2
_FINISHED = 3

# Methods of tcp.Connection the spliced subclasses override or call, and
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
_RELAY_ATTRIBUTES = ("_spliceRelay", "_spliceOut", "_spliceIn")

# Per-instance overrides that mean someone else already hooked the
# transport (abortConnection() sets doRead and doWrite on the instance).
_INSTANCE_OVERRIDES = ("doRead", "doWrite", "connectionLost", "loseConnection")

_availability: Optional[bool] = None


def available() -> bool:
    """
    @return: whether this system can splice sockets through pipes: Linux,
        C{os.splice} (Python 3.10 or later) and C{fcntl} on pipes.
    """
    global _availability
    if _availability is not None:
        return _availability
    if not sys.platform.startswith("linux"):
        _availability = False
        return False
    if not all(
        hasattr(os, name)
        for name in ("splice", "pipe2", "SPLICE_F_MOVE", "SPLICE_F_NONBLOCK")
    ):
        _availability = False
        return False
    try:
        import fcntl
    except ImportError:
        _availability = False
        return False
    try:
        readFd, writeFd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        # Out of descriptors right now says nothing about the system: do
        # not remember it.
        return False
    try:
        fcntl.fcntl(writeFd, _F_GETPIPE_SZ)
    except OSError:
        _availability = False
    else:
        _availability = True
    finally:
        os.close(readFd)
        os.close(writeFd)
    return _availability


def supported() -> bool:
    """
    @return: whether this Twisted's TCP connection class still has the
        methods and attributes the spliced subclasses override, call or
        read.
    """
    return all(
        callable(getattr(tcp.Connection, name, None)) for name in _CONNECTION_METHODS
    ) and all(hasattr(tcp.Connection, name) for name in _CONNECTION_ATTRIBUTES)


class _Direction:
    """
    One direction of a relay: its source and destination transports and
    the pipe between them.

    @ivar pending: bytes in the pipe, taken from the source and not yet
        accepted by the destination.
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
        "sourceFd",
        "destinationFd",
        "pipeRead",
        "pipeWrite",
        "pipeSize",
        "pending",
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

    def __init__(
        self,
        source: Any,
        destination: Any,
        pipeRead: int,
        pipeWrite: int,
        pipeSize: int,
    ) -> None:
        self.source = source
        self.destination = destination
        self.sourceFd: int = source.socket.fileno()
        self.destinationFd: int = destination.socket.fileno()
        self.pipeRead = pipeRead
        self.pipeWrite = pipeWrite
        self.pipeSize = pipeSize
        self.pending = 0
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


def _openPipe() -> tuple[int, int, int]:
    """
    @return: a non-blocking pipe's read and write ends and its capacity,
        enlarged to L{PIPE_SIZE} if the system allows.
    @raise OSError: if no pipe could be made.
    """
    import fcntl

    readFd, writeFd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        fcntl.fcntl(writeFd, _F_SETPIPE_SZ, PIPE_SIZE)
    except OSError:
        pass
    try:
        size = fcntl.fcntl(writeFd, _F_GETPIPE_SZ)
    except OSError:
        size = 65536
    return readFd, writeFd, size


class SpliceRelay:
    """
    Relay bytes both ways between two connected plain-TCP Twisted
    transports with C{splice(2)}, without the bytes entering Python.

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
        self._pipes: tuple[int, ...] = ()

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
            if it cannot (see L{SpliceRelay} for the conditions), in which
            case the caller keeps relaying in Python.
        """
        if self._state != _NEW or not available() or not supported():
            return False
        a, b = self._a, self._b
        if a is b or not _canTakeOver(a) or not _canTakeOver(b):
            return False
        pipes: list[int] = []
        try:
            aRead, aWrite, aSize = _openPipe()
            pipes += (aRead, aWrite)
            bRead, bWrite, bSize = _openPipe()
            pipes += (bRead, bWrite)
        except OSError:
            for fd in pipes:
                os.close(fd)
            return False
        if min(aSize, bSize) < MIN_PIPE_SIZE:
            # Past the user's pipe quota (pipe-user-pages-soft) the kernel
            # hands out two-page pipes: more system calls per byte than the
            # Python relay's large reads.
            for fd in pipes:
                os.close(fd)
            return False
        self._pipes = tuple(pipes)
        self._aToB = aToB = _Direction(a, b, aRead, aWrite, aSize)
        self._bToA = bToA = _Direction(b, a, bRead, bWrite, bSize)
        self._directions = (aToB, bToA)
        self._reactor = reactor = a.reactor
        aToB.burstStart = bToA.burstStart = reactor.seconds()
        self._state = _RUNNING
        for transport, out, into in ((a, aToB, bToA), (b, bToA, aToB)):
            transport.__class__ = _SPLICED[type(transport)]
            transport._spliceRelay = self
            transport._spliceOut = out
            transport._spliceIn = into
            # Nothing is buffered (checked above), so nothing to write;
            # bytes already in the socket are reported by the next poll.
            transport.stopWriting()
            transport.startReading()
        return True

    # -- moving bytes ----------------------------------------------------------

    def _pump(self, direction: _Direction) -> None:
        """
        Move what can be moved now in one direction: flush the pipe, then
        read from the source and flush again, until the source has nothing
        more, the destination is full, or the event's budget is spent.
        """
        if self._state == _FINISHED:
            return
        splice = os.splice
        flags = _FLAGS
        budget = EVENT_BUDGET
        while True:
            if direction.pending and not self._flush(direction):
                return
            if direction.ended:
                self._endDirection(direction)
                return
            if direction.paused or budget <= 0:
                return
            size = direction.pipeSize
            try:
                moved = splice(
                    direction.sourceFd, direction.pipeWrite, size, None, None, flags
                )
            except OSError as e:
                if e.errno not in _WOULD_BLOCK:
                    self._finish(abort=True)
                    return
                if budget != EVENT_BUDGET:
                    return
                moved = -1
            if moved <= 0:
                # Nothing spliced: drained for now (EAGAIN), end of file
                # (0), or TCP urgent data.  The kernel's splice stops at the
                # urgent mark and never moves past it, answering EAGAIN there
                # (while epoll reports the socket for ever) or, once the
                # peer's end of file is in, 0.  recv() skips the urgent
                # byte, as the Python relay's reads do.
                if not _atUrgentMark(direction.sourceFd):
                    if moved < 0:
                        return
                    direction.ended = True
                    direction.source.stopReading()
                    continue
                moved = self._readPastMark(direction)
                if moved <= 0:
                    if moved == 0 and direction.ended:
                        continue
                    return
            direction.pending = moved
            if direction.bulk:
                direction.quiet = False
            else:
                direction.burst += moved
                if direction.burst >= BULK_BURST:
                    self._burstRead(direction)
            if moved < size >> 2:
                # A small read means the socket is drained for now: after
                # flushing, wait for the next readable event rather than
                # spend a system call on EAGAIN.  A large one means a bulk
                # stream still arriving: reading on saves a trip through
                # the reactor (fewer wake-ups per GB).
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
        fast = now - direction.burstStart <= BULK_BURST / BULK_LOWAT * BULK_CHECK
        direction.burst = 0
        direction.burstStart = now
        if not fast:
            return
        mark = _markFor(direction.source.socket)
        if mark < BULK_LOWAT // 4 or not self._setMark(direction, mark):
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
            self._pump(direction)

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

    def _readPastMark(self, direction: _Direction) -> int:
        """
        Read what follows the urgent byte the source is stopped at (the
        byte itself is dropped) into the direction's empty pipe.

        @return: the bytes now in the pipe; 0 if there are none (yet, or
            ever: then the direction has ended); -1 if the relay failed and
            finished.
        """
        try:
            data = direction.source.socket.recv(direction.pipeSize)
        except OSError as e:
            if e.errno in _WOULD_BLOCK:
                return 0
            self._finish(abort=True)
            return -1
        if not data:
            direction.ended = True
            direction.source.stopReading()
            return 0
        try:
            written = os.write(direction.pipeWrite, data)
        except OSError:
            written = 0
        if written != len(data):
            # The pipe is empty and as large as the read: cannot happen.
            self._finish(abort=True)
            return -1
        return written

    def _flush(self, direction: _Direction) -> bool:
        """
        Move the pipe's bytes into the destination.

        @return: whether the pipe is empty; if not, the direction is now
            blocked on the destination (or the relay failed and finished).
        """
        splice = os.splice
        flags = _FLAGS
        while direction.pending:
            try:
                moved = splice(
                    direction.pipeRead,
                    direction.destinationFd,
                    direction.pending,
                    None,
                    None,
                    flags,
                )
            except OSError as e:
                if e.errno in _WOULD_BLOCK_WRITE:
                    if not direction.blocked:
                        direction.blocked = True
                        direction.source.stopReading()
                        direction.destination.startWriting()
                    return False
                self._finish(abort=True)
                return False
            if moved <= 0:
                # Cannot happen with bytes in the pipe; do not spin.
                self._finish(abort=True)
                return False
            direction.pending -= moved
            direction.delivered += moved
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
        The source of C{direction} ended and its pipe is drained: pass the
        half-close on and, once both directions are done, close both
        connections.
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
        transport): read nothing more, deliver what the pipes hold, then
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
        close the pipes, and close both connections through Twisted so
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
            spliced = type(transport)
            if spliced in _BASES:
                transport.__class__ = _BASES[spliced]
            for name in _RELAY_ATTRIBUTES:
                transport.__dict__.pop(name, None)
        self._closePipes()
        for transport in transports:
            if transport is lost:
                continue
            if abort:
                transport.abortConnection()
            else:
                transport.loseConnection()

    def _closePipes(self) -> None:
        pipes, self._pipes = self._pipes, ()
        for fd in pipes:
            try:
                os.close(fd)
            except OSError:
                pass


# Never SPLICE_F_MORE: see the module docstring.
_FLAGS = getattr(os, "SPLICE_F_MOVE", 0) | getattr(os, "SPLICE_F_NONBLOCK", 0)

# ioctl(2) request: is the socket's read position at the urgent mark?
_SIOCATMARK = 0x8905


def _markFor(source: socket.socket) -> int:
    """
    @return: the receive low-water mark bulk mode can give C{source} now:
        L{BULK_LOWAT}, or a quarter of the socket's receive buffer if that
        is less (0 if it cannot be read).  Linux grows a buffer smaller
        than about twice the mark, and then clamps the window to the mark
        until autotuning catches up; a quarter stays clear of both.  A new
        connection's buffer starts at C{tcp_rmem}'s default (128 KiB) and
        grows as the stream runs.
    """
    try:
        space = source.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    except OSError:
        return 0
    return min(BULK_LOWAT, space // 4)


def _atUrgentMark(fd: int) -> bool:
    """
    @return: whether the next byte to read from socket C{fd} is TCP urgent
        data.
    """
    import fcntl

    try:
        return fcntl.ioctl(fd, _SIOCATMARK, b"\0\0\0\0") != b"\0\0\0\0"
    except OSError:
        return False


def _canTakeOver(transport: Any) -> bool:
    """
    @return: whether C{transport} is a connected plain TCP transport of a
        class the relay knows, with nothing buffered, no producer, both
        directions open and nobody else hooked into it.
    """
    if type(transport) not in _SPLICED:
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


class _SplicedTransport:
    """
    Overrides for a transport taken over by a L{SpliceRelay}; mixed in
    before Twisted's (or L{proxyapp.fastio}'s) TCP transport class.
    """

    _spliceBase: Any
    _spliceRelay: SpliceRelay
    _spliceOut: _Direction
    _spliceIn: _Direction

    def doRead(self) -> None:
        self._spliceRelay._pump(self._spliceOut)

    def doWrite(self) -> None:
        self._spliceRelay._pump(self._spliceIn)

    def readConnectionLost(self, reason: Failure) -> None:
        self._spliceRelay._sourceEnded(self._spliceOut)

    def connectionLost(self, reason: Failure) -> None:
        base = self._spliceBase
        relay = self.__dict__.get("_spliceRelay")
        if relay is not None:
            relay._transportLost(self)
        base.connectionLost(self, reason)

    def loseConnection(self) -> None:
        self._spliceRelay._drain()

    def abortConnection(self) -> None:
        self._spliceRelay._finish(abort=True)

    def pauseProducing(self) -> None:
        self._spliceRelay._pause(self._spliceOut)

    def resumeProducing(self) -> None:
        self._spliceRelay._resume(self._spliceOut)

    def write(self, data: bytes) -> None:
        raise RuntimeError("cannot write to a transport a SpliceRelay runs")

    def writeSequence(self, iovec: Any) -> None:
        raise RuntimeError("cannot write to a transport a SpliceRelay runs")

    def loseWriteConnection(self) -> None:
        raise RuntimeError("cannot half-close a transport a SpliceRelay runs")


class _SplicedServer(_SplicedTransport, tcp.Server):
    _spliceBase = tcp.Server


class _SplicedClient(_SplicedTransport, tcp.Client):
    _spliceBase = tcp.Client


class _SplicedFastServer(_SplicedTransport, fastio.FastServer):
    _spliceBase = fastio.FastServer


class _SplicedFastClient(_SplicedTransport, fastio.FastClient):
    _spliceBase = fastio.FastClient


_SPLICED: dict[type, type] = {
    cls._spliceBase: cls
    for cls in (_SplicedServer, _SplicedClient, _SplicedFastServer, _SplicedFastClient)
}
_BASES: dict[type, type] = {spliced: base for base, spliced in _SPLICED.items()}
