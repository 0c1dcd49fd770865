//! A thousand load/destroy cycles of a small model leave resident memory flat.

mod common;

use axl::{Context, ContextOptions, Model};
use common::{write_tiny_llama, ScratchDir, MEMORY_MODEL};

extern "C" {
    fn sysconf(name: i32) -> i64;
}
const SC_PAGESIZE: i32 = 30; // Linux

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * unsafe { sysconf(SC_PAGESIZE) } as u64
}

#[test]
fn model_handles_do_not_leak() {
    let dir = ScratchDir::new("memory");
    write_tiny_llama(dir.path(), MEMORY_MODEL);
    let ctx = Context::with_options(ContextOptions::new().num_threads(1)).unwrap();
    let cycle = || drop(Model::load(&ctx, dir.path()).unwrap());

    for _ in 0..50 {
        cycle(); // warm up allocator pools and lazily initialised state
    }
    let host_before = ctx.memory_stats().unwrap().host_current_bytes;
    let rss_before = resident_bytes();
    for _ in 0..1000 {
        cycle();
    }
    let rss_after = resident_bytes();
    let host_after = ctx.memory_stats().unwrap().host_current_bytes;

    assert_eq!(host_after, host_before, "the context still holds bytes of destroyed models");
    let margin = 8 << 20;
    assert!(
        rss_after <= rss_before + margin,
        "resident memory grew from {rss_before} to {rss_after} bytes over 1000 cycles"
    );
}
