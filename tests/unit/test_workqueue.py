import asyncio
from collections import Counter

from b2ckeys.workqueue import WorkQueue


async def _with_queue(queue: WorkQueue[str]) -> asyncio.Task[None]:
    return asyncio.create_task(queue.run())


async def _stop(queue: WorkQueue[str], task: asyncio.Task[None]) -> None:
    queue.stop()
    await asyncio.wait_for(task, 2)


async def test_a_key_never_runs_twice_at_once_and_adds_while_running_rerun_once() -> None:
    active: set[str] = set()
    overlaps = 0
    runs: Counter[str] = Counter()
    release = asyncio.Event()

    async def worker(key: str) -> float | None:
        nonlocal overlaps
        if key in active:
            overlaps += 1
        active.add(key)
        runs[key] += 1
        if runs[key] == 1:
            await release.wait()
        active.discard(key)
        return None

    queue: WorkQueue[str] = WorkQueue(worker, concurrency=4)
    task = await _with_queue(queue)
    queue.add("a")
    while runs["a"] == 0:
        await asyncio.sleep(0.001)
    for _ in range(5):  # five events while the first run is in progress
        queue.add("a")
    release.set()
    await asyncio.wait_for(queue.wait_idle(), 2)
    await _stop(queue, task)
    assert overlaps == 0
    assert runs["a"] == 2  # the five adds collapse into exactly one more run


async def test_different_keys_run_in_parallel_up_to_the_limit() -> None:
    concurrent = 0
    peak = 0
    gate = asyncio.Event()

    async def worker(key: str) -> float | None:
        nonlocal concurrent, peak
        concurrent += 1
        peak = max(peak, concurrent)
        await gate.wait()
        concurrent -= 1
        return None

    queue: WorkQueue[str] = WorkQueue(worker, concurrency=3)
    task = await _with_queue(queue)
    for key in "abcdef":
        queue.add(key)
    while peak < 3:
        await asyncio.sleep(0.001)
    await asyncio.sleep(0.01)
    assert peak == 3
    gate.set()
    await asyncio.wait_for(queue.wait_idle(), 2)
    await _stop(queue, task)


async def test_requeue_after_the_returned_delay_and_earliest_request_wins() -> None:
    now = [100.0]
    runs: list[tuple[str, float]] = []

    async def worker(key: str) -> float | None:
        runs.append((key, now[0]))
        return 30.0 if len(runs) == 1 else None

    queue: WorkQueue[str] = WorkQueue(worker, concurrency=1, clock=lambda: now[0])
    task = await _with_queue(queue)
    queue.add("a")
    await asyncio.wait_for(queue.wait_idle(), 2)
    assert runs == [("a", 100.0)]
    assert queue.scheduled_in("a") == 30.0
    queue.add("a", 50.0)  # a later request does not postpone the earlier one
    assert queue.scheduled_in("a") == 30.0
    queue.add("a", 10.0)  # an earlier one brings it forward
    assert queue.scheduled_in("a") == 10.0
    now[0] += 10.0
    queue._wake.set()
    while len(runs) < 2:
        await asyncio.sleep(0.001)
    assert runs[1] == ("a", 110.0)
    await _stop(queue, task)


async def test_a_crashing_worker_does_not_stop_the_queue_and_forget_drops_keys() -> None:
    runs: Counter[str] = Counter()

    async def worker(key: str) -> float | None:
        runs[key] += 1
        if key == "bad":
            raise RuntimeError("boom")
        return None

    queue: WorkQueue[str] = WorkQueue(worker, concurrency=2)
    task = await _with_queue(queue)
    queue.add("bad")
    queue.add("good")
    await asyncio.wait_for(queue.wait_idle(), 2)
    assert runs == Counter(bad=1, good=1)
    assert queue.scheduled_in("bad") is not None  # retried later, not lost
    queue.forget("bad")
    assert queue.scheduled_in("bad") is None
    await _stop(queue, task)


async def test_a_change_runs_before_routine_work_that_is_due_already() -> None:
    """A renewal's event must not wait behind a backlog of overdue resyncs."""
    order: list[str] = []
    gate = asyncio.Event()

    async def worker(key: str) -> float | None:
        order.append(key)
        if key == "first":
            await gate.wait()  # holds the only slot while the backlog builds up
        return None

    queue: WorkQueue[str] = WorkQueue(worker, concurrency=1)
    task = await _with_queue(queue)
    queue.add("first")
    while not order:
        await asyncio.sleep(0.001)
    for i in range(5):
        queue.add(f"resync-{i}", urgent=False)
    queue.add("resync-0", urgent=False)  # asked again: still one run, still routine
    queue.add("resync-3")  # an event for a key already waiting moves that run ahead
    queue.add("renewal")
    gate.set()
    await asyncio.wait_for(queue.wait_idle(), 2)
    await _stop(queue, task)
    assert order == ["first", "resync-3", "renewal"] + [f"resync-{i}" for i in (0, 1, 2, 4)]


async def test_routine_requeues_keep_their_time_and_never_run_twice_at_once() -> None:
    runs: Counter[str] = Counter()
    running = 0
    most = 0

    async def worker(key: str) -> float | None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        runs[key] += 1
        await asyncio.sleep(0.001)
        running -= 1
        return 0.01 if runs[key] < 3 else None  # two routine requeues each

    queue: WorkQueue[str] = WorkQueue(worker, concurrency=2)
    task = await _with_queue(queue)
    for key in "abcde":
        queue.add(key)
    while sum(runs.values()) < 15:
        await asyncio.sleep(0.005)
    await _stop(queue, task)
    assert runs == Counter({k: 3 for k in "abcde"})
    assert most == 2
