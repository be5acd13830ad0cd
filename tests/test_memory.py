"""
Tests for L{proxyapp.memory}: freed memory goes back to the system after a
burst, and not under a steady load.
"""

from __future__ import annotations

import platform
import sys

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from proxyapp import memory
from proxyapp.memory import MemoryTrimmer

MiB = 1 << 20


class FakeHeap:
    """
    A process whose resident size and free heap bytes the test sets, and
    whose trim releases every free byte that is resident.
    """

    def __init__(self, resident: int, free: int) -> None:
        self.resident = resident
        self.free = free
        self.trimmed = 0

    def functions(self) -> memory.Functions:
        return (lambda: self.resident), (lambda: self.free), self.trim

    def trim(self) -> int:
        self.trimmed += 1
        self.resident = 50 * MiB
        # Trimmed pages stay free in the heap's books.
        return 1


class MemoryTrimmerTests(SynchronousTestCase):
    """
    Tests for L{MemoryTrimmer}.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.heap = FakeHeap(50 * MiB, 1 * MiB)
        self.trimmer = MemoryTrimmer(
            self.clock, self.heap.functions(), interval=10, threshold=32 * MiB
        )
        self.trimmer.start()

    def tick(self) -> None:
        self.clock.advance(10)

    def settle(self, resident: int, free: int) -> None:
        """
        Let the heap stand at C{resident} and C{free} MiB over two looks.
        """
        self.heap.resident, self.heap.free = resident * MiB, free * MiB
        self.tick()
        self.tick()

    def test_burstTrimmed(self) -> None:
        """
        Memory that a burst allocated and freed is handed back once it has
        stayed free for two looks, and once only.
        """
        self.heap.resident, self.heap.free = 300 * MiB, 1 * MiB
        self.tick()
        self.assertEqual(self.heap.trimmed, 0)
        self.heap.free = 250 * MiB
        self.tick()
        self.assertEqual(self.heap.trimmed, 0)
        self.tick()
        self.assertEqual((self.heap.trimmed, self.trimmer.trims), (1, 1))
        for _ in range(5):
            self.tick()
        self.assertEqual(self.heap.trimmed, 1)

    def test_burstBetweenLooks(self) -> None:
        """
        A burst that grew and freed between two looks is seen by the
        resident size: trimmed, as more than the threshold is free.
        """
        self.settle(300, 40)
        self.assertEqual(self.heap.trimmed, 1)

    def test_freedAfterATrim(self) -> None:
        """
        Memory freed after a trim (a burst's last connections closing
        later) is handed back at a later look: the free bytes grew from
        where the trim left them.
        """
        self.settle(300, 100)
        self.assertEqual(self.heap.trimmed, 1)
        self.settle(250, 300)
        self.assertEqual(self.heap.trimmed, 2)

    def test_nextBurstCountsFromItsStart(self) -> None:
        """
        A second burst that reuses the memory the first freed (the free
        bytes fall, then rise again) is trimmed too.
        """
        self.settle(300, 250)
        self.assertEqual(self.heap.trimmed, 1)
        self.heap.resident, self.heap.free = 300 * MiB, 5 * MiB
        self.tick()
        self.settle(300, 250)
        self.assertEqual(self.heap.trimmed, 2)

    def test_steadyLoadNotTrimmed(self) -> None:
        """
        A load that holds its memory (grown, but less than the threshold
        of it free, however that varies) is never trimmed, nor one whose
        free memory swings by more than the threshold from one look to
        the next.
        """
        self.heap.resident, self.heap.free = 300 * MiB, 10 * MiB
        for free in [10, 30, 2, 31, 20, 25, 10, 45, 10, 45, 12, 50, 5]:
            self.heap.free = free * MiB
            self.tick()
        self.assertEqual(self.heap.trimmed, 0)

    def test_failureLoggedAndLooksGoOn(self) -> None:
        """
        A look that fails (no file descriptor left to read C{/proc}, say)
        is logged once, and the looks go on: a later burst is trimmed.
        """
        failing = [True]

        def resident() -> int:
            if failing[0]:
                raise OSError(24, "Too many open files")
            return self.heap.resident

        _, freeBytes, trim = self.heap.functions()
        self.trimmer.functions = (resident, freeBytes, trim)
        self.tick()
        self.tick()
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)
        failing[0] = False
        self.settle(300, 250)
        self.assertEqual(self.heap.trimmed, 1)

    def test_stop(self) -> None:
        """
        A stopped trimmer looks no more.
        """
        self.trimmer.stop()
        self.heap.resident, self.heap.free = 300 * MiB, 250 * MiB
        self.tick()
        self.assertEqual(self.heap.trimmed, 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_unsupportedSystem(self) -> None:
        """
        Without the C library's functions, the trimmer does nothing at all.
        """
        clock = Clock()
        self.patch(memory, "systemFunctions", lambda: None)
        trimmer = MemoryTrimmer(clock)
        trimmer.start()
        self.assertEqual(clock.getDelayedCalls(), [])
        trimmer.stop()

    def test_systemFunctions(self) -> None:
        """
        On Linux with glibc the real functions are found and answer with
        plausible numbers, and a trim runs; elsewhere there are none.
        """
        functions = memory.systemFunctions()
        if not (sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"):
            self.assertIsNone(functions)
            return
        assert functions is not None
        resident, freeBytes, trim = functions
        self.assertGreater(resident(), 1 * MiB)
        self.assertGreaterEqual(freeBytes(), 0)
        trim()
