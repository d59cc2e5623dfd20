"""Helpers for the MsGraphKeySetClient contract tests: connections, clients and log readers.

The client under test is always the production one (`MsGraphKeySetClient.from_connection`): real
msgraph-beta-sdk builders, kiota middleware and an azure-identity credential, over loopback HTTPS
to the Graph emulator. Only the connection settings differ between tests.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from graph_emulator_support import GraphEmulatorMaterial

from b2ckeys.formats import b64url
from b2ckeys.graph.client import GraphConnection
from b2ckeys.graph.msgraph import MsGraphKeySetClient
from b2ckeys.secret import SecretStr
from b2ckeys_emulators.devpki import service_account_token
from b2ckeys_emulators.graph.identity import FEDERATED_AUDIENCE
from b2ckeys_emulators.graph.server import EmulatedApp, GraphEmulator, RequestRecord


def connection(emulator: GraphEmulator, app: EmulatedApp, **overrides: Any) -> GraphConnection:
    """Settings for `app` against `emulator`, authenticating with the app's client secret."""
    assert app.secret is not None, f"{app.client_id} has no secret; pass a credential override"
    conn = GraphConnection(
        tenant_id=emulator.tenant_id,
        client_id=app.client_id,
        client_secret=SecretStr(app.secret),
        authority_host=emulator.authority_host,
        base_url=emulator.graph_base_url,
    )
    return replace(conn, **overrides)


@asynccontextmanager
async def open_client(conn: GraphConnection) -> AsyncIterator[MsGraphKeySetClient]:
    client = MsGraphKeySetClient.from_connection(conn)
    try:
        yield client
    finally:
        await client.aclose()


def graph_calls(
    emulator: GraphEmulator, method: str | None = None, path: str = ""
) -> list[RequestRecord]:
    """The emulator's log of Graph requests (not token requests) matching method and path regex."""
    return [
        record
        for record in emulator.state.requests()
        if record.path.startswith("/beta/")
        and (method is None or record.method == method)
        and re.search(path, record.path)
    ]


def token_calls(emulator: GraphEmulator) -> list[RequestRecord]:
    return [r for r in emulator.state.requests() if r.path.endswith("/oauth2/v2.0/token")]


def write_certificate_credential(directory: Path, material: GraphEmulatorMaterial) -> Path:
    """PEM with the private key and certificate, as CertificateCredential reads it (temp dir)."""
    path = directory / "client-certificate.pem"
    path.write_bytes(material.private_key_pem + material.certificate_pem)
    path.chmod(0o600)
    return path


def federated_token(
    key: rsa.RSAPrivateKey, *, issuer: str, subject: str, lifetime: int = 600
) -> str:
    """A projected service account token as the cluster's OIDC issuer would sign it (RS256)."""
    return service_account_token(
        key, issuer=issuer, subject=subject, audience=FEDERATED_AUDIENCE, lifetime=lifetime
    )


def certificate_thumbprint(material: GraphEmulatorMaterial) -> str:
    """x5t of the material's self-signed certificate: base64url SHA-1 of its DER."""
    der = material.certificate.public_bytes(serialization.Encoding.DER)
    digest = hashes.Hash(hashes.SHA1())  # noqa: S303 - x5t is defined as SHA-1
    digest.update(der)
    return b64url(digest.finalize())
