"""Deleting a namespace that holds `deletionPolicy: Delete` key sets while Graph is down.

A namespace being deleted accepts no new objects, Events included (403 "being terminated"), so
the DeleteAbandoned warning cannot be recorded on the resource. Found by the cluster tier: the
only trace left was "could not post event DeleteAbandoned", which does not say which B2C key set
was left behind. The operator's log must say it.
"""

from __future__ import annotations

from harness import Graph, Kube, LogCapture, keyset, ready, wait_for

FINALIZER = "b2ckeys.dev/delete-key-set"


async def test_an_abandoned_key_set_is_named_in_the_log_when_its_namespace_goes(
    kube: Kube, graph: Graph, operator: object, all_logs: LogCapture
) -> None:
    await kube.create(
        keyset("doomed", "DoomedNamespace", {"generate": {"kty": "RSA"}}, deletionPolicy="Delete")
    )
    await kube.wait_keyset(
        "doomed",
        lambda o: (
            ready(o).get("reason") == "Synced"
            and FINALIZER in (o["metadata"].get("finalizers") or [])
        ),
        "Synced with the finalizer",
    )
    await graph.fault(
        method="DELETE", path="keySets/B2C_1A_DoomedNamespace$", status=503, times=1000
    )

    deleted = await kube.http.delete(f"/api/v1/namespaces/{kube.namespace}")
    assert deleted.status_code == 200, deleted.text

    async def namespace_gone() -> bool:
        response = await kube.http.get(f"/api/v1/namespaces/{kube.namespace}")
        return response.status_code == 404

    await wait_for("the namespace to go", namespace_gone)
    assert "B2C_1A_DoomedNamespace" in await graph.key_sets()
    abandoned = [
        line
        for line in all_logs.lines
        if "could not delete B2C key set B2C_1A_DoomedNamespace" in line
    ]
    assert len(abandoned) == 1, all_logs.text
    assert " WARNING " in abandoned[0]
    assert f"{kube.namespace}/doomed" in abandoned[0]
