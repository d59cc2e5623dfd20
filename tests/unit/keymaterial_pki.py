"""Test-time PKI for the key material tests: keys, certificate builders with modifiers, PFX tools.

No key or certificate is ever stored: everything is generated when the tests run. RSA generation
is slow, so each named key is generated once per test session (`functools.cache`).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import cache

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

# A fixed "now" keeps validity cases exact; every certificate is built relative to it.
NOW = 1_800_000_000
DAY = 86_400


@cache
def rsa_key(name: str, bits: int = 2048) -> rsa.RSAPrivateKey:
    """One RSA key per (name, bits) for the whole session; `name` only separates identities."""
    del name
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


@cache
def ec_key(name: str) -> ec.EllipticCurvePrivateKey:
    del name
    return ec.generate_private_key(ec.SECP256R1())


@cache
def ed25519_key(name: str) -> ed25519.Ed25519PrivateKey:
    del name
    return ed25519.Ed25519PrivateKey.generate()


def _time(numeric_date: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(numeric_date, dt.UTC)


@dataclass(frozen=True)
class CertSpec:
    """What to put in a certificate; modify with `dataclasses.replace` (builder with modifiers)."""

    common_name: str
    key: CertificateIssuerPrivateKeyTypes
    not_before: int = NOW - DAY
    not_after: int = NOW + 90 * DAY
    is_ca: bool = False
    key_usage: frozenset[str] | None = frozenset({"digital_signature", "key_encipherment"})
    serial: int = 0  # 0: derived from the name, so rebuilding gives the same certificate


_USAGE_FLAGS = (
    "digital_signature",
    "content_commitment",
    "key_encipherment",
    "data_encipherment",
    "key_agreement",
    "key_cert_sign",
    "crl_sign",
)


def _key_usage(flags: frozenset[str]) -> x509.KeyUsage:
    values = {flag: flag in flags for flag in _USAGE_FLAGS}
    return x509.KeyUsage(**values, encipher_only=False, decipher_only=False)


def build_cert(
    spec: CertSpec, issuer: tuple[CertSpec, x509.Certificate] | None
) -> x509.Certificate:
    """Sign `spec` with `issuer` (its spec and certificate), or self-sign when None."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, spec.common_name)])
    issuer_name = issuer[1].subject if issuer else subject
    signer = issuer[0].key if issuer else spec.key
    serial = spec.serial or int.from_bytes(hashlib.sha256(spec.common_name.encode()).digest()[:8])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(spec.key.public_key())
        .serial_number(serial)
        .not_valid_before(_time(spec.not_before))
        .not_valid_after(_time(spec.not_after))
        .add_extension(x509.BasicConstraints(ca=spec.is_ca, path_length=None), critical=True)
    )
    if spec.key_usage is not None:
        builder = builder.add_extension(_key_usage(spec.key_usage), critical=True)
    algorithm = None if isinstance(signer, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(signer, algorithm)


CA_USAGE = frozenset({"digital_signature", "key_cert_sign", "crl_sign"})


@dataclass(frozen=True)
class Pki:
    """A cert-manager-like CA -> intermediate -> leaf chain."""

    root: x509.Certificate
    intermediate: x509.Certificate
    leaf: x509.Certificate
    leaf_key: CertificateIssuerPrivateKeyTypes
    specs: dict[str, CertSpec] = field(compare=False)


def make_pki(
    *,
    leaf_bits: int = 2048,
    leaf: Callable[[CertSpec], CertSpec] = lambda s: s,
    intermediate: Callable[[CertSpec], CertSpec] = lambda s: s,
) -> Pki:
    root_spec = CertSpec("b2ckeys test root", rsa_key("root"), is_ca=True, key_usage=CA_USAGE)
    inter_spec = intermediate(
        CertSpec(
            "b2ckeys test intermediate", rsa_key("intermediate"), is_ca=True, key_usage=CA_USAGE
        )
    )
    leaf_spec = leaf(CertSpec("token-signing.example", rsa_key("leaf", leaf_bits)))
    root = build_cert(root_spec, None)
    inter = build_cert(inter_spec, (root_spec, root))
    leaf_cert = build_cert(leaf_spec, (inter_spec, inter))
    key = leaf_spec.key
    specs = {"root": root_spec, "intermediate": inter_spec, "leaf": leaf_spec}
    return Pki(root, inter, leaf_cert, key, specs)


def with_leaf(pki: Pki, modify: Callable[[CertSpec], CertSpec]) -> Pki:
    """The same CA and intermediate, and a leaf rebuilt with `modify`."""
    spec = modify(pki.specs["leaf"])
    leaf = build_cert(spec, (pki.specs["intermediate"], pki.intermediate))
    key = spec.key
    return replace(pki, leaf=leaf, leaf_key=key, specs={**pki.specs, "leaf": spec})


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def key_pem(
    key: CertificateIssuerPrivateKeyTypes,
    fmt: str = "pkcs8",
) -> bytes:
    formats = {
        "pkcs8": serialization.PrivateFormat.PKCS8,
        "pkcs1": serialization.PrivateFormat.TraditionalOpenSSL,
    }
    return key.private_bytes(serialization.Encoding.PEM, formats[fmt], serialization.NoEncryption())


def tls_secret(
    pki: Pki,
    *,
    chain: Sequence[x509.Certificate] | None = None,
    key_format: str = "pkcs8",
    with_ca: bool = True,
) -> dict[str, bytes]:
    """The data of a `kubernetes.io/tls` Secret as cert-manager writes it (leaf + intermediate)."""
    certs = [pki.leaf, pki.intermediate] if chain is None else list(chain)
    data = {
        "tls.crt": b"".join(pem(c) for c in certs),
        "tls.key": key_pem(pki.leaf_key, key_format),
    }
    if with_ca:
        data["ca.crt"] = pem(pki.root)
    return data


def shuffled(items: Sequence[x509.Certificate], seed: int) -> list[x509.Certificate]:
    out = list(items)
    random.Random(seed).shuffle(out)  # noqa: S311 -- reproducible test order, not security
    return out


def x5t(cert: x509.Certificate) -> str:
    digest = hashlib.sha1(der(cert), usedforsecurity=False).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def pfx(
    key: CertificateIssuerPrivateKeyTypes | None,
    cert: x509.Certificate | None,
    cas: Sequence[x509.Certificate] = (),
    password: bytes | None = b"keystore-password",
) -> bytes:
    """A PFX as cert-manager or openssl would write it (modern AES profile unless no password)."""
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    assert key is None or isinstance(key, PKCS12_KEY_TYPES)
    return pkcs12.serialize_key_and_certificates(b"test", key, cert, list(cas) or None, encryption)


PKCS12_KEY_TYPES = (
    rsa.RSAPrivateKey,
    ec.EllipticCurvePrivateKey,
    ed25519.Ed25519PrivateKey,
)


# --- a tiny DER toolkit, independent of the code under test --------------------------------


@dataclass(frozen=True)
class Node:
    tag: int
    content: bytes
    children: tuple[Node, ...] = ()

    def oid(self) -> str:
        assert self.tag == 0x06
        arcs, value = [], 0
        for byte in self.content:
            value = (value << 7) | (byte & 0x7F)
            if not byte & 0x80:
                arcs.append(value)
                value = 0
        first = min(arcs[0] // 40, 2)
        return ".".join(str(a) for a in [first, arcs[0] - 40 * first, *arcs[1:]])

    def __getitem__(self, index: int) -> Node:
        return self.children[index]


def parse_der(data: bytes) -> Node:
    """Strict DER (definite lengths only) into a tree; constructed tags get children."""
    node, end = _parse(data, 0)
    assert end == len(data), "trailing bytes"
    return node


def _parse(data: bytes, offset: int) -> tuple[Node, int]:
    tag, first = data[offset], data[offset + 1]
    offset += 2
    if first & 0x80:
        size = first & 0x7F
        length = int.from_bytes(data[offset : offset + size], "big")
        offset += size
    else:
        length = first
    content = data[offset : offset + length]
    assert len(content) == length, "truncated"
    children: list[Node] = []
    if tag & 0x20:
        position = 0
        while position < length:
            child, position = _parse(content, position)
            children.append(child)
    return Node(tag, content, tuple(children)), offset + length


def encode(tag: int, content: bytes) -> bytes:
    """One definite-length DER element."""
    length = len(content)
    if length < 0x80:
        return bytes([tag, length]) + content
    size = (length.bit_length() + 7) // 8
    return bytes([tag, 0x80 | size]) + length.to_bytes(size, "big") + content


def encode_indefinite(tag: int, parts: Sequence[bytes]) -> bytes:
    """One BER indefinite-length constructed element (what some Windows/Java PFX files use)."""
    return bytes([tag, 0x80]) + b"".join(parts) + b"\x00\x00"
