"""The RSA private key: read from PEM, which key types and sizes B2C takes, and validation.

Loading an RSA private key validates it (primality of p and q). That costs ~30 ms at 2048 bits
and ~0.2 s at 4096 bits on one core, so it runs last, once every cheap check has passed.
"""

from __future__ import annotations

from functools import partial
from typing import NoReturn

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa, x448, x25519
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from b2ckeys.keymaterial.errors import attempt, fail
from b2ckeys.keymaterial.limits import MAX_CHAIN_CERTIFICATES, MAX_RSA_BITS, MIN_RSA_BITS
from b2ckeys.keymaterial.pem import is_private_key_label, label_text, pem_blocks


def private_key_from_pem(data: bytes, field: str) -> tuple[rsa.RSAPrivateKey, bytes]:
    """The key, read *without* validation, and its DER (for `validated_private_key` later)."""
    blocks = pem_blocks(data, field, MAX_CHAIN_CERTIFICATES)
    keys = [b for b in blocks if is_private_key_label(b.label)]
    if not keys:
        fail(
            "NoPrivateKey" if blocks else "Malformed",
            field,
            f"The Secret key {field!r} holds no PEM private key "
            "(expected a PEM block labelled PRIVATE KEY or RSA PRIVATE KEY).",
        )
    if len(keys) > 1:
        fail(
            "MultiplePrivateKeys",
            field,
            f"The Secret key {field!r} holds {len(keys)} private keys; keep only the one that "
            "belongs to the certificate.",
        )
    block = keys[0]
    if block.legacy_encrypted or block.label == b"ENCRYPTED PRIVATE KEY":
        fail(
            "EncryptedKey",
            field,
            f"The private key in {field!r} is password-protected; store it unencrypted "
            "(as cert-manager does) or use a PKCS#12 source with a password.",
        )
    if block.label == b"EC PRIVATE KEY":
        unsupported_key("an EC", field)
    if block.label == b"DSA PRIVATE KEY":
        unsupported_key("a DSA", field)
    if block.label not in (b"PRIVATE KEY", b"RSA PRIVATE KEY") or block.der is None:
        fail(
            "Malformed",
            field,
            f"The {label_text(block.label)} PEM block in {field!r} is not a readable PKCS#1 or "
            "PKCS#8 private key.",
        )
    der = block.der
    # Validation (primality of p and q) is the most expensive step of the whole load, so it
    # runs last, once every cheap check has passed; this also lets the size limit refuse a
    # huge key before its validation could take seconds.
    unchecked = attempt(
        lambda: serialization.load_der_private_key(der, None, unsafe_skip_rsa_key_validation=True)
    )
    if unchecked is None:
        fail(
            "Malformed",
            field,
            f"The private key in {field!r} cannot be read as a PKCS#1 or PKCS#8 key.",
        )
    return usable_private_key(unchecked, field), der


def validated_private_key(der: bytes, field: str) -> rsa.RSAPrivateKey:
    validated = attempt(partial(serialization.load_der_private_key, der, None))
    if not isinstance(validated, rsa.RSAPrivateKey):
        fail(
            "Malformed",
            field,
            f"The RSA private key in {field!r} is inconsistent (it fails RSA key validation).",
        )
    return validated


def usable_private_key(key: PrivateKeyTypes, field: str) -> rsa.RSAPrivateKey:
    if not isinstance(key, rsa.RSAPrivateKey):
        unsupported_key(key_kind(key), field)
    check_rsa_size(key.key_size, field, "private key")
    return key


def key_kind(key: object) -> str:
    kinds: list[tuple[tuple[type, ...], str]] = [
        ((ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey), "an EC"),
        ((ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey), "an Ed25519"),
        ((ed448.Ed448PrivateKey, ed448.Ed448PublicKey), "an Ed448"),
        ((dsa.DSAPrivateKey, dsa.DSAPublicKey), "a DSA"),
        ((x25519.X25519PrivateKey, x25519.X25519PublicKey), "an X25519"),
        ((x448.X448PrivateKey, x448.X448PublicKey), "an X448"),
    ]
    return next((name for types, name in kinds if isinstance(key, types)), "a non-RSA")


def unsupported_key(kind: str, field: str) -> NoReturn:
    fail(
        "UnsupportedKeyType",
        field,
        f"The Secret key {field!r} holds {kind} key; Azure AD B2C needs an RSA key "
        f"(at least {MIN_RSA_BITS} bits). For cert-manager set privateKey.algorithm: RSA.",
    )


def check_rsa_size(bits: int, field: str, what: str) -> None:
    if bits < MIN_RSA_BITS:
        fail(
            "KeyTooSmall",
            field,
            f"The RSA {what} in {field!r} has {bits} bits; Azure AD B2C needs at least "
            f"{MIN_RSA_BITS}. Issue a new one with privateKey.size: {MIN_RSA_BITS} or more.",
        )
    if bits > MAX_RSA_BITS:
        fail(
            "KeyTooLarge",
            field,
            f"The RSA {what} in {field!r} has {bits} bits; b2ckeys accepts at most "
            f"{MAX_RSA_BITS} (larger keys cost seconds to validate on every sync).",
        )
