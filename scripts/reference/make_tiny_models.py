"""Writes tiny random DistilBERT and BERT checkpoints with transformers' own save_pretrained.

Parity tests load these in Rust and compare against transformers' outputs, so correctness is
measured against Hugging Face, not against ourselves. The vocabulary and tokenizer files are
borrowed from a real model folder so tokenisation is realistic.

usage: make_tiny_models.py OUT_DIR TOKENIZER_DIR
"""
import shutil
import sys
from pathlib import Path

import torch
from transformers import BertConfig, BertModel, DistilBertConfig, DistilBertModel

TOKENIZER_FILES = ["vocab.txt", "tokenizer_config.json", "tokenizer.json", "special_tokens_map.json"]


def main() -> None:
    out, tokenizer_dir = Path(sys.argv[1]), Path(sys.argv[2])
    vocab_size = sum(1 for _ in open(tokenizer_dir / "vocab.txt", encoding="utf-8"))
    torch.manual_seed(0)
    models = {
        "tiny-distilbert": DistilBertModel(
            DistilBertConfig(vocab_size=vocab_size, dim=32, n_layers=2, n_heads=4, hidden_dim=64, max_position_embeddings=128)
        ),
        "tiny-bert": BertModel(
            BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                       intermediate_size=64, max_position_embeddings=128),
            add_pooling_layer=True,
        ),
    }
    for name, model in models.items():
        target = out / name
        # Random init has tiny LayerNorm/bias values; perturb them so every parameter matters.
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p) * 0.05)
        # safetensors: the default since transformers 4.35 and the only format in 5.x, which
        # no longer accepts the safe_serialization argument
        model.eval().save_pretrained(target)
        for f in TOKENIZER_FILES:
            if (tokenizer_dir / f).exists():
                shutil.copy(tokenizer_dir / f, target / f)
        print(target)


if __name__ == "__main__":
    main()
