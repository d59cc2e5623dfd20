"""Table-driven tests of every accepted shape and every refusal of b2ckeys.keymaterial.

Keys and certificates are generated at test time (see keymaterial_pki); each RSA key is made
once per session and certificates are built from them.
"""

from __future__ import annotations

import base64
import hashlib
import pickle
import string
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cache

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from keymaterial_pki import (
    CA_USAGE,
    DAY,
    NOW,
    CertSpec,
    Pki,
    build_cert,
    der,
    ec_key,
    ed25519_key,
    key_pem,
    make_pki,
    pem,
    pfx,
    rsa_key,
    shuffled,
    tls_secret,
    with_leaf,
    x5t,
)

from b2ckeys import keymaterial
from b2ckeys.keymaterial import (
    CertificateWithKey,
    KeyMaterialError,
    Use,
    load_certificate,
    load_pkcs12,
    load_string_secret,
    load_tls_secret,
    require_field,
)
from b2ckeys.keymaterial.limits import MAX_CHAIN_CERTIFICATES
from b2ckeys.secret import SecretStr


@cache
def base() -> Pki:
    return make_pki()


@cache
def pki_4096() -> Pki:
    return make_pki(leaf_bits=4096)


def leaf_with(modify: Callable[[CertSpec], CertSpec]) -> Pki:
    return with_leaf(base(), modify)


def unrelated_root() -> CertSpec:
    return CertSpec("someone else's root", rsa_key("stranger"), is_ca=True, key_usage=CA_USAGE)


def assert_refused(
    error: KeyMaterialError, reason: str, field: str | None, *, names_field: bool = True
) -> None:
    assert (error.reason, error.field) == (reason, field)
    if names_field and field is not None:
        assert repr(field) in str(error), "the message names the Secret key"
    assert str(error).endswith("."), "one sentence"
    assert error.__cause__ is None
    assert error.__context__ is None


# --- TLS Secrets: accepted ---------------------------------------------------------------------


@dataclass(frozen=True)
class TlsAccepted:
    id: str
    data: Callable[[], dict[str, bytes]]
    chain: Callable[[Pki], list[str]]  # expected x5t order, leaf first
    pki: Callable[[], Pki] = base
    use: Use = "sig"
    allow_not_yet_valid: bool = False


def _full(p: Pki) -> list[str]:
    return [x5t(p.leaf), x5t(p.intermediate), x5t(p.root)]


def _without_root(p: Pki) -> list[str]:
    return [x5t(p.leaf), x5t(p.intermediate)]


def _with_text_and_crlf() -> dict[str, bytes]:
    data = tls_secret(base())
    crt = b"Bag Attributes\n    friendlyName: leaf\nsubject=CN=x\n" + data["tls.crt"]
    return {**data, "tls.crt": crt.replace(b"\n", b"\r\n")}


def _ca_bundle() -> dict[str, bytes]:
    stranger = build_cert(unrelated_root(), None)
    return {**tls_secret(base()), "ca.crt": pem(stranger) + pem(base().root)}


def _shuffled(seed: int) -> Callable[[], dict[str, bytes]]:
    def data() -> dict[str, bytes]:
        chain = shuffled([base().leaf, base().intermediate, base().root], seed)
        return tls_secret(base(), chain=chain, with_ca=False)

    return data


def _usage_only(*flags: str) -> Pki:
    return leaf_with(lambda s: replace(s, key_usage=frozenset(flags)))


TLS_ACCEPTED = [
    TlsAccepted("cert-manager shape, PKCS#8", lambda: tls_secret(base()), _full),
    TlsAccepted("PKCS#1 key", lambda: tls_secret(base(), key_format="pkcs1"), _full),
    TlsAccepted(
        "intermediate before leaf",
        lambda: tls_secret(base(), chain=[base().intermediate, base().leaf]),
        _full,
    ),
    *[
        TlsAccepted(f"whole chain shuffled (seed {seed}), no ca.crt", _shuffled(seed), _full)
        for seed in range(4)
    ],
    TlsAccepted("no ca.crt", lambda: tls_secret(base(), with_ca=False), _without_root),
    TlsAccepted("empty ca.crt", lambda: {**tls_secret(base()), "ca.crt": b""}, _without_root),
    TlsAccepted("ca.crt is a trust bundle", _ca_bundle, _full),
    TlsAccepted(
        "root in tls.crt and in ca.crt",
        lambda: tls_secret(base(), chain=[base().leaf, base().intermediate, base().root]),
        _full,
    ),
    TlsAccepted(
        "leaf repeated",
        lambda: tls_secret(base(), chain=[base().leaf, base().intermediate, base().leaf]),
        _full,
    ),
    TlsAccepted(
        "intermediate only in ca.crt",
        lambda: {
            **tls_secret(base(), chain=[base().leaf]),
            "ca.crt": pem(base().root) + pem(base().intermediate),
        },
        _full,
    ),
    TlsAccepted("text around blocks, CRLF", _with_text_and_crlf, _full),
    TlsAccepted(
        "self-signed leaf alone",
        lambda: {
            "tls.crt": pem(build_cert(base().specs["leaf"], None)),
            "tls.key": key_pem(base().leaf_key),
        },
        lambda p: [x5t(build_cert(p.specs["leaf"], None))],
    ),
    TlsAccepted(
        "no key usage extension, use=enc",
        lambda: tls_secret(leaf_with(lambda s: replace(s, key_usage=None))),
        lambda p: _full(leaf_with(lambda s: replace(s, key_usage=None))),
        use="enc",
    ),
    TlsAccepted(
        "keyEncipherment only, use=enc",
        lambda: tls_secret(
            leaf_with(lambda s: replace(s, key_usage=frozenset({"key_encipherment"})))
        ),
        lambda p: _full(leaf_with(lambda s: replace(s, key_usage=frozenset({"key_encipherment"})))),
        use="enc",
    ),
    TlsAccepted(
        "not yet valid, allowed for staged rotation",
        lambda: tls_secret(leaf_with(lambda s: replace(s, not_before=NOW + DAY))),
        lambda p: _full(leaf_with(lambda s: replace(s, not_before=NOW + DAY))),
        allow_not_yet_valid=True,
    ),
    TlsAccepted("4096-bit leaf", lambda: tls_secret(pki_4096()), _full, pki=pki_4096),
]


@pytest.mark.parametrize("case", TLS_ACCEPTED, ids=lambda c: c.id)
def test_tls_secret_accepted(case: TlsAccepted) -> None:
    p = case.pki()
    material = load_tls_secret(
        case.data(), use=case.use, now=NOW, allow_not_yet_valid=case.allow_not_yet_valid
    )
    assert [c.x5t for c in material.chain] == case.chain(p)
    assert material.leaf == material.chain[0]
    assert isinstance(p.leaf_key, rsa.RSAPrivateKey)
    assert material.leaf.key_size == p.leaf_key.key_size


def test_certificate_info_carries_graph_forms() -> None:
    p = base()
    info = load_tls_secret(tls_secret(p), use="sig", now=NOW).leaf
    leaf_der = der(p.leaf)
    assert base64.b64decode(info.der_b64) == leaf_der
    assert info.x5t == x5t(p.leaf)
    assert set(info.x5t) <= set(string.ascii_letters + string.digits + "-_")
    sha256 = base64.urlsafe_b64encode(hashlib.sha256(leaf_der).digest()).rstrip(b"=").decode()
    assert info.x5t_s256 == sha256
    spec = p.specs["leaf"]
    assert (info.not_before, info.not_after) == (spec.not_before, spec.not_after)
    assert info.subject == "CN=token-signing.example"
    assert info.issuer == "CN=b2ckeys test intermediate"
    assert int(info.serial, 16) == p.leaf.serial_number
    assert info.key_size == 2048


def test_boundaries_of_validity_are_inclusive() -> None:
    spec = base().specs["leaf"]
    data = tls_secret(base())
    load_tls_secret(data, use="sig", now=spec.not_before)
    load_tls_secret(data, use="sig", now=spec.not_after)
    with pytest.raises(KeyMaterialError) as late:
        load_tls_secret(data, use="sig", now=spec.not_after + 1)
    assert late.value.reason == "Expired"
    with pytest.raises(KeyMaterialError) as early:
        load_tls_secret(data, use="sig", now=spec.not_before - 1)
    assert early.value.reason == "NotYetValid"


def test_cert_manager_temporary_certificate_is_refused_as_a_placeholder() -> None:
    # cert-manager's issue-temporary-certificate: the Certificate's own key, signed by a
    # throwaway CA named cert-manager.local that never reaches the Secret.
    throwaway = CertSpec("cert-manager.local", ec_key("throwaway"), is_ca=True, key_usage=CA_USAGE)
    leaf = CertSpec("token-signing.example", rsa_key("leaf"))
    placeholder = build_cert(leaf, (throwaway, build_cert(throwaway, None)))
    data = {"tls.crt": pem(placeholder), "tls.key": key_pem(leaf.key)}
    with pytest.raises(KeyMaterialError) as refused:
        load_tls_secret(data, use="sig", now=NOW)
    assert refused.value.reason == "TemporaryCertificate"
    assert "cert-manager's temporary placeholder" in str(refused.value)
    # A self-signed certificate that happens to carry the name is the user's own: accepted.
    own = CertSpec("cert-manager.local", rsa_key("leaf"))
    load_tls_secret(
        {"tls.crt": pem(build_cert(own, None)), "tls.key": key_pem(own.key)}, use="sig", now=NOW
    )


# --- TLS Secrets: refused ----------------------------------------------------------------------


@dataclass(frozen=True)
class Refused:
    id: str
    data: Callable[[], dict[str, bytes]]
    reason: str
    field: str
    use: Use = "sig"


def _pem_block(label: bytes, body: bytes) -> bytes:
    return b"-----BEGIN " + label + b"-----\n" + body + b"\n-----END " + label + b"-----\n"


def _drop(key: str) -> Callable[[], dict[str, bytes]]:
    return lambda: {k: v for k, v in tls_secret(base()).items() if k != key}


def _set(key: str, value: Callable[[], bytes]) -> Callable[[], dict[str, bytes]]:
    return lambda: {**tls_secret(base()), key: value()}


def _impostor(name: str) -> bytes:
    """A certificate that claims the intermediate's name but is signed by a stranger."""
    impostor = CertSpec(name, rsa_key("stranger"), is_ca=True, key_usage=CA_USAGE)
    return pem(build_cert(impostor, (unrelated_root(), build_cert(unrelated_root(), None))))


def _encrypted(fmt: serialization.PrivateFormat) -> bytes:
    return base().leaf_key.private_bytes(
        serialization.Encoding.PEM, fmt, serialization.BestAvailableEncryption(b"key-password")
    )


def _inconsistent_key() -> bytes:
    """The leaf's public numbers with a wrong private exponent: only validation can tell."""
    key = base().leaf_key
    assert isinstance(key, rsa.RSAPrivateKey)
    n = key.private_numbers()
    broken = rsa.RSAPrivateNumbers(n.p, n.q, n.d + 2, n.dmp1, n.dmq1, n.iqmp, n.public_numbers)
    return key_pem(broken.private_key(unsafe_skip_rsa_key_validation=True))


def _renewed_leaf_twice() -> bytes:
    renewed = leaf_with(lambda s: replace(s, serial=4242, not_before=NOW - 2 * DAY)).leaf
    return pem(base().leaf) + pem(renewed) + pem(base().intermediate)


def _ec_pki() -> dict[str, bytes]:
    return tls_secret(leaf_with(lambda s: replace(s, key=ec_key("leaf"))))


def _ed25519_key_only() -> dict[str, bytes]:
    key = ed25519_key("leaf").private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return {**tls_secret(base()), "tls.key": key}


def _usage(*flags: str) -> Callable[[], dict[str, bytes]]:
    return lambda: tls_secret(leaf_with(lambda s: replace(s, key_usage=frozenset(flags))))


TLS_REFUSED = [
    Refused("tls.crt missing", _drop("tls.crt"), "Missing", "tls.crt"),
    Refused("tls.key missing", _drop("tls.key"), "Missing", "tls.key"),
    Refused("tls.key empty", _set("tls.key", lambda: b""), "Empty", "tls.key"),
    Refused("tls.crt only whitespace", _set("tls.crt", lambda: b" \n\t\n"), "Empty", "tls.crt"),
    Refused(
        "tls.crt over its limit",
        _set("tls.crt", lambda: b"#" * keymaterial.MAX_CERTIFICATE_BYTES + pem(base().leaf)),
        "TooLarge",
        "tls.crt",
    ),
    Refused(
        "tls.key over its limit",
        _set(
            "tls.key", lambda: b"#" * keymaterial.MAX_PRIVATE_KEY_BYTES + key_pem(base().leaf_key)
        ),
        "TooLarge",
        "tls.key",
    ),
    Refused(
        "ca.crt over its limit",
        _set("ca.crt", lambda: b"#" * (keymaterial.MAX_CA_BUNDLE_BYTES + 1)),
        "TooLarge",
        "ca.crt",
    ),
    Refused(
        "too many PEM blocks in tls.crt",
        _set("tls.crt", lambda: pem(base().leaf) * (MAX_CHAIN_CERTIFICATES + 1)),
        "TooLarge",
        "tls.crt",
    ),
    Refused(
        "tls.crt garbage", _set("tls.crt", lambda: b"not a certificate"), "Malformed", "tls.crt"
    ),
    Refused("tls.key garbage", _set("tls.key", lambda: b"hunter2"), "Malformed", "tls.key"),
    Refused(
        "tls.key is DER, not PEM",
        _set(
            "tls.key",
            lambda: base().leaf_key.private_bytes(
                serialization.Encoding.DER,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        ),
        "Malformed",
        "tls.key",
    ),
    Refused(
        "certificate body not base64",
        _set("tls.crt", lambda: _pem_block(b"CERTIFICATE", b"!!!!")),
        "Malformed",
        "tls.crt",
    ),
    Refused(
        "certificate body is not X.509",
        _set(
            "tls.crt", lambda: b"-----BEGIN CERTIFICATE-----\nMAMCAQE=\n-----END CERTIFICATE-----\n"
        ),
        "Malformed",
        "tls.crt",
    ),
    Refused(
        "BEGIN without END",
        _set("tls.crt", lambda: pem(base().leaf).replace(b"-----END CERTIFICATE-----", b"")),
        "Malformed",
        "tls.crt",
    ),
    Refused(
        "key body is not a key",
        _set(
            # Two bytes of DER, not a key; the header is split so no scanner takes it for one.
            "tls.key",
            lambda: b"-----BEGIN " + b"PRIVATE KEY-----\nMAMCAQE=\n-----END PRIVATE KEY-----\n",
        ),
        "Malformed",
        "tls.key",
    ),
    Refused(
        "tls.key holds only a certificate",
        _set("tls.key", lambda: pem(base().leaf)),
        "NoPrivateKey",
        "tls.key",
    ),
    Refused("EC key", _ec_pki, "UnsupportedKeyType", "tls.key"),
    Refused(
        "EC key in SEC1 form",
        _set(
            "tls.key",
            lambda: ec_key("leaf").private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            ),
        ),
        "UnsupportedKeyType",
        "tls.key",
    ),
    Refused("Ed25519 key", _ed25519_key_only, "UnsupportedKeyType", "tls.key"),
    Refused(
        "1024-bit RSA",
        lambda: tls_secret(leaf_with(lambda s: replace(s, key=rsa_key("small", 1024)))),
        "KeyTooSmall",
        "tls.key",
    ),
    Refused(
        "RSA over the upper bound",
        _set("tls.key", lambda: key_pem(rsa_key("huge", keymaterial.MAX_RSA_BITS + 8))),
        "KeyTooLarge",
        "tls.key",
    ),
    Refused("inconsistent RSA key", _set("tls.key", _inconsistent_key), "Malformed", "tls.key"),
    Refused(
        "key of another certificate",
        _set("tls.key", lambda: key_pem(rsa_key("stranger"))),
        "KeyMismatch",
        "tls.key",
    ),
    Refused(
        "two private keys",
        _set("tls.key", lambda: key_pem(base().leaf_key) + key_pem(rsa_key("stranger"))),
        "MultiplePrivateKeys",
        "tls.key",
    ),
    Refused(
        "encrypted PKCS#8 key",
        _set("tls.key", lambda: _encrypted(serialization.PrivateFormat.PKCS8)),
        "EncryptedKey",
        "tls.key",
    ),
    Refused(
        "encrypted PKCS#1 key (PEM headers)",
        _set("tls.key", lambda: _encrypted(serialization.PrivateFormat.TraditionalOpenSSL)),
        "EncryptedKey",
        "tls.key",
    ),
    Refused(
        "private key in tls.crt",
        _set("tls.crt", lambda: pem(base().leaf) + key_pem(base().leaf_key)),
        "UnexpectedPrivateKey",
        "tls.crt",
    ),
    Refused(
        "unrelated certificate in tls.crt",
        _set(
            "tls.crt",
            lambda: pem(base().leaf) + pem(base().intermediate) + _impostor("x"),
        ),
        "BrokenChain",
        "tls.crt",
    ),
    Refused(
        "intermediate with the right name but the wrong signer",
        _set("tls.crt", lambda: pem(base().leaf) + _impostor("b2ckeys test intermediate")),
        "BrokenChain",
        "tls.crt",
    ),
    Refused(
        "two certificates for the key",
        _set("tls.crt", _renewed_leaf_twice),
        "BrokenChain",
        "tls.crt",
    ),
    Refused(
        "expired",
        lambda: tls_secret(leaf_with(lambda s: replace(s, not_after=NOW - 1))),
        "Expired",
        "tls.crt",
    ),
    Refused(
        "not yet valid",
        lambda: tls_secret(leaf_with(lambda s: replace(s, not_before=NOW + DAY))),
        "NotYetValid",
        "tls.crt",
    ),
    Refused(
        "sig without digitalSignature", _usage("key_encipherment"), "KeyUsageMismatch", "tls.crt"
    ),
    Refused(
        "enc without keyEncipherment",
        _usage("digital_signature"),
        "KeyUsageMismatch",
        "tls.crt",
        use="enc",
    ),
]


@pytest.mark.parametrize("case", TLS_REFUSED, ids=lambda c: c.id)
def test_tls_secret_refused(case: Refused) -> None:
    with pytest.raises(KeyMaterialError) as caught:
        load_tls_secret(case.data(), use=case.use, now=NOW)
    assert_refused(caught.value, case.reason, case.field)


# --- PKCS#12 -----------------------------------------------------------------------------------


def _pfx_3des(password: bytes) -> bytes:
    p = base()
    encryption = (
        serialization.PrivateFormat.PKCS12.encryption_builder()
        .key_cert_algorithm(serialization.pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC)
        .build(password)
    )
    assert isinstance(p.leaf_key, rsa.RSAPrivateKey)
    return serialization.pkcs12.serialize_key_and_certificates(
        b"x", p.leaf_key, p.leaf, [p.intermediate], encryption
    )


@dataclass(frozen=True)
class Pkcs12Case:
    id: str
    pfx: Callable[[], bytes]
    password: str | None = "keystore-password"


def _cert_manager_keystore() -> bytes:
    p = base()
    return pfx(p.leaf_key, p.leaf, [p.intermediate, p.root])


def _chain_shuffled() -> bytes:
    p = base()
    return pfx(p.leaf_key, p.leaf, [p.root, p.intermediate])


def _unprotected() -> bytes:
    p = base()
    return pfx(p.leaf_key, p.leaf, [p.intermediate], password=None)


PKCS12_ACCEPTED = [
    Pkcs12Case("cert-manager keystore (AES)", _cert_manager_keystore),
    Pkcs12Case("3DES profile", lambda: _pfx_3des(b"keystore-password")),
    Pkcs12Case("chain order shuffled", _chain_shuffled),
    Pkcs12Case(
        "password file with a trailing newline", _cert_manager_keystore, "keystore-password\n"
    ),
    Pkcs12Case("no password given", _unprotected, None),
    Pkcs12Case("empty password given", _unprotected, ""),
]


@pytest.mark.parametrize("case", PKCS12_ACCEPTED, ids=lambda c: c.id)
def test_pkcs12_accepted(case: Pkcs12Case) -> None:
    password = SecretStr(case.password) if case.password is not None else None
    material = load_pkcs12(case.pfx(), password, use="sig", now=NOW)
    assert material.leaf.x5t == x5t(base().leaf)
    assert material.chain[1].x5t == x5t(base().intermediate)


def _key_only() -> bytes:
    return pfx(base().leaf_key, None)


def _certs_only() -> bytes:
    return serialization.pkcs12.serialize_key_and_certificates(
        None,
        None,
        None,
        [base().leaf, base().intermediate],
        serialization.BestAvailableEncryption(b"keystore-password"),
    )


def _ec_keystore() -> bytes:
    p = leaf_with(lambda s: replace(s, key=ec_key("leaf")))
    return pfx(p.leaf_key, p.leaf, [p.intermediate])


def _expired_keystore() -> bytes:
    p = leaf_with(lambda s: replace(s, not_after=NOW - DAY))
    return pfx(p.leaf_key, p.leaf, [p.intermediate])


def _with_stranger() -> bytes:
    p = base()
    stranger = build_cert(unrelated_root(), None)
    return pfx(p.leaf_key, p.leaf, [p.intermediate, stranger])


@dataclass(frozen=True)
class Pkcs12Refused:
    id: str
    pfx: Callable[[], bytes]
    reason: str
    field: str
    password: str | None = "keystore-password"


PKCS12_REFUSED = [
    Pkcs12Refused("wrong password", _cert_manager_keystore, "WrongPassword", "password", "nope"),
    Pkcs12Refused(
        "no password for a protected file",
        _cert_manager_keystore,
        "WrongPassword",
        "keystore.p12",
        None,
    ),
    Pkcs12Refused("empty", lambda: b"", "Empty", "keystore.p12"),
    Pkcs12Refused("garbage", lambda: b"\x30\x03\x02\x01\x03", "Malformed", "keystore.p12"),
    Pkcs12Refused("PEM text", lambda: pem(base().leaf), "Malformed", "keystore.p12"),
    Pkcs12Refused(
        "over its limit",
        lambda: b"\x30" * (keymaterial.MAX_PKCS12_BYTES + 1),
        "TooLarge",
        "keystore.p12",
    ),
    Pkcs12Refused(
        "password over its limit",
        _cert_manager_keystore,
        "TooLarge",
        "password",
        "p" * (keymaterial.MAX_PASSWORD_BYTES + 1),
    ),
    Pkcs12Refused("NUL in the password", _cert_manager_keystore, "Malformed", "password", "a\x00b"),
    Pkcs12Refused("lone surrogate", _cert_manager_keystore, "NotUtf8", "password", "pw\udcff"),
    Pkcs12Refused("certificates only", _certs_only, "NoPrivateKey", "keystore.p12"),
    Pkcs12Refused("key only", _key_only, "NoCertificate", "keystore.p12"),
    Pkcs12Refused("EC key", _ec_keystore, "UnsupportedKeyType", "keystore.p12"),
    Pkcs12Refused("expired", _expired_keystore, "Expired", "keystore.p12"),
    Pkcs12Refused("unrelated certificate", _with_stranger, "BrokenChain", "keystore.p12"),
]


@pytest.mark.parametrize("case", PKCS12_REFUSED, ids=lambda c: c.id)
def test_pkcs12_refused(case: Pkcs12Refused) -> None:
    password = SecretStr(case.password) if case.password is not None else None
    with pytest.raises(KeyMaterialError) as caught:
        load_pkcs12(case.pfx(), password, use="sig", now=NOW)
    assert_refused(caught.value, case.reason, case.field)


def test_pkcs12_fields_named_by_the_caller() -> None:
    with pytest.raises(KeyMaterialError) as caught:
        load_pkcs12(
            _cert_manager_keystore(),
            SecretStr("nope"),
            use="sig",
            now=NOW,
            field="saml.p12",
            password_field="saml-password",
        )
    assert_refused(caught.value, "WrongPassword", "saml-password")
    assert "'saml.p12'" in str(caught.value)


def test_pkcs12_without_a_password_key_names_only_the_file() -> None:
    with pytest.raises(KeyMaterialError) as caught:
        load_pkcs12(
            _cert_manager_keystore(), SecretStr("x" * 2000), use="sig", now=NOW, password_field=None
        )
    assert_refused(caught.value, "TooLarge", None)
    assert "None" not in str(caught.value)


# --- public certificates -----------------------------------------------------------------------


def _chain() -> list[x509.Certificate]:
    return [base().leaf, base().intermediate, base().root]


@pytest.mark.parametrize(
    ("shape", "data"),
    [
        ("PEM leaf", lambda: pem(base().leaf)),
        ("DER leaf", lambda: der(base().leaf)),
        (
            "PEM chain, leaf last",
            lambda: pem(base().root) + pem(base().intermediate) + pem(base().leaf),
        ),
        (
            "PEM chain, shuffled",
            lambda: b"".join(pem(c) for c in shuffled([base().leaf, base().intermediate], 1)),
        ),
    ],
)
def test_certificate_accepted(shape: str, data: Callable[[], bytes]) -> None:
    info = load_certificate(data(), use="sig", now=NOW, field="idp.crt")
    assert info.x5t == x5t(base().leaf), shape


def _cert_of(modify: Callable[[CertSpec], CertSpec]) -> bytes:
    return pem(leaf_with(modify).leaf)


CERTIFICATE_REFUSED = [
    ("empty", lambda: b"", "Empty"),
    ("garbage", lambda: b"\x01\x02garbage", "Malformed"),
    ("DER garbage", lambda: b"\x30\x82\xff\xff", "Malformed"),
    ("over its limit", lambda: b"\x30" * (keymaterial.MAX_CERTIFICATE_BYTES + 1), "TooLarge"),
    (
        "EC certificate",
        lambda: _cert_of(lambda s: replace(s, key=ec_key("leaf"))),
        "UnsupportedKeyType",
    ),
    ("1024-bit", lambda: _cert_of(lambda s: replace(s, key=rsa_key("small", 1024))), "KeyTooSmall"),
    ("expired", lambda: _cert_of(lambda s: replace(s, not_after=NOW - 1)), "Expired"),
    ("not yet valid", lambda: _cert_of(lambda s: replace(s, not_before=NOW + 1)), "NotYetValid"),
    (
        "key usage",
        lambda: _cert_of(lambda s: replace(s, key_usage=frozenset({"key_encipherment"}))),
        "KeyUsageMismatch",
    ),
    (
        "with a private key",
        lambda: pem(base().leaf) + key_pem(base().leaf_key),
        "UnexpectedPrivateKey",
    ),
    (
        "two unrelated certificates",
        lambda: pem(base().leaf) + pem(build_cert(unrelated_root(), None)),
        "BrokenChain",
    ),
]


@pytest.mark.parametrize(
    ("shape", "data", "reason"), CERTIFICATE_REFUSED, ids=[c[0] for c in CERTIFICATE_REFUSED]
)
def test_certificate_refused(shape: str, data: Callable[[], bytes], reason: str) -> None:
    with pytest.raises(KeyMaterialError) as caught:
        load_certificate(data(), use="sig", now=NOW, field="idp.crt")
    assert_refused(caught.value, reason, "idp.crt")


def test_certificate_not_yet_valid_allowed_with_flag() -> None:
    data = _cert_of(lambda s: replace(s, not_before=NOW + DAY))
    info = load_certificate(data, use="sig", now=NOW, allow_not_yet_valid=True)
    assert info.not_before == NOW + DAY


# --- string secrets ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"s3cret", "s3cret"),
        (b"s3cret\n", "s3cret"),
        (b"s3cret\r\n", "s3cret"),
        (b"s3cret\n\n", "s3cret\n"),  # only one newline is an artefact; the rest is the value
        (b"  spaced out \t", "  spaced out \t"),
        (b" lead\n", " lead"),
        ("pässwörd".encode(), "pässwörd"),
    ],
)
def test_string_secret_accepted(raw: bytes, expected: str) -> None:
    assert load_string_secret(raw, field="client-secret").reveal() == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "Empty"),
        (b"\n", "Empty"),
        (b"\r\n", "Empty"),
        (b" \t\n", "Empty"),
        (b"\xff\xfe", "NotUtf8"),
        (b"a" * (keymaterial.MAX_STRING_SECRET_BYTES + 1), "TooLarge"),
    ],
)
def test_string_secret_refused(raw: bytes, reason: str) -> None:
    with pytest.raises(KeyMaterialError) as caught:
        load_string_secret(raw, field="client-secret")
    assert_refused(caught.value, reason, "client-secret")


def test_string_secret_at_its_limit_is_accepted() -> None:
    raw = b"a" * keymaterial.MAX_STRING_SECRET_BYTES
    assert len(load_string_secret(raw, field="k")) == keymaterial.MAX_STRING_SECRET_BYTES


# --- require_field, error and value behaviour -------------------------------------------------


def test_require_field() -> None:
    assert require_field({"k": b"v"}, "k") == b"v"
    for data, reason in (({}, "Missing"), ({"k": b""}, "Empty"), ({"k": b" \n"}, "Empty")):
        with pytest.raises(KeyMaterialError) as caught:
            require_field(data, "k")
        assert_refused(caught.value, reason, "k")


def test_error_survives_pickling_with_its_reason() -> None:
    error = KeyMaterialError("Expired", "tls.crt", "The certificate in 'tls.crt' expired.")
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 -- our own object
    assert (copy.reason, copy.field, str(copy)) == (error.reason, error.field, str(error))
    assert repr(error).startswith("KeyMaterialError(reason='Expired', field='tls.crt'")


def test_material_repr_hides_the_key_and_refuses_pickling() -> None:
    material = load_tls_secret(tls_secret(base()), use="sig", now=NOW)
    key = base().leaf_key
    assert isinstance(key, rsa.RSAPrivateKey)
    numbers = key.private_numbers()
    text = repr(material)
    for secret in (numbers.d, numbers.p, numbers.q):
        assert str(secret) not in text
        assert format(secret, "x") not in text
    assert "redacted" in text
    assert material.leaf.x5t in text
    with pytest.raises(TypeError):
        pickle.dumps(material)


def test_material_equality_ignores_the_key_object() -> None:
    a = load_tls_secret(tls_secret(base()), use="sig", now=NOW)
    b = load_tls_secret(tls_secret(base(), key_format="pkcs1"), use="sig", now=NOW)
    assert a == b
    assert isinstance(a, CertificateWithKey)
