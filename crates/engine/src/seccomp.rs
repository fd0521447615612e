//! Docker's seccomp profiles: the default one (built in) and
//! `--security-opt seccomp=FILE`, in Docker's own format, turned into the
//! OCI section the runtime compiles, as Docker does. This is Docker's
//! semantics, so it is the engine's; the runtime only knows OCI's format.

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArgBuilder, LinuxSeccompFilterFlag,
    LinuxSeccompOperator, LinuxSyscall,
};
use serde::Deserialize;

/// Errors in a profile of Docker's format.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// An action name that is not a seccomp action.
    #[error("unknown seccomp action {0:?}")]
    UnknownAction(String),
    /// An architecture name that is not a seccomp architecture.
    #[error("unknown seccomp architecture {0:?}")]
    UnknownArch(String),
    /// A comparison operator name that is not a seccomp operator.
    #[error("unknown seccomp operator {0:?}")]
    UnknownOperator(String),
    /// A filter flag name that is not a seccomp flag.
    #[error("unknown seccomp flag {0:?}")]
    UnknownFlag(String),
    /// Not valid JSON of the expected shape.
    #[error("invalid seccomp profile")]
    Json(#[source] serde_json::Error),
    /// No default action.
    #[error("seccomp profile has no defaultAction")]
    NoDefaultAction,
    /// Both `architectures` and `archMap`.
    #[error("seccomp profile sets both 'architectures' and 'archMap'; use one")]
    ArchitecturesAndArchMap,
    /// An entry with both `name` and `names`.
    #[error("seccomp profile entry sets both 'name' and 'names'; use one")]
    NameAndNames,
    /// A `minKernel` that is not a kernel version.
    #[error("invalid minKernel {0:?} in seccomp profile")]
    KernelVersion(String),
}

/// Docker's seccomp profile: OCI's fields plus `archMap` and per-entry
/// `includes`/`excludes` by capability, architecture and kernel version.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DockerProfile {
    #[serde(default)]
    default_action: String,
    default_errno_ret: Option<u32>,
    architectures: Option<Vec<String>>,
    arch_map: Option<Vec<DockerArchMap>>,
    flags: Option<Vec<String>>,
    listener_path: Option<String>,
    listener_metadata: Option<String>,
    syscalls: Option<Vec<DockerSyscall>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DockerArchMap {
    architecture: String,
    sub_architectures: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DockerSyscall {
    #[serde(default)]
    name: String,
    names: Option<Vec<String>>,
    action: String,
    errno_ret: Option<u32>,
    args: Option<Vec<DockerArg>>,
    includes: Option<DockerFilter>,
    excludes: Option<DockerFilter>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DockerFilter {
    caps: Option<Vec<String>>,
    arches: Option<Vec<String>>,
    min_kernel: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DockerArg {
    index: usize,
    value: u64,
    #[serde(default)]
    value_two: u64,
    op: String,
}

/// `CAP_SYS_ADMIN`, `sys_admin` and `SYS_ADMIN` name the same capability.
fn cap_name(name: &str) -> String {
    let upper = name.to_ascii_uppercase();
    if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    }
}

/// Docker's architecture names (libseccomp's, as used in `includes` and
/// `excludes`) for a Go/OCI platform architecture; other names pass through.
fn docker_arch(arch: &str) -> &str {
    match arch {
        "386" => "x86",
        "mips64p32" => "mips64n32",
        "mips64le" => "mipsel64",
        "mips64p32le" => "mips3l64n32",
        "mipsle" => "mipsel",
        other => other,
    }
}

/// The seccomp architecture whose `archMap` entry applies to `arch`.
fn docker_native_arch(arch: &str) -> Option<Arch> {
    Some(match arch {
        "x86" => Arch::ScmpArchX86,
        "amd64" => Arch::ScmpArchX86_64,
        "x32" => Arch::ScmpArchX32,
        "arm" => Arch::ScmpArchArm,
        "arm64" => Arch::ScmpArchAarch64,
        "mips" => Arch::ScmpArchMips,
        "mips64" => Arch::ScmpArchMips64,
        "mips64n32" => Arch::ScmpArchMips64n32,
        "mipsel" => Arch::ScmpArchMipsel,
        "mipsel64" => Arch::ScmpArchMipsel64,
        "mips3l64n32" => Arch::ScmpArchMipsel64n32,
        "ppc" => Arch::ScmpArchPpc,
        "ppc64" => Arch::ScmpArchPpc64,
        "ppc64le" => Arch::ScmpArchPpc64le,
        "s390" => Arch::ScmpArchS390,
        "s390x" => Arch::ScmpArchS390x,
        "riscv64" => Arch::ScmpArchRiscv64,
        "loong64" | "loongarch64" => Arch::ScmpArchLoongarch64,
        _ => return None,
    })
}

fn parse_arch(name: &str) -> Result<Arch, ProfileError> {
    name.parse()
        .map_err(|_| ProfileError::UnknownArch(name.to_owned()))
}

fn parse_action(name: &str) -> Result<LinuxSeccompAction, ProfileError> {
    name.parse()
        .map_err(|_| ProfileError::UnknownAction(name.to_owned()))
}

fn parse_operator(name: &str) -> Result<LinuxSeccompOperator, ProfileError> {
    name.parse()
        .map_err(|_| ProfileError::UnknownOperator(name.to_owned()))
}

/// A kernel version's (major, minor), as Docker compares them.
fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(['.', '-', '+']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?;
    let digits = minor
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(minor.len());
    Some((major, minor[..digits].parse().ok()?))
}

/// Whether the running kernel is at least `version` ("4.8").
fn kernel_at_least(version: &str) -> Result<bool, ProfileError> {
    let want =
        kernel_version(version).ok_or_else(|| ProfileError::KernelVersion(version.to_owned()))?;
    let uname = rustix::system::uname();
    let release = uname.release().to_string_lossy();
    let have =
        kernel_version(&release).ok_or_else(|| ProfileError::KernelVersion(release.to_string()))?;
    Ok(have >= want)
}

/// Docker's default seccomp profile in Docker's own format, byte for byte
/// moby's `profiles/seccomp/default.json` (Apache-2.0; see
/// `profiles/README.md`). `from_docker_profile` turns it into the OCI section.
pub const DOCKER_DEFAULT_PROFILE: &[u8] = include_bytes!("../profiles/docker-default.json");

/// Converts a profile in Docker's format (its default profile, or
/// `--security-opt seccomp=FILE`) into the OCI section for a container whose
/// bounding set is `caps` on architecture `arch` (Go's names: `amd64`,
/// `arm64`, `386`, ...), as Docker does: `archMap` gives the architecture
/// and its sub-architectures, and an entry applies when all of its
/// `includes` hold and none of its `excludes` (caps in the bounding set,
/// the architecture, the running kernel at least `minKernel`).
pub fn from_docker_profile(
    json: &[u8],
    caps: &[String],
    arch: &str,
) -> Result<LinuxSeccomp, ProfileError> {
    let profile: DockerProfile = serde_json::from_slice(json).map_err(ProfileError::Json)?;
    if profile.default_action.is_empty() {
        return Err(ProfileError::NoDefaultAction);
    }
    let arch = docker_arch(arch);
    let native =
        docker_native_arch(arch).ok_or_else(|| ProfileError::UnknownArch(arch.to_owned()))?;
    let bounding: Vec<String> = caps.iter().map(|c| cap_name(c)).collect();
    let has_cap = |c: &String| bounding.contains(&cap_name(c));

    let mut out = LinuxSeccomp::default();
    out.set_default_action(parse_action(&profile.default_action)?);
    out.set_default_errno_ret(profile.default_errno_ret);

    let listed = profile.architectures.unwrap_or_default();
    let arch_map = profile.arch_map.unwrap_or_default();
    if !listed.is_empty() && !arch_map.is_empty() {
        return Err(ProfileError::ArchitecturesAndArchMap);
    }
    let mut architectures = Vec::new();
    for name in &listed {
        architectures.push(parse_arch(name)?);
    }
    for entry in &arch_map {
        let main = parse_arch(&entry.architecture)?;
        let subs = entry.sub_architectures.iter().flatten();
        let subs = subs.map(|s| parse_arch(s)).collect::<Result<Vec<_>, _>>()?;
        if main == native && architectures.is_empty() {
            architectures.push(main);
            architectures.extend(subs);
        }
    }
    if !architectures.is_empty() {
        out.set_architectures(Some(architectures));
    }

    if let Some(flags) = profile.flags.filter(|f| !f.is_empty()) {
        let flags = flags
            .iter()
            .map(|f| f.parse().map_err(|_| ProfileError::UnknownFlag(f.clone())))
            .collect::<Result<Vec<LinuxSeccompFilterFlag>, _>>()?;
        out.set_flags(Some(flags));
    }
    out.set_listener_path(
        profile
            .listener_path
            .filter(|p| !p.is_empty())
            .map(Into::into),
    );
    out.set_listener_metadata(profile.listener_metadata.filter(|m| !m.is_empty()));

    let mut syscalls = Vec::new();
    'entries: for entry in profile.syscalls.unwrap_or_default() {
        // Parse everything first, so a bad entry fails whether or not it
        // applies here.
        let action = parse_action(&entry.action)?;
        let mut args = Vec::new();
        for a in entry.args.iter().flatten() {
            let mut arg = LinuxSeccompArgBuilder::default()
                .index(a.index)
                .value(a.value)
                .op(parse_operator(&a.op)?);
            if a.value_two != 0 {
                arg = arg.value_two(a.value_two);
            }
            args.push(arg.build().expect("every field is set"));
        }
        let names = entry.names.unwrap_or_default();
        if !entry.name.is_empty() && !names.is_empty() {
            return Err(ProfileError::NameAndNames);
        }
        let names = if entry.name.is_empty() {
            names
        } else {
            vec![entry.name]
        };

        if let Some(ex) = &entry.excludes {
            if ex.arches.iter().flatten().any(|a| a == arch)
                || ex.caps.iter().flatten().any(has_cap)
            {
                continue 'entries;
            }
            if let Some(v) = ex.min_kernel.as_deref().filter(|v| !v.is_empty()) {
                if kernel_at_least(v)? {
                    continue 'entries;
                }
            }
        }
        if let Some(inc) = &entry.includes {
            let arches = inc.arches.as_deref().unwrap_or_default();
            if !arches.is_empty() && !arches.iter().any(|a| a == arch) {
                continue 'entries;
            }
            if !inc.caps.iter().flatten().all(has_cap) {
                continue 'entries;
            }
            if let Some(v) = inc.min_kernel.as_deref().filter(|v| !v.is_empty()) {
                if !kernel_at_least(v)? {
                    continue 'entries;
                }
            }
        }

        let mut syscall = LinuxSyscall::default();
        syscall.set_names(names);
        syscall.set_action(action);
        syscall.set_errno_ret(entry.errno_ret);
        syscall.set_args((!args.is_empty()).then_some(args));
        syscalls.push(syscall);
    }
    out.set_syscalls(Some(syscalls));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../runtime/tests/fixtures");

    /// Docker's default profile converted for Docker's default
    /// capabilities on amd64: the runtime's fixture of it.
    fn docker_default() -> LinuxSeccomp {
        let json = std::fs::read(format!("{FIXTURES}/docker-default-seccomp.json")).unwrap();
        serde_json::from_slice(&json).unwrap()
    }

    #[test]
    fn seccomp_profile_errors_name_the_culprit() {
        let caps: Vec<String> = Vec::new();
        let docker = |json: &str| {
            from_docker_profile(json.as_bytes(), &caps, "amd64")
                .unwrap_err()
                .to_string()
        };
        let msg = docker(r#"{"defaultAction": "SCMP_ACT_FOO"}"#);
        assert_eq!(msg, r#"unknown seccomp action "SCMP_ACT_FOO""#);
        let msg = docker(
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_BAR"}]}"#,
        );
        assert_eq!(msg, r#"unknown seccomp action "SCMP_ACT_BAR""#);
        let msg =
            docker(r#"{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_FOO"]}"#);
        assert_eq!(msg, r#"unknown seccomp architecture "SCMP_ARCH_FOO""#);
        let msg = docker(
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X87"]}]}"#,
        );
        assert_eq!(msg, r#"unknown seccomp architecture "SCMP_ARCH_X87""#);
        let msg = docker(
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_ABOUT"}]}]}"#,
        );
        assert_eq!(msg, r#"unknown seccomp operator "SCMP_CMP_ABOUT""#);
        let msg =
            docker(r#"{"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_FAST"]}"#);
        assert_eq!(msg, r#"unknown seccomp flag "SECCOMP_FILTER_FLAG_FAST""#);
        let err = from_docker_profile(br#"{"defaultAction": "SCMP_ACT_ALLOW"}"#, &caps, "vax")
            .unwrap_err();
        assert_eq!(err.to_string(), r#"unknown seccomp architecture "vax""#);
    }

    #[test]
    fn seccomp_docker_profile_conversion_matches_fixture() {
        let profile = DOCKER_DEFAULT_PROFILE.to_vec();
        let caps: Vec<String> = crate::spec::DOCKER_DEFAULT_CAPS
            .iter()
            .map(|c| c.to_string())
            .collect();
        let converted = from_docker_profile(&profile, &caps, "amd64").unwrap();
        assert_eq!(converted, docker_default());
        berth_runtime::seccomp::compile(&converted).expect("the runtime compiles it");
        let archs = converted.architectures().clone().unwrap();
        assert_eq!(
            archs,
            [Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32]
        );

        // CAP_SYS_ADMIN brings mount and friends and drops the clone limits.
        let mut admin = caps.clone();
        admin.push("sys_admin".into());
        let converted = from_docker_profile(&profile, &admin, "amd64").unwrap();
        let names = |s: &LinuxSeccomp| -> Vec<String> {
            s.syscalls()
                .iter()
                .flatten()
                .flat_map(|c| c.names().clone())
                .collect()
        };
        assert!(names(&converted).contains(&"mount".to_string()));
        // Without CAP_SYS_ADMIN, clone is allowed only without namespace
        // flags (an argument condition) and clone3 is refused (ENOSYS);
        // with it, both are allowed as they are.
        let unconditioned = |s: &LinuxSeccomp, name: &str| {
            s.syscalls().iter().flatten().any(|c| {
                c.names().iter().any(|n| n == name)
                    && c.action() == LinuxSeccompAction::ScmpActAllow
                    && c.args().as_ref().is_none_or(|a| a.is_empty())
            })
        };
        let plain = from_docker_profile(&profile, &caps, "amd64").unwrap();
        assert!(!unconditioned(&plain, "clone") && !unconditioned(&plain, "clone3"));
        assert!(unconditioned(&converted, "clone") && unconditioned(&converted, "clone3"));

        // arm64: its own architectures and arch-only entries.
        let converted = from_docker_profile(&profile, &caps, "arm64").unwrap();
        let archs = converted.architectures().clone().unwrap();
        assert_eq!(archs, [Arch::ScmpArchAarch64, Arch::ScmpArchArm]);
        assert!(names(&converted).contains(&"set_tls".to_string()));
        assert!(!names(&converted).contains(&"arch_prctl".to_string()));
    }

    #[test]
    fn seccomp_kernel_versions() {
        assert_eq!(kernel_version("4.8"), Some((4, 8)));
        assert_eq!(kernel_version("6.18.44-fc-v595"), Some((6, 18)));
        assert_eq!(kernel_version("5.10.0+"), Some((5, 10)));
        assert_eq!(kernel_version("3.10rc1"), Some((3, 10)));
        assert_eq!(kernel_version("four"), None);
        assert!(kernel_at_least("3.0").unwrap());
        assert!(!kernel_at_least("999.0").unwrap());
    }
}
