"""Evaluates a CRD's `x-kubernetes-validations` CEL rules with cel-python, as kube-apiserver does.

The walk follows the API server: a rule runs on a node only when that node is present; a rule
that mentions `oldSelf` is a transition rule and runs only on update, when the old object has a
value at the same place; `self` is the node after defaulting. An evaluation error is a refusal,
as on a real server (which reports the error instead of the rule's message).

cel-python implements standard CEL (`has()`, macros such as `.filter()`, `size()`, `matches()`,
`duration()`), not the Kubernetes extension libraries (`lowerAscii()`, `url()`, `quantity()`,
...). The CRD's rules keep to that standard part so they can be tested here.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import celpy
from celpy import celtypes
from celpy.adapter import json_to_cel
from celpy.evaluation import CELEvalError

_OLD_SELF = re.compile(r"\boldSelf\b")
# Property names that are CEL keywords; Kubernetes exposes them to rules as __name__
# (`self.__namespace__` for a member called namespace).
_RESERVED = frozenset(
    [
        "true",
        "false",
        "null",
        "in",
        "as",
        "break",
        "const",
        "continue",
        "else",
        "for",
        "function",
        "if",
        "import",
        "let",
        "loop",
        "package",
        "namespace",
        "return",
        "var",
        "void",
        "while",
    ]
)


def _escaped(value: Any) -> Any:
    """Object keys as a Kubernetes CEL rule sees them."""
    if isinstance(value, Mapping):
        return {(f"__{k}__" if k in _RESERVED else k): _escaped(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_escaped(v) for v in value]
    return value


@dataclass(frozen=True)
class Verdict:
    """One rule evaluated on one node: allowed, or refused with the message a user would see."""

    path: str
    rule: str
    allowed: bool
    message: str


@dataclass(frozen=True)
class _Rule:
    text: str
    message: str
    transition: bool
    program: celpy.Runner


class CelRules:
    """Every rule of a schema, compiled once (a syntax error raises CELParseError here)."""

    def __init__(self, schema: Mapping[str, Any]) -> None:
        self._schema = schema
        self._environment = celpy.Environment()
        self._rules: dict[str, list[_Rule]] = {}
        self._compile(schema, path="")

    def _compile(self, node: Mapping[str, Any], path: str) -> None:
        rules = [
            _Rule(
                text=entry["rule"],
                message=entry.get("message", f"failed rule: {entry['rule']}"),
                transition=bool(_OLD_SELF.search(entry["rule"])),
                program=self._environment.program(self._environment.compile(entry["rule"])),
            )
            for entry in node.get("x-kubernetes-validations", [])
        ]
        if rules:
            self._rules[path] = rules
        for name, child in node.get("properties", {}).items():
            self._compile(child, f"{path}.{name}")
        if isinstance(node.get("additionalProperties"), Mapping):
            self._compile(node["additionalProperties"], f"{path}.*")
        if isinstance(node.get("items"), Mapping):
            self._compile(node["items"], f"{path}[]")

    @property
    def rule_texts(self) -> list[str]:
        return [rule.text for rules in self._rules.values() for rule in rules]

    def verdicts(self, new: Any, old: Any = None) -> list[Verdict]:
        """Every rule that ran on new (an update when old is given), allowed or not."""
        return list(self._walk(self._schema, new, old, path="", has_old=old is not None))

    def refusals(self, new: Any, old: Any = None) -> list[str]:
        """The messages of the rules that refuse new; empty means the rules admit it."""
        return [v.message for v in self.verdicts(new, old) if not v.allowed]

    def _walk(
        self, node: Mapping[str, Any], new: Any, old: Any, *, path: str, has_old: bool
    ) -> Iterator[Verdict]:
        for rule in self._rules.get(path, []):
            if rule.transition and not has_old:
                continue
            yield self._evaluate(rule, path, new, old)
        properties = node.get("properties", {})
        extra = node.get("additionalProperties")
        if isinstance(new, dict):
            for name, value in new.items():
                child = properties.get(name, extra if isinstance(extra, Mapping) else None)
                if child is None:
                    continue
                child_path = f"{path}.{name}" if name in properties else f"{path}.*"
                old_has = has_old and isinstance(old, dict) and name in old
                yield from self._walk(
                    child, value, old[name] if old_has else None, path=child_path, has_old=old_has
                )
        elif isinstance(new, list) and isinstance(node.get("items"), Mapping):
            # Old items correlate only through map-list keys; this CRD puts no rule in a list.
            for value in new:
                yield from self._walk(node["items"], value, None, path=f"{path}[]", has_old=False)

    @staticmethod
    def _evaluate(rule: _Rule, path: str, new: Any, old: Any) -> Verdict:
        activation: dict[str, Any] = {"self": json_to_cel(_escaped(new))}
        if rule.transition:
            activation["oldSelf"] = json_to_cel(_escaped(old))
        where = path or "<root>"
        try:
            result = rule.program.evaluate(activation)
        except CELEvalError as error:
            return Verdict(where, rule.text, False, f"{where}: error evaluating rule: {error}")
        if not isinstance(result, celtypes.BoolType):
            return Verdict(where, rule.text, False, f"{where}: rule did not return a bool")
        return Verdict(where, rule.text, bool(result), rule.message)
