"""
Integration tests: bodies are streamed with flow control, so the proxy's
memory stays flat while one side is much slower than the other.

Each test runs its own proxy so that its resident set size (VmRSS from
/proc) is not influenced by other tests.
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time

from .origin import pattern, patternDigest
from .support import Conn

MiB = 1 << 20
# How much the proxy's RSS may grow while relaying.
ALLOWED_GROWTH = 30 * MiB


def warmUp(proxy, origin) -> None:
    """
    Relay a few MiB once, so that buffers every transfer needs are already
    allocated when the baseline is taken.
    """
    with proxy.connect(timeout=10) as c:
        c.send(
            b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n"
            % origin.url("/bytes?n=%d" % (4 * MiB)).encode()
        )
        assert len(c.readResponse(timeout=10).body) == 4 * MiB
        data = pattern(0, 4 * MiB)
        c.send(
            b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
            % (origin.url("/upload").encode(), len(data))
            + data
        )
        assert c.readResponse(timeout=10).status == 200


def test_slowDownloadMemoryFlat(makeProxy, origin) -> None:
    """
    A 200 MiB download read by a client that first stalls for two seconds
    and then reads 64 KiB every few milliseconds arrives intact, while the
    proxy's RSS grows by less than 30 MiB: the proxy stops reading from the
    origin while the client lags behind.
    """
    size = 200 * MiB
    expected = patternDigest(size)
    proxy = makeProxy()
    warmUp(proxy, origin)
    baseline = proxy.rss()
    peak = baseline
    s = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 128 * 1024)
    try:
        s.sendall(
            b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n"
            % origin.url("/bytes?n=%d" % size).encode()
        )
        # Stall: an origin on loopback could deliver everything by now.
        stallEnd = time.monotonic() + 2.0
        while time.monotonic() < stallEnd:
            peak = max(peak, proxy.rss())
            time.sleep(0.1)
        h = hashlib.sha256()
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(65536)
            assert chunk, "closed before the head"
            head += chunk
        head, _, rest = head.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        assert b"content-length: %d" % size in head.lower(), head
        h.update(rest)
        got = len(rest)
        deadline = time.monotonic() + 25
        nextSample = 0.0
        reads = 0
        while got < size:
            assert time.monotonic() < deadline, "only %d of %d bytes in time" % (
                got,
                size,
            )
            chunk = s.recv(min(65536, size - got))
            assert chunk, "closed after %d of %d bytes" % (got, size)
            h.update(chunk)
            got += len(chunk)
            reads += 1
            # Throttle: ~64 KiB per 2 ms (about 30 MiB/s) for the first
            # 100 MiB, then as fast as we can.
            if got < 100 * MiB and reads % 4 == 0:
                time.sleep(0.008)
            if time.monotonic() >= nextSample:
                peak = max(peak, proxy.rss())
                nextSample = time.monotonic() + 0.1
    finally:
        s.close()
    assert h.hexdigest() == expected
    assert peak - baseline < ALLOWED_GROWTH, "RSS grew by %.1f MiB" % (
        (peak - baseline) / MiB
    )


def test_slowUploadMemoryFlat(makeProxy, origin) -> None:
    """
    A 96 MiB upload sent as fast as the client can to an origin that reads
    at 16 MiB/s arrives intact, while the proxy's RSS grows by less than
    30 MiB: the proxy stops reading from the client while the origin lags
    behind.
    """
    size = 96 * MiB
    rate = 16 * MiB
    proxy = makeProxy()
    warmUp(proxy, origin)
    baseline = proxy.rss()
    peak = baseline
    expected = hashlib.sha256()
    s = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    s.settimeout(20)
    error = []

    def send() -> None:
        try:
            s.sendall(
                b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                % (origin.url("/upload?rate=%d" % rate).encode(), size)
            )
            step = 4 * MiB
            for offset in range(0, size, step):
                s.sendall(pattern(offset, step))
        except OSError as e:
            error.append(e)

    for offset in range(0, size, 4 * MiB):
        expected.update(pattern(offset, 4 * MiB))
    sender = threading.Thread(target=send, daemon=True)
    try:
        sender.start()
        deadline = time.monotonic() + 25
        while sender.is_alive() and time.monotonic() < deadline:
            peak = max(peak, proxy.rss())
            sender.join(0.1)
        assert not sender.is_alive(), "upload did not finish in time"
        assert not error, error
        resp = Conn(s).readResponse(timeout=max(0.5, deadline - time.monotonic()))
        peak = max(peak, proxy.rss())
    finally:
        s.close()
        sender.join(5)
    assert resp.status == 200, resp
    assert json.loads(resp.body) == {"count": size, "sha256": expected.hexdigest()}
    assert peak - baseline < ALLOWED_GROWTH, "RSS grew by %.1f MiB" % (
        (peak - baseline) / MiB
    )


def test_memoryReturnedAfterBurst(makeProxy, origin) -> None:
    """
    After 100 concurrent 8 MiB downloads that their clients abandon
    part-read, the proxy's RSS comes back to within 30 MiB of where it
    started within 40 s (the trimmer looks every 10 s and trims memory
    that stayed free for two looks).  Closed connections used to keep up
    to 1 MiB each alive until a full garbage collection (their last read,
    in Twisted's reference cycles), and memory freed after a burst stayed
    with the process.
    """
    proxy = makeProxy()
    warmUp(proxy, origin)
    baseline = proxy.rss()
    peak = baseline
    request = (
        b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n"
        % origin.url("/bytes?n=%d" % (8 * MiB)).encode()
    )
    clients = []
    try:
        for _ in range(100):
            s = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
            s.sendall(request)
            clients.append(s)
        for s in clients:
            assert s.recv(65536).startswith(b"HTTP/1.1 200 ")
        # Each connection's origin side reads on until its client's side
        # fills: that is what the proxy holds.
        until = time.monotonic() + 3
        while time.monotonic() < until:
            peak = max(peak, proxy.rss())
            time.sleep(0.1)
    finally:
        for s in clients:
            s.close()
    after = proxy.rss()
    deadline = time.monotonic() + 40
    while after - baseline >= ALLOWED_GROWTH and time.monotonic() < deadline:
        time.sleep(0.5)
        after = proxy.rss()
    assert after - baseline < ALLOWED_GROWTH, (
        "RSS still %.1f MiB above the start 40 s after the burst (peak %.1f MiB above)"
        % ((after - baseline) / MiB, (peak - baseline) / MiB)
    )


def test_interimResponsesWaitForSlowClient(makeProxy, makeOrigin) -> None:
    """
    An origin that sends interim (1xx) responses without end to a client
    that reads none of them is paused like a body's sender: after the socket
    buffers fill, it can write nothing more, and the proxy's RSS stays
    flat.  Before, the proxy read and queued them as fast as they came,
    about 30 MB/s, for as long as the exchange lasted.
    """
    origin = makeOrigin()
    proxy = makeProxy()
    warmUp(proxy, origin)
    baseline = proxy.rss()
    s = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    try:
        s.sendall(
            b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % origin.url("/interims").encode()
        )
        # Let the buffers between the origin and the client fill.
        time.sleep(2.0)
        before = origin.stats()["interim_bytes"]
        time.sleep(1.0)
        after = origin.stats()["interim_bytes"]
        growth = proxy.rss() - baseline
        # Then the client reads: the interim responses come through.
        s.settimeout(5)
        assert s.recv(65536).startswith(b"HTTP/1.1 102 Processing\r\n")
    finally:
        s.close()
    assert before > 0
    assert after - before < 1 * MiB, "the origin wrote %.1f MiB more in 1 s" % (
        (after - before) / MiB
    )
    assert growth < ALLOWED_GROWTH, "RSS grew by %.1f MiB" % (growth / MiB)


def test_pipelinedRequestsWaitForSlowClient(makeProxy, makeOrigin) -> None:
    """
    A client that pipelines many requests and reads none of the answers is
    not served faster than it reads: the proxy goes on to the next request
    only once the client has taken the last answer, so the origin sees few
    of them while the client stalls (those the socket buffers take), and the
    proxy's RSS stays flat.  When the client reads, every answer arrives,
    whole and in order.  Before, the origin answered all 400 at once and
    the proxy held them (24 MB here; 337 MiB for 6,000 in a probe).
    """
    count, size = 400, 60000
    origin = makeOrigin()
    proxy = makeProxy()
    warmUp(proxy, origin)
    baseline = proxy.rss()
    requests = b"".join(
        b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n"
        % origin.url("/bytes?n=%d&i=%d" % (size, i)).encode()
        for i in range(count)
    )
    s = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    # Small, but not so small that reading the answers at the end crawls.
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    try:
        s.sendall(requests)
        time.sleep(2.0)
        seen = sum(
            "&i=" in path
            for paths in origin.stats()["paths"].values()
            for path in paths
        )
        growth = proxy.rss() - baseline
        with Conn(s) as c:
            for i in range(count):
                response = c.readResponse(timeout=10)
                assert response.status == 200, (i, response)
                assert len(response.body) == size, i
    finally:
        s.close()
    assert (
        seen < count // 2
    ), "the origin answered %d of %d while the client stalled" % (
        seen,
        count,
    )
    assert growth < ALLOWED_GROWTH, "RSS grew by %.1f MiB" % (growth / MiB)
