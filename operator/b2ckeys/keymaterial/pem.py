"""PEM framing: the `-----BEGIN X-----` ... `-----END X-----` blocks in a Secret key.

Only the framing is read here (label, base64 body, the legacy encryption header); what a block
holds is decided by `keys` and `certificates`.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from functools import partial

from b2ckeys.keymaterial.errors import attempt, fail, too_many_blocks


@dataclass(frozen=True)
class PemBlock:
    label: bytes
    der: bytes | None  # None when the body is not valid base64
    legacy_encrypted: bool  # RFC 1421 "Proc-Type: 4,ENCRYPTED" header (OpenSSL's old format)


PEM_BEGIN = b"-----BEGIN "
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


def pem_blocks(data: bytes, field: str, max_blocks: int) -> list[PemBlock]:
    """Every `-----BEGIN X-----` ... `-----END X-----` block; text between blocks is ignored."""
    blocks: list[PemBlock] = []
    position = 0
    while (start := data.find(PEM_BEGIN, position)) >= 0:
        label_start = start + len(PEM_BEGIN)
        label_end = data.find(_PEM_DASHES, label_start, label_start + _PEM_MAX_LABEL + 1)
        label = data[label_start:label_end] if label_end >= 0 else b""
        if not label or not set(label) <= _PEM_LABEL_CHARS:
            fail(
                "Malformed",
                field,
                f"PEM block #{len(blocks) + 1} in {field!r} has a broken BEGIN line.",
            )
        end_marker = b"-----END " + label + _PEM_DASHES
        body_start = label_end + len(_PEM_DASHES)
        body_end = data.find(end_marker, body_start)
        if body_end < 0:
            fail(
                "Malformed",
                field,
                f"PEM block #{len(blocks) + 1} in {field!r} has no matching END line.",
            )
        if len(blocks) >= max_blocks:
            too_many_blocks(field, max_blocks)
        body = data[body_start:body_end]
        # Header lines ("Name: value") only appear in legacy encrypted keys; any other colon
        # makes the body invalid base64, which `der=None` reports as malformed.
        legacy_encrypted = b"Proc-Type:" in body and b"ENCRYPTED" in body
        der = None if legacy_encrypted else attempt(partial(_strict_b64, body))
        blocks.append(PemBlock(label, der, legacy_encrypted))
        position = body_end + len(end_marker)
    return blocks


def _strict_b64(body: bytes) -> bytes:
    return base64.b64decode(b"".join(body.split()), validate=True)


def label_text(label: bytes) -> str:
    return label.decode("ascii") if label in _KNOWN_LABELS else "unrecognised"


def is_private_key_label(label: bytes) -> bool:
    return label.endswith(b"PRIVATE KEY")
