"""The TrustFrameworkKeySet CRD, the examples and the README against what kube-apiserver enforces.

No API server here: crd_schema.py checks the structural-schema rules and validates objects with
jsonschema, and crd_cel.py evaluates the CEL rules with cel-python. The cluster tier applies the
same CRD to a real kube-apiserver.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from crd_cel import CelRules
from crd_schema import (
    ROOT,
    apply_defaults,
    crd_problems,
    load_crd,
    load_yaml_documents,
    resolve_json_path,
    schema_errors,
    served_schema,
)

EXAMPLES = ROOT / "deploy" / "examples"
README = ROOT / "README.md"
API_VERSION = "b2ckeys.dev/v1alpha1"
KIND = "TrustFrameworkKeySet"

CRD = load_crd()
SCHEMA = served_schema(CRD)
RULES = CelRules(SCHEMA)

Object = dict[str, Any]
Modifier = Callable[[Object], None]


# --- admission: what the API server would say -------------------------------------------------


def admission_errors(new: Object, old: Object | None = None) -> list[str]:
    """Why the API server would refuse new (a create, or an update of old): schema errors, then
    CEL refusals. Both objects are defaulted first, as they are on a real server."""
    new = apply_defaults(SCHEMA, new)
    old = apply_defaults(SCHEMA, old) if old is not None else None
    return schema_errors(SCHEMA, new) + RULES.refusals(new, old)


def key_set(*modifiers: Modifier) -> Object:
    """A valid TrustFrameworkKeySet (tlsSecret source), changed by each modifier in turn."""
    obj: Object = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": "token-signing", "namespace": "identity"},
        "spec": {"keySetId": "TokenSigningKeyContainer", "source": {"tlsSecret": {"name": "tls"}}},
    }
    for modify in modifiers:
        modify(obj)
    return obj


def spec(**fields: Any) -> Modifier:
    def modify(obj: Object) -> None:
        obj["spec"].update(copy.deepcopy(fields))

    return modify


def source(**members: Any) -> Modifier:
    def modify(obj: Object) -> None:
        obj["spec"]["source"] = copy.deepcopy(members)

    return modify


def without_spec(field: str) -> Modifier:
    def modify(obj: Object) -> None:
        del obj["spec"][field]

    return modify


EXACTLY_ONE_SOURCE = (
    "source must set exactly one of tlsSecret, pkcs12Secret, certificate, secret or generate"
)
IMMUTABLE = "keySetId is immutable; create a new TrustFrameworkKeySet to manage another key set"
NO_BAK = "keySetId must not end in .bak"
VALIDITY_ONLY = "validity applies only to the secret and generate sources"
ROTATION_ONLY = "rotation applies only to the secret and generate sources"
ONE_CERT_PLACE = "certificate must set exactly one of secretName or configMapName"
ROTATION_SHORTER = "rotation.every must be shorter than validity.lifetime"
ROTATION_POSITIVE = "rotation.every must be longer than zero"
LIFETIME_POSITIVE = "validity.lifetime must be longer than zero"

GENERATE = {"generate": {"kty": "RSA"}}
SECRET = {"secret": {"name": "facebook-app", "key": "client-secret"}}

# (id, object, the start of the one refusal expected, or None for "admitted")
CREATE_CASES: list[tuple[str, Object, str | None]] = [
    ("tls secret", key_set(), None),
    ("secret adopting a kid", key_set(source(**SECRET), spec(adopt={"kid": "k1"})), None),
    (
        "tls secret adopting a kid",
        key_set(spec(adopt={"kid": "k1"})),
        "adopt applies only to the secret source",
    ),
    *[
        (
            f"{kind} naming a namespace",
            key_set(source(**{kind: {**fields, "namespace": "kube-system"}})),
            f"{kind}.namespace cannot be set",
        )
        for kind, fields in (
            ("tlsSecret", {"name": "t"}),
            ("pkcs12Secret", {"name": "p"}),
            ("certificate", {"secretName": "c"}),
            ("secret", {"name": "s", "key": "k"}),
        )
    ],
    ("generate with defaults", key_set(source(generate={})), None),
    ("pkcs12 with defaults", key_set(source(pkcs12Secret={"name": "p12"})), None),
    ("certificate in a secret", key_set(source(certificate={"secretName": "idp"})), None),
    ("certificate in a configmap", key_set(source(certificate={"configMapName": "idp"})), None),
    (
        "secret with validity and rotation",
        key_set(
            source(**SECRET), spec(validity={"lifetime": "8760h"}, rotation={"every": "4380h"})
        ),
        None,
    ),
    (
        "generate with fractional durations",
        key_set(
            source(**GENERATE),
            spec(validity={"notBeforeDelay": "1.5h", "lifetime": "90m"}, rotation={"every": "1h"}),
        ),
        None,
    ),
    (
        "rotation without validity",
        key_set(source(**GENERATE), spec(rotation={"every": "1h"})),
        None,
    ),
    ("prefixed key set id", key_set(spec(keySetId="B2C_1A_TokenSigningKeyContainer")), None),
    ("id merely containing .bak", key_set(spec(keySetId="backup.bakery")), None),
    ("two sources", key_set(source(tlsSecret={"name": "tls"}, **GENERATE)), EXACTLY_ONE_SOURCE),
    (
        "three sources",
        key_set(source(**SECRET, **GENERATE, pkcs12Secret={"name": "p"})),
        EXACTLY_ONE_SOURCE,
    ),
    ("empty source", key_set(source()), EXACTLY_ONE_SOURCE),
    ("validity with a tls secret", key_set(spec(validity={"lifetime": "8760h"})), VALIDITY_ONLY),
    ("empty validity with a tls secret", key_set(spec(validity={})), VALIDITY_ONLY),
    (
        "rotation with a certificate",
        key_set(source(certificate={"secretName": "idp"}), spec(rotation={"every": "4380h"})),
        ROTATION_ONLY,
    ),
    (
        "certificate in both places",
        key_set(source(certificate={"secretName": "idp", "configMapName": "idp"})),
        ONE_CERT_PLACE,
    ),
    (
        "certificate in neither place",
        key_set(source(certificate={"key": "ca.crt"})),
        ONE_CERT_PLACE,
    ),
    ("key set id ending .bak", key_set(spec(keySetId="B2C_1A_Token.bak")), NO_BAK),
    ("key set id ending .BAK", key_set(spec(keySetId="Token.BAK")), NO_BAK),
    (
        "rotation as long as the lifetime",
        key_set(
            source(**GENERATE), spec(validity={"lifetime": "24h"}, rotation={"every": "1440m"})
        ),
        ROTATION_SHORTER,
    ),
    (
        "zero rotation period",
        key_set(source(**SECRET), spec(rotation={"every": "0h0m"})),
        ROTATION_POSITIVE,
    ),
    (
        "zero lifetime",
        key_set(source(**GENERATE), spec(validity={"lifetime": "0s"})),
        LIFETIME_POSITIVE,
    ),
]


@pytest.mark.parametrize(
    ("obj", "refusal"), [c[1:] for c in CREATE_CASES], ids=[c[0] for c in CREATE_CASES]
)
def test_cel_rules_on_create(obj: Object, refusal: str | None) -> None:
    errors = admission_errors(obj)
    if refusal is None:
        assert errors == []
    else:
        assert len(errors) == 1, errors
        assert errors[0].startswith(refusal)


UPDATE_CASES: list[tuple[str, Object, Object, str | None]] = [
    ("unchanged", key_set(), key_set(), None),
    ("other fields change", key_set(), key_set(spec(use="enc", mode="Observe")), None),
    ("key set id changes", key_set(), key_set(spec(keySetId="Other")), IMMUTABLE),
    (
        "prefix added to the id",
        key_set(),
        key_set(spec(keySetId="B2C_1A_TokenSigningKeyContainer")),
        IMMUTABLE,
    ),
]


@pytest.mark.parametrize(
    ("old", "new", "refusal"), [c[1:] for c in UPDATE_CASES], ids=[c[0] for c in UPDATE_CASES]
)
def test_cel_rules_on_update(old: Object, new: Object, refusal: str | None) -> None:
    errors = admission_errors(new, old)
    if refusal is None:
        assert errors == []
    else:
        assert errors == [refusal]


def test_transition_rule_does_not_run_on_create() -> None:
    # On create there is no oldSelf; a transition rule must not run (nor fail) then.
    ran = [v.rule for v in RULES.verdicts(apply_defaults(SCHEMA, key_set()))]
    assert "self == oldSelf" not in ran
    ran_on_update = [v.rule for v in RULES.verdicts(key_set(), key_set())]
    assert "self == oldSelf" in ran_on_update


def test_every_cel_rule_both_admits_and_refuses_in_the_tables() -> None:
    # Proves each rule is really evaluated by cel-python (an unsupported function would only
    # ever error), and that the tables above cover every rule in both directions.
    outcomes: dict[str, set[bool]] = {rule: set() for rule in RULES.rule_texts}
    runs = [(apply_defaults(SCHEMA, obj), None) for _, obj, _ in CREATE_CASES]
    runs += [
        (apply_defaults(SCHEMA, new), apply_defaults(SCHEMA, old))
        for _, old, new, _ in UPDATE_CASES
    ]
    for new, old in runs:
        for verdict in RULES.verdicts(new, old):
            assert "error evaluating rule" not in verdict.message, verdict
            outcomes[verdict.rule].add(verdict.allowed)
    assert {rule: seen for rule, seen in outcomes.items() if seen != {True, False}} == {}


# --- the OpenAPI schema on objects ------------------------------------------------------------

SCHEMA_CASES: list[tuple[str, Object, str]] = [
    (
        "no spec",
        {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": "x"}},
        "'spec' is a required property",
    ),
    ("no source", key_set(without_spec("source")), "'source' is a required property"),
    ("no key set id", key_set(without_spec("keySetId")), "'keySetId' is a required property"),
    ("space in the id", key_set(spec(keySetId="Token Signing")), "does not match"),
    ("id too long", key_set(spec(keySetId="K" * 101)), "is too long"),
    ("unknown use", key_set(spec(use="signing")), "is not one of ['sig', 'enc']"),
    ("unknown mode", key_set(spec(mode="DryRun")), "is not one of ['Sync', 'Observe']"),
    ("unknown deletion policy", key_set(spec(deletionPolicy="Orphan")), "is not one of"),
    ("unknown kty", key_set(source(generate={"kty": "EC"})), "is not one of ['RSA', 'oct']"),
    (
        "days are not a Go duration",
        key_set(source(**GENERATE), spec(rotation={"every": "180d"})),
        "does not match",
    ),
    (
        "rotation without every",
        key_set(source(**GENERATE), spec(rotation={})),
        "'every' is a required property",
    ),
    ("secret without key", key_set(source(secret={"name": "s"})), "'key' is a required property"),
    (
        "tenantRef without name",
        key_set(spec(tenantRef={"kind": "B2CTenant"})),
        "'name' is a required property",
    ),
    (
        "unknown tenant kind",
        key_set(spec(tenantRef={"kind": "Tenant", "name": "t"})),
        "is not one of",
    ),
    (
        "namespace longer than a namespace name",
        key_set(source(tlsSecret={"name": "t", "namespace": "x" * 64})),
        "is too long",
    ),
    ("misspelt field", key_set(spec(keysetId="x")), "Additional properties are not allowed"),
    ("upper-case secret name", key_set(source(tlsSecret={"name": "TLS"})), "does not match"),
    ("string for a boolean", key_set(spec(allowNotYetValid="yes")), "is not of type 'boolean'"),
]


@pytest.mark.parametrize(
    ("obj", "fragment"), [c[1:] for c in SCHEMA_CASES], ids=[c[0] for c in SCHEMA_CASES]
)
def test_schema_refuses(obj: Object, fragment: str) -> None:
    errors = schema_errors(SCHEMA, apply_defaults(SCHEMA, obj))
    assert any(fragment in error for error in errors), errors


def test_defaults_fill_in_what_the_operator_reads() -> None:
    obj = apply_defaults(
        SCHEMA,
        key_set(
            spec(tenantRef={"name": "contoso"}, validity={}),
            source(pkcs12Secret={"name": "p12"}),
        ),
    )
    assert obj["spec"] == {
        "keySetId": "TokenSigningKeyContainer",
        "tenantRef": {"kind": "ClusterB2CTenant", "name": "contoso"},
        "source": {
            "pkcs12Secret": {"name": "p12", "key": "keystore.p12", "passwordKey": "password"}
        },
        "validity": {"notBeforeDelay": "0s"},
        "use": "sig",
        "allowNotYetValid": False,
        "deletionPolicy": "Retain",
        "mode": "Sync",
    }
    assert apply_defaults(SCHEMA, key_set(source(generate={})))["spec"]["source"] == GENERATE
    cert = apply_defaults(SCHEMA, key_set(source(certificate={"configMapName": "c"})))
    assert cert["spec"]["source"]["certificate"] == {"configMapName": "c", "key": "tls.crt"}


def full_status() -> Object:
    """A status with every declared field, as the operator would write it."""
    return {
        "observedGeneration": 3,
        "keySetId": "B2C_1A_TokenSigningKeyContainer",
        "source": "tlsSecret/token-signing-tls",
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "Synced",
                "message": "B2C holds it",
                "observedGeneration": 3,
                "lastTransitionTime": "2026-01-02T03:04:05Z",
            },
        ],
        "activeKey": {
            "kid": "k1",
            "kty": "RSA",
            "use": "sig",
            "x5t": "abc",
            "notBefore": "2026-01-01T00:00:00Z",
            "expires": "2027-01-01T00:00:00+00:00",
            "status": "enabled",
        },
        "syncedKey": {
            "kid": "k1",
            "kty": "RSA",
            "use": "sig",
            "x5t": "abc",
            "notBefore": "2026-01-01T00:00:00Z",
            "expires": "2027-01-01T00:00:00Z",
            "uploadedAt": "2026-01-01T00:00:01.5Z",
        },
        "keyCount": 3,
        "lastSyncTime": "2026-01-02T03:04:05Z",
        "nextSyncTime": "2026-01-02T03:14:05Z",
        "sourceFingerprint": "x5t#S256:abc",
        "pendingWrite": {
            "action": "uploadPkcs12",
            "keySetId": "B2C_1A_TokenSigningKeyContainer",
            "fingerprint": "f",
            "x5t": "abc",
            "nbf": 1767225600,
            "exp": 1798761600,
            "startedAt": "2026-01-02T03:04:05Z",
        },
        "plan": ["uploadPkcs12 x5t=abc"],
        "uploadedKeys": [
            {
                "kid": "k0",
                "x5t": "old",
                "notBefore": "2025-01-01T00:00:00Z",
                "expires": "2026-06-01T00:00:00Z",
                "uploadedAt": "2025-01-01T00:00:01Z",
                "supersededAt": "2026-01-01T00:00:01Z",
                "retiredAt": "2026-01-31T00:00:01Z",
                "error": "[400 AADB2C90134] refused once",
            },
        ],
        "foreignKeys": ["by-hand"],
        "keyStatusRequest": {
            "id": "2026-01-02T03:04:05.000001Z",
            "kid": "by-hand",
            "status": "disabled",
            "result": "Done",
            "message": "key by-hand disabled in B2C_1A_TokenSigningKeyContainer",
            "at": "2026-01-02T03:04:06Z",
        },
        "kopf": {"progress": {"anything": {"retries": 1}}, "dummy": "2026"},
    }


def test_a_full_status_is_valid_and_every_status_field_is_exercised() -> None:
    status = full_status()
    assert schema_errors(SCHEMA, key_set(lambda o: o.update(status=status))) == []
    # Every declared status field appears above, so none is left untested.
    assert set(status) == set(SCHEMA["properties"]["status"]["properties"])


STATUS_CASES: list[tuple[str, Callable[[Object], None], str]] = [
    (
        "unknown condition status",
        lambda s: s["conditions"][0].update(status="Yes"),
        "is not one of",
    ),
    ("condition without type", lambda s: s["conditions"][0].pop("type"), "'type' is a required"),
    (
        "reason with spaces",
        lambda s: s["conditions"][0].update(reason="Not Ready"),
        "does not match",
    ),
    (
        "date without zone",
        lambda s: s.update(lastSyncTime="2026-01-02T03:04:05"),
        "is not a 'date-time'",
    ),
    ("date as a number", lambda s: s["activeKey"].update(expires=1798761600), "is not of type"),
    ("unknown write", lambda s: s["pendingWrite"].update(action="putKey"), "is not one of"),
    (
        "undeclared status field (a server prunes it)",
        lambda s: s.update(handler={"done": True}),
        "Additional properties are not allowed",
    ),
    ("negative key count", lambda s: s.update(keyCount=-1), "is less than the minimum"),
    ("key count past int32", lambda s: s.update(keyCount=2**31), "is not a 'int32'"),
]


@pytest.mark.parametrize(
    ("breaks", "fragment"), [c[1:] for c in STATUS_CASES], ids=[c[0] for c in STATUS_CASES]
)
def test_status_schema_refuses(breaks: Callable[[Object], None], fragment: str) -> None:
    status = full_status()
    breaks(status)
    errors = schema_errors(SCHEMA, key_set(lambda o: o.update(status=status)))
    assert any(fragment in error for error in errors), errors


# --- the CRD itself -------------------------------------------------------------------------


def test_crd_obeys_the_structural_schema_rules() -> None:
    assert crd_problems(CRD) == []


def test_crd_names_and_shape() -> None:
    assert CRD["metadata"]["name"] == "trustframeworkkeysets.b2ckeys.dev"
    assert CRD["spec"]["scope"] == "Namespaced"
    assert CRD["spec"]["names"] == {
        "kind": KIND,
        "listKind": f"{KIND}List",
        "plural": "trustframeworkkeysets",
        "singular": "trustframeworkkeyset",
        "shortNames": ["tfks"],
        "categories": ["b2ckeys"],
    }
    (version,) = CRD["spec"]["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}
    kopf = SCHEMA["properties"]["status"]["properties"]["kopf"]
    assert kopf["x-kubernetes-preserve-unknown-fields"] is True
    # Only status.kopf may keep undeclared fields: everything else the operator writes is declared.
    assert _preserving_paths(SCHEMA) == [".status.kopf"]


def _preserving_paths(node: dict[str, Any], path: str = "") -> list[str]:
    found = [path] if node.get("x-kubernetes-preserve-unknown-fields") else []
    for name, child in node.get("properties", {}).items():
        found += _preserving_paths(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        found += _preserving_paths(node["items"], f"{path}[]")
    return found


def test_printer_columns() -> None:
    (version,) = CRD["spec"]["versions"]
    columns = {c["name"].upper(): c for c in version["additionalPrinterColumns"]}
    assert list(columns) == ["READY", "REASON", "KEYSET", "SOURCE", "ACTIVE-KID", "EXPIRES", "AGE"]
    assert columns["READY"]["jsonPath"] == '.status.conditions[?(@.type=="Ready")].status'
    assert columns["REASON"]["jsonPath"] == '.status.conditions[?(@.type=="Ready")].reason'
    assert columns["ACTIVE-KID"]["priority"] == 1
    assert [n for n, c in columns.items() if c.get("priority", 0) > 0] == ["ACTIVE-KID"]
    assert columns["AGE"]["type"] == "date"
    # kubectl prints a future `date` as <invalid>; an expiry reads best as the timestamp itself.
    assert columns["EXPIRES"]["type"] == "string"
    assert resolve_json_path(SCHEMA, columns["EXPIRES"]["jsonPath"]) == _node(
        CRD, "status.activeKey.expires"
    )


# --- the checker can fail ----------------------------------------------------------------------


def _node(crd: Object, dotted: str) -> Object:
    node: Object = served_schema(crd)
    for name in dotted.split("."):
        node = node["items"] if name == "[]" else node["properties"][name]
    return node


def _break(dotted: str, change: Callable[[Object], object]) -> Modifier:
    def modify(crd: Object) -> None:
        change(_node(crd, dotted))

    return modify


def _column(crd: Object, path: str) -> None:
    crd["spec"]["versions"][0]["additionalPrinterColumns"][0]["jsonPath"] = path


BROKEN_CRDS: list[tuple[str, Callable[[Object], None], str]] = [
    (
        "missing type",
        _break("spec.use", lambda n: n.pop("type")),
        ".spec.use: every node must specify a non-empty type",
    ),
    (
        "empty type",
        _break("status.plan.[]", lambda n: n.update(type="")),
        ".status.plan[]: every node must specify",
    ),
    (
        "missing description",
        _break("spec.source.secret.key", lambda n: n.pop("description")),
        ".spec.source.secret.key: every field needs a description",
    ),
    (
        "properties with additionalProperties",
        _break(
            "spec.tenantRef",
            lambda n: n.update(additionalProperties={"type": "string", "description": "d"}),
        ),
        "mutually exclusive",
    ),
    (
        "a $ref",
        _break("spec.validity", lambda n: n.update({"$ref": "#/definitions/Validity"})),
        "'$ref' is not allowed",
    ),
    (
        "nullable",
        _break("status.pendingWrite", lambda n: n.update(nullable=True)),
        "'nullable' is not allowed",
    ),
    (
        "typo in a keyword",
        _break("spec.keySetId", lambda n: n.update({"x-kubernetes-validation": []})),
        "unknown keyword",
    ),
    (
        "metadata restricting labels",
        _break("metadata", lambda n: n.update(properties={"labels": {"type": "object"}})),
        "only name and generateName",
    ),
    (
        "metadata with a default",
        _break("metadata", lambda n: n.update(default={})),
        ".metadata: 'default' is not allowed",
    ),
    (
        "default outside its enum",
        _break("spec.mode", lambda n: n.update(default="Both")),
        "default 'Both' is invalid",
    ),
    (
        "default of the wrong type",
        _break("spec.allowNotYetValid", lambda n: n.update(default="no")),
        "is invalid",
    ),
    (
        "default object with an unknown field",
        _break("spec.source.generate", lambda n: n.update(default={"size": 2048})),
        "is invalid",
    ),
    (
        "map key not required",
        _break("status.conditions.[]", lambda n: n["required"].remove("type")),
        "map key 'type' must be required",
    ),
    (
        "map key not a field",
        _break("status.conditions", lambda n: n.update({"x-kubernetes-list-map-keys": ["name"]})),
        "map key 'name' is not a field",
    ),
    (
        "map list without keys",
        _break("status.conditions", lambda n: n.pop("x-kubernetes-list-map-keys")),
        "needs x-kubernetes-list-map-keys",
    ),
    (
        "unbounded string under a rule",
        _break("spec.source.secret.name", lambda n: n.pop("maxLength")),
        "needs maxLength",
    ),
    (
        "pattern that is not RE2",
        _break("spec.keySetId", lambda n: n.update(pattern="^(?!.*bak$).+$")),
        "not valid RE2",
    ),
    (
        "multi-line rule message",
        _break("spec.source", lambda n: n["x-kubernetes-validations"][0].update(message="a\nb")),
        "must not contain line breaks",
    ),
    (
        "rule without message",
        _break("spec.source", lambda n: n["x-kubernetes-validations"][0].pop("message")),
        "needs a message",
    ),
    (
        "required field not declared",
        _break("spec", lambda n: n["required"].append("keySet")),
        "required field 'keySet' is not declared",
    ),
    (
        "array without items",
        _break("status.plan", lambda n: n.pop("items")),
        "needs a single items schema",
    ),
    ("uniqueItems", _break("status.plan", lambda n: n.update(uniqueItems=True)), "uniqueItems"),
    (
        "format on the wrong type",
        _break("status.keyCount", lambda n: n.update(format="date-time")),
        "does not fit type",
    ),
    (
        "preserve-unknown-fields false",
        _break("status.kopf", lambda n: n.update({"x-kubernetes-preserve-unknown-fields": False})),
        "must be true or absent",
    ),
    (
        "type inside a junctor",
        _break(
            "spec.source", lambda n: n.update(oneOf=[{"type": "object", "required": ["secret"]}])
        ),
        "'type' is not allowed inside oneOf",
    ),
    (
        "column to a missing field",
        lambda crd: _column(crd, ".status.ready"),
        "does not exist in the schema",
    ),
    (
        "column filter on a missing field",
        lambda crd: _column(crd, '.status.conditions[?(@.kind=="Ready")].status'),
        "the filter uses 'kind'",
    ),
    (
        "date column on a plain string",
        lambda crd: crd["spec"]["versions"][0]["additionalPrinterColumns"][2].update(type="date"),
        "needs a date-time field",
    ),
    (
        "two storage versions",
        lambda crd: crd["spec"]["versions"].append(
            copy.deepcopy(crd["spec"]["versions"][0]) | {"name": "v1"}
        ),
        "exactly one version",
    ),
    (
        "name not plural.group",
        lambda crd: crd["metadata"].update(name="tfks.b2ckeys.dev"),
        "<plural>.<group>",
    ),
]


@pytest.mark.parametrize(
    ("breaks", "fragment"), [c[1:] for c in BROKEN_CRDS], ids=[c[0] for c in BROKEN_CRDS]
)
def test_checker_catches_a_broken_crd(breaks: Callable[[Object], None], fragment: str) -> None:
    broken = copy.deepcopy(CRD)
    breaks(broken)
    problems = crd_problems(broken)
    assert any(fragment in problem for problem in problems), problems


def test_cel_syntax_errors_are_caught() -> None:
    broken = copy.deepcopy(SCHEMA)
    broken["properties"]["spec"]["x-kubernetes-validations"][0]["rule"] = "has(self.source"
    with pytest.raises(Exception, match="has"):
        CelRules(broken)


def test_a_weakened_rule_lets_two_sources_through() -> None:
    # The verdicts come from evaluating the CRD's text: change the text, and the verdict changes.
    weakened = copy.deepcopy(SCHEMA)
    weakened["properties"]["spec"]["properties"]["source"]["x-kubernetes-validations"][0][
        "rule"
    ] = "[has(self.tlsSecret), has(self.generate)].filter(x, x).size() >= 1"
    two_sources = key_set(source(tlsSecret={"name": "tls"}, **GENERATE))
    assert RULES.refusals(two_sources) == [EXACTLY_ONE_SOURCE]
    assert CelRules(weakened).refusals(two_sources) == []


def test_json_path_resolution() -> None:
    assert resolve_json_path(SCHEMA, ".status.activeKey.kid") == _node(CRD, "status.activeKey.kid")
    assert resolve_json_path(SCHEMA, ".metadata.creationTimestamp") is None
    for bad in (".status.activeKey.kid.x", ".spec.nothing", "status.keySetId", ".metadata.foo"):
        with pytest.raises(LookupError):
            resolve_json_path(SCHEMA, bad)


# --- examples and README ----------------------------------------------------------------------

EXAMPLE_FILES = sorted(EXAMPLES.glob("*.yaml"))
KNOWN_EXAMPLE_KINDS = {
    "Namespace",
    "Secret",
    "ConfigMap",
    "Issuer",
    "Certificate",
    "B2CTenant",
    "ClusterB2CTenant",
    KIND,
}
CLUSTER_SCOPED_KINDS = {"Namespace", "ClusterB2CTenant"}


def _examples() -> Iterator[tuple[Path, Object]]:
    for path in EXAMPLE_FILES:
        for doc in load_yaml_documents(path):
            yield path, doc


def test_the_promised_examples_exist() -> None:
    names = {p.name for p in EXAMPLE_FILES}
    assert {
        "cert-manager-token-signing.yaml",
        "string-secret.yaml",
        "generated-rsa.yaml",
        "generated-enc.yaml",
        "saml-idp-certificate.yaml",
        "pkcs12.yaml",
        "observe-mode.yaml",
    } <= names


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_example_file_is_appliable(path: Path) -> None:
    docs = load_yaml_documents(path)
    assert docs
    for doc in docs:
        assert doc["kind"] in KNOWN_EXAMPLE_KINDS
        assert doc["apiVersion"]
        assert doc["metadata"]["name"]
        if doc["kind"] not in CLUSTER_SCOPED_KINDS:
            assert doc["metadata"]["namespace"] == "identity"
        if doc["kind"] == KIND:
            assert doc["apiVersion"] == API_VERSION
            assert admission_errors(doc) == [], doc["metadata"]["name"]


def test_examples_commit_no_key_material() -> None:
    for path in EXAMPLE_FILES:
        text = path.read_text(encoding="utf-8")
        assert "PRIVATE KEY" not in text, path.name
        assert "BEGIN CERTIFICATE" not in text, path.name
    secrets = [doc for _, doc in _examples() if doc["kind"] == "Secret"]
    assert secrets
    for secret in secrets:
        assert "data" not in secret  # base64 would hide what the value is
        assert all(v.startswith("replace-me") for v in secret["stringData"].values())


def test_examples_do_not_fight_over_a_key_set() -> None:
    # Two resources naming one key set conflict; applying every example must not cause that.
    key_sets = [doc for _, doc in _examples() if doc["kind"] == KIND]
    ids = [re.sub("^B2C_1A_", "", doc["spec"]["keySetId"]) for doc in key_sets]
    assert len(ids) == len(set(ids))
    assert len({doc["metadata"]["name"] for doc in key_sets}) == len(key_sets)


def test_examples_cover_every_source_and_both_modes() -> None:
    key_sets = [doc["spec"] for _, doc in _examples() if doc["kind"] == KIND]
    assert {member for s in key_sets for member in s["source"]} == set(
        SCHEMA["properties"]["spec"]["properties"]["source"]["properties"]
    )
    assert {s.get("mode", "Sync") for s in key_sets} == {"Sync", "Observe"}
    assert {s.get("use", "sig") for s in key_sets} == {"sig", "enc"}


def test_cert_manager_example_feeds_the_key_set() -> None:
    docs = load_yaml_documents(EXAMPLES / "cert-manager-token-signing.yaml")
    (key_set_doc,) = [d for d in docs if d["kind"] == KIND]
    issuers = {d["metadata"]["name"] for d in docs if d["kind"] == "Issuer"}
    certificates = {d["spec"]["secretName"]: d["spec"] for d in docs if d["kind"] == "Certificate"}
    leaf = certificates[key_set_doc["spec"]["source"]["tlsSecret"]["name"]]
    assert leaf["privateKey"]["algorithm"] == "RSA"
    assert leaf["privateKey"]["size"] >= 2048
    assert leaf["usages"] == ["digital signature"]
    assert leaf["secretTemplate"]["labels"] == {"b2ckeys.dev/watch": "true"}
    assert not leaf.get("isCA")
    for certificate in certificates.values():
        assert certificate["issuerRef"]["name"] in issuers


def test_string_secret_example_references_its_secret() -> None:
    docs = load_yaml_documents(EXAMPLES / "string-secret.yaml")
    (secret,) = [d for d in docs if d["kind"] == "Secret"]
    (key_set_doc,) = [d for d in docs if d["kind"] == KIND]
    wanted = key_set_doc["spec"]["source"]["secret"]
    assert secret["metadata"]["name"] == wanted["name"]
    assert wanted["key"] in secret["stringData"]
    assert secret["metadata"]["labels"] == {"b2ckeys.dev/watch": "true"}
    assert "validity" not in key_set_doc["spec"]
    assert "rotation" not in key_set_doc["spec"]


def readme_key_sets(text: str) -> list[Object]:
    """Every TrustFrameworkKeySet in the ```yaml blocks of a Markdown text."""
    blocks = re.findall(r"^```ya?ml[^\n]*\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)
    docs = [doc for block in blocks for doc in yaml.safe_load_all(block) if isinstance(doc, dict)]
    return [doc for doc in docs if doc.get("kind") == KIND]


def test_readme_extraction_finds_key_sets() -> None:
    sample = "text\n```yaml\nkind: Secret\n---\nkind: TrustFrameworkKeySet\nspec: {}\n```\n"
    assert readme_key_sets(sample) == [{"kind": KIND, "spec": {}}]


def test_readme_key_sets_are_valid() -> None:
    # The README may hold no full example yet; each one it does hold must be valid.
    for doc in readme_key_sets(README.read_text(encoding="utf-8")):
        assert admission_errors(doc) == [], doc.get("metadata")
