"""The conformance catalogue and the emulator's rules are one list: neither can drift."""

from __future__ import annotations

import dataclasses

import pytest

from b2ckeys.conformance.catalogue import BY_ID, NOT_OBSERVABLE, RULES, Rule, select
from b2ckeys.conformance.checks import CHECKS
from b2ckeys.conformance.probe import Guard, PrefixViolation
from b2ckeys_emulators.graph.rules import EmulatorRules

EMULATOR_DEFAULTS = EmulatorRules()
RULE_FIELDS = {f.name for f in dataclasses.fields(EmulatorRules)}


@pytest.mark.parametrize("rule", RULES, ids=lambda rule: rule.id)
def test_each_rule_expects_the_emulators_default(rule: Rule) -> None:
    for name in rule.fields:
        assert name in RULE_FIELDS, f"{rule.id} names {name}, which EmulatorRules lacks"
        assert rule.expected[name] == getattr(EMULATOR_DEFAULTS, name), (
            f"{rule.id}: the catalogue expects {name}={rule.expected[name]!r}, "
            f"the emulator defaults to {getattr(EMULATOR_DEFAULTS, name)!r}"
        )


def test_every_emulator_rule_is_checked_or_said_to_be_unobservable() -> None:
    named = {name for rule in RULES for name in rule.fields}
    assert not named & set(NOT_OBSERVABLE), "a field is both checked and called unobservable"
    assert RULE_FIELDS - named - set(NOT_OBSERVABLE) == set(), (
        "EmulatorRules fields that no conformance rule names: add a check to the catalogue, "
        "or list the field in NOT_OBSERVABLE with why"
    )
    assert set(NOT_OBSERVABLE) <= RULE_FIELDS


def test_every_rule_has_exactly_one_check() -> None:
    assert len(BY_ID) == len(RULES), "rule ids are unique"
    assert set(CHECKS) == set(BY_ID)


def test_only_takes_ids_and_sections() -> None:
    assert [r.id for r in select(["2.1.3"])] == ["2.1.3"]
    assert {r.id for r in select(["2.6"])} == {r.id for r in RULES if r.id.startswith("2.6.")}
    assert {r.id for r in select(["2.8"])} == {r.id for r in RULES if r.id.startswith("2.8-")}
    with pytest.raises(ValueError, match=r"no rule matches 9\.9"):
        select(["9.9"])


def test_the_prefix_guard_refuses_any_other_key_set() -> None:
    guard = Guard("B2C_1A_B2CKEYSCONFORMANCE_")
    guard.check_path("GET", "/trustFramework/keySets/B2C_1A_B2CKEYSCONFORMANCE_X_a/keys_v2")
    guard.check_create({"id": "B2CKEYSCONFORMANCE_X_a"})  # B2C adds B2C_1A_
    with pytest.raises(PrefixViolation, match="B2C_1A_TokenSigningKeyContainer"):
        guard.check_path("DELETE", "/trustFramework/keySets/B2C_1A_TokenSigningKeyContainer")
    with pytest.raises(PrefixViolation):
        guard.check_create({"id": "TokenSigningKeyContainer"})
    guard.named_by_graph.add("B2C_1A_B2C_1A_B2CKEYSCONFORMANCE_X_b")  # B2C's answer to a create
    guard.check_path("DELETE", "/trustFramework/keySets/B2C_1A_B2C_1A_B2CKEYSCONFORMANCE_X_b")
