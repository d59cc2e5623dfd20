"""Fixtures for contract tests. Graph emulator fixtures are all named `graph_emulator_*`.

Key material is generated when the tests run (never stored); RSA keys are made once per session.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import httpx
import pytest
from graph_emulator_support import (
    GraphEmulatorApps,
    GraphEmulatorMaterial,
    build_apps,
    build_material,
    graph_emulator_http,
)

from b2ckeys_emulators.graph.server import EmulatorRules, GraphEmulator, serve_graph_emulator

GraphEmulatorFactory = Callable[..., AbstractAsyncContextManager[GraphEmulator]]


@pytest.fixture(scope="session")
def graph_emulator_material() -> GraphEmulatorMaterial:
    """Keys, certificates and PFX inputs, generated once per session."""
    return build_material()


@pytest.fixture(scope="session")
def graph_emulator_apps(graph_emulator_material: GraphEmulatorMaterial) -> GraphEmulatorApps:
    """The app registrations every test emulator serves (writer, reader, certificate, ...)."""
    return build_apps(graph_emulator_material)


@pytest.fixture
def graph_emulator_factory(
    emulator_ca_dir: Path, graph_emulator_apps: GraphEmulatorApps
) -> GraphEmulatorFactory:
    """`async with graph_emulator_factory(rules=EmulatorRules(...)) as emu:` on a free port."""

    @asynccontextmanager
    async def start(rules: EmulatorRules | None = None) -> AsyncIterator[GraphEmulator]:
        async with serve_graph_emulator(
            tls_dir=emulator_ca_dir, apps=graph_emulator_apps.all(), rules=rules
        ) as emulator:
            yield emulator

    return start


@pytest.fixture
async def graph_emulator(
    graph_emulator_factory: GraphEmulatorFactory,
) -> AsyncIterator[GraphEmulator]:
    """An emulator with the spec's default rules and every app of `graph_emulator_apps`."""
    async with graph_emulator_factory() as emulator:
        yield emulator


@pytest.fixture
async def graph_emulator_writer(
    graph_emulator: GraphEmulator, graph_emulator_apps: GraphEmulatorApps
) -> AsyncIterator[httpx.AsyncClient]:
    """httpx on the default emulator's Graph base URL as the ReadWrite app."""
    async with graph_emulator_http(graph_emulator, graph_emulator_apps.writer) as http:
        yield http
