"""B2CTenant and ClusterB2CTenant on the emulators: who may use which tenant, per-tenant
credentials that rotate without a restart, and tenants that come and go.

Each rule of the tenants issue that is real at this tier has a test here; RBAC and impersonation
are on the real kube-apiserver tier (tests/cluster/test_tenant_isolation.py).
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from harness import (
    CLIENT_ID,
    CLIENT_SECRET,
    READONLY_CLIENT_ID,
    READONLY_SECRET,
    TENANT,
    Graph,
    Kube,
    OperatorControl,
    Servers,
    keyset,
    ready,
    secret,
    wait_for,
)

from b2ckeys.settings import API_GROUP, API_VERSION
from b2ckeys_emulators.devpki import rsa_key, service_account_token
from b2ckeys_emulators.graph.identity import FEDERATED_AUDIENCE
from b2ckeys_emulators.graph.server import (
    EmulatedApp,
    Fault,
    GraphEmulator,
    RequestRecord,
    serve_graph_emulator,
)
from go_tools import argocd_health


def tenant_body(
    name: str,
    servers: Servers,
    *,
    cluster: bool = False,
    secret_name: str = "b2c-app",
    client_id: str = CLIENT_ID,
    tenant_id: str = TENANT,
    graph_url: str | None = None,
    **spec: Any,
) -> dict[str, Any]:
    url = graph_url or servers.graph_url
    return {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": "ClusterB2CTenant" if cluster else "B2CTenant",
        "metadata": {"name": name},
        "spec": {
            "tenantId": tenant_id,
            "clientId": client_id,
            "auth": {"clientSecret": {"secretRef": {"name": secret_name, "key": "client-secret"}}},
            "graphBaseUrl": url + "/beta",
            "authorityHost": url,
            **spec,
        },
    }


def app_secret(value: str = CLIENT_SECRET, name: str = "b2c-app") -> dict[str, Any]:
    return secret(name, {"client-secret": value.encode()})


def tenant_ref(name: str, *, cluster: bool = False) -> dict[str, str]:
    return {"kind": "ClusterB2CTenant" if cluster else "B2CTenant", "name": name}


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def other_namespace(kube: Kube) -> AsyncIterator[str]:
    name = f"{kube.namespace}-b"
    await kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    yield name
    await kube.delete({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})


async def tenant_status(kube: Kube, body: dict[str, Any]) -> dict[str, Any]:
    current = await kube.get(body)
    return (current or {}).get("status") or {}


async def wait_tenant(kube: Kube, body: dict[str, Any], reason: str) -> dict[str, Any]:
    async def reached() -> dict[str, Any] | None:
        status = await tenant_status(kube, body)
        return status if ready({"status": status}).get("reason") == reason else None

    found = await wait_for(f"{body['kind']} {body['metadata']['name']} {reason}", reached)
    assert found is not None
    return found


async def test_a_b2ctenant_serves_key_sets_of_its_own_namespace_only(
    kube: Kube, graph: Graph, operator: OperatorControl, servers: Servers, other_namespace: str
) -> None:
    operator.stop()
    await operator.start(also=[other_namespace])
    await kube.create(app_secret())
    tenant = await kube.create(tenant_body("contoso", servers))
    key_set = unique("Own")
    await kube.create(
        keyset("own", key_set, {"generate": {"kty": "RSA"}}, tenantRef=tenant_ref("contoso"))
    )
    synced = await kube.wait_reason("own", "Synced")
    assert synced["status"]["keySetId"] == f"B2C_1A_{key_set}"
    assert f"B2C_1A_{key_set}" in await graph.key_sets()
    status = await wait_tenant(kube, tenant, "Verified")
    assert status["permission"] == "read-write"
    assert status["lastVerified"]

    # The same name from another namespace finds no B2CTenant there: nothing is written.
    foreign = unique("Foreign")
    elsewhere = Kube(kube.http, other_namespace)
    await elsewhere.create(
        keyset("borrow", foreign, {"generate": {"kty": "RSA"}}, tenantRef=tenant_ref("contoso"))
    )
    refused = await elsewhere.wait_reason("borrow", "TenantNotAllowed")
    message = ready(refused)["message"]
    assert f"B2CTenant {other_namespace}/contoso does not exist" in message
    assert "its own namespace" in message
    assert f"B2C_1A_{foreign}" not in await graph.key_sets()


async def test_a_cluster_tenant_follows_its_namespace_selector_and_key_set_patterns(
    kube: Kube, graph: Graph, operator: OperatorControl, servers: Servers
) -> None:
    operator.stop()
    await operator.start(operator_namespace=kube.namespace)
    team = unique("team")
    await kube.create(app_secret())
    name = unique("shared-")
    shared = tenant_body(
        name,
        servers,
        cluster=True,
        namespaceSelector={"matchLabels": {"b2ckeys.dev/team": team}},
        keySetIdPatterns=["B2C_1A_Team*"],
    )
    await kube.create(shared)
    try:
        allowed, other = unique("TeamSigning"), unique("Other")
        ref = tenant_ref(name, cluster=True)
        await kube.create(keyset("allowed", allowed, {"generate": {"kty": "RSA"}}, tenantRef=ref))
        await kube.create(keyset("pattern", other, {"generate": {"kty": "RSA"}}, tenantRef=ref))
        # Not selected yet: the namespace lacks the label.
        refused = await kube.wait_reason("allowed", "TenantNotAllowed")
        assert "does not select namespace" in ready(refused)["message"]

        namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": kube.namespace}}
        await kube.patch(namespace, {"metadata": {"labels": {"b2ckeys.dev/team": team}}})
        await kube.wait_reason("allowed", "Synced")
        by_pattern = await kube.wait_reason("pattern", "TenantNotAllowed")
        assert "B2C_1A_Team*" in ready(by_pattern)["message"]
        assert f"B2C_1A_{other}" not in await graph.key_sets()

        # Relabelling takes access away at once (not at the next resync): a rotation of the
        # refused key set's source writes nothing more.
        writes = await graph.writes()
        await kube.patch(namespace, {"metadata": {"labels": {"b2ckeys.dev/team": "someone-else"}}})
        lost = await kube.wait_reason("allowed", "TenantNotAllowed", within=5)
        assert "does not select namespace" in ready(lost)["message"]
        await kube.patch(
            await kube.keyset("allowed") or {},
            {"spec": {"rotation": {"every": "1s"}}},
        )
        await kube.wait_keyset(
            "allowed",
            lambda o: (o.get("status") or {}).get("observedGeneration") == 2,
            "the rotation request observed",
        )
        assert await graph.writes() == writes

        # Editing the tenant to select the namespace again restores access.
        await kube.patch(
            shared,
            {"spec": {"namespaceSelector": {"matchLabels": {"b2ckeys.dev/team": "someone-else"}}}},
        )
        await kube.wait_reason("allowed", "Synced")
    finally:
        await kube.delete(shared)


async def test_tenant_status_says_what_is_wrong_with_its_credentials(
    kube: Kube, operator: OperatorControl, servers: Servers
) -> None:
    await kube.create(app_secret("not-the-secret", name="wrong"))
    await kube.create(app_secret(READONLY_SECRET, name="reader"))
    missing = await kube.create(tenant_body("missing", servers, secret_name="absent"))
    wrong = await kube.create(tenant_body("wrong", servers, secret_name="wrong"))
    reader = await kube.create(
        tenant_body("reader", servers, secret_name="reader", client_id=READONLY_CLIENT_ID)
    )
    unknown = await kube.create(
        tenant_body("unknown", servers, secret_name="wrong", tenant_id="nobody.onmicrosoft.com")
    )
    assert (
        "does not exist"
        in ready({"status": await wait_tenant(kube, missing, "CredentialsNotFound")})["message"]
    )
    assert (
        "refused the credentials"
        in ready({"status": await wait_tenant(kube, wrong, "InvalidCredentials")})["message"]
    )
    read_only = await wait_tenant(kube, reader, "MissingPermission")
    assert read_only["permission"] == "read"
    assert "TrustFrameworkKeySet.ReadWrite.All" in ready({"status": read_only})["message"]
    assert (
        "nobody.onmicrosoft.com"
        in ready({"status": await wait_tenant(kube, unknown, "UnknownTenant")})["message"]
    )

    # A key set naming a tenant whose Secret is missing is Unauthorized with the reason.
    await kube.create(
        keyset(
            "stuck", unique("Stuck"), {"generate": {"kty": "RSA"}}, tenantRef=tenant_ref("missing")
        )
    )
    stuck = await kube.wait_reason("stuck", "Unauthorized")
    assert "absent does not exist" in ready(stuck)["message"]
    # Creating the Secret fixes both without a restart.
    await kube.create(app_secret(name="absent"))
    await wait_tenant(kube, missing, "Verified")
    # Argo CD's view of the same objects, through deploy/argocd's health.lua.
    assert argocd_health(await kube.get(missing) or {})["status"] == "Healthy"
    degraded = argocd_health(await kube.get(reader) or {})
    assert degraded["status"] == "Degraded"
    assert "TrustFrameworkKeySet.ReadWrite.All" in degraded["message"]


async def test_a_rotated_client_secret_is_used_without_a_restart_and_a_deleted_tenant_stops_writes(
    kube: Kube, graph: Graph, operator: OperatorControl, servers: Servers
) -> None:
    await kube.create(app_secret())
    tenant = await kube.create(tenant_body("rotating", servers))
    await kube.create(secret("fb", {"k": b"value-1"}))
    ref = tenant_ref("rotating")
    await kube.create(
        keyset("fb", unique("Fb"), {"secret": {"name": "fb", "key": "k"}}, tenantRef=ref)
    )
    await kube.wait_reason("fb", "Synced")

    # The app's secret is rotated in Entra and in the Secret; the next write uses the new one.
    rotated = "rotated-" + uuid.uuid4().hex
    answer = await graph.http.post(f"/_emulator/apps/{CLIENT_ID}/secret", json={"secret": rotated})
    assert answer.status_code == 204
    try:
        source = await kube.get(app_secret())
        assert source is not None
        await kube.patch(source, {"data": app_secret(rotated)["data"]})
        await wait_tenant(kube, tenant, "Verified")
        fb = await kube.get({"kind": "Secret", "metadata": {"name": "fb"}})
        assert fb is not None
        await kube.patch(fb, {"data": secret("fb", {"k": b"value-2"})["data"]})
        await kube.wait_keyset(
            "fb",
            lambda o: (
                ready(o).get("reason") == "Synced" and (o.get("status") or {}).get("keyCount") == 2
            ),
            "the second value uploaded with the rotated credentials",
        )
    finally:
        await graph.http.post(f"/_emulator/apps/{CLIENT_ID}/secret", json={"secret": CLIENT_SECRET})

    # Deleting the tenant stops the key set at once; recreating it recovers.
    await kube.delete(tenant)
    gone = await kube.wait_reason("fb", "TenantNotAllowed", within=5)
    assert "B2CTenant" in ready(gone)["message"]
    assert "does not exist" in ready(gone)["message"]
    await kube.patch(await kube.get(app_secret()) or {}, {"data": app_secret()["data"]})
    await kube.create(tenant_body("rotating", servers))
    await kube.wait_reason("fb", "Synced")


SECOND_TENANT = "b2ckeys-second.onmicrosoft.com"
SECOND_CLIENT = "0b2c0000-0000-4000-8000-0000000000b2"
SECOND_SECRET = "second-tenant-secret-" + uuid.uuid4().hex


@pytest.fixture
async def second_tenant(emulator_ca_dir: Path) -> AsyncIterator[GraphEmulator]:
    """Another B2C tenant: its own emulator, app and key sets."""
    app = EmulatedApp(client_id=SECOND_CLIENT, secret=SECOND_SECRET)
    async with serve_graph_emulator(
        tls_dir=emulator_ca_dir, tenant_id=SECOND_TENANT, apps=[app]
    ) as emulator:
        yield emulator


async def test_one_key_set_id_in_two_tenants_is_two_key_sets_and_a_429_holds_back_one_tenant(
    kube: Kube,
    graph: Graph,
    operator: OperatorControl,
    servers: Servers,
    second_tenant: GraphEmulator,
) -> None:
    await kube.create(app_secret())
    await kube.create(app_secret(SECOND_SECRET, name="second-app"))
    await kube.create(tenant_body("first", servers))
    await kube.create(
        tenant_body(
            "second",
            servers,
            secret_name="second-app",
            client_id=SECOND_CLIENT,
            tenant_id=SECOND_TENANT,
            graph_url=second_tenant.url,
        )
    )
    shared = unique("Shared")
    generate = {"generate": {"kty": "RSA"}}
    await kube.create(keyset("in-first", shared, generate, tenantRef=tenant_ref("first")))
    await kube.create(keyset("in-second", shared, generate, tenantRef=tenant_ref("second")))
    # No Conflict: one id, two tenants, two key sets.
    await kube.wait_reason("in-first", "Synced")
    await kube.wait_reason("in-second", "Synced")
    assert f"B2C_1A_{shared}" in await graph.key_sets()
    assert f"B2C_1A_{shared}" in second_tenant.state.key_set_ids()

    # The first tenant throttles for a while: its key sets wait; the second's keep syncing.
    await graph.fault(method="GET", path="keySets/B2C_1A_Late", status=429, retry_after="30")
    late, prompt = unique("Late"), unique("Prompt")
    await kube.create(keyset("late", late, generate, tenantRef=tenant_ref("first")))
    await kube.wait_reason("late", "Throttled")
    await kube.create(keyset("prompt", prompt, generate, tenantRef=tenant_ref("second")))
    await kube.wait_reason("prompt", "Synced", within=10)
    assert ready(await kube.keyset("late") or {})["reason"] == "Throttled"
    assert f"B2C_1A_{prompt}" in second_tenant.state.key_set_ids()


async def test_workload_identity_serves_several_tenants_from_one_rewritten_token_file(
    kube: Kube,
    operator: OperatorControl,
    servers: Servers,
    emulator_ca_dir: Path,
    tmp_path: Path,
) -> None:
    cluster_key = rsa_key(2048, 7)
    issuer = "https://oidc.cluster.test/issuer"
    subject = "system:serviceaccount:b2ckeys-system:b2ckeys"
    public = cluster_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    apps = {
        tenant_id: EmulatedApp(
            client_id=f"0b2c0000-0000-4000-8000-00000000f00{i}",
            federated_issuer=issuer,
            federated_subject=subject,
            federated_public_key_pem=public,
        )
        for i, tenant_id in enumerate(("wi-one.onmicrosoft.com", "wi-two.onmicrosoft.com"))
    }
    token_file = tmp_path / "azure-identity-token"

    def project_token(lifetime: int) -> float:
        """Write a token as the kubelet does; when it expires."""
        token = service_account_token(
            cluster_key,
            issuer=issuer,
            subject=subject,
            audience=FEDERATED_AUDIENCE,
            lifetime=lifetime,
        )
        token_file.write_text(token, encoding="utf-8")
        return time.time() + lifetime

    # A short-lived first token: once it has expired, only a re-read file can authenticate.
    first_expires = project_token(lifetime=4)
    operator.stop()
    await operator.start(workload_identity_token_file=str(token_file))
    async with contextlib.AsyncExitStack() as stack:
        emulators = [
            await stack.enter_async_context(
                serve_graph_emulator(tls_dir=emulator_ca_dir, tenant_id=tenant_id, apps=[app])
            )
            for tenant_id, app in apps.items()
        ]
        for i, emulator in enumerate(emulators):
            body = tenant_body(
                f"wi-{i}",
                servers,
                client_id=emulator.apps[0].client_id,
                tenant_id=emulator.tenant_id,
                graph_url=emulator.url,
            )
            body["spec"]["auth"] = {"workloadIdentity": {}}
            await kube.create(body)
            await kube.create(
                keyset(
                    f"wi-{i}",
                    f"Wi{i}{uuid.uuid4().hex[:6]}",
                    {"generate": {"kty": "RSA"}},
                    tenantRef=tenant_ref(f"wi-{i}"),
                )
            )
        for i in range(len(emulators)):
            await kube.wait_reason(f"wi-{i}", "Synced")

        # The kubelet rewrites the token; Graph then refuses the cached access token, so the
        # operator asks Entra again, which only the rewritten file can satisfy.
        async def expired() -> bool:
            return time.time() > first_expires

        await wait_for("the first projected token to expire", expired)
        project_token(lifetime=600)
        for i, emulator in enumerate(emulators):
            before = _token_requests(emulator)
            emulator.state.add_fault(
                Fault(
                    path="/trustFramework/keySets/", status=401, code="InvalidAuthenticationToken"
                )
            )
            await kube.patch(
                await kube.keyset(f"wi-{i}") or {}, {"spec": {"rotation": {"every": "1h"}}}
            )
            await kube.wait_keyset(
                f"wi-{i}",
                lambda o: (
                    (o.get("status") or {}).get("observedGeneration") == 2
                    and ready(o).get("reason") == "Synced"
                ),
                "a reconcile with an Entra token from the rewritten file",
            )
            assert [r.status for r in _token_requests(emulator)[len(before) :]] == [200]


def _token_requests(emulator: GraphEmulator) -> list[RequestRecord]:
    return [r for r in emulator.state.requests() if r.path.endswith("/oauth2/v2.0/token")]


async def test_a_tenant_resource_naming_the_default_tenant_cannot_write_its_key_sets_twice(
    kube: Kube, graph: Graph, operator: OperatorControl, servers: Servers
) -> None:
    """A B2CTenant for the B2C tenant the operator's default already reaches: a key set through
    it and one through the default name the same B2C key set, so the older owns it and the
    newer reports Conflict instead of adding a second key."""
    await kube.create(app_secret())
    await kube.create(tenant_body("alias", servers))
    shared = unique("Aliased")
    generate = {"generate": {"kty": "RSA"}}
    await kube.create(keyset("by-default", shared, generate))
    await kube.wait_reason("by-default", "Synced")
    await kube.create(keyset("by-alias", shared, generate, tenantRef=tenant_ref("alias")))
    conflict = await kube.wait_reason("by-alias", "Conflict")
    assert "by-default already manages" in ready(conflict)["message"]
    assert len(await graph.keys(f"B2C_1A_{shared}")) == 1

    # The older one goes (its key set stays in B2C): the alias takes over without a new key.
    await kube.delete(await kube.keyset("by-default") or {})
    taken = await kube.wait_reason("by-alias", "Synced")
    assert taken["status"]["keySetId"] == f"B2C_1A_{shared}"
    assert len(await graph.keys(f"B2C_1A_{shared}")) == 1
