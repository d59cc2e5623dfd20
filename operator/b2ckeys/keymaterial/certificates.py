"""Key material: parse, validate and convert what people put in Secrets (pure; no I/O).

Every key b2ckeys uploads comes from a Secret that a person or another tool wrote, so all input
here is untrusted and secret. Each entry point runs an ordered chain of small checks (presence,
size, parse, key type and size, key/leaf match, chain, validity, key usage) and stops at the
first failure with a `KeyMaterialError` that carries a stable `reason` and a message naming the
Secret key. Messages, reprs and exception chains never carry key material, passwords or secret
values: library exceptions are swallowed where they happen and a fresh error is raised outside
the `except` block, so not even `__context__` points back at them.

Loading an RSA private key validates it (primality of p and q). That costs ~30 ms at 2048 bits
and ~0.2 s at 4096 bits on one core, so callers on an event loop should run these functions in a
worker thread.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Literal, NoReturn, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa, x448, x25519
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificatePublicKeyTypes,
    PrivateKeyTypes,
)
from cryptography.hazmat.primitives.serialization import pkcs12

from b2ckeys import keymaterial_der
from b2ckeys.formats import b64url, to_rfc3339
from b2ckeys.keymaterial_fingerprint import fingerprint_matches, secret_fingerprint
from b2ckeys.secret import SecretStr

__all__ = [
    "MAX_CA_BUNDLE_BYTES",
    "MAX_CERTIFICATE_BYTES",
    "MAX_PASSWORD_BYTES",
    "MAX_PKCS12_BYTES",
    "MAX_PRIVATE_KEY_BYTES",
    "MAX_RSA_BITS",
    "MAX_STRING_SECRET_BYTES",
    "MIN_RSA_BITS",
    "CertificateInfo",
    "CertificateWithKey",
    "KeyMaterialError",
    "Pkcs12Upload",
    "Reason",
    "Use",
    "fingerprint_matches",
    "load_certificate",
    "load_pkcs12",
    "load_string_secret",
    "load_tls_secret",
    "require_field",
    "secret_fingerprint",
    "to_pkcs12",
]

Use = Literal["sig", "enc"]

Reason = Literal[
    "Missing",  # the Secret has no such key
    "Empty",  # the key is empty or only whitespace
    "TooLarge",  # over the size limit for that field
    "NotUtf8",  # a string secret that is not UTF-8 text
    "Malformed",  # not PEM / DER / PKCS#12, or not parseable as what it claims to be
    "EncryptedKey",  # tls.key is password-protected (cert-manager never writes that)
    "UnexpectedPrivateKey",  # a private key in a field meant for public certificates
    "MultiplePrivateKeys",
    "NoPrivateKey",
    "NoCertificate",
    "WrongPassword",
    "UnsupportedKeyType",  # not RSA; B2C signs and decrypts with RSA only
    "KeyTooSmall",
    "KeyTooLarge",
    "KeyMismatch",  # the private key does not belong to the leaf certificate
    "BrokenChain",  # certificates that do not link into one chain
    "Expired",
    "NotYetValid",
    "KeyUsageMismatch",
]

# --- limits (each checked before any parsing) ------------------------------------------------

# 16 PEM certificates with 4096-bit keys take ~32 KB; real chains are 2-4 certificates.
MAX_CERTIFICATE_BYTES = 64 * 1024
# ca.crt may be a trust bundle rather than one CA; ~150 public roots are ~220 KB. It is only
# searched for the issuers the chain still lacks.
MAX_CA_BUNDLE_BYTES = 256 * 1024
# A 4096-bit RSA key in PEM is ~3.3 KB; 16 KiB leaves room for comments around the block.
MAX_PRIVATE_KEY_BYTES = 16 * 1024
# A PFX with a 4096-bit key and a 16-certificate chain is ~30 KB.
MAX_PKCS12_BYTES = 64 * 1024
# Keystore passwords are typed or generated (cert-manager: 32 chars); 1 KiB is generous.
MAX_PASSWORD_BYTES = 1024
# Client secrets are ~40 chars; a PEM key pasted as a secret (an Apple .p8) is ~250 bytes.
MAX_STRING_SECRET_BYTES = 8 * 1024
# Chains are 2-4 deep; 16 leaves room for cross-signs and bounds the pairwise linking work.
MAX_CHAIN_CERTIFICATES = 16
# Bounds the certificates parsed from a ca.crt trust bundle (see MAX_CA_BUNDLE_BYTES).
MAX_CA_CERTIFICATES = 256

# B2C refuses shorter RSA keys (AADB2C90137); 2048 is the floor it is known to accept.
MIN_RSA_BITS = 2048
# Validating a private key costs ~0.2 s at 4096 bits and ~4 s at 8192 bits per load, paid on
# every reconcile; nothing B2C signs or decrypts needs more than 4096.
MAX_RSA_BITS = 4096

# B2C reports AES (PBES2) PFX files as a wrong password, so the PFX uses the legacy profile:
# pbeWithSHAAnd3-KeyTripleDES-CBC for keys and certificates, HMAC-SHA1 for the MAC.
# 2048 PBKDF rounds is OpenSSL's default; the password is 192 random bits, so more rounds would
# add nothing but time.
_PFX_KDF_ROUNDS = 2048
_PFX_PASSWORD_BYTES = 24

_T = TypeVar("_T")


# --- errors ------------------------------------------------------------------------------------


class KeyMaterialError(Exception):
    """Key material that cannot be used, with a stable `reason` and the Secret key involved.

    `str(e)` is one sentence a person can act on. It never contains key material, passwords or
    secret values, and neither do `repr(e)`, `e.args` or the exception chain.
    """

    reason: Reason
    field: str | None

    def __init__(self, reason: Reason, field: str | None, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.field = field

    @property
    def message(self) -> str:
        return str(self.args[0])

    def __repr__(self) -> str:
        return f"KeyMaterialError(reason={self.reason!r}, field={self.field!r}, {self.message!r})"

    def __reduce__(self) -> tuple[Callable[..., KeyMaterialError], tuple[Reason, str | None, str]]:
        return _rebuild_error, (self.reason, self.field, self.message)


def _rebuild_error(reason: Reason, field: str | None, message: str) -> KeyMaterialError:
    return KeyMaterialError(reason, field, message)


def _fail(reason: Reason, field: str | None, message: str) -> NoReturn:
    raise KeyMaterialError(reason, field, message)


# --- values ------------------------------------------------------------------------------------


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


@dataclass(frozen=True)
class Pkcs12Upload:
    """The body of an uploadPkcs12 call: a B2C-compatible PFX and its one-off password."""

    pfx_b64: SecretStr
    password: SecretStr
    leaf: CertificateInfo


# --- entry points ------------------------------------------------------------------------------


def require_field(data: Mapping[str, bytes], field: str, *, allow_empty: bool = False) -> bytes:
    """The value of `field` in a Secret's (or ConfigMap's) decoded data; refuses a missing one,
    and a blank one unless `allow_empty` (a PKCS#12 password may be empty)."""
    value = data.get(field)
    if value is None:
        present = ", ".join(sorted(data)) or "none"
        _fail(
            "Missing",
            field,
            f"There is no key {field!r} (keys present: {present}); add it or point at another key.",
        )
    if not allow_empty and (not value or value.isspace()):
        _fail("Empty", field, f"The key {field!r} is empty; put the key material in it.")
    return value


def load_tls_secret(
    data: Mapping[str, bytes], *, use: Use, now: int, allow_not_yet_valid: bool = False
) -> CertificateWithKey:
    """Validate a `kubernetes.io/tls` Secret (as cert-manager writes it).

    `tls.crt` holds the leaf and any intermediates in any order; `tls.key` is a PKCS#1 or PKCS#8
    PEM RSA key; an optional `ca.crt` supplies issuers the chain still lacks (certificates in it
    that are not on the leaf's path are ignored, as it may be a trust bundle).
    """
    crt_raw = _sized(require_field(data, "tls.crt"), "tls.crt", MAX_CERTIFICATE_BYTES)
    key_raw = _sized(require_field(data, "tls.key"), "tls.key", MAX_PRIVATE_KEY_BYTES)
    ca_raw = data.get("ca.crt")
    if ca_raw is not None:
        _sized(ca_raw, "ca.crt", MAX_CA_BUNDLE_BYTES)

    unchecked_key, key_der = _private_key_from_pem(key_raw, "tls.key")
    certs = _certificates(crt_raw, "tls.crt", MAX_CHAIN_CERTIFICATES)
    ca_certs = (
        _certificates(ca_raw, "ca.crt", MAX_CA_CERTIFICATES)
        if ca_raw and not ca_raw.isspace()
        else []
    )
    material = _with_key(
        unchecked_key,
        "tls.key",
        certs,
        "tls.crt",
        ca_certs,
        use=use,
        now=now,
        allow_not_yet_valid=allow_not_yet_valid,
    )
    return replace(material, _private_key=_validated_private_key(key_der, "tls.key"))


def load_pkcs12(
    pfx: bytes,
    password: SecretStr | None,
    *,
    use: Use,
    now: int,
    allow_not_yet_valid: bool = False,
    field: str = "keystore.p12",
    password_field: str | None = "password",  # noqa: S107 -- a Secret key name, not a password
) -> CertificateWithKey:
    """Open a PKCS#12 bundle (e.g. cert-manager's keystore.p12) and validate what it holds.

    `to_pkcs12` always re-encodes the result with the B2C profile and a fresh random password,
    so the user's password never travels to Graph and the input's encryption does not matter.
    A missing or empty password tries both "no password" and "empty password", which tools
    treat differently; a password ending in one newline (a password file written with echo or
    an editor) is also tried without it.
    """
    _sized(pfx, field, MAX_PKCS12_BYTES)
    if not pfx or pfx.isspace():
        _fail("Empty", field, f"The Secret key {field!r} is empty; put the PKCS#12 file in it.")
    the_password = (
        f"The PKCS#12 password in {password_field!r}" if password_field else "The PKCS#12 password"
    )
    secret_password = b""
    if password is not None:
        encoded = _attempt(partial(password.reveal().encode, "utf-8"))
        if encoded is None:
            _fail(
                "NotUtf8",
                password_field,
                f"{the_password} is not valid UTF-8 text.",
            )
        secret_password = encoded
    if b"\x00" in secret_password:
        # OpenSSL takes the password as a C string; cryptography panics on a NUL and the panic
        # message printed to stderr would quote the password, so it never gets that far.
        _fail(
            "Malformed",
            password_field,
            f"{the_password} contains a NUL character, "
            "which no PKCS#12 tool can use; check the password Secret.",
        )
    if len(secret_password) > MAX_PASSWORD_BYTES:
        _fail(
            "TooLarge",
            password_field,
            f"{the_password} is longer than "
            f"{MAX_PASSWORD_BYTES} bytes; check that the right key is referenced.",
        )

    layout = _attempt(lambda: keymaterial_der.pkcs12_layout(pfx))
    if layout is None:
        hint = (
            " It holds PEM text; use a TLS Secret source instead." if b"-----BEGIN" in pfx else ""
        )
        _fail("Malformed", field, f"The Secret key {field!r} is not a PKCS#12 (PFX) file.{hint}")

    bundle = None
    for candidate in _password_candidates(secret_password):
        bundle = _attempt(partial(pkcs12.load_pkcs12, pfx, candidate))
        if bundle is not None:
            break
    if bundle is None:
        if secret_password:
            tried = f"the password in {password_field!r}" if password_field else "the password"
        else:
            tried = "no password"
        _fail(
            "WrongPassword",
            password_field if secret_password and password_field else field,
            f"The PKCS#12 file in {field!r} cannot be opened with {tried}: the password is "
            "wrong or the file uses an encryption that cannot be read.",
        )

    if layout.visible_key_bags > 1:
        _fail(
            "MultiplePrivateKeys",
            field,
            f"The PKCS#12 file in {field!r} holds {layout.visible_key_bags} private keys; "
            "B2C takes one key per upload, so export only the key to upload.",
        )
    if bundle.key is None:
        _fail(
            "NoPrivateKey",
            field,
            f"The PKCS#12 file in {field!r} holds no private key; export it with the key, "
            "or use a certificate source for public certificates.",
        )
    bagged = [bundle.cert] if bundle.cert is not None else []
    bagged += bundle.additional_certs
    if not bagged:
        _fail(
            "NoCertificate",
            field,
            f"The PKCS#12 file in {field!r} holds a private key but no certificate; "
            "export it together with its certificate.",
        )
    if len(bagged) > MAX_CHAIN_CERTIFICATES:
        _too_many_blocks(field, MAX_CHAIN_CERTIFICATES)
    key = _usable_private_key(bundle.key, field)
    certs = _distinct(
        _parse_certificate(
            bag.certificate.public_bytes(serialization.Encoding.DER), f"certificate #{i + 1}", field
        )
        for i, bag in enumerate(bagged)
    )
    return _with_key(
        key, field, certs, field, [], use=use, now=now, allow_not_yet_valid=allow_not_yet_valid
    )


def _password_candidates(password: bytes) -> list[bytes | None]:
    if not password:
        return [None, b""]
    for newline in (b"\r\n", b"\n"):
        if password.endswith(newline):
            trimmed = password[: -len(newline)]
            return [password, trimmed] if trimmed else [password, None, b""]
    return [password]


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
    _sized(data, field, MAX_CERTIFICATE_BYTES)
    if not data or data.isspace():
        _fail("Empty", field, f"The Secret key {field!r} is empty; put the certificate in it.")
    certs = _certificates(data, field, MAX_CHAIN_CERTIFICATES)
    leaves = [c for c in certs if not any(_issued(other, c) for other in certs if other is not c)]
    if len(leaves) != 1:
        _fail(
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


def load_string_secret(data: bytes, *, field: str) -> SecretStr:
    """A string secret for uploadSecret.

    Exactly one trailing newline (LF or CRLF) is removed, because `kubectl create secret
    --from-file` and editors add one that was never part of the secret. All other whitespace is
    kept: a secret may legitimately contain spaces, and silently trimming more could upload a
    value that differs from the one the identity provider holds. A value that is only
    whitespace is refused as a mistake rather than uploaded.
    """
    if len(data) > MAX_STRING_SECRET_BYTES:
        _too_large(field, len(data), MAX_STRING_SECRET_BYTES)
    text = _attempt(lambda: data.decode("utf-8", errors="strict"))
    if text is None:
        _fail("NotUtf8", field, f"The Secret key {field!r} is not UTF-8 text; B2C stores text.")
    if text.endswith("\r\n"):
        text = text[:-2]
    elif text.endswith("\n"):
        text = text[:-1]
    if not text:
        _fail("Empty", field, f"The Secret key {field!r} is empty; put the secret value in it.")
    if not text.strip():
        _fail(
            "Empty",
            field,
            f"The Secret key {field!r} holds only whitespace; put the secret value in it.",
        )
    return SecretStr(text)


def to_pkcs12(material: CertificateWithKey) -> Pkcs12Upload:
    """Build, in memory, the PFX that uploadPkcs12 takes, with a fresh random password."""
    password = secrets.token_urlsafe(_PFX_PASSWORD_BYTES)
    encryption = (
        serialization.PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(_PFX_KDF_ROUNDS)
        .key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC)
        .hmac_hash(hashes.SHA1())  # noqa: S303 -- the PFX MAC algorithm B2C accepts
        .build(password.encode("ascii"))
    )
    leaf, *issuers = material._certificates
    pfx = pkcs12.serialize_key_and_certificates(
        None, material._private_key, leaf, issuers or None, encryption
    )
    return Pkcs12Upload(
        pfx_b64=SecretStr(base64.b64encode(pfx).decode("ascii")),
        password=SecretStr(password),
        leaf=material.leaf,
    )


# --- parsing -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Cert:
    cert: x509.Certificate
    info: CertificateInfo
    public_key: CertificatePublicKeyTypes
    key_usage: x509.KeyUsage | None
    self_issued: bool


@dataclass(frozen=True)
class _PemBlock:
    label: bytes
    der: bytes | None  # None when the body is not valid base64
    legacy_encrypted: bool  # RFC 1421 "Proc-Type: 4,ENCRYPTED" header (OpenSSL's old format)


_PEM_BEGIN = b"-----BEGIN "
_PEM_DASHES = b"-----"
_PEM_LABEL_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ")
# The longest standard label ("ENCRYPTED PRIVATE KEY") is 21 characters.
_PEM_MAX_LABEL = 40
_KNOWN_LABELS = frozenset(
    {
        b"CERTIFICATE",
        b"PRIVATE KEY",
        b"RSA PRIVATE KEY",
        b"EC PRIVATE KEY",
        b"DSA PRIVATE KEY",
        b"ENCRYPTED PRIVATE KEY",
        b"OPENSSH PRIVATE KEY",
    }
)


def _attempt(action: Callable[[], _T]) -> _T | None:
    """Run a library call on untrusted input; None when it fails in any way.

    The set of exceptions `cryptography` raises on hostile input is not closed (ValueError,
    TypeError, UnsupportedAlgorithm, InvalidSignature, warnings turned into errors, ...), and
    their messages may quote the input, so all are swallowed here and the caller raises its own.
    """
    try:
        return action()
    except Exception:
        return None


def _sized(value: bytes, field: str, limit: int) -> bytes:
    if len(value) > limit:
        _too_large(field, len(value), limit)
    return value


def _too_large(field: str, size: int, limit: int) -> NoReturn:
    _fail(
        "TooLarge",
        field,
        f"The Secret key {field!r} is {size} bytes, over the {limit}-byte limit; "
        "check that it holds only the expected key material.",
    )


def _too_many_blocks(field: str, limit: int) -> NoReturn:
    _fail(
        "TooLarge",
        field,
        f"The Secret key {field!r} holds more than {limit} PEM blocks or certificates; "
        "keep only the certificate, its chain and (in tls.key) its key.",
    )


def _pem_blocks(data: bytes, field: str, max_blocks: int) -> list[_PemBlock]:
    """Every `-----BEGIN X-----` ... `-----END X-----` block; text between blocks is ignored."""
    blocks: list[_PemBlock] = []
    position = 0
    while (start := data.find(_PEM_BEGIN, position)) >= 0:
        label_start = start + len(_PEM_BEGIN)
        label_end = data.find(_PEM_DASHES, label_start, label_start + _PEM_MAX_LABEL + 1)
        label = data[label_start:label_end] if label_end >= 0 else b""
        if not label or not set(label) <= _PEM_LABEL_CHARS:
            _fail(
                "Malformed",
                field,
                f"PEM block #{len(blocks) + 1} in {field!r} has a broken BEGIN line.",
            )
        end_marker = b"-----END " + label + _PEM_DASHES
        body_start = label_end + len(_PEM_DASHES)
        body_end = data.find(end_marker, body_start)
        if body_end < 0:
            _fail(
                "Malformed",
                field,
                f"PEM block #{len(blocks) + 1} in {field!r} has no matching END line.",
            )
        if len(blocks) >= max_blocks:
            _too_many_blocks(field, max_blocks)
        body = data[body_start:body_end]
        # Header lines ("Name: value") only appear in legacy encrypted keys; any other colon
        # makes the body invalid base64, which `der=None` reports as malformed.
        legacy_encrypted = b"Proc-Type:" in body and b"ENCRYPTED" in body
        der = None if legacy_encrypted else _attempt(partial(_strict_b64, body))
        blocks.append(_PemBlock(label, der, legacy_encrypted))
        position = body_end + len(end_marker)
    return blocks


def _strict_b64(body: bytes) -> bytes:
    return base64.b64decode(b"".join(body.split()), validate=True)


def _label_text(label: bytes) -> str:
    return label.decode("ascii") if label in _KNOWN_LABELS else "unrecognised"


def _is_private_key_label(label: bytes) -> bool:
    return label.endswith(b"PRIVATE KEY")


def _private_key_from_pem(data: bytes, field: str) -> tuple[rsa.RSAPrivateKey, bytes]:
    """The key, read *without* validation, and its DER (for `_validated_private_key` later)."""
    blocks = _pem_blocks(data, field, MAX_CHAIN_CERTIFICATES)
    keys = [b for b in blocks if _is_private_key_label(b.label)]
    if not keys:
        _fail(
            "NoPrivateKey" if blocks else "Malformed",
            field,
            f"The Secret key {field!r} holds no PEM private key "
            "(expected a PEM block labelled PRIVATE KEY or RSA PRIVATE KEY).",
        )
    if len(keys) > 1:
        _fail(
            "MultiplePrivateKeys",
            field,
            f"The Secret key {field!r} holds {len(keys)} private keys; keep only the one that "
            "belongs to the certificate.",
        )
    block = keys[0]
    if block.legacy_encrypted or block.label == b"ENCRYPTED PRIVATE KEY":
        _fail(
            "EncryptedKey",
            field,
            f"The private key in {field!r} is password-protected; store it unencrypted "
            "(as cert-manager does) or use a PKCS#12 source with a password.",
        )
    if block.label == b"EC PRIVATE KEY":
        _unsupported_key("an EC", field)
    if block.label == b"DSA PRIVATE KEY":
        _unsupported_key("a DSA", field)
    if block.label not in (b"PRIVATE KEY", b"RSA PRIVATE KEY") or block.der is None:
        _fail(
            "Malformed",
            field,
            f"The {_label_text(block.label)} PEM block in {field!r} is not a readable PKCS#1 or "
            "PKCS#8 private key.",
        )
    der = block.der
    # Validation (primality of p and q) is the most expensive step of the whole load, so it
    # runs last, once every cheap check has passed; this also lets the size limit refuse a
    # huge key before its validation could take seconds.
    unchecked = _attempt(
        lambda: serialization.load_der_private_key(der, None, unsafe_skip_rsa_key_validation=True)
    )
    if unchecked is None:
        _fail(
            "Malformed",
            field,
            f"The private key in {field!r} cannot be read as a PKCS#1 or PKCS#8 key.",
        )
    return _usable_private_key(unchecked, field), der


def _validated_private_key(der: bytes, field: str) -> rsa.RSAPrivateKey:
    validated = _attempt(partial(serialization.load_der_private_key, der, None))
    if not isinstance(validated, rsa.RSAPrivateKey):
        _fail(
            "Malformed",
            field,
            f"The RSA private key in {field!r} is inconsistent (it fails RSA key validation).",
        )
    return validated


def _usable_private_key(key: PrivateKeyTypes, field: str) -> rsa.RSAPrivateKey:
    if not isinstance(key, rsa.RSAPrivateKey):
        _unsupported_key(_key_kind(key), field)
    _check_rsa_size(key.key_size, field, "private key")
    return key


def _key_kind(key: object) -> str:
    kinds: list[tuple[tuple[type, ...], str]] = [
        ((ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey), "an EC"),
        ((ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey), "an Ed25519"),
        ((ed448.Ed448PrivateKey, ed448.Ed448PublicKey), "an Ed448"),
        ((dsa.DSAPrivateKey, dsa.DSAPublicKey), "a DSA"),
        ((x25519.X25519PrivateKey, x25519.X25519PublicKey), "an X25519"),
        ((x448.X448PrivateKey, x448.X448PublicKey), "an X448"),
    ]
    return next((name for types, name in kinds if isinstance(key, types)), "a non-RSA")


def _unsupported_key(kind: str, field: str) -> NoReturn:
    _fail(
        "UnsupportedKeyType",
        field,
        f"The Secret key {field!r} holds {kind} key; Azure AD B2C needs an RSA key "
        f"(at least {MIN_RSA_BITS} bits). For cert-manager set privateKey.algorithm: RSA.",
    )


def _check_rsa_size(bits: int, field: str, what: str) -> None:
    if bits < MIN_RSA_BITS:
        _fail(
            "KeyTooSmall",
            field,
            f"The RSA {what} in {field!r} has {bits} bits; Azure AD B2C needs at least "
            f"{MIN_RSA_BITS}. Issue a new one with privateKey.size: {MIN_RSA_BITS} or more.",
        )
    if bits > MAX_RSA_BITS:
        _fail(
            "KeyTooLarge",
            field,
            f"The RSA {what} in {field!r} has {bits} bits; b2ckeys accepts at most "
            f"{MAX_RSA_BITS} (larger keys cost seconds to validate on every sync).",
        )


def _certificates(data: bytes, field: str, limit: int) -> list[_Cert]:
    """The distinct certificates in a PEM or DER field, in input order."""
    if _PEM_BEGIN in data:
        blocks = _pem_blocks(data, field, limit)
        if any(_is_private_key_label(b.label) for b in blocks):
            _fail(
                "UnexpectedPrivateKey",
                field,
                f"The Secret key {field!r} holds a private key; it must hold only certificates "
                "(private keys belong in tls.key).",
            )
        ders = [(i, b.der) for i, b in enumerate(blocks) if b.label == b"CERTIFICATE"]
        if not ders:
            _fail("Malformed", field, f"The Secret key {field!r} holds no PEM certificate.")
        broken = next((i for i, der in ders if der is None), None)
        if broken is not None:
            _fail(
                "Malformed",
                field,
                f"PEM block #{broken + 1} in {field!r} is not valid base64.",
            )
        found = [(f"certificate in PEM block #{i + 1}", der or b"") for i, der in ders]
    else:
        if data.lstrip()[:1] != b"\x30":
            _fail(
                "Malformed",
                field,
                f"The Secret key {field!r} holds neither a PEM nor a DER certificate.",
            )
        found = [("the DER certificate", data)]
    return _distinct(_parse_certificate(der, where, field) for where, der in found)


def _distinct(certs: Iterable[_Cert]) -> list[_Cert]:
    """Drop repeats (some tools write the same certificate twice), keeping input order."""
    unique: dict[str, _Cert] = {}
    for cert in certs:
        unique.setdefault(cert.info.x5t_s256, cert)
    return list(unique.values())


def _parse_certificate(der: bytes, where: str, field: str) -> _Cert:
    parsed = _attempt(lambda: _read_certificate(der))
    if parsed is None:
        _fail(
            "Malformed",
            field,
            f"The {where} in {field!r} is not a valid X.509 certificate.",
        )
    return parsed


def _read_certificate(der: bytes) -> _Cert:
    """Parse eagerly, so every lazily decoded part fails here, inside `_attempt`."""
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
    return _Cert(cert, info, public_key, key_usage, cert.subject == cert.issuer)


def _public_key_bits(key: CertificatePublicKeyTypes) -> int:
    if isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey | dsa.DSAPublicKey):
        return key.key_size
    if isinstance(key, ed448.Ed448PublicKey | x448.X448PublicKey):
        return 456
    return 256  # Ed25519 and X25519


# --- deciding ----------------------------------------------------------------------------------


def _with_key(
    key: rsa.RSAPrivateKey,
    key_field: str,
    certs: Sequence[_Cert],
    cert_field: str,
    ca_certs: Sequence[_Cert],
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
        _fail(
            "KeyMismatch",
            key_field,
            f"The private key in {key_field!r} does not belong to any certificate in "
            f"{cert_field!r}; store the key and certificate that were issued together.",
        )
    if len(leaves) > 1:
        _fail(
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


def _issued(child: _Cert, issuer: _Cert) -> bool:
    """Whether `issuer` signed `child` (names match and the signature verifies)."""
    if child.cert.issuer != issuer.cert.subject:
        return False
    try:
        child.cert.verify_directly_issued_by(issuer.cert)
    except Exception:  # any failure means "not linked", whatever the library calls it
        return False
    return True


def _order_chain(
    leaf: _Cert, certs: Sequence[_Cert], ca_certs: Sequence[_Cert], field: str
) -> list[_Cert]:
    """Leaf first, then each issuer. Every certificate of `field` must be on that path."""
    chain = [leaf]
    remaining = [c for c in certs if c is not leaf]
    top = leaf
    while not top.self_issued and (issuer := _find_issuer(top, remaining)) is not None:
        remaining.remove(issuer)
        chain.append(issuer)
        top = issuer
    if remaining:
        _fail(
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


def _find_issuer(child: _Cert, candidates: Sequence[_Cert]) -> _Cert | None:
    return next((c for c in candidates if _issued(child, c)), None)


def _check_public_key(cert: _Cert, field: str) -> None:
    if not isinstance(cert.public_key, rsa.RSAPublicKey):
        _unsupported_key(_key_kind(cert.public_key), field)
    _check_rsa_size(cert.public_key.key_size, field, "certificate key")


def _check_leaf(leaf: _Cert, field: str, *, use: Use, now: int, allow_not_yet_valid: bool) -> None:
    info = leaf.info
    if now > info.not_after:
        _fail(
            "Expired",
            field,
            f"The certificate in {field!r} expired at {to_rfc3339(info.not_after)}; renew it.",
        )
    if now < info.not_before and not allow_not_yet_valid:
        _fail(
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
    _fail(
        "KeyUsageMismatch",
        field,
        f"The certificate in {field!r} has a key usage without {needed}, which use={use} "
        f"needs; issue it with {needed} or change the key set's use.",
    )
