#!/usr/bin/env bash
# sentence-mtl against the PyTorch reference (scripts/reference/train_reference.py) on a CUDA
# GPU, in one run: multi-task training TREC + SST-2 with identical batches (same order and
# rows; the reference pads each batch to its longest row, where sentence-mtl may run a batch of
# mixed lengths as up to 4 forwards, so the table prints each one's padded / real tokens),
# fp32 and bf16 (autocast with fp32 weights in both), alternating the two
# implementations for ROUNDS rounds. Prints a markdown table (scripts/reference/bench_table.py)
# with the GPU's name and the fp32/bf16 matmul peak measured in the same run, and the peak GPU
# memory of each run as nvidia-smi sees it (the reference's own torch.cuda figure beside it).
#
#   scripts/bench-gpu.sh [--steps N] [--rounds R] [--batch-tokens T] [--keep DIR]
#     --steps N    training steps per run (default 1000)
#     --rounds R   alternated rounds; speeds are medians over them (default 2)
#   Sizing: on an H200, 2000 steps' training loop took 36-42 s for sentence-mtl and 40 s (fp32)
#   and 70-73 s (bf16) for the reference, plus each process's start-up; --steps 2000
#   --rounds 2 did not finish in 8 minutes. The defaults do half the steps.
#     --batch-tokens T  batches of up to T padded tokens (sentence-mtl's length-grouped batches,
#                  replayed by the reference) instead of 32 sentences
#     --keep DIR   keep the logs, results and checkpoints there (default: a temp dir, removed)
# Environment: SMTL_BIN (default target/release/sentence-mtl), PYTHON (default .venv/bin/python;
# needs torch with CUDA, transformers, safetensors), MODEL (default models/all-MiniLM-L6-v2),
# DATA (default ../shared/data). Unlike bench.sh it does not run scripts/setup.sh: a GPU machine
# brings its own torch, and sentence-mtl must be built against that torch's libtorch.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
steps=1000 rounds=2 keep="" batch=(--batch-size 32) batch_words="batch 32"
while [ $# -gt 0 ]; do
  case "$1" in
    --steps|--rounds|--keep|--batch-tokens) [ $# -ge 2 ] || { echo "bench-gpu.sh: $1 needs a value" >&2; exit 2; } ;;
  esac
  case "$1" in
    # Checked before any run: a GPU's minutes are few.
    --steps|--rounds|--batch-tokens)
      [[ "$2" =~ ^[1-9][0-9]*$ ]] || { echo "bench-gpu.sh: $1 must be a positive whole number, got '$2'" >&2; exit 2; } ;;
  esac
  case "$1" in
    --steps) steps="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    --keep) keep="$2"; shift 2 ;;
    --batch-tokens) batch=(--batch-tokens "$2"); batch_words="batches of up to $2 padded tokens"; shift 2 ;;
    *) echo "bench-gpu.sh: unknown flag $1 (known: --steps N, --rounds R, --batch-tokens T, --keep DIR)" >&2; exit 2 ;;
  esac
done
bin="${SMTL_BIN:-target/release/sentence-mtl}"
python="${PYTHON:-.venv/bin/python}"
model="${MODEL:-models/all-MiniLM-L6-v2}"
data="${DATA:-$root/../shared/data}"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
if [ -n "$keep" ]; then work="$keep"; mkdir -p "$work"; else work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT; fi
say() { printf '[bench-gpu] %s\n' "$*" >&2; }
"$python" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'bench-gpu.sh: $python sees no CUDA device')"
tasks=(--task "trec=$data/trec/train_split.csv,$data/trec/dev_split.csv" --task "sst2=$data/sst2/train.csv,$data/sst2/dev.csv")
ours=("$bin" train --model "$model" "${tasks[@]}" --device cuda --quiet --overwrite
  --projection-dim 256)
ref=("$python" scripts/reference/train_reference.py --model "$model" "${tasks[@]}" --device cuda --max-steps "$steps")
timed() { # NAME COMMAND...: runs it, keeps peak RSS (KB) in $work/NAME.rss and its output beside
  # (through Python's getrusage: GPU images often lack GNU time). GPU memory: the device's use
  # sampled every 100 ms during the run (NAME.gpu_used) and once before it (NAME.gpu_idle), so
  # both implementations are measured alike, CUDA context and allocator caches included.
  local name="$1" sampler=""; shift
  say "$name"
  if [ "$gpu" != none ]; then
    "${gpu_used[@]}" > "$work/$name.gpu_idle"
    "${gpu_used[@]}" -lms 100 > "$work/$name.gpu_used" & sampler=$!
  fi
  local code=0
  "$python" -c 'import resource, subprocess, sys
code = subprocess.call(sys.argv[2:])
open(sys.argv[1], "w").write(f"{resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}\n")
sys.exit(code)' "$work/$name.rss" "$@" > "$work/$name.out" 2> "$work/$name.err" || code=$?
  if [ -n "$sampler" ]; then kill "$sampler" 2>/dev/null || true; wait "$sampler" 2>/dev/null || true; fi
  [ "$code" = 0 ] || { cat "$work/$name.err" >&2; say "$name failed"; exit 1; }
}
# The memory in use (MiB, all processes) of the first GPU CUDA sees (by index or UUID)
gpu="${CUDA_VISIBLE_DEVICES:-0}"; gpu="${gpu%%,*}"
gpu_used=(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -i "$gpu")
if ! command -v nvidia-smi >/dev/null || ! "${gpu_used[@]}" >/dev/null 2>&1; then
  say "nvidia-smi cannot read GPU $gpu's memory: the table will not report GPU memory"; gpu=none
fi

timed init "${ours[@]}" --freeze all --out "$work/init"
init=(--init-heads "$work/init/last/model.safetensors")
# The first run writes the batch plan the reference replays (the plan depends on the seed
# and the data only, not on the precision).
plan=(--save-batch-plan "$work/plan.jsonl")
for i in $(seq 1 "$rounds"); do
  for precision in fp32 bf16; do
    timed "ours_${precision}_$i" "${ours[@]}" "${batch[@]}" --max-steps "$steps" --precision "$precision" \
      --out "$work/ours_${precision}_$i" "${plan[@]}"
    plan=()
    timed "ref_${precision}_$i" "${ref[@]}" --plan "$work/plan.jsonl" --precision "$precision" "${init[@]}" \
      --out "$work/ref_${precision}_$i.json"
  done
done

say "matmul peak of this GPU"
"$python" - > "$work/peak.json" <<'PY'
import json, torch
torch.backends.cuda.matmul.allow_tf32 = False  # the default, stated: fp32 means fp32
n, result = 8192, {"device": torch.cuda.get_device_name()}
for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
    a, b = torch.randn(n, n, device="cuda", dtype=dtype), torch.randn(n, n, device="cuda", dtype=dtype)
    for _ in range(3):
        a @ b
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(10):
        a @ b
    end.record(); torch.cuda.synchronize()
    result[name] = 10 * 2 * n**3 / (start.elapsed_time(end) / 1e3) / 1e12
print(json.dumps(result))
PY
"$python" scripts/reference/bench_table.py gpu "$work" "$steps" "$model" "$rounds" "$batch_words"
