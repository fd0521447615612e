//! Scheduling: the stages the target needs, in order, independent ones
//! at once on builders of their own; each stage's base (an image, pulled
//! if missing, or an earlier stage) and its instructions in turn.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Instant;

use berth_dockerfile::instructions::{self, Instruction, Kind};
use berth_image::store::Store;
use serde_json::Value;

use super::leftovers::lease_holder;
use super::{platform_args, sha, Builder, Built, StageResult, PROXY_ARGS};
use crate::cache::Cache;
use crate::progress::Event;
use crate::sources::HashCache;
use crate::state::{Layer, State};
use crate::BuildError;

impl<'a, 'o> Builder<'a, 'o> {
    /// A builder for a stage that runs beside others: its own store and
    /// cache connections, the same options, progress and results so far.
    pub(super) fn fork(&self) -> Result<Builder<'a, 'o>, BuildError> {
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

    pub(super) fn run(&mut self) -> Result<Built, BuildError> {
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
    pub(super) fn stage_ref(
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

    pub(super) fn base_name(&self, i: usize) -> Result<String, BuildError> {
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
    pub(super) fn needed(
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

    /// An image from the store (pulled when missing and a puller is given).
    pub(super) fn image_state(
        &mut self,
        name: &str,
        line: usize,
    ) -> Result<(State, String), BuildError> {
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

    pub(super) fn base(&mut self, i: usize) -> Result<(State, String), BuildError> {
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

    pub(super) fn stage(&mut self, i: usize) -> Result<(State, String), BuildError> {
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
}
