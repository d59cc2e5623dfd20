"""What the emulator returns about keys: kids, derived fields, write-only members, activation,
`.bak` backups, and the Graph response envelope (request ids, error shape, Location)."""

from __future__ import annotations

import base64
import hashlib
import re
import time
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from graph_emulator_support import (
    PFX_PASSWORD,
    SECRET_CANARY,
    GraphEmulatorApps,
    GraphEmulatorMaterial,
    der_b64,
    graph_emulator_http,
    pfx_b64,
    triple_des,
)

from b2ckeys_emulators.graph.server import EmulatorRules, GraphEmulator

KEY_SETS = "/trustFramework/keySets"
WRITE_ONLY = ("k", "d", "p", "q", "dp", "dq", "qi")
KID = re.compile(r"^[A-Za-z0-9_-]{43}$")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_int(value: int) -> str:
    return b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))


async def create(http: httpx.AsyncClient, name: str, **body: Any) -> str:
    response = await http.post(KEY_SETS, json={"id": name, **body})
    assert response.status_code == 201, response.text
    key_set_id = response.json()["id"]
    assert isinstance(key_set_id, str)
    return key_set_id


async def post_ok(http: httpx.AsyncClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await http.post(path, json=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert isinstance(answer, dict)
    return answer


def keys_in(document: Any) -> list[dict[str, Any]]:
    """Every trustFrameworkKey-shaped object anywhere in a response."""
    if isinstance(document, dict):
        found = [document] if "kid" in document else []
        for value in document.values():
            found += keys_in(value)
        return found
    if isinstance(document, list):
        return [key for item in document for key in keys_in(item)]
    return []


async def test_every_key_has_a_server_kid_and_no_readable_private_member(
    graph_emulator: GraphEmulator,
    graph_emulator_writer: httpx.AsyncClient,
    graph_emulator_material: GraphEmulatorMaterial,
) -> None:
    http, material = graph_emulator_writer, graph_emulator_material
    numbers = material.rsa_key.private_numbers()
    private_d = b64url_int(numbers.d)
    oct_k = b64url(b"jwk-secret-material")
    texts: list[str] = []

    secret_set = await create(http, "secrets")
    rsa_set = await create(http, "rsa")
    jwk_set = await create(http, "jwk")
    generated_rsa = await create(http, "generatedrsa")
    for body in ({"use": "sig", "k": SECRET_CANARY}, {"use": "sig", "k": SECRET_CANARY + "2"}):
        texts.append((await http.post(f"{KEY_SETS}/{secret_set}/uploadSecret", json=body)).text)
    texts.append(
        (
            await http.post(
                f"{KEY_SETS}/{secret_set}/generateKey", json={"kty": "oct", "use": "sig"}
            )
        ).text
    )
    texts.append(
        (
            await http.post(
                f"{KEY_SETS}/{generated_rsa}/generateKey", json={"kty": "RSA", "use": "sig"}
            )
        ).text
    )
    pfx = pfx_b64(material.rsa_key, material.certificate, triple_des(PFX_PASSWORD))
    texts.append(
        (
            await http.post(
                f"{KEY_SETS}/{rsa_set}/uploadPkcs12", json={"key": pfx, "password": PFX_PASSWORD}
            )
        ).text
    )
    texts.append(
        (
            await http.post(
                f"{KEY_SETS}/{rsa_set}/uploadCertificate",
                json={"key": der_b64(material.other_certificate)},
            )
        ).text
    )
    rsa_jwk = {
        "kty": "RSA",
        "use": "sig",
        "n": b64url_int(numbers.public_numbers.n),
        "e": "AQAB",
        "d": private_d,
        "p": b64url_int(numbers.p),
        "q": b64url_int(numbers.q),
    }
    texts.append((await http.put(f"{KEY_SETS}/{jwk_set}", json={"keys": [rsa_jwk]})).text)
    texts.append(
        (
            await http.post(
                KEY_SETS,
                json={"id": "withkeys", "keys": [{"kty": "oct", "use": "enc", "k": oct_k}]},
            )
        ).text
    )
    for key_set in (secret_set, rsa_set, jwk_set, generated_rsa, "B2C_1A_withkeys"):
        for path in ("", "/getActiveKey()", "/keys_v2"):
            texts.append((await http.get(f"{KEY_SETS}/{key_set}{path}")).text)
    texts.append((await http.get(KEY_SETS)).text)
    async with httpx.AsyncClient(timeout=10) as control:
        texts.append((await control.get(f"{graph_emulator.url}/_emulator/keysets")).text)

    everything = "\n".join(texts)
    for needle in (SECRET_CANARY, private_d, oct_k, pfx[:40], PFX_PASSWORD):
        assert needle not in everything
    listed = (await http.get(KEY_SETS)).json()
    all_keys = keys_in(listed)
    assert len(all_keys) == 8
    assert len({key["kid"] for key in all_keys}) == 8
    for key in all_keys:
        assert KID.match(key["kid"])
        assert all(key[member] is None for member in WRITE_ONLY)
    assert graph_emulator.state.private_material(secret_set, all_keys[0]["kid"]) is not None


async def test_certificate_fields_are_derived_from_the_certificate(
    graph_emulator_writer: httpx.AsyncClient, graph_emulator_material: GraphEmulatorMaterial
) -> None:
    http, certificate = graph_emulator_writer, graph_emulator_material.certificate
    der = certificate.public_bytes(serialization.Encoding.DER)
    numbers = graph_emulator_material.rsa_key.public_key().public_numbers()
    key_set = await create(http, "cert")
    key = await post_ok(
        http, f"{KEY_SETS}/{key_set}/uploadCertificate", {"key": der_b64(certificate)}
    )
    assert key["kty"] == "RSA"
    assert key["use"] == "sig"
    assert key["x5c"] == [base64.b64encode(der).decode()]
    assert key["x5t"] == b64url(hashlib.sha1(der, usedforsecurity=False).digest())
    assert key["nbf"] == int(certificate.not_valid_before_utc.timestamp())
    assert key["exp"] == int(certificate.not_valid_after_utc.timestamp())
    assert key["n"] == b64url_int(numbers.n)
    assert key["e"] == b64url_int(numbers.e)


@pytest.mark.parametrize("full_chain", [False, True])
async def test_pkcs12_x5c_is_the_leaf_unless_the_rule_asks_for_the_chain(
    graph_emulator_factory: Any,
    graph_emulator_apps: GraphEmulatorApps,
    graph_emulator_material: GraphEmulatorMaterial,
    full_chain: bool,
) -> None:
    material = graph_emulator_material
    pfx = pfx_b64(
        material.rsa_key,
        material.leaf_certificate,
        triple_des(PFX_PASSWORD),
        [material.ca_certificate],
    )
    rules = EmulatorRules(pkcs12_x5c_full_chain=full_chain)
    async with (
        graph_emulator_factory(rules) as emu,
        graph_emulator_http(emu, graph_emulator_apps.writer) as http,
    ):
        key_set = await create(http, "chain")
        key = await post_ok(
            http, f"{KEY_SETS}/{key_set}/uploadPkcs12", {"key": pfx, "password": PFX_PASSWORD}
        )
    expected = [der_b64(material.leaf_certificate)]
    if full_chain:
        expected.append(der_b64(material.ca_certificate))
    assert key["x5c"] == expected
    leaf_der = material.leaf_certificate.public_bytes(serialization.Encoding.DER)
    assert key["x5t"] == b64url(hashlib.sha1(leaf_der, usedforsecurity=False).digest())


async def test_generated_keys(graph_emulator_writer: httpx.AsyncClient) -> None:
    http = graph_emulator_writer
    rsa_set, oct_set = await create(http, "grsa"), await create(http, "goct")
    rsa = await post_ok(
        http,
        f"{KEY_SETS}/{rsa_set}/generateKey",
        {"kty": "RSA", "use": "enc", "nbf": 1, "exp": 4_000_000_000},
    )
    oct_ = await post_ok(http, f"{KEY_SETS}/{oct_set}/generateKey", {"kty": "oct", "use": "sig"})
    assert (rsa["kty"], rsa["use"], rsa["nbf"], rsa["exp"], rsa["e"]) == (
        "RSA",
        "enc",
        1,
        4_000_000_000,
        "AQAB",
    )
    assert len(base64.urlsafe_b64decode(rsa["n"] + "==")) * 8 == 2048
    assert rsa["x5c"] == []
    assert (oct_["kty"], oct_["n"], oct_["e"], oct_["nbf"], oct_["exp"]) == (
        "oct",
        None,
        None,
        None,
        None,
    )


async def test_uploaded_secret_is_held_exactly_in_memory(
    graph_emulator: GraphEmulator, graph_emulator_writer: httpx.AsyncClient
) -> None:
    key_set = await create(graph_emulator_writer, "held")
    key = await post_ok(
        graph_emulator_writer,
        f"{KEY_SETS}/{key_set}/uploadSecret",
        {"use": "sig", "k": SECRET_CANARY},
    )
    held = graph_emulator.state.private_material(key_set, key["kid"])
    assert held is not None
    assert held.reveal() == SECRET_CANARY.encode()
    assert SECRET_CANARY not in repr(graph_emulator.state.key_set(key_set))


async def test_members_can_be_omitted_instead_of_null(
    graph_emulator_factory: Any, graph_emulator_apps: GraphEmulatorApps
) -> None:
    rules = EmulatorRules(emit_null_members=False)
    async with (
        graph_emulator_factory(rules) as emu,
        graph_emulator_http(emu, graph_emulator_apps.writer) as http,
    ):
        key_set = await create(http, "lean")
        key = await post_ok(
            http, f"{KEY_SETS}/{key_set}/uploadSecret", {"use": "sig", "k": SECRET_CANARY}
        )
    assert not set(WRITE_ONLY) & set(key)
    assert None not in key.values()


# --- §2.6 which key is active ---------------------------------------------------------------------

# Each key: (nbf offset or None, exp offset or None, enabled); offsets from the start time T.
# Then the clock moves to T + `at` and getActiveKey must name key number `active` (None: 404).
ACTIVE_KEY_ROWS: dict[str, tuple[list[tuple[int | None, int | None, bool]], int, int | None]] = {
    "one key without dates": ([(None, None, True)], 0, 0),
    "latest added of two undated keys": ([(None, None, True), (None, None, True)], 0, 1),
    "a started key beats an undated one": ([(-10, None, True), (None, None, True)], 0, 0),
    "greatest started nbf wins": ([(-100, None, True), (-50, None, True)], 0, 1),
    "greatest nbf, not latest added": ([(-50, None, True), (-100, None, True)], 0, 0),
    "future keys wait": ([(-100, None, True), (100, None, True)], 0, 0),
    "future key takes over at nbf (rollover)": ([(-100, None, True), (100, None, True)], 101, 1),
    "only future keys": ([(100, None, True)], 0, None),
    "equal nbf: latest added": ([(-10, None, True), (-10, None, True)], 0, 1),
    "expired key falls back to undated": ([(-10, 50, True), (None, None, True)], 60, 1),
    "exp just passed": ([(-10, 50, True)], 50, None),
    "all expired": ([(-10, 50, True), (-5, 50, True)], 60, None),
    "disabled key is skipped": ([(-100, None, True), (-50, None, False)], 0, 0),
    "expired successor hands back to older": ([(-100, None, True), (-50, 20, True)], 30, 0),
}


@pytest.mark.parametrize(
    ("keys", "at", "active"), list(ACTIVE_KEY_ROWS.values()), ids=list(ACTIVE_KEY_ROWS)
)
async def test_active_key(
    graph_emulator_factory: Any,
    graph_emulator_apps: GraphEmulatorApps,
    keys: list[tuple[int | None, int | None, bool]],
    at: int,
    active: int | None,
) -> None:
    rules = EmulatorRules(refuse_disabling_last_usable_key=False)
    async with (
        graph_emulator_factory(rules) as emu,
        graph_emulator_http(emu, graph_emulator_apps.writer) as http,
    ):
        start = int(emu.state.now())
        emu.state.set_clock(start)
        key_set = await create(http, "active")
        kids = []
        for nbf, exp, enabled in keys:
            body: dict[str, Any] = {"use": "sig", "k": SECRET_CANARY}
            if nbf is not None:
                body["nbf"] = start + nbf
            if exp is not None:
                body["exp"] = start + exp
            kid = (await post_ok(http, f"{KEY_SETS}/{key_set}/uploadSecret", body))["kid"]
            kids.append(kid)
            if not enabled:
                patch = await http.patch(
                    f"{KEY_SETS}/{key_set}/keys_v2/{kid}", json={"status": "disabled"}
                )
                assert patch.status_code == 204, patch.text
        emu.state.set_clock(start + at)
        response = await http.get(f"{KEY_SETS}/{key_set}/getActiveKey()")
        snapshot = emu.state.snapshot()
    if active is None:
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "AADB2C90019"
        assert snapshot[0]["activeKid"] is None
    else:
        assert response.status_code == 200, response.text
        assert response.json()["kid"] == kids[active]
        assert snapshot[0]["activeKid"] == kids[active]


async def test_key_status_round_trip(graph_emulator_writer: httpx.AsyncClient) -> None:
    http = graph_emulator_writer
    key_set = await create(http, "status")
    first = await post_ok(http, f"{KEY_SETS}/{key_set}/uploadSecret", {"use": "sig", "k": "a"})
    second = await post_ok(http, f"{KEY_SETS}/{key_set}/uploadSecret", {"use": "sig", "k": "b"})
    assert (await http.get(f"{KEY_SETS}/{key_set}/getActiveKey()")).json()["kid"] == second["kid"]
    patch = await http.patch(
        f"{KEY_SETS}/{key_set}/keys_v2/{second['kid']}", json={"status": "disabled"}
    )
    assert patch.status_code == 204
    assert patch.content == b""
    got = (await http.get(f"{KEY_SETS}/{key_set}/keys_v2/{second['kid']}")).json()
    assert got["status"] == "disabled"
    assert (await http.get(f"{KEY_SETS}/{key_set}/getActiveKey()")).json()["kid"] == first["kid"]
    listed = (await http.get(f"{KEY_SETS}/{key_set}/keys_v2")).json()["value"]
    assert [(k["kid"], k["status"]) for k in listed] == [
        (first["kid"], "enabled"),
        (second["kid"], "disabled"),
    ]


# --- §2.7 delete and .bak -----------------------------------------------------------------------


async def test_delete_leaves_a_backup_that_a_second_delete_removes(
    graph_emulator_writer: httpx.AsyncClient,
) -> None:
    http = graph_emulator_writer
    key_set = await create(http, "gone")
    kid = (await post_ok(http, f"{KEY_SETS}/{key_set}/uploadSecret", {"use": "sig", "k": "a"}))[
        "kid"
    ]
    deleted = await http.delete(f"{KEY_SETS}/{key_set}")
    assert deleted.status_code == 204
    assert (await http.get(f"{KEY_SETS}/{key_set}")).status_code == 404
    listed = (await http.get(KEY_SETS)).json()["value"]
    assert [(s["id"], [k["kid"] for k in s["keys"]]) for s in listed] == [(f"{key_set}.bak", [kid])]
    assert (await http.delete(f"{KEY_SETS}/{key_set}.bak")).status_code == 204
    assert (await http.get(KEY_SETS)).json()["value"] == []


async def test_delete_without_backup_by_rule(
    graph_emulator_factory: Any, graph_emulator_apps: GraphEmulatorApps
) -> None:
    rules = EmulatorRules(backup_on_delete=False)
    async with (
        graph_emulator_factory(rules) as emu,
        graph_emulator_http(emu, graph_emulator_apps.writer) as http,
    ):
        key_set = await create(http, "gone")
        assert (await http.delete(f"{KEY_SETS}/{key_set}")).status_code == 204
        assert (await http.get(KEY_SETS)).json()["value"] == []


async def test_a_second_delete_replaces_the_backup(
    graph_emulator_writer: httpx.AsyncClient,
) -> None:
    http = graph_emulator_writer
    await create(http, "again")
    await http.delete(f"{KEY_SETS}/B2C_1A_again")
    await create(http, "again")
    kid = (await post_ok(http, f"{KEY_SETS}/B2C_1A_again/uploadSecret", {"use": "sig", "k": "a"}))[
        "kid"
    ]
    await http.delete(f"{KEY_SETS}/B2C_1A_again")
    backup = (await http.get(f"{KEY_SETS}/B2C_1A_again.bak")).json()
    assert [k["kid"] for k in backup["keys"]] == [kid]


# --- envelope ------------------------------------------------------------------------------------


async def test_create_answers_201_with_location(
    graph_emulator: GraphEmulator, graph_emulator_writer: httpx.AsyncClient
) -> None:
    response = await graph_emulator_writer.post(KEY_SETS, json={"id": "located"})
    assert response.status_code == 201
    assert response.json()["id"] == "B2C_1A_located"
    assert response.json()["keys"] == []
    location = response.headers["Location"]
    assert location == f"{graph_emulator.graph_base_url}/trustFramework/keySets('B2C_1A_located')"
    assert (await graph_emulator_writer.get(location)).json()["id"] == "B2C_1A_located"


async def test_request_ids_on_every_answer(graph_emulator_writer: httpx.AsyncClient) -> None:
    http = graph_emulator_writer
    ok = await http.get(KEY_SETS)
    echoed = await http.get(f"{KEY_SETS}/missing", headers={"client-request-id": "my-correlation"})
    assert re.fullmatch(r"[0-9a-f-]{36}", ok.headers["request-id"])
    assert ok.headers["client-request-id"] == ok.headers["request-id"]
    assert echoed.headers["client-request-id"] == "my-correlation"
    error = echoed.json()["error"]
    assert set(error) == {"code", "message", "innerError"}
    assert error["innerError"]["request-id"] == echoed.headers["request-id"]
    assert error["innerError"]["client-request-id"] == "my-correlation"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", error["innerError"]["date"])


async def test_paths_are_case_insensitive(graph_emulator_writer: httpx.AsyncClient) -> None:
    http = graph_emulator_writer
    key_set = await create(http, "case")
    await post_ok(http, f"/TRUSTFRAMEWORK/keysets/{key_set}/UPLOADSECRET", {"use": "sig", "k": "a"})
    assert (await http.get(f"/trustframework/KEYSETS/{key_set}/GetActiveKey()")).status_code == 200


async def test_millisecond_dates_raise_a_warning(
    graph_emulator: GraphEmulator, graph_emulator_writer: httpx.AsyncClient
) -> None:
    key_set = await create(graph_emulator_writer, "millis")
    millis = int(time.time() * 1000)
    await post_ok(
        graph_emulator_writer,
        f"{KEY_SETS}/{key_set}/uploadSecret",
        {"use": "sig", "k": "a", "nbf": millis},
    )
    assert len(graph_emulator.state.warnings()) == 1
    async with httpx.AsyncClient(timeout=10) as control:
        warnings = (await control.get(f"{graph_emulator.url}/_emulator/warnings")).json()["value"]
    assert "milliseconds" in warnings[0]
