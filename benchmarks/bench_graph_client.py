"""What the msgraph SDK stack costs per call, against the in-process Graph emulator.

Measures, over N warm iterations each:
- `get_key_set` and `get_active_key` through MsGraphKeySetClient (SDK builders, kiota middleware,
  azure-identity token cache, model parsing, translation into RemoteKeySet/RemoteKey);
- the same two requests as raw httpx GETs with the same bearer token, JSON decoded;
and prints median, p90 and the difference (the client's overhead), plus the one-off model
warm-up. Usage: `.venv/bin/python benchmarks/bench_graph_client.py [N]` (default 300).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

# The emulator's CA must be trusted before aiohttp (azure-identity's transport) is imported:
# aiohttp builds its verified SSL context at import time.
from b2ckeys_emulators.graph.tls import ensure_ca

TENANT_ID = "bench.onmicrosoft.com"
CLIENT_ID = "00000000-0000-0000-0000-00000000b3c4"
CLIENT_SECRET = "bench-client-secret-value"  # noqa: S105 - an emulator-only credential
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
READ_WRITE_ROLE = "TrustFrameworkKeySet.ReadWrite.All"
# Enough iterations for a stable p90 on a shared 2-core machine in a few seconds.
DEFAULT_ITERATIONS = 300
# Untimed calls first, so connections, the token cache and code paths are warm.
WARM_CALLS = 20


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))
    return ordered[index]


async def timed(call: Callable[[], Awaitable[object]], iterations: int) -> list[float]:
    for _ in range(WARM_CALLS):
        await call()
    samples = []
    for _ in range(iterations):
        started = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - started) * 1000.0)
    return samples


def report(name: str, client_ms: list[float], raw_ms: list[float]) -> None:
    c50, c90 = statistics.median(client_ms), percentile(client_ms, 0.9)
    r50, r90 = statistics.median(raw_ms), percentile(raw_ms, 0.9)
    print(
        f"{name:<15} client median {c50:6.2f} ms  p90 {c90:6.2f} ms | "
        f"raw httpx median {r50:6.2f} ms  p90 {r90:6.2f} ms | "
        f"overhead median {c50 - r50:+6.2f} ms  p90 {c90 - r90:+6.2f} ms"
    )


async def measure(tls_dir: Path, iterations: int) -> None:
    import httpx
    from azure.identity.aio import ClientSecretCredential

    from b2ckeys.graph.client import GraphConnection
    from b2ckeys.graph.msgraph import MsGraphKeySetClient
    from b2ckeys.secret import SecretStr
    from b2ckeys_emulators.graph.server import EmulatedApp, EmulatorRules, serve_graph_emulator

    app = EmulatedApp(client_id=CLIENT_ID, secret=CLIENT_SECRET, roles=(READ_WRITE_ROLE,))
    async with serve_graph_emulator(
        host="127.0.0.1",
        port=0,
        tls_dir=tls_dir,
        tenant_id=TENANT_ID,
        apps=[app],
        rules=EmulatorRules(),
    ) as emu:
        conn = GraphConnection(
            tenant_id=TENANT_ID,
            client_id=CLIENT_ID,
            client_secret=SecretStr(CLIENT_SECRET),
            authority_host=emu.authority_host,
            base_url=emu.graph_base_url,
        )
        client = MsGraphKeySetClient.from_connection(conn)
        credential = ClientSecretCredential(
            TENANT_ID,
            CLIENT_ID,
            CLIENT_SECRET,
            authority=emu.authority_host,
            disable_instance_discovery=True,
        )
        try:
            key_set = await client.create_key_set("BenchSigning")
            await client.generate_key(key_set.id, kty="RSA", use="sig", nbf=None, exp=None)
            token = (await credential.get_token(GRAPH_SCOPE)).token
            base = emu.graph_base_url.rstrip("/")
            async with httpx.AsyncClient(
                headers={"Authorization": f"Bearer {token}"}, http2=False
            ) as raw:

                async def raw_get(path: str) -> object:
                    response = await raw.get(f"{base}/trustFramework/keySets/{key_set.id}{path}")
                    response.raise_for_status()
                    return response.json()

                results = {
                    "get_key_set": (
                        await timed(lambda: client.get_key_set(key_set.id), iterations),
                        await timed(lambda: raw_get(""), iterations),
                    ),
                    "get_active_key": (
                        await timed(lambda: client.get_active_key(key_set.id), iterations),
                        await timed(lambda: raw_get("/getActiveKey()"), iterations),
                    ),
                }
        finally:
            await credential.close()
            await client.aclose()
    print(f"{iterations} iterations each, after {WARM_CALLS} untimed calls; HTTPS over loopback")
    for name, (client_ms, raw_ms) in results.items():
        report(name, client_ms, raw_ms)


def main() -> None:
    iterations = int(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_ITERATIONS
    with tempfile.TemporaryDirectory(prefix="bench-graph-") as scratch:
        tls_dir = Path(scratch)
        os.environ["SSL_CERT_FILE"] = str(ensure_ca(tls_dir))
        started = time.perf_counter()
        from b2ckeys.graph.msgraph import warm_up_models

        import_s = time.perf_counter() - started
        warm_s = warm_up_models()
        again_s = warm_up_models()
        print(
            f"import b2ckeys.graph.msgraph {import_s:.2f} s; model warm-up first {warm_s:.2f} s, "
            f"second {again_s * 1000:.1f} ms"
        )
        asyncio.run(measure(tls_dir, iterations))


if __name__ == "__main__":
    main()
