"""Behaviours 9-11: ownership conflicts, deletion policies, Observe mode and drift."""

from __future__ import annotations

from harness import (
    CLIENT_ID,
    CLIENT_SECRET,
    TENANT,
    Graph,
    Kube,
    OperatorControl,
    keyset,
    ready,
    wait_for,
)

FINALIZER = "b2ckeys.dev/delete-key-set"


async def test_the_older_resource_owns_a_key_set_and_hands_over_on_deletion(
    kube: Kube, graph: Graph, operator: object
) -> None:
    first = await kube.create(keyset("first", "Shared", {"generate": {"kty": "RSA"}}))
    await kube.wait_reason("first", "Synced")
    await kube.create(keyset("second", "B2C_1A_Shared", {"generate": {"kty": "RSA"}}))
    obj = await kube.wait_reason("second", "Conflict")
    assert "first" in ready(obj)["message"]
    assert len(await graph.keys("B2C_1A_Shared")) == 1

    await kube.delete(first)
    obj = await kube.wait_reason("second", "Synced")
    # The key the first resource generated is valid and adopted: no new write was needed.
    assert len(await graph.keys("B2C_1A_Shared")) == 1
    assert obj["status"]["keySetId"] == "B2C_1A_Shared"


async def test_retain_adds_no_finalizer_and_leaves_b2c_alone(
    kube: Kube, graph: Graph, operator: object
) -> None:
    obj = await kube.create(keyset("keep", "Keep", {"generate": {"kty": "RSA"}}))
    obj = await kube.wait_reason("keep", "Synced")
    assert FINALIZER not in (obj["metadata"].get("finalizers") or [])
    await kube.delete(obj)

    async def gone() -> bool:
        return await kube.keyset("keep") is None

    await wait_for("the resource to go", gone)
    assert "B2C_1A_Keep" in await graph.key_sets()
    assert not any(w.startswith("DELETE") for w in await graph.writes())


async def test_delete_policy_removes_the_key_set(
    kube: Kube, graph: Graph, operator: object
) -> None:
    await kube.create(keyset("drop", "Drop", {"generate": {"kty": "RSA"}}, deletionPolicy="Delete"))
    obj = await kube.wait_keyset(
        "drop",
        lambda o: (
            ready(o).get("reason") == "Synced"
            and FINALIZER in (o["metadata"].get("finalizers") or [])
        ),
    )
    await kube.delete(obj)

    async def gone() -> bool:
        return await kube.keyset("drop") is None

    await wait_for("the resource to go", gone)
    assert "B2C_1A_Drop" not in await graph.key_sets()


async def test_delete_gives_up_after_a_bounded_time_with_a_warning(
    kube: Kube, graph: Graph, operator: object
) -> None:
    await kube.create(
        keyset("stuck", "Stuck", {"generate": {"kty": "RSA"}}, deletionPolicy="Delete")
    )
    obj = await kube.wait_keyset(
        "stuck", lambda o: FINALIZER in (o["metadata"].get("finalizers") or [])
    )
    await kube.wait_reason("stuck", "Synced")
    await graph.fault(method="DELETE", path="keySets/B2C_1A_Stuck$", status=503, times=1000)
    await kube.delete(obj)

    async def gone() -> bool:
        return await kube.keyset("stuck") is None

    await wait_for("the finalizer to be released", gone, within=15)
    warnings = [e for e in await kube.events() if e.get("reason") == "DeleteAbandoned"]
    assert warnings
    assert warnings[0]["type"] == "Warning"


async def test_observe_mode_plans_and_never_writes(
    kube: Kube, graph: Graph, operator: object
) -> None:
    await kube.create(keyset("obs", "Observed", {"generate": {"kty": "RSA"}}, mode="Observe"))
    obj = await kube.wait_reason("obs", "Drifted")
    plan = obj["status"]["plan"]
    assert plan[0] == "createKeySet"
    assert plan[1].startswith("generateKey")
    assert await graph.writes() == []


async def test_drift_is_reported_in_observe_and_repaired_in_sync(
    kube: Kube, graph: Graph, operator: OperatorControl
) -> None:
    operator.stop()
    await operator.start(resync_interval=0.5)
    await kube.create(keyset("fix", "Repaired", {"generate": {"kty": "RSA"}}))
    await kube.create(keyset("watch", "Watched", {"generate": {"kty": "RSA"}}))
    await kube.wait_reason("fix", "Synced")
    watched = await kube.wait_reason("watch", "Synced")
    watched = await kube.patch(watched, {"spec": {"mode": "Observe"}})
    await kube.wait_reason("watch", "Synced")
    # Someone deletes both key sets in the portal.
    await graph.delete_key_set("B2C_1A_Repaired", CLIENT_ID, CLIENT_SECRET, TENANT)
    await graph.delete_key_set("B2C_1A_Watched", CLIENT_ID, CLIENT_SECRET, TENANT)

    obj = await kube.wait_reason("watch", "Drifted")
    assert obj["status"]["plan"][0] == "createKeySet"

    async def recreated() -> bool:
        return len(await graph.keys("B2C_1A_Repaired")) == 1

    await wait_for("the next resync to repair it", recreated)
    await kube.wait_reason("fix", "Synced")
    assert "B2C_1A_Watched" not in await graph.key_sets()
