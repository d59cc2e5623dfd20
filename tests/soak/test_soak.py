"""The fault soak (benchmarks/soak.py) in its short form, and its duplicate detector.

The short run is the real thing: both emulators and the operator as processes, SIGKILLs, a
second operator, Graph and Kubernetes faults, every kind at least once. Its seed is fixed (set
B2CKEYS_SOAK_SEED to replay another) and printed; the run's own output is shown on failure.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "soak.py"
SEED = int(os.environ.get("B2CKEYS_SOAK_SEED", "20261128"))
FAULT_SECONDS = 60
# Faults, then convergence (bounded by the script at 60 s), start-up and teardown.
RUN_TIMEOUT = FAULT_SECONDS + 180


def _load_soak() -> ModuleType:
    spec = importlib.util.spec_from_file_location("soak", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["soak"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


soak = _load_soak()


def test_the_short_soak_finds_no_duplicate_and_converges() -> None:
    print(f"soak seed {SEED}")
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--seconds", str(FAULT_SECONDS), "--seed", str(SEED)],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert f"soak seed {SEED}" in output
    assert "violations: 0" in output, output
    injected = set(re.findall(r"^\s+\d+\s+(.+)$", output.split("faults injected")[1], re.M))
    expected = {f"graph {kind}" for kind in soak.GRAPH_FAULTS}
    expected |= {
        f"kube {status} {verb} {resource}/{sub}" if sub else f"kube {status} {verb} {resource}"
        for verb, resource, sub, status in soak.KUBE_FAULTS
    }
    expected |= {"operator SIGKILL+restart", "second operator running alongside"}
    assert expected <= injected, sorted(expected - injected)
    # The two timed kills land (or say they missed their moment, which the soak tolerates).
    assert any(k.startswith("operator SIGKILL with an upload held in Graph") for k in injected)
    assert any(k.startswith("operator SIGKILL after a committed") for k in injected)
    converged = re.search(r"convergence after the faults stopped: ([0-9.]+) s", output)
    assert converged, output
    print(output)
    print(f"short soak took {time.monotonic() - started:.0f}s")


# --- the detector, on B2C states made up for it -----------------------------------------------


def _source(kind: str, versions: list[str], **extra: Any) -> Any:
    return soak.Source(name="s-one", kind=kind, versions=versions, **extra)


def _held(source: Any, keys: list[dict[str, Any]]) -> dict[str, Any]:
    return {source.key_set_id: {"id": source.key_set_id, "keys": keys}}


def test_a_certificate_uploaded_twice_is_a_violation() -> None:
    source = _source("tlsSecret", ["x5t-1", "x5t-2"])
    held = _held(source, [{"kid": "a", "x5t": "x5t-1"}, {"kid": "b", "x5t": "x5t-1"}])
    assert soak.violations([source], held, {}, time.time()) == [
        "B2C_1A_SoakSone: the same tlsSecret version (x5t-1) is in B2C 2 times"
    ]


def test_a_key_no_source_version_accounts_for_is_a_violation() -> None:
    source = _source("certificate", ["x5t-1"])
    held = {
        **_held(source, [{"kid": "a", "x5t": "x5t-1"}, {"kid": "b", "x5t": "x5t-9"}]),
        "B2C_1A_Other": {"id": "B2C_1A_Other", "keys": []},
    }
    assert soak.violations([source], held, {}, time.time()) == [
        "B2C holds a key set nobody asked for: B2C_1A_Other",
        "B2C_1A_SoakSone: a key (x5t-9) no source version accounts for",
    ]


def test_a_secret_value_uploaded_twice_is_told_apart_by_its_digest() -> None:
    source = _source("secret", ["digest-1", "digest-2"])
    held = _held(source, [{"kid": "a"}, {"kid": "b"}, {"kid": "c"}])
    digests = {source.key_set_id: {"a": "digest-1", "b": "digest-2", "c": "digest-2"}}
    assert soak.violations([source], held, digests, time.time()) == [
        "B2C_1A_SoakSone: the same secret version (digest-2) is in B2C 2 times"
    ]
    digests[source.key_set_id]["c"] = "digest-1x"
    assert soak.violations([source], held, digests, time.time()) == [
        "B2C_1A_SoakSone: a key (digest-1x) no source version accounts for"
    ]


@pytest.mark.parametrize(
    ("gaps", "expected"),
    [
        ([20, 20], []),
        ([20, 19], ["two generated keys 19s apart, inside one rotation period (20s)"]),
    ],
)
def test_generated_keys_are_accounted_for_by_rotation_periods(
    gaps: list[int], expected: list[str]
) -> None:
    now = time.time()
    source = _source("generate", [], kty="oct", created_at=now - 100)
    dates = [int(now - 90)]
    for gap in gaps:
        dates.append(dates[-1] + gap)
    held = _held(source, [{"kid": str(d), "kty": "oct", "nbf": d} for d in dates])
    found = soak.violations([source], held, {}, now)
    assert found == [f"B2C_1A_SoakSone: {line}" for line in expected]
    many = _held(
        source, [{"kid": str(i), "kty": "oct", "nbf": int(now) + 20 * i} for i in range(7)]
    )
    assert "B2C_1A_SoakSone: 7 generated keys for 6 rotation periods" in soak.violations(
        [source], many, {}, now
    )
