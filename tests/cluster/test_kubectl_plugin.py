"""`kubectl b2ckeys` against the real kube-apiserver, the real operator process and the Graph
emulator: found by the built kubectl as a plugin, run with a person's kubeconfig and RBAC.

Every command the README's "kubectl b2ckeys" section shows is run here.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from apiserver import KubeCluster, wait_until
from keyset_objects import Keysets, keyset, ready, secret, tls_secret, unique_key_set_id, x5t
from operator_process import (
    CLIENT_ID,
    OPERATOR_USER,
    RBAC_PROPAGATION_TIMEOUT_SECONDS,
    TENANT,
    RunningOperator,
    operator_env,
)
from plugin_cli import (
    DOCS,
    b2ckeys,
    documented_commands,
    kubectl_with_plugin,
    may_list_keysets,
    namespace_reader_kubeconfig,
)

from b2ckeys.settings import FORCE_SYNC_ANNOTATION
from b2ckeys_emulators.devpki import DevCA, rsa_key

pytestmark = pytest.mark.cluster

CA = DevCA.create("b2ckeys kubectl plugin CA")
TRACEBACK = "Traceback (most recent call last)"


def _leaf(slot: int) -> Any:
    return CA.issue(f"kubectl plugin {slot}", key=rsa_key(2048, 70 + slot))


# What --graph needs from the operator's environment: its Graph credentials and endpoints, and
# the emulator's CA (a real tenant's certificates chain to the system's roots).
GRAPH_VARIABLES = ("B2CKEYS_GRAPH_BASE_URL", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")


def graph_env(operator: RunningOperator) -> dict[str, str]:
    """The operator's Graph credentials, as its Deployment sets them, for --graph."""
    env = operator_env(operator.kubeconfig, operator.graph)
    return {k: v for k, v in env.items() if k.startswith("AZURE_") or k in GRAPH_VARIABLES}


def short(value: str) -> str:
    """How the default table cuts a kid or thumbprint (wide shows it whole)."""
    return value if len(value) <= 14 else value[:13] + "…"


def unlabelled(obj: dict[str, Any]) -> dict[str, Any]:
    """The object without the watch label: the operator sees its changes only at the resync."""
    obj["metadata"]["labels"] = {}
    return obj


def synced(operator: RunningOperator, keysets: Keysets, name: str) -> dict[str, Any]:
    return operator.wait_for(
        f"{name} Synced",
        lambda: keysets.settled(name, "Synced"),
        describe=lambda: keysets.get(name),
    )


@contextlib.contextmanager
def operator_stopped(operator: RunningOperator) -> Iterator[None]:
    """The operator process stopped (SIGTERM, as a rollout would), and started again after."""
    assert operator.process.stop() == 0, operator.process.log_tail()
    try:
        yield
    finally:
        operator.process.start()


# --- status -------------------------------------------------------------------------------------


def test_kubectl_runs_the_plugin_from_path_and_prints_the_status_table(
    operator: RunningOperator, namespace: str, tmp_path: Path
) -> None:
    keysets = Keysets(operator.cluster, namespace)
    key_set_id = unique_key_set_id("Plugin")
    leaf = _leaf(1)
    keysets.apply(
        tls_secret("signing-tls", CA, leaf),
        keyset("token-signing", key_set_id, {"tlsSecret": {"name": "signing-tls"}}),
    )
    obj = synced(operator, keysets, "token-signing")
    active = obj["status"]["activeKey"]

    listed = kubectl_with_plugin(operator.cluster, tmp_path, "plugin", "list")
    shown = kubectl_with_plugin(operator.cluster, tmp_path, "b2ckeys", "status", "-n", namespace)

    assert "kubectl-b2ckeys" in listed.stdout, listed.stdout + listed.stderr
    assert shown.returncode == 0, shown.stderr
    header, rule, row = shown.stdout.splitlines()
    assert header.split() == [
        "NAME", "READY", "REASON", "KEYSET", "ACTIVE-KID", "X5T", "EXPIRES", "SYNCED-KID"
    ]  # fmt: skip
    assert set(rule) == {"-", " "}
    cells = row.split()
    assert cells[:4] == ["token-signing", "True", "Synced", f"B2C_1A_{key_set_id}"]
    assert cells[4] == short(active["kid"])
    assert cells[5] == short(x5t(leaf))
    assert " ".join(cells[6:8]) == active["expires"].replace("T", " ")[:16]
    assert cells[8] == short(obj["status"]["syncedKey"]["kid"])


def test_status_across_namespaces_wide_and_json(
    operator: RunningOperator, kube_cluster: KubeCluster, tmp_path: Path
) -> None:
    first, second = (f"plugin-{unique_key_set_id('ns').lower()}" for _ in range(2))
    ids = {}
    for ns in (first, second):
        kube_cluster.create_namespace(ns)
        ids[ns] = unique_key_set_id("Wide")
        Keysets(kube_cluster, ns).apply(keyset("generated", ids[ns], {"generate": {"kty": "RSA"}}))
    objs = {ns: synced(operator, Keysets(kube_cluster, ns), "generated") for ns in (first, second)}

    everywhere = kubectl_with_plugin(
        kube_cluster, tmp_path, "b2ckeys", "status", "-A", "-o", "wide"
    )
    as_json = b2ckeys(
        tmp_path, "status", "-n", first, "-o", "json", kubeconfig=kube_cluster.admin_kubeconfig
    )

    assert everywhere.returncode == 0, everywhere.stderr
    lines = everywhere.stdout.splitlines()
    assert lines[0].split()[:2] == ["NAMESPACE", "NAME"]
    assert lines[0].split()[-4:] == ["SOURCE", "MODE", "KEYS", "LAST-SYNC"]
    for ns in (first, second):
        (row,) = [line.split() for line in lines[2:] if line.split()[0] == ns]
        kid = objs[ns]["status"]["activeKey"]["kid"]
        assert row[1:5] == ["generated", "True", "Synced", f"B2C_1A_{ids[ns]}"]
        assert kid in row, "wide shows whole kids"
        assert row[-5:-2] == ["generate/RSA", "Sync", "1"]
    assert as_json.returncode == 0, as_json.stderr
    (item,) = json.loads(as_json.stdout)["items"]
    assert (item["namespace"], item["name"]) == (first, "generated")
    assert item["ready"]["reason"] == "Synced"
    assert item["status"] == objs[first]["status"]


def test_status_graph_lists_every_key_in_b2c_and_marks_the_active_one(
    operator: RunningOperator, namespace: str, tmp_path: Path
) -> None:
    keysets = Keysets(operator.cluster, namespace)
    key_set_id = unique_key_set_id("Graph")
    keysets.apply(
        tls_secret("signing-tls", CA, _leaf(2)),
        keyset("token-signing", key_set_id, {"tlsSecret": {"name": "signing-tls"}}),
    )
    first = synced(operator, keysets, "token-signing")
    renewed = _leaf(3)
    keysets.apply(tls_secret("signing-tls", CA, renewed))
    operator.wait_for(
        "the renewed certificate in B2C",
        lambda: (
            (obj := keysets.settled("token-signing", "Synced"))
            and obj["status"]["syncedKey"]["x5t"] == x5t(renewed)
        ),
    )
    b2c_keys = operator.graph.keys(f"B2C_1A_{key_set_id}")
    assert len(b2c_keys) == 2

    shown = b2ckeys(
        tmp_path,
        "status",
        "-n",
        namespace,
        "--graph",
        "-o",
        "wide",
        kubeconfig=operator.cluster.admin_kubeconfig,
        env=graph_env(operator),
    )

    assert shown.returncode == 0, shown.stderr
    table = shown.stdout.split("What B2C holds (read now from Graph)\n", 1)[1].splitlines()
    assert table[0].split() == [
        "RESOURCE", "B2C", "KEYSET", "KID", "KTY", "USE", "X5T", "NOT-BEFORE", "EXPIRES",
        "STATUS", "ACTIVE",
    ]  # fmt: skip
    rows = {line.split()[2]: line.split() for line in table[2:]}
    assert set(rows) == {k["kid"] for k in b2c_keys}
    by_x5t = {row[5]: row for row in rows.values()}
    assert by_x5t[x5t(renewed)][-1] == "yes"
    assert by_x5t[first["status"]["syncedKey"]["x5t"]][-1] == "enabled"  # not active
    assert all(row[0] == f"{namespace}/token-signing" for row in rows.values())


def test_status_graph_without_credentials_says_what_to_set(
    kube_cluster: KubeCluster, installed_crds: list[str], namespace: str, tmp_path: Path
) -> None:
    shown = b2ckeys(
        tmp_path, "status", "-n", namespace, "--graph", kubeconfig=kube_cluster.admin_kubeconfig
    )

    assert shown.returncode == 1
    assert shown.stdout == ""
    assert "--graph reads B2C with the operator's Graph credentials" in shown.stderr
    assert "AZURE_TENANT_ID, AZURE_CLIENT_ID" in shown.stderr
    assert TRACEBACK not in shown.stderr


def test_status_graph_with_a_wrong_client_secret_says_what_to_check(
    operator: RunningOperator, namespace: str, tmp_path: Path
) -> None:
    keysets = Keysets(operator.cluster, namespace)
    keysets.apply(keyset("generated", unique_key_set_id("WrongSecret"), {"generate": {}}))
    synced(operator, keysets, "generated")

    shown = b2ckeys(
        tmp_path,
        "status",
        "-n",
        namespace,
        "--graph",
        kubeconfig=operator.cluster.admin_kubeconfig,
        env={**graph_env(operator), "AZURE_CLIENT_SECRET": "not-the-secret"},
    )

    assert shown.returncode == 1
    assert shown.stderr.startswith(
        "b2ckeys status: error: reading B2C failed (Unauthorized): Graph refused the operator's "
        "credentials"
    ), shown.stderr
    assert "not-the-secret" not in shown.stderr
    assert TRACEBACK not in shown.stderr


# --- RBAC ---------------------------------------------------------------------------------------


def test_a_user_limited_to_one_namespace_is_refused_all_namespaces_with_the_verb_and_resource(
    kube_cluster: KubeCluster, installed_crds: list[str], namespace: str, tmp_path: Path
) -> None:
    Keysets(kube_cluster, namespace).apply(
        keyset("generated", unique_key_set_id("Rbac"), {"generate": {"kty": "oct"}})
    )
    kubeconfig = namespace_reader_kubeconfig(kube_cluster, namespace, "team-reader")
    wait_until(
        lambda: may_list_keysets(kube_cluster, kubeconfig, namespace),
        timeout=RBAC_PROPAGATION_TIMEOUT_SECONDS,
        what="the RoleBinding to reach the authorizer",
    )

    everywhere = b2ckeys(tmp_path, "status", "-A", kubeconfig=kubeconfig)
    own = kubectl_with_plugin(
        kube_cluster, tmp_path, "b2ckeys", "status", "-n", namespace, kubeconfig=kubeconfig
    )
    sync = b2ckeys(tmp_path, "sync", "generated", "-n", namespace, kubeconfig=kubeconfig)

    assert everywhere.returncode == 1
    assert everywhere.stderr.startswith(
        "b2ckeys status: error: forbidden: you may not list "
        "trustframeworkkeysets.b2ckeys.dev in any namespace (-A)."
    ), everywhere.stderr
    assert f'"system:serviceaccount:{namespace}:team-reader" cannot list' in everywhere.stderr
    assert TRACEBACK not in everywhere.stderr
    assert own.returncode == 0, own.stderr
    assert own.stdout.splitlines()[2].split()[0] == "generated"
    assert sync.returncode == 1
    assert (
        "forbidden: you may not patch trustframeworkkeysets.b2ckeys.dev in namespace "
        f"{namespace}" in sync.stderr
    ), sync.stderr


def test_the_context_chooses_the_identity_and_its_namespace_is_the_default(
    kube_cluster: KubeCluster, installed_crds: list[str], namespace: str, tmp_path: Path
) -> None:
    Keysets(kube_cluster, namespace).apply(
        keyset("generated", unique_key_set_id("Context"), {"generate": {"kty": "oct"}})
    )
    reader = namespace_reader_kubeconfig(kube_cluster, namespace, "context-reader")
    wait_until(
        lambda: may_list_keysets(kube_cluster, reader, namespace),
        timeout=RBAC_PROPAGATION_TIMEOUT_SECONDS,
        what="the RoleBinding to reach the authorizer",
    )
    kubeconfig = two_contexts(kube_cluster, reader, namespace, tmp_path / "kubeconfig")

    as_reader = b2ckeys(tmp_path, "status", kubeconfig=kubeconfig)
    as_reader_everywhere = b2ckeys(tmp_path, "status", "-A", kubeconfig=kubeconfig)
    as_admin_everywhere = b2ckeys(
        tmp_path, "status", "-A", "--context", "admin", kubeconfig=kubeconfig
    )
    unknown = b2ckeys(tmp_path, "status", "--context", "staging", kubeconfig=kubeconfig)

    assert as_reader.returncode == 0, as_reader.stderr
    assert as_reader.stdout.splitlines()[2].split()[0] == "generated"
    assert as_reader_everywhere.returncode == 1
    assert "forbidden" in as_reader_everywhere.stderr
    assert as_admin_everywhere.returncode == 0, as_admin_everywhere.stderr
    assert any(
        line.split()[:2] == [namespace, "generated"]
        for line in as_admin_everywhere.stdout.splitlines()
    )
    assert unknown.returncode == 1
    assert "staging" in unknown.stderr
    assert TRACEBACK not in unknown.stderr


def two_contexts(cluster: KubeCluster, reader: Path, namespace: str, path: Path) -> Path:
    """One kubeconfig: the namespace reader's context, current and defaulting to `namespace`,
    and admin's."""
    document = yaml.safe_load(reader.read_text(encoding="utf-8"))
    admin = yaml.safe_load(cluster.admin_kubeconfig.read_text(encoding="utf-8"))
    document["contexts"][0]["context"]["namespace"] = namespace
    document["users"] += admin["users"]
    document["contexts"] += admin["contexts"]
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


# --- sync ---------------------------------------------------------------------------------------


def test_sync_makes_the_operator_pick_up_an_unlabelled_secret_at_once(
    operator: RunningOperator, namespace: str, tmp_path: Path
) -> None:
    keysets = Keysets(operator.cluster, namespace)
    key_set_id = unique_key_set_id("SyncNow")
    keysets.apply(
        unlabelled(secret("facebook", {"client-secret": b"first-value"})),
        keyset("facebook", key_set_id, {"secret": {"name": "facebook", "key": "client-secret"}}),
    )
    before = synced(operator, keysets, "facebook")
    assert "lacks the label" in ready(before)["message"]
    # Unlabelled, so no watch event reaches the operator; its resync is 10 minutes away.
    keysets.apply(unlabelled(secret("facebook", {"client-secret": b"second-value"})))
    planned = b2ckeys(
        tmp_path, "plan", "facebook", "-n", namespace, kubeconfig=operator.cluster.admin_kubeconfig
    )
    assert planned.returncode == 0, planned.stderr
    assert (
        "a string secret whose value status.sourceFingerprint does not describe" in planned.stdout
    )
    assert planned.stdout.splitlines()[-1].startswith("  1. uploadSecret nbf=")
    assert planned.stdout.splitlines()[-1].endswith(" exp=None (the secret's value changed)")
    assert "lacks the label" in planned.stdout

    done = kubectl_with_plugin(
        operator.cluster,
        tmp_path,
        "b2ckeys",
        "sync",
        "facebook",
        "-n",
        namespace,
        "--wait",
        "--timeout",
        "60s",
    )

    assert done.returncode == 0, done.stderr
    first_line, second_line = done.stdout.splitlines()
    assert first_line.startswith(
        f"TrustFrameworkKeySet {namespace}/facebook: sync requested ({FORCE_SYNC_ANNOTATION}="
    )
    assert second_line.startswith("reconciled: Ready=True Synced: ")
    after = keysets.get("facebook")
    assert after is not None
    assert after["status"]["syncedKey"]["kid"] != before["status"]["syncedKey"]["kid"]
    assert len(operator.graph.keys(f"B2C_1A_{key_set_id}")) == 2
    value = after["metadata"]["annotations"][FORCE_SYNC_ANNOTATION]
    assert value in first_line
    for shown in (planned, done):
        assert "second-value" not in shown.stdout + shown.stderr
        assert before["status"]["sourceFingerprint"] not in shown.stdout


def test_sync_wait_on_a_key_set_with_nothing_to_do_ends_in_its_timeout_and_says_why(
    operator: RunningOperator, namespace: str, tmp_path: Path
) -> None:
    keysets = Keysets(operator.cluster, namespace)
    keysets.apply(keyset("generated", unique_key_set_id("Quiet"), {"generate": {"kty": "oct"}}))
    before = synced(operator, keysets, "generated")
    reads_before = operator_reads(operator, namespace, "generated")

    done = b2ckeys(
        tmp_path,
        "sync",
        "generated",
        "-n",
        namespace,
        "--wait",
        "--timeout",
        "1s",
        kubeconfig=operator.cluster.admin_kubeconfig,
    )

    assert done.returncode == 1
    assert "but its status did not change within 1s. The operator writes status only" in done.stderr
    after = keysets.get("generated")
    assert after is not None
    assert after["status"] == before["status"]
    # It did reconcile (each reconcile starts with a fresh GET), and found nothing to write.
    operator.wait_for(
        "the operator to read the key set again",
        lambda: operator_reads(operator, namespace, "generated") > reads_before,
    )


def operator_reads(operator: RunningOperator, namespace: str, name: str) -> int:
    """How many times the operator has read this key set, by the API server's audit log."""
    return sum(
        1
        for event in operator.cluster.audit_events()
        if (event.get("user") or {}).get("username") == OPERATOR_USER
        and event.get("verb") == "get"
        and (event.get("objectRef") or {}).get("resource") == "trustframeworkkeysets"
        and (event.get("objectRef") or {}).get("namespace") == namespace
        and (event.get("objectRef") or {}).get("name") == name
    )


def test_sync_without_wait_sets_the_annotation_and_returns(
    kube_cluster: KubeCluster, installed_crds: list[str], namespace: str, tmp_path: Path
) -> None:
    keysets = Keysets(kube_cluster, namespace)
    keysets.apply(keyset("generated", unique_key_set_id("Annotate"), {"generate": {"kty": "oct"}}))
    stamps = []

    for _ in range(2):
        done = kubectl_with_plugin(
            kube_cluster, tmp_path, "b2ckeys", "sync", "generated", "-n", namespace
        )
        assert done.returncode == 0, done.stderr
        obj = keysets.get("generated")
        assert obj is not None
        stamps.append(obj["metadata"]["annotations"][FORCE_SYNC_ANNOTATION])
        assert done.stdout == (
            f"TrustFrameworkKeySet {namespace}/generated: sync requested "
            f"({FORCE_SYNC_ANNOTATION}={stamps[-1]})\n"
        )

    # Each one a new RFC 3339 value (a repeated value would not make the operator reconcile).
    first, second = (datetime.fromisoformat(stamp) for stamp in stamps)
    assert first < second


def test_sync_of_a_key_set_that_does_not_exist(
    kube_cluster: KubeCluster, installed_crds: list[str], namespace: str, tmp_path: Path
) -> None:
    done = b2ckeys(
        tmp_path, "sync", "nope", "-n", namespace, kubeconfig=kube_cluster.admin_kubeconfig
    )

    assert done.returncode == 1
    assert done.stderr == (
        f'b2ckeys sync: error: TrustFrameworkKeySet "nope" not found in namespace {namespace}\n'
    )


# --- plan ---------------------------------------------------------------------------------------


def test_plan_shows_the_upload_a_secret_changed_while_the_operator_was_stopped_needs(
    operator: RunningOperator, namespace: str, tmp_path: Path
) -> None:
    keysets = Keysets(operator.cluster, namespace)
    key_set_id = unique_key_set_id("Plan")
    keysets.apply(
        tls_secret("signing-tls", CA, _leaf(4)),
        keyset("token-signing", key_set_id, {"tlsSecret": {"name": "signing-tls"}}),
    )
    synced(operator, keysets, "token-signing")
    admin = operator.cluster.admin_kubeconfig
    unchanged = b2ckeys(tmp_path, "plan", "token-signing", "-n", namespace, kubeconfig=admin)
    renewed = _leaf(5)
    requests_before = operator.graph.requests(key_set_id)

    with operator_stopped(operator):
        keysets.apply(tls_secret("signing-tls", CA, renewed))
        from_status = kubectl_with_plugin(
            operator.cluster, tmp_path, "b2ckeys", "plan", "token-signing", "-n", namespace
        )
        from_graph = b2ckeys(
            tmp_path,
            "plan",
            "token-signing",
            "-n",
            namespace,
            "--graph",
            kubeconfig=admin,
            env=graph_env(operator),
        )
        # Both looked; neither wrote: B2C and the key set are as the operator left them.
        assert len(operator.graph.keys(f"B2C_1A_{key_set_id}")) == 1
        writes = [r for r in operator.graph.requests(key_set_id) if not r.startswith("GET ")]
        assert writes == [r for r in requests_before if not r.startswith("GET ")]

    assert unchanged.returncode == 0, unchanged.stderr
    assert unchanged.stdout.splitlines()[-1].startswith("Nothing to do: the source is key ")
    planned = f"  1. uploadPkcs12 x5t={x5t(renewed)} (certificate not in the key set yet)"
    assert from_status.returncode == 0, from_status.stderr
    assert "compared with status as of" in from_status.stdout
    assert "B2C itself was not read (--graph reads it)" in from_status.stdout
    assert from_status.stdout.splitlines()[-2:] == [
        "Sync mode would write, in this order:",
        planned,
    ]
    assert from_graph.returncode == 0, from_graph.stderr
    assert f"compared with B2C key set B2C_1A_{key_set_id}, read now (1 key;" in from_graph.stdout
    assert from_graph.stdout.splitlines()[-1] == planned
    for shown in (from_status, from_graph):
        assert "PRIVATE KEY" not in shown.stdout + shown.stderr
    # Started again, the operator uploads exactly what plan said.
    operator.wait_for(
        "the operator, started again, to upload the renewed certificate",
        lambda: (
            (obj := keysets.settled("token-signing", "Synced"))
            and obj["status"]["syncedKey"]["x5t"] == x5t(renewed)
        ),
    )


def test_plan_says_why_nothing_would_be_written_for_a_missing_secret(
    kube_cluster: KubeCluster, installed_crds: list[str], namespace: str, tmp_path: Path
) -> None:
    Keysets(kube_cluster, namespace).apply(
        keyset("waiting", unique_key_set_id("Missing"), {"tlsSecret": {"name": "not-yet"}})
    )

    planned = b2ckeys(
        tmp_path, "plan", "waiting", "-n", namespace, kubeconfig=kube_cluster.admin_kubeconfig
    )

    assert planned.returncode == 0, planned.stderr
    assert planned.stdout.splitlines()[-1] == (
        "Nothing to do: Sync mode would write nothing, because SourceNotFound: Secret "
        f"{namespace}/not-yet (spec.source.tlsSecret) does not exist; create it or fix the name. "
        "The key set in B2C is left as it is."
    )


# --- the docs -----------------------------------------------------------------------------------


def test_every_command_in_the_docs_runs_as_shown(
    operator: RunningOperator, namespace: str, tmp_path: Path
) -> None:
    commands = documented_commands()
    keysets = Keysets(operator.cluster, namespace)
    keysets.apply(
        tls_secret("token-signing-tls", CA, _leaf(6)),
        keyset(
            "token-signing", unique_key_set_id("Docs"), {"tlsSecret": {"name": "token-signing-tls"}}
        ),
        unlabelled(secret("facebook", {"client-secret": b"docs-v1"})),
        keyset(
            "facebook-secret",
            unique_key_set_id("DocsFacebook"),
            {"secret": {"name": "facebook", "key": "client-secret"}},
        ),
    )
    for name in ("token-signing", "facebook-secret"):
        synced(operator, keysets, name)
    # What the docs' `sync --wait` is for: an unlabelled Secret changed since the last sync.
    keysets.apply(unlabelled(secret("facebook", {"client-secret": b"docs-v2"})))

    ran = []
    for command in commands:  # in the docs' order: `sync --wait` comes before a plain sync
        done = kubectl_with_plugin(
            operator.cluster, tmp_path, *command.args(namespace), env=graph_env(operator)
        )
        ran.append(command.line)

        assert done.returncode == 0, f"{command.line}: {done.stderr}"
        assert TRACEBACK not in done.stderr
        if command.output:
            # The first line shown: a table's header, or what the command says first.
            shown = command.output[0].replace(" identity/", f" {namespace}/")
            first = done.stdout.splitlines()[0]
            if "  " in shown:
                assert first.split() == shown.split(), command.line
            else:
                assert first.split("(")[0] == shown.split("(")[0], command.line

    subcommands = {command.args(namespace)[1] for command in commands}
    assert subcommands == {"status", "plan", "sync"}, f"{DOCS.name} shows {ran}"


def test_check_tenant_verifies_credentials_as_the_operator_does(
    operator: RunningOperator, namespace: str, tmp_path: Path
) -> None:
    graph = operator.graph
    operator.cluster.apply(
        [
            secret("good-app", {"client-secret": graph.client_secret.encode()}),
            secret("bad-app", {"client-secret": b"not-the-secret"}),
            *[
                {
                    "apiVersion": "b2ckeys.dev/v1alpha1",
                    "kind": "B2CTenant",
                    "metadata": {"name": name},
                    "spec": {
                        "tenantId": TENANT,
                        "clientId": CLIENT_ID,
                        "auth": {
                            "clientSecret": {
                                "secretRef": {"name": f"{name}-app", "key": "client-secret"}
                            }
                        },
                        "graphBaseUrl": graph.emulator.graph_base_url,
                        "authorityHost": graph.emulator.authority_host,
                    },
                }
                for name in ("good", "bad")
            ],
        ],
        namespace=namespace,
    )
    # Only the emulator's CA from the operator's environment: no Graph credentials are needed.
    ca = {
        k: v for k, v in graph_env(operator).items() if k in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")
    }
    good = kubectl_with_plugin(
        operator.cluster, tmp_path, "b2ckeys", "check-tenant", "good", "-n", namespace, env=ca
    )
    bad = kubectl_with_plugin(
        operator.cluster, tmp_path, "b2ckeys", "check-tenant", "bad", "-n", namespace, env=ca
    )

    assert good.returncode == 0, good.stderr
    assert f"B2CTenant {namespace}/good: Verified (permission read-write)" in good.stdout
    assert bad.returncode == 1
    assert f"B2CTenant {namespace}/bad: InvalidCredentials" in bad.stderr
    assert "not-the-secret" not in bad.stdout + bad.stderr

    # A ClusterB2CTenant's Secret lives in the operator's namespace (b2ckeys-system by default).
    shared = f"shared-{namespace}"
    operator.cluster.apply(
        secret(f"{shared}-app", {"client-secret": graph.client_secret.encode()}),
        namespace="b2ckeys-system",
    )
    operator.cluster.apply(
        {
            "apiVersion": "b2ckeys.dev/v1alpha1",
            "kind": "ClusterB2CTenant",
            "metadata": {"name": shared},
            "spec": {
                "tenantId": TENANT,
                "clientId": CLIENT_ID,
                "auth": {
                    "clientSecret": {"secretRef": {"name": f"{shared}-app", "key": "client-secret"}}
                },
                "graphBaseUrl": graph.emulator.graph_base_url,
                "authorityHost": graph.emulator.authority_host,
            },
        }
    )
    cluster_wide = kubectl_with_plugin(
        operator.cluster, tmp_path, "b2ckeys", "check-tenant", shared, "--cluster", env=ca
    )
    assert cluster_wide.returncode == 0, cluster_wide.stderr
    assert f"ClusterB2CTenant {shared}: Verified (permission read-write)" in cluster_wide.stdout
