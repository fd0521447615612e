//! Runs a Dockerfile: the stages the target needs, in order, each step
//! either found in the cache or done (RUN in a container through the
//! runtime library, COPY through the safe extractor into an overlay), and
//! the target's state recorded as an image.

mod copy;
mod dirs;
mod fetch;
mod instruction;
mod leftovers;
mod run;
mod schedule;

pub use leftovers::sweep_leftovers;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use berth_dockerfile::instructions::{self, Dockerfile};
use berth_dockerfile::shell::Lexer;
use berth_engine::Paths;
use berth_image::digest::Digest;
use berth_image::reference::Reference;
use berth_image::store::Store;
use serde_json::{json, Map, Value};
use sha2::{Digest as _, Sha256};

use crate::cache::Cache;
use crate::progress::{Event, Progress};
use crate::sources::{HashCache, SourceRoot};
use crate::state::State;
use crate::BuildError;
use leftovers::{sweep, LeaseGuard};

/// A built stage: its state and cache key.
type StageResult = Result<(State, String), BuildError>;

/// A function that pulls an image missing from the store.
pub type Puller<'a> = &'a (dyn Fn(&str) -> Result<(), String> + Sync);

pub struct BuildOptions<'a> {
    pub context: PathBuf,
    /// The Dockerfile's text and the name to show for it.
    pub dockerfile: String,
    pub tags: Vec<Reference>,
    pub build_args: Vec<(String, String)>,
    pub target: Option<String>,
    pub no_cache: bool,
    pub labels: Vec<(String, String)>,
    /// RUN's network: "host" (the default) or "none".
    pub network: String,
    /// `SOURCE_DATE_EPOCH`: history times and layer file times clamped to it.
    pub source_date_epoch: Option<u64>,
    pub pull: Option<Puller<'a>>,
    /// `--secret`: ids and contents, for `RUN --mount=type=secret`.
    pub secrets: Vec<(String, Vec<u8>)>,
    /// `--pull`: base images are pulled even when the store has them.
    pub always_pull: bool,
    /// `--allow security.insecure`: `RUN --security=insecure` may run
    /// privileged.
    pub allow_insecure: bool,
}

#[derive(Debug, Clone)]
pub struct Built {
    pub id: Digest,
    pub tags: Vec<Reference>,
    /// What the user should hear about (docker's build warnings).
    pub warnings: Vec<String>,
}

/// Build args that need no ARG to reach RUN's environment.
const PROXY_ARGS: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

fn platform_args() -> Vec<(String, String)> {
    [
        ("TARGETPLATFORM", "linux/amd64"),
        ("TARGETOS", "linux"),
        ("TARGETARCH", "amd64"),
        ("TARGETVARIANT", ""),
        ("BUILDPLATFORM", "linux/amd64"),
        ("BUILDOS", "linux"),
        ("BUILDARCH", "amd64"),
        ("BUILDVARIANT", ""),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn sha(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0u8]);
    }
    hex::encode(h.finalize())
}

struct Builder<'a, 'o> {
    paths: Paths,
    store: Store,
    cache: Cache,
    hashes: HashCache,
    opts: &'a BuildOptions<'o>,
    df: Dockerfile,
    lexer: Lexer,
    global_args: Vec<(String, Option<String>)>,
    results: HashMap<usize, (State, String)>,
    /// Progress, shared by the stages that run at once.
    progress: &'a dyn Progress,
    step: &'a AtomicUsize,
    steps: &'a AtomicUsize,
    context: Option<SourceRoot>,
    /// Images `--pull` has pulled in this build.
    pulled: Vec<String>,
}

/// Builds the image `opts` describe, reporting to `progress`.
pub fn build(
    paths: &Paths,
    opts: &BuildOptions<'_>,
    progress: &dyn Progress,
) -> Result<Built, BuildError> {
    let step = AtomicUsize::new(0);
    let steps = AtomicUsize::new(0);
    let df = instructions::parse(&opts.dockerfile).map_err(|e| BuildError::Dockerfile {
        line: e.line,
        message: e.message,
    })?;
    let store = Store::open(&paths.root)?;
    let cache = Cache::open(&paths.root)?;
    let hashes = HashCache::open(&paths.root);
    let lexer = Lexer::new(df.escape);
    let mut store = store;
    sweep(paths, &mut store);
    let _lease = LeaseGuard {
        root: paths.root.clone(),
    };
    let mut b = Builder {
        paths: paths.clone(),
        store,
        cache,
        hashes,
        opts,
        lexer,
        global_args: Vec::new(),
        results: HashMap::new(),
        progress,
        step: &step,
        steps: &steps,
        context: None,
        pulled: Vec::new(),
        df,
    };
    b.run()
}

impl<'a, 'o> Builder<'a, 'o> {
    /// Reports an instruction starting.
    fn step_started(&mut self, stage: &str, instruction: &str) {
        let counter = self.counter();
        self.progress.event(&Event::Step {
            counter: &counter,
            stage,
            instruction,
        });
    }

    fn build_arg(&self, name: &str) -> Option<String> {
        self.opts
            .build_args
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }

    fn expand(
        &self,
        word: &str,
        vars: &[(String, Option<String>)],
        line: usize,
    ) -> Result<String, BuildError> {
        let lookup = |k: &str| {
            vars.iter()
                .rev()
                .find(|(n, _)| n == k)
                .and_then(|(_, v)| v.clone())
        };
        self.lexer
            .process_word(word, &lookup)
            .map_err(|e| BuildError::Dockerfile {
                line,
                message: format!("{e} (in {word:?})"),
            })
    }

    fn counter(&mut self) -> String {
        let n = self.step.fetch_add(1, Ordering::Relaxed) + 1;
        format!("[{n}/{}]", self.steps.load(Ordering::Relaxed))
    }

    fn now(&self) -> String {
        match self.opts.source_date_epoch {
            Some(e) => chrono::DateTime::from_timestamp(e as i64, 0)
                .unwrap_or_default()
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            None => chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        }
    }

    fn history(&self, state: &mut State, created_by: String, empty: bool) {
        let mut h = json!({"created": self.now(), "created_by": created_by});
        if empty {
            h["empty_layer"] = json!(true);
        }
        state.history.push(h);
    }

    /// The variables an instruction sees: the stage's ARGs, then its ENV
    /// (ENV wins).
    fn vars(state: &State, args: &[(String, Option<String>)]) -> Vec<(String, Option<String>)> {
        let mut v: Vec<(String, Option<String>)> = args.to_vec();
        v.extend(state.env().into_iter().map(|(k, val)| (k, Some(val))));
        v
    }

    fn finish(&mut self, mut state: State) -> Result<Built, BuildError> {
        for (k, v) in &self.opts.labels {
            state.map_insert("Labels", k, json!(v));
        }
        // The image's time is its last step's (from the cache, for a
        // cached rebuild), so that an unchanged build makes the same image.
        let created = state
            .history
            .last()
            .and_then(|h| h.get("created"))
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| self.now());
        let mut doc = Map::new();
        doc.insert("architecture".into(), json!(state.architecture));
        if let Some(a) = &state.author {
            doc.insert("author".into(), json!(a));
        }
        doc.insert("config".into(), Value::Object(state.config.clone()));
        doc.insert("created".into(), json!(created));
        doc.insert("history".into(), Value::Array(state.history.clone()));
        doc.insert("os".into(), json!(state.os));
        doc.insert(
            "rootfs".into(),
            json!({"type": "layers", "diff_ids": state.layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>()}),
        );
        let bytes = serde_json::to_vec(&Value::Object(doc)).expect("serializes");
        let id = berth_image::built::add_image(
            &mut self.store,
            &bytes,
            Some(created),
            state.layer_records()?,
            self.opts.tags.clone(),
        )?;
        Ok(Built {
            id,
            tags: self.opts.tags.clone(),
            warnings: Vec::new(),
        })
    }
}
