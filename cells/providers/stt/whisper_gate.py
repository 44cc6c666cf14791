"""Keeps Whisper from inventing words: it writes something ("Thank you.", "you") for almost any audio,
including a turn of line noise or a cough that the call loop's VAD let through.

Two checks. Before decoding, the turn must hold some speech-like energy: frames well above the turn's own
noise floor (and above an absolute floor), for long enough to be a word; a turn without it is not decoded
at all. After decoding, the result is dropped when the model itself says it heard no speech and was unsure
of its words (the rule Whisper's own transcriber uses), or when it was very unsure on little speech.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cells.providers.stt.whisper_engine import Decoded

FRAME_MS = 20


@dataclass(frozen=True)
class GateConfig:
    min_speech_ms: float = 120.0  # voiced energy needed to decode at all (a short "no" has ~200 ms)
    floor_ratio_db: float = 12.0  # a speech frame is this far above the turn's noise floor ...
    absolute_dbfs: float = -50.0  # ... and above this level
    no_speech_prob: float = 0.6  # Whisper's rule: no_speech above this and avg_logprob below the next
    logprob: float = -1.0
    unsure_logprob: float = -1.3  # on little speech, a result this unsure is dropped outright
    little_speech_ms: float = 400.0
    # A turn the model half doubts holds speech and is this unsure of its words: a tone or noise bursts
    # that a request-shaped prompt talked it into ("I'm a fan of the two." at no-speech 0.52, -2.4).
    doubt_no_speech_prob: float = 0.5
    doubt_logprob: float = -1.5


def speech_ms(pcm: np.ndarray, sample_rate: int, config: GateConfig) -> float:
    """Milliseconds of frames whose level stands clear of the turn's noise floor."""
    frame = sample_rate * FRAME_MS // 1000
    n = len(pcm) // frame
    if n == 0:
        return 0.0
    frames = pcm[:n * frame].astype(np.float32).reshape(n, frame)
    rms = np.sqrt(np.mean(frames * frames, axis=1)) + 1e-3
    floor = float(np.percentile(rms, 10))
    threshold = max(floor * 10 ** (config.floor_ratio_db / 20), 32768 * 10 ** (config.absolute_dbfs / 20))
    return float(np.count_nonzero(rms > threshold) * FRAME_MS)


def keep(decoded: Decoded, speech: float, config: GateConfig) -> bool:
    """Whether a decoded turn is taken as what the caller said."""
    if not decoded.text.strip():
        return False
    if decoded.no_speech_prob > config.no_speech_prob and decoded.avg_logprob < config.logprob:
        return False
    if decoded.no_speech_prob > config.doubt_no_speech_prob and decoded.avg_logprob < config.doubt_logprob:
        return False
    return not (speech < config.little_speech_ms and decoded.avg_logprob < config.unsure_logprob)
