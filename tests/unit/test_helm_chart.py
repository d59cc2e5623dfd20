"""deploy/helm/b2ckeys with the real helm (built by scripts/go-tools), no API server.

`helm lint --strict` and `helm template` with the default values and each scenario in ci/;
values.schema.json refusing typos; the CRDs identical to crds/; the alert rules identical to
deploy/prometheus/; the Deployment holding what deploy/base holds; every operator setting
reachable from values; and the chart's RBAC equal to what the kustomize base grants. The cluster
tier (tests/cluster/test_helm.py) sends the same renders to a real kube-apiserver.
"""

from __future__ import annotations

import filecmp
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from b2ckeys.settings import Settings
from helm_chart import (
    CHART,
    NAMESPACE,
    ROOT,
    SCENARIOS,
    Obj,
    helm_binary,
    helm_template,
    kinds,
    kustomize,
    only,
    operator_grants,
    render,
    run,
    tool_env,
)

BASE = ROOT / "deploy" / "base"
CRDS = ROOT / "crds"
CHART_CRDS = CHART / "files" / "crds"
PROMETHEUS_RULE = ROOT / "deploy" / "prometheus" / "prometheusrule.yaml"
CHART_PROMETHEUS_RULE = CHART / "files" / "prometheusrule.yaml"
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
# What the chart adds to each CRD from crds/ (and nothing else).
CHART_LABELS = {
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/component",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
    "helm.sh/chart",
}
KEEP = {"helm.sh/resource-policy": "keep"}
# contracts.md, leader election: a namespaced Role with exactly these two rules.
LEASE_RULES = [
    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
    {
        "apiGroups": ["coordination.k8s.io"],
        "resources": ["leases"],
        "resourceNames": ["b2ckeys-leader"],
        "verbs": ["get", "update"],
    },
]
# Variables the operator reads that are not in settings.py on every branch yet (contracts.md:
# leader election, the metrics server), and the pod identity the Lease uses.
CONTRACT_VARIABLES = {
    "B2CKEYS_LEADER_ELECTION",
    "B2CKEYS_LEADER_ELECTION_LEASE_NAME",
    "B2CKEYS_LEASE_DURATION",
    "B2CKEYS_RENEW_DEADLINE",
    "B2CKEYS_RETRY_PERIOD",
    "B2CKEYS_METRICS_ADDRESS",
    "POD_NAMESPACE",
    "POD_NAME",
}
# Set by the workload identity webhook, never by the chart.
WEBHOOK_VARIABLES = {"AZURE_FEDERATED_TOKEN_FILE"}


def scenario(name: str) -> Path:
    path = CHART / "ci" / f"{name}-values.yaml"
    assert path.is_file(), path
    return path


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("helm-home")


@pytest.fixture(scope="module")
def default_render(home: Path) -> list[Obj]:
    return render(home)


def deployment_of(objects: list[Obj]) -> Obj:
    return only(objects, "Deployment")


def pod_of(objects: list[Obj]) -> Obj:
    pod: Obj = deployment_of(objects)["spec"]["template"]["spec"]
    return pod


def env_of(objects: list[Obj]) -> dict[str, Obj]:
    (container,) = pod_of(objects)["containers"]
    return {e["name"]: e for e in container["env"]}


# --- helm lint and helm template over every scenario -------------------------------------------


def test_there_is_a_scenario_for_each_documented_case() -> None:
    names = {p.name.removesuffix("-values.yaml") for p in SCENARIOS}
    assert names >= {
        "workload-identity",
        "client-secret",
        "client-certificate",
        "monitoring",
        "high-availability",
        "tuned",
        "cluster-tenant",
        "crds-managed-separately",
    }


@pytest.mark.parametrize(
    "values", [None, *SCENARIOS], ids=lambda p: p.name if p else "default-values"
)
def test_helm_lint_strict_passes(home: Path, values: Path | None) -> None:
    values_args = ["--values", str(values)] if values else []
    linted = run([helm_binary(), "lint", "--strict", CHART, *values_args], tool_env(home))
    assert linted.returncode == 0, linted.stdout + linted.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in linted.stdout
    assert "[WARNING]" not in linted.stdout
    assert "[ERROR]" not in linted.stdout


@pytest.mark.parametrize("values", SCENARIOS, ids=lambda p: p.name)
def test_each_scenario_renders_objects_in_the_release_namespace(home: Path, values: Path) -> None:
    objects = render(home, [values])
    assert deployment_of(objects)
    for obj in objects:
        assert obj["apiVersion"], obj
        assert obj["kind"], obj
        assert obj["metadata"]["name"], obj
        if obj["kind"] not in {"CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"}:
            if obj["kind"] != "ClusterB2CTenant":
                assert obj["metadata"]["namespace"] == NAMESPACE, obj["metadata"]
        else:
            assert "namespace" not in obj["metadata"], obj["metadata"]


def test_the_default_render(default_render: list[Obj]) -> None:
    assert kinds(default_render) == sorted(
        [
            *["CustomResourceDefinition"] * len(list(CRDS.glob("*.yaml"))),
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Role",
            "RoleBinding",
            "Deployment",
            "PodDisruptionBudget",
            "Service",
        ]
    ), "the prometheus-operator objects and the ClusterB2CTenant are off by default"
    deployment = deployment_of(default_render)
    assert deployment["metadata"]["name"] == "b2ckeys"
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    assert only(default_render, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1


# --- values.schema.json and the chart's own checks ---------------------------------------------


@pytest.mark.parametrize(
    ("set_values", "named"),
    [
        ({"replica": "3"}, "replica"),
        ({"image.tags": "1.0"}, "tags"),
        ({"config.resyncIntervall": "5m"}, "resyncIntervall"),
        ({"config.resyncInterval": "soon"}, "resyncInterval"),
        ({"config.logFormat": "xml"}, "logFormat"),
        ({"config.maxConcurrentReconciles": "0"}, "maxConcurrentReconciles"),
        ({"azure.clientId": "not-a-guid"}, "clientId"),
        ({"azure.workloadIdentity.enable": "false"}, "enable"),
        ({"image.digest": "sha256:short"}, "digest"),
        ({"metrics.serviceMonitor.enable": "true"}, "enable"),
        ({"leaderElection.leaseDuraton": "15s"}, "leaseDuraton"),
        ({"crds.keepp": "true"}, "keepp"),
        (
            {
                "clusterTenant.auth.clientSecret.secretRef.name": "app",
                "clusterTenant.auth.clientCertificate.secretRef.name": "app-tls",
            },
            "auth",
        ),
    ],
    ids=lambda v: next(iter(v)) if isinstance(v, dict) else v,
)
def test_the_schema_refuses_typos_and_bad_values(
    home: Path, set_values: dict[str, str], named: str
) -> None:
    result = helm_template(home, set_values=set_values)
    assert result.returncode == 1, result.stdout
    assert "values don't meet the specifications of the schema" in result.stderr
    assert named in result.stderr


@pytest.mark.parametrize(
    ("set_values", "message"),
    [
        (
            {"azure.tenantId": "t.onmicrosoft.com", "azure.clientSecret.secretName": "app"},
            "set exactly one credential for the default tenant, found workloadIdentity, "
            "clientSecret",
        ),
        ({"azure.tenantId": "t.onmicrosoft.com"}, "azure.clientId is empty"),
        ({"podDisruptionBudget.minAvailable": "1"}, "set maxUnavailable or minAvailable, not both"),
        ({"metrics.serviceMonitor.enabled": "true", "metrics.service.enabled": "false"}, "needs"),
        ({"clusterTenant.enabled": "true"}, "clusterTenant.tenantId is required"),
        ({"serviceAccount.create": "false"}, "serviceAccount.name must name an existing"),
    ],
    ids=[
        "two-credentials",
        "half-a-tenant",
        "two-budgets",
        "monitor-without-service",
        "tenant",
        "unnamed-account",
    ],
)
def test_contradictory_values_fail_with_a_message(
    home: Path, set_values: dict[str, str], message: str
) -> None:
    result = helm_template(home, set_values=set_values)
    assert result.returncode == 1, result.stdout
    assert message in result.stderr


# --- the CRDs: from crds/, unchanged --------------------------------------------------------------


def test_the_chart_carries_byte_identical_copies_of_crds() -> None:
    ours = sorted(p.name for p in CRDS.glob("*.yaml"))
    copies = sorted(p.name for p in CHART_CRDS.glob("*.yaml"))
    fix = f"cp crds/*.yaml {CHART_CRDS.relative_to(ROOT)}/ (and remove stale copies)"
    assert copies == ours, fix
    _, mismatch, errors = filecmp.cmpfiles(CRDS, CHART_CRDS, ours, shallow=False)
    assert not mismatch + errors, f"{mismatch + errors} differ: {fix}"
    assert not any(p.is_symlink() for p in CHART_CRDS.iterdir()), "helm refuses symlinks"


def crd_sources() -> dict[str, Obj]:
    sources = {}
    for path in sorted(CRDS.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if document:
                sources[document["metadata"]["name"]] = document
    return sources


def test_rendered_crds_equal_crds_plus_labels_and_keep(default_render: list[Obj]) -> None:
    rendered = {o["metadata"]["name"]: o for o in default_render if o["kind"].startswith("Custom")}
    sources = crd_sources()
    assert rendered.keys() == sources.keys()
    for name, crd in rendered.items():
        metadata = crd["metadata"]
        assert metadata.pop("annotations") == KEEP, name
        assert set(metadata.pop("labels")) == CHART_LABELS, name
        assert crd == sources[name], f"{name}: the rendered CRD is not crds/'s"


def test_crds_keep_false_drops_the_annotation_and_enabled_false_the_crds(home: Path) -> None:
    loose = render(home, set_values={"crds.keep": "false"})
    for crd in (o for o in loose if o["kind"] == "CustomResourceDefinition"):
        assert "helm.sh/resource-policy" not in crd["metadata"].get("annotations", {})
    separate = render(home, [scenario("crds-managed-separately")])
    assert "CustomResourceDefinition" not in kinds(separate)


# --- the alert rules: deploy/prometheus/prometheusrule.yaml, unchanged ---------------------------


def test_the_chart_carries_a_byte_identical_copy_of_the_alert_rules() -> None:
    assert PROMETHEUS_RULE.is_file(), f"{PROMETHEUS_RULE.relative_to(ROOT)} is missing"
    assert filecmp.cmp(PROMETHEUS_RULE, CHART_PROMETHEUS_RULE, shallow=False), (
        f"cp {PROMETHEUS_RULE.relative_to(ROOT)} {CHART_PROMETHEUS_RULE.relative_to(ROOT)}"
    )


def test_monitoring_renders_a_service_monitor_for_job_b2ckeys_and_the_rules(home: Path) -> None:
    objects = render(home, [scenario("monitoring")])
    monitor = only(objects, "ServiceMonitor")
    service = only(objects, "Service")
    rule = only(objects, "PrometheusRule")
    # The job label comes from the Service label jobLabel names: "b2ckeys" (contracts.md).
    assert service["metadata"]["labels"][monitor["spec"]["jobLabel"]] == "b2ckeys"
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["metrics"]
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert rule["metadata"]["labels"]["release"] == "prometheus"
    source = yaml.safe_load(PROMETHEUS_RULE.read_text(encoding="utf-8"))
    assert rule["spec"]["groups"] == source["spec"]["groups"]


# --- the Deployment: what deploy/base holds, plus HA and metrics -------------------------------


@pytest.fixture(scope="module")
def base_objects(home: Path) -> list[Obj]:
    return kustomize(home, BASE)


def test_the_chart_version_follows_the_project(default_render: list[Obj]) -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text(encoding="utf-8"))
    assert chart["apiVersion"] == "v2"
    assert chart["appVersion"] == VERSION
    (container,) = pod_of(default_render)["containers"]
    assert container["image"] == f"ghcr.io/b2ckeys/b2ckeys:{VERSION}"


def test_an_image_digest_pins_the_image(home: Path) -> None:
    objects = render(home, [scenario("tuned")])
    (container,) = pod_of(objects)["containers"]
    assert re.fullmatch(r"ghcr\.io/b2ckeys/b2ckeys:0\.1\.0@sha256:[0-9a-f]{64}", container["image"])


@pytest.mark.parametrize(
    "field",
    ["securityContext", "terminationGracePeriodSeconds", "nodeSelector", "serviceAccountName"],
)
def test_the_pod_matches_the_bases(
    default_render: list[Obj], base_objects: list[Obj], field: str
) -> None:
    assert pod_of(default_render)[field] == pod_of(base_objects)[field]


@pytest.mark.parametrize(
    "field", ["securityContext", "resources", "livenessProbe", "startupProbe", "imagePullPolicy"]
)
def test_the_container_matches_the_bases(
    default_render: list[Obj], base_objects: list[Obj], field: str
) -> None:
    (ours,) = pod_of(default_render)["containers"]
    (base,) = pod_of(base_objects)["containers"]
    assert ours[field] == base[field]


def test_the_volumes_and_args_match_the_base_and_the_image(
    default_render: list[Obj], base_objects: list[Obj]
) -> None:
    ours, base = pod_of(default_render), pod_of(base_objects)
    assert ours["volumes"] == base["volumes"]
    (container,) = ours["containers"]
    (base_container,) = base["containers"]
    assert container["volumeMounts"] == base_container["volumeMounts"]
    # The base relies on the image's CMD; the chart spells the same command out.
    cmd = next(
        line
        for line in (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines()
        if line.startswith("CMD ")
    )
    image_args = yaml.safe_load(cmd[4:])
    assert container["args"] == ["run", "--all-namespaces", f"--liveness={image_args[-1]}"]


def test_readiness_is_readyz_on_the_metrics_port_the_service_exposes(
    default_render: list[Obj],
) -> None:
    (container,) = pod_of(default_render)["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"healthz": 8080, "metrics": 8081}
    readiness = container["readinessProbe"]["httpGet"]
    assert (readiness["path"], readiness["port"]) == ("/readyz", "metrics")
    service = only(default_render, "Service")
    (port,) = service["spec"]["ports"]
    assert (port["name"], port["port"], port["targetPort"]) == ("metrics", 8081, "metrics")
    assert env_of(default_render)["B2CKEYS_METRICS_ADDRESS"]["value"] == "0.0.0.0:8081"


def test_every_selector_matches_the_pods(default_render: list[Obj]) -> None:
    deployment = deployment_of(default_render)
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selectors = [
        deployment["spec"]["selector"]["matchLabels"],
        only(default_render, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
        only(default_render, "Service")["spec"]["selector"],
        *(
            c["labelSelector"]["matchLabels"]
            for c in pod_of(default_render)["topologySpreadConstraints"]
        ),
    ]
    for selector in selectors:
        assert selector, selector
        assert selector.items() <= pod_labels.items(), selector
    keys = {c["topologyKey"] for c in pod_of(default_render)["topologySpreadConstraints"]}
    assert keys == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}


# --- credentials and settings -----------------------------------------------------------------


def test_workload_identity_annotates_the_account_and_labels_the_pod(home: Path) -> None:
    objects = render(home, [scenario("workload-identity")])
    account = only(objects, "ServiceAccount")
    assert account["metadata"]["annotations"] == {
        "azure.workload.identity/client-id": "11111111-2222-3333-4444-555555555555",
        "azure.workload.identity/tenant-id": "contoso.onmicrosoft.com",
    }
    assert account["metadata"]["labels"]["azure.workload.identity/use"] == "true"
    labels = deployment_of(objects)["spec"]["template"]["metadata"]["labels"]
    assert labels["azure.workload.identity/use"] == "true"
    env = env_of(objects)
    assert env["AZURE_TENANT_ID"]["value"] == "contoso.onmicrosoft.com"
    assert env["AZURE_CLIENT_ID"]["value"] == "11111111-2222-3333-4444-555555555555"
    assert not {"AZURE_CLIENT_SECRET", "AZURE_CLIENT_CERTIFICATE_PATH"} & env.keys()


def test_without_a_default_tenant_workload_identity_keeps_the_webhooks_ids_out(
    default_render: list[Obj],
) -> None:
    # Empty, yet present: the webhook never overrides a variable the container sets, so the
    # cluster's own Entra tenant cannot become the operator's default B2C tenant.
    env = env_of(default_render)
    assert env["AZURE_TENANT_ID"] == {"name": "AZURE_TENANT_ID", "value": ""}
    assert env["AZURE_CLIENT_ID"] == {"name": "AZURE_CLIENT_ID", "value": ""}
    assert "annotations" not in only(default_render, "ServiceAccount")["metadata"]


def test_a_client_secret_comes_from_its_secret_and_drops_workload_identity(home: Path) -> None:
    objects = render(home, [scenario("client-secret")])
    env = env_of(objects)
    assert env["AZURE_CLIENT_SECRET"]["valueFrom"] == {
        "secretKeyRef": {"name": "b2ckeys-azure-client", "key": "client-secret"}
    }
    labels = deployment_of(objects)["spec"]["template"]["metadata"]["labels"]
    assert "azure.workload.identity/use" not in labels
    assert (
        "azure.workload.identity/use" not in only(objects, "ServiceAccount")["metadata"]["labels"]
    )


def test_a_client_certificate_is_mounted_where_the_path_points(home: Path) -> None:
    objects = render(home, [scenario("client-certificate")])
    env = env_of(objects)
    path = Path(env["AZURE_CLIENT_CERTIFICATE_PATH"]["value"])
    (container,) = pod_of(objects)["containers"]
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod_of(objects)["volumes"]}
    mount = mounts["client-certificate"]
    assert mount["readOnly"] is True
    assert path.parent == Path(mount["mountPath"])
    secret = volumes["client-certificate"]["secret"]
    assert secret["secretName"] == "b2ckeys-azure-client-certificate"
    assert secret["items"] == [{"key": "client.pem", "path": path.name}]
    assert env["AZURE_CLIENT_CERTIFICATE_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "b2ckeys-azure-client-certificate",
        "key": "password",
    }


def settings_variables() -> set[str]:
    source = (ROOT / "operator" / "b2ckeys" / "settings.py").read_text(encoding="utf-8")
    return set(re.findall(r"\"((?:B2CKEYS|AZURE)_[A-Z_]+)\"", source))


def test_every_operator_setting_is_a_value(home: Path) -> None:
    rendered: set[str] = set()
    for name in ("tuned", "client-certificate", "client-secret"):
        rendered |= env_of(render(home, [scenario(name)])).keys()
    wanted = (settings_variables() | CONTRACT_VARIABLES) - WEBHOOK_VARIABLES
    assert not wanted - rendered, f"no value sets {sorted(wanted - rendered)}"


def test_defaults_set_no_tuning_so_the_operators_own_defaults_hold(
    default_render: list[Obj],
) -> None:
    set_by_default = {n for n in env_of(default_render) if n.startswith("B2CKEYS_")}
    assert set_by_default == {
        "B2CKEYS_LEADER_ELECTION",
        "B2CKEYS_LEADER_ELECTION_LEASE_NAME",
        "B2CKEYS_METRICS_ADDRESS",
    }
    env = env_of(default_render)
    assert env["B2CKEYS_LEADER_ELECTION"]["value"] == "true"
    assert env["B2CKEYS_LEADER_ELECTION_LEASE_NAME"]["value"] == "b2ckeys-leader"
    for name in ("POD_ID", "POD_NAME"):
        assert env[name]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"


def test_the_tuned_values_are_settings_the_operator_accepts(home: Path) -> None:
    env = env_of(render(home, [scenario("tuned")]))
    plain = {name: e["value"] for name, e in env.items() if "value" in e}
    # Secret-backed variables get stand-ins (their values live in Secrets, not in values).
    from_secrets = {
        name: "stand-in" for name, e in env.items() if "secretKeyRef" in e.get("valueFrom", {})
    }
    # The workload identity webhook's variable, as it would set it.
    token = {"AZURE_FEDERATED_TOKEN_FILE": "/var/run/secrets/azure/tokens/azure-identity-token"}
    environ = {**plain, **from_secrets, **token, "KUBECONFIG": "/dev/null"}
    tuned = Settings.from_env(environ)
    tenant = {k: environ[k] for k in ("AZURE_TENANT_ID", "AZURE_CLIENT_ID")}
    defaults = Settings.from_env({**tenant, **token, "KUBECONFIG": "/dev/null"})
    assert tuned.resync_interval == 15 * 60
    assert tuned.max_concurrent_reconciles == 4
    assert tuned.watch_selector == "example.com/b2ckeys=true"
    assert tuned.json_logs is True
    assert tuned.graph is not None
    assert tuned.graph.base_url == "https://graph.microsoft.us/beta"
    assert tuned.graph.authority_host == "https://login.microsoftonline.us"
    assert tuned.fingerprint_pepper is not None
    assert tuned.previous_fingerprint_peppers
    assert tuned != defaults
    (container,) = pod_of(render(home, [scenario("tuned")]))["containers"]
    assert container["args"] == [
        "run",
        "--namespace=team-a",
        "--namespace=team-b",
        "--liveness=http://0.0.0.0:8080/healthz",
    ]


def test_extra_env_volumes_and_pod_metadata_reach_the_pod(home: Path) -> None:
    objects = render(home, [scenario("tuned")])
    values = yaml.safe_load(scenario("tuned").read_text(encoding="utf-8"))
    pod, template = pod_of(objects), deployment_of(objects)["spec"]["template"]
    (container,) = pod["containers"]
    for extra in values["extraEnv"]:
        assert extra in container["env"]
    for volume in values["extraVolumes"]:
        assert volume in pod["volumes"]
    for mount in values["extraVolumeMounts"]:
        assert mount in container["volumeMounts"]
    assert values["podLabels"].items() <= template["metadata"]["labels"].items()
    assert template["metadata"]["annotations"] == values["podAnnotations"]
    assert pod["tolerations"] == values["tolerations"]
    assert pod["nodeSelector"] == values["nodeSelector"]
    assert container["resources"] == values["resources"]
    for obj in objects:
        assert obj["metadata"]["labels"]["example.com/cost-center"] == "1234", obj["kind"]


def test_high_availability_spreads_three_replicas(home: Path) -> None:
    objects = render(home, [scenario("high-availability")])
    assert deployment_of(objects)["spec"]["replicas"] == 3
    assert only(objects, "PodDisruptionBudget")["spec"] == {
        "minAvailable": 2,
        "selector": deployment_of(objects)["spec"]["selector"],
    }
    pod = pod_of(objects)
    (required,) = pod["affinity"]["podAntiAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]
    pod_labels = deployment_of(objects)["spec"]["template"]["metadata"]["labels"]
    assert required["topologyKey"] == "kubernetes.io/hostname"
    assert required["labelSelector"]["matchLabels"].items() <= pod_labels.items()
    assert pod["priorityClassName"] == "system-cluster-critical"


def test_the_default_cluster_tenant_follows_design(home: Path) -> None:
    objects = render(home, [scenario("cluster-tenant")])
    tenant = only(objects, "ClusterB2CTenant")
    assert tenant["apiVersion"] == "b2ckeys.dev/v1alpha1"
    assert tenant["metadata"]["name"] == "contoso"
    assert tenant["spec"] == {
        "tenantId": "contoso.onmicrosoft.com",
        "clientId": "11111111-2222-3333-4444-555555555555",
        "auth": {"workloadIdentity": {}},
        "namespaceSelector": {"matchLabels": {"team": "identity"}},
        "keySetIdPatterns": ["B2C_1A_Identity*"],
    }


# --- RBAC: the chart grants what deploy/base grants ----------------------------------------------


def test_the_lease_role_is_the_contracts(default_render: list[Obj]) -> None:
    role = only(default_render, "Role")
    assert role["metadata"]["namespace"] == NAMESPACE
    assert role["rules"] == LEASE_RULES
    binding = only(default_render, "RoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    lease = env_of(default_render)["B2CKEYS_LEADER_ELECTION_LEASE_NAME"]["value"]
    assert role["rules"][1]["resourceNames"] == [lease]


def test_a_renamed_lease_is_the_one_the_role_grants(home: Path) -> None:
    objects = render(home, [scenario("tuned")])
    assert only(objects, "Role")["rules"][1]["resourceNames"] == ["b2ckeys-primary"]
    assert env_of(objects)["B2CKEYS_LEADER_ELECTION_LEASE_NAME"]["value"] == "b2ckeys-primary"


def test_the_chart_and_the_kustomize_base_grant_the_same(
    default_render: list[Obj], base_objects: list[Obj]
) -> None:
    chart = operator_grants(default_render, "b2ckeys", NAMESPACE)
    base = operator_grants(base_objects, "b2ckeys", NAMESPACE)
    assert chart, "the chart binds no role to its ServiceAccount"
    only_chart = sorted(str(g) for g in chart - base)
    only_base = sorted(str(g) for g in base - chart)
    assert (only_chart, only_base) == ([], []), (
        f"granted by the chart only: {only_chart}; by deploy/base only: {only_base}"
    )


def test_a_release_under_another_name_grants_the_same(
    home: Path, default_render: list[Obj]
) -> None:
    objects = render(home, release="identity-keys", namespace="platform")
    ours = operator_grants(objects, "identity-keys-b2ckeys", "platform")
    default = operator_grants(default_render, "b2ckeys", NAMESPACE)

    def unscoped(grants: set[Any]) -> set[tuple[str, str, str, str]]:
        return {
            ("cluster" if g.scope == "cluster" else "namespace", g.api_group, g.resource, g.verb)
            for g in grants
        }

    assert unscoped(ours) == unscoped(default)
    names = {g.resource_name for g in ours if g.resource == "leases"}
    assert names == {"*", "identity-keys-b2ckeys-leader"}


@pytest.mark.parametrize(
    ("auth", "expected"),
    [
        ({}, {"workloadIdentity": {}}),
        (
            {"clusterTenant.auth.clientSecret.secretRef.name": "b2c-app"},
            {"clientSecret": {"secretRef": {"name": "b2c-app", "key": "client-secret"}}},
        ),
    ],
    ids=["default-workload-identity", "client-secret"],
)
def test_the_cluster_tenant_has_exactly_one_credential(
    home: Path, auth: dict[str, str], expected: Obj
) -> None:
    ids = {
        "clusterTenant.enabled": "true",
        "clusterTenant.tenantId": "contoso.onmicrosoft.com",
        "clusterTenant.clientId": "11111111-2222-3333-4444-555555555555",
    }
    if auth:
        auth = {**auth, "clusterTenant.auth.clientSecret.secretRef.key": "client-secret"}
    tenant = only(render(home, set_values={**ids, **auth}), "ClusterB2CTenant")
    assert tenant["spec"]["auth"] == expected
