"""Key retirement (spec.retirement) and the emergency disable/enable path, with the real
operator against both emulators: only keys the resource uploaded are retired, never the active
key, never before the newer key has been active for the duration; `b2ckeys disable|enable` goes
through the operator and refuses to leave the set without a usable key."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

from harness import (
    CLIENT_ID,
    CLIENT_SECRET,
    TENANT,
    Graph,
    Kube,
    LogCapture,
    OperatorControl,
    keyset,
    ready,
    secret,
    wait_for,
)

from b2ckeys import key_commands
from b2ckeys.formats import from_rfc3339

# Planted in every secret value: never in status, Events or logs.
CANARY = "retire-canary-7c1e"


def uploaded(obj: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    entries = (obj.get("status") or {}).get("uploadedKeys") or []
    return {e["kid"]: e for e in entries}


async def key_statuses(graph: Graph, key_set_id: str) -> dict[str, str]:
    return {k["kid"]: k.get("status", "enabled") for k in await graph.keys(key_set_id)}


async def patches(graph: Graph) -> list[str]:
    return [w for w in await graph.writes() if w.startswith("PATCH")]


async def rotate(kube: Kube, name: str, value: bytes) -> None:
    source = await kube.get({"kind": "Secret", "metadata": {"name": name}})
    assert source is not None
    await kube.patch(source, {"data": secret(name, {"k": value})["data"]})


async def two_keys(kube: Kube, name: str, key_set_id: str, **spec: Any) -> tuple[str, str]:
    """A secret key set synced, then its secret rotated: (first kid, second kid)."""
    await kube.create(secret(name, {"k": f"first-{CANARY}".encode()}))
    await kube.create(keyset(name, key_set_id, {"secret": {"name": name, "key": "k"}}, **spec))
    first = (await kube.wait_reason(name, "Synced"))["status"]["syncedKey"]["kid"]
    await rotate(kube, name, f"second-{CANARY}".encode())
    obj = await kube.wait_keyset(
        name,
        lambda o: (
            ready(o).get("reason") in ("Synced", "PendingActivation")
            and (o.get("status") or {}).get("syncedKey", {}).get("kid") != first
        ),
        "the rotated secret uploaded",
    )
    return first, obj["status"]["syncedKey"]["kid"]


async def reads_after(graph: Graph, count: int) -> None:
    """Wait until the operator has made `count` more Graph reads: passes that had their say."""
    seen = len(await graph.requests())

    async def enough() -> bool:
        return len(await graph.requests()) >= seen + count

    await wait_for(f"{count} more Graph reads", enough)


async def hand_upload(graph: Graph, key_set_id: str, nbf: int) -> str:
    """Upload a secret through Graph as an admin in the portal would; its kid."""
    token = await graph.http.post(
        f"/{TENANT}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "scope": "https://graph.microsoft.com/.default",
        },
    )
    assert token.status_code == 200, token.text
    response = await graph.http.post(
        f"/beta/trustFramework/keySets/{key_set_id}/uploadSecret",
        json={"use": "sig", "k": "HandUploadedSecretValue0123456789abcdefghijk", "nbf": nbf},
        headers={"Authorization": f"Bearer {token.json()['access_token']}"},
    )
    assert response.status_code == 200, response.text
    return str(response.json()["kid"])


async def cli(command: str, operator: OperatorControl, *args: str) -> int:
    """The real `b2ckeys disable|enable` entry point, as a user with the test's kubeconfig."""
    argv = [*args, "-n", operator.namespace, "--kubeconfig", str(operator.servers.kubeconfig)]
    entry = key_commands.disable if command == "disable" else key_commands.enable
    return await asyncio.to_thread(entry, argv)


def assert_no_canary(*texts: object) -> None:
    for text in texts:
        assert CANARY not in str(text)


async def test_a_superseded_key_is_disabled_once_the_newer_one_was_active_long_enough(
    kube: Kube, graph: Graph, operator: OperatorControl, all_logs: LogCapture
) -> None:
    spec = {"retirement": {"disableSupersededAfter": "3s"}}
    first, second = await two_keys(kube, "fb", "Retire", **spec)

    superseded = await kube.wait_keyset(
        "fb", lambda o: "supersededAt" in uploaded(o).get(first, {}), "the first key superseded"
    )
    # Not before the duration: the first key is still enabled when it is seen superseded.
    assert (await key_statuses(graph, "B2C_1A_Retire"))[first] == "enabled"
    assert "retiredAt" not in uploaded(superseded)[first]
    assert await patches(graph) == []

    retired = await kube.wait_keyset(
        "fb", lambda o: "retiredAt" in uploaded(o).get(first, {}), "the first key retired"
    )
    entry = uploaded(retired)[first]
    since, at = from_rfc3339(entry["supersededAt"]), from_rfc3339(entry["retiredAt"])
    assert since is not None
    assert at is not None
    assert at - since >= 3
    assert await key_statuses(graph, "B2C_1A_Retire") == {first: "disabled", second: "enabled"}
    assert await patches(graph) == [
        f"PATCH /beta/trustFramework/keySets/B2C_1A_Retire/keys_v2/{first}"
    ]
    assert retired["status"]["activeKey"]["kid"] == second
    assert retired["status"]["foreignKeys"] == []
    assert ready(retired)["reason"] == "Synced"
    events = await kube.events()
    retire_events = [e for e in events if e.get("reason") == "KeyRetired"]
    assert len(retire_events) == 1
    assert first in retire_events[0]["message"]
    assert_no_canary(retired["status"], events, all_logs.text)
    assert f"retired key {first}" in all_logs.text

    # Once done, retirement costs a resync nothing: no keys_v2 read, no write, no Event.
    seen, version = len(await graph.requests()), retired["metadata"]["resourceVersion"]
    operator.stop()
    await operator.start(resync_interval=0.3)
    await reads_after(graph, 8)
    late = [r for r in (await graph.requests())[seen:] if r["path"].startswith("/beta/")]
    assert [r["path"] for r in late if "keys_v2" in r["path"] or r["method"] != "GET"] == []
    current = await kube.keyset("fb")
    assert current is not None
    assert current["metadata"]["resourceVersion"] == version
    assert len(await kube.events()) == len(events)


async def test_the_active_key_is_kept_while_the_newer_key_waits_for_its_not_before(
    kube: Kube, graph: Graph, operator: OperatorControl
) -> None:
    await kube.create(secret("fb", {"k": f"first-{CANARY}".encode()}))
    source = {"secret": {"name": "fb", "key": "k"}}
    obj = await kube.create(
        keyset("fb", "Staged", source, retirement={"disableSupersededAfter": "1s"})
    )
    first = (await kube.wait_reason("fb", "Synced"))["status"]["syncedKey"]["kid"]
    await kube.patch(obj, {"spec": {"validity": {"notBeforeDelay": "1h"}}})
    await kube.wait_reason("fb", "Synced")
    await rotate(kube, "fb", f"second-{CANARY}".encode())
    staged = await kube.wait_reason("fb", "PendingActivation")
    second = staged["status"]["syncedKey"]["kid"]
    assert second != first

    # Far longer than the duration (the activation poll reads every 0.2 s): the first key is
    # still the active one, so nothing is superseded and nothing disabled.
    await reads_after(graph, 15)
    current = await kube.keyset("fb")
    assert current is not None
    assert current["status"]["activeKey"]["kid"] == first
    assert "supersededAt" not in uploaded(current)[first]
    assert await patches(graph) == []

    # B2C's clock reaches the new key's notBefore: it is active, and a second later the first
    # key is retired.
    await graph.advance_clock(2 * 3600)
    await kube.wait_keyset(
        "fb", lambda o: "retiredAt" in uploaded(o).get(first, {}), "the first key retired"
    )
    assert await key_statuses(graph, "B2C_1A_Staged") == {first: "disabled", second: "enabled"}


async def test_retirement_off_changes_nothing(
    kube: Kube, graph: Graph, operator: OperatorControl
) -> None:
    first, second = await two_keys(kube, "fb", "NoRetire")
    await kube.wait_reason("fb", "Synced")
    operator.stop()
    await operator.start(resync_interval=0.3)
    await reads_after(graph, 10)
    current = await kube.keyset("fb")
    assert current is not None
    assert await key_statuses(graph, "B2C_1A_NoRetire") == {first: "enabled", second: "enabled"}
    assert await patches(graph) == []
    status = current["status"]
    assert "foreignKeys" not in status
    assert all("supersededAt" not in e for e in uploaded(current).values())
    assert set(uploaded(current)) == {first, second}  # the record is kept all the same


async def test_a_hand_uploaded_key_is_reported_never_retired_and_can_be_disabled_on_request(
    kube: Kube, graph: Graph, operator: OperatorControl
) -> None:
    # Only a resync sees a key added behind the operator's back.
    operator.stop()
    await operator.start(resync_interval=0.3)
    await kube.create(secret("fb", {"k": f"ours-{CANARY}".encode()}))
    source = {"secret": {"name": "fb", "key": "k"}}
    await kube.create(keyset("fb", "Foreign", source, retirement={"disableSupersededAfter": "0s"}))
    ours = (await kube.wait_reason("fb", "Synced"))["status"]["syncedKey"]["kid"]
    by_hand = await hand_upload(graph, "B2C_1A_Foreign", int(time.time()) + 1)

    # The hand-uploaded key becomes the active one: reported, and ours is not "superseded" by
    # a key this resource did not upload.
    await kube.wait_keyset(
        "fb", lambda o: (o.get("status") or {}).get("foreignKeys") == [by_hand], "foreign key"
    )
    drifted = await kube.wait_keyset(
        "fb", lambda o: (o.get("status") or {}).get("activeKey", {}).get("kid") == by_hand
    )
    assert "supersededAt" not in uploaded(drifted)[ours]
    await reads_after(graph, 5)
    assert await patches(graph) == []
    assert await key_statuses(graph, "B2C_1A_Foreign") == {ours: "enabled", by_hand: "enabled"}

    # A person disables the hand-uploaded (say, compromised) key through the operator.
    assert await cli("disable", operator, "fb", "--kid", by_hand, "--wait") == 0
    done = await kube.wait_reason("fb", "Synced")
    assert done["status"]["keyStatusRequest"]["result"] == "Done"
    assert done["status"]["activeKey"]["kid"] == ours
    assert await key_statuses(graph, "B2C_1A_Foreign") == {ours: "enabled", by_hand: "disabled"}
    events = await kube.events()
    assert [e for e in events if e.get("reason") == "KeyDisabled" and by_hand in e["message"]]
    assert_no_canary(done["status"], events)


async def test_disable_and_enable_on_request_and_the_only_usable_key_is_refused(
    kube: Kube, graph: Graph, operator: OperatorControl
) -> None:
    await kube.create(secret("fb", {"k": f"only-{CANARY}".encode()}))
    await kube.create(keyset("fb", "Manual", {"secret": {"name": "fb", "key": "k"}}))
    only = (await kube.wait_reason("fb", "Synced"))["status"]["syncedKey"]["kid"]

    assert await cli("disable", operator, "fb", "--kid", only, "--wait") == 1
    refused = await kube.keyset("fb")
    assert refused is not None
    said = refused["status"]["keyStatusRequest"]
    assert said["result"] == "Refused"
    assert "only usable key" in said["message"]
    assert await patches(graph) == []
    assert await key_statuses(graph, "B2C_1A_Manual") == {only: "enabled"}
    refusals = [e for e in await kube.events() if e.get("reason") == "KeyStatusRefused"]
    assert len(refusals) == 1
    assert only in refusals[0]["message"]

    # With a newer key in the set the old one may go, and come back.
    await rotate(kube, "fb", f"newer-{CANARY}".encode())
    await kube.wait_keyset(
        "fb",
        lambda o: (o.get("status") or {}).get("activeKey", {}).get("kid") not in (None, only),
        "the newer key active",
    )
    assert await cli("disable", operator, "fb", "--kid", only, "--wait") == 0
    assert (await key_statuses(graph, "B2C_1A_Manual"))[only] == "disabled"
    assert await cli("enable", operator, "fb", "--kid", only, "--wait") == 0
    assert (await key_statuses(graph, "B2C_1A_Manual"))[only] == "enabled"
    assert len(await patches(graph)) == 2

    # A restarted operator finds the request carried out in status and does not repeat it.
    operator.stop()
    await operator.start(resync_interval=0.3)
    await reads_after(graph, 6)
    assert len(await patches(graph)) == 2


async def test_a_refused_disable_is_reported_and_retried_at_the_next_resync(
    kube: Kube, graph: Graph, operator: OperatorControl
) -> None:
    operator.stop()
    await operator.start(resync_interval=1.0)
    await graph.fault(
        method="PATCH",
        path="keys_v2/",
        status=400,
        code="AADB2C90134",
        message="The key container does not has an active key to revoke.",
    )
    first, _ = await two_keys(kube, "fb", "Refused", retirement={"disableSupersededAfter": "0s"})

    failed = await kube.wait_keyset(
        "fb", lambda o: "error" in uploaded(o).get(first, {}), "the refusal recorded"
    )
    assert "AADB2C90134" in uploaded(failed)[first]["error"]
    assert "retried at the next resync" in ready(failed)["message"]
    assert ready(failed)["status"] == "True"  # the key itself is synced
    warnings = [e for e in await kube.events() if e.get("reason") == "RetireFailed"]
    assert len(warnings) == 1
    assert first in warnings[0]["message"]

    retired = await kube.wait_keyset(
        "fb", lambda o: "retiredAt" in uploaded(o).get(first, {}), "the retry to retire it"
    )
    assert "error" not in uploaded(retired)[first]
    assert (await key_statuses(graph, "B2C_1A_Refused"))[first] == "disabled"
    assert "retried" not in ready(retired)["message"]


async def test_a_failed_request_is_retried_and_a_b2c_refusal_is_final(
    kube: Kube, graph: Graph, operator: OperatorControl
) -> None:
    operator.stop()
    await operator.start(resync_interval=0.5)
    first, second = await two_keys(kube, "fb", "Faulty")
    await kube.wait_keyset(
        "fb", lambda o: (o.get("status") or {}).get("activeKey", {}).get("kid") == second
    )

    # Graph unavailable once: Failed, said at once, then carried out at the next reconcile.
    await graph.fault(method="PATCH", path="keys_v2/", status=503, times=1)
    assert await cli("disable", operator, "fb", "--kid", first, "--wait") == 1
    failed = [e for e in await kube.events() if e.get("reason") == "KeyStatusFailed"]
    assert len(failed) == 1
    assert first in failed[0]["message"]
    done = await kube.wait_keyset(
        "fb",
        lambda o: (o.get("status") or {}).get("keyStatusRequest", {}).get("result") == "Done",
        "the failed request carried out",
    )
    assert (await key_statuses(graph, "B2C_1A_Faulty"))[first] == "disabled"
    assert first in done["status"]["keyStatusRequest"]["message"]

    # B2C refuses (its own last-key guard): Refused with B2C's code, and not tried again.
    await graph.fault(
        method="PATCH",
        path="keys_v2/",
        status=400,
        code="AADB2C90134",
        message="The key container does not has an active key to revoke.",
    )
    assert await cli("enable", operator, "fb", "--kid", first, "--wait") == 1
    refused = await kube.keyset("fb")
    assert refused is not None
    said = refused["status"]["keyStatusRequest"]
    assert said["result"] == "Refused"
    assert "AADB2C90134" in said["message"]
    writes = len(await patches(graph))
    await reads_after(graph, 6)
    assert len(await patches(graph)) == writes
    assert (await key_statuses(graph, "B2C_1A_Faulty"))[first] == "disabled"
