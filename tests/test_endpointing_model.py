"""End of turn with the smart-turn model: the policy on a fake clock and a fake detector (short
wait for a high score, long and re-checked for a low one, text rules when the model fails or is
slow), the real model on speech, and the features against faster-whisper's extractor."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import pytest

from cells.call.endpointing import Endpointer, EndpointingConfig
from cells.call.turn_features import fit_window, log_mel

RATE = 8000
CFG = EndpointingConfig()


class FakeChecker:
    """Records requests; the test answers them when it likes (as a thread pool would, later)."""

    def __init__(self) -> None:
        self.requests: list[tuple[np.ndarray, int, Callable[[float | None], None]]] = []

    def request(self, pcm: np.ndarray, rate: int, done: Callable[[float | None], None]) -> None:
        self.requests.append((pcm, rate, done))

    def answer(self, p: float | None, index: int = -1) -> None:
        self.requests[index][2](p)


def speak(ep: Endpointer, start_ms: float, end_ms: float) -> None:
    """Feeds speech-like audio on the stream clock up to end_ms and the VAD's two events."""
    ep.on_audio(np.full(int((end_ms - start_ms) * RATE / 1000), 1000, np.int16), RATE)
    ep.on_speech_start(start_ms)
    ep.on_speech_end(end_ms)


def first_end(ep: Endpointer, from_ms: float, until_ms: float = 5000.0,
              on_tick: Callable[[float], None] | None = None) -> float | None:
    """Polls every 20 ms of stream time; the silence (ms after from_ms) at which the turn ends."""
    t = from_ms
    while t <= until_ms:
        if on_tick is not None:
            on_tick(t - from_ms)
        if ep.poll(t):
            return t - from_ms
        t += 20.0
    return None


def test_a_high_score_ends_the_turn_quickly_and_a_low_one_waits() -> None:
    ends = {}
    for p in (0.95, 0.05):
        checker = FakeChecker()
        ep = Endpointer(CFG, checker)
        speak(ep, 0.0, 1500.0)
        assert len(checker.requests) == 1
        pcm, rate, _ = checker.requests[0]
        assert rate == RATE and len(pcm) == 1500 * RATE // 1000, "the turn's audio, not more"
        checker.answer(p)
        ends[p] = first_end(ep, 1500.0)
    assert ends[0.95] == CFG.model_complete_silence_ms
    assert ends[0.05] == CFG.model_incomplete_silence_ms
    assert ends[0.95] < CFG.complete_silence_ms < ends[0.05]


def test_a_pause_that_goes_on_is_scored_again_and_a_new_high_score_ends_it() -> None:
    """With re-checks on (off by default: on real speech they cut more callers off than they sped up)."""
    cfg = dataclasses.replace(CFG, model_recheck_ms=700.0)
    checker = FakeChecker()
    ep = Endpointer(cfg, checker)
    speak(ep, 0.0, 1000.0)
    checker.answer(0.05)

    def tick(silence: float) -> None:
        if len(checker.requests) == 2 and not hasattr(tick, "done"):
            tick.done = True  # type: ignore[attr-defined]
            checker.answer(0.9)

    end = first_end(ep, 1000.0, on_tick=tick)
    assert len(checker.requests) == 2
    assert end is not None and 700.0 <= end < cfg.model_incomplete_silence_ms


def test_no_answer_by_the_deadline_falls_back_to_the_text_rules() -> None:
    for partial, expected in (("book me in at nine thirty", None), ("book me in at", None)):
        checker = FakeChecker()
        ep = Endpointer(CFG, checker)
        ep.on_partial(partial)
        speak(ep, 0.0, 1000.0)
        end = first_end(ep, 1000.0)
        text_rule = CFG.incomplete_silence_ms if partial.endswith("at") else CFG.complete_silence_ms
        assert end == max(CFG.model_deadline_ms, text_rule), (partial, end)
        del expected


def test_a_failed_check_falls_back_to_the_text_rules_at_once() -> None:
    checker = FakeChecker()
    ep = Endpointer(CFG, checker)
    ep.on_partial("nine thirty please")
    speak(ep, 0.0, 1000.0)
    checker.answer(None)
    assert first_end(ep, 1000.0) == CFG.complete_silence_ms


def test_an_answer_about_an_earlier_pause_is_ignored() -> None:
    checker = FakeChecker()
    ep = Endpointer(CFG, checker)
    speak(ep, 0.0, 1000.0)
    ep.on_speech_start(1200.0)  # the caller went on before the model answered
    checker.answer(0.99)
    ep.on_audio(np.full(800 * RATE // 1000, 1000, np.int16), RATE)
    ep.on_speech_end(2000.0)
    checker.answer(0.05)
    assert first_end(ep, 2000.0) == CFG.model_incomplete_silence_ms


def test_a_trailing_word_outweighs_the_models_done() -> None:
    checker = FakeChecker()
    ep = Endpointer(CFG, checker)
    ep.on_partial("my number is")
    speak(ep, 0.0, 1000.0)
    checker.answer(0.9)
    assert first_end(ep, 1000.0) == CFG.incomplete_silence_ms


def test_without_a_model_the_text_rules_decide_as_before() -> None:
    ep = Endpointer(EndpointingConfig(use_model=False), FakeChecker())
    assert ep.checker is None
    ep.on_partial("nine thirty")
    speak(ep, 0.0, 1000.0)
    assert first_end(ep, 1000.0) == CFG.complete_silence_ms


def test_features_match_faster_whispers_extractor() -> None:
    fw = pytest.importorskip("faster_whisper.feature_extractor")
    rng = np.random.default_rng(3)
    audio = (rng.standard_normal(3 * 16000) * 0.05).astype(np.float32)
    ours = log_mel(audio)
    x = fit_window(audio)
    x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
    theirs = fw.FeatureExtractor(feature_size=80, chunk_length=8)(x, padding=0)
    assert ours.shape == theirs.shape == (80, 800)
    assert np.abs(ours - theirs).max() < 1e-4


def test_the_real_model_scores_finished_sentences_above_the_same_sentences_cut_mid_word() -> None:
    """On real recordings (the speech-dev set; eSpeak's flat prosody is outside what the model
    learned: on it a cut sentence often scores higher than the whole one)."""
    from cells.call.turn_model import shared_detector
    from evals.turn.dataset import DEFAULT_MANIFEST, ends_a_sentence, load, read_manifest, trim

    if not DEFAULT_MANIFEST.is_file():
        pytest.skip(f"no real speech at {DEFAULT_MANIFEST} (set AUTOSPEAK_SPEECH_DEV)")
    detector = shared_detector()
    if detector is None:
        pytest.skip("pipecat-ai (the model's wheel) is not installed")
    clips = [c for c in read_manifest(DEFAULT_MANIFEST)
             if not c.speaker.startswith("sc-") and ends_a_sentence(c.text)][:24]
    assert len(clips) >= 10
    pause = np.zeros(1600, np.int16)  # 200 ms at 8 kHz
    whole, cut = [], []
    for clip in clips:
        speech = trim(load(clip.file))
        whole.append(detector.score(np.concatenate([speech, pause]), 8000))
        cut.append(detector.score(np.concatenate([speech[: len(speech) // 2], pause]), 8000))
    assert np.mean(whole) > np.mean(cut) + 0.1, (np.mean(whole), np.mean(cut))
    assert np.mean(np.array(whole) > np.array(cut)) > 0.6
    assert np.median(whole) >= CFG.model_complete_p
    with pytest.raises(ValueError):
        detector.score(np.zeros(100, np.float32), 16000)


def test_a_dip_in_the_vads_probability_asks_early_and_speech_going_on_drops_that_answer() -> None:
    checker = FakeChecker()
    ep = Endpointer(CFG, checker)
    ep.on_speech_start(0.0)
    ep.on_audio(np.full(8000, 1000, np.int16), RATE, [0.9])
    ep.on_audio(np.zeros(160, np.int16), RATE, [0.1])  # the probability drops: ask now
    assert len(checker.requests) == 1
    ep.on_audio(np.full(160, 1000, np.int16), RATE, [0.8])  # the caller went on
    checker.answer(0.99)  # about a pause that did not happen
    ep.on_audio(np.zeros(160, np.int16), RATE, [0.0])
    assert len(checker.requests) == 2
    checker.answer(0.05)
    ep.on_speech_end(1040.0)
    assert len(checker.requests) == 2, "the end event reuses the early question"
    assert first_end(ep, 1040.0) == CFG.model_incomplete_silence_ms


class RaisingDetector:
    async def check(self, pcm: np.ndarray, rate: int) -> float:
        raise RuntimeError("onnx exploded")


def test_a_detector_that_raises_answers_none_and_the_text_rules_decide() -> None:
    import asyncio

    from cells.call.turn_model import ModelChecker

    async def run() -> float | None:
        ep = Endpointer(CFG, ModelChecker(RaisingDetector()))  # type: ignore[arg-type]
        ep.on_partial("at nine thirty")
        speak(ep, 0.0, 1000.0)
        await asyncio.sleep(0.05)
        assert ep.verdicts == [None]
        return first_end(ep, 1000.0)

    assert asyncio.run(run()) == CFG.complete_silence_ms


def test_a_backed_up_detector_refuses_at_once() -> None:
    import asyncio

    from cells.call.turn_model import TurnDetector, TurnModelUnavailable, shared_detector

    if shared_detector() is None:
        pytest.skip("pipecat-ai (the model's wheel) is not installed")
    detector = TurnDetector(max_pending=1)
    audio = np.zeros(16000, np.int16)

    async def run() -> list[float | BaseException]:
        return await asyncio.gather(detector.check(audio, 16000), detector.check(audio, 16000),
                                    return_exceptions=True)

    first, second = asyncio.run(run())
    assert isinstance(first, float)
    assert isinstance(second, TurnModelUnavailable)
