"""Run a real Kopf operator in its own thread and event loop, as in production.

The thread runner stops gracefully in milliseconds through `stop_flag` (an in-loop operator
stopped that way waits 5 s for the emulator's own connection tasks; see kopf-testing-notes).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import kopf

# Generous for a loaded 2-core machine; a healthy operator starts in about 0.1 s.
START_SECONDS = 10.0
STOP_SECONDS = 10.0


def fast_settings() -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    # Retry API errors within the test's patience, not the default 1..21 s ladder.
    settings.networking.error_backoffs = [0.1, 0.2, 0.5]
    # Let idle workers and exiting operators go at once instead of waiting for more events.
    settings.queueing.idle_timeout = 0.5
    settings.queueing.exit_timeout = 0.5
    settings.background.instant_exit_timeout = 0.5
    return settings


def login_from_kubeconfig(registry: kopf.OperatorRegistry) -> None:
    """Log in with `$KUBECONFIG`, read when Kopf starts (not when kubernetes is imported)."""

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        return kopf.login_with_kubeconfig(**kwargs)


@asynccontextmanager
async def kopf_in_thread(
    registry: kopf.OperatorRegistry, settings: kopf.OperatorSettings
) -> AsyncIterator[None]:
    ready = threading.Event()
    stop = threading.Event()
    failures: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(
                kopf.operator(
                    registry=registry,
                    settings=settings,
                    standalone=True,
                    clusterwide=True,
                    ready_flag=ready,
                    stop_flag=stop,
                )
            )
        except BaseException as failure:  # reported to the test below
            failures.append(failure)

    thread = threading.Thread(target=run, name="kopf-operator", daemon=True)
    thread.start()
    try:
        if not await asyncio.to_thread(ready.wait, START_SECONDS):
            raise AssertionError(f"Kopf did not get ready: {failures}")
        yield
    finally:
        stop.set()
        await asyncio.to_thread(thread.join, STOP_SECONDS)
    assert not thread.is_alive(), "Kopf did not stop"
    if failures:
        raise failures[0]
