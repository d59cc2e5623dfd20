"""The conformance table and its JSON twin (one row per rule), and the `--plan` listing."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from b2ckeys.conformance.runner import Cleanup, Row

FORMAT_VERSION = 1


def _compact(values: Mapping[str, object] | None) -> str:
    if values is None:
        return "-"
    return ", ".join(f"{k}={json.dumps(v)}" for k, v in values.items())


def summary(rows: Sequence[Row]) -> dict[str, int]:
    counts = Counter(row.result for row in rows)
    return {result: counts.get(result, 0) for result in ("PASS", "DIFFERS", "SKIPPED")}


def table(rows: Sequence[Row], cleanup: Cleanup, *, seconds: float) -> str:
    lines: list[str] = []
    width = max((len(row.rule.id) for row in rows), default=8)
    for row in rows:
        rule = row.rule
        lines.append(f"{rule.id:<{width}} [{rule.tag}] {row.result:<7} {rule.title}")
        indent = " " * (width + 7)
        lines.append(f"{indent}emulator: {_compact(rule.expected)}")
        if row.result == "SKIPPED":
            lines.append(f"{indent}skipped:  {row.reason}")
        elif row.result == "DIFFERS":
            lines.append(f"{indent}tenant:   {_compact(row.observed)}")
            if rule.fields:
                # Where a maintainer makes the emulator follow the tenant (rules.py).
                lines.append(f"{indent}emulator switch: {', '.join(rule.fields)}")
        else:
            lines.append(f"{indent}tenant:   the same")
    counts = summary(rows)
    lines.append("")
    lines.append(
        f"{counts['PASS']} PASS, {counts['DIFFERS']} DIFFERS, {counts['SKIPPED']} SKIPPED "
        f"in {seconds:.1f} s"
    )
    lines.append(_cleanup_line(cleanup))
    return "\n".join(lines)


def _cleanup_line(cleanup: Cleanup) -> str:
    line = f"cleanup: deleted {len(cleanup.deleted)} key sets"
    if cleanup.left:
        line += f"; still there: {', '.join(cleanup.left)}"
    if cleanup.error:
        line += f"; cleanup failed: {cleanup.error}"
    return line


def as_json(
    rows: Sequence[Row], cleanup: Cleanup, *, seconds: float, about: Mapping[str, Any]
) -> str:
    document = {
        "format": FORMAT_VERSION,
        **about,
        "seconds": round(seconds, 3),
        "summary": summary(rows),
        "rows": [
            {
                "id": row.rule.id,
                "tag": row.rule.tag,
                "title": row.rule.title,
                "result": row.result,
                "emulator": dict(row.rule.expected),
                "emulator_rules": list(row.rule.fields),
                "tenant": row.observed,
                "reason": row.reason,
                "seconds": round(row.seconds, 3),
            }
            for row in rows
        ],
        "cleanup": {"deleted": cleanup.deleted, "left": cleanup.left, "error": cleanup.error},
    }
    return json.dumps(document, indent=2)


def plan(rows: Sequence[Row], cleanup_calls: Sequence[str], *, stem: str, prefix: str) -> str:
    lines = [
        f"b2ckeys conformance would create key sets named {stem}* (every id it touches starts "
        f"with {prefix}) and make these calls; nothing was sent.",
        "Ids in braces are what B2C answers at run time.",
    ]
    for row in rows:
        lines.append(f"{row.rule.id} [{row.rule.tag}] {row.rule.title}")
        lines.extend(f"    {call}" for call in row.calls)
        if not row.calls:
            lines.append(f"    (no call: {row.reason or 'none needed'})")
    lines.append("cleanup (unless --keep): list key sets, then")
    lines.extend(f"    {call}" for call in cleanup_calls)
    return "\n".join(lines)
