"""End-of-turn cases from real speech (the speech-dev set: 8 kHz recordings with transcripts).

Three kinds of case, each a caller stream with its ground truth:
- complete: a whole recording, then silence. The turn should end soon after the speech does.
- paused: a read sentence split at its deepest internal gap (a word boundary or a breath), with a
  pause of 400-900 ms inserted there. Ending the turn during that pause cuts the caller off.
- digits: six spoken digits from Speech Commands as "0 7 7 ... 9 1 2", short gaps inside each
  group and a 400-900 ms pause between the groups.
Only recordings whose transcript ends a sentence (or has no punctuation) count as complete: many
LJ Speech clips are fragments ending in a comma, and a caller who stops there is not done.
"""

from __future__ import annotations

import csv
import os
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

RATE = 8000
FRAME = RATE // 50  # 20 ms
DEFAULT_MANIFEST = Path(os.environ.get("AUTOSPEAK_SPEECH_DEV", "/work/shared/speech-dev")) / "manifest.csv"
DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
SEED = 20261203


@dataclass(frozen=True)
class Case:
    name: str
    kind: str  # complete | paused | digits
    pcm: np.ndarray  # int16 at 8 kHz, trailing silence included
    speech_end: int  # sample index where the caller's speech really ends
    pauses: tuple[tuple[int, int], ...]  # mid-utterance pauses [start, end) in samples


@dataclass(frozen=True)
class Clip:
    file: Path
    text: str
    speaker: str


def read_manifest(path: Path) -> list[Clip]:
    if not path.is_file():
        raise FileNotFoundError(f"no manifest at {path} (set AUTOSPEAK_SPEECH_DEV or pass --manifest)")
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    missing = {"file", "text", "speaker"} - set(rows[0] if rows else {})
    if missing:
        raise ValueError(f"{path}: manifest lacks the columns {sorted(missing)}")
    return [Clip(path.parent / r["file"], r["text"], r["speaker"]) for r in rows]


def load(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        if w.getframerate() != RATE or w.getnchannels() != 1 or w.getsampwidth() != 2:
            raise ValueError(f"{path}: expected 8 kHz mono 16-bit audio")
        return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)


def frame_db(pcm: np.ndarray) -> np.ndarray:
    n = len(pcm) // FRAME
    frames = pcm[: n * FRAME].astype(np.float64).reshape(n, FRAME)
    return 10 * np.log10(np.mean(frames**2, axis=1) + 1.0)


def trim(pcm: np.ndarray, range_db: float = 35.0) -> np.ndarray:
    """The clip from its first to its last frame within range_db of its loudest."""
    db = frame_db(pcm)
    voiced = np.flatnonzero(db >= db.max() - range_db)
    return pcm[voiced[0] * FRAME: (voiced[-1] + 1) * FRAME]


def deepest_gap(pcm: np.ndarray, min_side_s: float = 0.5) -> int | None:
    """A split point at the quietest 60 ms between the sentence's first and last min_side_s."""
    db = frame_db(pcm)
    smooth = np.convolve(db, np.ones(3) / 3, mode="same")
    side = int(min_side_s * 50)
    if len(smooth) <= 2 * side + 3:
        return None
    i = side + int(np.argmin(smooth[side:-side]))
    return i * FRAME


def ends_a_sentence(text: str) -> bool:
    t = text.strip().rstrip('"\')')
    return not t or t[-1] not in ",;:-"


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * RATE), dtype=np.int16)


def build(manifest: Path = DEFAULT_MANIFEST, *, words_per_kind: int = 2, n_digit_cases: int = 20,
          tail_s: float = 2.5) -> list[Case]:
    clips = read_manifest(manifest)
    rng = np.random.default_rng(SEED)
    cases: list[Case] = []
    sentences = [c for c in clips if not c.speaker.startswith("sc-")]
    by_word: dict[str, list[Clip]] = {}
    for c in clips:
        if c.speaker.startswith("sc-"):
            by_word.setdefault(c.text.strip().lower(), []).append(c)
    for c in sentences:
        speech = trim(load(c.file))
        if ends_a_sentence(c.text):
            cases.append(Case(c.file.stem, "complete", np.concatenate([speech, silence(tail_s)]),
                              len(speech), ()))
        cut = deepest_gap(speech)
        if cut is None:
            continue
        gap = silence(rng.uniform(0.4, 0.9))
        pcm = np.concatenate([speech[:cut], gap, speech[cut:], silence(tail_s)])
        cases.append(Case(c.file.stem, "paused", pcm, len(speech) + len(gap), ((cut, cut + len(gap)),)))
    for word in sorted(by_word):  # single words (yes, no, stop, ...) are complete turns too
        for c in by_word[word][:words_per_kind]:
            speech = trim(load(c.file))
            cases.append(Case(c.file.stem, "complete", np.concatenate([speech, silence(tail_s)]),
                              len(speech), ()))
    digit_clips = {w: [trim(load(c.file)) for c in by_word.get(w, [])] for w in DIGITS}
    digit_clips = {w: v for w, v in digit_clips.items() if v}
    if digit_clips:
        for k in range(n_digit_cases):
            cases.append(_digit_case(k, digit_clips, rng, tail_s))
    return cases


def _digit_case(k: int, clips: dict[str, list[np.ndarray]], rng: np.random.Generator,
                tail_s: float) -> Case:
    words = list(clips)
    parts: list[np.ndarray] = []
    pause: tuple[int, int] = (0, 0)
    for i in range(6):
        if i == 3:
            start = sum(len(p) for p in parts)
            parts.append(silence(rng.uniform(0.4, 0.9)))
            pause = (start, start + len(parts[-1]))
        elif i:
            parts.append(silence(rng.uniform(0.05, 0.15)))
        options = clips[words[rng.integers(len(words))]]
        parts.append(options[rng.integers(len(options))])
    speech = np.concatenate(parts)
    return Case(f"digits-{k}", "digits", np.concatenate([speech, silence(tail_s)]), len(speech), (pause,))
