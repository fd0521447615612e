//! OCI hooks: programs run at points of the lifecycle with the container's
//! state on their standard input.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::Hook;

/// Why a hook failed.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("{stage} hook {path:?} cannot be started")]
    Spawn {
        stage: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{stage} hook {path:?} failed: {status}{stderr}")]
    Failed {
        stage: &'static str,
        path: String,
        status: String,
        stderr: String,
    },
    #[error("{stage} hook {path:?} timed out after {secs} s")]
    Timeout {
        stage: &'static str,
        path: String,
        secs: i64,
    },
}

/// Runs `hooks` in order, each with `state` (the OCI state JSON) on stdin;
/// stops at the first failure.
pub fn run(
    stage: &'static str,
    hooks: &[Hook],
    state: &serde_json::Value,
) -> Result<(), HookError> {
    let input = serde_json::to_vec(state).expect("state serializes");
    for h in hooks {
        run_one(stage, h, &input)?;
    }
    Ok(())
}

/// Runs every hook of `stage` even when some fail (poststart, poststop:
/// "the runtime MUST log a warning, but the remaining hooks and lifecycle
/// continue"); returns the failures.
pub fn run_all(stage: &'static str, hooks: &[Hook], state: &serde_json::Value) -> Vec<HookError> {
    let input = serde_json::to_vec(state).expect("state serializes");
    hooks
        .iter()
        .filter_map(|h| run_one(stage, h, &input).err())
        .collect()
}

fn run_one(stage: &'static str, h: &Hook, input: &[u8]) -> Result<(), HookError> {
    let path = h.path().display().to_string();
    let mut cmd = Command::new(h.path());
    if let Some(args) = h.args() {
        if let Some((argv0, rest)) = args.split_first() {
            std::os::unix::process::CommandExt::arg0(&mut cmd, argv0);
            cmd.args(rest);
        }
    }
    cmd.env_clear();
    for e in h.env().iter().flatten() {
        if let Some((k, v)) = e.split_once('=') {
            cmd.env(k, v);
        }
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|source| HookError::Spawn {
        stage,
        path: path.clone(),
        source,
    })?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its input must not fail the write.
        let _ = stdin.write_all(input);
    }
    let deadline = h
        .timeout()
        .filter(|t| *t > 0)
        .map(|t| Instant::now() + Duration::from_secs(t as u64));
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) => {}
            Err(source) => {
                return Err(HookError::Spawn {
                    stage,
                    path,
                    source,
                })
            }
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(HookError::Timeout {
                stage,
                path,
                secs: h.timeout().unwrap_or(0),
            });
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let out = child
        .wait_with_output()
        .map_err(|source| HookError::Spawn {
            stage,
            path: path.clone(),
            source,
        })?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    Err(HookError::Failed {
        stage,
        path,
        status: out.status.to_string(),
        stderr: if stderr.is_empty() {
            String::new()
        } else {
            format!(" ({stderr})")
        },
    })
}
