#!/usr/bin/env bash
# Encode throughput, first-embedding latency and peak memory: sentence-mtl vs
# sentence-transformers, alternating, on the same CPU with the same thread count.
#
#   scripts/bench-encode.sh [--quick] [--rounds N]
#
# Workload: ../shared/data/sst2/train.csv (6920 sentences; --quick: the first 1000),
# all-MiniLM-L6-v2, batch 32, normalised embeddings. Figures per implementation are the
# best of N rounds (default 2):
#   first embedding  process start -> one sentence's embedding written (wall clock)
#   sentences/s      N / (wall of the N-sentence run - wall of the 1-sentence run), i.e.
#                    steady-state throughput with start-up and model loading taken out
#   end-to-end       N / wall of the N-sentence run
#   peak RSS         maximum resident memory of the N-sentence run
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
[ -x /usr/bin/time ] || { echo "bench-encode.sh: needs GNU time at /usr/bin/time (on Debian and Ubuntu: apt-get install time)" >&2; exit 1; }
quick=0; rounds=2
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1 ;;
    --rounds)
      [ $# -ge 2 ] && [[ "$2" =~ ^[1-9][0-9]*$ ]] || { echo "bench-encode.sh: --rounds needs a positive whole number" >&2; exit 2; }
      rounds="$2"; shift ;;
    *) echo "bench-encode.sh: unknown flag $1" >&2; exit 2 ;;
  esac
  shift
done
scripts/setup.sh --reference >&2
threads="${THREADS:-$(nproc)}"
export OMP_NUM_THREADS="$threads" MKL_NUM_THREADS="$threads" TOKENIZERS_PARALLELISM=true HF_HUB_OFFLINE=1
model=models/all-MiniLM-L6-v2
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
data="$root/../shared/data/sst2/train.csv"
if [ "$quick" = 1 ]; then head -n 1001 "$data" > "$work/input.csv"; else cp "$data" "$work/input.csv"; fi
n=$(( $(wc -l < "$work/input.csv") - 1 ))
sentence="The movie was a delight from beginning to end."

timed() { # label file -- command...: appends "label wall_s rss_kb" to file
  local label="$1" file="$2"; shift 3
  /usr/bin/time -f "%e %M" -o "$work/t" "$@" >/dev/null 2>"$work/err" || { cat "$work/err" >&2; exit 1; }
  echo "$label $(cat "$work/t")" >> "$file"
}
ours=(target/release/sentence-mtl encode --model "$model" --device cpu --threads "$threads" --batch-size 32 --normalize --quiet)
ref=(.venv/bin/python scripts/reference/st_encode.py "$model")
for r in $(seq "$rounds"); do
  echo "[bench] round $r/$rounds: $n sentences, $threads threads" >&2
  timed ours_first "$work/runs" -- "${ours[@]}" --output "$work/o1.npy" "$sentence"
  timed st_first "$work/runs" -- "${ref[@]}" "--sentence=$sentence" 32 "$work/s1.npy"
  timed ours_full "$work/runs" -- "${ours[@]}" --input "$work/input.csv" --output "$work/o.npy"
  timed st_full "$work/runs" -- "${ref[@]}" "$work/input.csv" 32 "$work/s.npy"
done
.venv/bin/python - "$work/runs" "$n" "$threads" "$work/o.npy" "$work/s.npy" <<'PY'
import sys, numpy as np
runs, n, threads = sys.argv[1], int(sys.argv[2]), sys.argv[3]
best = {}
for line in open(runs):
    label, wall, rss = line.split()
    wall, rss = float(wall), int(rss)
    old = best.get(label)
    best[label] = (min(wall, old[0]), min(rss, old[1])) if old else (wall, rss)
a, b = np.load(sys.argv[4]), np.load(sys.argv[5])
cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
def row(name, key):
    first, (full, rss) = best[f"{key}_first"][0], best[f"{key}_full"]
    return name, first, n / (full - first), n / full, rss / 1024
rows = [row("sentence-mtl", "ours"), row("sentence-transformers", "st")]
print(f"encode, all-MiniLM-L6-v2, {n} sentences (sst2/train.csv), batch 32, {threads} threads, best of rounds\n")
print("| implementation | first embedding (s) | sentences/s (steady) | sentences/s (end-to-end) | peak RSS (MB) |")
print("|---|---:|---:|---:|---:|")
for name, first, steady, e2e, rss in rows:
    print(f"| {name} | {first:.2f} | {steady:.1f} | {e2e:.1f} | {rss:.0f} |")
(o, s) = rows
print(f"| ratio sentence-mtl / ST | {o[1]/s[1]:.2f}x | {o[2]/s[2]:.2f}x | {o[3]/s[3]:.2f}x | {o[4]/s[4]:.2f}x |")
print(f"\nagreement: cosine(sentence-mtl, sentence-transformers) min {cos.min():.6f}, mean {cos.mean():.6f}")
PY
