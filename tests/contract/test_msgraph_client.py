"""MsGraphKeySetClient against the Graph emulator: every operation and every credential kind.

Real msgraph-beta-sdk, kiota middleware and azure-identity (async) over loopback HTTPS; nothing
is patched. Faults (throttling, 5xx, lost responses, timeouts) are in test_msgraph_client_faults.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pytest
from graph_emulator_support import (
    FEDERATED_ISSUER,
    FEDERATED_SUBJECT,
    PFX_PASSWORD,
    SECRET_CANARY,
    GraphEmulatorApps,
    GraphEmulatorMaterial,
    der_b64,
    pfx_b64,
    triple_des,
)
from msgraph_client_support import (
    certificate_thumbprint,
    connection,
    federated_token,
    graph_calls,
    open_client,
    token_calls,
    write_certificate_credential,
)

from b2ckeys.graph.client import (
    Forbidden,
    GraphConnection,
    KeySetAlreadyExists,
    KeySetNotFound,
    NoActiveKey,
    Unauthorized,
)
from b2ckeys.graph.msgraph import MsGraphKeySetClient, warm_up_models
from b2ckeys.graph.msgraph_pipeline import REQUIRED_PERMISSION
from b2ckeys.secret import SecretStr
from b2ckeys_emulators.graph.server import EmulatorRules, GraphEmulator

HOUR = 3600
# Short enough that a test can outlive a token, long enough that a fresh token (whose expiry the
# emulator truncates to whole seconds) is still valid when the request it was fetched for arrives.
SHORT_TOKEN_SECONDS = 2
SHORT_TOKENS = EmulatorRules(token_lifetime_seconds=SHORT_TOKEN_SECONDS)

EmulatorFactory = Callable[..., AbstractAsyncContextManager[GraphEmulator]]


@pytest.fixture(scope="session", autouse=True)
def graph_models_warm() -> float:
    """Pay the SDK's one-off model import (about 4 s) once per session, not in the first test."""
    return warm_up_models()


@pytest.fixture
async def client(
    graph_emulator: GraphEmulator, graph_emulator_apps: GraphEmulatorApps
) -> AsyncIterator[MsGraphKeySetClient]:
    async with open_client(connection(graph_emulator, graph_emulator_apps.writer)) as opened:
        yield opened


# --- key sets -----------------------------------------------------------------------------------


async def test_create_returns_the_id_b2c_chose(client: MsGraphKeySetClient) -> None:
    created = await client.create_key_set("TokenSigningKeyContainer")
    assert created.id == "B2C_1A_TokenSigningKeyContainer"
    assert created.keys == ()


async def test_create_twice_is_key_set_already_exists(client: MsGraphKeySetClient) -> None:
    await client.create_key_set("Twice")
    with pytest.raises(KeySetAlreadyExists) as raised:
        await client.create_key_set("Twice")
    assert raised.value.code == "AADB2C95028"


async def test_get_list_and_delete(client: MsGraphKeySetClient) -> None:
    created = await client.create_key_set("Listed")
    await client.create_key_set("Other")

    fetched = await client.get_key_set(created.id)
    listed = await client.list_key_sets()

    assert fetched == created
    assert {ks.id for ks in listed} >= {"B2C_1A_Listed", "B2C_1A_Other"}
    await client.delete_key_set(created.id)
    with pytest.raises(KeySetNotFound):
        await client.get_key_set(created.id)


async def test_a_missing_key_set_is_key_set_not_found(client: MsGraphKeySetClient) -> None:
    with pytest.raises(KeySetNotFound) as raised:
        await client.get_key_set("B2C_1A_NeverCreated")
    assert raised.value.status == 404
    assert raised.value.request_id  # Graph's request-id, for support tickets


# --- keys ---------------------------------------------------------------------------------------


async def test_generate_key_keeps_nbf_and_exp_as_integer_seconds(
    client: MsGraphKeySetClient, graph_emulator: GraphEmulator
) -> None:
    key_set = await client.create_key_set("Generated")
    nbf = int(time.time()) - 60
    exp = nbf + 24 * HOUR

    key = await client.generate_key(key_set.id, kty="RSA", use="sig", nbf=nbf, exp=exp)

    assert (key.kty, key.use, key.status) == ("RSA", "sig", "enabled")
    assert (key.nbf, key.exp) == (nbf, exp)
    assert isinstance(key.nbf, int)
    assert key.kid
    assert key.n
    assert key.e == "AQAB"
    stored = graph_emulator.state.snapshot()
    assert [k["kid"] for ks in stored if ks["id"] == key_set.id for k in ks["keys"]] == [key.kid]


async def test_get_active_key_calls_the_function_with_parentheses(
    client: MsGraphKeySetClient, graph_emulator: GraphEmulator
) -> None:
    key_set = await client.create_key_set("Active")
    now = int(time.time())
    older = await client.generate_key(key_set.id, kty="RSA", use="sig", nbf=now - HOUR, exp=None)
    newer = await client.generate_key(key_set.id, kty="RSA", use="sig", nbf=now - 60, exp=None)

    active = await client.get_active_key(key_set.id)

    assert active.kid == newer.kid != older.kid
    assert graph_calls(graph_emulator, "GET", r"/getActiveKey\(\)$")


async def test_no_usable_key_is_no_active_key(client: MsGraphKeySetClient) -> None:
    key_set = await client.create_key_set("Future")
    future = int(time.time()) + HOUR
    await client.generate_key(key_set.id, kty="oct", use="sig", nbf=future, exp=None)

    with pytest.raises(NoActiveKey) as raised:
        await client.get_active_key(key_set.id)
    assert raised.value.code == "AADB2C90019"


async def test_upload_secret(client: MsGraphKeySetClient) -> None:
    key_set = await client.create_key_set("FacebookSecret")
    nbf = int(time.time())

    key = await client.upload_secret(
        key_set.id, secret=SecretStr(SECRET_CANARY), use="sig", nbf=nbf, exp=nbf + HOUR
    )

    assert (key.kty.lower(), key.use, key.nbf, key.exp) == ("oct", "sig", nbf, nbf + HOUR)
    assert SECRET_CANARY not in repr(key)


async def test_upload_certificate(
    client: MsGraphKeySetClient, graph_emulator_material: GraphEmulatorMaterial
) -> None:
    key_set = await client.create_key_set("SamlIdpCert")

    key = await client.upload_certificate(
        key_set.id, certificate_der_b64=der_b64(graph_emulator_material.certificate)
    )

    assert key.kty == "RSA"
    assert key.x5t == certificate_thumbprint(graph_emulator_material)
    assert key.nbf == int(graph_emulator_material.certificate.not_valid_before_utc.timestamp())


async def test_upload_pkcs12(
    client: MsGraphKeySetClient, graph_emulator_material: GraphEmulatorMaterial
) -> None:
    key_set = await client.create_key_set("SamlSigning")
    pfx = pfx_b64(
        graph_emulator_material.rsa_key,
        graph_emulator_material.certificate,
        triple_des(PFX_PASSWORD),
    )

    key = await client.upload_pkcs12(
        key_set.id, pfx_b64=SecretStr(pfx), password=SecretStr(PFX_PASSWORD)
    )

    assert key.kty == "RSA"
    assert key.x5t == certificate_thumbprint(graph_emulator_material)
    assert key.x5c == (der_b64(graph_emulator_material.certificate),)


async def test_list_keys_and_disable_one_through_the_hand_built_patch(
    client: MsGraphKeySetClient, graph_emulator: GraphEmulator
) -> None:
    key_set = await client.create_key_set("Statuses")
    now = int(time.time())
    old = await client.generate_key(key_set.id, kty="RSA", use="sig", nbf=now - HOUR, exp=None)
    new = await client.generate_key(key_set.id, kty="RSA", use="sig", nbf=now - 60, exp=None)

    await client.set_key_status(key_set.id, old.kid, enabled=False)

    statuses = {key.kid: key.status for key in await client.list_keys(key_set.id)}
    assert statuses == {old.kid: "disabled", new.kid: "enabled"}
    patch = graph_calls(graph_emulator, "PATCH", rf"/keys_v2/{old.kid}$")
    # 204 proves the emulator accepted the bearer token: the hand-built request was authenticated.
    assert [call.status for call in patch] == [204]

    await client.set_key_status(key_set.id, old.kid, enabled=True)
    assert {key.status for key in await client.list_keys(key_set.id)} == {"enabled"}


# --- credentials --------------------------------------------------------------------------------


async def test_certificate_credential(
    graph_emulator: GraphEmulator,
    graph_emulator_apps: GraphEmulatorApps,
    graph_emulator_material: GraphEmulatorMaterial,
    tmp_path: Path,
) -> None:
    certificate_file = write_certificate_credential(tmp_path, graph_emulator_material)
    conn = GraphConnection(
        tenant_id=graph_emulator.tenant_id,
        client_id=graph_emulator_apps.certificate.client_id,
        client_certificate_path=str(certificate_file),
        authority_host=graph_emulator.authority_host,
        base_url=graph_emulator.graph_base_url,
    )
    async with open_client(conn) as client:
        created = await client.create_key_set("ByCertificate")
    assert created.id == "B2C_1A_ByCertificate"


async def test_federated_token_file_is_read_for_each_new_token(
    graph_emulator_factory: EmulatorFactory,
    graph_emulator_apps: GraphEmulatorApps,
    graph_emulator_material: GraphEmulatorMaterial,
    tmp_path: Path,
) -> None:
    token_file = tmp_path / "azure-identity-token"
    token_file.write_text(
        federated_token(
            graph_emulator_material.rsa_key, issuer=FEDERATED_ISSUER, subject=FEDERATED_SUBJECT
        )
    )
    # Short-lived tokens, so a later call needs a new token, hence a new assertion.
    async with graph_emulator_factory(
        rules=EmulatorRules(token_lifetime_seconds=SHORT_TOKEN_SECONDS)
    ) as emulator:
        conn = GraphConnection(
            tenant_id=emulator.tenant_id,
            client_id=graph_emulator_apps.federated_rs256.client_id,
            federated_token_file=str(token_file),
            authority_host=emulator.authority_host,
            base_url=emulator.graph_base_url,
        )
        async with open_client(conn) as client:
            await client.list_key_sets()
            # The kubelet rotates the projected token; a token from another issuer is refused,
            # so the next access token can only succeed if the file is read again.
            token_file.write_text(
                federated_token(
                    graph_emulator_material.rsa_key, issuer="https://wrong", subject="x"
                )
            )
            await wait_until_token_expired(emulator)
            with pytest.raises(Unauthorized) as raised:
                await client.list_key_sets()
            assert "AADSTS70021" in str(raised.value)


async def wait_until_token_expired(emulator: GraphEmulator) -> None:
    """Poll until the last token issued has expired for the client's cache and the emulator."""
    deadline = time.monotonic() + 5 * SHORT_TOKEN_SECONDS
    expired_at = token_calls(emulator)[-1].time + SHORT_TOKEN_SECONDS
    while time.time() < expired_at or emulator.state.now() < expired_at:
        assert time.monotonic() < deadline, "the token never expired"
        await asyncio.sleep(0.05)


async def test_an_expired_token_is_refreshed_before_the_call(
    graph_emulator_factory: EmulatorFactory, graph_emulator_apps: GraphEmulatorApps
) -> None:
    async with (
        graph_emulator_factory(
            rules=EmulatorRules(token_lifetime_seconds=SHORT_TOKEN_SECONDS)
        ) as emulator,
        open_client(connection(emulator, graph_emulator_apps.writer)) as client,
    ):
        await client.create_key_set("Refreshed")
        await wait_until_token_expired(emulator)

        fetched = await client.get_key_set("B2C_1A_Refreshed")

    assert fetched.id == "B2C_1A_Refreshed"
    assert [call.status for call in token_calls(emulator)] == [200, 200]
    assert {call.status for call in graph_calls(emulator)} == {200, 201}


async def test_a_wrong_client_secret_is_unauthorized_with_the_entra_reason(
    graph_emulator: GraphEmulator, graph_emulator_apps: GraphEmulatorApps
) -> None:
    wrong = SecretStr(SECRET_CANARY)
    conn = connection(graph_emulator, graph_emulator_apps.writer, client_secret=wrong)
    async with open_client(conn) as client:
        with pytest.raises(Unauthorized) as raised:
            await client.list_key_sets()
    message = str(raised.value)
    assert "AADSTS7000215" in message
    assert graph_emulator_apps.writer.client_id in message
    assert "client secret" in message
    assert SECRET_CANARY not in message
    assert graph_calls(graph_emulator) == []  # nothing reached Graph without a token


async def test_an_app_without_the_role_is_forbidden_naming_the_permission(
    graph_emulator: GraphEmulator, graph_emulator_apps: GraphEmulatorApps
) -> None:
    async with open_client(connection(graph_emulator, graph_emulator_apps.powerless)) as client:
        with pytest.raises(Forbidden) as raised:
            await client.list_key_sets()
    assert raised.value.status == 403
    assert REQUIRED_PERMISSION in str(raised.value)


async def test_a_read_only_app_cannot_write(
    graph_emulator: GraphEmulator, graph_emulator_apps: GraphEmulatorApps
) -> None:
    async with open_client(connection(graph_emulator, graph_emulator_apps.reader)) as client:
        assert await client.list_key_sets() == []
        with pytest.raises(Forbidden):
            await client.create_key_set("NotAllowed")


def test_exactly_one_credential_kind_is_required(graph_emulator_apps: GraphEmulatorApps) -> None:
    with pytest.raises(ValueError, match="exactly one") as raised:
        GraphConnection(
            tenant_id="t",
            client_id="c",
            client_secret=SecretStr(SECRET_CANARY),
            federated_token_file="/var/run/secrets/token",
        )
    assert SECRET_CANARY not in str(raised.value)
    with pytest.raises(ValueError, match="got none"):
        GraphConnection(tenant_id="t", client_id="c")


def test_an_unreadable_certificate_is_unauthorized_at_construction(tmp_path: Path) -> None:
    garbage = tmp_path / "not-a-certificate.pem"
    garbage.write_text("not a certificate")
    conn = GraphConnection(
        tenant_id="t",
        client_id="c",
        client_certificate_path=str(garbage),
        client_certificate_password=SecretStr(SECRET_CANARY),
    )
    with pytest.raises(Unauthorized) as raised:
        MsGraphKeySetClient.from_connection(conn)
    assert str(garbage) in str(raised.value)
    assert SECRET_CANARY not in str(raised.value)
