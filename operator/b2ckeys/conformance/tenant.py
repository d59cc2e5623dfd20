"""`--tenant`: the Graph connection of a B2CTenant or ClusterB2CTenant, read from the cluster
the way the operator reads it (`b2ckeys.tenant_access`), with the user's kubeconfig and RBAC."""

from __future__ import annotations

import dataclasses

from b2ckeys.graph.client import GraphConnection, TenantClient
from b2ckeys.kube.api import KubeApi, KubeError
from b2ckeys.settings import Settings
from b2ckeys.tenant_access import CredentialsNotFound, TenantClients
from b2ckeys.tenants import TenantKey


class TenantUnavailable(ValueError):
    """The tenant or its credentials cannot be read; the message says what to fix."""


async def tenant_connection(
    name: str, kubeconfig: str | None, context: str | None, operator_namespace: str
) -> GraphConnection:
    namespace, _, tenant_name = name.rpartition("/")
    key = (
        TenantKey("B2CTenant", namespace, tenant_name)
        if namespace
        else TenantKey("ClusterB2CTenant", "", tenant_name)
    )
    try:
        kube = KubeApi.connect_as_user(kubeconfig, context)
    except KubeError as error:
        raise TenantUnavailable(f"cannot reach the cluster: {error}") from None
    seen: list[GraphConnection] = []

    def capture(connection: GraphConnection) -> TenantClient:
        # TenantClients builds a client from the connection it read; keep the connection and
        # build the conformance clients from it (they need raw requests).
        seen.append(connection)
        from b2ckeys.graph.msgraph import MsGraphKeySetClient

        return MsGraphKeySetClient.from_connection(connection)

    settings = dataclasses.replace(Settings.from_env(), operator_namespace=operator_namespace)
    tenants = TenantClients(settings, kube, None, capture)
    try:
        tenant = await kube.read_tenant(key)
        if tenant is None:
            raise TenantUnavailable(f"{key} not found")
        await tenants.client(tenant)
    except KubeError as error:
        raise TenantUnavailable(f"cannot read {key} or its Secret: {error}") from None
    except CredentialsNotFound as missing:
        raise TenantUnavailable(f"{key} cannot authenticate: {missing}") from None
    finally:
        await tenants.aclose()
        kube.close()
    return seen[-1]
