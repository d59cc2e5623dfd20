"""Every status member the operator writes is one the CRD declares, with a value it accepts.

The API server (and the kube emulator) silently drops a member the status schema does not
declare, so a member the operator writes but the CRD lacks is lost without an error. Found by
the cluster tier: `status.syncedKey.status` was written on every sync and pruned by
kube-apiserver (which answers `Warning: unknown field "status.syncedKey.status"`).
"""

from __future__ import annotations

from typing import Any

from crd_schema import load_crd, schema_errors, served_schema

from b2ckeys.conditions import Outcome, Reason, set_ready
from b2ckeys.graph.client import RemoteKey
from b2ckeys.status import PendingWrite, changes, key_status

NOW = 1_800_000_000
# Every member B2C can report for a key, so each one the operator maps is exercised.
KEY = RemoteKey(
    kid="kid-1",
    kty="RSA",
    use="sig",
    status="enabled",
    nbf=NOW - 60,
    exp=NOW + 86_400,
    x5t="x5t-thumbprint",
    x5c=("MIIB",),
    n="modulus",
    e="AQAB",
)


def keyset_with_status(status: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "b2ckeys.dev/v1alpha1",
        "kind": "TrustFrameworkKeySet",
        "metadata": {"name": "ks", "namespace": "ns"},
        "spec": {"keySetId": "TokenSigning", "source": {"generate": {"kty": "RSA"}}},
        "status": status,
    }


def test_active_and_synced_key_members_are_declared() -> None:
    status = {
        "activeKey": key_status(KEY),
        "syncedKey": key_status(KEY, synced=True, uploaded_at=NOW),
    }

    assert schema_errors(served_schema(load_crd()), keyset_with_status(status)) == []
    # The active key carries B2C's own status; the synced key when this operator uploaded it.
    assert status["activeKey"]["status"] == "enabled"
    assert status["syncedKey"]["uploadedAt"] == "2027-01-15T08:00:00Z"


def test_pending_write_and_ready_condition_are_declared() -> None:
    intent = PendingWrite(
        action="uploadPkcs12",
        key_set_id="B2C_1A_TokenSigning",
        fingerprint="fp",
        x5t="x5t-thumbprint",
        nbf=NOW,
        exp=NOW + 60,
        started_at=NOW,
    ).to_status()
    conditions = set_ready(None, Outcome(Reason.SYNCED, "in sync"), generation=3, now=NOW)

    status = {"pendingWrite": intent, "conditions": conditions, "observedGeneration": 3}

    assert schema_errors(served_schema(load_crd()), keyset_with_status(status)) == []


def test_a_patch_changes_the_status_only_when_a_member_differs() -> None:
    current = {"keyCount": 2, "activeKey": {"kid": "a", "x5t": "t"}, "plan": None}
    assert not changes({"keyCount": 2, "activeKey": {"kid": "a", "x5t": "t"}}, current)
    assert not changes({"plan": None, "pendingWrite": None, "activeKey": {"x5t": "t"}}, current)
    assert changes({"keyCount": 3}, current)
    assert changes({"activeKey": {"kid": "b"}}, current)
    assert changes({"activeKey": {"expires": None, "status": "enabled"}}, current)
    assert changes({"activeKey": None}, current)
    assert changes({"conditions": [{"type": "Ready"}]}, current)
