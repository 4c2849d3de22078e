"""sentence-transformers' encode, the reference for scripts/bench-encode.sh.

usage: st_encode.py MODEL_DIR INPUT.csv|--sentence TEXT BATCH_SIZE OUT.npy [fp32|bf16]
Reads the `text` column, encodes with normalize_embeddings=True, saves float32 .npy. bf16 runs
the encoding under torch.autocast("cpu", torch.bfloat16), PyTorch's own bf16 path.
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
    bf16 = len(sys.argv) > 5 and sys.argv[5] == "bf16"
    model = SentenceTransformer(model_dir, device="cpu")
    context = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    with context:
        emb = model.encode(sentences, batch_size=batch_size, normalize_embeddings=True, convert_to_tensor=True)
    emb = emb.float().cpu().numpy()
    np.save(out, emb.astype(np.float32))


if __name__ == "__main__":
    main()
