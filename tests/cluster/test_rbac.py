"""deploy/base/rbac.yaml on a real kube-apiserver, as the operator's own ServiceAccount.

Three views, so both a missing and an excessive rule fail a test:
- the ServiceAccount's effective rules (SelfSubjectRulesReview, minus what every authenticated
  user gets) equal exactly the permissions the operator needs;
- SelfSubjectAccessReview answers yes for each needed permission, cluster-wide and in a
  namespace, and no for writes the operator must never make;
- real requests made with the ServiceAccount's token succeed or are refused with 403.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, cast

import pytest
from apiserver import ROOT, KubeCluster, wait_until
from kubernetes import client as k8s

pytestmark = pytest.mark.cluster

RBAC_PATH = ROOT / "deploy" / "base" / "rbac.yaml"
OPERATOR_NAMESPACE, OPERATOR_ACCOUNT = "b2ckeys-system", "b2ckeys"
GROUP, VERSION, PLURAL = "b2ckeys.dev", "v1alpha1", "trustframeworkkeysets"
# RBAC bindings reach the authorizer through an informer: a moment after they are written.
RBAC_PROPAGATION_TIMEOUT_SECONDS = 10.0

# (API group, resource[/subresource]) -> verbs: exactly what the operator needs.
NEEDED: dict[tuple[str, str], frozenset[str]] = {
    (GROUP, PLURAL): frozenset({"get", "list", "watch", "patch"}),
    (GROUP, f"{PLURAL}/status"): frozenset({"get", "patch", "update"}),
    ("", "secrets"): frozenset({"get", "list", "watch"}),
    ("", "configmaps"): frozenset({"get", "list", "watch"}),
    ("", "events"): frozenset({"create", "patch"}),
    ("events.k8s.io", "events"): frozenset({"create", "patch"}),
    ("", "namespaces"): frozenset({"get", "list", "watch"}),
    (GROUP, "b2ctenants"): frozenset({"get", "list", "watch"}),
    (GROUP, "clusterb2ctenants"): frozenset({"get", "list", "watch"}),
    (GROUP, "b2ctenants/status"): frozenset({"get", "patch"}),
    (GROUP, "clusterb2ctenants/status"): frozenset({"get", "patch"}),
    ("apiextensions.k8s.io", "customresourcedefinitions"): frozenset({"list", "watch"}),
}
CLUSTER_SCOPED = {
    "namespaces",
    "customresourcedefinitions",
    "clusterb2ctenants",
    "clusterb2ctenants/status",
}
# Leader election, in the operator's own namespace only: (group, resource, verb, resourceNames).
LEASE_NAME = "b2ckeys-leader"
NEEDED_IN_OWN_NAMESPACE: set[tuple[str, str, str, tuple[str, ...]]] = {
    ("coordination.k8s.io", "leases", "create", ()),
    ("coordination.k8s.io", "leases", "get", (LEASE_NAME,)),
    ("coordination.k8s.io", "leases", "update", (LEASE_NAME,)),
}

# Writes the operator must never make (design: it writes status and a finalizer, nothing else).
FORBIDDEN: list[tuple[str, str, str]] = [
    ("", "secrets", "create"),
    ("", "secrets", "update"),
    ("", "secrets", "patch"),
    ("", "secrets", "delete"),
    ("", "configmaps", "patch"),
    (GROUP, PLURAL, "create"),
    (GROUP, PLURAL, "update"),
    (GROUP, PLURAL, "delete"),
    (GROUP, PLURAL, "deletecollection"),
    (GROUP, "b2ctenants", "create"),
    (GROUP, "clusterb2ctenants", "update"),
    (GROUP, "clusterb2ctenants", "delete"),
    ("", "namespaces", "delete"),
    ("coordination.k8s.io", "leases", "create"),
    ("coordination.k8s.io", "leases", "update"),
    ("coordination.k8s.io", "leases", "delete"),
    # Kopf runs standalone: leader election is a Lease, not Kopf's peering objects.
    ("kopf.dev", "kopfpeerings", "patch"),
    ("kopf.dev", "clusterkopfpeerings", "patch"),
    ("apiextensions.k8s.io", "customresourcedefinitions", "create"),
    ("rbac.authorization.k8s.io", "clusterrolebindings", "create"),
    ("", "serviceaccounts/token", "create"),
]


def triples(rules: list[k8s.V1ResourceRule]) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule.api_groups or []
        for resource in rule.resources or []
        for verb in rule.verbs
    }


def resource_rules(api_client: k8s.ApiClient, namespace: str) -> list[k8s.V1ResourceRule]:
    review = k8s.AuthorizationV1Api(api_client).create_self_subject_rules_review(
        k8s.V1SelfSubjectRulesReview(spec=k8s.V1SelfSubjectRulesReviewSpec(namespace=namespace))
    )
    status = review.status
    assert status is not None
    assert not status.incomplete, status.evaluation_error
    return list(status.resource_rules)


def rules_review(api_client: k8s.ApiClient, namespace: str) -> set[tuple[str, str, str]]:
    return triples(resource_rules(api_client, namespace))


def named_rules(rules: list[k8s.V1ResourceRule]) -> set[tuple[str, str, str, tuple[str, ...]]]:
    """Like triples, with the rule's resourceNames (empty: any name)."""
    return {
        (group, resource, verb, tuple(sorted(rule.resource_names or [])))
        for rule in rules
        for group in rule.api_groups or []
        for resource in rule.resources or []
        for verb in rule.verbs
    }


def allowed(
    api_client: k8s.ApiClient, group: str, resource: str, verb: str, namespace: str | None
) -> bool:
    resource, _, subresource = resource.partition("/")
    review = k8s.AuthorizationV1Api(api_client).create_self_subject_access_review(
        k8s.V1SelfSubjectAccessReview(
            spec=k8s.V1SelfSubjectAccessReviewSpec(
                resource_attributes=k8s.V1ResourceAttributes(
                    group=group,
                    resource=resource,
                    subresource=subresource or None,
                    verb=verb,
                    namespace=namespace,
                )
            )
        )
    )
    return review.status is not None and review.status.allowed


def name_of(obj: Any) -> str:
    """metadata.name of a typed client object (the models declare every field optional)."""
    name = obj.metadata.name if obj.metadata else None
    assert isinstance(name, str)
    return name


def status_of(call: Callable[[], object]) -> int:
    """HTTP status of a request: 2xx when it succeeds, else the ApiException's status."""
    try:
        call()
    except k8s.ApiException as e:
        return int(e.status)
    return 200


# --- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def operator_client(
    kube_cluster: KubeCluster, installed_crds: list[str], stand_in_crds: list[str]
) -> k8s.ApiClient:
    """An ApiClient authenticated as the operator's ServiceAccount, with rbac.yaml applied."""
    kube_cluster.create_namespace(OPERATOR_NAMESPACE)
    kube_cluster.apply(RBAC_PATH.read_text(encoding="utf-8"))
    kubeconfig = kube_cluster.create_service_account_kubeconfig(
        OPERATOR_NAMESPACE, OPERATOR_ACCOUNT
    )
    api_client = kube_cluster.api_client(kubeconfig)
    wait_until(
        lambda: allowed(api_client, GROUP, PLURAL, "list", None),
        timeout=RBAC_PROPAGATION_TIMEOUT_SECONDS,
        what="the ClusterRoleBinding to reach the authorizer",
    )
    return api_client


@pytest.fixture(scope="module")
def unbound_client(kube_cluster: KubeCluster) -> k8s.ApiClient:
    """A ServiceAccount with no bindings: what every authenticated identity gets anyway."""
    kube_cluster.create_namespace("rbac-baseline")
    kube_cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "nobody", "namespace": "rbac-baseline"},
        }
    )
    return kube_cluster.api_client(
        kube_cluster.create_service_account_kubeconfig("rbac-baseline", "nobody")
    )


@pytest.fixture(scope="module")
def user_objects(kube_cluster: KubeCluster, installed_crds: list[str]) -> str:
    """A namespace holding what users create: a key set, a Secret and a ConfigMap."""
    namespace = "rbac-user"
    kube_cluster.create_namespace(namespace)
    kube_cluster.apply(
        [
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "TrustFrameworkKeySet",
                "metadata": {"name": "token-signing", "namespace": namespace},
                "spec": {
                    "keySetId": "TokenSigningKeyContainer",
                    "source": {"secret": {"name": "app", "key": "client-secret"}},
                },
            },
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {
                    "name": "app",
                    "namespace": namespace,
                    "labels": {"b2ckeys.dev/watch": "true"},
                },
                "stringData": {"client-secret": "not-a-real-secret"},
            },
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "idp-cert", "namespace": namespace},
                "data": {"tls.crt": "not a certificate"},
            },
            {
                "apiVersion": "kopf.dev/v1",
                "kind": "ClusterKopfPeering",
                "metadata": {"name": "b2ckeys"},
            },
            {
                "apiVersion": "kopf.dev/v1",
                "kind": "KopfPeering",
                "metadata": {"name": "b2ckeys", "namespace": namespace},
            },
        ]
    )
    return namespace


# --- the effective rule set ---------------------------------------------------------------------


def test_effective_rules_are_exactly_what_the_operator_needs(
    operator_client: k8s.ApiClient, unbound_client: k8s.ApiClient, user_objects: str
) -> None:
    baseline = rules_review(unbound_client, user_objects)
    needed = {(g, r, v) for (g, r), verbs in NEEDED.items() for v in verbs}

    granted = rules_review(operator_client, user_objects) - baseline

    assert granted - needed == set(), "excessive rules"
    assert needed - granted == set(), "missing rules"


def test_in_its_own_namespace_it_may_also_take_its_one_lease(
    operator_client: k8s.ApiClient, unbound_client: k8s.ApiClient, user_objects: str
) -> None:
    baseline = named_rules(resource_rules(unbound_client, OPERATOR_NAMESPACE))
    cluster_wide = {(g, r, v, ()) for (g, r), verbs in NEEDED.items() for v in verbs}

    granted = named_rules(resource_rules(operator_client, OPERATOR_NAMESPACE)) - baseline

    assert granted == cluster_wide | NEEDED_IN_OWN_NAMESPACE


# --- access reviews -----------------------------------------------------------------------------

NEEDED_CHECKS = [
    (group, resource, verb, namespace)
    for (group, resource), verbs in NEEDED.items()
    for verb in sorted(verbs)
    for namespace in ([None] if resource in CLUSTER_SCOPED else [None, "rbac-user"])
]


@pytest.mark.parametrize(
    ("group", "resource", "verb", "namespace"),
    NEEDED_CHECKS,
    ids=[f"{v} {g or 'core'}/{r} in {n or 'all namespaces'}" for g, r, v, n in NEEDED_CHECKS],
)
def test_operator_may(
    operator_client: k8s.ApiClient, group: str, resource: str, verb: str, namespace: str | None
) -> None:
    assert allowed(operator_client, group, resource, verb, namespace)


@pytest.mark.parametrize(
    ("group", "resource", "verb"),
    FORBIDDEN,
    ids=[f"{v} {g or 'core'}/{r}" for g, r, v in FORBIDDEN],
)
def test_operator_may_not(
    operator_client: k8s.ApiClient, group: str, resource: str, verb: str
) -> None:
    assert not allowed(operator_client, group, resource, verb, "rbac-user")
    assert not allowed(operator_client, group, resource, verb, None)


# --- real requests ------------------------------------------------------------------------------


def micro_time() -> str:
    """Now as a MicroTime, which events.k8s.io requires: exactly six fractional digits."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event(namespace: str, involved_name: str) -> k8s.CoreV1Event:
    return k8s.CoreV1Event(
        metadata=k8s.V1ObjectMeta(generate_name="b2ckeys-", namespace=namespace),
        involved_object=k8s.V1ObjectReference(
            api_version=f"{GROUP}/{VERSION}",
            kind="TrustFrameworkKeySet",
            name=involved_name,
            namespace=namespace,
        ),
        reason="Synced",
        message="rbac test",
        type="Normal",
    )


# A watch the server ends at once, read as a raw response so no events are parsed.
WATCH: dict[str, Any] = {"watch": True, "timeout_seconds": 1, "_preload_content": False}


def test_operator_reads_and_watches_what_it_needs(
    operator_client: k8s.ApiClient, user_objects: str
) -> None:
    core = k8s.CoreV1Api(operator_client)
    custom = k8s.CustomObjectsApi(operator_client)
    extensions = k8s.ApiextensionsV1Api(operator_client)
    ns = user_objects

    custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "token-signing")
    custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)
    custom.get_namespaced_custom_object_status(GROUP, VERSION, ns, PLURAL, "token-signing")
    secrets = core.list_namespaced_secret(ns, label_selector="b2ckeys.dev/watch=true")
    assert [name_of(s) for s in secrets.items] == ["app"]
    core.read_namespaced_secret("app", ns)
    core.list_secret_for_all_namespaces(label_selector="b2ckeys.dev/watch=true")
    core.read_namespaced_config_map("idp-cert", ns)
    core.list_config_map_for_all_namespaces()
    core.list_namespace()
    extensions.list_custom_resource_definition()

    # Opening a watch is authorised before the first event: a 200 response is the proof.
    watches: list[Callable[[], Any]] = [
        lambda: custom.list_cluster_custom_object(GROUP, VERSION, PLURAL, **WATCH),
        lambda: core.list_secret_for_all_namespaces(**WATCH),
        lambda: core.list_config_map_for_all_namespaces(**WATCH),
        lambda: core.list_namespace(**WATCH),
        lambda: extensions.list_custom_resource_definition(**WATCH),
    ]
    for open_watch in watches:
        response = open_watch()
        assert response.status == 200
        response.close()


def test_operator_writes_status_finalizers_and_events(
    operator_client: k8s.ApiClient, user_objects: str
) -> None:
    core = k8s.CoreV1Api(operator_client)
    events = k8s.EventsV1Api(operator_client)
    custom = k8s.CustomObjectsApi(operator_client)
    ns = user_objects

    custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, ns, PLURAL, "token-signing", {"status": {"keyCount": 1}}
    )
    current = cast(
        dict[str, Any],
        custom.get_namespaced_custom_object_status(GROUP, VERSION, ns, PLURAL, "token-signing"),
    )
    current["status"] = {"keyCount": 2}
    custom.replace_namespaced_custom_object_status(
        GROUP, VERSION, ns, PLURAL, "token-signing", current
    )
    finalizer = {"metadata": {"finalizers": ["b2ckeys.dev/delete-key-set"]}}
    custom.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "token-signing", finalizer)
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, ns, PLURAL, "token-signing", {"metadata": {"finalizers": None}}
    )

    created = core.create_namespaced_event(ns, event(ns, "token-signing"))
    core.patch_namespaced_event(name_of(created), ns, {"count": 2})
    # A plain dict: the client sends it as it is, so eventTime keeps its MicroTime form.
    new_style_body: Any = {
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "metadata": {"generateName": "b2ckeys-", "namespace": ns},
        "eventTime": micro_time(),
        "reportingController": "b2ckeys.dev/operator",
        "reportingInstance": "b2ckeys-0",
        "action": "Sync",
        "reason": "Synced",
        "note": "rbac test",
        "type": "Normal",
        "regarding": {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "TrustFrameworkKeySet",
            "name": "token-signing",
            "namespace": ns,
        },
    }
    new_style = events.create_namespaced_event(ns, new_style_body)
    # A recorder that sees the same event again bumps its series (note is immutable).
    events.patch_namespaced_event(
        name_of(new_style), ns, {"series": {"count": 2, "lastObservedTime": micro_time()}}
    )

    stored = cast(
        dict[str, Any],
        custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "token-signing"),
    )
    assert stored["status"] == {"keyCount": 2}
    assert "finalizers" not in stored["metadata"]


def test_operator_is_refused_writes_it_must_never_make(
    operator_client: k8s.ApiClient, user_objects: str
) -> None:
    core = k8s.CoreV1Api(operator_client)
    custom = k8s.CustomObjectsApi(operator_client)
    ns = user_objects
    new_secret = k8s.V1Secret(metadata=k8s.V1ObjectMeta(name="written-by-operator"))
    new_keyset = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "TrustFrameworkKeySet",
        "metadata": {"name": "made-by-operator"},
        "spec": {"keySetId": "Other", "source": {"generate": {}}},
    }
    heartbeat = {"status": {"b2ckeys-0": {"priority": 0, "lifetime": 60}}}

    refused = {
        "create Secret": lambda: core.create_namespaced_secret(ns, new_secret),
        "patch Secret": lambda: core.patch_namespaced_secret(
            "app", ns, {"metadata": {"annotations": {"b2ckeys.dev/touched": "yes"}}}
        ),
        "delete TrustFrameworkKeySet": lambda: custom.delete_namespaced_custom_object(
            GROUP, VERSION, ns, PLURAL, "token-signing"
        ),
        "create TrustFrameworkKeySet": lambda: custom.create_namespaced_custom_object(
            GROUP, VERSION, ns, PLURAL, new_keyset
        ),
        "patch ClusterKopfPeering": lambda: custom.patch_cluster_custom_object(
            "kopf.dev", "v1", "clusterkopfpeerings", "b2ckeys", heartbeat
        ),
        "patch KopfPeering": lambda: custom.patch_namespaced_custom_object(
            "kopf.dev", "v1", ns, "kopfpeerings", "b2ckeys", heartbeat
        ),
    }

    statuses = {what: status_of(call) for what, call in refused.items()}

    assert statuses == dict.fromkeys(refused, 403)


def lease(namespace: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"holderIdentity": "b2ckeys-0", "leaseDurationSeconds": 15},
    }


def test_operator_takes_its_lease_and_no_other(
    operator_client: k8s.ApiClient, kube_cluster: KubeCluster, user_objects: str
) -> None:
    leases = k8s.CoordinationV1Api(operator_client)
    admin = k8s.CoordinationV1Api(kube_cluster.admin)
    own = OPERATOR_NAMESPACE
    admin.create_namespaced_lease(own, lease(own, "someone-elses"))
    # An operator of an earlier module may have left its (released) Lease: start from none, so
    # the create below is the operator account's own.
    with contextlib.suppress(k8s.ApiException):
        admin.delete_namespaced_lease(LEASE_NAME, own)

    leases.create_namespaced_lease(own, lease(own, LEASE_NAME))
    held = leases.read_namespaced_lease(LEASE_NAME, own)
    assert held.spec is not None
    held.spec.holder_identity = "b2ckeys-1"
    leases.replace_namespaced_lease(LEASE_NAME, own, held)

    refused = {
        "read another Lease": lambda: leases.read_namespaced_lease("someone-elses", own),
        "update another Lease": lambda: leases.patch_namespaced_lease(
            "someone-elses", own, {"spec": {"holderIdentity": "b2ckeys-0"}}
        ),
        "delete its Lease": lambda: leases.delete_namespaced_lease(LEASE_NAME, own),
        "list Leases": lambda: leases.list_namespaced_lease(own),
        "create a Lease elsewhere": lambda: leases.create_namespaced_lease(
            user_objects, lease(user_objects, LEASE_NAME)
        ),
    }
    statuses = {what: status_of(call) for what, call in refused.items()}

    assert statuses == dict.fromkeys(refused, 403)
    stored = admin.read_namespaced_lease(LEASE_NAME, own)
    assert stored.spec is not None
    assert stored.spec.holder_identity == "b2ckeys-1"


def test_a_refusal_names_the_service_account(
    operator_client: k8s.ApiClient, user_objects: str
) -> None:
    # What an operator's log shows when a rule is missing: the identity and the verb.
    with pytest.raises(k8s.ApiException) as raised:
        k8s.CoreV1Api(operator_client).delete_namespaced_secret("app", user_objects)

    message = json.loads(raised.value.body or "{}")["message"]
    assert message.startswith(
        f'secrets "app" is forbidden: User "system:serviceaccount:{OPERATOR_NAMESPACE}:'
        f'{OPERATOR_ACCOUNT}" cannot delete resource "secrets"'
    )
