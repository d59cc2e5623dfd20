"""Server-side printing: `meta.k8s.io/v1` Tables for custom resources, as kubectl asks for them.

`kubectl get` sends `Accept: application/json;as=Table;v=v1;g=meta.k8s.io,...`; a real server
answers with the CRD's `additionalPrinterColumns` (Name, then those columns; Name and Age when
there are none). Built-in kinds get no Table here: kubectl then prints them itself, as NAME and
AGE. Only the JSONPath forms printer columns use are understood: `.a.b`, `[n]`, `[*]` and
`[?(@.field=="value")]`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

_NAME_COLUMN = {
    "name": "Name",
    "type": "string",
    "format": "name",
    "description": "Name must be unique within a namespace.",
    "priority": 0,
}
_AGE_COLUMN = {
    "name": "Age",
    "type": "date",
    "jsonPath": ".metadata.creationTimestamp",
    "description": "CreationTimestamp is a timestamp of when the object was created.",
}
_STEP = re.compile(
    r"""\.(?P<field>[A-Za-z0-9_-]+)
      | \[(?P<index>\d+|\*)\]
      | \[\?\(@\.(?P<key>[A-Za-z0-9_.-]+)\s*==\s*(?P<quote>["'])(?P<value>[^"']*)(?P=quote)\)\]""",
    re.VERBOSE,
)


def wants_table(accept: str) -> bool:
    return any("as=Table" in choice and "g=meta.k8s.io" in choice for choice in accept.split(","))


def jsonpath(path: str, obj: Any) -> list[Any]:
    """Every value `path` selects in `obj` (empty when nothing matches or the path is unknown)."""
    found = [obj]
    position = 0
    while position < len(path):
        step = _STEP.match(path, position)
        if step is None:
            return []
        position = step.end()
        found = [value for current in found for value in _apply(step, current)]
    return found


def _apply(step: re.Match[str], current: Any) -> list[Any]:
    if step["field"] is not None:
        return (
            [current[step["field"]]]
            if isinstance(current, Mapping) and step["field"] in current
            else []
        )
    if not isinstance(current, list):
        return []
    if step["index"] == "*":
        return list(current)
    if step["index"] is not None:
        index = int(step["index"])
        return [current[index]] if index < len(current) else []
    return [
        item
        for item in current
        if any(str(v) == step["value"] for v in jsonpath("." + step["key"], item))
    ]


def table(
    objects: Iterable[Mapping[str, Any]],
    columns: Sequence[Mapping[str, Any]],
    *,
    metadata: Mapping[str, Any],
    include_object: str,
    now: datetime,
) -> dict[str, Any]:
    printed = list(columns) or [_AGE_COLUMN]
    definitions = [_NAME_COLUMN] + [
        {
            "name": column["name"],
            "type": column.get("type", "string"),
            "format": column.get("format", ""),
            "description": column.get("description", ""),
            "priority": column.get("priority", 0),
        }
        for column in printed
    ]
    rows = []
    for obj in objects:
        cells = [obj["metadata"]["name"], *(_cell(obj, column, now) for column in printed)]
        row: dict[str, Any] = {"cells": cells}
        if include_object == "Object":
            row["object"] = dict(obj)
        elif include_object != "None":
            row["object"] = {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj["metadata"],
            }
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": dict(metadata),
        "columnDefinitions": definitions,
        "rows": rows,
    }


def _cell(obj: Mapping[str, Any], column: Mapping[str, Any], now: datetime) -> Any:
    values = jsonpath(str(column.get("jsonPath", "")), obj)
    if not values or values[0] is None:
        return None
    value = values[0]
    kind = column.get("type", "string")
    if kind == "date":
        try:
            return human_duration(now - datetime.fromisoformat(str(value)))
        except ValueError:
            return str(value)
    if kind in {"integer", "number", "boolean"}:
        return value
    return json.dumps(value) if isinstance(value, dict | list) else str(value)


def human_duration(age: timedelta) -> str:
    """An age as kubectl prints it (k8s.io/apimachinery's HumanDuration)."""
    seconds = int(age.total_seconds())
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if seconds < 120:
        return f"{seconds}s"
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    if hours < 24 * 365 * 2:
        return f"{days}d"
    years = days // 365
    if hours < 24 * 365 * 8:
        return f"{years}y{days % 365}d" if days % 365 else f"{years}y"
    return f"{years}y"
