"""An emulator of Microsoft Graph beta `/trustFramework/keySets` and the Entra token endpoint.

A real HTTPS server on loopback that follows `graph-keysets-spec.md`: the B2C rules live in
`state` (switches in `rules`), key material in `keys`, identity in
`identity`, path parsing in `paths`, TLS in `tls`. This module is the
aiohttp layer: the Graph error shape, request ids, the request log, fault injection and the
`/_emulator/` control routes.

    async with serve_graph_emulator(tls_dir=path, apps=[EmulatedApp(...)]) as emu:
        emu.graph_base_url   # https://127.0.0.1:PORT/beta
        emu.authority_host   # https://127.0.0.1:PORT (token at /{tenant}/oauth2/v2.0/token)
        emu.state            # key sets, request log, faults, clock
        emu.state.add_fault(Fault(method="POST", path="uploadSecret$", status=429,
                                  retry_after="1", code="AADB2C95043"))

Control routes (loopback test tool, no auth; the same operations are `emu.state` methods):
`GET /_emulator/requests[?since=EPOCH&contains=TEXT]` (method, path, status, time, ids; never
bodies or tokens),
`GET|POST|DELETE /_emulator/faults`, `POST /_emulator/reset`,
`GET|POST /_emulator/clock` (`{"advance": seconds}` or `{"set": epoch}`),
`GET /_emulator/keysets` (public view with each set's active kid), `GET /_emulator/warnings`,
`GET /_emulator/key-pool` (pre-made RSA keys for generateKey: made, available, taken),
`GET|POST /_emulator/write-rate-limit` (`{"perSecond": W}`: writes over W in any second get
429 AADB2C95043 with Retry-After; `{"perSecond": null}` lifts it).
The clock drives activation, expiry and token lifetime: advancing it past
`rules.token_lifetime_seconds` expires tokens that clients still hold in their caches.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import math
import re
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from b2ckeys_emulators.graph.identity import (
    EmulatedApp,
    EntraError,
    GraphAuthError,
    IdentityService,
    check_roles,
)
from b2ckeys_emulators.graph.keys import B2CRefusal, RsaKeyPool, StoredKey
from b2ckeys_emulators.graph.paths import (
    GraphTarget,
    Operation,
    parse_graph_path,
    resolve_operation,
)
from b2ckeys_emulators.graph.rules import EmulatorRules
from b2ckeys_emulators.graph.state import (
    EmulatorState,
    Fault,
    KeySet,
    RequestRecord,
    WriteRateLimit,
)
from b2ckeys_emulators.graph.tls import ensure_ca, server_ssl_context

__all__ = [
    "DEFAULT_TENANT_ID",
    "EmulatedApp",
    "EmulatorRules",
    "EmulatorState",
    "Fault",
    "GraphEmulator",
    "RequestRecord",
    "build_app",
    "serve_graph_emulator",
]

logger = logging.getLogger(__name__)

DEFAULT_TENANT_ID = "b2ce0000-0000-4000-8000-00000000e1a7"
CONTROL_PREFIX = "/_emulator"
GRAPH_PREFIX = "/beta"
_JSON = "application/json;odata.metadata=minimal;odata.streaming=true;charset=utf-8"
_DIAGNOSTIC = json.dumps({"ServerInfo": {"DataCenter": "Emulator", "RoleInstance": "b2ckeys"}})
# Bound on waiting for in-flight handlers (e.g. one held by an injected latency) at shutdown.
_SHUTDOWN_TIMEOUT_SECONDS = 2.0
# Error codes Graph uses when a fault names only a status.
_DEFAULT_FAULT_CODES = {
    429: "TooManyRequests",
    500: "InternalServerError",
    502: "BadGateway",
    503: "ServiceUnavailable",
    504: "GatewayTimeout",
}


@dataclass
class _Exchange:
    """What the middleware and handlers learn about one request, for its answer and log line."""

    request_id: str
    client_request_id: str | None
    client_id: str | None = None
    fault: Fault | None = None
    latency_served: bool = False


_STATE: web.AppKey[EmulatorState] = web.AppKey("state", EmulatorState)
_EXCHANGE: web.RequestKey[_Exchange] = web.RequestKey("exchange", _Exchange)
_IDENTITY: web.AppKey[IdentityService] = web.AppKey("identity", IdentityService)


@dataclass(frozen=True)
class GraphEmulator:
    """A running emulator: where it listens and its in-process state."""

    url: str
    tenant_id: str
    ca_path: Path
    state: EmulatorState
    apps: tuple[EmulatedApp, ...]

    @property
    def graph_base_url(self) -> str:
        return self.url + GRAPH_PREFIX

    @property
    def authority_host(self) -> str:
        return self.url

    @property
    def token_url(self) -> str:
        return f"{self.url}/{self.tenant_id}/oauth2/v2.0/token"


@asynccontextmanager
async def serve_graph_emulator(
    *,
    tls_dir: Path | str,
    host: str = "127.0.0.1",
    port: int = 0,
    tenant_id: str = DEFAULT_TENANT_ID,
    apps: Sequence[EmulatedApp] = (),
    rules: EmulatorRules | None = None,
    key_pool_size: int = 0,
    write_rate_limit: int | None = None,
) -> AsyncIterator[GraphEmulator]:
    """Serve the emulator over HTTPS on `host:port` (0 = any free port) until the block exits.

    `key_pool_size` RSA keys are made in a background thread for generateKey to take;
    `write_rate_limit` caps accepted Graph writes per second (429 + Retry-After beyond it).
    """
    ca_path = ensure_ca(tls_dir)
    ssl_context = server_ssl_context(tls_dir)
    effective_rules = rules or EmulatorRules()
    key_pool = RsaKeyPool(key_pool_size, effective_rules.generated_rsa_bits)
    state = EmulatorState(
        effective_rules,
        key_pool=key_pool,
        write_rate_limit=None if write_rate_limit is None else WriteRateLimit(write_rate_limit),
    )
    key_pool.start()
    identity = IdentityService(tenant_id=tenant_id, apps=apps, clock=state.clock, rules=state.rules)
    runner = web.AppRunner(
        build_app(state, identity),
        access_log=None,  # the request log is ours; aiohttp's would add nothing safe
        handle_signals=False,
        shutdown_timeout=_SHUTDOWN_TIMEOUT_SECONDS,
    )
    await runner.setup()
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        site = web.SockSite(runner, sock, ssl_context=ssl_context)
        await site.start()
        bound_port = sock.getsockname()[1]
        url_host = f"[{host}]" if family == socket.AF_INET6 else host
        emulator = GraphEmulator(
            url=f"https://{url_host}:{bound_port}",
            tenant_id=tenant_id,
            ca_path=ca_path,
            state=state,
            apps=tuple(apps),
        )
        logger.info("graph emulator listening on %s", emulator.url)
        yield emulator
    finally:
        await runner.cleanup()
        key_pool.stop()


def build_app(state: EmulatorState, identity: IdentityService) -> web.Application:
    app = web.Application(middlewares=[_request_ids, _faults])
    app[_STATE] = state
    app[_IDENTITY] = identity
    control = [
        web.get(f"{CONTROL_PREFIX}/requests", _control_requests),
        web.get(f"{CONTROL_PREFIX}/faults", _control_list_faults),
        web.post(f"{CONTROL_PREFIX}/faults", _control_add_fault),
        web.delete(f"{CONTROL_PREFIX}/faults", _control_clear_faults),
        web.post(f"{CONTROL_PREFIX}/reset", _control_reset),
        web.get(f"{CONTROL_PREFIX}/clock", _control_clock),
        web.post(f"{CONTROL_PREFIX}/clock", _control_clock),
        web.get(f"{CONTROL_PREFIX}/keysets", _control_key_sets),
        web.get(f"{CONTROL_PREFIX}/warnings", _control_warnings),
        web.post(f"{CONTROL_PREFIX}/apps/{{client_id}}/secret", _control_rotate_secret),
        web.get(f"{CONTROL_PREFIX}/key-pool", _control_key_pool),
        web.get(f"{CONTROL_PREFIX}/write-rate-limit", _control_write_rate_limit),
        web.post(f"{CONTROL_PREFIX}/write-rate-limit", _control_write_rate_limit),
    ]
    app.add_routes(control)
    app.add_routes(
        [
            web.route("*", GRAPH_PREFIX + "/{tail:.*}", _graph),
            web.post("/{tenant}/oauth2/v2.0/token", _token),
            web.get("/{tenant}/v2.0/.well-known/openid-configuration", _openid_configuration),
            web.get("/{tenant}/discovery/v2.0/keys", _jwks),
        ]
    )
    return app


# --- middleware ----------------------------------------------------------------------------------

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _request_ids(request: web.Request, handler: _Handler) -> web.StreamResponse:
    """Give every answer a request-id (echoing client-request-id) and log non-control requests."""
    state = request.app[_STATE]
    request_id = str(uuid.uuid4())
    client_request_id = request.headers.get("client-request-id")
    exchange = request[_EXCHANGE] = _Exchange(request_id, client_request_id)
    arrived, started = state.now(), time.perf_counter()
    try:
        response = await handler(request)
    except web.HTTPException as error:
        response = _graph_error(request, error.status, "BadRequest", error.reason)
    except Exception:
        logger.exception("graph emulator: unexpected error on %s %s", request.method, request.path)
        response = _graph_error(request, 500, "InternalServerError", "The emulator failed.")
    response.headers["request-id"] = request_id
    response.headers["client-request-id"] = client_request_id or request_id
    response.headers["x-ms-ags-diagnostic"] = _DIAGNOSTIC
    if not request.path.startswith(CONTROL_PREFIX):
        fault = exchange.fault
        state.record_request(
            RequestRecord(
                method=request.method,
                path=request.path,
                status=response.status,
                time=arrived,
                duration_ms=round((time.perf_counter() - started) * 1000, 3),
                request_id=request_id,
                client_request_id=client_request_id,
                client_id=exchange.client_id,
                fault=fault.kind if fault else None,
            )
        )
        logger.debug("%s %s -> %s", request.method, request.path, response.status)
    return response


@web.middleware
async def _faults(request: web.Request, handler: _Handler) -> web.StreamResponse:
    """Apply the first queued fault matching this request (never to control routes)."""
    if request.path.startswith(CONTROL_PREFIX):
        return await handler(request)
    fault = request.app[_STATE].take_fault(request.method, request.path)
    if fault is None:
        return await handler(request)
    request[_EXCHANGE].fault = fault
    response: web.StreamResponse
    if fault.status is not None:
        await asyncio.sleep(fault.latency)
        response = _fault_response(request, fault)
    else:
        # Latency is served inside the handler, so a delayed write counts as in flight; an
        # answer that never reached that point (e.g. a 401) is delayed here instead.
        response = await handler(request)
        if not request[_EXCHANGE].latency_served:
            await asyncio.sleep(fault.latency)
    if fault.commit_then_drop and request.transport is not None:
        request.transport.close()
    return response


def _fault_response(request: web.Request, fault: Fault) -> web.Response:
    status = fault.status or 500
    code = fault.code or _DEFAULT_FAULT_CODES.get(status, "UnknownError")
    message = fault.message or f"Injected fault: {status} {code}."
    if _is_identity_path(request.path):
        error = "temporarily_unavailable" if status >= 500 else "invalid_request"
        body = EntraError(status, error, 0, message).body(_correlation_id(request))
        body["error"] = fault.code or error
        response = web.json_response(body, status=status)
    else:
        response = _graph_error(request, status, code, message)
    for name, value in fault.headers.items():
        response.headers[name] = value
    if fault.retry_after is not None:
        response.headers["Retry-After"] = fault.retry_after
    return response


def _is_identity_path(path: str) -> bool:
    return not path.startswith(GRAPH_PREFIX + "/") and not path.startswith(CONTROL_PREFIX)


async def _injected_latency(request: web.Request) -> None:
    exchange = request[_EXCHANGE]
    if exchange.fault is not None and exchange.fault.status is None:
        exchange.latency_served = True
        await asyncio.sleep(exchange.fault.latency)


# --- Graph responses -----------------------------------------------------------------------------


def _graph_json(data: Any, *, status: int = 200) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(data, separators=(",", ":")),
        content_type=None,
        headers={"Content-Type": _JSON},
    )


def _graph_error(request: web.Request, status: int, code: str, message: str) -> web.Response:
    exchange = request.get(_EXCHANGE) or _Exchange(str(uuid.uuid4()), None)
    request_id = exchange.request_id
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    inner = {
        "date": date,
        "request-id": request_id,
        "client-request-id": exchange.client_request_id or request_id,
    }
    response = _graph_json(
        {"error": {"code": code, "message": message, "innerError": inner}}, status=status
    )
    if status == 401:
        response.headers["WWW-Authenticate"] = (
            'Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/'
            'oauth2/authorize", client_id="00000003-0000-0000-c000-000000000000"'
        )
    return response


def _correlation_id(request: web.Request) -> str:
    exchange = request[_EXCHANGE]
    return exchange.client_request_id or exchange.request_id


# --- Graph routes -------------------------------------------------------------------------------


async def _graph(request: web.Request) -> web.StreamResponse:
    state, identity = request.app[_STATE], request.app[_IDENTITY]
    try:
        # Graph's front door authenticates before it looks at the path.
        claims = identity.check_bearer(request.headers.get("Authorization"))
        request[_EXCHANGE].client_id = claims.client_id
        target = parse_graph_path(request.rel_url.raw_path.removeprefix(GRAPH_PREFIX))
        operation = resolve_operation(target, request.method, state.rules)
        check_roles(claims, write=operation.needs_write_role)
        has_body = request.method in ("POST", "PUT", "PATCH")
        body = await _json_body(request, state.rules) if has_body else {}
        return await _run(request, state, target, operation, body)
    except B2CRefusal as refusal:
        return _graph_error(request, refusal.status, refusal.code, refusal.message)
    except GraphAuthError as refusal:
        return _graph_error(request, refusal.status, refusal.code, refusal.message)


async def _json_body(request: web.Request, rules: EmulatorRules) -> dict[str, Any]:
    raw = await request.read()
    if raw and rules.require_json_content_type and request.content_type != "application/json":
        raise B2CRefusal(
            415,
            "UnsupportedMediaType",
            "The content type of the request body must be application/json.",
        )
    try:
        body = json.loads(raw or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise B2CRefusal(
            400,
            "BadRequest",
            "Unable to read JSON request payload. Please ensure Content-Type "
            "header is set and payload is of valid JSON format.",
        ) from None
    if not isinstance(body, dict):
        raise B2CRefusal(400, "BadRequest", "The request payload must be a JSON object.")
    return body


async def _run(
    request: web.Request,
    state: EmulatorState,
    target: GraphTarget,
    operation: Operation,
    body: dict[str, Any],
) -> web.StreamResponse:
    if not operation.write:
        await _injected_latency(request)
        return _read(request, state, target, operation.name)
    limit = state.write_rate_limit
    wait = limit.admit() if limit is not None else None
    if wait is not None:
        return _throttled(request, wait)
    if operation.name == "create":
        lock_id = state.final_id(str(body.get("id", "")))
    else:
        lock_id = target.key_set_id or ""
    with state.writing(lock_id):
        await _injected_latency(request)
        # A write is in flight on B2C for a while; without one turn of the loop here a handler
        # would run start to end at once and writes sent together could never overlap (§2.10).
        await asyncio.sleep(0)
        return _write(request, state, target, operation.name, body)


def _throttled(request: web.Request, wait: float) -> web.Response:
    """A write over the tenant's rate: B2C's throttling answer; Retry-After in whole seconds."""
    response = _graph_error(
        request, 429, "AADB2C95043", "There are too many requests at this moment."
    )
    response.headers["Retry-After"] = str(max(1, math.ceil(wait)))
    response.headers["x-ms-throttle-information"] = "WriteLimitExceeded"
    return response


def _read(
    request: web.Request, state: EmulatorState, target: GraphTarget, name: str
) -> web.Response:
    rules = state.rules
    base = str(request.url.origin()) + GRAPH_PREFIX
    key_set_id = target.key_set_id or ""
    if name == "list":
        return _graph_json(
            {
                "@odata.context": f"{base}/$metadata#trustFramework/keySets",
                "value": [_key_set_view(ks, rules) for ks in state.list_key_sets()],
            }
        )
    if name == "get":
        view = _key_set_view(state.get_key_set(key_set_id), rules)
        return _graph_json(
            {"@odata.context": f"{base}/$metadata#trustFramework/keySets/$entity", **view}
        )
    if name == "active_key":
        key = state.active_key(key_set_id)
        return _graph_json(
            {
                "@odata.context": f"{base}/$metadata#microsoft.graph.trustFrameworkKey",
                **key.public_view(rules),
            }
        )
    if name == "list_keys":
        context = f"{base}/$metadata#trustFramework/keySets('{key_set_id}')/keys_v2"
        keys = [k.public_view(rules) for k in state.list_keys(key_set_id)]
        return _graph_json({"@odata.context": context, "value": keys})
    key = state.get_key(key_set_id, target.kid or "")
    view = key.public_view(rules)
    return _graph_json({"value": view} if rules.wrap_key_v2_in_value else view)


def _write(
    request: web.Request, state: EmulatorState, target: GraphTarget, name: str, body: dict[str, Any]
) -> web.Response:
    rules = state.rules
    base = str(request.url.origin()) + GRAPH_PREFIX
    key_set_id = target.key_set_id or ""
    if name == "create":
        key_set = state.create_key_set(body)
        response = _graph_json(
            {
                "@odata.context": f"{base}/$metadata#trustFramework/keySets/$entity",
                **_key_set_view(key_set, rules),
            },
            status=201,
        )
        response.headers["Location"] = f"{base}/trustFramework/keySets('{key_set.id}')"
        return response
    if name == "replace":
        key_set = state.replace_key_set(key_set_id, body)
        return _graph_json(_key_set_view(key_set, rules))
    if name == "delete":
        state.delete_key_set(key_set_id)
        return web.Response(status=204)
    if name == "set_key_status":
        state.set_key_status(key_set_id, target.kid or "", body)
        return web.Response(status=204)
    actions: dict[str, Callable[[str, dict[str, Any]], StoredKey]] = {
        "generate_key": state.generate_key,
        "upload_secret": state.upload_secret,
        "upload_certificate": state.upload_certificate,
        "upload_pkcs12": state.upload_pkcs12,
    }
    key = actions[name](key_set_id, body)
    return _graph_json(
        {
            "@odata.context": f"{base}/$metadata#microsoft.graph.trustFrameworkKey",
            **key.public_view(rules),
        }
    )


def _key_set_view(key_set: KeySet, rules: EmulatorRules) -> dict[str, Any]:
    return {"id": key_set.id, "keys": [k.public_view(rules) for k in key_set.keys]}


# --- identity routes -----------------------------------------------------------------------------


async def _token(request: web.Request) -> web.StreamResponse:
    identity = request.app[_IDENTITY]
    tenant = request.match_info["tenant"]
    try:
        await _injected_latency(request)
        form = await request.post()
        fields = {name: value for name, value in form.items() if isinstance(value, str)}
        if fields.get("client_id"):
            request[_EXCHANGE].client_id = fields["client_id"]
        answer = identity.issue_token(tenant, fields, request.path)
        return web.json_response(answer, headers={"Cache-Control": "no-store, no-cache"})
    except EntraError as error:
        return web.json_response(error.body(_correlation_id(request)), status=error.status)


async def _openid_configuration(request: web.Request) -> web.StreamResponse:
    identity = request.app[_IDENTITY]
    try:
        document = identity.openid_configuration(
            str(request.url.origin()), request.match_info["tenant"]
        )
    except EntraError as error:
        return web.json_response(error.body(_correlation_id(request)), status=error.status)
    return web.json_response(document)


async def _jwks(request: web.Request) -> web.StreamResponse:
    identity = request.app[_IDENTITY]
    if not identity.knows_tenant(request.match_info["tenant"]):
        error = identity.unknown_tenant(request.match_info["tenant"], error="invalid_tenant")
        return web.json_response(error.body(_correlation_id(request)), status=error.status)
    return web.json_response(identity.jwks())


# --- control routes (loopback test tool; no auth) ------------------------------------------------


async def _control_requests(request: web.Request) -> web.StreamResponse:
    """The request log; `?since=EPOCH` keeps only requests that arrived then or later and
    `?contains=TEXT` only those whose path holds TEXT (a benchmark polling a 10,000-entry log
    would otherwise cost the emulator more than it measures)."""
    records = request.app[_STATE].requests()
    since = request.query.get("since")
    if since is not None:
        try:
            cutoff = float(since)
        except ValueError:
            return web.json_response({"error": "since is epoch seconds"}, status=400)
        records = [r for r in records if r.time >= cutoff]
    contains = request.query.get("contains")
    if contains:
        records = [r for r in records if contains in r.path]
    return web.json_response({"value": [asdict(r) for r in records]})


async def _control_list_faults(request: web.Request) -> web.StreamResponse:
    return web.json_response({"value": [f.as_dict() for f in request.app[_STATE].faults()]})


async def _control_add_fault(request: web.Request) -> web.StreamResponse:
    try:
        body = await request.json()
        if not isinstance(body, dict):
            raise TypeError("a fault is a JSON object")
        retry_after = body.pop("retry_after", None)
        fault = Fault(**body, retry_after=None if retry_after is None else str(retry_after))
    except (ValueError, TypeError, re.error) as error:
        return web.json_response({"error": f"invalid fault: {error}"}, status=400)
    request.app[_STATE].add_fault(fault)
    return web.json_response(fault.as_dict(), status=201)


async def _control_clear_faults(request: web.Request) -> web.StreamResponse:
    request.app[_STATE].clear_faults()
    return web.Response(status=204)


async def _control_rotate_secret(request: web.Request) -> web.StreamResponse:
    """POST {"secret": "..."}: the app's client secret is replaced (a rotation in the portal)."""
    try:
        body = await request.json()
        secret = body["secret"] if isinstance(body, dict) else None
        if not isinstance(secret, str) or not secret:
            raise ValueError("give 'secret'")
    except (ValueError, KeyError) as e:
        return web.json_response({"error": str(e)}, status=400)
    if not request.app[_IDENTITY].rotate_secret(request.match_info["client_id"], secret):
        return web.json_response({"error": "no such app"}, status=404)
    return web.Response(status=204)


async def _control_reset(request: web.Request) -> web.StreamResponse:
    request.app[_STATE].reset()
    return web.Response(status=204)


async def _control_clock(request: web.Request) -> web.StreamResponse:
    state = request.app[_STATE]
    if request.method == "POST":
        try:
            body = await request.json()
            if not isinstance(body, dict) or not ({"advance", "set"} & set(body)):
                raise ValueError("give 'advance' (seconds) or 'set' (epoch seconds)")
            seconds = float(body["advance"] if "advance" in body else body["set"])
            if not math.isfinite(seconds):
                raise ValueError("the clock takes finite numbers")
            if "advance" in body:
                state.advance_clock(seconds)
            else:
                state.set_clock(seconds)
        except (ValueError, TypeError) as error:
            return web.json_response({"error": f"invalid clock change: {error}"}, status=400)
    return web.json_response({"now": state.now()})


async def _control_key_sets(request: web.Request) -> web.StreamResponse:
    return web.json_response({"value": request.app[_STATE].snapshot()})


async def _control_warnings(request: web.Request) -> web.StreamResponse:
    return web.json_response({"value": request.app[_STATE].warnings()})


async def _control_key_pool(request: web.Request) -> web.StreamResponse:
    pool = request.app[_STATE].key_pool
    return web.json_response(pool.counts() if pool is not None else {"size": 0})


async def _control_write_rate_limit(request: web.Request) -> web.StreamResponse:
    """GET the limit; POST {"perSecond": W} to set it, {"perSecond": null} to lift it."""
    state = request.app[_STATE]
    if request.method == "POST":
        try:
            body = await request.json()
            if not isinstance(body, dict) or "perSecond" not in body:
                raise ValueError("give 'perSecond' (writes per second, or null for no limit)")
            per_second = body["perSecond"]
            if per_second is not None and (
                isinstance(per_second, bool) or not isinstance(per_second, int)
            ):
                raise ValueError("'perSecond' is a whole number of writes")
            state.write_rate_limit = None if per_second is None else WriteRateLimit(per_second)
        except ValueError as error:
            return web.json_response({"error": f"invalid write rate limit: {error}"}, status=400)
    limit = state.write_rate_limit
    return web.json_response(
        {"perSecond": limit.per_second, "refused": limit.refused}
        if limit is not None
        else {"perSecond": None}
    )
