#!/usr/bin/env bash
# Data-parallel training on this CPU: 2 ranks x 1 thread (Gloo over 127.0.0.1) against one
# process x 2 threads, the same global batches (TREC train split, all-MiniLM-L6-v2, batch 32,
# fp32, no dev set so only training is timed), in alternating rounds. Prints training
# examples/s per round from each run's train_log.jsonl summary (rank 0's), and the ratio.
#   scripts/bench-data-parallel.sh [--steps N] [--rounds R] [--train-flags "FLAGS"]
# --train-flags adds flags to both runs (e.g. "--freeze embeddings --no-feature-cache").
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
steps=40
rounds=2
extra=""
while [ $# -gt 0 ]; do
  case "$1" in
    --steps) steps="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    --train-flags) extra="$2"; shift 2 ;;
    *) echo "bench-data-parallel.sh: unknown flag '$1' (known: --steps N, --rounds R, --train-flags FLAGS)" >&2; exit 2 ;;
  esac
done
bin="$root/target/release/sentence-mtl"
data="$root/../shared/data/trec/train_split.csv"
[ -x "$bin" ] || { echo "run scripts/setup.sh first (no $bin)" >&2; exit 1; }
[ -f "$data" ] || { echo "no $data (../shared/data)" >&2; exit 1; }
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
args=(train -m "$root/models/all-MiniLM-L6-v2" --task "trec=$data" --batch-size 32 --max-steps "$steps"
      --precision fp32 --device cpu -q --overwrite)
# shellcheck disable=SC2206 # the extra flags are split into words on purpose
args+=($extra)
rate() { python3 -c 'import json,sys; r=[json.loads(l) for l in open(sys.argv[1])]; print("%.1f" % [x for x in r if x.get("type")=="summary"][-1]["examples_per_sec"])' "$1/train_log.jsonl"; }
printf '%-6s %-28s %-28s %s\n' round "1 process x 2 threads ex/s" "2 ranks x 1 thread ex/s" ratio
port=$((29700 + RANDOM % 200))
for round in $(seq 1 "$rounds"); do
  "$bin" "${args[@]}" --threads 2 --out "$work/one" >/dev/null
  one="$(rate "$work/one")"
  port=$((port + 1))
  WORLD_SIZE=2 RANK=1 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port "$bin" "${args[@]}" --threads 1 --out "$work/two" >/dev/null &
  WORLD_SIZE=2 RANK=0 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port "$bin" "${args[@]}" --threads 1 --out "$work/two" >/dev/null
  wait
  two="$(rate "$work/two")"
  printf '%-6s %-28s %-28s %s\n' "$round" "$one" "$two" "$(python3 -c "print('%.2f' % ($two / $one))")"
done
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; $steps steps of batch 32 each"
