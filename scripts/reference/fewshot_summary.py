"""The few-shot study's tables (scripts/fewshot-study.sh): per task, rows per class and draw,
sentence-mtl's and SetFit's dev accuracy / macro-F1 and seconds; then, where a size has several
draws, the mean and range over draws and how often sentence-mtl was at least SetFit's accuracy.
Runs that have not finished on both sides are left out.

usage: fewshot_summary.py DIR [SETFIT_DIR]   (DIR: runs/fewshot; SETFIT_DIR: DIR/setfit)
"""
import glob
import json
import os
import re
import statistics
import sys

out = sys.argv[1]
setfit_dir = sys.argv[2] if len(sys.argv) > 2 else f"{out}/setfit"


def seconds(path):
    return float(open(path).read().split()[-1])


runs = {}  # (task, k) -> {draw: (ours, setfit)}
for path in sorted(glob.glob(f"{out}/ours-*.json")):
    name = os.path.basename(path).removeprefix("ours-").removesuffix(".json")
    task, k, draw = re.match(r"(\w+)-(\d+)-draw(\d+)$", name).groups()
    setfit_path = f"{setfit_dir}/{name}.json"
    if not os.path.exists(setfit_path):
        continue
    ours = json.load(open(path))["tasks"][task]
    ours["train_s"] = seconds(f"{out}/ours-{name}.train_s")
    ours["predict_s"] = seconds(f"{out}/ours-{name}.predict_s")
    runs.setdefault((task, int(k)), {})[int(draw)] = (ours, json.load(open(setfit_path)))

print("| task | rows per class | draw seed | sentence-mtl accuracy / macro-F1 | SetFit accuracy / macro-F1 | sentence-mtl train + score s | SetFit train + score s |")
print("|---|---:|---:|---:|---:|---:|---:|")
for (task, k), draws in sorted(runs.items()):
    for draw, (ours, setfit) in sorted(draws.items()):
        print(f"| {task} | {k} | {draw} | {100 * ours['accuracy']:.1f} / {100 * ours['macro_f1']:.1f} | "
              f"{100 * setfit['accuracy']:.1f} / {100 * setfit['macro_f1']:.1f} | "
              f"{ours['train_s']:.0f} + {ours['predict_s']:.0f} | {setfit['train_s']:.0f} + {setfit['predict_s']:.0f} |")

several = {key: draws for key, draws in runs.items() if len(draws) > 1}
if several:
    print("\n| task | rows per class | draws | sentence-mtl mean accuracy (min-max) / macro-F1 | SetFit mean accuracy (min-max) / macro-F1 | sentence-mtl >= SetFit | mean train s sentence-mtl / SetFit |")
    print("|---|---:|---:|---:|---:|---:|---:|")

    def mean(values, key):
        xs = [100 * v[key] for v in values]
        return f"{statistics.mean(xs):.1f} ({min(xs):.1f}-{max(xs):.1f})"

    for (task, k), draws in sorted(several.items()):
        ours = [o for o, _ in draws.values()]
        setfit = [s for _, s in draws.values()]
        at_least = sum(o["accuracy"] >= s["accuracy"] for o, s in draws.values())
        print(f"| {task} | {k} | {len(draws)} | {mean(ours, 'accuracy')} / {statistics.mean(100 * o['macro_f1'] for o in ours):.1f} | "
              f"{mean(setfit, 'accuracy')} / {statistics.mean(100 * s['macro_f1'] for s in setfit):.1f} | "
              f"{at_least} of {len(draws)} | {statistics.mean(o['train_s'] for o in ours):.0f} / "
              f"{statistics.mean(s['train_s'] for s in setfit):.0f} |")
