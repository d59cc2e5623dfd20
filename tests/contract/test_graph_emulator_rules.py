"""The emulator against graph-keysets-spec.md, one row per rule (a rule change is one line).

Each row starts an emulator with its rules, runs its setup calls (which must succeed), then one
call, and checks the HTTP status and Graph `error.code` (or one member of a success body).
Requests go over real loopback HTTPS with a plain httpx client and a real bearer token.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from dataclasses import dataclass, field
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
    graph_emulator_token,
    pfx_b64,
    triple_des,
)

from b2ckeys_emulators.graph.server import EmulatorRules

Body = dict[str, Any] | Callable[[GraphEmulatorMaterial], dict[str, Any]] | str | bytes | None
KS = "B2C_1A_rules"


@dataclass(frozen=True)
class Call:
    method: str
    path: str  # under /trustFramework/keySets; {ks} = KS, {kid} = the set's first kid
    body: Body = None
    app: str = "writer"


@dataclass(frozen=True)
class Row:
    call: Call
    status: int
    code: str | None = None  # expected error.code; None for a success
    rules: dict[str, Any] = field(default_factory=dict)
    setup: tuple[Call, ...] = (Call("POST", "", {"id": "rules"}),)
    member: tuple[str, Any] | None = None  # (name, value) expected in a success body


def create(key_set_id: str = "rules", **extra: Any) -> Call:
    return Call("POST", "", {"id": key_set_id, **extra})


def secret(use: str = "sig", k: str = SECRET_CANARY, **extra: Any) -> Call:
    return Call("POST", "/{ks}/uploadSecret", {"use": use, "k": k, **extra})


def generate(kty: str | None = "oct", use: str | None = "sig", **extra: Any) -> Call:
    body = {name: value for name, value in (("kty", kty), ("use", use)) if value is not None}
    return Call("POST", "/{ks}/generateKey", {**body, **extra})


def upload_certificate(key: Callable[[GraphEmulatorMaterial], str]) -> Call:
    return Call("POST", "/{ks}/uploadCertificate", lambda m: {"key": key(m)})


def upload_pkcs12(
    key: Callable[[GraphEmulatorMaterial], str], password: str = PFX_PASSWORD
) -> Call:
    return Call("POST", "/{ks}/uploadPkcs12", lambda m: {"key": key(m), "password": password})


def put(keys: Callable[[GraphEmulatorMaterial], list[dict[str, Any]]], method: str = "PUT") -> Call:
    return Call(method, "/{ks}", lambda m: {"keys": keys(m)})


def rsa_jwk(m: GraphEmulatorMaterial, *, private: bool = True, **extra: Any) -> dict[str, Any]:
    numbers = m.rsa_key.private_numbers()
    members = {"kty": "RSA", "use": "sig", "n": _b64i(numbers.public_numbers.n), "e": "AQAB"}
    if private:
        members.update(d=_b64i(numbers.d), p=_b64i(numbers.p), q=_b64i(numbers.q))
    return {**members, **extra}


def oct_jwk(**extra: Any) -> dict[str, Any]:
    return {"kty": "oct", "use": "sig", "k": "c2VjcmV0LW1hdGVyaWFs", **extra}


def _b64i(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def pem_text(m: GraphEmulatorMaterial) -> str:
    return m.certificate_pem.decode()


def pfx_3des(m: GraphEmulatorMaterial) -> str:
    return pfx_b64(m.rsa_key, m.certificate, triple_des(PFX_PASSWORD))


def pfx_aes(m: GraphEmulatorMaterial) -> str:
    encryption = serialization.BestAvailableEncryption(PFX_PASSWORD.encode())
    return pfx_b64(m.rsa_key, m.certificate, encryption)


def pfx_plain(m: GraphEmulatorMaterial) -> str:
    return pfx_b64(m.rsa_key, m.certificate, serialization.NoEncryption())


def pfx_no_key(m: GraphEmulatorMaterial) -> str:
    return pfx_b64(None, m.certificate, triple_des(PFX_PASSWORD))


def pfx_short(m: GraphEmulatorMaterial) -> str:
    return pfx_b64(m.short_rsa_key, m.short_certificate, triple_des(PFX_PASSWORD))


def pfx_ec(m: GraphEmulatorMaterial) -> str:
    return pfx_b64(m.ec_key, m.ec_certificate, triple_des(PFX_PASSWORD))


def now_plus(seconds: int) -> int:
    return int(time.time()) + seconds


WITH_SECRET = (create(), secret())
WITH_RSA = (create(), upload_certificate(lambda m: der_b64(m.certificate)))
KEYS_V2 = "/{ks}/keys_v2/{kid}"

ROWS: dict[str, Row] = {
    # §2.1 ids and creation
    "create adds the B2C_1A_ prefix": Row(create("a"), 201, setup=(), member=("id", "B2C_1A_a")),
    "create keeps an existing prefix": Row(
        create("B2C_1A_a"), 201, setup=(), member=("id", "B2C_1A_a")
    ),
    "prefix twice when the rule says so": Row(
        create("B2C_1A_a"),
        201,
        setup=(),
        rules={"prefix_twice": True},
        member=("id", "B2C_1A_B2C_1A_a"),
    ),
    "duplicate create is AADB2C95028 (409)": Row(create(), 409, "AADB2C95028"),
    "duplicate create status is a rule": Row(
        create(), 400, "AADB2C95028", rules={"duplicate_create_status": 400}
    ),
    "duplicate create with the prefixed id": Row(create("B2C_1A_rules"), 409, "AADB2C95028"),
    "create refuses @odata.type": Row(
        create("a", **{"@odata.type": "microsoft.graph.trustFrameworkKeySet"}),
        400,
        "AADB2C",
        setup=(),
    ),
    "create @odata.type allowed by rule": Row(
        create("a", **{"@odata.type": "#microsoft.graph.trustFrameworkKeySet"}),
        201,
        setup=(),
        rules={"reject_odata_type_on_create": False},
    ),
    "create ignores unknown fields": Row(create("a", usage="sig", keys=[]), 201, setup=()),
    "create unknown fields refused by rule": Row(
        create("a", usage="sig"),
        400,
        "AADB2C",
        setup=(),
        rules={"ignore_unknown_create_fields": False},
    ),
    "create without id": Row(Call("POST", "", {}), 400, "AADB2C90253", setup=()),
    "create with a full JWK": Row(
        Call("POST", "", lambda m: {"id": "a", "keys": [rsa_jwk(m)]}), 201, setup=()
    ),
    "create with a key carrying kid": Row(
        Call("POST", "", {"id": "a", "keys": [oct_jwk(kid="mine")]}),
        400,
        "AADB2C95059",
        setup=(),
    ),
    "create with mixed key types": Row(
        Call("POST", "", lambda m: {"id": "a", "keys": [oct_jwk(), rsa_jwk(m)]}),
        400,
        "AADB2C95032",
        setup=(),
    ),
    "create while X.bak exists": Row(create(), 201, setup=(create(), Call("DELETE", "/{ks}"))),
    "create while X.bak exists refused by rule": Row(
        create(),
        409,
        "AADB2C95028",
        setup=(create(), Call("DELETE", "/{ks}")),
        rules={"recreate_while_backup_exists": False},
    ),
    # §3.1 not found, routing, payloads
    "get unknown key set is AADB2C90073": Row(Call("GET", "/nope"), 404, "AADB2C90073"),
    "not found status is a rule": Row(
        Call("GET", "/nope"), 400, "AADB2C90073", rules={"not_found_status": 400}
    ),
    "delete unknown key set": Row(Call("DELETE", "/nope"), 404, "AADB2C90073"),
    "action on unknown key set": Row(secret(), 404, "AADB2C90073", setup=()),
    "unknown action segment": Row(Call("POST", "/{ks}/rotate", {}), 400, "BadRequest"),
    "method not allowed": Row(Call("DELETE", ""), 405, "BadRequest"),
    "body that is not JSON": Row(Call("POST", "/{ks}/uploadSecret", "{oops"), 400, "BadRequest"),
    "body without JSON content type": Row(
        Call("POST", "/{ks}/uploadSecret", b'{"use": "sig", "k": "x"}'), 415, "UnsupportedMediaType"
    ),
    "content type not checked by rule": Row(
        Call("POST", "/{ks}/uploadSecret", b'{"use": "sig", "k": "x"}'),
        200,
        rules={"require_json_content_type": False},
    ),
    "OData key syntax": Row(Call("GET", "('B2C_1A_rules')"), 200, member=("id", KS)),
    # §2.8 PUT / PATCH
    "PUT on a missing key set is AADB2C95052": Row(
        put(lambda m: [oct_jwk()]), 404, "AADB2C95052", setup=()
    ),
    "PUT missing status is a rule": Row(
        put(lambda m: [oct_jwk()]),
        400,
        "AADB2C95052",
        setup=(),
        rules={"put_missing_status": 400},
    ),
    "PUT replaces with complete JWKs": Row(put(lambda m: [rsa_jwk(m)]), 200, setup=WITH_SECRET),
    "PUT refuses a kid": Row(put(lambda m: [oct_jwk(kid="x")]), 400, "AADB2C95059"),
    "PATCH acts as PUT": Row(put(lambda m: [oct_jwk()], "PATCH"), 200),
    "PATCH refused by rule": Row(
        put(lambda m: [oct_jwk()], "PATCH"),
        405,
        "BadRequest",
        rules={"accept_patch_as_put": False},
    ),
    "PUT without keys": Row(Call("PUT", "/{ks}", {}), 400, "AADB2C90253"),
    "PUT cannot rename": Row(
        Call("PUT", "/{ks}", {"id": "B2C_1A_other", "keys": []}), 400, "AADB2C"
    ),
    "PUT k not base64url": Row(put(lambda m: [oct_jwk(k="not base64url!")]), 400, "AADB2C95041"),
    "PUT RSA without d": Row(put(lambda m: [rsa_jwk(m, private=False)]), 400, "AADB2C90253"),
    "PUT RSA without d allowed by rule": Row(
        put(lambda m: [rsa_jwk(m, private=False)]),
        200,
        rules={"put_requires_private_members": False},
    ),
    "PUT RSA without n": Row(put(lambda m: [rsa_jwk(m, n="")]), 400, "AADB2C95039"),
    "PUT key without kty": Row(put(lambda m: [{"use": "sig", "k": "YQ"}]), 400, "AADB2C95030"),
    "PUT key with kty EC": Row(put(lambda m: [oct_jwk(kty="EC")]), 400, "AADB2C95031"),
    "PUT key with bad use": Row(put(lambda m: [oct_jwk(use="both")]), 400, "AADB2C95033"),
    "PUT mixed use": Row(put(lambda m: [oct_jwk(), oct_jwk(use="enc")]), 400, "AADB2C95042"),
    # §2.5 generateKey
    "generateKey RSA": Row(generate("RSA"), 200, member=("kty", "RSA")),
    "generateKey oct": Row(generate("oct"), 200, member=("kty", "oct")),
    "generateKey without kty": Row(generate(None), 400, "AADB2C95030"),
    "generateKey kty EC": Row(generate("EC"), 400, "AADB2C95031"),
    "generateKey without use": Row(generate(use=None), 400, "AADB2C90253"),
    "generateKey bad use": Row(generate(use="both"), 400, "AADB2C95033"),
    "generateKey nbf as a string": Row(generate(nbf="1700000000"), 400, "BadRequest"),
    "generateKey exp in the past": Row(generate(exp=now_plus(-60)), 400, "AADB2C90214"),
    "generateKey past exp allowed by rule": Row(
        generate(exp=now_plus(-60)), 200, rules={"reject_past_expiry": False}
    ),
    "generateKey echoes nbf": Row(generate(nbf=1_900_000_000), 200, member=("nbf", 1_900_000_000)),
    # §2.2 type and use mixing
    "RSA into an oct set is AADB2C95032": Row(
        generate("RSA"), 400, "AADB2C95032", setup=WITH_SECRET
    ),
    "enc into a sig set is AADB2C95042": Row(
        generate("oct", "enc"), 400, "AADB2C95042", setup=WITH_SECRET
    ),
    "secret into an RSA set": Row(secret(), 400, "AADB2C95032", setup=WITH_RSA),
    # uploadSecret
    "uploadSecret": Row(secret(), 200, member=("kty", "oct")),
    "uploadSecret without k": Row(
        Call("POST", "/{ks}/uploadSecret", {"use": "sig"}), 400, "AADB2C90253"
    ),
    "uploadSecret short secret allowed by default": Row(secret(k="ab"), 200),
    "uploadSecret short secret refused by rule": Row(
        secret(k="ab"), 400, "AADB2C90138", rules={"min_uploaded_secret_bits": 128}
    ),
    "uploadSecret k is raw by default": Row(secret(k="a+b/c="), 200),
    "uploadSecret k base64url check by rule": Row(
        secret(k="a+b/c="),
        400,
        "AADB2C95029",
        rules={"check_upload_secret_k_is_base64url": True},
    ),
    "uploadSecret nbf lead not enforced by default": Row(secret(nbf=now_plus(0)), 200),
    "uploadSecret nbf lead enforced by rule": Row(
        secret(nbf=now_plus(60)), 400, "AADB2C", rules={"min_secret_nbf_lead_seconds": 10_800}
    ),
    "uploaded keys start enabled": Row(secret(), 200, member=("status", "enabled")),
    "uploaded keys start disabled by rule": Row(
        secret(), 200, rules={"uploaded_keys_start_enabled": False}, member=("status", "disabled")
    ),
    # uploadCertificate
    "uploadCertificate base64 DER": Row(
        upload_certificate(lambda m: der_b64(m.certificate)), 200, member=("kty", "RSA")
    ),
    "uploadCertificate PEM refused": Row(upload_certificate(pem_text), 400, "AADB2C90179"),
    "uploadCertificate PEM accepted by rule": Row(
        upload_certificate(pem_text), 200, rules={"accept_pem_certificate": True}
    ),
    "uploadCertificate base64 of PEM refused": Row(
        upload_certificate(lambda m: base64.b64encode(m.certificate_pem).decode()),
        400,
        "AADB2C90179",
    ),
    "uploadCertificate garbage": Row(
        upload_certificate(lambda m: "bm90IGEgY2VydA=="), 400, "AADB2C90179"
    ),
    "uploadCertificate without key": Row(
        Call("POST", "/{ks}/uploadCertificate", {}), 400, "AADB2C90253"
    ),
    "uploadCertificate RSA 1024": Row(
        upload_certificate(lambda m: der_b64(m.short_certificate)), 400, "AADB2C90137"
    ),
    "minimum RSA size is a rule": Row(
        upload_certificate(lambda m: der_b64(m.short_certificate)),
        200,
        rules={"min_rsa_bits": 1024},
    ),
    "uploadCertificate EC": Row(
        upload_certificate(lambda m: der_b64(m.ec_certificate)), 400, "AADB2C95031"
    ),
    "uploadCertificate joins an enc set": Row(
        upload_certificate(lambda m: der_b64(m.certificate)),
        200,
        setup=(create(), generate("RSA", "enc")),
        member=("use", "enc"),
    ),
    "uploadCertificate is always sig by rule": Row(
        upload_certificate(lambda m: der_b64(m.certificate)),
        400,
        "AADB2C95042",
        setup=(create(), generate("RSA", "enc")),
        rules={"certificate_use_follows_key_set": False},
    ),
    "uploadCertificate twice is accepted": Row(
        upload_certificate(lambda m: der_b64(m.certificate)), 200, setup=WITH_RSA
    ),
    "uploadCertificate twice refused by rule": Row(
        upload_certificate(lambda m: der_b64(m.certificate)),
        409,
        "AADB2C90180",
        setup=WITH_RSA,
        rules={"reject_duplicate_key_upload": True},
    ),
    "expired certificate accepted by default": Row(
        upload_certificate(lambda m: der_b64(m.expired_certificate)), 200
    ),
    "expired certificate refused by rule": Row(
        upload_certificate(lambda m: der_b64(m.expired_certificate)),
        400,
        "AADB2C90214",
        rules={"reject_expired_certificate": True},
    ),
    # uploadPkcs12
    "uploadPkcs12 TripleDES": Row(upload_pkcs12(pfx_3des), 200, member=("kty", "RSA")),
    "uploadPkcs12 wrong password": Row(upload_pkcs12(pfx_3des, "wrong"), 400, "AADB2C90213"),
    "uploadPkcs12 empty password on an encrypted PFX": Row(
        upload_pkcs12(pfx_3des, ""), 400, "AADB2C90213"
    ),
    "uploadPkcs12 AES is a wrong password": Row(upload_pkcs12(pfx_aes), 400, "AADB2C90213"),
    "uploadPkcs12 AES accepted by rule": Row(
        upload_pkcs12(pfx_aes), 200, rules={"refuse_aes_pkcs12": False}
    ),
    "uploadPkcs12 unencrypted, empty password": Row(upload_pkcs12(pfx_plain, ""), 200),
    "uploadPkcs12 without private key": Row(upload_pkcs12(pfx_no_key), 400, "AADB2C90178"),
    "uploadPkcs12 RSA 1024": Row(upload_pkcs12(pfx_short), 400, "AADB2C90137"),
    "uploadPkcs12 EC": Row(upload_pkcs12(pfx_ec), 400, "AADB2C95031"),
    "uploadPkcs12 garbage": Row(upload_pkcs12(lambda m: "Z2FyYmFnZQ=="), 400, "AADB2C90215"),
    "uploadPkcs12 not base64": Row(upload_pkcs12(lambda m: "%%%"), 400, "AADB2C90215"),
    "uploadPkcs12 without key": Row(
        Call("POST", "/{ks}/uploadPkcs12", {"password": "x"}), 400, "AADB2C90253"
    ),
    # §2.6 getActiveKey
    "getActiveKey()": Row(Call("GET", "/{ks}/getActiveKey()"), 200, setup=WITH_SECRET),
    "getActiveKey without parentheses": Row(
        Call("GET", "/{ks}/getActiveKey"), 200, setup=WITH_SECRET
    ),
    "getActiveKey on an empty set": Row(Call("GET", "/{ks}/getActiveKey()"), 404, "AADB2C90019"),
    "no active key status is a rule": Row(
        Call("GET", "/{ks}/getActiveKey()"),
        400,
        "AADB2C90019",
        rules={"no_active_key_status": 400},
    ),
    "getActiveKey only future keys": Row(
        Call("GET", "/{ks}/getActiveKey()"),
        404,
        "AADB2C90019",
        setup=(create(), secret(nbf=now_plus(3600))),
    ),
    # §2.9 keys_v2
    "keys_v2 list": Row(Call("GET", "/{ks}/keys_v2"), 200, setup=WITH_SECRET),
    "keys_v2 get": Row(Call("GET", KEYS_V2), 200, setup=WITH_SECRET, member=("kty", "oct")),
    "keys_v2 get wrapped by rule": Row(
        Call("GET", KEYS_V2),
        200,
        setup=WITH_SECRET,
        rules={"wrap_key_v2_in_value": True},
        member=("value", "<object>"),
    ),
    "keys_v2 unknown kid": Row(Call("GET", "/{ks}/keys_v2/nokid"), 404, "AADB2C90073"),
    "keys_v2 disable the last usable key": Row(
        Call("PATCH", KEYS_V2, {"status": "disabled"}), 400, "AADB2C90134", setup=WITH_SECRET
    ),
    "keys_v2 disable the last key allowed by rule": Row(
        Call("PATCH", KEYS_V2, {"status": "disabled"}),
        204,
        setup=WITH_SECRET,
        rules={"refuse_disabling_last_usable_key": False},
    ),
    "keys_v2 disable with another usable key": Row(
        Call("PATCH", KEYS_V2, {"status": "disabled"}), 204, setup=(*WITH_SECRET, secret())
    ),
    "keys_v2 only status may change": Row(
        Call("PATCH", KEYS_V2, {"status": "enabled", "exp": 1}),
        400,
        "BadRequest",
        setup=WITH_SECRET,
    ),
    "keys_v2 bad status": Row(
        Call("PATCH", KEYS_V2, {"status": "paused"}), 400, "BadRequest", setup=WITH_SECRET
    ),
    "keys_v2 POST not supported": Row(Call("POST", "/{ks}/keys_v2", {}), 405, "BadRequest"),
    # §1 permissions
    "reader may list": Row(Call("GET", "", app="reader"), 200),
    "reader may getActiveKey": Row(
        Call("GET", "/{ks}/getActiveKey()", app="reader"), 200, setup=WITH_SECRET
    ),
    "reader may not write": Row(
        Call("POST", "/{ks}/uploadSecret", {"use": "sig", "k": "x"}, app="reader"),
        403,
        "Authorization_RequestDenied",
    ),
    "reader may not read keys_v2": Row(
        Call("GET", "/{ks}/keys_v2", app="reader"), 403, "Authorization_RequestDenied"
    ),
    "reader keys_v2 allowed by rule": Row(
        Call("GET", "/{ks}/keys_v2", app="reader"),
        200,
        rules={"keys_v2_read_needs_readwrite": False},
    ),
    "an app without roles may not read": Row(
        Call("GET", "", app="powerless"), 403, "Authorization_RequestDenied"
    ),
    "no token": Row(Call("GET", "", app="anonymous"), 401, "InvalidAuthenticationToken"),
}


@pytest.mark.parametrize("row", list(ROWS.values()), ids=list(ROWS))
async def test_rule(
    row: Row,
    graph_emulator_factory: Any,
    graph_emulator_material: GraphEmulatorMaterial,
    graph_emulator_apps: GraphEmulatorApps,
) -> None:
    async with (
        graph_emulator_factory(EmulatorRules(**row.rules)) as emu,
        httpx.AsyncClient(base_url=emu.graph_base_url + "/trustFramework", timeout=10) as http,
    ):
        tokens: dict[str, str] = {}

        async def send(call: Call) -> httpx.Response:
            headers = {}
            if call.app != "anonymous":
                if call.app not in tokens:
                    app = getattr(graph_emulator_apps, call.app)
                    tokens[call.app] = await graph_emulator_token(
                        emu, app.client_id, app.secret, http
                    )
                headers["Authorization"] = f"Bearer {tokens[call.app]}"
            path = "/keySets" + call.path.replace("{ks}", KS)
            if "{kid}" in path:
                key_set = emu.state.key_set(KS)
                assert key_set is not None
                assert key_set.keys
                path = path.replace("{kid}", key_set.keys[0].kid)
            body = call.body(graph_emulator_material) if callable(call.body) else call.body
            if isinstance(body, bytes):  # raw bytes, no content type
                return await http.request(call.method, path, content=body, headers=headers)
            if isinstance(body, str):  # raw text labelled as JSON
                headers["Content-Type"] = "application/json"
                return await http.request(call.method, path, content=body, headers=headers)
            return await http.request(call.method, path, json=body, headers=headers)

        for step in row.setup:
            response = await send(step)
            assert response.is_success, f"setup {step}: {response.text}"
        response = await send(row.call)

    assert response.status_code == row.status, response.text
    if row.code is not None:
        assert response.json()["error"]["code"] == row.code
    elif response.status_code != 204:
        assert "error" not in response.json()
    if row.member is not None:
        name, expected = row.member
        actual = response.json()[name]
        assert isinstance(actual, dict) if expected == "<object>" else actual == expected
    assert SECRET_CANARY not in response.text
