#!/usr/bin/env bash
# bf16 on a CPU with AVX-512 BF16 or AMX, against fp32 and against PyTorch, in one run:
#   1. training, TREC + SST-2, all-MiniLM-L6-v2 with the reference's 256-d projection, once
#      with batches of 32 rows for N steps and once with batches of a token budget for one
#      epoch: sentence-mtl fp32, sentence-mtl bf16 (autocast, fp32 master weights), and the
#      PyTorch reference in fp32 and bf16 (torch.autocast) replaying sentence-mtl's batches,
#      from the same initial head and projection values. Examples/s over the steps, dev
#      accuracy after them.
#   2. encode, SST-2 train (6920 sentences): sentence-mtl fp32 and bf16 at batch 32 and at the
#      token budget, sentence-transformers at batch 32 (it has no token budget) in fp32, under
#      torch.autocast bf16, and with its weights converted to bf16 (model.bfloat16());
#      sentences/s end to end, and the cosine of each bf16 embedding with its fp32 one.
#      --join J encodes texts of J consecutive sentences instead (6: 1153 texts of about 128
#      tokens, the length of a retrieval passage).
# Runs alternate within each part. Refuses to run on a CPU without bf16 instructions.
# Both train at sentence-mtl's default recipe (train_reference.py's defaults are the same).
#   scripts/bench-bf16.sh [--steps N] [--batch-tokens N] [--only train|encode] [--join J]
# (defaults: 434 steps, one epoch of the two tasks at batch 32; a budget of 2048 padded tokens,
# about 100 short sentences; both parts). THREADS=N sets the thread count (default: all cores).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
[ -x /usr/bin/time ] || { echo "bench-bf16.sh: needs GNU time at /usr/bin/time (on Debian and Ubuntu: apt-get install time)" >&2; exit 1; }
steps=434
batch_tokens=2048
only=
join=1
while [ $# -gt 0 ]; do
  case "$1" in
    --steps)
      [[ "${2:-}" =~ ^[1-9][0-9]*$ ]] || { echo "bench-bf16.sh: --steps needs a positive whole number" >&2; exit 2; }
      steps="$2"; shift 2 ;;
    --batch-tokens)
      [[ "${2:-}" =~ ^[1-9][0-9]*$ ]] || { echo "bench-bf16.sh: --batch-tokens needs a positive whole number" >&2; exit 2; }
      batch_tokens="$2"; shift 2 ;;
    --join)
      [[ "${2:-}" =~ ^[1-9][0-9]*$ ]] || { echo "bench-bf16.sh: --join needs a positive whole number" >&2; exit 2; }
      join="$2"; shift 2 ;;
    --only)
      [[ "${2:-}" =~ ^(train|encode)$ ]] || { echo "bench-bf16.sh: --only needs train or encode" >&2; exit 2; }
      only="$2"; shift 2 ;;
    *) echo "bench-bf16.sh: unknown flag $1 (known: --steps N, --batch-tokens N, --only train|encode, --join J)" >&2; exit 2 ;;
  esac
done
grep -qwE 'avx512_bf16|amx_bf16' /proc/cpuinfo || { echo "bench-bf16.sh: this CPU has neither avx512_bf16 nor amx_bf16" >&2; exit 1; }
scripts/setup.sh --reference >&2
threads="${THREADS:-$(nproc)}"
export OMP_NUM_THREADS="$threads" MKL_NUM_THREADS="$threads" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
data="$root/../shared/data"
model=models/all-MiniLM-L6-v2
work=runs/bench-bf16
mkdir -p "$work"
tasks=(--task "trec=$data/trec/train_split.csv,$data/trec/dev_split.csv" --task "sst2=$data/sst2/train.csv,$data/sst2/dev.csv")
ours=(target/release/sentence-mtl train --model "$model" "${tasks[@]}" --device cpu --threads "$threads" --quiet --overwrite --projection-dim 256)
ref=(.venv/bin/python scripts/reference/train_reference.py --model "$model" "${tasks[@]}" --threads "$threads")
say() { printf '[bench-bf16] %s\n' "$*" >&2; }
timed() { # NAME COMMAND...
  local name="$1"; shift
  say "$name"
  /usr/bin/time -f "%e %M" -o "$work/$name.time" "$@" > "$work/$name.out" 2> "$work/$name.err" || { cat "$work/$name.err" >&2; exit 1; }
}
if [ "$only" != encode ]; then
  rm -rf "$work"/init "$work"/ours_* "$work"/ref_* "$work"/plan_*
  timed init "${ours[@]}" --freeze all --out "$work/init"
  train_four() { # LABEL SENTENCE-MTL-BATCH-FLAGS...: both implementations, both precisions, the same batches
    local label="$1"; shift
    timed "ours_fp32_$label" "${ours[@]}" "$@" --precision fp32 --out "$work/ours_fp32_$label" --save-batch-plan "$work/plan_$label.jsonl"
    local replay=(--plan "$work/plan_$label.jsonl" --max-steps "$(wc -l < "$work/plan_$label.jsonl")" --init-heads "$work/init/last/model.safetensors")
    timed "ref_fp32_$label" "${ref[@]}" "${replay[@]}" --out "$work/ref_fp32_$label.json"
    timed "ours_bf16_$label" "${ours[@]}" "$@" --precision bf16 --out "$work/ours_bf16_$label"
    timed "ref_bf16_$label" "${ref[@]}" "${replay[@]}" --precision bf16 --out "$work/ref_bf16_$label.json"
  }
  train_four rows --max-steps "$steps" --batch-size 32
  train_four tokens --epochs 1 --batch-tokens "$batch_tokens"
fi
if [ "$only" != train ]; then
  rm -f "$work"/enc_* "$work"/*.npy
  input="$data/sst2/train.csv"
  if [ "$join" -gt 1 ]; then
    .venv/bin/python - "$input" "$join" "$work/joined.csv" <<'PY'
import csv, sys
rows = [r["text"] for r in csv.DictReader(open(sys.argv[1], newline="", encoding="utf-8"))]
j = int(sys.argv[2])
with open(sys.argv[3], "w", newline="", encoding="utf-8") as f:
    w = csv.writer(f)
    w.writerow(["text"])
    for i in range(0, len(rows) - j + 1, j):
        w.writerow([" ".join(rows[i : i + j])])
PY
    input="$work/joined.csv"
  fi
  enc=(target/release/sentence-mtl encode --model "$model" --device cpu --threads "$threads" --normalize --quiet --input "$input")
  st=(.venv/bin/python scripts/reference/st_encode.py "$model" "$input" 32)
  for round in 1 2; do
    for p in fp32 bf16; do
      timed "enc_ours_${p}_rows_$round" "${enc[@]}" --batch-size 32 --precision "$p" --output "$work/ours_${p}_rows.npy"
      timed "enc_ours_${p}_tokens_$round" "${enc[@]}" --batch-tokens "$batch_tokens" --precision "$p" --output "$work/ours_${p}_tokens.npy"
      timed "enc_st_${p}_rows_$round" "${st[@]}" "$work/st_${p}_rows.npy" "$p"
    done
    timed "enc_st_bf16-weights_rows_$round" "${st[@]}" "$work/st_bf16-weights_rows.npy" bf16-weights
  done
fi
.venv/bin/python - "$work" "$steps" "$threads" "$batch_tokens" "$only" "$join" "${input:-}" <<'PY'
import csv, json, sys
import numpy as np
work, steps, threads, budget, only, join, encoded = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6]), sys.argv[7]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
batchings = {"rows": "batch 32", "tokens": f"--batch-tokens {budget}"}
def wall(name): return float(open(f"{work}/{name}.time").read().split()[0])
def rss(name): return int(open(f"{work}/{name}.time").read().split()[1]) / 1024
def ours(p, b):
    log = [json.loads(l) for l in open(f"{work}/ours_{p}_{b}/train_log.jsonl")]
    s = [r for r in log if r["type"] == "summary"][-1]
    e = [r for r in log if r["type"] == "eval"][-1]["tasks"]
    return s["examples_per_sec"], e["trec"]["accuracy"], e["sst2"]["accuracy"], rss(f"ours_{p}_{b}")
def ref(p, b):
    r = json.load(open(f"{work}/ref_{p}_{b}.json"))
    return r["examples_per_sec"], r["dev"]["trec"]["accuracy"], r["dev"]["sst2"]["accuracy"], rss(f"ref_{p}_{b}")
def training():
    print(f"\ntraining all-MiniLM-L6-v2 (256-d projection) on TREC + SST-2, identical batches, {cpu}, {threads} threads\n")
    print("| batches | steps | implementation | precision | examples/s | peak RSS (MB) | TREC dev acc | SST-2 dev acc |\n|---|---:|---|---|---:|---:|---:|---:|")
    rows = {}
    for b, label in batchings.items():
        n_steps = sum(1 for _ in open(f"{work}/plan_{b}.jsonl"))
        for i, f in (("sentence-mtl", ours), ("PyTorch", ref)):
            for p in ("fp32", "bf16"):
                rate, trec, sst2, mem = rows[(b, i, p)] = f(p, b)
                print(f"| {label} | {n_steps} | {i} | {p} | {rate:.1f} | {mem:.0f} | {100 * trec:.1f} | {100 * sst2:.1f} |")
    print()
    for b, label in batchings.items():
        o32, o16, r32, r16 = (rows[(b, i, p)] for i in ("sentence-mtl", "PyTorch") for p in ("fp32", "bf16"))
        print(f"{label}: sentence-mtl bf16 / fp32 {o16[0] / o32[0]:.2f}x examples/s, dev accuracy {100 * (o16[1] - o32[1]):+.1f} / {100 * (o16[2] - o32[2]):+.1f} pt (TREC / SST-2); "
              f"sentence-mtl / PyTorch {o32[0] / r32[0]:.2f}x in fp32, {o16[0] / r16[0]:.2f}x in bf16")
def encoding():
    n = sum(1 for _ in csv.DictReader(open(encoded, newline="", encoding="utf-8")))
    what = "sentences (sst2/train.csv)" if join == 1 else f"texts of {join} consecutive sst2/train.csv sentences"
    print(f"\nencode all-MiniLM-L6-v2, {n} {what}, {threads} threads, best of 2 alternated rounds, end to end\n")
    unit = "sentences/s" if join == 1 else "texts/s"
    print(f"| implementation | batches | precision | {unit} | peak RSS (MB) |\n|---|---|---|---:|---:|")
    best = {}
    for impl, name, kinds, precisions in (("ours", "sentence-mtl", ("rows", "tokens"), ("fp32", "bf16")),
                                          ("st", "sentence-transformers", ("rows",), ("fp32", "bf16", "bf16-weights"))):
        for b in kinds:
            for p in precisions:
                runs = [f"enc_{impl}_{p}_{b}_{r}" for r in (1, 2)]
                best[(impl, b, p)] = n / min(wall(r) for r in runs)
                print(f"| {name} | {batchings[b]} | {p} | {best[(impl, b, p)]:.1f} | {min(rss(r) for r in runs):.0f} |")
    def agreement(a, b):
        a, b = np.load(f"{work}/{a}.npy"), np.load(f"{work}/{b}.npy")
        c = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
        return c.min(), c.mean()
    print()
    for b, label in batchings.items():
        o16 = best[("ours", b, "bf16")]
        print(f"{label}: sentence-mtl bf16 / fp32 {o16 / best[('ours', b, 'fp32')]:.2f}x; / sentence-transformers at batch 32: "
              f"bf16 autocast {o16 / best[('st', 'rows', 'bf16')]:.2f}x, bf16 weights {o16 / best[('st', 'rows', 'bf16-weights')]:.2f}x, "
              f"fp32 {o16 / best[('st', 'rows', 'fp32')]:.2f}x")
    for a, b in (("ours_bf16_rows", "ours_fp32_rows"), ("ours_bf16_tokens", "ours_fp32_tokens"), ("ours_bf16_tokens", "ours_fp32_rows"),
                 ("st_bf16_rows", "st_fp32_rows"), ("st_bf16-weights_rows", "st_fp32_rows")):
        lo, mean = agreement(a, b)
        print(f"cosine({a}, {b}): min {lo:.6f}, mean {mean:.6f}")
if only != "encode":
    training()
if only != "train":
    encoding()
PY
