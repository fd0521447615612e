//! berth-runc: an OCI runtime with runc's command line, so that containerd
//! and dockerd can drive berth's runtime library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

use berth_runtime::container::{self, CreateOptions};
use berth_runtime::state::Saved;

#[derive(Parser, Debug)]
#[command(
    name = "berth-runc",
    version,
    about = "An OCI runtime with runc's command line"
)]
struct Cli {
    /// Root directory for container state
    #[arg(long, global = true, default_value = "/run/berth-runc")]
    root: PathBuf,
    /// Log file (default: stderr)
    #[arg(long, global = true)]
    log: Option<PathBuf>,
    /// Log format: text or json
    #[arg(long, global = true, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    /// Enable debug logging
    #[arg(long, global = true)]
    debug: bool,
    /// Use systemd for cgroups (not supported)
    #[arg(long, global = true)]
    systemd_cgroup: bool,
    #[command(subcommand)]
    command: Cmd,
}

/// The flags `create` and `run` share, defined once.
#[derive(clap::Args, Debug)]
struct CreateArgs {
    /// Path to the bundle directory
    #[arg(short, long, default_value = ".")]
    bundle: PathBuf,
    /// File to write the container's init pid to
    #[arg(long)]
    pid_file: Option<PathBuf>,
    /// Unix socket that receives the pty master
    #[arg(long)]
    console_socket: Option<PathBuf>,
    /// Use chroot instead of pivot_root
    #[arg(long)]
    no_pivot: bool,
    /// Pass N extra fds (3, 4, ...) to the process
    #[arg(long, default_value_t = 0)]
    preserve_fds: u32,
    /// Do not create a new session keyring (accepted for compatibility)
    #[arg(long)]
    no_new_keyring: bool,
    id: String,
}

impl CreateArgs {
    fn options(self, root: PathBuf) -> Result<CreateOptions> {
        Ok(CreateOptions {
            id: self.id,
            bundle: absolute(&self.bundle)?,
            root,
            pid_file: self.pid_file,
            console_socket: self.console_socket,
            no_pivot: self.no_pivot,
            preserve_fds: self.preserve_fds,
            stdio: None,
            console_fd: None,
            reaper: false,
            loopback: false,
            die_with_parent: false,
        })
    }
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Create a container
    Create(CreateArgs),
    /// Start a created container
    Start { id: String },
    /// Create and start a container; without --detach wait, then delete it
    Run {
        #[command(flatten)]
        create: CreateArgs,
        /// Detach from the container's process
        #[arg(short, long)]
        detach: bool,
    },
    /// Run a process in a running container
    Exec {
        /// JSON file holding the OCI process to run (instead of COMMAND)
        #[arg(short, long)]
        process: Option<PathBuf>,
        /// Allocate a pseudo-TTY (needs --console-socket)
        #[arg(short, long)]
        tty: bool,
        #[arg(long)]
        console_socket: Option<PathBuf>,
        /// Do not wait for the process
        #[arg(short, long)]
        detach: bool,
        #[arg(long)]
        pid_file: Option<PathBuf>,
        /// Working directory in the container
        #[arg(long)]
        cwd: Option<PathBuf>,
        /// Set an environment variable (KEY=VALUE)
        #[arg(short, long)]
        env: Vec<String>,
        /// UID[:GID] to run as
        #[arg(short, long)]
        user: Option<String>,
        /// Extra group ids
        #[arg(short = 'g', long)]
        additional_gids: Vec<u32>,
        /// Add a capability to the process's sets
        #[arg(short, long)]
        cap: Vec<String>,
        /// Set no_new_privs for the process
        #[arg(long)]
        no_new_privs: bool,
        #[arg(long, default_value_t = 0)]
        preserve_fds: u32,
        id: String,
        /// The command and its arguments
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Print the OCI state of a container
    State { id: String },
    /// Send a signal to the container's init (default SIGTERM)
    Kill {
        /// Signal every process in the container, not only init
        #[arg(short, long)]
        all: bool,
        id: String,
        #[arg(default_value = "SIGTERM")]
        signal: String,
    },
    /// Suspend every process in the container
    Pause { id: String },
    /// Change the resource limits of a running container
    Update {
        /// JSON file with an OCI linux.resources object ("-" for stdin)
        #[arg(short, long)]
        resources: Option<PathBuf>,
        /// Memory limit in bytes (suffixes k, m, g accepted)
        #[arg(short, long)]
        memory: Option<String>,
        /// Memory+swap limit in bytes (-1 for unlimited)
        #[arg(long)]
        memory_swap: Option<String>,
        /// Memory soft limit in bytes
        #[arg(long)]
        memory_reservation: Option<String>,
        /// CPU shares (relative weight)
        #[arg(long)]
        cpu_shares: Option<u64>,
        /// CPU CFS period in microseconds
        #[arg(long)]
        cpu_period: Option<u64>,
        /// CPU CFS quota in microseconds
        #[arg(long)]
        cpu_quota: Option<i64>,
        /// CPUs to run on (0-3, 0,1)
        #[arg(long)]
        cpuset_cpus: Option<String>,
        /// Memory nodes to use
        #[arg(long)]
        cpuset_mems: Option<String>,
        /// Maximum number of pids (-1 for unlimited)
        #[arg(long)]
        pids_limit: Option<i64>,
        id: String,
    },
    /// Resume a paused container
    Resume { id: String },
    /// List the processes of a container
    Ps {
        /// table or json
        #[arg(short, long, default_value = "table")]
        format: String,
        id: String,
    },
    /// Delete a container
    Delete {
        /// Kill a running container first
        #[arg(short, long)]
        force: bool,
        id: String,
    },
    /// List containers
    #[command(visible_alias = "ls")]
    List {
        /// table or json
        #[arg(short, long, default_value = "table")]
        format: String,
        /// Only print ids
        #[arg(short, long)]
        quiet: bool,
    },
    /// Print what this runtime supports (OCI features document)
    Features,
    /// Write a default config.json for a bundle
    Spec {
        #[arg(short, long, default_value = ".")]
        bundle: PathBuf,
    },
}

fn signal_number(s: &str) -> Result<i32> {
    // runc passes any number through to kill(2).
    if let Ok(n) = s.parse::<i32>() {
        return Ok(n);
    }
    match berth_runtime::signal::parse(s) {
        Some(n) => Ok(n),
        None => bail!("unknown signal {s:?}"),
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 1 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    init_logging(&cli);
    let log_file = cli.log.is_some();
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            // containerd reads the error from the log file; people read stderr.
            if log_file {
                tracing::error!("{e:#}");
            }
            eprintln!("berth-runc: {e:#}");
            // A program that cannot run exits as a shell's would (and as
            // berth-runc's did when the failure came at the exec): 127
            // not found, 126 not executable.
            use berth_runtime::container::{ContainerError, Failure};
            match e.downcast_ref::<ContainerError>() {
                Some(ContainerError::Command { failure, .. }) => {
                    ExitCode::from(if *failure == Failure::NotFound {
                        127
                    } else {
                        126
                    })
                }
                _ => ExitCode::from(1),
            }
        }
    }
}

/// Logs go to --log (containerd passes a file and reads it back) or stderr,
/// as text or JSON lines; --debug lowers the level to debug.
fn init_logging(cli: &Cli) {
    let level = if cli.debug {
        tracing::Level::DEBUG
    } else {
        tracing::Level::WARN
    };
    berth_runtime::log::Logger::new(level, cli.log_format == "json", cli.log.clone()).install();
}

fn run(cli: Cli) -> Result<u8> {
    if cli.systemd_cgroup {
        bail!("--systemd-cgroup is not supported: berth-runc manages cgroups through cgroupfs; drop the flag (containerd: SystemdCgroup = false)");
    }
    let root = cli.root;
    match cli.command {
        Cmd::Create(args) => {
            container::create(&args.options(root)?)?;
            Ok(0)
        }
        Cmd::Start { id } => {
            container::start(&root, &id)?;
            Ok(0)
        }
        Cmd::Run { create, detach } => {
            let opts = create.options(root)?;
            if detach {
                container::create(&opts)?;
                container::start(&opts.root, &opts.id)?;
                return Ok(0);
            }
            let code = container::run(&opts)?;
            Ok(code.clamp(0, 255) as u8)
        }
        Cmd::Exec {
            process,
            tty,
            console_socket,
            detach,
            pid_file,
            cwd,
            env,
            user,
            additional_gids,
            cap,
            no_new_privs,
            preserve_fds,
            id,
            command,
        } => {
            let proc_ = match process {
                Some(path) => {
                    let raw = std::fs::read(&path)
                        .with_context(|| format!("cannot read --process {}", path.display()))?;
                    serde_json::from_slice(&raw)
                        .with_context(|| format!("{} is not a valid OCI process", path.display()))?
                }
                None => {
                    if command.is_empty() {
                        bail!("exec needs a command (or --process FILE)");
                    }
                    let mut p = container::exec_base(&root, &id)?;
                    p.set_args(Some(command));
                    p.set_terminal(Some(tty));
                    if let Some(cwd) = cwd {
                        p.set_cwd(cwd);
                    }
                    let mut all_env = p.env().clone().unwrap_or_default();
                    for e in env {
                        let key = e.split('=').next().unwrap_or("").to_string();
                        all_env.retain(|x| x.split('=').next() != Some(key.as_str()));
                        all_env.push(e);
                    }
                    p.set_env(Some(all_env));
                    if let Some(u) = user {
                        let (uid, gid) = u.split_once(':').unwrap_or((u.as_str(), "0"));
                        let mut usr = p.user().clone();
                        usr.set_uid(uid.parse().with_context(|| {
                            format!("--user {u:?}: numeric UID[:GID] expected")
                        })?);
                        usr.set_gid(gid.parse().with_context(|| {
                            format!("--user {u:?}: numeric UID[:GID] expected")
                        })?);
                        if !additional_gids.is_empty() {
                            usr.set_additional_gids(Some(additional_gids));
                        }
                        p.set_user(usr);
                    }
                    if no_new_privs {
                        p.set_no_new_privileges(Some(true));
                    }
                    if !cap.is_empty() {
                        let mut caps = p.capabilities().clone().unwrap_or_default();
                        for c in cap {
                            let name = if c.starts_with("CAP_") {
                                c.clone()
                            } else {
                                format!("CAP_{c}")
                            };
                            let parsed: oci_spec::runtime::Capability =
                                serde_json::from_value(serde_json::Value::String(name))
                                    .with_context(|| format!("unknown capability {c:?}"))?;
                            let add = |s: &Option<
                                std::collections::HashSet<oci_spec::runtime::Capability>,
                            >| {
                                let mut s = s.clone().unwrap_or_default();
                                s.insert(parsed);
                                Some(s)
                            };
                            let (b, e, pm) = (
                                add(caps.bounding()),
                                add(caps.effective()),
                                add(caps.permitted()),
                            );
                            caps.set_bounding(b);
                            caps.set_effective(e);
                            caps.set_permitted(pm);
                        }
                        p.set_capabilities(Some(caps));
                    }
                    p
                }
            };
            let opts = container::ExecOptions {
                root,
                id,
                process: proc_,
                detach,
                pid_file,
                console_socket,
                preserve_fds,
                stdio: None,
                console_fd: None,
            };
            let code = container::exec(&opts)?;
            Ok(code.clamp(0, 255) as u8)
        }
        Cmd::State { id } => {
            let saved = Saved::load(&root, &id)?;
            println!("{}", serde_json::to_string_pretty(&saved.oci_state(&root))?);
            Ok(0)
        }
        Cmd::Kill { all, id, signal } => {
            let sig = signal_number(&signal)?;
            if all {
                container::kill_all(&root, &id, sig)?;
            } else {
                container::kill(&root, &id, sig)?;
            }
            Ok(0)
        }
        Cmd::Update {
            resources,
            memory,
            memory_swap,
            memory_reservation,
            cpu_shares,
            cpu_period,
            cpu_quota,
            cpuset_cpus,
            cpuset_mems,
            pids_limit,
            id,
        } => {
            use oci_spec::runtime::{LinuxPidsBuilder, LinuxResources};
            let mut r: LinuxResources = match resources {
                Some(path) => {
                    let raw = if path.as_os_str() == "-" {
                        let mut v = Vec::new();
                        std::io::Read::read_to_end(&mut std::io::stdin(), &mut v)?;
                        v
                    } else {
                        std::fs::read(&path)
                            .with_context(|| format!("cannot read {}", path.display()))?
                    };
                    serde_json::from_slice(&raw)
                        .context("--resources is not an OCI linux.resources object")?
                }
                None => LinuxResources::default(),
            };
            if memory.is_some() || memory_swap.is_some() || memory_reservation.is_some() {
                let mut m = r.memory().unwrap_or_default();
                if let Some(v) = memory {
                    m.set_limit(Some(bytes(&v)?));
                }
                if let Some(v) = memory_swap {
                    m.set_swap(Some(bytes(&v)?));
                }
                if let Some(v) = memory_reservation {
                    m.set_reservation(Some(bytes(&v)?));
                }
                r.set_memory(Some(m));
            }
            if cpu_shares.is_some()
                || cpu_period.is_some()
                || cpu_quota.is_some()
                || cpuset_cpus.is_some()
                || cpuset_mems.is_some()
            {
                let mut c = r.cpu().clone().unwrap_or_default();
                if cpu_shares.is_some() {
                    c.set_shares(cpu_shares);
                }
                if cpu_period.is_some() {
                    c.set_period(cpu_period);
                }
                if cpu_quota.is_some() {
                    c.set_quota(cpu_quota);
                }
                if cpuset_cpus.is_some() {
                    c.set_cpus(cpuset_cpus);
                }
                if cpuset_mems.is_some() {
                    c.set_mems(cpuset_mems);
                }
                r.set_cpu(Some(c));
            }
            if let Some(limit) = pids_limit {
                r.set_pids(Some(LinuxPidsBuilder::default().limit(limit).build()?));
            }
            container::update(&root, &id, &r)?;
            Ok(0)
        }
        Cmd::Pause { id } => {
            container::set_paused(&root, &id, true)?;
            Ok(0)
        }
        Cmd::Resume { id } => {
            container::set_paused(&root, &id, false)?;
            Ok(0)
        }
        Cmd::Ps { format, id } => {
            let pids = container::pids(&root, &id)?;
            if format == "json" {
                println!("{}", serde_json::to_string(&pids)?);
            } else {
                println!("{:>8} CMD", "PID");
                for pid in pids {
                    let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                    let cmd: Vec<String> = cmd
                        .split(|b| *b == 0)
                        .filter(|a| !a.is_empty())
                        .map(|a| String::from_utf8_lossy(a).into_owned())
                        .collect();
                    println!("{pid:>8} {}", cmd.join(" "));
                }
            }
            Ok(0)
        }
        Cmd::Delete { force, id } => {
            container::delete(&root, &id, force)?;
            Ok(0)
        }
        Cmd::List { format, quiet } => {
            let all = Saved::list(&root)?;
            if quiet {
                for s in &all {
                    println!("{}", s.id);
                }
            } else if format == "json" {
                let v: Vec<_> = all.iter().map(|s| s.oci_state(&root)).collect();
                println!("{}", serde_json::to_string(&v)?);
            } else {
                println!(
                    "{:<12} {:<8} {:<10} {:<40} {:<30} OWNER",
                    "ID", "PID", "STATUS", "BUNDLE", "CREATED"
                );
                for s in &all {
                    let st = s.oci_state(&root);
                    println!(
                        "{:<12} {:<8} {:<10} {:<40} {:<30} root",
                        s.id,
                        st["pid"],
                        st["status"].as_str().unwrap_or(""),
                        s.bundle.display(),
                        s.created
                    );
                }
            }
            Ok(0)
        }
        Cmd::Features => {
            println!("{}", serde_json::to_string_pretty(&features())?);
            Ok(0)
        }
        Cmd::Spec { bundle } => {
            let path = bundle.join("config.json");
            if path.exists() {
                bail!("file {} exists: remove it first", path.display());
            }
            let mut spec = oci_spec::runtime::Spec::default();
            spec.set_hostname(Some("berth".into()));
            std::fs::write(&path, serde_json::to_vec_pretty(&spec)?)
                .with_context(|| format!("cannot write {}", path.display()))?;
            Ok(0)
        }
    }
}

/// The OCI runtime features document (runtime-spec features.md).
fn features() -> serde_json::Value {
    let mode = berth_runtime::cgroups::host_mode();
    serde_json::json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": "1.2.0",
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": [
            "async", "atime", "bind", "dev", "diratime", "dirsync", "exec", "mand", "noatime",
            "nodev", "nodiratime", "noexec", "nomand", "norelatime", "nostrictatime", "nosuid",
            "private", "rbind", "relatime", "remount", "ro", "rprivate", "rshared", "rslave",
            "runbindable", "rw", "shared", "slave", "strictatime", "suid", "sync", "unbindable"
        ],
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "uts"],
            "capabilities": berth_runtime::caps::known(),
            "cgroup": {
                "v1": mode != "v2",
                "v2": mode != "v1",
                "systemd": false,
                "systemdUser": false,
            },
            "seccomp": {
                "enabled": true,
                "actions": ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS",
                            "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG", "SCMP_ACT_TRACE", "SCMP_ACT_TRAP"],
                "operators": ["SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE", "SCMP_CMP_LT",
                              "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"],
                "archs": ["SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32"],
            },
            "apparmor": { "enabled": false },
            "selinux": { "enabled": false },
        },
        "annotations": { "io.berth.runtime.version": format!("berth-runc {}", env!("CARGO_PKG_VERSION")) },
    })
}

/// "64m" style sizes (k, m, g: powers of 1024) or plain bytes; -1 stays -1.
fn bytes(s: &str) -> Result<i64> {
    let t = s.trim().to_ascii_lowercase();
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1i64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        _ => (t.as_str(), 1),
    };
    let n: i64 = num
        .trim_end_matches('b')
        .parse()
        .with_context(|| format!("invalid size {s:?}"))?;
    Ok(if n < 0 { n } else { n * mult })
}

fn absolute(p: &std::path::Path) -> Result<PathBuf> {
    std::fs::canonicalize(p).with_context(|| format!("bundle {}", p.display()))
}
