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
