"""The narrow interface b2ckeys needs from Microsoft Graph's B2C key set API.

Only the operations the operator uses are listed. The Graph SDK's own types stop at
`b2ckeys.graph.msgraph` and `b2ckeys.graph.msgraph_pipeline`; everything else speaks these
plain values and errors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from b2ckeys.secret import SecretBytes, SecretStr

KeyType = Literal["RSA", "oct"]
KeyUse = Literal["sig", "enc"]
KeyStatus = Literal["enabled", "disabled", "unknown"]


@dataclass(frozen=True)
class RemoteKey:
    """The public face of one key in a B2C key set (private members are never readable)."""

    kid: str
    kty: str
    use: str
    status: KeyStatus = "enabled"
    nbf: int | None = None  # NumericDate, seconds since the epoch (UTC)
    exp: int | None = None
    x5t: str | None = None  # base64url SHA-1 of the leaf certificate's DER
    x5c: tuple[str, ...] = ()
    n: str | None = None
    e: str | None = None


@dataclass(frozen=True)
class RemoteKeySet:
    id: str
    keys: tuple[RemoteKey, ...] = ()


@dataclass(frozen=True)
class GraphConnection:
    """Where Graph is and how to authenticate to it (read once from settings, never from env here).

    Exactly one of client_secret, client_certificate_path or federated_token_file is set.
    """

    tenant_id: str
    client_id: str
    client_secret: SecretStr | None = None
    client_certificate_path: str | None = None
    # A PEM certificate with its private key, in memory (a tenant's kubernetes.io/tls Secret):
    # key material is never written to disk.
    client_certificate_data: SecretBytes | None = None
    client_certificate_password: SecretStr | None = None
    federated_token_file: str | None = None
    authority_host: str = "https://login.microsoftonline.com"
    base_url: str = "https://graph.microsoft.com/beta"
    scopes: tuple[str, ...] = ("https://graph.microsoft.com/.default",)
    # Reads are idempotent, so the SDK may retry them; writes never are (each upload adds a key).
    read_retries: int = 2
    # A Retry-After longer than this is surfaced as Throttled instead of slept inside the SDK,
    # so a coroutine is never parked for minutes while holding a key set's write lock.
    max_retry_after_in_sdk: float = 5.0
    timeout_seconds: float = 30.0

    def __post_init__(self) -> None:
        # The one place this is checked: settings and tenants build connections, msgraph uses them.
        chosen = [
            name
            for name, value in (
                ("client_secret", self.client_secret),
                ("client_certificate_path", self.client_certificate_path),
                ("client_certificate_data", self.client_certificate_data),
                ("federated_token_file", self.federated_token_file),
            )
            if value
        ]
        if len(chosen) != 1:
            raise ValueError(
                "GraphConnection needs exactly one of client_secret, client_certificate_path, "
                "client_certificate_data or federated_token_file; got "
                + (", ".join(chosen) or "none")
            )


# --- errors -------------------------------------------------------------------------------------


@dataclass
class GraphError(Exception):
    """A failed Graph call. `message` comes from Graph's error body and never carries secrets."""

    message: str
    status: int | None = None
    code: str | None = None  # Graph's error.code, for B2C usually an AADB2Cnnnnn code
    request_id: str | None = None

    def __str__(self) -> str:
        parts = [p for p in (str(self.status) if self.status else None, self.code) if p]
        prefix = f"[{' '.join(parts)}] " if parts else ""
        return f"{prefix}{self.message}"


class KeySetNotFound(GraphError):
    """404 / AADB2C90073: the key set does not exist (deleted in the portal, or never created)."""


class KeySetAlreadyExists(GraphError):
    """AADB2C95028 on create."""


class NoActiveKey(GraphError):
    """getActiveKey found no usable key (AADB2C90019/90220: all expired, future or disabled)."""


class ConcurrentWrite(GraphError):
    """AADB2C95053: another write to the same key set was in flight."""


@dataclass
class Throttled(GraphError):
    """429 (or 503 with Retry-After) that the SDK did not absorb; retry after `retry_after` s."""

    retry_after: float = 0.0


class Unauthorized(GraphError):
    """401, or no token could be obtained (wrong secret, unknown client, bad assertion)."""


class Forbidden(GraphError):
    """403: the app lacks TrustFrameworkKeySet.ReadWrite.All (or .Read.All for reads)."""


class InvalidRequest(GraphError):
    """400-class refusal by B2C, e.g. AADB2C90213 wrong PFX password, AADB2C95032 type mix."""


@dataclass
class TransientError(GraphError):
    """5xx, timeout or a dropped connection.

    `outcome_unknown` is true when a write may have been committed before the failure (the
    response was lost): the caller must re-read the key set before writing again.
    """

    outcome_unknown: bool = False


# --- the interface ------------------------------------------------------------------------------


class KeySetClient(Protocol):
    """What the reconciler calls, and nothing else (External Secrets' narrow provider style).

    The tenant check needs two calls more (TenantClient, below). The keys_v2 calls serve key
    retirement and emergency disable/enable only: a key set read answers everything else."""

    async def get_key_set(self, key_set_id: str) -> RemoteKeySet: ...

    async def create_key_set(self, key_set_id: str) -> RemoteKeySet:
        """Create the key set; returns it with the id B2C chose (it may add `B2C_1A_`)."""
        ...

    async def delete_key_set(self, key_set_id: str) -> None: ...

    async def generate_key(
        self, key_set_id: str, *, kty: KeyType, use: KeyUse, nbf: int | None, exp: int | None
    ) -> RemoteKey: ...

    async def upload_secret(
        self, key_set_id: str, *, secret: SecretStr, use: KeyUse, nbf: int | None, exp: int | None
    ) -> RemoteKey: ...

    async def upload_certificate(
        self, key_set_id: str, *, certificate_der_b64: str
    ) -> RemoteKey: ...

    async def upload_pkcs12(
        self, key_set_id: str, *, pfx_b64: SecretStr, password: SecretStr
    ) -> RemoteKey: ...

    async def get_active_key(self, key_set_id: str) -> RemoteKey:
        """Raises NoActiveKey when B2C has no usable key in the set."""
        ...

    async def list_keys(self, key_set_id: str) -> Sequence[RemoteKey]:
        """keys_v2: every key with its enabled/disabled status as B2C holds it."""
        ...

    async def set_key_status(self, key_set_id: str, kid: str, *, enabled: bool) -> None:
        """keys_v2 PATCH {status}: the only change B2C allows to an existing key. B2C may
        refuse to disable the last usable key (AADB2C90134, an InvalidRequest)."""
        ...

    async def aclose(self) -> None: ...


class TenantClient(KeySetClient, Protocol):
    """A key set client that can also prove a tenant's credentials (the tenant check)."""

    async def list_key_sets(self) -> Sequence[RemoteKeySet]: ...

    async def granted_roles(self) -> frozenset[str] | None:
        """The app roles in the Graph access token (None when it is not a readable JWT)."""
        ...
