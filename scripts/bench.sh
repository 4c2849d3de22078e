#!/usr/bin/env bash
# sentence-mtl against an independent PyTorch reference (scripts/reference/), in one run on
# the same machine and thread count, alternating the two implementations:
#   1. multi-task training, TREC + SST-2, identical batches (same order, rows and padding), in
#      R rounds of (sentence-mtl, reference) back to back: on a shared VM whose speed drifts
#      over minutes, a single run of each carries the drift into the ratio; the table gives
#      median speeds and the median of the per-round ratios, with every round listed
#   2. the same with each implementation at its defaults (ours: length-grouped batches;
#      the reference: shuffled batches, as HF Trainer does)
#   3. the same with the backbone frozen (identical batches)
#   4. encode throughput and first-embedding latency (scripts/bench-encode.sh)
# Both start from all-MiniLM-L6-v2 and the same projection/head initial values (the reference's
# architecture: a 256-d projection, which sentence-mtl adds to MiniLM only when asked).
#
#   scripts/bench.sh           full: 300 training steps per run, 3 rounds, 6920 sentences to encode
#   scripts/bench.sh --quick   CI-sized: 30 steps, 1 round, 1000 sentences (a few minutes)
#   --rounds R                 rounds of the identical-batch pair (about 8.5 minutes each in
#                              full mode on 2 cores)
#   --steps N                  training steps per run
# THREADS=N sets the thread count (default: all cores).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
[ -x /usr/bin/time ] || { echo "bench.sh: needs GNU time at /usr/bin/time (on Debian and Ubuntu: apt-get install time)" >&2; exit 1; }
quick=0 rounds="" steps=""
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1; shift ;;
    --rounds|--steps)
      [ $# -ge 2 ] || { echo "bench.sh: $1 needs a value" >&2; exit 2; }
      [[ "$2" =~ ^[1-9][0-9]*$ ]] || { echo "bench.sh: $1 must be a positive whole number, got '$2'" >&2; exit 2; }
      if [ "$1" = --rounds ]; then rounds="$2"; else steps="$2"; fi
      shift 2 ;;
    *) echo "bench.sh: unknown flag $1 (known: --quick, --rounds R, --steps N)" >&2; exit 2 ;;
  esac
done
if [ "$quick" = 1 ]; then : "${rounds:=1}" "${steps:=30}"; else : "${rounds:=3}" "${steps:=300}"; fi
scripts/setup.sh --reference >&2
threads="${THREADS:-$(nproc)}"
export OMP_NUM_THREADS="$threads" MKL_NUM_THREADS="$threads" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
data="$root/../shared/data"
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
model=models/all-MiniLM-L6-v2
tasks=(--task "trec=$data/trec/train_split.csv,$data/trec/dev_split.csv" --task "sst2=$data/sst2/train.csv,$data/sst2/dev.csv")
ours=(target/release/sentence-mtl train --model "$model" "${tasks[@]}" --device cpu --threads "$threads" --quiet --overwrite
  --projection-dim 256)
ref=(.venv/bin/python scripts/reference/train_reference.py --model "$model" "${tasks[@]}" --threads "$threads" --max-steps "$steps")
say() { printf '[bench] %s\n' "$*" >&2; }
timed() { # NAME COMMAND...: runs it, keeps peak RSS (KB) in $work/NAME.rss
  local name="$1"; shift
  /usr/bin/time -f "%M" -o "$work/$name.rss" "$@" > "$work/$name.out" 2> "$work/$name.err" || { cat "$work/$name.err" >&2; exit 1; }
}

# The matmul peak is sampled before, between and after the training runs and the best
# sample kept: a shared VM's speed drifts (45 to 68 GFLOP/s within minutes), and one sample
# taken in a slow minute once gave "169% of peak".
peak_sample() {
  .venv/bin/python - "$threads" >> "$work/peak_samples" <<'PY'
import sys, time, torch
torch.set_num_threads(int(sys.argv[1]))
a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
for _ in range(3):
    a @ b
best = 0.0
for _ in range(5):
    t = time.perf_counter(); a @ b; best = max(best, 2 * 2048**3 / (time.perf_counter() - t))
print(best / 1e9)
PY
}

say "fp32 matmul peak of this CPU ($threads threads), first sample"
peak_sample
say "initial projection and head values (sentence-mtl --freeze all, same seed)"
timed init "${ours[@]}" --freeze all --out "$work/init"
for round in $(seq "$rounds"); do
  say "1/3 identical batches, round $round/$rounds: sentence-mtl ($steps steps, $threads threads), writing its batch plan"
  timed "ours_$round" "${ours[@]}" --max-steps "$steps" --out "$work/ours_$round" --save-batch-plan "$work/plan.jsonl"
  say "1/3 identical batches, round $round/$rounds: PyTorch reference"
  timed "ref_$round" "${ref[@]}" --plan "$work/plan.jsonl" --init-heads "$work/init/last/model.safetensors" --out "$work/ref_$round.json"
  peak_sample
done
say "2/3 defaults: PyTorch reference with shuffled batches (sentence-mtl's defaults are its runs above)"
timed ref_shuffled "${ref[@]}" --shuffle --init-heads "$work/init/last/model.safetensors" --out "$work/ref_shuffled.json"
peak_sample
say "3/3 frozen backbone: sentence-mtl"
# The backbone runs every step, as in the reference (the feature cache would compute it
# once; scripts/measure-training.sh cache measures that by wall time).
timed ours_frozen "${ours[@]}" --max-steps "$steps" --freeze backbone --no-feature-cache --out "$work/ours_frozen"
say "3/3 frozen backbone: PyTorch reference"
timed ref_frozen "${ref[@]}" --plan "$work/plan.jsonl" --freeze-backbone --init-heads "$work/init/last/model.safetensors" --out "$work/ref_frozen.json"
say "fp32 matmul peak, last sample"
peak_sample
.venv/bin/python scripts/reference/bench_table.py cpu "$work" "$steps" "$threads" "$model" "$rounds"
echo
if [ "$quick" = 1 ]; then scripts/bench-encode.sh --quick --rounds 1; else scripts/bench-encode.sh --rounds 2; fi
