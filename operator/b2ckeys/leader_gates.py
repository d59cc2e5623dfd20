"""The write gates of leader election: Graph and Kubernetes writes pass only while we lead.

Wrapped around the clients once, at startup (runtime.py), so no write path can forget the check:
every Graph call that changes B2C and every Kubernetes write of a reconcile first calls
`Leadership.ensure_leading()`, which raises NotLeading once the renew deadline has passed
without a renewal. Reads pass through: a standby may look, never touch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from b2ckeys.graph.client import KeyType, KeyUse, RemoteKey, RemoteKeySet, TenantClient
from b2ckeys.kube.api import KubeApi
from b2ckeys.leader import Leadership
from b2ckeys.model import KeySetResource, ObjectKey, ResourceRef
from b2ckeys.secret import SecretStr
from b2ckeys.tenants import TenantKey


class LeaderGatedKeySetClient:
    """A tenant's Graph client whose writes each check leadership first."""

    def __init__(self, inner: TenantClient, leadership: Leadership) -> None:
        self._inner = inner
        self._leadership = leadership

    # --- reads ---------------------------------------------------------------------------------

    async def list_key_sets(self) -> Sequence[RemoteKeySet]:
        return await self._inner.list_key_sets()

    async def get_key_set(self, key_set_id: str) -> RemoteKeySet:
        return await self._inner.get_key_set(key_set_id)

    async def get_active_key(self, key_set_id: str) -> RemoteKey:
        return await self._inner.get_active_key(key_set_id)

    async def list_keys(self, key_set_id: str) -> Sequence[RemoteKey]:
        return await self._inner.list_keys(key_set_id)

    async def granted_roles(self) -> frozenset[str] | None:
        return await self._inner.granted_roles()

    async def aclose(self) -> None:
        await self._inner.aclose()

    # --- writes --------------------------------------------------------------------------------

    async def create_key_set(self, key_set_id: str) -> RemoteKeySet:
        self._leadership.ensure_leading()
        return await self._inner.create_key_set(key_set_id)

    async def delete_key_set(self, key_set_id: str) -> None:
        self._leadership.ensure_leading()
        await self._inner.delete_key_set(key_set_id)

    async def generate_key(
        self, key_set_id: str, *, kty: KeyType, use: KeyUse, nbf: int | None, exp: int | None
    ) -> RemoteKey:
        self._leadership.ensure_leading()
        return await self._inner.generate_key(key_set_id, kty=kty, use=use, nbf=nbf, exp=exp)

    async def upload_secret(
        self, key_set_id: str, *, secret: SecretStr, use: KeyUse, nbf: int | None, exp: int | None
    ) -> RemoteKey:
        self._leadership.ensure_leading()
        return await self._inner.upload_secret(key_set_id, secret=secret, use=use, nbf=nbf, exp=exp)

    async def upload_certificate(self, key_set_id: str, *, certificate_der_b64: str) -> RemoteKey:
        self._leadership.ensure_leading()
        return await self._inner.upload_certificate(
            key_set_id, certificate_der_b64=certificate_der_b64
        )

    async def upload_pkcs12(
        self, key_set_id: str, *, pfx_b64: SecretStr, password: SecretStr
    ) -> RemoteKey:
        self._leadership.ensure_leading()
        return await self._inner.upload_pkcs12(key_set_id, pfx_b64=pfx_b64, password=password)

    async def set_key_status(self, key_set_id: str, kid: str, *, enabled: bool) -> None:
        self._leadership.ensure_leading()
        await self._inner.set_key_status(key_set_id, kid, enabled=enabled)


class LeaderGatedKubeApi(KubeApi):
    """KubeApi whose writes (status, finalizer, Events) each check leadership first."""

    leadership: Leadership = Leadership.unelected()

    @classmethod
    def connect_gated(
        cls, kubeconfig: str | None, *, threads: int, leadership: Leadership
    ) -> LeaderGatedKubeApi:
        kube = cls.connect(kubeconfig, threads=threads)
        assert isinstance(kube, LeaderGatedKubeApi)
        kube.leadership = leadership
        return kube

    async def patch_status(
        self,
        key: ObjectKey,
        status: Mapping[str, Any],
        *,
        resource_version: str | None = None,
    ) -> KeySetResource | None:
        self.leadership.ensure_leading()
        return await super().patch_status(key, status, resource_version=resource_version)

    async def patch_tenant_status(self, key: TenantKey, status: Mapping[str, Any]) -> bool:
        self.leadership.ensure_leading()
        return await super().patch_tenant_status(key, status)

    async def set_finalizer(
        self, resource: KeySetResource, finalizer: str, *, present: bool
    ) -> KeySetResource | None:
        if (finalizer in resource.finalizers) != present:  # a write is needed
            self.leadership.ensure_leading()
        return await super().set_finalizer(resource, finalizer, present=present)

    async def post_event(
        self,
        ref: ResourceRef,
        *,
        type_: str,
        reason: str,
        message: str,
        now: float,
        component: str = "b2ckeys",
    ) -> None:
        self.leadership.ensure_leading()
        await super().post_event(
            ref, type_=type_, reason=reason, message=message, now=now, component=component
        )
