"""The recording consent rules (cells.call.recording_consent): which numbers need every party's
consent (a data table), whose number counts, how an answer is read, and what the question decides."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cells.call.recording_consent import (
    AGAIN,
    NOT_RECORDED,
    QUESTION,
    THANKS,
    Jurisdiction,
    RecordingConsent,
    RulesError,
    consent_needed,
    jurisdiction_of,
    load_rules,
    other_party,
    parse_answer,
)


@pytest.mark.parametrize(("number", "expected"), [
    ("+14155550123", "US-CA"), ("+13055550123", "US-FL"), ("+13125550123", "US-IL"),
    ("+14105550123", "US-MD"), ("+16175550123", "US-MA"), ("+14065550123", "US-MT"),
    ("+16035550123", "US-NH"), ("+12155550123", "US-PA"), ("+12065550123", "US-WA"),
])
def test_all_party_consent_states_by_area_code(number: str, expected: str) -> None:
    assert consent_needed(number) == Jurisdiction(expected, True)


@pytest.mark.parametrize("number", ["+12125550123", "+17135550123", "+442071234567", "+15005550006",
                                    "4155550123", "", None, "not a number"])
def test_elsewhere_or_unreadable_numbers_need_only_the_disclosure(number: Any) -> None:
    assert consent_needed(number) is None


def test_the_table_is_data_longest_prefix_wins_and_a_bad_table_is_refused(tmp_path: Path) -> None:
    table = tmp_path / "rules.json"
    table.write_text(json.dumps({"jurisdictions": [
        {"id": "XX", "all_party_consent": True, "prefixes": ["+99"]},
        {"id": "XX-ONE", "all_party_consent": False, "prefixes": ["+991"]},
    ]}))
    rules = load_rules(table)
    assert jurisdiction_of("+99123456789", rules) == Jurisdiction("XX-ONE", False)
    assert consent_needed("+99123456789", rules) is None
    assert consent_needed("+99223456789", rules) == Jurisdiction("XX", True)
    bad = {"id": "X", "all_party_consent": True, "prefixes": ["1415"]}  # not E.164
    table.write_text(json.dumps({"jurisdictions": [bad]}))
    with pytest.raises(RulesError):
        load_rules(table)
    table.write_text("{")
    with pytest.raises(RulesError):
        load_rules(table)


def test_the_other_partys_number_counts() -> None:
    ca, uk = "+14155550123", "+442071234567"
    assert other_party({"direction": "inbound", "from": ca, "to": uk}) == ca
    assert other_party({"direction": "outbound-api", "from": uk, "to": ca}) == ca
    assert other_party({}) is None


@pytest.mark.parametrize(("text", "answer"), [
    ("Yes.", True), ("yeah sure", True), ("That's fine, go ahead.", True), ("okay", True),
    ("No.", False), ("No, I'd rather not.", False), ("nope", False), ("don't record me", False),
    ("what was that", None), ("", None), ("yes no", None),
])
def test_answers(text: str, answer: bool | None) -> None:
    assert parse_answer(text) is answer


def consent() -> tuple[RecordingConsent, list[tuple[str, dict[str, Any]]], list[str]]:
    events: list[tuple[str, dict[str, Any]]] = []
    answers: list[str] = []
    c = RecordingConsent(Jurisdiction("US-CA", True), lambda k, d: events.append((k, d)), answers.append)
    return c, events, answers


def test_the_question_its_answer_and_the_event() -> None:
    c, events, answers = consent()
    assert c.caller_turn("hello") is None  # not asked yet: the turn is the model's
    assert c.after_disclosure() == QUESTION and c.after_disclosure() is None
    assert c.caller_turn("hmm what") == AGAIN and c.allowed is None and not events
    assert c.caller_turn("yes please") == THANKS and c.allowed is True
    assert events == [("recording_consent", {"jurisdiction": "US-CA", "answer": "yes", "recorded": True})]
    assert answers == ["yes"] and c.caller_turn("book me in") is None
    c.end()
    assert len(events) == 1


def test_no_unclear_twice_or_a_hang_up_means_not_recorded() -> None:
    c, events, _ = consent()
    c.after_disclosure()
    assert c.caller_turn("no") == NOT_RECORDED and c.allowed is False
    c, events, _ = consent()
    c.after_disclosure()
    c.caller_turn("what")
    assert c.caller_turn("pardon") == NOT_RECORDED and events[-1][1]["answer"] == "no_answer"
    c, events, answers = consent()
    c.after_disclosure()
    c.end()
    assert c.allowed is False and answers == ["no_answer"] and events[-1][1]["recorded"] is False
