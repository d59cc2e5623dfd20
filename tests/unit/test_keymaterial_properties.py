"""Properties over mangled input: only KeyMaterialError escapes, and secrets never leak.

A canary is planted in passwords, string secrets, PEM bodies and PFX bytes; every error that
comes back is searched for it in str(), repr(), args and the whole exception chain (including
the formatted traceback). Example counts are kept moderate so the module runs in seconds.
"""

from __future__ import annotations

import base64
import traceback
from collections.abc import Callable
from functools import cache

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from keymaterial_pki import NOW, Pki, der, key_pem, make_pki, pem, pfx, tls_secret

from b2ckeys.keymaterial import (
    KeyMaterialError,
    Use,
    load_certificate,
    load_pkcs12,
    load_string_secret,
    load_tls_secret,
    to_pkcs12,
)
from b2ckeys.secret import SecretStr

# Built at run time so the value never sits in a source line a traceback could print.
CANARY = "".join(["cAnArY", "-", "91d4", "e7", "-leak"])
CANARY_B64 = base64.b64encode(CANARY.encode() * 3).decode()
FORMS = (CANARY, CANARY_B64, CANARY.encode().hex(), repr(CANARY.encode()))

# Enough to walk every parser branch many times; each example costs well under 10 ms.
FAST = settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)


# The fixture is shared across examples on purpose: the test only looks for the canary in
# everything written to the process's stdout/stderr, however many examples wrote it.
CAPTURING = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def assert_quiet(capfd: pytest.CaptureFixture[str]) -> None:
    """Nothing the code under test printed (a Rust panic, a warning) carries the canary."""
    out, err = capfd.readouterr()
    for form in FORMS:
        assert form not in out
        assert form not in err


@cache
def pki() -> Pki:
    return make_pki()


@cache
def keystore() -> bytes:
    p = pki()
    return pfx(p.leaf_key, p.leaf, [p.intermediate], password=b"keystore-password")


def all_text(error: BaseException) -> str:
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        parts += [str(current), repr(current), *(repr(a) for a in current.args)]
        parts += [str(a) for a in current.args]
        parts.append(repr(vars(current)) if hasattr(current, "__dict__") else "")
        current = current.__cause__ or current.__context__
    parts += traceback.format_exception(error)
    return "\n".join(parts)


def outcome(call: Callable[[], object]) -> object:
    """The result, or the KeyMaterialError after checking it leaks nothing; anything else fails."""
    try:
        result = call()
    except KeyMaterialError as error:
        caught = error
    else:
        text = repr(result)
        for form in FORMS:
            assert form not in text
        return result
    text = all_text(caught)
    for form in FORMS:
        assert form not in text, f"canary leaked into {caught.reason} error"
    assert caught.__cause__ is None
    assert caught.__context__ is None
    return caught


# --- strategies ------------------------------------------------------------------------------


@st.composite
def mangled(draw: st.DrawFn, original: bytes) -> bytes:
    """`original` with a few edits: flips, cuts, repeats, and canary insertions."""
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "repeat", "canary", "truncate"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[at] ^= draw(st.integers(1, 255))
        elif op == "cut":
            del data[at : at + draw(st.integers(1, 64))]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif op == "repeat":
            data[at:at] = data[at : at + draw(st.integers(1, 200))]
        elif op == "canary":
            data[at:at] = draw(st.sampled_from([CANARY.encode(), CANARY_B64.encode()]))
        else:
            del data[at:]
    return bytes(data)


def canary_pem(label: bytes) -> st.SearchStrategy[bytes]:
    """PEM blocks whose bodies carry the canary, as text and as decoded bytes."""
    body = st.sampled_from([CANARY_B64.encode(), CANARY.encode(), b"MII" + CANARY_B64.encode()])
    return body.map(
        lambda b: b"-----BEGIN " + label + b"-----\n" + b + b"\n-----END " + label + b"-----\n"
    )


FIELDS = ("tls.crt", "tls.key", "ca.crt")
USES: tuple[Use, ...] = ("sig", "enc")


@st.composite
def tls_data(draw: st.DrawFn) -> dict[str, bytes]:
    valid = tls_secret(pki())
    data: dict[str, bytes] = {}
    for name in FIELDS:
        choice = draw(st.sampled_from(["valid", "mangled", "random", "canary", "absent"]))
        if choice == "valid":
            data[name] = valid[name]
        elif choice == "mangled":
            data[name] = draw(mangled(valid[name]))
        elif choice == "random":
            data[name] = draw(st.binary(max_size=512))
        elif choice == "canary":
            label = b"PRIVATE KEY" if name == "tls.key" else b"CERTIFICATE"
            data[name] = draw(canary_pem(label))
    return data


# --- properties ------------------------------------------------------------------------------


@FAST
@given(tls_data(), st.sampled_from(USES), st.booleans())
def test_tls_secret_only_raises_key_material_errors(
    data: dict[str, bytes], use: Use, allow: bool
) -> None:
    outcome(lambda: load_tls_secret(data, use=use, now=NOW, allow_not_yet_valid=allow))


@FAST
@given(st.one_of(st.binary(max_size=2048), st.binary(max_size=64).map(lambda b: b"\x30\x82" + b)))
def test_certificate_from_random_bytes(data: bytes) -> None:
    outcome(lambda: load_certificate(data, use="sig", now=NOW))


@FAST
@given(st.data())
def test_certificate_from_mangled_pem_and_der(draw: st.DataObject) -> None:
    p = pki()
    source = draw.draw(st.sampled_from([pem(p.leaf) + pem(p.intermediate), der(p.leaf)]))
    data = draw.draw(mangled(source))
    outcome(lambda: load_certificate(data, use="sig", now=NOW))


@FAST
@given(st.data(), st.sampled_from(["keystore-password", None, ""]))
def test_pkcs12_from_mangled_bytes(draw: st.DataObject, password: str | None) -> None:
    data = draw.draw(st.one_of(mangled(keystore()), st.binary(max_size=1024)))
    secret = SecretStr(password) if password is not None else None
    outcome(lambda: load_pkcs12(data, secret, use="sig", now=NOW))


@CAPTURING
@given(st.text(max_size=64), st.text(max_size=64))
def test_pkcs12_password_canary_never_leaks(
    capfd: pytest.CaptureFixture[str], prefix: str, suffix: str
) -> None:
    password = SecretStr(prefix + CANARY + suffix)
    result = outcome(lambda: load_pkcs12(keystore(), password, use="sig", now=NOW))
    assert isinstance(result, KeyMaterialError)
    assert result.reason in {"WrongPassword", "TooLarge", "Malformed"}
    assert_quiet(capfd)


@FAST
@given(
    st.binary(max_size=64), st.binary(max_size=64), st.sampled_from([b"", b"\n", b"\r\n", b"\xff"])
)
def test_string_secret_canary_never_leaks(prefix: bytes, suffix: bytes, tail: bytes) -> None:
    raw = prefix + CANARY.encode() + suffix + tail
    result = outcome(lambda: load_string_secret(raw, field="client-secret"))
    if isinstance(result, SecretStr):
        assert CANARY in result.reveal()


@FAST
@given(st.binary(max_size=4096))
def test_string_secret_from_random_bytes(raw: bytes) -> None:
    outcome(lambda: load_string_secret(raw, field="client-secret"))


@CAPTURING
@given(st.data())
def test_canary_in_pem_bodies_never_leaks(
    capfd: pytest.CaptureFixture[str], draw: st.DataObject
) -> None:
    labels = [b"PRIVATE KEY", b"RSA PRIVATE KEY", b"EC PRIVATE KEY", b"ENCRYPTED PRIVATE KEY"]
    key = draw.draw(st.sampled_from(labels).flatmap(canary_pem))
    crt = draw.draw(canary_pem(b"CERTIFICATE"))
    valid = tls_secret(pki())
    data = draw.draw(st.sampled_from([{**valid, "tls.key": key}, {**valid, "tls.crt": crt}]))
    result = outcome(lambda: load_tls_secret(data, use="sig", now=NOW))
    assert isinstance(result, KeyMaterialError)
    certificate = outcome(lambda: load_certificate(crt, use="sig", now=NOW))
    assert isinstance(certificate, KeyMaterialError)
    assert_quiet(capfd)


def test_accepted_material_and_upload_never_show_secrets() -> None:
    p = pki()
    material = load_tls_secret(tls_secret(p), use="sig", now=NOW)
    upload = to_pkcs12(material)
    key_body = key_pem(p.leaf_key).split(b"\n")[1].decode()
    for text in (repr(material), str(material), repr(upload), str(upload), f"{upload}"):
        assert key_body not in text
        assert upload.password.reveal() not in text
        assert upload.pfx_b64.reveal()[:64] not in text
