"""Metric names and labels that stay bounded, and per-key-set series that follow the resource."""

from __future__ import annotations

from dataclasses import replace

import prometheus_client
import pytest

from b2ckeys import metrics
from b2ckeys.graph.msgraph_pipeline import graph_operation
from b2ckeys.kube.api import _operation as kube_operation

BASE = "/beta/trustFramework/keySets"


@pytest.mark.parametrize(
    ("method", "path", "operation"),
    [
        ("GET", BASE, "listKeySets"),
        ("POST", BASE, "createKeySet"),
        ("GET", f"{BASE}/B2C_1A_X", "getKeySet"),
        ("DELETE", f"{BASE}/B2C_1A_X", "deleteKeySet"),
        ("PATCH", f"{BASE}/B2C_1A_X", "updateKeySet"),
        ("GET", f"{BASE}/B2C_1A_X/getActiveKey()", "getActiveKey"),
        ("GET", f"{BASE}/B2C_1A_X/getActiveKey", "getActiveKey"),
        ("POST", f"{BASE}/B2C_1A_X/uploadPkcs12", "uploadPkcs12"),
        ("POST", f"{BASE}/B2C_1A_X/generateKey", "generateKey"),
        ("GET", f"{BASE}/B2C_1A_X/keys_v2", "listKeys"),
        ("PATCH", f"{BASE}/B2C_1A_X/keys_v2/kid-1", "setKeyStatus"),
        ("GET", "/beta/users", "other"),
    ],
)
def test_graph_operations_are_named_without_ids(method: str, path: str, operation: str) -> None:
    assert graph_operation(method, path) == operation


@pytest.mark.parametrize(
    ("method", "path", "operation"),
    [
        (
            "PATCH",
            "/apis/b2ckeys.dev/v1alpha1/namespaces/ns/trustframeworkkeysets/a/status",
            "patch trustframeworkkeysets/status",
        ),
        ("GET", "/api/v1/namespaces/ns/secrets/tls", "get secrets"),
        ("GET", "/api/v1/namespaces/identity", "get namespaces"),
        ("POST", "/api/v1/namespaces/ns/events", "post events"),
        ("GET", "/apis/b2ckeys.dev/v1alpha1/clusterb2ctenants/shared", "get clusterb2ctenants"),
    ],
)
def test_kubernetes_operations_are_named_by_resource(
    method: str, path: str, operation: str
) -> None:
    assert kube_operation(method, path) == operation


def _value(metric: str, /, **labels: str) -> float | None:
    return prometheus_client.REGISTRY.get_sample_value(metric, labels)


def test_one_ready_series_per_key_set_and_none_left_after_it_is_forgotten() -> None:
    series = metrics.KeySetSeries()
    labels = {"namespace": "unit", "name": "ks", "key_set": "B2C_1A_Unit", "tenant": "default"}
    sample = metrics.KeySetSample(**labels, ready=False, reason="SourceNotFound")
    series.record(sample)
    assert (
        _value("b2ckeys_keyset_ready_status", **labels, condition="False", reason="SourceNotFound")
        == 1
    )
    assert _value("b2ckeys_keyset_keys", **labels) is None  # never compared with B2C
    synced = metrics.KeySetSample(
        **labels,
        ready=True,
        reason="Synced",
        active_not_before=10,
        active_expires=20,
        successor_not_before=18,
        keys=3,
        synced_at=15.0,
    )
    series.record(synced)
    assert _value("b2ckeys_keyset_successor_not_before_timestamp_seconds", **labels) == 18
    series.record(replace(synced, successor_not_before=None))  # it became the active key
    assert _value("b2ckeys_keyset_successor_not_before_timestamp_seconds", **labels) is None
    assert (
        _value("b2ckeys_keyset_ready_status", **labels, condition="False", reason="SourceNotFound")
        is None
    )
    assert _value("b2ckeys_keyset_ready_status", **labels, condition="True", reason="Synced") == 1
    assert _value("b2ckeys_keyset_active_key_expiration_timestamp_seconds", **labels) == 20
    assert _value("b2ckeys_keyset_keys", **labels) == 3
    moved = {**labels, "key_set": "B2C_1A_Other"}
    series.record(
        metrics.KeySetSample(**moved, ready=True, reason="Synced", keys=1, synced_at=16.0)
    )
    assert _value("b2ckeys_keyset_keys", **labels) is None  # the old key set's series went
    series.forget("unit", "ks")
    for name in ("b2ckeys_keyset_keys", "b2ckeys_keyset_last_sync_timestamp_seconds"):
        assert _value(name, **moved) is None
    assert _value("b2ckeys_keyset_ready_status", **moved, condition="True", reason="Synced") is None
