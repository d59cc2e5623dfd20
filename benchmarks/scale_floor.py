"""The floor of a renewal: what it costs with no operator at all.

A script makes, back to back, the calls a cert-manager renewal needs, through the operator's
own clients (b2ckeys.kube.api.KubeApi and b2ckeys.graph.msgraph.MsGraphKeySetClient) against
the same API server and Graph emulator: patch the Secret (the renewal itself, as the operator
measurement starts there too), read it, parse it, read the key set, upload the PFX, read the
key set back, patch the key set's status. Whatever the operator adds on top of this is its
own cost: watch delivery, queueing, its decisions and bookkeeping writes.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import ssl
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from b2ckeys import keymaterial
from b2ckeys.graph.client import GraphConnection
from b2ckeys.graph.msgraph import MsGraphKeySetClient
from b2ckeys.kube.api import KubeApi
from b2ckeys.model import ObjectKey
from b2ckeys.secret import SecretStr
from b2ckeys_emulators.devpki import DevCA, Issued, rsa_key

STEPS = ("patch Secret", "read Secret", "parse", "GET key set", "upload", "read back", "status")


@dataclass
class FloorTimes:
    totals: list[float] = field(default_factory=list)
    steps: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STEPS})


async def _floor(
    kubeconfig: Path,
    conn: GraphConnection,
    namespace: str,
    name: str,
    key_set_id: str,
    leaves: Sequence[Issued],
    patch_secret: Callable[[Issued], None],
) -> FloorTimes:
    kube = KubeApi.connect(str(kubeconfig))
    graph = MsGraphKeySetClient.from_connection(conn)
    times = FloorTimes()
    try:
        for index, leaf in enumerate(leaves):
            marks = [time.perf_counter()]
            # Synchronous, as the bench's own renewal PATCH is: a client outside the operator.
            patch_secret(leaf)
            marks.append(time.perf_counter())
            source = await kube.read_source("Secret", namespace, name)
            assert source is not None, f"Secret {namespace}/{name} is gone"
            marks.append(time.perf_counter())

            def parse(data: dict[str, bytes]) -> keymaterial.Pkcs12Upload:
                now = int(time.time())
                material = keymaterial.load_tls_secret(data, use="sig", now=now)
                return keymaterial.to_pkcs12(material)

            # Off the event loop, as the operator parses (RSA checks hold the GIL, but not the
            # loop's other coroutines' turn).
            bundle = await asyncio.to_thread(parse, source.revealed())
            marks.append(time.perf_counter())
            await graph.get_key_set(key_set_id)
            marks.append(time.perf_counter())
            key = await graph.upload_pkcs12(
                key_set_id, pfx_b64=bundle.pfx_b64, password=bundle.password
            )
            marks.append(time.perf_counter())
            await graph.get_key_set(key_set_id)
            marks.append(time.perf_counter())
            status = {"syncedKey": {"kid": key.kid, "x5t": key.x5t, "kty": "RSA", "use": "sig"}}
            await kube.patch_status(ObjectKey(namespace, name), status)
            marks.append(time.perf_counter())
            if index == 0:
                continue  # warm-up: token, connections, the SDK's model classes
            times.totals.append(marks[-1] - marks[0])
            for step, start, end in zip(STEPS, marks[:-1], marks[1:], strict=True):
                times.steps[step].append(end - start)
    finally:
        await graph.aclose()
        kube.close()
    return times


def main() -> int:
    """Run as a process of its own (no bench threads beside it; the CA file set in the
    environment before any TLS client library is imported). JSON in on stdin, JSON out."""
    spec = json.load(sys.stdin)
    context = ssl.create_default_context(cafile=spec["kube_ca"])
    context.load_cert_chain(spec["admin_cert"], spec["admin_key"])
    admin = httpx.Client(base_url=spec["server"], verify=context, timeout=30)
    namespace, name = spec["namespace"], spec["name"]

    def patch_secret(leaf: Issued) -> None:
        data = {k: base64.b64encode(v).decode() for k, v in ca.tls_secret_data(leaf).items()}
        response = admin.patch(
            f"/api/v1/namespaces/{namespace}/secrets/{name}",
            json={"data": data},
            headers={"Content-Type": "application/merge-patch+json"},
        )
        response.raise_for_status()

    ca = DevCA.create("b2ckeys floor CA", slot=103)
    leaves = [ca.issue(f"floor {i}", key=rsa_key(2048, 320 + i % 6)) for i in range(spec["count"])]
    conn = GraphConnection(
        tenant_id=spec["tenant_id"],
        client_id=spec["client_id"],
        client_secret=SecretStr(os.environ["FLOOR_CLIENT_SECRET"]),
        authority_host=spec["graph_url"],
        base_url=spec["graph_url"] + "/beta",
    )
    try:
        times = asyncio.run(
            _floor(
                Path(spec["kubeconfig"]),
                conn,
                namespace,
                name,
                spec["key_set_id"],
                leaves,
                patch_secret,
            )
        )
    finally:
        admin.close()
    json.dump({"totals": times.totals, "steps": times.steps}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
