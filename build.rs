//! Bakes the libtorch library directory into every binary of this package (the CLI and the
//! test binaries) as an rpath, so nothing has to export LD_LIBRARY_PATH to run them.
//!
//! torch-sys exports the directory it linked against as `DEP_TCH_LIBTORCH_LIB` (its `links`
//! key is "tch"); that is only visible here because torch-sys is a direct dependency. That
//! directory may be `.venv/libtorch-cpu/lib`, a view made of symlinks (see .cargo/config.toml);
//! the rpath points at the wheel's real `torch/lib`, where `libtorch_cuda.so` also lives, and
//! `SENTENCE_MTL_TORCH_LIB_DIR` tells the program where to dlopen it from.

use std::path::PathBuf;

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
    compile_torch_shim(&real_dir);
}

/// `csrc/torch_shim.cpp`: libtorch features tch does not expose (bf16 autocast, fused AdamW).
fn compile_torch_shim(torch_lib_dir: &std::path::Path) {
    println!("cargo:rerun-if-changed=csrc/torch_shim.cpp");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    let include = torch_lib_dir.parent().map(|torch| torch.join("include")).unwrap_or_default();
    // The PyPI wheel uses the pre-C++11 string ABI; the shim's signatures do not depend on it.
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "0".into());
    cc::Build::new()
        .cpp(true)
        .file("csrc/torch_shim.cpp")
        .include(include)
        .flag("-std=c++17")
        .define("_GLIBCXX_USE_CXX11_ABI", abi.as_str())
        .warnings(false)
        .opt_level(2)
        .compile("smtl_torch_shim");
}
