"""Two real `b2ckeys run` processes on the real kube-apiserver, electing through the Lease.

Each replica signs in to Graph as an app of its own, so the Graph emulator's request log says
which replica made every write and when. Timings are the tier's compressed ones (lease 4 s,
renew deadline 3 s, retry 0.5 s; operator_process.OPERATOR_TIMINGS), except where a test
measures the production defaults. Failover figures are printed (run with -s to see them).
"""

from __future__ import annotations

import contextlib
import datetime
import os
import signal
import socket
import ssl
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from apiserver import KubeCluster, free_loopback_port, wait_until
from keyset_objects import Keysets, keyset, tls_secret, unique_key_set_id, x5t
from kubernetes import client as k8s
from operator_process import (
    OPERATOR_NAMESPACE,
    OPERATOR_TIMINGS,
    TENANT,
    WRITE_ROLE,
    BackgroundLoop,
    GraphEmulatorThread,
    OperatorProcess,
    bind_operator_account,
    operator_binary,
    operator_env,
)

from b2ckeys.settings import LEASE_NAME, parse_duration
from b2ckeys_emulators.devpki import DevCA, rsa_key
from b2ckeys_emulators.graph.server import EmulatedApp, serve_graph_emulator

pytestmark = pytest.mark.cluster

LEASE = parse_duration(OPERATOR_TIMINGS["B2CKEYS_LEASE_DURATION"])
RENEW_DEADLINE = parse_duration(OPERATOR_TIMINGS["B2CKEYS_RENEW_DEADLINE"])
RETRY = parse_duration(OPERATOR_TIMINGS["B2CKEYS_RETRY_PERIOD"])
# A candidate retries every retry period plus up to 20 % jitter (client-go's factor), and sees
# the leader's last renewal up to one such retry late: the bound a SIGKILL failover meets.
CANDIDATE_RETRY = 1.2 * RETRY
SIGKILL_FAILOVER_BOUND = LEASE + 2 * CANDIDATE_RETRY
START_TIMEOUT = 60.0
CA = DevCA.create("b2ckeys leader-election CA")
LEAF_KEY = rsa_key(2048, 7)  # one key, many certificates: each has its own x5t


# --- the Graph emulator, one app per replica ----------------------------------------------------

APP_IDS = {
    "op-a": "0b2c0000-0000-4000-8000-00000000a001",
    "op-b": "0b2c0000-0000-4000-8000-00000000b002",
}


@dataclass
class TwoAppGraph:
    emulator: GraphEmulatorThread
    secrets: dict[str, str]

    def writes(self) -> list[dict[str, Any]]:
        """Every Graph write (not token requests, not reads), oldest first."""
        response = self.emulator.control.get("/_emulator/requests")
        response.raise_for_status()
        return [
            r
            for r in response.json()["value"]
            if r["path"].startswith("/beta/") and r["method"] in ("POST", "PUT", "PATCH", "DELETE")
        ]

    def writes_by(self, replica: str) -> list[dict[str, Any]]:
        return [r for r in self.writes() if r["client_id"] == APP_IDS[replica]]


@pytest.fixture(scope="module")
def graph(emulator_ca_dir: Path) -> Iterator[TwoAppGraph]:
    secrets = {name: f"ha-{name}-{uuid.uuid4().hex}" for name in APP_IDS}
    apps = [
        EmulatedApp(client_id=APP_IDS[name], secret=secret, roles=(WRITE_ROLE,))
        for name, secret in secrets.items()
    ]
    background = BackgroundLoop()
    serving = serve_graph_emulator(tls_dir=emulator_ca_dir, tenant_id=TENANT, apps=apps)
    emulator = background.run(serving.__aenter__())
    try:
        with httpx.Client(
            base_url=emulator.url,
            verify=ssl.create_default_context(cafile=str(emulator.ca_path)),
            timeout=10,
        ) as control:
            yield TwoAppGraph(GraphEmulatorThread(emulator, secrets["op-a"], control), secrets)
    finally:
        background.run(serving.__aexit__(None, None, None))
        background.close()


# --- a TCP proxy that can partition one replica from the API server -----------------------------


class PartitionableProxy:
    """Forwards TCP to the API server until `partition()`: then it cuts every connection and
    swallows new ones without an answer (a blackhole, like a lost route: requests time out)."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._partitioned = threading.Event()
        self._closing = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._acceptor = threading.Thread(target=self._accept, name="proxy", daemon=True)
        self._acceptor.start()

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self._closing.is_set():
                client.close()
                return
            self._track(client)
            if self._partitioned.is_set():
                continue  # held open, never answered
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            self._track(server)
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while chunk := source.recv(65536):
                if self._partitioned.is_set():
                    return
                sink.sendall(chunk)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def partition(self) -> None:
        self._partitioned.set()
        with self._lock:
            connected, self._sockets = self._sockets, []
        for sock in connected:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self._closing.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        self._listener.close()
        self._acceptor.join(5)
        self.partition()  # closes whatever is still connected


def kubeconfig_through(kubeconfig: Path, proxy: PartitionableProxy, path: Path) -> Path:
    """The same credentials, with the server reached through the proxy (the API server's
    certificate names 127.0.0.1, which the proxy's address still is)."""
    config = yaml.safe_load(kubeconfig.read_text(encoding="utf-8"))
    for entry in config["clusters"]:
        entry["cluster"]["server"] = f"https://127.0.0.1:{proxy.port}"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def api_address(kubeconfig: Path) -> tuple[str, int]:
    config = yaml.safe_load(kubeconfig.read_text(encoding="utf-8"))
    server = httpx.URL(config["clusters"][0]["cluster"]["server"])
    assert server.port is not None
    return server.host, server.port


# --- two replicas -------------------------------------------------------------------------------


@dataclass
class Replica:
    name: str
    process: OperatorProcess
    metrics_port: int

    @property
    def pid(self) -> int:
        assert self.process.popen is not None
        return self.process.popen.pid

    def get(self, path: str) -> tuple[int, str]:
        try:
            response = httpx.get(f"http://127.0.0.1:{self.metrics_port}{path}", timeout=2)
        except httpx.HTTPError as e:
            return 0, str(e)
        return response.status_code, response.text

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text(encoding="utf-8").splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def leader_gauge(self) -> float | None:
        status, text = self.get("/metrics")
        if status != 200:
            return None
        for line in text.splitlines():
            if line.startswith(f'b2ckeys_leader{{pod="{self.name}"}} '):
                return float(line.rsplit(" ", 1)[1])
        return None


class GaugeWatch:
    """Polls a replica's b2ckeys_leader gauge (its metrics server is local, so a partition from
    the API server does not hide it) and notes when it first reads 0."""

    def __init__(self, replica: Replica) -> None:
        self.replica = replica
        self.stopped_leading: datetime.datetime | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="gauge-watch", daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._done.wait(0.05):
            if self.replica.leader_gauge() == 0.0:
                self.stopped_leading = datetime.datetime.now(datetime.UTC)
                return

    def close(self) -> None:
        self._done.set()
        self._thread.join(5)


@dataclass
class Replicas:
    cluster: KubeCluster
    graph: TwoAppGraph
    kubeconfig: Path
    workdir: Path
    running: dict[str, Replica] = field(default_factory=dict)

    def start(
        self, name: str, *, kubeconfig: Path | None = None, env: dict[str, str] | None = None
    ) -> Replica:
        port = free_loopback_port()
        process = OperatorProcess(
            name=f"b2ckeys run ({name})",
            argv=[str(operator_binary()), "run", "--all-namespaces"],
            env={
                **operator_env(kubeconfig or self.kubeconfig, self.graph.emulator),
                "AZURE_CLIENT_ID": APP_IDS[name],
                "AZURE_CLIENT_SECRET": self.graph.secrets[name],
                "POD_NAME": name,
                "B2CKEYS_METRICS_ADDRESS": f"127.0.0.1:{port}",
                **(env or {}),
            },
            log_path=self.workdir / f"{name}.log",
        )
        process.start()
        replica = self.running[name] = Replica(name, process, port)
        self.wait(f"{name} ready", lambda: replica.get("/readyz")[0] == 200, START_TIMEOUT)
        return replica

    def wait(self, what: str, condition: Callable[[], bool], timeout: float) -> None:
        def checked() -> bool:
            for replica in self.running.values():
                popen = replica.process.popen
                if popen is not None and popen.poll() not in (None, 0, -signal.SIGKILL):
                    raise AssertionError(f"{replica.name} exited: {replica.process.log_tail()}")
            return condition()

        wait_until(checked, timeout=timeout, interval=0.05, what=what)

    def lease(self) -> k8s.V1LeaseSpec:
        lease = k8s.CoordinationV1Api(self.cluster.admin).read_namespaced_lease(
            LEASE_NAME, OPERATOR_NAMESPACE
        )
        assert lease.spec is not None
        return lease.spec

    def holder(self) -> str:
        try:
            return str(self.lease().holder_identity or "")
        except k8s.ApiException:
            return ""

    def wait_holder(self, name: str, timeout: float = START_TIMEOUT) -> k8s.V1LeaseSpec:
        self.wait(f"{name} to hold the Lease", lambda: self.holder() == name, timeout)
        return self.lease()

    def stop_all(self) -> None:
        for replica in self.running.values():
            code = replica.process.stop()
            assert code in (0, None, -signal.SIGKILL), (
                f"{replica.name} exited with {code}: {replica.process.log_tail()}"
            )


@pytest.fixture
def replicas(
    kube_cluster: KubeCluster, installed_crds: list[str], graph: TwoAppGraph, tmp_path: Path
) -> Iterator[Replicas]:
    pair = Replicas(kube_cluster, graph, bind_operator_account(kube_cluster), tmp_path)
    try:
        yield pair
    finally:
        pair.stop_all()


def issue(common_name: str) -> Any:
    return CA.issue(common_name, key=LEAF_KEY)


def writes_between(
    graph: TwoAppGraph, start: datetime.datetime, end: datetime.datetime
) -> list[dict[str, Any]]:
    return [r for r in graph.writes() if start.timestamp() < r["time"] < end.timestamp()]


# --- SIGKILL in the middle of a rotation burst --------------------------------------------------

BURST_KEYSETS = 6
BURST_ROUNDS = 3


def test_sigkill_of_the_leader_mid_burst_every_certificate_reaches_b2c_exactly_once(
    replicas: Replicas, namespace: str
) -> None:
    keysets = Keysets(replicas.cluster, namespace)
    leader = replicas.start("op-a")
    replicas.wait_holder("op-a")
    standby = replicas.start("op-b")
    names = [f"signing-{i}" for i in range(BURST_KEYSETS)]
    ids = {name: unique_key_set_id("Burst") for name in names}
    issued: dict[str, list[Any]] = {name: [issue(f"{name} 0")] for name in names}
    keysets.apply(*(tls_secret(f"{n}-tls", CA, issued[n][0]) for n in names))
    keysets.apply(*(keyset(n, ids[n], {"tlsSecret": {"name": f"{n}-tls"}}) for n in names))
    replicas.wait("the first certificates in B2C", lambda: all_in_b2c(replicas, ids, issued), 60)

    killed_at: datetime.datetime | None = None
    for round_ in range(1, BURST_ROUNDS + 1):
        for i, name in enumerate(names):
            issued[name].append(issue(f"{name} {round_}"))
            keysets.apply(tls_secret(f"{name}-tls", CA, issued[name][-1]))
            if round_ == 2 and i == BURST_KEYSETS // 2:
                # Half of this round is out: some renewals are in flight, some not yet seen.
                killed_at = datetime.datetime.now(datetime.UTC)
                os.kill(leader.pid, signal.SIGKILL)
        replicas.wait(f"round {round_} in B2C", lambda: all_in_b2c(replicas, ids, issued), 60)
    assert killed_at is not None

    taken = replicas.wait_holder("op-b", timeout=0)
    acquired = taken.acquire_time
    assert acquired is not None
    failover = (acquired - killed_at).total_seconds()
    print(
        f"\nSIGKILL failover (lease {LEASE:g}s, renew {RENEW_DEADLINE:g}s, retry {RETRY:g}s): "
        f"{failover:.2f}s from the kill to the standby's acquireTime"
    )
    assert failover <= SIGKILL_FAILOVER_BOUND
    # Exactly once: every certificate issued is in B2C once, none twice, nothing else.
    for name in names:
        in_b2c = [k.get("x5t") for k in replicas.graph.emulator.keys(f"B2C_1A_{ids[name]}")]
        assert sorted(in_b2c) == sorted(x5t(leaf) for leaf in issued[name]), name
    # Nothing written while no one led: op-a's last write came before the kill, op-b's first
    # after it took the Lease.
    assert not writes_between(replicas.graph, killed_at, acquired)
    assert max(r["time"] for r in replicas.graph.writes_by("op-a")) < killed_at.timestamp()
    assert not [r for r in replicas.graph.writes_by("op-b") if r["time"] < acquired.timestamp()]
    assert standby.process.running


def all_in_b2c(replicas: Replicas, ids: dict[str, str], issued: dict[str, list[Any]]) -> bool:
    for name, key_set_id in ids.items():
        present = {k.get("x5t") for k in replicas.graph.emulator.keys(f"B2C_1A_{key_set_id}")}
        if x5t(issued[name][-1]) not in present:
            return False
    return True


DEFAULT_TIMINGS = {
    "B2CKEYS_LEASE_DURATION": "15s",
    "B2CKEYS_RENEW_DEADLINE": "10s",
    "B2CKEYS_RETRY_PERIOD": "2s",
}


def test_sigkill_failover_with_the_default_timings(replicas: Replicas) -> None:
    """What production sees when the leader's node disappears: 15 s / 10 s / 2 s."""
    lease = parse_duration(DEFAULT_TIMINGS["B2CKEYS_LEASE_DURATION"])
    retry = parse_duration(DEFAULT_TIMINGS["B2CKEYS_RETRY_PERIOD"])
    leader = replicas.start("op-a", env=DEFAULT_TIMINGS)
    replicas.wait_holder("op-a")
    replicas.start("op-b", env=DEFAULT_TIMINGS)
    # Kill between two renewals of the steady state, as a node failure would.
    standby_started = datetime.datetime.now(datetime.UTC)
    replicas.wait("a renewal", lambda: renewed_since(replicas, standby_started), 3 * retry)

    killed_at = datetime.datetime.now(datetime.UTC)
    os.kill(leader.pid, signal.SIGKILL)
    taken = replicas.wait_holder("op-b", timeout=lease + 3 * retry + 5)

    assert taken.acquire_time is not None
    failover = (taken.acquire_time - killed_at).total_seconds()
    print(f"\nSIGKILL failover (defaults: lease {lease:g}s, retry {retry:g}s): {failover:.2f}s")
    assert lease <= failover + retry  # never before the holder's last renewal expired
    assert failover <= lease + 2 * 1.2 * retry


def renewed_since(replicas: Replicas, moment: datetime.datetime) -> bool:
    renewed = replicas.lease().renew_time
    return renewed is not None and renewed > moment


# --- SIGTERM releases the Lease -----------------------------------------------------------------


@pytest.mark.parametrize("timings", ["tier", "defaults"])
def test_sigterm_releases_the_lease_so_the_standby_takes_over_in_about_a_retry(
    replicas: Replicas, namespace: str, timings: str
) -> None:
    env = DEFAULT_TIMINGS if timings == "defaults" else {}
    retry = parse_duration((env or OPERATOR_TIMINGS)["B2CKEYS_RETRY_PERIOD"])
    leader = replicas.start("op-a", env=env)
    replicas.wait_holder("op-a")
    standby = replicas.start("op-b", env=env)
    before = replicas.lease().lease_transitions or 0

    stopped_at = datetime.datetime.now(datetime.UTC)
    assert leader.process.stop() == 0
    exited = datetime.datetime.now(datetime.UTC)
    taken = replicas.wait_holder("op-b", timeout=2 * retry + 5)
    assert taken.acquire_time is not None
    failover = (taken.acquire_time - stopped_at).total_seconds()
    print(
        f"\nSIGTERM failover ({timings}: retry {retry:g}s): {failover:.2f}s from SIGTERM to the "
        f"standby's acquireTime (the leader took {(exited - stopped_at).total_seconds():.2f}s "
        "to exit)"
    )

    assert failover <= (exited - stopped_at).total_seconds() + 1.2 * retry + 0.5
    assert (taken.lease_transitions or 0) == before + 1
    assert "released the leader Lease" in leader.process.log_text()
    replicas.wait("op-b to report it leads", lambda: standby.leader_gauge() == 1.0, 5)


# --- a partitioned leader -----------------------------------------------------------------------


def test_a_partitioned_leader_stops_writing_before_the_standby_takes_over(
    replicas: Replicas, namespace: str
) -> None:
    proxy = PartitionableProxy(api_address(replicas.kubeconfig))
    try:
        through_proxy = kubeconfig_through(
            replicas.kubeconfig, proxy, replicas.workdir / "through-proxy.kubeconfig"
        )
        leader = replicas.start("op-a", kubeconfig=through_proxy)
        replicas.wait_holder("op-a")
        standby = replicas.start("op-b")
        keysets = Keysets(replicas.cluster, namespace)
        key_set_id = unique_key_set_id("Partition")
        leaves = [issue("partition 0")]
        keysets.apply(tls_secret("partition-tls", CA, leaves[0]))
        keysets.apply(keyset("partition", key_set_id, {"tlsSecret": {"name": "partition-tls"}}))
        ids, issued = {"partition": key_set_id}, {"partition": leaves}
        replicas.wait("op-a to sync", lambda: all_in_b2c(replicas, ids, issued), 60)
        assert replicas.graph.writes_by("op-a")

        assert leader.leader_gauge() == 1.0
        watch = GaugeWatch(leader)
        partitioned_at = datetime.datetime.now(datetime.UTC)
        proxy.partition()
        leaves.append(issue("partition 1"))  # a renewal only the standby can see
        keysets.apply(tls_secret("partition-tls", CA, leaves[-1]))
        replicas.wait("op-b to sync the renewal", lambda: all_in_b2c(replicas, ids, issued), 30)

        taken = replicas.lease()
        assert taken.holder_identity == "op-b"
        assert taken.acquire_time is not None
        acquired = taken.acquire_time
        replicas.wait("op-a's gauge to drop", lambda: watch.stopped_leading is not None, 5)
        watch.close()
        stopped_leading = watch.stopped_leading
        assert stopped_leading is not None
        assert "lost the leadership (op-a; no renewal for the renew deadline" in (
            leader.process.log_text()
        )
        a_last = max(r["time"] for r in replicas.graph.writes_by("op-a"))
        b_first = min(
            r["time"]
            for r in replicas.graph.writes_by("op-b")
            if r["time"] > partitioned_at.timestamp()  # earlier tests had an op-b too
        )
        print(
            "\npartition timeline (s after the partition): "
            f"op-a's last Graph write {a_last - partitioned_at.timestamp():+.2f}, "
            f"op-a stops leading {(stopped_leading - partitioned_at).total_seconds():+.2f}, "
            f"op-b acquires {(acquired - partitioned_at).total_seconds():+.2f}, "
            f"op-b's first Graph write {b_first - partitioned_at.timestamp():+.2f}"
        )
        assert a_last < stopped_leading.timestamp() < acquired.timestamp() <= b_first
        # It gave up by its renew deadline (counted from its last renewal, at most one retry
        # before the partition), well before the lease duration let op-b in.
        assert (stopped_leading - partitioned_at).total_seconds() <= RENEW_DEADLINE + 0.5
        assert (acquired - stopped_leading).total_seconds() >= LEASE - RENEW_DEADLINE - RETRY
        assert [k.get("x5t") for k in replicas.graph.emulator.keys(f"B2C_1A_{key_set_id}")] == [
            x5t(leaf) for leaf in leaves
        ]
        assert leader.process.running, "a partitioned replica stands by; it does not exit"
        assert standby.get("/readyz") == (200, "ok (leader)\n")
        replicas.wait(
            "op-a to report not ready (it cannot reach the API server)",
            lambda: leader.get("/readyz")[0] == 503,
            LEASE + 2,
        )
    finally:
        proxy.close()


# --- the standby's footprint --------------------------------------------------------------------


def test_an_idle_standby_holds_its_watches_in_little_memory(replicas: Replicas) -> None:
    replicas.start("op-a")
    replicas.wait_holder("op-a")
    standby = replicas.start("op-b")
    replicas.wait(
        "op-b to settle", lambda: standby.leader_gauge() == 0.0 and standby.rss_kib() > 0, 10
    )
    leader_rss, standby_rss = replicas.running["op-a"].rss_kib(), standby.rss_kib()
    print(
        f"\nidle RSS: standby {standby_rss / 1024:.1f} MiB, leader {leader_rss / 1024:.1f} MiB "
        "(VmRSS from /proc/<pid>/status)"
    )
    assert standby.get("/readyz") == (200, "ok (standby)\n")
    assert standby_rss < 256 * 1024  # the Deployment's memory limit
