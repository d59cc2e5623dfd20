"""CustomResourceDefinitions: reading them from YAML, checking them, and what they serve.

A real API server starts serving a custom resource once its CRD is Established; the emulator does
it in the same request that stores the CRD, and writes the status a cluster would write
(`acceptedNames`, `NamesAccepted` and `Established` conditions, `storedVersions`).
"""

from __future__ import annotations

import importlib.resources
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import yaml

CRD_GROUP = "apiextensions.k8s.io"
CRD_API_VERSION = f"{CRD_GROUP}/v1"
CRD_KIND = "CustomResourceDefinition"
# A real API server puts this finalizer on every CRD so that deleting one removes its objects.
CRD_CLEANUP_FINALIZER = "customresourcecleanup.apiextensions.k8s.io"

_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)+")
_DNS_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")


# libyaml's safe loader when PyYAML has it: the project CRD parses in 3 ms instead of 40 ms.
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class InvalidCrd(ValueError):
    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


@dataclass(frozen=True)
class CustomResource:
    """One served version of a CRD, as discovery lists it."""

    crd_name: str
    group: str
    version: str
    storage_version: str
    plural: str
    singular: str
    kind: str
    short_names: frozenset[str]
    categories: frozenset[str]
    namespaced: bool
    subresources: frozenset[str]
    selectable_fields: frozenset[str]
    # The version's openAPIV3Schema: what the store prunes and defaults objects by.
    schema: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    # The version's additionalPrinterColumns: what `kubectl get` shows.
    printer_columns: tuple[Mapping[str, Any], ...] = field(default=(), compare=False, repr=False)


def served_resources(crd: Mapping[str, Any]) -> list[CustomResource]:
    """The resources a CRD serves, or `InvalidCrd` naming the first field a server rejects."""
    spec = _mapping(crd.get("spec"), "spec")
    group = _string(spec.get("group"), "spec.group")
    if not _DNS_SUBDOMAIN.fullmatch(group):
        raise InvalidCrd("spec.group", "should be a domain with at least one dot")
    names = _mapping(spec.get("names"), "spec.names")
    plural = _string(names.get("plural"), "spec.names.plural")
    _string(names.get("kind"), "spec.names.kind")
    if not _DNS_LABEL.fullmatch(plural):
        raise InvalidCrd("spec.names.plural", "must be a lowercase DNS-1035 label")
    name = str(crd.get("metadata", {}).get("name", ""))
    if name != f"{plural}.{group}":
        raise InvalidCrd("metadata.name", 'must be spec.names.plural+"."+spec.group')
    scope = spec.get("scope")
    if scope not in {"Namespaced", "Cluster"}:
        raise InvalidCrd("spec.scope", 'supported values: "Cluster", "Namespaced"')
    versions = spec.get("versions")
    if not isinstance(versions, list) or not versions:
        raise InvalidCrd("spec.versions", "must have exactly one version marked as storage version")
    storage = [v.get("name") for v in versions if isinstance(v, Mapping) and v.get("storage")]
    if len(storage) != 1:
        raise InvalidCrd("spec.versions", "must have exactly one version marked as storage version")
    return [
        _served_version(name, group, names, scope == "Namespaced", str(storage[0]), index, version)
        for index, version in enumerate(versions)
        if isinstance(version, Mapping) and version.get("served")
    ]


def _served_version(
    crd_name: str,
    group: str,
    names: Mapping[str, Any],
    namespaced: bool,
    storage_version: str,
    index: int,
    version: Mapping[str, Any],
) -> CustomResource:
    where = f"spec.versions[{index}]"
    version_name = _string(version.get("name"), f"{where}.name")
    schema = _mapping(version.get("schema"), f"{where}.schema")
    structural = _mapping(schema.get("openAPIV3Schema"), f"{where}.schema.openAPIV3Schema")
    subresources = version.get("subresources") or {}
    selectable = version.get("selectableFields") or []
    return CustomResource(
        crd_name=crd_name,
        group=group,
        version=version_name,
        storage_version=storage_version,
        plural=str(names["plural"]),
        singular=str(names.get("singular") or str(names["kind"]).lower()),
        kind=str(names["kind"]),
        short_names=frozenset(names.get("shortNames") or ()),
        categories=frozenset(names.get("categories") or ()),
        namespaced=namespaced,
        subresources=frozenset({"status"} if "status" in subresources else ()),
        selectable_fields=frozenset(
            str(item.get("jsonPath", "")).lstrip(".") for item in selectable
        ),
        schema=structural,
        printer_columns=tuple(version.get("additionalPrinterColumns") or ()),
    )


def _mapping(value: Any, field: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidCrd(field, "Required value")
    return value


def _string(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidCrd(field, "Required value")
    return value


def crd_status(
    crd: Mapping[str, Any], previous: Mapping[str, Any] | None, now: str
) -> dict[str, Any]:
    """The status the apiextensions controllers converge a valid CRD to."""
    spec = crd["spec"]
    names = spec["names"]
    kind = str(names["kind"])
    accepted: dict[str, Any] = {
        "plural": names["plural"],
        "singular": names.get("singular") or kind.lower(),
        "kind": kind,
        "listKind": names.get("listKind") or f"{kind}List",
    }
    for optional in ("shortNames", "categories"):
        if names.get(optional):
            accepted[optional] = list(names[optional])
    earlier = {c.get("type"): c for c in (previous or {}).get("conditions") or []}
    conditions = [
        _condition("NamesAccepted", "NoConflicts", "no conflicts found", earlier, now),
        _condition(
            "Established",
            "InitialNamesAccepted",
            "the initial names have been accepted",
            earlier,
            now,
        ),
    ]
    storage = next(str(v["name"]) for v in spec["versions"] if v.get("storage"))
    stored = list((previous or {}).get("storedVersions") or [])
    return {
        "acceptedNames": accepted,
        "conditions": conditions,
        "storedVersions": stored if storage in stored else [*stored, storage],
    }


def _condition(
    kind: str, reason: str, message: str, earlier: Mapping[Any, Any], now: str
) -> dict[str, Any]:
    since = (earlier.get(kind) or {}).get("lastTransitionTime") or now
    return {
        "type": kind,
        "status": "True",
        "reason": reason,
        "message": message,
        "lastTransitionTime": since,
    }


def load_crd_documents(paths: Iterable[str | Path] | None) -> list[dict[str, Any]]:
    """Every CRD in the given files and directories; `None` means the project's `crds/`."""
    texts = _project_crd_texts() if paths is None else _path_texts(paths)
    documents: list[dict[str, Any]] = []
    for source, text in texts:
        for document in yaml.load_all(text, Loader=_SAFE_LOADER):
            if not isinstance(document, dict) or document.get("kind") != CRD_KIND:
                continue
            if document.get("apiVersion") != CRD_API_VERSION:
                raise ValueError(f"{source}: only {CRD_API_VERSION} CRDs can be served")
            documents.append(document)
    return documents


def _is_yaml(name: str) -> bool:
    return name.endswith((".yaml", ".yml"))


def _path_texts(paths: Iterable[str | Path]) -> list[tuple[str, str]]:
    texts: list[tuple[str, str]] = []
    for path in map(Path, paths):
        files = sorted(p for p in path.iterdir() if _is_yaml(p.name)) if path.is_dir() else [path]
        texts += [(str(file), file.read_text(encoding="utf-8")) for file in files]
    return texts


def _project_crd_texts() -> list[tuple[str, str]]:
    # `b2ckeys/crds` is a symlink to the top-level `crds/` in a checkout, package data in a wheel.
    folder: Traversable = importlib.resources.files("b2ckeys_emulators") / "crds"
    if not folder.is_dir():
        return []
    files = sorted((entry for entry in folder.iterdir() if _is_yaml(entry.name)), key=str)
    return [(entry.name, entry.read_text(encoding="utf-8")) for entry in files]
