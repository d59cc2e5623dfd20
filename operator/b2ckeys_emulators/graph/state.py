"""The emulated B2C tenant's key sets and the rules B2C applies to them (no HTTP here).

`EmulatorState` is both the store the HTTP layer drives and the in-process inspector tests use
(`emu.state`): key sets, the request log, queued faults and the emulator's clock.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

from b2ckeys.secret import SecretBytes
from b2ckeys_emulators.graph import keys as keys
from b2ckeys_emulators.graph.keys import (
    B2CRefusal,
    RsaKeyPool,
    StoredKey,
    bad_request,
    missing_parameter,
)
from b2ckeys_emulators.graph.rules import EmulatorRules

logger = logging.getLogger(__name__)

BACKUP_SUFFIX = ".bak"
# The request log keeps the latest entries only, so a long-running demo cannot grow without bound.
_REQUEST_LOG_LIMIT = 10_000
# NumericDate values above this are almost certainly milliseconds (year 5138 in seconds).
_MILLISECONDS_THRESHOLD = 10**11


class EmulatorClock:
    """The emulator's "now": real time plus an offset that tests move with advance() / set()."""

    def __init__(self) -> None:
        self._offset = 0.0

    def now(self) -> float:
        return time.time() + self._offset

    def advance(self, seconds: float) -> float:
        self._offset += seconds
        return self.now()

    def set(self, epoch: float) -> float:
        self._offset = epoch - time.time()
        return self.now()

    def reset(self) -> None:
        self._offset = 0.0


@dataclass
class Fault:
    """A queued misbehaviour for the next `times` requests whose method and path match.

    `path` is a regular expression searched in the request path (e.g. "uploadSecret$").
    Exactly one effect: `status` (an error answer, optionally after `latency`), `latency` alone
    (then the real handler runs, still counted as an in-flight write), or `commit_then_drop`
    (the real handler runs and changes state, then the connection is dropped unanswered).
    """

    path: str
    method: str | None = None
    times: int = 1
    status: int | None = None
    code: str | None = None
    message: str | None = None
    retry_after: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    latency: float = 0.0
    commit_then_drop: bool = False
    id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def __post_init__(self) -> None:
        # Faults also arrive as JSON over the control route, so check types, not just values.
        _require(isinstance(self.path, str), "path must be a regular expression string")
        _require(self.method is None or isinstance(self.method, str), "method must be a string")
        _require(_is_int(self.times), "times must be an integer")
        _require(self.status is None or _is_int(self.status), "status must be an integer")
        _require(
            isinstance(self.latency, int | float) and not isinstance(self.latency, bool),
            "latency must be a number of seconds",
        )
        _require(isinstance(self.commit_then_drop, bool), "commit_then_drop must be true or false")
        _require(
            isinstance(self.headers, Mapping)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in self.headers.items()),
            "headers must map names to string values",
        )
        for text in (self.code, self.message, self.retry_after):
            _require(text is None or isinstance(text, str), "code/message must be strings")
        re.compile(self.path)
        if self.times < 1:
            raise ValueError("times must be at least 1")
        if self.latency < 0:
            raise ValueError("latency must not be negative")
        if self.status is not None and self.commit_then_drop:
            raise ValueError("a fault either answers with a status or drops after committing")
        if self.status is None and not self.commit_then_drop and not self.latency:
            raise ValueError("a fault needs status, latency or commit_then_drop")
        if self.status is not None and not 400 <= self.status <= 599:
            raise ValueError("status must be an HTTP error status (400-599)")

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method.upper() != method.upper():
            return False
        return re.search(self.path, path) is not None

    @property
    def kind(self) -> str:
        if self.status is not None:
            return f"status {self.status}"
        return "commit_then_drop" if self.commit_then_drop else "latency"

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["headers"] = dict(self.headers)
        return data


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class RequestRecord:
    """One line of the request log. Never bodies, never headers that carry tokens."""

    method: str
    path: str
    status: int
    time: float  # the emulator clock when the request arrived
    duration_ms: float
    request_id: str
    client_request_id: str | None
    client_id: str | None  # the app the bearer token was issued to, when one was checked
    fault: str | None  # which injected fault (if any) shaped this answer


class WriteRateLimit:
    """At most `per_second` Graph writes accepted in any one-second window, as a tenant's
    write limit in Graph: a write over it is answered 429 with Retry-After instead of run.

    A sliding window over the times of accepted writes (monotonic clock, not the emulator's
    settable one), so no second anywhere holds more than `per_second` of them.
    """

    def __init__(self, per_second: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        if per_second < 1:
            raise ValueError("a write rate limit must allow at least 1 write per second")
        self.per_second = per_second
        self._clock = clock
        self._accepted: deque[float] = deque()
        self.refused = 0

    def admit(self) -> float | None:
        """None if this write may run now (and counts it); else seconds until one may."""
        now = self._clock()
        while self._accepted and self._accepted[0] <= now - 1.0:
            self._accepted.popleft()
        if len(self._accepted) < self.per_second:
            self._accepted.append(now)
            return None
        self.refused += 1
        return self._accepted[0] + 1.0 - now


@dataclass
class KeySet:
    id: str
    keys: list[StoredKey] = field(default_factory=list)


class EmulatorState:
    """Key sets with B2C's rules, plus the inspectors and fault queue tests drive."""

    def __init__(
        self,
        rules: EmulatorRules | None = None,
        *,
        key_pool: RsaKeyPool | None = None,
        write_rate_limit: WriteRateLimit | None = None,
    ) -> None:
        self.rules = rules or EmulatorRules()
        # Benchmark aids, both off by default: pre-made RSA keys for generateKey, and the
        # tenant's write limit (the emulator serves one tenant, so one limit).
        self.key_pool = key_pool
        self.write_rate_limit = write_rate_limit
        self.clock = EmulatorClock()
        self._key_sets: dict[str, KeySet] = {}
        self._requests: deque[RequestRecord] = deque(maxlen=_REQUEST_LOG_LIMIT)
        self._faults: list[Fault] = []
        self._in_flight: Counter[str] = Counter()
        self._warnings: list[str] = []

    # --- inspectors ------------------------------------------------------------------------

    def now(self) -> float:
        return self.clock.now()

    def advance_clock(self, seconds: float) -> float:
        return self.clock.advance(seconds)

    def set_clock(self, epoch: float) -> float:
        return self.clock.set(epoch)

    def key_set_ids(self) -> list[str]:
        return list(self._key_sets)

    def key_set(self, key_set_id: str) -> KeySet | None:
        """A copy of one key set that a test cannot change B2C's state through."""
        found = self._key_sets.get(key_set_id)
        if found is None:
            return None
        # Shallow key copies: private material is shared, never duplicated.
        return KeySet(id=found.id, keys=[dataclasses.replace(k) for k in found.keys])

    def private_material(self, key_set_id: str, kid: str) -> SecretBytes | None:
        """What a key's write-only members hold, for tests that check an upload's content.

        In-process only: no HTTP route ever returns this.
        """
        for key in self._existing(key_set_id).keys:
            if key.kid == kid:
                return key.private
        return None

    def snapshot(self) -> list[dict[str, Any]]:
        """The key sets as B2C holds them, secrets excluded, each with its active kid."""
        view: list[dict[str, Any]] = []
        for key_set in self._key_sets.values():
            active = self._active_key_or_none(key_set)
            view.append(
                {
                    "id": key_set.id,
                    "activeKid": active.kid if active else None,
                    "keys": [k.public_view(self.rules) for k in key_set.keys],
                }
            )
        return view

    def requests(self) -> list[RequestRecord]:
        return list(self._requests)

    def record_request(self, record: RequestRecord) -> None:
        self._requests.append(record)

    def writes_in_flight(self) -> dict[str, int]:
        """Key set id -> number of write handlers running on it right now."""
        return dict(self._in_flight)

    def warnings(self) -> list[str]:
        return list(self._warnings)

    def add_fault(self, fault: Fault) -> Fault:
        self._faults.append(fault)
        return fault

    def faults(self) -> list[Fault]:
        return list(self._faults)

    def clear_faults(self) -> None:
        self._faults.clear()

    def take_fault(self, method: str, path: str) -> Fault | None:
        """The first queued fault matching this request, counting one use of it."""
        for fault in self._faults:
            if fault.matches(method, path):
                fault.times -= 1
                if fault.times == 0:
                    self._faults.remove(fault)
                return fault
        return None

    def reset(self) -> None:
        """Forget key sets, requests, faults, warnings and clock changes (tokens stay valid)."""
        self._key_sets.clear()
        self._requests.clear()
        self._faults.clear()
        self._warnings.clear()
        self.clock.reset()

    # --- concurrency -----------------------------------------------------------------------

    @contextmanager
    def writing(self, key_set_id: str) -> Iterator[None]:
        """Mark a write to `key_set_id` in flight; a second overlapping write gets AADB2C95053."""
        if self.rules.detect_concurrent_writes and self._in_flight[key_set_id]:
            raise B2CRefusal(
                self.rules.concurrent_write_status,
                "AADB2C95053",
                "Multiple concurrent writes to the same object detected. Please perform update "
                "operations on the same object sequentially.",
            )
        self._in_flight[key_set_id] += 1
        try:
            yield
        finally:
            self._in_flight[key_set_id] -= 1
            if not self._in_flight[key_set_id]:
                del self._in_flight[key_set_id]

    # --- Graph operations ------------------------------------------------------------------

    def list_key_sets(self) -> list[KeySet]:
        return list(self._key_sets.values())

    def get_key_set(self, key_set_id: str) -> KeySet:
        return self._existing(key_set_id)

    def final_id(self, proposed: str) -> str:
        """The id B2C gives a key set created as `proposed` (§2.1)."""
        prefix = self.rules.id_prefix
        if proposed.startswith(prefix) and not self.rules.prefix_twice:
            return proposed
        return prefix + proposed

    def create_key_set(self, body: Mapping[str, Any]) -> KeySet:
        if self.rules.reject_odata_type_on_create and "@odata.type" in body:
            raise bad_request("AADB2C", "The 'keySet' field is invalid in request.")
        unknown = set(body) - {"id", "keys", "@odata.type"}
        if unknown and not self.rules.ignore_unknown_create_fields:
            raise bad_request("AADB2C", "The 'keySet' field is invalid in request.")
        proposed = body.get("id")
        if proposed is None or proposed == "":
            raise missing_parameter("id")
        if not isinstance(proposed, str):
            raise bad_request("BadRequest", "Invalid value for property 'id'.")
        key_set_id = self.final_id(proposed)
        backup_blocks = (
            not self.rules.recreate_while_backup_exists
            and key_set_id + BACKUP_SUFFIX in self._key_sets
        )
        if key_set_id in self._key_sets or backup_blocks:
            raise B2CRefusal(
                self.rules.duplicate_create_status,
                "AADB2C95028",
                f"Can't create trustframework key set with name '{key_set_id}' because it "
                "already exists.",
            )
        new_keys = self._keys_from_body(body.get("keys") or [])
        key_set = KeySet(id=key_set_id, keys=new_keys)
        self._key_sets[key_set_id] = key_set
        return key_set

    def replace_key_set(self, key_set_id: str, body: Mapping[str, Any]) -> KeySet:
        """PUT (and PATCH, §2.8): replace every key with complete JWKs that carry no kid."""
        key_set = self._key_sets.get(key_set_id)
        if key_set is None:
            raise B2CRefusal(
                self.rules.put_missing_status,
                "AADB2C95052",
                f"The trustframework key set with id '{key_set_id}' is not created. Please use "
                "'Create api' to create the key set first.",
            )
        if body.get("id") not in (None, key_set_id):
            raise bad_request("AADB2C", "The id of a trustframework key set can't be changed.")
        if "keys" not in body:
            raise missing_parameter("keys")
        key_set.keys = self._keys_from_body(body["keys"])
        return key_set

    def delete_key_set(self, key_set_id: str) -> None:
        key_set = self._existing(key_set_id)
        del self._key_sets[key_set_id]
        if self.rules.backup_on_delete and not key_set_id.endswith(BACKUP_SUFFIX):
            backup_id = key_set_id + BACKUP_SUFFIX
            self._key_sets.pop(backup_id, None)
            self._key_sets[backup_id] = KeySet(id=backup_id, keys=key_set.keys)

    def generate_key(self, key_set_id: str, body: Mapping[str, Any]) -> StoredKey:
        key_set = self._existing(key_set_id)
        kty = keys.check_kty(body.get("kty"))
        use = body.get("use")
        keys.check_use(use)
        assert isinstance(use, str)
        nbf, exp = self._dates(body)
        self._check_compatible(key_set, kty=kty, use=use)
        key = keys.generate_key(kty=kty, use=use, rules=self.rules, pool=self.key_pool)
        key.nbf, key.exp = nbf, exp
        return self._append(key_set, key)

    def upload_secret(self, key_set_id: str, body: Mapping[str, Any]) -> StoredKey:
        key_set = self._existing(key_set_id)
        use = body.get("use")
        keys.check_use(use)
        assert isinstance(use, str)
        k = body.get("k")
        if k is None or k == "":
            raise missing_parameter("k")
        if not isinstance(k, str):
            raise bad_request("BadRequest", "Invalid value for property 'k'.")
        nbf, exp = self._dates(body)
        lead = self.rules.min_secret_nbf_lead_seconds
        if lead and (nbf is None or nbf < self.now() + lead):
            raise bad_request("AADB2C", f"The secret's 'nbf' must be at least {lead} s from now.")
        self._check_compatible(key_set, kty="oct", use=use)
        key = keys.secret_key(k=k, use=use, rules=self.rules)
        key.nbf, key.exp = nbf, exp
        key.status = self._upload_status()
        return self._append(key_set, key)

    def upload_certificate(self, key_set_id: str, body: Mapping[str, Any]) -> StoredKey:
        key_set = self._existing(key_set_id)
        if not body.get("key"):
            raise missing_parameter("key")
        key = keys.certificate_key(key=body["key"], rules=self.rules)
        return self._append_certificate(key_set, key, body)

    def upload_pkcs12(self, key_set_id: str, body: Mapping[str, Any]) -> StoredKey:
        key_set = self._existing(key_set_id)
        if not body.get("key"):
            raise missing_parameter("key")
        password = body.get("password") or ""
        if not isinstance(password, str):
            raise bad_request("BadRequest", "Invalid value for property 'password'.")
        key = keys.pkcs12_key(key=body["key"], password=password, rules=self.rules)
        return self._append_certificate(key_set, key, body)

    def active_key(self, key_set_id: str) -> StoredKey:
        key_set = self._existing(key_set_id)
        active = self._active_key_or_none(key_set)
        if active is None:
            raise B2CRefusal(
                self.rules.no_active_key_status,
                self.rules.no_active_key_code,
                f"The key container with id '{key_set_id}' in tenant does not has a valid key. "
                "Possibly the key expired (exp <= now) or the key container has only future keys "
                "(nbf > now).",
            )
        return active

    def list_keys(self, key_set_id: str) -> list[StoredKey]:
        return list(self._existing(key_set_id).keys)

    def get_key(self, key_set_id: str, kid: str) -> StoredKey:
        key_set = self._existing(key_set_id)
        for key in key_set.keys:
            if key.kid == kid:
                return key
        raise self._not_found("Key", "kid", kid)

    def set_key_status(self, key_set_id: str, kid: str, body: Mapping[str, Any]) -> None:
        """PATCH keys_v2/{kid}: only `status` may change (§2.9)."""
        key = self.get_key(key_set_id, kid)
        if set(body) - {"status"}:
            raise bad_request("BadRequest", "Only the 'status' property of a key can be updated.")
        status = body.get("status")
        if status not in ("enabled", "disabled"):
            raise bad_request("BadRequest", "Invalid value for property 'status'.")
        if status == "disabled" and self.rules.refuse_disabling_last_usable_key:
            others = [k for k in self._existing(key_set_id).keys if k is not key]
            if self._usable(key) and not any(self._usable(k) for k in others):
                raise bad_request(
                    "AADB2C90134",
                    f"The key container with id '{key_set_id}' does not has an active key to "
                    "revoke: disabling this key would leave no usable key.",
                )
        key.status = str(status)

    # --- rules -----------------------------------------------------------------------------

    def _existing(self, key_set_id: str) -> KeySet:
        key_set = self._key_sets.get(key_set_id)
        if key_set is None:
            raise self._not_found("Key set", "id", key_set_id)
        return key_set

    def _not_found(self, what: str, field_name: str, value: str) -> B2CRefusal:
        return B2CRefusal(
            self.rules.not_found_status,
            "AADB2C90073",
            f"{what} with '{field_name}': '{value}' cannot be found in the directory.",
        )

    def _usable(self, key: StoredKey) -> bool:
        return key.status == "enabled" and (key.exp is None or key.exp > self.now())

    def _active_key_or_none(self, key_set: KeySet) -> StoredKey | None:
        """§2.6: the greatest nbf <= now among enabled, unexpired keys (latest added on a tie);
        else the most recently added enabled key without nbf."""
        now = self.now()
        usable = [(i, k) for i, k in enumerate(key_set.keys) if self._usable(k)]
        started = [(k.nbf, i, k) for i, k in usable if k.nbf is not None and k.nbf <= now]
        if started:
            return max(started, key=lambda entry: (entry[0], entry[1]))[2]
        undated = [k for _, k in usable if k.nbf is None]
        return undated[-1] if undated else None

    def _check_compatible(self, key_set: KeySet, *, kty: str, use: str) -> None:
        for key in key_set.keys:
            if key.kty.lower() != kty.lower():
                raise bad_request("AADB2C95032", "One can't mix RSA and Oct types in one key set.")
            if key.use != use:
                raise bad_request(
                    "AADB2C95042", "One can't mix signature and encryption usage in one key set."
                )

    def _keys_from_body(self, raw_keys: object) -> list[StoredKey]:
        if not isinstance(raw_keys, Sequence) or isinstance(raw_keys, str):
            raise bad_request("BadRequest", "Invalid value for property 'keys'.")
        scratch = KeySet(id="")
        for raw in raw_keys:
            key = keys.jwk_key(raw, rules=self.rules)
            self._check_compatible(scratch, kty=key.kty, use=key.use)
            scratch.keys.append(key)
            self._warn_if_milliseconds(key.nbf, key.exp)
        return scratch.keys

    def _append_certificate(
        self, key_set: KeySet, key: StoredKey, body: Mapping[str, Any]
    ) -> StoredKey:
        # The documented bodies carry no `use`; one sent anyway (additional data) is honoured.
        requested_use = body.get("use")
        if requested_use is not None:
            keys.check_use(requested_use)
            key.use = str(requested_use)
        elif key_set.keys and self.rules.certificate_use_follows_key_set:
            key.use = key_set.keys[0].use
        if self.rules.reject_expired_certificate and key.exp is not None and key.exp <= self.now():
            raise bad_request("AADB2C90214", "The key's expiry date is in the past.")
        if self.rules.reject_duplicate_key_upload and any(
            k.public_fingerprint == key.public_fingerprint for k in key_set.keys
        ):
            raise B2CRefusal(409, "AADB2C90180", "The presented key already exists.")
        self._check_compatible(key_set, kty=key.kty, use=key.use)
        key.status = self._upload_status()
        return self._append(key_set, key)

    def _append(self, key_set: KeySet, key: StoredKey) -> StoredKey:
        # Kids are random; a clash is astronomically unlikely but would break keys_v2 lookups.
        while any(k.kid == key.kid for k in key_set.keys):
            key.kid = keys.new_kid()
        key_set.keys.append(key)
        return key

    def _upload_status(self) -> str:
        return "enabled" if self.rules.uploaded_keys_start_enabled else "disabled"

    def _dates(self, body: Mapping[str, Any]) -> tuple[int | None, int | None]:
        nbf, exp = keys.optional_int(body, "nbf"), keys.optional_int(body, "exp")
        if self.rules.reject_past_expiry and exp is not None and exp <= self.now():
            raise bad_request("AADB2C90214", "The key's expiry date is in the past.")
        self._warn_if_milliseconds(nbf, exp)
        return nbf, exp

    def _warn_if_milliseconds(self, *values: int | None) -> None:
        if any(v is not None and v > _MILLISECONDS_THRESHOLD for v in values):
            message = "nbf/exp above 10^11: NumericDate is seconds, these look like milliseconds"
            self._warnings.append(message)
            logger.warning(message)
