"""What every check works with: the probes, the run's key set names, and key material.

Key material is made in memory with `cryptography` when a run starts (never stored, never
printed); the secrets sent to uploadSecret are random per run and never leave a request body.
"""

from __future__ import annotations

import base64
import datetime
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from b2ckeys.conformance.probe import B2C_PREFIX, KEY_SETS, Probe, key_set_path
from b2ckeys.formats import b64url
from b2ckeys.graph.raw import RawResponse

Observation = dict[str, object]
# One check per catalogue rule: what the tenant did, in the terms of the rule's `expected`.
Check = Callable[["Context"], Awaitable[Observation]]


class Skipped(Exception):
    """A precondition the user did not supply is missing; the message says which."""


class Unexpected(Exception):
    """A step a check builds on went otherwise than the spec says; the row DIFFERS with this."""


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
    *,
    name: str,
    days: int = 30,
    start: datetime.datetime | None = None,
    issuer: tuple[x509.Certificate, CertificateIssuerPrivateKeyTypes] | None = None,
    is_ca: bool = False,
) -> x509.Certificate:
    begin = start or datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    begin -= datetime.timedelta(hours=1)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(issuer[0].subject if issuer else _name(name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(begin)
        .not_valid_after(begin + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
        .sign(issuer[1] if issuer else key, hashes.SHA256())
    )


def _der_b64(certificate: x509.Certificate) -> str:
    return base64.b64encode(certificate.public_bytes(serialization.Encoding.DER)).decode()


class Material:
    """Certificates, PFX files and JWKs for the checks, made on first use."""

    def __init__(self) -> None:
        self.pfx_password = secrets.token_urlsafe(12)

    def new_secret(self) -> str:
        """A fresh value for uploadSecret's `k`; it goes into one request body and nowhere else."""
        return secrets.token_urlsafe(32)

    @cached_property
    def rsa_key(self) -> rsa.RSAPrivateKey:
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)

    @cached_property
    def certificate(self) -> x509.Certificate:
        return _certificate(self.rsa_key, name="b2ckeys conformance")

    @property
    def certificate_b64(self) -> str:
        return _der_b64(self.certificate)

    @property
    def certificate_pem(self) -> str:
        return self.certificate.public_bytes(serialization.Encoding.PEM).decode()

    @cached_property
    def expired_certificate_b64(self) -> str:
        past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=60)
        return _der_b64(_certificate(self.rsa_key, name="b2ckeys expired", start=past))

    @cached_property
    def ec_certificate_b64(self) -> str:
        return _der_b64(_certificate(ec.generate_private_key(ec.SECP256R1()), name="b2ckeys ec"))

    @cached_property
    def rsa_2047_certificate_b64(self) -> str:
        # Deliberately one bit short: the check shows where B2C draws the line.
        key = rsa.generate_private_key(public_exponent=65537, key_size=2047)  # noqa: S505
        return _der_b64(_certificate(key, name="b2ckeys 2047"))

    def pfx_b64(self, *, aes: bool = False) -> str:
        """The RSA key with a CA-issued leaf and the CA behind it; TripleDES-SHA1 (what B2C
        takes) unless `aes`, which is what current tools export by default."""
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca = _certificate(ca_key, name="b2ckeys conformance CA", is_ca=True)
        leaf = _certificate(self.rsa_key, name="b2ckeys conformance leaf", issuer=(ca, ca_key))
        password = self.pfx_password.encode()
        builder = serialization.PrivateFormat.PKCS12.encryption_builder()
        if aes:
            builder = builder.key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
        else:
            builder = builder.key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC)
            builder = builder.hmac_hash(hashes.SHA1())  # noqa: S303 - the MAC B2C accepts
        data = pkcs12.serialize_key_and_certificates(
            b"b2ckeys", self.rsa_key, leaf, [ca], builder.build(password)
        )
        return base64.b64encode(data).decode()

    def rsa_public_jwk(self) -> dict[str, object]:
        numbers = self.rsa_key.public_key().public_numbers()

        def encode(value: int) -> str:
            return b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))

        return {"kty": "RSA", "use": "sig", "n": encode(numbers.n), "e": encode(numbers.e)}


@dataclass
class Context:
    """One conformance run: the writer's probe, an optional read-only app, and names."""

    probe: Probe
    prefix: str
    run: str  # short and random: this run's key sets never collide with another run's
    material: Material = field(default_factory=Material)
    reader: Probe | None = None
    reader_roles: Callable[[], Awaitable[frozenset[str] | None]] | None = None
    reader_wrong_secret: Callable[[], Awaitable[str | None]] | None = None
    created: list[str] = field(default_factory=list)

    @property
    def stem(self) -> str:
        """Every key set id of this run starts with this."""
        return f"{self.prefix}{self.run}_"

    def proposed(self, name: str) -> str:
        """The id to propose for `name`: without B2C_1A_, which B2C adds (§2.1.1)."""
        return (self.stem + name).removeprefix(B2C_PREFIX)

    def now(self) -> int:
        return int(time.time())

    async def create(self, body: Mapping[str, Any]) -> RawResponse:
        response = await self.probe.send("POST", KEY_SETS, body)
        if response.status == 201:
            final = str(response.json_object.get("id", ""))
            if final:
                self.created.append(final)
                self.probe.guard.named_by_graph.add(final)
        return response

    async def new_set(self, name: str) -> str:
        response = await self.create({"id": self.proposed(name)})
        if response.status != 201:
            raise Unexpected(f"creating key set {self.proposed(name)} answered {_said(response)}")
        return str(response.json_object.get("id"))

    async def call(
        self, method: str, key_set_id: str, tail: str = "", body: Mapping[str, Any] | None = None
    ) -> RawResponse:
        return await self.probe.send(method, key_set_path(key_set_id, tail), body)

    async def add(self, key_set_id: str, action: str, body: Mapping[str, Any]) -> RawResponse:
        """A key action that must succeed for the check to go on; returns its answer."""
        response = await self.call("POST", key_set_id, f"/{action}", body)
        if response.status != 200:
            raise Unexpected(f"{action} on {key_set_id} answered {_said(response)}")
        return response

    async def generate(
        self, key_set_id: str, *, use: str = "sig", nbf: int | None = None, exp: int | None = None
    ) -> str:
        """generateKey (RSA): the new kid."""
        body: dict[str, Any] = {"use": use, "kty": "RSA"}
        body.update({k: v for k, v in (("nbf", nbf), ("exp", exp)) if v is not None})
        return str((await self.add(key_set_id, "generateKey", body)).json_object.get("kid"))

    def secret_body(self, **extra: Any) -> dict[str, Any]:
        return {"use": "sig", "k": self.material.new_secret(), **extra}

    async def active_kid(self, key_set_id: str, *, parentheses: bool = True) -> str | None:
        tail = "/getActiveKey()" if parentheses else "/getActiveKey"
        response = await self.call("GET", key_set_id, tail)
        return str(response.json_object.get("kid")) if response.status == 200 else None


def refusal(response: RawResponse) -> Observation:
    """A refusal as status and code (the shape most refusal rules expect)."""
    return {"status": response.status, "code": response.error_code}


def _said(response: RawResponse) -> str:
    return f"{response.status} {response.error_code or ''}".strip()
