"""Refusals: the one error key material raises, and the first checks of every entry point.

Each entry point runs an ordered chain of small checks and stops at the first failure with a
`KeyMaterialError` that carries a stable `reason` and a message naming the Secret key. Messages,
reprs and exception chains never carry key material, passwords or secret values: `attempt`
swallows library exceptions where they happen and the caller raises a fresh error outside the
`except` block, so not even `__context__` points back at them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Literal, NoReturn, TypeVar

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
    "TemporaryCertificate",  # cert-manager's placeholder, written while the issuer cannot sign
    "KeyUsageMismatch",
]


_T = TypeVar("_T")


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


def fail(reason: Reason, field: str | None, message: str) -> NoReturn:
    raise KeyMaterialError(reason, field, message)


def attempt(action: Callable[[], _T]) -> _T | None:
    """Run a library call on untrusted input; None when it fails in any way.

    The set of exceptions `cryptography` raises on hostile input is not closed (ValueError,
    TypeError, UnsupportedAlgorithm, InvalidSignature, warnings turned into errors, ...), and
    their messages may quote the input, so all are swallowed here and the caller raises its own.
    """
    try:
        return action()
    except Exception:
        return None


# --- the first checks: presence and size ----------------------------------------------------


def require_field(data: Mapping[str, bytes], field: str, *, allow_empty: bool = False) -> bytes:
    """The value of `field` in a Secret's (or ConfigMap's) decoded data; refuses a missing one,
    and a blank one unless `allow_empty` (a PKCS#12 password may be empty)."""
    value = data.get(field)
    if value is None:
        present = ", ".join(sorted(data)) or "none"
        fail(
            "Missing",
            field,
            f"There is no key {field!r} (keys present: {present}); add it or point at another key.",
        )
    if not allow_empty and (not value or value.isspace()):
        fail("Empty", field, f"The key {field!r} is empty; put the key material in it.")
    return value


def sized(value: bytes, field: str, limit: int) -> bytes:
    if len(value) > limit:
        too_large(field, len(value), limit)
    return value


def too_large(field: str, size: int, limit: int) -> NoReturn:
    fail(
        "TooLarge",
        field,
        f"The Secret key {field!r} is {size} bytes, over the {limit}-byte limit; "
        "check that it holds only the expected key material.",
    )


def too_many_blocks(field: str, limit: int) -> NoReturn:
    fail(
        "TooLarge",
        field,
        f"The Secret key {field!r} holds more than {limit} PEM blocks or certificates; "
        "keep only the certificate, its chain and (in tls.key) its key.",
    )
