#!/usr/bin/env bash
# bf16 on a CPU with AVX-512 BF16 or AMX, against fp32 and against PyTorch, in one run:
#   1. training, TREC + SST-2, all-MiniLM-L6-v2 with the reference's 256-d projection, N steps
#      of batch 32: sentence-mtl fp32, sentence-mtl bf16 (autocast, fp32 master weights), and
#      the PyTorch reference in fp32 and bf16 (torch.autocast) replaying sentence-mtl's batches,
#      from the same initial head and projection values. Examples/s over the steps, dev
#      accuracy after them.
#   2. encode, SST-2 train (6920 sentences), batch 32: sentence-mtl fp32 and bf16,
#      sentence-transformers fp32 and under torch.autocast bf16; sentences/s end to end, and
#      the cosine of each bf16 embedding with its fp32 one.
# Runs alternate within each part. Refuses to run on a CPU without bf16 instructions.
#   scripts/bench-bf16.sh [--steps N]      (default 434: one epoch of the two tasks)
# THREADS=N sets the thread count (default: all cores).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
steps=434
while [ $# -gt 0 ]; do
  case "$1" in
    --steps)
      [[ "${2:-}" =~ ^[1-9][0-9]*$ ]] || { echo "bench-bf16.sh: --steps needs a positive whole number" >&2; exit 2; }
      steps="$2"; shift 2 ;;
    *) echo "bench-bf16.sh: unknown flag $1 (known: --steps N)" >&2; exit 2 ;;
  esac
done
grep -qwE 'avx512_bf16|amx_bf16' /proc/cpuinfo || { echo "bench-bf16.sh: this CPU has neither avx512_bf16 nor amx_bf16" >&2; exit 1; }
scripts/setup.sh --reference >&2
threads="${THREADS:-$(nproc)}"
export OMP_NUM_THREADS="$threads" MKL_NUM_THREADS="$threads" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
data="$root/../shared/data"
model=models/all-MiniLM-L6-v2
work=runs/bench-bf16
rm -rf "$work"; mkdir -p "$work"
tasks=(--task "trec=$data/trec/train_split.csv,$data/trec/dev_split.csv" --task "sst2=$data/sst2/train.csv,$data/sst2/dev.csv")
ours=(target/release/sentence-mtl train --model "$model" "${tasks[@]}" --device cpu --threads "$threads" --quiet --overwrite --projection-dim 256)
ref=(.venv/bin/python scripts/reference/train_reference.py --model "$model" "${tasks[@]}" --threads "$threads" --max-steps "$steps")
say() { printf '[bench-bf16] %s\n' "$*" >&2; }
timed() { # NAME COMMAND...
  local name="$1"; shift
  say "$name"
  /usr/bin/time -f "%e %M" -o "$work/$name.time" "$@" > "$work/$name.out" 2> "$work/$name.err" || { cat "$work/$name.err" >&2; exit 1; }
}
timed init "${ours[@]}" --freeze all --out "$work/init"
timed ours_fp32 "${ours[@]}" --max-steps "$steps" --precision fp32 --out "$work/ours_fp32" --save-batch-plan "$work/plan.jsonl"
timed ref_fp32 "${ref[@]}" --plan "$work/plan.jsonl" --init-heads "$work/init/last/model.safetensors" --out "$work/ref_fp32.json"
timed ours_bf16 "${ours[@]}" --max-steps "$steps" --precision bf16 --out "$work/ours_bf16"
timed ref_bf16 "${ref[@]}" --plan "$work/plan.jsonl" --init-heads "$work/init/last/model.safetensors" --precision bf16 --out "$work/ref_bf16.json"

input="$data/sst2/train.csv"
enc=(target/release/sentence-mtl encode --model "$model" --device cpu --threads "$threads" --batch-size 32 --normalize --quiet --input "$input")
st=(.venv/bin/python scripts/reference/st_encode.py "$model" "$input" 32)
for round in 1 2; do
  timed "enc_ours_fp32_$round" "${enc[@]}" --precision fp32 --output "$work/ours_fp32.npy"
  timed "enc_ours_bf16_$round" "${enc[@]}" --precision bf16 --output "$work/ours_bf16.npy"
  timed "enc_st_fp32_$round" "${st[@]}" "$work/st_fp32.npy" fp32
  timed "enc_st_bf16_$round" "${st[@]}" "$work/st_bf16.npy" bf16
done
.venv/bin/python - "$work" "$steps" "$threads" <<'PY'
import json, sys
import numpy as np
work, steps, threads = sys.argv[1], int(sys.argv[2]), sys.argv[3]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
def wall(name): return float(open(f"{work}/{name}.time").read().split()[0])
def rss(name): return int(open(f"{work}/{name}.time").read().split()[1]) / 1024
def ours(p):
    log = [json.loads(l) for l in open(f"{work}/ours_{p}/train_log.jsonl")]
    s = [r for r in log if r["type"] == "summary"][-1]
    e = [r for r in log if r["type"] == "eval"][-1]["tasks"]
    return s["examples_per_sec"], e["trec"]["accuracy"], e["sst2"]["accuracy"], rss(f"ours_{p}")
def ref(p):
    r = json.load(open(f"{work}/ref_{p}.json"))
    return r["examples_per_sec"], r["dev"]["trec"]["accuracy"], r["dev"]["sst2"]["accuracy"], rss(f"ref_{p}")
print(f"\ntraining all-MiniLM-L6-v2 (256-d projection) on TREC + SST-2, {steps} steps of batch 32, identical batches, {cpu}, {threads} threads\n")
print("| implementation | precision | examples/s | peak RSS (MB) | TREC dev acc | SST-2 dev acc |\n|---|---|---:|---:|---:|---:|")
rows = {(i, p): f(p) for i, f in (("sentence-mtl", ours), ("PyTorch", ref)) for p in ("fp32", "bf16")}
for (i, p), (rate, trec, sst2, mem) in rows.items():
    print(f"| {i} | {p} | {rate:.1f} | {mem:.0f} | {100 * trec:.1f} | {100 * sst2:.1f} |")
o32, o16, r16 = rows[("sentence-mtl", "fp32")], rows[("sentence-mtl", "bf16")], rows[("PyTorch", "bf16")]
print(f"\nsentence-mtl bf16 / fp32: {o16[0] / o32[0]:.2f}x examples/s, dev accuracy {100 * (o16[1] - o32[1]):+.1f} / {100 * (o16[2] - o32[2]):+.1f} pt (TREC / SST-2)")
print(f"sentence-mtl bf16 / PyTorch bf16: {o16[0] / r16[0]:.2f}x examples/s")
n = 6920
print(f"\nencode all-MiniLM-L6-v2, {n} sentences (sst2/train.csv), batch 32, {threads} threads, best of 2 alternated rounds, end to end\n")
print("| implementation | precision | sentences/s | peak RSS (MB) |\n|---|---|---:|---:|")
best = {}
for impl in ("ours", "st"):
    for p in ("fp32", "bf16"):
        w = min(wall(f"enc_{impl}_{p}_{r}") for r in (1, 2))
        best[(impl, p)] = n / w
        name = "sentence-mtl" if impl == "ours" else "sentence-transformers"
        print(f"| {name} | {p} | {n / w:.1f} | {min(rss(f'enc_{impl}_{p}_{r}') for r in (1, 2)):.0f} |")
def agreement(a, b):
    a, b = np.load(f"{work}/{a}.npy"), np.load(f"{work}/{b}.npy")
    c = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return c.min(), c.mean()
print(f"\nsentence-mtl bf16 / fp32: {best[('ours', 'bf16')] / best[('ours', 'fp32')]:.2f}x; sentence-mtl bf16 / sentence-transformers bf16: {best[('ours', 'bf16')] / best[('st', 'bf16')]:.2f}x; / sentence-transformers fp32: {best[('ours', 'bf16')] / best[('st', 'fp32')]:.2f}x")
for a, b in (("ours_bf16", "ours_fp32"), ("st_bf16", "st_fp32")):
    lo, mean = agreement(a, b)
    print(f"cosine({a}, {b}): min {lo:.6f}, mean {mean:.6f}")
PY
