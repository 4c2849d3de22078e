//! Bakes the libtorch library directory into every binary of this package (the CLI and the
//! test binaries) as an rpath, so nothing has to export LD_LIBRARY_PATH to run them.
//!
//! torch-sys exports the directory it linked against as `DEP_TCH_LIBTORCH_LIB` (its `links`
//! key is "tch"); that is only visible here because torch-sys is a direct dependency. That
//! directory may be `.venv/libtorch-cpu/lib`, a view made of symlinks (see .cargo/config.toml);
//! the rpath points at the wheel's real `torch/lib`, where `libtorch_cuda.so` also lives, and
//! `SENTENCE_MTL_TORCH_LIB_DIR` tells the program where to dlopen it from.

use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let Some(lib_dir) = std::env::var_os("DEP_TCH_LIBTORCH_LIB").map(PathBuf::from) else {
        panic!("cannot build without libtorch: run scripts/setup.sh");
    };
    let real_dir = std::fs::canonicalize(lib_dir.join("libtorch_cpu.so"))
        .ok()
        .and_then(|lib| lib.parent().map(PathBuf::from))
        .or_else(|| std::fs::canonicalize(&lib_dir).ok())
        .unwrap_or(lib_dir);
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", real_dir.display());
    println!("cargo:rustc-env=SENTENCE_MTL_TORCH_LIB_DIR={}", real_dir.display());
    println!("cargo:rustc-env=SENTENCE_MTL_LIBTORCH_VERSION={}", libtorch_version(&real_dir));
    compile_torch_shim(&real_dir);
    compile_c10d_shim(&real_dir);
    compile_nccl_shim(&real_dir);
}

/// The torch wheel's version (`torch/version.py`), shown by `--version`: which build this is
/// matters on GPUs (CUDA 12.1 in 2.4.0) and under torchrun (its torch must be the same).
fn libtorch_version(torch_lib_dir: &Path) -> String {
    let version_file = torch_lib_dir.parent().map(|torch| torch.join("version.py")).unwrap_or_default();
    println!("cargo:rerun-if-changed={}", version_file.display());
    std::fs::read_to_string(&version_file)
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|line| Some(line.strip_prefix("__version__ = ")?.trim_matches(['\'', '"']).to_string()))
        })
        .unwrap_or_else(|| "unknown".into())
}

/// `csrc/torch_shim.cpp`: libtorch features tch does not expose (bf16 autocast, fused AdamW).
fn compile_torch_shim(torch_lib_dir: &Path) {
    println!("cargo:rerun-if-changed=csrc/torch_shim.cpp");
    shim_build(torch_lib_dir, "csrc/torch_shim.cpp").compile("smtl_torch_shim");
}

/// `csrc/c10d_shim.cpp`: libtorch's distributed layer (TCPStore, ProcessGroupGloo), and
/// `csrc/gradient_sync.cpp`: DDP's gradient all-reduce during backward. c10d's Gloo
/// header includes Gloo's headers, which the torch wheel does not ship: Debian's libgloo-dev
/// has them (scripts/setup.sh installs it; docs/distributed.md says why they are sound here).
fn compile_c10d_shim(torch_lib_dir: &Path) {
    for file in ["csrc/c10d_shim.cpp", "csrc/c10d_group.hpp", "csrc/gradient_sync.cpp"] {
        println!("cargo:rerun-if-changed={file}");
    }
    println!("cargo:rerun-if-env-changed=GLOO_INCLUDE_DIR");
    let gloo_include = std::env::var_os("GLOO_INCLUDE_DIR").map(PathBuf::from).unwrap_or_else(|| "/usr/include".into());
    if !gloo_include.join("gloo/algorithm.h").exists() {
        panic!(
            "cannot build without Gloo's headers (no {}): install Debian's libgloo-dev (scripts/setup.sh does), or set GLOO_INCLUDE_DIR",
            gloo_include.join("gloo/algorithm.h").display()
        );
    }
    shim_build(torch_lib_dir, "csrc/c10d_shim.cpp")
        .file("csrc/gradient_sync.cpp")
        .include(gloo_include)
        .compile("smtl_c10d_shim");
}

/// `csrc/nccl_shim.cpp`: libtorch's NCCL process group, for CUDA tensors in data-parallel runs.
/// It lives in `libtorch_cuda.so`, which the binary does not link, so the shim is a shared
/// object of its own, embedded in the binary and loaded after the CUDA backend
/// (src/distributed/nccl.rs). Its headers (CUDA's runtime, cuBLAS, cuSPARSE, cuSOLVER, NCCL, and
/// CUDA's `crt/` and `nv/` headers) come from the nvidia-* wheels beside the torch wheel, which
/// scripts/setup.sh installs on machines with an NVIDIA driver; without them the build has no
/// NCCL and data-parallel CUDA runs use Gloo (`--version` says which).
fn compile_nccl_shim(torch_lib_dir: &Path) {
    println!("cargo::rustc-check-cfg=cfg(nccl_shim)");
    println!("cargo:rerun-if-changed=csrc/nccl_shim.cpp");
    // The wheels' headers sit beside torch/ in site-packages (or in a `pip --target` folder).
    // scripts/setup.sh rebuilds this package when it installs them.
    let nvidia = torch_lib_dir.join("../../nvidia");
    if nvidia.is_dir() {
        println!("cargo:rerun-if-changed={}", nvidia.display());
    }
    let includes: Vec<PathBuf> = std::fs::read_dir(&nvidia)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join("include"))
        .filter(|dir| dir.is_dir())
        .collect();
    let needed =
        ["nccl.h", "cuda_runtime_api.h", "cublas_v2.h", "cusparse.h", "cusolverDn.h", "crt/host_config.h", "nv/target"];
    if !needed.iter().all(|file| includes.iter().any(|dir| dir.join(file).exists())) {
        println!("cargo:rustc-env=SENTENCE_MTL_NCCL=without NCCL");
        return;
    }
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let mut build = shim_build(torch_lib_dir, "csrc/nccl_shim.cpp");
    build.pic(true).define("USE_C10D_NCCL", "1");
    for dir in &includes {
        build.include(dir);
    }
    let objects = build.compile_intermediates();
    let library = out.join("libsmtl_nccl.so");
    let status = build
        .get_compiler()
        .to_command()
        .arg("-shared")
        .args(&objects)
        .arg("-o")
        .arg(&library)
        .arg(format!("-L{}", torch_lib_dir.display()))
        .args(["-ltorch_cuda", "-lc10_cuda", "-ltorch_cpu", "-lc10", "-Wl,--no-undefined"])
        .arg(format!("-Wl,-rpath,{}", torch_lib_dir.display()))
        .status()
        .expect("cannot run the C++ compiler to link csrc/nccl_shim.cpp");
    assert!(status.success(), "linking csrc/nccl_shim.cpp into {} failed", library.display());
    println!("cargo:rustc-cfg=nccl_shim");
    println!("cargo:rustc-env=SENTENCE_MTL_NCCL_SHIM={}", library.display());
    println!("cargo:rustc-env=SENTENCE_MTL_NCCL=with NCCL");
}

/// A C++17 (C++20 for newer libtorch) build of one shim file against the wheel's headers.
fn shim_build(torch_lib_dir: &Path, file: &str) -> cc::Build {
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    let include = torch_lib_dir.parent().map(|torch| torch.join("include")).unwrap_or_default();
    // The PyPI wheel uses the pre-C++11 string ABI; the shims' signatures do not depend on it.
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "0".into());
    // Newer libtorch headers (2.15's; 2.11's did not yet) refuse anything older than C++20.
    let aten = std::fs::read_to_string(include.join("ATen/ATen.h")).unwrap_or_default();
    let standard = if aten.contains("C++20 or later") { "-std=c++20" } else { "-std=c++17" };
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .file(file)
        .include(&include)
        // libtorch's C++ API headers (newer c10d headers include them).
        .include(include.join("torch/csrc/api/include"))
        .flag(standard)
        .define("_GLIBCXX_USE_CXX11_ABI", abi.as_str())
        .warnings(false)
        .opt_level(2);
    build
}
