"""A string-secret key set whose status was lost adopts the key already in B2C, uploading
nothing (GitOps: Argo CD Replace, a restore without status, a recreated resource)."""

from __future__ import annotations

from harness import Graph, Kube, OperatorControl, keyset, ready, secret


async def test_restore_without_status_adopts_the_named_key_and_uploads_nothing(
    kube: Kube, graph: Graph, operator: OperatorControl
) -> None:
    await kube.create(secret("fb", {"k": b"client-secret-value"}))
    source = {"secret": {"name": "fb", "key": "k"}}
    original = await kube.create(keyset("fb", "Adopted", source))
    synced = await kube.wait_reason("fb", "Synced")
    kid = synced["status"]["syncedKey"]["kid"]
    uploads = [w for w in await graph.writes() if w.endswith("/uploadSecret")]
    assert len(uploads) == 1

    # The resource comes back from Git without its status, naming the key B2C holds.
    await kube.delete(original)
    await kube.create(keyset("fb", "Adopted", source, adopt={"kid": kid}))
    adopted = await kube.wait_reason("fb", "Synced")
    assert adopted["status"]["syncedKey"]["kid"] == kid
    assert adopted["status"]["sourceFingerprint"]
    assert [w for w in await graph.writes() if w.endswith("/uploadSecret")] == uploads
    assert len(await graph.keys("B2C_1A_Adopted")) == 1

    # Once adopted, a changed secret is uploaded as usual.
    fb = await kube.get({"kind": "Secret", "metadata": {"name": "fb"}})
    assert fb is not None
    await kube.patch(fb, {"data": secret("fb", {"k": b"rotated-value"})["data"]})
    await kube.wait_keyset(
        "fb",
        lambda o: (
            ready(o).get("reason") == "Synced"
            and (o.get("status") or {}).get("syncedKey", {}).get("kid") != kid
        ),
        "the rotated secret uploaded",
    )
    assert len(await graph.keys("B2C_1A_Adopted")) == 2


async def test_adopting_a_kid_b2c_does_not_hold_writes_nothing_and_says_so(
    kube: Kube, graph: Graph, operator: OperatorControl
) -> None:
    await kube.create(secret("fb", {"k": b"client-secret-value"}))
    await kube.create(
        keyset("fb", "AdoptWrong", {"generate": {"kty": "oct"}}, adopt={"kid": "no-such-kid"})
    )
    refused_spec = await kube.wait_reason("fb", "InvalidSource")
    assert "secret sources only" in ready(refused_spec)["message"]
    await kube.delete(refused_spec)
    await kube.create(
        keyset("fb2", "AdoptWrong", {"secret": {"name": "fb", "key": "k"}}, adopt={"kid": "gone"})
    )
    refused = await kube.wait_reason("fb2", "InvalidSource")
    assert "spec.adopt.kid gone is not a key of this key set" in ready(refused)["message"]
    assert [w for w in await graph.writes() if "AdoptWrong" in w and "upload" in w] == []
