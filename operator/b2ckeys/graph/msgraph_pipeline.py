"""The request pipeline under `MsGraphKeySetClient`: credential, HTTP client, retries, failures.

It turns a `GraphConnection` into an azure-identity credential and an httpx client that runs the
SDK's middleware, sends each call (once more with a fresh token if Graph refuses a cached one),
and translates whatever the SDK, azure-identity or httpx raises into a `GraphError` from
`b2ckeys.graph.client`. `msgraph` builds the requests on top of it.

Two rules shape the pipeline:

- Reads are idempotent, so kiota's RetryHandler may retry them on 429/503/504, but only while
  the server asks for a short wait (`GraphConnection.max_retry_after_in_sdk`); a longer
  Retry-After comes straight back as `Throttled` so no coroutine sleeps for minutes inside the SDK.
- Writes are never retried by the SDK: every upload adds a key, so replaying a POST whose response
  was lost after B2C committed it would add a duplicate. A write that fails without a definite
  answer raises `TransientError(outcome_unknown=True)` and the caller re-reads before writing again.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable, Mapping
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
from azure.core.credentials import AccessToken
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import ClientAuthenticationError, ServiceRequestError
from azure.identity import AzureAuthorityHosts
from azure.identity.aio import (
    CertificateCredential,
    ClientAssertionCredential,
    ClientSecretCredential,
)
from kiota_abstractions.api_error import APIError
from kiota_abstractions.base_request_configuration import RequestConfiguration
from kiota_http.kiota_client_factory import KiotaClientFactory
from kiota_http.middleware import RetryHandler
from kiota_http.middleware.options import RetryHandlerOption
from msgraph_beta.generated.models.o_data_errors.o_data_error import ODataError
from msgraph_beta.graph_request_adapter import options as graph_default_options
from msgraph_core import GraphClientFactory
from msgraph_core.middleware import GraphTelemetryHandler
from msgraph_core.middleware.options import GraphTelemetryHandlerOption

from b2ckeys import metrics
from b2ckeys.graph.client import (
    ConcurrentWrite,
    Forbidden,
    GraphConnection,
    GraphError,
    InvalidRequest,
    KeySetAlreadyExists,
    KeySetNotFound,
    NoActiveKey,
    Throttled,
    TransientError,
    Unauthorized,
)

__all__ = [
    "REQUIRED_PERMISSION",
    "RenewableCredential",
    "build_credential",
    "build_http_client",
    "call_graph",
    "parse_retry_after",
    "write_config",
]

_T = TypeVar("_T")

REQUIRED_PERMISSION = "TrustFrameworkKeySet.ReadWrite.All"

# Authorities whose instance metadata azure-identity knows. Any other host (a sovereign
# deployment behind a private name, or the emulator) must not trigger instance discovery,
# which would ask the public cloud about it and fail, or leak the host name to it.
_PUBLIC_CLOUD_AUTHORITY_HOSTS = frozenset(
    {
        AzureAuthorityHosts.AZURE_PUBLIC_CLOUD,
        AzureAuthorityHosts.AZURE_GOVERNMENT,
        AzureAuthorityHosts.AZURE_CHINA,
    }
)

# B2C error codes, branched on instead of HTTP statuses because B2C's statuses are undocumented.
_NOT_FOUND_CODES = frozenset({"AADB2C90073"})
_ALREADY_EXISTS_CODES = frozenset({"AADB2C95028"})
_CONCURRENT_WRITE_CODES = frozenset({"AADB2C95053"})
_NO_ACTIVE_KEY_CODES = frozenset({"AADB2C90019", "AADB2C90220"})
_THROTTLED_CODES = frozenset({"AADB2C95043", "AADB2C90229", "AADB2C90244", "TooManyRequests"})

# Graph's throttling guide asks for a back-off when a 429 carries no Retry-After; 10 s is one
# window of the identity token bucket, so the next attempt meets a refilled bucket.
_DEFAULT_THROTTLE_SECONDS = 10.0

_AADSTS_DETAIL = re.compile(r"AADSTS\d+:[^\r\n]*")


# --- retries: reads only for short waits, writes never --------------------------------------------


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP-date (RFC 9110 §10.2.3).

    Returns None when the header is absent or unreadable. A date in the past gives 0.
    """
    if value is None:
        return None
    text = value.strip()
    # Graph has been seen sending "5,5" (the header repeated and folded); the first value wins.
    first = text.split(",", 1)[0].strip()
    try:
        return max(0.0, float(first))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; a naive result would be read as local time
        return None
    reference = time.time() if now is None else now
    return max(0.0, when.timestamp() - reference)


class _ShortWaitRetryHandler(RetryHandler):
    """kiota's RetryHandler, but a Retry-After above `max_retry_after` ends the retries.

    The stock handler sleeps any Retry-After below 180 s, up to `max_retries` times, which would
    park a reconcile (and the key set's write lock) for minutes. Returning the handler's own
    "too long" delay makes it hand the throttled response back at once, and the client raises
    Throttled with the server's Retry-After for the caller's scheduler.
    """

    def __init__(self, options: RetryHandlerOption, *, max_retry_after: float) -> None:
        super().__init__(options)
        self._max_retry_after = max_retry_after
        # Only idempotent methods are ever retried, whatever a request's options say.
        self.allowed_methods = frozenset({"GET", "HEAD"})

    def get_delay_time(
        self,
        retry_count: int,
        response: httpx.Response | None = None,
        delay: float = RetryHandlerOption.DEFAULT_DELAY,
    ) -> float:
        if response is not None:
            wait = parse_retry_after(response.headers.get("retry-after"))
            if wait is not None and wait > self._max_retry_after:
                return RetryHandlerOption.MAX_DELAY
        return float(super().get_delay_time(retry_count, response, delay))


def write_config() -> RequestConfiguration[Any]:
    # Per request as well as in the handler: a write must never be replayed by the SDK.
    return RequestConfiguration(options=[RetryHandlerOption(should_retry=False)])


# --- building the SDK stack -----------------------------------------------------------------------


def _graph_middleware(conn: GraphConnection) -> list[Any]:
    """The SDK's default middleware chain with our retry policy in place of the stock one."""
    read_retry = RetryHandlerOption(
        # No base delay on top of the exponential backoff: the SDK default (3 s) would make every
        # retried read wait at least 3.5 s even when the server did not ask for a wait.
        delay=0.0,
        max_retries=conn.read_retries,
    )
    chain: list[Any] = []
    for middleware in KiotaClientFactory.get_default_middleware(graph_default_options):
        if isinstance(middleware, RetryHandler):
            middleware = _ShortWaitRetryHandler(
                read_retry, max_retry_after=conn.max_retry_after_in_sdk
            )
        chain.append(middleware)
    telemetry = graph_default_options[GraphTelemetryHandlerOption.get_key()]
    chain.append(GraphTelemetryHandler(options=telemetry))
    return chain


def build_http_client(conn: GraphConnection) -> tuple[httpx.AsyncClient, httpx.AsyncHTTPTransport]:
    """An httpx client whose middleware pipeline is the SDK's, plus the socket-owning transport.

    The transport is returned because msgraph-core's AsyncGraphTransport does not close the
    transport it wraps: whoever built it has to.
    """
    # HTTP/1.1: one reconcile per key set sends a handful of sequential requests, so HTTP/2
    # multiplexing buys nothing, and h2/hpack log encoded header blocks (the bearer token) at DEBUG.
    transport = httpx.AsyncHTTPTransport(http2=False)

    async def sent(request: httpx.Request) -> None:
        request.extensions[_SENT_AT] = time.monotonic()

    async def answered(response: httpx.Response) -> None:
        request = response.request
        operation = graph_operation(request.method, request.url.path)
        metrics.GRAPH_REQUESTS.labels(operation, str(response.status_code)).inc()
        started = request.extensions.get(_SENT_AT)
        if isinstance(started, float):
            metrics.GRAPH_REQUEST_DURATION.labels(operation).observe(time.monotonic() - started)
        if response.status_code == 429:
            metrics.GRAPH_THROTTLED.labels(conn.tenant_id).inc()

    http = httpx.AsyncClient(
        transport=transport,
        base_url=conn.base_url,
        timeout=httpx.Timeout(conn.timeout_seconds),
        # The Graph base URL never redirects; kiota's RedirectHandler (in the chain) decides.
        follow_redirects=False,
        # Counted once per request the SDK sends (its retries of reads are inside the pipeline).
        event_hooks={"request": [sent], "response": [answered]},
    )
    # msgraph-core's factory re-wraps the client's transport with the middleware pipeline; the
    # client keeps our base_url because we pass the client in.
    GraphClientFactory.create_with_custom_middleware(_graph_middleware(conn), client=http)
    return http, transport


_SENT_AT = "b2ckeys.sent_at"
_KEY_SET_PATH = re.compile(
    r"/trustFramework/keySets(?P<item>/[^/]+)?(?:/(?P<tail>[A-Za-z0-9_]+)(?:\(\))?(?P<kid>/[^/]+)?)?/?$"
)


def graph_operation(method: str, path: str) -> str:
    """A Graph request named for metrics: the Graph action or the REST verb on key sets. Never
    a key set id or kid (unbounded, and a label must stay bounded)."""
    match = _KEY_SET_PATH.search(path)
    if match is None:
        return "other"
    tail = match.group("tail")
    if tail == "keys_v2":
        return "setKeyStatus" if match.group("kid") else "listKeys"
    if tail:
        return tail  # uploadPkcs12, uploadCertificate, uploadSecret, generateKey, getActiveKey
    if match.group("item"):
        return {"GET": "getKeySet", "DELETE": "deleteKeySet"}.get(method, "updateKeySet")
    return "createKeySet" if method == "POST" else "listKeySets"


def _authority_kwargs(authority_host: str) -> dict[str, Any]:
    host = urlsplit(authority_host).hostname or authority_host
    kwargs: dict[str, Any] = {"authority": authority_host}
    if host.lower() not in _PUBLIC_CLOUD_AUTHORITY_HOSTS:
        # Instance discovery asks the public cloud to vouch for the authority; for the emulator or
        # a private authority that request fails (or leaks the host name), so it is turned off.
        kwargs["disable_instance_discovery"] = True
    return kwargs


def _token_file_reader(path: str) -> Callable[[], str]:
    def read_assertion() -> str:
        # Read on every token request: the kubelet rotates projected service account tokens,
        # and a token is only requested when the cached access token is about to expire.
        with open(path, encoding="utf-8") as token_file:
            return token_file.read().strip()

    return read_assertion


class RenewableCredential:
    """An azure-identity credential that can be swapped for a fresh one (an empty token cache):
    azure-identity offers no way to drop a cached token that Graph has refused."""

    def __init__(self, factory: Callable[[], AsyncTokenCredential]) -> None:
        self._factory = factory
        self._inner = factory()

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return await self._inner.get_token(*scopes, **kwargs)

    async def renew(self) -> None:
        stale, self._inner = self._inner, self._factory()
        await stale.close()

    async def close(self) -> None:
        await self._inner.close()

    async def __aenter__(self) -> RenewableCredential:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()


def build_credential(conn: GraphConnection) -> AsyncTokenCredential:
    kwargs = _authority_kwargs(conn.authority_host)
    if conn.client_secret:
        return ClientSecretCredential(
            conn.tenant_id, conn.client_id, conn.client_secret.reveal(), **kwargs
        )
    if conn.client_certificate_path or conn.client_certificate_data:
        password = conn.client_certificate_password
        where = (
            f"at {conn.client_certificate_path}"
            if conn.client_certificate_path
            else "from the tenant's Secret"
        )
        try:
            if conn.client_certificate_data is not None:
                return CertificateCredential(
                    conn.tenant_id,
                    conn.client_id,
                    certificate_data=conn.client_certificate_data.reveal(),
                    password=password.reveal() if password else None,
                    **kwargs,
                )
            return CertificateCredential(
                conn.tenant_id,
                conn.client_id,
                certificate_path=conn.client_certificate_path,
                password=password.reveal() if password else None,
                **kwargs,
            )
        except (OSError, ValueError) as exc:
            raise Unauthorized(
                f"cannot load the client certificate {where} ({type(exc).__name__}); it must be "
                "PEM or PKCS#12 holding the private key, with client_certificate_password set "
                "if it is encrypted"
            ) from None
    assert conn.federated_token_file is not None  # one of the three, checked above
    return ClientAssertionCredential(
        conn.tenant_id, conn.client_id, _token_file_reader(conn.federated_token_file), **kwargs
    )


def _credential_kind(conn: GraphConnection) -> str:
    if conn.client_secret:
        return "client secret (check it is the secret's value, not its id, and not expired)"
    if conn.client_certificate_path or conn.client_certificate_data:
        return "client certificate (check its public part is uploaded to the app registration)"
    return (
        "federated token (check the app's federated credential issuer, subject and audience "
        "match the service account token)"
    )


# --- sending --------------------------------------------------------------------------------------


async def call_graph(
    operation: Callable[[], Awaitable[_T]],
    *,
    write: bool,
    conn: GraphConnection,
    credential: RenewableCredential,
) -> _T:
    """Run one SDK call; every failure comes out as a `GraphError` (the SDK's chained to it)."""
    try:
        try:
            return await operation()
        except APIError as exc:
            if not _token_rejected(exc):
                raise
        # Graph refused a token azure-identity still held valid (clock skew, revocation, a
        # token minted against a moved clock). A 401 means nothing was processed, so even a
        # write is safe to send once more, with a freshly issued token.
        await credential.renew()
        return await operation()
    except GraphError:
        raise
    except APIError as exc:
        raise _translate_api_error(exc, write=write, conn=conn) from exc
    except ClientAuthenticationError as exc:
        raise _translate_credential_error(exc, conn) from exc
    except ServiceRequestError as exc:
        # The token endpoint was unreachable: no Graph request was sent.
        raise TransientError(
            f"cannot reach the authority {conn.authority_host} ({type(exc).__name__})"
        ) from exc
    except httpx.HTTPError as exc:
        raise _translate_transport_error(exc, write=write) from exc


def _token_rejected(exc: APIError) -> bool:
    if exc.response_status_code != 401:
        return False
    error = getattr(exc, "error", None)
    return getattr(error, "code", None) == "InvalidAuthenticationToken"


# --- translating failures -------------------------------------------------------------------------


def _header(headers: Mapping[str, str] | None, name: str) -> str | None:
    """A response header by name, case-insensitively (kiota hands over httpx's Headers)."""
    if not headers:
        return None
    if isinstance(headers, httpx.Headers):
        value: str | None = headers.get(name)
        return value
    wanted = name.lower()
    return next((str(v) for k, v in headers.items() if k.lower() == wanted), None)


def _error_details(exc: APIError) -> tuple[str | None, str | None, str | None]:
    """(code, message, request_id) from Graph's OData error body, when there was one."""
    code = message = request_id = None
    if isinstance(exc, ODataError) and exc.error is not None:
        code = exc.error.code or None
        message = exc.error.message or None
        inner = exc.error.inner_error
        if inner is not None:
            request_id = inner.request_id or None
    request_id = request_id or _header(exc.response_headers, "request-id")
    return code, message, request_id


def _translate_api_error(exc: APIError, *, write: bool, conn: GraphConnection) -> GraphError:
    status = exc.response_status_code
    code, graph_message, request_id = _error_details(exc)
    message = graph_message or f"Graph answered HTTP {status} without an error message"
    common: dict[str, Any] = {"status": status, "code": code, "request_id": request_id}
    retry_after = parse_retry_after(_header(exc.response_headers, "retry-after"))

    if code in _NOT_FOUND_CODES:
        return KeySetNotFound(message, **common)
    if code in _ALREADY_EXISTS_CODES:
        return KeySetAlreadyExists(message, **common)
    if code in _CONCURRENT_WRITE_CODES:
        return ConcurrentWrite(message, **common)
    if code in _NO_ACTIVE_KEY_CODES:
        return NoActiveKey(message, **common)
    if status == 429 or code in _THROTTLED_CODES:
        wait = _DEFAULT_THROTTLE_SECONDS if retry_after is None else retry_after
        return Throttled(message, **common, retry_after=wait)
    if status == 401:
        return Unauthorized(
            f"Graph rejected the access token of app {conn.client_id} in tenant "
            f"{conn.tenant_id}: {message}",
            **common,
        )
    if status == 403:
        return Forbidden(
            f"{message}. Grant the app {conn.client_id} the Microsoft Graph application "
            f"permission {REQUIRED_PERMISSION} (with admin consent) in tenant {conn.tenant_id}",
            **common,
        )
    if status == 404:
        return KeySetNotFound(message, **common)
    if status is not None and status >= 500:
        if write:
            # B2C may have committed the write before failing (or before a gateway gave up).
            return TransientError(message, **common, outcome_unknown=True)
        if retry_after is not None:
            return Throttled(message, **common, retry_after=retry_after)
        return TransientError(message, **common, outcome_unknown=False)
    return InvalidRequest(message, **common)


# httpx failures where the request provably never reached the server.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)


def _translate_transport_error(exc: httpx.HTTPError, *, write: bool) -> GraphError:
    kind = type(exc).__name__
    if isinstance(exc, httpx.TimeoutException):
        what = f"Graph did not answer in time ({kind})"
    else:
        what = f"the connection to Graph failed ({kind})"
    unknown = write and not isinstance(exc, _NOT_SENT)
    if unknown:
        what += "; the write may have been applied, re-read before retrying"
    return TransientError(what, outcome_unknown=unknown)


def _translate_credential_error(
    exc: ClientAuthenticationError, conn: GraphConnection
) -> GraphError:
    detail_match = _AADSTS_DETAIL.search(str(exc.message or ""))
    detail = detail_match.group(0).strip() if detail_match else type(exc).__name__
    return Unauthorized(
        f"no access token for app {conn.client_id} in tenant {conn.tenant_id} from "
        f"{conn.authority_host}: {detail}. Check the {_credential_kind(conn)}",
        code=detail.split(":", 1)[0] if detail_match else None,
    )
