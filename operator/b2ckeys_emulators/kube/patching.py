"""The three PATCH formats of the Kubernetes API, applied to plain JSON values.

* JSON merge patch (RFC 7386): maps merge, `null` deletes, everything else replaces.
* JSON patch (RFC 6902): a list of operations; a failed `test` is a conflict, not a crash.
* Strategic merge patch: a merge patch that also merges the few lists Kubernetes declares
  mergeable (`metadata.finalizers` as a set, `metadata.ownerReferences` by `uid`), and honours
  the `$patch`, `$deleteFromPrimitiveList/...`, `$retainKeys` and `$setElementOrder/...`
  directives. Lists the emulator knows nothing about are replaced, as in a merge patch.

Error messages name paths and operations but never values: values may be Secret data.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jsonpatch
import jsonpointer


class PatchError(ValueError):
    """A patch that cannot be applied (a real server answers 422 Unprocessable Entity)."""


class PatchMalformed(PatchError):
    """A patch document that is not a patch at all (a real server answers 400 Bad Request)."""


class PatchTestFailed(PatchError):
    """A JSON-patch `test` operation did not hold: someone changed the object first."""


def apply_merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = apply_merge_patch(result.get(key), value)
    return result


_JSON_PATCH_OPERATIONS = frozenset({"add", "remove", "replace", "move", "copy", "test"})


def apply_json_patch(target: Mapping[str, Any], operations: Any) -> dict[str, Any]:
    if not isinstance(operations, list) or not all(
        isinstance(op, Mapping) and op.get("op") in _JSON_PATCH_OPERATIONS and "path" in op
        for op in operations
    ):
        raise PatchMalformed("a JSON patch must be a list of operations with `op` and `path`")
    for index, operation in enumerate(operations):
        try:
            target = jsonpatch.apply_patch(target, [operation], in_place=False)
        except jsonpatch.JsonPatchTestFailed:
            raise PatchTestFailed(
                f"the JSON patch `test` operation #{index} on {operation['path']} failed"
            ) from None
        except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException):
            raise PatchError(
                f"the JSON patch `{operation['op']}` operation #{index} on"
                f" {operation['path']} cannot be applied"
            ) from None
    if not isinstance(target, dict):
        raise PatchError("the JSON patch replaced the whole object with a non-object")
    return target


@dataclass(frozen=True)
class _MergeList:
    """How strategic merge treats one list field: merged by key, or as a set of scalars."""

    merge_key: str | None  # None: a list of scalars merged as an ordered set


# The mergeable lists of the resources this emulator serves (from the API types' patch tags).
_MERGE_LISTS: dict[tuple[str, ...], _MergeList] = {
    ("metadata", "finalizers"): _MergeList(merge_key=None),
    ("metadata", "ownerReferences"): _MergeList(merge_key="uid"),
}


def apply_strategic_merge_patch(target: Mapping[str, Any], patch: Any) -> dict[str, Any]:
    if not isinstance(patch, Mapping):
        raise PatchMalformed("a strategic merge patch must be a JSON object")
    result = _merge_map(target, patch, ())
    return result if result is not None else {}


def _merge_map(
    target: Any, patch: Mapping[str, Any], path: tuple[str, ...]
) -> dict[str, Any] | None:
    directive = patch.get("$patch")
    if directive == "delete":
        return None
    if directive == "replace":
        replaced: dict[str, Any] = _strip_directives(patch)
        return replaced
    if directive is not None:
        raise PatchMalformed(f"unknown $patch directive at /{'/'.join(path)}")
    result: dict[str, Any] = dict(target) if isinstance(target, Mapping) else {}
    retained = patch.get("$retainKeys")
    for key, value in patch.items():
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.removeprefix("$deleteFromPrimitiveList/")
            doomed = value if isinstance(value, list) else []
            result[field] = [item for item in result.get(field) or [] if item not in doomed]
        elif key.startswith("$"):
            continue  # $setElementOrder and $retainKeys only order or prune, handled below
        elif value is None:
            result.pop(key, None)
        elif isinstance(value, Mapping):
            merged = _merge_map(result.get(key), value, (*path, key))
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        elif isinstance(value, list):
            result[key] = _merge_list(result.get(key), value, (*path, key))
        else:
            result[key] = value
    if isinstance(retained, list):
        result = {key: value for key, value in result.items() if key in retained}
    return result


def _merge_list(target: Any, patch: list[Any], path: tuple[str, ...]) -> list[Any]:
    strategy = _MERGE_LISTS.get(path)
    current = list(target) if isinstance(target, list) else []
    if strategy is None or any(_is_directive(item, "replace") for item in patch):
        return [_strip_directives(item) for item in patch if not _is_directive(item, "replace")]
    if strategy.merge_key is None:
        return current + [item for item in patch if item not in current]
    key = strategy.merge_key
    merged = list(current)
    for item in patch:
        if not isinstance(item, Mapping) or key not in item:
            raise PatchMalformed(f"list items at /{'/'.join(path)} need the merge key {key!r}")
        index = next((i for i, old in enumerate(merged) if old.get(key) == item[key]), None)
        if _is_directive(item, "delete"):
            if index is not None:
                del merged[index]
        elif index is None:
            merged.append(_strip_directives(item))
        else:
            merged[index] = _merge_map(merged[index], item, path) or {}
    return merged


def _is_directive(item: Any, directive: str) -> bool:
    return isinstance(item, Mapping) and item.get("$patch") == directive


def _strip_directives(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {
            key: _strip_directives(item) for key, item in value.items() if not key.startswith("$")
        }
    if isinstance(value, list):
        return [_strip_directives(item) for item in value]
    return value
