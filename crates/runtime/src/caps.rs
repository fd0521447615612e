//! Capabilities: the bounding, effective, permitted, inheritable and ambient
//! sets of the container's process, applied in its init just before execve.
//!
//! Nothing here allocates on the way to the kernel, so it can run between
//! fork and exec.

use std::io;

use oci_spec::runtime::{Capabilities, Capability, LinuxCapabilities};

/// Errors changing the calling thread's capabilities.
#[derive(Debug, thiserror::Error)]
pub enum CapsError {
    /// `PR_CAPBSET_DROP` failed (it needs `CAP_SETPCAP`).
    #[error("cannot drop {cap} from the bounding set")]
    DropBounding {
        /// The capability.
        cap: &'static str,
        /// The kernel's answer.
        #[source]
        source: io::Error,
    },
    /// `capset` refused the effective, permitted or inheritable set.
    #[error("cannot set the effective, permitted and inheritable capabilities")]
    Capset(#[source] io::Error),
    /// `PR_CAP_AMBIENT_CLEAR_ALL` failed.
    #[error("cannot clear the ambient capabilities")]
    ClearAmbient(#[source] io::Error),
    /// `PR_CAP_AMBIENT_RAISE` failed (the capability must be permitted and
    /// inheritable).
    #[error("cannot raise {cap} in the ambient set")]
    RaiseAmbient {
        /// The capability.
        cap: &'static str,
        /// The kernel's answer.
        #[source]
        source: io::Error,
    },
    /// `PR_SET_KEEPCAPS` failed.
    #[error("cannot set keep-capabilities")]
    KeepCaps(#[source] io::Error),
    /// `PR_SET_NO_NEW_PRIVS` failed.
    #[error("cannot set no_new_privs")]
    NoNewPrivs(#[source] io::Error),
}

/// Every capability with its number, in the kernel's order.
const ALL: [(Capability, &str); 41] = [
    (Capability::Chown, "CAP_CHOWN"),
    (Capability::DacOverride, "CAP_DAC_OVERRIDE"),
    (Capability::DacReadSearch, "CAP_DAC_READ_SEARCH"),
    (Capability::Fowner, "CAP_FOWNER"),
    (Capability::Fsetid, "CAP_FSETID"),
    (Capability::Kill, "CAP_KILL"),
    (Capability::Setgid, "CAP_SETGID"),
    (Capability::Setuid, "CAP_SETUID"),
    (Capability::Setpcap, "CAP_SETPCAP"),
    (Capability::LinuxImmutable, "CAP_LINUX_IMMUTABLE"),
    (Capability::NetBindService, "CAP_NET_BIND_SERVICE"),
    (Capability::NetBroadcast, "CAP_NET_BROADCAST"),
    (Capability::NetAdmin, "CAP_NET_ADMIN"),
    (Capability::NetRaw, "CAP_NET_RAW"),
    (Capability::IpcLock, "CAP_IPC_LOCK"),
    (Capability::IpcOwner, "CAP_IPC_OWNER"),
    (Capability::SysModule, "CAP_SYS_MODULE"),
    (Capability::SysRawio, "CAP_SYS_RAWIO"),
    (Capability::SysChroot, "CAP_SYS_CHROOT"),
    (Capability::SysPtrace, "CAP_SYS_PTRACE"),
    (Capability::SysPacct, "CAP_SYS_PACCT"),
    (Capability::SysAdmin, "CAP_SYS_ADMIN"),
    (Capability::SysBoot, "CAP_SYS_BOOT"),
    (Capability::SysNice, "CAP_SYS_NICE"),
    (Capability::SysResource, "CAP_SYS_RESOURCE"),
    (Capability::SysTime, "CAP_SYS_TIME"),
    (Capability::SysTtyConfig, "CAP_SYS_TTY_CONFIG"),
    (Capability::Mknod, "CAP_MKNOD"),
    (Capability::Lease, "CAP_LEASE"),
    (Capability::AuditWrite, "CAP_AUDIT_WRITE"),
    (Capability::AuditControl, "CAP_AUDIT_CONTROL"),
    (Capability::Setfcap, "CAP_SETFCAP"),
    (Capability::MacOverride, "CAP_MAC_OVERRIDE"),
    (Capability::MacAdmin, "CAP_MAC_ADMIN"),
    (Capability::Syslog, "CAP_SYSLOG"),
    (Capability::WakeAlarm, "CAP_WAKE_ALARM"),
    (Capability::BlockSuspend, "CAP_BLOCK_SUSPEND"),
    (Capability::AuditRead, "CAP_AUDIT_READ"),
    (Capability::Perfmon, "CAP_PERFMON"),
    (Capability::Bpf, "CAP_BPF"),
    (Capability::CheckpointRestore, "CAP_CHECKPOINT_RESTORE"),
];

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

fn number(cap: Capability) -> u32 {
    ALL.iter()
        .position(|(c, _)| *c == cap)
        .expect("every capability is listed") as u32
}

fn name(cap: u32) -> &'static str {
    ALL[cap as usize].1
}

/// The highest capability the running kernel knows
/// (/proc/sys/kernel/cap_last_cap, else probed with `PR_CAPBSET_READ`).
fn last_cap() -> u32 {
    let mut buf = [0u8; 16];
    let path = c"/proc/sys/kernel/cap_last_cap";
    // SAFETY: open/read/close on a NUL-terminated path and a stack buffer.
    let n = unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
        if fd < 0 {
            -1
        } else {
            let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
            libc::close(fd);
            n
        }
    };
    if n > 0 {
        let text = &buf[..n as usize];
        let digits = text.iter().take_while(|b| b.is_ascii_digit());
        let value = digits.fold(0u32, |v, b| v * 10 + u32::from(b - b'0'));
        if text.first().is_some_and(u8::is_ascii_digit) {
            return value;
        }
    }
    let mut cap = 0;
    // SAFETY: PR_CAPBSET_READ only reads; EINVAL means no such capability.
    while cap < 63 && unsafe { libc::prctl(libc::PR_CAPBSET_READ, cap + 1, 0, 0, 0) } >= 0 {
        cap += 1;
    }
    cap as u32
}

/// The bits of `set`, leaving out capabilities above `last`.
fn mask(set: &Option<Capabilities>, last: u32, which: &str) -> u64 {
    let mut bits = 0;
    for cap in set.iter().flatten() {
        let n = number(*cap);
        if n > last {
            tracing::debug!(
                cap = name(n),
                set = which,
                "capability unknown to the kernel, ignored"
            );
        } else {
            bits |= 1 << n;
        }
    }
    bits
}

/// The five sets as bit masks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Masks {
    bounding: u64,
    effective: u64,
    permitted: u64,
    inheritable: u64,
    ambient: u64,
}

fn masks(caps: &LinuxCapabilities, last: u32) -> Masks {
    Masks {
        bounding: mask(caps.bounding(), last, "bounding"),
        effective: mask(caps.effective(), last, "effective"),
        permitted: mask(caps.permitted(), last, "permitted"),
        inheritable: mask(caps.inheritable(), last, "inheritable"),
        ambient: mask(caps.ambient(), last, "ambient"),
    }
}

/// Drops from the bounding set everything not in `bounding`, then sets
/// effective/permitted/inheritable with capset, then the ambient set
/// (PR_CAP_AMBIENT: clear all, raise each). A missing set is empty.
/// Unknown-to-kernel caps (above /proc/sys/kernel/cap_last_cap) are ignored
/// with a debug log, as runc does.
pub fn apply(caps: &LinuxCapabilities) -> Result<(), CapsError> {
    let last = last_cap();
    let m = masks(caps, last);
    drop_bounding_mask(m.bounding, last)?;
    set_sets(&m, last)
}

/// Only the bounding-set part of [`apply`]: it needs CAP_SETPCAP, so it runs
/// before a setuid to a non-root user; `apply` after the setuid finds the
/// drops done.
pub fn drop_bounding(caps: &LinuxCapabilities) -> Result<(), CapsError> {
    let last = last_cap();
    drop_bounding_mask(masks(caps, last).bounding, last)
}

fn drop_bounding_mask(bounding: u64, last: u32) -> Result<(), CapsError> {
    for cap in 0..=last {
        if bounding & (1 << cap) != 0 {
            continue;
        }
        // SAFETY: prctl with integer arguments.
        let present = unsafe { libc::prctl(libc::PR_CAPBSET_READ, cap, 0, 0, 0) };
        if present != 1 {
            continue; // already gone (or unknown): nothing to drop
        }
        // SAFETY: prctl with integer arguments.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) } != 0 {
            return Err(CapsError::DropBounding {
                cap: name(cap),
                source: io::Error::last_os_error(),
            });
        }
    }

    Ok(())
}

/// capset of effective/permitted/inheritable, then the ambient set.
fn set_sets(m: &Masks, last: u32) -> Result<(), CapsError> {
    let header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let split = |bits: u64| [bits as u32, (bits >> 32) as u32];
    let (e, p, i) = (split(m.effective), split(m.permitted), split(m.inheritable));
    let data = [
        CapData {
            effective: e[0],
            permitted: p[0],
            inheritable: i[0],
        },
        CapData {
            effective: e[1],
            permitted: p[1],
            inheritable: i[1],
        },
    ];
    // SAFETY: a version 3 header and the two data words it requires.
    if unsafe { libc::syscall(libc::SYS_capset, &header as *const CapHeader, data.as_ptr()) } != 0 {
        return Err(CapsError::Capset(io::Error::last_os_error()));
    }

    // SAFETY: prctl with integer arguments.
    let cleared = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        )
    };
    if cleared != 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EINVAL) && m.ambient == 0 {
            return Ok(()); // a kernel before 4.3: no ambient set to clear
        }
        return Err(CapsError::ClearAmbient(err));
    }
    for cap in 0..=last {
        if m.ambient & (1 << cap) == 0 {
            continue;
        }
        // SAFETY: prctl with integer arguments.
        let raised =
            unsafe { libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_RAISE, cap, 0, 0) };
        if raised != 0 {
            let err = io::Error::last_os_error();
            // The kernel refuses an ambient cap that is not both permitted
            // and inheritable (EPERM); runc warns and goes on, and configs
            // from `runc spec` rely on that.
            if err.raw_os_error() == Some(libc::EPERM) {
                tracing::debug!(cap = %name(cap), "cannot raise ambient capability (not permitted and inheritable); skipped");
                continue;
            }
            return Err(CapsError::RaiseAmbient {
                cap: name(cap),
                source: err,
            });
        }
    }
    Ok(())
}

/// PR_SET_KEEPCAPS so a setuid to non-root keeps permitted caps (call
/// before setuid), and clear it after.
pub fn keep_caps(on: bool) -> Result<(), CapsError> {
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, libc::c_ulong::from(on), 0, 0, 0) } != 0 {
        return Err(CapsError::KeepCaps(io::Error::last_os_error()));
    }
    Ok(())
}

/// Sets no_new_privs: execve can no longer grant privileges (setuid bits,
/// file capabilities), and seccomp filters may be loaded without
/// CAP_SYS_ADMIN.
pub fn set_no_new_privs() -> Result<(), CapsError> {
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(CapsError::NoNewPrivs(io::Error::last_os_error()));
    }
    Ok(())
}

/// The capability named `name` (`CAP_CHOWN`).
pub fn by_name(name: &str) -> Option<Capability> {
    ALL.iter().find(|(_, n)| *n == name).map(|(c, _)| *c)
}

/// Names of all capabilities this kernel knows (for `features`).
pub fn known() -> Vec<String> {
    let last = last_cap() as usize;
    ALL.iter()
        .take(last + 1)
        .map(|(_, name)| (*name).to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(caps: &[Capability]) -> Option<Capabilities> {
        Some(caps.iter().copied().collect())
    }

    fn bits(caps: &[Capability]) -> u64 {
        caps.iter().fold(0, |b, c| b | 1 << number(*c))
    }

    #[test]
    fn caps_numbers_match_the_kernel() {
        assert_eq!(number(Capability::Chown), 0);
        assert_eq!(number(Capability::SysAdmin), 21);
        assert_eq!(number(Capability::AuditRead), 37);
        assert_eq!(number(Capability::CheckpointRestore), 40);
        for (n, (cap, name)) in ALL.iter().enumerate() {
            assert_eq!(
                serde_json::to_value(cap).unwrap(),
                serde_json::json!(name),
                "{n}"
            );
            let parsed: Capability = serde_json::from_value(serde_json::json!(name)).unwrap();
            assert_eq!(parsed, *cap);
        }
    }

    #[test]
    fn caps_known_follows_cap_last_cap() {
        let known = known();
        let text = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap").unwrap();
        let last: usize = text.trim().parse().unwrap();
        assert_eq!(known.len(), (last + 1).min(ALL.len()));
        assert_eq!(known[0], "CAP_CHOWN");
        assert_eq!(last_cap() as usize, last);
    }

    #[test]
    fn caps_above_the_kernels_last_are_ignored() {
        let mut caps = LinuxCapabilities::default();
        caps.set_bounding(set(&[
            Capability::Chown,
            Capability::Bpf,
            Capability::CheckpointRestore,
        ]));
        caps.set_ambient(None);
        let m = masks(&caps, 37);
        assert_eq!(m.bounding, 1);
        assert_eq!(m.ambient, 0);
        assert_eq!(
            m.effective,
            bits(&[
                Capability::AuditWrite,
                Capability::Kill,
                Capability::NetBindService
            ])
        );
        assert_eq!(masks(&caps, 40).bounding, 1 | 1 << 39 | 1 << 40);
    }

    /// Runs `f` in a forked child; returns its exit status (or 128 + signal).
    /// The child must not allocate: the test process has threads.
    fn in_child(f: impl FnOnce() -> i32) -> i32 {
        // SAFETY: the child only makes system calls and leaves with _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let code = f();
            // SAFETY: ends the forked child without the parent's exit handlers.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waits for the child forked above.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            128 + libc::WTERMSIG(status)
        }
    }

    /// The hex value of `field` ("CapEff") in /proc/self/status, without
    /// allocating.
    fn status_field(field: &[u8]) -> Option<u64> {
        let mut buf = [0u8; 8192];
        let path = c"/proc/self/status";
        // SAFETY: open/read/close on a NUL-terminated path and a stack buffer.
        let n = unsafe {
            let fd = libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
            if fd < 0 {
                return None;
            }
            let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
            libc::close(fd);
            n
        };
        let text = buf.get(..usize::try_from(n).ok()?)?;
        for line in text.split(|b| *b == b'\n') {
            if line.starts_with(field) && line.get(field.len()) == Some(&b':') {
                let mut hex = line[field.len() + 1..]
                    .iter()
                    .filter(|b| !b.is_ascii_whitespace());
                return hex.try_fold(0u64, |v, b| {
                    Some(v << 4 | u64::from((*b as char).to_digit(16)?))
                });
            }
        }
        None
    }

    fn privileged() -> bool {
        // SAFETY: geteuid and prctl only read.
        unsafe { libc::geteuid() == 0 && libc::prctl(libc::PR_CAPBSET_READ, 8, 0, 0, 0) == 1 }
    }

    #[test]
    fn caps_apply_limits_the_process() {
        if !privileged() {
            crate::skip(
                "caps_apply_limits_the_process",
                "needs root with CAP_SETPCAP",
            );
            return;
        }
        let bounding = [
            Capability::Chown,
            Capability::Kill,
            Capability::NetBindService,
        ];
        let mut caps = LinuxCapabilities::default();
        caps.set_bounding(set(&bounding));
        caps.set_effective(set(&[Capability::Chown, Capability::Kill]));
        caps.set_permitted(set(&[Capability::Chown, Capability::Kill]));
        caps.set_inheritable(set(&[Capability::Chown]));
        caps.set_ambient(set(&[Capability::Chown]));
        let want_bnd = bits(&bounding);
        let want_eff = bits(&[Capability::Chown, Capability::Kill]);
        let want_inh = bits(&[Capability::Chown]);

        let code = in_child(|| {
            // A UTS namespace of its own, so a sethostname that wrongly
            // succeeds changes nothing outside.
            // SAFETY: unshare with a flag.
            if unsafe { libc::unshare(libc::CLONE_NEWUTS) } != 0 {
                return 2;
            }
            if apply(&caps).is_err() {
                return 3;
            }
            let name = b"berth-caps-test";
            // SAFETY: a valid buffer and its length.
            if unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) } != -1 {
                return 4;
            }
            if io::Error::last_os_error().raw_os_error() != Some(libc::EPERM) {
                return 5;
            }
            let checks = [
                (&b"CapBnd"[..], want_bnd),
                (b"CapEff", want_eff),
                (b"CapPrm", want_eff),
                (b"CapInh", want_inh),
                (b"CapAmb", want_inh),
            ];
            for (i, (field, want)) in checks.iter().enumerate() {
                if status_field(field) != Some(*want) {
                    return 10 + i as i32;
                }
            }
            0
        });
        assert_eq!(code, 0);
    }

    #[test]
    fn caps_keep_caps_across_setuid() {
        if !privileged() {
            crate::skip(
                "caps_keep_caps_across_setuid",
                "needs root with CAP_SETPCAP",
            );
            return;
        }
        for keep in [true, false] {
            let code = in_child(|| {
                if keep_caps(keep).is_err() {
                    return 2;
                }
                // SAFETY: setresuid with integer ids.
                if unsafe { libc::setresuid(65534, 65534, 65534) } != 0 {
                    return 3;
                }
                let kept = status_field(b"CapPrm").is_some_and(|p| p != 0);
                if keep_caps(false).is_err() {
                    return 4;
                }
                if kept == keep {
                    0
                } else {
                    5
                }
            });
            assert_eq!(code, 0, "keep_caps({keep})");
        }
    }

    #[test]
    fn caps_no_new_privs() {
        let code = in_child(|| {
            if set_no_new_privs().is_err() {
                return 2;
            }
            // SAFETY: prctl with integer arguments.
            i32::from(unsafe { libc::prctl(libc::PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) } != 1)
        });
        assert_eq!(code, 0);
    }
}
