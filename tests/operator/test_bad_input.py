"""Behaviour 6: bad input gets a clear reason, no Graph write, no crash loop, and recovers."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from harness import Graph, Kube, keyset, ready, secret

from b2ckeys_emulators.devpki import DevCA, rsa_key


def _ec_tls() -> dict[str, bytes]:
    ca = DevCA.create()
    leaf = ca.issue("ec leaf", key=rsa_key(2048, 1))
    ec_key = ec.generate_private_key(ec.SECP256R1())
    ec_pem = ec_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return {"tls.crt": leaf.cert_pem, "tls.key": ec_pem}


def _expired_tls() -> dict[str, bytes]:
    ca = DevCA.create()
    start = dt.datetime.now(dt.UTC) - dt.timedelta(days=30)
    leaf = ca.issue("expired", key=rsa_key(2048, 1), not_before=start, days=10)
    return ca.tls_secret_data(leaf)


def _mismatched_tls() -> dict[str, bytes]:
    ca = DevCA.create()
    leaf = ca.issue("mismatch", key=rsa_key(2048, 1))
    other = ca.issue("other", key=rsa_key(2048, 2))
    return {"tls.crt": leaf.cert_pem, "tls.key": other.key_pem}


CASES: list[tuple[str, dict[str, bytes] | None, dict[str, Any], str, str]] = [
    ("ec-key", _ec_tls(), {"tlsSecret": {"name": "src"}}, "InvalidSource", "RSA"),
    ("expired", _expired_tls(), {"tlsSecret": {"name": "src"}}, "InvalidSource", "expired"),
    ("mismatch", _mismatched_tls(), {"tlsSecret": {"name": "src"}}, "InvalidSource", "belong"),
    ("missing-secret", None, {"tlsSecret": {"name": "src"}}, "SourceNotFound", "does not exist"),
    (
        "missing-key",
        {"other": b"x"},
        {"secret": {"name": "src", "key": "k"}},
        "InvalidSource",
        "'k'",
    ),
    ("empty-secret", {"k": b""}, {"secret": {"name": "src", "key": "k"}}, "InvalidSource", "empty"),
    (
        "other-namespace",
        {"k": b"value"},
        {"secret": {"name": "src", "key": "k", "namespace": "kube-system"}},
        "InvalidSource",
        "own namespace",
    ),
]


@pytest.mark.parametrize(
    ("case", "data", "source", "reason", "words"), CASES, ids=[c[0] for c in CASES]
)
async def test_bad_input_is_refused_with_a_reason_and_nothing_is_written(
    kube: Kube,
    graph: Graph,
    operator: object,
    case: str,
    data: dict[str, bytes] | None,
    source: dict[str, Any],
    reason: str,
    words: str,
) -> None:
    if data is not None:
        await kube.create(secret("src", data))
    await kube.create(keyset("bad", "Bad", source))
    obj = await kube.wait_reason("bad", reason)
    assert ready(obj)["status"] == "False"
    assert words.lower() in ready(obj)["message"].lower()
    assert await graph.writes() == []
    warnings = [e for e in await kube.events() if e.get("type") == "Warning"]
    assert any(e["reason"] == reason for e in warnings)


async def test_existing_keys_stay_and_fixing_the_input_recovers(
    kube: Kube, graph: Graph, operator: object
) -> None:
    ca = DevCA.create()
    good = ca.issue("good", key=rsa_key(2048, 1))
    src = await kube.create(secret("src", ca.tls_secret_data(good)))
    await kube.create(keyset("tok", "Tok", {"tlsSecret": {"name": "src"}}))
    await kube.wait_reason("tok", "Synced")
    keys_before = await graph.keys("B2C_1A_Tok")
    writes_before = await graph.writes()

    await kube.patch(src, {"data": secret("src", _ec_tls())["data"]})
    await kube.wait_reason("tok", "InvalidSource")
    assert await graph.keys("B2C_1A_Tok") == keys_before
    assert await graph.writes() == writes_before

    fixed = ca.issue("fixed", key=rsa_key(2048, 2))
    await kube.patch(src, {"data": secret("src", ca.tls_secret_data(fixed))["data"]})
    await kube.wait_reason("tok", "Synced")
    assert len(await graph.keys("B2C_1A_Tok")) == 2


async def test_missing_secret_recovers_as_soon_as_it_appears(
    kube: Kube, graph: Graph, operator: object
) -> None:
    await kube.create(keyset("late", "Late", {"secret": {"name": "late", "key": "k"}}))
    await kube.wait_reason("late", "SourceNotFound")
    await kube.create(secret("late", {"k": b"arrived"}))
    await kube.wait_reason("late", "Synced")
    assert len(await graph.keys("B2C_1A_Late")) == 1


async def test_wrong_pkcs12_password(kube: Kube, graph: Graph, operator: object) -> None:
    ca = DevCA.create()
    leaf = ca.issue("pfx", key=rsa_key(2048, 1))
    pfx = pkcs12.serialize_key_and_certificates(
        b"pfx",
        leaf.key,
        leaf.certificate,
        None,
        serialization.BestAvailableEncryption(b"right-password"),
    )
    src = await kube.create(secret("pfx", {"keystore.p12": pfx, "password": b"wrong-password"}))
    await kube.create(keyset("pfx", "Pfx", {"pkcs12Secret": {"name": "pfx"}}))
    obj = await kube.wait_reason("pfx", "InvalidSource")
    assert "password" in ready(obj)["message"].lower()
    assert await graph.writes() == []
    await kube.patch(
        src, {"data": secret("pfx", {"keystore.p12": pfx, "password": b"right-password"})["data"]}
    )
    obj = await kube.wait_reason("pfx", "Synced")
    assert obj["status"]["syncedKey"]["x5t"]
