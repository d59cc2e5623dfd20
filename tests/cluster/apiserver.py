"""A real etcd and kube-apiserver on loopback, started by the tests (kubebuilder's envtest idea).

No nodes, no controllers: only the API server, so everything the server itself enforces (the
structural schema and its pruning, CEL rules, RBAC, the status subresource, watches) is real.
The binaries come from `scripts/kube-binaries`.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import json
import os
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import yaml
from cluster_pki import ClusterPki, generate_cluster_pki
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.dynamic import DynamicClient

ROOT = Path(__file__).resolve().parents[2]
KUBE_BINARIES_SCRIPT = ROOT / "scripts" / "kube-binaries"
BIN_DIR_ENV = "B2CKEYS_KUBE_BIN_DIR"
# Everything scripts/kube-binaries builds: the servers, plus kubectl and the controller manager
# for the operator scenarios.
BINARIES = ("kube-apiserver", "etcd", "kubectl", "kube-controller-manager")

SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
# Any private range works: nothing routes to Service IPs in a cluster without nodes.
SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"
FIELD_MANAGER = "b2ckeys-tests"

# etcd is ready in well under a second; kube-apiserver (bootstrap RBAC roles, priority and
# fairness, CRD informers) takes a few seconds on 2 busy cores. Both bounds only catch a hang.
ETCD_READY_TIMEOUT_SECONDS = 30.0
APISERVER_READY_TIMEOUT_SECONDS = 90.0
# A CRD is Established and served within a second or two; the bound only catches a hang.
CRD_READY_TIMEOUT_SECONDS = 30.0
# How often readiness is probed: short enough not to add to start-up, long enough not to spin.
READY_POLL_INTERVAL_SECONDS = 0.05
# A SIGTERM'd kube-apiserver drains for a moment; after this it is killed.
STOP_TIMEOUT_SECONDS = 10.0
# How many log lines a start-up failure message quotes.
LOG_TAIL_LINES = 40

# What the API server records about requests made by ServiceAccounts (the operator under test;
# admin and the tests' own requests are not recorded). Writes to key sets and events keep their
# bodies, and key set writes the object the server stored, so a test can compare what the
# operator wrote with what the server kept (schema pruning) and find the Events it posted even
# after their namespace is gone. Every other request keeps only its metadata: verb, object,
# response code and the authorizer's decision, so a missing RBAC rule shows up as "forbid".
# Secrets and ConfigMaps are never recorded with bodies.
AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived", "ResponseStarted"],
    "rules": [
        {
            "level": "RequestResponse",
            "userGroups": ["system:serviceaccounts"],
            "verbs": ["create", "patch", "update"],
            "resources": [
                {
                    "group": "b2ckeys.dev",
                    "resources": ["trustframeworkkeysets", "trustframeworkkeysets/status"],
                }
            ],
        },
        {
            "level": "Request",
            "userGroups": ["system:serviceaccounts"],
            "verbs": ["create", "patch", "update"],
            "resources": [{"group": "", "resources": ["events"]}, {"group": "events.k8s.io"}],
        },
        {"level": "Metadata", "userGroups": ["system:serviceaccounts"]},
        {"level": "None"},
    ],
}


class ClusterStartError(RuntimeError):
    """etcd or kube-apiserver did not become ready; the message quotes its log."""


def find_bin_dir() -> Path:
    """Where the binaries are: $B2CKEYS_KUBE_BIN_DIR, else the build script's cache."""
    configured = os.environ.get(BIN_DIR_ENV)
    if configured:
        bin_dir = Path(configured)
        missing = [n for n in BINARIES if not os.access(bin_dir / n, os.X_OK)]
        if missing:
            raise FileNotFoundError(
                f"{BIN_DIR_ENV}={configured} has no executable {' or '.join(missing)}; "
                f"unset it or run `{KUBE_BINARIES_SCRIPT.relative_to(ROOT)}`"
            )
        return bin_dir
    probe = subprocess.run(
        [str(KUBE_BINARIES_SCRIPT), "--print-dir", "--no-build"],
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0:
        raise FileNotFoundError(
            "kube-apiserver, etcd, kubectl and kube-controller-manager are not built. Run "
            f"`{KUBE_BINARIES_SCRIPT.relative_to(ROOT)}` once (about 5 minutes on 2 cores; "
            f"cached afterwards), or point {BIN_DIR_ENV} at a directory holding them. "
            f"The script said: {probe.stderr.strip()}"
        )
    return Path(probe.stdout.strip())


def free_loopback_port() -> int:
    """A port nothing listens on right now (the kernel picks it; a later race is unlikely)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Connections the server closed linger in TIME_WAIT; only a listener means "in use".
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def wait_until(
    condition: Callable[[], bool],
    *,
    timeout: float,
    interval: float = READY_POLL_INTERVAL_SECONDS,
    what: str,
) -> None:
    """Poll `condition` until true; TimeoutError naming `what` otherwise."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


@dataclass
class ServerProcess:
    """One server binary with its log file; started, probed and stopped by the cluster."""

    name: str
    argv: list[str]
    log_path: Path
    # None: inherit ours. Secrets travel here, never in argv (which `ps` shows everyone).
    env: Mapping[str, str] | None = field(default=None, repr=False)
    popen: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    def start(self) -> None:
        self._log = self.log_path.open("ab")
        # The argv holds file paths and flags only, never key material.
        self.popen = subprocess.Popen(
            self.argv,
            env=dict(self.env) if self.env is not None else None,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, *, graceful: bool = True, timeout: float = STOP_TIMEOUT_SECONDS) -> int | None:
        """SIGTERM (or SIGKILL), then wait; the exit code (None if it never started)."""
        if self.popen is not None and self.popen.poll() is None:
            if graceful:
                self.popen.terminate()
            else:
                self.popen.kill()
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        return self.popen.returncode if self.popen is not None else None

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def wait_ready(self, probe: Callable[[], bool], timeout: float) -> None:
        def ready_or_dead() -> bool:
            if not self.running:
                code = self.popen.returncode if self.popen else None
                raise ClusterStartError(
                    f"{self.name} exited with {code} before it was ready; its log ends:\n"
                    f"{self.log_tail()}"
                )
            return probe()

        try:
            wait_until(ready_or_dead, timeout=timeout, what=f"{self.name} to be ready")
        except TimeoutError as e:
            raise ClusterStartError(f"{e}; its log ends:\n{self.log_tail()}") from None


@dataclass
class StartupTimes:
    etcd_seconds: float = 0.0
    apiserver_seconds: float = 0.0
    restarts: list[float] = field(default_factory=list)

    @property
    def total_seconds(self) -> float:
        return self.etcd_seconds + self.apiserver_seconds


class KubeCluster:
    """etcd + kube-apiserver on random loopback ports, with an admin kubeconfig and helpers."""

    def __init__(self, bin_dir: Path, workdir: Path) -> None:
        self.bin_dir = bin_dir
        self.workdir = workdir
        self.pki: ClusterPki = generate_cluster_pki(workdir / "pki")
        self.etcd_client_port = free_loopback_port()
        self.etcd_peer_port = free_loopback_port()
        self.apiserver_port = free_loopback_port()
        self.server = f"https://127.0.0.1:{self.apiserver_port}"
        self.admin_kubeconfig = workdir / "admin.kubeconfig"
        self.audit_log = workdir / "audit.jsonl"
        self._audit_policy = workdir / "audit-policy.yaml"
        self._audit_policy.write_text(yaml.safe_dump(AUDIT_POLICY), encoding="utf-8")
        self.times = StartupTimes()
        # (started, ready) wall-clock times of each kube-apiserver process, oldest first.
        self.apiserver_starts: list[tuple[datetime.datetime, datetime.datetime]] = []
        self._etcd = ServerProcess("etcd", self._etcd_argv(), workdir / "etcd.log")
        self._apiserver = ServerProcess(
            "kube-apiserver", self._apiserver_argv(), workdir / "kube-apiserver.log"
        )
        self._api_clients: list[k8s.ApiClient] = []
        self._admin: k8s.ApiClient | None = None
        self._dynamic: DynamicClient | None = None

    # --- lifecycle ------------------------------------------------------------------------

    def _etcd_argv(self) -> list[str]:
        client_url = f"https://127.0.0.1:{self.etcd_client_port}"
        # One member, peers never talk: plain HTTP on loopback is enough for the peer URL,
        # which must still be a free port so parallel sessions do not collide on 2380.
        peer_url = f"http://127.0.0.1:{self.etcd_peer_port}"
        return [
            str(self.bin_dir / "etcd"),
            "--name=b2ckeys-test",
            f"--data-dir={self.workdir / 'etcd-data'}",
            f"--listen-client-urls={client_url}",
            f"--advertise-client-urls={client_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=b2ckeys-test={peer_url}",
            f"--cert-file={self.pki.etcd_server.cert}",
            f"--key-file={self.pki.etcd_server.key}",
            f"--trusted-ca-file={self.pki.ca_cert}",
            "--client-cert-auth=true",
            # The data dir is thrown away with the session; fsync would only slow every write.
            "--unsafe-no-fsync=true",
            "--log-level=warn",
        ]

    def _apiserver_argv(self) -> list[str]:
        pki = self.pki
        return [
            str(self.bin_dir / "kube-apiserver"),
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={self.apiserver_port}",
            f"--cert-dir={self.workdir / 'apiserver-certs'}",
            f"--tls-cert-file={pki.apiserver_serving.cert}",
            f"--tls-private-key-file={pki.apiserver_serving.key}",
            f"--client-ca-file={pki.ca_cert}",
            f"--etcd-servers=https://127.0.0.1:{self.etcd_client_port}",
            f"--etcd-cafile={pki.ca_cert}",
            f"--etcd-certfile={pki.etcd_client.cert}",
            f"--etcd-keyfile={pki.etcd_client.key}",
            "--authorization-mode=RBAC",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-key-file={pki.service_account_public_key}",
            f"--service-account-signing-key-file={pki.service_account_private_key}",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            # The default "lease" reconciler publishes 127.0.0.1 as the kubernetes Service's
            # endpoint, which Endpoints validation refuses (loopback), logging errors forever.
            "--endpoint-reconciler-type=none",
            "--profiling=false",
            # On SIGTERM, open watches are otherwise waited for until the kill timeout (10 s
            # per restart); a second is plenty for a test client to see its watch end.
            "--shutdown-watch-termination-grace-period=1s",
            f"--audit-policy-file={self._audit_policy}",
            f"--audit-log-path={self.audit_log}",
            "--audit-log-format=json",
            # Each event is written before the request completes: a test reads it at once.
            "--audit-log-mode=blocking",
        ]

    def start(self) -> None:
        started = time.monotonic()
        self._etcd.start()
        self._etcd.wait_ready(self._etcd_healthy, ETCD_READY_TIMEOUT_SECONDS)
        etcd_ready = time.monotonic()
        self.times.etcd_seconds = etcd_ready - started
        self._start_apiserver()
        self.times.apiserver_seconds = time.monotonic() - etcd_ready
        self._write_admin_kubeconfig()

    def _start_apiserver(self) -> None:
        started = datetime.datetime.now(datetime.UTC)
        self._apiserver.start()
        self._apiserver.wait_ready(self._apiserver_ready, APISERVER_READY_TIMEOUT_SECONDS)
        self.apiserver_starts.append((started, datetime.datetime.now(datetime.UTC)))

    def received_while_starting(self, received: datetime.datetime) -> bool:
        """Whether a request received then reached a kube-apiserver that was not ready yet.

        A starting server answers before its informers have synced, so its RBAC authorizer
        refuses requests that the bindings allow (403 "cannot watch ..."); clients that
        reconnect at once after a restart see that, and must retry.
        """
        for started, ready in reversed(self.apiserver_starts):
            if started <= received:
                return received < ready
        return True

    def stop(self) -> None:
        """Stop both servers and check their ports are free again."""
        for api_client in self._api_clients:
            api_client.close()  # type: ignore[no-untyped-call]  # kubernetes is not annotated
        self._api_clients.clear()
        self._admin = None
        self._dynamic = None
        self._apiserver.stop()
        self._etcd.stop()
        busy = [
            port
            for port in (self.apiserver_port, self.etcd_client_port, self.etcd_peer_port)
            if not port_is_free(port)
        ]
        if busy:
            raise RuntimeError(f"ports still in use after the cluster stopped: {busy}")

    def restart_apiserver(self, *, graceful: bool = True) -> float:
        """Stop kube-apiserver and start it again on the same port and etcd; seconds it took.

        Every watch open on it breaks, which is what a watch-resume scenario needs; clients and
        kubeconfigs made earlier keep working against the new process. `graceful=False` kills
        it (SIGKILL) instead of a SIGTERM shutdown, as a crashed or evicted server would go.
        """
        started = time.monotonic()
        self._apiserver.stop(graceful=graceful)
        self._start_apiserver()
        elapsed = time.monotonic() - started
        self.times.restarts.append(elapsed)
        return elapsed

    def apiserver_is_running(self) -> bool:
        return self._apiserver.running

    def apiserver_log(self) -> str:
        return self._apiserver.log_tail()

    def audit_events(self) -> list[dict[str, Any]]:
        """What AUDIT_POLICY recorded so far (across restarts), oldest first."""
        try:
            text = self.audit_log.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        # A line being written right now may be cut short; it is read complete next time.
        events = []
        for line in text.splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                events.append(json.loads(line))
        return events

    # --- probes ---------------------------------------------------------------------------

    def _tls_context(self, cert: Path, key: Path) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.pki.ca_cert))
        context.load_cert_chain(str(cert), str(key))
        return context

    def _https_ok(self, url: str, context: ssl.SSLContext) -> bool:
        try:
            # Loopback https URLs this class built; urlopen is the stdlib probe, not user input.
            with urllib.request.urlopen(url, context=context, timeout=2) as response:  # noqa: S310
                return int(response.status) == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError, ssl.SSLError):
            return False

    def _etcd_healthy(self) -> bool:
        context = self._tls_context(self.pki.etcd_client.cert, self.pki.etcd_client.key)
        return self._https_ok(f"https://127.0.0.1:{self.etcd_client_port}/health", context)

    def _apiserver_ready(self) -> bool:
        # /readyz waits for every post-start hook, bootstrap RBAC roles included.
        context = self._tls_context(self.pki.admin.cert, self.pki.admin.key)
        return self._https_ok(f"{self.server}/readyz", context)

    # --- clients --------------------------------------------------------------------------

    def _write_admin_kubeconfig(self) -> None:
        self.write_kubeconfig(
            self.admin_kubeconfig,
            user="admin",
            credentials={
                "client-certificate": str(self.pki.admin.cert),
                "client-key": str(self.pki.admin.key),
            },
        )

    def write_kubeconfig(self, path: Path, *, user: str, credentials: Mapping[str, str]) -> Path:
        """A kubeconfig for this cluster with file paths (no embedded data: nothing to unpack)."""
        document = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "b2ckeys-test",
                    "cluster": {
                        "server": self.server,
                        "certificate-authority": str(self.pki.ca_cert),
                    },
                }
            ],
            "users": [{"name": user, "user": dict(credentials)}],
            "contexts": [
                {"name": user, "context": {"cluster": "b2ckeys-test", "user": user}},
            ],
            "current-context": user,
        }
        path.touch(mode=0o600)
        path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
        return path

    def api_client(self, kubeconfig: Path | None = None) -> k8s.ApiClient:
        """A kubernetes ApiClient from a kubeconfig (admin by default), closed at stop()."""
        api_client: k8s.ApiClient = k8s_config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(kubeconfig or self.admin_kubeconfig)
        )
        self._api_clients.append(api_client)
        return api_client

    @property
    def admin(self) -> k8s.ApiClient:
        if self._admin is None:
            self._admin = self.api_client()
        return self._admin

    @property
    def dynamic(self) -> DynamicClient:
        if self._dynamic is None:
            # A discovery cache per session: the default lives in /tmp, keyed by host:port.
            self._dynamic = DynamicClient(  # type: ignore[no-untyped-call]
                self.admin, cache_file=str(self.workdir / "discovery-cache.json")
            )
        return self._dynamic

    def create_service_account_kubeconfig(
        self, namespace: str, name: str, *, expiration_seconds: int = 3600
    ) -> Path:
        """A kubeconfig that authenticates as ServiceAccount namespace/name (TokenRequest API).

        The ServiceAccount must exist. The token is bound to it, so RBAC evaluates exactly what
        the operator's own Deployment would get.
        """
        request = k8s.AuthenticationV1TokenRequest(
            spec=k8s.V1TokenRequestSpec(
                audiences=[SERVICE_ACCOUNT_ISSUER], expiration_seconds=expiration_seconds
            )
        )
        response = k8s.CoreV1Api(self.admin).create_namespaced_service_account_token(
            name, namespace, request
        )
        token = response.status.token if response.status else None
        if not token:
            raise RuntimeError(f"TokenRequest for {namespace}/{name} returned no token")
        path = self.workdir / f"sa-{namespace}-{name}.kubeconfig"
        return self.write_kubeconfig(
            path,
            user=f"system:serviceaccount:{namespace}:{name}",
            credentials={"token": token},
        )

    # --- manifests ------------------------------------------------------------------------

    def apply(
        self,
        manifest: Mapping[str, Any] | Sequence[Mapping[str, Any]] | str,
        *,
        namespace: str | None = None,
        dry_run: bool = False,
    ) -> list[dict[str, Any]]:
        """Server-side apply (as `kubectl apply --server-side`) each object; the results.

        `manifest` is one object, a list of objects or YAML text (several documents allowed).
        Namespaced objects without a namespace go to `namespace` (else "default").
        """
        applied = []
        for document in iter_documents(manifest):
            resource = self.dynamic.resources.get(
                api_version=document["apiVersion"], kind=document["kind"]
            )
            metadata = document.get("metadata") or {}
            target_namespace = None
            if resource.namespaced:
                target_namespace = metadata.get("namespace") or namespace or "default"
            result = resource.server_side_apply(
                body=dict(document),
                name=metadata["name"],
                namespace=target_namespace,
                field_manager=FIELD_MANAGER,
                force_conflicts=True,
                dry_run="All" if dry_run else None,
            )
            applied.append(result.to_dict())
        return applied

    def create_namespace(self, name: str) -> None:
        self.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})

    def install_crds(
        self, manifest: Mapping[str, Any] | Sequence[Mapping[str, Any]] | str
    ) -> list[str]:
        """Apply CustomResourceDefinitions and wait until each is Established and served.

        Established alone is not enough: the REST handler for the new resource appears a moment
        later, and a request in between gets a 404.
        """
        crds = [d for d in iter_documents(manifest) if d.get("kind") == "CustomResourceDefinition"]
        self.apply(crds)
        for crd in crds:
            name, spec = crd["metadata"]["name"], crd["spec"]
            wait_until(
                functools.partial(self._crd_established, name),
                timeout=CRD_READY_TIMEOUT_SECONDS,
                what=f"{name} to be Established",
            )
            for version in spec["versions"]:
                if version.get("served", True):
                    wait_until(
                        functools.partial(
                            self._resource_served,
                            spec["group"],
                            version["name"],
                            spec["names"]["plural"],
                        ),
                        timeout=CRD_READY_TIMEOUT_SECONDS,
                        what=f"{name} {version['name']} to be served",
                    )
        # Later applies must see the new kinds, not a discovery document cached before them.
        self.dynamic.resources.invalidate_cache()
        return [crd["metadata"]["name"] for crd in crds]

    def _crd_established(self, name: str) -> bool:
        crd = k8s.ApiextensionsV1Api(self.admin).read_custom_resource_definition(name)
        conditions = crd.status.conditions if crd.status else None
        return any(c.type == "Established" and c.status == "True" for c in conditions or [])

    def _resource_served(self, group: str, version: str, plural: str) -> bool:
        try:
            k8s.CustomObjectsApi(self.admin).list_cluster_custom_object(
                group, version, plural, limit=1
            )
        except k8s.ApiException as e:
            if e.status == 404:
                return False
            raise
        return True


def iter_documents(
    manifest: Mapping[str, Any] | Sequence[Mapping[str, Any]] | str,
) -> Iterator[Mapping[str, Any]]:
    if isinstance(manifest, str):
        documents: Iterable[Any] = yaml.safe_load_all(manifest)
    elif isinstance(manifest, Mapping):
        documents = [manifest]
    else:
        documents = manifest
    for document in documents:
        if not document:
            continue
        if document.get("kind", "").endswith("List") and "items" in document:
            yield from document["items"]
        else:
            yield document


@contextlib.contextmanager
def running_cluster(bin_dir: Path, workdir: Path) -> Iterator[KubeCluster]:
    cluster = KubeCluster(bin_dir, workdir)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
