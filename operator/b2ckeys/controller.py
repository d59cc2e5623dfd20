"""Fans watch events out to key set reconciles, one at a time per key set.

Kopf delivers events (handlers.py); this keeps the few facts needed to route them (which key
sets read which Secret, which resources name the same B2C key set) and drives the work queue.
Every reconcile starts from a fresh GET of its resource, so nothing here can hand a reconcile a
stale status (which could make it upload a secret twice).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Mapping
from typing import Any

from b2ckeys import metrics
from b2ckeys.conditions import Reason
from b2ckeys.kube.api import KubeError
from b2ckeys.leader import Leadership, NotLeading
from b2ckeys.model import KeySetResource, ObjectKey, normalized_key_set_id
from b2ckeys.reconcile import Reconciler
from b2ckeys.settings import PUBLIC_GRAPH_BETA, Settings
from b2ckeys.tenants import (
    DEFAULT_TENANT,
    TenantKey,
    TenantResource,
    WorkloadIdentityAuth,
    b2c_tenant_identity,
    tenant_key,
)
from b2ckeys.workqueue import WorkQueue

logger = logging.getLogger(__name__)

SourceKey = tuple[str, str, str]  # (namespace, kind, name)
TargetKey = tuple[str, str]  # (B2C tenant identity, normalized key set id)


def _tenant_of(resource: KeySetResource) -> TenantKey | None:
    spec = resource.spec
    return tenant_key(resource.ref.namespace, spec.tenant_ref) if spec is not None else None


def _credential_secrets(tenant: TenantResource, operator_namespace: str) -> set[SourceKey]:
    """The Secrets whose change must re-verify a tenant and rebuild its client."""
    spec = tenant.spec
    if spec is None or isinstance(spec.auth, WorkloadIdentityAuth):
        return set()
    namespace = tenant.key.namespace or operator_namespace
    return {(namespace, "Secret", spec.auth.secret_name)}


def _age(resource: KeySetResource) -> tuple[str, int, str]:
    """Older first. creationTimestamp has one-second resolution, so within a second the one that
    already manages the key set (its status names it) stays the owner; then the uid decides."""
    claimed = 0 if resource.status.key_set_id else 1
    return (resource.created, claimed, resource.ref.uid)


def _wants_reconcile(previous: KeySetResource | None, current: KeySetResource) -> bool:
    """Only what a person or controller changed: not our own status writes, which must not cut
    a backoff or a Retry-After short."""
    return (
        previous is None
        or current.generation != previous.generation
        or (current.deleting_since is not None and previous.deleting_since is None)
        or current.ref.uid != previous.ref.uid
        or current.force_sync != previous.force_sync
    )


class _RecentlyDeleted:
    """Uids seen DELETED, so that a GET racing the deletion cannot revive the resource. Such a
    race lasts a request, so the newest few thousand are plenty; older ones are forgotten."""

    LIMIT = 4096

    def __init__(self) -> None:
        self._uids: OrderedDict[str, None] = OrderedDict()

    def add(self, uid: str) -> None:
        self._uids[uid] = None
        self._uids.move_to_end(uid)
        while len(self._uids) > self.LIMIT:
            self._uids.popitem(last=False)

    def __contains__(self, uid: object) -> bool:
        return uid in self._uids


class Controller:
    def __init__(
        self,
        reconciler: Reconciler,
        settings: Settings,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._reconciler = reconciler
        self._settings = settings
        self._monotonic = monotonic
        self._resources: dict[ObjectKey, KeySetResource] = {}
        self._by_source: dict[SourceKey, set[ObjectKey]] = defaultdict(set)
        self._by_target: dict[TargetKey, set[ObjectKey]] = defaultdict(set)
        self._routes: dict[ObjectKey, tuple[set[SourceKey], TargetKey | None]] = {}
        self._tenants_of: dict[ObjectKey, TenantKey] = {}
        self._failures: dict[ObjectKey, int] = {}
        self._not_before: dict[ObjectKey, float] = {}  # Retry-After gates: no call before this
        # Graph throttles per app and tenant: one 429 holds back every key set of the tenant.
        self._tenant_not_before: dict[str, float] = {}
        self._deleted = _RecentlyDeleted()
        # One reconcile per B2C key set, not only per resource: during an ownership handover
        # the old and the new owner are different resources naming the same key set. A lock
        # lives while some resource names its key set (or a reconcile holds it).
        self._target_locks: dict[TargetKey, asyncio.Lock] = {}
        self.queue: WorkQueue[ObjectKey] = WorkQueue(
            self._work, concurrency=settings.max_concurrent_reconciles, clock=monotonic
        )
        # Tenants: which key sets use each (to re-evaluate them when it changes), which Secrets
        # hold each one's credentials, and the labels of namespaces (for namespaceSelector).
        self._by_tenant: dict[TenantKey, set[ObjectKey]] = defaultdict(set)
        self._tenant_secrets: dict[TenantKey, set[SourceKey]] = {}
        self._tenant_generations: dict[TenantKey, int | None] = {}
        # The real B2C tenant behind each tenant resource (see b2c_tenant_identity): key sets of
        # two tenant resources reaching one B2C tenant are one key set, so one owns it.
        self._tenant_identities: dict[TenantKey, str] = {}
        default = settings.graph
        self._default_identity = (
            b2c_tenant_identity(default.tenant_id, default.base_url)
            if default is not None
            else DEFAULT_TENANT
        )
        self._namespace_labels: dict[str, Mapping[str, str]] = {}
        # Verifying a tenant's credentials is one Graph read; two at a time is plenty.
        self.tenant_queue: WorkQueue[TenantKey] = WorkQueue(
            self._verify_tenant, concurrency=2, clock=monotonic
        )
        self.leadership = Leadership.unelected()  # leader election hook (runtime.py sets it)

    # --- events ----------------------------------------------------------------------------

    def observe_keyset(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        resource = KeySetResource.from_body(body)
        key = resource.key
        if event_type == "DELETED":
            self._deleted.add(resource.ref.uid)
            self._forget(key)
            return
        previous = self._resources.get(key)
        self._resources[key] = resource
        self._route(key, resource)
        if _wants_reconcile(previous, resource):
            # The first listing (no event type) is routine, like a resync: changes go first.
            self.queue.add(key, urgent=event_type is not None)

    def _forget(self, key: ObjectKey) -> None:
        metrics.KEYSET_SERIES.forget(key.namespace, key.name)
        peers = self._unroute(key)
        self._resources.pop(key, None)
        self._failures.pop(key, None)
        self._not_before.pop(key, None)
        self.queue.forget(key)
        for peer in peers:  # the next oldest may own the key set now
            self.queue.add(peer)

    def source_changed(self, kind: str, namespace: str, name: str, *, urgent: bool = True) -> None:
        for key in sorted(self._by_source.get((namespace, kind, name), ()), key=str):
            self.queue.add(key, urgent=urgent)
        for tenant, secrets in list(self._tenant_secrets.items()):
            if (namespace, kind, name) in secrets:
                self.tenant_queue.add(tenant)
                self._requeue_users(tenant)

    def observe_tenant(self, event_type: str | None, resource: TenantResource) -> None:
        """A tenant was created, changed or deleted: verify it, and re-evaluate every key set
        that names it at once (one that lost access must stop writing now, not at a resync)."""
        key = resource.key
        if event_type == "DELETED":
            self._tenant_secrets.pop(key, None)
            self._tenant_generations.pop(key, None)
            self.tenant_queue.forget(key)
            self._note_identity(key, None)
            self._requeue_users(key)
            return
        self._note_identity(key, resource)
        operator_namespace = self._settings.operator_namespace
        self._tenant_secrets[key] = _credential_secrets(resource, operator_namespace)
        known = key in self._tenant_generations
        if not known or self._tenant_generations[key] != resource.generation:
            self._tenant_generations[key] = resource.generation
            self.tenant_queue.add(key)
            if known:
                self._requeue_users(key)

    def observe_namespace(
        self, event_type: str | None, name: str, labels: Mapping[str, str]
    ) -> None:
        """A namespace's labels decide which ClusterB2CTenants its key sets may use."""
        if event_type == "DELETED":
            self._namespace_labels.pop(name, None)
            return
        previous = self._namespace_labels.get(name)
        self._namespace_labels[name] = dict(labels)
        if previous is None or previous == labels:
            return
        for tenant, users in list(self._by_tenant.items()):
            if not tenant.namespace:  # a ClusterB2CTenant: its namespaceSelector may differ now
                for key in sorted(users, key=str):
                    if key.namespace == name:
                        self.queue.add(key)

    def _note_identity(self, key: TenantKey, resource: TenantResource | None) -> None:
        """Record which B2C tenant `key` reaches; when that changed, its key sets join other
        ownership groups, so they (and the peers they leave or meet) are routed again and
        reconciled."""
        spec = resource.spec if resource is not None else None
        identity = (
            b2c_tenant_identity(spec.tenant_id, spec.graph_base_url or PUBLIC_GRAPH_BETA)
            if spec is not None
            else None
        )
        if self._tenant_identities.get(key) == identity:
            return
        if identity is None:
            del self._tenant_identities[key]
        else:
            self._tenant_identities[key] = identity
        for user in sorted(self._by_tenant.get(key, ()), key=str):
            resource_of_user = self._resources.get(user)
            _, before = self._routes.get(user, (set(), None))
            if resource_of_user is None or self._routing(resource_of_user)[1] == before:
                continue
            peers = self._unroute(user)
            self._route(user, resource_of_user)
            _, after = self._routes[user]
            peers |= self._by_target.get(after, set()) if after is not None else set()
            for peer in sorted(peers | {user}, key=str):
                self.queue.add(peer)

    def _identity(self, tenant: TenantKey | None) -> str:
        if tenant is None:
            return self._default_identity
        # Not seen yet: the resource stands for itself until its event (or _work) tells.
        return self._tenant_identities.get(tenant, tenant.queue_id)

    def _routing(self, resource: KeySetResource) -> tuple[set[SourceKey], TargetKey | None]:
        """Which objects a key set reads and which B2C key set it writes (None if unparseable)."""
        spec = resource.spec
        if spec is None:
            return set(), None
        namespace = resource.ref.namespace
        sources: set[SourceKey] = {
            (namespace, ref.kind, ref.name) for ref in spec.source.referenced_objects()
        }
        tenant = tenant_key(namespace, spec.tenant_ref)
        return sources, (self._identity(tenant), normalized_key_set_id(spec.key_set_id))

    async def _learn_identity(self, tenant: TenantKey | None) -> None:
        """Before ownership is decided: the B2C tenant behind a tenant resource whose watch
        event has not arrived yet (right after a start), from one GET."""
        if tenant is None or tenant in self._tenant_identities:
            return
        found = await self._reconciler.kube.read_tenant(tenant)
        if found is not None:
            self._note_identity(tenant, found)

    def _requeue_users(self, tenant: TenantKey) -> None:
        for key in sorted(self._by_tenant.get(tenant, ()), key=str):
            self.queue.add(key)

    async def _verify_tenant(self, key: TenantKey) -> float | None:
        if not self.leadership.is_leading():  # a standby writes no tenant status either
            return None  # requeue_all() brings it back when this replica leads
        try:
            present = await self._reconciler.tenants.verify_and_report(
                key, self._reconciler.clock()
            )
        except KubeError as error:
            delay = self._settings.error_backoff_max
            # Worded as the key set reconciles' retries are: an API server restarting refuses
            # for a moment (RBAC not synced yet), and this says it is retried, not lost.
            logger.warning(
                "%s: Kubernetes API call failed, retrying in %.1fs: %s", key, delay, error
            )
            return delay
        return self._settings.resync_interval if present else None

    def _route(self, key: ObjectKey, resource: KeySetResource) -> None:
        self._unroute(key)
        sources, target = self._routing(resource)
        self._routes[key] = (sources, target)
        tenant = _tenant_of(resource)
        if tenant is not None:
            self._tenants_of[key] = tenant
            self._by_tenant[tenant].add(key)
        for source in sources:
            self._by_source[source].add(key)
        if target is not None:
            self._by_target[target].add(key)

    def _unroute(self, key: ObjectKey) -> set[ObjectKey]:
        tenant = self._tenants_of.pop(key, None)
        if tenant is not None:
            self._by_tenant[tenant].discard(key)
            if not self._by_tenant[tenant]:
                del self._by_tenant[tenant]
        sources, target = self._routes.pop(key, (set(), None))
        for source in sources:
            self._by_source[source].discard(key)
            if not self._by_source[source]:
                del self._by_source[source]
        peers: set[ObjectKey] = set()
        if target is not None:
            self._by_target[target].discard(key)
            peers = set(self._by_target[target])
            if not peers:
                del self._by_target[target]
                lock = self._target_locks.get(target)
                if lock is not None and not lock.locked():
                    del self._target_locks[target]
        return peers

    def owner_of(self, key: ObjectKey) -> ObjectKey | None:
        """The oldest resource naming the same B2C key set (by creation time, then uid)."""
        _, target = self._routes.get(key, (set(), None))
        if target is None:
            return None
        members = [k for k in self._by_target.get(target, ()) if k in self._resources]
        return min(members, key=lambda k: (_age(self._resources[k]), str(k)), default=None)

    # --- work ------------------------------------------------------------------------------

    def requeue_all(self) -> None:
        """Reconcile every key set seen so far: what a newly elected leader does first."""
        for key in sorted(self._resources, key=str):
            self.queue.add(key, urgent=False)
        for tenant in sorted(self._tenant_generations):
            self.tenant_queue.add(tenant)

    async def _work(self, key: ObjectKey) -> float | None:
        if not self.leadership.is_leading():  # leader election hook: a standby writes nothing
            return None  # requeue_all() brings it back when this replica leads
        _, known_target = self._routes.get(key, (set(), None))
        tenant = known_target[0] if known_target is not None else self._default_identity
        gate = (
            max(self._not_before.get(key, 0.0), self._tenant_not_before.get(tenant, 0.0))
            - self._monotonic()
        )
        if gate > 0:
            return gate  # Graph asked us to wait (Retry-After); events do not override that
        try:
            resource = await self._reconciler.kube.read_keyset(key.namespace, key.name)
            if resource is None or resource.ref.uid in self._deleted:
                if key in self._resources and resource is None:
                    self._forget(key)
                return None
            self._resources[key] = resource
            await self._learn_identity(_tenant_of(resource))
            self._route(key, resource)
            _, target = self._routes[key]
            lock = (
                self._target_locks.setdefault(target, asyncio.Lock())
                if target is not None
                else asyncio.Lock()
            )
            async with lock:
                owner = await self._confirmed_owner(key, resource, target)
                result = await self._reconciler.reconcile(
                    resource, owner=owner if owner != key else None
                )
        except NotLeading:  # leader election hook: lost the Lease mid-reconcile
            return None  # the new leader resyncs it; nothing more is written from here
        except KubeError as error:
            metrics.RECONCILES.labels("failure").inc()
            # The API server restarting or refusing one write is a failed reconcile like any
            # other: the bounded backoff, not the work queue's last-resort delay for bugs.
            backoff = self._backoff(key)
            logger.warning(
                "%s: Kubernetes API call failed, retrying in %.1fs: %s", key, backoff, error
            )
            return backoff
        metrics.RECONCILES.labels("failure" if result.failed else "success").inc()
        if not result.failed:
            self._failures.pop(key, None)
            self._not_before.pop(key, None)
            return result.requeue_after
        if result.retry_after is not None and result.outcome.reason == Reason.THROTTLED:
            # Graph said when, for the whole tenant: that is the delay. Not an escalating
            # backoff on top: a key set refused three times in a burst would wait 4 s and more
            # while the tenant has long been writable again (bench_scale's throttled phase).
            self._not_before[key] = self._monotonic() + result.retry_after
            self._tenant_not_before[tenant] = self._not_before[key]
            return result.retry_after
        backoff = self._backoff(key)
        if result.retry_after is not None:
            # Graph said when: never earlier (events included), whatever the reason shown.
            self._not_before[key] = self._monotonic() + result.retry_after
            return max(backoff, result.retry_after)
        if result.requeue_after is not None:
            backoff = min(backoff, result.requeue_after)
        return backoff

    async def _confirmed_owner(
        self, key: ObjectKey, resource: KeySetResource, target: TargetKey | None
    ) -> ObjectKey | None:
        """The owner of the key set. A resource that has not written to it yet confirms with a
        LIST that no older one exists: right after a restart the watch may not have delivered
        the older resource yet, and another operator shard never delivers it."""
        owner = self.owner_of(key)
        if owner != key or target is None or resource.status.key_set_id:
            return owner
        try:
            everyone = await self._reconciler.kube.list_keysets()
        except KubeError as error:
            if error.status != 403:
                raise
            # A namespaced deployment may not list cluster-wide; what it watches is all it has.
            return owner
        for other in everyone:
            if other.key == key or other.spec is None:
                continue
            if normalized_key_set_id(other.spec.key_set_id) != target[1]:
                continue
            await self._learn_identity(_tenant_of(other))
            if self._routing(other)[1] != target:
                continue
            if other.ref.uid in self._deleted:
                continue
            if (_age(other), str(other.key)) < (_age(resource), str(key)):
                return other.key
        return key

    def _backoff(self, key: ObjectKey) -> float:
        """Count one more failure of `key`; the delay before its next attempt."""
        failures = self._failures[key] = self._failures.get(key, 0) + 1
        return min(
            # The exponent is capped: 2.0 ** 1024 overflows, and the result is capped anyway.
            self._settings.error_backoff_initial * 2.0 ** min(failures - 1, 30),
            self._settings.error_backoff_max,
        )
