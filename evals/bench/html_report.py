"""A self-contained HTML report: the verdict table, the suite's figures, and two inline SVG plots
(latency distribution per stage, pass rate per category). No scripts, styles or fonts from elsewhere."""

from __future__ import annotations

from html import escape
from typing import Any

from evals.bench.metrics import STAGES, pct

_W, _ROW, _LEFT = 720, 34, 130


def latency_svg(runs: list[dict[str, Any]]) -> str:
    """One row per stage: every turn as a dot, p50 and p95 as ticks, on a shared square-root axis
    (stages run from ~1 ms to seconds)."""
    per_stage = {s: [v for r in runs if r.get("figures") for v in r["figures"]["latency_ms"].get(s, [])]
                 for s in STAGES}
    top = max([v for vs in per_stage.values() for v in vs] + [100.0])

    def x(v: float) -> float:
        return _LEFT + (_W - _LEFT - 20) * (max(v, 0.0) / top) ** 0.5

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_ROW * len(STAGES) + 56}" '
             'role="img" aria-label="latency per stage">']
    for tick in (10, 100, 250, 500, 1000, 2000, 4000, 8000):
        if tick <= top:
            bottom = _ROW * len(STAGES)
            parts.append(f'<line x1="{x(tick):.1f}" y1="5" x2="{x(tick):.1f}" y2="{bottom + 10}" '
                         'stroke="#ddd"/>'
                         f'<text x="{x(tick):.1f}" y="{bottom + 28}" font-size="11" '
                         f'text-anchor="middle">{tick}</text>')
    for i, stage in enumerate(STAGES):
        y = 20 + i * _ROW
        vals = per_stage[stage]
        parts.append(f'<text x="{_LEFT - 8}" y="{y + 4}" font-size="12" text-anchor="end">{stage}</text>')
        for j, v in enumerate(vals):
            jitter = ((j * 7) % 11 - 5) * 1.2
            parts.append(f'<circle cx="{x(v):.1f}" cy="{y + jitter:.1f}" r="2.5" fill="#3366aa" '
                         'fill-opacity="0.45"/>')
        for q, colour in ((50, "#111"), (95, "#c33")):
            p = pct(vals, q)
            if p is not None:
                parts.append(f'<line x1="{x(p):.1f}" y1="{y - 11}" x2="{x(p):.1f}" y2="{y + 11}" '
                             f'stroke="{colour}" stroke-width="2"><title>p{q} {p} ms</title></line>')
    parts.append(f'<text x="{_W - 20}" y="{_ROW * len(STAGES) + 48}" font-size="11" text-anchor="end">'
                 'ms after the stage before, square-root scale (black p50, red p95)</text></svg>')
    return "".join(parts)


def category_svg(categories: dict[str, dict[str, int]]) -> str:
    h = _ROW * max(1, len(categories)) + 20
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{h}" role="img" '
             'aria-label="pass rate per category">']
    span = _W - _LEFT - 80
    for i, (cat, c) in enumerate(categories.items()):
        y = 10 + i * _ROW
        rate = c["passed"] / c["runs"] if c["runs"] else 0.0
        parts.append(f'<text x="{_LEFT - 8}" y="{y + 16}" font-size="12" text-anchor="end">'
                     f'{escape(cat)}</text>'
                     f'<rect x="{_LEFT}" y="{y + 4}" width="{span}" height="18" fill="#eee"/>'
                     f'<rect x="{_LEFT}" y="{y + 4}" width="{span * rate:.1f}" height="18" fill="#4a9a5a"/>'
                     f'<text x="{_LEFT + span + 8}" y="{y + 17}" font-size="12">'
                     f'{c["passed"]}/{c["runs"]}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _fmt(x: float | None, percent: bool = False) -> str:
    if x is None:
        return "-"
    return f"{100 * x:.1f} %" if percent else f"{x}"


def render(report: dict[str, Any]) -> str:
    s = report["summary"]
    rows = "".join(
        f'<tr class="{"ok" if r["passed"] else "bad"}"><td>{escape(r["scenario"])}'
        f'{" #" + str(r["repeat"] + 1) if r["repeat"] else ""}</td><td>{escape(r["category"])}</td>'
        f'<td>{"pass" if r["passed"] else "FAIL"}</td><td>{escape("; ".join(r["why"]))}</td></tr>'
        for r in report["runs"])
    lat_rows = "".join(f"<tr><td>{k}</td><td>{_fmt(v['p50'])}</td><td>{_fmt(v['p95'])}</td>"
                       f"<td>{v['n']}</td></tr>" for k, v in s["latency_ms"].items())
    config = " ".join(report.get("worker_args", [])) or "(the embedded stack)"
    partial = "<p><b>Partial:</b> the run is still going or was stopped.</p>" if report.get("partial") else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Eval {escape(report['suite'])}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:60em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 8px;font-size:13px;text-align:left;vertical-align:top}}
tr.bad td{{background:#fbeaea}}tr.ok td:nth-child(3){{color:#276a36}}</style></head><body>
<h1>Evaluation: {escape(report['suite'])} ({escape(report['agent'])})</h1>{partial}
<p>Written {escape(report.get('written_at', ''))}; worker under test:
<code>python -m cells.worker {escape(config)}</code>. Task success <b>{s['passed']}/{s['runs']}
({_fmt(s['task_success'], True)})</b>; confirmation violations <b>{s['confirmation_violations']}</b> in
{s['mutating_calls']} mutating tool calls; STT WER on the caller's turns <b>{_fmt(s['caller_wer'], True)}</b>;
agent intelligibility (round-trip WER of its TTS through Whisper) <b>{_fmt(s['agent_wer'], True)}</b>.</p>
<h2>Latency per stage</h2>{latency_svg(report['runs'])}
<table><tr><th>stage</th><th>p50 ms</th><th>p95 ms</th><th>n</th></tr>{lat_rows}</table>
<h2>Pass rate per category</h2>{category_svg(s['categories'])}
<h2>Scenarios</h2><table><tr><th>scenario</th><th>category</th><th>result</th><th>why</th></tr>{rows}</table>
</body></html>
"""
