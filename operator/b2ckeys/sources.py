"""Gathering what a key set's source says: read its Secret or ConfigMap, parse it off the event
loop, and hand `plan.decide` the public facts (x5t, dates, fingerprint).

Private keys and secrets stay in memory only for the reconcile that uploads them. Parsed sources
are cached by the resourceVersions they came from, but the cache holds only the public, decided
part; when a write is due for a cached source, its objects are read again (writes are rare) and
must still be the versions the decision was made from.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from b2ckeys import keymaterial
from b2ckeys.conditions import Reason
from b2ckeys.graph.client import KeySetClient, RemoteKey
from b2ckeys.kube.api import KubeApi, SourceObject
from b2ckeys.model import (
    CertificateSource,
    GenerateSource,
    KeySetSpec,
    ObjectRef,
    Pkcs12SecretSource,
    StringSecretSource,
    TlsSecretSource,
)
from b2ckeys.plan import (
    Desired,
    DesiredCertificate,
    DesiredGenerated,
    DesiredSecret,
    Write,
)
from b2ckeys.secret import SecretStr
from b2ckeys.settings import Settings
from b2ckeys.status import StatusView

# Puts the material into B2C for one planned write (which carries the nbf/exp chosen for it).
Upload = Callable[[KeySetClient, str, Write], Awaitable[RemoteKey]]
# What a source parses into: a certificate with its key, a public certificate, a string secret.
Material = keymaterial.CertificateWithKey | keymaterial.CertificateInfo | SecretStr
# The objects a decision was made from: (kind, name, resourceVersion) of each.
Versions = tuple[tuple[str, str, str | None], ...]
_T = TypeVar("_T")


class SourceProblem(Exception):
    """The source cannot be used; carries the Ready reason and a message a person can act on."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class SourceChanged(Exception):
    """A source object changed between the decision and the write: decide again."""


@dataclass(frozen=True)
class Gathered:
    desired: Desired
    hints: tuple[str, ...]
    # Returns the upload for the write the decision planned. Material parsed in this reconcile
    # is held by it (and dropped with this value); a cached source is read again first.
    prepare_upload: Callable[[], Awaitable[Upload]]


class SourceReader:
    """Reads and parses sources for the reconciler, with the parsed-source cache."""

    def __init__(self, settings: Settings, kube: KubeApi) -> None:
        self.settings = settings
        self.kube = kube
        self._parsed = ParsedSources()

    async def gather(
        self, namespace: str, spec: KeySetSpec, status: StatusView, now: int
    ) -> Gathered:
        source = spec.source
        if spec.source_namespace and spec.source_namespace != namespace:
            raise SourceProblem(
                Reason.INVALID_SOURCE,
                f"spec.source.{source.kind}.namespace is {spec.source_namespace!r}: key material "
                f"is read only from the resource's own namespace ({namespace!r}); create the "
                f"TrustFrameworkKeySet there instead",
            )
        if isinstance(source, GenerateSource):
            return _generated(spec, source)
        objects = await self._read_all(namespace, source.referenced_objects(), source.kind)
        hints = tuple(h for h in map(self._hint_unlabelled, objects) if h)
        versions = tuple((o.kind, o.name, o.resource_version) for o in objects)
        cache_key = (
            namespace,
            versions,
            spec,  # all of it: rotation and validity are part of what is cached
            status.source_fingerprint,
            status.pending.fingerprint if status.pending else None,
        )
        cached = self._parsed.get(cache_key, now, allow_not_yet_valid=spec.allow_not_yet_valid)
        if cached is not None:

            async def read_again() -> Upload:
                return await self._reread(namespace, spec, versions, now)

            return Gathered(cached, hints, read_again)
        # Checking RSA keys and memory-hard fingerprints costs tens of milliseconds of CPU: keep
        # it off the event loop that serves every other key set and Kopf's watches.
        material, desired = await self._parse(
            objects, spec, now, lambda m: _desired(m, spec, status, self._peppers())
        )
        self._parsed.put(cache_key, desired)
        upload = _uploader(material, spec)

        async def ready() -> Upload:
            return upload

        return Gathered(desired, hints, ready)

    def _peppers(self) -> list[bytes]:
        return self.settings.fingerprint_peppers()

    async def _reread(
        self, namespace: str, spec: KeySetSpec, versions: Versions, now: int
    ) -> Upload:
        source = spec.source
        objects = await self._read_all(namespace, source.referenced_objects(), source.kind)
        if tuple((o.kind, o.name, o.resource_version) for o in objects) != versions:
            raise SourceChanged(f"{source.describe()} changed since it was read")
        material, _ = await self._parse(objects, spec, now, lambda _: None)
        return _uploader(material, spec)

    async def _parse(
        self,
        objects: Sequence[SourceObject],
        spec: KeySetSpec,
        now: int,
        describe: Callable[[Material], _T],
    ) -> tuple[Material, _T]:
        def parse() -> tuple[Material, _T]:
            material = _load(spec, objects, now)
            return material, describe(material)

        try:
            return await asyncio.to_thread(parse)
        except keymaterial.KeyMaterialError as e:
            obj = objects[0]
            raise SourceProblem(
                Reason.AWAITING_CERTIFICATE
                if e.reason == "TemporaryCertificate"
                else Reason.INVALID_SOURCE,
                f"{obj.kind} {obj.namespace}/{obj.name}: {str(e).rstrip('.')}. Nothing was "
                "uploaded; the keys already in B2C are untouched.",
            ) from None

    async def _read_all(
        self, namespace: str, refs: Sequence[ObjectRef], field: str
    ) -> list[SourceObject]:
        objects = []
        for ref in refs:
            obj = await self.kube.read_source(ref.kind, namespace, ref.name)
            if obj is None:
                raise SourceProblem(
                    Reason.SOURCE_NOT_FOUND,
                    f"{ref.kind} {namespace}/{ref.name} (spec.source.{field}) does not exist; "
                    "create it or fix the name. The key set in B2C is left as it is.",
                )
            objects.append(obj)
        return objects

    def _hint_unlabelled(self, obj: SourceObject) -> str | None:
        if obj.labels.get(self.settings.watch_label_key) == self.settings.watch_label_value:
            return None
        minutes = max(int(self.settings.resync_interval // 60), 1)
        return (
            f"{obj.kind} {obj.name} lacks the label {self.settings.watch_selector}, so its "
            f"changes reach B2C only at the periodic resync (every {minutes}m); add the label "
            f"for instant sync (cert-manager: Certificate.spec.secretTemplate.labels)"
        )


class ParsedSources:
    """What parsed sources decided, by the resourceVersions they came from, so a resync of an
    unchanged Secret skips the ~35 ms RSA key check (which holds the GIL even in a worker
    thread). Only good material is kept, only while `now` is inside its certificate's validity
    window, and only its public part: no private key or secret stays here."""

    # Enough for every key set of a large cluster; the oldest entry goes first.
    LIMIT = 1024

    def __init__(self) -> None:
        self._entries: OrderedDict[tuple[object, ...], Desired] = OrderedDict()

    def get(
        self, key: tuple[object, ...], now: int, *, allow_not_yet_valid: bool
    ) -> Desired | None:
        desired = self._entries.get(key)
        if desired is None:
            return None
        if isinstance(desired, DesiredCertificate) and not (
            (desired.nbf <= now or allow_not_yet_valid) and now < desired.exp
        ):
            del self._entries[key]  # expired or not yet valid: parse again, to refuse it
            return None
        self._entries.move_to_end(key)
        return desired

    def put(self, key: tuple[object, ...], desired: Desired) -> None:
        self._entries[key] = desired
        while len(self._entries) > self.LIMIT:
            self._entries.popitem(last=False)


# --- parsing (in a worker thread) ---------------------------------------------------------------


def _load(spec: KeySetSpec, objects: Sequence[SourceObject], now: int) -> Material:
    data = objects[0].revealed()
    allow = spec.allow_not_yet_valid
    match spec.source:
        case TlsSecretSource():
            return keymaterial.load_tls_secret(
                data, use=spec.use, now=now, allow_not_yet_valid=allow
            )
        case Pkcs12SecretSource(key=key, password_key=password_key):
            passwords = objects[-1].revealed()
            password = keymaterial.require_field(passwords, password_key, allow_empty=True)
            try:
                password_text = password.decode("utf-8")
            except UnicodeDecodeError:
                raise keymaterial.KeyMaterialError(
                    "NotUtf8", password_key, f"{password_key} is not valid UTF-8"
                ) from None
            return keymaterial.load_pkcs12(
                keymaterial.require_field(data, key),
                SecretStr(password_text),
                use=spec.use,
                field=key,
                password_field=password_key,
                now=now,
                allow_not_yet_valid=allow,
            )
        case CertificateSource(key=key):
            return keymaterial.load_certificate(
                keymaterial.require_field(data, key),
                use=spec.use,
                field=key,
                now=now,
                allow_not_yet_valid=allow,
            )
        case StringSecretSource(key=key):
            return keymaterial.load_string_secret(keymaterial.require_field(data, key), field=key)
        case GenerateSource():
            raise AssertionError("generated keys have no material to load")


def _desired(
    material: Material, spec: KeySetSpec, status: StatusView, peppers: Sequence[bytes]
) -> Desired:
    if isinstance(material, keymaterial.CertificateWithKey):
        leaf = material.leaf
        return DesiredCertificate(
            "uploadPkcs12", leaf.x5t, leaf.x5t_s256, leaf.not_before, leaf.not_after
        )
    if isinstance(material, keymaterial.CertificateInfo):
        return DesiredCertificate(
            "uploadCertificate",
            material.x5t,
            material.x5t_s256,
            material.not_before,
            material.not_after,
        )
    synced_by = _matching_pepper(material, status.source_fingerprint, peppers)
    pending_fp = status.pending.fingerprint if status.pending else None
    pending_by = _matching_pepper(material, pending_fp, peppers)
    fingerprint = (
        status.source_fingerprint
        if synced_by == 0 and status.source_fingerprint
        else pending_fp
        if pending_by == 0 and pending_fp
        # New, or recorded under an earlier pepper: record it afresh under the current one.
        else keymaterial.secret_fingerprint(material, pepper=peppers[0])
    )
    return DesiredSecret(
        fingerprint=fingerprint,
        matches_synced=synced_by is not None,
        matches_pending=pending_by is not None,
        not_before_delay=spec.not_before_delay,
        lifetime=spec.lifetime,
        rotation_every=spec.rotation_every,
        adopt_kid=spec.adopt_kid,
    )


def _matching_pepper(
    secret: SecretStr, fingerprint: str | None, peppers: Sequence[bytes]
) -> int | None:
    """Which pepper (by position; 0 is the current one) the fingerprint was made with, if it
    describes this secret. Earlier peppers are tried so that setting or rotating the pepper
    never looks like a changed secret, which would upload the same secret again."""
    if not fingerprint:
        return None
    for position, pepper in enumerate(peppers):
        if keymaterial.fingerprint_matches(secret, fingerprint, pepper=pepper):
            return position
    return None


# --- uploads ------------------------------------------------------------------------------------


def _uploader(material: Material, spec: KeySetSpec) -> Upload:
    use = spec.use
    if isinstance(material, keymaterial.CertificateWithKey):

        async def upload_pkcs12(graph: KeySetClient, key_set_id: str, _: Write) -> RemoteKey:
            # Built only when a write is due: it costs milliseconds and holds the key in memory.
            bundle = await asyncio.to_thread(keymaterial.to_pkcs12, material)
            return await graph.upload_pkcs12(
                key_set_id, pfx_b64=bundle.pfx_b64, password=bundle.password
            )

        return upload_pkcs12
    if isinstance(material, keymaterial.CertificateInfo):
        der_b64 = material.der_b64

        async def upload_certificate(graph: KeySetClient, key_set_id: str, _: Write) -> RemoteKey:
            return await graph.upload_certificate(key_set_id, certificate_der_b64=der_b64)

        return upload_certificate

    async def upload_secret(graph: KeySetClient, key_set_id: str, write: Write) -> RemoteKey:
        return await graph.upload_secret(
            key_set_id, secret=material, use=use, nbf=write.nbf, exp=write.exp
        )

    return upload_secret


def _generated(spec: KeySetSpec, source: GenerateSource) -> Gathered:
    kty, use = source.kty, spec.use

    async def generate(graph: KeySetClient, key_set_id: str, write: Write) -> RemoteKey:
        return await graph.generate_key(key_set_id, kty=kty, use=use, nbf=write.nbf, exp=write.exp)

    async def ready() -> Upload:
        return generate

    desired = DesiredGenerated(
        kty=kty,
        use=use,
        not_before_delay=spec.not_before_delay,
        lifetime=spec.lifetime,
        rotation_every=spec.rotation_every,
    )
    return Gathered(desired, (), ready)
