# -*- test-case-name: tests.test_fastio -*-
"""
Tests for L{proxyapp.fastio}: they fail loudly if a Twisted upgrade changes
the internals the fast transports and the fast epoll loop rely on.
"""

from __future__ import annotations

import errno
import os
import socket
import time
from typing import Any

from twisted.internet import abstract, defer, protocol, reactor, tcp
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactor, MemoryReactorClock
from twisted.python.failure import Failure
from twisted.trial import unittest

from proxyapp import fastio


class InternalsTests(unittest.SynchronousTestCase):
    """
    The attributes and methods the fast paths use still exist.
    """

    def test_supported(self) -> None:
        """
        The installed Twisted's TCP connection class has every method and
        attribute the fast subclasses override or read.
        """
        self.assertTrue(fastio.supported())

    def test_bufferAttributes(self) -> None:
        """
        A file descriptor still keeps its write buffer in C{dataBuffer},
        C{offset}, C{_tempDataBuffer} and C{_tempDataLen}.
        """
        descriptor = abstract.FileDescriptor(reactor=MemoryReactor())
        for name in (
            "dataBuffer",
            "offset",
            "_tempDataBuffer",
            "_tempDataLen",
            "_writeDisconnected",
            "producer",
            "streamingProducer",
            "producerPaused",
            "bufferSize",
        ):
            self.assertTrue(hasattr(descriptor, name), name)

    def test_fastClasses(self) -> None:
        """
        The fast transports are subclasses of Twisted's TCP server and client
        connections, so switching C{__class__} keeps every other behaviour.
        """
        self.assertTrue(issubclass(fastio.FastServer, tcp.Server))
        self.assertTrue(issubclass(fastio.FastClient, tcp.Client))

    def test_otherTransportsUntouched(self) -> None:
        """
        L{fastio.accelerate} leaves transports that are not plain TCP alone.
        """
        from twisted.internet.testing import StringTransport

        transport = StringTransport()
        self.assertFalse(fastio.accelerate(transport))
        self.assertIs(type(transport), StringTransport)

    def test_pollingOnlyForEpoll(self) -> None:
        """
        L{fastio.acceleratePolling} changes nothing but an epoll reactor.
        """
        self.assertFalse(fastio.acceleratePolling(MemoryReactor()))


class PollingTests(unittest.SynchronousTestCase):
    """
    The epoll loop without per-event logging context still dispatches.
    """

    def test_dispatchesReads(self) -> None:
        """
        After L{fastio.acceleratePolling}, an iteration of a fresh epoll
        reactor still calls C{doRead} on a readable descriptor.
        """
        from twisted.internet.epollreactor import EPollReactor

        fresh = EPollReactor()
        self.addCleanup(fresh._poller.close)
        self.assertTrue(fastio.acceleratePolling(fresh))
        left, right = socket.socketpair()
        self.addCleanup(left.close)
        self.addCleanup(right.close)
        reads: list[bytes] = []

        class Reader(abstract.FileDescriptor):
            def fileno(self) -> int:
                return left.fileno()

            def doRead(self) -> None:
                reads.append(left.recv(100))

        reader = Reader(reactor=fresh)
        fresh.addReader(reader)
        self.addCleanup(fresh.removeReader, reader)
        right.send(b"x")
        fresh.doIteration(1.0)
        self.assertEqual(reads, [b"x"])

    def test_readFailuresDisconnect(self) -> None:
        """
        A read event whose C{doRead} raises is logged, and the selectable
        is disconnected with the exception; one whose C{doRead} returns a
        reason is disconnected with it.  Neither stops the loop.
        """
        from twisted.internet.epollreactor import EPollReactor
        from twisted.python.failure import Failure

        fresh = EPollReactor()
        self.addCleanup(fresh._poller.close)
        self.assertTrue(fastio.acceleratePolling(fresh))
        lost: list[tuple[str, Any]] = []

        class Reader(abstract.FileDescriptor):
            def __init__(
                self, name: str, sock: socket.socket, outcome: Exception
            ) -> None:
                abstract.FileDescriptor.__init__(self, reactor=fresh)
                self.name = name
                self.sock = sock
                self.outcome = outcome

            def fileno(self) -> int:
                return self.sock.fileno()

            def doRead(self) -> Any:
                self.sock.recv(100)
                if self.name == "raises":
                    raise self.outcome
                return self.outcome

            def connectionLost(self, reason: Failure) -> None:
                lost.append((self.name, reason.value))

        pairs = [socket.socketpair() for _ in range(2)]
        for left, right in pairs:
            self.addCleanup(left.close)
            self.addCleanup(right.close)
            right.send(b"x")
        boom = ValueError("boom")
        done = ConnectionDone("read side done")
        fresh.addReader(Reader("raises", pairs[0][0], boom))
        fresh.addReader(Reader("returns", pairs[1][0], done))
        fresh.doIteration(1.0)
        self.assertEqual(
            sorted((name, type(value)) for name, value in lost),
            [("raises", ValueError), ("returns", ConnectionDone)],
        )
        self.assertIn(("raises", boom), lost)
        self.assertEqual(self.flushLoggedErrors(ValueError)[0].value, boom)
        self.assertNotIn(pairs[0][0].fileno(), fresh._selectables)
        self.assertNotIn(pairs[1][0].fileno(), fresh._selectables)

    def test_exceptionsStayInTheirEvent(self) -> None:
        """
        An exception outside C{doRead} (here from C{connectionLost}, run
        when a read returned a reason) is logged and the poll's other
        events still run, as with Twisted's own loop; it used to escape
        the iteration and skip them.
        """
        from twisted.internet import main
        from twisted.internet.epollreactor import EPollReactor

        fresh = EPollReactor()
        self.addCleanup(fresh._poller.close)
        self.assertTrue(fastio.acceleratePolling(fresh))
        reads: list[str] = []

        class Reader(abstract.FileDescriptor):
            def __init__(self, name: str, sock: socket.socket) -> None:
                abstract.FileDescriptor.__init__(self, reactor=fresh)
                self.name = name
                self.sock = sock

            def fileno(self) -> int:
                return self.sock.fileno()

            def doRead(self) -> Any:
                reads.append(self.name)
                self.sock.recv(100)
                return main.CONNECTION_LOST

            def connectionLost(self, reason: Any) -> None:
                raise RuntimeError("a buggy connectionLost")

        readers = []
        for name in ("one", "two"):
            left, right = socket.socketpair()
            self.addCleanup(left.close)
            self.addCleanup(right.close)
            right.send(b"x")
            reader = Reader(name, left)
            readers.append(reader)
            fresh.addReader(reader)
        fresh.doIteration(1.0)
        for reader in readers:
            fresh.removeReader(reader)
        self.assertEqual(sorted(reads), ["one", "two"])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 2)


class _Socket:
    """
    A socket whose C{send} and C{sendmsg} take at most C{accept} bytes of
    what they are offered and record every offer.
    """

    def __init__(self, accept: int) -> None:
        self.accept = accept
        self.offered: list[int] = []
        self.gathers: list[list[int]] = []
        self.sent: list[bytes] = []

    def send(self, data: Any) -> int:
        self.offered.append(len(data))
        taken = bytes(data[: self.accept])
        self.sent.append(taken)
        return len(taken)

    def sendmsg(self, pieces: list[Any]) -> int:
        self.gathers.append([len(piece) for piece in pieces])
        taken = b"".join(pieces)[: self.accept]
        self.sent.append(taken)
        return len(taken)


def _detachedServer(accept: int) -> Any:
    """
    A L{fastio.FastServer} over a L{_Socket}, built without a real socket.
    """
    transport = object.__new__(fastio.FastServer)
    transport.reactor = MemoryReactor()
    transport.socket = _Socket(accept)
    transport.connected = 1
    transport.disconnecting = False
    transport._writeDisconnecting = False
    transport._writeDisconnected = False
    transport._aborting = False
    transport.producer = None
    transport.dataBuffer = b""
    transport.offset = 0
    transport._tempDataBuffer = []
    transport._tempDataLen = 0
    return transport


class WriteTests(unittest.SynchronousTestCase):
    """
    Large writes are not copied in user space.
    """

    def test_partialSendKeepsTheBytes(self) -> None:
        """
        When the kernel takes only part of a write into an empty buffer, the
        written bytes object itself becomes the buffer, with an offset: the
        rest is not copied.  Later writes queue behind it, and everything
        goes out in order.
        """
        transport = _detachedServer(300_000)
        data = bytes(range(256)) * 4096
        transport.write(data)
        self.assertIs(transport.dataBuffer, data)
        self.assertEqual(transport.offset, 300_000)
        self.assertEqual(fastio.unsent(transport), len(data) - 300_000)
        self.assertIn(transport, transport.reactor.getWriters())
        transport.write(b"after")
        for _ in range(10):
            if not fastio.unsent(transport):
                break
            transport.doWrite()
        self.assertEqual(b"".join(transport.socket.sent), data + b"after")
        self.assertNotIn(transport, transport.reactor.getWriters())

    def test_gatheringWrite(self) -> None:
        """
        C{writeSequence} into an empty buffer sends its pieces, views
        included, with one C{sendmsg} and copies none of them: the partly
        sent piece becomes the buffer in place and the later ones queue
        behind it unjoined.  Everything goes out in order.
        """
        transport = _detachedServer(100_000)
        read = bytes(range(256)) * 1024
        pieces = [b"head\r\n\r\n", memoryview(read)[6:], b"\r\n", b"", read]
        transport.writeSequence(pieces)
        self.assertEqual(transport.socket.gathers, [[8, len(read) - 6, 2, len(read)]])
        self.assertIs(transport.dataBuffer, pieces[1])
        self.assertEqual(transport.offset, 100_000 - 8)
        self.assertEqual(len(transport._tempDataBuffer), 2)
        self.assertIs(transport._tempDataBuffer[1], read)
        self.assertEqual(fastio.unsent(transport), 8 + 2 * len(read) - 6 + 2 - 100_000)
        for _ in range(20):
            if not fastio.unsent(transport):
                break
            transport.doWrite()
        self.assertEqual(
            b"".join(transport.socket.sent), b"head\r\n\r\n" + read[6:] + b"\r\n" + read
        )

    def test_gatheringWriteWhenBuffered(self) -> None:
        """
        Behind buffered bytes, or with more pieces than one gathering send
        takes, the pieces are joined into Twisted's buffer (which takes
        bytes only), views included.
        """
        transport = _detachedServer(10)
        transport.write(b"0123456789abc")
        transport.writeSequence([b"x", memoryview(b"yz")])
        many = [b"%d," % i for i in range(100)]
        transport.writeSequence(many)
        self.assertEqual(transport.socket.gathers, [])
        transport.socket.accept = 10_000
        transport.doWrite()
        transport.doWrite()
        self.assertEqual(
            b"".join(transport.socket.sent), b"0123456789abcxyz" + b"".join(many)
        )
        fresh = _detachedServer(10_000)
        fresh.writeSequence(many)
        self.assertEqual(fresh.socket.gathers, [])
        self.assertEqual(b"".join(fresh.socket.sent), b"".join(many))

    def test_pauseCountsUnsentOnly(self) -> None:
        """
        After a partial send, a streaming producer is paused only if what
        the kernel did not take exceeds C{bufferSize}, as when the rest was
        sliced off: the sent part of the kept buffer does not count.
        """
        for accept, paused in [(90_000, False), (10_000, True)]:
            transport = _detachedServer(accept)
            calls: list[str] = []
            transport.producer = type(
                "Producer", (), {"pauseProducing": lambda self: calls.append("pause")}
            )()
            transport.streamingProducer = True
            transport.producerPaused = False
            transport.write(b"x" * 100_000)
            self.assertEqual(transport.producerPaused, paused, accept)
            self.assertEqual(calls, ["pause"] if paused else [], accept)
            transport.writeSequence([b"y"])
            self.assertEqual(fastio.unsent(transport), 100_001 - accept)

    def test_noSendmsg(self) -> None:
        """
        Without C{sendmsg} (Python on Windows) no transport gathers, and
        C{writeSequence} joins its pieces into one send.
        """
        self.patch(fastio, "_SENDMSG", False)
        transport = _detachedServer(10_000)
        self.assertFalse(fastio.gathers(transport))
        transport.writeSequence([b"head", memoryview(b"body")])
        self.assertEqual(transport.socket.gathers, [])
        self.assertEqual(transport.socket.sent, [b"headbody"])

    def test_gathers(self) -> None:
        """
        L{fastio.gathers} is true for the fast TCP transports only.
        """
        from twisted.internet.testing import StringTransport

        self.assertTrue(fastio.gathers(_detachedServer(1)))
        self.assertTrue(fastio.gathers(object.__new__(fastio.FastClient)))
        self.assertFalse(fastio.gathers(object.__new__(tcp.Server)))
        self.assertFalse(fastio.gathers(StringTransport()))


class _Collect(protocol.Protocol):
    def __init__(self, done: defer.Deferred, expected: int) -> None:
        self.done = done
        self.expected = expected
        self.received: list[bytes] = []
        self.size = 0

    def connectionMade(self) -> None:
        self.switched = fastio.accelerate(self.transport)

    def dataReceived(self, data: bytes) -> None:
        self.received.append(data)
        self.size += len(data)
        if self.size >= self.expected and not self.done.called:
            self.done.callback(b"".join(self.received))


class _Send(protocol.Protocol):
    payload = b""

    def connectionMade(self) -> None:
        self.switched = fastio.accelerate(self.transport)
        # Several writes, some large enough to be only partly sent at once,
        # so both the send-at-once path and Twisted's buffer are used.
        for start in range(0, len(self.payload), 700_000):
            self.transport.write(self.payload[start : start + 700_000])
        self.transport.writeSequence([b"tail-", b"end"])
        self.unsentAfterWrites = fastio.unsent(self.transport)


class RealSocketTests(unittest.TestCase):
    """
    Fast transports move bytes exactly over real loopback sockets.
    """

    def test_bytesArriveExactly(self) -> Any:
        """
        Several megabytes written through a fast client transport arrive
        byte-exact through a fast server transport, both switched.
        """
        payload = bytes(range(256)) * 20_000 + b"tail-end"
        done: defer.Deferred = defer.Deferred()
        servers: list[_Collect] = []
        clients: list[_Send] = []

        def build(addr: Any) -> _Collect:
            server = _Collect(done, len(payload))
            servers.append(server)
            return server

        factory = protocol.Factory()
        factory.buildProtocol = build  # type: ignore[method-assign]
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        _Send.payload = payload[: -len(b"tail-end")]
        creator = protocol.ClientCreator(reactor, _Send)
        connecting = creator.connectTCP("127.0.0.1", port.getHost().port)

        def connected(client: _Send) -> defer.Deferred:
            self.addCleanup(client.transport.loseConnection)
            self.assertTrue(client.switched)
            self.assertIs(type(client.transport), fastio.FastClient)
            # Several megabytes cannot all go into the kernel at once: the
            # rest waits in the transport, and unsent() says how much.
            self.assertTrue(0 < client.unsentAfterWrites < len(payload))
            clients.append(client)
            return done

        def received(data: bytes) -> None:
            self.assertEqual(fastio.unsent(clients[0].transport), 0)
            self.assertTrue(servers[0].switched)
            self.assertIs(type(servers[0].transport), fastio.FastServer)
            self.assertEqual(len(data), len(payload))
            self.assertEqual(data, payload)
            servers[0].transport.loseConnection()

        connecting.addCallback(connected)
        connecting.addCallback(received)
        return connecting

    def test_halfCloses(self) -> None:
        """
        L{fastio.halfCloses} is true for plain TCP (and UNIX) connections,
        fast or not, and false for TLS transports and test doubles.
        """
        from twisted.internet.testing import StringTransport
        from twisted.protocols.tls import TLSMemoryBIOProtocol

        for kind in (tcp.Server, fastio.FastServer, fastio.FastClient):
            self.assertTrue(fastio.halfCloses(object.__new__(kind)), kind)
        for transport in (object.__new__(TLSMemoryBIOProtocol), StringTransport()):
            self.assertFalse(fastio.halfCloses(transport), transport)

    def test_unsentOfOtherTransports(self) -> None:
        """
        L{fastio.unsent} is 0 for transports that do not say what they
        buffer.
        """
        from twisted.internet.testing import StringTransport

        transport = StringTransport()
        transport.write(b"buffered in a way unsent() cannot see")
        self.assertEqual(fastio.unsent(transport), 0)

    def test_endpointWrapperDropped(self) -> Any:
        """
        Given the protocol an endpoint connected, L{fastio.accelerate}
        makes the transport deliver to it directly instead of through the
        endpoint's pass-through wrapper, and bytes still arrive.
        """
        from twisted.internet.endpoints import TCP4ClientEndpoint

        received: defer.Deferred = defer.Deferred()

        class Echo(protocol.Protocol):
            def dataReceived(self, data: bytes) -> None:
                self.transport.write(data)

        class Client(protocol.Protocol):
            def connectionMade(self) -> None:
                self.wrapper = self.transport.protocol
                self.switched = fastio.accelerate(self.transport, self)
                self.transport.write(b"ping")

            def dataReceived(self, data: bytes) -> None:
                if not received.called:
                    received.callback(data)

        port = reactor.listenTCP(
            0, protocol.Factory.forProtocol(Echo), interface="127.0.0.1"
        )
        self.addCleanup(port.stopListening)
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port)
        connecting = endpoint.connect(protocol.Factory.forProtocol(Client))

        def connected(client: Client) -> defer.Deferred:
            self.addCleanup(client.transport.loseConnection)
            self.assertTrue(client.switched)
            self.assertIsNot(client.wrapper, client)
            self.assertIs(client.transport.protocol, client)
            return received

        connecting.addCallback(connected)
        connecting.addCallback(self.assertEqual, b"ping")
        return connecting


class _MarkSocket:
    """
    A socket that records the receive low-water marks set on it and reports
    a receive buffer of C{space} bytes.

    @ivar grows: whether a mark grows the buffer to twice the mark, as
        Linux does (the payload's share of a buffer is about half).
    """

    def __init__(self, space: int, grows: bool = False) -> None:
        self.space = space
        self.grows = grows
        self.marks: list[int] = []

    def getsockopt(self, level: int, name: int) -> int:
        assert (level, name) == (socket.SOL_SOCKET, socket.SO_RCVBUF)
        return self.space

    def setsockopt(self, level: int, name: int, value: int) -> None:
        assert (level, name) == (socket.SOL_SOCKET, socket.SO_RCVLOWAT)
        self.marks.append(value)
        if self.grows:
            self.space = max(self.space, 2 * value)


def _detachedClient(space: int, grows: bool = False) -> Any:
    """
    A L{fastio.FastClient} over a L{_MarkSocket}, with a clock for a reactor.
    """
    transport = object.__new__(fastio.FastClient)
    transport.reactor = MemoryReactorClock()
    transport.socket = _MarkSocket(space, grows)
    transport.connected = 1
    transport.disconnecting = False
    return transport


class BulkReadTests(unittest.SynchronousTestCase):
    """
    A large read followed by the promise of more of a body raises the
    socket's receive low-water mark, never above what is to come; a check
    lowers it again once reads stop.
    """

    def setUp(self) -> None:
        if fastio._SO_RCVLOWAT is None:
            raise unittest.SkipTest("no SO_RCVLOWAT on this platform")

    def test_smallReadsStayEager(self) -> None:
        """
        A read under L{fastio.BULK_READ} leaves the mark alone, however much
        of the body is to come; so does a large read with little to come.
        """
        transport = _detachedClient(8 << 20)
        transport.expect(fastio.BULK_READ - 1, 50 << 20)
        transport.expect(fastio.BULK_READ, fastio.BULK_MIN_MARK - 1)
        self.assertEqual(transport.socket.marks, [])
        self.assertEqual(transport._mark, 1)
        self.assertEqual(transport.reactor.getDelayedCalls(), [])

    def test_markFollowsWhatIsToCome(self) -> None:
        """
        A large read enters bulk mode with a mark of L{fastio.BULK_LOWAT};
        as less of the body is to come the mark follows it down, and the
        body's end leaves the mode and cancels the check.
        """
        transport = _detachedClient(8 << 20)
        transport.expect(fastio.BULK_READ, 3 << 20)
        self.assertEqual(transport.socket.marks, [fastio.BULK_LOWAT])
        self.assertEqual(len(transport.reactor.getDelayedCalls()), 1)
        transport.expect(fastio.BULK_LOWAT, 2 << 20)
        self.assertEqual(transport.socket.marks, [fastio.BULK_LOWAT])
        transport.expect(fastio.BULK_LOWAT, 300_000)
        transport.expect(300_000, 0)
        self.assertEqual(transport.socket.marks, [fastio.BULK_LOWAT, 300_000, 1])
        self.assertEqual(transport._mark, 1)
        self.assertEqual(transport.reactor.getDelayedCalls(), [])

    def test_markNeverAboveWhatIsToCome(self) -> None:
        """
        Entering bulk mode with less than L{fastio.BULK_LOWAT} to come sets
        the mark to what is to come.
        """
        transport = _detachedClient(8 << 20)
        transport.expect(fastio.BULK_READ, 200_000)
        self.assertEqual(transport.socket.marks, [200_000])

    def test_unreadableBufferLeaves(self) -> None:
        """
        A transport in bulk mode whose receive buffer cannot be read any
        more leaves the mode instead of staying watched with a mark of 1.
        """
        transport = _detachedClient(8 << 20)
        transport.expect(fastio.BULK_READ, 30 << 20)
        transport.socket.space = 0
        transport.expect(fastio.BULK_LOWAT, 20 << 20)
        self.assertEqual(transport.socket.marks, [fastio.BULK_LOWAT, 1])
        self.assertEqual(transport._mark, 1)
        self.assertEqual(transport.reactor.getDelayedCalls(), [])

    def test_checkCancelledFromOutside(self) -> None:
        """
        A pending check cancelled from outside (trial's clean-up does that
        after a failed test) is replaced by the next transport to enter
        bulk mode, and the last to leave does not cancel it again.
        """
        transport = _detachedClient(8 << 20)
        transport.expect(fastio.BULK_READ, 30 << 20)
        [call] = transport.reactor.getDelayedCalls()
        call.cancel()
        other = _detachedClient(8 << 20)
        other.reactor = transport.reactor
        other.expect(fastio.BULK_READ, 30 << 20)
        self.assertEqual(len(transport.reactor.getDelayedCalls()), 1)
        other.expect(fastio.BULK_READ, 0)
        transport.expect(fastio.BULK_READ, 0)
        self.assertEqual(transport.reactor.getDelayedCalls(), [])
        transport.expect(fastio.BULK_READ, 30 << 20)
        transport.reactor.getDelayedCalls()[0].cancel()
        transport.expect(fastio.BULK_READ, 0)

    def test_oldKernels(self) -> None:
        """
        Bulk mode is used on Linux 4.18 and later only, whose epoll reports
        the bytes waiting below a lowered mark at once.
        """
        option = getattr(socket, "SO_RCVLOWAT", None)
        self.assertEqual(fastio._lowatOption("linux", "6.18.44-fc-v669"), option)
        self.assertEqual(
            fastio._lowatOption("linux", "4.18.0-553.el8_10.x86_64"), option
        )
        self.assertIsNone(fastio._lowatOption("linux", "4.14.355"))
        self.assertIsNone(fastio._lowatOption("linux", "3.10.0"))
        self.assertIsNone(fastio._lowatOption("linux", "weird"))
        self.assertIsNone(fastio._lowatOption("darwin", "23.1.0"))

    def test_smallReceiveBuffer(self) -> None:
        """
        The mark is at most a quarter of the receive buffer, and under
        L{fastio.BULK_MIN_MARK} bulk mode is not entered: for a buffer
        that does not grow, the mark that should have grown it is taken
        back.
        """
        transport = _detachedClient(4 * fastio.BULK_MIN_MARK + 4)
        transport.expect(fastio.BULK_READ, 3 << 20)
        self.assertEqual(
            transport.socket.marks, [fastio.BULK_GROW, fastio.BULK_MIN_MARK + 1]
        )
        transport = _detachedClient(4 * fastio.BULK_MIN_MARK - 4)
        transport.expect(fastio.BULK_READ, 3 << 20)
        self.assertEqual(transport.socket.marks, [fastio.BULK_GROW, 1])
        self.assertEqual(transport._mark, 1)
        self.assertEqual(transport.reactor.getDelayedCalls(), [])

    def test_smallReceiveBufferGrows(self) -> None:
        """
        A large read that finds the receive buffer too small for the mark
        it wants sets L{fastio.BULK_GROW} for a moment, which makes Linux
        grow the buffer, and then enters bulk mode with the full mark.
        """
        transport = _detachedClient(454 * 1024, grows=True)
        transport.expect(fastio.BULK_READ, 30 << 20)
        self.assertEqual(transport.socket.marks, [fastio.BULK_GROW, fastio.BULK_LOWAT])
        self.assertEqual(transport._mark, fastio.BULK_LOWAT)

    def test_growsOnce(self) -> None:
        """
        The buffer is made to grow once per connection: a buffer that
        stayed small is not asked again.
        """
        transport = _detachedClient(4 * fastio.BULK_MIN_MARK + 4)
        transport.expect(fastio.BULK_READ, 30 << 20)
        transport.expect(fastio.BULK_READ, 0)
        transport.expect(fastio.BULK_READ, 30 << 20)
        self.assertEqual(
            transport.socket.marks,
            [
                fastio.BULK_GROW,
                fastio.BULK_MIN_MARK + 1,
                1,
                fastio.BULK_MIN_MARK + 1,
            ],
        )

    def test_noGrowthWhenBufferSuffices(self) -> None:
        """
        A buffer with room for a mark of all that is to come is left
        alone, however small.
        """
        transport = _detachedClient(4 * 200_000, grows=True)
        transport.expect(fastio.BULK_READ, 200_000)
        self.assertEqual(transport.socket.marks, [200_000])

    def test_checkLowersMarkOnceReadsStop(self) -> None:
        """
        A check finds reads since the previous one and keeps the mark; the
        first check after reads stopped (an origin that paused, or reading
        paused for backpressure) lowers it to 1.
        """
        transport = _detachedClient(8 << 20)
        clock = transport.reactor
        transport.expect(fastio.BULK_READ, 30 << 20)
        for _ in range(3):
            clock.advance(fastio.BULK_CHECK)
            transport.expect(fastio.BULK_LOWAT, 20 << 20)
        clock.advance(fastio.BULK_CHECK)
        self.assertEqual(transport.socket.marks, [fastio.BULK_LOWAT])
        clock.advance(fastio.BULK_CHECK)
        self.assertEqual(transport.socket.marks, [fastio.BULK_LOWAT, 1])
        self.assertEqual(transport._mark, 1)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_oneCheckForAll(self) -> None:
        """
        Transports in bulk mode on one reactor share one pending check.
        """
        first = _detachedClient(8 << 20)
        second = _detachedClient(8 << 20)
        second.reactor = first.reactor
        first.expect(fastio.BULK_READ, 30 << 20)
        second.expect(fastio.BULK_READ, 30 << 20)
        self.assertEqual(len(first.reactor.getDelayedCalls()), 1)
        first.expect(fastio.BULK_READ, 0)
        self.assertEqual(len(first.reactor.getDelayedCalls()), 1)
        second.expect(fastio.BULK_READ, 0)
        self.assertEqual(first.reactor.getDelayedCalls(), [])

    def test_connectionLostLeavesBulkMode(self) -> None:
        """
        A transport that loses its connection in bulk mode leaves it, and
        the check stops.
        """
        transport = _detachedClient(8 << 20)
        transport.expect(fastio.BULK_READ, 30 << 20)
        calls: list[Any] = []
        self.patch(tcp.Client, "connectionLost", lambda self, reason: calls.append(1))
        transport.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(calls, [1])
        self.assertEqual(transport.socket.marks, [fastio.BULK_LOWAT, 1])
        self.assertEqual(transport.reactor.getDelayedCalls(), [])

    def test_closingTransportStaysEager(self) -> None:
        """
        A transport that is disconnecting or disconnected does not enter
        bulk mode.
        """
        for attribute, value in (("disconnecting", True), ("connected", 0)):
            transport = _detachedClient(8 << 20)
            setattr(transport, attribute, value)
            transport.expect(fastio.BULK_READ, 30 << 20)
            self.assertEqual(transport.socket.marks, [], attribute)


class _Origin(protocol.Protocol):
    """
    Sends what it is told to, when it is told to.
    """

    def connectionMade(self) -> None:
        self.factory.origins.append(self)  # type: ignore[attr-defined]


class _BodyReader(protocol.Protocol):
    """
    Reads a body of C{total} bytes through a fast transport, telling it
    after each read how much is to come, as the proxy's upstream side does.
    """

    def __init__(self, total: int) -> None:
        self.total = total
        self.received: list[bytes] = []
        self.size = 0
        self.highestMark = 1
        self.waiting: list[tuple[int, defer.Deferred]] = []

    def connectionMade(self) -> None:
        self.switched = fastio.accelerate(self.transport)

    def dataReceived(self, data: bytes) -> None:
        self.received.append(data)
        self.size += len(data)
        self.transport.expect(len(data), self.total - self.size)  # type: ignore[attr-defined]
        self.highestMark = max(self.highestMark, self.transport._mark)  # type: ignore[attr-defined]
        for size, waiting in list(self.waiting):
            if self.size >= size:
                self.waiting.remove((size, waiting))
                waiting.callback(None)

    def until(self, size: int) -> defer.Deferred:
        """
        @return: a L{Deferred} that fires once C{size} bytes have arrived,
            or fails after 10 seconds.
        """
        if self.size >= size:
            return defer.succeed(None)
        waiting: defer.Deferred = defer.Deferred()
        self.waiting.append((size, waiting))
        return waiting.addTimeout(10, reactor)


class BulkReadSocketTests(unittest.TestCase):
    """
    Bulk mode over real loopback sockets: bytes left below the mark when
    the sender pauses mid-body are read all the same.
    """

    @defer.inlineCallbacks
    def test_pauseMidBody(self) -> Any:
        """
        A sender that stops mid-body with fewer bytes sent than the mark
        does not hold them back: the check lowers the mark and they are
        read within milliseconds, not when the rest comes.
        """
        if fastio._SO_RCVLOWAT is None:
            raise unittest.SkipTest("no SO_RCVLOWAT on this platform")
        # A new connection's receive buffer (128 KiB) allows a 32 KiB mark.
        self.patch(fastio, "BULK_MIN_MARK", 16 * 1024)
        chunk, straggler, rest = 512 * 1024, 1000, 1 << 20
        total = 16 * chunk + straggler + rest
        payload = os.urandom(total)
        factory = protocol.Factory.forProtocol(_Origin)
        factory.origins = []  # type: ignore[attr-defined]
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        reader = yield protocol.ClientCreator(reactor, _BodyReader, total).connectTCP(
            "127.0.0.1", port.getHost().port
        )
        self.addCleanup(reader.transport.loseConnection)
        self.assertTrue(reader.switched)
        origin = factory.origins[0]  # type: ignore[attr-defined]
        self.addCleanup(origin.transport.loseConnection)
        # Chunks until a read leaves the reader in bulk mode with all of
        # them read: the straggler then arrives below the mark.
        first = 0
        for _ in range(16):
            origin.transport.write(payload[first : first + chunk])
            first += chunk
            yield reader.until(first)
            if reader.transport._mark > 1:
                break
        else:
            self.fail("bulk mode was never on after a chunk was read")
        origin.transport.write(payload[first : first + straggler])
        started = time.monotonic()
        yield reader.until(first + straggler)
        self.assertLess(time.monotonic() - started, 1.0)
        origin.transport.write(payload[first + straggler :])
        yield reader.until(total)
        self.assertGreater(reader.highestMark, 1)
        self.assertEqual(b"".join(reader.received), payload)
        self.assertEqual(reader.transport._mark, 1)

    @defer.inlineCallbacks
    def test_newConnectionBufferGrows(self) -> Any:
        """
        On a new connection, whose receive buffer is too small for the mark
        bulk mode wants, the first large read makes Linux grow the buffer,
        and bulk mode takes the mark the grown buffer allows.
        """
        if fastio._SO_RCVLOWAT is None:
            raise unittest.SkipTest("no SO_RCVLOWAT on this platform")
        factory = protocol.Factory.forProtocol(_Origin)
        factory.origins = []  # type: ignore[attr-defined]
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        reader = yield protocol.ClientCreator(
            reactor, _BodyReader, 64 << 20
        ).connectTCP("127.0.0.1", port.getHost().port)
        self.addCleanup(reader.transport.loseConnection)
        self.addCleanup(lambda: factory.origins[0].transport.loseConnection())
        skt = reader.transport.socket
        before = skt.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        self.assertLess(before // 4, fastio.BULK_LOWAT)
        reader.transport.expect(fastio.BULK_READ, 60 << 20)
        after = skt.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        self.assertGreater(after, before)
        self.assertEqual(reader.transport._mark, min(fastio.BULK_LOWAT, after // 4))
        reader.transport.expect(fastio.BULK_READ, 0)
        self.assertEqual(reader.transport._mark, 1)


class _ReadSocket:
    """
    A socket whose C{recv} returns C{size} bytes at most, and that records
    the options set on it.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.options: list[tuple[int, int, int]] = []

    def recv(self, wanted: int) -> bytes:
        return b"x" * min(wanted, self.size)

    def setsockopt(self, level: int, name: int, value: int) -> None:
        self.options.append((level, name, value))


class QuickAckTests(unittest.SynchronousTestCase):
    """
    A large read asks the socket to acknowledge at once; a small one does
    not.
    """

    def read(self, skt: _ReadSocket) -> None:
        """
        Make one read from C{skt} through a fast transport, and check that
        all of it reached the protocol.
        """
        transport = object.__new__(fastio.FastClient)
        transport.socket = skt
        transport._readSize = fastio.MAX_READ_SIZE
        received: list[bytes] = []
        transport.protocol = protocol.Protocol()
        transport.protocol.dataReceived = received.append  # type: ignore[method-assign]
        self.assertIsNone(transport.doRead())
        self.assertEqual(len(b"".join(received)), skt.size)

    def test_largeRead(self) -> None:
        """
        A read of L{fastio.QUICK_ACK_READ} bytes or more sets
        C{TCP_QUICKACK}.
        """
        if fastio._TCP_QUICKACK is None:
            raise unittest.SkipTest("no TCP_QUICKACK on this platform")
        skt = _ReadSocket(fastio.QUICK_ACK_READ)
        self.read(skt)
        self.assertEqual(skt.options, [(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)])

    def test_smallRead(self) -> None:
        """
        A smaller read sets nothing.
        """
        skt = _ReadSocket(fastio.QUICK_ACK_READ - 1)
        self.read(skt)
        self.assertEqual(skt.options, [])

    def test_refused(self) -> None:
        """
        A socket that refuses the option is read all the same.
        """

        def refuse(level: int, name: int, value: int) -> None:
            raise OSError(errno.ENOPROTOOPT, "no")

        skt = _ReadSocket(fastio.QUICK_ACK_READ)
        skt.setsockopt = refuse  # type: ignore[method-assign]
        self.read(skt)
