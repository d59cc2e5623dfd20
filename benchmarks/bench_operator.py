"""What the running operator costs and how fast it reacts, end to end over loopback.

Starts the real processes a person would (`b2ckeys graph-emulator`, `b2ckeys kube-emulator`,
`b2ckeys run`), plays cert-manager with `b2ckeys_emulators.devpki`, and measures:
- cold start: `b2ckeys run` process start to its first key set Ready (and SIGTERM to exit);
- cert-manager renewal: a labelled TLS Secret patched with a new certificate and key, until the
  key set's `status.syncedKey.x5t` is the new certificate's thumbprint (idle, and under load);
- scale: K key sets (half `generate`, half `tlsSecret`) created at once, until all are Ready
  (and how many token requests that burst made); then steady state with a 10 s resync: Graph
  requests/s and reads per key set per resync (asserting zero Graph writes), status writes/s,
  operator log lines/s, CPU% (utime+stime from /proc) and CPU per resync, and RSS;
- memory: operator RSS (VmRSS) after start and after each K, and its peak (VmHWM).
The bench watches key sets over one watch stream, so every time is when the change reached a
client, not when a poll happened to notice it. Each phase gets fresh processes. Usage:
`.venv/bin/python benchmarks/bench_operator.py [--quick] [--keep] [--b2ckeys PATH]`.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization

from b2ckeys_emulators.devpki import DevCA, Issued, rsa_key
from b2ckeys_emulators.processes import StartFailed, b2ckeys_executable, listening, stop

TENANT = "b2ckeys-bench.onmicrosoft.com"
CLIENT_ID = "0b2c0000-0000-4000-8000-00000000be9c"
WRITE_ROLE = "TrustFrameworkKeySet.ReadWrite.All"
NAMESPACE = "bench"
GROUP_VERSION = "b2ckeys.dev/v1alpha1"
KEYSETS_ALL = f"/apis/{GROUP_VERSION}/trustframeworkkeysets"
KEYSETS = f"/apis/{GROUP_VERSION}/namespaces/{NAMESPACE}/trustframeworkkeysets"
SECRETS = f"/api/v1/namespaces/{NAMESPACE}/secrets"
MERGE_PATCH = {"Content-Type": "application/merge-patch+json"}
WATCH_LABEL = {"b2ckeys.dev/watch": "true"}
# The brief's steady state: resync every 10 s, so a 30 s window sees every key set ~3 times.
RESYNC = "10s"
RESYNC_SECONDS = 10.0
# The design's promise for a cert-manager renewal reaching B2C.
RENEWAL_TARGET = 1.0
# A process line, a Ready key set, a renewal: each far inside these on a loaded 2-core machine.
START_TIMEOUT = 30.0
READY_TIMEOUT = 60.0
RENEWAL_TIMEOUT = 30.0
# Per key set on top of READY_TIMEOUT: a burst of K reconciles runs 8 at a time.
READY_TIMEOUT_PER_KEYSET = 0.5
# Each watch request ends after this long and resumes from the last resourceVersion, so the
# watcher thread notices a stop within this time.
WATCH_CHUNK_SECONDS = 2
# Graph's request log keeps this many entries (emulator_state._REQUEST_LOG_LIMIT).
GRAPH_LOG_LIMIT = 10_000
# RSA keys behind the scale phase's TLS Secrets: distinct certificates (so distinct x5t) need
# not mean distinct keys, and each 2048-bit key costs 50-500 ms to generate.
SCALE_KEY_POOL = 4
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True)
class Profile:
    name: str
    cold_starts: int
    rotations: int
    scales: tuple[int, ...]
    window: float
    loaded_rotations: int


FULL = Profile(
    "full", cold_starts=3, rotations=20, scales=(50, 200), window=30.0, loaded_rotations=5
)
# Smoke-run sizes: every phase runs, in about a minute.
QUICK = Profile("quick", cold_starts=1, rotations=5, scales=(10,), window=12.0, loaded_rotations=2)


class BenchFailed(RuntimeError):
    pass


# --- statistics and /proc -----------------------------------------------------------------------


def percentile(samples: Sequence[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def spread(samples: Sequence[float]) -> str:
    return (
        f"median {statistics.median(samples):6.3f} s   p90 {percentile(samples, 0.9):6.3f} s   "
        f"max {max(samples):6.3f} s   n={len(samples)}"
    )


def proc_status_kib(pid: int, field_name: str) -> int:
    """A `kB` line of /proc/<pid>/status, e.g. VmRSS (resident now) or VmHWM (peak resident)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field_name}:"):
            return int(line.split()[1])
    raise BenchFailed(f"/proc/{pid}/status has no {field_name}")


def cpu_seconds(pid: int) -> float:
    """utime + stime of the whole process (all threads), from /proc/<pid>/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # the command name may contain spaces
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def mib(kib: int) -> str:
    return f"{kib / 1024:.1f} MiB"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        first, *rest = zip(cells, widths, strict=True)
        return "  ".join([first[0].ljust(first[1]), *(c.rjust(w) for c, w in rest)])

    return "\n".join([line(headers), *(line(r) for r in rows)])


# --- processes ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def service(
    argv: Sequence[str], log: Path, env: Mapping[str, str], banner: str
) -> Iterator[tuple[str, int]]:
    """An emulator process; yields the URL from its `... listening on URL` line, and its pid."""
    try:
        with listening(argv, log, env, banner) as (url, proc):
            yield url, proc.pid
    except StartFailed as e:
        raise BenchFailed(str(e)) from None


@dataclass
class Operator:
    proc: subprocess.Popen[str]
    started: float  # perf_counter just before the process was spawned
    log: Path
    liveness_url: str

    @property
    def pid(self) -> int:
        return self.proc.pid

    def rss_kib(self) -> int:
        return proc_status_kib(self.pid, "VmRSS")

    def peak_kib(self) -> int:
        return proc_status_kib(self.pid, "VmHWM")

    def wait_live(self) -> float:
        """Seconds from spawn until Kopf's liveness endpoint answers 200."""
        deadline = time.perf_counter() + READY_TIMEOUT
        with httpx.Client(timeout=1.0) as http:
            while time.perf_counter() < deadline:
                if self.proc.poll() is not None:
                    raise BenchFailed(
                        f"the operator exited with {self.proc.returncode}; {self.log}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    if http.get(self.liveness_url).status_code == 200:
                        return time.perf_counter() - self.started
                time.sleep(0.05)
        raise BenchFailed(f"the operator's liveness endpoint never answered; {self.log}")

    def graph_models_seconds(self) -> str:
        found = re.findall(r"Graph models loaded in ([0-9.]+)s", self.log.read_text())
        return f"{float(found[-1]):.1f} s" if found else "-"

    def log_lines(self) -> int:
        return len(self.log.read_text().splitlines())

    def log_problems(self) -> list[str]:
        return [
            line
            for line in self.log.read_text().splitlines()
            if "Traceback" in line or " ERROR " in line or "[ERROR" in line
        ]


@dataclass
class Stack:
    """Both emulators, running; starts operators against them."""

    workdir: Path
    graph_url: str
    graph_pid: int
    kube_url: str
    kube_pid: int
    kubeconfig: Path
    ca_file: Path
    client_secret: str
    executable: str
    base_env: dict[str, str]
    runs: int = 0

    def start_operator(self) -> Operator:
        self.runs += 1
        liveness = f"http://127.0.0.1:{free_port()}/healthz"
        env = {
            **self.base_env,
            "KUBECONFIG": str(self.kubeconfig),
            "AZURE_TENANT_ID": TENANT,
            "AZURE_CLIENT_ID": CLIENT_ID,
            "AZURE_CLIENT_SECRET": self.client_secret,
            "AZURE_AUTHORITY_HOST": self.graph_url,
            "B2CKEYS_GRAPH_BASE_URL": self.graph_url.rstrip("/") + "/beta",
            "B2CKEYS_RESYNC_INTERVAL": RESYNC,
            # Any free loopback port: never 0.0.0.0:8081, which something else may hold.
            "B2CKEYS_METRICS_ADDRESS": "127.0.0.1:0",
            "SSL_CERT_FILE": str(self.ca_file),
            "REQUESTS_CA_BUNDLE": str(self.ca_file),
        }
        log = self.workdir / f"operator-{self.runs}.log"
        with log.open("w") as sink:
            started = time.perf_counter()
            proc = subprocess.Popen(
                [self.executable, "run", "--all-namespaces", "--liveness", liveness],
                stdout=sink,
                stderr=subprocess.STDOUT,
                env=env,
                text=True,
            )
        return Operator(proc, started, log, liveness)


@contextlib.contextmanager
def stack(workdir: Path, executable: str) -> Iterator[Stack]:
    workdir.mkdir(parents=True)
    tls_dir, kubeconfig = workdir / "tls", workdir / "kubeconfig"
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "B2CKEYS_"))}
    client_secret = "bench-" + base64.urlsafe_b64encode(os.urandom(12)).decode()
    graph_argv = [
        executable,
        "graph-emulator",
        "--port",
        "0",
        "--tls-dir",
        str(tls_dir),
        "--tenant-id",
        TENANT,
        "--app",
        f"{CLIENT_ID}:{client_secret}:{WRITE_ROLE}",
    ]
    kube_argv = [executable, "kube-emulator", "--port", "0", "--kubeconfig", str(kubeconfig)]
    with (
        service(
            graph_argv,
            workdir / "graph-emulator.log",
            base_env,
            "b2ckeys graph-emulator listening on",
        ) as (graph_url, graph_pid),
        service(
            kube_argv, workdir / "kube-emulator.log", base_env, "b2ckeys kube-emulator listening on"
        ) as (kube_url, kube_pid),
    ):
        yield Stack(
            workdir,
            graph_url,
            graph_pid,
            kube_url,
            kube_pid,
            kubeconfig,
            tls_dir / "ca.pem",
            client_secret,
            executable,
            base_env,
        )


# --- talking to the emulators -------------------------------------------------------------------


def x5t(leaf: Issued) -> str:
    der = leaf.certificate.public_bytes(serialization.Encoding.DER)
    digest = hashlib.sha1(der, usedforsecurity=False).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def tls_secret(name: str, ca: DevCA, leaf: Issued) -> dict[str, Any]:
    data = ca.tls_secret_data(leaf)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {"name": name, "labels": dict(WATCH_LABEL)},
        "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
    }


def keyset(name: str, source: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": GROUP_VERSION,
        "kind": "TrustFrameworkKeySet",
        "metadata": {"name": name},
        "spec": {"keySetId": f"Bench{name.replace('-', '')}", "source": dict(source)},
    }


class Kube:
    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=10.0)

    def _send(self, method: str, path: str, **kwargs: Any) -> None:
        response = self.http.request(method, path, **kwargs)
        if response.status_code >= 300:
            raise BenchFailed(f"{method} {path}: {response.status_code} {response.text[:300]}")

    def create_namespace(self) -> None:
        namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
        self._send("POST", "/api/v1/namespaces", json=namespace)

    def create_secret(self, obj: Mapping[str, Any]) -> None:
        self._send("POST", SECRETS, json=obj)

    def create_keyset(self, obj: Mapping[str, Any]) -> None:
        self._send("POST", KEYSETS, json=obj)

    def renew(self, name: str, ca: DevCA, leaf: Issued) -> None:
        """What cert-manager does on renewal: rewrite the Secret's data in place."""
        data = tls_secret(name, ca, leaf)["data"]
        self._send("PATCH", f"{SECRETS}/{name}", json={"data": data}, headers=MERGE_PATCH)

    def close(self) -> None:
        self.http.close()


@dataclass
class KeySetView:
    ready: bool = False
    x5t: str | None = None
    ready_at: float | None = None  # when the event that made it Ready arrived
    x5t_at: float | None = None  # when the event carrying the current x5t arrived


class KeySetWatch:
    """Every TrustFrameworkKeySet as one watch stream shows it, with arrival times."""

    def __init__(self, kube_url: str) -> None:
        self._http = httpx.Client(
            base_url=kube_url, timeout=httpx.Timeout(10.0, read=WATCH_CHUNK_SECONDS + 10.0)
        )
        self._views: dict[str, KeySetView] = {}
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self.modified = 0  # MODIFIED events: the operator writes only status, so status writes
        self.failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="keyset watch", daemon=True)

    def __enter__(self) -> KeySetWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(WATCH_CHUNK_SECONDS + 15.0)
        self._http.close()

    def _list(self) -> str:
        response = self._http.get(KEYSETS_ALL)
        response.raise_for_status()
        body = response.json()
        arrived = time.perf_counter()
        with self._changed:
            for obj in body["items"]:
                self._apply(obj, arrived)
            self._changed.notify_all()
        return str(body["metadata"]["resourceVersion"])

    def _run(self) -> None:
        try:
            version = self._list()
            while not self._stop.is_set():
                version = self._stream(version)
        except BaseException as e:  # surfaced to the waiting phase
            self.failure = e
            with self._changed:
                self._changed.notify_all()

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
                if event["type"] == "ERROR":  # 410 Expired: start over from a fresh list
                    return self._list()
                obj = event["object"]
                version = str(obj["metadata"]["resourceVersion"])
                if event["type"] in ("ADDED", "MODIFIED"):
                    with self._changed:
                        if event["type"] == "MODIFIED":
                            self.modified += 1
                        self._apply(obj, arrived)
                        self._changed.notify_all()
        return version

    def _apply(self, obj: Mapping[str, Any], arrived: float) -> None:
        view = self._views.setdefault(obj["metadata"]["name"], KeySetView())
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

    def wait(
        self, what: str, check: Callable[[Mapping[str, KeySetView]], bool], timeout: float
    ) -> None:
        deadline = time.perf_counter() + timeout
        with self._changed:
            while not check(self._views):
                if self.failure is not None:
                    raise BenchFailed(f"the key set watch failed: {self.failure!r}")
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    raise BenchFailed(f"timed out after {timeout:.0f}s waiting for {what}")
                self._changed.wait(remaining)

    def view(self, name: str) -> KeySetView:
        with self._changed:
            found = self._views.get(name, KeySetView())
            return KeySetView(found.ready, found.x5t, found.ready_at, found.x5t_at)

    def ready_at(self, names: Sequence[str]) -> float:
        """When the last of `names` became Ready (call after waiting for all of them)."""
        with self._changed:
            return max(self._views[n].ready_at or 0.0 for n in names)


def all_ready(names: Sequence[str]) -> Callable[[Mapping[str, KeySetView]], bool]:
    return lambda views: all(n in views and views[n].ready for n in names)


class GraphLog:
    """Graph's request log (`/_emulator/requests`): what reached Graph between two snapshots."""

    def __init__(self, graph_url: str, ca_file: Path) -> None:
        context = ssl.create_default_context(cafile=str(ca_file))
        self.http = httpx.Client(base_url=graph_url, verify=context, timeout=30.0)

    def snapshot(self) -> list[dict[str, Any]]:
        response = self.http.get("/_emulator/requests")
        response.raise_for_status()
        records: list[dict[str, Any]] = response.json()["value"]
        return records

    @staticmethod
    def since(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> list[dict[str, Any]]:
        seen = {r["request_id"] for r in before}
        new = [r for r in after if r["request_id"] not in seen]
        if len(after) >= GRAPH_LOG_LIMIT and len(new) == len(after):
            raise BenchFailed("Graph's request log wrapped during the window; shorten it")
        return new

    def close(self) -> None:
        self.http.close()


def is_graph_write(record: Mapping[str, Any]) -> bool:
    return record["method"] in WRITE_METHODS and str(record["path"]).startswith("/beta/")


def is_token(record: Mapping[str, Any]) -> bool:
    return str(record["path"]).endswith("/oauth2/v2.0/token")


def is_graph_read(record: Mapping[str, Any]) -> bool:
    return record["method"] == "GET" and str(record["path"]).startswith("/beta/")


# --- phases -------------------------------------------------------------------------------------


@dataclass
class Results:
    cold_starts: list[list[str]] = field(default_factory=list)
    renewals_idle: list[float] = field(default_factory=list)
    renewals_loaded: list[float] = field(default_factory=list)
    loaded_k: int = 0
    burst_rows: list[list[str]] = field(default_factory=list)
    steady_rows: list[list[str]] = field(default_factory=list)
    memory_rows: list[list[str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    log_problems: dict[str, list[str]] = field(default_factory=dict)


def synced_to(name: str, want: str) -> Callable[[Mapping[str, KeySetView]], bool]:
    return lambda views: name in views and views[name].x5t == want


def measure_renewals(
    kube: Kube, watch: KeySetWatch, ca: DevCA, name: str, count: int, slot: int
) -> list[float]:
    """Renew the TLS Secret `name` (read by the key set `name`) `count` times, one at a time."""
    # Issue first (a fresh key per renewal, as rotationPolicy: Always): only the sync is timed.
    leaves = [ca.issue(f"renewal {slot + i}", key=rsa_key(2048, slot + i)) for i in range(count)]
    samples = []
    for leaf in leaves:
        expected = x5t(leaf)
        started = time.perf_counter()
        kube.renew(name, ca, leaf)
        watch.wait(f"{name} to sync x5t {expected}", synced_to(name, expected), RENEWAL_TIMEOUT)
        arrived = watch.view(name).x5t_at
        assert arrived is not None
        samples.append(arrived - started)
    return samples


def phase_cold_start_and_renewal(
    workdir: Path, profile: Profile, executable: str, out: Results
) -> None:
    ca = DevCA.create("b2ckeys bench CA")
    with stack(workdir / "cold", executable) as emulators, KeySetWatch(emulators.kube_url) as watch:
        kube = Kube(emulators.kube_url)
        kube.create_namespace()
        try:
            for run in range(profile.cold_starts):
                # A key set the operator has never seen, waiting before the process starts.
                name = f"cold-{run}"
                kube.create_secret(tls_secret(name, ca, ca.issue(name, key=rsa_key(2048, 1))))
                kube.create_keyset(keyset(name, {"tlsSecret": {"name": name}}))
                operator = emulators.start_operator()
                try:
                    live = operator.wait_live()
                    watch.wait(f"{name} Ready", all_ready([name]), READY_TIMEOUT)
                    row = [
                        str(run + 1),
                        f"{live:.2f} s",
                        f"{watch.ready_at([name]) - operator.started:.2f} s",
                        operator.graph_models_seconds(),
                        mib(operator.rss_kib()),
                    ]
                    if run == profile.cold_starts - 1:  # the last one serves the renewals
                        out.renewals_idle = measure_renewals(
                            kube, watch, ca, "cold-0", profile.rotations, slot=200
                        )
                        out.memory_rows.append(
                            [
                                f"after start and {profile.rotations} renewals",
                                mib(operator.rss_kib()),
                                mib(operator.peak_kib()),
                            ]
                        )
                finally:
                    shutdown = stop(operator.proc)
                    out.log_problems[f"cold start {run + 1}"] = operator.log_problems()
                out.cold_starts.append([*row, f"{shutdown:.2f} s"])
        finally:
            kube.close()


def phase_scale(
    workdir: Path, k: int, profile: Profile, executable: str, loaded: bool, out: Results
) -> None:
    ca = DevCA.create("b2ckeys bench CA", slot=101)
    with (
        stack(workdir / f"scale-{k}", executable) as emulators,
        KeySetWatch(emulators.kube_url) as watch,
    ):
        kube, graph = Kube(emulators.kube_url), GraphLog(emulators.graph_url, emulators.ca_file)
        kube.create_namespace()
        operator = emulators.start_operator()
        try:
            operator.wait_live()
            idle_rss = operator.rss_kib()
            names = [f"ks-{i:03d}" for i in range(k)]
            tls_names = set(names[1::2])
            secrets = [
                tls_secret(n, ca, ca.issue(n, key=rsa_key(2048, 300 + i % SCALE_KEY_POOL)))
                for i, n in enumerate(sorted(tls_names))
            ]
            at_start = graph.snapshot()
            pids = (operator.pid, emulators.graph_pid, emulators.kube_pid)
            cpu_at_start = [cpu_seconds(pid) for pid in pids]
            started = time.perf_counter()
            for obj in secrets:
                kube.create_secret(obj)
            for name in names:
                source = (
                    {"tlsSecret": {"name": name}}
                    if name in tls_names
                    else {"generate": {"kty": "RSA"}}
                )
                kube.create_keyset(keyset(name, source))
            created = time.perf_counter() - started
            watch.wait(
                f"all {k} key sets Ready",
                all_ready(names),
                READY_TIMEOUT + READY_TIMEOUT_PER_KEYSET * k,
            )
            ready = watch.ready_at(names) - started
            burst_cpu = [
                cpu_seconds(pid) - cpu for pid, cpu in zip(pids, cpu_at_start, strict=True)
            ]
            after_burst_rss = operator.rss_kib()

            before, modified_before = graph.snapshot(), watch.modified
            burst = GraphLog.since(at_start, before)
            log_before = operator.log_lines()
            cpu_before, window_started = cpu_seconds(operator.pid), time.perf_counter()
            time.sleep(profile.window)  # the steady state is the thing measured: nothing to poll
            cpu_after, window = cpu_seconds(operator.pid), time.perf_counter() - window_started
            requests = GraphLog.since(before, graph.snapshot())
            status_writes = watch.modified - modified_before
            steady_rss = operator.rss_kib()
            log_lines = operator.log_lines() - log_before

            writes = [r for r in requests if is_graph_write(r)]
            reads = [r for r in requests if is_graph_read(r)]
            resyncs = k * window / RESYNC_SECONDS
            if writes:
                out.problems.append(
                    f"K={k}: {len(writes)} Graph writes in steady state: "
                    + ", ".join(sorted({f"{r['method']} {r['path']}" for r in writes})[:5])
                )
            out.burst_rows.append(
                [
                    str(k),
                    f"{created:.2f} s",
                    f"{ready:.2f} s",
                    str(sum(is_token(r) for r in burst)),
                    *(f"{seconds:.1f} s" for seconds in burst_cpu),
                ]
            )
            out.steady_rows.append(
                [
                    str(k),
                    f"{len(requests) / window:.1f}",
                    f"{len(reads) / resyncs:.2f}",
                    str(len(writes)),
                    f"{status_writes / window:.1f}",
                    f"{log_lines / window:.1f}",
                    f"{100 * (cpu_after - cpu_before) / window:.1f}%",
                    f"{1000 * (cpu_after - cpu_before) / max(status_writes, 1):.0f} ms",
                    mib(steady_rss),
                ]
            )
            out.memory_rows.append([f"K={k}: started, no key sets", mib(idle_rss), "-"])
            out.memory_rows.append(
                [
                    f"K={k}: all Ready / steady",
                    f"{mib(after_burst_rss)} / {mib(steady_rss)}",
                    mib(operator.peak_kib()),
                ]
            )
            if loaded:
                out.loaded_k = k
                out.renewals_loaded = measure_renewals(
                    kube, watch, ca, min(tls_names), profile.loaded_rotations, slot=240
                )
        finally:
            stop(operator.proc)
            out.log_problems[f"scale K={k}"] = operator.log_problems()
            kube.close()
            graph.close()


# --- report -------------------------------------------------------------------------------------


def verdict(samples: Sequence[float]) -> str:
    met = bool(samples) and max(samples) < RENEWAL_TARGET
    return f"{'meets' if met else 'MISSES'} the {RENEWAL_TARGET:.0f} s target (max)"


def report(profile: Profile, out: Results) -> str:
    sections = [
        f"b2ckeys operator benchmark ({profile.name}: {profile.rotations} renewals, "
        f"K={', '.join(map(str, profile.scales))}, steady window {profile.window:.0f} s, "
        f"resync {RESYNC}) on {os.cpu_count()} CPUs, Python {sys.version.split()[0]}",
        "",
        "cold start (spawn of `b2ckeys run` -> ...)",
        table(
            ["run", "liveness 200", "first key set Ready", "Graph models", "RSS", "SIGTERM->exit"],
            out.cold_starts,
        ),
        "",
        "cert-manager renewal (Secret patched -> status.syncedKey.x5t is the new certificate's)",
        f"  idle             {spread(out.renewals_idle)}   {verdict(out.renewals_idle)}",
    ]
    if out.renewals_loaded:
        sections.append(
            f"  during K={out.loaded_k:<5}  {spread(out.renewals_loaded)}   "
            f"{verdict(out.renewals_loaded)}"
        )
    sections += [
        "",
        "creation burst: K key sets, half generate, half tlsSecret, POSTed at once",
        table(
            ["K", "create", "all Ready", "tokens", "operator CPU", "graph-emu CPU", "kube-emu CPU"],
            out.burst_rows,
        ),
        "  create: POSTing the Secrets and key sets; all Ready: from the first POST; tokens: token",
        "  requests to the identity endpoint; CPU: each process's utime+stime during the burst.",
        "",
        f"steady state over {profile.window:.0f} s right after, resync {RESYNC}",
        table(
            [
                "K",
                "Graph req/s",
                "reads/resync",
                "Graph writes",
                "status writes/s",
                "log lines/s",
                "CPU",
                "CPU/resync",
                "RSS",
            ],
            out.steady_rows,
        ),
        "  reads/resync: Graph GETs per key set per resync interval; status writes/s: MODIFIED",
        "  events on the key set watch (the operator writes nothing else to key sets); CPU: the",
        "  operator's, and per status write (one per reconcile).",
        "",
        "operator memory",
        table(["when", "VmRSS", "VmHWM (peak)"], out.memory_rows),
    ]
    noisy = {phase: lines for phase, lines in out.log_problems.items() if lines}
    for phase, lines in noisy.items():
        sections += ["", f"operator log errors ({phase}): {len(lines)}", *lines[:5]]
    sections += [
        "",
        "steady-state Graph writes: " + ("; ".join(out.problems) or "none (as required)"),
    ]
    return "\n".join(sections)


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="smaller N and K, a shorter window")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    parser.add_argument(
        "--b2ckeys", default=b2ckeys_executable(), help="the b2ckeys executable to run"
    )
    args = parser.parse_args(list(argv))
    profile = QUICK if args.quick else FULL
    workdir = Path(tempfile.mkdtemp(prefix="b2ckeys-bench-operator-"))
    out = Results()
    try:
        phase_cold_start_and_renewal(workdir, profile, args.b2ckeys, out)
        for k in profile.scales:
            phase_scale(workdir, k, profile, args.b2ckeys, k == profile.scales[-1], out)
    except BenchFailed as e:
        print(f"bench_operator failed: {e} (work directory kept: {workdir})", file=sys.stderr)
        return 1
    print(report(profile, out))
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        print(f"\nwork directory kept: {workdir}")
    return 1 if out.problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
