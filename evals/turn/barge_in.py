"""False interruptions: caller sounds over the agent that are not bids for the turn.

Each sound (real backchannel words, eSpeak backchannels, synthetic coughs, line-noise bursts, and
for contrast real interruptions) is streamed as carrier media (faint line noise, G.711 mu-law,
20 ms frames) through the call's inbound path, and the call loop's barge-in rule is applied frame
by frame with the partial transcripts a streaming PocketSphinx decoder (generic en-US model, a
partial every 100 ms, audio from 300 ms before the VAD's start) produces for it, with either VAD
(the noise gate + earshot, or the gate + Silero). Reported per VAD and rule:
the share of each kind that cut the agent off, and how long real interruptions took to do it.
"""

from __future__ import annotations

import base64
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import media_core
from cells.call.barge_in import content_words, interrupts, voiced
from evals.turn.dataset import DEFAULT_MANIFEST, FRAME, RATE, load, read_manifest, trim

STT_RATE = 16_000
SEED = 7


@dataclass(frozen=True)
class Sound:
    kind: str  # backchannel | cough | noise | interruption
    name: str
    pcm: np.ndarray  # int16 8 kHz


def _espeak(text: str, voice: str) -> np.ndarray:
    from cells.speech.espeak import EspeakEngine

    engine = EspeakEngine()
    pcm = engine.synthesize(text, voice=voice)
    r = media_core.Resampler(engine.sample_rate, RATE)
    return trim(np.concatenate([r.process(pcm), r.flush()]))


def _cough(rng: np.random.Generator) -> np.ndarray:
    """A burst of shaped noise: sharp onset, fast decay, 150-450 ms, low-passed."""
    n = int(rng.uniform(0.15, 0.45) * RATE)
    t = np.arange(n) / RATE
    noise = np.convolve(rng.normal(0, 1, n), np.ones(4) / 4, mode="same")
    env = (1 - np.exp(-t / 0.01)) * np.exp(-t / rng.uniform(0.06, 0.15))
    return (noise * env * rng.uniform(4000, 12000)).astype(np.int16)


def _line_noise(rng: np.random.Generator, i: int) -> np.ndarray:
    n = int(rng.uniform(0.3, 1.0) * RATE)
    if i % 3 == 0:  # crackle: clicks at random
        out = np.zeros(n)
        out[rng.integers(0, n, size=int(n / 200))] = rng.uniform(-8000, 8000, size=int(n / 200))
    elif i % 3 == 1:  # a hiss burst
        out = rng.normal(0, rng.uniform(300, 2000), n)
    else:  # hum with harmonics
        t = np.arange(n) / RATE
        out = sum(np.sin(2 * np.pi * 50 * k * t) / k for k in (1, 3, 5)) * rng.uniform(1000, 5000)
    return np.clip(out, -32768, 32767).astype(np.int16)


def sounds(manifest: Path = DEFAULT_MANIFEST) -> list[Sound]:
    rng = np.random.default_rng(SEED)
    clips = read_manifest(manifest)
    out: list[Sound] = []
    for c in clips:  # real single words that listeners use as backchannels; real short commands
        word = c.text.strip().lower()
        if c.speaker.startswith("sc-") and word in ("yes", "right"):
            out.append(Sound("backchannel", f"real {word}", trim(load(c.file))))
        elif c.speaker.startswith("sc-") and word in ("stop", "no"):
            out.append(Sound("interruption", f"real {word}", trim(load(c.file))))
        elif not c.speaker.startswith("sc-"):
            out.append(Sound("interruption", "real sentence", trim(load(c.file))[: 3 * RATE]))
    for voice in ("en-us", "en"):
        for text in ("uh-huh", "mm-hm", "mhm", "yeah", "okay", "right", "yes", "uh huh", "I see"):
            out.append(Sound("backchannel", f"espeak {text}", _espeak(text, voice)))
    out += [Sound("cough", "synthetic cough", _cough(rng)) for _ in range(30)]
    out += [Sound("noise", "line noise burst", _line_noise(rng, i)) for i in range(30)]
    return out


class Recogniser:
    """Streaming partials from PocketSphinx's generic model (a stand-in for the call's recogniser).
    Cached per sound: every rule sees the same partials."""

    def __init__(self) -> None:
        import pocketsphinx

        self.decoder = pocketsphinx.Decoder(loglevel="FATAL")
        self._cache: dict[tuple[str, int, int], list[str]] = {}
        self.sound = ""

    def partials(self, pcm16: np.ndarray, every: int = STT_RATE // 10) -> list[str]:
        """The partial after each `every` samples."""
        key = (self.sound, len(pcm16), int(np.abs(pcm16[:4000]).sum()))
        if key not in self._cache:
            self._cache[key] = self._decode(pcm16, every)
        return self._cache[key]

    def _decode(self, pcm16: np.ndarray, every: int) -> list[str]:
        d = self.decoder
        d.start_utt()
        out = []
        for i in range(0, len(pcm16), every):
            d.process_raw(pcm16[i:i + every].tobytes(), False, False)
            hyp = d.hyp()
            out.append(hyp.hypstr if hyp is not None else "")
        d.end_utt()
        return out


def first_cut(sound: Sound, rule: Callable[[float, str], bool], rec: Recogniser,
              hangover_counts: bool = False, final_words: int = 0,
              neural: media_core.NeuralVad | None = None) -> float | None:
    """ms from the sound's onset to the barge-in, or None if the agent was not cut off
    (`neural`: the inbound path's second VAD stage; None: earshot)."""
    lead = int(0.3 * RATE)
    rng = np.random.default_rng(len(sound.pcm))
    pcm = np.concatenate([np.zeros(lead, np.int16), sound.pcm, np.zeros(int(0.6 * RATE), np.int16)])
    pcm = np.clip(pcm + rng.normal(0, 25, len(pcm)), -32768, 32767).astype(np.int16)
    pcm = pcm[: len(pcm) // FRAME * FRAME]
    inbound = media_core.InboundPath(stt_rate=STT_RATE, min_silence_ms=160, neural=neural)
    frames16, started, t, partials, from_frame = [], None, 0.0, [], 0
    probs: list[float] = []
    for i in range(len(pcm) // FRAME):
        payload = base64.b64encode(media_core.ulaw_encode(pcm[i * FRAME:(i + 1) * FRAME])).decode()
        frame = inbound.push_message(json.dumps({"event": "media", "media": {"payload": payload}}))
        t += 20.0
        frames16.append(frame.pcm)
        for ev in frame.events:
            if ev.kind == "start" and started is None:
                started, from_frame = ev.time_ms, max(0, i - 15)
                partials = rec.partials(np.concatenate([*frames16[from_frame:], *_rest16(pcm, i + 1)]))
        probs = frame.probabilities or probs  # as the call loop: the last chunk's holds
        speaking = frame.speaking if hangover_counts else voiced(frame.speaking, probs)
        if started is None or not speaking:
            continue
        heard = int((t - from_frame * 20.0) / 100) - 1  # partials arrive every 100 ms of audio
        partial = partials[heard] if 0 <= heard < len(partials) else (partials[-1] if partials else "")
        if rule(t - started, partial):
            return t - 1000 * lead / RATE
    if final_words and started is not None and partials and content_words(partials[-1]) >= final_words:
        return t - 1000 * lead / RATE  # the transcript at the end of the turn took it
    return None


def _rest16(pcm: np.ndarray, from_frame: int) -> list[np.ndarray]:
    """The rest of the 8 kHz stream at 16 kHz (for the recogniser's look at what comes next)."""
    r = media_core.Resampler(RATE, STT_RATE)
    rest = pcm[from_frame * FRAME:]
    return [r.process(rest), r.flush()]


def report(manifest: Path = DEFAULT_MANIFEST) -> str:
    snd = sounds(manifest)
    rec = Recogniser()
    def rule(sure: float, words: int) -> Callable[[float, str], bool]:
        return lambda ms, p: interrupts(ms, p, min_ms=180.0, sure_ms=sure, min_words=words)

    # (name, rule during speech, does the VAD's hangover count as speech, how many content words
    # a final spoken over the agent needs to take the turn (0: never))
    rules: list[tuple[str, Callable[[float, str], bool], bool, int]] = [
        ("any speech >= 180 ms", lambda ms, p: ms >= 180.0, True, 0),
        ("1 word or >= 600 ms; final 1", rule(600.0, 1), False, 1),
        ("2 words or >= 600 ms; final 2 (calls)", rule(600.0, 2), False, 2),  # CallConfig's rule
        ("2 words or >= 600 ms", rule(600.0, 2), False, 0),
        ("speech >= 800 ms only", rule(800.0, 99), False, 0),
    ]
    kinds = ("backchannel", "cough", "noise", "interruption")
    counts = {k: sum(s.kind == k for s in snd) for k in kinds}
    lines = [f"barge-in on {len(snd)} caller sounds over the agent {counts}; share that cut the agent off"]
    vads = {"earshot": None, "silero": media_core.NeuralVad.from_installed()}
    for (name, during, hangover_counts, final), vad in itertools.product(rules, vads):
        cuts: dict[str, list[float | None]] = {k: [] for k in kinds}
        for i, s in enumerate(snd):
            rec.sound = f"{i}"
            cuts[s.kind].append(first_cut(s, during, rec, hangover_counts, final, vads[vad]))
        false = [c for k in ("backchannel", "cough", "noise") for c in cuts[k]]
        fi = sum(c is not None for c in false) / len(false)
        parts = [f"{vad + ': ' + name:<45}", f"false interruptions {100 * fi:>2.0f}%"]
        parts += [f"{k} {sum(c is not None for c in cuts[k])}/{len(cuts[k])}" for k in kinds]
        real = [c for c in cuts["interruption"] if c is not None]
        if real:
            parts.append(f"real ones cut after mean {np.mean(real):.0f} p50 {np.median(real):.0f} ms")
        lines.append(" | ".join(parts))
    return "\n".join(lines)
