//! Runs a Dockerfile: the stages the target needs, in order, each step
//! either found in the cache or done (RUN in a container through the
//! runtime library, COPY through the safe extractor into an overlay), and
//! the target's state recorded as an image.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use berth_dockerfile::instructions::{self, CommandLine, Copy, Dockerfile, Instruction, Kind};
use berth_dockerfile::shell::Lexer;
use berth_engine::options::Mount;
use berth_engine::Paths;
use berth_image::digest::Digest;
use berth_image::reference::Reference;
use berth_image::store::Store;
use serde_json::{json, Map, Value};
use sha2::{Digest as _, Sha256};

use crate::cache::Cache;
use crate::progress::{Event, Progress};
use crate::sources::{self, HashCache, Meta, SourceRoot};
use crate::state::{Layer, State};
use crate::{fsutil, BuildError};

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

    /// A builder for a stage that runs beside others: its own store and
    /// cache connections, the same options, progress and results so far.
    fn fork(&self) -> Result<Builder<'a, 'o>, BuildError> {
        Ok(Builder {
            paths: self.paths.clone(),
            store: Store::open(&self.paths.root)?,
            cache: Cache::open(&self.paths.root)?,
            hashes: HashCache::open(&self.paths.root),
            opts: self.opts,
            df: self.df.clone(),
            lexer: self.lexer.clone(),
            global_args: self.global_args.clone(),
            results: self.results.clone(),
            progress: self.progress,
            step: self.step,
            steps: self.steps,
            context: None,
            pulled: self.pulled.clone(),
        })
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

    fn run(&mut self) -> Result<Built, BuildError> {
        // Global ARGs, in order, each seeing the ones before it.
        let platform = platform_args();
        let globals = self.df.global_args.clone();
        for g in &globals {
            let Kind::Arg(list) = &g.kind else { continue };
            for (name, default) in list {
                let mut vars: Vec<(String, Option<String>)> = platform
                    .iter()
                    .map(|(k, v)| (k.clone(), Some(v.clone())))
                    .collect();
                vars.extend(self.global_args.iter().cloned());
                let value = match self.build_arg(name) {
                    Some(v) => Some(v),
                    None => match default {
                        Some(d) => Some(self.expand(d, &vars, g.line)?),
                        None => platform
                            .iter()
                            .find(|(k, _)| k == name)
                            .map(|(_, v)| v.clone()),
                    },
                };
                self.global_args.push((name.clone(), value));
            }
        }
        let target = match &self.opts.target {
            Some(t) => self.df.stage_by_name(t).ok_or_else(|| {
                BuildError::Invalid(format!(
                    "target stage {t:?} could not be found: the Dockerfile's stages are {}",
                    self.df
                        .stages
                        .iter()
                        .map(|s| s.name.clone().unwrap_or_else(|| s.index.to_string()))
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?,
            None => self.df.stages.len() - 1,
        };
        let (order, deps) = self.needed(target)?;
        self.steps.store(
            order
                .iter()
                .map(|i| self.df.stages[*i].instructions.len() + 1)
                .sum(),
            Ordering::Relaxed,
        );
        // Waves: every stage whose dependencies are built runs now, the
        // independent ones at the same time.
        let mut left = order;
        while !left.is_empty() {
            let (wave, rest): (Vec<usize>, Vec<usize>) = left
                .iter()
                .partition(|i| deps[*i].iter().all(|d| self.results.contains_key(d)));
            left = rest;
            if wave.len() == 1 {
                let res = self.stage(wave[0])?;
                self.results.insert(wave[0], res);
                continue;
            }
            let mut forks = Vec::new();
            for &i in &wave {
                forks.push((i, self.fork()?));
            }
            let done: Vec<(usize, StageResult)> = std::thread::scope(|sc| {
                let handles: Vec<_> = forks
                    .into_iter()
                    .map(|(i, mut b)| (i, sc.spawn(move || b.stage(i))))
                    .collect();
                handles
                    .into_iter()
                    .map(|(i, h)| {
                        (
                            i,
                            h.join().unwrap_or_else(|_| {
                                Err(BuildError::Invalid("a build stage panicked".into()))
                            }),
                        )
                    })
                    .collect()
            });
            for (i, r) in done {
                self.results.insert(i, r?);
            }
        }
        let (state, _) = self.results.remove(&target).expect("built");
        let mut built = self.finish(state)?;
        // Build args no ARG of the built stages declares, as docker warns.
        let mut declared: Vec<&str> = PROXY_ARGS.to_vec();
        for ins in self.df.global_args.iter().chain(
            self.results
                .keys()
                .chain(std::iter::once(&target))
                .flat_map(|i| self.df.stages[*i].instructions.iter()),
        ) {
            if let Kind::Arg(list) = &ins.kind {
                declared.extend(list.iter().map(|(n, _)| n.as_str()));
            }
        }
        let mut unused: Vec<&str> = self
            .opts
            .build_args
            .iter()
            .map(|(k, _)| k.as_str())
            .filter(|k| !declared.contains(k))
            .collect();
        unused.sort();
        unused.dedup();
        if !unused.is_empty() {
            built.warnings.push(format!(
                "[Warning] One or more build-args [{}] were not consumed",
                unused.join(" ")
            ));
        }
        built.warnings.extend(self.df.warnings.iter().cloned());
        Ok(built)
    }

    /// What a stage's FROM or COPY --from names: a stage before it (by
    /// name or index), or None for an image.
    fn stage_ref(
        &self,
        name: &str,
        current: usize,
        line: usize,
    ) -> Result<Option<usize>, BuildError> {
        match self.df.stage_by_name(name) {
            Some(i) if i < current => Ok(Some(i)),
            Some(_) => Err(BuildError::Dockerfile {
                line,
                message: format!(
                    "circular dependency detected on stage: {name} (a stage can only use stages before it)"
                ),
            }),
            None => Ok(None),
        }
    }

    fn base_name(&self, i: usize) -> Result<String, BuildError> {
        let s = &self.df.stages[i];
        // FROM sees the automatic platform args without an ARG, then the
        // global ones.
        let mut vars: Vec<(String, Option<String>)> = platform_args()
            .into_iter()
            .map(|(k, v)| (k, Some(v)))
            .collect();
        vars.extend(self.global_args.iter().cloned());
        self.expand(&s.base, &vars, s.line)
    }

    /// The stages `target` needs, dependencies first, and what each one
    /// needs (FROM, COPY --from, RUN --mount from=).
    #[allow(clippy::type_complexity)]
    fn needed(
        &self,
        target: usize,
    ) -> Result<(Vec<usize>, HashMap<usize, Vec<usize>>), BuildError> {
        let mut need = vec![false; self.df.stages.len()];
        let mut deps: HashMap<usize, Vec<usize>> = HashMap::new();
        let mut todo = vec![target];
        while let Some(i) = todo.pop() {
            if need[i] {
                continue;
            }
            need[i] = true;
            let mut mine = Vec::new();
            let base = self.base_name(i)?;
            if let Some(j) = self.stage_ref(&base, i, self.df.stages[i].line)? {
                mine.push(j);
            }
            for ins in &self.df.stages[i].instructions {
                let froms: Vec<String> = match &ins.kind {
                    Kind::Copy(c) => c.from.iter().cloned().collect(),
                    Kind::Run(r) => r
                        .mounts
                        .iter()
                        .flat_map(|m| {
                            m.split(',')
                                .filter_map(|f| f.strip_prefix("from="))
                                .map(str::to_string)
                        })
                        .collect(),
                    _ => Vec::new(),
                };
                for f in froms {
                    let f = self.expand(&f, &self.global_args, ins.line)?;
                    if let Some(j) = self.stage_ref(&f, i, ins.line)? {
                        mine.push(j);
                    }
                }
            }
            todo.extend(mine.iter().copied());
            deps.insert(i, mine);
        }
        Ok(((0..need.len()).filter(|i| need[*i]).collect(), deps))
    }

    fn counter(&mut self) -> String {
        let n = self.step.fetch_add(1, Ordering::Relaxed) + 1;
        format!("[{n}/{}]", self.steps.load(Ordering::Relaxed))
    }

    /// An image from the store (pulled when missing and a puller is given).
    fn image_state(&mut self, name: &str, line: usize) -> Result<(State, String), BuildError> {
        if let (true, Some(pull)) = (self.opts.always_pull, self.opts.pull) {
            if !self.pulled.iter().any(|p| p == name) {
                pull(name).map_err(|e| BuildError::Dockerfile {
                    line,
                    message: format!("pulling {name}: {e}"),
                })?;
                self.pulled.push(name.to_string());
            }
        }
        let img = match self.store.resolve(name) {
            Ok(i) => i,
            Err(berth_image::store::StoreError::NoSuchImage(_)) => match self.opts.pull {
                Some(pull) => {
                    pull(name).map_err(|e| BuildError::Dockerfile {
                        line,
                        message: format!("pulling {name}: {e}"),
                    })?;
                    self.store.resolve(name)?
                }
                None => {
                    return Err(BuildError::Dockerfile {
                        line,
                        message: format!(
                            "{name}: no such image in the store: load or pull it first"
                        ),
                    })
                }
            },
            Err(e) => return Err(e.into()),
        };
        // Held for the build: no rmi or gc takes its layers meanwhile.
        self.store.add_lease(&lease_holder(), &img.id)?;
        let blob = self.store.read_blob(&img.id, 4 << 20)?;
        let doc: Value = serde_json::from_slice(&blob)
            .map_err(|e| BuildError::Invalid(format!("image config of {name}: {e}")))?;
        let layers = self
            .store
            .layers(&img.id)?
            .iter()
            .map(Layer::from_record)
            .collect();
        let config = doc
            .get("config")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let state = State {
            layers,
            config,
            history: doc
                .get("history")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
            architecture: doc
                .get("architecture")
                .and_then(Value::as_str)
                .unwrap_or("amd64")
                .to_string(),
            os: doc
                .get("os")
                .and_then(Value::as_str)
                .unwrap_or("linux")
                .to_string(),
            author: None,
            cmd_set: false,
        };
        Ok((state, sha(&["image", &img.id.to_string()])))
    }

    fn base(&mut self, i: usize) -> Result<(State, String), BuildError> {
        let line = self.df.stages[i].line;
        let name = self.base_name(i)?;
        if name.is_empty() {
            return Err(BuildError::Dockerfile {
                line,
                message: "base name (FROM) should not be blank".into(),
            });
        }
        if let Some(j) = self.stage_ref(&name, i, line)? {
            let (mut s, k) =
                self.results
                    .get(&j)
                    .cloned()
                    .ok_or_else(|| BuildError::Dockerfile {
                        line,
                        message: format!("stage {name:?} is not built before this one"),
                    })?;
            s.cmd_set = false;
            // Not the stage's own key: its state changes here (cmd_set).
            return Ok((s, sha(&["stage", &k])));
        }
        if name.eq_ignore_ascii_case("scratch") {
            return Ok((State::scratch(), sha(&["scratch"])));
        }
        self.image_state(&name, line)
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

    fn stage(&mut self, i: usize) -> Result<(State, String), BuildError> {
        let stage = self.df.stages[i].clone();
        let label = stage.name.clone().unwrap_or_else(|| format!("stage-{i}"));
        let from_name = self.base_name(i)?;
        self.step_started(&label, &format!("FROM {from_name}"));
        let (mut state, mut key) = self.base(i)?;
        // Docker's default PATH when the base sets none.
        if !state.env().iter().any(|(k, _)| k == "PATH") {
            let mut env = vec![(
                "PATH".to_string(),
                berth_engine::config::DEFAULT_PATH.to_string(),
            )];
            env.extend(state.env());
            state.config.remove("Env");
            for (k, v) in env {
                state.set_env(&k, &v);
            }
        }
        // ARGs declared in this stage, with values.
        let mut args: Vec<(String, Option<String>)> = Vec::new();
        let mut instrs: Vec<Instruction> = Vec::new();
        // The base image's ONBUILD triggers run first.
        if let Some(triggers) = state.config.remove("OnBuild") {
            for t in triggers
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                let df = instructions::parse(&format!("FROM scratch\n{t}\n")).map_err(|e| {
                    BuildError::Dockerfile {
                        line: stage.line,
                        message: format!("the base image's ONBUILD trigger {t:?}: {}", e.message),
                    }
                })?;
                for mut ins in df.stages.into_iter().flat_map(|s| s.instructions) {
                    ins.line = stage.line;
                    instrs.push(ins);
                    self.steps.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        instrs.extend(stage.instructions.iter().cloned());
        for ins in &instrs {
            let started = Instant::now();
            self.step_started(&label, &ins.original);
            let cached = self
                .instruction(i, ins, &mut state, &mut key, &mut args)
                .map_err(|e| e.at(ins.line))?;
            if cached {
                self.progress.event(&Event::Cached);
            } else if matches!(ins.kind, Kind::Run(_) | Kind::Copy(_)) {
                self.progress.event(&Event::Done(started.elapsed()));
            }
        }
        Ok((state, key))
    }

    /// The variables an instruction sees: the stage's ARGs, then its ENV
    /// (ENV wins).
    fn vars(state: &State, args: &[(String, Option<String>)]) -> Vec<(String, Option<String>)> {
        let mut v: Vec<(String, Option<String>)> = args.to_vec();
        v.extend(state.env().into_iter().map(|(k, val)| (k, Some(val))));
        v
    }

    /// Does one instruction; returns whether it came from the cache.
    fn instruction(
        &mut self,
        stage: usize,
        ins: &Instruction,
        state: &mut State,
        key: &mut String,
        args: &mut Vec<(String, Option<String>)>,
    ) -> Result<bool, BuildError> {
        let line = ins.line;
        let vars = Self::vars(state, args);
        let ex = |s: &Self, w: &str| s.expand(w, &vars, line);
        let mut desc = String::new();
        // A metadata step is cached too (its state, history times
        // included), so that a rebuild makes the very same image.
        let meta_key = if matches!(ins.kind, Kind::Arg(_) | Kind::Run(_) | Kind::Copy(_)) {
            None
        } else {
            let k = sha(&[key, "META", &ins.original, &format!("{vars:?}")]);
            if !self.opts.no_cache {
                if let Some(s) = self.cache.get(&self.store, &k)? {
                    *state = s;
                    *key = k;
                    return Ok(false);
                }
            }
            Some(k)
        };
        match &ins.kind {
            Kind::Arg(list) => {
                for (name, default) in list {
                    let global = self
                        .global_args
                        .iter()
                        .rev()
                        .find(|(k, _)| k == name)
                        .map(|(_, v)| v.clone());
                    let platform = platform_args()
                        .into_iter()
                        .find(|(k, _)| k == name)
                        .map(|(_, v)| v);
                    let value = match self.build_arg(name) {
                        Some(v) => Some(v),
                        None => match default {
                            Some(d) => Some(self.expand(d, &Self::vars(state, args), line)?),
                            None => global.flatten().or(platform),
                        },
                    };
                    desc.push_str(&format!("{name}={value:?};"));
                    args.push((name.clone(), value));
                }
                *key = sha(&[key, "ARG", &desc]);
                return Ok(false);
            }
            Kind::Env(pairs) => {
                // One value per instruction: every value sees the env as
                // it was before this ENV.
                let mut set = Vec::new();
                for (k, v) in pairs {
                    let k = ex(self, k)?;
                    let v = ex(self, v)?;
                    set.push((k, v));
                }
                let mut shown = Vec::new();
                for (k, v) in &set {
                    state.set_env(k, v);
                    shown.push(format!("{k}={v}"));
                }
                self.history(state, format!("ENV {}", shown.join(" ")), true);
            }
            Kind::Label(pairs) => {
                let mut shown = Vec::new();
                for (k, v) in pairs {
                    let k = ex(self, k)?;
                    let v = ex(self, v)?;
                    state.map_insert("Labels", &k, json!(v));
                    shown.push(format!("{k}={v}"));
                }
                self.history(state, format!("LABEL {}", shown.join(" ")), true);
            }
            Kind::Workdir(w) => {
                let w = ex(self, w)?;
                let cur = state.str_field("WorkingDir");
                let joined = if w.starts_with('/') {
                    w.clone()
                } else {
                    format!(
                        "{}/{}",
                        if cur.is_empty() {
                            ""
                        } else {
                            cur.trim_end_matches('/')
                        },
                        w
                    )
                };
                let clean = format!("/{}", fsutil::clean(&joined));
                state.config.insert("WorkingDir".into(), json!(clean));
                self.history(state, format!("WORKDIR {clean}"), true);
            }
            Kind::User(u) => {
                let u = ex(self, u)?;
                state.config.insert("User".into(), json!(u));
                self.history(state, format!("USER {u}"), true);
            }
            Kind::Expose(ports) => {
                let mut shown = Vec::new();
                for p in ports {
                    for port in expand_ports(&ex(self, p)?)? {
                        state.map_insert("ExposedPorts", &port, json!({}));
                        shown.push(port);
                    }
                }
                self.history(state, format!("EXPOSE {}", shown.join(" ")), true);
            }
            Kind::Volume(vols) => {
                let mut shown = Vec::new();
                for v in vols {
                    let v = ex(self, v)?;
                    if v.trim().is_empty() {
                        return Err(BuildError::Invalid(
                            "VOLUME specified can not be an empty string".into(),
                        ));
                    }
                    state.map_insert("Volumes", &v, json!({}));
                    shown.push(v);
                }
                self.history(state, format!("VOLUME [{}]", shown.join(" ")), true);
            }
            Kind::StopSignal(s) => {
                let s = ex(self, s)?;
                berth_engine::parse_signal(&s).map_err(|_| {
                    BuildError::Invalid(format!("STOPSIGNAL {s}: not a signal name or number"))
                })?;
                state.config.insert("StopSignal".into(), json!(s));
                self.history(state, format!("STOPSIGNAL {s}"), true);
            }
            Kind::Shell(sh) => {
                state.config.insert("Shell".into(), json!(sh));
                self.history(state, format!("SHELL {}", go_list(sh)), true);
            }
            Kind::Cmd(c) => {
                let v = command(state, c);
                state.config.insert("Cmd".into(), json!(v));
                state.cmd_set = true;
                self.history(state, format!("CMD {}", go_list(&v)), true);
            }
            Kind::Entrypoint(c) => {
                let v = command(state, c);
                state.config.insert("Entrypoint".into(), json!(v));
                if !state.cmd_set {
                    state.config.remove("Cmd");
                }
                self.history(state, format!("ENTRYPOINT {}", go_list(&v)), true);
            }
            Kind::Healthcheck(h) => {
                let mut hc = Map::new();
                hc.insert("Test".into(), json!(h.test));
                for (field, v) in [
                    ("Interval", &h.interval),
                    ("Timeout", &h.timeout),
                    ("StartPeriod", &h.start_period),
                    ("StartInterval", &h.start_interval),
                ] {
                    if let Some(v) = v {
                        let d = berth_image::duration::parse(v).map_err(|e| {
                            BuildError::Invalid(format!(
                                "HEALTHCHECK --{}: {e}",
                                field.to_ascii_lowercase()
                            ))
                        })?;
                        let ns = d.as_nanos() as u64;
                        if ns != 0 && ns < 1_000_000 {
                            return Err(BuildError::Invalid(format!(
                                "HEALTHCHECK --{} cannot be less than 1ms",
                                field.to_ascii_lowercase()
                            )));
                        }
                        if ns != 0 {
                            hc.insert(field.into(), json!(ns));
                        }
                    }
                }
                if let Some(r) = &h.retries {
                    let n: i64 = r.parse().map_err(|_| {
                        BuildError::Invalid(format!("HEALTHCHECK --retries={r}: not a number"))
                    })?;
                    if n < 0 {
                        return Err(BuildError::Invalid(
                            "HEALTHCHECK --retries cannot be negative".into(),
                        ));
                    }
                    if n != 0 {
                        hc.insert("Retries".into(), json!(n));
                    }
                }
                state.config.insert("Healthcheck".into(), Value::Object(hc));
                self.history(state, format!("HEALTHCHECK {}", go_list(&h.test)), true);
            }
            Kind::Onbuild(t) => {
                let list = state.config.entry("OnBuild").or_insert_with(|| json!([]));
                if let Some(a) = list.as_array_mut() {
                    a.push(json!(t));
                }
                self.history(state, format!("ONBUILD {t}"), true);
            }
            Kind::Maintainer(m) => {
                state.author = Some(m.clone());
                self.history(state, format!("MAINTAINER {m}"), true);
            }
            Kind::Run(r) => return self.run_step(ins, r, state, key, args),
            Kind::Copy(c) => return self.copy_step(stage, ins, c, state, key, &vars),
        }
        if let Some(k) = meta_key {
            self.cache.put(&mut self.store, &k, state)?;
            *key = k;
        }
        Ok(false)
    }

    fn lowers(&self, state: &State) -> Result<Vec<PathBuf>, BuildError> {
        let mut out = Vec::new();
        for l in state.layers.iter().rev() {
            let snap = self.store.snapshot(&l.chain_id()?)?.ok_or_else(|| {
                BuildError::Invalid(format!(
                    "layer {} is missing from the store: reload the base image",
                    l.diff_id
                ))
            })?;
            out.push(snap.path);
        }
        Ok(berth_image::store::overlay_lowers(out))
    }

    fn step_dir(&self) -> Result<PathBuf, BuildError> {
        let builds = crate::private_dir(&self.paths.root.join("builds"))?;
        let dir = builds.join(format!(
            "{}-{}",
            std::process::id(),
            &berth_engine::new_id()[..16]
        ));
        std::fs::create_dir_all(&dir)
            .map_err(|e| BuildError::io(format!("create {}", dir.display()), e))?;
        Ok(dir)
    }

    /// Keeps a new layer (the step's upper dir) and records the state.
    fn commit_layer(
        &mut self,
        dir: &Path,
        state: &mut State,
        key: &str,
        created_by: String,
    ) -> Result<(), BuildError> {
        let parent = match state.layers.last() {
            Some(l) => Some(l.chain_id()?),
            None => None,
        };
        let committing = Instant::now();
        let record = berth_image::built::layer_from_dir(
            &mut self.store,
            &dir.join("upper"),
            parent.as_ref(),
            self.opts.source_date_epoch,
            &format!("{}{key}", crate::cache::HOLDER_PREFIX),
        )?;
        tracing::debug!(ms = committing.elapsed().as_millis() as u64, diff_id = %record.diff_id, "layer committed");
        state.layers.push(Layer::from_record(&record));
        self.history(state, created_by, false);
        self.cache.put(&mut self.store, key, state)?;
        Ok(())
    }

    fn run_step(
        &mut self,
        ins: &Instruction,
        r: &instructions::Run,
        state: &mut State,
        key: &mut String,
        args: &[(String, Option<String>)],
    ) -> Result<bool, BuildError> {
        let vars = Self::vars(state, args);
        let mut mounts = Vec::new();
        for m in &r.mounts {
            let expanded = self.expand(m, &vars, ins.line)?;
            mounts.push(crate::mounts::parse(&expanded)?);
        }
        // `berth build --network none` is a ceiling a Dockerfile cannot lift.
        let network = match (r.network.as_deref(), self.opts.network.as_str()) {
            (_, "none") | (Some("none"), _) => "none".to_string(),
            (None | Some("default"), n) => n.to_string(),
            (Some("host"), _) => "host".to_string(),
            (Some(other), _) => {
                return Err(BuildError::Invalid(format!(
                    "RUN --network={other}: use none, host or default"
                )))
            }
        };
        let insecure = match r.security.as_deref() {
            None | Some("sandbox") => false,
            Some("insecure") if self.opts.allow_insecure => true,
            Some("insecure") => {
                return Err(BuildError::Invalid(
                    "RUN --security=insecure runs the step privileged: allow it with berth build --allow security.insecure".into(),
                ))
            }
            Some(other) => {
                return Err(BuildError::Invalid(format!(
                    "RUN --security={other}: use sandbox or insecure"
                )))
            }
        };
        let argv = run_args(state, &r.cmd, &r.heredocs);
        // The environment: ENV, then the build args in scope that ENV
        // does not set, then proxy args.
        let env_pairs = state.env();
        let mut env: Vec<String> = env_pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut arg_desc = Vec::new();
        for (k, v) in args {
            if let Some(v) = v {
                arg_desc.push(format!("{k}={v}"));
                if !env_pairs.iter().any(|(ek, _)| ek == k) {
                    env.push(format!("{k}={v}"));
                }
            }
        }
        for p in PROXY_ARGS {
            if let Some(v) = self.build_arg(p) {
                env.push(format!("{p}={v}"));
            }
        }
        let user = state.str_field("User");
        let workdir = state.str_field("WorkingDir");
        let mut mount_desc = Vec::new();
        for m in &mounts {
            mount_desc.push(self.mount_key(m, ins.line)?);
        }
        let step_key = sha(&[
            key,
            "RUN",
            &serde_json::to_string(&argv).expect("serializes"),
            &arg_desc.join("\n"),
            &network,
            &format!("insecure={insecure}"),
            &serde_json::to_string(&state.config).expect("serializes"),
            &mount_desc.join("\n"),
            &r.heredocs
                .iter()
                .map(|h| format!("{}\0{}", h.name, h.content))
                .collect::<Vec<_>>()
                .join("\0"),
        ]);
        *key = step_key.clone();
        if !self.opts.no_cache {
            if let Some(s) = self.cache.get(&self.store, &step_key)? {
                *state = s;
                return Ok(true);
            }
        }
        let lowers = self.lowers(state)?;
        let dir = self.step_dir()?;
        let prepared = match self.prepare_mounts(&mounts, &dir, ins.line) {
            Ok(p) => p,
            Err(e) => {
                let _ = berth_image::layer::remove_dir_all(&dir);
                return Err(e);
            }
        };
        env.extend(prepared.env.iter().cloned());
        let mut prepared = prepared;
        // A `#!` here-document run as a program of its own.
        if let [h] = r.heredocs.as_slice() {
            if argv.len() == 1 && argv[0] == heredoc_script_path(&h.name) {
                let f = dir.join("heredoc-script");
                std::fs::write(&f, &h.content)
                    .map_err(|e| BuildError::io("write a here-document", e))?;
                set_mode(&f, 0o755)?;
                prepared
                    .mounts
                    .push(Mount::bind(mount_path(&f)?, argv[0].clone(), true));
            }
        }
        let mut tail: Vec<u8> = Vec::new();
        let progress = self.progress;
        let code = {
            let mut sink = |b: &[u8]| {
                progress.event(&Event::Output(b));
                tail.extend_from_slice(b);
                if tail.len() > 64 << 10 {
                    tail.drain(..tail.len() - (32 << 10));
                }
            };
            berth_engine::step::run(
                &self.paths,
                &berth_engine::step::Step {
                    dir: &dir,
                    lowers: &lowers,
                    args: &argv,
                    env: &env,
                    user: &user,
                    workdir: &workdir,
                    network: &network,
                    mounts: prepared.mounts.clone(),
                    tmpfs: Vec::new(),
                    privileged: insecure,
                },
                &mut sink,
            )
        };
        drop(prepared);
        let code = match code {
            Ok(c) => c,
            Err(e) => {
                let _ = berth_image::layer::remove_dir_all(&dir);
                return Err(e.into());
            }
        };
        if code != 0 {
            let _ = berth_image::layer::remove_dir_all(&dir);
            let text = String::from_utf8_lossy(&tail);
            let last: Vec<&str> = text.lines().rev().take(10).collect();
            let tail = if last.is_empty() {
                String::new()
            } else {
                format!(
                    "; its last output:\n{}",
                    last.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            };
            return Err(BuildError::RunFailed {
                line: ins.line,
                instruction: ins.original.clone(),
                code,
                tail,
            });
        }
        let mut shown = String::new();
        if !arg_desc.is_empty() {
            shown = format!("|{} {} ", arg_desc.len(), arg_desc.join(" "));
        }
        let created_by = format!("RUN {shown}{} # berth", argv.join(" "));
        let res = self.commit_layer(&dir, state, &step_key, created_by);
        let _ = berth_image::layer::remove_dir_all(&dir);
        res.map(|()| false)
    }

    /// What a RUN mount adds to the step's cache key: a bind's content
    /// (the context files it shows, or its stage's key); cache, tmpfs and
    /// secret mounts only by their settings, never their contents.
    fn mount_key(
        &mut self,
        m: &crate::mounts::RunMount,
        line: usize,
    ) -> Result<String, BuildError> {
        use crate::mounts::MountKind;
        let base = format!("{:?}|{}|{}|{:?}", m.kind, m.target, m.source, m.from);
        let MountKind::Bind { .. } = m.kind else {
            return Ok(base);
        };
        let content = match &m.from {
            Some(f) => self.source_state(f, line)?.1,
            None => {
                let root = self.context_root()?;
                let root = SourceRoot::new(&root.dir.clone(), root.ignore.clone(), false)?;
                let src = if m.source.is_empty() {
                    ".".to_string()
                } else {
                    m.source.clone()
                };
                let sel = sources::select(&root, &[src], &[], false)?;
                sources::content_hash(&root, &sel, &Meta::default(), &mut self.hashes)?
            }
        };
        Ok(format!("{base}|{content}"))
    }

    /// A stage (before the current one) or an image, by a `--from` name.
    fn source_state(&mut self, name: &str, line: usize) -> Result<(State, String), BuildError> {
        let f = self.expand(name, &self.global_args.clone(), line)?;
        match self.df.stage_by_name(&f) {
            Some(j) => self.results.get(&j).cloned().ok_or_else(|| BuildError::Dockerfile {
                line,
                message: format!("stage {f:?} is not built before this step: a step can only use stages before its own"),
            }),
            None => self.image_state(&f, line),
        }
    }

    /// Makes RUN's mounts ready on the host: docker run `--mount` values for
    /// the step, environment variables for `env=` secrets, and what must
    /// outlive the step (locks, mounts, secret files).
    fn prepare_mounts(
        &mut self,
        mounts: &[crate::mounts::RunMount],
        dir: &Path,
        line: usize,
    ) -> Result<Prepared, BuildError> {
        use crate::mounts::{MountKind, Sharing};
        let mut p = Prepared::default();
        for (n, m) in mounts.iter().enumerate() {
            let ro = m.readonly;
            match &m.kind {
                MountKind::Cache {
                    id,
                    sharing,
                    mode,
                    uid,
                    gid,
                } => {
                    if m.from.is_some() {
                        return Err(BuildError::Invalid(
                            "--mount=type=cache,from=... is not supported by berth yet".into(),
                        ));
                    }
                    let cdir = crate::mounts::cache_dir(&self.paths.root, id);
                    crate::mounts::ensure_cache_dir(&cdir, *mode, *uid, *gid)?;
                    if *sharing == Sharing::Locked {
                        let lock = std::fs::OpenOptions::new()
                            .create(true)
                            .truncate(false)
                            .write(true)
                            .open(cdir.with_extension("lock"))
                            .map_err(|e| BuildError::io("open a cache mount's lock", e))?;
                        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
                            .map_err(|e| BuildError::io("lock a cache mount", e.into()))?;
                        p.locks.push(lock);
                    }
                    p.mounts.push(Mount::bind(
                        mount_path(&cdir)?,
                        mount_path(Path::new(&m.target))?,
                        ro,
                    ));
                }
                MountKind::Tmpfs { size } => {
                    let size_bytes =
                        match size.as_deref() {
                            Some(s) => Some(berth_engine::options::parse_size(s).map_err(|e| {
                                BuildError::Invalid(format!("--mount=type=tmpfs: {e}"))
                            })? as u64),
                            None => None,
                        };
                    p.mounts.push(Mount {
                        typ: berth_engine::options::MountType::Tmpfs,
                        target: mount_path(Path::new(&m.target))?,
                        tmpfs_options: Some(berth_engine::options::TmpfsOptions {
                            size_bytes,
                            ..Default::default()
                        }),
                        ..Default::default()
                    });
                }
                MountKind::Secret {
                    id,
                    required,
                    mode,
                    uid,
                    gid,
                    env,
                } => {
                    let Some((_, data)) = self.opts.secrets.iter().rev().find(|(k, _)| k == id)
                    else {
                        if *required {
                            return Err(BuildError::Invalid(format!(
                                "secret {id} is required but was not given: pass --secret id={id},src=FILE"
                            )));
                        }
                        continue;
                    };
                    if let Some(name) = env {
                        p.env
                            .push(format!("{name}={}", String::from_utf8_lossy(data)));
                    }
                    if !m.target.is_empty() {
                        use std::os::unix::fs::PermissionsExt;
                        let sdir = self.paths.runroot.join("build-secrets").join(
                            dir.file_name()
                                .map(|n| n.to_string_lossy().into_owned())
                                .unwrap_or_default(),
                        );
                        std::fs::create_dir_all(&sdir)
                            .map_err(|e| BuildError::io("create the secrets directory", e))?;
                        let _ =
                            std::fs::set_permissions(&sdir, std::fs::Permissions::from_mode(0o700));
                        let f = sdir.join(n.to_string());
                        std::fs::write(&f, data)
                            .map_err(|e| BuildError::io("write a secret", e))?;
                        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(*mode))
                            .map_err(|e| BuildError::io("chmod a secret", e))?;
                        std::os::unix::fs::chown(&f, Some(*uid), Some(*gid))
                            .map_err(|e| BuildError::io("chown a secret", e))?;
                        p.mounts.push(Mount::bind(
                            mount_path(&f)?,
                            mount_path(Path::new(&m.target))?,
                            true,
                        ));
                        p.remove.push(sdir);
                    }
                }
                MountKind::Bind { rw } => {
                    let src_root = match &m.from {
                        Some(f) => {
                            let (s, _) = self.source_state(f, line)?;
                            let mp = dir.join(format!("from-{n}"));
                            std::fs::create_dir_all(&mp)
                                .map_err(|e| BuildError::io("create a mount point", e))?;
                            let lowers = self.lowers(&s)?;
                            if !lowers.is_empty() {
                                mount_ro(&mp, &lowers)?;
                                p.unmount.push(mp.clone());
                            }
                            mp
                        }
                        None => self.opts.context.clone(),
                    };
                    let b = dir.join(format!("bind-{n}"));
                    std::fs::create_dir_all(&b)
                        .map_err(|e| BuildError::io("create a mount point", e))?;
                    // A context with a .dockerignore shows only what it
                    // sends: a filtered copy when anything below is ignored.
                    let filtered = match (&m.from, self.context_root()?.ignore.clone()) {
                        (None, Some(ig)) => {
                            let root = SourceRoot::new(&src_root, Some(ig), false)?;
                            let src = if m.source.is_empty() {
                                ".".to_string()
                            } else {
                                m.source.clone()
                            };
                            let all = sources::select(
                                &SourceRoot::new(&src_root, None, false)?,
                                std::slice::from_ref(&src),
                                &[],
                                false,
                            )?;
                            let sel = sources::select(&root, &[src], &[], false)?;
                            if sel.entries.len() != all.entries.len() && sel.single_file.is_none() {
                                let f = b.join("filtered");
                                std::fs::create_dir_all(&f)
                                    .map_err(|e| BuildError::io("create a filtered copy", e))?;
                                let meta = Meta {
                                    keep_owners: true,
                                    ..Meta::default()
                                };
                                let mut tar = Vec::new();
                                sources::write_tar(&sel, &meta, None, &mut tar).map_err(|e| {
                                    BuildError::io("copy the bind mount's source", e)
                                })?;
                                berth_image::layer::apply_with(
                                    &tar[..],
                                    &f,
                                    None,
                                    berth_image::layer::ApplyOptions::ARCHIVE,
                                )
                                .map_err(|e| {
                                    BuildError::Invalid(format!(
                                        "copy the bind mount's source: {e}"
                                    ))
                                })?;
                                Some(f)
                            } else {
                                None
                            }
                        }
                        _ => None,
                    };
                    let (root, source) = match &filtered {
                        Some(f) => (fsutil::open_root(f)?, ".".to_string()),
                        None => (fsutil::open_root(&src_root)?, m.source.clone()),
                    };
                    let fd = fsutil::open_in_root(&root, &source).map_err(|e| {
                        BuildError::Invalid(format!(
                            "--mount source {:?}: {}",
                            m.source,
                            std::io::Error::from(e)
                        ))
                    })?;
                    // The source (resolved inside its root) is bound onto a
                    // path of ours: no host path is ever spelled out to the
                    // runtime, whatever the context's names hold.
                    let is_dir =
                        std::fs::metadata(fsutil::fd_path(&fd)).is_ok_and(|md| md.is_dir());
                    let point = b.join("src");
                    if is_dir {
                        std::fs::create_dir_all(&point)
                    } else {
                        std::fs::write(&point, b"")
                    }
                    .map_err(|e| BuildError::io("create a mount point", e))?;
                    rustix::mount::mount_bind(fsutil::fd_path(&fd), &point)
                        .map_err(|e| BuildError::io("bind the mount's source", e.into()))?;
                    p.unmount.push(point.clone());
                    let src = match (*rw, is_dir) {
                        (false, _) => point,
                        (true, true) => {
                            // Writes land in a scratch upper dir and are dropped.
                            for d in ["u", "w", "m"] {
                                std::fs::create_dir_all(b.join(d))
                                    .map_err(|e| BuildError::io("create a mount point", e))?;
                            }
                            let data = format!(
                                "lowerdir={},upperdir={},workdir={}",
                                berth_engine::rootfs::escape(&point.to_string_lossy()),
                                berth_engine::rootfs::escape(&b.join("u").to_string_lossy()),
                                berth_engine::rootfs::escape(&b.join("w").to_string_lossy())
                            );
                            let data = std::ffi::CString::new(data)
                                .map_err(|_| BuildError::Invalid("a path contains NUL".into()))?;
                            rustix::mount::mount(
                                "overlay",
                                b.join("m"),
                                "overlay",
                                rustix::mount::MountFlags::empty(),
                                Some(data.as_c_str()),
                            )
                            .map_err(|e| BuildError::io("mount a read-write bind", e.into()))?;
                            p.unmount.push(b.join("m"));
                            b.join("m")
                        }
                        (true, false) => {
                            // A file: a scratch copy takes the writes.
                            let c = b.join("copy");
                            std::fs::copy(&point, &c)
                                .map_err(|e| BuildError::io("copy a read-write bind", e))?;
                            c
                        }
                    };
                    p.mounts.push(Mount::bind(
                        mount_path(&src)?,
                        mount_path(Path::new(&m.target))?,
                        ro,
                    ));
                }
            }
        }
        Ok(p)
    }

    /// A here-document's content with variables expanded (quotes and
    /// escapes kept, as BuildKit does for heredoc files).
    fn expand_heredoc(
        &self,
        text: &str,
        vars: &[(String, Option<String>)],
        line: usize,
    ) -> Result<String, BuildError> {
        let mut lex = self.lexer.clone();
        lex.raw_quotes = true;
        lex.raw_escapes = true;
        let lookup = |k: &str| {
            vars.iter()
                .rev()
                .find(|(n, _)| n == k)
                .and_then(|(_, v)| v.clone())
        };
        lex.process_word(text, &lookup)
            .map_err(|e| BuildError::Dockerfile {
                line,
                message: format!("{e} (in a here-document)"),
            })
    }

    fn context_root(&mut self) -> Result<&SourceRoot, BuildError> {
        if self.context.is_none() {
            let ignore = match crate::context::read_in_context(&self.opts.context, ".dockerignore")
            {
                Ok(Some(text)) => {
                    let patterns = berth_dockerfile::ignore::read_dockerignore(&text);
                    Some(
                        berth_dockerfile::ignore::Matcher::new(&patterns)
                            .map_err(|e| BuildError::Invalid(format!(".dockerignore: {e}")))?,
                    )
                }
                Ok(None) => None,
                Err(e) => return Err(e),
            };
            self.context = Some(SourceRoot::new(&self.opts.context, ignore, false)?);
        }
        Ok(self.context.as_ref().expect("set"))
    }

    fn copy_step(
        &mut self,
        stage: usize,
        ins: &Instruction,
        c: &Copy,
        state: &mut State,
        key: &mut String,
        vars: &[(String, Option<String>)],
    ) -> Result<bool, BuildError> {
        let what = if c.add { "ADD" } else { "COPY" };
        if c.from.is_some() && c.sources.iter().any(|s| s.contains("://")) {
            return Err(BuildError::Invalid(format!(
                "{what} --from cannot fetch URLs"
            )));
        }
        let line = ins.line;
        // Sources: paths (context or --from), here-documents, and (ADD) URLs.
        let mut srcs = Vec::new();
        let mut heredocs = c.heredocs.iter();
        let mut extras: Vec<(String, Vec<u8>)> = Vec::new();
        let mut urls = Vec::new();
        for s in &c.sources {
            if s.starts_with("<<") {
                if let Some(h) = heredocs.next() {
                    let content = if h.expand {
                        self.expand_heredoc(&h.content, vars, line)?
                    } else {
                        h.content.clone()
                    };
                    extras.push((h.name.clone(), content.into_bytes()));
                    continue;
                }
            }
            let e = self.expand(s, vars, line)?;
            if c.add && (e.starts_with("http://") || e.starts_with("https://")) {
                urls.push(e);
            } else if e.contains("://") || e.starts_with("git@") {
                return Err(BuildError::Invalid(format!(
                    "{what} {e}: only http(s) URLs can be fetched{}",
                    if c.add { "" } else { " (and only by ADD)" }
                )));
            } else {
                srcs.push(e);
            }
        }
        if c.checksum.is_some() && (urls.len() != 1 || !srcs.is_empty() || !extras.is_empty()) {
            return Err(BuildError::Invalid(
                "ADD --checksum needs exactly one URL source".into(),
            ));
        }
        let n_sources = srcs.len() + extras.len() + urls.len();
        let dest_raw = self.expand(&c.dest, vars, line)?;
        let chown = match &c.chown {
            Some(s) => Some(self.expand(s, vars, line)?),
            None => None,
        };
        let chmod = match &c.chmod {
            Some(m) => Some(
                u32::from_str_radix(m, 8)
                    .ok()
                    .filter(|v| *v <= 0o7777)
                    .ok_or_else(|| {
                        BuildError::Invalid(format!("--chmod={m}: use an octal mode such as 0755"))
                    })?,
            ),
            None => None,
        };
        let workdir = state.str_field("WorkingDir");
        let dest_dir_form = dest_raw.ends_with('/') || dest_raw.ends_with("/.") || dest_raw == ".";
        let dest = if dest_raw.starts_with('/') {
            dest_raw.clone()
        } else {
            format!("{}/{}", workdir.trim_end_matches('/'), dest_raw)
        };
        let dest = fsutil::clean(&dest);
        if n_sources > 1 && !dest_dir_form {
            return Err(BuildError::Invalid(format!(
                "When using {what} with more than one source file, the destination must be a directory and end with a /"
            )));
        }
        // The source root: the context, or a stage's or image's files
        // (mounted read-only for the copy).
        let mut mounted: Option<PathBuf> = None;
        let mut source_key = String::new();
        let from_state = match &c.from {
            Some(f) => {
                let f = self.expand(f, &self.global_args.clone(), line)?;
                match self.stage_ref(&f, stage, line)? {
                    Some(j) => Some(self.results.get(&j).cloned().ok_or_else(|| {
                        BuildError::Invalid(format!(
                            "--from={f}: that stage is not built before this step"
                        ))
                    })?),
                    None => Some(self.image_state(&f, line)?),
                }
            }
            None => None,
        };
        let root_dir = match &from_state {
            Some((s, k)) => {
                source_key = k.clone();
                let dir = self.step_dir()?;
                let src = dir.join("src");
                std::fs::create_dir_all(&src)
                    .map_err(|e| BuildError::io("create a mount point", e))?;
                let lowers = self.lowers(s)?;
                if !lowers.is_empty() {
                    mount_ro(&src, &lowers)?;
                }
                mounted = Some(dir);
                src
            }
            None => self.opts.context.clone(),
        };
        let result = (|| -> Result<bool, BuildError> {
            let root = match &from_state {
                Some(_) => SourceRoot::new(&root_dir, None, true)?,
                None => {
                    self.context_root()?;
                    SourceRoot::new(
                        &root_dir,
                        self.context.as_ref().and_then(|c| c.ignore.clone()),
                        false,
                    )?
                }
            };
            let mut sel = sources::select(&root, &srcs, &c.excludes, c.parents)?;
            // Here-documents and fetched URLs, as files in the step's
            // staging directory.
            let staging = self.step_dir()?;
            let _staging = Cleanup(staging.clone());
            let mut extra_hash = Vec::new();
            for (name, data) in &extras {
                let f = staging.join(format!("heredoc-{}", extra_hash.len()));
                std::fs::write(&f, data).map_err(|e| BuildError::io("write a here-document", e))?;
                set_mode(&f, 0o644)?;
                extra_hash.push(format!(
                    "heredoc:{name}:{}",
                    sha(&[&String::from_utf8_lossy(data)])
                ));
                sel.add_file(f, name.clone(), false)?;
            }
            for u in &urls {
                // Named after the URL: a destination that is not an
                // existing directory renames it (the single-file rule).
                let name = url_file_name(u);
                let f = staging.join(format!("url-{}", extra_hash.len()));
                let digest = fetch(u, &f, c.checksum.as_deref())?;
                extra_hash.push(format!("url:{u}:{digest}"));
                sel.add_file(f, name, false)?;
            }
            if n_sources != 1 {
                sel.single_file = None;
            }
            // ADD unpacks local tar archives into the destination.
            if c.add && c.unpack != Some(false) && from_state.is_none() {
                // Only the sources named themselves, never archives found
                // inside a copied directory.
                for e in sel.entries.iter_mut() {
                    if e.top && e.md.is_file() && sources::is_archive(&e.full) {
                        e.archive = true;
                    }
                }
                if sel.entries.iter().any(|e| e.archive) {
                    sel.single_file = None;
                }
            }
            let meta = Meta {
                owner: None,
                chmod,
                keep_owners: root.keep_owners,
            };
            let hashing = Instant::now();
            let content = if from_state.is_some() {
                sha(&[
                    &source_key,
                    &srcs.join("\n"),
                    &c.parents.to_string(),
                    &extra_hash.join("\n"),
                ])
            } else {
                let h = sources::content_hash(&root, &sel, &meta, &mut self.hashes)?;
                sha(&[&h, &extra_hash.join("\n")])
            };
            let step_key = sha(&[
                key,
                what,
                &content,
                &dest,
                &dest_dir_form.to_string(),
                chown.as_deref().unwrap_or(""),
                &format!("{chmod:?}"),
                &c.excludes.join("\n"),
                &format!(
                    "link={} parents={} unpack={:?}",
                    c.link, c.parents, c.unpack
                ),
            ]);
            *key = step_key.clone();
            tracing::debug!(
                entries = sel.entries.len(),
                ms = hashing.elapsed().as_millis() as u64,
                "COPY sources selected and hashed"
            );
            if !self.opts.no_cache {
                if let Some(s) = self.cache.get(&self.store, &step_key)? {
                    *state = s;
                    return Ok(true);
                }
            }
            let dir = self.step_dir()?;
            let copying = Instant::now();
            let res = self.copy_into(
                &dir,
                state,
                &sel,
                meta,
                chown.as_deref(),
                &dest,
                dest_dir_form,
                c.link,
            );
            tracing::debug!(ms = copying.elapsed().as_millis() as u64, "COPY landed");
            let res = res.and_then(|()| {
                let mut shown: Vec<String> = srcs.clone();
                shown.extend(extras.iter().map(|(n, _)| format!("<<{n}")));
                shown.extend(urls.iter().cloned());
                let link = if c.link { "--link " } else { "" };
                let created_by = format!("{what} {link}{} /{dest} # berth", shown.join(" "));
                self.commit_layer(&dir, state, &step_key, created_by)
            });
            let _ = berth_image::layer::remove_dir_all(&dir);
            res.map(|()| false)
        })();
        if let Some(dir) = mounted {
            let _ = rustix::mount::unmount(dir.join("src"), rustix::mount::UnmountFlags::DETACH);
            let _ = berth_image::layer::remove_dir_all(&dir);
        }
        result
    }

    #[allow(clippy::too_many_arguments)]
    fn copy_into(
        &mut self,
        dir: &Path,
        state: &State,
        sel: &sources::Selection,
        mut meta: Meta,
        chown: Option<&str>,
        dest: &str,
        dest_dir_form: bool,
        link: bool,
    ) -> Result<(), BuildError> {
        // --link: a layer of its own, made over nothing.
        let lowers = if link {
            Vec::new()
        } else {
            self.lowers(state)?
        };
        let layout = berth_engine::rootfs::Layout {
            dir: dir.to_path_buf(),
        };
        berth_engine::rootfs::prepare(&layout, "buildkitsandbox", true)?;
        berth_engine::rootfs::mount(&layout, &lowers, true)?;
        let res = (|| -> Result<(), BuildError> {
            let merged = layout.merged();
            if let Some(spec) = chown {
                let u = berth_engine::users::resolve(&merged, spec)?;
                meta.owner = Some((u.uid, u.gid));
            }
            let root = fsutil::open_root(&merged)?;
            let owner = meta.owner.unwrap_or((0, 0));
            let (landing, single_name) = match &sel.single_file {
                Some(base) if !dest_dir_form && !fsutil::is_dir_in_root(&root, dest) => {
                    let (parent, name) = match dest.rsplit_once('/') {
                        Some((p, n)) => (p.to_string(), n.to_string()),
                        None => (String::new(), dest.to_string()),
                    };
                    let name = if name.is_empty() { base.clone() } else { name };
                    (parent, Some(name))
                }
                _ => (dest.to_string(), None),
            };
            let (fd, made) = fsutil::mkdir_all_in_root(&root, &landing, owner)?;
            // --chmod applies to what this COPY makes, never to an existing
            // directory it lands in.
            if let (Some(m), None, true) = (meta.chmod, &single_name, made) {
                let d = fsutil::reopen_dir(&fd)?;
                let _ = rustix::fs::fchmod(&d, rustix::fs::Mode::from_raw_mode(m));
            }
            let target = fsutil::fd_path(&fd);
            let (reader, writer) = std::io::pipe().map_err(|e| BuildError::io("pipe", e))?;
            let applied = std::thread::scope(|s| {
                let w = s.spawn(move || {
                    let writer = writer;
                    sources::write_tar(
                        sel,
                        &meta,
                        single_name.as_deref(),
                        std::io::BufWriter::new(writer),
                    )
                });
                let applied = berth_image::layer::apply_with(
                    std::io::BufReader::with_capacity(256 << 10, reader),
                    &target,
                    None,
                    berth_image::layer::ApplyOptions::ARCHIVE,
                );
                let written = w.join().expect("the tar writer does not panic");
                (applied, written)
            });
            match applied {
                (Err(e), _) => return Err(BuildError::Invalid(format!("copying to /{dest}: {e}"))),
                (Ok(_), Err(e)) => return Err(BuildError::io("reading the sources", e)),
                (Ok(_), Ok(())) => {}
            }
            for e in sel.entries.iter().filter(|e| e.archive) {
                let f = std::fs::File::open(&e.full)
                    .map_err(|err| BuildError::io(format!("open {}", e.rel), err))?;
                let input = berth_image::layer::decompress(std::io::BufReader::new(f))
                    .map_err(|err| BuildError::io(format!("unpack {}", e.rel), err))?;
                berth_image::layer::apply_with(
                    input,
                    &target,
                    None,
                    berth_image::layer::ApplyOptions::ARCHIVE,
                )
                .map_err(|err| {
                    BuildError::Invalid(format!("unpacking {} into /{dest}: {err}", e.rel))
                })?;
            }
            Ok(())
        })();
        let un = berth_engine::rootfs::unmount(&layout);
        res?;
        un?;
        Ok(())
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

/// The lease a build holds on the images it uses.
fn lease_holder() -> String {
    format!("build:{}", std::process::id())
}

/// Drops the build's leases when it ends, however it ends.
struct LeaseGuard {
    root: PathBuf,
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        if let Ok(mut store) = Store::open(&self.root) {
            let _ = store.remove_lease(&lease_holder());
        }
    }
}

fn pid_alive(pid: i32) -> bool {
    pid > 0 && std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// What builds that died left: their step directories (mounts undone
/// first, and a directory with a mount that will not go is left alone),
/// their runtime state, their secrets and their leases.
/// Removes what builds that died left (a killed `berth build`): each
/// step's processes and cgroups, its mounts, its directory under
/// `ROOT/builds/`, its runtime state and secrets, and the leases on base
/// images. Run by every build and by the prune commands.
pub fn sweep_leftovers(paths: &Paths, store: &mut Store) {
    sweep(paths, store)
}

fn sweep(paths: &Paths, store: &mut Store) {
    let builds = paths.root.join("builds");
    let Ok(entries) = std::fs::read_dir(&builds) else {
        return;
    };
    let rt = paths.runtime();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let pid: i32 = name
            .split('-')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        if pid_alive(pid) {
            continue;
        }
        let _ = berth_runtime::container::delete(&rt, &name, true);
        // Killed before the runtime recorded the step, its cgroups are
        // known only by the step's name: any process in them is killed
        // and they are removed.
        if let Ok(cg) =
            berth_runtime::cgroups::manager(Some(Path::new(&format!("/berth/{name}"))), &name)
        {
            for _ in 0..50 {
                let pids = cg.pids().unwrap_or_default();
                if pids.is_empty() {
                    break;
                }
                for p in pids {
                    // SAFETY: kill of a pid in the dead build's cgroup.
                    unsafe { libc::kill(p, libc::SIGKILL) };
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            let _ = cg.destroy();
        }
        let dir = e.path();
        let prefix = format!("{}/", dir.display());
        let mut mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
            .filter(|m| m.starts_with(&prefix))
            .collect();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        let mut stuck = false;
        for m in &mounts {
            if rustix::mount::unmount(m.as_str(), rustix::mount::UnmountFlags::DETACH).is_err() {
                stuck = true;
            }
        }
        if !stuck {
            let _ = berth_image::layer::remove_dir_all(&dir);
        }
        let _ = std::fs::remove_dir_all(paths.runroot.join("build-secrets").join(&name));
    }
    if let Ok(holders) = berth_image::built::lease_holders_with_prefix(store, "build:") {
        for h in holders {
            let pid: i32 = h.trim_start_matches("build:").parse().unwrap_or(0);
            if !pid_alive(pid) {
                let _ = store.remove_lease(&h);
            }
        }
    }
}

/// A path as it may go into a `--mount` value (comma-separated
/// key=value fields): one holding a comma is refused, never split.
/// A mount path as the runtime's config holds it (UTF-8).
fn mount_path(p: &Path) -> Result<String, BuildError> {
    p.to_str().map(str::to_string).ok_or_else(|| {
        BuildError::Invalid(format!(
            "the mount path {} is not UTF-8: use a store root and mount targets that are",
            p.display()
        ))
    })
}

/// A directory removed when dropped.
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = berth_image::layer::remove_dir_all(&self.0);
    }
}

fn set_mode(p: &Path, mode: u32) -> Result<(), BuildError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
        .map_err(|e| BuildError::io(format!("chmod {}", p.display()), e))
}

/// The file name ADD gives a URL's download: its path's last part.
fn url_file_name(u: &str) -> String {
    let path = u.split(['?', '#']).next().unwrap_or(u);
    let after_host = path.splitn(4, '/').nth(3).unwrap_or("");
    match after_host.rsplit('/').next() {
        Some(n) if !n.is_empty() => n.to_string(),
        _ => "__unnamed__".to_string(),
    }
}

/// Downloads `url` into `dest` (mode 0600, as ADD gives it, with the
/// server's Last-Modified time), checking `checksum` (`sha256:HEX`) when
/// given; returns the content's sha256.
fn fetch(url: &str, dest: &Path, checksum: Option<&str>) -> Result<String, BuildError> {
    let want = match checksum {
        Some(c) => Some(
            c.strip_prefix("sha256:")
                .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
                .ok_or_else(|| {
                    BuildError::Invalid(format!("--checksum={c}: use sha256:<64 hex digits>"))
                })?
                .to_ascii_lowercase(),
        ),
        None => None,
    };
    let agent = ureq::Agent::config_builder()
        .timeout_global(Some(std::time::Duration::from_secs(600)))
        .build()
        .new_agent();
    let resp = agent
        .get(url)
        .call()
        .map_err(|e| BuildError::Invalid(format!("ADD {url}: {e}")))?;
    let modified = resp
        .headers()
        .get("last-modified")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| chrono::DateTime::parse_from_rfc2822(v).ok())
        .map(|t| t.timestamp());
    let mut body = resp.into_body();
    let mut reader = body.as_reader();
    let mut f =
        std::fs::File::create_new(dest).map_err(|e| BuildError::io("create a download", e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = std::io::Read::read(&mut reader, &mut buf)
            .map_err(|e| BuildError::Invalid(format!("ADD {url}: reading the body: {e}")))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        f.write_all(&buf[..n])
            .map_err(|e| BuildError::io("write a download", e))?;
    }
    let got = hex::encode(h.finalize());
    if let Some(w) = want {
        if w != got {
            return Err(BuildError::Invalid(format!(
                "ADD {url}: digest mismatch: --checksum wants sha256:{w}, the download is sha256:{got}"
            )));
        }
    }
    drop(f);
    set_mode(dest, 0o600)?;
    if let Some(t) = modified {
        let ts = rustix::fs::Timespec {
            tv_sec: t,
            tv_nsec: 0,
        };
        let _ = rustix::fs::utimensat(
            rustix::fs::CWD,
            dest,
            &rustix::fs::Timestamps {
                last_access: ts,
                last_modification: ts,
            },
            rustix::fs::AtFlags::empty(),
        );
    }
    Ok(got)
}

/// What RUN's mounts hold while the step runs; undone when dropped.
#[derive(Default)]
struct Prepared {
    mounts: Vec<Mount>,
    env: Vec<String>,
    locks: Vec<std::fs::File>,
    unmount: Vec<PathBuf>,
    remove: Vec<PathBuf>,
}

impl Drop for Prepared {
    fn drop(&mut self) {
        for m in self.unmount.iter().rev() {
            let _ = rustix::mount::unmount(m, rustix::mount::UnmountFlags::DETACH);
        }
        for d in &self.remove {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// Mounts `lowers` (top first) read-only at `target`.
fn mount_ro(target: &Path, lowers: &[PathBuf]) -> Result<(), BuildError> {
    let data = if lowers.len() == 1 {
        // One layer needs no overlay: a read-only bind.
        rustix::mount::mount_bind(&lowers[0], target)
            .map_err(|e| BuildError::io("bind the source layer", e.into()))?;
        // Read-only, or not at all: a writable view of a store snapshot
        // must never be left where cleanup could remove through it.
        if let Err(e) = rustix::mount::mount_remount(
            target,
            rustix::mount::MountFlags::BIND | rustix::mount::MountFlags::RDONLY,
            "",
        ) {
            let _ = rustix::mount::unmount(target, rustix::mount::UnmountFlags::DETACH);
            return Err(BuildError::io("make the source layer read-only", e.into()));
        }
        return Ok(());
    } else {
        format!(
            "lowerdir={}",
            lowers
                .iter()
                .map(|p| berth_engine::rootfs::escape(&p.to_string_lossy()))
                .collect::<Vec<_>>()
                .join(":")
        )
    };
    let data = std::ffi::CString::new(data)
        .map_err(|_| BuildError::Invalid("a store path contains NUL".into()))?;
    rustix::mount::mount(
        "overlay",
        target,
        "overlay",
        rustix::mount::MountFlags::RDONLY,
        Some(data.as_c_str()),
    )
    .map_err(|e| BuildError::io("mount the source stage", e.into()))
}

/// The process a RUN runs: exec form as is; shell form through the
/// stage's SHELL; here-documents appended for the shell to read.
fn run_args(
    state: &State,
    cmd: &CommandLine,
    heredocs: &[berth_dockerfile::parse::Heredoc],
) -> Vec<String> {
    if !cmd.shell_form {
        return cmd.args.clone();
    }
    let mut script = cmd.args.first().cloned().unwrap_or_default();
    let bare = heredocs.len() == 1 && {
        let t = script.trim();
        t.starts_with("<<") && t.split_whitespace().count() == 1
    };
    if bare {
        let h = &heredocs[0];
        if h.content.starts_with("#!") {
            // A script with its own interpreter: the step mounts it at
            // /dev/pipes/NAME (outside the layer) and runs it, as BuildKit.
            return vec![heredoc_script_path(&h.name)];
        } else {
            script = h.content.clone();
        }
    } else {
        for h in heredocs {
            script.push('\n');
            script.push_str(&h.content);
            script.push_str(&h.name);
        }
    }
    let mut v = state.shell();
    v.push(script);
    v
}

/// Where a RUN's `#!` here-document is mounted to be run.
fn heredoc_script_path(name: &str) -> String {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("/dev/pipes/{safe}")
}

/// CMD and ENTRYPOINT: shell form runs through the stage's SHELL.
fn command(state: &State, c: &CommandLine) -> Vec<String> {
    if c.shell_form {
        let mut v = state.shell();
        v.push(c.args.first().cloned().unwrap_or_default());
        v
    } else {
        c.args.clone()
    }
}

/// Go's `%q` of a string slice, as Docker's history shows commands.
fn go_list(v: &[String]) -> String {
    let items: Vec<String> = v
        .iter()
        .map(|s| serde_json::to_string(s).expect("serializes"))
        .collect();
    format!("[{}]", items.join(" "))
}

/// EXPOSE's `80`, `80/udp`, `8000-8002/tcp` as `port/proto` keys.
fn expand_ports(p: &str) -> Result<Vec<String>, BuildError> {
    let (ports, proto) = match p.split_once('/') {
        Some((a, b)) => (a, b.to_ascii_lowercase()),
        None => (p, "tcp".to_string()),
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(BuildError::Invalid(format!(
            "EXPOSE {p}: the protocol must be tcp, udp or sctp"
        )));
    }
    let bad = || {
        BuildError::Invalid(format!(
            "EXPOSE {p}: invalid port; use PORT[/PROTO] or START-END[/PROTO]"
        ))
    };
    let (lo, hi) = match ports.split_once('-') {
        Some((a, b)) => (
            a.parse::<u16>().map_err(|_| bad())?,
            b.parse::<u16>().map_err(|_| bad())?,
        ),
        None => {
            let n = ports.parse::<u16>().map_err(|_| bad())?;
            (n, n)
        }
    };
    if lo > hi {
        return Err(bad());
    }
    Ok((lo..=hi).map(|n| format!("{n}/{proto}")).collect())
}
