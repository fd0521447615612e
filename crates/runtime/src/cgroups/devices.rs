//! Device access rules.
//!
//! On cgroup v1 the rules are written, in order, to `devices.allow` and
//! `devices.deny`; the kernel keeps a default (allow or deny all) and a list
//! of exceptions.
//!
//! cgroup v2 has no devices files: access is decided by eBPF programs of
//! type `BPF_PROG_TYPE_CGROUP_DEVICE` attached to the cgroup. berth replays
//! the OCI rules through an [`Emulator`] of the v1 kernel semantics (so a
//! config means the same on both versions, as in runc), compiles the result
//! into such a program and attaches it, replacing programs berth attached
//! before (`update`). Like the v1 kernel, a rule of type `a` means every
//! device whatever its numbers and access.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use super::CgroupError;

/// Which devices a rule is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Every device (`a`).
    All,
    /// Character devices (`c`).
    Char,
    /// Block devices (`b`).
    Block,
}

/// Access bits, as `BPF_DEVCG_ACC_*`.
const MKNOD: u8 = 1;
const READ: u8 = 2;
const WRITE: u8 = 4;
const RWM: u8 = MKNOD | READ | WRITE;

/// A validated device rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// Allow (or deny).
    pub allow: bool,
    /// Device kind.
    pub kind: Kind,
    /// Major number; None is any.
    pub major: Option<u32>,
    /// Minor number; None is any.
    pub minor: Option<u32>,
    /// `MKNOD | READ | WRITE` bits.
    pub access: u8,
}

impl Rule {
    /// Validates an OCI rule. A missing type is `a`, missing or -1 numbers
    /// are wildcards, a missing access is `rwm`.
    pub fn from_oci(r: &LinuxDeviceCgroup) -> Result<Rule, CgroupError> {
        let kind = match r.typ().unwrap_or_default() {
            LinuxDeviceType::A => Kind::All,
            LinuxDeviceType::C | LinuxDeviceType::U => Kind::Char,
            LinuxDeviceType::B => Kind::Block,
            LinuxDeviceType::P => {
                return Err(CgroupError::InvalidValue {
                    what: "device rule type",
                    value: "p".into(),
                    reason: "the devices cgroup only knows a, b and c".into(),
                })
            }
        };
        let number = |n: Option<i64>, what| match n {
            None | Some(-1) => Ok(None),
            Some(n) if (0..=i64::from(i32::MAX)).contains(&n) => Ok(Some(n as u32)),
            Some(n) => Err(CgroupError::InvalidValue {
                what,
                value: n.to_string(),
                reason: "out of range".into(),
            }),
        };
        let access_str = r.access().as_deref().unwrap_or("rwm");
        let mut access = 0;
        for c in access_str.chars() {
            access |= match c {
                'r' => READ,
                'w' => WRITE,
                'm' => MKNOD,
                _ => 0xff,
            };
        }
        if access == 0 || access > RWM {
            return Err(CgroupError::InvalidValue {
                what: "device rule access",
                value: access_str.to_owned(),
                reason: "expected a combination of r, w and m".into(),
            });
        }
        Ok(Rule {
            allow: r.allow(),
            kind,
            major: number(r.major(), "device rule major number")?,
            minor: number(r.minor(), "device rule minor number")?,
            access,
        })
    }

    /// The line for `devices.allow` or `devices.deny`.
    pub fn v1_line(&self) -> String {
        let kind = match self.kind {
            Kind::All => return "a".to_owned(),
            Kind::Char => 'c',
            Kind::Block => 'b',
        };
        let num = |n: Option<u32>| n.map_or_else(|| "*".to_owned(), |n| n.to_string());
        let mut access = String::new();
        for (bit, c) in [(READ, 'r'), (WRITE, 'w'), (MKNOD, 'm')] {
            if self.access & bit != 0 {
                access.push(c);
            }
        }
        format!("{kind} {}:{} {access}", num(self.major), num(self.minor))
    }
}

/// Writes `rules` to a v1 devices cgroup, in order.
pub(crate) fn set_v1(dir: &Path, rules: &[LinuxDeviceCgroup]) -> Result<(), CgroupError> {
    let rules = rules
        .iter()
        .map(Rule::from_oci)
        .collect::<Result<Vec<_>, _>>()?;
    for r in rules {
        let file = if r.allow {
            "devices.allow"
        } else {
            "devices.deny"
        };
        super::fs::write(dir, file, &r.v1_line())?;
    }
    Ok(())
}

/// The v1 devices cgroup's state: a default and exceptions to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Emulator {
    /// Whether devices not in `exceptions` are allowed.
    pub default_allow: bool,
    /// Devices treated opposite to the default; `allow` is unused.
    pub exceptions: Vec<Rule>,
}

impl Default for Emulator {
    /// A new cgroup: every device allowed.
    fn default() -> Self {
        Emulator {
            default_allow: true,
            exceptions: Vec::new(),
        }
    }
}

impl Emulator {
    /// Applies one rule as the v1 kernel does (security/device_cgroup.c).
    pub fn apply(&mut self, r: &Rule) {
        if r.kind == Kind::All {
            self.default_allow = r.allow;
            self.exceptions.clear();
            return;
        }
        let same = |e: &Rule| e.kind == r.kind && e.major == r.major && e.minor == r.minor;
        let found = self.exceptions.iter().position(same);
        if r.allow == self.default_allow {
            // Takes the access away from an identical exception.
            if let Some(i) = found {
                self.exceptions[i].access &= !r.access;
                if self.exceptions[i].access == 0 {
                    self.exceptions.remove(i);
                }
            }
        } else if let Some(i) = found {
            self.exceptions[i].access |= r.access;
        } else {
            self.exceptions.push(*r);
        }
    }

    /// Whether the state allows `access` to a device (as the kernel checks
    /// it): in deny mode one exception must cover all of the access; in
    /// allow mode any exception touching it denies.
    pub fn allows(&self, kind: Kind, major: u32, minor: u32, access: u8) -> bool {
        let matching = self.exceptions.iter().filter(|e| {
            (e.kind == kind || e.kind == Kind::All)
                && e.major.is_none_or(|m| m == major)
                && e.minor.is_none_or(|m| m == minor)
        });
        if self.default_allow {
            !matching.into_iter().any(|e| e.access & access != 0)
        } else {
            matching.into_iter().any(|e| access & !e.access == 0)
        }
    }

    /// The eBPF program deciding as this state does.
    pub(crate) fn program(&self) -> Vec<Insn> {
        // struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }
        // access_type is (access << 16) | type.
        let mut p = vec![
            Insn::ldxw(R2, R1, 0),
            Insn::alu32_imm(AND, R2, 0xffff),
            Insn::ldxw(R3, R1, 0),
            Insn::alu32_imm(RSH, R3, 16),
            Insn::ldxw(R4, R1, 4),
            Insn::ldxw(R5, R1, 8),
        ];
        let verdict = i32::from(!self.default_allow);
        for e in &self.exceptions {
            // Conditions as (instructions, index of the jump in them).
            let mut conds: Vec<Vec<Insn>> = Vec::new();
            match e.kind {
                Kind::Block => conds.push(vec![Insn::jmp_imm(JNE, R2, DEV_BLOCK, 0)]),
                Kind::Char => conds.push(vec![Insn::jmp_imm(JNE, R2, DEV_CHAR, 0)]),
                Kind::All => {}
            }
            if e.access != RWM {
                let test = if self.default_allow {
                    // Deny if any requested bit is in the exception.
                    Insn::jmp_imm(JEQ, R1, 0, 0)
                } else {
                    // Allow only if every requested bit is in it.
                    Insn::jmp_reg(JNE, R1, R3, 0)
                };
                conds.push(vec![
                    Insn::mov32_reg(R1, R3),
                    Insn::alu32_imm(AND, R1, i32::from(e.access)),
                    test,
                ]);
            }
            if let Some(m) = e.major {
                conds.push(vec![Insn::jmp_imm(JNE, R4, m as i32, 0)]);
            }
            if let Some(m) = e.minor {
                conds.push(vec![Insn::jmp_imm(JNE, R5, m as i32, 0)]);
            }
            let len: usize = conds.iter().map(Vec::len).sum::<usize>() + 2;
            let mut at = 0;
            for mut c in conds {
                at += c.len();
                // The jump is the last instruction; skip the rest of the block.
                c.last_mut().expect("non-empty condition").off = (len - at) as i16;
                p.extend(c);
            }
            p.push(Insn::mov32_imm(R0, verdict));
            p.push(Insn::exit());
        }
        p.push(Insn::mov32_imm(R0, i32::from(self.default_allow)));
        p.push(Insn::exit());
        p
    }
}

/// Replays `rules` from a new cgroup's state (allow all).
pub fn emulate(rules: &[LinuxDeviceCgroup]) -> Result<Emulator, CgroupError> {
    let mut emu = Emulator::default();
    for r in rules {
        emu.apply(&Rule::from_oci(r)?);
    }
    Ok(emu)
}

// eBPF encoding (include/uapi/linux/bpf.h, bpf_common.h).
const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const R3: u8 = 3;
const R4: u8 = 4;
const R5: u8 = 5;
const AND: u8 = 0x50;
const RSH: u8 = 0x70;
const JEQ: u8 = 0x10;
const JNE: u8 = 0x50;
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;

/// One eBPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

impl Insn {
    fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
        // dst_reg:4 and src_reg:4 are bit fields in declaration order.
        #[cfg(target_endian = "little")]
        let regs = dst | (src << 4);
        #[cfg(target_endian = "big")]
        let regs = (dst << 4) | src;
        Insn {
            code,
            regs,
            off,
            imm,
        }
    }
    /// dst = *(u32 *)(src + off)
    fn ldxw(dst: u8, src: u8, off: i16) -> Insn {
        Insn::new(0x61, dst, src, off, 0) // BPF_LDX | BPF_MEM | BPF_W
    }
    /// 32-bit dst op= imm
    fn alu32_imm(op: u8, dst: u8, imm: i32) -> Insn {
        Insn::new(0x04 | op, dst, 0, 0, imm) // BPF_ALU | op | BPF_K
    }
    fn mov32_imm(dst: u8, imm: i32) -> Insn {
        Insn::alu32_imm(0xb0, dst, imm) // BPF_MOV
    }
    fn mov32_reg(dst: u8, src: u8) -> Insn {
        Insn::new(0x0c | 0xb0, dst, src, 0, 0) // BPF_ALU | BPF_MOV | BPF_X
    }
    fn jmp_imm(op: u8, dst: u8, imm: i32, off: i16) -> Insn {
        Insn::new(0x05 | op, dst, 0, off, imm) // BPF_JMP | op | BPF_K
    }
    fn jmp_reg(op: u8, dst: u8, src: u8, off: i16) -> Insn {
        Insn::new(0x0d | op, dst, src, off, 0) // BPF_JMP | op | BPF_X
    }
    fn exit() -> Insn {
        Insn::new(0x95, 0, 0, 0, 0) // BPF_JMP | BPF_EXIT
    }
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_DETACH: libc::c_long = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_PROG_QUERY: libc::c_long = 16;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

/// `union bpf_attr` for BPF_PROG_LOAD (the leading fields).
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// `union bpf_attr` for BPF_PROG_ATTACH and BPF_PROG_DETACH.
#[repr(C)]
#[derive(Default)]
struct AttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

/// `union bpf_attr` for BPF_PROG_QUERY.
#[repr(C)]
#[derive(Default)]
struct QueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    _pad: u32,
}

/// `union bpf_attr` for BPF_PROG_GET_FD_BY_ID.
#[repr(C)]
#[derive(Default)]
struct GetFdAttr {
    prog_id: u32,
    next_id: u32,
    open_flags: u32,
}

/// Calls bpf(2) with `attr`.
fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, exclusively borrowed #[repr(C)] prefix of
    // `union bpf_attr` and we pass its exact size; the kernel zero-extends
    // shorter attrs and writes only within `size` bytes. Pointers inside it
    // are set by the callers to buffers that outlive the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T as *mut libc::c_void,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Turns a bpf(2) result that is a new file descriptor into an owned one.
fn owned_fd(r: libc::c_long) -> OwnedFd {
    // SAFETY: the kernel just returned this descriptor to us and nothing
    // else owns it.
    unsafe { OwnedFd::from_raw_fd(r as i32) }
}

/// Loads the program for `rules` and attaches it to the cgroup v2 `dir`,
/// then detaches the device programs that were there before.
pub(crate) fn set_v2(dir: &Path, rules: &[LinuxDeviceCgroup]) -> Result<(), CgroupError> {
    let emu = emulate(rules)?;
    let err = |step, source| CgroupError::DeviceFilter {
        step,
        path: dir.to_owned(),
        source,
    };
    let cgroup = std::fs::File::open(dir).map_err(|e| err("opening the cgroup", e))?;
    let old = query(&cgroup).map_err(|e| err("listing the attached device programs", e))?;
    let prog = load(&emu.program()).map_err(|e| err("loading the program", e))?;
    let mut attach = AttachAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        ..Default::default()
    };
    bpf(BPF_PROG_ATTACH, &mut attach).map_err(|e| err("attaching the program", e))?;
    for id in old {
        let mut get = GetFdAttr {
            prog_id: id,
            ..Default::default()
        };
        let old_prog = match bpf(BPF_PROG_GET_FD_BY_ID, &mut get) {
            Ok(fd) => owned_fd(fd),
            // Detached meanwhile.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(e) => return Err(err("opening the previous program", e)),
        };
        let mut detach = AttachAttr {
            target_fd: cgroup.as_raw_fd() as u32,
            attach_bpf_fd: old_prog.as_raw_fd() as u32,
            attach_type: BPF_CGROUP_DEVICE,
            ..Default::default()
        };
        match bpf(BPF_PROG_DETACH, &mut detach) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(err("detaching the previous program", e)),
        }
    }
    Ok(())
}

/// IDs of the device programs attached directly to `cgroup`.
pub(crate) fn query(cgroup: &std::fs::File) -> io::Result<Vec<u32>> {
    let mut ids = vec![0u32; 64];
    let mut q = QueryAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        prog_ids: ids.as_mut_ptr() as u64,
        prog_cnt: ids.len() as u32,
        ..Default::default()
    };
    bpf(BPF_PROG_QUERY, &mut q)?;
    ids.truncate(q.prog_cnt as usize);
    Ok(ids)
}

/// Loads a device program, returning its fd.
fn load(insns: &[Insn]) -> io::Result<OwnedFd> {
    let license = c"Apache-2.0";
    let mut name = [0u8; 16];
    name[..13].copy_from_slice(b"berth_devices");
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        prog_name: name,
        expected_attach_type: BPF_CGROUP_DEVICE,
        ..Default::default()
    };
    let fd = bpf(BPF_PROG_LOAD, &mut attr)?;
    Ok(owned_fd(fd))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oci(json: &str) -> Vec<LinuxDeviceCgroup> {
        serde_json::from_str(json).unwrap()
    }

    /// Runs the program on the input in a tiny interpreter, covering the
    /// instructions `program` emits.
    fn run(p: &[Insn], kind: Kind, major: u32, minor: u32, access: u8) -> u64 {
        let typ = match kind {
            Kind::Block => 1,
            Kind::Char => 2,
            Kind::All => unreachable!(),
        };
        let ctx = [(u32::from(access) << 16) | typ, major, minor];
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        loop {
            let i = p[pc];
            let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
            pc += 1;
            match i.code {
                0x61 => {
                    assert_eq!(src, 1);
                    r[dst] = u64::from(ctx[i.off as usize / 4]);
                }
                0x54 => r[dst] = u64::from(r[dst] as u32 & i.imm as u32),
                0x74 => r[dst] = u64::from((r[dst] as u32) >> i.imm),
                0xb4 => r[dst] = u64::from(i.imm as u32),
                0xbc => r[dst] = u64::from(r[src] as u32),
                0x15 | 0x55 | 0x5d => {
                    let rhs = if i.code == 0x5d {
                        r[src]
                    } else {
                        i.imm as i64 as u64
                    };
                    let take = if i.code == 0x15 {
                        r[dst] == rhs
                    } else {
                        r[dst] != rhs
                    };
                    if take {
                        pc += i.off as usize;
                    }
                }
                0x95 => return r[0],
                c => panic!("unexpected opcode {c:#x}"),
            }
        }
    }

    /// The program agrees with the emulator on many devices and accesses.
    fn check_agrees(emu: &Emulator) {
        let p = emu.program();
        for kind in [Kind::Char, Kind::Block] {
            for major in [1, 5, 10, 136, 254] {
                for minor in [0, 1, 3, 5, 9, 200] {
                    for access in 1..=RWM {
                        let want = emu.allows(kind, major, minor, access);
                        let got = run(&p, kind, major, minor, access) == 1;
                        assert_eq!(got, want, "{kind:?} {major}:{minor} {access} in {emu:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn parse_and_v1_lines() {
        let rules = oci(r#"[{"allow": false, "access": "rwm"},
                {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rw"},
                {"allow": true, "type": "b", "major": 8, "access": "m"},
                {"allow": true, "type": "u", "major": -1, "minor": 7}]"#);
        let lines: Vec<String> = rules
            .iter()
            .map(|r| Rule::from_oci(r).unwrap().v1_line())
            .collect();
        assert_eq!(lines, ["a", "c 1:3 rw", "b 8:* m", "c *:7 rwm"]);
        for bad in [
            r#"[{"allow": true, "type": "p"}]"#,
            r#"[{"allow": true, "type": "c", "access": "rx"}]"#,
            r#"[{"allow": true, "type": "c", "access": ""}]"#,
            r#"[{"allow": true, "type": "c", "major": -2}]"#,
            r#"[{"allow": true, "type": "c", "minor": 4294967296}]"#,
        ] {
            let err = Rule::from_oci(&oci(bad)[0]).unwrap_err();
            assert!(
                matches!(err, CgroupError::InvalidValue { .. }),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn emulator_follows_the_kernel() {
        // runc's default: deny everything, then allow a few devices.
        let emu = emulate(&oci(r#"[{"allow": false, "access": "rwm"},
                {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
                {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rw"},
                {"allow": true, "type": "c", "major": 5, "minor": 0, "access": "r"},
                {"allow": true, "type": "c", "major": 5, "minor": 0, "access": "w"},
                {"allow": true, "type": "c", "major": 136, "access": "rwm"},
                {"allow": false, "type": "c", "major": 136, "access": "m"},
                {"allow": true, "type": "b", "access": "m"}]"#))
        .unwrap();
        assert!(!emu.default_allow);
        assert_eq!(emu.exceptions.len(), 4);
        assert!(emu.allows(Kind::Char, 1, 3, RWM));
        assert!(emu.allows(Kind::Char, 5, 0, READ | WRITE));
        assert!(!emu.allows(Kind::Char, 5, 0, MKNOD));
        assert!(emu.allows(Kind::Char, 136, 9, READ | WRITE));
        assert!(!emu.allows(Kind::Char, 136, 9, MKNOD));
        assert!(!emu.allows(Kind::Char, 1, 5, READ));
        assert!(emu.allows(Kind::Block, 8, 0, MKNOD));
        assert!(!emu.allows(Kind::Block, 8, 0, READ));
        check_agrees(&emu);

        // Allow everything but a few.
        let emu = emulate(&oci(r#"[{"allow": true, "access": "r"},
                {"allow": false, "type": "c", "major": 1, "minor": 5, "access": "w"},
                {"allow": false, "type": "b", "access": "rwm"},
                {"allow": false, "type": "c", "major": 10, "minor": 200},
                {"allow": true, "type": "c", "major": 10, "minor": 200, "access": "rm"}]"#))
        .unwrap();
        assert!(emu.default_allow);
        assert!(emu.allows(Kind::Char, 1, 5, READ));
        assert!(!emu.allows(Kind::Char, 1, 5, READ | WRITE));
        assert!(!emu.allows(Kind::Block, 7, 0, READ));
        assert!(emu.allows(Kind::Char, 10, 200, READ | MKNOD));
        assert!(!emu.allows(Kind::Char, 10, 200, WRITE));
        check_agrees(&emu);

        // A later "a" rule resets everything before it.
        let emu = emulate(&oci(
            r#"[{"allow": false, "type": "c", "major": 1, "minor": 3},
                {"allow": true, "type": "a", "major": 1, "access": "r"}]"#,
        ))
        .unwrap();
        assert_eq!(emu, Emulator::default());
        check_agrees(&emu);
    }
}
