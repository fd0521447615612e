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

use std::os::fd::{FromRawFd, OwnedFd};

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag,
    LinuxSeccompOperator, LinuxSyscall,
};

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

// ---------------------------------------------------------------------------
// Compiling
// ---------------------------------------------------------------------------

const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
const AUDIT_ARCH_I386: u32 = 0x4000_0003;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

const RET_KILL_THREAD: u32 = 0x0000_0000;
const RET_KILL_PROCESS: u32 = 0x8000_0000;
const RET_TRAP: u32 = 0x0003_0000;
const RET_ERRNO: u32 = 0x0005_0000;
const RET_USER_NOTIF: u32 = 0x7fc0_0000;
const RET_TRACE: u32 = 0x7ff0_0000;
const RET_LOG: u32 = 0x7ffc_0000;
const RET_ALLOW: u32 = 0x7fff_0000;

const FLAG_TSYNC: u32 = 1;
const FLAG_LOG: u32 = 2;
const FLAG_SPEC_ALLOW: u32 = 4;
const FLAG_NEW_LISTENER: u32 = 8;
const FLAG_TSYNC_ESRCH: u32 = 16;
const FLAG_WAIT_KILLABLE_RECV: u32 = 32;

const SECCOMP_SET_MODE_FILTER: libc::c_ulong = 1;
/// The kernel's limit on a classic BPF program (`BPF_MAXINSNS`).
const MAX_INSNS: usize = 4096;

// Classic BPF opcodes.
const LD_W_ABS: u16 = 0x20;
const JMP_JA: u16 = 0x05;
const JMP_JEQ_K: u16 = 0x15;
const JMP_JGT_K: u16 = 0x25;
const JMP_JGE_K: u16 = 0x35;
const ALU_AND_K: u16 = 0x54;
const RET_K: u16 = 0x06;

// Offsets in `struct seccomp_data`.
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const OFF_ARGS: u32 = 16;

/// The three syscall ABIs of an x86_64 kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Abi {
    X86_64 = 0,
    I386 = 1,
    X32 = 2,
}

impl Abi {
    const ALL: [Abi; 3] = [Abi::X86_64, Abi::I386, Abi::X32];

    /// The number of `name` in this ABI (x32 numbers carry the x32 bit).
    #[cfg(test)]
    fn resolve(self, name: &str) -> Option<u32> {
        self.number(lookup(name)?)
    }

    /// This ABI's number in a table row.
    fn number(self, row: &Row) -> Option<u32> {
        let nr = match self {
            Abi::X86_64 => row.1,
            Abi::I386 => row.2,
            Abi::X32 => row.3,
        };
        let nr = u32::try_from(nr).ok()?;
        Some(if self == Abi::X32 {
            nr | X32_SYSCALL_BIT
        } else {
            nr
        })
    }

    /// Arguments are compared on their low 32 bits only.
    fn is_32bit(self) -> bool {
        self != Abi::X86_64
    }
}

/// A syscall's name and numbers on x86_64, i386 and x32 (-1: none).
type Row = (&'static str, i16, i16, i16);

fn lookup(name: &str) -> Option<&'static Row> {
    let mut slot = fnv1a(name.as_bytes()) as usize;
    loop {
        slot &= INDEX.len() - 1;
        let row = SYSCALLS.get(usize::from(INDEX[slot]))?;
        if row.0 == name {
            return Some(row);
        }
        slot += 1;
    }
}

const fn fnv1a(bytes: &[u8]) -> u32 {
    let mut hash = 0x811c_9dc5_u32;
    let mut i = 0;
    while i < bytes.len() {
        hash = (hash ^ bytes[i] as u32).wrapping_mul(0x0100_0193);
        i += 1;
    }
    hash
}

/// An open-addressing hash index into [`SYSCALLS`], built at compile time
/// (`u16::MAX`: empty), so resolving a profile's names costs tens of
/// nanoseconds each.
static INDEX: [u16; 1024] = {
    let mut index = [u16::MAX; 1024];
    let mut i = 0;
    while i < SYSCALLS.len() {
        let mut slot = fnv1a(SYSCALLS[i].0.as_bytes()) as usize % 1024;
        while index[slot] != u16::MAX {
            slot = (slot + 1) % 1024;
        }
        index[slot] = i as u16;
        i += 1;
    }
    index
};

/// i386's `socketcall` (102) and `ipc` (117).
const I386_SOCKETCALL: u32 = 102;
const I386_IPC: u32 = 117;

/// On i386, socket calls are also reachable through `socketcall(call, args)`
/// and SysV IPC calls through `ipc(call, ...)`: the multiplexer's number
/// and the call's.
fn i386_multiplexed(name: &str) -> Option<(u32, u32)> {
    let socketcall = match name {
        "socket" => 1,
        "bind" => 2,
        "connect" => 3,
        "listen" => 4,
        "accept" => 5,
        "getsockname" => 6,
        "getpeername" => 7,
        "socketpair" => 8,
        "send" => 9,
        "recv" => 10,
        "sendto" => 11,
        "recvfrom" => 12,
        "shutdown" => 13,
        "setsockopt" => 14,
        "getsockopt" => 15,
        "sendmsg" => 16,
        "recvmsg" => 17,
        "accept4" => 18,
        "recvmmsg" => 19,
        "sendmmsg" => 20,
        _ => 0,
    };
    if socketcall != 0 {
        return Some((I386_SOCKETCALL, socketcall));
    }
    let ipc = match name {
        "semop" => 1,
        "semget" => 2,
        "semctl" => 3,
        "semtimedop" => 4,
        "msgsnd" => 11,
        "msgrcv" => 12,
        "msgget" => 13,
        "msgctl" => 14,
        "shmat" => 21,
        "shmdt" => 22,
        "shmget" => 23,
        "shmctl" => 24,
        _ => return None,
    };
    Some((I386_IPC, ipc))
}

/// One comparison of a syscall argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Cond {
    index: u32,
    op: LinuxSeccompOperator,
    value: u64,
    value_two: u64,
}

impl Cond {
    /// A masked comparison whose mask is 0 in this ABI always holds; like
    /// libseccomp, such a condition is dropped, and a rule left without
    /// conditions is unconditional.
    fn always_true(&self, abi: Abi) -> bool {
        let mask = if abi.is_32bit() {
            self.value & 0xffff_ffff
        } else {
            self.value
        };
        self.op == LinuxSeccompOperator::ScmpCmpMaskedEq && mask == 0
    }
}

/// The rules of one syscall number in one ABI.
#[derive(Default)]
struct SysRules {
    /// The action of the first rule without conditions.
    unconditional: Option<u32>,
    /// Rules with conditions, in the spec's order.
    conditional: Vec<(Vec<Cond>, u32)>,
}

/// What one ABI's filter decides per syscall number.
#[derive(Default)]
struct AbiRules {
    enabled: bool,
    /// Rules by syscall number without the x32 bit (every number in
    /// [`SYSCALLS`] is below [`TABLE_LEN`]).
    by_nr: Vec<SysRules>,
    /// The highest number the profile names in this ABI.
    max_nr: Option<u32>,
}

const TABLE_LEN: usize = 1024;

impl AbiRules {
    fn entry(&mut self, nr: u32) -> &mut SysRules {
        if self.by_nr.is_empty() {
            self.by_nr.resize_with(TABLE_LEN, SysRules::default);
        }
        &mut self.by_nr[(nr & !X32_SYSCALL_BIT) as usize]
    }
}

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

/// The seccomp return value of an action.
fn action_value(action: LinuxSeccompAction, errno: Option<u32>) -> Result<u32, SeccompError> {
    let data = match errno {
        Some(e) if e > 0xffff => return Err(SeccompError::ErrnoRange(e)),
        Some(e) => e,
        None => libc::EPERM as u32,
    };
    Ok(match action {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => RET_KILL_THREAD,
        LinuxSeccompAction::ScmpActKillProcess => RET_KILL_PROCESS,
        LinuxSeccompAction::ScmpActTrap => RET_TRAP,
        LinuxSeccompAction::ScmpActErrno => RET_ERRNO | data,
        LinuxSeccompAction::ScmpActTrace => RET_TRACE | data,
        LinuxSeccompAction::ScmpActLog => RET_LOG,
        LinuxSeccompAction::ScmpActAllow => RET_ALLOW,
        LinuxSeccompAction::ScmpActNotify => RET_USER_NOTIF,
    })
}

/// Compiles the OCI seccomp section (defaultAction, defaultErrnoRet,
/// architectures, flags, syscalls with names/action/errnoRet/args) into a
/// filter for this host.
pub fn compile(spec: &LinuxSeccomp) -> Result<Filter, SeccompError> {
    if !cfg!(target_arch = "x86_64") {
        return Err(SeccompError::UnsupportedHost);
    }
    let default_action = spec.default_action();
    if default_action == LinuxSeccompAction::ScmpActNotify {
        return Err(SeccompError::Notify("as the default action"));
    }
    let default = action_value(default_action, spec.default_errno_ret())?;

    let mut abis: [AbiRules; 3] = Default::default();
    abis[Abi::X86_64 as usize].enabled = true; // native, as libseccomp
    for arch in spec.architectures().iter().flatten() {
        match arch {
            Arch::ScmpArchNative | Arch::ScmpArchX86_64 => {
                abis[Abi::X86_64 as usize].enabled = true
            }
            Arch::ScmpArchX86 => abis[Abi::I386 as usize].enabled = true,
            Arch::ScmpArchX32 => abis[Abi::X32 as usize].enabled = true,
            other => {
                tracing::debug!(arch = %other, "seccomp architecture cannot occur on this host, ignored")
            }
        }
    }

    let mut flags = 0;
    let mut wait_killable = false;
    for flag in spec.flags().iter().flatten() {
        match flag {
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => flags |= FLAG_TSYNC,
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => flags |= FLAG_LOG,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => flags |= FLAG_SPEC_ALLOW,
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => wait_killable = true,
        }
    }

    for syscall in spec.syscalls().iter().flatten() {
        add_syscall(&mut abis, syscall, default, &mut flags)?;
    }
    if flags & FLAG_NEW_LISTENER != 0 {
        if wait_killable {
            flags |= FLAG_WAIT_KILLABLE_RECV;
        }
        if flags & FLAG_TSYNC != 0 {
            flags |= FLAG_TSYNC_ESRCH;
        }
    }

    // runc's -ENOSYS stub: unknown (newer) syscalls fail as "not
    // implemented" rather than with the default errno.
    let enosys = !matches!(
        default_action,
        LinuxSeccompAction::ScmpActAllow
            | LinuxSeccompAction::ScmpActLog
            | LinuxSeccompAction::ScmpActTrace
    ) && default != RET_ERRNO | libc::ENOSYS as u32;

    let program = generate(&abis, default, enosys)?;
    Ok(Filter { program, flags })
}

fn add_syscall(
    abis: &mut [AbiRules; 3],
    syscall: &LinuxSyscall,
    default: u32,
    flags: &mut u32,
) -> Result<(), SeccompError> {
    let action = action_value(syscall.action(), syscall.errno_ret())?;
    let notify = syscall.action() == LinuxSeccompAction::ScmpActNotify;
    if notify {
        if syscall.names().iter().any(|n| n == "write") {
            // The runtime reports the listener fd to its parent with write.
            return Err(SeccompError::Notify("for the write syscall"));
        }
        *flags |= FLAG_NEW_LISTENER;
    }

    let mut conds = Vec::new();
    for arg in syscall.args().iter().flatten() {
        conds.push(cond(arg, syscall.names())?);
    }
    // Two conditions on one argument: each becomes its own rule (runc).
    let split = conds
        .iter()
        .enumerate()
        .any(|(i, c)| conds[..i].iter().any(|d| d.index == c.index));
    let rules: Vec<Vec<Cond>> = if split {
        conds.iter().map(|c| vec![*c]).collect()
    } else {
        vec![conds]
    };

    let i386 = abis[Abi::I386 as usize].enabled;
    for name in syscall.names() {
        let row = lookup(name);
        let muxed = if i386 { i386_multiplexed(name) } else { None };
        if row.is_none() && muxed.is_none() {
            tracing::debug!(syscall = %name, "unknown seccomp syscall ignored");
            continue;
        }
        for abi in Abi::ALL {
            let abi_rules = &mut abis[abi as usize];
            if !abi_rules.enabled {
                continue;
            }
            let direct = row.and_then(|row| abi.number(row));
            if let Some(nr) = direct {
                abi_rules.max_nr = Some(abi_rules.max_nr.map_or(nr, |m| m.max(nr)));
            }
            if action == default {
                continue; // redundant, as runc
            }
            if let Some(nr) = direct {
                let entry = abi_rules.entry(nr);
                for rule in &rules {
                    if rule.iter().any(|c| c.always_true(abi)) {
                        let rule: Vec<Cond> = rule
                            .iter()
                            .filter(|c| !c.always_true(abi))
                            .copied()
                            .collect();
                        add_rule(entry, &rule, action);
                    } else {
                        add_rule(entry, rule, action);
                    }
                }
            }
            if let (Abi::I386, Some((mux, call))) = (abi, muxed) {
                let by_call = [Cond {
                    index: 0,
                    op: LinuxSeccompOperator::ScmpCmpEq,
                    value: u64::from(call),
                    value_two: 0,
                }];
                add_rule(abi_rules.entry(mux), &by_call, action);
            }
        }
    }
    Ok(())
}

fn add_rule(entry: &mut SysRules, conds: &[Cond], action: u32) {
    if conds.is_empty() {
        entry.unconditional.get_or_insert(action);
    } else if !entry.conditional.iter().any(|(c, _)| c == conds) {
        entry.conditional.push((conds.to_vec(), action));
    }
}

fn cond(arg: &LinuxSeccompArg, names: &[String]) -> Result<Cond, SeccompError> {
    if arg.index() > 5 {
        return Err(SeccompError::ArgIndex {
            syscall: names.join(","),
            index: arg.index(),
        });
    }
    Ok(Cond {
        index: arg.index() as u32,
        op: arg.op(),
        value: arg.value(),
        value_two: arg.value_two().unwrap_or(0),
    })
}

// ---------------------------------------------------------------------------
// Code generation
// ---------------------------------------------------------------------------

/// What a range of syscall numbers leads to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Leaf<'a> {
    Ret(u32),
    Rules(&'a [(Vec<Cond>, u32)]),
}

/// Builds a program back to front, so every jump target is known when the
/// jump is written. A label is an instruction's distance from the end.
struct Emitter {
    rev: Vec<libc::sock_filter>,
    rets: Vec<(u32, usize)>,
}

type Label = usize;

impl Emitter {
    fn push(&mut self, code: u16, jt: u8, jf: u8, k: u32) -> Label {
        self.rev.push(libc::sock_filter { code, jt, jf, k });
        self.rev.len() - 1
    }

    /// Offset from the next instruction to `target`.
    fn offset(&self, target: Label) -> usize {
        self.rev.len() - target - 1
    }

    fn ret(&mut self, value: u32) -> Label {
        if let Some(&(_, label)) = self.rets.iter().find(|(v, _)| *v == value) {
            if self.offset(label) <= 255 {
                return label;
            }
        }
        let label = self.push(RET_K, 0, 0, value);
        match self.rets.iter_mut().find(|(v, _)| *v == value) {
            Some(slot) => slot.1 = label,
            None => self.rets.push((value, label)),
        }
        label
    }

    fn load(&mut self, offset: u32) -> Label {
        self.push(LD_W_ABS, 0, 0, offset)
    }

    fn and(&mut self, mask: u32) -> Label {
        self.push(ALU_AND_K, 0, 0, mask)
    }

    /// A conditional jump; long targets go through a `ja`.
    fn jump(&mut self, code: u16, k: u32, mut t: Label, mut f: Label) -> Label {
        if t == f {
            return t;
        }
        // 254 leaves room for a trampoline to `f` after this one.
        if self.offset(t) > 254 {
            t = self.push(JMP_JA, 0, 0, self.offset(t) as u32);
        }
        if self.offset(f) > 255 {
            f = self.push(JMP_JA, 0, 0, self.offset(f) as u32);
        }
        let (jt, jf) = (self.offset(t) as u8, self.offset(f) as u8);
        self.push(code, jt, jf, k)
    }

    /// Tests one argument condition, going to `t` if it holds, else `f`.
    fn cond(&mut self, c: &Cond, abi: Abi, t: Label, f: Label) -> Label {
        use LinuxSeccompOperator as Op;
        if t == f {
            return t;
        }
        let lo = OFF_ARGS + 8 * c.index;
        let hi = lo + 4;
        let (v_lo, v_hi) = (c.value as u32, (c.value >> 32) as u32);
        let wide = !abi.is_32bit();
        match c.op {
            Op::ScmpCmpEq | Op::ScmpCmpNe => {
                let (t, f) = if c.op == Op::ScmpCmpEq {
                    (t, f)
                } else {
                    (f, t)
                };
                let mut entry = self.jump(JMP_JEQ_K, v_lo, t, f);
                entry = self.load_before(entry, lo);
                if wide {
                    entry = self.jump(JMP_JEQ_K, v_hi, entry, f);
                    entry = self.load_before(entry, hi);
                }
                entry
            }
            Op::ScmpCmpGt | Op::ScmpCmpGe | Op::ScmpCmpLt | Op::ScmpCmpLe => {
                // a < v is !(a >= v); a <= v is !(a > v).
                let (code, t, f) = match c.op {
                    Op::ScmpCmpGt => (JMP_JGT_K, t, f),
                    Op::ScmpCmpGe => (JMP_JGE_K, t, f),
                    Op::ScmpCmpLt => (JMP_JGE_K, f, t),
                    _ => (JMP_JGT_K, f, t),
                };
                let mut entry = self.jump(code, v_lo, t, f);
                entry = self.load_before(entry, lo);
                if wide {
                    // hi > v_hi decides; hi == v_hi defers to the low word.
                    let eq = self.jump(JMP_JEQ_K, v_hi, entry, f);
                    entry = self.jump(JMP_JGT_K, v_hi, t, eq);
                    entry = self.load_before(entry, hi);
                }
                entry
            }
            Op::ScmpCmpMaskedEq => {
                // (arg & mask) == (datum & mask), as libseccomp defines it;
                // a word whose mask is 0 always matches.
                let (m_lo, m_hi) = (v_lo, v_hi);
                let datum = c.value_two & c.value;
                let (d_lo, d_hi) = (datum as u32, (datum >> 32) as u32);
                let mut entry = t;
                if m_lo != 0 {
                    entry = self.jump(JMP_JEQ_K, d_lo, t, f);
                    entry = self.and_before(entry, m_lo);
                    entry = self.load_before(entry, lo);
                }
                if wide && m_hi != 0 {
                    entry = self.jump(JMP_JEQ_K, d_hi, entry, f);
                    entry = self.and_before(entry, m_hi);
                    entry = self.load_before(entry, hi);
                }
                entry
            }
        }
    }

    /// Puts a load in front of `next`, which must be the last instruction
    /// written (loads fall through).
    fn load_before(&mut self, next: Label, offset: u32) -> Label {
        if next + 1 == self.rev.len() {
            self.load(offset)
        } else {
            // `next` was shared (t == f): jump to it after loading.
            let ja = self.push(JMP_JA, 0, 0, self.offset(next) as u32);
            debug_assert_eq!(ja + 1, self.rev.len());
            self.load(offset)
        }
    }

    fn and_before(&mut self, next: Label, mask: u32) -> Label {
        if next + 1 != self.rev.len() {
            self.push(JMP_JA, 0, 0, self.offset(next) as u32);
        }
        self.and(mask)
    }

    /// A syscall's conditional rules, falling back to `fallback`.
    fn rules(&mut self, rules: &[(Vec<Cond>, u32)], abi: Abi, fallback: u32) -> Label {
        let mut next = self.ret(fallback);
        for (conds, action) in rules.iter().rev() {
            let mut entry = self.ret(*action);
            for c in conds.iter().rev() {
                entry = self.cond(c, abi, entry, next);
            }
            next = entry;
        }
        next
    }

    /// A binary search over `segments` (start, leaf); the accumulator holds
    /// the syscall number.
    fn tree(&mut self, segments: &[(u32, Leaf)], abi: Abi, default: u32) -> Label {
        if let [(_, leaf)] = segments {
            return match *leaf {
                Leaf::Ret(value) => self.ret(value),
                Leaf::Rules(rules) => self.rules(rules, abi, default),
            };
        }
        let mid = segments.len() / 2;
        let right = self.tree(&segments[mid..], abi, default);
        let left = self.tree(&segments[..mid], abi, default);
        self.jump(JMP_JGE_K, segments[mid].0, right, left)
    }
}

/// Splits `lo..=hi` into ranges of syscall numbers with the same outcome.
fn segments<'a>(
    rules: &'a AbiRules,
    lo: u32,
    hi: u32,
    default: u32,
    enosys: bool,
) -> Vec<(u32, Leaf<'a>)> {
    let enosys_from = match rules.max_nr {
        Some(max) if enosys && max < hi => Some(max + 1),
        _ => None,
    };
    let mut out: Vec<(u32, Leaf)> = Vec::new();
    let push = |out: &mut Vec<(u32, Leaf<'a>)>, start: u32, leaf: Leaf<'a>| {
        if out
            .last()
            .is_some_and(|(_, last)| *last == leaf && matches!(leaf, Leaf::Ret(_)))
        {
            return;
        }
        out.push((start, leaf));
    };
    let mut next = lo;
    let used = rules
        .by_nr
        .iter()
        .enumerate()
        .filter(|(_, sys)| sys.unconditional.is_some() || !sys.conditional.is_empty());
    for (i, sys) in used {
        let nr = i as u32 | (lo & X32_SYSCALL_BIT);
        if nr > next {
            push(&mut out, next, Leaf::Ret(default));
        }
        let leaf = match sys.unconditional {
            Some(action) => Leaf::Ret(action),
            None => Leaf::Rules(&sys.conditional),
        };
        push(&mut out, nr, leaf);
        next = nr.wrapping_add(1);
        if nr == hi {
            return out;
        }
    }
    match enosys_from {
        Some(from) => {
            if from > next {
                push(&mut out, next, Leaf::Ret(default));
            }
            push(
                &mut out,
                from.max(next),
                Leaf::Ret(RET_ERRNO | libc::ENOSYS as u32),
            );
        }
        None => push(&mut out, next, Leaf::Ret(default)),
    }
    out
}

fn generate(
    abis: &[AbiRules; 3],
    default: u32,
    enosys: bool,
) -> Result<Vec<libc::sock_filter>, SeccompError> {
    let mut e = Emitter {
        rev: Vec::with_capacity(512),
        rets: Vec::new(),
    };
    let x86_64 = &abis[Abi::X86_64 as usize];
    let i386 = &abis[Abi::I386 as usize];
    let x32 = &abis[Abi::X32 as usize];

    // Laid out back to front: i386, then x86_64 and x32, then the
    // architecture dispatch.
    let bad_arch = e.ret(RET_KILL_THREAD);
    let i386_entry = if i386.enabled {
        let segs = segments(i386, 0, u32::MAX, default, enosys);
        let tree = e.tree(&segs, Abi::I386, default);
        Some(e.load_before(tree, OFF_NR))
    } else {
        None
    };
    let x32_entry = if x32.enabled {
        let segs = segments(x32, X32_SYSCALL_BIT, u32::MAX, default, enosys);
        e.tree(&segs, Abi::X32, default)
    } else {
        // x32 calls are a foreign architecture, except nr -1 (libseccomp).
        let minus_one = e.ret(default);
        let bad = e.ret(RET_KILL_THREAD);
        e.jump(JMP_JEQ_K, u32::MAX, minus_one, bad)
    };
    let segs = segments(x86_64, 0, X32_SYSCALL_BIT - 1, default, enosys);
    let tree = e.tree(&segs, Abi::X86_64, default);
    let split = e.jump(JMP_JGE_K, X32_SYSCALL_BIT, x32_entry, tree);
    let x86_64_entry = e.load_before(split, OFF_NR);

    let bad_arch = if e.offset(bad_arch) > 255 {
        e.ret(RET_KILL_THREAD)
    } else {
        bad_arch
    };
    let mut dispatch = bad_arch;
    if let Some(i386_entry) = i386_entry {
        dispatch = e.jump(JMP_JEQ_K, AUDIT_ARCH_I386, i386_entry, dispatch);
    }
    let dispatch = e.jump(JMP_JEQ_K, AUDIT_ARCH_X86_64, x86_64_entry, dispatch);
    e.load_before(dispatch, OFF_ARCH);

    if e.rev.len() > MAX_INSNS {
        return Err(SeccompError::TooLarge(e.rev.len()));
    }
    e.rev.reverse();
    Ok(e.rev)
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

// ---------------------------------------------------------------------------
// Syscall numbers
// ---------------------------------------------------------------------------

/// Syscall names and numbers on x86_64, i386 and x32 (without the x32 bit),
/// -1 where an ABI lacks the call, sorted by name. From the kernel's
/// `arch/x86/entry/syscalls/syscall_{64,32}.tbl` up to Linux 6.18
/// (`listns`, 470), including names reserved for removed calls.
#[rustfmt::skip]
const SYSCALLS: &[Row] = &[
    ("_llseek", -1, 140, -1),
    ("_newselect", -1, 142, -1),
    ("_sysctl", 156, 149, -1),
    ("accept", 43, -1, 43),
    ("accept4", 288, 364, 288),
    ("access", 21, 33, 21),
    ("acct", 163, 51, 163),
    ("add_key", 248, 286, 248),
    ("adjtimex", 159, 124, 159),
    ("afs_syscall", 183, 137, 183),
    ("alarm", 37, 27, 37),
    ("arch_prctl", 158, 384, 158),
    ("bdflush", -1, 134, -1),
    ("bind", 49, 361, 49),
    ("bpf", 321, 357, 321),
    ("break", -1, 17, -1),
    ("brk", 12, 45, 12),
    ("cachestat", 451, 451, 451),
    ("capget", 125, 184, 125),
    ("capset", 126, 185, 126),
    ("chdir", 80, 12, 80),
    ("chmod", 90, 15, 90),
    ("chown", 92, 182, 92),
    ("chown32", -1, 212, -1),
    ("chroot", 161, 61, 161),
    ("clock_adjtime", 305, 343, 305),
    ("clock_adjtime64", -1, 405, -1),
    ("clock_getres", 229, 266, 229),
    ("clock_getres_time64", -1, 406, -1),
    ("clock_gettime", 228, 265, 228),
    ("clock_gettime64", -1, 403, -1),
    ("clock_nanosleep", 230, 267, 230),
    ("clock_nanosleep_time64", -1, 407, -1),
    ("clock_settime", 227, 264, 227),
    ("clock_settime64", -1, 404, -1),
    ("clone", 56, 120, 56),
    ("clone3", 435, 435, 435),
    ("close", 3, 6, 3),
    ("close_range", 436, 436, 436),
    ("connect", 42, 362, 42),
    ("copy_file_range", 326, 377, 326),
    ("creat", 85, 8, 85),
    ("create_module", 174, 127, -1),
    ("delete_module", 176, 129, 176),
    ("dup", 32, 41, 32),
    ("dup2", 33, 63, 33),
    ("dup3", 292, 330, 292),
    ("epoll_create", 213, 254, 213),
    ("epoll_create1", 291, 329, 291),
    ("epoll_ctl", 233, 255, 233),
    ("epoll_ctl_old", 214, -1, -1),
    ("epoll_pwait", 281, 319, 281),
    ("epoll_pwait2", 441, 441, 441),
    ("epoll_wait", 232, 256, 232),
    ("epoll_wait_old", 215, -1, -1),
    ("eventfd", 284, 323, 284),
    ("eventfd2", 290, 328, 290),
    ("execve", 59, 11, 520),
    ("execveat", 322, 358, 545),
    ("exit", 60, 1, 60),
    ("exit_group", 231, 252, 231),
    ("faccessat", 269, 307, 269),
    ("faccessat2", 439, 439, 439),
    ("fadvise64", 221, 250, 221),
    ("fadvise64_64", -1, 272, -1),
    ("fallocate", 285, 324, 285),
    ("fanotify_init", 300, 338, 300),
    ("fanotify_mark", 301, 339, 301),
    ("fchdir", 81, 133, 81),
    ("fchmod", 91, 94, 91),
    ("fchmodat", 268, 306, 268),
    ("fchmodat2", 452, 452, 452),
    ("fchown", 93, 95, 93),
    ("fchown32", -1, 207, -1),
    ("fchownat", 260, 298, 260),
    ("fcntl", 72, 55, 72),
    ("fcntl64", -1, 221, -1),
    ("fdatasync", 75, 148, 75),
    ("fgetxattr", 193, 231, 193),
    ("file_getattr", 468, 468, 468),
    ("file_setattr", 469, 469, 469),
    ("finit_module", 313, 350, 313),
    ("flistxattr", 196, 234, 196),
    ("flock", 73, 143, 73),
    ("fork", 57, 2, 57),
    ("fremovexattr", 199, 237, 199),
    ("fsconfig", 431, 431, 431),
    ("fsetxattr", 190, 228, 190),
    ("fsmount", 432, 432, 432),
    ("fsopen", 430, 430, 430),
    ("fspick", 433, 433, 433),
    ("fstat", 5, 108, 5),
    ("fstat64", -1, 197, -1),
    ("fstatat64", -1, 300, -1),
    ("fstatfs", 138, 100, 138),
    ("fstatfs64", -1, 269, -1),
    ("fsync", 74, 118, 74),
    ("ftime", -1, 35, -1),
    ("ftruncate", 77, 93, 77),
    ("ftruncate64", -1, 194, -1),
    ("futex", 202, 240, 202),
    ("futex_requeue", 456, 456, 456),
    ("futex_time64", -1, 422, -1),
    ("futex_wait", 455, 455, 455),
    ("futex_waitv", 449, 449, 449),
    ("futex_wake", 454, 454, 454),
    ("futimesat", 261, 299, 261),
    ("get_kernel_syms", 177, 130, -1),
    ("get_mempolicy", 239, 275, 239),
    ("get_robust_list", 274, 312, 531),
    ("get_thread_area", 211, 244, -1),
    ("getcpu", 309, 318, 309),
    ("getcwd", 79, 183, 79),
    ("getdents", 78, 141, 78),
    ("getdents64", 217, 220, 217),
    ("getegid", 108, 50, 108),
    ("getegid32", -1, 202, -1),
    ("geteuid", 107, 49, 107),
    ("geteuid32", -1, 201, -1),
    ("getgid", 104, 47, 104),
    ("getgid32", -1, 200, -1),
    ("getgroups", 115, 80, 115),
    ("getgroups32", -1, 205, -1),
    ("getitimer", 36, 105, 36),
    ("getpeername", 52, 368, 52),
    ("getpgid", 121, 132, 121),
    ("getpgrp", 111, 65, 111),
    ("getpid", 39, 20, 39),
    ("getpmsg", 181, 188, 181),
    ("getppid", 110, 64, 110),
    ("getpriority", 140, 96, 140),
    ("getrandom", 318, 355, 318),
    ("getresgid", 120, 171, 120),
    ("getresgid32", -1, 211, -1),
    ("getresuid", 118, 165, 118),
    ("getresuid32", -1, 209, -1),
    ("getrlimit", 97, 76, 97),
    ("getrusage", 98, 77, 98),
    ("getsid", 124, 147, 124),
    ("getsockname", 51, 367, 51),
    ("getsockopt", 55, 365, 542),
    ("gettid", 186, 224, 186),
    ("gettimeofday", 96, 78, 96),
    ("getuid", 102, 24, 102),
    ("getuid32", -1, 199, -1),
    ("getxattr", 191, 229, 191),
    ("getxattrat", 464, 464, 464),
    ("gtty", -1, 32, -1),
    ("idle", -1, 112, -1),
    ("init_module", 175, 128, 175),
    ("inotify_add_watch", 254, 292, 254),
    ("inotify_init", 253, 291, 253),
    ("inotify_init1", 294, 332, 294),
    ("inotify_rm_watch", 255, 293, 255),
    ("io_cancel", 210, 249, 210),
    ("io_destroy", 207, 246, 207),
    ("io_getevents", 208, 247, 208),
    ("io_pgetevents", 333, 385, 333),
    ("io_pgetevents_time64", -1, 416, -1),
    ("io_setup", 206, 245, 543),
    ("io_submit", 209, 248, 544),
    ("io_uring_enter", 426, 426, 426),
    ("io_uring_register", 427, 427, 427),
    ("io_uring_setup", 425, 425, 425),
    ("ioctl", 16, 54, 514),
    ("ioperm", 173, 101, 173),
    ("iopl", 172, 110, 172),
    ("ioprio_get", 252, 290, 252),
    ("ioprio_set", 251, 289, 251),
    ("ipc", -1, 117, -1),
    ("kcmp", 312, 349, 312),
    ("kexec_file_load", 320, -1, 320),
    ("kexec_load", 246, 283, 528),
    ("keyctl", 250, 288, 250),
    ("kill", 62, 37, 62),
    ("landlock_add_rule", 445, 445, 445),
    ("landlock_create_ruleset", 444, 444, 444),
    ("landlock_restrict_self", 446, 446, 446),
    ("lchown", 94, 16, 94),
    ("lchown32", -1, 198, -1),
    ("lgetxattr", 192, 230, 192),
    ("link", 86, 9, 86),
    ("linkat", 265, 303, 265),
    ("listen", 50, 363, 50),
    ("listmount", 458, 458, 458),
    ("listns", 470, 470, 470),
    ("listxattr", 194, 232, 194),
    ("listxattrat", 465, 465, 465),
    ("llistxattr", 195, 233, 195),
    ("lock", -1, 53, -1),
    ("lookup_dcookie", 212, 253, 212),
    ("lremovexattr", 198, 236, 198),
    ("lseek", 8, 19, 8),
    ("lsetxattr", 189, 227, 189),
    ("lsm_get_self_attr", 459, 459, 459),
    ("lsm_list_modules", 461, 461, 461),
    ("lsm_set_self_attr", 460, 460, 460),
    ("lstat", 6, 107, 6),
    ("lstat64", -1, 196, -1),
    ("madvise", 28, 219, 28),
    ("map_shadow_stack", 453, 453, -1),
    ("mbind", 237, 274, 237),
    ("membarrier", 324, 375, 324),
    ("memfd_create", 319, 356, 319),
    ("memfd_secret", 447, 447, 447),
    ("migrate_pages", 256, 294, 256),
    ("mincore", 27, 218, 27),
    ("mkdir", 83, 39, 83),
    ("mkdirat", 258, 296, 258),
    ("mknod", 133, 14, 133),
    ("mknodat", 259, 297, 259),
    ("mlock", 149, 150, 149),
    ("mlock2", 325, 376, 325),
    ("mlockall", 151, 152, 151),
    ("mmap", 9, 90, 9),
    ("mmap2", -1, 192, -1),
    ("modify_ldt", 154, 123, 154),
    ("mount", 165, 21, 165),
    ("mount_setattr", 442, 442, 442),
    ("move_mount", 429, 429, 429),
    ("move_pages", 279, 317, 533),
    ("mprotect", 10, 125, 10),
    ("mpx", -1, 56, -1),
    ("mq_getsetattr", 245, 282, 245),
    ("mq_notify", 244, 281, 527),
    ("mq_open", 240, 277, 240),
    ("mq_timedreceive", 243, 280, 243),
    ("mq_timedreceive_time64", -1, 419, -1),
    ("mq_timedsend", 242, 279, 242),
    ("mq_timedsend_time64", -1, 418, -1),
    ("mq_unlink", 241, 278, 241),
    ("mremap", 25, 163, 25),
    ("mseal", 462, 462, 462),
    ("msgctl", 71, 402, 71),
    ("msgget", 68, 399, 68),
    ("msgrcv", 70, 401, 70),
    ("msgsnd", 69, 400, 69),
    ("msync", 26, 144, 26),
    ("munlock", 150, 151, 150),
    ("munlockall", 152, 153, 152),
    ("munmap", 11, 91, 11),
    ("name_to_handle_at", 303, 341, 303),
    ("nanosleep", 35, 162, 35),
    ("newfstatat", 262, -1, 262),
    ("nfsservctl", 180, 169, -1),
    ("nice", -1, 34, -1),
    ("oldfstat", -1, 28, -1),
    ("oldlstat", -1, 84, -1),
    ("oldolduname", -1, 59, -1),
    ("oldstat", -1, 18, -1),
    ("olduname", -1, 109, -1),
    ("open", 2, 5, 2),
    ("open_by_handle_at", 304, 342, 304),
    ("open_tree", 428, 428, 428),
    ("open_tree_attr", 467, 467, 467),
    ("openat", 257, 295, 257),
    ("openat2", 437, 437, 437),
    ("pause", 34, 29, 34),
    ("perf_event_open", 298, 336, 298),
    ("personality", 135, 136, 135),
    ("pidfd_getfd", 438, 438, 438),
    ("pidfd_open", 434, 434, 434),
    ("pidfd_send_signal", 424, 424, 424),
    ("pipe", 22, 42, 22),
    ("pipe2", 293, 331, 293),
    ("pivot_root", 155, 217, 155),
    ("pkey_alloc", 330, 381, 330),
    ("pkey_free", 331, 382, 331),
    ("pkey_mprotect", 329, 380, 329),
    ("poll", 7, 168, 7),
    ("ppoll", 271, 309, 271),
    ("ppoll_time64", -1, 414, -1),
    ("prctl", 157, 172, 157),
    ("pread64", 17, 180, 17),
    ("preadv", 295, 333, 534),
    ("preadv2", 327, 378, 546),
    ("prlimit64", 302, 340, 302),
    ("process_madvise", 440, 440, 440),
    ("process_mrelease", 448, 448, 448),
    ("process_vm_readv", 310, 347, 539),
    ("process_vm_writev", 311, 348, 540),
    ("prof", -1, 44, -1),
    ("profil", -1, 98, -1),
    ("pselect6", 270, 308, 270),
    ("pselect6_time64", -1, 413, -1),
    ("ptrace", 101, 26, 521),
    ("putpmsg", 182, 189, 182),
    ("pwrite64", 18, 181, 18),
    ("pwritev", 296, 334, 535),
    ("pwritev2", 328, 379, 547),
    ("query_module", 178, 167, -1),
    ("quotactl", 179, 131, 179),
    ("quotactl_fd", 443, 443, 443),
    ("read", 0, 3, 0),
    ("readahead", 187, 225, 187),
    ("readdir", -1, 89, -1),
    ("readlink", 89, 85, 89),
    ("readlinkat", 267, 305, 267),
    ("readv", 19, 145, 515),
    ("reboot", 169, 88, 169),
    ("recvfrom", 45, 371, 517),
    ("recvmmsg", 299, 337, 537),
    ("recvmmsg_time64", -1, 417, -1),
    ("recvmsg", 47, 372, 519),
    ("remap_file_pages", 216, 257, 216),
    ("removexattr", 197, 235, 197),
    ("removexattrat", 466, 466, 466),
    ("rename", 82, 38, 82),
    ("renameat", 264, 302, 264),
    ("renameat2", 316, 353, 316),
    ("request_key", 249, 287, 249),
    ("restart_syscall", 219, 0, 219),
    ("rmdir", 84, 40, 84),
    ("rseq", 334, 386, 334),
    ("rt_sigaction", 13, 174, 512),
    ("rt_sigpending", 127, 176, 522),
    ("rt_sigprocmask", 14, 175, 14),
    ("rt_sigqueueinfo", 129, 178, 524),
    ("rt_sigreturn", 15, 173, 513),
    ("rt_sigsuspend", 130, 179, 130),
    ("rt_sigtimedwait", 128, 177, 523),
    ("rt_sigtimedwait_time64", -1, 421, -1),
    ("rt_tgsigqueueinfo", 297, 335, 536),
    ("sched_get_priority_max", 146, 159, 146),
    ("sched_get_priority_min", 147, 160, 147),
    ("sched_getaffinity", 204, 242, 204),
    ("sched_getattr", 315, 352, 315),
    ("sched_getparam", 143, 155, 143),
    ("sched_getscheduler", 145, 157, 145),
    ("sched_rr_get_interval", 148, 161, 148),
    ("sched_rr_get_interval_time64", -1, 423, -1),
    ("sched_setaffinity", 203, 241, 203),
    ("sched_setattr", 314, 351, 314),
    ("sched_setparam", 142, 154, 142),
    ("sched_setscheduler", 144, 156, 144),
    ("sched_yield", 24, 158, 24),
    ("seccomp", 317, 354, 317),
    ("security", 185, -1, 185),
    ("select", 23, 82, 23),
    ("semctl", 66, 394, 66),
    ("semget", 64, 393, 64),
    ("semop", 65, -1, 65),
    ("semtimedop", 220, -1, 220),
    ("semtimedop_time64", -1, 420, -1),
    ("sendfile", 40, 187, 40),
    ("sendfile64", -1, 239, -1),
    ("sendmmsg", 307, 345, 538),
    ("sendmsg", 46, 370, 518),
    ("sendto", 44, 369, 44),
    ("set_mempolicy", 238, 276, 238),
    ("set_mempolicy_home_node", 450, 450, 450),
    ("set_robust_list", 273, 311, 530),
    ("set_thread_area", 205, 243, -1),
    ("set_tid_address", 218, 258, 218),
    ("setdomainname", 171, 121, 171),
    ("setfsgid", 123, 139, 123),
    ("setfsgid32", -1, 216, -1),
    ("setfsuid", 122, 138, 122),
    ("setfsuid32", -1, 215, -1),
    ("setgid", 106, 46, 106),
    ("setgid32", -1, 214, -1),
    ("setgroups", 116, 81, 116),
    ("setgroups32", -1, 206, -1),
    ("sethostname", 170, 74, 170),
    ("setitimer", 38, 104, 38),
    ("setns", 308, 346, 308),
    ("setpgid", 109, 57, 109),
    ("setpriority", 141, 97, 141),
    ("setregid", 114, 71, 114),
    ("setregid32", -1, 204, -1),
    ("setresgid", 119, 170, 119),
    ("setresgid32", -1, 210, -1),
    ("setresuid", 117, 164, 117),
    ("setresuid32", -1, 208, -1),
    ("setreuid", 113, 70, 113),
    ("setreuid32", -1, 203, -1),
    ("setrlimit", 160, 75, 160),
    ("setsid", 112, 66, 112),
    ("setsockopt", 54, 366, 541),
    ("settimeofday", 164, 79, 164),
    ("setuid", 105, 23, 105),
    ("setuid32", -1, 213, -1),
    ("setxattr", 188, 226, 188),
    ("setxattrat", 463, 463, 463),
    ("sgetmask", -1, 68, -1),
    ("shmat", 30, 397, 30),
    ("shmctl", 31, 396, 31),
    ("shmdt", 67, 398, 67),
    ("shmget", 29, 395, 29),
    ("shutdown", 48, 373, 48),
    ("sigaction", -1, 67, -1),
    ("sigaltstack", 131, 186, 525),
    ("signal", -1, 48, -1),
    ("signalfd", 282, 321, 282),
    ("signalfd4", 289, 327, 289),
    ("sigpending", -1, 73, -1),
    ("sigprocmask", -1, 126, -1),
    ("sigreturn", -1, 119, -1),
    ("sigsuspend", -1, 72, -1),
    ("socket", 41, 359, 41),
    ("socketcall", -1, 102, -1),
    ("socketpair", 53, 360, 53),
    ("splice", 275, 313, 275),
    ("ssetmask", -1, 69, -1),
    ("stat", 4, 106, 4),
    ("stat64", -1, 195, -1),
    ("statfs", 137, 99, 137),
    ("statfs64", -1, 268, -1),
    ("statmount", 457, 457, 457),
    ("statx", 332, 383, 332),
    ("stime", -1, 25, -1),
    ("stty", -1, 31, -1),
    ("swapoff", 168, 115, 168),
    ("swapon", 167, 87, 167),
    ("symlink", 88, 83, 88),
    ("symlinkat", 266, 304, 266),
    ("sync", 162, 36, 162),
    ("sync_file_range", 277, 314, 277),
    ("syncfs", 306, 344, 306),
    ("sysfs", 139, 135, 139),
    ("sysinfo", 99, 116, 99),
    ("syslog", 103, 103, 103),
    ("tee", 276, 315, 276),
    ("tgkill", 234, 270, 234),
    ("time", 201, 13, 201),
    ("timer_create", 222, 259, 526),
    ("timer_delete", 226, 263, 226),
    ("timer_getoverrun", 225, 262, 225),
    ("timer_gettime", 224, 261, 224),
    ("timer_gettime64", -1, 408, -1),
    ("timer_settime", 223, 260, 223),
    ("timer_settime64", -1, 409, -1),
    ("timerfd_create", 283, 322, 283),
    ("timerfd_gettime", 287, 326, 287),
    ("timerfd_gettime64", -1, 410, -1),
    ("timerfd_settime", 286, 325, 286),
    ("timerfd_settime64", -1, 411, -1),
    ("times", 100, 43, 100),
    ("tkill", 200, 238, 200),
    ("truncate", 76, 92, 76),
    ("truncate64", -1, 193, -1),
    ("tuxcall", 184, -1, 184),
    ("ugetrlimit", -1, 191, -1),
    ("ulimit", -1, 58, -1),
    ("umask", 95, 60, 95),
    ("umount", -1, 22, -1),
    ("umount2", 166, 52, 166),
    ("uname", 63, 122, 63),
    ("unlink", 87, 10, 87),
    ("unlinkat", 263, 301, 263),
    ("unshare", 272, 310, 272),
    ("uprobe", 336, -1, 336),
    ("uretprobe", 335, -1, 335),
    ("uselib", 134, 86, -1),
    ("userfaultfd", 323, 374, 323),
    ("ustat", 136, 62, 136),
    ("utime", 132, 30, 132),
    ("utimensat", 280, 320, 280),
    ("utimensat_time64", -1, 412, -1),
    ("utimes", 235, 271, 235),
    ("vfork", 58, 190, 58),
    ("vhangup", 153, 111, 153),
    ("vm86", -1, 166, -1),
    ("vm86old", -1, 113, -1),
    ("vmsplice", 278, 316, 532),
    ("vserver", 236, 273, -1),
    ("wait4", 61, 114, 61),
    ("waitid", 247, 284, 529),
    ("waitpid", -1, 7, -1),
    ("write", 1, 4, 1),
    ("writev", 20, 146, 516),
];

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

    fn docker_default() -> LinuxSeccomp {
        let json = std::fs::read(format!("{FIXTURES}/docker-default-seccomp.json")).unwrap();
        serde_json::from_slice(&json).unwrap()
    }

    fn spec(json: serde_json::Value) -> LinuxSeccomp {
        serde_json::from_value(json).unwrap()
    }

    const EPERM: u32 = RET_ERRNO | libc::EPERM as u32;
    const ENOSYS: u32 = RET_ERRNO | libc::ENOSYS as u32;

    /// Runs a classic BPF seccomp program as the kernel would.
    fn run(prog: &[libc::sock_filter], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&nr.to_le_bytes());
        data[4..8].copy_from_slice(&arch.to_le_bytes());
        for (i, a) in args.iter().enumerate() {
            data[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_le_bytes());
        }
        let (mut acc, mut pc) = (0u32, 0usize);
        loop {
            let i = prog[pc];
            pc += 1;
            match i.code {
                LD_W_ABS => {
                    let k = i.k as usize;
                    acc = u32::from_le_bytes(data[k..k + 4].try_into().unwrap());
                }
                ALU_AND_K => acc &= i.k,
                JMP_JA => pc += i.k as usize,
                JMP_JEQ_K | JMP_JGT_K | JMP_JGE_K => {
                    let hit = match i.code {
                        JMP_JEQ_K => acc == i.k,
                        JMP_JGT_K => acc > i.k,
                        _ => acc >= i.k,
                    };
                    pc += usize::from(if hit { i.jt } else { i.jf });
                }
                RET_K => return i.k,
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
    }

    fn x86_64(f: &Filter, name: &str, args: [u64; 6]) -> u32 {
        let nr = Abi::X86_64.resolve(name).unwrap();
        run(f.program(), AUDIT_ARCH_X86_64, nr, args)
    }

    #[test]
    fn seccomp_table_is_sorted_and_matches_libc() {
        assert!(SYSCALLS.windows(2).all(|w| w[0].0 < w[1].0));
        for row in SYSCALLS {
            assert_eq!(lookup(row.0), Some(row));
            assert!([row.1, row.2, row.3].iter().all(|&n| n < TABLE_LEN as i16));
        }
        for (name, nr) in [
            ("read", libc::SYS_read),
            ("mkdir", libc::SYS_mkdir),
            ("clone3", libc::SYS_clone3),
            ("personality", libc::SYS_personality),
            ("fchmodat2", libc::SYS_fchmodat2),
            ("mseal", libc::SYS_mseal),
        ] {
            assert_eq!(Abi::X86_64.resolve(name), Some(nr as u32), "{name}");
        }
        assert_eq!(Abi::I386.resolve("mkdir"), Some(39));
        assert_eq!(Abi::I386.resolve("socketcall"), Some(102));
        assert_eq!(Abi::X32.resolve("execve"), Some(X32_SYSCALL_BIT | 520));
        assert_eq!(Abi::X32.resolve("mkdir"), Some(X32_SYSCALL_BIT | 83));
        assert_eq!(Abi::X86_64.resolve("socketcall"), None);
        assert_eq!(Abi::X86_64.resolve("no_such_call"), None);
    }

    #[test]
    fn seccomp_rules_and_default() {
        let f = compile(&spec(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                {"names": ["mkdir", "mkdirat", "not_a_syscall"], "action": "SCMP_ACT_ERRNO"},
                {"names": ["getpid"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["kill"], "action": "SCMP_ACT_KILL_PROCESS"},
                {"names": ["uname"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
            ]
        })))
        .unwrap();
        assert_eq!(x86_64(&f, "mkdir", [0; 6]), EPERM);
        assert_eq!(x86_64(&f, "mkdirat", [0; 6]), EPERM);
        assert_eq!(x86_64(&f, "kill", [0; 6]), RET_KILL_PROCESS);
        assert_eq!(x86_64(&f, "uname", [0; 6]), ENOSYS);
        for name in ["getpid", "read", "rmdir", "listns"] {
            assert_eq!(x86_64(&f, name, [0; 6]), RET_ALLOW, "{name}");
        }
        // Other architectures are not allowed; -1 (a skipped syscall) is.
        assert_eq!(
            run(f.program(), AUDIT_ARCH_I386, 39, [0; 6]),
            RET_KILL_THREAD
        );
        assert_eq!(
            run(f.program(), AUDIT_ARCH_X86_64, X32_SYSCALL_BIT | 83, [0; 6]),
            RET_KILL_THREAD
        );
        assert_eq!(
            run(f.program(), AUDIT_ARCH_X86_64, u32::MAX, [0; 6]),
            RET_ALLOW
        );
        assert_eq!(run(f.program(), 0xc000_00b7, 34, [0; 6]), RET_KILL_THREAD);
    }

    /// Every operator against a direct evaluation, over 64-bit and 32-bit
    /// ABIs, on values around the word boundaries.
    #[test]
    fn seccomp_operators_match_their_definition() {
        let values: Vec<u64> = vec![
            0,
            1,
            7,
            8,
            0x7fff_ffff,
            0x8000_0000,
            0xffff_fffe,
            0xffff_ffff,
            0x1_0000_0000,
            0x1_0000_0001,
            0x1_ffff_ffff,
            0x7e02_0000,
            0xffff_ffff_ffff_fffe,
            u64::MAX,
            0x1234_5678_9abc_def0,
        ];
        let ops = [
            ("SCMP_CMP_NE", LinuxSeccompOperator::ScmpCmpNe),
            ("SCMP_CMP_LT", LinuxSeccompOperator::ScmpCmpLt),
            ("SCMP_CMP_LE", LinuxSeccompOperator::ScmpCmpLe),
            ("SCMP_CMP_EQ", LinuxSeccompOperator::ScmpCmpEq),
            ("SCMP_CMP_GE", LinuxSeccompOperator::ScmpCmpGe),
            ("SCMP_CMP_GT", LinuxSeccompOperator::ScmpCmpGt),
            ("SCMP_CMP_MASKED_EQ", LinuxSeccompOperator::ScmpCmpMaskedEq),
        ];
        let holds = |op: LinuxSeccompOperator, a: u64, v: u64, v2: u64| match op {
            LinuxSeccompOperator::ScmpCmpNe => a != v,
            LinuxSeccompOperator::ScmpCmpLt => a < v,
            LinuxSeccompOperator::ScmpCmpLe => a <= v,
            LinuxSeccompOperator::ScmpCmpEq => a == v,
            LinuxSeccompOperator::ScmpCmpGe => a >= v,
            LinuxSeccompOperator::ScmpCmpGt => a > v,
            LinuxSeccompOperator::ScmpCmpMaskedEq => a & v == v2 & v,
        };
        for (name, op) in ops {
            for &v in &values {
                for &v2 in &[0, 8, 0x1_0000_0000, v] {
                    let f = compile(&spec(serde_json::json!({
                        "defaultAction": "SCMP_ACT_ALLOW",
                        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
                        "syscalls": [{"names": ["personality"], "action": "SCMP_ACT_ERRNO",
                            "args": [{"index": 2, "value": v, "valueTwo": v2, "op": name}]}]
                    })))
                    .unwrap();
                    for &a in &values {
                        let args = [0, 0, a, 0, 0, 0];
                        let expect = |hit| if hit { EPERM } else { RET_ALLOW };
                        let got = run(f.program(), AUDIT_ARCH_X86_64, 135, args);
                        assert_eq!(
                            got,
                            expect(holds(op, a, v, v2)),
                            "{name} {a:#x} {v:#x} {v2:#x}"
                        );
                        // 32-bit ABIs see the low words only.
                        let (a32, v32, w32) = (a & 0xffff_ffff, v & 0xffff_ffff, v2 & 0xffff_ffff);
                        let want = expect(holds(op, a32, v32, w32));
                        let args32 = [0, 0, a32, 0, 0, 0];
                        assert_eq!(
                            run(f.program(), AUDIT_ARCH_I386, 136, args32),
                            want,
                            "i386 {name}"
                        );
                        let x32 = X32_SYSCALL_BIT | 135;
                        assert_eq!(
                            run(f.program(), AUDIT_ARCH_X86_64, x32, args),
                            want,
                            "x32 {name}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn seccomp_rule_precedence() {
        let eq = |i: u64, v: u64| serde_json::json!({"index": i, "value": v, "op": "SCMP_CMP_EQ"});
        let f = compile(&spec(serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [
                // First matching conditional rule wins.
                {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": 2, "args": [eq(0, 5)]},
                {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": 3, "args": [eq(1, 7)]},
                // All conditions of one rule must hold.
                {"names": ["setns"], "action": "SCMP_ACT_ALLOW", "args": [eq(0, 1), eq(1, 2)]},
                // Two conditions on one argument: either may hold (runc).
                {"names": ["kill"], "action": "SCMP_ACT_ALLOW", "args": [eq(1, 9), eq(1, 15)]},
                // An unconditional rule wins over conditional ones.
                {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 4, "args": [eq(0, 1)]},
                {"names": ["mkdir"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["rmdir"], "action": "SCMP_ACT_LOG"},
            ]
        })))
        .unwrap();
        let a = |x: u64, y: u64| [x, y, 0, 0, 0, 0];
        assert_eq!(x86_64(&f, "personality", a(5, 7)), RET_ERRNO | 2);
        assert_eq!(x86_64(&f, "personality", a(4, 7)), RET_ERRNO | 3);
        assert_eq!(x86_64(&f, "personality", a(4, 6)), EPERM);
        assert_eq!(x86_64(&f, "setns", a(1, 2)), RET_ALLOW);
        assert_eq!(x86_64(&f, "setns", a(1, 3)), EPERM);
        assert_eq!(x86_64(&f, "setns", a(0, 2)), EPERM);
        assert_eq!(x86_64(&f, "kill", a(1, 9)), RET_ALLOW);
        assert_eq!(x86_64(&f, "kill", a(1, 15)), RET_ALLOW);
        assert_eq!(x86_64(&f, "kill", a(1, 2)), EPERM);
        assert_eq!(x86_64(&f, "mkdir", a(1, 0)), RET_ALLOW);
        assert_eq!(x86_64(&f, "rmdir", a(1, 0)), RET_LOG);
        // Newer than anything named: ENOSYS, so libc can fall back.
        assert_eq!(x86_64(&f, "listns", a(0, 0)), ENOSYS);
        assert_eq!(x86_64(&f, "read", a(0, 0)), EPERM);
    }

    #[test]
    fn seccomp_docker_default_decisions() {
        let f = compile(&docker_default()).unwrap();
        let x = |name: &str, a0: u64| x86_64(&f, name, [a0, 0, 0, 0, 0, 0]);
        for name in [
            "read",
            "execve",
            "chroot",
            "arch_prctl",
            "socketpair",
            "ptrace",
        ] {
            assert_eq!(x(name, 0), RET_ALLOW, "{name}");
        }
        assert_eq!(x("mount", 0), EPERM);
        assert_eq!(x("unshare", 0), EPERM);
        assert_eq!(x("bpf", 0), EPERM);
        assert_eq!(x("clone3", 0), ENOSYS);
        assert_eq!(x("clone", 0x11), RET_ALLOW); // SIGCHLD | ...
        assert_eq!(x("clone", libc::CLONE_NEWUSER as u64), EPERM);
        assert_eq!(x("socket", libc::AF_UNIX as u64), RET_ALLOW);
        assert_eq!(x("socket", libc::AF_VSOCK as u64), EPERM);
        assert_eq!(x("personality", 0xffff_ffff), RET_ALLOW);
        assert_eq!(x("personality", 0x1_ffff_ffff), EPERM);
        assert_eq!(x("personality", 1), EPERM);
        assert_eq!(x("listns", 0), ENOSYS);
        assert_eq!(x("fchmodat2", 0), ENOSYS);

        // i386: direct and multiplexed socket calls, time64 variants.
        let i = |nr: u32, a0: u64| run(f.program(), AUDIT_ARCH_I386, nr, [a0, 0, 0, 0, 0, 0]);
        let nr = |name| Abi::I386.resolve(name).unwrap();
        assert_eq!(i(nr("clock_gettime64"), 0), RET_ALLOW);
        assert_eq!(i(nr("socketcall"), 1), RET_ALLOW);
        assert_eq!(i(nr("socket"), 40), EPERM);
        assert_eq!(i(nr("socket"), 1), RET_ALLOW);
        assert_eq!(i(nr("mount"), 0), EPERM);
        assert_eq!(i(nr("modify_ldt"), 0), RET_ALLOW);
        assert_eq!(i(nr("personality"), 0xffff_ffff), RET_ALLOW);
        assert_eq!(i(u32::MAX, 0), ENOSYS);

        // x32: its own numbers for the calls that differ.
        let x32 = |name| {
            run(
                f.program(),
                AUDIT_ARCH_X86_64,
                Abi::X32.resolve(name).unwrap(),
                [0; 6],
            )
        };
        assert_eq!(x32("execve"), RET_ALLOW);
        assert_eq!(x32("read"), RET_ALLOW);
        assert_eq!(x32("mount"), EPERM);
    }

    #[test]
    fn seccomp_i386_multiplexers() {
        let f = compile(&spec(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86"],
            "syscalls": [
                {"names": ["socket"], "action": "SCMP_ACT_ERRNO",
                 "args": [{"index": 0, "value": 40, "op": "SCMP_CMP_EQ"}]},
                {"names": ["semget", "recv"], "action": "SCMP_ACT_ERRNO"},
            ]
        })))
        .unwrap();
        let i = |nr: u32, a0: u64| run(f.program(), AUDIT_ARCH_I386, nr, [a0, 0, 0, 0, 0, 0]);
        assert_eq!(i(359, 40), EPERM); // socket(AF_VSOCK)
        assert_eq!(i(359, 1), RET_ALLOW);
        assert_eq!(i(102, 1), EPERM); // socketcall(SYS_SOCKET, ...), arguments unseen
        assert_eq!(i(102, 10), EPERM); // socketcall(SYS_RECV, ...)
        assert_eq!(i(102, 3), RET_ALLOW); // socketcall(SYS_CONNECT, ...)
        assert_eq!(i(393, 0), EPERM); // semget
        assert_eq!(i(117, 2), EPERM); // ipc(SEMGET, ...)
        assert_eq!(i(117, 1), RET_ALLOW); // ipc(SEMOP, ...)
    }

    /// Long jumps: a profile big enough that branches pass 255 instructions.
    #[test]
    fn seccomp_long_programs() {
        let mut syscalls = Vec::new();
        for (n, (name, x, _, _)) in SYSCALLS.iter().enumerate() {
            if *x < 0 {
                continue;
            }
            let value = 0x1_0000_0000 + n as u64 * 1000;
            syscalls.push(
                serde_json::json!({"names": [name], "action": "SCMP_ACT_ERRNO",
                "errnoRet": n, "args": [{"index": 1, "value": value, "op": "SCMP_CMP_EQ"}]}),
            );
        }
        let f = compile(&spec(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW", "syscalls": syscalls
        })))
        .unwrap();
        assert!(f.program().len() > 2000, "{}", f.program().len());
        for (n, (name, x, _, _)) in SYSCALLS.iter().enumerate() {
            if *x < 0 {
                continue;
            }
            let v = 0x1_0000_0000 + n as u64 * 1000;
            assert_eq!(
                x86_64(&f, name, [0, v, 0, 0, 0, 0]),
                RET_ERRNO | n as u32,
                "{name}"
            );
            assert_eq!(
                x86_64(&f, name, [0, v + 1, 0, 0, 0, 0]),
                RET_ALLOW,
                "{name}"
            );
            assert_eq!(
                x86_64(&f, name, [0, v & 0xffff_ffff, 0, 0, 0, 0]),
                RET_ALLOW,
                "{name}"
            );
        }
    }

    #[test]
    fn seccomp_errors_name_the_culprit() {
        let bad_action = r#"{"defaultAction": "SCMP_ACT_FOO", "syscalls": []}"#;
        let err = serde_json::from_str::<LinuxSeccomp>(bad_action).unwrap_err();
        assert!(err.to_string().contains("SCMP_ACT_FOO"), "{err}");
        let bad_arch = r#"{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_FOO"]}"#;
        let err = serde_json::from_str::<LinuxSeccomp>(bad_arch).unwrap_err();
        assert!(err.to_string().contains("SCMP_ARCH_FOO"), "{err}");

        let index = spec(
            serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 6, "value": 0, "op": "SCMP_CMP_EQ"}]}]}),
        );
        let msg = compile(&index).unwrap_err().to_string();
        assert!(msg.contains("read") && msg.contains("argument 6"), "{msg}");
        let notify = spec(serde_json::json!({"defaultAction": "SCMP_ACT_NOTIFY"}));
        assert!(matches!(compile(&notify), Err(SeccompError::Notify(_))));
        let notify = spec(
            serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["write"], "action": "SCMP_ACT_NOTIFY"}]}),
        );
        assert!(matches!(compile(&notify), Err(SeccompError::Notify(_))));
        let notify = spec(
            serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}),
        );
        let f = compile(&notify).unwrap();
        assert!(f.needs_listener());
        assert!(matches!(f.load(), Err(SeccompError::NeedsListener)));
    }

    #[test]
    fn seccomp_compile_time_docker_profile() {
        let json = std::fs::read(format!("{FIXTURES}/docker-default-seccomp.json")).unwrap();
        let spec: LinuxSeccomp = serde_json::from_slice(&json).unwrap();
        let mut times = Vec::new();
        let mut len = 0;
        for _ in 0..200 {
            let start = std::time::Instant::now();
            let f = compile(&spec).unwrap();
            times.push(start.elapsed());
            len = f.program().len();
        }
        times.sort();
        let start = std::time::Instant::now();
        for _ in 0..200 {
            let s: LinuxSeccomp = serde_json::from_slice(&json).unwrap();
            std::hint::black_box(s);
        }
        let parse = start.elapsed() / 200;
        println!(
            "docker default profile: compile median {:?} (min {:?}, max {:?}), {len} instructions; JSON parse {parse:?}",
            times[100], times[0], times[199]
        );
    }

    // --- Loading into the kernel, in forked children ---------------------

    /// Runs `f` in a forked child and returns its exit status (or 128 +
    /// signal). The child must not allocate: the test process has threads.
    fn in_child(f: impl FnOnce() -> i32) -> i32 {
        // SAFETY: the child only makes system calls and leaves with _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
        if pid == 0 {
            let code = f();
            // SAFETY: ends the forked child without running the parent's
            // exit handlers.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waits for the child forked above.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        assert_eq!(r, pid);
        if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            128 + libc::WTERMSIG(status)
        }
    }

    fn errno() -> i32 {
        std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
    }

    fn no_new_privs() -> bool {
        // SAFETY: prctl with integer arguments.
        unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 }
    }

    /// A syscall through `int 0x80`, the i386 ABI, from this 64-bit process.
    fn int80(nr: u32, a: u32, b: u32) -> i32 {
        let ret: u64;
        // SAFETY: a system call with integer arguments; rbx is saved and
        // restored around it, and the registers the entry may clobber are
        // declared.
        unsafe {
            std::arch::asm!(
                "xchg {a}, rbx",
                "int 0x80",
                "xchg {a}, rbx",
                a = inout(reg) u64::from(a) => _,
                inlateout("rax") u64::from(nr) => ret,
                in("rcx") u64::from(b),
                out("r8") _, out("r9") _, out("r10") _, out("r11") _,
            );
        }
        ret as u32 as i32
    }

    /// Docker 25 and later deny io_uring in the default profile (EPERM,
    /// the profile's default errno), as berth must.
    #[test]
    fn docker_default_profile_denies_io_uring() {
        // The fixture is Docker's profile as the engine converts it for
        // Docker's default capabilities (checked there).
        let f = compile(&docker_default()).unwrap();
        let code = in_child(|| {
            if !no_new_privs() || f.load().is_err() {
                return 2;
            }
            let mut params = [0u8; 120];
            for nr in [
                libc::SYS_io_uring_setup,
                libc::SYS_io_uring_register,
                libc::SYS_io_uring_enter,
            ] {
                // SAFETY: io_uring_setup with a zeroed params buffer of the
                // kernel's struct size (the filter answers before the kernel
                // reads it); the others with an invalid fd.
                let r = unsafe {
                    libc::syscall(nr, 1u32, params.as_mut_ptr(), 0u32, 0u32, 0usize, 0usize)
                };
                if r != -1 || errno() != libc::EPERM {
                    return 3;
                }
            }
            0
        });
        assert_eq!(code, 0, "io_uring is not denied by the default profile");
    }

    #[test]
    fn seccomp_load_errno_rule_for_mkdir() {
        let f = compile(&spec(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EPERM}]
        })))
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path =
            CString::new(dir.path().join("d").into_os_string().into_encoded_bytes()).unwrap();
        let null = c"/dev/null";
        let code = in_child(|| {
            if !no_new_privs() || f.load().is_err() {
                return 2;
            }
            // SAFETY: plain system calls on NUL-terminated paths.
            unsafe {
                if libc::mkdir(path.as_ptr(), 0o755) != -1 || errno() != libc::EPERM {
                    return 3;
                }
                if libc::mkdirat(libc::AT_FDCWD, path.as_ptr(), 0o755) != -1
                    || errno() != libc::EPERM
                {
                    return 4;
                }
                let fd = libc::open(null.as_ptr(), libc::O_RDONLY);
                if fd < 0 || libc::close(fd) != 0 || libc::getpid() <= 0 {
                    return 5;
                }
            }
            0
        });
        assert_eq!(code, 0);
        assert!(!dir.path().join("d").exists());
    }

    #[test]
    fn seccomp_load_argument_condition() {
        // Only personality(0xffffffff) (a query) and what _exit needs.
        let f = compile(&spec(serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [
                {"names": ["exit", "exit_group"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 0xffff_ffffu64, "op": "SCMP_CMP_EQ"}]},
            ]
        })))
        .unwrap();
        let code = in_child(|| {
            if !no_new_privs() || f.load().is_err() {
                return 2;
            }
            // SAFETY: system calls with integer arguments.
            unsafe {
                if libc::syscall(libc::SYS_personality, 0xffff_ffffu64) < 0 {
                    return 3;
                }
                if libc::syscall(libc::SYS_personality, 0u64) != -1 || errno() != libc::EPERM {
                    return 4;
                }
                // The high word counts on x86_64.
                if libc::syscall(libc::SYS_personality, 0x1_ffff_ffffu64) != -1
                    || errno() != libc::EPERM
                {
                    return 5;
                }
                if libc::getppid() != -1 || errno() != libc::EPERM {
                    return 6;
                }
            }
            0
        });
        assert_eq!(code, 0);
    }

    #[test]
    fn seccomp_load_masked_eq() {
        // unshare with CLONE_NEWUSER fails with EBADE (52); other flags pass;
        // personality with bits in the high word's mask fails too.
        let newuser = libc::CLONE_NEWUSER as u64;
        let f = compile(&spec(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                {"names": ["unshare"], "action": "SCMP_ACT_ERRNO", "errnoRet": 52,
                 "args": [{"index": 0, "value": newuser, "valueTwo": newuser, "op": "SCMP_CMP_MASKED_EQ"}]},
                {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": 52,
                 "args": [{"index": 0, "value": 0xffff_0000_0000_0000u64, "valueTwo": 0x1234_0000_0000_0000u64,
                           "op": "SCMP_CMP_MASKED_EQ"}]},
            ]
        })))
        .unwrap();
        let code = in_child(|| {
            if !no_new_privs() || f.load().is_err() {
                return 2;
            }
            // SAFETY: system calls with integer arguments.
            unsafe {
                if libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS) != -1 || errno() != 52 {
                    return 3;
                }
                if libc::unshare(0) != 0 {
                    return 4;
                }
                // Whatever the kernel says (EPERM if unprivileged), not 52.
                if libc::unshare(libc::CLONE_NEWUTS) == -1 && errno() == 52 {
                    return 5;
                }
                let p = 0x1234_5678_ffff_ffffu64;
                if libc::syscall(libc::SYS_personality, p) != -1 || errno() != 52 {
                    return 6;
                }
                if libc::syscall(libc::SYS_personality, 0xffff_ffffu64) < 0 {
                    return 7;
                }
            }
            0
        });
        assert_eq!(code, 0);
    }

    #[test]
    fn seccomp_load_docker_default_profile() {
        let f = compile(&docker_default()).unwrap();
        let sh = c"/bin/sh";
        let argv = [
            sh.as_ptr(),
            c"-c".as_ptr(),
            c"ls / >/dev/null && /bin/true".as_ptr(),
            std::ptr::null(),
        ];
        let envp = [c"PATH=/usr/bin:/bin".as_ptr(), std::ptr::null()];
        let target = c"/tmp";
        let code = in_child(|| {
            if !no_new_privs() || f.load().is_err() {
                return 2;
            }
            // SAFETY: system calls on valid, NUL-terminated strings and
            // arrays built before the fork.
            unsafe {
                if libc::unshare(libc::CLONE_NEWUSER) != -1 || errno() != libc::EPERM {
                    return 3;
                }
                let none = std::ptr::null();
                if libc::mount(none, target.as_ptr(), c"tmpfs".as_ptr(), 0, none.cast()) != -1
                    || errno() != libc::EPERM
                {
                    return 4;
                }
                if libc::syscall(libc::SYS_clone3, 0u64, 0u64) != -1 || errno() != libc::ENOSYS {
                    return 5;
                }
                if libc::socket(libc::AF_VSOCK, libc::SOCK_STREAM, 0) != -1
                    || errno() != libc::EPERM
                {
                    return 6;
                }
                let s = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
                if s < 0 || libc::close(s) != 0 {
                    return 7;
                }
                if libc::syscall(470, 0u64) != -1 || errno() != libc::ENOSYS {
                    return 8; // listns: newer than the profile
                }
                libc::execve(sh.as_ptr(), argv.as_ptr(), envp.as_ptr());
            }
            9
        });
        assert_eq!(code, 0);
    }

    #[test]
    fn seccomp_load_other_abis() {
        // Is the i386 ABI (int 0x80) available here at all?
        let pid_ok = in_child(|| {
            // SAFETY: getpid has no side effects.
            let pid = unsafe { libc::getpid() };
            i32::from(int80(20, 0, 0) != pid)
        });
        if pid_ok != 0 {
            crate::skip(
                "seccomp_load_other_abis",
                "no i386 syscall ABI on this kernel",
            );
            return;
        }
        let f = compile(&docker_default()).unwrap();
        let code = in_child(|| {
            if !no_new_privs() || f.load().is_err() {
                return 2;
            }
            // i386: unshare is 310, getpid 20, personality 136.
            if int80(310, libc::CLONE_NEWUSER as u32, 0) != -libc::EPERM {
                return 3;
            }
            // SAFETY: getpid has no side effects.
            let pid = unsafe { libc::getpid() };
            if int80(20, 0, 0) != pid {
                return 4;
            }
            if int80(136, 0xffff_ffff, 0) < 0 || int80(136, 1, 0) != -libc::EPERM {
                return 5;
            }
            0
        });
        assert_eq!(code, 0);

        // Without SCMP_ARCH_X86 an i386 call kills the thread.
        let f = compile(&spec(serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]})))
        .unwrap();
        let code = in_child(|| {
            if !no_new_privs() || f.load().is_err() {
                return 2;
            }
            int80(20, 0, 0);
            3
        });
        assert_eq!(code, 128 + libc::SIGSYS);
    }

    #[test]
    fn seccomp_load_flags() {
        let f = compile(&spec(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "flags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]
        })))
        .unwrap();
        assert_eq!(f.flags, FLAG_TSYNC | FLAG_LOG | FLAG_SPEC_ALLOW);
        let code = in_child(|| {
            if !no_new_privs() {
                return 2;
            }
            match f.load() {
                Ok(()) => 0,
                // An old kernel without the flag.
                Err(SeccompError::Load(e)) if e.raw_os_error() == Some(libc::EINVAL) => 0,
                Err(_) => 3,
            }
        });
        assert_eq!(code, 0);
    }
}
