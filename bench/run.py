"""
Benchmark webproxy against a direct connection and, optionally, Squid and
tinyproxy, on this machine, over 127.0.0.1 only.

The proxies run pinned to one CPU; nginx (the origin), wrk and curl (the
clients) and this script share another. Every scenario is measured for every
target in the same run, in rounds, and the table shows medians over rounds.
See bench/README.md.

Usage: python bench/run.py [--quick] [--compare squid,tinyproxy] [--output FILE]
"""

import argparse
import datetime
import importlib.util
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import loadgen  # noqa: E402
import procstat  # noqa: E402
import servers  # noqa: E402
import tables  # noqa: E402
import tools  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
REPOSITORY = os.path.dirname(HERE)
MiB = 1024 * 1024
SCENARIOS = (
    "small_c1",
    "small_c50",
    "medium_c10",
    "large",
    "large_limited",
    "connect",
    "idle",
    "access_log",
)
COMPARABLE = ("squid", "tinyproxy")


def parseArguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: 2 s wrk runs, 1 round, 20 MiB downloads, "
        "1,000 idle connections (explicit options still win)",
    )
    parser.add_argument(
        "--compare",
        default="",
        help="comma-separated other proxies to measure side by side: "
        + ",".join(COMPARABLE)
        + " (default none)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        help="rounds; the table shows medians (default 3, --quick 1)",
    )
    parser.add_argument(
        "--duration", type=int, help="seconds per wrk run (default 10, --quick 2)"
    )
    parser.add_argument(
        "--medium-runs",
        type=int,
        help="wrk runs of the 1 MiB scenario per round; the round reports the "
        "run with the median MB/s (default 3, --quick 1)",
    )
    parser.add_argument(
        "--big-mib",
        type=int,
        help="MiB of the single downloads (default 100, --quick 20)",
    )
    parser.add_argument(
        "--big-downloads",
        type=int,
        help="downloads of the big file per round at full speed (the large "
        "scenario); the round reports their median MB/s and the proxy's peak "
        "RSS growth over all of them (default 5, --quick 1)",
    )
    parser.add_argument(
        "--tunnel-downloads",
        type=int,
        help="downloads per round through CONNECT; the round reports their "
        "median MB/s and their total CPU per GB (default 5, --quick 1)",
    )
    parser.add_argument(
        "--idle",
        type=int,
        help="idle connections to open (default 10000, --quick 1000)",
    )
    parser.add_argument(
        "--limit-rate",
        default="10M",
        help="curl --limit-rate of the slow client (default 10M)",
    )
    parser.add_argument("--output", help="also write the Markdown report to this file")
    parser.add_argument(
        "--json",
        help="file for the raw numbers (default bench/results/<time>.json)",
    )
    parser.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help="comma-separated subset of " + ",".join(SCENARIOS) + " (default all)",
    )
    parser.add_argument(
        "--proxy-cpu", type=int, default=0, help="CPU for the proxies (default 0)"
    )
    parser.add_argument(
        "--load-cpu",
        type=int,
        default=1,
        help="CPU for nginx, wrk, curl and this script (default 1)",
    )
    parser.add_argument(
        "--python",
        help="Python with webproxy's dependencies (Twisted) installed (default: "
        "the one running this script if it has Twisted, else the checkout's .venv)",
    )
    parser.add_argument(
        "--webproxy-command",
        default=servers.WEBPROXY_COMMAND,
        help="how to start webproxy; {python}, {port}, {tls_port} and {log_args} "
        "are substituted (default: twistd webproxy, see servers.py)",
    )
    parser.add_argument("--no-webproxy", action="store_true", help="leave webproxy out")
    parser.add_argument(
        "--no-install",
        action="store_true",
        help="never run apt-get for missing programs",
    )
    parser.add_argument(
        "--keep-temp", action="store_true", help="keep the temporary directory"
    )
    parser.add_argument(
        "--tcp-congestion",
        metavar="NAME",
        help="set the machine's TCP congestion control (sysctl "
        "net.ipv4.tcp_congestion_control, root only) to NAME for the run and "
        "restore it at the end, e.g. cubic where the default is bbr, whose "
        "pacing timers cost the senders on loopback (default: leave it)",
    )
    args = parser.parse_args(argv)
    quick = args.quick
    for name, full, short in (
        ("rounds", 3, 1),
        ("duration", 10, 2),
        ("big_mib", 100, 20),
        ("medium_runs", 3, 1),
        ("big_downloads", 5, 1),
        ("tunnel_downloads", 5, 1),
        ("idle", 10000, 1000),
    ):
        if getattr(args, name) is None:
            setattr(args, name, short if quick else full)
    if args.python is None:
        args.python = defaultPython()
    args.compare = [c for c in args.compare.split(",") if c]
    for name in args.compare:
        if name not in COMPARABLE:
            parser.error(f"--compare: unknown proxy {name!r}")
    args.scenarios = [s for s in args.scenarios.split(",") if s]
    for name in args.scenarios:
        if name not in SCENARIOS:
            parser.error(f"--scenarios: unknown scenario {name!r}")
    counts = (
        args.rounds,
        args.duration,
        args.big_mib,
        args.idle,
        args.big_downloads,
        args.tunnel_downloads,
        args.medium_runs,
    )
    if min(counts) < 1:
        parser.error(
            "--rounds, --duration, --big-mib, --big-downloads, --tunnel-downloads, "
            "--medium-runs and --idle must be positive"
        )
    return args


def defaultPython() -> str:
    """
    @return: this interpreter if it can import Twisted, else the checkout's
        C{.venv} interpreter (where the README's setup installs webproxy)
        if there is one, else this interpreter anyway.
    """
    if importlib.util.find_spec("twisted") is None:
        candidate = os.path.join(REPOSITORY, ".venv", "bin", "python")
        if os.access(candidate, os.X_OK):
            return candidate
    return sys.executable


@dataclass
class Target:
    """
    A way to reach the origin: directly or through one proxy.

    @ivar port: the proxy's port, L{None} for direct.
    @ivar logged: a second instance of the proxy with an access log.
    @ivar failure: why the target can no longer be measured.
    """

    name: str
    port: int | None = None
    server: servers.ServerProcess | None = None
    loggedPort: int | None = None
    logged: servers.ServerProcess | None = None
    accessLog: str | None = None
    loggedFailure: str | None = None
    failure: str | None = None
    scenarios: dict[str, list[dict]] = field(default_factory=dict)
    errors: dict[str, list[str]] = field(default_factory=dict)


def log(message: str) -> None:
    print(f"# {message}", file=sys.stderr, flush=True)


def raiseFileLimit(wanted: int) -> int:
    """
    Raise this process's RLIMIT_NOFILE (and so its children's) to C{wanted},
    raising the hard limit too if we may.

    @return: the soft limit now in force.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return soft
    if hard != resource.RLIM_INFINITY and hard < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
            return wanted
        except (ValueError, OSError):
            wanted = hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return wanted


class Benchmark:
    """
    Owns the temporary directory, the origin, the proxies and the results.
    """

    def __init__(self, args: argparse.Namespace, programs: dict[str, str]) -> None:
        self.args = args
        self.programs = programs
        self.bigSize = args.big_mib * MiB
        self.bigPath = f"/{args.big_mib}m"
        usable = os.sched_getaffinity(0)
        if {
            args.proxy_cpu,
            args.load_cpu,
        } <= usable and args.proxy_cpu != args.load_cpu:
            self.proxyCpu: int | None = args.proxy_cpu
            self.loadCpu: int | None = args.load_cpu
        else:
            log(
                f"CPUs {args.proxy_cpu} and {args.load_cpu} not both usable; not pinning"
            )
            self.proxyCpu = self.loadCpu = None
        self.directory = tempfile.mkdtemp(prefix="webproxy-bench-")
        # Servers that drop privileges (Squid, tinyproxy) must reach their
        # own subdirectories.
        os.chmod(self.directory, 0o755)
        self.started: list[servers.ServerProcess] = []
        self.targets: list[Target] = []
        self.nginx: servers.ServerProcess | None = None

    # Setting up

    def makeOrigin(self) -> None:
        """
        Write the documents and a self-signed certificate, start nginx.
        """
        docroot = self.docroot = os.path.join(self.directory, "www")
        os.makedirs(docroot)
        block = os.urandom(MiB)
        with open(os.path.join(docroot, "1k"), "wb") as f:
            f.write(block[:1024])
        with open(os.path.join(docroot, "1m"), "wb") as f:
            f.write(block)
        with open(os.path.join(docroot, self.bigPath[1:]), "wb") as f:
            for _ in range(self.args.big_mib):
                f.write(block)
        certificate = os.path.join(self.directory, "cert.pem")
        key = os.path.join(self.directory, "key.pem")
        subprocess.run(
            [
                self.programs["openssl"],
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                key,
                "-out",
                certificate,
                "-days",
                "2",
                "-subj",
                "/CN=127.0.0.1",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        self.httpPort = servers.freePort()
        self.tlsPort = servers.freePort()
        self.nginx = servers.startNginx(
            self.programs["nginx"],
            os.path.join(self.directory, "nginx"),
            docroot,
            self.httpPort,
            self.tlsPort,
            certificate,
            key,
            self.args.idle,
            self.loadCpu,
        )
        self.started.append(self.nginx)
        try:
            servers.waitForPort(self.nginx, self.httpPort)
            servers.waitForPort(self.nginx, self.tlsPort)
            loadgen.runCurl(
                self.programs["curl"],
                self.loadCpu,
                self.url("/1k"),
                expectSize=1024,
                timeout=30,
            )
        except Exception as e:
            raise SystemExit(f"nginx did not start: {e}\n{self.nginx.explain()}")

    def url(self, path: str, tls: bool = False) -> str:
        if tls:
            return f"https://127.0.0.1:{self.tlsPort}{path}"
        return f"http://127.0.0.1:{self.httpPort}{path}"

    def startProxy(
        self, name: str, accessLog: str | None, suffix: str = ""
    ) -> tuple[int, servers.ServerProcess]:
        """
        Start one instance of proxy C{name} and wait until it proxies a
        1 KiB GET.

        @param suffix: makes the instance's directory name unique.
        @raise RuntimeError: with the process's explanation if it does not.
        """
        port = servers.freePort()
        directory = os.path.join(self.directory, name + suffix)
        if name == "webproxy":
            check = subprocess.run(
                [self.args.python, "-c", "import twisted.scripts.twistd"],
                capture_output=True,
                timeout=60,
            )
            if check.returncode != 0:
                raise RuntimeError(
                    f"{self.args.python} cannot import Twisted: install webproxy "
                    "into it (pip install -e .) or pass --python"
                )
            server = servers.startWebproxy(
                self.args.webproxy_command,
                self.args.python,
                REPOSITORY,
                directory,
                port,
                self.tlsPort,
                accessLog,
                self.proxyCpu,
            )
        elif name == "squid":
            server = servers.startSquid(
                self.programs["squid"],
                directory,
                port,
                self.tlsPort,
                self.args.idle,
                accessLog,
                self.proxyCpu,
            )
        else:
            server = servers.startTinyproxy(
                self.programs["tinyproxy"],
                directory,
                port,
                self.tlsPort,
                self.args.idle,
                accessLog,
                self.proxyCpu,
            )
        self.started.append(server)
        try:
            servers.waitForPort(server, port, timeout=30)
            loadgen.runCurl(
                self.programs["curl"],
                self.loadCpu,
                self.url("/1k"),
                proxyPort=port,
                expectSize=1024,
                timeout=30,
            )
        except Exception as e:
            # Give it a moment to write why it failed before reading its logs.
            time.sleep(0.5)
            server.stop()
            raise RuntimeError(f"{e}\n{server.explain()}") from None
        return port, server

    def makeTargets(self) -> None:
        self.targets.append(Target("direct"))
        names = ([] if self.args.no_webproxy else ["webproxy"]) + self.args.compare
        for name in names:
            target = Target(name)
            self.targets.append(target)
            try:
                target.port, target.server = self.startProxy(name, None)
                log(f"{name} listening on {target.port}, pid {target.server.pid}")
            except Exception as e:
                target.failure = f"did not start: {e}"
                log(f"{name} FAILED to start:\n{e}")
                continue
            if "access_log" in self.args.scenarios:
                logDir = os.path.join(self.directory, name + "-log")
                target.accessLog = os.path.join(logDir, "access.log")
                try:
                    target.loggedPort, target.logged = self.startProxy(
                        name, target.accessLog, "-log"
                    )
                except Exception as e:
                    target.loggedFailure = f"with an access log, did not start: {e}"
                    log(f"{name} with access log FAILED to start:\n{e}")

    # Measuring

    def wrk(
        self, path: str, connections: int, duration: int, port: int | None
    ) -> loadgen.WrkResult:
        """
        Run wrk on the load CPU against the origin's C{path}, through the
        proxy on C{port} (directly when L{None}).
        """
        return loadgen.runWrk(
            self.programs["wrk"],
            self.loadCpu,
            self.httpPort,
            path,
            connections,
            duration,
            port,
        )

    def measureSmall(self, target: Target, connections: int) -> dict:
        pid = target.server.pid if target.server else None
        before = procstat.cpuSeconds(pid) if pid else 0.0
        other = self.otherLoad(pid)
        result = self.wrk("/1k", connections, self.args.duration, target.port)
        load = other.finish() if other else {}
        cpu = procstat.cpuSeconds(pid) - before if pid else None
        return (
            self.wrkMetrics(result)
            | {
                "cpu_s_per_10k": (
                    cpu / result.requests * 1e4 if cpu is not None else None
                ),
            }
            | load
        )

    def otherLoad(self, proxyPid: int | None) -> procstat.OtherLoad | None:
        """
        @return: an account of other processes' use of our CPUs from now
            on, or L{None} when nothing is pinned.
        """
        if self.proxyCpu is None or self.loadCpu is None or self.nginx is None:
            return None
        return procstat.OtherLoad(self.proxyCpu, self.loadCpu, proxyPid, self.nginx.pid)

    def wrkMetrics(self, result: loadgen.WrkResult) -> dict:
        if result.requests == 0:
            raise RuntimeError(f"no requests completed; wrk errors {result.errors}")
        metrics = {
            "rps": result.requestsPerSecond,
            "mbps": result.megabytesPerSecond,
            "p50_ms": result.p50Ms,
            "p99_ms": result.p99Ms,
            "mean_ms": result.meanMs,
            "max_ms": result.maxMs,
            "requests": result.requests,
            "seconds": result.seconds,
            "wrk_errors": result.errors,
        }
        if result.errorCount:
            metrics["error"] = "wrk: " + result.describeErrors()
        return metrics

    def measureMedium(self, target: Target) -> dict:
        """
        C{--medium-runs} wrk runs of 1 MiB GETs at c=10, each on 10 new
        connections: the round reports the run with the median MB/s (its
        p99 too).  One run is not enough because the rate is set per run:
        under BBR, the machine's usual default congestion control, nginx
        paces each connection with timers whose cost depends on the rate
        the connection happened to estimate, and one run directly differs
        from the next by up to 2x (see bench/README.md).
        """
        runs = [
            self.wrkMetrics(self.wrk("/1m", 10, self.args.duration, target.port))
            for _ in range(self.args.medium_runs)
        ]
        ranked = sorted(runs, key=lambda metrics: metrics["mbps"])
        return ranked[(len(ranked) - 1) // 2] | {
            "mbps_each": [metrics["mbps"] for metrics in runs],
            "p99_ms_each": [metrics["p99_ms"] for metrics in runs],
        }

    def warmBigFile(self) -> None:
        """
        Read the big file so the download starts from the page cache: on
        machines that reclaim cold page cache quickly (DAMON's pageout
        scheme drops pages unused for about 30 s), the first target measured
        in a round would otherwise pay for reading it from disk.
        """
        with open(os.path.join(self.docroot, self.bigPath[1:]), "rb") as f:
            while f.read(MiB):
                pass

    def measureLarge(self, target: Target, limitRate: str | None) -> dict:
        """
        Downloads of the big file: at full speed, C{--big-downloads} of them
        one after the other (one of 100 MiB takes 60-100 ms here, and
        single ones vary by half), reporting their median MB/s; with
        C{limitRate}, one.  The proxy's peak RSS growth is over all of them.
        """
        self.warmBigFile()
        pid = target.server.pid if target.server else None
        sampler = procstat.RssSampler(pid).start() if pid else None
        other = self.otherLoad(pid)
        timeout = 300.0
        count = self.args.big_downloads
        if limitRate:
            timeout += self.bigSize / parseRate(limitRate) * 2
            count = 1
        each = []
        seconds = []
        try:
            for _ in range(count):
                result = loadgen.runCurl(
                    self.programs["curl"],
                    self.loadCpu,
                    self.url(self.bigPath),
                    target.port,
                    limitRate=limitRate,
                    timeout=timeout,
                    expectSize=self.bigSize,
                )
                each.append(result.megabytesPerSecond)
                seconds.append(result.seconds)
        finally:
            growth = sampler.stop() if sampler else None
        return {
            "mbps": statistics.median(each),
            "mbps_each": each,
            "seconds": statistics.median(seconds),
            "rss_growth_mib": growth / 1024 if growth is not None else None,
            "rss_baseline_mib": sampler.baselineKiB / 1024 if sampler else None,
            "rss_samples": sampler.samples if sampler else None,
        } | (other.finish() if other else {})

    def measureConnect(self, target: Target) -> dict:
        """
        Several downloads through the tunnel (one of 100 MiB takes about
        150 ms here, and single ones vary by half): their median MB/s, and
        the proxy's CPU per GB over all of them.
        """
        self.warmBigFile()
        pid = target.server.pid if target.server else None
        before = procstat.cpuSeconds(pid) if pid else 0.0
        other = self.otherLoad(pid)
        each = []
        for _ in range(self.args.tunnel_downloads):
            result = loadgen.runCurl(
                self.programs["curl"],
                self.loadCpu,
                self.url(self.bigPath, tls=True),
                target.port,
                tunnel=target.port is not None,
                timeout=300,
                expectSize=self.bigSize,
            )
            each.append(result.megabytesPerSecond)
        cpu = procstat.cpuSeconds(pid) - before if pid else None
        gigabytes = self.bigSize * len(each) / 1e9
        return {
            "mbps": statistics.median(each),
            "mbps_each": each,
            "cpu_s_per_gb": cpu / gigabytes if cpu is not None else None,
        } | (other.finish() if other else {})

    def measureIdle(self, target: Target) -> dict:
        """
        Measure idle connections against a fresh instance of the proxy, so
        that memory kept from earlier scenarios or rounds (allocator arenas,
        Squid's memory pools) does not hide the cost; direct measures the
        running nginx.
        """
        if target.port is None:
            assert self.nginx is not None
            return self.measureIdleOn(self.nginx, self.httpPort, None)
        instance = len(target.scenarios.get("idle", []))
        port, server = self.startProxy(target.name, None, f"-idle{instance}")
        try:
            return self.measureIdleOn(server, port, port)
        finally:
            server.stop()
            self.started.remove(server)

    def measureIdleOn(
        self, server: servers.ServerProcess, port: int, proxyPort: int | None
    ) -> dict:
        """
        Open the idle connections to C{port}, then measure C{server}'s RSS
        growth per connection and the latency of a few single requests made
        while they are open (through C{proxyPort}, if not L{None}).
        """
        count = self.args.idle
        tree = procstat.processTree(server.pid)
        before = procstat.rssKiB(server.pid, tree)
        sockets, failures = loadgen.openIdleConnections(port, count, timeout=120)
        try:
            for s in sockets:
                # Close with a reset: no TIME_WAIT left behind for later rounds.
                s.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
            # Let the server accept them all and settle: RSS stable to 0.5 %.
            time.sleep(0.5 if self.args.quick else 1.0)
            after = procstat.rssKiB(server.pid, procstat.processTree(server.pid))
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                time.sleep(0.25)
                now = procstat.rssKiB(server.pid, procstat.processTree(server.pid))
                stable = abs(now - after) <= after * 0.005
                after = now
                if stable:
                    break
            latencies = [
                loadgen.runCurl(
                    self.programs["curl"],
                    self.loadCpu,
                    self.url("/1k"),
                    proxyPort,
                    expectSize=1024,
                    timeout=30,
                ).seconds
                * 1000
                for _ in range(5)
            ]
            still = loadgen.countOpen(sockets)
        finally:
            opened = len(sockets)
            for s in sockets:
                s.close()
        metrics: dict[str, object] = {
            "opened": opened,
            "connect_failures": failures,
            "open": still,
            "rss_kib_per_conn": (after - before) / opened if opened else None,
            "rss_before_mib": before / 1024,
            "rss_after_mib": after / 1024,
            "latency_ms": statistics.median(latencies),
            "latencies_ms": latencies,
        }
        if opened < count or still < opened:
            metrics["error"] = (
                f"{opened} of {count} connections opened, {still} still open"
            )
        return metrics

    def measureAccessLog(self, target: Target) -> dict:
        if target.port is None:
            return {}
        if target.loggedFailure or target.logged is None:
            raise RuntimeError(target.loggedFailure or "no instance with an access log")
        if not target.logged.running():
            raise RuntimeError(
                "the instance with an access log exited:\n" + target.logged.explain()
            )
        # Off, on, on, off, each for half the run time: a load that drifts
        # steadily during the round (other work on the machine, CPU
        # frequency) weighs on both sides alike, where off-then-on would
        # charge all of it to one side.
        half = max(1, self.args.duration // 2)
        sequence: list[tuple[str, loadgen.WrkResult]] = []
        runs: dict[str, list[loadgen.WrkResult]] = {"off": [], "on": []}
        cpu = {"off": 0.0, "on": 0.0}
        written = 0
        for side in ("off", "on", "on", "off"):
            port = target.port if side == "off" else target.loggedPort
            server = target.server if side == "off" else target.logged
            size = logSize(target.accessLog)
            before = procstat.cpuSeconds(server.pid) if server else 0.0
            result = self.wrk("/1k", 50, half, port)
            sequence.append((side, result))
            runs[side].append(result)
            if server:
                cpu[side] += procstat.cpuSeconds(server.pid) - before
            if side == "on":
                written += logSize(target.accessLog) - size
        rates = {
            side: sum(r.requests for r in results) / sum(r.seconds for r in results)
            for side, results in runs.items()
        }
        # Proxy CPU per request, which does not depend on whether the proxy
        # or the load generator was the bottleneck.
        cpuPer10k = {
            side: cpu[side] / sum(r.requests for r in results) * 1e4
            for side, results in runs.items()
            if target.server and sum(r.requests for r in results)
        }
        onRequests = sum(r.requests for r in runs["on"])
        metrics: dict[str, object] = {
            "rps_off": rates["off"],
            "rps_on": rates["on"],
            "ratio": rates["on"] / rates["off"] if rates["off"] else None,
            "cpu_s_per_10k_off": cpuPer10k.get("off"),
            "cpu_s_per_10k_on": cpuPer10k.get("on"),
            "cpu_ratio": (
                cpuPer10k["on"] / cpuPer10k["off"]
                if cpuPer10k.get("off") and "on" in cpuPer10k
                else None
            ),
            "rps_each": [(side, r.requestsPerSecond) for side, r in sequence],
            "log_bytes_per_request": written / onRequests if onRequests else None,
            "wrk_errors_off": [r.errors for r in runs["off"]],
            "wrk_errors_on": [r.errors for r in runs["on"]],
        }
        problems = []
        if any(r.errorCount for results in runs.values() for r in results):
            problems.append(
                "wrk, log off: "
                + (
                    ", ".join(r.describeErrors() for r in runs["off"] if r.errorCount)
                    or "none"
                )
                + "; log on: "
                + (
                    ", ".join(r.describeErrors() for r in runs["on"] if r.errorCount)
                    or "none"
                )
            )
        if written <= 0:
            problems.append("the access log did not grow")
        if problems:
            metrics["error"] = "; ".join(problems)
        return metrics

    def measure(self, scenario: str, target: Target) -> dict:
        if scenario == "small_c1":
            return self.measureSmall(target, 1)
        if scenario == "small_c50":
            return self.measureSmall(target, 50)
        if scenario == "medium_c10":
            return self.measureMedium(target)
        if scenario == "large":
            return self.measureLarge(target, None)
        if scenario == "large_limited":
            return self.measureLarge(target, self.args.limit_rate)
        if scenario == "connect":
            return self.measureConnect(target)
        if scenario == "idle":
            return self.measureIdle(target)
        return self.measureAccessLog(target)

    def alive(self, target: Target) -> bool:
        """
        @return: whether C{target} can still be measured; records why not.
        """
        if target.failure:
            return False
        if self.nginx is not None and not self.nginx.running():
            target.failure = "the origin (nginx) exited:\n" + self.nginx.explain()
            log(target.failure)
            return False
        if target.server is not None and not target.server.running():
            target.failure = "exited during the benchmark:\n" + target.server.explain()
            log(f"{target.name} {target.failure}")
            return False
        return True

    def run(self) -> None:
        for target in self.targets:
            if self.alive(target):
                # Warm up: connections, caches, allocator.
                try:
                    self.wrk("/1k", 50, 1, target.port)
                except Exception as e:
                    log(f"{target.name} warm-up failed: {e}")
        for round in range(1, self.args.rounds + 1):
            # Every other round measures the targets in reverse order, so
            # that a machine growing steadily faster or slower during a
            # round does not favour the targets measured first.
            order = self.targets if round % 2 else self.targets[::-1]
            for scenario in self.args.scenarios:
                for target in order:
                    if scenario == "access_log" and target.port is None:
                        continue
                    if not self.alive(target):
                        continue
                    try:
                        metrics = self.measure(scenario, target)
                    except Exception as e:
                        detail = f"{type(e).__name__}: {e}"
                        metrics = {
                            "error": detail.splitlines()[0][:300],
                            "error_detail": detail[-4000:],
                        }
                    target.scenarios.setdefault(scenario, []).append(metrics)
                    if "error" in metrics:
                        target.errors.setdefault(scenario, []).append(metrics["error"])
                    log(
                        f"round {round}/{self.args.rounds} {scenario:13} "
                        f"{target.name:9} {summarize(metrics)}"
                    )
                    self.alive(target)

    def stop(self) -> None:
        for server in reversed(self.started):
            server.stop()
        if self.args.keep_temp:
            log(f"kept {self.directory}")
        else:
            shutil.rmtree(self.directory, ignore_errors=True)

    def results(self) -> dict:
        return {
            t.name: {
                "failure": t.failure,
                "access_log_failure": t.loggedFailure,
                "scenarios": t.scenarios,
                "errors": t.errors,
            }
            for t in self.targets
        }


def otherLoadSummary(targets: list[Target]) -> str:
    """
    @return: the median and maximum share of the proxy CPU and of the load
        CPU that other processes used during the 1 KiB runs (the JSON has
        the same figures for the single downloads).
    """
    parts = []
    for key, name in (
        ("proxy_cpu_others", "proxy CPU"),
        ("load_cpu_others", "load CPU"),
    ):
        values = [
            metrics[key]
            for target in targets
            for scenario in ("small_c1", "small_c50")
            for metrics in target.scenarios.get(scenario, [])
            if key in metrics
        ]
        if values:
            parts.append(f"{name} {statistics.median(values):.0%}, {max(values):.0%}")
    return "; ".join(parts) or "unknown"


def parseRate(rate: str) -> float:
    """
    @return: bytes per second for a curl rate such as C{10M} or C{500k}.
    """
    units = {"k": 1024, "m": MiB, "g": 1024 * MiB}
    suffix = rate[-1:].lower()
    return float(rate[:-1]) * units[suffix] if suffix in units else float(rate)


def logSize(path: str | None) -> int:
    try:
        return os.path.getsize(path) if path else 0
    except OSError:
        return 0


def summarize(metrics: dict) -> str:
    shown = []
    for key in (
        "rps",
        "rps_off",
        "rps_on",
        "ratio",
        "mbps",
        "p50_ms",
        "p99_ms",
        "cpu_s_per_10k",
        "cpu_s_per_gb",
        "rss_growth_mib",
        "rss_kib_per_conn",
        "latency_ms",
        "error",
    ):
        value = metrics.get(key)
        if value is None or (key == "mbps" and "rps" in metrics):
            continue
        shown.append(
            f"{key}={value:.3g}" if isinstance(value, float) else f"{key}={value}"
        )
    return " ".join(shown)


def report(
    bench: Benchmark, machine: dict, versions: dict, started: str
) -> tuple[str, dict]:
    """
    @return: the Markdown report and the JSON document.
    """
    args = bench.args
    targets = [t.name for t in bench.targets]
    table = [
        row
        for row in tables.rows(args.big_mib, args.idle, args.limit_rate)
        if row.scenario in args.scenarios
    ]
    results = bench.results()
    setup = (
        f"{args.rounds} round(s), medians; wrk {args.duration} s runs, 1 thread; "
        f"1 MiB GET: the median of {args.medium_runs} run(s) per round; "
        f"{args.big_mib} MiB GET: {args.big_downloads} download(s) per round; "
        f"CONNECT: {args.tunnel_downloads} download(s) per round; "
        f"proxies on CPU {bench.proxyCpu}, nginx/wrk/curl on CPU {bench.loadCpu}; "
        f"MB = 10^6 bytes; ratios are plain value ratios "
        f"(for latency, CPU and memory lower is better)"
    )
    lines = [
        f"## webproxy benchmark ({started}, webproxy {tools.gitRevision(REPOSITORY)})",
        "",
        f"Machine: {machine['cpu']}, nproc {machine['nproc']}, {machine['memory']}, "
        f"{machine['kernel']}, {machine['python']}; TCP congestion control "
        f"{machine['congestion_control']}; load average at start "
        f"{machine['loadavg_at_start']}, at end {machine['loadavg_at_end']}; "
        f"CPU used by other processes during the 1 KiB runs (median, max): "
        f"{machine['cpu_used_by_others']}",
        "",
        "Programs: " + "; ".join(f"{k}: {v}" for k, v in versions.items()),
        "",
        setup,
        "",
        tables.markdown(results, table, targets),
    ]
    document = {
        "started": started,
        "machine": machine,
        "versions": versions,
        "config": {
            key: getattr(args, key)
            for key in (
                "quick",
                "rounds",
                "duration",
                "big_mib",
                "medium_runs",
                "big_downloads",
                "tunnel_downloads",
                "idle",
                "limit_rate",
                "compare",
                "scenarios",
                "python",
                "webproxy_command",
                "tcp_congestion",
            )
        }
        | {"proxy_cpu": bench.proxyCpu, "load_cpu": bench.loadCpu},
        "results": results,
        "medians": tables.medians(results, table),
    }
    return "\n".join(lines), document


def main(argv: list[str]) -> int:
    args = parseArguments(argv)
    started = datetime.datetime.now(datetime.timezone.utc).strftime(
        "%Y-%m-%d %H:%M UTC"
    )
    signal.signal(signal.SIGTERM, interrupt)
    programs = ["nginx", "wrk", "curl", "openssl", "taskset", *args.compare]
    found = tools.findTools(programs, install=not args.no_install)
    limit = raiseFileLimit(args.idle + 4096)
    if limit < args.idle + 100:
        log(f"RLIMIT_NOFILE is {limit}; opening at most {limit - 200} idle connections")
        args.idle = max(limit - 200, 1)
    congestion = tools.congestionControl()
    if args.tcp_congestion and args.tcp_congestion != congestion:
        tools.setCongestionControl(args.tcp_congestion)
        log(f"TCP congestion control {args.tcp_congestion} (was {congestion})")
        try:
            return measure(args, found, started)
        finally:
            tools.setCongestionControl(congestion)
            log(f"TCP congestion control {congestion} again")
    return measure(args, found, started)


def measure(args: argparse.Namespace, found: dict[str, str], started: str) -> int:
    """
    Run the benchmark, print the report and write the JSON file.

    @return: the exit status.
    """
    machine = tools.machineInfo()
    machine["congestion_control"] = tools.congestionControl() + (
        " (--tcp-congestion)" if args.tcp_congestion else ""
    )
    versions = tools.toolVersions(found, args.python)
    bench = Benchmark(args, found)
    interrupted = False
    try:
        if bench.loadCpu is not None:
            os.sched_setaffinity(0, {bench.loadCpu})
        bench.makeOrigin()
        bench.makeTargets()
        bench.run()
    except KeyboardInterrupt:
        interrupted = True
        log("interrupted: reporting what was measured so far")
    finally:
        bench.stop()
    machine["loadavg_at_end"] = tools.loadAverage()
    machine["cpu_used_by_others"] = otherLoadSummary(bench.targets)
    text, document = report(bench, machine, versions, started)
    print(text)
    if args.output:
        with open(args.output, "w") as f:
            f.write(text)
    jsonPath = args.json or os.path.join(
        HERE, "results", time.strftime("%Y%m%d-%H%M%S") + ".json"
    )
    os.makedirs(os.path.dirname(os.path.abspath(jsonPath)), exist_ok=True)
    with open(jsonPath, "w") as f:
        json.dump(document, f, indent=1, default=str)
    log(f"raw numbers in {jsonPath}")
    return 130 if interrupted else 0


def interrupt(signum: int, frame: object) -> None:
    """
    Make SIGTERM unwind like Ctrl-C, so every process started is ended.
    """
    raise KeyboardInterrupt()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
