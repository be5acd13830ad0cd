# -*- test-case-name: tests.test_tls -*-
"""
Tests for L{proxyapp.tls}: reading C{[tls] upstream_ca_file} and the trust
it adds to the system's store, checked with real TLS handshakes in memory.
"""

from __future__ import annotations

import os
from typing import Any

from cryptography.x509.oid import NameOID
from OpenSSL import SSL
from twisted.internet._sslverify import IOpenSSLTrustRoot
from twisted.internet.interfaces import IHandshakeListener, IOpenSSLContextFactory
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.protocols.loopback import loopbackAsync
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from proxyapp.config import Settings
from proxyapp.protocol import ProxyFactory
from proxyapp.tls import OriginTLS, SystemAndExtraAuthorities, readAuthorities
from tests import temporaryDirectory
from tests.certificates import certificatePEM, keyPEM, makeCertificate


@implementer(IHandshakeListener)
class _Client(Protocol):
    """
    The proxy's side of a connection to an origin: it closes once the
    handshake is done, and keeps why its connection ended.
    """

    handshakeDone = False
    reason: Any = None

    def handshakeCompleted(self) -> None:
        self.handshakeDone = True
        self.transport.loseConnection()

    def connectionLost(self, reason: Any = None) -> None:
        self.reason = reason


def _commonName(certificate: Any) -> str:
    return certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


@implementer(IOpenSSLContextFactory)
class _ServerContext:
    """
    An origin's TLS context, from files (Twisted's own server options pass
    pyOpenSSL objects, which pyOpenSSL now warns about).
    """

    def __init__(self, certificate: str, key: str) -> None:
        self.certificate = certificate
        self.key = key

    def getContext(self) -> SSL.Context:
        context = SSL.Context(SSL.TLS_METHOD)
        context.use_certificate_chain_file(self.certificate)
        context.use_privatekey_file(self.key)
        return context


class HandshakeTests(SynchronousTestCase):
    """
    L{OriginTLS} checks an origin's certificate against the system's
    store plus the extra authorities.
    """

    def setUp(self) -> None:
        self.directory = temporaryDirectory(self)
        self.origin = self.makeOrigin("origin")
        self.other = self.makeOrigin("other")
        # A system store that holds only C{other}'s certificate.
        self.patchEnvironment("SSL_CERT_FILE", self.other[0])
        self.patchEnvironment("SSL_CERT_DIR", self.directory)

    def patchEnvironment(self, name: str, value: str) -> None:
        old = os.environ.get(name)
        os.environ[name] = value
        if old is None:
            self.addCleanup(os.environ.pop, name, None)
        else:
            self.addCleanup(os.environ.__setitem__, name, old)

    def writeServer(self, name: str, key: Any, chain: list) -> _ServerContext:
        """
        @return: a server context for C{key} sending the certificates of
            C{chain} (its own first).
        """
        path = os.path.join(self.directory, f"{name}.pem")
        with open(path, "wb") as f:
            f.write(b"".join(certificatePEM(c) for c in chain))
        keyPath = os.path.join(self.directory, f"{name}.key")
        with open(keyPath, "wb") as f:
            f.write(keyPEM(key))
        return _ServerContext(path, keyPath)

    def makeOrigin(self, name: str, host: str = "localhost") -> tuple[str, Any]:
        """
        @return: the path of a self-signed certificate for C{host} (an
            authority of its own) and a server context using it.
        """
        key, certificate = makeCertificate(name, altNames=(host,), authority=True)
        server = self.writeServer(name, key, [certificate])
        return server.certificate, server

    def connect(
        self, serverOptions: Any, authorities: tuple = (), creator: Any = None
    ) -> _Client:
        """
        Connect in memory to a TLS server using C{serverOptions} as the
        proxy would to an origin called localhost (or with C{creator}).

        @return: the client side, once the connection has ended.
        """
        if creator is None:
            creator = OriginTLS(authorities).creatorFor("localhost")
        client = _Client()
        clientSide = TLSMemoryBIOFactory(
            creator, True, Factory.forProtocol(lambda: client)
        ).buildProtocol(None)
        serverSide = TLSMemoryBIOFactory(
            serverOptions, False, Factory.forProtocol(Protocol)
        ).buildProtocol(None)
        done = loopbackAsync(serverSide, clientSide)
        self.successResultOf(done)
        self.assertIsNotNone(client.reason)
        return client

    def assertAccepted(self, client: _Client) -> None:
        self.assertTrue(client.handshakeDone, client.reason)

    def assertRefused(self, client: _Client, why: str) -> None:
        self.assertFalse(client.handshakeDone)
        self.assertIn(why, str(client.reason.value))

    def test_systemStore(self) -> None:
        """
        Without extra authorities, an origin the system's store vouches for
        is accepted and one it does not know is refused.
        """
        self.assertAccepted(self.connect(self.other[1]))
        self.assertRefused(self.connect(self.origin[1]), "certificate verify failed")

    def test_extraAuthorities(self) -> None:
        """
        With C{upstream_ca_file}'s certificates, both are accepted: the
        system's store still counts.
        """
        authorities = readAuthorities(self.origin[0])
        self.assertAccepted(self.connect(self.origin[1], authorities))
        self.assertAccepted(self.connect(self.other[1], authorities))

    def test_hostStillChecked(self) -> None:
        """
        A trusted authority's certificate for another name is still
        refused.
        """
        path, options = self.makeOrigin("elsewhere", "elsewhere.example")
        self.assertRefused(self.connect(options, readAuthorities(path)), "DNSMismatch")

    def makeAuthority(self, name: str, issuer: Any = None) -> tuple[Any, Any]:
        """
        @return: the key and certificate of a certificate authority, signed
            by C{issuer} (a C{(key, certificate)}) or by itself.
        """
        if issuer is None:
            return makeCertificate(name, authority=True)
        return makeCertificate(
            name, issuerName=_commonName(issuer[1]), issuerKey=issuer[0], authority=True
        )

    def trust(self, *certificates: Any) -> tuple:
        path = os.path.join(self.directory, "trusted.pem")
        with open(path, "wb") as f:
            f.write(b"".join(certificatePEM(c) for c in certificates))
        return readAuthorities(path)

    def test_issuedByTrustedAuthority(self) -> None:
        """
        A certificate an extra authority issued is accepted for the names
        it gives, and refused for another.
        """
        authority = self.makeAuthority("internal CA")
        key, leaf = makeCertificate(
            "leaf", "internal CA", altNames=("localhost",), issuerKey=authority[0]
        )
        server = self.writeServer("leaf", key, [leaf])
        tls = OriginTLS(self.trust(authority[1]))
        self.assertAccepted(self.connect(server, creator=tls.creatorFor("localhost")))
        self.assertRefused(
            self.connect(server, creator=tls.creatorFor("other.example")), "DNSMismatch"
        )

    def test_chainThroughIntermediate(self) -> None:
        """
        The chain above the origin's certificate is checked too: through an
        intermediate the origin sends, to a trusted root it is accepted; to
        an untrusted one it is refused, though the certificate names the
        host (a check of the host name alone would pass it).
        """
        root = self.makeAuthority("root CA")
        intermediate = self.makeAuthority("intermediate CA", root)
        key, leaf = makeCertificate(
            "leaf",
            "intermediate CA",
            altNames=("localhost",),
            issuerKey=intermediate[0],
        )
        server = self.writeServer("leaf", key, [leaf, intermediate[1]])
        self.assertAccepted(self.connect(server, self.trust(root[1])))
        unrelated = self.makeAuthority("unrelated CA")
        self.assertRefused(
            self.connect(server, self.trust(unrelated[1])), "certificate verify failed"
        )
        self.assertRefused(self.connect(server), "certificate verify failed")

    def test_expired(self) -> None:
        """
        An expired certificate from a trusted authority is refused.
        """
        authority = self.makeAuthority("internal CA")
        key, leaf = makeCertificate(
            "leaf",
            "internal CA",
            notBefore=-3,
            notAfter=-1,
            altNames=("localhost",),
            issuerKey=authority[0],
        )
        server = self.writeServer("expired", key, [leaf])
        self.assertRefused(
            self.connect(server, self.trust(authority[1])), "certificate verify failed"
        )

    def test_malformedName(self) -> None:
        """
        A certificate from a trusted authority that gives a malformed name
        (which service_identity refuses to read) is refused, whatever else
        it names, and without a traceback in the log.  Twisted's own check
        logs the error and accepts such a certificate for any host.
        """
        authority = self.makeAuthority("internal CA")
        key, leaf = makeCertificate(
            "leaf",
            "internal CA",
            altNames=("localhost", "*.*.example"),
            issuerKey=authority[0],
        )
        server = self.writeServer("malformed", key, [leaf])
        client = self.connect(server, self.trust(authority[1]))
        self.assertRefused(client, "too many wildcards")
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_refusalKeepsNoTraceback(self) -> None:
        """
        The failure a wrong name reports holds no traceback: its frames
        hold the connection, which holds the protocol that keeps the
        failure, a cycle that kept every refused connection alive until the
        garbage collector's next pass.
        """
        path, options = self.makeOrigin("elsewhere", "elsewhere.example")
        client = self.connect(options, readAuthorities(path))
        self.assertRefused(client, "DNSMismatch")
        self.assertIsNone(client.reason.tb)
        self.assertIsNone(client.reason.value.__traceback__)

    def test_oneContext(self) -> None:
        """
        Every connection is made from one context, whose trust store is
        loaded once (a context per connection took 5-8 ms and 0.87 MiB with
        the system's bundle).
        """
        loads = []
        addCertificates = SystemAndExtraAuthorities._addCACertsToContext
        self.patch(
            SystemAndExtraAuthorities,
            "_addCACertsToContext",
            lambda trust, context: (
                loads.append(context),
                addCertificates(trust, context),
            ),
        )
        tls = OriginTLS(readAuthorities(self.origin[0]))
        for _ in range(3):
            self.assertAccepted(
                self.connect(self.origin[1], creator=tls.creatorFor("localhost"))
            )
        self.assertEqual(loads, [tls.context])

    def test_namesNotMixed(self) -> None:
        """
        Connections to different hosts from one context are each checked
        against their own host name, whatever order their creators were
        made in (a check set on the shared context, as Twisted's
        C{ClientTLSOptions} of 24.x set its info callback on the context it
        was given, would take the last one made for all).
        """
        tls = OriginTLS(readAuthorities(self.origin[0]))
        right = tls.creatorFor("localhost")
        wrong = tls.creatorFor("elsewhere.example")
        self.assertAccepted(self.connect(self.origin[1], creator=right))
        self.assertRefused(self.connect(self.origin[1], creator=wrong), "DNSMismatch")
        self.assertAccepted(self.connect(self.origin[1], creator=right))

    def test_address(self) -> None:
        """
        An origin named by its address is checked against the certificate's
        IP addresses, and gets no server name (SNI takes names only).
        """
        path, options = self.makeOrigin("address", "127.0.0.1")
        tls = OriginTLS(readAuthorities(path))
        creator = tls.creatorFor("127.0.0.1")
        self.assertIsNone(creator.serverName)
        self.assertAccepted(self.connect(options, creator=creator))
        self.assertRefused(
            self.connect(options, creator=tls.creatorFor("127.0.0.2")),
            "IPAddressMismatch",
        )

    def test_trailingDot(self) -> None:
        """
        A fully qualified name (C{localhost.}) is checked and sent as SNI
        without its final dot (it was refused as a name mismatch).
        """
        tls = OriginTLS(readAuthorities(self.origin[0]))
        creator = tls.creatorFor("localhost.")
        self.assertEqual(creator.serverName, b"localhost")
        self.assertAccepted(self.connect(self.origin[1], creator=creator))
        self.assertRaises(ValueError, tls.creatorFor, "localhost..")

    def test_unnamable(self) -> None:
        """
        A host no certificate could name is refused before connecting.
        """
        tls = OriginTLS()
        self.assertRaises(ValueError, tls.creatorFor, "under_score.example")
        self.assertRaises(UnicodeError, tls.creatorFor, "a..b")

    def test_trustRoot(self) -> None:
        """
        The trust root provides Twisted's (private) interface, which
        C{CertificateOptions} adapts it to: a Twisted upgrade that changes
        it fails here.
        """
        self.assertTrue(verifyObject(IOpenSSLTrustRoot, SystemAndExtraAuthorities(())))


class ReadTests(SynchronousTestCase):
    """
    L{readAuthorities} reads a PEM bundle or says in one line what is wrong
    with it.
    """

    def setUp(self) -> None:
        self.directory = temporaryDirectory(self)

    def write(self, data: bytes) -> str:
        path = os.path.join(self.directory, "ca.pem")
        with open(path, "wb") as f:
            f.write(data)
        return path

    def test_bundle(self) -> None:
        """
        Every certificate of a bundle is read, in order; text around them
        (as in the system's bundles) is ignored.
        """
        names = ["first", "second"]
        pems = [certificatePEM(makeCertificate(name)[1]) for name in names]
        path = self.write(b"# a comment\n" + pems[0] + b"between\n" + pems[1])
        read = readAuthorities(path)
        self.assertEqual(
            [c.to_cryptography().subject.rfc4514_string() for c in read],
            ["CN=first", "CN=second"],
        )

    def test_missing(self) -> None:
        path = os.path.join(self.directory, "nosuch.pem")
        error = self.assertRaises(ValueError, readAuthorities, path)
        self.assertEqual(str(error), f"cannot read {path!r}: No such file or directory")

    def test_noCertificate(self) -> None:
        """
        A file without a certificate (a key, say, or an empty file) is
        refused: trusting nothing more is not what the setting asked for.
        """
        path = self.write(keyPEM(makeCertificate()[0]))
        error = self.assertRaises(ValueError, readAuthorities, path)
        self.assertEqual(str(error), f"{path!r} holds no PEM certificate")

    def test_damaged(self) -> None:
        pem = certificatePEM(makeCertificate()[1])
        path = self.write(pem[:40] + b"!!" + pem[42:])
        error = self.assertRaises(ValueError, readAuthorities, path)
        self.assertTrue(
            str(error).startswith(f"{path!r} holds a certificate that is not valid"),
            str(error),
        )


class PoolTests(SynchronousTestCase):
    """
    The upstream pool makes its L{OriginTLS} at the first https connection
    and anew after a reload.
    """

    def test_reloadTakesNewTrust(self) -> None:
        directory = temporaryDirectory(self)
        path = os.path.join(directory, "ca.pem")
        with open(path, "wb") as f:
            f.write(certificatePEM(makeCertificate("internal CA")[1]))
        factory = ProxyFactory(MemoryReactorClock(), Settings())
        pool = factory.pool
        first = pool._originTLS()
        self.assertIs(pool._originTLS(), first)
        settings = Settings(
            upstreamCaFile=path, upstreamAuthorities=readAuthorities(path)
        )
        factory.reconfigure(settings, None)
        second = pool._originTLS()
        self.assertIsNot(second, first)
        self.assertEqual(first.authorities, ())
        self.assertEqual(second.authorities, settings.upstreamAuthorities)
