"""The retirement and emergency-request decisions, one row per rule: a disabled key cannot sign,
so each wrong answer here is an outage or a compromised key left in rotation."""

from __future__ import annotations

from typing import Any

import pytest
from crd_schema import load_crd, schema_errors, served_schema

from b2ckeys.graph.client import RemoteKey
from b2ckeys.model import KeySetResource, SpecError, parse_spec
from b2ckeys.preview import retirement_note
from b2ckeys.retirement import (
    MAX_FOREIGN_LISTED,
    MAX_RECORDED,
    KeyStatusRequest,
    foreign_kids,
    judge_request,
    landed_from_intent,
    mark_retired,
    parse_key_status_request,
    plan_retirement,
    record_upload,
    seed_record,
)
from b2ckeys.status import PendingWrite, SyncedKey, UploadedKey, parse_status

NOW = 1_800_000_000
HOUR = 3600
DAY = 24 * HOUR


def key(kid: str, nbf: int | None, **kw: Any) -> RemoteKey:
    return RemoteKey(kid=kid, kty="oct", use="sig", nbf=nbf, **kw)


def ours(kid: str, uploaded_at: int, **kw: Any) -> UploadedKey:
    return UploadedKey(kid=kid, uploaded_at=uploaded_at, **kw)


OLD = key("old", NOW - 10 * DAY)
NEW = key("new", NOW - 2 * DAY)
RECORD = (ours("old", NOW - 10 * DAY), ours("new", NOW - 2 * DAY))


def test_an_old_key_is_due_once_the_newer_one_was_active_for_the_duration() -> None:
    plan = plan_retirement(RECORD, [OLD, NEW], NEW, NOW, after=DAY)
    assert plan.disable == ("old",)
    assert plan.record[0].superseded_at == NOW - 2 * DAY


def test_not_before_the_duration_and_it_says_when() -> None:
    plan = plan_retirement(RECORD, [OLD, NEW], NEW, NOW, after=3 * DAY)
    assert plan.disable == ()
    assert plan.next_due == DAY


def test_the_active_key_is_never_disabled() -> None:
    # The newer key is staged: the old one is still active, so nothing is superseded.
    staged = key("new", NOW + HOUR)
    plan = plan_retirement(RECORD, [OLD, staged], OLD, NOW, after=0)
    assert plan.disable == ()
    assert all(r.superseded_at is None for r in plan.record)


def test_an_old_key_made_active_again_is_not_disabled() -> None:
    # Superseded earlier, but the newer key was disabled by hand: the old one signs again.
    record = (ours("old", NOW - 10 * DAY, superseded_at=NOW - 5 * DAY), RECORD[1])
    disabled = key("new", NOW - 2 * DAY, status="disabled")
    assert plan_retirement(record, [OLD, disabled], OLD, NOW, after=0).disable == ()


def test_a_key_outside_the_record_is_never_touched() -> None:
    by_hand = key("by-hand", NOW - DAY)
    plan = plan_retirement(RECORD, [OLD, NEW, by_hand], by_hand, NOW, after=0)
    assert plan.disable == ()  # the active key is not ours: nothing is superseded by it
    plan = plan_retirement(
        RECORD, [key("older-by-hand", NOW - 20 * DAY), OLD, NEW], NEW, NOW, after=0
    )
    assert plan.disable == ("old",)
    assert foreign_kids(RECORD, [by_hand, OLD, NEW]) == ("by-hand",)


def test_no_active_key_retires_nothing() -> None:
    assert plan_retirement(RECORD, [OLD, NEW], None, NOW, after=0).disable == ()


def test_a_key_already_disabled_or_expired_is_noted_without_a_write() -> None:
    disabled = key("old", NOW - 10 * DAY, status="disabled")
    plan = plan_retirement(RECORD, [disabled, NEW], NEW, NOW, after=0)
    assert plan.disable == ()
    assert plan.record[0].retired_at == NOW
    expired = key("old", NOW - 10 * DAY, exp=NOW - 1)
    assert plan_retirement(RECORD, [expired, NEW], NEW, NOW, after=0).disable == ()


def test_a_retired_key_is_not_disabled_again_after_a_person_enabled_it() -> None:
    record = (ours("old", NOW - 10 * DAY, superseded_at=NOW - DAY, retired_at=NOW - HOUR),)
    record += (RECORD[1],)
    assert plan_retirement(record, [OLD, NEW], NEW, NOW, after=0).disable == ()


def test_a_staged_key_uploaded_earlier_is_not_superseded() -> None:
    # Uploaded before the active key, but still to start: it is yet to become active.
    early = key("early", NOW + DAY)
    record = (ours("early", NOW - 3 * DAY), RECORD[1])
    assert plan_retirement(record, [early, NEW], NEW, NOW, after=0).disable == ()


def test_the_active_since_is_never_in_the_future_of_our_clock() -> None:
    # B2C (its clock ahead) says the new key is active although its nbf is ahead of ours.
    ahead = key("new", NOW + HOUR)
    plan = plan_retirement(RECORD, [OLD, ahead], ahead, NOW, after=60)
    assert plan.record[0].superseded_at == NOW
    assert plan.next_due == 60


def test_a_refusal_is_kept_and_cleared_by_the_retirement() -> None:
    refused = mark_retired(RECORD, "old", NOW, error="[400 AADB2C90134] no")
    assert refused[0].error == "[400 AADB2C90134] no"
    assert refused[0].retired_at is None
    assert plan_retirement(refused, [OLD, NEW], NEW, NOW, after=0).disable == ("old",)
    done = mark_retired(refused, "old", NOW + 60)
    assert done[0].error is None
    assert done[0].retired_at == NOW + 60


def test_the_record_is_bounded_and_adds_each_key_once() -> None:
    record: tuple[UploadedKey, ...] = ()
    for i in range(MAX_RECORDED + 5):
        record = record_upload(record, key(f"k{i}", NOW + i), NOW + i)
    record = record_upload(record, key(f"k{MAX_RECORDED + 4}", NOW), NOW + 99)
    assert len(record) == MAX_RECORDED
    assert record[0].kid == "k5"
    assert record[-1].kid == f"k{MAX_RECORDED + 4}"


def test_the_record_is_seeded_only_from_an_upload_not_an_adoption() -> None:
    uploaded = SyncedKey("k1", nbf=NOW, uploaded_at=NOW)
    assert seed_record((), uploaded) == (ours("k1", NOW, nbf=NOW),)
    assert seed_record((), SyncedKey("adopted", nbf=NOW)) == ()
    assert seed_record(RECORD, uploaded) == RECORD


def test_a_key_found_by_its_intent_is_ours() -> None:
    intent = PendingWrite("uploadSecret", "B2C_1A_X", nbf=NOW, exp=NOW + DAY, started_at=NOW)
    assert landed_from_intent(intent, key("k", NOW, exp=NOW + DAY))
    assert not landed_from_intent(intent, key("k", NOW, exp=None))
    cert = PendingWrite("uploadPkcs12", "B2C_1A_X", x5t="t1")
    assert landed_from_intent(cert, key("k", NOW, x5t="t1"))
    assert not landed_from_intent(None, key("k", NOW))


def test_status_round_trips_the_record() -> None:
    entry = ours("k", NOW, x5t="t", nbf=NOW, exp=NOW + DAY, superseded_at=NOW + 1, error="e")
    assert parse_status({"uploadedKeys": [entry.to_status()]}).uploaded == (entry,)


# --- emergency requests -------------------------------------------------------------------------


def request(kid: str, status: str = "disabled") -> KeyStatusRequest:
    return KeyStatusRequest("r1", kid, status)  # type: ignore[arg-type]


def test_disabling_the_only_usable_key_is_refused() -> None:
    verdict = judge_request(request("old"), [OLD], NOW)
    assert (verdict.write, verdict.result) == (False, "Refused")
    assert "only usable key" in verdict.message
    # A staged or expired other key does not count: neither can sign now.
    others = [key("staged", NOW + HOUR), key("expired", NOW - DAY, exp=NOW - 1)]
    assert judge_request(request("old"), [OLD, *others], NOW).result == "Refused"


def test_any_key_may_be_disabled_while_another_is_usable() -> None:
    by_hand = key("by-hand", NOW - HOUR)
    assert judge_request(request("by-hand"), [OLD, by_hand], NOW).write
    assert judge_request(request("old"), [OLD, NEW], NOW).write


def test_enabling_and_repeating_a_request_write_only_what_changes() -> None:
    disabled = key("old", NOW - DAY, status="disabled")
    assert judge_request(request("old", "enabled"), [disabled], NOW).write
    again = judge_request(request("old"), [disabled, NEW], NOW)
    assert (again.write, again.result) == (False, "Done")
    missing = judge_request(request("gone"), [OLD], NOW)
    assert (missing.write, missing.result) == (False, "Refused")


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("not json", "not JSON"),
        ("[1]", "JSON object"),
        ('{"kid": "k", "status": "disabled"}', "needs an id"),
        ('{"id": "1", "status": "disabled"}', "needs a kid"),
        ('{"id": "1", "kid": "k", "status": "revoked"}', "enabled or disabled"),
    ],
)
def test_a_malformed_request_is_refused_by_name(value: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        parse_key_status_request(value)


def test_a_request_round_trips_through_its_annotation() -> None:
    written = KeyStatusRequest("2026-01-01T00:00:00.000001Z", "k", "enabled")
    assert parse_key_status_request(written.to_annotation()) == written


# --- the spec -----------------------------------------------------------------------------------

SPEC = {"keySetId": "X", "source": {"generate": {"kty": "RSA"}}}


def test_the_spec_parses_the_duration_and_absent_retires_nothing() -> None:
    assert parse_spec(SPEC).disable_superseded_after is None
    spec = parse_spec(SPEC | {"retirement": {"disableSupersededAfter": "720h"}})
    assert spec.disable_superseded_after == 720 * HOUR


@pytest.mark.parametrize("bad", ["soon", "-1h", "1d"])
def test_a_bad_duration_is_refused_by_the_model_and_the_crd(bad: str) -> None:
    body = SPEC | {"retirement": {"disableSupersededAfter": bad}}
    with pytest.raises(SpecError, match=r"spec\.retirement\.disableSupersededAfter"):
        parse_spec(body)
    resource = KeySetResource.from_body({"metadata": {"name": "ks"}, "spec": body})
    assert resource.spec is None
    assert "disableSupersededAfter" in (resource.spec_error or "")
    obj = {
        "apiVersion": "b2ckeys.dev/v1alpha1",
        "kind": "TrustFrameworkKeySet",
        "metadata": {"name": "ks", "namespace": "ns"},
        "spec": body,
    }
    assert any("does not match" in e for e in schema_errors(served_schema(load_crd()), obj))


def test_plan_notes_what_retirement_did_and_what_is_due() -> None:
    record = [
        ours("gone", NOW - 9 * DAY, superseded_at=NOW - 5 * DAY, retired_at=NOW - 4 * DAY),
        ours("old", NOW - 3 * DAY, superseded_at=NOW - 2 * DAY),
        ours("new", NOW - 2 * DAY),
    ]
    body = {
        "metadata": {"name": "ks", "namespace": "ns"},
        "spec": SPEC | {"retirement": {"disableSupersededAfter": "24h"}},
        "status": {"uploadedKeys": [r.to_status() for r in record]},
    }
    note = retirement_note(KeySetResource.from_body(body), DAY, NOW)
    assert "status records 3 uploaded keys, 1 retired" in note
    assert note.endswith("due now (the next reconcile disables them): old")
    assert "due now" not in retirement_note(KeySetResource.from_body(body), 3 * DAY, NOW)


def test_the_bounds_are_the_crds() -> None:
    # A longer list than the CRD allows would make every status write fail validation.
    status = served_schema(load_crd())["properties"]["status"]["properties"]
    assert status["uploadedKeys"]["maxItems"] == MAX_RECORDED
    assert status["foreignKeys"]["maxItems"] == MAX_FOREIGN_LISTED
