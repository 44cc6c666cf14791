"""Real human speech (the speech-dev set: 8 kHz recordings) through a call's default inbound path
(mu-law media messages, the gate + Silero VAD) and its default end of turn (the smart-turn model
at each pause, the text rules as fallback): a caller who pauses inside a sentence or a number
keeps the turn, and a caller who has finished gets it ended. The model's answers arrive a fixed
100 ms of stream time after each question, so the outcome does not depend on this machine's load.
The last test is a whole call in real time (slow)."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

import media_core
from cells.call.endpointing import EndpointingConfig
from cells.call.session import CallConfig
from cells.call.timeline import TurnTiming
from cells.call.vad_model import neural_vad_for
from evals.turn.bench import SimChecker, messages, replay, through_inbound
from evals.turn.dataset import DEFAULT_MANIFEST, RATE, Case, build, on_the_line

pytestmark = pytest.mark.skipif(not DEFAULT_MANIFEST.is_file(),
                                reason=f"no real speech at {DEFAULT_MANIFEST} (set AUTOSPEAK_SPEECH_DEV)")


@pytest.fixture(scope="module")
def cases() -> dict[tuple[str, str], Case]:
    return {(c.kind, c.name): c for c in build(DEFAULT_MANIFEST)}


@pytest.fixture(scope="module")
def checker() -> SimChecker:
    from cells.call.turn_model import shared_detector

    detector = shared_detector()
    if detector is None:
        pytest.skip("pipecat-ai (the end-of-turn model's wheel) is not installed")
    return SimChecker(detector.score, delay_ms=100.0)


def turn_end(case: Case, checker: SimChecker, *, neural: media_core.NeuralVad | None,
             endpointing: EndpointingConfig, snr_db: float | None = None,
             index: int = 0) -> tuple[float | None, Case]:
    """When the call's endpointer ends the caller's turn (stream ms), for the case on a line."""
    heard = on_the_line(case, snr_db, index)
    frames, _ = through_inbound(messages(heard), neural)
    checker.start(f"{case.kind}/{case.name}/{snr_db}/{neural is not None}/{endpointing}")
    return replay(frames, endpointing, checker if endpointing.use_model else None), heard


def real_end_ms(case: Case) -> float:
    return 1000.0 * case.speech_end / RATE


def test_silero_is_installed_and_the_default_config_asks_the_model() -> None:
    config = CallConfig()
    assert config.endpointing.use_model
    assert neural_vad_for(True) is not None, "silero-vad (model-wheels.txt) is not installed"


def defaults() -> tuple[media_core.NeuralVad | None, EndpointingConfig]:
    """The Silero configuration (CallConfig(neural_vad=True)) with the default endpointing."""
    config = CallConfig(neural_vad=True)
    return neural_vad_for(config.neural_vad), config.endpointing


# Read sentences with a 0.7 or 1.0 s pause inserted at a word boundary, and "0 7 7 ... 9 1 2" in
# one voice with a 0.4 s pause between the groups: each is one turn. (Not every case of the bench
# passes: `autospeak bench turn` counts how many are cut off.)
PAUSED = [("paused", "ls_1089-134686-0001"), ("paused", "ps_librivox_0930"), ("digits", "digits-6")]


@pytest.mark.parametrize("key", PAUSED, ids=[k[1] for k in PAUSED])
def test_a_caller_who_pauses_inside_a_sentence_or_a_number_keeps_the_turn(
        key: tuple[str, str], cases: dict[tuple[str, str], Case], checker: SimChecker) -> None:
    case = cases[key]
    assert case.pauses and (case.pauses[0][1] - case.pauses[0][0]) / RATE >= 0.4
    neural, endpointing = defaults()
    end, heard = turn_end(case, checker, neural=neural, endpointing=endpointing)
    assert end is not None, "the turn never ended"
    assert end > real_end_ms(heard), f"cut off at {end:.0f} ms; speech went on to {real_end_ms(heard):.0f}"
    # The pause is long enough to matter: a fixed silence wait takes it for the end.
    fixed_silence = dataclasses.replace(endpointing, use_model=False)
    fixed, _ = turn_end(case, checker, neural=neural, endpointing=fixed_silence)
    assert fixed is not None and fixed < real_end_ms(heard)


# Whole recordings: sentences, card names, single words ("yes", "stop", "right").
FINISHED = ["arctic_axb_a0004", "arctic_axb_a0005", "ps_cards_001", "ps_goforward", "lj_LJ001-0013",
            "ls_1089-134686-0001", "sc_yes_439c84f4_nohash_1", "sc_stop_1eddce1d_nohash_3",
            "sc_right_f21893dc_nohash_0"]


def test_a_caller_who_has_finished_gets_the_turn_ended(cases: dict[tuple[str, str], Case],
                                                       checker: SimChecker) -> None:
    neural, endpointing = defaults()
    ended = []
    for name in FINISHED:
        case = cases[("complete", name)]
        end, heard = turn_end(case, checker, neural=neural, endpointing=endpointing)
        assert end is not None, f"{name}: the turn never ended"
        assert end >= real_end_ms(heard), f"{name}: ended at {end:.0f} ms, before the caller's end"
        ended.append(name)
    assert ended == FINISHED


def test_the_bench_scores_every_vad_and_policy_on_each_line(cases: dict[tuple[str, str], Case]) -> None:
    """`autospeak bench turn` on two turns with a model that always says "done": every VAD x policy
    row is there, and a model that is always sure cuts the paused sentence at its pause."""
    from evals.turn.bench import POLICIES, VADS, evaluate, table
    from evals.turn.dataset import NOISE_VARIANTS

    picked = [cases[("paused", "ls_1089-134686-0001")], cases[("complete", "ps_goforward")]]
    always_done = SimChecker(lambda pcm, rate: 0.99, delay_ms=100.0)
    out, cost = evaluate(picked, POLICIES, always_done, NOISE_VARIANTS[:1])
    assert set(out) == {(v, p, NOISE_VARIANTS[0][0]) for v in VADS for p in POLICIES}
    assert all(o.cases == 2 for o in out.values())
    assert out[("silero", "smart-turn", NOISE_VARIANTS[0][0])].cut.get("0.7 s") == 1
    assert all(us > 0 and n > 0 for us, n in cost.values())
    rows = table(out, NOISE_VARIANTS[:1])
    assert sum(" + " in r and "cut" in r for r in rows) == len(VADS) * len(POLICIES)

@pytest.mark.slow
def test_a_whole_call_hears_a_real_sentence_with_a_pause_as_one_turn_and_answers_it(
        cases: dict[tuple[str, str], Case]) -> None:
    """Real time, through the call loop with its defaults (the real model on its pool)."""
    from call_harness import Phone, stream, wait_for
    from test_call_session import make_session, start

    heard = on_the_line(cases[("paused", "ls_1089-134686-0001")], None, 0)
    pcm = heard.pcm[: len(heard.pcm) // 160 * 160]
    ulaw = media_core.ulaw_encode(pcm)
    frames = [ulaw[i:i + 160] for i in range(0, len(ulaw), 160)]
    events: list[str] = []

    async def run() -> list[TurnTiming]:
        phone = Phone()
        # The recogniser gives the next line at each end of turn: a turn ended in the pause would
        # show as a second turn, or as the two lines rejoined into one.
        session = make_session(phone, stt_lines=["the whole sentence", "a second turn"])
        session._on_event = lambda kind, data: events.append(kind)
        seq = await start(session, phone)
        seq = await stream(session, frames, seq)
        await wait_for(lambda: session.turns and not session._agent_busy(), 10, session, seq)
        await session.stop()
        return session.turns

    turns = asyncio.run(run())
    assert [t.caller_text for t in turns] == ["the whole sentence"]
    assert "turn_rejoined" not in events, "the turn was ended in the pause and taken back"
    assert turns[0].agent_text, "the caller was not answered"
