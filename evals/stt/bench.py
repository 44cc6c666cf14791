"""Embedded STT bench: PocketSphinx, generic LM versus a dental clinic's domain LM, on telephone audio.

Caller utterances are synthesised with eSpeak NG in several voices and rates, taken through the phone path
(22050 -> 8000 Hz, G.711 mu-law round trip, 8000 -> 16000 Hz) and streamed to the recogniser in 20 ms
frames. Word error rate and real-time factor (decode time / audio time) are measured in the run.

    python -m evals.stt.bench
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import numpy as np

import media_core
from cells.providers.base import EndOfTurn, Frame
from cells.providers.stt.domain_lm import Domain
from cells.providers.stt.pocketsphinx_stt import PocketsphinxStt
from cells.speech.espeak import EspeakEngine
from evals.stt.wer import WerCounts, wer_counts

CLINIC = Domain(
    services=["cleaning", "checkup", "filling", "crown", "root canal", "extraction", "teeth whitening",
              "emergency appointment"],
    names=["Doctor Patel", "Doctor Garcia", "Doctor Nguyen", "Sarah Johnson", "Michael Brown"],
    extra_phrases=["is the parking free", "do you take my insurance"],
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


def report(verbose: bool = False) -> str:
    measured = asyncio.run(_measure())
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
    return "\n".join(lines)


if __name__ == "__main__":
    import sys

    print(report(verbose="-v" in sys.argv))
