# -*- test-case-name: tests.test_message -*-
"""
Tests for L{proxyapp.message}.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from proxyapp.http11 import RequestParser
from proxyapp.message import (
    HOP_BY_HOP,
    PRODUCT,
    REASONS,
    FieldNames,
    Headers,
    RequestHead,
    Response,
    ResponseHead,
    errorResponse,
    simpleResponse,
)


def sample() -> Headers:
    """
    @return: headers with repeated and differently-cased names.
    """
    return Headers(
        [
            (b"Host", b"example.com"),
            (b"Accept", b"text/html"),
            (b"X-Multi", b"one"),
            (b"Cookie", b"a=1"),
            (b"x-multi", b"two"),
        ]
    )


class HeadersTests(SynchronousTestCase):
    """
    Tests for L{Headers}.
    """

    def test_emptyByDefault(self) -> None:
        """
        A new Headers without arguments has no fields.
        """
        headers = Headers()
        self.assertEqual((list(headers), len(headers)), ([], 0))

    def test_wireOrder(self) -> None:
        """
        Iteration yields C{(name, value)} pairs in wire order with names as given.
        """
        self.assertEqual(
            list(sample()),
            [
                (b"Host", b"example.com"),
                (b"Accept", b"text/html"),
                (b"X-Multi", b"one"),
                (b"Cookie", b"a=1"),
                (b"x-multi", b"two"),
            ],
        )

    def test_len(self) -> None:
        """
        The length is the number of fields, counting repeats.
        """
        self.assertEqual(len(sample()), 5)

    def test_getCaseInsensitive(self) -> None:
        """
        get finds a field whatever the case of the name asked for.
        """
        headers = sample()
        for name in [b"accept", b"ACCEPT", b"aCcEpT"]:
            self.assertEqual(headers.get(name), b"text/html")

    def test_getFirst(self) -> None:
        """
        get returns the first of repeated fields.
        """
        self.assertEqual(sample().get(b"X-MULTI"), b"one")

    def test_getMissing(self) -> None:
        """
        get returns None, or the given default, for a missing field.
        """
        headers = sample()
        self.assertIsNone(headers.get(b"x-missing"))
        self.assertEqual(headers.get(b"x-missing", b"fallback"), b"fallback")

    def test_getEmptyValue(self) -> None:
        """
        get returns an empty value rather than the default.
        """
        self.assertEqual(Headers([(b"X-E", b"")]).get(b"x-e", b"default"), b"")

    def test_getAll(self) -> None:
        """
        getAll returns every value of a name, case-insensitively, in wire order.
        """
        self.assertEqual(sample().getAll(b"X-Multi"), [b"one", b"two"])

    def test_getAllMissing(self) -> None:
        """
        getAll returns an empty list for a missing field.
        """
        self.assertEqual(sample().getAll(b"x-missing"), [])

    def test_contains(self) -> None:
        """
        Membership is case-insensitive.
        """
        headers = sample()
        self.assertIn(b"COOKIE", headers)
        self.assertNotIn(b"Set-Cookie", headers)

    def test_add(self) -> None:
        """
        add appends a field at the end, after existing fields of the same name.
        """
        headers = sample()
        headers.add(b"X-MULTI", b"three")
        self.assertEqual(headers.getAll(b"x-multi"), [b"one", b"two", b"three"])
        self.assertEqual(list(headers)[-1], (b"X-MULTI", b"three"))

    def test_setReplacesAll(self) -> None:
        """
        set replaces every field of a name with one field at the first one's position.
        """
        headers = sample()
        headers.set(b"x-MULTI", b"only")
        self.assertEqual(
            list(headers),
            [
                (b"Host", b"example.com"),
                (b"Accept", b"text/html"),
                (b"X-Multi", b"only"),
                (b"Cookie", b"a=1"),
            ],
        )

    def test_setAppends(self) -> None:
        """
        set adds a missing field at the end.
        """
        headers = sample()
        headers.set(b"Via", b"1.1 proxy")
        self.assertEqual(list(headers)[-1], (b"Via", b"1.1 proxy"))
        self.assertEqual(len(headers), 6)

    def test_remove(self) -> None:
        """
        remove drops every field of a name, case-insensitively, and reports it did.
        """
        headers = sample()
        self.assertTrue(headers.remove(b"X-MULTI"))
        self.assertEqual(
            list(headers),
            [(b"Host", b"example.com"), (b"Accept", b"text/html"), (b"Cookie", b"a=1")],
        )

    def test_removeMissing(self) -> None:
        """
        remove of a missing field changes nothing and returns False.
        """
        headers = sample()
        self.assertFalse(headers.remove(b"x-missing"))
        self.assertEqual(headers, sample())

    def test_serialize(self) -> None:
        """
        serialize writes one C{name: value} line per field in wire order.
        """
        self.assertEqual(
            sample().serialize(),
            b"Host: example.com\r\nAccept: text/html\r\nX-Multi: one\r\nCookie: a=1\r\nx-multi: two\r\n",
        )

    def test_serializeEmpty(self) -> None:
        """
        serialize of no fields is empty.
        """
        self.assertEqual(Headers().serialize(), b"")

    def test_copyIsEqual(self) -> None:
        """
        A copy has the same fields in the same order.
        """
        self.assertEqual(sample().copy(), sample())

    def test_copyIsIndependent(self) -> None:
        """
        Changing a copy, including set on an existing field, leaves the original alone.
        """
        original = sample()
        copy = original.copy()
        copy.set(b"Host", b"other.example")
        copy.add(b"X-New", b"1")
        copy.remove(b"cookie")
        self.assertEqual(original, sample())
        original.set(b"Accept", b"*/*")
        self.assertEqual(copy.get(b"accept"), b"text/html")

    def test_equality(self) -> None:
        """
        Headers are equal when their fields, names as given, match in order.
        """
        self.assertEqual(Headers([(b"A", b"1")]), Headers([(b"A", b"1")]))
        self.assertNotEqual(
            Headers([(b"A", b"1"), (b"B", b"2")]), Headers([(b"B", b"2"), (b"A", b"1")])
        )
        self.assertNotEqual(Headers([(b"A", b"1")]), [(b"A", b"1")])

    def test_getTokens(self) -> None:
        """
        getTokens splits every field of a name on commas, strips and lowercases the elements.
        """
        headers = Headers(
            [(b"Connection", b" Keep-Alive ,X-Foo"), (b"connection", b"\tUPGRADE")]
        )
        self.assertEqual(
            headers.getTokens(b"CONNECTION"), [b"keep-alive", b"x-foo", b"upgrade"]
        )

    def test_getTokensIgnoresEmptyElements(self) -> None:
        """
        getTokens skips empty list elements.
        """
        headers = Headers([(b"TE", b", ,trailers,, ")])
        self.assertEqual(headers.getTokens(b"te"), [b"trailers"])

    def test_getTokensMissing(self) -> None:
        """
        getTokens of a missing field is an empty list.
        """
        self.assertEqual(Headers().getTokens(b"connection"), [])

    def test_invalidFieldsRefused(self) -> None:
        """
        C{add}, C{set} and the constructor refuse a name that is not a
        token and a value with a control character but tab, so a filter
        (or data it copies, say a percent-decoded URL) cannot add lines to
        a head; C{str} is refused too.  C{addTrusted} is for known-good
        fields.
        """
        for name, value in [
            (b"X-A", b"a\r\nX-Injected: 1"),
            (b"X-A", b"a\nb"),
            (b"X-A", b"a\x00b"),
            (b"X-A", b"a\x7f"),
            (b"X A", b"1"),
            (b"X-A:", b"1"),
            (b"", b"1"),
            ("X-A", b"1"),
            (b"X-A", "1"),
        ]:
            headers = Headers([(b"Host", b"example.com")])
            self.assertRaises(ValueError, headers.add, name, value)
            self.assertRaises(ValueError, headers.set, name, value)
            self.assertRaises(ValueError, Headers, [(name, value)])
            self.assertEqual(headers.serialize(), b"Host: example.com\r\n")
        headers = Headers()
        headers.add(b"X-A", b"tab\tand \xe9 obs-text")
        headers.addTrusted(b"Via", b"1.1 proxy")
        self.assertEqual(
            headers.serialize(), b"X-A: tab\tand \xe9 obs-text\r\nVia: 1.1 proxy\r\n"
        )


class RemoveHopByHopTests(SynchronousTestCase):
    """
    Tests for L{Headers.removeHopByHop}.
    """

    def removed(self, name: bytes, keep: frozenset[bytes] = frozenset()) -> Headers:
        """
        @return: headers holding C{name} among end-to-end fields, after
            removeHopByHop.
        """
        headers = Headers(
            [(b"Host", b"example.com"), (name, b"value"), (b"Accept", b"*/*")]
        )
        headers.removeHopByHop(keep)
        return headers

    def assertOnlyEndToEnd(self, headers: Headers) -> None:
        """
        Assert that only the end-to-end fields of L{removed} are left.
        """
        self.assertEqual(
            list(headers), [(b"Host", b"example.com"), (b"Accept", b"*/*")]
        )

    def test_connection(self) -> None:
        """
        Connection itself is removed.
        """
        self.assertOnlyEndToEnd(self.removed(b"Connection"))

    def test_fieldsNamedByConnection(self) -> None:
        """
        Every field Connection names is removed, case-insensitively, across Connection fields.
        """
        headers = Headers(
            [
                (b"Connection", b"X-Private, x-other"),
                (b"x-private", b"secret"),
                (b"Host", b"example.com"),
                (b"X-OTHER", b"1"),
                (b"connection", b"X-Third"),
                (b"X-Third", b"3"),
                (b"X-Kept", b"k"),
            ]
        )
        headers.removeHopByHop()
        self.assertEqual(list(headers), [(b"Host", b"example.com"), (b"X-Kept", b"k")])

    def test_keepAlive(self) -> None:
        """
        Keep-Alive is removed.
        """
        self.assertOnlyEndToEnd(self.removed(b"Keep-Alive"))

    def test_proxyConnection(self) -> None:
        """
        Proxy-Connection is removed.
        """
        self.assertOnlyEndToEnd(self.removed(b"Proxy-Connection"))

    def test_proxyAuthorization(self) -> None:
        """
        Proxy-Authorization is removed, so proxy credentials never go upstream.
        """
        self.assertOnlyEndToEnd(self.removed(b"Proxy-Authorization"))

    def test_proxyAuthenticate(self) -> None:
        """
        Proxy-Authenticate is removed.
        """
        self.assertOnlyEndToEnd(self.removed(b"Proxy-Authenticate"))

    def test_te(self) -> None:
        """
        TE is removed.
        """
        self.assertOnlyEndToEnd(self.removed(b"TE"))

    def test_upgrade(self) -> None:
        """
        Upgrade is removed by default.
        """
        self.assertOnlyEndToEnd(self.removed(b"Upgrade"))

    def test_caseInsensitive(self) -> None:
        """
        Hop-by-hop fields are recognised whatever their case.
        """
        self.assertOnlyEndToEnd(self.removed(b"pRoXy-CoNnEcTiOn"))

    def test_keepUpgrade(self) -> None:
        """
        Upgrade is kept when asked, even when Connection names it.
        """
        headers = Headers(
            [
                (b"Connection", b"Upgrade"),
                (b"Upgrade", b"websocket"),
                (b"Keep-Alive", b"timeout=5"),
            ]
        )
        headers.removeHopByHop(frozenset([b"upgrade"]))
        self.assertEqual(list(headers), [(b"Upgrade", b"websocket")])

    def test_framingFieldsKept(self) -> None:
        """
        Content-Length, Transfer-Encoding and other end-to-end fields stay, in order.
        """
        fields = [
            (b"Content-Type", b"text/plain"),
            (b"Content-Length", b"5"),
            (b"Transfer-Encoding", b"chunked"),
            (b"Trailer", b"X-Checksum"),
            (b"Via", b"1.1 a"),
        ]
        headers = Headers(fields)
        headers.removeHopByHop()
        self.assertEqual(list(headers), fields)

    def test_hopByHopSet(self) -> None:
        """
        HOP_BY_HOP lists the RFC 9110 hop-by-hop fields and Proxy-Connection in lowercase.
        """
        self.assertEqual(
            HOP_BY_HOP,
            frozenset(
                [
                    b"connection",
                    b"keep-alive",
                    b"proxy-connection",
                    b"proxy-authorization",
                    b"proxy-authenticate",
                    b"te",
                    b"upgrade",
                ]
            ),
        )


class RequestHeadTests(SynchronousTestCase):
    """
    Tests for L{RequestHead}.
    """

    def parse(self, data: bytes) -> RequestHead:
        """
        @return: the head parsed from C{data}.
        """
        parser = RequestParser()
        parser.receiveData(data)
        head = parser.nextEvent()
        assert isinstance(head, RequestHead)
        return head

    def test_defaults(self) -> None:
        """
        A new RequestHead is HTTP/1.1 with no fields and its target as path.
        """
        head = RequestHead(b"GET", b"/a?b")
        self.assertEqual(
            (
                head.version,
                list(head.headers),
                head.path,
                head.scheme,
                head.host,
                head.clientAddress,
                head.user,
            ),
            (b"HTTP/1.1", [], b"/a?b", None, None, None, None),
        )

    def test_receivedAfterChanges(self) -> None:
        """
        L{Headers.received} answers with the first value the parser took,
        whatever was set, added or removed since, and a copy keeps that.
        """
        head = self.parse(
            b"GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n"
            b"User-Agent:  ua/1 \r\nReferer: http://a.example/x\r\n"
            b"user-agent: ua/2\r\n\r\n"
        )
        headers = head.headers
        self.assertEqual(headers.received(b"User-Agent"), b"ua/1")
        headers.set(b"User-Agent", b"Mozilla/5.0")
        headers.remove(b"Referer")
        headers.add(b"From", b"x@example.com")
        headers.set(b"Referer", b"http://b.example/")
        self.assertEqual(
            (headers.get(b"user-agent"), headers.get(b"referer")),
            (b"Mozilla/5.0", b"http://b.example/"),
        )
        for each in (headers, headers.copy()):
            self.assertEqual(
                (
                    each.received(b"user-agent"),
                    each.received(b"REFERER"),
                    each.received(b"from"),
                    each.received(b"accept"),
                ),
                (b"ua/1", b"http://a.example/x", None, None),
            )

    def test_receivedUnchanged(self) -> None:
        """
        Unchanged, or with fields only added, L{Headers.received} answers
        from the block as received: an added field is not in it.
        """
        head = self.parse(
            b"GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n"
            b"Referer: http://a.example/x\r\n\r\n"
        )
        head.headers.add(b"User-Agent", b"added/1")
        self.assertEqual(
            (head.headers.received(b"referer"), head.headers.received(b"user-agent")),
            (b"http://a.example/x", None),
        )

    def test_receivedWithoutBlock(self) -> None:
        """
        Headers made in code have nothing received: L{Headers.received}
        answers as L{Headers.get}.
        """
        headers = sample()
        self.assertEqual(headers.received(b"x-multi"), b"one")
        self.assertIsNone(headers.received(b"user-agent"))

    def test_serializeOriginForm(self) -> None:
        """
        serialize of an absolute-form request gives an origin-form HTTP/1.1 request head.
        """
        head = self.parse(
            b"GET http://example.com/a%2Fb?c=d HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n"
        )
        self.assertEqual(
            head.serialize(),
            b"GET /a%2Fb?c=d HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n",
        )

    def test_serializeEmptyPath(self) -> None:
        """
        An absolute-form target without a path is serialized with path C{/}.
        """
        head = self.parse(
            b"GET http://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n"
        )
        self.assertEqual(
            head.serialize(), b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"
        )

    def test_serializeHTTP10AsHTTP11(self) -> None:
        """
        An HTTP/1.0 request is serialized as HTTP/1.1.
        """
        head = self.parse(
            b"POST http://example.com/form HTTP/1.0\r\nContent-Length: 0\r\n\r\n"
        )
        self.assertEqual(
            head.serialize(), b"POST /form HTTP/1.1\r\nContent-Length: 0\r\n\r\n"
        )

    def test_serializeModifiedHeaders(self) -> None:
        """
        serialize reflects changes made to the head's fields.
        """
        head = RequestHead(b"GET", b"/", headers=Headers([(b"Host", b"a")]))
        head.headers.add(b"Via", b"1.1 webproxy")
        self.assertEqual(
            head.serialize(), b"GET / HTTP/1.1\r\nHost: a\r\nVia: 1.1 webproxy\r\n\r\n"
        )

    def test_url(self) -> None:
        """
        url gives the target as text, decoding bytes above 0x7F as Latin-1.
        """
        self.assertEqual(RequestHead(b"GET", b"http://h/\xe9").url(), "http://h/\xe9")


class ResponseHeadTests(SynchronousTestCase):
    """
    Tests for L{ResponseHead}.
    """

    def test_serialize(self) -> None:
        """
        serialize writes the status line and fields.
        """
        head = ResponseHead(
            404, b"Not Found", Headers([(b"Content-Length", b"0"), (b"X-A", b"b")])
        )
        self.assertEqual(
            head.serialize(),
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nX-A: b\r\n\r\n",
        )

    def test_serializeHTTP10AsHTTP11(self) -> None:
        """
        A response received as HTTP/1.0 is serialized as HTTP/1.1.
        """
        head = ResponseHead(200, b"OK", version=b"HTTP/1.0")
        self.assertEqual(head.version, b"HTTP/1.0")
        self.assertEqual(head.serialize(), b"HTTP/1.1 200 OK\r\n\r\n")

    def test_serializeEmptyReason(self) -> None:
        """
        An empty reason phrase still leaves the space after the status code.
        """
        self.assertEqual(ResponseHead(204).serialize(), b"HTTP/1.1 204 \r\n\r\n")

    def test_defaults(self) -> None:
        """
        A new ResponseHead is HTTP/1.1 with no fields and an empty reason.
        """
        head = ResponseHead(200)
        self.assertEqual(
            (head.reason, head.version, list(head.headers)), (b"", b"HTTP/1.1", [])
        )


class ErrorResponseTests(SynchronousTestCase):
    """
    Tests for L{errorResponse} and L{simpleResponse}.
    """

    def test_type(self) -> None:
        """
        errorResponse returns a Response with the given status and reason.
        """
        response = errorResponse(502, "upstream refused the connection")
        self.assertIsInstance(response, Response)
        self.assertEqual(
            (response.head.status, response.reason),
            (502, "upstream refused the connection"),
        )

    def test_htmlContentType(self) -> None:
        """
        The error page is text/html in UTF-8.
        """
        response = errorResponse(400, "bad")
        self.assertEqual(
            response.head.headers.get(b"content-type"), b"text/html; charset=utf-8"
        )

    def test_notCached(self) -> None:
        """
        The error page is marked not to be stored.
        """
        self.assertEqual(
            errorResponse(400, "bad").head.headers.get(b"cache-control"), b"no-store"
        )

    def test_namesStatus(self) -> None:
        """
        The status line and the page name the status code and its phrase.
        """
        response = errorResponse(504, "the upstream did not answer in time")
        self.assertEqual(response.head.reason, b"Gateway Timeout")
        self.assertIn(b"504 Gateway Timeout", response.body)
        self.assertIn(b"<title>504 Gateway Timeout</title>", response.body)
        self.assertIn(b"the upstream did not answer in time", response.body)

    def test_unknownStatus(self) -> None:
        """
        A status without a known phrase still gets a page naming the code.
        """
        response = errorResponse(599, "odd")
        self.assertIn(b"599", response.body)
        self.assertEqual(response.head.status, 599)

    def test_escapesTarget(self) -> None:
        """
        The target is HTML-escaped in the page.
        """
        response = errorResponse(
            403, "blocked", "http://evil.example/<script>alert('x')</script>&\""
        )
        self.assertNotIn(b"<script>", response.body)
        self.assertIn(
            b"&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;&amp;&quot;",
            response.body,
        )

    def test_escapesReason(self) -> None:
        """
        The reason is HTML-escaped in the page.
        """
        response = errorResponse(400, "bad <b>header</b>")
        self.assertNotIn(b"<b>", response.body)
        self.assertIn(b"bad &lt;b&gt;header&lt;/b&gt;", response.body)

    def test_noTarget(self) -> None:
        """
        Without a target the page has no target paragraph.
        """
        self.assertNotIn(b"Target:", errorResponse(400, "bad").body)

    def test_nonASCIITarget(self) -> None:
        """
        A non-ASCII target is encoded as UTF-8 in the body.
        """
        response = errorResponse(404, "not found", "http://h/caf\xe9")
        self.assertIn("caf\xe9".encode("utf-8"), response.body)

    def test_namesProduct(self) -> None:
        """
        The page names the proxy product.
        """
        self.assertIn(PRODUCT, errorResponse(500, "filter failed").body)

    def test_reasonsTable(self) -> None:
        """
        Every phrase in REASONS is used for its status.
        """
        for status, phrase in REASONS.items():
            self.assertEqual(errorResponse(status, "x").head.reason, phrase)

    def test_simpleResponse(self) -> None:
        """
        simpleResponse builds a text/plain response with the phrase for its status.
        """
        response = simpleResponse(200, b"ok")
        self.assertEqual(
            (
                response.head.status,
                response.head.reason,
                response.body,
                list(response.head.headers),
            ),
            (200, b"OK", b"ok", [(b"Content-Type", b"text/plain; charset=utf-8")]),
        )


_names = st.sampled_from(
    [
        b"Host",
        b"host",
        b"Connection",
        b"Proxy-Connection",
        b"Keep-Alive",
        b"TE",
        b"Upgrade",
        b"X-A",
        b"x-a",
        b"X-B",
        b"Via",
    ]
)
_values = st.sampled_from(
    [
        b"",
        b"1",
        b"a b",
        b"close",
        b"keep-alive",
        b"Keep-Alive, X-A",
        b"upgrade",
        b"x-b,te",
    ]
)
_operations = st.lists(
    st.one_of(
        st.tuples(st.just("get"), _names),
        st.tuples(st.just("getAll"), _names),
        st.tuples(st.just("getTokens"), _names),
        st.tuples(st.just("contains"), _names),
        st.tuples(st.just("len"), st.none()),
        st.tuples(st.just("set"), st.tuples(_names, _values)),
        st.tuples(st.just("add"), st.tuples(_names, _values)),
        st.tuples(st.just("remove"), _names),
        st.tuples(st.just("removeHopByHop"), st.booleans()),
        st.tuples(st.just("hasAny"), st.lists(_names, max_size=3)),
        st.tuples(st.just("serialize"), st.none()),
        st.tuples(st.just("copy"), st.none()),
    ),
    max_size=8,
)


class BlockBackedTests(SynchronousTestCase):
    """
    Headers kept as the received block behave exactly like headers built
    from a list of fields.
    """

    @settings(max_examples=1500, deadline=None)
    @given(
        fields=st.lists(
            st.tuples(_names, _values, st.sampled_from([b":", b": ", b":\t ", b":  "])),
            max_size=6,
        ),
        operations=_operations,
    )
    def test_sameAsParsed(
        self,
        fields: list[tuple[bytes, bytes, bytes]],
        operations: list[tuple[str, Any]],
    ) -> None:
        """
        Every operation gives the same answer, and leaves the same fields,
        on a block-backed and a list-backed L{Headers}; serialised, the
        block-backed one keeps the received spacing.
        """
        block = b"".join(
            name + separator + value + b"\r\n" for name, value, separator in fields
        )
        fields = [(name, value) for name, value, _ in fields]  # type: ignore[misc]
        lazy = Headers._fromBlock(block, b"\n" + block.lower())
        eager = Headers(fields)
        for operation, argument in operations:
            if operation == "get":
                results = [h.get(argument) for h in (lazy, eager)]
            elif operation == "getAll":
                results = [h.getAll(argument) for h in (lazy, eager)]
            elif operation == "getTokens":
                results = [h.getTokens(argument) for h in (lazy, eager)]
            elif operation == "contains":
                results = [argument in h for h in (lazy, eager)]
            elif operation == "len":
                results = [len(h) for h in (lazy, eager)]
            elif operation == "set":
                results = [h.set(*argument) for h in (lazy, eager)]
            elif operation == "add":
                results = [h.add(*argument) for h in (lazy, eager)]
            elif operation == "remove":
                results = [h.remove(argument) for h in (lazy, eager)]
            elif operation == "removeHopByHop":
                keep = frozenset([b"upgrade"]) if argument else frozenset()
                results = [h.removeHopByHop(keep) for h in (lazy, eager)]
            elif operation == "hasAny":
                names = FieldNames(argument or [b"x-none"])
                results = [h.hasAny(names) for h in (lazy, eager)]
            elif operation == "serialize":
                results = [
                    list(Headers._fromBlock(serialized, b"\n" + serialized.lower()))
                    for serialized in (lazy.serialize(), eager.serialize())
                ]
            else:
                lazy, eager = lazy.copy(), eager.copy()
                results = []
            self.assertEqual(results[:1], results[1:], (operation, argument))
        self.assertEqual(list(lazy), list(eager))

    def test_connectionListedFieldsRemoved(self) -> None:
        """
        A field that the received Connection header names is removed with
        the fixed hop-by-hop fields, also when the block is cut in place.
        """
        block = (
            b"Host: a\r\nConnection: keep-alive, X-A\r\nX-A: 1\r\n"
            b"Proxy-Connection: close\r\nX-B: 2\r\n"
        )
        headers = Headers._fromBlock(block, b"\n" + block.lower())
        headers.removeHopByHop()
        self.assertEqual(list(headers), [(b"Host", b"a"), (b"X-B", b"2")])

    def test_fixedNamesCutInPlace(self) -> None:
        """
        When Connection names nothing but connection options, the hop-by-hop
        lines are cut out of the block and the rest is sent as received.
        """
        block = b"Host:a\r\nConnection: Keep-Alive\r\nX-B:  2 \r\nTE: trailers\r\n"
        headers = Headers._fromBlock(block, b"\n" + block.lower())
        headers.removeHopByHop()
        headers.add(b"Via", b"1.1 p")
        self.assertEqual(headers.serialize(), b"Host:a\r\nX-B:  2 \r\nVia: 1.1 p\r\n")
