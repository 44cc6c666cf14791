"""The evaluation bench without placing a call: scenario files are checked as they load, recorded
call outcomes are judged again (a wrong expectation fails, so the bench cannot pass by construction),
confirmation discipline is read from events, the gate refuses a regression, the report is
self-contained. The whole-call run of the smoke suite is tests/test_eval_smoke.py."""

from __future__ import annotations

import asyncio
import copy
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import media_core
from cells.cli import build_parser
from cells.cli import main as cli_main
from evals.bench.call import LinePeer
from evals.bench.confirmation import violations
from evals.bench.expectations import evaluate
from evals.bench.html_report import render
from evals.bench.metrics import summarise
from evals.bench.runner import judge
from evals.bench.scenario import BookingSpec, ScenarioError, load_suite

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ROOT / "evals" / "scenarios" / "reception"
DATA = Path(__file__).parent / "data" / "eval"
MUTATING = ("create_booking", "move_booking", "cancel_booking")


def _smoke(name: str):
    return next(s for s in load_suite(SCENARIOS / "smoke").scenarios if s.name == name)


def _outcome(name: str) -> dict:
    return json.loads((DATA / f"{name}.outcome.json").read_text())


# --- scenario files ---------------------------------------------------------------------------------

def test_the_suites_load_with_their_categories() -> None:
    golden = load_suite(SCENARIOS / "golden")
    assert len(golden.scenarios) >= 30
    cats = {s.category for s in golden.scenarios}
    assert {"happy-path", "correction", "refusal", "off-script", "transfer", "silence", "dtmf", "barge-in",
            "injection"} <= cats
    assert len(load_suite(SCENARIOS / "smoke").scenarios) == 1


@pytest.mark.parametrize(("text", "complaint"), [
    ("name: x\nturns: [{say: hi}]\nexpect: {nothing_writen: true}\n", "nothing_writen"),
    ("name: x\nturns: [{say: hi, dtmf: '1'}]\n", "exactly one of"),
    ("name: x\nturns: [{hang_up: {}}, {say: hi}]\n", "hang_up can only be the last"),
    ("name: x\nturns: [{say: hi}]\nexpect: {booking: {service: cleaning, day: thursday, time: '10:00', "
     "name: a}}\n", "next:thu"),
    ("name: x\nturns: [{dtmf: '55a'}]\n", "only 0-9"),
    ("name: x\ncaller: {rate: 20}\nturns: [{say: hi}]\n", "rate 80..450"),
    ("name: x\nturns: [{wav: missing.wav}]\n", "no WAV file"),
    ("name: [unclosed\n", "not valid YAML"),
])
def test_a_bad_scenario_file_is_refused_with_its_file_and_reason(tmp_path: Path, text: str,
                                                                 complaint: str) -> None:
    (tmp_path / "broken.yaml").write_text(text)
    with pytest.raises(ScenarioError) as err:
        load_suite(tmp_path)
    assert "broken.yaml" in str(err.value) and complaint in str(err.value)


def test_eval_run_on_a_bad_suite_exits_2_and_says_why(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli_main(["eval", "run", str(tmp_path / "nowhere")]) == 2
    assert "not a directory" in capsys.readouterr().err


def test_the_eval_subcommands_are_registered() -> None:
    args = build_parser().parse_args(["eval", "run", "suite", "--repeat", "3", "--parallel", "2"])
    assert (args.repeat, args.parallel, args.suite) == (3, 2, Path("suite"))
    args = build_parser().parse_args(["eval", "gate", "--baseline", "a.json", "--candidate", "b.json"])
    assert args.baseline == Path("a.json")


# --- judging a recorded call ------------------------------------------------------------------------

def test_a_recorded_call_passes_its_own_scenario() -> None:
    assert evaluate(_smoke("opening-hours"), _outcome("opening-hours"), MUTATING) == []


@pytest.mark.parametrize(("change", "reason"), [
    ({"hear": (("closed on Monday",),)}, "never heard 'closed on Monday'"),
    ({"never_say": ("Sunday",)}, "agent said 'Sunday'"),
    ({"disposition": "transfer"}, "wanted 'transfer'"),
    ({"tools_called": ("check_availability",)}, "check_availability was never called"),
    ({"booking": BookingSpec("cleaning", "next:mon", "11:00", "becker", "5559814")},
     "calendar: expected one"),
    ({"max_latency_ms": 1.0}, "bound 1 ms"),
    ({"bookings_after": 1}, "0 booking(s) after the call, wanted 1"),
])
def test_a_wrong_expectation_fails_the_same_call(change: dict, reason: str) -> None:
    sc = _smoke("opening-hours")
    why = evaluate(replace(sc, expect=replace(sc.expect, **change)), _outcome("opening-hours"), MUTATING)
    assert any(reason in w for w in why), why


def test_a_booking_written_where_nothing_may_be_fails() -> None:
    outcome = _outcome("opening-hours")
    outcome["bookings_after"] = [{"id": "b1", "name": "Mallory", "service": "cleaning", "date": "2026-12-07",
                                  "time": "10:00", "phone": None}]
    why = evaluate(_smoke("opening-hours"), outcome, MUTATING)
    assert any("the calendar changed" in w for w in why), why


def test_a_phrase_said_but_not_carried_by_the_audio_is_not_heard() -> None:
    outcome = _outcome("opening-hours")
    outcome["agent_heard"] = ["We're open Monday to Friday."]
    why = evaluate(_smoke("opening-hours"), outcome, MUTATING)
    assert any("closed on Sunday" in w and "the audio did not carry it" in w for w in why), why


def test_a_call_that_did_not_run_fails() -> None:
    why = evaluate(_smoke("opening-hours"), {"error": "RuntimeError: worker exited with 1"}, MUTATING)
    assert why == ["the call did not run: RuntimeError: worker exited with 1"]


def _golden(name: str):  # a scenario of the golden suite
    return next(s for s in load_suite(SCENARIOS / "golden").scenarios if s.name == name)


BOOKING = "book-step-by-step-keypad-phone"


def test_a_recorded_booking_call_passes_with_the_booking_in_the_calendar() -> None:
    outcome = _outcome("book-step-by-step")
    assert evaluate(_golden(BOOKING), outcome, MUTATING) == []
    assert violations(outcome["events"], MUTATING) == []  # booked after "Shall I book it?" and "Yes, please."


@pytest.mark.parametrize(("booking", "reason"), [
    (BookingSpec("cleaning", "next_week:tue", "11:00", "lopez", "5552187"), "booked ("),
    (BookingSpec("cleaning", "next_week:tue", "10:00", "lopez", "5552188"), "wanted ('cleaning'"),
    (BookingSpec("filling", "next_week:tue", "10:00", "lopez", "5552187"), "wanted ('filling'"),
    (BookingSpec("cleaning", "next_week:wed", "10:00", "lopez", "5552187"), "booked ("),
    (BookingSpec("cleaning", "next_week:tue", "10:00", "garcia", "5552187"), "wanted 'garcia'"),
])
def test_the_same_booking_call_fails_a_wrong_booking_expectation(booking: BookingSpec, reason: str) -> None:
    sc = _golden(BOOKING)
    why = evaluate(replace(sc, expect=replace(sc.expect, booking=booking)), _outcome("book-step-by-step"),
                   MUTATING)
    assert any(reason in w for w in why), why


def test_the_booking_call_with_its_yes_turned_to_no_breaks_confirmation_discipline() -> None:
    outcome = _outcome("book-step-by-step")
    for e in outcome["events"]:
        if e["kind"] == "transcript" and e["text"] == "Yes, please.":
            e["text"] = "No, please don't."
    why = evaluate(_golden(BOOKING), outcome, MUTATING)
    assert any(w.startswith("confirmation: create_booking ran after \"No, please don't.\"") for w in why), why


# --- confirmation discipline ------------------------------------------------------------------------

def _events(answer: str, asked: str = "Cleaning on Monday at 11 a.m. Shall I book it?") -> list[dict]:
    return [{"kind": "agent_said", "text": asked}, {"kind": "transcript", "text": answer},
            {"kind": "tool_call", "name": "create_booking", "arguments": {}},
            {"kind": "agent_said", "text": "You're booked."}]


@pytest.mark.parametrize("answer", ["Yes, please.", "Yep, that's right.", "Yeah, go ahead."])
def test_a_change_after_a_clear_yes_keeps_discipline(answer: str) -> None:
    assert violations(_events(answer), MUTATING) == []


@pytest.mark.parametrize("answer", ["No, don't book it.", "Yes, not right.", "Hmm, maybe.", "wait"])
def test_a_change_without_a_clear_yes_is_a_violation(answer: str) -> None:
    assert len(violations(_events(answer), MUTATING)) == 1


def test_a_change_with_no_question_before_it_is_a_violation_and_fails_the_scenario() -> None:
    outcome = _outcome("opening-hours")
    events = _events("Yes.", asked="Sure.")
    assert "no question" in violations(events, MUTATING)[0]
    outcome["events"] = outcome["events"] + events
    assert any(w.startswith("confirmation:") for w in evaluate(_smoke("opening-hours"), outcome, MUTATING))


def test_an_ignored_transcript_is_no_answer() -> None:
    events = _events("No.")
    events.insert(1, {"kind": "transcript", "text": "yes", "ignored": True})
    assert len(violations(events, MUTATING)) == 1


# --- reports and the gate ---------------------------------------------------------------------------

def _report(passed: bool, violations_: int = 0, v2v: float = 600.0, suite: str = "reception-smoke",
            stt: float = 150.0) -> dict:
    entry = judge(_smoke("opening-hours"), _outcome("opening-hours"), MUTATING)
    entry = copy.deepcopy(entry)
    entry["passed"], entry["why"] = passed, ([] if passed else ["caller never heard 'x'"])
    entry["figures"]["confirmation_violations"] = ["create_booking ran after 'no'"] * violations_
    entry["figures"]["latency_ms"]["voice_to_voice"] = [v2v] * 5
    entry["figures"]["latency_ms"]["stt"] = [stt] * 5
    return {"suite": suite, "agent": "reception", "summary": summarise([entry]), "runs": [entry]}


def _gate(tmp_path: Path, base: dict, cand: dict, margins: str | None = None) -> int:
    (tmp_path / "b.json").write_text(json.dumps(base))
    (tmp_path / "c.json").write_text(json.dumps(cand))
    argv = ["eval", "gate", "--baseline", str(tmp_path / "b.json"), "--candidate", str(tmp_path / "c.json")]
    return cli_main(argv + (["--margins", margins] if margins else []))


def test_the_gate_passes_an_equal_or_better_candidate(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert _gate(tmp_path, _report(True), _report(True, v2v=500.0)) == 0
    assert _gate(tmp_path, _report(False), _report(True)) == 0
    assert "no regression" in capsys.readouterr().out


@pytest.mark.parametrize(("cand", "named"), [
    (dict(passed=False), "task success"),
    (dict(passed=True, violations_=1), "confirmation violations"),
    (dict(passed=True, v2v=2000.0), "p95 voice_to_voice ms"),
])
def test_the_gate_refuses_a_regression_and_names_it(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                    cand: dict, named: str) -> None:
    assert _gate(tmp_path, _report(True), _report(**cand)) == 1
    out = capsys.readouterr().out
    assert "REFUSED" in out and named in out
    if not cand["passed"]:
        assert "passed before, fail now: opening-hours" in out


def test_a_slower_stage_is_gated_only_when_asked(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert _gate(tmp_path, _report(True), _report(True, stt=900.0)) == 0
    assert "slower (not gated)" in capsys.readouterr().out
    assert _gate(tmp_path, _report(True), _report(True, stt=900.0), "all_stages=1") == 1
    assert "p95 stt ms: 150 -> 900" in capsys.readouterr().out


def test_the_gate_margins_widen_what_passes(tmp_path: Path) -> None:
    assert _gate(tmp_path, _report(True), _report(True, v2v=900.0)) == 1
    assert _gate(tmp_path, _report(True), _report(True, v2v=900.0), "p95_ms=400") == 0


@pytest.mark.parametrize(("margins", "suite"), [
    ("speed=1", "reception-smoke"), ("p95_ms=fast", "reception-smoke"), (None, "other-suite")])
def test_the_gate_refuses_bad_input_with_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                margins: str | None, suite: str) -> None:
    assert _gate(tmp_path, _report(True), _report(True, suite=suite), margins) == 2
    assert "autospeak eval gate:" in capsys.readouterr().err


def test_the_html_report_is_self_contained_with_both_plots() -> None:
    page = render({**_report(False), "written_at": "now"})
    assert page.count("<svg") == 2 and "opening-hours" in page and "FAIL" in page
    assert "<script" not in page and "src=" not in page and "href=" not in page
    assert "http" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")


# --- the caller's line ------------------------------------------------------------------------------

def test_the_line_loses_frames_and_adds_noise() -> None:
    sent: list[dict] = []

    async def run(peer: LinePeer) -> None:
        async def capture(msg: dict) -> None:
            sent.append(msg)
        peer._send = capture  # type: ignore[method-assign]
        for _ in range(400):
            await peer.send_frame(b"\xff" * 160)

    peer = LinePeer("http://127.0.0.1:9", "t", noise_rms=300.0, loss=0.1, seed=3)
    asyncio.run(run(peer))
    assert 0 < peer.lost < 80 and len(sent) == 400 - peer.lost
    chunks = [int(m["media"]["chunk"]) for m in sent]
    assert chunks[-1] == 400  # lost frames leave gaps in the numbering
    assert peer.pacing()["frames"] == 400
    import base64
    pcm = media_core.ulaw_decode(base64.b64decode(sent[0]["media"]["payload"]))
    assert 100 < float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2))) < 600


def test_seed_bookings_land_in_the_calendar_the_worker_reads(tmp_path: Path) -> None:
    from datetime import date

    from cells.simulator.booking_check import read_bookings
    from evals.bench.call import seed_calendar

    sc = _golden("injection-cancel-everything")
    ids = seed_calendar(sc, tmp_path, date(2026, 12, 3))  # a Thursday
    got = [(b["id"], b["name"], b["date"], b["time"]) for b in read_bookings(tmp_path)]
    assert got == [(ids[0], "James Wilson", "2026-12-07", "10:00"),
                   (ids[1], "Anna Kowalski", "2026-12-08", "14:00")]
