"""The cluster fixture itself: what later operator scenarios rely on.

A real server that answers as admin, ServiceAccount kubeconfigs that authenticate as that
account, an API server restart that keeps etcd (and lets a watch resume), a clean stop, and a
clear failure when the binaries are missing.
"""

from __future__ import annotations

import contextlib
import json
import threading
from pathlib import Path
from typing import Any

import pytest
import urllib3
from apiserver import BIN_DIR_ENV, KubeCluster, find_bin_dir, port_is_free, running_cluster
from kubernetes import client as k8s

pytestmark = pytest.mark.cluster

# A broken watch stream ends as soon as the old process is gone; the bound only catches a hang.
WATCH_END_TIMEOUT_SECONDS = 30.0


def test_server_reports_a_stamped_release(kube_cluster: KubeCluster) -> None:
    version = k8s.VersionApi(kube_cluster.admin).get_code()

    assert version.git_version.startswith(f"v{version.major}.{version.minor}.")
    assert version.git_tree_state == "clean"


def test_service_account_kubeconfig_authenticates_as_that_account(
    kube_cluster: KubeCluster, namespace: str
) -> None:
    kube_cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "robot", "namespace": namespace},
        }
    )
    kubeconfig = kube_cluster.create_service_account_kubeconfig(namespace, "robot")

    review = k8s.AuthenticationV1Api(
        kube_cluster.api_client(kubeconfig)
    ).create_self_subject_review(k8s.V1SelfSubjectReview())

    assert review.status is not None
    assert review.status.user_info is not None
    assert review.status.user_info.username == f"system:serviceaccount:{namespace}:robot"
    assert "system:serviceaccounts" in (review.status.user_info.groups or [])


def test_service_account_kubeconfig_needs_the_account_to_exist(
    kube_cluster: KubeCluster, namespace: str
) -> None:
    with pytest.raises(k8s.ApiException) as raised:
        kube_cluster.create_service_account_kubeconfig(namespace, "nobody-here")

    assert raised.value.status == 404


def config_map_names(core: k8s.CoreV1Api, namespace: str) -> tuple[set[str], str]:
    listed = core.list_namespaced_config_map(namespace)
    assert listed.metadata is not None
    assert listed.metadata.resource_version is not None
    return {name_of(c) for c in listed.items}, listed.metadata.resource_version


def name_of(obj: Any) -> str:
    name = obj.metadata.name if obj.metadata else None
    assert isinstance(name, str)
    return name


def create_config_map(core: k8s.CoreV1Api, namespace: str, name: str) -> None:
    core.create_namespaced_config_map(
        namespace, k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name=name))
    )


def first_watch_line(core: k8s.CoreV1Api, namespace: str, resource_version: str) -> Any:
    """The first event of a watch, raw: an ERROR event is returned, not retried or raised."""
    response: Any = core.list_namespaced_config_map(
        namespace,
        watch=True,
        resource_version=resource_version,
        timeout_seconds=int(WATCH_END_TIMEOUT_SECONDS),
        _preload_content=False,
    )
    try:
        return json.loads(next(response.stream(decode_content=True)).splitlines()[0])
    finally:
        response.release_conn()


@pytest.mark.parametrize("graceful", [True, False], ids=["SIGTERM", "SIGKILL"])
def test_apiserver_restart_cuts_watches_keeps_data_and_expires_old_versions(
    kube_cluster: KubeCluster, namespace: str, graceful: bool
) -> None:
    core = k8s.CoreV1Api(kube_cluster.admin)
    create_config_map(core, namespace, "before")
    _, last_seen = config_map_names(core, namespace)
    stream: Any = core.list_namespaced_config_map(
        namespace, watch=True, resource_version=last_seen, _preload_content=False
    )
    stream_ended = threading.Event()

    def drain() -> None:
        with contextlib.suppress(urllib3.exceptions.HTTPError, OSError):
            while stream.read(1024):
                pass
        stream_ended.set()

    threading.Thread(target=drain, daemon=True).start()
    # Written while the operator's watch is still open: it must not be lost over the restart.
    create_config_map(core, namespace, "during-1")
    create_config_map(core, namespace, "during-2")

    kube_cluster.restart_apiserver(graceful=graceful)

    # Every watch on the old process is cut, as an operator sees it in production.
    assert stream_ended.wait(WATCH_END_TIMEOUT_SECONDS)
    stream.release_conn()
    # The new process's watch cache starts at the current revision, so resuming from a
    # version seen before the restart is refused with 410 Gone rather than replayed: the
    # client must list again (Kopf does). Nothing is lost: the list has every object.
    expired = first_watch_line(core, namespace, last_seen)
    assert (expired["type"], expired["object"]["code"]) == ("ERROR", 410)
    names, relisted_at = config_map_names(core, namespace)
    assert names == {"before", "during-1", "during-2"}
    create_config_map(core, namespace, "after")
    resumed = first_watch_line(core, namespace, relisted_at)
    assert (resumed["type"], resumed["object"]["metadata"]["name"]) == ("ADDED", "after")


def test_a_second_cluster_runs_beside_the_first_and_stops_cleanly(
    kube_cluster: KubeCluster, tmp_path: Path
) -> None:
    with running_cluster(kube_cluster.bin_dir, tmp_path) as second:
        ports = [second.apiserver_port, second.etcd_client_port, second.etcd_peer_port]
        assert not set(ports) & {
            kube_cluster.apiserver_port,
            kube_cluster.etcd_client_port,
            kube_cluster.etcd_peer_port,
        }
        assert k8s.VersionApi(second.admin).get_code().git_version
        assert second.apiserver_is_running()

    assert not second.apiserver_is_running()
    assert all(port_is_free(port) for port in ports)
    # The first cluster is untouched.
    assert k8s.VersionApi(kube_cluster.admin).get_code().git_version


def test_missing_binaries_fail_with_a_message_saying_how_to_build_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(BIN_DIR_ENV, str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"scripts/kube-binaries"):
        find_bin_dir()

    monkeypatch.delenv(BIN_DIR_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))
    with pytest.raises(FileNotFoundError, match=r"Run `scripts/kube-binaries` once"):
        find_bin_dir()
