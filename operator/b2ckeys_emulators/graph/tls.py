"""A throw-away certificate authority and server certificate for the Graph emulator.

azure-identity refuses non-https authorities, so the emulator speaks TLS. Clients trust it only
through `SSL_CERT_FILE` / `REQUESTS_CA_BUNDLE` pointing at `ca.pem`; verification is never
disabled. This module imports nothing but the standard library and `cryptography`, so a test
session can create the CA and export the variables before anything imports aiohttp (aiohttp
builds its verified SSL context at import time).
"""

from __future__ import annotations

import datetime
import fcntl
import ipaddress
import os
import ssl
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from b2ckeys_emulators.devpki import key_usage

CA_CERT_NAME = "ca.pem"
CA_KEY_NAME = "ca-key.pem"

# The CA is reused across runs from the same directory, so it outlives many server certificates.
_CA_LIFETIME = datetime.timedelta(days=3650)
# Server certificates are minted at every start; a week covers any test session or demo.
_SERVER_LIFETIME = datetime.timedelta(days=7)
# Tolerates a client clock slightly behind ours without a "not yet valid" failure.
_BACKDATE = datetime.timedelta(minutes=5)

SERVER_DNS_NAMES = ("localhost",)
SERVER_IP_ADDRESSES = ("127.0.0.1", "::1")


def ensure_ca(tls_dir: Path | str) -> Path:
    """Create `ca.pem` and `ca-key.pem` in `tls_dir` unless both exist; return the `ca.pem` path."""
    directory = Path(tls_dir)
    directory.mkdir(parents=True, exist_ok=True)
    cert_path = directory / CA_CERT_NAME
    key_path = directory / CA_KEY_NAME
    # Processes sharing a directory must agree on one key/certificate pair.
    with open(directory / ".ca.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (cert_path.is_file() and key_path.is_file()):
            _create_ca(cert_path, key_path)
    return cert_path


def _create_ca(cert_path: Path, key_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "b2ckeys graph-emulator test CA")])
    now = datetime.datetime.now(datetime.UTC)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + _CA_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_ca_key_usage(), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # Key first: a reader that sees ca.pem can rely on the key being there too.
    _write_atomically(key_path, key_pem, mode=0o600)
    _write_atomically(cert_path, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)


def issue_server_certificate(tls_dir: Path | str) -> tuple[bytes, bytes]:
    """A fresh server certificate from the CA in `tls_dir`: (certificate PEM, private key PEM).

    Valid for `localhost`, `127.0.0.1` and `::1`. The caller keeps the key in memory only.
    """
    directory = Path(tls_dir)
    ensure_ca(directory)
    ca_cert = x509.load_pem_x509_certificate((directory / CA_CERT_NAME).read_bytes())
    ca_key = serialization.load_pem_private_key(
        (directory / CA_KEY_NAME).read_bytes(), password=None
    )
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{directory / CA_KEY_NAME} is not the EC key ensure_ca writes")
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    san = x509.SubjectAlternativeName(
        [x509.DNSName(n) for n in SERVER_DNS_NAMES]
        + [x509.IPAddress(ipaddress.ip_address(a)) for a in SERVER_IP_ADDRESSES]
    )
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + _SERVER_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(san, critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(_server_key_usage(), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def server_ssl_context(tls_dir: Path | str) -> ssl.SSLContext:
    """A server-side SSL context with a freshly issued certificate.

    `ssl` loads certificate chains only from files, so the key lives for a moment in a private
    temporary directory that is removed before this returns.
    """
    cert_pem, key_pem = issue_server_certificate(tls_dir)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    with tempfile.TemporaryDirectory(prefix="b2ckeys-emulator-tls-") as scratch:
        cert_file = Path(scratch) / "server.pem"
        key_file = Path(scratch) / "server-key.pem"
        _write_atomically(cert_file, cert_pem, mode=0o600)
        _write_atomically(key_file, key_pem, mode=0o600)
        context.load_cert_chain(cert_file, key_file)
    return context


def _ca_key_usage() -> x509.KeyUsage:
    return key_usage(digital_signature=True, key_cert_sign=True, crl_sign=True)


def _server_key_usage() -> x509.KeyUsage:
    return key_usage(digital_signature=True)


def _write_atomically(path: Path, data: bytes, *, mode: int) -> None:
    # A reader never sees a half-written file.
    fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
