//! Seccomp: compiles the OCI `linux.seccomp` section into a classic BPF
//! program and loads it, and converts Docker's profile format to OCI.
//!
//! berth compiles the filter itself instead of linking libseccomp: the
//! syscall tables for x86_64, i386 and x32 are below, and a filter is a
//! binary search over syscall numbers, so Docker's default profile compiles
//! in tens of microseconds and costs a few comparisons per syscall.
//!
//! Semantics follow runc with libseccomp:
//! - names unknown on every architecture are skipped with a debug log;
//!   a name missing on one architecture is skipped there;
//! - a rule whose action equals the default action is skipped;
//! - the conditions of one rule must all hold (AND); if two conditions
//!   name the same argument, each becomes a rule of its own (OR);
//! - for one syscall, a rule without conditions wins; otherwise the first
//!   rule (in the spec's order) whose conditions hold decides, and the
//!   default action applies when none does;
//! - on i386 a rule on a socket or SysV IPC call also matches the
//!   `socketcall`/`ipc` multiplexer with that call's number as its first
//!   argument (the other conditions cannot be checked there, as in
//!   libseccomp);
//! - 32-bit ABIs (i386, x32) compare the low 32 bits of arguments;
//! - syscalls numbered above the highest one the profile names return
//!   `ENOSYS` unless the default action allows (runc's stub), so a libc can
//!   fall back from a syscall newer than the profile;
//! - a syscall from an architecture the filter does not list kills the
//!   thread (libseccomp's bad-architecture action).

mod codegen;
mod compile;
mod rules;
mod syscalls;
#[cfg(test)]
mod tests;

pub use compile::compile;

use std::os::fd::{FromRawFd, OwnedFd};

/// Errors compiling or loading a seccomp filter.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// A syscall argument index above 5.
    #[error("seccomp rule for {syscall} compares argument {index}, but syscalls have 6 (0-5)")]
    ArgIndex {
        /// The syscall the rule names.
        syscall: String,
        /// The argument index given.
        index: usize,
    },
    /// An errno that does not fit the 16 bits of a seccomp return value.
    #[error("seccomp errno return value {0} is out of range (at most 65535)")]
    ErrnoRange(u32),
    /// `SCMP_ACT_NOTIFY` where it cannot work.
    #[error("SCMP_ACT_NOTIFY cannot be used {0}")]
    Notify(&'static str),
    /// More instructions than the kernel accepts.
    #[error("seccomp filter needs {0} BPF instructions, more than the kernel's 4096")]
    TooLarge(usize),
    /// Compiling a filter on a host architecture berth has no tables for.
    #[error("seccomp filters are only supported on x86_64 hosts")]
    UnsupportedHost,
    /// `load` on a filter with `SCMP_ACT_NOTIFY` rules.
    #[error("the seccomp filter notifies a listener: load it with load_with_listener")]
    NeedsListener,
    /// `seccomp(SECCOMP_SET_MODE_FILTER)` failed.
    #[error("cannot load the seccomp filter")]
    Load(#[source] std::io::Error),
    /// `SECCOMP_FILTER_FLAG_TSYNC` could not synchronise another thread.
    #[error("cannot load the seccomp filter: thread {0} cannot be synchronised")]
    Tsync(i64),
}

const FLAG_TSYNC: u32 = 1;
const FLAG_LOG: u32 = 2;
const FLAG_SPEC_ALLOW: u32 = 4;
const FLAG_NEW_LISTENER: u32 = 8;
const FLAG_TSYNC_ESRCH: u32 = 16;
const FLAG_WAIT_KILLABLE_RECV: u32 = 32;

const SECCOMP_SET_MODE_FILTER: libc::c_ulong = 1;

/// A compiled seccomp filter, ready to load.
pub struct Filter {
    program: Vec<libc::sock_filter>,
    flags: u32,
}

impl std::fmt::Debug for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Filter")
            .field("instructions", &self.program.len())
            .field("flags", &self.flags)
            .finish()
    }
}

impl Filter {
    /// The compiled classic BPF program, for inspection and tests.
    pub fn program(&self) -> &[libc::sock_filter] {
        &self.program
    }

    /// Whether the filter has `SCMP_ACT_NOTIFY` rules, which need a
    /// listener (see [`Filter::load_with_listener`]).
    pub fn needs_listener(&self) -> bool {
        self.flags & FLAG_NEW_LISTENER != 0
    }

    /// Loads it into the calling thread (seccomp(SECCOMP_SET_MODE_FILTER)
    /// with flags like TSYNC/LOG/SPEC_ALLOW from the spec). Needs
    /// no_new_privs or CAP_SYS_ADMIN. Does not allocate, so it may run
    /// between fork and exec.
    pub fn load(&self) -> Result<(), SeccompError> {
        if self.needs_listener() {
            return Err(SeccompError::NeedsListener);
        }
        self.install().map(drop)
    }

    /// Like [`Filter::load`], and returns the notification listener's fd
    /// when the filter has `SCMP_ACT_NOTIFY` rules.
    pub fn load_with_listener(&self) -> Result<Option<OwnedFd>, SeccompError> {
        self.install()
    }

    fn install(&self) -> Result<Option<OwnedFd>, SeccompError> {
        let prog = libc::sock_fprog {
            len: self.program.len() as libc::c_ushort,
            filter: self.program.as_ptr().cast_mut(),
        };
        // SAFETY: `prog` points to `len` valid instructions that outlive the
        // call; the kernel copies the program.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                SECCOMP_SET_MODE_FILTER,
                libc::c_ulong::from(self.flags),
                &prog as *const libc::sock_fprog,
            )
        };
        if ret < 0 {
            return Err(SeccompError::Load(std::io::Error::last_os_error()));
        }
        if self.needs_listener() {
            // SAFETY: with SECCOMP_FILTER_FLAG_NEW_LISTENER the kernel
            // returns a new fd that nothing else owns.
            return Ok(Some(unsafe { OwnedFd::from_raw_fd(ret as i32) }));
        }
        if ret > 0 && self.flags & FLAG_TSYNC != 0 {
            return Err(SeccompError::Tsync(ret));
        }
        Ok(None)
    }
}
