"""deploy/overlays/ rendered with the real kubectl (kustomize built in), no API server.

Each overlay changes only what it is for and keeps everything else of deploy/base, so the base
stays the production default and its tests keep speaking for the overlays. The cluster tier
(tests/cluster/test_helm.py) applies them to a real kube-apiserver as the README says.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from helm_chart import NAMESPACE, ROOT, Obj, kustomize, only, operator_grants

BASE = ROOT / "deploy" / "base"
OVERLAYS = ROOT / "deploy" / "overlays"
WORKLOAD_IDENTITY = OVERLAYS / "workload-identity"
HIGH_AVAILABILITY = OVERLAYS / "ha"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("kubectl-home")


@pytest.fixture(scope="module")
def base(home: Path) -> list[Obj]:
    return kustomize(home, BASE)


def identities(objects: list[Obj]) -> list[tuple[str, str]]:
    """Kind and name of each object; generated ConfigMaps by their name before the hash."""
    return sorted((o["kind"], o["metadata"]["name"].rsplit("-", 1)[0]) for o in objects)


@pytest.mark.parametrize("overlay", [WORKLOAD_IDENTITY, HIGH_AVAILABILITY], ids=lambda p: p.name)
def test_an_overlay_holds_the_bases_objects_and_grants(
    home: Path, base: list[Obj], overlay: Path
) -> None:
    objects = kustomize(home, overlay)
    assert identities(objects) == identities(base)
    for obj in objects:
        if obj["kind"] not in {"Namespace", "ClusterRole", "ClusterRoleBinding"}:
            assert obj["metadata"]["namespace"] == NAMESPACE, obj["metadata"]
    assert operator_grants(objects, "b2ckeys", NAMESPACE) == operator_grants(
        base, "b2ckeys", NAMESPACE
    )


def test_workload_identity_writes_the_ids_once(home: Path) -> None:
    objects = kustomize(home, WORKLOAD_IDENTITY)
    config = only(objects, "ConfigMap")["data"]
    account = only(objects, "ServiceAccount")["metadata"]
    assert account["annotations"] == {
        "azure.workload.identity/client-id": config["AZURE_CLIENT_ID"],
        "azure.workload.identity/tenant-id": config["AZURE_TENANT_ID"],
    }
    assert config["AZURE_CLIENT_ID"] != "00000000-0000-0000-0000-000000000000", "the base's"
    assert account["labels"]["azure.workload.identity/use"] == "true"
    deployment = only(objects, "Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert labels["azure.workload.identity/use"] == "true"
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    refs = {e["name"]: e["valueFrom"]["configMapKeyRef"]["name"] for e in container["env"][:2]}
    assert set(refs.values()) == {only(objects, "ConfigMap")["metadata"]["name"]}


def test_high_availability_schedules_three_replicas_apart(home: Path, base: list[Obj]) -> None:
    deployment = only(kustomize(home, HIGH_AVAILABILITY), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["replicas"] == 3
    (term,) = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert term["labelSelector"]["matchLabels"].items() <= pod_labels.items()
    zone = [c for c in pod["topologySpreadConstraints"] if "zone" in c["topologyKey"]]
    (spread,) = zone
    assert spread["topologyKey"] == "topology.kubernetes.io/zone"
    assert spread["labelSelector"]["matchLabels"].items() <= pod_labels.items()

    # Everything else is the base's Deployment, untouched.
    ours, theirs = copy.deepcopy(deployment), copy.deepcopy(only(base, "Deployment"))
    for obj in (ours, theirs):
        obj["spec"].pop("replicas", None)
        obj["spec"]["template"]["spec"].pop("affinity", None)
        constraints = obj["spec"]["template"]["spec"].pop("topologySpreadConstraints", [])
        obj["spec"]["template"]["spec"]["otherSpread"] = [
            c for c in constraints if c["topologyKey"] != "topology.kubernetes.io/zone"
        ]
    assert ours == theirs
