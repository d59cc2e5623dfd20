"""Scale and cost on the real kube-apiserver: N key sets, their cold start, steady state, memory,
renewal latency against the floor, and convergence under Graph write throttling (issue 12).

Starts etcd + kube-apiserver (tests/cluster/apiserver.py), `b2ckeys graph-emulator --key-pool`
and `b2ckeys run --all-namespaces` as the operator's ServiceAccount, then measures:
1. creation burst: N key sets at once (half tlsSecret, a quarter generate, a quarter secret);
   the emulator's RSA generation is kept out by its pre-made key pool;
2. cold start: the operator restarted over N in-sync key sets: time until each was checked in
   B2C, Graph requests, Kubernetes writes (the audit log), peak RSS;
3. memory: RSS at N, then with S unrelated 2 KB Secrets in other namespaces;
4. renewal latency (Secret patched -> status.syncedKey.x5t changed), idle and during resyncs,
   against the floor (scale_floor.py: the same calls with no operator);
5. throttled convergence: the emulator accepting W writes per second, T new key sets;
6. steady state with a short resync: Graph reads per key set per resync, writes, CPU.
Usage: `.venv/bin/python benchmarks/bench_scale.py [--quick] [--keysets N] ... [--json]`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from b2ckeys_emulators.devpki import DevCA, rsa_key
from scale_floor import STEPS
from scale_measure import (
    NS,
    counts_by_kind,
    generated_count,
    issue_leaves,
    key_set_id,
    latency,
    max_per_second,
    reads_per_resync,
    renewal_timeline,
    renewals,
    wait_checked,
    workload,
)
from scale_report import render
from scale_stack import (
    CLIENT_ID,
    OPERATOR_USER,
    TENANT,
    AuditTail,
    BenchFailed,
    GraphEmulatorProcess,
    GraphLog,
    KeySetWatch,
    Kube,
    OperatorRun,
    all_ready,
    bind_operator_account,
    cpu_seconds,
    find_bin_dir,
    graph_emulator,
    graph_kind,
    keyset,
    running_cluster,
    secret,
    start_operator,
)

ROOT = Path(__file__).resolve().parents[1]
THROTTLED_NS = "throttled"
KEY_SET_PREFIX = "B2C_1A_"
# After the operator has checked every key set, late writes (if any) get this long to show up.
SETTLE_SECONDS = 5.0
# Unrelated Secrets: in this many namespaces, this many bytes each.
UNRELATED_NAMESPACES = 10
# How long RSS gets to react to the unrelated Secrets (they should never reach the operator).
MEMORY_SETTLE_SECONDS = 10.0
# The operator's production defaults, except what each phase needs to see in its window.
LONG_RESYNC = "10m"
ACTIVE_KEY_MARGIN = "1s"


@dataclass(frozen=True)
class Sizes:
    keysets: int
    renewals: int
    unrelated_secrets: int
    throttle_keysets: int
    write_rate: int
    resync: float
    steady_resyncs: int


FULL = Sizes(1000, 100, 10_000, 100, 10, 20.0, 2)
QUICK = Sizes(40, 15, 400, 30, 10, 10.0, 2)


@dataclass
class Results:
    figures: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


# --- the run -----------------------------------------------------------------------------------


@dataclass
class Bench:
    sizes: Sizes
    workdir: Path
    cluster: Any
    graph: GraphEmulatorProcess
    kube: Kube
    watch: KeySetWatch
    graph_log: GraphLog
    audit: AuditTail
    ca: DevCA
    out: Results
    names: list[str] = field(default_factory=list)
    throttled_names: list[str] = field(default_factory=list)
    operator: OperatorRun | None = None
    runs: int = 0
    profile_dir: Path | None = None

    def start(self, resync: str, wrap: Sequence[str] = ()) -> OperatorRun:
        self.runs += 1
        env = {"B2CKEYS_RESYNC_INTERVAL": resync, "B2CKEYS_ACTIVE_KEY_MARGIN": ACTIVE_KEY_MARGIN}
        self.operator = start_operator(
            self.cluster,
            self.graph,
            self.workdir,
            name=str(self.runs),
            env_overrides=env,
            wrap=wrap,
        )
        return self.operator

    def profile(self, run: OperatorRun, label: str) -> subprocess.Popen[bytes] | None:
        """py-spy sampling the operator (CPU only), when --profile names a directory."""
        if self.profile_dir is None:
            return None
        py_spy = Path(sys.executable).with_name("py-spy")
        out = self.profile_dir / (label.replace(" ", "-") + ".txt")
        return subprocess.Popen(
            [str(py_spy), "record", "-p", str(run.pid), "-r", "250", "-f", "raw", "-o", str(out)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        if self.operator is not None:
            self.operator.stop()
            problems = self.operator.problems()
            if problems:
                self.out.problems.append(f"operator run {self.runs}: " + "; ".join(problems[:3]))
            self.operator = None

    def ids(self, names: Sequence[str]) -> set[str]:
        return {KEY_SET_PREFIX + key_set_id(n) for n in names}

    def ready_timeout(self, count: int) -> float:
        return 120.0 + 0.5 * count


def phase_setup(b: Bench) -> None:
    """The renewal and floor subjects, and operator #1 warmed up by them."""
    b.kube.create_namespace(NS)
    for name in ("renewal", "floor"):
        leaf = b.ca.issue(name, key=rsa_key(2048, 310))
        b.kube.create_all(NS, [secret(name, b.ca.tls_secret_data(leaf), type_="kubernetes.io/tls")])
        b.kube.create_all(NS, [keyset(name, key_set_id(name), {"tlsSecret": {"name": name}})])
    b.start(LONG_RESYNC)
    b.watch.wait("the first key sets Ready", all_ready([(NS, "renewal"), (NS, "floor")]), 120.0)


def phase_burst(b: Bench) -> None:
    n = b.sizes.keysets
    b.names = [f"ks-{i:04d}" for i in range(n)]
    secrets_, keysets = workload(b.ca, b.names)
    b.kube.create_all(NS, secrets_)  # cert-manager wrote these earlier: not in the figure
    pool = b.graph.wait_key_pool_full(600.0)
    run = b.operator
    assert run is not None
    b.graph_log.mark()
    b.audit.mark()
    pids = {"operator": run.pid, "graph emulator": b.graph.pid}
    cpu_before = {k: cpu_seconds(p) for k, p in pids.items()}
    started = time.perf_counter()
    b.kube.create_all(NS, keysets)
    created = time.perf_counter() - started
    keys = [(NS, name) for name in b.names]
    b.watch.wait(f"all {n} key sets Ready", all_ready(keys), b.ready_timeout(n))
    ready = max(b.watch.view(k).ready_at or 0.0 for k in keys) - started
    cpu = {k: round(cpu_seconds(p) - cpu_before[k], 1) for k, p in pids.items()}
    graph = counts_by_kind(b.graph_log.new())
    b.out.figures["burst"] = {
        "keysets": n,
        "create_seconds": round(created, 2),
        "all_ready_seconds": round(ready, 2),
        "keysets_per_second": round(n / ready, 1),
        "graph_requests": graph,
        "kube_writes": b.audit.operator_writes(),
        "cpu_seconds": cpu,
        "key_pool_before": pool,
        "key_pool_after": b.graph.get("/_emulator/key-pool"),
        "generated_keysets": generated_count(len(b.names)),
    }


def phase_cold_start(b: Bench) -> None:
    b.stop()
    b.graph_log.mark()
    b.audit.mark()
    versions = b.watch.modified()
    ids = b.ids(b.names) | b.ids(["renewal", "floor"])
    run = b.start(LONG_RESYNC)
    checked, _ = wait_checked(b.graph_log, ids, run.started_wall, run, b.ready_timeout(len(ids)))
    time.sleep(SETTLE_SECONDS)  # the window for late writes: nothing to poll for
    records = b.graph_log.new()
    graph = counts_by_kind(records)
    writes = b.audit.operator_writes()
    b.out.figures["cold_start"] = {
        "keysets": len(ids),
        "all_checked_seconds": round(checked, 2),
        "graph_requests": graph,
        "graph_reads_per_keyset": round(graph["read"] / len(ids), 2),
        "kube_writes": writes,
        "keyset_watch_modified": b.watch.modified() - versions,
        "rss_mib": round(run.rss_kib() / 1024, 1),
        "peak_rss_mib": round(run.peak_kib() / 1024, 1),
    }


def phase_memory(b: Bench) -> None:
    run = b.operator
    assert run is not None
    before = run.rss_kib()
    count = b.sizes.unrelated_secrets
    per_namespace = -(-count // UNRELATED_NAMESPACES)
    created = 0
    started = time.perf_counter()
    for index in range(UNRELATED_NAMESPACES):
        namespace = f"unrelated-{index}"
        b.kube.create_namespace(namespace)
        batch = []
        for number in range(min(per_namespace, count - created)):
            data = {"blob": os.urandom(1536)}  # 2 KB once base64-encoded
            obj = secret(f"unrelated-{number:05d}", data)
            obj["metadata"]["labels"] = {"app": "something-else"}
            batch.append(obj)
        b.kube.create_all(namespace, batch)
        created += len(batch)
    creating = time.perf_counter() - started
    time.sleep(MEMORY_SETTLE_SECONDS)  # RSS is the thing measured: nothing to poll for
    after = run.rss_kib()
    b.out.figures["memory"] = {
        "keysets": len(b.names) + 2,
        "rss_mib": round(before / 1024, 1),
        "unrelated_secrets": created,
        "create_seconds": round(creating, 1),
        "rss_with_unrelated_mib": round(after / 1024, 1),
        "growth_percent": round(100 * (after - before) / before, 1),
        "peak_rss_mib": round(run.peak_kib() / 1024, 1),
    }


def measure_renewals(b: Bench, label: str) -> dict[str, Any]:
    """M renewals of the key set "renewal", with the operator's CPU and where the time went."""
    run = b.operator
    assert run is not None
    leaves = issue_leaves(b.ca, label, b.sizes.renewals)
    b.graph_log.mark()
    b.audit.mark()
    cpu_before = cpu_seconds(run.pid)
    profiler = b.profile(run, label)
    try:
        samples = renewals(b.kube, b.watch, leaves, b.ca, "renewal")
    finally:
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)
            profiler.wait(60)
    cpu = cpu_seconds(run.pid) - cpu_before
    figures: dict[str, Any] = latency([s.seconds for s in samples])
    figures["operator_cpu_ms_per_renewal"] = round(1000 * cpu / len(samples), 1)
    figures["timeline"] = renewal_timeline(
        samples,
        b.audit.events(),
        b.graph_log.new(contains="/keySets/" + KEY_SET_PREFIX + key_set_id("renewal")),
        OPERATOR_USER,
        "renewal",
    )
    return figures


def phase_idle_renewals(b: Bench) -> None:
    b.out.figures["renewal_idle"] = measure_renewals(b, "idle renewal")


def phase_throttled(b: Bench) -> None:
    t, w = b.sizes.throttle_keysets, b.sizes.write_rate
    b.throttled_names = [f"th-{i:04d}" for i in range(t)]
    secrets_, keysets = workload(b.ca, b.throttled_names)
    b.kube.create_namespace(THROTTLED_NS)
    b.kube.create_all(THROTTLED_NS, secrets_)
    b.graph.set_write_rate_limit(w)
    b.graph_log.mark()
    started = time.perf_counter()
    try:
        b.kube.create_all(THROTTLED_NS, keysets)
        keys = [(THROTTLED_NS, n) for n in b.throttled_names]
        b.watch.wait(f"all {t} throttled key sets Ready", all_ready(keys), 120.0 + 4.0 * t / w)
        total = max(b.watch.view(k).ready_at or 0.0 for k in keys) - started
    finally:
        b.graph.set_write_rate_limit(None)
    writes = [r for r in b.graph_log.new() if graph_kind(r) == "write"]
    accepted = [r for r in writes if r["status"] < 400]
    refused = [r for r in writes if r["status"] == 429]
    first_429 = min((float(r["time"]) for r in refused), default=None)
    after = [float(r["time"]) for r in accepted if first_429 is not None and r["time"] >= first_429]
    minimum = len(accepted) / w
    b.out.figures["throttled"] = {
        "keysets": t,
        "writes_per_second_limit": w,
        "writes_accepted": len(accepted),
        "writes_refused_429": len(refused),
        "max_writes_in_any_second_after_first_429": max_per_second(after),
        "all_ready_seconds": round(total, 2),
        "minimum_seconds": round(minimum, 2),
        "ratio_to_minimum": round(total / minimum, 2) if minimum else None,
    }


def phase_steady(b: Bench) -> None:
    b.stop()
    resync = b.sizes.resync
    ids = b.ids(b.names) | b.ids(["renewal", "floor"]) | b.ids(b.throttled_names)
    b.graph_log.mark()
    run = b.start(f"{resync:g}s")
    checked, _ = wait_checked(b.graph_log, ids, run.started_wall, run, b.ready_timeout(len(ids)))
    b.out.figures["cold_start_short_resync"] = {
        "keysets": len(ids),
        "all_checked_seconds": round(checked, 2),
    }
    b.graph_log.mark()
    b.audit.mark()
    versions = b.watch.modified()
    window = resync * b.sizes.steady_resyncs
    cpu_before, started = cpu_seconds(run.pid), time.perf_counter()
    time.sleep(window)  # the steady state is the thing measured: nothing to poll for
    cpu = cpu_seconds(run.pid) - cpu_before
    elapsed = time.perf_counter() - started
    # Exactly the window: a request answered after it belongs to the next resync.
    records = b.graph_log.new(until=b.graph_log.since + elapsed)
    graph = counts_by_kind(records)
    resyncs = elapsed / resync
    b.out.figures["steady"] = {
        "keysets": len(ids),
        "resync_seconds": resync,
        "window_seconds": round(elapsed, 1),
        "graph_requests": graph,
        "graph_reads_per_keyset_per_window_resync": round(graph["read"] / (len(ids) * resyncs), 3),
        "per_pass": reads_per_resync(records, resync),
        "kube_writes": b.audit.operator_writes(),
        "keyset_watch_modified": b.watch.modified() - versions,
        "cpu_percent": round(100 * cpu / elapsed, 1),
        "cpu_seconds_per_resync": round(cpu / resyncs, 2),
        "rss_mib": round(run.rss_kib() / 1024, 1),
    }


def phase_loaded_renewals(b: Bench) -> None:
    b.out.figures["renewal_during_resyncs"] = measure_renewals(b, "loaded renewal")


def phase_floor(b: Bench) -> None:
    b.stop()
    pki = b.cluster.pki
    spec = {
        "server": b.cluster.server,
        "kube_ca": str(pki.ca_cert),
        "admin_cert": str(pki.admin.cert),
        "admin_key": str(pki.admin.key),
        "kubeconfig": str(bind_operator_account(b.cluster)),
        "graph_url": b.graph.url,
        "tenant_id": TENANT,
        "client_id": CLIENT_ID,
        "namespace": NS,
        "name": "floor",
        "key_set_id": KEY_SET_PREFIX + key_set_id("floor"),
        "count": b.sizes.renewals + 1,  # the first warms up
    }
    env = {
        **os.environ,
        # The operator's own clients read the Graph emulator's CA from here, as in its pod.
        "SSL_CERT_FILE": str(b.graph.ca_file),
        "REQUESTS_CA_BUNDLE": str(b.graph.ca_file),
        "FLOOR_CLIENT_SECRET": b.graph.client_secret,
    }
    done = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("scale_floor.py"))],
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=600,
    )
    if done.returncode != 0:
        raise BenchFailed(f"the floor script failed: {done.stderr[-2000:]}")
    times = json.loads(done.stdout)
    floor: dict[str, Any] = latency(times["totals"])
    floor["steps_median_ms"] = {
        step: round(1000 * statistics.median(times["steps"][step]), 2) for step in STEPS
    }
    b.out.figures["renewal_floor"] = floor
    for phase in ("renewal_idle", "renewal_during_resyncs"):
        measured = b.out.figures.get(phase)
        if measured:
            measured["p99_to_floor_p99"] = round(measured["p99_ms"] / floor["p99_ms"], 2)
            measured["p50_to_floor_p50"] = round(measured["p50_ms"] / floor["p50_ms"], 2)


# --- main --------------------------------------------------------------------------------------


def parse_sizes(argv: Sequence[str]) -> tuple[Sizes, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="small sizes, for development")
    parser.add_argument("--keysets", type=int, help="N (default 1000)")
    parser.add_argument("--renewals", type=int, help="M renewals per measurement (default 100)")
    parser.add_argument("--unrelated-secrets", type=int, help="default 10000")
    parser.add_argument("--throttle-keysets", type=int, help="default 100")
    parser.add_argument("--write-rate", type=int, help="W writes per second (default 10)")
    parser.add_argument("--resync", type=float, help="steady-state resync, seconds (default 20)")
    parser.add_argument("--steady-resyncs", type=int, help="resyncs in the window (default 2)")
    parser.add_argument(
        "--phases",
        help="comma-separated subset, in order (setup always runs): "
        + ",".join(p.__name__[6:] for p in PHASES[1:]),
    )
    parser.add_argument(
        "--profile",
        type=Path,
        help="sample the operator with py-spy during the renewals into this directory",
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    args = parser.parse_args(list(argv))
    base = QUICK if args.quick else FULL
    sizes = Sizes(
        keysets=args.keysets or base.keysets,
        renewals=args.renewals or base.renewals,
        unrelated_secrets=args.unrelated_secrets
        if args.unrelated_secrets is not None
        else base.unrelated_secrets,
        throttle_keysets=args.throttle_keysets or base.throttle_keysets,
        write_rate=args.write_rate or base.write_rate,
        resync=args.resync or base.resync,
        steady_resyncs=args.steady_resyncs or base.steady_resyncs,
    )
    return sizes, args


PHASES = (
    phase_setup,
    phase_burst,
    phase_cold_start,
    phase_memory,
    phase_idle_renewals,
    phase_throttled,
    phase_steady,
    phase_loaded_renewals,
    phase_floor,
)


def run(
    sizes: Sizes,
    workdir: Path,
    out: Results,
    phases: Sequence[str] | None,
    profile_dir: Path | None,
) -> None:
    pool = generated_count(sizes.keysets) + generated_count(sizes.throttle_keysets)
    with (
        running_cluster(find_bin_dir(), workdir / "cluster") as cluster,
        graph_emulator(workdir, key_pool=pool) as graph,
    ):
        for path in sorted((ROOT / "crds").glob("*.yaml")):
            cluster.install_crds(path.read_text(encoding="utf-8"))
        with KeySetWatch(cluster) as watch, contextlib.closing(Kube(cluster)) as kube:
            bench = Bench(
                sizes,
                workdir,
                cluster,
                graph,
                kube,
                watch,
                GraphLog(graph),
                AuditTail(cluster),
                DevCA.create("b2ckeys scale CA", slot=102),
                out,
                profile_dir=profile_dir,
            )
            if profile_dir is not None:
                profile_dir.mkdir(parents=True, exist_ok=True)
            try:
                for phase in PHASES:
                    if phases and phase is not phase_setup and phase.__name__[6:] not in phases:
                        continue
                    started = time.perf_counter()
                    phase(bench)
                    out.figures.setdefault("phase_seconds", {})[phase.__name__[6:]] = round(
                        time.perf_counter() - started, 1
                    )
            finally:
                bench.stop()


def main(argv: Sequence[str]) -> int:
    sizes, args = parse_sizes(argv)
    (ROOT / ".cache").mkdir(exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="b2ckeys-bench-scale-"))
    out = Results()
    started = time.perf_counter()
    load_before = os.getloadavg()
    try:
        phases = args.phases.split(",") if args.phases else None
        run(sizes, workdir, out, phases, args.profile)
    except Exception as e:  # the figures so far still say something
        print(f"bench_scale failed: {e!r} (work directory kept: {workdir})", file=sys.stderr)
        print(json.dumps(out.figures, indent=2), file=sys.stderr)
        return 1
    out.figures["sizes"] = sizes.__dict__
    out.figures["machine"] = {
        "cpus": os.cpu_count(),
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    print(render(sizes, out.figures, out.problems))
    if args.json:
        print(json.dumps(out.figures, indent=2))
    if args.keep:
        print(f"\nwork directory kept: {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if out.problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
