#!/usr/bin/env bash
# One session on a lent GPU machine, prepared here and run there in one command. Such a machine
# (docs/gpu.md, "How it was run") has its own torch and no network, and takes at most 64 MB
# from here, so sentence-mtl is built here against the same torch version's headers and
# libraries and linked there to the machine's own torch.
#
#   scripts/gpu-session.sh pack TORCH_VERSION    (here) builds into .gpu/, which the device
#       call carries: the binary (xz), all-MiniLM-L6-v2 rounded to fp16 (the same weights for
#       both implementations there), and the TREC and SST-2 files from ../shared/data.
#       Fetches from PyPI: torch==TORCH_VERSION and the header-only parts of the CUDA and NCCL
#       wheels it pins (for csrc/nccl_shim.cpp), into .venv/device-torch-VERSION/.
#   scripts/gpu-session.sh run PART...   (there, from the project's root) unpacks .gpu/, links
#       the build's torch path to the machine's torch, then runs each PART, writing logs and
#       tables to $OUT (or gpu-session-out/):
#         parity    encode of the SST-2 dev sentences on cuda (fp32, bf16) against the CPU: cosines
#         nccl      the same training on one GPU without a launch, and as a launch of one
#                   process over NCCL (WORLD_SIZE=1): examples/s, per-step overhead, weights
#         bench32   scripts/bench-gpu.sh at batch 32, fp32 and bf16, against PyTorch
#         tokens    scripts/bench-gpu.sh at --batch-tokens 16384, the same
#         accuracy  3 epochs at batch 32 against --batch-tokens 16384 at several learning rates
#         cache     3 epochs with --freeze backbone and with --freeze embeddings --freeze
#                   layers:3, each with the feature cache and with --no-feature-cache
# The lent machine's python3 must have torch==TORCH_VERSION, transformers and safetensors.
# For a dry run elsewhere: DEVICE (default cuda), NCCL_STEPS (500), ACCURACY_LENGTH and CACHE_LENGTH
# ("--epochs 3").
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
say() { printf '[gpu-session] %s\n' "$*" >&2; }
[ $# -ge 1 ] || { echo "usage: scripts/gpu-session.sh pack TORCH_VERSION | run PART..." >&2; exit 2; }
mode="$1"; shift

pack() {
  local version="$1" site="$root/.venv/device-torch-$1"
  local python_bin="$root/.venv/bin/python"
  [ -x "$python_bin" ] || { echo "gpu-session.sh: no .venv/bin/python: run scripts/setup.sh first" >&2; exit 1; }
  if [ ! -f "$site/torch/lib/libtorch_cuda.so" ]; then
    say "fetching torch $version and the headers of the CUDA and NCCL wheels it pins into $site"
    rm -rf "$site.tmp"; mkdir -p "$site.tmp/wheels"
    "$python_bin" -m pip download --quiet --no-deps --dest "$site.tmp/wheels" "torch==$version"
    "$python_bin" scripts/cuda_headers.py "$site.tmp"/wheels/torch-*.whl "$site.tmp" cudart cupti cublas cusparse cusolver crt cccl nccl
    (cd "$site.tmp" && unzip -q wheels/torch-*.whl 'torch/*')
    rm -rf "$site.tmp/wheels" "$site"; mv "$site.tmp" "$site"
  fi
  scripts/build-for-torch.sh "$site/torch" "$root/target-torch-$version"
  local bin="$root/target-torch-$version/release/sentence-mtl"
  "$bin" --version | grep -q "with NCCL" || { echo "gpu-session.sh: the build has no NCCL" >&2; exit 1; }
  rm -rf .gpu; mkdir -p .gpu/model .gpu/data/trec .gpu/data/sst2
  strip -o .gpu/sentence-mtl "$bin"; xz -9 .gpu/sentence-mtl
  readlink -f "$site/torch" > .gpu/torch-path; echo "$version" > .gpu/torch-version
  local model="models/all-MiniLM-L6-v2"
  (cd "$model" && cp -r config.json tokenizer.json tokenizer_config.json special_tokens_map.json vocab.txt \
    modules.json sentence_bert_config.json config_sentence_transformers.json 1_Pooling "$root/.gpu/model/")
  "$python_bin" -c 'import sys, torch; from safetensors.torch import load_file, save_file
save_file({k: v.half() for k, v in load_file(sys.argv[1]).items()}, sys.argv[2], {"format": "pt"})' \
    "$model/model.safetensors" .gpu/model/model.fp16.safetensors
  local data="$root/../shared/data"
  cp "$data/trec/train_split.csv" "$data/trec/dev_split.csv" .gpu/data/trec/
  cp "$data/sst2/train.csv" "$data/sst2/dev.csv" .gpu/data/sst2/
  du -sh .gpu
  say "carry .gpu (and nothing else ignored) to the device; there: scripts/gpu-session.sh run PART..."
}

# ---- there ---------------------------------------------------------------------------------
prepare() {
  local torch_dir version
  torch_dir="$(python3 -c 'import os, torch; print(os.path.dirname(torch.__file__))')"
  version="$(python3 -c 'import torch; print(torch.__version__.split("+")[0])')"
  [ "$version" = "$(cat .gpu/torch-version)" ] ||
    { echo "gpu-session.sh: this machine has torch $version, the build is for $(cat .gpu/torch-version)" >&2; exit 1; }
  mkdir -p "$(dirname "$(cat .gpu/torch-path)")"
  ln -sfn "$torch_dir" "$(cat .gpu/torch-path)"
  mkdir -p "$work/bin" "$work/model"
  python3 -c 'import lzma, sys; open(sys.argv[2], "wb").write(lzma.open(sys.argv[1]).read())' \
    .gpu/sentence-mtl.xz "$work/bin/sentence-mtl"
  chmod +x "$work/bin/sentence-mtl"
  cp -r .gpu/model/. "$work/model/"
  python3 -c 'import sys; from safetensors.torch import load_file, save_file
save_file({k: v.float() for k, v in load_file(sys.argv[1]).items()}, sys.argv[2], {"format": "pt"})' \
    "$work/model/model.fp16.safetensors" "$work/model/model.safetensors"
  rm "$work/model/model.fp16.safetensors"
  "$work/bin/sentence-mtl" --version | tee -a "$out/summary.md"
  { nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || echo "no nvidia-smi"; } | tee -a "$out/summary.md"
}

# The training every part runs: all-MiniLM-L6-v2 (256-d projection), TREC + SST-2 on cuda.
smtl_train() {
  local data="$root/.gpu/data"
  "$work/bin/sentence-mtl" train --model "$work/model" --device "${DEVICE:-cuda}" --quiet --overwrite --projection-dim 256 \
    --task "trec=$data/trec/train_split.csv,$data/trec/dev_split.csv" --task "sst2=$data/sst2/train.csv,$data/sst2/dev.csv" "$@"
}

# Examples/s of a run's training steps and its last dev accuracies, as one table row.
run_row() {
  python3 - "$@" <<'PY'
import json, sys
name, folder = sys.argv[1], sys.argv[2]
records = [json.loads(l) for l in open(f"{folder}/train_log.jsonl")]
s = [r for r in records if r["type"] == "summary"][-1]
e = [r for r in records if r["type"] == "eval"][-1]["tasks"]
print(f"| {name} | {s['step']} | {s['examples_per_sec']:.1f} | {100*e['trec']['accuracy']:.1f} | {100*e['sst2']['accuracy']:.1f} |")
PY
}

part_parity() {
  local input="$root/.gpu/data/sst2/dev.csv" run
  for run in "cpu fp32" "${DEVICE:-cuda} fp32" "${DEVICE:-cuda} bf16"; do
    set -- $run
    "$work/bin/sentence-mtl" encode --model "$work/model" --quiet --device "$1" --precision "$2" \
      --input "$input" --output "$work/parity_$1_$2.npy" 2> "$work/parity_$1_$2.log"
  done
  python3 - "$work" "${DEVICE:-cuda}" >> "$out/summary.md" <<'PY'
import sys, numpy as np
work = sys.argv[1]
cpu = np.load(f"{work}/parity_cpu_fp32.npy")
print(f"\n## parity: encode of the {len(cpu)} SST-2 dev sentences on the GPU against the CPU (fp32), cosine per sentence\n")
print("| run | min cosine | mean cosine |\n|---|---:|---:|")
for run in (f"{sys.argv[2]}_fp32", f"{sys.argv[2]}_bf16"):
    gpu = np.load(f"{work}/parity_{run}.npy")
    cos = (cpu * gpu).sum(1) / np.linalg.norm(cpu, axis=1) / np.linalg.norm(gpu, axis=1)
    print(f"| {run.replace('_', ' ')} | {cos.min():.6f} | {cos.mean():.6f} |")
PY
}

part_nccl() {
  local steps="${NCCL_STEPS:-500}" i
  {
    echo; echo "## nccl: one GPU, no launch against a launch of one process (WORLD_SIZE=1, NCCL), $steps steps of batch 32, fp32, alternating"
    echo; echo "| run | steps | examples/s | TREC dev acc | SST-2 dev acc |"; echo "|---|---:|---:|---:|---:|"
  } >> "$out/summary.md"
  for i in 1 2; do
    smtl_train --max-steps "$steps" --out "$work/nccl/plain_$i" > "$work/nccl_plain_$i.log" 2>&1
    run_row "plain, round $i" "$work/nccl/plain_$i" >> "$out/summary.md"
    # --dist-timeout 60: a NCCL start that hangs costs a minute, not c10d's default wait.
    NCCL_DEBUG=VERSION WORLD_SIZE=1 RANK=0 LOCAL_RANK=0 MASTER_ADDR=127.0.0.1 MASTER_PORT=29531 \
      smtl_train --max-steps "$steps" --dist-timeout 60 --out "$work/nccl/launch_$i" > "$work/nccl_launch_$i.log" 2>&1
    run_row "launch of one (NCCL), round $i" "$work/nccl/launch_$i" >> "$out/summary.md"
  done
  # NCCL_DEBUG=VERSION: NCCL prints its version when the launch's first communicator is made.
  grep -h "NCCL version" "$work"/nccl_launch_1.log >> "$out/summary.md" || true
  # Two plain runs beside it: CUDA kernels need not be deterministic, so that is the floor.
  python3 - "$work/nccl" >> "$out/summary.md" <<'PY'
import sys
from safetensors.torch import load_file
def weights(run):
    return load_file(f"{sys.argv[1]}/{run}/last/model.safetensors")
def worst(a, b):
    return max((a[k] - b[k]).abs().max().item() for k in a)
plain_1, plain_2, launch_1 = weights("plain_1"), weights("plain_2"), weights("launch_1")
print(f"\nlargest weight difference after the same steps: plain against the launch of one {worst(plain_1, launch_1):.3g}, "
      f"plain against plain (the GPU's own run-to-run floor) {worst(plain_1, plain_2):.3g}")
PY
}

part_bench() {
  local name="$1"; shift
  echo; echo "## $name: scripts/bench-gpu.sh $*" >> "$out/summary.md"
  SMTL_BIN="$work/bin/sentence-mtl" PYTHON=python3 MODEL="$work/model" DATA="$root/.gpu/data" \
    scripts/bench-gpu.sh --keep "$work/$name" "$@" >> "$out/summary.md" 2> "$work/$name.log"
}

part_accuracy() {
  {
    echo; echo "## accuracy: 3 epochs, batch 32 against --batch-tokens 16384 (rates: backbone / projection / heads)"
    echo; echo "| run | steps | examples/s | TREC dev acc | SST-2 dev acc |"; echo "|---|---:|---:|---:|---:|"
  } >> "$out/summary.md"
  local length=(${ACCURACY_LENGTH:---epochs 3})
  smtl_train "${length[@]}" --out "$work/acc/b32" > "$work/acc_b32.log" 2>&1
  run_row "batch 32, fp32, default rates" "$work/acc/b32" >> "$out/summary.md"
  local rates
  for precision in fp32 bf16; do
    for rates in "8e-5 1e-4 1e-3" "2e-4 4e-4 4e-3" "4e-4 4e-4 4e-3"; do
      set -- $rates
      local name="t16384_${precision}_$1"
      smtl_train "${length[@]}" --batch-tokens 16384 --precision "$precision" --warmup-ratio 0.1 \
        --lr-backbone "$1" --lr-projection "$2" --lr-heads "$3" --out "$work/acc/$name" > "$work/acc_$name.log" 2>&1
      run_row "--batch-tokens 16384, $precision, $1 / $2 / $3, warm-up 10%" "$work/acc/$name" >> "$out/summary.md"
    done
  done
}

part_cache() {
  local name start walls="$work/cache_walls" length=(${CACHE_LENGTH:---epochs 3})
  : > "$walls"
  for name in cache-backbone nocache-backbone cache-layers3 nocache-layers3; do
    local args=("${length[@]}" --out "$work/cache/$name")
    case "$name" in *backbone) args+=(--freeze backbone) ;; *) args+=(--freeze embeddings --freeze layers:3) ;; esac
    case "$name" in nocache*) args+=(--no-feature-cache) ;; esac
    start=$EPOCHREALTIME
    smtl_train "${args[@]}" > "$work/cache_$name.log" 2>&1
    echo "$name $start $EPOCHREALTIME" >> "$walls"
  done
  python3 - "$walls" "$work/cache" "${length[*]}" >> "$out/summary.md" <<'PY'
import json, sys
walls = {name: float(end) - float(start) for name, start, end in (line.split() for line in open(sys.argv[1]))}
print(f"\n## cache: {sys.argv[3]}, batch 32, fp32, frozen layers computed once (feature cache) or every step\n")
print("| run | steps | wall time (s) | TREC dev acc | SST-2 dev acc |\n|---|---:|---:|---:|---:|")
for name, wall in walls.items():
    records = [json.loads(l) for l in open(f"{sys.argv[2]}/{name}/train_log.jsonl")]
    steps = [r for r in records if r["type"] == "summary"][-1]["step"]
    dev = [r for r in records if r["type"] == "eval"][-1]["tasks"]
    print(f"| {name} | {steps} | {wall:.1f} | {100*dev['trec']['accuracy']:.1f} | {100*dev['sst2']['accuracy']:.1f} |")
print(f"\nwith the cache (wall time, loading and the build included): --freeze backbone "
      f"{walls['nocache-backbone'] / walls['cache-backbone']:.2f}x faster, --freeze embeddings --freeze layers:3 "
      f"{walls['nocache-layers3'] / walls['cache-layers3']:.2f}x")
PY
}

if [ "$mode" = pack ]; then
  [ $# -eq 1 ] || { echo "usage: scripts/gpu-session.sh pack TORCH_VERSION" >&2; exit 2; }
  pack "$1"
  exit 0
fi
[ "$mode" = run ] || { echo "gpu-session.sh: unknown mode $mode (pack or run)" >&2; exit 2; }
# Every part named is checked before any runs: lent GPU minutes are not spent on the parts
# before a typo.
for part in "$@"; do
  case "$part" in
    parity|nccl|bench32|tokens|accuracy|cache) ;;
    *) echo "gpu-session.sh: unknown part $part (parity, nccl, bench32, tokens, accuracy, cache)" >&2; exit 2 ;;
  esac
done
[ -f .gpu/torch-version ] || { echo "gpu-session.sh: no .gpu/torch-version: run 'scripts/gpu-session.sh pack VERSION' here and carry .gpu" >&2; exit 2; }
out="${OUT:-$root/gpu-session-out}"; mkdir -p "$out"
: > "$out/summary.md"
work="$(mktemp -d)"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
prepare
failed=0
# Each part runs in its own shell under `timeout` (with set -e: called left of `||`, its
# commands would run without it, and a failed run inside it would go unnoticed), bounded by
# its own limit and by what is left of BUDGET_S (default 560 s, inside a device call's 600), so
# one that hangs costs its limit, not the parts after it.
declare -A limit=([parity]=60 [nccl]=150 [bench32]=250 [tokens]=200 [accuracy]=200 [cache]=150)
deadline=$((SECONDS + ${BUDGET_S:-560}))
export root work out
export -f say smtl_train run_row part_parity part_nccl part_bench part_accuracy part_cache
for part in "$@"; do
  left=$((deadline - SECONDS))
  allowed=$((left < limit[$part] ? left : limit[$part]))
  if [ "$allowed" -lt 20 ]; then
    echo "$part: skipped, ${left} s of the budget left" >> "$out/summary.md"
    failed=1
    continue
  fi
  say "part $part (at most $allowed s)"
  started=$SECONDS
  case "$part" in
    bench32) call=(part_bench bench32 --steps 500 --rounds 1) ;;
    tokens) call=(part_bench tokens --steps 100 --rounds 1 --batch-tokens 16384) ;;
    *) call=("part_$part") ;;
  esac
  if ! timeout -k 10 "$allowed" bash -euo pipefail -c '"$@"' _ "${call[@]}"; then
    echo "$part: failed or stopped at its limit of $allowed s (logs in logs.tar.xz)" >> "$out/summary.md"
    failed=1
  fi
  echo "($part took $((SECONDS - started)) s)" >> "$out/summary.md"
  # Logs and run records, not the checkpoints' own files (a tokenizer.json per checkpoint).
  (cd "$work" && find . \( -name best -o -name last -o -path ./model \) -prune -o \
    \( -name '*.log' -o -name '*.json' -o -name '*.err' -o -name 'train_log.jsonl' -o -name '*.gpu_*' \) -print |
    XZ_OPT=-T0 tar -cJf "$out/logs.tar.xz" -T -) || true
done
rm -rf "$work"
cat "$out/summary.md"
exit "$failed"
