#![no_main]
//! `berth load` of an OCI layout whose index.json is the fuzz input (the
//! blobs are a real busybox image): never panics, and a failed load leaves
//! the store empty.

use std::path::Path;

use berth_image::load::{load, Input};
use berth_image::store::Store;
use libfuzzer_sys::fuzz_target;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/busybox-1.35");
    copy_dir(&fixture, &layout);
    std::fs::write(layout.join("index.json"), data).unwrap();
    let mut store = Store::open(&tmp.path().join("root")).unwrap();
    if load(&mut store, Input::Path(&layout)).is_err() {
        assert!(store.images().unwrap().is_empty());
    }
});
