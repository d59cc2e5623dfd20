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
from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import Any

from b2ckeys.conditions import Reason
from b2ckeys.kube.api import KubeError
from b2ckeys.leader import Leadership, NotLeading
from b2ckeys.model import ObjectKey, SpecError, normalized_key_set_id, parse_spec
from b2ckeys.settings import Settings
from b2ckeys.sync import Reconciler
from b2ckeys.workqueue import WorkQueue

logger = logging.getLogger(__name__)

SourceKey = tuple[str, str, str]  # (namespace, kind, name)
TargetKey = tuple[str, str]  # (tenant, normalized key set id)
DEFAULT_TENANT = ""


def _key(body: Mapping[str, Any]) -> ObjectKey:
    meta = body.get("metadata") or {}
    return ObjectKey(str(meta.get("namespace")), str(meta.get("name")))


def _routing(body: Mapping[str, Any]) -> tuple[set[SourceKey], TargetKey | None]:
    """Which objects a key set reads and which B2C key set it writes (None if unparseable)."""
    namespace = str((body.get("metadata") or {}).get("namespace"))
    try:
        spec = parse_spec(body.get("spec") or {})
    except SpecError:
        return set(), None
    sources = {(namespace, kind, name) for kind, name in spec.source.referenced_objects()}
    tenant = f"{spec.tenant_ref.kind}/{spec.tenant_ref.name}" if spec.tenant_ref else DEFAULT_TENANT
    return sources, (tenant, normalized_key_set_id(spec.key_set_id))


def _age(body: Mapping[str, Any]) -> tuple[str, int, str]:
    """Older first. creationTimestamp has one-second resolution, so within a second the one that
    already manages the key set (its status names it) stays the owner; then the uid decides."""
    meta = body.get("metadata") or {}
    claimed = 0 if (body.get("status") or {}).get("keySetId") else 1
    return (str(meta.get("creationTimestamp") or ""), claimed, str(meta.get("uid") or ""))


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
        self._bodies: dict[ObjectKey, Mapping[str, Any]] = {}
        self._by_source: dict[SourceKey, set[ObjectKey]] = defaultdict(set)
        self._by_target: dict[TargetKey, set[ObjectKey]] = defaultdict(set)
        self._routes: dict[ObjectKey, tuple[set[SourceKey], TargetKey | None]] = {}
        self._failures: dict[ObjectKey, int] = {}
        self._not_before: dict[ObjectKey, float] = {}  # Retry-After gates: no call before this
        # Graph throttles per app and tenant: one 429 holds back every key set of the tenant.
        self._tenant_not_before: dict[str, float] = {}
        self._deleted: set[str] = set()  # uids seen DELETED: a late GET must not revive them
        # One reconcile per B2C key set, not only per resource: during an ownership handover
        # the old and the new owner are different resources naming the same key set.
        self._target_locks: dict[TargetKey, asyncio.Lock] = defaultdict(asyncio.Lock)
        self.queue: WorkQueue[ObjectKey] = WorkQueue(
            self._work, concurrency=settings.max_concurrent_reconciles, clock=monotonic
        )
        self.leadership = Leadership.unelected()  # leader election hook (runtime.py sets it)

    # --- events ----------------------------------------------------------------------------

    def observe_keyset(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        key = _key(body)
        meta = body.get("metadata") or {}
        if event_type == "DELETED":
            self._deleted.add(str(meta.get("uid")))
            self._forget(key)
            return
        previous = self._bodies.get(key)
        self._bodies[key] = body
        self._route(key, body)
        before = (previous or {}).get("metadata") or {}
        # Only what a person or controller changed: not our own status writes, which must not
        # cut a backoff or a Retry-After short.
        if (
            previous is None
            or meta.get("generation") != before.get("generation")
            or (meta.get("deletionTimestamp") and not before.get("deletionTimestamp"))
            or meta.get("uid") != before.get("uid")
        ):
            self.queue.add(key)

    def _forget(self, key: ObjectKey) -> None:
        peers = self._unroute(key)
        self._bodies.pop(key, None)
        self._failures.pop(key, None)
        self._not_before.pop(key, None)
        self.queue.forget(key)
        for peer in peers:  # the next oldest may own the key set now
            self.queue.add(peer)

    def source_changed(self, kind: str, namespace: str, name: str) -> None:
        for key in sorted(self._by_source.get((namespace, kind, name), ()), key=str):
            self.queue.add(key)

    def _route(self, key: ObjectKey, body: Mapping[str, Any]) -> None:
        self._unroute(key)
        sources, target = _routing(body)
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
        return peers

    def owner_of(self, key: ObjectKey) -> ObjectKey | None:
        """The oldest resource naming the same B2C key set (by creation time, then uid)."""
        _, target = self._routes.get(key, (set(), None))
        if target is None:
            return None
        members = [k for k in self._by_target.get(target, ()) if k in self._bodies]
        return min(members, key=lambda k: (_age(self._bodies[k]), str(k)), default=None)

    # --- work ------------------------------------------------------------------------------

    def requeue_all(self) -> None:
        """Reconcile every key set seen so far: what a newly elected leader does first."""
        for key in sorted(self._bodies, key=str):
            self.queue.add(key)

    async def _work(self, key: ObjectKey) -> float | None:
        if not self.leadership.is_leading():  # leader election hook: a standby writes nothing
            return None  # requeue_all() brings it back when this replica leads
        _, known_target = self._routes.get(key, (set(), None))
        tenant = known_target[0] if known_target is not None else DEFAULT_TENANT
        gate = (
            max(self._not_before.get(key, 0.0), self._tenant_not_before.get(tenant, 0.0))
            - self._monotonic()
        )
        if gate > 0:
            return gate  # Graph asked us to wait (Retry-After); events do not override that
        try:
            body = await self._reconciler.kube.read_keyset(key.namespace, key.name)
            if body is None or str((body.get("metadata") or {}).get("uid")) in self._deleted:
                if key in self._bodies and body is None:
                    self._forget(key)
                return None
            self._bodies[key] = body
            self._route(key, body)
            _, target = self._routes[key]
            lock = self._target_locks[target] if target is not None else asyncio.Lock()
            async with lock:
                owner = await self._confirmed_owner(key, body, target)
                result = await self._reconciler.reconcile(
                    body, owner=owner if owner != key else None
                )
        except NotLeading:  # leader election hook: lost the Lease mid-reconcile
            return None  # the new leader resyncs it; nothing more is written from here
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
        self, key: ObjectKey, body: Mapping[str, Any], target: TargetKey | None
    ) -> ObjectKey | None:
        """The owner of the key set. A resource that has not written to it yet confirms with a
        LIST that no older one exists: right after a restart the watch may not have delivered
        the older resource yet, and another operator shard never delivers it."""
        owner = self.owner_of(key)
        if owner != key or target is None or (body.get("status") or {}).get("keySetId"):
            return owner
        try:
            everyone = await self._reconciler.kube.list_keysets()
        except KubeError as error:
            if error.status != 403:
                raise
            # A namespaced deployment may not list cluster-wide; what it watches is all it has.
            return owner
        for other in everyone:
            other_key = _key(other)
            if other_key == key or _routing(other)[1] != target:
                continue
            if str((other.get("metadata") or {}).get("uid")) in self._deleted:
                continue
            if (_age(other), str(other_key)) < (_age(body), str(key)):
                return other_key
        return key

    def _backoff(self, key: ObjectKey) -> float:
        """Count one more failure of `key`; the delay before its next attempt."""
        failures = self._failures[key] = self._failures.get(key, 0) + 1
        return min(
            # The exponent is capped: 2.0 ** 1024 overflows, and the result is capped anyway.
            self._settings.error_backoff_initial * 2.0 ** min(failures - 1, 30),
            self._settings.error_backoff_max,
        )
