# -*- test-case-name: tests.test_filters_rewrite -*-
"""
The C{rewrite} filter: literal or regular-expression replacement in text
response bodies, streaming.

Configuration (C{[filter.rewrite]}); the top-level table holds defaults
and, optionally, one rule (C{search}, C{replace}, ...); each
C{[[filter.rewrite.rule]]} adds a rule.  Rules run in order, each on the
output of the one before::

    media_types = ["text/html", "text/plain"]  # default for rules;
                                   # "type/subtype" or wildcards ("text/*")
    hosts = ["example.com"]        # default for rules: only these domains
                                   # and their subdomains (default: all)
    max_match = 4096               # the longest regex match supported, in
                                   # characters (literal rules need only
                                   # their own length)
    decode = true                  # gzip/deflate bodies are decoded,
                                   # rewritten and re-encoded; false: they
                                   # pass untouched
    max_inflate_ratio = 200        # decoding stops once a body inflates
                                   # to more than 1 MiB plus this many
                                   # times the compressed bytes read so
                                   # far: the body then passes as it
                                   # came, or is cut short if part of it
                                   # was sent

    [[filter.rewrite.rule]]
    search = "http://example.com/" # required, non-empty
    replace = "https://example.com/"  # required (may be "")
    regex = false                  # true: search is a Python regular
                                   # expression and replace may use \\1,
                                   # \\g<name>; flags inline, e.g. "(?i)"
    media_types = [...]            # overrides the default
    hosts = [...]                  # overrides the default
    max_match = 256                # overrides the default

Theory of operation.  The body is decoded (Content-Encoding, then the
charset named by Content-Type, UTF-8 when none is named; undecodable bytes
survive unchanged through C{surrogateescape}), rewritten, and encoded back
the same way, one chunk at a time.  A match may straddle chunks, so each
rule holds back the end of what it has seen: a literal rule at most its
search string's length, a regex rule at most C{max_match} characters
(plus as much already-sent text as context for lookbehind and C{\\b}).  A
regex match is accepted once C{max_match} characters from its start are
known, so matches up to C{max_match} long are found exactly as in the
whole body; longer ones may be cut short at a chunk boundary.  Matching
runs in the reactor thread and Python's C{re} cannot be interrupted, so a
pattern that backtracks exponentially on some text stalls every
connection while it runs: the start warns about the usual shape of such
patterns, a repeat of a repeat such as C{(a+)+} (see L{_nestedRepeat}).

Only charsets in which that holds are rewritten: text encodings that are
ASCII-compatible (ASCII bytes decode to the same characters and encode
back to the same bytes) and that give any bytes back unchanged, decoded
and encoded with C{surrogateescape} in chunks.  UTF-8, US-ASCII,
ISO-8859-*, the windows-125x, KOI8 and Mac charsets, Shift_JIS, EUC-JP,
EUC-KR, GBK and GB18030 are; UTF-16, UTF-32, UTF-7, the ISO-2022 and
EBCDIC families, and charsets with characters of more than one encoding
(cp932, Big5) are not, and their bodies pass untouched.  Each charset is
tried once on sample bytes (see L{_rewritable}); there is no list.

Memory per body is bounded by the rules' hold-back, the largest chunk and
zlib's buffers, whatever the body's size or compression ratio: a
compressed chunk is fed to zlib in 64 KiB slices and inflated in 64 KiB
steps, and each step is decoded, rewritten and compressed again before
the next is inflated, so a compression bomb never exists inflated in
memory (only the re-compressed output of the chunk is kept until it is
returned).  NUL padding between gzip members is skipped; anything after
the end of a deflate stream is ignored, not kept.

CPU is bounded too, by C{max_inflate_ratio} (as Apache's
C{DeflateInflateRatioLimit}, whose default it takes): decoding stops once
a body has inflated to more than 1 MiB plus that many times the
compressed bytes read so far.  A compression bomb (about 1,000 to 1) is
stopped within its first compressed slice, 13.6 MiB and 85 ms of CPU in
(measured here), instead of inflating a whole 1 MiB read to 1 GiB (5.5 s
of the proxy's only thread).  If the transform has emitted nothing yet
(for a bomb from its start, unless its first piece is small enough,
about 1 KiB, to inflate within the 1 MiB allowance; the compressed input
is kept until output is sent, up to 1 MiB, which is also the largest
read), the body passes as it came, compressed; otherwise the response
ends (L{proxyapp.chain.CutResponse}: cut short, or a 502 if nothing of it
has reached the client yet), since half a rewritten stream cannot be
completed honestly.

The text of a replacement (for a regex rule, the template's literal
text) must be encodable in the body's charset: when it is not (say
C{"\u2192"} on an ISO-8859-1 page), the body is left untouched and a
warning logged, decided when the response head arrives, so the client
always gets either the rewritten body or the original.  As a last resort
the transform never loses text it holds back: should a rule raise
mid-body, the text the stages hold is sent as it is and the rest of the
body passes through decoded and re-encoded without rules (so a gzip body
stays one valid gzip stream); should encoding still fail, unencodable
characters become C{"?"}; should the decoder raise (which the charset
check is there to prevent), the text the stages hold is sent and the
rest of the body passes as it came.

A body is left untouched when its media type or host matches no rule, when
the response says C{Cache-Control: no-transform}, for 206 Partial Content,
for content codings other than gzip and deflate (or any coding with
C{decode = false}), for charsets Python does not know or cannot rewrite
safely (see above), and when a replacement cannot be encoded in the
charset.  A rewritten response loses Content-Length (the core re-frames
it), Content-MD5 and digest fields, and Accept-Ranges; its ETag becomes
weak.

To rewrite bodies that clients would otherwise receive brotli- or
zstd-encoded, have the C{headers} filter remove C{Accept-Encoding} from
requests (or set it to C{gzip}).
"""

from __future__ import annotations

import codecs
import functools
import random
import re
import zlib
from fnmatch import fnmatchcase
from typing import Any, Iterator, Optional

from twisted.logger import Logger
from zope.interface import implementer

from proxyapp.chain import CutResponse
from proxyapp.filters.access import DomainSet
from proxyapp.interfaces import IBodyFilter, IBodyTransform
from proxyapp.message import RequestHead, ResponseHead

log = Logger()

DEFAULT_MEDIA_TYPES = ["text/html", "text/plain"]
DEFAULT_MAX_MATCH = 4096
MAX_MAX_MATCH = 1 << 20
INFLATE_STEP = 65536
MAX_RAW = 1 << 20
DEFAULT_MAX_INFLATE_RATIO = 200
INFLATE_ALLOWANCE = 1 << 20

FALLBACK_ERRORS = "proxyapp.rewrite"

# What a charset must give back unchanged to be rewritten (L{_rewritable}):
# ASCII as ASCII text, and any bytes at all as themselves: every byte,
# pseudo-random bytes (both also cut into chunks), and every two-byte
# sequence with a non-ASCII first byte, each followed by a newline.
ASCII_PROBE = bytes(range(128))
BYTES_PROBE = bytes(range(256)) + random.Random(0).randbytes(4096)
PAIRS_PROBE = bytes(
    byte
    for lead in range(128, 256)
    for trail in range(256)
    for byte in (lead, trail, 10)
)

TOP_KEYS = (
    "media_types",
    "hosts",
    "max_match",
    "decode",
    "max_inflate_ratio",
    "rule",
)
RULE_KEYS = ("search", "replace", "regex", "media_types", "hosts", "max_match")

_DROPPED_FIELDS = (
    b"content-length",
    b"content-md5",
    b"digest",
    b"content-digest",
    b"repr-digest",
    b"accept-ranges",
)


class Rule:
    """
    One replacement.

    @ivar pattern: the compiled pattern (a literal search is escaped).
    @ivar replace: the replacement: a template for regex rules, text for
        literal ones.
    @ivar hold: how many characters a stage holds back at a chunk end.
    @ivar context: how many characters of already-sent text a stage keeps
        for lookbehind (0 for literal rules).
    @ivar literal: the text a replacement adds besides the page's own text
        (the template expanded with empty groups for regex rules).
    """

    def __init__(
        self,
        search: str,
        replace: str,
        regex: bool,
        mediaTypes: list[str],
        hosts: Optional[DomainSet],
        maxMatch: int,
    ) -> None:
        self.search = search
        self.regex = regex
        self.mediaTypes = [m.lower() for m in mediaTypes]
        self.hosts = hosts
        if regex:
            self.pattern = re.compile(search)
            self.hold = maxMatch
            self.context = maxMatch
        else:
            self.pattern = re.compile(re.escape(search))
            self.hold = len(search)
            self.context = 0
        self.replace = replace
        self.literal = _literalText(self.pattern, replace) if regex else replace

    def appliesTo(self, mediaType: str, host: Optional[str]) -> bool:
        if self.hosts is not None and (host is None or self.hosts.match(host) is None):
            return False
        return any(fnmatchcase(mediaType, pattern) for pattern in self.mediaTypes)

    def replacement(self, match: "re.Match[str]") -> str:
        return match.expand(self.replace) if self.regex else self.replace

    def encodableIn(self, charset: str) -> bool:
        """
        @return: whether what this rule adds can be encoded in C{charset}
            (groups only copy the page's own text, which can).
        """
        try:
            codecs.encode(self.literal, charset, "surrogateescape")
        except UnicodeError:
            return False
        return True


def _literalText(pattern: "re.Pattern[str]", template: str) -> str:
    """
    @return: C{template} expanded as for a match of C{pattern} whose groups
        are all empty: the text the template adds by itself.
    """
    names = {index: name for name, index in pattern.groupindex.items()}
    empty = "".join(
        f"(?P<{names[index]}>)" if index in names else "()"
        for index in range(1, pattern.groups + 1)
    )
    match = re.compile(empty).fullmatch("")
    assert match is not None
    return match.expand(template)


def _fallbackError(error: UnicodeError) -> tuple[Any, int]:
    """
    The last-resort encoding error handler: C{surrogateescape} for the
    undecodable bytes a body may carry, C{"?"} for anything else.
    """
    if not isinstance(error, UnicodeEncodeError):
        raise error
    text = error.object
    start = end = error.start
    while end < error.end and 0xDC80 <= ord(text[end]) <= 0xDCFF:
        end += 1
    if end > start:
        return bytes(ord(c) - 0xDC00 for c in text[start:end]), end
    return "?", start + 1


codecs.register_error(FALLBACK_ERRORS, _fallbackError)


class Stage:
    """
    One rule applied to a stream of text.

    @ivar carry: text seen but not yet sent (a possible match's start).
    @ivar before: already-sent original text kept as context.
    """

    __slots__ = ("rule", "carry", "before", "emptyAtCut")

    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        self.carry = ""
        self.before = ""
        self.emptyAtCut = False

    def feed(self, text: str, final: bool = False) -> str:
        """
        @return: the rewritten text that can be sent now.
        """
        rule = self.rule
        before = self.before
        data = before + self.carry + text
        base = len(before)
        end = len(data)
        latest = end if final else end - rule.hold
        out = []
        position = base
        lastEmpty = False
        for match in rule.pattern.finditer(data, base):
            start = match.start()
            if start > latest:
                break
            stop = match.end()
            if start == stop and start == base and self.emptyAtCut:
                # This empty match was already made before the cut.
                continue
            out.append(data[position:start])
            out.append(rule.replacement(match))
            position = stop
            lastEmpty = start == stop
        cut = end if final else max(position, latest)
        out.append(data[position:cut])
        self.emptyAtCut = lastEmpty and position == cut
        self.carry = data[cut:]
        if rule.context:
            self.before = data[max(0, cut - rule.context) : cut]
        return "".join(out)


class _TooInflated(Exception):
    """
    The body inflated past the ratio limit.
    """


class _Inflater:
    """
    Decodes a gzip or deflate body in bounded steps; a gzip body may hold
    several members.

    @ivar budget: how many more bytes may be inflated; each compressed
        byte fed adds C{ratio}.
    """

    def __init__(self, coding: str, ratio: int = DEFAULT_MAX_INFLATE_RATIO) -> None:
        self.coding = coding
        self.decompressor: Any = None
        self.pending = b""
        self.zlibWrapped = True
        self.ratio = ratio
        self.budget = INFLATE_ALLOWANCE

    def _start(self, data: bytes) -> None:
        if self.coding == "gzip":
            self.decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
            return
        # "deflate" means the zlib format (RFC 9110 8.4.1.2), but some
        # servers send raw deflate; a zlib stream starts with a checksummed
        # two-byte header.
        self.zlibWrapped = (data[0] & 0x0F) == 8 and (
            (data[0] << 8) | data[1]
        ) % 31 == 0
        self.decompressor = zlib.decompressobj(
            zlib.MAX_WBITS if self.zlibWrapped else -zlib.MAX_WBITS
        )

    def inflate(self, data: bytes) -> Iterator[bytes]:
        """
        Decode C{data} lazily: zlib gets it in L{INFLATE_STEP} slices and
        each piece is inflated only when the one before has been taken, so
        at most one piece (and zlib's window) exists at a time.

        @return: an iterator of the decoded pieces, each at most
            L{INFLATE_STEP} bytes.
        @raise zlib.error: (while iterating) for a corrupt stream.
        @raise _TooInflated: (while iterating) past the ratio limit.
        """
        if self.decompressor is None:
            data = self.pending + data
            if len(data) < 2:
                self.pending = data
                return
            self.pending = b""
            self._start(data)
        view = memoryview(data)
        for offset in range(0, len(view), INFLATE_STEP):
            # Slices, so that zlib's copy of the unconsumed input (made at
            # every step) stays small however far the chunk inflates.
            piece = view[offset : offset + INFLATE_STEP]
            self.budget += len(piece) * self.ratio
            yield from self._inflate(piece)

    def _inflate(self, data: Any) -> Iterator[bytes]:
        while True:
            d = self.decompressor
            if d.eof:
                if self.coding != "gzip":
                    # Nothing follows a deflate stream; ignore (not keep)
                    # whatever does.
                    return
                # Another gzip member may follow, maybe after NUL padding.
                data = bytes(data).lstrip(b"\0")
                if not data:
                    return
                d = self.decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
            piece = d.decompress(data, INFLATE_STEP)
            if piece:
                self.budget -= len(piece)
                if self.budget < 0:
                    raise _TooInflated()
                yield piece
            if d.eof:
                data = d.unused_data
                continue
            data = d.unconsumed_tail
            if not data and len(piece) < INFLATE_STEP:
                # All input used and zlib has no more output for now (a
                # full step may mean it has: ask again).
                return

    def finish(self) -> list[bytes]:
        if self.decompressor is None:
            if self.pending:
                raise zlib.error("truncated compressed body")
            return []
        tail = self.decompressor.flush()
        return [tail] if tail else []

    def deflater(self) -> Any:
        if self.coding == "gzip":
            return zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        return zlib.compressobj(
            6, zlib.DEFLATED, zlib.MAX_WBITS if self.zlibWrapped else -zlib.MAX_WBITS
        )


@implementer(IBodyTransform)
class RewriteTransform:
    """
    Rewrites one body: content decoding, charset decoding, the rules'
    stages, and the way back.
    """

    def __init__(
        self,
        rules: list[Rule],
        charset: str,
        coding: Optional[str],
        maxInflateRatio: int = DEFAULT_MAX_INFLATE_RATIO,
    ) -> None:
        self.stages = [Stage(rule) for rule in rules]
        self.decoder: Optional[codecs.IncrementalDecoder] = (
            codecs.getincrementaldecoder(charset)("surrogateescape")
        )
        self.encoder = codecs.getincrementalencoder(charset)("surrogateescape")
        self.charset = charset
        self.inflater = (
            _Inflater(coding, maxInflateRatio) if coding is not None else None
        )
        self.deflater: Any = None
        self.passthrough = False
        self.dropping = False
        self.emitted = False
        self.sawInput = False
        # The compressed input, kept until something is sent, so that a
        # body that is not really compressed can still pass as it came.
        self.raw: Optional[list[bytes]] = []
        self.rawSize = 0

    def _text(self, data: bytes, final: bool) -> bytes:
        decoder = self.decoder
        if decoder is None:
            return data
        try:
            text = decoder.decode(data, final)
        except Exception as e:
            return self._undecodable(decoder, e, data)
        for index, stage in enumerate(self.stages):
            if not text and not final:
                break
            try:
                text = stage.feed(text, final)
            except Exception:
                log.failure(
                    "rewrite: rule {index} raised; the rest of the body passes without rules",
                    index=index + 1,
                )
                text = self._salvage(index, text)
                break
        return self._encode(text, final)

    def _encode(self, text: str, final: bool) -> bytes:
        try:
            return self.encoder.encode(text, final)
        except UnicodeEncodeError as e:
            # Not expected (replacements are checked against the charset
            # before a transform is made), but never lose the text.
            log.warn(
                "rewrite: cannot encode the rewritten body in {charset} ({error}); unencodable characters become '?'",
                charset=self.charset,
                error=str(e),
            )
            self.encoder.errors = FALLBACK_ERRORS
            return self.encoder.encode(text, final)

    def _undecodable(
        self, decoder: codecs.IncrementalDecoder, error: Exception, data: bytes
    ) -> bytes:
        """
        The decoder raised on C{data} (not expected: charsets are checked
        by L{_rewritable} before a transform is made): send the text the
        stages hold, then the bytes the decoder held and C{data} as they
        came, and pass the rest of the body through as it is.
        """
        log.warn(
            "rewrite: cannot decode the body as {charset} ({error}); the rest of the body passes untouched",
            charset=self.charset,
            error=str(error),
        )
        self.decoder = None
        held = decoder.getstate()[0]
        return self._encode(self._salvage(0, ""), True) + held + data

    def _salvage(self, index: int, text: str) -> str:
        """
        Stage C{index} raised on C{text}: drop the stages and give back,
        in body order, all the text they held (later stages hold earlier
        text), so that nothing is lost.
        """
        stages = self.stages
        held = [stage.carry for stage in reversed(stages[index:])]
        held.append(text)
        held.extend(stage.carry for stage in reversed(stages[:index]))
        self.stages = []
        return "".join(held)

    def transform(self, chunk: bytes) -> bytes:
        if self.passthrough:
            return chunk
        if self.dropping:
            return b""
        inflater = self.inflater
        if inflater is None:
            return self._text(chunk, False)
        if chunk:
            self.sawInput = True
        if not self.emitted and self.raw is not None:
            self.raw.append(chunk)
            self.rawSize += len(chunk)
            if self.rawSize > MAX_RAW:
                self.raw = None
        out: list[bytes] = []
        try:
            # Each piece is rewritten and compressed before the next is
            # inflated: only compressed output accumulates.
            for piece in inflater.inflate(chunk):
                out.append(self._recompress(piece))
        except zlib.error as e:
            return self._corrupt(e, out)
        except _TooInflated:
            return self._tooInflated()
        if not out:
            return b""
        self.emitted = True
        self.raw = None
        out.append(self.deflater.flush(zlib.Z_SYNC_FLUSH))
        return b"".join(out)

    def _recompress(self, piece: bytes) -> bytes:
        if self.deflater is None:
            self.deflater = self.inflater.deflater()  # type: ignore[union-attr]
        return self.deflater.compress(self._text(piece, False))

    def _corrupt(self, error: Exception, out: list[bytes]) -> bytes:
        """
        @param out: the compressed output of the current chunk so far
            (not sent yet).
        """
        raw = self._asItCame(f"body is not valid {self.inflater.coding} ({error})")  # type: ignore[union-attr]
        if raw is not None:
            # Not what its coding says, and nothing sent yet.
            return raw
        log.warn(
            "rewrite: compressed body is corrupt ({error}); ending it where it broke",
            error=str(error),
        )
        self.dropping = True
        out.append(self._close())
        return b"".join(out)

    def _tooInflated(self) -> bytes:
        """
        The body inflated past the ratio limit: pass it as it came if
        nothing is sent yet, else cut the response short.

        @raise CutResponse: if part of the rewritten body is out.
        """
        why = f"body inflates more than {self.inflater.ratio} to 1 (max_inflate_ratio)"  # type: ignore[union-attr]
        raw = self._asItCame(why)
        if raw is not None:
            return raw
        self.dropping = True
        raise CutResponse(f"the {why}")

    def _asItCame(self, why: str) -> Optional[bytes]:
        """
        If nothing has been sent yet, pass the rest of the body as it
        comes, and give back the compressed bytes held so far.

        @return: those bytes, or C{None} if output has been sent already.
        """
        if self.emitted or self.raw is None:
            return None
        log.warn("rewrite: {why}; passing it through", why=why)
        self.passthrough = True
        raw, self.raw = self.raw, None
        return b"".join(raw)

    def _close(self) -> bytes:
        """
        Flush the stages and end the compressed stream.
        """
        tail = self._text(b"", True)
        if self.deflater is None:
            return b""
        deflater, self.deflater = self.deflater, None
        return deflater.compress(tail) + deflater.flush(zlib.Z_FINISH)

    def finish(self) -> bytes:
        if self.passthrough or self.dropping:
            return b""
        inflater = self.inflater
        if inflater is None:
            return self._text(b"", True)
        try:
            pieces = inflater.finish()
        except zlib.error as e:
            return self._corrupt(e, [])
        if not self.sawInput:
            return b""
        if self.deflater is None:
            self.deflater = inflater.deflater()
        out = [self._recompress(piece) for piece in pieces]
        out.append(self._close())
        return b"".join(out)


@functools.lru_cache(maxsize=256)
def _rewritable(codec: str) -> bool:
    """
    Whether bodies in a charset can be rewritten without changing what no
    rule matched: the codec is a text encoding; it is ASCII-compatible
    (ASCII bytes decode to the same characters, which encode back to the
    same bytes), so a rule sees the page's ASCII text as it is; and with
    C{surrogateescape} its incremental decoder and encoder give back any
    bytes unchanged however they are cut into chunks.  Tried on sample
    bytes (L{BYTES_PROBE}, L{PAIRS_PROBE}) once per codec, a few
    milliseconds: the verdict is cached.

    @param codec: a codec name, as L{codecs.lookup} gives it (so aliases
        share one entry and the cache stays small).
    """
    try:
        info = codecs.lookup(codec)
        if not getattr(info, "_is_text_encoding", True):
            return False
        text, back = _recode(info, ASCII_PROBE, 1, "strict")
        if text != ASCII_PROBE.decode("ascii") or back != ASCII_PROBE:
            return False
        return all(
            _recode(info, probe, size, "surrogateescape")[1] == probe
            for probe, size in (
                (BYTES_PROBE, 1),
                (BYTES_PROBE, 7),
                (PAIRS_PROBE, len(PAIRS_PROBE)),
            )
        )
    except Exception:
        # Whatever a codec raises on, it cannot be trusted with a body.
        return False


def _recode(
    info: codecs.CodecInfo, data: bytes, size: int, errors: str
) -> tuple[str, bytes]:
    """
    Decode C{data} in C{size}-byte chunks and encode each piece back, as a
    L{RewriteTransform} does.

    @return: the text and the bytes it encodes to.
    """
    decoder = info.incrementaldecoder(errors)
    encoder = info.incrementalencoder(errors)
    texts = []
    out = []
    for offset in range(0, len(data) + 1, size):
        final = offset + size > len(data)
        text = decoder.decode(data[offset : offset + size], final)
        texts.append(text)
        out.append(encoder.encode(text, final))
    return "".join(texts), b"".join(out)


def _mediaType(contentType: bytes) -> tuple[str, Optional[str]]:
    """
    @return: the lowercase C{type/subtype} and the charset parameter (if
        any) of a Content-Type value.
    """
    parts = contentType.decode("latin-1").split(";")
    mediaType = parts[0].strip().lower()
    charset = None
    for parameter in parts[1:]:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset":
            charset = value.strip().strip('"').strip() or None
    return mediaType, charset


@implementer(IBodyFilter)
class RewriteFilter:
    """
    Offers a L{RewriteTransform} for responses some rule applies to.

    @ivar decode: whether gzip and deflate bodies are decoded to be
        rewritten (else they pass untouched).
    @ivar maxInflateRatio: see C{max_inflate_ratio} in the module docstring.
    """

    def __init__(
        self,
        rules: list[Rule],
        decode: bool = True,
        maxInflateRatio: int = DEFAULT_MAX_INFLATE_RATIO,
    ) -> None:
        self.rules = rules
        self.decode = decode
        self.maxInflateRatio = maxInflateRatio

    def bodyTransform(
        self, request: RequestHead, response: ResponseHead
    ) -> Optional[RewriteTransform]:
        headers = response.headers
        if response.status == 206 or response.status < 200:
            return None
        contentType = headers.get(b"content-type")
        if contentType is None:
            return None
        mediaType, charset = _mediaType(contentType)
        rules = [rule for rule in self.rules if rule.appliesTo(mediaType, request.host)]
        if not rules:
            return None
        if b"no-transform" in headers.getTokens(b"cache-control"):
            return None
        codings = [
            c for c in headers.getTokens(b"content-encoding") if c != b"identity"
        ]
        coding: Optional[str] = None
        if codings:
            if (
                not self.decode
                or len(codings) > 1
                or codings[0] not in (b"gzip", b"x-gzip", b"deflate")
            ):
                return None
            coding = "deflate" if codings[0] == b"deflate" else "gzip"
        charset = charset or "utf-8"
        try:
            codec = codecs.lookup(charset).name
        except LookupError:
            log.info(
                "rewrite: unknown charset {charset!r} for {target}; body left untouched",
                charset=charset,
                target=request.url(),
            )
            return None
        if not _rewritable(codec):
            log.info(
                "rewrite: charset {charset!r} of {target} cannot be rewritten safely (not a text encoding, not ASCII-compatible, or undecodable bytes would not survive); body left untouched",
                charset=charset,
                target=request.url(),
            )
            return None
        for rule in rules:
            if not rule.encodableIn(charset):
                log.warn(
                    "rewrite: the replacement for {search!r} cannot be encoded in {charset}; body of {target} left untouched",
                    search=rule.search,
                    charset=charset,
                    target=request.url(),
                )
                return None
        for name in _DROPPED_FIELDS:
            headers.remove(name)
        etag = headers.get(b"etag")
        if etag is not None and not etag.startswith(b"W/"):
            headers.set(b"ETag", b"W/" + etag)
        return RewriteTransform(rules, charset, coding, self.maxInflateRatio)


def _strings(value: Any, where: str, what: str) -> list[str]:
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(v, str) and v for v in value)
    ):
        raise ValueError(f"{where}: expected a non-empty list of {what}, got {value!r}")
    return value


def _mediaTypes(value: Any, where: str) -> list[str]:
    types = _strings(value, where, 'media types ("text/html", "text/*")')
    for t in types:
        if t.count("/") != 1 or " " in t or ";" in t:
            raise ValueError(
                f"{where}: {t!r} is not a media type such as text/html or text/*"
            )
    return types


def _hosts(value: Any, where: str) -> DomainSet:
    return DomainSet(_strings(value, where, "domain names"), where)


def _maxMatch(value: Any, where: str) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not 1 <= value <= MAX_MAX_MATCH
    ):
        raise ValueError(
            f"{where}: expected an integer from 1 to {MAX_MAX_MATCH}, got {value!r}"
        )
    return value


def _nestedRepeat(search: str) -> bool:
    """
    @return: whether the regular expression C{search} repeats without
        bound a part that itself holds a repeat without bound (star height
        above one, outside atomic groups and possessive repeats): the shape
        of the patterns that backtrack exponentially.  A heuristic: it reads
        the parse tree of C{re}'s private parser and answers C{False} where
        that is unavailable.
    """
    try:
        from re import _constants as constants, _parser as parser  # type: ignore[attr-defined]

        tree = parser.parse(search)
    except Exception:
        return False
    repeats = (constants.MAX_REPEAT, constants.MIN_REPEAT)
    atomic = getattr(constants, "ATOMIC_GROUP", None)

    def walk(items: Any, inside: bool) -> bool:
        for op, value in items:
            if op in repeats:
                _, high, body = value
                unbounded = high == constants.MAXREPEAT
                if unbounded and inside:
                    return True
                if walk(body, inside or unbounded):
                    return True
            elif op is not atomic:
                for part in value if isinstance(value, (tuple, list)) else ():
                    if isinstance(part, parser.SubPattern) and walk(part, inside):
                        return True
                    if isinstance(part, list):
                        for branch in part:
                            if isinstance(branch, parser.SubPattern) and walk(
                                branch, inside
                            ):
                                return True
        return False

    return walk(tree, False)


def parseRule(
    table: dict[str, Any],
    where: str,
    mediaTypes: list[str],
    hosts: Optional[DomainSet],
    maxMatch: int,
) -> Rule:
    """
    @raise ValueError: naming the bad key.
    """
    unknown = set(table) - set(RULE_KEYS)
    if unknown:
        raise ValueError(
            f"{where}: unknown key(s) {', '.join(sorted(unknown))}; expected {', '.join(RULE_KEYS)}"
        )
    search = table.get("search")
    if not isinstance(search, str) or not search:
        raise ValueError(
            f"{where}: search: expected a non-empty string, got {search!r}"
        )
    replace = table.get("replace")
    if not isinstance(replace, str):
        raise ValueError(
            f"{where}: replace: expected a string (may be empty), got {replace!r}"
        )
    regex = table.get("regex", False)
    if not isinstance(regex, bool):
        raise ValueError(f"{where}: regex: expected true or false, got {regex!r}")
    if "media_types" in table:
        mediaTypes = _mediaTypes(table["media_types"], f"{where}: media_types")
    if "hosts" in table:
        hosts = _hosts(table["hosts"], f"{where}: hosts")
    if "max_match" in table:
        maxMatch = _maxMatch(table["max_match"], f"{where}: max_match")
    if regex:
        try:
            pattern = re.compile(search)
        except re.error as e:
            raise ValueError(f"{where}: search: not a valid regular expression: {e}")
        except (RecursionError, OverflowError, MemoryError) as e:
            # Nested thousands deep, or a repeat count beyond what re takes.
            raise ValueError(
                f"{where}: search: a regular expression too large to compile"
                f" ({type(e).__name__})"
            )
        if pattern.fullmatch(""):
            raise ValueError(
                f"{where}: search: the regular expression matches the empty string"
            )
        if _nestedRepeat(search):
            # Python's re cannot be interrupted: a pattern that backtracks
            # exponentially blocks the whole proxy while it runs.
            log.warn(
                "{where}: search: {search!r} repeats a part that itself repeats"
                " without bound (as (a+)+ does), which can take exponential time"
                " on some bodies and stalls every connection meanwhile; an atomic"
                " group (?>...) or a possessive repeat (a++) avoids that",
                where=where,
                search=search,
            )
        try:
            pattern.sub(replace, "")
        except (re.error, IndexError) as e:
            raise ValueError(
                f"{where}: replace: not a valid replacement for this pattern: {e}"
            )
    elif len(search) > maxMatch:
        raise ValueError(
            f"{where}: search: {len(search)} characters, longer than max_match ({maxMatch})"
        )
    return Rule(search, replace, regex, mediaTypes, hosts, maxMatch)


def makeFilter(config: dict[str, Any]) -> RewriteFilter:
    """
    Build the rewrite filter from its table (see the module docstring).

    @raise ValueError: naming the bad key and what was expected.
    """
    unknown = set(config) - set(TOP_KEYS) - set(RULE_KEYS)
    if unknown:
        raise ValueError(
            f"rewrite: unknown key(s) {', '.join(sorted(unknown))}; expected {', '.join(TOP_KEYS + RULE_KEYS[:3])}"
        )
    maxMatch = _maxMatch(
        config.get("max_match", DEFAULT_MAX_MATCH), "rewrite: max_match"
    )
    decode = config.get("decode", True)
    if not isinstance(decode, bool):
        raise ValueError(f"rewrite: decode: expected true or false, got {decode!r}")
    ratio = config.get("max_inflate_ratio", DEFAULT_MAX_INFLATE_RATIO)
    if (
        isinstance(ratio, bool)
        or not isinstance(ratio, int)
        or not 1 <= ratio <= 1 << 20
    ):
        raise ValueError(
            f"rewrite: max_inflate_ratio: expected an integer from 1 to {1 << 20}, got {ratio!r}"
        )
    mediaTypes = (
        _mediaTypes(config["media_types"], "rewrite: media_types")
        if "media_types" in config
        else DEFAULT_MEDIA_TYPES
    )
    hosts = _hosts(config["hosts"], "rewrite: hosts") if "hosts" in config else None
    rules = []
    if "search" in config or "replace" in config or "regex" in config:
        table: dict[str, Any] = {
            k: config[k] for k in ("search", "replace", "regex") if k in config
        }
        rules.append(parseRule(table, "rewrite", mediaTypes, hosts, maxMatch))
    extra = config.get("rule", [])
    if not isinstance(extra, list) or not all(isinstance(t, dict) for t in extra):
        raise ValueError(
            f"rewrite: rule: expected [[filter.rewrite.rule]] tables, got {extra!r}"
        )
    for index, table in enumerate(extra, 1):
        rules.append(
            parseRule(table, f"rewrite: rule {index}", mediaTypes, hosts, maxMatch)
        )
    if not rules:
        raise ValueError(
            "rewrite: no rules; expected search and replace, or [[filter.rewrite.rule]] tables"
        )
    return RewriteFilter(rules, decode, ratio)
