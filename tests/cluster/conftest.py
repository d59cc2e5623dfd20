"""Fixtures of the cluster tier: one real etcd + kube-apiserver per test session.

The binaries are built by `scripts/kube-binaries` (or found through $B2CKEYS_KUBE_BIN_DIR).
When they are missing the tier fails with a message saying how to build them: a skipped tier
would read as a passing one.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from apiserver import ROOT, KubeCluster, StartupTimes, find_bin_dir, running_cluster
from stand_in_crds import CERT_MANAGER_CRDS, KOPF_PEERING_CRDS

CRD_DIR = ROOT / "crds"
_STARTUP_TIMES = pytest.StashKey[StartupTimes]()


@pytest.fixture(scope="session")
def kube_cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KubeCluster]:
    try:
        bin_dir = find_bin_dir()
    except FileNotFoundError as e:
        pytest.fail(str(e), pytrace=False)
    with running_cluster(bin_dir, tmp_path_factory.mktemp("kube-cluster")) as cluster:
        request.config.stash[_STARTUP_TIMES] = cluster.times
        yield cluster


@pytest.fixture(scope="session")
def installed_crds(kube_cluster: KubeCluster) -> list[str]:
    """Every CRD in crds/, installed for real and served. Their names."""
    files = crd_files()
    assert files, f"no CRDs in {CRD_DIR}"
    names: list[str] = []
    for path in files:
        names += kube_cluster.install_crds(path.read_text(encoding="utf-8"))
    return names


@pytest.fixture(scope="session")
def stand_in_crds(kube_cluster: KubeCluster) -> list[str]:
    """Permissive stand-ins for cert-manager's and Kopf's peering CRDs (see stand_in_crds.py)."""
    return kube_cluster.install_crds([*CERT_MANAGER_CRDS, *KOPF_PEERING_CRDS])


@pytest.fixture
def namespace(kube_cluster: KubeCluster) -> str:
    """A fresh namespace per test (never deleted: no namespace controller runs here)."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    kube_cluster.create_namespace(name)
    return name


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    times = terminalreporter.config.stash.get(_STARTUP_TIMES, None)
    if times is None:
        return
    line = (
        f"kube-apiserver tier: etcd ready in {times.etcd_seconds:.2f}s, kube-apiserver "
        f"/readyz in {times.apiserver_seconds:.2f}s (start-up {times.total_seconds:.2f}s)"
    )
    if times.restarts:
        line += ", restarts " + ", ".join(f"{s:.2f}s" for s in times.restarts)
    terminalreporter.write_line(line)


def crd_files() -> list[Path]:
    return sorted(CRD_DIR.glob("*.yaml"))
