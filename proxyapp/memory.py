# -*- test-case-name: tests.test_memory -*-
"""
Give memory freed after a burst back to the system.

Why: body pieces are read in buffers of up to 1 MiB (L{proxyapp.fastio}),
so a burst of concurrent downloads to slow clients, or cut short, frees
hundreds of megabytes at once.  glibc's C{malloc} returns the top of its
heap by itself, but not free memory below a block still in use, so the
process's RSS stays at the burst's peak (measured: 500 concurrent 1 MiB
downloads through the proxy left it about 240 MiB above its start, for
good).  C{malloc_trim(3)} hands such free pages back.

L{MemoryTrimmer} looks every L{INTERVAL} seconds at the process's resident
size (C{/proc/self/statm}) and the heap's free bytes (C{mallinfo2(3)}, or
C{mallinfo} before glibc 2.33), each a few microseconds, and trims when
more than L{THRESHOLD} was freed since the last trim, and still is at the
next look: when the free bytes grew by that much from their lowest since,
or when the resident size did while that much is free (a burst between two
looks, which they miss).  Trimmed pages stay free in the heap's books, so
the marks restart from what a trim leaves.  A steady load frees little and
does not grow; one whose free memory swings back and forth by more than
the threshold is trimmed only when a swing lasts two looks.  Where there
is no glibc or no C{/proc} (musl, macOS, Windows) it does nothing.
"""

from __future__ import annotations

import ctypes
import os
from typing import Any, Callable, Optional

from twisted.internet import task
from twisted.logger import Logger

log = Logger()

INTERVAL = 10.0
"""
Seconds between looks at the heap's free memory.
"""

THRESHOLD = 32 * 1024 * 1024
"""
Free heap bytes above which memory is handed back.
"""


_MALLINFO_FIELDS = (
    "arena",
    "ordblks",
    "smblks",
    "hblks",
    "hblkhd",
    "usmblks",
    "fsmblks",
    "uordblks",
    "fordblks",
    "keepcost",
)


class _MallocInfo2(ctypes.Structure):
    # struct mallinfo2 (glibc 2.33 and later).
    _fields_ = [(name, ctypes.c_size_t) for name in _MALLINFO_FIELDS]


class _MallocInfo(ctypes.Structure):
    # struct mallinfo: the same fields as int, which wrap past 2 GiB (see
    # L{systemFunctions}).
    _fields_ = [(name, ctypes.c_int) for name in _MALLINFO_FIELDS]


Functions = tuple[Callable[[], int], Callable[[], int], Callable[[], Any]]
"""
What L{MemoryTrimmer} calls: the resident size in bytes, the heap's free
bytes, and C{malloc_trim(0)}.
"""


def systemFunctions() -> Optional[Functions]:
    """
    @return: the L{Functions} of this system, or L{None} if its C library
        has no C{malloc_trim} and C{mallinfo2} or C{mallinfo} (glibc has
        them) or there is no C{/proc/self/statm} (Linux has it).
    """
    try:
        # The C library the interpreter runs on, without searching for it.
        libc = ctypes.CDLL(None)
        trim = libc.malloc_trim
        pageSize = os.sysconf("SC_PAGE_SIZE")
        statm = os.open("/proc/self/statm", os.O_RDONLY)
    except (OSError, AttributeError, ValueError, TypeError):
        return None
    trim.restype = ctypes.c_int
    trim.argtypes = [ctypes.c_size_t]
    try:
        mallinfo2 = libc.mallinfo2
    except AttributeError:
        mallinfo = getattr(libc, "mallinfo", None)
        if mallinfo is None:
            os.close(statm)
            return None
        mallinfo.restype = _MallocInfo
        mallinfo.argtypes = []

        def freeBytes() -> int:
            # An int that may have wrapped past 2 GiB: as unsigned it is
            # right up to 4 GiB, and a burst's size is what matters.
            return mallinfo().fordblks & 0xFFFFFFFF

    else:
        mallinfo2.restype = _MallocInfo2
        mallinfo2.argtypes = []

        def freeBytes() -> int:
            return mallinfo2().fordblks

    def resident() -> int:
        # Read afresh from one descriptor opened at the start: no file to
        # open when descriptors run out.
        return int(os.pread(statm, 256, 0).split()[1]) * pageSize

    return resident, freeBytes, (lambda: trim(0))


class MemoryTrimmer:
    """
    Every L{INTERVAL} seconds, hand free heap memory back to the system if
    more than L{THRESHOLD} bytes were freed since the last time, and were
    still free at the look before (see the module's docstring).

    @ivar trims: how many times memory was handed back.
    """

    def __init__(
        self,
        reactor: Any,
        functions: Optional[Functions] = None,
        interval: float = INTERVAL,
        threshold: int = THRESHOLD,
    ) -> None:
        """
        @param functions: L{Functions} (tests pass their own), or L{None}
            for L{systemFunctions}.
        """
        self.functions = systemFunctions() if functions is None else functions
        self.interval = interval
        self.threshold = threshold
        self.trims = 0
        self._resident = self._free = 0
        self._armed = self._failing = False
        self._call = task.LoopingCall(self.check)
        self._call.clock = reactor

    def start(self) -> None:
        """
        Start looking, if this system allows it.
        """
        if self.functions is not None and not self._call.running:
            try:
                self._mark()
            except Exception:
                log.failure("looking at the process's memory failed; not trimming")
                return
            self._call.start(self.interval, now=False)

    def stop(self) -> None:
        if self._call.running:
            self._call.stop()

    def _mark(self) -> None:
        resident, freeBytes, _ = self.functions  # type: ignore[misc]
        self._resident, self._free = resident(), freeBytes()

    def check(self) -> None:
        """
        Trim if enough memory was freed since the last trim and still is.
        A failure is logged and the looks go on.
        """
        try:
            self._check()
        except Exception:
            # Once per run of failures: an unreadable /proc is not news
            # every ten seconds.
            if not self._failing:
                self._failing = True
                log.failure("looking at the process's memory failed")
        else:
            self._failing = False

    def _check(self) -> None:
        assert self.functions is not None
        resident, freeBytes, trim = self.functions
        size = resident()
        free = freeBytes()
        threshold = self.threshold
        if free - self._free <= threshold and (
            size - self._resident <= threshold or free <= threshold
        ):
            # The marks follow the memory down, so that the next burst
            # counts from where it starts.
            self._resident = min(self._resident, size)
            self._free = min(self._free, free)
            self._armed = False
            return
        if not self._armed:
            self._armed = True
            return
        self._armed = False
        trim()
        self.trims += 1
        self._mark()
        log.info(
            "returned freed memory to the system: resident {before} MiB -> {after} MiB",
            before=size >> 20,
            after=self._resident >> 20,
        )
