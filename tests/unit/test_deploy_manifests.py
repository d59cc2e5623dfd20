"""deploy/base, structurally: kinds, the restricted pod security context, the probe against the
image's liveness URL, the ServiceAccount against rbac.yaml, the tenant ConfigMap, the tuning notes.

Plain pyyaml over the files kustomize would read; no kubectl or API server here. (The cluster
tier applies manifests to a real kube-apiserver, where Pod Security admission judges them.)
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from b2ckeys.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "deploy" / "base"
NAMESPACE = "b2ckeys-system"
RUNTIME_UID = 65532
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
# benchmarks/bench_scale.py: the operator's peak RSS (VmHWM) over 1,002 key sets on the real
# API server (MiB). The memory request must cover it; the limit must leave headroom above it.
MEASURED_RSS_MIB = 228
# Volume types the restricted Pod Security Standard allows.
RESTRICTED_VOLUME_TYPES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}

Obj = dict[str, Any]


def documents(path: Path) -> list[Obj]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


KUSTOMIZATION: Obj = documents(BASE / "kustomization.yaml")[0]
RESOURCES: dict[str, list[Obj]] = {
    name: documents(BASE / name) for name in KUSTOMIZATION.get("resources", [])
}
ALL: list[Obj] = [doc for docs in RESOURCES.values() for doc in docs]


def one(kind: str) -> Obj:
    found = [d for d in ALL if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


DEPLOYMENT = one("Deployment")
POD: Obj = DEPLOYMENT["spec"]["template"]["spec"]


def containers() -> Iterator[Obj]:
    yield from POD.get("initContainers") or []
    yield from POD["containers"]


(OPERATOR,) = POD["containers"]


def quantity(text: str | int) -> float:
    """A Kubernetes quantity in base units (bytes, cores)."""
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9}
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([A-Za-z]*)", str(text))
    assert match, text
    return float(match.group(1)) * units.get(match.group(2), 1)


def dockerfile_cmd() -> list[str]:
    lines = (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines()
    (cmd,) = [line for line in lines if line.startswith("CMD ")]
    value: list[str] = json.loads(cmd[4:])
    return value


def liveness_url() -> str:
    args = [*(OPERATOR.get("command") or []), *(OPERATOR.get("args") or dockerfile_cmd())]
    return str(args[args.index("--liveness") + 1])


# --- the kustomization --------------------------------------------------------------------------


def test_kustomization_names_the_namespace_and_local_resources_only() -> None:
    assert KUSTOMIZATION["namespace"] == NAMESPACE
    assert set(KUSTOMIZATION["resources"]) == {
        "namespace.yaml",
        "rbac.yaml",
        "deployment.yaml",
        "poddisruptionbudget.yaml",
    }
    for name in KUSTOMIZATION["resources"]:
        # kustomize's default load restriction: nothing from outside the kustomization root.
        assert (BASE / name).resolve().is_relative_to(BASE.resolve()), name
        assert RESOURCES[name], f"{name} has no documents"


def test_every_object_has_a_kind_a_name_and_our_namespace_if_any() -> None:
    kinds = sorted(d["kind"] for d in ALL)
    assert kinds == sorted(
        [
            "Namespace",
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Role",
            "RoleBinding",
            "Deployment",
            "PodDisruptionBudget",
        ]
    )
    for doc in ALL:
        assert doc["metadata"]["name"]
        assert doc["metadata"].get("namespace", NAMESPACE) == NAMESPACE, doc["metadata"]


def test_the_namespace_enforces_the_restricted_pod_security_standard() -> None:
    namespace = one("Namespace")
    assert namespace["metadata"]["name"] == NAMESPACE
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


# --- the Deployment -----------------------------------------------------------------------------


def test_two_replicas_rolled_without_ever_losing_the_standby() -> None:
    # The Lease, not the pod count, keeps one writer: a rollout surges a new (standby) pod and
    # only then stops an old one, so a ready replica can always take the Lease over.
    assert DEPLOYMENT["spec"]["replicas"] == 2
    assert DEPLOYMENT["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }


def test_a_disruption_takes_at_most_one_replica() -> None:
    budget = one("PodDisruptionBudget")
    assert budget["spec"]["maxUnavailable"] == 1
    assert "minAvailable" not in budget["spec"]  # scaled to one, a drain must still proceed
    assert budget["spec"]["selector"] == DEPLOYMENT["spec"]["selector"]


def test_the_replicas_spread_over_nodes_without_blocking_a_one_node_cluster() -> None:
    (spread,) = POD["topologySpreadConstraints"]
    assert spread["topologyKey"] == "kubernetes.io/hostname"
    assert spread["whenUnsatisfiable"] == "ScheduleAnyway"
    assert spread["maxSkew"] == 1
    assert spread["labelSelector"] == DEPLOYMENT["spec"]["selector"]


def test_the_selector_matches_the_pod_labels() -> None:
    selector = DEPLOYMENT["spec"]["selector"]["matchLabels"]
    labels = DEPLOYMENT["spec"]["template"]["metadata"]["labels"]
    assert selector
    assert selector.items() <= labels.items()


def test_the_service_account_is_the_one_rbac_yaml_binds() -> None:
    account = one("ServiceAccount")
    binding = one("ClusterRoleBinding")
    role = one("ClusterRole")
    assert POD["serviceAccountName"] == account["metadata"]["name"]
    assert POD.get("automountServiceAccountToken", True) is True, "Kopf needs the token"
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": role["metadata"]["name"],
    }
    assert {
        "kind": "ServiceAccount",
        "name": POD["serviceAccountName"],
        "namespace": NAMESPACE,
    } in binding["subjects"]


def test_the_image_is_the_released_version() -> None:
    assert OPERATOR["image"] == f"ghcr.io/b2ckeys/b2ckeys:{VERSION}"
    assert not OPERATOR["image"].endswith(":latest")


def test_the_pod_security_context_is_restricted() -> None:
    context = POD["securityContext"]
    assert context["runAsNonRoot"] is True
    assert context["runAsUser"] == RUNTIME_UID
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    for host in ("hostNetwork", "hostPID", "hostIPC", "hostUsers"):
        assert POD.get(host, host == "hostUsers") is (host == "hostUsers"), host


@pytest.mark.parametrize("container", list(containers()), ids=lambda c: c["name"])
def test_every_container_security_context_is_restricted(container: Obj) -> None:
    context = container["securityContext"]
    assert context["allowPrivilegeEscalation"] is False
    assert context["readOnlyRootFilesystem"] is True
    assert context["capabilities"]["drop"] == ["ALL"]
    assert not context["capabilities"].get("add")
    assert context.get("privileged", False) is False
    assert context.get("runAsNonRoot", True) is True
    assert context.get("runAsUser", RUNTIME_UID) == RUNTIME_UID
    assert context.get("seccompProfile", {"type": "RuntimeDefault"}) == {"type": "RuntimeDefault"}
    assert not container.get("ports") or all("hostPort" not in p for p in container["ports"])


def test_the_uid_is_the_images_user() -> None:
    lines = (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines()
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users[-1].split(":")[0] == str(POD["securityContext"]["runAsUser"])


def test_only_volume_types_the_restricted_standard_allows_and_tmp_is_an_empty_dir() -> None:
    volumes = {v["name"]: v for v in POD["volumes"]}
    for volume in volumes.values():
        kinds = set(volume) - {"name"}
        assert kinds <= RESTRICTED_VOLUME_TYPES, volume
    mounts = {m["mountPath"]: m["name"] for m in OPERATOR["volumeMounts"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]  # noqa: S108 (HOME and the temp dir)


def test_the_probes_hit_the_liveness_endpoint_the_operator_serves() -> None:
    url = urlsplit(liveness_url())
    assert url.scheme == "http"
    assert url.hostname == "0.0.0.0", "the kubelet probes the pod IP, not loopback"  # noqa: S104
    ports = {p["name"]: p["containerPort"] for p in OPERATOR["ports"]}
    for probe_name in ("livenessProbe", "startupProbe"):
        http_get = OPERATOR[probe_name]["httpGet"]
        port = http_get["port"]
        assert ports.get(port, port) == url.port, probe_name
        assert http_get["path"] == url.path, probe_name


def test_readiness_is_the_operators_readyz_on_the_metrics_port() -> None:
    ports = {p["name"]: p["containerPort"] for p in OPERATOR["ports"]}
    default_port = int(str(Settings().metrics_address).rsplit(":", 1)[1])
    assert ports["metrics"] == default_port == 8081
    assert OPERATOR["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}


def test_the_lease_role_grants_create_and_get_update_of_the_one_lease_in_our_namespace() -> None:
    role, binding = one("Role"), one("RoleBinding")
    assert role["metadata"]["namespace"] == NAMESPACE
    assert role["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": [Settings().lease_name],
            "verbs": ["get", "update"],
        },
    ]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": POD["serviceAccountName"], "namespace": NAMESPACE}
    ]
    cluster_role = one("ClusterRole")
    assert not [r for r in cluster_role["rules"] if "coordination.k8s.io" in r["apiGroups"]]


def test_resources_cover_the_measured_memory_with_headroom() -> None:
    requests, limits = OPERATOR["resources"]["requests"], OPERATOR["resources"]["limits"]
    request, limit = quantity(requests["memory"]), quantity(limits["memory"])
    assert request >= MEASURED_RSS_MIB * 2**20
    assert limit >= 2 * MEASURED_RSS_MIB * 2**20
    assert request <= limit
    assert 0 < quantity(requests["cpu"]) <= quantity(limits["cpu"])


# --- configuration ------------------------------------------------------------------------------


def env() -> dict[str, Obj]:
    return {e["name"]: e for e in OPERATOR["env"]}


def test_the_tenant_comes_from_the_generated_config_map() -> None:
    generators = {g["name"]: g for g in KUSTOMIZATION["configMapGenerator"]}
    for name in ("AZURE_TENANT_ID", "AZURE_CLIENT_ID"):
        ref = env()[name]["valueFrom"]["configMapKeyRef"]
        literals = dict(literal.split("=", 1) for literal in generators[ref["name"]]["literals"])
        assert ref["key"] in literals, name
        assert literals[ref["key"]], name


def test_workload_identity_is_the_one_credential() -> None:
    labels = DEPLOYMENT["spec"]["template"]["metadata"]["labels"]
    assert labels["azure.workload.identity/use"] == "true"  # a string: labels are strings
    # The webhook supplies AZURE_FEDERATED_TOKEN_FILE; Settings refuses a second credential.
    assert not {"AZURE_CLIENT_SECRET", "AZURE_CLIENT_CERTIFICATE_PATH"} & env().keys()
    assert "AZURE_CLIENT_SECRET" in (BASE / "deployment.yaml").read_text(encoding="utf-8")


def test_kopf_gets_its_identity_from_the_pod_name() -> None:
    assert env()["POD_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"


def test_leader_election_gets_its_identity_and_namespace_from_the_downward_api() -> None:
    assert env()["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env()["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"


def _documented_tuning() -> dict[str, str]:
    text = (BASE / "deployment.yaml").read_text(encoding="utf-8")
    return dict(re.findall(r"#\s+(B2CKEYS_[A-Z_]+)=(\S+)", text))


def test_every_tuning_variable_is_documented_and_none_is_set() -> None:
    settings_source = (ROOT / "operator" / "b2ckeys" / "settings.py").read_text(encoding="utf-8")
    read = set(re.findall(r"\"(B2CKEYS_[A-Z_]+)\"", settings_source))
    assert read, "settings.py reads no B2CKEYS_ variables?"
    assert read == set(_documented_tuning())
    assert not [name for name in env() if name.startswith("B2CKEYS_")], "defaults, not copies"


SETTINGS_ENV = {
    "AZURE_TENANT_ID": "t",
    "AZURE_CLIENT_ID": "c",
    "AZURE_CLIENT_SECRET": "s",
    "KUBECONFIG": "/dev/null",
}


@pytest.mark.parametrize(
    ("name", "value"), sorted((n, v) for n, v in _documented_tuning().items() if v != "(unset)")
)
def test_each_documented_default_is_the_actual_default(name: str, value: str) -> None:
    assert Settings.from_env({**SETTINGS_ENV, name: value}) == Settings.from_env(SETTINGS_ENV)


@pytest.mark.parametrize(
    "name", sorted(n for n, v in _documented_tuning().items() if v == "(unset)")
)
def test_each_documented_unset_variable_changes_settings_only_when_set(name: str) -> None:
    assert Settings.from_env({**SETTINGS_ENV, name: "x"}) != Settings.from_env(SETTINGS_ENV)
