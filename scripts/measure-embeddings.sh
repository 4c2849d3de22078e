#!/usr/bin/env bash
# Embedding-task figures, all-MiniLM-L6-v2, CPU, data from ../shared/data:
#   reference  sentence-mtl against sentence-transformers' own trainer on the same batches
#              (replayed from sentence-mtl's batch plan), steps, learning rate and seed:
#              STS-B with CoSENT, and retrieval pairs derived from STS-B (pairs scored >= 4,
#              scripts/stsb_pairs.py) with MultipleNegativesRankingLoss, and the same loss on
#              asymmetric pairs from STS-B (five-word queries against two-sentence passages,
#              scripts/stsb_pairs.py --queries), whose queries and passages are forwarded apart. The recipe both run:
#              one epoch, batch 32, learning rate 2e-5 for every layer (no layer decay, no
#              projection), warm-up 10%, weight decay 0.01. Pairs/s over training steps only,
#              peak RSS of the whole process, dev Spearman (STS-B) or MRR@10 (pairs).
#   drift      STS-B dev Spearman of the pre-trained model; after one epoch of STS-B alone at
#              sentence-mtl's defaults; after multi-task TREC + SST-2 at the defaults (one
#              epoch of the two tasks, 434 steps); after TREC + SST-2 + STS-B at the same
#              number of steps, and at as many TREC and SST-2 batches (1.5x the steps), and
#              TREC + SST-2 alone at those 651 steps; with TREC and SST-2 dev accuracy beside
#              it. Seed 42.
#   drift-seeds  TREC + SST-2 against TREC + SST-2 + STS-B, 651 steps each, with seeds 1, 2, 3
#              (SEEDS="..." to choose): the difference per seed and its mean; also with STS-B at
#              half the batches of each classifier (--task-share stsb=0.5). CONFIGS="..." picks
#              among classification, with-stsb and stsb-share-S (any share S), and the pair
#              classification-accum2 (a TREC and an SST-2 batch per optimizer step, --grad-accum
#              2) against stsb-accum3-wW (the same two and an STS-B batch weighted W per step,
#              --grad-accum 3 --task-weight stsb=W): the same steps and classification batches,
#              with STS-B's gradient added to each step. PRECISION=bf16 trains in bf16.
# Prints markdown tables.
#   scripts/measure-embeddings.sh [reference] [drift] [drift-seeds]     (default: all)
# THREADS=N sets the thread count (default: all cores). Runs go to runs/measure-embeddings/.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
[ -x /usr/bin/time ] || { echo "measure-embeddings.sh: needs GNU time at /usr/bin/time (on Debian and Ubuntu: apt-get install time)" >&2; exit 1; }
parts=("$@"); [ ${#parts[@]} -eq 0 ] && parts=(reference drift drift-seeds)
for part in "${parts[@]}"; do
  case "$part" in reference|drift|drift-seeds) ;; *) echo "measure-embeddings.sh: unknown part $part (reference, drift, drift-seeds)" >&2; exit 2 ;; esac
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
timed() { # NAME COMMAND...: runs it, keeping wall time and peak RSS in $out/NAME.time; a run
  local name="$1"; shift # that has one is kept, so an interrupted part continues (KEEP=0 reruns)
  # Kept only for the same command (flags, PRECISION) and, for ours, the same build: a run of
  # other settings or of an older binary is no figure of this one.
  local signature="$*"
  [ "$1" = "$bin" ] && signature+=" | build $(stat -c '%Y %s' "$bin")"
  # (An older study's file of a failed run starts "Command exited" or "Command terminated".)
  if [ "${KEEP:-1}" = 1 ] && [ -s "$out/$name.time" ] && ! grep -q '^Command' "$out/$name.time" \
    && [ "$(cat "$out/$name.command" 2>/dev/null)" = "$signature" ]; then say "$name: kept from an earlier run"; return; fi
  say "$name: $*"
  # GNU time writes its file when the command fails or is interrupted too: only a run that
  # succeeded gets one, so that a failed one is run again rather than kept.
  rm -f "$out/$name.time"
  /usr/bin/time -f "%e %M" -o "$out/$name.time.new" "$@" > "$out/$name.stdout"
  printf '%s' "$signature" > "$out/$name.command"
  mv "$out/$name.time.new" "$out/$name.time"
}
python3 scripts/stsb_pairs.py "$data/stsb/train.csv" "$out/pairs_train.csv"
python3 scripts/stsb_pairs.py "$data/stsb/dev.csv" "$out/pairs_dev.csv"
python3 scripts/stsb_pairs.py --queries "$data/stsb/train.csv" "$out/queries_train.csv"
python3 scripts/stsb_pairs.py --queries "$data/stsb/dev.csv" "$out/queries_dev.csv"
stsb="stsb=$data/stsb/train.csv,$data/stsb/dev.csv"
trec="trec=$data/trec/train_split.csv,$data/trec/dev_split.csv"
sst2="sst2=$data/sst2/train.csv,$data/sst2/dev.csv"
train=("$bin" train --model "$model" --device cpu --threads "$threads" --quiet --overwrite --precision "${PRECISION:-fp32}")
evaluate() { # RUN: STS-B (and TREC and SST-2 where RUN trained them) dev metrics of RUN/last
  local run="$1" tasks=(--task "stsb=$data/stsb/dev.csv")
  [ "$run" = stsb-alone ] || tasks+=(--task "trec=$data/trec/dev_split.csv" --task "sst2=$data/sst2/dev.csv")
  # The same command scores other weights once the run was trained again: score it again.
  [ "$out/$run/last/model.safetensors" -nt "$out/eval-$run.time" ] && rm -f "$out/eval-$run.time"
  timed "eval-$run" "$bin" eval --model "$out/$run/last" --device cpu --threads "$threads" --json -q "${tasks[@]}"
  cp "$out/eval-$run.stdout" "$out/eval-$run.json"
}
recipe=(--epochs 1 --batch-size 32 --lr-backbone 2e-5 --layer-decay 1 --projection-dim 0 --warmup-ratio 0.1 --weight-decay 0.01 --seed 42)

for part in "${parts[@]}"; do
  case "$part" in
    reference)
      for kind in stsb pairs queries; do
        task="$stsb"; train_csv="$data/stsb/train.csv"; dev_csv="$data/stsb/dev.csv"; loss=cosent
        if [ "$kind" != stsb ]; then
          train_csv="$out/${kind}_train.csv"; dev_csv="$out/${kind}_dev.csv"; task="$kind=$train_csv,$dev_csv"; loss=mnrl
        fi
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
for kind, loss, metric in [("stsb", "CoSENT", "spearman"), ("pairs", "MultipleNegativesRanking", "mrr_at_10"),
                           ("queries", "MultipleNegativesRanking", "mrr_at_10")]:
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
      timed stsb-alone "${train[@]}" --task "$stsb" --epochs 1 --out "$out/stsb-alone"
      timed mtl-classification "${train[@]}" --task "$trec" --task "$sst2" --max-steps 434 --out "$out/mtl-classification"
      timed mtl-classification-longer "${train[@]}" --task "$trec" --task "$sst2" --max-steps 651 --out "$out/mtl-classification-longer"
      timed mtl-with-stsb "${train[@]}" --task "$trec" --task "$sst2" --task "$stsb" --max-steps 434 --out "$out/mtl-with-stsb"
      timed mtl-with-stsb-longer "${train[@]}" --task "$trec" --task "$sst2" --task "$stsb" --max-steps 651 --out "$out/mtl-with-stsb-longer"
      for run in stsb-alone mtl-classification mtl-classification-longer mtl-with-stsb mtl-with-stsb-longer; do
        evaluate "$run"
      done
      .venv/bin/python scripts/reference/drift_summary.py "$out" "$threads"
      ;;
    drift-seeds)
      mkdir -p "$out/drift-seeds" "$out/eval-drift-seeds"
      for seed in ${SEEDS:-1 2 3}; do
        for config in ${CONFIGS:-classification with-stsb stsb-share-0.5}; do
          tasks=(--task "$trec" --task "$sst2")
          case "$config" in
            classification) ;;
            with-stsb) tasks+=(--task "$stsb") ;;
            stsb-share-*) tasks+=(--task "$stsb" --task-share "stsb=${config#stsb-share-}") ;;
            classification-accum2) tasks+=(--grad-accum 2) ;;
            stsb-accum3-w*) tasks+=(--task "$stsb" --grad-accum 3 --task-weight "stsb=${config#stsb-accum3-w}") ;;
            *) echo "measure-embeddings.sh: unknown config $config (classification, with-stsb, stsb-share-S, classification-accum2, stsb-accum3-wW)" >&2; exit 2 ;;
          esac
          run="drift-seeds/$config-seed$seed"
          timed "$run" "${train[@]}" "${tasks[@]}" --max-steps 651 --seed "$seed" --out "$out/$run"
          evaluate "$run"
        done
      done
      .venv/bin/python scripts/reference/drift_summary.py "$out" "$threads"
      ;;
  esac
done
