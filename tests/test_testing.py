# -*- test-case-name: tests.test_testing -*-
"""
Tests for L{proxyapp.testing}, the helpers filter authors test with: head
builders, L{verifyFilter} and the in-memory proxy.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase
from zope.interface import Invalid, implementer

from proxyapp.chain import PASS, EnabledFilter
from proxyapp.config import Settings, readConfigFile
from proxyapp.interfaces import IRequestFilter, IResponseFilter, ITunnelFilter
from proxyapp.message import RequestHead, Response, ResponseHead
from proxyapp.testing import (
    InMemoryProxy,
    OriginRequest,
    ProxiedResponse,
    makeRequestHead,
    makeResponse,
    makeResponseHead,
    verifyFilter,
)


@implementer(IRequestFilter, IResponseFilter)
class Stamp:
    """
    Adds a field to requests and to responses, and remembers the client
    address and the user it saw.
    """

    def __init__(self) -> None:
        self.clients: list[Any] = []

    def filterRequest(self, request: RequestHead) -> RequestHead:
        self.clients.append(request.clientAddress)
        request.headers.add(b"X-Stamp", b"request")
        return request

    def filterResponse(
        self, request: RequestHead, response: ResponseHead
    ) -> ResponseHead:
        response.headers.add(b"X-Stamp", b"response")
        return response


@implementer(IRequestFilter)
class Broken:
    """
    Claims IRequestFilter but has no C{filterRequest}.
    """


@implementer(IRequestFilter)
class Refuse:
    """
    Answers every request with 403 itself.
    """

    def filterRequest(self, request: RequestHead) -> Response:
        return makeResponse(403, b"refused by Refuse")


class HeadTests(SynchronousTestCase):
    """
    L{makeRequestHead} and L{makeResponseHead} build heads the way the proxy
    hands them to filters.
    """

    def test_requestDefaults(self) -> None:
        """
        The default head is C{GET http://example.com/}, split into its
        parts, with a Host field and a client address.
        """
        request = makeRequestHead()
        self.assertEqual(request.method, b"GET")
        self.assertEqual(request.scheme, "http")
        self.assertEqual(request.host, "example.com")
        self.assertEqual(request.port, 80)
        self.assertEqual(request.path, b"/")
        self.assertEqual(request.headers.get(b"host"), b"example.com")
        self.assertEqual(request.clientAddress, ("127.0.0.1", 50000))
        self.assertIsNone(request.user)
        self.assertEqual(request.url(), "http://example.com/")

    def test_requestTarget(self) -> None:
        """
        Port, path and query are parsed from the URL; given fields keep
        their order; client and user are set.
        """
        request = makeRequestHead(
            b"POST",
            b"https://example.com:8443/a/b?c=d",
            headers=[(b"X-One", b"1"), (b"X-Two", b"2")],
            client=("192.0.2.1", 1234),
            user="alice",
        )
        self.assertEqual(request.method, b"POST")
        self.assertEqual(request.scheme, "https")
        self.assertEqual(request.port, 8443)
        self.assertEqual(request.path, b"/a/b?c=d")
        self.assertEqual(
            list(request.headers),
            [(b"Host", b"example.com:8443"), (b"X-One", b"1"), (b"X-Two", b"2")],
        )
        self.assertEqual(request.clientAddress, ("192.0.2.1", 1234))
        self.assertEqual(request.user, "alice")

    def test_requestOwnHost(self) -> None:
        """
        A Host field given explicitly is not added twice.
        """
        request = makeRequestHead(headers=[(b"Host", b"example.com")])
        self.assertEqual(request.headers.getAll(b"host"), [b"example.com"])

    def test_connect(self) -> None:
        """
        A CONNECT head has the authority-form target's host and port.
        """
        request = makeRequestHead(b"CONNECT", b"example.com:443")
        self.assertEqual(request.method, b"CONNECT")
        self.assertEqual(request.host, "example.com")
        self.assertEqual(request.port, 443)

    def test_http10(self) -> None:
        """
        An HTTP/1.0 head gets no Host field added.
        """
        request = makeRequestHead(version=b"HTTP/1.0")
        self.assertEqual(request.version, b"HTTP/1.0")
        self.assertNotIn(b"host", request.headers)

    def test_responseHead(self) -> None:
        """
        L{makeResponseHead} builds a head with status, reason and fields.
        """
        head = makeResponseHead(404, [(b"Content-Type", b"text/plain")], b"Not Found")
        self.assertIsInstance(head, ResponseHead)
        self.assertEqual(head.status, 404)
        self.assertEqual(head.reason, b"Not Found")
        self.assertEqual(head.headers.get(b"content-type"), b"text/plain")
        self.assertEqual(makeResponseHead().status, 200)

    def test_response(self) -> None:
        """
        L{makeResponse} builds a complete L{Response} a filter can return.
        """
        response = makeResponse(403, b"no", b"text/html")
        self.assertIsInstance(response, Response)
        self.assertEqual(response.head.status, 403)
        self.assertEqual(response.body, b"no")
        self.assertEqual(response.head.headers.get(b"content-type"), b"text/html")


class VerifyFilterTests(SynchronousTestCase):
    """
    L{verifyFilter} checks a filter as the proxy does when it loads it.
    """

    def test_provided(self) -> None:
        """
        It returns the filter interfaces the object provides.
        """
        self.assertEqual(set(verifyFilter(Stamp())), {IRequestFilter, IResponseFilter})
        self.assertEqual(verifyFilter(Refuse()), [IRequestFilter])

    def test_providesNothing(self) -> None:
        """
        An object providing no filter interface fails.
        """
        self.assertRaises(AssertionError, verifyFilter, object())

    def test_brokenImplementation(self) -> None:
        """
        An object claiming an interface without its method fails.
        """
        self.assertRaises(Invalid, verifyFilter, Broken())

    def test_tunnelOnly(self) -> None:
        """
        A tunnel-only filter is a filter too.
        """

        @implementer(ITunnelFilter)
        class Tunnel:
            def filterTunnel(self, request: RequestHead) -> None:
                return None

        self.assertEqual(verifyFilter(Tunnel()), [ITunnelFilter])


class InMemoryProxyTests(SynchronousTestCase):
    """
    L{InMemoryProxy} runs real traffic through a real proxy protocol and a
    fake origin, without sockets.
    """

    def test_getDefaultOrigin(self) -> None:
        """
        Without filters, C{get} returns the default origin's answer, which
        names the Host it received.
        """
        proxy = InMemoryProxy()
        response = proxy.get("http://example.com/path?q=1")
        self.assertIsInstance(response, ProxiedResponse)
        self.assertEqual(response.status, 200)
        self.assertEqual(response.body, b"hello from example.com")
        self.assertEqual(response.headers.get(b"content-type"), b"text/plain")
        self.assertTrue(response.raw.startswith(b"HTTP/1.1 200 "))
        self.assertEqual(proxy.connections, [("example.com", 80)])

    def test_originRequests(self) -> None:
        """
        C{originRequests} records what the origin received: origin-form
        target, Host, the proxy's Via, and the body.
        """
        proxy = InMemoryProxy()
        proxy.get(
            "http://example.com:8080/upload",
            method=b"POST",
            body=b"data",
            headers=[(b"X-A", b"b")],
        )
        [request] = proxy.originRequests
        self.assertIsInstance(request, OriginRequest)
        self.assertEqual(request.head.method, b"POST")
        self.assertEqual(request.head.target, b"/upload")
        self.assertEqual(request.head.headers.get(b"host"), b"example.com:8080")
        self.assertEqual(request.head.headers.get(b"x-a"), b"b")
        self.assertEqual(request.head.headers.get(b"via"), b"1.1 webproxy-test")
        self.assertEqual(request.body, b"data")
        self.assertEqual(proxy.connections, [("example.com", 8080)])

    def test_originHandlerTuple(self) -> None:
        """
        An origin handler may answer C{(status, headers, body)}; the proxy
        frames it and the client gets it.
        """

        def origin(
            request: OriginRequest,
        ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
            return 404, [(b"X-Origin", b"yes")], b"missing " + request.head.target

        response = InMemoryProxy(origin=origin).get("http://example.com/x")
        self.assertEqual(response.status, 404)
        self.assertEqual(response.headers.get(b"x-origin"), b"yes")
        self.assertEqual(response.headers.get(b"content-length"), b"10")
        self.assertEqual(response.body, b"missing /x")

    def test_largeBody(self) -> None:
        """
        A large body reaches the caller whole: the client side's parser
        hands out large pieces as views, which are collected too.
        """
        body = bytes(range(256)) * 200
        response = InMemoryProxy(origin=lambda request: (200, [], body)).get(
            "http://example.com/big"
        )
        self.assertEqual(response.status, 200)
        self.assertEqual(response.body, body)

    def test_originHandlerRaw(self) -> None:
        """
        An origin handler may answer raw bytes, e.g. a chunked response,
        which the client gets de-chunked.
        """

        def origin(request: OriginRequest) -> bytes:
            return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"

        response = InMemoryProxy(origin=origin).get("http://example.com/")
        self.assertEqual(response.status, 200)
        self.assertEqual(response.body, b"abcde")

    def test_filtersRun(self) -> None:
        """
        Filters given as plain objects run on requests and responses; they
        see the client address of the harness.
        """
        stamp = Stamp()
        proxy = InMemoryProxy([stamp], client=("10.1.2.3", 5555))
        response = proxy.get("http://example.com/")
        self.assertEqual(response.headers.get(b"x-stamp"), b"response")
        self.assertEqual(
            proxy.originRequests[0].head.headers.get(b"x-stamp"), b"request"
        )
        self.assertEqual(stamp.clients, [("10.1.2.3", 5555)])
        self.assertEqual(proxy.chain.names(), ["Stamp"])

    def test_enabledFilters(self) -> None:
        """
        L{EnabledFilter}s are used as given, with their names and on_error.
        """
        proxy = InMemoryProxy([EnabledFilter("mine", Stamp(), PASS)])
        self.assertEqual(proxy.chain.names(), ["mine"])
        self.assertEqual(proxy.chain.filters[0].onError, PASS)

    def test_shortCircuit(self) -> None:
        """
        A filter's own answer reaches the client and the origin is never
        contacted.
        """
        proxy = InMemoryProxy([Refuse()])
        response = proxy.get("http://example.com/")
        self.assertEqual(response.status, 403)
        self.assertEqual(response.body, b"refused by Refuse")
        self.assertEqual(proxy.originRequests, [])
        self.assertEqual(proxy.connections, [])

    def test_requestRaw(self) -> None:
        """
        C{request} sends raw bytes, so malformed requests can be tested.
        """
        proxy = InMemoryProxy()
        response = proxy.request(
            b"GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n"
        )
        self.assertEqual(response.status, 200)
        bad = proxy.request(
            b"GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\nBad Field: x\r\n\r\n"
        )
        self.assertEqual(bad.status, 400)

    def test_head(self) -> None:
        """
        A HEAD response has no body.
        """
        response = InMemoryProxy().get("http://example.com/", method=b"HEAD")
        self.assertEqual(response.status, 200)
        self.assertEqual(response.body, b"")

    def test_severalRequests(self) -> None:
        """
        One harness serves several requests; the origin sees them all.
        """
        proxy = InMemoryProxy()
        for path in ("/a", "/b", "/c"):
            self.assertEqual(proxy.get("http://example.com" + path).status, 200)
        self.assertEqual(
            [r.head.target for r in proxy.originRequests], [b"/a", b"/b", b"/c"]
        )

    def test_settings(self) -> None:
        """
        Settings may be given, e.g. a body limit the proxy enforces.
        """
        proxy = InMemoryProxy(settings=Settings(viaPseudonym="t", maxBodyBytes=3))
        response = proxy.get("http://example.com/", method=b"POST", body=b"too long")
        self.assertEqual(response.status, 413)
        self.assertEqual(proxy.originRequests, [])


REPO_ROOT = Path(__file__).resolve().parent.parent
TUTORIAL = REPO_ROOT / "docs" / "filters.md"
EXAMPLE = REPO_ROOT / "examples" / "webproxy-example-filter"


class TutorialTests(SynchronousTestCase):
    """
    C{docs/filters.md} shows only code that is known to work: every Python
    block is copied from the example distribution (whose tests run it), and
    every TOML block is a valid configuration file.
    """

    def blocks(self, language: str) -> list[str]:
        text = TUTORIAL.read_text(encoding="utf-8")
        return re.findall(rf"^```{language}\n(.*?)^```$", text, re.M | re.S)

    def test_pythonFromExample(self) -> None:
        """
        Each Python block appears verbatim in a file of the example
        distribution.
        """
        sources = [p.read_text(encoding="utf-8") for p in EXAMPLE.rglob("*.py")]
        blocks = self.blocks("python")
        self.assertGreaterEqual(len(blocks), 6)
        for block in blocks:
            self.assertTrue(any(block in source for source in sources), block[:200])

    def test_tomlValid(self) -> None:
        """
        Each TOML block parses and passes the configuration file checks.
        """
        blocks = self.blocks("toml")
        self.assertTrue(blocks)
        for index, block in enumerate(blocks):
            tomllib.loads(block)
            path = self.mktemp()
            Path(path).write_text(block, encoding="utf-8")
            readConfigFile(path)

    def test_exampleTableAccepted(self) -> None:
        """
        The C{[filter.example]} table the tutorial enables is accepted by
        the example's own factory.
        """
        import importlib.util

        spec = importlib.util.spec_from_file_location(
            "_tutorial_example_filter",
            EXAMPLE / "proxyapp" / "plugins" / "webproxy_example_filter.py",
        )
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        spec.loader.exec_module(module)  # type: ignore[union-attr]
        for block in self.blocks("toml"):
            table = dict(tomllib.loads(block).get("filter", {}).get("example", {}))
            table.pop("on_error", None)
            verifyFilter(module.factory.makeFilter(table))
