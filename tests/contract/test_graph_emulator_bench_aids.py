"""The Graph emulator's two benchmark aids: a pool of pre-made RSA keys for generateKey, and a
per-tenant write rate limit answering 429 with Retry-After."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from graph_emulator_support import GraphEmulatorApps, graph_emulator_http
from test_graph_emulator_cli import START_TIMEOUT_SECONDS, emulator_process

from b2ckeys_emulators.graph.server import GraphEmulator, serve_graph_emulator
from b2ckeys_emulators.graph.state import WriteRateLimit

KEY_SETS = "/trustFramework/keySets"
# Three 2048-bit keys take ~0.15 s here; the bound only catches a pool that never fills.
POOL_FILL_TIMEOUT_SECONDS = 20.0


@asynccontextmanager
async def emulator(
    ca_dir: Path, apps: GraphEmulatorApps, **options: Any
) -> AsyncIterator[tuple[GraphEmulator, httpx.AsyncClient, httpx.AsyncClient]]:
    """An emulator with `options`, a writer client on Graph and a client on /_emulator."""
    async with (
        serve_graph_emulator(tls_dir=ca_dir, apps=apps.all(), **options) as emu,
        graph_emulator_http(emu, apps.writer) as graph,
        httpx.AsyncClient(base_url=emu.url + "/_emulator", timeout=10) as control,
    ):
        yield emu, graph, control


async def poll(control: httpx.AsyncClient, path: str, field: str, want: int) -> dict[str, Any]:
    deadline = time.monotonic() + POOL_FILL_TIMEOUT_SECONDS
    while True:
        body: dict[str, Any] = (await control.get(path)).json()
        if body.get(field) == want:
            return body
        assert time.monotonic() < deadline, f"{path} never had {field}={want}: {body}"
        await asyncio.sleep(0.02)


async def generate(graph: httpx.AsyncClient, key_set: str) -> dict[str, Any]:
    response = await graph.post(
        f"{KEY_SETS}/{key_set}/generateKey", json={"use": "sig", "kty": "RSA"}
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_generate_key_takes_pooled_keys_then_generates_its_own(
    emulator_ca_dir: Path, graph_emulator_apps: GraphEmulatorApps
) -> None:
    async with emulator(emulator_ca_dir, graph_emulator_apps, key_pool_size=2) as (
        _,
        graph,
        control,
    ):
        await poll(control, "/key-pool", "available", 2)
        moduli = []
        for number in range(3):
            created = await graph.post(KEY_SETS, json={"id": f"Pooled{number}"})
            assert created.status_code == 201, created.text
            key = await generate(graph, created.json()["id"])
            assert key["kty"] == "RSA"
            assert key.get("d") is None  # write-only: never rendered
            moduli.append(key["n"])
        counts = (await control.get("/key-pool")).json()
    assert len(set(moduli)) == 3, "a pooled key was handed out twice"
    assert counts == {
        "size": 2,
        "bits": 2048,
        "made": 2,
        "available": 0,
        "taken": 2,
        "madeOnDemand": 1,
    }


async def test_writes_over_the_rate_get_429_with_retry_after_and_reads_never_do(
    emulator_ca_dir: Path, graph_emulator_apps: GraphEmulatorApps
) -> None:
    async with emulator(emulator_ca_dir, graph_emulator_apps, write_rate_limit=2) as (
        emu,
        graph,
        control,
    ):
        answers = [await graph.post(KEY_SETS, json={"id": f"Limited{n}"}) for n in range(4)]
        assert [a.status_code for a in answers] == [201, 201, 429, 429]
        refused = answers[2]
        assert refused.headers["Retry-After"] == "1"
        assert refused.json()["error"]["code"] == "AADB2C95043"
        # Refused writes changed nothing; reads are not limited.
        listed = await graph.get(KEY_SETS)
        assert listed.status_code == 200
        assert sorted(ks["id"] for ks in listed.json()["value"]) == [
            "B2C_1A_Limited0",
            "B2C_1A_Limited1",
        ]
        assert (await graph.get(f"{KEY_SETS}/B2C_1A_Limited0")).status_code == 200
        assert (await control.get("/write-rate-limit")).json() == {"perSecond": 2, "refused": 2}
        logged = [r.status for r in emu.state.requests() if r.path == "/beta" + KEY_SETS]
        assert logged == [201, 201, 429, 429, 200]

        lifted = await control.post("/write-rate-limit", json={"perSecond": None})
        assert lifted.json() == {"perSecond": None}
        again = [await graph.post(KEY_SETS, json={"id": f"Free{n}"}) for n in range(3)]
        assert [a.status_code for a in again] == [201, 201, 201]
        bad = await control.post("/write-rate-limit", json={"perSecond": "fast"})
        assert bad.status_code == 400


def test_the_limit_is_a_sliding_one_second_window() -> None:
    now = [100.0]
    limit = WriteRateLimit(3, clock=lambda: now[0])
    assert [limit.admit() for _ in range(3)] == [None, None, None]
    now[0] = 100.4
    wait = limit.admit()
    assert wait is not None
    assert abs(wait - 0.6) < 1e-9
    now[0] = 101.0  # the first three leave the window together
    assert [limit.admit() for _ in range(3)] == [None, None, None]
    assert limit.admit() is not None
    assert limit.refused == 2


async def test_cli_flags_start_the_pool_and_the_limit(emulator_ca_dir: Path) -> None:
    args = ("--tls-dir", str(emulator_ca_dir), "--key-pool", "1", "--write-rate-limit", "5")
    async with emulator_process(*args) as process:
        assert process.stdout is not None
        first = await asyncio.wait_for(process.stdout.readline(), START_TIMEOUT_SECONDS)
        url = first.decode().rsplit(" ", 1)[-1].strip()
        async with httpx.AsyncClient(base_url=url + "/_emulator", timeout=10) as control:
            pool = await poll(control, "/key-pool", "available", 1)
            limit = (await control.get("/write-rate-limit")).json()
    assert pool["size"] == 1
    assert limit == {"perSecond": 5, "refused": 0}


async def test_the_request_log_can_start_at_a_moment_and_keep_one_path(
    emulator_ca_dir: Path, graph_emulator_apps: GraphEmulatorApps
) -> None:
    async with emulator(emulator_ca_dir, graph_emulator_apps) as (emu, graph, control):
        await graph.get(KEY_SETS)
        moment = emu.state.now()
        await graph.post(KEY_SETS, json={"id": "Later"})
        later = (await control.get("/requests", params={"since": moment})).json()["value"]
        everything = (await control.get("/requests")).json()["value"]
        refused = await control.get("/requests", params={"since": "yesterday"})
        lists = (await control.get("/requests", params={"contains": "keySets"})).json()["value"]
    assert [(r["method"], r["status"]) for r in later] == [("POST", 201)]
    assert [r["method"] for r in lists] == ["GET", "POST"]
    assert len(everything) == 3  # the token, the list and the create
    assert refused.status_code == 400
