"""
Time the Python of each crossing of a small request through webproxy, live:
where p50 at c=1 goes on the proxy's side.

    python bench/crossings.py [--requests 20000]

A request at concurrency 1 crosses the proxy twice: the request from the
client to the upstream, then the response back.  On each, the proxy wakes
from C{epoll_wait}, reads, runs Python, then sends, and the send is what the
other side waits for.  This script starts the checkout's webproxy with a
probe that stamps C{time.perf_counter_ns()} at the points below, sends
C{--requests} keep-alive GETs one at a time against a small origin in this
process (1 KiB answers shaped like nginx's), and prints the medians:

  - request crossing: the client's bytes handed to the protocol, the head
    parsed (L{RequestParser.wholeRequest}), the request filters entered,
    the head forwarded (C{_forward}), the write to the upstream;
  - response crossing: the upstream's bytes handed to the protocol, the
    response parsed (L{ResponseParser.wholeResponse}), the relay entered,
    the write to the client.

Only crossings that took this usual path from end to end are counted.  The
probe adds a few tenths of a microsecond per stamp.  The system calls are
not in these figures (see README.md, Performance, for the whole round
trip).  Unlike C{bench/instructions.py} this measures time, with caches as
cold as the wait between requests leaves them, so it drifts with the
machine: compare medians from runs made one after the other.

Everything listens on 127.0.0.1.  With two CPUs or more the proxy runs on
CPU 0 and this script (client and origin) on CPU 1, as in C{bench/run.py}.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
CHECKOUT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from instructions import (  # noqa: E402 (the bench directory, put first above)
    freePort,
    logTail,
    readResponse,
    requestFor,
    startOrigin,
    startProxy,
    stop,
)

# Stamps of one crossing, in path order; a crossing counts only if it
# passed every one of them.
REQUEST_STAGES = ("received", "parsed", "filtering", "forwarding", "written")
RESPONSE_STAGES = ("received", "parsed", "relaying", "written")


def installProbe(output: str) -> None:
    """
    In the proxy's process, before twistd starts: wrap the methods that
    mark the stages, and write the collected durations to C{output} as
    JSON on SIGUSR2 (then start afresh).
    """
    from proxyapp import fastio, http11, protocol, upstream

    now = time.perf_counter_ns
    stamps: list[tuple[str, int]] = []
    samples: dict[str, list[int]] = {}

    def stamp(name: str) -> None:
        if stamps:
            stamps.append((name, now()))

    def receiving(cls: type) -> None:
        original = getattr(cls, "dataReceived")

        def dataReceived(self: Any, data: bytes) -> Any:
            stamps[:] = [("received", now())]
            try:
                return original(self, data)
            finally:
                stamps.clear()

        setattr(cls, "dataReceived", dataReceived)

    def marking(cls: type, method: str, name: str, after: bool) -> None:
        original = getattr(cls, method)

        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            if not after:
                stamp(name)
            result = original(self, *args, **kwargs)
            if after and result is not None:
                stamp(name)
            return result

        setattr(cls, method, wrapper)

    originalWrite = fastio._FastConnectionMixin.write

    def write(self: Any, data: bytes) -> Any:
        if stamps:
            stamps.append(("written", now()))
            client = type(self.protocol) is protocol.ProxyProtocol
            side, stages = (
                ("response", RESPONSE_STAGES) if client else ("request", REQUEST_STAGES)
            )
            if tuple(name for name, _ in stamps) == stages:
                for (_, start), (name, end) in zip(stamps, stamps[1:]):
                    samples.setdefault(f"{side} {name}", []).append(end - start)
                samples.setdefault(f"{side} total", []).append(
                    stamps[-1][1] - stamps[0][1]
                )
            stamps.clear()
        return originalWrite(self, data)

    receiving(protocol.ProxyProtocol)
    receiving(upstream.UpstreamProtocol)
    marking(http11.RequestParser, "wholeRequest", "parsed", True)
    marking(http11.ResponseParser, "wholeResponse", "parsed", True)
    marking(protocol.ProxyProtocol, "_runRequestFilters", "filtering", False)
    marking(protocol.ProxyProtocol, "_forward", "forwarding", False)
    marking(protocol.ProxyProtocol, "relayWholeResponse", "relaying", False)
    setattr(fastio._FastConnectionMixin, "write", write)

    def dump(signum: int, frame: Any) -> None:
        with open(output + ".tmp", "w") as f:
            json.dump(samples, f)
        os.replace(output + ".tmp", output)
        samples.clear()

    signal.signal(signal.SIGUSR2, dump)


def exchange(connection: socket.socket, request: bytes, count: int) -> list[float]:
    """
    Send C{count} requests one at a time; return each round trip's seconds.
    """
    times = []
    for _ in range(count):
        start = time.perf_counter()
        connection.sendall(request)
        readResponse(connection)
        times.append(time.perf_counter() - start)
    return times


def collect(process: subprocess.Popen, output: str, log: str) -> dict[str, list[int]]:
    """
    Ask the probe for what it collected (it starts afresh) and wait for it.
    """
    process.send_signal(signal.SIGUSR2)
    deadline = time.monotonic() + 30
    while not os.path.exists(output):
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(
                "the probe wrote nothing; webproxy's log ends:\n" + logTail(log)
            )
        time.sleep(0.05)
    with open(output) as f:
        samples = json.load(f)
    os.remove(output)
    return samples


def pin(cpu: int) -> bool:
    try:
        os.sched_setaffinity(0, {cpu})
        return True
    except (AttributeError, OSError):
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument(
        "--checkout",
        default=CHECKOUT,
        help="the source tree to run (default: this one); to compare two versions",
    )
    options = parser.parse_args()
    twoCpus = len(os.sched_getaffinity(0)) >= 2 and {0, 1} <= os.sched_getaffinity(0)

    if twoCpus:
        pin(1)
    listener, originPort = startOrigin()
    proxyPort = freePort()
    temporary = tempfile.mkdtemp(prefix="webproxy-crossings-")
    output = os.path.join(temporary, "samples.json")
    bootstrap = (
        f"import sys; sys.path.insert(0, {HERE!r}); import crossings; "
        f"crossings.installProbe({output!r}); "
        "from twisted.scripts.twistd import run; run()"
    )
    argv = [options.python, "-c", bootstrap, "-n", "--pidfile=", "webproxy"]
    argv += ["--port", str(proxyPort), "--interface", "127.0.0.1"]
    argv += ["--access-log", "off"]
    if twoCpus and shutil.which("taskset"):
        argv = ["taskset", "-c", "0"] + argv
    environment = dict(os.environ, PYTHONPATH=os.path.abspath(options.checkout))
    process = None
    try:
        process, logPath = startProxy(argv, temporary, environment, proxyPort, 60)
        request = requestFor(originPort)
        connection = socket.create_connection(("127.0.0.1", proxyPort), timeout=30)
        # Warm up, then drop what the warm-up collected.
        exchange(connection, request, 1000)
        collect(process, output, logPath)
        roundTrips = exchange(connection, request, options.requests)
        samples = collect(process, output, logPath)
        connection.close()
    finally:
        if process is not None:
            stop(process)
        listener.close()
        shutil.rmtree(temporary, ignore_errors=True)

    print(
        f"{options.requests} requests at c=1, one keep-alive connection; "
        f"round trip p50 {statistics.median(roundTrips) * 1e6:.0f} us "
        f"(client and origin in this Python process)"
    )
    print(f"{'stage (time since the previous stamp)':44} {'p50 us':>7} {'p75 us':>7}")
    for side, stages in (("request", REQUEST_STAGES), ("response", RESPONSE_STAGES)):
        for name in stages[1:] + ("total",):
            values = sorted(samples.get(f"{side} {name}", []))
            if not values:
                continue
            p50 = values[len(values) // 2] / 1000
            p75 = values[3 * len(values) // 4] / 1000
            print(f"{side + ' ' + name:44} {p50:7.2f} {p75:7.2f}")
        counted = len(samples.get(f"{side} total", []))
        print(f"{'  (' + side + ' crossings counted)':44} {counted:7d}")


if __name__ == "__main__":
    main()
