"""Reconcile one TrustFrameworkKeySet: gather → decide → write at most one key → read back → status.

No Kopf here. The controller (`b2ckeys.controller`) calls `KeySetSyncer.reconcile` from its
work queue, one call per key set at a time, and schedules the next call after the delay it
returns.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from b2ckeys import keymaterial
from b2ckeys.conditions import Outcome, Reason, set_ready
from b2ckeys.graph.client import (
    ConcurrentWrite,
    Forbidden,
    GraphError,
    InvalidRequest,
    KeySetAlreadyExists,
    KeySetClient,
    KeySetNotFound,
    NoActiveKey,
    RemoteKey,
    RemoteKeySet,
    Throttled,
    TransientError,
    Unauthorized,
)
from b2ckeys.kube.api import KubeApi, SourceObject
from b2ckeys.model import (
    KeySetSpec,
    ObjectKey,
    SpecError,
    StatusView,
    from_rfc3339,
    parse_spec,
    parse_status,
    to_rfc3339,
)
from b2ckeys.plan import (
    Decision,
    Desired,
    DesiredCertificate,
    DesiredGenerated,
    DesiredSecret,
    Write,
    decide,
    next_check,
    summarize,
)
from b2ckeys.secret import SecretStr
from b2ckeys.settings import Settings

logger = logging.getLogger(__name__)

# Puts the material into B2C for one planned write (which carries the nbf/exp chosen for it).
Upload = Callable[[KeySetClient, str, Write], Awaitable[RemoteKey]]


class SourceProblem(Exception):
    """The source cannot be used; carries the Ready reason and a message a person can act on."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass
class Gathered:
    desired: Desired
    upload: Upload
    hints: list[str] = field(default_factory=list)


@dataclass
class ReconcileResult:
    """What one reconcile did, for the controller's backoff and for tests."""

    outcome: Outcome
    requeue_after: float | None
    failed: bool = False
    wrote: list[str] = field(default_factory=list)
    # Graph said when to come back (Retry-After), or a write's outcome is unknown and B2C needs
    # a moment to show it: no attempt before this many seconds, whatever event arrives.
    retry_after: float | None = None


def key_status(
    key: RemoteKey, *, synced: bool = False, uploaded_at: int | None = None
) -> dict[str, Any]:
    """status.activeKey, or status.syncedKey when `synced`: only the members the CRD declares
    for each, since the API server silently drops any other (B2C's enabled/disabled status is
    declared for the active key only, the upload time for the synced key only)."""
    doc: dict[str, Any] = {"kid": key.kid, "kty": key.kty, "use": key.use}
    for name, value in (
        ("x5t", key.x5t),
        ("notBefore", to_rfc3339(key.nbf)),
        ("expires", to_rfc3339(key.exp)),
        ("status", key.status if key.status != "unknown" and not synced else None),
        ("uploadedAt", to_rfc3339(uploaded_at) if synced else None),
    ):
        if value is not None:
            doc[name] = value
        elif name != ("status" if synced else "uploadedAt"):
            # Status is merge-patched: an absent member would keep the previous key's value
            # (an old expiry under a new kid), so declared members are cleared explicitly.
            doc[name] = None
    return doc


class KeySetSyncer:
    """Everything needed to reconcile key sets against one Kubernetes API and Graph tenant."""

    def __init__(
        self,
        settings: Settings,
        kube: KubeApi,
        graph: KeySetClient | None,
        *,
        clock: Callable[[], float],
    ) -> None:
        self.settings = settings
        self.kube = kube
        self.graph = graph
        self.clock = clock
        self._parsed = _ParsedSources()

    # --- gathering -------------------------------------------------------------------------

    async def _read(self, kind: str, namespace: str, name: str, field_: str) -> SourceObject:
        obj = await self.kube.read_source(kind, namespace, name)
        if obj is None:
            raise SourceProblem(
                Reason.SOURCE_NOT_FOUND,
                f"{kind} {namespace}/{name} (spec.source.{field_}) does not exist; create it or "
                f"fix the name. The key set in B2C is left as it is.",
            )
        return obj

    def _hint_unlabelled(self, obj: SourceObject) -> str | None:
        if obj.labels.get(self.settings.watch_label_key) == self.settings.watch_label_value:
            return None
        minutes = max(int(self.settings.resync_interval // 60), 1)
        return (
            f"{obj.kind} {obj.name} lacks the label {self.settings.watch_selector}, so its "
            f"changes reach B2C only at the periodic resync (every {minutes}m); add the label "
            f"for instant sync (cert-manager: Certificate.spec.secretTemplate.labels)"
        )

    async def gather(
        self, namespace: str, spec: KeySetSpec, status: StatusView, now: int
    ) -> Gathered:
        source = spec.source
        if source.namespace and source.namespace != namespace:
            raise SourceProblem(
                Reason.INVALID_SOURCE,
                f"spec.source.{source.kind}.namespace is {source.namespace!r}: key material is "
                f"read only from the resource's own namespace ({namespace!r}); create the "
                f"TrustFrameworkKeySet there instead",
            )
        if source.kind == "generate":
            kty, use = source.kty, spec.use

            async def generate(graph: KeySetClient, key_set_id: str, write: Write) -> RemoteKey:
                return await graph.generate_key(
                    key_set_id, kty=kty, use=use, nbf=write.nbf, exp=write.exp
                )

            desired = DesiredGenerated(
                kty=kty,
                use=use,
                not_before_delay=spec.not_before_delay,
                lifetime=spec.lifetime,
                rotation_every=spec.rotation_every,
            )
            return Gathered(desired, generate)
        assert source.object_kind is not None
        assert source.object_name is not None
        obj = await self._read(source.object_kind, namespace, source.object_name, source.kind)
        hints = [h for h in [self._hint_unlabelled(obj)] if h]
        try:
            gathered = await self._gather_material(namespace, spec, status, obj, now, hints)
        except keymaterial.KeyMaterialError as e:
            raise SourceProblem(
                Reason.INVALID_SOURCE,
                f"{obj.kind} {namespace}/{obj.name}: {str(e).rstrip('.')}. Nothing was "
                "uploaded; the keys already in B2C are untouched.",
            ) from None
        return gathered

    async def _gather_material(
        self,
        namespace: str,
        spec: KeySetSpec,
        status: StatusView,
        obj: SourceObject,
        now: int,
        hints: list[str],
    ) -> Gathered:
        source = spec.source
        password_obj = obj
        if (
            source.kind == "pkcs12Secret"
            and source.password_secret_name
            and source.password_secret_name != obj.name
        ):
            password_obj = await self._read(
                "Secret", namespace, source.password_secret_name, source.kind
            )
            hint = self._hint_unlabelled(password_obj)
            if hint:
                hints.append(hint)
        peppers = self.settings.fingerprint_peppers()
        cache_key = (
            obj.namespace,
            obj.kind,
            obj.name,
            obj.resource_version,
            password_obj.name,
            password_obj.resource_version,
            spec,  # all of it: rotation and validity are part of what is cached
            status.source_fingerprint,
            status.pending.fingerprint if status.pending else None,
        )
        cached = self._parsed.get(cache_key, now, allow_not_yet_valid=spec.allow_not_yet_valid)
        if cached is not None:
            return Gathered(cached.desired, cached.upload, hints)
        # Checking RSA keys and memory-hard fingerprints costs tens of milliseconds of CPU: keep
        # it off the event loop that serves every other key set and Kopf's watches.
        gathered = await asyncio.to_thread(
            _parse_material, spec, status, obj, password_obj, now, hints, peppers
        )
        self._parsed.put(cache_key, gathered)
        return gathered

    # --- reading B2C -----------------------------------------------------------------------

    async def read_key_set(
        self, graph: KeySetClient, spec: KeySetSpec, status: StatusView
    ) -> RemoteKeySet | None:
        ids = [status.key_set_id] if status.key_set_id else []
        ids += [i for i in spec.candidate_ids if i not in ids]
        for key_set_id in ids:
            try:
                return await graph.get_key_set(key_set_id)
            except KeySetNotFound:
                continue
        return None

    async def read_active(self, graph: KeySetClient, key_set_id: str) -> RemoteKey | None:
        try:
            return await graph.get_active_key(key_set_id)
        except (NoActiveKey, KeySetNotFound):
            return None


class _ParsedSources:
    """Parsed sources by the resourceVersions they came from, so a resync of an unchanged Secret
    skips the ~35 ms RSA key check (which holds the GIL even in a worker thread). Only good
    material is kept, and only while `now` is inside its certificate's validity window."""

    # Enough for every key set of a large cluster; the oldest entry goes first.
    LIMIT = 1024

    def __init__(self) -> None:
        self._entries: OrderedDict[tuple[object, ...], Gathered] = OrderedDict()

    def get(
        self, key: tuple[object, ...], now: int, *, allow_not_yet_valid: bool
    ) -> Gathered | None:
        gathered = self._entries.get(key)
        if gathered is None:
            return None
        desired = gathered.desired
        if isinstance(desired, DesiredCertificate) and not (
            (desired.nbf <= now or allow_not_yet_valid) and now < desired.exp
        ):
            del self._entries[key]  # expired or not yet valid: parse again, to refuse it
            return None
        self._entries.move_to_end(key)
        return gathered

    def put(self, key: tuple[object, ...], gathered: Gathered) -> None:
        self._entries[key] = gathered
        while len(self._entries) > self.LIMIT:
            self._entries.popitem(last=False)


def _parse_material(
    spec: KeySetSpec,
    status: StatusView,
    obj: SourceObject,
    password_obj: SourceObject,
    now: int,
    hints: list[str],
    peppers: Sequence[bytes],
) -> Gathered:
    source = spec.source
    if source.kind == "tlsSecret":
        material = keymaterial.load_tls_secret(
            obj.revealed(), use=spec.use, now=now, allow_not_yet_valid=spec.allow_not_yet_valid
        )
        return _certificate_gathered(material, hints)
    if source.kind == "pkcs12Secret":
        assert source.key is not None
        assert source.password_key is not None
        pfx = _require(obj, source.key)
        password = _require(password_obj, source.password_key, allow_empty=True)
        try:
            password_text = password.decode("utf-8")
        except UnicodeDecodeError:
            raise keymaterial.KeyMaterialError(
                "NotUtf8", source.password_key, f"{source.password_key} is not valid UTF-8"
            ) from None
        material = keymaterial.load_pkcs12(
            pfx,
            SecretStr(password_text),
            use=spec.use,
            now=now,
            allow_not_yet_valid=spec.allow_not_yet_valid,
            field=source.key,
            password_field=source.password_key,
        )
        return _certificate_gathered(material, hints)
    if source.kind == "certificate":
        assert source.key
        info = keymaterial.load_certificate(
            _require(obj, source.key),
            use=spec.use,
            now=now,
            allow_not_yet_valid=spec.allow_not_yet_valid,
            field=source.key,
        )

        async def upload_certificate(graph: KeySetClient, key_set_id: str, _: Write) -> RemoteKey:
            return await graph.upload_certificate(key_set_id, certificate_der_b64=info.der_b64)

        return Gathered(
            DesiredCertificate(
                "uploadCertificate", info.x5t, info.x5t_s256, info.not_before, info.not_after
            ),
            upload_certificate,
            hints,
        )
    assert source.key is not None
    secret = keymaterial.load_string_secret(_require(obj, source.key), field=source.key)
    current = peppers[0]
    synced_by = _matching_pepper(secret, status.source_fingerprint, peppers)
    pending_fp = status.pending.fingerprint if status.pending else None
    pending_by = _matching_pepper(secret, pending_fp, peppers)
    fingerprint = (
        status.source_fingerprint
        if synced_by == 0 and status.source_fingerprint
        else pending_fp
        if pending_by == 0 and pending_fp
        # New, or recorded under an earlier pepper: record it afresh under the current one.
        else keymaterial.secret_fingerprint(secret, pepper=current)
    )
    matches_synced, matches_pending = synced_by is not None, pending_by is not None
    use = spec.use

    async def upload_secret(graph: KeySetClient, key_set_id: str, write: Write) -> RemoteKey:
        return await graph.upload_secret(
            key_set_id, secret=secret, use=use, nbf=write.nbf, exp=write.exp
        )

    return Gathered(
        DesiredSecret(
            fingerprint=fingerprint,
            matches_synced=matches_synced,
            matches_pending=matches_pending,
            not_before_delay=spec.not_before_delay,
            lifetime=spec.lifetime,
            rotation_every=spec.rotation_every,
        ),
        upload_secret,
        hints,
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


def _require(obj: SourceObject, key: str, *, allow_empty: bool = False) -> bytes:
    if key not in obj.data:
        present = ", ".join(sorted(obj.data)) or "none"
        raise keymaterial.KeyMaterialError(
            "Missing", key, f"key {key!r} is missing (keys present: {present})"
        )
    value = obj.data[key].reveal()
    if not value and not allow_empty:
        raise keymaterial.KeyMaterialError("Empty", key, f"key {key!r} is empty")
    return value


def _certificate_gathered(material: keymaterial.CertificateWithKey, hints: list[str]) -> Gathered:
    leaf = material.leaf

    async def upload_pkcs12(graph: KeySetClient, key_set_id: str, _: Write) -> RemoteKey:
        # Built only when a write is due: it costs milliseconds and holds the key in memory.
        bundle = await asyncio.to_thread(keymaterial.to_pkcs12, material)
        return await graph.upload_pkcs12(
            key_set_id, pfx_b64=bundle.pfx_b64, password=bundle.password
        )

    return Gathered(
        DesiredCertificate(
            "uploadPkcs12", leaf.x5t, leaf.x5t_s256, leaf.not_before, leaf.not_after
        ),
        upload_pkcs12,
        hints,
    )


def _outcome_for_graph_error(error: GraphError, key_set_id: str) -> tuple[Outcome, float | None]:
    """Ready reason and message for a Graph failure, and a forced retry delay if any."""
    if isinstance(error, Throttled):
        delay = max(error.retry_after, 1.0)
        return Outcome(
            Reason.THROTTLED, f"Graph throttled the request; retrying in {delay:.0f}s as asked"
        ), delay
    if isinstance(error, Unauthorized):
        return Outcome(
            Reason.UNAUTHORIZED,
            f"Graph refused the operator's credentials: {error}. Check AZURE_TENANT_ID, "
            "AZURE_CLIENT_ID and the client secret, certificate or federated credential of the "
            "operator's app registration in the B2C tenant",
        ), None
    if isinstance(error, Forbidden):
        return Outcome(
            Reason.UNAUTHORIZED,
            f"Graph denied access to {key_set_id}: {error}. Grant the app the Microsoft Graph "
            "application permission TrustFrameworkKeySet.ReadWrite.All and admin consent",
        ), None
    if isinstance(error, TransientError):
        note = (
            " The write's outcome is unknown; it is looked for before any retry."
            if error.outcome_unknown
            else ""
        )
        return Outcome(Reason.GRAPH_ERROR, f"Graph is unavailable: {error}.{note} Retrying"), None
    if isinstance(error, ConcurrentWrite):
        return Outcome(
            Reason.GRAPH_ERROR, f"another write to {key_set_id} was in flight: {error}; retrying"
        ), None
    if isinstance(error, InvalidRequest):
        return Outcome(
            Reason.GRAPH_ERROR,
            f"B2C refused the request for {key_set_id}: {error}. Nothing else was changed",
        ), None
    return Outcome(Reason.GRAPH_ERROR, f"Graph call for {key_set_id} failed: {error}"), None


class Reconciler(KeySetSyncer):
    """The whole flow for one resource, including status, events and the finalizer."""

    async def reconcile(
        self, body: Mapping[str, Any], *, owner: ObjectKey | None
    ) -> ReconcileResult:
        """`owner` is the older resource that owns the same B2C key set, if it is not this one."""
        meta = body.get("metadata") or {}
        now = int(self.clock())
        view = parse_status(body.get("status"))
        try:
            spec = parse_spec(body.get("spec") or {})
        except SpecError as e:
            if meta.get("deletionTimestamp"):
                # Nothing can be acted on safely; never hold up the deletion for it.
                await self.kube.set_finalizer(body, self.settings.finalizer, present=False)
                return ReconcileResult(Outcome(Reason.DELETING, "finalized"), None)
            return await self._finish(
                body, None, Outcome(Reason.INVALID_SOURCE, str(e)), {}, None, failed=True
            )
        if meta.get("deletionTimestamp"):
            return await self._finalize(body, spec, view, now, is_owner=owner is None)
        updated = await self.kube.set_finalizer(
            body,
            self.settings.finalizer,
            present=spec.deletion_policy == "Delete" and spec.mode == "Sync",
        )
        if updated is None:
            return ReconcileResult(Outcome(Reason.DELETING, "gone"), None)
        body = updated
        refusal = self._refusal(spec, owner)
        if refusal is not None:
            return await self._finish(
                body, spec, refusal, {}, self.settings.resync_interval, failed=True
            )
        assert self.graph is not None
        try:
            gathered = await self.gather(str(meta.get("namespace")), spec, view, now)
        except SourceProblem as problem:
            return await self._finish(
                body, spec, Outcome(problem.reason, problem.message), {}, None, failed=True
            )
        try:
            return await self._sync(body, spec, view, gathered, self.graph, now)
        except GraphError as error:
            outcome, delay = _outcome_for_graph_error(error, view.key_set_id or spec.key_set_id)
            logger.warning("%s/%s: %s", meta.get("namespace"), meta.get("name"), outcome.message)
            if isinstance(error, TransientError) and error.outcome_unknown:
                delay = max(delay or 0.0, self.settings.outcome_unknown_delay)
            return await self._finish(body, spec, outcome, {}, None, failed=True, retry_after=delay)

    def _refusal(self, spec: KeySetSpec, owner: ObjectKey | None) -> Outcome | None:
        if spec.tenant_ref is not None:
            return Outcome(
                Reason.TENANT_NOT_ALLOWED,
                f"spec.tenantRef names {spec.tenant_ref.kind} {spec.tenant_ref.name}, but this "
                "operator version serves only its default tenant; remove spec.tenantRef",
            )
        if self.graph is None:
            return Outcome(
                Reason.UNAUTHORIZED,
                "the operator has no default B2C tenant: set AZURE_TENANT_ID, AZURE_CLIENT_ID and "
                "one of AZURE_CLIENT_SECRET, AZURE_CLIENT_CERTIFICATE_PATH or "
                "AZURE_FEDERATED_TOKEN_FILE in its Deployment",
            )
        if owner is not None:
            return Outcome(
                Reason.CONFLICT,
                f"TrustFrameworkKeySet {owner} already manages B2C key set {spec.key_set_id} in "
                "this tenant (the older resource owns it); this one writes nothing until that one "
                "is deleted",
            )
        return None

    async def _create(self, graph: KeySetClient, spec: KeySetSpec, view: StatusView) -> str:
        try:
            return (await graph.create_key_set(spec.key_set_id)).id
        except KeySetAlreadyExists:
            # Created meanwhile (or under the prefixed id): use the one B2C has.
            existing = await self.read_key_set(graph, spec, view)
            if existing is None:
                raise
            return existing.id

    async def _sync(
        self,
        body: Mapping[str, Any],
        spec: KeySetSpec,
        view: StatusView,
        gathered: Gathered,
        graph: KeySetClient,
        now: int,
    ) -> ReconcileResult:
        meta = body.get("metadata") or {}
        namespace, name = str(meta.get("namespace")), str(meta.get("name"))
        remote = await self.read_key_set(graph, spec, view)
        decision = decide(gathered.desired, remote.keys if remote else None, view, now)
        if spec.mode == "Observe":
            return await self._observe(body, spec, remote, decision, gathered, graph, now)

        key_set_id = remote.id if remote else ""
        wrote: list[str] = []
        if decision.create_key_set:
            key_set_id = await self._create(graph, spec, view)
            wrote.append(f"createKeySet {key_set_id}")
            await self.kube.post_event(
                body,
                type_="Normal",
                reason="KeySetCreated",
                message=f"created B2C key set {key_set_id}",
            )
        synced = decision.adopt
        uploaded_at = (
            view.synced.uploaded_at
            if view.synced and synced and view.synced.kid == synced.kid
            else None
        )
        fingerprint = decision.adopt_fingerprint
        if decision.write is not None:
            write = decision.write
            # Record the intent before writing: if the response is lost or this process dies,
            # the next reconcile looks for exactly this key before writing anything again.
            intent = write.intent(key_set_id, now).to_status()
            recorded = await self.kube.patch_status(
                namespace,
                name,
                {"pendingWrite": intent, "keySetId": key_set_id},
                # Only onto the version this decision was made from: if anything (another
                # operator process) wrote meanwhile, this is a Conflict and nothing is uploaded.
                resource_version=meta.get("resourceVersion"),
            )
            if recorded is None:
                return ReconcileResult(Outcome(Reason.DELETING, "gone"), None)
            synced = await gathered.upload(graph, key_set_id, write)
            uploaded_at, fingerprint = now, write.fingerprint
            if write.x5t and synced.x5t != write.x5t:
                # Presence is judged by thumbprint; say so loudly if B2C reports another one.
                # The synced key's kid and the source fingerprint still stop a second upload.
                await self.kube.post_event(
                    body,
                    type_="Warning",
                    reason="ThumbprintMismatch",
                    message=f"B2C reports x5t {synced.x5t} for the certificate uploaded as "
                    f"{write.x5t} (kid {synced.kid}); it is tracked by kid from now on",
                )
            wrote.append(write.describe())
            dates = f", x5t {synced.x5t}" if synced.x5t else ""
            await self.kube.post_event(
                body,
                type_="Normal",
                reason="Uploaded",
                message=f"{write.action} to {key_set_id}: kid {synced.kid}{dates}, notBefore "
                f"{to_rfc3339(synced.nbf) or '-'}, expires {to_rfc3339(synced.exp) or '-'} "
                f"({write.why})",
            )
            logger.info("%s/%s: %s -> kid %s", namespace, name, write.describe(), synced.kid)
        # Read back only what changed: a no-op resync must cost as few Graph calls as possible
        # (B2C throttles per tenant).
        after = remote
        if wrote or after is None:
            after = await graph.get_key_set(key_set_id)
        active = await self.read_active(graph, key_set_id)
        if synced is not None:
            synced = next((k for k in after.keys if k.kid == synced.kid), synced)
        outcome = summarize(key_set_id, synced, active, now, gathered.hints)
        status: dict[str, Any] = {
            "keySetId": key_set_id,
            "activeKey": key_status(active) if active else None,
            "syncedKey": (
                key_status(synced, synced=True, uploaded_at=uploaded_at) if synced else None
            ),
            "keyCount": len(after.keys),
            "lastSyncTime": to_rfc3339(now),
            "sourceFingerprint": fingerprint,
            "pendingWrite": None,
            "plan": None,
        }
        delay = next_check(
            gathered.desired,
            synced,
            active,
            now,
            resync_interval=self.settings.resync_interval,
            activation_poll_interval=self.settings.activation_poll_interval,
        )
        return await self._finish(body, spec, outcome, status, delay, wrote=wrote)

    async def _observe(
        self,
        body: Mapping[str, Any],
        spec: KeySetSpec,
        remote: RemoteKeySet | None,
        decision: Decision,
        gathered: Gathered,
        graph: KeySetClient,
        now: int,
    ) -> ReconcileResult:
        active = await self.read_active(graph, remote.id) if remote else None
        plan = decision.writes
        key_set_id = remote.id if remote else spec.candidate_ids[0]
        if plan:
            outcome = Outcome(
                Reason.DRIFTED,
                f"B2C key set {key_set_id} differs from the source; Sync mode would: "
                + "; ".join(plan)
                + ". Nothing was written (mode: Observe)",
            )
        else:
            outcome = summarize(key_set_id, decision.adopt, active, now, gathered.hints)
        status: dict[str, Any] = {
            "keySetId": remote.id if remote else None,
            "activeKey": key_status(active) if active else None,
            "keyCount": len(remote.keys) if remote else 0,
            "lastSyncTime": to_rfc3339(now),
            "plan": plan,
        }
        return await self._finish(body, spec, outcome, status, self.settings.resync_interval)

    async def _finalize(
        self,
        body: Mapping[str, Any],
        spec: KeySetSpec,
        view: StatusView,
        now: int,
        *,
        is_owner: bool,
    ) -> ReconcileResult:
        meta = body.get("metadata") or {}
        if self.settings.finalizer not in (meta.get("finalizers") or []):
            return ReconcileResult(Outcome(Reason.DELETING, "not ours to finalize"), None)
        wanted = spec.deletion_policy == "Delete" and spec.mode == "Sync" and is_owner
        key_set_id = view.key_set_id
        if wanted and key_set_id and self.graph is not None:
            try:
                await self.graph.delete_key_set(key_set_id)
                await self.kube.post_event(
                    body,
                    type_="Normal",
                    reason="Deleted",
                    message=f"deleted B2C key set {key_set_id}",
                )
            except KeySetNotFound:
                pass
            except GraphError as error:
                started = from_rfc3339(meta.get("deletionTimestamp")) or now
                if now - started < self.settings.delete_timeout:
                    outcome, delay = _outcome_for_graph_error(error, key_set_id)
                    deleting = Outcome(
                        Reason.DELETING,
                        f"deleting B2C key set {key_set_id} failed ({outcome.message}); retrying "
                        f"until {to_rfc3339(started + self.settings.delete_timeout)}, then stops",
                    )
                    return await self._finish(
                        body, spec, deleting, {}, None, failed=True, retry_after=delay
                    )
                abandoned = (
                    f"could not delete B2C key set {key_set_id} within "
                    f"{self.settings.delete_timeout:.0f}s ({error}); removing the finalizer so "
                    "deletion can finish. Delete the key set in the B2C portal if it must go"
                )
                # When the whole namespace is going, the API server refuses new Events in it
                # (403 "being terminated"): the log is then the only record of what was left.
                logger.warning("%s/%s: %s", meta.get("namespace"), meta.get("name"), abandoned)
                await self.kube.post_event(
                    body, type_="Warning", reason="DeleteAbandoned", message=abandoned
                )
        await self.kube.set_finalizer(body, self.settings.finalizer, present=False)
        return ReconcileResult(Outcome(Reason.DELETING, "finalized"), None)

    async def _finish(
        self,
        body: Mapping[str, Any],
        spec: KeySetSpec | None,
        outcome: Outcome,
        status: Mapping[str, Any],
        requeue_after: float | None,
        *,
        failed: bool = False,
        wrote: list[str] | None = None,
        retry_after: float | None = None,
    ) -> ReconcileResult:
        meta = body.get("metadata") or {}
        previous = body.get("status") or {}
        generation = meta.get("generation")
        now = self.clock()
        doc = dict(status)
        doc["conditions"] = set_ready(
            previous.get("conditions"), outcome, generation=generation, now=now
        )
        doc["observedGeneration"] = generation
        if spec is not None:
            doc["source"] = spec.source.describe()
        if requeue_after is not None and not failed:
            doc["nextSyncTime"] = to_rfc3339(now + requeue_after)
        await self.kube.patch_status(str(meta.get("namespace")), str(meta.get("name")), doc)
        old: Mapping[str, Any] = next(
            (c for c in previous.get("conditions") or [] if c.get("type") == "Ready"), {}
        )
        if not outcome.ready and (old.get("reason"), old.get("message")) != (
            outcome.reason.value,
            outcome.message,
        ):
            await self.kube.post_event(
                body, type_="Warning", reason=outcome.reason.value, message=outcome.message
            )
        return ReconcileResult(
            outcome, requeue_after, failed=failed, wrote=wrote or [], retry_after=retry_after
        )
