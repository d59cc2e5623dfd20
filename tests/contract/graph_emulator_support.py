"""Helpers for the Graph emulator contract tests: material, apps and HTTP clients.

Key material is generated when the tests run (never stored).
"""

from __future__ import annotations

import base64
import datetime
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from b2ckeys_emulators.graph.server import (
    EmulatedApp,
    GraphEmulator,
)

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
READ_ROLE = "TrustFrameworkKeySet.Read.All"
WRITE_ROLE = "TrustFrameworkKeySet.ReadWrite.All"
PFX_PASSWORD = "pfx-password"
# Distinctive values that must never show up in a response, log line or request log.
SECRET_CANARY = "canary-secret-7f3a9c"
WRITER_SECRET = "writer-secret-5b2e81"
FEDERATED_ISSUER = "https://oidc.cluster.test/issuer"
FEDERATED_SUBJECT = "system:serviceaccount:b2ckeys:operator"


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_certificate(
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
    *,
    common_name: str = "b2ckeys contract test",
    issuer_key: CertificateIssuerPrivateKeyTypes | None = None,
    issuer: x509.Certificate | None = None,
    not_before: datetime.datetime | None = None,
    days: int = 30,
    is_ca: bool = False,
) -> x509.Certificate:
    start = not_before or datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(issuer.subject if issuer else _name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
        .sign(issuer_key or key, hashes.SHA256())
    )


def der_b64(certificate: x509.Certificate) -> str:
    return base64.b64encode(certificate.public_bytes(serialization.Encoding.DER)).decode()


def triple_des(password: str) -> serialization.KeySerializationEncryption:
    """The PFX encryption B2C accepts (TripleDES-SHA1 with a SHA-1 MAC)."""
    return (
        serialization.PrivateFormat.PKCS12.encryption_builder()
        .key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC)
        .hmac_hash(hashes.SHA1())  # noqa: S303 - the MAC B2C accepts
        .build(password.encode())
    )


def pfx_b64(
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | None,
    certificate: x509.Certificate | None,
    encryption: serialization.KeySerializationEncryption,
    extra: list[x509.Certificate] | None = None,
) -> str:
    data = pkcs12.serialize_key_and_certificates(b"b2ckeys", key, certificate, extra, encryption)
    return base64.b64encode(data).decode()


@dataclass(frozen=True)
class GraphEmulatorMaterial:
    """Keys, certificates and PFX files the emulator tests upload, made once per session."""

    rsa_key: rsa.RSAPrivateKey
    certificate: x509.Certificate  # self-signed, for rsa_key
    other_certificate: x509.Certificate  # same key pair, another certificate
    ca_key: ec.EllipticCurvePrivateKey
    ca_certificate: x509.Certificate
    leaf_certificate: x509.Certificate  # rsa_key, issued by the CA
    short_rsa_key: rsa.RSAPrivateKey  # 1024 bits
    short_certificate: x509.Certificate
    ec_key: ec.EllipticCurvePrivateKey
    ec_certificate: x509.Certificate
    expired_certificate: x509.Certificate

    @property
    def certificate_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    @property
    def private_key_pem(self) -> bytes:
        return self.rsa_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


@dataclass(frozen=True)
class GraphEmulatorApps:
    """The app registrations the emulator fixtures serve, by role."""

    writer: EmulatedApp
    reader: EmulatedApp
    powerless: EmulatedApp
    certificate: EmulatedApp
    federated_rs256: EmulatedApp
    federated_es256: EmulatedApp

    def all(self) -> list[EmulatedApp]:
        return [
            self.writer,
            self.reader,
            self.powerless,
            self.certificate,
            self.federated_rs256,
            self.federated_es256,
        ]


def _public_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


async def graph_emulator_token(
    emulator: GraphEmulator, client_id: str, secret: str, http: httpx.AsyncClient
) -> str:
    response = await http.post(
        emulator.token_url,
        data={
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": secret,
            "scope": GRAPH_SCOPE,
        },
    )
    assert response.status_code == 200, response.text
    token = response.json()["access_token"]
    assert isinstance(token, str)
    return token


@asynccontextmanager
async def graph_emulator_http(
    emulator: GraphEmulator, app: EmulatedApp | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client on the emulator's Graph base URL, with a bearer token for `app`."""
    async with httpx.AsyncClient(base_url=emulator.graph_base_url, timeout=10) as http:
        if app is not None:
            assert app.secret is not None
            token = await graph_emulator_token(emulator, app.client_id, app.secret, http)
            http.headers["Authorization"] = f"Bearer {token}"
        yield http


def build_material() -> GraphEmulatorMaterial:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    # Deliberately too short: B2C must refuse it (AADB2C90137).
    short_key = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505
    ec_key = ec.generate_private_key(ec.SECP256R1())
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = make_certificate(ca_key, common_name="contract test CA", is_ca=True, days=60)
    long_ago = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=90)
    return GraphEmulatorMaterial(
        rsa_key=rsa_key,
        certificate=make_certificate(rsa_key),
        other_certificate=make_certificate(rsa_key, common_name="another certificate"),
        ca_key=ca_key,
        ca_certificate=ca,
        leaf_certificate=make_certificate(
            rsa_key, common_name="leaf", issuer=ca, issuer_key=ca_key
        ),
        short_rsa_key=short_key,
        short_certificate=make_certificate(short_key),
        ec_key=ec_key,
        ec_certificate=make_certificate(ec_key),
        expired_certificate=make_certificate(rsa_key, not_before=long_ago, days=30),
    )


def build_apps(material: GraphEmulatorMaterial) -> GraphEmulatorApps:
    return GraphEmulatorApps(
        writer=EmulatedApp(client_id="writer-app", secret=WRITER_SECRET, roles=(WRITE_ROLE,)),
        reader=EmulatedApp(client_id="reader-app", secret="reader-secret", roles=(READ_ROLE,)),
        powerless=EmulatedApp(client_id="powerless-app", secret="powerless-secret", roles=()),
        certificate=EmulatedApp(
            client_id="certificate-app", certificate_pem=material.certificate_pem
        ),
        federated_rs256=EmulatedApp(
            client_id="federated-rs256-app",
            federated_issuer=FEDERATED_ISSUER,
            federated_subject=FEDERATED_SUBJECT,
            federated_public_key_pem=_public_pem(material.rsa_key),
        ),
        federated_es256=EmulatedApp(
            client_id="federated-es256-app",
            federated_issuer=FEDERATED_ISSUER,
            federated_subject=FEDERATED_SUBJECT,
            federated_public_key_pem=_public_pem(material.ec_key),
        ),
    )


def sign_jwt(claims: dict[str, object], key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    """A compact JWS as a Kubernetes service-account issuer would write one (RS256 or ES256)."""

    def segment(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    alg = "RS256" if isinstance(key, rsa.RSAPrivateKey) else "ES256"
    header = {"alg": alg, "typ": "JWT", "kid": "cluster-issuer-key"}
    signing_input = f"{segment(json.dumps(header).encode())}.{segment(json.dumps(claims).encode())}"
    if isinstance(key, rsa.RSAPrivateKey):
        signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    else:
        r, s = decode_dss_signature(key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return f"{signing_input}.{segment(signature)}"


def federated_claims(**overrides: object) -> dict[str, object]:
    now = int(time.time())
    claims: dict[str, object] = {
        "iss": FEDERATED_ISSUER,
        "sub": FEDERATED_SUBJECT,
        "aud": ["api://AzureADTokenExchange"],
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
    }
    claims.update(overrides)
    return claims
