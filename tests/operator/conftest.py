"""Fixtures for the operator suite: session-wide emulators, a fresh operator per test."""

from __future__ import annotations

import logging
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import (
    CLIENT_ID,
    CLIENT_SECRET,
    READONLY_CLIENT_ID,
    READONLY_SECRET,
    TENANT,
    BackgroundLoop,
    Graph,
    Kube,
    LogCapture,
    OperatorControl,
    Servers,
    clients,
)

from b2ckeys_emulators.graph.server import EmulatedApp, serve_graph_emulator
from b2ckeys_emulators.kube.server import serve_kube_emulator


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
        # Key sets left behind would be older peers naming the same B2C key sets as the next
        # tests' (the operator confirms ownership cluster-wide), so none outlive their test.
        keysets = f"/apis/b2ckeys.dev/v1alpha1/namespaces/{namespace}/trustframeworkkeysets"
        for item in (await kube.http.get(keysets)).json().get("items") or []:
            path = f"{keysets}/{item['metadata']['name']}"
            await kube.http.patch(
                path,
                json={"metadata": {"finalizers": None}},
                headers={"Content-Type": "application/merge-patch+json"},
            )
            await kube.http.delete(path)


@pytest.fixture
def kube(cluster: tuple[Kube, Graph]) -> Kube:
    return cluster[0]


@pytest.fixture
def graph(cluster: tuple[Kube, Graph]) -> Graph:
    return cluster[1]


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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Stopping Kopf in its thread can leave one of its aiohttp connections to be closed by the
    # garbage collector, which then reports it during whichever test runs next (seen once in
    # ~40 runs, never attributable to b2ckeys code: our clients are closed explicitly and the
    # Graph client's own test asserts it leaks nothing). Only that report is tolerated here.
    for item in items:
        if "tests/operator/" in str(item.path):
            for leftover in ("<function _SelectorTransport.__del__", "<socket.socket"):
                item.add_marker(
                    pytest.mark.filterwarnings(
                        f"ignore:Exception ignored in. {leftover}"
                        ":pytest.PytestUnraisableExceptionWarning"
                    )
                )
