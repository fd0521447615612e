//! One process of a build step (a Dockerfile RUN): a container over an
//! image's layers with a fresh upper directory, run in the foreground with
//! Docker's defaults (capabilities, seccomp, masked paths), its output
//! merged and handed to the caller as it comes. No container record is
//! made: the builder owns the directory and keeps the upper dir as the
//! step's layer.

use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use crate::config::{ContainerConfig, ImageConfig};
use crate::rootfs::Layout;
use crate::{EngineError, Paths};

/// What to run.
pub struct Step<'a> {
    /// The step's directory (`ROOT/builds/ID`): upper, work and merged are
    /// made in it.
    pub dir: &'a Path,
    /// The image's layers, top first.
    pub lowers: &'a [PathBuf],
    pub args: &'a [String],
    /// The environment (the stage's ENV and the build args in scope).
    pub env: &'a [String],
    pub user: &'a str,
    pub workdir: &'a str,
    /// "host", "none" or "" (a private network namespace with loopback).
    pub network: &'a str,
    /// Bind and tmpfs mounts (cache, secret, bind and tmpfs RUN mounts).
    pub mounts: Vec<crate::options::Mount>,
    /// `--tmpfs PATH[:OPTIONS]` values.
    pub tmpfs: Vec<String>,
    /// Extra security options (`seccomp=unconfined` for --security=insecure).
    pub privileged: bool,
}

/// Runs the step; `output` gets stdout and stderr as they come. Returns the
/// exit code. The overlay is unmounted before this returns; the changes are
/// in `Layout::upper` of `dir`.
pub fn run(
    paths: &Paths,
    step: &Step<'_>,
    output: &mut dyn FnMut(&[u8]),
) -> Result<i32, EngineError> {
    let layout = Layout {
        dir: step.dir.to_path_buf(),
    };
    let id = step
        .dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(crate::new_id);
    let hostname = "buildkitsandbox";
    crate::rootfs::prepare(
        &layout,
        &crate::rootfs::EtcFiles::plain(hostname, step.network == "host"),
    )?;
    crate::rootfs::mount(&layout, step.lowers, true)?;
    // Mount points the runtime will make that the image lacks: removed
    // from the layer afterwards, as BuildKit removes its mount stubs.
    let stubs = missing_targets(&layout.merged(), step);
    let result = run_mounted(paths, step, &layout, &id, hostname, output);
    let unmounted = crate::rootfs::unmount(&layout);
    let code = result?;
    unmounted?;
    remove_stubs(&layout.upper(), &stubs);
    Ok(code)
}

fn mount_targets(step: &Step<'_>) -> Vec<String> {
    let mut out = Vec::new();
    for m in &step.mounts {
        out.push(m.target.clone());
    }
    for t in &step.tmpfs {
        out.push(t.split_once(':').map_or(t.as_str(), |(d, _)| d).to_string());
    }
    out
}

/// The mount targets, and their ancestors, missing from the image:
/// relative paths, deepest first.
fn missing_targets(merged: &Path, step: &Step<'_>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for t in mount_targets(step) {
        let comps: Vec<&str> = t
            .split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .collect();
        for n in 1..=comps.len() {
            let rel = comps[..n].join("/");
            if crate::users::open_dir_in_root(merged, &rel).is_none()
                && std::fs::symlink_metadata(merged.join(&rel)).is_err()
                && !out.contains(&rel)
            {
                out.push(rel);
            }
        }
    }
    out.sort_by_key(|r| std::cmp::Reverse(r.matches('/').count()));
    out
}

/// Removes what is left of mount stubs in the upper dir: empty
/// directories and empty files only, never through a symlink.
fn remove_stubs(upper: &Path, stubs: &[String]) {
    use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags};
    let Ok(root) = rustix::fs::open(
        upper,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    ) else {
        return;
    };
    for rel in stubs {
        let (parent, name) = match rel.rsplit_once('/') {
            Some((p, n)) => (p, n),
            None => (".", rel.as_str()),
        };
        let Ok(dir) = inroot::openat2_retry(
            &root,
            parent,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_SYMLINKS,
        ) else {
            continue;
        };
        let Ok(st) = rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) else {
            continue;
        };
        match rustix::fs::FileType::from_raw_mode(st.st_mode) {
            rustix::fs::FileType::Directory => {
                let _ = rustix::fs::unlinkat(&dir, name, AtFlags::REMOVEDIR);
            }
            rustix::fs::FileType::RegularFile if st.st_size == 0 => {
                let _ = rustix::fs::unlinkat(&dir, name, AtFlags::empty());
            }
            _ => {}
        }
    }
}

fn run_mounted(
    paths: &Paths,
    step: &Step<'_>,
    layout: &Layout,
    id: &str,
    hostname: &str,
    output: &mut dyn FnMut(&[u8]),
) -> Result<i32, EngineError> {
    let image = ImageConfig {
        env: step.env.to_vec(),
        working_dir: step.workdir.to_string(),
        user: step.user.to_string(),
        ..ImageConfig::default()
    };
    let opts = ContainerConfig {
        cmd: step.args.to_vec(),
        entrypoint: Some(vec![String::new()]),
        network: step.network.to_string(),
        mounts: step.mounts.clone(),
        tmpfs: step.tmpfs.clone(),
        privileged: step.privileged,
        ..ContainerConfig::default()
    };
    let user = crate::users::resolve(&layout.merged(), step.user)?;
    let spec = crate::spec::derive(
        &opts,
        &crate::spec::Inputs {
            id,
            hostname,
            rootfs: &layout.merged(),
            dir: &layout.dir,
            image: &image,
            user: &user,
            store_root: &paths.root,
            join_net: None,
        },
    )?;
    // 0600: it holds the step's environment, secrets from env= included.
    let cfg = layout.dir.join("config.json");
    {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&cfg)
            .and_then(|mut f| f.write_all(&serde_json::to_vec(&spec).expect("serializes")))
            .map_err(|e| EngineError::io(format!("write {}", cfg.display()), e))?;
    }
    // The container is started by a helper (the berth binary run again,
    // helper role `step`): the runtime clones init from the process that
    // calls it, which must be single-threaded, and a builder runs stages
    // on threads. The helper's stdin is the output pipe's write end, which
    // becomes the container's stdout and stderr; it exits with the
    // container's exit code.
    let (out_r, out_w) = crate::io::pipe()?;
    let mut child = crate::helper::spawn(
        "step",
        paths,
        &[std::ffi::OsStr::new(id), layout.dir.as_os_str()],
        std::process::Stdio::from(out_w),
    )?;
    let mut pipe = std::fs::File::from(out_r);
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match pipe.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => output(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    crate::helper::report(&mut child, "the build step's helper")?;
    let status = child
        .wait()
        .map_err(|e| EngineError::io("wait for the build step's helper", e))?;
    Ok(status.code().unwrap_or(255))
}

/// The step helper's life (helper role `step`): its stdin is where the
/// container's output goes. Creates and starts the container of the
/// bundle `bundle`, reports, waits for it, removes it, and exits with its
/// exit code. It dies with its caller (the builder), and the container
/// with it.
pub(crate) fn helper_main(
    paths: &Paths,
    id: &str,
    bundle: &str,
    reporter: &mut crate::helper::Reporter,
) -> i32 {
    // SAFETY: prctl with constant arguments: SIGKILL when the parent goes.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
    if rustix::process::getppid().is_none() {
        return 1;
    }
    let mut run = || -> Result<i32, EngineError> {
        let null = crate::io::dev_null()?;
        // The output pipe moved off fd 0, which the container's stdin
        // (/dev/null) takes.
        let out = rustix::io::fcntl_dupfd_cloexec(
            // SAFETY: fd 0 is open (our caller gave it as stdin) for as
            // long as this borrow is used.
            unsafe { std::os::fd::BorrowedFd::borrow_raw(0) },
            3,
        )
        .map_err(|e| EngineError::io("the step's output pipe", e.into()))?;
        crate::helper::null_stdio(&[0]);
        let rt = paths.runtime();
        let _ = berth_runtime::container::delete(&rt, id, true);
        let create = berth_runtime::container::CreateOptions {
            id: id.to_string(),
            bundle: PathBuf::from(bundle),
            root: rt.clone(),
            pid_file: None,
            console_socket: None,
            no_pivot: false,
            preserve_fds: 0,
            stdio: Some([null.as_raw_fd(), out.as_raw_fd(), out.as_raw_fd()]),
            console_fd: None,
            reaper: false,
            loopback: true,
            die_with_parent: true,
        };
        let pid = berth_runtime::container::create(&create).map_err(crate::monitor::exec_error)?;
        drop(null);
        // Only the container writes the output from here: its end closes
        // when the container is done.
        drop(out);
        if let Err(e) = berth_runtime::container::start(&rt, id) {
            let _ = berth_runtime::container::delete(&rt, id, true);
            return Err(e.into());
        }
        reporter.ok();
        let mut status = 0;
        // SAFETY: pid is our child (the runtime cloned it); status is a
        // valid out-parameter.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        let code = if r == pid {
            berth_runtime::signal::exit_code(status)
        } else {
            255
        };
        let _ = berth_runtime::container::delete(&rt, id, true);
        Ok(code)
    };
    let result = run();
    match result {
        Ok(code) => code,
        Err(e) => {
            reporter.fail(&e);
            255
        }
    }
}
