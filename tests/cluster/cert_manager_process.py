"""cert-manager's real controllers against the tier's kube-apiserver.

`scripts/go-tools cert-manager-controller` builds a small main around cert-manager's own
controllers (certificates trigger, keymanager, requestmanager, issuing, readiness,
revisionmanager; the CertificateRequest approver; the SelfSigned and CA issuers; Issuers and
ClusterIssuers) with cert-manager's CRDs beside it. It runs here with the admin kubeconfig, as
cert-manager's own ServiceAccount would run with its ClusterRoles: what it may do is not under
test, what it writes into Secrets is.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import yaml
from apiserver import KubeCluster, ServerProcess
from kubernetes import client as k8s
from kubernetes import watch as k8s_watch

from go_tools import cert_manager_crds_dir, tool_binary

# Where a ClusterIssuer's CA key pair lives (cert-manager's --cluster-resource-namespace).
CLUSTER_RESOURCE_NAMESPACE = "cert-manager"
# The controller prints this (stderr) once its informers have synced.
READY_LINE = "cert-manager-controller: caches synced, controllers running:"
# Start-up is informer syncs against a local API server: seconds, on a loaded machine.
START_TIMEOUT_SECONDS = 60.0
GROUP, VERSION = "cert-manager.io", "v1"


def cert_manager_crds() -> list[dict[str, Any]]:
    """cert-manager's CRDs from the same module version as the controller binary."""
    documents: list[dict[str, Any]] = []
    for path in sorted(cert_manager_crds_dir().glob("*.yaml")):
        documents += [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]
    assert documents, f"no CRDs in {cert_manager_crds_dir()}"
    return documents


@contextlib.contextmanager
def running_cert_manager(cluster: KubeCluster, workdir: Path) -> Iterator[ServerProcess]:
    cluster.create_namespace(CLUSTER_RESOURCE_NAMESPACE)
    process = ServerProcess(
        name="cert-manager-controller",
        argv=[
            str(tool_binary("cert-manager-controller")),
            f"--kubeconfig={cluster.admin_kubeconfig}",
            f"--cluster-resource-namespace={CLUSTER_RESOURCE_NAMESPACE}",
        ],
        log_path=workdir / "cert-manager-controller.log",
    )
    process.start()
    try:
        process.wait_ready(
            lambda: READY_LINE in process.log_path.read_text(errors="replace"),
            timeout=START_TIMEOUT_SECONDS,
        )
        yield process
    finally:
        process.stop()


class CertManagerApi:
    """Certificates and their conditions, read and written as a user (or cmctl) would."""

    def __init__(self, cluster: KubeCluster) -> None:
        self.cluster = cluster
        self.custom = k8s.CustomObjectsApi(cluster.admin)

    def certificate(self, namespace: str, name: str) -> dict[str, Any]:
        found = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, namespace, "certificates", name
        )
        return cast(dict[str, Any], found)

    def condition(self, namespace: str, name: str, kind: str) -> dict[str, Any]:
        status = self.certificate(namespace, name).get("status") or {}
        for condition in status.get("conditions") or []:
            if condition.get("type") == kind:
                return dict(condition)
        return {}

    def ready(self, namespace: str, name: str) -> bool:
        certificate = self.certificate(namespace, name)
        status = certificate.get("status") or {}
        return any(
            c.get("type") == "Ready"
            and c.get("status") == "True"
            and c.get("observedGeneration") == certificate["metadata"]["generation"]
            for c in status.get("conditions") or []
        )

    def renew(self, namespace: str, name: str) -> None:
        """What `cmctl renew` does: add Issuing=True (ManuallyTriggered) via the status
        subresource, with an update, so a concurrent change is a conflict, not a lost write."""
        certificate = self.certificate(namespace, name)
        status = certificate.setdefault("status", {})
        conditions = [c for c in status.get("conditions") or [] if c.get("type") != "Issuing"]
        conditions.append(
            {
                "type": "Issuing",
                "status": "True",
                "reason": "ManuallyTriggered",
                "message": "Certificate re-issuance manually triggered",
                "lastTransitionTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "observedGeneration": certificate["metadata"]["generation"],
            }
        )
        status["conditions"] = conditions
        self.custom.replace_namespaced_custom_object_status(
            GROUP, VERSION, namespace, "certificates", name, certificate
        )


@dataclass(frozen=True)
class SeenEvent:
    """One watch event as it reached the test: when, what, and a copy of the object."""

    arrived: float  # time.monotonic()
    type: str
    obj: dict[str, Any] = field(repr=False)

    @property
    def name(self) -> str:
        return str(self.obj["metadata"]["name"])


class Recorder:
    """Every event of one watch (Secrets or key sets of a namespace), kept with arrival times.

    Runs in a daemon thread from a fresh list's resourceVersion, so no event after start() is
    missed; `events()` is a snapshot, `wait_for()` polls it.
    """

    def __init__(self, list_call: Callable[..., Any], *args: Any) -> None:
        self._list_call, self._args = list_call, args
        self._events: list[SeenEvent] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._started: queue.Queue[BaseException | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, daemon=True, name="recorder")

    def __enter__(self) -> Recorder:
        self._thread.start()
        failure = self._started.get(timeout=30)
        if failure is not None:
            raise failure
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(15)

    def _run(self) -> None:
        try:
            listed = self._list_call(*self._args)
            version = _field(listed, "metadata")
            resource_version = _field(version, "resource_version", "resourceVersion")
        except BaseException as failure:  # handed to __enter__
            self._started.put(failure)
            return
        self._started.put(None)
        watcher = k8s_watch.Watch()  # type: ignore[no-untyped-call]
        while not self._stop.is_set():
            stream = watcher.stream(
                self._list_call, *self._args, resource_version=resource_version, timeout_seconds=2
            )
            for event in stream:
                arrived = time.monotonic()
                obj = event["raw_object"]
                resource_version = obj["metadata"]["resourceVersion"]
                with self._lock:
                    self._events.append(SeenEvent(arrived, event["type"], obj))

    def events(self, name: str | None = None) -> list[SeenEvent]:
        with self._lock:
            return [e for e in self._events if name is None or e.name == name]


def _field(obj: Any, *names: str) -> Any:
    for name in names:
        if isinstance(obj, Mapping) and name in obj:
            return obj[name]
        if hasattr(obj, name):
            return getattr(obj, name)
    raise KeyError(names[0])
