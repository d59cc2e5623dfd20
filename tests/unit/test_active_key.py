"""B2C's active-key rule, worked out locally from one read of the key set (issue: one Graph read
per resync), and where it must defer to getActiveKey."""

from __future__ import annotations

from typing import Any

import pytest

from b2ckeys.graph.client import RemoteKey
from b2ckeys.plan import AskB2C, active_key, staged_successor

NOW = 1_800_000_000
DAY = 86_400
MARGIN = 300.0


def key(kid: str, **kw: Any) -> RemoteKey:
    return RemoteKey(kid=kid, kty="RSA", use="sig", **kw)


def test_the_newest_started_enabled_unexpired_key_is_active() -> None:
    keys = [
        key("old", nbf=NOW - 30 * DAY, exp=NOW + 30 * DAY),
        key("newest", nbf=NOW - 2 * DAY, exp=NOW + 60 * DAY),
        key("disabled", nbf=NOW - DAY, exp=NOW + 60 * DAY, status="disabled"),
        key("expired", nbf=NOW - 9 * DAY, exp=NOW - DAY),
        key("undated"),
    ]
    assert active_key(keys, NOW, margin=MARGIN) == keys[1]


def test_without_a_started_key_the_one_undated_key_is_active_and_otherwise_none() -> None:
    assert active_key([key("undated")], NOW, margin=MARGIN) == key("undated")
    assert active_key([key("gone", nbf=NOW - 9 * DAY, exp=NOW - DAY)], NOW, margin=MARGIN) is None
    assert active_key([], NOW, margin=MARGIN) is None


@pytest.mark.parametrize(
    ("keys", "why"),
    [
        ([key("staged", nbf=NOW + DAY), key("old", nbf=NOW - DAY)], "staged"),
        ([key("fresh", nbf=NOW - 10), key("old", nbf=NOW - DAY)], "just started"),
        ([key("lapsing", nbf=NOW - DAY, exp=NOW + 60)], "expires within"),
        ([key("lapsed", nbf=NOW - DAY, exp=NOW - 60)], "expires within"),
        ([key("a", nbf=NOW - DAY), key("b", nbf=NOW - DAY)], "share the newest notBefore"),
        ([key("a"), key("b")], "no notBefore"),
        ([key("a", nbf=NOW - DAY, status="unknown")], "status is unknown"),
    ],
)
def test_near_a_switch_or_on_a_tie_b2c_is_asked(keys: list[RemoteKey], why: str) -> None:
    answer = active_key(keys, NOW, margin=MARGIN)
    assert isinstance(answer, AskB2C)
    assert why in answer.why


def test_the_margin_is_what_makes_a_recent_key_certain() -> None:
    keys = [key("recent", nbf=NOW - 10)]
    assert isinstance(active_key(keys, NOW, margin=MARGIN), AskB2C)
    assert active_key(keys, NOW, margin=5) == keys[0]


def test_the_staged_successor_is_the_next_enabled_key_b2c_switches_to() -> None:
    now = 1_000_000
    active = key("active", nbf=now - 100, exp=now + 1000)
    later = key("later", nbf=now + 500)
    sooner = key("sooner", nbf=now + 200, exp=now + 5000)
    disabled = key("disabled", nbf=now + 100, status="disabled")
    stillborn = key("stillborn", nbf=now + 50, exp=now + 40)  # expires before it starts
    assert staged_successor([active, later, sooner, disabled, stillborn], now) == sooner
    assert staged_successor([active, key("undated")], now) is None
    assert staged_successor([], now) is None
