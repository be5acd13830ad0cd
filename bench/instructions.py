"""
Count the instructions webproxy executes per proxied request, under
valgrind's callgrind: a deterministic measure of the per-request path that
does not drift with the machine's load the way requests per second do.

    python bench/instructions.py [--requests 2000] [--access-log PATH]

It starts a small keep-alive origin in this process (1 KiB responses shaped
like nginx's), runs the checkout's webproxy under callgrind, warms it up,
zeroes the counters, sends C{--requests} GETs over C{--connections}
keep-alive connections (absolute-form, one request in flight per
connection), dumps the counters and prints user-space instructions per
request.  Kernel work (the system calls) is not counted; see README.md for
the wall-clock benchmark.  Needs valgrind (Debian package C{valgrind});
everything listens on 127.0.0.1.

Use it to compare two versions of the code: a change that saves work on
the per-request path shows here as fewer instructions, run after run.
"""

import argparse
import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CHECKOUT = os.path.dirname(HERE)

BODY = b"x" * 1024
RESPONSE = (
    b"HTTP/1.1 200 OK\r\n"
    b"Server: nginx/1.22.1\r\n"
    b"Date: Sun, 22 Nov 2026 03:20:00 GMT\r\n"
    b"Content-Type: application/octet-stream\r\n"
    b"Content-Length: 1024\r\n"
    b"Last-Modified: Sun, 22 Nov 2026 03:17:00 GMT\r\n"
    b"Connection: keep-alive\r\n"
    b'ETag: "6560f1bc-400"\r\n'
    b"Accept-Ranges: bytes\r\n"
    b"\r\n" + BODY
)


def serveOrigin(listener: socket.socket) -> None:
    """
    Answer every request head on every connection with L{RESPONSE}.
    """

    def serve(connection: socket.socket) -> None:
        buffered = b""
        with connection:
            while True:
                data = connection.recv(65536)
                if not data:
                    return
                buffered += data
                while b"\r\n\r\n" in buffered:
                    _, buffered = buffered.split(b"\r\n\r\n", 1)
                    connection.sendall(RESPONSE)

    while True:
        try:
            connection, _ = listener.accept()
        except OSError:
            return
        threading.Thread(target=serve, args=(connection,), daemon=True).start()


def freePort() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def logTail(path: str) -> str:
    """
    @return: the end of webproxy's log at C{path}, for an error message
        (the temporary directory holding it is removed on the way out).
    """
    with open(path, "rb") as f:
        return f.read()[-4000:].decode("utf-8", "replace")


def startOrigin() -> tuple[socket.socket, int]:
    """
    Serve L{RESPONSE} on 127.0.0.1 from a thread of this process.

    @return: the listening socket (close it at the end) and its port.
    """
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    threading.Thread(target=serveOrigin, args=(listener,), daemon=True).start()
    return listener, listener.getsockname()[1]


def requestFor(originPort: int) -> bytes:
    """
    @return: the absolute-form GET of the origin's 1 KiB answer.
    """
    return b"GET http://127.0.0.1:%d/1k HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % (
        originPort,
        originPort,
    )


def startProxy(
    argv: list[str],
    directory: str,
    environment: dict[str, str],
    port: int,
    timeout: float,
) -> tuple[subprocess.Popen, str]:
    """
    Run C{argv} (webproxy, listening on C{port}) in C{directory}, its output
    in C{webproxy.log} there, and wait until it accepts connections.

    @return: the process and its log's path.
    """
    logPath = os.path.join(directory, "webproxy.log")
    with open(logPath, "wb") as log:
        process = subprocess.Popen(
            argv, cwd=directory, env=environment, stdout=log, stderr=log
        )
    try:
        waitForProxy(port, process, timeout, logPath)
    except BaseException:
        stop(process)
        raise
    return process, logPath


def waitForProxy(
    port: int, process: subprocess.Popen, timeout: float, log: str
) -> None:
    """
    Wait until webproxy accepts connections on C{port}.

    @param log: the file its output goes to, shown if it never does.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("webproxy exited; its log ends:\n" + logTail(log))
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(
        f"webproxy did not listen on port {port} within {timeout:g} s; "
        "its log ends:\n" + logTail(log)
    )


def stop(process: subprocess.Popen) -> None:
    """
    Stop the proxy: SIGTERM, then SIGKILL if it is still there after 30 s.
    """
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()


def readResponse(connection: socket.socket) -> None:
    """
    Read one response to a request for L{BODY} and check that it is a 200.
    """
    received = b""
    while True:
        data = connection.recv(65536)
        if not data:
            raise SystemExit("the proxy closed a connection")
        received += data
        end = received.find(b"\r\n\r\n")
        # The proxy adds Via and may drop Connection: compare sizes of the
        # body, not of the whole response.
        if end != -1 and len(received) - end - 4 >= len(BODY):
            break
    if not received.startswith(b"HTTP/1.1 200 "):
        raise SystemExit(f"unexpected response: {received[:80]!r}")


def exchange(connections: list[socket.socket], request: bytes, rounds: int) -> None:
    """
    Send one request on every connection, read every response; repeat.
    """
    for _ in range(rounds):
        for connection in connections:
            connection.sendall(request)
        for connection in connections:
            readResponse(connection)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=10)
    parser.add_argument("--access-log", default="off")
    parser.add_argument("--python", default=sys.executable)
    options = parser.parse_args()
    valgrind = shutil.which("valgrind")
    control = shutil.which("callgrind_control")
    if not valgrind or not control:
        raise SystemExit(
            "needs valgrind and callgrind_control (Debian package valgrind)"
        )

    listener, originPort = startOrigin()
    proxyPort = freePort()
    temporary = tempfile.mkdtemp(prefix="webproxy-instructions-")
    output = os.path.join(temporary, "callgrind.out.%p")
    # A fixed hash seed: dictionaries and sets lay out the same way in every
    # run, so the count repeats.
    environment = dict(os.environ, PYTHONPATH=CHECKOUT, PYTHONHASHSEED="0")
    argv = [
        valgrind,
        "--tool=callgrind",
        f"--callgrind-out-file={output}",
        options.python,
        "-c",
        "from twisted.scripts.twistd import run; run()",
        "-n",
        "--pidfile=",
        "webproxy",
        "--port",
        str(proxyPort),
        "--interface",
        "127.0.0.1",
        "--access-log",
        options.access_log,
    ]
    process = None
    try:
        process, _ = startProxy(argv, temporary, environment, proxyPort, 120)
        request = requestFor(originPort)
        connections = [
            socket.create_connection(("127.0.0.1", proxyPort), timeout=60)
            for _ in range(options.connections)
        ]
        rounds = max(1, options.requests // options.connections)
        exchange(connections, request, 20)
        subprocess.run(
            [control, "-z", str(process.pid)], check=True, capture_output=True
        )
        exchange(connections, request, rounds)
        subprocess.run(
            [control, "-d", str(process.pid)], check=True, capture_output=True
        )
        for connection in connections:
            connection.close()
        total = 0
        for dump in glob.glob(os.path.join(temporary, "callgrind.out.*")):
            with open(dump) as f:
                for line in f:
                    if line.startswith(("summary:", "totals:")):
                        total = max(total, int(line.split()[1]))
        requests = rounds * options.connections
        print(
            f"{total // requests} instructions per request "
            f"({requests} requests, {options.connections} connections, "
            f"access log {options.access_log})"
        )
    finally:
        if process is not None:
            stop(process)
        listener.close()
        shutil.rmtree(temporary, ignore_errors=True)


if __name__ == "__main__":
    main()
