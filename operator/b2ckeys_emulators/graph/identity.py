"""The Entra ID token endpoint as azure-identity and MSAL use it, and Graph's token checks.

Served: the client-credentials grant with a client secret, with a certificate-signed client
assertion (async azure-identity signs PS256 with `x5t#S256`; MSAL signs PS256 with `x5t#S256`,
or RS256 with `x5t` for ADFS) and with a federated assertion (workload identity: issuer, subject
and audience `api://AzureADTokenExchange`, signature checked with the configured public key).
Answers are shaped as Entra's (`error`, `error_description` starting with the AADSTS code,
`error_codes`, ...). Access tokens are RS256 JWTs carrying the app's `roles`, valid for the
rules' lifetime on the emulator clock. No secret, assertion or token is ever logged.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime
import functools
import hashlib
import hmac
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

from b2ckeys_emulators.graph.rules import EmulatorRules
from b2ckeys_emulators.graph.state import EmulatorClock

READ_ROLE = "TrustFrameworkKeySet.Read.All"
WRITE_ROLE = "TrustFrameworkKeySet.ReadWrite.All"
FEDERATED_AUDIENCE = "api://AzureADTokenExchange"
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
# Names Entra accepts for Microsoft Graph as a resource; tokens carry the first as `aud`.
GRAPH_RESOURCES = ("https://graph.microsoft.com", GRAPH_APP_ID)
# Scopes MSAL may add to any request; they do not name a resource.
_RESERVED_SCOPES = frozenset({"openid", "profile", "offline_access"})
# Entra tolerates this much clock difference on access token nbf (Graph side).
_TOKEN_NBF_SKEW_SECONDS = 300


@dataclass(frozen=True)
class EmulatedApp:
    """An app registration in the emulated tenant, with any of its three credential kinds."""

    client_id: str
    secret: str | None = field(default=None, repr=False)
    certificate_pem: bytes | None = None
    federated_issuer: str | None = None
    federated_subject: str | None = None
    federated_public_key_pem: bytes | None = None
    federated_audience: str = FEDERATED_AUDIENCE
    roles: tuple[str, ...] = (WRITE_ROLE,)
    display_name: str = "b2ckeys emulated app"


class EntraError(Exception):
    """An Entra token endpoint refusal: HTTP status, OAuth `error` and an AADSTS code."""

    def __init__(self, status: int, error: str, aadsts: int, description: str) -> None:
        super().__init__(f"{status} {error} AADSTS{aadsts}")
        self.status = status
        self.error = error
        self.aadsts = aadsts
        self.description = description

    def body(self, correlation_id: str) -> dict[str, Any]:
        now = datetime.datetime.now(datetime.UTC)
        trace_id = str(uuid.uuid4())
        stamp = now.strftime("%Y-%m-%d %H:%M:%SZ")
        description = (
            f"AADSTS{self.aadsts}: {self.description} Trace ID: {trace_id} "
            f"Correlation ID: {correlation_id} Timestamp: {stamp}"
        )
        return {
            "error": self.error,
            "error_description": description,
            "error_codes": [self.aadsts],
            "timestamp": stamp,
            "trace_id": trace_id,
            "correlation_id": correlation_id,
            "error_uri": f"https://login.microsoftonline.com/error?code={self.aadsts}",
        }


class GraphAuthError(Exception):
    """Graph's refusal of a request's bearer token (401) or of its permissions (403)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}")
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class TokenClaims:
    client_id: str
    roles: tuple[str, ...]


@functools.cache
def _signing_key() -> rsa.RSAPrivateKey:
    # One key per process: RSA generation is the slowest step of starting an emulator.
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    # Async azure-identity pads its assertion segments; RFC 7515 JWTs do not. Accept both.
    if any(c in text for c in "+/ "):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class _Jwt:
    header: dict[str, Any]
    claims: dict[str, Any]
    signing_input: bytes
    signature: bytes


def _parse_jwt(token: str) -> _Jwt:
    parts = token.split(".")
    if len(parts) != 3:
        raise ValueError("a JWT has three parts")
    try:
        header = json.loads(_b64url_decode(parts[0]))
        claims = json.loads(_b64url_decode(parts[1]))
        signature = _b64url_decode(parts[2])
    except (binascii.Error, ValueError, UnicodeDecodeError) as error:
        raise ValueError("malformed JWT") from error
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise ValueError("malformed JWT")
    return _Jwt(header, claims, f"{parts[0]}.{parts[1]}".encode("ascii"), signature)


def _verify_signature(jwt: _Jwt, public_key: object) -> bool:
    alg = jwt.header.get("alg")
    try:
        if isinstance(public_key, rsa.RSAPublicKey) and alg == "RS256":
            public_key.verify(jwt.signature, jwt.signing_input, padding.PKCS1v15(), hashes.SHA256())
        elif isinstance(public_key, rsa.RSAPublicKey) and alg == "PS256":
            pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO)
            public_key.verify(jwt.signature, jwt.signing_input, pss, hashes.SHA256())
        elif isinstance(public_key, ec.EllipticCurvePublicKey) and alg == "ES256":
            if len(jwt.signature) != 64:
                return False
            r = int.from_bytes(jwt.signature[:32], "big")
            s = int.from_bytes(jwt.signature[32:], "big")
            der = utils.encode_dss_signature(r, s)
            public_key.verify(der, jwt.signing_input, ec.ECDSA(hashes.SHA256()))
        else:
            return False
    except InvalidSignature:
        return False
    return True


def _form_value(form: Mapping[str, str], name: str) -> str:
    value = form.get(name)
    if not value:
        raise EntraError(
            400,
            "invalid_request",
            900144,
            f"The request body must contain the following parameter: '{name}'.",
        )
    return value


class IdentityService:
    """Issues tokens for the emulated tenant's apps and checks them on Graph requests."""

    def __init__(
        self,
        *,
        tenant_id: str,
        apps: Sequence[EmulatedApp],
        clock: EmulatorClock,
        rules: EmulatorRules,
    ) -> None:
        self.tenant_id = tenant_id
        self._apps = {app.client_id: app for app in apps}
        self._clock = clock
        self._rules = rules
        self._key = _signing_key()
        public_der = self._key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self._kid = _b64url(hashlib.sha256(public_der).digest()[:20])

    @property
    def apps(self) -> list[EmulatedApp]:
        return list(self._apps.values())

    def rotate_secret(self, client_id: str, secret: str) -> bool:
        """Give an app a new client secret (the old one stops working at once, as when an admin
        deletes it in the portal); False for an unknown app."""
        app = self._apps.get(client_id)
        if app is None:
            return False
        self._apps[client_id] = dataclasses.replace(app, secret=secret)
        return True

    def knows_tenant(self, tenant: str) -> bool:
        return tenant.lower() == self.tenant_id.lower()

    def unknown_tenant(self, tenant: str, *, error: str = "invalid_request") -> EntraError:
        return EntraError(
            400,
            error,
            90002,
            f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and "
            "are signing into the correct cloud.",
        )

    # --- discovery -------------------------------------------------------------------------

    def openid_configuration(self, base_url: str, tenant: str) -> dict[str, Any]:
        if not self.knows_tenant(tenant):
            raise self.unknown_tenant(tenant, error="invalid_tenant")
        prefix = f"{base_url}/{self.tenant_id}"
        return {
            "token_endpoint": f"{prefix}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": [
                "client_secret_post",
                "private_key_jwt",
                "client_secret_basic",
            ],
            "jwks_uri": f"{prefix}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{base_url}/{self.tenant_id}/v2.0",
            "request_uri_parameter_supported": False,
            "userinfo_endpoint": f"{base_url}/oidc/userinfo",
            "authorization_endpoint": f"{prefix}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{prefix}/oauth2/v2.0/devicecode",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{prefix}/oauth2/v2.0/logout",
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nbf", "tid", "roles"],
            "tenant_region_scope": "EU",
            "cloud_instance_name": "microsoftonline.com",
        }

    def jwks(self) -> dict[str, Any]:
        numbers = self._key.public_key().public_numbers()
        return {
            "keys": [
                {
                    "kty": "RSA",
                    "use": "sig",
                    "kid": self._kid,
                    "x5t": self._kid,
                    "n": _b64url(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")),
                    "e": _b64url(numbers.e.to_bytes(3, "big")),
                }
            ]
        }

    # --- the token endpoint ----------------------------------------------------------------

    def issue_token(self, tenant: str, form: Mapping[str, str], token_path: str) -> dict[str, Any]:
        """Answer a POST to `/{tenant}/oauth2/v2.0/token`, or raise EntraError."""
        if not self.knows_tenant(tenant):
            raise self.unknown_tenant(tenant)
        grant_type = _form_value(form, "grant_type")
        if grant_type != "client_credentials":
            raise EntraError(
                400,
                "unsupported_grant_type",
                70003,
                f"The app requested an unsupported grant type '{grant_type}'.",
            )
        client_id = _form_value(form, "client_id")
        app = self._apps.get(client_id)
        if app is None:
            raise EntraError(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the directory "
                f"'{self.tenant_id}'. This can happen if the application has not been installed "
                "by the administrator of the tenant or consented to by any user in the tenant. "
                "You may have sent your authentication request to the wrong tenant.",
            )
        self._check_scope(_form_value(form, "scope"))
        if form.get("client_secret"):
            self._check_secret(app, form["client_secret"])
        elif form.get("client_assertion"):
            if form.get("client_assertion_type") != JWT_BEARER:
                raise EntraError(
                    400,
                    "invalid_request",
                    50027,
                    "JWT token is invalid or malformed: unsupported client_assertion_type.",
                )
            self._check_assertion(app, form["client_assertion"], token_path)
        else:
            raise EntraError(
                401,
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' or "
                "'client_secret'.",
            )
        lifetime = self._rules.token_lifetime_seconds
        return {
            "token_type": "Bearer",
            "expires_in": lifetime,
            "ext_expires_in": lifetime,
            "access_token": self._mint(app, lifetime),
        }

    def _check_scope(self, scope: str) -> None:
        named = [s for s in scope.split() if s not in _RESERVED_SCOPES]
        if len(named) != 1 or not named[0].endswith("/.default"):
            raise EntraError(
                400,
                "invalid_scope",
                1002012,
                f"The provided value for scope {scope} is not valid. Client credential flows "
                "must have a scope value with /.default suffixed to the resource identifier "
                "(application ID URI).",
            )
        resource = named[0].removesuffix("/.default").rstrip("/")
        if resource not in GRAPH_RESOURCES:
            raise EntraError(
                400,
                "invalid_resource",
                500011,
                f"The resource principal named {resource} was not found in the tenant named "
                f"{self.tenant_id}. This can happen if the application has not been installed "
                "by the administrator of the tenant or consented to by any user in the tenant.",
            )

    def _check_secret(self, app: EmulatedApp, secret: str) -> None:
        expected = app.secret
        if expected is None or not hmac.compare_digest(expected.encode(), secret.encode()):
            raise EntraError(
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is "
                "the client secret value, not the client secret ID, for a secret added to app "
                f"'{app.client_id}'.",
            )

    def _check_assertion(self, app: EmulatedApp, assertion: str, token_path: str) -> None:
        try:
            jwt = _parse_jwt(assertion)
        except ValueError:
            raise EntraError(
                400, "invalid_request", 50027, "JWT token is invalid or malformed."
            ) from None
        if jwt.claims.get("iss") == app.client_id:
            self._check_certificate_assertion(app, jwt, token_path)
        else:
            self._check_federated_assertion(app, jwt)
        self._check_assertion_lifetime(jwt)

    def _check_certificate_assertion(self, app: EmulatedApp, jwt: _Jwt, token_path: str) -> None:
        signature_failure = EntraError(
            401,
            "invalid_client",
            700027,
            "Client assertion failed signature validation. [Reason - The key was not found.]",
        )
        if app.certificate_pem is None:
            raise signature_failure
        certificate = x509.load_pem_x509_certificate(app.certificate_pem)
        thumbprints = {
            "x5t#S256": _b64url(certificate.fingerprint(hashes.SHA256())),
            "x5t": _b64url(certificate.fingerprint(hashes.SHA1())),  # noqa: S303 - a key id
        }
        presented = [
            (name, str(jwt.header[name]).rstrip("=")) for name in thumbprints if name in jwt.header
        ]
        if not presented or any(thumbprints[name] != value for name, value in presented):
            raise signature_failure
        if not _verify_signature(jwt, certificate.public_key()):
            raise EntraError(
                401,
                "invalid_client",
                700027,
                "Client assertion failed signature validation.",
            )
        if jwt.claims.get("sub") != app.client_id:
            raise EntraError(
                401,
                "invalid_client",
                700021,
                "Client assertion application identifier doesn't match 'client_id' parameter.",
            )
        audience = jwt.claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if not any(isinstance(a, str) and urlsplit(a).path == token_path for a in audiences):
            raise EntraError(
                401,
                "invalid_client",
                700212,
                "The audience of the client assertion is not this token endpoint.",
            )

    def _check_federated_assertion(self, app: EmulatedApp, jwt: _Jwt) -> None:
        issuer, subject = jwt.claims.get("iss"), jwt.claims.get("sub")
        audience = jwt.claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        matches = (
            app.federated_issuer is not None
            and issuer == app.federated_issuer
            and subject == app.federated_subject
            and app.federated_audience in audiences
        )
        if not matches or app.federated_public_key_pem is None:
            raise EntraError(
                400,
                "invalid_request",
                70021,
                "No matching federated identity record found for presented assertion. "
                f"Assertion Issuer: '{issuer}'. Assertion Subject: '{subject}'. "
                f"Assertion Audience: '{audience}'.",
            )
        public_key = serialization.load_pem_public_key(app.federated_public_key_pem)
        if not _verify_signature(jwt, public_key):
            raise EntraError(
                401,
                "invalid_client",
                700027,
                "Client assertion failed signature validation.",
            )

    def _check_assertion_lifetime(self, jwt: _Jwt) -> None:
        # Assertions come from the client's real clock, so they are checked against real time,
        # not the emulator clock that tests move to age keys.
        now = datetime.datetime.now(datetime.UTC).timestamp()
        skew = self._rules.assertion_clock_skew_seconds
        exp, nbf = jwt.claims.get("exp"), jwt.claims.get("nbf")
        expired = not isinstance(exp, int | float) or exp + skew < now
        early = isinstance(nbf, int | float) and nbf - skew > now
        if expired or early:
            raise EntraError(
                401,
                "invalid_client",
                700024,
                "Client assertion is not within its valid time range.",
            )

    def _mint(self, app: EmulatedApp, lifetime: int) -> str:
        now = int(self._clock.now())
        header = {"typ": "JWT", "alg": "RS256", "x5t": self._kid, "kid": self._kid}
        claims = {
            "aud": GRAPH_RESOURCES[0],
            "iss": f"https://sts.windows.net/{self.tenant_id}/",
            "iat": now,
            "nbf": now,
            "exp": now + lifetime,
            "app_displayname": app.display_name,
            "appid": app.client_id,
            "appidacr": "1",
            "idtyp": "app",
            "oid": str(uuid.uuid5(uuid.NAMESPACE_URL, app.client_id)),
            "roles": list(app.roles),
            "sub": str(uuid.uuid5(uuid.NAMESPACE_URL, app.client_id)),
            "tid": self.tenant_id,
            "uti": _b64url(uuid.uuid4().bytes),
            "ver": "1.0",
        }
        signing_input = (
            _b64url(json.dumps(header, separators=(",", ":")).encode())
            + "."
            + _b64url(json.dumps(claims, separators=(",", ":")).encode())
        )
        signature = self._key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{_b64url(signature)}"

    # --- Graph's side ----------------------------------------------------------------------

    def check_bearer(self, authorization: str | None) -> TokenClaims:
        """The claims of a valid, unexpired token for this tenant and Graph, or GraphAuthError."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise GraphAuthError(401, "InvalidAuthenticationToken", "Access token is empty.")
        invalid = GraphAuthError(
            401, "InvalidAuthenticationToken", "Access token validation failure."
        )
        try:
            jwt = _parse_jwt(token.strip())
        except ValueError:
            raise GraphAuthError(
                401,
                "InvalidAuthenticationToken",
                "IDX14100: JWT is not well formed, there are no dots (.).",
            ) from None
        if not _verify_signature(jwt, self._key.public_key()):
            raise invalid
        claims = jwt.claims
        if claims.get("aud") not in GRAPH_RESOURCES:
            raise GraphAuthError(
                401,
                "InvalidAuthenticationToken",
                "Access token validation failure. Invalid audience.",
            )
        if str(claims.get("tid", "")).lower() != self.tenant_id.lower():
            raise invalid
        now = self._clock.now()
        exp, nbf = claims.get("exp"), claims.get("nbf")
        if not isinstance(exp, int) or exp <= now:
            raise GraphAuthError(
                401,
                "InvalidAuthenticationToken",
                "Lifetime validation failed, the token is expired.",
            )
        if isinstance(nbf, int) and nbf > now + _TOKEN_NBF_SKEW_SECONDS:
            raise GraphAuthError(
                401, "InvalidAuthenticationToken", "Access token has expired or is not yet valid."
            )
        roles = claims.get("roles") or []
        return TokenClaims(client_id=str(claims.get("appid")), roles=tuple(map(str, roles)))


def check_roles(claims: TokenClaims, *, write: bool) -> None:
    allowed = {WRITE_ROLE} if write else {READ_ROLE, WRITE_ROLE}
    if not allowed & set(claims.roles):
        raise GraphAuthError(
            403,
            "Authorization_RequestDenied",
            "Insufficient privileges to complete the operation.",
        )
