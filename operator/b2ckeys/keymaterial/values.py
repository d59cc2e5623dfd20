"""What the entry points return: public facts about certificates, and a leaf with its key."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, NoReturn

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

Use = Literal["sig", "enc"]


@dataclass(frozen=True)
class CertificateInfo:
    """Public facts about one certificate, in the forms Graph uses."""

    der_b64: str  # standard base64 of the DER: what uploadCertificate takes and x5c holds
    x5t: str  # base64url SHA-1 of the DER, unpadded, as Graph reports it
    x5t_s256: str  # base64url SHA-256 of the DER, unpadded
    not_before: int  # NumericDate (seconds since the epoch, UTC)
    not_after: int
    subject: str  # RFC 4514
    issuer: str
    serial: str  # lowercase hex
    key_size: int  # bits of the certificate's public key


@dataclass(frozen=True)
class CertificateWithKey:
    """A leaf certificate, its chain and its RSA private key. The repr never shows the key.

    `chain` starts with the leaf and then lists each issuer in order, as far as the input
    (including ca.crt) allows.
    """

    leaf: CertificateInfo
    chain: tuple[CertificateInfo, ...]
    _private_key: rsa.RSAPrivateKey = field(repr=False, compare=False)
    _certificates: tuple[x509.Certificate, ...] = field(repr=False, compare=False)

    def __repr__(self) -> str:
        return (
            f"CertificateWithKey(leaf_x5t={self.leaf.x5t!r}, subject={self.leaf.subject!r}, "
            f"chain_length={len(self.chain)}, private_key=<redacted RSA {self.leaf.key_size}>)"
        )

    def __reduce__(self) -> NoReturn:
        raise TypeError("CertificateWithKey holds a private key and must not be pickled or copied")
