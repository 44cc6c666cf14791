"""The load test drawn: concurrent calls against voice-to-voice p50/p99 and against frame pacing jitter,
as one self-contained HTML page with inline SVG (no script, no external file), and a PNG when
matplotlib happens to be installed (it is not a dependency)."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

W, H = 560, 300
LEFT, RIGHT, TOP, BOTTOM = 64, 20, 34, 46
COLOURS = ("#1f6feb", "#d1242f", "#8250df", "#1a7f37")


def _nice_max(values: Sequence[float]) -> float:
    top = max(values, default=1.0) or 1.0
    step = 10 ** math.floor(math.log10(top))
    return math.ceil(top * 1.1 / step) * step


def svg_chart(title: str, xs: Sequence[int], series: dict[str, Sequence[float | None]], y_label: str,
              limit: tuple[str, float] | None = None) -> str:
    """A line chart, calls on a log2 x axis (the levels double), one polyline per series."""
    values = [v for ys in series.values() for v in ys if v is not None] + ([limit[1]] if limit else [])
    y_max = _nice_max(values)
    lo, hi = math.log2(min(xs)), math.log2(max(xs))
    span = (hi - lo) or 1.0

    def px(x: float) -> float:
        return LEFT + (math.log2(x) - lo) / span * (W - LEFT - RIGHT) if hi > lo else (LEFT + W - RIGHT) / 2

    def py(y: float) -> float:
        return H - BOTTOM - y / y_max * (H - TOP - BOTTOM)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
           f'role="img" aria-label="{html.escape(title)}">',
           f'<rect width="{W}" height="{H}" fill="#fff"/>',  # readable on a dark page too
           f'<text x="{W / 2}" y="18" text-anchor="middle" font-size="14">{html.escape(title)}</text>',
           f'<line x1="{LEFT}" y1="{H - BOTTOM}" x2="{W - RIGHT}" y2="{H - BOTTOM}" stroke="#555"/>',
           f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{H - BOTTOM}" stroke="#555"/>']
    for i in range(5):
        y = y_max * i / 4
        out.append(f'<line x1="{LEFT}" y1="{py(y):.1f}" x2="{W - RIGHT}" y2="{py(y):.1f}" stroke="#eee"/>')
        out.append(f'<text x="{LEFT - 6}" y="{py(y) + 4:.1f}" text-anchor="end" font-size="11">{y:g}</text>')
    for x in xs:
        out.append(f'<text x="{px(x):.1f}" y="{H - BOTTOM + 16}" text-anchor="middle" '
                   f'font-size="11">{x}</text>')
    out.append(f'<text x="{(LEFT + W - RIGHT) / 2}" y="{H - 8}" text-anchor="middle" font-size="12">'
               "concurrent calls</text>")
    out.append(f'<text x="14" y="{(TOP + H - BOTTOM) / 2}" text-anchor="middle" font-size="12" '
               f'transform="rotate(-90 14 {(TOP + H - BOTTOM) / 2})">{html.escape(y_label)}</text>')
    if limit is not None:
        out.append(f'<line x1="{LEFT}" y1="{py(limit[1]):.1f}" x2="{W - RIGHT}" y2="{py(limit[1]):.1f}" '
                   'stroke="#888" stroke-dasharray="5 4"/>')
        out.append(f'<text x="{W - RIGHT - 4}" y="{py(limit[1]) - 4:.1f}" text-anchor="end" font-size="11" '
                   f'fill="#555">{html.escape(limit[0])}</text>')
    for k, (name, ys) in enumerate(series.items()):
        colour = COLOURS[k % len(COLOURS)]
        points = [(px(x), py(y)) for x, y in zip(xs, ys, strict=True) if y is not None]
        if len(points) > 1:
            path = " ".join(f"{a:.1f},{b:.1f}" for a, b in points)
            out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{path}"/>')
        out += [f'<circle cx="{a:.1f}" cy="{b:.1f}" r="3.5" fill="{colour}"/>' for a, b in points]
        out.append(f'<text x="{LEFT + 10 + 120 * k}" y="{TOP + 4}" font-size="12" fill="{colour}">'
                   f"\u25cf {html.escape(name)}</text>")
    out.append("</svg>")
    return "\n".join(out)


def charts(levels: Sequence[dict[str, Any]], jitter_limit_ms: float) -> list[str]:
    xs = [lv["calls"] for lv in levels]

    def qs(key: str) -> dict[str, list[float | None]]:
        return {q: [lv[f"{key}_{q}_ms"] for lv in levels] for q in ("p50", "p99")}

    return [
        svg_chart("Voice to voice, as the caller hears it", xs, qs("v2v"), "ms"),
        svg_chart("Outbound frame pacing jitter at the phone", xs, qs("jitter"), "ms",
                  limit=(f"slip limit {jitter_limit_ms:g} ms", jitter_limit_ms)),
    ]


def html_page(report: dict[str, Any], table_text: str, jitter_limit_ms: float) -> str:
    levels = report["levels"]
    figures = "\n".join(f"<figure>{svg}</figure>" for svg in charts(levels, jitter_limit_ms)) if levels else (
        "<p>No level ran.</p>")
    meta = html.escape(f"{report['target']} · {report['started_at']} · {report['cpus']} CPUs · "
                       f"{report['duration_s']:g} s per level · verdict: {report['verdict']}")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>AutoSpeak load test: calls</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;color:#222}}
figure{{display:inline-block;margin:0 1em 1em 0}}
pre{{background:#f6f8fa;padding:1em;overflow-x:auto;font-size:12px}}</style></head>
<body><h1>Concurrent calls against one cell</h1>
<p>{meta}</p>
{figures}
<h2>Per level</h2>
<pre>{html.escape(table_text)}</pre>
<h2>Load generator metrics (Prometheus text)</h2>
<pre>{html.escape(report["generator_metrics"])}</pre>
</body></html>
"""


def write_png(levels: Sequence[dict[str, Any]], path: Path, jitter_limit_ms: float) -> bool:
    """The same two charts as a PNG, only when matplotlib is installed; False otherwise."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    xs = [lv["calls"] for lv in levels]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for ax, key, title in ((a, "v2v", "Voice to voice (ms)"), (b, "jitter", "Pacing jitter (ms)")):
        for q in ("p50", "p99"):
            ax.plot(xs, [lv[f"{key}_{q}_ms"] for lv in levels], marker="o", label=q)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("concurrent calls")
        ax.set_title(title)
        ax.legend()
    b.axhline(jitter_limit_ms, linestyle="--", color="grey")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True
