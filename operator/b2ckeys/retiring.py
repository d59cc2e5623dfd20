"""Carry out key retirement and emergency key status requests against B2C (keys_v2).

The decisions are `b2ckeys.retirement`'s (pure); this module makes the Graph calls they ask
for, posts one Event per change and returns what status should say. It runs inside a key set's
reconcile, so its writes are serialised with the uploads of that key set, and the Graph client
it is given is the leader-gated one: a standby never disables anything.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from b2ckeys.formats import to_rfc3339
from b2ckeys.graph.client import (
    GraphError,
    InvalidRequest,
    KeySetClient,
    KeySetNotFound,
    RemoteKey,
)
from b2ckeys.model import KeySetResource, KeySetSpec
from b2ckeys.retirement import (
    foreign_kids,
    judge_request,
    mark_retired,
    parse_key_status_request,
    plan_retirement,
    seed_record,
)
from b2ckeys.status import KeyStatusResult, SyncedKey, UploadedKey

logger = logging.getLogger(__name__)

# Posts one Event on the key set: (type, reason, message).
EventPoster = Callable[[str, str, str], Awaitable[None]]


@dataclass(frozen=True)
class Retired:
    """What a retirement pass leaves for status and pacing."""

    record: tuple[UploadedKey, ...]
    foreign: tuple[str, ...]
    hints: tuple[str, ...] = ()  # refusals, for the Ready message
    next_due: float | None = None


async def retire(
    graph: KeySetClient,
    key_set_id: str,
    record: Sequence[UploadedKey],
    synced: SyncedKey | None,
    keys: Sequence[RemoteKey],
    active: RemoteKey | None,
    now: int,
    *,
    after: float,
    event: EventPoster,
) -> Retired:
    """Disable the recorded keys that are due. keys_v2 is read only when a key is due (its
    status there is B2C's own), so a pass with nothing due costs no Graph call at all."""
    plan = plan_retirement(seed_record(record, synced), keys, active, now, after=after)
    current = plan.record
    hints: list[str] = []
    if plan.disable:
        statuses = {k.kid: k.status for k in await graph.list_keys(key_set_id)}
        for kid in plan.disable:
            entry = next(r for r in current if r.kid == kid)
            if statuses.get(kid, "disabled") == "disabled":
                # Gone from keys_v2 or disabled already (by a person): nothing to write.
                current = mark_retired(current, kid, now)
                continue
            try:
                await graph.set_key_status(key_set_id, kid, enabled=False)
            except InvalidRequest as refused:
                said = f"B2C refused to disable key {kid} in {key_set_id}: {refused}"
                if entry.error != str(refused):
                    logger.warning("%s", said)
                    await event("Warning", "RetireFailed", f"{said}; retried at the next resync")
                current = mark_retired(current, kid, now, error=str(refused))
                hints.append(f"retiring key {kid} failed ({refused}); retried at the next resync")
                continue
            current = mark_retired(current, kid, now)
            successor = f"by key {active.kid} " if active is not None else ""
            superseded = to_rfc3339(entry.superseded_at) or "-"
            await event(
                "Normal",
                "KeyRetired",
                f"disabled key {kid} in {key_set_id}: superseded {successor}since {superseded}, "
                f"longer than spec.retirement.disableSupersededAfter ({after:g}s)",
            )
            logger.info("%s: retired key %s", key_set_id, kid)
    return Retired(
        record=current,
        foreign=foreign_kids(current, keys),
        hints=tuple(hints),
        next_due=plan.next_due,
    )


# --- emergency requests -------------------------------------------------------------------------


async def carry_out_request(
    resource: KeySetResource,
    spec: KeySetSpec,
    graph: KeySetClient,
    key_set_id: str | None,
    now: int,
    *,
    event: EventPoster,
) -> KeyStatusResult | None:
    """The result of the resource's key status request, or None when it was carried out before
    (status names its id with a final result). Refusals and Graph failures are results too: a
    Failed one is tried again at the next reconcile, a Refused one never (ask again)."""
    raw = resource.key_status_request
    if raw is None:
        return None
    previous = resource.status.key_status_request
    try:
        request = parse_key_status_request(raw)
    except ValueError as bad:
        unreadable = KeyStatusResult("-", "-", "-", "Refused", f"{bad}; nothing was changed", now)
        if previous is not None and previous.message == unreadable.message:
            return None
        await event("Warning", "KeyStatusRefused", unreadable.message)
        return unreadable
    if previous is not None and previous.id == request.id and previous.result != "Failed":
        return None
    verb = "disable" if request.status == "disabled" else "enable"

    def result(outcome: str, message: str) -> KeyStatusResult:
        return KeyStatusResult(request.id, request.kid, request.status, outcome, message, now)

    if spec.mode != "Sync":
        done = result("Refused", f"mode is {spec.mode}: nothing is written to B2C")
    elif key_set_id is None:
        done = result("Refused", f"B2C key set {spec.key_set_id} does not exist yet")
    else:
        try:
            keys = await graph.list_keys(key_set_id)
            verdict = judge_request(request, keys, now)
            if verdict.write:
                await graph.set_key_status(
                    key_set_id, request.kid, enabled=request.status == "enabled"
                )
            done = result(verdict.result, f"{key_set_id}: {verdict.message}")
        except KeySetNotFound:
            done = result("Refused", f"B2C key set {key_set_id} does not exist")
        except InvalidRequest as refused:
            done = result("Refused", f"B2C refused to {verb} key {request.kid}: {refused}")
        except GraphError as error:
            done = result(
                "Failed", f"could not {verb} key {request.kid} in {key_set_id}: {error}; retrying"
            )
    if previous is not None and (previous.id, previous.message) == (request.id, done.message):
        return None  # the same failure again: status and Events already say it
    if done.result == "Done":
        reason = "KeyDisabled" if request.status == "disabled" else "KeyEnabled"
        await event("Normal", reason, f"{done.message} (request {request.id})")
    else:
        reason = "KeyStatusRefused" if done.result == "Refused" else "KeyStatusFailed"
        await event("Warning", reason, f"{done.message} (request {request.id})")
    logger.info("%s: key status request %s: %s", resource.key, request.id, done.message)
    return done
