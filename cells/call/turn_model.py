"""Has the caller finished their turn? The smart-turn v3 model's answer from the audio alone.

The model (smart-turn v3.2, CPU ONNX, BSD-2-Clause, by Daily) ships as a data file inside the
`pipecat-ai` wheel, installed without its dependencies; we read that file and never import
pipecat (its package imports need libraries we do not install). It scores the last 8 s of the
turn's audio at 16 kHz and returns P(turn complete). One check costs ~100 ms of CPU, so checks run
on a small thread pool (onnxruntime releases the GIL) behind a bounded queue: when the pool is
saturated a check is refused at once and the caller falls back to the text rules.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

import media_core
from cells.call.turn_features import RATE, WINDOW_SAMPLES, log_mel

log = logging.getLogger(__name__)

MODEL_DIST = "pipecat-ai"
MODEL_FILE = "smart-turn-v3.2-cpu.onnx"


class TurnModelUnavailable(RuntimeError):
    """The model file or onnxruntime is missing, or the pool is saturated."""


def model_path() -> Path:
    """Where the installed `pipecat-ai` wheel put the model file (found through the wheel's record,
    so that nothing of pipecat is imported)."""
    try:
        dist = importlib.metadata.distribution(MODEL_DIST)
    except importlib.metadata.PackageNotFoundError as exc:
        raise TurnModelUnavailable(
            f"the end-of-turn model ships in the {MODEL_DIST} wheel: "
            f"pip install --no-deps '{MODEL_DIST}==1.14.0'") from exc
    for file in dist.files or ():
        if file.name == MODEL_FILE:
            path = Path(str(dist.locate_file(file)))
            if path.is_file():
                return path
    raise TurnModelUnavailable(f"{MODEL_FILE} is not in the installed {MODEL_DIST} {dist.version}")


def to_model_audio(pcm: np.ndarray | bytes, rate: int) -> np.ndarray:
    """int16 PCM (bytes or array) at 8 or 16 kHz -> the last 8 s as 16 kHz float32 in [-1, 1]."""
    samples = np.frombuffer(pcm, dtype=np.int16) if isinstance(pcm, bytes | bytearray | memoryview) \
        else np.asarray(pcm)
    if samples.dtype != np.int16 or samples.ndim != 1:
        raise ValueError(f"expected mono int16 PCM, got {samples.dtype} with shape {samples.shape}")
    if rate not in (8000, RATE):
        raise ValueError(f"expected 8 or 16 kHz audio, got {rate} Hz")
    keep = WINDOW_SAMPLES * rate // RATE + rate // 50  # 8 s plus a little for the resampler's edge
    samples = samples[-keep:]
    if rate != RATE:
        resampler = media_core.Resampler(rate, RATE)
        samples = np.concatenate([resampler.process(samples), resampler.flush()])
    return samples.astype(np.float32) / 32768.0


class TurnDetector:
    """The loaded model; `score` is synchronous, `check` runs it off the event loop."""

    def __init__(self, path: Path | None = None, *, workers: int = 1, max_pending: int = 4) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise TurnModelUnavailable("onnxruntime is not installed") from exc
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # one core per check: concurrent calls share the machine
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._session = ort.InferenceSession(str(path or model_path()), sess_options=options,
                                             providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="turn-model")
        self._max_pending = max_pending
        self._pending = 0
        self._lock = threading.Lock()

    def score(self, pcm: np.ndarray | bytes, rate: int) -> float:
        """P(the turn is complete) for the audio of the turn so far (int16 PCM)."""
        features = log_mel(to_model_audio(pcm, rate))[None, ...]
        out = self._session.run(None, {self._input: features})
        return float(np.asarray(out[0]).reshape(-1)[0])

    async def check(self, pcm: np.ndarray | bytes, rate: int) -> float:
        """`score` on the pool; refuses at once (TurnModelUnavailable) when too many are queued."""
        with self._lock:
            if self._pending >= self._max_pending:
                raise TurnModelUnavailable("end-of-turn checks are backed up")
            self._pending += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, self.score, pcm, rate)
        finally:
            with self._lock:
                self._pending -= 1


_shared: TurnDetector | None = None
_shared_failed: str | None = None
_shared_lock = threading.Lock()


def shared_detector() -> TurnDetector | None:
    """The process's one detector, loaded on first use; None (logged once) when it cannot load."""
    global _shared, _shared_failed
    with _shared_lock:
        if _shared is None and _shared_failed is None:
            try:
                _shared = TurnDetector()
            except Exception as exc:  # a missing model must not break calls: the text rules remain
                _shared_failed = str(exc)
                log.warning("end-of-turn model unavailable, using the text rules: %s", exc)
        return _shared


class ModelChecker:
    """Asks a detector from the event loop and hands the answer (or None on failure) to a callback.
    The endpointer owns the deadline (on the audio clock), so a slow answer is simply ignored."""

    def __init__(self, detector: TurnDetector) -> None:
        self.detector = detector
        self._tasks: set[asyncio.Task[None]] = set()

    def request(self, pcm: np.ndarray, rate: int, done: Callable[[float | None], None]) -> None:
        async def ask() -> None:
            try:
                p: float | None = await self.detector.check(pcm, rate)
            except Exception as exc:
                log.info("end-of-turn check failed: %s", exc)
                p = None
            done(p)

        task = asyncio.get_running_loop().create_task(ask())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()


def checker_for(use_model: bool) -> ModelChecker | None:
    """The checker a call uses: the process's shared detector when the call wants the model and it
    could be loaded, else None (the endpointer's text rules)."""
    if not use_model:
        return None
    detector = shared_detector()
    return ModelChecker(detector) if detector is not None else None
