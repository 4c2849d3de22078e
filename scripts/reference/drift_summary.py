"""The drift tables of scripts/measure-embeddings.sh: STS-B dev Spearman of the pre-trained
model and after each run of the `drift` part (metrics of last/), then, from the `drift-seeds`
part, TREC + SST-2 against TREC + SST-2 + STS-B at the same number of steps over several seeds,
with the difference per seed (and with STS-B at a smaller --task-share). Runs that have not
finished are left out.

usage: drift_summary.py DIR THREADS   (DIR: runs/measure-embeddings)
"""
import glob
import json
import os
import re
import statistics
import sys

out, threads = sys.argv[1], sys.argv[2]
RUNS = [
    ("stsb-alone", "STS-B alone, one epoch"),
    ("mtl-classification", "TREC + SST-2"),
    ("mtl-classification-longer", "TREC + SST-2"),
    ("mtl-with-stsb", "TREC + SST-2 + STS-B"),
    ("mtl-with-stsb-longer", "TREC + SST-2 + STS-B"),
]


def scores(run):
    """(steps, {task: main score in points}) of a run folder and its eval-RUN.json."""
    tasks = json.load(open(f"{out}/eval-{run}.json"))["tasks"]
    summary = [json.loads(line) for line in open(f"{out}/{run}/train_log.jsonl") if '"summary"' in line][-1]
    metric = {task: 100 * (s["spearman"] if task == "stsb" else s["accuracy"]) for task, s in tasks.items()}
    return summary["step"], metric


def batches(run, steps):
    """Batches per task in a round-robin run, as TREC / SST-2 / STS-B."""
    if "stsb-alone" in run:
        return f"0 / 0 / {steps}"
    n = 3 if "with-stsb" in run else 2
    return " / ".join(str((steps - i + n - 1) // n) for i in range(n))


def cell(metric, task):
    return f"{metric[task]:.2f}" if task in metric else "-"


if os.path.exists(f"{out}/pretrained.json"):
    pre = json.load(open(f"{out}/pretrained.json"))["tasks"]
    print(f"\nSTS-B dev Spearman before and after multi-task training, all-MiniLM-L6-v2, sentence-mtl defaults, seed 42 ({threads} threads; metrics of last/)\n")
    print("| model | steps (TREC / SST-2 / STS-B batches) | STS-B dev Spearman | TREC dev acc | SST-2 dev acc |")
    print("|---|---:|---:|---:|---:|")
    print(f"| pre-trained | - | {100 * pre['stsb']['spearman']:.2f} | - | - |")
    for run, label in RUNS:
        if os.path.exists(f"{out}/eval-{run}.json"):
            steps, metric = scores(run)
            print(f"| {label} | {steps} ({batches(run, steps)}) | {cell(metric, 'stsb')} | {cell(metric, 'trec')} | {cell(metric, 'sst2')} |")

by_seed = {}  # config -> {seed: (steps, metric)}
for path in sorted(glob.glob(f"{out}/eval-drift-seeds/*.json")):
    config, seed = re.match(r"(.*)-seed(\d+)\.json$", os.path.basename(path)).groups()
    by_seed.setdefault(config, {})[int(seed)] = scores(f"drift-seeds/{config}-seed{seed}")
if "classification" not in by_seed or len(by_seed) < 2:
    sys.exit(0)
others = sorted(c for c in by_seed if c != "classification")
seeds = sorted(set.intersection(*(set(by_seed[c]) for c in by_seed)))
steps = by_seed["classification"][seeds[0]][0]


def config_label(config):
    if config == "classification":
        return "TREC + SST-2"
    share = config.removeprefix("stsb-share-")
    return "TREC + SST-2 + STS-B" + ("" if config == "with-stsb" else f" (share {share})")


print(f"\nTREC + SST-2 against TREC + SST-2 + STS-B, {steps} steps each, seeds {', '.join(map(str, seeds))} ({threads} threads; metrics of last/)\n")
print("| model | task | " + " | ".join(f"seed {s}" for s in seeds) + " | mean |")
print("|---|---|" + "---:|" * (len(seeds) + 1))
for task in ("stsb", "trec", "sst2"):
    rows = [("classification", None)] + [(c, None) for c in others] + [(c, "difference") for c in others]
    for config, kind in rows:
        if kind == "difference":
            values = [by_seed[config][s][1][task] - by_seed["classification"][s][1][task] for s in seeds]
            cells = [f"{v:+.2f}" for v in values] + [f"**{statistics.mean(values):+.2f}**"]
            name = f"{config_label(config)} - TREC + SST-2"
        else:
            values = [by_seed[config][s][1][task] for s in seeds]
            cells = [f"{v:.2f}" for v in values] + [f"{statistics.mean(values):.2f}"]
            name = config_label(config)
        print(f"| {name} | {task} | " + " | ".join(cells) + " |")
