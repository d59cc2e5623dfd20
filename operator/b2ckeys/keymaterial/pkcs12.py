"""PKCS#12 (PFX): open the bundle a user stores, and build the one B2C accepts.

What goes in may use any encryption a tool writes; what goes out is always re-encoded with the
profile B2C reads and a fresh random password, so the user's password never travels to Graph.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from functools import partial

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from b2ckeys.keymaterial.certificates import distinct, parse_certificate, with_key
from b2ckeys.keymaterial.der import pkcs12_layout
from b2ckeys.keymaterial.errors import attempt, fail, sized, too_many_blocks
from b2ckeys.keymaterial.keys import usable_private_key
from b2ckeys.keymaterial.limits import MAX_CHAIN_CERTIFICATES, MAX_PASSWORD_BYTES, MAX_PKCS12_BYTES
from b2ckeys.keymaterial.values import CertificateInfo, CertificateWithKey, Use
from b2ckeys.secret import SecretStr

# B2C reports AES (PBES2) PFX files as a wrong password, so the PFX uses the legacy profile:
# pbeWithSHAAnd3-KeyTripleDES-CBC for keys and certificates, HMAC-SHA1 for the MAC.
# 2048 PBKDF rounds is OpenSSL's default; the password is 192 random bits, so more rounds would
# add nothing but time.
_PFX_KDF_ROUNDS = 2048
_PFX_PASSWORD_BYTES = 24


@dataclass(frozen=True)
class Pkcs12Upload:
    """The body of an uploadPkcs12 call: a B2C-compatible PFX and its one-off password."""

    pfx_b64: SecretStr
    password: SecretStr
    leaf: CertificateInfo


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
    sized(pfx, field, MAX_PKCS12_BYTES)
    if not pfx or pfx.isspace():
        fail("Empty", field, f"The Secret key {field!r} is empty; put the PKCS#12 file in it.")
    the_password = (
        f"The PKCS#12 password in {password_field!r}" if password_field else "The PKCS#12 password"
    )
    secret_password = b""
    if password is not None:
        encoded = attempt(partial(password.reveal().encode, "utf-8"))
        if encoded is None:
            fail(
                "NotUtf8",
                password_field,
                f"{the_password} is not valid UTF-8 text.",
            )
        secret_password = encoded
    if b"\x00" in secret_password:
        # OpenSSL takes the password as a C string; cryptography panics on a NUL and the panic
        # message printed to stderr would quote the password, so it never gets that far.
        fail(
            "Malformed",
            password_field,
            f"{the_password} contains a NUL character, "
            "which no PKCS#12 tool can use; check the password Secret.",
        )
    if len(secret_password) > MAX_PASSWORD_BYTES:
        fail(
            "TooLarge",
            password_field,
            f"{the_password} is longer than "
            f"{MAX_PASSWORD_BYTES} bytes; check that the right key is referenced.",
        )

    layout = attempt(lambda: pkcs12_layout(pfx))
    if layout is None:
        hint = (
            " It holds PEM text; use a TLS Secret source instead." if b"-----BEGIN" in pfx else ""
        )
        fail("Malformed", field, f"The Secret key {field!r} is not a PKCS#12 (PFX) file.{hint}")

    bundle = None
    for candidate in _password_candidates(secret_password):
        bundle = attempt(partial(pkcs12.load_pkcs12, pfx, candidate))
        if bundle is not None:
            break
    if bundle is None:
        if secret_password:
            tried = f"the password in {password_field!r}" if password_field else "the password"
        else:
            tried = "no password"
        fail(
            "WrongPassword",
            password_field if secret_password and password_field else field,
            f"The PKCS#12 file in {field!r} cannot be opened with {tried}: the password is "
            "wrong or the file uses an encryption that cannot be read.",
        )

    if layout.visible_key_bags > 1:
        fail(
            "MultiplePrivateKeys",
            field,
            f"The PKCS#12 file in {field!r} holds {layout.visible_key_bags} private keys; "
            "B2C takes one key per upload, so export only the key to upload.",
        )
    if bundle.key is None:
        fail(
            "NoPrivateKey",
            field,
            f"The PKCS#12 file in {field!r} holds no private key; export it with the key, "
            "or use a certificate source for public certificates.",
        )
    bagged = [bundle.cert] if bundle.cert is not None else []
    bagged += bundle.additional_certs
    if not bagged:
        fail(
            "NoCertificate",
            field,
            f"The PKCS#12 file in {field!r} holds a private key but no certificate; "
            "export it together with its certificate.",
        )
    if len(bagged) > MAX_CHAIN_CERTIFICATES:
        too_many_blocks(field, MAX_CHAIN_CERTIFICATES)
    key = usable_private_key(bundle.key, field)
    certs = distinct(
        parse_certificate(
            bag.certificate.public_bytes(serialization.Encoding.DER), f"certificate #{i + 1}", field
        )
        for i, bag in enumerate(bagged)
    )
    return with_key(
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
