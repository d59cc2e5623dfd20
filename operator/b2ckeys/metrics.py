"""Prometheus metrics, and the HTTP server for them and for readiness (B2CKEYS_METRICS_ADDRESS,
default 0.0.0.0:8081).

Names follow cert-manager's and External Secrets' where they have an equivalent
(`certmanager_certificate_expiration_timestamp_seconds`, `..._ready_status`,
`externalsecret_provider_api_calls_count`), so dashboards and habits carry over. No label ever
carries a secret, a fingerprint or key material: key set labels are the resource's namespace and
name, the B2C key set id and the tenant's name.

`/metrics`: Prometheus text from prometheus-client's default registry (the metric objects live
at module level, as prometheus-client intends). `/readyz`: 200 once the operator is running and
talking to the API server, on the leader and a standby alike, so a rollout waits for a pod that
works; 503 otherwise. Liveness stays Kopf's own `/healthz` (port 8080).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

import prometheus_client
from aiohttp import web

from b2ckeys.conditions import Outcome
from b2ckeys.model import KeySetResource
from b2ckeys.status import KeySetState
from b2ckeys.tenants import DEFAULT_TENANT, tenant_key

logger = logging.getLogger(__name__)

LEADER = prometheus_client.Gauge(
    "b2ckeys_leader",
    "1 on the replica that holds the leader Lease and reconciles, 0 on a standby",
    ["pod"],
)

# --- per key set ----------------------------------------------------------------------------------

KEYSET_LABELS = ("namespace", "name", "key_set", "tenant")
ACTIVE_KEY_EXPIRATION = prometheus_client.Gauge(
    "b2ckeys_keyset_active_key_expiration_timestamp_seconds",
    "When the key B2C uses now expires (Unix time); absent while B2C uses no dated key",
    KEYSET_LABELS,
)
ACTIVE_KEY_NOT_BEFORE = prometheus_client.Gauge(
    "b2ckeys_keyset_active_key_not_before_timestamp_seconds",
    "When the key B2C uses now became valid (Unix time)",
    KEYSET_LABELS,
)
SUCCESSOR_NOT_BEFORE = prometheus_client.Gauge(
    "b2ckeys_keyset_successor_not_before_timestamp_seconds",
    "When B2C switches to the next staged key, its notBefore (Unix time); absent while no "
    "enabled key is staged for later",
    KEYSET_LABELS,
)
KEYS = prometheus_client.Gauge(
    "b2ckeys_keyset_keys",
    "Keys in the B2C key set (B2C never removes a key)",
    KEYSET_LABELS,
)
READY_STATUS = prometheus_client.Gauge(
    "b2ckeys_keyset_ready_status",
    "1 for the key set's current Ready condition status and reason (one series per key set)",
    (*KEYSET_LABELS, "condition", "reason"),
)
LAST_SYNC = prometheus_client.Gauge(
    "b2ckeys_keyset_last_sync_timestamp_seconds",
    "When the operator last compared the key set with B2C successfully (Unix time)",
    KEYSET_LABELS,
)

# --- what the operator does -----------------------------------------------------------------------

UPLOADS = prometheus_client.Counter(
    "b2ckeys_uploads",
    "Keys added to B2C, by Graph action and source kind",
    ("action", "source_kind"),
)
RECONCILES = prometheus_client.Counter(
    "b2ckeys_reconciles",
    "Reconciles of key sets, by result (success, failure)",
    ("result",),
)
GRAPH_REQUESTS = prometheus_client.Counter(
    "b2ckeys_graph_requests",
    "Requests to Microsoft Graph, by operation and HTTP status (error for no answer)",
    ("operation", "status"),
)
GRAPH_REQUEST_DURATION = prometheus_client.Histogram(
    "b2ckeys_graph_request_duration_seconds",
    "Time from sending a Graph request to its answer, by operation",
    ("operation",),
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
GRAPH_THROTTLED = prometheus_client.Counter(
    "b2ckeys_graph_throttled",
    "Graph answers of 429 Too Many Requests, by tenant (B2C throttles per app and tenant)",
    ("tenant",),
)
KUBE_API_ERRORS = prometheus_client.Counter(
    "b2ckeys_kube_api_errors",
    "Failed Kubernetes API calls of the operator's own (not Kopf's watches), by operation",
    ("operation",),
)


@dataclass(frozen=True)
class KeySetSample:
    """What one reconcile learned about a key set, for its series."""

    namespace: str
    name: str
    key_set: str
    tenant: str
    ready: bool
    reason: str
    # From B2C, when it was read (None: the reconcile failed before or while reading it).
    active_not_before: int | None = None
    active_expires: int | None = None
    successor_not_before: int | None = None
    keys: int | None = None
    synced_at: float | None = None


def keyset_sample(
    resource: KeySetResource, outcome: Outcome, state: KeySetState | None, now: float
) -> KeySetSample:
    """The sample a reconcile's end leaves: its outcome, and B2C's view when it was read."""
    spec = resource.spec
    tenant = tenant_key(resource.ref.namespace, spec.tenant_ref) if spec else None
    key_set = (
        (state.key_set_id if state is not None else None)
        or resource.status.key_set_id
        or (spec.candidate_ids[0] if spec else "")
    )
    active = state.active if state is not None else None
    staged = state.staged if state is not None else None
    return KeySetSample(
        namespace=resource.ref.namespace,
        name=resource.ref.name,
        key_set=key_set,
        tenant=tenant.label if tenant is not None else DEFAULT_TENANT,
        ready=outcome.ready,
        reason=outcome.reason.value,
        active_not_before=active.nbf if active else None,
        active_expires=active.exp if active else None,
        successor_not_before=staged.nbf if staged else None,
        keys=state.key_count if state is not None else None,
        synced_at=now if state is not None else None,
    )


class KeySetSeries:
    """The per-key-set series, kept in step with the resources: replaced on every reconcile, and
    removed with the resource, so a deleted key set stops alerting."""

    def __init__(self) -> None:
        self._labels: dict[tuple[str, str], tuple[str, ...]] = {}
        self._ready: dict[tuple[str, str], tuple[str, str]] = {}

    def record(self, sample: KeySetSample) -> None:
        key = (sample.namespace, sample.name)
        labels = (sample.namespace, sample.name, sample.key_set, sample.tenant)
        if self._labels.get(key, labels) != labels:
            self.forget(*key)  # the B2C key set or the tenant changed: new series
        self._labels[key] = labels
        condition = ("True" if sample.ready else "False", sample.reason)
        previous = self._ready.get(key)
        if previous is not None and previous != condition:
            _remove(READY_STATUS, (*labels, *previous))
        READY_STATUS.labels(*labels, *condition).set(1)
        self._ready[key] = condition
        if sample.synced_at is None:
            return
        LAST_SYNC.labels(*labels).set(sample.synced_at)
        if sample.keys is not None:
            KEYS.labels(*labels).set(sample.keys)
        for gauge, value in (
            (ACTIVE_KEY_NOT_BEFORE, sample.active_not_before),
            (ACTIVE_KEY_EXPIRATION, sample.active_expires),
            (SUCCESSOR_NOT_BEFORE, sample.successor_not_before),
        ):
            if value is None:
                _remove(gauge, labels)
            else:
                gauge.labels(*labels).set(value)

    def forget(self, namespace: str, name: str) -> None:
        labels = self._labels.pop((namespace, name), None)
        condition = self._ready.pop((namespace, name), None)
        if labels is None:
            return
        for gauge in (
            ACTIVE_KEY_EXPIRATION,
            ACTIVE_KEY_NOT_BEFORE,
            SUCCESSOR_NOT_BEFORE,
            KEYS,
            LAST_SYNC,
        ):
            _remove(gauge, labels)
        if condition is not None:
            _remove(READY_STATUS, (*labels, *condition))


def _remove(metric: prometheus_client.Gauge, labels: tuple[str, ...]) -> None:
    with contextlib.suppress(KeyError):  # never set for these labels
        metric.remove(*labels)


# One per process, like the metrics themselves.
KEYSET_SERIES = KeySetSeries()


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
