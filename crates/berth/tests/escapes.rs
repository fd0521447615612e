//! Regression tests for container escapes, each attacking the way an
//! attacker would, through the berth binary as root.

mod util;

use std::fs;

use util::*;

/// The range of fd numbers an attacker tries (CVE-2024-21626's exploit
/// walks them); the CLI holds its store, database and cgroup fds there.
const FDS: std::ops::RangeInclusive<u32> = 3..=64;

#[track_caller]
fn refused(r: &Run, what: &str) {
    assert!(
        !r.success() && !r.stdout.contains("RAN"),
        "{what}: the process ran with its cwd through a leaked fd: {r}"
    );
    assert!(r.stderr.contains("/proc/self/fd"), "{what}: {r}");
}

/// `berth run -w /proc/self/fd/N` never starts the process.
#[test]
fn run_workdir_through_a_leaked_fd_is_refused() {
    let b = Berth::with_busybox();
    for n in FDS {
        let w = format!("/proc/self/fd/{n}");
        let r = b.run(&[
            "run",
            "--rm",
            "-w",
            &w,
            "busybox:1.35",
            "sh",
            "-c",
            "echo RAN; ls",
        ]);
        refused(&r, &format!("run -w {w}"));
    }
    assert_eq!(b.ok(&["ps", "-aq"]), "");
}

/// An image whose WORKDIR is /proc/self/fd/N (as a hostile image author
/// writes it), and a Dockerfile WORKDIR followed by RUN: the build fails
/// at that RUN, and running the image fails too.
#[test]
fn image_and_dockerfile_workdir_through_a_leaked_fd_are_refused() {
    let b = Berth::with_busybox();
    for n in FDS {
        let dir = b.path(&format!("ctx{n}"));
        fs::create_dir_all(&dir).unwrap();
        fs::write(
            dir.join("Dockerfile"),
            format!("FROM busybox:1.35\nWORKDIR /proc/self/fd/{n}\nRUN echo RAN; ls\n"),
        )
        .unwrap();
        let r = b.run(&["build", "-t", "evil:run", dir.to_str().unwrap()]);
        assert!(
            !r.success(),
            "build with WORKDIR /proc/self/fd/{n} + RUN succeeded: {r}"
        );
        assert!(r.stderr.contains("/proc/self/fd"), "{r}");
        fs::write(
            dir.join("Dockerfile"),
            format!("FROM busybox:1.35\nWORKDIR /proc/self/fd/{n}\nCMD [\"sh\", \"-c\", \"echo RAN; ls\"]\n"),
        )
        .unwrap();
        b.ok(&[
            "build",
            "-q",
            "-t",
            &format!("evil:{n}"),
            dir.to_str().unwrap(),
        ]);
        let r = b.run(&["run", "--rm", &format!("evil:{n}")]);
        refused(&r, &format!("image WORKDIR /proc/self/fd/{n}"));
    }
}

/// `berth exec -w /proc/self/fd/N` in a running container.
#[test]
fn exec_workdir_through_a_leaked_fd_is_refused() {
    let b = Berth::with_busybox();
    b.ok(&[
        "run",
        "-d",
        "--name",
        "target",
        "busybox:1.35",
        "sleep",
        "60",
    ]);
    for n in FDS {
        let w = format!("/proc/self/fd/{n}");
        let r = b.run(&["exec", "-w", &w, "target", "sh", "-c", "echo RAN; ls"]);
        refused(&r, &format!("exec -w {w}"));
    }
    // The container is unharmed.
    assert_eq!(b.ok(&["exec", "-w", "/etc", "target", "pwd"]), "/etc\n");
    b.ok(&["rm", "-f", "target"]);
}

/// A tar member with the header fields an attacker chooses.
fn raw_member(
    b: &mut tar::Builder<Vec<u8>>,
    name: &str,
    kind: tar::EntryType,
    mode: u32,
    uid: u64,
    data: &[u8],
    dev: Option<(u32, u32)>,
) {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(uid);
    h.set_gid(uid);
    h.set_size(data.len() as u64);
    h.set_mtime(1_700_000_000);
    if let Some((major, minor)) = dev {
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
    }
    h.set_path(name).unwrap();
    h.set_cksum();
    b.append(&h, data).unwrap();
}

/// Runs `program args` as the host user nobody; (success, stdout+stderr).
fn as_nobody(program: &str, args: &[&str]) -> (bool, String) {
    use std::os::unix::process::CommandExt;
    let out = std::process::Command::new(program)
        .args(args)
        .uid(65534)
        .gid(65534)
        .current_dir("/")
        .output();
    let out = match out {
        Ok(o) => o,
        // The exec itself refused (permission denied on the path).
        Err(e) => return (false, e.to_string()),
    };
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// An unprivileged host user can neither run an image's set-uid-root
/// programs (from its unpacked layers or a running container's root), nor
/// open its device nodes, nor read the store: the store is root's only
/// (0700), and an existing store with looser modes is tightened at open.
#[test]
fn unprivileged_host_users_cannot_reach_the_store() {
    let b = Berth::with_busybox();
    // A layer with a set-uid-root copy of busybox and a world-writable
    // /dev/kmsg (char 1:11).
    let mut exe = None;
    for e in fs::read_dir(b.root.join("snapshots")).unwrap() {
        let p = e.unwrap().path().join("bin/busybox");
        if p.exists() {
            exe = Some(fs::read(p).unwrap());
        }
    }
    let exe = exe.expect("busybox in a snapshot");
    let mut t = tar::Builder::new(Vec::new());
    raw_member(
        &mut t,
        "suid",
        tar::EntryType::Regular,
        0o4755,
        0,
        &exe,
        None,
    );
    raw_member(
        &mut t,
        "kmsg",
        tar::EntryType::Char,
        0o666,
        0,
        b"",
        Some((1, 11)),
    );
    let layer = t.into_inner().unwrap();
    let archive = b.path("evil.tar");
    fs::write(&archive, docker_archive(&[layer], &["evil:1"])).unwrap();
    b.load(&archive);
    b.ok(&[
        "run",
        "-d",
        "--name",
        "victim",
        "busybox:1.35",
        "sleep",
        "60",
    ]);
    // Loosen the store as an older berth left it.
    use std::os::unix::fs::PermissionsExt;
    for d in ["", "snapshots", "blobs", "tmp"] {
        fs::set_permissions(b.root.join(d), fs::Permissions::from_mode(0o755)).unwrap();
    }
    b.ok(&["images", "-q"]);
    for d in ["", "snapshots", "blobs", "tmp"] {
        let mode = fs::metadata(b.root.join(d)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{d:?} not tightened at open: {mode:o}");
    }
    let mut tried = 0;
    for e in fs::read_dir(b.root.join("snapshots")).unwrap() {
        let dir = e.unwrap().path();
        if dir.join("suid").exists() {
            let (ok, out) = as_nobody(dir.join("suid").to_str().unwrap(), &["id", "-u"]);
            assert!(!ok, "nobody ran the image's set-uid program: {out}");
            let (ok, out) = as_nobody(
                "/bin/sh",
                &["-c", &format!("echo x > {}", dir.join("kmsg").display())],
            );
            assert!(!ok, "nobody wrote the image's device node: {out}");
            tried += 1;
        }
    }
    assert_eq!(tried, 1);
    let id = b
        .ok(&["inspect", "--format", "{{.Id}}", "victim"])
        .trim()
        .to_string();
    let merged = b.root.join("containers").join(&id).join("merged");
    assert!(merged.join("bin/busybox").exists());
    let (ok, out) = as_nobody("/bin/ls", &[merged.to_str().unwrap()]);
    assert!(!ok, "nobody listed a running container's root: {out}");
    let (ok, out) = as_nobody("/bin/ls", &[b.root.join("blobs/sha256").to_str().unwrap()]);
    assert!(!ok, "nobody listed the blobs: {out}");
    let runroot = b.root.with_file_name("run");
    let mode = fs::metadata(&runroot).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode & 0o077, 0, "runroot {mode:o}");
    b.ok(&["rm", "-f", "victim"]);
}

/// Blobs are stored owned by root with mode 0644 whatever the archive
/// member said (uid 1000, mode 04777 here), and `save` re-checks every
/// blob's digest: one changed on disk is refused, not shipped.
#[test]
fn stored_blobs_are_roots_and_save_rechecks_them() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let b = Berth::new();
    let layer = tar_of(&[Member::File("hello", b"hi\n")]);
    let files = docker_archive_files(
        &serde_json::to_vec(&image_config(&[Layer::plain(layer.clone())])).unwrap(),
        &[layer],
        &["owned:1"],
    );
    let mut t = tar::Builder::new(Vec::new());
    for (name, data) in &files {
        raw_member(
            &mut t,
            name,
            tar::EntryType::Regular,
            0o4777,
            1000,
            data,
            None,
        );
    }
    let archive = b.path("owned.tar");
    fs::write(&archive, t.into_inner().unwrap()).unwrap();
    b.load(&archive);
    let mut n = 0;
    for e in fs::read_dir(b.root.join("blobs/sha256")).unwrap() {
        let m = e.unwrap().metadata().unwrap();
        assert_eq!(
            (m.uid(), m.gid()),
            (0, 0),
            "a blob kept the archive's owner"
        );
        assert_eq!(
            m.permissions().mode() & 0o7777,
            0o644,
            "a blob kept the archive's mode"
        );
        n += 1;
    }
    assert!(n >= 3, "{n} blobs");
    // Change a layer blob in place, as a user who could write it would.
    let out = b.path("ok.tar");
    b.ok(&["save", "-o", out.to_str().unwrap(), "owned:1"]);
    for format in ["docker-archive", "oci-archive"] {
        for e in fs::read_dir(b.root.join("blobs/sha256")).unwrap() {
            let p = e.unwrap().path();
            let mut data = fs::read(&p).unwrap();
            if let Some(i) = data.windows(3).position(|w| w == b"hi\n") {
                data[i] = b'H';
                fs::write(&p, &data).unwrap();
            }
        }
        let bad = b.path(&format!("bad-{format}.tar"));
        let r = b.run(&[
            "save",
            "--format",
            format,
            "-o",
            bad.to_str().unwrap(),
            "owned:1",
        ]);
        assert!(!r.success(), "{format}: a changed blob was saved: {r}");
        assert!(r.stderr.contains("changed on disk"), "{format}: {r}");
        assert!(!bad.exists(), "{format}: a partial archive was left");
    }
}

/// Store integrity: what is left after a refused load.
fn untouched(b: &Berth) {
    assert!(
        b.snapshot_dirs().is_empty(),
        "snapshots left: {:?}",
        b.snapshot_dirs()
    );
    let tmp: Vec<_> = fs::read_dir(b.root.join("tmp")).unwrap().collect();
    assert!(tmp.is_empty(), "tmp/ left: {tmp:?}");
    assert_eq!(b.ok(&["images", "-q"]), "");
}

/// More layers than a container's root can stack (Docker's 128) is
/// refused before anything is unpacked: 1,000 copies of a 1 KiB layer no
/// longer make 1,000 snapshots. 128 is still fine.
#[test]
fn images_with_more_layers_than_overlay_stacks_are_refused() {
    let b = Berth::new();
    let layer = tar_of(&[Member::File("f", &[7u8; 1024])]);
    let many = vec![layer.clone(); 1000];
    let archive = b.path("many.tar");
    fs::write(&archive, docker_archive(&many, &["many:1"])).unwrap();
    let r = b.run(&["load", "-i", archive.to_str().unwrap()]);
    assert!(!r.success(), "{r}");
    r.one_error_line(&["1000 layers", "128"]);
    untouched(&b);
    let ok = vec![layer; 128];
    fs::write(&archive, docker_archive(&ok, &["ok:1"])).unwrap();
    b.load(&archive);
}

/// The busybox fixture's one layer, uncompressed.
fn busybox_tar() -> Vec<u8> {
    let layout = fixture("busybox-1.35");
    let m = oci_manifest(&layout);
    let digest = m["layers"][0]["digest"].as_str().unwrap();
    let blob = fs::read(blob_path(&layout, digest)).unwrap();
    let mut tar = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&blob[..]), &mut tar).unwrap();
    tar
}

/// A diff repeated in an image, or under other parents in other images, is
/// unpacked once and its chains share the directory; containers still see
/// each layer stacked in order (B removes A's file, the A over it brings it
/// back), and removing one image keeps what another shares.
#[test]
fn a_repeated_diff_is_unpacked_once() {
    let b = Berth::new();
    let base = busybox_tar();
    let a = tar_of(&[Member::File("a", b"from A\n")]);
    let bb = tar_of(&[Member::File(".wh.a", b""), Member::File("b", b"from B\n")]);
    let image = |name: &str, tars: &[&Vec<u8>]| {
        let dir = b.path(name);
        let layers: Vec<Layer> = tars.iter().map(|t| Layer::gzip((*t).clone())).collect();
        oci_layout(&dir, &layers, Some(&format!("{name}:1")));
        b.load(&dir);
    };
    image("aba", &[&base, &a, &bb, &a]);
    assert_eq!(b.snapshot_dirs().len(), 3, "{:?}", b.snapshot_dirs());
    let cat = ["run", "--rm", "aba:1", "sh", "-c", "cat /a /b"];
    assert_eq!(b.ok(&cat), "from A\nfrom B\n");
    image("ba", &[&base, &bb, &a]);
    let mut many = vec![&base];
    many.extend(std::iter::repeat_n(&a, 127));
    image("many", &many);
    assert_eq!(b.snapshot_dirs().len(), 3, "{:?}", b.snapshot_dirs());
    assert_eq!(b.ok(&["run", "--rm", "many:1", "cat", "/a"]), "from A\n");
    // The lower dirs inspect shows are the ones a container stacks.
    let lower = b.inspect("aba:1")["GraphDriver"]["Data"]["LowerDir"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(lower.split(':').count(), 3, "{lower}");
    b.ok(&["rmi", "aba:1"]);
    assert_eq!(b.snapshot_dirs().len(), 3, "{:?}", b.snapshot_dirs());
    assert_eq!(
        b.ok(&["run", "--rm", "ba:1", "sh", "-c", "cat /a /b"]),
        "from A\nfrom B\n"
    );
    b.ok(&["rmi", "ba:1", "many:1"]);
    assert!(b.snapshot_dirs().is_empty(), "{:?}", b.snapshot_dirs());
}

/// A layer whose blob is longer or shorter than its descriptor's size is
/// refused at that byte, and the store is as it was.
#[test]
fn blobs_must_match_their_descriptor_size() {
    let b = Berth::new();
    let tar = tar_of(&[Member::File("data", &[1u8; 100_000])]);
    for delta in [-1i64, 1] {
        let dir = b.path(&format!("layout{delta}"));
        oci_layout(&dir, &[Layer::gzip(tar.clone())], Some("sized:1"));
        let mut m = oci_manifest(&dir);
        let size = m["layers"][0]["size"].as_i64().unwrap();
        m["layers"][0]["size"] = serde_json::json!(size + delta);
        set_oci_manifest(&dir, &m);
        let r = b.run(&["load", "-i", dir.to_str().unwrap()]);
        assert!(!r.success(), "size {delta:+}: {r}");
        let want = if delta < 0 {
            "longer than its descriptor"
        } else {
            "but its descriptor's size is"
        };
        assert!(r.stderr.contains(want), "size {delta:+}: {r}");
        untouched(&b);
    }
}

/// A gzip bomb (a few hundred KB unpacking to 200 MiB) stops when the
/// store's file system falls under berth's free-space reserve, with an
/// error saying so, and leaves the store as it was. The store is on a
/// 128 MiB tmpfs of the test's own.
#[test]
fn a_gzip_bomb_stops_at_the_free_space_reserve() {
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }
    let b = Berth::new();
    let mnt = b.root.clone();
    fs::create_dir_all(&mnt).unwrap();
    let st = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=128m", "tmpfs"])
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(st.success(), "mounting a tmpfs for the store");
    let _guard = Unmount(mnt.clone());
    let tar = tar_of(&[Member::File("zeros", &vec![0u8; 200 << 20])]);
    let dir = b.path("bomb");
    oci_layout(&dir, &[Layer::gzip(tar)], Some("bomb:1"));
    let out = b
        .command(&["load", "-i", dir.to_str().unwrap()])
        .env("BERTH_MIN_FREE", "16m")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the bomb loaded");
    assert!(
        err.contains("berth keeps free") && err.contains("BERTH_MIN_FREE"),
        "{err}"
    );
    untouched(&b);
    let free = rustix::fs::statvfs(&mnt).unwrap();
    assert!(
        free.f_bavail * free.f_frsize > 100 << 20,
        "space not given back"
    );
}

/// What a killed load leaves in tmp/ (a staging directory of a dead pid)
/// is counted by `system df` and reported by `image prune` as it removes
/// it, not "0B".
#[test]
fn staging_left_by_a_killed_load_is_counted_and_reclaimed() {
    let b = Berth::with_busybox();
    let left = b.root.join("tmp").join("999999999-1-0");
    fs::create_dir_all(&left).unwrap();
    fs::write(left.join("blob"), vec![0u8; 6 << 20]).unwrap();
    let df = b.ok(&["system", "df", "--format", "{{.Type}} {{.Reclaimable}}"]);
    let images = df.lines().find(|l| l.starts_with("Images")).unwrap();
    assert!(images.contains("MB"), "tmp/ not counted: {df}");
    let out = b.ok(&["image", "prune", "-f"]);
    assert!(out.contains("Total reclaimed space: 6.29MB"), "{out}");
    assert!(!left.exists());
}
