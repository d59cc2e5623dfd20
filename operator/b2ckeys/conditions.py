"""The Ready condition: its closed vocabulary of reasons, the one helper that sets it, and how a
Graph failure is said in it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from b2ckeys.formats import to_rfc3339
from b2ckeys.graph.client import (
    ConcurrentWrite,
    Forbidden,
    GraphError,
    InvalidRequest,
    Throttled,
    TransientError,
    Unauthorized,
)
from b2ckeys.tenants import TenantKey


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


def outcome_for_graph_error(
    error: GraphError, key_set_id: str, tenant: TenantKey | None
) -> tuple[Outcome, float | None]:
    """Ready reason and message for a Graph failure, and a forced retry delay if any."""
    if isinstance(error, Throttled):
        delay = max(error.retry_after, 1.0)
        return Outcome(
            Reason.THROTTLED, f"Graph throttled the request; retrying in {delay:.0f}s as asked"
        ), delay
    if isinstance(error, Unauthorized):
        check = (
            f"the credentials of {tenant} (see its status)"
            if tenant is not None
            else "AZURE_TENANT_ID, AZURE_CLIENT_ID and the client secret, certificate or "
            "federated credential of the operator's app registration in the B2C tenant"
        )
        return Outcome(
            Reason.UNAUTHORIZED, f"Graph refused the operator's credentials: {error}. Check {check}"
        ), None
    if isinstance(error, Forbidden):
        return Outcome(
            Reason.UNAUTHORIZED,
            f"Graph denied access to {key_set_id}: {error}. Grant the app the Microsoft Graph "
            "application permission TrustFrameworkKeySet.ReadWrite.All and admin consent",
        ), None
    if isinstance(error, TransientError):
        note = (
            " The write's outcome is unknown; it is looked for before any retry."
            if error.outcome_unknown
            else ""
        )
        return Outcome(Reason.GRAPH_ERROR, f"Graph is unavailable: {error}.{note} Retrying"), None
    if isinstance(error, ConcurrentWrite):
        return Outcome(
            Reason.GRAPH_ERROR, f"another write to {key_set_id} was in flight: {error}; retrying"
        ), None
    if isinstance(error, InvalidRequest):
        return Outcome(
            Reason.GRAPH_ERROR,
            f"B2C refused the request for {key_set_id}: {error}. Nothing else was changed",
        ), None
    return Outcome(Reason.GRAPH_ERROR, f"Graph call for {key_set_id} failed: {error}"), None
