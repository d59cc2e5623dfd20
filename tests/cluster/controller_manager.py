"""A real kube-controller-manager running only what namespace deletion needs.

The cluster tier has no controllers by default (a namespace would stay Terminating forever).
Deleting a namespace takes the namespace controller (it deletes the namespace's content, then
releases the `kubernetes` finalizer) and the garbage collector; the service-account and token
controllers make each namespace look as it does in a real cluster (a `default` account), which
is also how this module knows the controllers have started.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from apiserver import KubeCluster, ServerProcess, wait_until
from kubernetes import client as k8s

CONTROLLERS = (
    "namespace-controller",
    "garbage-collector-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
)
# Informers sync and the controllers start within a few seconds; the bound only catches a hang.
CONTROLLERS_READY_TIMEOUT_SECONDS = 60.0


class MissingBinary(FileNotFoundError):
    pass


def controller_manager_argv(cluster: KubeCluster, binary: Path) -> list[str]:
    return [
        str(binary),
        # Admin (system:masters) rather than per-controller ServiceAccounts: the bootstrap
        # controller roles are not what is under test here.
        f"--kubeconfig={cluster.admin_kubeconfig}",
        "--use-service-account-credentials=false",
        f"--controllers={','.join(CONTROLLERS)}",
        f"--service-account-private-key-file={cluster.pki.service_account_private_key}",
        f"--root-ca-file={cluster.pki.ca_cert}",
        # One instance, nothing to elect; no lease objects either.
        "--leader-elect=false",
        # No serving endpoint: readiness is read from what the controllers do.
        "--secure-port=0",
        "--profiling=false",
    ]


def _default_account_exists(core: k8s.CoreV1Api, namespace: str) -> bool:
    try:
        core.read_namespaced_service_account("default", namespace)
    except k8s.ApiException as e:
        if e.status == 404:
            return False
        raise
    return True


@contextlib.contextmanager
def running_controller_manager(cluster: KubeCluster, workdir: Path) -> Iterator[ServerProcess]:
    binary = cluster.bin_dir / "kube-controller-manager"
    if not os.access(binary, os.X_OK):
        raise MissingBinary(
            f"{binary} is missing; run `scripts/kube-binaries` (it builds kube-controller-manager "
            "from the same release as kube-apiserver)"
        )
    process = ServerProcess(
        "kube-controller-manager",
        controller_manager_argv(cluster, binary),
        workdir / "kube-controller-manager.log",
    )
    process.start()
    try:
        probe_namespace = f"kcm-probe-{uuid.uuid4().hex[:8]}"
        cluster.create_namespace(probe_namespace)
        core = k8s.CoreV1Api(cluster.admin)
        process.wait_ready(
            lambda: _default_account_exists(core, probe_namespace),
            CONTROLLERS_READY_TIMEOUT_SECONDS,
        )
        yield process
    finally:
        process.stop()


def wait_namespace_gone(cluster: KubeCluster, namespace: str, timeout: float) -> float:
    """Seconds until the namespace is gone; TimeoutError (naming what is left) otherwise."""
    core = k8s.CoreV1Api(cluster.admin)
    last: list[object] = [None]

    def gone() -> bool:
        try:
            last[0] = core.read_namespace(namespace).status
        except k8s.ApiException as e:
            if e.status == 404:
                return True
            raise
        return False

    started = time.monotonic()
    try:
        wait_until(gone, timeout=timeout, interval=0.1, what=f"namespace {namespace} to go")
    except TimeoutError as e:
        raise TimeoutError(f"{e}; its status: {last[0]}") from None
    return time.monotonic() - started
