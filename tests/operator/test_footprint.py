"""Behaviour 12: the operator writes only its resources' status (and a finalizer for Delete),
never a Secret, and a canary secret planted in every source never leaks anywhere."""

from __future__ import annotations

import base64
import json

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from harness import Graph, Kube, LogCapture, OperatorControl, keyset, secret

from b2ckeys_emulators.devpki import DevCA, rsa_key

CANARY = "canary-b2ckeys-7c1e5f"


def _forms(value: str) -> list[str]:
    raw = value.encode()
    return [
        value,
        base64.b64encode(raw).decode(),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
    ]


async def test_canary_in_every_source_never_leaks(
    kube: Kube, graph: Graph, operator: OperatorControl, all_logs: LogCapture
) -> None:
    operator.stop()  # restart under the log capture, at debug level
    await operator.start()
    ca = DevCA.create()
    leaf = ca.issue("canary", key=rsa_key(2048, 1))
    pfx_password = f"{CANARY}-pfx-password"
    pfx = pkcs12.serialize_key_and_certificates(
        b"c",
        leaf.key,
        leaf.certificate,
        None,
        serialization.BestAvailableEncryption(pfx_password.encode()),
    )
    await kube.create(secret("tls", {**ca.tls_secret_data(leaf), "canary": CANARY.encode()}))
    await kube.create(secret("pfx", {"keystore.p12": pfx, "password": pfx_password.encode()}))
    await kube.create(secret("str", {"k": f"{CANARY}-string-secret".encode()}))
    await kube.create(
        secret("bad", {"k": f"{CANARY}-bad".encode(), "tls.crt": f"{CANARY}-garbage".encode()})
    )
    await kube.create(keyset("tls", "CanTls", {"tlsSecret": {"name": "tls"}}))
    await kube.create(keyset("pfx", "CanPfx", {"pkcs12Secret": {"name": "pfx"}}))
    await kube.create(keyset("str", "CanStr", {"secret": {"name": "str", "key": "k"}}))
    await kube.create(keyset("bad", "CanBad", {"tlsSecret": {"name": "bad"}}))
    await kube.create(
        keyset("badcert", "CanBadCert", {"certificate": {"secretName": "bad", "key": "k"}})
    )
    for name in ("tls", "pfx", "str"):
        await kube.wait_reason(name, "Synced")
    await kube.wait_reason("bad", "InvalidSource")
    await kube.wait_reason("badcert", "InvalidSource")

    statuses = json.dumps([await kube.keyset(n) for n in ("tls", "pfx", "str", "bad", "badcert")])
    events = json.dumps(await kube.events())
    b2c = json.dumps(await graph.key_sets()) + json.dumps(await graph.requests())
    scraped = await scrape_metrics(operator)
    for form in _forms(CANARY):
        assert form not in statuses
        assert form not in events
        assert form not in all_logs.text
        assert form not in b2c
        assert form not in scraped
    # The scrape itself is the one users get: the key sets' series are there, and no label
    # carries a fingerprint (a status field) or key material.
    assert "b2ckeys_keyset_ready_status{" in scraped
    for status in json.loads(statuses):
        fingerprint = (status or {}).get("status", {}).get("sourceFingerprint")
        if fingerprint:
            assert fingerprint not in scraped
    assert all_logs.lines  # the capture did see the operator's (debug) logging


async def scrape_metrics(operator: OperatorControl) -> str:
    assert operator.current is not None
    server = operator.current.memo["runtime"].metrics_server
    async with httpx.AsyncClient() as http:
        answer = await http.get(f"{server.url}/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    return answer.text


async def test_only_status_events_and_our_finalizer_are_written(
    kube: Kube, graph: Graph, operator: object, servers: object
) -> None:
    ca = DevCA.create()
    leaf = ca.issue("fp", key=rsa_key(2048, 1))
    src = await kube.create(secret("tls", ca.tls_secret_data(leaf)))
    await kube.create(keyset("tls", "Fp", {"tlsSecret": {"name": "tls"}}))
    await kube.create(keyset("gen", "FpGen", {"generate": {"kty": "RSA"}}, deletionPolicy="Delete"))
    retained = await kube.wait_reason("tls", "Synced")
    deleting = await kube.wait_reason("gen", "Synced")

    source_after = await kube.get(src)
    assert source_after is not None
    assert source_after["metadata"]["resourceVersion"] == src["metadata"]["resourceVersion"]
    assert not source_after["metadata"].get("annotations")
    for obj in (retained, deleting):
        annotations = obj["metadata"].get("annotations") or {}
        assert not [a for a in annotations if "kopf" in a]
    assert not retained["metadata"].get("finalizers")
    assert deleting["metadata"]["finalizers"] == ["b2ckeys.dev/delete-key-set"]
