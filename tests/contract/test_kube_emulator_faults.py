"""`/_emulator/faults`: queued API errors for a kube-emulator that runs as a process."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from kube_emulator_support import widget, widget_cluster

WIDGETS_PATH = "/apis/example.dev/v1/namespaces/default/widgets"
FAULTS = "/_emulator/faults"


async def _json(response: aiohttp.ClientResponse) -> Any:
    return await response.json(content_type=None)


async def test_a_fault_answers_the_matching_requests_then_the_emulation_resumes(
    tmp_path: Path,
) -> None:
    async with widget_cluster(tmp_path) as kube, aiohttp.ClientSession(kube.url) as http:
        async with http.post(WIDGETS_PATH, json=widget("w1", size=1)) as created:
            assert created.status == 201
        fault = {"verb": "patch", "resource": "widgets", "subresource": "status", "status": 409}
        async with http.post(FAULTS, json={**fault, "times": 2}) as queued:
            assert queued.status == 201
        patch = {"status": {"phase": "Up"}}
        headers = {"Content-Type": "application/merge-patch+json"}

        # Neither a plain patch nor a read matches a fault on the status subresource.
        async with http.patch(
            f"{WIDGETS_PATH}/w1", json={"spec": {"size": 2}}, headers=headers
        ) as r:
            assert r.status == 200
        async with http.get(f"{WIDGETS_PATH}/w1") as r:
            assert r.status == 200
        for _ in range(2):
            async with http.patch(f"{WIDGETS_PATH}/w1/status", json=patch, headers=headers) as r:
                assert r.status == 409
                body = await _json(r)
                assert (body["kind"], body["reason"], body["code"]) == ("Status", "Conflict", 409)
        async with http.patch(f"{WIDGETS_PATH}/w1/status", json=patch, headers=headers) as r:
            assert r.status == 200
            assert (await _json(r))["status"]["phase"] == "Up"

        async with http.get(FAULTS) as listed:
            assert await _json(listed) == {"value": [], "served": {"409": 2}}
        assert kube.emulator.faults.served["409"] == 2


async def test_faults_are_cleared_and_listed(tmp_path: Path) -> None:
    async with widget_cluster(tmp_path) as kube, aiohttp.ClientSession(kube.url) as http:
        async with http.post(FAULTS, json={"verb": "list", "status": 503, "times": 5}) as r:
            assert r.status == 201
        async with http.get(WIDGETS_PATH) as r:
            assert r.status == 503
            assert (await _json(r))["reason"] == "ServiceUnavailable"
        async with http.get(FAULTS) as r:
            queued = (await _json(r))["value"]
            assert [(f["verb"], f["status"], f["times"]) for f in queued] == [("list", 503, 4)]
        async with http.delete(FAULTS) as r:
            assert r.status == 204
        async with http.get(WIDGETS_PATH) as r:
            assert r.status == 200


async def test_a_latency_fault_holds_the_request_then_serves_it(tmp_path: Path) -> None:
    async with widget_cluster(tmp_path) as kube, aiohttp.ClientSession(kube.url) as http:
        fault = {"verb": "create", "resource": "widgets", "latency": 0.3}
        async with http.post(FAULTS, json=fault) as r:
            assert r.status == 201
        started = time.monotonic()
        async with http.post(WIDGETS_PATH, json=widget("w1", size=1)) as created:
            assert created.status == 201
        assert time.monotonic() - started >= 0.3
        assert kube.emulator.read("example.dev/v1/widgets", "default", "w1") is not None
        async with http.get(FAULTS) as listed:
            assert (await _json(listed))["served"] == {"latency": 1}


@pytest.mark.parametrize(
    ("fault", "problem"),
    [
        ({"status": 404}, "status must be one of"),
        ({}, "either a status or a positive latency"),
        ({"status": 500, "latency": 1.0}, "either a status or a positive latency"),
        ({"latency": "1"}, "latency must be a number"),
        ({"status": "500"}, "status must be an integer"),
        ({"status": 500, "verb": "poke"}, "verb must be one of"),
        ({"status": 500, "times": 0}, "times must be an integer of at least 1"),
        ({"status": 500, "colour": "red"}, "unexpected keyword argument"),
        (["status", 500], "a fault is a JSON object"),
    ],
)
async def test_a_malformed_fault_is_refused(tmp_path: Path, fault: Any, problem: str) -> None:
    async with widget_cluster(tmp_path) as kube, aiohttp.ClientSession(kube.url) as http:
        async with http.post(FAULTS, json=fault) as r:
            assert r.status == 400
            assert problem in (await _json(r))["error"]
        assert kube.emulator.faults.queued() == []
