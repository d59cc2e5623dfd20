"""The operator's long-lived services, built once at startup and handed to Kopf's memo."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from b2ckeys import metrics
from b2ckeys.controller import Controller
from b2ckeys.graph.client import KeySetClient
from b2ckeys.kube.api import KubeApi
from b2ckeys.kube.lease import KubeLeaseStore
from b2ckeys.leader import ElectionTimings, LeaderElector, Leadership, default_identity
from b2ckeys.leader_gates import LeaderGatedKeySetClient, LeaderGatedKubeApi
from b2ckeys.settings import Settings
from b2ckeys.sync import Reconciler

logger = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    kube: KubeApi
    graph: KeySetClient | None
    controller: Controller
    queue_task: asyncio.Task[None]
    leadership: Leadership
    elector: LeaderElector | None = None
    elector_task: asyncio.Task[None] | None = None
    lease_store: KubeLeaseStore | None = None
    metrics_server: metrics.MetricsServer | None = None

    def readiness(self) -> tuple[bool, str]:
        """For /readyz: the watches run once startup is done (this object exists); with
        election on, the API server must also have answered within the lease duration."""
        if self.elector is None:
            return True, "ok"
        answered = self.elector.last_answer
        if answered is None or time.monotonic() - answered > self.settings.lease_duration:
            return False, "the API server has not answered leader election lately"
        return True, "ok (leader)" if self.leadership.is_leading() else "ok (standby)"

    async def close(self) -> None:
        # The order matters: nothing may write once the Lease is released.
        self.controller.queue.stop()
        await asyncio.gather(self.queue_task, return_exceptions=True)
        if self.elector is not None and self.elector_task is not None:
            self.elector.stop()
            await asyncio.gather(self.elector_task, return_exceptions=True)
            await self.elector.release()
        if self.lease_store is not None:
            self.lease_store.close()
        if self.metrics_server is not None:
            await self.metrics_server.close()
        metrics.LEADER.remove(self.leadership.identity)
        if self.graph is not None:
            await self.graph.aclose()
        self.kube.close()


async def build_runtime(settings: Settings, memo: Mapping[str, Any] | None = None) -> Runtime:
    identity = default_identity(settings.pod_name)
    leadership = (
        Leadership(identity, settings.renew_deadline)
        if settings.leader_election
        else Leadership.unelected(identity)
    )
    # Every write of a reconcile, to Kubernetes and to Graph, passes the leadership gate.
    kube = LeaderGatedKubeApi.connect_gated(
        settings.kubeconfig, threads=settings.max_concurrent_reconciles, leadership=leadership
    )
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
    if graph is not None:
        graph = LeaderGatedKeySetClient(graph, leadership)
    reconciler = Reconciler(settings, kube, graph, clock=time.time)
    controller = Controller(reconciler, settings)
    controller.leadership = leadership  # leader election hook: a standby reconciles nothing
    task = asyncio.create_task(controller.queue.run(), name="b2ckeys work queue")
    runtime = Runtime(settings, kube, graph, controller, task, leadership)
    metrics.LEADER.labels(identity).set(0 if settings.leader_election else 1)
    if settings.leader_election:
        runtime.lease_store = KubeLeaseStore(
            # Its own connection and threads: renewals never wait behind reconciles.
            KubeApi.connect(settings.kubeconfig, threads=2),
            settings.lease_namespace,
            settings.lease_name,
        )

        def started_leading() -> None:
            metrics.LEADER.labels(identity).set(1)
            controller.requeue_all()  # a new leader resyncs everything it has seen

        def stopped_leading() -> None:
            metrics.LEADER.labels(identity).set(0)

        runtime.elector = LeaderElector(
            runtime.lease_store,
            leadership,
            ElectionTimings(
                settings.lease_duration, settings.renew_deadline, settings.retry_period
            ),
            on_started_leading=started_leading,
            on_stopped_leading=stopped_leading,
        )
        logger.info(
            "leader election on: %s competes for Lease %s/%s (lease %gs, renew deadline %gs, "
            "retry %gs); standing by until it holds it",
            identity,
            settings.lease_namespace,
            settings.lease_name,
            settings.lease_duration,
            settings.renew_deadline,
            settings.retry_period,
        )
        runtime.elector_task = asyncio.create_task(runtime.elector.run(), name="leader election")
    if settings.metrics_address is not None:
        runtime.metrics_server = await metrics.serve_metrics(
            settings.metrics_address, runtime.readiness
        )
    return runtime
