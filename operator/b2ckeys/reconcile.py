"""Reconcile one TrustFrameworkKeySet: gather → decide → write at most one key → read back → status.

No Kopf here. The controller (`b2ckeys.controller`) calls `Reconciler.reconcile` from its work
queue, one call per key set at a time, with the resource it has just read, and schedules the
next call after the delay it returns.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from b2ckeys import metrics
from b2ckeys.conditions import Outcome, Reason, outcome_for_graph_error, set_ready
from b2ckeys.formats import to_rfc3339
from b2ckeys.graph.client import (
    GraphError,
    KeySetAlreadyExists,
    KeySetClient,
    KeySetNotFound,
    NoActiveKey,
    RemoteKey,
    RemoteKeySet,
    TransientError,
)
from b2ckeys.kube.api import KubeApi
from b2ckeys.model import KeySetResource, KeySetSpec, ObjectKey, ResourceRef
from b2ckeys.plan import (
    AskB2C,
    Decision,
    Write,
    active_key,
    decide,
    next_check,
    staged_successor,
    summarize,
)
from b2ckeys.retirement import landed_from_intent, record_upload
from b2ckeys.retiring import carry_out_request, retire
from b2ckeys.settings import FINALIZER, Settings
from b2ckeys.sources import Gathered, SourceChanged, SourceProblem, SourceReader
from b2ckeys.status import KeySetState, ObservedState, StatusView, SyncedState, changes
from b2ckeys.tenant_access import TenantClients, TenantRefused
from b2ckeys.tenants import TenantKey

logger = logging.getLogger(__name__)

# A source that keeps changing between its read and its write is read again this many times
# within one reconcile before the reconcile backs off.
_SOURCE_READS = 2


class WriteRefused(Exception):
    """B2C answered a write with a refusal: the write did not land."""

    def __init__(self, error: GraphError) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass(frozen=True)
class ReconcileResult:
    """What one reconcile concluded, for the controller's pacing."""

    outcome: Outcome
    requeue_after: float | None
    failed: bool = False
    # Graph said when to come back (Retry-After), or a write's outcome is unknown and B2C needs
    # a moment to show it: no attempt before this many seconds, whatever event arrives.
    retry_after: float | None = None


class Reconciler:
    """Everything needed to reconcile key sets against one Kubernetes API and Graph tenant."""

    def __init__(
        self,
        settings: Settings,
        kube: KubeApi,
        tenants: TenantClients,
        *,
        clock: Callable[[], float],
    ) -> None:
        self.settings = settings
        self.kube = kube
        self.tenants = tenants
        self.clock = clock
        self.sources = SourceReader(settings, kube)
        # How often the local active-key rule was not enough (benchmarks report it).
        self.active_key_lookups = 0

    async def reconcile(
        self, resource: KeySetResource, *, owner: ObjectKey | None
    ) -> ReconcileResult:
        """`owner` is the older resource that owns the same B2C key set, if it is not this one."""
        now = int(self.clock())
        spec = resource.spec
        if spec is None:
            if resource.deleting_since is not None:
                # Nothing can be acted on safely; never hold up the deletion for it.
                await self.kube.set_finalizer(resource, FINALIZER, present=False)
                return ReconcileResult(Outcome(Reason.DELETING, "finalized"), None)
            problem = Outcome(Reason.INVALID_SOURCE, resource.spec_error or "invalid spec")
            return await self._finish(resource, problem, None, None, failed=True)
        if resource.deleting_since is not None:
            return await self._finalize(resource, spec, now, is_owner=owner is None)
        updated = await self.kube.set_finalizer(
            resource,
            FINALIZER,
            present=spec.deletion_policy == "Delete" and spec.mode == "Sync",
        )
        if updated is None:
            return ReconcileResult(Outcome(Reason.DELETING, "gone"), None)
        resource = updated
        if owner is not None:
            conflict = Outcome(
                Reason.CONFLICT,
                f"TrustFrameworkKeySet {owner} already manages B2C key set {spec.key_set_id} in "
                "this tenant (the older resource owns it); this one writes nothing until that one "
                "is deleted",
            )
            return await self._finish(
                resource, conflict, None, self.settings.resync_interval, failed=True
            )
        try:
            access = await self.tenants.for_keyset(resource.ref.namespace, spec)
        except TenantRefused as refused:
            # Nothing is written for a refused key set; a change to its tenant or namespace
            # brings it back at once, the resync otherwise.
            outcome = Outcome(refused.reason, refused.message)
            return await self._finish(
                resource, outcome, None, self.settings.resync_interval, failed=True
            )
        if resource.key_status_request is not None:
            handled = await self._key_status_request(resource, spec, access.client, now)
            if handled is None:
                return ReconcileResult(Outcome(Reason.DELETING, "gone"), None)
            resource = handled
        for attempt in range(1, _SOURCE_READS + 1):
            try:
                gathered = await self.sources.gather(
                    resource.ref.namespace, spec, resource.status, now
                )
                return await self._sync(resource, spec, gathered, access.client, now)
            except SourceProblem as problem:
                outcome = Outcome(problem.reason, problem.message)
                return await self._finish(resource, outcome, None, None, failed=True)
            except SourceChanged as changed:
                if attempt == _SOURCE_READS:
                    # Still being written (a controller rewriting it): nothing a person needs
                    # to see in status; its next watch event or the backoff brings it back.
                    logger.info("%s: %s; reading it again shortly", resource.key, changed)
                    outcome = Outcome(Reason.SOURCE_NOT_FOUND, str(changed))
                    return ReconcileResult(outcome, None, failed=True)
            except WriteRefused as refused:
                # B2C answered the write with a refusal: nothing landed, so the intent is void
                # and the next attempt need not wait for it.
                return await self._graph_failed(
                    resource, spec, refused.error, access.key, clear_intent=True
                )
            except GraphError as error:
                return await self._graph_failed(resource, spec, error, access.key)
        raise AssertionError("unreachable: the last attempt returns")

    async def _graph_failed(
        self,
        resource: KeySetResource,
        spec: KeySetSpec,
        error: GraphError,
        tenant: TenantKey | None,
        *,
        clear_intent: bool = False,
    ) -> ReconcileResult:
        outcome, delay = outcome_for_graph_error(
            error, resource.status.key_set_id or spec.key_set_id, tenant
        )
        logger.warning("%s: %s", resource.key, outcome.message)
        if isinstance(error, TransientError) and error.outcome_unknown:
            delay = max(delay or 0.0, self.settings.outcome_unknown_delay)
        return await self._finish(
            resource, outcome, None, None, failed=True, retry_after=delay, clear_intent=clear_intent
        )

    async def _key_status_request(
        self, resource: KeySetResource, spec: KeySetSpec, graph: KeySetClient, now: int
    ) -> KeySetResource | None:
        """Carry out an emergency enable/disable once, before the sync reads the key set (so
        the sync sees its effect); its result goes to status at once."""
        key_set_id = resource.status.key_set_id
        if key_set_id is None:
            try:
                remote = await self.read_key_set(graph, spec, resource.status)
            except GraphError:
                remote = None  # the sync's own read reports it
            key_set_id = remote.id if remote else None

        async def event(type_: str, reason: str, message: str) -> None:
            await self._event(resource.ref, type_, reason, message)

        result = await carry_out_request(resource, spec, graph, key_set_id, now, event=event)
        if result is None:
            return resource
        return await self.kube.patch_status(resource.key, {"keyStatusRequest": result.to_status()})

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

    async def read_active_key(
        self, graph: KeySetClient, key_set_id: str, keys: Sequence[RemoteKey], now: int
    ) -> RemoteKey | None:
        """The key B2C uses: from the keys just read where B2C's rule settles it, else asked."""
        local = active_key(keys, now, margin=self.settings.active_key_margin)
        if not isinstance(local, AskB2C):
            return local
        self.active_key_lookups += 1
        logger.debug("%s: asking B2C for the active key: %s", key_set_id, local.why)
        try:
            return await graph.get_active_key(key_set_id)
        except (NoActiveKey, KeySetNotFound):
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

    # --- Sync and Observe ------------------------------------------------------------------

    async def _sync(
        self,
        resource: KeySetResource,
        spec: KeySetSpec,
        gathered: Gathered,
        graph: KeySetClient,
        now: int,
    ) -> ReconcileResult:
        view = resource.status
        remote = await self.read_key_set(graph, spec, view)
        decision = decide(
            gathered.desired,
            remote.keys if remote else None,
            view,
            now,
            settle=self.settings.write_settle_time,
        )
        if decision.wait is not None and spec.mode == "Sync":
            logger.info(
                "%s: an earlier write of this material may still land in B2C; looking again "
                "in %.0fs before writing anything",
                resource.key,
                decision.wait,
            )
            waiting = Outcome(Reason.GRAPH_ERROR, "waiting for an earlier write's outcome")
            return ReconcileResult(waiting, max(decision.wait, 0.1))
        if decision.refusal is not None:
            refused = Outcome(Reason.INVALID_SOURCE, decision.refusal)
            return await self._finish(resource, refused, None, None, failed=True)
        if spec.mode == "Observe":
            return await self._observe(resource, spec, remote, decision, gathered, graph, now)

        key_set_id = remote.id if remote else ""
        wrote = False
        if decision.create_key_set:
            key_set_id = await self._create(graph, spec, view)
            wrote = True
            await self._event(
                resource.ref, "Normal", "KeySetCreated", f"created B2C key set {key_set_id}"
            )
        synced = decision.adopt
        uploaded_at = (
            view.synced.uploaded_at
            if view.synced and synced and view.synced.kid == synced.kid
            else None
        )
        fingerprint = decision.adopt_fingerprint
        if decision.write is not None:
            synced = await self._write(resource, gathered, graph, key_set_id, decision.write, now)
            if synced is None:
                return ReconcileResult(Outcome(Reason.DELETING, "gone"), None)
            uploaded_at, fingerprint, wrote = now, decision.write.fingerprint, True
        # Read back only what changed: a no-op resync must cost as few Graph calls as possible
        # (B2C throttles per tenant).
        after = remote
        if wrote or after is None:
            after = await graph.get_key_set(key_set_id)
        active = await self.read_active_key(graph, key_set_id, after.keys, now)
        if synced is not None:
            synced = next((k for k in after.keys if k.kid == synced.kid), synced)
        record = view.uploaded
        if decision.write is not None and synced is not None:
            record = record_upload(record, synced, now)
        elif view.pending is not None and landed_from_intent(view.pending, decision.adopt):
            assert decision.adopt is not None
            record = record_upload(record, decision.adopt, view.pending.started_at or now)
        hints = list(gathered.hints)
        foreign: tuple[str, ...] | None = None
        due: float | None = None
        if spec.disable_superseded_after is not None:

            async def event(type_: str, reason: str, message: str) -> None:
                await self._event(resource.ref, type_, reason, message)

            retired = await retire(
                graph,
                key_set_id,
                record,
                view.synced,
                after.keys,
                active,
                now,
                after=spec.disable_superseded_after,
                event=event,
            )
            record, foreign, due = retired.record, retired.foreign, retired.next_due
            hints.extend(retired.hints)
        outcome = summarize(key_set_id, synced, active, now, hints)
        state = SyncedState(
            key_set_id=key_set_id,
            active=active,
            key_count=len(after.keys),
            synced=synced,
            uploaded_at=uploaded_at,
            source_fingerprint=fingerprint,
            uploaded_keys=record if record or view.uploaded else None,
            foreign_keys=foreign,
            staged=staged_successor(after.keys, now),
        )
        delay = next_check(
            gathered.desired,
            synced,
            active,
            now,
            resync_interval=self.settings.resync_interval,
            activation_poll_interval=self.settings.activation_poll_interval,
        )
        if due is not None:
            # Wake up when the next superseded key becomes due, not a resync later.
            delay = min(delay, max(due, 0.1))
        return await self._finish(resource, outcome, state, delay)

    async def _write(
        self,
        resource: KeySetResource,
        gathered: Gathered,
        graph: KeySetClient,
        key_set_id: str,
        write: Write,
        now: int,
    ) -> RemoteKey | None:
        """Upload the one planned key; None when the resource went away before the write."""
        upload = await gathered.prepare_upload()
        # Record the intent before writing: if the response is lost or this process dies, the
        # next reconcile looks for exactly this key before writing anything again.
        recorded = await self.kube.patch_status(
            resource.key,
            {"pendingWrite": write.intent(key_set_id, now).to_status(), "keySetId": key_set_id},
            # Only onto the version this decision was made from: if anything (another operator
            # process) wrote meanwhile, this is a Conflict and nothing is uploaded.
            resource_version=resource.ref.resource_version,
        )
        if recorded is None:
            return None
        try:
            synced = await upload(graph, key_set_id, write)
        except GraphError as error:
            if not (isinstance(error, TransientError) and error.outcome_unknown):
                raise WriteRefused(error) from error
            raise
        if resource.spec is not None:
            metrics.UPLOADS.labels(write.action, resource.spec.source.kind).inc()
        if write.x5t and synced.x5t != write.x5t:
            # Presence is judged by thumbprint; say so loudly if B2C reports another one. The
            # synced key's kid and the source fingerprint still stop a second upload.
            await self._event(
                resource.ref,
                "Warning",
                "ThumbprintMismatch",
                f"B2C reports x5t {synced.x5t} for the certificate uploaded as {write.x5t} "
                f"(kid {synced.kid}); it is tracked by kid from now on",
            )
        dates = f", x5t {synced.x5t}" if synced.x5t else ""
        await self._event(
            resource.ref,
            "Normal",
            "Uploaded",
            f"{write.action} to {key_set_id}: kid {synced.kid}{dates}, notBefore "
            f"{to_rfc3339(synced.nbf) or '-'}, expires {to_rfc3339(synced.exp) or '-'} "
            f"({write.why})",
        )
        logger.info("%s: %s -> kid %s", resource.key, write.describe(), synced.kid)
        return synced

    async def _observe(
        self,
        resource: KeySetResource,
        spec: KeySetSpec,
        remote: RemoteKeySet | None,
        decision: Decision,
        gathered: Gathered,
        graph: KeySetClient,
        now: int,
    ) -> ReconcileResult:
        active = await self.read_active_key(graph, remote.id, remote.keys, now) if remote else None
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
            outcome = summarize(key_set_id, decision.adopt, active, now, list(gathered.hints))
        state = ObservedState(
            key_set_id=remote.id if remote else None,
            active=active,
            key_count=len(remote.keys) if remote else 0,
            plan=tuple(plan),
            staged=staged_successor(remote.keys, now) if remote else None,
        )
        return await self._finish(resource, outcome, state, self.settings.resync_interval)

    # --- deletion --------------------------------------------------------------------------

    async def _finalize(
        self, resource: KeySetResource, spec: KeySetSpec, now: int, *, is_owner: bool
    ) -> ReconcileResult:
        if FINALIZER not in resource.finalizers:
            return ReconcileResult(Outcome(Reason.DELETING, "not ours to finalize"), None)
        wanted = spec.deletion_policy == "Delete" and spec.mode == "Sync" and is_owner
        key_set_id = resource.status.key_set_id
        if wanted and key_set_id:
            try:
                access = await self.tenants.for_keyset(resource.ref.namespace, spec)
                await access.client.delete_key_set(key_set_id)
                await self._event(
                    resource.ref, "Normal", "Deleted", f"deleted B2C key set {key_set_id}"
                )
            except KeySetNotFound:
                pass
            except (GraphError, TenantRefused) as error:
                started = resource.deleting_since or now
                if now - started < self.settings.delete_timeout:
                    outcome, delay = (
                        outcome_for_graph_error(error, key_set_id, None)
                        if isinstance(error, GraphError)
                        else (Outcome(error.reason, error.message), None)
                    )
                    deleting = Outcome(
                        Reason.DELETING,
                        f"deleting B2C key set {key_set_id} failed ({outcome.message}); retrying "
                        f"until {to_rfc3339(started + self.settings.delete_timeout)}, then stops",
                    )
                    return await self._finish(
                        resource, deleting, None, None, failed=True, retry_after=delay
                    )
                abandoned = (
                    f"could not delete B2C key set {key_set_id} within "
                    f"{self.settings.delete_timeout:.0f}s ({error}); removing the finalizer so "
                    "deletion can finish. Delete the key set in the B2C portal if it must go"
                )
                # When the whole namespace is going, the API server refuses new Events in it
                # (403 "being terminated"): the log is then the only record of what was left.
                logger.warning("%s: %s", resource.key, abandoned)
                await self._event(resource.ref, "Warning", "DeleteAbandoned", abandoned)
        await self.kube.set_finalizer(resource, FINALIZER, present=False)
        return ReconcileResult(Outcome(Reason.DELETING, "finalized"), None)

    # --- status ----------------------------------------------------------------------------

    async def _finish(
        self,
        resource: KeySetResource,
        outcome: Outcome,
        state: KeySetState | None,
        requeue_after: float | None,
        *,
        failed: bool = False,
        retry_after: float | None = None,
        clear_intent: bool = False,
    ) -> ReconcileResult:
        """Write the outcome (and what B2C holds, when it was read) as one status patch."""
        now = self.clock()
        previous = resource.status
        doc = state.to_patch() if state is not None else {}
        if clear_intent:
            doc["pendingWrite"] = None
        doc["conditions"] = set_ready(
            previous.conditions, outcome, generation=resource.generation, now=now
        )
        doc["observedGeneration"] = resource.generation
        if resource.spec is not None:
            doc["source"] = resource.spec.source.describe()
        # A resync that found nothing new writes nothing: every status write is an etcd write
        # and a watch event for every watcher (Argo CD re-evaluates the application on each).
        # So the time is recorded only with a change, and no "next sync" time is kept at all.
        doc["nextSyncTime"] = None
        # `resource` was read before this reconcile recorded its write intent, so clearing that
        # intent always changes status, whatever the comparison with the older copy says.
        if clear_intent or changes(doc, resource.status_doc):
            doc["lastSyncTime"] = to_rfc3339(now)
            await self.kube.patch_status(resource.key, doc)
        metrics.KEYSET_SERIES.record(metrics.keyset_sample(resource, outcome, state, now))
        before = previous.ready
        said = (before.get("reason"), before.get("message"))
        if not outcome.ready and said != (outcome.reason.value, outcome.message):
            await self._event(resource.ref, "Warning", outcome.reason.value, outcome.message)
        return ReconcileResult(outcome, requeue_after, failed=failed, retry_after=retry_after)

    async def _event(self, ref: ResourceRef, type_: str, reason: str, message: str) -> None:
        await self.kube.post_event(
            ref, type_=type_, reason=reason, message=message, now=self.clock()
        )
