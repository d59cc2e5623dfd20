"""What the Graph emulator itself costs: start-up, a token, reads, writes and read throughput.

Raw httpx over loopback HTTPS (no SDK), so the figures are the emulator's floor under any client.
Usage: `.venv/bin/python benchmarks/bench_graph_emulator.py [N]` (default 300 per timed call).
"""

from __future__ import annotations

import asyncio
import ssl
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

from b2ckeys_emulators.graph.server import EmulatedApp, serve_graph_emulator

CLIENT_ID = "bench-app"
CLIENT_SECRET = "bench-secret"  # noqa: S105 - an emulator-only credential
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
# Enough samples for a stable p90 on a shared 2-core machine within seconds.
DEFAULT_ITERATIONS = 300
# Start-ups are slower to sample; 20 gives a usable median.
STARTS = 20
# Concurrent readers for the throughput figure: a few more than cores, as an operator would.
READERS = 8
THROUGHPUT_SECONDS = 2.0


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def timed(call: Callable[[], Awaitable[object]], iterations: int) -> list[float]:
    samples = []
    for _ in range(iterations):
        started = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - started) * 1000.0)
    return samples


def line(name: str, samples: list[float]) -> str:
    median, p90 = statistics.median(samples), percentile(samples, 0.9)
    return f"{name:<24} median {median:7.2f} ms  p90 {p90:7.2f} ms  (n={len(samples)})"


async def main(iterations: int) -> None:
    app = EmulatedApp(client_id=CLIENT_ID, secret=CLIENT_SECRET)
    with tempfile.TemporaryDirectory(prefix="bench-graph-emulator-") as tls:
        starts = []
        for _ in range(STARTS):
            started = time.perf_counter()
            async with serve_graph_emulator(tls_dir=tls, apps=[app]):
                starts.append((time.perf_counter() - started) * 1000.0)
        print(line("start (listening)", starts))
        verify = ssl.create_default_context(cafile=str(Path(tls) / "ca.pem"))
        async with (
            serve_graph_emulator(tls_dir=tls, apps=[app]) as emu,
            httpx.AsyncClient(verify=verify, base_url=emu.graph_base_url) as http,
        ):
            form = {
                "grant_type": "client_credentials",
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "scope": GRAPH_SCOPE,
            }

            async def token() -> str:
                return str((await http.post(emu.token_url, data=form)).json()["access_token"])

            print(line("token", await timed(token, iterations)))
            http.headers["Authorization"] = f"Bearer {await token()}"
            key_set = (await http.post("/trustFramework/keySets", json={"id": "bench"})).json()[
                "id"
            ]
            path = f"/trustFramework/keySets/{key_set}"

            async def upload() -> object:
                return await http.post(f"{path}/uploadSecret", json={"use": "sig", "k": "x"})

            async def active() -> object:
                return await http.get(f"{path}/getActiveKey()")

            print(line("uploadSecret", await timed(upload, iterations)))
            print(line(f"getActiveKey ({iterations} keys)", await timed(active, iterations)))
            count = 0
            deadline = time.perf_counter() + THROUGHPUT_SECONDS

            async def reader() -> None:
                nonlocal count
                while time.perf_counter() < deadline:
                    await http.get(f"{path}/getActiveKey()")
                    count += 1

            await asyncio.gather(*(reader() for _ in range(READERS)))
            rate = count / THROUGHPUT_SECONDS
            print(f"{'read throughput':<24} {rate:7.0f} req/s ({READERS} readers)")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_ITERATIONS))
