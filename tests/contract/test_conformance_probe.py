"""The conformance machinery in-process against the Graph emulator: raw requests through the
production SDK client, the prefix guard, and cleanup that runs when a check breaks."""

from __future__ import annotations

import logging

import pytest
from graph_emulator_support import GraphEmulatorApps
from msgraph_client_support import connection, graph_calls, open_client

from b2ckeys.conformance import report
from b2ckeys.conformance.catalogue import BY_ID, select
from b2ckeys.conformance.context import Context, Material, Observation
from b2ckeys.conformance.probe import Guard, LiveProbe, PrefixViolation
from b2ckeys.conformance.runner import run_all
from b2ckeys_emulators.graph.server import Fault, GraphEmulator

PREFIX = "B2C_1A_B2CKEYSCONFORMANCE_"


async def test_send_raw_reaches_paths_the_sdk_will_not_build_and_is_never_retried(
    graph_emulator: GraphEmulator, graph_emulator_apps: GraphEmulatorApps
) -> None:
    async with open_client(connection(graph_emulator, graph_emulator_apps.writer)) as client:
        created = await client.send_raw("POST", "/trustFramework/keySets", {"id": "raw"})
        generated = await client.send_raw(
            "POST", "/trustFramework/keySets/B2C_1A_raw/generateKey", {"use": "sig", "kty": "RSA"}
        )
        active = await client.send_raw("GET", "/trustFramework/keySets/B2C_1A_raw/getActiveKey")
        graph_emulator.state.add_fault(
            Fault(path="getActiveKey", method="GET", status=429, retry_after="1")
        )
        before = len(graph_calls(graph_emulator, "GET", "getActiveKey"))
        throttled = await client.send_raw("GET", "/trustFramework/keySets/B2C_1A_raw/getActiveKey")
        after = len(graph_calls(graph_emulator, "GET", "getActiveKey"))
    assert (created.status, created.json_object["id"]) == (201, "B2C_1A_raw")
    assert "B2C_1A_raw" in created.headers["location"]
    assert active.status == 200
    assert active.json_object["kid"] == generated.json_object["kid"]
    # A read the SDK would retry comes back as it was, with its headers, after one request.
    assert (throttled.status, throttled.headers["retry-after"]) == (429, "1")
    assert throttled.error_code == "TooManyRequests"
    assert after - before == 1


async def test_the_guard_refuses_before_anything_is_sent(
    graph_emulator: GraphEmulator, graph_emulator_apps: GraphEmulatorApps
) -> None:
    async with open_client(connection(graph_emulator, graph_emulator_apps.writer)) as client:
        probe = LiveProbe(client, Guard(PREFIX))
        with pytest.raises(PrefixViolation, match="B2C_1A_TokenSigningKeyContainer"):
            await probe.send("DELETE", "/trustFramework/keySets/B2C_1A_TokenSigningKeyContainer")
        with pytest.raises(PrefixViolation):
            await probe.send("POST", "/trustFramework/keySets", {"id": "TokenSigningKeyContainer"})
    assert graph_calls(graph_emulator) == []


class CheckBroke(Exception):
    pass


async def test_cleanup_runs_when_a_check_raises(
    graph_emulator: GraphEmulator, graph_emulator_apps: GraphEmulatorApps
) -> None:
    graph_emulator.state.create_key_set({"id": "B2C_1A_NotOurs"})

    async def creates_then_breaks(ctx: Context) -> Observation:
        key_set_id = await ctx.new_set("broken")
        await ctx.generate(key_set_id)
        await ctx.call("DELETE", key_set_id)  # leaves a .bak, which cleanup must remove too
        await ctx.new_set("broken2")
        raise CheckBroke("a bug in a check")

    rule = BY_ID["2.1.1"]
    async with open_client(connection(graph_emulator, graph_emulator_apps.writer)) as client:
        ctx = Context(probe=LiveProbe(client, Guard(PREFIX)), prefix=PREFIX, run="T")
        with pytest.raises(CheckBroke):
            await run_all(ctx, [rule], keep=False, checks={rule.id: creates_then_breaks})
    assert graph_emulator.state.key_set_ids() == ["B2C_1A_NotOurs"]


SECRET_CANARY = "conformance-canary-3e9b1f"


class CanaryMaterial(Material):
    """The run's secrets carry a canary, so the test can look for them in everything it says."""

    def __init__(self) -> None:
        super().__init__()
        self.pfx_password = SECRET_CANARY + "-pfx"
        self.made = 0

    def new_secret(self) -> str:
        self.made += 1
        return f"{SECRET_CANARY}-{self.made}"


async def test_secrets_never_reach_the_report_or_the_logs(
    graph_emulator: GraphEmulator,
    graph_emulator_apps: GraphEmulatorApps,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    rules = select(["2.5", "2.2", "2.6.5"])  # every rule that uploads a secret or a PFX
    async with open_client(connection(graph_emulator, graph_emulator_apps.writer)) as client:
        material = CanaryMaterial()
        probe = LiveProbe(client, Guard(PREFIX))
        ctx = Context(probe=probe, prefix=PREFIX, run="C", material=material)
        rows, cleanup = await run_all(ctx, rules, keep=False)
    assert material.made > 0
    assert {row.result for row in rows} == {"PASS"}
    said = report.table(rows, cleanup, seconds=1.0) + report.as_json(
        rows, cleanup, seconds=1.0, about={}
    )
    assert SECRET_CANARY not in said
    assert SECRET_CANARY not in caplog.text
    assert SECRET_CANARY not in repr(rows)
