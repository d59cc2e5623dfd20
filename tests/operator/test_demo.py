"""`make demo` is one of the two commands a newcomer runs: it must work and say what it did."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

DEMO_TIMEOUT_SECONDS = 180


def test_the_demo_runs_both_tenants_and_a_renewal_end_to_end() -> None:
    executable = Path(sys.executable).parent / "b2ckeys"
    done = subprocess.run(
        [str(executable), "demo"],
        capture_output=True,
        text=True,
        timeout=DEMO_TIMEOUT_SECONDS,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "all Ready" in out
    assert "cert-manager renewed token-signing: new x5t" in out
    rows = [line.split() for line in out.splitlines()]
    resources = {
        r[0]: r
        for r in rows
        if r and r[0] in {"token-signing", "facebook-secret", "generated-signing", "prod-signing"}
    }
    assert set(resources) == {
        "token-signing",
        "facebook-secret",
        "generated-signing",
        "prod-signing",
    }
    for name, row in resources.items():
        assert row[2:4] == ["True", "Synced"], (name, row)  # NAME TENANT READY REASON ...
    assert resources["prod-signing"][1] == "prod"
    held = [r for r in rows if r[:2] == ["prod", "B2C_1A_ProdTokenSigningKeyContainer"]]
    assert len(held) == 1
    assert "Ready=True Verified, permission read-write" in out
    assert "demo finished in" in out
