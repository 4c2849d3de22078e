"""scipy's correlations for a similarity predictions file written by `sentence-mtl eval`.

usage: scipy_correlation.py PREDICTIONS.csv
Reads the `score` (gold) and `cosine` (predicted) columns and prints JSON with
scipy.stats.spearmanr and pearsonr of the two.
"""
import csv
import json
import sys

from scipy.stats import pearsonr, spearmanr


def main() -> None:
    with open(sys.argv[1], newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    gold = [float(r["score"]) for r in rows]
    predicted = [float(r["cosine"]) for r in rows]
    json.dump(
        {"spearman": float(spearmanr(predicted, gold).statistic), "pearson": float(pearsonr(predicted, gold).statistic)},
        sys.stdout,
    )


if __name__ == "__main__":
    main()
