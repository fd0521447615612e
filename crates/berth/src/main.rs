//! The `berth` command line: glue between clap and the libraries.

mod cli;
mod images;
mod output;

use std::process::ExitCode;

use anyhow::Result;
use clap::{CommandFactory, Parser};

use cli::{Cli, Command, ImageCommand, SystemCommand};

/// Exit code for errors of berth itself (docker's convention for `run`;
/// usage errors use it too).
pub const EXIT_ENGINE: u8 = 125;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_ENGINE } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    init_logging(&cli.log_level);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {}", chain(&e));
            ExitCode::from(1)
        }
    }
}

/// The whole cause chain on one line, each cause once. Control characters
/// (which causes may quote from a damaged archive) are escaped so the error
/// stays one line.
fn chain(e: &anyhow::Error) -> String {
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

fn run(cli: Cli) -> Result<()> {
    let ctx = images::Ctx {
        root: cli.root.clone(),
        runroot: cli.runroot.clone(),
    };
    match cli.command {
        Command::Version(a) => images::version(&a),
        Command::Info(a) | Command::System(SystemCommand::Info(a)) => images::info(&ctx, &a),
        Command::Images(a) | Command::Image(ImageCommand::Ls(a)) => images::list(&ctx, &a),
        Command::Rmi(a) | Command::Image(ImageCommand::Rm(a)) => images::remove(&ctx, &a),
        Command::Load(a) | Command::Image(ImageCommand::Load(a)) => images::load(&ctx, &a),
        Command::Save(a) | Command::Image(ImageCommand::Save(a)) => images::save(&ctx, &a),
        Command::Import(a) | Command::Image(ImageCommand::Import(a)) => images::import(&ctx, &a),
        Command::Tag(a) | Command::Image(ImageCommand::Tag(a)) => images::tag(&ctx, &a),
        Command::History(a) | Command::Image(ImageCommand::History(a)) => images::history(&ctx, &a),
        Command::Inspect(a) | Command::Image(ImageCommand::Inspect(a)) => images::inspect(&ctx, &a),
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
    }
}
