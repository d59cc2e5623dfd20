"""The Go tools that `scripts/go-tools` builds into the per-user cache, for tests.

helm, promtool, argocd-lua (our harness around Argo CD's Lua VM) and cert-manager-controller
(our main around cert-manager's controllers, with cert-manager's CRDs beside it). `make test`
builds them before pytest runs; a test never starts a build (a cold one takes minutes), it fails
and says how to build instead.

    from go_tools import tool_binary

`argocd_health(obj)` gives the Argo CD health of an object the operator wrote (deploy/argocd's
health.lua for its kind, run by Argo CD's Lua VM).
"""

from __future__ import annotations

import functools
import json
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
GO_TOOLS_SCRIPT = ROOT / "scripts" / "go-tools"
ARGOCD_CUSTOMISATION = ROOT / "deploy" / "argocd"
# Argo CD stops a script after 1 second; this only bounds a hung harness.
ARGOCD_LUA_TIMEOUT_SECONDS = 30


@functools.cache
def _bin_dir(name: str) -> Path | None:
    # The script probes the binary's version; once per session and tool is enough.
    found = subprocess.run(
        [str(GO_TOOLS_SCRIPT), "--print-dir", "--no-build", name],
        capture_output=True,
        text=True,
        check=False,
    )
    if found.returncode != 0:
        return None
    return Path(found.stdout.strip())


def tool_binary(name: str) -> Path:
    """The pinned build of `name` (helm, promtool, argocd-lua, cert-manager-controller)."""
    directory = _bin_dir(name)
    if directory is None:
        pytest.fail(
            f"{name} is not built: run `make test` (or scripts/go-tools {name}) to build it",
            pytrace=False,
        )
    return directory / name


def cert_manager_crds_dir() -> Path:
    """cert-manager's CRDs (plain YAML) from the same module version as cert-manager-controller."""
    return tool_binary("cert-manager-controller").parent.parent / "crds"


def argocd_health(obj: Mapping[str, Any]) -> dict[str, str]:
    """{"status": ..., "message": ...} as Argo CD would show for `obj` (a whole object, as read
    from the API server), from deploy/argocd/<group>/<Kind>/health.lua."""
    group = str(obj["apiVersion"]).rpartition("/")[0]
    script = ARGOCD_CUSTOMISATION / group / str(obj["kind"]) / "health.lua"
    result = subprocess.run(
        [str(tool_binary("argocd-lua")), "health", str(script)],
        input=json.dumps(obj),
        capture_output=True,
        text=True,
        check=False,
        timeout=ARGOCD_LUA_TIMEOUT_SECONDS,
    )
    if result.returncode != 0:
        pytest.fail(f"argocd-lua health {script}: {result.stderr.strip()}", pytrace=False)
    health: dict[str, str] = json.loads(result.stdout)
    return health
