"""The storage layer against the kube-emulator: the writes the operator's safety rests on."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from b2ckeys.kube.api import Conflict, KubeApi
from b2ckeys.model import ObjectKey
from b2ckeys_emulators.kube.server import serve_kube_emulator

KEYSETS = "/apis/b2ckeys.dev/v1alpha1/namespaces/ns/trustframeworkkeysets"


async def test_an_intent_is_recorded_only_onto_the_version_it_was_decided_from(
    tmp_path: Path,
) -> None:
    async with serve_kube_emulator(kubeconfig=tmp_path / "kubeconfig") as kube:
        async with httpx.AsyncClient(base_url=str(kube.url)) as http:
            await http.post("/api/v1/namespaces", json={"metadata": {"name": "ns"}})
            created = await http.post(
                KEYSETS,
                json={
                    "apiVersion": "b2ckeys.dev/v1alpha1",
                    "kind": "TrustFrameworkKeySet",
                    "metadata": {"name": "a"},
                    "spec": {"keySetId": "A", "source": {"generate": {"kty": "RSA"}}},
                },
            )
            seen = created.json()["metadata"]["resourceVersion"]
        api = KubeApi.connect(str(kube.kubeconfig))
        try:
            first = await api.patch_status(
                ObjectKey("ns", "a"), {"keySetId": "B2C_1A_A"}, resource_version=seen
            )
            assert first is not None
            # A second writer that decided from the same version must be refused.
            with pytest.raises(Conflict):
                await api.patch_status(
                    ObjectKey("ns", "a"),
                    {"pendingWrite": {"action": "generateKey"}},
                    resource_version=seen,
                )
            current = await api.read_keyset("ns", "a")
            assert current is not None
            assert current.status.pending is None
            assert current.status.key_set_id == "B2C_1A_A"
            listed = await api.list_keysets()
            assert [r.key.name for r in listed] == ["a"]
        finally:
            api.close()
