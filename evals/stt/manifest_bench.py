"""STT bench on a manifest of recordings (`autospeak bench stt --manifest FILE.csv`).

The manifest is a CSV with columns `file,text` (more columns are allowed; paths are relative to the CSV).
Every recording goes through the phone path (phone_path.py) in each variant, is streamed to each provider
in 20 ms frames and finalised with an `EndOfTurn`, as the call loop does. Per provider and variant: word
error rate on normalised text, digit accuracy where the reference is digits (whole sequence, and single
digits), mean and 95th percentile processing time per utterance, and real-time factor.

A provider is given as `name[+hints|+digits][:key=value;...]`: `+hints` sends EndOfTurn(hint="digits") on
utterances whose reference is digits (the agent asked for a number); `+digits` sends it on every
utterance (the worst case of a caller who answers a request for a number with something else);
`+yes_no`, `+name`, `+date` or `+time` send that hint on every utterance (what a word-answer constraint
costs a caller who says something else; a name constraint needs the agent's names, e.g.
`whisper+name:domain={"names": ["sarah green"]}`). Options go to the provider's factory (values are
read as JSON where they parse, e.g. `whisper:min_window_s=30;beam_size=5`).
"""

from __future__ import annotations

import asyncio
import csv
import json
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cells.providers import registry
from cells.providers.base import EndOfTurn, Frame
from evals.stt import scoring
from evals.stt.phone_path import Variant, parse_variant, phone_audio, read_wav
from evals.stt.wer import edit_distance

FRAME = 320  # 20 ms at 16 kHz
WORD_HINTS = ("yes_no", "name", "date", "time")


@dataclass(frozen=True)
class Clip:
    path: Path
    text: str


@dataclass(frozen=True)
class ProviderSpec:
    label: str
    name: str
    hints: bool = False
    every: bool = False  # the digits hint on every utterance, not only on digit references
    every_hint: str | None = None  # another hint (yes_no, name, date, time) sent on every utterance
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Score:
    errors: int = 0
    words: int = 0
    digit_right: int = 0
    digit_total: int = 0
    single_right: int = 0
    single_total: int = 0
    costs: list[float] = field(default_factory=list)
    audio_s: float = 0.0
    examples: list[tuple[str, str]] = field(default_factory=list)

    def add(self, reference: str, hypothesis: str, cost_s: float, audio_s: float) -> None:
        ref, hyp = scoring.words(reference), scoring.words(hypothesis)
        self.errors += edit_distance(ref, hyp)
        self.words += len(ref)
        digits = scoring.reference_digits(reference)
        if digits is not None:
            right = scoring.hypothesis_digits(hypothesis) == digits
            self.digit_total += 1
            self.digit_right += right
            if len(digits) == 1:
                self.single_total += 1
                self.single_right += right
        self.costs.append(cost_s)
        self.audio_s += audio_s
        self.examples.append((reference, hypothesis))


def load_manifest(path: Path, limit: int | None = None) -> list[Clip]:
    """Clips of a `file,text` CSV; a missing column or file is an error naming the line."""
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not {"file", "text"} <= set(reader.fieldnames):
            raise ValueError(f"{path}: the manifest needs the columns file,text (got {reader.fieldnames})")
        clips = []
        for line, row in enumerate(reader, start=2):
            audio = (path.parent / row["file"]).resolve()
            if not audio.is_file():
                raise ValueError(f"{path}:{line}: no such audio file {row['file']!r}")
            clips.append(Clip(audio, row["text"] or ""))
            if limit is not None and len(clips) >= limit:
                break
    return clips


def parse_provider(spec: str) -> ProviderSpec:
    head, _, opts = spec.strip().partition(":")
    name, _, flag = head.partition("+")
    if flag not in ("", "hints", "digits", *WORD_HINTS) or not name:
        raise ValueError(f"bad provider {spec!r}: expected name[+hints|+digits|+{'|+'.join(WORD_HINTS)}]"
                         "[:key=value;...]")
    options: dict[str, Any] = {}
    for item in filter(None, opts.split(";")):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"bad provider option {item!r} in {spec!r}: expected key=value")
        try:
            options[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            options[key.strip()] = value
    return ProviderSpec(spec.strip(), name, hints=flag in ("hints", "digits"), options=options,
                        every=flag == "digits", every_hint=flag if flag in WORD_HINTS else None)


async def _frames(audio: np.ndarray, hint: str | None) -> AsyncIterator[Frame]:
    for i in range(0, len(audio), FRAME):
        yield audio[i:i + FRAME]
    yield EndOfTurn(hint)


async def _recognise(stt: Any, audio: np.ndarray, hint: str | None) -> tuple[str, float]:
    started = time.perf_counter()
    final = ""
    async for t in stt.stream(_frames(audio, hint)):
        if t.is_final:
            final = t.text
    return final, time.perf_counter() - started


async def _run_provider(spec: ProviderSpec, audio: dict[str, list[tuple[Clip, np.ndarray]]],
                        stt_rate: int) -> dict[str, Score]:
    config = registry.ProviderConfig(defaults={"stt": {"provider": spec.name, "options": spec.options}})
    stt = registry.build("stt", config)
    if stt.sample_rate != stt_rate:
        raise ValueError(f"{spec.label}: expects {stt.sample_rate} Hz; the bench feeds {stt_rate} Hz")
    warm = getattr(stt, "warm_up", None)
    if warm is not None:
        await warm()  # loading the model is not decoding
    scores: dict[str, Score] = {}
    for variant, items in audio.items():
        score = scores.setdefault(variant, Score())
        for i, (clip, pcm) in enumerate(items, start=1):
            digits = spec.every or (spec.hints and scoring.reference_digits(clip.text) is not None)
            text, cost = await _recognise(stt, pcm, "digits" if digits else spec.every_hint)
            score.add(clip.text, text, cost, len(pcm) / stt_rate)
            if i % 25 == 0 or i == len(items):
                print(f"  {spec.label} {variant}: {i}/{len(items)}", file=sys.stderr, flush=True)
    return scores


async def _run_all(specs: Sequence[ProviderSpec],
                   audio: dict[str, list[tuple[Clip, np.ndarray]]]) -> dict[str, dict[str, Score]]:
    return {spec.label: await _run_provider(spec, audio, 16000) for spec in specs}


def _pct(right: int, total: int) -> str:
    return f"{right / total:.1%} ({right}/{total})" if total else "-"


def table(results: dict[str, dict[str, Score]], variants: Sequence[str]) -> str:
    labels = list(results)
    width = max(22, *(len(label) + 2 for label in labels))
    rows = [f"{'variant':<9} {'measure':<22}" + "".join(f"{label:>{width}}" for label in labels)]
    for variant in variants:
        measures: list[tuple[str, list[str]]] = []
        picked = [results[label][variant] for label in labels]
        measures.append(("WER", [f"{s.errors / max(s.words, 1):.1%} ({s.words} w)" for s in picked]))
        measures.append(("digit sequences", [_pct(s.digit_right, s.digit_total) for s in picked]))
        measures.append(("single digits", [_pct(s.single_right, s.single_total) for s in picked]))
        measures.append(("mean ms / utterance", [f"{1000 * np.mean(s.costs):.0f}" for s in picked]))
        measures.append(("p95 ms / utterance", [f"{1000 * np.percentile(s.costs, 95):.0f}" for s in picked]))
        measures.append(("real-time factor", [f"{sum(s.costs) / max(s.audio_s, 1e-9):.3f}" for s in picked]))
        for measure, cells in measures:
            rows.append(f"{variant:<9} {measure:<22}" + "".join(f"{c:>{width}}" for c in cells))
    return "\n".join(rows)


def run(manifest: Path, providers: Sequence[str], variants: Sequence[str], limit: int | None = None,
        seed: int = 0, verbose: bool = False) -> str:
    specs = [parse_provider(p) for p in providers]
    chosen: list[Variant] = [parse_variant(v) for v in variants]
    clips = load_manifest(manifest, limit)
    if not clips:
        raise ValueError(f"{manifest}: no clips")
    print(f"bench stt: {len(clips)} clips x {len(chosen)} variants x {len(specs)} providers",
          file=sys.stderr, flush=True)
    rng = np.random.default_rng(seed)
    audio: dict[str, list[tuple[Clip, np.ndarray]]] = {}
    for variant in chosen:
        audio[variant.name] = [(clip, phone_audio(*read_wav(clip.path), variant, rng)) for clip in clips]
    seconds = sum(len(pcm) for _, pcm in audio[chosen[0].name]) / 16000
    results = asyncio.run(_run_all(specs, audio))
    lines = [f"STT on {len(clips)} recordings ({seconds:.0f} s per variant) through the 8 kHz mu-law phone "
             f"path; {manifest.name}", table(results, [v.name for v in chosen])]
    if verbose:
        for label, by_variant in results.items():
            for variant, score in by_variant.items():
                lines.append(f"\n{label} / {variant}:")
                lines += [f"  {ref!r} -> {hyp!r}" for ref, hyp in score.examples]
    return "\n".join(lines)
