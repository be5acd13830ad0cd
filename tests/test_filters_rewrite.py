# -*- test-case-name: tests.test_filters_rewrite -*-
"""
Tests for L{proxyapp.filters.rewrite}: streaming replacement with matches
straddling every possible chunk boundary, charsets, gzip and deflate, the
response head adjustments, bounded memory, and the filter in
L{proxyapp.testing.InMemoryProxy}.
"""

from __future__ import annotations

import gzip
import re
import tracemalloc
import zlib
from typing import Any, Iterable, Optional

from twisted.logger import Logger, formatEvent
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from proxyapp.chain import CutResponse, EnabledFilter, FilterChain
from proxyapp.filters import rewrite
from proxyapp.interfaces import IBodyFilter, IBodyTransform
from proxyapp.message import ResponseHead
from proxyapp.testing import (
    InMemoryProxy,
    OriginRequest,
    makeRequestHead,
    makeResponseHead,
    verifyFilter,
)


def transformFor(
    config: dict[str, Any],
    contentType: bytes = b"text/html; charset=utf-8",
    extra: Iterable[tuple[bytes, bytes]] = (),
    url: bytes = b"http://example.com/",
    status: int = 200,
) -> tuple[Optional[rewrite.RewriteTransform], ResponseHead]:
    """
    @return: the transform the filter offers for such a response, and the
        (possibly adjusted) head.
    """
    f = rewrite.makeFilter(config)
    head = makeResponseHead(status, [(b"Content-Type", contentType), *extra])
    return f.bodyTransform(makeRequestHead(url=url), head), head


def run(transform: Any, chunks: Iterable[bytes]) -> bytes:
    """
    @return: the whole output of C{transform} for C{chunks}.
    """
    out = [transform.transform(chunk) for chunk in chunks]
    out.append(transform.finish())
    return b"".join(out)


def splits(body: bytes) -> Iterable[list[bytes]]:
    """
    @return: C{body} split in two at every position, then in one-byte
        chunks.
    """
    for i in range(len(body) + 1):
        yield [body[:i], body[i:]]
    yield [body[i : i + 1] for i in range(len(body))]


class StreamingTests(SynchronousTestCase):
    """
    Replacement gives what replacing in the whole body would, however the
    body is cut into chunks.
    """

    def assertEveryway(
        self,
        config: dict[str, Any],
        body: bytes,
        expected: bytes,
        contentType: bytes = b"text/html; charset=utf-8",
    ) -> None:
        for chunks in splits(body):
            transform, _ = transformFor(config, contentType)
            self.assertEqual(run(transform, chunks), expected, chunks)

    def test_literal(self) -> None:
        """
        A literal match straddling any chunk boundary is found; adjacent
        and overlapping candidates behave as C{str.replace}.
        """
        body = b"<a href='http://old.example/'>old old oldold</a> ol"
        config = {"search": "old", "replace": "new"}
        self.assertEveryway(config, body, body.replace(b"old", b"new"))
        self.assertEveryway({"search": "aa", "replace": "b"}, b"aaaaa", b"bba")

    def test_regex(self) -> None:
        """
        A regular expression with groups, a lookbehind and word boundaries
        matches as on the whole body.
        """
        body = b"price: 10 EUR, 200 EUR; xEUR 7 EUR. (?<=a)"
        config = {
            "search": r"(?<=: |, |; )(\d+) EUR\b",
            "replace": r"\1 euros",
            "regex": True,
            "max_match": 16,
        }
        expected = re.sub(rb"(?<=: |, |; )(\d+) EUR\b", rb"\1 euros", body)
        self.assertEveryway(config, body, expected)

    def test_regexIgnoreCase(self) -> None:
        """
        Inline flags work.
        """
        self.assertEveryway(
            {"search": "(?i)hello", "replace": "bye", "regex": True, "max_match": 8},
            b"Hello HELLO hello",
            b"bye bye bye",
        )

    def test_regexAnchors(self) -> None:
        """
        C{^} matches at the start of the body (or of a line with C{(?m)}),
        not at chunk boundaries.
        """
        body = b"ab\nab ab\nab"
        self.assertEveryway(
            {"search": "^ab", "replace": "X", "regex": True, "max_match": 4},
            body,
            b"X\nab ab\nab",
        )
        self.assertEveryway(
            {"search": "(?m)^ab", "replace": "X", "regex": True, "max_match": 4},
            body,
            b"X\nX ab\nX",
        )

    def test_multibyte(self) -> None:
        """
        Non-ASCII search strings match in UTF-8 bodies even when a chunk
        boundary cuts a character in two; invalid bytes pass unchanged.
        """
        body = "Grüße aus München, grüße!".encode("utf-8") + b"\xff\xfe end"
        expected = "Hallo aus München, grüße!".encode("utf-8") + b"\xff\xfe end"
        self.assertEveryway({"search": "Grüße", "replace": "Hallo"}, body, expected)

    def test_latin1(self) -> None:
        """
        The charset named by Content-Type is used for the body.
        """
        body = "café crème".encode("latin-1")
        self.assertEveryway(
            {"search": "crème", "replace": "thé"},
            body,
            "café thé".encode("latin-1"),
            b"text/plain; charset=ISO-8859-1",
        )

    def test_ruleMaxMatch(self) -> None:
        """
        A rule's own C{max_match} bounds its hold-back.
        """
        config = {
            "max_match": 1000,
            "rule": [{"search": "b+", "replace": "X", "regex": True, "max_match": 5}],
        }
        transform, _ = transformFor(config)
        transform.transform(b"a" * 100)
        self.assertEqual(len(transform.stages[0].carry), 5)
        self.assertEveryway(config, b"abbbba", b"aXa")

    def test_rulesInOrder(self) -> None:
        """
        Rules run in order, each on the output of the one before.
        """
        config = {
            "rule": [
                {"search": "a", "replace": "bb"},
                {"search": "bbb", "replace": "X"},
            ]
        }
        self.assertEveryway(config, b"ab a", b"X bb")

    def test_emptyReplacement(self) -> None:
        """
        An empty replacement deletes.
        """
        self.assertEveryway(
            {"search": "<script>evil()</script>", "replace": ""},
            b"a<script>evil()</script>b",
            b"ab",
        )

    def test_boundedHoldBack(self) -> None:
        """
        Streaming a large body holds back at most the longest possible match
        (the search string's length, or C{max_match}).
        """
        for config, hold in [
            ({"search": "needle", "replace": "x"}, 6),
            (
                {"search": "ne+dle", "replace": "x", "regex": True, "max_match": 100},
                100,
            ),
        ]:
            transform, _ = transformFor(config)
            chunk = b"haystack " * 7000
            sent = 0
            for _ in range(100):
                sent += len(transform.transform(chunk))
                [stage] = transform.stages
                self.assertLessEqual(len(stage.carry), hold)
                self.assertLessEqual(len(stage.before), hold)
            sent += len(transform.finish())
            self.assertEqual(sent, len(chunk) * 100)

    def test_interface(self) -> None:
        """
        The transform provides L{IBodyTransform}, the filter L{IBodyFilter}.
        """
        transform, _ = transformFor({"search": "a", "replace": "b"})
        self.assertTrue(verifyObject(IBodyTransform, transform))
        self.assertEqual(
            verifyFilter(rewrite.makeFilter({"search": "a", "replace": "b"})),
            [IBodyFilter],
        )


class SelectionTests(SynchronousTestCase):
    """
    Which responses get a transform, and how their heads change.
    """

    config = {"search": "a", "replace": "b"}

    def test_mediaTypes(self) -> None:
        """
        Only the configured media types are rewritten (text/html and
        text/plain by default); wildcards work; parameters and case do not
        matter.
        """
        self.assertIsNotNone(transformFor(self.config, b"TEXT/HTML; charset=utf-8")[0])
        self.assertIsNotNone(transformFor(self.config, b"text/plain")[0])
        self.assertIsNone(transformFor(self.config, b"image/png")[0])
        self.assertIsNone(transformFor(self.config, b"application/json")[0])
        wild = {**self.config, "media_types": ["text/*", "application/json"]}
        self.assertIsNotNone(transformFor(wild, b"text/css")[0])
        self.assertIsNotNone(transformFor(wild, b"application/json")[0])
        f = rewrite.makeFilter(self.config)
        self.assertIsNone(f.bodyTransform(makeRequestHead(), makeResponseHead()))

    def test_ruleMediaTypes(self) -> None:
        """
        A rule's own C{media_types} overrides the default.
        """
        config = {
            "rule": [
                {"search": "a", "replace": "b", "media_types": ["text/css"]},
                {"search": "c", "replace": "d"},
            ]
        }
        transform, _ = transformFor(config, b"text/css")
        self.assertEqual(run(transform, [b"ac"]), b"bc")
        transform, _ = transformFor(config, b"text/html")
        self.assertEqual(run(transform, [b"ac"]), b"ad")

    def test_hosts(self) -> None:
        """
        With C{hosts}, only those domains and their subdomains are
        rewritten.
        """
        config = {**self.config, "hosts": ["example.com"]}
        self.assertIsNotNone(transformFor(config, url=b"http://www.example.com/")[0])
        self.assertIsNone(transformFor(config, url=b"http://example.org/")[0])

    def test_untouched(self) -> None:
        """
        no-transform, 206, unknown codings, C{decode = false} with a coding,
        and unknown or non-text charsets leave the body alone.
        """
        self.assertIsNone(
            transformFor(
                self.config, extra=[(b"Cache-Control", b"public, no-transform")]
            )[0]
        )
        self.assertIsNone(transformFor(self.config, status=206)[0])
        self.assertIsNone(
            transformFor(self.config, extra=[(b"Content-Encoding", b"br")])[0]
        )
        self.assertIsNone(
            transformFor(self.config, extra=[(b"Content-Encoding", b"gzip, gzip")])[0]
        )
        self.assertIsNone(
            transformFor(
                {**self.config, "decode": False}, extra=[(b"Content-Encoding", b"gzip")]
            )[0]
        )
        self.assertIsNotNone(
            transformFor(
                {**self.config, "decode": False},
                extra=[(b"Content-Encoding", b"identity")],
            )[0]
        )
        self.assertIsNone(
            transformFor(self.config, b"text/html; charset=no-such-charset")[0]
        )
        self.assertIsNone(transformFor(self.config, b"text/html; charset=base64")[0])

    def test_headAdjusted(self) -> None:
        """
        A rewritten response loses its length, digests and Accept-Ranges,
        keeps its Content-Encoding, and its ETag becomes weak.
        """
        transform, head = transformFor(
            self.config,
            extra=[
                (b"Content-Length", b"10"),
                (b"Content-MD5", b"x"),
                (b"Accept-Ranges", b"bytes"),
                (b"ETag", b'"v1"'),
                (b"Content-Encoding", b"gzip"),
            ],
        )
        self.assertIsNotNone(transform)
        self.assertEqual(
            list(head.headers),
            [
                (b"Content-Type", b"text/html; charset=utf-8"),
                (b"ETag", b'W/"v1"'),
                (b"Content-Encoding", b"gzip"),
            ],
        )

    def test_config(self) -> None:
        """
        Unknown keys, wrong types, bad patterns and replacements are
        rejected, naming the key.
        """
        for config, key in [
            ({}, "no rules"),
            ({"search": "a"}, "replace"),
            ({"search": "", "replace": "b"}, "search"),
            ({"search": "a", "replace": 1}, "replace"),
            ({"search": "a", "replace": "b", "bogus": 1}, "bogus"),
            ({"search": "a", "replace": "b", "regex": "yes"}, "regex"),
            ({"search": "(", "replace": "b", "regex": True}, "search"),
            ({"search": "a*", "replace": "b", "regex": True}, "empty string"),
            ({"search": "(a)", "replace": r"\2", "regex": True}, "replace"),
            ({"search": "abc", "replace": "b", "max_match": 2}, "max_match"),
            ({"search": "a", "replace": "b", "max_match": 0}, "max_match"),
            ({"search": "a", "replace": "b", "decode": 1}, "decode"),
            (
                {"search": "a", "replace": "b", "max_inflate_ratio": 0},
                "max_inflate_ratio",
            ),
            (
                {"search": "a", "replace": "b", "max_inflate_ratio": True},
                "max_inflate_ratio",
            ),
            (
                {"search": "a", "replace": "b", "max_inflate_ratio": 2.5},
                "max_inflate_ratio",
            ),
            (
                {"search": "a", "replace": "b", "media_types": "text/html"},
                "media_types",
            ),
            ({"search": "a", "replace": "b", "media_types": ["html"]}, "media_types"),
            ({"search": "a", "replace": "b", "hosts": []}, "hosts"),
            (
                {"rule": [{"search": "abcd", "replace": "b", "max_match": 3}]},
                "max_match",
            ),
            ({"rule": {"search": "a", "replace": "b"}}, "rule"),
        ]:
            with self.assertRaises(ValueError) as e:
                rewrite.makeFilter(config)
            self.assertIn(key, str(e.exception), config)

    def test_exponentialRegexWarns(self) -> None:
        """
        A search pattern that repeats without bound a part that itself
        repeats without bound (the shape that backtracks exponentially, and
        Python's re cannot be interrupted) is accepted with a warning at
        start naming it; patterns without that shape, or made safe with an
        atomic group or a possessive repeat, are not warned about.
        """
        events: list[dict[str, Any]] = []
        self.patch(rewrite, "log", Logger(observer=events.append))
        for search in ("(a+)+$", "(\\w+\\s*)+x", "(?:a|b+)*c"):
            rewrite.makeFilter({"search": search, "replace": "b", "regex": True})
            [event] = events
            self.assertIn("exponential time", formatEvent(event))
            self.assertIn(repr(search), formatEvent(event))
            del events[:]
        for search in ("a+b+", "(ab)+", "(?>a+)+", "a++", "x(a|b)*y"):
            rewrite.makeFilter({"search": search, "replace": "b", "regex": True})
        self.assertEqual(events, [])

    def test_regexTooLargeToCompile(self) -> None:
        """
        A regular expression nested thousands deep, or with a repeat count
        beyond what C{re} takes, is refused naming C{search}, like any
        invalid one (the factory raised RecursionError or OverflowError,
        reported as a crash of the plugin).
        """
        for search in ("(" * 3000 + "a" + ")" * 3000, "a{4294967296}"):
            with self.assertRaises(ValueError) as e:
                rewrite.makeFilter({"search": search, "replace": "b", "regex": True})
            self.assertIn("search: a regular expression too large", str(e.exception))


class EncodingTests(SynchronousTestCase):
    """
    gzip and deflate bodies are decoded, rewritten and encoded again.
    """

    config = {"search": "secret", "replace": "public"}
    text = b"<p>the secret is out, secret!</p>\n" * 20

    def encoded(self, coding: bytes, body: bytes, chunks: Iterable[bytes]) -> bytes:
        transform, head = transformFor(
            self.config, extra=[(b"Content-Encoding", coding)]
        )
        self.assertEqual(head.headers.get(b"content-encoding"), coding)
        return run(transform, chunks)

    def test_gzipEveryBoundary(self) -> None:
        """
        A gzip body cut at any position comes out as gzip of the rewritten
        text.
        """
        body = gzip.compress(self.text)
        for chunks in splits(body):
            self.assertEqual(
                gzip.decompress(self.encoded(b"gzip", body, chunks)),
                self.text.replace(b"secret", b"public"),
            )

    def test_deflate(self) -> None:
        """
        deflate bodies, zlib-wrapped (as specified) or raw (as some servers
        send), are re-encoded in the same form.
        """
        expected = self.text.replace(b"secret", b"public")
        wrapped = zlib.compress(self.text)
        out = self.encoded(
            b"deflate", wrapped, [wrapped[:1], wrapped[1:7], wrapped[7:]]
        )
        self.assertEqual(zlib.decompress(out), expected)
        compressor = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
        raw = compressor.compress(self.text) + compressor.flush()
        out = self.encoded(b"deflate", raw, [raw])
        self.assertEqual(zlib.decompress(out, -zlib.MAX_WBITS), expected)

    def test_gzipMembers(self) -> None:
        """
        A gzip body of several members is decoded whole.
        """
        body = gzip.compress(b"one secret ") + gzip.compress(b"two secrets")
        self.assertEqual(
            gzip.decompress(self.encoded(b"x-gzip", body, [body])),
            b"one public two publics",
        )

    def test_notReallyCompressed(self) -> None:
        """
        A body that is not what its Content-Encoding says passes as it came.
        """
        self.assertEqual(
            self.encoded(b"gzip", b"", [self.text[:50], self.text[50:]]), self.text
        )
        self.assertEqual(self.encoded(b"gzip", b"", [b"\x1f"]), b"\x1f")

    def test_corruptMidway(self) -> None:
        """
        A stream that breaks after output was sent ends as a valid gzip
        stream of what could be decoded; the rest is dropped.
        """
        body = gzip.compress(self.text * 100, compresslevel=1)
        chunks = [body[:1000], b"\x00garbage" * 100, body[2000:]]
        out = self.encoded(b"gzip", body, chunks)
        decoded = gzip.decompress(out)
        self.assertTrue(
            (self.text * 100).replace(b"secret", b"public").startswith(decoded)
        )

    def test_empty(self) -> None:
        """
        An empty body stays empty; a gzip stream of nothing stays a valid
        gzip stream of nothing.
        """
        self.assertEqual(self.encoded(b"gzip", b"", []), b"")
        self.assertEqual(
            gzip.decompress(self.encoded(b"gzip", b"", [gzip.compress(b"")])), b""
        )

    def test_bombInflatesInSteps(self) -> None:
        """
        Decompression proceeds in bounded steps, so a small chunk that
        inflates to megabytes never exists whole in memory.
        """
        bomb = gzip.compress(b"\0" * (20 << 20))
        inflater = rewrite._Inflater("gzip", ratio=1 << 20)
        pieces = list(inflater.inflate(bomb))
        self.assertEqual(sum(len(p) for p in pieces), 20 << 20)
        self.assertLessEqual(max(len(p) for p in pieces), rewrite.INFLATE_STEP)

    def test_bombStreams(self) -> None:
        """
        A chunk that inflates 1000-fold is decoded, rewritten and
        re-compressed piece by piece: the memory it takes is bounded by
        the inflate step and zlib's buffers, not by what it inflates to.
        """
        inflated = 32 << 20
        bomb = gzip.compress(b"\0" * inflated, 9)
        self.assertLess(len(bomb), 64 * 1024)
        transform, _ = transformFor(
            {"search": "a", "replace": "b", "max_inflate_ratio": 1 << 20},
            extra=[(b"Content-Encoding", b"gzip")],
        )
        tracemalloc.start()
        try:
            out = transform.transform(bomb)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        # Inflating the chunk whole would take 32 MiB.
        self.assertLess(peak, 4 << 20, f"peak {peak / 2**20:.1f} MiB")
        out += transform.finish()
        self.assertEqual(gzip.decompress(out), b"\0" * inflated)

    def test_inflateIsLazy(self) -> None:
        """
        L{rewrite._Inflater.inflate} inflates a piece only when the one
        before has been taken.
        """
        bomb = gzip.compress(b"\0" * (20 << 20))
        inflater = rewrite._Inflater("gzip", ratio=1 << 20)
        pieces = inflater.inflate(bomb)
        self.assertEqual(len(next(pieces)), rewrite.INFLATE_STEP)
        self.assertFalse(inflater.decompressor.eof)
        self.assertEqual(sum(len(p) for p in pieces), (20 << 20) - rewrite.INFLATE_STEP)
        self.assertTrue(inflater.decompressor.eof)

    def test_bombPassesThrough(self) -> None:
        """
        A body that inflates more than C{max_inflate_ratio} to 1 (plus
        1 MiB) stops being decoded at once: when nothing has been sent yet
        it passes as it came, compressed, and the proxy does not inflate
        the rest (a 1 MiB read of a bomb inflated to 1 GiB, 5.5 s of CPU).
        """
        bomb = gzip.compress(b"\0" * (32 << 20), 9)
        transform, _ = transformFor(
            {"search": "a", "replace": "b"},
            extra=[(b"Content-Encoding", b"gzip")],
        )
        half = len(bomb) // 2
        self.assertEqual(transform.transform(bomb[:half]), bomb[:half])
        self.assertFalse(transform.inflater.decompressor.eof)
        self.assertTrue(transform.passthrough)
        self.assertEqual(transform.transform(bomb[half:]), bomb[half:])
        self.assertEqual(transform.finish(), b"")
        # Inflated before it stopped: the allowance and 200 times the
        # compressed bytes, and at most one step more.
        produced = rewrite.INFLATE_ALLOWANCE + 200 * half - transform.inflater.budget
        self.assertLess(
            produced, rewrite.INFLATE_ALLOWANCE + 200 * half + rewrite.INFLATE_STEP
        )
        self.assertGreater(produced, rewrite.INFLATE_ALLOWANCE + 200 * half)

    def test_bombAfterOutputCuts(self) -> None:
        """
        A body that passes the ratio limit after rewritten output has been
        sent cannot be completed honestly: the transform raises
        L{CutResponse}, which cuts the response short.
        """
        page = b"one secret " * 10000
        transform, _ = transformFor(self.config, extra=[(b"Content-Encoding", b"gzip")])
        first = transform.transform(gzip.compress(page))
        self.assertTrue(first)
        bomb = gzip.compress(b"\0" * (32 << 20), 9)
        self.assertRaises(CutResponse, transform.transform, bomb)

    def test_ratioWithinLimit(self) -> None:
        """
        A body that compresses well but within the limit is rewritten; the
        limit is configurable.
        """
        body = b"secret " * (300 << 10)  # 2.1 MiB that compress 300-fold
        compressed = gzip.compress(body)
        self.assertGreater(len(body) / len(compressed), 200)
        transform, _ = transformFor(
            dict(self.config, max_inflate_ratio=1000),
            extra=[(b"Content-Encoding", b"gzip")],
        )
        out = run(transform, [compressed])
        self.assertEqual(gzip.decompress(out), body.replace(b"secret", b"public"))
        transform, _ = transformFor(self.config, extra=[(b"Content-Encoding", b"gzip")])
        self.assertEqual(run(transform, [compressed]), compressed)

    def test_gzipPadding(self) -> None:
        """
        NUL padding after a gzip member is skipped, also between members,
        and is not kept however long it is.
        """
        one, two = gzip.compress(b"one secret "), gzip.compress(b"two secrets")
        transform, _ = transformFor(self.config, extra=[(b"Content-Encoding", b"gzip")])
        out = [transform.transform(one)]
        for _ in range(64):
            out.append(transform.transform(b"\0" * 65536))
        self.assertLess(len(transform.inflater.decompressor.unused_data), 65536)
        out.append(transform.transform(b"\0\0" + two + b"\0"))
        out.append(transform.finish())
        self.assertEqual(gzip.decompress(b"".join(out)), b"one public two publics")


class CharsetTests(SynchronousTestCase):
    """
    A replacement the body's charset cannot encode, and a rule that fails
    mid-body, never cost the client any of the body.
    """

    def test_unencodableReplacementUntouched(self) -> None:
        """
        When a replacement cannot be encoded in the body's charset, the
        body is left untouched (no transform, head as it was); where it
        can, it is rewritten.
        """
        config = {"search": "world", "replace": "w\u2192rld"}
        transform, head = transformFor(
            config,
            b"text/plain; charset=iso-8859-1",
            extra=[(b"Content-Length", b"16")],
        )
        self.assertIsNone(transform)
        self.assertEqual(head.headers.get(b"content-length"), b"16")
        transform, _ = transformFor(config, b"text/plain; charset=utf-8")
        self.assertEqual(
            run(transform, [b"hello wo", b"rld, bye"]),
            "hello w\u2192rld, bye".encode("utf-8"),
        )
        # Another rule that does encode does not make the body rewritable.
        both = {"rule": [{"search": "hello", "replace": "hi"}, config]}
        self.assertIsNone(transformFor(both, b"text/plain; charset=latin-1")[0])

    def test_unencodableThroughChain(self) -> None:
        """
        Through the filter chain, such a body reaches the client whole.
        """
        f = rewrite.makeFilter({"search": "world", "replace": "w\u2192rld"})
        chain = FilterChain([EnabledFilter("rewrite", f)])
        head = makeResponseHead(
            200, [(b"Content-Type", b"text/plain; charset=iso-8859-1")]
        )
        self.assertEqual(chain.bodyTransforms(makeRequestHead(), head), [])

    def test_regexTemplateLiteral(self) -> None:
        """
        For a regex rule, the template's own text is checked (octal
        escapes included); what its groups copy comes from the page.
        """
        octal = {"search": "(e)", "replace": r"\351\1", "regex": True}
        self.assertIsNone(transformFor(octal, b"text/plain; charset=us-ascii")[0])
        transform, _ = transformFor(octal, b"text/plain; charset=latin-1")
        self.assertEqual(run(transform, [b"be"]), b"b\xe9e")
        groups = {"search": "(?P<w>[^ ]+) (.)", "replace": r"\2\g<w>", "regex": True}
        transform, _ = transformFor(groups, b"text/plain; charset=us-ascii")
        self.assertEqual(run(transform, [b"ab c"]), b"cab")

    def test_encodeErrorKeepsHeldText(self) -> None:
        """
        Should encoding fail anyway (the check bypassed here), the text the
        stages held back is still sent, unencodable characters as C{?}; a
        gzip body stays one valid gzip stream.
        """
        rule = rewrite.Rule("world", "w\u2192rld", False, ["text/*"], None, 100)
        transform = rewrite.RewriteTransform([rule], "iso-8859-1", None)
        self.assertEqual(
            run(transform, [b"hello wo", b"rld, bye"]), b"hello w?rld, bye"
        )
        transform = rewrite.RewriteTransform([rule], "iso-8859-1", "gzip")
        body = gzip.compress(b"hello world, bye \xff")
        out = run(transform, [body[:15], body[15:]])
        self.assertEqual(gzip.decompress(out), b"hello w?rld, bye \xff")

    def raisingTransform(self, coding: Optional[str]) -> rewrite.RewriteTransform:
        """
        @return: a transform whose second rule raises on its second match.
        """
        rules = [
            rewrite.Rule("hello", "hi", False, ["text/*"], None, 100),
            rewrite.Rule("world", "there", False, ["text/*"], None, 100),
        ]
        calls = []

        def replacement(match: "re.Match[str]") -> str:
            calls.append(match)
            if len(calls) > 1:
                raise RuntimeError("broken rule")
            return "there"

        rules[1].replacement = replacement  # type: ignore[method-assign]
        return rewrite.RewriteTransform(rules, "utf-8", coding)

    def test_raisingRuleKeepsHeldText(self) -> None:
        """
        A rule that raises mid-body costs no text: what the stages held is
        sent as it is (here rule 1 has already rewritten the second
        "hello", rule 2 not the second "world") and the rest passes
        without rules.
        """
        chunks = [b"hello world, hello wo", b"rld, hello world", b" bye"]
        out = run(self.raisingTransform(None), chunks)
        self.assertEqual(out, b"hi there, hi world, hi world bye")
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        # Compressed, the rule breaks at another point; the stream is valid
        # and only whole replacements differ from the original.
        body = gzip.compress(b"".join(chunks))
        out = run(self.raisingTransform("gzip"), [body[:20], body[20:40], body[40:]])
        self.assertEqual(
            gzip.decompress(out).replace(b"hi", b"hello").replace(b"there", b"world"),
            b"".join(chunks),
        )
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class RaisingDecoder:
    """
    Wraps an incremental decoder to raise on chunks holding C{b"BOOM"}.
    """

    def __init__(self, decoder: Any) -> None:
        self.decoder = decoder

    def decode(self, data: bytes, final: bool = False) -> str:
        if b"BOOM" in data:
            raise UnicodeDecodeError("test", data, 0, 1, "broken decoder")
        return self.decoder.decode(data, final)

    def getstate(self) -> tuple[bytes, int]:
        return self.decoder.getstate()


class CharsetSafetyTests(SynchronousTestCase):
    """
    Only charsets that give the page's ASCII text and any undecodable
    bytes back unchanged are rewritten; bodies in others pass as they came,
    never as a 502.
    """

    config = {"search": "world", "replace": "there"}

    def assertUntouched(self, charset: bytes, body: bytes) -> None:
        """
        A body in C{charset} gets no transform and reaches the client
        through the proxy exactly as the origin sent it.
        """
        contentType = b"text/plain; charset=" + charset
        transform, _ = transformFor(self.config, contentType)
        self.assertIsNone(transform)
        proxy = InMemoryProxy(
            [rewrite.makeFilter(self.config)],
            origin=lambda request: (200, [(b"Content-Type", contentType)], body),
        )
        response = proxy.get("http://example.com/")
        self.assertEqual(response.status, 200)
        self.assertEqual(response.body, body)
        self.assertEqual(
            response.headers.get(b"content-length"), str(len(body)).encode()
        )

    def test_utf16(self) -> None:
        """
        UTF-16 without a BOM (here not even an even number of bytes) is
        not ASCII-compatible: untouched.
        """
        self.assertUntouched(b"utf-16", b"hello world")

    def test_utf16BOM(self) -> None:
        """
        Valid UTF-16, with a BOM or without one, is untouched too: bytes
        that are not UTF-16 would not survive decoding and encoding.
        """
        self.assertUntouched(b"utf-16", "hello world".encode("utf-16"))
        self.assertUntouched(b"UTF-16LE", "hello world".encode("utf-16-le"))

    def test_utf32(self) -> None:
        """
        UTF-32 is untouched.
        """
        self.assertUntouched(b"utf-32", "hello world".encode("utf-32"))

    def test_utf7(self) -> None:
        """
        UTF-7 gives C{+} a meaning of its own: untouched.
        """
        self.assertUntouched(b"utf-7", b"hello+world")

    def test_punycode(self) -> None:
        """
        A codec that does not support C{surrogateescape} is untouched.
        """
        self.assertUntouched(b"punycode", b"hello world")

    def test_duplicateEncodingsUntouched(self) -> None:
        """
        A charset with characters of two encodings (cp932's NEC and IBM
        rows, Big5) is untouched: re-encoding would change the page's
        bytes where no rule matched.
        """
        self.assertUntouched(b"cp932", b"\x87\x90 world")
        self.assertUntouched(b"big5", b"\xa2\xcc world")

    def test_safeCharsetsRewritten(self) -> None:
        """
        UTF-8, ISO-8859-1, windows-1252 and Shift_JIS bodies are still
        rewritten, their undecodable bytes kept.
        """
        for charset, text, extra in [
            ("utf-8", "w\u00f6rld world", b"\xff"),
            ("ISO-8859-1", "caf\u00e9 world", b""),
            ("windows-1252", "\u20ac world", b"\x81"),
            ("shift_jis", "\u3053\u3093\u306b\u3061\u306f world", b"\x80"),
        ]:
            transform, _ = transformFor(
                self.config, b"text/plain; charset=" + charset.encode()
            )
            body = text.encode(charset) + extra
            self.assertEqual(
                run(transform, [body[:7], body[7:]]),
                text.replace("world", "there").encode(charset) + extra,
                charset,
            )

    def test_verdictCached(self) -> None:
        """
        The check is made once per codec, whatever alias names it.
        """
        rewrite._rewritable.cache_clear()
        for charset in [b"utf-8", b"UTF8", b"utf_8", b"utf-16", b"utf-16"]:
            transformFor(self.config, b"text/plain; charset=" + charset)
        info = rewrite._rewritable.cache_info()
        self.assertEqual((info.misses, info.hits), (2, 3))

    def test_decodeErrorKeepsBody(self) -> None:
        """
        Should the decoder raise anyway (a broken decoder here), the text
        the stages hold and the bytes the decoder holds are sent, then the
        rest of the body as it came; a gzip body stays one valid gzip
        stream.
        """
        rule = rewrite.Rule("world", "there", False, ["text/*"], None, 100)
        transform = rewrite.RewriteTransform([rule], "utf-8", None)
        transform.decoder = RaisingDecoder(transform.decoder)  # type: ignore
        chunks = [b"hello wo", b"rld \xc3", b"\xa9 BOOM world", b" world"]
        self.assertEqual(
            run(transform, chunks), b"hello there \xc3\xa9 BOOM world world"
        )
        transform = rewrite.RewriteTransform([rule], "utf-8", "gzip")
        transform.decoder = RaisingDecoder(transform.decoder)  # type: ignore
        original = b"world " * 100 + b"BOOM" + b" world" * 100
        body = gzip.compress(original)
        out = run(transform, [body[:20], body[20:]])
        self.assertEqual(gzip.decompress(out).replace(b"there", b"world"), original)


class InMemoryTests(SynchronousTestCase):
    """
    The rewrite filter in a real proxy.
    """

    def test_plain(self) -> None:
        """
        A rewritten body is re-framed chunked, without Content-Length.
        """
        proxy = InMemoryProxy(
            [rewrite.makeFilter({"search": "hello", "replace": "goodbye"})],
            origin=lambda request: (
                200,
                [(b"Content-Type", b"text/plain")],
                b"hello world, hello",
            ),
        )
        response = proxy.get("http://example.com/")
        self.assertEqual(response.body, b"goodbye world, goodbye")
        self.assertIsNone(response.headers.get(b"content-length"))
        self.assertEqual(response.headers.get(b"transfer-encoding"), b"chunked")

    def test_gzip(self) -> None:
        """
        A gzip body reaches the client gzip-encoded and rewritten.
        """

        def origin(
            request: OriginRequest,
        ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
            return (
                200,
                [(b"Content-Type", b"text/html"), (b"Content-Encoding", b"gzip")],
                gzip.compress(b"<b>hello</b>" * 1000),
            )

        proxy = InMemoryProxy(
            [rewrite.makeFilter({"search": "hello", "replace": "bye"})], origin=origin
        )
        response = proxy.get("http://example.com/")
        self.assertEqual(response.headers.get(b"content-encoding"), b"gzip")
        self.assertEqual(gzip.decompress(response.body), b"<b>bye</b>" * 1000)

    def test_otherTypesUntouched(self) -> None:
        """
        Other media types keep their body and framing.
        """
        proxy = InMemoryProxy(
            [rewrite.makeFilter({"search": "hello", "replace": "goodbye"})],
            origin=lambda request: (
                200,
                [(b"Content-Type", b"application/octet-stream")],
                b"hello",
            ),
        )
        response = proxy.get("http://example.com/")
        self.assertEqual(response.body, b"hello")
        self.assertEqual(response.headers.get(b"content-length"), b"5")
