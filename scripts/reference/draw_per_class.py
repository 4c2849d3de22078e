"""K training rows per class of a `text,label` CSV, drawn with a fixed seed (the few-shot study).

usage: draw_per_class.py INPUT.csv OUTPUT.csv K SEED
Each label's rows are shuffled with random.Random(SEED) and the first K kept (a label with fewer
rows keeps all of them, with a warning); the output keeps the input's row order. Prints the row
count and the SHA-256 of the output, so a run can say exactly which examples it saw.
"""
import csv
import hashlib
import random
import sys


def main() -> None:
    source, target, k, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    with open(source, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        header, rows = reader.fieldnames, list(reader)
    rng = random.Random(seed)
    keep = set()
    for label in sorted({r["label"] for r in rows}):
        indices = [i for i, r in enumerate(rows) if r["label"] == label]
        if len(indices) < k:
            print(f"{source}: label {label} has {len(indices)} rows, fewer than {k}", file=sys.stderr)
        rng.shuffle(indices)
        keep.update(indices[:k])
    with open(target, "w", newline="", encoding="utf-8") as f:
        out = csv.DictWriter(f, fieldnames=header, lineterminator="\n")
        out.writeheader()
        out.writerows(r for i, r in enumerate(rows) if i in keep)
    data = open(target, "rb").read()
    print(f"{target}: {len(keep)} rows, sha256 {hashlib.sha256(data).hexdigest()}", file=sys.stderr)


if __name__ == "__main__":
    main()
