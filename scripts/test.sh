#!/usr/bin/env bash
# The whole test suite on a fresh machine: setup (venv, model, release build), then every
# unit and end-to-end test. Tests that need the venv, the real model or ../shared/data fail
# here rather than skip (SENTENCE_MTL_REQUIRE_ALL=1).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/setup.sh
echo "[test] cargo test --release (unit tests, then end-to-end tests of the binary)" >&2
SENTENCE_MTL_REQUIRE_ALL=1 cargo test --release --locked "$@"
