"""Checks of the key actions: request and response shapes, and B2C's refusals (spec §2.2,
§2.5, §2.8). Each returns what the tenant did, in the terms of its catalogue entry."""

from __future__ import annotations

import base64
import hashlib
import secrets
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from b2ckeys.conformance.context import Check, Context, Observation, Unexpected, refusal
from b2ckeys.formats import b64url, b64url_decode
from b2ckeys.graph.raw import RawResponse

# Members B2C never returns a value for (GDOC: "not readable").
PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "k")


def _accepted(response: RawResponse) -> bool:
    return response.status == 200


async def generate_key_shape(ctx: Context) -> Observation:
    key_set_id = await ctx.new_set("generate")
    response = await ctx.call("POST", key_set_id, "/generateKey", {"use": "sig", "kty": "RSA"})
    key = response.json_object
    modulus = b64url_decode(str(key.get("n") or ""))
    return {
        "status": response.status,
        "kty": key.get("kty"),
        "use": key.get("use"),
        "kid": bool(key.get("kid")),
        "private_members": [m for m in PRIVATE_MEMBERS if key.get(m) is not None],
        "emit_null_members": "k" in key and key["k"] is None,
        "generated_rsa_bits": int.from_bytes(modulus, "big").bit_length() if modulus else None,
    }


async def initial_status(ctx: Context) -> Observation:
    generated_in = await ctx.new_set("statusgen")
    generated = await ctx.add(generated_in, "generateKey", {"use": "sig", "kty": "RSA"})
    secret_in = await ctx.new_set("statussecret")
    secret = await ctx.add(secret_in, "uploadSecret", ctx.secret_body())
    certificate_in = await ctx.new_set("statuscert")
    body = {"key": ctx.material.certificate_b64}
    certificate = await ctx.add(certificate_in, "uploadCertificate", body)
    uploaded = [secret.json_object.get("status"), certificate.json_object.get("status")]
    return {
        "generateKey": generated.json_object.get("status"),
        "uploaded_keys_start_enabled": uploaded == ["enabled", "enabled"],
    }


async def upload_secret_shape(ctx: Context) -> Observation:
    key_set_id = await ctx.new_set("secret")
    nbf, exp = ctx.now() - 60, ctx.now() + 86400
    response = await ctx.call(
        "POST", key_set_id, "/uploadSecret", ctx.secret_body(nbf=nbf, exp=exp)
    )
    key = response.json_object
    return {
        "status": response.status,
        "kty": str(key.get("kty") or "").lower() or None,
        "use": key.get("use"),
        # The doc example shows them as strings; the schema says Int64: either is the same time.
        "nbf": _as_int(key.get("nbf")) == nbf,
        "exp": _as_int(key.get("exp")) == exp,
        "k_readable": key.get("k") is not None,
    }


def _as_int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


async def secret_not_base64url(ctx: Context) -> Observation:
    key_set_id = await ctx.new_set("secretraw")
    body = ctx.secret_body(k="not+base64url/" + secrets.token_hex(16) + "==")
    response = await ctx.call("POST", key_set_id, "/uploadSecret", body)
    return {"check_upload_secret_k_is_base64url": not _accepted(response)}


async def short_secret(ctx: Context) -> Observation:
    key_set_id = await ctx.new_set("secretshort")
    response = await ctx.call("POST", key_set_id, "/uploadSecret", ctx.secret_body(k="ab3d9"))
    if _accepted(response):
        return {"min_uploaded_secret_bits": 0}
    return {"min_uploaded_secret_bits": f"more than 40 ({response.error_code})"}


async def secret_starting_now(ctx: Context) -> Observation:
    key_set_id = await ctx.new_set("secretnow")
    body = ctx.secret_body(nbf=ctx.now(), exp=ctx.now() + 86400)
    response = await ctx.call("POST", key_set_id, "/uploadSecret", body)
    if _accepted(response):
        return {"min_secret_nbf_lead_seconds": 0}
    return {"min_secret_nbf_lead_seconds": f"refused ({response.error_code})"}


async def past_expiry(ctx: Context) -> Observation:
    key_set_id = await ctx.new_set("pastexp")
    body = ctx.secret_body(nbf=ctx.now() - 7200, exp=ctx.now() - 3600)
    response = await ctx.call("POST", key_set_id, "/uploadSecret", body)
    refused = not _accepted(response)
    return {"reject_past_expiry": refused, "code": response.error_code if refused else None}


async def upload_certificate_shape(ctx: Context) -> Observation:
    key_set_id = await ctx.new_set("certificate")
    body = {"key": ctx.material.certificate_b64}
    response = await ctx.call("POST", key_set_id, "/uploadCertificate", body)
    key = response.json_object
    certificate = ctx.material.certificate
    der = certificate.public_bytes(serialization.Encoding.DER)
    sha1 = hashlib.sha1(der).digest()  # noqa: S324 - x5t is defined as SHA-1 (RFC 7517)
    dates = _as_int(key.get("nbf")) == int(
        certificate.not_valid_before_utc.timestamp()
    ) and _as_int(key.get("exp")) == int(certificate.not_valid_after_utc.timestamp())
    return {
        "status": response.status,
        "kty": key.get("kty"),
        "x5c": list(key.get("x5c") or ()) == [base64.b64encode(der).decode()],
        "x5t": key.get("x5t") == b64url(sha1),
        "dates": dates,
    }


async def pem_certificate(ctx: Context) -> Observation:
    key_set_id = await ctx.new_set("certpem")
    body = {"key": ctx.material.certificate_pem}
    response = await ctx.call("POST", key_set_id, "/uploadCertificate", body)
    accepted = _accepted(response)
    return {"accept_pem_certificate": accepted, "code": None if accepted else response.error_code}


async def expired_certificate(ctx: Context) -> Observation:
    key_set_id = await ctx.new_set("certexpired")
    body = {"key": ctx.material.expired_certificate_b64}
    response = await ctx.call("POST", key_set_id, "/uploadCertificate", body)
    return {"reject_expired_certificate": not _accepted(response)}


async def duplicate_upload(ctx: Context) -> Observation:
    key_set_id = await ctx.new_set("certtwice")
    body = {"key": ctx.material.certificate_b64}
    await ctx.add(key_set_id, "uploadCertificate", body)
    response = await ctx.call("POST", key_set_id, "/uploadCertificate", body)
    return {"reject_duplicate_key_upload": not _accepted(response)}


async def certificate_takes_set_use(ctx: Context) -> Observation:
    key_set_id = await ctx.new_set("certenc")
    await ctx.generate(key_set_id, use="enc")
    body = {"key": ctx.material.certificate_b64}
    response = await ctx.call("POST", key_set_id, "/uploadCertificate", body)
    follows = _accepted(response) and response.json_object.get("use") == "enc"
    return {"certificate_use_follows_key_set": follows}


async def upload_pkcs12_shape(ctx: Context) -> Observation:
    key_set_id = await ctx.new_set("pkcs12")
    body = {"key": ctx.material.pfx_b64(), "password": ctx.material.pfx_password}
    response = await ctx.call("POST", key_set_id, "/uploadPkcs12", body)
    key = response.json_object
    chain = [x509.load_der_x509_certificate(base64.b64decode(c)) for c in key.get("x5c") or ()]
    return {
        "status": response.status,
        "kty": key.get("kty"),
        "pkcs12_x5c_full_chain": len(chain) > 1,
    }


async def pkcs12_wrong_password(ctx: Context) -> Observation:
    key_set_id = await ctx.new_set("pkcs12pw")
    body = {"key": ctx.material.pfx_b64(), "password": "wrong-" + secrets.token_hex(4)}
    return refusal(await ctx.call("POST", key_set_id, "/uploadPkcs12", body))


async def kty_mix(ctx: Context) -> Observation:
    key_set_id = await ctx.new_set("ktymix")
    await ctx.generate(key_set_id)
    return refusal(await ctx.call("POST", key_set_id, "/uploadSecret", ctx.secret_body()))


async def use_mix(ctx: Context) -> Observation:
    key_set_id = await ctx.new_set("usemix")
    await ctx.generate(key_set_id, use="sig")
    body = {"use": "enc", "kty": "RSA"}
    return refusal(await ctx.call("POST", key_set_id, "/generateKey", body))


async def aes_pkcs12(ctx: Context) -> Observation:
    key_set_id = await ctx.new_set("pkcs12aes")
    body = {"key": ctx.material.pfx_b64(aes=True), "password": ctx.material.pfx_password}
    response = await ctx.call("POST", key_set_id, "/uploadPkcs12", body)
    refused = not _accepted(response)
    return {"refuse_aes_pkcs12": refused, "code": response.error_code if refused else None}


async def ec_key(ctx: Context) -> Observation:
    key_set_id = await ctx.new_set("eckey")
    body = {"key": ctx.material.ec_certificate_b64}
    return refusal(await ctx.call("POST", key_set_id, "/uploadCertificate", body))


async def short_rsa(ctx: Context) -> Observation:
    key_set_id = await ctx.new_set("shortrsa")
    body = {"key": ctx.material.rsa_2047_certificate_b64}
    short = await ctx.call("POST", key_set_id, "/uploadCertificate", body)
    if _accepted(short):
        return {"min_rsa_bits": "2047 or less (2047 accepted)", "code": None}
    full = await ctx.call(
        "POST", key_set_id, "/uploadCertificate", {"key": ctx.material.certificate_b64}
    )
    if not _accepted(full):
        raise Unexpected(f"a 2048-bit certificate was refused too ({full.error_code})")
    return {"min_rsa_bits": 2048, "code": short.error_code}


def _oct_jwk(**extra: Any) -> dict[str, Any]:
    return {"kty": "oct", "use": "sig", "k": b64url(secrets.token_bytes(32)), **extra}


async def put_with_kid(ctx: Context) -> Observation:
    key_set_id = await ctx.new_set("putkid")
    body = {"keys": [_oct_jwk(kid=b64url(secrets.token_bytes(32)))]}
    return refusal(await ctx.call("PUT", key_set_id, "", body))


async def put_missing(ctx: Context) -> Observation:
    missing = ctx.stem + "putmissing"
    response = await ctx.call("PUT", missing, "", {"keys": [_oct_jwk()]})
    if response.status == 200:  # an upsert: clean it up with the rest
        ctx.created.append(missing)
    return {"put_missing_status": response.status, "code": response.error_code}


async def patch_as_put(ctx: Context) -> Observation:
    key_set_id = await ctx.new_set("patch")
    response = await ctx.call("PATCH", key_set_id, "", {"keys": [_oct_jwk()]})
    return {"accept_patch_as_put": _accepted(response)}


async def put_without_private(ctx: Context) -> Observation:
    key_set_id = await ctx.new_set("putpublic")
    body = {"keys": [ctx.material.rsa_public_jwk()]}
    response = await ctx.call("PUT", key_set_id, "", body)
    return {"put_requires_private_members": not _accepted(response)}


CHECKS: dict[str, Check] = {
    "2.5-generateKey": generate_key_shape,
    "2.6.5-initial-status": initial_status,
    "2.5-uploadSecret": upload_secret_shape,
    "2.2-secret-base64url": secret_not_base64url,
    "2.2-short-secret": short_secret,
    "2.5-secret-nbf-now": secret_starting_now,
    "2.5-past-exp": past_expiry,
    "2.5-uploadCertificate": upload_certificate_shape,
    "2.5-certificate-pem": pem_certificate,
    "2.5-certificate-expired": expired_certificate,
    "3.2-duplicate-upload": duplicate_upload,
    "2.5-certificate-use": certificate_takes_set_use,
    "2.5-uploadPkcs12": upload_pkcs12_shape,
    "2.5-pkcs12-password": pkcs12_wrong_password,
    "2.2-kty-mix": kty_mix,
    "2.2-use-mix": use_mix,
    "2.5-pkcs12-aes": aes_pkcs12,
    "2.2-ec-key": ec_key,
    "2.2-short-rsa": short_rsa,
    "2.8-put-kid": put_with_kid,
    "2.8-put-missing": put_missing,
    "2.8-patch": patch_as_put,
    "2.8-put-private": put_without_private,
}
