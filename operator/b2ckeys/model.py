"""Typed views of a TrustFrameworkKeySet: its spec, and the resource parsed once from the API.

Mirrors crds/trustframeworkkeysets.yaml; the status lives in `b2ckeys.status`.

The CRD's schema and CEL rules reject most bad specs at admission; these parsers still check
everything they rely on, because the emulated API and older CRD versions do not enforce it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from b2ckeys.formats import from_rfc3339
from b2ckeys.settings import FORCE_SYNC_ANNOTATION, parse_duration
from b2ckeys.status import StatusView, parse_status

# `b2ckeys disable|enable` write an emergency key status request here (JSON: id, kid, status);
# the operator carries it out once and reports it in status.keyStatusRequest. It never writes
# this annotation itself.
KEY_STATUS_ANNOTATION = "b2ckeys.dev/key-status-request"

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
class ObjectRef:
    """A Secret or ConfigMap a source reads, always in the key set's own namespace."""

    kind: Literal["Secret", "ConfigMap"]
    name: str


@dataclass(frozen=True)
class TlsSecretSource:
    """A `kubernetes.io/tls` Secret (cert-manager's): uploaded as PKCS#12 with its chain."""

    name: str
    kind: ClassVar[SourceKind] = "tlsSecret"

    def referenced_objects(self) -> tuple[ObjectRef, ...]:
        return (ObjectRef("Secret", self.name),)

    def describe(self) -> str:
        return f"{self.kind}/{self.name}"


@dataclass(frozen=True)
class Pkcs12SecretSource:
    name: str
    key: str = "keystore.p12"
    password_key: str = "password"  # noqa: S105 (the name of a key, not a password)
    # The password may live in a Secret of its own (same namespace).
    password_secret_name: str | None = None
    kind: ClassVar[SourceKind] = "pkcs12Secret"

    @property
    def password_object(self) -> str:
        return self.password_secret_name or self.name

    def referenced_objects(self) -> tuple[ObjectRef, ...]:
        refs = [ObjectRef("Secret", self.name)]
        if self.password_object != self.name:
            refs.append(ObjectRef("Secret", self.password_object))
        return tuple(refs)

    def describe(self) -> str:
        return f"{self.kind}/{self.name}"


@dataclass(frozen=True)
class CertificateSource:
    """A public certificate (PEM or DER) in a Secret or a ConfigMap: uploadCertificate."""

    object_kind: Literal["Secret", "ConfigMap"]
    name: str
    key: str = "tls.crt"
    kind: ClassVar[SourceKind] = "certificate"

    def referenced_objects(self) -> tuple[ObjectRef, ...]:
        return (ObjectRef(self.object_kind, self.name),)

    def describe(self) -> str:
        return f"{self.kind}/{self.name}"


@dataclass(frozen=True)
class StringSecretSource:
    """A string secret (an OAuth client secret): uploadSecret."""

    name: str
    key: str
    kind: ClassVar[SourceKind] = "secret"

    def referenced_objects(self) -> tuple[ObjectRef, ...]:
        return (ObjectRef("Secret", self.name),)

    def describe(self) -> str:
        return f"{self.kind}/{self.name}"


@dataclass(frozen=True)
class GenerateSource:
    """B2C generates the key itself: generateKey."""

    kty: Literal["RSA", "oct"] = "RSA"
    kind: ClassVar[SourceKind] = "generate"

    def referenced_objects(self) -> tuple[ObjectRef, ...]:
        return ()

    def describe(self) -> str:
        return f"{self.kind}/{self.kty}"


SourceRef = (
    TlsSecretSource | Pkcs12SecretSource | CertificateSource | StringSecretSource | GenerateSource
)


@dataclass(frozen=True)
class TenantRef:
    kind: str
    name: str


@dataclass(frozen=True)
class KeySetSpec:
    key_set_id: str
    source: SourceRef
    # A namespace named inside spec.source (older CRD versions, or an API server that does not
    # prune): refused, since key material is read only from the resource's own namespace.
    source_namespace: str | None = None
    use: Literal["sig", "enc"] = "sig"
    tenant_ref: TenantRef | None = None
    not_before_delay: float = 0.0
    lifetime: float | None = None
    rotation_every: float | None = None
    allow_not_yet_valid: bool = False
    deletion_policy: Literal["Retain", "Delete"] = "Retain"
    mode: Literal["Sync", "Observe"] = "Sync"
    # spec.adopt.kid (secret sources): take this key in B2C as the secret's, when no upload is
    # recorded in status, instead of uploading the secret again.
    adopt_kid: str | None = None
    # spec.retirement.disableSupersededAfter: None retires nothing.
    disable_superseded_after: float | None = None

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


def optional_text(
    obj: Mapping[str, Any], name: str, where: str, *, error: type[ValueError] = SpecError
) -> str | None:
    """A string member of a spec (None when absent or empty); `error` names what refuses it."""
    value = obj.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise error(f"{where}.{name} must be a string")
    return value


def required_text(
    obj: Mapping[str, Any], name: str, where: str, *, error: type[ValueError] = SpecError
) -> str:
    value = optional_text(obj, name, where, error=error)
    if value is None:
        raise error(f"{where}.{name} is required")
    return value


def _duration(obj: Mapping[str, Any], name: str, where: str) -> float | None:
    raw = obj.get(name)
    if raw is None:
        return None
    try:
        return parse_duration(str(raw))
    except ValueError as e:
        raise SpecError(f"{where}.{name}: {e}") from None


def parse_source(source: Mapping[str, Any]) -> tuple[SourceRef, str | None]:
    """The source and any namespace it names (the caller refuses a foreign one)."""
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
    namespace = optional_text(body, "namespace", where)
    return _parse_source_body(kind, body, where), namespace


def _parse_source_body(kind: SourceKind, body: Mapping[str, Any], where: str) -> SourceRef:
    match kind:
        case "tlsSecret":
            return TlsSecretSource(required_text(body, "name", where))
        case "pkcs12Secret":
            return Pkcs12SecretSource(
                required_text(body, "name", where),
                key=optional_text(body, "key", where) or "keystore.p12",
                password_key=optional_text(body, "passwordKey", where) or "password",
                password_secret_name=optional_text(body, "passwordSecretName", where),
            )
        case "certificate":
            secret_name = optional_text(body, "secretName", where)
            config_map_name = optional_text(body, "configMapName", where)
            key = optional_text(body, "key", where) or "tls.crt"
            if secret_name and not config_map_name:
                return CertificateSource("Secret", secret_name, key)
            if config_map_name and not secret_name:
                return CertificateSource("ConfigMap", config_map_name, key)
            raise SpecError(f"{where} needs exactly one of secretName or configMapName")
        case "secret":
            return StringSecretSource(
                required_text(body, "name", where), required_text(body, "key", where)
            )
        case "generate":
            kty = body.get("kty", "RSA")
            if kty not in ("RSA", "oct"):
                raise SpecError(f"{where}.kty must be RSA or oct, not {kty!r}")
            return GenerateSource(kty)


def parse_spec(spec: Mapping[str, Any]) -> KeySetSpec:
    key_set_id = required_text(spec, "keySetId", "spec")
    if key_set_id.lower().endswith(".bak"):
        raise SpecError("spec.keySetId must not end in .bak (B2C reserves it for deleted key sets)")
    source_body = spec.get("source")
    if not isinstance(source_body, Mapping):
        raise SpecError("spec.source is required")
    source, source_namespace = parse_source(source_body)
    use = spec.get("use", "sig")
    if use not in ("sig", "enc"):
        raise SpecError(f"spec.use must be sig or enc, not {use!r}")
    tenant_ref = None
    if isinstance(spec.get("tenantRef"), Mapping):
        ref = spec["tenantRef"]
        tenant_ref = TenantRef(
            kind=str(ref.get("kind", "ClusterB2CTenant")),
            name=required_text(ref, "name", "spec.tenantRef"),
        )
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
    adopt = spec.get("adopt") or {}
    adopt_kid = optional_text(adopt, "kid", "spec.adopt") if isinstance(adopt, Mapping) else None
    if adopt_kid and source.kind != "secret":
        raise SpecError(
            "spec.adopt applies to secret sources only: certificates are recognised by their "
            "thumbprint and generated keys by their type, so nothing needs adopting"
        )
    retirement = spec.get("retirement") or {}
    if not isinstance(retirement, Mapping):
        raise SpecError("spec.retirement must be an object")
    disable_after = _duration(retirement, "disableSupersededAfter", "spec.retirement")
    if disable_after is not None and disable_after < 0:
        raise SpecError("spec.retirement.disableSupersededAfter must not be negative")
    return KeySetSpec(
        key_set_id=key_set_id,
        source=source,
        source_namespace=source_namespace,
        use=use,
        tenant_ref=tenant_ref,
        not_before_delay=_duration(validity, "notBeforeDelay", "spec.validity") or 0.0,
        lifetime=lifetime,
        rotation_every=rotation_every,
        allow_not_yet_valid=bool(spec.get("allowNotYetValid", False)),
        deletion_policy=deletion_policy,
        mode=mode,
        adopt_kid=adopt_kid,
        disable_superseded_after=disable_after,
    )


# --- the resource -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResourceRef:
    """Enough of a TrustFrameworkKeySet to write to it and to name it in an Event."""

    namespace: str
    name: str
    uid: str
    resource_version: str | None

    @property
    def key(self) -> ObjectKey:
        return ObjectKey(self.namespace, self.name)


@dataclass(frozen=True)
class KeySetResource:
    """A TrustFrameworkKeySet as the operator reads it, parsed once from the API's body."""

    ref: ResourceRef
    generation: int | None
    created: str  # creationTimestamp as served (RFC 3339, one-second resolution)
    deleting_since: int | None  # deletionTimestamp
    finalizers: tuple[str, ...]
    # The value of the sync-now annotation (Argo CD's action, `kubectl b2ckeys sync`): a new
    # value asks for a reconcile at once. The operator reads it and never writes it.
    force_sync: str | None
    # The emergency key status request annotation, as written (parsed where it is acted on).
    key_status_request: str | None
    spec: KeySetSpec | None  # None when the spec cannot be acted on; spec_error says why
    spec_error: str | None
    status: StatusView
    status_doc: Mapping[str, Any]  # the status as served, to tell whether a patch changes it

    @property
    def key(self) -> ObjectKey:
        return self.ref.key

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> KeySetResource:
        meta = body.get("metadata") or {}
        spec: KeySetSpec | None = None
        error: str | None = None
        try:
            spec = parse_spec(body.get("spec") or {})
        except SpecError as e:
            error = str(e)
        generation = meta.get("generation")
        return cls(
            ref=ResourceRef(
                namespace=str(meta.get("namespace") or ""),
                name=str(meta.get("name") or ""),
                uid=str(meta.get("uid") or ""),
                resource_version=meta.get("resourceVersion"),
            ),
            generation=generation if isinstance(generation, int) else None,
            created=str(meta.get("creationTimestamp") or ""),
            deleting_since=from_rfc3339(meta.get("deletionTimestamp")),
            finalizers=tuple(str(f) for f in meta.get("finalizers") or ()),
            force_sync=(meta.get("annotations") or {}).get(FORCE_SYNC_ANNOTATION),
            key_status_request=(meta.get("annotations") or {}).get(KEY_STATUS_ANNOTATION),
            spec=spec,
            spec_error=error,
            status=parse_status(body.get("status")),
            status_doc=dict(body.get("status") or {}),
        )
