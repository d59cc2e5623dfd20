"""Helpers for the kube-emulator contract tests: a test CRD, clients, waiting, raw watches."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import aiohttp
import kubernetes
import yaml

from b2ckeys_emulators.kube.server import RunningKubeEmulator, serve_kube_emulator

P = ParamSpec("P")
T = TypeVar("T")

# Long enough for a loaded 2-core machine, short enough that a hang fails fast.
WAIT_SECONDS = 5.0

WIDGETS = "example.dev/v1/widgets"
WIDGET_API = ("example.dev", "v1", "widgets")


def widget_crd(plural: str = "widgets", kind: str = "Widget") -> dict[str, Any]:
    """A namespaced CRD with a status subresource, a default, and a closed status schema."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.example.dev"},
        "spec": {
            "group": "example.dev",
            "scope": "Namespaced",
            "names": {
                "plural": plural,
                "singular": kind.lower(),
                "kind": kind,
                "shortNames": [plural[:3]],
            },
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "selectableFields": [{"jsonPath": ".spec.color"}],
                    "additionalPrinterColumns": [
                        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                        {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
                        {
                            "name": "Color",
                            "type": "string",
                            "jsonPath": ".spec.color",
                            "priority": 1,
                        },
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                    ],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "properties": {
                                        "size": {"type": "integer"},
                                        "color": {"type": "string", "default": "blue"},
                                        "extra": {
                                            "type": "object",
                                            "x-kubernetes-preserve-unknown-fields": True,
                                        },
                                    },
                                },
                                "status": {
                                    "type": "object",
                                    "properties": {
                                        "phase": {"type": "string"},
                                        "observedGeneration": {"type": "integer"},
                                    },
                                },
                            },
                        }
                    },
                }
            ],
        },
    }


def write_crd(folder: Path, crd: dict[str, Any]) -> Path:
    path = folder / f"{crd['metadata']['name']}.yaml"
    path.write_text(yaml.safe_dump(crd), encoding="utf-8")
    return path


@asynccontextmanager
async def widget_cluster(tmp_path: Path) -> AsyncIterator[RunningKubeEmulator]:
    """An emulator serving the test CRD; fails the test if the emulator itself failed."""
    crd = write_crd(tmp_path, widget_crd())
    async with serve_kube_emulator(kubeconfig=tmp_path / "kubeconfig", crd_paths=[crd]) as kube:
        yield kube
        assert kube.emulator.internal_errors == []


@contextmanager
def api_client(kube: RunningKubeEmulator) -> Iterator[kubernetes.client.ApiClient]:
    # From the file, not $KUBECONFIG: the kubernetes package reads that once, at import.
    client = kubernetes.config.new_client_from_config(config_file=str(kube.kubeconfig))
    try:
        yield client
    finally:
        client.close()


async def call(function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run a blocking kubernetes-client call off the event loop the emulator serves from."""
    return await asyncio.to_thread(function, *args, **kwargs)


async def wait_for(
    what: str, probe: Callable[[], T | Awaitable[T | None] | None], within: float = WAIT_SECONDS
) -> T:
    """Poll until `probe` returns something truthy; fail with `what` after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        result = probe()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)  # polling interval: far below any timing a test asserts


async def watch_events(
    kube: RunningKubeEmulator,
    path: str,
    params: dict[str, str],
    *,
    count: int | None = None,
    within: float = WAIT_SECONDS,
) -> list[dict[str, Any]]:
    """Read a raw watch stream until it ends or `count` events arrived."""
    events: list[dict[str, Any]] = []
    async with (
        aiohttp.ClientSession(kube.url) as http,
        http.get(path, params={"watch": "true", **params}) as response,
    ):
        assert response.status == 200, await response.text()
        async with asyncio.timeout(within):
            async for line in response.content:
                events.append(json.loads(line))
                if count is not None and len(events) >= count:
                    break
    return events


def summary(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["type"], e["object"]["metadata"].get("name", "")) for e in events]


def widget(name: str, namespace: str = "default", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "example.dev/v1",
        "kind": "Widget",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def status_of(error: kubernetes.client.ApiException) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(error.body)
    return body
