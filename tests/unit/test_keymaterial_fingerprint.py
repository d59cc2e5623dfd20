"""Fingerprints recognise a secret they were made from, and nothing else."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from b2ckeys.keymaterial import fingerprint_matches, secret_fingerprint
from b2ckeys.keymaterial.fingerprint import SCRYPT_N, SCRYPT_P, SCRYPT_R
from b2ckeys.secret import SecretStr

SECRET = SecretStr("facebook-app-secret-0123456789")
SALT = bytes(range(16))


def test_format_names_its_scheme_and_costs() -> None:
    version, kdf, n, r, p, salt, digest = secret_fingerprint(SECRET, salt=SALT).split("$")
    assert (version, kdf) == ("v1", "scrypt")
    assert (int(n), int(r), int(p)) == (SCRYPT_N, SCRYPT_R, SCRYPT_P)
    assert base64.urlsafe_b64decode(salt + "==") == SALT
    assert len(base64.urlsafe_b64decode(digest + "=")) == 32


def test_digest_is_scrypt_then_hmac_with_the_pepper() -> None:
    # An independent recomputation from the documented construction.
    stretched = hashlib.scrypt(
        SECRET.reveal().encode(), salt=SALT, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32
    )
    expected = hmac.new(b"pepper", stretched, hashlib.sha256).digest()
    digest = secret_fingerprint(SECRET, salt=SALT, pepper=b"pepper").rsplit("$", 1)[1]
    assert base64.urlsafe_b64decode(digest + "=") == expected


def test_random_salt_makes_each_fingerprint_different_yet_matching() -> None:
    first, second = secret_fingerprint(SECRET), secret_fingerprint(SECRET)
    assert first != second
    assert fingerprint_matches(SECRET, first)
    assert fingerprint_matches(SECRET, second)


def test_other_secret_or_pepper_does_not_match() -> None:
    fingerprint = secret_fingerprint(SECRET, pepper=b"operator-pepper")
    assert fingerprint_matches(SECRET, fingerprint, pepper=b"operator-pepper")
    assert not fingerprint_matches(SECRET, fingerprint)
    assert not fingerprint_matches(
        SecretStr(SECRET.reveal() + "x"), fingerprint, pepper=b"operator-pepper"
    )


def test_fingerprint_does_not_contain_the_secret() -> None:
    fingerprint = secret_fingerprint(SECRET)
    assert SECRET.reveal() not in fingerprint
    assert base64.urlsafe_b64encode(SECRET.reveal().encode()).decode()[:20] not in fingerprint


def test_stronger_costs_from_an_older_or_newer_operator_still_verify() -> None:
    salt = base64.urlsafe_b64encode(SALT).rstrip(b"=").decode()
    stretched = hashlib.scrypt(
        SECRET.reveal().encode(), salt=SALT, n=2**15, r=8, p=1, dklen=32, maxmem=2**26
    )
    digest = (
        base64.urlsafe_b64encode(hmac.new(b"", stretched, hashlib.sha256).digest())
        .rstrip(b"=")
        .decode()
    )
    assert fingerprint_matches(SECRET, f"v1$scrypt${2**15}$8$1${salt}${digest}")


@pytest.mark.parametrize(
    "tampered",
    [
        "",
        "v1$scrypt",
        "v2$scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "v1$bcrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "v1$scrypt$1048576$8$1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "v1$scrypt$16383$8$1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "v1$scrypt$16384$64$1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "v1$scrypt$16384$8$1$$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "v1$scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA$AAAA",
        "v1$scrypt$-1$8$1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "v1$scrypt$16384$8$1$ÄÄÄÄ$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ],
)
def test_malformed_or_too_costly_fingerprints_never_match(tampered: str) -> None:
    assert not fingerprint_matches(SECRET, tampered)


def test_salt_must_have_a_sane_length() -> None:
    with pytest.raises(ValueError, match="salt"):
        secret_fingerprint(SECRET, salt=b"")
