"""Minimal, permissive CRDs for other projects' kinds that the deploy manifests refer to.

cert-manager's kinds are served by its real CRDs (cert_manager_process.cert_manager_crds), so
the examples' Issuers and Certificates are checked against cert-manager's own schema. Kopf's
peering CRDs have no such source here: these stand-ins register the same group/version/kind
with a schema that accepts anything, so the operator's RBAC on Kopf's peering objects can be
exercised with real requests.
"""

from __future__ import annotations

from typing import Any


def permissive_crd(
    group: str, version: str, kind: str, plural: str, *, namespaced: bool
) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced" if namespaced else "Cluster",
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
            },
            "versions": [
                {
                    "name": version,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": True,
                        }
                    },
                }
            ],
        },
    }


# Kopf's peering objects (kopf.dev/v1), as Kopf's own peering.yaml declares them.
KOPF_PEERING_CRDS = [
    permissive_crd("kopf.dev", "v1", "KopfPeering", "kopfpeerings", namespaced=True),
    permissive_crd("kopf.dev", "v1", "ClusterKopfPeering", "clusterkopfpeerings", namespaced=False),
]
