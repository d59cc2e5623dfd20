"""What a person sees from `kubectl apply` when the API server refuses a key set (CEL rules), with
the kubectl built from the cluster's own release.

test_crd_admission.py compares the server's causes with the line kubectl prints; this runs
kubectl itself, so a change in how kubectl renders a refusal is noticed too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from apiserver import ROOT, KubeCluster
from kubectl_cli import kubectl

pytestmark = pytest.mark.cluster

CRD_PATH = ROOT / "crds" / "trustframeworkkeysets.yaml"


def rule_message(field: str, rule_contains: str) -> str:
    """The message of the CEL rule on `field` whose expression contains `rule_contains`."""
    crd = yaml.safe_load(CRD_PATH.read_text(encoding="utf-8"))
    node = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for part in field.split("."):
        node = node["properties"][part]
    (message,) = [
        r["message"] for r in node["x-kubernetes-validations"] if rule_contains in r["rule"]
    ]
    return str(message)


def keyset_yaml(name: str, namespace: str, spec: dict[str, Any]) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "b2ckeys.dev/v1alpha1",
            "kind": "TrustFrameworkKeySet",
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
        }
    )


def test_kubectl_apply_prints_the_source_rule(
    kube_cluster: KubeCluster, installed_crds: list[str], namespace: str, tmp_path: Path
) -> None:
    two_sources = {
        "keySetId": "TokenSigning",
        "source": {"generate": {}, "secret": {"name": "app", "key": "client-secret"}},
    }

    applied = kubectl(
        kube_cluster, tmp_path, "apply", "-f", "-", stdin=keyset_yaml("two", namespace, two_sources)
    )

    assert applied.returncode == 1
    assert applied.stderr == (
        'The TrustFrameworkKeySet "two" is invalid: spec.source: Invalid value: '
        f"{rule_message('spec.source', '.size() == 1')}\n"
    )


def test_kubectl_apply_prints_the_immutable_key_set_id_rule(
    kube_cluster: KubeCluster, installed_crds: list[str], namespace: str, tmp_path: Path
) -> None:
    spec = {"keySetId": "TokenSigning", "source": {"generate": {}}}
    created = kubectl(
        kube_cluster, tmp_path, "apply", "-f", "-", stdin=keyset_yaml("ks", namespace, spec)
    )
    assert created.returncode == 0, created.stderr

    changed = kubectl(
        kube_cluster,
        tmp_path,
        "apply",
        "-f",
        "-",
        stdin=keyset_yaml("ks", namespace, {**spec, "keySetId": "Other"}),
    )

    assert changed.returncode == 1
    assert changed.stderr == (
        'The TrustFrameworkKeySet "ks" is invalid: spec.keySetId: Invalid value: "Other": '
        f"{rule_message('spec.keySetId', 'oldSelf')}\n"
    )
