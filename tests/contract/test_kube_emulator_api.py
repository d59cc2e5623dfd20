"""The kube-emulator answers the kubernetes client as a real API server would.

Every call goes through the real kubernetes Python client (built from the emulator's kubeconfig)
or raw HTTP where the client hides what is checked; blocking calls run off the event loop.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import kmock
import pytest
import yaml
from kube_emulator_support import (
    WIDGET_API,
    WIDGETS,
    api_client,
    call,
    status_of,
    widget,
    widget_cluster,
    widget_crd,
    write_crd,
)
from kubernetes import client as k8s
from kubernetes.client import ApiException

from b2ckeys_emulators.kube.server import KubeEmulator, RunningKubeEmulator, serve_kube_emulator

TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
GROUP, VERSION, PLURAL = WIDGET_API


@pytest.fixture
async def kube(tmp_path: Path) -> AsyncIterator[RunningKubeEmulator]:
    async with widget_cluster(tmp_path) as kube:
        yield kube


@pytest.fixture
def api(kube: RunningKubeEmulator) -> Iterator[k8s.ApiClient]:
    with api_client(kube) as client:
        yield client


def secret(name: str, namespace: str = "default", **extra: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": namespace}, **extra}


async def fails(status: int, function: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
    with pytest.raises(ApiException) as caught:
        await call(function, *args, **kwargs)
    assert caught.value.status == status, caught.value.body
    return status_of(caught.value)


# --- kubeconfig, discovery, namespaces


async def test_kubeconfig_points_clients_at_the_emulator(
    kube: RunningKubeEmulator, api: k8s.ApiClient
) -> None:
    config = yaml.safe_load(kube.kubeconfig.read_text())
    context = next(c for c in config["contexts"] if c["name"] == config["current-context"])
    cluster = next(c for c in config["clusters"] if c["name"] == context["context"]["cluster"])
    user = next(u for u in config["users"] if u["name"] == context["context"]["user"])
    assert cluster["cluster"]["server"] == kube.url
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", kube.url)
    assert user["user"]["token"]
    version = await call(k8s.VersionApi(api).get_code)
    assert version.major == "1"
    assert version.git_version.startswith("v1.")


async def test_kubeconfig_without_a_path_lives_in_a_temporary_folder() -> None:
    async with serve_kube_emulator(crd_paths=[]) as kube:
        path = kube.kubeconfig
        assert yaml.safe_load(path.read_text())["clusters"][0]["cluster"]["server"] == kube.url
    assert not path.exists()


async def test_namespaces_are_served_listed_and_created(api: k8s.ApiClient) -> None:
    core = k8s.CoreV1Api(api)
    names = {ns.metadata.name for ns in (await call(core.list_namespace)).items}
    assert {"default", "kube-system", "kube-public", "kube-node-lease"} <= names
    await call(core.create_namespace, {"metadata": {"name": "team-a"}})
    created = await call(core.read_namespace, "team-a")
    assert created.status.phase == "Active"
    assert created.spec.finalizers == ["kubernetes"]


BUILTIN_KINDS = [
    ("v1", "Secret"),
    ("v1", "ConfigMap"),
    ("v1", "Namespace"),
    ("v1", "Event"),
    ("events.k8s.io/v1", "Event"),
    ("coordination.k8s.io/v1", "Lease"),
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition"),
]


def discover(api: k8s.ApiClient) -> dict[str, Any]:
    """What the dynamic client (kubectl's discovery, in Python) finds; it blocks, so a thread."""
    from kubernetes.dynamic import DynamicClient

    resources = DynamicClient(api).resources
    widgets = resources.get(api_version="example.dev/v1", kind="Widget")
    return {
        "widgets": (widgets.name, widgets.namespaced, widgets.short_names, set(widgets.verbs)),
        "status verbs": widgets.subresources["status"].verbs,
        "kinds": [resources.get(api_version=v, kind=k).kind for v, k in BUILTIN_KINDS],
    }


async def test_discovery_serves_builtins_and_crds_to_the_dynamic_client(
    api: k8s.ApiClient,
) -> None:
    found = await call(discover, api)
    name, namespaced, short_names, verbs = found["widgets"]
    assert (name, namespaced, short_names) == ("widgets", True, ["wid"])
    assert {"create", "list", "watch", "patch", "update", "delete"} <= verbs
    assert found["status verbs"] == ["get", "patch", "update"]
    assert found["kinds"] == [kind for _, kind in BUILTIN_KINDS]


async def test_unknown_paths_and_objects_are_404_with_a_status_body(
    kube: RunningKubeEmulator, api: k8s.ApiClient
) -> None:
    body = await fails(404, k8s.CoreV1Api(api).read_namespaced_secret, "missing", "default")
    assert body["kind"] == "Status"
    assert (body["status"], body["reason"], body["code"]) == ("Failure", "NotFound", 404)
    assert body["message"] == 'secrets "missing" not found'
    assert body["details"] == {"name": "missing", "kind": "secrets"}
    custom = k8s.CustomObjectsApi(api)
    body = await fails(
        404, custom.get_namespaced_custom_object, *WIDGET_API[:2], "default", PLURAL, "x"
    )
    assert body["details"] == {"name": "x", "kind": "widgets", "group": "example.dev"}
    async with aiohttp.ClientSession(kube.url) as http:
        for path in ["/apis/nothing.dev/v1/things", "/api/v1/nonsense", "/not/an/api"]:
            async with http.get(path) as response:
                assert response.status == 404
                assert (await response.json())["reason"] == "NotFound"


# --- metadata stamping and generation


async def test_create_stamps_uid_version_timestamp_namespace_and_generation(
    api: k8s.ApiClient,
) -> None:
    core = k8s.CoreV1Api(api)
    custom = k8s.CustomObjectsApi(api)
    first = await call(core.create_namespaced_secret, "default", secret("one"))
    second = await call(core.create_namespaced_config_map, "default", secret("two"))
    cr = await call(
        custom.create_namespaced_custom_object, GROUP, VERSION, "default", PLURAL, widget("w")
    )
    for meta in (first.metadata, second.metadata):
        assert uuid.UUID(meta.uid)
        assert meta.namespace == "default"
        assert meta.generation is None  # as on a real server: core kinds have no generation
    assert first.metadata.uid != second.metadata.uid
    versions = [
        int(first.metadata.resource_version),
        int(second.metadata.resource_version),
        int(cr["metadata"]["resourceVersion"]),
    ]
    assert versions == sorted(versions)
    assert len(set(versions)) == 3
    assert TIMESTAMP.fullmatch(cr["metadata"]["creationTimestamp"])
    assert cr["metadata"]["generation"] == 1
    assert (cr["apiVersion"], cr["kind"]) == ("example.dev/v1", "Widget")


async def test_generate_name_gives_unique_names(api: k8s.ApiClient) -> None:
    core = k8s.CoreV1Api(api)
    body = {"metadata": {"generateName": "event-"}, "involvedObject": {"name": "x"}}
    names = {
        (await call(core.create_namespaced_event, "default", body)).metadata.name for _ in "ab"
    }
    assert len(names) == 2
    assert all(re.fullmatch(r"event-[a-z0-9]{5}", n) for n in names)


async def test_generation_counts_spec_changes_only(api: k8s.ApiClient) -> None:
    custom = k8s.CustomObjectsApi(api)
    where = (GROUP, VERSION, "default", PLURAL, "w")
    created = await call(custom.create_namespaced_custom_object, *where[:4], widget("w", size=1))
    spec_changed = await call(custom.patch_namespaced_custom_object, *where, {"spec": {"size": 2}})
    labelled = await call(
        custom.patch_namespaced_custom_object, *where, {"metadata": {"labels": {"a": "b"}}}
    )
    status_set = await call(
        custom.patch_namespaced_custom_object_status, *where, {"status": {"phase": "Ready"}}
    )
    same_again = await call(custom.patch_namespaced_custom_object, *where, {"spec": {"size": 2}})
    generations = [
        o["metadata"]["generation"] for o in (created, spec_changed, labelled, status_set)
    ]
    assert generations == [1, 2, 2, 2]
    versions = [int(o["metadata"]["resourceVersion"]) for o in (created, spec_changed, labelled)]
    assert versions == sorted(set(versions))
    # A write that changes nothing is not a change: same resourceVersion, no watch event.
    assert same_again["metadata"]["resourceVersion"] == status_set["metadata"]["resourceVersion"]


# --- conflicts and invalid requests


async def test_creating_an_existing_name_is_409_already_exists(api: k8s.ApiClient) -> None:
    core = k8s.CoreV1Api(api)
    await call(core.create_namespaced_secret, "default", secret("dup"))
    body = await fails(409, core.create_namespaced_secret, "default", secret("dup"))
    assert body["reason"] == "AlreadyExists"
    assert body["message"] == 'secrets "dup" already exists'


async def test_stale_resource_version_is_409_conflict_on_put_and_patch(api: k8s.ApiClient) -> None:
    custom = k8s.CustomObjectsApi(api)
    where = (GROUP, VERSION, "default", PLURAL, "w")
    old = await call(custom.create_namespaced_custom_object, *where[:4], widget("w", size=1))
    await call(custom.patch_namespaced_custom_object, *where, {"spec": {"size": 2}})
    stale = {**old, "spec": {"size": 3}}
    body = await fails(409, custom.replace_namespaced_custom_object, *where, stale)
    assert body["reason"] == "Conflict"
    assert "the object has been modified" in body["message"]
    stale_patch = {"metadata": {"resourceVersion": old["metadata"]["resourceVersion"]}}
    await fails(409, custom.patch_namespaced_custom_object, *where, stale_patch)
    core = k8s.CoreV1Api(api)
    await call(core.create_namespaced_config_map, "default", secret("cm"))
    current = await call(core.read_namespaced_config_map, "cm", "default")
    current.data = {"a": "b"}
    await call(core.replace_namespaced_config_map, "cm", "default", current)
    await fails(409, core.replace_namespaced_config_map, "cm", "default", current)


async def test_failed_json_patch_test_is_422_as_kopf_expects(api: k8s.ApiClient) -> None:
    custom = k8s.CustomObjectsApi(api)
    where = (GROUP, VERSION, "default", PLURAL, "w")
    await call(custom.create_namespaced_custom_object, *where[:4], widget("w"))
    stale = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": "1"},
        {"op": "add", "path": "/metadata/finalizers", "value": ["x.dev/y"]},
    ]
    json_patch = {"_content_type": "application/json-patch+json"}
    body = await fails(422, custom.patch_namespaced_custom_object, *where, stale, **json_patch)
    assert body["reason"] == "Invalid"
    assert "test" in body["message"]
    current = await call(custom.get_namespaced_custom_object, *where)
    assert "finalizers" not in current["metadata"]
    stale[0]["value"] = current["metadata"]["resourceVersion"]
    patched = await call(custom.patch_namespaced_custom_object, *where, stale, **json_patch)
    assert patched["metadata"]["finalizers"] == ["x.dev/y"]


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        ({"metadata": {}}, 422, "Invalid"),  # no name, no generateName
        ({"metadata": {"name": "Upper_Case"}}, 422, "Invalid"),
        ({"metadata": {"name": "x", "labels": {"bad key!": "v"}}}, 422, "Invalid"),
        ({"metadata": {"name": "x", "labels": {"k": 7}}}, 400, "BadRequest"),
        ({"metadata": {"name": "x"}, "type": "kubernetes.io/tls", "data": {}}, 422, "Invalid"),
        ({"metadata": {"name": "x"}, "data": {"k": "not base64!"}}, 400, "BadRequest"),
        ({"metadata": {"name": "x", "namespace": "other"}}, 400, "BadRequest"),
        ({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}, 400, "BadRequest"),
    ],
)
async def test_invalid_bodies_are_refused(
    kube: RunningKubeEmulator, body: dict[str, Any], status: int, reason: str
) -> None:
    async with (
        aiohttp.ClientSession(kube.url) as http,
        http.post("/api/v1/namespaces/default/secrets", json=body) as response,
    ):
        assert response.status == status
        assert (await response.json())["reason"] == reason
    assert kube.emulator.read("v1/secrets", "default", "x") is None


async def test_malformed_json_and_selectors_are_400(kube: RunningKubeEmulator) -> None:
    async with aiohttp.ClientSession(kube.url) as http:
        async with http.post("/api/v1/namespaces/default/secrets", data=b"{nope") as response:
            assert response.status == 400
        for params in ({"labelSelector": "a in (b"}, {"fieldSelector": "spec.nodeName=x"}):
            async with http.get("/api/v1/namespaces/default/secrets", params=params) as response:
                assert response.status == 400, params


async def test_creating_in_a_missing_namespace_is_404(api: k8s.ApiClient) -> None:
    body = await fails(
        404, k8s.CoreV1Api(api).create_namespaced_secret, "nowhere", secret("s", "nowhere")
    )
    assert body["message"] == 'namespaces "nowhere" not found'


# --- status subresource, patch formats, PUT


async def test_status_subresource_changes_only_status(api: k8s.ApiClient) -> None:
    custom = k8s.CustomObjectsApi(api)
    where = (GROUP, VERSION, "default", PLURAL, "w")
    await call(
        custom.create_namespaced_custom_object,
        *where[:4],
        {**widget("w", size=1), "status": {"phase": "Sneaky"}},
    )
    created = await call(custom.get_namespaced_custom_object, *where)
    assert "status" not in created  # status on create is dropped with a status subresource
    via_status = await call(
        custom.patch_namespaced_custom_object_status,
        *where,
        {"spec": {"size": 99}, "status": {"phase": "Ready"}, "metadata": {"labels": {"x": "y"}}},
    )
    assert via_status["spec"]["size"] == 1
    assert via_status["status"] == {"phase": "Ready"}
    assert "labels" not in via_status["metadata"]
    via_body = await call(
        custom.patch_namespaced_custom_object,
        *where,
        {"spec": {"size": 2}, "status": {"phase": "Lost"}},
    )
    assert (via_body["spec"]["size"], via_body["status"]["phase"]) == (2, "Ready")
    replaced = await call(
        custom.replace_namespaced_custom_object_status,
        *where,
        {**via_body, "spec": {"size": 3}, "status": {"phase": "Done"}},
    )
    assert (replaced["spec"]["size"], replaced["status"]["phase"]) == (2, "Done")
    fetched = await call(custom.get_namespaced_custom_object_status, *where)
    assert fetched["status"] == {"phase": "Done"}


async def test_merge_json_and_strategic_merge_patches(api: k8s.ApiClient) -> None:
    core = k8s.CoreV1Api(api)
    base = {
        "metadata": {"name": "s", "labels": {"keep": "1", "drop": "2"}, "finalizers": ["a.dev/x"]},
        "stringData": {"user": "admin"},
    }
    await call(core.create_namespaced_secret, "default", base)
    # The kubernetes client sends strategic merge for a dict body on built-ins: finalizers merge.
    merged = await call(
        core.patch_namespaced_secret,
        "s",
        "default",
        {"metadata": {"labels": {"drop": None, "new": "3"}, "finalizers": ["b.dev/y"]}},
    )
    assert merged.metadata.labels == {"keep": "1", "new": "3"}
    assert merged.metadata.finalizers == ["a.dev/x", "b.dev/y"]
    assert merged.data == {"user": "YWRtaW4="}  # stringData folded into data
    json_patched = await call(
        core.patch_namespaced_secret,
        "s",
        "default",
        [
            {"op": "remove", "path": "/metadata/finalizers/0"},
            {"op": "add", "path": "/data/k", "value": "dg=="},
        ],
    )
    assert json_patched.metadata.finalizers == ["b.dev/y"]
    assert set(json_patched.data) == {"user", "k"}
    custom = k8s.CustomObjectsApi(api)
    where = (GROUP, VERSION, "default", PLURAL, "w")
    await call(
        custom.create_namespaced_custom_object,
        *where[:4],
        widget("w", size=1, extra={"a": 1, "b": 2}),
    )
    patched = await call(
        custom.patch_namespaced_custom_object, *where, {"spec": {"extra": {"a": None}}}
    )
    assert patched["spec"]["extra"] == {"b": 2}  # merge patch: null deletes


async def test_strategic_merge_on_custom_resources_is_415(kube: RunningKubeEmulator) -> None:
    kube.emulator.create_object(widget("w"))
    async with (
        aiohttp.ClientSession(kube.url) as http,
        http.patch(
            "/apis/example.dev/v1/namespaces/default/widgets/w",
            json={"spec": {"size": 1}},
            headers={"Content-Type": "application/strategic-merge-patch+json"},
        ) as response,
    ):
        assert response.status == 415
        assert (await response.json())["reason"] == "UnsupportedMediaType"


async def test_put_replaces_the_whole_object(api: k8s.ApiClient) -> None:
    core = k8s.CoreV1Api(api)
    await call(
        core.create_namespaced_config_map,
        "default",
        {"metadata": {"name": "c", "labels": {"a": "1"}}, "data": {"x": "1"}},
    )
    current = await call(core.read_namespaced_config_map, "c", "default")
    current.data = {"y": "2"}
    current.metadata.labels = None
    replaced = await call(core.replace_namespaced_config_map, "c", "default", current)
    assert replaced.data == {"y": "2"}
    assert replaced.metadata.labels is None
    assert replaced.metadata.uid == current.metadata.uid


async def test_custom_resources_are_pruned_and_defaulted_by_their_schema(
    api: k8s.ApiClient,
) -> None:
    custom = k8s.CustomObjectsApi(api)
    where = (GROUP, VERSION, "default", PLURAL, "w")
    created = await call(
        custom.create_namespaced_custom_object,
        *where[:4],
        widget("w", size=1, unknown="x", extra={"free": 1}),
    )
    assert created["spec"] == {"size": 1, "color": "blue", "extra": {"free": 1}}
    status = await call(
        custom.patch_namespaced_custom_object_status,
        *where,
        {"status": {"phase": "Ready", "handler-result": {"x": 1}}},
    )
    assert status["status"] == {"phase": "Ready"}  # undeclared status fields do not survive


# --- finalizers and deletion


async def test_delete_marks_objects_with_finalizers_and_removing_the_last_one_deletes(
    kube: RunningKubeEmulator, api: k8s.ApiClient
) -> None:
    custom = k8s.CustomObjectsApi(api)
    where = (GROUP, VERSION, "default", PLURAL, "w")
    body = widget("w")
    body["metadata"]["finalizers"] = ["example.dev/one", "example.dev/two"]
    await call(custom.create_namespaced_custom_object, *where[:4], body)
    marked = await call(custom.delete_namespaced_custom_object, *where)
    assert TIMESTAMP.fullmatch(marked["metadata"]["deletionTimestamp"])
    again = await call(custom.delete_namespaced_custom_object, *where)
    assert again["metadata"]["resourceVersion"] == marked["metadata"]["resourceVersion"]
    body = await fails(
        422,
        custom.patch_namespaced_custom_object,
        *where,
        {"metadata": {"finalizers": ["a/b", "example.dev/one", "example.dev/two"]}},
    )
    assert "no new finalizers" in body["message"]
    await call(
        custom.patch_namespaced_custom_object,
        *where,
        {"metadata": {"finalizers": ["example.dev/two"]}},
    )
    assert kube.emulator.read(WIDGETS, "default", "w") is not None
    await call(custom.patch_namespaced_custom_object, *where, {"metadata": {"finalizers": None}})
    assert kube.emulator.read(WIDGETS, "default", "w") is None
    history = kube.emulator.objects[WIDGETS, "default", "w"].history
    assert history[-1] is None  # kmock's inspector still has every version


async def test_delete_without_finalizers_removes_at_once_with_preconditions(
    api: k8s.ApiClient,
) -> None:
    core = k8s.CoreV1Api(api)
    created = await call(core.create_namespaced_secret, "default", secret("s"))
    wrong = k8s.V1DeleteOptions(preconditions=k8s.V1Preconditions(uid=str(uuid.uuid4())))
    await fails(409, core.delete_namespaced_secret, "s", "default", body=wrong)
    right = k8s.V1DeleteOptions(preconditions=k8s.V1Preconditions(uid=created.metadata.uid))
    status = await call(core.delete_namespaced_secret, "s", "default", body=right)
    assert (status["kind"], status["status"]) == ("Status", "Success")
    await fails(404, core.read_namespaced_secret, "s", "default")
    await fails(404, core.delete_namespaced_secret, "s", "default")


async def test_deleting_a_namespace_cascades_and_waits_for_finalizers(
    kube: RunningKubeEmulator, api: k8s.ApiClient
) -> None:
    core = k8s.CoreV1Api(api)
    custom = k8s.CustomObjectsApi(api)
    await call(core.create_namespace, {"metadata": {"name": "doomed"}})
    await call(core.create_namespaced_secret, "doomed", secret("plain", "doomed"))
    held = widget("held", "doomed")
    held["metadata"]["finalizers"] = ["example.dev/cleanup"]
    await call(custom.create_namespaced_custom_object, GROUP, VERSION, "doomed", PLURAL, held)
    await call(core.delete_namespace, "doomed")
    namespace = await call(core.read_namespace, "doomed")
    assert namespace.status.phase == "Terminating"
    assert kube.emulator.read("v1/secrets", "doomed", "plain") is None
    assert kube.emulator.read(WIDGETS, "doomed", "held")["metadata"]["deletionTimestamp"]
    body = await fails(403, core.create_namespaced_secret, "doomed", secret("late", "doomed"))
    assert "being terminated" in body["message"]
    await call(
        custom.patch_namespaced_custom_object,
        GROUP,
        VERSION,
        "doomed",
        PLURAL,
        "held",
        {"metadata": {"finalizers": None}},
    )
    await fails(404, core.read_namespace, "doomed")


# --- lists and selectors


async def test_list_has_a_resource_version_and_pages(
    kube: RunningKubeEmulator, api: k8s.ApiClient
) -> None:
    core = k8s.CoreV1Api(api)
    for name in "cab":
        await call(core.create_namespaced_config_map, "default", secret(name))
    listed = await call(core.list_namespaced_config_map, "default")
    assert listed.metadata.resource_version == str(kube.emulator.resource_version)
    assert [i.metadata.name for i in listed.items] == ["a", "b", "c"]
    first = await call(core.list_namespaced_config_map, "default", limit=2)
    assert [i.metadata.name for i in first.items] == ["a", "b"]
    assert first.metadata.remaining_item_count == 1
    rest = await call(
        core.list_namespaced_config_map, "default", limit=2, _continue=first.metadata._continue
    )
    assert [i.metadata.name for i in rest.items] == ["c"]
    assert not rest.metadata._continue


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("tier=web", {"a", "b"}),
        ("tier==web", {"a", "b"}),
        ("tier!=web", {"c", "d"}),
        ("tier", {"a", "b", "c"}),
        ("!tier", {"d"}),
        ("tier in (db, cache)", {"c"}),
        ("tier notin (web)", {"c", "d"}),
        ("tier=web,env=prod", {"a"}),
        ("rank>1", {"b"}),
    ],
)
async def test_label_selectors(api: k8s.ApiClient, selector: str, expected: set[str]) -> None:
    core = k8s.CoreV1Api(api)
    labels = {
        "a": {"tier": "web", "env": "prod", "rank": "1"},
        "b": {"tier": "web", "rank": "2"},
        "c": {"tier": "db"},
        "d": {},
    }
    for name, these in labels.items():
        await call(
            core.create_namespaced_secret, "default", {"metadata": {"name": name, "labels": these}}
        )
    listed = await call(core.list_namespaced_secret, "default", label_selector=selector)
    assert {i.metadata.name for i in listed.items} == expected


async def test_field_selectors(api: k8s.ApiClient) -> None:
    core = k8s.CoreV1Api(api)
    await call(core.create_namespace, {"metadata": {"name": "other"}})
    await call(
        core.create_namespaced_secret,
        "default",
        secret("tls", type="kubernetes.io/tls", data={"tls.crt": "", "tls.key": ""}),
    )
    await call(core.create_namespaced_secret, "default", secret("plain"))
    await call(core.create_namespaced_secret, "other", secret("plain", "other"))

    async def names(**kwargs: Any) -> set[tuple[str, str]]:
        listed = await call(core.list_secret_for_all_namespaces, **kwargs)
        return {(i.metadata.namespace, i.metadata.name) for i in listed.items}

    assert await names(field_selector="metadata.name=plain") == {
        ("default", "plain"),
        ("other", "plain"),
    }
    assert await names(field_selector="metadata.namespace=other") == {("other", "plain")}
    assert await names(field_selector="type=kubernetes.io/tls") == {("default", "tls")}
    assert await names(field_selector="type!=kubernetes.io/tls,metadata.namespace==default") == {
        ("default", "plain")
    }
    custom = k8s.CustomObjectsApi(api)
    for name, color in (("r", "red"), ("g", "green")):
        await call(
            custom.create_namespaced_custom_object,
            GROUP,
            VERSION,
            "default",
            PLURAL,
            widget(name, color=color),
        )
    listed = await call(
        custom.list_namespaced_custom_object,
        GROUP,
        VERSION,
        "default",
        PLURAL,
        field_selector="spec.color=red",
    )
    assert [i["metadata"]["name"] for i in listed["items"]] == ["r"]  # a CRD's selectableFields


# --- built-in kinds the operator uses


async def test_configmaps_events_and_leases(api: k8s.ApiClient) -> None:
    core = k8s.CoreV1Api(api)
    events = k8s.EventsV1Api(api)
    leases = k8s.CoordinationV1Api(api)
    await call(
        core.create_namespaced_config_map,
        "default",
        {"metadata": {"name": "c"}, "data": {"k": "v"}},
    )
    await call(
        core.create_namespaced_event,
        "default",
        {
            "metadata": {"name": "e1"},
            "involvedObject": {"kind": "Widget", "name": "w"},
            "reason": "Synced",
            "type": "Normal",
        },
    )
    await call(
        events.create_namespaced_event,
        "default",
        {
            "metadata": {"name": "e2"},
            "eventTime": "2025-01-01T00:00:00.000000Z",
            "reason": "Synced",
            "action": "Sync",
            "reportingController": "b2ckeys",
            "reportingInstance": "x",
            "type": "Normal",
        },
    )
    lease = await call(
        leases.create_namespaced_lease,
        "default",
        {"metadata": {"name": "l"}, "spec": {"holderIdentity": "me"}},
    )
    lease.spec.holder_identity = "you"
    await call(leases.replace_namespaced_lease, "l", "default", lease)
    assert (await call(core.read_namespaced_config_map, "c", "default")).data == {"k": "v"}
    found = await call(
        core.list_namespaced_event, "default", field_selector="involvedObject.name=w,reason=Synced"
    )
    assert [e.metadata.name for e in found.items] == ["e1"]
    assert [
        e.metadata.name for e in (await call(events.list_namespaced_event, "default")).items
    ] == ["e2"]
    assert (await call(leases.read_namespaced_lease, "l", "default")).spec.holder_identity == "you"


# --- CRDs


async def test_a_crd_applied_to_it_is_served_and_deleting_it_removes_its_objects(
    kube: RunningKubeEmulator, api: k8s.ApiClient
) -> None:
    extensions = k8s.ApiextensionsV1Api(api)
    custom = k8s.CustomObjectsApi(api)
    gizmos = widget_crd("gizmos", "Gizmo")
    await fails(404, custom.list_namespaced_custom_object, "example.dev", "v1", "default", "gizmos")
    created = await call(extensions.create_custom_resource_definition, gizmos)
    conditions = {c.type: c.status for c in created.status.conditions}
    assert conditions == {"NamesAccepted": "True", "Established": "True"}
    assert created.metadata.finalizers == ["customresourcecleanup.apiextensions.k8s.io"]
    gizmo = {**widget("g1"), "kind": "Gizmo"}
    await call(
        custom.create_namespaced_custom_object, "example.dev", "v1", "default", "gizmos", gizmo
    )
    async with aiohttp.ClientSession(kube.url) as http, http.get("/apis/example.dev/v1") as got:
        names = {r["name"] for r in (await got.json())["resources"]}
    assert {"gizmos", "gizmos/status", "widgets", "widgets/status"} <= names
    await call(extensions.delete_custom_resource_definition, "gizmos.example.dev")
    await fails(404, extensions.read_custom_resource_definition, "gizmos.example.dev")
    assert kube.emulator.read(WIDGETS, "default", "g1") is None
    with pytest.raises(KeyError):
        kube.emulator.read("example.dev/v1/gizmos", "default", "g1")
    assert kube.emulator.objects["example.dev/v1/gizmos", "default", "g1"].history[-1] is None


async def test_invalid_crds_are_422(api: k8s.ApiClient) -> None:
    extensions = k8s.ApiextensionsV1Api(api)
    misnamed = widget_crd("gizmos", "Gizmo")
    misnamed["metadata"]["name"] = "wrong.example.dev"
    body = await fails(422, extensions.create_custom_resource_definition, misnamed)
    assert "metadata.name" in body["message"]
    schemaless = widget_crd("gizmos", "Gizmo")
    del schemaless["spec"]["versions"][0]["schema"]
    await fails(422, extensions.create_custom_resource_definition, schemaless)


PROJECT_CRDS = Path(__file__).resolve().parents[2] / "crds"


async def test_the_project_crds_are_served_from_the_start() -> None:
    project_crds = PROJECT_CRDS
    documents = [
        doc
        for path in sorted(project_crds.glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition"
    ]
    assert any(d["metadata"]["name"] == "trustframeworkkeysets.b2ckeys.dev" for d in documents)
    async with serve_kube_emulator() as kube, aiohttp.ClientSession(kube.url) as http:
        for document in documents:
            spec = document["spec"]
            for version in (v for v in spec["versions"] if v["served"]):
                async with http.get(f"/apis/{spec['group']}/{version['name']}") as response:
                    served = {r["name"]: r for r in (await response.json())["resources"]}
                plural = spec["names"]["plural"]
                assert served[plural]["kind"] == spec["names"]["kind"]
                assert served[plural]["shortNames"] == sorted(spec["names"].get("shortNames", []))
                assert served[plural]["namespaced"] is (spec["scope"] == "Namespaced")
                assert (f"{plural}/status" in served) is (
                    "status" in version.get("subresources", {})
                )
        async with http.get(
            "/apis/b2ckeys.dev/v1alpha1/namespaces/default/trustframeworkkeysets"
        ) as response:
            assert response.status == 200
            assert (await response.json())["kind"] == "TrustFrameworkKeySetList"


# --- helpers for tests


async def test_requests_log_and_read_helpers(kube: RunningKubeEmulator, api: k8s.ApiClient) -> None:
    custom = k8s.CustomObjectsApi(api)
    where = (GROUP, VERSION, "default", PLURAL, "w")
    kube.emulator.create_object(widget("w"))
    await call(
        custom.patch_namespaced_custom_object_status, *where, {"status": {"phase": "canary-status"}}
    )
    await call(k8s.CoreV1Api(api).list_namespaced_secret, "default", label_selector="a=b")
    status_patch, secret_list = kube.emulator.requests[-2:]
    assert (status_patch.method, status_patch.verb, status_patch.subresource) == (
        "PATCH",
        "patch",
        "status",
    )
    assert (status_patch.resource, status_patch.namespace, status_patch.name) == (
        WIDGETS,
        "default",
        "w",
    )
    assert status_patch.content_type == "application/merge-patch+json"
    assert status_patch.body == {"status": {"phase": "canary-status"}}
    assert "canary-status" not in repr(status_patch)
    assert (secret_list.verb, secret_list.resource, secret_list.params["labelSelector"]) == (
        "list",
        "v1/secrets",
        "a=b",
    )
    read = kube.emulator.read(WIDGETS, "default", "w")
    assert read is not None
    assert read["status"] == {"phase": "canary-status"}
    read["status"]["phase"] = "mutated"
    assert kube.emulator.read(WIDGETS, "default", "w")["status"]["phase"] == "canary-status"


async def test_test_reactions_come_before_the_emulation(
    kube: RunningKubeEmulator, api: k8s.ApiClient
) -> None:
    custom = k8s.CustomObjectsApi(api)
    where = (GROUP, VERSION, "default", PLURAL, "w")
    kube.emulator.create_object(widget("w"))
    kube.emulator["patch", kmock.subresource("status")][:1] << kmock.KubernetesError(
        status=503, reason="ServiceUnavailable", message="injected"
    )
    body = await fails(
        503, custom.patch_namespaced_custom_object_status, *where, {"status": {"phase": "A"}}
    )
    assert body["message"] == "injected"
    assert kube.emulator.read(WIDGETS, "default", "w").get("status") is None  # not written
    after = await call(
        custom.patch_namespaced_custom_object_status, *where, {"status": {"phase": "B"}}
    )
    assert after["status"] == {"phase": "B"}


TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"


async def test_kubectl_gets_tables_with_the_crds_printer_columns(tmp_path: Path) -> None:
    created_at = datetime(2025, 1, 1, tzinfo=UTC)
    now = [created_at]
    emulator = KubeEmulator(clock=lambda: now[0])
    crd = write_crd(tmp_path, widget_crd())
    async with (
        serve_kube_emulator(crd_paths=[crd], emulator=emulator) as kube,
        aiohttp.ClientSession(kube.url, headers={"Accept": TABLE}) as http,
    ):
        kube.emulator.create_object(widget("w", size=3))
        now[0] = created_at + timedelta(minutes=5)
        async with http.get("/apis/example.dev/v1/namespaces/default/widgets") as response:
            listed = await response.json()
        assert (listed["kind"], listed["apiVersion"]) == ("Table", "meta.k8s.io/v1")
        columns = [(c["name"], c["priority"]) for c in listed["columnDefinitions"]]
        assert columns == [("Name", 0), ("Phase", 0), ("Size", 0), ("Color", 1), ("Age", 0)]
        assert [row["cells"] for row in listed["rows"]] == [["w", None, 3, "blue", "5m"]]
        assert listed["rows"][0]["object"]["kind"] == "PartialObjectMetadata"
        async with http.get("/apis/example.dev/v1/namespaces/default/widgets/w") as response:
            assert [row["cells"][0] for row in (await response.json())["rows"]] == ["w"]
        async with http.get("/api/v1/namespaces/default/secrets") as response:
            assert (await response.json())["kind"] == "SecretList"  # kubectl prints these itself
