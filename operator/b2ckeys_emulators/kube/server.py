"""An embedded Kubernetes API server for tests, the demo and local play.

`serve_kube_emulator()` serves a `KubeEmulator` on loopback and writes a kubeconfig for it, so
that Kopf, the kubernetes client and kubectl all talk to it as to a cluster::

    async with serve_kube_emulator() as kube:
        api = kubernetes.config.new_client_from_config(config_file=str(kube.kubeconfig))
        ...
        assert kube.emulator.read("v1/secrets", "default", "tls")["type"] == "kubernetes.io/tls"

`KubeEmulator` is kmock's `KubernetesEmulator` with the API server's semantics that Kopf and the
kubernetes client rely on (see `store`, `watch`, `admission`): stamped
metadata, optimistic concurrency, the status subresource, three patch formats and PUT,
finalizers, label and field selectors, resumable watches, CRDs served as they are applied. kmock's
request log, `objects` inspector and reaction DSL stay available: a test reaction
(`kube.emulator["patch", kmock.subresource("status")][:1] << kmock.KubernetesError(...)`) is
answered before the emulation, which is how tests inject faults; a kube-emulator running as a
process takes queued errors on `/_emulator/faults` instead (see `faults`).

As on a cluster, objects go into namespaces that exist (`default`, `kube-system`,
`kube-public` and `kube-node-lease` do from the start). Test helpers (`read`, `create_object`,
`requests`, `objects`, `forget_history`) belong to the emulator's event loop. The sync kubernetes
client blocks its thread: call it through `asyncio.to_thread` when the emulator runs in the same
event loop.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import copy
import json
import tempfile
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import aiohttp.web
import attrs
import kmock
import yaml
from kmock._internal.rendering import StreamingError

from b2ckeys_emulators.kube import discovery as discovery
from b2ckeys_emulators.kube import errors as errors
from b2ckeys_emulators.kube import tables as tables
from b2ckeys_emulators.kube.crds import load_crd_documents
from b2ckeys_emulators.kube.faults import FaultQueue, KubeFault
from b2ckeys_emulators.kube.kubeconfig import write_kubeconfig
from b2ckeys_emulators.kube.patching import (
    PatchError,
    PatchMalformed,
    PatchTestFailed,
    apply_json_patch,
    apply_merge_patch,
    apply_strategic_merge_patch,
)
from b2ckeys_emulators.kube.paths import parse_api_path, request_verb
from b2ckeys_emulators.kube.resources import (
    CRDS,
    STATUS_VERBS,
    ResourceSpec,
    load_builtin_resources,
)
from b2ckeys_emulators.kube.selectors import (
    SelectorError,
    parse_field_selector,
    parse_label_selector,
)
from b2ckeys_emulators.kube.store import Clock, ObjectStore, utc_now
from b2ckeys_emulators.kube.watch import ObjectFilter, WatchHub, WatchRequest, present

__all__ = ["KubeEmulator", "RecordedRequest", "RunningKubeEmulator", "serve_kube_emulator"]

# Test reactions (priority 0) come first, the emulation next, kmock's stock fallbacks (-inf) never.
_BELOW_TEST_REACTIONS = -1_000_000.0
# Watches end as soon as the emulator closes them; this only bounds a stuck handler at shutdown.
_SHUTDOWN_GRACE_SECONDS = 1.0
# Fault injection for the emulator as a process (see `faults`); never an API path.
FAULTS_PATH = "/_emulator/faults"

_KMOCK_ACTIONS = {
    "get": kmock.action.FETCH,
    "list": kmock.action.LIST,
    "watch": kmock.action.WATCH,
    "create": kmock.action.CREATE,
    "update": kmock.action.UPDATE,
    "patch": kmock.action.UPDATE,
    "delete": kmock.action.DELETE,
}
_MERGE_PATCH = "application/merge-patch+json"
_JSON_PATCH = "application/json-patch+json"
_STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
_APPLY_PATCH = "application/apply-patch+yaml"
_BINARY_ENCODINGS = frozenset({"application/vnd.kubernetes.protobuf", "application/cbor"})


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the emulator understood it, for assertions in tests."""

    method: str
    path: str
    params: Mapping[str, str]
    verb: str | None  # get, list, watch, create, update, patch, delete, deletecollection
    resource: str | None  # "v1/secrets", "b2ckeys.dev/v1alpha1/trustframeworkkeysets"
    namespace: str | None
    name: str | None
    subresource: str | None
    content_type: str
    # Bodies may carry Secret data: kept out of reprs and comparisons.
    body: Any = field(repr=False, compare=False)


class _Answered(Exception):
    """Carries the emulation's finished response out through kmock's reaction machinery."""

    def __init__(self, response: aiohttp.web.StreamResponse) -> None:
        super().__init__()
        self.response = response


@attrs.define(kw_only=True)
class KubeEmulator(kmock.KubernetesEmulator):
    clock: Clock = utc_now
    # Changes kept for resuming watches; older `resourceVersion`s get 410 Expired. Tests and the
    # demo write far fewer; a real server keeps about five minutes of changes.
    history_limit: int = 10_000
    # A real API server sends watch bookmarks about once a minute.
    bookmark_interval: float = 60.0

    _store: ObjectStore = attrs.field(init=False)
    _hub: WatchHub = attrs.field(init=False)
    _internal_errors: list[BaseException] = attrs.field(factory=list, init=False)
    _request_log: list[RecordedRequest] = attrs.field(factory=list, init=False)
    faults: FaultQueue = attrs.field(factory=FaultQueue, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        load_builtin_resources(self.resources)
        self._hub = WatchHub(lambda: self.bookmark_interval)
        self._store = ObjectStore(
            self.objects,
            self.resources,
            clock=self.clock,
            history_limit=self.history_limit,
            on_change=self._hub.notify,
        )
        self._store.bootstrap()
        # The emulation is one catch-all kmock reaction, so that test reactions come first.
        (self**_BELOW_TEST_REACTIONS) << self._serve

    # --- for tests

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request so far, oldest first (kmock's own log is `list(emulator)`)."""
        return list(self._request_log)

    @property
    def internal_errors(self) -> list[BaseException]:
        """Failures of the emulator itself (answered as 500s); a healthy run has none."""
        return list(self._internal_errors)

    @property
    def resource_version(self) -> int:
        return self._store.resource_version

    @property
    def open_watches(self) -> int:
        return self._hub.open_watches

    def read(self, resource: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        """A copy of an object as a GET would return it, or None; `resource` as "v1/secrets"."""
        spec = self._store.spec(kmock.resource(resource))
        if spec is None:
            raise KeyError(f"the emulator does not serve {resource!r}")
        obj = self._store.get(spec, namespace, name)
        return None if obj is None else copy.deepcopy(present(spec, obj))

    def create_object(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create an object in-process, exactly as a POST would; `apiVersion` and `kind` pick it."""
        spec = self._store.spec_of(str(body.get("apiVersion")), str(body.get("kind")))
        if spec is None:
            served = f"{body.get('apiVersion')}/{body.get('kind')}"
            raise KeyError(f"the emulator does not serve {served}")
        namespace = body.get("metadata", {}).get("namespace") if spec.namespaced else None
        created = self._store.create(spec, namespace, body)
        return copy.deepcopy(present(spec, created))

    def forget_history(self) -> None:
        """Forget all kept changes, as an etcd compaction does: older watches get 410 Expired."""
        self._store.forget_history()

    def load_crds(self, paths: Iterable[str | Path] | None = None) -> None:
        """Apply CRDs from YAML files or folders; None means the project's `crds/` folder."""
        spec = self._store.spec(CRDS)
        assert spec is not None  # the built-in catalogue always has CRDs
        for document in load_crd_documents(paths):
            try:
                self._store.create(spec, None, document)
            except kmock.KubernetesError as rejected:
                raise ValueError(f"CRD not accepted: {rejected.message}") from None

    def close_watches(self) -> None:
        """End every open watch stream (at shutdown; clients see the stream end)."""
        self._hub.close()

    # --- HTTP

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        if raw_request.path == FAULTS_PATH:
            return await self._control_faults(raw_request)
        request = await _parse_request(raw_request, len(self._requests))
        self._requests.append(request)
        recorded = _recorded(request)
        self._request_log.append(recorded)
        try:
            route = parse_api_path(raw_request.path)
            fault = self.faults.take(
                recorded.verb, route.plural, route.subresource, route.namespace
            )
            if fault is not None:
                error = fault.error()
                if error is not None:
                    raise error
                await asyncio.sleep(fault.latency)
            return await self._handle(request)
        except _Answered as answered:
            return answered.response
        except StreamingError as failure:  # a test's streaming reaction failed mid-stream
            self._internal_errors.append(failure.__cause__ or failure)
            response: aiohttp.web.StreamResponse = failure.args[0]
            with contextlib.suppress(ConnectionError):
                await response.write_eof()
            return response
        except kmock.KubernetesError as error:
            return _status_response(error)
        except Exception as failure:
            self._internal_errors.append(failure)
            return _status_response(errors.internal_error(failure))

    async def _control_faults(self, raw: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        if raw.method == "GET":
            served = dict(sorted(self.faults.served.items()))
            return _json_response(200, {"value": self.faults.queued(), "served": served})
        if raw.method == "DELETE":
            self.faults.clear()
            return aiohttp.web.Response(status=204)
        if raw.method != "POST":
            return _json_response(405, {"error": "use GET, POST or DELETE"})
        try:
            body = json.loads(await raw.read())
            if not isinstance(body, dict):
                raise TypeError("a fault is a JSON object")
            fault = self.faults.add(KubeFault(**body))
        except (ValueError, TypeError) as problem:
            return _json_response(400, {"error": f"invalid fault: {problem}"})
        return _json_response(201, {"id": fault.id})

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        # Skip kmock's own state tracking in KubernetesEmulator._handle: the store replaces it.
        return await super(kmock.KubernetesEmulator, self)._handle(request)

    async def _render_error(self, exc: Exception) -> aiohttp.web.StreamResponse:
        if isinstance(exc, kmock.KubernetesError):
            return _status_response(exc)
        return _status_response(errors.internal_error(exc))

    async def _serve(self, request: kmock.Request) -> NoReturn:
        raise _Answered(await self._respond(request))

    async def _respond(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        raw = request._raw_request
        assert raw is not None  # requests always come from the HTTP server here
        route = parse_api_path(raw.path)
        if route.group is None:
            return self._serve_other(raw)
        if route.plural is None:
            return self._serve_discovery(raw, route.group, route.version)
        resource = kmock.resource(route.group, route.version, route.plural)
        spec = self._store.spec(resource)
        if spec is None or (route.namespace is not None and not spec.namespaced):
            raise errors.unknown_resource()
        verb = request_verb(raw.method, route, request.params)
        _check_verb(spec, verb, route.subresource)
        where = _object_filter(spec, route.namespace, route.name, request.params)
        dry_run = "dryRun" in request.params
        printing = _printer_columns(spec, request)
        match verb:
            case "watch":
                return await self._stream_watch(raw, request.params, where, printing)
            case "list":
                listed = self._list(spec, where, request.params)
                if printing is not None:
                    listed = self._table(listed["items"], printing, listed["metadata"], request)
                return _json_response(200, listed)
            case "get":
                obj = self._store.get(spec, route.namespace, str(route.name))
                if obj is None:
                    raise errors.not_found(spec.qualified_plural, str(route.name))
                if printing is not None:
                    version = {"resourceVersion": obj["metadata"]["resourceVersion"]}
                    return _json_response(200, self._table([obj], printing, version, request))
                return _json_response(200, present(spec, obj))
            case "create":
                created = self._store.create(
                    spec, route.namespace, _json_body(request), dry_run=dry_run
                )
                return _json_response(201, present(spec, created))
            case "update" | "patch":
                change = _replacement(request) if verb == "update" else _patch(request, spec)
                updated = self._store.update(
                    spec,
                    route.namespace,
                    str(route.name),
                    change,
                    subresource=route.subresource,
                    replace=verb == "update",
                    dry_run=dry_run,
                )
                return _json_response(200, present(spec, updated))
            case "delete":
                options = _json_body(request) or {}
                obj, gone = self._store.delete(
                    spec,
                    route.namespace,
                    str(route.name),
                    _preconditions(options),
                    dry_run=dry_run,
                )
                return _json_response(200, _deleted(spec, obj) if gone else present(spec, obj))
            case _:  # deletecollection; other verbs were refused by _check_verb
                return _json_response(200, self._delete_collection(spec, where, dry_run))

    def _serve_other(self, raw: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        if raw.method != "GET":
            raise errors.method_not_allowed()
        specs = self._store.specs()
        match raw.path.rstrip("/") or "/":
            case "/":
                return _json_response(200, discovery.root_paths(specs))
            case "/api":
                return _json_response(200, discovery.api_versions(raw.host))
            case "/apis":
                return _json_response(200, discovery.api_group_list(specs))
            case "/version":
                return _json_response(200, discovery.SERVER_VERSION)
            case "/healthz" | "/livez" | "/readyz":
                return aiohttp.web.Response(text="ok")
            case "/openapi/v3":
                return _json_response(200, discovery.openapi_v3_root(specs))
        if raw.path.startswith("/openapi/v3/"):
            route = parse_api_path(raw.path.removeprefix("/openapi/v3"))
            if route.group is not None and route.version is not None and route.plural is None:
                document = discovery.openapi_v3_group_version(specs, route.group, route.version)
                if document is not None:
                    return _json_response(200, document)
        raise errors.unknown_resource()

    def _serve_discovery(
        self, raw: aiohttp.web.BaseRequest, group: str, version: str | None
    ) -> aiohttp.web.StreamResponse:
        if raw.method != "GET":
            raise errors.method_not_allowed()
        specs = self._store.specs()
        if version is None:
            document = discovery.api_group(specs, group)
        else:
            document = discovery.api_resource_list(specs, group, version)
        if document is None:
            raise errors.unknown_resource()
        return _json_response(200, document)

    def _list(
        self, spec: ResourceSpec, where: ObjectFilter, params: Mapping[str, str]
    ) -> dict[str, Any]:
        stored = self._store.list_objects(spec, where.namespace)
        items = [obj for obj in stored if where.matches(obj)]
        version = self._store.resource_version
        items, metadata = _paginate(items, params)
        return {
            "kind": f"{spec.kind}List",
            "apiVersion": spec.api_version,
            "metadata": {"resourceVersion": str(version), **metadata},
            "items": [present(spec, obj) for obj in items],
        }

    def _table(
        self,
        objects: Iterable[Mapping[str, Any]],
        columns: Sequence[Mapping[str, Any]],
        metadata: Mapping[str, Any],
        request: kmock.Request,
    ) -> dict[str, Any]:
        return tables.table(
            objects,
            columns,
            metadata=metadata,
            include_object=request.params.get("includeObject", "Metadata"),
            now=self.clock(),
        )

    def _delete_collection(
        self, spec: ResourceSpec, where: ObjectFilter, dry_run: bool
    ) -> dict[str, Any]:
        deleted = []
        for obj in self._store.list_objects(spec, where.namespace):
            if where.matches(obj):
                meta = obj["metadata"]
                result, _ = self._store.delete(
                    spec, meta.get("namespace"), meta["name"], {}, dry_run=dry_run
                )
                deleted.append(present(spec, result))
        return {
            "kind": f"{spec.kind}List",
            "apiVersion": spec.api_version,
            "metadata": {"resourceVersion": str(self._store.resource_version)},
            "items": deleted,
        }

    async def _stream_watch(
        self,
        raw: aiohttp.web.BaseRequest,
        params: Mapping[str, str],
        where: ObjectFilter,
        printing: Sequence[Mapping[str, Any]] | None,
    ) -> aiohttp.web.StreamResponse:
        watch = _watch_request(params, where)
        response = aiohttp.web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(raw)
        try:
            async for event in self._hub.stream(self._store, watch):
                if printing is not None and event["type"] in {"ADDED", "MODIFIED", "DELETED"}:
                    obj = event["object"]
                    version = {"resourceVersion": obj["metadata"]["resourceVersion"]}
                    include = params.get("includeObject", "Metadata")
                    printed = tables.table(
                        [obj], printing, metadata=version, include_object=include, now=self.clock()
                    )
                    event = {**event, "object": printed}
                await response.write(json.dumps(event).encode() + b"\n")
        except ConnectionError:
            return response  # the client went away
        except Exception as failure:  # an emulator bug: report it in-stream, as a server would
            self._internal_errors.append(failure)
            error = errors.status_body(errors.internal_error(failure))
            await response.write(json.dumps({"type": "ERROR", "object": error}).encode() + b"\n")
        with contextlib.suppress(ConnectionError):
            await response.write_eof()
        return response


@dataclass(frozen=True)
class RunningKubeEmulator:
    url: str  # "http://127.0.0.1:PORT"
    kubeconfig: Path
    emulator: KubeEmulator


@contextlib.asynccontextmanager
async def serve_kube_emulator(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    kubeconfig: str | Path | None = None,
    crd_paths: Iterable[str | Path] | None = None,
    emulator: KubeEmulator | None = None,
) -> AsyncIterator[RunningKubeEmulator]:
    """Serve an emulator (a fresh one unless given) with the CRDs applied.

    `crd_paths=None` applies the project's `crds/`; pass `emulator=KubeEmulator(...)` to tune
    its clock, history size or bookmark interval.
    """
    emulator = emulator if emulator is not None else KubeEmulator()
    emulator.load_crds(crd_paths)
    async with emulator:
        server = aiohttp.web.Server(emulator, handler_cancellation=True, access_log=None)
        runner = aiohttp.web.ServerRunner(server, shutdown_timeout=_SHUTDOWN_GRACE_SECONDS)
        await runner.setup()
        try:
            site = aiohttp.web.TCPSite(runner, host, port)
            await site.start()
            url = f"http://{_url_host(host)}:{runner.addresses[0][1]}"
            with _kubeconfig_path(kubeconfig) as path:
                write_kubeconfig(path, url)
                yield RunningKubeEmulator(url=url, kubeconfig=path, emulator=emulator)
        finally:
            emulator.close_watches()
            await runner.cleanup()


def _url_host(host: str) -> str:
    if host in {"", "0.0.0.0"}:  # noqa: S104 - naming the wildcard, not binding to it
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


@contextlib.contextmanager
def _kubeconfig_path(requested: str | Path | None) -> Any:
    if requested is not None:
        yield Path(requested)
        return
    with tempfile.TemporaryDirectory(prefix="b2ckeys-kube-") as folder:
        yield Path(folder) / "kubeconfig"


# --- request reading


async def _parse_request(raw: aiohttp.web.BaseRequest, number: int) -> kmock.Request:
    body = await raw.read()
    route = parse_api_path(raw.path)
    verb = request_verb(raw.method, route, raw.query)
    try:
        data = json.loads(body) if body else None
    except ValueError:
        data = None  # answered with 400 when the emulation needs the body
    resource = None
    if route.group is not None:
        resource = kmock.resource(group=route.group, version=route.version, plural=route.plural)
    return kmock.Request(
        id=number,
        raw_request=raw,
        url=raw.url,
        method=raw.method,
        params=dict(raw.query),
        headers=dict(raw.headers),
        cookies=dict(raw.cookies),
        body=body,
        text=body.decode("utf-8", errors="replace"),
        data=data,
        action=_KMOCK_ACTIONS.get(verb or ""),
        resource=resource,
        namespace=route.namespace,
        name=route.name,
        subresource=route.subresource,
    )


def _recorded(request: kmock.Request) -> RecordedRequest:
    route = parse_api_path(request.url.path)
    resource = None
    if route.plural is not None:
        prefix = f"{route.group}/{route.version}" if route.group else route.version
        resource = f"{prefix}/{route.plural}"
    return RecordedRequest(
        method=str(request.method.value),
        path=request.url.path,
        params=dict(request.params),
        verb=request_verb(str(request.method.value), route, request.params),
        resource=resource,
        namespace=route.namespace,
        name=route.name,
        subresource=route.subresource,
        content_type=_content_type(request),
        body=request.data,
    )


def _content_type(request: kmock.Request) -> str:
    return _header(request, "content-type").split(";")[0].strip().lower()


def _json_body(request: kmock.Request) -> Any:
    """The body of a create, update or delete: JSON (or YAML), never protobuf or CBOR."""
    if not request.body:
        return None
    content_type = _content_type(request)
    if content_type in _BINARY_ENCODINGS:
        # Clients that prefer these (kubectl for built-ins) fall back to JSON on a 415.
        raise errors.unsupported_media_type(content_type, ["application/json", "application/yaml"])
    try:
        if content_type == "application/yaml":
            return yaml.safe_load(request.body)
        return json.loads(request.body)
    except (ValueError, yaml.YAMLError):
        raise errors.bad_request("the request body is not valid JSON") from None


def _printer_columns(
    spec: ResourceSpec, request: kmock.Request
) -> Sequence[Mapping[str, Any]] | None:
    """The columns of a Table answer, or None to answer with objects."""
    if spec.custom is None or not tables.wants_table(_header(request, "accept")):
        return None
    return spec.custom.printer_columns


def _header(request: kmock.Request, name: str) -> str:
    return next((v for k, v in request.headers.items() if k.lower() == name), "")


def _check_verb(spec: ResourceSpec, verb: str | None, subresource: str | None) -> None:
    if subresource is None:
        allowed = spec.verbs
    elif subresource == "status" and spec.has_status:
        allowed = STATUS_VERBS
    elif subresource == "finalize" and "finalize" in spec.subresources:
        allowed = frozenset({"update"})
    else:
        raise errors.unknown_resource()
    if verb is None or verb not in allowed:
        raise errors.method_not_allowed()


def _object_filter(
    spec: ResourceSpec, namespace: str | None, name: str | None, params: Mapping[str, str]
) -> ObjectFilter:
    try:
        labels = parse_label_selector(params.get("labelSelector", ""))
        fields = parse_field_selector(params.get("fieldSelector", ""), spec.selectable_fields)
    except SelectorError as problem:
        raise errors.bad_request(str(problem)) from None
    return ObjectFilter(spec, namespace, name, labels, fields)


def _watch_request(params: Mapping[str, str], where: ObjectFilter) -> WatchRequest:
    since_text = params.get("resourceVersion", "")
    if since_text not in {"", "0"} and not since_text.isdigit():
        raise errors.bad_request(f"invalid resource version: {since_text!r}")
    initial = params.get("sendInitialEvents") == "true"
    bookmarks = params.get("allowWatchBookmarks") in {"true", "1"}
    if initial and (params.get("resourceVersionMatch") != "NotOlderThan" or not bookmarks):
        raise errors.unprocessable(
            "sendInitialEvents requires resourceVersionMatch=NotOlderThan and allowWatchBookmarks"
        )
    timeout: float | None = None
    if "timeoutSeconds" in params:
        try:
            timeout = float(params["timeoutSeconds"])
        except ValueError:
            raise errors.bad_request("timeoutSeconds must be a number") from None
    return WatchRequest(
        filter=where,
        since=int(since_text) if since_text not in {"", "0"} else None,
        send_initial_events=initial,
        allow_bookmarks=bookmarks,
        timeout=timeout,
    )


def _replacement(request: kmock.Request) -> Callable[[dict[str, Any]], Any]:
    body = _json_body(request)
    return lambda current: body


def _patch(request: kmock.Request, spec: ResourceSpec) -> Callable[[dict[str, Any]], Any]:
    content_type = _content_type(request)
    patch = _json_body(request)
    accepted = [_JSON_PATCH, _MERGE_PATCH, _APPLY_PATCH]
    if spec.custom is None:
        accepted.append(_STRATEGIC_MERGE_PATCH)
    appliers: dict[str, Callable[[dict[str, Any], Any], Any]] = {
        _MERGE_PATCH: apply_merge_patch,
        _JSON_PATCH: apply_json_patch,
        _STRATEGIC_MERGE_PATCH: apply_strategic_merge_patch,
    }
    if content_type not in accepted or content_type == _APPLY_PATCH:
        # Server-side apply is listed as accepted by real servers but not emulated here.
        raise errors.unsupported_media_type(content_type, accepted)
    applier = appliers[content_type]

    def change(current: dict[str, Any]) -> Any:
        try:
            return applier(current, patch)
        except PatchTestFailed as failed:
            raise errors.unprocessable(str(failed)) from None
        except PatchMalformed as malformed:
            raise errors.bad_request(str(malformed)) from None
        except PatchError as failed:
            raise errors.unprocessable(str(failed)) from None

    return change


def _preconditions(options: Any) -> Mapping[str, Any]:
    if not isinstance(options, Mapping):
        raise errors.bad_request("DeleteOptions must be a JSON object")
    preconditions = options.get("preconditions") or {}
    if not isinstance(preconditions, Mapping):
        raise errors.bad_request("preconditions must be a JSON object")
    return preconditions


def _deleted(spec: ResourceSpec, obj: Mapping[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata", {})
    details = {"name": meta.get("name"), "kind": spec.plural, "uid": meta.get("uid")}
    if spec.group:
        details["group"] = spec.group
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": details,
    }


def _paginate(
    items: list[dict[str, Any]], params: Mapping[str, str]
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """`limit` and `continue`, resuming after the last (namespace, name) served."""
    if token := params.get("continue"):
        try:
            after = tuple(json.loads(base64.urlsafe_b64decode(token.encode())))
        except (ValueError, binascii.Error):
            raise errors.bad_request("invalid continue token") from None
        items = [obj for obj in items if _position(obj) > after]
    limit_text = params.get("limit", "")
    if not limit_text.isdigit() or int(limit_text) == 0 or len(items) <= int(limit_text):
        return items, {}
    page = items[: int(limit_text)]
    token = base64.urlsafe_b64encode(json.dumps(list(_position(page[-1]))).encode()).decode()
    return page, {"continue": token, "remainingItemCount": len(items) - len(page)}


def _position(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = obj["metadata"]
    return (meta.get("namespace") or "", meta["name"])


def _json_response(status: int, payload: Any) -> aiohttp.web.Response:
    return aiohttp.web.Response(
        status=status, body=json.dumps(payload).encode(), content_type="application/json"
    )


def _status_response(error: kmock.KubernetesError) -> aiohttp.web.Response:
    return _json_response(error.status, errors.status_body(error))
