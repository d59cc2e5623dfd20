"""The Ready condition: its closed vocabulary of reasons and the one helper that sets it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from b2ckeys.formats import to_rfc3339


class Reason(StrEnum):
    SYNCED = "Synced"
    PENDING_ACTIVATION = "PendingActivation"
    SOURCE_NOT_FOUND = "SourceNotFound"
    # The source holds cert-manager's temporary placeholder certificate: waiting for the real one.
    AWAITING_CERTIFICATE = "AwaitingCertificate"
    INVALID_SOURCE = "InvalidSource"
    CONFLICT = "Conflict"
    UNAUTHORIZED = "Unauthorized"
    TENANT_NOT_ALLOWED = "TenantNotAllowed"
    THROTTLED = "Throttled"
    GRAPH_ERROR = "GraphError"
    DRIFTED = "Drifted"
    DELETING = "Deleting"


# Reasons under which the resource is usable: B2C holds (or is about to use) the right key.
READY_REASONS = frozenset({Reason.SYNCED, Reason.PENDING_ACTIVATION})


@dataclass(frozen=True)
class Outcome:
    """What a reconcile concluded, as the Ready condition will say it."""

    reason: Reason
    message: str

    @property
    def ready(self) -> bool:
        return self.reason in READY_REASONS


def set_ready(
    conditions: Sequence[Mapping[str, Any]] | None,
    outcome: Outcome,
    *,
    generation: int | None,
    now: float,
) -> list[dict[str, Any]]:
    """Return conditions with Ready set from a key set's outcome."""
    return ready_condition(
        conditions,
        ready=outcome.ready,
        reason=outcome.reason.value,
        message=outcome.message,
        generation=generation,
        now=now,
    )


def ready_condition(
    conditions: Sequence[Mapping[str, Any]] | None,
    *,
    ready: bool,
    reason: str,
    message: str,
    generation: int | None,
    now: float,
) -> list[dict[str, Any]]:
    """Return conditions with Ready set; lastTransitionTime moves only when the status flips.
    (Key sets and tenants have vocabularies of their own; the condition's shape is one.)"""
    status = "True" if ready else "False"
    previous = next((c for c in conditions or [] if c.get("type") == "Ready"), None)
    transition = (
        previous.get("lastTransitionTime")
        if previous and previous.get("status") == status and previous.get("lastTransitionTime")
        else to_rfc3339(now)
    )
    condition: dict[str, Any] = {
        "type": "Ready",
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": transition,
    }
    if generation is not None:
        condition["observedGeneration"] = generation
    others = [dict(c) for c in conditions or [] if c.get("type") != "Ready"]
    return [condition, *others]
