"""The real operator on a real kube-apiserver, as its own ServiceAccount: every source kind.

For each kind: create → Ready=True Synced, rotate where it applies → exactly one new key in the
emulated B2C, delete under its deletion policy. The status is compared twice: with what B2C
holds (kid, x5t, dates, key count, active key), and write by write with what the server stored
(from the API server's audit record of each status patch), so a field the CRD schema prunes, a
value it rejects or a null it does not remove fails the scenario. `kubectl wait` is run with the
kubectl built from the same release.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from keyset_objects import (
    Keysets,
    certificate_config_map,
    certificate_secret,
    keyset,
    not_stored,
    pkcs12_secret,
    ready,
    secret,
    status_writes,
    tls_secret,
    unique_key_set_id,
    x5t,
)
from kubectl_cli import kubectl
from operator_process import RunningOperator

from b2ckeys.formats import to_rfc3339
from b2ckeys_emulators.devpki import DevCA, rsa_key

pytestmark = pytest.mark.cluster

# A scenario's own budget for `kubectl wait` on a good resource (normally well under a second).
KUBECTL_WAIT_GOOD = "60s"
# How long `kubectl wait` is given to (wrongly) see a resource the operator refused as Ready.
KUBECTL_WAIT_BAD = "3s"
# Generated keys rotate this often until the test removes the rotation again: long enough for
# the test to see exactly one rotation and patch it away before a second one falls due.
GENERATE_ROTATION = "4s"


@dataclass(frozen=True)
class Material:
    """One version of a key set's source: the objects to apply and the x5t B2C will show."""

    objects: list[dict[str, Any]]
    x5t: str | None = None


@dataclass(frozen=True)
class SourceCase:
    id: str
    source: dict[str, Any]
    action: str
    deletion_policy: str
    # Version 1 and version 2 (a renewal) of the material; None for `generate`.
    material: Callable[[int], Material] | None
    spec: dict[str, Any] = field(default_factory=dict)


CA = DevCA.create("b2ckeys cluster-tier CA")


def _leaf(version: int, slot: int) -> Any:
    return CA.issue(f"cluster tier v{version}", key=rsa_key(2048, slot + version))


def _tls(version: int) -> Material:
    leaf = _leaf(version, 10)
    return Material([tls_secret("signing-tls", CA, leaf)], x5t(leaf))


def _pkcs12(version: int) -> Material:
    leaf = _leaf(version, 20)
    return Material([pkcs12_secret("saml-p12", CA, leaf, b"p12-password")], x5t(leaf))


def _certificate_secret(version: int) -> Material:
    leaf = _leaf(version, 30)
    return Material([certificate_secret("idp-cert", leaf)], x5t(leaf))


def _certificate_config_map(version: int) -> Material:
    leaf = _leaf(version, 40)
    return Material([certificate_config_map("idp-cert", leaf)], x5t(leaf))


def _string_secret(version: int) -> Material:
    return Material([secret("facebook", {"client-secret": f"app-secret-v{version}".encode()})])


CASES = [
    SourceCase("tlsSecret", {"tlsSecret": {"name": "signing-tls"}}, "uploadPkcs12", "Retain", _tls),
    SourceCase(
        "pkcs12Secret",
        {"pkcs12Secret": {"name": "saml-p12", "passwordKey": "password"}},
        "uploadPkcs12",
        "Delete",
        _pkcs12,
    ),
    SourceCase(
        "certificate-secret",
        {"certificate": {"secretName": "idp-cert"}},
        "uploadCertificate",
        "Retain",
        _certificate_secret,
    ),
    SourceCase(
        "certificate-configmap",
        {"certificate": {"configMapName": "idp-cert"}},
        "uploadCertificate",
        "Delete",
        _certificate_config_map,
    ),
    SourceCase(
        "secret",
        {"secret": {"name": "facebook", "key": "client-secret"}},
        "uploadSecret",
        "Delete",
        _string_secret,
        spec={"use": "sig", "validity": {"lifetime": "720h"}},
    ),
    SourceCase("generate-RSA", {"generate": {"kty": "RSA"}}, "generateKey", "Delete", None),
    SourceCase(
        "generate-oct", {"generate": {"kty": "oct"}}, "generateKey", "Retain", None, {"use": "enc"}
    ),
]


# --- checks -------------------------------------------------------------------------------------


def assert_status_matches_b2c(obj: dict[str, Any], operator: RunningOperator) -> dict[str, Any]:
    """Status says what B2C holds; the key set as B2C holds it."""
    status = obj["status"]
    key_set = operator.graph.key_set(status["keySetId"])
    assert key_set is not None, f"B2C has no key set {status['keySetId']}"
    keys = {key["kid"]: key for key in key_set["keys"]}
    synced = status["syncedKey"]
    remote = keys[synced["kid"]]
    assert synced["kty"] == remote["kty"]
    assert synced["use"] == remote["use"]
    assert synced.get("x5t") == remote.get("x5t")
    assert synced.get("notBefore") == to_rfc3339(remote.get("nbf"))
    assert synced.get("expires") == to_rfc3339(remote.get("exp"))
    assert status["keyCount"] == len(key_set["keys"])
    assert status["activeKey"]["kid"] == key_set["activeKid"]
    active = keys[key_set["activeKid"]]
    assert status["activeKey"].get("x5t") == active.get("x5t")
    assert status["activeKey"].get("expires") == to_rfc3339(active.get("exp"))
    assert ready(obj)["status"] == "True"
    assert ready(obj)["observedGeneration"] == obj["metadata"]["generation"]
    assert status.get("pendingWrite") is None
    return key_set


def assert_nothing_pruned(operator: RunningOperator, namespace: str, name: str) -> None:
    writes = status_writes(operator.cluster.audit_events(), namespace, name)
    assert writes, f"the audit log holds no status writes for {namespace}/{name}"
    problems = [p for sent, stored in writes for p in not_stored(sent, stored)]
    assert problems == []
    # The crash-safety intent went through the server too, not only the final status.
    assert any(sent.get("pendingWrite") for sent, _ in writes)


def uploads(operator: RunningOperator, key_set_id: str, action: str) -> list[str]:
    return [r for r in operator.graph.requests(key_set_id) if r.endswith(f"/{action}")]


# --- create, rotate, delete ---------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_create_rotate_delete(operator: RunningOperator, namespace: str, case: SourceCase) -> None:
    keysets = Keysets(operator.cluster, namespace)
    key_set_id = f"B2C_1A_{unique_key_set_id('Cluster')}"
    first = case.material(1) if case.material else Material([])
    spec = {**case.spec, "deletionPolicy": case.deletion_policy}
    if case.material is None:
        spec["rotation"] = {"every": GENERATE_ROTATION}
    keysets.apply(*first.objects, keyset("ks", key_set_id, case.source, **spec))

    obj = operator.wait_for(
        "Ready=True Synced",
        lambda: keysets.settled("ks", "Synced"),
        describe=lambda: keysets.get("ks"),
    )
    assert obj["status"]["keySetId"] == key_set_id
    key_set = assert_status_matches_b2c(obj, operator)
    assert [k.get("x5t") for k in key_set["keys"]] == [first.x5t]
    has_finalizer = "b2ckeys.dev/delete-key-set" in (obj["metadata"].get("finalizers") or [])
    assert has_finalizer == (case.deletion_policy == "Delete")
    old_kid = obj["status"]["syncedKey"]["kid"]

    # Rotate: a renewed source (what cert-manager does), or a rotation period falling due.
    if case.material is not None:
        second = case.material(2)
        keysets.apply(*second.objects)
    else:
        operator.wait_for("a rotation", lambda: len(operator.graph.keys(key_set_id)) >= 2)
        keysets.apply(
            keyset("ks", key_set_id, case.source, **case.spec, deletionPolicy=case.deletion_policy)
        )
    obj = operator.wait_for(
        "the rotated key in status",
        lambda: (
            (o := keysets.settled("ks", "Synced"))
            and o["status"]["syncedKey"]["kid"] != old_kid
            and o
        ),
        describe=lambda: keysets.get("ks"),
    )
    key_set = assert_status_matches_b2c(obj, operator)
    assert len(key_set["keys"]) == 2, "exactly one new key"
    assert len(uploads(operator, key_set_id, case.action)) == 2
    if case.material is not None:
        assert obj["status"]["syncedKey"].get("x5t") == second.x5t
    assert "Uploaded" in keysets.event_reasons()

    keysets.delete("ks")
    operator.wait_for("the key set resource to go", lambda: keysets.get("ks") is None)
    deletes = [r for r in operator.graph.requests(key_set_id) if r.startswith("DELETE")]
    if case.deletion_policy == "Delete":
        assert operator.graph.key_set(key_set_id) is None
        assert len(deletes) == 1
    else:
        assert len(operator.graph.keys(key_set_id)) == 2
        assert deletes == []
    assert_nothing_pruned(operator, namespace, "ks")


# --- kubectl wait -------------------------------------------------------------------------------


def test_kubectl_wait_for_ready_succeeds_for_a_good_key_set(
    operator: RunningOperator, namespace: str, tmp_path: Path
) -> None:
    keysets = Keysets(operator.cluster, namespace)
    keysets.apply(keyset("good", unique_key_set_id("Wait"), {"generate": {"kty": "oct"}}))

    # Issued at once: kubectl itself waits for the operator, as a CI pipeline would.
    waited = kubectl(
        operator.cluster,
        tmp_path,
        "wait",
        "--for=condition=Ready",
        "tfks/good",
        f"--namespace={namespace}",
        f"--timeout={KUBECTL_WAIT_GOOD}",
    )

    assert waited.returncode == 0, waited.stderr
    assert waited.stdout.strip() == "trustframeworkkeyset.b2ckeys.dev/good condition met"
    # The printer columns read the status the operator wrote (EXPIRES is empty: no lifetime).
    listed = kubectl(
        operator.cluster, tmp_path, "get", "tfks/good", f"--namespace={namespace}", "-o", "wide"
    )
    assert listed.returncode == 0, listed.stderr
    header, row = listed.stdout.splitlines()
    assert header.split() == [
        "NAME", "READY", "REASON", "KEYSET", "SOURCE", "ACTIVE-KID", "EXPIRES", "AGE",
    ]  # fmt: skip
    status = (keysets.get("good") or {})["status"]
    assert row.split()[:6] == [
        "good",
        "True",
        "Synced",
        status["keySetId"],
        status["source"],
        status["activeKey"]["kid"],
    ]


def test_kubectl_wait_for_ready_times_out_for_an_invalid_source(
    operator: RunningOperator, namespace: str, tmp_path: Path
) -> None:
    keysets = Keysets(operator.cluster, namespace)
    keysets.apply(
        secret("broken-tls", {"tls.crt": b"not a certificate", "tls.key": b"not a key"}),
        keyset("bad", unique_key_set_id("Wait"), {"tlsSecret": {"name": "broken-tls"}}),
    )
    obj = operator.wait_for(
        "Ready=False InvalidSource",
        lambda: keysets.settled("bad", "InvalidSource"),
        describe=lambda: keysets.get("bad"),
    )
    assert ready(obj)["status"] == "False"

    waited = kubectl(
        operator.cluster,
        tmp_path,
        "wait",
        "--for=condition=Ready",
        "tfks/bad",
        f"--namespace={namespace}",
        f"--timeout={KUBECTL_WAIT_BAD}",
    )
    refused = kubectl(
        operator.cluster,
        tmp_path,
        "wait",
        "--for=condition=Ready=False",
        "tfks/bad",
        f"--namespace={namespace}",
        f"--timeout={KUBECTL_WAIT_BAD}",
    )

    assert waited.returncode == 1
    assert waited.stderr.strip() == (
        "error: timed out waiting for the condition on trustframeworkkeysets/bad"
    )
    assert refused.returncode == 0, refused.stderr
    assert refused.stdout.strip() == "trustframeworkkeyset.b2ckeys.dev/bad condition met"
