"""The CRDs in crds/ on a real kube-apiserver: defaults, schema and CEL admission, the status
subresource, pruning, generation, and the deploy examples.

Expected rejections are built from the CRD's own rule messages and patterns. Each is compared
with the server's cause, `<field>: <detail>`, which is the line `kubectl apply` prints (checked
with kubectl 1.32 against this tier):

    The TrustFrameworkKeySet "two" is invalid: spec.source: Invalid value: source must set ...

and, when there are several causes, one `* <field>: <detail>` line each.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any, cast

import pytest
import yaml
from apiserver import ROOT, KubeCluster, iter_documents
from kubernetes import client as k8s

pytestmark = pytest.mark.cluster

GROUP, VERSION, PLURAL, KIND = (
    "b2ckeys.dev",
    "v1alpha1",
    "trustframeworkkeysets",
    ("TrustFrameworkKeySet"),
)
CRD_PATH = ROOT / "crds" / "trustframeworkkeysets.yaml"
EXAMPLES_DIR = ROOT / "deploy" / "examples"
DEPLOY_BASE_DIR = ROOT / "deploy" / "base"
# Files in deploy/ that are not Kubernetes objects.
NOT_OBJECTS = {"kustomization.yaml", "kustomization.yml"}

VALID_SPEC: dict[str, Any] = {
    "keySetId": "TokenSigningKeyContainer",
    "source": {"tlsSecret": {"name": "token-signing-tls"}},
}


# --- helpers ------------------------------------------------------------------------------------


@cache
def crd_schema() -> dict[str, Any]:
    crd = yaml.safe_load(CRD_PATH.read_text(encoding="utf-8"))
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == VERSION]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def schema_at(field: str) -> dict[str, Any]:
    node = crd_schema()
    for part in field.split("."):
        node = node["properties"][part]
    return node


def rule_message(field: str, rule_contains: str) -> str:
    """The message of the CEL rule on `field` whose expression contains `rule_contains`."""
    rules = schema_at(field)["x-kubernetes-validations"]
    (message,) = [r["message"] for r in rules if rule_contains in r["rule"]]
    return str(message)


def keyset(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {"name": name},
        "spec": spec,
    }


def with_spec(**changes: Any) -> dict[str, Any]:
    spec = copy.deepcopy(VALID_SPEC)
    spec.update(changes)
    return spec


def invalid_prefix(name: str) -> str:
    return f'{KIND}.{GROUP} "{name}" is invalid: '


def rejection(call: Callable[[], object]) -> tuple[int, str, list[tuple[str, str]]]:
    """Status code, message and (field, message) causes of a request the server refuses."""
    with pytest.raises(k8s.ApiException) as raised:
        call()
    body = json.loads(raised.value.body or "{}")
    causes = [(c.get("field", ""), c["message"]) for c in body["details"].get("causes", [])]
    return int(raised.value.status), str(body["message"]), causes


@pytest.fixture
def objects(kube_cluster: KubeCluster) -> k8s.CustomObjectsApi:
    return k8s.CustomObjectsApi(kube_cluster.admin)


def create(api: k8s.CustomObjectsApi, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
    # CustomObjectsApi is annotated as returning `object`; it returns the decoded JSON.
    return cast(
        dict[str, Any], api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    )


def read(api: k8s.CustomObjectsApi, namespace: str, name: str) -> dict[str, Any]:
    return cast(
        dict[str, Any], api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    )


# --- installation -------------------------------------------------------------------------------


def test_every_crd_is_established_and_served(installed_crds: list[str]) -> None:
    assert f"{PLURAL}.{GROUP}" in installed_crds


# --- defaults -----------------------------------------------------------------------------------

DEFAULTED_TOP_LEVEL = {
    "use": "sig",
    "deletionPolicy": "Retain",
    "mode": "Sync",
    "allowNotYetValid": False,
}

DEFAULT_CASES = {
    "tlsSecret": (
        {"source": {"tlsSecret": {"name": "token-signing-tls"}}},
        {"source": {"tlsSecret": {"name": "token-signing-tls"}}},
    ),
    "pkcs12Secret": (
        {"source": {"pkcs12Secret": {"name": "saml-keystore"}}},
        {
            "source": {
                "pkcs12Secret": {
                    "name": "saml-keystore",
                    "key": "keystore.p12",
                    "passwordKey": "password",
                }
            }
        },
    ),
    "certificate": (
        {"source": {"certificate": {"configMapName": "idp-cert"}}},
        {"source": {"certificate": {"configMapName": "idp-cert", "key": "tls.crt"}}},
    ),
    "secret": (
        {"source": {"secret": {"name": "facebook-app", "key": "client-secret"}}},
        {"source": {"secret": {"name": "facebook-app", "key": "client-secret"}}},
    ),
    "generate": (
        {
            "source": {"generate": {}},
            "validity": {"lifetime": "8760h"},
            "rotation": {"every": "4380h"},
        },
        {
            "source": {"generate": {"kty": "RSA"}},
            "validity": {"lifetime": "8760h", "notBeforeDelay": "0s"},
            "rotation": {"every": "4380h"},
        },
    ),
    "tenantRef": (
        {"tenantRef": {"name": "contoso-prod"}},
        {"tenantRef": {"name": "contoso-prod", "kind": "ClusterB2CTenant"}},
    ),
}


@pytest.mark.parametrize(("changes", "expected"), DEFAULT_CASES.values(), ids=DEFAULT_CASES)
def test_valid_resource_is_accepted_with_defaults_applied(
    installed_crds: list[str],
    objects: k8s.CustomObjectsApi,
    namespace: str,
    changes: dict[str, Any],
    expected: dict[str, Any],
) -> None:
    create(objects, namespace, keyset("valid", with_spec(**changes)))

    spec = read(objects, namespace, "valid")["spec"]

    assert spec == {**VALID_SPEC, **DEFAULTED_TOP_LEVEL, **expected}


# --- admission: schema and CEL ------------------------------------------------------------------


def _cel(field: str, rule_contains: str) -> str:
    return f"{field}: Invalid value: {rule_message(field, rule_contains)}"


# id -> (spec, the single field error the user is shown)
REJECTED_SPECS: dict[str, tuple[dict[str, Any], Callable[[], str]]] = {
    "two sources": (
        with_spec(source={"tlsSecret": {"name": "a"}, "generate": {"kty": "RSA"}}),
        lambda: _cel("spec.source", ".filter("),
    ),
    "no source": (
        with_spec(source={}),
        lambda: _cel("spec.source", ".filter("),
    ),
    "bad enum": (
        with_spec(use="foo"),
        lambda: (
            'spec.use: Unsupported value: "foo": supported values: '
            + ", ".join(f'"{v}"' for v in schema_at("spec.use")["enum"])
        ),
    ),
    "bad keySetId pattern": (
        with_spec(keySetId="Token Signing!"),
        lambda: (
            'spec.keySetId: Invalid value: "Token Signing!": spec.keySetId in body should '
            f"match '{schema_at('spec.keySetId')['pattern']}'"
        ),
    ),
    "keySetId ending in .bak": (
        with_spec(keySetId="TokenSigningKeyContainer.bak"),
        lambda: (
            'spec.keySetId: Invalid value: "TokenSigningKeyContainer.bak": '
            + rule_message("spec.keySetId", "bak")
        ),
    ),
    "validity with a tlsSecret source": (
        with_spec(validity={"lifetime": "8760h"}),
        lambda: _cel("spec", "!has(self.validity) || has(self.source.secret)"),
    ),
    "rotation with a tlsSecret source": (
        with_spec(rotation={"every": "4380h"}),
        lambda: _cel("spec", "!has(self.rotation) || has(self.source.secret)"),
    ),
    "rotation not shorter than lifetime": (
        with_spec(
            source={"generate": {}},
            validity={"lifetime": "8760h"},
            rotation={"every": "8760h"},
        ),
        lambda: _cel("spec", "duration(self.rotation.every)"),
    ),
    "zero lifetime": (
        with_spec(source={"generate": {}}, validity={"lifetime": "0s"}),
        lambda: (
            'spec.validity.lifetime: Invalid value: "0s": '
            + rule_message("spec.validity.lifetime", "duration(self)")
        ),
    ),
    "certificate from both a Secret and a ConfigMap": (
        with_spec(source={"certificate": {"secretName": "a", "configMapName": "b"}}),
        lambda: _cel("spec.source.certificate", "has(self.secretName)"),
    ),
}


@pytest.mark.parametrize(
    ("spec", "expected_error"), REJECTED_SPECS.values(), ids=list(REJECTED_SPECS)
)
def test_invalid_resource_is_refused_with_the_message_kubectl_shows(
    installed_crds: list[str],
    objects: k8s.CustomObjectsApi,
    namespace: str,
    spec: dict[str, Any],
    expected_error: Callable[[], str],
) -> None:
    status, message, causes = rejection(lambda: create(objects, namespace, keyset("bad", spec)))

    assert status == 422
    # A schema error (enum) also adds a "<nil>" cause; see the test below.
    assert [f"{field}: {detail}" for field, detail in causes if field != "<nil>"] == [
        expected_error()
    ]
    assert message.startswith(invalid_prefix("bad")), message
    with pytest.raises(k8s.ApiException):
        read(objects, namespace, "bad")


def test_a_schema_error_hides_the_cel_verdicts_behind_a_nil_cause(
    installed_crds: list[str], objects: k8s.CustomObjectsApi, namespace: str
) -> None:
    # Surprising but real: once a field fails the OpenAPI schema, kube-apiserver skips the CEL
    # rules of the objects around it and says so in an extra cause with field "<nil>", which
    # `kubectl apply` prints as part of the message. Pinned so a Kubernetes upgrade that
    # changes it is noticed (the README's troubleshooting quotes these messages).
    _, message, causes = rejection(
        lambda: create(objects, namespace, keyset("bad", with_spec(use="foo")))
    )

    assert [field for field, _ in causes] == ["spec.use", "<nil>"]
    assert "some validation rules were not checked because the object was invalid" in message


def test_missing_source_is_a_required_field(
    installed_crds: list[str], objects: k8s.CustomObjectsApi, namespace: str
) -> None:
    spec = {"keySetId": "TokenSigningKeyContainer"}

    status, message, causes = rejection(lambda: create(objects, namespace, keyset("bad", spec)))

    assert status == 422
    assert ("spec.source", "Required value") in causes
    assert message.startswith(invalid_prefix("bad") + "[spec.source: Required value")


def test_changing_key_set_id_is_refused_as_immutable(
    installed_crds: list[str], objects: k8s.CustomObjectsApi, namespace: str
) -> None:
    create(objects, namespace, keyset("immutable", VALID_SPEC))

    status, message, _ = rejection(
        lambda: objects.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, "immutable", {"spec": {"keySetId": "Other"}}
        )
    )

    assert status == 422
    assert message == invalid_prefix("immutable") + (
        'spec.keySetId: Invalid value: "Other": ' + rule_message("spec.keySetId", "oldSelf")
    )
    assert read(objects, namespace, "immutable")["spec"]["keySetId"] == VALID_SPEC["keySetId"]


def test_other_spec_fields_stay_editable(
    installed_crds: list[str], objects: k8s.CustomObjectsApi, namespace: str
) -> None:
    create(objects, namespace, keyset("editable", VALID_SPEC))

    objects.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "editable", {"spec": {"deletionPolicy": "Delete"}}
    )

    assert read(objects, namespace, "editable")["spec"]["deletionPolicy"] == "Delete"


# --- status subresource -------------------------------------------------------------------------

# Every field the operator writes (b2ckeys.sync and b2ckeys.conditions), filled in.
FULL_STATUS: dict[str, Any] = {
    "observedGeneration": 1,
    "keySetId": "B2C_1A_TokenSigningKeyContainer",
    "source": "tlsSecret/token-signing-tls",
    "conditions": [
        {
            "type": "Ready",
            "status": "True",
            "reason": "Synced",
            "message": "B2C uses the certificate from Secret token-signing-tls.",
            "observedGeneration": 1,
            "lastTransitionTime": "2026-01-02T03:04:05Z",
        }
    ],
    "activeKey": {
        "kid": "Ao3CoGyl4Zr0qzKxkLkQdJ8kRoyqDJAkCl0p3UzlDMk",
        "kty": "RSA",
        "use": "sig",
        "x5t": "mP1vU7dRSVRsySJMx3rzb0xhN5E",
        "notBefore": "2026-01-01T00:00:00Z",
        "expires": "2027-01-01T00:00:00Z",
        "status": "enabled",
    },
    "syncedKey": {
        "kid": "Ao3CoGyl4Zr0qzKxkLkQdJ8kRoyqDJAkCl0p3UzlDMk",
        "kty": "RSA",
        "use": "sig",
        "x5t": "mP1vU7dRSVRsySJMx3rzb0xhN5E",
        "notBefore": "2026-01-01T00:00:00Z",
        "expires": "2027-01-01T00:00:00Z",
        "uploadedAt": "2026-01-02T03:04:05Z",
    },
    "keyCount": 3,
    "lastSyncTime": "2026-01-02T03:04:05Z",
    "nextSyncTime": "2026-01-02T03:14:05Z",
    "sourceFingerprint": "x5t#S256:q1MKE-RZFJgrefm34_uDo0TC7Yz9cjtUiXoaRJIZ7XY",
    "pendingWrite": {
        "action": "uploadPkcs12",
        "keySetId": "B2C_1A_TokenSigningKeyContainer",
        "fingerprint": "x5t#S256:q1MKE-RZFJgrefm34_uDo0TC7Yz9cjtUiXoaRJIZ7XY",
        "x5t": "mP1vU7dRSVRsySJMx3rzb0xhN5E",
        "nbf": 1767225600,
        "exp": 1798761600,
        "startedAt": "2026-01-02T03:04:04Z",
    },
    "plan": ["uploadPkcs12 x5t=mP1vU7dRSVRsySJMx3rzb0xhN5E"],
    # Kopf's own progress records (settings.persistence in b2ckeys.handlers).
    "kopf": {"progress": {"keysets": {"started": "2026-01-02T03:04:04Z", "retries": 1}}},
}


def patch_status(
    api: k8s.CustomObjectsApi, namespace: str, name: str, status: dict[str, Any]
) -> dict[str, Any]:
    return cast(
        dict[str, Any],
        api.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, PLURAL, name, {"status": status}
        ),
    )


def test_full_status_round_trips_through_the_status_subresource(
    installed_crds: list[str], objects: k8s.CustomObjectsApi, namespace: str
) -> None:
    create(objects, namespace, keyset("status", VALID_SPEC))

    patch_status(objects, namespace, "status", FULL_STATUS)

    assert read(objects, namespace, "status")["status"] == FULL_STATUS


def test_undeclared_status_fields_are_pruned(
    installed_crds: list[str], objects: k8s.CustomObjectsApi, namespace: str
) -> None:
    create(objects, namespace, keyset("pruned", VALID_SPEC))

    patch_status(
        objects,
        namespace,
        "pruned",
        {
            "keyCount": 1,
            "undeclared": "dropped",
            "activeKey": {"kid": "k1", "undeclaredToo": "dropped"},
            "kopf": {"anything": {"kept": True}},
        },
    )

    assert read(objects, namespace, "pruned")["status"] == {
        "keyCount": 1,
        "activeKey": {"kid": "k1"},
        "kopf": {"anything": {"kept": True}},
    }


def test_status_is_validated_against_its_schema(
    installed_crds: list[str], objects: k8s.CustomObjectsApi, namespace: str
) -> None:
    create(objects, namespace, keyset("status-schema", VALID_SPEC))
    bad_condition = {**FULL_STATUS["conditions"][0], "status": "Maybe"}

    status, message, _ = rejection(
        lambda: patch_status(objects, namespace, "status-schema", {"conditions": [bad_condition]})
    )

    assert status == 422
    assert 'status.conditions[0].status: Unsupported value: "Maybe"' in message


def test_status_and_spec_are_only_written_through_their_own_endpoints(
    installed_crds: list[str], objects: k8s.CustomObjectsApi, namespace: str
) -> None:
    create(objects, namespace, keyset("split", VALID_SPEC))
    patch_status(objects, namespace, "split", {"keyCount": 3})

    objects.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "split", {"status": {"keyCount": 99}}
    )
    objects.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, PLURAL, "split", {"spec": {"use": "enc"}}
    )

    stored = read(objects, namespace, "split")
    assert stored["status"] == {"keyCount": 3}
    assert stored["spec"]["use"] == "sig"


def test_spec_changes_bump_generation_and_status_changes_do_not(
    installed_crds: list[str], objects: k8s.CustomObjectsApi, namespace: str
) -> None:
    def generation() -> int:
        return int(read(objects, namespace, "generation")["metadata"]["generation"])

    create(objects, namespace, keyset("generation", VALID_SPEC))
    assert generation() == 1

    patch_status(objects, namespace, "generation", FULL_STATUS)
    assert generation() == 1
    objects.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "generation", {"metadata": {"labels": {"team": "id"}}}
    )
    assert generation() == 1

    objects.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "generation", {"spec": {"use": "enc"}}
    )
    assert generation() == 2


# --- deploy manifests ---------------------------------------------------------------------------


def example_files() -> list[Path]:
    return sorted(EXAMPLES_DIR.glob("*.yaml"))


def deploy_base_files() -> list[Path]:
    return sorted(p for p in DEPLOY_BASE_DIR.glob("*.yaml") if p.name not in NOT_OBJECTS)


def test_there_are_examples_and_deploy_manifests_to_check() -> None:
    assert example_files(), f"no examples in {EXAMPLES_DIR}"
    assert deploy_base_files(), f"no manifests in {DEPLOY_BASE_DIR}"


@pytest.fixture(scope="module")
def manifest_namespaces(kube_cluster: KubeCluster) -> None:
    """The namespaces the manifests live in, created for real (a dry-run would not make them)."""
    for path in [*example_files(), *deploy_base_files()]:
        for document in iter_documents(path.read_text(encoding="utf-8")):
            if document["kind"] == "Namespace":
                kube_cluster.apply(document)
            elif namespace := (document.get("metadata") or {}).get("namespace"):
                kube_cluster.create_namespace(namespace)


@pytest.mark.parametrize(
    "path", [*example_files(), *deploy_base_files()], ids=lambda p: str(p.relative_to(ROOT))
)
def test_manifest_is_accepted_by_a_server_side_dry_run(
    kube_cluster: KubeCluster,
    installed_crds: list[str],
    stand_in_crds: list[str],
    manifest_namespaces: None,
    path: Path,
) -> None:
    documents = list(iter_documents(path.read_text(encoding="utf-8")))

    results = kube_cluster.apply(documents, dry_run=True)

    assert [(r["kind"], r["metadata"]["name"]) for r in results] == [
        (d["kind"], d["metadata"]["name"]) for d in documents
    ]
    for result in results:
        if result["kind"] == KIND:
            # What the server would store, defaults included: the operator can parse it.
            assert {"use", "deletionPolicy", "mode"} <= set(result["spec"])
