"""The Helm chart and the kustomize overlays on a real kube-apiserver.

- Every object `helm template` renders, with the default values and each scenario in ci/, is
  server-side dry-run applied (as `kubectl apply --server-side --dry-run=server` would), and the
  pod template is dry-run as a Pod in a namespace that enforces the restricted Pod Security
  Standard, so admission judges the security context itself.
- The README's commands, run as written with the built helm and kubectl, in a cluster of their
  own (the README's release and namespace names would collide with other modules' objects in
  the shared one): `helm install` (CRDs Established, every object stored), `helm upgrade` with a
  changed value, `helm uninstall` leaving the CRDs and the key sets (crds.keep), adoption of
  CRDs applied with kubectl, then the kustomize overlays.

No nodes: nothing is scheduled, and the objects must be accepted as written.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from apiserver import KubeCluster, find_bin_dir, running_cluster, wait_until
from helm_support import MONITORING_CRDS, ClusterTools, readme_commands, tenant_stand_in_crds
from kubernetes import client as k8s
from kubernetes.dynamic.exceptions import NotFoundError

from helm_chart import CHART, SCENARIOS, Obj, render

pytestmark = pytest.mark.cluster

GROUP, VERSION, PLURAL = "b2ckeys.dev", "v1alpha1", "trustframeworkkeysets"
CRD_NAME = f"{PLURAL}.{GROUP}"
README_NAMESPACE = "b2ckeys-system"
# A CRD is Established within a second or two of its creation; the bound only catches a hang.
ESTABLISHED_TIMEOUT_SECONDS = 30.0


def fresh_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def read(
    cluster: KubeCluster, api_version: str, kind: str, name: str, namespace: str | None = None
) -> Obj | None:
    """One object as a plain dict (as kubectl shows it), or None when it does not exist."""
    resource = cluster.dynamic.resources.get(api_version=api_version, kind=kind)
    try:
        found = resource.get(name=name, namespace=namespace)
    except NotFoundError:
        return None
    return cast(Obj, found.to_dict())


def names(
    cluster: KubeCluster, api_version: str, kind: str, namespace: str | None = None
) -> set[str]:
    resource = cluster.dynamic.resources.get(api_version=api_version, kind=kind)
    listed = cast(Obj, resource.get(namespace=namespace).to_dict())
    return {item["metadata"]["name"] for item in listed["items"]}


# --- every rendered object, dry-run on the server ------------------------------------------------


@pytest.fixture(scope="module")
def served_kinds(kube_cluster: KubeCluster, installed_crds: list[str]) -> list[str]:
    """The kinds the chart can render beyond core Kubernetes: our CRDs (real), the
    prometheus-operator's and, until crds/ has it, ClusterB2CTenant (permissive stand-ins)."""
    return kube_cluster.install_crds([*MONITORING_CRDS, *tenant_stand_in_crds()])


def restricted_namespace(cluster: KubeCluster) -> str:
    name = fresh_name("helm")
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": name,
                "labels": {"pod-security.kubernetes.io/enforce": "restricted"},
            },
        }
    )
    return name


def dry_run_pod(cluster: KubeCluster, objects: list[Obj], namespace: str) -> dict[str, Any]:
    """Dry-run the Pod the Deployment's ReplicaSet would create (no controllers run here).

    Pod admission looks the ServiceAccount up, so the rendered one is created for real first
    (in the test's own namespace)."""
    cluster.apply([o for o in objects if o["kind"] == "ServiceAccount"])
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    (pod,) = cluster.apply(pod_from(deployment, namespace), dry_run=True)
    return pod


def pod_from(deployment: Obj, namespace: str) -> Obj:
    template = copy.deepcopy(deployment["spec"]["template"])
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {**template["metadata"], "name": fresh_name("pod"), "namespace": namespace},
        "spec": template["spec"],
    }


@pytest.mark.parametrize(
    "values", [None, *SCENARIOS], ids=lambda p: p.name if p else "default-values"
)
def test_every_rendered_object_passes_a_server_side_dry_run(
    kube_cluster: KubeCluster, served_kinds: list[str], tmp_path: Path, values: Path | None
) -> None:
    namespace = restricted_namespace(kube_cluster)
    objects = render(tmp_path, [values] if values else [], namespace=namespace)

    results = kube_cluster.apply(objects, dry_run=True)

    assert [(r["kind"], r["metadata"]["name"]) for r in results] == [
        (o["kind"], o["metadata"]["name"]) for o in objects
    ]
    # A dry run persists nothing: the Deployment is still not there.
    assert not names(kube_cluster, "apps/v1", "Deployment", namespace)
    # Pod Security admission enforces on Pods only (a Deployment gets a warning at most).
    pod = dry_run_pod(kube_cluster, objects, namespace)
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True


def test_a_weakened_pod_is_refused_by_the_restricted_namespace(
    kube_cluster: KubeCluster, tmp_path: Path
) -> None:
    # The check above can fail: the same dry-run refuses a pod that may escalate privileges.
    namespace = restricted_namespace(kube_cluster)
    objects = render(
        tmp_path,
        set_values={"securityContext.allowPrivilegeEscalation": "true"},
        namespace=namespace,
    )
    with pytest.raises(k8s.ApiException) as refused:
        dry_run_pod(kube_cluster, objects, namespace)
    assert refused.value.status == 403
    assert "allowPrivilegeEscalation != false" in str(refused.value.body)


# --- the README, run as written ----------------------------------------------------------------


@pytest.fixture(scope="module")
def readme_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeCluster]:
    try:
        bin_dir = find_bin_dir()
    except FileNotFoundError as e:
        pytest.fail(str(e), pytrace=False)
    with running_cluster(bin_dir, tmp_path_factory.mktemp("readme-cluster")) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def tools(readme_cluster: KubeCluster, tmp_path_factory: pytest.TempPathFactory) -> ClusterTools:
    return ClusterTools(readme_cluster, tmp_path_factory.mktemp("tools-home"))


CRD_API = "apiextensions.k8s.io/v1"


def established(cluster: KubeCluster, name: str) -> bool:
    crd = read(cluster, CRD_API, "CustomResourceDefinition", name)
    conditions = (crd or {}).get("status", {}).get("conditions") or []
    return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)


def key_set(namespace: str, name: str) -> Obj:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "TrustFrameworkKeySet",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"keySetId": "TokenSigningKeyContainer", "source": {"generate": {}}},
    }


def operator_deployment(cluster: KubeCluster) -> Obj:
    deployment = read(cluster, "apps/v1", "Deployment", "b2ckeys", README_NAMESPACE)
    assert deployment is not None, "no Deployment b2ckeys"
    return deployment


def operator_env(cluster: KubeCluster) -> dict[str, Any]:
    (container,) = operator_deployment(cluster)["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value") for e in container["env"]}


def succeeded(result: Any, line: str) -> str:
    assert result.returncode == 0, f"`{line}` failed:\n{result.stdout}\n{result.stderr}"
    return str(result.stdout)


INSTALL = (
    f"helm install b2ckeys deploy/helm/b2ckeys --namespace {README_NAMESPACE} --create-namespace "
    "--set azure.tenantId=contoso.onmicrosoft.com "
    "--set azure.clientId=11111111-2222-3333-4444-555555555555"
)
LABEL = f"kubectl label namespace {README_NAMESPACE} pod-security.kubernetes.io/enforce=restricted"
ROLLOUT = f"kubectl -n {README_NAMESPACE} rollout status deployment/b2ckeys"
GET_TFKS = "kubectl get tfks -A"
SHOW_VALUES = "helm show values deploy/helm/b2ckeys"
UPGRADE = (
    f"helm upgrade b2ckeys deploy/helm/b2ckeys --namespace {README_NAMESPACE} --reuse-values "
    "--set config.logFormat=json"
)
UNINSTALL = f"helm uninstall b2ckeys --namespace {README_NAMESPACE}"
GET_CRD = f"kubectl get crd {CRD_NAME}"
ADOPT_LABEL = f"kubectl label crd {CRD_NAME} app.kubernetes.io/managed-by=Helm --overwrite"
ADOPT_ANNOTATE = (
    f"kubectl annotate crd {CRD_NAME} meta.helm.sh/release-name=b2ckeys "
    f"meta.helm.sh/release-namespace={README_NAMESPACE} --overwrite"
)
TEMPLATE_HA = (
    f"helm template b2ckeys deploy/helm/b2ckeys --namespace {README_NAMESPACE} "
    "--values deploy/helm/b2ckeys/ci/high-availability-values.yaml"
)
APPLY_CRDS = "kubectl apply --server-side -f crds/"
APPLY_WORKLOAD_IDENTITY = "kubectl apply -k deploy/overlays/workload-identity"
APPLY_HA = "kubectl apply -k deploy/overlays/ha"


def test_the_readme_shows_exactly_the_commands_these_tests_run() -> None:
    assert readme_commands("Install with Helm") == [
        INSTALL,
        LABEL,
        ROLLOUT,
        GET_TFKS,
        SHOW_VALUES,
        UPGRADE,
        UNINSTALL,
        GET_CRD,
        ADOPT_LABEL,
        ADOPT_ANNOTATE,
        TEMPLATE_HA,
    ]
    assert readme_commands("Install with kustomize") == [
        APPLY_CRDS,
        APPLY_WORKLOAD_IDENTITY,
        GET_TFKS,
        APPLY_HA,
    ]


def test_install_upgrade_and_uninstall_with_helm_as_the_readme_says(
    readme_cluster: KubeCluster, tools: ClusterTools
) -> None:
    cluster = readme_cluster
    installed = succeeded(tools.command(INSTALL), INSTALL)
    assert "STATUS: deployed" in installed
    # NOTES.txt: how to check it works.
    assert ROLLOUT in installed
    assert GET_TFKS in installed
    assert f"kubectl -n {README_NAMESPACE} get lease b2ckeys-leader" in installed
    wait_until(
        lambda: established(cluster, CRD_NAME),
        timeout=ESTABLISHED_TIMEOUT_SECONDS,
        what=f"{CRD_NAME} to be Established",
    )
    stored = [
        ("v1", "ServiceAccount", "b2ckeys"),
        ("v1", "Service", "b2ckeys-metrics"),
        ("apps/v1", "Deployment", "b2ckeys"),
        ("policy/v1", "PodDisruptionBudget", "b2ckeys"),
        ("rbac.authorization.k8s.io/v1", "Role", "b2ckeys-leader-election"),
        ("rbac.authorization.k8s.io/v1", "RoleBinding", "b2ckeys-leader-election"),
    ]
    for api_version, kind, name in stored:
        assert read(cluster, api_version, kind, name, README_NAMESPACE), f"{kind} {name}"
    for kind in ("ClusterRole", "ClusterRoleBinding"):
        assert read(cluster, "rbac.authorization.k8s.io/v1", kind, "b2ckeys"), kind
    account = read(cluster, "v1", "ServiceAccount", "b2ckeys", README_NAMESPACE)
    assert account is not None
    assert account["metadata"]["annotations"]["azure.workload.identity/tenant-id"] == (
        "contoso.onmicrosoft.com"
    )

    succeeded(tools.command(LABEL), LABEL)
    namespace = read(cluster, "v1", "Namespace", README_NAMESPACE)
    assert namespace is not None
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"

    # No nodes and no deployment controller here, so the rollout never completes: bounded, the
    # command shows it names the Deployment the chart created and waits on its rollout.
    waiting = tools.command(f"{ROLLOUT} --timeout=1s")
    assert waiting.returncode == 1
    assert "Waiting for deployment spec update to be observed" in waiting.stdout, waiting.stderr
    assert "timed out waiting for the condition" in waiting.stderr

    # A key set someone created while the chart was installed.
    cluster.create_namespace("team-a")
    cluster.apply(key_set("team-a", "token-signing"))
    listed = succeeded(tools.command(GET_TFKS), GET_TFKS)
    assert "team-a" in listed
    assert "token-signing" in listed

    generation = operator_deployment(cluster)["metadata"]["generation"]
    assert "B2CKEYS_LOG_FORMAT" not in operator_env(cluster)
    shown = succeeded(tools.command(SHOW_VALUES), SHOW_VALUES)
    assert shown.strip() == (CHART / "values.yaml").read_text(encoding="utf-8").strip()
    assert "logFormat:" in shown
    upgraded = succeeded(tools.command(UPGRADE), UPGRADE)
    assert "REVISION: 2" in upgraded
    env = operator_env(cluster)
    assert env["B2CKEYS_LOG_FORMAT"] == "json"
    assert env["AZURE_TENANT_ID"] == "contoso.onmicrosoft.com", "--reuse-values kept the rest"
    assert operator_deployment(cluster)["metadata"]["generation"] == generation + 1

    succeeded(tools.command(UNINSTALL), UNINSTALL)
    assert not names(cluster, "apps/v1", "Deployment", README_NAMESPACE)
    assert "b2ckeys" not in names(cluster, "rbac.authorization.k8s.io/v1", "ClusterRole")
    # crds.keep: the CRD and the key sets outlive the release.
    assert CRD_NAME in succeeded(tools.command(GET_CRD), GET_CRD)
    assert established(cluster, CRD_NAME)
    kept = read(cluster, f"{GROUP}/{VERSION}", "TrustFrameworkKeySet", "token-signing", "team-a")
    assert kept is not None
    assert kept["spec"]["keySetId"] == "TokenSigningKeyContainer"


def test_crds_applied_with_kubectl_are_adopted_by_helm_install(
    readme_cluster: KubeCluster, tools: ClusterTools
) -> None:
    # As if the CRDs came from `kubectl apply -f crds/` before the chart: no Helm metadata.
    tools.kubectl("label", "crd", CRD_NAME, "app.kubernetes.io/managed-by-")
    tools.kubectl(
        "annotate", "crd", CRD_NAME, "meta.helm.sh/release-name-", "meta.helm.sh/release-namespace-"
    )
    succeeded(tools.kubectl("apply", "--server-side", "-f", "crds/"), "apply crds/")
    refused = tools.command(INSTALL)
    assert refused.returncode == 1
    assert "invalid ownership metadata" in refused.stderr

    succeeded(tools.command(ADOPT_LABEL), ADOPT_LABEL)
    succeeded(tools.command(ADOPT_ANNOTATE), ADOPT_ANNOTATE)
    succeeded(tools.command(INSTALL), INSTALL)

    crd = read(readme_cluster, CRD_API, "CustomResourceDefinition", CRD_NAME)
    assert crd is not None
    assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert crd["metadata"]["labels"]["helm.sh/chart"].startswith("b2ckeys-")
    rendered = succeeded(tools.command(TEMPLATE_HA), TEMPLATE_HA)
    assert "replicas: 3" in rendered
    succeeded(tools.command(UNINSTALL), UNINSTALL)


def test_without_crds_keep_an_uninstall_deletes_the_crd_and_every_key_set(
    readme_cluster: KubeCluster, tools: ClusterTools
) -> None:
    # The other side of crds.keep, so the test above can fail: the same uninstall with
    # crds.keep=false takes the CRD, and the API server deletes every key set with it.
    cluster = readme_cluster
    succeeded(tools.command(f"{INSTALL} --set crds.keep=false"), "install with crds.keep=false")
    # Helm decides what an uninstall keeps from the release's manifest, not the live object
    # (which still carries the kept CRD's annotation: adopting patches, it never removes).
    manifest = succeeded(
        tools.helm("get", "manifest", "b2ckeys", "--namespace", README_NAMESPACE), "get manifest"
    )
    assert "helm.sh/resource-policy" not in manifest
    assert f"name: {CRD_NAME}" in manifest
    cluster.create_namespace("team-b")
    cluster.apply(key_set("team-b", "doomed"))

    succeeded(tools.command(UNINSTALL), UNINSTALL)

    wait_until(
        lambda: read(cluster, CRD_API, "CustomResourceDefinition", CRD_NAME) is None,
        timeout=ESTABLISHED_TIMEOUT_SECONDS,
        what=f"{CRD_NAME} to be deleted",
    )
    gone = tools.kubectl("get", "trustframeworkkeysets.b2ckeys.dev", "-A")
    assert gone.returncode == 1
    assert "the server doesn't have a resource type" in gone.stderr


def test_install_with_kustomize_as_the_readme_says(
    readme_cluster: KubeCluster, tools: ClusterTools
) -> None:
    cluster = readme_cluster
    for line in (APPLY_CRDS, APPLY_WORKLOAD_IDENTITY, GET_TFKS):
        succeeded(tools.command(line), line)
    account = read(cluster, "v1", "ServiceAccount", "b2ckeys", README_NAMESPACE)
    assert account is not None
    assert account["metadata"]["annotations"]["azure.workload.identity/client-id"] == (
        "11111111-2222-3333-4444-555555555555"
    )
    template = operator_deployment(cluster)["spec"]["template"]
    assert template["metadata"]["labels"]["azure.workload.identity/use"] == "true"

    succeeded(tools.command(APPLY_HA), APPLY_HA)
    deployment = operator_deployment(cluster)
    assert deployment["spec"]["replicas"] == 3
    pod = deployment["spec"]["template"]["spec"]
    (term,) = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    zones = {c["topologyKey"] for c in pod["topologySpreadConstraints"]}
    assert "topology.kubernetes.io/zone" in zones


def test_a_misspelt_value_fails_helm_install_and_installs_nothing(
    readme_cluster: KubeCluster, tools: ClusterTools
) -> None:
    refused = tools.command(f"{INSTALL} --set replica=3")
    assert refused.returncode == 1
    assert "values don't meet the specifications of the schema" in refused.stderr
    assert "replica" in refused.stderr
    listed = tools.helm("list", "--all-namespaces", "--all", "--output", "json")
    assert succeeded(listed, "helm list").strip() == "[]"
