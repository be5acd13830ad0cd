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
size (C{/proc/self/statm}) and the heap's free bytes (C{mallinfo2(3)}),
each a few microseconds, and trims when more than L{THRESHOLD} was freed
since the last trim: when the free bytes grew by that much from their
lowest since, or when the resident size did while that much is free (a
burst between two looks, which they miss).  Trimmed pages stay free in the
heap's books, so the marks restart from what a trim leaves.  A steady load
frees little and does not grow, and is not trimmed.  Where there is no
glibc or no C{/proc} (musl, macOS, Windows) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
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


class _MallocInfo2(ctypes.Structure):
    # struct mallinfo2 (glibc 2.33 and later).
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
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
    ]


Functions = tuple[Callable[[], int], Callable[[], int], Callable[[], Any]]
"""
What L{MemoryTrimmer} calls: the resident size in bytes, the heap's free
bytes, and C{malloc_trim(0)}.
"""


def _residentBytes() -> int:
    with open("/proc/self/statm", "rb") as statm:
        return int(statm.read().split()[1]) * _PAGE_SIZE


_PAGE_SIZE = 4096


def systemFunctions() -> Optional[Functions]:
    """
    @return: the L{Functions} of this system, or L{None} if its C library
        has not both C{mallinfo2} and C{malloc_trim} or there is no
        C{/proc/self/statm}.
    """
    import os

    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        mallinfo2 = libc.mallinfo2
        trim = libc.malloc_trim
        global _PAGE_SIZE
        _PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
        _residentBytes()
    except (OSError, AttributeError, ValueError):
        return None
    mallinfo2.restype = _MallocInfo2
    mallinfo2.argtypes = []
    trim.restype = ctypes.c_int
    trim.argtypes = [ctypes.c_size_t]
    return _residentBytes, (lambda: mallinfo2().fordblks), (lambda: trim(0))


class MemoryTrimmer:
    """
    Every L{INTERVAL} seconds, hand free heap memory back to the system if
    more than L{THRESHOLD} bytes were freed since the last time (see the
    module's docstring).

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
        self._call = task.LoopingCall(self.check)
        self._call.clock = reactor

    def start(self) -> None:
        """
        Start looking, if this system allows it.
        """
        if self.functions is not None and not self._call.running:
            self._mark()
            self._call.start(self.interval, now=False)

    def stop(self) -> None:
        if self._call.running:
            self._call.stop()

    def _mark(self) -> None:
        resident, freeBytes, _ = self.functions  # type: ignore[misc]
        self._resident, self._free = resident(), freeBytes()

    def check(self) -> None:
        """
        Trim if enough memory was freed since the last trim.
        """
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
            return
        trim()
        self.trims += 1
        self._mark()
        log.info(
            "returned freed memory to the system: resident {before} MiB -> {after} MiB",
            before=size >> 20,
            after=self._resident >> 20,
        )
