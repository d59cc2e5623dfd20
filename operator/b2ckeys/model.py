"""Typed views of a TrustFrameworkKeySet spec and status (mirrors crds/trustframeworkkeysets.yaml).

The CRD's schema and CEL rules reject most bad specs at admission; these parsers still check
everything they rely on, because the emulated API and older CRD versions do not enforce it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from b2ckeys.settings import parse_duration

SourceKind = Literal["tlsSecret", "pkcs12Secret", "certificate", "secret", "generate"]
SOURCE_KINDS: tuple[SourceKind, ...] = (
    "tlsSecret",
    "pkcs12Secret",
    "certificate",
    "secret",
    "generate",
)
KEYSET_PREFIX = "B2C_1A_"


class SpecError(ValueError):
    """The spec cannot be acted on; the message says which field and how to fix it."""


@dataclass(frozen=True)
class ObjectKey:
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class SourceRef:
    kind: SourceKind
    # The Secret or ConfigMap holding the material (None for `generate`).
    object_kind: Literal["Secret", "ConfigMap"] | None = None
    object_name: str | None = None
    key: str | None = None
    password_key: str | None = None
    password_secret_name: str | None = None
    kty: Literal["RSA", "oct"] = "RSA"
    # A namespace named in the reference (only the resource's own namespace is allowed).
    namespace: str | None = None

    def referenced_objects(self) -> list[tuple[str, str]]:
        """(kind, name) of every object this source reads."""
        refs: list[tuple[str, str]] = []
        if self.object_kind and self.object_name:
            refs.append((self.object_kind, self.object_name))
        if self.password_secret_name and self.password_secret_name != self.object_name:
            refs.append(("Secret", self.password_secret_name))
        return refs

    def describe(self) -> str:
        return f"{self.kind}/{self.object_name}" if self.object_name else f"{self.kind}/{self.kty}"


@dataclass(frozen=True)
class TenantRef:
    kind: str
    name: str


@dataclass(frozen=True)
class KeySetSpec:
    key_set_id: str
    source: SourceRef
    use: Literal["sig", "enc"] = "sig"
    tenant_ref: TenantRef | None = None
    not_before_delay: float = 0.0
    lifetime: float | None = None
    rotation_every: float | None = None
    allow_not_yet_valid: bool = False
    deletion_policy: Literal["Retain", "Delete"] = "Retain"
    mode: Literal["Sync", "Observe"] = "Sync"

    @property
    def candidate_ids(self) -> tuple[str, ...]:
        """Ids B2C may have given this key set, most likely first (B2C adds `B2C_1A_`)."""
        if self.key_set_id.upper().startswith(KEYSET_PREFIX.upper()):
            return (self.key_set_id,)
        return (KEYSET_PREFIX + self.key_set_id, self.key_set_id)


def normalized_key_set_id(key_set_id: str) -> str:
    """The identity two resources share when they name the same B2C key set."""
    bare = (
        key_set_id[len(KEYSET_PREFIX) :]
        if key_set_id.upper().startswith(KEYSET_PREFIX.upper())
        else key_set_id
    )
    return (KEYSET_PREFIX + bare).lower()


def _str(obj: Mapping[str, Any], name: str, where: str, *, required: bool = True) -> str | None:
    value = obj.get(name)
    if value is None or value == "":
        if required:
            raise SpecError(f"{where}.{name} is required")
        return None
    if not isinstance(value, str):
        raise SpecError(f"{where}.{name} must be a string")
    return value


def _duration(obj: Mapping[str, Any], name: str, where: str) -> float | None:
    raw = obj.get(name)
    if raw is None:
        return None
    try:
        return parse_duration(str(raw))
    except ValueError as e:
        raise SpecError(f"{where}.{name}: {e}") from None


def parse_source(source: Mapping[str, Any]) -> SourceRef:
    present = [k for k in SOURCE_KINDS if source.get(k) is not None]
    if len(present) != 1:
        raise SpecError(
            "spec.source must have exactly one of "
            + ", ".join(SOURCE_KINDS)
            + (f" (found {', '.join(present)})" if present else " (found none)")
        )
    kind = present[0]
    body = source[kind]
    if not isinstance(body, Mapping):
        raise SpecError(f"spec.source.{kind} must be an object")
    where = f"spec.source.{kind}"
    ns = _str(body, "namespace", where, required=False)
    if kind == "tlsSecret":
        return SourceRef(kind, "Secret", _str(body, "name", where), namespace=ns)
    if kind == "pkcs12Secret":
        return SourceRef(
            kind,
            "Secret",
            _str(body, "name", where),
            key=_str(body, "key", where, required=False) or "keystore.p12",
            password_key=_str(body, "passwordKey", where, required=False) or "password",
            password_secret_name=_str(body, "passwordSecretName", where, required=False),
            namespace=ns,
        )
    if kind == "certificate":
        secret_name = _str(body, "secretName", where, required=False)
        config_map_name = _str(body, "configMapName", where, required=False)
        if bool(secret_name) == bool(config_map_name):
            raise SpecError(f"{where} needs exactly one of secretName or configMapName")
        return SourceRef(
            kind,
            "Secret" if secret_name else "ConfigMap",
            secret_name or config_map_name,
            key=_str(body, "key", where, required=False) or "tls.crt",
            namespace=ns,
        )
    if kind == "secret":
        return SourceRef(
            kind, "Secret", _str(body, "name", where), key=_str(body, "key", where), namespace=ns
        )
    kty = body.get("kty", "RSA")
    if kty not in ("RSA", "oct"):
        raise SpecError(f"{where}.kty must be RSA or oct, not {kty!r}")
    return SourceRef(kind, kty=kty)


def parse_spec(spec: Mapping[str, Any]) -> KeySetSpec:
    key_set_id = _str(spec, "keySetId", "spec")
    assert key_set_id is not None
    if key_set_id.lower().endswith(".bak"):
        raise SpecError("spec.keySetId must not end in .bak (B2C reserves it for deleted key sets)")
    source_body = spec.get("source")
    if not isinstance(source_body, Mapping):
        raise SpecError("spec.source is required")
    source = parse_source(source_body)
    use = spec.get("use", "sig")
    if use not in ("sig", "enc"):
        raise SpecError(f"spec.use must be sig or enc, not {use!r}")
    tenant_ref = None
    if isinstance(spec.get("tenantRef"), Mapping):
        ref = spec["tenantRef"]
        name = _str(ref, "name", "spec.tenantRef")
        assert name is not None
        tenant_ref = TenantRef(kind=str(ref.get("kind", "ClusterB2CTenant")), name=name)
    validity = spec.get("validity") or {}
    rotation = spec.get("rotation") or {}
    if (validity or rotation) and source.kind not in ("secret", "generate"):
        raise SpecError(
            "spec.validity and spec.rotation apply to secret and generate sources only; "
            "certificates carry their own dates and follow their Secret"
        )
    rotation_every = _duration(rotation, "every", "spec.rotation")
    if rotation and rotation_every is None:
        raise SpecError("spec.rotation.every is required when spec.rotation is set")
    if rotation_every is not None and rotation_every <= 0:
        raise SpecError("spec.rotation.every must be longer than zero")
    lifetime = _duration(validity, "lifetime", "spec.validity")
    if lifetime is not None and lifetime <= 0:
        raise SpecError("spec.validity.lifetime must be longer than zero")
    deletion_policy = spec.get("deletionPolicy", "Retain")
    if deletion_policy not in ("Retain", "Delete"):
        raise SpecError(f"spec.deletionPolicy must be Retain or Delete, not {deletion_policy!r}")
    mode = spec.get("mode", "Sync")
    if mode not in ("Sync", "Observe"):
        raise SpecError(f"spec.mode must be Sync or Observe, not {mode!r}")
    return KeySetSpec(
        key_set_id=key_set_id,
        source=source,
        use=use,
        tenant_ref=tenant_ref,
        not_before_delay=_duration(validity, "notBeforeDelay", "spec.validity") or 0.0,
        lifetime=lifetime,
        rotation_every=rotation_every,
        allow_not_yet_valid=bool(spec.get("allowNotYetValid", False)),
        deletion_policy=deletion_policy,
        mode=mode,
    )


# --- status -------------------------------------------------------------------------------------


def to_rfc3339(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def from_rfc3339(text: str | None) -> int | None:
    if not text:
        return None
    try:
        return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())
    except ValueError:
        return None


@dataclass(frozen=True)
class SyncedKey:
    """The key this resource last put into B2C (from status.syncedKey)."""

    kid: str
    kty: str | None = None
    use: str | None = None
    x5t: str | None = None
    nbf: int | None = None
    exp: int | None = None
    uploaded_at: int | None = None


@dataclass(frozen=True)
class PendingWrite:
    """An intent recorded in status before a write (status.pendingWrite), for crash safety."""

    action: str
    key_set_id: str
    fingerprint: str | None = None
    x5t: str | None = None
    nbf: int | None = None
    exp: int | None = None
    started_at: int | None = None

    def to_status(self) -> dict[str, Any]:
        # Every member, absent ones as null: status is merge-patched, and a member left over from
        # an earlier intent (an old exp) would make this one unrecognisable after a crash.
        return {
            "action": self.action,
            "keySetId": self.key_set_id,
            "fingerprint": self.fingerprint,
            "x5t": self.x5t,
            "nbf": self.nbf,
            "exp": self.exp,
            "startedAt": to_rfc3339(self.started_at),
        }


@dataclass(frozen=True)
class StatusView:
    key_set_id: str | None = None
    synced: SyncedKey | None = None
    source_fingerprint: str | None = None
    pending: PendingWrite | None = None


def parse_status(status: Mapping[str, Any] | None) -> StatusView:
    status = status or {}
    synced = None
    raw = status.get("syncedKey")
    if isinstance(raw, Mapping) and raw.get("kid"):
        synced = SyncedKey(
            kid=str(raw["kid"]),
            kty=raw.get("kty"),
            use=raw.get("use"),
            x5t=raw.get("x5t"),
            nbf=from_rfc3339(raw.get("notBefore")),
            exp=from_rfc3339(raw.get("expires")),
            uploaded_at=from_rfc3339(raw.get("uploadedAt")),
        )
    pending = None
    raw = status.get("pendingWrite")
    if isinstance(raw, Mapping) and raw.get("action"):
        pending = PendingWrite(
            action=str(raw["action"]),
            key_set_id=str(raw.get("keySetId", "")),
            fingerprint=raw.get("fingerprint"),
            x5t=raw.get("x5t"),
            nbf=raw.get("nbf"),
            exp=raw.get("exp"),
            started_at=from_rfc3339(raw.get("startedAt")),
        )
    return StatusView(
        key_set_id=status.get("keySetId"),
        synced=synced,
        source_fingerprint=status.get("sourceFingerprint"),
        pending=pending,
    )
