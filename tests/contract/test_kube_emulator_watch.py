"""Watch streams of the kube-emulator behave as kube-apiserver's do.

Raw HTTP streams show exactly what a client receives; the kubernetes client's `Watch` checks that
a real client consumes them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from kube_emulator_support import (
    WIDGETS,
    api_client,
    call,
    summary,
    wait_for,
    watch_events,
    widget,
    widget_cluster,
)
from kubernetes import client as k8s
from kubernetes import watch

from b2ckeys_emulators.kube.server import KubeEmulator, RunningKubeEmulator, serve_kube_emulator

SECRETS = "/api/v1/namespaces/default/secrets"


@pytest.fixture
async def kube(tmp_path: Path) -> AsyncIterator[RunningKubeEmulator]:
    async with widget_cluster(tmp_path) as kube:
        yield kube


def labelled(name: str, **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": "default", "labels": labels},
    }


def version_of(obj: dict[str, Any]) -> str:
    version: str = obj["metadata"]["resourceVersion"]
    return version


async def patch(
    kube: RunningKubeEmulator, path: str, body: Any, content_type: str
) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession(kube.url) as http,
        http.patch(path, json=body, headers={"Content-Type": content_type}) as response,
    ):
        assert response.status == 200, await response.text()
        result: dict[str, Any] = await response.json()
        return result


async def test_a_watch_from_a_resource_version_replays_nothing_older(
    kube: RunningKubeEmulator,
) -> None:
    first = kube.emulator.create_object(labelled("first"))
    kube.emulator.create_object(labelled("second"))
    # A replay would come first: reading one event is enough to see it.
    events = await watch_events(kube, SECRETS, {"resourceVersion": version_of(first)}, count=1)
    assert summary(events) == [("ADDED", "second")]


async def test_a_watch_without_a_version_starts_with_what_exists(kube: RunningKubeEmulator) -> None:
    kube.emulator.create_object(labelled("before"))
    stream = asyncio.create_task(watch_events(kube, SECRETS, {}, count=2))
    await wait_for("the watch to open", lambda: kube.emulator.open_watches == 1)
    kube.emulator.create_object(labelled("after"))
    assert summary(await stream) == [("ADDED", "before"), ("ADDED", "after")]


async def test_a_watch_from_a_forgotten_version_gets_410_expired(kube: RunningKubeEmulator) -> None:
    old = kube.emulator.create_object(labelled("old"))
    kube.emulator.create_object(labelled("newer"))
    kube.emulator.forget_history()
    events = await watch_events(kube, SECRETS, {"resourceVersion": version_of(old)})
    assert [e["type"] for e in events] == ["ERROR"]
    assert (events[0]["object"]["code"], events[0]["object"]["reason"]) == (410, "Expired")
    current = str(kube.emulator.resource_version)
    assert (
        await watch_events(kube, SECRETS, {"resourceVersion": current, "timeoutSeconds": "0.1"})
        == []
    )


async def test_the_history_kept_for_watches_is_bounded(tmp_path: Path) -> None:
    emulator = KubeEmulator(history_limit=3)
    async with serve_kube_emulator(crd_paths=[], emulator=emulator) as kube:
        start = kube.emulator.resource_version
        for name in "abcd":
            kube.emulator.create_object(labelled(name))
        expired = await watch_events(kube, SECRETS, {"resourceVersion": str(start)})
        assert expired[0]["object"]["code"] == 410
        kept = {"resourceVersion": str(start + 1)}
        assert summary(await watch_events(kube, SECRETS, kept, count=3)) == [
            ("ADDED", "b"),
            ("ADDED", "c"),
            ("ADDED", "d"),
        ]


async def test_label_selected_watches_see_objects_enter_and_leave(
    kube: RunningKubeEmulator,
) -> None:
    start = str(kube.emulator.resource_version)
    kube.emulator.create_object(labelled("in", team="a"))
    kube.emulator.create_object(labelled("out", team="b"))
    await patch(
        kube,
        f"{SECRETS}/out",
        {"metadata": {"labels": {"team": "a"}}},
        "application/merge-patch+json",
    )
    await patch(
        kube,
        f"{SECRETS}/in",
        {"metadata": {"annotations": {"x": "y"}}},
        "application/merge-patch+json",
    )
    leaving = await patch(
        kube,
        f"{SECRETS}/in",
        {"metadata": {"labels": {"team": "c"}}},
        "application/merge-patch+json",
    )
    # Unselected changes would interleave and break this sequence.
    events = await watch_events(
        kube, SECRETS, {"resourceVersion": start, "labelSelector": "team=a"}, count=4
    )
    assert summary(events) == [
        ("ADDED", "in"),
        ("ADDED", "out"),
        ("MODIFIED", "in"),
        ("DELETED", "in"),
    ]
    gone = events[-1]["object"]
    assert gone["metadata"]["labels"] == {"team": "a"}  # the last state that matched...
    assert version_of(gone) == version_of(leaving)  # ...at the version of the change


async def test_field_selected_watches(kube: RunningKubeEmulator) -> None:
    start = str(kube.emulator.resource_version)
    for name in ("other", "wanted"):
        kube.emulator.create_object(labelled(name))
    selected = {"resourceVersion": start, "fieldSelector": "metadata.name=wanted"}
    events = await watch_events(kube, "/api/v1/secrets", selected, count=1)
    assert summary(events) == [("ADDED", "wanted")]


async def test_timeout_seconds_ends_the_stream_and_bookmarks_carry_the_version(
    kube: RunningKubeEmulator,
) -> None:
    kube.emulator.create_object(labelled("x"))
    kube.emulator.bookmark_interval = 0.05  # a real server: about a minute
    started = time.monotonic()
    events = await watch_events(
        kube,
        SECRETS,
        {
            "resourceVersion": str(kube.emulator.resource_version),
            "timeoutSeconds": "0.3",
            "allowWatchBookmarks": "true",
        },
    )
    elapsed = time.monotonic() - started
    assert 0.3 <= elapsed < 2.0
    assert len(events) >= 3  # periodic bookmarks, then one before the timeout
    assert {e["type"] for e in events} == {"BOOKMARK"}
    assert {version_of(e["object"]) for e in events} == {str(kube.emulator.resource_version)}
    assert events[0]["object"]["kind"] == "Secret"
    no_bookmarks = await watch_events(
        kube, SECRETS, {"resourceVersion": "1", "timeoutSeconds": "0.1"}
    )
    assert "BOOKMARK" not in {e["type"] for e in no_bookmarks}


async def test_send_initial_events_ends_with_the_initial_events_end_bookmark(
    kube: RunningKubeEmulator,
) -> None:
    kube.emulator.create_object(labelled("existing"))
    params = {
        "sendInitialEvents": "true",
        "resourceVersionMatch": "NotOlderThan",
        "allowWatchBookmarks": "true",
    }
    events = await watch_events(kube, SECRETS, params, count=2)
    assert summary(events)[0] == ("ADDED", "existing")
    assert events[1]["type"] == "BOOKMARK"
    assert events[1]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
    async with (
        aiohttp.ClientSession(kube.url) as http,
        http.get(SECRETS, params={"watch": "true", "sendInitialEvents": "true"}) as response,
    ):
        assert response.status == 422


async def test_finalizer_removal_is_one_deleted_event(kube: RunningKubeEmulator) -> None:
    body = widget("w")
    body["metadata"]["finalizers"] = ["example.dev/hold"]
    kube.emulator.create_object(body)
    start = str(kube.emulator.resource_version)
    path = "/apis/example.dev/v1/namespaces/default/widgets/w"
    async with aiohttp.ClientSession(kube.url) as http, http.delete(path) as response:
        assert response.status == 200
    await patch(
        kube,
        path,
        [{"op": "remove", "path": "/metadata/finalizers"}],
        "application/json-patch+json",
    )
    # A MODIFIED for the finalizer removal would come second, before the DELETED.
    events = await watch_events(
        kube, "/apis/example.dev/v1/widgets", {"resourceVersion": start}, count=2
    )
    assert summary(events) == [("MODIFIED", "w"), ("DELETED", "w")]
    assert events[0]["object"]["metadata"]["deletionTimestamp"]
    assert kube.emulator.read(WIDGETS, "default", "w") is None


async def test_the_kubernetes_client_watch_consumes_the_stream(kube: RunningKubeEmulator) -> None:
    start = str(kube.emulator.resource_version)
    for name, labels in (("one", {"app": "x"}), ("two", {}), ("last", {"app": "x"})):
        kube.emulator.create_object(labelled(name, **labels))

    def consume() -> list[tuple[str, str]]:
        seen: list[tuple[str, str]] = []
        with api_client(kube) as client:
            watcher = watch.Watch()
            for event in watcher.stream(
                k8s.CoreV1Api(client).list_namespaced_secret,
                "default",
                resource_version=start,
                label_selector="app=x",
                timeout_seconds=5,  # only a safety net: the loop stops at "last"
            ):
                seen.append((event["type"], event["object"].metadata.name))
                if event["object"].metadata.name == "last":
                    watcher.stop()
        return seen

    assert await call(consume) == [("ADDED", "one"), ("ADDED", "last")]


async def test_open_watches_end_when_the_emulator_stops(tmp_path: Path) -> None:
    async with widget_cluster(tmp_path) as kube:
        stream = asyncio.create_task(watch_events(kube, SECRETS, {"resourceVersion": "1"}))
        await wait_for("the watch to open", lambda: kube.emulator.open_watches == 1)
        stopping = time.monotonic()
    assert await asyncio.wait_for(stream, 2.0) == []
    assert time.monotonic() - stopping < 1.0
    assert kube.emulator.open_watches == 0


async def test_a_client_that_goes_away_closes_its_watch(kube: RunningKubeEmulator) -> None:
    stream = asyncio.create_task(watch_events(kube, SECRETS, {"resourceVersion": "1"}))
    await wait_for("the watch to open", lambda: kube.emulator.open_watches == 1)
    stream.cancel()
    await wait_for("the watch to close", lambda: kube.emulator.open_watches == 0)
