"""A phone-number set from real single-digit recordings: digit words of a manifest (e.g. Speech
Commands' "zero" ... "nine") trimmed to their speech and joined, with short pauses, into 7 to 11 digit
sequences read as a caller reads a phone number.

Sequences come first from speakers who recorded many digits (one voice per number, as on a call), then
from mixed speakers at a common level. Deterministic for a seed; writes 8 kHz WAVs and a `file,text`
manifest for `autospeak bench stt --manifest`.

    python -m evals.stt.digit_sequences /work/shared/speech-dev/manifest.csv OUT_DIR [--count 60]
"""

from __future__ import annotations

import argparse
import csv
import wave
from collections import defaultdict
from pathlib import Path

import numpy as np

from evals.stt.phone_path import read_wav
from evals.stt.scoring import DIGIT_WORDS

RATE = 8000
FRAME = 160  # 20 ms
PAD_S = 0.06  # kept either side of a word's loud part
TARGET_RMS = 3000.0  # mixed-speaker words are brought to one level (~-21 dBFS)


def trim(pcm: np.ndarray) -> np.ndarray:
    """The part of a clip from its first to its last frame within 25 dB of its loudest frame, padded."""
    n = len(pcm) // FRAME
    if n == 0:
        return pcm
    rms = np.sqrt(np.mean(pcm[:n * FRAME].astype(np.float64).reshape(n, FRAME) ** 2, axis=1)) + 1.0
    loud = np.flatnonzero(rms > rms.max() * 10 ** (-25 / 20))
    pad = int(PAD_S * RATE)
    return pcm[max(0, loud[0] * FRAME - pad):min(len(pcm), (loud[-1] + 1) * FRAME + pad)]


def _level(pcm: np.ndarray, rms: float) -> np.ndarray:
    x = pcm.astype(np.float64)
    current = np.sqrt(np.mean(x ** 2)) or 1.0
    return np.clip(x * rms / current, -32768, 32767).astype(np.int16)


def _join(words: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """Words with pauses of 80-250 ms, a longer one (350-600 ms) between groups, at low line noise."""
    groups = {3, 6} if len(words) >= 9 else {3}
    parts = []
    for i, w in enumerate(words):
        if i:
            pause = rng.uniform(0.35, 0.6) if i in groups else rng.uniform(0.08, 0.25)
            parts.append(rng.normal(0, 6, int(pause * RATE)))
        parts.append(w.astype(np.float64))
    return np.clip(np.concatenate(parts), -32768, 32767).astype(np.int16)


def build(manifest: Path, out: Path, count: int = 60, seed: int = 0) -> list[tuple[str, str]]:
    """Writes `count` sequences to `out` (WAVs + manifest.csv); returns (file, text) rows."""
    by_speaker: dict[str, dict[str, list[np.ndarray]]] = defaultdict(lambda: defaultdict(list))
    every: dict[str, list[np.ndarray]] = defaultdict(list)
    with manifest.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            word = row["text"].strip().lower()
            if word not in DIGIT_WORDS or word in ("o", "oh"):
                continue
            pcm, rate = read_wav(manifest.parent / row["file"])
            if rate != RATE:
                raise ValueError(f"{row['file']}: expected {RATE} Hz, got {rate}")
            clip = trim(pcm)
            by_speaker[row.get("speaker") or row["file"]][word].append(clip)
            every[word].append(_level(clip, TARGET_RMS))
    if not every:
        raise ValueError(f"{manifest}: no digit words")
    rng = np.random.default_rng(seed)
    voices = sorted(s for s, words in by_speaker.items() if len(words) >= 6)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for k in range(count):
        length = int(rng.integers(7, 12))
        if k < count // 2 and voices:
            bank = by_speaker[voices[k % len(voices)]]
        else:
            bank = every
        names = sorted(bank)
        chosen = [names[int(rng.integers(len(names)))] for _ in range(length)]
        clips = [bank[w][int(rng.integers(len(bank[w])))] for w in chosen]
        name = f"digits_{k:03d}.wav"
        with wave.open(str(out / name), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(RATE)
            w.writeframes(_join(clips, rng).tobytes())
        rows.append((name, " ".join(chosen)))
    with (out / "manifest.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "text"])
        writer.writerows(rows)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m evals.stt.digit_sequences",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("manifest", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--count", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rows = build(args.manifest, args.out, args.count, args.seed)
    print(f"{len(rows)} sequences in {args.out / 'manifest.csv'}")


if __name__ == "__main__":
    main()
