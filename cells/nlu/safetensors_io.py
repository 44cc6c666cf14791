"""Read a .safetensors file into numpy arrays without torch or the `safetensors` package.

The format: 8 bytes little-endian u64 N, then N bytes of JSON mapping each tensor name to
{"dtype", "shape", "data_offsets": [begin, end]} (offsets relative to the end of the header), an
optional "__metadata__" entry, then the raw little-endian tensor bytes. The file is memory-mapped, so
tensors that are only indexed (the word embeddings) are paged in on demand.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import numpy as np

_DTYPES: dict[str, str] = {
    "F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1",
    "U8": "u1", "BOOL": "?",
}
_MAX_HEADER = 100 * 1024 * 1024  # the reference implementation's own cap on the JSON header


class SafetensorsError(ValueError):
    """The file is not a well-formed safetensors file (or holds a dtype numpy cannot represent)."""


def read_header(path: Path) -> tuple[dict[str, dict], int]:
    """The tensor table and the byte offset where the data section starts."""
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise SafetensorsError(f"{path}: too short for a safetensors header")
        (n,) = struct.unpack("<Q", raw)
        if n > _MAX_HEADER:
            raise SafetensorsError(f"{path}: header length {n} is implausible")
        text = f.read(n)
    if len(text) != n:
        raise SafetensorsError(f"{path}: header truncated ({len(text)} of {n} bytes)")
    try:
        header = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SafetensorsError(f"{path}: header is not JSON: {exc}") from exc
    if not isinstance(header, dict):
        raise SafetensorsError(f"{path}: header is not a JSON object")
    header.pop("__metadata__", None)
    return header, 8 + n


def load(path: str | Path) -> dict[str, np.ndarray]:
    """Every tensor in the file, as read-only numpy views of one memory map."""
    path = Path(path)
    header, start = read_header(path)
    data = np.memmap(path, dtype=np.uint8, mode="r")
    size = data.size - start
    out: dict[str, np.ndarray] = {}
    for name, info in header.items():
        try:
            dtype_name, shape, (begin, end) = info["dtype"], info["shape"], info["data_offsets"]
        except (KeyError, TypeError, ValueError) as exc:
            raise SafetensorsError(f"{path}: malformed entry for {name!r}: {info!r}") from exc
        if dtype_name not in _DTYPES:
            raise SafetensorsError(f"{path}: tensor {name!r} has dtype {dtype_name}, which numpy cannot hold")
        dtype = np.dtype(_DTYPES[dtype_name])
        expected = math.prod(shape) * dtype.itemsize
        if not (0 <= begin <= end <= size) or end - begin != expected:
            raise SafetensorsError(
                f"{path}: tensor {name!r} offsets {begin}..{end} do not fit shape {shape} {dtype_name} "
                f"in a data section of {size} bytes")
        out[name] = data[start + begin:start + end].view(dtype).reshape(shape)
    return out
