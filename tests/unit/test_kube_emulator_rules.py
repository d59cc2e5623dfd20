"""The kube-emulator's pure rules: selectors, patch formats, schema pruning and defaulting."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from b2ckeys_emulators.kube.patching import (
    PatchError,
    PatchMalformed,
    PatchTestFailed,
    apply_json_patch,
    apply_merge_patch,
    apply_strategic_merge_patch,
)
from b2ckeys_emulators.kube.paths import ApiPath, parse_api_path, request_verb
from b2ckeys_emulators.kube.schema import prune_and_default
from b2ckeys_emulators.kube.selectors import (
    SelectorError,
    parse_field_selector,
    parse_label_selector,
    supported_fields,
)
from b2ckeys_emulators.kube.tables import human_duration, jsonpath

LABELS = {"app": "web", "tier": "front", "rank": "3"}


@pytest.mark.parametrize(
    ("selector", "matches"),
    [
        ("", True),
        ("app=web", True),
        ("app==web", True),
        ("app!=web", False),
        ("missing!=x", True),
        ("app", True),
        ("!app", False),
        ("!missing", True),
        ("app in (web,api)", True),
        ("app in (api)", False),
        ("app notin (api, db)", True),
        ("missing notin (x)", True),
        ("app=web,tier=back", False),
        ("app=web, tier in (front)", True),
        ("rank>2", True),
        ("rank<3", False),
        ("example.com/owner", False),
    ],
)
def test_label_selectors(selector: str, matches: bool) -> None:
    assert parse_label_selector(selector).matches(LABELS) is matches


@pytest.mark.parametrize(
    "selector", ["app in (web", "app=web,,tier=x", "bad key=1", "app=not valid", "rank>x", "=x"]
)
def test_malformed_label_selectors(selector: str) -> None:
    with pytest.raises(SelectorError):
        parse_label_selector(selector)


def test_field_selectors() -> None:
    secret = {"metadata": {"name": "a,b", "namespace": "ns"}, "type": "Opaque"}
    fields = supported_fields("", "secrets")
    assert parse_field_selector(r"metadata.name=a\,b,type!=kubernetes.io/tls", fields).matches(
        secret
    )
    assert not parse_field_selector("metadata.namespace==other", fields).matches(secret)
    assert parse_field_selector(
        "spec.color=", supported_fields("x.dev", "w", ["spec.color"])
    ).matches(secret)
    with pytest.raises(SelectorError, match="not supported: type"):
        parse_field_selector("type=Opaque", supported_fields("", "configmaps"))


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/api/v1/namespaces", ApiPath("", "v1", "namespaces")),
        ("/api/v1/namespaces/ns1", ApiPath("", "v1", "namespaces", None, "ns1")),
        ("/api/v1/namespaces/ns1/status", ApiPath("", "v1", "namespaces", None, "ns1", "status")),
        ("/api/v1/namespaces/ns1/secrets", ApiPath("", "v1", "secrets", "ns1")),
        ("/api/v1/namespaces/ns1/secrets/s", ApiPath("", "v1", "secrets", "ns1", "s")),
        (
            "/apis/x.dev/v1/namespaces/n/ws/w/status",
            ApiPath("x.dev", "v1", "ws", "n", "w", "status"),
        ),
        ("/apis/x.dev/v1/ws", ApiPath("x.dev", "v1", "ws")),
        ("/apis/x.dev/v1", ApiPath("x.dev", "v1")),
        ("/apis/x.dev", ApiPath("x.dev")),
        ("/version", ApiPath()),
    ],
)
def test_api_paths(path: str, expected: ApiPath) -> None:
    assert parse_api_path(path) == expected


def test_request_verbs() -> None:
    collection, named = ApiPath("", "v1", "secrets", "n"), ApiPath("", "v1", "secrets", "n", "s")
    assert request_verb("GET", collection, {"watch": "true"}) == "watch"
    assert request_verb("GET", collection, {}) == "list"
    assert request_verb("GET", named, {}) == "get"
    assert request_verb("POST", collection, {}) == "create"
    assert request_verb("PUT", named, {}) == "update"
    assert request_verb("PATCH", named, {}) == "patch"
    assert request_verb("DELETE", named, {}) == "delete"
    assert request_verb("DELETE", collection, {}) == "deletecollection"
    assert request_verb("POST", named, {}) is None


# RFC 7386, Appendix A.
@pytest.mark.parametrize(
    ("target", "patch", "result"),
    [
        ({"a": "b"}, {"a": "c"}, {"a": "c"}),
        ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
        ({"a": "b"}, {"a": None}, {}),
        ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
        ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
        ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
        ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
        ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
        (["a", "b"], ["c", "d"], ["c", "d"]),
        ({"a": "b"}, ["c"], ["c"]),
        ({"a": "foo"}, None, None),
        ({"a": "foo"}, "bar", "bar"),
        ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
        ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
        ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
    ],
)
def test_merge_patch_follows_rfc_7386(target: Any, patch: Any, result: Any) -> None:
    assert apply_merge_patch(target, patch) == result


def _containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    # A named function: hypothesis inspects a lambda's source to check that it recurses, and a
    # lambda spread over several lines defeats that check (HypothesisDeprecationWarning).
    return st.lists(children, max_size=3) | st.dictionaries(
        st.text(max_size=3), children, max_size=3
    )


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    _containers,
    max_leaves=10,
)


@given(st.dictionaries(st.text(max_size=3), json_values, max_size=4), json_values)
def test_merge_patch_never_changes_its_inputs(target: dict[str, Any], patch: Any) -> None:
    before = (repr(target), repr(patch))
    apply_merge_patch(target, patch)
    assert (repr(target), repr(patch)) == before


def test_json_patch_failures_say_where_but_not_what() -> None:
    obj = {"metadata": {"resourceVersion": "7"}, "data": {"key": "c2VjcmV0"}}
    with pytest.raises(PatchTestFailed, match="/metadata/resourceVersion") as failed:
        apply_json_patch(obj, [{"op": "test", "path": "/metadata/resourceVersion", "value": "6"}])
    assert "7" not in str(failed.value)
    with pytest.raises(PatchError, match="remove") as failed:
        apply_json_patch(obj, [{"op": "remove", "path": "/data/missing"}])
    assert "c2VjcmV0" not in str(failed.value)
    with pytest.raises(PatchMalformed):
        apply_json_patch(obj, {"op": "add"})
    patched = apply_json_patch(obj, [{"op": "add", "path": "/data/more", "value": "eA=="}])
    assert patched["data"] == {"key": "c2VjcmV0", "more": "eA=="}
    assert obj["data"] == {"key": "c2VjcmV0"}


def test_strategic_merge_patch_merges_declared_lists_and_honours_directives() -> None:
    obj = {
        "metadata": {
            "finalizers": ["a", "b"],
            "ownerReferences": [{"uid": "1", "name": "x"}, {"uid": "2", "name": "y"}],
            "labels": {"keep": "1", "drop": "2"},
        },
        "data": {"list": [1, 2]},
    }
    patch = {
        "metadata": {
            "finalizers": ["b", "c"],
            "$deleteFromPrimitiveList/finalizers": ["a"],
            "ownerReferences": [{"uid": "2", "name": "z"}, {"uid": "1", "$patch": "delete"}],
            "labels": {"drop": None},
        },
        "data": {"list": [3]},
    }
    result = apply_strategic_merge_patch(obj, patch)
    assert result["metadata"]["finalizers"] == ["b", "c"]
    assert result["metadata"]["ownerReferences"] == [{"uid": "2", "name": "z"}]
    assert result["metadata"]["labels"] == {"keep": "1"}
    assert result["data"] == {"list": [3]}  # undeclared lists are replaced
    replaced = apply_strategic_merge_patch(
        obj, {"metadata": {"labels": {"$patch": "replace", "new": "1"}}}
    )
    assert replaced["metadata"]["labels"] == {"new": "1"}
    with pytest.raises(PatchMalformed):
        apply_strategic_merge_patch(obj, [{"op": "add"}])


SCHEMA = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "properties": {
                "mode": {"type": "string", "default": "Sync"},
                "source": {
                    "type": "object",
                    "properties": {"key": {"type": "string", "default": "tls.key"}},
                },
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                "items": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {"n": {"type": "integer", "default": 1}},
                    },
                },
                "maybe": {"type": "string", "nullable": True},
            },
        },
        "status": {"type": "object", "properties": {"phase": {"type": "string"}}},
    },
}


def test_schema_prunes_unknown_fields_and_fills_defaults() -> None:
    obj = {
        "apiVersion": "x.dev/v1",
        "kind": "W",
        "metadata": {"name": "w", "anything": 1},
        "spec": {
            "unknown": 1,
            "mode": None,
            "source": {},
            "labels": {"a": "b"},
            "free": {"x": {"y": 1}},
            "items": [{"n": 5, "junk": 1}, {}],
            "maybe": None,
        },
        "status": {"phase": "Ready", "extra": True},
        "junk": 1,
    }
    result = prune_and_default(obj, SCHEMA)
    assert result == {
        "apiVersion": "x.dev/v1",
        "kind": "W",
        "metadata": {"name": "w", "anything": 1},
        "spec": {
            "mode": "Sync",
            "source": {"key": "tls.key"},
            "labels": {"a": "b"},
            "free": {"x": {"y": 1}},
            "items": [{"n": 5}, {"n": 1}],
            "maybe": None,
        },
        "status": {"phase": "Ready"},
    }
    assert "unknown" in obj["spec"]  # the input is left alone
    assert prune_and_default({"metadata": {}}, SCHEMA) == {"metadata": {}}  # no spec: no defaults


def test_printer_column_jsonpaths() -> None:
    obj = {
        "status": {
            "conditions": [
                {"type": "Synced", "status": "False"},
                {"type": "Ready", "status": "True", "reason": "Uploaded"},
            ],
            "keys": [{"kid": "a"}, {"kid": "b"}],
        }
    }
    assert jsonpath('.status.conditions[?(@.type=="Ready")].reason', obj) == ["Uploaded"]
    assert jsonpath(".status.conditions[?(@.type=='Gone')].status", obj) == []
    assert jsonpath(".status.keys[1].kid", obj) == ["b"]
    assert jsonpath(".status.keys[*].kid", obj) == ["a", "b"]
    assert jsonpath(".status.missing.deeper", obj) == []
    assert jsonpath(".status{bad}", obj) == []


@pytest.mark.parametrize(
    ("seconds", "printed"),
    [
        (-5, "<invalid>"),
        (0, "0s"),
        (119, "119s"),
        (125, "2m5s"),
        (600, "10m"),
        (3 * 3600 + 60, "3h1m"),
        (30 * 3600, "30h"),
        (3 * 86400 + 3600, "3d1h"),
        (400 * 86400, "400d"),
        (3 * 365 * 86400, "3y"),
    ],
)
def test_ages_print_as_kubectl_prints_them(seconds: int, printed: str) -> None:
    assert human_duration(timedelta(seconds=seconds)) == printed
