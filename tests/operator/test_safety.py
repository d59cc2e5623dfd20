"""Behaviours 4, 5 and 8: no redundant writes, crash safety, activation, one writer per key set."""

from __future__ import annotations

import asyncio
import itertools

from harness import Graph, Kube, OperatorControl, keyset, ready, secret, wait_for

from b2ckeys_emulators.devpki import DevCA, rsa_key


async def _synced_tls(kube: Kube, name: str = "tok", key_set: str = "Tok") -> dict[str, object]:
    ca = DevCA.create()
    leaf = ca.issue(name, key=rsa_key(2048, 1))
    await kube.create(secret(f"{name}-tls", ca.tls_secret_data(leaf)))
    await kube.create(keyset(name, key_set, {"tlsSecret": {"name": f"{name}-tls"}}))
    return await kube.wait_reason(name, "Synced")


async def test_restart_resync_and_unrelated_changes_write_nothing(
    kube: Kube, graph: Graph, operator: OperatorControl
) -> None:
    await _synced_tls(kube)
    await kube.create(secret("fb", {"k": b"value-1"}))
    await kube.create(keyset("fb", "Fb", {"secret": {"name": "fb", "key": "k"}}))
    await kube.create(keyset("gen", "Gen", {"generate": {"kty": "RSA"}}))
    await kube.wait_reason("fb", "Synced")
    await kube.wait_reason("gen", "Synced")
    writes_before = await graph.writes()

    # Restart: the operator sees every resource anew and must find everything in place.
    operator.stop()
    await operator.start(resync_interval=0.3)
    # Unrelated changes: another Secret, a label on the source, a status-only patch.
    await kube.create(secret("unrelated", {"x": b"y"}))
    source = await kube.get({"kind": "Secret", "metadata": {"name": "tok-tls"}})
    assert source is not None
    await kube.patch(source, {"metadata": {"labels": {"team": "identity"}}})
    fb_secret = await kube.get({"kind": "Secret", "metadata": {"name": "fb"}})
    assert fb_secret is not None
    await kube.patch(fb_secret, {"metadata": {"annotations": {"note": "touched"}}})

    # Several resyncs (0.3 s apart) must each read and find nothing to write.
    async def resynced_twice() -> bool:
        reads = [
            r
            for r in await graph.requests()
            if r["method"] == "GET" and "/keySets/B2C_1A_Gen" in r["path"]
        ]
        return len(reads) >= 6

    await wait_for("resyncs", resynced_twice)
    assert await graph.writes() == writes_before


async def test_lost_upload_response_never_duplicates(
    kube: Kube, graph: Graph, operator: object
) -> None:
    await graph.fault(method="POST", path="uploadPkcs12$", commit_then_drop=True, times=1)
    obj = await _synced_tls(kube)
    keys = await graph.keys("B2C_1A_Tok")
    assert len(keys) == 1
    assert obj["status"]["syncedKey"]["kid"] == keys[0]["kid"]  # type: ignore[index]
    assert sum(w.endswith("/uploadPkcs12") for w in await graph.writes()) == 1


async def test_lost_secret_upload_is_recognised_by_its_dates(
    kube: Kube, graph: Graph, operator: object
) -> None:
    await graph.fault(method="POST", path="uploadSecret$", commit_then_drop=True, times=1)
    await kube.create(secret("fb", {"k": b"client-secret"}))
    await kube.create(keyset("fb", "Fb", {"secret": {"name": "fb", "key": "k"}}))
    await kube.wait_reason("fb", "Synced")
    assert len(await graph.keys("B2C_1A_Fb")) == 1
    assert sum(w.endswith("/uploadSecret") for w in await graph.writes()) == 1


async def test_operator_killed_between_upload_and_status_write(
    kube: Kube, graph: Graph, operator: OperatorControl
) -> None:
    # The upload commits in B2C, then its response hangs; the operator dies meanwhile.
    await graph.fault(method="POST", path="uploadSecret$", latency=3.0, times=1)
    await kube.create(secret("fb", {"k": b"client-secret"}))
    await kube.create(keyset("fb", "Fb", {"secret": {"name": "fb", "key": "k"}}))

    async def upload_in_flight() -> bool:
        obj = await kube.keyset("fb")
        return bool(obj and (obj.get("status") or {}).get("pendingWrite"))

    await wait_for("the recorded intent", upload_in_flight)
    await asyncio.sleep(0.2)  # let the request reach the emulator
    operator.stop()

    async def committed() -> bool:
        return len(await graph.keys("B2C_1A_Fb")) == 1

    await wait_for("the upload to commit in B2C", committed)
    await operator.start()
    obj = await kube.wait_reason("fb", "Synced")
    keys = await graph.keys("B2C_1A_Fb")
    assert len(keys) == 1
    assert obj["status"]["syncedKey"]["kid"] == keys[0]["kid"]
    assert obj["status"].get("pendingWrite") is None


async def test_future_key_is_pending_activation_until_b2c_time_reaches_it(
    kube: Kube, graph: Graph, operator: object
) -> None:
    await kube.create(secret("fb", {"k": b"client-secret"}))
    await kube.create(
        keyset(
            "fb", "Fb", {"secret": {"name": "fb", "key": "k"}}, validity={"notBeforeDelay": "1h"}
        )
    )
    obj = await kube.wait_reason("fb", "PendingActivation")
    assert ready(obj)["status"] == "True"
    writes = await graph.writes()
    await graph.advance_clock(2 * 3600)  # no cluster event: only B2C's clock moves
    obj = await kube.wait_reason("fb", "Synced")
    assert obj["status"]["activeKey"]["kid"] == obj["status"]["syncedKey"]["kid"]
    assert await graph.writes() == writes


async def test_one_writer_per_key_set_and_many_key_sets_in_parallel(
    kube: Kube, graph: Graph, operator: object
) -> None:
    # Slow writes make overlaps likely if serialisation were missing.
    await graph.fault(method="POST", path="generateKey$", latency=0.3, times=6)
    for i in range(6):
        await kube.create(keyset(f"gen{i}", f"Gen{i}", {"generate": {"kty": "RSA"}}))
    source = await kube.create(secret("fb", {"k": b"v0"}))
    await kube.create(keyset("fb", "Fb", {"secret": {"name": "fb", "key": "k"}}))
    for i in range(5):  # a burst of changes to one key set's source
        await kube.patch(source, {"data": secret("fb", {"k": f"v{i + 1}".encode()})["data"]})
    for i in range(6):
        await kube.wait_reason(f"gen{i}", "Synced")
    await kube.wait_reason("fb", "Synced")
    requests = await graph.requests()
    assert 409 not in [r["status"] for r in requests]  # AADB2C95053 (concurrent writes) never
    spans = sorted(
        (r["time"], r["time"] + r["duration_ms"] / 1000)
        for r in requests
        if r["path"].endswith("/generateKey")
    )
    assert len(spans) == 6
    # Different key sets were written at the same time (each write takes 0.3 s here).
    assert any(later_start < end for (_, end), (later_start, _) in itertools.pairwise(spans))


async def test_setting_and_rotating_the_fingerprint_pepper_uploads_nothing(
    kube: Kube, graph: Graph, operator: OperatorControl
) -> None:
    from b2ckeys.secret import SecretBytes

    await kube.create(secret("fb", {"k": b"client-secret"}))
    await kube.create(keyset("fb", "Fb", {"secret": {"name": "fb", "key": "k"}}))
    before = (await kube.wait_reason("fb", "Synced"))["status"]["sourceFingerprint"]
    writes = await graph.writes()

    operator.stop()  # a pepper is set for the first time
    await operator.start(fingerprint_pepper=SecretBytes(b"pepper-one"), resync_interval=0.3)
    after_first = await kube.wait_keyset(
        "fb", lambda o: o["status"].get("sourceFingerprint") not in (None, before), "re-keyed"
    )
    operator.stop()  # and rotated, with the earlier one kept as previous
    await operator.start(
        fingerprint_pepper=SecretBytes(b"pepper-two"),
        previous_fingerprint_peppers=(SecretBytes(b"pepper-one"),),
        resync_interval=0.3,
    )
    await kube.wait_keyset(
        "fb",
        lambda o: (
            o["status"].get("sourceFingerprint")
            not in (None, after_first["status"]["sourceFingerprint"])
        ),
        "re-keyed again",
    )
    assert await graph.writes() == writes
    assert len(await graph.keys("B2C_1A_Fb")) == 1
