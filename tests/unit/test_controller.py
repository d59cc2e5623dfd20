"""Event routing, ownership and pacing in the controller, with a stand-in reconciler that
records what it is asked (the controller's only collaborators are the storage layer's reads
and the reconcile call)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from b2ckeys.conditions import Outcome, Reason
from b2ckeys.controller import Controller
from b2ckeys.graph.client import GraphConnection
from b2ckeys.model import KeySetResource, ObjectKey
from b2ckeys.reconcile import ReconcileResult
from b2ckeys.settings import Settings
from b2ckeys.tenants import TenantKey, TenantResource


def body(
    name: str, *, created: str, uid: str, generation: int = 1, **status: Any
) -> dict[str, Any]:
    return {
        "metadata": {
            "namespace": "ns",
            "name": name,
            "uid": uid,
            "generation": generation,
            "creationTimestamp": created,
        },
        "spec": {"keySetId": "Shared", "source": {"generate": {"kty": "RSA"}}},
        "status": status,
    }


@dataclass
class StoredObjects:
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)

    async def read_keyset(self, namespace: str, name: str) -> KeySetResource | None:
        found = self.objects.get(name)
        return KeySetResource.from_body(found) if found is not None else None

    async def list_keysets(self) -> list[KeySetResource]:
        return [KeySetResource.from_body(o) for o in self.objects.values()]

    tenants: dict[str, TenantResource] = field(default_factory=dict)
    tenant_reads: list[str] = field(default_factory=list)

    async def read_tenant(self, key: TenantKey) -> TenantResource | None:
        self.tenant_reads.append(key.name)
        return self.tenants.get(key.name)


@dataclass
class RecordingReconciler:
    kube: StoredObjects
    result: ReconcileResult = field(
        default_factory=lambda: ReconcileResult(Outcome(Reason.SYNCED, "ok"), 600.0)
    )
    calls: list[tuple[str, ObjectKey | None]] = field(default_factory=list)

    async def reconcile(
        self, resource: KeySetResource, *, owner: ObjectKey | None
    ) -> ReconcileResult:
        self.calls.append((resource.key.name, owner))
        return self.result


def controller(now: list[float]) -> tuple[Controller, RecordingReconciler]:
    reconciler = RecordingReconciler(StoredObjects())
    return Controller(reconciler, Settings(), monotonic=lambda: now[0]), reconciler  # type: ignore[arg-type]


async def test_the_older_resource_owns_and_a_deleted_owner_hands_over() -> None:
    now = [0.0]
    ctl, rec = controller(now)
    older = body("a", created="2026-01-01T00:00:00Z", uid="1", keySetId="B2C_1A_Shared")
    newer = body("b", created="2026-01-02T00:00:00Z", uid="2")
    rec.kube.objects = {"a": older, "b": newer}
    ctl.observe_keyset(None, older)
    ctl.observe_keyset(None, newer)
    await ctl._work(ObjectKey("ns", "b"))
    assert rec.calls[-1] == ("b", ObjectKey("ns", "a"))

    del rec.kube.objects["a"]
    ctl.observe_keyset("DELETED", older)
    assert ctl.queue.scheduled_in(ObjectKey("ns", "b")) == 0.0  # the peer is woken at once
    await ctl._work(ObjectKey("ns", "b"))
    assert rec.calls[-1] == ("b", None)


async def test_a_newcomer_confirms_ownership_with_a_list_before_its_first_write() -> None:
    now = [0.0]
    ctl, rec = controller(now)
    older = body("a", created="2026-01-01T00:00:00Z", uid="1", keySetId="B2C_1A_Shared")
    newer = body("b", created="2026-01-02T00:00:00Z", uid="2")
    rec.kube.objects = {"a": older, "b": newer}
    ctl.observe_keyset(None, newer)  # the older one has not been delivered by the watch yet
    await ctl._work(ObjectKey("ns", "b"))
    assert rec.calls[-1] == ("b", ObjectKey("ns", "a"))


async def test_a_resource_gone_by_the_time_it_is_read_is_forgotten_not_revived() -> None:
    now = [0.0]
    ctl, rec = controller(now)
    a = body("a", created="2026-01-01T00:00:00Z", uid="1")
    ctl.observe_keyset(None, a)
    assert await ctl._work(ObjectKey("ns", "a")) is None  # not in the store: deleted
    assert ctl.owner_of(ObjectKey("ns", "a")) is None
    assert rec.calls == []


async def test_own_status_writes_do_not_requeue_but_spec_changes_do() -> None:
    now = [0.0]
    ctl, _ = controller(now)
    key = ObjectKey("ns", "a")
    a = body("a", created="2026-01-01T00:00:00Z", uid="1")
    ctl.observe_keyset(None, a)
    ctl.queue.forget(key)
    ctl.observe_keyset("MODIFIED", body("a", created="2026-01-01T00:00:00Z", uid="1", keyCount=1))
    assert ctl.queue.scheduled_in(key) is None
    ctl.observe_keyset("MODIFIED", body("a", created="2026-01-01T00:00:00Z", uid="1", generation=2))
    assert ctl.queue.scheduled_in(key) == 0.0


async def test_a_new_force_sync_annotation_requeues_at_once_and_the_same_one_does_not() -> None:
    now = [0.0]
    ctl, _ = controller(now)
    key = ObjectKey("ns", "a")
    a = body("a", created="2026-01-01T00:00:00Z", uid="1")
    ctl.observe_keyset(None, a)
    ctl.queue.forget(key)
    forced = body("a", created="2026-01-01T00:00:00Z", uid="1")
    forced["metadata"]["annotations"] = {"b2ckeys.dev/force-sync": "2026-11-28T10:00:00Z"}
    ctl.observe_keyset("MODIFIED", forced)
    assert ctl.queue.scheduled_in(key) == 0.0
    ctl.queue.forget(key)
    ctl.observe_keyset("MODIFIED", forced)  # our own status write: the same annotation value
    assert ctl.queue.scheduled_in(key) is None


async def test_the_per_key_set_locks_go_with_the_last_resource_naming_the_key_set() -> None:
    now = [0.0]
    ctl, rec = controller(now)
    for i in range(50):
        b = body(f"k{i}", created="2026-01-01T00:00:00Z", uid=str(i))
        b["spec"]["keySetId"] = f"Set{i}"
        rec.kube.objects[f"k{i}"] = b
        ctl.observe_keyset(None, b)
        await ctl._work(ObjectKey("ns", f"k{i}"))
    assert len(ctl._target_locks) == 50
    for i in range(50):
        ctl.observe_keyset("DELETED", rec.kube.objects.pop(f"k{i}"))
    assert ctl._target_locks == {}


async def test_retry_after_gates_the_key_set_whatever_arrives_meanwhile() -> None:
    now = [100.0]
    ctl, rec = controller(now)
    a = body("a", created="2026-01-01T00:00:00Z", uid="1")
    rec.kube.objects = {"a": a}
    ctl.observe_keyset(None, a)
    rec.result = ReconcileResult(
        Outcome(Reason.THROTTLED, "wait"), None, failed=True, retry_after=30.0
    )
    assert await ctl._work(ObjectKey("ns", "a")) == 30.0
    now[0] += 10.0
    assert await ctl._work(ObjectKey("ns", "a")) == 20.0  # an event-driven run is turned back
    assert len(rec.calls) == 1


async def test_a_429_on_one_key_set_holds_back_the_whole_tenant() -> None:
    now = [100.0]
    ctl, rec = controller(now)
    a = body("a", created="2026-01-01T00:00:00Z", uid="1")
    b = body("b", created="2026-01-01T00:00:00Z", uid="2")
    b["spec"]["keySetId"] = "Other"
    rec.kube.objects = {"a": a, "b": b}
    ctl.observe_keyset(None, a)
    ctl.observe_keyset(None, b)
    rec.result = ReconcileResult(
        Outcome(Reason.THROTTLED, "wait"), None, failed=True, retry_after=30.0
    )
    await ctl._work(ObjectKey("ns", "a"))
    now[0] += 5.0
    assert await ctl._work(ObjectKey("ns", "b")) == 25.0
    assert [name for name, _ in rec.calls] == ["a"]


def cluster_tenant(name: str, tenant_id: str) -> TenantResource:
    return TenantResource.from_body(
        "ClusterB2CTenant",
        {
            "metadata": {"name": name, "uid": f"t-{name}", "generation": 1},
            "spec": {
                "tenantId": tenant_id,
                "clientId": "app",
                "auth": {"workloadIdentity": {}},
                "namespaceSelector": {"matchLabels": {"team": "a"}},
            },
        },
    )


def in_tenant(name: str, uid: str, tenant: str) -> dict[str, Any]:
    found = body(name, created=f"2026-01-0{uid}T00:00:00Z", uid=uid)
    found["spec"]["tenantRef"] = {"kind": "ClusterB2CTenant", "name": tenant}
    return found


async def test_two_tenant_resources_reaching_one_b2c_tenant_share_key_set_ownership() -> None:
    now = [0.0]
    ctl, rec = controller(now)
    rec.kube.tenants = {
        "one": cluster_tenant("one", "Contoso.onmicrosoft.com"),
        "two": cluster_tenant("two", "contoso.onmicrosoft.com "),  # the same tenant, spelled so
        "other": cluster_tenant("other", "fabrikam.onmicrosoft.com"),
    }
    a, b, c = in_tenant("a", "1", "one"), in_tenant("b", "2", "two"), in_tenant("c", "3", "other")
    rec.kube.objects = {"a": a, "b": b, "c": c}
    for found in (a, b, c):
        ctl.observe_keyset(None, found)
    # No tenant event yet (right after a start): the reconcile asks for the tenant itself.
    await ctl._work(ObjectKey("ns", "b"))
    assert rec.calls[-1] == ("b", ObjectKey("ns", "a"))  # Conflict: a is older
    await ctl._work(ObjectKey("ns", "c"))
    assert rec.calls[-1] == ("c", None)  # another tenant: its own key set
    reads = list(rec.kube.tenant_reads)
    await ctl._work(ObjectKey("ns", "a"))
    assert rec.calls[-1] == ("a", None)
    assert rec.kube.tenant_reads == reads  # learned once, not read per reconcile

    # "two" is repointed at fabrikam: b leaves a's group and joins c's, where it is older.
    ctl.observe_tenant(None, cluster_tenant("two", "fabrikam.onmicrosoft.com"))
    assert ctl.queue.scheduled_in(ObjectKey("ns", "b")) == 0.0
    assert ctl.queue.scheduled_in(ObjectKey("ns", "c")) == 0.0
    await ctl._work(ObjectKey("ns", "c"))
    assert rec.calls[-1] == ("c", ObjectKey("ns", "b"))  # b (older) owns it now
    # The same identity again (a status update) routes nothing anew.
    ctl.queue.forget(ObjectKey("ns", "a"))
    ctl.observe_tenant(None, cluster_tenant("one", "contoso.onmicrosoft.com"))
    assert ctl.queue.scheduled_in(ObjectKey("ns", "a")) is None


async def test_a_tenant_resource_reaching_the_default_tenant_shares_its_key_sets() -> None:
    now = [0.0]
    reconciler = RecordingReconciler(StoredObjects())
    settings = Settings(
        graph=GraphConnection(
            tenant_id="contoso.onmicrosoft.com", client_id="app", federated_token_file="/t"
        )
    )
    ctl = Controller(reconciler, settings, monotonic=lambda: now[0])  # type: ignore[arg-type]
    reconciler.kube.tenants = {"one": cluster_tenant("one", "contoso.onmicrosoft.com")}
    default = body("a", created="2026-01-01T00:00:00Z", uid="1", keySetId="B2C_1A_Shared")
    named = in_tenant("b", "2", "one")
    reconciler.kube.objects = {"a": default, "b": named}
    ctl.observe_keyset(None, default)
    ctl.observe_keyset(None, named)
    await ctl._work(ObjectKey("ns", "b"))
    assert reconciler.calls[-1] == ("b", ObjectKey("ns", "a"))


async def test_throttling_waits_as_long_as_graph_asks_and_does_not_escalate() -> None:
    now = [100.0]
    ctl, rec = controller(now)
    a = body("a", created="2026-01-01T00:00:00Z", uid="1")
    rec.kube.objects = {"a": a}
    ctl.observe_keyset(None, a)
    rec.result = ReconcileResult(
        Outcome(Reason.THROTTLED, "wait"), None, failed=True, retry_after=1.0
    )
    delays = []
    for _ in range(4):  # refused again each time the tenant is writable
        delays.append(await ctl._work(ObjectKey("ns", "a")))
        now[0] += 1.0
    assert delays == [1.0, 1.0, 1.0, 1.0]
    rec.result = ReconcileResult(Outcome(Reason.GRAPH_ERROR, "503"), None, failed=True)
    assert await ctl._work(ObjectKey("ns", "a")) == 1.0  # other failures start their backoff
    assert await ctl._work(ObjectKey("ns", "a")) == 2.0
