#!/usr/bin/env bash
# Builds sentence-mtl against another libtorch than the pinned torch==2.4.0: the current torch
# wheel (for GPUs that need CUDA 12.8 or later, such as Blackwell), or a machine's own torch.
#
#   scripts/build-for-torch.sh [--tests | --run-tests] [--cuda] TORCH [TARGET_DIR]
# TORCH       `current` (torch 2.15.0, the build CI tests beside the default one), a version
#             fetched from PyPI into .venv/torch-VERSION/, or an installed or unpacked torch
#             wheel's `torch` folder (with lib/ and include/)
# TARGET_DIR  cargo's target folder for this build (default: target-torch-VERSION)
# --tests     also build the test binaries (`cargo test --release --no-run`) against it and
#             list them, e.g. to run the CUDA end-to-end test on a GPU machine: they find the
#             binary and the project by the absolute paths they were built with
# --run-tests also run the unit and end-to-end tests against it (what scripts/test.sh does
#             with `current`; needs scripts/setup.sh --reference first)
# --cuda      with a version: install the wheel's CUDA libraries too (a few GB), so that
#             `--device cuda` works and the build has NCCL; without it only CUDA's runtime
#             and CUPTI come, which libtorch_cpu.so links
# The binary is TARGET_DIR/release/sentence-mtl, its rpath TORCH's lib/: run it where that
# folder exists (or is a link to the machine's torch). The project's target/ and Cargo.lock
# are left as they were.
#
# Why a patched torch-sys: tch 0.17 (the one rust-bert 0.23 is built on) generates C wrappers
# for libtorch 2.4's operators. Against torch 2.11 three of them no longer compile, because
# those operators' signatures changed (_scaled_dot_product_cudnn_attention_backward, _scaled_mm,
# _scaled_mm_out); 2.15 also removed align_as, align_tensors, cholesky(_out) and qr(_out).
# sentence-mtl calls none of them; the copy here makes them raise "not available" instead, and
# compiles the wrappers as C++20 where the headers require it (docs/gpu.md).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
current_torch=2.15.0
tests=0 run_tests=0 cuda=0
usage="usage: scripts/build-for-torch.sh [--tests | --run-tests] [--cuda] TORCH [TARGET_DIR]"
# Flags anywhere (after TORCH too), before anything is downloaded.
positional=()
for arg in "$@"; do
  case "$arg" in
    --tests) tests=1 ;;
    --run-tests) run_tests=1 ;;
    --cuda) cuda=1 ;;
    -h|--help) echo "$usage"; exit 0 ;;
    -*) echo "build-for-torch.sh: unknown flag $arg (known: --tests, --run-tests, --cuda)" >&2; exit 2 ;;
    *) positional+=("$arg") ;;
  esac
done
[ ${#positional[@]} -ge 1 ] && [ ${#positional[@]} -le 2 ] || { echo "$usage" >&2; exit 2; }
set -- "${positional[@]}"
say() { printf '[build-for-torch] %s\n' "$*" >&2; }

# A version: the wheel from PyPI, installed with `pip --target` so that libtorch's own rpath
# ($ORIGIN/../../nvidia/...) finds the CUDA libraries installed beside it.
torch_arg="$1"
[ "$torch_arg" = current ] && torch_arg="$current_torch"
if [[ "$torch_arg" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]]; then
  install="$root/.venv/torch-$torch_arg"
  python_bin="$root/.venv/bin/python"
  [ -x "$python_bin" ] || { echo "build-for-torch.sh: no .venv/bin/python: run scripts/setup.sh first" >&2; exit 1; }
  pip() { "$python_bin" -m pip --disable-pip-version-check --no-cache-dir --quiet "$@"; }
  if [ ! -f "$install/torch/lib/libtorch_cpu.so" ] || { [ "$cuda" = 1 ] && [ ! -f "$install/.with-cuda" ]; }; then
    rm -rf "$install" "$install.tmp"
    trap 'rm -rf "$install.tmp"' EXIT
    if [ "$cuda" = 1 ]; then
      say "installing torch $torch_arg with its CUDA libraries into .venv/torch-$torch_arg (several GB)"
      # --no-warn-conflicts: pip would compare these with the .venv's packages, which they do not join.
      pip install --no-warn-conflicts --target "$install.tmp" "torch==$torch_arg"
      # Triton (1 GB) compiles kernels for Python's torch.compile; neither the binary nor
      # torchrun loads it.
      rm -rf "$install.tmp"/triton "$install.tmp"/triton-*.dist-info
      # CUDA's crt/ and nv/ headers, which the NCCL shim's headers include and no library
      # wheel ships (csrc/nccl_shim.cpp; build.rs builds it only when they are there).
      "$python_bin" scripts/cuda_headers.py "$(echo "$install.tmp"/torch-*.dist-info/METADATA)" "$install.tmp" crt cccl
      touch "$install.tmp/.with-cuda"
    else
      say "installing the torch $torch_arg wheel with CUDA's runtime and CUPTI into .venv/torch-$torch_arg"
      pip download --no-deps --dest "$install.tmp/wheels" "torch==$torch_arg"
      # The two CUDA libraries libtorch_cpu.so links, as the wheel pins them (directly as
      # nvidia-*-cu12, or through the cuda-toolkit meta package's extras).
      mapfile -t cuda_libs < <("$python_bin" scripts/cuda_headers.py --specs "$install.tmp"/wheels/torch-*.whl cudart cupti)
      [ ${#cuda_libs[@]} -ge 1 ] || { echo "build-for-torch.sh: torch $torch_arg names no CUDA runtime to install" >&2; exit 1; }
      # One pip call, so that the packages sharing the nvidia/ folder all land in it.
      pip install --no-deps --target "$install.tmp" "$install.tmp"/wheels/torch-*.whl "${cuda_libs[@]}"
      rm -rf "$install.tmp/wheels"
    fi
    mv "$install.tmp" "$install"
    trap - EXIT
  fi
  torch_arg="$install/torch"
fi
torch_dir="$(cd "$torch_arg" 2>/dev/null && pwd -P)" || { echo "build-for-torch.sh: $torch_arg: no such folder (and not a version such as $current_torch)" >&2; exit 2; }
version="$(sed -n "s/^__version__ = '\(.*\)'/\1/p" "$torch_dir/version.py")"
[ -n "$version" ] || { echo "build-for-torch.sh: cannot read the version from $torch_dir/version.py" >&2; exit 2; }
target="${2:-target-torch-${version%%+*}}"
target="$(mkdir -p "$target" && cd "$target" && pwd -P)"

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
original="$(ls -d "$registry"/*/torch-sys-0.17.0 2>/dev/null | head -1)"
[ -n "$original" ] || { echo "build-for-torch.sh: torch-sys 0.17.0's source is not in $registry (cargo fetch puts it there)" >&2; exit 1; }
patched="$target/torch-sys-0.17.0"
rm -rf "$patched"; cp -r "$original" "$patched"
case "$version" in
  2.4.*) say "torch-sys: libtorch 2.4 is what tch 0.17 was generated for, no patch needed" ;;
  *) python3 - "$patched/libtch/torch_api_generated.cpp" <<'PY'
import re, sys
path = sys.argv[1]
# Operators whose signature changed (2.11 on) or that were removed (2.15: align_*, the
# deprecated cholesky and qr, superseded by torch.linalg's).
changed_ops = {"_scaled_dot_product_cudnn_attention_backward", "_scaled_mm", "_scaled_mm_out",
               "align_as", "align_tensors", "cholesky", "cholesky_out", "qr", "qr_out"}
calls = re.compile(r"(?:torch::|->)(" + "|".join(sorted(changed_ops)) + r")\(")
lines = open(path).read().split("\n")
out, i, patched = [], 0, 0
while i < len(lines):
    line = lines[i]
    if line.strip() == "PROTECT(":
        end = i
        while lines[end].strip() != ")":
            end += 1
        call = calls.search("\n".join(lines[i:end + 1]))
        if call:
            out += ["  PROTECT(", f'    throw std::runtime_error("{call.group(1)}: not available in this build (tch 0.17 against a newer libtorch)");', "  )"]
            patched += 1
            i = end + 1
            continue
    out.append(line)
    i += 1
open(path, "w").write("\n".join(out))
print(f"[build-for-torch] torch-sys: {patched} wrappers of changed or removed operators made to raise", file=sys.stderr)
PY
  ;;
esac
# Newer libtorch headers (2.15's; 2.11's did not yet) need C++20; tch 0.17 compiles its wrappers as C++17 (build.rs
# chooses the same for the shims from the same header).
if grep -q 'C++20 or later' "$torch_dir/include/ATen/ATen.h"; then
  sed -i 's/-std=c++17/-std=c++20/' "$patched/build.rs"
  say "torch-sys: wrappers compiled as C++20, which these headers require"
fi

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
if [ "$run_tests" = 1 ]; then
  say "cargo test --release against torch $version (unit tests, then end-to-end tests of this build's binary)"
  SENTENCE_MTL_REQUIRE_ALL=1 cargo test --release --target-dir "$target" "${patch_torch_sys[@]}" -- --skip train::cuda_training
fi
