"""Which Graph client a key set writes with: its tenant resolved, the rules checked, the
credentials read from the tenant's Secret, and one client per tenant cached until they change.

Every key set reconcile resolves its tenant afresh (one GET of the tenant and, for a
ClusterB2CTenant, of the namespace), so a key set that loses access stops writing at once, and
a rotated client secret or certificate is used from the next call on, without a restart.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from b2ckeys.conditions import Reason, ready_condition
from b2ckeys.formats import from_rfc3339, to_rfc3339
from b2ckeys.graph.client import (
    Forbidden,
    GraphConnection,
    GraphError,
    TenantClient,
    Unauthorized,
)
from b2ckeys.kube.api import KubeApi
from b2ckeys.model import KeySetSpec
from b2ckeys.secret import SecretBytes, SecretStr
from b2ckeys.settings import PUBLIC_CLOUD_AUTHORITY, PUBLIC_GRAPH_BETA, Settings
from b2ckeys.status import changes
from b2ckeys.tenants import (
    ClientCertificateAuth,
    ClientSecretAuth,
    TenantKey,
    TenantResource,
    refusal,
    tenant_key,
)

logger = logging.getLogger(__name__)

# A verified tenant's status.lastVerified is refreshed this often at most when nothing else
# changes (each verification at the resync interval would otherwise be a write).
LAST_VERIFIED_REFRESH = 3600.0
READ_WRITE_ROLE = "TrustFrameworkKeySet.ReadWrite.All"
READ_ROLE = "TrustFrameworkKeySet.Read.All"


class TenantRefused(Exception):
    """A key set may not, or cannot, use its tenant: a Ready reason and what to do."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class CredentialsNotFound(Exception):
    """A tenant's credential Secret, or a key in it, is missing."""


@dataclass(frozen=True)
class TenantAccess:
    key: TenantKey | None  # None: the operator's default tenant
    client: TenantClient


@dataclass(frozen=True)
class Verification:
    """A tenant's Ready condition and the permission its token carries."""

    reason: str
    message: str
    permission: str | None = None

    @property
    def ready(self) -> bool:
        return self.reason == "Verified"


class TenantClients:
    def __init__(
        self,
        settings: Settings,
        kube: KubeApi,
        default: TenantClient | None,
        connect: Callable[[GraphConnection], TenantClient],
    ) -> None:
        self.settings = settings
        self.kube = kube
        self.default = default
        self._connect = connect
        # Per tenant: what its client was built from (uid, generation, Secret version), and it.
        self._clients: dict[TenantKey, tuple[tuple[object, ...], TenantClient]] = {}

    async def for_keyset(self, namespace: str, spec: KeySetSpec) -> TenantAccess:
        key = tenant_key(namespace, spec.tenant_ref)
        if key is None:
            if self.default is None:
                raise TenantRefused(
                    Reason.UNAUTHORIZED,
                    "the operator has no default B2C tenant: set AZURE_TENANT_ID, AZURE_CLIENT_ID "
                    "and one of AZURE_CLIENT_SECRET, AZURE_CLIENT_CERTIFICATE_PATH or "
                    "AZURE_FEDERATED_TOKEN_FILE in its Deployment, or name a tenant in "
                    "spec.tenantRef",
                )
            return TenantAccess(None, self.default)
        tenant = await self.kube.read_tenant(key)
        if tenant is None:
            rule = (
                " (a key set uses a B2CTenant of its own namespace only; share a tenant across "
                "namespaces with a ClusterB2CTenant)"
                if key.namespace
                else ""
            )
            raise TenantRefused(
                Reason.TENANT_NOT_ALLOWED,
                f"{key} does not exist{rule}; create it, or fix spec.tenantRef. Nothing is "
                "written until it exists",
            )
        labels = await self.kube.read_namespace_labels(namespace) if not key.namespace else None
        why = refusal(
            tenant, namespace=namespace, namespace_labels=labels, key_set_id=spec.key_set_id
        )
        if why is not None:
            raise TenantRefused(Reason.TENANT_NOT_ALLOWED, why)
        try:
            return TenantAccess(key, await self.client(tenant))
        except CredentialsNotFound as missing:
            raise TenantRefused(
                Reason.UNAUTHORIZED, f"{key} cannot authenticate: {missing}"
            ) from None

    async def client(self, tenant: TenantResource) -> TenantClient:
        """The tenant's Graph client, rebuilt when the tenant or its credential Secret changed."""
        connection, inputs = await self._connection(tenant)
        cached = self._clients.get(tenant.key)
        if cached is not None and cached[0] == inputs:
            return cached[1]
        # Looked up and replaced with no await in between: a key set reconcile and the tenant's
        # verification that meet a change together build one client, never two (the second
        # would be lost without being closed).
        client = self._connect(connection)
        self._clients[tenant.key] = (inputs, client)
        if cached is not None:
            logger.info("%s changed: new credentials from the next call on", tenant.key)
            await cached[1].aclose()
        return client

    async def forget(self, key: TenantKey) -> None:
        cached = self._clients.pop(key, None)
        if cached is not None:
            await cached[1].aclose()

    async def aclose(self) -> None:
        for key in list(self._clients):
            await self.forget(key)

    async def verify(self, tenant: TenantResource) -> Verification:
        """Ready once a read of the key sets succeeds with the tenant's credentials, with the
        permission its token carries; else a precise reason and what to fix."""
        if tenant.spec is None:
            return Verification("InvalidSpec", f"{tenant.spec_error}; fix the tenant's spec")
        try:
            client = await self.client(tenant)
            await client.list_key_sets()
            roles = await client.granted_roles()
        except CredentialsNotFound as missing:
            return Verification("CredentialsNotFound", f"{missing}")
        except Forbidden as error:
            return Verification(
                "MissingPermission",
                f"Graph refused to list key sets ({error}): grant the app registration "
                f"{tenant.spec.client_id} the Microsoft Graph application permission "
                f"{READ_WRITE_ROLE} and admin consent",
                "none",
            )
        except Unauthorized as error:
            text = str(error)
            lowered = text.lower()
            if "AADSTS90002" in text or ("tenant" in lowered and "not found" in lowered):
                return Verification(
                    "UnknownTenant",
                    f"Entra does not know tenant {tenant.spec.tenant_id} ({error}); check "
                    "spec.tenantId (the B2C tenant's domain or GUID) and spec.authorityHost",
                )
            return Verification(
                "InvalidCredentials",
                f"Entra refused the credentials ({error}); check spec.clientId and the "
                f"{tenant.spec.auth.kind} (an expired or wrong secret, a certificate whose "
                "public part is not on the app registration, or a federated credential whose "
                "issuer/subject does not match the operator's service account)",
            )
        except GraphError as error:
            return Verification("GraphError", f"listing key sets failed: {error}; retrying")
        if roles is not None and READ_WRITE_ROLE not in roles:
            permission = "read" if READ_ROLE in roles else "none"
            return Verification(
                "MissingPermission",
                f"the app registration {tenant.spec.client_id} can read key sets but not write "
                f"them (its token has {', '.join(sorted(roles)) or 'no roles'}): grant "
                f"{READ_WRITE_ROLE} and admin consent",
                permission,
            )
        return Verification(
            "Verified",
            f"read the key sets of {tenant.spec.tenant_id} as {tenant.spec.client_id}",
            "read-write" if roles is not None else None,
        )

    async def verify_and_report(self, key: TenantKey, now: float) -> bool:
        """Verify a tenant and write its status when it changed; False when the tenant is gone.
        lastVerified is refreshed with a change, and at most hourly otherwise (a tenant is one
        object, and an hour-old time still says the check runs)."""
        tenant = await self.kube.read_tenant(key)
        if tenant is None:
            await self.forget(key)
            return False
        verdict = await self.verify(tenant)
        doc: dict[str, Any] = {
            "conditions": ready_condition(
                tenant.status.conditions,
                ready=verdict.ready,
                reason=verdict.reason,
                message=verdict.message,
                generation=tenant.generation,
                now=now,
            ),
            "observedGeneration": tenant.generation,
            "permission": verdict.permission,
        }
        last = from_rfc3339(tenant.status_doc.get("lastVerified"))
        stale = verdict.ready and (last is None or now - last >= LAST_VERIFIED_REFRESH)
        if changes(doc, tenant.status_doc) or stale:
            doc["lastVerified"] = (
                to_rfc3339(now) if verdict.ready else tenant.status_doc.get("lastVerified")
            )
            await self.kube.patch_tenant_status(key, doc)
            if not verdict.ready:
                logger.warning("%s: %s: %s", key, verdict.reason, verdict.message)
        return True

    # --- credentials ---------------------------------------------------------------------

    async def _connection(
        self, tenant: TenantResource
    ) -> tuple[GraphConnection, tuple[object, ...]]:
        spec = tenant.spec
        assert spec is not None  # callers refuse a tenant whose spec did not parse
        # A ClusterB2CTenant's Secrets live in the operator's own namespace, a B2CTenant's in
        # its own: nothing in a tenant can point at another namespace.
        namespace = tenant.key.namespace or self.settings.operator_namespace
        inputs: tuple[object, ...] = (tenant.uid, tenant.generation)
        secret: SecretStr | None = None
        certificate: SecretBytes | None = None
        token_file: str | None = None
        match spec.auth:
            case ClientSecretAuth(secret_name=name, key=key):
                obj = await self.kube.read_source("Secret", namespace, name)
                if obj is None or key not in obj.data:
                    raise CredentialsNotFound(self._missing(namespace, name, key, obj is None))
                secret = SecretStr(obj.data[key].reveal().decode("utf-8", "replace").strip())
                inputs += (obj.resource_version,)
            case ClientCertificateAuth(secret_name=name):
                obj = await self.kube.read_source("Secret", namespace, name)
                if obj is None or not {"tls.crt", "tls.key"} <= set(obj.data):
                    raise CredentialsNotFound(
                        self._missing(namespace, name, "tls.crt and tls.key", obj is None)
                    )
                pem = obj.data["tls.key"].reveal() + b"\n" + obj.data["tls.crt"].reveal()
                certificate = SecretBytes(pem)
                inputs += (obj.resource_version,)
            case _:
                token_file = self.settings.workload_identity_token_file
                if token_file is None:
                    raise CredentialsNotFound(
                        "workloadIdentity needs the operator's projected service account token "
                        "(AZURE_FEDERATED_TOKEN_FILE): label the operator's pods "
                        "azure.workload.identity/use=true, or set the variable"
                    )
        connection = GraphConnection(
            tenant_id=spec.tenant_id,
            client_id=spec.client_id,
            client_secret=secret,
            client_certificate_data=certificate,
            federated_token_file=token_file,
            authority_host=(spec.authority_host or PUBLIC_CLOUD_AUTHORITY).rstrip("/"),
            base_url=(spec.graph_base_url or PUBLIC_GRAPH_BETA).rstrip("/"),
        )
        return connection, inputs

    @staticmethod
    def _missing(namespace: str, name: str, key: str, whole: bool) -> str:
        if whole:
            return f"Secret {namespace}/{name} does not exist; create it or fix the secretRef"
        return f"Secret {namespace}/{name} has no {key}; add it or fix the secretRef"
