#![no_main]
//! Layer apply on arbitrary bytes (plain, gzip or zstd by magic): never
//! panics and never writes beside its directory.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let parent = tempfile::tempdir().unwrap();
    let dest = parent.path().join("layer");
    std::fs::create_dir(&dest).unwrap();
    let _ = berth_image::layer::apply(data, &dest, None);
    let entries: Vec<_> = std::fs::read_dir(parent.path()).unwrap().collect();
    assert_eq!(entries.len(), 1, "wrote beside the layer directory");
});
