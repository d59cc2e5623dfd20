"""MsGraphKeySetClient when Graph misbehaves: throttling, 5xx, lost responses, timeouts, leaks.

Faults are queued in the emulator (`Fault`), and the emulator's request log shows what the SDK
actually sent: a read may be retried inside the SDK, a write never is.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
import traceback
import warnings
from collections.abc import AsyncIterator, Awaitable

import pytest
from graph_emulator_support import (
    PFX_PASSWORD,
    SECRET_CANARY,
    WRITER_SECRET,
    GraphEmulatorApps,
    GraphEmulatorMaterial,
    pfx_b64,
    triple_des,
)
from msgraph_client_support import connection, graph_calls, open_client

from b2ckeys.graph.client import (
    ConcurrentWrite,
    GraphError,
    Throttled,
    TransientError,
)
from b2ckeys.graph.msgraph import MsGraphKeySetClient, warm_up_models
from b2ckeys.secret import SecretStr
from b2ckeys_emulators.graph.server import Fault, GraphEmulator

KEY_SET = "B2C_1A_Faults"
# Far above max_retry_after_in_sdk (5 s) and below kiota's own 180 s limit: only our cap stops
# the SDK from sleeping on it.
LONG_RETRY_AFTER = 120
# A call that is not slept inside the SDK returns in well under this on loopback.
PROMPT_SECONDS = 1.5


@pytest.fixture(scope="session", autouse=True)
def graph_models_warm() -> float:
    return warm_up_models()


@pytest.fixture
async def client(
    graph_emulator: GraphEmulator, graph_emulator_apps: GraphEmulatorApps
) -> AsyncIterator[MsGraphKeySetClient]:
    async with open_client(connection(graph_emulator, graph_emulator_apps.writer)) as opened:
        await opened.create_key_set(KEY_SET)
        yield opened


def keys_stored(emulator: GraphEmulator, key_set_id: str = KEY_SET) -> list[dict[str, object]]:
    (key_set,) = [ks for ks in emulator.state.snapshot() if ks["id"] == key_set_id]
    keys = key_set["keys"]
    assert isinstance(keys, list)
    return keys


# --- throttling ---------------------------------------------------------------------------------


async def test_a_read_throttled_briefly_is_retried_inside_the_sdk(
    client: MsGraphKeySetClient, graph_emulator: GraphEmulator
) -> None:
    graph_emulator.state.add_fault(
        Fault(path=f"{KEY_SET}$", method="GET", status=429, retry_after="1")
    )

    key_set = await client.get_key_set(KEY_SET)

    assert key_set.id == KEY_SET
    gets = graph_calls(graph_emulator, "GET", f"{KEY_SET}$")
    assert [call.status for call in gets] == [429, 200]
    assert gets[1].time - gets[0].time >= 1.0  # the SDK honoured Retry-After


@pytest.mark.parametrize("status", [429, 503])
async def test_a_read_throttled_for_long_raises_throttled_at_once(
    client: MsGraphKeySetClient, graph_emulator: GraphEmulator, status: int
) -> None:
    graph_emulator.state.add_fault(
        Fault(path=f"{KEY_SET}$", method="GET", status=status, retry_after=str(LONG_RETRY_AFTER))
    )

    started = time.monotonic()
    with pytest.raises(Throttled) as raised:
        await client.get_key_set(KEY_SET)

    assert time.monotonic() - started < PROMPT_SECONDS
    assert raised.value.retry_after == LONG_RETRY_AFTER
    assert raised.value.status == status
    assert len(graph_calls(graph_emulator, "GET", f"{KEY_SET}$")) == 1


async def test_read_retries_are_bounded_by_the_connection(
    graph_emulator: GraphEmulator, graph_emulator_apps: GraphEmulatorApps
) -> None:
    conn = connection(graph_emulator, graph_emulator_apps.writer, read_retries=1)
    async with open_client(conn) as client:
        graph_emulator.state.add_fault(
            Fault(path="keySets$", method="GET", status=429, retry_after="1", times=3)
        )
        with pytest.raises(Throttled):
            await client.list_key_sets()
    assert [c.status for c in graph_calls(graph_emulator, "GET", "keySets$")] == [429, 429]


async def test_an_http_date_retry_after_is_read(
    client: MsGraphKeySetClient, graph_emulator: GraphEmulator
) -> None:
    when = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 600))
    graph_emulator.state.add_fault(
        Fault(path="getActiveKey", method="GET", status=429, retry_after=when)
    )

    with pytest.raises(Throttled) as raised:
        await client.get_active_key(KEY_SET)

    assert 590 <= raised.value.retry_after <= 600


async def test_a_throttled_write_is_not_retried(
    client: MsGraphKeySetClient, graph_emulator: GraphEmulator
) -> None:
    graph_emulator.state.add_fault(
        Fault(path="generateKey$", method="POST", status=429, retry_after="1")
    )

    with pytest.raises(Throttled) as raised:
        await client.generate_key(KEY_SET, kty="RSA", use="sig", nbf=None, exp=None)

    assert raised.value.retry_after == 1
    assert [c.status for c in graph_calls(graph_emulator, "POST", "generateKey$")] == [429]
    assert keys_stored(graph_emulator) == []


# --- 5xx, lost responses, timeouts ----------------------------------------------------------------


async def test_a_read_503_is_retried_inside_the_sdk(
    client: MsGraphKeySetClient, graph_emulator: GraphEmulator
) -> None:
    graph_emulator.state.add_fault(Fault(path="keys_v2$", method="GET", status=503))

    assert await client.list_keys(KEY_SET) == []

    assert [c.status for c in graph_calls(graph_emulator, "GET", "keys_v2$")] == [503, 200]


async def test_a_write_503_has_an_unknown_outcome_and_is_sent_once(
    client: MsGraphKeySetClient, graph_emulator: GraphEmulator
) -> None:
    graph_emulator.state.add_fault(Fault(path="uploadSecret$", method="POST", status=503))

    with pytest.raises(TransientError) as raised:
        await client.upload_secret(
            KEY_SET, secret=SecretStr(SECRET_CANARY), use="sig", nbf=None, exp=None
        )

    assert raised.value.outcome_unknown
    assert raised.value.status == 503
    assert [c.status for c in graph_calls(graph_emulator, "POST", "uploadSecret$")] == [503]


async def test_a_lost_response_after_commit_has_an_unknown_outcome_and_one_key(
    client: MsGraphKeySetClient,
    graph_emulator: GraphEmulator,
    graph_emulator_material: GraphEmulatorMaterial,
) -> None:
    graph_emulator.state.add_fault(
        Fault(path="uploadPkcs12$", method="POST", commit_then_drop=True)
    )
    pfx = pfx_b64(
        graph_emulator_material.rsa_key,
        graph_emulator_material.certificate,
        triple_des(PFX_PASSWORD),
    )

    with pytest.raises(TransientError) as raised:
        await client.upload_pkcs12(
            KEY_SET, pfx_b64=SecretStr(pfx), password=SecretStr(PFX_PASSWORD)
        )

    assert raised.value.outcome_unknown
    assert len(graph_calls(graph_emulator, "POST", "uploadPkcs12$")) == 1
    # The caller's re-read finds the key B2C committed, exactly once.
    assert len((await client.get_key_set(KEY_SET)).keys) == 1
    assert len(keys_stored(graph_emulator)) == 1


async def test_a_write_that_times_out_has_an_unknown_outcome(
    graph_emulator: GraphEmulator, graph_emulator_apps: GraphEmulatorApps
) -> None:
    # The emulator holds the write for 1 s and then commits it; the client gives up after 0.3 s.
    conn = connection(graph_emulator, graph_emulator_apps.writer, timeout_seconds=0.3)
    async with open_client(conn) as client:
        await client.create_key_set(KEY_SET)
        graph_emulator.state.add_fault(Fault(path="generateKey$", method="POST", latency=1.0))

        with pytest.raises(TransientError) as raised:
            await client.generate_key(KEY_SET, kty="oct", use="sig", nbf=None, exp=None)

        assert raised.value.outcome_unknown
        assert "ReadTimeout" in str(raised.value)
        deadline = time.monotonic() + 5
        while not keys_stored(graph_emulator):  # the write did land, after the client left
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        assert len(graph_calls(graph_emulator, "POST", "generateKey$")) == 1


async def test_a_read_that_times_out_is_transient_with_a_known_outcome(
    graph_emulator: GraphEmulator, graph_emulator_apps: GraphEmulatorApps
) -> None:
    conn = connection(graph_emulator, graph_emulator_apps.writer, timeout_seconds=0.3)
    async with open_client(conn) as client:
        graph_emulator.state.add_fault(Fault(path="keySets$", method="GET", latency=1.0))
        with pytest.raises(TransientError) as raised:
            await client.list_key_sets()
    assert not raised.value.outcome_unknown


async def test_a_concurrent_write_is_concurrent_write(
    client: MsGraphKeySetClient, graph_emulator: GraphEmulator
) -> None:
    graph_emulator.state.add_fault(
        Fault(path="generateKey$", method="POST", status=409, code="AADB2C95053")
    )
    with pytest.raises(ConcurrentWrite):
        await client.generate_key(KEY_SET, kty="RSA", use="sig", nbf=None, exp=None)


# --- resources and secrets ------------------------------------------------------------------------


async def test_closing_releases_every_connection(
    graph_emulator: GraphEmulator, graph_emulator_apps: GraphEmulatorApps
) -> None:
    client = MsGraphKeySetClient.from_connection(
        connection(graph_emulator, graph_emulator_apps.writer)
    )
    # Pooled Graph connections (httpx) and the token endpoint's session (aiohttp) are now open.
    await client.create_key_set(KEY_SET)
    await client.list_key_sets()

    await client.aclose()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del client
        gc.collect()

    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []


async def test_secrets_never_reach_logs_or_exception_text(
    graph_emulator: GraphEmulator,
    graph_emulator_apps: GraphEmulatorApps,
    graph_emulator_material: GraphEmulatorMaterial,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every secret the client handles, in success and failure, with the whole stack at DEBUG."""
    caplog.set_level(logging.DEBUG)
    canary = SecretStr(SECRET_CANARY)
    pfx = pfx_b64(
        graph_emulator_material.rsa_key,
        graph_emulator_material.certificate,
        triple_des(SECRET_CANARY),
    )
    failures: list[GraphError] = []

    async def expect_failure(call: Awaitable[object]) -> None:
        with pytest.raises(GraphError) as raised:
            await call
        failures.append(raised.value)

    wrong_secret = connection(graph_emulator, graph_emulator_apps.writer, client_secret=canary)
    async with open_client(wrong_secret) as client:
        await expect_failure(client.list_key_sets())

    async with open_client(connection(graph_emulator, graph_emulator_apps.writer)) as client:
        await client.create_key_set(KEY_SET)
        await client.upload_secret(KEY_SET, secret=canary, use="sig", nbf=None, exp=None)
        graph_emulator.state.add_fault(Fault(path="uploadSecret$", status=503))
        await expect_failure(
            client.upload_secret(KEY_SET, secret=canary, use="sig", nbf=None, exp=None)
        )
        graph_emulator.state.add_fault(Fault(path="uploadSecret$", commit_then_drop=True))
        await expect_failure(
            client.upload_secret(KEY_SET, secret=canary, use="sig", nbf=None, exp=None)
        )
        # Wrong type for this set (oct keys): B2C refuses, echoing nothing secret.
        await expect_failure(client.upload_pkcs12(KEY_SET, pfx_b64=SecretStr(pfx), password=canary))

    async with open_client(connection(graph_emulator, graph_emulator_apps.reader)) as client:
        await expect_failure(
            client.upload_secret(KEY_SET, secret=canary, use="sig", nbf=None, exp=None)
        )

    assert len(failures) == 5
    assert caplog.records, "DEBUG logging of the stack captured nothing"
    for record in caplog.records:
        text = record.getMessage() + (record.exc_text or "")
        if record.exc_info and record.exc_info[1] is not None:
            text += "".join(traceback.format_exception(record.exc_info[1]))
        assert SECRET_CANARY not in text, f"{record.name} logged a secret"
        assert WRITER_SECRET not in text, f"{record.name} logged the client secret"
        assert pfx[:40] not in text, f"{record.name} logged the PFX"
    for failure in failures:
        rendered = "".join(traceback.format_exception(failure)) + repr(failure)
        assert SECRET_CANARY not in rendered
        assert pfx[:40] not in rendered
