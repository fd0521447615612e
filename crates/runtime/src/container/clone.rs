//! Making the child: `clone3` into new namespaces (and straight into its
//! cgroup when the kernel can), joining namespaces by path, user
//! namespace id maps, and reaping.

use std::fs;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

use oci_spec::runtime::{LinuxNamespaceType, Spec};

use super::error::{sys, ContainerError};

pub(super) fn ns_flag(t: LinuxNamespaceType) -> libc::c_int {
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

pub(super) enum CloneError {
    /// clone3 or CLONE_INTO_CGROUP is not available.
    IntoCgroup,
    Failed(io::Error),
}

/// Clones init into new namespaces (`flags`), born in the cgroup2
/// directory `cgroup` when given (clone3, CLONE_INTO_CGROUP). Returns 0 in
/// the child, as fork does.
pub(super) fn clone_init(
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
        if pid == 0 {
            panics_end_the_child();
        }
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
    if pid == 0 {
        panics_end_the_child();
    }
    Ok(pid as i32)
}

/// In a cloned child: a panic ends it at once, before any unwinding, so
/// that no cleanup of the caller's frames (which belongs to the parent)
/// runs in the child, whatever the binary's panic strategy.
fn panics_end_the_child() {
    std::panic::set_hook(Box::new(|_| {
        // SAFETY: _exit ends this child process at once; nothing of the
        // parent's state is touched.
        unsafe { libc::_exit(255) }
    }));
}

/// Writes /proc/PID/{uid,gid}_map from the config's mappings.
pub(super) fn write_id_maps(spec: &Spec, pid: i32) -> Result<(), ContainerError> {
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

pub(super) fn setns_path(path: &Path, nstype: libc::c_int) -> Result<(), ContainerError> {
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

/// Waits for a child; its exit code, or 128+N for a signal.
pub(super) fn wait_code(pid: i32) -> i32 {
    let mut status = 0;
    // SAFETY: pid is our own child.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    if r < 0 {
        255
    } else {
        crate::signal::exit_code(status)
    }
}
