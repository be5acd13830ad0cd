# -*- test-case-name: tests.test_relay -*-
"""
Tests for L{proxyapp.relay}: a relayed tunnel between two real loopback
TCP connections moves bytes exactly, pushes back on a slow reader, passes
half-closes on and closes both sides on errors and on calls from outside,
without leaking descriptors; and L{TunnelRelay.start} refuses what it
cannot take over.

Every test builds client -> A (proxy, server side) and B (proxy, client
side) -> origin on 127.0.0.1 and relays A <-> B; every wait is bounded.
"""

from __future__ import annotations

import errno
import os
import socket
import time
from typing import Any, Callable, Optional

from zope.interface import implementer

from twisted.internet import defer, reactor, tcp
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ConnectionAborted, ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IHalfCloseableProtocol, IPullProducer
from twisted.internet.protocol import Protocol, ServerFactory
from twisted.internet.task import deferLater
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial import unittest

from proxyapp import fastio
from proxyapp import relay as relaying
from proxyapp.relay import TunnelRelay

WAIT = 5.0
"""
Seconds any single wait may take before the test fails.
"""

SMALL_BUFFER = 64 * 1024

SEGMENT = 64 * 1024
"""
Largest TCP segment on loopback (TSO/GSO).
"""


def _bounded(d: defer.Deferred, seconds: float = WAIT) -> defer.Deferred:
    return d.addTimeout(seconds, reactor)


def _sleep(seconds: float) -> defer.Deferred:
    return deferLater(reactor, seconds, lambda: None)


@defer.inlineCallbacks
def _until(condition: Callable[[], bool], seconds: float = WAIT) -> Any:
    """
    Poll C{condition} every few milliseconds until it holds.

    @raise AssertionError: if it does not within C{seconds}.
    """
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        yield _sleep(0.005)


def _openDescriptors() -> int:
    """
    @return: how many sockets and pipes this process has open (other
        files, such as the descriptor Twisted reserves on C{/dev/null} when
        it first listens, are not the relay's business).
    """
    count = 0
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink("/proc/self/fd/" + name)
        except OSError:
            continue
        if target.startswith(("socket:", "pipe:")):
            count += 1
    return count


@implementer(IHalfCloseableProtocol)
class _Peer(Protocol):
    """
    One end of a test connection: the client, the origin, or one of the
    proxy's two sides.

    @ivar onEof: called on C{readConnectionLost}; by default closes.
    @ivar lostType: the transport's class when C{connectionLost} ran.
    """

    transport: Any

    def __init__(self, accelerate: bool = False) -> None:
        self.accelerate = accelerate
        self.received = bytearray()
        self.made: defer.Deferred = defer.Deferred()
        self.eof: defer.Deferred = defer.Deferred()
        self.lost: defer.Deferred = defer.Deferred()
        self.lostReason: Optional[Failure] = None
        self.lostType: Optional[type] = None
        self.onEof: Callable[[], None] = self._closeOnEof

    def connectionMade(self) -> None:
        if self.accelerate:
            fastio.accelerate(self.transport)
        self.made.callback(self)

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def readConnectionLost(self) -> None:
        self.eof.callback(None)
        self.onEof()

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:
        self.lostReason = reason
        self.lostType = type(self.transport)
        self.lost.callback(None)

    def _closeOnEof(self) -> None:
        self.transport.loseConnection()

    def ignoreEof(self) -> None:
        self.onEof = lambda: None


@implementer(IPullProducer)
class _Chunks:
    """
    Writes C{payload} in 64 KiB chunks, one each time the transport's
    buffer empties, then half-closes: C{offset} bounds what the kernel
    accepted from above (it lags by at most one chunk).
    """

    chunk = 64 * 1024

    def __init__(self, transport: Any, payload: bytes) -> None:
        self.transport = transport
        self.payload = payload
        self.offset = 0

    def resumeProducing(self) -> None:
        if self.offset >= len(self.payload):
            self.transport.unregisterProducer()
            self.transport.loseWriteConnection()
            return
        end = self.offset + self.chunk
        self.transport.write(self.payload[self.offset : end])
        self.offset = min(end, len(self.payload))

    def stopProducing(self) -> None:
        pass


def _stuck(producer: _Chunks) -> defer.Deferred:
    """
    @return: a L{Deferred} firing once C{producer} has made no progress
        for 0.2 seconds (its writes are stuck behind full buffers).
    """
    progress = [-1, time.monotonic()]

    def stuck() -> bool:
        if producer.offset != progress[0]:
            progress[:] = [producer.offset, time.monotonic()]
            return False
        return time.monotonic() - progress[1] > 0.2

    return _until(stuck)


class _Tunnel:
    """
    A client connected to the proxy's side A, and the proxy's side B
    connected to an origin, all on 127.0.0.1.
    """

    def __init__(self, testCase: unittest.TestCase) -> None:
        self.testCase = testCase
        self.descriptors = 0
        self.ports: list[Any] = []
        self.client = _Peer()
        self.origin = _Peer()
        self.a = _Peer()
        self.b = _Peer()
        testCase.addCleanup(self._cleanUp)

    @defer.inlineCallbacks
    def _cleanUp(self) -> Any:
        """
        After a failed test, leave a clean reactor for the next one.
        """
        for peer in self.peers():
            if peer.connected and not peer.lost.called:
                peer.transport.abortConnection()
        for peer in self.peers():
            if peer.connected:
                yield _bounded(peer.lost)
        for port in self.ports:
            if port.connected:
                yield port.stopListening()

    def _listen(self, build: Callable[[], _Peer], smallBuffers: bool) -> Any:
        factory = ServerFactory()
        factory.buildProtocol = lambda addr: build()  # type: ignore[method-assign]
        port: Any = reactor.listenTCP(0, factory, interface="127.0.0.1")
        if smallBuffers:
            # Accepted sockets inherit the receive buffer; set before any
            # connection so the advertised window fits it.
            port.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_BUFFER)
        self.ports.append(port)
        return port

    @defer.inlineCallbacks
    def open(self, accelerate: bool = False, smallBuffers: bool = False) -> Any:
        """
        Connect everything; fires when all four protocols are connected.
        """
        # Count once the reactor runs (it opens its waker's pipe when it
        # starts).
        yield _sleep(0)
        self.descriptors = _openDescriptors()
        self.a.accelerate = self.b.accelerate = accelerate
        originPort = self._listen(lambda: self.origin, smallBuffers)
        proxyPort = self._listen(lambda: self.a, smallBuffers)
        yield _bounded(
            connectProtocol(
                TCP4ClientEndpoint(reactor, "127.0.0.1", proxyPort.getHost().port),
                self.client,
            )
        )
        yield _bounded(self.a.made)
        yield _bounded(
            connectProtocol(
                TCP4ClientEndpoint(reactor, "127.0.0.1", originPort.getHost().port),
                self.b,
            )
        )
        yield _bounded(self.origin.made)
        if smallBuffers:
            for peer in (self.client, self.b):
                peer.transport.socket.setsockopt(
                    socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUFFER
                )
        return self

    def peers(self) -> tuple[_Peer, _Peer, _Peer, _Peer]:
        return (self.client, self.a, self.b, self.origin)

    @defer.inlineCallbacks
    def allLost(self) -> Any:
        for peer in self.peers():
            yield _bounded(peer.lost)

    @defer.inlineCallbacks
    def close(self, relay: Optional[TunnelRelay] = None) -> Any:
        """
        Wait for every connection to be lost, stop listening, and check
        that no descriptor is left open and the relay let go of the shared
        read buffer.
        """
        yield self.allLost()
        for port in self.ports:
            yield port.stopListening()
        if relay is not None:
            self.testCase.assertFalse(relay.running)
            self.testCase.assertEqual(len(relay._buffer), 0)
        self.testCase.assertEqual(_openDescriptors(), self.descriptors)


def _payload(size: int) -> bytes:
    return os.urandom(size)


class InternalsTests(unittest.SynchronousTestCase):
    """
    What the relay relies on exists, and it refuses what it cannot run.
    """

    def test_available(self) -> None:
        """
        On Linux the relay is available.
        """
        self.assertTrue(relaying.available())

    def test_supported(self) -> None:
        """
        The installed Twisted's TCP connection class has every method and
        attribute the relayed transports override, call or read.
        """
        self.assertTrue(relaying.supported())

    def test_relayedClasses(self) -> None:
        """
        Each transport class the relay takes over has a relayed subclass,
        so switching C{__class__} keeps every other behaviour.
        """
        for base in (tcp.Server, tcp.Client, fastio.FastServer, fastio.FastClient):
            relayed = relaying._RELAYED[base]
            self.assertTrue(issubclass(relayed, base))
            self.assertIs(relaying._BASES[relayed], base)

    def test_refusesTestDoubles(self) -> None:
        """
        L{TunnelRelay.start} returns C{False} for transports that are not
        TCP connections, and leaves them alone.
        """
        a, b = StringTransport(), StringTransport()
        relay = TunnelRelay(a, b)
        self.assertFalse(relay.start())
        self.assertIs(type(a), StringTransport)
        self.assertIs(type(b), StringTransport)
        self.assertEqual((relay.bytesAtoB, relay.bytesBtoA), (0, 0))


class RelayTests(unittest.TestCase):
    """
    A started relay moves bytes between real sockets and ends cleanly.
    """

    timeout = 10

    @defer.inlineCallbacks
    def test_bothWaysExactly(self) -> Any:
        """
        Several MiB in each direction at once arrive byte-exact, the
        half-closes pass through, both proxy-side protocols get no
        C{dataReceived} and a clean C{connectionLost} on their own
        transport classes, and no descriptor leaks.
        """
        tunnel = yield _Tunnel(self).open(accelerate=True)
        self.assertIs(type(tunnel.a.transport), fastio.FastServer)
        self.assertIs(type(tunnel.b.transport), fastio.FastClient)
        relay = TunnelRelay(tunnel.a.transport, tunnel.b.transport)
        self.assertTrue(relay.start())
        self.assertTrue(relay.running)
        up, down = _payload(6 * 2**20 + 17), _payload(5 * 2**20 + 3)
        tunnel.client.transport.write(up)
        tunnel.client.transport.loseWriteConnection()
        tunnel.origin.transport.write(down)
        tunnel.origin.transport.loseWriteConnection()
        yield tunnel.close(relay)
        self.assertEqual(len(tunnel.origin.received), len(up))
        self.assertEqual(bytes(tunnel.origin.received), up)
        self.assertEqual(bytes(tunnel.client.received), down)
        self.assertEqual((relay.bytesAtoB, relay.bytesBtoA), (len(up), len(down)))
        for side, cls in ((tunnel.a, fastio.FastServer), (tunnel.b, fastio.FastClient)):
            self.assertEqual(side.received, b"")
            self.assertFalse(side.eof.called)
            side.lostReason.trap(ConnectionDone)
            self.assertIs(side.lostType, cls)

    @defer.inlineCallbacks
    def test_backpressure(self) -> Any:
        """
        While the origin does not read, the relay stops reading the client
        after at most one read's worth held plus the sockets' buffers, and
        does not spin meanwhile; once the origin reads again everything
        arrives.
        """
        tunnel = yield _Tunnel(self).open(smallBuffers=True)
        tunnel.origin.transport.pauseProducing()
        relay = TunnelRelay(tunnel.a.transport, tunnel.b.transport)
        self.assertTrue(relay.start())
        up = _payload(8 * 2**20)
        producer = _Chunks(tunnel.client.transport, up)
        tunnel.client.transport.registerProducer(producer, False)

        yield _stuck(producer)
        before = time.process_time()
        yield _sleep(0.3)
        self.assertLess(time.process_time() - before, 0.1)

        def buffer(peer: _Peer, option: int) -> int:
            return peer.transport.socket.getsockopt(socket.SOL_SOCKET, option)

        # A send may overshoot a full send buffer by one segment.
        direction = relay._directions[0]
        self.assertGreater(len(direction.held), 0)
        self.assertLessEqual(len(direction.held), relaying.READ_SIZE)
        inFlightBelow = (
            buffer(tunnel.b, socket.SO_SNDBUF)
            + SEGMENT
            + buffer(tunnel.origin, socket.SO_RCVBUF)
        )
        self.assertLessEqual(relay.bytesAtoB, inFlightBelow)
        aheadOfRelay = (
            _Chunks.chunk
            + buffer(tunnel.client, socket.SO_SNDBUF)
            + SEGMENT
            + buffer(tunnel.a, socket.SO_RCVBUF)
        )
        self.assertLessEqual(
            producer.offset, relay.bytesAtoB + relaying.READ_SIZE + aheadOfRelay
        )
        self.assertLess(producer.offset, len(up) // 2)

        tunnel.origin.transport.resumeProducing()
        yield tunnel.close(relay)
        self.assertEqual(bytes(tunnel.origin.received), up)
        self.assertEqual(relay.bytesAtoB, len(up))

    @defer.inlineCallbacks
    def test_heldBytesOutliveSharedBuffer(self) -> Any:
        """
        Bytes a blocked direction holds are its own, not a view of the read
        buffer all relays share: while one tunnel is blocked, another
        relays megabytes through that buffer, and the first still delivers
        exactly what it was sent once its origin reads again.
        """
        blocked = yield _Tunnel(self).open(smallBuffers=True)
        blocked.origin.transport.pauseProducing()
        first = TunnelRelay(blocked.a.transport, blocked.b.transport)
        self.assertTrue(first.start())
        up = _payload(4 * 2**20)
        producer = _Chunks(blocked.client.transport, up)
        blocked.client.transport.registerProducer(producer, False)
        yield _stuck(producer)
        held = first._directions[0].held
        self.assertGreater(len(held), 0)
        self.assertIsNot(held.obj, relaying._readBuffer().obj)

        busy = yield _Tunnel(self).open()
        second = TunnelRelay(busy.a.transport, busy.b.transport)
        self.assertTrue(second.start())
        self.assertIs(second._buffer.obj, first._buffer.obj)
        down = _payload(4 * 2**20)
        busy.origin.transport.write(down)
        busy.origin.transport.loseWriteConnection()
        busy.client.transport.loseWriteConnection()
        yield busy.close(second)
        self.assertEqual(bytes(busy.client.received), down)

        blocked.origin.transport.resumeProducing()
        yield blocked.close(first)
        # Not assertEqual: a failure would print megabytes.
        self.assertTrue(
            bytes(blocked.origin.received) == up, "held bytes were overwritten"
        )

    @defer.inlineCallbacks
    def test_blockedCopiesOutOfSharedBuffer(self) -> Any:
        """
        Whatever path sends from the shared read buffer, a destination that
        refuses the bytes gets them copied out before the relay returns:
        the direction then holds bytes of its own, which later reads into
        the buffer cannot change, and they arrive once it takes them.
        """
        tunnel = yield _Tunnel(self).open()
        relay = TunnelRelay(tunnel.a.transport, tunnel.b.transport)
        self.assertTrue(relay.start())
        direction = relay._directions[1]
        send = direction.send

        def refuse(data: Any) -> int:
            raise BlockingIOError(errno.EAGAIN, "full")

        direction.send = refuse
        relay._buffer[:5] = b"hello"
        direction.held = relay._buffer[:5]
        self.assertFalse(relay._flush(direction))
        self.assertTrue(direction.blocked)
        self.assertIsNot(direction.held.obj, relay._buffer.obj)
        relay._buffer[:5] = b"XXXXX"
        self.assertEqual(bytes(direction.held), b"hello")
        direction.send = send
        yield _until(lambda: bytes(tunnel.client.received) == b"hello")
        self.assertFalse(direction.blocked)
        tunnel.client.transport.loseConnection()
        yield tunnel.close(relay)

    @defer.inlineCallbacks
    def _sendFails(self, send: Callable[[Any], int]) -> Any:
        """
        Start a relay whose client-to-origin sends go to C{send}, have the
        client write, and wait for the tunnel to close.

        @return: a L{Deferred} firing with the tunnel and the relay.
        """
        tunnel = yield _Tunnel(self).open()
        relay = TunnelRelay(tunnel.a.transport, tunnel.b.transport)
        self.assertTrue(relay.start())
        relay._directions[0].send = send
        tunnel.client.transport.write(_payload(100_000))
        yield tunnel.close(relay)
        self.assertEqual(len(relay._directions[0].held), 0)
        for side in (tunnel.a, tunnel.b):
            side.lostReason.trap(ConnectionAborted)
        self.assertEqual(tunnel.origin.received, b"")
        return tunnel, relay

    def test_sendError(self) -> Any:
        """
        A send that fails (here C{ECONNRESET}) aborts both connections and
        drops what the direction held.
        """

        def reset(data: Any) -> int:
            raise ConnectionResetError(errno.ECONNRESET, "reset")

        return self._sendFails(reset)

    @defer.inlineCallbacks
    def test_sendMovesNothing(self) -> Any:
        """
        A send that returns 0 (which a stream socket never does) aborts the
        tunnel instead of retrying for ever.
        """
        calls = []

        def nothing(data: Any) -> int:
            calls.append(len(data))
            if len(calls) > 100:
                # Spinning in the reactor thread: no timeout could fire.
                raise RuntimeError("send retried for ever")
            return 0

        yield self._sendFails(nothing)
        self.assertEqual(len(calls), 1)

    @defer.inlineCallbacks
    def test_slowReaderHoldsLittle(self) -> Any:
        """
        A direction whose reader is slow reads small pieces: while the
        origin sends fast and the client reads a little at a time, what the
        relay holds stays within a few L{relaying.MIN_READ_SIZE} reads, not
        whole 1 MiB ones, and every byte arrives.
        """
        tunnel = yield _Tunnel(self).open()
        # Plenty waiting on the origin's side, little room on the client's.
        tunnel.b.transport.socket.setsockopt(
            socket.SOL_SOCKET, socket.SO_RCVBUF, 2 * 2**20
        )
        tunnel.a.transport.socket.setsockopt(
            socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024
        )
        tunnel.client.transport.socket.setsockopt(
            socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024
        )
        relay = TunnelRelay(tunnel.a.transport, tunnel.b.transport)
        self.assertTrue(relay.start())
        direction = relay._directions[1]
        tunnel.client.transport.pauseProducing()
        down = _payload(8 * 2**20)
        tunnel.origin.transport.write(down)
        # The client reads 32 KiB every few milliseconds, straight from its
        # socket (its transport stays paused).
        sock = tunnel.client.transport.socket
        got = bytearray()
        held = []
        for _ in range(60):
            yield _sleep(0.005)
            held.append(len(direction.held))
            try:
                got += sock.recv(32 * 1024)
            except BlockingIOError:
                pass
        self.assertGreater(max(held), 0)
        self.assertLessEqual(max(held), 256 * 1024)
        tunnel.client.transport.resumeProducing()
        yield _until(lambda: len(got) + len(tunnel.client.received) == len(down))
        self.assertTrue(bytes(got) + bytes(tunnel.client.received) == down)
        tunnel.client.transport.loseConnection()
        yield tunnel.close(relay)

    @defer.inlineCallbacks
    def test_smallMessagesNotHeldBack(self) -> Any:
        """
        An interactive exchange (small request, small answer, repeated)
        through the relay takes milliseconds per round trip: the relay
        never holds a short read back for more to come, and never asks the
        kernel to (corking the socket leaves the last partial segment of
        every burst waiting).
        """
        tunnel = yield _Tunnel(self).open(accelerate=True)
        relay = TunnelRelay(tunnel.a.transport, tunnel.b.transport)
        self.assertTrue(relay.start())
        rounds = 20
        request, answer = b"q" * 100, b"a" * 300
        started = time.monotonic()
        for done in range(1, rounds + 1):
            tunnel.client.transport.write(request)
            yield _until(lambda: len(tunnel.origin.received) == done * len(request))
            tunnel.origin.transport.write(answer)
            yield _until(lambda: len(tunnel.client.received) == done * len(answer))
        elapsed = time.monotonic() - started
        # Each round trip polls twice every 5 ms (about 15 ms in all on a
        # busy machine); with a corked socket (splice's SPLICE_F_MORE, once
        # tried) each took about 400 ms, the held-back segments waiting for
        # a timer.
        self.assertLess(elapsed, rounds * 0.1)
        self.assertEqual(
            (relay.bytesAtoB, relay.bytesBtoA),
            (rounds * len(request), rounds * len(answer)),
        )
        tunnel.client.transport.loseConnection()
        yield tunnel.close(relay)

    @defer.inlineCallbacks
    def test_clientHalfCloses(self) -> Any:
        """
        The client's end of file reaches the origin while the other
        direction keeps running: the origin answers after it and the
        client gets the whole answer.
        """
        tunnel = yield _Tunnel(self).open()
        relay = TunnelRelay(tunnel.a.transport, tunnel.b.transport)
        self.assertTrue(relay.start())
        request, answer = _payload(300_000), _payload(2 * 2**20)

        def answerAfterEof() -> None:
            self.assertFalse(tunnel.client.eof.called)
            tunnel.origin.transport.write(answer)
            tunnel.origin.transport.loseConnection()

        tunnel.origin.onEof = answerAfterEof
        tunnel.client.transport.write(request)
        tunnel.client.transport.loseWriteConnection()
        yield tunnel.close(relay)
        self.assertEqual(bytes(tunnel.origin.received), request)
        self.assertEqual(bytes(tunnel.client.received), answer)
        self.assertTrue(tunnel.client.eof.called)
        for side in (tunnel.a, tunnel.b):
            side.lostReason.trap(ConnectionDone)

    @defer.inlineCallbacks
    def test_originHalfCloses(self) -> Any:
        """
        The origin's end of file reaches the client while the other
        direction keeps running.
        """
        tunnel = yield _Tunnel(self).open(accelerate=True)
        relay = TunnelRelay(tunnel.a.transport, tunnel.b.transport)
        self.assertTrue(relay.start())
        greeting, request = _payload(1_000_000), _payload(3 * 2**20)

        def sendAfterEof() -> None:
            self.assertFalse(tunnel.origin.eof.called)
            tunnel.client.transport.write(request)
            tunnel.client.transport.loseConnection()

        tunnel.client.onEof = sendAfterEof
        tunnel.origin.transport.write(greeting)
        tunnel.origin.transport.loseWriteConnection()
        yield tunnel.close(relay)
        self.assertEqual(bytes(tunnel.client.received), greeting)
        self.assertEqual(bytes(tunnel.origin.received), request)
        self.assertEqual(
            (relay.bytesAtoB, relay.bytesBtoA), (len(request), len(greeting))
        )

    @defer.inlineCallbacks
    def _resetMidTransfer(self, resetClient: bool) -> Any:
        tunnel = yield _Tunnel(self).open(accelerate=True)
        relay = TunnelRelay(tunnel.a.transport, tunnel.b.transport)
        self.assertTrue(relay.start())
        if resetClient:
            sender, resetter, survivor = tunnel.origin, tunnel.client, tunnel.origin
        else:
            sender, resetter, survivor = tunnel.client, tunnel.origin, tunnel.client
        sender.transport.write(_payload(16 * 2**20))
        yield _until(lambda: len(resetter.received) > 0)
        resetter.transport.abortConnection()
        yield tunnel.close(relay)
        self.assertFalse(survivor.lostReason.check(ConnectionDone))
        for side in (tunnel.a, tunnel.b):
            self.assertFalse(side.lostReason.check(ConnectionDone))
            self.assertEqual(side.received, b"")

    def test_clientReset(self) -> Any:
        """
        A client that resets mid-transfer gets the upstream aborted: the
        origin sees the connection lost, not a clean close.
        """
        return self._resetMidTransfer(resetClient=True)

    def test_originReset(self) -> Any:
        """
        An origin that resets mid-transfer gets the client connection
        aborted.
        """
        return self._resetMidTransfer(resetClient=False)

    @defer.inlineCallbacks
    def _closeFromOutside(self, side: str, abort: bool) -> Any:
        tunnel = yield _Tunnel(self).open(accelerate=True)
        relay = TunnelRelay(tunnel.a.transport, tunnel.b.transport)
        self.assertTrue(relay.start())
        up, down = _payload(16 * 2**20), _payload(16 * 2**20)
        tunnel.client.transport.write(up)
        tunnel.origin.transport.write(down)
        yield _until(
            lambda: len(tunnel.client.received) > 0 and len(tunnel.origin.received) > 0
        )
        transport = getattr(tunnel, side).transport
        if abort:
            transport.abortConnection()
            transport.abortConnection()
        else:
            transport.loseConnection()
            transport.loseConnection()
        yield tunnel.close(relay)
        expected = ConnectionAborted if abort else ConnectionDone
        for proxySide in (tunnel.a, tunnel.b):
            proxySide.lostReason.trap(expected)
            self.assertEqual(proxySide.received, b"")
        # What got through is a prefix of what was sent, and is counted.
        self.assertTrue(up.startswith(tunnel.origin.received))
        self.assertTrue(down.startswith(tunnel.client.received))
        # Delivered counts what the proxy's sockets accepted; a peer may
        # lose the tail of it when its connection is reset.
        self.assertLessEqual(len(tunnel.origin.received), relay.bytesAtoB)
        self.assertLessEqual(len(tunnel.client.received), relay.bytesBtoA)

    def test_loseConnectionClientSide(self) -> Any:
        """
        C{loseConnection} on the client-side transport mid-transfer cuts
        the tunnel: both connections close cleanly, nothing raises, no
        descriptor leaks.
        """
        return self._closeFromOutside("a", abort=False)

    def test_loseConnectionUpstreamSide(self) -> Any:
        """
        C{loseConnection} on the upstream transport mid-transfer cuts the
        tunnel the same way.
        """
        return self._closeFromOutside("b", abort=False)

    def test_abortConnectionClientSide(self) -> Any:
        """
        C{abortConnection} on the client-side transport aborts both
        connections.
        """
        return self._closeFromOutside("a", abort=True)

    def test_abortConnectionUpstreamSide(self) -> Any:
        """
        C{abortConnection} on the upstream transport aborts both
        connections.
        """
        return self._closeFromOutside("b", abort=True)

    @defer.inlineCallbacks
    def test_drainWaitsForSlowReader(self) -> Any:
        """
        C{loseConnection} while the origin does not read keeps the tunnel
        until what it holds is delivered, like Twisted flushing its buffer: the
        origin, once it reads again, gets every byte taken from the client
        and then a clean close.
        """
        # Whole 1 MiB reads: what is held then cannot fit into the slack
        # of the origin's buffers before it reads again.
        self.patch(relaying, "MIN_READ_SIZE", relaying.READ_SIZE)
        tunnel = yield _Tunnel(self).open(smallBuffers=True)
        tunnel.origin.transport.pauseProducing()
        relay = TunnelRelay(tunnel.a.transport, tunnel.b.transport)
        self.assertTrue(relay.start())
        up = _payload(8 * 2**20)
        producer = _Chunks(tunnel.client.transport, up)
        tunnel.client.transport.registerProducer(producer, False)
        yield _stuck(producer)
        tunnel.a.transport.loseConnection()
        yield _sleep(0.1)
        self.assertTrue(relay.running)
        self.assertGreater(len(relay._directions[0].held), 0)
        tunnel.origin.transport.resumeProducing()
        yield tunnel.close(relay)
        self.assertEqual(len(tunnel.origin.received), relay.bytesAtoB)
        self.assertEqual(bytes(tunnel.origin.received), up[: relay.bytesAtoB])
        self.assertTrue(tunnel.origin.eof.called)
        for side in (tunnel.a, tunnel.b):
            side.lostReason.trap(ConnectionDone)

    @defer.inlineCallbacks
    def test_reactorConnectionLost(self) -> Any:
        """
        C{connectionLost} delivered by the reactor to one transport (as its
        C{_disconnectSelectable} does on an error event or at shutdown)
        reaches that protocol with its reason and aborts the other side.
        """
        tunnel = yield _Tunnel(self).open()
        relay = TunnelRelay(tunnel.a.transport, tunnel.b.transport)
        self.assertTrue(relay.start())
        transport = tunnel.a.transport
        reactor.removeReader(transport)
        reactor.removeWriter(transport)
        transport.connectionLost(Failure(ConnectionLost()))
        yield tunnel.close(relay)
        tunnel.a.lostReason.trap(ConnectionLost)
        self.assertIs(tunnel.a.lostType, tcp.Server)
        tunnel.b.lostReason.trap(ConnectionAborted)

    @defer.inlineCallbacks
    def test_reactorReadConnectionLost(self) -> Any:
        """
        A hang-up the reactor reports as C{readConnectionLost} (without a
        readable event) ends that direction like an end of file: the
        origin sees it, the other direction keeps running, and the tunnel
        closes cleanly once the origin closes too.
        """
        tunnel = yield _Tunnel(self).open()
        relay = TunnelRelay(tunnel.a.transport, tunnel.b.transport)
        self.assertTrue(relay.start())
        answer = _payload(500_000)

        def answerAfterEof() -> None:
            tunnel.origin.transport.write(answer)
            tunnel.origin.transport.loseConnection()

        tunnel.origin.onEof = answerAfterEof
        transport = tunnel.a.transport
        reactor.removeReader(transport)
        transport.readConnectionLost(Failure(ConnectionDone()))
        yield tunnel.close(relay)
        self.assertEqual(bytes(tunnel.client.received), answer)
        self.assertTrue(tunnel.origin.eof.called)
        self.assertFalse(tunnel.a.eof.called)
        for side in (tunnel.a, tunnel.b):
            side.lostReason.trap(ConnectionDone)

    @defer.inlineCallbacks
    def test_pauseProducing(self) -> Any:
        """
        C{pauseProducing} on a relayed transport stops the relay reading
        from it until C{resumeProducing}.
        """
        tunnel = yield _Tunnel(self).open()
        relay = TunnelRelay(tunnel.a.transport, tunnel.b.transport)
        self.assertTrue(relay.start())
        tunnel.a.transport.pauseProducing()
        request = _payload(100_000)
        tunnel.client.transport.write(request)
        yield _sleep(0.1)
        self.assertEqual(tunnel.origin.received, b"")
        tunnel.a.transport.resumeProducing()
        yield _until(lambda: len(tunnel.origin.received) == len(request))
        self.assertEqual(bytes(tunnel.origin.received), request)
        tunnel.a.transport.loseConnection()
        yield tunnel.close(relay)

    @defer.inlineCallbacks
    def test_writeRefused(self) -> Any:
        """
        Writing to a relayed transport raises instead of interleaving bytes
        at an arbitrary point of the stream; C{start} works only once.
        """
        tunnel = yield _Tunnel(self).open()
        relay = TunnelRelay(tunnel.a.transport, tunnel.b.transport)
        self.assertTrue(relay.start())
        self.assertFalse(relay.start())
        for transport in (tunnel.a.transport, tunnel.b.transport):
            self.assertRaises(RuntimeError, transport.write, b"x")
            self.assertRaises(RuntimeError, transport.writeSequence, [b"x"])
            self.assertRaises(RuntimeError, transport.loseWriteConnection)
        tunnel.b.transport.loseConnection()
        yield tunnel.close(relay)

    @defer.inlineCallbacks
    def test_urgentData(self) -> Any:
        """
        TCP urgent data does not wedge the relay (the kernel's splice(2),
        which an earlier relay used, stopped at the urgent mark for good,
        and the reactor spun); the urgent byte is dropped, as Twisted's
        reads drop it, and what follows is relayed.
        """
        tunnel = yield _Tunnel(self).open()
        relay = TunnelRelay(tunnel.a.transport, tunnel.b.transport)
        self.assertTrue(relay.start())
        sock = tunnel.client.transport.socket
        sock.send(b"before")
        yield _until(lambda: bytes(tunnel.origin.received) == b"before")
        sock.send(b"!", socket.MSG_OOB)
        sock.send(b"after")
        yield _until(lambda: bytes(tunnel.origin.received) == b"beforeafter")
        cpu = time.process_time()
        yield _sleep(0.3)
        self.assertLess(time.process_time() - cpu, 0.1)
        tunnel.origin.transport.write(b"back")
        yield _until(lambda: bytes(tunnel.client.received) == b"back")
        tunnel.b.transport.loseConnection()
        yield tunnel.close(relay)

    @defer.inlineCallbacks
    def test_urgentDataThenEnd(self) -> Any:
        """
        Bytes after urgent data are relayed even when the sender's end of
        file is already in: stopping at the urgent byte is not the end of
        the stream.
        """
        tunnel = yield _Tunnel(self).open()
        relay = TunnelRelay(tunnel.a.transport, tunnel.b.transport)
        self.assertTrue(relay.start())
        tunnel.a.transport.pauseProducing()
        sock = tunnel.client.transport.socket
        sock.send(b"before")
        sock.send(b"!", socket.MSG_OOB)
        sock.send(b"after")
        sock.shutdown(socket.SHUT_WR)
        yield _sleep(0.1)
        tunnel.a.transport.resumeProducing()
        yield _bounded(tunnel.origin.eof)
        self.assertEqual(bytes(tunnel.origin.received), b"beforeafter")
        yield tunnel.close(relay)

    @defer.inlineCallbacks
    def test_noWriteAfterAbort(self) -> Any:
        """
        After C{abortConnection}, a fast transport's write sends nothing,
        as Twisted's does (its send-at-once path used to send it).
        """
        tunnel = yield _Tunnel(self).open(accelerate=True)
        self.assertIsInstance(tunnel.a.transport, fastio.FastServer)
        tunnel.a.transport.abortConnection()
        tunnel.a.transport.write(b"after abort")
        yield _sleep(0.1)
        self.assertEqual(bytes(tunnel.client.received), b"")
        tunnel.b.transport.loseConnection()
        yield tunnel.allLost()
        for port in tunnel.ports:
            yield port.stopListening()


@defer.inlineCallbacks
def _receivedAll(testCase: unittest.TestCase, peer: _Peer, expected: bytes) -> Any:
    """
    Wait until C{peer} has received as many bytes as C{expected}, then
    check they are those.
    """
    yield _until(lambda: len(peer.received) == len(expected))
    testCase.assertEqual(bytes(peer.received), expected)


def _lowWaterMark(peer: _Peer) -> int:
    return peer.transport.socket.getsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT)


class BulkModeTests(unittest.TestCase):
    """
    A direction that reads fast waits for L{relaying.BULK_LOWAT} bytes per
    wake-up, its last bytes still arrive, and everything else stays eager.
    """

    timeout = 10

    @defer.inlineCallbacks
    def _relay(self, check: Optional[float] = None) -> Any:
        """
        Start a relay on a new tunnel; with C{check}, bulk mode uses a 16 KiB
        mark and checks every C{check} seconds (with 0.05 or more, any
        stream of a test is fast enough to enter it).

        @return: a L{Deferred} firing with the tunnel, the relay, and the
            list L{_entries} fills.
        """
        if check is not None:
            # A small mark also passes the receive buffer guard whatever the
            # buffer's autotuning.
            self.patch(relaying, "BULK_LOWAT", 16 * 1024)
            self.patch(relaying, "BULK_MIN_MARK", 4 * 1024)
            self.patch(relaying, "BULK_CHECK", check)
            # BULK_BURST at the rate that fills this mark within a check.
            self.patch(
                relaying, "BULK_WINDOW", relaying.BULK_BURST / (16 * 1024) * check
            )
        tunnel = yield _Tunnel(self).open()
        relay = TunnelRelay(tunnel.a.transport, tunnel.b.transport)
        self.assertTrue(relay.start())
        return tunnel, relay, self._entries(relay)

    def _entries(self, relay: TunnelRelay) -> list[int]:
        """
        @return: a list that gets the source's low-water mark each time a
            direction of C{relay} enters bulk mode.
        """
        entered: list[int] = []
        burstRead = relay._burstRead

        def spy(direction: Any) -> None:
            burstRead(direction)
            if direction.bulk:
                entered.append(
                    direction.source.socket.getsockopt(
                        socket.SOL_SOCKET, socket.SO_RCVLOWAT
                    )
                )

        relay._burstRead = spy  # type: ignore[method-assign]
        return entered

    @defer.inlineCallbacks
    def test_burstThenTail(self) -> Any:
        """
        A fast burst raises the source's low-water mark; bytes that follow
        below the mark, with the connection left open, arrive within a
        check or two, and the mark is lowered again.
        """
        tunnel, relay, entered = yield self._relay(check=0.05)
        down = _payload(8 * 2**20)
        tunnel.origin.transport.write(down)
        yield _until(lambda: len(tunnel.client.received) == len(down))
        self.assertEqual(entered[:1], [16 * 1024])
        direction = relay._directions[1]
        self.assertTrue(direction.bulk)
        self.assertEqual(_lowWaterMark(tunnel.b), 16 * 1024)

        started = time.monotonic()
        tunnel.origin.transport.write(b"tail")
        yield _until(lambda: len(tunnel.client.received) == len(down) + 4)
        self.assertLess(time.monotonic() - started, 1.0)
        yield _until(lambda: not direction.bulk)
        self.assertEqual(_lowWaterMark(tunnel.b), 1)
        self.assertEqual(bytes(tunnel.client.received), down + b"tail")
        tunnel.client.transport.loseConnection()
        yield tunnel.close(relay)

    @defer.inlineCallbacks
    def test_slowStreamStaysEager(self) -> Any:
        """
        A stream slower than the threshold (here 64 KiB every 20 ms, against
        16 MB/s) never enters bulk mode: each piece is relayed as it comes.
        """
        tunnel, relay, entered = yield self._relay(check=0.001)
        piece = _payload(64 * 1024)
        pieces = 24
        for sent in range(1, pieces + 1):
            tunnel.origin.transport.write(piece)
            yield _until(lambda: len(tunnel.client.received) == sent * len(piece))
            yield _sleep(0.02)
        self.assertGreater(pieces * len(piece), relaying.BULK_BURST)
        self.assertEqual(entered, [])
        self.assertEqual(_lowWaterMark(tunnel.b), 1)
        tunnel.client.transport.loseConnection()
        yield tunnel.close(relay)

    @defer.inlineCallbacks
    def _blockedInBulkMode(self) -> Any:
        """
        Start a relay (50 ms checks) and get its origin-to-client direction
        into bulk mode and blocked on a client that stopped reading.

        @return: a L{Deferred} firing with the tunnel, the relay, the
            direction and the bytes the origin sent.
        """
        tunnel, relay, entered = yield self._relay(check=0.05)
        tunnel.client.transport.socket.setsockopt(
            socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024
        )
        direction = relay._directions[1]
        # A first stream lets the relay's send buffer grow, so that the
        # second is read fast for long enough to enter the mode before the
        # client's window closes.
        sent = _payload(4 * 2**20)
        tunnel.origin.transport.write(sent)
        yield _until(lambda: len(tunnel.client.received) == len(sent))
        yield _until(lambda: not direction.bulk)
        before = len(entered)
        tunnel.client.transport.pauseProducing()
        second = _payload(16 * 2**20)
        sent += second
        tunnel.origin.transport.write(second)
        yield _until(lambda: direction.blocked)
        self.assertGreater(len(entered), before)
        self.assertTrue(direction.bulk)
        return tunnel, relay, direction, sent

    @defer.inlineCallbacks
    def test_blockedStaysInBulkMode(self) -> Any:
        """
        A direction whose destination stops reading stays in bulk mode,
        with no checks while it is blocked; once the destination reads
        again everything arrives and the checks resume.
        """
        tunnel, relay, direction, sent = yield self._blockedInBulkMode()
        yield _sleep(0.3)
        self.assertTrue(direction.blocked)
        self.assertTrue(direction.bulk)
        self.assertEqual(_lowWaterMark(tunnel.b), 16 * 1024)
        self.assertIsNone(direction.check)

        tunnel.client.transport.resumeProducing()
        yield _until(lambda: direction.check is not None or not direction.bulk)
        yield _until(lambda: len(tunnel.client.received) == len(sent))
        yield _until(lambda: not direction.bulk)
        self.assertEqual(_lowWaterMark(tunnel.b), 1)
        self.assertEqual(bytes(tunnel.client.received), sent)
        tunnel.client.transport.loseConnection()
        yield tunnel.close(relay)

    @defer.inlineCallbacks
    def test_pausedWhileBlocked(self) -> Any:
        """
        A bulk-mode direction paused while blocked gets its checks back
        when the destination drains: once resumed, bytes below the mark
        still arrive.
        """
        tunnel, relay, direction, sent = yield self._blockedInBulkMode()
        yield _sleep(0.3)
        self.assertIsNone(direction.check)
        tunnel.b.transport.pauseProducing()
        tunnel.client.transport.resumeProducing()
        yield _until(lambda: not direction.blocked)
        self.assertTrue(direction.check is not None or not direction.bulk)
        yield _sleep(0.2)
        tunnel.origin.transport.write(b"tail")
        yield _sleep(0.1)
        tunnel.b.transport.resumeProducing()
        yield _receivedAll(self, tunnel.client, sent + b"tail")
        tunnel.client.transport.loseConnection()
        yield tunnel.close(relay)

    @defer.inlineCallbacks
    def test_markFollowsReceiveBuffer(self) -> Any:
        """
        A source whose receive buffer is under four marks enters bulk mode
        with a quarter of the buffer as its mark, and the mark rises as the
        buffer grows (Linux grows a new connection's while it runs).
        """
        tunnel, relay, entered = yield self._relay(check=0.2)
        source = tunnel.b.transport.socket
        source.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
        small = source.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) // 4
        self.assertLess(small, 16 * 1024)
        # Pieces every 10 ms: reads come between any two checks, so the
        # stream stays in bulk mode throughout (one entry).
        sent = b""
        for _ in range(200):
            if entered:
                break
            piece = _payload(64 * 1024)
            sent += piece
            tunnel.origin.transport.write(piece)
            yield _sleep(0.01)
        self.assertEqual(entered, [small])

        source.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        for _ in range(100):
            if _lowWaterMark(tunnel.b) == 16 * 1024:
                break
            piece = _payload(64 * 1024)
            sent += piece
            tunnel.origin.transport.write(piece)
            yield _sleep(0.01)
        self.assertEqual(_lowWaterMark(tunnel.b), 16 * 1024)
        self.assertEqual(entered, [small])
        yield _receivedAll(self, tunnel.client, sent)
        tunnel.client.transport.loseConnection()
        yield tunnel.close(relay)

    @defer.inlineCallbacks
    def test_endInBulkMode(self) -> Any:
        """
        A relay that ends in bulk mode cancels its pending check.
        """
        tunnel, relay, entered = yield self._relay(check=5.0)
        down = _payload(4 * 2**20)
        tunnel.origin.transport.write(down)
        tunnel.origin.transport.loseWriteConnection()
        tunnel.client.transport.loseWriteConnection()
        yield tunnel.close(relay)
        self.assertEqual(bytes(tunnel.client.received), down)
        self.assertEqual(entered[:1], [16 * 1024])
        self.assertEqual(
            [call for call in reactor.getDelayedCalls() if "_checkBulk" in repr(call)],
            [],
        )
        self.assertIsNone(relay._directions[1].check)

    @defer.inlineCallbacks
    def test_smallBufferStaysEager(self) -> Any:
        """
        With the real marks, a fast source whose receive buffer is under
        four times L{relaying.BULK_MIN_MARK} does not enter bulk mode: it
        would wake the relay for too little each time.
        """
        self.patch(relaying, "BULK_WINDOW", 60.0)
        tunnel, relay, entered = yield self._relay()
        source = tunnel.b.transport.socket
        source.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        self.assertLess(
            source.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) // 4,
            relaying.BULK_MIN_MARK,
        )
        down = _payload(4 * 2**20)
        tunnel.origin.transport.write(down)
        yield _receivedAll(self, tunnel.client, down)
        self.assertEqual(entered, [])
        self.assertEqual(_lowWaterMark(tunnel.b), 1)
        tunnel.client.transport.loseConnection()
        yield tunnel.close(relay)

    @defer.inlineCallbacks
    def test_checkFailureEndsTunnel(self) -> Any:
        """
        An exception while a check reads what waits below the mark (which
        the reactor would only log) aborts the tunnel first, so nothing is
        left running with a view of the shared buffer.
        """
        tunnel, relay, entered = yield self._relay(check=5.0)
        down = _payload(4 * 2**20)
        tunnel.origin.transport.write(down)
        direction = relay._directions[1]
        # The last bytes may wait below the 16 KiB mark for a check, which
        # comes only after 5 s here: all but a mark's worth will do.
        yield _until(
            lambda: len(tunnel.client.received) > len(down) - 16 * 1024
            and direction.bulk
            and not direction.blocked
        )
        direction.check.cancel()
        direction.check = None
        direction.quiet = True

        def broken(buffer: Any, size: int) -> int:
            raise RuntimeError("broken")

        direction.recvInto = broken
        self.assertRaises(RuntimeError, relay._checkBulk, direction)
        self.assertFalse(relay.running)
        yield tunnel.close(relay)
        for side in (tunnel.a, tunnel.b):
            side.lostReason.trap(ConnectionAborted)


class RefusalTests(unittest.TestCase):
    """
    L{TunnelRelay.start} returns C{False} and changes nothing when it
    cannot take both transports over.
    """

    timeout = 10

    def _refused(self, tunnel: _Tunnel) -> TunnelRelay:
        """
        Check that a relay cannot start on the tunnel and that the
        transports still work as before; then close everything.
        """
        a, b = tunnel.a.transport, tunnel.b.transport
        types = (type(a), type(b))
        relay = TunnelRelay(a, b)
        self.assertFalse(relay.start())
        self.assertFalse(relay.running)
        self.assertEqual((type(a), type(b)), types)
        self.assertEqual(len(relay._buffer), 0)
        return relay

    @defer.inlineCallbacks
    def test_bufferedData(self) -> Any:
        """
        A transport with bytes still in Twisted's write buffer is refused,
        and the bytes are still delivered.
        """
        tunnel = yield _Tunnel(self).open()
        # A plain tcp.Server only sends on the next reactor turn.
        tunnel.a.transport.write(b"buffered")
        self._refused(tunnel)
        yield _until(lambda: tunnel.client.received == b"buffered")
        tunnel.a.transport.loseConnection()
        tunnel.b.transport.loseConnection()
        yield tunnel.close()

    @defer.inlineCallbacks
    def test_producerRegistered(self) -> Any:
        """
        A transport with a producer still registered is refused.
        """
        tunnel = yield _Tunnel(self).open()
        tunnel.a.transport.registerProducer(tunnel.b.transport, True)
        self._refused(tunnel)
        tunnel.a.transport.unregisterProducer()
        tunnel.a.transport.loseConnection()
        tunnel.b.transport.loseConnection()
        yield tunnel.close()

    @defer.inlineCallbacks
    def test_alreadyHalfClosed(self) -> Any:
        """
        A client whose end of file was already delivered is refused (the
        relay could not pass that half-close on), and so is a transport
        whose write side is being shut down.
        """
        tunnel = yield _Tunnel(self).open()
        tunnel.a.ignoreEof()
        tunnel.client.ignoreEof()
        tunnel.client.transport.loseWriteConnection()
        yield _bounded(tunnel.a.eof)
        self._refused(tunnel)
        # The same with the end of file not yet read by Twisted.
        tunnel.origin.ignoreEof()
        tunnel.b.transport.pauseProducing()
        tunnel.origin.transport.loseWriteConnection()
        sock = tunnel.b.transport.socket
        yield _until(lambda: _peekEof(sock))
        self.assertFalse(TunnelRelay(tunnel.b.transport, tunnel.a.transport).start())
        tunnel.b.transport.resumeProducing()
        yield _bounded(tunnel.b.eof)
        tunnel.a.transport.loseWriteConnection()
        self._refused(tunnel)
        tunnel.a.transport.loseConnection()
        tunnel.b.transport.loseConnection()
        tunnel.client.transport.loseConnection()
        tunnel.origin.transport.loseConnection()
        yield tunnel.close()

    @defer.inlineCallbacks
    def test_disconnecting(self) -> Any:
        """
        A transport already closing is refused.
        """
        tunnel = yield _Tunnel(self).open()
        tunnel.a.transport.loseConnection()
        self._refused(tunnel)
        tunnel.b.transport.loseConnection()
        yield tunnel.close()

    @defer.inlineCallbacks
    def test_sameTransport(self) -> Any:
        """
        A transport cannot be relayed to itself, and one side being a test
        double is enough to refuse.
        """
        tunnel = yield _Tunnel(self).open()
        a = tunnel.a.transport
        self.assertFalse(TunnelRelay(a, a).start())
        self.assertFalse(TunnelRelay(a, StringTransport()).start())
        self.assertIs(type(a), tcp.Server)
        a.loseConnection()
        tunnel.b.transport.loseConnection()
        yield tunnel.close()


def _peekEof(sock: socket.socket) -> bool:
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
