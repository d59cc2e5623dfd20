"""Checks and defaults a real API server applies to a body before storing it.

Pure functions over JSON values. They raise the `kmock.KubernetesError` a real server would
answer with (400 for a body that does not decode into the API type, 422 for an invalid value,
409 for a stale write). System fields (`uid`, `resourceVersion`, timestamps, `generation`) are
not set here: the store stamps them when it commits.
"""

from __future__ import annotations

import base64
import binascii
import copy
import re
from collections.abc import Mapping
from typing import Any

from b2ckeys_emulators.kube import errors as errors
from b2ckeys_emulators.kube.crds import (
    CRD_CLEANUP_FINALIZER,
    InvalidCrd,
    crd_status,
    served_resources,
)
from b2ckeys_emulators.kube.resources import CRDS, NAMESPACES, SECRETS, ResourceSpec
from b2ckeys_emulators.kube.schema import prune_and_default
from b2ckeys_emulators.kube.selectors import is_label_key, is_label_value

# Fields only the server writes; whatever a client sends for them is ignored.
SYSTEM_METADATA = (
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generation",
    "selfLink",
    "managedFields",
)
# What a real namespace carries until the namespace controller has emptied it.
NAMESPACE_FINALIZER = "kubernetes"
# A real server rejects annotations over 256 KiB in total.
_MAX_ANNOTATIONS_BYTES = 256 * 1024

_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_CONFIG_KEY = re.compile(r"[-._a-zA-Z0-9]+")


def admit_create(
    spec: ResourceSpec, namespace: str | None, body: Any, *, name: str, now: str
) -> dict[str, Any]:
    """The object to store for a POST; `name` is already resolved (from `generateName` too)."""
    obj = _decode(spec, body)
    meta = obj["metadata"]
    for field in SYSTEM_METADATA:
        meta.pop(field, None)
    meta["name"] = name
    if spec.namespaced:
        if meta.get("namespace", namespace) != namespace:
            raise errors.bad_request(
                "the namespace of the provided object does not match the namespace sent on the"
                " request"
            )
        meta["namespace"] = namespace
    else:
        meta.pop("namespace", None)
    _check_name(spec, name)
    if spec.has_status:
        obj.pop("status", None)  # status is the controllers' to write, through /status
    if spec.custom is not None:
        obj = prune_and_default(obj, spec.custom.schema)
        meta = obj["metadata"]
    _check_metadata(spec, meta)
    if spec.storage == NAMESPACES:
        obj["spec"] = {"finalizers": [NAMESPACE_FINALIZER], **(obj.get("spec") or {})}
        obj["status"] = {"phase": "Active"}
    elif spec.storage == SECRETS:
        _normalize_secret(spec, obj, old=None)
    elif spec.storage == CRDS:
        _check_crd(obj)
        meta["finalizers"] = [*meta.get("finalizers", []), CRD_CLEANUP_FINALIZER]
        obj["status"] = crd_status(obj, None, now)
    return obj


def admit_update(
    spec: ResourceSpec,
    old: Mapping[str, Any],
    candidate: Any,
    *,
    subresource: str | None,
    replace: bool,
    now: str,
) -> dict[str, Any]:
    """The object to store for a PUT or PATCH (`candidate` is the body, or the patched object)."""
    new = _decode(spec, candidate)
    meta = new["metadata"]
    old_meta = old["metadata"]
    name = old_meta["name"]
    if meta.get("name", name) != name:
        raise errors.bad_request(
            f"the name of the object ({meta.get('name')}) does not match the name on the URL"
            f" ({name})"
        )
    if meta.get("namespace", old_meta.get("namespace")) != old_meta.get("namespace"):
        raise errors.bad_request(
            "the namespace of the provided object does not match the namespace sent on the request"
        )
    _check_preconditions(spec, old_meta, meta, replace=replace)
    for field in SYSTEM_METADATA:
        if field in old_meta:
            meta[field] = old_meta[field]
        else:
            meta.pop(field, None)
    if subresource == "status":
        new = _only_status_changed(old, new)
    elif subresource == "finalize":
        new = _only_namespace_finalizers_changed(old, new)
    elif spec.has_status:
        _keep(new, old, "status")
    if spec.custom is not None:
        new = prune_and_default(new, spec.custom.schema)
    _check_metadata(spec, new["metadata"])
    _check_finalizers_while_deleting(spec, old_meta, new["metadata"])
    if spec.storage == NAMESPACES and subresource != "finalize":
        _keep(new, old, "spec")  # a namespace's finalizers change only through /finalize
    elif spec.storage == SECRETS:
        _normalize_secret(spec, new, old=old)
    elif spec.storage == CRDS:
        _check_crd(new)
        new["status"] = crd_status(new, old.get("status"), now)
    return new


def _decode(spec: ResourceSpec, body: Any) -> dict[str, Any]:
    """Reject what a real server could not decode into the API type, then fill apiVersion/kind."""
    if not isinstance(body, Mapping):
        raise errors.bad_request("the body of the request must be a JSON object")
    obj = copy.deepcopy(dict(body))
    if obj.get("kind", spec.kind) != spec.kind or obj.get("apiVersion", spec.api_version) not in {
        spec.api_version,
        *_other_versions(spec),
    }:
        raise errors.bad_request(
            f"the API version in the data ({obj.get('apiVersion')}) does not match the expected"
            f" API version ({spec.api_version}), or the kind ({obj.get('kind')}) is not"
            f" {spec.kind}"
        )
    obj = {"apiVersion": spec.api_version, "kind": spec.kind, "metadata": {}, **obj}
    obj["apiVersion"], obj["kind"] = spec.api_version, spec.kind
    meta = obj["metadata"]
    if not isinstance(meta, dict):
        raise errors.bad_request("metadata must be a JSON object")
    return obj


def _other_versions(spec: ResourceSpec) -> set[str]:
    # A CRD serves one object through all its versions; a body may name any of them.
    if spec.custom is None:
        return set()
    return {f"{spec.group}/{spec.custom.storage_version}"}


def _keep(new: dict[str, Any], old: Mapping[str, Any], field: str) -> None:
    if field in old:
        new[field] = copy.deepcopy(old[field])
    else:
        new.pop(field, None)


def _only_status_changed(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    result = copy.deepcopy(dict(old))
    if "status" in new:
        result["status"] = new["status"]
    else:
        result.pop("status", None)
    return result


def _only_namespace_finalizers_changed(
    old: Mapping[str, Any], new: Mapping[str, Any]
) -> dict[str, Any]:
    result = copy.deepcopy(dict(old))
    finalizers = (new.get("spec") or {}).get("finalizers") or []
    result.setdefault("spec", {})["finalizers"] = copy.deepcopy(finalizers)
    return result


def _check_preconditions(
    spec: ResourceSpec, old_meta: Mapping[str, Any], meta: Mapping[str, Any], *, replace: bool
) -> None:
    name = old_meta["name"]
    sent = meta.get("resourceVersion")
    if sent not in (None, "") and sent != old_meta.get("resourceVersion"):
        raise errors.conflict(spec.qualified_plural, name, errors.STALE_OBJECT)
    if replace and sent in (None, "") and spec.custom is not None:
        raise errors.invalid(
            spec.kind, name, "metadata.resourceVersion", "must be specified for an update"
        )
    sent_uid = meta.get("uid")
    if sent_uid not in (None, "") and sent_uid != old_meta.get("uid"):
        raise errors.conflict(
            spec.qualified_plural,
            name,
            f"Precondition failed: UID in precondition: {sent_uid},"
            f" UID in object meta: {old_meta.get('uid')}",
        )


def _check_finalizers_while_deleting(
    spec: ResourceSpec, old_meta: Mapping[str, Any], meta: Mapping[str, Any]
) -> None:
    if not old_meta.get("deletionTimestamp"):
        return
    added = set(meta.get("finalizers") or []) - set(old_meta.get("finalizers") or [])
    if added:
        raise errors.invalid(
            spec.kind,
            old_meta["name"],
            "metadata.finalizers",
            "Forbidden: no new finalizers can be added if the object is being deleted",
        )


def _check_name(spec: ResourceSpec, name: str) -> None:
    pattern = _DNS_LABEL if spec.storage == NAMESPACES else _DNS_SUBDOMAIN
    if not pattern.fullmatch(name):
        raise errors.invalid(
            spec.kind,
            name,
            "metadata.name",
            "Invalid value: a lowercase RFC 1123 name must consist of lower case alphanumeric"
            " characters, '-' or '.', and must start and end with an alphanumeric character",
        )


def _check_metadata(spec: ResourceSpec, meta: Mapping[str, Any]) -> None:
    name = str(meta.get("name", ""))
    labels = _string_map(meta.get("labels"), "metadata.labels")
    for key, value in labels.items():
        if not is_label_key(key) or not is_label_value(value):
            raise errors.invalid(
                spec.kind, name, f"metadata.labels[{key}]", "Invalid value: not a valid label"
            )
    annotations = _string_map(meta.get("annotations"), "metadata.annotations")
    for key in annotations:
        if not is_label_key(key):
            raise errors.invalid(
                spec.kind, name, "metadata.annotations", f"Invalid value: {key!r}: bad key"
            )
    if sum(len(k) + len(v) for k, v in annotations.items()) > _MAX_ANNOTATIONS_BYTES:
        raise errors.invalid(
            spec.kind, name, "metadata.annotations", "Too long: must have at most 262144 bytes"
        )
    finalizers = meta.get("finalizers")
    if finalizers is not None and (
        not isinstance(finalizers, list) or not all(isinstance(f, str) for f in finalizers)
    ):
        raise errors.bad_request("metadata.finalizers must be a list of strings")


def _string_map(value: Any, field: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise errors.bad_request(f"{field} must map strings to strings")
    return dict(value)


def _normalize_secret(
    spec: ResourceSpec, obj: dict[str, Any], old: Mapping[str, Any] | None
) -> None:
    """Fold `stringData` into `data` and check `data` as the core Secret validation does."""
    name = str(obj["metadata"].get("name", ""))
    data = dict(_string_map(obj.get("data"), "data"))
    for key, text in _string_map(obj.pop("stringData", None), "stringData").items():
        data[key] = base64.b64encode(text.encode()).decode()
    for key, encoded in data.items():
        if not _CONFIG_KEY.fullmatch(key):
            raise errors.invalid(spec.kind, name, f"data[{key}]", "Invalid value: a valid key")
        try:
            base64.b64decode(encoded, validate=True)
        except binascii.Error:
            raise errors.bad_request(f"data[{key}] of the Secret is not valid base64") from None
    if data or "data" in obj:
        obj["data"] = data
    obj.setdefault("type", "Opaque")
    if obj["type"] == "kubernetes.io/tls":
        for required in ("tls.crt", "tls.key"):
            if required not in data:
                raise errors.invalid(spec.kind, name, f"data[{required}]", "Required value")
    if old is not None:
        if obj["type"] != old.get("type", "Opaque"):
            raise errors.invalid(spec.kind, name, "type", "Invalid value: field is immutable")
        if old.get("immutable") and (data != (old.get("data") or {}) or not obj.get("immutable")):
            raise errors.invalid(
                spec.kind, name, "data", "Forbidden: field is immutable when `immutable` is set"
            )


def _check_crd(obj: Mapping[str, Any]) -> None:
    try:
        served_resources(obj)
    except InvalidCrd as problem:
        raise errors.invalid(
            "CustomResourceDefinition.apiextensions.k8s.io",
            str(obj["metadata"].get("name", "")),
            problem.field,
            problem.problem,
        ) from None
