"""The storage layer: the only module that calls the Kubernetes API directly.

Kopf watches and indexes; everything the operator *writes* (its resources' status, a finalizer,
Events) and the Secrets it reads go through here. It uses the official `kubernetes` client's
transport (auth, TLS, in-cluster token refresh) with raw JSON bodies, so no generated model
ever holds a Secret's data longer than the call, and runs each blocking call in a thread.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import uuid
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import kubernetes
import urllib3

from b2ckeys import metrics
from b2ckeys.formats import to_rfc3339
from b2ckeys.model import KeySetResource, ObjectKey, ResourceRef
from b2ckeys.secret import SecretBytes
from b2ckeys.settings import API_GROUP, API_VERSION, KEYSET_PLURAL
from b2ckeys.tenants import TENANT_PLURALS, TenantKey, TenantResource

logger = logging.getLogger(__name__)


# (connect, read) seconds: a call that never gets an answer must not hold one of the pool's
# threads, and with it a key set's reconcile, forever.
_REQUEST_TIMEOUT = (10.0, 30.0)


class KubeError(Exception):
    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"[{status} {reason}] {message}")
        self.status = status
        self.reason = reason


class NotFound(KubeError):
    pass


class Conflict(KubeError):
    pass


class Unreachable(KubeError):
    """No answer from the API server: it is restarting, refused or reset the connection, or
    timed out. Transient, like a 503; the controller retries on its error backoff."""


@dataclass(frozen=True)
class SourceObject:
    """A Secret or ConfigMap as the operator needs it: values decoded, secrets wrapped."""

    kind: str
    namespace: str
    name: str
    labels: Mapping[str, str]
    data: Mapping[str, SecretBytes] = field(repr=False)
    resource_version: str | None = None

    def revealed(self) -> dict[str, bytes]:
        return {k: v.reveal() for k, v in self.data.items()}


def _keyset_path(namespace: str, name: str, subresource: str = "") -> str:
    path = (
        f"/apis/{API_GROUP}/{API_VERSION}/namespaces/{quote(namespace)}"
        f"/{KEYSET_PLURAL}/{quote(name)}"
    )
    return f"{path}/{subresource}" if subresource else path


def _tenant_path(key: TenantKey, subresource: str = "") -> str:
    plural = TENANT_PLURALS[key.kind]
    scope = f"/namespaces/{quote(key.namespace)}" if key.namespace else ""
    path = f"/apis/{API_GROUP}/{API_VERSION}{scope}/{plural}/{quote(key.name)}"
    return f"{path}/{subresource}" if subresource else path


def _operation(method: str, path: str) -> str:
    """`patch trustframeworkkeysets/status` for a request path: the resource, never its name."""
    parts = [p for p in path.split("?")[0].split("/") if p]
    # /api/v1/... or /apis/group/version/...; then namespaces/<ns>/ when namespaced.
    rest = parts[2:] if parts[:1] == ["api"] else parts[3:]
    if len(rest) >= 3 and rest[0] == "namespaces":
        rest = rest[2:]
    resource = rest[0] if rest else "unknown"
    sub = f"/{rest[2]}" if len(rest) > 2 else ""
    return f"{method.lower()} {resource}{sub}"


@dataclass(frozen=True)
class Connection:
    """Where the API server is and how to authenticate, as the kubernetes client resolved it."""

    server: str
    ca_path: str | None = None
    insecure: bool = False
    token: str | None = field(default=None, repr=False)
    certificate_path: str | None = None
    private_key_path: str | None = None


def _configuration(kubeconfig: str | None) -> Any:
    """The kubernetes client's configuration from a kubeconfig file, or the in-cluster service
    account when None: the one loader behind both Kopf's login and the storage layer."""
    configuration = kubernetes.client.Configuration()
    if kubeconfig is None:
        kubernetes.config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    else:
        kubernetes.config.load_kube_config(
            config_file=kubeconfig, client_configuration=configuration
        )  # type: ignore[no-untyped-call]
    return configuration


def resolve_connection(kubeconfig: str | None) -> Connection:
    """Resolve a kubeconfig (or the in-cluster account when None) with the kubernetes client's
    own loader, so Kopf's watches and our writes use the very same server and identity."""
    configuration = _configuration(kubeconfig)
    header = configuration.get_api_key_with_prefix(
        "authorization"
    ) or configuration.get_api_key_with_prefix("BearerToken")
    token = header.split(" ", 1)[1] if header and " " in header else header
    return Connection(
        server=str(configuration.host),
        ca_path=configuration.ssl_ca_cert,
        insecure=not configuration.verify_ssl,
        token=token or None,
        certificate_path=configuration.cert_file,
        private_key_path=configuration.key_file,
    )


class KubeApi:
    def __init__(self, api_client: Any, *, threads: int = 8) -> None:
        self._client = api_client
        # Bounded so a burst of reconciles cannot open unbounded connections to the API server.
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="kube-api")

    @classmethod
    def connect(cls, kubeconfig: str | None, *, threads: int = 8) -> KubeApi:
        """Through the given kubeconfig file, or the in-cluster service account when None."""
        return cls(kubernetes.client.ApiClient(_configuration(kubeconfig)), threads=threads)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._client.close()

    # --- raw transport ---------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str | None = None,
        timeout: tuple[float, float] = _REQUEST_TIMEOUT,
    ) -> dict[str, Any]:
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        _, url, header_params, serialized, _ = self._client.param_serialize(
            method=method,
            resource_path=path,
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        try:
            response = self._client.call_api(
                method,
                url,
                header_params=header_params,
                body=serialized,
                _request_timeout=timeout,
            )
            raw = response.read()
        except (urllib3.exceptions.HTTPError, OSError) as e:
            metrics.KUBE_API_ERRORS.labels(_operation(method, path)).inc()
            # The kubernetes client's transport is urllib3; its errors name the URL, never a body.
            raise Unreachable(0, "Unreachable", f"{method} {path}: {e}") from None
        status = int(response.status)
        try:
            payload = json.loads(raw) if raw else {}
        except ValueError:
            payload = {}
        if status >= 400:
            # A Status body never echoes Secret data; we still keep only its reason and message.
            reason = str(payload.get("reason") or response.reason or "")
            message = str(payload.get("message") or f"{method} {path} failed")
            error = NotFound if status == 404 else Conflict if status == 409 else KubeError
            if status != 404:  # an absent object is an answer the operator expects and handles
                metrics.KUBE_API_ERRORS.labels(_operation(method, path)).inc()
            raise error(status, reason, message)
        return payload if isinstance(payload, dict) else {}

    async def _request(
        self, method: str, path: str, body: Any = None, content_type: str | None = None
    ) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._pool, lambda: self._call(method, path, body, content_type)
        )

    async def request(
        self, method: str, path: str, body: Any = None, *, within: float
    ) -> dict[str, Any]:
        """One JSON request with this client's auth, errors and threads, bounded by `within`
        seconds to connect and as many to read: for kube/lease.py, whose calls must give up
        before the leader's renew deadline rather than after the default 30 s."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._pool, lambda: self._call(method, path, body, None, (within, within))
        )

    # --- reads -----------------------------------------------------------------------------

    async def read_source(self, kind: str, namespace: str, name: str) -> SourceObject | None:
        """A Secret or ConfigMap, or None when it does not exist."""
        plural = "secrets" if kind == "Secret" else "configmaps"
        try:
            obj = await self._request(
                "GET", f"/api/v1/namespaces/{quote(namespace)}/{plural}/{quote(name)}"
            )
        except NotFound:
            return None
        meta = obj.get("metadata") or {}
        data: dict[str, SecretBytes] = {}
        if kind == "Secret":
            for key, value in (obj.get("data") or {}).items():
                try:
                    data[key] = SecretBytes(base64.b64decode(value or "", validate=True))
                except ValueError:
                    data[key] = SecretBytes(b"")  # the API server never serves invalid base64
        else:
            for key, value in (obj.get("data") or {}).items():
                data[key] = SecretBytes(str(value).encode())
            for key, value in (obj.get("binaryData") or {}).items():
                data[key] = SecretBytes(base64.b64decode(value or ""))
        return SourceObject(
            kind=kind,
            namespace=namespace,
            name=name,
            labels=dict(meta.get("labels") or {}),
            data=data,
            resource_version=meta.get("resourceVersion"),
        )

    async def list_keysets(self) -> list[KeySetResource]:
        """Every TrustFrameworkKeySet in the cluster (one call; used to confirm ownership)."""
        found = await self._request("GET", f"/apis/{API_GROUP}/{API_VERSION}/{KEYSET_PLURAL}")
        return [KeySetResource.from_body(item) for item in found.get("items") or []]

    async def read_keyset(self, namespace: str, name: str) -> KeySetResource | None:
        try:
            return KeySetResource.from_body(
                await self._request("GET", _keyset_path(namespace, name))
            )
        except NotFound:
            return None

    async def read_tenant(self, key: TenantKey) -> TenantResource | None:
        try:
            body = await self._request("GET", _tenant_path(key))
        except NotFound:
            return None
        return TenantResource.from_body(key.kind, body)

    async def read_namespace_labels(self, name: str) -> dict[str, str] | None:
        """A namespace's labels (None when it does not exist): what namespaceSelector matches."""
        try:
            found = await self._request("GET", f"/api/v1/namespaces/{quote(name)}")
        except NotFound:
            return None
        return {
            str(k): str(v) for k, v in ((found.get("metadata") or {}).get("labels") or {}).items()
        }

    # --- writes ----------------------------------------------------------------------------

    async def patch_tenant_status(self, key: TenantKey, status: Mapping[str, Any]) -> bool:
        """Merge-patch a tenant's status subresource; False when the tenant is gone."""
        try:
            await self._request(
                "PATCH",
                _tenant_path(key, "status"),
                {"status": dict(status)},
                "application/merge-patch+json",
            )
        except NotFound:
            return False
        return True

    async def patch_status(
        self,
        key: ObjectKey,
        status: Mapping[str, Any],
        *,
        resource_version: str | None = None,
    ) -> KeySetResource | None:
        """Merge-patch the status subresource; None when the object is gone.

        With `resource_version`, the API server applies it only to that version (Conflict
        otherwise): how a write intent is recorded, so two operator processes that read the
        same status can never both go on to upload.
        """
        patch: dict[str, Any] = {"status": dict(status)}
        if resource_version is not None:
            patch["metadata"] = {"resourceVersion": resource_version}
        try:
            return KeySetResource.from_body(
                await self._request(
                    "PATCH",
                    _keyset_path(key.namespace, key.name, "status"),
                    patch,
                    "application/merge-patch+json",
                )
            )
        except NotFound:
            return None

    async def set_finalizer(
        self, resource: KeySetResource, finalizer: str, *, present: bool
    ) -> KeySetResource | None:
        """Add or remove our finalizer, guarded by resourceVersion (409 when stale)."""
        current = list(resource.finalizers)
        if (finalizer in current) == present:
            return resource
        wanted = [*current, finalizer] if present else [f for f in current if f != finalizer]
        patch = [
            {
                "op": "test",
                "path": "/metadata/resourceVersion",
                "value": resource.ref.resource_version,
            },
            # "add" replaces a member that exists, and creates a missing one.
            {"op": "add", "path": "/metadata/finalizers", "value": wanted},
        ]
        try:
            return KeySetResource.from_body(
                await self._request(
                    "PATCH",
                    _keyset_path(resource.ref.namespace, resource.ref.name),
                    patch,
                    "application/json-patch+json",
                )
            )
        except NotFound:
            return None

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
        """Record a core/v1 Event on the resource; failures are logged, never raised."""
        namespace = ref.namespace or "default"
        at = to_rfc3339(now)
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{ref.name}.{uuid.uuid4().hex[:16]}", "namespace": namespace},
            "involvedObject": {
                "apiVersion": f"{API_GROUP}/{API_VERSION}",
                "kind": "TrustFrameworkKeySet",
                "namespace": namespace,
                "name": ref.name,
                "uid": ref.uid,
                "resourceVersion": ref.resource_version,
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": component},
            "firstTimestamp": at,
            "lastTimestamp": at,
            "count": 1,
        }
        try:
            await self._request("POST", f"/api/v1/namespaces/{quote(namespace)}/events", event)
        except KubeError as e:
            logger.warning("could not post event %s on %s/%s: %s", reason, namespace, ref.name, e)

    # --- for `kubectl b2ckeys` (a person's kubeconfig and RBAC) ----------------------------

    @classmethod
    def connect_as_user(cls, kubeconfig: str | None, context: str | None) -> KubeApi:
        """As kubectl would: the kubeconfig file given, else $KUBECONFIG (paths joined by the
        OS's separator are merged), else ~/.kube/config; `context` instead of its current one.

        Raises KubeError (reason "Kubeconfig") when there is none or it lacks the context."""
        configuration = kubernetes.client.Configuration()
        try:
            kubernetes.config.load_kube_config(
                config_file=kubeconfig, context=context, client_configuration=configuration
            )  # type: ignore[no-untyped-call]
        except (kubernetes.config.ConfigException, OSError) as e:
            raise KubeError(0, "Kubeconfig", f"cannot use the kubeconfig: {e}") from None
        return cls(kubernetes.client.ApiClient(configuration), threads=4)

    @staticmethod
    def kubeconfig_namespace(kubeconfig: str | None, context: str | None) -> str:
        """The namespace of the kubeconfig's context (the current one unless named), as kubectl
        defaults to it; "default" when the context names none."""
        try:
            contexts, current = kubernetes.config.list_kube_config_contexts(kubeconfig)  # type: ignore[no-untyped-call]
        except (kubernetes.config.ConfigException, OSError) as e:
            raise KubeError(0, "Kubeconfig", f"cannot use the kubeconfig: {e}") from None
        chosen = (
            next((c for c in contexts if c.get("name") == context), None) if context else current
        )
        return str(((chosen or {}).get("context") or {}).get("namespace") or "default")

    async def list_keyset_bodies(self, namespace: str | None) -> list[dict[str, Any]]:
        """TrustFrameworkKeySets as served (whole bodies), in one namespace or, with None, in
        every namespace; sorted by namespace and name."""
        base = f"/apis/{API_GROUP}/{API_VERSION}"
        path = (
            f"{base}/namespaces/{quote(namespace)}/{KEYSET_PLURAL}"
            if namespace is not None
            else f"{base}/{KEYSET_PLURAL}"
        )
        items = [i for i in (await self._request("GET", path)).get("items") or [] if i]
        return sorted(
            items,
            key=lambda i: ((i.get("metadata") or {}).get("namespace", ""), i["metadata"]["name"]),
        )

    async def read_keyset_body(self, namespace: str, name: str) -> dict[str, Any] | None:
        """One TrustFrameworkKeySet as served, or None when it does not exist."""
        try:
            return await self._request("GET", _keyset_path(namespace, name))
        except NotFound:
            return None

    async def annotate_keyset(
        self, namespace: str, name: str, annotations: Mapping[str, str | None]
    ) -> dict[str, Any] | None:
        """Merge-patch annotations onto a key set (None removes one); the object as stored, or
        None when it does not exist. Only metadata.annotations is sent: spec and status are
        left as they are, whoever else writes them meanwhile."""
        patch = {"metadata": {"annotations": dict(annotations)}}
        try:
            return await self._request(
                "PATCH", _keyset_path(namespace, name), patch, "application/merge-patch+json"
            )
        except NotFound:
            return None
