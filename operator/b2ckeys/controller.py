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

from b2ckeys.conditions import Reason
from b2ckeys.kube.api import KubeError
from b2ckeys.model import KeySetResource, ObjectKey, normalized_key_set_id
from b2ckeys.reconcile import Reconciler
from b2ckeys.settings import Settings
from b2ckeys.workqueue import WorkQueue

logger = logging.getLogger(__name__)

SourceKey = tuple[str, str, str]  # (namespace, kind, name)
TargetKey = tuple[str, str]  # (tenant, normalized key set id)
DEFAULT_TENANT = ""


def _routing(resource: KeySetResource) -> tuple[set[SourceKey], TargetKey | None]:
    """Which objects a key set reads and which B2C key set it writes (None if unparseable)."""
    spec = resource.spec
    if spec is None:
        return set(), None
    namespace = resource.ref.namespace
    sources: set[SourceKey] = {
        (namespace, ref.kind, ref.name) for ref in spec.source.referenced_objects()
    }
    tenant = f"{spec.tenant_ref.kind}/{spec.tenant_ref.name}" if spec.tenant_ref else DEFAULT_TENANT
    return sources, (tenant, normalized_key_set_id(spec.key_set_id))


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
            self.queue.add(key)

    def _forget(self, key: ObjectKey) -> None:
        peers = self._unroute(key)
        self._resources.pop(key, None)
        self._failures.pop(key, None)
        self._not_before.pop(key, None)
        self.queue.forget(key)
        for peer in peers:  # the next oldest may own the key set now
            self.queue.add(peer)

    def source_changed(self, kind: str, namespace: str, name: str) -> None:
        for key in sorted(self._by_source.get((namespace, kind, name), ()), key=str):
            self.queue.add(key)

    def _route(self, key: ObjectKey, resource: KeySetResource) -> None:
        self._unroute(key)
        sources, target = _routing(resource)
        self._routes[key] = (sources, target)
        for source in sources:
            self._by_source[source].add(key)
        if target is not None:
            self._by_target[target].add(key)

    def _unroute(self, key: ObjectKey) -> set[ObjectKey]:
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

    async def _work(self, key: ObjectKey) -> float | None:
        _, known_target = self._routes.get(key, (set(), None))
        tenant = known_target[0] if known_target is not None else DEFAULT_TENANT
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
        except KubeError as error:
            # The API server restarting or refusing one write is a failed reconcile like any
            # other: the bounded backoff, not the work queue's last-resort delay for bugs.
            backoff = self._backoff(key)
            logger.warning(
                "%s: Kubernetes API call failed, retrying in %.1fs: %s", key, backoff, error
            )
            return backoff
        if not result.failed:
            self._failures.pop(key, None)
            self._not_before.pop(key, None)
            return result.requeue_after
        backoff = self._backoff(key)
        if result.retry_after is not None:
            # Graph said when: never earlier (events included), whatever the reason shown.
            self._not_before[key] = self._monotonic() + result.retry_after
            if result.outcome.reason == Reason.THROTTLED:
                self._tenant_not_before[tenant] = self._not_before[key]
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
            if other.key == key or _routing(other)[1] != target:
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
