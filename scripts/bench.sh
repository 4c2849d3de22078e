#!/usr/bin/env bash
# sentence-mtl against an independent PyTorch reference (scripts/reference/), in one run on
# the same machine and thread count, alternating the two implementations:
#   1. multi-task training, TREC + SST-2, identical batches (same order, rows and padding)
#   2. the same with each implementation at its defaults (ours: length-grouped batches;
#      the reference: shuffled batches, as HF Trainer does)
#   3. the same with the backbone frozen (identical batches)
#   4. encode throughput and first-embedding latency (scripts/bench-encode.sh)
# Both start from all-MiniLM-L6-v2 and the same projection/head initial values.
#
#   scripts/bench.sh           full: 300 training steps per run, 6920 sentences to encode
#   scripts/bench.sh --quick   CI-sized: 30 steps, 1000 sentences (a few minutes)
# THREADS=N sets the thread count (default: all cores).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
quick=0
for arg in "$@"; do
  case "$arg" in
    --quick) quick=1 ;;
    *) echo "bench.sh: unknown flag $arg (known: --quick)" >&2; exit 2 ;;
  esac
done
scripts/setup.sh >&2
threads="${THREADS:-$(nproc)}"
steps=300; [ "$quick" = 1 ] && steps=30
export OMP_NUM_THREADS="$threads" MKL_NUM_THREADS="$threads" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
data="$root/../shared/data"
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
model=models/all-MiniLM-L6-v2
tasks=(--task "trec=$data/trec/train_split.csv,$data/trec/dev_split.csv" --task "sst2=$data/sst2/train.csv,$data/sst2/dev.csv")
ours=(target/release/sentence-mtl train --model "$model" "${tasks[@]}" --device cpu --threads "$threads" --quiet --overwrite)
ref=(.venv/bin/python scripts/reference/train_reference.py --model "$model" "${tasks[@]}" --threads "$threads" --max-steps "$steps")
say() { printf '[bench] %s\n' "$*" >&2; }
timed() { # NAME COMMAND...: runs it, keeps peak RSS (KB) in $work/NAME.rss
  local name="$1"; shift
  /usr/bin/time -f "%M" -o "$work/$name.rss" "$@" > "$work/$name.out" 2> "$work/$name.err" || { cat "$work/$name.err" >&2; exit 1; }
}

say "initial projection and head values (sentence-mtl --freeze all, same seed)"
timed init "${ours[@]}" --freeze all --out "$work/init"
say "1/3 identical batches: sentence-mtl ($steps steps, $threads threads), writing its batch plan"
timed ours "${ours[@]}" --max-steps "$steps" --out "$work/ours" --save-batch-plan "$work/plan.jsonl"
say "1/3 identical batches: PyTorch reference"
timed ref "${ref[@]}" --plan "$work/plan.jsonl" --init-heads "$work/init/last/model.safetensors" --out "$work/ref.json"
say "2/3 defaults: PyTorch reference with shuffled batches (sentence-mtl's defaults are run 1)"
timed ref_shuffled "${ref[@]}" --shuffle --init-heads "$work/init/last/model.safetensors" --out "$work/ref_shuffled.json"
say "3/3 frozen backbone: sentence-mtl"
timed ours_frozen "${ours[@]}" --max-steps "$steps" --freeze backbone --out "$work/ours_frozen"
say "3/3 frozen backbone: PyTorch reference"
timed ref_frozen "${ref[@]}" --plan "$work/plan.jsonl" --freeze-backbone --init-heads "$work/init/last/model.safetensors" --out "$work/ref_frozen.json"
say "fp32 matmul peak of this CPU ($threads threads)"
.venv/bin/python - "$threads" > "$work/peak" <<'PY'
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

.venv/bin/python - "$work" "$steps" "$threads" "$model" <<'PY'
import json, sys
from pathlib import Path
from safetensors import safe_open
work, steps, threads, model = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
peak = float((work / "peak").read_text())
with safe_open(f"{model}/model.safetensors", "pt") as f:
    non_embedding = sum(f.get_slice(k).get_shape().numel() if hasattr(f.get_slice(k).get_shape(), "numel") else
                        __import__("math").prod(f.get_slice(k).get_shape())
                        for k in f.keys() if not k.startswith(("embeddings.", "pooler.")))

def rss(name):
    return int((work / f"{name}.rss").read_text().split()[-1]) / 1024

def ours(name):
    records = [json.loads(l) for l in open(work / name / "train_log.jsonl")]
    summary = [r for r in records if r["type"] == "summary"][-1]
    last_eval = [r for r in records if r["type"] == "eval"][-1]
    return {
        "examples_per_sec": summary["examples_per_sec"], "tokens_per_sec": summary["tokens_per_sec"],
        "padding_ratio": summary["padded_tokens"] / summary["tokens"], "peak_rss_mb": rss(name),
        "dev": {t: {"accuracy": s["accuracy"], "macro_f1": s["macro_f1"]} for t, s in last_eval["tasks"].items()},
    }

def ref(name):
    r = json.loads((work / f"{name}.json").read_text())
    r["peak_rss_mb"] = rss(name)
    return r

def row(label, impl, r, flops_factor):
    frac = flops_factor * non_embedding * r["tokens_per_sec"] / (peak * 1e9)
    d = r["dev"]
    return (f"| {label} | {impl} | {r['examples_per_sec']:.1f} | {r['tokens_per_sec']:.0f} | {r['padding_ratio']:.2f} | "
            f"{r['peak_rss_mb']:.0f} | {100*d['trec']['accuracy']:.1f} / {100*d['trec']['macro_f1']:.1f} | "
            f"{100*d['sst2']['accuracy']:.1f} / {100*d['sst2']['macro_f1']:.1f} | {100*frac:.0f}% |")

def ratio(label, a, b):
    return (f"| {label} | ratio sentence-mtl / PyTorch | {a['examples_per_sec']/b['examples_per_sec']:.2f}x | "
            f"{a['tokens_per_sec']/b['tokens_per_sec']:.2f}x | | {a['peak_rss_mb']/b['peak_rss_mb']:.2f}x | "
            f"{100*(a['dev']['trec']['accuracy']-b['dev']['trec']['accuracy']):+.1f} pt | "
            f"{100*(a['dev']['sst2']['accuracy']-b['dev']['sst2']['accuracy']):+.1f} pt | |")

o, r, rs, of, rf = ours("ours"), ref("ref"), ref("ref_shuffled"), ours("ours_frozen"), ref("ref_frozen")
print(f"training all-MiniLM-L6-v2 on TREC + SST-2, {steps} steps of batch 32, round-robin, CPU, {threads} threads;")
print(f"fp32 matmul peak measured in this run: {peak:.1f} GFLOP/s; model FLOPs = 6 x {non_embedding/1e6:.1f}M non-embedding parameters x tokens")
print("(frozen backbone: 2 x, the forward pass)\n")
print("| run | implementation | examples/s | tokens/s | padded / real tokens | peak RSS (MB) | TREC dev acc / F1 | SST-2 dev acc / F1 | of matmul peak |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
print(row("identical batches", "sentence-mtl", o, 6)); print(row("identical batches", "PyTorch", r, 6)); print(ratio("identical batches", o, r))
print(row("each at its defaults", "sentence-mtl (length-grouped)", o, 6)); print(row("each at its defaults", "PyTorch (shuffled)", rs, 6)); print(ratio("each at its defaults", o, rs))
print(row("frozen backbone", "sentence-mtl", of, 2)); print(row("frozen backbone", "PyTorch", rf, 2)); print(ratio("frozen backbone", of, rf))
PY
echo
if [ "$quick" = 1 ]; then scripts/bench-encode.sh --quick --rounds 1; else scripts/bench-encode.sh --rounds 2; fi
