"""Disabling a key is a write: a standby replica never makes it, reading keys_v2 is allowed."""

from __future__ import annotations

import pytest

from b2ckeys.key_commands import _kid_joined, key_status_parser
from b2ckeys.leader import Leadership, NotLeading
from b2ckeys.leader_gates import LeaderGatedKeySetClient


class RecordingKeys:
    """The inner Graph client: records what reached it."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def list_keys(self, key_set_id: str) -> list[object]:
        self.calls.append(f"list {key_set_id}")
        return []

    async def set_key_status(self, key_set_id: str, kid: str, *, enabled: bool) -> None:
        self.calls.append(f"{'enable' if enabled else 'disable'} {kid}")


async def test_set_key_status_passes_the_gate_and_list_keys_does_not_need_it() -> None:
    now = [100.0]
    leadership = Leadership("me", 10.0, clock=lambda: now[0])
    inner = RecordingKeys()
    gated = LeaderGatedKeySetClient(inner, leadership)  # type: ignore[arg-type]

    await gated.list_keys("B2C_1A_K")  # a standby may look
    with pytest.raises(NotLeading):
        await gated.set_key_status("B2C_1A_K", "old", enabled=False)
    leadership.renewed(now[0])
    await gated.set_key_status("B2C_1A_K", "old", enabled=False)
    now[0] += 10.0
    with pytest.raises(NotLeading):
        await gated.set_key_status("B2C_1A_K", "old", enabled=True)

    assert inner.calls == ["list B2C_1A_K", "disable old"]


def test_a_kid_starting_with_a_dash_is_taken_as_the_kid() -> None:
    # One base64url kid in 64 starts with "-": often enough to meet in practice.
    argv = _kid_joined(["fb", "--kid", "-x9Kq", "-n", "identity"])
    args = key_status_parser("disable").parse_args(argv)
    assert (args.kid, args.name, args.namespace) == ("-x9Kq", "fb", "identity")
    assert _kid_joined(["fb", "--kid"]) == ["fb", "--kid"]  # argparse still says it is missing
