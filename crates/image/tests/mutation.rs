//! Deterministic mutation testing of the parsers that read untrusted bytes:
//! thousands of damaged layers and random references, on every CI run.
//! (Coverage-guided fuzzing of the same entry points lives in `fuzz/`.)

use std::fs;
use std::io::Write;
use std::path::Path;

use berth_image::layer;
use berth_image::reference::Reference;

/// xorshift64*: reproducible without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn sample_layer() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |name: &str, kind: tar::EntryType, link: Option<&str>, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(0o755);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_600_000_000);
        h.set_size(data.len() as u64);
        if let Some(l) = link {
            h.set_link_name(l).unwrap();
        }
        b.append_data(&mut h, name, data).unwrap();
    };
    add("etc/", tar::EntryType::Directory, None, b"");
    add(
        "etc/passwd",
        tar::EntryType::Regular,
        None,
        b"root:x:0:0::/root:/bin/sh\n",
    );
    add("etc/.wh.shadow", tar::EntryType::Regular, None, b"");
    add("var/.wh..wh..opq", tar::EntryType::Regular, None, b"");
    add("bin/sh", tar::EntryType::Symlink, Some("busybox"), b"");
    add("bin/busybox", tar::EntryType::Regular, None, &[0x7f; 3000]);
    add("bin/ash", tar::EntryType::Link, Some("bin/busybox"), b"");
    add(
        "usr/lib/a/very/deep/path/with/many/components/file.txt",
        tar::EntryType::Regular,
        None,
        b"deep",
    );
    b.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}

fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        match rng.below(5) {
            0 => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 => {
                let i = rng.below(v.len());
                v[i] = [0, b'.', b'/', 0xff, b'0'][rng.below(5)];
            }
            2 => v.truncate(rng.below(v.len())),
            3 => {
                // Splice a hostile name into a header-sized spot.
                let evil: &[u8] =
                    [&b"../../escape"[..], b"/abs/escape", b"a/../../x"][rng.below(3)];
                let block = rng.below(v.len() / 512) * 512;
                let end = (block + evil.len()).min(v.len());
                v[block..end].copy_from_slice(&evil[..end - block]);
            }
            _ => {
                let i = rng.below(v.len());
                let n = rng.below(64);
                v.splice(i..i, std::iter::repeat_n(0u8, n));
            }
        }
        if v.is_empty() {
            break;
        }
    }
    v
}

fn only_child(parent: &Path, child: &str) {
    let names: Vec<_> = fs::read_dir(parent)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        vec![child.to_string()],
        "something was written beside the layer"
    );
}

#[test]
fn damaged_layers_never_panic_or_escape() {
    let plain = sample_layer();
    let gz = gzip(&plain);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut errors = 0;
    for round in 0..1500 {
        let base = if round % 2 == 0 { &plain } else { &gz };
        let input = mutate(&mut rng, base);
        let parent = tempfile::tempdir().unwrap();
        let dest = parent.path().join("layer");
        fs::create_dir(&dest).unwrap();
        if layer::apply(&input[..], &dest, None).is_err() {
            errors += 1;
        }
        only_child(parent.path(), "layer");
    }
    // The mutations must actually reach the error paths.
    assert!(
        errors > 100,
        "only {errors} of 1500 damaged layers were refused"
    );
}

#[test]
fn random_references_parse_or_fail_cleanly_and_round_trip() {
    let alphabet = b"abcXYZ019._-/:@[]sha256";
    let mut rng = Rng(42);
    let mut ok = 0;
    for _ in 0..20_000 {
        let len = rng.below(40);
        let s: String = (0..len)
            .map(|_| alphabet[rng.below(alphabet.len())] as char)
            .collect();
        match Reference::parse(&s) {
            Ok(r) => {
                ok += 1;
                let again = Reference::parse(&r.to_string()).expect("normalised form parses");
                assert_eq!(again, r, "{s:?} does not round trip");
                assert_eq!(
                    Reference::parse(&r.familiar()).unwrap(),
                    r,
                    "{s:?} familiar form"
                );
            }
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    }
    assert!(ok > 100, "only {ok} random references parsed");
}
