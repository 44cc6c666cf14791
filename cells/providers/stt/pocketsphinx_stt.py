"""Embedded streaming STT on PocketSphinx 5 (the PyPI wheel ships the US English model), with a domain LM.

Each stream holds one decoder, in one of a few decoder processes (`decoder_pool`): PocketSphinx holds the
GIL while it loads and decodes, which on threads stalled the event loop that paces every call's audio.
Audio is decoded as it arrives; partial hypotheses are emitted when they change, and a final one when the
frame stream carries an `EndOfTurn` (the call loop's VAD said the caller stopped) or ends. Decoders are
built fresh per stream (spares are built ahead, in the decoder processes) so that each call starts from the
same state.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import threading
from collections.abc import AsyncIterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pocketsphinx

from cells.providers.base import EndOfTurn, Frame, ProviderConfigError, Transcript
from cells.providers.stt import domain_lm
from cells.providers.stt.decoder_pool import DecoderStream, shared_pool
from cells.providers.stt.decoder_process import new_decoder
from cells.providers.stt.domain_lm import Domain, build_domain_lm

SAMPLE_RATE = 16000  # the shipped acoustic model's rate
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
        """`front_end`: feat.params overrides (None: TELEPHONE_FRONT_END, {}: the model as shipped).

        `spares`: decoders each decoder process builds ahead for this configuration.
        """
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
        # decoder loads in tens of milliseconds (the generic one in hundreds); spares hide that. The key
        # lets a decoder process keep spares for several configurations (agents) apart.
        self.spares = spares
        key = hashlib.sha256(json.dumps([options, cmn_prior], sort_keys=True).encode()).hexdigest()[:16]
        self._spec: dict[str, Any] = {"key": key, "options": options, "cmn_prior": cmn_prior,
                                      "spares": spares, "partial_interval_ms": partial_interval_ms}

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
        """A decoder with this provider's settings, in this process (for inspection; streams use the pool)."""
        return new_decoder(self._options, self.cmn_prior)

    async def warm_up(self) -> None:
        """Starts the decoder processes and builds the spare decoders ahead of calls."""
        await shared_pool().warm(self._spec)

    async def stream(self, frames: AsyncIterator[Frame]) -> AsyncIterator[Transcript]:
        """Raises ProviderError if the decoder process serving this stream dies or fails."""
        decoder: DecoderStream = await shared_pool().open(self._spec)
        is_open = False  # an utterance has audio that no final has closed yet
        try:
            async for item in frames:
                if isinstance(item, EndOfTurn):
                    is_open = False
                    yield Transcript(*await decoder.finish())
                    continue
                pcm = np.ascontiguousarray(item, dtype="<i2")
                is_open = True  # the decoder starts an utterance on any audio frame, even an empty one
                partial = await decoder.feed(pcm.tobytes())
                if partial is not None:
                    yield Transcript(*partial)
            if is_open:
                yield Transcript(*await decoder.finish())
        finally:
            # The process drops the decoder (also when we were cancelled with a request in flight: its
            # late reply is discarded) and builds a spare in its idle time.
            decoder.close()
