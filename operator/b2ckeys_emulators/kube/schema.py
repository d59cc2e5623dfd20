"""Pruning and defaulting of custom resources by their CRD's structural schema.

A real API server drops fields the schema does not declare (unless
`x-kubernetes-preserve-unknown-fields` or `additionalProperties` allows them), drops `null`s the
schema does not make `nullable`, then fills in `default`s, on every write, status included. The
emulator does the same, so code that relies on defaults or writes undeclared status fields
behaves as it will on a cluster. Validation (types, enums, CEL rules) is not emulated: the
cluster test tier runs a real API server for that.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

# Never pruned at the top level of a resource: the API server owns their shape.
_ROOT_FIELDS = frozenset({"apiVersion", "kind", "metadata"})


def prune_and_default(obj: dict[str, Any], schema: Mapping[str, Any]) -> dict[str, Any]:
    pruned = _prune(copy.deepcopy(obj), schema, root=True)
    defaulted: dict[str, Any] = _default(pruned, schema)
    return defaulted


def _prune(value: Any, schema: Mapping[str, Any], *, root: bool = False) -> Any:
    if isinstance(value, dict):
        properties: Mapping[str, Any] = schema.get("properties") or {}
        additional = schema.get("additionalProperties")
        keeps_unknown = bool(schema.get("x-kubernetes-preserve-unknown-fields"))
        for key in list(value):
            if root and key in _ROOT_FIELDS:
                continue
            if key in properties:
                child_schema = properties[key]
            elif isinstance(additional, Mapping):
                child_schema = additional
            elif keeps_unknown or additional is True:
                continue
            else:
                del value[key]
                continue
            if value[key] is None and not child_schema.get("nullable"):
                del value[key]
            else:
                value[key] = _prune(value[key], child_schema)
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        return [_prune(item, schema["items"]) for item in value]
    return value


def _default(value: Any, schema: Mapping[str, Any]) -> Any:
    if isinstance(value, dict):
        properties: Mapping[str, Any] = schema.get("properties") or {}
        for key, child_schema in properties.items():
            if key not in value and "default" in child_schema:
                value[key] = copy.deepcopy(child_schema["default"])
            if key in value:
                value[key] = _default(value[key], child_schema)
        additional = schema.get("additionalProperties")
        if isinstance(additional, Mapping):
            for key in value.keys() - properties.keys():
                value[key] = _default(value[key], additional)
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        return [_default(item, schema["items"]) for item in value]
    return value
