#!/usr/bin/env bash
# The main job on the embedded default model (all-MiniLM-L6-v2), end to end on a CPU in
# about a minute: multi-task fine-tuning on the small sample CSVs in data/sample/
# (question type, 6 classes; sentiment, 2 classes; sentence similarity, scored pairs that
# train the embeddings themselves), evaluation with tables and pictures, predictions for
# new sentences, and the fine-tuned embeddings' similarity matrix.
# Everything it writes goes to runs/demo/.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/setup.sh
bin=target/release/sentence-mtl
run=runs/demo
step() { printf '\n[demo] %s\n' "$*" >&2; }

step "1/4 train: a shared MiniLM encoder, a head per classification task, and the embeddings (10 epochs, batch 8)"
# The sample sets are tiny (48 + 36 sentences), so the learning rates are set higher
# than the defaults, which are meant for thousands of examples. On sets this small,
# small-data mode would switch itself on and pull each label's sentences together in the
# shared embedding space (SetFit's contrastive pairs), which the demo's 36 similarity pairs
# cannot hold against, and would refit flatter heads; this run shows the embeddings and the
# heads' probabilities, so it keeps plain cross-entropy (--small-data off). Same dev macro-F1
# and Spearman either way, a higher Pearson without it (docs/usage.md, docs/recipes.md).
$bin train --model models/all-MiniLM-L6-v2 \
  --task questions=data/sample/questions_train.csv,data/sample/questions_dev.csv \
  --task sentiment=data/sample/sentiment_train.csv,data/sample/sentiment_dev.csv \
  --task similarity=data/sample/similarity_train.csv,data/sample/similarity_dev.csv \
  --out "$run" --overwrite --epochs 10 --batch-size 8 --small-data off \
  --lr-backbone 5e-5 --lr-heads 2e-3

step "2/4 eval: the best checkpoint on the dev sets (tables; JSON, CSV and PNG in $run/eval)"
$bin eval --model "$run/best" --out "$run/eval" \
  --task questions=data/sample/questions_dev.csv \
  --task sentiment=data/sample/sentiment_dev.csv \
  --task similarity=data/sample/similarity_dev.csv

step "3/4 predict: new sentences with each head"
$bin predict --model "$run/best" --task questions --quiet \
  "Who painted the Mona Lisa?" "How many moons does Mars have?" "Where is Machu Picchu?"
$bin predict --model "$run/best" --task sentiment --quiet \
  "A wonderful evening, I loved every minute." "Cold food and a rude waiter."

step "4/4 encode: the fine-tuned encoder's embeddings (384-d, normalised, as all-MiniLM-L6-v2's)"
$bin encode --model "$run/best" --similarity --quiet --input data/sample_sentences.txt

step "done: pictures in $run/eval/ (confusion_questions.png, confusion_sentiment.png, similarity_similarity.png, curves.png)"
