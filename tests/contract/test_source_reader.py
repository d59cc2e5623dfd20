"""Gathering sources against the kube-emulator: private keys and secrets live only as long as
the reconcile that parsed them, and a cached source is read again before anything is uploaded.

Found by a review: the parsed-source cache used to keep the upload closures, and with them every
key set's decrypted private key and string secret, for as long as the operator ran.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import hashlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization

from b2ckeys.formats import b64url
from b2ckeys.keymaterial import CertificateWithKey
from b2ckeys.kube.api import KubeApi
from b2ckeys.model import KeySetSpec, StringSecretSource, TlsSecretSource
from b2ckeys.plan import DesiredCertificate
from b2ckeys.secret import SecretStr
from b2ckeys.settings import Settings
from b2ckeys.sources import Gathered, SourceChanged, SourceReader
from b2ckeys.status import StatusView
from b2ckeys_emulators.devpki import DevCA, rsa_key
from b2ckeys_emulators.kube.server import RunningKubeEmulator, serve_kube_emulator

CANARY = "canary-sources-3f9a1d"
CA_NAME = "b2ckeys sources memory test CA"
SECRETS = "/api/v1/namespaces/ns/secrets"


def _b64(data: dict[str, bytes]) -> dict[str, str]:
    return {k: base64.b64encode(v).decode() for k, v in data.items()}


@pytest.fixture
async def kube(tmp_path: Path) -> AsyncIterator[tuple[RunningKubeEmulator, KubeApi]]:
    async with serve_kube_emulator(kubeconfig=tmp_path / "kubeconfig") as emulator:
        async with httpx.AsyncClient(base_url=str(emulator.url)) as http:
            await http.post("/api/v1/namespaces", json={"metadata": {"name": "ns"}})
        api = KubeApi.connect(str(emulator.kubeconfig))
        try:
            yield emulator, api
        finally:
            api.close()


async def _put_secret(emulator: RunningKubeEmulator, name: str, data: dict[str, bytes]) -> None:
    body = {"metadata": {"name": name, "namespace": "ns"}, "data": _b64(data)}
    async with httpx.AsyncClient(base_url=str(emulator.url)) as http:
        answer = await http.put(f"{SECRETS}/{name}", json=body)
        if answer.status_code == 404:
            answer = await http.post(SECRETS, json=body)
        answer.raise_for_status()


async def _material_alive() -> list[str]:
    """Every private key holder of this test's CA and canary secret that is still reachable,
    once the event loop has run the callbacks of the worker-thread futures that carried it
    (they hold their result until then). Other tests' cached material does not count."""
    for _ in range(3):
        await asyncio.sleep(0)
    gc.collect()
    alive = []
    for obj in gc.get_objects():
        if isinstance(obj, CertificateWithKey) and obj.leaf.issuer == f"CN={CA_NAME}":
            alive.append(repr(obj))
        elif isinstance(obj, SecretStr) and CANARY in obj.reveal():
            alive.append("SecretStr(<canary>)")
    return alive


async def _gather(reader: SourceReader, spec: KeySetSpec) -> Gathered:
    return await reader.gather("ns", spec, StatusView(), int(time.time()))


async def test_no_private_key_or_secret_outlives_a_reconcile_that_writes_nothing(
    kube: tuple[RunningKubeEmulator, KubeApi],
) -> None:
    emulator, api = kube
    ca = DevCA.create(CA_NAME)
    leaf = ca.issue("memory", key=rsa_key(2048, 3))
    await _put_secret(emulator, "tls", ca.tls_secret_data(leaf))
    await _put_secret(emulator, "str", {"k": f"{CANARY}-value".encode()})
    reader = SourceReader(Settings(), api)
    tls = KeySetSpec("Tls", TlsSecretSource("tls"))
    string = KeySetSpec("Str", StringSecretSource("str", "k"))

    parsed = [await _gather(reader, tls), await _gather(reader, string)]
    # Parsed in this reconcile: the material is there, for the upload it may make.
    assert any("CertificateWithKey" in a for a in await _material_alive())
    assert "SecretStr(<canary>)" in await _material_alive()
    del parsed
    assert await _material_alive() == []

    # The resync: answered from the cache, which holds only the decision's public facts.
    cached = [await _gather(reader, tls), await _gather(reader, string)]
    assert isinstance(cached[0].desired, DesiredCertificate)
    der = leaf.certificate.public_bytes(serialization.Encoding.DER)
    assert cached[0].desired.x5t == b64url(hashlib.sha1(der, usedforsecurity=False).digest())
    assert await _material_alive() == []
    del cached
    assert await _material_alive() == []


async def test_a_cached_source_is_read_again_for_a_write_and_must_be_the_version_decided_on(
    kube: tuple[RunningKubeEmulator, KubeApi],
) -> None:
    emulator, api = kube
    ca = DevCA.create(CA_NAME)
    first = ca.issue("first", key=rsa_key(2048, 4))
    await _put_secret(emulator, "tls", ca.tls_secret_data(first))
    reader = SourceReader(Settings(), api)
    spec = KeySetSpec("Tls", TlsSecretSource("tls"))
    await _gather(reader, spec)  # parsed and cached

    unchanged = await _gather(reader, spec)
    assert await _material_alive() == []
    upload = await unchanged.prepare_upload()  # read again: the same version, so the material
    assert any("CertificateWithKey" in a for a in await _material_alive())
    del upload

    decided = await _gather(reader, spec)
    await _put_secret(emulator, "tls", ca.tls_secret_data(ca.issue("second", key=rsa_key(2048, 5))))
    with pytest.raises(SourceChanged, match="tlsSecret/tls changed"):
        await decided.prepare_upload()
