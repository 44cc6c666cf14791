"""The embedding intent matcher: the right intent for phrasings it was not given, nothing for off-topic
or ambiguous turns, options matched by meaning, and its example set kept apart from the eval sets."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from cells.nlu.intents import RECEPTION_INTENTS, IntentMatcher, match_option

EVAL_DATA = Path(__file__).resolve().parent.parent / "evals" / "nlu" / "data"


@pytest.fixture(scope="module")
def matcher() -> IntentMatcher:
    return IntentMatcher.from_file()


@pytest.mark.parametrize(("text", "intent"), [
    ("Could I possibly change the day of my visit?", "move"),
    ("What time do you open on Tuesdays?", "hours"),
    ("Can I talk to a person, please?", "human"),
    ("Where exactly is your practice?", "location"),
    ("How much is a filling?", "price"),
    ("I'd like to cancel my appointment on Friday.", "cancel"),
    ("Okay, that's all. Goodbye!", "goodbye"),
    ("whats the earliest slot you have next week", "book"),
])
def test_matches_phrasings_it_was_not_given(matcher: IntentMatcher, text: str, intent: str) -> None:
    got = matcher.match(text)
    assert got is not None and got.intent == intent, (text, matcher.scores(text))
    assert got.runner_up != intent and got.score >= got.runner_up_score + matcher.margin


@pytest.mark.parametrize("text", ["What's the weather going to be like tomorrow?",
                                  "My cat knocked a glass over.", "Is it going to rain?", "Blorp.", "", " "])
def test_off_topic_and_empty_turns_match_nothing(matcher: IntentMatcher, text: str) -> None:
    assert matcher.match(text) is None


def test_a_near_tie_is_no_match() -> None:
    # Two intents with the same examples tie on every turn: the margin must refuse to pick one.
    same = ["I want to move my appointment.", "Can we change the day of my booking?"]
    tied = IntentMatcher({"move": same, "also_move": same, "hours": ["When are you open?"]})
    assert tied.match("Could my appointment go to another day?") is None
    assert tied.match("What are your opening hours?").intent == "hours"  # type: ignore[union-attr]


def test_a_batch_matches_as_one_at_a_time(matcher: IntentMatcher) -> None:
    texts = ["Where do I park?", "", "Bye now.", "Tell me about the moon."]
    batch, alone = matcher.match_many(texts), [matcher.match(t) for t in texts]
    intents = [m and m.intent for m in batch]
    assert intents == [m and m.intent for m in alone] == ["location", None, "goodbye", None]
    assert batch[0].score == pytest.approx(alone[0].score, abs=1e-5)  # type: ignore[union-attr]


def test_bad_definitions_and_input_are_refused() -> None:
    with pytest.raises(ValueError, match="at least one intent"):
        IntentMatcher({})
    with pytest.raises(ValueError, match="non-empty example"):
        IntentMatcher({"book": []})
    with pytest.raises(TypeError, match="list of example"):
        IntentMatcher({"book": "I want an appointment"})
    with pytest.raises(ValueError, match="top_k"):
        IntentMatcher({"book": ["I want an appointment"]}, top_k=0)
    matcher = IntentMatcher({"book": ["I want an appointment"], "hours": ["When do you open?"]})
    with pytest.raises(TypeError, match="as str"):
        matcher.match(None)  # type: ignore[arg-type]


def test_from_file_checks_the_shape(tmp_path: Path) -> None:
    bad = tmp_path / "intents.json"
    bad.write_text(json.dumps({"book": ["x"]}))
    with pytest.raises(ValueError, match="'intents' mapping"):
        IntentMatcher.from_file(bad)


def test_options_by_meaning() -> None:
    got = match_option("I'd like to get my teeth cleaned", ["cleaning", "check-up", "filling"])
    assert got is not None and got[0] == "cleaning"
    services = {"whitening": ["teeth whitening"], "emergency": ["toothache", "broken tooth"],
                "consultation": ["braces", "implants"]}
    assert match_option("Could you make my teeth whiter?", services)[0] == "whitening"  # type: ignore[index]
    assert match_option("My tooth is throbbing.", services)[0] == "emergency"  # type: ignore[index]
    assert match_option("What's the weather like?", services) is None
    assert match_option("", services) is None
    with pytest.raises(TypeError, match="not a str"):
        match_option("cleaning", "cleaning")  # type: ignore[arg-type]


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9 ]", "", text.lower().replace("-", " ")).split())


def test_examples_are_not_the_evaluation_utterances() -> None:
    data = json.loads(RECEPTION_INTENTS.read_text())
    examples = {_norm(t) for ts in data["intents"].values() for t in ts}
    examples |= {_norm(t) for t in data["off_topic"]}
    for name in ("paraphrase_tests.json", "caller_phrasings.json", "held_out_phrasings.json"):
        held_out = json.loads((EVAL_DATA / name).read_text())
        texts = [t for t, _ in held_out["utterances"] + held_out.get("services", [])]
        assert not examples & {_norm(t) for t in texts}, name
    assert all(8 <= len(ts) <= 15 for ts in data["intents"].values())


def test_a_scored_row_is_the_match_and_its_vector_serves_match_option(matcher: IntentMatcher) -> None:
    text = "Where should I park when I come?"
    row = matcher.score_row(text)
    assert matcher.decide(row.scores) == matcher.match(text)
    options = {"parking": ["where to leave the car"], "hours": ["opening times"]}
    by_vector = match_option("", options, vector=row.vector)
    by_text = match_option(text, options)
    assert by_vector is not None and by_text is not None and by_vector[0] == by_text[0] == "parking"
    assert by_vector[1] == pytest.approx(by_text[1], abs=1e-5)
