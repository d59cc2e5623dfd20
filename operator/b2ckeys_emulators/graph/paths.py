"""Graph beta paths under `/trustFramework`: what a request names and which operation it is.

Pure functions (no HTTP objects), so the routing rules are testable and readable on their own.
Graph segment names are case-insensitive; key set ids and kids are kept as sent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

from b2ckeys_emulators.graph.keys import B2CRefusal
from b2ckeys_emulators.graph.rules import EmulatorRules

_ODATA_KEY = re.compile(r"^keySets\('((?:[^']|'')*)'\)$", re.IGNORECASE)
_ACTIONS = frozenset(
    {"generatekey", "uploadsecret", "uploadcertificate", "uploadpkcs12", "getactivekey"}
)


@dataclass(frozen=True)
class GraphTarget:
    """What a Graph path names: the collection, a key set, an action on it, or one key."""

    key_set_id: str | None = None
    action: str | None = None  # lower-cased: generatekey, uploadsecret, ..., keys_v2
    kid: str | None = None

    @property
    def shape(self) -> str:
        if self.key_set_id is None:
            return "collection"
        if self.action is None:
            return "item"
        if self.action == "keys_v2" and self.kid is not None:
            return "key_v2"
        return self.action


@dataclass(frozen=True)
class Operation:
    name: str
    write: bool  # changes state: serialised per key set (AADB2C95053)
    needs_write_role: bool  # needs TrustFrameworkKeySet.ReadWrite.All


# (shape, method) -> (operation name, changes state)
_OPERATIONS: dict[tuple[str, str], tuple[str, bool]] = {
    ("collection", "GET"): ("list", False),
    ("collection", "POST"): ("create", True),
    ("item", "GET"): ("get", False),
    ("item", "PUT"): ("replace", True),
    ("item", "PATCH"): ("replace", True),
    ("item", "DELETE"): ("delete", True),
    ("generatekey", "POST"): ("generate_key", True),
    ("uploadsecret", "POST"): ("upload_secret", True),
    ("uploadcertificate", "POST"): ("upload_certificate", True),
    ("uploadpkcs12", "POST"): ("upload_pkcs12", True),
    ("getactivekey", "GET"): ("active_key", False),
    ("keys_v2", "GET"): ("list_keys", False),
    ("key_v2", "GET"): ("get_key", False),
    ("key_v2", "PATCH"): ("set_key_status", True),
}


def parse_graph_path(raw_path: str) -> GraphTarget:
    """`raw_path` is the still-encoded path after `/beta`, e.g. `/trustFramework/keySets/x`."""
    tail = raw_path.strip("/")
    segments = [unquote(s) for s in tail.split("/")] if tail else []
    if not segments or segments[0].lower() != "trustframework":
        raise _unknown_segment(segments[0] if segments else "")
    rest = segments[1:]
    if not rest:
        raise _unknown_segment("trustFramework")
    odata = _ODATA_KEY.match(rest[0])
    if odata:
        rest = [odata.group(1).replace("''", "'"), *rest[1:]]
    elif rest[0].lower() == "keysets":
        rest = rest[1:]
        if not rest:
            return GraphTarget()
    else:
        raise _unknown_segment(rest[0])
    key_set_id, rest = rest[0], rest[1:]
    if not rest:
        return GraphTarget(key_set_id=key_set_id)
    # The SDK calls functions as `getActiveKey()`; OData also allows the namespace prefix.
    action = rest[0].lower().removeprefix("microsoft.graph.").removesuffix("()")
    if action in _ACTIONS and len(rest) == 1:
        return GraphTarget(key_set_id=key_set_id, action=action)
    if action == "keys_v2" and len(rest) <= 2:
        kid = rest[1] if len(rest) == 2 else None
        return GraphTarget(key_set_id=key_set_id, action=action, kid=kid)
    raise _unknown_segment(rest[0])


def resolve_operation(target: GraphTarget, method: str, rules: EmulatorRules) -> Operation:
    found = _OPERATIONS.get((target.shape, method.upper()))
    patch_refused = method.upper() == "PATCH" and target.shape == "item"
    if found is None or (patch_refused and not rules.accept_patch_as_put):
        raise B2CRefusal(
            405, "BadRequest", "Specified HTTP method is not allowed for the request uri."
        )
    name, write = found
    reads_keys_v2 = target.shape in ("keys_v2", "key_v2") and rules.keys_v2_read_needs_readwrite
    return Operation(name=name, write=write, needs_write_role=write or reads_keys_v2)


def _unknown_segment(segment: str) -> B2CRefusal:
    return B2CRefusal(400, "BadRequest", f"Resource not found for the segment '{segment}'.")
