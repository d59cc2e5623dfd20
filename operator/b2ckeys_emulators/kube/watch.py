"""Watch streams over the store's change history, with a real API server's semantics.

* No `resourceVersion` (or "0"): synthetic ADDED events for what exists, then live changes.
  A number N: only changes after N; if the history no longer reaches back to N, one ERROR event
  with a 410 Expired Status, as kube-apiserver's watch cache sends.
* Selectors filter on both sides of a change: an object that starts matching arrives as ADDED,
  one that stops matching leaves as DELETED (its previous state, at the new resourceVersion).
* `timeoutSeconds` ends the stream; `allowWatchBookmarks` adds periodic BOOKMARK events and one
  before a timeout; `sendInitialEvents=true` ends the synthetic ADDED events with the
  `k8s.io/initial-events-end` BOOKMARK.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import kmock

from b2ckeys_emulators.kube import errors as errors
from b2ckeys_emulators.kube.resources import ResourceSpec
from b2ckeys_emulators.kube.selectors import FieldSelector, LabelSelector
from b2ckeys_emulators.kube.store import Change, ObjectStore

INITIAL_EVENTS_END = "k8s.io/initial-events-end"


@dataclass(frozen=True)
class ObjectFilter:
    spec: ResourceSpec
    namespace: str | None
    name: str | None
    labels: LabelSelector
    fields: FieldSelector

    def matches(self, obj: Mapping[str, Any]) -> bool:
        meta = obj.get("metadata", {})
        return (
            (self.namespace is None or meta.get("namespace") == self.namespace)
            and (self.name is None or meta.get("name") == self.name)
            and self.labels.matches(meta.get("labels"))
            and self.fields.matches(obj)
        )


@dataclass(frozen=True)
class WatchRequest:
    filter: ObjectFilter
    since: int | None  # None: start with the current state
    send_initial_events: bool
    allow_bookmarks: bool
    timeout: float | None


def present(spec: ResourceSpec, obj: Mapping[str, Any]) -> dict[str, Any]:
    """The object as served through `spec`'s version (one CRD object, many served versions)."""
    if obj.get("apiVersion") == spec.api_version:
        return dict(obj)
    return {**obj, "apiVersion": spec.api_version}


def event_for(change: Change, where: ObjectFilter) -> dict[str, Any] | None:
    if change.storage != where.spec.storage:
        return None
    now_matches = change.type != "DELETED" and where.matches(change.object)
    before = change.object if change.type == "DELETED" else change.previous
    matched_before = before is not None and where.matches(before)
    if now_matches:
        kind = "MODIFIED" if matched_before else "ADDED"
        return {"type": kind, "object": present(where.spec, change.object)}
    if matched_before and before is not None:
        version = str(change.resource_version)
        gone = {**before, "metadata": {**before["metadata"], "resourceVersion": version}}
        return {"type": "DELETED", "object": present(where.spec, gone)}
    return None


class WatchHub:
    """Wakes every open watch when the store changes; closes them all at shutdown."""

    def __init__(self, bookmark_interval: Callable[[], float]) -> None:
        self._bookmark_interval = bookmark_interval
        self._waiters: set[asyncio.Event] = set()
        self._closed = False

    @property
    def open_watches(self) -> int:
        return len(self._waiters)

    def notify(self) -> None:
        for waiter in self._waiters:
            waiter.set()

    def close(self) -> None:
        self._closed = True
        self.notify()

    async def stream(self, store: ObjectStore, request: WatchRequest) -> AsyncIterator[Any]:
        waiter = asyncio.Event()
        self._waiters.add(waiter)
        try:
            async for event in self._events(store, request, waiter):
                yield event
        finally:
            self._waiters.discard(waiter)

    async def _events(
        self, store: ObjectStore, request: WatchRequest, waiter: asyncio.Event
    ) -> AsyncIterator[Any]:
        where = request.filter
        loop = asyncio.get_running_loop()
        deadline = None if request.timeout is None else loop.time() + request.timeout
        position = request.since if request.since is not None else store.resource_version
        if request.since is None or request.send_initial_events:
            position = store.resource_version  # the state below is as of this version
            for obj in store.list_objects(where.spec, where.namespace):
                if where.matches(obj):
                    yield {"type": "ADDED", "object": present(where.spec, obj)}
            if request.send_initial_events:
                yield _bookmark(where.spec, position, {INITIAL_EVENTS_END: "true"})
        next_bookmark = loop.time() + self._bookmark_interval()
        while True:
            waiter.clear()
            try:
                changes = store.changes_since(position)
            except kmock.KubernetesError as gone:
                yield {"type": "ERROR", "object": errors.status_body(gone)}
                return
            for change in changes:
                position = change.resource_version
                if (event := event_for(change, where)) is not None:
                    yield event
            if self._closed:
                return
            wake_at = next_bookmark if request.allow_bookmarks else None
            if deadline is not None:
                wake_at = deadline if wake_at is None else min(wake_at, deadline)
            with contextlib.suppress(TimeoutError):
                timeout = None if wake_at is None else max(0.0, wake_at - loop.time())
                await asyncio.wait_for(waiter.wait(), timeout)
            if deadline is not None and loop.time() >= deadline:
                if request.allow_bookmarks:
                    yield _bookmark(where.spec, position)
                return
            if request.allow_bookmarks and loop.time() >= next_bookmark:
                yield _bookmark(where.spec, position)
                next_bookmark = loop.time() + self._bookmark_interval()


def _bookmark(
    spec: ResourceSpec, position: int, annotations: Mapping[str, str] | None = None
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"resourceVersion": str(position)}
    if annotations:
        metadata["annotations"] = dict(annotations)
    return {
        "type": "BOOKMARK",
        "object": {"kind": spec.kind, "apiVersion": spec.api_version, "metadata": metadata},
    }
