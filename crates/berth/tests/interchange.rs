//! Archive shapes beyond the fixtures: multi-image archives, image indexes
//! with several platforms, zstd layers, layered whiteouts; and the image
//! listing's filters and formats.

mod util;

use std::fs;
use std::os::unix::fs::FileTypeExt;

use serde_json::{json, Value};

use util::*;

fn layer_with(name: &str, data: &[u8]) -> Vec<u8> {
    tar_of(&[Member::Dir("data/"), Member::File(name, data)])
}

#[test]
fn multi_image_save_and_load_keeps_every_image_and_tag() {
    let b = Berth::new();
    b.load(&fixture("sample-app.docker-save.tar"));
    b.load(&fixture("busybox-1.35"));
    let busybox = b
        .ids()
        .into_iter()
        .find(|id| id.contains("34bf58e4"))
        .unwrap();
    b.ok(&["tag", &busybox, "busybox:1.35"]);
    b.ok(&[
        "tag",
        &busybox,
        "registry.example:5000/tools/busybox:stable",
    ]);
    for format in ["docker-archive", "oci-archive"] {
        let out = b.path(&format!("both-{format}.tar"));
        let out_s = out.display().to_string();
        b.ok(&[
            "save",
            "--format",
            format,
            "-o",
            &out_s,
            "sample/app:1.0",
            "busybox:1.35",
            "registry.example:5000/tools/busybox:stable",
        ]);
        let fresh = Berth::new();
        let printed = fresh.load(&out);
        let mut lines: Vec<&str> = printed.lines().collect();
        lines.sort();
        assert_eq!(
            lines,
            vec![
                "Loaded image: busybox:1.35",
                "Loaded image: registry.example:5000/tools/busybox:stable",
                "Loaded image: sample/app:1.0",
            ],
            "{format}"
        );
        assert_eq!(fresh.ids().len(), 2, "{format}: two distinct images");
        let shown = fresh.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
        assert!(
            shown.contains("registry.example:5000/tools/busybox:stable"),
            "{shown}"
        );
    }
}

/// An index listing arm64 first, then amd64, then a nested index: berth
/// must pick linux/amd64.
#[test]
fn image_index_chooses_linux_amd64() {
    let b = Berth::new();
    let layout = b.path("multi");
    // Two single-platform images written into one layout.
    let arm = oci_layout(
        &layout,
        &[Layer::gzip(layer_with("data/arch", b"arm64"))],
        None,
    );
    let amd = oci_layout(
        &layout,
        &[Layer::gzip(layer_with("data/arch", b"amd64"))],
        None,
    );
    let size = |d: &str| fs::metadata(blob_path(&layout, d)).unwrap().len();
    let nested = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": arm, "size": size(&arm),
             "platform": {"architecture": "arm64", "os": "linux"}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": amd, "size": size(&amd),
             "platform": {"architecture": "amd64", "os": "linux"}},
        ],
    }))
    .unwrap();
    let nested_digest = put_blob(&layout, &nested);
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": nested_digest,
            "size": nested.len(),
            "annotations": {"io.containerd.image.name": "example/multi:1"},
        }],
    });
    fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
    assert_eq!(b.load(&layout).trim(), "Loaded image: example/multi:1");
    let snaps = b.snapshot_dirs();
    assert_eq!(snaps.len(), 1, "only the amd64 image is unpacked");
    assert_eq!(fs::read(snaps[0].join("data/arch")).unwrap(), b"amd64");

    // An index with no amd64 entry is refused clearly.
    let only_arm = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": put_blob(&layout, &serde_json::to_vec(&json!({
                "schemaVersion": 2,
                "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                               "digest": arm, "size": size(&arm),
                               "platform": {"architecture": "arm64", "os": "linux"}}],
            })).unwrap()),
            "size": 0,
        }],
    });
    fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&only_arm).unwrap(),
    )
    .unwrap();
    let before = b.state();
    let run = b.fail(&["load", "-i", &layout.display().to_string()]);
    run.one_error_line(&["linux/amd64"]);
    assert_eq!(b.state(), before);
}

#[test]
fn zstd_layers_and_whiteouts_across_layers() {
    let b = Berth::new();
    let layout = b.path("zstd");
    let base = tar_of(&[
        Member::Dir("etc/"),
        Member::File("etc/keep", b"keep"),
        Member::File("etc/gone", b"gone"),
        Member::Dir("cache/"),
        Member::File("cache/old", b"old"),
    ]);
    let top = tar_of(&[
        Member::File("etc/.wh.gone", b""),
        Member::Dir("cache/"),
        Member::File("cache/.wh..wh..opq", b""),
        Member::File("cache/new", b"new"),
    ]);
    let zstd_layer = Layer {
        blob: zstd::encode_all(&top[..], 3).unwrap(),
        tar: top,
        media_type: "application/vnd.oci.image.layer.v1.tar+zstd".into(),
    };
    oci_layout(
        &layout,
        &[Layer::gzip(base), zstd_layer],
        Some("example/zstd:1"),
    );
    b.load(&layout);
    let v = b.inspect("example/zstd:1");
    assert_eq!(v["RootFS"]["Layers"].as_array().unwrap().len(), 2);
    // The top snapshot is the lowerdir listed first.
    let lower = v["GraphDriver"]["Data"]["LowerDir"]
        .as_str()
        .unwrap()
        .to_string();
    let top_dir = std::path::PathBuf::from(lower.split(':').next().unwrap());
    let wh = fs::symlink_metadata(top_dir.join("etc/gone")).unwrap();
    assert!(
        wh.file_type().is_char_device(),
        "etc/gone is an overlay whiteout"
    );
    assert_eq!(fs::read(top_dir.join("cache/new")).unwrap(), b"new");
    let mut buf = [0u8; 4];
    let n = rustix_getxattr(&top_dir.join("cache"), &mut buf);
    assert_eq!(&buf[..n], b"y", "cache/ is opaque");

    // Saved as docker-archive and loaded elsewhere, the layers come back
    // with the same diff_ids (the zstd blob is decompressed on the way).
    let out = b.path("z.tar");
    b.ok(&["save", "-o", &out.display().to_string(), "example/zstd:1"]);
    let fresh = Berth::new();
    fresh.load(&out);
    assert_eq!(fresh.inspect("example/zstd:1")["RootFS"], v["RootFS"]);
    assert_eq!(fresh.inspect("example/zstd:1")["Id"], v["Id"]);
}

fn rustix_getxattr(path: &std::path::Path, buf: &mut [u8]) -> usize {
    rustix::fs::getxattr(path, "trusted.overlay.opaque", buf).expect("opaque xattr")
}

#[test]
fn images_filters_and_formats() {
    let b = Berth::new();
    b.load(&fixture("sample-app.docker-save.tar"));
    b.load(&fixture("busybox-1.35"));
    let all = b.ok(&["images", "--format", "json"]);
    let rows: Vec<Value> = all
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2);
    for r in &rows {
        for k in [
            "ID",
            "Repository",
            "Tag",
            "Size",
            "CreatedSince",
            "CreatedAt",
            "Digest",
        ] {
            assert!(r.get(k).is_some(), "{k} missing in {r}");
        }
    }
    let dangling = b.ok(&["images", "-q", "--filter", "dangling=true"]);
    assert_eq!(dangling.trim(), "34bf58e478a3");
    let tagged = b.ok(&[
        "images",
        "--format",
        "{{.Repository}}:{{.Tag}}",
        "--filter",
        "dangling=false",
    ]);
    assert_eq!(tagged.trim(), "sample/app:1.0");
    assert_eq!(
        b.ok(&["images", "-q", "--filter", "reference=sample/*"])
            .trim(),
        "4932b9c044bb"
    );
    assert_eq!(b.ok(&["images", "-q", "sample/app"]).trim(), "4932b9c044bb");
    assert_eq!(
        b.ok(&["images", "-q", "--filter", "reference=nothing*"])
            .trim(),
        ""
    );
    assert_eq!(
        b.ok(&[
            "images",
            "-q",
            "--filter",
            "label=org.opencontainers.image.title=sample"
        ])
        .trim(),
        "4932b9c044bb"
    );
    assert_eq!(
        b.ok(&["images", "-q", "--filter", "label=nosuch"]).trim(),
        ""
    );
    let digests = b.ok(&["images", "--digests"]);
    assert!(
        digests.lines().next().unwrap().contains("DIGEST"),
        "{digests}"
    );
    // Loaded, never pulled or pushed: no registry digest, as docker shows.
    assert!(digests.contains("<none>"), "{digests}");
    let table = b.ok(&["image", "ls"]);
    assert!(table.starts_with("REPOSITORY"), "{table}");
    let bad = b.fail(&["images", "--filter", "color=blue"]);
    bad.one_error_line(&["color"]);

    // history: newest first, the image ID on top, Docker's columns.
    let h = b.ok(&["history", "sample/app:1.0"]);
    let first = h.lines().nth(1).unwrap();
    assert!(first.starts_with("4932b9c044bb"), "{h}");
    assert!(h.lines().next().unwrap().contains("CREATED BY"), "{h}");
    assert!(h.lines().last().unwrap().contains("Imported from -"), "{h}");
    let q = b.ok(&["history", "-q", "--no-trunc", "sample/app:1.0"]);
    assert!(
        q.lines().next().unwrap().starts_with("sha256:4932b9c0"),
        "{q}"
    );
}
