"""Embedded streaming STT on PocketSphinx 5 (the PyPI wheel ships the US English model), with a domain LM.

Each stream holds one decoder. Audio is decoded as it arrives (`process_raw`) on a worker thread so the
event loop never blocks; partial hypotheses are emitted when they change, and a final one when the frame
stream carries an `EndOfTurn` (the call loop's VAD said the caller stopped) or ends. Decoders are built
fresh per stream (spares are built ahead) so that each call starts from the same state.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import json
import os
import shutil
import tempfile
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pocketsphinx

from cells.providers.base import EndOfTurn, Frame, ProviderConfigError, Transcript
from cells.providers.stt import domain_lm
from cells.providers.stt.domain_lm import Domain, build_domain_lm

SAMPLE_RATE = 16000  # the shipped acoustic model's rate
_FRAME_MS = 10  # the decoder's frame shift
_NON_WORDS = ("<s>", "</s>", "<sil>")
# Cepstral-mean prior for narrowband (telephone) speech upsampled to 16 kHz. The model's default assumes
# wideband audio; live CMN then needs a whole utterance to adapt and the caller's first turn is lost. The
# leading coefficients are set by the channel's band limit and vary little between speakers. Measured on
# eSpeak NG voices through the 8 kHz mu-law path (so the speaker-dependent tail is only approximate).
TELEPHONE_CMN = "53,22,-26,42,-30,9,-2,-16,2,-15,10,-8,0"
# Front-end settings that differ from the shipped model's feat.params for VAD-gated telephone turns.
# The model's noise removal tracks each filter's noise floor from the audio it has seen; a turn starts after
# only ~400 ms of pre-roll, and the 4-8 kHz filters of upsampled narrowband audio hold no signal at all, so
# the tracker subtracts from speech onsets and the first word of short answers ("thursday", "five five
# five ...") is lost. Without it, domain WER on caller answers fell from 51% to 47% (evals/stt/bench.py).
TELEPHONE_FRONT_END = {"remove_noise": "no"}
_T = TypeVar("_T")

_EXECUTOR = concurrent.futures.ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2),
                                                  thread_name_prefix="pocketsphinx")
_LM_LOCK = threading.Lock()


def _domain_model(domain: Domain, general_weight: float, cache_dir: Path) -> tuple[str, str]:
    """Paths of the domain LM and its dictionary, built once per distinct domain and reused from disk."""
    dictionary = pocketsphinx.get_model_path("en-us/cmudict-en-us.dict")
    # The builder's own source is part of the key: a changed corpus or smoothing must not be served a model
    # built by the previous code from the disk cache.
    builder = hashlib.sha256(Path(domain_lm.__file__).read_bytes()).hexdigest()
    key = hashlib.sha256(json.dumps([asdict(domain), general_weight, dictionary, builder], sort_keys=True)
                         .encode()).hexdigest()[:16]
    directory = cache_dir / key
    lm_path, dict_path = directory / "domain.lm", directory / "domain.dict"
    with _LM_LOCK:
        if not (lm_path.exists() and dict_path.exists()):
            # Written to a sibling directory and renamed so that a concurrent process never reads half a file.
            staging = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=cache_dir))
            build_domain_lm(domain, dictionary, general_weight).write(staging)
            try:
                staging.rename(directory)
            except OSError:  # another process won the race; its files are identical
                pass
    return str(lm_path), str(dict_path)


def _acoustic_model(front_end: dict[str, str], cache_dir: Path) -> str:
    """The shipped acoustic model with `front_end` written into its feat.params.

    PocketSphinx reads feat.params after the decoder's own options, so front-end settings can only be
    changed there; the model's other files are linked (copied where links are not allowed), not rewritten.
    """
    source = Path(pocketsphinx.get_model_path("en-us/en-us"))
    params = []
    for line in (source / "feat.params").read_text().splitlines():
        name = line.split(" ", 1)[0].lstrip("-")
        if line.strip() and name not in front_end:
            params.append(line)
    params += [f"-{name} {value}" for name, value in sorted(front_end.items())]
    text = "\n".join(params) + "\n"
    key = hashlib.sha256(json.dumps([str(source), text]).encode()).hexdigest()[:16]
    directory = cache_dir / f"hmm-{key}"
    with _LM_LOCK:
        if not directory.exists():
            staging = Path(tempfile.mkdtemp(prefix=f".hmm-{key}-", dir=cache_dir))
            for item in source.iterdir():
                if item.name == "feat.params":
                    continue
                try:
                    (staging / item.name).symlink_to(item)
                except OSError:
                    shutil.copyfile(item, staging / item.name)
            (staging / "feat.params").write_text(text)
            try:
                staging.rename(directory)
            except OSError:  # another process won the race; its files are identical
                shutil.rmtree(staging, ignore_errors=True)
    return str(directory)


class PocketsphinxStt:
    """SttProvider. `domain=None` uses the generic LM shipped in the wheel (poor on phone audio)."""

    sample_rate = SAMPLE_RATE

    def __init__(self, domain: Domain | None = None, *, general_weight: float = 0.15,
                 partial_interval_ms: int = 100, language_weight: float | None = None,
                 cmn_prior: str | None = TELEPHONE_CMN, spares: int = 1,
                 cache_dir: str | None = None, front_end: dict[str, str] | None = None) -> None:
        """`front_end`: feat.params overrides (None: TELEPHONE_FRONT_END, {}: the model as shipped)."""
        self.domain = domain
        self.partial_interval_ms = partial_interval_ms
        self.cmn_prior = cmn_prior  # None: the model's wideband default
        front_end = TELEPHONE_FRONT_END if front_end is None else front_end
        root = Path(cache_dir) if cache_dir else Path(tempfile.gettempdir()) / "autospeak-stt"
        root.mkdir(parents=True, exist_ok=True)
        hmm = _acoustic_model(front_end, root) if front_end else pocketsphinx.get_model_path("en-us/en-us")
        options: dict[str, Any] = {"hmm": hmm, "samprate": SAMPLE_RATE, "loglevel": "FATAL"}
        if domain is not None:
            options["lm"], options["dict"] = _domain_model(domain, general_weight, root)
        if language_weight is not None:
            options["lw"] = language_weight
        self._options = options
        # Decoders are not reused: PocketSphinx keeps adaptation state (live CMN history) across
        # utterances that set_cmn does not fully reset, and one call must not colour the next. A domain
        # decoder loads in tens of milliseconds (the generic one in hundreds); spares hide that.
        self.spares = spares
        self._spares: list[pocketsphinx.Decoder] = []
        self._spare_lock = threading.Lock()

    @classmethod
    def from_options(cls, domain: Domain | dict[str, Any] | None = None, **options: Any) -> PocketsphinxStt:
        """Registry factory: `domain` may come from configuration as a plain mapping."""
        if isinstance(domain, dict):
            try:
                domain = Domain(**domain)
            except TypeError as exc:
                raise ProviderConfigError(f"bad STT domain {domain!r}: {exc}",
                                          provider="pocketsphinx") from exc
        return cls(domain, **options)

    def _new_decoder(self) -> pocketsphinx.Decoder:
        decoder = pocketsphinx.Decoder(**self._options)
        if self.cmn_prior is not None:
            decoder.set_cmn(self.cmn_prior)
        return decoder

    def _acquire(self) -> pocketsphinx.Decoder:
        with self._spare_lock:
            if self._spares:
                return self._spares.pop()
        return self._new_decoder()

    def _add_spare(self) -> None:
        with self._spare_lock:
            if len(self._spares) >= self.spares:
                return
        decoder = self._new_decoder()
        with self._spare_lock:
            if len(self._spares) < self.spares:
                self._spares.append(decoder)

    async def warm_up(self) -> None:
        """Builds the spare decoders ahead of calls, so no stream pays for loading."""
        await asyncio.gather(*(_run(self._add_spare) for _ in range(self.spares)))

    async def stream(self, frames: AsyncIterator[Frame]) -> AsyncIterator[Transcript]:
        turn = _Turn(await _run(self._acquire), self.partial_interval_ms)
        try:
            async for item in frames:
                if isinstance(item, EndOfTurn):
                    yield await _run(turn.finish)
                    continue
                partial = await _run(turn.feed, item)
                if partial is not None:
                    yield partial
            if turn.open:
                yield await _run(turn.finish)
        finally:
            # The used decoder is dropped (a worker may still be inside it if we were cancelled); a fresh
            # spare replaces it off the event loop.
            _EXECUTOR.submit(self._add_spare)


async def _run(fn: Callable[..., _T], *args: Any) -> _T:
    return await asyncio.wrap_future(_EXECUTOR.submit(fn, *args))


class _Turn:
    """Decoder state of one stream; only ever used by one worker thread at a time."""

    def __init__(self, decoder: pocketsphinx.Decoder, partial_interval_ms: int) -> None:
        self.decoder = decoder
        self.open = False
        self._partial_samples = SAMPLE_RATE * partial_interval_ms // 1000
        self._samples = 0  # stream position
        self._utt_start = 0  # stream position where the open utterance began
        self._since_partial = 0
        self._last_partial = ""

    def feed(self, pcm: np.ndarray) -> Transcript | None:
        pcm = np.ascontiguousarray(pcm, dtype=np.int16)
        if not self.open:
            self.decoder.start_utt()
            self.open, self._utt_start, self._last_partial, self._since_partial = True, self._samples, "", 0
        self.decoder.process_raw(pcm.tobytes(), False, False)
        self._samples += len(pcm)
        self._since_partial += len(pcm)
        if self._since_partial < self._partial_samples:
            return None
        self._since_partial = 0
        hyp = self.decoder.hyp()
        text = hyp.hypstr if hyp is not None else ""
        if not text or text == self._last_partial:
            return None
        self._last_partial = text
        return Transcript(text, False, self._ms(self._utt_start), self._ms(self._samples))

    def finish(self) -> Transcript:
        if not self.open:  # end of turn without audio since the last final
            now = self._ms(self._samples)
            return Transcript("", True, now, now, None)
        self.decoder.end_utt()
        self.open = False
        hyp = self.decoder.hyp()
        text = hyp.hypstr if hyp is not None else ""
        words = [s for s in self.decoder.seg() if s.word not in _NON_WORDS and not s.word.startswith("[")]
        base = self._ms(self._utt_start)
        start = base + words[0].start_frame * _FRAME_MS if words else base
        end = base + (words[-1].end_frame + 1) * _FRAME_MS if words else self._ms(self._samples)
        confidence = self.decoder.get_logmath().exp(hyp.prob) if hyp is not None and text else None
        return Transcript(text, True, start, end, confidence)

    @staticmethod
    def _ms(samples: int) -> float:
        return 1000.0 * samples / SAMPLE_RATE
