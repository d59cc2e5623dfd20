"""Faults, concurrency, clock, reset and the `/_emulator/` control routes."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from graph_emulator_support import (
    SECRET_CANARY,
    WRITER_SECRET,
    GraphEmulatorApps,
    graph_emulator_http,
)

from b2ckeys_emulators.graph.server import EmulatorRules, Fault, GraphEmulator

KEY_SETS = "/trustFramework/keySets"
JSON = {"Content-Type": "application/json"}
# Long enough that a second request reliably lands while the first is held, short for the suite.
HOLD_SECONDS = 0.5


async def until(condition: Any, within: float = 5.0) -> None:
    """Poll `condition()` until true (no fixed sleeps)."""
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def create(http: httpx.AsyncClient, name: str) -> str:
    response = await http.post(KEY_SETS, json={"id": name})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def upload(key_set: str, k: str = SECRET_CANARY) -> tuple[str, dict[str, str]]:
    return f"{KEY_SETS}/{key_set}/uploadSecret", {"use": "sig", "k": k}


@pytest.fixture
async def control(graph_emulator: GraphEmulator) -> Any:
    async with httpx.AsyncClient(base_url=graph_emulator.url + "/_emulator", timeout=10) as http:
        yield http


async def test_throttling_fault_over_http(
    graph_emulator: GraphEmulator,
    graph_emulator_writer: httpx.AsyncClient,
    control: httpx.AsyncClient,
) -> None:
    http = graph_emulator_writer
    key_set = await create(http, "throttled")
    fault = {
        "method": "POST",
        "path": "uploadSecret$",
        "times": 2,
        "status": 429,
        "retry_after": 7,
        "code": "AADB2C95043",
        "headers": {"x-ms-throttle-scope": "Tenant"},
    }
    added = await control.post("/faults", json=fault)
    assert added.status_code == 201
    assert (await control.get("/faults")).json()["value"][0]["times"] == 2
    path, body = upload(key_set)
    answers = [await http.post(path, json=body) for _ in range(3)]
    read = await http.get(f"{KEY_SETS}/{key_set}")
    assert [a.status_code for a in answers] == [429, 429, 200]
    assert answers[0].headers["Retry-After"] == "7"
    assert answers[0].headers["x-ms-throttle-scope"] == "Tenant"
    assert answers[0].json()["error"]["code"] == "AADB2C95043"
    assert "request-id" in answers[0].json()["error"]["innerError"]
    assert read.status_code == 200
    assert len(read.json()["keys"]) == 1
    assert (await control.get("/faults")).json()["value"] == []
    log = (await control.get("/requests")).json()["value"]
    assert [r["fault"] for r in log if r["path"].endswith("uploadSecret")] == [
        "status 429",
        "status 429",
        None,
    ]


@pytest.mark.parametrize(
    ("status", "code"),
    [(503, "ServiceUnavailable"), (504, "GatewayTimeout"), (429, "TooManyRequests")],
)
async def test_status_faults_default_to_graph_codes(
    graph_emulator: GraphEmulator, graph_emulator_writer: httpx.AsyncClient, status: int, code: str
) -> None:
    graph_emulator.state.add_fault(Fault(path=r"/keySets$", status=status))
    response = await graph_emulator_writer.get(KEY_SETS)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert (await graph_emulator_writer.get(KEY_SETS)).status_code == 200


async def test_fault_on_the_token_endpoint_is_shaped_as_entra(
    graph_emulator: GraphEmulator,
) -> None:
    graph_emulator.state.add_fault(Fault(path="/token$", status=503, retry_after="1"))
    data = {
        "grant_type": "client_credentials",
        "client_id": "writer-app",
        "client_secret": WRITER_SECRET,
        "scope": "https://graph.microsoft.com/.default",
    }
    async with httpx.AsyncClient(timeout=10) as http:
        refused = await http.post(graph_emulator.token_url, data=data)
        granted = await http.post(graph_emulator.token_url, data=data)
    assert refused.status_code == 503
    assert refused.json()["error"] == "temporarily_unavailable"
    assert refused.headers["Retry-After"] == "1"
    assert granted.status_code == 200


async def test_latency_fault_delays_the_real_answer(
    graph_emulator: GraphEmulator, graph_emulator_writer: httpx.AsyncClient
) -> None:
    graph_emulator.state.add_fault(Fault(method="GET", path=r"/keySets$", latency=0.2))
    started = time.monotonic()
    response = await graph_emulator_writer.get(KEY_SETS)
    assert response.status_code == 200
    assert time.monotonic() - started >= 0.2
    assert graph_emulator.state.requests()[-1].fault == "latency"


async def test_latency_fault_delays_identity_and_refused_answers(
    graph_emulator: GraphEmulator,
) -> None:
    graph_emulator.state.add_fault(Fault(path="openid-configuration$", latency=0.2))
    graph_emulator.state.add_fault(Fault(path="/keySets$", latency=0.2))
    discovery = (
        f"{graph_emulator.url}/{graph_emulator.tenant_id}/v2.0/.well-known/openid-configuration"
    )
    async with httpx.AsyncClient(timeout=10) as http:
        for url, status in ((discovery, 200), (graph_emulator.graph_base_url + KEY_SETS, 401)):
            started = time.monotonic()
            assert (await http.get(url)).status_code == status
            assert time.monotonic() - started >= 0.2
    assert [r.fault for r in graph_emulator.state.requests()] == ["latency", "latency"]


async def test_commit_then_drop_changes_state_but_loses_the_answer(
    graph_emulator: GraphEmulator, graph_emulator_writer: httpx.AsyncClient
) -> None:
    http = graph_emulator_writer
    key_set = await create(http, "lost")
    graph_emulator.state.add_fault(
        Fault(method="POST", path="uploadSecret$", commit_then_drop=True)
    )
    path, body = upload(key_set)
    with pytest.raises(httpx.TransportError):
        await http.post(path, json=body)
    keys = (await http.get(f"{KEY_SETS}/{key_set}")).json()["keys"]
    assert len(keys) == 1
    assert graph_emulator.state.requests()[-2].fault == "commit_then_drop"


async def test_overlapping_writes_to_one_key_set_get_95053(
    graph_emulator: GraphEmulator, graph_emulator_writer: httpx.AsyncClient
) -> None:
    http = graph_emulator_writer
    key_set, other = await create(http, "busy"), await create(http, "calm")
    graph_emulator.state.add_fault(
        Fault(method="POST", path=f"{key_set}/uploadSecret$", latency=HOLD_SECONDS)
    )
    path, body = upload(key_set)
    first = asyncio.create_task(http.post(path, json=body))
    await until(lambda: key_set in graph_emulator.state.writes_in_flight())
    second = await http.post(path, json=body)
    elsewhere = await http.post(upload(other)[0], json=body)
    read = await http.get(f"{KEY_SETS}/{key_set}")
    first_answer = await first
    assert second.status_code == 409
    assert second.json()["error"]["code"] == "AADB2C95053"
    assert elsewhere.status_code == 200
    assert read.status_code == 200
    assert first_answer.status_code == 200
    assert len((await http.get(f"{KEY_SETS}/{key_set}")).json()["keys"]) == 1
    assert graph_emulator.state.writes_in_flight() == {}


async def test_overlapping_writes_allowed_by_rule(
    graph_emulator_factory: Any, graph_emulator_apps: GraphEmulatorApps
) -> None:
    rules = EmulatorRules(detect_concurrent_writes=False)
    async with (
        graph_emulator_factory(rules) as emu,
        graph_emulator_http(emu, graph_emulator_apps.writer) as http,
    ):
        key_set = await create(http, "busy")
        emu.state.add_fault(Fault(path="uploadSecret$", latency=HOLD_SECONDS))
        path, body = upload(key_set)
        first = asyncio.create_task(http.post(path, json=body))
        await until(lambda: key_set in emu.state.writes_in_flight())
        second = await http.post(path, json=body)
        assert (await first).status_code == 200
        assert second.status_code == 200
        assert len((await http.get(f"{KEY_SETS}/{key_set}")).json()["keys"]) == 2


async def test_clock_control_moves_activation(
    graph_emulator_factory: Any, graph_emulator_apps: GraphEmulatorApps
) -> None:
    # Tokens age on the emulator clock too: a year-long lifetime keeps this one valid.
    rules = EmulatorRules(token_lifetime_seconds=365 * 86_400)
    async with (
        graph_emulator_factory(rules) as emu,
        graph_emulator_http(emu, graph_emulator_apps.writer) as http,
        httpx.AsyncClient(base_url=emu.url + "/_emulator", timeout=10) as control,
    ):
        await _clock_moves_activation(http, control)


async def _clock_moves_activation(http: httpx.AsyncClient, control: httpx.AsyncClient) -> None:
    key_set = await create(http, "clock")
    start = int(time.time())
    path, body = upload(key_set)
    current = (await http.post(path, json={**body, "nbf": start - 10})).json()["kid"]
    future = (await http.post(path, json={**body, "nbf": start + 3600})).json()["kid"]
    assert (await http.get(f"{KEY_SETS}/{key_set}/getActiveKey")).json()["kid"] == current
    advanced = (await control.post("/clock", json={"advance": 3601})).json()["now"]
    assert advanced >= start + 3601
    assert (await http.get(f"{KEY_SETS}/{key_set}/getActiveKey")).json()["kid"] == future
    set_back = (await control.post("/clock", json={"set": start})).json()["now"]
    assert start <= set_back < start + 60
    assert (await http.get(f"{KEY_SETS}/{key_set}/getActiveKey")).json()["kid"] == current
    assert (await control.post("/clock", json={"rewind": 1})).status_code == 400
    assert (await control.post("/clock", json={"advance": "soon"})).status_code == 400
    assert (await control.post("/clock", json=["advance"])).status_code == 400
    nan = await control.post("/clock", content=b'{"advance": NaN}', headers=JSON)
    assert nan.status_code == 400
    assert (await control.get("/clock")).json()["now"] < start + 60


async def test_reset_forgets_everything_but_tokens(
    graph_emulator: GraphEmulator,
    graph_emulator_writer: httpx.AsyncClient,
    control: httpx.AsyncClient,
) -> None:
    http = graph_emulator_writer
    await create(http, "forgotten")
    graph_emulator.state.add_fault(Fault(path="never", status=500))
    graph_emulator.state.advance_clock(86_400)
    # A day on, the writer's token has expired; reset puts the clock back, so it works again.
    assert (await control.post("/reset")).status_code == 204
    assert graph_emulator.state.key_set_ids() == []
    assert graph_emulator.state.faults() == []
    assert graph_emulator.state.requests() == []
    assert abs(graph_emulator.state.now() - time.time()) < 5
    assert (await http.get(KEY_SETS)).json()["value"] == []


async def test_keysets_view_has_active_kid_and_no_secrets(
    graph_emulator_writer: httpx.AsyncClient, control: httpx.AsyncClient
) -> None:
    key_set = await create(graph_emulator_writer, "view")
    path, body = upload(key_set)
    kid = (await graph_emulator_writer.post(path, json=body)).json()["kid"]
    view = await control.get("/keysets")
    assert view.json()["value"][0]["id"] == key_set
    assert view.json()["value"][0]["activeKid"] == kid
    assert SECRET_CANARY not in view.text


@pytest.mark.parametrize(
    "fault",
    [
        {"path": "(", "status": 429},
        {"path": "x"},
        {"path": "x", "status": 200},
        {"path": "x", "status": 503, "commit_then_drop": True},
        {"path": "x", "status": 503, "times": 0},
        {"path": "x", "status": 503, "colour": "red"},
        {"path": "x", "status": "503"},
        {"path": "x", "status": 503, "headers": {"x-n": 1}},
        {"path": "x", "latency": "slow"},
        ["not", "an", "object"],
    ],
    ids=[
        "bad regex",
        "no effect",
        "not an error",
        "two effects",
        "zero times",
        "unknown field",
        "status as text",
        "header value not text",
        "latency as text",
        "list",
    ],
)
async def test_invalid_faults_are_refused(control: httpx.AsyncClient, fault: Any) -> None:
    response = await control.post("/faults", json=fault)
    assert response.status_code == 400
    assert (await control.get("/faults")).json()["value"] == []


async def test_faults_can_be_cleared_and_control_routes_are_not_logged(
    graph_emulator: GraphEmulator, control: httpx.AsyncClient
) -> None:
    await control.post("/faults", json={"path": ".", "status": 500, "times": 5})
    assert (await control.delete("/faults")).status_code == 204
    assert (await control.get("/faults")).json()["value"] == []
    assert graph_emulator.state.requests() == []
