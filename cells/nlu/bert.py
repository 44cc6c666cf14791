"""A BERT encoder's forward pass in numpy (float32), for inference only.

Weights come from a Hugging Face `BertModel` state dict (names as in its safetensors file). Linear
weights are stored transposed once at load (x @ W, no per-call transpose), and query, key and value
are fused into one (hidden, 3*hidden) matrix so each layer makes one matmul for all three.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Abramowitz & Stegun 7.1.26: erf(x) = 1 - (a1 t + ... + a5 t^5) exp(-x^2), t = 1 / (1 + p x), x >= 0.
# Its absolute error is below 1.5e-7, about one float32 ulp near 1, so GELU matches BERT's exact-erf
# GELU to float32 precision (tests/test_nlu_embeddings.py measures it against math.erf).
_ERF_P = 0.3275911
_ERF_A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)


def erf(x: np.ndarray) -> np.ndarray:
    """Error function, elementwise, in the dtype of x (numpy has none; scipy is not a dependency)."""
    a = np.abs(x)
    t = 1.0 / (1.0 + _ERF_P * a)
    a1, a2, a3, a4, a5 = _ERF_A
    poly = t * (a1 + t * (a2 + t * (a3 + t * (a4 + t * a5))))
    y = 1.0 - poly * np.exp(-a * a)
    return np.copysign(y, x).astype(x.dtype, copy=False)


def gelu(x: np.ndarray) -> np.ndarray:
    """BERT's GELU: x * Phi(x) with the exact (erf) normal CDF, not the tanh approximation."""
    return x * (0.5 + 0.5 * erf(x * np.float32(1.0 / math.sqrt(2.0))))


def layer_norm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    centred = x - mean
    var = np.mean(centred * centred, axis=-1, keepdims=True)
    return centred / np.sqrt(var + np.float32(eps)) * gamma + beta


@dataclass(frozen=True)
class BertConfig:
    hidden: int
    heads: int
    layers: int
    intermediate: int
    max_positions: int
    eps: float

    @classmethod
    def from_json(cls, cfg: dict) -> BertConfig:
        if cfg.get("model_type", "bert") != "bert" or cfg.get("hidden_act", "gelu") != "gelu":
            raise ValueError(f"not a BERT with erf GELU: model_type={cfg.get('model_type')!r}, "
                             f"hidden_act={cfg.get('hidden_act')!r}")
        if cfg.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError(f"position_embedding_type {cfg['position_embedding_type']!r} is not supported")
        out = cls(hidden=int(cfg["hidden_size"]), heads=int(cfg["num_attention_heads"]),
                  layers=int(cfg["num_hidden_layers"]), intermediate=int(cfg["intermediate_size"]),
                  max_positions=int(cfg["max_position_embeddings"]), eps=float(cfg["layer_norm_eps"]))
        if out.hidden % out.heads:
            raise ValueError(f"hidden size {out.hidden} is not a multiple of {out.heads} heads")
        return out


@dataclass(frozen=True)
class _Layer:
    qkv_w: np.ndarray  # (hidden, 3 * hidden)
    qkv_b: np.ndarray
    out_w: np.ndarray  # (hidden, hidden)
    out_b: np.ndarray
    ln1_g: np.ndarray
    ln1_b: np.ndarray
    ff1_w: np.ndarray  # (hidden, intermediate)
    ff1_b: np.ndarray
    ff2_w: np.ndarray  # (intermediate, hidden)
    ff2_b: np.ndarray
    ln2_g: np.ndarray
    ln2_b: np.ndarray


def _f32(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32)


class BertEncoder:
    """last_hidden_state of a BertModel, for a padded batch of token ids and its attention mask."""

    def __init__(self, config: BertConfig, tensors: dict[str, np.ndarray]) -> None:
        self.config = config
        self._check_shapes(tensors)

        def t(name: str) -> np.ndarray:
            return tensors[name]

        self.word = t("embeddings.word_embeddings.weight")  # stays memory-mapped: only rows are read
        if self.word.dtype != np.float32:
            self.word = _f32(self.word)
        self.position = _f32(t("embeddings.position_embeddings.weight"))
        self.token_type = _f32(t("embeddings.token_type_embeddings.weight"))
        self.emb_ln = (_f32(t("embeddings.LayerNorm.weight")), _f32(t("embeddings.LayerNorm.bias")))
        self.layers: list[_Layer] = []
        for i in range(config.layers):
            p = f"encoder.layer.{i}."
            qkv = [p + f"attention.self.{n}" for n in ("query", "key", "value")]
            self.layers.append(_Layer(
                qkv_w=_f32(np.concatenate([t(n + ".weight") for n in qkv], axis=0).T),
                qkv_b=_f32(np.concatenate([t(n + ".bias") for n in qkv])),
                out_w=_f32(t(p + "attention.output.dense.weight").T),
                out_b=_f32(t(p + "attention.output.dense.bias")),
                ln1_g=_f32(t(p + "attention.output.LayerNorm.weight")),
                ln1_b=_f32(t(p + "attention.output.LayerNorm.bias")),
                ff1_w=_f32(t(p + "intermediate.dense.weight").T),
                ff1_b=_f32(t(p + "intermediate.dense.bias")),
                ff2_w=_f32(t(p + "output.dense.weight").T),
                ff2_b=_f32(t(p + "output.dense.bias")),
                ln2_g=_f32(t(p + "output.LayerNorm.weight")),
                ln2_b=_f32(t(p + "output.LayerNorm.bias")),
            ))

    def _check_shapes(self, tensors: dict[str, np.ndarray]) -> None:
        c = self.config
        want = {"embeddings.position_embeddings.weight": (c.max_positions, c.hidden),
                "embeddings.LayerNorm.weight": (c.hidden,)}
        for i in range(c.layers):
            p = f"encoder.layer.{i}."
            want |= {p + "attention.self.query.weight": (c.hidden, c.hidden),
                     p + "intermediate.dense.weight": (c.intermediate, c.hidden),
                     p + "output.dense.weight": (c.hidden, c.intermediate)}
        for name, shape in want.items():
            got = tensors.get(name)
            if got is None or tuple(got.shape) != shape:
                raise ValueError(f"weights do not fit the config: {name} is "
                                 f"{None if got is None else tuple(got.shape)}, expected {shape}")
        word = tensors.get("embeddings.word_embeddings.weight")
        if word is None or word.ndim != 2 or word.shape[1] != c.hidden:
            raise ValueError("weights lack embeddings.word_embeddings.weight of width hidden_size")

    def __call__(self, ids: np.ndarray, type_ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """(batch, seq) int arrays -> (batch, seq, hidden) float32."""
        batch, seq = ids.shape
        if seq > self.config.max_positions:
            raise ValueError(f"{seq} tokens exceed the model's {self.config.max_positions} positions")
        x = self.word[ids] + self.position[:seq] + self.token_type[type_ids]
        # Tokens stay one (batch * seq, hidden) matrix between layers: one GEMM per linear layer is
        # about three times faster in OpenBLAS than a stack of per-sentence products.
        x = layer_norm(x.reshape(batch * seq, -1), *self.emb_ln, self.config.eps)
        # Added to the scores of padding keys, as BertModel does (the dtype's most negative value).
        bias = ((1.0 - mask.astype(np.float32)) * np.finfo(np.float32).min)[:, None, None, :]
        for layer in self.layers:
            x = self._layer(x, bias, layer, batch, seq)
        return x.reshape(batch, seq, -1)

    def _layer(self, x: np.ndarray, bias: np.ndarray, w: _Layer, batch: int, seq: int) -> np.ndarray:
        c = self.config
        hidden = x.shape[1]
        head = hidden // c.heads
        qkv = x @ w.qkv_w + w.qkv_b  # (batch * seq, 3 * hidden)
        qkv = qkv.reshape(batch, seq, 3, c.heads, head).transpose(2, 0, 3, 1, 4)  # (3, b, h, s, d)
        q, k, v = qkv[0], qkv[1], qkv[2]
        scores = (q @ k.transpose(0, 1, 3, 2)) * np.float32(1.0 / math.sqrt(head)) + bias
        scores -= scores.max(axis=-1, keepdims=True)
        np.exp(scores, out=scores)
        scores /= scores.sum(axis=-1, keepdims=True)
        context = (scores @ v).transpose(0, 2, 1, 3).reshape(batch * seq, hidden)
        x = layer_norm(context @ w.out_w + w.out_b + x, w.ln1_g, w.ln1_b, c.eps)
        ff = gelu(x @ w.ff1_w + w.ff1_b) @ w.ff2_w + w.ff2_b
        return layer_norm(ff + x, w.ln2_g, w.ln2_b, c.eps)
