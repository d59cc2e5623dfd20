"""The real operator process against the real API server, as its own ServiceAccount.

`b2ckeys run --all-namespaces` is started the way a Deployment would run it: a kubeconfig for
the `b2ckeys` ServiceAccount bound to the ClusterRole in deploy/base/rbac.yaml (never admin), the
default tenant from AZURE_* variables, and fast B2CKEYS_* timings. Graph is the project's
emulator, served over HTTPS from a background thread of the test process; tests read what B2C
holds and inject faults through its control routes.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import os
import re
import ssl
import sys
import threading
import uuid
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
from apiserver import ROOT, KubeCluster, ServerProcess, free_loopback_port, wait_until
from kubernetes import client as k8s

from b2ckeys_emulators.graph.server import EmulatedApp, GraphEmulator, serve_graph_emulator

T = TypeVar("T")

RBAC_PATH = ROOT / "deploy" / "base" / "rbac.yaml"
OPERATOR_NAMESPACE, OPERATOR_ACCOUNT = "b2ckeys-system", "b2ckeys"
OPERATOR_USER = f"system:serviceaccount:{OPERATOR_NAMESPACE}:{OPERATOR_ACCOUNT}"
TENANT = "b2ckeys-cluster-test.onmicrosoft.com"
CLIENT_ID = "0b2c0000-0000-4000-8000-0000000c1057"
WRITE_ROLE = "TrustFrameworkKeySet.ReadWrite.All"

# The same code paths as production on a compressed clock. The resync is longer than any wait
# in the tier, so a change that reaches B2C was delivered by a watch event, never by the resync.
OPERATOR_TIMINGS = {
    "B2CKEYS_RESYNC_INTERVAL": "10m",
    "B2CKEYS_ACTIVATION_POLL_INTERVAL": "1s",
    # Failed reconciles (Graph down, bad input) come back quickly but never spin.
    "B2CKEYS_ERROR_BACKOFF_INITIAL": "200ms",
    "B2CKEYS_ERROR_BACKOFF_MAX": "2s",
    # Long enough for a few retries of a failing DELETE, short enough for a test to wait out.
    "B2CKEYS_DELETE_TIMEOUT": "6s",
    # The emulator answers at once here: a write of unknown fate is settled within moments.
    "B2CKEYS_WRITE_SETTLE_TIME": "2s",
    # Leader election on, as in production, on a compressed clock (client-go's ratios).
    "B2CKEYS_LEASE_DURATION": "4s",
    "B2CKEYS_RENEW_DEADLINE": "3s",
    "B2CKEYS_RETRY_PERIOD": "500ms",
}
# RBAC bindings reach the authorizer through an informer: a moment after they are written.
RBAC_PROPAGATION_TIMEOUT_SECONDS = 10.0
# Kopf drains its watches and handlers on SIGTERM in well under a second; this bounds a hang.
OPERATOR_STOP_TIMEOUT_SECONDS = 15.0
# A key set reaches Ready in well under a second once the operator runs; the first one waits
# for the Graph SDK's one-off model warm-up (about 4 s) on a busy 2-core machine.
READY_TIMEOUT_SECONDS = 60.0
LOG_TAIL_LINES = 80

# What the API server answers when it refuses a request: RBAC ("User ... cannot ...") and
# admission (a namespace being terminated) both say "forbidden" with code 403.
_FORBIDDEN = re.compile(r"forbidden|\b403\b", re.IGNORECASE)
# Creating anything, Events included, in a namespace being deleted is refused with 403 by the
# NamespaceLifecycle admission plugin. That is not a missing rule; the operator logs and moves on.
_TERMINATING_NAMESPACE = "because it is being terminated"
# How the work queue logs a reconcile that raised instead of returning a failed result.
_LAST_RESORT = "failed unexpectedly"
# How Kopf and the operator's controller log a failed request they are about to retry.
_RETRYING = (
    "failed; will retry:",
    "Kubernetes API call failed, retrying in",
    "; retrying in",  # leader election's attempts
)


class BackgroundLoop:
    """An event loop in a daemon thread, for a server that outlives the tests' own loops."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="graph-emulator", daemon=True
        )
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=60)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()


@dataclass
class GraphEmulatorThread:
    """The Graph emulator served from a background loop; B2C as the tests see it."""

    emulator: GraphEmulator
    client_secret: str
    control: httpx.Client

    @property
    def ca_path(self) -> Path:
        return self.emulator.ca_path

    def key_sets(self) -> dict[str, dict[str, Any]]:
        response = self.control.get("/_emulator/keysets")
        response.raise_for_status()
        return {ks["id"]: ks for ks in response.json()["value"]}

    def key_set(self, key_set_id: str) -> dict[str, Any] | None:
        return self.key_sets().get(key_set_id)

    def keys(self, key_set_id: str) -> list[dict[str, Any]]:
        return list((self.key_set(key_set_id) or {}).get("keys") or [])

    def requests(self, key_set_id: str) -> list[str]:
        """`METHOD path` of every Graph call naming this key set, oldest first."""
        response = self.control.get("/_emulator/requests")
        response.raise_for_status()
        return [
            f"{r['method']} {r['path']}"
            for r in response.json()["value"]
            if r["path"].startswith("/beta/") and key_set_id in r["path"]
        ]

    def add_fault(self, **fault: Any) -> None:
        response = self.control.post("/_emulator/faults", json=fault)
        assert response.status_code < 300, response.text

    def clear_faults(self) -> None:
        response = self.control.delete("/_emulator/faults")
        assert response.status_code < 300, response.text


@contextlib.contextmanager
def graph_emulator_thread(tls_dir: Path) -> Iterator[GraphEmulatorThread]:
    background = BackgroundLoop()
    client_secret = "cluster-test-" + uuid.uuid4().hex
    app = EmulatedApp(client_id=CLIENT_ID, secret=client_secret, roles=(WRITE_ROLE,))
    serving = serve_graph_emulator(tls_dir=tls_dir, tenant_id=TENANT, apps=[app])
    emulator = background.run(serving.__aenter__())
    try:
        with httpx.Client(
            base_url=emulator.url,
            verify=ssl.create_default_context(cafile=str(emulator.ca_path)),
            timeout=10,
        ) as control:
            yield GraphEmulatorThread(emulator, client_secret, control)
    finally:
        background.run(serving.__aexit__(None, None, None))
        background.close()


def operator_binary() -> Path:
    """The `b2ckeys` entry point of the virtualenv running the tests."""
    binary = Path(sys.executable).parent / "b2ckeys"
    if not binary.exists():
        raise FileNotFoundError(f"{binary} is missing; install the project (make) first")
    return binary


@dataclass
class OperatorProcess(ServerProcess):
    """`b2ckeys run` with its log in a file (stdout and stderr both)."""

    def stop(
        self, *, graceful: bool = True, timeout: float = OPERATOR_STOP_TIMEOUT_SECONDS
    ) -> int | None:
        """SIGTERM, as the kubelet stops a pod; the exit code (None if it never started)."""
        return super().stop(graceful=graceful, timeout=timeout)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def log_since(self, offset: int) -> str:
        with self.log_path.open("rb") as log:
            log.seek(offset)
            return log.read().decode("utf-8", errors="replace")

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:]) or "(empty log)"


def unexplained_refusals(
    cluster: KubeCluster, audit_events: list[dict[str, Any]], log: str
) -> list[str]:
    """What the API server refused the operator for a reason other than the two expected ones.

    The audit log says what the server refused and why. Expected: an RBAC denial by a
    kube-apiserver still starting up (its authorizer has not synced the bindings yet), and an
    admission refusal to create in a namespace being deleted. Anything else, such as an RBAC
    denial by a ready server, means a rule is missing.

    The operator log must show no 403 either, except those two cases: lines from a namespace
    being terminated, and lines saying the request will be retried when the audit log explains
    every denial (Kopf and the controller retry a 403 and log each attempt).
    """
    unexplained = []
    for event in audit_events:
        if (event.get("user") or {}).get("username") != OPERATOR_USER:
            continue
        denied = (event.get("annotations") or {}).get("authorization.k8s.io/decision") == "forbid"
        received = datetime.datetime.fromisoformat(str(event.get("requestReceivedTimestamp")))
        if denied and not cluster.received_while_starting(received):
            unexplained.append(f"RBAC denied: {event.get('verb')} {event.get('requestURI')}")
    for line in log.splitlines():
        if not _FORBIDDEN.search(line) or _TERMINATING_NAMESPACE in line:
            continue
        if any(retrying in line for retrying in _RETRYING) and not unexplained:
            continue
        unexplained.append(f"operator log: {line}")
    return unexplained


def unexpected_failures(log: str) -> list[str]:
    """Reconciles that escaped the operator's own error handling (the work queue's last resort
    logs them with a traceback and retries after a fixed minute): always a bug."""
    return [line for line in log.splitlines() if _LAST_RESORT in line]


@dataclass
class RunningOperator:
    """The operator under test and everything a scenario needs to drive and observe it."""

    cluster: KubeCluster
    graph: GraphEmulatorThread
    process: OperatorProcess
    kubeconfig: Path

    def check_alive(self) -> None:
        if not self.process.running:
            code = self.process.popen.returncode if self.process.popen else None
            raise AssertionError(
                f"the operator exited with {code}; its log ends:\n{self.process.log_tail()}"
            )

    def wait_for(
        self,
        what: str,
        probe: Callable[[], T | None],
        *,
        timeout: float = READY_TIMEOUT_SECONDS,
        describe: Callable[[], object] | None = None,
    ) -> T:
        """Poll `probe` until it returns something truthy, failing early if the operator died."""
        found: list[T] = []

        def done() -> bool:
            self.check_alive()
            value = probe()
            if value:
                found.append(value)
                return True
            return False

        try:
            wait_until(done, timeout=timeout, interval=0.1, what=what)
        except TimeoutError as e:
            detail = f"; last seen: {describe()}" if describe else ""
            raise AssertionError(f"{e}{detail}") from None
        return found[0]


def bind_operator_account(cluster: KubeCluster) -> Path:
    """Apply deploy/base/rbac.yaml; a kubeconfig for its ServiceAccount once RBAC serves it."""
    cluster.create_namespace(OPERATOR_NAMESPACE)
    cluster.apply(RBAC_PATH.read_text(encoding="utf-8"))
    kubeconfig = cluster.create_service_account_kubeconfig(OPERATOR_NAMESPACE, OPERATOR_ACCOUNT)
    authorization = k8s.AuthorizationV1Api(cluster.api_client(kubeconfig))

    def may_watch_keysets() -> bool:
        review = authorization.create_self_subject_access_review(
            k8s.V1SelfSubjectAccessReview(
                spec=k8s.V1SelfSubjectAccessReviewSpec(
                    resource_attributes=k8s.V1ResourceAttributes(
                        group="b2ckeys.dev", resource="trustframeworkkeysets", verb="watch"
                    )
                )
            )
        )
        return bool(review.status and review.status.allowed)

    wait_until(
        may_watch_keysets,
        timeout=RBAC_PROPAGATION_TIMEOUT_SECONDS,
        what="the ClusterRoleBinding to reach the authorizer",
    )
    return kubeconfig


def operator_env(kubeconfig: Path, graph: GraphEmulatorThread) -> dict[str, str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AZURE_", "B2CKEYS_", "KUBERNETES_")) and k != "KUBECONFIG"
    }
    ca = str(graph.ca_path)
    return {
        **base,
        "KUBECONFIG": str(kubeconfig),
        "AZURE_TENANT_ID": TENANT,
        "AZURE_CLIENT_ID": CLIENT_ID,
        "AZURE_CLIENT_SECRET": graph.client_secret,
        "AZURE_AUTHORITY_HOST": graph.emulator.authority_host,
        "B2CKEYS_GRAPH_BASE_URL": graph.emulator.graph_base_url,
        # The Graph emulator's CA; the API server's CA comes from the kubeconfig.
        "SSL_CERT_FILE": ca,
        "REQUESTS_CA_BUNDLE": ca,
        # The Lease lives where the Deployment runs (its Role is there); /metrics and /readyz
        # on a port of this process's own, so operators and other test sessions never clash.
        "POD_NAMESPACE": OPERATOR_NAMESPACE,
        "B2CKEYS_METRICS_ADDRESS": f"127.0.0.1:{free_loopback_port()}",
        **OPERATOR_TIMINGS,
    }


@contextlib.contextmanager
def running_operator(
    cluster: KubeCluster, graph: GraphEmulatorThread, workdir: Path
) -> Iterator[RunningOperator]:
    kubeconfig = bind_operator_account(cluster)
    process = OperatorProcess(
        name="b2ckeys run",
        argv=[str(operator_binary()), "run", "--all-namespaces"],
        env=operator_env(kubeconfig, graph),
        log_path=workdir / "operator.log",
    )
    process.start()
    try:
        yield RunningOperator(cluster, graph, process, kubeconfig)
    finally:
        code = process.stop()
    # Kopf handles SIGTERM by draining and returning: anything else is a crash worth seeing.
    assert code == 0, f"the operator exited with {code}; its log ends:\n{process.log_tail()}"
