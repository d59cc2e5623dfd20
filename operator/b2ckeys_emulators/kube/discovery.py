"""Discovery documents (`/api`, `/apis`, `/apis/G`, `/apis/G/V`, `/version`) from the catalogue.

Built for what the kubernetes client, Kopf and kubectl read: group and version lists with a
preferred version, and per-version resource lists with scope, kind, verbs, short names and
subresources. Sorted, so that the same catalogue always gives the same documents.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from b2ckeys_emulators.kube.resources import STATUS_VERBS, ResourceSpec

# What `/version` reports: a release kubectl 1.31-1.33 and the kubernetes client 37 accept.
SERVER_VERSION = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.0+b2ckeys-emulator",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2025-01-01T00:00:00Z",
    "goVersion": "go1.23.4",
    "compiler": "gc",
    "platform": "linux/amd64",
}

_KUBE_VERSION = re.compile(r"v(?P<major>\d+)(?:(?P<stage>alpha|beta)(?P<minor>\d+))?")


def version_priority(version: str) -> tuple[int, int, int, str]:
    """Sort key: GA before beta before alpha, newer first, then anything else by name."""
    match = _KUBE_VERSION.fullmatch(version)
    if match is None:
        return (3, 0, 0, version)
    stage = {None: 0, "beta": 1, "alpha": 2}[match["stage"]]
    return (stage, -int(match["major"]), -int(match["minor"] or 0), version)


def api_versions(server_address: str) -> dict[str, Any]:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}
        ],
    }


def _group_versions(specs: Iterable[ResourceSpec]) -> dict[str, list[str]]:
    versions: dict[str, set[str]] = {}
    for spec in specs:
        if spec.group:
            versions.setdefault(spec.group, set()).add(spec.version)
    return {group: sorted(found, key=version_priority) for group, found in sorted(versions.items())}


def _group_document(group: str, versions: list[str]) -> dict[str, Any]:
    listed = [{"groupVersion": f"{group}/{version}", "version": version} for version in versions]
    return {"name": group, "versions": listed, "preferredVersion": listed[0]}


def api_group_list(specs: Iterable[ResourceSpec]) -> dict[str, Any]:
    return {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [_group_document(g, v) for g, v in _group_versions(specs).items()],
    }


def api_group(specs: Iterable[ResourceSpec], group: str) -> dict[str, Any] | None:
    versions = _group_versions(specs).get(group)
    if not versions:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group_document(group, versions)}


def api_resource_list(
    specs: Iterable[ResourceSpec], group: str, version: str
) -> dict[str, Any] | None:
    served = sorted(
        (s for s in specs if s.group == group and s.version == version), key=lambda s: s.plural
    )
    if not served and group:
        return None
    entries: list[dict[str, Any]] = []
    for spec in served:
        entries.append(
            {
                "name": spec.plural,
                "singularName": spec.singular,
                "namespaced": spec.namespaced,
                "kind": spec.kind,
                "verbs": sorted(spec.verbs),
                **({"shortNames": sorted(spec.short_names)} if spec.short_names else {}),
                **({"categories": sorted(spec.categories)} if spec.categories else {}),
            }
        )
        for subresource in sorted(spec.subresources):
            verbs = STATUS_VERBS if subresource == "status" else frozenset({"get"})
            entries.append(
                {
                    "name": f"{spec.plural}/{subresource}",
                    "singularName": "",
                    "namespaced": spec.namespaced,
                    "kind": spec.kind,
                    "verbs": sorted(verbs),
                }
            )
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": entries,
    }


def root_paths(specs: Iterable[ResourceSpec]) -> dict[str, Any]:
    paths = {"/api", "/api/v1", "/apis", "/version", "/healthz", "/livez", "/readyz", "/openapi/v3"}
    for group, versions in _group_versions(specs).items():
        paths.add(f"/apis/{group}")
        paths.update(f"/apis/{group}/{version}" for version in versions)
    return {"paths": sorted(paths)}


# --- OpenAPI v3: only what kubectl reads to decide that the server validates fields itself.
# kubectl looks for a `fieldValidation` query parameter on each resource's PATCH operation;
# without it, kubectl falls back to client-side validation against a full OpenAPI v2 schema,
# which the emulator does not serve.


def _group_version_path(group: str, version: str) -> str:
    return f"api/{version}" if not group else f"apis/{group}/{version}"


def openapi_v3_root(specs: Iterable[ResourceSpec]) -> dict[str, Any]:
    paths = {_group_version_path(spec.group, spec.version) for spec in specs}
    return {"paths": {path: {"serverRelativeURL": f"/openapi/v3/{path}"} for path in sorted(paths)}}


def openapi_v3_group_version(
    specs: Iterable[ResourceSpec], group: str, version: str
) -> dict[str, Any] | None:
    served = [s for s in specs if s.group == group and s.version == version and "patch" in s.verbs]
    if not served:
        return None
    prefix = "/" + _group_version_path(group, version)
    paths: dict[str, Any] = {}
    for spec in sorted(served, key=lambda s: s.plural):
        scope = "/namespaces/{namespace}" if spec.namespaced else ""
        paths[f"{prefix}{scope}/{spec.plural}/{{name}}"] = {
            "patch": {
                "operationId": f"patch{spec.kind}",
                "x-kubernetes-action": "patch",
                "x-kubernetes-group-version-kind": {
                    "group": group,
                    "version": version,
                    "kind": spec.kind,
                },
                "parameters": [
                    {"name": name, "in": "query", "schema": {"type": "string"}}
                    for name in ("dryRun", "fieldManager", "fieldValidation", "force")
                ],
                "responses": {"200": {"description": "OK"}},
            }
        }
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": SERVER_VERSION["gitVersion"]},
        "paths": paths,
    }
