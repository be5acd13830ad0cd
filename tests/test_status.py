# -*- test-case-name: tests.test_status -*-
"""
Tests for L{proxyapp.status}: the status figures and page, and the answers
to requests addressed to the proxy itself.
"""

from __future__ import annotations

import json

from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from proxyapp import __version__
from proxyapp.config import Settings
from proxyapp.message import Headers, RequestHead
from proxyapp.protocol import ProxyFactory
from proxyapp.status import localResponse, maxForwardsResponse, snapshot, statusPage

KEYS = {
    "name",
    "version",
    "uptime_seconds",
    "client_connections",
    "upstream_connections",
    "idle_upstream_connections",
    "requests",
    "tunnels",
    "bytes_from_clients",
    "bytes_to_clients",
}


def makeFactory() -> tuple[MemoryReactorClock, ProxyFactory]:
    reactor = MemoryReactorClock()
    return reactor, ProxyFactory(reactor, Settings(viaPseudonym="testproxy"))


def request(
    method: bytes, target: bytes, fields: list[tuple[bytes, bytes]] = []
) -> RequestHead:
    return RequestHead(method, target, b"HTTP/1.1", Headers(list(fields)))


class SnapshotTests(SynchronousTestCase):
    """
    L{snapshot} reports a factory's figures.
    """

    def test_keys(self) -> None:
        """
        The snapshot has exactly the documented keys.
        """
        _, factory = makeFactory()
        self.assertEqual(set(snapshot(factory)), KEYS)

    def test_nameAndVersion(self) -> None:
        """
        The snapshot names webproxy and its version.
        """
        _, factory = makeFactory()
        figures = snapshot(factory)
        self.assertEqual(
            (figures["name"], figures["version"]), ("webproxy", __version__)
        )

    def test_uptime(self) -> None:
        """
        Uptime is the reactor time since the factory was built.
        """
        reactor, factory = makeFactory()
        reactor.advance(90.5)
        self.assertEqual(snapshot(factory)["uptime_seconds"], 90.5)

    def test_counters(self) -> None:
        """
        The counters are the factory's statistics.
        """
        _, factory = makeFactory()
        factory.stats.requests = 7
        factory.stats.tunnels = 2
        factory.stats.bytesToClients = 1234
        figures = snapshot(factory)
        self.assertEqual(
            (figures["requests"], figures["tunnels"], figures["bytes_to_clients"]),
            (7, 2, 1234),
        )
        self.assertEqual(figures["idle_upstream_connections"], 0)

    def test_jsonSerializable(self) -> None:
        """
        The snapshot survives a JSON round trip unchanged.
        """
        _, factory = makeFactory()
        figures = snapshot(factory)
        self.assertEqual(json.loads(json.dumps(figures)), figures)


class StatusPageTests(SynchronousTestCase):
    """
    L{statusPage} renders the figures as HTML.
    """

    def test_containsVersion(self) -> None:
        """
        The page names webproxy and its version.
        """
        _, factory = makeFactory()
        page = statusPage(snapshot(factory))
        self.assertIn(b"webproxy " + __version__.encode("ascii"), page)
        self.assertTrue(page.startswith(b"<!DOCTYPE html>"))

    def test_uptimeFormatted(self) -> None:
        """
        The uptime is shown as days and hours:minutes:seconds.
        """
        reactor, factory = makeFactory()
        reactor.advance(2 * 86400 + 3 * 3600 + 4 * 60 + 5)
        self.assertIn(b"2d 03:04:05", statusPage(snapshot(factory)))

    def test_escapesValues(self) -> None:
        """
        Values are HTML-escaped.
        """
        _, factory = makeFactory()
        figures = snapshot(factory)
        figures["version"] = "<b>"
        page = statusPage(figures)
        self.assertIn(b"&lt;b&gt;", page)
        self.assertNotIn(b"<b>", page)


class LocalResponseTests(SynchronousTestCase):
    """
    L{localResponse} answers origin-form requests to the proxy.
    """

    def test_statusPage(self) -> None:
        """
        C{GET /} is the HTML status page, not to be cached.
        """
        _, factory = makeFactory()
        response = localResponse(request(b"GET", b"/"), factory)
        self.assertEqual(response.head.status, 200)
        self.assertEqual(
            response.head.headers.get(b"content-type"), b"text/html; charset=utf-8"
        )
        self.assertEqual(response.head.headers.get(b"cache-control"), b"no-store")
        self.assertIn(__version__.encode("ascii"), response.body)

    def test_statusJson(self) -> None:
        """
        C{GET /status.json} (query ignored) is the snapshot as JSON.
        """
        _, factory = makeFactory()
        response = localResponse(request(b"GET", b"/status.json?x=1"), factory)
        self.assertEqual(
            response.head.headers.get(b"content-type"), b"application/json"
        )
        self.assertEqual(set(json.loads(response.body)), KEYS)

    def test_unknownPath(self) -> None:
        """
        Another path is 404.
        """
        _, factory = makeFactory()
        self.assertEqual(
            localResponse(request(b"GET", b"/nope"), factory).head.status, 404
        )

    def test_otherMethod(self) -> None:
        """
        A method other than GET, HEAD or OPTIONS is 405 with Allow.
        """
        _, factory = makeFactory()
        response = localResponse(request(b"POST", b"/"), factory)
        self.assertEqual(response.head.status, 405)
        self.assertEqual(response.head.headers.get(b"allow"), b"GET, HEAD")

    def test_options(self) -> None:
        """
        OPTIONS is answered with the methods the proxy supports.
        """
        _, factory = makeFactory()
        response = localResponse(request(b"OPTIONS", b"*"), factory)
        self.assertEqual(response.head.status, 200)
        self.assertIn(b"CONNECT", response.head.headers.get(b"allow"))


class MaxForwardsResponseTests(SynchronousTestCase):
    """
    L{maxForwardsResponse} answers TRACE and OPTIONS whose Max-Forwards
    reached 0.
    """

    def test_traceEchoesRequest(self) -> None:
        """
        TRACE is answered 200 with the request line and fields as
        message/http.
        """
        response = maxForwardsResponse(
            request(
                b"TRACE",
                b"http://example.com/t",
                [(b"Host", b"example.com"), (b"Max-Forwards", b"0")],
            )
        )
        self.assertEqual(response.head.status, 200)
        self.assertEqual(response.head.headers.get(b"content-type"), b"message/http")
        self.assertEqual(
            response.body,
            b"TRACE http://example.com/t HTTP/1.1\r\nHost: example.com\r\nMax-Forwards: 0\r\n\r\n",
        )

    def test_traceStripsCredentials(self) -> None:
        """
        The TRACE echo leaves out Authorization, Proxy-Authorization and
        Cookie, whatever their case, and keeps the other fields in order.
        """
        response = maxForwardsResponse(
            request(
                b"TRACE",
                b"/t",
                [
                    (b"Host", b"example.com"),
                    (b"Authorization", b"Basic c2VjcmV0"),
                    (b"X-A", b"1"),
                    (b"proxy-authorization", b"Basic c2VjcmV0"),
                    (b"COOKIE", b"session=secret"),
                    (b"X-B", b"2"),
                ],
            )
        )
        self.assertEqual(
            response.body,
            b"TRACE /t HTTP/1.1\r\nHost: example.com\r\nX-A: 1\r\nX-B: 2\r\n\r\n",
        )
        self.assertNotIn(b"secret", response.body)
        self.assertNotIn(b"c2VjcmV0", response.body)

    def test_options(self) -> None:
        """
        OPTIONS is answered 200 with Allow and no body.
        """
        response = maxForwardsResponse(
            request(b"OPTIONS", b"http://example.com/", [(b"Max-Forwards", b"0")])
        )
        self.assertEqual(response.head.status, 200)
        self.assertIn(b"TRACE", response.head.headers.get(b"allow"))
        self.assertEqual(response.body, b"")
