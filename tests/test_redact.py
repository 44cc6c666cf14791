"""Redaction of call text: card numbers always, e-mails and phone numbers when the agent asks for it."""

from __future__ import annotations

import pytest

from control.events.redact import luhn_valid, redact_payload, redact_text

# Test card numbers of the card networks (all pass Luhn).
VISA = "4242424242424242"
AMEX = "378282246310005"
MASTERCARD = "5555555555554444"
SPOKEN = {"0": "zero", "1": "one", "2": "two", "3": "three", "4": "four", "5": "five", "6": "six",
          "7": "seven", "8": "eight", "9": "nine"}


def spoken(digits: str) -> str:
    return " ".join(SPOKEN[d] for d in digits)


def test_luhn() -> None:
    assert luhn_valid(VISA) and luhn_valid(AMEX) and luhn_valid(MASTERCARD)
    assert not luhn_valid("4242424242424241")


@pytest.mark.parametrize("pii", [True, False])
@pytest.mark.parametrize(("said", "expected"), [
    # How a speech recogniser writes a card number: lowercase words, no punctuation.
    (f"yes my card number is {spoken(VISA)}", "yes my card number is [card]"),
    (f"its {spoken(AMEX)} thanks", "its [card] thanks"),
    ("four two four two uh four two four two um four two four two four two four two",
     "[card]"),
    ("card number five five five five five five five five five five five five four four double four",
     "card number [card]"),
    # A card read with a stray digit after it: the card inside is still found.
    (f"the number is {spoken(VISA)} oh", "the number is [card]"),
    # Written forms and DTMF keypad strings.
    ("my card is 4242 4242 4242 4242", "my card is [card]"),
    ("It's 5555-5555-5555-4444.", "It's [card]."),
    (f"{VISA}#", "[card]#"),
    (f"*{AMEX}#", "*[card]#"),
    (f"{VISA}123", "[card]"),  # card and code keyed without a break
    # The security code after its cue.
    ("and the security code is one two three", "and the security code is [cvv]"),
    ("cvv 4 5 6", "cvv [cvv]"),
    ("c v v is seven eight nine", "c v v is [cvv]"),
    ("the three digit code on the back is 9 8 7", "the three digit code on the back is [cvv]"),
    ("cvc: 1234", "cvc: [cvv]"),
    (f"card {spoken(VISA)} security code four four four",
     "card [card] security code [cvv]"),
])
def test_cards_and_codes_are_masked_whatever_the_setting(said: str, expected: str, pii: bool) -> None:
    assert redact_text(said, pii=pii) == expected


def test_a_number_that_fails_luhn_is_no_card() -> None:
    assert redact_text("4242 4242 4242 4241", pii=False) == "4242 4242 4242 4241"
    assert redact_text("4242 4242 4242 4241", pii=True) == "[phone]"


@pytest.mark.parametrize(("said", "expected"), [
    ("you can reach me on oh seven seven double nine one two three four five six",
     "you can reach me on [phone]"),
    ("call me back at five five five one two three four", "call me back at [phone]"),
    ("my number is +44 20 7946 0958", "my number is [phone]"),
    ("(202) 555-0100 is the office", "[phone] is the office"),
    ("the mobile is +4915112345678", "the mobile is [phone]"),
    ("email me at john dot smith at gmail dot com please", "email me at [email] please"),
    ("my email address is j smith at example dot co dot uk", "my email address is j [email]"),
    ("its anna underscore b at outlook dot com", "its [email]"),
    ("write to jo.smith+hotel@example.com today", "write to [email] today"),
])
def test_personal_data_is_masked_when_asked(said: str, expected: str) -> None:
    assert redact_text(said, pii=True) == expected
    # Without pii nothing of it changes (none of these is a card).
    assert redact_text(said, pii=False) == said


@pytest.mark.parametrize("said", [
    "can i come at ten thirty tomorrow",
    "i would like a table for two at 2 pm on the 14th",
    "the appointment is on june 12 2024 at 10:30",
    "check in 2024-06-01 check out 2024-06-04",
    "it costs $45.99 or 1,299 dollars in total",
    "a double room for two nights for 2 adults and 1 child",
    "we arrive at four o'clock and leave at nine",
    "oh that is great one moment please",
    "room 1204 on the 3rd floor",
    "press 1 for reservations or 2 for the front desk",
    "we booked at hotels dot com last year",
    "my pin is 1234",  # not after a security-code cue: left alone
    "security code 12",  # too short for a code
])
def test_ordinary_speech_is_left_alone(said: str) -> None:
    assert redact_text(said, pii=True) == said
    assert redact_text(said, pii=False) == said


def test_identifiers_glued_to_letters_are_not_numbers() -> None:
    text = "call CA1234567890abcdef booking REF-1234567X"
    assert redact_text(text, pii=True) == text


def test_other_scripts_digits_are_read_too() -> None:
    devanagari = "".join(chr(0x0966 + int(d)) for d in VISA)
    assert redact_text(f"कार्ड {devanagari}", pii=False) == "कार्ड [card]"


def test_redaction_is_idempotent() -> None:
    once = redact_text(f"card {VISA} code cvv 123 mail a@b.io phone 555 123 4567", pii=True)
    assert once == "card [card] code cvv [cvv] mail [email] phone [phone]"
    assert redact_text(once, pii=True) == once


def test_payloads_are_redacted_recursively_except_identifiers() -> None:
    payload = {
        "name": "take_payment",
        "arguments": {"card_number": VISA, "amount": 120, "note": "call 555 123 4567",
                      "digits": [int(MASTERCARD), "4242-4242-4242-4242"]},
        "call_sid": "CA4242424242424242",
        "from": "+4915112345678",
        "ok": True,
        "ms": 1234567,
    }
    out = redact_payload(payload, pii=True, keep={"call_sid", "from"})
    assert out == {
        "name": "take_payment",
        "arguments": {"card_number": "[card]", "amount": 120, "note": "call [phone]",
                      "digits": ["[card]", "[card]"]},
        "call_sid": "CA4242424242424242",
        "from": "+4915112345678",
        "ok": True,
        "ms": 1234567,  # numbers are not phone numbers; only a card-shaped integer is masked
    }
    assert payload["arguments"]["card_number"] == VISA  # the input is not modified
    assert redact_payload({"note": "call 555 123 4567"}, pii=False) == {"note": "call 555 123 4567"}


def test_a_recordings_segment_keys_are_identifiers_not_phone_numbers() -> None:
    # A UUID's digit groups can look like a phone number; the keys must still name the files.
    segments = [f"t/b606cee3-1ca7-4415-5512-9f3efa1fdea9-MZ{i}.wav" for i in (1, 2)]
    data = {"object_key": segments[0], "segments": segments, "note": ["call 555 123 4567"]}
    out = redact_payload(data, pii=True, keep=ingest_keep_keys())
    assert out["segments"] == segments and out["object_key"] == segments[0]
    assert out["note"] == ["call [phone]"], "only the named keys are kept, not every list"


def test_long_text_is_handled() -> None:
    text = ("the room was lovely and " * 500) + spoken(VISA)
    assert redact_text(text, pii=True).endswith("lovely and [card]")


def ingest_keep_keys() -> frozenset[str]:
    from control.events.ingest import _KEEP_KEYS

    return _KEEP_KEYS
