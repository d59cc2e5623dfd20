"""Every choice the Graph emulator makes where the spec says [inf] (unverified) is a switch here.

Defaults follow `graph-keysets-spec.md`; a test that wants the other reading of the service
builds `EmulatorRules(...)` with that one field changed. Section numbers refer to the spec.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EmulatorRules:
    # --- §2.1 ids and creation -------------------------------------------------------------
    # The prefix B2C puts in front of a proposed key set id.
    id_prefix: str = "B2C_1A_"
    # Add the prefix even when the proposed id already starts with it (B2C_1A_B2C_1A_x).
    prefix_twice: bool = False
    # HTTP status of AADB2C95028 (duplicate create); undocumented, 400 and 409 are both plausible.
    duplicate_create_status: int = 409
    # Refuse a create body carrying "@odata.type" (the .NET SDK quirk, §2.1.5).
    reject_odata_type_on_create: bool = True
    # Ignore unknown members of a create body (ahauter sends "usage"); False refuses them.
    ignore_unknown_create_fields: bool = True

    # --- §2.2 / §2.5 key material ------------------------------------------------------------
    # AADB2C90137 below this many RSA bits, for uploads, PUT keys and generateKey.
    min_rsa_bits: int = 2048
    # AADB2C90138 below this many bits of an uploaded secret; 0 = no check (unknown in B2C).
    min_uploaded_secret_bits: int = 0
    # Size of keys B2C generates (generateKey).
    generated_rsa_bits: int = 2048
    generated_oct_bytes: int = 32
    # Apply the base64url check of `k` (AADB2C95029) to uploadSecret too (B2C takes it raw).
    check_upload_secret_k_is_base64url: bool = False
    # Refuse uploadSecret whose nbf is sooner than now + this many seconds (IEFPolicies #63's
    # unverified "3 hours" claim); 0 = no check.
    min_secret_nbf_lead_seconds: int = 0
    # AADB2C90214 when exp is already in the past (generateKey, uploadSecret).
    reject_past_expiry: bool = True
    # Accept a PEM-armoured certificate in uploadCertificate (B2C asks for base64 DER).
    accept_pem_certificate: bool = False
    # Refuse an uploadCertificate certificate that is already expired (AADB2C90214).
    reject_expired_certificate: bool = False
    # uploadPkcs12: report an AES (PBES2) encrypted PFX as a wrong password, as B2C was seen to.
    refuse_aes_pkcs12: bool = True
    # uploadPkcs12: emit the whole chain in x5c (False: the leaf only).
    pkcs12_x5c_full_chain: bool = False
    # uploadCertificate/uploadPkcs12 bodies carry no `use`: the key takes the set's usage (sig
    # for an empty set). False makes it always sig, so enc sets refuse uploads (AADB2C95042).
    certificate_use_follows_key_set: bool = True
    # Refuse uploading the same certificate / public key twice into one set (AADB2C90180).
    reject_duplicate_key_upload: bool = False
    # PUT/PATCH keys must carry private members (RSA `d`), as complete JWKs.
    put_requires_private_members: bool = True

    # --- §2.4 readable fields ------------------------------------------------------------------
    # Emit every trustFrameworkKey property, write-only ones as null (the generateKey example).
    # False omits absent and write-only members instead.
    emit_null_members: bool = True

    # --- §2.6 activation ----------------------------------------------------------------------
    # Uploaded keys start enabled (tools' behaviour); False follows PKO's "activation flag false".
    uploaded_keys_start_enabled: bool = True
    # getActiveKey when no key qualifies.
    no_active_key_status: int = 404
    no_active_key_code: str = "AADB2C90019"

    # --- §2.7 delete --------------------------------------------------------------------------
    # DELETE leaves `<id>.bak` with the same keys; deleting a `.bak` removes it for good.
    backup_on_delete: bool = True
    # Creating `X` again succeeds while `X.bak` exists.
    recreate_while_backup_exists: bool = True

    # --- §2.8 PUT -----------------------------------------------------------------------------
    # HTTP status of AADB2C95052 (PUT on a missing key set).
    put_missing_status: int = 404
    # PATCH on a key set behaves as PUT (the SDK sends PATCH; the docs say PUT).
    accept_patch_as_put: bool = True

    # --- §2.9 status and keys_v2 --------------------------------------------------------------
    # Refuse disabling the last enabled, unexpired key (400 AADB2C90134).
    refuse_disabling_last_usable_key: bool = True
    # keys_v2 reads need ReadWrite (the _v2 pages list no Read.All).
    keys_v2_read_needs_readwrite: bool = True
    # GET keys_v2/{kid} wraps the key in {"value": {...}} as the doc example does.
    wrap_key_v2_in_value: bool = False

    # --- §2.10 concurrency --------------------------------------------------------------------
    # AADB2C95053 when a write to a key set starts while another write to it is in flight.
    detect_concurrent_writes: bool = True
    concurrent_write_status: int = 409

    # --- §1 / §3.1 requests and errors -------------------------------------------------------
    not_found_status: int = 404
    # A request body without `Content-Type: application/json` gets 415 (§1: "POST and PUT also
    # need Content-Type: application/json"; the status is a guess).
    require_json_content_type: bool = True

    # --- identity -----------------------------------------------------------------------------
    # Access token lifetime in seconds, measured on the emulator's clock (Entra: 60-90 min;
    # client-credentials tokens usually report 3599).
    token_lifetime_seconds: int = 3599
    # Allowed skew when checking a client assertion's nbf/exp against the real clock.
    assertion_clock_skew_seconds: int = 300
