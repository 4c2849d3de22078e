#!/usr/bin/env bash
# Few labelled examples (docs/recipes.md, "Few examples"): 8 and 64 training rows per class,
# drawn with seed 20261202 from SST-2's and TREC's training files by
# scripts/reference/draw_per_class.py, trained with `sentence-mtl train` at its defaults (small-
# data mode turns itself on) and with SetFit (scripts/reference/setfit_reference.py), both with no
# dev set, then scored once on the full dev sets. Each draw is copied into its run folder.
# Prints a markdown table; runs go to runs/fewshot/.
#   scripts/fewshot-study.sh [sentence-mtl] [setfit]     (default: both)
# THREADS=N sets the thread count (default: all cores).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/setup.sh --reference >&2
threads="${THREADS:-$(nproc)}"
export OMP_NUM_THREADS="$threads" MKL_NUM_THREADS="$threads" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
data="$root/../shared/data"
out=runs/fewshot
model=models/all-MiniLM-L6-v2
bin=target/release/sentence-mtl
parts=" $* "; [ $# -eq 0 ] && parts=" sentence-mtl setfit "
mkdir -p "$out/draws" "$out/setfit"
ours() { # NAME TASK DRAW DEV
  local name="$1" task="$2" draw="$3" dev="$4"
  echo "[fewshot] sentence-mtl $name" >&2
  /usr/bin/time -f %e -o "$out/ours-$name.train_s" "$bin" train --model "$model" --device cpu \
    --threads "$threads" --overwrite --task "$task=$draw" --out "$out/ours/$name" \
    2> "$out/ours-$name.stderr" > /dev/null
  /usr/bin/time -f %e -o "$out/ours-$name.predict_s" "$bin" eval --model "$out/ours/$name/last" \
    --device cpu --threads "$threads" --task "$task=$dev" --json > "$out/ours-$name.json"
  cp "$draw" "$out/ours/$name/train_draw.csv"
}
setfit() { # NAME DRAW DEV
  echo "[fewshot] SetFit $1" >&2
  .venv/bin/python scripts/reference/setfit_reference.py --model "$model" --train "$2" --dev "$3" \
    --threads "$threads" --out "$out/setfit/$1.json" > /dev/null 2> "$out/setfit-$1.stderr"
}
for set in sst2 trec; do
  case "$set" in
    sst2) train="$data/sst2/train.csv"; dev="$data/sst2/dev.csv" ;;
    trec) train="$data/trec/train_split.csv"; dev="$data/trec/dev_split.csv" ;;
  esac
  for k in 8 64; do
    name="$set-$k"; draw="$out/draws/$name.csv"
    .venv/bin/python scripts/reference/draw_per_class.py "$train" "$draw" "$k" 20261202
    [[ "$parts" == *" sentence-mtl "* ]] && ours "$name" "$set" "$draw" "$dev"
    [[ "$parts" == *" setfit "* ]] && setfit "$name" "$draw" "$dev"
  done
done
.venv/bin/python - "$out" <<'PY'
import json, sys
out = sys.argv[1]
print("| task | rows per class | sentence-mtl accuracy / macro-F1 | SetFit accuracy / macro-F1 | sentence-mtl train + score s | SetFit train + score s |")
print("|---|---:|---:|---:|---:|---:|")
for task in ("sst2", "trec"):
    for k in (8, 64):
        name = f"{task}-{k}"
        ours = json.load(open(f"{out}/ours-{name}.json"))["tasks"][task]
        t = {part: float(open(f"{out}/ours-{name}.{part}").read().split()[-1]) for part in ("train_s", "predict_s")}
        s = json.load(open(f"{out}/setfit/{name}.json"))
        print(f"| {task} | {k} | {100 * ours['accuracy']:.1f} / {100 * ours['macro_f1']:.1f} | "
              f"{100 * s['accuracy']:.1f} / {100 * s['macro_f1']:.1f} | {t['train_s']:.0f} + {t['predict_s']:.0f} | "
              f"{s['train_s']:.0f} + {s['predict_s']:.0f} |")
PY
