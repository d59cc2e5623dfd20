"""What keymaterial prepares, the Graph emulator accepts, and it reports the same x5t.

The emulator follows B2C: it refuses AES-encrypted PFX files as a wrong password, so these
tests also show why every PFX is re-encoded before upload.
"""

from __future__ import annotations

import base64
import datetime
import time
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from graph_emulator_support import (
    GraphEmulatorApps,
    GraphEmulatorMaterial,
    graph_emulator_http,
    make_certificate,
)

from b2ckeys.keymaterial import (
    CertificateWithKey,
    load_certificate,
    load_pkcs12,
    load_string_secret,
    load_tls_secret,
    to_pkcs12,
)
from b2ckeys.secret import SecretStr
from b2ckeys_emulators.graph.server import EmulatorRules, GraphEmulator

KEY_SETS = "/trustFramework/keySets"
KEYSTORE_PASSWORD = "keystore-password-from-cert-manager"


def pem(*certificates: Any) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)


def cert_manager_secret(material: GraphEmulatorMaterial) -> dict[str, bytes]:
    """CA -> intermediate -> leaf, written the way cert-manager writes a TLS Secret."""
    intermediate_key = ec.generate_private_key(ec.SECP256R1())  # EC CAs are fine; leaves are RSA
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    intermediate = make_certificate(
        intermediate_key,
        common_name="roundtrip intermediate",
        issuer=material.ca_certificate,
        issuer_key=material.ca_key,
        is_ca=True,
        not_before=now - datetime.timedelta(minutes=5),
    )
    leaf = make_certificate(
        material.rsa_key,
        common_name="token-signing.roundtrip",
        issuer=intermediate,
        issuer_key=intermediate_key,
        not_before=now - datetime.timedelta(minutes=5),
    )
    key = material.rsa_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,  # PKCS#1, as cert-manager's default
        serialization.NoEncryption(),
    )
    return {
        "tls.crt": pem(leaf, intermediate),
        "tls.key": key,
        "ca.crt": pem(material.ca_certificate),
    }


async def new_key_set(http: httpx.AsyncClient, name: str) -> str:
    response = await http.post(KEY_SETS, json={"id": name})
    assert response.status_code == 201, response.text
    key_set_id = response.json()["id"]
    assert isinstance(key_set_id, str)
    return key_set_id


async def upload_pkcs12(
    http: httpx.AsyncClient, key_set_id: str, pfx_b64: str, password: str
) -> httpx.Response:
    return await http.post(
        f"{KEY_SETS}/{key_set_id}/uploadPkcs12", json={"key": pfx_b64, "password": password}
    )


def assert_same_certificate(key: dict[str, Any], material: CertificateWithKey) -> None:
    assert key["kty"] == "RSA"
    assert key["x5t"] == material.leaf.x5t
    assert key["nbf"] == material.leaf.not_before
    assert key["exp"] == material.leaf.not_after


async def test_tls_secret_pfx_is_accepted_with_the_same_x5t_and_chain(
    graph_emulator_factory: Any,
    graph_emulator_apps: GraphEmulatorApps,
    graph_emulator_material: GraphEmulatorMaterial,
) -> None:
    material = load_tls_secret(
        cert_manager_secret(graph_emulator_material), use="sig", now=int(time.time())
    )
    upload = to_pkcs12(material)
    rules = EmulatorRules(pkcs12_x5c_full_chain=True)
    async with (
        graph_emulator_factory(rules) as emulator,
        graph_emulator_http(emulator, graph_emulator_apps.writer) as http,
    ):
        key_set_id = await new_key_set(http, "roundtrip_tls")
        response = await upload_pkcs12(
            http, key_set_id, upload.pfx_b64.reveal(), upload.password.reveal()
        )
    assert response.status_code == 200, response.text
    key = response.json()
    assert_same_certificate(key, material)
    assert len(material.chain) == 3
    assert key["x5c"] == [c.der_b64 for c in material.chain]


async def test_cert_manager_keystore_is_refused_as_is_but_accepted_re_encoded(
    graph_emulator: GraphEmulator,
    graph_emulator_apps: GraphEmulatorApps,
    graph_emulator_material: GraphEmulatorMaterial,
) -> None:
    m = graph_emulator_material
    keystore = pkcs12.serialize_key_and_certificates(
        b"keystore",
        m.rsa_key,
        m.leaf_certificate,
        [m.ca_certificate],
        serialization.BestAvailableEncryption(KEYSTORE_PASSWORD.encode()),  # AES, like cert-manager
    )
    material = load_pkcs12(keystore, SecretStr(KEYSTORE_PASSWORD), use="sig", now=int(time.time()))
    upload = to_pkcs12(material)
    async with graph_emulator_http(graph_emulator, graph_emulator_apps.writer) as http:
        key_set_id = await new_key_set(http, "roundtrip_keystore")
        as_is = await upload_pkcs12(
            http, key_set_id, base64.b64encode(keystore).decode(), KEYSTORE_PASSWORD
        )
        re_encoded = await upload_pkcs12(
            http, key_set_id, upload.pfx_b64.reveal(), upload.password.reveal()
        )
    assert as_is.status_code == 400
    assert "AADB2C90213" in as_is.text  # B2C's "wrong password" for AES PFX files
    assert re_encoded.status_code == 200, re_encoded.text
    assert_same_certificate(re_encoded.json(), material)


async def test_public_certificate_upload_reports_the_same_x5t(
    graph_emulator_writer: httpx.AsyncClient, graph_emulator_material: GraphEmulatorMaterial
) -> None:
    info = load_certificate(
        pem(graph_emulator_material.certificate), use="sig", now=int(time.time())
    )
    key_set_id = await new_key_set(graph_emulator_writer, "roundtrip_certificate")
    response = await graph_emulator_writer.post(
        f"{KEY_SETS}/{key_set_id}/uploadCertificate", json={"key": info.der_b64}
    )
    assert response.status_code == 200, response.text
    assert response.json()["x5t"] == info.x5t


async def test_string_secret_arrives_without_its_trailing_newline(
    graph_emulator: GraphEmulator, graph_emulator_writer: httpx.AsyncClient
) -> None:
    secret = load_string_secret(b"facebook-app-secret-0123456789abcdef\n", field="client-secret")
    key_set_id = await new_key_set(graph_emulator_writer, "roundtrip_secret")
    response = await graph_emulator_writer.post(
        f"{KEY_SETS}/{key_set_id}/uploadSecret", json={"use": "sig", "k": secret.reveal()}
    )
    assert response.status_code == 200, response.text
    stored = graph_emulator.state.private_material(key_set_id, response.json()["kid"])
    assert stored is not None
    assert stored.reveal() == b"facebook-app-secret-0123456789abcdef"
