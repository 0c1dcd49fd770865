//! Sets an rpath to libaxl's directory (found by axl-sys) on this crate's tests and examples,
//! so `cargo test` runs without LD_LIBRARY_PATH.

fn main() {
    if let Ok(dir) = std::env::var("DEP_AXL_LIB_DIR") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
}
