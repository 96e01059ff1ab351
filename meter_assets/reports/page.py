"""The operations report as one self-contained HTML page: inline SVG charts, no scripts, no CDN.

It opens from a file (or the lake's browser) and prints; times are shown in the market's
time zone, where people read them.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from html import escape
from zoneinfo import ZoneInfo

from meter_assets.reports.ops import Report

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #1d2733; padding: 0 1rem; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; }
h2 { font-size: 1.15rem; margin-top: 2rem; border-bottom: 1px solid #d5dbe3; }
.figures { display: flex; flex-wrap: wrap; gap: .8rem; margin: 1rem 0; }
.figure { background: #f3f6f9; border-radius: 6px; padding: .6rem .9rem; min-width: 9rem; }
.figure b { display: block; font-size: 1.3rem; } .figure span { color: #5b6776; font-size: .85rem; }
.alert { background: #fde8e4; } table { border-collapse: collapse; width: 100%; margin: .5rem 0; font-size: .9rem; }
th, td { text-align: left; padding: .25rem .5rem; border-bottom: 1px solid #e6eaef; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; } .muted { color: #5b6776; }
svg text { font: 12px system-ui, sans-serif; fill: #1d2733; }
"""

ESTIMATION_KINDS = {"method": "estimated by", "flagged": "flagged, kept", "replaced": "flagged, replaced"}
COLOURS = {"actual": "#2f6db5", "estimated": "#e0a030", "missing": "#c8503c", "today": "#2f6db5", "before": "#b8c6d8"}


def _num(value, places: int = 1) -> str:
    if value is None:
        return "–"
    return f"{float(value):,.{places}f}"


def _pct(value) -> str:
    return "–" if value is None else f"{float(value) * 100:.2f} %"


def _table(rows: list[dict], columns: list[tuple[str, str, str]], empty: str) -> str:
    """`columns`: (key, heading, kind) with kind 'n' for numbers, 't' for text."""
    if not rows:
        return f'<p class="muted">{escape(empty)}</p>'
    head = "".join(f'<th class="{kind}">{escape(title)}</th>' for _, title, kind in columns)
    body = "".join(
        "<tr>" + "".join(f'<td class="{kind}">{escape(_cell(row[key]))}</td>' for key, _, kind in columns) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cell(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, Decimal | float):
        return f"{value:,}"
    return str(value)


def region_chart(regions: list[dict]) -> str:
    """Horizontal bars: each region's kWh, with the same weekday a week earlier behind it."""
    if not regions:
        return ""
    width, left, bar, gap = 900, 130, 14, 12
    most = max(float(max(r["kwh"] or 0, r["kwh_week_before"] or 0)) for r in regions) or 1.0
    scale = (width - left - 160) / most
    height = len(regions) * (2 * bar + gap) + 10
    parts = [
        f'<svg id="region-chart" role="img" aria-label="energy by region" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}">'
    ]
    for i, r in enumerate(regions):
        y = 5 + i * (2 * bar + gap)
        today = float(r["kwh"] or 0) * scale
        before = float(r["kwh_week_before"] or 0) * scale
        change = "" if r["change_pct"] is None else f" ({float(r['change_pct']):+.1f} %)"
        parts += [
            f'<text x="{left - 8}" y="{y + bar + 4}" text-anchor="end">{escape(str(r["region"]))}</text>',
            f'<rect class="bar" x="{left}" y="{y}" width="{today:.1f}" height="{bar}" fill="{COLOURS["today"]}">'
            f"<title>{escape(str(r['region']))}: {_num(r['kwh'])} kWh</title></rect>",
            f'<rect x="{left}" y="{y + bar}" width="{before:.1f}" height="{bar - 4}" fill="{COLOURS["before"]}">'
            f"<title>a week earlier: {_num(r['kwh_week_before'])} kWh</title></rect>",
            f'<text x="{left + today + 6:.1f}" y="{y + bar - 2}">{_num(r["kwh"], 0)} kWh{escape(change)}</text>',
        ]
    parts.append("</svg>")
    return "".join(parts)


def quality_chart(summary: dict) -> str:
    """One stacked bar: the day's intervals by quality."""
    width, height = 900, 34
    parts = [
        f'<svg id="quality-chart" role="img" aria-label="intervals by quality" width="{width}" '
        f'height="{height + 22}" viewBox="0 0 {width} {height + 22}">'
    ]
    x = 0.0
    for kind in ("actual", "estimated", "missing"):
        share = float(summary[f"{kind}_share"] or 0)
        w = share * width
        parts.append(
            f'<rect class="bar" x="{x:.1f}" y="0" width="{w:.1f}" height="{height}" fill="{COLOURS[kind]}">'
            f"<title>{kind}: {share * 100:.3f} %</title></rect>"
        )
        x += w
    legend = "   ".join(f"{kind} {_pct(summary[f'{kind}_share'])}" for kind in ("actual", "estimated", "missing"))
    parts.append(f'<text x="0" y="{height + 16}">{escape(legend)}</text></svg>')
    return "".join(parts)


def top_chart(customers: list[dict], count: int = 20) -> str:
    """Vertical bars of the day's largest customers."""
    shown = customers[:count]
    if not shown:
        return ""
    width, height, bottom = 900, 220, 40
    most = float(shown[0]["kwh"] or 1) or 1.0
    step = width / len(shown)
    parts = [
        f'<svg id="top-chart" role="img" aria-label="largest customers" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}">'
    ]
    for i, c in enumerate(shown):
        h = float(c["kwh"] or 0) / most * (height - bottom - 10)
        x = i * step
        parts += [
            f'<rect class="bar" x="{x + 2:.1f}" y="{height - bottom - h:.1f}" width="{step - 4:.1f}" height="{h:.1f}" '
            f'fill="{COLOURS["today"]}"><title>#{c["rank"]} {escape(str(c["account_name"]))} ({c["customer_id"]}): '
            f"{_num(c['kwh'], 3)} kWh</title></rect>",
            f'<text x="{x + step / 2:.1f}" y="{height - bottom + 14}" text-anchor="middle">#{c["rank"]}</text>',
        ]
    parts.append("</svg>")
    return "".join(parts)


def render(report: Report, tz: str, generated_at: dt.datetime, silent_warn: int) -> str:
    s = report.summary
    t = {name: table.to_pylist() for name, table in report.tables.items()}
    zone = ZoneInfo(tz)
    local = generated_at.astimezone(zone).strftime("%d %b %Y %H:%M %Z")

    def local_time(value):
        return value.replace(tzinfo=dt.UTC).astimezone(zone).strftime("%d %b %H:%M") if value else None

    silent = [{**m, "last_reading": local_time(m["last_reading_at"])} for m in t["silent_meters"]]
    late = [
        {**f, "hour_local": local_time(f["hour"]), "arrived_local": local_time(f["arrived_at"])}
        for f in t["late_files"]
    ]
    before = s["silent_meters_day_before"]
    silent_note = "" if before is None else f"{s['silent_meters'] - before:+d} on the day before"
    figures = [
        ("kWh", _num(s["kwh"], 0), f"{s['meters']:,} meters", ""),
        ("silent meters", f"{s['silent_meters']:,}", silent_note, "alert" if s["silent_meters"] > silent_warn else ""),
        ("missing intervals", _pct(s["missing_share"]), f"estimated {_pct(s['estimated_share'])}", ""),
        (
            "estimated by the platform",
            _pct(s["platform_estimated_share"]),
            f"{s['flagged_readings']:,} readings flagged and kept, {s['replaced_readings']:,} replaced, "
            f"{s['derived_intervals']:,} halved from half hours",
            "",
        ),
        ("arrival delay p50", f"{_num(s['delay_p50_minutes'])} min", f"p95 {_num(s['delay_p95_minutes'])} min", ""),
        ("late files", f"{s['late_files']:,}", "", ""),
        ("quarantined rows", f"{s['quarantined_rows']:,}", f"{s['quarantined_files']} files", ""),
    ]
    cards = "".join(
        f'<div class="figure {cls}"><span>{escape(label)}</span><b>{escape(value)}</b><span>{escape(note)}</span></div>'
        for label, value, note, cls in figures
    )
    day = report.day.strftime("%A %d %B %Y")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Operations report {report.day.isoformat()}</title>
<style>{STYLE}</style></head>
<body data-date="{report.day.isoformat()}">
<h1>Operations report: {escape(day)}</h1>
<p class="muted">Local day in {escape(tz)}. Built {escape(local)}.</p>
<div class="figures">{cards}</div>

<h2>Energy by region</h2>
<p class="muted">Dark: this day. Light: the same weekday a week earlier.</p>
{region_chart(t["region_energy"])}
{
        _table(
            t["region_energy"],
            [
                ("region", "region", "t"),
                ("meters", "meters", "n"),
                ("kwh", "kWh", "n"),
                ("estimated_kwh", "estimated kWh", "n"),
                ("kwh_week_before", "a week earlier", "n"),
                ("change_pct", "change %", "n"),
            ],
            "No readings.",
        )
    }

<h2>Data quality</h2>
{quality_chart(s)}
<p>Arrival delay, interval end to landing in the lake: p50 {_num(s["delay_p50_minutes"])} min,
p95 {_num(s["delay_p95_minutes"])} min.</p>
<h3>Late files</h3>
{
        _table(
            late,
            [
                ("file_key", "file", "t"),
                ("carries_date", "readings of", "t"),
                ("hour_local", "hour", "t"),
                ("arrived_local", "landed", "t"),
                ("hours_late", "hours late", "n"),
                ("status", "status", "t"),
            ],
            "No late files.",
        )
    }
<h3>Quarantine</h3>
{
        _table(
            t["quarantine_reasons"],
            [("scope", "scope", "t"), ("reason", "reason", "t"), ("rows", "count", "n"), ("example", "example", "t")],
            "Nothing quarantined.",
        )
    }

<h3>Validation and estimation</h3>
<p class="muted">The quarter hours estimated: by the head-end, or by the platform and how; and the readings
a validation rule flagged, kept as delivered for review or (only what the supply cannot deliver) replaced by
an estimate, with their kWh as measured.</p>
{
        _table(
            [{**r, "kind": ESTIMATION_KINDS[r["kind"]]} for r in t["estimation"]],
            [
                ("kind", "", "t"),
                ("name", "rule or method", "t"),
                ("intervals", "quarter hours", "n"),
                ("kwh", "kWh", "n"),
            ],
            "Nothing flagged or estimated.",
        )
    }
<h3>Meters the platform estimated most</h3>
{
        _table(
            t["most_estimated_meters"],
            [
                ("meter_id", "meter", "n"),
                ("region", "region", "t"),
                ("customer_id", "customer", "n"),
                ("account_name", "account", "t"),
                ("estimated_intervals", "estimated quarter hours", "n"),
                ("intervals", "of", "n"),
                ("estimated_kwh", "estimated kWh", "n"),
            ],
            "The platform estimated nothing.",
        )
    }

<h2>Silent meters</h2>
<p class="muted">No reading at all in the day. Silent since the end of the last reading, looked for up to
the report's look-back.</p>
{
        _table(
            silent,
            [
                ("meter_id", "meter", "n"),
                ("region", "region", "t"),
                ("customer_id", "customer", "n"),
                ("account_name", "account", "t"),
                ("last_reading", "last reading", "t"),
                ("silent_hours", "hours silent", "n"),
            ],
            "Every meter spoke.",
        )
    }

<h2>Top {len(t["top_customers"])} customers by use</h2>
{top_chart(t["top_customers"])}
{
        _table(
            t["top_customers"],
            [
                ("rank", "#", "n"),
                ("customer_id", "customer", "n"),
                ("account_name", "account", "t"),
                ("region", "region", "t"),
                ("meters", "meters", "n"),
                ("kwh", "kWh", "n"),
                ("estimated_kwh", "estimated kWh", "n"),
            ],
            "No customers supplied.",
        )
    }
</body></html>
"""
