//! Black-box tests of the `berth` binary: what a user sees on the terminal
//! and in the store, each test on its own store root.

mod util;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::{json, Value};

use util::*;

/// The image in `sample-app.docker-save.tar` (its config digest).
const SAMPLE_ID: &str = "sha256:4932b9c044bbeaad3fd9bd649189d8d69548821770024197112ac9281e39ebda";
/// The image in the `sample-app` OCI layout.
const SAMPLE_OCI_ID: &str =
    "sha256:400972472ab2332c51e292f79d0d70d703572020b0a533b14521bf5cebe6976d";
/// Its manifest.
const SAMPLE_OCI_MANIFEST: &str =
    "sha256:7d9ce390f6b09ba57bfa316318b942368d4b845510ba9a015c3b20f22bc71fb9";
/// The image in the `busybox-1.35` OCI layout.
/// The diff_ids of the sample image (both forms).
const SAMPLE_DIFF_IDS: [&str; 3] = [
    "sha256:3278117cdb68c45a352e2eb89995699957dd7b0b23ffe78dda87277c1157efa4",
    "sha256:fabe65b4803aca660f5030a07d12142f348eb731483133dca9bec21b8b3acc2e",
    "sha256:55d97d4b3b6e060344b00391b3acfb46e1198b88419c11b67332ecce4d0fb492",
];

fn docker_save_tar() -> PathBuf {
    fixture("sample-app.docker-save.tar")
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// Drops object keys whose value is "", false or null, recursively: what
/// docker leaves out of an image config (or prints as an empty default).
fn without_empty(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !matches!(v, Value::Null | Value::Bool(false)) && *v != "")
                .map(|(k, v)| (k.clone(), without_empty(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(without_empty).collect()),
        other => other.clone(),
    }
}

fn str_list(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|x| x.as_str().expect("string").to_string())
        .collect()
}

// ---- 1. load a docker-archive, list and inspect ---------------------------

#[test]
fn load_docker_archive_then_images_and_inspect_match_docker() {
    let b = Berth::new();
    let out = b.load(&docker_save_tar());
    assert_eq!(out, "Loaded image: sample/app:1.0\n");

    // The table: header, then one row for sample/app 1.0.
    let table = b.ok(&["images"]);
    let mut lines = table.lines();
    let header = lines.next().expect("header");
    for col in ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"] {
        assert!(header.contains(col), "header {header:?} lacks {col}");
    }
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows.len(), 1, "{table}");
    assert_eq!(rows[0][0], "sample/app");
    assert_eq!(rows[0][1], "1.0");
    assert_eq!(rows[0][2], &SAMPLE_ID[7..19]);

    let quiet = b.ok(&["images", "-q"]);
    let ids: Vec<&str> = quiet.lines().collect();
    assert_eq!(ids.len(), 1, "{quiet}");
    assert!(is_hex(ids[0], 12), "{quiet}");
    assert_eq!(ids[0], &SAMPLE_ID[7..19]);

    let json_out = b.ok(&["images", "--format", "json"]);
    let lines: Vec<Value> = json_out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect();
    assert_eq!(lines.len(), 1, "{json_out}");
    assert_eq!(lines[0]["Repository"], "sample/app");
    assert_eq!(lines[0]["Tag"], "1.0");
    assert_eq!(lines[0]["ID"], &SAMPLE_ID[7..19]);

    let config_out = b.ok(&[
        "image",
        "inspect",
        "--format",
        "{{json .Config}}",
        "sample/app:1.0",
    ]);
    let config: Value = serde_json::from_str(config_out.trim()).expect("config is JSON");
    let docker = json!({
        "User": "app",
        "ExposedPorts": {"8080/tcp": {}},
        "Env": [
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "APP_MODE=prod"
        ],
        "Cmd": ["sh", "-c", "cat /app/artifact; id -u; pwd; echo $APP_MODE"],
        "Healthcheck": {"Test": ["CMD-SHELL", "test -f /app/artifact"], "Interval": 5000000000u64},
        "WorkingDir": "/app",
        "Labels": {"org.opencontainers.image.title": "sample"},
        "StopSignal": "SIGINT"
    });
    assert_eq!(
        without_empty(&config),
        without_empty(&docker),
        "berth's .Config (left) differs from docker's (right)"
    );

    let v = b.inspect("sample/app:1.0");
    assert_eq!(v["Id"], SAMPLE_ID);
    assert_eq!(str_list(&v["RepoTags"]), ["sample/app:1.0"]);
    assert_eq!(str_list(&v["RootFS"]["Layers"]), SAMPLE_DIFF_IDS);
    assert_eq!(v["Architecture"], "amd64");
    assert_eq!(v["Os"], "linux");
    // The same image by short ID and by full ID.
    assert_eq!(b.inspect(&SAMPLE_ID[7..19])["Id"], SAMPLE_ID);
    assert_eq!(b.inspect(SAMPLE_ID)["Id"], SAMPLE_ID);
}

// ---- 2. OCI layouts: directory, tar, stdin --------------------------------

#[test]
fn load_oci_layout_from_dir_tar_and_stdin() {
    let layout = fixture("sample-app");
    // The OCI layout as a tar, made by tar(1) as a user would.
    let b = Berth::new();
    let tar_path = b.path("sample-app.oci.tar");
    let st = std::process::Command::new("tar")
        .arg("-C")
        .arg(&layout)
        .arg("-cf")
        .arg(&tar_path)
        .arg(".")
        .status()
        .expect("run tar");
    assert!(st.success());

    // Directory.
    let dir = Berth::new();
    let out = dir.load(&layout);
    assert_eq!(out, format!("Loaded image ID: {SAMPLE_OCI_ID}\n"));
    assert_eq!(dir.ids(), [SAMPLE_OCI_ID]);

    // Tar file.
    let out = b.load(&tar_path);
    assert_eq!(out, format!("Loaded image ID: {SAMPLE_OCI_ID}\n"));
    assert_eq!(b.ids(), [SAMPLE_OCI_ID]);

    // Standard input (`berth load < file`), tar and docker-archive.
    let stdin = Berth::new();
    let r = stdin
        .run_with_stdin(&["load"], fs::File::open(&tar_path).unwrap())
        .ok();
    assert_eq!(r.stdout, format!("Loaded image ID: {SAMPLE_OCI_ID}\n"));
    let r = stdin
        .run_with_stdin(&["load"], fs::File::open(docker_save_tar()).unwrap())
        .ok();
    assert_eq!(r.stdout, "Loaded image: sample/app:1.0\n");
    let mut ids = stdin.ids();
    ids.sort();
    assert_eq!(ids, [SAMPLE_OCI_ID, SAMPLE_ID]);

    // The three stores hold the same OCI image, unpacked the same way.
    for store in [&dir, &b, &stdin] {
        let v = store.inspect(SAMPLE_OCI_ID);
        assert_eq!(str_list(&v["RootFS"]["Layers"]), SAMPLE_DIFF_IDS);
        assert_eq!(v["Config"]["User"], "app");
    }
    assert_eq!(dir.snapshot_dirs().len(), 3);
    assert_eq!(b.snapshot_dirs().len(), 3);
    // Both forms of the sample share the three snapshots (same ChainIDs).
    assert_eq!(stdin.snapshot_dirs().len(), 3);
}

#[test]
fn load_untagged_busybox_prints_image_id() {
    let b = Berth::new();
    let out = b.load(&fixture("busybox-1.35"));
    assert_eq!(out, format!("Loaded image ID: {BUSYBOX_ID}\n"));
    let table = b.ok(&["images"]);
    let rows: Vec<Vec<&str>> = table
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 1, "{table}");
    assert_eq!(rows[0][..3], ["<none>", "<none>", &BUSYBOX_ID[7..19]]);
    // -q prints the ID quietly; `load -q` prints nothing.
    let q = Berth::new();
    assert_eq!(
        q.ok(&["load", "-q", "-i", &s(&fixture("busybox-1.35"))]),
        ""
    );
    assert_eq!(q.ids(), [BUSYBOX_ID]);
}

#[test]
fn loading_twice_is_idempotent() {
    for input in [
        fixture("sample-app"),
        docker_save_tar(),
        fixture("busybox-1.35"),
    ] {
        let b = Berth::new();
        let first = b.load(&input);
        let state = b.state();
        let count = b.ids().len();
        let second = b.load(&input);
        assert_eq!(first, second, "{}", input.display());
        assert_eq!(b.ids().len(), count, "{}", input.display());
        assert_eq!(
            b.state(),
            state,
            "a second load of {} changed the store",
            input.display()
        );
    }
}

// ---- 3. what lands on disk ------------------------------------------------

/// The file an image shows at `rel`: the first snapshot (top layer first)
/// that has it.
fn effective(b: &Berth, image: &str, rel: &str) -> PathBuf {
    let v = b.inspect(image);
    let lower = v["GraphDriver"]["Data"]["LowerDir"]
        .as_str()
        .expect("LowerDir");
    for dir in lower.split(':') {
        let dir = Path::new(dir);
        assert!(
            dir.starts_with(b.root.join("snapshots")),
            "{} is not under ROOT/snapshots",
            dir.display()
        );
        let p = dir.join(rel);
        if p.symlink_metadata().is_ok() {
            return p;
        }
    }
    panic!("{rel} is in no snapshot of {image} ({lower})");
}

#[test]
fn unpacked_snapshots_keep_links_owners_modes_and_lookalikes() {
    for input in [fixture("sample-app"), docker_save_tar()] {
        let b = Berth::new();
        b.load(&input);
        let image = b.ids()[0].clone();
        let dirs = b.snapshot_dirs();
        assert_eq!(dirs.len(), 3, "{dirs:?}");

        // Every snapshot that has app/link has it as a symlink to "artifact".
        let links: Vec<PathBuf> = dirs
            .iter()
            .map(|d| d.join("app/link"))
            .filter(|p| p.symlink_metadata().is_ok())
            .collect();
        assert!(!links.is_empty(), "no snapshot has app/link");
        for l in &links {
            assert!(l.symlink_metadata().unwrap().file_type().is_symlink());
            assert_eq!(fs::read_link(l).unwrap(), Path::new("artifact"));
        }

        let artifact = effective(&b, &image, "app/artifact");
        let m = artifact.symlink_metadata().unwrap();
        assert!(m.is_file());
        assert_eq!((m.uid(), m.gid()), (1234, 1234), "{}", artifact.display());
        assert_eq!(fs::read_to_string(&artifact).unwrap(), "built\n");
        let app = effective(&b, &image, "app");
        let m = app.symlink_metadata().unwrap();
        assert!(m.is_dir());
        assert_eq!((m.uid(), m.gid()), (1234, 1234));

        // ".wh-lookalike" is an ordinary file, not a whiteout.
        let look = effective(&b, &image, "var/empty/.wh-lookalike");
        let m = look.symlink_metadata().unwrap();
        assert!(m.is_file(), "{} is not a regular file", look.display());
        assert_eq!(fs::read_to_string(&look).unwrap(), "x\n");
        for d in &dirs {
            if let Ok(rd) = fs::read_dir(d.join("var/empty")) {
                for e in rd {
                    let name = e.unwrap().file_name();
                    assert_eq!(name, ".wh-lookalike", "unexpected entry in var/empty");
                }
            }
        }

        let busybox = effective(&b, &image, "bin/busybox");
        let m = busybox.symlink_metadata().unwrap();
        assert!(m.is_file());
        assert!(
            m.permissions().mode() & 0o111 != 0,
            "bin/busybox mode {:o}",
            m.permissions().mode()
        );
        assert!(m.len() > 100_000, "bin/busybox is {} bytes", m.len());
        // And /etc/passwd from the RUN layer.
        let passwd = fs::read_to_string(effective(&b, &image, "etc/passwd")).unwrap();
        assert!(passwd.contains("app:x:1234:1234::/app:/bin/sh"), "{passwd}");
    }
}

// ---- 4. save round trips --------------------------------------------------

fn layers_of(b: &Berth, name: &str) -> Vec<String> {
    str_list(&b.inspect(name)["RootFS"]["Layers"])
}

#[test]
fn save_docker_archive_round_trips() {
    let b = Berth::new();
    b.load(&docker_save_tar());
    let before = b.inspect("sample/app:1.0");
    let out = b.path("x.tar");
    assert_eq!(b.ok(&["save", "-o", &s(&out), "sample/app:1.0"]), "");

    // What docker load needs: manifest.json naming config, tag and layers.
    let files = untar(&fs::read(&out).unwrap());
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    let manifest: Value = serde_json::from_slice(
        &files
            .iter()
            .find(|(n, _)| n == "manifest.json")
            .expect("manifest.json")
            .1,
    )
    .unwrap();
    assert_eq!(manifest[0]["RepoTags"], json!(["sample/app:1.0"]));
    let config_name = manifest[0]["Config"].as_str().unwrap();
    assert!(names.contains(&config_name), "{names:?}");
    assert_eq!(manifest[0]["Layers"].as_array().unwrap().len(), 3);
    for (l, diff_id) in manifest[0]["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .zip(SAMPLE_DIFF_IDS)
    {
        let data = &files.iter().find(|(n, _)| n == l).expect("layer file").1;
        assert_eq!(digest_of(data), diff_id, "{l}");
    }

    assert_eq!(
        b.ok(&["rmi", "sample/app:1.0"]),
        format!("Untagged: sample/app:1.0\nDeleted: {SAMPLE_ID}\n")
    );
    assert!(b.ids().is_empty());
    assert_eq!(b.load(&out), "Loaded image: sample/app:1.0\n");
    let after = b.inspect("sample/app:1.0");
    assert_eq!(after["Id"], SAMPLE_ID);
    assert_eq!(after["Id"], before["Id"]);
    assert_eq!(after["RootFS"], before["RootFS"]);
    assert_eq!(after["Config"], before["Config"]);
}

#[test]
fn save_oci_archive_round_trips() {
    let b = Berth::new();
    b.load(&docker_save_tar());
    let before = b.inspect("sample/app:1.0");
    let out = b.path("x-oci.tar");
    b.ok(&[
        "save",
        "--format",
        "oci-archive",
        "-o",
        &s(&out),
        "sample/app:1.0",
    ]);
    let files = untar(&fs::read(&out).unwrap());
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    assert!(names.contains(&"oci-layout"), "{names:?}");
    assert!(names.contains(&"index.json"), "{names:?}");
    let saved_blobs: Vec<String> = files
        .iter()
        .filter(|(n, _)| n.starts_with("blobs/sha256/"))
        .map(|(n, data)| {
            // Every blob is stored under its own digest.
            assert_eq!(format!("blobs/sha256/{}", sha256_hex(data)), *n);
            n.clone()
        })
        .collect();
    assert_eq!(saved_blobs.len(), 5, "{names:?}");

    b.ok(&["rmi", "sample/app:1.0"]);
    assert!(b.ids().is_empty());
    assert_eq!(b.load(&out), "Loaded image: sample/app:1.0\n");
    let after = b.inspect("sample/app:1.0");
    assert_eq!(after["Id"], before["Id"]);
    assert_eq!(after["RootFS"], before["RootFS"]);
    assert_eq!(after["Config"], before["Config"]);
}

#[test]
fn save_oci_dir_keeps_manifest_and_layer_blob_digests() {
    // An image loaded from an OCI layout (gzip layers) saves with the very
    // same manifest and blobs.
    let b = Berth::new();
    b.load(&fixture("sample-app"));
    b.ok(&["tag", SAMPLE_OCI_ID, "sample/oci:1"]);
    let original = oci_manifest(&fixture("sample-app"));
    let dir = b.path("saved-layout");
    b.ok(&[
        "save",
        "--format",
        "oci-dir",
        "-o",
        &s(&dir),
        "sample/oci:1",
    ]);
    let index = read_json(&dir.join("index.json"));
    assert_eq!(index["manifests"].as_array().unwrap().len(), 1, "{index}");
    assert_eq!(index["manifests"][0]["digest"], SAMPLE_OCI_MANIFEST);
    assert_eq!(
        index["manifests"][0]["annotations"]["io.containerd.image.name"],
        "docker.io/sample/oci:1"
    );
    let saved = oci_manifest(&dir);
    assert_eq!(saved["layers"], original["layers"]);
    assert_eq!(saved["config"]["digest"], SAMPLE_OCI_ID);
    for l in saved["layers"].as_array().unwrap() {
        let d = l["digest"].as_str().unwrap();
        let data = fs::read(blob_path(&dir, d)).unwrap();
        assert_eq!(digest_of(&data), d);
        let orig = fs::read(blob_path(&fixture("sample-app"), d)).unwrap();
        assert_eq!(data, orig, "layer blob {d} differs from the original");
    }

    b.ok(&["rmi", "sample/oci:1"]);
    assert!(b.ids().is_empty());
    assert_eq!(b.load(&dir), "Loaded image: sample/oci:1\n");
    assert_eq!(b.inspect("sample/oci:1")["Id"], SAMPLE_OCI_ID);
    assert_eq!(layers_of(&b, "sample/oci:1"), SAMPLE_DIFF_IDS);

    // The docker-archive image round-trips through an OCI directory too,
    // and saving it again yields the same manifest and layer digests.
    let d = Berth::new();
    d.load(&docker_save_tar());
    let dir1 = d.path("one");
    let dir2 = d.path("two");
    d.ok(&[
        "save",
        "--format",
        "oci-dir",
        "-o",
        &s(&dir1),
        "sample/app:1.0",
    ]);
    let m1 = oci_manifest(&dir1);
    assert_eq!(m1["config"]["digest"], SAMPLE_ID);
    assert_eq!(m1["layers"].as_array().unwrap().len(), 3);
    d.ok(&["rmi", "sample/app:1.0"]);
    assert_eq!(d.load(&dir1), "Loaded image: sample/app:1.0\n");
    assert_eq!(d.inspect("sample/app:1.0")["Id"], SAMPLE_ID);
    assert_eq!(layers_of(&d, "sample/app:1.0"), SAMPLE_DIFF_IDS);
    d.ok(&[
        "save",
        "--format",
        "oci-dir",
        "-o",
        &s(&dir2),
        "sample/app:1.0",
    ]);
    let m2 = oci_manifest(&dir2);
    assert_eq!(m1["layers"], m2["layers"]);
    assert_eq!(
        read_json(&dir1.join("index.json"))["manifests"][0]["digest"],
        read_json(&dir2.join("index.json"))["manifests"][0]["digest"]
    );
}

#[test]
fn save_to_redirected_stdout() {
    let b = Berth::new();
    b.load(&docker_save_tar());
    let file_out = b.path("file.tar");
    b.ok(&["save", "-o", &s(&file_out), "sample/app:1.0"]);

    for format in ["docker-archive", "oci-archive"] {
        let stdout_path = b.path(&format!("stdout-{format}.tar"));
        let f = fs::File::create(&stdout_path).unwrap();
        let st = b
            .command(&["save", "--format", format, "sample/app:1.0"])
            .stdout(Stdio::from(f))
            .stderr(Stdio::piped())
            .status()
            .unwrap();
        assert!(st.success(), "save --format {format} > file failed");
        if format == "docker-archive" {
            assert_eq!(
                fs::read(&stdout_path).unwrap(),
                fs::read(&file_out).unwrap(),
                "saving to stdout and to -o differ"
            );
        }
        let other = Berth::new();
        assert_eq!(other.load(&stdout_path), "Loaded image: sample/app:1.0\n");
        assert_eq!(other.inspect("sample/app:1.0")["Id"], SAMPLE_ID);
    }

    // A pipe works as well.
    let out = b.run(&["save", "sample/app:1.0"]).ok();
    assert_eq!(out.raw_stdout, fs::read(&file_out).unwrap());
    // oci-dir needs a directory.
    let r = b.fail(&["save", "--format", "oci-dir", "sample/app:1.0"]);
    r.one_error_line(&["-o"]);
}

// ---- 5. tag and rmi -------------------------------------------------------

#[test]
fn rmi_of_one_of_several_tags_only_untags() {
    let b = Berth::new();
    b.load(&docker_save_tar());
    b.ok(&["tag", "sample/app:1.0", "mirror/app:2"]);
    b.ok(&["tag", &SAMPLE_ID[7..19], "localhost:5000/app"]);
    let tags = str_list(&b.inspect(SAMPLE_ID)["RepoTags"]);
    for t in [
        "sample/app:1.0",
        "mirror/app:2",
        "localhost:5000/app:latest",
    ] {
        assert!(tags.iter().any(|x| x == t), "{tags:?} lacks {t}");
    }
    assert_eq!(b.ok(&["images", "-q"]).lines().count(), 1);
    let table = b.ok(&["images"]);
    assert_eq!(table.lines().count(), 4, "{table}");

    let state = b.state();
    assert_eq!(b.ok(&["rmi", "mirror/app:2"]), "Untagged: mirror/app:2\n");
    assert_eq!(
        b.ok(&["rmi", "localhost:5000/app"]),
        "Untagged: localhost:5000/app:latest\n"
    );
    assert_eq!(
        str_list(&b.inspect(SAMPLE_ID)["RepoTags"]),
        ["sample/app:1.0"]
    );
    // Only tags went: blobs and snapshots are as they were.
    assert_eq!(b.state(), state);
    let r = b.fail(&["rmi", "mirror/app:2"]);
    r.one_error_line(&["No such image"]);
}

#[test]
fn rmi_of_last_tag_deletes_the_image_and_its_data() {
    let b = Berth::new();
    b.load(&docker_save_tar());
    assert!(!b.blob_names().is_empty());
    assert_eq!(b.snapshot_dirs().len(), 3);
    assert_eq!(
        b.ok(&["rmi", "sample/app:1.0"]),
        format!("Untagged: sample/app:1.0\nDeleted: {SAMPLE_ID}\n")
    );
    assert!(b.ids().is_empty());
    assert_eq!(b.blob_names(), Vec::<String>::new());
    assert_eq!(b.snapshot_dirs(), Vec::<PathBuf>::new());
    assert!(fs::read_dir(b.root.join("blobs/sha512"))
        .unwrap()
        .next()
        .is_none());
    b.fail(&["image", "inspect", "sample/app:1.0"]);
}

#[test]
fn rmi_keeps_what_other_images_share() {
    let b = Berth::new();
    b.load(&fixture("busybox-1.35"));
    let busybox_blobs = b.blob_names();
    let busybox_layers = layers_of(&b, BUSYBOX_ID);
    b.load(&docker_save_tar());
    // busybox's one layer is the sample's base layer: one shared snapshot.
    assert_eq!(busybox_layers, SAMPLE_DIFF_IDS[..1]);
    assert_eq!(b.snapshot_dirs().len(), 3);
    b.ok(&["rmi", "sample/app:1.0"]);
    assert_eq!(b.ids(), [BUSYBOX_ID]);
    assert_eq!(b.blob_names(), busybox_blobs);
    assert_eq!(b.snapshot_dirs().len(), 1);
    let sh = PathBuf::from(
        b.inspect(BUSYBOX_ID)["GraphDriver"]["Data"]["LowerDir"]
            .as_str()
            .unwrap(),
    )
    .join("bin/busybox");
    assert!(sh.is_file(), "{} is gone", sh.display());
    b.ok(&["rmi", &BUSYBOX_ID[7..19]]);
    assert!(b.blob_names().is_empty());
    assert!(b.snapshot_dirs().is_empty());
}

#[test]
fn rmi_by_id_of_multiply_tagged_image_must_be_forced() {
    let b = Berth::new();
    b.load(&docker_save_tar());
    b.ok(&["tag", "sample/app:1.0", "sample/app:latest"]);
    let state = b.state();
    let short = &SAMPLE_ID[7..19];
    let r = b.fail(&["rmi", short]);
    r.one_error_line(&["must be forced", short]);
    assert_eq!(r.stdout, "");
    assert_eq!(b.state(), state, "a refused rmi changed the store");

    let out = b.ok(&["rmi", "-f", short]);
    let mut lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.pop(), Some(format!("Deleted: {SAMPLE_ID}").as_str()));
    lines.sort();
    assert_eq!(
        lines,
        ["Untagged: sample/app:1.0", "Untagged: sample/app:latest"]
    );
    assert!(b.ids().is_empty());
    assert!(b.blob_names().is_empty());
    assert!(b.snapshot_dirs().is_empty());
}

#[test]
fn rmi_of_unknown_image_fails() {
    let b = Berth::new();
    b.load(&docker_save_tar());
    let state = b.state();
    let r = b.fail(&["rmi", "nosuch"]);
    r.one_error_line(&["No such image", "nosuch"]);
    assert_eq!(b.state(), state);
    // Several names: the known one goes, the unknown one is reported.
    let r = b.fail(&["rmi", "nosuch:1", "sample/app:1.0"]);
    r.one_error_line(&["No such image", "nosuch:1"]);
    assert!(r.stdout.contains(&format!("Deleted: {SAMPLE_ID}")), "{r}");
    assert!(b.ids().is_empty());
}

#[test]
fn tag_refuses_bad_targets_and_unknown_sources() {
    let b = Berth::new();
    b.load(&docker_save_tar());
    let state = b.state();
    b.fail(&["tag", "nosuch", "x:1"])
        .one_error_line(&["No such image"]);
    b.fail(&["tag", "sample/app:1.0", "Bad/Name:1"])
        .one_error_line(&["Bad/Name:1"]);
    assert_eq!(b.state(), state);
}

// ---- 6. import ------------------------------------------------------------

/// A small root file system tar made by tar(1): a file, a directory and a
/// relative symlink.
fn rootfs_tar(b: &Berth) -> PathBuf {
    let dir = b.path("rootfs");
    fs::create_dir_all(dir.join("etc")).unwrap();
    fs::write(dir.join("etc/hello"), "hello from import\n").unwrap();
    std::os::unix::fs::symlink("etc/hello", dir.join("hello-link")).unwrap();
    let tar_path = b.path("rootfs.tar");
    let st = std::process::Command::new("tar")
        .arg("-C")
        .arg(&dir)
        .arg("-cf")
        .arg(&tar_path)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    tar_path
}

fn check_imported(b: &Berth, name: &str, id: &str) {
    let v = b.inspect(name);
    assert_eq!(v["Id"], id);
    assert_eq!(v["Config"]["Cmd"], json!(["/bin/sh"]));
    assert_eq!(v["Config"]["Env"], json!(["A=1"]));
    assert_eq!(v["Architecture"], "amd64");
    assert_eq!(v["Os"], "linux");
    assert_eq!(v["Comment"], "Imported from -");
    assert_eq!(v["RootFS"]["Layers"].as_array().unwrap().len(), 1);
    let history = b.ok(&["history", "--format", "json", name]);
    let rows: Vec<Value> = history
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 1, "{history}");
    assert_eq!(rows[0]["Comment"], "Imported from -");
    let lower = PathBuf::from(v["GraphDriver"]["Data"]["LowerDir"].as_str().unwrap());
    assert_eq!(
        fs::read_to_string(lower.join("etc/hello")).unwrap(),
        "hello from import\n"
    );
    assert_eq!(
        fs::read_link(lower.join("hello-link")).unwrap(),
        Path::new("etc/hello")
    );
}

#[test]
fn import_rootfs_tar_with_changes() {
    let b = Berth::new();
    let tar_path = rootfs_tar(&b);
    let out = b.ok(&[
        "import",
        &s(&tar_path),
        "myimg:1",
        "--change",
        r#"CMD ["/bin/sh"]"#,
        "--change",
        "ENV A=1",
    ]);
    let id = out.trim_end_matches('\n');
    assert_eq!(out.lines().count(), 1, "{out:?}");
    assert!(id.starts_with("sha256:") && is_hex(&id[7..], 64), "{out:?}");
    assert_eq!(b.ids(), [id]);
    assert_eq!(str_list(&b.inspect("myimg:1")["RepoTags"]), ["myimg:1"]);
    check_imported(&b, "myimg:1", id);
}

#[test]
fn import_from_stdin() {
    let b = Berth::new();
    let tar_path = rootfs_tar(&b);
    let r = b
        .run_with_stdin(
            &[
                "import",
                "-c",
                r#"CMD ["/bin/sh"]"#,
                "-c",
                "ENV A=1",
                "-",
                "piped:latest",
            ],
            fs::File::open(&tar_path).unwrap(),
        )
        .ok();
    let id = r.stdout.trim_end();
    assert!(id.starts_with("sha256:") && is_hex(&id[7..], 64), "{r}");
    check_imported(&b, "piped", id);
    // A gzip-compressed rootfs imports the same layer.
    let gz = b.path("rootfs.tar.gz");
    fs::write(&gz, gzip(&fs::read(&tar_path).unwrap())).unwrap();
    let out = b.ok(&["import", &s(&gz), "zipped:1"]);
    let v = b.inspect("zipped:1");
    assert_eq!(v["Id"], out.trim_end());
    assert_eq!(v["RootFS"], b.inspect("piped")["RootFS"]);
}

#[test]
fn import_with_bad_change_fails_and_adds_nothing() {
    let b = Berth::new();
    b.load(&docker_save_tar());
    let tar_path = rootfs_tar(&b);
    let state = b.state();
    for bad in ["RUN x", "WORKDIR relative", "CMD"] {
        let r = b.fail(&["import", &s(&tar_path), "myimg:1", "--change", bad]);
        r.one_error_line(&["--change", bad]);
        assert_eq!(r.stdout, "");
        assert_eq!(
            b.state(),
            state,
            "a refused import ({bad}) changed the store"
        );
    }
    let r = b.fail(&["import", &s(&tar_path), "myimg:1", "--change", "RUN x"]);
    r.one_error_line(&["RUN"]);
    // A bad name is refused before anything is written, too.
    b.fail(&["import", &s(&tar_path), "Bad/Name:1"])
        .one_error_line(&["Bad/Name:1"]);
    assert_eq!(b.state(), state);
}

// ---- 7. prune, df, version, info, completion, man --------------------------

#[test]
fn image_prune_removes_dangling_then_all() {
    let b = Berth::new();
    b.load(&fixture("busybox-1.35"));
    b.load(&docker_save_tar());
    assert_eq!(b.ids().len(), 2);

    let out = b.ok(&["image", "prune", "-f"]);
    assert!(
        out.lines()
            .last()
            .unwrap_or("")
            .starts_with("Total reclaimed space:"),
        "{out}"
    );
    assert!(out.contains(&format!("deleted: {BUSYBOX_ID}")), "{out}");
    assert_eq!(b.ids(), [SAMPLE_ID]);
    assert_eq!(
        b.inspect("sample/app:1.0")["RootFS"]["Layers"],
        json!(SAMPLE_DIFF_IDS)
    );
    assert_eq!(b.snapshot_dirs().len(), 3);

    // Nothing dangling left: nothing to do.
    let out = b.ok(&["image", "prune", "-f"]);
    assert_eq!(out, "Total reclaimed space: 0B\n");
    assert_eq!(b.ids(), [SAMPLE_ID]);

    let out = b.ok(&["image", "prune", "-a", "-f"]);
    assert!(out.contains("untagged: sample/app:1.0"), "{out}");
    assert!(out.contains(&format!("deleted: {SAMPLE_ID}")), "{out}");
    let last = out.lines().last().unwrap_or("");
    assert!(last.starts_with("Total reclaimed space:"), "{out}");
    assert_ne!(last, "Total reclaimed space: 0B");
    assert!(b.ids().is_empty());
    assert!(b.blob_names().is_empty());
    assert!(b.snapshot_dirs().is_empty());
}

#[test]
fn system_df_version_info_completion_and_man() {
    let b = Berth::new();
    b.load(&docker_save_tar());
    let df = b.ok(&["system", "df"]);
    let header = df.lines().next().unwrap_or("");
    assert!(header.starts_with("TYPE"), "{df}");
    for col in ["TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"] {
        assert!(header.contains(col), "{df}");
    }
    let images_row: Vec<&str> = df
        .lines()
        .find(|l| l.starts_with("Images"))
        .expect("Images row")
        .split_whitespace()
        .collect();
    assert_eq!(images_row[1], "1", "{df}");

    let version = b.ok(&["version"]);
    assert!(version.contains(env!("CARGO_PKG_VERSION")), "{version}");
    let v: Value = serde_json::from_str(&b.ok(&["version", "--format", "json"])).unwrap();
    assert_eq!(v["Client"]["Version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(
        b.ok(&["--version"]).trim(),
        format!("berth {}", env!("CARGO_PKG_VERSION"))
    );

    let info = b.ok(&["info"]);
    assert!(info.contains("Images: 1"), "{info}");
    assert!(info.contains(&s(&b.root)), "{info}");
    let v: Value = serde_json::from_str(&b.ok(&["info", "--format", "json"])).unwrap();
    assert_eq!(v["Images"], 1);
    assert_eq!(b.ok(&["info", "--format", "{{.Images}}"]), "1\n");

    let completion = b.ok(&["completion", "bash"]);
    assert!(completion.contains("berth"), "{completion}");
    assert!(completion.contains("complete"), "{completion}");
    b.fail(&["completion", "nosuchshell"]);

    let man = b.path("man");
    b.ok(&["man", &s(&man)]);
    let page = fs::read_to_string(man.join("berth.1")).expect("berth.1 written");
    assert!(page.contains(".TH"), "{page}");
    assert!(page.contains("berth"), "{page}");
}

// ---- 8. bad input leaves the store untouched ------------------------------

/// A store holding the docker-archive sample, the starting point of every
/// bad-input case.
fn store_with_sample() -> Berth {
    let b = Berth::new();
    b.load(&docker_save_tar());
    b
}

/// Runs `berth load -i INPUT`, expects it refused with one "Error:" line
/// mentioning every one of `needles`, and the store exactly as before.
#[track_caller]
fn assert_load_refused(b: &Berth, input: &Path, needles: &[&str]) -> String {
    let before = b.state();
    let r = b.fail(&["load", "-i", &s(input)]);
    let line = r.one_error_line(needles);
    assert_eq!(r.stdout, "", "a refused load printed to stdout:\n{r}");
    assert_eq!(b.state(), before, "a refused load changed the store:\n{r}");
    // Staging is cleaned up too.
    let leftovers: Vec<_> = fs::read_dir(b.root.join("tmp")).unwrap().collect();
    assert!(leftovers.is_empty(), "tmp/ not cleaned: {leftovers:?}");
    // The same bytes on standard input are refused the same way.
    if input.is_file() {
        let r = b
            .run_with_stdin(&["load"], fs::File::open(input).unwrap())
            .failed();
        r.one_error_line(needles);
        assert_eq!(
            b.state(),
            before,
            "a refused load from stdin changed the store:\n{r}"
        );
    }
    line
}

/// A copy of the sample-app OCI layout to tamper with.
fn sample_layout_copy(b: &Berth, name: &str) -> PathBuf {
    let dir = b.path(name);
    copy_dir(&fixture("sample-app"), &dir);
    dir
}

fn flip_middle(data: &mut [u8]) {
    let mid = data.len() / 2;
    for byte in &mut data[mid..mid + 16] {
        *byte ^= 0x5a;
    }
}

#[test]
fn bad_input_flipped_bytes_in_a_layer_blob_is_a_digest_mismatch() {
    let b = store_with_sample();
    let dir = sample_layout_copy(&b, "flipped");
    let layer = "sha256:e524c65fa47c8a51ff3bb6c4851f16014cad18c3e1a473a994ac26bff03dacc6";
    let path = blob_path(&dir, layer);
    let mut data = fs::read(&path).unwrap();
    flip_middle(&mut data);
    fs::write(&path, &data).unwrap();
    assert_load_refused(&b, &dir, &["does not match its digest", &layer[7..]]);
    // As an OCI archive as well.
    let tar_path = b.path("flipped.tar");
    fs::write(&tar_path, tar_dir(&dir)).unwrap();
    assert_load_refused(&b, &tar_path, &["does not match its digest", &layer[7..]]);
}

#[test]
fn bad_input_corrupt_gzip_with_a_correct_digest() {
    let b = store_with_sample();
    // Compressible but varied content, so the deflate stream has real
    // structure to break.
    let body: Vec<u8> = (0..200_000u32)
        .map(|i| b"the quick brown fox "[(i % 20) as usize] ^ ((i / 997) as u8 & 1))
        .collect();
    let tar = tar_of(&[Member::Dir("data"), Member::File("data/file", &body)]);
    let mut layer = Layer::gzip(tar);
    flip_middle(&mut layer.blob);
    let dir = b.path("corrupt-gzip");
    oci_layout(&dir, &[layer], Some("corrupt/gzip:1"));
    assert_load_refused(&b, &dir, &["layer 0", "corrupt compression"]);

    // The same from the sample layout: rewrite its small top layer blob as
    // broken gzip, with the manifest and index patched to the new digest.
    let dir = sample_layout_copy(&b, "patched");
    let mut manifest = oci_manifest(&dir);
    let old = manifest["layers"][2]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let mut data = fs::read(blob_path(&dir, &old)).unwrap();
    let n = data.len();
    data.truncate(n / 2);
    let new = put_blob(&dir, &data);
    fs::remove_file(blob_path(&dir, &old)).unwrap();
    manifest["layers"][2]["digest"] = json!(new);
    manifest["layers"][2]["size"] = json!(data.len());
    set_oci_manifest(&dir, &manifest);
    assert_load_refused(&b, &dir, &["layer 2", &new[7..], "corrupt compression"]);
}

#[test]
fn bad_input_truncated_layer_tar_in_docker_archive() {
    let b = store_with_sample();
    let files = untar(&fs::read(docker_save_tar()).unwrap());
    let mut cut_name = String::new();
    let files: Vec<(String, Vec<u8>)> = files
        .into_iter()
        .map(|(name, mut data)| {
            if name.ends_with("/layer.tar") && data.len() > 1_000_000 {
                let half = data.len() / 2;
                data.truncate(half);
                cut_name = name.clone();
            }
            (name, data)
        })
        .collect();
    assert!(!cut_name.is_empty());
    let path = b.path("truncated.tar");
    fs::write(&path, tar_files(&files)).unwrap();
    assert_load_refused(&b, &path, &["layer 0", &cut_name]);

    // A layer cut inside a file's content.
    let body = vec![7u8; 10_000];
    let mut layer = tar_of(&[Member::File("big", &body)]);
    let config = serde_json::to_vec(&image_config(&[Layer::plain(layer.clone())])).unwrap();
    layer.truncate(5_000);
    let path = b.path("cut-in-file.tar");
    fs::write(
        &path,
        tar_files(&docker_archive_files(&config, &[layer], &["cut/file:1"])),
    )
    .unwrap();
    assert_load_refused(&b, &path, &["layer 0", "big"]);
}

#[test]
fn bad_input_config_blob_digest_mismatch() {
    let b = store_with_sample();
    let dir = sample_layout_copy(&b, "config-mismatch");
    let path = blob_path(&dir, SAMPLE_OCI_ID);
    let mut data = fs::read(&path).unwrap();
    data.extend_from_slice(b"\n");
    fs::write(&path, &data).unwrap();
    assert_load_refused(
        &b,
        &dir,
        &["does not match its digest", &SAMPLE_OCI_ID[7..]],
    );

    // A manifest blob that does not match the index's digest.
    let dir = sample_layout_copy(&b, "manifest-mismatch");
    let path = blob_path(&dir, SAMPLE_OCI_MANIFEST);
    let mut data = fs::read(&path).unwrap();
    data.extend_from_slice(b" ");
    fs::write(&path, &data).unwrap();
    assert_load_refused(
        &b,
        &dir,
        &["does not match its digest", &SAMPLE_OCI_MANIFEST[7..]],
    );
}

#[test]
fn bad_input_manifest_names_a_missing_blob() {
    let b = store_with_sample();
    let dir = sample_layout_copy(&b, "missing-blob");
    let manifest = oci_manifest(&dir);
    let gone = manifest["layers"][1]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    fs::remove_file(blob_path(&dir, &gone)).unwrap();
    assert_load_refused(&b, &dir, &[&gone[7..], "missing"]);

    let dir = sample_layout_copy(&b, "missing-config");
    fs::remove_file(blob_path(&dir, SAMPLE_OCI_ID)).unwrap();
    assert_load_refused(&b, &dir, &[&SAMPLE_OCI_ID[7..], "missing"]);

    // docker-archive naming a layer file it does not hold.
    let files: Vec<(String, Vec<u8>)> = untar(&fs::read(docker_save_tar()).unwrap())
        .into_iter()
        .filter(|(n, _)| !n.starts_with("28ba06ce"))
        .collect();
    let path = b.path("missing-layer.tar");
    fs::write(&path, tar_files(&files)).unwrap();
    assert_load_refused(&b, &path, &["28ba06ce", "missing"]);
}

#[test]
fn bad_input_unknown_layer_media_type() {
    let b = store_with_sample();
    let dir = sample_layout_copy(&b, "media-type");
    let mut manifest = oci_manifest(&dir);
    manifest["layers"][1]["mediaType"] = json!("application/x-not-a-layer");
    set_oci_manifest(&dir, &manifest);
    assert_load_refused(&b, &dir, &["application/x-not-a-layer", "media type"]);
}

#[test]
fn bad_input_malformed_json() {
    let b = store_with_sample();
    let dir = sample_layout_copy(&b, "bad-index");
    fs::write(
        dir.join("index.json"),
        b"{\"schemaVersion\": 2, \"manifests\": [",
    )
    .unwrap();
    assert_load_refused(&b, &dir, &["index.json", "not valid"]);

    let dir = sample_layout_copy(&b, "bad-manifest");
    let manifest = read_json(&dir.join("index.json"))["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    // Not JSON, but stored under its own digest so only the JSON is wrong.
    let junk = b"{\"schemaVersion\": 2, \"layers\": [}".to_vec();
    let d = put_blob(&dir, &junk);
    let mut index = read_json(&dir.join("index.json"));
    index["manifests"][0]["digest"] = json!(d);
    index["manifests"][0]["size"] = json!(junk.len());
    fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    fs::remove_file(blob_path(&dir, &manifest)).unwrap();
    assert_load_refused(&b, &dir, &[&d[7..], "not valid"]);

    // docker-archive with a broken manifest.json.
    let mut files = untar(&fs::read(docker_save_tar()).unwrap());
    for (name, data) in &mut files {
        if name == "manifest.json" {
            data.truncate(data.len() / 2);
        }
    }
    let path = b.path("bad-manifest-json.tar");
    fs::write(&path, tar_files(&files)).unwrap();
    assert_load_refused(&b, &path, &["manifest.json", "not valid JSON"]);
}

#[test]
fn bad_input_invalid_reference_in_repo_tags() {
    let b = store_with_sample();
    let layer = tar_of(&[Member::File("hello", b"hi\n")]);
    let path = b.path("bad-ref.tar");
    fs::write(&path, docker_archive(&[layer], &["Bad/Name:1"])).unwrap();
    assert_load_refused(&b, &path, &["Bad/Name:1"]);

    // An OCI index annotation naming an invalid reference.
    let dir = b.path("bad-ref-oci");
    oci_layout(
        &dir,
        &[Layer::gzip(tar_of(&[Member::File("hello", b"hi\n")]))],
        Some("Bad/Name:1"),
    );
    assert_load_refused(&b, &dir, &["Bad/Name:1"]);
}

#[test]
fn bad_input_missing_empty_and_random_files() {
    let b = store_with_sample();
    let missing = b.path("no-such-file.tar");
    assert_load_refused(&b, &missing, &["no-such-file.tar", "no such file"]);
    assert!(!missing.exists());

    let empty = b.path("empty.tar");
    fs::write(&empty, b"").unwrap();
    assert_load_refused(&b, &empty, &["not an image archive"]);

    // Deterministic noise (no gzip or zstd magic at the start).
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let noise: Vec<u8> = (0..100_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    assert_ne!(&noise[..2], &[0x1f, 0x8b]);
    let random = b.path("random.bin");
    fs::write(&random, &noise).unwrap();
    assert_load_refused(&b, &random, &["not a readable tar archive"]);
    // Gzip magic, then noise.
    let mut fake_gz = vec![0x1f, 0x8b, 0x08, 0x00];
    fake_gz.extend_from_slice(&noise[..1000]);
    let fake = b.path("fake.tar.gz");
    fs::write(&fake, &fake_gz).unwrap();
    assert_load_refused(&b, &fake, &["not a readable tar archive"]);

    // The archive itself cut short, and cut inside its manifest.json.
    let whole = fs::read(docker_save_tar()).unwrap();
    let cut = b.path("cut.tar");
    fs::write(&cut, &whole[..whole.len() / 2 + 100]).unwrap();
    assert_load_refused(&b, &cut, &["truncated"]);
    let gz = b.path("cut.tar.gz");
    let zipped = gzip(&whole);
    fs::write(&gz, &zipped[..zipped.len() - 100]).unwrap();
    assert_load_refused(&b, &gz, &["incomplete"]);

    // A tar that is not an image archive.
    let other = b.path("other.tar");
    fs::write(&other, tar_of(&[Member::File("README", b"hello\n")])).unwrap();
    assert_load_refused(&b, &other, &["not an image archive"]);

    // No -i and nothing on stdin.
    let before = b.state();
    b.fail(&["load"]).one_error_line(&[]);
    assert_eq!(b.state(), before);
}

/// Every path under `dir` whose last component is `name`.
fn find_named(dir: &Path, name: &std::ffi::OsStr) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        if e.file_name() == name {
            found.push(p.clone());
        }
        if e.file_type().unwrap().is_dir() {
            found.extend(find_named(&p, name));
        }
    }
    found
}

/// `../`s enough to climb from anywhere to `/`, then down to `target`.
fn climbing_name(target: &Path) -> String {
    let rel = target.strip_prefix("/").expect("absolute target");
    format!("{}{}", "../".repeat(40), rel.display())
}

#[test]
fn bad_input_layer_entries_escaping_the_layer() {
    let b = store_with_sample();
    let outside = b.path("outside");
    fs::create_dir(&outside).unwrap();

    // Names with a short climb would land somewhere under the staging
    // directory; they must not appear anywhere under the test's directory.
    let everything = b.root.parent().unwrap().to_path_buf();
    let cases: Vec<(String, PathBuf)> = vec![
        ("../escape".to_string(), everything.clone()),
        (
            climbing_name(&outside.join("climbed")),
            outside.join("climbed"),
        ),
        (s(&outside.join("absolute")), outside.join("absolute")),
        ("./ok/../../escape2".to_string(), everything.clone()),
    ];
    for (i, (name, target)) in cases.iter().enumerate() {
        let layer = tar_of(&[
            Member::File("fine", b"ok\n"),
            Member::File(name, b"escaped\n"),
        ]);
        // docker-archive with a plain layer.
        let path = b.path(&format!("escape-{i}.tar"));
        fs::write(
            &path,
            docker_archive(std::slice::from_ref(&layer), &["escape/test:1"]),
        )
        .unwrap();
        assert_load_refused(&b, &path, &[name]);
        // OCI layout with a gzip layer.
        let dir = b.path(&format!("escape-{i}-oci"));
        oci_layout(&dir, &[Layer::gzip(layer)], Some("escape/test:1"));
        assert_load_refused(&b, &dir, &[name]);
        if *target == everything {
            let leaf = Path::new(name).file_name().unwrap();
            let found = find_named(&everything, leaf);
            assert!(found.is_empty(), "{name} was written: {found:?}");
        } else {
            assert!(
                target.symlink_metadata().is_err(),
                "{} was written outside the store",
                target.display()
            );
        }
    }
    assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);

    // The same rule holds for the archive itself, not only its layers.
    let name = climbing_name(&outside.join("from-archive"));
    let mut files = untar(&fs::read(docker_save_tar()).unwrap());
    files.push((name.clone(), b"escaped\n".to_vec()));
    let members: Vec<Member<'_>> = files
        .iter()
        .map(|(n, d)| Member::File(n.as_str(), d.as_slice()))
        .collect();
    let path = b.path("archive-escape.tar");
    fs::write(&path, tar_of(&members)).unwrap();
    assert_load_refused(&b, &path, &[&name]);
    assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);
}

#[test]
fn bad_input_import_of_non_tar_or_escaping_rootfs() {
    let b = store_with_sample();
    let before = b.state();
    let outside = b.path("outside");
    fs::create_dir(&outside).unwrap();
    let name = climbing_name(&outside.join("imported"));
    let path = b.path("escape-rootfs.tar");
    fs::write(&path, tar_of(&[Member::File(&name, b"x\n")])).unwrap();
    let r = b.fail(&["import", &s(&path), "esc:1"]);
    r.one_error_line(&[&name]);
    assert_eq!(b.state(), before);
    assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);

    let r = b.fail(&["import", &s(&b.path("nothing-here.tar")), "x:1"]);
    r.one_error_line(&["nothing-here.tar"]);
    assert_eq!(b.state(), before);
}

// ---- 9. concurrency -------------------------------------------------------

#[test]
fn concurrent_loads_on_one_root_both_succeed() {
    for round in 0..3 {
        // Same archive twice, on a fresh root (so the database is created
        // concurrently too).
        let b = Berth::new();
        let args = ["load", "-i", &s(&docker_save_tar())];
        let children: Vec<_> = (0..2)
            .map(|_| {
                b.command(&args)
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for c in children {
            let out = c.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "round {round}: concurrent load failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(
                String::from_utf8_lossy(&out.stdout),
                "Loaded image: sample/app:1.0\n"
            );
        }
        assert_eq!(b.ids(), [SAMPLE_ID]);
        assert_eq!(b.ok(&["images", "-q"]).lines().count(), 1);
        assert_eq!(b.snapshot_dirs().len(), 3);
        let single = Berth::new();
        single.load(&docker_save_tar());
        assert_eq!(b.blob_names(), single.blob_names());
        assert!(fs::read_dir(b.root.join("tmp")).unwrap().next().is_none());
        let v = b.inspect("sample/app:1.0");
        assert_eq!(str_list(&v["RootFS"]["Layers"]), SAMPLE_DIFF_IDS);

        // Two forms of the image that share every snapshot, at once, on a
        // store that already exists.
        let c = Berth::new();
        c.ok(&["images"]);
        let children: Vec<_> = [docker_save_tar(), fixture("sample-app")]
            .iter()
            .map(|p| {
                c.command(&["load", "-i", &s(p)])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for ch in children {
            let out = ch.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "round {round}: concurrent load failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let mut ids = c.ids();
        ids.sort();
        assert_eq!(ids, [SAMPLE_OCI_ID, SAMPLE_ID]);
        assert_eq!(c.snapshot_dirs().len(), 3);
        for id in [SAMPLE_ID, SAMPLE_OCI_ID] {
            assert_eq!(layers_of(&c, id), SAMPLE_DIFF_IDS);
        }
        // Each image is whole: removing one leaves the other usable.
        c.ok(&["rmi", "sample/app:1.0"]);
        assert_eq!(c.snapshot_dirs().len(), 3);
        assert_eq!(layers_of(&c, SAMPLE_OCI_ID), SAMPLE_DIFF_IDS);
    }
}
