"""sentence-transformers' encode, the reference for scripts/bench-encode.sh.

usage: st_encode.py MODEL_DIR INPUT.csv|--sentence TEXT BATCH_SIZE OUT.npy
Reads the `text` column, encodes with normalize_embeddings=True, saves float32 .npy.
"""
import csv
import sys

import numpy as np
from sentence_transformers import SentenceTransformer


def main() -> None:
    model_dir, source, batch_size, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    if source.startswith("--sentence="):
        sentences = [source.split("=", 1)[1]]
    else:
        with open(source, newline="", encoding="utf-8") as f:
            sentences = [row["text"] for row in csv.DictReader(f)]
    model = SentenceTransformer(model_dir, device="cpu")
    emb = model.encode(sentences, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True)
    np.save(out, emb.astype(np.float32))


if __name__ == "__main__":
    main()
