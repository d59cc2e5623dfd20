"""The write decisions, one row per situation: every upload adds a key, so each row matters."""

from __future__ import annotations

import pytest

from b2ckeys.conditions import Reason
from b2ckeys.graph.client import RemoteKey
from b2ckeys.plan import (
    DesiredCertificate,
    DesiredGenerated,
    DesiredSecret,
    decide,
    next_check,
    summarize,
)
from b2ckeys.status import PendingWrite, StatusView, SyncedKey

NOW = 1_800_000_000
HOUR = 3600
CERT = DesiredCertificate("uploadPkcs12", "x5t-new", "s256-new", NOW - HOUR, NOW + 90 * 24 * HOUR)


def key(kid: str, **kw: object) -> RemoteKey:
    defaults: dict[str, object] = {"kty": "RSA", "use": "sig"}
    defaults.update(kw)
    return RemoteKey(kid=kid, **defaults)  # type: ignore[arg-type]


def secret(**kw: object) -> DesiredSecret:
    values: dict[str, object] = {
        "fingerprint": "fp",
        "matches_synced": False,
        "matches_pending": False,
        "not_before_delay": 0.0,
        "lifetime": None,
        "rotation_every": None,
    }
    values.update(kw)
    return DesiredSecret(**values)  # type: ignore[arg-type]


def generated(**kw: object) -> DesiredGenerated:
    values: dict[str, object] = {
        "kty": "RSA",
        "use": "sig",
        "not_before_delay": 0.0,
        "lifetime": None,
        "rotation_every": None,
    }
    values.update(kw)
    return DesiredGenerated(**values)  # type: ignore[arg-type]


# --- certificates ---------------------------------------------------------------------------


def test_certificate_already_present_is_adopted_not_uploaded() -> None:
    present = key("k1", x5t="x5t-new")
    decision = decide(CERT, [key("old", x5t="x5t-old"), present], StatusView(), NOW)
    assert decision.write is None
    assert decision.adopt == present
    assert decision.adopt_fingerprint == "s256-new"


def test_new_certificate_is_uploaded_once() -> None:
    decision = decide(CERT, [key("old", x5t="x5t-old")], StatusView(), NOW)
    assert decision.write is not None
    assert (decision.write.action, decision.write.x5t) == ("uploadPkcs12", "x5t-new")
    assert not decision.create_key_set


def test_missing_key_set_is_created_then_written() -> None:
    decision = decide(CERT, None, StatusView(), NOW)
    assert decision.create_key_set
    assert decision.write is not None
    assert decision.writes[0] == "createKeySet"


# --- string secrets -------------------------------------------------------------------------

SYNCED = SyncedKey(kid="s1", kty="oct", nbf=NOW - HOUR, exp=None)
SECRET_KEY = key("s1", kty="oct", nbf=NOW - HOUR)


def test_unchanged_secret_still_in_b2c_means_no_write() -> None:
    decision = decide(secret(matches_synced=True), [SECRET_KEY], StatusView(synced=SYNCED), NOW)
    assert decision.write is None
    assert decision.adopt == SECRET_KEY


@pytest.mark.parametrize(
    ("desired", "keys", "why"),
    [
        (secret(), [SECRET_KEY], "the secret's value changed"),
        (secret(matches_synced=True), [], "the uploaded secret is gone from B2C"),
        (
            secret(matches_synced=True),
            [key("s1", kty="oct", nbf=NOW - HOUR, exp=NOW - 1)],
            "the uploaded secret expired or was disabled",
        ),
        (secret(matches_synced=True, rotation_every=1800.0), [SECRET_KEY], "rotation due"),
    ],
)
def test_secret_reupload_reasons(desired: DesiredSecret, keys: list[RemoteKey], why: str) -> None:
    decision = decide(desired, keys, StatusView(synced=SYNCED), NOW)
    assert decision.write is not None
    assert decision.write.why == why
    assert decision.write.action == "uploadSecret"


def test_new_secret_nbf_is_unique_in_the_set_and_exp_follows_lifetime() -> None:
    keys = [key("a", kty="oct", nbf=NOW + 60), key("b", kty="oct", nbf=NOW + 61)]
    decision = decide(secret(not_before_delay=60.0, lifetime=HOUR), keys, StatusView(), NOW)
    assert decision.write is not None
    assert decision.write.nbf == NOW + 62
    assert decision.write.exp == NOW + 62 + HOUR


def test_secret_whose_lost_write_landed_is_adopted_not_duplicated() -> None:
    pending = PendingWrite("uploadSecret", "B2C_1A_X", fingerprint="fp", nbf=NOW - 5, exp=None)
    landed = key("new", kty="oct", nbf=NOW - 5)
    decision = decide(
        secret(matches_pending=True),
        [SECRET_KEY, landed],
        StatusView(synced=SYNCED, pending=pending),
        NOW,
    )
    assert decision.write is None
    assert decision.adopt == landed


def test_secret_whose_lost_write_never_landed_is_retried_with_the_same_dates() -> None:
    pending = PendingWrite("uploadSecret", "B2C_1A_X", fingerprint="fp", nbf=NOW - 5, exp=NOW + 99)
    decision = decide(secret(matches_pending=True), [SECRET_KEY], StatusView(pending=pending), NOW)
    assert decision.write is not None
    assert (decision.write.nbf, decision.write.exp) == (NOW - 5, NOW + 99)


# --- generated keys -------------------------------------------------------------------------


def test_generate_adopts_any_usable_key_of_the_type_when_nothing_recorded() -> None:
    rsa = key("r", nbf=NOW - HOUR)
    decision = decide(generated(), [key("o", kty="oct"), rsa], StatusView(), NOW)
    assert decision.write is None
    assert decision.adopt == rsa


@pytest.mark.parametrize(
    ("keys", "desired", "why"),
    [
        ([], generated(), "no usable key of this type"),
        ([key("r", nbf=NOW - 2 * HOUR)], generated(rotation_every=float(HOUR)), "rotation due"),
        ([key("r", use="enc")], generated(), "no usable key of this type"),
        ([key("r", status="disabled")], generated(), "no usable key of this type"),
    ],
)
def test_generate_writes_when(keys: list[RemoteKey], desired: DesiredGenerated, why: str) -> None:
    decision = decide(desired, keys, StatusView(), NOW)
    assert decision.write is not None
    assert (decision.write.action, decision.write.why) == ("generateKey", why)


def test_generate_recognises_its_own_lost_write_by_dates() -> None:
    pending = PendingWrite("generateKey", "B2C_1A_X", nbf=NOW - 3, exp=NOW + HOUR)
    landed = key("g", nbf=NOW - 3, exp=NOW + HOUR)
    decision = decide(generated(), [landed], StatusView(pending=pending), NOW)
    assert decision.write is None
    assert decision.adopt == landed


# --- status ---------------------------------------------------------------------------------


def test_future_key_is_pending_activation_until_b2c_uses_it() -> None:
    future = key("f", nbf=NOW + HOUR)
    outcome = summarize("B2C_1A_X", future, key("old"), NOW)
    assert outcome.reason is Reason.PENDING_ACTIVATION
    assert outcome.ready
    assert summarize("B2C_1A_X", future, future, NOW).reason is Reason.SYNCED


def test_next_check_polls_activation_and_rotation() -> None:
    future = key("f", nbf=NOW + HOUR)
    assert (
        next_check(CERT, future, key("old"), NOW, resync_interval=600, activation_poll_interval=30)
        == 30
    )
    due = key("g", nbf=NOW - 100)
    gen = generated(rotation_every=200.0)
    assert next_check(gen, due, due, NOW, resync_interval=600, activation_poll_interval=30) == 100


def test_certificate_already_uploaded_is_found_by_kid_if_b2c_reports_another_thumbprint() -> None:
    odd = key("k1", x5t="b2c-says-otherwise")
    status = StatusView(synced=SyncedKey(kid="k1", x5t="x5t-new"), source_fingerprint="s256-new")
    decision = decide(CERT, [odd], status, NOW)
    assert decision.write is None
    assert decision.adopt == odd


def test_b2c_using_a_newer_key_than_the_source_is_drift_not_ready() -> None:
    ours = key("ours", nbf=NOW - 2 * HOUR)
    newer = key("newer", nbf=NOW - HOUR)
    outcome = summarize("B2C_1A_X", ours, newer, NOW)
    assert outcome.reason is Reason.DRIFTED
    assert not outcome.ready
    assert "newer" in outcome.message


# --- a write of unknown fate is waited for, never repeated early ---------------------------------


def _intent(action: str, started_at: int, **kw: object) -> StatusView:
    pending = PendingWrite(action=action, key_set_id="B2C_1A_X", started_at=started_at, **kw)  # type: ignore[arg-type]
    return StatusView(pending=pending)


def test_a_recent_upload_of_the_same_certificate_is_waited_for_not_repeated() -> None:
    status = _intent("uploadPkcs12", NOW - 10, x5t=CERT.x5t, nbf=CERT.nbf, exp=CERT.exp)
    waiting = decide(CERT, [], status, NOW, settle=35)
    assert waiting.write is None
    assert waiting.wait == 25
    # Settled without landing: written again. Landed: adopted, whatever the time.
    assert decide(CERT, [], status, NOW + 30, settle=35).write is not None
    landed = [key("k1", x5t=CERT.x5t, nbf=CERT.nbf, exp=CERT.exp)]
    assert decide(CERT, landed, status, NOW, settle=35).adopt == landed[0]


def test_a_recent_intent_for_other_material_does_not_hold_back_a_new_certificate() -> None:
    status = _intent("uploadPkcs12", NOW - 1, x5t="x5t-old", nbf=NOW, exp=NOW + 10)
    assert decide(CERT, [], status, NOW, settle=35).write is not None


def test_a_recent_secret_or_generated_intent_is_waited_for() -> None:
    pending = _intent("uploadSecret", NOW - 5, nbf=NOW - 5, exp=None, fingerprint="fp")
    same = secret(matches_pending=True)
    assert decide(same, [], pending, NOW, settle=35).wait == 30
    assert decide(secret(matches_pending=False), [], pending, NOW, settle=35).wait is None
    generated = DesiredGenerated("RSA", "sig", 0.0, None, None)
    gen_pending = _intent("generateKey", NOW - 5, nbf=NOW - 5, exp=None)
    assert decide(generated, [], gen_pending, NOW, settle=35).wait == 30
    assert decide(generated, [], gen_pending, NOW, settle=0).write is not None
