#!/usr/bin/env bash
# Few labelled examples (docs/recipes.md, "Few examples"): 8 and 64 training rows per class,
# drawn from SST-2's and TREC's training files by scripts/reference/draw_per_class.py, once per
# draw seed (DRAWS, default 20261202; with 16 rows the draw moves a score by points), trained
# with `sentence-mtl train` at its defaults (small-data mode turns itself on) and with SetFit
# (scripts/reference/setfit_reference.py), both with no dev set, then scored once on the full
# dev sets. Each draw is copied into its run folder.
# Prints a markdown table (with several draws, also their mean and range); runs go to
# runs/fewshot/, and a run already scored is kept (KEEP=0 reruns it).
#   scripts/fewshot-study.sh [sentence-mtl] [setfit]     (default: both)
# THREADS=N sets the thread count (default: all cores); SETS="sst2 trec", SIZES="8 64" and
# DRAWS="20261202 20261203 ..." choose the runs; TRAIN_FLAGS="..." adds flags to sentence-mtl's
# runs, OUT=DIR puts them elsewhere (SetFit's runs, which do not depend on them, stay in
# runs/fewshot/setfit and are shared).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
[ -x /usr/bin/time ] || { echo "fewshot-study.sh: needs GNU time at /usr/bin/time (on Debian and Ubuntu: apt-get install time)" >&2; exit 1; }
# Parts and sets are checked before setup and the runs.
for part in "$@"; do
  case "$part" in sentence-mtl|setfit) ;; *) echo "fewshot-study.sh: unknown part $part (sentence-mtl, setfit)" >&2; exit 2 ;; esac
done
for set in ${SETS:-sst2 trec}; do
  case "$set" in sst2|trec) ;; *) echo "fewshot-study.sh: unknown set $set in SETS (sst2, trec)" >&2; exit 2 ;; esac
done
scripts/setup.sh --reference >&2
threads="${THREADS:-$(nproc)}"
export OMP_NUM_THREADS="$threads" MKL_NUM_THREADS="$threads" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
data="$root/../shared/data"
out="${OUT:-runs/fewshot}"
setfit_out=runs/fewshot/setfit
model=models/all-MiniLM-L6-v2
bin="${BIN:-target/release/sentence-mtl}"
parts=" $* "; [ $# -eq 0 ] && parts=" sentence-mtl setfit "
mkdir -p "$out/draws" "$setfit_out"
ours() { # NAME TASK DRAW DEV
  local name="$1" task="$2" draw="$3" dev="$4"
  # Kept only when scored with the same TRAIN_FLAGS (another set of flags is another study).
  [ "${KEEP:-1}" = 1 ] && [ -s "$out/ours-$name.json" ] && [ "$(cat "$out/ours-$name.flags" 2>/dev/null)" = "${TRAIN_FLAGS:-}" ] && return
  echo "[fewshot] sentence-mtl $name" >&2
  rm -f "$out/ours-$name.json"
  /usr/bin/time -f %e -o "$out/ours-$name.train_s" "$bin" train --model "$model" --device cpu \
    --threads "$threads" --overwrite --task "$task=$draw" --out "$out/ours/$name" ${TRAIN_FLAGS:-} \
    2> "$out/ours-$name.stderr" > /dev/null ||
    { echo "[fewshot] sentence-mtl $name failed:" >&2; tail -5 "$out/ours-$name.stderr" >&2; exit 1; }
  /usr/bin/time -f %e -o "$out/ours-$name.predict_s" "$bin" eval --model "$out/ours/$name/last" \
    --device cpu --threads "$threads" --task "$task=$dev" --json > "$out/ours-$name.json.new"
  printf '%s' "${TRAIN_FLAGS:-}" > "$out/ours-$name.flags"
  mv "$out/ours-$name.json.new" "$out/ours-$name.json"
  cp "$draw" "$out/ours/$name/train_draw.csv"
}
setfit() { # NAME DRAW DEV
  [ "${KEEP:-1}" = 1 ] && [ -s "$setfit_out/$1.json" ] && return
  echo "[fewshot] SetFit $1" >&2
  .venv/bin/python scripts/reference/setfit_reference.py --model "$model" --train "$2" --dev "$3" \
    --threads "$threads" --out "$setfit_out/$1.json" > /dev/null 2> "$setfit_out/$1.stderr" ||
    { echo "[fewshot] SetFit $1 failed:" >&2; tail -5 "$setfit_out/$1.stderr" >&2; exit 1; }
}
for set in ${SETS:-sst2 trec}; do
  case "$set" in
    sst2) train="$data/sst2/train.csv"; dev="$data/sst2/dev.csv" ;;
    trec) train="$data/trec/train_split.csv"; dev="$data/trec/dev_split.csv" ;;
  esac
  for k in ${SIZES:-8 64}; do
    for draw_seed in ${DRAWS:-20261202}; do
      name="$set-$k-draw$draw_seed"; draw="$out/draws/$name.csv"
      .venv/bin/python scripts/reference/draw_per_class.py "$train" "$draw" "$k" "$draw_seed"
      if [[ "$parts" == *" sentence-mtl "* ]]; then ours "$name" "$set" "$draw" "$dev"; fi
      if [[ "$parts" == *" setfit "* ]]; then setfit "$name" "$draw" "$dev"; fi
    done
  done
done
.venv/bin/python scripts/reference/fewshot_summary.py "$out" "$setfit_out"
