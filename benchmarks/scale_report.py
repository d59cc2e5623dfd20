"""The scale benchmark's figures as a table: each with its goal from issue 12 and a verdict."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

# --- report ------------------------------------------------------------------------------------


def goals(f: Mapping[str, Any]) -> list[tuple[str, str, str, str]]:
    """(figure, value, goal, verdict) rows."""
    rows: list[tuple[str, str, str, str]] = []

    def row(name: str, value: Any, goal: str, met: bool | None) -> None:
        verdict = "-" if met is None else ("met" if met else "MISSED")
        rows.append((name, str(value), goal, verdict))

    if burst := f.get("burst"):
        row(
            f"burst: {burst['keysets']} key sets Ready",
            f"{burst['all_ready_seconds']} s",
            "-",
            None,
        )
        row("burst: operator CPU", f"{burst['cpu_seconds']['operator']} s", "-", None)
        row("burst: emulator CPU", f"{burst['cpu_seconds']['graph emulator']} s", "-", None)
        row(
            "burst: Graph reads (getActiveKey)/writes/tokens",
            "{read} ({getActiveKey}) / {write} / {token}".format(**burst["graph_requests"]),
            "-",
            None,
        )
        row("burst: operator's Kubernetes writes", _writes(burst["kube_writes"]), "-", None)
    if cold := f.get("cold_start"):
        row(
            f"cold start: {cold['keysets']} checked",
            f"{cold['all_checked_seconds']} s",
            "< 60 s",
            cold["all_checked_seconds"] < 60,
        )
        row(
            "cold start: Graph reads per key set",
            cold["graph_reads_per_keyset"],
            "1",
            cold["graph_reads_per_keyset"] <= 1.0,
        )
        row(
            "cold start: getActiveKey calls",
            cold["graph_requests"]["getActiveKey"],
            "-",
            None,
        )
        row(
            "cold start: Graph writes",
            cold["graph_requests"]["write"],
            "0",
            cold["graph_requests"]["write"] == 0,
        )
        writes = _keyset_writes(cold["kube_writes"])
        row("cold start: key set + Event writes", writes, "0", writes == 0)
        row("cold start: all operator writes", _writes(cold["kube_writes"]), "-", None)
        row("cold start: peak RSS (VmHWM)", f"{cold['peak_rss_mib']} MiB", "-", None)
    if mem := f.get("memory"):
        row(f"memory: RSS at {mem['keysets']} key sets", f"{mem['rss_mib']} MiB", "-", None)
        row(
            f"memory: + {mem['unrelated_secrets']} unrelated Secrets",
            f"{mem['rss_with_unrelated_mib']} MiB ({mem['growth_percent']:+} %)",
            "< +10 %",
            mem["growth_percent"] < 10,
        )
    for phase, label in (("renewal_idle", "idle"), ("renewal_during_resyncs", "during resyncs")):
        if r := f.get(phase):
            row(
                f"renewal {label}: p50/p95/p99",
                f"{r['p50_ms']}/{r['p95_ms']}/{r['p99_ms']} ms",
                "-",
                None,
            )
            if "p99_to_floor_p99" in r:
                row(
                    f"renewal {label}: p99 / floor p99",
                    r["p99_to_floor_p99"],
                    "<= 1.5",
                    r["p99_to_floor_p99"] <= 1.5,
                )
    if floor := f.get("renewal_floor"):
        row(
            "renewal floor: p50/p95/p99",
            f"{floor['p50_ms']}/{floor['p95_ms']}/{floor['p99_ms']} ms",
            "-",
            None,
        )
    if th := f.get("throttled"):
        limit = th["writes_per_second_limit"]
        row(
            f"throttled: {th['keysets']} key sets at {limit} writes/s",
            f"{th['all_ready_seconds']} s (min {th['minimum_seconds']} s)",
            "-",
            None,
        )
        row(
            "throttled: time / (writes / W)",
            th["ratio_to_minimum"],
            "<= 1.2",
            (th["ratio_to_minimum"] or 0) <= 1.2,
        )
        most = th["max_writes_in_any_second_after_first_429"]
        row(
            "throttled: most writes in a second after 1st 429",
            most if th["writes_refused_429"] else "no 429: the limit was never reached",
            f"<= {limit}",
            most <= limit if th["writes_refused_429"] else None,
        )
        row(
            "throttled: writes accepted / refused",
            f"{th['writes_accepted']} / {th['writes_refused_429']}",
            "-",
            None,
        )
    if st := f.get("steady"):
        per_pass = st["per_pass"]
        ratio = per_pass["reads_per_keyset_per_resync"]
        row(
            f"steady ({st['resync_seconds']:g} s resync): reads/key set/resync",
            f"{ratio} ({per_pass['passes']} passes, {per_pass['extra_gets']} extra GETs, "
            f"{per_pass['getActiveKey']} getActiveKey)",
            "<= 1",
            ratio is not None and ratio <= 1.0,
        )
        row(
            "steady: reads / (key sets x window / resync)",
            st["graph_reads_per_keyset_per_window_resync"],
            "-",
            None,
        )
        row(
            "steady: Graph writes",
            st["graph_requests"]["write"],
            "0",
            st["graph_requests"]["write"] == 0,
        )
        writes = _keyset_writes(st["kube_writes"])
        row("steady: key set + Event writes", writes, "0", writes == 0)
        row("steady: all operator writes", _writes(st["kube_writes"]), "-", None)
        row(
            "steady: CPU per resync (all key sets)",
            f"{st['cpu_seconds_per_resync']} s ({st['cpu_percent']} %)",
            "-",
            None,
        )
    return rows


def _keyset_writes(writes: Mapping[str, int]) -> int:
    return sum(v for k, v in writes.items() if k.startswith(("trustframeworkkeysets", "events")))


def _writes(writes: Mapping[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(writes.items())) or "none"


def render(sizes: Any, figures: Mapping[str, Any], problems: list[str]) -> str:
    rows = goals(figures)
    headers = ("figure", "value", "goal", "")
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    lines = [
        f"b2ckeys scale benchmark on the real kube-apiserver: N={sizes.keysets}, "
        f"M={sizes.renewals} renewals, {sizes.unrelated_secrets} unrelated Secrets, "
        f"{sizes.throttle_keysets} throttled key sets at {sizes.write_rate} writes/s, "
        f"resync {sizes.resync:g} s; {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}",
        "",
        "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)),
    ]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    if floor := figures.get("renewal_floor"):
        steps = ", ".join(f"{k} {v}" for k, v in floor["steps_median_ms"].items())
        lines += ["", f"renewal floor, median ms per call: {steps}"]
    for phase in ("renewal_idle", "renewal_during_resyncs"):
        timeline = (figures.get(phase) or {}).get("timeline") or {}
        if timeline:
            lines += [
                "",
                f"{phase}: where the time goes (median ms over {timeline['renewals']} of "
                f"{timeline['of']} renewals with the usual sequence; operator CPU "
                f"{figures[phase]['operator_cpu_ms_per_renewal']} ms per renewal)",
            ]
            lines += [f"  {step:<60} {ms:8.2f}" for step, ms in timeline["median_ms"].items()]
    if problems:
        lines += ["", "problems:", *problems]
    return "\n".join(lines)
