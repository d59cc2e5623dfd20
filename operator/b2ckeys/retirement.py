"""Key retirement and emergency key status requests: pure decisions, no I/O.

B2C never removes a key from a set; keys_v2 `PATCH {status: disabled}` is the only way to take
one out of rotation. Two paths use it:

- retirement (spec.retirement.disableSupersededAfter): a key this resource uploaded (it is in
  status.uploadedKeys) is disabled once a newer key of this resource has been THE active key
  (B2C's rule, `plan.active_key`) for that long. The active key is never a candidate, so the set
  always keeps the key B2C signs with.
- an emergency request (`b2ckeys disable|enable`, an annotation): any kid of the set, refused
  when disabling it would leave no key usable now.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from b2ckeys.graph.client import RemoteKey
from b2ckeys.status import PendingWrite, SyncedKey, UploadedKey

# The most keys status records; the oldest are forgotten first, and a forgotten key is never
# touched again (the safe direction). Rotation adds one key per period, so this is years.
MAX_RECORDED = 20
# The most foreign kids status lists (their number is the set's keyCount minus ours).
MAX_FOREIGN_LISTED = 16


# --- the record of uploads --------------------------------------------------------------------


def record_upload(
    record: Sequence[UploadedKey], key: RemoteKey, uploaded_at: int
) -> tuple[UploadedKey, ...]:
    """The record with `key` added (once), keeping the newest MAX_RECORDED."""
    if any(r.kid == key.kid for r in record):
        return tuple(record)
    added = UploadedKey(key.kid, uploaded_at, x5t=key.x5t, nbf=key.nbf, exp=key.exp)
    newest = sorted([*record, added], key=lambda r: r.uploaded_at)
    return tuple(newest[-MAX_RECORDED:])


def seed_record(record: Sequence[UploadedKey], synced: SyncedKey | None) -> tuple[UploadedKey, ...]:
    """Status written before uploads were recorded names the last upload in syncedKey: it was
    uploaded by this resource when syncedKey carries an uploadedAt (an adopted key never does)."""
    if record or synced is None or synced.uploaded_at is None:
        return tuple(record)
    return (
        UploadedKey(synced.kid, synced.uploaded_at, x5t=synced.x5t, nbf=synced.nbf, exp=synced.exp),
    )


def foreign_kids(record: Sequence[UploadedKey], keys: Sequence[RemoteKey]) -> tuple[str, ...]:
    """Kids in the set that this resource did not upload (by hand, another tool): reported,
    never changed by retirement."""
    ours = {r.kid for r in record}
    return tuple(k.kid for k in keys if k.kid not in ours)[:MAX_FOREIGN_LISTED]


# --- retirement ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetirementPlan:
    record: tuple[UploadedKey, ...]  # with supersededAt marks and retirements already settled
    disable: tuple[str, ...] = ()  # kids to PATCH to disabled now, oldest first
    next_due: float | None = None  # seconds until the next key becomes due


def plan_retirement(
    record: Sequence[UploadedKey],
    keys: Sequence[RemoteKey],
    active: RemoteKey | None,
    now: int,
    *,
    after: float,
) -> RetirementPlan:
    """Which recorded keys to disable now. A key K is superseded once a key this resource
    uploaded after K is the active key; it is due `after` seconds later. Never the active key,
    never a key outside the record, never a key not yet started (it is still to become active),
    and a key already disabled or expired only has its retirement noted (no write)."""
    by_kid = {k.kid: k for k in keys}
    current = next((r for r in record if active is not None and r.kid == active.kid), None)
    since: int | None = None
    if active is not None and current is not None:
        # Active from its notBefore or its upload, whichever is later; never later than now
        # (B2C says it is active, whatever our clock says about its notBefore).
        started = max(active.nbf if active.nbf is not None else 0, current.uploaded_at)
        since = min(started, now)
    settled: list[UploadedKey] = []
    disable: list[str] = []
    waits: list[float] = []
    for entry in record:
        remote = by_kid.get(entry.kid)
        if (
            since is not None
            and current is not None
            and entry.superseded_at is None
            and entry.kid != current.kid
            and entry.uploaded_at <= current.uploaded_at
            and remote is not None
            and (remote.nbf is None or remote.nbf <= now)
        ):
            entry = replace(entry, superseded_at=since)
        if (
            entry.retired_at is None
            and entry.superseded_at is not None
            and remote is not None
            and (active is None or remote.kid != active.kid)
        ):
            due = entry.superseded_at + after
            if now < due:
                waits.append(due - now)
            elif remote.status == "disabled" or (remote.exp is not None and remote.exp <= now):
                entry = replace(entry, retired_at=now, error=None)
            else:
                disable.append(entry.kid)
        settled.append(entry)
    return RetirementPlan(
        record=tuple(settled), disable=tuple(disable), next_due=min(waits) if waits else None
    )


def mark_retired(
    record: Sequence[UploadedKey], kid: str, now: int, *, error: str | None = None
) -> tuple[UploadedKey, ...]:
    """The record after one disable: done (retiredAt), or refused (error kept for the next try)."""
    return tuple(
        (replace(r, retired_at=now, error=None) if error is None else replace(r, error=error))
        if r.kid == kid
        else r
        for r in record
    )


# --- emergency requests -------------------------------------------------------------------------

KeyStatusName = Literal["enabled", "disabled"]


@dataclass(frozen=True)
class KeyStatusRequest:
    """An emergency enable/disable (the key-status-request annotation's JSON value)."""

    id: str
    kid: str
    status: KeyStatusName

    def to_annotation(self) -> str:
        return json.dumps({"id": self.id, "kid": self.kid, "status": self.status})


def parse_key_status_request(value: str) -> KeyStatusRequest:
    """Raises ValueError naming what is wrong; the message never echoes the value."""
    try:
        doc = json.loads(value)
    except ValueError:
        raise ValueError("the key status request is not JSON") from None
    if not isinstance(doc, Mapping):
        raise ValueError("the key status request must be a JSON object")
    request_id, kid, status = doc.get("id"), doc.get("kid"), doc.get("status")
    if not isinstance(request_id, str) or not request_id:
        raise ValueError("the key status request needs an id")
    if not isinstance(kid, str) or not kid:
        raise ValueError("the key status request needs a kid")
    if status not in ("enabled", "disabled"):
        raise ValueError("the key status request's status must be enabled or disabled")
    return KeyStatusRequest(request_id, kid, status)


@dataclass(frozen=True)
class RequestVerdict:
    """What to do with a request: write (PATCH) or not, and what status will say."""

    write: bool
    result: Literal["Done", "Refused"]
    message: str


def _usable_now(key: RemoteKey, now: int) -> bool:
    return (
        key.status != "disabled"
        and (key.exp is None or key.exp > now)
        and (key.nbf is None or key.nbf <= now)
    )


def judge_request(request: KeyStatusRequest, keys: Sequence[RemoteKey], now: int) -> RequestVerdict:
    """Decide an emergency request from the statuses keys_v2 just reported. Disabling is refused
    when no other key would be usable now (enabled, started, unexpired): B2C would have no key
    to sign with, and every policy using the set would fail."""
    target = next((k for k in keys if k.kid == request.kid), None)
    if target is None:
        return RequestVerdict(False, "Refused", f"no key {request.kid} in the key set")
    if target.status == request.status:
        return RequestVerdict(False, "Done", f"key {request.kid} was already {request.status}")
    if request.status == "disabled" and not any(
        _usable_now(k, now) for k in keys if k.kid != request.kid
    ):
        return RequestVerdict(
            False,
            "Refused",
            f"key {request.kid} is the only usable key of the set: disabling it would leave B2C "
            "no key to use. Add a newer key first (rotate the source), then disable this one",
        )
    return RequestVerdict(True, "Done", f"key {request.kid} {request.status}")


def landed_from_intent(pending: PendingWrite | None, key: RemoteKey | None) -> bool:
    """Whether `key` is the one a recorded intent of this resource wrote (its answer was lost,
    or the process died): it is then this resource's upload, although no write returned it."""
    if pending is None or key is None:
        return False
    if pending.x5t is not None:
        return key.x5t == pending.x5t
    return pending.nbf is not None and (key.nbf, key.exp) == (pending.nbf, pending.exp)
