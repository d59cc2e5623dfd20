"""A tiny certificate authority for the demo and the tests: issues what cert-manager would.

Keys and certificates are made at run time, in memory; nothing here is ever committed.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from functools import lru_cache

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from b2ckeys.formats import b64url


@lru_cache(maxsize=16)
def rsa_key(bits: int = 2048, slot: int = 0) -> rsa.RSAPrivateKey:
    """An RSA key, cached per (bits, slot): generation costs ~50-500 ms and tests need many."""
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def key_usage(
    *,
    digital_signature: bool = False,
    key_encipherment: bool = False,
    key_cert_sign: bool = False,
    crl_sign: bool = False,
) -> x509.KeyUsage:
    """A KeyUsage extension naming only the usages given (cryptography wants all nine)."""
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=key_encipherment,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


@dataclass(frozen=True)
class Issued:
    certificate: x509.Certificate
    key: rsa.RSAPrivateKey

    @property
    def cert_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        """PKCS#8, as cert-manager writes `tls.key` by default."""
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


@dataclass(frozen=True)
class DevCA:
    root: Issued

    @classmethod
    def create(cls, name: str = "b2ckeys dev CA", *, slot: int = 100) -> DevCA:
        key = rsa_key(2048, slot)
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(_name(name))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                key_usage(digital_signature=True, key_cert_sign=True, crl_sign=True), critical=True
            )
            .sign(key, hashes.SHA256())
        )
        return cls(Issued(cert, key))

    def issue(
        self,
        common_name: str,
        *,
        key: rsa.RSAPrivateKey | None = None,
        not_before: dt.datetime | None = None,
        days: int = 90,
        usage: str = "sig",
    ) -> Issued:
        """A leaf like cert-manager issues: `usages: [digital signature]` (or key encipherment)."""
        key = key or rsa_key(2048, 1)
        start = not_before or dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(self.root.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                key_usage(digital_signature=usage == "sig", key_encipherment=usage == "enc"),
                critical=True,
            )
            .sign(self.root.key, hashes.SHA256())
        )
        return Issued(cert, key)

    def tls_secret_data(self, leaf: Issued) -> dict[str, bytes]:
        """A `kubernetes.io/tls` Secret's data as cert-manager writes it."""
        return {"tls.crt": leaf.cert_pem, "tls.key": leaf.key_pem, "ca.crt": self.root.cert_pem}


def service_account_token(
    key: rsa.RSAPrivateKey,
    *,
    issuer: str,
    subject: str,
    audience: str,
    lifetime: int = 600,
    now: int | None = None,
) -> str:
    """A projected service account token as a cluster's OIDC issuer signs it (RS256): what
    workload identity hands the operator, and what Entra accepts as a federated credential."""
    issued = int(dt.datetime.now(dt.UTC).timestamp()) if now is None else now
    header = {"alg": "RS256", "typ": "JWT", "kid": "cluster-signing-key"}
    claims = {
        "iss": issuer,
        "sub": subject,
        "aud": [audience],
        "iat": issued,
        "nbf": issued,
        "exp": issued + lifetime,
    }
    signing_input = ".".join(
        b64url(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims)
    )
    signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{b64url(signature)}"
