#!/usr/bin/env bash
# Encode throughput of two sentence-mtl builds, alternating rounds on the same input:
# the first N sentences of SST-2's training set (default 2000), joined J at a time into one
# text (default 1; 6 makes texts of about 128 tokens), all-MiniLM-L6-v2, batch 32, 2 threads,
# at --precision P (default fp32). Prints texts/s per round and the ratio, and checks that
# both builds wrote the same embeddings (largest absolute difference).
#   scripts/compare-encode.sh OLD_BINARY NEW_BINARY [ROUNDS] [N] [PRECISION] [J]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
.venv/bin/python -c "import numpy" 2>/dev/null || { echo "compare-encode.sh: needs numpy in .venv: run scripts/setup.sh --reference first" >&2; exit 1; }
[ $# -ge 2 ] || { echo "usage: scripts/compare-encode.sh OLD_BINARY NEW_BINARY [ROUNDS] [N] [PRECISION] [J]" >&2; exit 2; }
old="$1" new="$2" rounds="${3:-3}" n="${4:-2000}" precision="${5:-fp32}" join="${6:-1}"
for b in "$old" "$new"; do [ -x "$b" ] || { echo "compare-encode.sh: $b is not an executable" >&2; exit 2; }; done
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
python3 - "$root/../shared/data/sst2/train.csv" "$n" "$join" > "$work/input.txt" <<'PY'
import csv, sys
rows = [r["text"].replace("\n", " ") for r in csv.DictReader(open(sys.argv[1], newline=""))][: int(sys.argv[2])]
j = int(sys.argv[3])
print("\n".join(" ".join(rows[i : i + j]) for i in range(0, len(rows), j)))
PY
texts=$(wc -l < "$work/input.txt")
printf '%-6s %-14s %-14s %s\n' round "old texts/s" "new texts/s" ratio
for round in $(seq "$rounds"); do
  line=("$round")
  for label in old new; do
    binary="$old"; [ "$label" = new ] && binary="$new"
    start=$(date +%s.%N)
    "$binary" encode --model models/all-MiniLM-L6-v2 --device cpu --threads 2 --precision "$precision" \
      --batch-size 32 --quiet --input "$work/input.txt" --output "$work/$label.npy"
    line+=("$(python3 -c "print('%.1f' % ($texts / ($(date +%s.%N) - $start)))")")
  done
  printf '%-6s %-14s %-14s %s\n' "${line[0]}" "${line[1]}" "${line[2]}" "$(python3 -c "print('%.2f' % (${line[2]} / ${line[1]}))")"
done
"$root/.venv/bin/python" -c "import numpy as np, sys; a, b = np.load(sys.argv[1]), np.load(sys.argv[2]); print('largest |difference| of the embeddings: %.2e' % abs(a - b).max())" "$work/old.npy" "$work/new.npy"
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; $texts texts of $join sentence(s), $precision"
