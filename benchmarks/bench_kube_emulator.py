"""What the kube-emulator costs: start-up, request latency, watch delivery, scale of a LIST.

Measures, in one process on loopback with one aiohttp client:
- emulator start (built-in catalogue, project CRDs, HTTP server, kubeconfig) to first answer;
- create / get / merge-patch / status-patch / delete of a custom resource, N times each;
- the time from a write to its event on an open watch stream;
- a LIST of M Secrets, and the same LIST with a label selector matching one in ten;
and prints median and p90 of each. Usage:
`.venv/bin/python benchmarks/bench_kube_emulator.py [N] [M]` (defaults 300 and 2000).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from b2ckeys_emulators.kube.server import RunningKubeEmulator, serve_kube_emulator

# Enough iterations for a stable p90 on a shared 2-core machine in a few seconds.
DEFAULT_ITERATIONS = 300
# A namespace-sized population; LIST cost grows linearly with it.
DEFAULT_OBJECTS = 2000
STARTS = 10
KEYSETS = "/apis/b2ckeys.dev/v1alpha1/namespaces/default/trustframeworkkeysets"
SECRETS = "/api/v1/namespaces/default/secrets"
MERGE = {"Content-Type": "application/merge-patch+json"}


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def report(name: str, samples: list[float]) -> None:
    median, p90 = statistics.median(samples), percentile(samples, 0.9)
    print(
        f"{name:<34} median {median * 1000:7.2f} ms   p90 {p90 * 1000:7.2f} ms   n={len(samples)}"
    )


async def timed(action: Callable[[], Awaitable[Any]]) -> float:
    started = time.perf_counter()
    await action()
    return time.perf_counter() - started


def keyset(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "b2ckeys.dev/v1alpha1",
        "kind": "TrustFrameworkKeySet",
        "metadata": {"name": name},
        "spec": {"keySetId": name, "source": {"generate": {"keyType": "RSA"}}},
    }


async def send(http: aiohttp.ClientSession, method: str, path: str, **kwargs: Any) -> None:
    async with http.request(method, path, **kwargs) as response:
        await response.read()
        assert response.status < 300, (method, path, response.status)


async def bench_starts() -> None:
    samples = []
    for _ in range(STARTS):
        started = time.perf_counter()
        async with serve_kube_emulator() as kube, aiohttp.ClientSession(kube.url) as http:
            await send(http, "GET", "/version")
            samples.append(time.perf_counter() - started)
    report("start to first answer", samples)


async def bench_requests(kube: RunningKubeEmulator, http: aiohttp.ClientSession, n: int) -> None:
    names = [f"k{i}" for i in range(n)]
    steps: dict[str, Callable[[str], Awaitable[None]]] = {
        "create": lambda name: send(http, "POST", KEYSETS, json=keyset(name)),
        "get": lambda name: send(http, "GET", f"{KEYSETS}/{name}"),
        "merge-patch (labels)": lambda name: send(
            http,
            "PATCH",
            f"{KEYSETS}/{name}",
            json={"metadata": {"labels": {"a": "b"}}},
            headers=MERGE,
        ),
        "merge-patch /status": lambda name: send(
            http,
            "PATCH",
            f"{KEYSETS}/{name}/status",
            json={"status": {"keySetId": name}},
            headers=MERGE,
        ),
        "delete": lambda name: send(http, "DELETE", f"{KEYSETS}/{name}"),
    }
    for step, action in steps.items():
        samples = []
        for name in names:
            started = time.perf_counter()
            await action(name)
            samples.append(time.perf_counter() - started)
        report(step, samples)


async def bench_watch_delivery(
    kube: RunningKubeEmulator, http: aiohttp.ClientSession, n: int
) -> None:
    samples = []
    params = {"watch": "true", "resourceVersion": str(kube.emulator.resource_version)}
    async with http.get(SECRETS, params=params) as stream:
        for i in range(n):
            meta = {"name": f"w{i}", "namespace": "default"}
            started = time.perf_counter()
            kube.emulator.create_object({"apiVersion": "v1", "kind": "Secret", "metadata": meta})
            event = json.loads(await stream.content.readline())
            samples.append(time.perf_counter() - started)
            assert event["object"]["metadata"]["name"] == f"w{i}"
    report("write to watch event", samples)


async def bench_list(kube: RunningKubeEmulator, http: aiohttp.ClientSession, m: int) -> None:
    for i in range(m):
        labels = {"tenth": "yes"} if i % 10 == 0 else {}
        kube.emulator.create_object(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": f"s{i}", "namespace": "default", "labels": labels},
            }
        )
    report(
        f"LIST {m} secrets", [await timed(lambda: send(http, "GET", SECRETS)) for _ in range(20)]
    )
    selected = {"labelSelector": "tenth=yes"}
    report(
        f"LIST {m} secrets, 1 in 10 selected",
        [await timed(lambda: send(http, "GET", SECRETS, params=selected)) for _ in range(20)],
    )


async def main(n: int, m: int) -> None:
    await bench_starts()
    async with serve_kube_emulator() as kube, aiohttp.ClientSession(kube.url) as http:
        await bench_requests(kube, http, n)
        await bench_watch_delivery(kube, http, n)
        await bench_list(kube, http, m)


if __name__ == "__main__":
    arguments = [int(a) for a in sys.argv[1:3]]
    iterations = arguments[0] if arguments else DEFAULT_ITERATIONS
    objects = arguments[1] if len(arguments) > 1 else DEFAULT_OBJECTS
    asyncio.run(main(iterations, objects))
