"""How conformance talks to Graph: raw requests, the prefix guard, and the read-only preview.

`LiveProbe` sends each request through `MsGraphKeySetClient.send_raw` (the operator's own SDK
adapter, credential and middleware; never retried by the SDK) and keeps every 429 it meets.
`PlanProbe` sends nothing: it records each request and answers the way the emulator would by
default, so `--plan` lists exactly the calls a run would make. Both refuse a key set id outside
the run's prefix before anything is sent.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote

from b2ckeys.graph.msgraph_pipeline import parse_retry_after
from b2ckeys.graph.raw import RawResponse

KEY_SETS = "/trustFramework/keySets"
B2C_PREFIX = "B2C_1A_"
# A throttled request is sent again after Retry-After, at most this often and this long.
_THROTTLE_RETRIES = 4
_MAX_THROTTLE_WAIT_SECONDS = 60.0


class PrefixViolation(Exception):
    """A request would touch a key set outside the run's prefix: nothing was sent."""


class RawSender(Protocol):
    async def send_raw(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        *,
        content_type: str | None = "application/json",
    ) -> RawResponse: ...


@dataclass
class Guard:
    """Key set ids a run may touch: those starting with `prefix`, and those Graph itself named
    in answer to this run's creates (B2C may rewrite an id, e.g. prefix it twice)."""

    prefix: str
    named_by_graph: set[str] = field(default_factory=set)

    def check_path(self, method: str, path: str) -> None:
        if not path.startswith(KEY_SETS + "/"):
            return
        key_set_id = path[len(KEY_SETS) + 1 :].split("/", 1)[0]
        if not key_set_id.startswith(self.prefix) and key_set_id not in self.named_by_graph:
            raise PrefixViolation(
                f"refusing {method} on key set {key_set_id!r}: conformance only touches key "
                f"sets whose id starts with {self.prefix!r}"
            )

    def check_create(self, body: Mapping[str, Any] | None) -> None:
        proposed = str((body or {}).get("id", ""))
        final = proposed if proposed.startswith(B2C_PREFIX) else B2C_PREFIX + proposed
        if not final.startswith(self.prefix):
            raise PrefixViolation(
                f"refusing to create key set {proposed!r}: its id would not start with "
                f"{self.prefix!r}"
            )


def key_set_path(key_set_id: str, tail: str = "") -> str:
    return f"{KEY_SETS}/{quote(key_set_id, safe='')}{tail}"


class Probe(Protocol):
    guard: Guard
    throttled: list[RawResponse]
    planning: bool

    async def send(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        *,
        content_type: str | None = "application/json",
    ) -> RawResponse: ...

    async def sleep(self, seconds: float) -> None: ...


class LiveProbe:
    planning = False

    def __init__(self, sender: RawSender, guard: Guard) -> None:
        self._sender = sender
        self.guard = guard
        self.throttled: list[RawResponse] = []

    async def send(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        *,
        content_type: str | None = "application/json",
    ) -> RawResponse:
        _check(self.guard, method, path, body)
        for attempt in itertools.count():
            response = await self._sender.send_raw(method, path, body, content_type=content_type)
            if response.status != 429 or attempt >= _THROTTLE_RETRIES:
                return response
            # A 429 was not processed, so even a write may be sent again once Graph allows.
            self.throttled.append(response)
            wait = parse_retry_after(response.headers.get("retry-after"))
            await asyncio.sleep(
                min(_MAX_THROTTLE_WAIT_SECONDS, 2.0**attempt if wait is None else wait)
            )
        raise AssertionError("unreachable")  # pragma: no cover

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def _check(guard: Guard, method: str, path: str, body: Mapping[str, Any] | None) -> None:
    guard.check_path(method, path)
    if method.upper() == "POST" and path == KEY_SETS:
        guard.check_create(body)


@dataclass(frozen=True)
class PlannedCall:
    method: str
    path: str
    note: str = ""  # what else identifies the call: the id a create proposes

    def __str__(self) -> str:
        return f"{self.method:<6} {self.path}{' ' + self.note if self.note else ''}"


class PlanProbe:
    """Sends nothing; records each request and answers as the emulator does by default."""

    planning = True

    def __init__(self, guard: Guard) -> None:
        self.guard = guard
        self.throttled: list[RawResponse] = []
        self.calls: list[PlannedCall] = []
        self._kids = itertools.count(1)

    async def send(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        *,
        content_type: str | None = "application/json",
    ) -> RawResponse:
        _check(self.guard, method, path, body)
        method = method.upper()
        proposed = str((body or {}).get("id", "")) if path == KEY_SETS else ""
        self.calls.append(PlannedCall(method, path, f'{{"id": "{proposed}"}}' if proposed else ""))
        if method == "POST" and path == KEY_SETS:
            final = proposed if proposed.startswith(B2C_PREFIX) else B2C_PREFIX + proposed
            return RawResponse(method, path, 201, {}, {"id": final, "keys": []})
        if method == "DELETE" or (method == "PATCH" and "/keys_v2/" in path):
            return RawResponse(method, path, 204)
        if method == "POST" or "getActiveKey" in path:
            return RawResponse(method, path, 200, {}, {"kid": f"{{kid{next(self._kids)}}}"})
        return RawResponse(method, path, 200, {}, {"value": [], "keys": []})

    async def sleep(self, seconds: float) -> None:
        return None
