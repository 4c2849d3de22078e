#!/usr/bin/env bash
# Training figures on the full TREC + SST-2 data (../shared/data), all-MiniLM-L6-v2, CPU:
#   epoch   one epoch of multi-task training, and the same with --freeze backbone
#           (--no-feature-cache here and in quality and freeze-speed: the backbone runs
#           every step; the cache parts measure the feature cache)
#   quality the default recipe (3 epochs) multi-task, TREC alone, SST-2 alone, and
#           multi-task with --freeze backbone
#   freeze  one epoch of multi-task training with --freeze embeddings and --freeze layers:3,
#           reported beside the epoch part's rows (run that part first)
#   freeze-speed  examples/s of each --freeze mode relative to full fine-tuning, from short
#           runs (40 steps, no dev set) alternated over 2 rounds, so that a machine whose
#           speed drifts (a shared VM) affects every mode alike
#   cache   the default recipe (3 epochs) with --freeze backbone and with --freeze embeddings
#           --freeze layers:3, each with the feature cache (the default) and with
#           --no-feature-cache, and the PyTorch reference with a frozen backbone on the cached
#           run's batches; wall time includes building the cache
#   cache-epochs  --freeze backbone with and without the feature cache at 3 and at 5 epochs
#           (CACHE_EPOCHS="3 5"): the cached run's cost hardly grows with epochs, the
#           uncached one's grows with each, so the ratio says when the cache pays what
#   cache-bf16  the same as cache-epochs at 3 epochs under --precision bf16 (a CPU with
#           AVX-512 BF16 or AMX): the cache computes the training sentences in bf16 there
#   cache-bound  what the cache build could cost at best on this CPU: the linear layers' FLOPs
#           over the distinct sentences' real tokens at libtorch's measured fp32 matmul rate,
#           beside the build's measured time (from the 3-epoch runs of cache-epochs, run first),
#           and the wall-time ratio a build that fast would give
# Prints markdown tables (examples/s over training steps only, peak RSS, wall time, dev
# accuracy and macro-F1 of the best checkpoint).
#   scripts/measure-training.sh [epoch] [quality] [freeze] [freeze-speed] [cache] [cache-epochs] [cache-bf16] [cache-bound]
#   (default: all but cache-bf16, which needs a CPU with bf16 instructions)
# THREADS=N sets the thread count (default: all cores), BIN the binary (default: this build's).
# Runs go to runs/measure/.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
[ -x /usr/bin/time ] || { echo "measure-training.sh: needs GNU time at /usr/bin/time (on Debian and Ubuntu: apt-get install time)" >&2; exit 1; }
parts=("$@"); [ ${#parts[@]} -eq 0 ] && parts=(epoch quality freeze freeze-speed cache cache-epochs cache-bound)
# Every part named is checked before the first one runs (they take minutes to hours each).
for part in "${parts[@]}"; do
  case "$part" in
    epoch|quality|freeze|freeze-speed|cache|cache-epochs|cache-bf16|cache-bound) ;;
    *) echo "measure-training.sh: unknown part $part (epoch, quality, freeze, freeze-speed, cache, cache-epochs, cache-bf16, cache-bound)" >&2; exit 2 ;;
  esac
done
scripts/setup.sh --reference >&2
threads="${THREADS:-$(nproc)}"
data="$root/../shared/data"
trec="trec=$data/trec/train_split.csv,$data/trec/dev_split.csv"
sst2="sst2=$data/sst2/train.csv,$data/sst2/dev.csv"
out=runs/measure
mkdir -p "$out"
train=("${BIN:-target/release/sentence-mtl}" train --model models/all-MiniLM-L6-v2 --device cpu --threads "$threads" --quiet --overwrite)

run() { # NAME ARGS...: trains into $out/NAME, keeps wall time and peak RSS
  local name="$1"; shift
  echo "[measure] $name: ${*}" >&2
  /usr/bin/time -f "%e %M" -o "$out/$name.time" "${train[@]}" --out "$out/$name" "$@" > "$out/$name.stdout"
}

report() { # TITLE NAME...
  .venv/bin/python - "$out" "$threads" "$@" <<'PY'
import json, sys
out, threads, title, names = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
print(f"\n{title} ({threads} threads)\n")
print("| run | steps | examples/s | peak RSS (MB) | wall time | TREC dev acc / macro-F1 | SST-2 dev acc / macro-F1 |")
print("|---|---:|---:|---:|---:|---:|---:|")
for name in names:
    wall, rss = open(f"{out}/{name}.time").read().split()
    records = [json.loads(l) for l in open(f"{out}/{name}/train_log.jsonl")]
    summary = [r for r in records if r["type"] == "summary"][-1]
    best = max((r for r in records if r["type"] == "eval"), key=lambda r: r.get("mean_main_metric", r.get("mean_macro_f1")))
    cell = lambda t: f"{100*best['tasks'][t]['accuracy']:.1f} / {100*best['tasks'][t]['macro_f1']:.1f}" if t in best["tasks"] else "-"
    minutes, seconds = divmod(float(wall), 60)
    print(f"| {name} | {summary['step']} | {summary['examples_per_sec']:.1f} | {int(rss)/1024:.0f} | {int(minutes)}m{seconds:02.0f}s | {cell('trec')} | {cell('sst2')} |")
PY
}

for part in "${parts[@]}"; do
  case "$part" in
    epoch)
      run epoch-multitask --task "$trec" --task "$sst2" --epochs 1
      # Frozen rows run the backbone every step (the cache part measures the feature cache).
      run epoch-frozen --task "$trec" --task "$sst2" --epochs 1 --freeze backbone --no-feature-cache
      report "One epoch of multi-task training, defaults otherwise" epoch-multitask epoch-frozen
      ;;
    quality)
      run multitask --task "$trec" --task "$sst2"
      run trec-only --task "$trec"
      run sst2-only --task "$sst2"
      run multitask-frozen --task "$trec" --task "$sst2" --freeze backbone --no-feature-cache
      report "Default recipe (3 epochs, best checkpoint by dev mean macro-F1)" multitask trec-only sst2-only multitask-frozen
      ;;
    freeze)
      [ -f "$out/epoch-multitask.time" ] || { echo "measure-training.sh: run the epoch part first" >&2; exit 2; }
      run epoch-embeddings --task "$trec" --task "$sst2" --epochs 1 --freeze embeddings
      run epoch-layers3 --task "$trec" --task "$sst2" --epochs 1 --freeze layers:3
      report "One epoch of multi-task training by --freeze mode" epoch-multitask epoch-embeddings epoch-layers3 epoch-frozen
      ;;
    freeze-speed)
      modes=(none embeddings layers:3 backbone)
      for round in 1 2; do
        for mode in "${modes[@]}"; do
          run "speed-${mode/:/}-$round" --task "trec=$data/trec/train_split.csv" --task "sst2=$data/sst2/train.csv" \
            --max-steps 40 --freeze "$mode" --no-feature-cache
        done
      done
      .venv/bin/python - "$out" "$threads" "${modes[@]}" <<'PY'
import json, statistics, sys
out, threads, modes = sys.argv[1], sys.argv[2], sys.argv[3:]
def rate(mode, round):
    records = [json.loads(l) for l in open(f"{out}/speed-{mode.replace(':', '')}-{round}/train_log.jsonl")]
    return [r for r in records if r["type"] == "summary"][-1]["examples_per_sec"]
rates = {m: [rate(m, r) for r in (1, 2)] for m in modes}
base = statistics.mean(rates["none"])
print(f"\nTraining speed by --freeze mode: 40 steps each, modes alternated over 2 rounds ({threads} threads)\n")
print("| --freeze | examples/s (round 1, round 2) | relative to none |\n|---|---:|---:|")
for m in modes:
    print(f"| {m} | {rates[m][0]:.1f}, {rates[m][1]:.1f} | {statistics.mean(rates[m]) / base:.2f}x |")
PY
      ;;
    cache)
      run cache-frozen --task "$trec" --task "$sst2" --freeze backbone --save-batch-plan "$out/cache-frozen-plan.jsonl"
      run nocache-frozen --task "$trec" --task "$sst2" --freeze backbone --no-feature-cache
      run cache-layers3 --task "$trec" --task "$sst2" --freeze embeddings --freeze layers:3
      run nocache-layers3 --task "$trec" --task "$sst2" --freeze embeddings --freeze layers:3 --no-feature-cache
      steps="$(wc -l < "$out/cache-frozen-plan.jsonl")"
      echo "[measure] reference-frozen: train_reference.py --freeze-backbone, $steps steps of the cached run's batches" >&2
      /usr/bin/time -f "%e %M" -o "$out/reference-frozen.time" .venv/bin/python scripts/reference/train_reference.py \
        --model models/all-MiniLM-L6-v2 --task "$trec" --task "$sst2" --freeze-backbone --plan "$out/cache-frozen-plan.jsonl" \
        --max-steps "$steps" --threads "$threads" --out "$out/reference-frozen.json" > /dev/null
      report "Frozen layers computed once (feature cache) or every step, default recipe (3 epochs)" cache-frozen nocache-frozen cache-layers3 nocache-layers3
      .venv/bin/python - "$out" <<'PY'
import json, sys
out = sys.argv[1]
wall = lambda n: float(open(f"{out}/{n}.time").read().split()[0])
rss = lambda n: int(open(f"{out}/{n}.time").read().split()[1]) / 1024
ref = json.load(open(f"{out}/reference-frozen.json"))
d = ref["dev"]
print(f"| reference-frozen (PyTorch, same batches) | {ref['steps']} | {ref['examples_per_sec']:.1f} | {rss('reference-frozen'):.0f} | "
      f"{int(wall('reference-frozen') // 60)}m{wall('reference-frozen') % 60:02.0f}s | {100*d['trec']['accuracy']:.1f} / {100*d['trec']['macro_f1']:.1f} | "
      f"{100*d['sst2']['accuracy']:.1f} / {100*d['sst2']['macro_f1']:.1f} |")
print()
for cached, plain, what in [("cache-frozen", "nocache-frozen", "--freeze backbone"), ("cache-layers3", "nocache-layers3", "--freeze embeddings --freeze layers:3")]:
    print(f"{what}: wall time {wall(plain) / wall(cached):.2f}x faster with the cache (including its build), peak RSS {rss(cached):.0f} vs {rss(plain):.0f} MB")
print(f"--freeze backbone with the cache against the PyTorch reference: wall time {wall('reference-frozen') / wall('cache-frozen'):.2f}x")
PY
      ;;
    cache-epochs)
      names=()
      for epochs in ${CACHE_EPOCHS:-3 5}; do
        run "cache-frozen-${epochs}ep" --task "$trec" --task "$sst2" --freeze backbone --epochs "$epochs"
        run "nocache-frozen-${epochs}ep" --task "$trec" --task "$sst2" --freeze backbone --epochs "$epochs" --no-feature-cache
        names+=("cache-frozen-${epochs}ep" "nocache-frozen-${epochs}ep")
      done
      report "--freeze backbone with the feature cache and without, by epochs" "${names[@]}"
      .venv/bin/python - "$out" ${CACHE_EPOCHS:-3 5} <<'PY'
import sys
out, epochs = sys.argv[1], sys.argv[2:]
wall = lambda n: float(open(f"{out}/{n}.time").read().split()[0])
print()
for e in epochs:
    print(f"{e} epochs: wall time {wall(f'nocache-frozen-{e}ep') / wall(f'cache-frozen-{e}ep'):.2f}x faster with the cache (including its build)")
PY
      ;;
    cache-bf16)
      run cache-bf16-3ep --task "$trec" --task "$sst2" --freeze backbone --epochs 3 --precision bf16
      run nocache-bf16-3ep --task "$trec" --task "$sst2" --freeze backbone --epochs 3 --precision bf16 --no-feature-cache
      report "--freeze backbone in bf16 with the feature cache and without, 3 epochs" cache-bf16-3ep nocache-bf16-3ep
      .venv/bin/python - "$out" <<'PY'
import sys
out = sys.argv[1]
wall = lambda n: float(open(f"{out}/{n}.time").read().split()[0])
print(f"\nbf16, 3 epochs: wall time {wall('nocache-bf16-3ep') / wall('cache-bf16-3ep'):.2f}x faster with the cache (including its build)")
PY
      ;;
    cache-bound)
      [ -f "$out/cache-frozen-3ep.time" ] && [ -f "$out/nocache-frozen-3ep.time" ] ||
        { echo "measure-training.sh: run the cache-epochs part (with 3 epochs) first" >&2; exit 2; }
      .venv/bin/python - "$out" "$threads" "$data" models/all-MiniLM-L6-v2 <<'PY'
import csv, json, sys, time
import torch
from transformers import AutoTokenizer
out, threads, data, model = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
torch.set_num_threads(threads)
files = ["trec/train_split.csv", "trec/dev_split.csv", "sst2/train.csv", "sst2/dev.csv"]
texts = {row["text"] for f in files for row in csv.DictReader(open(f"{data}/{f}"))}
tokenizer = AutoTokenizer.from_pretrained(model, clean_up_tokenization_spaces=True)
tokens = sum(len(ids) for ids in tokenizer(sorted(texts), truncation=True, max_length=256)["input_ids"])
config = json.load(open(f"{model}/config.json"))
h, i, layers = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
rows = 64 * round(tokens / len(texts))  # one inference batch of 64 sentences of average length
def seconds_per_row(k, n, repeats=30):
    a, b = torch.randn(rows, k), torch.randn(k, n)
    for _ in range(3):
        a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return (time.perf_counter() - start) / repeats / rows
# Per token and block: Q, K, V and the attention output (h x h each), then h x i and i x h.
per_token = layers * (4 * seconds_per_row(h, h) + seconds_per_row(h, i) + seconds_per_row(i, h))
flops = 2 * tokens * layers * (4 * h * h + 2 * h * i)
floor = per_token * tokens
wall = lambda n: float(open(f"{out}/{n}.time").read().split()[0])
first_step = json.loads(open(f"{out}/cache-frozen-3ep/train_log.jsonl").readline())["elapsed_s"]
cached, plain = wall("cache-frozen-3ep"), wall("nocache-frozen-3ep")
best = cached - first_step + floor
print(f"\nThe feature cache's build against the matmul floor ({threads} threads)\n")
print(f"- {len(texts)} distinct training and dev sentences, {tokens} real tokens ({tokens / len(texts):.1f} each)")
print(f"- the linear layers over them: {flops / 1e12:.2f} TFLOP; libtorch's fp32 matmul at these shapes "
      f"({rows} rows): {flops / floor / 1e9:.0f} GFLOP/s, so {floor:.1f} s at the least")
print(f"- the cached run's first step came {first_step:.1f} s after its start (loading and the cache build); "
      f"its wall time {cached:.1f} s, the uncached run's {plain:.1f} s: {plain / cached:.2f}x")
print(f"- a build at the floor, with nothing else in it (no attention, LayerNorm, GELU, padding or "
      f"loading), would give {plain / best:.2f}x")
PY
      ;;
    *) echo "measure-training.sh: unknown part $part (epoch, quality, freeze, freeze-speed, cache, cache-epochs, cache-bf16, cache-bound)" >&2; exit 2 ;;
  esac
done
