"""Cost of preparing key material: loading each source kind, TLS -> PKCS#12, fingerprints.

Prints the median and p90 wall time of each operation, one line each. Keys and certificates are
generated at start (not timed). Run: `.venv/bin/python benchmarks/bench_keymaterial.py`.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import statistics
import time
from collections.abc import Callable
from functools import partial

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from b2ckeys.keymaterial import (
    Pkcs12Upload,
    fingerprint_matches,
    load_certificate,
    load_pkcs12,
    load_string_secret,
    load_tls_secret,
    secret_fingerprint,
    to_pkcs12,
)
from b2ckeys.secret import SecretStr

NOW = int(time.time())


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(
    cn: str, key: rsa.RSAPrivateKey, issuer: tuple[x509.Name, rsa.RSAPrivateKey] | None, ca: bool
) -> x509.Certificate:
    start = dt.datetime.fromtimestamp(NOW - 3600, dt.UTC)
    issuer_name, signer = issuer if issuer else (_name(cn), key)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=90))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(signer, hashes.SHA256())
    )


def cert_manager_secret(leaf_bits: int) -> tuple[dict[str, bytes], bytes]:
    """A 3-certificate chain as a TLS Secret, and the same as an AES keystore.p12."""
    root_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    inter_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    leaf_key = rsa.generate_private_key(public_exponent=65537, key_size=leaf_bits)
    root = _cert("bench root", root_key, None, True)
    inter = _cert("bench intermediate", inter_key, (root.subject, root_key), True)
    leaf = _cert("bench leaf", leaf_key, (inter.subject, inter_key), False)

    def pem(c: x509.Certificate) -> bytes:
        return c.public_bytes(serialization.Encoding.PEM)

    secret = {
        "tls.crt": pem(leaf) + pem(inter),
        "tls.key": leaf_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        "ca.crt": pem(root),
    }
    keystore = pkcs12.serialize_key_and_certificates(
        b"bench", leaf_key, leaf, [inter, root], serialization.BestAvailableEncryption(b"pw")
    )
    return secret, keystore


def convert(secret: dict[str, bytes]) -> Pkcs12Upload:
    """What the operator does before uploadPkcs12: validate the Secret, build the PFX."""
    return to_pkcs12(load_tls_secret(secret, use="sig", now=NOW))


def measure(label: str, action: Callable[[], object], runs: int) -> None:
    action()  # warm-up: first-call costs (imports, OpenSSL init) are not what is measured
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        action()
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    p90 = samples[min(len(samples) - 1, round(0.9 * (len(samples) - 1)))]
    print(
        f"{label:<52} median {statistics.median(samples):8.2f} ms   p90 {p90:8.2f} ms  (n={runs})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    # 30 runs keep the whole script under a minute on 2 shared cores, yet steady medians.
    parser.add_argument("--runs", type=int, default=30)
    runs = parser.parse_args().runs

    for bits in (2048, 4096):
        secret, keystore = cert_manager_secret(bits)
        material = load_tls_secret(secret, use="sig", now=NOW)
        tls = partial(load_tls_secret, secret, use="sig", now=NOW)
        measure(f"TLS Secret -> CertificateWithKey ({bits}-bit leaf)", tls, runs)
        measure(f"CertificateWithKey -> PKCS#12 3DES ({bits})", partial(to_pkcs12, material), runs)
        measure(
            f"TLS Secret -> PKCS#12 upload, end to end ({bits})", partial(convert, secret), runs
        )
        p12 = partial(load_pkcs12, keystore, SecretStr("pw"), use="sig", now=NOW)
        measure(f"keystore.p12 (AES) -> CertificateWithKey ({bits})", p12, runs)
        cert = partial(load_certificate, secret["tls.crt"], use="sig", now=NOW)
        measure(f"certificate PEM chain -> CertificateInfo ({bits})", cert, runs)

    raw = b"facebook-app-secret-0123456789abcdef\n"
    measure("string secret -> SecretStr", lambda: load_string_secret(raw, field="k"), runs)
    value = SecretStr("facebook-app-secret-0123456789abcdef")
    fingerprint = secret_fingerprint(value, pepper=b"pepper")
    measure(
        "secret_fingerprint (scrypt N=2^14 r=8 p=1)",
        lambda: secret_fingerprint(value, pepper=b"pepper"),
        runs,
    )
    measure(
        "fingerprint_matches",
        lambda: fingerprint_matches(value, fingerprint, pepper=b"pepper"),
        runs,
    )
    assert fingerprint_matches(value, fingerprint, pepper=b"pepper")
    upload = to_pkcs12(material)
    print(f"PFX size for the last chain: {len(base64.b64decode(upload.pfx_b64.reveal()))} bytes")


if __name__ == "__main__":
    main()
