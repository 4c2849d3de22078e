#!/usr/bin/env bash
# Builds sentence-mtl against another libtorch than the pinned torch==2.4.0: typically a GPU
# machine's own torch, where the 2.4.0 wheel's CUDA libraries (3.5 GB) cannot be brought.
#
#   scripts/build-for-torch.sh [--tests] TORCH_DIR [TARGET_DIR]
# TORCH_DIR   an installed or unpacked torch wheel's `torch` folder (with lib/ and include/)
# TARGET_DIR  cargo's target folder for this build (default: target-torch-VERSION)
# --tests     also build the test binaries (`cargo test --release --no-run`) against it and
#             list them, e.g. to run the CUDA end-to-end test on a GPU machine: they find the
#             binary and the project by the absolute paths they were built with
# The binary is TARGET_DIR/release/sentence-mtl, its rpath TORCH_DIR/lib: run it where that
# folder exists (or is a link to the machine's torch). The project's target/ and Cargo.lock
# are left as they were.
#
# Why a patched torch-sys: tch 0.17 (the one rust-bert 0.23 is built on) generates C wrappers
# for libtorch 2.4's operators. Against torch 2.11.0 three of them no longer compile, because
# those operators' signatures changed: _scaled_dot_product_cudnn_attention_backward,
# _scaled_mm and _scaled_mm_out. sentence-mtl calls none of them; the copy here makes them
# raise "not available" instead. Checked with torch 2.11.0+cu130: `encode` on CPU agrees with
# the torch 2.4.0 build to 1e-7, and training ran on an H200 (README, "GPU").
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
tests=0
if [ "${1:-}" = "--tests" ]; then tests=1; shift; fi
case "${1:-}" in -*) echo "build-for-torch.sh: unknown flag $1 (known: --tests)" >&2; exit 2 ;; esac
[ $# -ge 1 ] || { echo "usage: scripts/build-for-torch.sh [--tests] TORCH_DIR [TARGET_DIR]" >&2; exit 2; }
torch_dir="$(cd "$1" 2>/dev/null && pwd)" || { echo "build-for-torch.sh: $1: no such folder" >&2; exit 2; }
[ -f "$torch_dir/lib/libtorch_cpu.so" ] && [ -d "$torch_dir/include" ] || {
  echo "build-for-torch.sh: $torch_dir has no lib/libtorch_cpu.so and include/ (a torch wheel's torch folder?)" >&2; exit 2; }
version="$(sed -n "s/^__version__ = '\(.*\)'/\1/p" "$torch_dir/version.py")"
[ -n "$version" ] || { echo "build-for-torch.sh: cannot read the version from $torch_dir/version.py" >&2; exit 2; }
target="$(mkdir -p "${2:-target-torch-$version}" && cd "${2:-target-torch-$version}" && pwd)"
say() { printf '[build-for-torch] %s\n' "$*" >&2; }

# The std::string ABI libtorch was built with: the 2.4.0 wheel the old one, newer wheels cxx11.
# (grep -c, not -q: -q stops reading early and pipefail would count nm's SIGPIPE as failure)
abi=0
if [ "$(nm -D --defined-only "$torch_dir/lib/libc10.so" | grep -c '__cxx11')" -gt 0 ]; then abi=1; fi
say "torch $version at $torch_dir (C++11 string ABI: $abi)"

# A link-time view without libtorch_cuda.so, as scripts/setup.sh makes for 2.4.0: CUDA is
# loaded at run time (src/device.rs).
view="$target/libtorch-view"
rm -rf "$view"; mkdir -p "$view/lib"
ln -s "$torch_dir/include" "$view/include"
ln -s "$torch_dir/lib/libtorch_cpu.so" "$view/lib/libtorch_cpu.so"
ln -s "$torch_dir/lib/libtorch_cpu.so" "$view/lib/libtorch.so"
ln -s "$torch_dir/lib/libc10.so" "$view/lib/libc10.so"

cargo fetch --quiet
registry="${CARGO_HOME:-$HOME/.cargo}/registry/src"
original="$(ls -d "$registry"/*/torch-sys-0.17.0 | head -1)"
patched="$target/torch-sys-0.17.0"
rm -rf "$patched"; cp -r "$original" "$patched"
case "$version" in
  2.4.*) say "torch-sys: libtorch 2.4 is what tch 0.17 was generated for, no patch needed" ;;
  *) python3 - "$patched/libtch/torch_api_generated.cpp" <<'PY'
import sys
path = sys.argv[1]
changed_ops = ("_scaled_dot_product_cudnn_attention_backward", "_scaled_mm", "_scaled_mm_out")
lines = open(path).read().split("\n")
out, i, patched = [], 0, 0
while i < len(lines):
    line = lines[i]
    if line.strip() == "PROTECT(":
        end = i
        while lines[end].strip() != ")":
            end += 1
        body = "\n".join(lines[i:end + 1])
        op = next((o for o in changed_ops if f"torch::{o}(" in body), None)
        if op:
            out += ["  PROTECT(", f'    throw std::runtime_error("{op}: not available in this build (tch 0.17 against a newer libtorch)");', "  )"]
            patched += 1
            i = end + 1
            continue
    out.append(line)
    i += 1
open(path, "w").write("\n".join(out))
print(f"[build-for-torch] torch-sys: {patched} wrappers of changed operators made to raise", file=sys.stderr)
PY
  ;;
esac

cp Cargo.lock "$target/Cargo.lock.saved"
trap 'cp "$target/Cargo.lock.saved" Cargo.lock' EXIT
say "cargo build --release --target-dir $target (torch-sys from $patched)"
export LIBTORCH="$view" LIBTORCH_CXX11_ABI="$abi" LIBTORCH_BYPASS_VERSION_CHECK=1
patch_torch_sys=(--config "patch.crates-io.torch-sys.path=\"$patched\"")
cargo build --release --target-dir "$target" "${patch_torch_sys[@]}"
"$target/release/sentence-mtl" --version >/dev/null
say "built $target/release/sentence-mtl (rpath $(readlink -f "$torch_dir/lib"))"
if [ "$tests" = 1 ]; then
  say "cargo test --release --no-run"
  cargo test --release --no-run --target-dir "$target" "${patch_torch_sys[@]}" > "$target/test-build.log" 2>&1 ||
    { cat "$target/test-build.log" >&2; exit 1; }
  sed -n 's/^ *Executable \(.*\)$/[build-for-torch] test binary: \1/p' "$target/test-build.log" >&2
fi
