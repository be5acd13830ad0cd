"""
Reading a process's CPU time and memory from /proc.

CPU time is the on-CPU time of the process's threads and its descendants (a
proxy may run helpers), in seconds, from schedstat (nanoseconds) where the
kernel has it, else utime plus stime (10 ms ticks). Memory is VmRSS, also summed over the
process tree; L{RssSampler} records its peak during a transfer.
"""

import os
import resource
import threading
import time

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _statFields(pid: int) -> list[str]:
    """
    @return: the fields of /proc/PID/stat after the command name, so that
        index 0 is field 3 (state) of proc(5).
    """
    with open(f"/proc/{pid}/stat", "rb") as f:
        data = f.read()
    # The command name is in parentheses and may itself contain spaces or
    # parentheses; everything after the last ')' is space separated.
    return data[data.rindex(b")") + 2 :].decode("ascii").split()


def processTree(pid: int) -> list[int]:
    """
    @return: C{pid} followed by all its living descendants.
    """
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            ppid = int(_statFields(int(entry))[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    tree = [pid]
    for parent in tree:
        if len(tree) > 10000:
            break
        tree.extend(children.get(parent, []))
    return tree


def _scheduledSeconds(pid: int) -> float | None:
    """
    @return: the on-CPU time (user plus system) of C{pid}'s living threads
        from /proc/PID/task/*/schedstat, in nanosecond resolution, or
        C{None} if the kernel does not report it.
    """
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat", "rb") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            return None
    return total / 1e9


def cpuSeconds(pid: int) -> float:
    """
    @return: user plus system CPU seconds used so far by C{pid} and its
        living descendants (all threads included).

    The kernel's schedstat gives nanoseconds; /proc/PID/stat, the fallback,
    counts 10 ms ticks, too coarse for one 100 MiB tunnel that costs tens
    of milliseconds.
    """
    seconds = 0.0
    for member in processTree(pid):
        try:
            fields = _statFields(member)
        except OSError:
            continue
        ticked = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
        scheduled = _scheduledSeconds(member)
        # Threads that exited (tinyproxy runs one per connection) are in
        # the process's ticks but no longer in any task's schedstat: then
        # only the ticks are right.
        if scheduled is not None and ticked - scheduled < 0.05:
            seconds += scheduled
        else:
            seconds += ticked
    return seconds


def _statusKiB(pid: int, key: bytes) -> int:
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def rssKiB(pid: int, tree: list[int] | None = None) -> int:
    """
    @param tree: the pids to sum over; by default C{processTree(pid)}.
    @return: resident set size in KiB summed over the process tree.
    """
    return sum(_statusKiB(p, b"VmRSS:") for p in tree or processTree(pid))


def hwmKiB(pid: int) -> int:
    """
    @return: the peak resident set size (VmHWM) of C{pid} itself, in KiB.
    """
    return _statusKiB(pid, b"VmHWM:")


class RssSampler:
    """
    Samples the resident set size of a process tree in a background thread
    until L{stop} is called (or C{maxSeconds} pass).

    @ivar baselineKiB: RSS when sampling started.
    @ivar peakKiB: the highest RSS seen, including the process's VmHWM if that
        rose while sampling (it catches peaks between two samples).
    """

    def __init__(
        self, pid: int, interval: float = 0.01, maxSeconds: float = 900.0
    ) -> None:
        self.pid = pid
        self.interval = interval
        self.maxSeconds = maxSeconds
        self.tree = processTree(pid)
        self.baselineKiB = rssKiB(pid, self.tree)
        self.peakKiB = self.baselineKiB
        self.samples = 0
        self._hwmBefore = hwmKiB(pid)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        deadline = time.monotonic() + self.maxSeconds
        while not self._stopping.is_set() and time.monotonic() < deadline:
            self.peakKiB = max(self.peakKiB, rssKiB(self.pid, self.tree))
            self.samples += 1
            self._stopping.wait(self.interval)

    def start(self) -> "RssSampler":
        self._thread.start()
        return self

    def stop(self) -> int:
        """
        Stop sampling.

        @return: the peak growth over the baseline, in KiB.
        """
        self._stopping.set()
        self._thread.join(5)
        hwmAfter = hwmKiB(self.pid)
        if hwmAfter > self._hwmBefore:
            # The main process's high-water mark rose during the transfer, so
            # it is a peak of this transfer that may fall between two samples.
            self.peakKiB = max(self.peakKiB, hwmAfter)
        return max(self.peakKiB - self.baselineKiB, 0)


def cpuBusySeconds() -> dict[int, float]:
    """
    @return: CPU number -> seconds spent on anything but idle and I/O wait
        since boot, from /proc/stat (steal, time the hypervisor gave to
        others, counts as busy: it was not ours either).
    """
    busy = {}
    with open("/proc/stat") as f:
        for line in f:
            name, *values = line.split()
            if not name.startswith("cpu") or name == "cpu":
                continue
            ticks = [int(v) for v in values[:8]]
            # user nice system idle iowait irq softirq steal
            busy[int(name[3:])] = (sum(ticks) - ticks[3] - ticks[4]) / CLOCK_TICKS
    return busy


class OtherLoad:
    """
    How much of the two benchmark CPUs went to processes that are not part
    of the benchmark during an interval: a measure of how much other work on
    the machine disturbed a run.

    On the proxy CPU, ours is the proxy's CPU time; on the load CPU, it is
    nginx's, this script's and its finished children's (wrk's) CPU time.
    """

    def __init__(
        self, proxyCpu: int, loadCpu: int, proxyPid: int | None, nginxPid: int
    ) -> None:
        self.proxyCpu = proxyCpu
        self.loadCpu = loadCpu
        self.proxyPid = proxyPid
        self.nginxPid = nginxPid
        self._before = self._snapshot()

    def _snapshot(self) -> tuple[float, dict[int, float], float, float, float]:
        mine = resource.getrusage(resource.RUSAGE_SELF)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return (
            time.monotonic(),
            cpuBusySeconds(),
            cpuSeconds(self.proxyPid) if self.proxyPid else 0.0,
            cpuSeconds(self.nginxPid),
            mine.ru_utime + mine.ru_stime + children.ru_utime + children.ru_stime,
        )

    def finish(self) -> dict[str, float]:
        """
        @return: C{proxy_cpu_others} and C{load_cpu_others}, the fractions
            of each CPU's time used by other processes (C{proxy_cpu_others}
            only when a proxy was measured).
        """
        start, busyBefore, proxyBefore, nginxBefore, oursBefore = self._before
        end, busyAfter, proxyAfter, nginxAfter, oursAfter = self._snapshot()
        elapsed = end - start
        busy = {cpu: busyAfter[cpu] - busyBefore[cpu] for cpu in busyAfter}
        proxy = proxyAfter - proxyBefore
        nginx = nginxAfter - nginxBefore
        ours = oursAfter - oursBefore
        result = {
            "load_cpu_others": max(busy[self.loadCpu] - nginx - ours, 0.0) / elapsed
        }
        if self.proxyPid:
            result["proxy_cpu_others"] = max(busy[self.proxyCpu] - proxy, 0.0) / elapsed
        return result
