"""Checks of key sets themselves: ids, create, list, get, delete and `.bak` (spec §1, §2.1, §2.7).

Each check returns what the tenant did, in the terms of its catalogue entry's `expected`.
"""

from __future__ import annotations

from b2ckeys.conformance.context import Check, Context, Observation, Unexpected
from b2ckeys.conformance.probe import KEY_SETS, key_set_path

BACKUP_SUFFIX = ".bak"


async def _listed_ids(ctx: Context) -> set[str]:
    response = await ctx.probe.send("GET", KEY_SETS)
    if response.status != 200:
        raise Unexpected(f"listing key sets answered {response.status} {response.error_code}")
    ids: set[str] = set()
    page = response
    while True:
        ids.update(str(item.get("id")) for item in page.json_object.get("value") or ())
        next_link = page.json_object.get("@odata.nextLink")
        if not isinstance(next_link, str) or KEY_SETS not in next_link:
            return ids
        page = await ctx.probe.send("GET", next_link[next_link.index(KEY_SETS) :])


async def create_adds_prefix(ctx: Context) -> Observation:
    proposed = ctx.proposed("create")
    response = await ctx.create({"id": proposed})
    final = str(response.json_object.get("id", ""))
    added = final[: -len(proposed)] if final.endswith(proposed) else final
    location = response.headers.get("location", "")
    return {
        "status": response.status,
        "id_prefix": added,
        "location_names_id": bool(final) and final in location,
    }


async def no_second_prefix(ctx: Context) -> Observation:
    proposed = ctx.stem + "prefixed"  # already starts with B2C_1A_
    response = await ctx.create({"id": proposed})
    if response.status != 201:
        raise Unexpected(f"create answered {response.status} {response.error_code}")
    return {"prefix_twice": response.json_object.get("id") != proposed}


async def duplicate_create(ctx: Context) -> Observation:
    key_set_id = await ctx.new_set("duplicate")
    response = await ctx.create({"id": ctx.proposed("duplicate")})
    if response.status == 201:
        return {"duplicate_create_status": 201, "code": None, "note": f"{key_set_id} twice"}
    return {"duplicate_create_status": response.status, "code": response.error_code}


async def odata_type_refused(ctx: Context) -> Observation:
    body = {"id": ctx.proposed("odatatype"), "@odata.type": "microsoft.graph.trustFrameworkKeySet"}
    response = await ctx.create(body)
    return {"reject_odata_type_on_create": response.status == 400}


async def unknown_fields_ignored(ctx: Context) -> Observation:
    response = await ctx.create({"id": ctx.proposed("unknown"), "usage": "sig", "keys": []})
    return {"ignore_unknown_create_fields": response.status == 201}


async def list_and_get(ctx: Context) -> Observation:
    key_set_id = await ctx.new_set("listget")
    listed = key_set_id in await _listed_ids(ctx)
    got = await ctx.call("GET", key_set_id)
    return {
        "listed": listed,
        "get_status": got.status,
        "keys": len(got.json_object.get("keys") or ()),
    }


async def missing_key_set(ctx: Context) -> Observation:
    response = await ctx.call("GET", ctx.stem + "never_created")
    return {"not_found_status": response.status, "code": response.error_code}


async def content_type_required(ctx: Context) -> Observation:
    key_set_id = await ctx.new_set("contenttype")
    path = key_set_path(key_set_id, "/generateKey")
    response = await ctx.probe.send(
        "POST", path, {"use": "sig", "kty": "RSA"}, content_type="text/plain"
    )
    return {"require_json_content_type": 400 <= response.status < 500}


async def delete_leaves_backup(ctx: Context) -> Observation:
    key_set_id = await ctx.new_set("delete")
    await ctx.generate(key_set_id)
    response = await ctx.call("DELETE", key_set_id)
    ids = await _listed_ids(ctx)
    ctx.probe.guard.named_by_graph.add(key_set_id + BACKUP_SUFFIX)
    return {
        "status": response.status,
        "gone": key_set_id not in ids,
        "backup_on_delete": key_set_id + BACKUP_SUFFIX in ids,
    }


async def recreate_while_backup(ctx: Context) -> Observation:
    key_set_id = await ctx.new_set("recreate")
    deleted = await ctx.call("DELETE", key_set_id)
    if deleted.status != 204:
        raise Unexpected(f"DELETE answered {deleted.status} {deleted.error_code}")
    again = await ctx.create({"id": ctx.proposed("recreate")})
    return {"recreate_while_backup_exists": again.status == 201}


async def backup_deleted_for_good(ctx: Context) -> Observation:
    key_set_id = await ctx.new_set("bak")
    await ctx.call("DELETE", key_set_id)
    backup = key_set_id + BACKUP_SUFFIX
    if backup not in await _listed_ids(ctx) and not ctx.probe.planning:
        raise Unexpected(f"no {backup} appeared after DELETE (see rule 2.7-delete)")
    response = await ctx.call("DELETE", backup)
    ids = await _listed_ids(ctx)
    return {
        "status": response.status,
        "gone": backup not in ids,
        "new_backup": backup + BACKUP_SUFFIX in ids,
    }


CHECKS: dict[str, Check] = {
    "2.1.1": create_adds_prefix,
    "2.1.2": no_second_prefix,
    "2.1.3": duplicate_create,
    "2.1.5": odata_type_refused,
    "2.1.6": unknown_fields_ignored,
    "1.1-list-get": list_and_get,
    "3.1-not-found": missing_key_set,
    "1-content-type": content_type_required,
    "2.7-delete": delete_leaves_backup,
    "2.7-recreate": recreate_while_backup,
    "2.7-bak": backup_deleted_for_good,
}
