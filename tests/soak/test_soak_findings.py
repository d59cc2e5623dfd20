"""What the fault soak found, each reduced to a deterministic reproduction on the same processes.

Found by `benchmarks/soak.py --minutes 20 --seed 7`: one secret value twice in
B2C_1A_SoakSecreta (both keys with the same nbf) and two certificates twice in B2C_1A_SoakTlsa.
Each time the operator had been SIGKILLed with the upload held in Graph; its successor read the
key set before the held upload committed, found nothing (a secret: no key with the pending
dates; a certificate: no key with its x5t), and uploaded again; that upload reached Graph after
the first had committed. The reproduction holds the first upload in Graph (latency fault) and
the successor's intent write in the API (kube-emulator latency fault) for HOLD seconds, which
makes that order certain.

Fixed: a pending write of the same material younger than B2CKEYS_WRITE_SETTLE_TIME (Graph's
answer time plus the re-read delay) is waited for, not repeated (plan.decide).
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_soak import soak

from b2ckeys_emulators.devpki import DevCA, rsa_key
from b2ckeys_emulators.processes import b2ckeys_executable

NAMESPACE = soak.NAMESPACE
KEY_SET_ID = "B2C_1A_Repro"
# The held upload commits this long after it reached Graph; the restarted operator reads B2C
# well before that (a start takes a few seconds) and its next status write is held as long,
# so its retry reaches Graph after the commit.
HOLD = 10.0
WAIT = 90.0


def _wait(what: str, probe: Callable[[], Any]) -> Any:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.parametrize("kind", ["secret", "tlsSecret"])
def test_a_restart_never_duplicates_an_upload_its_predecessor_left_in_flight(
    tmp_path: Path, kind: str
) -> None:
    ca = DevCA.create("b2ckeys repro CA")
    leaf = ca.issue("repro", key=rsa_key(2048, 1))
    value = b"repro-client-secret-value"
    if kind == "secret":
        data = {"value": value}
        source = {"secret": {"name": "src", "key": "value"}}
        action = "uploadSecret"
    else:
        data = ca.tls_secret_data(leaf)
        source = {"tlsSecret": {"name": "src"}}
        action = "uploadPkcs12"
    with soak.stack(tmp_path, b2ckeys_executable()) as running:
        kube, graph, operators = running.kube, running.graph, running.operators
        kube.send(
            "POST",
            "/api/v1/namespaces",
            json={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        )
        kube.send(
            "POST",
            f"/api/v1/namespaces/{NAMESPACE}/secrets",
            json={
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "src", "labels": soak.WATCH_LABEL},
                "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
            },
        )
        graph.add_fault({"path": f"{KEY_SET_ID}/{action}$", "latency": HOLD, "times": 1})
        operators.start_primary()
        kube.send(
            "POST",
            soak.KEYSETS,
            json={
                "apiVersion": soak.GROUP_VERSION,
                "kind": "TrustFrameworkKeySet",
                "metadata": {"name": "ks"},
                "spec": {"keySetId": "Repro", "source": source},
            },
        )
        _wait("the upload to be held in Graph", lambda: graph.writes_in_flight().get(KEY_SET_ID))
        kube.send(
            "POST",
            "/_emulator/faults",
            json={
                "verb": "patch",
                "resource": "trustframeworkkeysets",
                "subresource": "status",
                "latency": HOLD,
            },
        )
        operators.kill_primary()  # SIGKILL, and its successor starts at once

        def settled() -> bool:
            status = (kube.keysets().get("ks") or {}).get("status") or {}
            ready = next((c for c in status.get("conditions") or [] if c["type"] == "Ready"), {})
            return ready.get("reason") == "Synced" and not graph.writes_in_flight()

        _wait("the key set to settle", settled)
        if kind == "secret":
            held = list(graph.digests()[KEY_SET_ID].values())
            assert held == [soak.hmac.new(running.digest_key, value, "sha256").hexdigest()], (
                f"{len(held)} keys in B2C for one secret value"
            )
        else:
            held = [k["x5t"] for k in graph.key_sets()[KEY_SET_ID]["keys"]]
            assert held == [soak.x5t_of(leaf)], f"{len(held)} keys in B2C for one certificate"
