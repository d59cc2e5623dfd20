"""`b2ckeys demo`: both emulators, the real operator, the examples, a rotation, and a table.

Everything runs as the real processes a person would start (`b2ckeys graph-emulator`,
`b2ckeys kube-emulator`, `b2ckeys run`), on loopback, in a temporary directory. The demo plays
cert-manager: it issues the certificates the example `Certificate`s describe and writes them
into the labelled TLS Secret the way real cert-manager was seen to (tests/cluster/
test_cert_manager.py), then renews one.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import os
import shutil
import ssl
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, TextIO

import httpx
import yaml
from cryptography.hazmat.primitives import serialization

from b2ckeys.settings import API_GROUP, API_VERSION, KEYSET_PLURAL, parse_duration
from b2ckeys.tables import b2c_key_table, keyset_table
from b2ckeys_emulators.devpki import DevCA, rsa_key
from b2ckeys_emulators.processes import StartFailed, b2ckeys_executable, listening, running

DEMO_TENANT = "b2ckeys-demo.onmicrosoft.com"
DEMO_CLIENT = "11111111-2222-3333-4444-555555555555"
# A second B2C tenant, used through a B2CTenant in the identity namespace.
PROD_TENANT = "b2ckeys-demo-prod.onmicrosoft.com"
PROD_CLIENT = "11111111-2222-3333-4444-666666666666"
DEMO_EXAMPLES = (
    "00-namespace.yaml",
    "cert-manager-token-signing.yaml",
    "string-secret.yaml",
    "generated-rsa.yaml",
)
READY_TIMEOUT = 60.0  # seconds; a cold start (Graph model import ~4 s) is well inside it


class DemoFailed(RuntimeError):
    pass


class Kube:
    """The few Kubernetes calls the demo makes, over plain HTTP to the kube-emulator."""

    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=10.0)

    @staticmethod
    def _path(obj: Mapping[str, Any], name: str | None = None) -> str:
        api, kind = obj["apiVersion"], obj["kind"]
        ns = obj.get("metadata", {}).get("namespace")
        base = f"/api/{api}" if "/" not in api else f"/apis/{api}"
        plural = {"Namespace": "namespaces", "Secret": "secrets", "ConfigMap": "configmaps"}.get(
            kind, KEYSET_PLURAL if kind == "TrustFrameworkKeySet" else kind.lower() + "s"
        )
        path = f"{base}/namespaces/{ns}/{plural}" if ns else f"{base}/{plural}"
        return f"{path}/{name}" if name else path

    def apply(self, obj: dict[str, Any]) -> None:
        if obj.get("kind") == "Secret" and "stringData" in obj:  # as the API server does
            data = obj.setdefault("data", {})
            for key, value in obj.pop("stringData").items():
                data[key] = base64.b64encode(str(value).encode()).decode()
        name = obj["metadata"]["name"]
        existing = self.http.get(self._path(obj, name))
        if existing.status_code == 404:
            response = self.http.post(self._path(obj), json=obj)
        else:
            obj["metadata"]["resourceVersion"] = existing.json()["metadata"]["resourceVersion"]
            response = self.http.put(self._path(obj, name), json=obj)
        if response.status_code >= 400:
            raise DemoFailed(
                f"applying {obj['kind']} {name}: {response.status_code} {response.text}"
            )

    def delete(self, obj: Mapping[str, Any]) -> None:
        name = obj["metadata"]["name"]
        response = self.http.delete(self._path(obj, name))
        if response.status_code >= 400:
            raise DemoFailed(f"deleting {obj['kind']} {name}: {response.status_code}")

    def issue(self, ca: DevCA, certificate: Mapping[str, Any], slot: int) -> None:
        """One issuance the way cert-manager does it: the next private key's Secret, the
        certificate's Secret in one write, then the next private key's Secret deleted."""
        next_key = _next_private_key_secret(certificate, slot)
        self.apply(next_key)
        self.apply(play_cert_manager(ca, certificate, slot))
        self.delete(next_key)

    def keysets(self, namespace: str) -> list[dict[str, Any]]:
        response = self.http.get(
            f"/apis/{API_GROUP}/{API_VERSION}/namespaces/{namespace}/{KEYSET_PLURAL}"
        )
        response.raise_for_status()
        items: list[dict[str, Any]] = response.json()["items"]
        return items


def _ready(obj: Mapping[str, Any]) -> dict[str, Any]:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return dict(cond)
    return {}


def _wait(what: str, check: Callable[[], bool], timeout: float = READY_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise DemoFailed(f"timed out after {timeout:.0f}s waiting for {what}")


def _load_examples(names: Sequence[str]) -> list[dict[str, Any]]:
    folder = resources.files("b2ckeys_emulators") / "examples"
    docs: list[dict[str, Any]] = []
    for name in names:
        docs.extend(d for d in yaml.safe_load_all((folder / name).read_text()) if d)
    return docs


# cert-manager's default Certificate.spec.duration (90 days) when a Certificate gives none.
_CERT_MANAGER_DEFAULT_DURATION = 90 * 24 * 3600.0


def play_cert_manager(ca: DevCA, certificate: Mapping[str, Any], slot: int) -> dict[str, Any]:
    """The Secret cert-manager's issuing controller writes for a Certificate (leaves only; CAs
    are ours), as the cluster tier saw real cert-manager write it: one complete write of
    tls.crt (the leaf alone under a self-signed CA), tls.key in PKCS#1 (privateKey.encoding's
    default), ca.crt; secretTemplate's labels plus `controller.cert-manager.io/fao`; and its
    `cert-manager.io/*` annotations. notBefore is the issuance time, notAfter spec.duration
    later."""
    spec = certificate["spec"]
    name = certificate["metadata"]["name"]
    duration = parse_duration(str(spec.get("duration") or _CERT_MANAGER_DEFAULT_DURATION))
    leaf = ca.issue(
        spec.get("commonName", name),
        key=rsa_key(2048, slot),
        not_before=dt.datetime.now(dt.UTC).replace(microsecond=0),
        days=max(int(duration // 86400), 1),
    )
    template = spec.get("secretTemplate") or {}
    issuer = spec.get("issuerRef") or {}
    data = {
        "tls.crt": leaf.cert_pem,
        "tls.key": leaf.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,  # PKCS#1: "RSA PRIVATE KEY"
            serialization.NoEncryption(),
        ),
        "ca.crt": ca.root.cert_pem,
    }
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {
            "name": spec["secretName"],
            "namespace": certificate["metadata"]["namespace"],
            "labels": {
                **dict(template.get("labels") or {}),
                "controller.cert-manager.io/fao": "true",
            },
            "annotations": {
                **dict(template.get("annotations") or {}),
                "cert-manager.io/alt-names": ",".join(spec.get("dnsNames") or []),
                "cert-manager.io/certificate-name": name,
                "cert-manager.io/common-name": spec.get("commonName", ""),
                "cert-manager.io/ip-sans": ",".join(spec.get("ipAddresses") or []),
                "cert-manager.io/issuer-group": issuer.get("group", ""),
                "cert-manager.io/issuer-kind": issuer.get("kind", "Issuer"),
                "cert-manager.io/issuer-name": issuer.get("name", ""),
                "cert-manager.io/uri-sans": ",".join(spec.get("uris") or []),
            },
        },
        "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
    }


def _next_private_key_secret(certificate: Mapping[str, Any], slot: int) -> dict[str, Any]:
    """The Secret cert-manager's key manager holds a new private key in until it is issued
    (then deletes it): generated name, Opaque, PKCS#8, no watch label, so the operator never
    sees it. (Real ones also carry an ownerReference to the Certificate, which the demo does not
    create.)"""
    key_pem = rsa_key(2048, slot).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": f"{certificate['metadata']['name']}-{os.urandom(3).hex()[:5]}",
            "namespace": certificate["metadata"]["namespace"],
            "labels": {
                "cert-manager.io/next-private-key": "true",
                "controller.cert-manager.io/fao": "true",
            },
        },
        "data": {"tls.key": base64.b64encode(key_pem).decode()},
    }


def report(
    keysets: Sequence[Mapping[str, Any]], b2c_by_tenant: Mapping[str, Mapping[str, Any]]
) -> str:
    """The tables `kubectl b2ckeys status` prints: the key sets from their status, then every
    key each tenant's B2C holds (from the emulators' control routes, as `status --graph` reads
    them from Graph)."""
    key_sets, tenants = [], []
    for tenant, b2c in b2c_by_tenant.items():
        for ks in b2c.get("keySets", b2c.get("value", [])):
            key_sets.append((str(ks.get("id")), list(ks.get("keys") or []), ks.get("activeKid")))
            tenants.append(tenant)
    return (
        f"TrustFrameworkKeySets (namespace identity)\n{keyset_table(keysets, tenants=True)}\n\n"
        f"What B2C holds\n{b2c_key_table(key_sets, tenants=tenants)}"
    )


def _prod_tenant(url: str, client_secret: str) -> list[dict[str, Any]]:
    """A second B2C tenant for the identity namespace: its app's Secret, the B2CTenant, and a
    key set that writes there (the other key sets use the operator's default tenant)."""
    meta = {"namespace": "identity"}
    return [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "prod-app", **meta},
            "stringData": {"client-secret": client_secret},
        },
        {
            "apiVersion": f"{API_GROUP}/{API_VERSION}",
            "kind": "B2CTenant",
            "metadata": {"name": "prod", **meta},
            "spec": {
                "tenantId": PROD_TENANT,
                "clientId": PROD_CLIENT,
                "auth": {
                    "clientSecret": {"secretRef": {"name": "prod-app", "key": "client-secret"}}
                },
                "graphBaseUrl": url.rstrip("/") + "/beta",
                "authorityHost": url,
            },
        },
        {
            "apiVersion": f"{API_GROUP}/{API_VERSION}",
            "kind": "TrustFrameworkKeySet",
            "metadata": {"name": "prod-signing", **meta},
            "spec": {
                "keySetId": "ProdTokenSigningKeyContainer",
                "tenantRef": {"kind": "B2CTenant", "name": "prod"},
                "source": {"generate": {"kty": "RSA"}},
            },
        },
    ]


def run_demo(workdir: Path, out: TextIO) -> None:
    def say(text: str) -> None:
        print(text, file=out, flush=True)

    tls_dir = workdir / "tls"
    kubeconfig = workdir / "kubeconfig"
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "B2CKEYS_"))}
    secret = "demo-" + base64.urlsafe_b64encode(os.urandom(12)).decode()
    prod_secret = "demo-prod-" + base64.urlsafe_b64encode(os.urandom(12)).decode()
    with (
        listening(
            [
                b2ckeys_executable(),
                "graph-emulator",
                "--port",
                "0",
                "--tls-dir",
                str(tls_dir),
                "--tenant-id",
                DEMO_TENANT,
                "--app",
                f"{DEMO_CLIENT}:{secret}:TrustFrameworkKeySet.ReadWrite.All",
            ],
            workdir / "graph-emulator.log",
            base_env,
            "b2ckeys graph-emulator listening on",
        ) as (graph_url, _),
        listening(
            [
                b2ckeys_executable(),
                "graph-emulator",
                "--port",
                "0",
                "--tls-dir",
                str(tls_dir),
                "--tenant-id",
                PROD_TENANT,
                "--app",
                f"{PROD_CLIENT}:{prod_secret}:TrustFrameworkKeySet.ReadWrite.All",
            ],
            workdir / "graph-emulator-prod.log",
            base_env,
            "b2ckeys graph-emulator listening on",
        ) as (prod_url, _),
        listening(
            [b2ckeys_executable(), "kube-emulator", "--port", "0", "--kubeconfig", str(kubeconfig)],
            workdir / "kube-emulator.log",
            base_env,
            "b2ckeys kube-emulator listening on",
        ) as (kube_url, _),
    ):
        say(
            f"graph-emulator  {graph_url} (default tenant)\n"
            f"graph-emulator  {prod_url} (tenant {PROD_TENANT})\nkube-emulator   {kube_url}"
        )
        ca_file = str(tls_dir / "ca.pem")
        operator_env = {
            **base_env,
            "KUBECONFIG": str(kubeconfig),
            "AZURE_TENANT_ID": DEMO_TENANT,
            "AZURE_CLIENT_ID": DEMO_CLIENT,
            "AZURE_CLIENT_SECRET": secret,
            "AZURE_AUTHORITY_HOST": graph_url,
            "B2CKEYS_GRAPH_BASE_URL": graph_url.rstrip("/") + "/beta",
            # Any free loopback port: never 0.0.0.0:8081, which something else may hold.
            "B2CKEYS_METRICS_ADDRESS": "127.0.0.1:0",
            "SSL_CERT_FILE": ca_file,
            "REQUESTS_CA_BUNDLE": ca_file,
        }
        with running(
            [b2ckeys_executable(), "run", "--all-namespaces"],
            workdir / "operator.log",
            operator_env,
        ):
            kube = Kube(kube_url)
            graph = httpx.Client(
                base_url=graph_url, verify=ssl.create_default_context(cafile=ca_file), timeout=10.0
            )
            ca = DevCA.create("b2ckeys demo CA")
            docs = _load_examples(DEMO_EXAMPLES)
            certificates = [
                d for d in docs if d["kind"] == "Certificate" and not d["spec"].get("isCA")
            ]
            for doc in docs:
                if doc["kind"] in ("Namespace", "Secret", "ConfigMap", "TrustFrameworkKeySet"):
                    kube.apply(doc)
            for doc in _prod_tenant(prod_url, prod_secret):
                kube.apply(doc)
            say(
                f"applied {', '.join(DEMO_EXAMPLES)} "
                f"(playing cert-manager for {len(certificates)} Certificate)"
            )
            for certificate in certificates:
                kube.issue(ca, certificate, slot=11)
            expected = {d["metadata"]["name"] for d in docs if d["kind"] == "TrustFrameworkKeySet"}
            expected.add("prod-signing")

            def all_ready() -> bool:
                items = kube.keysets("identity")
                return {
                    i["metadata"]["name"] for i in items if _ready(i).get("status") == "True"
                } >= expected

            _wait("every TrustFrameworkKeySet to be Ready", all_ready)
            say("all Ready")
            if certificates:
                certificate = certificates[0]
                name = certificate["metadata"]["name"]

                def synced_x5t() -> str:
                    for item in kube.keysets("identity"):
                        if (
                            (item["spec"]["source"].get("tlsSecret") or {}).get("name")
                        ) == certificate["spec"]["secretName"]:
                            return str(
                                ((item.get("status") or {}).get("syncedKey") or {}).get("x5t")
                            )
                    return ""

                before = synced_x5t()
                kube.issue(ca, certificate, slot=12)
                started = time.monotonic()
                _wait(
                    f"the renewed {name} certificate to reach B2C",
                    lambda: synced_x5t() not in ("", before),
                )
                say(
                    f"cert-manager renewed {name}: new x5t {synced_x5t()} in B2C after "
                    f"{time.monotonic() - started:.2f}s"
                )
            say("")
            prod = httpx.Client(
                base_url=prod_url, verify=ssl.create_default_context(cafile=ca_file), timeout=10.0
            )
            b2c = {
                "default": graph.get("/_emulator/keysets").json(),
                "prod": prod.get("/_emulator/keysets").json(),
            }
            say(report(kube.keysets("identity"), b2c))
            tenant = kube.http.get(
                f"/apis/{API_GROUP}/{API_VERSION}/namespaces/identity/b2ctenants/prod"
            ).json()
            condition = _ready(tenant)
            permission = (tenant.get("status") or {}).get("permission", "-")
            say(
                f"\nB2CTenant identity/prod ({PROD_TENANT}): Ready={condition.get('status', '-')} "
                f"{condition.get('reason', '-')}, permission {permission}"
            )


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="b2ckeys demo", description=__doc__)
    parser.add_argument(
        "--keep", action="store_true", help="keep the work directory (logs, kubeconfig)"
    )
    args = parser.parse_args(list(argv))
    workdir = Path(tempfile.mkdtemp(prefix="b2ckeys-demo-"))
    started = time.monotonic()
    try:
        run_demo(workdir, sys.stdout)
        print(f"\ndemo finished in {time.monotonic() - started:.1f}s")
        return 0
    except (DemoFailed, StartFailed) as e:
        print(f"\ndemo failed: {e}", file=sys.stderr)
        log = workdir / "operator.log"
        if log.exists():
            print("--- last lines of the operator log ---", file=sys.stderr)
            print("\n".join(log.read_text().splitlines()[-30:]), file=sys.stderr)
        args.keep = True
        return 1
    finally:
        if args.keep:
            print(f"work directory kept: {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
