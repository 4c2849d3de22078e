"""Retrieval metrics computed plainly, to check `sentence-mtl eval` on a pairs file.

usage: retrieval_metrics.py PAIRS.csv EMBEDDINGS.jsonl
PAIRS.csv has `anchor` and `positive` columns, and maybe `negative`; EMBEDDINGS.jsonl holds
{"text", "embedding"} for every text in it (as `sentence-mtl encode` writes). The distinct
anchors are the queries, the distinct positives and negatives the candidates (in order of first
appearance, a row's positive before its negative), and a query's relevant candidates the
positives of its rows. Candidates are ranked by cosine similarity, equal scores in candidate order. Prints JSON
with MRR@10, recall@1, recall@10 (means over queries), the counts, and per query [anchor, its
best-ranked positive, that rank, the candidate ranked first] as `predictions`.
"""
import csv
import json
import sys

import numpy as np


def main() -> None:
    with open(sys.argv[1], newline="", encoding="utf-8") as f:
        rows = [(r["anchor"], r["positive"], r.get("negative")) for r in csv.DictReader(f)]
    with open(sys.argv[2], encoding="utf-8") as f:
        vectors = {}
        for line in f:
            record = json.loads(line)
            vectors[record["text"]] = np.array(record["embedding"], dtype=np.float64)
    queries, candidates, relevant = [], [], {}
    for anchor, positive, negative in rows:
        if anchor not in relevant:
            queries.append(anchor)
            relevant[anchor] = []
        if positive not in candidates:
            candidates.append(positive)
        c = candidates.index(positive)
        if c not in relevant[anchor]:
            relevant[anchor].append(c)
        if negative is not None and negative not in candidates:
            candidates.append(negative)
    unit = lambda t: vectors[t] / np.linalg.norm(vectors[t])
    corpus = np.stack([unit(c) for c in candidates])
    mrr, recall1, recall10, predictions = [], [], [], []
    for q in queries:
        scores = corpus @ unit(q)
        order = sorted(range(len(candidates)), key=lambda c: (-scores[c], c))
        ranked = sorted((order.index(c) + 1, c) for c in relevant[q])
        ranks = [r for r, _ in ranked]
        predictions.append([q, candidates[ranked[0][1]], str(ranks[0]), candidates[order[0]]])
        mrr.append(1.0 / ranks[0] if ranks[0] <= 10 else 0.0)
        recall1.append(sum(r <= 1 for r in ranks) / len(ranks))
        recall10.append(sum(r <= 10 for r in ranks) / len(ranks))
    json.dump(
        {
            "mrr_at_10": float(np.mean(mrr)),
            "recall_at_1": float(np.mean(recall1)),
            "recall_at_10": float(np.mean(recall10)),
            "queries": len(queries),
            "candidates": len(candidates),
            "predictions": predictions,
        },
        sys.stdout,
    )


if __name__ == "__main__":
    main()
