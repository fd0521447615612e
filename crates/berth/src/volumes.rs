//! `berth volume`: create, ls, inspect, rm, prune.

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::{bail, Result};
use berth_engine::volumes::Volume;
use berth_engine::{Engine, Paths};
use berth_service::volumes::VolumeView;
use serde_json::{json, Value};

use crate::cli::{
    VolumeCommand, VolumeCreateArgs, VolumeInspectArgs, VolumeLsArgs, VolumePruneArgs, VolumeRmArgs,
};
use crate::images::Ctx;
use crate::output;

fn engine(ctx: &Ctx) -> Result<Engine> {
    Ok(Engine::open(&Paths::new(&ctx.root, &ctx.runroot))?)
}

fn pairs(items: &[String]) -> BTreeMap<String, String> {
    items
        .iter()
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
            (k.to_string(), v.to_string())
        })
        .collect()
}

fn value(eng: &Engine, v: &Volume) -> Value {
    serde_json::to_value(berth_service::volumes::view(eng, v)).unwrap_or(Value::Null)
}

pub fn command(ctx: &Ctx, cmd: &VolumeCommand) -> Result<u8> {
    match cmd {
        VolumeCommand::Create(a) => create(ctx, a),
        VolumeCommand::Ls(a) => ls(ctx, a),
        VolumeCommand::Inspect(a) => inspect(ctx, a),
        VolumeCommand::Rm(a) => rm(ctx, a),
        VolumeCommand::Prune(a) => prune(ctx, a),
    }
}

fn create(ctx: &Ctx, a: &VolumeCreateArgs) -> Result<u8> {
    let name = match (&a.name_flag, &a.name) {
        (Some(x), Some(y)) if x != y => {
            bail!("conflicting options: either specify --name or provide positional arg, not both")
        }
        (Some(x), _) | (None, Some(x)) => Some(x.as_str()),
        (None, None) => None,
    };
    let mut eng = engine(ctx)?;
    let v = berth_service::volumes::create(
        &mut eng,
        &berth_service::volumes::CreateOptions {
            name: name.map(String::from),
            driver: a.driver.clone(),
            labels: pairs(&a.labels),
            options: pairs(&a.opts),
        },
    )?;
    println!("{}", v.name);
    Ok(0)
}

fn ls(ctx: &Ctx, a: &VolumeLsArgs) -> Result<u8> {
    let mut eng = engine(ctx)?;
    let vols = berth_service::volumes::list(&mut eng, &berth_service::Filters::parse(&a.filter)?)?;
    let mut out = std::io::stdout().lock();
    if a.quiet {
        for v in &vols {
            writeln!(out, "{}", v.name)?;
        }
        return Ok(0);
    }
    let row = |v: &VolumeView| {
        json!({
            "Driver": v.driver,
            "Name": v.name,
            "Labels": v.labels.iter().flatten().map(|(k, x)| format!("{k}={x}")).collect::<Vec<_>>().join(","),
            "Mountpoint": v.mountpoint,
            "Scope": v.scope,
        })
    };
    match a.format.as_deref() {
        Some("json") => {
            for v in &vols {
                writeln!(out, "{}", row(v))?;
            }
        }
        Some(t) if t != "table" => {
            let tpl = output::Template::parse(t.strip_prefix("table ").unwrap_or(t))?;
            for v in &vols {
                writeln!(out, "{}", tpl.render(&row(v))?)?;
            }
        }
        _ => {
            let mut rows = vec![vec!["DRIVER".to_string(), "VOLUME NAME".into()]];
            for v in &vols {
                rows.push(vec!["local".into(), v.name.clone()]);
            }
            write!(out, "{}", output::table(&rows))?;
        }
    }
    Ok(0)
}

fn inspect(ctx: &Ctx, a: &VolumeInspectArgs) -> Result<u8> {
    let eng = engine(ctx)?;
    let mut values = Vec::new();
    let mut failed = false;
    for n in &a.volumes {
        match eng.volumes().get(n)? {
            Some(v) => values.push(value(&eng, &v)),
            None => {
                eprintln!("Error: No such volume: {n}");
                failed = true;
            }
        }
    }
    output::print_objects(&values, a.format.as_deref())?;
    Ok(if failed { 1 } else { 0 })
}

fn rm(ctx: &Ctx, a: &VolumeRmArgs) -> Result<u8> {
    let eng = engine(ctx)?;
    let mut failed = false;
    for n in &a.volumes {
        match eng.volumes().remove(n, a.force) {
            Ok(()) => println!("{n}"),
            Err(e) => {
                eprintln!("Error response from daemon: {e}");
                failed = true;
            }
        }
    }
    Ok(if failed { 1 } else { 0 })
}

fn prune(ctx: &Ctx, a: &VolumePruneArgs) -> Result<u8> {
    let mut eng = engine(ctx)?;
    let report = berth_service::volumes::prune(&mut eng, a.all)?;
    if !report.volumes_deleted.is_empty() {
        println!("Deleted Volumes:");
        for n in &report.volumes_deleted {
            println!("{n}");
        }
        println!();
    }
    println!(
        "Total reclaimed space: {}",
        output::human_size(report.space_reclaimed)
    );
    Ok(0)
}
