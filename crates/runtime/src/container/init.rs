//! The container's init, from the clone to `execve`: namespaces joined,
//! the rootfs prepared and pivoted, hooks, then the process's
//! credentials, rlimits, capabilities and seccomp filter; it reports
//! ready and waits on the exec fifo for `start`.

use std::ffi::CString;
use std::fs;
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};

use super::clone::{ns_flag, setns_path};
use super::error::{chain, Failure};
use super::options::CreateOptions;
use super::reaper::reaper;
use super::saved::creating_state;
use super::sync::{Failed, Message};
use crate::rootfs;

pub(super) type InitResult = Result<std::convert::Infallible, (UnixStream, Failed)>;

/// What create prepared for init before the clone.
pub(super) struct InitPlan<'a> {
    /// Namespaces to join by path.
    pub(super) join: &'a [(LinuxNamespaceType, PathBuf)],
    pub(super) fifo: &'a Path,
    pub(super) rootfs: &'a Path,
    pub(super) filter: Option<&'a crate::seccomp::Filter>,
    /// `CgroupManager::container_dirs`.
    pub(super) cgroup_dirs: &'a [(String, PathBuf)],
    /// Init moves itself into its v1 cgroups (see `SelfJoin`).
    pub(super) self_join: Option<&'a crate::cgroups::SelfJoin>,
}

/// The container's init, in its new namespaces. Never returns on success.
pub(super) fn init(
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
    if !matches!(Message::recv(&mut sock), Ok(Some(Message::Go))) {
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
            if !matches!(Message::recv(&mut sock), Ok(Some(Message::CgroupsSet))) {
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
            // CgroupsSet comes before the parent reads our RunHooks.
            cgroups_ready();
            // Let the runtime run prestart/createRuntime hooks, then run
            // createContainer hooks here, in the container's namespaces.
            if Message::RunHooks.send(&mut sock).is_err()
                || !matches!(Message::recv(&mut sock), Ok(Some(Message::Go)))
            {
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
    if Message::Ready.send(&mut sock).is_err() {
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

/// Turns the calling (forked) process into `process`, short of execve:
/// credentials, cwd, close-on-exec for every fd but stdio and the preserved
/// ones, the executable resolved in the container (never the host's runtime
/// binary), seccomp (unless no_new_privs defers it) and capabilities.
/// Returns what execve needs, whether no_new_privs is set, and the exec
/// stub to exec through (`confine::exec_through`).
#[allow(clippy::type_complexity)]
pub(super) fn become_process(
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

pub(super) fn rlimit_resource(
    t: oci_spec::runtime::PosixRlimitType,
) -> Option<libc::__rlimit_resource_t> {
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
pub(super) fn resolve_exe(arg0: &str, path: &str) -> Result<CString, Failed> {
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
pub(super) fn errno_text(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_lowercase(),
        None => s,
    }
}

pub(super) fn find_in_path(arg0: &str, path: &str) -> Option<String> {
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

/// Signal dispositions and the mask are inherited through clone and (for
/// ignored signals and the mask) through execve: the container's process
/// starts with every signal at its default and none blocked, whatever its
/// launcher had (Rust ignores SIGPIPE; `berth run` blocks the signals it
/// forwards).
pub(super) fn reset_signals() {
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
