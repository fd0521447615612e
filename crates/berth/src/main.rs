//! The `berth` command line: glue between clap and the libraries.

mod cli;
mod containers;
mod images;
mod output;
mod progress;
mod terminal;
mod volumes;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::CommandFactory;

use cli::{Cli, Command, ContainerCommand, ImageCommand, SystemCommand};

/// Exit code for errors of berth itself (docker's convention for `run`;
/// usage errors use it too).
pub const EXIT_ENGINE: u8 = 125;

fn main() -> ExitCode {
    // Started as one of the engine's helper processes (a container's
    // monitor, say): that, and nothing of the CLI.
    if let Some(code) = berth_engine::helper_main::dispatch() {
        return ExitCode::from(code.clamp(0, 255) as u8);
    }
    let parsed = Cli::command().try_get_matches().and_then(|m| {
        let mut cli = <Cli as clap::FromArgMatches>::from_arg_matches(&m)?;
        let given = |id| m.value_source(id) != Some(clap::parser::ValueSource::DefaultValue);
        cli.root_given = given("root");
        cli.runroot_given = given("runroot");
        Ok(cli)
    });
    let cli = match parsed {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_ENGINE } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    init_logging(&cli.log_level);
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("Error: {}", chain(&e));
            match e.downcast_ref::<containers::CodeError>() {
                Some(c) => ExitCode::from(c.code),
                None => ExitCode::from(1),
            }
        }
    }
}

/// The whole cause chain on one line, each cause once. Control characters
/// (which causes may quote from a damaged archive) are escaped so the error
/// stays one line.
pub(crate) fn chain(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let s = cause.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
    }
    parts
        .join(": ")
        .chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn init_logging(level: &str) {
    let level = if level == "fatal" { "error" } else { level };
    let filter = tracing_subscriber::EnvFilter::try_from_env("BERTH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn run(cli: Cli) -> Result<u8> {
    let ctx = images::Ctx {
        root: cli.root.clone(),
        runroot: cli.runroot.clone(),
    };
    match cli.command {
        Command::Run(a) | Command::Container(ContainerCommand::Run(a)) => {
            return containers::run(&ctx, &a)
        }
        Command::Create(a) | Command::Container(ContainerCommand::Create(a)) => {
            return containers::create(&ctx, &a)
        }
        Command::Start(a) | Command::Container(ContainerCommand::Start(a)) => {
            return containers::start(&ctx, &a)
        }
        Command::Stop(a) | Command::Container(ContainerCommand::Stop(a)) => {
            return containers::stop(&ctx, &a)
        }
        Command::Kill(a) | Command::Container(ContainerCommand::Kill(a)) => {
            return containers::kill(&ctx, &a)
        }
        Command::Rm(a) | Command::Container(ContainerCommand::Rm(a)) => {
            return containers::rm(&ctx, &a)
        }
        Command::Ps(a) | Command::Container(ContainerCommand::Ls(a)) => {
            return containers::ps(&ctx, &a)
        }
        Command::Logs(a) | Command::Container(ContainerCommand::Logs(a)) => {
            return containers::logs(&ctx, &a)
        }
        Command::Wait(a) | Command::Container(ContainerCommand::Wait(a)) => {
            return containers::wait(&ctx, &a)
        }
        Command::Exec(a) | Command::Container(ContainerCommand::Exec(a)) => {
            return containers::exec(&ctx, &a)
        }
        Command::Restart(a) | Command::Container(ContainerCommand::Restart(a)) => {
            return containers::restart(&ctx, &a)
        }
        Command::Pause(a) | Command::Container(ContainerCommand::Pause(a)) => {
            return containers::pause(&ctx, &a, true)
        }
        Command::Unpause(a) | Command::Container(ContainerCommand::Unpause(a)) => {
            return containers::pause(&ctx, &a, false)
        }
        Command::Rename(a) | Command::Container(ContainerCommand::Rename(a)) => {
            return containers::rename(&ctx, &a)
        }
        Command::Update(a) | Command::Container(ContainerCommand::Update(a)) => {
            return containers::update(&ctx, &a)
        }
        Command::Export(a) | Command::Container(ContainerCommand::Export(a)) => {
            return containers::export(&ctx, &a)
        }
        Command::Top(a) | Command::Container(ContainerCommand::Top(a)) => {
            return containers::top(&ctx, &a)
        }
        Command::Diff(a) | Command::Container(ContainerCommand::Diff(a)) => {
            return containers::diff(&ctx, &a)
        }
        Command::Commit(a) | Command::Container(ContainerCommand::Commit(a)) => {
            return containers::commit(&ctx, &a)
        }
        Command::Attach(a) | Command::Container(ContainerCommand::Attach(a)) => {
            return containers::attach(&ctx, &a)
        }
        Command::Cp(a) | Command::Container(ContainerCommand::Cp(a)) => {
            return containers::cp(&ctx, &a)
        }
        Command::Volume(v) => return volumes::command(&ctx, &v),
        Command::Registry(cli::RegistryCommand::Serve(a)) => return registry_serve(&a),
        Command::Daemon(a) => return daemon(&ctx, (cli.root_given, cli.runroot_given), &a),
        Command::Registry(cli::RegistryCommand::Gc(a)) => return registry_gc(&a),
        Command::Registry(cli::RegistryCommand::Htpasswd { user }) => {
            let mut password = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut password)?;
            let line = berth_registry::auth::htpasswd_line(&user, password.trim_end_matches('\n'))?;
            println!("{line}");
            return Ok(0);
        }
        Command::Login(a) => return login(&a),
        Command::Logout { server } => {
            if berth_registry_client::logout(&server)? {
                println!("Removing login credentials for {server}");
            } else {
                println!("Not logged in to {server}");
            }
            return Ok(0);
        }
        Command::Build(a) => return build(&ctx, &a),
        Command::Events(a) | Command::System(SystemCommand::Events(a)) => return events(&ctx, &a),
        Command::System(SystemCommand::DialStdio(a)) => return dial_stdio(&a),
        Command::Builder(cli::BuilderCommand::Prune { .. }) => {
            let mut store = ctx.store()?;
            let report = berth_service::images::prune_build_cache(
                &berth_engine::Paths::new(&ctx.root, &ctx.runroot),
                &mut store,
            )?;
            println!(
                "Deleted build cache objects: {}\nTotal reclaimed space: {}",
                report.caches_deleted,
                output::human_size(report.space_reclaimed)
            );
            return Ok(0);
        }
        Command::Push(a) => return push(&ctx, &a),
        Command::Pull(a) => return pull(&ctx, &a),
        Command::Container(ContainerCommand::Inspect(a)) => return containers::inspect(&ctx, &a),
        Command::Inspect(a) => return containers::inspect_any(&ctx, &a),
        Command::Container(ContainerCommand::Prune(a)) => return containers::prune(&ctx, &a),
        _ => {}
    }
    images_command(cli.command, &ctx).map(|()| 0)
}

/// Bars on a terminal, plain lines otherwise, nothing with --quiet.
fn progress(quiet: bool) -> Box<dyn berth_registry_client::progress::Progress> {
    use berth_registry_client::progress::{Lines, Quiet};
    use progress::Bars;
    use std::io::IsTerminal as _;
    if quiet {
        Box::new(Quiet)
    } else if std::io::stdout().is_terminal() {
        Box::new(Bars::default())
    } else {
        Box::new(Lines(std::sync::Mutex::new(std::io::stdout())))
    }
}

/// `berth build`: the Dockerfile and context into an image; docker's exit
/// codes (1 for a failed build).
fn build(ctx: &images::Ctx, a: &cli::BuildArgs) -> Result<u8> {
    use anyhow::Context as _;
    use std::io::IsTerminal as _;
    // `-`: a tar archive (or a lone Dockerfile) on stdin.
    let stdin_ctx = if a.context.as_os_str() == "-" {
        Some(berth_builder::context::from_reader(
            &ctx.root,
            std::io::stdin().lock(),
        )?)
    } else {
        None
    };
    let context = match &stdin_ctx {
        Some(t) => t.path(),
        None => a.context.clone(),
    };
    if !context.is_dir() {
        anyhow::bail!(
            "unable to prepare context: path {:?} not found or not a directory",
            a.context
        );
    }
    let dockerfile = match (&stdin_ctx, &a.file) {
        // From a stdin archive, inside it (its links cannot reach the
        // host).
        (Some(t), f) => {
            let rel = f.as_ref().map(|f| f.to_string_lossy().into_owned());
            berth_service::build::dockerfile_in_context(t, rel.as_deref())?
        }
        (None, Some(f)) => std::fs::read_to_string(f)
            .with_context(|| format!("cannot read the Dockerfile {}", f.display()))?,
        (None, None) => {
            let f = context.join("Dockerfile");
            std::fs::read_to_string(&f)
                .with_context(|| format!("cannot read the Dockerfile {}", f.display()))?
        }
    };
    let output = match &a.output {
        Some(o) => Some(parse_output(o)?),
        None => None,
    };
    let env = |k: &str| std::env::var(k).ok();
    let source_date_epoch = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.is_empty() => Some(
            v.parse::<u64>()
                .map_err(|_| anyhow::anyhow!("SOURCE_DATE_EPOCH={v}: not a number of seconds"))?,
        ),
        _ => None,
    };
    let to_stdout = output.as_ref().is_some_and(|o| o.dest.is_none());
    let req = berth_service::build::BuildRequest {
        context: context.clone(),
        dockerfile,
        // Errors name the Dockerfile as given (docker: "other.Dockerfile:3: ...").
        dockerfile_name: a
            .file
            .as_ref()
            .and_then(|f| f.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "Dockerfile".to_string()),
        tags: a.tags.clone(),
        build_args: a
            .build_args
            .iter()
            .map(|s| berth_service::build::key_value(s, "--build-arg", env))
            .collect::<Result<Vec<_>, _>>()?,
        labels: a
            .labels
            .iter()
            .map(|s| berth_service::build::key_value(s, "--label", env))
            .collect::<Result<Vec<_>, _>>()?,
        target: a.target.clone(),
        no_cache: a.no_cache,
        network: a.network.clone(),
        source_date_epoch,
        quiet: a.quiet,
        always_pull: a.pull,
        allow: a.allow.clone(),
        secrets: a.secrets.clone(),
        platform: a.platform.clone(),
    };
    // With the image going to stdout, everything else goes to stderr.
    let (mut out, colour): (Box<dyn std::io::Write + Send>, bool) = if to_stdout {
        (Box::new(std::io::stderr()), std::io::stderr().is_terminal())
    } else {
        (Box::new(std::io::stdout()), std::io::stdout().is_terminal())
    };
    use std::io::Write as _;
    let pulls = berth_registry_client::progress::Lines(std::sync::Mutex::new(std::io::stderr()));
    let steps = progress::BuildSteps::new(&mut out, colour);
    let built = berth_service::build::build(
        &berth_engine::Paths::new(&ctx.root, &ctx.runroot),
        &req,
        &steps,
        &pulls,
    )?;
    for w in &built.warnings {
        eprintln!("{w}");
    }
    if let Some(o) = &output {
        let store = ctx.store()?;
        berth_service::build::write_output(&store, &built, o, std::io::stdout().lock())?;
    }
    if let Some(f) = &a.iidfile {
        std::fs::write(f, built.id.to_string())
            .with_context(|| format!("write the image ID to {}", f.display()))?;
    }
    if a.quiet {
        writeln!(out, "{}", built.id)?;
    } else {
        writeln!(out, "Successfully built {}", &built.id.hex()[..12])?;
        for t in &built.tags {
            writeln!(out, "Successfully tagged {}", t.familiar())?;
        }
    }
    Ok(0)
}

/// `berth events`: the event log, then new events (until `--until`, or
/// until stdout closes).
fn events(ctx: &images::Ctx, a: &cli::EventsArgs) -> Result<u8> {
    use berth_service::containers::parse_time;
    use std::io::Write as _;
    let opts = berth_service::events::EventsOptions {
        since: a.since.as_deref().map(parse_time).transpose()?,
        until: a.until.as_deref().map(parse_time).transpose()?,
        filters: berth_service::Filters::parse(&a.filter)?,
    };
    let template = match a.format.as_deref() {
        Some("json") | None => None,
        Some(t) => Some(output::Template::parse(t)?),
    };
    let json = a.format.as_deref() == Some("json");
    let mut failed = None;
    let mut sink = |e: &berth_engine::events::Event| {
        let text = match (&template, json) {
            (Some(t), _) => t.render(&berth_service::events::template_context(e)),
            (None, true) => serde_json::to_string(e).map_err(anyhow::Error::from),
            (None, false) => Ok(berth_service::events::line(e)),
        };
        let mut out = std::io::stdout().lock();
        match text.and_then(|t| Ok(writeln!(out, "{t}").and_then(|()| out.flush())?)) {
            Ok(()) => true,
            Err(e) => {
                failed = Some(e);
                false
            }
        }
    };
    berth_service::events::events(
        &berth_engine::Paths::new(&ctx.root, &ctx.runroot),
        &opts,
        &mut sink,
    )?;
    match failed {
        // A reader that went away (`| head`) ends the stream quietly.
        Some(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            Ok(0)
        }
        Some(e) => Err(e),
        None => Ok(0),
    }
}

/// `--output type=oci|docker,dest=FILE` (docker's `-o`).
fn parse_output(o: &str) -> Result<berth_service::build::Output> {
    let mut typ = None;
    let mut dest = None;
    for field in o.split(',') {
        match field.split_once('=') {
            Some(("type", v)) => typ = Some(v.to_string()),
            Some(("dest", v)) => dest = Some(PathBuf::from(v)),
            _ if !field.contains('=') && dest.is_none() && typ.is_none() => {
                // `-o DIR` alone means type=local in docker; berth writes images only.
                anyhow::bail!("--output {o}: use type=oci,dest=FILE or type=docker,dest=FILE")
            }
            _ => anyhow::bail!("--output {o}: unknown field {field:?} (use type= and dest=)"),
        }
    }
    let format = match typ.as_deref() {
        Some("oci") => berth_image::save::Format::OciArchive,
        Some("docker") => berth_image::save::Format::DockerArchive,
        Some(t) => anyhow::bail!("--output type={t}: berth writes type=oci or type=docker"),
        None => anyhow::bail!("--output {o}: type= is required (oci or docker)"),
    };
    let dest = dest.ok_or_else(|| {
        anyhow::anyhow!("--output {o}: dest= is required (a file, or - for stdout)")
    })?;
    Ok(berth_service::build::Output {
        format,
        dest: (dest.as_os_str() != "-").then_some(dest),
    })
}

fn push(ctx: &images::Ctx, a: &cli::PushPullArgs) -> Result<u8> {
    let target = berth_image::reference::Reference::parse(&a.name)?;
    let mut store = ctx.store()?;
    berth_service::images::push(
        &berth_engine::Paths::new(&ctx.root, &ctx.runroot),
        &mut store,
        &a.name,
        &target,
        &*progress(a.quiet),
    )?;
    if a.quiet {
        println!("{}", target.familiar());
    }
    Ok(0)
}

fn pull(ctx: &images::Ctx, a: &cli::PushPullArgs) -> Result<u8> {
    let r = berth_image::reference::Reference::parse(&a.name)?;
    let mut store = ctx.store()?;
    berth_service::images::pull(
        &berth_engine::Paths::new(&ctx.root, &ctx.runroot),
        &mut store,
        &r,
        &*progress(a.quiet),
    )?;
    // docker prints the name last, quiet or not.
    println!("{}", r.familiar());
    Ok(0)
}

fn login(a: &cli::LoginArgs) -> Result<u8> {
    let user = a
        .username
        .clone()
        .ok_or_else(|| anyhow::anyhow!("give the user name with -u/--username"))?;
    let password = match (&a.password, a.password_stdin) {
        (Some(_), true) => anyhow::bail!("--password and --password-stdin are mutually exclusive"),
        (Some(p), false) => p.clone(),
        (None, true) => {
            let mut p = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut p)?;
            p.trim_end_matches('\n').to_string()
        }
        (None, false) => anyhow::bail!("give the password with --password-stdin (or -p)"),
    };
    berth_registry_client::login(&a.server, &user, &password)?;
    println!("Login Succeeded");
    Ok(0)
}

/// `berth system dial-stdio`: standard input to the daemon's socket and
/// the socket to standard output, until both ends are done (input's end
/// passed on as a half-close), as `docker system dial-stdio` does for
/// `docker -H ssh://...`.
fn dial_stdio(a: &cli::DialStdioArgs) -> Result<u8> {
    let host = a
        .host
        .clone()
        .or_else(|| std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| "unix:///run/berth/docker.sock".into());
    let path = host.strip_prefix("unix://").ok_or_else(|| {
        anyhow::anyhow!("dial-stdio reaches unix sockets: {host:?} is not unix:///path")
    })?;
    let sock = std::os::unix::net::UnixStream::connect(path)
        .map_err(|e| anyhow::anyhow!("cannot reach the daemon at {path}: {e}"))?;
    let mut to_daemon = sock.try_clone()?;
    let input = std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut to_daemon);
        let _ = to_daemon.shutdown(std::net::Shutdown::Write);
    });
    let mut from_daemon = sock;
    let mut out = std::io::stdout().lock();
    std::io::copy(&mut from_daemon, &mut out)?;
    std::io::Write::flush(&mut out)?;
    drop(input);
    Ok(0)
}

/// `berth daemon`: the flags over the configuration file, then a tokio
/// runtime for the daemon's life.
fn daemon(ctx: &images::Ctx, given: (bool, bool), a: &cli::DaemonArgs) -> Result<u8> {
    use berth_daemon::config::{conflicts, DaemonConfig};
    let explicit = a.config_file != std::path::Path::new(berth_daemon::config::DEFAULT_PATH);
    let (file, warnings) =
        DaemonConfig::load(&a.config_file, explicit).map_err(anyhow::Error::msg)?;
    for w in warnings {
        eprintln!("WARNING: {w}");
    }
    let mut twice: Vec<(&str, String, String)> = Vec::new();
    let show = |p: &std::path::Path| p.display().to_string();
    if !a.hosts.is_empty() && !file.hosts.is_empty() {
        twice.push((
            "hosts",
            format!("{:?}", a.hosts),
            format!("{:?}", file.hosts),
        ));
    }
    if let (true, Some(r)) = (given.0, &file.data_root) {
        twice.push(("data-root", show(&ctx.root), show(r)));
    }
    if let (true, Some(r)) = (given.1, &file.exec_root) {
        twice.push(("exec-root", show(&ctx.runroot), show(r)));
    }
    if let (Some(p), Some(f)) = (&a.pidfile, &file.pidfile) {
        twice.push(("pidfile", show(p), show(f)));
    }
    for (key, flag, from_file) in [
        ("tlscacert", &a.tlscacert, &file.tlscacert),
        ("tlscert", &a.tlscert, &file.tlscert),
        ("tlskey", &a.tlskey, &file.tlskey),
    ] {
        if let (Some(p), Some(f)) = (flag, from_file) {
            twice.push((key, show(p), show(f)));
        }
    }
    conflicts(&twice).map_err(anyhow::Error::msg)?;
    let ctx = images::Ctx {
        root: file.data_root.clone().unwrap_or_else(|| ctx.root.clone()),
        runroot: file
            .exec_root
            .clone()
            .unwrap_or_else(|| ctx.runroot.clone()),
    };
    let hosts = match (a.hosts.is_empty(), file.hosts.is_empty()) {
        (false, _) => a.hosts.clone(),
        (true, false) => file.hosts.clone(),
        (true, true) => vec!["unix:///run/berth/docker.sock".to_string()],
    };
    let tlsverify = a.tlsverify || file.tlsverify == Some(true);
    let tls_on = a.tls || file.tls == Some(true) || tlsverify;
    let tlscert = a.tlscert.clone().or(file.tlscert.clone());
    let tlskey = a.tlskey.clone().or(file.tlskey.clone());
    let tls = if tls_on {
        let (Some(cert), Some(key)) = (tlscert, tlskey) else {
            anyhow::bail!("--tls and --tlsverify need the server's --tlscert and --tlskey");
        };
        Some(berth_daemon::TlsSettings {
            cert,
            key,
            ca: a.tlscacert.clone().or(file.tlscacert.clone()),
            verify: tlsverify,
        })
    } else {
        None
    };
    if tls.is_none() && hosts.iter().any(|h| h.starts_with("tcp://")) {
        eprintln!(
            "WARNING: the API is served on TCP without TLS: anyone who can reach the port has \
             root on this host. Use --tlsverify with --tlscacert, --tlscert and --tlskey."
        );
    }
    // The registry settings of every pull and push the daemon makes: the
    // client config's, with the daemon's file's added.
    let mut registries = berth_registry_client::Settings::load_file()?;
    registries
        .insecure_registries
        .extend(file.insecure_registries.iter().cloned());
    registries
        .registry_mirrors
        .extend(file.registry_mirrors.iter().cloned());
    berth_registry_client::Settings::install(registries)?;
    let defaults = berth_service::create::Defaults {
        log_driver: file.log_driver.clone().unwrap_or_default(),
        log_opts: file.log_opts.clone(),
        ulimits: file.ulimits(),
    };
    defaults
        .check()
        .map_err(|e| anyhow::anyhow!("{}: {e}", a.config_file.display()))?;
    let settings = berth_daemon::Settings {
        paths: ctx.paths(),
        hosts,
        tls,
        pid_file: Some(
            a.pidfile
                .clone()
                .or(file.pidfile.clone())
                .unwrap_or_else(|| ctx.runroot.join("berth-daemon.pid")),
        ),
        on_listening: Some(Box::new(|addrs: &[String]| {
            use std::io::Write as _;
            let mut out = std::io::stdout().lock();
            for a in addrs {
                let _ = writeln!(out, "berth daemon listening on {a}");
            }
            let _ = out.flush();
        })),
        defaults,
        live_restore: file.live_restore.unwrap_or(true),
    };
    // Blocking-pool threads (each request's engine work) end soon after
    // a burst, and their stacks with them.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_keep_alive(std::time::Duration::from_secs(3))
        .build()?;
    let served = rt.block_on(berth_daemon::serve(settings));
    // Work still running for clients that went (a follow) is not waited
    // for at exit.
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    served?;
    Ok(0)
}

fn registry_serve(a: &cli::RegistryServeArgs) -> Result<u8> {
    use berth_registry::config::{duration, Config};
    use std::time::Duration;
    let cfg = match &a.config {
        Some(p) => Config::load(p).map_err(anyhow::Error::msg)?,
        None => Config::default(),
    };
    let addr = a
        .addr
        .clone()
        .or(cfg.addr)
        .unwrap_or_else(|| "127.0.0.1:5000".into());
    let dir = a
        .storage
        .clone()
        .or(cfg.storage)
        .unwrap_or_else(|| "/var/lib/berth/registry".into());
    let storage = berth_registry::storage::FsStorage::open(&dir)
        .map_err(|e| anyhow::anyhow!("cannot use {} as registry storage: {e}", dir.display()))?;
    let ttl = a.upload_ttl.as_deref().or(cfg.uploads.ttl.as_deref());
    let upload_ttl =
        duration("upload ttl", ttl, Duration::from_secs(24 * 3600)).map_err(anyhow::Error::msg)?;
    let htpasswd = a.htpasswd.clone().or(cfg.auth.htpasswd);
    let mut public = cfg.auth.public;
    public.extend(a.public.iter().cloned());
    let mut auth = berth_registry::auth::Auth::new(htpasswd.as_deref(), public, cfg.auth.access)?;
    let token = cfg.auth.token.unwrap_or_default();
    if let Some(issuer) = a
        .token_issuer
        .clone()
        .or(Some(token.issuer).filter(|i| !i.is_empty()))
    {
        let lifetime = duration(
            "token lifetime",
            token.lifetime.as_deref(),
            Duration::from_secs(300),
        )
        .map_err(anyhow::Error::msg)?;
        let key = token.key.unwrap_or_else(|| dir.join("token.key"));
        let service = token.service.unwrap_or_else(|| issuer.clone());
        auth.tokens = Some(
            berth_registry::token::Tokens::open(&key, issuer, service, lifetime)
                .map_err(|e| anyhow::anyhow!("token signing key {}: {e}", key.display()))?,
        );
        auth.realm = token.realm;
    }
    let gc = match cfg.gc.interval.as_deref() {
        None => None,
        Some(i) => Some((
            duration("gc interval", Some(i), Duration::ZERO).map_err(anyhow::Error::msg)?,
            duration(
                "gc grace",
                cfg.gc.grace.as_deref(),
                Duration::from_secs(3600),
            )
            .map_err(anyhow::Error::msg)?,
        )),
    };
    let tls = match (a.tls_cert.clone(), a.tls_key.clone(), cfg.tls) {
        (Some(c), Some(k), _) => Some((c, k)),
        (_, _, Some(t)) => Some((t.cert, t.key)),
        _ => None,
    };
    let tls = match tls {
        Some((c, k)) => {
            Some(berth_registry::server::tls_config(&c, &k).map_err(anyhow::Error::msg)?)
        }
        None => None,
    };
    let notify = if cfg.notifications.is_empty() {
        None
    } else {
        Some(
            berth_registry::notify::Notifier::start(cfg.notifications)
                .map_err(anyhow::Error::msg)?,
        )
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(berth_registry::server::serve(
        berth_registry::server::Settings {
            addr: addr.clone(),
            storage: std::sync::Arc::new(storage),
            auth,
            upload_ttl,
            tls,
            gc,
            notify,
            body_idle: duration(
                "body timeout",
                a.body_timeout.as_deref(),
                Duration::from_secs(30),
            )
            .map_err(anyhow::Error::msg)?,
            max_client_conns: a.max_client_conns,
            // One write, errors ignored: whoever started the registry may
            // read the first line and close the pipe (a println! would
            // then panic).
            on_listening: Some(Box::new(|bound, https| {
                use std::io::Write as _;
                let mut msg = format!("berth registry listening on {bound}\n");
                if https {
                    msg.push_str("serving HTTPS\n");
                }
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(msg.as_bytes()).and_then(|()| out.flush());
            })),
        },
    ))
    .map_err(|e| anyhow::anyhow!("registry on {addr}: {e}"))?;
    Ok(0)
}

/// `berth registry gc`: one collection, beside a running registry or not.
fn registry_gc(a: &cli::RegistryGcArgs) -> Result<u8> {
    use berth_registry::config::{duration, Config};
    let cfg = match &a.config {
        Some(p) => Config::load(p).map_err(anyhow::Error::msg)?,
        None => Config::default(),
    };
    let dir = a
        .storage
        .clone()
        .or(cfg.storage)
        .unwrap_or_else(|| "/var/lib/berth/registry".into());
    if !dir.join("blobs").is_dir() {
        anyhow::bail!(
            "{} is not a registry's storage (no blobs directory): give --storage",
            dir.display()
        );
    }
    let grace = a.grace.as_deref().or(cfg.gc.grace.as_deref());
    let grace = duration("--grace", grace, std::time::Duration::from_secs(3600))
        .map_err(anyhow::Error::msg)?;
    let storage = berth_registry::storage::FsStorage::open(&dir)?;
    let r = berth_registry::storage::Storage::gc(&storage, grace, a.dry_run)?;
    println!(
        "{} {} blobs ({}), kept {} (referenced by {} manifests, or younger than {})",
        if a.dry_run { "Would remove" } else { "Removed" },
        r.removed,
        output::human_size(r.bytes),
        r.kept,
        r.manifests,
        a.grace
            .as_deref()
            .or(cfg.gc.grace.as_deref())
            .unwrap_or("1h"),
    );
    Ok(0)
}

fn images_command(command: Command, ctx: &images::Ctx) -> Result<()> {
    let ctx = ctx.clone();
    match command {
        Command::Version(a) => images::version(&a),
        Command::Info(a) | Command::System(SystemCommand::Info(a)) => images::info(&ctx, &a),
        Command::Images(a) | Command::Image(ImageCommand::Ls(a)) => images::list(&ctx, &a),
        Command::Rmi(a) | Command::Image(ImageCommand::Rm(a)) => images::remove(&ctx, &a),
        Command::Load(a) | Command::Image(ImageCommand::Load(a)) => images::load(&ctx, &a),
        Command::Save(a) | Command::Image(ImageCommand::Save(a)) => images::save(&ctx, &a),
        Command::Import(a) | Command::Image(ImageCommand::Import(a)) => images::import(&ctx, &a),
        Command::Tag(a) | Command::Image(ImageCommand::Tag(a)) => images::tag(&ctx, &a),
        Command::History(a) | Command::Image(ImageCommand::History(a)) => images::history(&ctx, &a),
        Command::Image(ImageCommand::Inspect(a)) => images::inspect(&ctx, &a),
        Command::Image(ImageCommand::Prune(a)) => images::prune(&ctx, &a, false),
        Command::System(SystemCommand::Prune(a)) => images::prune(&ctx, &a, true),
        Command::System(SystemCommand::Df(a)) => images::df(&ctx, &a),
        Command::Completion { shell } => {
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "berth", &mut std::io::stdout());
            Ok(())
        }
        Command::Man { dir } => {
            std::fs::create_dir_all(&dir)?;
            clap_mangen::generate_to(Cli::command(), &dir)?;
            Ok(())
        }
        _ => unreachable!("container commands are handled in run"),
    }
}
