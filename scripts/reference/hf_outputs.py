"""Hugging Face's view of a model folder, as JSON on stdout, for the Rust parity tests.

usage: hf_outputs.py hidden MODEL_DIR < sentences (JSON list)
         -> {"input_ids", "attention_mask", "last_hidden_state"} for one padded batch
       hf_outputs.py tokens TOKENIZER_DIR MAX_LENGTH < sentences
         -> {"input_ids": [[...], ...]} (AutoTokenizer, truncation at MAX_LENGTH)
       hf_outputs.py st-embed MODEL_DIR < sentences
         -> {"embeddings": [[...], ...]} (sentence-transformers encode, batch 32)
"""
import json
import sys

import torch


def main() -> None:
    mode, path = sys.argv[1], sys.argv[2]
    sentences = json.load(sys.stdin)
    torch.manual_seed(0)
    if mode == "hidden":
        from transformers import AutoModel, AutoTokenizer

        tok = AutoTokenizer.from_pretrained(path)
        model = AutoModel.from_pretrained(path).eval()
        batch = tok(sentences, padding=True, truncation=True, max_length=128, return_tensors="pt")
        with torch.no_grad():
            hidden = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        out = {
            "input_ids": batch["input_ids"].tolist(),
            "attention_mask": batch["attention_mask"].tolist(),
            "last_hidden_state": hidden.tolist(),
        }
    elif mode == "tokens":
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(path)
        max_length = int(sys.argv[3])
        out = {"input_ids": [tok(s, truncation=True, max_length=max_length)["input_ids"] for s in sentences]}
    elif mode == "st-embed":
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(path, device="cpu")
        emb = model.encode(sentences, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)
        out = {"embeddings": emb.tolist()}
    else:
        sys.exit(f"unknown mode {mode}")
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
