//! Compiling an OCI `linux.seccomp` section: names resolved per ABI,
//! actions and conditions checked, rules merged as libseccomp does.

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag,
    LinuxSeccompOperator, LinuxSyscall,
};

use super::codegen::generate;
use super::rules::{
    Abi, AbiRules, Cond, SysRules, RET_ALLOW, RET_ERRNO, RET_KILL_PROCESS, RET_KILL_THREAD,
    RET_LOG, RET_TRACE, RET_TRAP, RET_USER_NOTIF,
};
use super::syscalls::{i386_multiplexed, lookup};
use super::{
    Filter, SeccompError, FLAG_LOG, FLAG_NEW_LISTENER, FLAG_SPEC_ALLOW, FLAG_TSYNC,
    FLAG_TSYNC_ESRCH, FLAG_WAIT_KILLABLE_RECV,
};

/// The seccomp return value of an action.
pub(super) fn action_value(
    action: LinuxSeccompAction,
    errno: Option<u32>,
) -> Result<u32, SeccompError> {
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

pub(super) fn add_syscall(
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

pub(super) fn add_rule(entry: &mut SysRules, conds: &[Cond], action: u32) {
    if conds.is_empty() {
        entry.unconditional.get_or_insert(action);
    } else if !entry.conditional.iter().any(|(c, _)| c == conds) {
        entry.conditional.push((conds.to_vec(), action));
    }
}

pub(super) fn cond(arg: &LinuxSeccompArg, names: &[String]) -> Result<Cond, SeccompError> {
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
