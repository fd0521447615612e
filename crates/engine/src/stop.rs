//! `stop` and `rm`: the stop signal, SIGKILL after the timeout, and the
//! wait for the monitor to record the exit; removal of what is left.

use std::time::Duration;

use crate::db::{Record, State};
use crate::{Engine, EngineError};

/// How long `stop` waits for a container to go once SIGKILL is sent.
const KILL_GRACE: Duration = Duration::from_secs(30);

impl Engine {
    /// `berth stop`: the stop signal, then SIGKILL after `timeout` (the
    /// container's `--stop-timeout`, else 10 s); returns once its exit is
    /// recorded. A stopped container is left as it is.
    pub fn stop(
        &mut self,
        key: &str,
        timeout: Option<i64>,
        signal: Option<i32>,
    ) -> Result<Record, EngineError> {
        let mut rec = self.get(key)?;
        // Also between restarts (exited, its monitor waiting to start it
        // again): the policy must not bring it back.
        rec.stop_requested = true;
        self.db.set_stop_requested(&rec.id, true)?;
        if !matches!(
            rec.state,
            State::Running | State::Paused | State::Restarting
        ) {
            return Ok(rec);
        }
        let rt = self.paths.runtime();
        if rec.state == State::Paused {
            let _ = self.runtime.set_paused(&rt, &rec.id, false);
        }
        let sig = match signal {
            Some(s) => s,
            None => self.stop_signal(&rec)?,
        };
        let _ = self.runtime.kill(&rt, &rec.id, sig);
        self.container_event(&rec, "kill", &[("signal", sig.to_string())]);
        // A negative timeout waits for as long as it takes, as docker's.
        let wait = timeout.or(rec.config.stop_timeout).unwrap_or(10);
        let limit = (wait >= 0).then(|| Duration::from_secs(wait as u64));
        let gone = |e: EngineError| match e {
            // `--rm`: removed as soon as it stopped.
            EngineError::NoSuchContainer(_) => Ok(Some(rec.clone())),
            e => Err(e),
        };
        if let Some(r) = self.wait_exit(&rec.id, limit).or_else(gone)? {
            self.container_event(&rec, "stop", &[]);
            return Ok(r);
        }
        // A frozen process dies only once thawed.
        let _ = self.runtime.force_thaw(&rt, &rec.id);
        let _ = self.runtime.kill(&rt, &rec.id, libc::SIGKILL);
        self.container_event(&rec, "kill", &[("signal", libc::SIGKILL.to_string())]);
        match self.wait_exit(&rec.id, Some(KILL_GRACE)).or_else(gone)? {
            Some(r) => {
                self.container_event(&rec, "stop", &[]);
                Ok(r)
            }
            None => Err(EngineError::Conflict(format!(
                "container {} did not exit within {} s of SIGKILL: its processes are stuck in the \
                 kernel (uninterruptible sleep, a hung mount or device); see `berth top {}`",
                rec.id,
                KILL_GRACE.as_secs(),
                &rec.id[..12]
            ))),
        }
    }

    /// `stop` as a daemon's shutdown does it: the container is not taken
    /// as stopped by hand, so its restart policy brings it back when the
    /// daemon starts again (docker's `unless-stopped`).
    pub fn stop_for_shutdown(&mut self, key: &str) -> Result<Record, EngineError> {
        let mut rec = self.stop(key, None, None)?;
        self.db.set_stop_requested(&rec.id, false)?;
        rec.stop_requested = false;
        Ok(rec)
    }

    /// The ids of the containers running now (paused ones included).
    pub fn running_ids(&mut self) -> Result<Vec<String>, EngineError> {
        Ok(self
            .list()?
            .into_iter()
            .filter(|r| matches!(r.state, State::Running | State::Paused | State::Restarting))
            .map(|r| r.id)
            .collect())
    }

    /// `berth rm`: a running container only with `force` (killed first);
    /// with `volumes`, its anonymous volumes too.
    pub fn remove(&mut self, key: &str, force: bool, volumes: bool) -> Result<Record, EngineError> {
        let mut rec = self.get(key)?;
        if matches!(
            rec.state,
            State::Running | State::Paused | State::Restarting
        ) {
            if !force {
                return Err(EngineError::Conflict(format!(
                    "You cannot remove a {} container {}. Stop the container before attempting removal or force remove",
                    rec.state.as_str(),
                    rec.id
                )));
            }
            rec.stop_requested = true;
            self.db.set_stop_requested(&rec.id, true)?;
            let rt = self.paths.runtime();
            let _ = self.runtime.kill(&rt, &rec.id, libc::SIGKILL);
            self.container_event(&rec, "kill", &[("signal", libc::SIGKILL.to_string())]);
            if rec.state == State::Paused {
                // A frozen process dies only once thawed.
                let _ = self.runtime.set_paused(&rt, &rec.id, false);
            }
            match self.wait_exit(&rec.id, Some(Duration::from_secs(30))) {
                Ok(_) | Err(EngineError::NoSuchContainer(_)) => {}
                Err(e) => return Err(e),
            }
        }
        self.purge(&rec.id)?;
        if volumes {
            self.volumes().remove_anonymous(&rec.config.volume_mounts)?;
        }
        Ok(rec)
    }
}
