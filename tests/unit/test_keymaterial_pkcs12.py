"""The PFX b2ckeys builds is the legacy profile B2C accepts, and PFX inputs of every layout open.

The profile is checked on the ASN.1 itself, with a DER walker that shares no code with the
module under test: pbeWithSHAAnd3-KeyTripleDES-CBC for the shrouded key bag and for the
encrypted certificates, and an HMAC-SHA1 MAC.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import replace
from functools import cache

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import NoEncryption, pkcs12
from keymaterial_pki import (
    NOW,
    Node,
    Pki,
    encode,
    encode_indefinite,
    make_pki,
    parse_der,
    pfx,
    rsa_key,
    tls_secret,
    with_leaf,
    x5t,
)

from b2ckeys.keymaterial import (
    CertificateWithKey,
    KeyMaterialError,
    load_pkcs12,
    load_tls_secret,
    to_pkcs12,
)
from b2ckeys.keymaterial.der import pkcs12_layout
from b2ckeys.secret import SecretStr

OID_DATA = "1.2.840.113549.1.7.1"
OID_ENCRYPTED_DATA = "1.2.840.113549.1.7.6"
OID_SHROUDED_KEY_BAG = "1.2.840.113549.1.12.10.1.2"
OID_CERT_BAG = "1.2.840.113549.1.12.10.1.3"
OID_PBE_SHA1_3DES = "1.2.840.113549.1.12.1.3"  # pbeWithSHAAnd3-KeyTripleDES-CBC
OID_PBES2 = "1.2.840.113549.1.5.13"
OID_SHA1 = "1.3.14.3.2.26"
AES_ARC = "2.16.840.1.101.3.4.1."


@cache
def pki() -> Pki:
    return make_pki()


@cache
def material() -> CertificateWithKey:
    return load_tls_secret(tls_secret(pki()), use="sig", now=NOW)


def oids(node: Node) -> Iterator[str]:
    if node.tag == 0x06:
        yield node.oid()
    for child in node.children:
        yield from oids(child)


def safe_contents(content_info: Node) -> Node:
    """The SafeContents inside a `data` ContentInfo."""
    assert content_info[0].oid() == OID_DATA
    return parse_der(content_info[1][0].content)


def test_pfx_uses_the_legacy_3des_sha1_profile() -> None:
    upload = to_pkcs12(material())
    tree = parse_der(base64.b64decode(upload.pfx_b64.reveal(), validate=True))

    assert tree[0].content == b"\x03", "PFX version 3"
    authenticated_safe = parse_der(tree[1][1][0].content)
    key_algorithms: list[str] = []
    certificate_algorithms: list[str] = []
    for content_info in authenticated_safe.children:
        kind = content_info[0].oid()
        if kind == OID_DATA:
            for bag in safe_contents(content_info).children:
                assert bag[0].oid() == OID_SHROUDED_KEY_BAG, "no plaintext keys or certificates"
                encrypted_private_key_info = bag[1][0]
                key_algorithms.append(encrypted_private_key_info[0][0].oid())
        else:
            assert kind == OID_ENCRYPTED_DATA
            encrypted_content_info = content_info[1][0][1]
            assert encrypted_content_info[0].oid() == OID_DATA
            certificate_algorithms.append(encrypted_content_info[1][0].oid())

    assert key_algorithms == [OID_PBE_SHA1_3DES]
    assert certificate_algorithms == [OID_PBE_SHA1_3DES]
    mac_data = tree[2]
    assert mac_data[0][0][0].oid() == OID_SHA1
    assert len(mac_data[0][1].content) == 20, "an HMAC-SHA1 digest"
    every_oid = set(oids(tree))
    assert OID_PBES2 not in every_oid
    assert not any(o.startswith(AES_ARC) for o in every_oid)


def test_pfx_opens_with_its_password_and_carries_the_same_x5t() -> None:
    m = material()
    upload = to_pkcs12(m)
    raw = base64.b64decode(upload.pfx_b64.reveal())
    opened = pkcs12.load_pkcs12(raw, upload.password.reveal().encode())
    assert opened.cert is not None
    assert x5t(opened.cert.certificate) == m.leaf.x5t == upload.leaf.x5t
    assert [x5t(c.certificate) for c in opened.additional_certs] == [c.x5t for c in m.chain[1:]]
    original = pki().leaf_key
    assert isinstance(opened.key, rsa.RSAPrivateKey)
    assert isinstance(original, rsa.RSAPrivateKey)
    assert opened.key.private_numbers() == original.private_numbers()
    with pytest.raises(ValueError, match="password"):
        pkcs12.load_pkcs12(raw, b"not the password")


def test_pfx_round_trips_through_load_pkcs12() -> None:
    m = material()
    upload = to_pkcs12(m)
    again = load_pkcs12(
        base64.b64decode(upload.pfx_b64.reveal()), upload.password, use="sig", now=NOW
    )
    assert again == m


def test_each_pfx_has_its_own_random_password() -> None:
    first, second = to_pkcs12(material()), to_pkcs12(material())
    assert first.password != second.password
    assert len(first.password.reveal()) >= 32
    assert first.pfx_b64 != second.pfx_b64
    for secret in (first.password.reveal(), first.pfx_b64.reveal()[:40]):
        assert secret not in repr(first)


def test_4096_bit_leaf_converts() -> None:
    big = make_pki(leaf_bits=4096)
    upload = to_pkcs12(load_tls_secret(tls_secret(big), use="sig", now=NOW))
    opened = pkcs12.load_pkcs12(
        base64.b64decode(upload.pfx_b64.reveal()), upload.password.reveal().encode()
    )
    assert opened.cert is not None
    assert x5t(opened.cert.certificate) == x5t(big.leaf)


# --- PFX inputs in less common layouts ---------------------------------------------------------

_OID_DATA_DER = bytes.fromhex("06092a864886f70d010701")


def _bags(raw_pfx: bytes) -> list[bytes]:
    """The SafeBags of an unencrypted PFX, re-encoded."""
    authenticated_safe = parse_der(parse_der(raw_pfx)[1][1][0].content)
    bags = []
    for content_info in authenticated_safe.children:
        bags += [encode(b.tag, b.content) for b in safe_contents(content_info).children]
    return bags


def _pfx_without_mac(bags: list[bytes]) -> bytes:
    safe = encode(0x30, b"".join(bags))
    content_info = encode(0x30, _OID_DATA_DER + encode(0xA0, encode(0x04, safe)))
    authenticated_safe = encode(0x30, content_info)
    outer = encode(0x30, _OID_DATA_DER + encode(0xA0, encode(0x04, authenticated_safe)))
    return encode(0x30, encode(0x02, b"\x03") + outer)


def _unencrypted(p: Pki) -> bytes:
    assert isinstance(p.leaf_key, rsa.RSAPrivateKey)
    return pkcs12.serialize_key_and_certificates(b"k", p.leaf_key, p.leaf, None, NoEncryption())


def test_pfx_with_two_private_keys_is_refused() -> None:
    other = with_leaf(pki(), lambda s: replace(s, key=rsa_key("stranger")))
    two = _pfx_without_mac(_bags(_unencrypted(pki())) + _bags(_unencrypted(other)))
    # cryptography alone would open it and silently keep one of the keys:
    assert pkcs12.load_pkcs12(two, None).key is not None
    with pytest.raises(KeyMaterialError) as caught:
        load_pkcs12(two, None, use="sig", now=NOW)
    assert (caught.value.reason, caught.value.field) == ("MultiplePrivateKeys", "keystore.p12")


def test_pfx_with_one_key_and_no_mac_opens() -> None:
    one = _pfx_without_mac(_bags(_unencrypted(pki())))
    assert load_pkcs12(one, None, use="sig", now=NOW).leaf.x5t == x5t(pki().leaf)


def _ber(raw_pfx: bytes, chunk: int) -> bytes:
    """Re-encode a PFX's outer layers with indefinite lengths and a chunked OCTET STRING.

    The MAC covers the AuthenticatedSafe's value, which chunking does not change, so the result
    is still a valid PFX, as Windows and older Java tools write them.
    """
    tree = parse_der(raw_pfx)
    version, auth_safe, mac = tree.children
    value = auth_safe[1][0].content
    pieces = [encode(0x04, value[i : i + chunk]) for i in range(0, len(value), chunk)]
    octets = encode_indefinite(0x24, pieces)
    content_info = encode_indefinite(0x30, [_OID_DATA_DER, encode_indefinite(0xA0, [octets])])
    return encode_indefinite(
        0x30,
        [encode(version.tag, version.content), content_info, encode(mac.tag, mac.content)],
    )


# cryptography opens BER PFX files after a notice that it fell back from DER; the notice is its
# own business, the test is about b2ckeys reading the layout.
@pytest.mark.filterwarnings("ignore:PKCS#12 bundle could not be parsed as DER:UserWarning")
@pytest.mark.parametrize("chunk", [1000, 64])
def test_ber_encoded_pfx_opens(chunk: int) -> None:
    p = pki()
    raw = _ber(pfx(p.leaf_key, p.leaf, [p.intermediate]), chunk)
    assert raw[1] == 0x80, "indefinite length at the top"
    loaded = load_pkcs12(raw, SecretStr("keystore-password"), use="sig", now=NOW)
    assert loaded.leaf.x5t == x5t(p.leaf)


def test_layout_reader_agrees_with_the_independent_walker() -> None:
    p = pki()
    raw = pfx(p.leaf_key, p.leaf, [p.intermediate])
    layout = pkcs12_layout(raw)
    assert layout.has_mac
    assert layout.visible_key_bags == 1
    assert layout.encrypted_contents == 1
