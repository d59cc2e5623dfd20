"""Render deploy/helm/b2ckeys with the real helm and deploy/ kustomizations with the real kubectl,
and reduce RBAC objects to comparable rule sets. Shared by tests/unit and tests/cluster.

helm comes from scripts/go-tools (through go_tools.tool_binary), kubectl from
scripts/kube-binaries (the cluster tier's release): never a binary found on PATH.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from go_tools import tool_binary

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "deploy" / "helm" / "b2ckeys"
SCENARIOS = sorted((CHART / "ci").glob("*-values.yaml"))
KUBE_BINARIES_SCRIPT = ROOT / "scripts" / "kube-binaries"
RELEASE = "b2ckeys"
NAMESPACE = "b2ckeys-system"
# Bounds a hung helm or kubectl only; a render takes well under a second.
PROCESS_TIMEOUT_SECONDS = 120

Obj = dict[str, Any]


def helm_binary() -> Path:
    return tool_binary("helm")


def kubectl_binary() -> Path:
    """The kubectl scripts/kube-binaries built (it has kustomize built in)."""
    probe = subprocess.run(
        [str(KUBE_BINARIES_SCRIPT), "--print-dir", "--no-build"],
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0:
        pytest.fail(
            "kubectl is not built: run `make test` (or scripts/kube-binaries) to build it. "
            f"scripts/kube-binaries said: {probe.stderr.strip()}",
            pytrace=False,
        )
    return Path(probe.stdout.strip()) / "kubectl"


def tool_env(home: Path, kubeconfig: Path | None = None) -> dict[str, str]:
    """A clean environment: helm's cache, config and data, and kubectl's home, under `home`,
    so no user configuration (repositories, plugins, contexts) leaks into a test."""
    home.mkdir(parents=True, exist_ok=True)
    env = {
        "HOME": str(home),
        "PATH": "/usr/bin:/bin",
        "HELM_CACHE_HOME": str(home / "helm-cache"),
        "HELM_CONFIG_HOME": str(home / "helm-config"),
        "HELM_DATA_HOME": str(home / "helm-data"),
        # No kubeconfig means no cluster: `helm template` and `helm lint` need none.
        "KUBECONFIG": str(kubeconfig) if kubeconfig else os.devnull,
    }
    return env


def run(
    argv: Sequence[str | Path], env: Mapping[str, str], *, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in argv],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=PROCESS_TIMEOUT_SECONDS,
        check=False,
        env=dict(env),
    )


def value_args(
    values_files: Iterable[Path] = (), set_values: Mapping[str, str] | None = None
) -> list[str]:
    args: list[str] = []
    for path in values_files:
        args += ["--values", str(path)]
    for key, value in (set_values or {}).items():
        args += ["--set", f"{key}={value}"]
    return args


def helm_template(
    home: Path,
    values_files: Iterable[Path] = (),
    set_values: Mapping[str, str] | None = None,
    *,
    release: str = RELEASE,
    namespace: str = NAMESPACE,
) -> subprocess.CompletedProcess[str]:
    """`helm template` of the chart, as a user would run it (no cluster)."""
    return run(
        [
            helm_binary(),
            "template",
            release,
            CHART,
            "--namespace",
            namespace,
            *value_args(values_files, set_values),
        ],
        tool_env(home),
    )


def render(
    home: Path,
    values_files: Iterable[Path] = (),
    set_values: Mapping[str, str] | None = None,
    *,
    release: str = RELEASE,
    namespace: str = NAMESPACE,
) -> list[Obj]:
    """The objects `helm template` renders; the test fails with helm's stderr if it refuses."""
    result = helm_template(home, values_files, set_values, release=release, namespace=namespace)
    if result.returncode != 0:
        pytest.fail(f"helm template failed:\n{result.stderr}", pytrace=False)
    return documents(result.stdout)


def kustomize(home: Path, directory: Path) -> list[Obj]:
    """`kubectl kustomize DIR`: what `kubectl apply -k DIR` would send."""
    result = run([kubectl_binary(), "kustomize", directory], tool_env(home))
    if result.returncode != 0:
        pytest.fail(f"kubectl kustomize {directory} failed:\n{result.stderr}", pytrace=False)
    return documents(result.stdout)


def documents(text: str) -> list[Obj]:
    return [d for d in yaml.safe_load_all(text) if d]


def only(objects: Iterable[Obj], kind: str) -> Obj:
    found = [o for o in objects if o["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def kinds(objects: Iterable[Obj]) -> list[str]:
    return sorted(o["kind"] for o in objects)


# --- RBAC as comparable facts ---------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Grant:
    """One permission the operator's ServiceAccount holds: `scope` is "cluster" for a
    ClusterRole bound cluster-wide, else the namespace a Role is bound in."""

    scope: str
    api_group: str
    resource: str
    resource_name: str  # "*" when the rule names none
    verb: str

    def __str__(self) -> str:
        name = "" if self.resource_name == "*" else f"/{self.resource_name}"
        group = self.api_group or "core"
        return f"{self.scope}: {self.verb} {group} {self.resource}{name}"


def operator_grants(objects: Sequence[Obj], service_account: str, namespace: str) -> set[Grant]:
    """Every permission the rendered RBAC gives ServiceAccount namespace/service_account.

    Only roles bound to that account count, so names (which differ between the chart and
    deploy/base) do not matter, and neither does how rules are grouped or ordered.
    """
    roles = {
        (o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]): o
        for o in objects
        if o["kind"] in {"ClusterRole", "Role"}
    }
    grants: set[Grant] = set()
    subject = {"kind": "ServiceAccount", "name": service_account, "namespace": namespace}
    for binding in objects:
        if binding["kind"] not in {"ClusterRoleBinding", "RoleBinding"}:
            continue
        if subject not in binding.get("subjects", []):
            continue
        binding_namespace = binding["metadata"].get("namespace")
        ref = binding["roleRef"]
        role_namespace = binding_namespace if ref["kind"] == "Role" else None
        role = roles.get((ref["kind"], role_namespace, ref["name"]))
        assert role is not None, (
            f"{binding['kind']} {binding['metadata']['name']} refers to a role not rendered: {ref}"
        )
        scope = "cluster" if binding["kind"] == "ClusterRoleBinding" else binding_namespace
        for rule in role.get("rules", []):
            for group in rule.get("apiGroups", []):
                for resource in rule.get("resources", []):
                    for name in rule.get("resourceNames") or ["*"]:
                        for verb in rule["verbs"]:
                            grants.add(Grant(scope, group, resource, name, verb))
    return grants
