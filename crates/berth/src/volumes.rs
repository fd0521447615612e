//! `berth volume`: create, ls, inspect, rm, prune.

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::{bail, Result};
use berth_engine::volumes::Volume;
use berth_engine::{Engine, Paths};
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

/// Docker's inspect object of a volume.
pub(crate) fn value(eng: &Engine, v: &Volume) -> Value {
    let mountpoint = berth_engine::volumes::data_dir(&eng.paths.root, &v.name);
    json!({
        "CreatedAt": v.created,
        "Driver": "local",
        "Labels": if v.labels.is_empty() { Value::Null } else { json!(v.labels) },
        "Mountpoint": mountpoint,
        "Name": v.name,
        "Options": if v.options.is_empty() { Value::Null } else { json!(v.options) },
        "Scope": "local",
    })
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
    if a.driver != "local" {
        bail!(
            "create: volume driver {:?} is not available: berth has the local driver only",
            a.driver
        );
    }
    let name = match (&a.name_flag, &a.name) {
        (Some(x), Some(y)) if x != y => {
            bail!("conflicting options: either specify --name or provide positional arg, not both")
        }
        (Some(x), _) | (None, Some(x)) => Some(x.as_str()),
        (None, None) => None,
    };
    let mut eng = engine(ctx)?;
    let v = eng.volume_create(name, pairs(&a.labels), pairs(&a.opts))?;
    println!("{}", v.name);
    Ok(0)
}

fn matches(eng: &mut Engine, v: &Volume, filter: &str) -> Result<bool> {
    let (k, want) = filter
        .split_once('=')
        .ok_or_else(|| anyhow::anyhow!("bad format of filter (expected name=value): {filter}"))?;
    Ok(match k {
        "name" => v.name.contains(want),
        "dangling" => {
            let dangling = eng.volume_users(&v.name)?.is_empty();
            match want {
                "true" | "1" => dangling,
                "false" | "0" => !dangling,
                _ => bail!("invalid filter 'dangling={want}': use true or false"),
            }
        }
        "label" => match want.split_once('=') {
            Some((lk, lv)) => v.labels.get(lk).is_some_and(|x| x == lv),
            None => v.labels.contains_key(want),
        },
        "driver" => want == "local",
        _ => bail!("invalid filter '{k}': use name, dangling, label or driver"),
    })
}

fn ls(ctx: &Ctx, a: &VolumeLsArgs) -> Result<u8> {
    let mut eng = engine(ctx)?;
    let mut vols = Vec::new();
    for v in eng.volume_list()? {
        let mut keep = true;
        for f in &a.filter {
            keep &= matches(&mut eng, &v, f)?;
        }
        if keep {
            vols.push(v);
        }
    }
    let mut out = std::io::stdout().lock();
    if a.quiet {
        for v in &vols {
            writeln!(out, "{}", v.name)?;
        }
        return Ok(0);
    }
    let row = |v: &Volume| {
        json!({
            "Driver": "local",
            "Name": v.name,
            "Labels": v.labels.iter().map(|(k, x)| format!("{k}={x}")).collect::<Vec<_>>().join(","),
            "Mountpoint": berth_engine::volumes::data_dir(&eng.paths.root, &v.name),
            "Scope": "local",
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
        match eng.volume_get(n)? {
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
    let mut eng = engine(ctx)?;
    let mut failed = false;
    for n in &a.volumes {
        match eng.volume_remove(n, a.force) {
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
    let (removed, freed) = eng.volume_prune(a.all)?;
    if !removed.is_empty() {
        println!("Deleted Volumes:");
        for n in &removed {
            println!("{n}");
        }
        println!();
    }
    println!("Total reclaimed space: {}", output::human_size(freed));
    Ok(0)
}
