#!/usr/bin/env bash
# Data-parallel training on this CPU: 2 ranks x 1 thread (Gloo over 127.0.0.1) against one
# process x 2 threads, the same global batches (TREC train split, all-MiniLM-L6-v2, batch 32,
# fp32, no dev set so only training is timed), in alternating rounds. Prints training
# examples/s per round from each run's train_log.jsonl summary (rank 0's), and the ratio.
#   scripts/bench-data-parallel.sh [--steps N] [--rounds R] [--train-flags "FLAGS"] [--baseline BIN]
# --train-flags adds flags to both runs (e.g. "--freeze embeddings --no-feature-cache").
# --baseline BIN adds, each round, the 2-rank run of another sentence-mtl binary (an older
# build, to measure a change to the data-parallel step) and the ratio of the two.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
steps=40
rounds=2
extra=""
baseline=""
while [ $# -gt 0 ]; do
  case "$1" in
    --steps|--rounds|--train-flags|--baseline) [ $# -ge 2 ] || { echo "bench-data-parallel.sh: $1 needs a value" >&2; exit 2; } ;;&
    --steps|--rounds) [[ "$2" =~ ^[1-9][0-9]*$ ]] || { echo "bench-data-parallel.sh: $1 must be a positive whole number, got '$2'" >&2; exit 2; } ;;&
    --steps) steps="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    --train-flags) extra="$2"; shift 2 ;;
    --baseline) baseline="$2"; shift 2 ;;
    *) echo "bench-data-parallel.sh: unknown flag '$1' (known: --steps N, --rounds R, --train-flags FLAGS, --baseline BIN)" >&2; exit 2 ;;
  esac
done
bin="$root/target/release/sentence-mtl"
data="$root/../shared/data/trec/train_split.csv"
[ -x "$bin" ] || { echo "run scripts/setup.sh first (no $bin)" >&2; exit 1; }
[ -z "$baseline" ] || [ -x "$baseline" ] || { echo "bench-data-parallel.sh: --baseline $baseline is not an executable" >&2; exit 2; }
[ -f "$data" ] || { echo "no $data (../shared/data)" >&2; exit 1; }
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
args=(train -m "$root/models/all-MiniLM-L6-v2" --task "trec=$data" --batch-size 32 --max-steps "$steps"
      --precision fp32 --device cpu -q --overwrite)
# shellcheck disable=SC2206 # the extra flags are split into words on purpose
args+=($extra)
summary() { python3 -c 'import json,sys; r=[json.loads(l) for l in open(sys.argv[1])]; print([x for x in r if x.get("type")=="summary"][-1].get(sys.argv[2], "-"))' "$1/train_log.jsonl" "$2"; }
rate() { printf '%.1f' "$(summary "$1" examples_per_sec)"; }
ratio() { python3 -c "print('%.2f' % ($1 / $2))"; }
two_ranks() { # BIN OUT: a launch of two on the next port; fails when either rank does
  port=$((port + 1))
  WORLD_SIZE=2 RANK=1 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port "$1" "${args[@]}" --threads 1 --out "$2" >/dev/null &
  local rank1=$!
  WORLD_SIZE=2 RANK=0 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port "$1" "${args[@]}" --threads 1 --out "$2" >/dev/null ||
    { kill "$rank1" 2>/dev/null || true; wait "$rank1" 2>/dev/null || true; echo "bench-data-parallel.sh: rank 0 failed" >&2; exit 1; }
  wait "$rank1" || { echo "bench-data-parallel.sh: rank 1 failed" >&2; exit 1; }
}
header=(round "1 process x 2 threads ex/s" "2 ranks x 1 thread ex/s" "ratio")
[ -n "$baseline" ] && header+=("2 ranks, --baseline ex/s" "2 ranks / --baseline")
table_row() { printf '|'; printf ' %s |' "$@"; echo; }
table_row "${header[@]}"
table_row "${header[@]/*/---}"
port=$((29700 + RANDOM % 200))
for round in $(seq 1 "$rounds"); do
  "$bin" "${args[@]}" --threads 2 --out "$work/one" >/dev/null
  one="$(rate "$work/one")"
  two_ranks "$bin" "$work/two"
  two="$(rate "$work/two")"
  row=("$round" "$one" "$two" "$(ratio "$two" "$one")")
  if [ -n "$baseline" ]; then
    two_ranks "$baseline" "$work/baseline"
    old="$(rate "$work/baseline")"
    row+=("$old" "$(ratio "$two" "$old")")
  fi
  table_row "${row[@]}"
done
echo "gradient buckets all-reduced: $(summary "$work/two" all_reduce_buckets), of which started during backward: $(summary "$work/two" buckets_during_backward)"
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; $steps steps of batch 32 each"
