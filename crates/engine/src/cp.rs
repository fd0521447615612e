//! `berth cp`: files between a container and the host, in both
//! directions, running or stopped, with `docker cp`'s rules for where a
//! source lands.
//!
//! The container's side is always done by a helper process (helper role
//! `cp`) chrooted into the container's root (`/proc/PID/root` when it
//! runs, so its volumes are seen; its overlay mounted for the copy when it
//! is stopped): a symlink in the container can never lead outside it. The two sides talk over a
//! socketpair: the source's type, where it lands, then a tar stream.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::FromRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::db::State;
use crate::Engine;
use crate::EngineError;

/// One end of `berth cp`: a path in the container, a host path, or `-`
/// (a tar stream on stdin/stdout).
#[derive(Debug, Clone)]
pub enum Side {
    Container(String),
    Host(PathBuf),
    Stream,
}

/// Where a `Side::Stream` reads its tar archive from (copying in) or
/// writes it to (copying out): the CLI's stdin and stdout, the daemon's
/// request and response bodies.
pub struct Streams<'a> {
    pub input: &'a mut dyn std::io::Read,
    pub output: &'a mut dyn Write,
}

#[derive(Debug, Clone, Default)]
pub struct CpOptions {
    /// `-a`: keep the source's owners (into the container); otherwise root
    /// owns what is copied in and the caller what is copied out.
    pub archive: bool,
    /// `-L`: follow a symlink given as the source.
    pub follow: bool,
}

/// What the receiving side needs to know of the source.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
enum Kind {
    Dir,
    Other,
}

/// Where a source lands: the directory to unpack into and the name its top
/// entry gets there (`None`: a directory's contents merge into it).
fn landing(
    dest: &Path,
    dest_raw: &str,
    kind: Kind,
    contents_only: bool,
    src_base: &str,
) -> Result<(PathBuf, Option<String>), String> {
    match std::fs::metadata(dest) {
        Ok(md) if md.is_dir() => {
            if kind == Kind::Dir && contents_only {
                Ok((dest.to_path_buf(), None))
            } else {
                Ok((dest.to_path_buf(), Some(src_base.to_string())))
            }
        }
        Ok(_) => {
            if kind == Kind::Dir {
                return Err(format!(
                    "cannot copy a directory to a file: {dest_raw} is a file"
                ));
            }
            if dest_raw.ends_with('/') {
                return Err(format!("{dest_raw} is not a directory"));
            }
            split(dest)
        }
        Err(_) => {
            if dest_raw.ends_with('/') && kind != Kind::Dir {
                return Err(format!(
                    "the destination directory {dest_raw} must exist: create it first"
                ));
            }
            let (parent, name) = split(dest)?;
            if !parent.is_dir() {
                return Err(format!(
                    "the destination's parent directory {} does not exist",
                    parent.display()
                ));
            }
            Ok((parent, name))
        }
    }
}

fn split(dest: &Path) -> Result<(PathBuf, Option<String>), String> {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| format!("{} has no file name to copy to", dest.display()))?;
    let parent = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    Ok((parent.to_path_buf(), Some(name)))
}

/// `SRC/.`: a directory's contents, not the directory.
fn contents_only(raw: &str) -> bool {
    raw.ends_with("/.") || raw == "."
}

fn base_name(raw: &str) -> String {
    let p = Path::new(raw.trim_end_matches("/."));
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "/".into())
}

/// The source's kind, as the sending side sees it.
fn kind_of(path: &Path, follow: bool) -> std::io::Result<Kind> {
    let md = if follow {
        std::fs::metadata(path)?
    } else {
        std::fs::symlink_metadata(path)?
    };
    Ok(if md.is_dir() { Kind::Dir } else { Kind::Other })
}

fn line(r: &mut impl BufRead) -> Result<String, String> {
    let mut s = String::new();
    r.read_line(&mut s).map_err(|e| e.to_string())?;
    if s.is_empty() {
        return Err("the copy helper ended early".into());
    }
    Ok(s.trim_end_matches('\n').to_string())
}

/// Unpacks the tar read from `input` under `dir`, safely (no entry can
/// leave it), as a plain archive: no whiteouts, no directory replaced by a
/// file; `host`: landing on the host, so no set-id bits, file
/// capabilities or device nodes from the container.
fn unpack(input: impl Read, dir: &Path, host: bool) -> Result<(), String> {
    let opts = berth_image::layer::ApplyOptions {
        host_safe: host,
        ..berth_image::layer::ApplyOptions::ARCHIVE
    };
    berth_image::layer::apply_with(input, dir, None, opts)
        .map(|_| ())
        .map_err(|e| {
            format!(
                "unpacking into {}: {}",
                dir.display(),
                berth_runtime::container::chain(&e)
            )
        })
}

/// What the copy helper does in the container's root: the container's
/// side of one copy.
#[derive(Debug, Serialize, Deserialize)]
enum Job {
    /// Sends what `src` names as a tar stream (after its kind, then
    /// reading the name its top entry gets).
    Out {
        src: PathBuf,
        src_raw: String,
        container: String,
        follow: bool,
        owner: Option<(u32, u32)>,
    },
    /// Unpacks a tar stream where `dest` says (after saying where).
    In {
        dest: PathBuf,
        dest_raw: String,
        kind: Kind,
        contents: bool,
        base: String,
        from_stream: bool,
    },
}

/// Starts the copy helper (helper role `cp`), chrooted into the directory
/// `root` (an open fd, so that what it names cannot change between the
/// check and the chroot), to do `job`; returns our end of the socket it
/// talks over and the helper.
fn helper(
    eng: &Engine,
    root: &std::os::fd::OwnedFd,
    job: &Job,
) -> Result<(UnixStream, std::process::Child), EngineError> {
    use std::os::fd::AsFd;
    let (ours, theirs) = UnixStream::pair().map_err(|e| EngineError::io("socketpair", e))?;
    let child = crate::helper::spawn(
        "cp",
        &eng.paths,
        &[],
        std::process::Stdio::from(std::os::fd::OwnedFd::from(theirs)),
    )?;
    let mut msg = serde_json::to_vec(job).expect("a job serializes");
    msg.push(b'\n');
    berth_runtime::console::send_fd(&ours, root.as_fd(), &msg)
        .map_err(|e| EngineError::io("send the copy helper its job", e))?;
    Ok((ours, child))
}

/// The copy helper's life (helper role `cp`): its stdin is the socket; the
/// job and the root come first, then the conversation of the job.
pub(crate) fn helper_main(reporter: &mut crate::helper::Reporter) -> i32 {
    // This helper reports over the socket, not its stdout.
    drop(std::mem::replace(reporter, crate::helper::Reporter::none()));
    // SAFETY: fd 0 is the socket our parent gave us as stdin; only this
    // UnixStream owns it from here on.
    let sock = unsafe { UnixStream::from_raw_fd(0) };
    // Non-dumpable: no process of the container may attach to it.
    // SAFETY: prctl with constant arguments.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    let mut buf = vec![0u8; 64 * 1024];
    let res = berth_runtime::console::receive_fd(&sock, &mut buf)
        .map_err(|e| JobError::Other(format!("the copy helper's job: {e}")))
        .and_then(|(root, n)| {
            let job: Job = buf[..n]
                .strip_suffix(b"\n")
                .and_then(|j| serde_json::from_slice(j).ok())
                .ok_or_else(|| JobError::Other("the copy helper's job came incomplete".into()))?;
            rustix::process::fchdir(&root)
                .map_err(std::io::Error::from)
                .and_then(|()| std::os::unix::fs::chroot("."))
                .and_then(|()| std::env::set_current_dir("/"))
                .map_err(|e| JobError::Other(format!("entering the container's root: {e}")))?;
            drop(root);
            run_job(job, &sock)
        });
    match res {
        Ok(()) => 0,
        Err(e) => {
            // "N": the path is not there; "E": anything else.
            let line = match e {
                JobError::NotFound(m) => format!("N{m}\n"),
                JobError::Other(m) => format!("E{m}\n"),
            };
            let mut w = &sock;
            let _ = w.write_all(line.as_bytes());
            1
        }
    }
}

/// Why a copy helper's job failed: its kind crosses to the caller.
enum JobError {
    NotFound(String),
    Other(String),
}

impl From<String> for JobError {
    fn from(m: String) -> JobError {
        JobError::Other(m)
    }
}

fn run_job(job: Job, sock: &UnixStream) -> Result<(), JobError> {
    let mut w = sock;
    match job {
        Job::Out {
            src,
            src_raw,
            container,
            follow,
            owner,
        } => {
            let kind = kind_of(&src, follow).map_err(|_| {
                JobError::NotFound(format!(
                    "Could not find the file {src_raw} in container {container}"
                ))
            })?;
            w.write_all(if kind == Kind::Dir { b"d\n" } else { b"f\n" })
                .map_err(|e| e.to_string())?;
            let mut r = BufReader::new(sock);
            let top = line(&mut r)?;
            let top = top.strip_prefix('T').filter(|t| !t.is_empty());
            berth_image::diff::write_path_tar(&src, top, follow, owner, &mut w)
                .map_err(|e| JobError::Other(format!("reading {src_raw}: {e}")))
        }
        Job::In {
            dest,
            dest_raw,
            kind,
            contents,
            base,
            from_stream,
        } => {
            if from_stream && !dest.is_dir() {
                return Err(JobError::Other(format!(
                    "the destination {dest_raw} must be an existing directory to extract an archive into"
                )));
            }
            let (dir, top) = landing(&dest, &dest_raw, kind, contents, &base)?;
            w.write_all(format!("T{}\n", top.unwrap_or_default()).as_bytes())
                .map_err(|e| e.to_string())?;
            unpack(BufReader::new(sock), &dir, false)?;
            w.write_all(b"ok\n")
                .map_err(|e| JobError::Other(e.to_string()))
        }
    }
}

fn reap(mut child: std::process::Child) -> bool {
    child.wait().is_ok_and(|s| s.success())
}

/// Reads the helper's reply: "E<message>" is an error.
fn reply(r: &mut impl BufRead) -> Result<String, EngineError> {
    let l = line(r).map_err(EngineError::Invalid)?;
    if let Some(m) = l.strip_prefix('N') {
        return Err(EngineError::NoSuchPath(m.to_string()));
    }
    match l.strip_prefix('E') {
        Some(m) => Err(EngineError::Invalid(m.to_string())),
        None => Ok(l),
    }
}

/// `berth cp`: copies `src` to `dest`; one of them is in container `key`.
pub fn copy(
    eng: &mut Engine,
    key: &str,
    src: &Side,
    dest: &Side,
    opts: &CpOptions,
    streams: Streams<'_>,
) -> Result<(), EngineError> {
    let rec = eng.get(key)?;
    let layout = eng.layout(&rec.id);
    let running = matches!(rec.state, State::Running | State::Paused) && rec.pid > 0;
    let mounted_here = !running && mount_stopped(eng, &rec, &layout)?;
    let root = if running {
        // The runtime's record of init (pid and start time): a pid the
        // kernel has since given to another process is never entered.
        let rt = eng.paths.runtime();
        let saved = berth_runtime::state::Saved::load(&rt, &rec.id)
            .map_err(|e| EngineError::Runtime(e.into()))?;
        let fd = open_dir(&PathBuf::from(format!("/proc/{}/root", saved.pid)));
        if !saved.alive() {
            return Err(EngineError::Conflict(format!(
                "container {} is not running",
                rec.id
            )));
        }
        fd?
    } else {
        match open_dir(&layout.merged()) {
            Ok(fd) => fd,
            Err(e) => {
                if mounted_here {
                    let _ = crate::rootfs::unmount(&layout);
                }
                return Err(e);
            }
        }
    };
    let result = match (src, dest) {
        (Side::Container(s), d) => copy_out(eng, &root, &rec.name, s, d, opts, streams.output),
        (s, Side::Container(d)) => copy_in(eng, &root, s, d, opts, streams.input),
        _ => Err(EngineError::Invalid(
            "copying between two containers or two host paths is not supported: one side must be CONTAINER:PATH".into(),
        )),
    };
    if mounted_here {
        let _ = crate::rootfs::unmount(&layout);
    }
    result
}

/// Mounts a stopped container's overlay for a copy or an export, unless
/// it is mounted already; true if this call mounted it (and the caller
/// unmounts it).
fn mount_stopped(
    eng: &Engine,
    rec: &crate::db::Record,
    layout: &crate::rootfs::Layout,
) -> Result<bool, EngineError> {
    if crate::rootfs::is_mounted(layout) {
        return Ok(false);
    }
    crate::rootfs::prepare(
        layout,
        &crate::rootfs::EtcFiles::of(
            &rec.config,
            rec.config.hostname.as_deref().unwrap_or(&rec.id[..12]),
        ),
    )?;
    let lowers = eng.image_lowers(&rec.image_id)?;
    crate::rootfs::mount(layout, &lowers, false)?;
    Ok(true)
}

/// `berth export`: the container's root filesystem (its image's layers
/// and what it changed; not its volumes, binds or the kernel's file
/// systems) as a tar stream on `out`, owners kept. Running or stopped.
pub fn export(eng: &mut Engine, key: &str, out: &mut dyn Write) -> Result<(), EngineError> {
    let rec = eng.get(key)?;
    let layout = eng.layout(&rec.id);
    // The overlay is mounted on the host while the container runs (its
    // own mounts are in its namespace); a stopped one's is mounted for
    // the export.
    let mounted_here = mount_stopped(eng, &rec, &layout)?;
    let result = open_dir(&layout.merged()).and_then(|root| {
        let job = Job::Out {
            src: PathBuf::from("/"),
            src_raw: "/".into(),
            container: rec.name.clone(),
            follow: false,
            owner: None,
        };
        let (sock, pid) = helper(eng, &root, &job)?;
        let mut r = BufReader::new(sock.try_clone().map_err(|e| EngineError::io("socket", e))?);
        let mut w = sock;
        // The kind, then "no top entry": the root's contents.
        if let Err(e) = reply(&mut r) {
            reap(pid);
            return Err(e);
        }
        let copied = w
            .write_all(b"T\n")
            .and_then(|()| std::io::copy(&mut r, out))
            .and_then(|_| out.flush());
        let _ = w.shutdown(std::net::Shutdown::Both);
        let ok = reap(pid);
        copied.map_err(|e| EngineError::io("write the export", e))?;
        if !ok {
            return Err(EngineError::Invalid(format!(
                "exporting container {} failed: its files could not all be read",
                rec.name
            )));
        }
        Ok(())
    });
    if mounted_here {
        let _ = crate::rootfs::unmount(&layout);
    }
    result
}

fn open_dir(p: &Path) -> Result<std::os::fd::OwnedFd, EngineError> {
    rustix::fs::open(
        p,
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| EngineError::io(format!("open {}", p.display()), e.into()))
}

fn container_path(p: &str) -> PathBuf {
    Path::new("/").join(p.trim_start_matches('/'))
}

fn copy_out(
    eng: &Engine,
    root: &std::os::fd::OwnedFd,
    name: &str,
    src: &str,
    dest: &Side,
    opts: &CpOptions,
    out: &mut dyn Write,
) -> Result<(), EngineError> {
    let job = Job::Out {
        src: container_path(src),
        src_raw: src.to_string(),
        container: name.to_string(),
        follow: opts.follow,
        owner: Some((
            rustix::process::geteuid().as_raw(),
            rustix::process::getegid().as_raw(),
        )),
    };
    let (sock, pid) = helper(eng, root, &job)?;
    let mut r = BufReader::new(sock.try_clone().map_err(|e| EngineError::io("socket", e))?);
    let mut w = sock;
    let kind = match reply(&mut r) {
        Ok(k) if k == "d" => Kind::Dir,
        Ok(_) => Kind::Other,
        Err(e) => {
            reap(pid);
            return Err(e);
        }
    };
    let res = match dest {
        Side::Stream => {
            let _ = w.write_all(format!("T{}\n", base_name(src)).as_bytes());
            std::io::copy(&mut r, out)
                .and_then(|_| out.flush())
                .map_err(|e| EngineError::io("write the archive", e))
        }
        Side::Host(d) => {
            let d_raw = d.to_string_lossy().into_owned();
            match landing(d, &d_raw, kind, contents_only(src), &base_name(src)) {
                Ok((dir, top)) => {
                    let _ = w.write_all(format!("T{}\n", top.unwrap_or_default()).as_bytes());
                    unpack(&mut r, &dir, true).map_err(EngineError::Invalid)
                }
                Err(m) => Err(EngineError::Invalid(m)),
            }
        }
        Side::Container(_) => unreachable!("checked by the caller"),
    };
    // The helper may still wait for a reply: end the conversation.
    let _ = w.shutdown(std::net::Shutdown::Both);
    let ok = reap(pid);
    res?;
    if !ok {
        return Err(EngineError::Invalid(format!("copying {src} failed")));
    }
    Ok(())
}

fn copy_in(
    eng: &Engine,
    root: &std::os::fd::OwnedFd,
    src: &Side,
    dest: &str,
    opts: &CpOptions,
    input: &mut dyn std::io::Read,
) -> Result<(), EngineError> {
    let (kind, src_desc) = match src {
        Side::Host(p) => {
            let k = kind_of(p, opts.follow)
                .map_err(|e| EngineError::io(format!("stat {}", p.display()), e))?;
            (k, p.to_string_lossy().into_owned())
        }
        Side::Stream => (Kind::Dir, "-".to_string()),
        Side::Container(_) => unreachable!("checked by the caller"),
    };
    let from_stream = matches!(src, Side::Stream);
    let job = Job::In {
        dest: container_path(dest),
        dest_raw: dest.to_string(),
        kind,
        contents: from_stream || contents_only(&src_desc),
        base: base_name(&src_desc),
        from_stream,
    };
    let (sock, pid) = helper(eng, root, &job)?;
    let mut r = BufReader::new(sock.try_clone().map_err(|e| EngineError::io("socket", e))?);
    let mut w = sock;
    let top = match reply(&mut r) {
        Ok(t) => t.strip_prefix('T').unwrap_or_default().to_string(),
        Err(e) => {
            reap(pid);
            return Err(e);
        }
    };
    let sent = match src {
        Side::Host(p) => {
            let owner = if opts.archive { None } else { Some((0, 0)) };
            let top = (!top.is_empty()).then_some(top.as_str());
            berth_image::diff::write_path_tar(p, top, opts.follow, owner, &mut w)
                .map_err(|e| EngineError::io(format!("read {}", p.display()), e))
        }
        _ => std::io::copy(input, &mut w)
            .map(|_| ())
            .map_err(|e| EngineError::io("read the archive", e)),
    };
    let _ = w.shutdown(std::net::Shutdown::Write);
    let done = reply(&mut r);
    reap(pid);
    sent?;
    done.map(|_| ())
}
