//! The container lifecycle: create, start, kill, delete, run.
//!
//! `create` clones the container's init directly into its new namespaces
//! (one clone, no re-exec of the runtime binary, so no host binary is ever
//! executed inside the container). Init prepares the rootfs, pivots, drops
//! privileges, reports "ready" over a socketpair, then blocks opening the
//! exec fifo for writing; `start` opens it for reading, which releases init
//! into `execve` of the container's process.

mod clone;
mod error;
mod exec;
mod init;
mod options;
mod reaper;
mod saved;
mod sync;

pub use error::{chain, ContainerError, Failure};
pub use exec::{exec, exec_base, spawn};
pub use options::{CreateOptions, ExecOptions};

use std::ffi::CString;
use std::fs;
use std::io::{self, Read};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::spec::{self, SpecError};
use crate::state::{self, Saved, StateError, Status};
use clone::{clone_init, ns_flag, setns_path, wait_code, write_id_maps, CloneError};
use error::sys;
use init::{init, InitPlan};
use saved::{cgroup_of, creating_state, saved_spec, write_atomic};
use sync::Message;

/// Creates container `opts.id` from its bundle; returns init's pid. On
/// error nothing is left behind.
pub fn create(opts: &CreateOptions) -> Result<i32, ContainerError> {
    let spec = spec::load(&opts.bundle)?;
    let dir = state::dir(&opts.root, &opts.id)?;
    fs::create_dir_all(&opts.root)
        .map_err(sys(format!("cannot create {}", opts.root.display())))?;
    match fs::create_dir(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            return Err(StateError::Exists(opts.id.clone()).into())
        }
        Err(e) => return Err(sys(format!("cannot create {}", dir.display()))(e)),
    }
    let result = create_in(&spec, opts, &dir);
    if result.is_err() {
        let _ = fs::remove_dir_all(&dir);
    }
    result
}

fn create_in(spec: &Spec, opts: &CreateOptions, dir: &Path) -> Result<i32, ContainerError> {
    let terminal = spec
        .process()
        .as_ref()
        .is_some_and(|p| p.terminal().unwrap_or(false));
    if terminal && opts.console_socket.is_none() && opts.console_fd.is_none() {
        return Err(ContainerError::Unsupported(
            "process.terminal is set but no --console-socket was given: pass one, or set terminal to false".into(),
        ));
    }
    let fifo = dir.join("exec.fifo");
    let cfifo = CString::new(fifo.to_string_lossy().as_bytes()).expect("no NUL in path");
    // SAFETY: cfifo is a valid NUL-terminated path.
    if unsafe { libc::mkfifo(cfifo.as_ptr(), 0o622) } != 0 {
        return Err(sys("cannot create the exec fifo")(
            io::Error::last_os_error(),
        ));
    }
    // Init opens it for writing after switching to the process's user, who
    // may not be root (and the umask must not take the write bits away).
    // SAFETY: cfifo is a valid path.
    if unsafe { libc::chmod(cfifo.as_ptr(), 0o622) } != 0 {
        return Err(sys("cannot chmod the exec fifo")(io::Error::last_os_error()));
    }
    let (parent_sock, child_sock) =
        UnixStream::pair().map_err(sys("cannot create the sync socket"))?;

    let mut flags: libc::c_int = 0;
    let mut join: Vec<(LinuxNamespaceType, PathBuf)> = Vec::new();
    for ns in spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .into_iter()
        .flatten()
    {
        match ns.path() {
            Some(p) => join.push((ns.typ(), p.clone())),
            None => flags |= ns_flag(ns.typ()),
        }
    }
    // A cgroup namespace is rooted at the cgroup of the process that makes
    // it: init unshares it itself, once it is in the container's cgroup.
    flags &= !libc::CLONE_NEWCGROUP;
    if flags & libc::CLONE_NEWUSER != 0 {
        let linux = spec.linux().as_ref();
        let has =
            |m: Option<&Vec<oci_spec::runtime::LinuxIdMapping>>| m.is_some_and(|v| !v.is_empty());
        if !has(linux.and_then(|l| l.uid_mappings().as_ref()))
            || !has(linux.and_then(|l| l.gid_mappings().as_ref()))
        {
            return Err(SpecError::Invalid {
                field: "linux.uidMappings".into(),
                what: "a new user namespace needs uidMappings and gidMappings".into(),
            }
            .into());
        }
    }
    // A pid namespace to join must be entered before the clone: setns for
    // pid namespaces applies to children.
    for (t, p) in &join {
        if *t == LinuxNamespaceType::Pid {
            setns_path(p, libc::CLONE_NEWPID)?;
        }
    }
    let rootfs = spec
        .root()
        .as_ref()
        .map(|r| r.path().clone())
        .unwrap_or_default();
    // Compiled once, here, so a bad profile fails before anything starts.
    let filter = match spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
        Some(sc) => {
            let f = crate::seccomp::compile(sc)?;
            if f.needs_listener() {
                return Err(ContainerError::Unsupported(
                    "seccomp SCMP_ACT_NOTIFY (listenerPath) is not supported yet".into(),
                ));
            }
            Some(f)
        }
        None => None,
    };

    // The cgroup manager is made before the clone, so init knows its cgroup
    // directories (for a cgroup mount) without waiting for the parent to
    // move it there.
    let cgroups_path = spec.linux().as_ref().and_then(|l| l.cgroups_path().clone());
    let cg = crate::cgroups::manager(cgroups_path.as_deref(), &opts.id)?;
    let cgroup_dirs = cg.container_dirs();
    // The cgroups are made before the clone so that init joins them itself
    // (v1) or is born in them (v2): no global migration lock on the way.
    let mut self_join = cg.prepare_self_join()?;

    let pid = match clone_init(flags, self_join.as_ref().and_then(|j| j.v2_dir.as_ref())) {
        Ok(p) => p,
        Err(CloneError::IntoCgroup) => {
            // No clone3 or no CLONE_INTO_CGROUP here: a plain clone, and
            // the parent moves init in (`apply`).
            self_join = None;
            match clone_init(flags, None) {
                Ok(p) => p,
                Err(e) => {
                    let e = match e {
                        CloneError::Failed(e) => e,
                        CloneError::IntoCgroup => io::Error::from_raw_os_error(libc::ENOSYS),
                    };
                    let _ = cg.destroy();
                    return Err(sys("cannot clone the container init")(e));
                }
            }
        }
        Err(CloneError::Failed(e)) => {
            let _ = cg.destroy();
            return Err(sys("cannot clone the container init")(e));
        }
    };
    if pid == 0 {
        drop(parent_sock);
        let plan = InitPlan {
            join: &join,
            fifo: &fifo,
            rootfs: &rootfs,
            filter: filter.as_ref(),
            cgroup_dirs: &cgroup_dirs,
            self_join: self_join.as_ref(),
        };
        let code = match init(spec, opts, &plan, child_sock) {
            Ok(never) => match never {},
            Err((mut sock, failed)) => {
                let _ = Message::Failed(failed).send(&mut sock);
                1
            }
        };
        // SAFETY: _exit ends the child without running the parent's
        // destructors or atexit handlers a second time.
        unsafe { libc::_exit(code) };
    }
    drop(child_sock);
    let joined = self_join.is_some();
    drop(self_join);
    let cgroups = Cgroups {
        manager: cg.as_ref(),
        joined,
    };
    match parent_side(spec, opts, dir, pid, &rootfs, cgroups, parent_sock) {
        Ok(()) => Ok(pid),
        Err(e) => {
            // SAFETY: plain syscalls on the child we just created.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, std::ptr::null_mut(), 0);
            }
            Err(e)
        }
    }
}

/// The container's cgroups as the parent sees them: whether init has
/// joined them itself.
struct Cgroups<'a> {
    manager: &'a dyn crate::cgroups::CgroupManager,
    joined: bool,
}

/// The parent's half of create. Init is told to go on ('G') as soon as its
/// user namespace has its id maps, and gets on with its rootfs while the
/// parent writes its cgroup limits; init has moved itself into its
/// cgroups (or, where it cannot, the parent moves it, and the first v1
/// `cgroup.procs` write waits for an RCU grace period); 'C' then tells
/// init that its cgroups are ready.
fn parent_side(
    spec: &Spec,
    opts: &CreateOptions,
    dir: &Path,
    pid: i32,
    rootfs: &Path,
    cgroups: Cgroups<'_>,
    mut sock: UnixStream,
) -> Result<(), ContainerError> {
    let cg = cgroups.manager;
    // A new user namespace gets its id maps before init goes on.
    let new_userns = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|v| {
            v.iter()
                .any(|n| n.typ() == LinuxNamespaceType::User && n.path().is_none())
        });
    if new_userns {
        if let Err(e) = write_id_maps(spec, pid) {
            // SAFETY: kill and reap our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, std::ptr::null_mut(), 0);
            }
            let _ = cg.destroy();
            return Err(e);
        }
    }
    if Message::Go.send(&mut sock).is_err() {
        // Init is gone: its own message says why.
        let said = Message::recv(&mut sock);
        // SAFETY: reap our own child.
        unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
        let _ = cg.destroy();
        return Err(match said {
            Ok(Some(Message::Failed(f))) if !f.msg.is_empty() => f.into_error(false),
            _ => ContainerError::Init("init exited before it was ready".into()),
        });
    }
    let cgroups_path = spec.linux().as_ref().and_then(|l| l.cgroups_path().clone());
    let resources = with_default_devices(spec);
    let join = || {
        if cgroups.joined {
            Ok(())
        } else {
            cg.apply(pid)
        }
    };
    let applied = join().and_then(|()| match &resources {
        Some(r) => cg.set(r),
        None => Ok(()),
    });
    if let Err(e) = applied {
        // SAFETY: kill and reap our own child before removing its cgroup.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
        let _ = cg.destroy();
        return Err(e.into());
    }
    // If init has failed meanwhile, this write fails and parent_wait reads
    // its error.
    let _ = Message::CgroupsSet.send(&mut sock);
    let result = parent_wait(spec, opts, dir, pid, rootfs, cgroups_path, sock);
    if result.is_err() {
        // SAFETY: as above.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
        let _ = cg.destroy();
    }
    result
}

/// The config's resources with the default devices (and the config's own
/// devices) allowed after its rules, as runc does: a config that denies all
/// devices still gets a working /dev/null, /dev/tty, ptys...
fn with_default_devices(spec: &Spec) -> Option<oci_spec::runtime::LinuxResources> {
    use oci_spec::runtime::{LinuxDeviceCgroupBuilder, LinuxDeviceType as T};
    let linux = spec.linux().as_ref()?;
    let mut r = linux.resources().clone()?;
    let mut rules = r.devices().clone().unwrap_or_default();
    if rules.is_empty() {
        return Some(r);
    }
    let mut allow = |typ: T, major: Option<i64>, minor: Option<i64>| {
        if let Ok(rule) = LinuxDeviceCgroupBuilder::default()
            .allow(true)
            .typ(typ)
            .major(major.unwrap_or(-1))
            .minor(minor.unwrap_or(-1))
            .access("rwm")
            .build()
        {
            rules.push(rule);
        }
    };
    for (major, minor) in [
        (1, 3),
        (1, 5),
        (1, 7),
        (1, 8),
        (1, 9),
        (5, 0),
        (5, 1),
        (5, 2),
    ] {
        allow(T::C, Some(major), Some(minor));
    }
    // /dev/pts/*
    allow(T::C, Some(136), None);
    // A fifo is no device to the devices cgroup (which knows a, b, c).
    for d in linux.devices().iter().flatten().filter(|d| d.typ() != T::P) {
        allow(d.typ(), Some(d.major()), Some(d.minor()));
    }
    r.set_devices(Some(rules));
    Some(r)
}

fn parent_wait(
    spec: &Spec,
    opts: &CreateOptions,
    dir: &Path,
    pid: i32,
    rootfs: &Path,
    cgroups_path: Option<PathBuf>,
    mut sock: UnixStream,
) -> Result<(), ContainerError> {
    // Wait for init's verdict, running hooks when it asks.
    loop {
        let said = Message::recv(&mut sock).map_err(|e| match e.kind() {
            io::ErrorKind::InvalidData => ContainerError::Init(format!("init: {e}")),
            _ => ContainerError::Init("init exited before it was ready".into()),
        })?;
        match said {
            Some(Message::Ready) => break,
            Some(Message::RunHooks) => {
                // The container's namespaces and mounts exist; pivot_root
                // has not happened: prestart and createRuntime hooks.
                let state = creating_state(spec, opts, pid);
                if let Some(h) = spec.hooks() {
                    #[allow(deprecated)]
                    let prestart = h.prestart().clone().unwrap_or_default();
                    crate::hooks::run("prestart", &prestart, &state)?;
                    let create_runtime = h.create_runtime().clone().unwrap_or_default();
                    crate::hooks::run("createRuntime", &create_runtime, &state)?;
                }
                Message::Go
                    .send(&mut sock)
                    .map_err(sys("cannot signal init"))?;
            }
            Some(Message::Failed(f)) => return Err(f.into_error(false)),
            None => {
                return Err(ContainerError::Init(
                    "init exited before it was ready".into(),
                ))
            }
            Some(other) => {
                return Err(ContainerError::Init(format!(
                    "unexpected message {other:?} from init"
                )))
            }
        }
    }
    // Kept for start (poststart) and delete (poststop).
    let config = serde_json::to_vec(spec).expect("spec serializes");
    fs::write(dir.join("config.json"), config).map_err(sys("cannot save the config"))?;
    let (_, start_time) = state::proc_stat(pid)
        .ok_or_else(|| ContainerError::Init("init exited before it was ready".into()))?;
    let saved = Saved {
        id: opts.id.clone(),
        pid,
        start_time,
        bundle: opts.bundle.clone(),
        rootfs: rootfs.to_path_buf(),
        created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        annotations: spec.annotations().clone().unwrap_or_default(),
        paused: false,
        cgroups_path,
    };
    saved.save(&opts.root)?;
    let _ = dir;
    if let Some(p) = &opts.pid_file {
        write_atomic(p, pid.to_string().as_bytes())
            .map_err(sys(format!("cannot write pid file {}", p.display())))?;
    }
    Ok(())
}

/// Releases a created container into its process.
pub fn start(root: &Path, id: &str) -> Result<(), ContainerError> {
    let saved = Saved::load(root, id)?;
    let status = saved.status(root);
    if status != Status::Created {
        return Err(ContainerError::WrongState {
            id: id.into(),
            status,
            what: "only a created container can be started",
        });
    }
    let fifo = state::dir(root, id)?.join("exec.fifo");
    let mut f = fs::File::open(&fifo).map_err(sys("cannot open the exec fifo"))?;
    let mut b = [0u8; 1];
    let n = f.read(&mut b).map_err(sys("cannot read the exec fifo"))?;
    let _ = fs::remove_file(&fifo);
    if n == 0 {
        return Err(ContainerError::Init("init exited before start".into()));
    }
    if let Some(hooks) =
        saved_spec(root, id).and_then(|s| s.hooks().as_ref().and_then(|h| h.poststart().clone()))
    {
        // Poststart runs once the process is executed: init holds its end
        // of the fifo until its exec closes it (or it dies), so the end of
        // the fifo is that moment. Without poststart hooks start does not
        // wait for it.
        let mut rest = Vec::new();
        let _ = f.read_to_end(&mut rest);
        // The state as of the start: the process may already have exited.
        let mut state = saved.oci_state(root);
        state["status"] = "running".into();
        state["pid"] = saved.pid.into();
        for e in crate::hooks::run_all("poststart", &hooks, &state) {
            tracing::warn!(error = %chain(&e), "poststart hook failed");
        }
    }
    Ok(())
}

/// Pids of every process in the container (its cgroup).
/// Whether the kernel's OOM killer has killed a process of the container
/// (read from its memory cgroup, so before `delete` removes it).
pub fn oom_killed(root: &Path, id: &str) -> bool {
    Saved::load(root, id)
        .ok()
        .and_then(|s| cgroup_of(&s).ok())
        .is_some_and(|cg| cg.oom_kills() > 0)
}

pub fn pids(root: &Path, id: &str) -> Result<Vec<i32>, ContainerError> {
    let saved = Saved::load(root, id)?;
    Ok(cgroup_of(&saved)?.pids()?)
}

/// Freezes (`pause`) or thaws (`resume`) every process of the container.
pub fn set_paused(root: &Path, id: &str, paused: bool) -> Result<(), ContainerError> {
    let mut saved = Saved::load(root, id)?;
    let status = saved.status(root);
    let ok = if paused {
        status == Status::Running
    } else {
        status == Status::Paused
    };
    if !ok {
        return Err(ContainerError::WrongState {
            id: id.into(),
            status,
            what: if paused {
                "only a running container can be paused"
            } else {
                "only a paused container can be resumed"
            },
        });
    }
    let cg = cgroup_of(&saved)?;
    if paused {
        cg.freeze()?;
    } else {
        cg.thaw()?;
    }
    saved.paused = paused;
    saved.save(root)?;
    Ok(())
}

/// Thaws the container's cgroup whatever its recorded state says (a
/// freeze whose maker died before it thawed, or before it recorded the
/// pause), and records it as not paused.
pub fn force_thaw(root: &Path, id: &str) -> Result<(), ContainerError> {
    let mut saved = Saved::load(root, id)?;
    cgroup_of(&saved)?.thaw()?;
    if saved.paused {
        saved.paused = false;
        saved.save(root)?;
    }
    Ok(())
}

/// A container that has a process, or a WrongState error saying `what`.
fn live(root: &Path, id: &str, what: &'static str) -> Result<Saved, ContainerError> {
    let saved = Saved::load(root, id)?;
    let status = saved.status(root);
    if status == Status::Stopped {
        return Err(ContainerError::WrongState {
            id: id.into(),
            status,
            what,
        });
    }
    Ok(saved)
}

/// Changes the resource limits of a live container (`update`).
pub fn update(
    root: &Path,
    id: &str,
    resources: &oci_spec::runtime::LinuxResources,
) -> Result<(), ContainerError> {
    let saved = live(root, id, "cannot update a stopped container")?;
    cgroup_of(&saved)?.set(resources)?;
    Ok(())
}

/// Sends `signal` to every process of the container.
pub fn kill_all(root: &Path, id: &str, signal: i32) -> Result<(), ContainerError> {
    let saved = Saved::load(root, id)?;
    for pid in cgroup_of(&saved)?.pids()? {
        // SAFETY: kill of a pid listed in the container's cgroup.
        unsafe { libc::kill(pid, signal) };
    }
    Ok(())
}

/// Sends `signal` to the container's init.
pub fn kill(root: &Path, id: &str, signal: i32) -> Result<(), ContainerError> {
    let saved = live(root, id, "there is no process to signal")?;
    // SAFETY: kill on a pid we verified is the container's init.
    if unsafe { libc::kill(saved.pid, signal) } != 0 {
        return Err(sys(format!("cannot signal pid {}", saved.pid))(
            io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Removes a container's state; a live one only with `force` (killed first).
pub fn delete(root: &Path, id: &str, force: bool) -> Result<(), ContainerError> {
    let saved = match Saved::load(root, id) {
        Ok(s) => s,
        Err(StateError::NotFound(_)) if force => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let status = saved.status(root);
    match status {
        Status::Stopped => {}
        Status::Created if !force => {
            // runc deletes created containers without --force.
            kill_and_wait(&saved);
        }
        _ if force => kill_and_wait(&saved),
        _ => {
            return Err(ContainerError::WrongState {
                id: id.into(),
                status,
                what: "stop it first or use --force",
            })
        }
    }
    if saved.paused {
        if let Ok(cg) = cgroup_of(&saved) {
            let _ = cg.thaw();
        }
    }
    let cg = cgroup_of(&saved)?;
    // Whatever else is left in the cgroup goes too.
    for pid in cg.pids().unwrap_or_default() {
        // SAFETY: kill of a pid listed in the container's cgroup.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    cg.destroy()?;
    let spec = saved_spec(root, id);
    let mut state = saved.oci_state(root);
    state["status"] = "stopped".into();
    let dir = state::dir(root, id)?;
    fs::remove_dir_all(&dir).map_err(sys(format!("cannot remove {}", dir.display())))?;
    if let Some(hooks) = spec.and_then(|s| s.hooks().as_ref().and_then(|h| h.poststop().clone())) {
        for e in crate::hooks::run_all("poststop", &hooks, &state) {
            tracing::warn!(error = %chain(&e), "poststop hook failed");
        }
    }
    Ok(())
}

fn kill_and_wait(saved: &Saved) {
    // SAFETY: kill on a pid verified alive with the recorded start time.
    unsafe { libc::kill(saved.pid, libc::SIGKILL) };
    for _ in 0..1000 {
        if !saved.alive() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// `run`: create, start, wait for the process and delete. Returns the
/// process's exit code (128+N for a signal, as a shell reports it).
pub fn run(opts: &CreateOptions) -> Result<i32, ContainerError> {
    let pid = create(opts)?;
    if let Err(e) = start(&opts.root, &opts.id) {
        let _ = delete(&opts.root, &opts.id, true);
        return Err(e);
    }
    let code = wait_code(pid);
    delete(&opts.root, &opts.id, true)?;
    Ok(code)
}
