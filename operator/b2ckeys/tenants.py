"""B2CTenant and ClusterB2CTenant: typed views, and the rules for who may use which.

Pure: parsing and deciding only (the credentials and Graph clients are in `tenant_access`). The
rules, each a refusal a person can act on:

1. a B2CTenant serves key sets of its own namespace only;
2. a ClusterB2CTenant serves the namespaces its `namespaceSelector` matches (an empty or absent
   selector matches none) and the key set ids its `keySetIdPatterns` allow (none: all);
3. credential Secrets are read from the tenant's namespace (a ClusterB2CTenant's: the operator's
   own), and no field names another namespace.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from b2ckeys.model import TenantRef, normalized_key_set_id, optional_text, required_text
from b2ckeys.status import StatusView, parse_status

TenantKind = Literal["B2CTenant", "ClusterB2CTenant"]
TENANT_PLURALS: dict[TenantKind, str] = {
    "B2CTenant": "b2ctenants",
    "ClusterB2CTenant": "clusterb2ctenants",
}
# How metrics and pacing name the tenant of key sets without a tenantRef (the operator's own
# environment); other tenants are "Kind/namespace/name", so the two never meet.
DEFAULT_TENANT = "default"


class TenantSpecError(ValueError):
    """The tenant's spec cannot be used; the message names the field."""


@dataclass(frozen=True, order=True)
class TenantKey:
    kind: TenantKind
    namespace: str  # "" for a ClusterB2CTenant
    name: str

    def __str__(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind} {where}{self.name}"

    @property
    def label(self) -> str:
        """How metrics name the tenant: kind, namespace (B2CTenant only) and name."""
        return "/".join(p for p in (self.kind, self.namespace, self.name) if p)

    @property
    def queue_id(self) -> str:
        """The identity the controller paces Graph by (429s hold back one tenant)."""
        return f"{self.kind}/{self.namespace}/{self.name}"


def tenant_key(namespace: str, ref: TenantRef | None) -> TenantKey | None:
    """The tenant a key set in `namespace` names (None: the operator's default tenant). A
    B2CTenant is looked up in the key set's own namespace: there is no other place to name."""
    if ref is None:
        return None
    if ref.kind == "B2CTenant":
        return TenantKey("B2CTenant", namespace, ref.name)
    return TenantKey("ClusterB2CTenant", "", ref.name)


@dataclass(frozen=True)
class ClientSecretAuth:
    secret_name: str
    key: str
    kind: ClassVar[str] = "clientSecret"


@dataclass(frozen=True)
class ClientCertificateAuth:
    secret_name: str  # a kubernetes.io/tls Secret
    kind: ClassVar[str] = "clientCertificate"


@dataclass(frozen=True)
class WorkloadIdentityAuth:
    kind: ClassVar[str] = "workloadIdentity"


TenantAuth = ClientSecretAuth | ClientCertificateAuth | WorkloadIdentityAuth


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        match self.operator:
            case "In":
                return labels.get(self.key) in self.values
            case "NotIn":
                return labels.get(self.key) not in self.values
            case "Exists":
                return self.key in labels
            case "DoesNotExist":
                return self.key not in labels


@dataclass(frozen=True)
class LabelSelector:
    match_labels: tuple[tuple[str, str], ...] = ()
    match_expressions: tuple[Requirement, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.match_labels and not self.match_expressions

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Kubernetes semantics, except that an empty selector matches nothing: a tenant is
        shared only with the namespaces someone chose."""
        if self.empty:
            return False
        return all(labels.get(k) == v for k, v in self.match_labels) and all(
            r.matches(labels) for r in self.match_expressions
        )


@dataclass(frozen=True)
class TenantSpec:
    tenant_id: str
    client_id: str
    auth: TenantAuth
    graph_base_url: str | None = None
    authority_host: str | None = None
    # ClusterB2CTenant only.
    namespace_selector: LabelSelector = LabelSelector()
    key_set_id_patterns: tuple[str, ...] = ()


def b2c_tenant_identity(tenant_id: str, graph_base_url: str) -> str:
    """Which real B2C tenant a connection reaches, as far as its settings tell: two tenant
    resources (or one and the operator's default) naming the same tenant id at the same Graph
    endpoint write into the same key sets, so key set ownership and Retry-After pacing go by
    this, not by the resource. A tenant named by its domain and by its GUID is not recognised as
    one: name it the same way everywhere."""
    return f"{graph_base_url.rstrip('/').lower()}#{tenant_id.strip().lower()}"


@dataclass(frozen=True)
class TenantResource:
    key: TenantKey
    uid: str
    generation: int | None
    resource_version: str | None
    spec: TenantSpec | None
    spec_error: str | None
    status: StatusView
    status_doc: Mapping[str, Any]

    @classmethod
    def from_body(cls, kind: TenantKind, body: Mapping[str, Any]) -> TenantResource:
        meta = body.get("metadata") or {}
        namespace = str(meta.get("namespace") or "") if kind == "B2CTenant" else ""
        spec: TenantSpec | None = None
        error: str | None = None
        try:
            spec = parse_tenant_spec(kind, body.get("spec") or {})
        except TenantSpecError as e:
            error = str(e)
        generation = meta.get("generation")
        return cls(
            key=TenantKey(kind, namespace, str(meta.get("name") or "")),
            uid=str(meta.get("uid") or ""),
            generation=generation if isinstance(generation, int) else None,
            resource_version=meta.get("resourceVersion"),
            spec=spec,
            spec_error=error,
            status=parse_status(body.get("status")),
            status_doc=dict(body.get("status") or {}),
        )


def _text(obj: Mapping[str, Any], name: str, where: str) -> str:
    return required_text(obj, name, where, error=TenantSpecError)


def _optional_text(obj: Mapping[str, Any], name: str, where: str) -> str | None:
    return optional_text(obj, name, where, error=TenantSpecError)


def parse_tenant_spec(kind: TenantKind, spec: Mapping[str, Any]) -> TenantSpec:
    auth = spec.get("auth")
    if not isinstance(auth, Mapping):
        raise TenantSpecError("spec.auth is required")
    present = [k for k in ("clientSecret", "clientCertificate", "workloadIdentity") if k in auth]
    if len(present) != 1:
        raise TenantSpecError(
            "spec.auth needs exactly one of clientSecret, clientCertificate or workloadIdentity"
        )
    parsed: TenantAuth
    member = auth[present[0]] or {}
    if present[0] == "workloadIdentity":
        parsed = WorkloadIdentityAuth()
    else:
        ref = member.get("secretRef") if isinstance(member, Mapping) else None
        if not isinstance(ref, Mapping):
            raise TenantSpecError(f"spec.auth.{present[0]}.secretRef is required")
        where = f"spec.auth.{present[0]}.secretRef"
        if present[0] == "clientSecret":
            parsed = ClientSecretAuth(_text(ref, "name", where), _text(ref, "key", where))
        else:
            parsed = ClientCertificateAuth(_text(ref, "name", where))
    selector = LabelSelector()
    patterns: tuple[str, ...] = ()
    if kind == "ClusterB2CTenant":
        selector = _selector(spec.get("namespaceSelector"))
        raw = spec.get("keySetIdPatterns") or []
        if not isinstance(raw, Sequence) or isinstance(raw, str):
            raise TenantSpecError("spec.keySetIdPatterns must be a list of globs")
        patterns = tuple(str(p) for p in raw)
    return TenantSpec(
        tenant_id=_text(spec, "tenantId", "spec"),
        client_id=_text(spec, "clientId", "spec"),
        auth=parsed,
        graph_base_url=_optional_text(spec, "graphBaseUrl", "spec"),
        authority_host=_optional_text(spec, "authorityHost", "spec"),
        namespace_selector=selector,
        key_set_id_patterns=patterns,
    )


def _selector(raw: Any) -> LabelSelector:
    if raw is None:
        return LabelSelector()
    if not isinstance(raw, Mapping):
        raise TenantSpecError("spec.namespaceSelector must be a label selector")
    labels = raw.get("matchLabels") or {}
    expressions = []
    for item in raw.get("matchExpressions") or []:
        operator = item.get("operator")
        if operator not in ("In", "NotIn", "Exists", "DoesNotExist"):
            raise TenantSpecError(f"spec.namespaceSelector: unknown operator {operator!r}")
        values = tuple(str(v) for v in item.get("values") or ())
        expressions.append(Requirement(str(item.get("key")), operator, values))
    return LabelSelector(
        tuple(sorted((str(k), str(v)) for k, v in labels.items())), tuple(expressions)
    )


# --- who may use which tenant ---------------------------------------------------------------------


def refusal(
    tenant: TenantResource,
    *,
    namespace: str,
    namespace_labels: Mapping[str, str] | None,
    key_set_id: str,
) -> str | None:
    """Why a key set in `namespace` with `key_set_id` may not use `tenant`, or None if it may."""
    spec = tenant.spec
    if spec is None:
        return f"{tenant.key} cannot be used: {tenant.spec_error}; fix the tenant"
    if tenant.key.kind == "B2CTenant":
        if tenant.key.namespace != namespace:
            return (
                f"{tenant.key} is in namespace {tenant.key.namespace!r}; a key set may use only a "
                f"B2CTenant of its own namespace ({namespace!r}). Share a tenant across "
                "namespaces with a ClusterB2CTenant"
            )
        return None
    if spec.namespace_selector.empty:
        return (
            f"{tenant.key} has no namespaceSelector, so it serves no namespace; its owner must "
            f"select namespace {namespace!r} (for example by a label) to let key sets here use it"
        )
    if namespace_labels is None or not spec.namespace_selector.matches(namespace_labels):
        return (
            f"{tenant.key}'s namespaceSelector does not select namespace {namespace!r}; ask the "
            "tenant's owner to select it, or label the namespace as the selector requires"
        )
    if spec.key_set_id_patterns and not key_set_id_allowed(key_set_id, spec.key_set_id_patterns):
        allowed = ", ".join(spec.key_set_id_patterns)
        return (
            f"{tenant.key} allows only key set ids matching {allowed}, and "
            f"{normalized_key_set_id(key_set_id)} matches none; rename the key set or ask the "
            "tenant's owner to allow it"
        )
    return None


def key_set_id_allowed(key_set_id: str, patterns: Sequence[str]) -> bool:
    """Globs (* and ?) on the B2C_1A_-prefixed id, without regard to case."""
    normalized = normalized_key_set_id(key_set_id)
    return any(fnmatch.fnmatchcase(normalized, p.lower()) for p in patterns)
