"""Reading Kubernetes API URLs: which resource, namespace, object and subresource, which verb.

kmock 0.8's own parser fails on `/api/v1/namespaces` (a 500) and reads the namespace objects'
paths as namespaced collections; this one follows the API server's routes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

# Subresources of the namespace objects themselves: `/api/v1/namespaces/NAME/status`.
_NAMESPACE_SUBRESOURCES = frozenset({"status", "finalize"})


@dataclass(frozen=True)
class ApiPath:
    group: str | None = None  # None: not a group/version path (`/`, `/api`, `/version`, ...)
    version: str | None = None
    plural: str | None = None
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None


def parse_api_path(path: str) -> ApiPath:
    parts = [part for part in path.strip("/").split("/")]
    if len(parts) >= 2 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) == 2 and parts[0] == "apis":
        return ApiPath(group=parts[1])
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return ApiPath()
    if not rest:
        return ApiPath(group=group, version=version)
    if rest[0] == "namespaces" and len(rest) >= 3 and rest[2] not in _NAMESPACE_SUBRESOURCES:
        namespace, rest = rest[1], rest[2:]
    else:
        namespace = None
    return ApiPath(
        group=group,
        version=version,
        plural=rest[0],
        namespace=namespace,
        name=rest[1] if len(rest) > 1 else None,
        subresource="/".join(rest[2:]) or None,
    )


def request_verb(method: str, path: ApiPath, query: Mapping[str, str]) -> str | None:
    """The Kubernetes verb (`get`, `list`, `watch`, `patch`, ...) of a request on a resource."""
    if path.plural is None:
        return None
    named = path.name is not None
    match method.upper():
        case "GET" if query.get("watch") in {"true", "1"}:
            return "watch"
        case "GET":
            return "get" if named else "list"
        case "POST":
            return None if named else "create"
        case "PUT":
            return "update" if named else None
        case "PATCH":
            return "patch" if named else None
        case "DELETE":
            return "delete" if named else "deletecollection"
    return None
