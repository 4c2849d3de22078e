"""The sentence-transformers reference for `sentence-mtl train` on an embedding task:
SentenceTransformerTrainer with CoSENTLoss (a `sentence1,sentence2,score` file) or
MultipleNegativesRankingLoss (an `anchor,positive` file), the usual way, on the same batches.

Batches are replayed from a plan written by `sentence-mtl train --save-batch-plan` (the rows of
the named task, step by step), so both implementations see the same rows in the same order.
The rest is sentence-transformers' and HF Trainer's own: AdamW over every parameter at one
learning rate (no weight decay on biases and LayerNorm), linear warm-up then decay, gradient
clipping at 1, dropout on while training.

usage: st_train_reference.py --model DIR --train TRAIN.csv --dev DEV.csv --plan PLAN.jsonl
           --task NAME --loss cosent|mnrl --lr LR --warmup-ratio R --weight-decay W
           [--seed S] [--threads N] [--out RESULT.json]
Prints one JSON object: pairs/s over the training steps, peak RSS, dev metrics (Spearman and
Pearson of cosine similarity for cosent; MRR@10 and recall@1/@10 for mnrl).
"""
import argparse
import csv
import json
import os
import resource
import sys
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch
from datasets import Dataset
from scipy.stats import pearsonr, spearmanr
from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
from sentence_transformers.losses import CoSENTLoss, MultipleNegativesRankingLoss
from sentence_transformers.training_args import SentenceTransformerTrainingArguments
from transformers import TrainerCallback


def read_rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


class ReplayedBatches:
    """A batch sampler that yields the plan's batches of one task, in order."""

    def __init__(self, batches):
        self.batches = batches

    def __iter__(self):
        return iter(self.batches)

    def __len__(self):
        return len(self.batches)


class Timer(TrainerCallback):
    """Seconds spent in training steps only (no evaluation or saving happens here)."""

    def __init__(self):
        self.started = None
        self.seconds = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        self.started = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.seconds += time.perf_counter() - self.started


def dev_metrics(model, rows, loss):
    with torch.no_grad():
        if loss == "cosent":
            a = model.encode([r["sentence1"] for r in rows], batch_size=64, convert_to_tensor=True)
            b = model.encode([r["sentence2"] for r in rows], batch_size=64, convert_to_tensor=True)
            cos = torch.nn.functional.cosine_similarity(a, b).tolist()
            gold = [float(r["score"]) for r in rows]
            return {"spearman": float(spearmanr(cos, gold).statistic), "pearson": float(pearsonr(cos, gold).statistic)}
        queries, candidates, relevant = [], [], {}
        for r in rows:
            if r["anchor"] not in relevant:
                queries.append(r["anchor"])
                relevant[r["anchor"]] = set()
            if r["positive"] not in candidates:
                candidates.append(r["positive"])
            relevant[r["anchor"]].add(candidates.index(r["positive"]))
        q = model.encode(queries, batch_size=64, convert_to_tensor=True, normalize_embeddings=True)
        c = model.encode(candidates, batch_size=64, convert_to_tensor=True, normalize_embeddings=True)
        scores = (q @ c.T).tolist()
        mrr, r1, r10 = [], [], []
        for i, query in enumerate(queries):
            order = sorted(range(len(candidates)), key=lambda j: (-scores[i][j], j))
            ranks = sorted(order.index(j) + 1 for j in relevant[query])
            mrr.append(1.0 / ranks[0] if ranks[0] <= 10 else 0.0)
            r1.append(sum(r <= 1 for r in ranks) / len(ranks))
            r10.append(sum(r <= 10 for r in ranks) / len(ranks))
        n = len(queries)
        return {"mrr_at_10": sum(mrr) / n, "recall_at_1": sum(r1) / n, "recall_at_10": sum(r10) / n}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--train", required=True)
    p.add_argument("--dev", required=True)
    p.add_argument("--plan", required=True)
    p.add_argument("--task", required=True)
    p.add_argument("--loss", choices=["cosent", "mnrl"], required=True)
    p.add_argument("--lr", type=float, required=True)
    p.add_argument("--warmup-ratio", type=float, default=0.0)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--threads", type=int)
    p.add_argument("--out")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    with open(args.plan, encoding="utf-8") as f:
        batches = [json.loads(line)["rows"] for line in f if json.loads(line)["task"] == args.task]
    rows = read_rows(args.train)
    if args.loss == "cosent":
        columns = {"sentence1": [r["sentence1"] for r in rows], "sentence2": [r["sentence2"] for r in rows]}
        columns["score"] = [float(r["score"]) for r in rows]
    else:
        columns = {"anchor": [r["anchor"] for r in rows], "positive": [r["positive"] for r in rows]}
    dataset = Dataset.from_dict(columns)

    model = SentenceTransformer(args.model, device="cpu")
    loss = CoSENTLoss(model) if args.loss == "cosent" else MultipleNegativesRankingLoss(model)
    timer = Timer()
    with tempfile.TemporaryDirectory() as out:
        training_args = SentenceTransformerTrainingArguments(
            output_dir=out,
            max_steps=len(batches),
            per_device_train_batch_size=max(len(b) for b in batches),
            learning_rate=args.lr,
            warmup_ratio=args.warmup_ratio,
            weight_decay=args.weight_decay,
            lr_scheduler_type="linear",
            max_grad_norm=1.0,
            seed=args.seed,
            logging_strategy="no",
            save_strategy="no",
            eval_strategy="no",
            report_to=[],
            use_cpu=True,
            dataloader_drop_last=False,
            disable_tqdm=True,
        )

        class Replaying(SentenceTransformerTrainer):
            def get_batch_sampler(self, *_args, **_kwargs):
                return ReplayedBatches(batches)

        trainer = Replaying(model=model, args=training_args, train_dataset=dataset, loss=loss, callbacks=[timer])
        trainer.train()
    pairs = sum(len(b) for b in batches)
    result = {
        "implementation": "sentence-transformers",
        "steps": len(batches),
        "pairs": pairs,
        "train_seconds": timer.seconds,
        "pairs_per_sec": pairs / timer.seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "dev": dev_metrics(model.eval(), read_rows(args.dev), args.loss),
    }
    text = json.dumps(result)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    sys.exit(main())
