"""The emulator's object store: what etcd and the API server's registry do, in memory.

Every write gets the next value of one global `resourceVersion` counter and becomes a `Change`
in a bounded history that watches resume from. Objects live in kmock's `ObjectsArray`, so tests
can inspect every version of an object. Lifecycles follow the real server: deletion marks objects
that have finalizers and removes them once the last one goes; deleting a namespace or a CRD
deletes what is inside, and the container goes when it is empty.
"""

from __future__ import annotations

import bisect
import copy
import dataclasses
import random
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import kmock

from b2ckeys_emulators.kube import errors as errors
from b2ckeys_emulators.kube.admission import NAMESPACE_FINALIZER, admit_create, admit_update
from b2ckeys_emulators.kube.crds import CRD_CLEANUP_FINALIZER, CustomResource, served_resources
from b2ckeys_emulators.kube.resources import (
    CRDS,
    NAMESPACES,
    ResourceSpec,
    custom_resource_info,
    read_spec,
)

ChangeType = Literal["ADDED", "MODIFIED", "DELETED"]
ObjectKey = tuple[kmock.resource, str | None, str]
Clock = Callable[[], datetime]

# The namespaces every cluster starts with.
INITIAL_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
# The alphabet and length kube-apiserver uses for `generateName` suffixes.
_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_SUFFIX_LENGTH = 5


@dataclass(frozen=True)
class Change:
    """One write, as watch streams report it."""

    resource_version: int
    storage: kmock.resource
    type: ChangeType
    object: Mapping[str, Any]
    previous: Mapping[str, Any] | None

    @property
    def namespace(self) -> str | None:
        namespace: str | None = self.object.get("metadata", {}).get("namespace")
        return namespace


def utc_now() -> datetime:
    return datetime.now(UTC)


class ObjectStore:
    def __init__(
        self,
        objects: kmock.ObjectsArray,
        resources: kmock.ResourcesArray,
        *,
        clock: Clock,
        history_limit: int,
        on_change: Callable[[], None],
        seed: int = 0,
    ) -> None:
        self._objects = objects
        self._resources = resources
        self._clock = clock
        self._history_limit = history_limit
        self._on_change = on_change
        self._random = random.Random(seed)  # noqa: S311 - uids and names, not secrets
        self._custom: dict[kmock.resource, CustomResource] = {}
        self._storage_versions: dict[tuple[str, str], str] = {}
        self._resource_version = 0
        self._changes: list[Change] = []
        self._forgotten_up_to = 0

    # --- resources

    def spec(self, resource: kmock.resource) -> ResourceSpec | None:
        return read_spec(self._resources, resource, self._custom.get(resource))

    def specs(self) -> list[ResourceSpec]:
        found = (self.spec(kmock.resource(resource)) for resource in list(self._resources))
        return [spec for spec in found if spec is not None]

    def spec_of(self, api_version: str, kind: str) -> ResourceSpec | None:
        return next(
            (s for s in self.specs() if s.api_version == api_version and s.kind == kind), None
        )

    # --- reading

    @property
    def resource_version(self) -> int:
        return self._resource_version

    def get(self, spec: ResourceSpec, namespace: str | None, name: str) -> dict[str, Any] | None:
        return self._current((spec.storage, namespace if spec.namespaced else None, name))

    def list_objects(self, spec: ResourceSpec, namespace: str | None) -> list[dict[str, Any]]:
        found = [
            (key, obj)
            for key, obj in self._stored(spec.storage)
            if namespace is None or key[1] == namespace
        ]
        found.sort(key=lambda item: (item[0][1] or "", item[0][2]))
        return [obj for _, obj in found]

    def changes_since(self, resource_version: int) -> list[Change]:
        """Changes after `resource_version`; 410 Expired if some were already forgotten."""
        if resource_version < self._forgotten_up_to:
            raise errors.expired(resource_version, self._forgotten_up_to + 1)
        start = bisect.bisect_right(
            self._changes, resource_version, key=lambda change: change.resource_version
        )
        return self._changes[start:]

    def forget_history(self) -> None:
        """Drop every kept change, as an etcd compaction does: older watches get 410."""
        self._forgotten_up_to = self._resource_version
        self._changes.clear()

    # --- writing

    def create(
        self, spec: ResourceSpec, namespace: str | None, body: Any, *, dry_run: bool = False
    ) -> dict[str, Any]:
        if not isinstance(body, Mapping):
            raise errors.bad_request("the body of the request must be a JSON object")
        if spec.namespaced and namespace is None:
            raise errors.method_not_allowed()
        namespace = namespace if spec.namespaced else None
        name = self._requested_name(spec, body)
        if self._current((spec.storage, namespace, name)) is not None:
            raise errors.already_exists(spec.qualified_plural, name)
        if namespace is not None:
            self._require_open_namespace(namespace, spec, name)
        self._require_established(spec)
        obj = admit_create(spec, namespace, body, name=name, now=self._now())
        meta = obj["metadata"]
        meta["uid"] = str(uuid.UUID(int=self._random.getrandbits(128), version=4))
        meta["creationTimestamp"] = self._now()
        if spec.tracks_generation:
            meta["generation"] = 1
        if dry_run:
            return obj
        self._commit("ADDED", spec.storage, (spec.storage, namespace, name), obj, None)
        if spec.storage == CRDS:
            self._register_crd(obj)
        return obj

    def update(
        self,
        spec: ResourceSpec,
        namespace: str | None,
        name: str,
        change: Callable[[dict[str, Any]], Any],
        *,
        subresource: str | None,
        replace: bool,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """Apply `change` (a patch, or a PUT body) to the current object, and store the result."""
        key = (spec.storage, namespace if spec.namespaced else None, name)
        old = self._current(key)
        if old is None:
            raise errors.not_found(spec.qualified_plural, name)
        candidate = change(copy.deepcopy(old))
        new = admit_update(
            spec, old, candidate, subresource=subresource, replace=replace, now=self._now()
        )
        if new == old:
            return old  # a no-op write changes nothing, not even the resourceVersion
        if spec.tracks_generation and _content(spec, new) != _content(spec, old):
            new["metadata"]["generation"] = int(old["metadata"].get("generation", 0)) + 1
        if dry_run:
            return new
        if _deletion_unblocked(new):
            return self._remove(key, new)  # one DELETED event, as on a real server
        self._commit("MODIFIED", spec.storage, key, new, old)
        if spec.storage == CRDS:
            self._register_crd(new)
        return new

    def delete(
        self,
        spec: ResourceSpec,
        namespace: str | None,
        name: str,
        preconditions: Mapping[str, Any],
        *,
        dry_run: bool = False,
    ) -> tuple[dict[str, Any], bool]:
        """Delete, or mark for deletion; the result says whether the object is gone."""
        key = (spec.storage, namespace if spec.namespaced else None, name)
        old = self._current(key)
        if old is None:
            raise errors.not_found(spec.qualified_plural, name)
        for field in ("uid", "resourceVersion"):
            wanted = preconditions.get(field)
            if wanted is not None and wanted != old["metadata"].get(field):
                raise errors.conflict(
                    spec.qualified_plural,
                    name,
                    f"Precondition failed: {field} in precondition: {wanted},"
                    f" {field} in object meta: {old['metadata'].get(field)}",
                )
        if dry_run:
            return old, not _blockers(old)
        return self._delete(key, old)

    # --- lifecycle

    def _delete(self, key: ObjectKey, old: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        if not _blockers(old):
            return self._remove(key, old), True
        if old["metadata"].get("deletionTimestamp"):
            return old, False
        marked = copy.deepcopy(old)
        marked["metadata"]["deletionTimestamp"] = self._now()
        marked["metadata"]["deletionGracePeriodSeconds"] = 0
        if key[0] == NAMESPACES:
            marked.setdefault("status", {})["phase"] = "Terminating"
        self._commit("MODIFIED", key[0], key, marked, old)
        if key[0] == NAMESPACES:
            self._empty_namespace(key[2])
        elif key[0] == CRDS:
            self._empty_crd(marked)
        current = self._current(key)
        return (current, False) if current is not None else (marked, True)

    def _remove(self, key: ObjectKey, last: dict[str, Any]) -> dict[str, Any]:
        gone = copy.deepcopy(last)
        self._commit("DELETED", key[0], key, gone, last)
        if key[0] == CRDS:
            self._unregister_crd(gone)
        namespace = key[1]
        if namespace is not None:
            self._finish_namespace(namespace)
        crd_name = self._crd_name_of(key[0])
        if crd_name is not None:
            self._finish_crd(crd_name)
        return gone

    def _empty_namespace(self, namespace: str) -> None:
        for key, obj in [(k, o) for k, o in self._all_stored() if k[1] == namespace]:
            self._delete(key, obj)
        self._finish_namespace(namespace)

    def _finish_namespace(self, namespace: str) -> None:
        key: ObjectKey = (NAMESPACES, None, namespace)
        obj = self._current(key)
        if obj is None or not obj["metadata"].get("deletionTimestamp"):
            return
        if any(k[1] == namespace for k, _ in self._all_stored()):
            return
        finalizers = obj.get("spec", {}).get("finalizers", [])
        if NAMESPACE_FINALIZER in finalizers:
            emptied = copy.deepcopy(obj)
            emptied["spec"]["finalizers"] = [f for f in finalizers if f != NAMESPACE_FINALIZER]
            self._commit("MODIFIED", NAMESPACES, key, emptied, obj)
            obj = emptied
        if _deletion_unblocked(obj):
            self._remove(key, obj)

    def _empty_crd(self, crd: Mapping[str, Any]) -> None:
        storage = self._storage_of_crd(crd)
        if storage is not None:
            for key, obj in list(self._stored(storage)):
                self._delete(key, obj)
        self._finish_crd(str(crd["metadata"]["name"]))

    def _finish_crd(self, crd_name: str) -> None:
        key: ObjectKey = (CRDS, None, crd_name)
        crd = self._current(key)
        if crd is None or not crd["metadata"].get("deletionTimestamp"):
            return
        storage = self._storage_of_crd(crd)
        if storage is not None and any(True for _ in self._stored(storage)):
            return
        finalizers = crd["metadata"].get("finalizers", [])
        if CRD_CLEANUP_FINALIZER in finalizers:
            released = copy.deepcopy(crd)
            released["metadata"]["finalizers"] = [
                f for f in finalizers if f != CRD_CLEANUP_FINALIZER
            ]
            self._commit("MODIFIED", CRDS, key, released, crd)
            crd = released
        if _deletion_unblocked(crd):
            self._remove(key, crd)

    def _require_open_namespace(self, namespace: str, spec: ResourceSpec, name: str) -> None:
        obj = self._current((NAMESPACES, None, namespace))
        if obj is None:
            raise errors.not_found("namespaces", namespace)
        if obj["metadata"].get("deletionTimestamp"):
            raise errors.forbidden(
                f'{spec.qualified_plural} "{name}" is forbidden: unable to create new content in'
                f" namespace {namespace} because it is being terminated"
            )

    def _require_established(self, spec: ResourceSpec) -> None:
        if spec.custom is None:
            return
        crd = self._current((CRDS, None, spec.custom.crd_name))
        if crd is not None and crd["metadata"].get("deletionTimestamp"):
            raise errors.method_not_allowed()

    # --- CRDs

    def _register_crd(self, crd: Mapping[str, Any]) -> None:
        name = str(crd["metadata"]["name"])
        served = served_resources(crd)
        still_served = {custom.version for custom in served}
        for resource, custom in list(self._custom.items()):
            if custom.crd_name == name and resource.version not in still_served:
                del self._custom[resource]
                del self._resources[resource]
        for custom in served:
            first = self._storage_versions.setdefault(
                (custom.group, custom.plural), custom.storage_version
            )
            custom = dataclasses.replace(custom, storage_version=first)
            resource = kmock.resource(custom.group, custom.version, custom.plural)
            self._custom[resource] = custom
            self._resources[resource] = custom_resource_info(custom)

    def _unregister_crd(self, crd: Mapping[str, Any]) -> None:
        name = str(crd["metadata"]["name"])
        for resource, custom in list(self._custom.items()):
            if custom.crd_name == name:
                del self._custom[resource]
                del self._resources[resource]
                self._storage_versions.pop((custom.group, custom.plural), None)

    def _storage_of_crd(self, crd: Mapping[str, Any]) -> kmock.resource | None:
        spec = crd.get("spec", {})
        group, plural = spec.get("group"), spec.get("names", {}).get("plural")
        version = self._storage_versions.get((group, plural))
        return None if version is None else kmock.resource(group, version, plural)

    def _crd_name_of(self, storage: kmock.resource) -> str | None:
        where = (storage.group, storage.plural)
        owners = (c.crd_name for c in self._custom.values() if (c.group, c.plural) == where)
        return next(owners, None)

    # --- the storage itself

    def _commit(
        self,
        kind: ChangeType,
        storage: kmock.resource,
        key: ObjectKey,
        obj: dict[str, Any],
        previous: dict[str, Any] | None,
    ) -> None:
        self._resource_version += 1
        obj["metadata"]["resourceVersion"] = str(self._resource_version)
        if kind == "DELETED":
            self._objects[key].delete()
        elif key in self._objects:
            self._objects[key].create(obj)  # appends a version, whatever the history holds
        else:
            self._objects[key] = obj
        self._changes.append(Change(self._resource_version, storage, kind, obj, previous))
        if len(self._changes) > self._history_limit:
            dropped = self._changes[: len(self._changes) - self._history_limit]
            del self._changes[: len(dropped)]
            self._forgotten_up_to = dropped[-1].resource_version
        self._on_change()

    def _current(self, key: ObjectKey) -> dict[str, Any] | None:
        if key not in self._objects:
            return None
        obj = self._objects[key]
        return None if obj.deleted else obj.last.raw

    def _stored(self, storage: kmock.resource) -> Iterator[tuple[ObjectKey, dict[str, Any]]]:
        return ((key, obj) for key, obj in self._all_stored() if key[0] == storage)

    def _all_stored(self) -> list[tuple[ObjectKey, dict[str, Any]]]:
        return [(key, obj.last.raw) for key, obj in self._objects.items() if not obj.deleted]

    def _requested_name(self, spec: ResourceSpec, body: Any) -> str:
        meta = body.get("metadata") if isinstance(body, Mapping) else None
        if not isinstance(meta, Mapping):
            meta = {}
        name = meta.get("name")
        if isinstance(name, str) and name:
            return name
        prefix = meta.get("generateName")
        if isinstance(prefix, str) and prefix:
            suffix = "".join(self._random.choices(_SUFFIX_ALPHABET, k=_SUFFIX_LENGTH))
            return prefix + suffix
        raise errors.invalid(
            spec.kind, "", "metadata.name", "Required value: name or generateName is required"
        )

    def _now(self) -> str:
        return self._clock().astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def bootstrap(self) -> None:
        spec = self.spec(NAMESPACES)
        assert spec is not None  # the built-in catalogue always has namespaces
        for name in INITIAL_NAMESPACES:
            self.create(spec, None, {"metadata": {"name": name}})


def _content(spec: ResourceSpec, obj: Mapping[str, Any]) -> dict[str, Any]:
    """What `metadata.generation` counts changes of: all but metadata (and status, if separate)."""
    skipped = {"metadata", "status"} if spec.has_status else {"metadata"}
    return {key: value for key, value in obj.items() if key not in skipped}


def _blockers(obj: Mapping[str, Any]) -> list[str]:
    finalizers = list(obj["metadata"].get("finalizers") or [])
    if obj.get("kind") == "Namespace":
        finalizers += obj.get("spec", {}).get("finalizers") or []
    return finalizers


def _deletion_unblocked(obj: Mapping[str, Any]) -> bool:
    return bool(obj["metadata"].get("deletionTimestamp")) and not _blockers(obj)
