#!/usr/bin/env bash
# Embedding-task figures, all-MiniLM-L6-v2, CPU, data from ../shared/data:
#   reference  sentence-mtl against sentence-transformers' own trainer on the same batches
#              (replayed from sentence-mtl's batch plan), steps, learning rate and seed:
#              STS-B with CoSENT, and retrieval pairs derived from STS-B (pairs scored >= 4,
#              scripts/stsb_pairs.py) with MultipleNegativesRankingLoss. The recipe both run:
#              one epoch, batch 32, learning rate 2e-5 for every layer (no layer decay, no
#              projection), warm-up 10%, weight decay 0.01. Pairs/s over training steps only,
#              peak RSS of the whole process, dev Spearman (STS-B) or MRR@10 (pairs).
#   drift      STS-B dev Spearman of the pre-trained model; after multi-task TREC + SST-2 at
#              sentence-mtl's defaults (one epoch of the two tasks, 434 steps); after TREC +
#              SST-2 + STS-B at the same number of steps, and at as many TREC and SST-2
#              batches (1.5x the steps); with TREC and SST-2 dev accuracy beside it.
# Prints markdown tables.
#   scripts/measure-embeddings.sh [reference] [drift]     (default: both)
# THREADS=N sets the thread count (default: all cores). Runs go to runs/measure-embeddings/.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
parts=("$@"); [ ${#parts[@]} -eq 0 ] && parts=(reference drift)
for part in "${parts[@]}"; do
  case "$part" in reference|drift) ;; *) echo "measure-embeddings.sh: unknown part $part (reference, drift)" >&2; exit 2 ;; esac
done
scripts/setup.sh --reference >&2
threads="${THREADS:-$(nproc)}"
export OMP_NUM_THREADS="$threads" MKL_NUM_THREADS="$threads" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
data="$root/../shared/data"
out=runs/measure-embeddings
mkdir -p "$out"
model=models/all-MiniLM-L6-v2
bin=target/release/sentence-mtl
say() { printf '[measure] %s\n' "$*" >&2; }
timed() { # NAME COMMAND...: runs it, keeping wall time and peak RSS in $out/NAME.time
  local name="$1"; shift
  say "$name: $*"
  /usr/bin/time -f "%e %M" -o "$out/$name.time" "$@" > "$out/$name.stdout"
}
python3 scripts/stsb_pairs.py "$data/stsb/train.csv" "$out/pairs_train.csv"
python3 scripts/stsb_pairs.py "$data/stsb/dev.csv" "$out/pairs_dev.csv"
stsb="stsb=$data/stsb/train.csv,$data/stsb/dev.csv"
pairs="pairs=$out/pairs_train.csv,$out/pairs_dev.csv"
trec="trec=$data/trec/train_split.csv,$data/trec/dev_split.csv"
sst2="sst2=$data/sst2/train.csv,$data/sst2/dev.csv"
train=("$bin" train --model "$model" --device cpu --threads "$threads" --quiet --overwrite)
recipe=(--epochs 1 --batch-size 32 --lr-backbone 2e-5 --layer-decay 1 --projection-dim 0 --warmup-ratio 0.1 --weight-decay 0.01 --seed 42)

for part in "${parts[@]}"; do
  case "$part" in
    reference)
      for kind in stsb pairs; do
        task="$stsb"; train_csv="$data/stsb/train.csv"; dev_csv="$data/stsb/dev.csv"; loss=cosent
        if [ "$kind" = pairs ]; then task="$pairs"; train_csv="$out/pairs_train.csv"; dev_csv="$out/pairs_dev.csv"; loss=mnrl; fi
        timed "ours-$kind" "${train[@]}" --task "$task" "${recipe[@]}" --out "$out/ours-$kind" --save-batch-plan "$out/plan-$kind.jsonl"
        timed "st-$kind" .venv/bin/python scripts/reference/st_train_reference.py --model "$model" --train "$train_csv" \
          --dev "$dev_csv" --plan "$out/plan-$kind.jsonl" --task "$kind" --loss "$loss" --lr 2e-5 --warmup-ratio 0.1 \
          --weight-decay 0.01 --seed 42 --threads "$threads" --out "$out/st-$kind.json"
      done
      .venv/bin/python - "$out" "$threads" <<'PY'
import json, sys
out, threads = sys.argv[1], sys.argv[2]
def ours(kind):
    log = [json.loads(l) for l in open(f"{out}/ours-{kind}/train_log.jsonl")]
    summary = [r for r in log if r["type"] == "summary"][-1]
    dev = [r for r in log if r["type"] == "eval"][-1]["tasks"][kind]
    return summary["examples_per_sec"], summary["step"], dev
def rss(name):
    return float(open(f"{out}/{name}.time").read().split()[1]) / 1024
print(f"\nsentence-mtl against sentence-transformers' trainer, same batches, one epoch ({threads} threads)\n")
print("| task | loss | steps | pairs/s sentence-mtl / ST | ratio | peak RSS (MB) sentence-mtl / ST | ratio | dev metric sentence-mtl / ST |")
print("|---|---|---:|---:|---:|---:|---:|---:|")
for kind, loss, metric in [("stsb", "CoSENT", "spearman"), ("pairs", "MultipleNegativesRanking", "mrr_at_10")]:
    rate, steps, dev = ours(kind)
    st = json.load(open(f"{out}/st-{kind}.json"))
    name = "Spearman" if metric == "spearman" else "MRR@10"
    print(f"| {kind} | {loss} | {steps} | {rate:.1f} / {st['pairs_per_sec']:.1f} | {rate / st['pairs_per_sec']:.2f}x "
          f"| {rss('ours-' + kind):.0f} / {rss('st-' + kind):.0f} | {rss('ours-' + kind) / rss('st-' + kind):.2f}x "
          f"| {name} {100 * dev[metric]:.2f} / {100 * st['dev'][metric]:.2f} |")
PY
      ;;
    drift)
      timed pretrained "$bin" eval --model "$model" --device cpu --threads "$threads" --json -q \
        --task "stsb=$data/stsb/dev.csv" --task "pairs=$out/pairs_dev.csv"
      cp "$out/pretrained.stdout" "$out/pretrained.json"
      timed mtl-classification "${train[@]}" --task "$trec" --task "$sst2" --max-steps 434 --out "$out/mtl-classification"
      timed mtl-with-stsb "${train[@]}" --task "$trec" --task "$sst2" --task "$stsb" --max-steps 434 --out "$out/mtl-with-stsb"
      timed mtl-with-stsb-longer "${train[@]}" --task "$trec" --task "$sst2" --task "$stsb" --max-steps 651 --out "$out/mtl-with-stsb-longer"
      for run in mtl-classification mtl-with-stsb mtl-with-stsb-longer; do
        timed "eval-$run" "$bin" eval --model "$out/$run/last" --device cpu --threads "$threads" --json -q \
          --task "stsb=$data/stsb/dev.csv" --task "trec=$data/trec/dev_split.csv" --task "sst2=$data/sst2/dev.csv"
        cp "$out/eval-$run.stdout" "$out/eval-$run.json"
      done
      .venv/bin/python - "$out" "$threads" <<'PY'
import json, sys
out, threads = sys.argv[1], sys.argv[2]
pre = json.load(open(f"{out}/pretrained.json"))["tasks"]
print(f"\nSTS-B dev Spearman before and after multi-task training, all-MiniLM-L6-v2, sentence-mtl defaults ({threads} threads; metrics of last/)\n")
print("| model | steps (TREC / SST-2 / STS-B batches) | STS-B dev Spearman | TREC dev acc | SST-2 dev acc |")
print("|---|---:|---:|---:|---:|")
print(f"| pre-trained | - | {100 * pre['stsb']['spearman']:.2f} | - | - |")
for run, label in [("mtl-classification", "TREC + SST-2"), ("mtl-with-stsb", "TREC + SST-2 + STS-B"), ("mtl-with-stsb-longer", "TREC + SST-2 + STS-B")]:
    tasks = json.load(open(f"{out}/eval-{run}.json"))["tasks"]
    plan = [json.loads(l) for l in open(f"{out}/{run}/train_log.jsonl") if '"summary"' in l][-1]
    steps = plan["step"]
    n = 3 if "stsb" in run else 2
    per = " / ".join(str((steps - i + n - 1) // n) for i in range(n))
    print(f"| {label} | {steps} ({per}) | {100 * tasks['stsb']['spearman']:.2f} | {100 * tasks['trec']['accuracy']:.2f} | {100 * tasks['sst2']['accuracy']:.2f} |")
PY
      ;;
  esac
done
