//! `berth update`: a container's resource limits and restart policy
//! changed, live when it runs (the runtime writes its cgroup), kept in
//! its record for every later start.

use oci_spec::runtime::{LinuxCpu, LinuxMemory, LinuxPids, LinuxResources};

use crate::db::{Record, State};
use crate::options::{RestartName, RestartPolicy};
use crate::{Engine, EngineError};

/// What `update` changes; `None` leaves a setting as it is.
#[derive(Debug, Clone, Default)]
pub struct Update {
    /// The memory limit in bytes (`-m`); 0 keeps it.
    pub memory: Option<i64>,
    /// CPUs (`--cpus`).
    pub cpus: Option<f64>,
    /// The process limit; 0 or less is unlimited.
    pub pids_limit: Option<i64>,
    pub restart: Option<RestartPolicy>,
}

impl Update {
    fn is_empty(&self) -> bool {
        self.memory.is_none()
            && self.cpus.is_none()
            && self.pids_limit.is_none()
            && self.restart.is_none()
    }

    /// The cgroup settings that change, and only those.
    fn resources(&self) -> Result<LinuxResources, EngineError> {
        let mut r = LinuxResources::default();
        if let Some(m) = self.memory {
            let mut mem = LinuxMemory::default();
            mem.set_limit(Some(m));
            r.set_memory(Some(mem));
        }
        if let Some(c) = self.cpus {
            let period = 100_000u64;
            let mut cpu = LinuxCpu::default();
            cpu.set_quota(Some((c * period as f64) as i64));
            cpu.set_period(Some(period));
            r.set_cpu(Some(cpu));
        }
        if let Some(p) = self.pids_limit {
            let mut pids = LinuxPids::default();
            pids.set_limit(if p <= 0 { -1 } else { p });
            r.set_pids(Some(pids));
        }
        Ok(r)
    }
}

impl Engine {
    /// Changes container `key`'s limits and restart policy: checked as at
    /// create, written to the running container's cgroup first (a limit
    /// the kernel refuses, such as memory below what it uses, changes
    /// nothing), then recorded.
    pub fn update(&mut self, key: &str, u: &Update) -> Result<Record, EngineError> {
        let mut rec = self.get(key)?;
        if u.is_empty() {
            return Err(EngineError::Invalid(
                "you must provide one or more flags when using this command".into(),
            ));
        }
        if let Some(r) = &u.restart {
            if rec.config.auto_remove && r.name != RestartName::No {
                return Err(EngineError::Invalid(
                    "Restart policy cannot be updated because AutoRemove is enabled for the container"
                        .into(),
                ));
            }
        }
        if u.cpus.is_some_and(|c| !(c > 0.0 && c.is_finite())) {
            return Err(EngineError::Invalid(format!(
                "invalid --cpus {}: it must be above 0",
                u.cpus.unwrap_or_default()
            )));
        }
        let mut config = rec.config.clone();
        if let Some(m) = u.memory.filter(|m| *m != 0) {
            config.memory = Some(m);
        }
        if let Some(c) = u.cpus {
            config.cpus = Some(c);
        }
        if let Some(p) = u.pids_limit {
            config.pids_limit = (p > 0).then_some(p);
        }
        if let Some(r) = &u.restart {
            config.restart = r.clone();
        }
        crate::spec::check(&config)?;
        if matches!(rec.state, State::Running | State::Paused) {
            let live = Update {
                memory: u.memory.filter(|m| *m != 0),
                ..u.clone()
            };
            self.runtime
                .update(&self.paths.runtime(), &rec.id, &live.resources()?)
                .map_err(|e| {
                    EngineError::Invalid(format!(
                        "cannot update container {}: {}",
                        rec.name,
                        berth_runtime::container::chain(&e)
                    ))
                })?;
        }
        self.db.set_config(&rec.id, &config)?;
        rec.config = config;
        self.container_event(&rec, "update", &[]);
        Ok(rec)
    }
}
