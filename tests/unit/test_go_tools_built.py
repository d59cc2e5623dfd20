"""The tools scripts/go-tools built (`make test` builds them first): each is the pinned release,
and cert-manager's CRDs lie beside its controller as plain YAML from the same module version."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from go_tools import cert_manager_crds_dir, tool_binary

VERSION_PROBE_TIMEOUT_SECONDS = 30


def _run(binary: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(binary), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=VERSION_PROBE_TIMEOUT_SECONDS,
    )


@pytest.mark.parametrize(
    ("tool", "args", "expected"),
    [
        ("helm", ["version"], 'Version:"v3.22.0"'),
        ("promtool", ["--version"], "version 3.16.0"),
        ("argocd-lua", ["--version"], "argocd-lua v1.1.2-"),
        ("cert-manager-controller", ["--version"], "(cert-manager v1.21.2)"),
    ],
)
def test_each_tool_reports_its_pinned_release(tool: str, args: list[str], expected: str) -> None:
    probe = _run(tool_binary(tool), *args)
    assert probe.returncode == 0, probe.stderr
    assert expected in probe.stdout + probe.stderr


def test_helm_assumes_the_kubernetes_release_of_its_client(tmp_path: Path) -> None:
    # Stamped as helm's Makefile does (from the client-go it resolved, v0.37 for v3.22.0);
    # unstamped, `helm template` and `helm lint` would assume Kubernetes 1.20.
    chart = tmp_path / "kube-version"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: kube-version\nversion: 0.1.0\n")
    (chart / "templates" / "configmap.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: kube-version\n"
        "data:\n  kubeVersion: {{ .Capabilities.KubeVersion.Version | quote }}\n"
    )
    rendered = _run(tool_binary("helm"), "template", "kube-version", str(chart))
    assert rendered.returncode == 0, rendered.stderr
    assert yaml.safe_load(rendered.stdout)["data"] == {"kubeVersion": "v1.37.0"}


def test_cert_manager_controller_needs_a_kubeconfig() -> None:
    refused = _run(tool_binary("cert-manager-controller"))
    assert refused.returncode == 2
    assert "--kubeconfig is required" in refused.stderr


def test_cert_manager_crds_are_plain_yaml_of_the_cert_manager_groups() -> None:
    files = sorted(cert_manager_crds_dir().glob("*.yaml"))
    names = []
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert "{{" not in text, path
        (crd,) = [d for d in yaml.safe_load_all(text) if d]
        assert crd["kind"] == "CustomResourceDefinition"
        assert crd["spec"]["group"] in {"cert-manager.io", "acme.cert-manager.io"}
        names.append(crd["metadata"]["name"])
    assert {
        "certificates.cert-manager.io",
        "certificaterequests.cert-manager.io",
        "issuers.cert-manager.io",
        "clusterissuers.cert-manager.io",
    } <= set(names)
