"""Running the checks: order, timing, PASS/DIFFERS/SKIPPED, and cleanup that always runs."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from b2ckeys.conformance.catalogue import Rule
from b2ckeys.conformance.checks import CHECKS, LAST
from b2ckeys.conformance.context import Check, Context, Observation, Skipped, Unexpected
from b2ckeys.conformance.probe import KEY_SETS, PlannedCall, PrefixViolation, key_set_path
from b2ckeys.graph.client import GraphError

Result = Literal["PASS", "DIFFERS", "SKIPPED"]
BACKUP_SUFFIX = ".bak"


@dataclass(frozen=True)
class Row:
    rule: Rule
    result: Result
    observed: Observation | None
    reason: str | None = None
    seconds: float = 0.0
    calls: tuple[PlannedCall, ...] = ()  # filled in by --plan only


@dataclass
class Cleanup:
    deleted: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)  # still there afterwards (or kept)
    error: str | None = None


def ordered(rules: Sequence[Rule]) -> list[Rule]:
    return [r for r in rules if r.id not in LAST] + [r for r in rules if r.id in LAST]


async def run_rule(ctx: Context, rule: Rule, check: Check) -> Row:
    started = time.monotonic()
    try:
        observed = await check(ctx)
    except Skipped as skipped:
        return Row(rule, "SKIPPED", None, str(skipped), time.monotonic() - started)
    except (Unexpected, GraphError, PrefixViolation) as failure:
        # A step the rule builds on failed: the tenant (or the guard) differs from the spec.
        observed = {"error": f"{type(failure).__name__}: {failure}"}
        return Row(rule, "DIFFERS", observed, str(failure), time.monotonic() - started)
    result: Result = "PASS" if dict(observed) == dict(rule.expected) else "DIFFERS"
    return Row(rule, result, observed, None, time.monotonic() - started)


async def run_all(
    ctx: Context,
    rules: Sequence[Rule],
    *,
    keep: bool,
    checks: Mapping[str, Check] = CHECKS,
) -> tuple[list[Row], Cleanup]:
    """Every rule in order, then cleanup, which runs even when a check or the run is cut short
    (a check's own bug, Ctrl-C): what this run created is deleted before the error surfaces."""
    rows: list[Row] = []
    cleanup = Cleanup()
    try:
        for rule in ordered(rules):
            before = len(getattr(ctx.probe, "calls", ()))
            row = await run_rule(ctx, rule, checks[rule.id])
            planned = tuple(getattr(ctx.probe, "calls", ())[before:])
            rows.append(Row(row.rule, row.result, row.observed, row.reason, row.seconds, planned))
    finally:
        cleanup = await clean_up(ctx, keep=keep)
    return rows, cleanup


async def _ours(ctx: Context) -> list[str]:
    """This run's key sets still in the tenant: ids with its stem, or ids Graph gave its creates."""
    response = await ctx.probe.send("GET", KEY_SETS)
    if response.status != 200:
        raise Unexpected(f"listing key sets answered {response.status} {response.error_code}")
    listed = [str(item.get("id")) for item in response.json_object.get("value") or ()]
    named = set(ctx.created)
    named |= {key_set_id + BACKUP_SUFFIX for key_set_id in ctx.created}
    return [i for i in listed if i.startswith(ctx.stem) or i in named]


async def clean_up(ctx: Context, *, keep: bool) -> Cleanup:
    """Delete this run's key sets, then the `.bak` copies B2C makes of them (twice at most: the
    first deletes leave new `.bak`s)."""
    cleanup = Cleanup()
    try:
        if keep:
            cleanup.left = await _ours(ctx)
            return cleanup
        for _ in range(3):
            found = await _ours(ctx)
            if ctx.probe.planning:
                found = sorted(set(ctx.created))
            if not found:
                break
            # Originals first, so each one's fresh .bak is deleted in the same pass.
            for key_set_id in sorted(found, key=lambda i: i.endswith(BACKUP_SUFFIX)):
                backup = () if key_set_id.endswith(BACKUP_SUFFIX) else (key_set_id + BACKUP_SUFFIX,)
                for target in (key_set_id, *backup):
                    if key_set_id in ctx.probe.guard.named_by_graph:
                        # B2C names the copy of a set it named itself: still this run's.
                        ctx.probe.guard.named_by_graph.add(target)
                    answer = await ctx.probe.send("DELETE", key_set_path(target))
                    if answer.status in (200, 204):
                        cleanup.deleted.append(target)
            if ctx.probe.planning:
                break
        cleanup.left = [] if ctx.probe.planning else await _ours(ctx)
    except (GraphError, Unexpected, PrefixViolation) as failure:
        cleanup.error = f"{type(failure).__name__}: {failure}"
    return cleanup
