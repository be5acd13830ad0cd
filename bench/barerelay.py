"""
How fast can any relay move one big download on this machine?  Measures
webproxy against two bare relays that parse nothing, in one run, each
download followed by a direct one:

  - C{copy}: a blocking C{recv}/C{sendall} loop with 1 MiB reads, what a
    relay written in C does per byte (two copies in the kernel), and what
    webproxy's tunnel relay does;
  - C{splice}: the same with C{splice(2)} through a 1 MiB pipe (no copy),
    as webproxy relayed tunnels before (see C{proxyapp/relay.py}).

    python bench/barerelay.py [--rounds 5] [--big-mib 100]

Each relay runs in its own process on CPU 0, nginx and curl on CPU 1, as in
C{bench/run.py}; a relay serves one connection at a time, answers the
absolute-form GET curl sends to a proxy with C{Connection: close} to the
origin, and relays the response until the origin closes.  It prints each
relay's median MB/s and its ratio to the median of the direct downloads
made in its turns.  Everything listens on 127.0.0.1; Linux only (splice).
"""

import argparse
import fcntl
import os
import shutil
import socket
import statistics
import sys
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import loadgen  # noqa: E402 (the bench directory, put first above)
import run  # noqa: E402
import servers  # noqa: E402

CHUNK = 1 << 20
F_SETPIPE_SZ = 1031
ACCEPT_TIMEOUT = 120.0


def relayOne(client: socket.socket, originPort: int, mode: str) -> None:
    """
    Relay one GET from C{client} to the origin and its response back.
    """
    head = b""
    while b"\r\n\r\n" not in head and len(head) < 65536:
        data = client.recv(65536)
        if not data:
            return
        head += data
    method, target, _ = head.split(b"\r\n", 1)[0].split(b" ")
    path = b"/" + target.split(b"/", 3)[3] if target.startswith(b"http://") else target
    upstream = socket.create_connection(("127.0.0.1", originPort), timeout=60)
    with upstream:
        for sock in (client, upstream):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            # Blocking, for splice (a socket timeout makes it non-blocking);
            # curl's --max-time and main's kill bound the wait.
            sock.settimeout(None)
        upstream.sendall(
            method + b" " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Connection: close\r\n\r\n"
        )
        if mode == "copy":
            while data := upstream.recv(CHUNK):
                client.sendall(data)
            return
        pipeRead, pipeWrite = os.pipe()
        try:
            fcntl.fcntl(pipeRead, F_SETPIPE_SZ, CHUNK)
            while moved := os.splice(upstream.fileno(), pipeWrite, CHUNK):
                while moved:
                    moved -= os.splice(pipeRead, client.fileno(), moved)
        finally:
            os.close(pipeRead)
            os.close(pipeWrite)


def serve(listener: socket.socket, originPort: int, mode: str, count: int) -> None:
    """
    The relay process: serve C{count} connections, one at a time, then exit
    (or when none comes for L{ACCEPT_TIMEOUT} seconds).
    """
    os.sched_setaffinity(0, {0})
    listener.settimeout(ACCEPT_TIMEOUT)
    for _ in range(count):
        try:
            client, _ = listener.accept()
        except OSError:
            break
        client.settimeout(60)
        with client:
            relayOne(client, originPort, mode)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--big-mib", type=int, default=100)
    parser.add_argument("--no-webproxy", action="store_true")
    options = parser.parse_args(argv)
    benchArgs = run.parseArguments(
        ["--no-install", "--big-mib", str(options.big_mib), "--idle", "100"]
    )
    programs = {name: shutil.which(name) for name in ("nginx", "curl", "openssl")}
    programs["nginx"] = programs["nginx"] or "/usr/sbin/nginx"
    for name, path in programs.items():
        if not path:
            raise SystemExit(f"{name} not found (bench/run.py installs it)")
    bench = run.Benchmark(benchArgs, programs)
    children: list[int] = []
    proxies: dict[str, int] = {}
    webproxy = None
    try:
        bench.makeOrigin()
        for mode in ("copy", "splice"):
            listener = socket.socket()
            listener.bind(("127.0.0.1", 0))
            listener.listen(8)
            pid = os.fork()
            if pid == 0:
                try:
                    serve(listener, bench.httpPort, mode, options.rounds)
                except BaseException:
                    traceback.print_exc()
                finally:
                    os._exit(0)
            proxies[mode] = listener.getsockname()[1]
            listener.close()
            children.append(pid)
        if not options.no_webproxy:
            port = servers.freePort()
            webproxy = servers.startWebproxy(
                servers.WEBPROXY_COMMAND,
                sys.executable,
                os.path.dirname(HERE),
                os.path.join(bench.directory, "webproxy"),
                port,
                bench.tlsPort,
                None,
                0,
            )
            servers.waitForPort(webproxy, port)
            proxies["webproxy"] = port
        speeds: dict[str, list[float]] = {name: [] for name in proxies}
        direct: dict[str, list[float]] = {name: [] for name in proxies}
        for _ in range(options.rounds):
            for name, port in proxies.items():
                bench.warmBigFile()
                for into, proxy in ((speeds, port), (direct, None)):
                    result = loadgen.runCurl(
                        programs["curl"],
                        bench.loadCpu,
                        bench.url(bench.bigPath),
                        proxy,
                        timeout=120,
                        expectSize=bench.bigSize,
                    )
                    into[name].append(result.bytesPerSecond / 1e6)
        print(f"{options.rounds} rounds of one {options.big_mib} MiB download each")
        for name in proxies:
            mine = statistics.median(speeds[name])
            theirs = statistics.median(direct[name])
            print(
                f"{name:9s} {mine:6.0f} MB/s, direct in its turns {theirs:6.0f} MB/s:"
                f" {mine / theirs:.2f}x"
            )
    finally:
        if webproxy is not None:
            webproxy.stop()
        for pid in children:
            try:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
            except OSError:
                pass
        if bench.nginx is not None:
            bench.nginx.stop()
        shutil.rmtree(bench.directory, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
