# -*- test-case-name: tests.test_filters_auth -*-
"""
htpasswd files and the password hashes they hold, and a L{twisted.cred}
checker over them.

Supported hashes, recognised by their prefix:

  - C{$2y$}, C{$2b$}, C{$2a$}: bcrypt (C{htpasswd -B}), through the
    C{bcrypt} package.  Passwords are cut at 72 bytes, as Apache's
    C{htpasswd} and crypt_blowfish do.
  - C{$5$}, C{$6$}: SHA-256-crypt and SHA-512-crypt (C{htpasswd -2} and
    C{-5} in Apache 2.5, C{mkpasswd -m sha-512}), implemented here from
    Ulrich Drepper's specification "Unix crypt using SHA-256 and SHA-512"
    because Python's C{crypt} module is deprecated.
  - C{$apr1$}: Apache's MD5 (C{htpasswd}'s default, C{htpasswd -m}); also
    C{$1$}, the same algorithm under the FreeBSD/glibc prefix.
  - C{{SHA}}: unsalted SHA-1 (C{htpasswd -s}), accepted for old files.

Anything else (traditional DES crypt, plain text) is reported when the file
is read and never matches; so is a hash with a supported prefix but the
wrong shape (a cut-off bcrypt hash, C{{SHA}} that is not the base64 of 20
bytes), which no password could match, and a hash too costly to check: a
bcrypt cost above L{BCRYPT_MAX_COST} (13) or more SHA-crypt rounds than
L{SHA_CRYPT_MAX_ROUNDS} (1,000,000).  At those limits one check takes
about half a second (measured on a 2-core x86-64 machine: bcrypt cost 13
0.42 s, SHA-256-crypt 0.38 s and SHA-512-crypt 0.50 s at 1,000,000
rounds), and every attempt with an unknown name costs what the costliest
entry costs; a bcrypt cost of 31 would hold a thread for days.  Apache's
C{htpasswd} writes bcrypt cost 5 by default, crypt(3) 5000 SHA-crypt
rounds and passlib 535,000 or 656,000.  Every comparison of a computed hash
with the stored one is constant-time (L{hmac.compare_digest}).

The file is re-read when its modification time or size changes (checked at
most once per L{HtpasswdFile.statInterval} seconds); if it then cannot be
read, nobody is let in until it can (fail closed).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import secrets
import time
from collections import OrderedDict
from typing import Any, Callable, Optional

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger
from zope.interface import implementer

log = Logger()

_CRYPT64 = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

# Byte orders of the final encoding, from the specification's
# b64_from_24bit calls: (byte2, byte1, byte0) triples, then the short tail.
_SHA256_ORDER = [
    (i, (i + 10) % 30, (i + 20) % 30) for i in (0, 21, 12, 3, 24, 15, 6, 27, 18, 9)
]
_SHA512_ORDER = [
    (i, (i + 21) % 63, (i + 42) % 63)
    for i in (
        0,
        22,
        44,
        3,
        25,
        47,
        6,
        28,
        50,
        9,
        31,
        53,
        12,
        34,
        56,
        15,
        37,
        59,
        18,
        40,
        62,
    )
]
_MD5_ORDER = [(0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5)]

ROUNDS_DEFAULT = 5000
ROUNDS_MIN = 1000
ROUNDS_MAX = 999999999

# The costliest hashes an htpasswd file may hold (see the module docstring
# for what one check costs at these limits).
BCRYPT_MAX_COST = 13
SHA_CRYPT_MAX_ROUNDS = 1000000


def _encode24(b2: int, b1: int, b0: int, n: int) -> bytes:
    w = (b2 << 16) | (b1 << 8) | b0
    out = bytearray()
    for _ in range(n):
        out.append(_CRYPT64[w & 0x3F])
        w >>= 6
    return bytes(out)


def _repeat(block: bytes, length: int) -> bytes:
    """
    @return: C{block} repeated and cut to C{length} bytes.
    """
    return (block * (length // len(block) + 1))[:length]


def shaCrypt(password: bytes, setting: bytes) -> bytes:
    """
    SHA-256-crypt or SHA-512-crypt, as specified by Ulrich Drepper.

    @param setting: C{$5$} or C{$6$}, an optional C{rounds=N$}, the salt
        (at most 16 characters are used) and optionally C{$} and a hash,
        which is ignored.
    @return: the full hash string, C{rounds=N$} included when the setting
        named it.
    @raise ValueError: for a setting that is not SHA-crypt.
    """
    if setting.startswith(b"$5$"):
        algorithm, order = hashlib.sha256, _SHA256_ORDER
    elif setting.startswith(b"$6$"):
        algorithm, order = hashlib.sha512, _SHA512_ORDER
    else:
        raise ValueError("not a SHA-crypt setting")
    magic = setting[:3]
    rest = setting[3:]
    rounds = ROUNDS_DEFAULT
    roundsGiven = False
    if rest.startswith(b"rounds="):
        text, dollar, rest = rest[7:].partition(b"$")
        if not dollar or not text.isdigit():
            raise ValueError("malformed rounds= in a SHA-crypt setting")
        rounds = min(max(int(text), ROUNDS_MIN), ROUNDS_MAX)
        roundsGiven = True
    salt = rest.split(b"$", 1)[0][:16]
    P = password
    S = salt

    B = algorithm(P + S + P).digest()
    ctx = algorithm(P + S)
    ctx.update(_repeat(B, len(P)))
    n = len(P)
    while n:
        ctx.update(B if n & 1 else P)
        n >>= 1
    A = ctx.digest()

    DP = algorithm(P * len(P)).digest()
    Pseq = _repeat(DP, len(P)) if P else b""
    DS = algorithm(S * (16 + A[0])).digest()
    Sseq = _repeat(DS, len(S)) if S else b""

    # The 2 x 3 x 7 = 42 combinations of the round's inputs repeat, so
    # precompute the prefix and suffix of each round's message.
    C = A
    PS = Pseq + Sseq
    PP = Pseq + Pseq
    PSP = Pseq + Sseq + Pseq
    for i in range(rounds):
        odd = i & 1
        three = i % 3
        seven = i % 7
        if odd:
            if three:
                middle = PSP if seven else PS
            else:
                middle = PP if seven else Pseq
            C = algorithm(middle + C).digest()
        else:
            if three:
                middle = Sseq + Pseq if seven else Sseq
            else:
                middle = Pseq if seven else b""
            C = algorithm(C + middle + Pseq).digest()

    encoded = b"".join(_encode24(C[a], C[b], C[c], 4) for a, b, c in order)
    if len(C) == 32:
        encoded += _encode24(0, C[31], C[30], 3)
    else:
        encoded += _encode24(0, 0, C[63], 2)
    prefix = magic + (b"rounds=%d$" % rounds if roundsGiven else b"")
    return prefix + salt + b"$" + encoded


def md5Crypt(password: bytes, setting: bytes) -> bytes:
    """
    The MD5-based crypt of FreeBSD (C{$1$}) and Apache (C{$apr1$}): the same
    algorithm with a different prefix mixed in.

    @param setting: the prefix, the salt (at most 8 characters are used)
        and optionally C{$} and a hash, which is ignored.
    @return: the full hash string.
    @raise ValueError: for a setting that is not MD5-crypt.
    """
    if setting.startswith(b"$apr1$"):
        magic = b"$apr1$"
    elif setting.startswith(b"$1$"):
        magic = b"$1$"
    else:
        raise ValueError("not an MD5-crypt setting")
    salt = setting[len(magic) :].split(b"$", 1)[0][:8]
    P = password
    final = hashlib.md5(P + salt + P).digest()
    ctx = hashlib.md5(P + magic + salt)
    ctx.update(_repeat(final, len(P)))
    n = len(P)
    while n:
        ctx.update(b"\0" if n & 1 else P[:1])
        n >>= 1
    final = ctx.digest()
    for i in range(1000):
        message = P if i & 1 else final
        if i % 3:
            message += salt
        if i % 7:
            message += P
        message += final if i & 1 else P
        final = hashlib.md5(message).digest()
    encoded = b"".join(
        _encode24(final[a], final[b], final[c], 4) for a, b, c in _MD5_ORDER
    )
    encoded += _encode24(0, 0, final[11], 2)
    return magic + salt + b"$" + encoded


def hashKind(hashed: bytes) -> Optional[str]:
    """
    @return: C{"bcrypt"}, C{"sha-crypt"}, C{"md5-crypt"} or C{"sha1"} for
        a supported hash, else C{None}.
    """
    if hashed[:4] in (b"$2y$", b"$2b$", b"$2a$"):
        return "bcrypt"
    if hashed[:3] in (b"$5$", b"$6$"):
        return "sha-crypt"
    if hashed.startswith(b"$apr1$") or hashed.startswith(b"$1$"):
        return "md5-crypt"
    if hashed.startswith(b"{SHA}"):
        return "sha1"
    return None


def isSlowHash(hashed: bytes) -> bool:
    """
    @return: whether checking C{hashed} takes long enough (bcrypt,
        SHA-crypt: tens to hundreds of milliseconds) to belong in a thread.
    """
    return hashKind(hashed) in ("bcrypt", "sha-crypt")


_BCRYPT64 = b"./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

# The shapes of the hashes the algorithms write; anything else cannot be
# matched (a salt longer than the algorithm uses, rounds it would clamp or
# write differently, a hash of the wrong length).
_SHAPES = {
    "bcrypt": (
        re.compile(rb"\$2[aby]\$(?P<cost>[0-9]{2})\$[./A-Za-z0-9]{53}"),
        "a bcrypt hash is $2y$, a two-digit cost, $ and 53 characters of"
        " ./A-Za-z0-9",
    ),
    "sha-crypt": (
        re.compile(
            rb"\$(?P<magic>[56])\$(?:rounds=(?P<rounds>[1-9][0-9]*)\$)?[^$]{0,16}"
            rb"\$(?P<hash>[./0-9A-Za-z]{43}|[./0-9A-Za-z]{86})"
        ),
        "a SHA-crypt hash is $5$ or $6$, an optional rounds=N$ (N from 1000), a"
        " salt of at most 16 characters, $ and 43 ($5$) or 86 ($6$) characters"
        " of ./0-9A-Za-z",
    ),
    "md5-crypt": (
        re.compile(rb"(?:\$apr1\$|\$1\$)[^$]{0,8}\$[./0-9A-Za-z]{22}"),
        "an MD5-crypt hash is $apr1$ or $1$, a salt of at most 8 characters, $"
        " and 22 characters of ./0-9A-Za-z",
    ),
}


def _shaCryptRounds(hashed: bytes) -> int:
    rest = hashed[3:]
    if rest.startswith(b"rounds="):
        text = rest[7:].partition(b"$")[0]
        if text.isdigit():
            return min(max(int(text), ROUNDS_MIN), ROUNDS_MAX)
    return ROUNDS_DEFAULT


def hashWork(hashed: bytes) -> int:
    """
    Estimate what checking a password against C{hashed} costs, in rough
    microseconds (bcrypt: about 60 per unit of 2 ** cost; SHA-crypt: about
    one per round; MD5-crypt: its 1000 rounds).  Only the order matters.

    @return: the estimate; 0 for unsupported or malformed hashes.
    """
    kind = hashKind(hashed)
    if kind == "bcrypt":
        cost = hashed[4:6]
        if not cost.isdigit() or hashed[6:7] != b"$" or not 4 <= int(cost) <= 31:
            return 0  # the bcrypt package refuses it without hashing
        return 60 * 2 ** int(cost)
    if kind == "sha-crypt":
        return _shaCryptRounds(hashed)
    if kind == "md5-crypt":
        return 1000
    if kind == "sha1":
        return 1
    return 0


def hashProblem(hashed: bytes) -> Optional[str]:
    """
    Say why an htpasswd file's hash cannot be used, without quoting it.

    @return: C{None} for a well-formed supported hash within the cost
        limits (L{BCRYPT_MAX_COST}, L{SHA_CRYPT_MAX_ROUNDS}); else what is
        wrong with it, as a phrase following "the hash of user X".
    """
    kind = hashKind(hashed)
    if kind is None:
        return "is of an unsupported kind (use bcrypt: htpasswd -B)"
    if kind == "sha1":
        try:
            digest = binascii.a2b_base64(hashed[5:], strict_mode=True)
        except binascii.Error:
            digest = b""
        if len(digest) != 20:
            return (
                "is malformed: {SHA} must be followed by the base64 of 20 bytes"
                " (28 characters); recreate it (htpasswd -B)"
            )
        return None
    shape, expected = _SHAPES[kind]
    match = shape.fullmatch(hashed)
    if match is not None and kind == "sha-crypt":
        if len(match.group("hash")) != (43 if match.group("magic") == b"5" else 86):
            match = None
    if match is None:
        return f"is malformed: {expected}; recreate it (htpasswd -B)"
    if kind == "bcrypt":
        cost = int(match.group("cost"))
        if cost < 4:
            return f"is malformed: bcrypt cost {cost} is below 4, the least there is"
        if cost > BCRYPT_MAX_COST:
            return (
                f"costs too much to check: bcrypt cost {cost} is above"
                f" {BCRYPT_MAX_COST}, and each step doubles the time of every"
                " login (recreate it with a lower cost: htpasswd -B -C 10)"
            )
    elif kind == "sha-crypt" and match.group("rounds") is not None:
        rounds = int(match.group("rounds"))
        if rounds < ROUNDS_MIN:
            return (
                f"is malformed: rounds={rounds} is below {ROUNDS_MIN}, which"
                " SHA-crypt would raise it to, so no password matches"
            )
        if rounds > SHA_CRYPT_MAX_ROUNDS:
            return (
                f"costs too much to check: rounds={rounds} is above"
                f" {SHA_CRYPT_MAX_ROUNDS:,} (recreate it with fewer rounds:"
                " the default is 5000)"
            )
    return None


def _randomChars(alphabet: bytes, n: int) -> bytes:
    return bytes(secrets.choice(alphabet) for _ in range(n))


def dummyHash(hashes: Any) -> Optional[bytes]:
    """
    Make a hash of the same kind and cost as the costliest of C{hashes}
    (by L{hashWork}), with a random salt and a random hash value: checking
    any password against it costs what checking against that entry costs,
    and (but for a 2 ** -128 chance) fails.  Nothing is hashed here, so
    this is cheap even for bcrypt.

    @return: the dummy hash, or C{None} if C{hashes} holds no supported
        hash.
    """
    costliest = max(hashes, key=hashWork, default=None)
    if costliest is None or not hashWork(costliest):
        return None
    kind = hashKind(costliest)
    if kind == "bcrypt":
        # A real salt (its last character only carries 4 bits), then any
        # 31 characters for the hash, which is only compared.
        import bcrypt

        setting = bcrypt.gensalt(int(costliest[4:6]), prefix=b"2b")
        return setting + _randomChars(_BCRYPT64, 31)
    if kind == "sha-crypt":
        magic = costliest[:3]
        rounds = b""
        if costliest[3:].startswith(b"rounds="):
            rounds = b"rounds=%d$" % _shaCryptRounds(costliest)
        length = 43 if magic == b"$5$" else 86
        return (
            magic
            + rounds
            + _randomChars(_CRYPT64, 16)
            + b"$"
            + _randomChars(_CRYPT64, length)
        )
    if kind == "md5-crypt":
        return b"$apr1$" + _randomChars(_CRYPT64, 8) + b"$" + _randomChars(_CRYPT64, 22)
    return b"{SHA}" + base64.b64encode(secrets.token_bytes(20))


def verifyPassword(password: bytes, hashed: bytes) -> bool:
    """
    Check a password against one stored hash, in constant time with
    respect to the stored hash.

    @return: whether it matches; C{False} for unsupported or malformed
        hashes.
    """
    kind = hashKind(hashed)
    try:
        if kind == "bcrypt":
            import bcrypt

            # Apache and crypt_blowfish ignore what follows byte 72; the
            # bcrypt package refuses it instead.
            candidate = password[:72]
            if hashed[:4] == b"$2y$":
                # $2y$ is crypt_blowfish's name for the fixed $2a$; the
                # algorithm is the one the package calls $2b$.
                hashed = b"$2b$" + hashed[4:]
            return bool(bcrypt.checkpw(candidate, hashed))
        if kind == "sha-crypt":
            computed = shaCrypt(password, hashed)
        elif kind == "md5-crypt":
            computed = md5Crypt(password, hashed)
        elif kind == "sha1":
            computed = b"{SHA}" + base64.b64encode(hashlib.sha1(password).digest())
        else:
            return False
    except ValueError:
        return False
    return hmac.compare_digest(computed, hashed)


class HtpasswdFile:
    """
    The users of an htpasswd file, re-read when the file changes.

    @ivar path: the file.
    @ivar statInterval: seconds between checks of the file's modification
        time.
    @ivar clock: a monotonic time source (injectable for tests).
    """

    statInterval = 1.0

    def __init__(self, path: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self.clock = clock
        self._entries: dict[bytes, bytes] = {}
        self._dummy: Optional[bytes] = None
        self._signature: Optional[tuple[int, int, int]] = None
        self._checked = float("-inf")
        self._load(strict=True)

    def _stat(self) -> tuple[int, int, int]:
        st = os.stat(self.path)
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def _load(self, strict: bool) -> bool:
        """
        Read the file, or, if it cannot be read, forget every user (or,
        C{strict}, raise L{ValueError}).

        @return: whether the file was read.
        """
        try:
            signature = self._stat()
            with open(self.path, "rb") as f:
                data = f.read()
        except OSError as e:
            if strict:
                raise ValueError(f"htpasswd: cannot read {self.path}: {e.strerror}")
            log.error(
                "htpasswd: cannot read {path} ({error}); refusing every user until it can be read",
                path=self.path,
                error=e.strerror,
            )
            self._entries = {}
            self._dummy = None
            self._signature = None
            return False
        self._entries = parseHtpasswd(data, self.path)
        self._dummy = dummyHash(self._entries.values())
        self._signature = signature
        return True

    def _maybeReload(self) -> None:
        now = self.clock()
        if now - self._checked < self.statInterval:
            return
        self._checked = now
        try:
            signature: Optional[tuple[int, int, int]] = self._stat()
        except OSError:
            signature = None
        if signature != self._signature or signature is None:
            if not self._load(strict=False):
                # Logged as unreadable (and every user refused).
                return
            log.info(
                "htpasswd: read {path} ({count} users)",
                path=self.path,
                count=len(self._entries),
            )

    def entry(self, user: bytes) -> Optional[bytes]:
        """
        @return: the stored hash of C{user}, or C{None}.
        """
        self._maybeReload()
        return self._entries.get(user)

    def dummyEntry(self) -> Optional[bytes]:
        """
        @return: a hash of the costliest kind and cost in the file (see
            L{hashWork}) that no password matches, made when the file was
            read; unknown users are checked against it, so that they cost
            at least as much as any known user and response times do not
            tell which names exist.  C{None} if there are no users.
        """
        self._maybeReload()
        return self._dummy

    def __len__(self) -> int:
        return len(self._entries)


def parseHtpasswd(data: bytes, where: str = "htpasswd") -> dict[bytes, bytes]:
    """
    Parse C{user:hash} lines; blank lines and lines starting with C{#} are
    skipped; unsupported, malformed and too costly hashes (see
    L{hashProblem}) are reported (by user and line, never the hash) and
    left out, so that user cannot log in while the others can.

    @return: user names to hashes.
    """
    entries: dict[bytes, bytes] = {}
    for number, line in enumerate(data.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith(b"#"):
            continue
        user, colon, hashed = line.partition(b":")
        # Some tools append fields (a comment, a group) after the hash.
        hashed = hashed.split(b":", 1)[0].strip()
        if not colon or not user or not hashed:
            log.warn(
                "htpasswd: {where} line {number} is not user:hash; ignored",
                where=where,
                number=number,
            )
            continue
        problem = hashProblem(hashed)
        if problem is not None:
            log.warn(
                "htpasswd: {where} line {number}: the hash of user {user!r} {problem};"
                " that user cannot log in",
                where=where,
                number=number,
                user=user.decode("utf-8", "replace"),
                problem=problem,
            )
            continue
        entries[user] = hashed
    return entries


RunSlow = Callable[..., "Deferred[Any]"]


def _defaultRunSlow(f: Callable[..., Any], *args: Any) -> "Deferred[Any]":
    from twisted.internet import reactor
    from twisted.internet.threads import deferToThreadPool

    return deferToThreadPool(reactor, reactor.getThreadPool(), f, *args)  # type: ignore[attr-defined, arg-type]


@implementer(ICredentialsChecker)
class HtpasswdChecker:
    """
    Checks user names and passwords against an htpasswd file.

    Successful checks are remembered for C{cacheSeconds} (keyed by a keyed
    hash of the user name and password, never the password itself), so a
    client sending the same credentials with every request costs one
    bcrypt computation per period, not one per request.  A remembered
    success is void as soon as the user's entry in the file changes.

    @ivar runSlow: runs a slow hash check away from the reactor thread:
        called as C{runSlow(f, *args)}, returns a L{Deferred} of the
        result.  Defaults to the global reactor's thread pool.
    """

    credentialInterfaces = (IUsernamePassword,)
    maxCached = 4096

    def __init__(
        self,
        passwords: HtpasswdFile,
        cacheSeconds: float = 60.0,
        runSlow: Optional[RunSlow] = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.passwords = passwords
        self.cacheSeconds = cacheSeconds
        self.runSlow = runSlow if runSlow is not None else _defaultRunSlow
        self.clock = clock
        self._key = secrets.token_bytes(32)
        self._cache: OrderedDict[bytes, tuple[bytes, bytes, float]] = OrderedDict()

    def _cacheKey(self, username: bytes, password: bytes) -> bytes:
        return hmac.new(self._key, username + b"\0" + password, hashlib.sha256).digest()

    def cached(self, username: bytes, password: bytes) -> bool:
        """
        @return: whether these credentials were verified recently and the
            user's entry has not changed since (no hashing, no Deferred).
        """
        if not self._cache:
            return False
        key = self._cacheKey(username, password)
        hit = self._cache.get(key)
        if hit is None:
            return False
        user, hashed, expires = hit
        if self.clock() >= expires or self.passwords.entry(user) != hashed:
            del self._cache[key]
            return False
        return True

    def _remember(self, username: bytes, password: bytes, hashed: bytes) -> None:
        if self.cacheSeconds <= 0:
            return
        cache = self._cache
        cache[self._cacheKey(username, password)] = (
            username,
            hashed,
            self.clock() + self.cacheSeconds,
        )
        while len(cache) > self.maxCached:
            cache.popitem(last=False)

    def requestAvatarId(self, credentials: Any) -> "Deferred[bytes | tuple[()]]":
        """
        @param credentials: an L{IUsernamePassword} provider with C{bytes}
            C{username} and C{password}.
        @return: a L{Deferred} firing with the user name, or failing with
            L{UnauthorizedLogin}.
        """
        username = credentials.username
        password = credentials.password
        if self.cached(username, password):
            return succeed(username)
        hashed = self.passwords.entry(username)
        known = hashed is not None
        if hashed is None:
            # Spend at least what the costliest real check costs, so that
            # response times do not tell which user names exist.
            hashed = self.passwords.dummyEntry()
            if hashed is None:
                return fail(UnauthorizedLogin("no such user"))

        def decided(matches: bool) -> "bytes | tuple[()]":
            if matches and known:
                self._remember(username, password, hashed)  # type: ignore[arg-type]
                return username
            raise UnauthorizedLogin("wrong user name or password")

        if isSlowHash(hashed):
            return self.runSlow(verifyPassword, password, hashed).addCallback(decided)
        try:
            return succeed(decided(verifyPassword(password, hashed)))
        except UnauthorizedLogin:
            return fail()
