# -*- test-case-name: tests.test_filters_auth -*-
"""
Tests for L{proxyapp.filters.auth} and L{proxyapp.filters.htpasswd}: the
hash schemes against published test vectors, the htpasswd file and its
L{twisted.cred} checker, and the filter's answers (407, 429, throttling)
directly and through L{proxyapp.testing.InMemoryProxy}.
"""

from __future__ import annotations

import base64
import os
from typing import Any, Callable, Optional

import bcrypt
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.address import IPv4Address
from twisted.internet.defer import CancelledError, Deferred, maybeDeferred
from twisted.internet.task import Clock, deferLater
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from twisted.logger import Logger, capturedLogs, formatEvent

from proxyapp.config import ConfigError, Settings
from proxyapp.filters import auth, buildChainFilters, htpasswd
from proxyapp.filters.htpasswd import (
    BCRYPT_MAX_COST,
    SHA_CRYPT_MAX_ROUNDS,
    HtpasswdChecker,
    HtpasswdFile,
    dummyHash,
    hashProblem,
    hashWork,
    isSlowHash,
    md5Crypt,
    parseHtpasswd,
    shaCrypt,
    verifyPassword,
)
from proxyapp.interfaces import IRequestFilter, ITunnelFilter
from proxyapp.message import RequestHead, Response
from proxyapp.testing import InMemoryProxy, makeRequestHead, verifyFilter

# Ulrich Drepper, "Unix crypt using SHA-256 and SHA-512", the test vectors
# at the end of the specification: (password, setting, result).
LONG_TEXT = "a very much longer text to encrypt.  This one even stretches over morethan one line."
SHORT_SALT_TEXT = "we have a short salt string but not a short password"
ROUNDS_TEXT = "the minimum number is still observed"
SHA_CRYPT_VECTORS = [
    (
        "Hello world!",
        "$5$saltstring",
        "$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5",
    ),
    (
        "Hello world!",
        "$5$rounds=10000$saltstringsaltstring",
        "$5$rounds=10000$saltstringsaltst$3xv.VbSHBb41AL9AvLeujZkZRBAwqFMz2.opqey6IcA",
    ),
    (
        "This is just a test",
        "$5$rounds=5000$toolongsaltstring",
        "$5$rounds=5000$toolongsaltstrin$Un/5jzAHMgOGZ5.mWJpuVolil07guHPvOW8mGRcvxa5",
    ),
    (
        LONG_TEXT,
        "$5$rounds=1400$anotherlongsaltstring",
        "$5$rounds=1400$anotherlongsalts$Rx.j8H.h8HjEDGomFU8bDkXm3XIUnzyxf12oP84Bnq1",
    ),
    (
        SHORT_SALT_TEXT,
        "$5$rounds=77777$short",
        "$5$rounds=77777$short$JiO1O3ZpDAxGJeaDIuqCoEFysAe1mZNJRs3pw0KQRd/",
    ),
    (
        "a short string",
        "$5$rounds=123456$asaltof16chars..",
        "$5$rounds=123456$asaltof16chars..$gP3VQ/6X7UUEW3HkBn2w1/Ptq2jxPyzV/cZKmF/wJvD",
    ),
    (
        ROUNDS_TEXT,
        "$5$rounds=10$roundstoolow",
        "$5$rounds=1000$roundstoolow$yfvwcWrQ8l/K0DAWyuPMDNHpIVlTQebY9l/gL972bIC",
    ),
    (
        "Hello world!",
        "$6$saltstring",
        "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1",
    ),
    (
        "Hello world!",
        "$6$rounds=10000$saltstringsaltstring",
        "$6$rounds=10000$saltstringsaltst$OW1/O6BYHV6BcXZu8QVeXbDWra3Oeqh0sbHbbMCVNSnCM/UrjmM0Dp8vOuZeHBy/YTBmSK6H9qs/y3RnOaw5v.",
    ),
    (
        "This is just a test",
        "$6$rounds=5000$toolongsaltstring",
        "$6$rounds=5000$toolongsaltstrin$lQ8jolhgVRVhY4b5pZKaysCLi0QBxGoNeKQzQ3glMhwllF7oGDZxUhx1yxdYcz/e1JSbq3y6JMxxl8audkUEm0",
    ),
    (
        LONG_TEXT,
        "$6$rounds=1400$anotherlongsaltstring",
        "$6$rounds=1400$anotherlongsalts$POfYwTEok97VWcjxIiSOjiykti.o/pQs.wPvMxQ6Fm7I6IoYN3CmLs66x9t0oSwbtEW7o7UmJEiDwGqd8p4ur1",
    ),
    (
        SHORT_SALT_TEXT,
        "$6$rounds=77777$short",
        "$6$rounds=77777$short$WuQyW2YR.hBNpjjRhpYD/ifIw05xdfeEyQoMxIXbkvr0gge1a1x3yRULJ5CCaUeOxFmtlcGZelFl5CxtgfiAc0",
    ),
    (
        "a short string",
        "$6$rounds=123456$asaltof16chars..",
        "$6$rounds=123456$asaltof16chars..$BtCwjqMJGx5hrJhZywWvt0RLE8uZ4oPwcelCjmw2kSYu.Ec6ycULevoBK25fs2xXgMNrCzIMVcgEJAstJeonj1",
    ),
    (
        ROUNDS_TEXT,
        "$6$rounds=10$roundstoolow",
        "$6$rounds=1000$roundstoolow$kUMsbe306n21p9R.FRkW3IGn.S9NPN0x50YhH1xhLsPuWGsUSklZt58jaTfF4ZEQpyUNGc0dqbpBYYBaHHrsX.",
    ),
]

# MD5-crypt: FreeBSD's lib/libcrypt tests and `openssl passwd -1`; APR1:
# `openssl passwd -apr1 -salt saltsalt password`.
MD5_CRYPT_VECTORS = [
    ("0.s0.l33t", "$1$deadbeef$0Huu6KHrKLVWfqa4WljDE0"),
    ("password", "$1$saltsalt$qjXMvbEw8oaL.CzflDtaK/"),
    (
        "a much longer password, over sixteen bytes",
        "$1$12345678$PP/c4Kc.7EWyWL2a.RRb51",
    ),
    ("", "$1$$qRPK7m23GJusamGpoGLby/"),
    ("password", "$apr1$saltsalt$yAAkm4libquA.ZWLHbSBq/"),
]

# Openwall crypt_blowfish's wrapper.c vectors.
BCRYPT_VECTORS = [
    ("U*U", "$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW"),
    ("U*U*", "$2a$05$CCCCCCCCCCCCCCCCCCCCC.VGOzA784oUp/Z0DY336zx7pLYAy0lwK"),
    ("", "$2a$05$CCCCCCCCCCCCCCCCCCCCC.7uG0VCzI2bS7j6ymqJi9CdcdxiRTWNy"),
    ("U*U", "$2b$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW"),
    ("U*U", "$2y$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW"),
    (
        "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789chars after 72 are ignored",
        "$2a$05$abcdefghijklmnopqrstuu5s2v8.iXieOjg/.AySBTTZIIVFJeBui",
    ),
]

# `htpasswd -s`: base64 of SHA-1("password").
SHA1_VECTOR = ("password", "{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=")


def basic(user: str, password: str) -> bytes:
    """
    @return: a C{Proxy-Authorization} value for Basic credentials.
    """
    return b"Basic " + base64.b64encode(f"{user}:{password}".encode("utf-8"))


def synchronously(f: Callable[..., Any], *args: Any) -> "Deferred[Any]":
    """
    A C{runSlow} that runs the check at once, counting the calls.
    """
    synchronously.calls += 1  # type: ignore[attr-defined]
    return maybeDeferred(f, *args)


synchronously.calls = 0  # type: ignore[attr-defined]


def result(d: Any) -> Any:
    """
    @return: C{d}'s result if it is a fired L{Deferred}, else C{d}.
    """
    if isinstance(d, Deferred):
        results: list[Any] = []
        d.addBoth(results.append)
        assert results, "the Deferred has not fired"
        return results[0]
    return d


class HashTests(SynchronousTestCase):
    """
    L{verifyPassword} and the hash implementations against published test
    vectors.
    """

    def test_shaCryptVectors(self) -> None:
        """
        L{shaCrypt} reproduces every SHA-256 and SHA-512 test vector of
        Drepper's specification, including the rounds clamped to 1000 and
        the salt cut at 16 characters.
        """
        for password, setting, expected in SHA_CRYPT_VECTORS:
            self.assertEqual(
                shaCrypt(password.encode(), setting.encode()),
                expected.encode(),
                setting,
            )

    def test_shaCryptVerifies(self) -> None:
        """
        L{verifyPassword} accepts the password of a SHA-crypt hash and
        rejects any other.
        """
        for password, _, hashed in SHA_CRYPT_VECTORS[:4] + SHA_CRYPT_VECTORS[7:11]:
            self.assertTrue(verifyPassword(password.encode(), hashed.encode()), hashed)
            self.assertFalse(
                verifyPassword(password.encode() + b"x", hashed.encode()), hashed
            )

    def test_md5CryptVectors(self) -> None:
        """
        L{md5Crypt} reproduces FreeBSD's MD5-crypt and Apache's APR1
        vectors, and L{verifyPassword} accepts them.
        """
        for password, hashed in MD5_CRYPT_VECTORS:
            self.assertEqual(
                md5Crypt(password.encode(), hashed.encode()), hashed.encode()
            )
            self.assertTrue(verifyPassword(password.encode(), hashed.encode()))
            self.assertFalse(verifyPassword(b"wrong", hashed.encode()))

    def test_bcryptVectors(self) -> None:
        """
        bcrypt hashes with the C{$2a$}, C{$2b$} and C{$2y$} prefixes verify;
        bytes after the 72nd are ignored, as crypt_blowfish does.
        """
        for password, hashed in BCRYPT_VECTORS:
            self.assertTrue(verifyPassword(password.encode(), hashed.encode()), hashed)
            self.assertFalse(
                verifyPassword(password.encode()[:5] + b"!", hashed.encode()), hashed
            )

    def test_sha1(self) -> None:
        """
        C{{SHA}} entries (C{htpasswd -s}) verify.
        """
        password, hashed = SHA1_VECTOR
        self.assertTrue(verifyPassword(password.encode(), hashed.encode()))
        self.assertFalse(verifyPassword(b"Password", hashed.encode()))

    def test_unsupported(self) -> None:
        """
        Traditional DES crypt, plain text and malformed hashes never match.
        """
        self.assertFalse(verifyPassword(b"neodarwin", b"ndic/XPiorxqM"))
        self.assertFalse(verifyPassword(b"secret", b"secret"))
        self.assertFalse(verifyPassword(b"x", b"$2y$05$short"))
        self.assertFalse(verifyPassword(b"x", b"$5$rounds=abc$salt$hash"))

    def test_slowHashes(self) -> None:
        """
        bcrypt and SHA-crypt checks are the slow ones (run in a thread).
        """
        self.assertTrue(isSlowHash(BCRYPT_VECTORS[0][1].encode()))
        self.assertTrue(isSlowHash(SHA_CRYPT_VECTORS[0][2].encode()))
        self.assertFalse(isSlowHash(MD5_CRYPT_VECTORS[4][1].encode()))
        self.assertFalse(isSlowHash(SHA1_VECTOR[1].encode()))


class HtpasswdFileTests(SynchronousTestCase):
    """
    L{HtpasswdFile} and L{parseHtpasswd}.
    """

    def test_parse(self) -> None:
        """
        C{user:hash} lines are read; blank lines, comments, lines without a
        hash and unsupported hashes are left out; fields after the hash are
        ignored.
        """
        entries = parseHtpasswd(
            b"alice:$apr1$saltsalt$yAAkm4libquA.ZWLHbSBq/\r\n"
            b"\n# comment\n"
            b"bob:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=:extra\n"
            b"carol:ndic/XPiorxqM\n"
            b"broken\n"
        )
        self.assertEqual(
            entries,
            {
                b"alice": b"$apr1$saltsalt$yAAkm4libquA.ZWLHbSBq/",
                b"bob": b"{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=",
            },
        )

    def captureLog(self) -> Callable[[], list[str]]:
        """
        Capture what L{htpasswd} logs from now on.

        @return: a callable giving the messages logged so far.
        """
        events: list[dict[str, Any]] = []
        self.patch(htpasswd, "log", Logger(observer=events.append))
        return lambda: [formatEvent(e) for e in events]

    def test_tooCostly(self) -> None:
        """
        A bcrypt cost above L{BCRYPT_MAX_COST} or more SHA-crypt rounds
        than L{SHA_CRYPT_MAX_ROUNDS} is reported, by file, line and user
        and never the hash, and left out like an unsupported hash: one
        check would hold a thread for minutes or days.  Entries at the
        limits are kept.
        """
        logged = self.captureLog()
        salt = b"$" + b"C" * 53
        sha512 = b"$saltsalt$" + b"a" * 86
        atLimit = b"$2y$%02d" % (BCRYPT_MAX_COST,) + salt
        roundsAtLimit = b"$6$rounds=%d" % (SHA_CRYPT_MAX_ROUNDS,) + sha512
        entries = parseHtpasswd(
            b"alice:$2y$31" + salt + b"\n"
            b"bob:$6$rounds=999999999" + sha512 + b"\n"
            b"carol:$2b$%02d" % (BCRYPT_MAX_COST + 1,) + salt + b"\n"
            b"dave:$5$rounds=%d$salt$" % (SHA_CRYPT_MAX_ROUNDS + 1,) + b"b" * 43 + b"\n"
            b"erin:" + atLimit + b"\n"
            b"frank:" + roundsAtLimit + b"\n",
            "/etc/htpasswd",
        )
        self.assertEqual(entries, {b"erin": atLimit, b"frank": roundsAtLimit})
        messages = logged()
        self.assertEqual(len(messages), 4, messages)
        for number, (user, message) in enumerate(
            zip(["alice", "bob", "carol", "dave"], messages), 1
        ):
            self.assertIn(f"/etc/htpasswd line {number}:", message)
            self.assertIn(f"user {user!r}", message)
            self.assertIn("costs too much to check", message)
            self.assertIn("cannot log in", message)
            self.assertNotIn("CCCC", message)
            self.assertNotIn("aaaa", message)
        self.assertIn("bcrypt cost 31 is above 13", messages[0])
        self.assertIn("rounds=999999999 is above 1,000,000", messages[1])

    def test_tooCostlyNotTheDummy(self) -> None:
        """
        A refused costly entry does not set the cost of the dummy hash
        unknown users are checked against, nor of any check: the file's
        other entries do.
        """
        self.captureLog()
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(
                b"alice:$2y$31$" + b"C" * 53 + b"\n"
                b"bob:$6$rounds=999999999$salt$" + b"a" * 86 + b"\n"
                b"carol:$apr1$saltsalt$yAAkm4libquA.ZWLHbSBq/\n"
            )
        passwords = HtpasswdFile(path)
        self.assertIsNone(passwords.entry(b"alice"))
        self.assertIsNone(passwords.entry(b"bob"))
        dummy = passwords.dummyEntry()
        assert dummy is not None
        self.assertTrue(dummy.startswith(b"$apr1$"), dummy)

    def test_tooCostlyOnReread(self) -> None:
        """
        A costly entry written into the file while the proxy runs is
        refused when the file is read again, like one present at start.
        """
        logged = self.captureLog()
        now = [0.0]
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(b"alice:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n")
        passwords = HtpasswdFile(path, clock=lambda: now[0])
        with open(path, "wb") as f:
            f.write(b"alice:$2y$31$" + b"C" * 53 + b"\n")
        os.utime(path, ns=(1, 1))
        now[0] += passwords.statInterval
        self.assertIsNone(passwords.entry(b"alice"))
        self.assertIsNone(passwords.dummyEntry())
        self.assertTrue(
            any("costs too much" in m and "line 1" in m for m in logged()),
            logged(),
        )

    def test_malformed(self) -> None:
        """
        A hash with a supported prefix but a shape no password can match
        (cut short, the wrong length or alphabet, a salt longer than the
        algorithm uses, rounds it would raise, {SHA} that is not the base64
        of 20 bytes) is reported and left out like an unsupported hash.
        """
        logged = self.captureLog()
        good = {
            b"bcrypt": BCRYPT_VECTORS[4][1].encode(),
            b"sha256": SHA_CRYPT_VECTORS[1][2].encode(),
            b"sha512": SHA_CRYPT_VECTORS[7][2].encode(),
            b"md5": MD5_CRYPT_VECTORS[3][1].encode(),
            b"apr1": MD5_CRYPT_VECTORS[4][1].encode(),
            b"sha1": SHA1_VECTOR[1].encode(),
        }
        bad = [
            b"$2y$05$short",
            BCRYPT_VECTORS[4][1].encode()[:-1],
            BCRYPT_VECTORS[4][1].encode()[:-1] + b"!",
            b"$2y$03$" + b"C" * 53,
            b"{SHA}xx",
            b"{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g",
            b"{SHA}" + base64.b64encode(b"x" * 32),
            SHA_CRYPT_VECTORS[0][2].encode()[:-1],
            b"$5$saltstring$" + b"a" * 86,
            b"$6$toolongsaltstringXX$" + b"a" * 86,
            SHA_CRYPT_VECTORS[6][1].encode() + b"$" + b"a" * 43,
            b"$5$rounds=05000$salt$" + b"a" * 43,
            b"$apr1$saltsaltX$yAAkm4libquA.ZWLHbSBq/",
            b"$1$deadbeef$0Huu6KHrKLVWfqa4WljDE",
        ]
        data = b"".join(user + b":" + hashed + b"\n" for user, hashed in good.items())
        data += b"".join(b"bad%d:%s\n" % (i, hashed) for i, hashed in enumerate(bad))
        self.assertEqual(parseHtpasswd(data, "pw"), good)
        messages = logged()
        self.assertEqual(len(messages), len(bad), messages)
        for i, message in enumerate(messages):
            self.assertIn(
                f"pw line {len(good) + i + 1}: the hash of user 'bad{i}'", message
            )
            self.assertIn("is malformed", message)
        for hashed in good.values():
            self.assertIsNone(hashProblem(hashed), hashed)
        for hashed in bad:
            self.assertIsNotNone(hashProblem(hashed), hashed)

    def test_missingFile(self) -> None:
        """
        A file that cannot be read at start is a configuration error naming
        it.
        """
        path = self.mktemp()
        with self.assertRaises(ValueError) as e:
            HtpasswdFile(path)
        self.assertIn(path, str(e.exception))

    def test_rereadWhenChanged(self) -> None:
        """
        The file is read again when its modification time or size changes,
        at most once per C{statInterval}.
        """
        now = [0.0]
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(b"alice:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n")
        passwords = HtpasswdFile(path, clock=lambda: now[0])
        self.assertIsNotNone(passwords.entry(b"alice"))
        with open(path, "wb") as f:
            f.write(b"bob:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n")
        os.utime(path, ns=(1, 1))
        self.assertIsNotNone(passwords.entry(b"alice"))
        now[0] += passwords.statInterval
        self.assertIsNone(passwords.entry(b"alice"))
        self.assertIsNotNone(passwords.entry(b"bob"))

    def test_unreadableFailsClosed(self) -> None:
        """
        If the file disappears, nobody is let in until it is back.  That is
        logged once, as a file that cannot be read (not also as one read
        with no users), and its return as read.
        """
        now = [0.0]
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(b"alice:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n")
        passwords = HtpasswdFile(path, clock=lambda: now[0])
        os.remove(path)
        now[0] += 5
        with capturedLogs() as events:
            self.assertIsNone(passwords.entry(b"alice"))
        messages = [formatEvent(e) for e in events]
        self.assertEqual(len(messages), 1, messages)
        self.assertIn("cannot read", messages[0])
        with open(path, "wb") as f:
            f.write(b"alice:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n")
        now[0] += 5
        with capturedLogs() as events:
            self.assertIsNotNone(passwords.entry(b"alice"))
        self.assertEqual(
            [formatEvent(e) for e in events], [f"htpasswd: read {path} (1 users)"]
        )


class CheckerTests(SynchronousTestCase):
    """
    L{HtpasswdChecker}, the L{twisted.cred} checker.
    """

    def setUp(self) -> None:
        self.now = 0.0
        self.path = self.mktemp()
        self.slow: list[bytes] = []
        self.write(
            b"alice:"
            + bcrypt.hashpw(b"secret", bcrypt.gensalt(4))
            + b"\nbob:$apr1$saltsalt$yAAkm4libquA.ZWLHbSBq/\n"
        )
        self.passwords = HtpasswdFile(self.path, clock=lambda: self.now)
        self.checker = HtpasswdChecker(
            self.passwords,
            cacheSeconds=60,
            runSlow=self.runSlow,
            clock=lambda: self.now,
        )

    def write(self, data: bytes) -> None:
        with open(self.path, "wb") as f:
            f.write(data)

    def runSlow(self, f: Callable[..., Any], *args: Any) -> "Deferred[Any]":
        self.slow.append(args[1])
        return maybeDeferred(f, *args)

    def check(self, user: bytes, password: bytes) -> Any:
        return result(self.checker.requestAvatarId(UsernamePassword(user, password)))

    def test_interface(self) -> None:
        """
        The checker provides L{ICredentialsChecker} for user names and
        passwords.
        """
        self.assertTrue(verifyObject(ICredentialsChecker, self.checker))

    def test_accepts(self) -> None:
        """
        The right password gives the user name as avatar ID; bcrypt runs
        through C{runSlow}, APR1 does not.
        """
        self.assertEqual(self.check(b"alice", b"secret"), b"alice")
        self.assertEqual(len(self.slow), 1)
        self.assertEqual(self.check(b"bob", b"password"), b"bob")
        self.assertEqual(len(self.slow), 1)

    def test_rejects(self) -> None:
        """
        A wrong password or an unknown user fails with
        L{UnauthorizedLogin}.
        """
        self.check(b"alice", b"wrong").trap(UnauthorizedLogin)
        self.check(b"mallory", b"secret").trap(UnauthorizedLogin)

    def test_unknownUserCostsAsMuch(self) -> None:
        """
        An unknown user's password is still checked against some user's
        hash, so response times do not reveal which names exist; even that
        user's password does not let the unknown name in.
        """
        self.write(b"alice:" + bcrypt.hashpw(b"secret", bcrypt.gensalt(4)) + b"\n")
        self.now += 5
        self.check(b"mallory", b"secret").trap(UnauthorizedLogin)
        self.assertEqual(len(self.slow), 1)

    def test_unknownUserCheckedAgainstCostliest(self) -> None:
        """
        With mixed hash kinds an unknown user is checked against a dummy
        hash of the costliest kind and cost in the file, not the first
        entry's (an APR1 check costs next to nothing beside bcrypt): made
        once per reading of the file, matching no entry.
        """
        costly = bcrypt.hashpw(b"secret", bcrypt.gensalt(6))
        self.write(
            b"bob:$apr1$saltsalt$yAAkm4libquA.ZWLHbSBq/\n"
            + b"alice:"
            + bcrypt.hashpw(b"secret", bcrypt.gensalt(4))
            + b"\ncarol:"
            + costly
            + b"\n"
        )
        self.now += 5
        self.check(b"mallory", b"secret").trap(UnauthorizedLogin)
        [dummy] = self.slow
        self.assertTrue(dummy.startswith(b"$2b$06$"), dummy)
        self.assertNotEqual(dummy[7:29], costly[7:29])
        self.check(b"eve", b"password").trap(UnauthorizedLogin)
        self.assertEqual(self.slow, [dummy, dummy])
        self.write(b"bob:" + shaCrypt(b"pw", b"$5$rounds=2000$salt") + b"\n")
        self.now += 5
        self.check(b"mallory", b"pw").trap(UnauthorizedLogin)
        self.assertTrue(self.slow[2].startswith(b"$5$rounds=2000$"), self.slow[2])

    def test_dummyHash(self) -> None:
        """
        L{dummyHash} keeps the kind and cost of the costliest hash given
        (by L{hashWork}), with a fresh salt; checking a password against it
        really runs that hash and fails.
        """
        apr1 = b"$apr1$saltsalt$yAAkm4libquA.ZWLHbSBq/"
        sha = shaCrypt(b"pw", b"$6$rounds=20000$salt")
        cheap = bcrypt.hashpw(b"pw", bcrypt.gensalt(4))
        self.assertIsNone(dummyHash([]))
        self.assertIsNone(dummyHash([b"plain"]))
        dummy = dummyHash([apr1, sha, cheap])
        assert dummy is not None
        self.assertTrue(dummy.startswith(b"$6$rounds=20000$"), dummy)
        self.assertEqual(len(dummy.rsplit(b"$", 1)[1]), len(sha.rsplit(b"$", 1)[1]))
        self.assertFalse(verifyPassword(b"pw", dummy))
        self.assertEqual(
            shaCrypt(b"pw", dummy).rsplit(b"$", 1)[0], dummy.rsplit(b"$", 1)[0]
        )
        dummy = dummyHash([apr1, bcrypt.hashpw(b"pw", bcrypt.gensalt(5)), cheap])
        assert dummy is not None
        self.assertTrue(dummy.startswith(b"$2b$05$"), dummy)
        self.assertEqual(len(dummy), 60)
        # A well-formed hash: the bcrypt package checks, and does not refuse.
        self.assertFalse(bcrypt.checkpw(b"pw", dummy))
        dummy = dummyHash([SHA1_VECTOR[1].encode(), apr1])
        assert dummy is not None
        self.assertTrue(dummy.startswith(b"$apr1$"))
        self.assertFalse(verifyPassword(b"password", dummy))
        self.assertGreater(hashWork(b"$2b$12$" + b"." * 53), hashWork(sha))
        self.assertGreater(hashWork(sha), hashWork(apr1))
        self.assertEqual(hashWork(b"$2b$03$" + b"." * 53), 0)

    def test_cached(self) -> None:
        """
        A successful check is remembered: the same credentials again cost
        no hash, until C{cacheSeconds} pass.
        """
        self.check(b"alice", b"secret")
        self.assertTrue(self.checker.cached(b"alice", b"secret"))
        self.assertEqual(self.check(b"alice", b"secret"), b"alice")
        self.assertEqual(len(self.slow), 1)
        self.assertFalse(self.checker.cached(b"alice", b"other"))
        self.now += 61
        self.assertFalse(self.checker.cached(b"alice", b"secret"))
        self.check(b"alice", b"secret")
        self.assertEqual(len(self.slow), 2)

    def test_cacheVoidWhenEntryChanges(self) -> None:
        """
        A remembered success is void once the user's entry changes.
        """
        self.check(b"alice", b"secret")
        self.write(b"alice:" + bcrypt.hashpw(b"new", bcrypt.gensalt(4)) + b"\n")
        self.now += 2
        self.assertFalse(self.checker.cached(b"alice", b"secret"))
        self.check(b"alice", b"secret").trap(UnauthorizedLogin)
        self.assertEqual(self.check(b"alice", b"new"), b"alice")

    def test_cacheBounded(self) -> None:
        """
        The cache keeps at most C{maxCached} entries.
        """
        self.checker.maxCached = 3
        for i in range(5):
            self.checker._remember(b"u%d" % i, b"p", b"h")
        self.assertEqual(len(self.checker._cache), 3)

    def test_cacheHoldsNoPassword(self) -> None:
        """
        The cache is keyed by a keyed hash: no password is stored.
        """
        self.check(b"alice", b"secret")
        for key, value in self.checker._cache.items():
            self.assertNotIn(b"secret", key)
            self.assertNotIn(b"secret", repr(value).encode())


class AuthFilterTests(SynchronousTestCase):
    """
    L{auth.AuthFilter} called directly, with a L{Clock} as its reactor.
    """

    def setUp(self) -> None:
        self.path = self.mktemp()
        with open(self.path, "wb") as f:
            f.write(
                b"alice:" + bcrypt.hashpw(b"secret", bcrypt.gensalt(4)) + b"\n"
                b"bob:"
                + SHA_CRYPT_VECTORS[7][2].encode()
                + b"\n"
                + "jörg".encode()
                + b":$apr1$saltsalt$yAAkm4libquA.ZWLHbSBq/\n"
            )
        self.clock = Clock()
        self.filter = self.make()

    def make(self, **config: Any) -> auth.AuthFilter:
        config.setdefault("htpasswd", self.path)
        config.setdefault("realm", "Test Realm")
        return auth.makeFilter(config, runSlow=synchronously, reactor=self.clock)

    def request(
        self,
        credentials: Optional[bytes] = None,
        client: str = "192.0.2.1",
        method: bytes = b"GET",
    ) -> RequestHead:
        if method == b"CONNECT":
            request = makeRequestHead(
                b"CONNECT", b"example.com:443", client=(client, 40000)
            )
        else:
            request = makeRequestHead(client=(client, 40000))
        request.credentials = credentials
        return request

    def test_interfaces(self) -> None:
        """
        The filter provides L{IRequestFilter} and L{ITunnelFilter}.
        """
        self.assertEqual(
            set(verifyFilter(self.filter)), {IRequestFilter, ITunnelFilter}
        )
        self.assertTrue(verifyObject(IRequestFilter, self.filter))
        self.assertTrue(verifyObject(ITunnelFilter, self.filter))

    def test_noCredentials(self) -> None:
        """
        Without credentials the answer is 407 with a Basic challenge naming
        the realm, and it is not counted as a failure.
        """
        response = result(self.filter.filterRequest(self.request()))
        self.assertIsInstance(response, Response)
        self.assertEqual(response.head.status, 407)
        self.assertEqual(
            response.head.headers.get(b"proxy-authenticate"),
            b'Basic realm="Test Realm", charset="UTF-8"',
        )
        self.assertTrue(response.reason)
        self.assertEqual(self.filter.failures.count("192.0.2.1"), 0)

    def test_accepts(self) -> None:
        """
        Right credentials (bcrypt, SHA-crypt, APR1 with a UTF-8 user name)
        forward the request with C{request.user} set.
        """
        for user, password in [
            ("alice", "secret"),
            ("bob", "Hello world!"),
            ("jörg", "password"),
        ]:
            request = self.request(basic(user, password))
            self.assertIs(result(self.filter.filterRequest(request)), request)
            self.assertEqual(request.user, user)

    def test_cachedIsSynchronous(self) -> None:
        """
        Credentials checked recently are accepted without a L{Deferred}.
        """
        result(self.filter.filterRequest(self.request(basic("alice", "secret"))))
        request = self.request(basic("alice", "secret"))
        self.assertIs(self.filter.filterRequest(request), request)
        self.assertEqual(request.user, "alice")

    def test_tunnel(self) -> None:
        """
        CONNECT is allowed (C{None}) with right credentials and refused with
        407 otherwise.
        """
        request = self.request(basic("alice", "secret"), method=b"CONNECT")
        self.assertIsNone(result(self.filter.filterTunnel(request)))
        self.assertEqual(request.user, "alice")
        response = result(self.filter.filterTunnel(self.request(method=b"CONNECT")))
        self.assertEqual(response.head.status, 407)

    def test_wrongPasswordDelayed(self) -> None:
        """
        The n-th recent failure from a client is answered with 407 after
        C{n * failure_delay} seconds, at most C{max_delay}.
        """
        for n, delay in [(1, 1.0), (2, 2.0), (3, 3.0), (4, 4.0), (5, 4.0)]:
            d = self.filter.filterRequest(self.request(basic("alice", "wrong")))
            self.assertIsInstance(d, Deferred)
            self.clock.advance(delay - 0.01)
            self.assertNoResult(d)
            self.clock.advance(0.01)
            response = self.successResultOf(d)
            self.assertEqual(response.head.status, 407)
            self.assertIn(b"Basic", response.head.headers.get(b"proxy-authenticate"))
            self.assertEqual(self.filter.failures.count("192.0.2.1"), n)

    def test_noDelay(self) -> None:
        """
        With C{failure_delay = 0} failures are answered at once.
        """
        f = self.make(failure_delay=0)
        response = result(f.filterRequest(self.request(basic("alice", "wrong"))))
        self.assertEqual(response.head.status, 407)

    def test_unknownUser(self) -> None:
        """
        An unknown user name is a failure like a wrong password.
        """
        f = self.make(failure_delay=0)
        response = result(f.filterRequest(self.request(basic("mallory", "secret"))))
        self.assertEqual(response.head.status, 407)
        self.assertEqual(f.failures.count("192.0.2.1"), 1)

    def test_malformed(self) -> None:
        """
        Malformed Basic credentials count as a failure; another scheme is
        only asked for Basic.
        """
        f = self.make(failure_delay=0)
        for value in [b"Basic !!!", b"Basic " + base64.b64encode(b"no-colon")]:
            self.assertEqual(
                result(f.filterRequest(self.request(value))).head.status, 407
            )
        self.assertEqual(f.failures.count("192.0.2.1"), 2)
        self.assertEqual(
            result(f.filterRequest(self.request(b"Negotiate abc"))).head.status, 407
        )
        self.assertEqual(f.failures.count("192.0.2.1"), 2)

    def test_blockAfter(self) -> None:
        """
        From the C{block_after}-th failure on, a client gets 429 with
        Retry-After, even for the right password (no oracle), while other
        clients are unaffected.
        """
        f = self.make(failure_delay=0, block_after=3, forget_after=60)
        statuses = [
            result(f.filterRequest(self.request(basic("alice", "wrong")))).head.status
            for _ in range(3)
        ]
        self.assertEqual(statuses, [407, 407, 429])
        response = result(f.filterRequest(self.request(basic("alice", "secret"))))
        self.assertEqual(response.head.status, 429)
        self.assertEqual(response.head.headers.get(b"retry-after"), b"60")
        other = self.request(basic("alice", "secret"), client="192.0.2.2")
        self.assertIs(result(f.filterRequest(other)), other)

    def test_blockedEvenWhenCached(self) -> None:
        """
        A blocked client is refused before the cache is consulted, so
        credentials another user verified recently reveal nothing.
        """
        f = self.make(failure_delay=0, block_after=2)
        result(
            f.filterRequest(self.request(basic("alice", "secret"), client="192.0.2.9"))
        )
        for _ in range(2):
            result(f.filterRequest(self.request(basic("alice", "wrong"))))
        self.assertEqual(
            result(f.filterRequest(self.request(basic("alice", "secret")))).head.status,
            429,
        )

    def test_forgetAfter(self) -> None:
        """
        A client's failures are forgotten after C{forget_after} quiet
        seconds; attempts while blocked keep the block.
        """
        f = self.make(failure_delay=0, block_after=2, forget_after=100)
        for _ in range(2):
            result(f.filterRequest(self.request(basic("alice", "wrong"))))
        self.clock.advance(90)
        self.assertEqual(
            result(f.filterRequest(self.request(basic("alice", "secret")))).head.status,
            429,
        )
        self.clock.advance(90)
        self.assertEqual(
            result(f.filterRequest(self.request(basic("alice", "secret")))).head.status,
            429,
        )
        self.clock.advance(100)
        request = self.request(basic("alice", "secret"))
        self.assertIs(result(f.filterRequest(request)), request)

    def test_failureCounterBounded(self) -> None:
        """
        At most C{maxClients} addresses are tracked; the oldest go first.
        """
        counter = auth.FailureCounter(60, lambda: 0.0)
        counter.maxClients = 3
        for i in range(5):
            counter.record(f"192.0.2.{i}")
        self.assertEqual(len(counter), 3)
        self.assertEqual(counter.count("192.0.2.0"), 0)
        self.assertEqual(counter.count("192.0.2.4"), 1)

    def queue(self, f: auth.AuthFilter) -> list[tuple["Deferred[Any]", Any, Any]]:
        """
        Make C{f}'s slow checks wait, as in a busy thread pool, until
        L{finish}.

        @return: the waiting checks.
        """
        checks: list[tuple["Deferred[Any]", Any, Any]] = []

        def runSlow(function: Callable[..., Any], *args: Any) -> "Deferred[Any]":
            d: "Deferred[Any]" = Deferred()
            checks.append((d, function, args))
            return d

        f.checker.runSlow = runSlow
        return checks

    def finish(self, checks: list[tuple["Deferred[Any]", Any, Any]]) -> None:
        """
        Let the waiting checks end.
        """
        for d, function, args in checks:
            if not d.called:
                d.callback(function(*args))

    def test_parallelGuessesBounded(self) -> None:
        """
        A check counts against C{block_after} from the moment it starts:
        of many parallel guesses from one client at most C{block_after} are
        checked, the others get 503 (checks still running) without a check.
        """
        f = self.make(failure_delay=0, block_after=3)
        checks = self.queue(f)
        answers = [
            f.filterRequest(self.request(basic("alice", f"guess{i}")))
            for i in range(20)
        ]
        self.assertEqual(len(checks), 3)
        self.assertEqual(f.failures.count("192.0.2.1"), 3)
        for d in answers[:3]:
            self.assertNoResult(d)
        refused = [result(a) for a in answers[3:]]
        self.assertEqual({r.head.status for r in refused}, {503})
        self.assertEqual(refused[0].head.headers.get(b"retry-after"), b"1")
        self.finish(checks)
        self.assertEqual([result(a).head.status for a in answers[:3]], [407, 407, 429])
        response = result(f.filterRequest(self.request(basic("alice", "secret"))))
        self.assertEqual(response.head.status, 429)
        self.assertEqual(len(checks), 3)
        other = self.request(basic("alice", "secret"), client="192.0.2.2")
        f.filterRequest(other)
        self.assertEqual(len(checks), 4)

    def test_successTakenOff(self) -> None:
        """
        A running check counts like a failure until it succeeds; then it is
        taken off again.
        """
        f = self.make(failure_delay=0, block_after=2)
        checks = self.queue(f)
        first = self.request(basic("alice", "secret"))
        second = self.request(basic("bob", "Hello world!"))
        answers = [f.filterRequest(first), f.filterRequest(second)]
        self.assertEqual(f.failures.count("192.0.2.1"), 2)
        self.assertEqual(f.failures.running("192.0.2.1"), 2)
        self.finish(checks)
        self.assertEqual([result(a) for a in answers], [first, second])
        self.assertEqual((first.user, second.user), ("alice", "bob"))
        self.assertEqual(f.failures.count("192.0.2.1"), 0)
        self.assertEqual(f.checking, 0)

    def test_checksCapped(self) -> None:
        """
        At most C{max_checks} checks run at once over all clients; beyond
        that an attempt gets 503 without a check and without counting as a
        failure.  Credentials verified recently need no check and pass.
        """
        f = self.make(failure_delay=0, max_checks=2)
        result(f.filterRequest(self.request(basic("jörg", "password"))))
        checks = self.queue(f)
        pending = [
            f.filterRequest(self.request(basic("alice", password), client=client))
            for password, client in (("secret", "192.0.2.1"), ("guess", "192.0.2.2"))
        ]
        self.assertEqual(f.checking, 2)
        busy = result(
            f.filterRequest(self.request(basic("bob", "wrong"), client="192.0.2.3"))
        )
        self.assertEqual(busy.head.status, 503)
        self.assertEqual(busy.head.headers.get(b"retry-after"), b"1")
        self.assertNotIn(b"proxy-authenticate", busy.head.headers)
        self.assertEqual(len(checks), 2)
        self.assertEqual(f.failures.count("192.0.2.3"), 0)
        cached = self.request(basic("jörg", "password"), client="192.0.2.3")
        self.assertIs(f.filterRequest(cached), cached)
        self.finish(checks)
        self.assertEqual(f.checking, 0)
        self.assertIsInstance(result(pending[0]), RequestHead)
        self.assertEqual(result(pending[1]).head.status, 407)
        d = f.filterRequest(self.request(basic("bob", "wrong"), client="192.0.2.3"))
        self.assertEqual(len(checks), 3)
        self.finish(checks)
        self.assertEqual(result(d).head.status, 407)

    def test_sameCredentialsCheckedOnce(self) -> None:
        """
        Requests carrying the same credentials at the same time (a browser
        opening many connections at once) share one check: it alone counts
        as running, so none of them gets 503 however many there are (with
        each counting, the 21st got 503), and a wrong password shared that
        way is one failure, not many.
        """
        f = self.make(failure_delay=0, block_after=3, max_checks=2)
        checks = self.queue(f)
        pending = [
            f.filterRequest(self.request(basic("alice", "secret"))) for _ in range(30)
        ]
        self.assertEqual((len(checks), f.checking), (1, 1))
        self.finish(checks)
        self.assertEqual(f.checking, 0)
        for d in pending:
            self.assertIsInstance(result(d), RequestHead)
        wrong = [
            f.filterRequest(self.request(basic("alice", "guess"))) for _ in range(5)
        ]
        self.finish(checks)
        self.assertEqual(len(checks), 2)
        self.assertEqual([result(d).head.status for d in wrong], [407] * 5)
        self.assertEqual(f.failures.count("192.0.2.1"), 1)

    def test_delayCountsCheckTime(self) -> None:
        """
        The throttle delay runs from the attempt's arrival: a check that
        took 1.5 s does not add to a 4 s delay.
        """
        f = self.make(failure_delay=4, max_delay=4)
        checks = self.queue(f)
        d = f.filterRequest(self.request(basic("alice", "wrong")))
        self.clock.advance(1.5)
        self.finish(checks)
        self.clock.advance(2.49)
        self.assertNoResult(d)
        self.clock.advance(0.01)
        self.assertEqual(self.successResultOf(d).head.status, 407)

    def test_answersBeforeDeadline(self) -> None:
        """
        Given the filter deadline, the filter answers a little before it:
        a throttled failure at the latest then, and a check still running
        with 503.  That check stays counted until it really ends.
        """
        f = self.make(failure_delay=4.8, max_delay=4.8, deadline=5)
        self.assertEqual(f.answerWithin, 4.5)
        checks = self.queue(f)
        d = f.filterRequest(self.request(basic("alice", "wrong")))
        self.finish(checks)
        self.clock.advance(4.49)
        self.assertNoResult(d)
        self.clock.advance(0.01)
        self.assertEqual(self.successResultOf(d).head.status, 407)
        d = f.filterRequest(self.request(basic("alice", "wrong")))
        self.clock.advance(4.49)
        self.assertNoResult(d)
        self.clock.advance(0.01)
        self.assertEqual(self.successResultOf(d).head.status, 503)
        self.assertEqual(f.checking, 1)
        self.assertEqual(f.failures.running("192.0.2.1"), 1)
        self.finish(checks)
        self.assertEqual(f.checking, 0)
        self.assertEqual(f.failures.count("192.0.2.1"), 2)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_cancelledKeepsCounting(self) -> None:
        """
        When the chain gives up on an answer (its deadline cancels the
        L{Deferred}), the check still counts as running until it ends, and
        no timer is left behind.
        """
        f = self.make(failure_delay=1, deadline=5)
        checks = self.queue(f)
        d = f.filterRequest(self.request(basic("alice", "wrong")))
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(f.checking, 1)
        self.finish(checks)
        self.assertEqual(f.checking, 0)
        self.assertEqual(f.failures.count("192.0.2.1"), 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_parseBasic(self) -> None:
        """
        L{auth.parseBasic} decodes user and password (which may contain
        colons); the scheme is case-insensitive.
        """
        self.assertEqual(auth.parseBasic(basic("u", "p:w")), (b"u", b"p:w"))
        self.assertEqual(
            auth.parseBasic(b"bAsIc " + base64.b64encode(b"u:")), (b"u", b"")
        )
        self.assertIsNone(auth.parseBasic(b"Bearer abc"))
        self.assertIsNone(auth.parseBasic(b"Basic dTpw=garbage"))


class ConfigTests(SynchronousTestCase):
    """
    L{auth.makeFilter} validates its table.
    """

    def setUp(self) -> None:
        self.path = self.mktemp()
        with open(self.path, "wb") as f:
            f.write(b"alice:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n")

    def assertRejected(self, config: dict[str, Any], key: str) -> None:
        with self.assertRaises(ValueError) as e:
            auth.makeFilter(config)
        self.assertIn(key, str(e.exception))

    def test_defaults(self) -> None:
        """
        Only C{htpasswd} is required; the defaults are those documented.
        """
        f = auth.makeFilter({"htpasswd": self.path})
        self.assertEqual(
            (f.realm, f.failureDelay, f.maxDelay, f.blockAfter),
            ("webproxy", 1.0, 4.0, 20),
        )
        self.assertEqual(f.failures.forgetAfter, 300.0)
        self.assertEqual(f.checker.cacheSeconds, 60.0)
        self.assertEqual((f.maxChecks, f.deadline, f.answerWithin), (32, None, None))

    def test_coreTable(self) -> None:
        """
        The table the core builds from C{[auth]} is accepted.
        """
        auth.makeFilter({"htpasswd": self.path, "realm": "r", "failure_delay": 0.5})

    def test_rejects(self) -> None:
        """
        Unknown keys and wrong types are rejected, naming the key.
        """
        self.assertRejected({}, "htpasswd")
        self.assertRejected({"htpasswd": 1}, "htpasswd")
        self.assertRejected({"htpasswd": self.path, "bogus": 1}, "bogus")
        self.assertRejected({"htpasswd": self.path, "realm": 'a"b'}, "realm")
        self.assertRejected(
            {"htpasswd": self.path, "failure_delay": -1}, "failure_delay"
        )
        self.assertRejected({"htpasswd": self.path, "max_delay": "1"}, "max_delay")
        self.assertRejected({"htpasswd": self.path, "block_after": 0}, "block_after")
        self.assertRejected({"htpasswd": self.path, "block_after": True}, "block_after")
        self.assertRejected({"htpasswd": self.path, "forget_after": 0}, "forget_after")
        self.assertRejected(
            {"htpasswd": self.path, "cache_seconds": None}, "cache_seconds"
        )
        self.assertRejected({"htpasswd": self.path + ".missing"}, "htpasswd")

    def test_deadline(self) -> None:
        """
        Given the filter deadline, a C{max_delay} set in the table must be
        below it (the message names both settings); the default one is cut
        to fit.
        """
        f = auth.makeFilter({"htpasswd": self.path, "deadline": 5, "max_delay": 4})
        self.assertEqual(f.deadline, 5.0)
        with self.assertRaises(ValueError) as e:
            auth.makeFilter({"htpasswd": self.path, "deadline": 5, "max_delay": 5})
        self.assertIn("max_delay", str(e.exception))
        self.assertIn("[filters] deadline", str(e.exception))
        self.assertRejected(
            {"htpasswd": self.path, "deadline": 4, "max_delay": 4}, "max_delay"
        )
        self.assertEqual(
            auth.makeFilter({"htpasswd": self.path, "deadline": 4}).maxDelay, 3.6
        )
        for bad in (0, -1, "5", True, float("nan")):
            self.assertRejected({"htpasswd": self.path, "deadline": bad}, "deadline")
        self.assertRejected({"htpasswd": self.path, "max_checks": 0}, "max_checks")
        self.assertRejected({"htpasswd": self.path, "max_checks": 1.5}, "max_checks")
        for key in ("max_delay", "failure_delay", "forget_after", "cache_seconds"):
            for bad in (float("nan"), float("inf"), 10**400):
                self.assertRejected({"htpasswd": self.path, key: bad}, key)

    def chainFilters(self, **overrides: Any) -> Any:
        settings = Settings(htpasswd=self.path, **overrides)
        return buildChainFilters(settings)

    def test_chainPassesDeadline(self) -> None:
        """
        The proxy builds the filter with C{[filters] deadline}, so a
        C{max_delay} that does not fit under it stops the start.
        """
        [_, enabled] = self.chainFilters(filterDeadline=2.5)
        self.assertEqual(enabled.filter.deadline, 2.5)
        # The default max_delay (4 s) is cut to fit.
        self.assertEqual(enabled.filter.maxDelay, 2.25)
        error = self.assertRaises(
            ConfigError,
            self.chainFilters,
            filterDeadline=3.0,
            filterTables={"auth": {"max_delay": 4.0}},
        )
        self.assertIn("max_delay", str(error))

    def test_cannotFailOpen(self) -> None:
        """
        C{[filter.auth] on_error = "pass"} (an error or a missed deadline
        would let a request through unauthenticated) is refused, as is a
        C{deadline} of its own; C{on_error = "fail"}, the default spelled
        out, is accepted.
        """
        [_, enabled] = self.chainFilters(filterTables={"auth": {"on_error": "fail"}})
        self.assertEqual(enabled.onError, "fail")
        for key, value in (("on_error", "pass"), ("on_error", "skip"), ("deadline", 9)):
            error = self.assertRaises(
                ConfigError, self.chainFilters, filterTables={"auth": {key: value}}
            )
            self.assertIn(f"[filter.auth] {key}", str(error))


class InMemoryTests(SynchronousTestCase):
    """
    The auth filter in a real proxy, through L{InMemoryProxy}.
    """

    def setUp(self) -> None:
        self.path = path = self.mktemp()
        with open(path, "wb") as f:
            f.write(b"alice:" + bcrypt.hashpw(b"secret", bcrypt.gensalt(4)) + b"\n")
        self.filter = auth.makeFilter(
            {"htpasswd": path, "failure_delay": 0}, runSlow=synchronously
        )
        self.proxy = InMemoryProxy([self.filter])
        self.filter.reactor = self.proxy.reactor

    def test_challenge(self) -> None:
        """
        A request without credentials gets 407 with Proxy-Authenticate and
        never reaches the origin.
        """
        response = self.proxy.get("http://example.com/")
        self.assertEqual(response.status, 407)
        self.assertEqual(
            response.headers.get(b"proxy-authenticate"),
            b'Basic realm="webproxy", charset="UTF-8"',
        )
        self.assertEqual(self.proxy.originRequests, [])

    def test_authenticated(self) -> None:
        """
        With the right credentials the request is forwarded, without
        Proxy-Authorization.
        """
        response = self.proxy.get(
            "http://example.com/",
            headers=[(b"Proxy-Authorization", basic("alice", "secret"))],
        )
        self.assertEqual(response.status, 200)
        [forwarded] = self.proxy.originRequests
        self.assertNotIn(b"proxy-authorization", forwarded.head.headers)

    def test_wrongPassword(self) -> None:
        """
        A wrong password gets 407.
        """
        response = self.proxy.get(
            "http://example.com/",
            headers=[(b"Proxy-Authorization", basic("alice", "nope"))],
        )
        self.assertEqual(response.status, 407)
        self.assertEqual(self.proxy.originRequests, [])

    def test_connectRefused(self) -> None:
        """
        CONNECT without credentials gets 407 and no upstream connection is
        made.
        """
        response = self.proxy.request(
            b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"
        )
        self.assertEqual(response.status, 407)
        self.assertIn(b"Basic", response.headers.get(b"proxy-authenticate"))
        self.assertEqual(self.proxy.connections, [])

    def test_connectAllowed(self) -> None:
        """
        CONNECT with the right credentials opens the tunnel.
        """
        # InMemoryProxy.request waits for a complete response, which a
        # tunnel's 200 is not; drive the connection by hand.
        protocol = self.proxy.factory.buildProtocol(None)
        transport = StringTransport(
            hostAddress=IPv4Address("TCP", "127.0.0.1", 3128),
            peerAddress=IPv4Address("TCP", "127.0.0.1", 50000),
        )
        protocol.makeConnection(transport)
        protocol.dataReceived(
            b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\nProxy-Authorization: "
            + basic("alice", "secret")
            + b"\r\n\r\n"
        )
        self.proxy.reactor.advance(0)
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 200 "))
        self.assertEqual(self.proxy.connections, [("example.com", 443)])

    def test_throttledWithinChainDeadline(self) -> None:
        """
        A throttled wrong guess whose check took 1.5 s still gets its 407
        within the chain's 5 s deadline with C{max_delay = 4} (not 500 at
        1.5 + 4 s).
        """
        f = auth.makeFilter({"htpasswd": self.path, "failure_delay": 4})
        proxy = InMemoryProxy([f])
        f.reactor = proxy.reactor

        def slowly(function: Callable[..., Any], *args: Any) -> "Deferred[Any]":
            return deferLater(proxy.reactor, 1.5, function, *args)

        f.checker.runSlow = slowly
        response = proxy.get(
            "http://example.com/",
            headers=[(b"Proxy-Authorization", basic("alice", "nope"))],
        )
        self.assertEqual(response.status, 407)
        self.assertEqual(proxy.originRequests, [])
