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
        println!("cargo:warning=torch-sys did not export DEP_TCH_LIBTORCH_LIB: no rpath set");
        println!("cargo:rustc-env=SENTENCE_MTL_TORCH_LIB_DIR=");
        return;
    };
    let real_dir = std::fs::canonicalize(lib_dir.join("libtorch_cpu.so"))
        .ok()
        .and_then(|lib| lib.parent().map(PathBuf::from))
        .or_else(|| std::fs::canonicalize(&lib_dir).ok())
        .unwrap_or(lib_dir);
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", real_dir.display());
    println!(
        "cargo:rustc-env=SENTENCE_MTL_TORCH_LIB_DIR={}",
        real_dir.display()
    );
}
