//! The rules a profile compiles to, per ABI and syscall number, and the
//! return values of the actions: what the code generator reads.

use oci_spec::runtime::LinuxSeccompOperator;

use super::syscalls::Row;

pub(super) const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
pub(super) const AUDIT_ARCH_I386: u32 = 0x4000_0003;
pub(super) const X32_SYSCALL_BIT: u32 = 0x4000_0000;

pub(super) const RET_KILL_THREAD: u32 = 0x0000_0000;
pub(super) const RET_KILL_PROCESS: u32 = 0x8000_0000;
pub(super) const RET_TRAP: u32 = 0x0003_0000;
pub(super) const RET_ERRNO: u32 = 0x0005_0000;
pub(super) const RET_USER_NOTIF: u32 = 0x7fc0_0000;
pub(super) const RET_TRACE: u32 = 0x7ff0_0000;
pub(super) const RET_LOG: u32 = 0x7ffc_0000;
pub(super) const RET_ALLOW: u32 = 0x7fff_0000;

/// The three syscall ABIs of an x86_64 kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Abi {
    X86_64 = 0,
    I386 = 1,
    X32 = 2,
}

impl Abi {
    pub(super) const ALL: [Abi; 3] = [Abi::X86_64, Abi::I386, Abi::X32];

    /// The number of `name` in this ABI (x32 numbers carry the x32 bit).
    #[cfg(test)]
    pub(super) fn resolve(self, name: &str) -> Option<u32> {
        self.number(super::syscalls::lookup(name)?)
    }

    /// This ABI's number in a table row.
    pub(super) fn number(self, row: &Row) -> Option<u32> {
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
    pub(super) fn is_32bit(self) -> bool {
        self != Abi::X86_64
    }
}

/// One comparison of a syscall argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Cond {
    pub(super) index: u32,
    pub(super) op: LinuxSeccompOperator,
    pub(super) value: u64,
    pub(super) value_two: u64,
}

impl Cond {
    /// A masked comparison whose mask is 0 in this ABI always holds; like
    /// libseccomp, such a condition is dropped, and a rule left without
    /// conditions is unconditional.
    pub(super) fn always_true(&self, abi: Abi) -> bool {
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
pub(super) struct SysRules {
    /// The action of the first rule without conditions.
    pub(super) unconditional: Option<u32>,
    /// Rules with conditions, in the spec's order.
    pub(super) conditional: Vec<(Vec<Cond>, u32)>,
}

/// What one ABI's filter decides per syscall number.
#[derive(Default)]
pub(super) struct AbiRules {
    pub(super) enabled: bool,
    /// Rules by syscall number without the x32 bit (every number in
    /// [`SYSCALLS`] is below [`TABLE_LEN`]).
    pub(super) by_nr: Vec<SysRules>,
    /// The highest number the profile names in this ABI.
    pub(super) max_nr: Option<u32>,
}

pub(super) const TABLE_LEN: usize = 1024;

impl AbiRules {
    pub(super) fn entry(&mut self, nr: u32) -> &mut SysRules {
        if self.by_nr.is_empty() {
            self.by_nr.resize_with(TABLE_LEN, SysRules::default);
        }
        &mut self.by_nr[(nr & !X32_SYSCALL_BIT) as usize]
    }
}
