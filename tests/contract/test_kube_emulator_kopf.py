"""A real Kopf operator runs against the kube-emulator as against a cluster.

Each test builds its own registry, logs in through the emulator's kubeconfig, runs clusterwide
and standalone in its own thread, and drives the cluster through the kubernetes client.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kopf
import pytest
from kopf_in_thread import fast_settings, kopf_in_thread, login_from_kubeconfig
from kube_emulator_support import (
    WIDGET_API,
    WIDGETS,
    api_client,
    call,
    wait_for,
    widget,
    widget_cluster,
    widget_crd,
)
from kubernetes import client as k8s

from b2ckeys_emulators.kube.server import RunningKubeEmulator

GROUP, VERSION, PLURAL = WIDGET_API
MANAGED = "b2ckeys.dev/managed"


@dataclass
class Seen:
    """What the handlers saw; written in Kopf's thread, read in the test's."""

    events: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    calls: Counter[str] = field(default_factory=Counter)

    def names(self, kind: str | None = None) -> set[str]:
        return {name for seen_kind, name, _ in self.events if kind in (None, seen_kind)}


@pytest.fixture
async def kube(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[RunningKubeEmulator]:
    async with widget_cluster(tmp_path) as kube:
        monkeypatch.setenv("KUBECONFIG", str(kube.kubeconfig))
        yield kube


@pytest.fixture
def api(kube: RunningKubeEmulator) -> Iterator[k8s.ApiClient]:
    with api_client(kube) as client:
        yield client


async def watching(kube: RunningKubeEmulator, *resources: str) -> None:
    """Kopf is ready before its watches exist; objects created earlier would come via LIST."""

    def open_watches() -> bool:
        watched = {r.resource for r in kube.emulator.requests if r.verb == "watch"}
        return set(resources) <= watched

    await wait_for(f"Kopf to watch {resources}", open_watches)


def widget_registry(seen: Seen) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()
    login_from_kubeconfig(registry)

    @kopf.on.event(GROUP, VERSION, PLURAL, registry=registry, id="event")
    def on_event(type: str, name: str, labels: dict[str, str], **_: Any) -> None:
        seen.events.append((type or "LISTED", name, dict(labels)))

    @kopf.on.create(GROUP, VERSION, PLURAL, registry=registry, id="create")
    def on_create(name: str, patch: kopf.Patch, **_: Any) -> None:
        seen.calls[f"create {name}"] += 1
        patch.status["phase"] = "Ready"

    @kopf.on.delete(GROUP, VERSION, PLURAL, registry=registry, id="delete")
    def on_delete(name: str, **_: Any) -> None:
        seen.calls[f"delete {name}"] += 1

    return registry


async def test_create_runs_the_handler_once_and_the_status_goes_through_the_subresource(
    kube: RunningKubeEmulator, api: k8s.ApiClient
) -> None:
    seen = Seen()
    custom = k8s.CustomObjectsApi(api)
    where = (GROUP, VERSION, "default", PLURAL, "w1")
    async with kopf_in_thread(widget_registry(seen), fast_settings()):
        await watching(kube, WIDGETS)
        await call(custom.create_namespaced_custom_object, *where[:4], widget("w1", size=1))
        await wait_for(
            "the status",
            lambda: (kube.emulator.read(WIDGETS, "default", "w1") or {}).get("status"),
        )
        # A change Kopf must see after its own writes: once it has, nothing is left in flight.
        await call(
            custom.patch_namespaced_custom_object, *where, {"metadata": {"labels": {"fence": "1"}}}
        )
        await wait_for("the fence", lambda: any(labels.get("fence") for *_, labels in seen.events))
        assert seen.calls == {"create w1": 1}
    assert kube.emulator.read(WIDGETS, "default", "w1")["status"] == {"phase": "Ready"}
    writes = [r for r in kube.emulator.requests if r.verb == "patch" and r.name == "w1"]
    status_writes = [r for r in writes if r.subresource == "status"]
    assert [r.content_type for r in status_writes] == ["application/merge-patch+json"]
    assert status_writes[0].body == {"status": {"phase": "Ready"}}
    assert not any("status" in (r.body or {}) for r in writes if r.subresource is None)


async def test_a_delete_handler_with_its_finalizer_works_end_to_end(
    kube: RunningKubeEmulator, api: k8s.ApiClient
) -> None:
    seen = Seen()
    custom = k8s.CustomObjectsApi(api)
    where = (GROUP, VERSION, "default", PLURAL, "w2")
    async with kopf_in_thread(widget_registry(seen), fast_settings()):
        await watching(kube, WIDGETS)
        await call(custom.create_namespaced_custom_object, *where[:4], widget("w2"))
        await wait_for(
            "Kopf's finalizer",
            lambda: (
                (kube.emulator.read(WIDGETS, "default", "w2") or {})
                .get("metadata", {})
                .get("finalizers")
            ),
        )
        await call(custom.delete_namespaced_custom_object, *where)
        await wait_for("the deletion", lambda: kube.emulator.read(WIDGETS, "default", "w2") is None)
        assert seen.calls == {"create w2": 1, "delete w2": 1}
    json_patches = [
        r for r in kube.emulator.requests if r.content_type == "application/json-patch+json"
    ]
    assert json_patches, "Kopf adds and removes its finalizer with JSON patches"
    assert all(r.body[0]["op"] == "test" for r in json_patches)
    assert kube.emulator.objects[WIDGETS, "default", "w2"].history[-1] is None


async def test_server_side_label_selectors_deliver_only_labelled_secrets(
    kube: RunningKubeEmulator, api: k8s.ApiClient
) -> None:
    seen = Seen()
    registry = kopf.OperatorRegistry()
    login_from_kubeconfig(registry)

    @kopf.on.event("v1", "secrets", registry=registry, id="secrets")
    def on_secret(type: str, name: str, labels: dict[str, str], **_: Any) -> None:
        seen.events.append((type or "LISTED", name, dict(labels)))

    settings = fast_settings()
    settings.watching.label_selectors["v1", "secrets"] = f"{MANAGED}=true"
    core = k8s.CoreV1Api(api)

    async def secret(name: str, managed: bool) -> None:
        labels = {MANAGED: "true"} if managed else {}
        await call(
            core.create_namespaced_secret, "default", {"metadata": {"name": name, "labels": labels}}
        )

    await secret("managed-before", True)
    await secret("plain-before", False)
    async with kopf_in_thread(registry, settings):
        await watching(kube, "v1/secrets")
        await secret("plain-after", False)
        await secret("managed-after", True)
        await wait_for("the managed secret", lambda: "managed-after" in seen.names())
        assert seen.names() == {"managed-before", "managed-after"}
        # Labelling a Secret brings it into the stream; unlabelling takes it out again.
        await call(
            core.patch_namespaced_secret,
            "plain-after",
            "default",
            {"metadata": {"labels": {MANAGED: "true"}}},
        )
        await wait_for("the newly labelled secret", lambda: "plain-after" in seen.names("ADDED"))
        await call(
            core.patch_namespaced_secret,
            "plain-after",
            "default",
            {"metadata": {"labels": {MANAGED: None}}},
        )
        await wait_for("it to leave", lambda: "plain-after" in seen.names("DELETED"))
    assert "plain-before" not in seen.names()
    secret_reads = [
        r
        for r in kube.emulator.requests
        if r.resource == "v1/secrets" and r.verb in {"list", "watch"}
    ]
    assert {r.verb for r in secret_reads} == {"list", "watch"}
    assert all(r.params.get("labelSelector") == f"{MANAGED}=true" for r in secret_reads)


async def test_kopf_serves_a_crd_applied_while_it_runs(
    kube: RunningKubeEmulator, api: k8s.ApiClient
) -> None:
    seen = Seen()
    registry = kopf.OperatorRegistry()
    login_from_kubeconfig(registry)

    @kopf.on.create("example.dev", "v1", "gizmos", registry=registry, id="gizmo")
    def on_gizmo(name: str, **_: Any) -> None:
        seen.calls[f"create {name}"] += 1

    async with kopf_in_thread(registry, fast_settings()):
        await watching(kube, "apiextensions.k8s.io/v1/customresourcedefinitions")
        await call(
            k8s.ApiextensionsV1Api(api).create_custom_resource_definition,
            widget_crd("gizmos", "Gizmo"),
        )
        await watching(kube, "example.dev/v1/gizmos")
        gizmo = {**widget("g1"), "kind": "Gizmo"}
        await call(
            k8s.CustomObjectsApi(api).create_namespaced_custom_object,
            "example.dev",
            "v1",
            "default",
            "gizmos",
            gizmo,
        )
        await wait_for("the gizmo handler", lambda: seen.calls["create g1"])
    assert seen.calls == {"create g1": 1}


async def test_the_operator_starts_and_stops_quickly(kube: RunningKubeEmulator) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with kopf_in_thread(widget_registry(Seen()), fast_settings()):
        await watching(kube, WIDGETS)
        stopping = loop.time()
    assert stopping - started < 3.0
    assert loop.time() - stopping < 1.0  # no 5 s wait for "hung" tasks
