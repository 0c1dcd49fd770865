//! Links libaxl dynamically from the directory named by AXL_LIB_DIR (default: the CMake build
//! directory `build/` at the repository root) and records the C compiler's view of every public
//! struct for the layout tests.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo_root(manifest_dir: &Path) -> PathBuf {
    manifest_dir.join("../../..")
}

fn dir_from_env(name: &str, default: PathBuf) -> PathBuf {
    println!("cargo:rerun-if-env-changed={name}");
    let dir = env::var_os(name).map(PathBuf::from).unwrap_or(default);
    dir.canonicalize().unwrap_or(dir)
}

/// Compiles and runs bindings/layout/axl_layout.c; its output (struct sizes and field offsets
/// as the C compiler lays them out) is what the tests compare the Rust mirrors against.
/// A failure only warns: it matters to the tests, not to users of the crate.
fn probe_c_layout(include_dir: &Path, root: &Path, out_dir: &Path) -> String {
    let source = root.join("bindings/layout/axl_layout.c");
    println!("cargo:rerun-if-changed={}", source.display());
    println!("cargo:rerun-if-env-changed=CC");
    let compiler = env::var("CC").unwrap_or_else(|_| "cc".to_string());
    let exe = out_dir.join("axl_layout");
    let compiled =
        Command::new(&compiler).arg("-I").arg(include_dir).arg(&source).arg("-o").arg(&exe).status();
    match compiled {
        Ok(status) if status.success() => {}
        other => {
            println!(
                "cargo:warning=could not compile {} with {compiler} ({other:?}); layout tests will fail",
                source.display()
            );
            return String::new();
        }
    }
    match Command::new(&exe).output() {
        Ok(output) if output.status.success() => String::from_utf8_lossy(&output.stdout).into_owned(),
        other => {
            println!("cargo:warning=could not run the layout probe ({other:?}); layout tests will fail");
            String::new()
        }
    }
}

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());
    let root = repo_root(&manifest_dir);
    let lib_dir = dir_from_env("AXL_LIB_DIR", root.join("build"));
    let include_dir = dir_from_env("AXL_INCLUDE_DIR", root.join("include"));
    println!("cargo:rerun-if-changed={}", include_dir.join("axl.h").display());

    println!("cargo:rustc-link-search=native={}", lib_dir.display());
    println!("cargo:rustc-link-lib=dylib=axl");
    // Tests of this crate run from target/; the rpath lets them find libaxl without
    // LD_LIBRARY_PATH. Crates depending on this one get the directory as DEP_AXL_LIB_DIR.
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib_dir.display());
    println!("cargo:lib_dir={}", lib_dir.display());

    let layout = probe_c_layout(&include_dir, &root, &out_dir);
    fs::write(out_dir.join("c_layout.txt"), layout).expect("write c_layout.txt");
}
