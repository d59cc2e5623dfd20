"""The operator's long-lived services, built once at startup and handed to Kopf's memo."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from b2ckeys import metrics
from b2ckeys.controller import Controller
from b2ckeys.graph.client import GraphConnection, TenantClient
from b2ckeys.kube.api import KubeApi
from b2ckeys.kube.lease import KubeLeaseStore
from b2ckeys.leader import ElectionTimings, LeaderElector, Leadership, default_identity
from b2ckeys.leader_gates import LeaderGatedKeySetClient, LeaderGatedKubeApi
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
        self.controller.tenant_queue.stop()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.elector is not None and self.elector_task is not None:
            self.elector.stop()
            await asyncio.gather(self.elector_task, return_exceptions=True)
            await self.elector.release()
        if self.lease_store is not None:
            self.lease_store.close()
        if self.metrics_server is not None:
            await self.metrics_server.close()
        metrics.LEADER.remove(self.leadership.identity)
        await self.tenants.aclose()
        if self.tenants.default is not None:
            await self.tenants.default.aclose()
        self.kube.close()


async def build_runtime(settings: Settings) -> Runtime:
    # The Graph client is needed for any tenant, the default one or a B2CTenant's.
    from b2ckeys.graph.msgraph import MsGraphKeySetClient, warm_up_models

    identity = default_identity(settings.pod_name)
    leadership = (
        Leadership(identity, settings.renew_deadline)
        if settings.leader_election
        else Leadership.unelected(identity)
    )

    def connect(connection: GraphConnection) -> TenantClient:
        # Every Graph write, whichever tenant it goes to, passes the leadership gate.
        return LeaderGatedKeySetClient(MsGraphKeySetClient.from_connection(connection), leadership)

    # Every Kubernetes write of a reconcile passes the same gate.
    kube = LeaderGatedKubeApi.connect_gated(
        settings.kubeconfig, threads=settings.max_concurrent_reconciles, leadership=leadership
    )
    default: TenantClient | None = None
    if settings.graph is not None:
        default = connect(settings.graph)
    else:
        logger.info(
            "no default B2C tenant configured (AZURE_TENANT_ID/AZURE_CLIENT_ID unset): key sets "
            "must name a B2CTenant or ClusterB2CTenant in spec.tenantRef"
        )
    # Loading the SDK's models costs a one-off import: pay it here, off the event loop, rather
    # than in the first reconcile.
    seconds = await asyncio.to_thread(warm_up_models)
    logger.info("Graph models loaded in %.1fs", seconds)
    tenants = TenantClients(settings, kube, default, connect)
    reconciler = Reconciler(settings, kube, tenants, clock=time.time)
    controller = Controller(reconciler, settings)
    controller.leadership = leadership  # a standby reconciles nothing
    tasks = [
        asyncio.create_task(controller.queue.run(), name="b2ckeys work queue"),
        asyncio.create_task(controller.tenant_queue.run(), name="b2ckeys tenant queue"),
    ]
    runtime = Runtime(settings, kube, tenants, controller, tasks, leadership)
    metrics.LEADER.labels(identity).set(0 if settings.leader_election else 1)
    if settings.leader_election:
        runtime.lease_store = KubeLeaseStore(
            # Its own connection and threads: renewals never wait behind reconciles.
            KubeApi.connect(settings.kubeconfig, threads=2),
            settings.operator_namespace,
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
            settings.operator_namespace,
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
