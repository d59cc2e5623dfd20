"""Behaviour 7: throttling, outages, credentials and B2C refusals."""

from __future__ import annotations

import time

from harness import (
    READONLY_CLIENT_ID,
    READONLY_SECRET,
    Graph,
    Kube,
    OperatorControl,
    keyset,
    ready,
    secret,
)


async def test_long_retry_after_is_honoured_not_before(
    kube: Kube, graph: Graph, operator: object
) -> None:
    # Longer than the SDK may sleep in place (GraphConnection.max_retry_after_in_sdk): the
    # operator reports Throttled and comes back after the delay, not before.
    await graph.fault(
        method="GET", path="keySets/B2C_1A_Thr$", status=429, retry_after="6", times=1
    )
    await kube.create(keyset("thr", "Thr", {"generate": {"kty": "RSA"}}))
    obj = await kube.wait_reason("thr", "Throttled")
    throttled_at = time.monotonic()
    assert "6s" in ready(obj)["message"]
    await kube.wait_reason("thr", "Synced", within=20)
    assert time.monotonic() - throttled_at >= 5.0
    gets = [
        r
        for r in await graph.requests()
        if r["method"] == "GET" and r["path"].endswith("keySets/B2C_1A_Thr")
    ]
    assert gets[0]["status"] == 429


async def test_a_throttled_write_clears_its_intent_so_the_retry_does_not_wait_to_settle(
    kube: Kube, graph: Graph, operator: OperatorControl
) -> None:
    """A 429 on an upload means B2C processed nothing: the recorded intent must go with it, or
    the retry waits the whole settle time for a write that never happened (found by
    benchmarks/bench_scale.py's throttled convergence, 4x the minimum)."""
    operator.stop()
    await operator.start(write_settle_time=60.0)
    # Twice: the second refusal leaves status as the first did, but for the intent.
    await graph.fault(method="POST", path="generateKey$", status=429, retry_after="1", times=2)
    started = time.monotonic()
    await kube.create(keyset("thw", "Thw", {"generate": {"kty": "RSA"}}))
    synced = await kube.wait_reason("thw", "Synced", within=20)
    assert time.monotonic() - started < 20  # not the 60 s settle time
    assert synced["status"].get("pendingWrite") is None
    posts = [r["status"] for r in await graph.requests() if r["path"].endswith("/generateKey")]
    assert posts == [429, 429, 200]


async def test_unavailable_graph_is_retried_safely(
    kube: Kube, graph: Graph, operator: object
) -> None:
    await graph.fault(method="POST", path="generateKey$", status=503, times=2)
    await kube.create(keyset("flaky", "Flaky", {"generate": {"kty": "RSA"}}))
    await kube.wait_reason("flaky", "Synced")
    assert len(await graph.keys("B2C_1A_Flaky")) == 1


async def test_wrong_credentials_and_missing_permission_say_what_to_fix(
    kube: Kube, graph: Graph, operator: OperatorControl
) -> None:
    operator.stop()
    await operator.start(client_secret="not-the-secret")
    await kube.create(keyset("cred", "Cred", {"generate": {"kty": "RSA"}}))
    obj = await kube.wait_reason("cred", "Unauthorized")
    assert "AZURE_CLIENT_ID" in ready(obj)["message"]
    assert "not-the-secret" not in str(obj)

    operator.stop()
    await operator.start(client_id=READONLY_CLIENT_ID, client_secret=READONLY_SECRET)
    obj = await kube.wait_keyset(
        "cred",
        lambda o: (
            ready(o).get("reason") == "Unauthorized"
            and "ReadWrite.All" in ready(o).get("message", "")
        ),
        "the missing permission named",
    )
    assert await graph.writes() == [] or all(
        not w.endswith("/generateKey") for w in await graph.writes()
    )


async def test_b2c_refusal_is_a_graph_error_with_its_code(
    kube: Kube, graph: Graph, operator: object
) -> None:
    await graph.fault(method="POST", path="uploadSecret$", status=400, code="AADB2C90137", times=50)
    await kube.create(secret("s", {"k": b"value"}))
    await kube.create(keyset("ref", "Ref", {"secret": {"name": "s", "key": "k"}}))
    obj = await kube.wait_reason("ref", "GraphError")
    assert "AADB2C90137" in ready(obj)["message"]
    assert ready(obj)["status"] == "False"
