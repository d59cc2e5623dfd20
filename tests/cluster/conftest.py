"""Fixtures of the cluster tier: one real etcd + kube-apiserver per test session.

The binaries are built by `scripts/kube-binaries` (or found through $B2CKEYS_KUBE_BIN_DIR).
When they are missing the tier fails with a message saying how to build them: a skipped tier
would read as a passing one.
"""

from __future__ import annotations

import uuid
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest
from apiserver import ROOT, KubeCluster, StartupTimes, find_bin_dir, running_cluster
from cert_manager_process import cert_manager_crds
from operator_process import (
    GraphEmulatorThread,
    RunningOperator,
    graph_emulator_thread,
    running_operator,
    unexpected_failures,
    unexplained_refusals,
)
from stand_in_crds import KOPF_PEERING_CRDS

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
def cert_manager_crd_names(kube_cluster: KubeCluster) -> list[str]:
    """cert-manager's own CRDs (built beside its controller by scripts/go-tools), served."""
    return kube_cluster.install_crds(cert_manager_crds())


@pytest.fixture(scope="session")
def stand_in_crds(kube_cluster: KubeCluster, cert_manager_crd_names: list[str]) -> list[str]:
    """The other projects' kinds the manifests use: cert-manager's real CRDs, and permissive
    stand-ins for Kopf's peering CRDs (see stand_in_crds.py)."""
    return [*cert_manager_crd_names, *kube_cluster.install_crds(KOPF_PEERING_CRDS)]


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


# --- the operator under test --------------------------------------------------------------------


@pytest.fixture(scope="session")
def graph_emulator(emulator_ca_dir: Path) -> Iterator[GraphEmulatorThread]:
    """The Graph emulator, shared: each scenario uses key set ids of its own."""
    with graph_emulator_thread(emulator_ca_dir) as graph:
        yield graph


@pytest.fixture(scope="module")
def b2ckeys_operator(
    kube_cluster: KubeCluster,
    installed_crds: list[str],
    graph_emulator: GraphEmulatorThread,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningOperator]:
    """One `b2ckeys run --all-namespaces` per module, as the operator's own ServiceAccount.

    Per module rather than per session: it reconciles every key set in the cluster, and other
    modules (test_rbac) write key set status themselves.
    """
    with running_operator(
        kube_cluster, graph_emulator, tmp_path_factory.mktemp("operator")
    ) as operator:
        yield operator


@pytest.fixture
def operator(b2ckeys_operator: RunningOperator) -> Iterator[RunningOperator]:
    """The shared operator. The test fails if, meanwhile, the API server refused it anything
    it needs, or a reconcile escaped the operator's own error handling."""
    log_offset = b2ckeys_operator.process.log_size()
    audit_seen = len(b2ckeys_operator.cluster.audit_events())
    b2ckeys_operator.check_alive()
    yield b2ckeys_operator
    log = b2ckeys_operator.process.log_since(log_offset)
    refusals = unexplained_refusals(
        b2ckeys_operator.cluster, b2ckeys_operator.cluster.audit_events()[audit_seen:], log
    )
    if refusals:
        pytest.fail(
            "the API server refused the operator (a missing RBAC rule?):\n" + "\n".join(refusals),
            pytrace=False,
        )
    crashed = unexpected_failures(log)
    if crashed:
        pytest.fail("reconciles failed unexpectedly:\n" + "\n".join(crashed), pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report: pytest.TestReport = yield
    running = getattr(item, "funcargs", {}).get("b2ckeys_operator")
    if report.failed and isinstance(running, RunningOperator):
        report.sections.append(
            (f"operator log ({running.process.log_path})", running.process.log_tail())
        )
    return report
