"""One call's redaction in the worker: cards split across turns and keypad entries, expiry dates,
identifiers and booking data left alone, the saved history and the log lines."""

from __future__ import annotations

import logging
import re

import pytest

from cells.contract.call_redaction import CallRedactor, redact_history
from cells.contract.redaction import RedactingLogFilter, redact_text

VISA = "4111111111111111"
MASTERCARD = "5555555555554444"
WORDS = "zero one two three four five six seven eight nine".split()


def spoken(digits: str) -> str:
    return " ".join(WORDS[int(d)] for d in digits)


def keypad(digits: str) -> str:
    return "keypad " + " ".join(digits)  # how the session writes a keypad entry


def no_card_digits(texts: list[str], card: str) -> None:
    """Neither the card nor any 4-digit group of it (beyond what a text says anyway) is left."""
    for text in texts:
        digits = re.sub(r"\D", "", text)
        assert card not in digits, text
        assert card[:8] not in digits and card[8:] not in digits, text


@pytest.mark.parametrize("pii", [True, False])
@pytest.mark.parametrize("turns", [
    [f"my card number is {spoken(VISA[:8])}", spoken(VISA[8:])],
    [f"the card is {VISA[:4]} {VISA[4:8]}", f"{VISA[8:12]} {VISA[12:]}"],
    [f"card {spoken(MASTERCARD[:6])}", spoken(MASTERCARD[6:12]), f"then {spoken(MASTERCARD[12:])}"],
    ["i want to pay", spoken(VISA[:8]), spoken(VISA[8:])],
    [keypad(VISA[:8]), keypad(VISA[8:])],
    [keypad(MASTERCARD)],
    ["five five five five double five five five five five five five five four four double four"],
])
def test_a_card_in_pieces_is_masked_in_every_piece(turns: list[str], pii: bool) -> None:
    r = CallRedactor(pii=pii)
    out = [r.caller(t) for t in turns]
    card = MASTERCARD if any("5" in t or "five" in t for t in turns) else VISA
    no_card_digits(out, card)
    assert "[card]" in out[-1]


def test_the_agent_asking_for_the_card_opens_its_context() -> None:
    r = CallRedactor(pii=False)
    r.agent("What is the long number on your card?")
    first = r.caller(spoken(VISA[:8]))
    second = r.caller(spoken(VISA[8:]))
    assert first == "[card]" and second == "[card]"


def test_a_code_and_expiry_after_a_card() -> None:
    r = CallRedactor(pii=False)
    assert r.caller(f"card {VISA}") == "card [card]"
    assert r.caller("one two three") == "[cvv]"
    assert redact_text("the expiry is 12/27", pii=False) == "the expiry is [expiry]"
    assert redact_text("it expires oh four two seven", pii=False) == "it expires [expiry]"


@pytest.mark.parametrize("text", [
    "book me for tuesday at ten thirty", "2024-06-01 at 10:30", "june 12 2024 at 2 pm",
    "call 0f8fad5b-d9cb-469f-a165-70867728950e", "segment 12345678-1234-1234-1234-123456789012.wav",
    "my number is 07700 900123", "booking BK0042 for 3 people",
])
def test_booking_data_and_identifiers_stay(text: str) -> None:
    r = CallRedactor(pii=False)
    assert r.caller(text) == text
    assert r.caller(text) == text  # and again after itself (no join with a phone number's tail)


def test_phone_numbers_kept_or_masked_per_agent_and_not_joined_into_cards() -> None:
    assert CallRedactor(pii=False).caller("it's 07700 900123") == "it's 07700 900123"
    assert CallRedactor(pii=True).caller("it's 07700 900123") == "it's [phone]"
    r = CallRedactor(pii=False)
    assert r.caller("my number is 07700 900123") == "my number is 07700 900123"
    assert r.caller("at ten thirty please") == "at ten thirty please"


def test_event_payloads_keep_identifiers() -> None:
    r = CallRedactor(pii=True)
    data = r.event("tool_call", {"name": "create_booking", "arguments": {"phone": VISA, "name": "Ann"},
                                 "call_id": "0f8fad5b-d9cb-469f-a165-70867728950e"})
    assert data["arguments"]["phone"] == "[card]"
    assert data["call_id"] == "0f8fad5b-d9cb-469f-a165-70867728950e"
    said = r.event("agent_said", {"text": f"I have {spoken(VISA)}", "start_ms": 1200})
    assert said == {"text": "I have [card]", "start_ms": 1200}


def test_history_is_redacted_across_turns() -> None:
    docs = [{"role": "assistant", "content": "How can I help?"},
            {"role": "user", "content": spoken(VISA[:8])},
            {"role": "assistant", "content": "go on"},
            {"role": "user", "content": spoken(VISA[8:])},
            {"role": "assistant", "content": "", "tool_calls": [
                {"id": "c1", "name": "create_booking", "arguments": {"phone": VISA}}]},
            {"role": "tool", "content": f'{{"ok": true, "phone": "{VISA}"}}', "tool_call_id": "c1"}]
    out = redact_history(docs)
    assert out[3]["content"] == "[card]"
    assert out[4]["tool_calls"][0]["arguments"]["phone"] == "[card]"
    assert VISA not in out[5]["content"]
    assert docs[3]["content"] == spoken(VISA[8:])  # the live history is not touched


def test_log_lines_are_masked(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.redact.log")
    filt = RedactingLogFilter()
    logger.addFilter(filt)
    try:
        with caplog.at_level(logging.INFO, logger="test.redact.log"):
            logger.info("caller keyed %s", VISA + "#")
    finally:
        logger.removeFilter(filt)
    assert VISA not in caplog.text and "[card]" in caplog.text


def test_without_a_card_context_the_piece_that_completes_a_card_is_masked() -> None:
    # Nothing said of a card: a first piece read as a phone number is (3-3-4) looks like any number
    # and is kept (the publisher holds it back until the next input tells); the piece that makes it a
    # card is masked, and the first piece wherever it is repeated later.
    r = CallRedactor(pii=False)
    first = f"it's {VISA[:3]} {VISA[3:6]} {VISA[6:10]}"
    assert r.caller(first) == first and r.pending
    assert r.caller(VISA[10:]) == "[card]"
    assert r.mask_known(first) == "it's [card]"
    # A first piece read as a card is (groups of four) is masked at once.
    assert CallRedactor(pii=False).caller(f"it's {VISA[:4]} {VISA[4:8]}") == "it's [card]"
    assert r.caller("one two three") == "[cvv]"  # what follows a card is its code
    r = CallRedactor(pii=False)
    r.caller(spoken(MASTERCARD[:5]))
    r.caller(spoken(MASTERCARD[5:10]))
    assert r.caller(spoken(MASTERCARD[10:])) == "[card]"


def test_in_a_card_context_a_misheard_card_is_masked_and_keyed_phone_numbers_stay() -> None:
    r = CallRedactor(pii=False)
    misheard = "4111 1111 1111 1112"  # fails Luhn
    assert r.caller(f"my card is {misheard} and that is it ok thanks bye now") == (
        "my card is [card] and that is it ok thanks bye now")
    assert CallRedactor(pii=False).caller(keypad("07700900123")) == keypad("07700900123")


def test_the_agents_setting_decides_on_phone_numbers_and_a_resume_keeps_the_context() -> None:
    from cells.providers.base import Message

    assert CallRedactor.for_agent({"compliance": {"redact_pii": False}}).pii is False
    assert CallRedactor.for_agent({"compliance": {}}).pii is True and CallRedactor.for_agent(None).pii
    resumed = CallRedactor.for_agent({}, [Message("assistant", "What is your card number?"),
                                          Message("user", f"it is {VISA[:8]}")])
    assert resumed.caller(VISA[8:]) == "[card]"
