"""A randomised fault soak: proves "never a duplicate key" and convergence under faults.

Real processes on loopback: the Graph emulator (the same `serve_graph_emulator` that
`b2ckeys graph-emulator` runs, plus a read-only inspector, see `serve_graph`), `b2ckeys
kube-emulator` and the operator `b2ckeys run`. Two key sets of every source kind (tlsSecret,
pkcs12Secret, certificate from a Secret and from a ConfigMap, secret, generate RSA and oct with
rotation.every) are rotated continuously while, at moments drawn from the seed:

- the operator is SIGKILLed and restarted, also with an upload held in flight by a latency fault
  (killed once `status.pendingWrite` shows the intent) and right after a `commit_then_drop`
  upload (killed once Graph's request log shows it committed), and a second operator process
  runs alongside for a while;
- Graph answers 429 with Retry-After, 503, drops the connection after committing an upload
  (`commit_then_drop` on every upload action), or is slow;
- the Kubernetes API answers 409/429/500/503 (kube-emulator `/_emulator/faults`).

Invariants, read from B2C (the emulator), never from the operator's status, checked every few
seconds and at the end: no certificate x5t and no secret value is in a key set twice (secret
values are told apart by an HMAC of the stored material, keyed per run, that only the inspector
computes); every key in B2C is a version the soak wrote into the source (generated keys: one
per rotation period); after the faults stop every key set is Ready with B2C's active key equal
to the source's within CONVERGENCE_BOUND; no canary (planted in every secret value and PKCS#12
password, plus a slice of every private key) in any log.

    .venv/bin/python benchmarks/soak.py [--minutes 2] [--seed N] [--keep]

The seed fixes every choice (which action, which key set, which fault, when); the machine's
timing decides the interleaving with the operator. Exit status 1 on any violation.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import dataclasses
import datetime as dt
import functools
import hashlib
import hmac
import itertools
import os
import random
import re
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from b2ckeys_emulators.devpki import DevCA, Issued, rsa_key
from b2ckeys_emulators.processes import StartFailed, b2ckeys_executable, listening

TENANT = "b2ckeys-soak.onmicrosoft.com"
CLIENT_ID = "50a50000-0000-4000-8000-0000000050a5"
WRITE_ROLE = "TrustFrameworkKeySet.ReadWrite.All"
NAMESPACE = "soak"
GROUP_VERSION = "b2ckeys.dev/v1alpha1"
KEYSETS = f"/apis/{GROUP_VERSION}/namespaces/{NAMESPACE}/trustframeworkkeysets"
WATCH_LABEL = {"b2ckeys.dev/watch": "true"}
MERGE_PATCH = {"Content-Type": "application/merge-patch+json"}
GRAPH_BANNER = "b2ckeys graph-emulator listening on"
DIGEST_KEY_ENV = "B2CKEYS_SOAK_DIGEST_KEY"
# After the last fault: a Retry-After (<= 3 s), the operator's error backoff (capped at 8 s
# below), a lost response's re-read delay (1 s), Kopf's watch restart and one resync (30 s) all
# fit well inside this. Measured convergence is printed; the bound is what fails the run.
CONVERGENCE_BOUND = 60.0
# How long an armed kill waits for its moment (an intent in status, a committed upload).
ARM_TIMEOUT = 20.0
CHECK_EVERY = 3.0
RECENT_REQUESTS = 50
# RSA keys behind the certificates: distinct certificates (distinct x5t) may share a key, and
# each 2048-bit key costs 50-500 ms to generate.
KEY_POOL = 4
GENERATE_EVERY = {"RSA": 30, "oct": 20}  # spec.rotation.every of the generate key sets, seconds
# Slack on "a generated key per rotation period": the operator requeues at nbf + every.
ROTATION_SLACK = 15
OPERATOR_ENV = {
    "B2CKEYS_RESYNC_INTERVAL": "30s",
    "B2CKEYS_ERROR_BACKOFF_MAX": "8s",
    "B2CKEYS_OUTCOME_UNKNOWN_DELAY": "1s",
    # Longer than any upload the soak (3 s) or its reproductions (10 s) hold inside Graph, so
    # a write left in flight by a killed operator is waited for, as in production (35 s).
    "B2CKEYS_WRITE_SETTLE_TIME": "12s",
    # Only read once leader election exists; short, so a killed leader is replaced quickly.
    "B2CKEYS_LEASE_DURATION": "4s",
    "B2CKEYS_RENEW_DEADLINE": "3s",
    "B2CKEYS_RETRY_PERIOD": "1s",
    "POD_NAMESPACE": NAMESPACE,
}
UPLOAD_ACTION = {
    "tlsSecret": "uploadPkcs12",
    "pkcs12Secret": "uploadPkcs12",
    "certificate": "uploadCertificate",
    "secret": "uploadSecret",
    "generate": "generateKey",
}
RETRYABLE = frozenset({409, 429, 500, 502, 503, 504})
GRAPH_FAULTS = (
    "429 Retry-After",
    "503",
    "latency",
    "token 503",
    *(f"commit_then_drop {action}" for action in sorted(set(UPLOAD_ACTION.values()))),
)
# (verb, resource, subresource, status) the operator meets: its status writes, its reads of
# Secrets, its list and watches, its Events.
KUBE_FAULTS: tuple[tuple[str, str, str | None, int], ...] = (
    ("patch", "trustframeworkkeysets", "status", 409),
    ("patch", "trustframeworkkeysets", "status", 500),
    ("get", "secrets", None, 500),
    ("get", "secrets", None, 429),
    ("list", "trustframeworkkeysets", None, 503),
    ("watch", "secrets", None, 500),
    ("create", "events", None, 500),
)


class SoakFailed(RuntimeError):
    pass


def x5t_of(issued: Issued) -> str:
    der = issued.certificate.public_bytes(serialization.Encoding.DER)
    return base64.urlsafe_b64encode(hashlib.sha1(der, usedforsecurity=False).digest()).decode()[:-1]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# --- the Graph emulator process, with an inspector ------------------------------------------


def serve_graph(argv: Sequence[str]) -> int:
    """`soak.py serve-graph`: the Graph emulator plus an inspector on a second loopback port.

    `GET /digests` maps key set id -> kid -> HMAC-SHA256(key from $B2CKEYS_SOAK_DIGEST_KEY,
    stored material) for uploaded secrets, so the soak can tell secret values apart without any
    route returning them; `GET /in-flight` maps key set id -> write handlers running on it now;
    `GET /recent` is the tail of the request log (polled often, unlike the whole log).
    """
    from aiohttp import web

    from b2ckeys_emulators.graph.identity import EmulatedApp
    from b2ckeys_emulators.graph.server import serve_graph_emulator

    parser = argparse.ArgumentParser(prog="soak.py serve-graph")
    parser.add_argument("--tls-dir", type=Path, required=True)
    parser.add_argument("--inspector-file", type=Path, required=True)
    args = parser.parse_args(list(argv))
    digest_key = bytes.fromhex(os.environ[DIGEST_KEY_ENV])
    client_secret = os.environ["AZURE_CLIENT_SECRET"]

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        app_registration = EmulatedApp(client_id=CLIENT_ID, secret=client_secret)
        async with serve_graph_emulator(
            tls_dir=args.tls_dir, tenant_id=TENANT, apps=[app_registration]
        ) as emu:

            async def digests(_: web.Request) -> web.Response:
                out: dict[str, dict[str, str]] = {}
                for key_set_id in emu.state.key_set_ids():
                    key_set = emu.state.key_set(key_set_id)
                    assert key_set is not None
                    out[key_set_id] = {
                        k.kid: hmac.new(digest_key, k.private.reveal(), "sha256").hexdigest()
                        for k in key_set.keys
                        if k.origin == "secret" and k.private is not None
                    }
                return web.json_response(out)

            async def in_flight(_: web.Request) -> web.Response:
                return web.json_response(emu.state.writes_in_flight())

            async def recent(_: web.Request) -> web.Response:
                records = emu.state.requests()[-RECENT_REQUESTS:]
                return web.json_response([dataclasses.asdict(r) for r in records])

            inspector = web.Application()
            inspector.add_routes(
                [
                    web.get("/digests", digests),
                    web.get("/in-flight", in_flight),
                    web.get("/recent", recent),
                ]
            )
            runner = web.AppRunner(inspector, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = runner.addresses[0][1]
            args.inspector_file.write_text(f"http://127.0.0.1:{port}")
            print(f"{GRAPH_BANNER} {emu.url}", flush=True)
            try:
                await stop.wait()
            finally:
                await runner.cleanup()

    asyncio.run(serve())
    return 0


# --- clients ---------------------------------------------------------------------------------


class Kube:
    """The soak's own Kubernetes calls; injected faults hit it too, so it retries them."""

    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=10.0)

    def send(self, method: str, path: str, **kwargs: Any) -> Any:
        for _ in range(50):
            response = self.http.request(method, path, **kwargs)
            if response.status_code not in RETRYABLE or (method == "POST" and "faults" in path):
                break
            time.sleep(0.05)
        if response.status_code >= 300:
            raise SoakFailed(f"{method} {path}: {response.status_code} {response.text[:300]}")
        return response.json() if response.content else None

    def close(self) -> None:
        self.http.close()

    def keysets(self) -> dict[str, dict[str, Any]]:
        items = self.send("GET", KEYSETS)["items"]
        return {i["metadata"]["name"]: i for i in items}


class Graph:
    def __init__(self, url: str, inspector_url: str, ca_file: Path) -> None:
        context = ssl.create_default_context(cafile=str(ca_file))
        self.http = httpx.Client(base_url=url, verify=context, timeout=30.0)
        self.inspector = httpx.Client(base_url=inspector_url, timeout=30.0)
        self.seen_requests: dict[str, dict[str, Any]] = {}

    def close(self) -> None:
        self.http.close()
        self.inspector.close()

    def key_sets(self) -> dict[str, dict[str, Any]]:
        response = self.http.get("/_emulator/keysets")
        response.raise_for_status()
        return {ks["id"]: ks for ks in response.json()["value"]}

    def digests(self) -> dict[str, dict[str, str]]:
        response = self.inspector.get("/digests")
        response.raise_for_status()
        found: dict[str, dict[str, str]] = response.json()
        return found

    def writes_in_flight(self) -> dict[str, int]:
        response = self.inspector.get("/in-flight")
        response.raise_for_status()
        found: dict[str, int] = response.json()
        return found

    def recent_requests(self) -> list[dict[str, Any]]:
        response = self.inspector.get("/recent")
        response.raise_for_status()
        found: list[dict[str, Any]] = response.json()
        return found

    def add_fault(self, fault: Mapping[str, Any]) -> None:
        self.http.post("/_emulator/faults", json=dict(fault)).raise_for_status()

    def clear_faults(self) -> None:
        self.http.delete("/_emulator/faults").raise_for_status()

    def collect_requests(self) -> list[dict[str, Any]]:
        """New request-log records since the last call (the log keeps 10,000; polled often)."""
        response = self.http.get("/_emulator/requests")
        response.raise_for_status()
        new = [r for r in response.json()["value"] if r["request_id"] not in self.seen_requests]
        for record in new:
            self.seen_requests[record["request_id"]] = record
        return new


# --- sources ---------------------------------------------------------------------------------


@dataclass
class Source:
    """One key set and what the soak wrote into its source, oldest first."""

    name: str
    kind: str
    kty: str = "RSA"
    versions: list[str] = field(default_factory=list)  # x5t, or the HMAC of a secret value
    created_at: float = 0.0

    @property
    def key_set_id(self) -> str:
        return "B2C_1A_Soak" + self.name.replace("-", "").title()

    @property
    def rotates_itself(self) -> bool:
        return self.kind == "generate"


class Sources:
    def __init__(self, kube: Kube, rng: random.Random, canary: str, digest_key: bytes) -> None:
        self.kube, self.rng, self.canary, self.digest_key = kube, rng, canary, digest_key
        self.ca = DevCA.create("b2ckeys soak CA")
        self.keys = [rsa_key(2048, 400 + i) for i in range(KEY_POOL)]
        # Every certificate's notBefore is one second after the previous one's: B2C makes the
        # key with the greatest notBefore active, so the newest version is the one it uses.
        self.not_before = dt.datetime.now(dt.UTC) - dt.timedelta(hours=6)
        self.secrets_planted: list[str] = []  # canaries: values and slices that must stay out
        self.all: list[Source] = []
        for kind, names in (
            ("tlsSecret", ["tls-a", "tls-b"]),
            ("pkcs12Secret", ["p12-a", "p12-b"]),
            ("certificate", ["cert-secret", "cert-configmap"]),
            ("secret", ["secret-a", "secret-b"]),
        ):
            self.all += [Source(n, kind) for n in names]
        self.all += [Source("gen-rsa", "generate", "RSA"), Source("gen-oct", "generate", "oct")]

    def digest(self, value: str) -> str:
        return hmac.new(self.digest_key, value.encode(), "sha256").hexdigest()

    def _issue(self, source: Source) -> Issued:
        self.not_before += dt.timedelta(seconds=1)
        key = self.keys[self.rng.randrange(KEY_POOL)]
        issued = self.ca.issue(f"soak {source.name}", key=key, not_before=self.not_before)
        pem = issued.key_pem.decode()
        middle = "".join(pem.splitlines()[1:-1])
        self.secrets_planted.append(middle[200:248])
        source.versions.append(x5t_of(issued))
        return issued

    def _data(self, source: Source) -> dict[str, bytes]:
        """The next version's Secret/ConfigMap data (recorded before it is written)."""
        if source.kind == "tlsSecret":
            return self.ca.tls_secret_data(self._issue(source))
        if source.kind == "pkcs12Secret":
            issued = self._issue(source)
            password = f"{self.canary}-pw-{self.rng.getrandbits(48):012x}"
            self.secrets_planted.append(password)
            pfx = pkcs12.serialize_key_and_certificates(
                b"soak",
                issued.key,
                issued.certificate,
                [self.ca.root.certificate],
                serialization.BestAvailableEncryption(password.encode()),
            )
            return {"keystore.p12": pfx, "password": password.encode()}
        if source.kind == "certificate":
            return {"tls.crt": self._issue(source).cert_pem}
        value = f"{self.canary}-{source.name}-{len(source.versions)}-{self.rng.getrandbits(64):x}"
        self.secrets_planted.append(value)
        source.versions.append(self.digest(value))
        return {"value": value.encode()}

    def _encoded(self, source: Source) -> dict[str, str]:
        """ConfigMaps hold text; Secrets base64."""
        data = self._data(source)
        if source.name == "cert-configmap":
            return {k: v.decode() for k, v in data.items()}
        return {k: b64(v) for k, v in data.items()}

    def _object_path(self, source: Source) -> str:
        plural = "configmaps" if source.name == "cert-configmap" else "secrets"
        return f"/api/v1/namespaces/{NAMESPACE}/{plural}"

    def create(self) -> None:
        self.kube.send(
            "POST",
            "/api/v1/namespaces",
            json={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        )
        for source in self.all:
            spec: dict[str, Any] = {"keySetId": source.key_set_id.removeprefix("B2C_1A_")}
            name = source.name
            if source.kind == "generate":
                spec["source"] = {"generate": {"kty": source.kty}}
                spec["rotation"] = {"every": f"{GENERATE_EVERY[source.kty]}s"}
            else:
                meta = {"name": name, "labels": dict(WATCH_LABEL)}
                obj: dict[str, Any] = {"apiVersion": "v1", "metadata": meta}
                obj["data"] = self._encoded(source)
                obj["kind"] = "ConfigMap" if name == "cert-configmap" else "Secret"
                if source.kind == "tlsSecret":
                    obj["type"] = "kubernetes.io/tls"
                reference = {
                    "tlsSecret": {"name": name},
                    "pkcs12Secret": {"name": name},
                    "certificate": {"configMapName": name}
                    if name == "cert-configmap"
                    else {"secretName": name},
                    "secret": {"name": name, "key": "value"},
                }[source.kind]
                spec["source"] = {source.kind: reference}
                self.kube.send("POST", self._object_path(source), json=obj)
            keyset = {
                "apiVersion": GROUP_VERSION,
                "kind": "TrustFrameworkKeySet",
                "metadata": {"name": name},
                "spec": spec,
            }
            self.kube.send("POST", KEYSETS, json=keyset)
            source.created_at = time.time()

    def rotate(self, source: Source) -> None:
        """What cert-manager (or a person) does: rewrite the data in place."""
        self.kube.send(
            "PATCH",
            f"{self._object_path(source)}/{source.name}",
            json={"data": self._encoded(source)},
            headers=MERGE_PATCH,
        )

    def rotatable(self) -> list[Source]:
        return [s for s in self.all if not s.rotates_itself]

    def by_name(self, name: str) -> Source:
        return next(s for s in self.all if s.name == name)


# --- operator processes ----------------------------------------------------------------------


class Operators:
    def __init__(self, workdir: Path, executable: str, env: Mapping[str, str]) -> None:
        self.workdir, self.executable, self.env = workdir, executable, dict(env)
        self.runs = 0
        self.primary: subprocess.Popen[str] | None = None
        self.second: subprocess.Popen[str] | None = None
        self.second_until = 0.0
        self.unexpected_exits: list[str] = []

    def _start(self) -> subprocess.Popen[str]:
        self.runs += 1
        log = self.workdir / f"operator-{self.runs}.log"
        env = {**self.env, "POD_NAME": f"soak-operator-{self.runs}"}
        with log.open("w") as sink:
            return subprocess.Popen(
                [self.executable, "run", "--namespace", NAMESPACE],
                stdout=sink,
                stderr=subprocess.STDOUT,
                env=env,
                text=True,
            )

    def start_primary(self) -> None:
        self.primary = self._start()

    def check_alive(self) -> None:
        """An operator that exits without being told to is a finding; restart it."""
        for role in ("primary", "second"):
            proc: subprocess.Popen[str] | None = getattr(self, role)
            if proc is not None and proc.poll() is not None:
                self.unexpected_exits.append(
                    f"{role} operator pid {proc.pid} exited {proc.returncode}"
                )
                setattr(self, role, None)
                if role == "primary":
                    self.start_primary()

    def kill_primary(self) -> None:
        if self.primary is not None:
            self.primary.kill()
            self.primary.wait()
        self.start_primary()

    def start_second(self, until: float) -> None:
        if self.second is None:
            self.second, self.second_until = self._start(), until

    def stop_second(self, *, kill: bool) -> None:
        if self.second is not None:
            if kill:
                self.second.kill()
            else:
                self.second.terminate()
            try:
                self.second.wait(15)
            except subprocess.TimeoutExpired:
                self.second.kill()
                self.second.wait()
            self.second = None

    def stop_all(self) -> None:
        self.stop_second(kill=False)
        if self.primary is not None:
            self.primary.terminate()
            try:
                self.primary.wait(15)
            except subprocess.TimeoutExpired:
                self.primary.kill()
                self.primary.wait()
            self.primary = None


# --- the soak --------------------------------------------------------------------------------


@dataclass
class Tally:
    faults: Counter[str] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)
    checks: int = 0
    convergence: float | None = None
    log_bytes_scanned: int = 0

    def violate(self, text: str) -> None:
        if text not in self.violations:
            self.violations.append(text)
            print(f"VIOLATION: {text}", flush=True)


def violations(
    sources: Sequence[Source],
    held: Mapping[str, Mapping[str, Any]],
    digests: Mapping[str, Mapping[str, str]],
    now: float,
) -> list[str]:
    """What B2C holds (`/_emulator/keysets` by id, the inspector's digests) that breaks "each
    version at most once, and only versions the sources had"."""
    expected = {s.key_set_id: s for s in sources}
    found = [f"B2C holds a key set nobody asked for: {i}" for i in held if i not in expected]
    for key_set_id, source in expected.items():
        keys = (held.get(key_set_id) or {}).get("keys") or []
        if source.kind == "generate":
            found += _generated_violations(source, keys, now)
            continue
        if source.kind == "secret":
            by_kid = digests.get(key_set_id, {})
            identities = [by_kid.get(k["kid"], "?") for k in keys]
        else:
            identities = [k.get("x5t") or "?" for k in keys]
        for identity, count in Counter(identities).items():
            if count > 1:
                found.append(
                    f"{key_set_id}: the same {source.kind} version ({identity[:12]}) is in B2C "
                    f"{count} times"
                )
            if identity not in source.versions:
                found.append(
                    f"{key_set_id}: a key ({identity[:12]}) no source version accounts for"
                )
    return found


def _generated_violations(
    source: Source, keys: Sequence[Mapping[str, Any]], now: float
) -> list[str]:
    """A generated key is accounted for by a rotation period: never two within one period."""
    every = GENERATE_EVERY[source.kty]
    found = []
    dates = sorted(int(k.get("nbf") or 0) for k in keys)
    for earlier, later in itertools.pairwise(dates):
        if later - earlier < every:
            found.append(
                f"{source.key_set_id}: two generated keys {later - earlier}s apart, inside one "
                f"rotation period ({every}s)"
            )
    periods = 1 + int((now - source.created_at) // every)
    if len(keys) > periods:
        found.append(
            f"{source.key_set_id}: {len(keys)} generated keys for {periods} rotation periods"
        )
    return found


def upload_path(source: Source) -> str:
    return re.escape(source.key_set_id) + r"[^/]*/" + UPLOAD_ACTION[source.kind] + "$"


class Soak:
    def __init__(
        self,
        rng: random.Random,
        kube: Kube,
        graph: Graph,
        sources: Sources,
        operators: Operators,
        workdir: Path,
        tally: Tally,
    ) -> None:
        self.rng, self.kube, self.graph, self.sources = rng, kube, graph, sources
        self.operators, self.workdir, self.tally = operators, workdir, tally
        self.last_check = 0.0
        self.started = time.time()

    # --- invariants ----------------------------------------------------------------------

    def check(self, *, final: bool = False) -> None:
        """No duplicate, nothing unaccounted for, no canary in a log."""
        self.tally.checks += 1
        self.graph.collect_requests()
        held, digests = self.graph.key_sets(), self.graph.digests()
        for problem in violations(self.sources.all, held, digests, time.time()):
            self.tally.violate(problem)
        self.scan_logs(final=final)

    def scan_logs(self, *, final: bool) -> None:
        if not final and time.time() - self.last_check < 10 * CHECK_EVERY:
            return
        self.last_check = time.time()
        needles = [self.sources.canary, *self.sources.secrets_planted]
        scanned = 0
        for log in sorted(self.workdir.glob("*.log")):
            text = log.read_text(errors="replace")
            scanned += len(text)
            for needle in needles:
                if needle in text:
                    self.tally.violate(f"a planted secret ({needle[:6]}…) appears in {log.name}")
        self.tally.log_bytes_scanned = scanned

    def converged(self) -> list[str]:
        """What still differs between each source and B2C (empty once converged)."""
        held, digests = self.graph.key_sets(), self.graph.digests()
        statuses = self.kube.keysets()
        waiting = []
        now = time.time()
        for source in self.sources.all:
            key_set = held.get(source.key_set_id) or {}
            active = next(
                (k for k in key_set.get("keys") or [] if k["kid"] == key_set.get("activeKid")), None
            )
            if active is None:
                waiting.append(f"{source.name}: no active key in B2C")
                continue
            if source.kind == "generate":
                fresh = (
                    now - int(active.get("nbf") or 0) < GENERATE_EVERY[source.kty] + ROTATION_SLACK
                )
                if active["kty"].lower() != source.kty.lower() or not fresh:
                    waiting.append(f"{source.name}: active generated key is stale")
            elif source.kind == "secret":
                if digests.get(source.key_set_id, {}).get(active["kid"]) != source.versions[-1]:
                    waiting.append(f"{source.name}: B2C's active secret is not the source's")
            elif active.get("x5t") != source.versions[-1]:
                waiting.append(f"{source.name}: B2C's active x5t is not the source's")
            status = (statuses.get(source.name) or {}).get("status") or {}
            ready = next((c for c in status.get("conditions") or [] if c["type"] == "Ready"), {})
            if ready.get("status") != "True":
                waiting.append(f"{source.name}: Ready={ready.get('status')} {ready.get('reason')}")
        return waiting

    # --- actions -------------------------------------------------------------------------

    def rotate(self) -> None:
        source = self.rng.choice(self.sources.rotatable())
        self.sources.rotate(source)

    def graph_fault(self, kind: str | None = None) -> None:
        kind = kind or self.rng.choice(GRAPH_FAULTS)
        times = self.rng.randint(1, 3)
        fault: dict[str, Any]
        if kind == "429 Retry-After":
            fault = {"path": "keySets", "status": 429, "retry_after": str(self.rng.randint(1, 3))}
        elif kind == "503":
            fault = {"path": "keySets", "status": 503}
        elif kind == "latency":
            fault = {"path": "keySets", "latency": round(self.rng.uniform(0.3, 2.5), 2)}
        elif kind == "token 503":
            fault = {"path": "oauth2/v2.0/token$", "status": 503}
        else:
            action = kind.split()[-1]
            fault, times = {"path": f"/{action}$", "commit_then_drop": True}, 1
        self.graph.add_fault({**fault, "times": times})
        self.tally.faults[f"graph {kind}"] += times

    def kube_fault(self, kind: tuple[str, str, str | None, int] | None = None) -> None:
        verb, resource, subresource, status = kind or self.rng.choice(KUBE_FAULTS)
        times = self.rng.randint(1, 3)
        fault = {"verb": verb, "resource": resource, "status": status, "times": times}
        if subresource:
            fault["subresource"] = subresource
        self.kube.send("POST", "/_emulator/faults", json=fault)
        target = f"{resource}/{subresource}" if subresource else resource
        self.tally.faults[f"kube {status} {verb} {target}"] += times

    def kill(self) -> None:
        self.operators.kill_primary()
        self.tally.faults["operator SIGKILL+restart"] += 1

    def _wait_for(self, check: Callable[[], bool]) -> bool:
        deadline = time.monotonic() + ARM_TIMEOUT
        while time.monotonic() < deadline:
            self.operators.check_alive()
            if check():
                return True
            time.sleep(0.05)
        return False

    def kill_mid_write(self) -> None:
        """Hold an upload inside Graph (latency) and SIGKILL the operator while it is held."""
        source = self.rng.choice(self.sources.rotatable())
        self.graph.add_fault({"path": upload_path(source), "latency": 3.0, "times": 1})
        self.sources.rotate(source)
        landed = self._wait_for(lambda: self.graph.writes_in_flight().get(source.key_set_id, 0) > 0)
        self.operators.kill_primary()
        missed = "" if landed else " (missed)"
        self.tally.faults[f"operator SIGKILL with an upload held in Graph{missed}"] += 1

    def kill_after_commit(self) -> None:
        """Commit an upload but drop its response, then SIGKILL before the status write."""
        source = self.rng.choice(self.sources.rotatable())
        self.graph.add_fault({"path": upload_path(source), "commit_then_drop": True, "times": 1})
        pattern = re.compile(upload_path(source))
        before = {r["request_id"] for r in self.graph.recent_requests()}
        self.sources.rotate(source)

        def committed() -> bool:
            return any(
                r.get("fault") == "commit_then_drop"
                and pattern.search(r["path"])
                and r["request_id"] not in before
                for r in self.graph.recent_requests()
            )

        landed = self._wait_for(committed)
        self.operators.kill_primary()
        self.tally.faults[
            f"operator SIGKILL after a committed, dropped upload{'' if landed else ' (missed)'}"
        ] += 1

    def second_operator(self) -> None:
        if self.operators.second is None:
            self.operators.start_second(time.monotonic() + self.rng.uniform(5, 20))
            self.tally.faults["second operator running alongside"] += 1

    ACTIONS: tuple[tuple[str, int], ...] = (
        ("rotate", 40),
        ("graph_fault", 18),
        ("kube_fault", 12),
        ("kill", 4),
        ("kill_mid_write", 4),
        ("kill_after_commit", 4),
        ("second_operator", 3),
    )

    def run(self, seconds: float) -> None:
        names = [name for name, _ in self.ACTIONS]
        # Every action and every fault kind once first (in seeded order), so that even a short
        # run meets each of them; then weighted random choices.
        opening: list[Callable[[], None]] = [getattr(self, n) for n in names if n != "rotate"]
        opening += [functools.partial(self.graph_fault, kind) for kind in GRAPH_FAULTS]
        opening += [functools.partial(self.kube_fault, kind) for kind in KUBE_FAULTS]
        self.rng.shuffle(opening)
        plan = [step for action in opening for step in (self.rotate, action)]
        deadline = time.monotonic() + seconds
        next_check = time.monotonic() + CHECK_EVERY
        while time.monotonic() < deadline:
            if plan:
                plan.pop(0)()
            else:
                weights = [w for _, w in self.ACTIONS]
                getattr(self, self.rng.choices(names, weights=weights)[0])()
            pause = self.rng.uniform(0.2, 1.4)
            end = time.monotonic() + pause
            while time.monotonic() < end:
                self.operators.check_alive()
                if self.operators.second and time.monotonic() > self.operators.second_until:
                    self.operators.stop_second(kill=self.rng.random() < 0.5)
                if time.monotonic() > next_check:
                    self.check()
                    next_check = time.monotonic() + CHECK_EVERY
                time.sleep(min(0.1, max(0.0, end - time.monotonic())))

    def settle(self) -> None:
        """Faults stop: clear them, one operator; then wait for convergence (bounded)."""
        self.graph.clear_faults()
        self.kube.send("DELETE", "/_emulator/faults")
        self.operators.stop_second(kill=False)
        self.operators.check_alive()
        started = time.monotonic()
        waiting: list[str] = []
        while time.monotonic() - started < CONVERGENCE_BOUND:
            self.operators.check_alive()
            waiting = self.converged()
            if not waiting:
                self.tally.convergence = time.monotonic() - started
                break
            time.sleep(0.25)
        else:
            for line in waiting:
                self.tally.violate(
                    f"not converged {CONVERGENCE_BOUND:.0f}s after faults stopped: {line}"
                )
        self.check(final=True)


# --- the whole run ---------------------------------------------------------------------------


@contextlib.contextmanager
def emulators(
    workdir: Path, executable: str, env: Mapping[str, str]
) -> Iterator[tuple[str, str, str, Path]]:
    """Both emulators as processes; yields (graph url, inspector url, kube url, kubeconfig)."""
    tls_dir, kubeconfig = workdir / "tls", workdir / "kubeconfig"
    inspector_file = workdir / "inspector-url"
    graph_argv = [
        sys.executable,
        str(Path(__file__).resolve()),
        "serve-graph",
        "--tls-dir",
        str(tls_dir),
        "--inspector-file",
        str(inspector_file),
    ]
    kube_argv = [executable, "kube-emulator", "--port", "0", "--kubeconfig", str(kubeconfig)]
    pipes: list[IO[str]] = []
    try:
        with (
            listening(graph_argv, workdir / "graph-emulator.log", env, GRAPH_BANNER) as (
                graph_url,
                graph_proc,
            ),
            listening(
                kube_argv, workdir / "kube-emulator.log", env, "b2ckeys kube-emulator listening on"
            ) as (kube_url, kube_proc),
        ):
            pipes += [p for p in (graph_proc.stdout, kube_proc.stdout) if p is not None]
            yield graph_url, inspector_file.read_text().strip(), kube_url, kubeconfig
    finally:
        for pipe in pipes:  # their processes have exited: nothing more to copy
            pipe.close()


def report(seed: int, seconds: float, tally: Tally, sources: Sources, graph: Graph) -> str:
    held = graph.key_sets()
    lines = [
        "",
        f"soak seed {seed}: {seconds:.0f} s of faults, {len(sources.all)} key sets",
        "",
        "faults injected",
        *(f"  {count:5d}  {kind}" for kind, count in sorted(tally.faults.items())),
        "",
        "uploads in B2C vs source changes (per source kind)",
    ]
    for kind in ("tlsSecret", "pkcs12Secret", "certificate", "secret", "generate"):
        group = [s for s in sources.all if s.kind == kind]
        keys = sum(len((held.get(s.key_set_id) or {}).get("keys") or []) for s in group)
        if kind == "generate":
            periods = sum(
                1 + int((time.time() - s.created_at) // GENERATE_EVERY[s.kty]) for s in group
            )
            lines.append(f"  {kind:<13} {keys:4d} keys for {periods:4d} rotation periods begun")
        else:
            changes = sum(len(s.versions) for s in group)
            lines.append(f"  {kind:<13} {keys:4d} keys for {changes:4d} versions written")
    records = list(graph.seen_requests.values())
    writes = [r for r in records if r["method"] != "GET" and r["path"].startswith("/beta/")]
    by_status = Counter(str(r["status"]) for r in writes)
    lines += [
        f"  Graph write requests: {len(writes)} "
        f"({', '.join(f'{n} x {s}' for s, n in sorted(by_status.items()))})",
        "",
        "convergence after the faults stopped: "
        + (f"{tally.convergence:.1f} s" if tally.convergence is not None else "NOT REACHED")
        + f" (bound {CONVERGENCE_BOUND:.0f} s)",
        f"invariant checks: {tally.checks}; log bytes scanned for canaries: "
        f"{tally.log_bytes_scanned}",
        f"violations: {len(tally.violations)}",
        *(f"  - {v}" for v in tally.violations),
    ]
    return "\n".join(lines)


@dataclass
class Stack:
    """Both emulators running, clients for them, and the operator processes to start."""

    kube: Kube
    graph: Graph
    operators: Operators
    digest_key: bytes


@contextlib.contextmanager
def stack(workdir: Path, executable: str) -> Iterator[Stack]:
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "B2CKEYS_"))}
    digest_key = secrets.token_bytes(32)
    client_secret = "soak-" + secrets.token_urlsafe(16)
    emulator_env = {
        **base_env,
        DIGEST_KEY_ENV: digest_key.hex(),
        "AZURE_CLIENT_SECRET": client_secret,
    }
    with emulators(workdir, executable, emulator_env) as (
        graph_url,
        inspector_url,
        kube_url,
        kubeconfig,
    ):
        ca_file = workdir / "tls" / "ca.pem"
        operator_env = {
            **base_env,
            **OPERATOR_ENV,
            "KUBECONFIG": str(kubeconfig),
            "AZURE_TENANT_ID": TENANT,
            "AZURE_CLIENT_ID": CLIENT_ID,
            "AZURE_CLIENT_SECRET": client_secret,
            "AZURE_AUTHORITY_HOST": graph_url,
            "B2CKEYS_GRAPH_BASE_URL": graph_url.rstrip("/") + "/beta",
            "SSL_CERT_FILE": str(ca_file),
            "REQUESTS_CA_BUNDLE": str(ca_file),
        }
        operators = Operators(workdir, executable, operator_env)
        kube, graph = Kube(kube_url), Graph(graph_url, inspector_url, ca_file)
        try:
            yield Stack(kube, graph, operators, digest_key)
        finally:
            operators.stop_all()
            kube.close()
            graph.close()


def soak(seed: int, seconds: float, workdir: Path, executable: str) -> int:
    print(
        f"soak seed {seed} (reproduce: benchmarks/soak.py --seed {seed} --seconds {seconds:.0f})",
        flush=True,
    )
    rng = random.Random(seed)  # noqa: S311  (reproducible choices, not cryptography)
    tally = Tally()
    with stack(workdir, executable) as running:
        canary = "SOAKCANARY" + secrets.token_hex(6)
        sources = Sources(running.kube, rng, canary, running.digest_key)
        run = Soak(rng, running.kube, running.graph, sources, running.operators, workdir, tally)
        try:
            sources.create()
            running.operators.start_primary()
            run.run(seconds)
            run.settle()
        finally:
            running.operators.stop_all()
        tally.violations += running.operators.unexpected_exits
        run.scan_logs(final=True)
        print(report(seed, seconds, tally, sources, running.graph), flush=True)
    return 1 if tally.violations else 0


def main(argv: Sequence[str]) -> int:
    if argv and argv[0] == "serve-graph":
        return serve_graph(argv[1:])
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--minutes", type=float, default=2.0, help="how long faults are injected")
    parser.add_argument("--seconds", type=float, help="the same in seconds (overrides --minutes)")
    parser.add_argument("--seed", type=int, default=None, help="default: a fresh one, printed")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    parser.add_argument("--b2ckeys", default=b2ckeys_executable(), help="the b2ckeys executable")
    args = parser.parse_args(list(argv))
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    seconds = args.seconds if args.seconds is not None else args.minutes * 60
    workdir = Path(tempfile.mkdtemp(prefix="b2ckeys-soak-"))
    status = 1
    try:
        status = soak(seed, seconds, workdir, args.b2ckeys)
    except (SoakFailed, StartFailed, httpx.HTTPError) as e:
        print(f"soak failed: {e}", file=sys.stderr)
    finally:
        if args.keep or status:
            print(f"work directory kept: {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
