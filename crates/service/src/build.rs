//! `build`: a Dockerfile and a context into an image, as `docker build`
//! (and the API's `POST /build`) asks for it.

use std::io::Write;
use std::path::PathBuf;

use berth_image::reference::Reference;

use crate::{Error, ErrorKind, Result};

/// Where the built image is also written (`--output type=oci|docker,dest=`).
#[derive(Debug, Clone)]
pub struct Output {
    pub format: berth_image::save::Format,
    /// A file; `None` for the caller's writer (the CLI's stdout).
    pub dest: Option<PathBuf>,
}

/// What to build.
#[derive(Debug, Clone, Default)]
pub struct BuildRequest {
    /// The context, a directory (an archive the caller unpacked).
    pub context: PathBuf,
    /// The Dockerfile's text.
    pub dockerfile: String,
    /// The Dockerfile's name as the user gave it, for errors
    /// (`other.Dockerfile:3: ...`).
    pub dockerfile_name: String,
    pub tags: Vec<String>,
    /// `--build-arg`: `KEY=VALUE`, or `KEY` for the caller's value (the
    /// caller gives it as resolved).
    pub build_args: Vec<(String, String)>,
    pub labels: Vec<(String, String)>,
    pub target: Option<String>,
    pub no_cache: bool,
    /// RUN's network: "host" (the default) or "none".
    pub network: String,
    pub source_date_epoch: Option<u64>,
    pub quiet: bool,
    /// `--pull`: base images are pulled even when the store has them.
    pub always_pull: bool,
    /// `--allow` entitlements.
    pub allow: Vec<String>,
    /// `--secret` specifications (`id=ID,src=PATH` or `id=ID,env=VAR`).
    pub secrets: Vec<String>,
    pub platform: Option<String>,
}

/// What was built.
#[derive(Debug, Clone)]
pub struct BuildResult {
    pub id: berth_image::digest::Digest,
    pub tags: Vec<Reference>,
    /// What the user should hear about (docker's build warnings).
    pub warnings: Vec<String>,
}

/// A `--build-arg` or `--label` flag: `KEY=VALUE`; a bare `KEY` of a
/// build arg takes `env`'s value (the caller's environment).
pub fn key_value(
    s: &str,
    what: &str,
    env: impl Fn(&str) -> Option<String>,
) -> Result<(String, String)> {
    match s.split_once('=') {
        Some((k, v)) => Ok((k.to_string(), v.to_string())),
        None if what == "--build-arg" => Ok((s.to_string(), env(s).unwrap_or_default())),
        None => Err(Error::invalid(format!("{what} {s:?}: use KEY=VALUE"))),
    }
}

/// Builds `req`; its steps report to `steps` (nothing with `quiet`), base
/// image pulls to `pulls`.
pub fn build(
    paths: &berth_engine::Paths,
    req: &BuildRequest,
    steps: &dyn berth_builder::progress::Progress,
    pulls: &dyn berth_registry_client::progress::Progress,
) -> Result<BuildResult> {
    if let Some(p) = req.platform.as_deref().filter(|p| *p != "linux/amd64") {
        return Err(Error::invalid(format!(
            "--platform {p}: berth builds for linux/amd64 only"
        )));
    }
    if !req.context.is_dir() {
        return Err(Error::invalid(format!(
            "unable to prepare context: path {:?} not found or not a directory",
            req.context
        )));
    }
    let mut tags = Vec::new();
    for t in &req.tags {
        tags.push(
            Reference::parse(t)
                .map_err(|e| Error::invalid(format!("invalid tag {t:?} for -t: {e}")))?,
        );
    }
    for e in &req.allow {
        if e != "security.insecure" && e != "network.host" {
            return Err(Error::invalid(format!(
                "--allow {e}: berth knows security.insecure and network.host"
            )));
        }
    }
    let secrets = req
        .secrets
        .iter()
        .map(|s| berth_builder::mounts::parse_secret_flag(s).map_err(Error::invalid))
        .collect::<Result<Vec<_>>>()?;
    // A base image the store lacks is pulled (docker's pull-if-missing).
    let pull = move |name: &str| -> std::result::Result<(), String> {
        let r = Reference::parse(name).map_err(|e| e.to_string())?;
        let mut store = berth_image::store::Store::open(&paths.root).map_err(|e| e.to_string())?;
        crate::images::pull(paths, &mut store, &r, pulls).map_err(|e| e.to_string())
    };
    let opts = berth_builder::BuildOptions {
        context: req.context.clone(),
        dockerfile: req.dockerfile.clone(),
        tags,
        build_args: req.build_args.clone(),
        target: req.target.clone(),
        no_cache: req.no_cache,
        labels: req.labels.clone(),
        network: req.network.clone(),
        source_date_epoch: req.source_date_epoch,
        pull: Some(&pull),
        always_pull: req.always_pull,
        allow_insecure: req.allow.iter().any(|e| e == "security.insecure"),
        secrets,
    };
    let steps = if req.quiet {
        &berth_builder::progress::Quiet
    } else {
        steps
    };
    let built = berth_builder::build(paths, &opts, steps).map_err(|e| match e {
        berth_builder::BuildError::Dockerfile { .. }
        | berth_builder::BuildError::RunFailed { .. } => {
            Error::new(ErrorKind::InvalidArgument, e.describe(&req.dockerfile_name))
        }
        other => other.into(),
    })?;
    Ok(BuildResult {
        id: built.id,
        tags: built.tags,
        warnings: built.warnings,
    })
}

/// Writes the built image as `output` says: to its file, or to `writer`.
pub fn write_output(
    store: &berth_image::store::Store,
    built: &BuildResult,
    output: &Output,
    writer: impl Write,
) -> Result<()> {
    let image = store.resolve(&built.id.to_string())?;
    let images = vec![(image, built.tags.first().cloned())];
    match &output.dest {
        Some(dest) => berth_image::save::save_to_path(store, &images, output.format, dest)?,
        None => {
            let mut w = berth_image::save::save_to_writer(
                store,
                &images,
                output.format,
                std::io::BufWriter::new(writer),
            )?;
            w.flush()?;
        }
    }
    Ok(())
}

/// The Dockerfile of a build whose context came as an archive (`build -`,
/// `POST /build`): the lone Dockerfile that was sent instead of an
/// archive, or `name` (default `Dockerfile`) inside the context, read
/// with its links resolved inside it.
pub fn dockerfile_in_context(
    ctx: &berth_builder::context::TempContext,
    name: Option<&str>,
) -> Result<String> {
    if let Some(text) = &ctx.dockerfile {
        return Ok(text.clone());
    }
    let rel = name.filter(|n| !n.is_empty()).unwrap_or("Dockerfile");
    berth_builder::context::read_in_context(&ctx.path(), rel)?.ok_or_else(|| {
        Error::invalid(format!(
            "Cannot locate specified Dockerfile: {rel}: the context has no such file"
        ))
    })
}
