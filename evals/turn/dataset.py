"""End-of-turn cases from real speech (the speech-dev set: 8 kHz recordings with transcripts).

Three kinds of case, each a caller stream with its ground truth:
- complete: a whole recording, then silence. The turn should end soon after the speech does.
- paused: a read sentence split at its deepest internal gap (a word boundary or a breath), with a
  pause inserted there (PAUSES_S in turn: 0.4, 0.7 or 1.0 s). Ending the turn during that pause
  cuts the caller off.
- digits: six spoken digits from Speech Commands in one speaker's voice as "0 7 7 ... 9 1 2",
  short gaps inside each group and a pause of one of PAUSES_S between the groups. (Each digit was
  recorded alone, so it ends with a falling, final-sounding pitch: harder than a caller who
  reads a number out.)
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
# The inserted mid-turn pauses, in turn: how long a caller may stop inside a sentence or a number.
PAUSES_S = (0.4, 0.7, 1.0)
MIN_WORD_S = 0.15  # shorter "words" are clipped recordings, not something a caller says


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


def trim(pcm: np.ndarray, range_db: float = 35.0, above_floor_db: float = 12.0) -> np.ndarray:
    """The clip from its first to its last frame of speech: within range_db of its loudest frame and
    above_floor_db over its noise floor (its 10th-percentile frame). Many Speech Commands clips carry
    room noise within 35 dB of the word; without the floor rule their "speech" would be the whole
    second and a turn ending after the word would count as a cut-off."""
    db = frame_db(pcm)
    floor = float(np.percentile(db, 10))
    threshold = max(db.max() - range_db, min(floor + above_floor_db, db.max() - 6.0))
    voiced = np.flatnonzero(db >= threshold)
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


def build(manifest: Path = DEFAULT_MANIFEST, *, words_per_kind: int = 2, n_digit_cases: int = 21,
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
        gap = silence(PAUSES_S[sum(k.kind == "paused" for k in cases) % len(PAUSES_S)])
        pcm = np.concatenate([speech[:cut], gap, speech[cut:], silence(tail_s)])
        cases.append(Case(c.file.stem, "paused", pcm, len(speech) + len(gap), ((cut, cut + len(gap)),)))
    for word in sorted(by_word):  # single words (yes, no, stop, ...) are complete turns too
        words = [(c, trim(load(c.file))) for c in by_word[word]]
        for c, speech in [w for w in words if len(w[1]) >= MIN_WORD_S * RATE][:words_per_kind]:
            cases.append(Case(c.file.stem, "complete", np.concatenate([speech, silence(tail_s)]),
                              len(speech), ()))
    digit_voices = _digit_voices(clips)
    for k in range(n_digit_cases if digit_voices else 0):
        cases.append(_digit_case(k, digit_voices[k % len(digit_voices)], rng, tail_s))
    return cases


def _digit_voices(clips: list[Clip], min_digits: int = 4) -> list[dict[str, list[np.ndarray]]]:
    """Per Speech Commands speaker who said at least `min_digits` different digits: their clips by
    digit, trimmed close (20 dB) so that the gaps between digits are the inserted ones."""
    voices: dict[str, dict[str, list[np.ndarray]]] = {}
    for c in clips:
        word = c.text.strip().lower()
        if c.speaker.startswith("sc-") and word in DIGITS:
            voices.setdefault(c.speaker, {}).setdefault(word, []).append(trim(load(c.file), 20.0))
    return [voices[s] for s in sorted(voices) if len(voices[s]) >= min_digits]


def _digit_case(k: int, clips: dict[str, list[np.ndarray]], rng: np.random.Generator,
                tail_s: float) -> Case:
    """Six digits in one voice, two groups of three: 100-250 ms between digits, a longer pause
    between the groups."""
    words = sorted(clips)
    parts: list[np.ndarray] = []
    pause: tuple[int, int] = (0, 0)
    for i in range(6):
        if i == 3:
            start = sum(len(p) for p in parts)
            parts.append(silence(PAUSES_S[k % len(PAUSES_S)]))
            pause = (start, start + len(parts[-1]))
        elif i:
            parts.append(silence(rng.uniform(0.1, 0.25)))
        options = clips[words[rng.integers(len(words))]]
        parts.append(options[rng.integers(len(options))])
    speech = np.concatenate(parts)
    return Case(f"digits-{k}", "digits", np.concatenate([speech, silence(tail_s)]), len(speech), (pause,))


# Line conditions: faint line noise only, then noise of a kind in turn (evals.vad.dataset) at an SNR.
NOISE_VARIANTS: tuple[tuple[str, float | None], ...] = (
    ("quiet line", None), ("20 dB", 20.0), ("10 dB", 10.0))
NOISE_KINDS = ("pink", "car", "hum", "clicks", "white", "brown")
LINE_RMS = 25.0  # faint line noise, as on a quiet phone line
LEAD_S = 0.5  # the line before the caller speaks (the VAD learns its noise floor there)


def on_the_line(case: Case, snr_db: float | None, index: int) -> Case:
    """The case as the carrier delivers it: LEAD_S of line first, faint line noise throughout, and
    at `snr_db` (speech power over its voiced frames against the noise's) noise of a kind chosen
    by `index`. Times shift by the lead."""
    from evals.vad.dataset import make_noise

    rng = np.random.default_rng(SEED + index + int(snr_db or 0))
    lead = int(LEAD_S * RATE)
    x = np.concatenate([np.zeros(lead), case.pcm.astype(np.float64)])
    x += rng.normal(0.0, LINE_RMS, len(x))
    if snr_db is not None:
        voiced = case.pcm[: case.speech_end]
        db = frame_db(voiced)
        frames = voiced[: len(db) * FRAME].astype(np.float64).reshape(len(db), FRAME)[db >= db.max() - 35.0]
        speech_rms = float(np.sqrt(np.mean(frames**2)))
        kind = NOISE_KINDS[index % len(NOISE_KINDS)]
        x += make_noise(kind, len(x), RATE, rng) * speech_rms / 10 ** (snr_db / 20)
    pcm = np.clip(np.round(x), -32768, 32767).astype(np.int16)
    return Case(case.name, case.kind, pcm, case.speech_end + lead,
                tuple((s + lead, e + lead) for s, e in case.pauses))
