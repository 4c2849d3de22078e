#!/usr/bin/env python3
"""Derives retrieval pairs from the STS Benchmark. Python's standard library only.

    scripts/stsb_pairs.py SPLIT.csv OUT.csv [MIN]            (pairs)
    scripts/stsb_pairs.py --queries SPLIT.csv OUT.csv [MIN]  (queries)

pairs: every pair scored >= MIN (default 4.0) of a split becomes an (anchor, positive) row,
sentence1 as the anchor; both columns have sentences of similar lengths.
queries: asymmetric pairs, short queries against longer passages, as in retrieval: every pair
scored >= MIN (default 3.0) becomes (the first five words of sentence1, sentence1 followed by
sentence2); a query already taken by an earlier row is skipped, so no two rows share one.
"""
import csv
import os
import sys

args = sys.argv[1:]
queries = bool(args) and args[0] == "--queries"
if queries:
    args = args[1:]
if len(args) not in (2, 3):
    sys.exit(__doc__.strip())
source, target = args[0], args[1]
minimum = float(args[2]) if len(args) == 3 else (3.0 if queries else 4.0)
with open(source, newline="", encoding="utf-8") as f:
    reader = csv.DictReader(f)
    lacking = [c for c in ("sentence1", "sentence2", "score") if c not in (reader.fieldnames or [])]
    if lacking:
        sys.exit(f"{source}: no column {', '.join(lacking)}: an STS Benchmark split has sentence1, sentence2, score")
    rows = []
    for line, r in enumerate(reader, start=2):
        try:
            score = float(r["score"])
        except (TypeError, ValueError):
            sys.exit(f"{source}:{line}: score {r['score']!r} is not a number")
        if score >= minimum:
            rows.append((r["sentence1"], r["sentence2"]))
if queries:
    taken, passages = set(), []
    for first, second in rows:
        query = " ".join(first.split()[:5])
        if query not in taken:
            taken.add(query)
            passages.append((query, f"{first} {second}"))
    rows = passages
os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
with open(target, "w", newline="", encoding="utf-8") as f:
    out = csv.writer(f, lineterminator="\n")
    out.writerow(["anchor", "positive"])
    out.writerows(rows)
what = "queries and passages" if queries else "pairs"
print(f"{target}: {len(rows)} {what} from pairs scored >= {minimum} in {source}", file=sys.stderr)
