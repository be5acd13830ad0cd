# -*- test-case-name: tests.test_filters_privacy -*-
"""
Tests for L{proxyapp.filters.privacy}: Via, X-Forwarded-For, Forwarded,
identifying request fields and cookies per domain, directly and through
L{proxyapp.testing.InMemoryProxy}.
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from proxyapp.filters import privacy
from proxyapp.interfaces import IRequestFilter, IResponseFilter
from proxyapp.message import Headers
from proxyapp.testing import (
    InMemoryProxy,
    OriginRequest,
    makeRequestHead,
    makeResponseHead,
    verifyFilter,
)

OWN_VIA = b"1.1 webproxy-test"


def echo(request: OriginRequest) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """
    An origin answering with the request head it received, and a cookie.
    """
    return (
        200,
        [
            (b"Content-Type", b"text/plain"),
            (b"Set-Cookie", b"id=1"),
            (b"Via", b"1.0 upstream"),
        ],
        request.head.headers.serialize(),
    )


def received(body: bytes) -> Headers:
    """
    @return: the fields of an echoed head.
    """
    fields = []
    for line in body.split(b"\r\n"):
        if line:
            name, _, value = line.partition(b": ")
            fields.append((name, value))
    return Headers(fields)


class PrivacyFilterTests(SynchronousTestCase):
    """
    L{privacy.PrivacyFilter} called directly.
    """

    def filtered(
        self,
        config: dict[str, Any],
        headers: list[tuple[bytes, bytes]] = [],
        client: str = "192.0.2.7",
        url: bytes = b"http://www.example.com/p",
    ) -> Headers:
        f = privacy.makeFilter(config)
        request = makeRequestHead(url=url, headers=headers, client=(client, 40000))
        request.headers.add(b"Via", OWN_VIA)
        self.assertIs(f.filterRequest(request), request)
        return request.headers

    def test_interfaces(self) -> None:
        """
        The filter always provides L{IRequestFilter}; L{IResponseFilter}
        only when it has work on responses.
        """
        self.assertEqual(verifyFilter(privacy.makeFilter({})), [IRequestFilter])
        self.assertEqual(
            set(verifyFilter(privacy.makeFilter({"strip_cookies_for": ["a.example"]}))),
            {IRequestFilter, IResponseFilter},
        )
        self.assertEqual(
            set(verifyFilter(privacy.makeFilter({"via": False}))),
            {IRequestFilter, IResponseFilter},
        )

    def test_defaultsChangeNothing(self) -> None:
        """
        With an empty table the request is forwarded as it is.
        """
        fields = [
            (b"User-Agent", b"curl"),
            (b"X-Forwarded-For", b"10.0.0.1"),
            (b"Forwarded", b"for=10.0.0.1"),
            (b"From", b"a@b"),
        ]
        headers = self.filtered({}, fields)
        self.assertEqual(list(headers)[1:], fields + [(b"Via", OWN_VIA)])

    def test_viaOff(self) -> None:
        """
        C{via = false} removes the proxy's own entry (the last Via field),
        keeping other proxies' entries.
        """
        headers = self.filtered({"via": False}, [(b"Via", b"1.0 other")])
        self.assertEqual(headers.getAll(b"via"), [b"1.0 other"])

    def test_viaOffList(self) -> None:
        """
        C{via = false} removes only the proxy's element from a
        comma-separated Via list, whatever its case or comment, and keeps
        the other elements (commas in comments included) and fields.
        """
        headers = self.filtered(
            {"via": False},
            [
                (b"Via", b"1.0 a (x, y), 1.1 WebProxy-Test (old), 1.1 b"),
                (b"Via", b"1.1 webproxy-test"),
                (b"Via", b"2 c, 1.1 webproxy-tester"),
            ],
        )
        self.assertEqual(
            headers.getAll(b"via"),
            [b"1.0 a (x, y), 1.1 b", b"2 c, 1.1 webproxy-tester"],
        )

    def test_viaOffEachVersion(self) -> None:
        """
        The proxy's Via names the version of the message it received: one
        filter removes C{1.0 <pseudonym>} and C{1.1 <pseudonym>} alike, in
        any order, from requests and responses.
        """
        f = privacy.makeFilter({"via": False})
        for version in [b"HTTP/1.1", b"HTTP/1.0", b"HTTP/1.1"]:
            own = version[5:] + b" webproxy-test"
            request = makeRequestHead(
                url=b"http://example.com/",
                headers=[(b"Via", b"1.0 other")],
                version=version,
            )
            request.headers.add(b"Via", own)
            f.filterRequest(request)
            self.assertEqual(request.headers.getAll(b"via"), [b"1.0 other"], version)
            response = makeResponseHead(headers=[(b"Via", b"1.1 upstream")])
            response.version = version
            response.headers.add(b"Via", own)
            f.filterResponse(request, response)
            self.assertEqual(
                response.headers.getAll(b"via"), [b"1.1 upstream"], version
            )

    def test_viaOffNotLearnt(self) -> None:
        """
        A request to the proxy itself, which carries no Via of the proxy's,
        teaches the filter nothing: its client's Via stays, and the next
        forwarded request loses the proxy's Via all the same.
        """
        f = privacy.makeFilter({"via": False})
        local = makeRequestHead(
            url=b"/", headers=[(b"Host", b"proxy"), (b"Via", b"1.1 bogus")]
        )
        self.assertIsNone(local.host)
        f.filterRequest(local)
        self.assertEqual(local.headers.getAll(b"via"), [b"1.1 bogus"])
        headers = self.filtered({"via": False}, [(b"Via", b"1.1 bogus")])
        self.assertEqual(headers.getAll(b"via"), [b"1.1 bogus"])
        request = makeRequestHead(headers=[(b"Via", b"1.1 bogus")])
        request.headers.add(b"Via", OWN_VIA)
        f.filterRequest(request)
        self.assertEqual(request.headers.getAll(b"via"), [b"1.1 bogus"])

    def test_viaOffNoOwnField(self) -> None:
        """
        When the last Via field is not one the proxy could have added (a
        list, or a version other than the message's), nothing is removed.
        """
        f = privacy.makeFilter({"via": False})
        for value in [b"1.1 a, 1.1 b", b"1.0 a", b"1.1 a (comment)"]:
            response = makeResponseHead(headers=[(b"Via", b"1.1 a"), (b"Via", value)])
            f.filterResponse(makeRequestHead(), response)
            self.assertEqual(response.headers.getAll(b"via"), [b"1.1 a", value])

    def test_forwardedFor(self) -> None:
        """
        X-Forwarded-For is passed, appended to, set or removed.
        """
        fields = [(b"X-Forwarded-For", b"10.0.0.1")]
        self.assertEqual(
            self.filtered({"forwarded_for": "pass"}, fields).getAll(b"x-forwarded-for"),
            [b"10.0.0.1"],
        )
        self.assertEqual(
            self.filtered({"forwarded_for": "append"}, fields).getAll(
                b"x-forwarded-for"
            ),
            [b"10.0.0.1, 192.0.2.7"],
        )
        self.assertEqual(
            self.filtered({"forwarded_for": "append"}).getAll(b"x-forwarded-for"),
            [b"192.0.2.7"],
        )
        self.assertEqual(
            self.filtered({"forwarded_for": "set"}, fields).getAll(b"x-forwarded-for"),
            [b"192.0.2.7"],
        )
        self.assertEqual(
            self.filtered({"forwarded_for": "remove"}, fields).getAll(
                b"x-forwarded-for"
            ),
            [],
        )
        self.assertEqual(
            self.filtered({"forwarded_for": "set"}, client="::ffff:10.1.1.1").get(
                b"x-forwarded-for"
            ),
            b"10.1.1.1",
        )

    def test_forwarded(self) -> None:
        """
        Forwarded (RFC 7239) gets this hop's for, host and proto; IPv6
        clients are quoted and bracketed, hosts with a port quoted.
        """
        fields = [(b"Forwarded", b"for=10.0.0.1")]
        self.assertEqual(
            self.filtered({"forwarded": "set"}, fields).getAll(b"forwarded"),
            [b"for=192.0.2.7;host=www.example.com;proto=http"],
        )
        self.assertEqual(
            self.filtered({"forwarded": "append"}, fields).getAll(b"forwarded"),
            [b"for=10.0.0.1, for=192.0.2.7;host=www.example.com;proto=http"],
        )
        self.assertEqual(
            self.filtered(
                {"forwarded": "set"},
                client="2001:db8::1",
                url=b"http://h.example:8080/",
            ).get(b"forwarded"),
            b'for="[2001:db8::1]";host="h.example:8080";proto=http',
        )
        self.assertEqual(
            self.filtered({"forwarded": "remove"}, fields).getAll(b"forwarded"), []
        )

    def test_removeAndReplace(self) -> None:
        """
        Listed fields are removed (any case); replaced fields get the
        configured value only when the client sent them.
        """
        headers = self.filtered(
            {
                "remove": ["from", "X-Client-Id"],
                "replace": {"User-Agent": "Mozilla/5.0", "Accept-Language": "en"},
            },
            [
                (b"From", b"me@example.com"),
                (b"x-client-id", b"7"),
                (b"User-Agent", b"curl/8"),
            ],
        )
        self.assertNotIn(b"from", headers)
        self.assertNotIn(b"x-client-id", headers)
        self.assertEqual(headers.getAll(b"user-agent"), [b"Mozilla/5.0"])
        self.assertNotIn(b"accept-language", headers)

    def test_referer(self) -> None:
        """
        C{referer = "origin"} cuts the Referer to scheme, host and port
        (dropping credentials); C{"remove"} drops it.
        """
        fields = [
            (b"Referer", b"https://user:pw@www.example.org:8443/secret/path?q=1#frag")
        ]
        self.assertEqual(
            self.filtered({"referer": "origin"}, fields).get(b"referer"),
            b"https://www.example.org:8443/",
        )
        self.assertIsNone(self.filtered({"referer": "remove"}, fields).get(b"referer"))
        self.assertIsNone(
            self.filtered({"referer": "origin"}, [(b"Referer", b"garbage")]).get(
                b"referer"
            )
        )

    def test_stripCookies(self) -> None:
        """
        Cookie is removed for listed domains and their subdomains only.
        """
        config = {"strip_cookies_for": ["example.com"]}
        fields = [(b"Cookie", b"id=1")]
        self.assertIsNone(
            self.filtered(config, fields, url=b"http://www.example.com/").get(b"cookie")
        )
        self.assertIsNone(
            self.filtered(config, fields, url=b"http://EXAMPLE.COM./").get(b"cookie")
        )
        self.assertEqual(
            self.filtered(config, fields, url=b"http://example.org/").get(b"cookie"),
            b"id=1",
        )

    def test_responseCookiesAndVia(self) -> None:
        """
        Set-Cookie is removed from listed domains' responses; with
        C{via = false} the proxy's own Via, which the core adds before the
        response filters run, is removed from responses.
        """
        f = privacy.makeFilter({"via": False, "strip_cookies_for": ["example.com"]})
        request = makeRequestHead(url=b"http://a.example.com/")
        response = makeResponseHead(
            headers=[(b"Set-Cookie", b"a=b"), (b"Via", b"1.0 upstream")]
        )
        response.headers.add(b"Via", OWN_VIA)
        self.assertIs(f.filterResponse(request, response), response)
        self.assertNotIn(b"set-cookie", response.headers)
        self.assertEqual(response.headers.getAll(b"via"), [b"1.0 upstream"])

    def test_config(self) -> None:
        """
        Unknown keys, wrong types and fields the proxy manages are rejected,
        naming the key.
        """
        for config, key in [
            ({"bogus": 1}, "bogus"),
            ({"via": "no"}, "via"),
            ({"forwarded_for": "hide"}, "forwarded_for"),
            ({"forwarded": True}, "forwarded"),
            ({"referer": "strict"}, "referer"),
            ({"remove": "From"}, "remove"),
            ({"remove": ["Content-Length"]}, "remove"),
            ({"remove": ["bad name"]}, "remove"),
            ({"replace": {"User-Agent": 5}}, "replace"),
            ({"replace": {"User-Agent": "a\r\nX: y"}}, "replace"),
            ({"replace": ["User-Agent"]}, "replace"),
            ({"strip_cookies_for": "example.com"}, "strip_cookies_for"),
        ]:
            with self.assertRaises(ValueError) as e:
                privacy.makeFilter(config)
            self.assertIn(key, str(e.exception))

    def test_stripCookiesForValidated(self) -> None:
        """
        A C{strip_cookies_for} entry no host could match is refused, naming
        the key and the entry, instead of leaving the cookies in place.
        """
        for entry in ["https://tracker.example/", "*", "tracker example"]:
            with self.assertRaises(ValueError) as e:
                privacy.makeFilter({"strip_cookies_for": ["ok.example", entry]})
            self.assertIn(
                f"privacy: strip_cookies_for: {entry!r} is not a domain name",
                str(e.exception),
            )


class InMemoryTests(SynchronousTestCase):
    """
    The privacy filter in a real proxy.
    """

    def test_whatTheOriginSees(self) -> None:
        """
        The origin receives the rewritten identifying fields and no Via from
        this proxy; the client receives no Set-Cookie from a listed domain
        and no Via from this proxy.
        """
        f = privacy.makeFilter(
            {
                "via": False,
                "forwarded_for": "set",
                "forwarded": "set",
                "remove": ["From"],
                "replace": {"User-Agent": "Mozilla/5.0"},
                "strip_cookies_for": ["example.com"],
            }
        )
        proxy = InMemoryProxy([f], origin=echo)
        response = proxy.get(
            "http://www.example.com/",
            headers=[
                (b"From", b"me@x"),
                (b"User-Agent", b"curl"),
                (b"Cookie", b"id=1"),
                (b"Via", b"1.0 other"),
            ],
        )
        self.assertEqual(response.status, 200)
        seen = received(response.body)
        self.assertEqual(seen.getAll(b"via"), [b"1.0 other"])
        self.assertEqual(seen.get(b"user-agent"), b"Mozilla/5.0")
        self.assertEqual(seen.get(b"x-forwarded-for"), b"127.0.0.1")
        self.assertEqual(
            seen.get(b"forwarded"), b"for=127.0.0.1;host=www.example.com;proto=http"
        )
        self.assertNotIn(b"from", seen)
        self.assertNotIn(b"cookie", seen)
        self.assertNotIn(b"set-cookie", response.headers)
        self.assertEqual(response.headers.getAll(b"via"), [b"1.0 upstream"])

    def test_viaKeptByDefault(self) -> None:
        """
        By default the proxy's Via reaches both the origin and the client.
        """
        proxy = InMemoryProxy([privacy.makeFilter({})], origin=echo)
        response = proxy.get("http://www.example.com/")
        self.assertEqual(received(response.body).getAll(b"via"), [OWN_VIA])
        self.assertEqual(response.headers.getAll(b"via"), [b"1.0 upstream", OWN_VIA])
        self.assertEqual(response.headers.get(b"set-cookie"), b"id=1")

    def test_viaOffEveryVersion(self) -> None:
        """
        With C{via = false} the proxy's Via reaches neither side, whichever
        HTTP version the client and the origin speak, in any order.
        """
        proxy = InMemoryProxy([privacy.makeFilter({"via": False})], origin=echo)
        self.assertEqual(proxy.get("http://www.example.com/").status, 200)
        response = proxy.request(
            b"GET http://www.example.com/ HTTP/1.0\r\nHost: www.example.com\r\n"
            b"Via: 1.1 a, 1.0 b\r\n\r\n"
        )
        self.assertEqual(response.status, 200)
        self.assertEqual(received(response.body).getAll(b"via"), [b"1.1 a, 1.0 b"])
        self.assertEqual(response.headers.getAll(b"via"), [b"1.0 upstream"])

        def http10(request: OriginRequest) -> bytes:
            return (
                b"HTTP/1.0 200 OK\r\nVia: 1.1 upstream\r\n"
                b"Content-Length: 2\r\n\r\nhi"
            )

        proxy = InMemoryProxy([privacy.makeFilter({"via": False})], origin=http10)
        response = proxy.get("http://www.example.com/")
        self.assertEqual(response.status, 200)
        self.assertEqual(response.headers.getAll(b"via"), [b"1.1 upstream"])

    def test_viaOffAfterStatusPage(self) -> None:
        """
        A request for the proxy's own status page carrying a Via field of
        the client's does not stop the filter removing the proxy's Via from
        the requests after it.
        """
        proxy = InMemoryProxy([privacy.makeFilter({"via": False})], origin=echo)
        proxy.request(b"GET / HTTP/1.1\r\nHost: proxy\r\nVia: 1.1 bogus\r\n\r\n")
        response = proxy.get("http://www.example.com/")
        self.assertEqual(response.status, 200)
        self.assertEqual(received(response.body).getAll(b"via"), [])
        self.assertEqual(response.headers.getAll(b"via"), [b"1.0 upstream"])
