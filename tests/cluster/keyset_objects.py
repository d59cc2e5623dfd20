"""What a user applies (key sets and their source objects) and how a test reads results back.

Key material is made at test time with `cryptography` (b2ckeys_emulators.devpki) and exists only in
memory and in the throwaway cluster.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import Mapping
from typing import Any, cast

from apiserver import KubeCluster
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from kubernetes import client as k8s

from b2ckeys_emulators.devpki import DevCA, Issued

GROUP, VERSION, PLURAL, KIND = (
    "b2ckeys.dev",
    "v1alpha1",
    "trustframeworkkeysets",
    "TrustFrameworkKeySet",
)
WATCH_LABEL = {"b2ckeys.dev/watch": "true"}


def unique_key_set_id(prefix: str) -> str:
    """A key set id no other scenario uses: they all share one emulated B2C tenant."""
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def keyset(name: str, key_set_id: str, source: Mapping[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {"name": name},
        "spec": {"keySetId": key_set_id, "source": dict(source), **spec},
    }


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def secret(name: str, data: Mapping[str, bytes], *, type_: str = "Opaque") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": type_,
        "metadata": {"name": name, "labels": dict(WATCH_LABEL)},
        "data": {key: _b64(value) for key, value in data.items()},
    }


def tls_secret(name: str, ca: DevCA, leaf: Issued) -> dict[str, Any]:
    """What cert-manager writes for a Certificate."""
    return secret(name, ca.tls_secret_data(leaf), type_="kubernetes.io/tls")


def pkcs12_secret(name: str, ca: DevCA, leaf: Issued, password: bytes) -> dict[str, Any]:
    bundle = pkcs12.serialize_key_and_certificates(
        b"b2ckeys test",
        leaf.key,
        leaf.certificate,
        [ca.root.certificate],
        serialization.BestAvailableEncryption(password),
    )
    return secret(name, {"keystore.p12": bundle, "password": password})


def certificate_secret(name: str, leaf: Issued) -> dict[str, Any]:
    return secret(name, {"tls.crt": leaf.cert_pem})


def certificate_config_map(name: str, leaf: Issued) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "labels": dict(WATCH_LABEL)},
        "data": {"tls.crt": leaf.cert_pem.decode("ascii")},
    }


def x5t(leaf: Issued) -> str:
    der = leaf.certificate.public_bytes(serialization.Encoding.DER)
    # x5t is SHA-1 by definition (RFC 7517); it names a certificate, it protects nothing.
    digest = hashlib.sha1(der).digest()  # noqa: S324
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def ready(obj: Mapping[str, Any] | None) -> dict[str, Any]:
    for condition in ((obj or {}).get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return dict(condition)
    return {}


class Keysets:
    """Key sets in one namespace, read and deleted as admin (the way `kubectl` would)."""

    def __init__(self, cluster: KubeCluster, namespace: str) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self._api = k8s.CustomObjectsApi(cluster.admin)

    def apply(self, *objects: Mapping[str, Any]) -> None:
        self.cluster.apply(list(objects), namespace=self.namespace)

    def get(self, name: str) -> dict[str, Any] | None:
        try:
            obj = self._api.get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, name
            )
        except k8s.ApiException as e:
            if e.status == 404:
                return None
            raise
        return cast(dict[str, Any], obj)

    def delete(self, name: str) -> None:
        self._api.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)

    def settled(self, name: str, reason: str) -> dict[str, Any] | None:
        """The key set once its Ready reason is `reason` for its current generation."""
        obj = self.get(name)
        if obj is None:
            return None
        status = obj.get("status") or {}
        current = status.get("observedGeneration") == obj["metadata"].get("generation")
        return obj if current and ready(obj).get("reason") == reason else None

    def event_reasons(self) -> list[str]:
        events = k8s.CoreV1Api(self.cluster.admin).list_namespaced_event(self.namespace)
        return [str(e.reason) for e in events.items]


# --- what the operator wrote, as the API server recorded it -------------------------------------


def status_writes(
    audit_events: list[dict[str, Any]], namespace: str, name: str
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Each merge patch of this key set's status: (the patch's status, the status stored).

    Both come from the API server's audit record of the request: what the operator sent and
    the object the server answered with, after its schema had pruned and defaulted it.
    """
    writes = []
    for event in audit_events:
        ref = event.get("objectRef") or {}
        if (
            ref.get("resource") == PLURAL
            and ref.get("subresource") == "status"
            and ref.get("namespace") == namespace
            and ref.get("name") == name
            and event.get("verb") == "patch"
            and (event.get("responseStatus") or {}).get("code") == 200
            and isinstance(event.get("requestObject"), dict)
        ):
            sent = event["requestObject"].get("status") or {}
            stored = (event.get("responseObject") or {}).get("status") or {}
            writes.append((sent, stored))
    return writes


def not_stored(sent: Mapping[str, Any], stored: Mapping[str, Any], at: str = "status") -> list[str]:
    """How a merge patch `sent` failed to land in `stored`: pruned, changed or not removed."""
    problems = []
    for key, value in sent.items():
        where = f"{at}.{key}"
        if value is None:
            if key in stored:
                problems.append(f"{where}: removed by the patch, still {stored[key]!r}")
        elif key not in stored:
            problems.append(f"{where}: written as {value!r}, dropped by the server")
        elif isinstance(value, Mapping) and isinstance(stored[key], Mapping):
            problems += not_stored(value, stored[key], where)
        elif value != stored[key]:
            problems.append(f"{where}: written as {value!r}, stored as {stored[key]!r}")
    return problems
