"""The real operator through what a cluster does to it: its API server restarting under it, and
a namespace of `deletionPolicy: Delete` key sets deleted while Graph is down.
"""

from __future__ import annotations

import datetime
import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from apiserver import KubeCluster, ServerProcess
from controller_manager import MissingBinary, running_controller_manager, wait_namespace_gone
from keyset_objects import Keysets, keyset, ready, secret, unique_key_set_id
from kubernetes import client as k8s
from operator_process import OPERATOR_TIMINGS, OPERATOR_USER, RunningOperator

from b2ckeys.settings import parse_duration

pytestmark = pytest.mark.cluster

DELETE_TIMEOUT_SECONDS = parse_duration(OPERATOR_TIMINGS["B2CKEYS_DELETE_TIMEOUT"])
BACKOFF_MAX_SECONDS = parse_duration(OPERATOR_TIMINGS["B2CKEYS_ERROR_BACKOFF_MAX"])
# The namespace controller's own pace, on top of the operator's delete timeout: it acts on a
# deleted namespace 5 s after the deletion (a grace period for HA API servers), looks again 8 s
# after finding objects that still have finalizers, and 5 s after finalizing. About 18 s in all
# here; generous for a loaded 2-core machine.
NAMESPACE_CONTROLLER_SLACK_SECONDS = 40.0


# --- the API server restarts under the operator -------------------------------------------------


@pytest.mark.parametrize("graceful", [True, False], ids=["SIGTERM", "SIGKILL"])
def test_operator_keeps_working_after_the_apiserver_restarts(
    operator: RunningOperator, namespace: str, graceful: bool
) -> None:
    keysets = Keysets(operator.cluster, namespace)
    key_set_id = unique_key_set_id("Restart")
    keysets.apply(
        secret("app", {"client-secret": b"before-restart"}),
        keyset("app", key_set_id, {"secret": {"name": "app", "key": "client-secret"}}),
        # Retried on the error backoff (at most 2 s) the whole time, so some of its reconciles
        # meet the API server down: they must fail like any reconcile, and keep being retried.
        keyset("waiting", unique_key_set_id("Waiting"), {"tlsSecret": {"name": "not-yet"}}),
    )
    before = operator.wait_for("Synced", lambda: keysets.settled("app", "Synced"))
    operator.wait_for("SourceNotFound", lambda: keysets.settled("waiting", "SourceNotFound"))
    pid = operator.process.popen.pid if operator.process.popen else None

    operator.cluster.restart_apiserver(graceful=graceful)

    # Made after the restart, with a resync far away: only resumed watches can deliver them.
    keysets.apply(secret("app", {"client-secret": b"after-restart"}))
    keysets.apply(keyset("new", unique_key_set_id("AfterRestart"), {"generate": {"kty": "oct"}}))
    changed = operator.wait_for(
        "the Secret changed after the restart to reach B2C",
        lambda: (
            (obj := keysets.settled("app", "Synced"))
            and obj["status"]["syncedKey"]["kid"] != before["status"]["syncedKey"]["kid"]
            and obj
        ),
        describe=lambda: keysets.get("app"),
    )
    operator.wait_for(
        "a key set created after the restart to sync",
        lambda: keysets.settled("new", "Synced"),
        describe=lambda: keysets.get("new"),
    )
    assert ready(keysets.get("waiting"))["reason"] == "SourceNotFound"
    assert operator.process.popen is not None
    assert operator.process.popen.pid == pid, "the operator was restarted"
    assert len(operator.graph.keys(f"B2C_1A_{key_set_id}")) == 2
    assert changed["status"]["keyCount"] == 2


# --- a namespace deleted while Graph is down ----------------------------------------------------


@pytest.fixture
def controller_manager(kube_cluster: KubeCluster, tmp_path: Path) -> Iterator[ServerProcess]:
    """kube-controller-manager with only what namespace deletion needs, for this test alone."""
    try:
        with running_controller_manager(kube_cluster, tmp_path) as process:
            yield process
    except MissingBinary as e:
        pytest.fail(str(e), pytrace=False)


def deletion_started(operator: RunningOperator, namespace: str, name: str) -> datetime.datetime:
    """The deletionTimestamp of a key set, as the API server answered the operator's writes."""
    for event in operator.cluster.audit_events():
        ref = event.get("objectRef") or {}
        stored = ((event.get("responseObject") or {}).get("metadata")) or {}
        if (ref.get("namespace"), ref.get("name")) == (namespace, name) and stored.get(
            "deletionTimestamp"
        ):
            return datetime.datetime.fromisoformat(stored["deletionTimestamp"])
    raise AssertionError(f"the operator wrote nothing to {namespace}/{name} once it was deleted")


def event_writes(operator: RunningOperator, namespace: str) -> list[dict[str, Any]]:
    """Event creations the operator sent in this namespace, whatever the server answered."""
    return [
        e
        for e in operator.cluster.audit_events()
        if (e.get("user") or {}).get("username") == OPERATOR_USER
        and e.get("verb") == "create"
        and (e.get("objectRef") or {}).get("resource") == "events"
        and (e.get("objectRef") or {}).get("namespace") == namespace
    ]


def test_namespace_deletion_finishes_within_the_delete_timeout_while_graph_is_down(
    operator: RunningOperator, namespace: str, controller_manager: ServerProcess
) -> None:
    keysets = Keysets(operator.cluster, namespace)
    ids = {"from-secret": unique_key_set_id("Doomed"), "generated": unique_key_set_id("Doomed")}
    keysets.apply(
        secret("app", {"client-secret": b"doomed"}),
        keyset(
            "from-secret",
            ids["from-secret"],
            {"secret": {"name": "app", "key": "client-secret"}},
            deletionPolicy="Delete",
        ),
        keyset(
            "generated", ids["generated"], {"generate": {"kty": "RSA"}}, deletionPolicy="Delete"
        ),
    )
    for name in ("from-secret", "generated"):
        obj = operator.wait_for(
            f"{name} Synced", functools.partial(keysets.settled, name, "Synced")
        )
        assert "b2ckeys.dev/delete-key-set" in obj["metadata"]["finalizers"]
    # Every DELETE of these key sets fails as an outage would; other scenarios are untouched.
    operator.graph.add_fault(
        method="DELETE",
        path=f"/keySets/B2C_1A_({'|'.join(ids.values())})$",
        status=503,
        times=10_000,
    )
    try:
        k8s.CoreV1Api(operator.cluster.admin).delete_namespace(namespace)
        wait_namespace_gone(
            operator.cluster,
            namespace,
            timeout=DELETE_TIMEOUT_SECONDS + NAMESPACE_CONTROLLER_SLACK_SECONDS,
        )
    finally:
        operator.graph.clear_faults()

    for key_set_id in ids.values():
        deletes = [r for r in operator.graph.requests(key_set_id) if r.startswith("DELETE")]
        assert deletes, f"no DELETE of {key_set_id} was tried"
        assert operator.graph.key_set(f"B2C_1A_{key_set_id}") is not None
    # The Warning was sent for each key set. A namespace being deleted refuses new Events (403
    # from the NamespaceLifecycle admission plugin), so when it was refused, the operator's log
    # must name the key set left behind in B2C.
    abandoned = {
        e["requestObject"]["involvedObject"]["name"]: e
        for e in event_writes(operator, namespace)
        if (e.get("requestObject") or {}).get("reason") == "DeleteAbandoned"
    }
    assert sorted(abandoned) == ["from-secret", "generated"]
    log = operator.process.log_text()
    for name, event in abandoned.items():
        assert event["requestObject"]["type"] == "Warning"
        # Given up on after the delete timeout, not before and not much later (deletionTimestamp
        # has one-second resolution; the last retry comes at most one backoff after the bound).
        gave_up = datetime.datetime.fromisoformat(event["requestReceivedTimestamp"])
        waited = (gave_up - deletion_started(operator, namespace, name)).total_seconds()
        assert DELETE_TIMEOUT_SECONDS <= waited <= DELETE_TIMEOUT_SECONDS + BACKOFF_MAX_SECONDS + 2
        if event["responseStatus"]["code"] != 201:
            assert event["responseStatus"]["code"] == 403
            assert "because it is being terminated" in event["responseStatus"]["message"]
            assert f"{namespace}/{name}: could not delete B2C key set B2C_1A_{ids[name]}" in log
