#!/usr/bin/env bash
# Start-up of two sentence-mtl builds, alternating: wall time of a one-sentence `encode`
# (process start -> embedding written) and peak RSS, N rounds each (default 12).
#   scripts/compare-startup.sh OLD_BINARY NEW_BINARY [ROUNDS]
# e.g. build a commit into a copy: git stash; git checkout REV; cargo build --release;
# cp target/release/sentence-mtl /tmp/old; git checkout -; git stash pop; cargo build --release
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
.venv/bin/python -c "import numpy" 2>/dev/null || { echo "compare-startup.sh: needs numpy in .venv: run scripts/setup.sh --reference first" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "compare-startup.sh: needs GNU time at /usr/bin/time (on Debian and Ubuntu: apt-get install time)" >&2; exit 1; }
[ $# -ge 2 ] || { echo "usage: scripts/compare-startup.sh OLD_BINARY NEW_BINARY [ROUNDS]" >&2; exit 2; }
old="$1" new="$2" rounds="${3:-12}"
for b in "$old" "$new"; do [ -x "$b" ] || { echo "compare-startup.sh: $b is not an executable" >&2; exit 2; }; done
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
for _ in $(seq "$rounds"); do
  for label in old new; do
    binary="$old"; [ "$label" = new ] && binary="$new"
    /usr/bin/time -f "$label %e %M" -a -o "$work/times" "$binary" encode --model models/all-MiniLM-L6-v2 \
      --device cpu --threads 2 --normalize --quiet --output "$work/$label.npy" "The movie was a delight."
  done
done
.venv/bin/python - "$work" "$rounds" <<'PY'
import statistics, sys, numpy as np
work, rounds = sys.argv[1], sys.argv[2]
runs = {}
for line in open(f"{work}/times"):
    label, wall, rss = line.split()
    runs.setdefault(label, []).append((float(wall), int(rss)))
print(f"one-sentence encode, all-MiniLM-L6-v2, {rounds} alternating rounds\n")
print("| build | min (s) | median (s) | max (s) | peak RSS (MB) |\n|---|---:|---:|---:|---:|")
for label in ("old", "new"):
    walls = [w for w, _ in runs[label]]
    print(f"| {label} | {min(walls):.2f} | {statistics.median(walls):.2f} | {max(walls):.2f} | {max(r for _, r in runs[label]) / 1024:.0f} |")
diff = np.abs(np.load(f"{work}/old.npy") - np.load(f"{work}/new.npy")).max()
print(f"\nmax |old - new| embedding difference: {diff:.2e}")
PY
