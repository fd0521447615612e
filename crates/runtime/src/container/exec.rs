//! `exec`: another process in a running container, joining its
//! namespaces and cgroups, through the same credentials path as init.

use std::fs;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::Path;

use super::clone::{clone_init, wait_code, CloneError};
use super::error::{chain, sys, ContainerError, Failure};
use super::init::{become_process, reset_signals};
use super::options::ExecOptions;
use super::saved::{cgroup_of, saved_spec, write_atomic};
use super::sync::{Failed, Message};
use crate::state::{Saved, Status};

/// The container's process as `exec` starts from it: the saved config's
/// process (env, user, capabilities...), for the caller to adjust.
pub fn exec_base(root: &Path, id: &str) -> Result<oci_spec::runtime::Process, ContainerError> {
    Saved::load(root, id)?;
    let spec = saved_spec(root, id)
        .ok_or_else(|| ContainerError::Init(format!("container {id:?} has no saved config")))?;
    Ok(spec.process().clone().unwrap_or_default())
}

/// Runs another process in a running container: it joins every namespace
/// and the cgroup of the container's init, gets the container's seccomp
/// filter, and the process's credentials and capabilities. Returns its exit
/// code, or 0 when detached.
pub fn exec(opts: &ExecOptions) -> Result<i32, ContainerError> {
    let pid = spawn(opts)?;
    if opts.detach {
        return Ok(0);
    }
    Ok(wait_code(pid))
}

/// `exec` up to the point where the process runs: returns its pid (a
/// child of the caller, which must wait for it). The caller joins the
/// container's pid namespace for its future children.
pub fn spawn(opts: &ExecOptions) -> Result<i32, ContainerError> {
    let saved = Saved::load(&opts.root, &opts.id)?;
    let status = saved.status(&opts.root);
    if !matches!(status, Status::Running | Status::Created) {
        return Err(ContainerError::WrongState {
            id: opts.id.clone(),
            status,
            what: "cannot exec in a container that is not running",
        });
    }
    let spec = saved_spec(&opts.root, &opts.id).ok_or_else(|| {
        ContainerError::Init(format!("container {:?} has no saved config", opts.id))
    })?;
    let process = &opts.process;
    if process.args().as_ref().is_none_or(Vec::is_empty) {
        return Err(ContainerError::Unsupported(
            "exec needs a command to run".into(),
        ));
    }
    let terminal = process.terminal().unwrap_or(false);
    if terminal && opts.console_socket.is_none() && opts.console_fd.is_none() {
        return Err(ContainerError::Unsupported(
            "--tty needs --console-socket (berth-runc has no terminal of its own to lend)".into(),
        ));
    }
    let filter = match spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
        Some(sc) => Some(crate::seccomp::compile(sc)?),
        None => None,
    };
    // Init's namespaces, opened now (paths under /proc change after the
    // mount namespace is joined). Only those that differ from ours.
    let mut namespaces = Vec::new();
    for (name, flag) in [
        ("cgroup", libc::CLONE_NEWCGROUP),
        ("ipc", libc::CLONE_NEWIPC),
        ("uts", libc::CLONE_NEWUTS),
        ("net", libc::CLONE_NEWNET),
        ("pid", libc::CLONE_NEWPID),
        ("mnt", libc::CLONE_NEWNS),
    ] {
        let theirs = format!("/proc/{}/ns/{name}", saved.pid);
        let same =
            fs::read_link(&theirs).ok() == fs::read_link(format!("/proc/self/ns/{name}")).ok();
        if same {
            continue;
        }
        let f = fs::File::open(&theirs).map_err(sys(format!("cannot open {theirs}")))?;
        namespaces.push((flag, f));
    }
    if !saved.alive() {
        return Err(ContainerError::WrongState {
            id: opts.id.clone(),
            status: Status::Stopped,
            what: "cannot exec in a container that is not running",
        });
    }
    let host_exe = fs::metadata("/proc/self/exe").ok().map(|m| {
        use std::os::unix::fs::MetadataExt;
        (m.dev(), m.ino())
    });
    // The pid namespace applies to children: join it here, before the fork.
    for (flag, f) in &namespaces {
        if *flag == libc::CLONE_NEWPID {
            // SAFETY: f is an open namespace fd.
            if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWPID) } != 0 {
                return Err(sys("cannot join the pid namespace")(
                    io::Error::last_os_error(),
                ));
            }
        }
    }
    let (mut parent_sock, mut child_sock) =
        UnixStream::pair().map_err(sys("cannot create the sync socket"))?;
    // As init: the process joins the container's cgroups itself (v1) or
    // is born in them (v2), without the kernel's global migration lock.
    let cg = cgroup_of(&saved)?;
    let mut self_join = cg.prepare_self_join().ok().flatten();
    // The berth-runc process is single-threaded; the child only joins the
    // container and execs or exits.
    let pid = match clone_init(0, self_join.as_ref().and_then(|j| j.v2_dir.as_ref())) {
        Ok(p) => p,
        Err(CloneError::IntoCgroup) => {
            self_join = None;
            clone_init(0, None).map_err(|e| match e {
                CloneError::Failed(e) => sys("cannot fork")(e),
                CloneError::IntoCgroup => {
                    sys("cannot fork")(io::Error::from_raw_os_error(libc::ENOSYS))
                }
            })?
        }
        Err(CloneError::Failed(e)) => return Err(sys("cannot fork")(e)),
    };
    if pid == 0 {
        drop(parent_sock);
        if let Some(Err(e)) = self_join.as_ref().map(|j| j.join_self()) {
            let failed = Failed::from(format!("joining the container's cgroups: {e}"));
            let _ = Message::Failed(failed).send(&mut child_sock);
            // SAFETY: see create().
            unsafe { libc::_exit(126) };
        }
        let failed = exec_child(
            opts,
            &namespaces,
            filter.as_ref(),
            host_exe,
            &mut child_sock,
        );
        let code = if failed.kind == Failure::NotFound {
            127
        } else {
            126
        };
        let _ = Message::Failed(failed).send(&mut child_sock);
        // SAFETY: see create().
        unsafe { libc::_exit(code) };
    }
    drop(child_sock);
    let fail = |pid: i32, e: ContainerError| {
        // SAFETY: kill and reap our own child.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
        Err(e)
    };
    if self_join.is_none() {
        if let Err(e) = cg.apply(pid) {
            return fail(pid, e.into());
        }
    }
    drop(self_join);
    if let Err(e) = Message::Go.send(&mut parent_sock) {
        return fail(pid, sys("cannot signal the exec process")(e));
    }
    // The socket is close-on-exec: EOF without a message means execve
    // succeeded.
    let said = Message::recv(&mut parent_sock);
    let exe = opts
        .process
        .args()
        .iter()
        .flatten()
        .next()
        .cloned()
        .unwrap_or_default();
    let failed = match said {
        Ok(Some(Message::Failed(f))) => Some(f),
        // The exec stub's own execve failed.
        Ok(Some(Message::StubExecFailed(errno))) => Some(Failed {
            kind: Failure::of_errno(errno),
            msg: crate::confine::stub_message(errno, &exe),
        }),
        _ => None,
    };
    if let Some(f) = failed {
        let mut status = 0;
        // SAFETY: reap our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        return Err(f.into_error(true));
    }
    if let Some(p) = &opts.pid_file {
        write_atomic(p, pid.to_string().as_bytes())
            .map_err(sys(format!("cannot write pid file {}", p.display())))?;
    }
    Ok(pid)
}

/// The exec'd process before execve. Returns an error message on failure.
pub(super) fn exec_child(
    opts: &ExecOptions,
    namespaces: &[(libc::c_int, fs::File)],
    filter: Option<&crate::seccomp::Filter>,
    host_exe: Option<(u64, u64)>,
    sock: &mut UnixStream,
) -> Failed {
    reset_signals();
    // SAFETY: prctl with constant arguments.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    if !matches!(Message::recv(sock), Ok(Some(Message::Go))) {
        // SAFETY: see create().
        unsafe { libc::_exit(1) };
    }
    let process = &opts.process;
    if let Some(fds) = opts.stdio {
        for (target, fd) in fds.into_iter().enumerate() {
            // SAFETY: dup2 onto 0..2 of this single-threaded child.
            if fd != target as i32 && unsafe { libc::dup2(fd, target as i32) } < 0 {
                return Failed::from(format!("setting up stdio: {}", io::Error::last_os_error()));
            }
        }
    }
    let console = match process.terminal().unwrap_or(false) {
        true => match crate::console::open(opts.console_socket.as_deref(), opts.console_fd) {
            Ok(c) => Some(c),
            Err(e) => return Failed::from(format!("console: {e}")),
        },
        false => None,
    };
    // The mount namespace last: it changes what paths mean.
    for (flag, f) in namespaces
        .iter()
        .filter(|(f, _)| *f != libc::CLONE_NEWPID && *f != libc::CLONE_NEWNS)
    {
        // SAFETY: f is an open namespace fd.
        if unsafe { libc::setns(f.as_raw_fd(), *flag) } != 0 {
            return Failed::from(format!(
                "cannot join namespace: {}",
                io::Error::last_os_error()
            ));
        }
    }
    for (_, f) in namespaces.iter().filter(|(f, _)| *f == libc::CLONE_NEWNS) {
        // SAFETY: as above; setns into a mount namespace also moves our root
        // and cwd to that namespace's root.
        if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNS) } != 0 {
            return Failed::from(format!(
                "cannot join the mount namespace: {}",
                io::Error::last_os_error()
            ));
        }
    }
    // Only stdio, the preserved fds, the sync socket and the console
    // socket stay open from here: nothing of the caller's (CVE-2024-21626
    // class).
    let mut sockets = vec![sock.as_raw_fd()];
    sockets.extend(console.as_ref().map(|c| c.as_raw_fd()));
    crate::confine::close_inherited(opts.preserve_fds, &sockets);
    if let Some(c) = console {
        let size = process
            .console_size()
            .as_ref()
            .map(|b| (b.height() as u16, b.width() as u16));
        if let Err(e) = crate::console::setup(&c, size) {
            return Failed::from(format!("setting up the terminal: {e}"));
        }
    }
    let (exe, args, env, nnp, stub) =
        match become_process(process, filter, opts.preserve_fds, host_exe) {
            Ok(v) => v,
            Err(failed) => return failed,
        };
    if let (Some(f), true) = (filter, nnp) {
        if let Err(e) = f.load() {
            return Failed::from(format!("loading the seccomp filter: {}", chain(&e)));
        }
    }
    let e = crate::confine::exec_through(
        &stub,
        crate::confine::StubFd::Report(sock.as_raw_fd()),
        &exe,
        &args,
        &env,
    );
    let msg = if e.raw_os_error() == Some(libc::ENOENT) {
        format!("exec {exe:?}: no such file or directory")
    } else {
        format!("exec {exe:?}: {e}")
    };
    Failed {
        kind: e.raw_os_error().map_or(Failure::Setup, Failure::of_errno),
        msg,
    }
}
