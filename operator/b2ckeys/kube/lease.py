"""The leader Lease (coordination.k8s.io/v1) on the API server, for leader.py.

Through KubeApi's transport (the same kubeconfig, TLS and identity as every other call), but a
KubeApi of its own: renewals must never queue behind reconciles waiting on the shared thread
pool, or a busy leader would miss its renew deadline. RBAC: create leases, and get/update the
one named Lease, in the operator's namespace (deploy/base/rbac.yaml).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from b2ckeys.kube.api import Conflict, KubeApi, KubeError, NotFound
from b2ckeys.leader import LeaseRecord, LeaseUnavailable

# MicroTime, the only form the API server accepts for acquireTime/renewTime.
_MICRO_TIME = "%Y-%m-%dT%H:%M:%S.%fZ"


def _format(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).strftime(_MICRO_TIME)


def _parse(text: object) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def record_from_lease(obj: dict[str, Any]) -> LeaseRecord:
    spec = obj.get("spec") or {}
    return LeaseRecord(
        holder=str(spec.get("holderIdentity") or ""),
        lease_duration_seconds=int(spec.get("leaseDurationSeconds") or 0),
        acquire_time=_parse(spec.get("acquireTime")),
        renew_time=_parse(spec.get("renewTime")),
        transitions=int(spec.get("leaseTransitions") or 0),
        resource_version=(obj.get("metadata") or {}).get("resourceVersion"),
    )


def lease_body(namespace: str, name: str, record: LeaseRecord) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if record.resource_version is not None:
        metadata["resourceVersion"] = record.resource_version  # update only if unchanged
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": metadata,
        "spec": {
            "holderIdentity": record.holder or None,
            "leaseDurationSeconds": record.lease_duration_seconds,
            "acquireTime": _format(record.acquire_time),
            "renewTime": _format(record.renew_time),
            "leaseTransitions": record.transitions,
        },
    }


class KubeLeaseStore:
    def __init__(self, kube: KubeApi, namespace: str, name: str) -> None:
        self._kube = kube
        self.namespace = namespace
        self.name = name
        self._collection = f"/apis/coordination.k8s.io/v1/namespaces/{quote(namespace)}/leases"

    async def get(self, *, within: float) -> LeaseRecord | None:
        try:
            obj = await self._kube.request(
                "GET", f"{self._collection}/{quote(self.name)}", within=within
            )
        except NotFound:
            return None
        except KubeError as error:
            raise LeaseUnavailable(f"reading Lease {self.namespace}/{self.name}: {error}") from None
        return record_from_lease(obj)

    async def create(self, record: LeaseRecord, *, within: float) -> LeaseRecord:
        body = lease_body(self.namespace, self.name, replace(record, resource_version=None))
        return await self._write("POST", self._collection, body, within)

    async def update(self, record: LeaseRecord, *, within: float) -> LeaseRecord:
        body = lease_body(self.namespace, self.name, record)
        return await self._write("PUT", f"{self._collection}/{quote(self.name)}", body, within)

    async def _write(
        self, method: str, path: str, body: dict[str, Any], within: float
    ) -> LeaseRecord:
        try:
            return record_from_lease(await self._kube.request(method, path, body, within=within))
        except Conflict:
            raise LeaseUnavailable(
                f"Lease {self.namespace}/{self.name} changed under us (another candidate wrote it)"
            ) from None
        except KubeError as error:
            raise LeaseUnavailable(f"writing Lease {self.namespace}/{self.name}: {error}") from None

    def close(self) -> None:
        self._kube.close()
