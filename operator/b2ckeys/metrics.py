"""The metrics and readiness HTTP server (B2CKEYS_METRICS_ADDRESS, default 0.0.0.0:8081).

`/metrics`: Prometheus text from prometheus-client's default registry (the metric objects live
at module level, as prometheus-client intends). `/readyz`: 200 once the operator is running and
talking to the API server, on the leader and a standby alike, so a rollout waits for a pod that
works; 503 otherwise. Liveness stays Kopf's own `/healthz` (port 8080).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import prometheus_client
from aiohttp import web

logger = logging.getLogger(__name__)

LEADER = prometheus_client.Gauge(
    "b2ckeys_leader",
    "1 on the replica that holds the leader Lease and reconciles, 0 on a standby",
    ["pod"],
)


@dataclass
class MetricsServer:
    runner: web.AppRunner
    host: str
    port: int  # the bound port (the setting may say 0)

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host  # noqa: S104
        return f"http://{host}:{self.port}"

    async def close(self) -> None:
        await self.runner.cleanup()


async def serve_metrics(address: str, ready: Callable[[], tuple[bool, str]]) -> MetricsServer:
    """Serve /metrics and /readyz on `address` (host:port); `ready` says whether and why."""

    async def metrics(_: web.Request) -> web.Response:
        body = prometheus_client.generate_latest(prometheus_client.REGISTRY)
        headers = {"Content-Type": prometheus_client.CONTENT_TYPE_LATEST}
        return web.Response(body=body, headers=headers)

    async def readyz(_: web.Request) -> web.Response:
        is_ready, why = ready()
        return web.Response(status=200 if is_ready else 503, text=why + "\n")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/readyz", readyz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    host, _, port = address.rpartition(":")
    site = web.TCPSite(runner, host or "0.0.0.0", int(port))  # noqa: S104
    await site.start()
    bound = int(runner.addresses[0][1]) if runner.addresses else int(port)
    server = MetricsServer(runner, host, bound)
    logger.info("serving /metrics and /readyz on %s", server.url)
    return server
