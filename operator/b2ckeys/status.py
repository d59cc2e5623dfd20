"""Typed views of a TrustFrameworkKeySet's status, and the patches the operator writes.

Read through `parse_status`; written as one `SyncedState` / `ObservedState` patch (with the
Ready condition added by the reconciler) or a `PendingWrite` intent. Every member written is one
the CRD declares (tests/unit/test_status_schema.py), and absent members are written as explicit
nulls, since status is merge-patched.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from b2ckeys.formats import from_rfc3339, to_rfc3339
from b2ckeys.graph.client import RemoteKey


@dataclass(frozen=True)
class SyncedKey:
    """The key this resource last put into B2C (from status.syncedKey)."""

    kid: str
    kty: str | None = None
    use: str | None = None
    x5t: str | None = None
    nbf: int | None = None
    exp: int | None = None
    uploaded_at: int | None = None


@dataclass(frozen=True)
class PendingWrite:
    """An intent recorded in status before a write (status.pendingWrite), for crash safety."""

    action: str
    key_set_id: str
    fingerprint: str | None = None
    x5t: str | None = None
    nbf: int | None = None
    exp: int | None = None
    started_at: int | None = None

    def to_status(self) -> dict[str, Any]:
        # Every member, absent ones as null: status is merge-patched, and a member left over from
        # an earlier intent (an old exp) would make this one unrecognisable after a crash.
        return {
            "action": self.action,
            "keySetId": self.key_set_id,
            "fingerprint": self.fingerprint,
            "x5t": self.x5t,
            "nbf": self.nbf,
            "exp": self.exp,
            "startedAt": to_rfc3339(self.started_at),
        }


@dataclass(frozen=True)
class UploadedKey:
    """One key this resource put into B2C (status.uploadedKeys[]): the only keys retirement
    may ever disable. Dates are seconds since the epoch."""

    kid: str
    uploaded_at: int
    x5t: str | None = None
    nbf: int | None = None
    exp: int | None = None
    # When a newer key of this resource was first seen to be the active key.
    superseded_at: int | None = None
    # When retirement disabled it (or found it already disabled).
    retired_at: int | None = None
    # The last refusal of an attempt to retire it (said once as an Event, retried at resync).
    error: str | None = None

    def to_status(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"kid": self.kid, "uploadedAt": to_rfc3339(self.uploaded_at)}
        for name, value in (
            ("x5t", self.x5t),
            ("notBefore", to_rfc3339(self.nbf)),
            ("expires", to_rfc3339(self.exp)),
            ("supersededAt", to_rfc3339(self.superseded_at)),
            ("retiredAt", to_rfc3339(self.retired_at)),
            ("error", self.error),
        ):
            if value is not None:
                doc[name] = value
        return doc


def parse_uploaded_keys(raw: Any) -> tuple[UploadedKey, ...]:
    out: list[UploadedKey] = []
    for item in raw if isinstance(raw, list) else ():
        if not isinstance(item, Mapping) or not item.get("kid"):
            continue
        uploaded_at = from_rfc3339(item.get("uploadedAt"))
        if uploaded_at is None:
            continue
        out.append(
            UploadedKey(
                kid=str(item["kid"]),
                uploaded_at=uploaded_at,
                x5t=item.get("x5t"),
                nbf=from_rfc3339(item.get("notBefore")),
                exp=from_rfc3339(item.get("expires")),
                superseded_at=from_rfc3339(item.get("supersededAt")),
                retired_at=from_rfc3339(item.get("retiredAt")),
                error=item.get("error"),
            )
        )
    return tuple(out)


@dataclass(frozen=True)
class KeyStatusResult:
    """What the operator did with the last emergency enable/disable request
    (status.keyStatusRequest)."""

    id: str
    kid: str
    status: str  # the status asked for: enabled or disabled
    result: str  # Done, Refused or Failed (Failed is retried at the next reconcile)
    message: str
    at: int | None = None

    def to_status(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kid": self.kid,
            "status": self.status,
            "result": self.result,
            "message": self.message,
            "at": to_rfc3339(self.at),
        }


def _parse_key_status_result(raw: Any) -> KeyStatusResult | None:
    if not isinstance(raw, Mapping) or not raw.get("id"):
        return None
    return KeyStatusResult(
        id=str(raw["id"]),
        kid=str(raw.get("kid") or ""),
        status=str(raw.get("status") or ""),
        result=str(raw.get("result") or ""),
        message=str(raw.get("message") or ""),
        at=from_rfc3339(raw.get("at")),
    )


@dataclass(frozen=True)
class StatusView:
    key_set_id: str | None = None
    synced: SyncedKey | None = None
    source_fingerprint: str | None = None
    pending: PendingWrite | None = None
    conditions: tuple[Mapping[str, Any], ...] = ()
    uploaded: tuple[UploadedKey, ...] = ()
    key_status_request: KeyStatusResult | None = None

    @property
    def ready(self) -> Mapping[str, Any]:
        """The Ready condition as last written ({} when there is none)."""
        return next((c for c in self.conditions if c.get("type") == "Ready"), {})


def parse_status(status: Mapping[str, Any] | None) -> StatusView:
    status = status or {}
    synced = None
    raw = status.get("syncedKey")
    if isinstance(raw, Mapping) and raw.get("kid"):
        synced = SyncedKey(
            kid=str(raw["kid"]),
            kty=raw.get("kty"),
            use=raw.get("use"),
            x5t=raw.get("x5t"),
            nbf=from_rfc3339(raw.get("notBefore")),
            exp=from_rfc3339(raw.get("expires")),
            uploaded_at=from_rfc3339(raw.get("uploadedAt")),
        )
    pending = None
    raw = status.get("pendingWrite")
    if isinstance(raw, Mapping) and raw.get("action"):
        pending = PendingWrite(
            action=str(raw["action"]),
            key_set_id=str(raw.get("keySetId", "")),
            fingerprint=raw.get("fingerprint"),
            x5t=raw.get("x5t"),
            nbf=raw.get("nbf"),
            exp=raw.get("exp"),
            started_at=from_rfc3339(raw.get("startedAt")),
        )
    return StatusView(
        key_set_id=status.get("keySetId"),
        synced=synced,
        source_fingerprint=status.get("sourceFingerprint"),
        pending=pending,
        conditions=tuple(c for c in status.get("conditions") or () if isinstance(c, Mapping)),
        uploaded=parse_uploaded_keys(status.get("uploadedKeys")),
        key_status_request=_parse_key_status_result(status.get("keyStatusRequest")),
    )


def key_status(
    key: RemoteKey, *, synced: bool = False, uploaded_at: int | None = None
) -> dict[str, Any]:
    """status.activeKey, or status.syncedKey when `synced`: only the members the CRD declares
    for each, since the API server silently drops any other (B2C's enabled/disabled status is
    declared for the active key only, the upload time for the synced key only)."""
    doc: dict[str, Any] = {"kid": key.kid, "kty": key.kty, "use": key.use}
    for name, value in (
        ("x5t", key.x5t),
        ("notBefore", to_rfc3339(key.nbf)),
        ("expires", to_rfc3339(key.exp)),
        ("status", key.status if key.status != "unknown" and not synced else None),
        ("uploadedAt", to_rfc3339(uploaded_at) if synced else None),
    ):
        if value is not None:
            doc[name] = value
        elif name != ("status" if synced else "uploadedAt"):
            # Status is merge-patched: an absent member would keep the previous key's value
            # (an old expiry under a new kid), so declared members are cleared explicitly.
            doc[name] = None
    return doc


@dataclass(frozen=True)
class SyncedState:
    """What a Sync pass leaves in status: B2C's view and the key this resource put there."""

    key_set_id: str
    active: RemoteKey | None
    key_count: int
    synced: RemoteKey | None
    uploaded_at: int | None
    source_fingerprint: str | None
    # status.uploadedKeys and status.foreignKeys; None leaves them as they are.
    uploaded_keys: tuple[UploadedKey, ...] | None = None
    foreign_keys: tuple[str, ...] | None = None
    # The key B2C switches to next (for metrics; status does not carry it).
    staged: RemoteKey | None = None

    def to_patch(self) -> dict[str, Any]:
        doc: dict[str, Any] = {}
        if self.uploaded_keys is not None:
            # A list replaces the whole member under a merge patch, as wanted.
            doc["uploadedKeys"] = [k.to_status() for k in self.uploaded_keys]
        if self.foreign_keys is not None:
            doc["foreignKeys"] = list(self.foreign_keys)
        return doc | {
            "keySetId": self.key_set_id,
            "activeKey": key_status(self.active) if self.active else None,
            "syncedKey": (
                key_status(self.synced, synced=True, uploaded_at=self.uploaded_at)
                if self.synced
                else None
            ),
            "keyCount": self.key_count,
            "sourceFingerprint": self.source_fingerprint,
            # The intent is fulfilled (or was never needed), and a Sync pass plans nothing.
            "pendingWrite": None,
            "plan": None,
        }


@dataclass(frozen=True)
class ObservedState:
    """What an Observe pass leaves in status: B2C's view and the writes Sync mode would make;
    the synced key and fingerprint stay as the last Sync pass left them."""

    key_set_id: str | None
    active: RemoteKey | None
    key_count: int
    plan: tuple[str, ...]
    staged: RemoteKey | None = None

    def to_patch(self) -> dict[str, Any]:
        return {
            "keySetId": self.key_set_id,
            "activeKey": key_status(self.active) if self.active else None,
            "keyCount": self.key_count,
            "plan": list(self.plan),
        }


KeySetState = SyncedState | ObservedState


def changes(patch: Mapping[str, Any], current: Mapping[str, Any]) -> bool:
    """Whether merge-patching `patch` onto `current` would change anything: a null clears a
    member (so it matches an absent one), objects merge member by member, the rest replaces."""
    return any(_differs(value, current.get(name)) for name, value in patch.items())


def _differs(new: Any, old: Any) -> bool:
    if new is None:
        return old is not None
    if isinstance(new, Mapping):
        return not isinstance(old, Mapping) or changes(new, old)
    return bool(new != old)
