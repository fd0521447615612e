//! The container lifecycle: create, start, kill, delete, run.
//!
//! `create` clones the container's init directly into its new namespaces
//! (one clone, no re-exec of the runtime binary, so no host binary is ever
//! executed inside the container). Init prepares the rootfs, pivots, drops
//! privileges, reports "ready" over a socketpair, then blocks opening the
//! exec fifo for writing; `start` opens it for reading, which releases init
//! into `execve` of the container's process.

use std::ffi::CString;
use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::rootfs;
use crate::spec::{self, SpecError};
use crate::state::{self, Saved, StateError, Status};

/// Errors of the lifecycle commands.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("{what}")]
    Sys {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("container init failed: {0}")]
    Init(String),
    #[error("exec failed: {0}")]
    Exec(String),
    /// The process's program could not be run: not found (127) or not
    /// executable (126).
    #[error("{}: {message}", if *exec { "exec failed" } else { "container init failed" })]
    Command {
        exec: bool,
        failure: Failure,
        message: String,
    },
    #[error("container {id:?} is {status}: {what}")]
    WrongState {
        id: String,
        status: Status,
        what: &'static str,
    },
    #[error("{0}")]
    Unsupported(String),
    #[error(transparent)]
    Cgroup(#[from] crate::cgroups::CgroupError),
    #[error(transparent)]
    Hook(#[from] crate::hooks::HookError),
    #[error("linux.seccomp")]
    Seccomp(#[from] crate::seccomp::SeccompError),
}

fn sys(what: impl Into<String>) -> impl FnOnce(io::Error) -> ContainerError {
    let what = what.into();
    move |source| ContainerError::Sys { what, source }
}

/// What `create` needs besides the bundle.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    pub id: String,
    pub bundle: PathBuf,
    /// The runtime's state root (runc's `--root`).
    pub root: PathBuf,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub no_pivot: bool,
    /// Extra fds (3, 4, ...) passed to the container's process.
    pub preserve_fds: u32,
    /// The container's stdin, stdout and stderr, when they are not the
    /// caller's own (`berth run` passes pipes or a terminal).
    pub stdio: Option<[std::os::fd::RawFd; 3]>,
    /// A connected socket to send the pty master to, instead of
    /// `console_socket`'s path (an in-process caller's socketpair end).
    pub console_fd: Option<std::os::fd::RawFd>,
    /// `--init`: init stays as the container's pid 1, a reaper that runs
    /// the process as its child, forwards signals to it, reaps every
    /// orphan and exits with the process's status. Nothing is added to the
    /// container's filesystem.
    pub reaper: bool,
    /// Brings the loopback interface of a new network namespace up (as
    /// Docker's and Podman's network setup do; runc leaves it down).
    pub loopback: bool,
    /// Init is killed (SIGKILL) when the thread that created it dies: a
    /// build's RUN step must not outlive a killed build.
    pub die_with_parent: bool,
}

fn ns_flag(t: LinuxNamespaceType) -> libc::c_int {
    match t {
        LinuxNamespaceType::Mount => libc::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => libc::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => libc::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => libc::CLONE_NEWIPC,
        LinuxNamespaceType::User => libc::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => libc::CLONE_NEWPID,
        LinuxNamespaceType::Network => libc::CLONE_NEWNET,
        LinuxNamespaceType::Time => 0x80,
    }
}

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
                let _ = sock.write_all(&failed.encode());
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

enum CloneError {
    /// clone3 or CLONE_INTO_CGROUP is not available.
    IntoCgroup,
    Failed(io::Error),
}

/// Clones init into new namespaces (`flags`), born in the cgroup2
/// directory `cgroup` when given (clone3, CLONE_INTO_CGROUP). Returns 0 in
/// the child, as fork does.
fn clone_init(
    flags: libc::c_int,
    cgroup: Option<&std::os::fd::OwnedFd>,
) -> Result<i32, CloneError> {
    if let Some(cg) = cgroup {
        /// The kernel's struct clone_args (v2, with `cgroup`).
        #[repr(C)]
        struct CloneArgs {
            flags: u64,
            pidfd: u64,
            child_tid: u64,
            parent_tid: u64,
            exit_signal: u64,
            stack: u64,
            stack_size: u64,
            tls: u64,
            set_tid: u64,
            set_tid_size: u64,
            cgroup: u64,
        }
        const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
        let args = CloneArgs {
            flags: flags as u32 as u64 | CLONE_INTO_CGROUP,
            pidfd: 0,
            child_tid: 0,
            parent_tid: 0,
            exit_signal: libc::SIGCHLD as u64,
            stack: 0,
            stack_size: 0,
            tls: 0,
            set_tid: 0,
            set_tid_size: 0,
            cgroup: cg.as_raw_fd() as u64,
        };
        // SAFETY: clone3 with no stack and no CLONE_VM behaves like fork
        // (see below); args is a valid struct of the size given.
        let pid = unsafe {
            libc::syscall(
                libc::SYS_clone3,
                &args as *const CloneArgs,
                std::mem::size_of::<CloneArgs>(),
            )
        };
        if pid >= 0 {
            return Ok(pid as i32);
        }
        let e = io::Error::last_os_error();
        return Err(match e.raw_os_error() {
            Some(libc::ENOSYS | libc::E2BIG | libc::EINVAL | libc::EOPNOTSUPP) => {
                CloneError::IntoCgroup
            }
            _ => CloneError::Failed(e),
        });
    }
    // SAFETY: a raw clone without CLONE_VM behaves like fork: the child gets
    // a copy of this single-threaded process and continues on its own copy
    // of the stack; it only runs `init` and then execs or exits.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (flags | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    if pid < 0 {
        return Err(CloneError::Failed(io::Error::last_os_error()));
    }
    Ok(pid as i32)
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
    if sock.write_all(b"G").is_err() {
        // Init is gone: its own message says why.
        let mut msg = Vec::new();
        let _ = sock.read_to_end(&mut msg);
        // SAFETY: reap our own child.
        unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
        let _ = cg.destroy();
        let (kind, msg) = decode_failure(msg.strip_prefix(b"E").unwrap_or(&msg));
        return Err(if msg.is_empty() {
            ContainerError::Init("init exited before it was ready".into())
        } else {
            failure_error(false, kind, msg)
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
    let _ = sock.write_all(b"C");
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
        let mut kind = [0u8; 1];
        if sock.read_exact(&mut kind).is_err() {
            return Err(ContainerError::Init(
                "init exited before it was ready".into(),
            ));
        }
        match kind[0] {
            b'R' => break,
            b'H' => {
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
                sock.write_all(b"G").map_err(sys("cannot signal init"))?;
            }
            b'E' => {
                let mut msg = Vec::new();
                let _ = sock.read_to_end(&mut msg);
                let (kind, msg) = decode_failure(&msg);
                return Err(failure_error(false, kind, msg));
            }
            other => {
                return Err(ContainerError::Init(format!(
                    "unexpected message {other:#x} from init"
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

/// The OCI state handed to hooks while the container is being created.
fn creating_state(spec: &Spec, opts: &CreateOptions, pid: i32) -> serde_json::Value {
    serde_json::json!({
        "ociVersion": "1.2.0",
        "id": opts.id,
        "status": "creating",
        "pid": pid,
        "bundle": opts.bundle,
        "annotations": spec.annotations().clone().unwrap_or_default(),
    })
}

/// The saved config of a container (hooks for start and delete).
fn saved_spec(root: &Path, id: &str) -> Option<Spec> {
    let raw = fs::read(state::dir(root, id).ok()?.join("config.json")).ok()?;
    serde_json::from_slice(&raw).ok()
}

/// Writes /proc/PID/{uid,gid}_map from the config's mappings.
fn write_id_maps(spec: &Spec, pid: i32) -> Result<(), ContainerError> {
    let linux = spec.linux().as_ref();
    let render = |m: Option<&Vec<oci_spec::runtime::LinuxIdMapping>>| {
        m.into_iter()
            .flatten()
            .map(|e| format!("{} {} {}\n", e.container_id(), e.host_id(), e.size()))
            .collect::<String>()
    };
    for (file, maps) in [
        (
            "uid_map",
            render(linux.and_then(|l| l.uid_mappings().as_ref())),
        ),
        (
            "gid_map",
            render(linux.and_then(|l| l.gid_mappings().as_ref())),
        ),
    ] {
        let path = format!("/proc/{pid}/{file}");
        fs::write(&path, maps.as_bytes()).map_err(|e| ContainerError::Sys {
            what: format!("cannot write {file} ({})", maps.trim().replace('\n', ", ")),
            source: e,
        })?;
    }
    Ok(())
}

fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("berth-tmp");
    fs::write(&tmp, data)?;
    fs::rename(&tmp, path)
}

fn setns_path(path: &Path, nstype: libc::c_int) -> Result<(), ContainerError> {
    let f =
        fs::File::open(path).map_err(sys(format!("cannot open namespace {}", path.display())))?;
    // SAFETY: f is an open namespace file descriptor.
    if unsafe { libc::setns(f.as_raw_fd(), nstype) } != 0 {
        return Err(sys(format!("cannot join namespace {}", path.display()))(
            io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Why a container's process could not be started, as init or an exec
/// process tells the runtime: 'E', this kind's byte, then the message, on
/// the sync socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Setting the process up failed (namespaces, mounts, credentials...).
    Setup,
    /// The program does not exist (docker's 127).
    NotFound,
    /// The program exists but cannot be executed (docker's 126).
    NotExecutable,
}

impl Failure {
    fn byte(self) -> u8 {
        match self {
            Failure::Setup => b's',
            Failure::NotFound => b'n',
            Failure::NotExecutable => b'x',
        }
    }

    fn from_byte(b: u8) -> Option<Failure> {
        Some(match b {
            b's' => Failure::Setup,
            b'n' => Failure::NotFound,
            b'x' => Failure::NotExecutable,
            _ => return None,
        })
    }

    /// What a failed execve's errno means.
    pub fn of_errno(errno: i32) -> Failure {
        match errno {
            libc::ENOENT | libc::ENOTDIR => Failure::NotFound,
            libc::EACCES | libc::ENOEXEC | libc::EISDIR => Failure::NotExecutable,
            _ => Failure::Setup,
        }
    }
}

/// A failure and its message, as init and exec send it.
struct Failed {
    kind: Failure,
    msg: String,
}

impl From<String> for Failed {
    fn from(msg: String) -> Failed {
        Failed {
            kind: Failure::Setup,
            msg,
        }
    }
}

impl Failed {
    fn encode(&self) -> Vec<u8> {
        let mut v = vec![b'E', self.kind.byte()];
        v.extend_from_slice(self.msg.as_bytes());
        v
    }
}

/// A failure message after its 'E'.
fn decode_failure(msg: &[u8]) -> (Failure, String) {
    let typed = msg
        .split_first()
        .and_then(|(b, rest)| Some((Failure::from_byte(*b)?, rest)));
    match typed {
        Some((kind, rest)) => (kind, String::from_utf8_lossy(rest).into_owned()),
        None => (Failure::Setup, String::from_utf8_lossy(msg).into_owned()),
    }
}

/// The error of a failure of init (`exec == false`) or of an exec process.
fn failure_error(exec: bool, kind: Failure, message: String) -> ContainerError {
    match (kind, exec) {
        (Failure::Setup, false) => ContainerError::Init(message),
        (Failure::Setup, true) => ContainerError::Exec(message),
        (failure, exec) => ContainerError::Command {
            exec,
            failure,
            message,
        },
    }
}

type InitResult = Result<std::convert::Infallible, (UnixStream, Failed)>;

/// What create prepared for init before the clone.
struct InitPlan<'a> {
    /// Namespaces to join by path.
    join: &'a [(LinuxNamespaceType, PathBuf)],
    fifo: &'a Path,
    rootfs: &'a Path,
    filter: Option<&'a crate::seccomp::Filter>,
    /// `CgroupManager::container_dirs`.
    cgroup_dirs: &'a [(String, PathBuf)],
    /// Init moves itself into its v1 cgroups (see `SelfJoin`).
    self_join: Option<&'a crate::cgroups::SelfJoin>,
}

/// The container's init, in its new namespaces. Never returns on success.
fn init(
    spec: &Spec,
    opts: &CreateOptions,
    plan: &InitPlan<'_>,
    mut sock: UnixStream,
) -> InitResult {
    let InitPlan {
        join,
        fifo,
        rootfs,
        filter,
        cgroup_dirs,
        self_join,
    } = *plan;
    reset_signals();
    if opts.die_with_parent {
        // A parent that died before this prctl is seen below: the read of
        // its go-ahead on the sync socket fails, and init exits.
        // SAFETY: prctl with constant arguments.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
    }
    if let Some(j) = self_join {
        if let Err(e) = j.join_self() {
            return Err((sock, format!("joining the container's cgroups: {e}").into()));
        }
    }
    if let Some(fds) = opts.stdio {
        for (target, fd) in fds.into_iter().enumerate() {
            // SAFETY: dup2 onto 0..2 of this (single-threaded) child; the
            // sources stay open until the close-on-exec sweep.
            if fd != target as i32 && unsafe { libc::dup2(fd, target as i32) } < 0 {
                let e = io::Error::last_os_error();
                return Err((sock, format!("setting up stdio: {e}").into()));
            }
        }
    }
    // Nothing of the caller's (its store, its cgroup directory fd for
    // clone3, ...) stays open past this point: only stdio, the preserved
    // fds, the sync socket and the console socket (CVE-2024-21626 class).
    let mut sockets = vec![sock.as_raw_fd()];
    sockets.extend(opts.console_fd);
    crate::confine::close_inherited(opts.preserve_fds, &sockets);
    // Until it execs, init is a copy of the host's runtime binary: make it
    // non-dumpable so no other process can open its /proc/PID/exe or memory
    // (CVE-2019-5736 class), and remember the binary's identity so that init
    // refuses to exec it inside the container.
    // SAFETY: prctl with constant arguments.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    let host_exe = fs::metadata("/proc/self/exe").ok().map(|m| {
        use std::os::unix::fs::MetadataExt;
        (m.dev(), m.ino())
    });
    let mut go = [0u8; 1];
    if sock.read_exact(&mut go).is_err() {
        // The parent is gone.
        // SAFETY: see create().
        unsafe { libc::_exit(1) };
    }
    macro_rules! t {
        ($e:expr, $what:expr) => {
            match $e {
                Ok(v) => v,
                Err(e) => return Err((sock, format!("{}: {}", $what, chain(&e)).into())),
            }
        };
    }
    // The exec fifo's directory must be opened before a joined mount
    // namespace or the rootfs hides it; the fifo is opened through it, by
    // its name, with no /proc needed (a container may have no /proc, or no
    // mount namespace of its own).
    let (fifo_parent, fifo_name) = match (fifo.parent(), fifo.file_name()) {
        (Some(p), Some(n)) => (p, n.to_owned()),
        _ => {
            return Err((
                sock,
                format!("bad exec fifo path {}", fifo.display()).into(),
            ))
        }
    };
    let fifo_dir = t!(
        rustix::fs::open(
            fifo_parent,
            rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty()
        )
        .map_err(io::Error::from),
        "opening the exec fifo's directory"
    );
    // While the host's /proc is in view and in the host's user
    // namespace (a container may mount none, or join others).
    if let Some(adj) = spec.process().as_ref().and_then(|p| p.oom_score_adj()) {
        t!(
            fs::write("/proc/self/oom_score_adj", adj.to_string()),
            "oomScoreAdj"
        );
    }
    // A user namespace first: it owns the others.
    for (t, p) in join.iter().filter(|(t, _)| *t == LinuxNamespaceType::User) {
        t!(setns_path(p, ns_flag(*t)), "joining the user namespace");
    }
    for (t, p) in join {
        if *t != LinuxNamespaceType::Pid && *t != LinuxNamespaceType::User {
            t!(setns_path(p, ns_flag(*t)), "joining a namespace");
        }
    }
    let new_ns = |t: LinuxNamespaceType| {
        spec.linux()
            .as_ref()
            .and_then(|l| l.namespaces().as_ref())
            .is_some_and(|v| v.iter().any(|n| n.typ() == t && n.path().is_none()))
    };
    if new_ns(LinuxNamespaceType::User) || join.iter().any(|(t, _)| *t == LinuxNamespaceType::User)
    {
        // The maps are written: become the namespace's root.
        // SAFETY: credential syscalls with constant arguments.
        if unsafe { libc::setresgid(0, 0, 0) } != 0 || unsafe { libc::setresuid(0, 0, 0) } != 0 {
            let e = io::Error::last_os_error();
            return Err((
                sock,
                format!("becoming root in the user namespace: {e} (is uid/gid 0 mapped?)").into(),
            ));
        }
    }
    // The parent is moving us into our cgroups meanwhile; 'C' says it is
    // done. A cgroup namespace must wait for it (it is rooted where we are
    // when it is made); otherwise the rootfs is prepared in the meantime.
    let mut cgroups_ready = {
        let mut sock = t!(sock.try_clone(), "duplicating the sync socket");
        let mut done = false;
        move || {
            if done {
                return;
            }
            let mut c = [0u8; 1];
            if sock.read_exact(&mut c).is_err() || c[0] != b'C' {
                // The parent failed (and kills us) or is gone.
                // SAFETY: see create().
                unsafe { libc::_exit(1) };
            }
            done = true;
        }
    };
    if new_ns(LinuxNamespaceType::Cgroup) {
        cgroups_ready();
        // SAFETY: unsharing only the cgroup namespace does not touch the
        // process's file table or memory (what makes unshare unsafe).
        let r = unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWCGROUP) };
        t!(r.map_err(io::Error::from), "creating the cgroup namespace");
    }
    if new_ns(LinuxNamespaceType::Uts) {
        if let Some(h) = spec.hostname() {
            t!(
                rustix::system::sethostname(h.as_bytes()).map_err(io::Error::from),
                "sethostname"
            );
        }
        if let Some(d) = spec.domainname() {
            t!(
                rustix::system::setdomainname(d.as_bytes()).map_err(io::Error::from),
                "setdomainname"
            );
        }
    }
    if opts.loopback && new_ns(LinuxNamespaceType::Network) {
        t!(
            crate::confine::loopback_up(),
            "bringing up the loopback interface"
        );
    }
    // The console socket is a host path: connect before the rootfs hides it.
    let terminal = spec
        .process()
        .as_ref()
        .is_some_and(|p| p.terminal().unwrap_or(false));
    let console = match terminal {
        true => Some(t!(
            crate::console::open(opts.console_socket.as_deref(), opts.console_fd),
            "console"
        )),
        false => None,
    };

    if new_ns(LinuxNamespaceType::Mount) {
        t!(
            { rootfs::prepare(spec, rootfs, cgroup_dirs, &mut cgroups_ready) },
            "preparing the rootfs"
        );
        if spec.hooks().is_some() {
            // 'C' comes before the parent reads our 'H'.
            cgroups_ready();
            // Let the runtime run prestart/createRuntime hooks, then run
            // createContainer hooks here, in the container's namespaces.
            if sock.write_all(b"H").is_err() || sock.read_exact(&mut go).is_err() {
                // SAFETY: see create().
                unsafe { libc::_exit(1) };
            }
            let state = creating_state(spec, opts, std::process::id() as i32);
            let hooks = spec
                .hooks()
                .as_ref()
                .and_then(|h| h.create_container().clone())
                .unwrap_or_default();
            t!(
                crate::hooks::run("createContainer", &hooks, &state),
                "hooks"
            );
        }
        t!(rootfs::pivot(rootfs, opts.no_pivot), "entering the rootfs");
        t!(rootfs::sysctls(spec), "sysctl");
        // Like runc, a missing cwd is created (before a read-only root),
        // inside the root whatever its links say.
        let cwd = spec.process().as_ref().expect("checked").cwd();
        if let Err(msg) = crate::confine::make_cwd(cwd) {
            return Err((sock, msg.into()));
        }
        t!(rootfs::finish(spec), "finishing the rootfs");
    } else if !join.iter().any(|(t, _)| *t == LinuxNamespaceType::Mount) {
        // No mount namespace at all: the host's, with the container's root
        // (runc would leave the host's root).
        t!(
            rustix::process::chroot(rootfs).map_err(io::Error::from),
            "chroot"
        );
    }
    // A mount namespace joined by path is a filesystem shared with its
    // owner (a pod's containers): its root, which setns made ours, as runc.
    let process = spec.process().as_ref().expect("checked by spec::load");
    if let Some(c) = console {
        let size = process
            .console_size()
            .as_ref()
            .map(|b| (b.height() as u16, b.width() as u16));
        t!(crate::console::setup(&c, size), "setting up the terminal");
    }
    for r in process.rlimits().iter().flatten() {
        let lim = libc::rlimit {
            rlim_cur: r.soft(),
            rlim_max: r.hard(),
        };
        let Some(res) = rlimit_resource(r.typ()) else {
            return Err((sock, format!("unknown rlimit {:?}", r.typ()).into()));
        };
        // SAFETY: lim is a valid rlimit struct.
        if unsafe { libc::setrlimit(res, &lim) } != 0 {
            let e = io::Error::last_os_error();
            let mut cur = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: cur is a valid out-parameter.
            unsafe { libc::getrlimit(res, &mut cur) };
            return Err((
                sock,
                format!(
                    "rlimit {:?} soft={} hard={}: {e} (the runtime's own hard limit is {}; raising it needs CAP_SYS_RESOURCE)",
                    r.typ(),
                    r.soft(),
                    r.hard(),
                    cur.rlim_max
                )
                .into(),
            ));
        }
    }
    // In its cgroups before it takes the process's credentials and filter.
    cgroups_ready();
    let (exe, args, env, nnp, stub) =
        match become_process(process, filter, opts.preserve_fds, host_exe) {
            Ok(v) => v,
            Err(msg) => return Err((sock, msg)),
        };

    // Ready: the parent records the container and exits; we wait for start.
    if sock.write_all(b"R").is_err() {
        // SAFETY: see create().
        unsafe { libc::_exit(1) };
    }
    drop(sock);
    // Blocks until `start` opens the fifo. Only the fifo itself is opened:
    // a name with no '/' and no link followed.
    let w = rustix::fs::openat(
        &fifo_dir,
        fifo_name.as_os_str(),
        rustix::fs::OFlags::WRONLY | rustix::fs::OFlags::CLOEXEC | rustix::fs::OFlags::NOFOLLOW,
        rustix::fs::Mode::empty(),
    );
    let Ok(w) = w else {
        // SAFETY: see create().
        unsafe { libc::_exit(1) };
    };
    let mut wf = fs::File::from(w);
    let _ = wf.write_all(b"0");
    // Held by the stub until its exec of the program: its closing tells
    // `start` the process is executed, for poststart hooks.
    drop(fifo_dir);
    if let Some(hooks) = spec
        .hooks()
        .as_ref()
        .and_then(|h| h.start_container().clone())
    {
        let state = creating_state(spec, opts, 1);
        if let Err(e) = crate::hooks::run("startContainer", &hooks, &state) {
            eprintln!("berth-runc: {}", chain(&e));
            // SAFETY: see create().
            unsafe { libc::_exit(1) };
        }
    }
    // With no_new_privs the filter comes last, as close to execve as can be.
    if let (Some(f), true) = (filter, nnp) {
        if let Err(e) = f.load() {
            eprintln!("berth-runc: loading the seccomp filter: {}", chain(&e));
            // SAFETY: see create().
            unsafe { libc::_exit(1) };
        }
    }

    if opts.reaper {
        reaper(&stub, &exe, &args, &env, wf);
    }
    let e = crate::confine::exec_through(
        &stub,
        crate::confine::StubFd::Hold(wf.as_raw_fd()),
        &exe,
        &args,
        &env,
    );
    eprintln!("berth-runc: exec {:?}: {e}", exe);
    let code = match e.raw_os_error() {
        Some(libc::ENOENT) => 127,
        _ => 126,
    };
    // SAFETY: see create().
    unsafe { libc::_exit(code) };
}

/// `--init`: pid 1 forks the process, then forwards every signal it gets
/// to it and reaps every child (orphans included) until the process has
/// exited; exits with its code, or 128+N if signal N killed it.
fn reaper(
    stub: &std::os::fd::OwnedFd,
    exe: &CString,
    args: &[CString],
    env: &[CString],
    fifo: fs::File,
) -> ! {
    // SAFETY: sigset manipulation on a local set; sigprocmask on this
    // single-threaded process.
    let all = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    };
    // SAFETY: single-threaded; the child only resets its mask and execs.
    let child = unsafe { libc::fork() };
    if child == 0 {
        // With a terminal, the process gets the foreground process group
        // of its own: the keys that make signals (ctrl-c) reach it once,
        // not the reaper as well (which would forward a second copy).
        // SAFETY: setpgid/tcsetpgrp on our own process and terminal;
        // SIGTTOU is still blocked here, so tcsetpgrp cannot stop us.
        unsafe {
            if libc::isatty(0) == 1 {
                libc::setpgid(0, 0);
                libc::tcsetpgrp(0, libc::getpid());
            }
        }
        // SAFETY: an empty set for sigprocmask.
        unsafe {
            let mut none: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut none);
            libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
        }
        let e = crate::confine::exec_through(
            stub,
            crate::confine::StubFd::Hold(fifo.as_raw_fd()),
            exe,
            args,
            env,
        );
        eprintln!("berth-init: exec {:?}: {e}", exe);
        let code = if e.raw_os_error() == Some(libc::ENOENT) {
            127
        } else {
            126
        };
        // SAFETY: see create().
        unsafe { libc::_exit(code) };
    }
    if child < 0 {
        eprintln!("berth-init: fork: {}", io::Error::last_os_error());
        // SAFETY: see create().
        unsafe { libc::_exit(126) };
    }
    // The child's exec closes its copy: that is the process executed.
    drop(fifo);
    // The reaper never execs: close every fd the runtime's caller left
    // (marked close-on-exec for the process) so that none stays open for
    // the container's life. Stdio stays: the process shares it.
    // SAFETY: close_range on our own fd table; prctl with a constant name.
    let closed = unsafe {
        libc::prctl(libc::PR_SET_NAME, c"init".as_ptr(), 0, 0, 0);
        libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32)
    };
    if closed != 0 {
        // No close_range (before Linux 5.9, or a seccomp profile without
        // it): one by one, from /proc/self/fd.
        let fds: Vec<i32> = fs::read_dir("/proc/self/fd")
            .map(|d| {
                d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                    .filter(|fd| *fd > 2)
                    .collect()
            })
            .unwrap_or_default();
        for fd in fds {
            // SAFETY: closing fds of our own table that nothing here uses.
            unsafe { libc::close(fd) };
        }
    }
    loop {
        // SAFETY: `all` is a valid set; info is a valid out-parameter.
        let sig = unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            libc::sigwaitinfo(&all, &mut info)
        };
        if sig < 0 {
            continue;
        }
        if sig != libc::SIGCHLD {
            // SAFETY: kill of our own child.
            unsafe { libc::kill(child, sig) };
            continue;
        }
        loop {
            let mut status = 0;
            // SAFETY: reaps any child of ours; status is a valid pointer.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid <= 0 {
                break;
            }
            if pid == child {
                // SAFETY: see create().
                unsafe { libc::_exit(crate::signal::exit_code(status)) };
            }
        }
    }
}

/// Turns the calling (forked) process into `process`, short of execve:
/// credentials, cwd, close-on-exec for every fd but stdio and the preserved
/// ones, the executable resolved in the container (never the host's runtime
/// binary), seccomp (unless no_new_privs defers it) and capabilities.
/// Returns what execve needs, whether no_new_privs is set, and the exec
/// stub to exec through (`confine::exec_through`).
#[allow(clippy::type_complexity)]
fn become_process(
    process: &oci_spec::runtime::Process,
    filter: Option<&crate::seccomp::Filter>,
    preserve_fds: u32,
    host_exe: Option<(u64, u64)>,
) -> Result<
    (
        CString,
        Vec<CString>,
        Vec<CString>,
        bool,
        std::os::fd::OwnedFd,
    ),
    Failed,
> {
    macro_rules! t {
        ($e:expr, $what:expr) => {
            match $e {
                Ok(v) => v,
                Err(e) => return Err(format!("{}: {}", $what, chain(&e)).into()),
            }
        };
    }
    let nnp = process.no_new_privileges().unwrap_or(false);
    // Before any filter: a profile may not allow memfd_create, openat2 or
    // getcwd.
    let stub = t!(crate::confine::stub_fd(), "the exec stub");
    let cwd_as_user = crate::confine::enter_cwd(process.cwd()).map_err(Failed::from)?;
    // Without no_new_privs, loading a filter needs CAP_SYS_ADMIN: load it
    // before anything is dropped (as runc does).
    if let (Some(f), false) = (filter, nnp) {
        t!(f.load(), "loading the seccomp filter");
    }
    // The bounding set can only be dropped while still privileged: before
    // setuid. The other sets follow after it.
    if let Some(c) = process.capabilities() {
        t!(
            crate::caps::drop_bounding(c),
            "dropping bounding capabilities"
        );
    }
    let user = process.user();
    let gids: Vec<libc::gid_t> = user.additional_gids().clone().unwrap_or_default();
    t!(
        crate::caps::keep_caps(true),
        "keeping capabilities across setuid"
    );
    // SAFETY: plain credential syscalls with valid arguments.
    unsafe {
        if libc::setgroups(gids.len(), gids.as_ptr()) != 0 {
            return Err(format!("setgroups: {}", io::Error::last_os_error()).into());
        }
        if libc::setresgid(user.gid(), user.gid(), user.gid()) != 0 {
            return Err(format!("setgid {}: {}", user.gid(), io::Error::last_os_error()).into());
        }
        if libc::setresuid(user.uid(), user.uid(), user.uid()) != 0 {
            return Err(format!("setuid {}: {}", user.uid(), io::Error::last_os_error()).into());
        }
        if let Some(mask) = user.umask() {
            libc::umask(mask as libc::mode_t);
        }
    }
    t!(
        crate::caps::keep_caps(false),
        "keeping capabilities across setuid"
    );
    if let Some(dir) = cwd_as_user {
        crate::confine::enter_cwd_as_user(&dir, process.cwd()).map_err(Failed::from)?;
    }

    // Every fd but stdio, the preserved ones, the sync socket and the fifo
    // is closed on exec (CVE-2024-21626 class).
    let keep_from = 3 + preserve_fds;
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets flags.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            keep_from,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        );
    }
    for fd in 3..keep_from {
        // SAFETY: fcntl on an fd number; an invalid fd just fails.
        unsafe {
            let flags = libc::fcntl(fd as libc::c_int, libc::F_GETFD);
            if flags >= 0 {
                libc::fcntl(fd as libc::c_int, libc::F_SETFD, flags & !libc::FD_CLOEXEC);
            }
        }
    }

    let args: Vec<CString> = process
        .args()
        .iter()
        .flatten()
        .map(|a| CString::new(a.as_bytes()).unwrap_or_default())
        .collect();
    let env: Vec<CString> = process
        .env()
        .iter()
        .flatten()
        .map(|e| CString::new(e.as_bytes()).unwrap_or_default())
        .collect();
    let path_env = process
        .env()
        .iter()
        .flatten()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        .to_string();
    let exe = resolve_exe(&process.args().as_ref().expect("checked")[0], &path_env)?;
    if let (Some((dev, ino)), Ok(md)) = (host_exe, fs::metadata(Path::new(&*exe.to_string_lossy())))
    {
        use std::os::unix::fs::MetadataExt;
        if md.dev() == dev && md.ino() == ino {
            return Err(format!(
                "refusing to exec {:?}: it is the host's runtime binary",
                exe
            )
            .into());
        }
    }
    if let Some(c) = process.capabilities() {
        t!(crate::caps::apply(c), "setting capabilities");
    }
    if nnp {
        t!(crate::caps::set_no_new_privs(), "no_new_privs");
    }

    Ok((exe, args, env, nnp, stub))
}

/// An error and its causes on one line, each cause once.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

fn rlimit_resource(t: oci_spec::runtime::PosixRlimitType) -> Option<libc::__rlimit_resource_t> {
    use oci_spec::runtime::PosixRlimitType as T;
    Some(match t {
        T::RlimitCpu => libc::RLIMIT_CPU,
        T::RlimitFsize => libc::RLIMIT_FSIZE,
        T::RlimitData => libc::RLIMIT_DATA,
        T::RlimitStack => libc::RLIMIT_STACK,
        T::RlimitCore => libc::RLIMIT_CORE,
        T::RlimitRss => libc::RLIMIT_RSS,
        T::RlimitNproc => libc::RLIMIT_NPROC,
        T::RlimitNofile => libc::RLIMIT_NOFILE,
        T::RlimitMemlock => libc::RLIMIT_MEMLOCK,
        T::RlimitAs => libc::RLIMIT_AS,
        T::RlimitLocks => libc::RLIMIT_LOCKS,
        T::RlimitSigpending => libc::RLIMIT_SIGPENDING,
        T::RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        T::RlimitNice => libc::RLIMIT_NICE,
        T::RlimitRtprio => libc::RLIMIT_RTPRIO,
        T::RlimitRttime => libc::RLIMIT_RTTIME,
    })
}

/// Finds the executable for `arg0` in the container's PATH (after
/// pivot_root, so inside the container).
/// The program to execute, as runc finds it before the start (so that a
/// missing or non-executable one fails the create, 127 or 126, as docker
/// reports it): a name with a slash as it is, checked; else the first
/// executable file of that name in `path`.
fn resolve_exe(arg0: &str, path: &str) -> Result<CString, Failed> {
    use std::os::unix::fs::PermissionsExt;
    let cstr = |s: &str| {
        CString::new(s).map_err(|_| Failed::from(format!("exec: {arg0:?}: a NUL in the name")))
    };
    if arg0.contains('/') {
        return match fs::metadata(arg0) {
            Ok(md) if md.is_file() && md.permissions().mode() & 0o111 != 0 => cstr(arg0),
            Ok(_) => Err(Failed {
                kind: Failure::NotExecutable,
                msg: format!("exec: {arg0:?}: permission denied"),
            }),
            Err(e) => Err(Failed {
                kind: Failure::of_errno(e.raw_os_error().unwrap_or(libc::ENOENT)),
                msg: format!("exec: {arg0:?}: stat {arg0}: {}", errno_text(&e)),
            }),
        };
    }
    if let Some(p) = find_in_path(arg0, path) {
        return cstr(&p);
    }
    Err(Failed {
        kind: Failure::NotFound,
        msg: format!("exec: {arg0:?}: executable file not found in $PATH"),
    })
}

/// An I/O error's text without Rust's " (os error N)".
fn errno_text(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_lowercase(),
        None => s,
    }
}

fn find_in_path(arg0: &str, path: &str) -> Option<String> {
    for dir in path.split(':') {
        let candidate = Path::new(dir).join(arg0);
        if let Ok(md) = fs::metadata(&candidate) {
            use std::os::unix::fs::PermissionsExt;
            if md.is_file() && md.permissions().mode() & 0o111 != 0 {
                return Some(candidate.to_string_lossy().into_owned());
            }
        }
    }
    None
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

fn cgroup_of(saved: &Saved) -> Result<Box<dyn crate::cgroups::CgroupManager>, ContainerError> {
    Ok(crate::cgroups::manager(
        saved.cgroups_path.as_deref(),
        &saved.id,
    )?)
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

/// What `exec` runs in an existing container.
#[derive(Debug, Clone)]
pub struct ExecOptions {
    pub root: PathBuf,
    pub id: String,
    pub process: oci_spec::runtime::Process,
    pub detach: bool,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub preserve_fds: u32,
    /// The process's stdin, stdout and stderr, when not the caller's own.
    pub stdio: Option<[std::os::fd::RawFd; 3]>,
    /// A connected socket for the pty master (see `CreateOptions`).
    pub console_fd: Option<std::os::fd::RawFd>,
}

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
            let _ = child_sock.write_all(&failed.encode());
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
        let _ = child_sock.write_all(&failed.encode());
        // SAFETY: see create().
        unsafe {
            libc::_exit(if failed.kind == Failure::NotFound {
                127
            } else {
                126
            })
        };
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
    if let Err(e) = parent_sock.write_all(b"G") {
        return fail(pid, sys("cannot signal the exec process")(e));
    }
    // The socket is close-on-exec: EOF without a message means execve
    // succeeded.
    let mut msg = Vec::new();
    let _ = parent_sock.read_to_end(&mut msg);
    let exe = opts
        .process
        .args()
        .iter()
        .flatten()
        .next()
        .cloned()
        .unwrap_or_default();
    let failed = match msg.first() {
        Some(b'E') => Some(decode_failure(&msg[1..])),
        // The exec stub's own execve failed.
        Some(b'X') => {
            crate::confine::stub_report(&msg, &exe).map(|(errno, m)| (Failure::of_errno(errno), m))
        }
        _ => None,
    };
    if let Some((kind, m)) = failed {
        let mut status = 0;
        // SAFETY: reap our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        return Err(failure_error(true, kind, m));
    }
    if let Some(p) = &opts.pid_file {
        write_atomic(p, pid.to_string().as_bytes())
            .map_err(sys(format!("cannot write pid file {}", p.display())))?;
    }
    Ok(pid)
}

/// Waits for a child; its exit code, or 128+N for a signal.
fn wait_code(pid: i32) -> i32 {
    let mut status = 0;
    // SAFETY: pid is our own child.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    if r < 0 {
        255
    } else {
        crate::signal::exit_code(status)
    }
}

/// Signal dispositions and the mask are inherited through clone and (for
/// ignored signals and the mask) through execve: the container's process
/// starts with every signal at its default and none blocked, whatever its
/// launcher had (Rust ignores SIGPIPE; `berth run` blocks the signals it
/// forwards).
fn reset_signals() {
    // The kernel's struct sigaction; glibc's signal() refuses 32 and 33,
    // which it reserves, so the raw syscall resets those too.
    #[repr(C)]
    struct KSigaction {
        handler: usize,
        flags: u64,
        restorer: usize,
        mask: u64,
    }
    let dfl = KSigaction {
        handler: libc::SIG_DFL,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    for sig in 1..65 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: rt_sigaction with a valid struct of the kernel's layout
        // and the kernel's sigset size; invalid numbers just fail.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                &dfl as *const KSigaction,
                std::ptr::null_mut::<KSigaction>(),
                8usize,
            )
        };
    }
    // SAFETY: an empty set, valid for sigprocmask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
}

/// The exec'd process before execve. Returns an error message on failure.
fn exec_child(
    opts: &ExecOptions,
    namespaces: &[(libc::c_int, fs::File)],
    filter: Option<&crate::seccomp::Filter>,
    host_exe: Option<(u64, u64)>,
    sock: &mut UnixStream,
) -> Failed {
    reset_signals();
    // SAFETY: prctl with constant arguments.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    let mut go = [0u8; 1];
    if sock.read_exact(&mut go).is_err() {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Init's and exec's failures reach the runtime typed: whether the
    /// program is missing or cannot be executed is a kind, not a phrase
    /// of the message (a setup error that says "no such file or
    /// directory" is not a missing program).
    #[test]
    fn failures_travel_with_their_kind() {
        for kind in [Failure::Setup, Failure::NotFound, Failure::NotExecutable] {
            let f = Failed {
                kind,
                msg: "mount /x: no such file or directory".into(),
            };
            let wire = f.encode();
            assert_eq!(wire[0], b'E');
            let (k, m) = decode_failure(&wire[1..]);
            assert_eq!(
                (k, m.as_str()),
                (kind, "mount /x: no such file or directory")
            );
        }
        assert!(matches!(
            failure_error(false, Failure::Setup, "no such file or directory".into()),
            ContainerError::Init(_)
        ));
        let e = failure_error(true, Failure::NotFound, "exec: \"x\": not found".into());
        assert_eq!(e.to_string(), "exec failed: exec: \"x\": not found");
        assert_eq!(Failure::of_errno(libc::ENOENT), Failure::NotFound);
        assert_eq!(Failure::of_errno(libc::EACCES), Failure::NotExecutable);
        assert_eq!(Failure::of_errno(libc::ENOEXEC), Failure::NotExecutable);
        assert_eq!(Failure::of_errno(libc::E2BIG), Failure::Setup);
        // An old-style message without a kind byte is a setup failure.
        assert_eq!(decode_failure(b"plain").0, Failure::Setup);
    }
}
