"""Running `kubectl b2ckeys` the ways a person does: the `b2ckeys` entry point, and the
`kubectl-b2ckeys` entry point found on PATH by the kubectl built from the cluster's release.

Each run gets its own HOME and an environment without the test process's AZURE_*, B2CKEYS_* and
KUBECONFIG, so only what a test passes (a kubeconfig, Graph credentials) reaches the command.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from apiserver import ROOT, KubeCluster
from kubernetes import client as k8s

# Bounds a hung process only; `sync --wait` carries its own --timeout.
PLUGIN_PROCESS_TIMEOUT_SECONDS = 120
DOCS = ROOT / "README.md"  # its "kubectl b2ckeys" section
# Where the venv installs the console scripts: `b2ckeys` and its kubectl name.
VENV_BIN = Path(sys.executable).parent


def entry_point(name: str) -> Path:
    binary = VENV_BIN / name
    if not binary.exists():
        raise FileNotFoundError(
            f"{binary} is missing: install the project again (`make .venv/.installed`, or "
            "`pip install -e .`), which installs every [project.scripts] entry point"
        )
    return binary


def clean_env(home: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AZURE_", "B2CKEYS_", "KUBERNETES_")) and k != "KUBECONFIG"
    }
    return {**base, "HOME": str(home), **(extra or {})}


def b2ckeys(
    home: Path, *args: str, kubeconfig: Path, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`b2ckeys ARGS --kubeconfig KUBECONFIG` as a separate process."""
    return subprocess.run(
        [str(entry_point("b2ckeys")), *args, f"--kubeconfig={kubeconfig}"],
        capture_output=True,
        text=True,
        timeout=PLUGIN_PROCESS_TIMEOUT_SECONDS,
        check=False,
        env=clean_env(home, env),
    )


def kubectl_with_plugin(
    cluster: KubeCluster,
    home: Path,
    *args: str,
    kubeconfig: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """The built kubectl with the venv's bin directory on PATH, where it finds kubectl-b2ckeys.

    The kubeconfig goes through $KUBECONFIG, which kubectl hands its plugins: kubectl's own
    flags before a plugin's name stop it looking for plugins at all."""
    entry_point("kubectl-b2ckeys")
    binary = cluster.bin_dir / "kubectl"
    if not binary.exists():
        raise FileNotFoundError(f"{binary} is missing; run `scripts/kube-binaries`")
    return subprocess.run(
        [str(binary), *args],
        capture_output=True,
        text=True,
        timeout=PLUGIN_PROCESS_TIMEOUT_SECONDS,
        check=False,
        env=clean_env(
            home,
            {
                "PATH": f"{VENV_BIN}{os.pathsep}/usr/bin{os.pathsep}/bin",
                "KUBECONFIG": str(kubeconfig or cluster.admin_kubeconfig),
                **(env or {}),
            },
        ),
    )


def namespace_reader_kubeconfig(cluster: KubeCluster, namespace: str, name: str) -> Path:
    """A kubeconfig for a ServiceAccount that may read key sets and their sources in
    `namespace` only (a Role, not a ClusterRole): a team member's view of the cluster."""
    rules = [
        {
            "apiGroups": ["b2ckeys.dev"],
            "resources": ["trustframeworkkeysets"],
            "verbs": ["get", "list", "watch"],
        },
        {"apiGroups": [""], "resources": ["secrets", "configmaps"], "verbs": ["get"]},
    ]
    cluster.apply(
        [
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}},
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": {"name": name},
                "rules": rules,
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": name},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Role",
                    "name": name,
                },
                "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
            },
        ],
        namespace=namespace,
    )
    return cluster.create_service_account_kubeconfig(namespace, name)


def may_list_keysets(cluster: KubeCluster, kubeconfig: Path, namespace: str) -> bool:
    """Whether RBAC already lets this kubeconfig list key sets in `namespace` (bindings reach
    the authorizer a moment after they are written)."""
    review = k8s.AuthorizationV1Api(
        cluster.api_client(kubeconfig)
    ).create_self_subject_access_review(
        k8s.V1SelfSubjectAccessReview(
            spec=k8s.V1SelfSubjectAccessReviewSpec(
                resource_attributes=k8s.V1ResourceAttributes(
                    group="b2ckeys.dev",
                    resource="trustframeworkkeysets",
                    verb="list",
                    namespace=namespace,
                )
            )
        )
    )
    return bool(review.status and review.status.allowed)


@dataclass(frozen=True)
class DocumentedCommand:
    """A `$ kubectl b2ckeys ...` line of the docs, and the output lines shown under it."""

    line: str
    output: tuple[str, ...]

    def args(self, namespace: str) -> list[str]:
        """Its arguments after `kubectl`, with the docs' namespace replaced by `namespace`."""
        words = shlex.split(self.line.removeprefix("$ kubectl "))
        return [namespace if word == DOCS_NAMESPACE else word for word in words]


DOCS_NAMESPACE = "identity"


def documented_commands() -> list[DocumentedCommand]:
    """Every command the docs show, in order, from their ```console blocks."""
    commands: list[DocumentedCommand] = []
    in_console = False
    text = DOCS.read_text(encoding="utf-8")
    section = text[text.index("## kubectl b2ckeys\n") :]
    section = section[: section.find("\n## ", 1) if "\n## " in section[1:] else None]
    for line in section.splitlines():
        if line.startswith("```"):
            in_console = line == "```console"
            continue
        if not in_console:
            continue
        if line.startswith("$ "):
            assert line.startswith("$ kubectl b2ckeys "), f"{DOCS.name}: {line}"
            commands.append(DocumentedCommand(line, ()))
        elif commands:
            last = commands[-1]
            commands[-1] = DocumentedCommand(last.line, (*last.output, line))
    return commands
