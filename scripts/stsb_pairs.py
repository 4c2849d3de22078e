#!/usr/bin/env python3
"""Derives retrieval pairs from the STS Benchmark: every pair scored >= MIN (default 4.0) of
a split becomes an (anchor, positive) row, sentence1 as the anchor. Python's standard library
only.

    scripts/stsb_pairs.py ../shared/data/stsb/train.csv runs/stsb_pairs_train.csv [MIN]
"""
import csv
import sys

if len(sys.argv) not in (3, 4):
    sys.exit(__doc__.strip())
source, target = sys.argv[1], sys.argv[2]
minimum = float(sys.argv[3]) if len(sys.argv) == 4 else 4.0
with open(source, newline="", encoding="utf-8") as f:
    rows = [(r["sentence1"], r["sentence2"]) for r in csv.DictReader(f) if float(r["score"]) >= minimum]
with open(target, "w", newline="", encoding="utf-8") as f:
    out = csv.writer(f, lineterminator="\n")
    out.writerow(["anchor", "positive"])
    out.writerows(rows)
print(f"{target}: {len(rows)} pairs scored >= {minimum} from {source}", file=sys.stderr)
