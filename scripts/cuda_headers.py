"""Unpacks the C headers of the CUDA wheels a torch wheel pins, for csrc/nccl_shim.cpp.

usage: cuda_headers.py TORCH_METADATA DEST PART...

TORCH_METADATA  a torch wheel (.whl) or an installed torch's METADATA file
DEST            the folder holding torch/ (site-packages, or a `pip --target` folder): the
                headers land in DEST/nvidia/.../include, where build.rs looks for them
PART            what to fetch: the cuda-toolkit extras torch's pin names (cudart, cublas,
                cusparse, cusolver, crt, cccl), and `nccl` for torch's NCCL pin

Newer torch wheels (2.11 on) pin CUDA through the cuda-toolkit meta package; its extras give
the versions that match. Only each wheel's include/ is kept, so a build machine without a
GPU needs a few MB of headers, not the libraries; except for cudart and cupti, whose libraries
(a few MB) libtorch_cpu.so links, so that a binary built against the torch runs here.
"""
import pathlib
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


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    source, dest, parts = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), set(sys.argv[3:])
    metadata = wheel_metadata(source) if source.suffix == ".whl" else source.read_text()
    wanted = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        for req in requirements(metadata):
            if req.name == "cuda-toolkit":
                toolkit = download([f"{req.name}{req.specifier}"], tmp / "toolkit")[0]
                extras = tuple(parts - {"nccl"})
                wanted += [f"{s.name}{s.specifier}" for s in requirements(wheel_metadata(toolkit), extras)
                           if s.marker is not None]
            elif "nccl" in req.name and "nccl" in parts:
                wanted.append(f"{req.name}{req.specifier}")
        if not wanted:
            sys.exit(f"cuda_headers.py: {source} pins no cuda-toolkit or NCCL wheel for {sorted(parts)}")
        for wheel in download(wanted, tmp / "headers"):
            linked = any(part in wheel.name for part in ("cuda_runtime", "cuda_cupti"))
            with zipfile.ZipFile(wheel) as z:
                z.extractall(dest, [n for n in z.namelist() if "/include/" in n or (linked and "/lib/" in n)])
        print(f"[cuda_headers] {len(wanted)} wheels' headers into {dest}/nvidia: {', '.join(wanted)}", file=sys.stderr)


if __name__ == "__main__":
    main()
