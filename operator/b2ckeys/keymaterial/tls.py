"""The `kubernetes.io/tls` Secret: tls.crt, tls.key and an optional ca.crt."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from b2ckeys.keymaterial.certificates import certificates_in, with_key
from b2ckeys.keymaterial.errors import require_field, sized
from b2ckeys.keymaterial.keys import private_key_from_pem, validated_private_key
from b2ckeys.keymaterial.limits import (
    MAX_CA_BUNDLE_BYTES,
    MAX_CA_CERTIFICATES,
    MAX_CERTIFICATE_BYTES,
    MAX_CHAIN_CERTIFICATES,
    MAX_PRIVATE_KEY_BYTES,
)
from b2ckeys.keymaterial.values import CertificateWithKey, Use


def load_tls_secret(
    data: Mapping[str, bytes], *, use: Use, now: int, allow_not_yet_valid: bool = False
) -> CertificateWithKey:
    """Validate a `kubernetes.io/tls` Secret (as cert-manager writes it).

    `tls.crt` holds the leaf and any intermediates in any order; `tls.key` is a PKCS#1 or PKCS#8
    PEM RSA key; an optional `ca.crt` supplies issuers the chain still lacks (certificates in it
    that are not on the leaf's path are ignored, as it may be a trust bundle).
    """
    crt_raw = sized(require_field(data, "tls.crt"), "tls.crt", MAX_CERTIFICATE_BYTES)
    key_raw = sized(require_field(data, "tls.key"), "tls.key", MAX_PRIVATE_KEY_BYTES)
    ca_raw = data.get("ca.crt")
    if ca_raw is not None:
        sized(ca_raw, "ca.crt", MAX_CA_BUNDLE_BYTES)

    unchecked_key, key_der = private_key_from_pem(key_raw, "tls.key")
    certs = certificates_in(crt_raw, "tls.crt", MAX_CHAIN_CERTIFICATES)
    ca_certs = (
        certificates_in(ca_raw, "ca.crt", MAX_CA_CERTIFICATES)
        if ca_raw and not ca_raw.isspace()
        else []
    )
    material = with_key(
        unchecked_key,
        "tls.key",
        certs,
        "tls.crt",
        ca_certs,
        use=use,
        now=now,
        allow_not_yet_valid=allow_not_yet_valid,
    )
    return replace(material, _private_key=validated_private_key(key_der, "tls.key"))
