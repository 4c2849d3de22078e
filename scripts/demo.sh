#!/usr/bin/env bash
# The main job on the embedded default model: sets up what is missing, then shows
# all-MiniLM-L6-v2 sentence embeddings as a cosine-similarity matrix.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/setup.sh
echo "[demo] sentence-mtl encode --model models/all-MiniLM-L6-v2 --similarity --input data/sample_sentences.txt" >&2
target/release/sentence-mtl encode --model models/all-MiniLM-L6-v2 --similarity --input data/sample_sentences.txt
