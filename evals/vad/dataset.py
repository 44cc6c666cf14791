"""A labelled VAD set built offline: eSpeak NG sentences placed in silence, mixed with non-speech noise.

Labels come by construction, one per 10 ms frame: speech where the clean clip's frame energy is within
SPEECH_RANGE_DB of the clip's loudest frame (so pauses between words count as non-speech). Every clip starts
on a frame boundary, so the same labels hold at 8 kHz and 16 kHz.

Two versions of every mix: 16 kHz wideband, and 8 kHz telephone band (media_core resampler, then a G.711
mu-law round trip, as a carrier delivers it). Noise is mixed before the codec, as it would be at the caller.
The result is cached under a directory keyed by VERSION and a digest of the recipe.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import media_core
from cells.speech.espeak import EspeakEngine

VERSION = "2"
SEED = 20240611
RATES = (8000, 16000)
FRAME_MS = 10
SPEECH_RANGE_DB = 35.0
SNRS: tuple[float | None, ...] = (None, 20.0, 10.0, 5.0, 0.0)  # None: clean (no noise added)
NOISE_KINDS = ("white", "pink", "brown", "hum", "clicks", "car")
N_TRACKS = 6  # = len(NOISE_KINDS): with the rotation below, every SNR meets every kind once

SENTENCES = (
    "Hello, thank you for calling. How can I help you today?",
    "I'd like to book a table for four people on Friday evening.",
    "Could you please tell me your date of birth?",
    "The appointment is confirmed for Tuesday at half past two.",
    "Yes, that's right.",
    "No, I don't think so, sorry.",
    "My account number is seven three nine, four two one, eight.",
    "Can I speak to someone in the billing department, please?",
    "We have a double room available from the twelfth to the fifteenth.",
    "Is breakfast included in the price?",
    "I'm calling about the software engineering position you advertised.",
    "I have five years of experience with distributed systems.",
    "Please hold while I transfer you to a colleague.",
    "Would you like me to send a confirmation by text message?",
    "The weather has been terrible all week, hasn't it?",
    "Okay.",
    "Sorry, could you repeat that a little more slowly?",
    "My flight lands at nine forty in the morning.",
    "We close at six on weekdays and at noon on Saturdays.",
    "Your total comes to one hundred and twenty eight dollars.",
    "I need to cancel my reservation for next Monday.",
    "Actually, wait. Let me check my calendar first.",
    "The parking garage is on the left, just past the main entrance.",
    "Thanks so much, you've been very helpful. Goodbye!",
    "Hmm, I'm not sure. Maybe the afternoon would be better.",
    "Can you spell your surname for me, please?",
    "It's Smith. S, M, I, T, H.",
    "When would you be available for a second interview?",
    "Room service, please. I'd like to order some sandwiches.",
    "The doctor can see you on Thursday at ten fifteen.",
    "Right, and what is the best number to reach you on?",
    "Great, see you then.",
)

# (voice, rate wpm, pitch): accents, male and female variants, slow to brisk speakers.
VOICES = (
    ("en-us", 170, 50), ("en-gb", 150, 40), ("en-us+f3", 185, 65), ("en-gb+m3", 140, 35),
    ("en-us+f5", 200, 75), ("en-gb-x-rp+f2", 160, 60), ("en-us+m7", 175, 30), ("en-gb-scotland", 165, 45),
    ("en-029+f4", 150, 55), ("en-us-nyc+m2", 210, 45), ("en-us+klatt", 160, 50), ("en+f1", 135, 70),
)


@dataclass(frozen=True)
class Track:
    """One mixed track at one rate and SNR. `labels[k]` covers [10 k, 10 k + 10) ms."""

    name: str
    rate: int
    snr_db: float | None
    noise: str
    audio: np.ndarray  # int16, what the detectors see
    clean: np.ndarray  # int16, the speech alone (before noise and codec)
    labels: np.ndarray  # bool

    @property
    def seconds(self) -> float:
        return len(self.audio) / self.rate


def frame_len(rate: int) -> int:
    return rate * FRAME_MS // 1000


@functools.cache
def _resampler_delay(in_rate: int, out_rate: int) -> int:
    """Group delay of media_core's resampler in output samples, measured with an impulse."""
    r = media_core.Resampler(in_rate, out_rate)
    x = np.zeros(in_rate // 10, dtype=np.int16)
    x[in_rate // 20] = 16000
    y = np.concatenate([r.process(x), r.flush()]).astype(np.float64)
    return int(np.argmax(np.abs(y))) - round(len(x) // 2 * out_rate / in_rate)


def resample(x: np.ndarray, in_rate: int, out_rate: int) -> np.ndarray:
    """Whole-signal resampling with media_core, delay removed so that timing is kept."""
    if in_rate == out_rate:
        return x.copy()
    r = media_core.Resampler(in_rate, out_rate)
    y = np.concatenate([r.process(x), r.flush()])
    d = _resampler_delay(in_rate, out_rate)
    n = round(len(x) * out_rate / in_rate)
    return y[d : d + n]


def speech_labels(clean: np.ndarray, rate: int, range_db: float = SPEECH_RANGE_DB) -> np.ndarray:
    """Per 10 ms frame: energy within `range_db` of the loudest frame. A trailing partial frame is dropped."""
    n = frame_len(rate)
    frames = clean[: len(clean) // n * n].astype(np.float64).reshape(-1, n)
    energy_db = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-9)
    if energy_db.size == 0:
        return np.zeros(0, dtype=bool)
    return energy_db > energy_db.max() - range_db


def _shaped(n: int, rate: int, rng: np.random.Generator, exponent: float) -> np.ndarray:
    """Gaussian noise with power spectrum ~ 1/f**exponent (pink: 1, brown: 2), flat below 20 Hz."""
    spec = np.fft.rfft(rng.standard_normal(n))
    spec[0] = 0.0  # no DC offset
    f = np.maximum(np.fft.rfftfreq(n, 1 / rate), 20.0)
    return np.fft.irfft(spec / f ** (exponent / 2), n)


def _harmonics(t: np.ndarray, f0: np.ndarray | float, n: int, rolloff: float,
               rng: np.random.Generator) -> np.ndarray:
    phase = 2 * np.pi * np.cumsum(np.broadcast_to(f0, t.shape)) * (t[1] - t[0]) if t.size > 1 else t
    return sum(k**-rolloff * np.sin(k * phase + rng.uniform(0, 2 * np.pi)) for k in range(1, n + 1))


def make_noise(kind: str, n: int, rate: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS float noise of a non-speech kind (see NOISE_KINDS)."""
    t = np.arange(n) / rate
    if kind == "white":
        x = rng.standard_normal(n)
    elif kind == "pink":
        x = _shaped(n, rate, rng, 1.0)
    elif kind == "brown":
        x = _shaped(n, rate, rng, 2.0)
    elif kind == "hum":  # mains hum with a buzz of harmonics up to ~1 kHz
        f0 = rng.choice([50.0, 60.0])
        x = _harmonics(t, f0, int(1000 // f0), 0.7, rng) * (1 + 0.1 * np.sin(2 * np.pi * 0.3 * t))
        x = x / np.std(x) + 0.01 * rng.standard_normal(n)
    elif kind == "clicks":  # a quiet hiss with clicks and short noise bursts (handling, door, keyboard)
        x = 0.03 * rng.standard_normal(n)
        for start in rng.choice(n, size=max(1, int(3 * n / rate)), replace=False):
            length = int(rate * rng.uniform(0.002, 0.06))
            seg = rng.standard_normal(length) * np.exp(-np.arange(length) / (0.25 * length + 1))
            end = min(n, start + length)
            x[start:end] += rng.uniform(0.3, 3.0) * seg[: end - start]
    elif kind == "car":  # engine harmonics with a wandering rpm, road rumble, a little wind
        f0 = 30.0 + 8.0 * np.sin(2 * np.pi * 0.07 * t + rng.uniform(0, 6.3))
        engine = _harmonics(t, f0, 10, 1.0, rng)
        rumble = _shaped(n, rate, rng, 3.0)
        wind = _shaped(n, rate, rng, 1.0)
        x = engine / np.std(engine) + 2 * rumble / np.std(rumble) + 0.2 * wind / np.std(wind)
    else:
        raise ValueError(f"unknown noise kind {kind!r}")
    return (x / (np.sqrt(np.mean(x**2)) + 1e-12)).astype(np.float32)


def mix(clean: np.ndarray, noise: np.ndarray, snr_db: float | None, labels: np.ndarray,
        rate: int) -> np.ndarray:
    """clean + noise scaled to `snr_db` (speech power over labelled-speech frames vs mean noise power)."""
    x = clean.astype(np.float64)
    if snr_db is not None:
        n = frame_len(rate)
        active = np.repeat(labels, n)[: len(x)]
        p_speech = np.mean(x[: len(active)][active] ** 2)
        p_noise = np.mean(noise.astype(np.float64) ** 2)
        x = x + noise[: len(x)] * np.sqrt(p_speech / (10 ** (snr_db / 10) * p_noise))
    return np.clip(np.round(x), -32768, 32767).astype(np.int16)


def _phone(x: np.ndarray) -> np.ndarray:
    return media_core.ulaw_decode(media_core.ulaw_encode(x))


def _recipe_digest() -> str:
    recipe = [VERSION, SEED, RATES, FRAME_MS, SPEECH_RANGE_DB, SNRS, NOISE_KINDS, N_TRACKS, SENTENCES, VOICES]
    return hashlib.sha256(json.dumps(recipe).encode()).hexdigest()[:12]


def cache_dir() -> Path:
    root = os.environ.get("AUTOSPEAK_DATA_DIR") or os.path.join(tempfile.gettempdir(), "autospeak-data")
    return Path(root) / f"vad-v{VERSION}-{_recipe_digest()}"


@dataclass(frozen=True)
class _Clip:
    labels: np.ndarray  # bool per 10 ms frame
    audio: dict[int, np.ndarray]  # rate -> float samples, a whole number of frames


def _clips(rng: np.random.Generator) -> list[_Clip]:
    """Each sentence spoken once, voices assigned round-robin after a seeded shuffle, level randomised."""
    engine = EspeakEngine()
    order = rng.permutation(len(VOICES))
    clips = []
    for i, text in enumerate(SENTENCES):
        voice, rate_wpm, pitch = VOICES[order[i % len(VOICES)]]
        raw = engine.synthesize(text, voice=voice, rate_wpm=rate_wpm, pitch=pitch)
        per_rate = {sr: resample(raw, engine.sample_rate, sr).astype(np.float64) for sr in RATES}
        n16 = len(per_rate[16000]) // frame_len(16000)
        labels = speech_labels(per_rate[16000], 16000)
        level_db = rng.uniform(-32.0, -18.0)  # active-speech RMS, dBFS
        active = np.repeat(labels, frame_len(16000))
        gain = 32768 * 10 ** (level_db / 20) / np.sqrt(np.mean(per_rate[16000][: len(active)][active] ** 2))
        audio = {sr: (x * gain)[: n16 * frame_len(sr)] for sr, x in per_rate.items()}
        clips.append(_Clip(labels[:n16], audio))
    return clips


def _build(out: Path) -> None:
    rng = np.random.default_rng(SEED)
    clips = _clips(rng)
    arrays: dict[str, np.ndarray] = {}
    meta: list[dict[str, object]] = []
    order = rng.permutation(len(clips))
    for ti, members in enumerate(np.array_split(order, N_TRACKS)):
        # Layout in 10 ms frames: lead silence, clips separated by gaps, tail silence.
        gaps = [int(rng.integers(25, 200)) for _ in range(len(members) + 1)]
        n_frames = sum(gaps) + sum(len(clips[c].labels) for c in members)
        labels = np.zeros(n_frames, dtype=bool)
        clean = {sr: np.zeros(n_frames * frame_len(sr)) for sr in RATES}
        pos = gaps[0]
        for c, gap in zip(members, gaps[1:], strict=True):
            k = len(clips[c].labels)
            labels[pos : pos + k] = clips[c].labels
            for sr in RATES:
                fl = frame_len(sr)
                clean[sr][pos * fl : (pos + k) * fl] = clips[c].audio[sr]
            pos += k + gap
        arrays[f"t{ti}_labels"] = labels
        for sr in RATES:
            arrays[f"t{ti}_{sr}_clean"] = mix(clean[sr], np.zeros(0), None, labels, sr)
        noise16 = {kind: make_noise(kind, len(clean[16000]), 16000, rng) for kind in NOISE_KINDS}
        for si, snr in enumerate(SNRS):
            # Rotate kinds over tracks and SNRs so each kind meets every SNR and several speakers.
            kind = "none" if snr is None else NOISE_KINDS[(ti + si) % len(NOISE_KINDS)]
            for sr in RATES:
                noise = np.zeros(0) if snr is None else resample(noise16[kind], 16000, sr)
                audio = mix(clean[sr], noise, snr, labels, sr)
                arrays[f"t{ti}_{sr}_s{si}"] = _phone(audio) if sr == 8000 else audio
            meta.append({"track": ti, "snr_index": si, "noise": kind})
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=out.name + ".tmp"))
    np.savez(tmp / "tracks.npz", **arrays)
    (tmp / "meta.json").write_text(json.dumps({"version": VERSION, "mixes": meta}))
    try:
        tmp.rename(out)  # atomic publish; a concurrent builder that won the race is fine too
    except OSError:
        if not (out / "meta.json").exists():
            raise


def build(rebuild: bool = False) -> Path:
    """Build the set if it is not cached yet; returns the cache directory."""
    out = cache_dir()
    if rebuild and out.exists():
        for f in out.iterdir():
            f.unlink()
        out.rmdir()
    if not (out / "meta.json").exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        _build(out)
    return out


def load(rates: tuple[int, ...] = RATES, snrs: tuple[float | None, ...] = SNRS,
         max_tracks: int | None = None) -> list[Track]:
    """The labelled mixes (building them first if needed), ordered by rate, SNR, track."""
    out = build()
    meta = json.loads((out / "meta.json").read_text())["mixes"]
    with np.load(out / "tracks.npz") as data:
        tracks = []
        for sr in rates:
            for snr in snrs:
                si = SNRS.index(snr)
                for m in meta:
                    ti = m["track"]
                    if m["snr_index"] != si or (max_tracks is not None and ti >= max_tracks):
                        continue
                    tracks.append(Track(name=f"t{ti}", rate=sr, snr_db=snr, noise=m["noise"],
                                        audio=data[f"t{ti}_{sr}_s{si}"], clean=data[f"t{ti}_{sr}_clean"],
                                        labels=data[f"t{ti}_labels"]))
    return tracks


# --- real speech from a manifest -------------------------------------------------------------------

MANIFEST_SNRS: tuple[float | None, ...] = (None, 20.0, 10.0, 5.0)
MANIFEST_RATE = 8000
# Real recordings carry their own room noise: a frame is speech when it is within SPEECH_RANGE_DB of the
# clip's loudest frame AND at least FLOOR_MARGIN_DB above the clip's own noise floor (10th percentile).
FLOOR_MARGIN_DB = 12.0


def _read_wav(path: Path) -> tuple[np.ndarray, int]:
    import wave

    with wave.open(str(path)) as w:
        if w.getsampwidth() != 2 or w.getnchannels() != 1:
            raise ValueError(f"{path}: expected mono 16-bit PCM")
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2"), w.getframerate()


def real_speech_labels(clean: np.ndarray, rate: int) -> np.ndarray:
    n = frame_len(rate)
    frames = clean[: len(clean) // n * n].astype(np.float64).reshape(-1, n)
    energy_db = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-9)
    if energy_db.size == 0:
        return np.zeros(0, dtype=bool)
    floor = np.percentile(energy_db, 10)
    return (energy_db > energy_db.max() - SPEECH_RANGE_DB) & (energy_db > floor + FLOOR_MARGIN_DB)


def load_manifest(manifest: Path | str, snrs: tuple[float | None, ...] = MANIFEST_SNRS,
                  max_clips: int | None = None, n_tracks: int = N_TRACKS) -> list[Track]:
    """Labelled 8 kHz telephone-band mixes (G.711 mu-law round trip) of the real recordings a manifest lists.

    The manifest is a CSV with a `file` column (mono 16-bit WAV, relative to the manifest's folder). Clips
    are resampled to 8 kHz, levelled to a random active-speech level, laid end to end with 0.25-2 s gaps and
    mixed with the non-speech noise kinds at each SNR, as for the eSpeak set. Built in memory (no cache).
    """
    import csv

    manifest = Path(manifest)
    with manifest.open(newline="") as f:
        files = [row["file"] for row in csv.DictReader(f)]
    if not files:
        raise ValueError(f"{manifest}: no rows with a `file` column")
    rng = np.random.default_rng(SEED)
    files = [files[i] for i in rng.permutation(len(files))][:max_clips]
    rate, fl = MANIFEST_RATE, frame_len(MANIFEST_RATE)
    clips: list[tuple[np.ndarray, np.ndarray]] = []
    for name in files:
        pcm, sr = _read_wav(manifest.parent / name)
        x = resample(pcm, sr, rate).astype(np.float64)
        labels = real_speech_labels(x, rate)
        if not labels.any():
            continue
        x = x[: len(labels) * fl]
        active = np.repeat(labels, fl)
        level_db = rng.uniform(-32.0, -18.0)
        clips.append((x * 32768 * 10 ** (level_db / 20) / np.sqrt(np.mean(x[active] ** 2)), labels))
    tracks = []
    for ti, members in enumerate(np.array_split(np.arange(len(clips)), min(n_tracks, len(clips)))):
        gaps = [int(rng.integers(25, 200)) for _ in range(len(members) + 1)]
        n_frames = sum(gaps) + sum(len(clips[c][1]) for c in members)
        labels = np.zeros(n_frames, dtype=bool)
        clean = np.zeros(n_frames * fl)
        pos = gaps[0]
        for c, gap in zip(members, gaps[1:], strict=True):
            x, lab = clips[c]
            labels[pos : pos + len(lab)] = lab
            clean[pos * fl : pos * fl + len(x)] = x
            pos += len(lab) + gap
        clean16 = mix(clean, np.zeros(0), None, labels, rate)
        for si, snr in enumerate(snrs):
            kind = "none" if snr is None else NOISE_KINDS[(ti + si) % len(NOISE_KINDS)]
            noise = np.zeros(0) if snr is None else make_noise(kind, len(clean), rate, rng)
            audio = _phone(mix(clean, noise, snr, labels, rate))
            tracks.append(Track(name=f"m{ti}", rate=rate, snr_db=snr, noise=kind, audio=audio, clean=clean16,
                                labels=labels))
    return tracks
