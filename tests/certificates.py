"""
Test certificates, made on the spot with C{cryptography}.
"""

from __future__ import annotations

import datetime
import ipaddress
from typing import Any, Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def makeCertificate(
    commonName: str = "localhost",
    issuerName: str | None = None,
    notBefore: int = -1,
    notAfter: int = 2,
    altNames: Sequence[str] = (),
    authority: bool = False,
    issuerKey: Any = None,
) -> tuple[Any, x509.Certificate]:
    """
    Make a key and a certificate for it, signed by that same key or by
    C{issuerKey}.

    @param issuerName: the issuer's common name; C{None} for
        C{commonName} (a self-signed certificate).
    @param notBefore: days from now the certificate becomes valid.
    @param notAfter: days from now it expires.
    @param altNames: subject alternative names: IP addresses or DNS names.
    @param authority: whether it is marked as a certificate authority.
    @param issuerKey: the key of the issuer (named by C{issuerName}) that
        signs the certificate; C{None} for its own key.
    @return: C{(key, certificate)}.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, commonName)])
    issuer = (
        subject
        if issuerName is None
        else x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuerName)])
    )
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + datetime.timedelta(days=notBefore))
        .not_valid_after(now + datetime.timedelta(days=notAfter))
    )
    if altNames:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([_altName(name) for name in altNames]),
            critical=False,
        )
    if authority:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=True, path_length=None), critical=True
        )
    return key, builder.sign(issuerKey or key, hashes.SHA256())


def _altName(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def keyPEM(key: Any) -> bytes:
    """
    @return: C{key} in PEM, unencrypted.
    """
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def certificatePEM(certificate: x509.Certificate) -> bytes:
    """
    @return: C{certificate} in PEM.
    """
    return certificate.public_bytes(serialization.Encoding.PEM)
