"""Leader election: the pure decision, the write gate, and the elector's state machine, all on an
injected clock. The Lease store here is an in-memory one with the API server's optimistic
concurrency (resourceVersion, 409 on a stale update), so two electors really race for it.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from b2ckeys.kube.lease import lease_body, record_from_lease
from b2ckeys.leader import (
    Decision,
    ElectionTimings,
    LeaderElector,
    Leadership,
    LeaseRecord,
    LeaseUnavailable,
    NotLeading,
    decide,
    default_identity,
)
from b2ckeys.leader_gates import LeaderGatedKeySetClient
from b2ckeys.settings import Settings, SettingsError

EPOCH = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
TIMINGS = ElectionTimings(lease_duration=15.0, renew_deadline=10.0, retry_period=2.0)


class Clock:
    """Monotonic seconds and the matching wall clock, moved only by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def wall(self) -> datetime:
        return EPOCH + timedelta(seconds=self.now)

    def advance(self, seconds: float) -> None:
        self.now += seconds


class MemoryLeaseStore:
    """One Lease with resourceVersion checks; `down` makes every call fail like a partition."""

    def __init__(self) -> None:
        self.record: LeaseRecord | None = None
        self.down = False
        self.writes: list[tuple[str, str]] = []  # (verb, holder)
        self._versions = itertools.count(1)

    def _check(self) -> None:
        if self.down:
            raise LeaseUnavailable("connection refused")

    async def get(self, *, within: float) -> LeaseRecord | None:
        self._check()
        record = self.record
        await asyncio.sleep(0)  # a network round trip: another candidate may run meanwhile
        return record

    async def create(self, record: LeaseRecord, *, within: float) -> LeaseRecord:
        self._check()
        if self.record is not None:
            raise LeaseUnavailable("already exists")
        self.record = replace(record, resource_version=str(next(self._versions)))
        self.writes.append(("create", record.holder))
        return self.record

    async def update(self, record: LeaseRecord, *, within: float) -> LeaseRecord:
        self._check()
        assert self.record is not None
        if record.resource_version != self.record.resource_version:
            raise LeaseUnavailable("conflict")
        self.record = replace(record, resource_version=str(next(self._versions)))
        self.writes.append(("update", record.holder))
        return self.record


def held_by(holder: str, duration: int = 15) -> LeaseRecord:
    return LeaseRecord(holder, duration, EPOCH, EPOCH, 3, "7")


# --- the decision -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("record", "observed_at", "now", "expected"),
    [
        (None, 0.0, 0.0, Decision.CREATE),
        (held_by("me"), 0.0, 100.0, Decision.RENEW),  # ours, even long expired
        (held_by(""), 0.0, 0.0, Decision.ACQUIRE),  # released
        (held_by("other"), 100.0, 100.0, Decision.STANDBY),
        (held_by("other"), 100.0, 114.9, Decision.STANDBY),
        (held_by("other"), 100.0, 115.0, Decision.ACQUIRE),  # expired by our own clock
        (held_by("other", duration=1), 100.0, 101.0, Decision.ACQUIRE),  # the record's duration
    ],
    ids=["no-lease", "ours", "released", "fresh", "not-yet", "expired", "record-duration"],
)
def test_decide(
    record: LeaseRecord | None, observed_at: float, now: float, expected: Decision
) -> None:
    assert decide(record, identity="me", observed_at=observed_at, now=now) is expected


def test_the_remote_renew_time_is_never_trusted() -> None:
    # A holder whose clock is a day behind still holds the lease for lease-duration seconds
    # after we observed it: only our monotonic clock counts.
    skewed = replace(held_by("other"), renew_time=EPOCH - timedelta(days=1))
    assert decide(skewed, identity="me", observed_at=50.0, now=60.0) is Decision.STANDBY


# --- the gate ---------------------------------------------------------------------------------


def test_the_gate_closes_at_the_renew_deadline_by_the_clock_alone() -> None:
    clock = Clock()
    leadership = Leadership("me", 10.0, clock=clock)
    with pytest.raises(NotLeading, match="me does not hold"):
        leadership.ensure_leading()
    leadership.renewed(clock.now)
    clock.advance(9.99)
    leadership.ensure_leading()
    clock.advance(0.01)
    assert not leadership.is_leading()
    with pytest.raises(NotLeading):
        leadership.ensure_leading()


def test_without_election_the_gate_is_always_open() -> None:
    leadership = Leadership.unelected()
    leadership.ensure_leading()
    assert leadership.seconds_left() == float("inf")


class RecordingKeySets:
    """The inner Graph client: records what reached it."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def get_key_set(self, key_set_id: str) -> None:
        self.calls.append(f"get {key_set_id}")

    async def upload_certificate(self, key_set_id: str, *, certificate_der_b64: str) -> None:
        self.calls.append(f"upload {key_set_id}")


async def test_graph_writes_pass_the_gate_and_reads_do_not_need_it() -> None:
    clock = Clock()
    leadership = Leadership("me", 10.0, clock=clock)
    inner = RecordingKeySets()
    gated = LeaderGatedKeySetClient(inner, leadership)  # type: ignore[arg-type]

    await gated.get_key_set("B2C_1A_K")  # a standby may look
    with pytest.raises(NotLeading):
        await gated.upload_certificate("B2C_1A_K", certificate_der_b64="AA==")
    leadership.renewed(clock.now)
    await gated.upload_certificate("B2C_1A_K", certificate_der_b64="AA==")
    clock.advance(10.0)
    with pytest.raises(NotLeading):
        await gated.upload_certificate("B2C_1A_K", certificate_der_b64="AA==")

    assert inner.calls == ["get B2C_1A_K", "upload B2C_1A_K"]


# --- two electors on one Lease ----------------------------------------------------------------


def elector(
    name: str, store: MemoryLeaseStore, clock: Clock, transitions: list[str]
) -> LeaderElector:
    return LeaderElector(
        store,
        Leadership(name, TIMINGS.renew_deadline, clock=clock),
        TIMINGS,
        on_started_leading=lambda: transitions.append(f"{name} leads"),
        on_stopped_leading=lambda: transitions.append(f"{name} stands by"),
        clock=clock,
        wall_clock=clock.wall,
        jitter=lambda: 0.0,
    )


async def test_one_leads_and_the_other_stands_by() -> None:
    clock, store, transitions = Clock(), MemoryLeaseStore(), []
    a, b = elector("a", store, clock, transitions), elector("b", store, clock, transitions)

    assert await a.step() is Decision.CREATE
    assert await b.step() is Decision.STANDBY
    clock.advance(2.0)
    assert await a.step() is Decision.RENEW
    assert await b.step() is Decision.STANDBY

    assert transitions == ["a leads"]
    assert a.leadership.is_leading()
    assert not b.leadership.is_leading()
    assert store.record is not None
    assert store.record.holder == "a"
    assert store.writes == [("create", "a"), ("update", "a")]


async def test_a_crashed_leader_is_replaced_a_lease_duration_after_its_last_renewal() -> None:
    clock, store, transitions = Clock(), MemoryLeaseStore(), []
    a, b = elector("a", store, clock, transitions), elector("b", store, clock, transitions)
    await a.step()
    await b.step()  # b observes a's record now

    # a dies (never steps again); b retries every retry period.
    took_over_after = None
    for tick in range(1, 20):
        clock.advance(TIMINGS.retry_period)
        if await b.step() is Decision.ACQUIRE:
            took_over_after = tick * TIMINGS.retry_period
            break

    assert took_over_after == 16.0  # the first retry at or after 15 s
    assert b.leadership.is_leading()
    assert store.record is not None
    assert store.record.transitions == 1
    assert transitions == ["a leads", "b leads"]


async def test_a_leader_that_cannot_renew_stops_writing_before_its_lease_can_be_taken() -> None:
    clock, store, transitions = Clock(), MemoryLeaseStore(), []
    a, b = elector("a", store, clock, transitions), elector("b", store, clock, transitions)
    await a.step()
    last_renewal = clock.now
    await b.step()

    store.down = True  # a is cut off; so, for a while, is b
    stopped_writing = took_over = None
    while took_over is None:
        clock.advance(0.5)
        await a.step()
        if stopped_writing is None and not a.leadership.is_leading():
            stopped_writing = clock.now - last_renewal
        store.down = clock.now - last_renewal < 12.0  # b reaches the API server again at 12 s
        if await b.step() is Decision.ACQUIRE:
            took_over = clock.now - last_renewal
        store.down = True

    assert stopped_writing == TIMINGS.renew_deadline
    assert took_over >= TIMINGS.lease_duration
    assert transitions == ["a leads", "a stands by", "b leads"]


async def test_a_leader_that_finds_another_holder_stands_by_at_once() -> None:
    clock, store, transitions = Clock(), MemoryLeaseStore(), []
    a = elector("a", store, clock, transitions)
    await a.step()
    assert store.record is not None
    store.record = replace(store.record, holder="intruder", resource_version="99")

    clock.advance(TIMINGS.retry_period)
    assert await a.step() is Decision.STANDBY

    assert not a.leadership.is_leading()
    assert transitions == ["a leads", "a stands by"]


async def test_release_lets_the_standby_take_over_on_its_next_retry() -> None:
    clock, store, transitions = Clock(), MemoryLeaseStore(), []
    a, b = elector("a", store, clock, transitions), elector("b", store, clock, transitions)
    await a.step()
    await b.step()

    await a.release()
    clock.advance(TIMINGS.retry_period)

    assert not a.leadership.is_leading()
    assert store.record is not None
    assert (store.record.holder, store.record.lease_duration_seconds) == ("", 1)
    assert await b.step() is Decision.ACQUIRE
    assert store.record.transitions == 1


async def test_two_candidates_racing_for_a_free_lease_elect_one() -> None:
    clock, store, transitions = Clock(), MemoryLeaseStore(), []
    a, b = elector("a", store, clock, transitions), elector("b", store, clock, transitions)
    store.record = held_by("")  # released
    # Both read the free Lease before either writes: the second update is a 409.
    decisions = await asyncio.gather(a.step(), b.step())

    assert decisions == [Decision.ACQUIRE, None]
    assert transitions == ["a leads"]
    assert store.writes == [("update", "a")]
    clock.advance(TIMINGS.retry_period)
    assert await b.step() is Decision.STANDBY


# --- the Lease object on the wire -------------------------------------------------------------


def test_a_lease_round_trips_with_micro_times() -> None:
    record = LeaseRecord("pod-a", 15, EPOCH, EPOCH + timedelta(microseconds=123456), 2, "41")
    body = lease_body("b2ckeys-system", "b2ckeys-leader", record)
    assert body["spec"]["renewTime"] == "2026-11-28T10:00:00.123456Z"
    assert body["metadata"] == {
        "name": "b2ckeys-leader",
        "namespace": "b2ckeys-system",
        "resourceVersion": "41",
    }
    assert record_from_lease(body) == record


def test_a_released_lease_has_no_holder_on_the_wire() -> None:
    body = lease_body("ns", "l", held_by(""))
    assert body["spec"]["holderIdentity"] is None
    assert record_from_lease(body).holder == ""


# --- identity and settings --------------------------------------------------------------------


def test_identity_is_the_pod_name_else_unique_per_process() -> None:
    assert default_identity("b2ckeys-7d9f-abcde") == "b2ckeys-7d9f-abcde"
    first, second = default_identity(None), default_identity(None)
    assert first != second
    assert first.rsplit("_", 1)[0] == second.rsplit("_", 1)[0]


def test_election_settings_and_their_client_go_defaults() -> None:
    settings = Settings.from_env({"POD_NAMESPACE": "ops", "POD_NAME": "b2ckeys-0"})
    assert settings.leader_election
    assert (settings.lease_duration, settings.renew_deadline, settings.retry_period) == (
        15.0,
        10.0,
        2.0,
    )
    assert (settings.operator_namespace, settings.lease_name, settings.pod_name) == (
        "ops",
        "b2ckeys-leader",
        "b2ckeys-0",
    )
    assert settings.metrics_address == "0.0.0.0:8081"
    assert not Settings.from_env({"B2CKEYS_LEADER_ELECTION": "false"}).leader_election


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"B2CKEYS_RENEW_DEADLINE": "15s"}, "longer than B2CKEYS_RENEW_DEADLINE"),
        ({"B2CKEYS_RENEW_DEADLINE": "2s"}, r"1.2 x B2CKEYS_RETRY_PERIOD"),
        ({"B2CKEYS_LEASE_DURATION": "4s", "B2CKEYS_RENEW_DEADLINE": "3s"}, None),
        ({"B2CKEYS_LEADER_ELECTION": "maybe"}, "true or false"),
        ({"B2CKEYS_METRICS_ADDRESS": "8081"}, "host:port"),
    ],
)
def test_election_timings_follow_client_go_rules(env: dict[str, str], words: str | None) -> None:
    if words is None:
        assert Settings.from_env(env).renew_deadline == 3.0
        return
    with pytest.raises(SettingsError, match=words):
        Settings.from_env(env)


def test_the_rules_do_not_apply_when_election_is_off() -> None:
    env = {"B2CKEYS_LEADER_ELECTION": "false", "B2CKEYS_RENEW_DEADLINE": "1m"}
    assert Settings.from_env(env).renew_deadline == 60.0
