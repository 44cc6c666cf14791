"""Embedded STT bench: PocketSphinx, generic LM versus a dental clinic's domain LM, on telephone audio.

Caller utterances are synthesised with eSpeak NG in several voices and rates, taken through the phone path
(22050 -> 8000 Hz, G.711 mu-law round trip, 8000 -> 16000 Hz) and streamed to the recogniser in 20 ms
frames. Word error rate and real-time factor (decode time / audio time) are measured in the run.

The second part decodes callers' answers to a receptionist (evals/stt/answers.py) with the demo clinic's
own domain (cells/agents/reception/clinic.py) as the call loop does: line noise as pre-roll before each
turn, and both one stream per answer (every answer is a first turn) and one stream per call across turns.
It reports
WER and slot accuracy (does the text still carry the weekday, time, name, digits, yes/no).

    python -m evals.stt.bench [-v]
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

import numpy as np

import media_core
from cells.agents.reception.clinic import CALLER_TEMPLATES
from cells.providers.base import EndOfTurn, Frame
from cells.providers.stt.domain_lm import Domain
from cells.providers.stt.pocketsphinx_stt import PocketsphinxStt
from cells.speech.espeak import EspeakEngine
from evals.stt.answers import ANSWERS, VOICES, Answer, slot_hits
from evals.stt.wer import WerCounts, wer_counts

CLINIC = Domain(
    services=["cleaning", "checkup", "filling", "crown", "root canal", "extraction", "teeth whitening",
              "emergency appointment"],
    names=["Doctor Patel", "Doctor Garcia", "Doctor Nguyen", "Sarah Johnson", "Michael Brown"],
    extra_phrases=["is the parking free", "do you take my insurance"],
    templates=list(CALLER_TEMPLATES),  # a clinic's callers' sentences, as the demo clinic declares them
)

# (eSpeak voice, words per minute): the conditions each utterance is spoken in, round robin.
CONDITIONS: list[tuple[str, int]] = [("en-us", 170), ("en-us+m3", 150), ("en-us+f2", 190), ("en-gb+m1", 165)]

SCRIPTED = [
    "i'd like to book a cleaning on tuesday at nine thirty",
    "can i move my appointment to friday at two fifteen p m",
    "yes please",
    "no thank you",
    "i need to cancel my appointment on monday",
    "do you have anything next wednesday morning",
    "my name is sarah johnson",
    "my number is five five five zero one three four",
    "i'd like to see doctor patel",
    "can i book a checkup for the twenty first",
    "that's right",
    "what about thursday at ten a m",
    "i need to reschedule my root canal appointment",
    "is noon on saturday available",
    "i want to cancel my filling on march third",
    "tomorrow at four thirty p m",
    "can i see doctor garcia on june fifteenth",
    "i'd like to book a teeth whitening",
    "cancel that",
    "yes thursday at three is fine",
    "it's seven oh three two one eight nine",
    "next monday please",
    "how much is a crown",
    "i'm calling about an extraction",
    "sounds good",
    "the earliest you have",
    "do you have anything on april twelfth at eleven a m",
    "i need an appointment on the fifth at half past two",
    "is doctor nguyen available on friday",
    "no not tuesday",
    "can i reschedule to wednesday at one forty five",
    "i'm a new patient",
    "eight fifteen works for me",
    "i'd like to leave a message",
    "correct",
    "can you repeat that",
]

# Said differently from any template: what the general-English share of the domain LM is for.
OFF_SCRIPT = [
    "hi there i was hoping to get my teeth cleaned sometime next week",
    "my tooth has been killing me since yesterday",
    "could you push my visit back a couple of days",
    "what are your opening hours on the weekend",
    "i'm going to be about twenty minutes late",
    "does my insurance cover the whole thing",
]


@dataclass
class Result:
    reference: str
    hypothesis: str
    condition: str
    counts: WerCounts
    audio_s: float
    decode_s: float


def telephone(pcm: np.ndarray, rate: int) -> np.ndarray:
    """TTS audio as the recogniser hears it after a phone call's narrowband mu-law leg."""
    down = media_core.Resampler(rate, 8000)
    narrow = np.concatenate([down.process(pcm), down.flush()])
    narrow = media_core.ulaw_decode(media_core.ulaw_encode(narrow))
    up = media_core.Resampler(8000, 16000)
    # A little silence either side, as a VAD-cut turn has.
    pad = np.zeros(16000 // 5, dtype=np.int16)
    return np.concatenate([pad, up.process(narrow), up.flush(), pad])


def spoken(engine: EspeakEngine, text: str, condition: tuple[str, int]) -> np.ndarray:
    voice, rate = condition
    return telephone(engine.synthesize(text, voice=voice, rate_wpm=rate), engine.sample_rate)


async def _frames(audio: np.ndarray, frame: int = 320) -> AsyncIterator[Frame]:
    for i in range(0, len(audio), frame):
        yield audio[i:i + frame]
    yield EndOfTurn()


async def transcribe(stt: PocketsphinxStt, audio: np.ndarray) -> tuple[str, float]:
    """The final text of one turn and the wall time spent decoding it."""
    start = time.perf_counter()
    final = ""
    async for transcript in stt.stream(_frames(audio)):
        if transcript.is_final:
            final = transcript.text
    return final, time.perf_counter() - start


async def run(utterances: Sequence[str], stt: PocketsphinxStt, engine: EspeakEngine,
              offset: int = 0) -> list[Result]:
    results = []
    for i, text in enumerate(utterances):
        condition = CONDITIONS[(i + offset) % len(CONDITIONS)]
        audio = spoken(engine, text, condition)
        hypothesis, decode_s = await transcribe(stt, audio)
        label = f"{condition[0]}@{condition[1]}"
        results.append(Result(text, hypothesis, label, wer_counts(text, hypothesis),
                              len(audio) / stt.sample_rate, decode_s))
    return results


def _total(results: Sequence[Result]) -> WerCounts:
    return sum((r.counts for r in results), WerCounts(0, 0))


def _rtf(results: Sequence[Result]) -> float:
    return sum(r.decode_s for r in results) / sum(r.audio_s for r in results)


async def _measure() -> dict[str, dict[str, list[Result]]]:
    engine = EspeakEngine()
    systems = {"generic": PocketsphinxStt(), "domain": PocketsphinxStt(CLINIC)}
    out: dict[str, dict[str, list[Result]]] = {}
    for name, stt in systems.items():
        await stt.warm_up()  # model loading is not decoding
        out[name] = {"scripted": await run(SCRIPTED, stt, engine),
                     "off-script": await run(OFF_SCRIPT, stt, engine, offset=1)}
    return out


@dataclass
class AnswerResult:
    answer: Answer
    hypothesis: str
    condition: str
    mode: str  # "turn": its own stream; "call": one stream per voice across its answers
    counts: WerCounts
    slots: int


def phone_turn(engine: EspeakEngine, text: str, condition: tuple[str, int],
               rng: np.random.Generator) -> np.ndarray:
    """One caller turn as the call loop hands it to STT: ~400 ms of line noise (the VAD's pre-roll), the
    speech, ~300 ms of line noise (the hangover before end of turn), all through the mu-law leg."""
    voice, rate = condition
    pcm = engine.synthesize(text, voice=voice, rate_wpm=rate)
    down = media_core.Resampler(engine.sample_rate, 8000)
    narrow = np.concatenate([down.process(pcm), down.flush()])
    noise = rng.normal(0, 25, 5600).astype(np.int16)  # the simulator's line noise level
    narrow = np.concatenate([noise[:3200], narrow, noise[3200:]])
    narrow = media_core.ulaw_decode(media_core.ulaw_encode(narrow))
    up = media_core.Resampler(8000, 16000)
    return np.concatenate([up.process(narrow), up.flush()])


def answer_turns(engine: EspeakEngine) -> list[tuple[Answer, tuple[str, int], np.ndarray]]:
    """Each answer in two of the voice/rate conditions (spread so that every voice hears every kind)."""
    rng = np.random.default_rng(0)
    out = []
    for i, answer in enumerate(ANSWERS):
        for k in (0, 3):
            condition = VOICES[(2 * i + k) % len(VOICES)]
            out.append((answer, condition, phone_turn(engine, answer.text, condition, rng)))
    return out


async def _turn_texts(stt: PocketsphinxStt, turns: Sequence[np.ndarray]) -> list[str]:
    async def frames() -> AsyncIterator[Frame]:
        for audio in turns:
            for i in range(0, len(audio), 320):
                yield audio[i:i + 320]
            yield EndOfTurn()

    return [t.text async for t in stt.stream(frames()) if t.is_final]


async def measure_answers(stt: PocketsphinxStt, engine: EspeakEngine) -> list[AnswerResult]:
    turns = answer_turns(engine)
    results = []

    def result(index: int, hypothesis: str, mode: str) -> AnswerResult:
        answer, condition, _ = turns[index]
        return AnswerResult(answer, hypothesis, f"{condition[0]}@{condition[1]}", mode,
                            wer_counts(answer.text, hypothesis), slot_hits(answer, hypothesis))

    separate = await asyncio.gather(*(_turn_texts(stt, [audio]) for _, _, audio in turns))
    results += [result(i, texts[0], "turn") for i, texts in enumerate(separate)]
    by_voice: dict[str, list[int]] = {}
    for i, (_, condition, _) in enumerate(turns):
        by_voice.setdefault(condition[0], []).append(i)
    calls = await asyncio.gather(*(_turn_texts(stt, [turns[i][2] for i in idx]) for idx in by_voice.values()))
    for idx, texts in zip(by_voice.values(), calls, strict=True):
        results += [result(i, text, "call") for i, text in zip(idx, texts, strict=True)]
    return results


def _answer_summary(results: Sequence[AnswerResult]) -> str:
    slots = sum(r.slots for r in results)
    wanted = sum(len(r.answer.slots) for r in results)
    return f"{_total(results).wer:>6.1%} {slots / max(wanted, 1):>7.1%} ({slots:>3}/{wanted:<3})"  # type: ignore[arg-type]


def answers_report(results: Sequence[AnswerResult], verbose: bool = False) -> list[str]:
    lines = ["", "Caller answers, clinic domain (WER, slot accuracy); turn: own stream, call: one stream",
             f"{'group':<22} {'turn WER':>8} {'slots':>15}   {'call WER':>8} {'slots':>15}"]

    def row(label: str, keep: Callable[[AnswerResult], bool]) -> str:
        parts = [_answer_summary([r for r in results if r.mode == mode and keep(r)])
                 for mode in ("turn", "call")]
        return f"{label:<22} {parts[0]}   {parts[1]}"

    for voice in sorted({r.condition.split("@")[0] for r in results}):
        lines.append(row(f"voice {voice}", lambda r, v=voice: r.condition.split("@")[0] == v))  # type: ignore[misc]
    for kind in sorted({r.answer.kind for r in results}):
        lines.append(row(f"kind {kind}", lambda r, k=kind: r.answer.kind == k))  # type: ignore[misc]
    lines.append(row("scripted (in domain)", lambda r: r.answer.kind != "off-script"))
    lines.append(row("off-script", lambda r: r.answer.kind == "off-script"))
    lines.append(row("all", lambda r: True))
    if verbose:
        lines += [f"  {r.mode:<4} {r.condition:<13} {r.slots}/{len(r.answer.slots)} {r.answer.text!r} -> "
                  f"{r.hypothesis!r}" for r in results]
    return lines


def _clinic_domain() -> Domain:
    from cells.agents.reception.clinic import stt_vocabulary

    vocabulary = stt_vocabulary()
    return Domain(vocabulary["services"], vocabulary["names"], vocabulary["phrases"],
                  vocabulary["templates"])


def _answers_in_process() -> list[AnswerResult]:
    return asyncio.run(measure_answers(PocketsphinxStt(_clinic_domain(), spares=0), EspeakEngine()))


def report(verbose: bool = False) -> str:
    # The two parts each keep one core busy (a decoder is single-threaded); a second process runs the
    # caller-answer part beside the first so that the full bench stays around a minute on two cores.
    with concurrent.futures.ProcessPoolExecutor(1) as pool:
        pending = pool.submit(_answers_in_process)
        measured = asyncio.run(_measure())
        answers = pending.result()
    lines = ["Embedded STT on telephone audio (eSpeak NG voices -> 8 kHz mu-law -> 16 kHz), PocketSphinx 5",
             f"{'set':<11} {'condition':<15} {'generic WER':>12} {'domain WER':>11} {'utts':>5}"]
    for subset in ("scripted", "off-script"):
        conditions = sorted({r.condition for r in measured["generic"][subset]})
        for condition in [*conditions, "all"]:
            picked = {system: [r for r in measured[system][subset] if condition in ("all", r.condition)]
                      for system in ("generic", "domain")}
            lines.append(f"{subset:<11} {condition:<15} {_total(picked['generic']).wer:>12.1%} "
                         f"{_total(picked['domain']).wer:>11.1%} {len(picked['generic']):>5}")
    for system in ("generic", "domain"):
        results = [r for subset in measured[system].values() for r in subset]
        audio_s = sum(r.audio_s for r in results)
        lines.append(f"{system} LM: overall WER {_total(results).wer:.1%}, "
                     f"real-time factor {_rtf(results):.3f} ({audio_s:.0f} s of audio)")
    if verbose:
        for system in ("generic", "domain"):
            lines.append(f"\n{system}:")
            for subset in measured[system].values():
                lines += [f"  {r.counts.wer:5.0%}  {r.reference!r} -> {r.hypothesis!r}" for r in subset]
    lines += answers_report(answers, verbose)
    return "\n".join(lines)


if __name__ == "__main__":
    import sys

    print(report(verbose="-v" in sys.argv))
