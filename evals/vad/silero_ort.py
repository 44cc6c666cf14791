"""Silero VAD run by onnxruntime in Python: the reference for media_core.NeuralVad (same weights file).

Streams 512-sample chunks at 16 kHz with the previous chunk's last 64 samples in front, carrying the LSTM
state between chunks, as the silero-vad package's own ONNX wrapper does.
"""

from __future__ import annotations

import numpy as np
import onnxruntime

import media_core
from media_core.neural_vad import WEIGHTS_FILE

CHUNK = 512
CONTEXT = 64


class OrtSilero:
    def __init__(self, filename: str = WEIGHTS_FILE) -> None:
        opts = onnxruntime.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        path = str(media_core.installed_weights_path(filename))
        cpu = ["CPUExecutionProvider"]
        self.session = onnxruntime.InferenceSession(path, sess_options=opts, providers=cpu)
        self._sr = np.array(16000, dtype=np.int64)
        self.reset()

    def reset(self) -> None:
        self._state = np.zeros((2, 1, 128), dtype=np.float32)
        self._context = np.zeros(CONTEXT, dtype=np.float32)

    def chunk(self, x: np.ndarray) -> float:
        """Probability of one chunk of 512 float32 samples in [-1, 1]."""
        window = np.concatenate([self._context, x.astype(np.float32)])[None, :]
        out, self._state = self.session.run(None, {"input": window, "state": self._state, "sr": self._sr})
        self._context = window[0, -CONTEXT:]
        return float(out[0, 0])

    def probabilities(self, pcm16k: np.ndarray) -> list[float]:
        """Per whole 512-sample chunk of int16 16 kHz audio (a trailing partial chunk is dropped)."""
        x = pcm16k.astype(np.float32) / 32768.0
        return [self.chunk(x[i : i + CHUNK]) for i in range(0, len(x) - CHUNK + 1, CHUNK)]
