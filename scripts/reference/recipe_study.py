"""The recipe study behind `train --recipe default` (scripts/recipe-study.sh runs it).

usage: recipe_study.py BIN MODEL DATA SPLITS OUT THREADS PRECISION EPOCHS
(SPLITS: the folder of scripts/reference/split_csv.py's TweetEval split)

Every configuration trains all-MiniLM-L6-v2 on each task set for EPOCHS epochs and is scored
by the last dev evaluation's mean macro-F1 (selection on dev sets only; the official test
splits are not in the data). The grid is sequential, a factor at a time from the seed's
recipe, each step keeping the best value so far (on the mean over task sets):
  1. backbone learning rate 1e-5 (the seed's), 2e-5, 4e-5, 8e-5;
  2. layer decay 0.9 or 1.0 (none);
  3. warm-up ratio 0.1 or 0.0;
  4. schedule linear, cosine or constant;
  5. heads and projection learning rate x1 or x3;
  6. label smoothing 0 or 0.1.
That is 10 configurations per task set instead of the 192 of the full product; one factor at a
time misses interactions, which is why the order starts with the factor that moves results
most (the backbone rate) and why the final pick is confirmed against the seed at 3 epochs by
scripts/recipe-study.sh.
Prints a markdown table of every run and the chosen values as JSON on the last line.
"""
import json
import os
import subprocess
import sys
import time

BIN, MODEL, DATA, SPLITS, OUT, THREADS, PRECISION, EPOCHS = sys.argv[1:9]
TASK_SETS = {
    "trec+sst2": [
        f"trec={DATA}/trec/train_split.csv,{DATA}/trec/dev_split.csv",
        f"sst2={DATA}/sst2/train.csv,{DATA}/sst2/dev.csv",
    ],
    "sst5": [f"sst5={DATA}/sst5/train.csv,{DATA}/sst5/dev.csv"],
    "tweeteval": [f"tweeteval={SPLITS}/tweeteval_train.csv,{SPLITS}/tweeteval_dev.csv"],
}
SEED = {"lr_backbone": 1e-5, "layer_decay": 0.9, "warmup_ratio": 0.1, "lr_schedule": "linear", "head_scale": 1, "label_smoothing": 0.0}


def flags(c):
    return [
        "--lr-backbone", str(c["lr_backbone"]),
        "--layer-decay", str(c["layer_decay"]),
        "--warmup-ratio", str(c["warmup_ratio"]),
        "--lr-schedule", c["lr_schedule"],
        "--lr-projection", str(1e-4 * c["head_scale"]),
        "--lr-heads", str(1e-3 * c["head_scale"]),
        "--label-smoothing", str(c["label_smoothing"]),
    ]


def name(c):
    return (f"lr{c['lr_backbone']:g}-ld{c['layer_decay']:g}-wu{c['warmup_ratio']:g}-{c['lr_schedule']}"
            f"-h{c['head_scale']:g}-ls{c['label_smoothing']:g}")


results = {}


def run(c):
    """Mean macro-F1 over task sets (and each set's per-task scores) for configuration c."""
    key = name(c)
    if key in results:
        return results[key]["mean"]
    scores = {}
    for set_name, tasks in TASK_SETS.items():
        out = f"{OUT}/{set_name}/{key}"
        log = f"{out}/train_log.jsonl"
        # A finished run is kept (an interrupted study continues), unless KEEP=0 says rerun all.
        kept = os.environ.get("KEEP", "1") == "1" and os.path.exists(log) and '"summary"' in open(log).read()
        if not kept:
            args = [BIN, "train", "--model", MODEL, "--out", out, "--overwrite", "--quiet", "--device", "cpu",
                    "--threads", THREADS, "--precision", PRECISION, "--epochs", EPOCHS]
            for t in tasks:
                args += ["--task", t]
            started = time.time()
            subprocess.run(args + flags(c), check=True, stdout=subprocess.DEVNULL)
            print(f"[study] {set_name} {key}: {time.time() - started:.0f}s", file=sys.stderr)
        records = [json.loads(l) for l in open(log)]
        last = [r for r in records if r["type"] == "eval"][-1]["tasks"]
        scores[set_name] = {t: (s["accuracy"], s["macro_f1"]) for t, s in last.items()}
    per_set = [sum(f1 for _, f1 in s.values()) / len(s) for s in scores.values()]
    results[key] = {"config": dict(c), "scores": scores, "mean": sum(per_set) / len(per_set)}
    return results[key]["mean"]


best = dict(SEED)
for factor, values in [
    ("lr_backbone", [1e-5, 2e-5, 4e-5, 8e-5]),
    ("layer_decay", [0.9, 1.0]),
    ("warmup_ratio", [0.1, 0.0]),
    ("lr_schedule", ["linear", "cosine", "constant"]),
    ("head_scale", [1, 3]),
    ("label_smoothing", [0.0, 0.1]),
]:
    candidates = [dict(best, **{factor: v}) for v in values]
    best = max(candidates, key=run)

print(f"\nRecipe study: all-MiniLM-L6-v2, {EPOCHS} epoch(s), batch 32, precision {PRECISION}, {THREADS} threads; "
      "dev accuracy / macro-F1 of the last evaluation; mean = mean over task sets of their mean macro-F1\n")
sets = list(TASK_SETS)
header = ["backbone lr", "layer decay", "warm-up", "schedule", "heads x", "label smoothing"] + sets + ["mean"]
print("| " + " | ".join(header) + " |")
print("|" + "---|" * len(header))
for key, r in results.items():
    c = r["config"]
    cells = [f"{c['lr_backbone']:g}", f"{c['layer_decay']:g}", f"{c['warmup_ratio']:g}", c["lr_schedule"],
             f"{c['head_scale']:g}", f"{c['label_smoothing']:g}"]
    for s in sets:
        cells.append(", ".join(f"{t} {100 * a:.1f} / {100 * f:.1f}" for t, (a, f) in r["scores"][s].items()))
    mark = " **(chosen)**" if key == name(best) else ""
    cells.append(f"{100 * r['mean']:.2f}{mark}")
    print("| " + " | ".join(cells) + " |")
print(json.dumps(best))
