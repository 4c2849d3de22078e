"""The seeds part of the recipe study (scripts/recipe-study.sh seeds): TweetEval dev accuracy
and macro-F1 per configuration and seed, with the mean and the range over seeds; runs not made
are left out.

usage: seed_summary.py DIR   (DIR: runs/recipes/seeds)
"""
import glob, json, os, re, statistics, sys

folder = sys.argv[1]


def ours(run):
    records = [json.loads(line) for line in open(f"{run}/train_log.jsonl")]
    last = [r for r in records if r["type"] == "eval"][-1]["tasks"]["tweeteval"]
    return last["accuracy"], last["macro_f1"]


def reference(path):
    dev = json.load(open(path))["dev"]
    dev = dev.get("tweeteval", dev)
    return dev["accuracy"], dev["macro_f1"]


results = {}
for path in sorted(glob.glob(f"{folder}/*")):
    name = os.path.basename(path)
    if name.endswith((".time", ".stdout")) or not os.path.exists(f"{path}.time" if os.path.isdir(path) else path[:-5] + ".time"):
        continue
    config, seed = re.match(r"(.*)-seed(\d+)", name.removesuffix(".json")).groups()
    results.setdefault(config, {})[int(seed)] = ours(path) if os.path.isdir(path) else reference(path)

labels = {"hf": "HF Trainer (defaults: 5e-5, linear)", "plain": "plain PyTorch loop (2e-5, constant)"}
print("\nTweetEval, 3 epochs, batch 32, fp32, final dev evaluation (400 rows); accuracy / macro-F1 per seed\n")
print("| configuration | seed 1 | seed 2 | seed 3 | mean accuracy (min-max) | mean macro-F1 (min-max) |")
print("|---|---:|---:|---:|---:|---:|")
for config, by_seed in results.items():
    label = labels.get(config) or "sentence-mtl, backbone " + config.removeprefix("ours-lr")
    cells = [f"{100 * by_seed[s][0]:.1f} / {100 * by_seed[s][1]:.1f}" if s in by_seed else "" for s in (1, 2, 3)]
    acc = [100 * a for a, _ in by_seed.values()]
    f1 = [100 * f for _, f in by_seed.values()]
    print(f"| {label} | {' | '.join(cells)} | {statistics.mean(acc):.1f} ({min(acc):.1f}-{max(acc):.1f}) | {statistics.mean(f1):.1f} ({min(f1):.1f}-{max(f1):.1f}) |")
