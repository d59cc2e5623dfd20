"""The metrics a platform team alerts on, scraped from the running operator's /metrics."""

from __future__ import annotations

import re

from harness import Graph, Kube, OperatorControl, keyset, ready, secret, wait_for
from prometheus_client.parser import text_string_to_metric_families
from test_footprint import scrape_metrics

from b2ckeys.formats import from_rfc3339
from b2ckeys_emulators.devpki import DevCA, rsa_key

KEYSET_FAMILIES = {
    "b2ckeys_keyset_active_key_expiration_timestamp_seconds": "gauge",
    "b2ckeys_keyset_active_key_not_before_timestamp_seconds": "gauge",
    "b2ckeys_keyset_keys": "gauge",
    "b2ckeys_keyset_successor_not_before_timestamp_seconds": "gauge",
    "b2ckeys_keyset_ready_status": "gauge",
    "b2ckeys_keyset_last_sync_timestamp_seconds": "gauge",
}
OPERATOR_FAMILIES = {
    "b2ckeys_uploads": "counter",
    "b2ckeys_reconciles": "counter",
    "b2ckeys_graph_requests": "counter",
    "b2ckeys_graph_request_duration_seconds": "histogram",
    "b2ckeys_leader": "gauge",
}


def samples(text: str, metric: str, /, **labels: str) -> list[tuple[dict[str, str], float]]:
    found = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == metric and all(sample.labels.get(k) == v for k, v in labels.items()):
                found.append((dict(sample.labels), sample.value))
    return found


async def test_key_set_series_follow_the_status_and_go_with_the_resource(
    kube: Kube, graph: Graph, operator: OperatorControl
) -> None:
    ca = DevCA.create()
    leaf = ca.issue("metrics", key=rsa_key(2048, 1))
    await kube.create(secret("m-tls", ca.tls_secret_data(leaf)))
    await kube.create(keyset("m-tls", "MetricsTls", {"tlsSecret": {"name": "m-tls"}}))
    await kube.create(keyset("m-missing", "MetricsMissing", {"tlsSecret": {"name": "absent"}}))
    synced = await kube.wait_reason("m-tls", "Synced")
    await kube.wait_reason("m-missing", "SourceNotFound")

    text = await scrape_metrics(operator)
    families = {f.name: f.type for f in text_string_to_metric_families(text)}
    for name, kind in {**KEYSET_FAMILIES, **OPERATOR_FAMILIES}.items():
        assert families.get(name) == kind, name
    mine = {"namespace": kube.namespace, "name": "m-tls"}
    [(labels, expires)] = samples(
        text, "b2ckeys_keyset_active_key_expiration_timestamp_seconds", **mine
    )
    assert labels == {**mine, "key_set": "B2C_1A_MetricsTls", "tenant": "default"}
    assert expires == leaf.certificate.not_valid_after_utc.timestamp()
    assert samples(text, "b2ckeys_keyset_keys", **mine)[0][1] == synced["status"]["keyCount"]
    assert samples(text, "b2ckeys_keyset_ready_status", **mine) == [
        ({**labels, "condition": "True", "reason": "Synced"}, 1.0)
    ]
    missing = {"namespace": kube.namespace, "name": "m-missing"}
    assert (
        samples(text, "b2ckeys_keyset_ready_status", **missing)[0][0]["reason"] == "SourceNotFound"
    )
    # A key set never compared with B2C has no B2C-derived series, only its condition.
    assert samples(text, "b2ckeys_keyset_keys", **missing) == []
    uploads = samples(text, "b2ckeys_uploads_total", action="uploadPkcs12", source_kind="tlsSecret")
    assert uploads[0][1] >= 1
    assert samples(text, "b2ckeys_graph_requests_total", operation="uploadPkcs12", status="200")
    assert samples(text, "b2ckeys_graph_request_duration_seconds_count", operation="getKeySet")
    # No key set id or kid ever becomes an operation label.
    operations = {s["operation"] for s, _ in samples(text, "b2ckeys_graph_requests_total")}
    assert not [o for o in operations if re.search(r"B2C_1A|Metrics", o)], operations

    # Fixed: the condition's series moves (one per key set); deleted: every series goes.
    await kube.create(secret("absent", ca.tls_secret_data(ca.issue("late", key=rsa_key(2048, 2)))))
    await kube.wait_reason("m-missing", "Synced")
    text = await scrape_metrics(operator)
    reasons = [s["reason"] for s, _ in samples(text, "b2ckeys_keyset_ready_status", **missing)]
    assert reasons == ["Synced"]
    await kube.delete(synced)

    async def gone() -> bool:
        return not samples(await scrape_metrics(operator), "b2ckeys_keyset_keys", **mine)

    await wait_for("the deleted key set's series to go", gone)
    assert ready(await kube.keyset("m-missing") or {})["reason"] == "Synced"


async def test_a_staged_successor_is_a_series_until_none_is_staged(
    kube: Kube, graph: Graph, operator: OperatorControl
) -> None:
    """What the expiry alert asks: is a key staged to take over, and from when?"""
    await kube.create(secret("m-now", {"k": b"first"}))
    await kube.create(keyset("m-now", "MetricsNow", {"secret": {"name": "m-now", "key": "k"}}))
    await kube.create(secret("m-staged", {"k": b"later"}))
    await kube.create(
        keyset(
            "m-staged",
            "MetricsStaged",
            {"secret": {"name": "m-staged", "key": "k"}},
            validity={"notBeforeDelay": "1h"},
        )
    )
    await kube.wait_reason("m-now", "Synced")
    staged = await kube.wait_reason("m-staged", "PendingActivation")
    text = await scrape_metrics(operator)
    metric = "b2ckeys_keyset_successor_not_before_timestamp_seconds"
    [(_, not_before)] = samples(text, metric, namespace=kube.namespace, name="m-staged")
    assert not_before == from_rfc3339(staged["status"]["syncedKey"]["notBefore"])
    assert samples(text, metric, namespace=kube.namespace, name="m-now") == []
