//! `/containers/{id}/exec` and `/exec/{id}/...`: an exec instance is made,
//! then started hijacked (its keeper's socket joined to the connection)
//! or detached, then inspected for its exit code, which is recorded
//! before the stream closes.

use std::sync::Arc;

use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::json;

use crate::route::ExecOp;
use crate::{empty, json, ApiError, Call, Daemon, Reply};

pub(super) async fn create(d: &Arc<Daemon>, container: String, call: Call) -> Reply {
    let body: berth_service::exec::ExecCreateBody = crate::read_json(call.req, 1 << 20).await?;
    let id = d
        .engine(move |eng| Ok(berth_service::exec::create(eng, &container, body)?))
        .await?;
    Ok(json(201, &json!({"Id": id})))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
struct StartBody {
    detach: bool,
    tty: bool,
    console_size: Option<Vec<u16>>,
}

pub(super) async fn op(d: &Arc<Daemon>, id: String, op: ExecOp, mut call: Call) -> Reply {
    match op {
        ExecOp::Inspect => {
            let v = d
                .engine(move |eng| Ok(berth_service::exec::inspect(eng, &id)?))
                .await?;
            Ok(json(200, &v))
        }
        ExecOp::Resize => {
            let (h, w) = super::containers::size(&call.query)?;
            d.engine(move |eng| Ok(eng.resize_exec(&id, h, w)?)).await?;
            Ok(empty(200))
        }
        ExecOp::Start => {
            let conn = call.req.extensions().get::<crate::ConnFd>().copied();
            let on_upgrade = hyper::upgrade::on(&mut call.req);
            let body: StartBody = crate::read_json(call.req, 1 << 20).await?;
            // A missing or started exec is an error before any hijack.
            let info = d
                .engine({
                    let id = id.clone();
                    move |eng| Ok(berth_service::exec::inspect(eng, &id)?)
                })
                .await?;
            if info.running || info.exit_code.is_some() || info.pid != 0 {
                return Err(ApiError::new(
                    409,
                    format!("exec {id} has been started already"),
                ));
            }
            if body.detach {
                d.engine(move |eng| Ok(berth_engine::exec::start_detached(eng, &id)?))
                    .await?;
                return Ok(json(200, &json!({})));
            }
            let tty = body.tty || info.process_config.tty;
            let size = body
                .console_size
                .filter(|s| s.len() == 2 && s[0] > 0 && s[1] > 0)
                .map(|s| (s[0], s[1]));
            let (sock_tx, sock_rx) = tokio::sync::oneshot::channel();
            let (done_tx, done_rx) = tokio::sync::oneshot::channel::<Result<(), ApiError>>();
            let paths = d.paths.clone();
            tokio::task::spawn_blocking(move || {
                let r = (|| -> Result<(), ApiError> {
                    let mut eng = berth_engine::Engine::open(&paths)?;
                    berth_engine::exec::start_attached(&mut eng, &id, size, |s| {
                        let _ = sock_tx.send(s);
                    })?;
                    Ok(())
                })();
                let _ = done_tx.send(r);
            });
            tokio::spawn(async move {
                let Ok(upgraded) = on_upgrade.await else {
                    return;
                };
                let client = TokioIo::new(upgraded);
                let sock = sock_rx.await.ok().flatten();
                match sock {
                    Some(s) => {
                        let want = super::attach::Wanted {
                            stdin: info.open_stdin,
                            stdout: true,
                            stderr: true,
                            detach_keys: berth_engine::attach::DETACH_KEYS.to_vec(),
                            close_stdin: true,
                        };
                        // The keeper reports a failed start before it
                        // closes the connection: its words go to the
                        // client's stderr, as docker's daemon sends them.
                        let failure = async {
                            match done_rx.await {
                                Ok(Err(e)) => Some(e),
                                _ => None,
                            }
                        };
                        tokio::select! {
                            _ = super::attach::relay_or_fail(client, s, tty, want, failure) => {}
                            _ = crate::gone(conn) => {}
                        }
                    }
                    None => {
                        let e = match done_rx.await {
                            Ok(Err(e)) => e,
                            _ => ApiError::new(500, "the exec's keeper did not start"),
                        };
                        super::attach::fail(client, tty, &e).await;
                    }
                }
            });
            Ok(super::attach::hijacked(tty))
        }
    }
}
