use std::ffi::CString;

use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompOperator};

use super::codegen::*;
use super::compile::*;
use super::rules::*;
use super::syscalls::*;
use super::*;

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
            let r =
                unsafe { libc::syscall(nr, 1u32, params.as_mut_ptr(), 0u32, 0u32, 0usize, 0usize) };
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
    let path = CString::new(dir.path().join("d").into_os_string().into_encoded_bytes()).unwrap();
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
            if libc::mkdirat(libc::AT_FDCWD, path.as_ptr(), 0o755) != -1 || errno() != libc::EPERM {
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
            if libc::socket(libc::AF_VSOCK, libc::SOCK_STREAM, 0) != -1 || errno() != libc::EPERM {
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
