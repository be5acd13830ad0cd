# -*- test-case-name: tests.test_filters_headers -*-
"""
Tests for L{proxyapp.filters.headers}: field edits on requests and
responses, per host, directly and through
L{proxyapp.testing.InMemoryProxy}.
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from proxyapp.filters import headers
from proxyapp.interfaces import IRequestFilter, IResponseFilter
from proxyapp.message import Headers
from proxyapp.testing import (
    InMemoryProxy,
    OriginRequest,
    makeRequestHead,
    makeResponseHead,
    verifyFilter,
)


def echo(request: OriginRequest) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """
    An origin answering with the request head it received.
    """
    return (
        200,
        [(b"Content-Type", b"text/plain"), (b"Server", b"origin/1")],
        request.head.headers.serialize(),
    )


class HeadersFilterTests(SynchronousTestCase):
    """
    L{headers.HeadersFilter} called directly.
    """

    def request(
        self,
        config: dict[str, Any],
        fields: list[tuple[bytes, bytes]],
        url: bytes = b"http://example.com/",
    ) -> Headers:
        f = headers.makeFilter(config)
        request = makeRequestHead(url=url, headers=fields)
        self.assertIs(f.filterRequest(request), request)
        return request.headers

    def response(
        self,
        config: dict[str, Any],
        fields: list[tuple[bytes, bytes]],
        url: bytes = b"http://example.com/",
    ) -> Headers:
        f = headers.makeFilter(config)
        response = makeResponseHead(headers=fields)
        self.assertIs(f.filterResponse(makeRequestHead(url=url), response), response)
        return response.headers

    def test_interfaces(self) -> None:
        """
        The filter provides L{IRequestFilter}, and L{IResponseFilter} only
        when some rule edits responses.
        """
        self.assertEqual(
            verifyFilter(headers.makeFilter({"request_set": {"X-A": "1"}})),
            [IRequestFilter],
        )
        self.assertEqual(
            set(verifyFilter(headers.makeFilter({"response_remove": ["Server"]}))),
            {IRequestFilter, IResponseFilter},
        )

    def test_requestEdits(self) -> None:
        """
        Removals run first, then set (one field, in place of the first of
        that name, or appended), then add (appended, several for a list).
        """
        result = self.request(
            {
                "request_remove": ["x-drop"],
                "request_set": {"X-Set": "new", "X-Fresh": "f"},
                "request_add": {"X-Add": ["a", "b"], "X-Set": "extra"},
            },
            [
                (b"X-Set", b"old1"),
                (b"X-Drop", b"1"),
                (b"X-Set", b"old2"),
                (b"x-add", b"0"),
            ],
        )
        self.assertEqual(
            list(result)[1:],
            [
                (b"X-Set", b"new"),
                (b"x-add", b"0"),
                (b"X-Fresh", b"f"),
                (b"X-Add", b"a"),
                (b"X-Add", b"b"),
                (b"X-Set", b"extra"),
            ],
        )

    def test_responseEdits(self) -> None:
        """
        Response edits apply to response heads.
        """
        result = self.response(
            {
                "response_remove": ["Server"],
                "response_set": {"X-Frame-Options": "DENY"},
                "response_add": {"Link": "<a>"},
            },
            [(b"Server", b"x"), (b"X-Frame-Options", b"ALLOW")],
        )
        self.assertEqual(
            list(result), [(b"X-Frame-Options", b"DENY"), (b"Link", b"<a>")]
        )

    def test_hosts(self) -> None:
        """
        A rule with C{hosts} applies to those domains and their subdomains
        only; the top-level rule runs first, then the rules in order.
        """
        config = {
            "request_set": {"X-Order": "top"},
            "rule": [
                {
                    "hosts": ["example.com"],
                    "request_set": {"X-Order": "rule1"},
                    "response_add": {"X-Rule": "1"},
                },
                {"hosts": ["other.example"], "request_set": {"X-Order": "rule2"}},
            ],
        }
        self.assertEqual(
            self.request(config, [], b"http://WWW.Example.COM./").get(b"x-order"),
            b"rule1",
        )
        self.assertEqual(
            self.request(config, [], b"http://other.example/").get(b"x-order"), b"rule2"
        )
        self.assertEqual(
            self.request(config, [], b"http://example.org/").get(b"x-order"), b"top"
        )
        self.assertEqual(
            self.response(config, [], b"http://a.example.com/").get(b"x-rule"), b"1"
        )
        self.assertIsNone(
            self.response(config, [], b"http://example.org/").get(b"x-rule")
        )

    def test_topLevelHosts(self) -> None:
        """
        A top-level C{hosts} limits the top-level rule.
        """
        config = {"hosts": ["example.com"], "request_add": {"X-A": "1"}}
        self.assertEqual(self.request(config, []).get(b"x-a"), b"1")
        self.assertIsNone(self.request(config, [], b"http://example.org/").get(b"x-a"))

    def test_config(self) -> None:
        """
        Unknown keys, wrong types, managed fields and rules that edit
        nothing are rejected, naming the key.
        """
        for config, key in [
            ({"bogus": 1}, "bogus"),
            ({"request_remove": "Server"}, "request_remove"),
            ({"request_set": {"Host": "x"}}, "Host"),
            ({"response_set": {"Content-Length": "1"}}, "Content-Length"),
            ({"request_add": {"Transfer-Encoding": "chunked"}}, "Transfer-Encoding"),
            ({"request_add": {"Connection": "close"}}, "Connection"),
            ({"request_set": {"X-A": ["1"]}}, "request_set"),
            ({"request_add": {"X-A": []}}, "request_add"),
            ({"request_add": {"X-A": "a\nb"}}, "request_add"),
            ({"request_add": {"X-A": "a\x01b"}}, "request_add"),
            ({"response_set": {"X-A": "a\x7fb"}}, "response_set"),
            ({"request_set": {"Bad Name": "1"}}, "request_set"),
            ({"hosts": ["example.com"]}, "hosts"),
            ({"rule": [{"hosts": ["x.example"]}]}, "rule 1"),
            ({"rule": [{"hosts": [], "request_set": {"X": "1"}}]}, "hosts"),
            ({"rule": {"request_set": {"X": "1"}}}, "rule"),
            ({"rule": [{"request_set": {"X": "1"}, "nope": 1}]}, "nope"),
        ]:
            with self.assertRaises(ValueError) as e:
                headers.makeFilter(config)
            self.assertIn(key, str(e.exception), config)

    def test_hostsValidated(self) -> None:
        """
        A C{hosts} entry no host could match (a URL, C{*}) is refused,
        naming the rule's key and the entry, instead of making the rule
        apply nowhere.
        """
        for config, expected in [
            (
                {"hosts": ["http://example.com/"], "request_add": {"X-A": "1"}},
                "headers: hosts: 'http://example.com/' is not a domain name"
                " (give the host alone, e.g. example.com)",
            ),
            (
                {"rule": [{"hosts": ["a.example", "*"], "request_add": {"X": "1"}}]},
                "headers: rule 1: hosts: '*' is not a domain name",
            ),
        ]:
            with self.assertRaises(ValueError) as e:
                headers.makeFilter(config)
            self.assertIn(expected, str(e.exception))


class InMemoryTests(SynchronousTestCase):
    """
    The headers filter in a real proxy.
    """

    def test_edits(self) -> None:
        """
        The origin sees the request edits and the client the response
        edits.
        """
        f = headers.makeFilter(
            {
                "request_remove": ["X-Secret"],
                "request_set": {"X-Proxy": "webproxy"},
                "response_remove": ["Server"],
                "response_add": {"X-Seen": "yes"},
            }
        )
        proxy = InMemoryProxy([f], origin=echo)
        response = proxy.get("http://example.com/", headers=[(b"X-Secret", b"s")])
        self.assertEqual(response.status, 200)
        self.assertIn(b"X-Proxy: webproxy\r\n", response.body)
        self.assertNotIn(b"X-Secret", response.body)
        self.assertNotIn(b"server", response.headers)
        self.assertEqual(response.headers.get(b"x-seen"), b"yes")
