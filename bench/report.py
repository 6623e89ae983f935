"""The printed table: one line per figure, with its target and whether it was met."""

from __future__ import annotations

from typing import Any


def _mark(ok: bool | None) -> str:
    return "" if ok is None else ("ok" if ok else "MISSED")


def _rows_b1(b1: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    median, paced, verdict = b1["median"], b1["paced"], b1["verdict"]
    rows = []
    for kind, title in (
        ("baseline", "baseline (HMAC only)"),
        ("work", "delayed (creates work)"),
        ("no_work", "in_transit (no work)"),
    ):
        m = median[kind]
        errors = sum(m["errors"].values()) if m["errors"] else 0
        rows.append(
            (
                f"B1 {title}",
                f"{m['rps']:,.0f} req/s  p50 {m['p50_ms']:.1f}  p95 {m['p95_ms']:.1f}  "
                f"p99 {m['p99_ms']:.1f} ms  errors {errors}",
                "",
                "",
            )
        )
    estimate = b1["cpu_estimate"]
    for kind, title, target in (("work", "work", 0.4), ("no_work", "no work", 0.8)):
        rows.append(
            (
                f"B1 {title} / baseline",
                f"{b1[kind + '_ratio']:.2f}× measured; {estimate[kind + '_ratio']:.2f}× from CPU per request",
                f"≥ {target:.2f}×",
                _mark(verdict[kind + "_ratio"]),
            )
        )
    cpu = b1["cpu_per_request"]
    rows.append(
        (
            "B1 CPU ms per request",
            "  ".join(
                f"{kind} {cpu[kind]['web_ms']:.2f}+{cpu[kind]['postgres_ms']:.2f}+{cpu[kind]['redis_ms']:.2f}"
                for kind in ("baseline", "work", "no_work")
            )
            + " (web+postgres+redis)",
            "",
            "",
        )
    )
    for kind, title in (("work", "delayed"), ("no_work", "in_transit")):
        p = paced[kind]
        rows.append(
            (
                f"B1 {title} at half max ({p['target_rate']:,.0f}/s)",
                f"p50 {p['p50_ms']:.1f}  p95 {p['p95_ms']:.1f}  p99 {p['p99_ms']:.1f} ms "
                f"({p['rps']:,.0f}/s), the worst of {len(p.get('tries', [p]))}: "
                + ", ".join(f"{t['p99_ms']:.1f} ms with {t.get('split')}" for t in p.get("tries", []))
                + f" ({p.get('connections', 8)} connections, per web process)",
                "p99 ≤ 50 ms",
                _mark(verdict[f"{kind}_p99_at_half_rate"]),
            )
        )
    rows.append(
        ("B1 acknowledged ⇒ recorded", str(b1["durability"]["rounds"]), "all", _mark(verdict["durability"]))
    )
    return rows


def _rows_b2(b2: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    latency, verdict = b2["time_to_apology"], b2["verdict"]
    rows = [
        (
            "B2 time to apology",
            f"p50 {latency['p50_s']:.2f}  p95 {latency['p95_s']:.2f}  p99 {latency['p99_s']:.2f}  "
            f"max {latency['max_s']:.2f} s",
            "p50 ≤ 1 s, p95 ≤ 2 s",
            _mark(verdict["p50"] and verdict["p95"]),
        ),
        (
            "B2 apologies",
            f"{b2['emails']} of {b2['incidents']} posted at {b2['achieved_rate']:.1f}/s, "
            f"sent at {b2.get('apology_rate', 0):.1f}/s "
            f"({b2['workers']} workers, {b2['worker_memory_mb']:.0f} MB)",
            "all",
            _mark(verdict["all_sent"]),
        ),
    ]
    for name, value in b2.get("breakdown", {}).items():
        if isinstance(value, dict) and "p50_s" in value:
            rows.append((f"B2   {name}", f"p50 {value['p50_s']:.3f}  p95 {value['p95_s']:.3f} s", "", ""))
    return rows


def _rows_b3(b3: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    verdict = b3["verdict"]
    return [
        (
            "B3 storm",
            f"{b3['emails']} apologies for {b3['incidents']} incidents in {b3['elapsed_s']:.0f} s"
            + (
                " (customers had theirs after p10 {p10:.0f} s, p50 {p50:.0f} s, p90 {p90:.0f} s)".format(
                    **b3["apology_s"]
                )
                if b3.get("apology_s")
                else ""
            ),
            "all",
            _mark(verdict["all_sent"] and verdict.get("all_tagged", True)),
        ),
        (
            "B3 vs lower bound",
            f"{b3['ratio_to_bound']:.2f}× (bound {b3['lower_bound_s']:.0f} s = "
            f"{b3['points_spent']:,.0f} points spent by the last apology / {b3['restore_rate']:.0f} per s)",
            "≤ 1.15×",
            _mark(verdict["within_bound"]),
        ),
        (
            "B3 points per incident",
            f"{b3['points_per_incident']:.1f} in all"
            + (
                f" ({b3['points_per_incident_by_last_apology']:.1f} by the last apology; "
                f"{b3['tags_added']} order tags in by {b3['tags_done_s']:.0f} s)"
                if "tags_added" in b3
                else ""
            ),
            "≤ 15 (aim)",
            _mark(verdict["points_per_incident"]),
        ),
        (
            "B3 duplicates",
            f"{b3['duplicate_emails']} emails, {b3['duplicate_codes']} codes",
            "0",
            _mark(verdict["no_duplicates"]),
        ),
        (
            "B3 throttling",
            f"{b3['throttled_answers']} THROTTLED answers, {b3['failed_jobs']} failed jobs",
            "0 failed",
            _mark(verdict["no_failed_jobs"]),
        ),
        (
            "B3 peak RSS per worker",
            f"max {b3['peak_rss_mb_max']:.0f} MB ({b3['workers']} workers)",
            "< 200 MB",
            _mark(verdict["rss"]),
        ),
    ]


def table(results: dict[str, Any]) -> str:
    rows: list[tuple[str, str, str, str]] = []
    for name, outcome in results["benchmarks"].items():
        if "error" in outcome:
            rows.append((name, f"failed: {outcome['error']}", "", "MISSED"))
            continue
        rows.extend({"B1": _rows_b1, "B2": _rows_b2, "B3": _rows_b3}[name](outcome))
    widths = [max(len(r[i]) for r in [*rows, ("figure", "measured", "target", "")]) for i in range(4)]
    header = ("figure", "measured", "target", "")
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines.extend("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows)
    m = results["machine"]
    lines.append("")
    lines.append(
        f"machine: {m['cpu']} ({m['cores']} cores), {m['memory']}; Python {m['python']}; "
        f"load average at start {m['load_average_at_start'][0]:.2f}, "
        f"at end {m.get('load_average_at_end', [0])[0]:.2f}"
    )
    return "\n".join(lines)
