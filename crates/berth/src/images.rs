//! Image commands: images, rmi, load, save, import, tag, history, inspect,
//! prune, system df, info, version.

use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use berth_image::gc::Removed;
use berth_image::load::Input;
use berth_image::reference::Reference;
use berth_image::store::Store;
use berth_image::{import, inspect as insp, save};
use berth_service::images::ImageSummary;

use crate::cli::{
    FormatArgs, HistoryArgs, ImagesArgs, ImportArgs, InspectArgs, LoadArgs, PruneArgs, RmiArgs,
    SaveArgs, TagArgs,
};
use crate::output::{self, ago, human_size, table, Template};

#[derive(Clone)]
pub struct Ctx {
    pub root: PathBuf,
    pub runroot: PathBuf,
}

impl Ctx {
    pub fn paths(&self) -> berth_engine::Paths {
        berth_engine::Paths::new(&self.root, &self.runroot)
    }

    pub fn store(&self) -> Result<Store> {
        Store::open(&self.root)
            .with_context(|| format!("cannot open the store at {}", self.root.display()))
    }
}

fn print_format(format: &str, items: &[Value]) -> Result<()> {
    let mut out = io::stdout().lock();
    if format == "json" {
        for v in items {
            writeln!(out, "{}", serde_json::to_string(v)?)?;
        }
        return Ok(());
    }
    let t = Template::parse(format.strip_prefix("table ").unwrap_or(format))?;
    for v in items {
        writeln!(out, "{}", t.render(v)?)?;
    }
    Ok(())
}

pub fn version(a: &FormatArgs) -> Result<()> {
    let c = berth_service::system::version();
    let v = json!({ "Client": c });
    match &a.format {
        Some(f) if f == "json" => println!("{}", serde_json::to_string(&v)?),
        Some(f) => println!("{}", Template::parse(f)?.render(&v)?),
        None => {
            println!("Client:");
            println!(" Version:    {}", c.version);
            println!(" OS/Arch:    {}/{}", c.os, c.arch);
        }
    }
    Ok(())
}

pub fn info(ctx: &Ctx, a: &FormatArgs) -> Result<()> {
    let store = ctx.store()?;
    let i =
        berth_service::system::info(&berth_engine::Paths::new(&ctx.root, &ctx.runroot), &store)?;
    let v = serde_json::to_value(&i)?;
    match &a.format {
        Some(f) if f == "json" => println!("{}", serde_json::to_string(&v)?),
        Some(f) => println!("{}", Template::parse(f)?.render(&v)?),
        None => {
            println!("Server Version: {}", i.server_version);
            println!("Images: {}", i.images);
            println!("Storage Driver: {}", i.driver);
            println!("Root Dir: {}", i.docker_root_dir);
            println!("Run Root: {}", i.run_root);
            println!("Cgroup Version: {}", i.cgroup_version);
            println!("Kernel Version: {}", i.kernel_version);
            println!("Architecture: {}", i.architecture);
            println!("CPUs: {}", i.ncpu);
        }
    }
    Ok(())
}

pub fn list(ctx: &Ctx, a: &ImagesArgs) -> Result<()> {
    let store = ctx.store()?;
    let mut filters = berth_service::Filters::parse(&a.filter)?;
    if let Some(repo) = &a.repository {
        filters.add("reference", repo);
    }
    let images = berth_service::images::list(&store, &filters)?;
    let id_of = |img: &ImageSummary| {
        if a.no_trunc {
            img.id.clone()
        } else {
            short_id(&img.id)
        }
    };
    if a.quiet {
        for img in &images {
            println!("{}", id_of(img));
        }
        return Ok(());
    }
    // One row per tag (or one <none> row), as docker's table.
    let mut values: Vec<Value> = Vec::new();
    for img in &images {
        let tags: Vec<Option<&Reference>> = if img.tags.is_empty() {
            vec![None]
        } else {
            img.tags.iter().map(Some).collect()
        };
        for tag in tags {
            // The digest this row's repository knows the image by, as
            // docker shows it; <none> for an image never pulled or pushed
            // there.
            let digest = tag
                .and_then(|t| {
                    let prefix = format!("{}@", t.familiar_name());
                    img.repo_digests
                        .iter()
                        .find_map(|rd| Some(rd.strip_prefix(&prefix)?.to_string()))
                })
                .unwrap_or_else(|| "<none>".to_string());
            let (repo, tag) = match tag {
                Some(t) => (t.familiar_name(), t.tag().unwrap_or("<none>").to_string()),
                None => ("<none>".to_string(), "<none>".to_string()),
            };
            values.push(json!({
                "Containers": "N/A",
                "CreatedAt": img.created_at.clone().unwrap_or_default(),
                "CreatedSince": ago(img.created_at.as_deref()),
                "Digest": digest,
                "ID": id_of(img),
                "Repository": repo,
                "SharedSize": "N/A",
                "Size": human_size(img.size),
                "Tag": tag,
                "UniqueSize": "N/A",
                "VirtualSize": human_size(img.size),
            }));
        }
    }
    match a.format.as_deref() {
        Some("table") | None => {
            let mut header = vec!["REPOSITORY", "TAG"];
            if a.digests {
                header.push("DIGEST");
            }
            header.extend(["IMAGE ID", "CREATED", "SIZE"]);
            let mut t = vec![header.iter().map(|s| s.to_string()).collect::<Vec<_>>()];
            for v in &values {
                let s = |k: &str| v[k].as_str().unwrap_or("").to_string();
                let mut row = vec![s("Repository"), s("Tag")];
                if a.digests {
                    row.push(s("Digest"));
                }
                row.extend([s("ID"), s("CreatedSince"), s("Size")]);
                t.push(row);
            }
            print!("{}", table(&t));
        }
        Some(f) => print_format(f, &values)?,
    }
    Ok(())
}

pub fn remove(ctx: &Ctx, a: &RmiArgs) -> Result<()> {
    let mut store = ctx.store()?;
    let mut failed = false;
    for name in &a.images {
        match berth_service::images::remove(&ctx.paths(), &mut store, name, a.force) {
            Ok(lines) => {
                for l in lines {
                    match l {
                        Removed::Untagged(t) => println!("Untagged: {t}"),
                        Removed::Deleted(d) => println!("Deleted: {d}"),
                    }
                }
            }
            Err(e) => {
                eprintln!("Error: {}", crate::chain(&anyhow::Error::new(e)));
                failed = true;
            }
        }
    }
    if failed {
        std::process::exit(1);
    }
    Ok(())
}

pub fn load(ctx: &Ctx, a: &LoadArgs) -> Result<()> {
    let mut store = ctx.store()?;
    let loaded = match &a.input {
        Some(p) => {
            if !p.exists() {
                bail!("open {}: no such file or directory", p.display());
            }
            berth_service::images::load(&ctx.paths(), &mut store, Input::Path(p))
        }
        None => {
            let stdin = io::stdin();
            if stdin.is_terminal() {
                bail!("requested load from stdin, but stdin is empty: pass -i FILE or pipe an archive");
            }
            berth_service::images::load(
                &ctx.paths(),
                &mut store,
                Input::Reader(Box::new(stdin.lock())),
            )
        }
    }
    .context("cannot load the archive")?;
    if !a.quiet {
        for img in loaded {
            if img.tags.is_empty() {
                println!("Loaded image ID: {}", img.id);
            }
            for t in &img.tags {
                println!("Loaded image: {}", t.familiar());
            }
        }
    }
    Ok(())
}

pub fn save(ctx: &Ctx, a: &SaveArgs) -> Result<()> {
    let store = ctx.store()?;
    let format = match a.format.as_str() {
        "oci-archive" => save::Format::OciArchive,
        "oci-dir" => save::Format::OciDir,
        _ => save::Format::DockerArchive,
    };
    let mut images = Vec::new();
    for name in &a.images {
        let image = store.resolve(name)?;
        let named = Reference::parse(name).ok().filter(|r| {
            r.digest().is_none() && store.tag_target(r).ok().flatten().as_ref() == Some(&image.id)
        });
        images.push((image, named));
    }
    match (&a.output, format) {
        (Some(path), _) => save::save_to_path(&store, &images, format, path)?,
        (None, save::Format::OciDir) => {
            bail!("--format oci-dir needs an output directory: pass -o DIR")
        }
        (None, _) => {
            let stdout = io::stdout();
            if stdout.is_terminal() {
                bail!("cowardly refusing to save to a terminal: use the -o flag or redirect");
            }
            let _ =
                save::save_to_writer(&store, &images, format, io::BufWriter::new(stdout.lock()))?;
        }
    }
    Ok(())
}

pub fn import(ctx: &Ctx, a: &ImportArgs) -> Result<()> {
    let mut store = ctx.store()?;
    let reference = a.reference.as_deref().map(Reference::parse).transpose()?;
    let opts = import::Options {
        changes: a.change.clone(),
        message: a.message.clone(),
        platform: a.platform.clone(),
    };
    let id = if a.file == "-" {
        import::import(&mut store, io::stdin(), reference.as_ref(), &opts)?
    } else {
        let f = std::fs::File::open(&a.file).with_context(|| format!("open {}", a.file))?;
        import::import(&mut store, f, reference.as_ref(), &opts)?
    };
    println!("{id}");
    Ok(())
}

pub fn tag(ctx: &Ctx, a: &TagArgs) -> Result<()> {
    let mut store = ctx.store()?;
    berth_service::images::tag(&ctx.paths(), &mut store, &a.source, &a.target)?;
    Ok(())
}

pub fn history(ctx: &Ctx, a: &HistoryArgs) -> Result<()> {
    let store = ctx.store()?;
    let image = store.resolve(&a.image)?;
    let rows = insp::history(&store, &image)?;
    if a.quiet {
        for r in &rows {
            println!(
                "{}",
                if a.no_trunc || r.id == "<missing>" {
                    r.id.clone()
                } else {
                    short_id(&r.id)
                }
            );
        }
        return Ok(());
    }
    let values: Vec<Value> = rows
        .iter()
        .map(|r| {
            let created_by = if a.no_trunc || r.created_by.chars().count() <= 45 {
                r.created_by.clone()
            } else {
                format!("{}…", r.created_by.chars().take(44).collect::<String>())
            };
            json!({
                "ID": if a.no_trunc || r.id == "<missing>" { r.id.clone() } else { short_id(&r.id) },
                "CreatedAt": r.created.clone().unwrap_or_default(),
                "CreatedSince": if a.human { ago(r.created.as_deref()) } else { r.created.clone().unwrap_or_default() },
                "CreatedBy": created_by,
                "Size": if a.human { human_size(r.size) } else { r.size.to_string() },
                "Comment": r.comment,
            })
        })
        .collect();
    match a.format.as_deref() {
        Some("table") | None => {
            let mut t = vec![["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"]
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()];
            for v in &values {
                let s = |k: &str| v[k].as_str().unwrap_or("").to_string();
                t.push(vec![
                    s("ID"),
                    s("CreatedSince"),
                    s("CreatedBy"),
                    s("Size"),
                    s("Comment"),
                ]);
            }
            print!("{}", table(&t));
        }
        Some(f) => print_format(f, &values)?,
    }
    Ok(())
}

fn short_id(id: &str) -> String {
    id.strip_prefix("sha256:")
        .unwrap_or(id)
        .chars()
        .take(12)
        .collect()
}

pub fn inspect(ctx: &Ctx, a: &InspectArgs) -> Result<()> {
    let store = ctx.store()?;
    let mut values = Vec::new();
    let mut missing = Vec::new();
    for name in &a.names {
        match store.resolve(name) {
            Ok(image) => values.push(insp::inspect(&store, &image)?),
            Err(e) => missing.push(e.to_string()),
        }
    }
    crate::output::print_objects(&values, a.format.as_deref())?;
    if !missing.is_empty() {
        for m in &missing {
            eprintln!("Error: {m}");
        }
        std::process::exit(1);
    }
    Ok(())
}

pub fn prune(ctx: &Ctx, a: &PruneArgs, system: bool) -> Result<()> {
    if !a.filter.is_empty() {
        bail!("prune filters are not supported yet: run without --filter");
    }
    if !a.force && io::stdin().is_terminal() {
        let what = if system {
            "WARNING! This will remove:\n  - all dangling images\n  - unused layers and build leftovers"
        } else if a.all {
            "WARNING! This will remove all images without at least one container associated to them."
        } else {
            "WARNING! This will remove all dangling images."
        };
        eprint!("{what}\nAre you sure you want to continue? [y/N] ");
        let mut answer = String::new();
        io::stdin().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            return Ok(());
        }
    }
    let mut store = ctx.store()?;
    let report = berth_service::images::prune(
        &berth_engine::Paths::new(&ctx.root, &ctx.runroot),
        &mut store,
        a.all,
    )?;
    if !report.images_deleted.is_empty() {
        println!("Deleted Images:");
        for r in &report.images_deleted {
            match r {
                Removed::Untagged(t) => println!("untagged: {t}"),
                Removed::Deleted(d) => println!("deleted: {d}"),
            }
        }
        println!();
    }
    println!(
        "Total reclaimed space: {}",
        human_size(report.space_reclaimed)
    );
    Ok(())
}

pub fn df(ctx: &Ctx, a: &FormatArgs) -> Result<()> {
    let mut eng = berth_engine::Engine::open(&ctx.paths())?;
    let usage = berth_service::system::df(&mut eng)?;
    let values: Vec<Value> = usage
        .rows()
        .iter()
        .map(|r| {
            // docker's: a share of the size, except for the build cache.
            let reclaimable = if r.size == 0 || matches!(r.kind, "Build Cache" | "Blobs") {
                human_size(r.reclaimable)
            } else {
                format!(
                    "{} ({}%)",
                    human_size(r.reclaimable),
                    r.reclaimable * 100 / r.size
                )
            };
            json!({
                "Type": r.kind,
                "TotalCount": r.total,
                "Active": r.active,
                "Size": human_size(r.size),
                "Reclaimable": reclaimable,
            })
        })
        .collect();
    match &a.format {
        Some(f) => print_format(f, &values)?,
        None => {
            let mut t = vec![["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()];
            for v in &values {
                t.push(vec![
                    output::go_string(&v["Type"]),
                    output::go_string(&v["TotalCount"]),
                    output::go_string(&v["Active"]),
                    output::go_string(&v["Size"]),
                    output::go_string(&v["Reclaimable"]),
                ]);
            }
            print!("{}", table(&t));
        }
    }
    Ok(())
}
