"""The dashboard's reading of the calls' latency rows: per-turn points, percentiles and the timeline's
bars, including rows the pipeline stored before its checks (tolerated, never a page error)."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime

from control.db.models import Call
from control.web.dashboard_data import percentiles, turn_points
from control.web.timeline import turn_rows

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _call(latency: object) -> Call:
    return Call(id=uuid.uuid4(), started_at=T0, latency=latency)


def test_each_timed_turn_is_a_point_at_its_end_of_speech() -> None:
    call = _call({"turns": [
        {"index": 1, "at_ms": {"speech_end": 4000},
         "ms_after_speech_end": {"turn_end": 120, "stt_final": 250.5, "first_frame_sent": 610}},
        {"index": 2, "voice_to_voice_ms": 900},  # an older row: the total only
    ]})
    first, second = turn_points(call)
    assert first == {"call_id": str(call.id), "turn": 1, "at": "2026-01-01T00:00:04+00:00", "v2v_ms": 610.0,
                     "stages": {"turn_end": 120.0, "stt_final": 250.5, "first_frame_sent": 610.0}}
    assert second["v2v_ms"] == 900.0 and second["stages"] == {} and second["at"] == T0.isoformat()


def test_odd_rows_are_skipped_not_drawn() -> None:
    odd = {"first_frame_sent": True, "stt_final": math.nan, "first_token": "9"}
    call = _call({"turns": ["text", None, {"ms_after_speech_end": odd}]})
    (point,) = turn_points(call)
    assert point["v2v_ms"] is None and point["stages"] == {} and point["turn"] == 3
    assert turn_points(_call(None)) == [] and turn_points(_call({"turns": "x"})) == []


def test_percentiles_are_nearest_rank() -> None:
    assert percentiles([]) is None
    p = percentiles([float(v) for v in range(100, 0, -1)])
    assert p == {"n": 100, "min": 1.0, "p50": 50.0, "p90": 90.0, "p99": 99.0, "max": 100.0}


def test_the_timeline_shares_one_scale_across_turns() -> None:
    rows = turn_rows({"turns": [
        {"index": 1, "ms_after_speech_end": {"stt_final": 200, "first_frame_sent": 500}},
        {"index": 2, "interrupted": True, "ms_after_speech_end": {"first_frame_sent": 1000}},
        {"index": 3},  # no stages: no row
    ]})
    assert [r["turn"] for r in rows] == [1, 2]
    assert rows[0]["marks"] == [("stt_final", "STT final", 200.0, 20.0),
                                ("first_frame_sent", "first frame sent", 500.0, 50.0)]
    assert rows[1]["marks"][0][3] == 100.0 and rows[1]["interrupted"] and rows[1]["v2v_ms"] == 1000.0
