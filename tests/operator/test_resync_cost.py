"""What a resync that finds nothing new costs: no Kubernetes write, no Event, one Graph read.

Each status write is an etcd write and a watch event for every watcher (Argo CD re-evaluates
the application on each), and B2C throttles per tenant, so the steady state must be silent.
"""

from __future__ import annotations

import datetime as dt
import time

from harness import Graph, Kube, OperatorControl, keyset, secret, wait_for

from b2ckeys_emulators.devpki import DevCA, rsa_key

RESYNCS = 3


async def test_resyncs_that_find_nothing_new_write_nothing_and_read_each_key_set_once(
    kube: Kube, graph: Graph, operator: OperatorControl
) -> None:
    ca = DevCA.create()
    yesterday = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    leaf = ca.issue("quiet", key=rsa_key(2048, 1), not_before=yesterday)
    await kube.create(secret("quiet-tls", ca.tls_secret_data(leaf)))
    await kube.create(secret("quiet-str", {"k": b"client-secret"}))
    await kube.create(keyset("tls", "QuietTls", {"tlsSecret": {"name": "quiet-tls"}}))
    await kube.create(keyset("str", "QuietStr", {"secret": {"name": "quiet-str", "key": "k"}}))
    await kube.create(keyset("gen", "QuietGen", {"generate": {"kty": "RSA"}}))
    names = {"tls": "B2C_1A_QuietTls", "str": "B2C_1A_QuietStr", "gen": "B2C_1A_QuietGen"}
    for name in names:
        await kube.wait_reason(name, "Synced")
    operator.stop()
    # The keys must be older than the margin the restarted operator is given (0.2 s), or a
    # pass may still ask B2C which key is active, as it should near a key's notBefore.
    held = [k for key_set_id in names.values() for k in await graph.keys(key_set_id)]
    newest = max(k.get("nbf") or 0 for k in held)

    async def settled() -> bool:
        return time.time() > newest + 1

    await wait_for("the keys to be older than the margin", settled)
    versions = {n: (await kube.keyset(n) or {})["metadata"]["resourceVersion"] for n in names}
    events = len(await kube.events())
    seen = len(await graph.requests())

    # Quick resyncs; the keys are older than the margin, so B2C's rule settles the active key.
    await operator.start(resync_interval=0.3, active_key_margin=0.2)

    async def key_set_reads() -> dict[str, list[str]]:
        reads: dict[str, list[str]] = {n: [] for n in names}
        for request in (await graph.requests())[seen:]:
            for name, key_set_id in names.items():
                if request["method"] == "GET" and f"/keySets/{key_set_id}" in request["path"]:
                    reads[name].append(request["path"])
        return reads

    async def resynced() -> bool:
        reads = await key_set_reads()
        return all(len(paths) >= RESYNCS + 1 for paths in reads.values())  # start-up + resyncs

    await wait_for(f"{RESYNCS} resyncs of every key set", resynced)
    operator.stop()

    for name in names:
        current = await kube.keyset(name)
        assert current is not None
        assert current["metadata"]["resourceVersion"] == versions[name], f"{name} was written"
    assert len(await kube.events()) == events, "a resync that found nothing posted an Event"
    late = (await graph.requests())[seen:]
    assert [r for r in late if r["method"] != "GET" and r["path"].startswith("/beta/")] == []
    for name, paths in (await key_set_reads()).items():
        # One GET of the key set per pass answers both "which keys" and "which is active".
        assert all(path.endswith(f"/keySets/{names[name]}") for path in paths), paths
