"""SetFit (setfit 1.1) at its defaults but for num_iterations=20: contrastive fine-tuning of the
body on 2 x 20 x rows pairs built from the labels, 1 epoch, batch 16, body lr 2e-5 with 10 %
warm-up, then a logistic-regression head; the few-shot reference of docs/recipes.md. No dev set
is used for training or selection; the full dev set is scored once at the end.

usage: setfit_reference.py --model DIR --train CSV --dev CSV --threads N --out JSON
Writes {"accuracy", "macro_f1", "train_s", "predict_s", "train_rows"} to --out.
"""
import argparse
import csv
import json
import os
import tempfile
import time


def read(path):
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [r["text"] for r in rows], [r["label"] for r in rows]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--train", required=True)
    p.add_argument("--dev", required=True)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--out", required=True)
    args = p.parse_args()
    import torch
    torch.set_num_threads(args.threads)
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments
    from sklearn.metrics import accuracy_score, f1_score

    texts, labels = read(args.train)
    dev_texts, dev_labels = read(args.dev)
    started = time.time()
    model = SetFitModel.from_pretrained(args.model, device="cpu")
    # num_iterations=20 (pairs = 2 x 20 x rows): the setting of SetFit's paper and examples; its
    # default (every unique pair, oversampled) needs 122880 pairs for 64 TREC examples per class.
    # No checkpoints: SetFit would otherwise save them into ./checkpoints.
    settings = TrainingArguments(num_iterations=20, report_to="none", save_strategy="no",
                                 output_dir=tempfile.mkdtemp(prefix="setfit-"))
    trainer = Trainer(model=model, args=settings,
                      train_dataset=Dataset.from_dict({"text": texts, "label": labels}))
    trainer.train()
    train_s = time.time() - started
    started = time.time()
    predicted = [str(p) for p in model.predict(dev_texts, batch_size=64, as_numpy=True)]
    predict_s = time.time() - started
    result = {
        "accuracy": accuracy_score(dev_labels, predicted),
        "macro_f1": f1_score(dev_labels, predicted, average="macro"),
        "train_s": train_s,
        "predict_s": predict_s,
        "train_rows": len(texts),
    }
    print(json.dumps(result))
    with open(args.out, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
