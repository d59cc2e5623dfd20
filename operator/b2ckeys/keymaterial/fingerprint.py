"""Fingerprints that recognise an already-uploaded string secret without revealing it.

B2C never returns a secret's value, so the operator records a fingerprint in the resource's
status and compares it on the next reconcile. Status is readable by anyone who can read the
resource, so the fingerprint must not let anyone recover the secret or test guesses cheaply:
scrypt (memory-hard) over the secret with a random per-call salt, then an HMAC keyed with an
optional operator pepper, so a stolen status alone is not even enough to test a guess.

Format: ``v1$scrypt$<N>$<r>$<p>$<salt, base64url>$<digest, base64url>``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from b2ckeys.formats import b64url, b64url_decode
from b2ckeys.secret import SecretStr

_VERSION = "v1"
_KDF = "scrypt"
# N=2^14, r=8, p=1 is the RFC 7914 interactive setting: 16 MiB and ~40 ms per call on one core
# here (see benchmarks/bench_keymaterial.py). The operator computes one per string-secret
# reconcile, so tens of ms is cheap for it and expensive for anyone testing guesses.
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
# 16 random bytes make every fingerprint unique, so precomputed tables are useless.
SALT_BYTES = 16
DIGEST_BYTES = 32
# A fingerprint read back from status is untrusted; these bounds keep a tampered one from making
# the operator spend more than ~2x today's memory/time, while still accepting stronger settings.
_MAX_N = 2**15
_MAX_R = 8
_MAX_P = 2
_SALT_RANGE = range(8, 65)


def secret_fingerprint(secret: SecretStr, *, salt: bytes | None = None, pepper: bytes = b"") -> str:
    """A salted, memory-hard, optionally peppered fingerprint of `secret` for status."""
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    if len(salt) not in _SALT_RANGE:
        raise ValueError(f"a fingerprint salt must be {_SALT_RANGE.start}-64 bytes")
    digest = _digest(secret, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P, pepper)
    fields = (
        _VERSION,
        _KDF,
        str(SCRYPT_N),
        str(SCRYPT_R),
        str(SCRYPT_P),
        b64url(salt),
        b64url(digest),
    )
    return "$".join(fields)


def fingerprint_matches(secret: SecretStr, fingerprint: str, *, pepper: bytes = b"") -> bool:
    """Whether `fingerprint` was made from `secret` and `pepper`; a malformed one never matches."""
    parsed = _parse(fingerprint)
    if parsed is None:
        return False
    n, r, p, salt, expected = parsed
    return hmac.compare_digest(_digest(secret, salt, n, r, p, pepper), expected)


def _digest(secret: SecretStr, salt: bytes, n: int, r: int, p: int, pepper: bytes) -> bytes:
    # scrypt needs 128*r*N bytes; the default 32 MiB ceiling would refuse N=2^15, r=8.
    maxmem = 128 * r * n + 2**20
    stretched = hashlib.scrypt(
        secret.reveal().encode("utf-8"),
        salt=salt,
        n=n,
        r=r,
        p=p,
        dklen=DIGEST_BYTES,
        maxmem=maxmem,
    )
    return hmac.new(pepper, stretched, hashlib.sha256).digest()


def _parse(fingerprint: str) -> tuple[int, int, int, bytes, bytes] | None:
    parts = fingerprint.split("$")
    if len(parts) != 7 or parts[0] != _VERSION or parts[1] != _KDF:
        return None
    if not all(part.isdigit() and len(part) <= 6 for part in parts[2:5]):
        return None
    n, r, p = int(parts[2]), int(parts[3]), int(parts[4])
    is_power_of_two = n > 1 and n & (n - 1) == 0
    if not (is_power_of_two and n <= _MAX_N and 1 <= r <= _MAX_R and 1 <= p <= _MAX_P):
        return None
    salt = b64url_decode(parts[5])
    digest = b64url_decode(parts[6])
    if salt is None or digest is None or len(salt) not in _SALT_RANGE:
        return None
    if len(digest) != hashlib.sha256().digest_size:
        return None
    return n, r, p, salt, digest
