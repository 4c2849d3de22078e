"""TREC's fine labels (50 classes) on the same train/dev split as the coarse ones.

usage: trec_fine_split.py DATA_DIR TRAIN_OUT.csv DEV_OUT.csv
`trec/train_split.csv` and `trec/dev_split.csv` partition `trec/train.csv` in its row order, and
`trec/train_fine.csv` has the same rows with fine labels; each row goes where its coarse twin
went. Prints the row and class counts and the SHA-256 of both outputs.
"""
import csv
import hashlib
import sys
from collections import Counter


def read(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def main() -> None:
    data, train_out, dev_out = sys.argv[1], sys.argv[2], sys.argv[3]
    coarse, fine = read(f"{data}/trec/train.csv"), read(f"{data}/trec/train_fine.csv")
    if [r["text"] for r in coarse] != [r["text"] for r in fine]:
        sys.exit("trec_fine_split.py: train.csv and train_fine.csv are not the same rows")
    dev_left = Counter((r["text"], r["label"]) for r in read(f"{data}/trec/dev_split.csv"))
    train_rows, dev_rows = [], []
    for c, f in zip(coarse, fine):
        key = (c["text"], c["label"])
        if dev_left[key] > 0:
            dev_left[key] -= 1
            dev_rows.append(f)
        else:
            train_rows.append(f)
    if sum(dev_left.values()):
        sys.exit("trec_fine_split.py: some rows of dev_split.csv are not in train.csv")
    for path, rows in ((train_out, train_rows), (dev_out, dev_rows)):
        with open(path, "w", newline="", encoding="utf-8") as f:
            out = csv.DictWriter(f, fieldnames=["text", "label"], lineterminator="\n")
            out.writeheader()
            out.writerows(rows)
        with open(path, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        classes = len({r["label"] for r in rows})
        print(f"{path}: {len(rows)} rows, {classes} classes, sha256 {digest}")


if __name__ == "__main__":
    main()
