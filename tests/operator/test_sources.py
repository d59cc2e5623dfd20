"""Behaviours 1-3: each source kind, end to end, through the real operator and both emulators."""

from __future__ import annotations

import base64
import hashlib

from cryptography.hazmat.primitives.serialization import Encoding
from harness import Graph, Kube, keyset, ready, secret, wait_for

from b2ckeys_emulators.devpki import DevCA, rsa_key


def x5t(der: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha1(der).digest()).rstrip(b"=").decode()  # noqa: S324


async def test_tls_secret_is_uploaded_and_status_reports_the_active_key(
    kube: Kube, graph: Graph, operator: object
) -> None:
    ca = DevCA.create()
    leaf = ca.issue("token signing", key=rsa_key(2048, 1))
    await kube.create(secret("token-tls", ca.tls_secret_data(leaf), type_="kubernetes.io/tls"))
    await kube.create(
        keyset("token", "TokenSigningKeyContainer", {"tlsSecret": {"name": "token-tls"}})
    )

    obj = await kube.wait_reason("token", "Synced")
    status = obj["status"]
    expected = x5t(leaf.certificate.public_bytes(Encoding.DER))
    assert status["keySetId"] == "B2C_1A_TokenSigningKeyContainer"
    assert status["syncedKey"]["x5t"] == expected
    assert status["activeKey"]["kid"] == status["syncedKey"]["kid"]
    assert status["activeKey"]["x5t"] == expected
    assert status["activeKey"]["notBefore"]
    assert status["activeKey"]["expires"]
    assert status["observedGeneration"] == obj["metadata"]["generation"]
    assert ready(obj)["status"] == "True"
    assert status["keyCount"] == 1
    assert status.get("pendingWrite") is None

    keys = await graph.keys("B2C_1A_TokenSigningKeyContainer")
    assert [k["x5t"] for k in keys] == [expected]
    events = await kube.events()
    uploaded = [e for e in events if e.get("reason") == "Uploaded"]
    assert len(uploaded) == 1
    assert "uploadPkcs12" in uploaded[0]["message"]
    assert expected in uploaded[0]["message"]


async def test_renewal_uploads_exactly_one_new_key(
    kube: Kube, graph: Graph, operator: object
) -> None:
    ca = DevCA.create()
    first = ca.issue("token signing", key=rsa_key(2048, 1))
    tls = await kube.create(
        secret("token-tls", ca.tls_secret_data(first), type_="kubernetes.io/tls")
    )
    await kube.create(keyset("token", "TokenSigning", {"tlsSecret": {"name": "token-tls"}}))
    await kube.wait_reason("token", "Synced")

    renewed = ca.issue("token signing", key=rsa_key(2048, 2))
    new_x5t = x5t(renewed.certificate.public_bytes(Encoding.DER))
    data = secret("token-tls", ca.tls_secret_data(renewed))["data"]
    await kube.patch(tls, {"data": data})

    obj = await kube.wait_keyset(
        "token",
        lambda o: (o["status"].get("syncedKey") or {}).get("x5t") == new_x5t,
        "the renewed key",
    )
    assert obj["status"]["activeKey"]["x5t"] == new_x5t
    keys = await graph.keys("B2C_1A_TokenSigning")
    assert len(keys) == 2
    uploads = [w for w in await graph.writes() if w.endswith("/uploadPkcs12")]
    assert len(uploads) == 2


async def test_unlabelled_secret_syncs_and_the_message_says_how_to_make_it_instant(
    kube: Kube, operator: object
) -> None:
    ca = DevCA.create()
    leaf = ca.issue("unlabelled", key=rsa_key(2048, 1))
    await kube.create(secret("plain-tls", ca.tls_secret_data(leaf), labelled=False))
    await kube.create(keyset("plain", "Plain", {"tlsSecret": {"name": "plain-tls"}}))
    obj = await kube.wait_reason("plain", "Synced")
    message = ready(obj)["message"]
    assert "b2ckeys.dev/watch=true" in message
    assert "resync" in message


async def test_string_secret_with_validity(kube: Kube, graph: Graph, operator: object) -> None:
    await kube.create(secret("fb", {"client-secret": b"s3cr3t-value\n"}))
    await kube.create(
        keyset(
            "fb",
            "FacebookSecret",
            {"secret": {"name": "fb", "key": "client-secret"}},
            validity={"notBeforeDelay": "0s", "lifetime": "720h"},
        )
    )
    obj = await kube.wait_reason("fb", "Synced")
    synced = obj["status"]["syncedKey"]
    assert synced["kty"].lower() == "oct"
    keys = await graph.keys("B2C_1A_FacebookSecret")
    assert len(keys) == 1
    assert keys[0]["exp"] - keys[0]["nbf"] == 720 * 3600
    fingerprint = obj["status"]["sourceFingerprint"]
    assert "s3cr3t" not in fingerprint
    assert fingerprint != hashlib.sha256(b"s3cr3t-value").hexdigest()


async def test_generated_rsa_and_oct_keys(kube: Kube, graph: Graph, operator: object) -> None:
    await kube.create(keyset("rsa", "GenRsa", {"generate": {"kty": "RSA"}}, use="enc"))
    await kube.create(keyset("oct", "GenOct", {"generate": {"kty": "oct"}}))
    rsa_obj = await kube.wait_reason("rsa", "Synced")
    oct_obj = await kube.wait_reason("oct", "Synced")
    assert rsa_obj["status"]["activeKey"]["kty"] == "RSA"
    assert rsa_obj["status"]["activeKey"]["use"] == "enc"
    assert oct_obj["status"]["activeKey"]["kty"].lower() == "oct"
    assert len(await graph.keys("B2C_1A_GenRsa")) == 1
    assert len(await graph.keys("B2C_1A_GenOct")) == 1


async def test_generate_rotation_adds_a_key_when_due(
    kube: Kube, graph: Graph, operator: object
) -> None:
    await kube.create(
        keyset("rot", "Rotating", {"generate": {"kty": "RSA"}}, rotation={"every": "1s"})
    )

    async def two_keys() -> bool:
        return len(await graph.keys("B2C_1A_Rotating")) >= 2

    await wait_for("a rotation", two_keys)
    obj = await kube.keyset("rot")
    assert obj is not None
    await kube.patch(obj, {"spec": {"rotation": None}})
    await kube.wait_keyset(
        "rot", lambda o: o["status"].get("observedGeneration") == o["metadata"]["generation"]
    )
    # Each generated key is a distinct one, never the same twice.
    kids = [k["kid"] for k in await graph.keys("B2C_1A_Rotating")]
    assert len(kids) == len(set(kids))


async def test_certificate_from_configmap_is_uploaded_public_only(
    kube: Kube, graph: Graph, operator: object
) -> None:
    ca = DevCA.create()
    idp = ca.issue("saml idp", key=rsa_key(2048, 3))
    await kube.create(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "idp", "labels": {"b2ckeys.dev/watch": "true"}},
            "data": {"tls.crt": idp.cert_pem.decode()},
        }
    )
    await kube.create(keyset("saml", "SamlIdpCert", {"certificate": {"configMapName": "idp"}}))
    obj = await kube.wait_reason("saml", "Synced")
    assert obj["status"]["syncedKey"]["x5t"] == x5t(idp.certificate.public_bytes(Encoding.DER))
    assert any(w.endswith("/uploadCertificate") for w in await graph.writes())
