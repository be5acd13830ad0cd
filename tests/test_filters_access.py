# -*- test-case-name: tests.test_filters_access -*-
"""
Tests for L{proxyapp.filters.access}: the client allow list, the blocked
domains with their normalisation, block list files, and the filter's
answers on HTTP and CONNECT through L{proxyapp.testing.InMemoryProxy}.
"""

from __future__ import annotations

import time
from typing import Any

from twisted.logger import Logger, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from proxyapp.filters import access
from proxyapp.filters.access import ClientPolicy, DomainSet, normaliseHost
from proxyapp.interfaces import IRequestFilter, ITunnelFilter
from proxyapp.message import Response
from proxyapp.testing import InMemoryProxy, makeRequestHead, verifyFilter


class ClientPolicyTests(SynchronousTestCase):
    """
    L{ClientPolicy} decides which client addresses may use the proxy.
    """

    def test_defaultIsPrivate(self) -> None:
        """
        The default allows loopback and the private ranges, IPv4 and IPv6,
        and nothing public.
        """
        policy = ClientPolicy(access.DEFAULT_ALLOWED)
        for address in [
            "127.0.0.1",
            "127.9.9.9",
            "::1",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "fd12::1",
            "fe80::1",
        ]:
            self.assertTrue(policy.allows(address), address)
        for address in [
            "8.8.8.8",
            "172.32.0.1",
            "192.169.0.1",
            "2001:db8::1",
            "11.0.0.1",
        ]:
            self.assertFalse(policy.allows(address), address)

    def test_patterns(self) -> None:
        """
        fnmatch patterns, CIDR blocks and single addresses, IPv4 and IPv6.
        """
        policy = ClientPolicy(
            ["127.0.0.1", "192.168.*", "10.0.0.0/8", "fd00::/8", "2001:db8::7"]
        )
        for address in [
            "127.0.0.1",
            "192.168.44.1",
            "10.200.0.1",
            "fd00::1",
            "2001:db8::7",
        ]:
            self.assertTrue(policy.allows(address), address)
        for address in [
            "127.0.0.2",
            "192.169.0.1",
            "11.0.0.1",
            "fe00::1",
            "2001:db8::8",
            "garbage",
        ]:
            self.assertFalse(policy.allows(address), address)

    def test_ipv4Mapped(self) -> None:
        """
        IPv4-mapped IPv6 addresses match as their IPv4 form, for CIDR blocks
        and patterns alike.
        """
        policy = ClientPolicy(["10.0.0.0/8", "192.168.*"])
        self.assertTrue(policy.allows("::ffff:10.1.2.3"))
        self.assertTrue(policy.allows("::ffff:192.168.0.9"))
        self.assertFalse(policy.allows("::ffff:8.8.8.8"))

    def test_ipv4MappedEntries(self) -> None:
        """
        Entries written in IPv4-mapped form (address, block or pattern)
        match the clients they name, which are matched as IPv4.
        """
        policy = ClientPolicy(
            ["::ffff:10.1.2.3", "::FFFF:172.16.0.0/108", "::ffff:192.168.*"]
        )
        for address in [
            "10.1.2.3",
            "::ffff:10.1.2.3",
            "172.16.9.9",
            "::ffff:172.16.9.9",
            "192.168.7.7",
            "::ffff:192.168.7.7",
        ]:
            self.assertTrue(policy.allows(address), address)
        for address in ["10.1.2.4", "172.32.0.1", "::ffff:8.8.8.8", "::1"]:
            self.assertFalse(policy.allows(address), address)

    def test_everyone(self) -> None:
        """
        C{"*"} allows every address.
        """
        self.assertTrue(ClientPolicy(["*"]).allows("203.0.113.5"))

    def test_invalid(self) -> None:
        """
        A pattern that is neither an address, a block nor a wildcard is a
        configuration error naming it.
        """
        with self.assertRaises(ValueError) as e:
            ClientPolicy(["localhost"])
        self.assertIn("localhost", str(e.exception))


class CountingSet(set):  # type: ignore[type-arg]
    """
    A set that counts membership probes.
    """

    probes = 0

    def __contains__(self, item: object) -> bool:
        self.probes += 1
        return set.__contains__(self, item)


class DomainSetTests(SynchronousTestCase):
    """
    L{DomainSet} matches blocked domains and their subdomains, whatever
    form the host is written in.
    """

    def setUp(self) -> None:
        self.blocked = DomainSet()
        for domain in [
            "example.com",
            "bücher.example",
            "xn--fa-hia.de",
            "*.wild.test",
            ".dotted.test",
            "10.9.8.7",
            "2001:DB8::1",
        ]:
            self.blocked.add(domain)

    def test_domainAndSubdomains(self) -> None:
        """
        A domain blocks itself and every subdomain, and nothing that merely
        ends with the same letters.
        """
        self.assertEqual(self.blocked.match("example.com"), "example.com")
        self.assertEqual(self.blocked.match("a.b.example.com"), "example.com")
        self.assertIsNone(self.blocked.match("notexample.com"))
        self.assertIsNone(self.blocked.match("example.com.evil"))
        self.assertIsNone(self.blocked.match("com"))

    def test_normalised(self) -> None:
        """
        Case, trailing dots, a port, percent-encoding and brackets do not
        hide a blocked host.
        """
        for host in [
            "EXAMPLE.COM",
            "example.com.",
            "Example.Com..",
            "example.com:8080",
            "ex%61mple.com",
            "%65xample.com:80",
            "WWW.EXAMPLE.COM.",
        ]:
            self.assertEqual(self.blocked.match(host), "example.com", host)

    def test_idna(self) -> None:
        """
        A Unicode entry blocks its punycode form and the other way round.
        """
        self.assertEqual(
            self.blocked.match("xn--bcher-kva.example"), "xn--bcher-kva.example"
        )
        self.assertEqual(self.blocked.match("BÜCHER.example"), "xn--bcher-kva.example")
        self.assertEqual(
            self.blocked.match("www.bücher.example"), "xn--bcher-kva.example"
        )
        self.assertEqual(
            self.blocked.match("b%C3%BCcher.example"), "xn--bcher-kva.example"
        )

    def test_idnaBothMappings(self) -> None:
        """
        A Unicode entry is stored under the IDNA 2003 mapping (the one the
        request parser applies) and under UTS 46 / IDNA 2008, where they
        differ.
        """
        blocked = DomainSet()
        blocked.add("faß.de")
        self.assertEqual(blocked.match("fass.de"), "fass.de")
        self.assertEqual(blocked.match("xn--fa-hia.de"), "xn--fa-hia.de")
        self.assertEqual(self.blocked.match("faß.de"), None)

    def test_wildcardAndDot(self) -> None:
        """
        C{*.domain} and C{.domain} entries mean the domain with its
        subdomains.
        """
        self.assertEqual(self.blocked.match("wild.test"), "wild.test")
        self.assertEqual(self.blocked.match("a.dotted.test"), "dotted.test")

    def test_addresses(self) -> None:
        """
        Address entries match the address in any form the resolver takes,
        and an address has no parent domain.
        """
        for host in ["10.9.8.7", "168364039", "0xa.9.8.7", "10.9.2055"]:
            self.assertEqual(self.blocked.match(host), "10.9.8.7", host)
        self.assertEqual(self.blocked.match("2001:db8:0::1"), "2001:db8::1")
        self.assertEqual(self.blocked.match("[2001:db8::1]"), "2001:db8::1")
        self.assertIsNone(self.blocked.match("1password.com"))

    def test_ipv4InIPv6(self) -> None:
        """
        An IPv4 entry blocks the IPv6 literals that reach it: IPv4-mapped
        in either notation and the well-known NAT64 prefix; and an entry
        written in one of those forms blocks the IPv4 address.
        """
        for host in [
            "::ffff:10.9.8.7",
            "[::ffff:10.9.8.7]",
            "[::FFFF:a09:807]:80",
            "0:0:0:0:0:ffff:10.9.8.7",
            "64:ff9b::10.9.8.7",
            "[64:ff9b::a09:807]",
        ]:
            self.assertEqual(self.blocked.match(host), "10.9.8.7", host)
        self.assertIsNone(self.blocked.match("::ffff:10.9.8.8"))
        self.assertIsNone(self.blocked.match("::10.9.8.7"))
        blocked = DomainSet()
        blocked.add("[::ffff:192.0.2.1]")
        self.assertEqual(blocked.match("192.0.2.1"), "192.0.2.1")
        self.assertEqual(normaliseHost("::1"), "::1")
        self.assertEqual(normaliseHost("::ffff:7f00:1"), "127.0.0.1")

    def test_lookupCostsLabels(self) -> None:
        """
        A lookup probes the set once per label of the host, whatever the
        number of entries.
        """
        for size in (10, 100000):
            blocked = DomainSet()
            blocked._domains = CountingSet(f"d{i}.example" for i in range(size))
            blocked.match("a.b.c.d.e.example.org")
            self.assertEqual(blocked._domains.probes, 7)

    def test_normaliseHost(self) -> None:
        """
        L{normaliseHost} gives the stored form.
        """
        self.assertEqual(normaliseHost(" Example.COM.:443 "), "example.com")
        self.assertEqual(normaliseHost("[::1]:80"), "::1")
        self.assertEqual(normaliseHost("BÜCHER.example"), "xn--bcher-kva.example")
        self.assertEqual(normaliseHost("2130706433"), "127.0.0.1")


class DomainEntryTests(SynchronousTestCase):
    """
    L{DomainSet} refuses entries that no host could match, naming the
    setting and the entry, and keeps every form it documents.
    """

    def refused(self, entry: str) -> str:
        """
        @return: the message of the error C{blocked_domains = [entry]}
            stops the start with.
        """
        with self.assertRaises(ValueError) as e:
            access.makeFilter({"blocked_domains": [entry]})
        message = str(e.exception)
        self.assertTrue(
            message.startswith(f"blocked_domains: {entry!r} is not a domain name ("),
            message,
        )
        self.assertNotIn("\n", message)
        return message

    def test_url(self) -> None:
        """
        A URL, or a host with a path, is refused with the host to write
        instead (it used to be stored as written and match nothing).
        """
        self.assertIn(
            "give the host alone, e.g. 127.0.0.1",
            self.refused("http://127.0.0.1:18360/"),
        )
        # One colon: "//example.com/" used to be taken for a port.
        self.assertIn(
            "give the host alone, e.g. example.com",
            self.refused("http://example.com/"),
        )
        self.assertIn(
            "give the host alone, e.g. evil.example",
            self.refused("evil.example/path"),
        )
        self.assertIn("e.g. ::1", self.refused("https://[::1]:8443/admin?x=1"))
        self.assertTrue(self.refused("not a/host").endswith("(give the host alone)"))

    def test_everything(self) -> None:
        """
        C{*} is refused rather than dropped: a wildcard may only start a
        domain, and a proxy that blocks every host serves no purpose.
        """
        self.assertIn("*.example.com", self.refused("*"))
        for entry in ["*.", ".", "*x.example", "*.*.example", "**.example"]:
            self.refused(entry)

    def test_notAHostName(self) -> None:
        """
        Spaces and characters no host name has, empty or overlong labels,
        a port that is no number, a CIDR block and a name ending in a
        number that is no IPv4 address are refused.
        """
        for entry in [
            "not a domain!!",
            "exa mple.com",
            "a..example",
            "||ads.example^",
            "exa\u00a0mple.com",
            "a" * 64 + ".example",
            ".".join(["a" * 60] * 5),
            "exa\u3000mple.com",
            "a\x00b.example",
            "example.com:http",
            "[::1]x",
        ]:
            self.refused(entry)
        self.assertIn("CIDR block", self.refused("10.0.0.0/8"))
        self.assertIn("CIDR block", self.refused("fd00::/8"))
        self.assertIn("ends in a number", self.refused("10.0.0.256"))
        self.assertIn("ends in a number", self.refused("example.123"))

    def test_documentedForms(self) -> None:
        """
        Host names (with C{_}, a trailing dot, a port, any case,
        percent-encoding, a leading C{*.} or C{.}), Unicode names and IPv4
        and IPv6 addresses in any form the resolver takes are accepted.
        """
        blocked = DomainSet(
            [
                "Example.COM.",
                "*.wild.example",
                ".dotted.example",
                "_dmarc.mail.example",
                "x-1.example:8080",
                "ex%61mple.org",
                "bücher.example",
                "xn--fa-hia.de",
                "localhost",
                "10.9.8.7",
                "0x7f.1",
                "2130706433",
                "[2001:DB8::1]:443",
                "::ffff:192.0.2.1",
                "a" * 63 + ".example",
            ],
            "blocked_domains",
        )
        self.assertEqual(
            set(blocked._domains),
            {
                "example.com",
                "wild.example",
                "dotted.example",
                "_dmarc.mail.example",
                "x-1.example",
                "example.org",
                "xn--bcher-kva.example",
                "xn--fa-hia.de",
                "localhost",
                "10.9.8.7",
                "127.0.0.1",
                "2001:db8::1",
                "192.0.2.1",
                "a" * 63 + ".example",
            },
        )

    def test_file(self) -> None:
        """
        An impossible entry in a block list file is refused, naming the
        file, the line and the entry; in the plain and in the hosts
        format.
        """
        for line in ["http://ads.example/", "0.0.0.0 good.example ads.example/x"]:
            path = self.mktemp()
            with open(path, "w", encoding="utf-8") as f:
                f.write(f"# list\nfine.example\n{line}\n")
            with self.assertRaises(ValueError) as e:
                access.makeFilter({"blocked_domains_files": [path]})
            self.assertIn(f"blocked_domains_files: {path} line 3: ", str(e.exception))
            self.assertIn("is not a domain name (give the host alone", str(e.exception))
        path = self.mktemp()
        with open(path, "w", encoding="utf-8") as f:
            f.write("good.example\nexample.123\n")
        with self.assertRaises(ValueError) as e:
            DomainSet().loadFile(path)
        self.assertIn(f"{path} line 2: 'example.123'", str(e.exception))

    def test_otherUsers(self) -> None:
        """
        The other filters' domain lists built on L{DomainSet} refuse the
        same entries; rewrite's C{hosts} names its key and the entry.
        """
        from proxyapp.filters import rewrite

        with self.assertRaises(ValueError) as e:
            rewrite.makeFilter(
                {"search": "a", "replace": "b", "hosts": ["http://example.com/"]}
            )
        self.assertIn(
            "rewrite: hosts: 'http://example.com/' is not a domain name (give the"
            " host alone, e.g. example.com)",
            str(e.exception),
        )
        with self.assertRaises(ValueError):
            rewrite.makeFilter({"search": "a", "replace": "b", "hosts": ["*"]})


class BlockFileTests(SynchronousTestCase):
    """
    L{DomainSet.loadFile} reads plain and hosts-format lists.
    """

    def write(self, text: str) -> str:
        path = self.mktemp()
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path

    def test_formats(self) -> None:
        """
        One name per line or hosts-file lines (several names after the
        address); comments, C{localhost} and blank lines are skipped.
        """
        path = self.write(
            "# a list\n"
            "plain.example\n"
            "0.0.0.0 ads.example tracker.example  # inline comment\n"
            "127.0.0.1 localhost\n"
            "::1 ip6-localhost\n"
            "\n"
            "UPPER.Example.\n"
            "*.wild.example\n"
            "bücher.example\n"
        )
        blocked = DomainSet()
        self.assertEqual(blocked.loadFile(path), 6)
        for host in [
            "plain.example",
            "x.ads.example",
            "tracker.example",
            "upper.example",
            "a.wild.example",
            "xn--bcher-kva.example",
        ]:
            self.assertIsNotNone(blocked.match(host), host)
        self.assertIsNone(blocked.match("localhost"))

    def test_unreadable(self) -> None:
        """
        A file that cannot be read is a configuration error naming it.
        """
        path = self.mktemp()
        with self.assertRaises(ValueError) as e:
            access.makeFilter({"blocked_domains_files": [path]})
        self.assertIn(path, str(e.exception))

    def test_largeList(self) -> None:
        """
        A 100,000-entry hosts-format list loads in well under a second and
        a lookup costs a few microseconds.
        """
        path = self.write(
            "".join(f"0.0.0.0 host{i}.ads{i % 97}.example\n" for i in range(100000))
        )
        start = time.perf_counter()
        f = access.makeFilter({"blocked_domains_files": [path]})
        loaded = time.perf_counter() - start
        self.assertLess(loaded, 1.0)
        self.assertEqual(len(f.blocked), 100000)
        start = time.perf_counter()
        for i in range(10000):
            f.blocked.match(f"www.page{i}.site.example.org")
        perLookup = (time.perf_counter() - start) / 10000
        self.assertLess(perLookup, 50e-6)


class AccessFilterTests(SynchronousTestCase):
    """
    L{access.AccessFilter} called directly and in a proxy.
    """

    def setUp(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.patch(access, "log", Logger(observer=self.events.append))
        self.filter = access.makeFilter(
            {"allowed_clients": ["127.0.0.1"], "blocked_domains": ["blocked.example"]}
        )

    def test_interfaces(self) -> None:
        """
        The filter provides L{IRequestFilter} and L{ITunnelFilter}.
        """
        self.assertEqual(
            set(verifyFilter(self.filter)), {IRequestFilter, ITunnelFilter}
        )

    def test_clientRefused(self) -> None:
        """
        A client outside the allow list gets 403 with a short body, for
        HTTP and CONNECT, and the refusal is logged.
        """
        for method, target in [
            (b"GET", b"http://ok.example/"),
            (b"CONNECT", b"ok.example:443"),
        ]:
            request = makeRequestHead(method, target, client=("127.0.0.2", 40000))
            call = (
                self.filter.filterTunnel
                if method == b"CONNECT"
                else self.filter.filterRequest
            )
            response = call(request)
            self.assertIsInstance(response, Response)
            self.assertEqual(response.head.status, 403)
            self.assertLess(len(response.body), 1024)
            self.assertEqual(response.reason, "client not allowed")
        self.assertEqual(
            len([e for e in self.events if e.get("client") == "127.0.0.2"]), 2
        )

    def test_blocked(self) -> None:
        """
        A blocked domain gets 403 naming it, for HTTP and CONNECT.
        """
        response = self.filter.filterRequest(
            makeRequestHead(url=b"http://WWW.Blocked.Example./x")
        )
        self.assertEqual(response.head.status, 403)
        self.assertIn(b"blocked.example", response.body)
        response = self.filter.filterTunnel(
            makeRequestHead(b"CONNECT", b"blocked.example:443")
        )
        self.assertEqual(response.head.status, 403)

    def test_allowed(self) -> None:
        """
        An allowed client reaching an unblocked host passes: the head for
        HTTP, C{None} for CONNECT.
        """
        request = makeRequestHead()
        self.assertIs(self.filter.filterRequest(request), request)
        self.assertIsNone(
            self.filter.filterTunnel(makeRequestHead(b"CONNECT", b"example.com:443"))
        )

    def test_openWarns(self) -> None:
        """
        C{"*"} opens the proxy to everyone, with a warning at start.
        """
        access.makeFilter({"allowed_clients": ["*"]})
        self.assertTrue(
            any("open to every client" in e["log_format"] for e in self.events)
        )

    def test_everyAddressWarns(self) -> None:
        """
        A CIDR block of every address (C{0.0.0.0/0}, C{::/0}) opens the proxy
        as C{"*"} does, with the same warning, naming the pattern; a
        private block does not warn.
        """
        access.makeFilter({"allowed_clients": ["10.0.0.0/8"]})
        self.assertEqual(self.events, [])
        for pattern in ("0.0.0.0/0", "::/0"):
            access.makeFilter({"allowed_clients": ["10.0.0.0/8", pattern]})
            [event] = self.events
            self.assertIn("open to every client", formatEvent(event))
            self.assertIn(repr(pattern), formatEvent(event))
            del self.events[:]

    def test_config(self) -> None:
        """
        Unknown keys and wrong types are rejected, naming the key.
        """
        for config, key in [
            ({"bogus": []}, "bogus"),
            ({"allowed_clients": "127.0.0.1"}, "allowed_clients"),
            ({"blocked_domains": [1]}, "blocked_domains"),
            ({"blocked_domains_files": [""]}, "blocked_domains_files"),
        ]:
            with self.assertRaises(ValueError) as e:
                access.makeFilter(config)
            self.assertIn(key, str(e.exception))


class InMemoryTests(SynchronousTestCase):
    """
    The access filter in a real proxy.
    """

    def test_blockedNeverConnects(self) -> None:
        """
        Blocked hosts, however written, get 403 and the proxy opens no
        upstream connection.
        """
        proxy = InMemoryProxy(
            [
                access.makeFilter(
                    {"blocked_domains": ["blocked.example", "bücher.example"]}
                )
            ]
        )
        for url in [
            "http://blocked.example/",
            "http://BLOCKED.EXAMPLE./",
            "http://sub.blocked.example:8080/",
            "http://bl%6Fcked.example/",
            "http://xn--bcher-kva.example/",
        ]:
            self.assertEqual(proxy.get(url).status, 403, url)
        # Raw UTF-8 in the target is refused by the parser already.
        raw = "GET http://bücher.example/ HTTP/1.1\r\nHost: bücher.example\r\n\r\n".encode(
            "utf-8"
        )
        self.assertEqual(proxy.request(raw).status, 400)
        response = proxy.request(
            b"CONNECT Blocked.Example.:443 HTTP/1.1\r\nHost: blocked.example:443\r\n\r\n"
        )
        self.assertEqual(response.status, 403)
        self.assertEqual(proxy.connections, [])
        self.assertEqual(proxy.get("http://fine.example/").status, 200)

    def test_blockedMappedLiteral(self) -> None:
        """
        A blocked IPv4 address written as an IPv4-mapped IPv6 literal (which
        an IPv6 socket connects to as IPv4) gets 403 on HTTP and CONNECT.
        """
        proxy = InMemoryProxy([access.makeFilter({"blocked_domains": ["10.1.2.3"]})])
        for url in [
            "http://10.1.2.3/",
            "http://[::ffff:10.1.2.3]/",
            "http://[::ffff:a01:203]:8080/",
        ]:
            self.assertEqual(proxy.get(url).status, 403, url)
        for target in [b"[::ffff:10.1.2.3]:443", b"[::FFFF:A01:203]:443"]:
            response = proxy.request(
                b"CONNECT " + target + b" HTTP/1.1\r\nHost: " + target + b"\r\n\r\n"
            )
            self.assertEqual(response.status, 403, target)
        self.assertEqual(proxy.connections, [])

    def test_clientRefused(self) -> None:
        """
        A client outside the allow list gets 403 on HTTP and CONNECT; the
        proxy opens no connection for it.
        """
        proxy = InMemoryProxy(
            [access.makeFilter({"allowed_clients": ["127.0.0.1"]})],
            client=("127.0.0.2", 50000),
        )
        self.assertEqual(proxy.get("http://example.com/").status, 403)
        response = proxy.request(
            b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"
        )
        self.assertEqual(response.status, 403)
        self.assertEqual(proxy.connections, [])

    def test_defaultRefusesPublic(self) -> None:
        """
        With the default allow list a public client address is refused.
        """
        proxy = InMemoryProxy([access.makeFilter({})], client=("203.0.113.9", 50000))
        self.assertEqual(proxy.get("http://example.com/").status, 403)
        proxy = InMemoryProxy([access.makeFilter({})], client=("10.0.0.9", 50000))
        self.assertEqual(proxy.get("http://example.com/").status, 200)
