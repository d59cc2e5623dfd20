"""The operator's long-lived services, built once at startup and handed to Kopf's memo."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from b2ckeys.controller import Controller
from b2ckeys.graph.client import KeySetClient
from b2ckeys.kube.api import KubeApi
from b2ckeys.reconcile import Reconciler
from b2ckeys.settings import Settings

logger = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    kube: KubeApi
    graph: KeySetClient | None
    controller: Controller
    queue_task: asyncio.Task[None]

    async def close(self) -> None:
        self.controller.queue.stop()
        await asyncio.gather(self.queue_task, return_exceptions=True)
        if self.graph is not None:
            await self.graph.aclose()
        self.kube.close()


async def build_runtime(settings: Settings) -> Runtime:
    kube = KubeApi.connect(settings.kubeconfig, threads=settings.max_concurrent_reconciles)
    graph: KeySetClient | None = None
    if settings.graph is not None:
        from b2ckeys.graph.msgraph import MsGraphKeySetClient, warm_up_models

        graph = MsGraphKeySetClient.from_connection(settings.graph)
        # Loading the SDK's models costs a one-off import: pay it here, off the event loop,
        # rather than in the first reconcile.
        seconds = await asyncio.to_thread(warm_up_models)
        logger.info("Graph models loaded in %.1fs", seconds)
    else:
        logger.warning(
            "no default B2C tenant configured (AZURE_TENANT_ID/AZURE_CLIENT_ID unset): key sets "
            "will report Unauthorized until it is"
        )
    reconciler = Reconciler(settings, kube, graph, clock=time.time)
    controller = Controller(reconciler, settings)
    task = asyncio.create_task(controller.queue.run(), name="b2ckeys work queue")
    return Runtime(settings, kube, graph, controller, task)
