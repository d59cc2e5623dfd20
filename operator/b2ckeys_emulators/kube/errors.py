"""The API errors a real Kubernetes API server answers with, as `metav1.Status` bodies.

Clients branch on `code` and `reason` (Kopf retries a 422 JSON-patch as a conflict, the kubernetes
client raises `ApiException(status=...)`), so both match what kube-apiserver sends. Messages name
objects, never their contents.
"""

from __future__ import annotations

from typing import Any

import kmock


def status_body(error: kmock.KubernetesError) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": error.message or "",
        "reason": error.reason or "",
        "details": error.details or {},
        "code": error.status,
    }


def _details(resource: str, name: str) -> dict[str, Any]:
    """`resource` is the plural, qualified by its group for non-core ones: `tfks.b2ckeys.dev`."""
    plural, _, group = resource.partition(".")
    details: dict[str, Any] = {"name": name, "kind": plural}
    if group:
        details["group"] = group
    return details


def not_found(resource: str, name: str) -> kmock.KubernetesError:
    return kmock.KubernetesError(
        status=404,
        reason="NotFound",
        message=f'{resource} "{name}" not found',
        details=_details(resource, name),
    )


def unknown_resource() -> kmock.KubernetesError:
    return kmock.KubernetesError(
        status=404, reason="NotFound", message="the server could not find the requested resource"
    )


def already_exists(resource: str, name: str) -> kmock.KubernetesError:
    return kmock.KubernetesError(
        status=409,
        reason="AlreadyExists",
        message=f'{resource} "{name}" already exists',
        details=_details(resource, name),
    )


def conflict(resource: str, name: str, why: str) -> kmock.KubernetesError:
    return kmock.KubernetesError(
        status=409,
        reason="Conflict",
        message=f'Operation cannot be fulfilled on {resource} "{name}": {why}',
        details=_details(resource, name),
    )


STALE_OBJECT = (
    "the object has been modified; please apply your changes to the latest version and try again"
)


def invalid(kind: str, name: str, field: str, problem: str) -> kmock.KubernetesError:
    return kmock.KubernetesError(
        status=422,
        reason="Invalid",
        message=f'{kind} "{name}" is invalid: {field}: {problem}',
        details={
            "name": name,
            "kind": kind,
            "causes": [{"reason": "FieldValueInvalid", "message": problem, "field": field}],
        },
    )


def unprocessable(message: str) -> kmock.KubernetesError:
    return kmock.KubernetesError(status=422, reason="Invalid", message=message)


def bad_request(message: str) -> kmock.KubernetesError:
    return kmock.KubernetesError(status=400, reason="BadRequest", message=message)


def forbidden(message: str) -> kmock.KubernetesError:
    return kmock.KubernetesError(status=403, reason="Forbidden", message=message)


def method_not_allowed() -> kmock.KubernetesError:
    return kmock.KubernetesError(
        status=405,
        reason="MethodNotAllowed",
        message="the server does not allow this method on the requested resource",
    )


def unsupported_media_type(content_type: str, accepted: list[str]) -> kmock.KubernetesError:
    return kmock.KubernetesError(
        status=415,
        reason="UnsupportedMediaType",
        message=(
            f"the body of the request was in an unknown format ({content_type or 'none'})"
            f" - accepted media types include: {', '.join(accepted)}"
        ),
    )


def expired(requested: int, oldest: int) -> kmock.KubernetesError:
    return kmock.KubernetesError(
        status=410,
        reason="Expired",
        message=f"too old resource version: {requested} ({oldest})",
    )


def internal_error(exc: BaseException) -> kmock.KubernetesError:
    # Only the exception's type: its text could quote object contents.
    return kmock.KubernetesError(
        status=500,
        reason="InternalError",
        message=f"the emulator failed with {type(exc).__name__}; see KubeEmulator.internal_errors",
    )
