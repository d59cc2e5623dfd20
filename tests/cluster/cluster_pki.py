"""Certificates and keys for a throwaway etcd + kube-apiserver, made with `cryptography`.

Everything is generated at test time into a temporary directory and lives only as long as the
test session: a CA, serving certificates for etcd and kube-apiserver, an etcd client certificate
for kube-apiserver, an admin client certificate (group system:masters) and the service-account
token signing key pair.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from b2ckeys_emulators.devpki import key_usage

# The certificates only have to outlive one test session; a day absorbs clock skew and slow CI.
CERT_LIFETIME = datetime.timedelta(days=1)
# kube-apiserver checks serving certificates against these names when it calls itself.
APISERVER_DNS_NAMES = (
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)
LOOPBACK = ipaddress.IPv4Address("127.0.0.1")


@dataclass(frozen=True)
class CertPair:
    cert: Path
    key: Path


@dataclass(frozen=True)
class ClusterPki:
    ca_cert: Path
    etcd_server: CertPair
    etcd_client: CertPair
    apiserver_serving: CertPair
    admin: CertPair
    service_account_private_key: Path
    service_account_public_key: Path


def _new_key() -> ec.EllipticCurvePrivateKey:
    # P-256 keys are generated in microseconds (RSA takes tens of milliseconds each) and both
    # Go servers and Python's ssl accept them.
    return ec.generate_private_key(ec.SECP256R1())


def _write_private_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.touch(mode=0o600)
    path.write_bytes(pem)


def _write_cert(cert: x509.Certificate, path: Path) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attributes)


def _builder(
    subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        # Backdated a little so a server whose clock reads slightly behind accepts it.
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + CERT_LIFETIME)
    )


class _CertificateAuthority:
    def __init__(self) -> None:
        self.key = _new_key()
        self.name = _name("b2ckeys-test-ca")
        self.cert = (
            _builder(self.name, self.name, self.key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                key_usage(digital_signature=True, key_cert_sign=True, crl_sign=True), critical=True
            )
            .sign(self.key, hashes.SHA256())
        )

    def issue(
        self,
        directory: Path,
        stem: str,
        subject: x509.Name,
        *,
        server: bool,
        client: bool,
        dns_names: tuple[str, ...] = (),
    ) -> CertPair:
        key = _new_key()
        usages = []
        if server:
            usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
        if client:
            usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
        builder = (
            _builder(subject, self.name, key.public_key())
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        )
        if server:
            alt_names: list[x509.GeneralName] = [x509.IPAddress(LOOPBACK)]
            alt_names += [x509.DNSName(name) for name in dns_names]
            builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        pair = CertPair(cert=directory / f"{stem}.crt", key=directory / f"{stem}.key")
        _write_cert(cert, pair.cert)
        _write_private_key(key, pair.key)
        return pair


def generate_cluster_pki(directory: Path) -> ClusterPki:
    directory.mkdir(parents=True, exist_ok=True)
    ca = _CertificateAuthority()
    ca_cert = directory / "ca.crt"
    _write_cert(ca.cert, ca_cert)
    # The CA's private key is never written: nothing signs anything after start-up.

    service_account_key = _new_key()
    sa_private = directory / "service-account.key"
    sa_public = directory / "service-account.pub"
    _write_private_key(service_account_key, sa_private)
    sa_public.write_bytes(
        service_account_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )

    return ClusterPki(
        ca_cert=ca_cert,
        etcd_server=ca.issue(
            directory,
            "etcd-server",
            _name("etcd"),
            server=True,
            client=True,
            dns_names=("localhost",),
        ),
        etcd_client=ca.issue(
            directory,
            "etcd-client",
            _name("kube-apiserver-etcd-client"),
            server=False,
            client=True,
        ),
        apiserver_serving=ca.issue(
            directory,
            "apiserver",
            _name("kube-apiserver"),
            server=True,
            client=False,
            dns_names=APISERVER_DNS_NAMES,
        ),
        # system:masters is the group RBAC never restricts: the test's own admin identity.
        admin=ca.issue(
            directory,
            "admin",
            _name("b2ckeys-test-admin", "system:masters"),
            server=False,
            client=True,
        ),
        service_account_private_key=sa_private,
        service_account_public_key=sa_public,
    )
