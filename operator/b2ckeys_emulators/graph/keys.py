"""Key material as the emulated B2C holds it: parse uploads, generate keys, render public views.

Private members (`k`, `d`, `p`, `q`, `dp`, `dq`, `qi`) are kept in memory inside SecretBytes and
never rendered, logged or written anywhere. Refusals are `B2CRefusal`s carrying the B2C error
code; their messages never quote submitted material.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import secrets
import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from b2ckeys.secret import SecretBytes
from b2ckeys_emulators.graph.rules import EmulatorRules

KeyOrigin = Literal["generated", "secret", "certificate", "pkcs12", "jwk"]

# JWK members B2C accepts but never returns (GDOC: "not readable").
WRITE_ONLY_MEMBERS = ("k", "d", "p", "q", "dp", "dq", "qi")
# Property order of trustFrameworkKey as Graph renders it.
_PUBLIC_ORDER = ("x5c", "x5t", "kty", "use", "exp", "nbf", "kid", "e", "n", "status")

# DER of OID 1.2.840.113549.1.5.13 (PBES2), which is how AES shows up in a PFX. The
# AlgorithmIdentifiers of a PFX are in clear text, and 11 bytes matching by chance inside
# ciphertext is a 2^-88 event, so a byte search is enough and also copes with BER encodings.
_PBES2_OID_DER = bytes.fromhex("06092a864886f70d01050d")


class B2CRefusal(Exception):
    """A request B2C refuses: HTTP status, Graph `error.code` and a message with no secrets."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"[{status} {code}] {message}")
        self.status = status
        self.code = code
        self.message = message


def bad_request(code: str, message: str) -> B2CRefusal:
    return B2CRefusal(400, code, message)


def missing_parameter(name: str) -> B2CRefusal:
    return bad_request("AADB2C90253", f"The trustframework keyset parameter '{name}' is missing.")


@dataclass
class StoredKey:
    """One key of a key set. `private` holds write-only material and is never rendered."""

    kid: str
    kty: str
    use: str
    origin: KeyOrigin
    status: str = "enabled"
    nbf: int | None = None
    exp: int | None = None
    n: str | None = None
    e: str | None = None
    x5c: tuple[str, ...] = ()
    x5t: str | None = None
    # SHA-256 over the public material, for spotting a duplicate upload (AADB2C90180).
    public_fingerprint: str | None = field(default=None, repr=False)
    private: SecretBytes | None = field(default=None, repr=False)

    def public_view(self, rules: EmulatorRules) -> dict[str, Any]:
        values: dict[str, Any] = {
            "x5c": list(self.x5c),
            "x5t": self.x5t,
            "kty": self.kty,
            "use": self.use,
            "exp": self.exp,
            "nbf": self.nbf,
            "kid": self.kid,
            "e": self.e,
            "n": self.n,
            "status": self.status,
        }
        if not rules.emit_null_members:
            return {name: values[name] for name in _PUBLIC_ORDER if values[name] is not None}
        rendered: dict[str, Any] = {"k": None}
        rendered.update((name, values[name]) for name in _PUBLIC_ORDER)
        rendered.update((name, None) for name in WRITE_ONLY_MEMBERS if name != "k")
        return rendered


def new_kid() -> str:
    """An opaque server-assigned kid: 43 base64url characters, like the doc examples."""
    return b64url(secrets.token_bytes(32))


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Strict base64url (padding optional); raises ValueError on anything else."""
    if not isinstance(text, str) or any(c in text for c in "+/ \n\r\t"):
        raise ValueError("not base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as error:
        raise ValueError("not base64url") from error


def _b64_decode(text: object) -> bytes:
    """Standard base64 as Graph clients send binary members; raises ValueError."""
    if not isinstance(text, str):
        raise ValueError("not a string")
    try:
        return base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as error:
        raise ValueError("not base64") from error


def _int_to_b64url(value: int) -> str:
    return b64url(value.to_bytes((value.bit_length() + 7) // 8 or 1, "big"))


def _fingerprint(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


# --- generateKey ---------------------------------------------------------------------------------


class RsaKeyPool:
    """RSA keys made ahead of time for generateKey, so a benchmark of the operator does not
    time the emulator's own RSA generation (about 50 ms per 2048-bit key here).

    `start()` fills it to `size` in a daemon thread; generateKey takes a pooled key when one of
    the right size is ready and generates one itself otherwise (counted as `made_on_demand`).
    Pooled keys live in memory only, like every other key the emulator holds.
    """

    def __init__(self, size: int, bits: int = 2048) -> None:
        if size < 0:
            raise ValueError("a key pool's size cannot be negative")
        self.size = size
        self.bits = bits
        self._ready: deque[rsa.RSAPrivateKey] = deque()
        self._lock = threading.Lock()
        self._made = 0
        self.taken = 0
        self.made_on_demand = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None and self.size:
            self._thread = threading.Thread(target=self._fill, name="rsa-key-pool", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _fill(self) -> None:
        # Each key made once: a key taken is never replaced, so `size` bounds the work.
        while self._made < self.size and not self._stop.is_set():
            key = rsa.generate_private_key(public_exponent=65537, key_size=self.bits)
            with self._lock:
                self._ready.append(key)
                self._made += 1

    def take(self, bits: int) -> rsa.RSAPrivateKey | None:
        with self._lock:
            if bits == self.bits and self._ready:
                self.taken += 1
                return self._ready.popleft()
            self.made_on_demand += 1
            return None

    def counts(self) -> dict[str, int]:
        """For the control route: how full the pool is and how it has been used."""
        with self._lock:
            return {
                "size": self.size,
                "bits": self.bits,
                "made": self._made,
                "available": len(self._ready),
                "taken": self.taken,
                "madeOnDemand": self.made_on_demand,
            }


def generate_key(
    *, kty: str, use: str, rules: EmulatorRules, pool: RsaKeyPool | None = None
) -> StoredKey:
    if kty == "RSA":
        pooled = pool.take(rules.generated_rsa_bits) if pool is not None else None
        private_key = pooled or rsa.generate_private_key(
            public_exponent=65537, key_size=rules.generated_rsa_bits
        )
        return _rsa_key(private_key.public_key(), use=use, origin="generated", private=private_key)
    material = secrets.token_bytes(rules.generated_oct_bytes)
    return StoredKey(
        kid=new_kid(), kty="oct", use=use, origin="generated", private=SecretBytes(material)
    )


def _rsa_key(
    public_key: rsa.RSAPublicKey,
    *,
    use: str,
    origin: KeyOrigin,
    private: rsa.RSAPrivateKey | None = None,
) -> StoredKey:
    numbers = public_key.public_numbers()
    n, e = _int_to_b64url(numbers.n), _int_to_b64url(numbers.e)
    return StoredKey(
        kid=new_kid(),
        kty="RSA",
        use=use,
        origin=origin,
        n=n,
        e=e,
        public_fingerprint=_fingerprint("RSA", n, e),
        private=None if private is None else SecretBytes(_private_der(private)),
    )


def _private_der(private_key: rsa.RSAPrivateKey) -> bytes:
    return private_key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


# --- uploadSecret --------------------------------------------------------------------------------


def secret_key(*, k: str, use: str, rules: EmulatorRules) -> StoredKey:
    if rules.check_upload_secret_k_is_base64url:
        try:
            b64url_decode(k)
        except ValueError:
            raise bad_request("AADB2C95029", "The key 'k' is not base64url encoded.") from None
    material = k.encode("utf-8")
    if len(material) * 8 < rules.min_uploaded_secret_bits:
        raise bad_request(
            "AADB2C90138",
            f"A secure OCT key requires at least {rules.min_uploaded_secret_bits} bits.",
        )
    return StoredKey(
        kid=new_kid(), kty="oct", use=use, origin="secret", private=SecretBytes(material)
    )


# --- uploadCertificate ---------------------------------------------------------------------------


def certificate_key(*, key: object, rules: EmulatorRules) -> StoredKey:
    """uploadCertificate: `key` is base64 of the DER certificate (PEM only if a rule allows)."""
    invalid = bad_request(
        "AADB2C90179",
        "The presented X509 certificate is not a valid X.509 certificate. The certificate needs "
        "to be presented as base64 encoded raw bytes format.",
    )
    certificate = _parse_pem_certificate(key) if rules.accept_pem_certificate else None
    if certificate is None:
        try:
            certificate = x509.load_der_x509_certificate(_b64_decode(key))
        except ValueError:
            raise invalid from None
    return _certificate_key(certificate, (certificate,), origin="certificate", rules=rules)


def _parse_pem_certificate(key: object) -> x509.Certificate | None:
    # Accept PEM as text, or PEM that was itself base64 encoded by an over-eager client.
    candidates: list[bytes] = []
    if isinstance(key, str):
        candidates.append(key.encode("utf-8", "replace"))
        with contextlib.suppress(ValueError):
            candidates.append(_b64_decode(key))
    for candidate in candidates:
        if b"-----BEGIN CERTIFICATE-----" in candidate:
            try:
                return x509.load_pem_x509_certificate(candidate)
            except ValueError:
                return None
    return None


def _certificate_key(
    leaf: x509.Certificate,
    chain: tuple[x509.Certificate, ...],
    *,
    origin: KeyOrigin,
    rules: EmulatorRules,
    private: rsa.RSAPrivateKey | None = None,
) -> StoredKey:
    public_key = leaf.public_key()
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise bad_request("AADB2C95031", "The key type is not supported; use RSA or oct.")
    _check_rsa_size(public_key.key_size, rules)
    stored = _rsa_key(public_key, use="sig", origin=origin, private=private)
    der = leaf.public_bytes(serialization.Encoding.DER)
    stored.x5c = tuple(
        base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode("ascii") for c in chain
    )
    stored.x5t = b64url(hashlib.sha1(der, usedforsecurity=False).digest())
    stored.nbf = int(leaf.not_valid_before_utc.timestamp())
    stored.exp = int(leaf.not_valid_after_utc.timestamp())
    stored.public_fingerprint = _fingerprint("x509", stored.x5t)
    return stored


def _check_rsa_size(bits: int, rules: EmulatorRules) -> None:
    if bits < rules.min_rsa_bits:
        raise bad_request(
            "AADB2C90137", f"A secure RSA key requires at least {rules.min_rsa_bits} bits."
        )


# --- uploadPkcs12 --------------------------------------------------------------------------------


def pkcs12_key(*, key: object, password: str, rules: EmulatorRules) -> StoredKey:
    malformed = bad_request("AADB2C90215", "The uploaded key is badly formatted.")
    wrong_password = bad_request(
        "AADB2C90213", "The certificate password provided in request is incorrect."
    )
    try:
        data = _b64_decode(key)
    except ValueError:
        raise malformed from None
    try:
        bundle = pkcs12.load_pkcs12(data, password.encode("utf-8") if password else None)
    except ValueError:
        # cryptography cannot tell a wrong password from garbage; the PFX outer shape can.
        raise (wrong_password if _looks_like_pfx(data) else malformed) from None
    except UnsupportedAlgorithm:
        raise wrong_password from None
    if rules.refuse_aes_pkcs12 and _PBES2_OID_DER in data:
        raise wrong_password
    if bundle.key is None:
        raise bad_request("AADB2C90178", "The certificate does not have a private key.")
    if bundle.cert is None:
        raise malformed
    leaf = bundle.cert.certificate
    if not isinstance(bundle.key, rsa.RSAPrivateKey):
        raise bad_request("AADB2C95031", "The key type is not supported; use RSA or oct.")
    if bundle.key.public_key().public_numbers() != _rsa_public_numbers(leaf):
        raise malformed
    extra = tuple(c.certificate for c in bundle.additional_certs)
    chain = (leaf, *extra) if rules.pkcs12_x5c_full_chain else (leaf,)
    return _certificate_key(leaf, chain, origin="pkcs12", rules=rules, private=bundle.key)


def _rsa_public_numbers(certificate: x509.Certificate) -> rsa.RSAPublicNumbers | None:
    public_key = certificate.public_key()
    return public_key.public_numbers() if isinstance(public_key, rsa.RSAPublicKey) else None


def _looks_like_pfx(data: bytes) -> bool:
    """PFX ::= SEQUENCE { version INTEGER (3), ... }: enough to say "a PFX, wrong password"."""
    if len(data) < 8 or data[0] != 0x30:
        return False
    length_byte = data[1]
    # Short form (< 0x80) and BER indefinite (0x80) put the content right after; long form
    # spends (length_byte & 0x7F) more bytes on the length.
    offset = 2 + (length_byte & 0x7F if length_byte > 0x80 else 0)
    return data[offset : offset + 3] == b"\x02\x01\x03"


# --- full JWKs (create with keys, PUT/PATCH) -----------------------------------------------------


def jwk_key(jwk: object, *, rules: EmulatorRules) -> StoredKey:
    """A complete JWK sent in a create or PUT body; B2C assigns the kid."""
    if not isinstance(jwk, Mapping):
        raise bad_request("AADB2C95026", "The JWK is not valid JSON.")
    if jwk.get("kid"):
        raise bad_request(
            "AADB2C95059", "One of the keys in the payload has 'kid' which is not empty."
        )
    kty = jwk.get("kty")
    if not kty:
        raise bad_request("AADB2C95030", "The key is missing the 'kty' parameter.")
    use = jwk.get("use")
    check_use(use)
    assert isinstance(use, str)
    status = jwk.get("status", "enabled")
    if status not in ("enabled", "disabled"):
        raise bad_request("BadRequest", "Invalid value for property 'status'.")
    nbf, exp = optional_int(jwk, "nbf"), optional_int(jwk, "exp")
    if isinstance(kty, str) and kty.lower() == "oct":
        k = jwk.get("k")
        if not k:
            raise missing_parameter("k")
        try:
            material = b64url_decode(k)
        except ValueError:
            raise bad_request("AADB2C95041", "The key 'k' is not base64url encoded.") from None
        stored = StoredKey(
            kid=new_kid(), kty="oct", use=use, origin="jwk", private=SecretBytes(material)
        )
    elif kty == "RSA":
        stored = _rsa_jwk(jwk, use=use, rules=rules)
    else:
        raise bad_request("AADB2C95031", "The key type is not supported; use RSA or oct.")
    stored.status, stored.nbf, stored.exp = str(status), nbf, exp
    return stored


def _rsa_jwk(jwk: Mapping[str, Any], *, use: str, rules: EmulatorRules) -> StoredKey:
    if not jwk.get("n") or not jwk.get("e"):
        raise bad_request("AADB2C95039", "The RSA key is missing the 'n' or 'e' parameter.")
    if rules.put_requires_private_members and not jwk.get("d"):
        raise missing_parameter("d")
    try:
        n = int.from_bytes(b64url_decode(jwk["n"]), "big")
        e = int.from_bytes(b64url_decode(jwk["e"]), "big")
        private_members = {
            name: b64url_decode(jwk[name]) for name in WRITE_ONLY_MEMBERS[1:] if jwk.get(name)
        }
    except ValueError:
        raise bad_request("AADB2C95040", "The JWK is not correctly formatted.") from None
    _check_rsa_size(n.bit_length(), rules)
    public_key = rsa.RSAPublicNumbers(e, n).public_key()
    stored = _rsa_key(public_key, use=use, origin="jwk")
    if private_members:
        encoded = {name: b64url(value) for name, value in private_members.items()}
        stored.private = SecretBytes(json.dumps(encoded).encode())
    if jwk.get("x5c"):
        stored.x5c = tuple(str(c) for c in jwk["x5c"])
    if jwk.get("x5t"):
        stored.x5t = str(jwk["x5t"])
    return stored


# --- shared request checks -----------------------------------------------------------------------


def check_use(use: object) -> None:
    if use is None or use == "":
        raise missing_parameter("use")
    if use not in ("sig", "enc"):
        raise bad_request("AADB2C95033", "The key usage must be 'sig' or 'enc'.")


def check_kty(kty: object) -> str:
    if kty is None or kty == "":
        raise bad_request("AADB2C95030", "The key is missing the 'kty' parameter.")
    if not isinstance(kty, str) or kty.lower() not in ("rsa", "oct"):
        raise bad_request("AADB2C95031", "The key type is not supported; use RSA or oct.")
    return "RSA" if kty.lower() == "rsa" else "oct"


def optional_int(body: Mapping[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_request("BadRequest", f"Invalid value for property '{name}': expected Int64.")
    return value
