//! Helpers shared by berth's black-box tests: run the built binary against a
//! private store root, check its exit status and output, snapshot the store,
//! and build small image archives.

// Each test file uses a different subset of these helpers.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

/// The berth binary cargo built for these tests.
pub const BERTH: &str = env!("CARGO_BIN_EXE_berth");

/// `tests/fixtures` of the workspace.
pub fn fixtures() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures"))
}

pub fn fixture(name: &str) -> PathBuf {
    fixtures().join(name)
}

/// What one berth run did.
pub struct Run {
    pub args: Vec<String>,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub raw_stdout: Vec<u8>,
}

impl Run {
    fn from_output(args: Vec<String>, out: Output) -> Run {
        Run {
            args,
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            raw_stdout: out.stdout,
        }
    }

    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// Panics unless the run succeeded; returns it for further checks.
    #[track_caller]
    pub fn ok(self) -> Run {
        assert!(self.success(), "expected success:\n{self}");
        self
    }

    /// Panics unless the run failed (non-zero exit, not a signal).
    #[track_caller]
    pub fn failed(self) -> Run {
        assert!(
            matches!(self.code, Some(c) if c != 0),
            "expected failure:\n{self}"
        );
        self
    }

    /// Panics unless stderr is exactly one line starting with "Error:" and
    /// containing every one of `needles`; returns that line.
    #[track_caller]
    pub fn one_error_line(&self, needles: &[&str]) -> String {
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "expected one line on stderr:\n{self}");
        let line = lines[0];
        assert!(line.starts_with("Error:"), "expected \"Error:\":\n{self}");
        for n in needles {
            assert!(
                line.contains(n),
                "expected stderr to mention {n:?}:\n{self}"
            );
        }
        line.to_string()
    }

    /// stdout lines, without the trailing empty one.
    pub fn lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "  $ berth {}", self.args.join(" "))?;
        writeln!(f, "  exit: {:?}", self.code)?;
        let out: String = self.stdout.chars().take(4000).collect();
        writeln!(f, "  stdout: {out:?}")?;
        write!(f, "  stderr: {:?}", self.stderr)
    }
}

/// The image id of the busybox fixture.
pub const BUSYBOX_ID: &str =
    "sha256:34bf58e478a3177ce60c5882e166493671b970307c68cf12ad89a04d67df3f23";

/// A private store root (removed when dropped) and a way to run berth on it.
pub struct Berth {
    pub root: PathBuf,
    /// Scratch space beside the root, for archives and the like.
    pub work: PathBuf,
    _dir: tempfile::TempDir,
}

impl Default for Berth {
    fn default() -> Self {
        Self::new()
    }
}

impl Berth {
    pub fn new() -> Berth {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().join("root");
        let work = dir.path().join("work");
        fs::create_dir(&work).expect("work dir");
        Berth {
            root,
            work,
            _dir: dir,
        }
    }

    /// A new store with the busybox fixture loaded as `busybox:1.35`.
    pub fn with_busybox() -> Berth {
        let b = Berth::new();
        b.ok(&["load", "-i", fixture("busybox-1.35").to_str().unwrap()]);
        b.ok(&["tag", BUSYBOX_ID, "busybox:1.35"]);
        b
    }

    /// A path under the scratch directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.work.join(name)
    }

    /// `berth --root ROOT ARGS...`, with the environment cleared of berth's
    /// own variables so the caller's settings cannot leak in.
    pub fn command<S: AsRef<str>>(&self, args: &[S]) -> Command {
        let mut c = Command::new(BERTH);
        c.arg("--root")
            .arg(&self.root)
            .arg("--runroot")
            .arg(self.root.with_file_name("run"))
            .args(args.iter().map(AsRef::as_ref))
            .env_remove("BERTH_ROOT")
            .env_remove("BERTH_RUNROOT")
            .env_remove("BERTH_LOG")
            .env_remove("RUST_LOG")
            // berth's client config: none unless a test writes one.
            .env("BERTH_CONFIG", self.config_path())
            .stdin(Stdio::null());
        c
    }

    /// Where berth's client config (`BERTH_CONFIG`) is, for tests that
    /// write one.
    pub fn config_path(&self) -> PathBuf {
        self.root.with_file_name("berth-config.json")
    }

    pub fn run<S: AsRef<str>>(&self, args: &[S]) -> Run {
        self.run_with_stdin(args, Stdio::null())
    }

    /// Runs with standard input from `stdin` (a file, a pipe...).
    pub fn run_with_stdin<S: AsRef<str>>(&self, args: &[S], stdin: impl Into<Stdio>) -> Run {
        let out = self.command(args).stdin(stdin).output().expect("run berth");
        Run::from_output(args.iter().map(|a| a.as_ref().to_string()).collect(), out)
    }

    /// Runs and asserts success; returns stdout.
    #[track_caller]
    pub fn ok<S: AsRef<str>>(&self, args: &[S]) -> String {
        self.run(args).ok().stdout
    }

    /// Runs and asserts failure.
    #[track_caller]
    pub fn fail<S: AsRef<str>>(&self, args: &[S]) -> Run {
        self.run(args).failed()
    }

    /// `berth load -i PATH`, asserted to succeed; returns stdout.
    #[track_caller]
    pub fn load(&self, path: &Path) -> String {
        self.ok(&["load", "-i", &path.display().to_string()])
    }

    /// Full image IDs, as `images -q --no-trunc` prints them.
    #[track_caller]
    pub fn ids(&self) -> Vec<String> {
        self.ok(&["images", "-q", "--no-trunc"])
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// `image inspect` of one image, as JSON.
    #[track_caller]
    pub fn inspect(&self, name: &str) -> Value {
        let out = self.ok(&["image", "inspect", name]);
        let v: Value = serde_json::from_str(&out).expect("inspect prints JSON");
        let list = v.as_array().expect("inspect prints a list");
        assert_eq!(list.len(), 1, "inspect {name}: {out}");
        list[0].clone()
    }

    /// `container inspect` of one container, as JSON.
    #[track_caller]
    pub fn inspect_container(&self, name: &str) -> Value {
        let out = self.ok(&["container", "inspect", name]);
        let v: Value = serde_json::from_str(&out).expect("inspect prints JSON");
        v[0].clone()
    }

    /// Snapshot of the store that a failed command must not change: every
    /// path under the root (type, mode, owner, size and inode of files,
    /// symlink targets), except the database, the lock file and the
    /// contents of `tmp/`, plus the image IDs the store lists.
    #[track_caller]
    pub fn state(&self) -> String {
        let mut lines = Vec::new();
        if self.root.exists() {
            walk(&self.root, &self.root, &mut lines);
        }
        lines.sort();
        let mut s = lines.join("\n");
        s.push_str("\n-- images -q --no-trunc\n");
        s.push_str(&self.ok(&["images", "-q", "--no-trunc"]));
        s
    }

    /// The unpacked snapshot directories, as `ROOT/snapshots/*`.
    pub fn snapshot_dirs(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = fs::read_dir(self.root.join("snapshots"))
            .map(|rd| rd.map(|e| e.expect("dir entry").path()).collect())
            .unwrap_or_default();
        dirs.sort();
        dirs
    }

    /// Names in `ROOT/blobs/sha256`.
    pub fn blob_names(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.root.join("blobs/sha256"))
            .map(|rd| {
                rd.map(|e| {
                    e.expect("dir entry")
                        .file_name()
                        .to_string_lossy()
                        .into_owned()
                })
                .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }
}

fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
    for entry in fs::read_dir(dir).expect("read store dir") {
        let path = entry.expect("dir entry").path();
        let rel = path.strip_prefix(base).expect("under root").to_path_buf();
        let rel_s = rel.display().to_string();
        if rel_s.starts_with("berth.db") || rel_s == "lock" || rel.starts_with("tmp/") {
            continue;
        }
        let meta = fs::symlink_metadata(&path).expect("stat");
        let ft = meta.file_type();
        let mut line = format!(
            "{rel_s} mode={:o} owner={}:{}",
            meta.permissions().mode(),
            meta.uid(),
            meta.gid()
        );
        if ft.is_dir() {
            line.push_str(" dir");
            out.push(line);
            if rel_s != "tmp" {
                walk(base, &path, out);
            }
        } else if ft.is_symlink() {
            let target = fs::read_link(&path).expect("readlink");
            let _ = write!(line, " -> {}", target.display());
            out.push(line);
        } else {
            let _ = write!(line, " size={} ino={}", meta.len(), meta.ino());
            out.push(line);
        }
    }
}

// ---- building archives ----------------------------------------------------

pub fn sha256_hex(data: &[u8]) -> String {
    format!("{:x}", Sha256::digest(data))
}

/// `sha256:HEX` of `data`.
pub fn digest_of(data: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(data))
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).expect("gzip");
    e.finish().expect("gzip")
}

/// One member of a tar built by [`tar_of`].
pub enum Member<'a> {
    Dir(&'a str),
    File(&'a str, &'a [u8]),
    Symlink(&'a str, &'a str),
}

/// A plain tar of `members`. Names are written into the header as given
/// (no checks), so a test can make entries such as `../x` or `/x`.
pub fn tar_of(members: &[Member<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for m in members {
        let mut h = tar::Header::new_gnu();
        let (name, data): (&str, &[u8]) = match m {
            Member::Dir(n) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                (n, b"")
            }
            Member::File(n, d) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                (n, d)
            }
            Member::Symlink(n, target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_link_name(target).expect("link name");
                (n, b"")
            }
        };
        if name.len() >= 100 {
            // GNU long name: a ././@LongLink member carries the whole name.
            let mut long = tar::Header::new_gnu();
            long.set_entry_type(tar::EntryType::GNULongName);
            long.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
            long.set_mode(0o644);
            long.set_size(name.len() as u64 + 1);
            long.set_cksum();
            let mut data = name.as_bytes().to_vec();
            data.push(0);
            b.append(&long, &data[..]).expect("tar append");
        }
        let short = &name.as_bytes()[..name.len().min(99)];
        let field = &mut h.as_old_mut().name;
        field.fill(0);
        field[..short.len()].copy_from_slice(short);
        h.set_size(data.len() as u64);
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        h.set_cksum();
        b.append(&h, data).expect("tar append");
    }
    b.into_inner().expect("tar finish")
}

/// A tar of the files under `dir`, named relative to it (as `tar -C DIR -cf
/// - .` would, without the `./`).
pub fn tar_dir(dir: &Path) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    b.append_dir_all("", dir).expect("tar dir");
    b.into_inner().expect("tar finish")
}

/// Copies a directory tree (files and directories only).
pub fn copy_dir(src: &Path, dst: &Path) {
    fs::create_dir_all(dst).expect("mkdir");
    for entry in fs::read_dir(src).expect("read dir") {
        let entry = entry.expect("dir entry");
        let to = dst.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &to);
        } else {
            fs::copy(entry.path(), &to).expect("copy");
        }
    }
}

/// The blob file of `digest` (`sha256:HEX`) in an OCI layout.
pub fn blob_path(layout: &Path, digest: &str) -> PathBuf {
    let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
    layout.join("blobs/sha256").join(hex)
}

/// Writes `data` as a blob of an OCI layout; returns its digest.
pub fn put_blob(layout: &Path, data: &[u8]) -> String {
    let d = digest_of(data);
    fs::create_dir_all(layout.join("blobs/sha256")).expect("mkdir blobs");
    fs::write(blob_path(layout, &d), data).expect("write blob");
    d
}

pub fn read_json(path: &Path) -> Value {
    let raw = fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_slice(&raw).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

/// The manifest an OCI layout's index.json points to first.
pub fn oci_manifest(layout: &Path) -> Value {
    let index = read_json(&layout.join("index.json"));
    let digest = index["manifests"][0]["digest"]
        .as_str()
        .expect("index lists a manifest");
    read_json(&blob_path(layout, digest))
}

/// Replaces an OCI layout's first manifest with `manifest`, storing it as a
/// new blob and pointing index.json at it.
pub fn set_oci_manifest(layout: &Path, manifest: &Value) {
    let bytes = serde_json::to_vec(manifest).expect("manifest json");
    let d = put_blob(layout, &bytes);
    let mut index = read_json(&layout.join("index.json"));
    index["manifests"][0]["digest"] = json!(d);
    index["manifests"][0]["size"] = json!(bytes.len());
    fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).expect("index json"),
    )
    .expect("write index.json");
}

/// One layer of an image built by [`oci_layout`] or [`docker_archive`].
pub struct Layer {
    /// The uncompressed tar; its digest is the layer's diff_id.
    pub tar: Vec<u8>,
    /// What is stored: the tar itself or a compressed form of it.
    pub blob: Vec<u8>,
    pub media_type: String,
}

impl Layer {
    pub fn plain(tar: Vec<u8>) -> Layer {
        Layer {
            blob: tar.clone(),
            tar,
            media_type: "application/vnd.oci.image.layer.v1.tar".into(),
        }
    }

    pub fn gzip(tar: Vec<u8>) -> Layer {
        Layer {
            blob: gzip(&tar),
            tar,
            media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
        }
    }
}

/// An image config for `layers`.
pub fn image_config(layers: &[Layer]) -> Value {
    json!({
        "created": "2024-01-01T00:00:00Z",
        "architecture": "amd64",
        "os": "linux",
        "config": { "Cmd": ["/bin/sh"] },
        "rootfs": {
            "type": "layers",
            "diff_ids": layers.iter().map(|l| digest_of(&l.tar)).collect::<Vec<_>>(),
        },
        "history": [{ "created": "2024-01-01T00:00:00Z", "created_by": "test" }],
    })
}

/// Writes an OCI image layout for one image at `dir`; returns the manifest
/// digest.
pub fn oci_layout(dir: &Path, layers: &[Layer], name: Option<&str>) -> String {
    fs::create_dir_all(dir).expect("mkdir layout");
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).expect("oci-layout");
    let config = serde_json::to_vec(&image_config(layers)).expect("config json");
    let config_digest = put_blob(dir, &config);
    let layer_descs: Vec<Value> = layers
        .iter()
        .map(|l| {
            json!({
                "mediaType": l.media_type,
                "digest": put_blob(dir, &l.blob),
                "size": l.blob.len(),
            })
        })
        .collect();
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config.len(),
        },
        "layers": layer_descs,
    }))
    .expect("manifest json");
    let manifest_digest = put_blob(dir, &manifest);
    let mut desc = json!({
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": manifest_digest,
        "size": manifest.len(),
    });
    if let Some(n) = name {
        desc["annotations"] = json!({ "io.containerd.image.name": n });
    }
    let index = json!({ "schemaVersion": 2, "manifests": [desc] });
    fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&index).expect("index json"),
    )
    .expect("write index.json");
    manifest_digest
}

/// Files of a docker-archive, in the order `docker save` writes them.
pub fn docker_archive_files(
    config: &[u8],
    layers: &[Vec<u8>],
    repo_tags: &[&str],
) -> Vec<(String, Vec<u8>)> {
    let config_name = format!("{}.json", sha256_hex(config));
    let mut files = vec![(config_name.clone(), config.to_vec())];
    let mut names = Vec::new();
    for l in layers {
        let name = format!("{}/layer.tar", sha256_hex(l));
        files.push((name.clone(), l.clone()));
        names.push(name);
    }
    let manifest = json!([{ "Config": config_name, "RepoTags": repo_tags, "Layers": names }]);
    files.push((
        "manifest.json".into(),
        serde_json::to_vec(&manifest).expect("manifest json"),
    ));
    files
}

/// A tar holding `files` (regular files, parent directories implied).
pub fn tar_files(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        b.append_data(&mut h, name, &data[..]).expect("tar append");
    }
    b.into_inner().expect("tar finish")
}

/// A docker-archive tar of one image made of plain tar `layers`.
pub fn docker_archive(layers: &[Vec<u8>], repo_tags: &[&str]) -> Vec<u8> {
    let ls: Vec<Layer> = layers.iter().cloned().map(Layer::plain).collect();
    let config = serde_json::to_vec(&image_config(&ls)).expect("config json");
    tar_files(&docker_archive_files(&config, layers, repo_tags))
}

/// The members of a tar file, in order, with their contents.
pub fn untar(data: &[u8]) -> Vec<(String, Vec<u8>)> {
    use std::io::Read;
    let mut a = tar::Archive::new(data);
    let mut out = Vec::new();
    for e in a.entries().expect("tar entries") {
        let mut e = e.expect("tar entry");
        if !e.header().entry_type().is_file() {
            continue;
        }
        let name = e.path().expect("entry path").display().to_string();
        let mut buf = Vec::new();
        e.read_to_end(&mut buf).expect("read entry");
        out.push((name, buf));
    }
    out
}

/// `true` if `s` is `n` lowercase hex digits.
pub fn is_hex(s: &str, n: usize) -> bool {
    s.len() == n
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// What a command run on a terminal printed, and its exit code.
pub struct PtyRun {
    pub output: String,
    pub code: Option<i32>,
}

/// Runs `cmd` with a new pty (`rows` x `cols`) as its controlling terminal
/// and stdio. Once the output contains `prompt` (at once if empty), writes
/// `input`. Reads until the command exits (30 s at most).
pub fn run_on_pty(cmd: Command, rows: u16, cols: u16, prompt: &str, input: &[u8]) -> PtyRun {
    run_on_pty_steps(cmd, rows, cols, &[(prompt, input)])
}

/// `run_on_pty` with several steps: each input is written once the output
/// so far contains its prompt (an empty prompt: after a short pause, so
/// that the command has set its terminal up).
pub fn run_on_pty_steps(mut cmd: Command, rows: u16, cols: u16, steps: &[(&str, &[u8])]) -> PtyRun {
    use rustix::pty::OpenptFlags;
    use std::os::unix::process::CommandExt;
    let master =
        rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)
            .expect("openpt");
    rustix::pty::grantpt(&master).expect("grantpt");
    rustix::pty::unlockpt(&master).expect("unlockpt");
    let slave = rustix::pty::ioctl_tiocgptpeer(&master, OpenptFlags::RDWR | OpenptFlags::NOCTTY)
        .expect("pty slave");
    rustix::termios::tcsetwinsize(
        &slave,
        rustix::termios::Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        },
    )
    .expect("set the window size");
    let s = std::fs::File::from(slave);
    cmd.stdin(s.try_clone().unwrap())
        .stdout(s.try_clone().unwrap())
        .stderr(s);
    // SAFETY: setsid and TIOCSCTTY on stdin are async-signal-safe calls
    // between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            rustix::process::setsid()?;
            rustix::process::ioctl_tiocsctty(std::io::stdin())?;
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("spawn on the pty");
    drop(cmd);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut out = Vec::new();
    let mut step = 0;
    let mut buf = [0u8; 4096];
    let started = std::time::Instant::now();
    loop {
        while let Some((prompt, input)) = steps.get(step) {
            let ready = if prompt.is_empty() {
                input.is_empty() || started.elapsed() > std::time::Duration::from_millis(300)
            } else {
                String::from_utf8_lossy(&out).contains(prompt)
            };
            if !ready {
                break;
            }
            if !input.is_empty() {
                rustix::io::write(&master, input).expect("write to the pty");
            }
            step += 1;
        }
        let mut fds = [rustix::event::PollFd::new(
            &master,
            rustix::event::PollFlags::IN,
        )];
        let ts = rustix::event::Timespec {
            tv_sec: 0,
            tv_nsec: 200_000_000,
        };
        let n = rustix::event::poll(&mut fds, Some(&ts)).unwrap_or(0);
        if n > 0 {
            match rustix::io::read(&master, &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(k) => out.extend_from_slice(&buf[..k]),
            }
        } else if child.try_wait().unwrap().is_some() || std::time::Instant::now() > deadline {
            break;
        }
    }
    if std::time::Instant::now() > deadline {
        let _ = child.kill();
    }
    let status = child.wait().expect("wait");
    PtyRun {
        output: String::from_utf8_lossy(&out).into_owned(),
        code: status.code(),
    }
}
