"""helm and kubectl against a test cluster, and the README's install commands as data.

helm is the one scripts/go-tools builds, kubectl the one scripts/kube-binaries builds (the
cluster's own release); both get a private home so no user configuration leaks in.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

from apiserver import ROOT, KubeCluster
from stand_in_crds import permissive_crd

from helm_chart import helm_binary, run, tool_env

README = ROOT / "README.md"  # its "Install with Helm" and "Install with kustomize" sections
CRD_DIR = ROOT / "crds"

# The prometheus-operator's kinds the chart can render. The tier has no prometheus-operator;
# permissive stand-ins make the kinds served, so a dry-run checks that the objects reach the
# server as objects of a served kind with valid metadata (not the operator's own schema).
MONITORING_CRDS = [
    permissive_crd(
        "monitoring.coreos.com", "v1", "ServiceMonitor", "servicemonitors", namespaced=True
    ),
    permissive_crd(
        "monitoring.coreos.com", "v1", "PrometheusRule", "prometheusrules", namespaced=True
    ),
]


def tenant_stand_in_crds() -> list[dict[str, object]]:
    """A permissive ClusterB2CTenant CRD, only while crds/ has none of its own: once the tenant
    CRD lands in crds/, the chart renders (and the dry-run installs) the real one instead."""
    if any("kind: ClusterB2CTenant" in p.read_text(encoding="utf-8") for p in CRD_DIR.glob("*")):
        return []
    return [
        permissive_crd(
            "b2ckeys.dev", "v1alpha1", "ClusterB2CTenant", "clusterb2ctenants", namespaced=False
        )
    ]


@dataclass
class ClusterTools:
    """helm and kubectl as the cluster's admin, from the repository root (as the README's
    relative paths expect)."""

    cluster: KubeCluster
    home: Path

    def helm(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self._run([str(helm_binary()), *args])

    def kubectl(self, *args: str) -> subprocess.CompletedProcess[str]:
        binary = self.cluster.bin_dir / "kubectl"
        return self._run([str(binary), f"--cache-dir={self.home / 'kubectl-cache'}", *args])

    def command(self, line: str) -> subprocess.CompletedProcess[str]:
        """One README command line, run with the built helm or kubectl (no shell)."""
        program, *args = shlex.split(line)
        if program == "helm":
            return self.helm(*args)
        if program == "kubectl":
            return self.kubectl(*args)
        raise ValueError(f"the README may show helm and kubectl commands only: {line!r}")

    def _run(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        env = tool_env(self.home, kubeconfig=self.cluster.admin_kubeconfig)
        return subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env=env,
            cwd=ROOT,
        )


def readme_commands(section: str) -> list[str]:
    """The commands in the ```sh blocks of one `## ` section of the chart's README, with line
    continuations joined and comments dropped."""
    text = README.read_text(encoding="utf-8")
    match = re.search(rf"^## {re.escape(section)}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert match, f"{README.relative_to(ROOT)} has no '## {section}' section"
    commands: list[str] = []
    for block in re.findall(r"^```sh\n(.*?)^```", match.group(1), re.S | re.M):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                commands.append(" ".join(line.split()))
    return commands


__all__ = ["ClusterTools", "run"]
