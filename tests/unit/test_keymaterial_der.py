"""The bounded BER reader behind PKCS#12 layout checks: what it reads and what it refuses."""

from __future__ import annotations

import pytest
from keymaterial_pki import encode, encode_indefinite

from b2ckeys.keymaterial import der
from b2ckeys.keymaterial.der import DerError


@pytest.mark.parametrize(
    ("encoded", "dotted"),
    [
        ("2a864886f70d010701", "1.2.840.113549.1.7.1"),
        ("2b0e03021a", "1.3.14.3.2.26"),
        ("608648016503040201", "2.16.840.1.101.3.4.2.1"),
        ("8837", "2.999"),  # a first arc above 2*40 belongs to the joint-iso-itu-t branch
    ],
)
def test_oid_text(encoded: str, dotted: str) -> None:
    assert der.oid(der.read_one(encode(0x06, bytes.fromhex(encoded)))) == dotted


def test_definite_and_indefinite_lengths_read_the_same_children() -> None:
    parts = [encode(0x02, b"\x03"), encode(0x04, b"x" * 300)]
    definite = der.read_one(encode(0x30, b"".join(parts)))
    indefinite = der.read_one(encode_indefinite(0x30, parts))
    assert der.children(definite) == der.children(indefinite)
    assert der.small_integer(der.children(definite)[0]) == 3


def test_constructed_octet_string_is_joined() -> None:
    nested = encode_indefinite(
        0x24, [encode(0x04, b"ab"), encode_indefinite(0x24, [encode(0x04, b"c")])]
    )
    assert der.octet_string(der.read_one(nested)) == b"abc"


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "empty"),
        (b"\x30", "no length"),
        (b"\x30\x05\x02\x01", "content shorter than its length"),
        (b"\x30\x85\x00\x00\x00\x00\x01\x00", "five length octets"),
        (b"\x30\x80\x02\x01\x03", "indefinite without end-of-contents"),
        (b"\x04\x80\x00\x00", "indefinite primitive"),
        (b"\x1f\x81\x00\x00", "high tag number"),
        (b"\x02\x01\x03\x00", "trailing bytes"),
        (b"\x30\x80" * 100 + b"\x00\x00" * 100, "nesting past the depth bound"),
    ],
)
def test_refuses_broken_encodings(data: bytes, why: str) -> None:
    with pytest.raises(DerError):
        der.read_one(data)
    del why


def test_refuses_more_elements_than_the_bound() -> None:
    many = encode(0x30, encode(0x05, b"") * (der.MAX_ELEMENTS + 1))
    with pytest.raises(DerError):
        der.children(der.read_one(many))


@pytest.mark.parametrize(
    "data",
    [
        encode(0x30, encode(0x02, b"\x03")),  # no authSafe
        encode(
            0x30,
            encode(0x02, b"\x02") + encode(0x30, encode(0x06, bytes.fromhex("2a864886f70d010701"))),
        ),
        encode(
            0x30,
            encode(0x02, b"\x03") + encode(0x30, encode(0x06, bytes.fromhex("2a864886f70d010702"))),
        ),
        encode(0x04, b"not a sequence"),
    ],
    ids=["one element", "version 2", "signedData authSafe", "not a SEQUENCE"],
)
def test_pkcs12_layout_refuses_what_is_not_a_password_pfx(data: bytes) -> None:
    with pytest.raises(DerError):
        der.pkcs12_layout(data)


def test_error_text_never_quotes_the_input() -> None:
    secret = b"\x04\x10canary-canary-!!"
    with pytest.raises(DerError) as caught:
        der.pkcs12_layout(secret)
    assert "canary" not in str(caught.value)
