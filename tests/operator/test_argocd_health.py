"""Argo CD's view of key sets and tenants, from the statuses the operator really writes: each
object read back from the API server goes through deploy/argocd's health.lua in gopher-lua, the
way Argo CD evaluates it (tests/unit/test_argocd.py covers the hand-written test cases)."""

from __future__ import annotations

from harness import Graph, Kube, OperatorControl, keyset, secret

from b2ckeys_emulators.devpki import DevCA, rsa_key
from go_tools import argocd_health


async def test_argo_cd_reads_the_operators_own_statuses(
    kube: Kube, graph: Graph, operator: OperatorControl
) -> None:
    ca = DevCA.create()
    await kube.create(secret("ok-tls", ca.tls_secret_data(ca.issue("ok", key=rsa_key(2048, 1)))))
    await kube.create(secret("fb", {"k": b"client-secret"}))
    await kube.create(keyset("healthy", "ArgoHealthy", {"tlsSecret": {"name": "ok-tls"}}))
    await kube.create(keyset("missing", "ArgoMissing", {"tlsSecret": {"name": "absent"}}))
    await kube.create(
        keyset("observed", "ArgoObserved", {"generate": {"kty": "RSA"}}, mode="Observe")
    )
    await kube.create(
        keyset(
            "staged",
            "ArgoStaged",
            {"secret": {"name": "fb", "key": "k"}},
            validity={"notBeforeDelay": "1h"},
        )
    )
    seen = {
        "healthy": await kube.wait_reason("healthy", "Synced"),
        "missing": await kube.wait_reason("missing", "SourceNotFound"),
        "observed": await kube.wait_reason("observed", "Drifted"),
        "staged": await kube.wait_reason("staged", "PendingActivation"),
    }
    health = {name: argocd_health(obj) for name, obj in seen.items()}

    assert health["healthy"]["status"] == "Healthy"
    assert health["missing"]["status"] == "Degraded"
    assert "absent" in health["missing"]["message"]
    assert health["observed"]["status"] == "Suspended"
    assert health["staged"]["status"] == "Progressing"
    # A resource the operator has not reached yet is Progressing, never Degraded.
    fresh = await kube.create(keyset("fresh", "ArgoFresh", {"generate": {"kty": "RSA"}}))
    fresh.pop("status", None)
    assert argocd_health(fresh)["status"] == "Progressing"
