"""What kube-apiserver checks on a CRD and its objects, minus CEL (see crd_cel.py).

Two halves:
- `crd_problems`: the rules the API server applies when a CRD is created (structural schema,
  forbidden keywords, list-map keys, defaults valid against their schema, printer columns that
  resolve), plus the project's own rules (every field described; strings and lists bounded so
  CEL stays inside the cost budget; no `nullable`).
- `apply_defaults` and `schema_errors`: what happens to an object on create/update, through
  `jsonschema` on a translation of the OpenAPI v3 subset. Unknown fields are errors, as with
  `kubectl apply` (strict field validation), rather than pruned silently.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped,unused-ignore]  # no stubs in the lock
import re2  # type: ignore[import-untyped,unused-ignore]  # Kubernetes patterns are RE2
import yaml

ROOT = Path(__file__).resolve().parents[2]
CRD_PATH = ROOT / "crds" / "trustframeworkkeysets.yaml"

Schema = Mapping[str, Any]

# Every keyword apiextensions.k8s.io/v1 JSONSchemaProps knows; anything else is a typo that
# strict decoding refuses (or, worse, a lenient client drops).
KNOWN_KEYWORDS = frozenset(
    {
        "id", "$schema", "$ref", "description", "type", "format", "title", "default",
        "maximum", "exclusiveMaximum", "minimum", "exclusiveMinimum", "maxLength", "minLength",
        "pattern", "maxItems", "minItems", "uniqueItems", "multipleOf", "enum", "maxProperties",
        "minProperties", "required", "items", "allOf", "oneOf", "anyOf", "not", "properties",
        "additionalProperties", "patternProperties", "dependencies", "additionalItems",
        "definitions", "externalDocs", "example", "nullable",
        "x-kubernetes-preserve-unknown-fields", "x-kubernetes-embedded-resource",
        "x-kubernetes-int-or-string", "x-kubernetes-list-map-keys", "x-kubernetes-list-type",
        "x-kubernetes-map-type", "x-kubernetes-validations",
    }
)  # fmt: skip
# Refused by the v1 API (id, references, definitions, dependencies, pattern and additional
# items), or by this project: `$schema` means nothing to the API server, and `nullable` would
# keep the nulls that the operator's merge patches send to delete a status field.
FORBIDDEN_KEYWORDS = frozenset(
    {
        "$ref", "$schema", "id", "definitions", "dependencies", "patternProperties",
        "additionalItems", "nullable",
    }
)  # fmt: skip
JUNCTORS = ("allOf", "anyOf", "oneOf", "not")
NOT_IN_JUNCTORS = ("description", "type", "default", "additionalProperties", "nullable")
TYPES = frozenset({"object", "array", "string", "integer", "number", "boolean"})
FORMATS_BY_TYPE = {
    "string": frozenset({"date-time", "date", "duration", "byte", "uri", "uuid", "hostname"}),
    "integer": frozenset({"int32", "int64"}),
    "number": frozenset({"float", "double"}),
}
SCALARS = frozenset({"string", "integer", "number", "boolean"})
RULE_KEYS = frozenset({"rule", "message", "messageExpression", "reason", "fieldPath"})
# Fields of ObjectMeta a printer column may point at; the schema leaves metadata to the server.
OBJECT_META_FIELDS = frozenset(
    {"name", "namespace", "creationTimestamp", "deletionTimestamp", "generation", "labels",
     "annotations", "uid", "resourceVersion", "finalizers", "ownerReferences"}
)  # fmt: skip
COLUMN_TYPES = {"string": "string", "integer": "integer", "number": "number", "boolean": "boolean"}


def load_yaml_documents(path: Path) -> list[dict[str, Any]]:
    """Every non-empty document of a multi-document YAML file."""
    with path.open(encoding="utf-8") as stream:
        return [doc for doc in yaml.safe_load_all(stream) if doc is not None]


def load_crd(path: Path = CRD_PATH) -> dict[str, Any]:
    (crd,) = load_yaml_documents(path)
    return crd


def served_schema(crd: Mapping[str, Any]) -> dict[str, Any]:
    """The openAPIV3Schema of the (only) storage version."""
    (version,) = [v for v in crd["spec"]["versions"] if v.get("storage")]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


# --- checks on the CRD ---------------------------------------------------------------------


def crd_problems(crd: Mapping[str, Any]) -> list[str]:
    """Everything wrong with a CRD, one readable line per problem; empty means it is fine."""
    problems = list(_definition_problems(crd))
    for version in crd["spec"]["versions"]:
        schema = version.get("schema", {}).get("openAPIV3Schema")
        if not isinstance(schema, Mapping):
            problems.append(f"version {version.get('name')}: no openAPIV3Schema")
            continue
        problems += _schema_problems(schema, path="", root=True, under_rules=False)
        for column in version.get("additionalPrinterColumns", []):
            problems += _printer_column_problems(column, schema)
    return problems


def _definition_problems(crd: Mapping[str, Any]) -> Iterator[str]:
    if crd.get("apiVersion") != "apiextensions.k8s.io/v1":
        yield "apiVersion must be apiextensions.k8s.io/v1"
    if crd.get("kind") != "CustomResourceDefinition":
        yield "kind must be CustomResourceDefinition"
    spec, names = crd["spec"], crd["spec"]["names"]
    if crd["metadata"]["name"] != f"{names['plural']}.{spec['group']}":
        yield "metadata.name must be <plural>.<group>"
    for field in ("plural", "singular"):
        if names[field] != names[field].lower():
            yield f"names.{field} must be lowercase"
    if [v.get("storage") for v in spec["versions"]].count(True) != 1:
        yield "exactly one version must be the storage version"


def _schema_problems(node: Any, *, path: str, root: bool, under_rules: bool) -> list[str]:
    where = path or "<root>"
    if not isinstance(node, Mapping):
        return [f"{where}: a schema must be a mapping"]
    problems: list[str] = []
    problems += [f"{where}: unknown keyword {k!r}" for k in node if k not in KNOWN_KEYWORDS]
    problems += [f"{where}: {k!r} is not allowed" for k in node if k in FORBIDDEN_KEYWORDS]
    if node.get("uniqueItems") is True:
        problems.append(f"{where}: uniqueItems: true is not allowed (quadratic to check)")

    preserve = node.get("x-kubernetes-preserve-unknown-fields")
    int_or_string = node.get("x-kubernetes-int-or-string") is True
    if preserve is not None and preserve is not True:
        problems.append(f"{where}: x-kubernetes-preserve-unknown-fields must be true or absent")
    kind = node.get("type")
    if kind is None or kind == "":
        if not (preserve or int_or_string):
            problems.append(f"{where}: every node must specify a non-empty type")
    elif kind not in TYPES:
        problems.append(f"{where}: unknown type {kind!r}")
    if not isinstance(node.get("description"), str) or not node["description"].strip():
        problems.append(f"{where}: every field needs a description")

    under_rules = under_rules or bool(node.get("x-kubernetes-validations"))
    problems += _junctor_problems(node, where)
    problems += _value_problems(node, where, under_rules)
    problems += _rule_problems(node, where)
    problems += _list_problems(node, where)
    problems += _default_problems(node, where)

    if "properties" in node and "additionalProperties" in node:
        problems.append(f"{where}: properties and additionalProperties are mutually exclusive")
    if ("properties" in node or "additionalProperties" in node) and kind != "object":
        problems.append(f"{where}: properties belong to objects only")
    for name in node.get("required", []):
        if name not in node.get("properties", {}):
            problems.append(f"{where}: required field {name!r} is not declared")
    for name, child in node.get("properties", {}).items():
        child_path = f"{path}.{name}"
        if root and name == "metadata":
            problems += _root_metadata_problems(child)
        else:
            problems += _schema_problems(
                child, path=child_path, root=False, under_rules=under_rules
            )
    extra = node.get("additionalProperties")
    if isinstance(extra, Mapping):
        problems += _schema_problems(extra, path=f"{path}.*", root=False, under_rules=under_rules)
    if kind == "array":
        items = node.get("items")
        if not isinstance(items, Mapping):
            problems.append(f"{where}: an array needs a single items schema")
        else:
            problems += _schema_problems(
                items, path=f"{path}[]", root=False, under_rules=under_rules
            )
    elif "items" in node:
        problems.append(f"{where}: items belong to arrays only")
    return problems


def _root_metadata_problems(node: Any) -> list[str]:
    # The API server owns ObjectMeta; a CRD may only restrict name and generateName.
    if not isinstance(node, Mapping) or node.get("type") != "object":
        return [".metadata: must be type object"]
    problems = [f".metadata: {k!r} is not allowed" for k in node if k not in ("type", "properties")]
    for name, child in node.get("properties", {}).items():
        if name not in ("name", "generateName"):
            problems.append(f".metadata: only name and generateName may be restricted, not {name}")
        elif not isinstance(child, Mapping) or child.get("type") != "string":
            problems.append(f".metadata.{name}: must be type string")
    return problems


def _junctor_problems(node: Schema, where: str) -> Iterator[str]:
    for junctor in JUNCTORS:
        if junctor not in node:
            continue
        branches = node[junctor] if isinstance(node[junctor], list) else [node[junctor]]
        for branch in branches:
            for key in NOT_IN_JUNCTORS:
                if key in branch:
                    yield f"{where}: {key!r} is not allowed inside {junctor}"
            for name in branch.get("properties", {}):
                if name not in node.get("properties", {}):
                    yield f"{where}: {junctor} mentions {name!r}, which is not declared outside"


def _value_problems(node: Schema, where: str, under_rules: bool) -> Iterator[str]:
    kind = node.get("type")
    fmt = node.get("format")
    if fmt is not None and fmt not in FORMATS_BY_TYPE.get(kind or "", frozenset()):
        yield f"{where}: format {fmt!r} does not fit type {kind!r}"
    pattern = node.get("pattern")
    if pattern is not None:
        try:
            re2.compile(pattern)
        except re2.error:
            yield f"{where}: pattern {pattern!r} is not valid RE2 (the engine Kubernetes uses)"
    for value in node.get("enum", []):
        if _errors_against(_without(node, "enum"), value):
            yield f"{where}: enum value {value!r} does not fit the schema"
    # The CEL cost estimator assumes unbounded strings and lists are huge: bound everything that
    # a rule could reach, so the CRD is accepted by a real API server.
    if under_rules and kind == "string" and not ({"maxLength", "enum"} & node.keys() or fmt):
        yield f"{where}: a string a CEL rule can reach needs maxLength (or enum/format)"
    if under_rules and kind == "array" and "maxItems" not in node:
        yield f"{where}: a list a CEL rule can reach needs maxItems"


def _rule_problems(node: Schema, where: str) -> Iterator[str]:
    for rule in node.get("x-kubernetes-validations", []):
        if not isinstance(rule, Mapping) or not str(rule.get("rule", "")).strip():
            yield f"{where}: every x-kubernetes-validations entry needs a rule"
            continue
        if unknown := set(rule) - RULE_KEYS:
            yield f"{where}: unknown keys {sorted(unknown)} in a validation rule"
        message = rule.get("message")
        if not isinstance(message, str) or not message.strip():
            yield f"{where}: rule {rule['rule']!r} needs a message a person can act on"
        elif "\n" in message or "\r" in message:
            yield f"{where}: the message of {rule['rule']!r} must not contain line breaks"


def _list_problems(node: Schema, where: str) -> Iterator[str]:
    list_type = node.get("x-kubernetes-list-type")
    keys = node.get("x-kubernetes-list-map-keys")
    if list_type is None and keys is None:
        return
    if node.get("type") != "array":
        yield f"{where}: x-kubernetes-list-type belongs to arrays only"
        return
    items = node.get("items", {})
    if list_type not in ("atomic", "set", "map"):
        yield f"{where}: x-kubernetes-list-type must be atomic, set or map"
    if keys is not None and list_type != "map":
        yield f"{where}: x-kubernetes-list-map-keys needs x-kubernetes-list-type: map"
    if list_type == "set" and items.get("type") not in SCALARS:
        yield f"{where}: a set holds scalars only"
    if list_type != "map":
        return
    if items.get("type") != "object":
        yield f"{where}: a map list holds objects only"
    if not keys:
        yield f"{where}: a map list needs x-kubernetes-list-map-keys"
    for key in keys or []:
        field = items.get("properties", {}).get(key)
        if field is None:
            yield f"{where}: map key {key!r} is not a field of the items"
            continue
        if field.get("type") not in SCALARS:
            yield f"{where}: map key {key!r} must be a scalar"
        if key not in items.get("required", []) and "default" not in field:
            yield f"{where}: map key {key!r} must be required or defaulted in the items"


def _default_problems(node: Schema, where: str) -> Iterator[str]:
    if "default" not in node:
        return
    for error in _errors_against(_without(node, "default"), node["default"]):
        yield f"{where}: default {node['default']!r} is invalid: {error}"


def _printer_column_problems(column: Mapping[str, Any], schema: Schema) -> list[str]:
    name = column.get("name", "<unnamed>")
    problems: list[str] = []
    if column.get("type") not in (*COLUMN_TYPES, "date"):
        problems.append(f"column {name}: type must be string, integer, number, boolean or date")
    if not isinstance(column.get("priority", 0), int) or column.get("priority", 0) < 0:
        problems.append(f"column {name}: priority must be a non-negative integer")
    json_path = str(column.get("jsonPath", ""))
    try:
        target = resolve_json_path(schema, json_path)
    except LookupError as missing:
        return [*problems, f"column {name}: {json_path!r} does not exist in the schema ({missing})"]
    if target is None:  # inside ObjectMeta, which the server types
        return problems
    wanted = column.get("type")
    if wanted == "date" and target.get("format") != "date-time":
        problems.append(f"column {name}: a date column needs a date-time field")
    elif wanted in COLUMN_TYPES and target.get("type") != COLUMN_TYPES[wanted]:
        problems.append(f"column {name}: the field is {target.get('type')}, not {wanted}")
    return problems


_STEP = re.compile(r"\.([A-Za-z0-9_-]+)(\[[^\]]*\])?")
_FILTER_FIELD = re.compile(r"@\.([A-Za-z0-9_-]+)")


def resolve_json_path(schema: Schema, json_path: str) -> Schema | None:
    """The schema node a kubectl JSONPath such as `.status.conditions[?(@.type=="Ready")].status`
    points at; None inside metadata; LookupError when a step does not exist."""
    steps = list(_STEP.finditer(json_path))
    if not steps or "".join(m.group(0) for m in steps) != json_path:
        raise LookupError("not a simple .field[filter] path")
    node: Schema = schema
    for index, step in enumerate(steps):
        field, subscript = step.group(1), step.group(2)
        if node is schema and field == "metadata":
            if index + 1 < len(steps) and steps[index + 1].group(1) in OBJECT_META_FIELDS:
                return None
            raise LookupError("metadata holds only ObjectMeta fields")
        if field not in node.get("properties", {}):
            raise LookupError(f"no field {field!r}")
        node = node["properties"][field]
        if subscript:
            if node.get("type") != "array":
                raise LookupError(f"{field!r} is not a list")
            node = node["items"]
            for used in _FILTER_FIELD.findall(subscript):
                if used not in node.get("properties", {}):
                    raise LookupError(f"the filter uses {used!r}, not a field of the items")
    return node


# --- what happens to an object ----------------------------------------------------------------


def apply_defaults(schema: Schema, value: Any) -> Any:
    """A copy of value with schema defaults filled in, the way the API server does it: a
    default applies where its parent object is present, and defaulted values are walked too."""
    value = copy.deepcopy(value)
    _default_in_place(schema, value)
    return value


def _default_in_place(schema: Schema, value: Any) -> None:
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        for name, child in properties.items():
            if name not in value and "default" in child:
                value[name] = copy.deepcopy(child["default"])
        for name, item in value.items():
            child_schema = properties.get(name)
            if child_schema is None and isinstance(schema.get("additionalProperties"), Mapping):
                child_schema = schema["additionalProperties"]
            if child_schema is not None:
                _default_in_place(child_schema, item)
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for item in value:
            _default_in_place(schema["items"], item)


def schema_errors(schema: Schema, value: Any) -> list[str]:
    """Why value does not fit schema (defaults are not applied here: call apply_defaults)."""
    return _errors_against(schema, value)


def to_json_schema(node: Schema) -> dict[str, Any]:
    """The OpenAPI v3 subset Kubernetes uses, as JSON Schema. Objects that declare properties
    refuse unknown fields, as `kubectl apply` does with strict field validation."""
    out: dict[str, Any] = {}
    for key in (
        "type", "enum", "pattern", "minLength", "maxLength", "minItems", "maxItems", "minimum",
        "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "required", "format",
        "minProperties", "maxProperties",
    ):  # fmt: skip
        if key in node:
            out[key] = copy.deepcopy(node[key])
    if node.get("x-kubernetes-int-or-string"):
        out["type"] = ["integer", "string"]
    if "properties" in node:
        out["properties"] = {k: to_json_schema(v) for k, v in node["properties"].items()}
        if not node.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    extra = node.get("additionalProperties")
    if isinstance(extra, Mapping):
        out["additionalProperties"] = to_json_schema(extra)
    elif isinstance(extra, bool):
        out["additionalProperties"] = extra
    if isinstance(node.get("items"), Mapping):
        out["items"] = to_json_schema(node["items"])
    for junctor in ("allOf", "anyOf", "oneOf"):
        if junctor in node:
            out[junctor] = [to_json_schema(branch) for branch in node[junctor]]
    if "not" in node:
        out["not"] = to_json_schema(node["not"])
    return out


_FORMATS = jsonschema.FormatChecker(formats=())


def _is_rfc3339(value: object) -> bool:
    if not isinstance(value, str):
        return True
    # RFC 3339 needs the date, a "T", the time and an explicit offset.
    if not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)", value):
        raise ValueError(f"{value!r} is not an RFC 3339 date-time")
    datetime.fromisoformat(value)  # rejects impossible dates such as month 13
    return True


def _is_int32(value: object) -> bool:
    return not isinstance(value, int) or -(2**31) <= value < 2**31


def _is_int64(value: object) -> bool:
    return not isinstance(value, int) or -(2**63) <= value < 2**63


_FORMATS.checks("date-time", raises=ValueError)(_is_rfc3339)
_FORMATS.checks("int32")(_is_int32)
_FORMATS.checks("int64")(_is_int64)


def _errors_against(node: Schema, value: Any) -> list[str]:
    validator = jsonschema.Draft202012Validator(to_json_schema(node), format_checker=_FORMATS)
    return [
        f"{'.'.join(str(p) for p in error.absolute_path) or '<root>'}: {error.message}"
        for error in sorted(
            validator.iter_errors(value), key=lambda e: [str(p) for p in e.absolute_path]
        )
    ]


def _without(node: Schema, key: str) -> dict[str, Any]:
    return {k: v for k, v in node.items() if k != key}
