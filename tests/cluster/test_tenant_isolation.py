"""Tenants on the real kube-apiserver: the CRDs refuse what no tenant may say, and a namespace
user cannot use the operator to reach another namespace's Secrets or a tenant not granted to it.

Rule 8 of the tenants issue: a user who may create key sets in team-a, and read Secrets there
only, tries every escape as that user (kubectl impersonation, as `kubectl --as` does); each is
refused by the API server or by the operator, and nothing reaches Graph.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from apiserver import KubeCluster, wait_until
from keyset_objects import Keysets, keyset, ready, secret, unique_key_set_id
from kubectl_cli import kubectl
from operator_process import CLIENT_ID, TENANT, RunningOperator

pytestmark = pytest.mark.cluster

USER = "alice@team-a.example"
GROUP_VERSION = "b2ckeys.dev/v1alpha1"
SETTLE_TIMEOUT_SECONDS = 30.0


def team_role(namespace: str) -> list[dict[str, Any]]:
    """What a team member typically holds in their own namespace, and nothing elsewhere."""
    rules = [
        {
            "apiGroups": ["b2ckeys.dev"],
            "resources": ["trustframeworkkeysets", "b2ctenants"],
            "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"],
        },
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "create"]},
    ]
    return [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "team-member", "namespace": namespace},
            "rules": rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "team-member", "namespace": namespace},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "team-member",
            },
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": USER}],
        },
    ]


def tenant(kind: str, name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": GROUP_VERSION,
        "kind": kind,
        "metadata": {"name": name},
        "spec": {
            "tenantId": TENANT,
            "clientId": CLIENT_ID,
            "auth": {"clientSecret": {"secretRef": {"name": "b2c-app", "key": "client-secret"}}},
            **spec,
        },
    }


def as_user(cluster: KubeCluster, workdir: Path, *args: str, stdin: str | None = None) -> Any:
    return kubectl(cluster, workdir, f"--as={USER}", *args, stdin=stdin)


def test_no_field_names_another_namespace_and_auth_takes_exactly_one_kind(
    kube_cluster: KubeCluster, installed_crds: list[str], namespace: str, tmp_path: Path
) -> None:
    foreign_source = keyset(
        "foreign", "Foreign", {"tlsSecret": {"name": "tls", "namespace": "kube-system"}}
    )
    applied = kubectl(
        kube_cluster,
        tmp_path,
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        stdin=yaml.safe_dump(foreign_source),
    )
    assert applied.returncode != 0
    assert "tlsSecret.namespace cannot be set" in applied.stderr

    foreign_secret = tenant("B2CTenant", "foreign")
    foreign_secret["spec"]["auth"]["clientSecret"]["secretRef"]["namespace"] = "kube-system"
    applied = kubectl(
        kube_cluster,
        tmp_path,
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        stdin=yaml.safe_dump(foreign_secret),
    )
    assert applied.returncode != 0
    assert 'unknown field "spec.auth.clientSecret.secretRef.namespace"' in applied.stderr

    two = tenant("ClusterB2CTenant", f"two-{uuid.uuid4().hex[:6]}")
    two["spec"]["auth"]["workloadIdentity"] = {}
    applied = kubectl(kube_cluster, tmp_path, "apply", "-f", "-", stdin=yaml.safe_dump(two))
    assert applied.returncode != 0
    assert "exactly one of clientSecret, clientCertificate or workloadIdentity" in applied.stderr


def test_a_team_member_cannot_reach_other_namespaces_or_ungranted_tenants_through_the_operator(
    kube_cluster: KubeCluster, operator: RunningOperator, tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:6]
    team_a, team_b = f"team-a-{suffix}", f"team-b-{suffix}"
    for name in (team_a, team_b):
        kube_cluster.create_namespace(name)
    kube_cluster.apply(team_role(team_a))
    kube_cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": team_b, "labels": {"team": suffix}},
        }
    )
    # Team b's own tenant and Secret, and a cluster tenant granted to team b only.
    kube_cluster.apply(secret("b2c-app", {"client-secret": b"team-b-secret"}), namespace=team_b)
    kube_cluster.apply(secret("b-signing", {"k": b"team-b-key"}), namespace=team_b)
    kube_cluster.apply(tenant("B2CTenant", "b-tenant"), namespace=team_b)
    cluster_tenant = f"team-b-only-{suffix}"
    kube_cluster.apply(
        tenant(
            "ClusterB2CTenant", cluster_tenant, namespaceSelector={"matchLabels": {"team": suffix}}
        )
    )
    ids = {name: unique_key_set_id(name) for name in ("Cluster", "Borrowed", "Secret")}

    # 1. Name the cluster tenant granted to team b: accepted by RBAC, refused by the operator.
    # 2. Name team b's B2CTenant: there is no field for its namespace, so it is team a's own.
    attempts = [
        keyset(
            "cluster",
            ids["Cluster"],
            {"generate": {"kty": "RSA"}},
            tenantRef={"kind": "ClusterB2CTenant", "name": cluster_tenant},
        ),
        keyset(
            "borrowed",
            ids["Borrowed"],
            {"generate": {"kty": "RSA"}},
            tenantRef={"kind": "B2CTenant", "name": "b-tenant"},
        ),
    ]
    for attempt in attempts:
        created = as_user(
            kube_cluster, tmp_path, "apply", "-n", team_a, "-f", "-", stdin=yaml.safe_dump(attempt)
        )
        assert created.returncode == 0, created.stderr
    keysets = Keysets(kube_cluster, team_a)
    for name in ("cluster", "borrowed"):
        wait_until(
            lambda name=name: keysets.settled(name, "TenantNotAllowed") is not None,
            timeout=SETTLE_TIMEOUT_SECONDS,
            what=f"{name} refused",
        )
    assert "does not select namespace" in ready(keysets.get("cluster"))["message"]
    assert (
        f"B2CTenant {team_a}/b-tenant does not exist" in ready(keysets.get("borrowed"))["message"]
    )

    # 3. Point a key set at team b's Secret: refused at admission (no namespace field), and a
    #    same-named Secret is looked up in team a, where there is none.
    foreign = keyset(
        "secret", ids["Secret"], {"secret": {"name": "b-signing", "key": "k", "namespace": team_b}}
    )
    refused = as_user(
        kube_cluster, tmp_path, "apply", "-n", team_a, "-f", "-", stdin=yaml.safe_dump(foreign)
    )
    assert refused.returncode != 0
    assert "secret.namespace cannot be set" in refused.stderr
    del foreign["spec"]["source"]["secret"]["namespace"]
    created = as_user(
        kube_cluster, tmp_path, "apply", "-n", team_a, "-f", "-", stdin=yaml.safe_dump(foreign)
    )
    assert created.returncode == 0, created.stderr
    wait_until(
        lambda: keysets.settled("secret", "SourceNotFound") is not None,
        timeout=SETTLE_TIMEOUT_SECONDS,
        what="the Secret looked up in team a only",
    )

    # 4. Grant themselves a tenant or a namespace label, or read team b's Secret: RBAC says no.
    forbidden = [
        as_user(
            kube_cluster,
            tmp_path,
            "apply",
            "-f",
            "-",
            stdin=yaml.safe_dump(
                tenant(
                    "ClusterB2CTenant",
                    f"mine-{suffix}",
                    namespaceSelector={"matchLabels": {"team": "a"}},
                )
            ),
        ),
        as_user(kube_cluster, tmp_path, "label", "namespace", team_a, f"team={suffix}"),
        as_user(kube_cluster, tmp_path, "get", "secret", "b-signing", "-n", team_b),
        as_user(
            kube_cluster,
            tmp_path,
            "create",
            "-n",
            team_b,
            "-f",
            "-",
            stdin=yaml.safe_dump(attempts[0]),
        ),
    ]
    for answer in forbidden:
        assert answer.returncode != 0
        assert "forbidden" in answer.stderr.lower(), answer.stderr

    # Nothing from any of it reached Graph.
    for key_set_id in ids.values():
        assert operator.graph.requests(f"B2C_1A_{key_set_id}") == []
