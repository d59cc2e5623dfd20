"""The operator's long-lived services, built once at startup and handed to Kopf's memo."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from b2ckeys.controller import Controller
from b2ckeys.graph.client import TenantClient
from b2ckeys.kube.api import KubeApi
from b2ckeys.reconcile import Reconciler
from b2ckeys.settings import Settings
from b2ckeys.tenant_access import TenantClients

logger = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    kube: KubeApi
    tenants: TenantClients
    controller: Controller
    tasks: list[asyncio.Task[None]]

    async def close(self) -> None:
        self.controller.queue.stop()
        self.controller.tenant_queue.stop()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.tenants.aclose()
        if self.tenants.default is not None:
            await self.tenants.default.aclose()
        self.kube.close()


async def build_runtime(settings: Settings) -> Runtime:
    # The Graph client is needed for any tenant, the default one or a B2CTenant's.
    from b2ckeys.graph.msgraph import MsGraphKeySetClient, warm_up_models

    kube = KubeApi.connect(settings.kubeconfig, threads=settings.max_concurrent_reconciles)
    default: TenantClient | None = None
    if settings.graph is not None:
        default = MsGraphKeySetClient.from_connection(settings.graph)
    else:
        logger.info(
            "no default B2C tenant configured (AZURE_TENANT_ID/AZURE_CLIENT_ID unset): key sets "
            "must name a B2CTenant or ClusterB2CTenant in spec.tenantRef"
        )
    # Loading the SDK's models costs a one-off import: pay it here, off the event loop, rather
    # than in the first reconcile.
    seconds = await asyncio.to_thread(warm_up_models)
    logger.info("Graph models loaded in %.1fs", seconds)
    tenants = TenantClients(settings, kube, default, MsGraphKeySetClient.from_connection)
    reconciler = Reconciler(settings, kube, tenants, clock=time.time)
    controller = Controller(reconciler, settings)
    tasks = [
        asyncio.create_task(controller.queue.run(), name="b2ckeys work queue"),
        asyncio.create_task(controller.tenant_queue.run(), name="b2ckeys tenant queue"),
    ]
    return Runtime(settings, kube, tenants, controller, tasks)
