"""Run the real operator against the two emulators, and talk to both as a user would.

The emulators run in one background thread with its own event loop (for the whole session);
each test gets its own namespace, a reset Graph emulator, and a fresh operator: Kopf in its own
thread and loop, with the real msgraph-beta client and azure-identity credential, exactly what
`b2ckeys run` builds, configured through a Settings value instead of the environment.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import ssl
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import httpx
import kopf

from b2ckeys.graph.client import GraphConnection
from b2ckeys.secret import SecretStr
from b2ckeys.settings import API_GROUP, API_VERSION, KEYSET_PLURAL, Settings

T = TypeVar("T")
KEYSETS = f"/apis/{API_GROUP}/{API_VERSION}/namespaces/{{ns}}/{KEYSET_PLURAL}"
WAIT_TIMEOUT = 15.0  # generous for a loaded 2-core CI machine; tests poll, never sleep-and-hope


class BackgroundLoop:
    """An event loop in a daemon thread, for servers that outlive one test's loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="emulators", daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=60)

    def enter(self, manager: contextlib.AbstractAsyncContextManager[T]) -> T:
        return self.run(manager.__aenter__())

    def exit(self, manager: contextlib.AbstractAsyncContextManager[Any]) -> None:
        self.run(manager.__aexit__(None, None, None))

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)


async def wait_for(
    what: str, probe: Callable[[], Coroutine[Any, Any, T | None]], within: float = WAIT_TIMEOUT
) -> T:
    """Poll `probe` until it returns something truthy; fail with `what` and the last value."""
    deadline = time.monotonic() + within
    last: T | None = None
    while time.monotonic() < deadline:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out after {within}s waiting for {what}; last seen: {last!r}")


def ready(obj: Mapping[str, Any] | None) -> dict[str, Any]:
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return dict(cond)
    return {}


@dataclass
class Kube:
    """The Kubernetes API as a user (kubectl) sees it, over HTTP to the kube-emulator."""

    http: httpx.AsyncClient
    namespace: str

    async def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        obj.setdefault("metadata", {}).setdefault("namespace", self.namespace)
        response = await self.http.post(self._collection(obj), json=obj)
        assert response.status_code < 300, response.text
        return dict(response.json())

    async def patch(self, obj: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
        response = await self.http.patch(
            f"{self._collection(obj)}/{obj['metadata']['name']}",
            json=patch,
            headers={"Content-Type": "application/merge-patch+json"},
        )
        assert response.status_code < 300, response.text
        return dict(response.json())

    async def delete(self, obj: Mapping[str, Any]) -> None:
        response = await self.http.delete(f"{self._collection(obj)}/{obj['metadata']['name']}")
        assert response.status_code in (200, 202, 404), response.text

    async def get(self, obj: Mapping[str, Any]) -> dict[str, Any] | None:
        response = await self.http.get(f"{self._collection(obj)}/{obj['metadata']['name']}")
        return None if response.status_code == 404 else dict(response.json())

    async def keyset(self, name: str) -> dict[str, Any] | None:
        response = await self.http.get(f"{KEYSETS.format(ns=self.namespace)}/{name}")
        return None if response.status_code == 404 else dict(response.json())

    async def events(self) -> list[dict[str, Any]]:
        response = await self.http.get(f"/api/v1/namespaces/{self.namespace}/events")
        return list(response.json().get("items") or [])

    async def wait_keyset(
        self,
        name: str,
        check: Callable[[dict[str, Any]], bool],
        what: str = "",
        within: float = WAIT_TIMEOUT,
    ) -> dict[str, Any]:
        seen: list[dict[str, Any] | None] = [None]

        async def probe() -> dict[str, Any] | None:
            obj = seen[0] = await self.keyset(name)
            return obj if obj is not None and check(obj) else None

        try:
            return await wait_for(what or f"{name} to match", probe, within)
        except AssertionError as e:
            status = (seen[0] or {}).get("status")
            raise AssertionError(f"{e}; its status: {status}") from None

    async def wait_reason(
        self, name: str, reason: str, within: float = WAIT_TIMEOUT
    ) -> dict[str, Any]:
        return await self.wait_keyset(
            name,
            lambda o: (
                ready(o).get("reason") == reason
                and (o.get("status") or {}).get("observedGeneration")
                == o["metadata"].get("generation")
            ),
            f"{name} Ready reason {reason}",
            within,
        )

    def _collection(self, obj: Mapping[str, Any]) -> str:
        api, kind = obj.get("apiVersion", "v1"), obj["kind"]
        ns = (obj.get("metadata") or {}).get("namespace") or self.namespace
        plural = {
            "Secret": "secrets",
            "ConfigMap": "configmaps",
            "Namespace": "namespaces",
            "B2CTenant": "b2ctenants",
            "ClusterB2CTenant": "clusterb2ctenants",
        }.get(kind, KEYSET_PLURAL)
        base = f"/api/{api}" if "/" not in api else f"/apis/{api}"
        if kind in ("ClusterB2CTenant", "Namespace"):
            return f"{base}/{plural}"
        return f"{base}/namespaces/{ns}/{plural}"


@dataclass
class Graph:
    """The Graph emulator's control routes: what B2C holds, the request log, faults, clock."""

    http: httpx.AsyncClient

    async def key_sets(self) -> dict[str, dict[str, Any]]:
        data = (await self.http.get("/_emulator/keysets")).json()
        return {ks["id"]: ks for ks in data.get("keySets", data.get("value", []))}

    async def keys(self, key_set_id: str) -> list[dict[str, Any]]:
        return list((await self.key_sets()).get(key_set_id, {}).get("keys") or [])

    async def requests(self) -> list[dict[str, Any]]:
        return list((await self.http.get("/_emulator/requests")).json()["value"])

    async def writes(self) -> list[str]:
        return [
            f"{r['method']} {r['path']}"
            for r in await self.requests()
            if r["method"] in ("POST", "PUT", "PATCH", "DELETE") and r["path"].startswith("/beta/")
        ]

    async def fault(self, **fault: Any) -> None:
        response = await self.http.post("/_emulator/faults", json=fault)
        assert response.status_code < 300, response.text

    async def advance_clock(self, seconds: float) -> None:
        response = await self.http.post("/_emulator/clock", json={"advance": seconds})
        assert response.status_code < 300, response.text

    async def delete_key_set(
        self, key_set_id: str, client_id: str, secret: str, tenant: str
    ) -> None:
        """Delete a key set through Graph itself, as an admin in the portal would."""
        token = await self.http.post(
            f"/{tenant}/oauth2/v2.0/token",
            data={
                "grant_type": "client_credentials",
                "client_id": client_id,
                "client_secret": secret,
                "scope": "https://graph.microsoft.com/.default",
            },
        )
        assert token.status_code == 200, token.text
        response = await self.http.delete(
            f"/beta/trustFramework/keySets/{key_set_id}",
            headers={"Authorization": f"Bearer {token.json()['access_token']}"},
        )
        assert response.status_code == 204, response.text

    async def reset(self) -> None:
        response = await self.http.post("/_emulator/reset")
        assert response.status_code < 300, response.text


def secret(
    name: str, data: Mapping[str, bytes], *, labelled: bool = True, type_: str = "Opaque"
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": type_,
        "metadata": {"name": name, "labels": {"b2ckeys.dev/watch": "true"} if labelled else {}},
        "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
    }


def keyset(name: str, key_set_id: str, source: Mapping[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": "TrustFrameworkKeySet",
        "metadata": {"name": name},
        "spec": {"keySetId": key_set_id, "source": dict(source), **spec},
    }


@dataclass
class OperatorThread:
    """`kopf.operator` in its own thread and loop, stopped gracefully through its stop flag."""

    settings: Settings
    namespaces: list[str]
    stop_flag: threading.Event = field(default_factory=threading.Event)
    ready_flag: threading.Event = field(default_factory=threading.Event)
    errors: list[BaseException] = field(default_factory=list)
    memo: kopf.Memo = field(default_factory=kopf.Memo)  # memo["runtime"] once started
    _thread: threading.Thread | None = None

    def start(self) -> None:
        import b2ckeys.handlers  # noqa: F401  (registers with Kopf's default registry)

        self.memo["settings"] = self.settings

        def main() -> None:
            try:
                asyncio.run(
                    kopf.operator(
                        registry=kopf.get_default_registry(),
                        namespaces=self.namespaces,
                        standalone=True,
                        memo=self.memo,
                        stop_flag=self.stop_flag,
                        ready_flag=self.ready_flag,
                    )
                )
            except BaseException as e:  # surfaced by the fixture
                self.errors.append(e)

        # Named after the replica, so a log record says which of two operators wrote it.
        name = f"operator {self.settings.pod_name}" if self.settings.pod_name else "operator"
        self._thread = threading.Thread(target=main, name=name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.stop_flag.set()
        if self._thread is not None:
            self._thread.join(15)
            assert not self._thread.is_alive(), "the operator did not stop within 15 s"


def fast(settings: Settings, **overrides: Any) -> Settings:
    """Test timings: the same code paths as production, on a compressed clock."""
    values: dict[str, Any] = {
        "resync_interval": 30.0,
        "activation_poll_interval": 0.2,
        "error_backoff_initial": 0.05,
        "error_backoff_max": 0.5,
        "delete_timeout": 2.0,
        "outcome_unknown_delay": 0.2,
        # Nothing here holds a write inside Graph for longer; tests/soak does, with its own.
        "write_settle_time": 1.0,
        # Leader election on, as in production, on a compressed clock (client-go's ratios).
        "lease_duration": 4.0,
        "renew_deadline": 3.0,
        "retry_period": 0.5,
        # Several operators may run in this one process: each on a port of its own.
        "metrics_address": "127.0.0.1:0",
    }
    values.update(overrides)
    return replace(settings, **values)


@contextlib.asynccontextmanager
async def clients(
    kube_url: str, graph_url: str, ca: Path, namespace: str
) -> AsyncIterator[tuple[Kube, Graph]]:
    async with (
        httpx.AsyncClient(base_url=kube_url, timeout=10) as kube_http,
        httpx.AsyncClient(
            base_url=graph_url, verify=ssl.create_default_context(cafile=str(ca)), timeout=10
        ) as graph_http,
    ):
        yield Kube(kube_http, namespace), Graph(graph_http)


@contextlib.contextmanager
def running(operator: OperatorThread) -> Iterator[OperatorThread]:
    operator.start()
    try:
        yield operator
    finally:
        operator.stop()


TENANT = "b2ckeys-test.onmicrosoft.com"
CLIENT_ID = "0b2c0000-0000-4000-8000-000000000001"
CLIENT_SECRET = "operator-test-secret-" + uuid.uuid4().hex
READONLY_CLIENT_ID = "0b2c0000-0000-4000-8000-000000000002"
READONLY_SECRET = "reader-test-secret-" + uuid.uuid4().hex


@dataclass(frozen=True)
class Servers:
    kube_url: str
    kubeconfig: Path
    graph_url: str
    ca_path: Path

    def settings(self, **overrides: Any) -> Settings:
        secret = overrides.pop("client_secret", CLIENT_SECRET)
        client_id = overrides.pop("client_id", CLIENT_ID)
        graph = GraphConnection(
            tenant_id=TENANT,
            client_id=client_id,
            client_secret=SecretStr(secret),
            authority_host=self.graph_url,
            base_url=self.graph_url + "/beta",
        )
        return fast(Settings(graph=graph, kubeconfig=str(self.kubeconfig)), **overrides)


class LogCapture(logging.Handler):
    """Every record of the whole process, formatted with its exception, for canary checks."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@dataclass
class OperatorControl:
    servers: Servers
    namespace: str
    current: OperatorThread | None = None

    async def start(self, *, also: Sequence[str] = (), **settings: Any) -> OperatorThread:
        """Serve the test's namespace (and the namespaces in `also`) with these settings."""
        import asyncio

        assert self.current is None, "stop the running operator first"
        settings.setdefault("operator_namespace", self.namespace)  # each test elects on its own
        namespaces = [self.namespace, *also]
        operator = OperatorThread(self.servers.settings(**settings), namespaces)
        operator.start()
        self.current = operator
        # Kopf's ready flag is set before its watch streams exist; the operator is listening
        # once it has served its startup (the Graph warm-up included).
        await asyncio.to_thread(operator.ready_flag.wait, 60)
        assert not operator.errors, operator.errors
        return operator

    def stop(self) -> None:
        if self.current is not None:
            self.current.stop()
            errors, self.current = self.current.errors, None
            assert not errors, errors
