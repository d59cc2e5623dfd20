"""An API server that does not answer (restarting, refusing connections) is an ordinary failure.

Found by the cluster tier: while kube-apiserver restarted, a reconcile in flight raised urllib3's
MaxRetryError out of the storage layer; the work queue's last line of defence logged a traceback
and retried the key set only after 60 s, instead of on the bounded error backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml

from b2ckeys.controller import Controller
from b2ckeys.graph.client import GraphConnection, TenantClient
from b2ckeys.kube.api import KubeApi, KubeError, Unreachable
from b2ckeys.model import ObjectKey
from b2ckeys.reconcile import Reconciler
from b2ckeys.settings import Settings
from b2ckeys.tenant_access import TenantClients

BACKOFF_INITIAL, BACKOFF_MAX = 0.5, 4.0


def closed_port() -> int:
    """A loopback port nothing listens on: connections to it are refused at once."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def kubeconfig(tmp_path: Path) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {"name": "gone", "cluster": {"server": f"http://127.0.0.1:{closed_port()}"}}
                ],
                "users": [{"name": "u", "user": {"token": "not-a-real-token"}}],
                "contexts": [{"name": "c", "context": {"cluster": "gone", "user": "u"}}],
                "current-context": "c",
            }
        ),
        encoding="utf-8",
    )
    return path


@pytest.fixture
async def kube(kubeconfig: Path) -> AsyncIterator[KubeApi]:
    api = KubeApi.connect(str(kubeconfig))
    try:
        yield api
    finally:
        api.close()


def _never_connects(_: GraphConnection) -> TenantClient:
    raise AssertionError("no key set reaches Graph while the API server is down")


async def test_a_refused_connection_is_a_kube_error_naming_the_request(kube: KubeApi) -> None:
    with pytest.raises(Unreachable) as raised:
        await kube.read_keyset("identity", "token-signing")

    assert isinstance(raised.value, KubeError)
    assert "/namespaces/identity/trustframeworkkeysets/token-signing" in str(raised.value)


async def test_the_controller_retries_on_the_bounded_backoff(
    kube: KubeApi, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(error_backoff_initial=BACKOFF_INITIAL, error_backoff_max=BACKOFF_MAX)
    tenants = TenantClients(settings, kube, None, connect=_never_connects)
    controller = Controller(Reconciler(settings, kube, tenants, clock=time.time), settings)
    key = ObjectKey("identity", "token-signing")
    body = {
        "metadata": {"namespace": key.namespace, "name": key.name, "generation": 1},
        "spec": {"keySetId": "TokenSigning", "source": {"generate": {}}},
    }
    runner = asyncio.create_task(controller.queue.run())
    try:
        controller.observe_keyset("ADDED", body)
        await asyncio.wait_for(controller.queue.wait_idle(), 10)
        first = controller.queue.scheduled_in(key)
        controller.queue.add(key)  # an event arrives: it runs now, and fails again
        await asyncio.wait_for(controller.queue.wait_idle(), 10)
        second = controller.queue.scheduled_in(key)
    finally:
        controller.queue.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(runner, 5)

    assert first is not None
    assert 0 < first <= BACKOFF_INITIAL
    assert second is not None
    assert BACKOFF_INITIAL < second <= 2 * BACKOFF_INITIAL
    assert "failed unexpectedly" not in caplog.text
    assert "Traceback" not in caplog.text
