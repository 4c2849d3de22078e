"""The drift tables of scripts/measure-embeddings.sh: STS-B dev Spearman of the pre-trained
model and after each run of the `drift` part (metrics of last/), then, from the `drift-seeds`
part, TREC + SST-2 against TREC + SST-2 + STS-B at the same number of steps over several seeds,
with the difference per seed (and with STS-B at a smaller --task-share; and one batch of each
task per step, --grad-accum 3, against TREC + SST-2 at --grad-accum 2 and plain). Runs that
have not finished are left out.

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


def config_label(config):
    if config.startswith("classification"):
        return "TREC + SST-2" + (" (--grad-accum 2)" if config.endswith("accum2") else "")
    if config.startswith("stsb-accum3-w"):
        return f"TREC + SST-2 + STS-B (--grad-accum 3, STS-B weight {config.removeprefix('stsb-accum3-w')})"
    share = config.removeprefix("stsb-share-")
    return "TREC + SST-2 + STS-B" + ("" if config == "with-stsb" else f" (share {share})")


def table(baselines, others):
    """Each of `others` against each of `baselines` (runs of the same steps), seed by seed,
    over the seeds every one of them has."""
    seeds = sorted(set.intersection(*(set(by_seed[c]) for c in [*baselines, *others])))
    steps = by_seed[baselines[0]][seeds[0]][0]
    print(f"\n{' and '.join(map(config_label, baselines))} against {', '.join(map(config_label, others))}, "
          f"{steps} steps each, seeds {', '.join(map(str, seeds))} ({threads} threads; metrics of last/)\n")
    print("| model | task | " + " | ".join(f"seed {s}" for s in seeds) + " | mean |")
    print("|---|---|" + "---:|" * (len(seeds) + 1))
    for task in ("stsb", "trec", "sst2"):
        for config in [*baselines, *others]:
            values = [by_seed[config][s][1][task] for s in seeds]
            cells = [f"{v:.2f}" for v in values] + [f"{statistics.mean(values):.2f}"]
            print(f"| {config_label(config)} | {task} | " + " | ".join(cells) + " |")
        for config in others:
            for baseline in baselines:
                values = [by_seed[config][s][1][task] - by_seed[baseline][s][1][task] for s in seeds]
                cells = [f"{v:+.2f}" for v in values] + [f"**{statistics.mean(values):+.2f}**"]
                print(f"| {config_label(config)} - {config_label(baseline)} | {task} | " + " | ".join(cells) + " |")


# Shares compare with plain classification; runs that accumulate one batch of each task per
# step (--grad-accum 3) with classification at --grad-accum 2 (the same steps and the same
# classification batches) and with plain classification (the same steps).
shares = sorted(c for c in by_seed if c != "classification" and "accum" not in c)
if "classification" in by_seed and shares:
    table(["classification"], shares)
for accumulated in sorted(c for c in by_seed if "accum3" in c):
    baselines = [b for b in ("classification-accum2", "classification") if b in by_seed]
    if baselines:
        table(baselines, [accumulated])
