"""The KeySetClient on the real Microsoft Graph beta SDK, kiota middleware and azure-identity.

This is the only module that imports `msgraph_beta`, `msgraph_core`, `kiota_*` and
`azure.identity`; everything it returns or raises is a plain value or a `GraphError` from
`b2ckeys.graph.client`.

Two rules shape the request pipeline:

- Reads are idempotent, so kiota's RetryHandler may retry them on 429/503/504, but only while
  the server asks for a short wait (`GraphConnection.max_retry_after_in_sdk`); a longer
  Retry-After comes straight back as `Throttled` so no coroutine sleeps for minutes inside the SDK.
- Writes are never retried by the SDK: every upload adds a key, so replaying a POST whose response
  was lost after B2C committed it would add a duplicate. A write that fails without a definite
  answer raises `TransientError(outcome_unknown=True)` and the caller re-reads before writing again.

SDK traps handled on purpose: getActiveKey is called as `getActiveKey()` (the SDK's own URL);
the key set update builder sends PATCH, not PUT, and is never used (the operator only appends);
keys_v2/{kid} has no PATCH builder, so that request is built by hand and sent through the same
adapter; key sets are parsed into a lean view, not the SDK's Entity model (see `_KeySetView`);
the adapter's base URL is set explicitly (kiota-http ignores its constructor argument); closing
the httpx client does not close the transport msgraph-core wraps, so `aclose` closes it.
"""

from __future__ import annotations

import importlib
import json
import re
import time
import warnings
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, TypeVar
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
from kiota_abstractions.method import Method
from kiota_abstractions.request_information import RequestInformation
from kiota_abstractions.serialization import (
    Parsable,
    ParsableFactory,
    ParseNode,
    SerializationWriter,
)
from kiota_authentication_azure.azure_identity_authentication_provider import (
    AzureIdentityAuthenticationProvider,
)
from kiota_http.httpx_request_adapter import HttpxRequestAdapter
from kiota_http.kiota_client_factory import KiotaClientFactory
from kiota_http.middleware import RetryHandler
from kiota_http.middleware.options import RetryHandlerOption
from kiota_serialization_json.json_parse_node import JsonParseNode
from msgraph_beta import GraphRequestAdapter, GraphServiceClient
from msgraph_beta.generated.models.o_data_errors.o_data_error import ODataError
from msgraph_beta.generated.models.trust_framework_key import TrustFrameworkKey
from msgraph_beta.generated.models.trust_framework_key_set import TrustFrameworkKeySet
from msgraph_beta.generated.models.trust_framework_key_status import TrustFrameworkKeyStatus
from msgraph_beta.generated.models.trust_framework_key_v2 import TrustFrameworkKey_v2
from msgraph_beta.generated.models.trust_framework_key_v2_collection_response import (
    TrustFrameworkKey_v2CollectionResponse,
)
from msgraph_beta.generated.trust_framework.key_sets.item.generate_key.generate_key_post_request_body import (  # noqa: E501
    GenerateKeyPostRequestBody,
)
from msgraph_beta.generated.trust_framework.key_sets.item.upload_certificate.upload_certificate_post_request_body import (  # noqa: E501
    UploadCertificatePostRequestBody,
)
from msgraph_beta.generated.trust_framework.key_sets.item.upload_pkcs12.upload_pkcs12_post_request_body import (  # noqa: E501
    UploadPkcs12PostRequestBody,
)
from msgraph_beta.generated.trust_framework.key_sets.item.upload_secret.upload_secret_post_request_body import (  # noqa: E501
    UploadSecretPostRequestBody,
)
from msgraph_beta.graph_request_adapter import options as graph_default_options
from msgraph_core import GraphClientFactory
from msgraph_core.middleware import GraphTelemetryHandler
from msgraph_core.middleware.options import GraphTelemetryHandlerOption

from b2ckeys.formats import b64url_decode
from b2ckeys.graph.client import (
    ConcurrentWrite,
    Forbidden,
    GraphConnection,
    GraphError,
    InvalidRequest,
    KeySetAlreadyExists,
    KeySetNotFound,
    KeyStatus,
    KeyType,
    KeyUse,
    NoActiveKey,
    RemoteKey,
    RemoteKeySet,
    Throttled,
    TransientError,
    Unauthorized,
)
from b2ckeys.secret import SecretStr

if TYPE_CHECKING:
    from msgraph_beta.generated.trust_framework.key_sets.item.trust_framework_key_set_item_request_builder import (  # noqa: E501
        TrustFrameworkKeySetItemRequestBuilder,
    )

__all__ = ["MsGraphKeySetClient", "parse_retry_after", "warm_up_models"]

# The request builders this client reaches; the SDK imports each lazily on first use.
_KEY_SETS = "msgraph_beta.generated.trust_framework.key_sets"
_REQUEST_BUILDER_MODULES = (
    "msgraph_beta.generated.trust_framework.trust_framework_request_builder",
    f"{_KEY_SETS}.key_sets_request_builder",
    f"{_KEY_SETS}.item.trust_framework_key_set_item_request_builder",
    f"{_KEY_SETS}.item.generate_key.generate_key_request_builder",
    f"{_KEY_SETS}.item.upload_secret.upload_secret_request_builder",
    f"{_KEY_SETS}.item.upload_certificate.upload_certificate_request_builder",
    f"{_KEY_SETS}.item.upload_pkcs12.upload_pkcs12_request_builder",
    f"{_KEY_SETS}.item.get_active_key.get_active_key_request_builder",
    f"{_KEY_SETS}.item.keys_v2.keys_v2_request_builder",
    f"{_KEY_SETS}.item.keys_v2.item.trust_framework_key_v2_k_item_request_builder",
)

# Loading those modules announces the SDK's own deprecated classes (kiota's GetQueryParameters,
# one RequestConfiguration per builder). Load them all now, once, with exactly those notices
# silenced, so none surfaces from inside a reconcile or fails a run that treats warnings as errors.
with warnings.catch_warnings():
    warnings.filterwarnings(
        "ignore", message="GetQueryParameters is deprecated", category=DeprecationWarning
    )
    warnings.filterwarnings(
        "ignore",
        message="This class is deprecated. Please use the generic RequestConfiguration",
        category=DeprecationWarning,
    )
    for _module in _REQUEST_BUILDER_MODULES:
        importlib.import_module(_module)

_T = TypeVar("_T")
_ViewT = TypeVar("_ViewT", bound=Parsable)

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


# --- Retry-After ----------------------------------------------------------------------------------


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


def _build_http_client(conn: GraphConnection) -> tuple[httpx.AsyncClient, httpx.AsyncHTTPTransport]:
    """An httpx client whose middleware pipeline is the SDK's, plus the socket-owning transport.

    The transport is returned because msgraph-core's AsyncGraphTransport does not close the
    transport it wraps: whoever built it has to.
    """
    # HTTP/1.1: one reconcile per key set sends a handful of sequential requests, so HTTP/2
    # multiplexing buys nothing, and h2/hpack log encoded header blocks (the bearer token) at DEBUG.
    transport = httpx.AsyncHTTPTransport(http2=False)
    http = httpx.AsyncClient(
        transport=transport,
        base_url=conn.base_url,
        timeout=httpx.Timeout(conn.timeout_seconds),
        # The Graph base URL never redirects; kiota's RedirectHandler (in the chain) decides.
        follow_redirects=False,
    )
    # msgraph-core's factory re-wraps the client's transport with the middleware pipeline; the
    # client keeps our base_url because we pass the client in.
    GraphClientFactory.create_with_custom_middleware(_graph_middleware(conn), client=http)
    return http, transport


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


def _token_rejected(exc: APIError) -> bool:
    if exc.response_status_code != 401:
        return False
    error = getattr(exc, "error", None)
    return getattr(error, "code", None) == "InvalidAuthenticationToken"


class _RenewableCredential:
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

    async def __aenter__(self) -> _RenewableCredential:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()


def _build_credential(conn: GraphConnection) -> AsyncTokenCredential:
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


# --- values ---------------------------------------------------------------------------------------

_STATUS_NAMES: dict[str, KeyStatus] = {"enabled": "enabled", "disabled": "disabled"}


def _key_status(raw: Any) -> KeyStatus:
    if raw is None:
        # B2C creates keys enabled, and the keys of a key set often come without a status.
        return "enabled"
    name = raw.value if isinstance(raw, TrustFrameworkKeyStatus) else str(raw)
    return _STATUS_NAMES.get(str(name), "unknown")


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _to_remote_key(model: Any) -> RemoteKey:
    return RemoteKey(
        kid=model.kid or "",
        kty=model.kty or "",
        use=model.use or "",
        status=_key_status(model.status),
        nbf=_optional_int(model.nbf),
        exp=_optional_int(model.exp),
        x5t=model.x5t or None,
        x5c=tuple(model.x5c or ()),
        n=model.n or None,
        e=model.e or None,
    )


def _to_remote_key_set(model: Any) -> RemoteKeySet:
    return RemoteKeySet(id=model.id or "", keys=tuple(_to_remote_key(k) for k in model.keys or ()))


def _required(value: _T | None, what: str) -> _T:
    if value is None:
        raise TransientError(f"Graph answered {what} with an empty body")
    return value


def _write_config() -> RequestConfiguration[Any]:
    # Per request as well as in the handler: a write must never be replayed by the SDK.
    return RequestConfiguration(options=[RetryHandlerOption(should_retry=False)])


# --- lean response views -------------------------------------------------------------------------


@dataclass
class _KeySetView(Parsable):
    """A trustFrameworkKeySet as this client reads it: `id` and `keys`.

    The SDK's TrustFrameworkKeySet derives from Entity, whose field table runs about 2,500 import
    statements on every parse: about 3 s the first time in a process and about 6 ms per key set
    after that (measured). Parsing the two members with the SDK's own light TrustFrameworkKey
    keeps everything else (request builders, auth, middleware, ODataError) as the SDK does it.
    """

    id: str | None = None
    keys: list[TrustFrameworkKey] | None = None

    @staticmethod
    def create_from_discriminator_value(parse_node: ParseNode) -> _KeySetView:
        return _KeySetView()

    def get_field_deserializers(self) -> dict[str, Callable[[ParseNode], None]]:
        def read_id(node: ParseNode) -> None:
            self.id = node.get_str_value()

        def read_keys(node: ParseNode) -> None:
            self.keys = node.get_collection_of_object_values(TrustFrameworkKey)

        return {"id": read_id, "keys": read_keys}

    def serialize(self, writer: SerializationWriter) -> None:
        raise TypeError("_KeySetView is read-only; send TrustFrameworkKeySet instead")


@dataclass
class _KeySetPageView(Parsable):
    """One page of GET /trustFramework/keySets."""

    value: list[_KeySetView] | None = None
    odata_next_link: str | None = None

    @staticmethod
    def create_from_discriminator_value(parse_node: ParseNode) -> _KeySetPageView:
        return _KeySetPageView()

    def get_field_deserializers(self) -> dict[str, Callable[[ParseNode], None]]:
        def read_value(node: ParseNode) -> None:
            self.value = node.get_collection_of_object_values(_KeySetView)

        def read_next_link(node: ParseNode) -> None:
            self.odata_next_link = node.get_str_value()

        return {"value": read_value, "@odata.nextLink": read_next_link}

    def serialize(self, writer: SerializationWriter) -> None:
        raise TypeError("_KeySetPageView is read-only")


# What every Graph call raises on an error status; the SDK's builders use the same mapping.
_ERROR_MAPPING: dict[str, type[ParsableFactory[Parsable]]] = {"XXX": ODataError}


# --- warm-up --------------------------------------------------------------------------------------

_SAMPLE_KEY = {"kid": "k", "kty": "RSA", "use": "sig", "nbf": 1, "exp": 2, "status": "enabled"}


def warm_up_models() -> float:
    """Parse one of each Graph model this client reads; returns the seconds it took.

    The first parse of an SDK Entity model imports thousands of generated modules (about 4 s).
    This client never parses one (see `_KeySetView`), so this now costs milliseconds; call it at
    startup anyway, so any first-parse cost a future SDK brings lands there and not in the first
    reconcile.
    """
    started = time.perf_counter()
    samples: list[tuple[Any, Any]] = [
        (_KeySetPageView, {"value": [{"id": "x", "keys": [_SAMPLE_KEY]}]}),
        (_KeySetView, {"id": "x", "keys": [_SAMPLE_KEY]}),
        (TrustFrameworkKey, _SAMPLE_KEY),
        (TrustFrameworkKey_v2CollectionResponse, {"value": [_SAMPLE_KEY]}),
        (ODataError, {"error": {"code": "c", "message": "m", "innerError": {"request-id": "r"}}}),
    ]
    for model, body in samples:
        JsonParseNode(json.loads(json.dumps(body))).get_object_value(model)
    return time.perf_counter() - started


# --- the client -----------------------------------------------------------------------------------


class MsGraphKeySetClient:
    """`KeySetClient` over msgraph-beta-sdk. Build with `from_connection`; close with `aclose`."""

    def __init__(
        self,
        *,
        conn: GraphConnection,
        credential: _RenewableCredential,
        http: httpx.AsyncClient,
        transport: httpx.AsyncBaseTransport,
    ) -> None:
        self._conn = conn
        self._credential = credential
        self._http = http
        self._transport = transport
        graph_host = urlsplit(conn.base_url).hostname or ""
        auth = AzureIdentityAuthenticationProvider(
            credential,
            scopes=list(conn.scopes),
            # Bearer tokens go to the Graph host only, never to a host named in a nextLink.
            allowed_hosts=[graph_host],
        )
        self._adapter: HttpxRequestAdapter = GraphRequestAdapter(auth, client=http)
        # kiota-http ignores the adapter's constructor base_url and httpx appends a slash to the
        # client's; set it explicitly so request URLs are exactly `{base_url}/trustFramework/...`.
        self._adapter.base_url = conn.base_url.rstrip("/")
        self._key_sets = GraphServiceClient(request_adapter=self._adapter).trust_framework.key_sets
        self._closed = False

    @classmethod
    def from_connection(cls, conn: GraphConnection) -> MsGraphKeySetClient:
        scheme = urlsplit(conn.base_url).scheme
        if scheme != "https":
            raise ValueError(f"the Graph base URL must be https, got {scheme or 'no'} scheme")
        credential = _RenewableCredential(lambda: _build_credential(conn))
        http, transport = _build_http_client(conn)
        return cls(conn=conn, credential=credential, http=http, transport=transport)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await self._http.aclose()
        finally:
            try:
                # AsyncGraphTransport.aclose() does not reach the transport it wraps (msgraph-core
                # 1.5): without this the pool's sockets leak (ResourceWarning: unclosed transport).
                await self._transport.aclose()
            finally:
                await self._credential.close()

    # --- the plumbing every call goes through ---

    async def _call(self, operation: Callable[[], Awaitable[_T]], *, write: bool) -> _T:
        try:
            try:
                return await operation()
            except APIError as exc:
                if not _token_rejected(exc):
                    raise
            # Graph refused a token azure-identity still held valid (clock skew, revocation, a
            # token minted against a moved clock). A 401 means nothing was processed, so even a
            # write is safe to send once more, with a freshly issued token.
            await self._credential.renew()
            return await operation()
        except GraphError:
            raise
        except APIError as exc:
            raise _translate_api_error(exc, write=write, conn=self._conn) from exc
        except ClientAuthenticationError as exc:
            raise _translate_credential_error(exc, self._conn) from exc
        except ServiceRequestError as exc:
            # The token endpoint was unreachable: no Graph request was sent.
            raise TransientError(
                f"cannot reach the authority {self._conn.authority_host} ({type(exc).__name__})"
            ) from exc
        except httpx.HTTPError as exc:
            raise _translate_transport_error(exc, write=write) from exc

    async def _read(self, request: RequestInformation, view: ParsableFactory[_ViewT]) -> _ViewT:
        """Send a GET the SDK built, parsing the answer into one of the lean views above."""
        model = await self._call(
            lambda: self._adapter.send_async(request, view, _ERROR_MAPPING), write=False
        )
        return _required(model, f"GET {request.url_template}")

    def _item(self, key_set_id: str) -> TrustFrameworkKeySetItemRequestBuilder:
        return self._key_sets.by_trust_framework_key_set_id(key_set_id)

    # --- KeySetClient ---

    async def list_key_sets(self) -> Sequence[RemoteKeySet]:
        builder = self._key_sets
        found: list[RemoteKeySet] = []
        while True:
            page = await self._read(builder.to_get_request_information(), _KeySetPageView)
            found.extend(_to_remote_key_set(item) for item in page.value or ())
            if not page.odata_next_link:
                return found
            builder = self._key_sets.with_url(page.odata_next_link)

    async def granted_roles(self) -> frozenset[str] | None:
        """The application roles in this app's Graph access token, or None when the token is
        not a readable JWT: how a tenant check tells read-write from read-only without writing.
        Call after a Graph call has succeeded (the credential then has the token cached)."""
        token = await self._credential.get_token(*self._conn.scopes)
        parts = token.token.split(".")
        payload = b64url_decode(parts[1]) if len(parts) == 3 else None
        try:
            claims = json.loads(payload) if payload else None
        except ValueError:
            claims = None
        if not isinstance(claims, dict) or not isinstance(claims.get("roles", []), list):
            return None
        return frozenset(str(role) for role in claims.get("roles", []))

    async def get_key_set(self, key_set_id: str) -> RemoteKeySet:
        request = self._item(key_set_id).to_get_request_information()
        return _to_remote_key_set(await self._read(request, _KeySetView))

    async def create_key_set(self, key_set_id: str) -> RemoteKeySet:
        # `odata_type` stays None: B2C refuses a create body carrying @odata.type.
        body = TrustFrameworkKeySet(id=key_set_id)
        request = self._key_sets.to_post_request_information(body, _write_config())
        model = await self._call(
            lambda: self._adapter.send_async(request, _KeySetView, _ERROR_MAPPING), write=True
        )
        return _to_remote_key_set(_required(model, "POST keySets"))

    async def delete_key_set(self, key_set_id: str) -> None:
        await self._call(lambda: self._item(key_set_id).delete(_write_config()), write=True)

    async def generate_key(
        self, key_set_id: str, *, kty: KeyType, use: KeyUse, nbf: int | None, exp: int | None
    ) -> RemoteKey:
        body = GenerateKeyPostRequestBody(
            kty=kty, use=use, nbf=_optional_int(nbf), exp=_optional_int(exp)
        )
        model = await self._call(
            lambda: self._item(key_set_id).generate_key.post(body, _write_config()), write=True
        )
        return _to_remote_key(_required(model, "generateKey"))

    async def upload_secret(
        self, key_set_id: str, *, secret: SecretStr, use: KeyUse, nbf: int | None, exp: int | None
    ) -> RemoteKey:
        body = UploadSecretPostRequestBody(
            use=use, k=secret.reveal(), nbf=_optional_int(nbf), exp=_optional_int(exp)
        )
        model = await self._call(
            lambda: self._item(key_set_id).upload_secret.post(body, _write_config()), write=True
        )
        return _to_remote_key(_required(model, "uploadSecret"))

    async def upload_certificate(self, key_set_id: str, *, certificate_der_b64: str) -> RemoteKey:
        body = UploadCertificatePostRequestBody(key=certificate_der_b64)
        model = await self._call(
            lambda: self._item(key_set_id).upload_certificate.post(body, _write_config()),
            write=True,
        )
        return _to_remote_key(_required(model, "uploadCertificate"))

    async def upload_pkcs12(
        self, key_set_id: str, *, pfx_b64: SecretStr, password: SecretStr
    ) -> RemoteKey:
        body = UploadPkcs12PostRequestBody(key=pfx_b64.reveal(), password=password.reveal())
        model = await self._call(
            lambda: self._item(key_set_id).upload_pkcs12.post(body, _write_config()), write=True
        )
        return _to_remote_key(_required(model, "uploadPkcs12"))

    async def get_active_key(self, key_set_id: str) -> RemoteKey:
        # The SDK calls the OData function as `getActiveKey()`, with parentheses.
        model = await self._call(lambda: self._item(key_set_id).get_active_key.get(), write=False)
        if model is None or not model.kid:
            raise NoActiveKey(f"key set {key_set_id} reported no active key", status=200)
        return _to_remote_key(model)

    async def list_keys(self, key_set_id: str) -> Sequence[RemoteKey]:
        page = await self._call(lambda: self._item(key_set_id).keys_v2.get(), write=False)
        keys: list[RemoteKey] = []
        while page is not None:
            keys.extend(_to_remote_key(item) for item in page.value or ())
            next_link = page.odata_next_link
            if not next_link:
                break
            page = await self._call(
                lambda url=next_link: self._item(key_set_id).keys_v2.with_url(url).get(),  # type: ignore[misc]
                write=False,
            )
        return keys

    async def set_key_status(self, key_set_id: str, kid: str, *, enabled: bool) -> None:
        # The SDK has no patch() on keys_v2/{kid}; build the request from the SDK's own URL
        # template and send it through the same adapter, so auth and middleware still apply.
        target = self._item(key_set_id).keys_v2.by_trust_framework_key_v2_kid(kid)
        request = RequestInformation(Method.PATCH, target.url_template, target.path_parameters)
        request.configure(_write_config())
        request.headers.try_add("Accept", "application/json")
        status = TrustFrameworkKeyStatus.Enabled if enabled else TrustFrameworkKeyStatus.Disabled
        request.set_content_from_parsable(
            self._adapter, "application/json", TrustFrameworkKey_v2(status=status)
        )
        await self._call(
            lambda: self._adapter.send_no_response_content_async(request, _ERROR_MAPPING),
            write=True,
        )
