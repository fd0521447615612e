//! Exec instances as the Engine API has them: made (`POST
//! /containers/{id}/exec`), started attached or detached, inspected for
//! their exit code.

use berth_engine::exec::ExecConfig;
use berth_engine::Engine;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The body of `POST /containers/{id}/exec`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct ExecCreateBody {
    pub attach_stdin: bool,
    pub attach_stdout: bool,
    pub attach_stderr: bool,
    pub tty: bool,
    pub cmd: Option<Vec<String>>,
    pub env: Option<Vec<String>>,
    pub user: String,
    pub working_dir: String,
    pub privileged: bool,
    pub detach_keys: String,
}

/// Makes an exec instance in container `key`; returns its id.
pub fn create(eng: &mut Engine, key: &str, body: ExecCreateBody) -> Result<String> {
    let cmd = body.cmd.unwrap_or_default();
    if cmd.is_empty() {
        return Err(Error::invalid("No exec command specified"));
    }
    let cfg = ExecConfig {
        cmd,
        env: body.env.unwrap_or_default(),
        user: (!body.user.is_empty()).then_some(body.user),
        workdir: (!body.working_dir.is_empty()).then_some(body.working_dir),
        tty: body.tty,
        interactive: body.attach_stdin,
        privileged: body.privileged,
    };
    Ok(berth_engine::exec::create(eng, key, &cfg)?)
}

/// The Engine API's `ExecInspectResponse`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ExecInspect {
    #[serde(rename = "ID")]
    pub id: String,
    pub running: bool,
    pub exit_code: Option<i32>,
    pub process_config: ProcessConfig,
    pub open_stdin: bool,
    pub open_stderr: bool,
    pub open_stdout: bool,
    pub can_remove: bool,
    #[serde(rename = "ContainerID")]
    pub container_id: String,
    pub detach_keys: String,
    pub pid: i32,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcessConfig {
    pub privileged: bool,
    pub user: String,
    pub tty: bool,
    pub entrypoint: String,
    pub arguments: Vec<String>,
}

/// Exec instance `id` as inspect shows it.
pub fn inspect(eng: &Engine, id: &str) -> Result<ExecInspect> {
    let e = eng
        .db
        .get_exec(id)?
        .ok_or_else(|| Error::not_found(format!("No such exec instance: {id}")))?;
    let p: oci_spec::runtime::Process = serde_json::from_str(&e.config).unwrap_or_default();
    let args = p.args().clone().unwrap_or_default();
    let user = p.user();
    Ok(ExecInspect {
        id: e.id,
        running: e.running,
        exit_code: e.exit_code,
        process_config: ProcessConfig {
            privileged: false,
            user: if user.uid() == 0 && user.gid() == 0 {
                String::new()
            } else {
                format!("{}:{}", user.uid(), user.gid())
            },
            tty: p.terminal().unwrap_or(false),
            entrypoint: args.first().cloned().unwrap_or_default(),
            arguments: args.iter().skip(1).cloned().collect(),
        },
        open_stdin: e.open_stdin,
        open_stderr: true,
        open_stdout: true,
        can_remove: false,
        container_id: e.container,
        detach_keys: String::new(),
        // -1: claimed by a start, not running yet.
        pid: e.pid.max(0),
    })
}
