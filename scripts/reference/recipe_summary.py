"""The 3-epoch table of the recipe study (scripts/recipe-study.sh): sentence-mtl's confirmation
runs and the references, each with its final dev evaluation and wall time; runs not made are
left out.

usage: recipe_summary.py OUT   (OUT: the study's folder, runs/recipes)
"""
import json, os, sys
out = sys.argv[1]
def ours(run):
    log = f"{out}/confirm/{run}/train_log.jsonl"
    if not os.path.exists(log):
        return None
    records = [json.loads(l) for l in open(log)]
    last = [r for r in records if r["type"] == "eval"][-1]
    return {t: (s["accuracy"], s["macro_f1"]) for t, s in last["tasks"].items()}, float(open(f"{out}/confirm/{run}.time").read())
def ref(kind, name):
    path = f"{out}/{kind}/{name}.json"
    if not os.path.exists(path):
        return None
    r = json.load(open(path))
    dev = r["dev"]
    scores = {name: (dev["accuracy"], dev["macro_f1"])} if kind == "hf" else {t: (s["accuracy"], s["macro_f1"]) for t, s in dev.items()}
    return scores, float(open(f"{out}/{kind}/{name}.time").read())
rows = []
rows.append(("sentence-mtl --recipe seed", "trec+sst2", ours("seed-trec+sst2")))
rows.append(("sentence-mtl --lr-schedule constant", "trec+sst2", ours("constant-trec+sst2")))
for run in ("trec+sst2", "trec", "sst2", "sst5", "tweeteval"):
    rows.append(("sentence-mtl (defaults)", run, ours(f"default-{run}")))
for run in ("trec+sst2", "sst5", "tweeteval"):
    rows.append(("plain PyTorch loop", run, ref("plain", run)))
for run in ("trec", "sst2", "sst5", "tweeteval"):
    rows.append(("HF Trainer (defaults)", run, ref("hf", run)))
print("\n3 epochs, batch 32, fp32, the final dev evaluation of each run (no selection across epochs); dev accuracy / macro-F1\n")
print("| implementation | task set | dev accuracy / macro-F1 | wall time |\n|---|---|---|---:|")
for impl, run, result in rows:
    if result is None:
        continue
    scores, seconds = result
    cells = ", ".join(f"{t} {100 * a:.1f} / {100 * f:.1f}" for t, (a, f) in scores.items())
    print(f"| {impl} | {run} | {cells} | {int(seconds // 60)}m{round(seconds % 60):02d}s |")
