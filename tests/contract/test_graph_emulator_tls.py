"""The emulator's test CA and server certificate, and how the session trusts them."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from b2ckeys_emulators.graph.server import serve_graph_emulator
from b2ckeys_emulators.graph.tls import ensure_ca, issue_server_certificate


def test_ensure_ca_creates_once_and_reuses(tmp_path: Path) -> None:
    first = ensure_ca(tmp_path)
    content = first.read_bytes()
    assert first == tmp_path / "ca.pem"
    assert (tmp_path / "ca-key.pem").stat().st_mode & 0o077 == 0
    assert ensure_ca(tmp_path).read_bytes() == content
    ca = x509.load_pem_x509_certificate(content)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_server_certificate_names_loopback_and_chains_to_the_ca(tmp_path: Path) -> None:
    ca = x509.load_pem_x509_certificate(ensure_ca(tmp_path).read_bytes())
    cert_pem, key_pem = issue_server_certificate(tmp_path)
    server = x509.load_pem_x509_certificate(cert_pem)
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert set(san.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    }
    eku = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku
    server.verify_directly_issued_by(ca)
    assert b"PRIVATE KEY" in key_pem
    assert not list(tmp_path.glob("server*")), "the server key never lands in the CA folder"


def test_emulator_tls_imports_no_http_stack() -> None:
    # The session CA is made before aiohttp is imported; this module must not import it.
    code = (
        "import sys, b2ckeys_emulators.graph.tls; "
        "bad = [m for m in ('aiohttp', 'httpx', 'azure') if m in sys.modules]; "
        "sys.exit(', '.join(bad) or None)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_session_trusts_the_emulator_ca(emulator_ca_dir: Path) -> None:
    assert os.environ["SSL_CERT_FILE"] == str(emulator_ca_dir / "ca.pem")
    assert os.environ["REQUESTS_CA_BUNDLE"] == str(emulator_ca_dir / "ca.pem")


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
async def test_emulator_serves_verified_tls(emulator_ca_dir: Path, host: str) -> None:
    async with serve_graph_emulator(tls_dir=emulator_ca_dir, host=host) as emu:
        assert emu.ca_path == emulator_ca_dir / "ca.pem"
        async with httpx.AsyncClient(timeout=10) as http:
            response = await http.get(f"{emu.url}/_emulator/keysets")
    assert response.status_code == 200


async def test_a_client_without_the_ca_is_refused(tmp_path: Path) -> None:
    # A CA of its own, and a client trusting only the public roots: verification must fail.
    async with (
        serve_graph_emulator(tls_dir=tmp_path) as emu,
        httpx.AsyncClient(timeout=10, trust_env=False) as http,
    ):
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await http.get(f"{emu.url}/_emulator/keysets")
