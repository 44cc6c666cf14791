"""Whisper-style log-mel features, as the smart-turn end-of-turn model expects them.

16 kHz audio, an 8 s window (128 000 samples) zero-padded at the front, the waveform scaled to
zero mean and unit variance, a 400-point periodic-Hann STFT every 160 samples (centred, reflect
padding), power through an 80-band Slaney mel filterbank, log10 with a floor, the dynamic range
clipped to 8 decades, then scaled as Whisper does. Result: float32 (80, 800).
"""

from __future__ import annotations

from functools import cache

import numpy as np

RATE = 16_000
WINDOW_S = 8
WINDOW_SAMPLES = RATE * WINDOW_S
N_FFT = 400
HOP = 160
N_MELS = 80


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney mel scale: linear below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz * 3.0 / 200.0
    log_part = 15.0 + np.log(np.maximum(hz, 1e-9) / 1000.0) * (27.0 / np.log(6.4))
    return np.where(hz >= 1000.0, log_part, linear)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    linear = mel * 200.0 / 3.0
    log_part = 1000.0 * np.exp((mel - 15.0) * (np.log(6.4) / 27.0))
    return np.where(mel >= 15.0, log_part, linear)


@cache
def mel_filterbank() -> np.ndarray:
    """(N_MELS, N_FFT//2 + 1) triangular filters, each scaled to equal area (Slaney norm)."""
    bins = np.fft.rfftfreq(N_FFT, d=1.0 / RATE)
    edges = _mel_to_hz(np.linspace(0.0, float(_hz_to_mel(np.array(RATE / 2.0))), N_MELS + 2))
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins[None, :] - lower) / (centre - lower)
    falling = (upper - bins[None, :]) / (upper - centre)
    tri = np.maximum(0.0, np.minimum(rising, falling))
    return tri * (2.0 / (edges[2:] - edges[:-2]))[:, None]


def fit_window(audio: np.ndarray) -> np.ndarray:
    """The last 8 s of 16 kHz float audio, zero-padded at the front when shorter."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        raise ValueError(f"expected mono audio (1-D), got shape {audio.shape}")
    if audio.size >= WINDOW_SAMPLES:
        return audio[-WINDOW_SAMPLES:]
    return np.concatenate([np.zeros(WINDOW_SAMPLES - audio.size, dtype=np.float32), audio])


def log_mel(audio: np.ndarray) -> np.ndarray:
    """Features of one window (see the module docstring); `audio` is 16 kHz float in [-1, 1]."""
    x = fit_window(audio)
    x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
    padded = np.pad(x.astype(np.float64), N_FFT // 2, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP]
    hann = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(N_FFT) / N_FFT)
    power = np.abs(np.fft.rfft(frames * hann, axis=-1)) ** 2  # (frames, bins)
    mel = np.log10(np.maximum(mel_filterbank() @ power.T, 1e-10))[:, :-1]  # the last frame is dropped
    mel = np.maximum(mel, mel.max() - 8.0)
    return ((mel + 4.0) / 4.0).astype(np.float32)
