//! Container commands: run, create, start, stop, kill, rm, ps, logs, wait,
//! inspect, prune. The work is in berth-engine; this is flags and output.

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::{bail, Context, Result};
use berth_engine::config::ContainerConfig;
use berth_engine::{Engine, EngineError, Paths, Record};
use berth_service::containers::ContainerSummary;
use serde_json::{json, Value};

use crate::cli::{
    AttachArgs, CommitArgs, ContainerInspectArgs, ContainerPruneArgs, ContainersArgs, CpArgs,
    DiffArgs, ExecArgs, ExportArgs, KillArgs, LogsArgs, PsArgs, RenameArgs, RmArgs, RunArgs,
    StartArgs, StopArgs, TopArgs, UpdateArgs, WaitArgs,
};
use crate::images::Ctx;
use crate::output;

/// An error with the exit code docker gives it (125 engine, 126/127 exec).
#[derive(Debug)]
pub struct CodeError {
    pub code: u8,
    pub error: anyhow::Error,
}

impl std::fmt::Display for CodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#}", self.error)
    }
}

impl std::error::Error for CodeError {}

fn coded(e: EngineError) -> anyhow::Error {
    let code = e.exit_code();
    CodeError {
        code,
        error: e.into(),
    }
    .into()
}

/// A service error of `run`, `create` or `start`: docker's 125, 126, 127.
fn run_coded(e: berth_service::Error) -> anyhow::Error {
    CodeError {
        code: e.kind().run_exit_code(),
        error: e.into(),
    }
    .into()
}

fn engine(ctx: &Ctx) -> Result<Engine> {
    Engine::open(&Paths::new(&ctx.root, &ctx.runroot)).map_err(coded)
}

fn read_env_file(path: &std::path::Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("open {}: reading the --env-file", path.display()))?;
    let mut out = Vec::new();
    for line in text.lines() {
        let t = line.trim_start();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        if t.contains('=') {
            out.push(t.to_string());
        } else if let Ok(v) = std::env::var(t) {
            // A bare name takes the value from berth's environment.
            out.push(format!("{t}={v}"));
        }
    }
    Ok(out)
}

/// `--env-file` entries, then `-e`; a bare NAME takes berth's own value.
fn env_from(files: &[std::path::PathBuf], vars: &[String]) -> Result<Vec<String>> {
    let mut env = Vec::new();
    for f in files {
        env.extend(read_env_file(f)?);
    }
    for e in vars {
        if e.contains('=') {
            env.push(e.clone());
        } else if let Ok(v) = std::env::var(e) {
            env.push(format!("{e}={v}"));
        }
    }
    Ok(env)
}

fn config_from(a: &RunArgs) -> Result<ContainerConfig> {
    if !a.publish.is_empty() {
        bail!("-p/--publish needs bridge networking, which berth does not have yet; use --network host to reach the container's ports");
    }
    let restart: berth_engine::options::RestartPolicy = a.restart.parse().map_err(coded)?;
    let mounts = a
        .mount
        .iter()
        .map(|m| berth_engine::options::Mount::parse_flag(m))
        .collect::<Result<Vec<_>, _>>()
        .map_err(coded)?;
    let ulimits = a
        .ulimit
        .iter()
        .map(|u| u.parse())
        .collect::<Result<Vec<_>, _>>()
        .map_err(coded)?;
    let env = env_from(&a.env_file, &a.env)?;
    let mut labels = BTreeMap::new();
    for l in &a.labels {
        let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
        labels.insert(k.to_string(), v.to_string());
    }
    let health = berth_engine::health::HealthFlags {
        cmd: a.health_cmd.clone(),
        interval: a.health_interval.clone(),
        timeout: a.health_timeout.clone(),
        start_period: a.health_start_period.clone(),
        retries: a.health_retries,
        disabled: a.no_healthcheck,
        test: None,
    };
    let memory = memory_flag(a.memory.as_deref())?;
    Ok(ContainerConfig {
        cmd: a.command.clone(),
        entrypoint: a.entrypoint.clone().map(|e| vec![e]),
        env,
        workdir: a.workdir.clone(),
        user: a.user.clone(),
        hostname: a.hostname.clone(),
        domainname: a.domainname.clone(),
        extra_hosts: a.add_host.clone(),
        dns: a.dns.clone(),
        dns_search: a.dns_search.clone(),
        dns_options: a.dns_option.clone(),
        labels,
        tty: a.tty,
        interactive: a.interactive,
        stdin_once: false,
        console_size: None,
        read_only: a.read_only,
        tmpfs: a.tmpfs.clone(),
        volumes: a.volume.clone(),
        mounts,
        memory,
        cpus: a.cpus,
        pids_limit: a.pids_limit,
        cap_add: a.cap_add.clone(),
        cap_drop: a.cap_drop.clone(),
        privileged: a.privileged,
        security_opt: a.security_opt.clone(),
        init: a.init,
        ulimits,
        stop_signal: a.stop_signal.clone(),
        stop_timeout: a.stop_timeout,
        restart,
        network: a.network.clone(),
        auto_remove: a.rm,
        path: String::new(),
        args: Vec::new(),
        volume_mounts: Vec::new(),
        health,
        log_driver: a.log_driver.clone(),
        log_opts: a
            .log_opt
            .iter()
            .map(|o| {
                let (k, v) = o.split_once('=').unwrap_or((o.as_str(), ""));
                (k.to_string(), v.to_string())
            })
            .collect(),
    })
}

fn create_record(ctx: &Ctx, a: &RunArgs) -> Result<(Engine, Record)> {
    // Every flag error is an engine error (125), as docker's.
    let config = config_from(a).map_err(|e| match e.downcast::<CodeError>() {
        Ok(c) => c.into(),
        Err(e) => anyhow::Error::from(CodeError {
            code: 125,
            error: e,
        }),
    })?;
    let mut eng = engine(ctx)?;
    let lines = berth_registry_client::progress::Lines(std::sync::Mutex::new(std::io::stderr()));
    let req = berth_service::containers::CreateRequest {
        image: a.image.clone(),
        name: a.name.clone(),
        config,
        pull: a.pull,
    };
    let rec = berth_service::containers::create(&mut eng, req, &lines).map_err(run_coded)?;
    Ok((eng, rec))
}

pub fn create(ctx: &Ctx, a: &RunArgs) -> Result<u8> {
    let (_, rec) = create_record(ctx, a)?;
    println!("{}", rec.id);
    Ok(0)
}

pub fn run(ctx: &Ctx, a: &RunArgs) -> Result<u8> {
    let (mut eng, rec) = create_record(ctx, a)?;
    if a.detach {
        berth_engine::monitor::start_detached(eng, &rec.id).map_err(coded)?;
        println!("{}", rec.id);
        return Ok(0);
    }
    let code = crate::terminal::with_caller(a.interactive, |caller| {
        berth_engine::monitor::run_foreground(&mut eng, &rec.id, caller)
    })
    .map_err(coded)?;
    Ok(code.clamp(0, 255) as u8)
}

pub fn start(ctx: &Ctx, a: &StartArgs) -> Result<u8> {
    if a.attach || a.interactive {
        if a.containers.len() > 1 {
            bail!("you cannot start and attach multiple containers at once");
        }
        let mut eng = engine(ctx)?;
        let rec = eng.get(&a.containers[0]).map_err(coded)?;
        let code = crate::terminal::with_caller(a.interactive, |caller| {
            berth_engine::monitor::run_foreground(&mut eng, &rec.id, caller)
        })
        .map_err(coded)?;
        return Ok(code.clamp(0, 255) as u8);
    }
    let mut failed = false;
    for c in &a.containers {
        let res =
            engine(ctx).and_then(|eng| berth_service::containers::start(eng, c).map_err(run_coded));
        match res {
            Ok(()) => println!("{c}"),
            Err(e) => {
                eprintln!("Error response from daemon: {}", crate::chain(&e));
                failed = true;
            }
        }
    }
    if failed {
        bail!("failed to start containers: {}", a.containers.join(", "));
    }
    Ok(0)
}

/// Runs `f` for each container, printing its name on success (docker's
/// output) and every error; fails if any did.
fn each(names: &[String], mut f: impl FnMut(&str) -> Result<()>) -> Result<u8> {
    let mut failed = 0;
    for n in names {
        match f(n) {
            Ok(()) => println!("{n}"),
            Err(e) => {
                eprintln!("Error response from daemon: {}", crate::chain(&e));
                failed += 1;
            }
        }
    }
    Ok(if failed > 0 { 1 } else { 0 })
}

pub fn stop(ctx: &Ctx, a: &StopArgs) -> Result<u8> {
    let mut eng = engine(ctx)?;
    let sig = a
        .signal
        .as_deref()
        .map(berth_engine::parse_signal)
        .transpose()?;
    each(&a.containers, |c| {
        eng.stop(c, a.time, sig)?;
        Ok(())
    })
}

pub fn kill(ctx: &Ctx, a: &KillArgs) -> Result<u8> {
    let mut eng = engine(ctx)?;
    let sig = berth_engine::parse_signal(&a.signal)?;
    each(&a.containers, |c| {
        eng.kill(c, sig)?;
        Ok(())
    })
}

pub fn restart(ctx: &Ctx, a: &StopArgs) -> Result<u8> {
    let sig = a
        .signal
        .as_deref()
        .map(berth_engine::parse_signal)
        .transpose()?;
    each(&a.containers, |c| {
        berth_service::containers::restart(engine(ctx)?, c, a.time, sig)?;
        Ok(())
    })
}

pub fn pause(ctx: &Ctx, a: &ContainersArgs, paused: bool) -> Result<u8> {
    let mut eng = engine(ctx)?;
    each(&a.containers, |c| {
        eng.set_paused(c, paused)?;
        Ok(())
    })
}

pub fn rename(ctx: &Ctx, a: &RenameArgs) -> Result<u8> {
    let mut eng = engine(ctx)?;
    eng.rename(&a.container, &a.new_name)
        .map_err(anyhow::Error::from)?;
    Ok(0)
}

/// `-m, --memory`: a size in bytes.
fn memory_flag(m: Option<&str>) -> Result<Option<i64>> {
    m.map(|m| {
        berth_engine::config::parse_size(m).map_err(|e| {
            coded(EngineError::Invalid(format!(
                "invalid argument {m:?} for \"-m, --memory\" flag: {e}"
            )))
        })
    })
    .transpose()
}

/// `berth update`: each container's limits and restart policy; the
/// names are printed as they are updated, as docker does.
pub fn update(ctx: &Ctx, a: &UpdateArgs) -> Result<u8> {
    let memory = memory_flag(a.memory.as_deref())?;
    let cpus = match (a.cpus, a.cpu_quota) {
        (Some(_), Some(_)) => {
            return Err(coded(EngineError::Invalid(
                "conflicting options: --cpus and --cpu-quota".into(),
            )))
        }
        (Some(c), None) => Some(c),
        (None, q) => berth_service::create::cpus_of(0, q.unwrap_or(0), a.cpu_period.unwrap_or(0)),
    };
    let restart = match &a.restart {
        Some(r) => Some(r.parse().map_err(coded)?),
        None => None,
    };
    let u = berth_engine::update::Update {
        memory,
        cpus,
        pids_limit: a.pids_limit.filter(|p| *p != 0),
        restart,
    };
    let mut eng = engine(ctx)?;
    let mut failed = false;
    for c in &a.containers {
        match eng.update(c, &u) {
            Ok(_) => println!("{c}"),
            Err(e) => {
                eprintln!("Error response from daemon: {}", crate::chain(&e.into()));
                failed = true;
            }
        }
    }
    Ok(if failed { 1 } else { 0 })
}

/// `berth export`: the container's file system as a tar archive, to a
/// file (written whole or not at all) or to a stdout that is not a
/// terminal.
pub fn export(ctx: &Ctx, a: &ExportArgs) -> Result<u8> {
    use std::io::IsTerminal;
    let mut eng = engine(ctx)?;
    match &a.output {
        Some(path) => {
            let name = path
                .file_name()
                .with_context(|| format!("{} names no file", path.display()))?;
            let mut tmp_name = std::ffi::OsString::from(".");
            tmp_name.push(name);
            tmp_name.push(format!(".export-{}", std::process::id()));
            let tmp = path.with_file_name(tmp_name);
            let written = (|| -> Result<()> {
                // A new file of our own: never one planted at that name.
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&tmp)
                    .with_context(|| format!("cannot write {}", tmp.display()))?;
                let mut w = std::io::BufWriter::new(f);
                berth_engine::cp::export(&mut eng, &a.container, &mut w)?;
                w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
                std::fs::rename(&tmp, path)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                Ok(())
            })();
            if written.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            written?;
        }
        None => {
            let stdout = std::io::stdout();
            if stdout.is_terminal() {
                anyhow::bail!(
                    "cowardly refusing to save to a terminal. Use the -o flag or redirect"
                );
            }
            let mut w = std::io::BufWriter::new(stdout.lock());
            berth_engine::cp::export(&mut eng, &a.container, &mut w)?;
            w.flush()?;
        }
    }
    Ok(0)
}

pub fn top(ctx: &Ctx, a: &TopArgs) -> Result<u8> {
    let mut eng = engine(ctx)?;
    let (header, rows) = eng
        .top(&a.container, &a.ps_options)
        .map_err(anyhow::Error::from)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{header}")?;
    for r in rows {
        writeln!(out, "{r}")?;
    }
    Ok(0)
}

pub fn diff(ctx: &Ctx, a: &DiffArgs) -> Result<u8> {
    let mut eng = engine(ctx)?;
    let changes = berth_engine::changes::diff(&mut eng, &a.container)?;
    let mut out = std::io::stdout().lock();
    for c in changes {
        writeln!(out, "{} {}", c.kind.letter(), c.path)?;
    }
    Ok(0)
}

pub fn commit(ctx: &Ctx, a: &CommitArgs) -> Result<u8> {
    let mut eng = engine(ctx)?;
    let id = berth_engine::changes::commit(
        &mut eng,
        &a.container,
        a.repository.as_deref(),
        &berth_engine::changes::CommitConfig {
            changes: a.change.clone(),
            message: a.message.clone(),
            author: a.author.clone(),
            pause: a.pause,
        },
    )?;
    println!("{id}");
    Ok(0)
}

/// docker's split of a cp argument: `CONTAINER:PATH` when a colon comes
/// before any slash; `-` is a tar stream; anything else is a local path.
fn cp_side(arg: &str) -> (Option<String>, berth_engine::cp::Side) {
    use berth_engine::cp::Side;
    if arg == "-" {
        return (None, Side::Stream);
    }
    match arg.split_once(':') {
        Some((c, p)) if !c.is_empty() && !c.contains('/') => {
            (Some(c.to_string()), Side::Container(p.to_string()))
        }
        _ => (None, Side::Host(arg.into())),
    }
}

pub fn cp(ctx: &Ctx, a: &CpArgs) -> Result<u8> {
    let (sc, src) = cp_side(&a.src);
    let (dc, dest) = cp_side(&a.dest);
    let container = match (sc, dc) {
        (Some(c), None) | (None, Some(c)) => c,
        (Some(_), Some(_)) => {
            bail!("copying between containers is not supported: copy to the host first")
        }
        (None, None) => bail!(
            "must specify at least one container source: use CONTAINER:PATH for one of the two paths"
        ),
    };
    if matches!(src, berth_engine::cp::Side::Stream)
        && matches!(dest, berth_engine::cp::Side::Stream)
    {
        bail!("one of the two paths must be a container path");
    }
    let mut eng = engine(ctx)?;
    berth_engine::cp::copy(
        &mut eng,
        &container,
        &src,
        &dest,
        &berth_engine::cp::CpOptions {
            archive: a.archive,
            follow: a.follow_link,
        },
        berth_engine::cp::Streams {
            input: &mut std::io::stdin().lock(),
            output: &mut std::io::stdout().lock(),
        },
    )?;
    Ok(0)
}

pub fn attach(ctx: &Ctx, a: &AttachArgs) -> Result<u8> {
    let detach_keys = match &a.detach_keys {
        Some(k) => berth_engine::attach::parse_detach_keys(k)?,
        None => berth_engine::attach::DETACH_KEYS.to_vec(),
    };
    let mut eng = engine(ctx)?;
    let cfg = berth_engine::attach::AttachConfig {
        stdin: !a.no_stdin,
        sig_proxy: a.sig_proxy,
        detach_keys,
    };
    let code = crate::terminal::with_caller(true, |caller| {
        berth_engine::attach::attach(&mut eng, &a.container, &cfg, caller)
    })?;
    match code {
        Some(c) => Ok(c.clamp(0, 255) as u8),
        None => {
            eprintln!("read escape sequence");
            Ok(0)
        }
    }
}

pub fn exec(ctx: &Ctx, a: &ExecArgs) -> Result<u8> {
    let env = env_from(&a.env_file, &a.env)?;
    let cfg = berth_engine::exec::ExecConfig {
        cmd: a.command.clone(),
        env,
        user: a.user.clone(),
        workdir: a.workdir.clone(),
        tty: a.tty,
        interactive: a.interactive,
        privileged: a.privileged,
    };
    let mut eng = engine(ctx)?;
    let res = if a.detach {
        berth_engine::exec::exec_detached(&mut eng, &a.container, &cfg).map(|_| 0)
    } else {
        crate::terminal::with_caller(a.interactive, |caller| {
            berth_engine::exec::exec(&mut eng, &a.container, &cfg, caller)
        })
    };
    // docker exec: 126/127 when the command cannot run, 1 for the rest.
    let code = res.map_err(|e| match e {
        EngineError::Exec { .. } => coded(e),
        e => e.into(),
    })?;
    Ok(code.clamp(0, 255) as u8)
}

pub fn rm(ctx: &Ctx, a: &RmArgs) -> Result<u8> {
    let mut eng = engine(ctx)?;
    each(&a.containers, |c| {
        eng.remove(c, a.force, a.volumes)?;
        Ok(())
    })
}

pub fn wait(ctx: &Ctx, a: &WaitArgs) -> Result<u8> {
    let mut eng = engine(ctx)?;
    let mut failed = false;
    for c in &a.containers {
        let res = berth_service::containers::wait(
            &mut eng,
            c,
            berth_service::containers::WaitCondition::NotRunning,
        );
        match res {
            Ok(r) => println!("{}", r.status_code),
            Err(e) => {
                eprintln!("Error response from daemon: {e}");
                failed = true;
            }
        }
    }
    Ok(if failed { 1 } else { 0 })
}

fn command_text(c: &ContainerSummary, trunc: bool) -> String {
    let cmd = &c.command;
    let cmd = if trunc && cmd.chars().count() > 20 {
        format!("{}…", cmd.chars().take(19).collect::<String>())
    } else {
        cmd.clone()
    };
    format!("\"{cmd}\"")
}

/// docker ps's view of a summary (its --format fields).
fn ps_value(c: &ContainerSummary, trunc: bool) -> Value {
    let labels: Vec<String> = c.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let since = chrono::DateTime::parse_from_rfc3339(&c.created_at)
        .map(|t| (chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_seconds())
        .unwrap_or(0);
    json!({
        "ID": if trunc { c.id[..12].to_string() } else { c.id.clone() },
        "Image": c.image,
        "Command": command_text(c, trunc),
        "CreatedAt": c.created_at,
        "RunningFor": format!("{} ago", output::human_duration(since)),
        "Status": c.status,
        "State": c.state,
        "Ports": "",
        "Names": c.names.iter().map(|n| n.trim_start_matches('/')).collect::<Vec<_>>().join(","),
        "Labels": labels.join(","),
        "Mounts": "",
        "Networks": c.network_settings.networks.keys().cloned().collect::<Vec<_>>().join(","),
    })
}

pub fn ps(ctx: &Ctx, a: &PsArgs) -> Result<u8> {
    let mut eng = engine(ctx)?;
    let opts = berth_service::containers::ListOptions {
        all: a.all || a.last.is_some(),
        limit: if a.latest {
            Some(1)
        } else {
            a.last.filter(|n| *n >= 0).map(|n| n as usize)
        },
        filters: berth_service::Filters::parse(&a.filter)?,
    };
    let recs = berth_service::containers::list(&mut eng, &opts)?;
    let trunc = !a.no_trunc;
    let mut out = std::io::stdout().lock();
    if a.quiet {
        for r in &recs {
            writeln!(out, "{}", if trunc { &r.id[..12] } else { &r.id })?;
        }
        return Ok(0);
    }
    match a.format.as_deref() {
        Some("json") => {
            for r in &recs {
                writeln!(out, "{}", ps_value(r, trunc))?;
            }
        }
        Some(t) if t != "table" => {
            let tpl = output::Template::parse(t.strip_prefix("table ").unwrap_or(t))?;
            for r in &recs {
                writeln!(out, "{}", tpl.render(&ps_value(r, trunc))?)?;
            }
        }
        _ => {
            let mut rows = vec![vec![
                "CONTAINER ID".to_string(),
                "IMAGE".into(),
                "COMMAND".into(),
                "CREATED".into(),
                "STATUS".into(),
                "PORTS".into(),
                "NAMES".into(),
            ]];
            for r in &recs {
                let v = ps_value(r, trunc);
                rows.push(
                    [
                        "ID",
                        "Image",
                        "Command",
                        "RunningFor",
                        "Status",
                        "Ports",
                        "Names",
                    ]
                    .iter()
                    .map(|k| v[*k].as_str().unwrap_or("").to_string())
                    .collect(),
                );
            }
            write!(out, "{}", output::table(&rows))?;
        }
    }
    Ok(0)
}

pub fn logs(ctx: &Ctx, a: &LogsArgs) -> Result<u8> {
    use berth_service::containers::{parse_tail, parse_time, LogsOptions};
    let mut eng = engine(ctx)?;
    let opts = LogsOptions {
        since: a.since.as_deref().map(parse_time).transpose()?,
        until: a.until.as_deref().map(parse_time).transpose()?,
        tail: parse_tail(&a.tail)?,
        follow: a.follow,
    };
    let mut print = |e: &berth_engine::logs::Entry| {
        let line = if a.timestamps {
            format!("{} {}", e.time, e.log)
        } else {
            e.log.clone()
        };
        // A reader gone (`logs -f | head`) ends a follow.
        if e.stream == "stderr" {
            std::io::stderr().write_all(line.as_bytes()).is_ok()
        } else {
            let mut o = std::io::stdout().lock();
            o.write_all(line.as_bytes())
                .and_then(|()| o.flush())
                .is_ok()
        }
    };
    berth_service::containers::logs(&mut eng, &a.container, &opts, &mut print)?;
    Ok(0)
}

fn inspect_value(eng: &Engine, r: &Record) -> Value {
    serde_json::to_value(berth_service::containers::inspect(eng, r)).unwrap_or(Value::Null)
}

pub fn inspect(ctx: &Ctx, a: &ContainerInspectArgs) -> Result<u8> {
    let mut eng = engine(ctx)?;
    let mut values = Vec::new();
    let mut failed = false;
    for c in &a.containers {
        match eng.get(c) {
            Ok(r) => values.push(inspect_value(&eng, &r)),
            Err(e) => {
                eprintln!("Error: {e}");
                failed = true;
            }
        }
    }
    output::print_objects(&values, a.format.as_deref())?;
    Ok(if failed { 1 } else { 0 })
}

/// `berth inspect`: containers first, then images, then volumes (or only
/// the `--type` asked for), as docker looks them up.
pub fn inspect_any(ctx: &Ctx, a: &crate::cli::InspectArgs) -> Result<u8> {
    let kind = a
        .kind
        .as_deref()
        .map(str::parse::<berth_service::objects::ObjectKind>)
        .transpose()?;
    let mut eng = engine(ctx)?;
    let mut values = Vec::new();
    let mut failed = false;
    for name in &a.names {
        match berth_service::objects::inspect(&mut eng, name, kind) {
            Ok(v) => values.push(v),
            Err(e) if e.kind() == berth_service::ErrorKind::NotFound => {
                eprintln!("Error: {e}");
                failed = true;
            }
            Err(e) => return Err(e.into()),
        }
    }
    output::print_objects(&values, a.format.as_deref())?;
    Ok(if failed { 1 } else { 0 })
}

pub fn prune(ctx: &Ctx, _a: &ContainerPruneArgs) -> Result<u8> {
    let mut eng = engine(ctx)?;
    let removed = berth_service::containers::prune(&mut eng)?.containers_deleted;
    if !removed.is_empty() {
        println!("Deleted Containers:");
        for id in &removed {
            println!("{id}");
        }
        println!();
    }
    println!("Total reclaimed space: 0B");
    Ok(0)
}
