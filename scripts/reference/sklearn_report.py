"""scikit-learn's numbers for a predictions file written by `sentence-mtl eval`.

usage: sklearn_report.py PREDICTIONS.csv LABEL [LABEL ...]
Reads the `label` (true) and `predicted` columns and prints JSON with
classification_report(..., labels=LABELS, output_dict=True, zero_division=0) and
confusion_matrix(..., labels=LABELS).
"""
import csv
import json
import sys

from sklearn.metrics import accuracy_score, classification_report, confusion_matrix


def main() -> None:
    path, labels = sys.argv[1], sys.argv[2:]
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    y_true = [r["label"] for r in rows]
    y_pred = [r["predicted"] for r in rows]
    report = classification_report(y_true, y_pred, labels=labels, output_dict=True, zero_division=0)
    json.dump(
        {
            "report": report,
            "accuracy": accuracy_score(y_true, y_pred),
            "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        },
        sys.stdout,
    )


if __name__ == "__main__":
    main()
