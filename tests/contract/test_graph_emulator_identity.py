"""The emulated Entra token endpoint with the REAL azure-identity credentials, and Graph's checks.

Async credentials run in the test's loop (aiohttp under them trusts the session CA); the sync
CertificateCredential goes through MSAL and requests, so it runs in a thread.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path

import httpx
import pytest
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import CertificateCredential as SyncCertificateCredential
from azure.identity.aio import (
    CertificateCredential,
    ClientAssertionCredential,
    ClientSecretCredential,
    WorkloadIdentityCredential,
)
from cryptography.hazmat.primitives.serialization import Encoding
from graph_emulator_support import (
    GRAPH_SCOPE,
    WRITER_SECRET,
    GraphEmulatorApps,
    GraphEmulatorMaterial,
    federated_claims,
    sign_jwt,
)

from b2ckeys_emulators.graph.server import EmulatorRules, GraphEmulator


async def graph_status(emu: GraphEmulator, token: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with httpx.AsyncClient(timeout=10) as http:
        return await http.get(f"{emu.graph_base_url}/trustFramework/keySets", headers=headers)


def secret_credential(emu: GraphEmulator, client_id: str, secret: str) -> ClientSecretCredential:
    return ClientSecretCredential(
        emu.tenant_id,
        client_id,
        secret,
        authority=emu.authority_host,
        disable_instance_discovery=True,
    )


async def test_client_secret_credential_token_opens_graph(graph_emulator: GraphEmulator) -> None:
    async with secret_credential(graph_emulator, "writer-app", WRITER_SECRET) as credential:
        token = await credential.get_token(GRAPH_SCOPE)
    response = await graph_status(graph_emulator, token.token)
    assert response.status_code == 200, response.text
    assert response.json()["value"] == []
    token_requests = [r for r in graph_emulator.state.requests() if r.path.endswith("/token")]
    assert [(r.status, r.client_id) for r in token_requests] == [(200, "writer-app")]


@pytest.mark.parametrize(
    ("tenant", "client_id", "secret", "aadsts"),
    [
        ("emulated", "writer-app", "wrong-secret", "AADSTS7000215"),
        ("emulated", "no-such-app", WRITER_SECRET, "AADSTS700016"),
        ("contoso.onmicrosoft.com", "writer-app", WRITER_SECRET, "AADSTS90002"),
        ("emulated", "certificate-app", "any-secret", "AADSTS7000215"),
    ],
    ids=["wrong secret", "unknown client", "unknown tenant", "app without a secret"],
)
async def test_client_secret_credential_refusals(
    graph_emulator: GraphEmulator, tenant: str, client_id: str, secret: str, aadsts: str
) -> None:
    tenant_id = graph_emulator.tenant_id if tenant == "emulated" else tenant
    credential = ClientSecretCredential(
        tenant_id,
        client_id,
        secret,
        authority=graph_emulator.authority_host,
        disable_instance_discovery=True,
    )
    async with credential:
        with pytest.raises(ClientAuthenticationError, match=aadsts):
            await credential.get_token(GRAPH_SCOPE)


@pytest.mark.parametrize(
    ("form", "status", "error", "code"),
    [
        (
            {"scope": "https://graph.microsoft.com/TrustFrameworkKeySet.Read.All"},
            400,
            "invalid_scope",
            1002012,
        ),
        ({"scope": "https://management.azure.com/.default"}, 400, "invalid_resource", 500011),
        ({"grant_type": "password"}, 400, "unsupported_grant_type", 70003),
        ({"client_secret": ""}, 401, "invalid_client", 7000218),
        ({"client_id": ""}, 400, "invalid_request", 900144),
    ],
    ids=["scope without .default", "not Graph", "grant type", "no credential", "no client_id"],
)
async def test_token_endpoint_refusals_are_shaped_as_entra(
    graph_emulator: GraphEmulator, form: dict[str, str], status: int, error: str, code: int
) -> None:
    data = {
        "grant_type": "client_credentials",
        "client_id": "writer-app",
        "client_secret": WRITER_SECRET,
        "scope": GRAPH_SCOPE,
        **form,
    }
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.post(
            graph_emulator.token_url, data=data, headers={"client-request-id": "corr-1"}
        )
    assert response.status_code == status
    body = response.json()
    assert body["error"] == error
    assert body["error_codes"] == [code]
    assert body["error_description"].startswith(f"AADSTS{code}:")
    assert body["correlation_id"] == "corr-1"
    assert WRITER_SECRET not in response.text


async def test_graph_accepts_the_graph_app_id_as_resource(graph_emulator: GraphEmulator) -> None:
    data = {
        "grant_type": "client_credentials",
        "client_id": "writer-app",
        "client_secret": WRITER_SECRET,
        "scope": "00000003-0000-0000-c000-000000000000/.default",
    }
    async with httpx.AsyncClient(timeout=10) as http:
        answer = (await http.post(graph_emulator.token_url, data=data)).json()
    assert answer["token_type"] == "Bearer"
    assert answer["expires_in"] == EmulatorRules().token_lifetime_seconds
    assert (await graph_status(graph_emulator, answer["access_token"])).status_code == 200


def certificate_pem(material: GraphEmulatorMaterial) -> bytes:
    return material.private_key_pem + material.certificate_pem


async def test_certificate_credential(
    graph_emulator: GraphEmulator, graph_emulator_material: GraphEmulatorMaterial
) -> None:
    credential = CertificateCredential(
        graph_emulator.tenant_id,
        "certificate-app",
        certificate_data=certificate_pem(graph_emulator_material),
        authority=graph_emulator.authority_host,
        disable_instance_discovery=True,
    )
    async with credential:
        token = await credential.get_token(GRAPH_SCOPE)
    assert (await graph_status(graph_emulator, token.token)).status_code == 200


async def test_certificate_credential_with_an_unregistered_certificate(
    graph_emulator: GraphEmulator, graph_emulator_material: GraphEmulatorMaterial
) -> None:
    material = graph_emulator_material
    pem = material.private_key_pem + material.other_certificate.public_bytes(Encoding.PEM)
    credential = CertificateCredential(
        graph_emulator.tenant_id,
        "certificate-app",
        certificate_data=pem,
        authority=graph_emulator.authority_host,
        disable_instance_discovery=True,
    )
    async with credential:
        with pytest.raises(ClientAuthenticationError, match="AADSTS700027"):
            await credential.get_token(GRAPH_SCOPE)


async def test_sync_certificate_credential_through_msal(
    graph_emulator: GraphEmulator, graph_emulator_material: GraphEmulatorMaterial
) -> None:
    # MSAL fetches the OpenID configuration first and signs with the certificate's x5t#S256.
    credential = SyncCertificateCredential(
        graph_emulator.tenant_id,
        "certificate-app",
        certificate_data=certificate_pem(graph_emulator_material),
        authority=graph_emulator.authority_host,
        disable_instance_discovery=True,
    )
    token = await asyncio.to_thread(credential.get_token, GRAPH_SCOPE)
    credential.close()
    assert (await graph_status(graph_emulator, token.token)).status_code == 200
    paths = [r.path for r in graph_emulator.state.requests()]
    assert f"/{graph_emulator.tenant_id}/v2.0/.well-known/openid-configuration" in paths


@pytest.mark.parametrize("client_id", ["federated-rs256-app", "federated-es256-app"])
async def test_workload_identity_credential(
    graph_emulator: GraphEmulator,
    graph_emulator_material: GraphEmulatorMaterial,
    tmp_path: Path,
    client_id: str,
) -> None:
    material = graph_emulator_material
    key = material.rsa_key if "rs256" in client_id else material.ec_key
    token_file = tmp_path / "token"
    token_file.write_text(sign_jwt(federated_claims(), key))
    credential = WorkloadIdentityCredential(
        tenant_id=graph_emulator.tenant_id,
        client_id=client_id,
        token_file_path=str(token_file),
        authority=graph_emulator.authority_host,
        disable_instance_discovery=True,
    )
    async with credential:
        token = await credential.get_token(GRAPH_SCOPE)
    assert (await graph_status(graph_emulator, token.token)).status_code == 200


@pytest.mark.parametrize(
    ("claims", "signer", "aadsts"),
    [
        ({"sub": "system:serviceaccount:other:sa"}, "rsa", "AADSTS70021"),
        ({"iss": "https://elsewhere.test"}, "rsa", "AADSTS70021"),
        ({"aud": ["api://something-else"]}, "rsa", "AADSTS70021"),
        ({}, "other", "AADSTS700027"),
        ({"exp": 1_000_000_000, "nbf": 999_000_000}, "rsa", "AADSTS700024"),
    ],
    ids=["subject", "issuer", "audience", "signature", "expired"],
)
async def test_client_assertion_refusals(
    graph_emulator: GraphEmulator,
    graph_emulator_material: GraphEmulatorMaterial,
    claims: dict[str, object],
    signer: str,
    aadsts: str,
) -> None:
    material = graph_emulator_material
    key = material.rsa_key if signer == "rsa" else material.short_rsa_key
    assertion = sign_jwt(federated_claims(**claims), key)
    credential = ClientAssertionCredential(
        graph_emulator.tenant_id,
        "federated-rs256-app",
        lambda: assertion,
        authority=graph_emulator.authority_host,
    )
    async with credential:
        with pytest.raises(ClientAuthenticationError, match=aadsts):
            await credential.get_token(GRAPH_SCOPE)


async def test_openid_configuration(graph_emulator: GraphEmulator) -> None:
    async with httpx.AsyncClient(base_url=graph_emulator.url, timeout=10) as http:
        known = await http.get(f"/{graph_emulator.tenant_id}/v2.0/.well-known/openid-configuration")
        unknown = await http.get("/contoso.onmicrosoft.com/v2.0/.well-known/openid-configuration")
        keys = await http.get(f"/{graph_emulator.tenant_id}/discovery/v2.0/keys")
    assert known.json()["token_endpoint"] == graph_emulator.token_url
    assert unknown.status_code == 400
    assert unknown.json()["error"] == "invalid_tenant"
    assert unknown.json()["error_codes"] == [90002]
    assert keys.json()["keys"][0]["kty"] == "RSA"


@pytest.mark.parametrize(
    ("authorization", "message"),
    [
        (None, "Access token is empty."),
        ("Basic d3JpdGVyLWFwcDp4", "Access token is empty."),
        ("Bearer not-a-jwt", "IDX14100"),
        ("Bearer eyJhbGciOiJub25lIn0.eyJhdWQiOiJ4In0.", "Access token validation failure."),
    ],
    ids=["missing", "not bearer", "malformed", "unsigned"],
)
async def test_graph_refuses_bad_tokens(
    graph_emulator: GraphEmulator, authorization: str | None, message: str
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.get(
            f"{graph_emulator.graph_base_url}/trustFramework/keySets", headers=headers
        )
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "InvalidAuthenticationToken"
    assert message in response.json()["error"]["message"]
    assert response.headers["WWW-Authenticate"].startswith("Bearer ")


async def test_tokens_expire_on_the_emulator_clock(graph_emulator_factory: object) -> None:
    rules = EmulatorRules(token_lifetime_seconds=120)
    async with graph_emulator_factory(rules) as emu:  # type: ignore[operator]
        async with secret_credential(emu, "writer-app", WRITER_SECRET) as credential:
            first = await credential.get_token(GRAPH_SCOPE)
        # azure-identity reads the lifetime from expires_in and plans its refresh from it.
        assert 110 <= first.expires_on - time.time() <= 121
        assert (await graph_status(emu, first.token)).status_code == 200
        emu.state.advance_clock(121)
        expired = await graph_status(emu, first.token)
        assert expired.status_code == 401
        assert "expired" in expired.json()["error"]["message"]
        # azure-identity refreshes at most every 30 s, so a new credential shows the new token.
        async with secret_credential(emu, "writer-app", WRITER_SECRET) as credential:
            second = await credential.get_token(GRAPH_SCOPE)
        assert second.token != first.token
        assert (await graph_status(emu, second.token)).status_code == 200


async def test_no_secret_or_token_reaches_logs_or_the_request_log(
    graph_emulator: GraphEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with secret_credential(graph_emulator, "writer-app", WRITER_SECRET) as credential:
        token = await credential.get_token(GRAPH_SCOPE)
    async with httpx.AsyncClient(timeout=10) as http:
        await http.get(
            f"{graph_emulator.url}/{graph_emulator.tenant_id}/oauth2/v2.0/token",
        )
        log = (await http.get(f"{graph_emulator.url}/_emulator/requests")).text
    await graph_status(graph_emulator, token.token)
    recorded = json.dumps([r.__dict__ for r in graph_emulator.state.requests()])
    for text in (caplog.text, log, recorded):
        assert WRITER_SECRET not in text
        assert token.token not in text
        assert token.token.split(".")[2] not in text


def test_apps_do_not_reveal_their_secret(graph_emulator_apps: GraphEmulatorApps) -> None:
    assert WRITER_SECRET not in repr(graph_emulator_apps.writer)
