"""Plain-text tables of key sets, as `kubectl b2ckeys status` and `b2ckeys demo` print them.

Pure functions over what the API server and B2C return (a TrustFrameworkKeySet body as served,
B2C's public key members): nothing here reads a Secret or calls anything, and no column is ever
filled from key material, only from status and from B2C's public view of its keys.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

# kids and thumbprints are 27-43 characters; a table of several would not fit a terminal.
SHORT = 14


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell, two spaces apart, a rule under the headers."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, rows)])


def shorten(value: Any, width: int = SHORT) -> str:
    """The value, cut to `width` characters with an ellipsis; "-" when empty."""
    text = str(value) if value not in (None, "") else "-"
    return text if len(text) <= width else text[: width - 1] + "…"


def format_time(value: Any) -> str:
    """An epoch second (B2C's nbf/exp) or an RFC 3339 string (status) as `YYYY-MM-DD HH:MM`."""
    if isinstance(value, int) and not isinstance(value, bool):
        return dt.datetime.fromtimestamp(value, dt.UTC).strftime("%Y-%m-%d %H:%M")
    if isinstance(value, str) and value:
        return value.replace("T", " ")[:16]
    return "-"


def ready_condition(body: Mapping[str, Any]) -> Mapping[str, Any]:
    """The Ready condition of a key set as served ({} when the operator has not written one)."""
    for condition in (body.get("status") or {}).get("conditions") or []:
        if isinstance(condition, Mapping) and condition.get("type") == "Ready":
            return condition
    return {}


KEYSET_COLUMNS = ("NAME", "READY", "REASON", "KEYSET", "ACTIVE-KID", "X5T", "EXPIRES", "SYNCED-KID")
WIDE_COLUMNS = ("SOURCE", "MODE", "KEYS", "LAST-SYNC")


def keyset_table(
    bodies: Sequence[Mapping[str, Any]],
    *,
    wide: bool = False,
    namespaces: bool = False,
    tenants: bool = False,
) -> str:
    """One row per key set, from its status alone: its Ready condition, the B2C key set, the key
    B2C uses (status.activeKey) and when it expires, and the key this resource put there
    (status.syncedKey). `wide` shows whole kids and thumbprints and adds the source, the mode,
    the number of keys in B2C and the last status change; `namespaces` adds a first column,
    `tenants` one after the name (spec.tenantRef's name, or default)."""
    width = 10_000 if wide else SHORT
    headers = [*(["NAMESPACE"] if namespaces else []), *KEYSET_COLUMNS]
    if tenants:
        headers.insert(headers.index("NAME") + 1, "TENANT")
    if wide:
        headers += WIDE_COLUMNS
    rows = []
    for body in bodies:
        meta, status = body.get("metadata") or {}, body.get("status") or {}
        ready = ready_condition(body)
        active, synced = status.get("activeKey") or {}, status.get("syncedKey") or {}
        tenant = (body.get("spec") or {}).get("tenantRef") or {}
        row = [
            *([str(meta.get("namespace") or "-")] if namespaces else []),
            str(meta.get("name") or "-"),
            *([str(tenant.get("name") or "default")] if tenants else []),
            str(ready.get("status") or "-"),
            str(ready.get("reason") or "-"),
            str(status.get("keySetId") or "-"),
            shorten(active.get("kid"), width),
            shorten(active.get("x5t"), width),
            format_time(active.get("expires")),
            shorten(synced.get("kid"), width),
        ]
        if wide:
            row += [
                str(status.get("source") or "-"),
                str((body.get("spec") or {}).get("mode") or "Sync"),
                str(status.get("keyCount", "-")),
                format_time(status.get("lastSyncTime")),
            ]
        rows.append(row)
    return render_table(headers, rows)


B2C_COLUMNS = ("B2C KEYSET", "KID", "KTY", "USE", "X5T", "NOT-BEFORE", "EXPIRES", "ACTIVE")


def b2c_key_table(
    key_sets: Sequence[tuple[str, Sequence[Mapping[str, Any]], str | None]],
    *,
    wide: bool = False,
    owners: Sequence[str] | None = None,
    tenants: Sequence[str] | None = None,
) -> str:
    """Every key of each B2C key set, `(id, keys, active kid)`, with the active one marked.

    Keys are B2C's public members (kid, kty, use, x5t, nbf, exp, status). A key set without
    keys still gets a row, so an empty container is seen. `tenants` and `owners` (one per key
    set) add first columns naming its tenant and the TrustFrameworkKeySet that manages it."""
    width = 10_000 if wide else SHORT
    headers = [
        *(["TENANT"] if tenants is not None else []),
        *(["RESOURCE"] if owners is not None else []),
        *B2C_COLUMNS,
    ]
    if wide:
        headers.insert(headers.index("ACTIVE"), "STATUS")
    rows = []
    for position, (key_set_id, keys, active_kid) in enumerate(key_sets):
        for key in keys or [{}]:
            kid = key.get("kid")
            row = [
                *([tenants[position]] if tenants is not None else []),
                *([owners[position]] if owners is not None else []),
                key_set_id,
                shorten(kid, width),
                str(key.get("kty") or "-"),
                str(key.get("use") or "-"),
                shorten(key.get("x5t"), width),
                format_time(key.get("nbf")),
                format_time(key.get("exp")),
            ]
            if wide:
                row.append(str(key.get("status") or "-"))
            row.append("yes" if kid and kid == active_kid else "")
            rows.append(row)
    return render_table(headers, rows)
