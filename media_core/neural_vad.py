"""Finding the Silero VAD weights that the `silero-vad` package installs, for media_core.NeuralVad.

The weights are never committed here nor fetched at run time: they arrive with the registry package
at install time. The package's Python code needs torch, so it is located, not imported.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from media_core._native import NeuralVad as _NativeNeuralVad

PACKAGE = "silero_vad"
# The v6 16 kHz export: its weights are those of the package's TorchScript model (the
# .safetensors file in the same folder is a different checkpoint that no ONNX export matches).
WEIGHTS_FILE = "silero_vad_16k_op15.onnx"


def installed_weights_path(filename: str = WEIGHTS_FILE) -> Path:
    """Path of a weights file inside the installed `silero-vad` package; FileNotFoundError if absent."""
    spec = importlib.util.find_spec(PACKAGE)  # a top-level package: found without running it
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        path = Path(folder) / "data" / filename
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"{filename} not found: install the weights with "
        "`pip install --no-deps 'silero-vad==6.2.3'` (its declared dependencies pull torch, not needed here)"
    )


class NeuralVad(_NativeNeuralVad):
    """The Silero-class VAD network run natively in media_core (see media_core._native.NeuralVad)."""

    @classmethod
    def from_installed(cls, filename: str = WEIGHTS_FILE) -> NeuralVad:
        return cls(installed_weights_path(filename).read_bytes())
