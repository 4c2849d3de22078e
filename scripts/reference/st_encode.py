"""sentence-transformers' encode, the reference for scripts/bench-encode.sh.

usage: st_encode.py MODEL_DIR INPUT.csv|--sentence TEXT BATCH_SIZE OUT.npy [fp32|bf16|bf16-weights]
Reads the `text` column, encodes with normalize_embeddings=True, saves float32 .npy. bf16 runs
the encoding under torch.autocast("cpu", torch.bfloat16), PyTorch's own bf16 path (fp32
weights, as sentence-mtl's bf16); bf16-weights converts the model to bf16 first
(`model.bfloat16()`, sentence-transformers' documented way to encode in bf16: every weight and
LayerNorm in bf16, nothing cast per batch).
"""
import csv
import sys

import contextlib

import numpy as np
import torch
from sentence_transformers import SentenceTransformer


def main() -> None:
    model_dir, source, batch_size, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    if source.startswith("--sentence="):
        sentences = [source.split("=", 1)[1]]
    else:
        with open(source, newline="", encoding="utf-8") as f:
            sentences = [row["text"] for row in csv.DictReader(f)]
    precision = sys.argv[5] if len(sys.argv) > 5 else "fp32"
    bf16 = precision == "bf16"
    model = SentenceTransformer(model_dir, device="cpu")
    if precision == "bf16-weights":
        model = model.bfloat16()
    context = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    with context:
        emb = model.encode(sentences, batch_size=batch_size, normalize_embeddings=True, convert_to_tensor=True)
    emb = emb.float().cpu().numpy()
    np.save(out, emb.astype(np.float32))


if __name__ == "__main__":
    main()
