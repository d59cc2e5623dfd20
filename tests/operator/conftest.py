"""Fixtures for the operator suite: session-wide emulators, a fresh operator per test."""

from __future__ import annotations

import logging
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from b2ckeys.kube.emulator import serve_kube_emulator
from harness import BackgroundLoop, Graph, Kube, OperatorThread, clients, fast

from b2ckeys.graph.client import GraphConnection
from b2ckeys.graph.emulator import EmulatedApp, serve_graph_emulator
from b2ckeys.secret import SecretStr
from b2ckeys.settings import Settings

TENANT = "b2ckeys-test.onmicrosoft.com"
CLIENT_ID = "0b2c0000-0000-4000-8000-000000000001"
CLIENT_SECRET = "operator-test-secret-" + uuid.uuid4().hex
READONLY_CLIENT_ID = "0b2c0000-0000-4000-8000-000000000002"
READONLY_SECRET = "reader-test-secret-" + uuid.uuid4().hex


@dataclass(frozen=True)
class Servers:
    kube_url: str
    kubeconfig: Path
    graph_url: str
    ca_path: Path

    def settings(self, **overrides: Any) -> Settings:
        secret = overrides.pop("client_secret", CLIENT_SECRET)
        client_id = overrides.pop("client_id", CLIENT_ID)
        graph = GraphConnection(
            tenant_id=TENANT,
            client_id=client_id,
            client_secret=SecretStr(secret),
            authority_host=self.graph_url,
            base_url=self.graph_url + "/beta",
        )
        return fast(Settings(graph=graph, kubeconfig=str(self.kubeconfig)), **overrides)


@pytest.fixture(scope="session")
def servers(emulator_ca_dir: Path) -> Iterator[Servers]:
    background = BackgroundLoop()
    workdir = Path(tempfile.mkdtemp(prefix="b2ckeys-operator-tests-"))
    apps = [
        EmulatedApp(
            client_id=CLIENT_ID, secret=CLIENT_SECRET, roles=("TrustFrameworkKeySet.ReadWrite.All",)
        ),
        EmulatedApp(
            client_id=READONLY_CLIENT_ID,
            secret=READONLY_SECRET,
            roles=("TrustFrameworkKeySet.Read.All",),
        ),
    ]
    graph_cm = serve_graph_emulator(tls_dir=emulator_ca_dir, tenant_id=TENANT, apps=apps)
    kube_cm = serve_kube_emulator(kubeconfig=workdir / "kubeconfig")
    graph = background.enter(graph_cm)
    kube = background.enter(kube_cm)
    try:
        yield Servers(str(kube.url).rstrip("/"), Path(kube.kubeconfig), graph.url, graph.ca_path)
    finally:
        background.exit(kube_cm)
        background.exit(graph_cm)
        background.close()


@pytest.fixture
def namespace() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def cluster(servers: Servers, namespace: str) -> AsyncIterator[tuple[Kube, Graph]]:
    async with clients(servers.kube_url, servers.graph_url, servers.ca_path, namespace) as (
        kube,
        graph,
    ):
        await graph.reset()
        created = await kube.http.post(
            "/api/v1/namespaces",
            json={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        )
        assert created.status_code == 201, created.text
        yield kube, graph


@pytest.fixture
def kube(cluster: tuple[Kube, Graph]) -> Kube:
    return cluster[0]


@pytest.fixture
def graph(cluster: tuple[Kube, Graph]) -> Graph:
    return cluster[1]


class LogCapture(logging.Handler):
    """Every record of the whole process, formatted with its exception, for canary checks."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@pytest.fixture
def all_logs() -> Iterator[LogCapture]:
    capture = LogCapture()
    root = logging.getLogger()
    previous = root.level
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)
    try:
        yield capture
    finally:
        root.removeHandler(capture)
        root.setLevel(previous)


@dataclass
class OperatorControl:
    servers: Servers
    namespace: str
    current: OperatorThread | None = None

    async def start(self, **settings: Any) -> OperatorThread:
        import asyncio

        assert self.current is None, "stop the running operator first"
        operator = OperatorThread(self.servers.settings(**settings), [self.namespace])
        operator.start()
        self.current = operator
        # Kopf's ready flag is set before its watch streams exist; the operator is listening
        # once it has served its startup (the Graph warm-up included).
        await asyncio.to_thread(operator.ready_flag.wait, 60)
        assert not operator.errors, operator.errors
        return operator

    def stop(self) -> None:
        if self.current is not None:
            self.current.stop()
            errors, self.current = self.current.errors, None
            assert not errors, errors


@pytest.fixture
async def operator(
    servers: Servers, namespace: str, cluster: Any
) -> AsyncIterator[OperatorControl]:
    control = OperatorControl(servers, namespace)
    await control.start()
    try:
        yield control
    finally:
        control.stop()
