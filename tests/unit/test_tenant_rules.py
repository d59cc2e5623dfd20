"""The tenant rules, pure: who may use a B2CTenant or a ClusterB2CTenant, for which key sets."""

from __future__ import annotations

from typing import Any

import pytest

from b2ckeys.model import TenantRef
from b2ckeys.tenants import (
    ClientCertificateAuth,
    ClientSecretAuth,
    TenantKey,
    TenantResource,
    WorkloadIdentityAuth,
    key_set_id_allowed,
    parse_tenant_spec,
    refusal,
    tenant_key,
)

BASE = {
    "tenantId": "contoso.onmicrosoft.com",
    "clientId": "00000000-0000-4000-8000-000000000001",
    "auth": {"workloadIdentity": {}},
}


def cluster_tenant(**spec: Any) -> TenantResource:
    body = {"metadata": {"name": "shared", "generation": 1}, "spec": {**BASE, **spec}}
    return TenantResource.from_body("ClusterB2CTenant", body)


def may(
    tenant: TenantResource, namespace: str, labels: dict[str, str] | None, key_set: str
) -> bool:
    found = refusal(tenant, namespace=namespace, namespace_labels=labels, key_set_id=key_set)
    return found is None


def test_a_b2ctenant_ref_is_looked_up_in_the_key_sets_own_namespace() -> None:
    assert tenant_key("team-a", TenantRef("B2CTenant", "t")) == TenantKey(
        "B2CTenant", "team-a", "t"
    )
    assert tenant_key("team-a", TenantRef("ClusterB2CTenant", "t")) == TenantKey(
        "ClusterB2CTenant", "", "t"
    )
    assert tenant_key("team-a", None) is None


def test_a_b2ctenant_refuses_other_namespaces() -> None:
    body = {"metadata": {"name": "t", "namespace": "team-a"}, "spec": BASE}
    tenant = TenantResource.from_body("B2CTenant", body)
    assert may(tenant, "team-a", None, "Any")
    why = refusal(tenant, namespace="team-b", namespace_labels={}, key_set_id="Any")
    assert why is not None
    assert "its own namespace" in why


@pytest.mark.parametrize(
    ("selector", "labels", "allowed"),
    [
        ({}, {"team": "id"}, False),  # empty selects none
        ({"matchLabels": {"team": "id"}}, {"team": "id", "x": "y"}, True),
        ({"matchLabels": {"team": "id"}}, {"team": "other"}, False),
        (
            {"matchExpressions": [{"key": "team", "operator": "In", "values": ["a", "id"]}]},
            {"team": "id"},
            True,
        ),
        (
            {"matchExpressions": [{"key": "team", "operator": "NotIn", "values": ["id"]}]},
            {"team": "id"},
            False,
        ),
        ({"matchExpressions": [{"key": "team", "operator": "Exists"}]}, {"team": ""}, True),
        ({"matchExpressions": [{"key": "team", "operator": "DoesNotExist"}]}, {}, True),
        ({"matchLabels": {"team": "id"}}, None, False),  # an unknown namespace is not selected
    ],
)
def test_a_cluster_tenant_serves_the_namespaces_its_selector_matches(
    selector: dict[str, Any], labels: dict[str, str] | None, allowed: bool
) -> None:
    tenant = cluster_tenant(namespaceSelector=selector)
    assert may(tenant, "ns", labels, "Any") is allowed


def test_key_set_id_patterns_are_globs_on_the_prefixed_id_without_case() -> None:
    assert key_set_id_allowed("Team1Signing", ["B2C_1A_Team1*"])
    assert key_set_id_allowed("b2c_1a_team1signing", ["B2C_1A_TEAM1*"])
    assert not key_set_id_allowed("Team2Signing", ["B2C_1A_Team1*"])
    assert key_set_id_allowed("TeamX", ["B2C_1A_Team?"])
    tenant = cluster_tenant(
        namespaceSelector={"matchLabels": {"team": "id"}}, keySetIdPatterns=["B2C_1A_Team1*"]
    )
    assert may(tenant, "ns", {"team": "id"}, "Team1Signing")
    why = refusal(tenant, namespace="ns", namespace_labels={"team": "id"}, key_set_id="Other")
    assert why is not None
    assert "B2C_1A_Team1*" in why
    everything = cluster_tenant(namespaceSelector={"matchLabels": {"team": "id"}})
    assert may(everything, "ns", {"team": "id"}, "Anything")


def test_auth_needs_exactly_one_kind_and_names_only_a_secret_never_a_namespace() -> None:
    secret = parse_tenant_spec(
        "B2CTenant",
        {**BASE, "auth": {"clientSecret": {"secretRef": {"name": "app", "key": "s"}}}},
    )
    assert secret.auth == ClientSecretAuth("app", "s")
    cert = parse_tenant_spec(
        "B2CTenant", {**BASE, "auth": {"clientCertificate": {"secretRef": {"name": "tls"}}}}
    )
    assert cert.auth == ClientCertificateAuth("tls")
    assert parse_tenant_spec("B2CTenant", BASE).auth == WorkloadIdentityAuth()
    both = {"workloadIdentity": {}, "clientCertificate": {"secretRef": {"name": "tls"}}}
    broken = TenantResource.from_body(
        "B2CTenant", {"metadata": {"name": "b", "namespace": "n"}, "spec": {**BASE, "auth": both}}
    )
    assert broken.spec is None
    assert broken.spec_error is not None
    assert "exactly one" in broken.spec_error
    why = refusal(broken, namespace="n", namespace_labels={}, key_set_id="X")
    assert why is not None
    assert "fix the tenant" in why
