"""Leader election on a coordination.k8s.io/v1 Lease, with client-go's semantics, in asyncio.

Every replica keeps its watches open; only the one holding the Lease reconciles and writes.
The rules are client-go's (tools/leaderelection): a candidate may take the Lease once its holder
has not renewed it for `leaseDurationSeconds`, measured on the candidate's own clock from when
it *observed* the last change (never from the remote renewTime, so clock skew between nodes does
not matter); the holder renews every retry period and stops leading once it has failed to
renew for the renew deadline, which is shorter than the lease duration, so it stops before
anyone can take over. client-go does not fence: hence `Leadership.ensure_leading()`, checked
before every write to Graph and to Kubernetes, against the monotonic clock itself, so a stalled
event loop or a slow API call cannot stretch a leadership past its deadline. The intent recorded
in status before each upload (sync.py) remains the second line of defence.

Why not `kubernetes.leaderelection`: it runs a blocking loop with `time.sleep` in a thread and
calls back from that thread, while the operator's state lives on Kopf's event loop; it never
releases the Lease on shutdown; and its lock makes its own API client, outside the one
connection (kubeconfig, TLS, timeouts) the operator otherwise uses. The decision below is a
pure function so the state machine is tested against an injected clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Protocol

logger = logging.getLogger(__name__)

# client-go's JitterFactor for a candidate's retries: up to 20 % on top of the retry period, so
# candidates that started together do not keep colliding. A leader renews without jitter.
CANDIDATE_JITTER = 0.2
# A released Lease (client-go's ReleaseOnCancel) says 1 s, so a candidate that sees the record
# before the empty holder still waits at most a second.
RELEASED_LEASE_SECONDS = 1


class NotLeading(Exception):
    """This replica does not hold the Lease (any more): it must not write."""


@dataclass(frozen=True)
class LeaseRecord:
    """The fields of a Lease's spec that election reads and writes."""

    holder: str  # "" once released
    lease_duration_seconds: int
    acquire_time: datetime | None
    renew_time: datetime | None
    transitions: int
    resource_version: str | None = None  # the optimistic lock for the next update

    def same_as(self, other: LeaseRecord | None) -> bool:
        """Whether nothing changed (client-go compares the record, not the object's version)."""
        return other is not None and replace(other, resource_version=None) == replace(
            self, resource_version=None
        )


class Decision(enum.Enum):
    CREATE = "create"  # no Lease yet: create it, held by us
    RENEW = "renew"  # we hold it: refresh renewTime
    ACQUIRE = "acquire"  # released, or its holder let it expire: take it over
    STANDBY = "standby"  # another holder's lease is still valid: do nothing


def decide(
    record: LeaseRecord | None, *, identity: str, observed_at: float, now: float
) -> Decision:
    """What a candidate does given the Lease it just read.

    `observed_at` is when (our monotonic clock) we first saw this exact record; `now` is our
    monotonic clock. Pure: the whole state machine is here, the rest is I/O.
    """
    if record is None:
        return Decision.CREATE
    if record.holder == identity:
        return Decision.RENEW
    if not record.holder:
        return Decision.ACQUIRE
    if now < observed_at + record.lease_duration_seconds:
        return Decision.STANDBY
    return Decision.ACQUIRE


class Leadership:
    """The gate every write checks. Leading means: our last successful acquire or renew *began*
    less than the renew deadline ago (by the monotonic clock)."""

    def __init__(
        self,
        identity: str,
        renew_deadline: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        elected: bool = True,
    ) -> None:
        self.identity = identity
        self._renew_deadline = renew_deadline
        self._clock = clock
        self._elected = elected
        self._valid_until: float | None = None

    @classmethod
    def unelected(cls, identity: str = "") -> Leadership:
        """Leader election off (one replica, or tests of one operator): always leading."""
        return cls(identity, 0.0, elected=False)

    @property
    def elected(self) -> bool:
        return self._elected

    def is_leading(self) -> bool:
        if not self._elected:
            return True
        return self._valid_until is not None and self._clock() < self._valid_until

    def ensure_leading(self) -> None:
        """Raise NotLeading unless this replica may write now."""
        if not self.is_leading():
            raise NotLeading(f"{self.identity} does not hold the leader Lease; not writing")

    def seconds_left(self) -> float:
        if not self._elected:
            return float("inf")
        if self._valid_until is None:
            return 0.0
        return max(self._valid_until - self._clock(), 0.0)

    def renewed(self, attempt_started: float) -> None:
        self._valid_until = attempt_started + self._renew_deadline

    def relinquish(self) -> None:
        self._valid_until = None


class LeaseStore(Protocol):
    """Where the Lease lives (kube/lease.py on the API server). Errors are LeaseUnavailable."""

    async def get(self, *, within: float) -> LeaseRecord | None: ...

    async def create(self, record: LeaseRecord, *, within: float) -> LeaseRecord: ...

    async def update(self, record: LeaseRecord, *, within: float) -> LeaseRecord: ...


class LeaseUnavailable(Exception):
    """The Lease could not be read or written (API server away, conflict, refusal)."""


def default_identity(pod_name: str | None) -> str:
    """POD_NAME when it is set (unique among a Deployment's pods), else the hostname plus a
    random suffix, so two processes on one host never share an identity."""
    if pod_name:
        return pod_name
    return f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class ElectionTimings:
    lease_duration: float
    renew_deadline: float
    retry_period: float


class LeaderElector:
    """Tries to acquire or renew every retry period; calls back on each transition.

    `on_started_leading` runs once leadership is won (the controller resyncs everything);
    `on_stopped_leading` once it is lost (the writes already stopped at the gate).
    """

    def __init__(
        self,
        store: LeaseStore,
        leadership: Leadership,
        timings: ElectionTimings,
        *,
        on_started_leading: Callable[[], None] = lambda: None,
        on_stopped_leading: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._store = store
        self.leadership = leadership
        self._timings = timings
        self._on_started = on_started_leading
        self._on_stopped = on_stopped_leading
        self._clock = clock
        self._wall_clock = wall_clock
        self._jitter = jitter
        self._observed: LeaseRecord | None = None
        self._observed_at = 0.0
        self._announced_leading = False
        self._stopping = False
        self._wake = asyncio.Event()
        # When the API server last answered an election call (for readiness), monotonic.
        self.last_answer: float | None = None

    @property
    def identity(self) -> str:
        return self.leadership.identity

    @property
    def observed(self) -> LeaseRecord | None:
        return self._observed

    async def run(self) -> None:
        """Until `stop()`; cancel-safe. Never raises for API trouble: it retries."""
        while not self._stopping:
            await self.step()
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._next_interval())

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    def _next_interval(self) -> float:
        retry = self._timings.retry_period
        if self._announced_leading:
            return retry
        return retry * (1.0 + CANDIDATE_JITTER * self._jitter())

    async def step(self) -> Decision | None:
        """One attempt to acquire or renew; then note a lost leadership. Returns what was
        decided (None when the Lease could not be read or written)."""
        started = self._clock()
        decision: Decision | None = None
        try:
            decision = await self._try_acquire_or_renew(started)
        except LeaseUnavailable as error:
            level = logging.WARNING if self.leadership.is_leading() else logging.DEBUG
            # Every attempt is retried after the retry period; saying so tells a reader (and
            # the cluster tier's refusal check) that a denial here is not final.
            logger.log(
                level,
                "leader election: %s; retrying in %.1fs",
                error,
                self._timings.retry_period,
            )
        except Exception:
            # A bug here must not end the election: the gate closes by the clock regardless,
            # and the next retry may succeed.
            logger.exception("leader election attempt failed unexpectedly")
        self._notice_transition()
        return decision

    def _attempt_timeout(self) -> float:
        # A leader's call must not outlive its leadership; a candidate's gets the renew deadline.
        if self.leadership.is_leading():
            return max(self.leadership.seconds_left(), 0.1)
        return self._timings.renew_deadline

    async def _try_acquire_or_renew(self, started: float) -> Decision:
        timeout = self._attempt_timeout()
        try:
            async with asyncio.timeout(timeout):
                current = await self._store.get(within=timeout)
                self._observe(current)
                decision = decide(
                    current,
                    identity=self.identity,
                    observed_at=self._observed_at,
                    now=self._clock(),
                )
                if decision is Decision.STANDBY:
                    # Someone else holds a valid lease: if we thought we led, we do not.
                    self.leadership.relinquish()
                    return decision
                written = await self._write(decision, current, timeout)
        except TimeoutError:
            raise LeaseUnavailable(f"no answer within {timeout:.1f}s") from None
        self.leadership.renewed(started)
        self._observe(written)
        return decision

    async def _write(
        self, decision: Decision, current: LeaseRecord | None, within: float
    ) -> LeaseRecord:
        now = self._wall_clock()
        duration = max(round(self._timings.lease_duration), 1)
        if decision is Decision.CREATE:
            record = LeaseRecord(self.identity, duration, now, now, 0)
            return await self._store.create(record, within=within)
        assert current is not None
        if decision is Decision.RENEW:
            renewed = replace(current, renew_time=now, lease_duration_seconds=duration)
            return await self._store.update(renewed, within=within)
        taken = replace(
            current,
            holder=self.identity,
            lease_duration_seconds=duration,
            acquire_time=now,
            renew_time=now,
            transitions=current.transitions + 1,
        )
        return await self._store.update(taken, within=within)

    def _observe(self, record: LeaseRecord | None) -> None:
        self.last_answer = self._clock()
        if record is None or not record.same_as(self._observed):
            self._observed_at = self._clock()
        self._observed = record

    def _notice_transition(self) -> None:
        leading = self.leadership.is_leading()
        if leading and not self._announced_leading:
            self._announced_leading = True
            logger.info(
                "became the leader (%s holds Lease; transitions: %s): reconciling every key set",
                self.identity,
                self._observed.transitions if self._observed else 0,
            )
            self._on_started()
        elif not leading and self._announced_leading:
            self._announced_leading = False
            holder = self._observed.holder if self._observed else ""
            why = (
                f"no renewal for the renew deadline of {self._timings.renew_deadline:g}s"
                if holder == self.identity
                else f"the Lease is held by {holder or 'nobody'}"
            )
            logger.warning(
                "lost the leadership (%s; %s): stopped writing, standing by", self.identity, why
            )
            self._on_stopped()

    async def release(self) -> None:
        """Give the Lease up at once (client-go's ReleaseOnCancel), so a standby takes over on its
        next retry instead of after the lease duration. Call only once nothing writes anymore."""
        was_leading = self.leadership.is_leading()
        self.leadership.relinquish()
        record = self._observed
        if not was_leading or record is None or record.holder != self.identity:
            return
        now = self._wall_clock()
        released = replace(
            record,
            holder="",
            lease_duration_seconds=RELEASED_LEASE_SECONDS,
            acquire_time=now,
            renew_time=now,
        )
        try:
            await self._store.update(released, within=self._timings.retry_period)
        except LeaseUnavailable as error:
            logger.warning("could not release the leader Lease (%s); it expires by itself", error)
            return
        self._announced_leading = False
        logger.info("released the leader Lease (%s) on shutdown", self.identity)
