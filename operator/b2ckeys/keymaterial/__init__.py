"""Key material: parse, validate and convert what people put in Secrets (pure; no I/O).

Every key b2ckeys uploads comes from a Secret that a person or another tool wrote, so all input
here is untrusted and secret. Each entry point runs an ordered chain of small checks (presence,
size, parse, key type and size, key/leaf match, chain, validity, key usage) and stops at the
first failure with a `KeyMaterialError` that carries a stable `reason` and a message naming the
Secret key. Messages, reprs and exception chains never carry key material, passwords or secret
values: library exceptions are swallowed where they happen and a fresh error is raised outside
the `except` block, so not even `__context__` points back at them.

Loading an RSA private key validates it (primality of p and q). That costs ~30 ms at 2048 bits
and ~0.2 s at 4096 bits on one core, so callers on an event loop should run these functions in a
worker thread.

Import from this package; its modules, each one idea, are:

- `tls`: `load_tls_secret`, a kubernetes.io/tls Secret (tls.crt, tls.key, ca.crt).
- `pkcs12`: `load_pkcs12` opens a user's PFX; `to_pkcs12` builds the one B2C accepts.
- `certificates`: `load_certificate`; parsing certificates, finding the leaf, ordering the
  chain, checking the leaf's validity and key usage, pairing a private key with its leaf.
- `keys`: the RSA private key in PEM, the key types and sizes B2C takes, key validation.
- `pem`: PEM block framing.
- `string_secret`: `load_string_secret` for uploadSecret.
- `fingerprint`: a salted, memory-hard fingerprint of a string secret for status.
- `der`: a bounded BER/DER reader and the PFX layout facts `pkcs12` needs.
- `errors`: `KeyMaterialError` and its `Reason`s, `require_field` and the size checks.
- `limits`: every size and key-length bound, with why.
- `values`: what the entry points return (`CertificateInfo`, `CertificateWithKey`) and `Use`.
"""

from b2ckeys.keymaterial.certificates import load_certificate
from b2ckeys.keymaterial.errors import KeyMaterialError, Reason, require_field
from b2ckeys.keymaterial.fingerprint import fingerprint_matches, secret_fingerprint
from b2ckeys.keymaterial.limits import (
    MAX_CA_BUNDLE_BYTES,
    MAX_CERTIFICATE_BYTES,
    MAX_PASSWORD_BYTES,
    MAX_PKCS12_BYTES,
    MAX_PRIVATE_KEY_BYTES,
    MAX_RSA_BITS,
    MAX_STRING_SECRET_BYTES,
    MIN_RSA_BITS,
)
from b2ckeys.keymaterial.pkcs12 import Pkcs12Upload, load_pkcs12, to_pkcs12
from b2ckeys.keymaterial.string_secret import load_string_secret
from b2ckeys.keymaterial.tls import load_tls_secret
from b2ckeys.keymaterial.values import CertificateInfo, CertificateWithKey, Use

__all__ = [
    "MAX_CA_BUNDLE_BYTES",
    "MAX_CERTIFICATE_BYTES",
    "MAX_PASSWORD_BYTES",
    "MAX_PKCS12_BYTES",
    "MAX_PRIVATE_KEY_BYTES",
    "MAX_RSA_BITS",
    "MAX_STRING_SECRET_BYTES",
    "MIN_RSA_BITS",
    "CertificateInfo",
    "CertificateWithKey",
    "KeyMaterialError",
    "Pkcs12Upload",
    "Reason",
    "Use",
    "fingerprint_matches",
    "load_certificate",
    "load_pkcs12",
    "load_string_secret",
    "load_tls_secret",
    "require_field",
    "secret_fingerprint",
    "to_pkcs12",
]
