"""The seed parts of the recipe study (scripts/recipe-study.sh seeds | multitask-seeds): dev
accuracy and macro-F1 per configuration, task and seed, with the mean and the range over
seeds; runs not finished are left out.

usage: seed_summary.py DIR TITLE [TASK]   (TASK names the one task of HF Trainer's results; DIR: runs/recipes/seeds or runs/recipes/multitask-seeds;
                                    runs are named CONFIG-seedN, sentence-mtl's as folders,
                                    the references' as CONFIG-seedN.json)
"""
import glob, json, os, re, statistics, sys

folder, title = sys.argv[1], sys.argv[2]
single_task = sys.argv[3] if len(sys.argv) > 3 else "the task"


def ours(run):
    records = [json.loads(line) for line in open(f"{run}/train_log.jsonl")]
    last = [r for r in records if r["type"] == "eval"][-1]["tasks"]
    return {task: (s["accuracy"], s["macro_f1"]) for task, s in last.items()}


def reference(path):
    dev = json.load(open(path))["dev"]
    return {t: (s["accuracy"], s["macro_f1"]) for t, s in dev.items()} if "accuracy" not in dev else {single_task: (dev["accuracy"], dev["macro_f1"])}


def label(config):
    fixed = {"hf": "HF Trainer (defaults: 5e-5, linear)", "plain": "plain PyTorch loop (2e-5, constant)",
             "batch32": "batch 32, default rates (backbone 8e-5)",
             "tokens2048": "--batch-tokens 2048, default rates",
             "tokens2048-sqrt": "--batch-tokens 2048, rates x1.56",
             "tokens2048-linear": "--batch-tokens 2048, rates x2.44"}
    if config in fixed:
        return fixed[config]
    if config.startswith("ours-lr"):
        # ours-lrRATE, or ours-lrRATE-TASKSET where one folder holds several task sets
        rate = re.match(r"ours-lr([0-9.]+e-\d+)", config).group(1)
        return f"sentence-mtl, backbone {rate}"
    return "sentence-mtl, default: " + config.replace("-", " ")


results = {}  # (config, task) -> {seed: (accuracy, macro_f1)}
for path in sorted(glob.glob(f"{folder}/*")):
    name = os.path.basename(path).removesuffix(".json")
    if path.endswith((".time", ".stdout")) or not os.path.exists(f"{folder}/{name}.time") or os.path.getsize(f"{folder}/{name}.time") == 0:
        continue
    config, seed = re.match(r"(.*)-seed(\d+)$", name).groups()
    for task, scores in (ours(path) if os.path.isdir(path) else reference(path)).items():
        results.setdefault((config, task), {})[int(seed)] = scores

seeds = sorted({seed for by_seed in results.values() for seed in by_seed})
print(f"\n{title}; dev accuracy / macro-F1 per seed\n")
print("| configuration | task | " + " | ".join(f"seed {s}" for s in seeds) + " | mean accuracy (min-max) | mean macro-F1 (min-max) |")
print("|---|---|" + "---:|" * (len(seeds) + 2))
for (config, task), by_seed in results.items():
    cells = [f"{100 * by_seed[s][0]:.1f} / {100 * by_seed[s][1]:.1f}" if s in by_seed else "" for s in seeds]
    acc = [100 * a for a, _ in by_seed.values()]
    f1 = [100 * f for _, f in by_seed.values()]
    print(f"| {label(config)} | {task} | {' | '.join(cells)} | {statistics.mean(acc):.1f} ({min(acc):.1f}-{max(acc):.1f}) | {statistics.mean(f1):.1f} ({min(f1):.1f}-{max(f1):.1f}) |")
