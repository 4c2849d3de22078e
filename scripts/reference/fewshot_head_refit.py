"""Would SetFit's second stage help small-data mode? For each run of scripts/fewshot-study.sh
(runs/fewshot/ours/NAME/last), encodes its training draw and the full dev set with
`sentence-mtl encode`, fits scikit-learn's LogisticRegression on the draw's embeddings (as
SetFit fits its head on a fixed body) at C = 0.1, 1, 10, 100, and prints its dev accuracy
beside the jointly trained head's (runs/fewshot/ours-NAME.json), a nearest-class-centroid
classifier's, and logistic regression's at C = 1 on the un-normalised features (`encode
--no-normalize`, what heads read unless their task says otherwise).

usage: fewshot_head_refit.py NAME...   (NAME: sst2-64-draw20261202, ...; run from the project root)
"""
import csv
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
from sklearn.linear_model import LogisticRegression

DATA = os.path.join("..", "shared", "data")
DEV = {"sst2": f"{DATA}/sst2/dev.csv", "trec": f"{DATA}/trec/dev_split.csv"}


def embed(model, path, scratch, normalise=True):
    out = os.path.join(scratch, "embeddings.npy")
    subprocess.run(["target/release/sentence-mtl", "encode", "--model", model, "--device", "cpu", "-q",
                    "--input", path, "--output", out] + ([] if normalise else ["--no-normalize"]), check=True)
    return np.load(out)


def labels(path):
    with open(path, newline="", encoding="utf-8") as f:
        return np.array([row["label"] for row in csv.DictReader(f)])


print("| run | joint head | LR C=0.1 | LR C=1 | LR C=10 | LR C=100 | class centroid | LR C=1 on the unnormalised features |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
with tempfile.TemporaryDirectory() as scratch:
    for name in sys.argv[1:]:
        task = name.split("-")[0]
        draw, dev = f"runs/fewshot/draws/{name}.csv", DEV[task]
        model = f"runs/fewshot/ours/{name}/last"
        x_train, x_dev = embed(model, draw, scratch), embed(model, dev, scratch)
        y_train, y_dev = labels(draw), labels(dev)
        joint = json.load(open(f"runs/fewshot/ours-{name}.json"))["tasks"][task]["accuracy"]
        refits = [LogisticRegression(C=c, max_iter=1000).fit(x_train, y_train).predict(x_dev) for c in (0.1, 1, 10, 100)]
        classes = sorted(set(y_train))
        centroids = np.stack([x_train[y_train == c].mean(0) for c in classes])
        nearest = np.array(classes)[np.argmax(x_dev @ centroids.T, 1)]
        f_train, f_dev = embed(model, draw, scratch, False), embed(model, dev, scratch, False)
        on_features = LogisticRegression(C=1, max_iter=1000).fit(f_train, y_train).predict(f_dev)
        cells = [100 * joint] + [100 * np.mean(p == y_dev) for p in refits] + [100 * np.mean(nearest == y_dev)]
        cells.append(100 * np.mean(on_features == y_dev))
        print(f"| {name} | " + " | ".join(f"{c:.1f}" for c in cells) + " |", flush=True)
