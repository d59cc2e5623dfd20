"""Text encodings that B2C, JOSE and Kubernetes share: one implementation of each.

- base64url without padding (JOSE: x5t, x5t#S256, and our fingerprints);
- RFC 3339 timestamps in UTC, to the second (Kubernetes status and Events; B2C's dates are
  whole seconds).
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes | None:
    """The bytes, or None when `text` is not base64url (padded or not)."""
    if not text or not text.isascii():
        return None
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None


def to_rfc3339(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def from_rfc3339(text: str | None) -> int | None:
    if not text:
        return None
    try:
        return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())
    except ValueError:
        return None
