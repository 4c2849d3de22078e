#!/usr/bin/env bash
# The whole test suite on a fresh machine: setup with the Python reference stack (venv,
# model, release build), formatting and lint checks, then every unit and end-to-end test;
# then the same tests against the current-libtorch build (torch 2.15.0, CUDA 13.2, for GPUs
# the default 2.4.0 cannot drive), installed with its CUDA libraries so that its torchrun
# can launch that build (scripts/build-for-torch.sh; docs/gpu.md).
# Tests that need the venv, the real model or ../shared/data fail here rather than skip
# (SENTENCE_MTL_REQUIRE_ALL=1). Arguments, if any, go to `cargo test` instead.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# A fresh run fills about 14 GB at its peak (README, "First run"): say so at once rather than
# fail in pip with "No space left on device" minutes in. Later runs reuse what is installed.
if [ $# -eq 0 ] && [ ! -f .venv/torch-2.15.0/.with-cuda ]; then
  free_gb="$(df -Pk "$root" | awk 'NR == 2 { print int($4 / 1048576) }')"
  if [ "$free_gb" -lt 14 ]; then
    echo "[test] error: $root has $free_gb GB free; a first run of the tests needs about 14 GB (the reference stack, torch 2.15.0 with CUDA's libraries, two builds)" >&2
    exit 1
  fi
fi
scripts/setup.sh --reference
if [ $# -gt 0 ]; then
  exec env SENTENCE_MTL_REQUIRE_ALL=1 cargo test --release --locked "$@"
fi
# torch 2.15.0, which the second half installs with the venv's Python, has wheels for 3.11 and
# later: say so now rather than after the first half's tests.
if ! .venv/bin/python -c 'import sys; sys.exit(sys.version_info[:2] < (3, 11))'; then
  echo "[test] error: .venv's Python is older than 3.11, for which torch 2.15.0 (the current-libtorch build the tests also run) has no wheels; remove .venv and run PYTHON=python3.12 scripts/test.sh" >&2
  exit 1
fi
# Tests that check nothing on this machine (no bf16 CPU, no GPU, ...) list themselves here;
# cargo hides a passing test's output, so the list is printed at the end.
skip_log="$(mktemp)"
trap 'rm -f "$skip_log"' EXIT
export SENTENCE_MTL_SKIP_LOG="$skip_log"
echo "[test] cargo fmt --check" >&2
cargo fmt --check
echo "[test] cargo clippy --all-targets -- -D warnings" >&2
cargo clippy --release --all-targets --locked -- -D warnings
echo "[test] cargo test --release (unit tests, then end-to-end tests of the binary)" >&2
# The CUDA test passes without running on a machine without a GPU; run it on its own with its
# output shown, so that such a run says SKIPPED where everyone can see it.
SENTENCE_MTL_REQUIRE_ALL=1 cargo test --release --locked -- --skip train::cuda_training
echo "[test] the CUDA test, output shown (on a machine without a GPU it says SKIPPED)" >&2
cargo test --release --locked --test e2e train::cuda_training -- --nocapture
say_skipped() { # BUILD: the tests that skipped, then an empty list for the next build
  if [ -s "$skip_log" ]; then
    echo "[test] SKIPPED with the $1 build (they checked nothing on this machine):" >&2
    sed 's/^/[test]   /' "$skip_log" >&2
  else
    echo "[test] no test skipped with the $1 build" >&2
  fi
  : > "$skip_log"
}
say_skipped default
echo "[test] the same tests against the current libtorch (scripts/build-for-torch.sh --run-tests --cuda current)" >&2
scripts/build-for-torch.sh --run-tests --cuda current
say_skipped current-libtorch
