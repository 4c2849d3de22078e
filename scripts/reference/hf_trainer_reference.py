"""The HF Trainer baseline of the recipe study: transformers' Trainer with its defaults
(AdamW at 5e-5, linear decay, no warm-up, weight decay 0) on AutoModelForSequenceClassification
over the same backbone, batch 32, one task at a time.

usage: hf_trainer_reference.py --model DIR --train TRAIN.csv --dev DEV.csv --epochs N
           [--seed S] [--threads N] [--out RESULT.json]
Prints one JSON object: dev accuracy and macro-F1, training seconds.
"""
import argparse
import csv
import json
import os
import sys
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch
from datasets import Dataset
from sklearn.metrics import accuracy_score, f1_score
from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer, TrainingArguments


def read(path):
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [r["text"] for r in rows], [r["label"] for r in rows]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--train", required=True)
    p.add_argument("--dev", required=True)
    p.add_argument("--epochs", type=float, required=True)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--threads", type=int)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--out")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    texts, labels = read(args.train)
    dev_texts, dev_labels = read(args.dev)
    classes = sorted(set(labels))
    index = {c: i for i, c in enumerate(classes)}
    tok = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForSequenceClassification.from_pretrained(args.model, num_labels=len(classes))
    encode = lambda t, l: Dataset.from_dict(
        {**tok(t, truncation=True, max_length=args.max_length), "labels": [index[x] for x in l]}
    )
    with tempfile.TemporaryDirectory() as out:
        training_args = TrainingArguments(
            output_dir=out,
            per_device_train_batch_size=32,
            per_device_eval_batch_size=64,
            num_train_epochs=args.epochs,
            seed=args.seed,
            logging_strategy="no",
            save_strategy="no",
            eval_strategy="no",
            report_to=[],
            use_cpu=True,
            disable_tqdm=True,
        )
        trainer = Trainer(model=model, args=training_args, train_dataset=encode(texts, labels),
                          data_collator=DataCollatorWithPadding(tok))
        started = time.time()
        trainer.train()
        seconds = time.time() - started
        predicted = trainer.predict(encode(dev_texts, dev_labels)).predictions.argmax(-1)
    truth = [index[x] for x in dev_labels]
    result = {
        "implementation": "hf-trainer",
        "train_seconds": seconds,
        "dev": {"accuracy": accuracy_score(truth, predicted), "macro_f1": f1_score(truth, predicted, average="macro")},
    }
    text = json.dumps(result)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    sys.exit(main())
