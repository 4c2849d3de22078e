#!/usr/bin/env bash
# Training speed of two sentence-mtl builds (say the default torch 2.4.0 one and the
# current-libtorch one of scripts/build-for-torch.sh), alternating rounds of the same run:
# TREC + SST-2 from all-MiniLM-L6-v2 at the default recipe, STEPS optimizer steps (default
# 120), batch 32, 2 threads, at --precision P (default fp32) (no dev sets). Prints the
# examples/s of each round (training steps only, from the run's summary), the ratio, and the
# final losses of both builds (two libtorch versions draw other dropout masks, so with
# dropout on they differ in the second decimal; with EXTRA='--dropout 0' only by rounding).
#   [EXTRA='FLAGS'] scripts/compare-training.sh OLD_BINARY NEW_BINARY [ROUNDS] [STEPS] [PRECISION]
# EXTRA adds flags to every run of both builds.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
[ $# -ge 2 ] || { echo "usage: scripts/compare-training.sh OLD_BINARY NEW_BINARY [ROUNDS] [STEPS] [PRECISION]" >&2; exit 2; }
old="$1" new="$2" rounds="${3:-3}" steps="${4:-120}" precision="${5:-fp32}"
for b in "$old" "$new"; do [ -x "$b" ] || { echo "compare-training.sh: $b is not an executable" >&2; exit 2; }; done
model=models/all-MiniLM-L6-v2
[ -f "$model/config.json" ] || { echo "compare-training.sh: no $model: run scripts/setup.sh first" >&2; exit 1; }
data="$root/../shared/data"
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT

# One run of BINARY into RUN; prints "examples/s losses" from its summary and last log line.
train() {
  local binary="$1" run="$2"
  "$binary" train -m "$model" --task "trec=$data/trec/train.csv" --task "sst2=$data/sst2/train.csv" \
    --max-steps "$steps" --batch-size 32 --threads 2 --precision "$precision" --device cpu \
    --log-every "$steps" --out "$work/$run" --overwrite -q ${EXTRA:-} > /dev/null
  python3 - "$work/$run/train_log.jsonl" <<'PY'
import json, sys
records = [json.loads(line) for line in open(sys.argv[1])]
summary = [r for r in records if r["type"] == "summary"][-1]
last = [r for r in records if r["type"] == "step"][-1]
losses = " ".join(f"{task} {loss:.6f}" for task, loss in sorted(last["loss"].items()))
print(f"{summary['examples_per_sec']:.1f} {losses}")
PY
}

printf '%-6s %-14s %-14s %s\n' round "old examples/s" "new examples/s" ratio
for round in $(seq "$rounds"); do
  read -r old_speed old_losses < <(train "$old" old)
  read -r new_speed new_losses < <(train "$new" new)
  ratio=$(python3 -c "print(f'{$new_speed / $old_speed:.2f}x')")
  printf '%-6s %-14s %-14s %s\n' "$round" "$old_speed" "$new_speed" "$ratio"
done
echo "last losses at step $steps: old: $old_losses; new: $new_losses"
