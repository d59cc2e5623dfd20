"""Certificates: parse PEM or DER, find the leaf, order its chain, and check the leaf for use.

`load_certificate` is the entry point for a public certificate (uploadCertificate); `with_key`
pairs a private key with its leaf for the TLS and PKCS#12 entry points.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NoReturn

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, rsa, x448
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import NameOID

from b2ckeys.formats import b64url, to_rfc3339
from b2ckeys.keymaterial.errors import attempt, fail, sized
from b2ckeys.keymaterial.keys import check_rsa_size, key_kind, unsupported_key
from b2ckeys.keymaterial.limits import MAX_CERTIFICATE_BYTES, MAX_CHAIN_CERTIFICATES
from b2ckeys.keymaterial.pem import PEM_BEGIN, is_private_key_label, pem_blocks
from b2ckeys.keymaterial.values import CertificateInfo, CertificateWithKey, Use


@dataclass(frozen=True)
class ParsedCertificate:
    """A certificate parsed once, eagerly, with what the checks below need of it."""

    cert: x509.Certificate
    info: CertificateInfo
    public_key: CertificatePublicKeyTypes
    key_usage: x509.KeyUsage | None
    self_issued: bool


def load_certificate(
    data: bytes,
    *,
    use: Use,
    now: int,
    allow_not_yet_valid: bool = False,
    field: str = "tls.crt",
) -> CertificateInfo:
    """Validate a public certificate for uploadCertificate (PEM or DER in).

    If the field holds a chain, the leaf (the one certificate that issued none of the others)
    is returned, and the rest must link to it.
    """
    sized(data, field, MAX_CERTIFICATE_BYTES)
    if not data or data.isspace():
        fail("Empty", field, f"The Secret key {field!r} is empty; put the certificate in it.")
    certs = certificates_in(data, field, MAX_CHAIN_CERTIFICATES)
    leaves = [c for c in certs if not any(_issued(other, c) for other in certs if other is not c)]
    if len(leaves) != 1:
        fail(
            "BrokenChain",
            field,
            f"The certificates in {field!r} do not form one chain (found {len(leaves)} leaves); "
            "keep only the certificate to upload and its issuers.",
        )
    leaf = leaves[0]
    _order_chain(leaf, certs, [], field)
    _check_public_key(leaf, field)
    _check_leaf(leaf, field, use=use, now=now, allow_not_yet_valid=allow_not_yet_valid)
    return leaf.info


# --- reading ---------------------------------------------------------------------------------


def certificates_in(data: bytes, field: str, limit: int) -> list[ParsedCertificate]:
    """The distinct certificates in a PEM or DER field, in input order."""
    if PEM_BEGIN in data:
        blocks = pem_blocks(data, field, limit)
        if any(is_private_key_label(b.label) for b in blocks):
            fail(
                "UnexpectedPrivateKey",
                field,
                f"The Secret key {field!r} holds a private key; it must hold only certificates "
                "(private keys belong in tls.key).",
            )
        ders = [(i, b.der) for i, b in enumerate(blocks) if b.label == b"CERTIFICATE"]
        if not ders:
            fail("Malformed", field, f"The Secret key {field!r} holds no PEM certificate.")
        broken = next((i for i, der in ders if der is None), None)
        if broken is not None:
            fail(
                "Malformed",
                field,
                f"PEM block #{broken + 1} in {field!r} is not valid base64.",
            )
        found = [(f"certificate in PEM block #{i + 1}", der or b"") for i, der in ders]
    else:
        if data.lstrip()[:1] != b"\x30":
            fail(
                "Malformed",
                field,
                f"The Secret key {field!r} holds neither a PEM nor a DER certificate.",
            )
        found = [("the DER certificate", data)]
    return distinct(parse_certificate(der, where, field) for where, der in found)


def distinct(certs: Iterable[ParsedCertificate]) -> list[ParsedCertificate]:
    """Drop repeats (some tools write the same certificate twice), keeping input order."""
    unique: dict[str, ParsedCertificate] = {}
    for cert in certs:
        unique.setdefault(cert.info.x5t_s256, cert)
    return list(unique.values())


def parse_certificate(der: bytes, where: str, field: str) -> ParsedCertificate:
    parsed = attempt(lambda: _read_certificate(der))
    if parsed is None:
        fail(
            "Malformed",
            field,
            f"The {where} in {field!r} is not a valid X.509 certificate.",
        )
    return parsed


def _read_certificate(der: bytes) -> ParsedCertificate:
    """Parse eagerly, so every lazily decoded part fails here, inside `attempt`."""
    cert = x509.load_der_x509_certificate(der)
    canonical = cert.public_bytes(serialization.Encoding.DER)
    public_key = cert.public_key()
    try:
        key_usage: x509.KeyUsage | None = cert.extensions.get_extension_for_class(
            x509.KeyUsage
        ).value
    except x509.ExtensionNotFound:
        key_usage = None
    info = CertificateInfo(
        der_b64=base64.b64encode(canonical).decode("ascii"),
        x5t=b64url(hashlib.sha1(canonical, usedforsecurity=False).digest()),
        x5t_s256=b64url(hashlib.sha256(canonical).digest()),
        not_before=int(cert.not_valid_before_utc.timestamp()),
        not_after=int(cert.not_valid_after_utc.timestamp()),
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        serial=format(cert.serial_number, "x"),
        key_size=_public_key_bits(public_key),
    )
    return ParsedCertificate(cert, info, public_key, key_usage, cert.subject == cert.issuer)


def _public_key_bits(key: CertificatePublicKeyTypes) -> int:
    if isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey | dsa.DSAPublicKey):
        return key.key_size
    if isinstance(key, ed448.Ed448PublicKey | x448.X448PublicKey):
        return 456
    return 256  # Ed25519 and X25519


# --- deciding ----------------------------------------------------------------------------------


def with_key(
    key: rsa.RSAPrivateKey,
    key_field: str,
    certs: Sequence[ParsedCertificate],
    cert_field: str,
    ca_certs: Sequence[ParsedCertificate],
    *,
    use: Use,
    now: int,
    allow_not_yet_valid: bool,
) -> CertificateWithKey:
    public = key.public_key().public_numbers()
    leaves = [
        c
        for c in certs
        if isinstance(c.public_key, rsa.RSAPublicKey) and c.public_key.public_numbers() == public
    ]
    if not leaves:
        fail(
            "KeyMismatch",
            key_field,
            f"The private key in {key_field!r} does not belong to any certificate in "
            f"{cert_field!r}; store the key and certificate that were issued together.",
        )
    if len(leaves) > 1:
        fail(
            "BrokenChain",
            cert_field,
            f"{cert_field!r} holds {len(leaves)} different certificates for the private key; "
            "keep only the current one.",
        )
    leaf = leaves[0]
    chain = _order_chain(leaf, certs, ca_certs, cert_field)
    _check_leaf(leaf, cert_field, use=use, now=now, allow_not_yet_valid=allow_not_yet_valid)
    return CertificateWithKey(
        leaf=leaf.info,
        chain=tuple(c.info for c in chain),
        _private_key=key,
        _certificates=tuple(c.cert for c in chain),
    )


def _issued(child: ParsedCertificate, issuer: ParsedCertificate) -> bool:
    """Whether `issuer` signed `child` (names match and the signature verifies)."""
    if child.cert.issuer != issuer.cert.subject:
        return False
    try:
        child.cert.verify_directly_issued_by(issuer.cert)
    except Exception:  # any failure means "not linked", whatever the library calls it
        return False
    return True


def _order_chain(
    leaf: ParsedCertificate,
    certs: Sequence[ParsedCertificate],
    ca_certs: Sequence[ParsedCertificate],
    field: str,
) -> list[ParsedCertificate]:
    """Leaf first, then each issuer. Every certificate of `field` must be on that path."""
    chain = [leaf]
    remaining = [c for c in certs if c is not leaf]
    top = leaf
    while not top.self_issued and (issuer := _find_issuer(top, remaining)) is not None:
        remaining.remove(issuer)
        chain.append(issuer)
        top = issuer
    if remaining:
        fail(
            "BrokenChain",
            field,
            f"{field!r} holds {len(remaining)} certificate(s) that are not on the leaf's issuer "
            "chain (wrong order is fine; unrelated or mis-signed certificates are not).",
        )
    spare = [c for c in ca_certs if all(c.info.x5t_s256 != k.info.x5t_s256 for k in chain)]
    while (
        not top.self_issued
        and len(chain) < MAX_CHAIN_CERTIFICATES
        and (issuer := _find_issuer(top, spare)) is not None
    ):
        spare.remove(issuer)
        chain.append(issuer)
        top = issuer
    return chain


def _find_issuer(
    child: ParsedCertificate, candidates: Sequence[ParsedCertificate]
) -> ParsedCertificate | None:
    return next((c for c in candidates if _issued(child, c)), None)


def _check_public_key(cert: ParsedCertificate, field: str) -> None:
    if not isinstance(cert.public_key, rsa.RSAPublicKey):
        unsupported_key(key_kind(cert.public_key), field)
    check_rsa_size(cert.public_key.key_size, field, "certificate key")


# cert-manager's `issue-temporary-certificate` placeholder is signed by a throwaway CA of this
# one name (pkg/util/pki/temporarycertificate.go), and the Secret gets it while the issuer cannot
# sign yet. It is a valid RSA certificate for the right key, but B2C never forgets a key: once
# uploaded it would stay in the key set for good, so it is waited out instead.
CERT_MANAGER_TEMPORARY_ISSUER = x509.Name(
    [x509.NameAttribute(NameOID.COMMON_NAME, "cert-manager.local")]
)


def _check_leaf(
    leaf: ParsedCertificate, field: str, *, use: Use, now: int, allow_not_yet_valid: bool
) -> None:
    info = leaf.info
    if leaf.cert.issuer == CERT_MANAGER_TEMPORARY_ISSUER and not leaf.self_issued:
        fail(
            "TemporaryCertificate",
            field,
            f"The certificate in {field!r} is cert-manager's temporary placeholder (issued by "
            "CN=cert-manager.local while the real issuer cannot sign yet); waiting for "
            "cert-manager to issue the real certificate (kubectl describe certificate tells why "
            "it has not)",
        )
    if now > info.not_after:
        fail(
            "Expired",
            field,
            f"The certificate in {field!r} expired at {to_rfc3339(info.not_after)}; renew it.",
        )
    if now < info.not_before and not allow_not_yet_valid:
        fail(
            "NotYetValid",
            field,
            f"The certificate in {field!r} is not valid before "
            f"{to_rfc3339(info.not_before)}; wait, or allow not-yet-valid certificates to "
            "stage a rotation.",
        )
    usage = leaf.key_usage
    if usage is None:
        return
    if use == "sig" and not usage.digital_signature:
        _key_usage_mismatch(field, "sig", "digitalSignature")
    if use == "enc" and not usage.key_encipherment:
        _key_usage_mismatch(field, "enc", "keyEncipherment")


def _key_usage_mismatch(field: str, use: Use, needed: str) -> NoReturn:
    fail(
        "KeyUsageMismatch",
        field,
        f"The certificate in {field!r} has a key usage without {needed}, which use={use} "
        f"needs; issue it with {needed} or change the key set's use.",
    )
