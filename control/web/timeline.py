"""One call's per-turn timeline as drawable rows: each stage's bar from the caller's end of speech."""

from __future__ import annotations

import math
from typing import Any, Final

from control.web.dashboard_data import STAGES

LABELS: Final = {"turn_end": "end of turn", "stt_final": "STT final", "first_token": "first token",
                 "first_tts_audio": "first TTS audio", "first_frame_sent": "first frame sent"}


def _finite(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def turn_rows(latency: dict[str, Any]) -> list[dict[str, Any]]:
    """[{turn, v2v_ms, marks: [(stage, label, ms, pct)], scale_ms}] with a common scale for all turns."""
    turns = latency.get("turns") if isinstance(latency, dict) else None
    rows = []
    for n, timing in enumerate(turns if isinstance(turns, list) else [], start=1):
        stages = timing.get("ms_after_speech_end") if isinstance(timing, dict) else None
        if not isinstance(stages, dict):
            continue
        marks = [(s, LABELS[s], float(v)) for s in STAGES if _finite(v := stages.get(s))]
        index = timing.get("index")
        rows.append({"turn": index if isinstance(index, int) else n, "marks": marks,
                     "interrupted": bool(timing.get("interrupted")),
                     "v2v_ms": next((ms for s, _, ms in marks if s == "first_frame_sent"), None)})
    scale = max((ms for r in rows for _, _, ms in r["marks"]), default=0.0) or 1.0
    for r in rows:
        r["marks"] = [(s, label, ms, round(100 * max(ms, 0.0) / scale, 2)) for s, label, ms in r["marks"]]
        r["scale_ms"] = scale
    return rows
