"""What bench_scale.py runs and watches: a real etcd + kube-apiserver (the cluster tier's own
starters, imported from tests/cluster), `b2ckeys graph-emulator` as a process, and `b2ckeys run`
as the operator's ServiceAccount; plus the probes the figures come from: a key set watch with
arrival times, the API server's audit log (the operator's writes) and Graph's request log.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
# The cluster tier's starters (not a package): the same code the tests run, no copies.
sys.path.insert(0, str(ROOT / "tests" / "cluster"))

from apiserver import KubeCluster, find_bin_dir, free_loopback_port, running_cluster  # noqa: E402
from operator_process import (  # noqa: E402
    OPERATOR_NAMESPACE,
    OPERATOR_USER,
    WRITE_ROLE,
    bind_operator_account,
    operator_binary,
)

from b2ckeys_emulators.processes import listening, stop  # noqa: E402

__all__ = [
    "CLIENT_ID",
    "OPERATOR_USER",
    "TENANT",
    "AuditTail",
    "GraphLog",
    "KeySetWatch",
    "Kube",
    "OperatorRun",
    "cpu_seconds",
    "find_bin_dir",
    "graph_emulator",
    "proc_kib",
    "running_cluster",
    "start_operator",
]

TENANT = "b2ckeys-scale.onmicrosoft.com"
CLIENT_ID = "0b2c0000-0000-4000-8000-000000005ca1"
GROUP_VERSION = "b2ckeys.dev/v1alpha1"
KEYSETS_ALL = f"/apis/{GROUP_VERSION}/trustframeworkkeysets"
WATCH_LABEL = {"b2ckeys.dev/watch": "true"}
MERGE_PATCH = {"Content-Type": "application/merge-patch+json"}
# A watch request ends after this long and resumes, so the watcher notices a stop in time.
WATCH_CHUNK_SECONDS = 5
WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})


class BenchFailed(RuntimeError):
    pass


def proc_kib(pid: int, field_name: str) -> int:
    """A `kB` line of /proc/<pid>/status: VmRSS (resident now) or VmHWM (peak resident)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field_name}:"):
            return int(line.split()[1])
    raise BenchFailed(f"/proc/{pid}/status has no {field_name}")


def cpu_seconds(pid: int) -> float:
    """utime + stime of the whole process, from /proc/<pid>/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # the command name may contain spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- Graph emulator ------------------------------------------------------------------------------


@dataclass
class GraphEmulatorProcess:
    url: str
    pid: int
    ca_file: Path
    client_secret: str
    control: httpx.Client

    def get(self, path: str) -> Any:
        response = self.control.get(path)
        response.raise_for_status()
        return response.json()

    def set_write_rate_limit(self, per_second: int | None) -> None:
        response = self.control.post("/_emulator/write-rate-limit", json={"perSecond": per_second})
        response.raise_for_status()

    def wait_key_pool_full(self, timeout: float) -> dict[str, int]:
        deadline = time.monotonic() + timeout
        while True:
            pool: dict[str, int] = self.get("/_emulator/key-pool")
            if pool.get("made", 0) >= pool.get("size", 0):
                return pool
            if time.monotonic() > deadline:
                raise BenchFailed(f"the emulator's key pool did not fill in {timeout:.0f}s: {pool}")
            time.sleep(0.2)


@contextlib.contextmanager
def graph_emulator(workdir: Path, key_pool: int) -> Iterator[GraphEmulatorProcess]:
    """`b2ckeys graph-emulator --key-pool N`, the command a person would type."""
    executable = str(operator_binary())
    tls_dir = workdir / "graph-tls"
    client_secret = "scale-" + base64.urlsafe_b64encode(os.urandom(12)).decode()
    argv = [
        executable,
        "graph-emulator",
        "--tls-dir",
        str(tls_dir),
        "--tenant-id",
        TENANT,
        "--app",
        f"{CLIENT_ID}:{client_secret}:{WRITE_ROLE}",
        "--key-pool",
        str(key_pool),
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "B2CKEYS_"))}
    banner = "b2ckeys graph-emulator listening on"
    with listening(argv, workdir / "graph-emulator.log", env, banner) as (url, proc):
        ca_file = tls_dir / "ca.pem"
        context = ssl.create_default_context(cafile=str(ca_file))
        with httpx.Client(base_url=url, verify=context, timeout=60.0) as control:
            yield GraphEmulatorProcess(url, proc.pid, ca_file, client_secret, control)


class GraphLog:
    """Graph's request log since a moment (it keeps its latest 10,000 entries)."""

    LIMIT = 10_000

    def __init__(self, graph: GraphEmulatorProcess) -> None:
        self.graph = graph
        self.since = time.time()

    def mark(self) -> None:
        # The emulator's clock is this machine's (no offset is set), so epochs compare.
        self.since = time.time()

    def new(self, until: float | None = None, contains: str | None = None) -> list[dict[str, Any]]:
        """Requests that arrived since the last mark() (and before `until`; with `contains` in
        their path), oldest first."""
        query: dict[str, Any] = {"since": self.since}
        if contains:
            query["contains"] = contains
        response = self.graph.control.get("/_emulator/requests", params=query)
        response.raise_for_status()
        records: list[dict[str, Any]] = response.json()["value"]
        if len(records) >= self.LIMIT:
            raise BenchFailed("Graph's request log wrapped inside one phase; use a smaller N")
        return [r for r in records if until is None or float(r["time"]) < until]


def graph_kind(record: Mapping[str, Any]) -> str:
    """read, write or token (anything else: other)."""
    path, method = str(record["path"]), str(record["method"])
    if path.endswith("/oauth2/v2.0/token"):
        return "token"
    if not path.startswith("/beta/"):
        return "other"
    return "read" if method == "GET" else "write"


# --- the API server ------------------------------------------------------------------------------


class Kube:
    """Admin requests over one pooled HTTPS client (thread-safe), for bulk creation."""

    def __init__(self, cluster: KubeCluster, threads: int = 4) -> None:
        pki = cluster.pki
        context = ssl.create_default_context(cafile=str(pki.ca_cert))
        context.load_cert_chain(str(pki.admin.cert), str(pki.admin.key))
        limits = httpx.Limits(max_connections=threads, max_keepalive_connections=threads)
        self.http = httpx.Client(base_url=cluster.server, verify=context, timeout=60, limits=limits)
        self.threads = threads

    def send(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = self.http.request(method, path, **kwargs)
        if response.status_code >= 300:
            raise BenchFailed(f"{method} {path}: {response.status_code} {response.text[:300]}")
        body: dict[str, Any] = response.json() if response.content else {}
        return body

    def create_namespace(self, name: str) -> None:
        namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        self.send("POST", "/api/v1/namespaces", json=namespace)

    def create_all(self, namespace: str, objects: Sequence[Mapping[str, Any]]) -> None:
        """POST every object, `threads` at a time."""

        def create(obj: Mapping[str, Any]) -> None:
            if obj["kind"] == "Secret":
                path = f"/api/v1/namespaces/{namespace}/secrets"
            else:
                path = f"/apis/{GROUP_VERSION}/namespaces/{namespace}/trustframeworkkeysets"
            self.send("POST", path, json=obj)

        with ThreadPoolExecutor(self.threads) as pool:
            list(pool.map(create, objects))

    def patch_secret_data(self, namespace: str, name: str, data: Mapping[str, bytes]) -> None:
        encoded = {k: base64.b64encode(v).decode() for k, v in data.items()}
        path = f"/api/v1/namespaces/{namespace}/secrets/{name}"
        self.send("PATCH", path, json={"data": encoded}, headers=MERGE_PATCH)

    def close(self) -> None:
        self.http.close()


def secret(name: str, data: Mapping[str, bytes], *, type_: str = "Opaque") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": type_,
        "metadata": {"name": name, "labels": dict(WATCH_LABEL)},
        "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
    }


def keyset(name: str, key_set_id: str, source: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": GROUP_VERSION,
        "kind": "TrustFrameworkKeySet",
        "metadata": {"name": name},
        "spec": {"keySetId": key_set_id, "source": dict(source)},
    }


@dataclass
class KeySetView:
    ready: bool = False
    x5t: str | None = None
    ready_at: float | None = None  # perf_counter when the event making it Ready arrived
    x5t_at: float | None = None  # ... when the event carrying the current x5t arrived
    versions: int = 0  # resourceVersions seen after the first: each one a write


class KeySetWatch:
    """Every key set in the cluster as one admin watch stream shows it, with arrival times."""

    def __init__(self, cluster: KubeCluster) -> None:
        pki = cluster.pki
        context = ssl.create_default_context(cafile=str(pki.ca_cert))
        context.load_cert_chain(str(pki.admin.cert), str(pki.admin.key))
        self._http = httpx.Client(
            base_url=cluster.server,
            verify=context,
            timeout=httpx.Timeout(30.0, read=WATCH_CHUNK_SECONDS + 30.0),
        )
        self.views: dict[tuple[str, str], KeySetView] = {}
        self.changed = threading.Condition()
        self._stop = threading.Event()
        self.failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="keyset watch", daemon=True)

    def __enter__(self) -> KeySetWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(WATCH_CHUNK_SECONDS + 35.0)
        self._http.close()

    def _run(self) -> None:
        try:
            version = self._list()
            while not self._stop.is_set():
                version = self._stream(version)
        except BaseException as e:  # surfaced to whoever waits next
            self.failure = e
            with self.changed:
                self.changed.notify_all()

    def _list(self) -> str:
        response = self._http.get(KEYSETS_ALL)
        response.raise_for_status()
        body = response.json()
        arrived = time.perf_counter()
        with self.changed:
            for obj in body["items"]:
                self._apply(obj, arrived, counted=False)
            self.changed.notify_all()
        return str(body["metadata"]["resourceVersion"])

    def _stream(self, version: str) -> str:
        params = {
            "watch": "true",
            "resourceVersion": version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(WATCH_CHUNK_SECONDS),
        }
        with self._http.stream("GET", KEYSETS_ALL, params=params) as response:
            response.raise_for_status()
            for line in response.iter_lines():
                if not line.strip():
                    continue
                event = json.loads(line)
                arrived = time.perf_counter()
                if event["type"] == "ERROR":  # 410 Expired: start again from a fresh list
                    return self._list()
                obj = event["object"]
                version = str(obj["metadata"]["resourceVersion"])
                if event["type"] in ("ADDED", "MODIFIED"):
                    with self.changed:
                        self._apply(obj, arrived, counted=event["type"] == "MODIFIED")
                        self.changed.notify_all()
        return version

    def _apply(self, obj: Mapping[str, Any], arrived: float, *, counted: bool) -> None:
        meta = obj["metadata"]
        view = self.views.setdefault((meta["namespace"], meta["name"]), KeySetView())
        status = obj.get("status") or {}
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in status.get("conditions") or []
        )
        synced = (status.get("syncedKey") or {}).get("x5t")
        if ready and not view.ready:
            view.ready_at = arrived
        if synced != view.x5t:
            view.x5t_at = arrived
        view.ready, view.x5t = ready, synced
        view.versions += counted

    def wait(
        self,
        what: str,
        check: Callable[[Mapping[tuple[str, str], KeySetView]], bool],
        timeout: float,
    ) -> None:
        deadline = time.perf_counter() + timeout
        with self.changed:
            while not check(self.views):
                if self.failure is not None:
                    raise BenchFailed(f"the key set watch failed: {self.failure!r}")
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    raise BenchFailed(f"timed out after {timeout:.0f}s waiting for {what}")
                self.changed.wait(min(remaining, 1.0))

    def modified(self) -> int:
        with self.changed:
            return sum(v.versions for v in self.views.values())

    def view(self, key: tuple[str, str]) -> KeySetView:
        with self.changed:
            found = self.views.get(key, KeySetView())
            return KeySetView(found.ready, found.x5t, found.ready_at, found.x5t_at, found.versions)


def all_ready(keys: Sequence[tuple[str, str]]) -> Callable[[Mapping[Any, KeySetView]], bool]:
    return lambda views: all(k in views and views[k].ready for k in keys)


class AuditTail:
    """The API server's audit log from an offset: what the operator's ServiceAccount wrote."""

    def __init__(self, cluster: KubeCluster) -> None:
        self.path = cluster.audit_log
        self.offset = 0

    def mark(self) -> None:
        self.offset = self.path.stat().st_size if self.path.exists() else 0

    def events(self) -> list[dict[str, Any]]:
        """Every audit event since mark()."""
        found = []
        with self.path.open("rb") as log:
            log.seek(self.offset)
            for raw in log:
                with contextlib.suppress(json.JSONDecodeError):
                    found.append(json.loads(raw))
        return found

    def operator_writes(self) -> dict[str, int]:
        """Successful writes by the operator since mark(), by resource (events, key sets ...)."""
        counts: dict[str, int] = {}
        with self.path.open("rb") as log:
            log.seek(self.offset)
            for raw in log:
                with contextlib.suppress(json.JSONDecodeError):
                    event = json.loads(raw)
                    if (event.get("user") or {}).get("username") != OPERATOR_USER:
                        continue
                    if event.get("verb") not in WRITE_VERBS:
                        continue
                    if (event.get("responseStatus") or {}).get("code", 0) >= 300:
                        continue
                    ref = event.get("objectRef") or {}
                    resource = ref.get("resource", "?")
                    if resource.endswith(("accessreviews", "tokenreviews")):
                        continue  # a question to the server, stored nowhere
                    if ref.get("subresource"):
                        resource += "/" + ref["subresource"]
                    counts[resource] = counts.get(resource, 0) + 1
        return counts


# --- the operator --------------------------------------------------------------------------------


@dataclass
class OperatorRun:
    proc: subprocess.Popen[bytes]
    started: float  # perf_counter just before spawn
    started_wall: float  # time.time() at the same moment (Graph's request log clock)
    log: Path
    samples: list[int] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise BenchFailed(f"the operator exited with {self.proc.returncode}; see {self.log}")

    def rss_kib(self) -> int:
        return proc_kib(self.pid, "VmRSS")

    def peak_kib(self) -> int:
        return proc_kib(self.pid, "VmHWM")

    def stop(self) -> float:
        return stop(self.proc)  # type: ignore[arg-type]  # bytes or text: only signals are sent

    def problems(self) -> list[str]:
        text = self.log.read_text(errors="replace")
        return [ln for ln in text.splitlines() if "Traceback" in ln or "failed unexpectedly" in ln]


def start_operator(
    cluster: KubeCluster,
    graph: GraphEmulatorProcess,
    workdir: Path,
    *,
    name: str,
    env_overrides: Mapping[str, str],
    wrap: Sequence[str] = (),
) -> OperatorRun:
    """`b2ckeys run --all-namespaces` as the operator's ServiceAccount (production defaults but
    `env_overrides`); `wrap` prefixes the command (a profiler)."""
    kubeconfig = bind_operator_account(cluster)
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AZURE_", "B2CKEYS_", "KUBERNETES_")) and k != "KUBECONFIG"
    }
    env = {
        **base,
        "KUBECONFIG": str(kubeconfig),
        "AZURE_TENANT_ID": TENANT,
        "AZURE_CLIENT_ID": CLIENT_ID,
        "AZURE_CLIENT_SECRET": graph.client_secret,
        "AZURE_AUTHORITY_HOST": graph.url,
        "B2CKEYS_GRAPH_BASE_URL": graph.url + "/beta",
        "SSL_CERT_FILE": str(graph.ca_file),
        "REQUESTS_CA_BUNDLE": str(graph.ca_file),
        "POD_NAMESPACE": OPERATOR_NAMESPACE,
        "B2CKEYS_METRICS_ADDRESS": f"127.0.0.1:{free_loopback_port()}",
        **env_overrides,
    }
    log = workdir / f"operator-{name}.log"
    with log.open("wb") as sink:
        started, started_wall = time.perf_counter(), time.time()
        proc = subprocess.Popen(
            [*wrap, str(operator_binary()), "run", "--all-namespaces"],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=env,
        )
    return OperatorRun(proc, started, started_wall, log)
