"""The KeySetClient on the real Microsoft Graph beta SDK: which request each call sends.

This module and `msgraph_pipeline` (the credential, the HTTP client with its write-safe retry
policy, and the translation of failures) are the only ones that import `msgraph_beta`,
`msgraph_core`, `kiota_*` and `azure.identity`; everything they return or raise is a plain value
or a `GraphError` from `b2ckeys.graph.client`.

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
import time
import warnings
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import httpx
from kiota_abstractions.method import Method
from kiota_abstractions.native_response_handler import NativeResponseHandler
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
from kiota_http.middleware.options import ResponseHandlerOption, RetryHandlerOption
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

from b2ckeys.formats import b64url_decode
from b2ckeys.graph.client import (
    GraphConnection,
    KeyStatus,
    KeyType,
    KeyUse,
    NoActiveKey,
    RemoteKey,
    RemoteKeySet,
    TransientError,
)
from b2ckeys.graph.msgraph_pipeline import (
    RenewableCredential,
    build_credential,
    build_http_client,
    call_graph,
    write_config,
)
from b2ckeys.graph.raw import RawResponse
from b2ckeys.secret import SecretStr

if TYPE_CHECKING:
    from msgraph_beta.generated.trust_framework.key_sets.item.trust_framework_key_set_item_request_builder import (  # noqa: E501
        TrustFrameworkKeySetItemRequestBuilder,
    )

__all__ = ["MsGraphKeySetClient", "warm_up_models"]

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
        credential: RenewableCredential,
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
        credential = RenewableCredential(lambda: build_credential(conn))
        http, transport = build_http_client(conn)
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
        return await call_graph(
            operation, write=write, conn=self._conn, credential=self._credential
        )

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
        request = self._key_sets.to_post_request_information(body, write_config())
        model = await self._call(
            lambda: self._adapter.send_async(request, _KeySetView, _ERROR_MAPPING), write=True
        )
        return _to_remote_key_set(_required(model, "POST keySets"))

    async def delete_key_set(self, key_set_id: str) -> None:
        await self._call(lambda: self._item(key_set_id).delete(write_config()), write=True)

    async def generate_key(
        self, key_set_id: str, *, kty: KeyType, use: KeyUse, nbf: int | None, exp: int | None
    ) -> RemoteKey:
        body = GenerateKeyPostRequestBody(
            kty=kty, use=use, nbf=_optional_int(nbf), exp=_optional_int(exp)
        )
        model = await self._call(
            lambda: self._item(key_set_id).generate_key.post(body, write_config()), write=True
        )
        return _to_remote_key(_required(model, "generateKey"))

    async def upload_secret(
        self, key_set_id: str, *, secret: SecretStr, use: KeyUse, nbf: int | None, exp: int | None
    ) -> RemoteKey:
        body = UploadSecretPostRequestBody(
            use=use, k=secret.reveal(), nbf=_optional_int(nbf), exp=_optional_int(exp)
        )
        model = await self._call(
            lambda: self._item(key_set_id).upload_secret.post(body, write_config()), write=True
        )
        return _to_remote_key(_required(model, "uploadSecret"))

    async def upload_certificate(self, key_set_id: str, *, certificate_der_b64: str) -> RemoteKey:
        body = UploadCertificatePostRequestBody(key=certificate_der_b64)
        model = await self._call(
            lambda: self._item(key_set_id).upload_certificate.post(body, write_config()),
            write=True,
        )
        return _to_remote_key(_required(model, "uploadCertificate"))

    async def upload_pkcs12(
        self, key_set_id: str, *, pfx_b64: SecretStr, password: SecretStr
    ) -> RemoteKey:
        body = UploadPkcs12PostRequestBody(key=pfx_b64.reveal(), password=password.reveal())
        model = await self._call(
            lambda: self._item(key_set_id).upload_pkcs12.post(body, write_config()), write=True
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
        request.configure(write_config())
        request.headers.try_add("Accept", "application/json")
        status = TrustFrameworkKeyStatus.Enabled if enabled else TrustFrameworkKeyStatus.Disabled
        request.set_content_from_parsable(
            self._adapter, "application/json", TrustFrameworkKey_v2(status=status)
        )
        await self._call(
            lambda: self._adapter.send_no_response_content_async(request, _ERROR_MAPPING),
            write=True,
        )

    # --- raw requests (b2ckeys conformance) ---

    async def send_raw(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        *,
        content_type: str | None = "application/json",
    ) -> RawResponse:
        """Send one request as given, through the same adapter, credential and middleware as
        every other call, and hand back the answer whatever its status.

        `path` is below the base URL and sent as written (getActiveKey without parentheses,
        PUT with a kid: requests the SDK's builders will not make). The SDK never retries it,
        not even a read, so a 429 reaches the caller with its headers. Token and transport
        failures still raise `GraphError`s.
        """
        request = RequestInformation(Method[method.upper()], "{+baseurl}{+path}", {"path": path})
        request.add_request_options(
            [
                RetryHandlerOption(should_retry=False),
                ResponseHandlerOption(NativeResponseHandler()),
            ]
        )
        request.headers.try_add("Accept", "application/json")
        if body is not None:
            request.content = json.dumps(body).encode()
            if content_type is not None:
                request.headers.try_add("Content-Type", content_type)

        async def send() -> object:
            # With the native response handler the adapter hands back the httpx response itself.
            return await self._adapter.send_primitive_async(request, "bytes", _ERROR_MAPPING)

        response = await self._call(send, write=method.upper() != "GET")
        if not isinstance(response, httpx.Response):
            raise TransientError(f"{method} {path}: the SDK returned no HTTP response")
        try:
            parsed = response.json() if response.content else None
        except ValueError:
            parsed = None
        headers = {name.lower(): value for name, value in response.headers.items()}
        return RawResponse(method.upper(), path, response.status_code, headers, parsed)
