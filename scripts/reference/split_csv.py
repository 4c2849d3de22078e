"""A fixed, label-stratified train/dev split of a `text,label` CSV (for data without a dev split,
such as TweetEval's validation file used in the recipe study).

usage: split_csv.py INPUT.csv TRAIN_OUT.csv DEV_OUT.csv DEV_SHARE SEED
Each label's rows are shuffled with random.Random(SEED) and the first round(DEV_SHARE x n) go
to the dev file; both outputs keep the input's row order otherwise. Prints the row counts and
the SHA-256 of both outputs, so a run can say exactly which split it used.
"""
import csv
import hashlib
import random
import sys


def main() -> None:
    source, train_out, dev_out, share, seed = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), int(sys.argv[5])
    with open(source, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        header, rows = reader.fieldnames, list(reader)
    rng = random.Random(seed)
    dev_rows = set()
    for label in sorted({r["label"] for r in rows}):
        indices = [i for i, r in enumerate(rows) if r["label"] == label]
        rng.shuffle(indices)
        dev_rows.update(indices[: round(share * len(indices))])
    for path, keep in ((train_out, lambda i: i not in dev_rows), (dev_out, lambda i: i in dev_rows)):
        with open(path, "w", newline="", encoding="utf-8") as f:
            out = csv.DictWriter(f, fieldnames=header, lineterminator="\n")
            out.writeheader()
            out.writerows(r for i, r in enumerate(rows) if keep(i))
    for path in (train_out, dev_out):
        data = open(path, "rb").read()
        rows = data.count(b"\n") - 1
        print(f"{path}: {rows} rows, sha256 {hashlib.sha256(data).hexdigest()}", file=sys.stderr)


if __name__ == "__main__":
    main()
