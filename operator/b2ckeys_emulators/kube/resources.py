"""What the emulator knows about each resource it serves: scope, verbs, subresources, storage.

The catalogue itself is kmock's `ResourcesArray` (built-ins from kmock's bundled K3s discovery
dump, custom resources added as their CRDs are stored), so tests may also declare resources there
directly; `ResourceSpec` is the emulator's typed reading of one entry.
"""

from __future__ import annotations

import importlib.resources
from dataclasses import dataclass

import kmock

from b2ckeys_emulators.kube.crds import CRD_GROUP, CustomResource
from b2ckeys_emulators.kube.selectors import supported_fields

ALL_VERBS = frozenset(
    {"create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"}
)
# What a real server lists for the `/status` subresource of any resource.
STATUS_VERBS = frozenset({"get", "patch", "update"})

NAMESPACES = kmock.resource("", "v1", "namespaces")
SECRETS = kmock.resource("", "v1", "secrets")
CRDS = kmock.resource(CRD_GROUP, "v1", "customresourcedefinitions")

# Built-in API groups whose objects carry `metadata.generation` (workloads); core kinds such as
# Secrets, ConfigMaps and Namespaces do not, on a real server either.
_GENERATION_GROUPS = frozenset({"apps", "batch", CRD_GROUP})


@dataclass(frozen=True)
class ResourceSpec:
    group: str
    version: str
    plural: str
    kind: str
    singular: str
    namespaced: bool
    verbs: frozenset[str]
    subresources: frozenset[str]
    short_names: frozenset[str]
    categories: frozenset[str]
    storage: kmock.resource  # where the objects live: one place for all versions of a CRD
    custom: CustomResource | None = None

    @property
    def resource(self) -> kmock.resource:
        return kmock.resource(self.group, self.version, self.plural)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified_plural(self) -> str:
        """How error messages name the resource: `secrets`, `trustframeworkkeysets.b2ckeys.dev`."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources

    @property
    def tracks_generation(self) -> bool:
        return self.custom is not None or self.group in _GENERATION_GROUPS

    @property
    def selectable_fields(self) -> frozenset[str]:
        extra = self.custom.selectable_fields if self.custom else frozenset[str]()
        return supported_fields(self.group, self.plural, extra)


def read_spec(
    resources: kmock.ResourcesArray,
    resource: kmock.resource,
    custom: CustomResource | None,
) -> ResourceSpec | None:
    if resource not in resources or resource.plural is None:
        return None
    info = resources[resource]
    storage = resource
    if custom is not None:
        storage = kmock.resource(resource.group, custom.storage_version, resource.plural)
    return ResourceSpec(
        group=resource.group or "",
        version=resource.version or "",
        plural=resource.plural,
        kind=info.kind or resource.plural.capitalize(),
        singular=info.singular or resource.plural,
        namespaced=info.namespaced if info.namespaced is not None else True,
        verbs=frozenset(info.verbs) or ALL_VERBS,
        subresources=frozenset(info.subresources),
        short_names=frozenset(info.shortnames),
        categories=frozenset(info.categories),
        storage=storage,
        custom=custom,
    )


def custom_resource_info(custom: CustomResource) -> kmock.ResourceInfo:
    return kmock.ResourceInfo(
        kind=custom.kind,
        singular=custom.singular,
        namespaced=custom.namespaced,
        verbs=set(ALL_VERBS),
        shortnames=set(custom.short_names),
        categories=set(custom.categories),
        subresources=set(custom.subresources),
    )


def load_builtin_resources(resources: kmock.ResourcesArray) -> None:
    """Kubernetes' built-in resources, from kmock's bundled discovery dump of a K3s cluster."""
    dump = importlib.resources.files("kmock._internal") / "resources.json.gz"
    with importlib.resources.as_file(dump) as path:
        resources.load_path(path)
