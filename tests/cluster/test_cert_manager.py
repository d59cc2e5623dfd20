"""Real cert-manager (its controllers, its CRDs) issuing and renewing what the operator uploads.

cert-manager runs against the tier's kube-apiserver (cert_manager_process.py), with a
ClusterIssuer chain (self-signed root -> CA) made by cert-manager itself; the operator runs as
its own ServiceAccount with a short resync (RESYNC) so the unlabelled-Secret scenario finishes.
Times are measured from watch events both ends (the Secret cert-manager wrote, the key set the
operator updated), as they reached this process.
"""

from __future__ import annotations

import base64
import copy
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from apiserver import ROOT, KubeCluster, iter_documents
from cert_manager_process import (
    CLUSTER_RESOURCE_NAMESPACE,
    CertManagerApi,
    Recorder,
    SeenEvent,
    running_cert_manager,
)
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from keyset_objects import GROUP, PLURAL, VERSION, Keysets, keyset, ready, unique_key_set_id
from kubernetes import client as k8s
from operator_process import (
    OPERATOR_USER,
    GraphEmulatorThread,
    OperatorProcess,
    RunningOperator,
    bind_operator_account,
    operator_binary,
    operator_env,
    unexpected_failures,
)

from b2ckeys_emulators.demo import play_cert_manager
from b2ckeys_emulators.devpki import DevCA

pytestmark = pytest.mark.cluster

EXAMPLE = ROOT / "deploy" / "examples" / "cert-manager-token-signing.yaml"
# The operator's periodic resync here: what an unlabelled Secret waits for.
RESYNC = 15.0
CA_ISSUER = "b2ckeys-test-ca"
# cert-manager issues from a local CA in well under a second; a busy machine gets slack.
ISSUE_TIMEOUT = 60.0
WATCH_LABEL = {"b2ckeys.dev/watch": "true"}


# --- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cert_manager(
    kube_cluster: KubeCluster,
    cert_manager_crd_names: list[str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[CertManagerApi]:
    """cert-manager's controllers, and a ClusterIssuer chain it built itself: a self-signed
    ClusterIssuer, a CA Certificate it issued in the cluster resource namespace, and a CA
    ClusterIssuer signing with that."""
    with running_cert_manager(kube_cluster, tmp_path_factory.mktemp("cert-manager")) as process:
        api = CertManagerApi(kube_cluster)
        kube_cluster.apply(
            [
                {
                    "apiVersion": "cert-manager.io/v1",
                    "kind": "ClusterIssuer",
                    "metadata": {"name": "b2ckeys-test-selfsigned"},
                    "spec": {"selfSigned": {}},
                },
                {
                    "apiVersion": "cert-manager.io/v1",
                    "kind": "Certificate",
                    "metadata": {"name": CA_ISSUER, "namespace": CLUSTER_RESOURCE_NAMESPACE},
                    "spec": {
                        "isCA": True,
                        "commonName": "b2ckeys test root CA",
                        "secretName": CA_ISSUER,
                        "privateKey": {"algorithm": "RSA", "size": 2048},
                        "issuerRef": {"kind": "ClusterIssuer", "name": "b2ckeys-test-selfsigned"},
                    },
                },
                {
                    "apiVersion": "cert-manager.io/v1",
                    "kind": "ClusterIssuer",
                    "metadata": {"name": CA_ISSUER},
                    "spec": {"ca": {"secretName": CA_ISSUER}},
                },
            ]
        )
        wait(
            "the CA ClusterIssuer to be Ready",
            lambda: cluster_issuer_ready(kube_cluster, CA_ISSUER),
            process.log_tail,
        )
        yield api


@pytest.fixture(scope="module")
def cm_operator(
    kube_cluster: KubeCluster,
    installed_crds: list[str],
    graph_emulator: GraphEmulatorThread,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningOperator]:
    """`b2ckeys run --all-namespaces` as its ServiceAccount, resyncing every RESYNC seconds."""
    kubeconfig = bind_operator_account(kube_cluster)
    env = {**operator_env(kubeconfig, graph_emulator), "B2CKEYS_RESYNC_INTERVAL": f"{RESYNC:.0f}s"}
    process = OperatorProcess(
        name="b2ckeys run",
        argv=[str(operator_binary()), "run", "--all-namespaces"],
        env=env,
        log_path=tmp_path_factory.mktemp("operator") / "operator.log",
    )
    process.start()
    try:
        yield RunningOperator(kube_cluster, graph_emulator, process, kubeconfig)
    finally:
        code = process.stop()
    assert code == 0, f"the operator exited with {code}; its log ends:\n{process.log_tail()}"


@pytest.fixture
def operator(
    cm_operator: RunningOperator, cert_manager: CertManagerApi
) -> Iterator[RunningOperator]:
    offset = cm_operator.process.log_size()
    cm_operator.check_alive()
    yield cm_operator
    crashed = unexpected_failures(cm_operator.process.log_since(offset))
    assert crashed == [], "reconciles failed unexpectedly"


# --- helpers ------------------------------------------------------------------------------------


def wait(
    what: str,
    probe: Callable[[], Any],
    describe: Callable[[], object] | None = None,
    timeout: float = ISSUE_TIMEOUT,
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.1)
    detail = f"; last seen: {describe()}" if describe else ""
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}{detail}")


def cluster_issuer_ready(cluster: KubeCluster, name: str) -> bool:
    issuer = k8s.CustomObjectsApi(cluster.admin).get_cluster_custom_object(
        "cert-manager.io", "v1", "clusterissuers", name
    )
    conditions = (issuer.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def x5t_of_pem(pem: bytes) -> str:
    """x5t (SHA-1 of the DER, RFC 7517; it names a certificate, it protects nothing) of the
    first certificate in a PEM bundle."""
    leaf = x509.load_pem_x509_certificates(pem)[0]
    digest = leaf.fingerprint(hashes.SHA1())  # noqa: S303
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def secret_data(obj: dict[str, Any], key: str) -> bytes:
    return base64.b64decode((obj.get("data") or {}).get(key) or "")


class Scene:
    """One namespace: its Secrets, key sets, Certificates and what B2C holds."""

    def __init__(self, operator: RunningOperator, cert_manager: CertManagerApi, namespace: str):
        self.operator, self.cm, self.namespace = operator, cert_manager, namespace
        self.cluster = operator.cluster
        self.keysets = Keysets(operator.cluster, namespace)
        self.core = k8s.CoreV1Api(operator.cluster.admin)

    def secret(self, name: str) -> dict[str, Any] | None:
        try:
            found = self.core.read_namespaced_secret(name, self.namespace)
        except k8s.ApiException as e:
            if e.status == 404:
                return None
            raise
        return self.core.api_client.sanitize_for_serialization(found)  # type: ignore[no-any-return]

    def secret_x5t(self, name: str) -> str | None:
        found = self.secret(name)
        pem = secret_data(found, "tls.crt") if found else b""
        return x5t_of_pem(pem) if pem else None

    def certificate(self, name: str, secret_name: str, **spec: Any) -> dict[str, Any]:
        return {
            "apiVersion": "cert-manager.io/v1",
            "kind": "Certificate",
            "metadata": {"name": name, "namespace": self.namespace},
            "spec": {
                "commonName": f"b2ckeys test {name}",
                "secretName": secret_name,
                "privateKey": {"algorithm": "RSA", "size": 2048, "rotationPolicy": "Always"},
                "usages": ["digital signature"],
                "secretTemplate": {"labels": dict(WATCH_LABEL)},
                "issuerRef": {"kind": "ClusterIssuer", "name": CA_ISSUER},
                **spec,
            },
        }

    def issued(self, name: str, revision: int) -> dict[str, Any]:
        """The Certificate once Ready at `revision` (cert-manager counts issuances)."""

        def at_revision() -> dict[str, Any] | None:
            found = self.cm.certificate(self.namespace, name)
            status = found.get("status") or {}
            # cert-manager may write the revision and Ready before the dates: wait for all.
            return (
                found
                if status.get("revision") == revision
                and status.get("notAfter")
                and self.cm.ready(self.namespace, name)
                else None
            )

        result: dict[str, Any] = wait(
            f"Certificate {name} Ready at revision {revision}",
            at_revision,
            lambda: self.cm.certificate(self.namespace, name).get("status"),
        )
        return result

    def synced(self, name: str, x5t: str, reason: str = "Synced") -> dict[str, Any]:
        result: dict[str, Any] = self.operator.wait_for(
            f"{name} {reason} with x5t {x5t}",
            lambda: (
                (obj := self.keysets.settled(name, reason))
                and ((obj["status"].get("syncedKey") or {}).get("x5t") == x5t)
                and obj
            ),
            describe=lambda: (self.keysets.get(name) or {}).get("status"),
        )
        return result

    def uploads(self, key_set_id: str) -> list[str]:
        return [r for r in self.operator.graph.requests(key_set_id) if r.endswith("/uploadPkcs12")]

    def b2c_x5ts(self, key_set_id: str) -> list[str]:
        return [k.get("x5t") for k in self.operator.graph.keys(key_set_id)]

    def secret_recorder(self) -> Recorder:
        return Recorder(self.core.list_namespaced_secret, self.namespace)

    def keyset_recorder(self) -> Recorder:
        custom = k8s.CustomObjectsApi(self.cluster.admin)
        return Recorder(
            custom.list_namespaced_custom_object, GROUP, VERSION, self.namespace, PLURAL
        )


def first_event(events: list[SeenEvent], matches: Callable[[dict[str, Any]], bool]) -> SeenEvent:
    found = next((e for e in events if matches(e.obj)), None)
    assert found is not None, f"no such event among {[(e.type, e.name) for e in events]}"
    return found


def synced_x5t(obj: dict[str, Any]) -> str | None:
    return ((obj.get("status") or {}).get("syncedKey") or {}).get("x5t")


# --- the README's example, verbatim -------------------------------------------------------------


def test_the_readme_example_is_issued_by_cert_manager_and_synced(
    operator: RunningOperator, cert_manager: CertManagerApi, namespace: str
) -> None:
    scene = Scene(operator, cert_manager, namespace)
    key_set_id = unique_key_set_id("CmReadme")
    documents = []
    for document in iter_documents(EXAMPLE.read_text(encoding="utf-8")):
        document = copy.deepcopy(dict(document))
        document["metadata"]["namespace"] = namespace
        if document["kind"] == "TrustFrameworkKeySet":
            document["spec"]["keySetId"] = key_set_id
        documents.append(document)
    operator.cluster.apply(documents)

    certificate = scene.issued("token-signing", 1)
    x5t = wait("the Secret", lambda: scene.secret_x5t("token-signing-tls"))
    obj = scene.synced("token-signing", x5t)

    full_id = obj["status"]["keySetId"]
    assert full_id == f"B2C_1A_{key_set_id}"
    keys = operator.graph.keys(full_id)
    assert [k["x5t"] for k in keys] == [x5t]
    leaf = x509.load_pem_x509_certificates(
        secret_data(scene.secret("token-signing-tls") or {}, "tls.crt")
    )[0]
    # The key in B2C is the certificate the Certificate's status describes.
    assert keys[0]["nbf"] == int(leaf.not_valid_before_utc.timestamp())
    assert keys[0]["exp"] == int(leaf.not_valid_after_utc.timestamp())
    assert certificate["status"]["notAfter"] == leaf.not_valid_after_utc.strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    assert certificate["status"]["notBefore"] == leaf.not_valid_before_utc.strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    assert obj["status"]["activeKey"]["x5t"] == x5t
    assert len(scene.uploads(full_id)) == 1


# --- what real cert-manager writes that the hand-made Secrets did not ---------------------------

# What cert-manager's issuing controller stamps on every Secret it writes (besides
# secretTemplate's labels and annotations).
CERT_MANAGER_ANNOTATIONS = {
    "cert-manager.io/alt-names",
    "cert-manager.io/certificate-name",
    "cert-manager.io/common-name",
    "cert-manager.io/ip-sans",
    "cert-manager.io/issuer-group",
    "cert-manager.io/issuer-kind",
    "cert-manager.io/issuer-name",
    "cert-manager.io/uri-sans",
}
CERT_MANAGER_LABEL = {"controller.cert-manager.io/fao": "true"}
NEXT_PRIVATE_KEY_LABEL = "cert-manager.io/next-private-key"


def test_what_cert_manager_writes_into_the_secret(
    operator: RunningOperator, cert_manager: CertManagerApi, namespace: str
) -> None:
    """Each difference from the Secrets the tests and the demo used to write by hand."""
    scene = Scene(operator, cert_manager, namespace)
    key_set_id = f"B2C_1A_{unique_key_set_id('CmWrites')}"
    certificate = scene.certificate("writes", "writes-tls")
    with scene.secret_recorder() as secrets:
        scene.cluster.apply(
            [
                certificate,
                keyset("writes", key_set_id, {"tlsSecret": {"name": "writes-tls"}}),
            ],
            namespace=namespace,
        )
        scene.issued("writes", 1)
        first = wait("the Secret", lambda: scene.secret_x5t("writes-tls"))
        scene.synced("writes", first)
        issued_events = len(secrets.events())
        cert_manager.renew(namespace, "writes")
        scene.issued("writes", 2)
        second = str(scene.secret_x5t("writes-tls"))
        scene.synced("writes", second)
        wait(
            "the next private key Secret to go",
            lambda: [e for e in secrets.events()[issued_events:] if e.type == "DELETED"],
        )
    tls_events = secrets.events("writes-tls")
    others = [e for e in secrets.events() if e.name != "writes-tls"]

    # 1. One write per issuance, complete: the Secret is created with the certificate, key and
    #    CA together (one server-side apply), and a renewal is one MODIFIED event.
    assert [e.type for e in tls_events] == ["ADDED", "MODIFIED"]
    created = tls_events[0].obj
    assert set(created["data"]) == {"tls.crt", "tls.key", "ca.crt"}
    assert created["type"] == "kubernetes.io/tls"
    managers = {(f["manager"], f["operation"]) for f in created["metadata"]["managedFields"]}
    assert managers == {("cert-manager-certificates-issuing", "Apply")}

    # 2. tls.key is PKCS#1 ("RSA PRIVATE KEY"): privateKey.encoding defaults to PKCS1. The
    #    hand-made Secrets held PKCS#8; the operator reads both.
    label = re.match(rb"-----BEGIN ([A-Z ]+)-----", secret_data(created, "tls.key"))
    assert label is not None
    assert label.group(1) == b"RSA PRIVATE KEY"  # PKCS#1, cert-manager's default encoding

    # 3. tls.crt is the leaf alone (the CA is a self-signed root); ca.crt is that CA.
    assert secret_data(created, "tls.crt").count(b"BEGIN CERTIFICATE") == 1
    ca_secret = scene.core.read_namespaced_secret(CA_ISSUER, CLUSTER_RESOURCE_NAMESPACE)
    assert secret_data(created, "ca.crt") == base64.b64decode(ca_secret.data["tls.crt"])

    # 4. Labels and annotations of cert-manager's own beside secretTemplate's.
    metadata = created["metadata"]
    assert metadata["labels"] == {**WATCH_LABEL, **CERT_MANAGER_LABEL}
    assert set(metadata["annotations"]) == CERT_MANAGER_ANNOTATIONS
    assert metadata["annotations"]["cert-manager.io/certificate-name"] == "writes"
    assert metadata["annotations"]["cert-manager.io/issuer-kind"] == "ClusterIssuer"
    assert metadata["annotations"]["cert-manager.io/alt-names"] == ""

    # 5. Each issuance first stores the new private key in a Secret of its own (generated
    #    name, Opaque, PKCS#8, owned by the Certificate, without the watch label) and deletes
    #    it once issued. The operator's label selector never lets it see one.
    next_keys = {e.name for e in others}
    assert len(next_keys) == 2, "one per issuance"
    for event in others:
        assert event.obj["metadata"]["labels"] == {
            NEXT_PRIVATE_KEY_LABEL: "true",
            **CERT_MANAGER_LABEL,
        }
        assert event.obj["metadata"]["ownerReferences"][0]["kind"] == "Certificate"
    assert sorted(e.type for e in others) == ["ADDED", "ADDED", "DELETED", "DELETED"]
    operator_reads = [
        event
        for event in operator.cluster.audit_events()
        if (event.get("user") or {}).get("username") == OPERATOR_USER
        and (event.get("objectRef") or {}).get("name") in next_keys
    ]
    assert operator_reads == []

    assert scene.b2c_x5ts(key_set_id) == [first, second]

    # `b2ckeys demo` plays cert-manager: its Secret has the same shape as the real one.
    played = play_cert_manager(DevCA.create("b2ckeys demo CA"), certificate, slot=11)
    assert played["type"] == created["type"]
    assert set(played["data"]) == set(created["data"])
    assert played["metadata"]["labels"] == created["metadata"]["labels"]
    assert played["metadata"]["annotations"] == created["metadata"]["annotations"]
    pem_type = secret_data(created, "tls.key").splitlines()[0]
    assert secret_data(played, "tls.key").splitlines()[0] == pem_type
    assert secret_data(played, "tls.crt").count(b"BEGIN CERTIFICATE") == 1


# --- renewals -----------------------------------------------------------------------------------


def test_a_forced_renewal_uploads_once_and_keeps_the_previous_key(
    operator: RunningOperator, cert_manager: CertManagerApi, namespace: str
) -> None:
    scene = Scene(operator, cert_manager, namespace)
    key_set_id = f"B2C_1A_{unique_key_set_id('CmRenew')}"
    scene.cluster.apply(
        [
            scene.certificate("signing", "signing-tls"),
            keyset("signing", key_set_id, {"tlsSecret": {"name": "signing-tls"}}),
        ],
        namespace=namespace,
    )
    scene.issued("signing", 1)
    first = wait("the Secret", lambda: scene.secret_x5t("signing-tls"))
    scene.synced("signing", first)

    with scene.secret_recorder() as secrets, scene.keyset_recorder() as keysets:
        cert_manager.renew(namespace, "signing")  # as `cmctl renew` does
        scene.issued("signing", 2)
        second = scene.secret_x5t("signing-tls")
        assert second not in (None, first)
        obj = scene.synced("signing", str(second))
        written = first_event(
            secrets.events("signing-tls"), lambda o: x5t_of_pem(secret_data(o, "tls.crt")) == second
        )
        seen = first_event(keysets.events("signing"), lambda o: synced_x5t(o) == second)
    latency = seen.arrived - written.arrived
    print(f"cert-manager's Secret update -> status.syncedKey.x5t: {latency * 1000:.0f} ms")

    assert scene.b2c_x5ts(key_set_id) == [first, second], "the previous key stays in B2C"
    assert len(scene.uploads(key_set_id)) == 2, "exactly one upload for the renewal"
    assert obj["status"]["activeKey"]["x5t"] == second
    assert obj["status"]["keyCount"] == 2
    # Delivered by the Secret's watch event: far below the resync.
    assert latency < RESYNC / 3


def test_natural_renewals_are_each_uploaded_once(
    operator: RunningOperator, cert_manager: CertManagerApi, namespace: str
) -> None:
    scene = Scene(operator, cert_manager, namespace)
    key_set_id = f"B2C_1A_{unique_key_set_id('CmNatural')}"
    # Renewed 8 s after each issuance: cert-manager's trigger schedules it at notAfter - 52 s.
    # (cert-manager's webhook would insist on an hour; it does not run here, the CRD allows it.)
    short = scene.certificate("short", "short-tls", duration="60s", renewBefore="52s")
    scene.cluster.apply(
        [short, keyset("short", key_set_id, {"tlsSecret": {"name": "short-tls"}})],
        namespace=namespace,
    )
    x5ts = []
    for revision in (1, 2, 3):
        scene.issued("short", revision)
        x5t = wait(
            "the renewed Secret", lambda: (v := scene.secret_x5t("short-tls")) not in x5ts and v
        )
        scene.synced("short", x5t)
        x5ts.append(x5t)
    # Stop renewing before asserting, so no fourth issuance races the reads below.
    operator.cluster.apply(
        scene.certificate("short", "short-tls", duration="2160h"), namespace=namespace
    )

    assert scene.b2c_x5ts(key_set_id)[:3] == x5ts
    assert len(set(scene.b2c_x5ts(key_set_id))) == len(scene.b2c_x5ts(key_set_id))
    assert len(scene.uploads(key_set_id)) == len(scene.b2c_x5ts(key_set_id))


# --- what the user gets wrong, and fixes --------------------------------------------------------


def test_an_ecdsa_certificate_is_refused_until_the_certificate_says_rsa(
    operator: RunningOperator, cert_manager: CertManagerApi, namespace: str
) -> None:
    scene = Scene(operator, cert_manager, namespace)
    key_set_id = f"B2C_1A_{unique_key_set_id('CmEcdsa')}"
    ecdsa = scene.certificate("ec", "ec-tls")
    ecdsa["spec"]["privateKey"] = {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"}
    scene.cluster.apply(
        [ecdsa, keyset("ec", key_set_id, {"tlsSecret": {"name": "ec-tls"}})], namespace=namespace
    )
    scene.issued("ec", 1)
    refused = operator.wait_for(
        "InvalidSource",
        lambda: scene.keysets.settled("ec", "InvalidSource"),
        describe=lambda: (scene.keysets.get("ec") or {}).get("status"),
    )
    assert "For cert-manager set privateKey.algorithm: RSA." in ready(refused)["message"]
    assert scene.uploads(key_set_id) == []

    # The user's fix is to the Certificate only; cert-manager reissues, the operator follows.
    scene.cluster.apply([scene.certificate("ec", "ec-tls")], namespace=namespace)
    scene.issued("ec", 2)
    x5t = wait("the RSA Secret", lambda: scene.secret_x5t("ec-tls"))
    scene.synced("ec", x5t)
    assert scene.b2c_x5ts(key_set_id) == [x5t]


def test_an_unlabelled_secret_syncs_at_resync_until_the_label_is_added(
    operator: RunningOperator, cert_manager: CertManagerApi, namespace: str
) -> None:
    scene = Scene(operator, cert_manager, namespace)
    key_set_id = f"B2C_1A_{unique_key_set_id('CmLabel')}"
    unlabelled = scene.certificate("plain", "plain-tls")
    del unlabelled["spec"]["secretTemplate"]
    scene.cluster.apply(
        [unlabelled, keyset("plain", key_set_id, {"tlsSecret": {"name": "plain-tls"}})],
        namespace=namespace,
    )
    scene.issued("plain", 1)
    first = wait("the Secret", lambda: scene.secret_x5t("plain-tls"))
    obj = scene.synced("plain", first)
    assert "lacks the label b2ckeys.dev/watch=true" in ready(obj)["message"]
    assert "Certificate.spec.secretTemplate.labels" in ready(obj)["message"]

    # A renewal of the unlabelled Secret waits for the resync.
    with scene.secret_recorder() as secrets, scene.keyset_recorder() as keysets:
        cert_manager.renew(namespace, "plain")
        scene.issued("plain", 2)
        second = str(scene.secret_x5t("plain-tls"))
        resynced = scene.synced("plain", second)
        written = first_event(
            secrets.events("plain-tls"), lambda o: x5t_of_pem(secret_data(o, "tls.crt")) == second
        )
        seen = first_event(keysets.events("plain"), lambda o: synced_x5t(o) == second)
    at_resync = seen.arrived - written.arrived
    print(f"unlabelled renewal reached B2C after {at_resync:.1f}s (resync {RESYNC:.0f}s)")
    assert at_resync <= RESYNC + 5
    # Not at once: a watched Secret reaches B2C in well under a second; this one waited for the
    # resync (due RESYNC after the first sync, a few seconds before the renewal).
    assert at_resync >= 2.0
    assert resynced["status"]["syncedKey"]["x5t"] == second

    # Adding the label to the Certificate: cert-manager rewrites the Secret's metadata (no new
    # certificate), the operator now watches it, and nothing is uploaded for that rewrite.
    scene.cluster.apply([scene.certificate("plain", "plain-tls")], namespace=namespace)
    wait(
        "cert-manager to label the Secret",
        lambda: ((scene.secret("plain-tls") or {}).get("metadata", {}).get("labels") or {}).get(
            "b2ckeys.dev/watch"
        ),
    )
    labelled = operator.wait_for(
        "the hint to go",
        lambda: (
            (o := scene.keysets.settled("plain", "Synced"))
            and "lacks the label" not in ready(o)["message"]
            and o
        ),
        timeout=RESYNC + 30,
    )
    # The rewrite carried no new certificate, and uploaded nothing.
    assert scene.secret_x5t("plain-tls") == second
    assert synced_x5t(labelled) == second
    assert len(scene.uploads(key_set_id)) == 2

    with scene.secret_recorder() as secrets, scene.keyset_recorder() as keysets:
        cert_manager.renew(namespace, "plain")
        scene.issued("plain", 3)
        third = str(scene.secret_x5t("plain-tls"))
        scene.synced("plain", third)
        written = first_event(
            secrets.events("plain-tls"), lambda o: x5t_of_pem(secret_data(o, "tls.crt")) == third
        )
        seen = first_event(keysets.events("plain"), lambda o: synced_x5t(o) == third)
    instant = seen.arrived - written.arrived
    print(f"labelled renewal reached B2C after {instant * 1000:.0f} ms")
    assert instant < RESYNC / 3
    assert len(scene.uploads(key_set_id)) == 3


def test_a_temporary_certificate_is_waited_out_and_only_the_issued_one_reaches_b2c(
    operator: RunningOperator, cert_manager: CertManagerApi, namespace: str
) -> None:
    """`cert-manager.io/issue-temporary-certificate: "true"` makes cert-manager write a
    placeholder into the Secret while the issuer cannot sign yet: a valid RSA certificate for the
    right key, signed by a throwaway CA named cert-manager.local. B2C would keep it for good, so
    the operator reports AwaitingCertificate, uploads nothing, and uploads the issued one."""
    scene = Scene(operator, cert_manager, namespace)
    key_set_id = f"B2C_1A_{unique_key_set_id('CmTemp')}"
    issuer = {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Issuer",
        "metadata": {"name": "later-ca", "namespace": namespace},
        "spec": {"ca": {"secretName": "later-ca"}},  # not there yet: the issuer is not Ready
    }
    temporary = scene.certificate(
        "temp", "temp-tls", issuerRef={"kind": "Issuer", "name": "later-ca"}
    )
    temporary["metadata"]["annotations"] = {"cert-manager.io/issue-temporary-certificate": "true"}
    scene.cluster.apply(
        [issuer, temporary, keyset("temp", key_set_id, {"tlsSecret": {"name": "temp-tls"}})],
        namespace=namespace,
    )
    placeholder = wait("the temporary certificate", lambda: scene.secret_x5t("temp-tls"))
    leaf = x509.load_pem_x509_certificates(secret_data(scene.secret("temp-tls") or {}, "tls.crt"))[
        0
    ]
    # cert-manager signs the placeholder with a throwaway issuer of its own.
    assert leaf.issuer.rfc4514_string() == "CN=cert-manager.local"
    assert leaf.subject.rfc4514_string() == "CN=b2ckeys test temp"
    waiting = operator.wait_for(
        "temp AwaitingCertificate",
        lambda: scene.keysets.settled("temp", "AwaitingCertificate"),
        describe=lambda: (scene.keysets.get("temp") or {}).get("status"),
    )
    assert "temporary placeholder" in ready(waiting)["message"]
    assert "syncedKey" not in waiting["status"]
    assert scene.uploads(key_set_id) == []

    # The CA arrives; cert-manager issues the real certificate over the placeholder.
    ca_secret = scene.core.read_namespaced_secret(CA_ISSUER, CLUSTER_RESOURCE_NAMESPACE)
    scene.cluster.apply(
        [
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "type": "kubernetes.io/tls",
                "metadata": {"name": "later-ca", "namespace": namespace},
                "data": ca_secret.data,
            }
        ]
    )
    scene.issued("temp", 1)
    issued = wait(
        "the issued certificate", lambda: (v := scene.secret_x5t("temp-tls")) != placeholder and v
    )
    scene.synced("temp", str(issued))
    assert scene.b2c_x5ts(key_set_id) == [issued]
    assert len(scene.uploads(key_set_id)) == 1
