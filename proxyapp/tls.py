# -*- test-case-name: tests.test_tls -*-
"""
TLS towards origins: which certificate authorities the proxy trusts when
it connects to an C{https} origin itself (an absolute-form C{https://}
request; a CONNECT tunnel is the client's own TLS and never checked here).

By default that is the system's store, as OpenSSL finds it
(C{SSL_CERT_FILE} and C{SSL_CERT_DIR} name others).  C{[tls]
upstream_ca_file} adds the certificates of one PEM file to it, for origins
signed by a private authority, as Squid's C{tls_outgoing_options cafile=}
does: the public web keeps working while the internal one is trusted too.
"""

from __future__ import annotations

from typing import Any, Callable

import idna
from cryptography import x509
from OpenSSL import SSL, crypto
from service_identity import CertificateError, VerificationError
from service_identity.hazmat import DNS_ID, IPAddress_ID, verify_service_identity
from service_identity.pyopenssl import extract_patterns
from twisted.internet._sslverify import IOpenSSLTrustRoot
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.internet.ssl import CertificateOptions, platformTrust
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

__all__ = ["readAuthorities", "SystemAndExtraAuthorities", "OriginTLS"]

log = Logger()


def readAuthorities(path: str) -> tuple[crypto.X509, ...]:
    """
    Read every certificate of a PEM file (a bundle, as C{cat a.pem b.pem}
    makes it).

    @raise ValueError: with one line saying what is wrong with the file:
        unreadable, no certificate in it, or one that does not parse.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ValueError(f"cannot read {path!r}: {e.strerror}") from None
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise ValueError(f"{path!r} holds no PEM certificate")
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError as e:
        raise ValueError(
            f"{path!r} holds a certificate that is not valid: {e}"
        ) from None
    return tuple(crypto.X509.from_cryptography(c) for c in certificates)


@implementer(IOpenSSLTrustRoot)
class SystemAndExtraAuthorities:
    """
    The system's certificate authorities and some more.
    """

    def __init__(self, certificates: tuple[crypto.X509, ...]) -> None:
        self.certificates = certificates

    def _addCACertsToContext(self, context: Any) -> None:
        context.set_default_verify_paths()
        store = context.get_cert_store()
        for certificate in self.certificates:
            store.add_cert(certificate)


class OriginTLS:
    """
    TLS client connections to origins, all made from one OpenSSL context.

    Twisted's C{optionsForClientTLS} builds a context per call, and each
    context loads the trust store anew: with the system's bundle in a file
    (Debian's C{ca-certificates.crt}, or C{SSL_CERT_FILE}), 5-8 ms of the
    reactor's time per origin connection, and memory for as long as it
    lives (200 clients at once fetching an https origin: 0.71 s of proxy
    CPU and 61.5 MiB more RSS, against 0.19 s and 3.1 MiB here).  Here the
    store is loaded once; each connection gets its own server name
    (SNI) and its own check of the certificate against the name it was
    opened for (C{SSL_set_verify} per connection), so connections to
    different hosts never share anything but the trust.

    @ivar context: the shared C{OpenSSL.SSL.Context}.
    @ivar authorities: the certificates trusted besides the system's store.
    """

    def __init__(self, authorities: tuple[crypto.X509, ...] = ()) -> None:
        self.authorities = authorities
        trust = (
            SystemAndExtraAuthorities(authorities) if authorities else platformTrust()
        )
        self.context = CertificateOptions(trustRoot=trust).getContext()

    def creatorFor(self, host: str) -> "_OriginConnections":
        """
        @return: the connection creator for connections to C{host}, for
            L{twisted.internet.endpoints.wrapClientTLS}.

        @raise ValueError: (an L{idna.IDNAError}, or L{UnicodeError}) when
            no certificate could name C{host}.
        """
        return _OriginConnections(self.context, host)


@implementer(IOpenSSLClientConnectionCreator)
class _OriginConnections:
    """
    Makes the TLS connections to one host (as Twisted's C{ClientTLSOptions}
    does, on a shared context).
    """

    def __init__(self, context: SSL.Context, host: str) -> None:
        self.context = context
        self.serverName: bytes | None
        self.identity: Any
        if isIPAddress(host) or isIPv6Address(host):
            # No server name for an address (RFC 6066 section 3).
            self.serverName = None
            self.identity = IPAddress_ID(host)
        else:
            # A fully qualified name's final dot is not part of the name a
            # certificate gives, nor allowed in SNI (RFC 6066 section 3);
            # curl and browsers drop it the same way.
            if host.endswith(".") and not host.endswith(".."):
                host = host[:-1]
            self.serverName = idna.encode(host)
            self.identity = DNS_ID(self.serverName.decode("ascii"))

    def clientConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        connection = SSL.Connection(self.context, None)
        connection.set_app_data(tlsProtocol)
        if self.serverName is not None:
            connection.set_tlsext_host_name(self.serverName)
        connection.set_verify(
            SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT,
            _identityCheck(self.identity),
        )
        return connection


def _identityCheck(identity: Any) -> Callable[..., bool]:
    """
    @return: a verify callback that adds to OpenSSL's check of the chain
        that the origin's own certificate names C{identity}.
    """

    def check(
        connection: SSL.Connection,
        certificate: crypto.X509,
        error: int,
        depth: int,
        ok: int,
    ) -> bool:
        if depth != 0:
            return bool(ok)
        try:
            verify_service_identity(extract_patterns(certificate), [identity], [])
        except (VerificationError, CertificateError) as e:
            # A name that does not match, or one the certificate gives
            # malformed (service_identity's CertificateError; Twisted's own
            # callback logs that one and goes on with OpenSSL's verdict,
            # accepting the certificate for any name).
            # Twisted's TLS protocol then reports this as the reason the
            # connection was lost (proxyapp.upstream.tlsFailure names it).
            # Without the traceback, whose frames hold the connection: the
            # protocol keeps this failure, and the cycle would keep every
            # refused connection until the garbage collector's next pass.
            e.__traceback__ = None
            connection.get_app_data().failVerification(Failure(e))
            return False
        except Exception:
            # An exception must not escape into OpenSSL: fail closed.
            log.failure("checking the certificate of {identity}", identity=identity)
            return False
        return bool(ok)

    return check
