"""`kubectl b2ckeys disable|enable` against the real kube-apiserver and the real operator
process: the plugin found on PATH by the built kubectl, a person's kubeconfig and RBAC, the
annotation admitted by the real API server, and the operator's answer in status."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from keyset_objects import Keysets, keyset, ready, secret, unique_key_set_id
from operator_process import RunningOperator
from plugin_cli import b2ckeys, kubectl_with_plugin, may_list_keysets, namespace_reader_kubeconfig

from b2ckeys.model import KEY_STATUS_ANNOTATION

pytestmark = pytest.mark.cluster


def statuses(operator: RunningOperator, key_set_id: str) -> dict[str, str]:
    return {k["kid"]: k.get("status", "enabled") for k in operator.graph.keys(key_set_id)}


def status_of(keysets: Keysets, name: str) -> dict[str, Any]:
    obj = keysets.get(name)
    assert obj is not None
    return dict(obj.get("status") or {})


def test_disable_and_enable_through_the_plugin_and_the_only_usable_key_refused(
    operator: RunningOperator, namespace: str, tmp_path: Path
) -> None:
    keysets = Keysets(operator.cluster, namespace)
    key_set_id = unique_key_set_id("Emergency")
    b2c_id = f"B2C_1A_{key_set_id}"
    keysets.apply(
        secret("facebook", {"k": b"first-value"}),
        keyset("facebook", key_set_id, {"secret": {"name": "facebook", "key": "k"}}),
    )
    first = operator.wait_for(
        "the first key synced",
        lambda: keysets.settled("facebook", "Synced"),
        describe=lambda: keysets.get("facebook"),
    )["status"]["syncedKey"]["kid"]

    refused = kubectl_with_plugin(
        operator.cluster,
        tmp_path,
        "b2ckeys",
        "disable",
        "facebook",
        "-n",
        namespace,
        "--kid",
        first,
        "--wait",
    )
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "Refused:" in refused.stderr
    assert "only usable key" in refused.stderr
    assert statuses(operator, b2c_id) == {first: "enabled"}
    obj = keysets.get("facebook")
    assert obj is not None
    request = json.loads(obj["metadata"]["annotations"][KEY_STATUS_ANNOTATION])
    assert request["kid"] == first
    assert request["status"] == "disabled"
    assert obj["status"]["keyStatusRequest"]["id"] == request["id"]

    # A newer key, active: now the first one may go, and come back.
    keysets.apply(secret("facebook", {"k": b"second-value"}))
    operator.wait_for(
        "the newer key active",
        lambda: status_of(keysets, "facebook").get("activeKey", {}).get("kid") not in (None, first),
        describe=lambda: keysets.get("facebook"),
    )
    disabled = kubectl_with_plugin(
        operator.cluster,
        tmp_path,
        "b2ckeys",
        "disable",
        "facebook",
        "-n",
        namespace,
        "--kid",
        first,
        "--wait",
        "--timeout",
        "60s",
    )
    assert disabled.returncode == 0, disabled.stderr
    assert disabled.stdout.splitlines()[-1] == f"Done: {b2c_id}: key {first} disabled"
    assert statuses(operator, b2c_id)[first] == "disabled"

    enabled = b2ckeys(
        tmp_path,
        "enable",
        "facebook",
        "-n",
        namespace,
        "--kid",
        first,
        "--wait",
        kubeconfig=operator.cluster.admin_kubeconfig,
    )
    assert enabled.returncode == 0, enabled.stderr
    assert statuses(operator, b2c_id)[first] == "enabled"
    assert ready(keysets.get("facebook") or {})["reason"] == "Synced"
    for run in (refused, disabled, enabled):
        for planted in ("first-value", "second-value"):
            assert planted not in run.stdout + run.stderr


def test_a_reader_without_patch_is_told_which_verb_it_lacks(
    operator: RunningOperator, namespace: str, tmp_path: Path
) -> None:
    keysets = Keysets(operator.cluster, namespace)
    keysets.apply(keyset("generated", unique_key_set_id("NoPatch"), {"generate": {"kty": "oct"}}))
    reader = namespace_reader_kubeconfig(operator.cluster, namespace, "reader")
    operator.wait_for(
        "the reader's Role to apply", lambda: may_list_keysets(operator.cluster, reader, namespace)
    )

    denied = b2ckeys(
        tmp_path, "disable", "generated", "-n", namespace, "--kid", "any", kubeconfig=reader
    )

    assert denied.returncode == 1
    assert "forbidden: you may not patch trustframeworkkeysets.b2ckeys.dev" in denied.stderr
    obj = keysets.get("generated")
    assert obj is not None
    assert KEY_STATUS_ANNOTATION not in (obj["metadata"].get("annotations") or {})
