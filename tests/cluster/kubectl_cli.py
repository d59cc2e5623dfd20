"""The kubectl built from the cluster's own release (scripts/kube-binaries), never one on PATH."""

from __future__ import annotations

import subprocess
from pathlib import Path

from apiserver import KubeCluster

# Bounds a hung kubectl process only; a `kubectl wait` carries its own --timeout.
KUBECTL_PROCESS_TIMEOUT_SECONDS = 120


def kubectl(
    cluster: KubeCluster, workdir: Path, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run kubectl as admin, with its discovery cache and home in `workdir`."""
    binary = cluster.bin_dir / "kubectl"
    if not binary.exists():
        raise FileNotFoundError(f"{binary} is missing; run `scripts/kube-binaries`")
    return subprocess.run(
        [
            str(binary),
            f"--kubeconfig={cluster.admin_kubeconfig}",
            f"--cache-dir={workdir / 'kubectl-cache'}",
            *args,
        ],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=KUBECTL_PROCESS_TIMEOUT_SECONDS,
        check=False,
        env={"HOME": str(workdir), "PATH": "/usr/bin:/bin"},
    )
