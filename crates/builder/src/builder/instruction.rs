//! One instruction's effect on the stage's state: the cache key, and
//! either the cache's result or the instruction done (metadata
//! instructions change the config, RUN and COPY/ADD make layers).

use berth_dockerfile::instructions::{CommandLine, Instruction, Kind};
use serde_json::{json, Map, Value};

use super::{platform_args, sha, Builder};
use crate::state::State;
use crate::{fsutil, BuildError};

/// CMD and ENTRYPOINT: shell form runs through the stage's SHELL.
pub(super) fn command(state: &State, c: &CommandLine) -> Vec<String> {
    if c.shell_form {
        let mut v = state.shell();
        v.push(c.args.first().cloned().unwrap_or_default());
        v
    } else {
        c.args.clone()
    }
}

/// Go's `%q` of a string slice, as Docker's history shows commands.
pub(super) fn go_list(v: &[String]) -> String {
    let items: Vec<String> = v
        .iter()
        .map(|s| serde_json::to_string(s).expect("serializes"))
        .collect();
    format!("[{}]", items.join(" "))
}

/// EXPOSE's `80`, `80/udp`, `8000-8002/tcp` as `port/proto` keys.
pub(super) fn expand_ports(p: &str) -> Result<Vec<String>, BuildError> {
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

impl<'a, 'o> Builder<'a, 'o> {
    /// Does one instruction; returns whether it came from the cache.
    pub(super) fn instruction(
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
}
