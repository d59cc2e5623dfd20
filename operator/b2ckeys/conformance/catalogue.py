"""THE ONE LIST: every rule of graph-keysets-spec.md the operator depends on, as conformance
checks it and as the Graph emulator encodes it.

Each entry names the spec's section, its tag ([doc] documented, [obs] seen in practice, [inf]
our inference), what the emulator does by default (`expected`, in the very terms the check
reports what the tenant did), and the fields of the emulator's `EmulatorRules` that switch that
behaviour. A unit test holds `expected[field] == EmulatorRules().field` for every named field
and requires every `EmulatorRules` field to be named here or in `NOT_OBSERVABLE`, so the
emulator and these checks cannot drift apart. (This package must not import the emulator: it
runs from the operator's image, so the fields are named as strings.)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

Tag = Literal["doc", "obs", "inf"]


@dataclass(frozen=True)
class Rule:
    id: str  # the spec's section, plus a slug where a section holds several rules
    tag: Tag
    title: str
    expected: Mapping[str, object]  # the emulator's default observation
    fields: tuple[str, ...] = field(default=())  # EmulatorRules fields that encode it


_R = Rule

RULES: tuple[Rule, ...] = (
    # --- §2.1 / §1 key sets ----------------------------------------------------------------------
    _R(
        "2.1.1",
        "doc",
        "create adds B2C_1A_ to a proposed id; 201 with Location",
        {"status": 201, "id_prefix": "B2C_1A_", "location_names_id": True},
        ("id_prefix",),
    ),
    _R(
        "2.1.2",
        "inf",
        "a proposed id already starting with B2C_1A_ gets no second prefix",
        {"prefix_twice": False},
        ("prefix_twice",),
    ),
    _R(
        "2.1.3",
        "doc",
        "creating an existing id: AADB2C95028",
        {"duplicate_create_status": 409, "code": "AADB2C95028"},
        ("duplicate_create_status",),
    ),
    _R(
        "2.1.5",
        "obs",
        "@odata.type in a create body is refused",
        {"reject_odata_type_on_create": True},
        ("reject_odata_type_on_create",),
    ),
    _R(
        "2.1.6",
        "obs",
        "unknown members of a create body are ignored",
        {"ignore_unknown_create_fields": True},
        ("ignore_unknown_create_fields",),
    ),
    _R(
        "1.1-list-get",
        "doc",
        "list and get show a new key set, empty",
        {"listed": True, "get_status": 200, "keys": 0},
    ),
    _R(
        "3.1-not-found",
        "obs",
        "reading a missing key set: AADB2C90073",
        {"not_found_status": 404, "code": "AADB2C90073"},
        ("not_found_status",),
    ),
    _R(
        "1-content-type",
        "doc",
        "a write body without Content-Type: application/json is refused",
        {"require_json_content_type": True},
        ("require_json_content_type",),
    ),
    _R(
        "2.7-delete",
        "doc",
        "DELETE answers 204 and leaves <id>.bak in the list",
        {"status": 204, "gone": True, "backup_on_delete": True},
        ("backup_on_delete",),
    ),
    _R(
        "2.7-recreate",
        "inf",
        "an id can be created again while <id>.bak exists",
        {"recreate_while_backup_exists": True},
        ("recreate_while_backup_exists",),
    ),
    _R(
        "2.7-bak",
        "inf",
        "deleting <id>.bak removes it for good",
        {"status": 204, "gone": True, "new_backup": False},
    ),
    # --- §2.5 actions: request and response shapes ---------------------------------------------
    _R(
        "2.5-generateKey",
        "doc",
        "generateKey answers the new key, public members only",
        {
            "status": 200,
            "kty": "RSA",
            "use": "sig",
            "kid": True,
            "private_members": [],
            "emit_null_members": True,
            "generated_rsa_bits": 2048,
        },
        ("emit_null_members", "generated_rsa_bits"),
    ),
    _R(
        "2.6.5-initial-status",
        "inf",
        "new keys start enabled (generated and uploaded)",
        {"generateKey": "enabled", "uploaded_keys_start_enabled": True},
        ("uploaded_keys_start_enabled",),
    ),
    _R(
        "2.5-uploadSecret",
        "doc",
        "uploadSecret answers an oct key, nbf/exp echoed, k unreadable",
        {"status": 200, "kty": "oct", "use": "sig", "nbf": True, "exp": True, "k_readable": False},
    ),
    _R(
        "2.2-secret-base64url",
        "inf",
        "uploadSecret takes k raw, not as base64url",
        {"check_upload_secret_k_is_base64url": False},
        ("check_upload_secret_k_is_base64url",),
    ),
    _R(
        "2.2-short-secret",
        "inf",
        "a 40-bit uploaded secret is accepted (no AADB2C90138)",
        {"min_uploaded_secret_bits": 0},
        ("min_uploaded_secret_bits",),
    ),
    _R(
        "2.5-secret-nbf-now",
        "obs",
        "a secret may start now (IEFPolicies' 3 h lead is not needed)",
        {"min_secret_nbf_lead_seconds": 0},
        ("min_secret_nbf_lead_seconds",),
    ),
    _R(
        "2.5-past-exp",
        "inf",
        "an exp in the past is refused: AADB2C90214",
        {"reject_past_expiry": True, "code": "AADB2C90214"},
        ("reject_past_expiry",),
    ),
    _R(
        "2.5-uploadCertificate",
        "inf",
        "uploadCertificate (base64 DER) answers an RSA key with "
        "x5c, x5t and the certificate's dates",
        {"status": 200, "kty": "RSA", "x5c": True, "x5t": True, "dates": True},
    ),
    _R(
        "2.5-certificate-pem",
        "inf",
        "a PEM-armoured certificate is refused: AADB2C90179",
        {"accept_pem_certificate": False, "code": "AADB2C90179"},
        ("accept_pem_certificate",),
    ),
    _R(
        "2.5-certificate-expired",
        "inf",
        "an expired certificate is accepted",
        {"reject_expired_certificate": False},
        ("reject_expired_certificate",),
    ),
    _R(
        "3.2-duplicate-upload",
        "obs",
        "the same certificate uploaded twice is accepted (no AADB2C90180)",
        {"reject_duplicate_key_upload": False},
        ("reject_duplicate_key_upload",),
    ),
    _R(
        "2.5-certificate-use",
        "inf",
        "an uploaded certificate takes the set's use (enc)",
        {"certificate_use_follows_key_set": True},
        ("certificate_use_follows_key_set",),
    ),
    _R(
        "2.5-uploadPkcs12",
        "inf",
        "uploadPkcs12 (TripleDES) answers an RSA key, x5c = leaf only",
        {"status": 200, "kty": "RSA", "pkcs12_x5c_full_chain": False},
        ("pkcs12_x5c_full_chain",),
    ),
    _R(
        "2.5-pkcs12-password",
        "doc",
        "a wrong PFX password: AADB2C90213",
        {"status": 400, "code": "AADB2C90213"},
    ),
    # --- §2.2 / §2.8 refusals ------------------------------------------------------------------
    _R(
        "2.2-kty-mix",
        "doc",
        "mixing RSA and oct in one set: AADB2C95032",
        {"status": 400, "code": "AADB2C95032"},
    ),
    _R(
        "2.2-use-mix",
        "doc",
        "mixing sig and enc in one set: AADB2C95042",
        {"status": 400, "code": "AADB2C95042"},
    ),
    _R(
        "2.5-pkcs12-aes",
        "obs",
        "an AES-encrypted PKCS#12 is refused as a wrong password",
        {"refuse_aes_pkcs12": True, "code": "AADB2C90213"},
        ("refuse_aes_pkcs12",),
    ),
    _R(
        "2.2-ec-key",
        "inf",
        "an EC certificate is refused: AADB2C95031",
        {"status": 400, "code": "AADB2C95031"},
    ),
    _R(
        "2.2-short-rsa",
        "inf",
        "RSA below 2048 bits is refused: AADB2C90137 (2047 refused, 2048 taken)",
        {"min_rsa_bits": 2048, "code": "AADB2C90137"},
        ("min_rsa_bits",),
    ),
    _R(
        "2.8-put-kid",
        "obs",
        "PUT with a key carrying a kid: AADB2C95059",
        {"status": 400, "code": "AADB2C95059"},
    ),
    _R(
        "2.8-put-missing",
        "doc",
        "PUT on a missing key set: AADB2C95052",
        {"put_missing_status": 404, "code": "AADB2C95052"},
        ("put_missing_status",),
    ),
    _R(
        "2.8-patch",
        "inf",
        "PATCH on a key set replaces it as PUT does (the SDK sends PATCH)",
        {"accept_patch_as_put": True},
        ("accept_patch_as_put",),
    ),
    _R(
        "2.8-put-private",
        "inf",
        "PUT of an RSA JWK without private members is refused",
        {"put_requires_private_members": True},
        ("put_requires_private_members",),
    ),
    # --- §1.7 / §2.6 getActiveKey --------------------------------------------------------------
    _R(
        "1.7-parentheses",
        "obs",
        "getActiveKey answers with and without parentheses",
        {"with_parentheses": 200, "without_parentheses": 200, "same_kid": True},
    ),
    _R(
        "2.6.3-nbf-order",
        "doc",
        "with several valid keys the greatest nbf <= now is active",
        {"active": "greatest nbf (added first)"},
    ),
    _R(
        "2.6.3-future-nbf",
        "doc",
        "a key whose nbf is in the future is not active yet",
        {"active": "started key"},
    ),
    _R(
        "2.6.4-expiry",
        "doc",
        "once the active key expires the next valid key takes over",
        {"before": "expiring key", "after": "older key"},
    ),
    _R(
        "2.6.6-undated",
        "inf",
        "with only future keys besides, a key without nbf is active",
        {"active": "undated key"},
    ),
    _R(
        "2.6.6-tie",
        "inf",
        "two keys with the same nbf: the latest added is active",
        {"active": "latest added"},
    ),
    _R(
        "2.6.6-none",
        "inf",
        "getActiveKey on a set with no usable key",
        {"no_active_key_status": 404, "no_active_key_code": "AADB2C90019"},
        ("no_active_key_status", "no_active_key_code"),
    ),
    # --- §2.9 keys_v2 --------------------------------------------------------------------------
    _R(
        "1.11-keys_v2-list",
        "obs",
        "keys_v2 lists the set's keys",
        {"status": 200, "kids_match": True},
    ),
    _R(
        "1.12-keys_v2-get",
        "doc",
        "keys_v2/{kid} answers the key itself, not wrapped in value",
        {"status": 200, "kid_matches": True, "wrap_key_v2_in_value": False},
        ("wrap_key_v2_in_value",),
    ),
    _R(
        "2.9-disable",
        "doc",
        "PATCH status disabled/enabled: 204; getActiveKey skips a disabled key",
        {
            "disable": 204,
            "status_after": "disabled",
            "active_after_disable": "other key",
            "enable": 204,
            "active_after_enable": "re-enabled key",
        },
    ),
    _R(
        "2.9-last-key",
        "inf",
        "disabling the last usable key is refused: AADB2C90134",
        {"refuse_disabling_last_usable_key": True, "code": "AADB2C90134"},
        ("refuse_disabling_last_usable_key",),
    ),
    # --- §2.10 / §3.3 concurrency and throttling -----------------------------------------------
    _R(
        "2.10-concurrent",
        "doc",
        "overlapping writes to one set: AADB2C95053",
        {"detect_concurrent_writes": True, "concurrent_write_status": 409},
        ("detect_concurrent_writes", "concurrent_write_status"),
    ),
    _R(
        "3.3-throttling",
        "doc",
        "a 429 carries Retry-After (seen only if the run was throttled)",
        {"status": 429, "retry_after": True},
    ),
    # --- §1 / §4 permissions of a read-only app --------------------------------------------------
    _R(
        "1-read-only",
        "doc",
        "a Read.All app reads key sets but may not write or read keys_v2",
        {
            "roles": ["TrustFrameworkKeySet.Read.All"],
            "list": 200,
            "create": 403,
            "create_code": "Authorization_RequestDenied",
            "keys_v2_read_needs_readwrite": True,
        },
        ("keys_v2_read_needs_readwrite",),
    ),
    _R(
        "4-token-error",
        "obs",
        "a wrong client secret gets no token: AADSTS7000215",
        {"code": "AADSTS7000215"},
    ),
)

# EmulatorRules fields no tenant can show, each with why.
NOT_OBSERVABLE: Mapping[str, str] = {
    # Generated oct keys are write-only: `k` is never returned, so their size cannot be read.
    "generated_oct_bytes": "a generated oct key's k is never readable",
    # Entra sets token lifetimes by its own policy (60-90 min, varying per token).
    "token_lifetime_seconds": "Entra's token lifetime varies per token and tenant policy",
    # The clock skew Entra allows on client assertions needs a deliberately skewed assertion
    # signed with a registered certificate; conformance authenticates as configured only.
    "assertion_clock_skew_seconds": "needs a skewed client assertion, not made by this tool",
}

BY_ID: Mapping[str, Rule] = {rule.id: rule for rule in RULES}


def select(only: list[str] | None) -> list[Rule]:
    """The rules `--only` names: an exact id, or a section prefix ("2.6" takes 2.6.3-*, ...)."""
    if not only:
        return list(RULES)
    unknown = [want for want in only if not any(_matches(rule.id, want) for rule in RULES)]
    if unknown:
        raise ValueError(f"no rule matches {', '.join(unknown)} (b2ckeys conformance --list)")
    return [rule for rule in RULES if any(_matches(rule.id, want) for want in only)]


def _matches(rule_id: str, want: str) -> bool:
    return rule_id == want or rule_id.startswith(want + ".") or rule_id.startswith(want + "-")
