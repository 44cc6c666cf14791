"""A recording as a phone call delivers it to the recogniser: resampled to 8 kHz, optional line noise at
a signal-to-noise ratio, G.711 mu-law, optional packet loss concealed by the media core's jitter buffer,
the quiet line before and after the turn (the VAD's pre-roll and hangover), then 16 kHz for STT.
"""

from __future__ import annotations

import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import media_core

PHONE_RATE = 8000
FRAME = 160  # 20 ms packets at 8 kHz
LINE_NOISE = 8.0  # std of the quiet line (about -72 dBFS)


@dataclass(frozen=True)
class Variant:
    name: str
    snr_db: float | None = None
    loss: float = 0.0


def parse_variant(name: str) -> Variant:
    """"clean", "noiseNN" (white noise NN dB below the speech), "lossN" (N % of 20 ms packets lost)."""
    try:
        if name == "clean":
            return Variant(name)
        if name.startswith("noise"):
            return Variant(name, snr_db=float(name[5:]))
        if name.startswith("loss"):
            return Variant(name, loss=float(name[4:]) / 100)
    except ValueError:
        pass
    raise ValueError(f"unknown variant {name!r}: expected clean, noiseNN (SNR dB) or lossN (percent)")


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """Mono int16 samples and rate of a 16-bit PCM WAV (channels are averaged)."""
    try:
        with wave.open(str(path), "rb") as w:
            if w.getsampwidth() != 2:
                width = w.getsampwidth()
                raise ValueError(f"{path}: only 16-bit PCM WAV is supported (sample width {width})")
            pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
            channels, rate = w.getnchannels(), w.getframerate()
    except (wave.Error, EOFError) as exc:
        raise ValueError(f"{path}: not a readable WAV file ({exc})") from exc
    if channels > 1:
        pcm = pcm.reshape(-1, channels).mean(axis=1)
    return pcm.astype(np.int16), rate


def _resample(pcm: np.ndarray, src: int, dst: int) -> np.ndarray:
    if src == dst:
        return pcm.astype(np.int16)
    r = media_core.Resampler(src, dst)
    return np.concatenate([r.process(pcm.astype(np.int16)), r.flush()])


def _add_noise(pcm: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    x = pcm.astype(np.float64)
    level = np.sqrt(np.mean(x[np.abs(x) > 0.1 * np.abs(x).max()] ** 2)) if np.any(x) else 0.0
    noise = rng.normal(0, level * 10 ** (-snr_db / 20), len(x))
    return np.clip(x + noise, -32768, 32767).astype(np.int16)


def _lose_packets(pcm: np.ndarray, loss: float, rng: np.random.Generator) -> np.ndarray:
    """Drops packets at random and plays the rest through the jitter buffer, which conceals the gaps."""
    n = len(pcm) // FRAME
    lost = rng.random(n) < loss
    jb = media_core.JitterBuffer(sample_rate=PHONE_RATE, frame_ms=20)
    out = []
    for tick in range(n + 5):
        if tick < n and not lost[tick]:
            jb.push(tick % 65536, (tick * FRAME) % 2**32, pcm[tick * FRAME:(tick + 1) * FRAME], tick * 20.0)
        frame, _kind = jb.pop(tick * 20.0)
        out.append(frame)
    return np.concatenate(out).astype(np.int16)


def phone_audio(pcm: np.ndarray, rate: int, variant: Variant, rng: np.random.Generator,
                stt_rate: int = 16000) -> np.ndarray:
    """`pcm` at `rate` as the recogniser of a call hears it, at `stt_rate`."""
    narrow = _resample(pcm, rate, PHONE_RATE)
    if variant.snr_db is not None:
        narrow = _add_noise(narrow, variant.snr_db, rng)
    line = rng.normal(0, LINE_NOISE, PHONE_RATE * 7 // 10).astype(np.int16)
    narrow = np.concatenate([line[:PHONE_RATE * 4 // 10], narrow, line[PHONE_RATE * 4 // 10:]])
    narrow = media_core.ulaw_decode(media_core.ulaw_encode(narrow))
    if variant.loss > 0:
        narrow = _lose_packets(narrow, variant.loss, rng)
    return _resample(narrow, PHONE_RATE, stt_rate)
