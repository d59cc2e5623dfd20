"""A keyed work queue: one worker per key at a time, deduplicated, with delayed requeues.

The same contract as client-go's workqueue, which controllers rely on: a key is never processed
by two workers at once (B2C refuses concurrent writes to one key set with AADB2C95053), adding a
key that is already waiting does not duplicate it, adding a key that is being processed makes it
run once more afterwards, and different keys run in parallel up to a limit.

One addition, after controller-runtime's priority queue: among keys that are due, those asked
for by a change (a watch event: a renewed certificate, an edited resource) run before routine
ones (a resync, a backoff, the first listing). With a thousand key sets resyncing, a renewal
otherwise waits behind every overdue resync.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
logger = logging.getLogger(__name__)

# The worker returns how many seconds until the key should run again (None: only on events).
Worker = Callable[[K], Awaitable[float | None]]


class WorkQueue(Generic[K]):
    def __init__(
        self,
        worker: Worker[K],
        *,
        concurrency: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._worker = worker
        self._clock = clock
        # Counted here rather than by a semaphore the workers wait on: a worker is started only
        # when a slot is free, so which key runs next is decided by the ranks below, not by the
        # order in which tasks happened to queue on a semaphore.
        self._limit = concurrency
        self._due: dict[K, float] = {}  # key -> when it should run next (the earliest request)
        self._urgent: set[K] = set()  # due keys a change asked for: they go first once due
        # Keys by when they are due; once due, they move to `_ready`, by rank then time.
        self._timers: list[tuple[float, int, K]] = []
        self._ready: list[tuple[int, float, int, K]] = []
        self._seq = itertools.count()
        self._running: dict[K, asyncio.Task[None]] = {}
        self._again: dict[K, float] = {}  # keys added while running -> when to run again
        self._again_urgent: set[K] = set()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._stopping = False

    def add(self, key: K, delay: float = 0.0, *, urgent: bool = True) -> None:
        """Ask for `key` to be processed after `delay` seconds (or earlier if already asked).
        `urgent=False` for routine work (resyncs, backoffs, the first listing): it yields to
        urgent keys that are due at the same time."""
        when = self._clock() + max(delay, 0.0)
        if key in self._running:
            self._again[key] = min(self._again.get(key, when), when)
            if urgent:
                self._again_urgent.add(key)
            return
        current = self._due.get(key)
        if current is not None and current <= when:
            if urgent and key not in self._urgent:
                self._urgent.add(key)  # the same run, moved ahead of routine ones
                self._push_ready(key, current)
                self._wake.set()
            return
        self._due[key] = when
        if urgent:
            self._urgent.add(key)
        heapq.heappush(self._timers, (when, next(self._seq), key))
        self._idle.clear()
        self._wake.set()

    def forget(self, key: K) -> None:
        """Drop any pending run of `key` (its object is gone). A running worker finishes."""
        self._due.pop(key, None)
        self._urgent.discard(key)
        self._again.pop(key, None)
        self._again_urgent.discard(key)

    def scheduled_in(self, key: K) -> float | None:
        """Seconds until `key` runs, if it is scheduled (for status and tests)."""
        when = self._due.get(key, self._again.get(key))
        return None if when is None else max(when - self._clock(), 0.0)

    @property
    def running(self) -> frozenset[K]:
        return frozenset(self._running)

    async def wait_idle(self) -> None:
        """Until nothing is running and nothing is due now (future requeues do not count)."""
        while True:
            await self._idle.wait()
            if not self._running and not self._due_now():
                return
            self._idle.clear()

    def _due_now(self) -> bool:
        now = self._clock()
        return any(when <= now for when in self._due.values())

    async def run(self) -> None:
        """Dispatch due keys until `stop()`; cancel-safe."""
        try:
            while not self._stopping:
                timeout = self._dispatch_due()
                self._wake.clear()
                if not self._running and not self._due_now():
                    self._idle.set()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout)
        finally:
            for task in list(self._running.values()):
                task.cancel()
            if self._running:
                await asyncio.gather(*self._running.values(), return_exceptions=True)

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    def _rank(self, key: K) -> int:
        return 0 if key in self._urgent else 1

    def _push_ready(self, key: K, when: float) -> None:
        if when <= self._clock():
            heapq.heappush(self._ready, (self._rank(key), when, next(self._seq), key))

    def _dispatch_due(self) -> float | None:
        """Start workers for due keys, urgent first; return seconds until the next is due."""
        now = self._clock()
        while self._timers and self._timers[0][0] <= now:
            when, _, key = heapq.heappop(self._timers)
            if self._due.get(key) == when:  # else superseded by an earlier request, or forgotten
                self._push_ready(key, when)
        while self._ready:
            rank, when, _, key = self._ready[0]
            if self._due.get(key) != when or rank != self._rank(key):
                heapq.heappop(self._ready)  # run already, forgotten, or moved ahead
                continue
            if len(self._running) >= self._limit:
                return None  # a finishing worker wakes the loop
            heapq.heappop(self._ready)
            del self._due[key]
            self._urgent.discard(key)
            self._running[key] = asyncio.create_task(self._process(key), name=f"reconcile {key}")
        while self._timers and self._due.get(self._timers[0][2]) != self._timers[0][0]:
            heapq.heappop(self._timers)
        return self._timers[0][0] - now if self._timers else None

    async def _process(self, key: K) -> None:
        requeue: float | None = None
        try:
            requeue = await self._worker(key)
        except asyncio.CancelledError:
            raise
        except Exception:
            # The worker owns error handling and backoff; this is the last line of defence so
            # one bad key can never stop the queue.
            logger.exception("reconcile of %s failed unexpectedly; retrying in 60 s", key)
            requeue = 60.0
        finally:
            self._running.pop(key, None)
        again = self._again.pop(key, None)
        urgent = key in self._again_urgent
        self._again_urgent.discard(key)
        if again is not None:
            self.add(key, again - self._clock(), urgent=urgent)
        if requeue is not None:
            self.add(key, requeue, urgent=False)
        self._wake.set()
