//! `wait`: until a container is not running, exits next, or is removed
//! (Docker's three conditions). Woken by what the monitor writes (the
//! container's die and destroy events, after the exit is recorded) and by
//! the monitor's own exit (its pidfd), never by polling the database.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::db::{Record, State};
use crate::events::Follower;
use crate::{Engine, EngineError};

/// A safety net only: each wait re-reads the record at least this often.
const RECHECK: Duration = Duration::from_secs(2);

/// Docker's wait conditions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WaitCondition {
    /// Returns at once for a container that is not running.
    #[default]
    NotRunning,
    /// The next exit from now on (a container not running yet is waited
    /// for through its start).
    NextExit,
    /// Until the container is removed.
    Removed,
}

impl std::str::FromStr for WaitCondition {
    type Err = EngineError;

    fn from_str(s: &str) -> Result<WaitCondition, EngineError> {
        match s {
            "" | "not-running" => Ok(WaitCondition::NotRunning),
            "next-exit" => Ok(WaitCondition::NextExit),
            "removed" => Ok(WaitCondition::Removed),
            _ => Err(EngineError::Invalid(format!(
                "invalid wait condition {s:?}: use not-running, next-exit or removed"
            ))),
        }
    }
}

/// What a wait ended with.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The container's exit code (its last one, for `removed`).
    pub exit_code: i32,
    /// The record, unless the container is gone.
    pub record: Option<Record>,
}

/// A wait on one container, subscribed when it is made: an exit or a
/// removal from then on is seen, however soon it comes.
pub struct Waiter {
    id: String,
    follower: Follower,
    /// Read from the log, not yet looked at.
    pending: Vec<crate::events::Event>,
    exit_code: i32,
}

fn running(r: &Record) -> bool {
    matches!(r.state, State::Running | State::Paused | State::Restarting)
}

impl Engine {
    /// Subscribes to container `key`'s exits and removal.
    pub fn waiter(&mut self, key: &str) -> Result<Waiter, EngineError> {
        let follower = Follower::from_now(&self.paths.runroot);
        let rec = self.get(key)?;
        Ok(Waiter {
            id: rec.id,
            follower,
            pending: Vec::new(),
            exit_code: rec.exit_code,
        })
    }

    /// Waits for `condition` on container `key`: its exit code, or None if
    /// `limit` passed first.
    pub fn wait(
        &mut self,
        key: &str,
        condition: WaitCondition,
        limit: Option<Duration>,
    ) -> Result<Option<i32>, EngineError> {
        let mut w = self.waiter(key)?;
        Ok(w.wait(self, condition, limit)?.map(|o| o.exit_code))
    }
}

impl Engine {
    /// Waits for the container to stop and returns its exit code, also
    /// when `--rm` removed it meanwhile; None if `limit` passed first.
    pub fn wait_code(
        &mut self,
        id: &str,
        limit: Option<Duration>,
    ) -> Result<Option<i32>, EngineError> {
        match self.wait(id, crate::wait::WaitCondition::NotRunning, limit) {
            Err(EngineError::NoSuchContainer(n)) => std::fs::read_to_string(self.exit_file(id))
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .map(Some)
                .ok_or(EngineError::NoSuchContainer(n)),
            r => r,
        }
    }

    /// Waits until the container is not running (its exit recorded);
    /// `None` if `limit` passed first; NoSuchContainer if it was removed.
    pub fn wait_exit(
        &mut self,
        id: &str,
        limit: Option<Duration>,
    ) -> Result<Option<Record>, EngineError> {
        let mut w = self.waiter(id)?;
        match w.wait(self, crate::wait::WaitCondition::NotRunning, limit)? {
            None => Ok(None),
            Some(o) => o
                .record
                .map(Some)
                .ok_or_else(|| EngineError::NoSuchContainer(id.to_string())),
        }
    }
}

impl Waiter {
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Waits for `condition`; None if `limit` passed first.
    pub fn wait(
        &mut self,
        eng: &mut Engine,
        condition: WaitCondition,
        limit: Option<Duration>,
    ) -> Result<Option<Outcome>, EngineError> {
        // A limit past what a clock can hold is no limit.
        let deadline = limit.and_then(|l| Instant::now().checked_add(l));
        // A monitor whose pidfd has fired: not watched again.
        let mut fired: Option<i32> = None;
        loop {
            let mut events = std::mem::take(&mut self.pending);
            events.extend(self.follower.poll());
            for e in events {
                if e.typ != "container" || e.actor.id != self.id {
                    continue;
                }
                match e.action.as_str() {
                    "die" => {
                        if let Some(c) = e.actor.attributes.get("exitCode") {
                            self.exit_code = c.parse().unwrap_or(self.exit_code);
                        }
                        if condition == WaitCondition::NextExit {
                            let record = eng.db.get(&self.id)?;
                            return Ok(Some(Outcome {
                                exit_code: self.exit_code,
                                record,
                            }));
                        }
                    }
                    "destroy" => return Ok(Some(self.gone(eng))),
                    _ => {}
                }
            }
            let rec = match eng.db.get(&self.id)? {
                Some(r) => match eng.reconcile(r) {
                    Ok(r) => Some(r),
                    Err(EngineError::NoSuchContainer(_)) => None,
                    Err(e) => return Err(e),
                },
                None => None,
            };
            let Some(rec) = rec else {
                // Removed (`--rm`, or by someone): every condition holds.
                return Ok(Some(self.gone(eng)));
            };
            if !running(&rec) {
                self.exit_code = rec.exit_code;
                if condition == WaitCondition::NotRunning {
                    return Ok(Some(Outcome {
                        exit_code: rec.exit_code,
                        record: Some(rec),
                    }));
                }
            }
            let mut wait = RECHECK;
            if let Some(d) = deadline {
                let now = Instant::now();
                if now >= d {
                    return Ok(None);
                }
                wait = wait.min(d - now);
            }
            let pidfd = (running(&rec) && fired != Some(rec.monitor_pid))
                .then(|| crate::watch::pidfd(rec.monitor_pid, rec.monitor_start))
                .flatten();
            use std::os::fd::AsFd;
            self.pending = self.follower.wait(wait, pidfd.as_ref().map(|f| f.as_fd()));
            if pidfd.as_ref().is_some_and(|f| exited(f.as_fd())) {
                fired = Some(rec.monitor_pid);
            }
        }
    }

    /// The container is gone: its exit code as kept for `--rm`, else the
    /// last one seen.
    fn gone(&self, eng: &Engine) -> Outcome {
        let kept = std::fs::read_to_string(eng.exit_file(&self.id))
            .ok()
            .and_then(|s| s.trim().parse().ok());
        Outcome {
            exit_code: kept.unwrap_or(self.exit_code),
            record: None,
        }
    }
}

/// Whether a pidfd says its process has exited.
fn exited(fd: std::os::fd::BorrowedFd<'_>) -> bool {
    let mut fds = [rustix::event::PollFd::new(
        &fd,
        rustix::event::PollFlags::IN,
    )];
    let zero = rustix::event::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    rustix::event::poll(&mut fds, Some(&zero)).unwrap_or(0) > 0
}
