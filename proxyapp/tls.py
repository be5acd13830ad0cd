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

from typing import Any

from cryptography import x509
from OpenSSL import crypto
from twisted.internet._sslverify import IOpenSSLTrustRoot
from twisted.internet.ssl import optionsForClientTLS
from zope.interface import implementer

__all__ = ["readAuthorities", "SystemAndExtraAuthorities", "clientOptions"]


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


def clientOptions(host: str, authorities: tuple[crypto.X509, ...] = ()) -> Any:
    """
    The TLS client options for a connection to C{host}: its certificate
    must be valid for that name and chain up to an authority of the
    system's store or of C{authorities}.

    @raise ValueError: (or L{UnicodeError}) when no certificate could
        name C{host}.
    """
    if not authorities:
        return optionsForClientTLS(host)
    return optionsForClientTLS(host, trustRoot=SystemAndExtraAuthorities(authorities))
