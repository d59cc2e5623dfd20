"""The README's Argo CD command, run as written against a real kube-apiserver: the health checks
and actions land in argocd-cm under the keys Argo CD reads."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from apiserver import ROOT, KubeCluster
from kubectl_cli import kubectl
from kubernetes import client as k8s

pytestmark = pytest.mark.cluster


def readme_argocd_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"^## Argo CD\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert match, "README.md has no '## Argo CD' section"
    return [
        line.strip()
        for block in re.findall(r"^```sh\n(.*?)^```", match.group(1), re.S | re.M)
        for line in block.splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]


def test_the_readme_command_puts_every_script_into_argocd_cm(
    kube_cluster: KubeCluster, tmp_path: Path
) -> None:
    kube_cluster.create_namespace("argocd")
    kube_cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "argocd-cm"},
            "data": {"url": "https://argocd.example"},
        },
        namespace="argocd",
    )
    (command,) = readme_argocd_commands()
    words = command.split()
    assert words[0] == "kubectl"
    # Paths in the README are relative to the repository root.
    args = [str(ROOT / w) if (ROOT / w).is_file() else w for w in words[1:]]
    done = kubectl(kube_cluster, tmp_path, *args)
    assert done.returncode == 0, done.stderr

    stored = k8s.CoreV1Api(kube_cluster.admin).read_namespaced_config_map("argocd-cm", "argocd")
    wanted = yaml.safe_load((ROOT / "deploy" / "argocd" / "argocd-cm.yaml").read_text())["data"]
    assert stored.data["url"] == "https://argocd.example", "a patch, not a replace"
    for key, value in wanted.items():
        assert stored.data[key] == value, key
    health = {k for k in stored.data if k.startswith("resource.customizations.health.")}
    assert health == {
        f"resource.customizations.health.b2ckeys.dev_{kind}"
        for kind in ("TrustFrameworkKeySet", "B2CTenant", "ClusterB2CTenant")
    }
