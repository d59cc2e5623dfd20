"""A Graph answer as it came, for tools that must see what the typed client translates away.

`b2ckeys conformance` compares B2C's exact HTTP statuses, AADB2C codes and headers with what the
emulator does; the reconciler never needs them and keeps speaking `GraphError`s.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class RawResponse:
    """One HTTP answer from Graph: status, headers (lower-cased names) and the JSON body."""

    method: str
    path: str  # below the Graph base URL, e.g. /trustFramework/keySets/B2C_1A_x/getActiveKey
    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: Any = None  # the parsed JSON body; None when empty or not JSON

    @property
    def error_code(self) -> str | None:
        """Graph's `error.code` (for B2C usually an AADB2Cnnnnn code), when the body has one."""
        if isinstance(self.body, dict) and isinstance(self.body.get("error"), dict):
            code = self.body["error"].get("code")
            return str(code) if code else None
        return None

    @property
    def json_object(self) -> dict[str, Any]:
        """The body when it is a JSON object, else an empty one."""
        return self.body if isinstance(self.body, dict) else {}
