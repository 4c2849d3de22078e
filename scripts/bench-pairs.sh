#!/usr/bin/env bash
# Training speed, sentence-mtl against the PyTorch reference on identical batches, in
# alternating pairs: R rounds of (sentence-mtl, reference) on the same batch plan and the same
# initial weights, no dev evaluation. bench.sh runs each implementation once, so on a shared
# VM whose speed drifts over minutes its ratio carries the drift; here each pair runs back to
# back and the median of the per-pair ratios is printed with every pair.
#
#   scripts/bench-pairs.sh [--steps N] [--rounds R]      (defaults: 100 steps, 3 rounds)
# THREADS=N sets the thread count (default: all cores).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
steps=100
rounds=3
while [ $# -gt 0 ]; do
  case "$1" in
    --steps|--rounds)
      [ $# -ge 2 ] || { echo "bench-pairs.sh: $1 needs a value" >&2; exit 2; }
      [[ "$2" =~ ^[1-9][0-9]*$ ]] || { echo "bench-pairs.sh: $1 must be a positive whole number, got '$2'" >&2; exit 2; }
      if [ "$1" = --steps ]; then steps="$2"; else rounds="$2"; fi
      shift 2 ;;
    *) echo "bench-pairs.sh: unknown flag $1 (known: --steps N, --rounds R)" >&2; exit 2 ;;
  esac
done
scripts/setup.sh >&2
threads="${THREADS:-$(nproc)}"
export OMP_NUM_THREADS="$threads" MKL_NUM_THREADS="$threads" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
data="$root/../shared/data"
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
model=models/all-MiniLM-L6-v2
tasks=(--task "trec=$data/trec/train_split.csv" --task "sst2=$data/sst2/train.csv")
ours=(target/release/sentence-mtl train --model "$model" "${tasks[@]}" --device cpu --threads "$threads" --quiet --overwrite)
ref=(.venv/bin/python scripts/reference/train_reference.py --model "$model" "${tasks[@]}" --threads "$threads" --max-steps "$steps")
say() { printf '[bench-pairs] %s\n' "$*" >&2; }
quiet() { "$@" > "$work/last.out" 2>&1 || { cat "$work/last.out" >&2; exit 1; }; }

say "initial projection and head values (sentence-mtl --freeze all, same seed)"
quiet "${ours[@]}" --freeze all --out "$work/init"
for round in $(seq "$rounds"); do
  say "round $round/$rounds: sentence-mtl, $steps steps ($threads threads)"
  quiet "${ours[@]}" --max-steps "$steps" --out "$work/ours_$round" --save-batch-plan "$work/plan.jsonl"
  say "round $round/$rounds: PyTorch reference on the same batches"
  "${ref[@]}" --plan "$work/plan.jsonl" --init-heads "$work/init/last/model.safetensors" \
    > "$work/ref_$round.json" 2> "$work/last.out" || { cat "$work/last.out" >&2; exit 1; }
done

.venv/bin/python - "$work" "$rounds" "$steps" "$threads" <<'PY'
import json, statistics, sys
work, rounds, steps, threads = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
print(f"training all-MiniLM-L6-v2 on TREC + SST-2, identical batches, {steps} steps of batch 32, "
      f"CPU, {threads} threads, {rounds} alternating pairs\n")
print("| pair | sentence-mtl examples/s | PyTorch examples/s | ratio |\n|---|---:|---:|---:|")
ratios = []
for r in range(1, rounds + 1):
    log = [json.loads(l) for l in open(f"{work}/ours_{r}/train_log.jsonl")]
    ours = [x for x in log if x["type"] == "summary"][-1]["examples_per_sec"]
    ref = json.load(open(f"{work}/ref_{r}.json"))["examples_per_sec"]
    ratios.append(ours / ref)
    print(f"| {r} | {ours:.1f} | {ref:.1f} | {ours / ref:.2f}x |")
print(f"\nmedian ratio: {statistics.median(ratios):.2f}x (min {min(ratios):.2f}x, max {max(ratios):.2f}x)")
PY
