//! Code generation: a classic BPF program, built back to front, that
//! checks the architecture and binary-searches the syscall number.

use oci_spec::runtime::LinuxSeccompOperator;

use super::rules::{
    Abi, AbiRules, Cond, AUDIT_ARCH_I386, AUDIT_ARCH_X86_64, RET_ERRNO, RET_KILL_THREAD,
    X32_SYSCALL_BIT,
};
use super::SeccompError;

/// The kernel's limit on a classic BPF program (`BPF_MAXINSNS`).
pub(super) const MAX_INSNS: usize = 4096;

// Classic BPF opcodes.
pub(super) const LD_W_ABS: u16 = 0x20;
pub(super) const JMP_JA: u16 = 0x05;
pub(super) const JMP_JEQ_K: u16 = 0x15;
pub(super) const JMP_JGT_K: u16 = 0x25;
pub(super) const JMP_JGE_K: u16 = 0x35;
pub(super) const ALU_AND_K: u16 = 0x54;
pub(super) const RET_K: u16 = 0x06;

// Offsets in `struct seccomp_data`.
pub(super) const OFF_NR: u32 = 0;
pub(super) const OFF_ARCH: u32 = 4;
pub(super) const OFF_ARGS: u32 = 16;

/// What a range of syscall numbers leads to.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Leaf<'a> {
    Ret(u32),
    Rules(&'a [(Vec<Cond>, u32)]),
}

/// Builds a program back to front, so every jump target is known when the
/// jump is written. A label is an instruction's distance from the end.
pub(super) struct Emitter {
    rev: Vec<libc::sock_filter>,
    rets: Vec<(u32, usize)>,
}

pub(super) type Label = usize;

impl Emitter {
    pub(super) fn push(&mut self, code: u16, jt: u8, jf: u8, k: u32) -> Label {
        self.rev.push(libc::sock_filter { code, jt, jf, k });
        self.rev.len() - 1
    }

    /// Offset from the next instruction to `target`.
    pub(super) fn offset(&self, target: Label) -> usize {
        self.rev.len() - target - 1
    }

    pub(super) fn ret(&mut self, value: u32) -> Label {
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

    pub(super) fn load(&mut self, offset: u32) -> Label {
        self.push(LD_W_ABS, 0, 0, offset)
    }

    pub(super) fn and(&mut self, mask: u32) -> Label {
        self.push(ALU_AND_K, 0, 0, mask)
    }

    /// A conditional jump; long targets go through a `ja`.
    pub(super) fn jump(&mut self, code: u16, k: u32, mut t: Label, mut f: Label) -> Label {
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
    pub(super) fn cond(&mut self, c: &Cond, abi: Abi, t: Label, f: Label) -> Label {
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
    pub(super) fn load_before(&mut self, next: Label, offset: u32) -> Label {
        if next + 1 == self.rev.len() {
            self.load(offset)
        } else {
            // `next` was shared (t == f): jump to it after loading.
            let ja = self.push(JMP_JA, 0, 0, self.offset(next) as u32);
            debug_assert_eq!(ja + 1, self.rev.len());
            self.load(offset)
        }
    }

    pub(super) fn and_before(&mut self, next: Label, mask: u32) -> Label {
        if next + 1 != self.rev.len() {
            self.push(JMP_JA, 0, 0, self.offset(next) as u32);
        }
        self.and(mask)
    }

    /// A syscall's conditional rules, falling back to `fallback`.
    pub(super) fn rules(&mut self, rules: &[(Vec<Cond>, u32)], abi: Abi, fallback: u32) -> Label {
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
    pub(super) fn tree(&mut self, segments: &[(u32, Leaf)], abi: Abi, default: u32) -> Label {
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
pub(super) fn segments<'a>(
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

pub(super) fn generate(
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
