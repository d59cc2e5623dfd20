"""Checks of which key is active (§1.7, §2.6), keys_v2 and status (§2.9), concurrent writes
(§2.10), throttling (§3.3) and a read-only app's permissions (§1, §4)."""

from __future__ import annotations

import asyncio
import math
import time

from b2ckeys.conformance.context import Check, Context, Observation, Skipped, Unexpected
from b2ckeys.conformance.probe import KEY_SETS, key_set_path

# How long an expiring key lives in 2.6.4: long enough for both keys to be added and the first
# getActiveKey to answer, short enough that the run waits only seconds.
_EXPIRY_LEAD_SECONDS = 2.0
# B2C caches keys for a while ("Key caching"), so a real tenant may switch late; give it this.
_EXPIRY_PATIENCE_SECONDS = 60.0
# Between getActiveKey calls while waiting for a switch: a few reads a second at most.
_POLL_SECONDS = 0.5
# Bursts of parallel writes sent to one set before concluding none overlapped.
_CONCURRENT_WRITES = 8
_CONCURRENT_ROUNDS = 5


def _name_of(kid: str | None, names: dict[str, str]) -> str:
    return names.get(kid or "", "no active key" if kid is None else "another key")


async def parentheses(ctx: Context) -> Observation:
    key_set_id = await ctx.new_set("parentheses")
    await ctx.generate(key_set_id)
    with_ = await ctx.call("GET", key_set_id, "/getActiveKey()")
    without = await ctx.call("GET", key_set_id, "/getActiveKey")
    same = with_.json_object.get("kid") == without.json_object.get("kid")
    return {
        "with_parentheses": with_.status,
        "without_parentheses": without.status,
        "same_kid": same and with_.status == 200,
    }


async def nbf_order(ctx: Context) -> Observation:
    key_set_id = await ctx.new_set("nbforder")
    now = ctx.now()
    names = {
        await ctx.generate(key_set_id, nbf=now - 60): "greatest nbf (added first)",
        await ctx.generate(key_set_id, nbf=now - 180): "smallest nbf",
        await ctx.generate(key_set_id, nbf=now - 120): "middle nbf (added last)",
    }
    return {"active": _name_of(await ctx.active_kid(key_set_id), names)}


async def future_nbf(ctx: Context) -> Observation:
    key_set_id = await ctx.new_set("futurenbf")
    now = ctx.now()
    names = {
        await ctx.generate(key_set_id, nbf=now - 60): "started key",
        await ctx.generate(key_set_id, nbf=now + 3600): "future key",
    }
    return {"active": _name_of(await ctx.active_kid(key_set_id), names)}


async def expiry(ctx: Context) -> Observation:
    started = time.monotonic()
    key_set_id = await ctx.new_set("expiry")
    older = await ctx.generate(key_set_id, nbf=ctx.now() - 120)
    # The expiring key must still be valid when getActiveKey is first asked: allow three more
    # round trips of the kind just measured, so a slow tenant does not expire it too early.
    lead = _EXPIRY_LEAD_SECONDS + 1.5 * (time.monotonic() - started)
    expires = math.ceil(time.time() + lead)
    expiring = await ctx.generate(key_set_id, nbf=ctx.now() - 60, exp=expires)
    names = {older: "older key", expiring: "expiring key"}
    before = await ctx.active_kid(key_set_id)
    # Ask again until B2C has switched keys: its clock must pass exp, and it caches keys.
    deadline = time.monotonic() + lead + _EXPIRY_PATIENCE_SECONDS
    after = before
    while not ctx.probe.planning and after == expiring and time.monotonic() < deadline:
        await ctx.probe.sleep(_POLL_SECONDS)
        after = await ctx.active_kid(key_set_id)
    if ctx.probe.planning:
        after = await ctx.active_kid(key_set_id)
    return {"before": _name_of(before, names), "after": _name_of(after, names)}


async def undated_fallback(ctx: Context) -> Observation:
    key_set_id = await ctx.new_set("undated")
    names = {
        await ctx.generate(key_set_id): "undated key",
        await ctx.generate(key_set_id, nbf=ctx.now() + 3600): "future key",
    }
    return {"active": _name_of(await ctx.active_kid(key_set_id), names)}


async def same_nbf(ctx: Context) -> Observation:
    key_set_id = await ctx.new_set("tie")
    nbf = ctx.now() - 60
    names = {
        await ctx.generate(key_set_id, nbf=nbf): "first added",
        await ctx.generate(key_set_id, nbf=nbf): "latest added",
    }
    return {"active": _name_of(await ctx.active_kid(key_set_id), names)}


async def no_usable_key(ctx: Context) -> Observation:
    key_set_id = await ctx.new_set("nokey")
    response = await ctx.call("GET", key_set_id, "/getActiveKey()")
    return {"no_active_key_status": response.status, "no_active_key_code": response.error_code}


async def keys_v2_list(ctx: Context) -> Observation:
    key_set_id = await ctx.new_set("keysv2")
    kids = {await ctx.generate(key_set_id), await ctx.generate(key_set_id)}
    response = await ctx.call("GET", key_set_id, "/keys_v2")
    listed = {str(k.get("kid")) for k in response.json_object.get("value") or ()}
    return {"status": response.status, "kids_match": listed == kids}


async def keys_v2_get(ctx: Context) -> Observation:
    key_set_id = await ctx.new_set("keyv2")
    kid = await ctx.generate(key_set_id)
    response = await ctx.call("GET", key_set_id, f"/keys_v2/{kid}")
    body = response.json_object
    wrapped = isinstance(body.get("value"), dict)
    key = body["value"] if wrapped else body
    return {
        "status": response.status,
        "kid_matches": key.get("kid") == kid,
        "wrap_key_v2_in_value": wrapped,
    }


async def disable_and_enable(ctx: Context) -> Observation:
    key_set_id = await ctx.new_set("disable")
    now = ctx.now()
    other = await ctx.generate(key_set_id, nbf=now - 120)
    target = await ctx.generate(key_set_id, nbf=now - 60)
    names = {other: "other key", target: "re-enabled key"}
    if not ctx.probe.planning and await ctx.active_kid(key_set_id) != target:
        raise Unexpected("the key with the greatest nbf was not active (see 2.6.3-nbf-order)")
    disabled = await ctx.call("PATCH", key_set_id, f"/keys_v2/{target}", {"status": "disabled"})
    status_after = (await ctx.call("GET", key_set_id, f"/keys_v2/{target}")).json_object
    active_after_disable = await ctx.active_kid(key_set_id)
    enabled = await ctx.call("PATCH", key_set_id, f"/keys_v2/{target}", {"status": "enabled"})
    active_after_enable = await ctx.active_kid(key_set_id)
    inner = status_after.get("value") if isinstance(status_after.get("value"), dict) else None
    return {
        "disable": disabled.status,
        "status_after": (inner or status_after).get("status"),
        "active_after_disable": _name_of(active_after_disable, names),
        "enable": enabled.status,
        "active_after_enable": _name_of(active_after_enable, names),
    }


async def last_usable_key(ctx: Context) -> Observation:
    key_set_id = await ctx.new_set("lastkey")
    kid = await ctx.generate(key_set_id)
    response = await ctx.call("PATCH", key_set_id, f"/keys_v2/{kid}", {"status": "disabled"})
    refused = response.status >= 400
    return {
        "refuse_disabling_last_usable_key": refused,
        "code": response.error_code if refused else None,
    }


async def concurrent_writes(ctx: Context) -> Observation:
    key_set_id = await ctx.new_set("concurrent")
    await ctx.generate(key_set_id)
    # Open the connections first, so the burst's requests leave together.
    await asyncio.gather(*(ctx.call("GET", key_set_id) for _ in range(_CONCURRENT_WRITES)))
    for _ in range(_CONCURRENT_ROUNDS):
        # generateKey: B2C makes the key while the write is in flight, the slowest write there is.
        body = {"use": "sig", "kty": "RSA"}
        burst = [
            ctx.call("POST", key_set_id, "/generateKey", body) for _ in range(_CONCURRENT_WRITES)
        ]
        answers = await asyncio.gather(*burst)
        clashes = [a for a in answers if a.error_code == "AADB2C95053"]
        if clashes:
            return {"detect_concurrent_writes": True, "concurrent_write_status": clashes[0].status}
        odd = [a for a in answers if a.status != 200]
        if odd:
            raise Unexpected(f"a parallel write answered {odd[0].status} {odd[0].error_code}")
        if ctx.probe.planning:
            break
    raise Skipped(
        f"{_CONCURRENT_ROUNDS} bursts of {_CONCURRENT_WRITES} parallel uploads to one set all "
        "succeeded: none overlapped on the service (or it serialises them itself)"
    )


async def throttling(ctx: Context) -> Observation:
    if not ctx.probe.throttled:
        raise Skipped("the run was never throttled (429), so no throttling headers were seen")
    seen = ctx.probe.throttled[0]
    return {"status": seen.status, "retry_after": "retry-after" in seen.headers}


async def read_only_app(ctx: Context) -> Observation:
    reader = ctx.reader
    if reader is None or ctx.reader_roles is None:
        raise Skipped("no read-only app given (--read-only-client-id/--read-only-client-secret)")
    key_set_id = await ctx.new_set("readonly")
    await ctx.generate(key_set_id)
    listed = await reader.send("GET", KEY_SETS)
    created = await reader.send("POST", KEY_SETS, {"id": ctx.proposed("readonlycreate")})
    if created.status == 201:
        ctx.created.append(str(created.json_object.get("id")))
    keys_v2 = await reader.send("GET", key_set_path(key_set_id, "/keys_v2"))
    roles = await ctx.reader_roles()
    return {
        "roles": sorted(roles) if roles is not None else None,
        "list": listed.status,
        "create": created.status,
        "create_code": created.error_code,
        "keys_v2_read_needs_readwrite": keys_v2.status == 403,
    }


async def token_error(ctx: Context) -> Observation:
    if ctx.reader_wrong_secret is None:
        raise Skipped("no read-only app given, whose client id a wrong secret is tried with")
    return {"code": await ctx.reader_wrong_secret()}


CHECKS: dict[str, Check] = {
    "1.7-parentheses": parentheses,
    "2.6.3-nbf-order": nbf_order,
    "2.6.3-future-nbf": future_nbf,
    "2.6.4-expiry": expiry,
    "2.6.6-undated": undated_fallback,
    "2.6.6-tie": same_nbf,
    "2.6.6-none": no_usable_key,
    "1.11-keys_v2-list": keys_v2_list,
    "1.12-keys_v2-get": keys_v2_get,
    "2.9-disable": disable_and_enable,
    "2.9-last-key": last_usable_key,
    "2.10-concurrent": concurrent_writes,
    "3.3-throttling": throttling,
    "1-read-only": read_only_app,
    "4-token-error": token_error,
}
