#!/usr/bin/env bash
# Regenerates the README's "What happens when things go wrong" table from the bad-input
# corpus test (tests/e2e/bad_input.rs): every case with the error line a user sees.
#   scripts/error-table.sh > table.md
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/setup.sh --reference >&2
out="$(mktemp)"; trap 'rm -f "$out"' EXIT
SENTENCE_MTL_REQUIRE_ALL=1 SENTENCE_MTL_ERROR_TABLE="$out" \
  cargo test --release --locked --test e2e bad_input >&2
cat "$out"
