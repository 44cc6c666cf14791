"""One Whisper model per process (CTranslate2, through faster-whisper's feature extractor and tokenizer),
decoding whole turns in a bounded thread pool.

Why not `WhisperModel.transcribe`: it pads every decode to a 30 s encoder window (a 2 s turn costs as much
as a 30 s one), and passing it a shorter `chunk_length` rewrites the shared feature extractor, which races
between concurrent calls. Here the log-Mel features of the turn are padded to a window sized to the turn
(a margin beyond its length, with a floor; short windows made the decoder loop), and a decode that looks
like a loop is decoded again in the full 30 s window the model was trained on.

CTranslate2 releases the GIL while it encodes and decodes, so decoding on threads leaves the event loop
that paces every call's audio free. `workers` bounds how many turns decode at once (each on `threads`
cores); further turns queue.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import json
import math
import os
import re
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cells.providers.base import ProviderConfigError
from cells.providers.stt.whisper_models import ModelSource

SAMPLE_RATE = 16000
FULL_WINDOW_S = 30  # the encoder's trained input length
FRAMES_PER_S = 100  # log-Mel hop of 10 ms
@dataclass(frozen=True, slots=True)
class Decoded:
    text: str
    avg_logprob: float  # mean log probability per token of the chosen hypothesis
    no_speech_prob: float
    window_s: int  # encoder window used by the decode that was kept
    looped: bool  # the first decode looked like a loop (and was decoded again)


def compression_ratio(text: str) -> float:
    raw = text.encode()
    return len(raw) / len(zlib.compress(raw)) if raw else 0.0


def looks_looped(words: list[str], hit_cap: bool) -> bool:
    """A decoder loop: the token cap was hit, a phrase of two or three words repeats three times in a row,
    a longer one twice (a whole phone number said twice is rare, and a retry in the full window costs
    little), one word six times in a row (a phone number may repeat a digit four times), or long text
    compresses too well."""
    if hit_cap:
        return True
    for n in range(2, 9):
        copies = 3 if n < 4 else 2
        for i in range(len(words) - copies * n + 1):
            gram = words[i:i + n]
            if all(words[i + k * n:i + (k + 1) * n] == gram for k in range(1, copies)):
                return True
    run = 1
    for a, b in itertools.pairwise(words):
        run = run + 1 if a == b else 1
        if run >= 6:
            return True
    text = " ".join(words)
    return len(text) >= 60 and compression_ratio(text) > 2.4


def window_for(duration_s: float, margin_s: float, min_window_s: int) -> int:
    return int(min(FULL_WINDOW_S, max(min_window_s, math.ceil(duration_s + margin_s))))


class WhisperEngine:
    """The model, tokenizer and feature extractor of one model directory, with a bounded decode pool."""

    def __init__(self, source: ModelSource | Path, *, compute_type: str = "int8", threads: int = 2,
                 workers: int = 1) -> None:
        import ctranslate2
        import tokenizers
        from faster_whisper.feature_extractor import FeatureExtractor
        from faster_whisper.tokenizer import Tokenizer

        if isinstance(source, Path):
            source = ModelSource(source)
        model_dir = source.directory
        self.model = ctranslate2.models.Whisper(str(model_dir), device="cpu", compute_type=compute_type,
                                                inter_threads=workers, intra_threads=threads,
                                                files=source.files())
        hf = tokenizers.Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        multilingual = self.model.is_multilingual
        self.tokenizer = Tokenizer(hf, multilingual, task="transcribe" if multilingual else None,
                                   language="en" if multilingual else None)
        self.features = FeatureExtractor(**_feature_kwargs(model_dir, self.model.n_mels))
        self.pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="whisper")
        self.workers = workers

    def prompt_tokens(self, prompt: str | None) -> list[int]:
        # The prompt is capped (the decoder's context is 448 tokens; a long prompt also costs time).
        tokens = []
        if prompt:
            tokens = [self.tokenizer.sot_prev, *self.tokenizer.encode(" " + prompt.strip())[-200:]]
        return [*tokens, *self.tokenizer.sot_sequence, self.tokenizer.no_timestamps]

    def decode(self, audio: np.ndarray, prompt: str | None = None, *, beam_size: int = 1,
               margin_s: float = 6.0, min_window_s: int = 8, pad_floor: bool = True,
               suppress: list[int] | None = None) -> Decoded:
        """Text of float32 16 kHz audio (at most 30 s). Blocking: call it through `submit`. `suppress`:
        token ids the decoder may not write (whisper_slots.py), besides the model's default set."""
        duration = len(audio) / SAMPLE_RATE
        feats = self.features(audio)  # (n_mels, frames); never passes chunk_length (shared state)
        tokens = self.prompt_tokens(prompt)
        cap = int(8 * duration) + 12  # ~3x ordinary speech's token rate; reaching it means a loop
        window = window_for(duration, margin_s, min_window_s)
        first, capped = self._generate(feats, window, tokens, cap, beam_size, pad_floor, suppress)
        looped = looks_looped(_words(first.text), capped)
        if looped and window < FULL_WINDOW_S:
            first, capped = self._generate(feats, FULL_WINDOW_S, tokens, cap, beam_size, pad_floor,
                                               suppress)
            window = FULL_WINDOW_S
            still = looks_looped(_words(first.text), capped)
            text = _trim_loop(first.text) if still else first.text
        else:
            text = _trim_loop(first.text) if looped else first.text
        return Decoded(text, first.avg_logprob, first.no_speech_prob, window, looped)

    def _generate(self, feats: np.ndarray, window_s: int, prompt: list[int], cap: int,
                  beam_size: int, pad_floor: bool, suppress: list[int] | None = None) -> tuple[Decoded, bool]:
        """One decode in a `window_s` encoder window, and whether it reached the token cap."""
        import ctranslate2

        frames = window_s * FRAMES_PER_S
        segment = feats[:, :frames]
        if segment.shape[1] < frames:
            # Whisper was trained on audio zero-padded to 30 s before the log-Mel, which puts the padding
            # at the spectrogram's floor (its maximum - 8 in log10 units, i.e. max - 2 once scaled);
            # faster-whisper pads the scaled features with 0 instead.
            fill = float(segment.max()) - 2.0 if pad_floor else 0.0
            segment = np.pad(segment, ((0, 0), (0, frames - segment.shape[1])), constant_values=fill)
        batch = ctranslate2.StorageView.from_array(
            np.ascontiguousarray(segment[np.newaxis], dtype=np.float32))
        result = self.model.generate(batch, [prompt], beam_size=beam_size, max_length=len(prompt) + cap,
                                     return_scores=True, return_no_speech_prob=True, suppress_blank=True,
                                     suppress_tokens=suppress or [-1])[0]
        ids = [t for t in result.sequences_ids[0] if t < self.tokenizer.eot]
        text = self.tokenizer.decode(ids).strip()
        decoded = Decoded(text, float(result.scores[0]), float(result.no_speech_prob), window_s, False)
        return decoded, len(result.sequences_ids[0]) >= cap

    async def submit(self, audio: np.ndarray, prompt: str | None, **options: object) -> Decoded:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.pool, lambda: self.decode(audio, prompt, **options))  # type: ignore[arg-type]


def _words(text: str) -> list[str]:
    return re.findall(r"[\w']+", text.lower())


def _trim_loop(text: str) -> str:
    """What is left of a loop: a phrase repeated back to back kept twice, a single word four times (a
    phone number may repeat a digit)."""
    words = text.split()
    for n in range(5, 0, -1):
        limit = 4 if n == 1 else 2
        out: list[str] = []
        i = 0
        while i < len(words):
            gram = words[i:i + n]
            repeats = 1
            while len(gram) == n and words[i + repeats * n:i + (repeats + 1) * n] == gram:
                repeats += 1
            if repeats > 1:
                out += gram * min(repeats, limit)
                i += repeats * n
            else:
                out.append(words[i])
                i += 1
        words = out
    return " ".join(words)


def _feature_kwargs(model_dir: Path, n_mels: int) -> dict[str, int]:
    config = model_dir / "preprocessor_config.json"
    kwargs = {"feature_size": n_mels}
    if config.is_file():
        data = json.loads(config.read_text())
        for key in ("hop_length", "n_fft", "sampling_rate"):
            if key in data:
                kwargs[key] = int(data[key])
    return kwargs


_ENGINES: dict[tuple[str, str, int, int], WhisperEngine] = {}
_ENGINES_LOCK = threading.Lock()


def shared_engine(source: ModelSource, compute_type: str, threads: int | None,
                  workers: int | None) -> WhisperEngine:
    """The process's engine for this configuration, loaded on first use (a worker's calls share it)."""
    cores = os.cpu_count() or 1
    threads = max(1, min(threads or 2, cores))
    workers = max(1, workers or cores // threads)
    key = (str(source.directory.resolve()), compute_type, threads, workers)
    with _ENGINES_LOCK:
        engine = _ENGINES.get(key)
        if engine is None:
            try:
                engine = WhisperEngine(source, compute_type=compute_type, threads=threads, workers=workers)
            except (RuntimeError, ValueError) as exc:
                raise ProviderConfigError(f"whisper model {source.directory} failed to load: {exc}",
                                          provider="whisper") from exc
            _ENGINES[key] = engine
    return engine
