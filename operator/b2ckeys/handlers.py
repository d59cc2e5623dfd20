"""Every Kopf decorator of the operator. Each handler is a line or two that hands off.

Why events and not Kopf's change handlers: a key set must be reconciled when its own spec
changes *and* when a Secret it reads changes, one writer at a time, and `deletionPolicy: Retain`
must add no finalizer. Kopf's change handlers would add bookkeeping to the resource and run
Secret-triggered work outside the resource's handler queue; daemons and timers add a finalizer
to every resource. So Kopf watches (with server-side label selectors for Secrets and
ConfigMaps), and the controller's work queue serialises the reconciles.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from typing import Any

import kopf

from b2ckeys.kube.api import resolve_connection
from b2ckeys.runtime import Runtime, build_runtime
from b2ckeys.settings import API_GROUP, API_VERSION, KEYSET_PLURAL, Settings
from b2ckeys.tenants import TenantResource


class _KeepTrying:
    """Kopf's retry delays for Kubernetes API calls: quick at first, then every 30 s for as long
    as the API server is away. Kopf's default gives up after about a minute, which would end
    the operator during a control-plane upgrade. Iterable anew for every request."""

    def __iter__(self) -> Iterator[float]:
        yield from (1, 2, 5, 10, 20)
        yield from itertools.repeat(30)


def _runtime(memo: kopf.Memo) -> Runtime:
    runtime: Runtime = memo["runtime"]
    return runtime


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    app_settings: Settings = memo["settings"]  # read once by main, from the environment
    # Only labelled Secrets and ConfigMaps are streamed to the operator (server-side filter).
    settings.watching.label_selectors["v1", "secrets"] = app_settings.watch_selector
    settings.watching.label_selectors["v1", "configmaps"] = app_settings.watch_selector
    # A name of Kopf's own, distinct from the controller's: Kopf removes its finalizer from any
    # deleted object it has no deletion handler for, and must never release ours. (With event
    # handlers only, Kopf keeps no progress or diff-base on our resources.)
    settings.persistence.finalizer = "kopf.b2ckeys.dev/framework"
    settings.networking.error_backoffs = _KeepTrying()
    # Our handlers only route events; Kopf's per-handler Events would be noise.
    settings.posting.level = logging.WARNING
    memo["runtime"] = await build_runtime(app_settings)


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    if "runtime" in memo:
        await _runtime(memo).close()


@kopf.on.login()
def login(memo: kopf.Memo, **_: Any) -> kopf.ConnectionInfo:
    # The same resolution as the storage layer's, from the same setting: Kopf and our writes
    # always talk to one server as one identity.
    settings: Settings = memo["settings"]
    conn = resolve_connection(settings.kubeconfig)
    return kopf.ConnectionInfo(
        server=conn.server,
        ca_path=conn.ca_path,
        insecure=conn.insecure,
        token=conn.token,
        certificate_path=conn.certificate_path,
        private_key_path=conn.private_key_path,
    )


# All handlers are `async def` although they never await: Kopf runs plain functions in a thread
# pool, and the controller's state belongs to the event loop that runs its work queue.
@kopf.on.event(API_GROUP, API_VERSION, KEYSET_PLURAL, id="keysets")
async def keyset_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    _runtime(memo).controller.observe_keyset(event.get("type"), event["object"])


@kopf.on.event("v1", "secrets", id="secrets")
async def secret_event(
    type: str | None, name: str, namespace: str | None, memo: kopf.Memo, **_: Any
) -> None:
    # The body (with the Secret's data) is deliberately not taken: only its name routes. The
    # first listing (type None) is routine work; a change goes ahead of it.
    _runtime(memo).controller.source_changed(
        "Secret", namespace or "", name, urgent=type is not None
    )


@kopf.on.event("v1", "configmaps", id="configmaps")
async def configmap_event(
    type: str | None, name: str, namespace: str | None, memo: kopf.Memo, **_: Any
) -> None:
    _runtime(memo).controller.source_changed(
        "ConfigMap", namespace or "", name, urgent=type is not None
    )


@kopf.on.event(API_GROUP, API_VERSION, "b2ctenants", id="b2ctenants")
async def tenant_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    tenant = TenantResource.from_body("B2CTenant", event["object"])
    _runtime(memo).controller.observe_tenant(event.get("type"), tenant)


@kopf.on.event(API_GROUP, API_VERSION, "clusterb2ctenants", id="clusterb2ctenants")
async def cluster_tenant_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    tenant = TenantResource.from_body("ClusterB2CTenant", event["object"])
    _runtime(memo).controller.observe_tenant(event.get("type"), tenant)


@kopf.on.event("v1", "namespaces", id="namespaces")
async def namespace_event(
    event: kopf.RawEvent, name: str, labels: kopf.Labels, memo: kopf.Memo, **_: Any
) -> None:
    # Only labels matter: a ClusterB2CTenant's namespaceSelector matches them.
    _runtime(memo).controller.observe_namespace(event.get("type"), name, dict(labels))


@kopf.on.probe(id="reconciling")
async def probe(memo: kopf.Memo, **_: Any) -> int:
    return len(_runtime(memo).controller.queue.running) if "runtime" in memo else 0
