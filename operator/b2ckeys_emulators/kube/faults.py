"""Injected API errors for a kube-emulator running as a process (the soak, the CLI).

In-process tests answer requests with kmock reactions; a separate process has no such hook, so
`/_emulator/faults` (loopback test tool, no auth, like the Graph emulator's) queues errors:

    POST   /_emulator/faults  {"verb": "patch", "resource": "trustframeworkkeysets",
                               "subresource": "status", "status": 409, "times": 2}
    GET    /_emulator/faults  -> {"value": [queued faults], "served": {"409": 3, ...}}
    DELETE /_emulator/faults  (forget every queued fault)

A fault answers the next `times` requests whose verb (get, list, watch, create, update, patch,
delete), resource plural, subresource and namespace match (an omitted field matches anything)
with the `metav1.Status` kube-apiserver sends for that code, before the emulation sees them; or,
given `latency` (seconds) instead of `status`, holds them that long and then serves them.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import kmock

# The reason kube-apiserver puts in a Status for each code a fault may answer with.
REASONS = {
    409: "Conflict",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}
VERBS = frozenset({"get", "list", "watch", "create", "update", "patch", "delete"})


@dataclass
class KubeFault:
    status: int | None = None
    verb: str | None = None
    resource: str | None = None  # a plural: "secrets", "trustframeworkkeysets"
    subresource: str | None = None
    namespace: str | None = None
    times: int = 1
    latency: float = 0.0
    id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def __post_init__(self) -> None:
        # Faults arrive as JSON, so check types as well as values.
        if not isinstance(self.latency, int | float) or isinstance(self.latency, bool):
            raise ValueError("latency must be a number of seconds")
        if (self.status is None) == (not self.latency) or self.latency < 0:
            raise ValueError("a fault has either a status or a positive latency")
        if self.status is not None:
            if not isinstance(self.status, int) or isinstance(self.status, bool):
                raise ValueError("status must be an integer")
            if self.status not in REASONS:
                raise ValueError(f"status must be one of {sorted(REASONS)}")
        if not isinstance(self.times, int) or isinstance(self.times, bool) or self.times < 1:
            raise ValueError("times must be an integer of at least 1")
        if self.verb is not None and self.verb not in VERBS:
            raise ValueError(f"verb must be one of {sorted(VERBS)}")
        for name in ("resource", "subresource", "namespace"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise ValueError(f"{name} must be a string")

    def matches(
        self, verb: str | None, resource: str | None, subresource: str | None, namespace: str | None
    ) -> bool:
        wanted = (self.verb, self.resource, self.subresource, self.namespace)
        actual = (verb, resource, subresource, namespace)
        return all(w is None or w == a for w, a in zip(wanted, actual, strict=True))

    def error(self) -> kmock.KubernetesError | None:
        """The answer, or None for a latency fault (the request is then served)."""
        if self.status is None:
            return None
        return kmock.KubernetesError(
            status=self.status,
            reason=REASONS[self.status],
            message=f"injected fault: {self.status} {REASONS[self.status]}",
        )


class FaultQueue:
    def __init__(self) -> None:
        self._faults: list[KubeFault] = []
        self.served: Counter[str] = Counter()

    def add(self, fault: KubeFault) -> KubeFault:
        self._faults.append(fault)
        return fault

    def clear(self) -> None:
        self._faults.clear()

    def queued(self) -> list[dict[str, Any]]:
        return [asdict(f) for f in self._faults]

    def take(
        self, verb: str | None, resource: str | None, subresource: str | None, namespace: str | None
    ) -> KubeFault | None:
        """The first queued fault matching this request, counting one use of it."""
        for fault in self._faults:
            if fault.matches(verb, resource, subresource, namespace):
                fault.times -= 1
                if fault.times == 0:
                    self._faults.remove(fault)
                self.served[str(fault.status or "latency")] += 1
                return fault
        return None
