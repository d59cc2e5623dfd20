"""Label and field selectors, parsed and applied the way the Kubernetes API server does.

Label selectors: `k=v`, `k==v`, `k!=v`, `k` (exists), `!k` (does not exist), `k in (a,b)`,
`k notin (a,b)`, `k>1`, `k<1`, joined by commas (all must hold). Field selectors: `path=v`,
`path==v`, `path!=v` over a small set of fields per resource, as a real server allows.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, Literal

LabelOperator = Literal["=", "!=", "in", "notin", "exists", "!", ">", "<"]

# Label keys: an optional DNS-subdomain prefix and a name of at most 63 characters.
_LABEL_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9]")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?")

_SET_REQUIREMENT = re.compile(r"(?P<key>[^\s!=<>(),]+)\s+(?P<op>in|notin)\s*\((?P<values>[^()]*)\)")
_NOT_EXISTS = re.compile(r"!\s*(?P<key>[^\s!=<>(),]+)")
_COMPARISON = re.compile(r"(?P<key>[^\s!=<>(),]+)\s*(?P<op>==|!=|=|>|<)\s*(?P<value>[^\s!=<>(),]*)")
_EXISTS = re.compile(r"(?P<key>[^\s!=<>(),]+)")


class SelectorError(ValueError):
    """A selector that a real API server would reject with 400 Bad Request."""


def is_label_key(key: str) -> bool:
    prefix, _, name = key.rpartition("/")
    if prefix and not _DNS_SUBDOMAIN.fullmatch(prefix):
        return False
    return bool(_LABEL_NAME.fullmatch(name))


def is_label_value(value: str) -> bool:
    return bool(_LABEL_VALUE.fullmatch(value))


@dataclass(frozen=True)
class LabelRequirement:
    key: str
    operator: LabelOperator
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        match self.operator:
            case "exists":
                return present
            case "!":
                return not present
            case "=" | "in":
                return present and value in self.values
            case "!=" | "notin":
                return not present or value not in self.values
            case ">" | "<":
                return present and _compare_numbers(value, self.operator, self.values)


def _compare_numbers(value: str | None, operator: str, bounds: frozenset[str]) -> bool:
    try:
        number = int(value or "")
    except ValueError:
        return False
    (bound,) = bounds
    return number > int(bound) if operator == ">" else number < int(bound)


@dataclass(frozen=True)
class LabelSelector:
    requirements: tuple[LabelRequirement, ...] = ()

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        return all(requirement.matches(labels or {}) for requirement in self.requirements)


def parse_label_selector(text: str) -> LabelSelector:
    requirements = tuple(_parse_label_requirement(part) for part in _split_top_level(text))
    return LabelSelector(requirements)


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside `in (...)` value lists."""
    parts: list[str] = []
    depth = 0
    current: list[str] = []
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                raise SelectorError("unbalanced parentheses in the label selector")
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    if depth != 0:
        raise SelectorError("unbalanced parentheses in the label selector")
    parts.append("".join(current))
    stripped = [part.strip() for part in parts]
    if stripped == [""]:
        return []
    if "" in stripped:
        raise SelectorError("empty requirement in the label selector")
    return stripped


def _parse_label_requirement(text: str) -> LabelRequirement:
    requirement: LabelRequirement
    if match := _SET_REQUIREMENT.fullmatch(text):
        values = [value.strip() for value in match["values"].split(",")]
        operator: LabelOperator = "in" if match["op"] == "in" else "notin"
        requirement = LabelRequirement(match["key"], operator, frozenset(values))
    elif match := _NOT_EXISTS.fullmatch(text):
        requirement = LabelRequirement(match["key"], "!")
    elif match := _COMPARISON.fullmatch(text):
        requirement = LabelRequirement(
            match["key"], _comparison_operator(match["op"]), frozenset({match["value"]})
        )
    elif match := _EXISTS.fullmatch(text):
        requirement = LabelRequirement(match["key"], "exists")
    else:
        raise SelectorError(f"unable to parse requirement: {text!r}")
    _validate(requirement)
    return requirement


def _comparison_operator(token: str) -> LabelOperator:
    operators: dict[str, LabelOperator] = {"=": "=", "==": "=", "!=": "!=", ">": ">", "<": "<"}
    return operators[token]


def _validate(requirement: LabelRequirement) -> None:
    if not is_label_key(requirement.key):
        raise SelectorError(f"invalid label key {requirement.key!r}")
    if requirement.operator in {">", "<"}:
        if not all(value.lstrip("-").isdigit() for value in requirement.values):
            raise SelectorError(f"for {requirement.operator!r}, the value must be an integer")
    elif not all(is_label_value(value) for value in requirement.values):
        raise SelectorError(f"invalid label value in the requirement on {requirement.key!r}")


FieldOperator = Literal["=", "!="]


@dataclass(frozen=True)
class FieldRequirement:
    field: str
    operator: FieldOperator
    value: str


@dataclass(frozen=True)
class FieldSelector:
    requirements: tuple[FieldRequirement, ...] = ()

    def matches(self, obj: Mapping[str, Any]) -> bool:
        for requirement in self.requirements:
            equal = field_value(obj, requirement.field) == requirement.value
            if equal != (requirement.operator == "="):
                return False
        return True


# Fields every resource can be selected by; resources add their own (see `supported_fields`).
COMMON_FIELDS: frozenset[str] = frozenset({"metadata.name", "metadata.namespace"})


def parse_field_selector(text: str, supported: Collection[str]) -> FieldSelector:
    requirements: list[FieldRequirement] = []
    for term in _split_escaped(text, ","):
        if not term:
            continue
        field, operator, value = _split_field_term(term)
        if field not in supported:
            raise SelectorError(f"field label not supported: {field}")
        requirements.append(FieldRequirement(field, operator, value))
    return FieldSelector(tuple(requirements))


# Longest first, so that `a!=b` and `a==b` are not read as `a!` / `a=` followed by `=b`.
_FIELD_OPERATORS: tuple[tuple[str, FieldOperator], ...] = (("!=", "!="), ("==", "="), ("=", "="))


def _split_field_term(term: str) -> tuple[str, FieldOperator, str]:
    for token, operator in _FIELD_OPERATORS:
        if (index := _find_unescaped(term, token)) >= 0:
            field = term[:index].strip()
            value = _unescape(term[index + len(token) :])
            return field, operator, value
    raise SelectorError(f"invalid selector: {term!r}; can't understand {term!r}")


def _find_unescaped(text: str, token: str) -> int:
    index = 0
    while index < len(text):
        if text[index] == "\\":
            index += 2
            continue
        if text.startswith(token, index):
            return index
        index += 1
    return -1


def _split_escaped(text: str, separator: str) -> list[str]:
    parts: list[str] = []
    start = 0
    while (index := _find_unescaped(text[start:], separator)) >= 0:
        parts.append(text[start : start + index])
        start += index + len(separator)
    parts.append(text[start:])
    return parts


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def field_value(obj: Mapping[str, Any], path: str) -> str:
    """The string a field selector compares against; absent fields compare as ''."""
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping) and path == "source":
        return str(value.get("component", ""))
    return "" if value is None or isinstance(value, Mapping | list) else str(value)


# Extra fields that real API servers accept for some built-in resources.
_EXTRA_FIELDS: dict[tuple[str, str], frozenset[str]] = {
    ("", "secrets"): frozenset({"type"}),
    ("", "namespaces"): frozenset({"status.phase"}),
    ("", "events"): frozenset(
        {
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        }
    ),
    ("", "pods"): frozenset({"spec.nodeName", "spec.serviceAccountName", "status.phase"}),
}


def supported_fields(group: str, plural: str, extra: Collection[str] = ()) -> frozenset[str]:
    return COMMON_FIELDS | _EXTRA_FIELDS.get((group, plural), frozenset()) | frozenset(extra)
