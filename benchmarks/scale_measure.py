"""What bench_scale.py creates and how it turns observations into figures: the key set mix,
"every key set checked" from Graph's request log, renewal timing on the key set watch, and the
statistics."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import itertools
import secrets
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import serialization

from b2ckeys_emulators.devpki import DevCA, Issued, rsa_key
from scale_stack import (
    BenchFailed,
    GraphLog,
    KeySetWatch,
    Kube,
    OperatorRun,
    graph_kind,
    keyset,
    secret,
)

NS = "scale"
# RSA keys behind the TLS Secrets: distinct certificates (distinct x5t) need not mean distinct
# keys, and each 2048-bit key costs ~50 ms to make.
CERT_KEYS = 4


# --- helpers -----------------------------------------------------------------------------------


def pct(samples: Sequence[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def latency(samples: Sequence[float]) -> dict[str, float]:
    return {
        "n": len(samples),
        "p50_ms": round(1000 * pct(samples, 0.5), 1),
        "p95_ms": round(1000 * pct(samples, 0.95), 1),
        "p99_ms": round(1000 * pct(samples, 0.99), 1),
        "mean_ms": round(1000 * statistics.fmean(samples), 1),
    }


def counts_by_kind(records: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """Graph requests: reads (of which getActiveKey), writes, token requests."""
    counts = {"read": 0, "getActiveKey": 0, "write": 0, "token": 0}
    for record in records:
        kind = graph_kind(record)
        if kind in counts:
            counts[kind] += 1
        if kind == "read" and "getActiveKey" in str(record["path"]):
            counts["getActiveKey"] += 1
    return counts


def reads_per_resync(records: Sequence[Mapping[str, Any]], resync: float) -> dict[str, Any]:
    """Graph reads per key set per resync pass, without the window's edge effects.

    Each GET of a key set starts a pass; a GET of the same key set sooner than half a resync
    after the previous one is an extra read, and so is every getActiveKey. Reads per pass is
    (passes + extras) / passes: exactly 1 when every pass reads once.
    """
    reads: dict[str, list[float]] = {}
    active_key = 0
    active_key_sets: set[str] = set()
    for record in records:
        path = str(record["path"])
        if graph_kind(record) != "read" or "/keySets/" not in path:
            continue
        key_set = path.split("/keySets/", 1)[1].split("/", 1)[0]
        if "getActiveKey" in path:
            active_key += 1
            active_key_sets.add(key_set)
            continue
        reads.setdefault(key_set, []).append(float(record["time"]))
    early = 0
    for times in reads.values():
        ordered = sorted(times)
        early += sum(1 for a, b in itertools.pairwise(ordered) if b - a < resync / 2)
    gets = sum(len(t) for t in reads.values())
    passes = gets - early
    return {
        "keysets_read": len(reads),
        "passes": passes,
        "extra_gets": early,
        "getActiveKey": active_key,
        "getActiveKey_keysets": sorted(active_key_sets),
        "reads_per_keyset_per_resync": round((gets + active_key) / passes, 3) if passes else None,
    }


def key_set_id(name: str) -> str:
    return "Scale" + name.replace("-", "")


def workload(ca: DevCA, names: Sequence[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Secrets and key sets: half tlsSecret, a quarter generate, a quarter string secret."""
    secrets_, keysets = [], []
    for index, name in enumerate(names):
        kind = index % 4
        if kind in (0, 1):
            leaf = ca.issue(name, key=rsa_key(2048, 300 + index % CERT_KEYS))
            secrets_.append(secret(name, ca.tls_secret_data(leaf), type_="kubernetes.io/tls"))
            source: dict[str, Any] = {"tlsSecret": {"name": name}}
        elif kind == 2:
            source = {"generate": {"kty": "RSA"}}
        else:
            secrets_.append(secret(name, {"k": secrets.token_urlsafe(32).encode()}))
            source = {"secret": {"name": name, "key": "k"}}
        keysets.append(keyset(name, key_set_id(name), source))
    return secrets_, keysets


def generated_count(keysets: int) -> int:
    """How many of `keysets` from workload() use generateKey (each takes a pooled RSA key)."""
    return sum(1 for index in range(keysets) if index % 4 == 2)


def wait_checked(
    graph_log: GraphLog, ids: set[str], since_wall: float, run: OperatorRun, timeout: float
) -> tuple[float, list[dict[str, Any]]]:
    """Seconds from `since_wall` until every key set in `ids` was read from B2C at least once
    (the operator has looked at each), and the requests up to then."""
    deadline = time.monotonic() + timeout
    while True:
        run.check_alive()
        records = graph_log.new()
        first_read: dict[str, float] = {}
        for record in records:
            path = str(record["path"])
            if record["method"] == "GET" and "/keySets/" in path:
                found = path.split("/keySets/", 1)[1].split("/", 1)[0]
                if found in ids and found not in first_read:
                    first_read[found] = float(record["time"])
        if len(first_read) == len(ids):
            return max(first_read.values()) - since_wall, records
        if time.monotonic() > deadline:
            raise BenchFailed(
                f"after {timeout:.0f}s the operator had read {len(first_read)} of {len(ids)} "
                "key sets"
            )
        time.sleep(1.0)


@dataclass(frozen=True)
class Renewal:
    seconds: float  # Secret PATCH sent -> the watch delivered the new status.syncedKey.x5t
    sent_wall: float  # time.time() when the PATCH was sent
    seen_wall: float  # time.time() when the watch event arrived


def renewals(
    kube: Kube, watch: KeySetWatch, leaves: Sequence[Issued], ca: DevCA, name: str
) -> list[Renewal]:
    """Patch the TLS Secret `name` with each leaf in turn; until status shows its x5t."""
    samples = []
    for leaf in leaves:
        expected = _x5t(leaf)
        sent_wall, started = time.time(), time.perf_counter()
        kube.patch_secret_data(NS, name, ca.tls_secret_data(leaf))
        watch.wait(
            f"{name} to show x5t {expected}",
            lambda views, want=expected: (
                views.get((NS, name), None) is not None and views[(NS, name)].x5t == want
            ),
            60.0,
        )
        arrived = watch.view((NS, name)).x5t_at
        assert arrived is not None
        samples.append(Renewal(arrived - started, sent_wall, sent_wall + arrived - started))
    return samples


def renewal_timeline(
    samples: Sequence[Renewal],
    audit: Sequence[Mapping[str, Any]],
    graph: Sequence[Mapping[str, Any]],
    operator_user: str,
    name: str,
) -> dict[str, Any]:
    """Where a renewal's milliseconds go: the operator's requests to the API server (audit log)
    and to Graph (its request log) between the Secret PATCH and the watch delivering the new
    status, in order; the median gap before each step, over the renewals that took the most
    common sequence of steps."""
    calls: list[tuple[float, float, str]] = []  # (sent, answered, label)
    for event in audit:
        ref = event.get("objectRef") or {}
        user = (event.get("user") or {}).get("username")
        if user != operator_user or ref.get("name") != name or ref.get("namespace") != NS:
            continue
        resource = ref.get("resource", "?") + (
            "/" + ref["subresource"] if ref.get("subresource") else ""
        )
        sent = _epoch(event["requestReceivedTimestamp"])
        answered = _epoch(event.get("stageTimestamp") or event["requestReceivedTimestamp"])
        calls.append((sent, answered, f"kube {event.get('verb')} {resource}"))
    for record in graph:
        path = str(record["path"])
        if "/keySets/" not in path:
            continue
        tail = path.split("/keySets/", 1)[1].split("/", 1)
        action = tail[1] if len(tail) > 1 else "key set"
        sent = float(record["time"])
        calls.append(
            (sent, sent + float(record["duration_ms"]) / 1000, f"graph {record['method']} {action}")
        )
    calls.sort()
    sequences: dict[tuple[str, ...], list[list[float]]] = {}
    for sample in samples:
        inside = [c for c in calls if sample.sent_wall <= c[0] <= sample.seen_wall]
        labels = (*(label for _, _, label in inside), "watch delivers status")
        moments = [sample.sent_wall]
        for sent, answered, _ in inside:
            moments += [sent, answered]
        moments.append(sample.seen_wall)
        sequences.setdefault(labels, []).append(moments)
    if not sequences:
        return {}
    labels, runs = max(sequences.items(), key=lambda item: len(item[1]))
    steps: dict[str, float] = {}
    # Gap before each call (waiting: watch delivery, queueing, the operator's own work), then
    # the call itself (the server's answer time as the client saw it, roughly).
    for index, label in enumerate(labels):
        before = statistics.median(run[2 * index + 1] - run[2 * index] for run in runs)
        steps[f"{index + 1:02d} before {label}"] = round(1000 * before, 2)
        if index < len(labels) - 1:
            during = statistics.median(run[2 * index + 2] - run[2 * index + 1] for run in runs)
            steps[f"{index + 1:02d} {label}"] = round(1000 * during, 2)
    return {"renewals": len(runs), "of": len(samples), "median_ms": steps}


def _epoch(timestamp: str) -> float:
    return dt.datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def _x5t(leaf: Issued) -> str:
    der = leaf.certificate.public_bytes(serialization.Encoding.DER)
    digest = hashlib.sha1(der, usedforsecurity=False).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def issue_leaves(ca: DevCA, prefix: str, count: int) -> list[Issued]:
    return [ca.issue(f"{prefix} {i}", key=rsa_key(2048, 310 + i % 6)) for i in range(count)]


def max_per_second(times: Sequence[float]) -> int:
    """The most events inside any one-second window (sliding)."""
    ordered, best, start = sorted(times), 0, 0
    for end, moment in enumerate(ordered):
        while moment - ordered[start] >= 1.0:
            start += 1
        best = max(best, end - start + 1)
    return best
