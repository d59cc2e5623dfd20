"""Two real operators on the emulators, electing a leader through a Lease (as two replicas do).

Both run in this process, each in its own thread named after its replica, so a log record says
which one wrote. The Lease timings are the suite's compressed ones (4 s / 3 s / 0.5 s).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from harness import (
    CLIENT_ID,
    CLIENT_SECRET,
    TENANT,
    Graph,
    Kube,
    OperatorThread,
    Servers,
    keyset,
    secret,
    wait_for,
)

from b2ckeys.kube.api import KubeApi
from b2ckeys.kube.lease import KubeLeaseStore
from b2ckeys.leader import LeaseRecord, LeaseUnavailable
from b2ckeys.runtime import Runtime
from b2ckeys.settings import LEASE_NAME

# How sync.py logs every write to B2C: "<namespace>/<name>: <write> -> kid <kid>".
WRITE_MARK = " -> kid "


class ThreadLog(logging.Handler):
    """Every record with the name of the thread (the replica) that emitted it."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[tuple[str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append((record.threadName or "", record.getMessage()))

    def writes_by(self, replica: str) -> list[str]:
        return [m for t, m in self.records if t == f"operator {replica}" and WRITE_MARK in m]


@pytest.fixture
def thread_log() -> Iterator[ThreadLog]:
    handler = ThreadLog()
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)


class Replicas:
    """Up to two operators in one namespace; stopped at the end of the test."""

    def __init__(self, servers: Servers, namespace: str, kube: Kube) -> None:
        self.servers = servers
        self.namespace = namespace
        self.kube = kube
        self.running: dict[str, OperatorThread] = {}

    async def start(self, name: str) -> OperatorThread:
        settings = self.servers.settings(pod_name=name, operator_namespace=self.namespace)
        operator = OperatorThread(settings, [self.namespace])
        operator.start()
        self.running[name] = operator
        await asyncio.to_thread(operator.ready_flag.wait, 60)
        assert not operator.errors, operator.errors
        return operator

    def stop(self, name: str) -> None:
        operator = self.running.pop(name)
        operator.stop()
        assert not operator.errors, operator.errors

    def stop_all(self) -> None:
        for name in list(self.running):
            self.stop(name)

    @staticmethod
    def runtime(operator: OperatorThread) -> Runtime:
        runtime: Runtime = operator.memo["runtime"]
        return runtime

    async def lease(self) -> dict[str, Any]:
        response = await self.kube.http.get(
            f"/apis/coordination.k8s.io/v1/namespaces/{self.namespace}/leases/{LEASE_NAME}"
        )
        return dict(response.json()) if response.status_code == 200 else {}

    async def holder(self) -> str:
        return str(((await self.lease()).get("spec") or {}).get("holderIdentity") or "")

    async def wait_holder(self, name: str, within: float = 15.0) -> dict[str, Any]:
        async def held() -> dict[str, Any] | None:
            lease = await self.lease()
            return lease if (lease.get("spec") or {}).get("holderIdentity") == name else None

        return await wait_for(f"{name} to hold the Lease", held, within)


@pytest.fixture
async def replicas(
    servers: Servers, namespace: str, cluster: tuple[Kube, Graph]
) -> AsyncIterator[Replicas]:
    pair = Replicas(servers, namespace, cluster[0])
    try:
        yield pair
    finally:
        await asyncio.to_thread(pair.stop_all)


async def get_text(url: str) -> tuple[int, str]:
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.get(url)
        return response.status_code, response.text


def leader_gauge(metrics_text: str, pod: str) -> float | None:
    for line in metrics_text.splitlines():
        if line.startswith(f'b2ckeys_leader{{pod="{pod}"}} '):
            return float(line.rsplit(" ", 1)[1])
    return None


async def test_one_of_two_operators_reconciles_and_the_standby_writes_nothing(
    replicas: Replicas, kube: Kube, graph: Graph, thread_log: ThreadLog
) -> None:
    leader = await replicas.start("op-a")
    await replicas.wait_holder("op-a")
    standby = await replicas.start("op-b")

    await kube.create(secret("app", {"client-secret": b"first"}))
    for name in ("one", "two", "three"):
        source = {"secret": {"name": "app", "key": "client-secret"}}
        await kube.create(keyset(name, f"Leader{name.title()}", source))
    for name in ("one", "two", "three"):
        await kube.wait_reason(name, "Synced")
    await kube.patch(secret("app", {}), secret("app", {"client-secret": b"second"}))  # rotation
    for name in ("one", "two", "three"):
        await kube.wait_keyset(
            name, lambda o: (o.get("status") or {}).get("keyCount") == 2, f"{name} rotated"
        )

    assert await replicas.holder() == "op-a"
    assert len(thread_log.writes_by("op-a")) >= 6, thread_log.writes_by("op-a")
    assert thread_log.writes_by("op-b") == []
    for key_set_id in ("B2C_1A_LeaderOne", "B2C_1A_LeaderTwo", "B2C_1A_LeaderThree"):
        assert len(await graph.keys(key_set_id)) == 2
    # Both are ready (watches open); the gauge tells them apart.
    for operator, expected in ((leader, "ok (leader)"), (standby, "ok (standby)")):
        server = replicas.runtime(operator).metrics_server
        assert server is not None
        assert await get_text(f"{server.url}/readyz") == (200, expected + "\n")
        status, text = await get_text(f"{server.url}/metrics")
        assert status == 200
        assert "# TYPE b2ckeys_leader gauge" in text
        assert leader_gauge(text, "op-a") == 1.0
        assert leader_gauge(text, "op-b") == 0.0


async def test_the_standby_takes_over_at_once_when_the_leader_stops_and_resyncs_everything(
    replicas: Replicas, kube: Kube, graph: Graph, thread_log: ThreadLog
) -> None:
    await replicas.start("op-a")
    await replicas.wait_holder("op-a")
    await replicas.start("op-b")
    await kube.create(secret("app", {"client-secret": b"kept"}))
    await kube.create(
        keyset("app", "HandedOver", {"secret": {"name": "app", "key": "client-secret"}})
    )
    await kube.wait_reason("app", "Synced")
    transitions_before = (await replicas.lease())["spec"]["leaseTransitions"]
    # Someone deletes the key set in the portal. Only a resync notices that, and the suite's
    # resync is 30 s away: the new leader's full resync must find it.
    await graph.delete_key_set("B2C_1A_HandedOver", CLIENT_ID, CLIENT_SECRET, TENANT)

    stopped = time.monotonic()
    await asyncio.to_thread(replicas.stop, "op-a")  # graceful: releases the Lease
    lease = await replicas.wait_holder("op-b", within=5.0)
    failover = time.monotonic() - stopped
    print(f"\nfailover after a graceful stop (retry period 0.5 s): {failover:.2f}s")

    assert failover < 2.0  # one retry period and the stop itself, not the 4 s lease
    assert lease["spec"]["leaseTransitions"] == transitions_before + 1

    async def recreated() -> list[dict[str, Any]] | None:
        return await graph.keys("B2C_1A_HandedOver") or None

    keys = await wait_for("the new leader to resync the deleted key set", recreated, 10.0)
    assert len(keys) == 1

    async def logged_by_op_b() -> list[str]:  # the log line follows the upload's response
        return thread_log.writes_by("op-b")

    await wait_for("op-b to log its write", logged_by_op_b, 5.0)
    assert any(
        t == "operator op-b" and m.startswith("became the leader") for t, m in thread_log.records
    )
    assert any(
        t == "operator op-a" and m.startswith("released the leader Lease")
        for t, m in thread_log.records
    )


async def test_a_leader_whose_lease_is_taken_stops_writing_until_it_holds_it_again(
    replicas: Replicas, kube: Kube, graph: Graph, thread_log: ThreadLog
) -> None:
    leader = await replicas.start("op-a")
    await replicas.wait_holder("op-a")
    await kube.create(secret("app", {"client-secret": b"before"}))
    await kube.create(keyset("app", "Taken", {"secret": {"name": "app", "key": "client-secret"}}))
    await kube.wait_reason("app", "Synced")

    # Another holder writes the Lease (as a replica that won it would): op-a must stand by.
    lease = await replicas.lease()
    lease["spec"].update(holderIdentity="intruder", leaseTransitions=7)
    lease_path = f"/apis/coordination.k8s.io/v1/namespaces/{kube.namespace}/leases/{LEASE_NAME}"
    taken = await kube.http.put(lease_path, json=lease)
    assert taken.status_code == 200, taken.text
    runtime = replicas.runtime(leader)

    async def stood_by() -> bool:
        return not runtime.leadership.is_leading()

    await wait_for("op-a to notice it lost the Lease", stood_by, 3.0)
    writes_while_standing_by = len(thread_log.writes_by("op-a"))
    await kube.patch(
        secret("app", {}), secret("app", {"client-secret": b"rotated-while-not-leading"})
    )
    # The rotation reaches op-a's watch; op-a must not act on it. Then the intruder's lease
    # lapses (4 s without renewal) and op-a takes the Lease back and catches up.
    regained = await replicas.wait_holder("op-a", within=10.0)
    await kube.wait_keyset(
        "app", lambda o: (o.get("status") or {}).get("keyCount") == 2, "the rotation after"
    )

    assert regained["spec"]["leaseTransitions"] == 8
    uploads = [
        r
        for r in await graph.requests()
        if r["method"] == "POST" and r["path"].endswith("/uploadSecret")
    ]
    assert len(uploads) == 2  # the first sync and the rotation, once each
    assert len(thread_log.writes_by("op-a")) == writes_while_standing_by + 1
    assert any(
        t == "operator op-a" and m.startswith("lost the leadership") for t, m in thread_log.records
    )


async def test_the_kube_emulator_serves_leases_with_optimistic_concurrency(
    servers: Servers, namespace: str, cluster: Any
) -> None:
    api = KubeApi.connect(str(servers.kubeconfig), threads=1)
    store = KubeLeaseStore(api, namespace, LEASE_NAME)
    try:
        assert await store.get(within=5) is None
        created = await store.create(LeaseRecord("a", 4, None, None, 0), within=5)
        assert created.resource_version
        assert await store.get(within=5) == created
        renewed = await store.update(replace(created, renew_time=datetime.now(UTC)), within=5)
        assert renewed.resource_version != created.resource_version
        with pytest.raises(LeaseUnavailable, match="changed under us"):
            await store.update(created, within=5)  # stale resourceVersion: 409
        assert (await store.get(within=5)) == renewed
    finally:
        store.close()
