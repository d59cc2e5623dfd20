"""Deciding what to write: pure functions over (desired source, B2C's keys, status, now).

Every upload *adds* a key to a B2C key set and keys can never be removed, so nothing here
decides to write unless it has proven the material is absent:

- certificates are present when a key in the set has their x5t;
- string secrets cannot be read back, so they are recognised by the fingerprint recorded in
  status together with the exact nbf/exp the operator chose for that upload;
- generated keys are present while a valid key of the type exists and rotation is not due;
- a write recorded as pending (the response was lost, or the operator died) is looked for
  before anything is written again, and is retried with the very same nbf/exp so a late commit
  is still recognised.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from b2ckeys.conditions import Outcome, Reason
from b2ckeys.formats import to_rfc3339
from b2ckeys.graph.client import RemoteKey
from b2ckeys.status import PendingWrite, StatusView

Action = Literal["uploadPkcs12", "uploadCertificate", "uploadSecret", "generateKey"]


@dataclass(frozen=True)
class DesiredCertificate:
    """tlsSecret, pkcs12Secret and certificate sources: identified by the leaf's x5t."""

    action: Literal["uploadPkcs12", "uploadCertificate"]
    x5t: str
    fingerprint: str  # x5t#S256 of the leaf, recorded in status.sourceFingerprint
    nbf: int
    exp: int


@dataclass(frozen=True)
class DesiredSecret:
    """A string secret. Fingerprint comparisons are done by the caller (they are deliberately
    slow, memory-hard hashes), and only their results come here."""

    fingerprint: str  # a fresh fingerprint of the current value, for status
    matches_synced: bool  # the current value is what status.sourceFingerprint describes
    matches_pending: bool  # the current value is what status.pendingWrite describes
    not_before_delay: float
    lifetime: float | None
    rotation_every: float | None
    # spec.adopt.kid: the key in B2C that already holds this secret, for a resource whose
    # status was lost (a restore, a GitOps replace); taken instead of uploading again.
    adopt_kid: str | None = None


@dataclass(frozen=True)
class DesiredGenerated:
    kty: Literal["RSA", "oct"]
    use: str
    not_before_delay: float
    lifetime: float | None
    rotation_every: float | None


Desired = DesiredCertificate | DesiredSecret | DesiredGenerated


@dataclass(frozen=True)
class Write:
    action: Action
    why: str
    x5t: str | None = None
    nbf: int | None = None
    exp: int | None = None
    fingerprint: str | None = None

    def describe(self) -> str:
        detail = f"x5t={self.x5t}" if self.x5t else f"nbf={self.nbf} exp={self.exp}"
        return f"{self.action} {detail} ({self.why})"

    def intent(self, key_set_id: str, now: int) -> PendingWrite:
        return PendingWrite(
            action=self.action,
            key_set_id=key_set_id,
            fingerprint=self.fingerprint,
            x5t=self.x5t,
            nbf=self.nbf,
            exp=self.exp,
            started_at=now,
        )


@dataclass(frozen=True)
class Decision:
    create_key_set: bool = False
    write: Write | None = None
    # A key already in B2C that this resource's source is (found by x5t, by the synced key's
    # kid, or by a pending intent); it becomes status.syncedKey without any write.
    adopt: RemoteKey | None = None
    # The fingerprint status should carry for the adopted key.
    adopt_fingerprint: str | None = None
    # Nothing may be written, and why (a person must fix the spec).
    refusal: str | None = None
    # Nothing may be written for this many seconds: an earlier write of the same material,
    # whose fate is unknown (its process died, or its answer was lost), may still land.
    wait: float | None = None

    @property
    def writes(self) -> list[str]:
        """The Graph writes this decision makes, in order, as a person reads them."""
        out = ["createKeySet"] if self.create_key_set else []
        if self.write:
            out.append(self.write.describe())
        return out


def decide(
    desired: Desired,
    keys: Sequence[RemoteKey] | None,
    status: StatusView,
    now: int,
    *,
    settle: float = 0.0,
) -> Decision:
    """What to write so that B2C holds the desired material. `keys` is None when the key set
    does not exist in B2C.

    A write of the same material recorded as pending less than `settle` seconds ago, and not
    yet visible in B2C, is waited for rather than repeated: B2C may still be processing it (a
    request held by Graph commits after the process that sent it died), and a second upload
    would add the same key twice. `settle` covers Graph's own time to answer a write."""
    create = keys is None
    present = tuple(keys or ())
    if isinstance(desired, DesiredCertificate):
        decision = _decide_certificate(desired, present, status, create)
    elif isinstance(desired, DesiredSecret):
        decision = _decide_secret(desired, present, status, now, create)
    else:
        decision = _decide_generated(desired, present, status, now, create)
    pending = status.pending
    if (
        decision.write is not None
        and pending is not None
        and pending.started_at is not None
        and now - pending.started_at < settle
        and _same_material(desired, pending)
    ):
        return Decision(wait=float(settle - (now - pending.started_at)))
    return decision


def _same_material(desired: Desired, pending: PendingWrite) -> bool:
    """Whether a pending write would put this very material into B2C."""
    if isinstance(desired, DesiredCertificate):
        return pending.x5t == desired.x5t
    if isinstance(desired, DesiredSecret):
        return pending.action == "uploadSecret" and desired.matches_pending
    return pending.action == "generateKey"


def _decide_certificate(
    desired: DesiredCertificate, keys: Sequence[RemoteKey], status: StatusView, create: bool
) -> Decision:
    match = next((k for k in keys if k.x5t == desired.x5t), None)
    if match is None and status.synced and status.source_fingerprint == desired.fingerprint:
        # The same certificate this resource already uploaded, its key still in the set: should
        # B2C ever report a thumbprint other than ours, that must not mean "upload it again".
        match = next((k for k in keys if k.kid == status.synced.kid), None)
    if match:
        return Decision(adopt=match, adopt_fingerprint=desired.fingerprint)
    why = "key set missing in B2C" if create else "certificate not in the key set yet"
    return Decision(
        create_key_set=create,
        write=Write(
            desired.action,
            why,
            x5t=desired.x5t,
            nbf=desired.nbf,
            exp=desired.exp,
            fingerprint=desired.fingerprint,
        ),
    )


def _find_by_intent(
    keys: Sequence[RemoteKey], pending: PendingWrite | None, kty: str
) -> RemoteKey | None:
    if pending is None or pending.nbf is None:
        return None
    return next(
        (
            k
            for k in keys
            if k.kty.lower() == kty.lower() and k.nbf == pending.nbf and k.exp == pending.exp
        ),
        None,
    )


def _window_open(pending: PendingWrite, now: int) -> bool:
    """Whether a pending write may be retried with its own dates: not once its expiry has
    passed (B2C refuses that, AADB2C90214), which would wedge the key set."""
    return pending.exp is None or pending.exp > now


def _usable(key: RemoteKey, now: int) -> bool:
    return key.status != "disabled" and (key.exp is None or key.exp > now)


def _rotation_due(nbf: int | None, every: float | None, now: int) -> bool:
    if every is None:
        return False
    return nbf is None or now >= nbf + every


def _fresh_window(
    keys: Sequence[RemoteKey], delay: float, lifetime: float | None, now: int
) -> tuple[int, int | None]:
    """nbf/exp for a new secret or generated key. The nbf is unique among the set's keys,
    because (nbf, exp) is how the operator recognises a key whose value it cannot read back."""
    taken = {k.nbf for k in keys}
    nbf = now + int(delay)
    while nbf in taken:
        nbf += 1
    return nbf, (nbf + int(lifetime) if lifetime is not None else None)


def _decide_secret(
    desired: DesiredSecret,
    keys: Sequence[RemoteKey],
    status: StatusView,
    now: int,
    create: bool,
) -> Decision:
    pending = status.pending if status.pending and status.pending.action == "uploadSecret" else None
    if pending and desired.matches_pending:
        landed = _find_by_intent(keys, pending, "oct")
        if (
            landed
            and not _rotation_due(landed.nbf, desired.rotation_every, now)
            and _usable(landed, now)
        ):
            return Decision(adopt=landed, adopt_fingerprint=desired.fingerprint)
        if not landed and not create and _window_open(pending, now):
            # The earlier write never landed: retry it with the same dates, so a late commit
            # of the first attempt would still be recognised rather than duplicated.
            return Decision(
                write=Write(
                    "uploadSecret",
                    "retrying a write whose outcome was unknown",
                    nbf=pending.nbf,
                    exp=pending.exp,
                    fingerprint=desired.fingerprint,
                )
            )
    synced = status.synced
    if synced is None and pending is None and desired.adopt_kid is not None:
        # No record of an upload (status lost): the person says which key already holds it.
        named = next((k for k in keys if k.kid == desired.adopt_kid), None)
        if named is None:
            return Decision(
                refusal=f"spec.adopt.kid {desired.adopt_kid} is not a key of this key set in "
                "B2C, so nothing was adopted or uploaded; fix the kid (`kubectl b2ckeys status "
                "--graph` lists them) or remove spec.adopt to upload the secret afresh"
            )
        return Decision(adopt=named, adopt_fingerprint=desired.fingerprint)
    if desired.matches_synced and synced is not None:
        current = next((k for k in keys if k.kid == synced.kid), None)
        if (
            current
            and _usable(current, now)
            and not _rotation_due(current.nbf, desired.rotation_every, now)
        ):
            return Decision(adopt=current, adopt_fingerprint=desired.fingerprint)
        why = (
            "key set missing in B2C"
            if create
            else "the uploaded secret is gone from B2C"
            if current is None
            else "rotation due"
            if _usable(current, now)
            else "the uploaded secret expired or was disabled"
        )
    else:
        why = (
            "key set missing in B2C"
            if create
            else "the secret's value changed"
            if synced
            else "first upload"
        )
    nbf, exp = _fresh_window(keys, desired.not_before_delay, desired.lifetime, now)
    return Decision(
        create_key_set=create,
        write=Write("uploadSecret", why, nbf=nbf, exp=exp, fingerprint=desired.fingerprint),
    )


def _decide_generated(
    desired: DesiredGenerated,
    keys: Sequence[RemoteKey],
    status: StatusView,
    now: int,
    create: bool,
) -> Decision:
    def suitable(k: RemoteKey) -> bool:
        return k.kty.lower() == desired.kty.lower() and k.use == desired.use and _usable(k, now)

    pending = status.pending if status.pending and status.pending.action == "generateKey" else None
    landed = _find_by_intent(keys, pending, desired.kty)
    synced = status.synced
    candidates = [
        landed,
        next((k for k in keys if synced and k.kid == synced.kid), None),
    ]
    if synced is None and pending is None:
        # Nothing recorded yet (a new resource, or one adopting a key set made elsewhere): any
        # usable key of the right type counts, the newest first.
        ordered = sorted(keys, key=lambda k: k.nbf if k.nbf is not None else -1, reverse=True)
        candidates.extend(ordered)
    for key in candidates:
        if key is not None and suitable(key):
            if _rotation_due(key.nbf, desired.rotation_every, now):
                break
            return Decision(adopt=key)
    if pending and landed is None and not create and _window_open(pending, now):
        return Decision(
            write=Write(
                "generateKey",
                "retrying a write whose outcome was unknown",
                nbf=pending.nbf,
                exp=pending.exp,
            )
        )
    why = (
        "key set missing in B2C"
        if create
        else "rotation due"
        if any(k is not None and suitable(k) for k in candidates)
        else "no usable key of this type"
    )
    nbf, exp = _fresh_window(keys, desired.not_before_delay, desired.lifetime, now)
    return Decision(create_key_set=create, write=Write("generateKey", why, nbf=nbf, exp=exp))


def next_check(
    desired: Desired,
    synced: RemoteKey | None,
    active: RemoteKey | None,
    now: int,
    *,
    resync_interval: float,
    activation_poll_interval: float,
) -> float:
    """Seconds until this key set should be looked at again without any event."""
    delays = [resync_interval]
    if synced is not None:
        if (
            synced.nbf is not None
            and synced.nbf > now
            and (active is None or active.kid != synced.kid)
        ):
            # B2C switches at nbf by its own clock; poll so the status follows B2C, not ours.
            delays.append(min(activation_poll_interval, max(synced.nbf - now, 1)))
        rotation = getattr(desired, "rotation_every", None)
        if rotation is not None and synced.nbf is not None:
            delays.append(max(synced.nbf + rotation - now, 1))
        if (
            synced.exp is not None
            and synced.exp > now
            and isinstance(desired, (DesiredSecret, DesiredGenerated))
        ):
            delays.append(max(synced.exp - now, 1))
    return float(min(delays))


def summarize(
    key_set_id: str,
    synced: RemoteKey | None,
    active: RemoteKey | None,
    now: int,
    hints: Sequence[str] = (),
) -> Outcome:
    """The Ready condition after a successful sync, stated from what B2C reports."""
    suffix = "".join(f"; {h}" for h in hints)
    if synced is None:
        return Outcome(
            Reason.DRIFTED, f"no key from this source is in B2C key set {key_set_id}{suffix}"
        )
    described = f"key {synced.kid}" + (f" (x5t {synced.x5t})" if synced.x5t else "")
    if synced.nbf is not None and synced.nbf > now and (active is None or active.kid != synced.kid):
        current = f"; until then B2C uses {active.kid}" if active else ""
        return Outcome(
            Reason.PENDING_ACTIVATION,
            f"{described} is in B2C key set {key_set_id}; B2C switches to it at its notBefore "
            f"{to_rfc3339(synced.nbf)}{current}{suffix}",
        )
    if active is None:
        return Outcome(
            Reason.DRIFTED,
            f"B2C reports no usable key in {key_set_id} (every key is expired, disabled or not yet "
            f"valid); policies using it fail until a valid key is added{suffix}",
        )
    if active.kid != synced.kid:
        # Not Ready: what B2C signs with is not what the source says (a newer key added in the
        # portal, or a source rolled back to an older certificate). Keys cannot be removed, so
        # only a person can settle it.
        return Outcome(
            Reason.DRIFTED,
            f"{described} from the source is in B2C key set {key_set_id}, but B2C uses "
            f"{active.kid}, a key with a later notBefore; disable that key in the B2C portal, or "
            f"give the source a newer certificate or value{suffix}",
        )
    until = f" until {to_rfc3339(active.exp)}" if active.exp else ""
    return Outcome(Reason.SYNCED, f"B2C key set {key_set_id} uses {described}{until}{suffix}")


class AskB2C:
    """The local rule cannot tell which key B2C uses; `why` says what made it ambiguous."""

    def __init__(self, why: str) -> None:
        self.why = why

    def __repr__(self) -> str:
        return f"AskB2C({self.why!r})"


def active_key(keys: Sequence[RemoteKey], now: int, *, margin: float) -> RemoteKey | AskB2C | None:
    """Which key B2C uses, by its own documented rule, from one read of the key set: among
    enabled, unexpired keys, the greatest notBefore that has passed; else the newest undated
    key; else none. AskB2C where that is not certain: a key whose status the read did not
    carry; a key staged for later or started within `margin` seconds (B2C switches at
    notBefore by its own clock, so a pending activation is always B2C's to report); an expiry
    within `margin` of now; two candidates with the same notBefore, or several undated
    ones (B2C breaks ties by insertion order, which a read does not promise to keep).

    In the steady state (every key started long ago) this answers alone, so a resync costs one
    Graph read."""
    if any(key.status not in ("enabled", "disabled") for key in keys):
        return AskB2C("a key's status is unknown")
    for key in keys:
        if key.nbf is not None and key.nbf > now - margin:
            return AskB2C(f"key {key.kid} is staged or has just started")
        if key.exp is not None and abs(key.exp - now) < margin:
            return AskB2C(f"key {key.kid} expires within {margin:g}s")
    usable = [k for k in keys if k.status == "enabled" and (k.exp is None or k.exp > now)]
    started = [k for k in usable if k.nbf is not None and k.nbf <= now]
    if started:
        newest = max(k.nbf or 0 for k in started)
        tied = [k for k in started if k.nbf == newest]
        return tied[0] if len(tied) == 1 else AskB2C("two keys share the newest notBefore")
    undated = [k for k in usable if k.nbf is None]
    if len(undated) > 1:
        return AskB2C("several keys have no notBefore")
    return undated[0] if undated else None


def staged_successor(keys: Sequence[RemoteKey], now: int) -> RemoteKey | None:
    """The key B2C switches to next by its own rule: the enabled key with the earliest notBefore
    still ahead that is not expired by then. None when nothing is staged: the active key's
    expiry is then the key set's deadline (what the expiry alerts watch)."""
    staged = [
        k
        for k in keys
        if k.status == "enabled"
        and k.nbf is not None
        and k.nbf > now
        and (k.exp is None or k.exp > k.nbf)
    ]
    return min(staged, key=lambda k: k.nbf or 0, default=None)
