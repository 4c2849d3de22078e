"""Unpacks the C headers of the CUDA wheels a torch wheel pins, for csrc/nccl_shim.cpp; or,
with --specs, prints those wheels' requirement specs (one per line) for pip to install.

usage: cuda_headers.py TORCH_METADATA DEST PART...
       cuda_headers.py --specs TORCH_METADATA PART...

TORCH_METADATA  a torch wheel (.whl) or an installed torch's METADATA file
DEST            the folder holding torch/ (site-packages, or a `pip --target` folder): the
                headers land in DEST/nvidia/.../include, where build.rs looks for them
PART            what to fetch: cudart, cupti, cublas, cusparse, cusolver, crt, cccl, nccl

Newer torch wheels (2.11 on) pin CUDA through the cuda-toolkit meta package, whose extras
(named as the parts) give the versions that match; older ones pin nvidia-*-cu12 wheels
directly (crt and cccl are not among them). Only each wheel's include/ is kept, so a build machine without a
GPU needs a few MB of headers, not the libraries; except for cudart and cupti, whose libraries
(a few MB) libtorch_cpu.so links, so that a binary built against the torch runs here.
"""
import pathlib
import re
import subprocess
import sys
import tempfile
import zipfile

from pip._vendor.packaging.requirements import Requirement


def requirements(metadata_text, extras=("",)):
    reqs = [Requirement(line.split(":", 1)[1].strip()) for line in metadata_text.splitlines()
            if line.startswith("Requires-Dist:")]
    return [r for r in reqs if r.marker is None or any(r.marker.evaluate({"extra": e}) for e in extras)]


def wheel_metadata(wheel):
    with zipfile.ZipFile(wheel) as z:
        return z.read(next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))).decode()


def download(specs, into):
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--dest", str(into), *specs],
                   check=True)
    return list(pathlib.Path(into).glob("*.whl"))


# The wheels older torch wheels pin directly, by part (with or without a -cuNN suffix).
DIRECT = {"cudart": "nvidia-cuda-runtime", "cupti": "nvidia-cuda-cupti", "cublas": "nvidia-cublas",
          "cusparse": "nvidia-cusparse", "cusolver": "nvidia-cusolver", "nccl": "nvidia-nccl"}


def pinned_specs(metadata, parts, tmp):
    """The requirement specs of the wheels torch's METADATA pins for `parts`."""
    wanted = []
    for req in requirements(metadata):
        if req.name == "cuda-toolkit":
            toolkit = download([f"{req.name}{req.specifier}"], tmp / "toolkit")[0]
            extras = tuple(parts - {"nccl"})
            wanted += [f"{s.name}{s.specifier}" for s in requirements(wheel_metadata(toolkit), extras)
                       if s.marker is not None]
        elif any(re.fullmatch(rf"{DIRECT[p]}(-cu\d+)?", req.name) for p in parts if p in DIRECT):
            wanted.append(f"{req.name}{req.specifier}")
    return wanted


def main():
    specs_only = sys.argv[1:2] == ["--specs"]
    args = sys.argv[2:] if specs_only else sys.argv[1:]
    if len(args) < (2 if specs_only else 3):
        sys.exit(__doc__)
    source = pathlib.Path(args[0])
    dest, parts = (None, set(args[1:])) if specs_only else (pathlib.Path(args[1]), set(args[2:]))
    metadata = wheel_metadata(source) if source.suffix == ".whl" else source.read_text()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        wanted = pinned_specs(metadata, parts, tmp)
        if not wanted:
            sys.exit(f"cuda_headers.py: {source} pins no CUDA or NCCL wheel for {sorted(parts)}")
        if specs_only:
            print("\n".join(wanted))
            return
        for wheel in download(wanted, tmp / "headers"):
            linked = any(part in wheel.name for part in ("cuda_runtime", "cuda_cupti"))
            with zipfile.ZipFile(wheel) as z:
                z.extractall(dest, [n for n in z.namelist() if "/include/" in n or (linked and "/lib/" in n)])
        print(f"[cuda_headers] {len(wanted)} wheels' headers into {dest}/nvidia: {', '.join(wanted)}", file=sys.stderr)


if __name__ == "__main__":
    main()
