"""A string secret (a client secret, a pasted key) for uploadSecret."""

from __future__ import annotations

from b2ckeys.keymaterial.errors import attempt, fail, too_large
from b2ckeys.keymaterial.limits import MAX_STRING_SECRET_BYTES
from b2ckeys.secret import SecretStr


def load_string_secret(data: bytes, *, field: str) -> SecretStr:
    """A string secret for uploadSecret.

    Exactly one trailing newline (LF or CRLF) is removed, because `kubectl create secret
    --from-file` and editors add one that was never part of the secret. All other whitespace is
    kept: a secret may legitimately contain spaces, and silently trimming more could upload a
    value that differs from the one the identity provider holds. A value that is only
    whitespace is refused as a mistake rather than uploaded.
    """
    if len(data) > MAX_STRING_SECRET_BYTES:
        too_large(field, len(data), MAX_STRING_SECRET_BYTES)
    text = attempt(lambda: data.decode("utf-8", errors="strict"))
    if text is None:
        fail("NotUtf8", field, f"The Secret key {field!r} is not UTF-8 text; B2C stores text.")
    if text.endswith("\r\n"):
        text = text[:-2]
    elif text.endswith("\n"):
        text = text[:-1]
    if not text:
        fail("Empty", field, f"The Secret key {field!r} is empty; put the secret value in it.")
    if not text.strip():
        fail(
            "Empty",
            field,
            f"The Secret key {field!r} holds only whitespace; put the secret value in it.",
        )
    return SecretStr(text)
