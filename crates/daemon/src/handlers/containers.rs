//! `/containers/...`.

use std::sync::Arc;

use bytes::Bytes;
use hyper::Response;
use serde_json::json;

use crate::route::ContainerOp;
use crate::{empty, json, ApiError, Body, Call, Daemon, Reply};

/// JSON request bodies past this are refused (413).
const JSON_LIMIT: usize = 4 << 20;

pub(super) async fn list(d: &Arc<Daemon>, call: Call) -> Reply {
    let q = &call.query;
    let limit = q.int("limit")?.filter(|n| *n > 0).map(|n| n as usize);
    let opts = berth_service::containers::ListOptions {
        all: q.bool("all") || limit.is_some(),
        limit,
        filters: q.filters()?,
    };
    let list = d
        .engine(move |eng| Ok(berth_service::containers::list(eng, &opts)?))
        .await?;
    Ok(json(200, &list))
}

pub(super) async fn create(d: &Arc<Daemon>, call: Call) -> Reply {
    let name = call.query.get("name").filter(|n| !n.is_empty());
    let name = name.map(|n| n.trim_start_matches('/').to_string());
    let body: berth_service::create::CreateBody = crate::read_json(call.req, JSON_LIMIT).await?;
    let req = body.into_request_with(name, &d.defaults)?;
    let rec = d
        .engine(move |eng| {
            Ok(berth_service::containers::create(
                eng,
                req,
                &berth_registry_client::progress::Quiet,
            )?)
        })
        .await?;
    Ok(json(201, &json!({"Id": rec.id, "Warnings": []})))
}

pub(super) async fn prune(d: &Arc<Daemon>) -> Reply {
    let report = d
        .engine(|eng| Ok(berth_service::containers::prune(eng)?))
        .await?;
    Ok(json(
        200,
        &json!({
            "ContainersDeleted": report.containers_deleted,
            "SpaceReclaimed": 0,
        }),
    ))
}

fn signal(q: &crate::query::Query, key: &str) -> Result<Option<i32>, ApiError> {
    match q.get(key) {
        None | Some("") => Ok(None),
        Some(s) => berth_engine::parse_signal(s)
            .map(Some)
            .map_err(|e| ApiError::bad_request(e.to_string())),
    }
}

pub(super) async fn op(d: &Arc<Daemon>, id: String, op: ContainerOp, call: Call) -> Reply {
    let q = call.query.clone();
    match op {
        ContainerOp::Inspect => {
            let v = d
                .engine(move |eng| {
                    let r = eng.get(&id)?;
                    Ok(berth_service::containers::inspect(eng, &r))
                })
                .await?;
            Ok(json(200, &v))
        }
        ContainerOp::Delete => {
            let (force, volumes) = (q.bool("force"), q.bool("v"));
            d.engine(move |eng| Ok(eng.remove(&id, force, volumes)?))
                .await?;
            Ok(empty(204))
        }
        ContainerOp::Start => {
            let daemon = d.clone();
            d.owned_engine(move |mut eng| {
                let full = eng.get(&id)?.id;
                let waiting = daemon.take_attaches(&full);
                if waiting.is_empty() {
                    return Ok(berth_service::containers::start(eng, &id)?);
                }
                let n = waiting.len();
                Ok(berth_service::containers::start_attached(
                    eng,
                    &full,
                    n,
                    |streams| {
                        for (tx, s) in waiting.into_iter().zip(streams) {
                            let _ = tx.send(s);
                        }
                    },
                )?)
            })
            .await?;
            Ok(empty(204))
        }
        ContainerOp::Stop | ContainerOp::Restart => {
            let t = q.int("t")?;
            let sig = signal(&q, "signal")?;
            d.owned_engine(move |mut eng| {
                if op == ContainerOp::Stop {
                    eng.stop(&id, t, sig)?;
                    Ok(())
                } else {
                    Ok(berth_service::containers::restart(eng, &id, t, sig)?)
                }
            })
            .await?;
            Ok(empty(204))
        }
        ContainerOp::Kill => {
            let sig = signal(&q, "signal")?.unwrap_or(libc_sigkill());
            d.engine(move |eng| Ok(eng.kill(&id, sig)?)).await?;
            Ok(empty(204))
        }
        ContainerOp::Pause | ContainerOp::Unpause => {
            let paused = op == ContainerOp::Pause;
            d.engine(move |eng| Ok(eng.set_paused(&id, paused)?))
                .await?;
            Ok(empty(204))
        }
        ContainerOp::Rename => {
            let new = q
                .get("name")
                .filter(|n| !n.is_empty())
                .ok_or_else(|| ApiError::bad_request("rename needs a new name: ?name="))?
                .trim_start_matches('/')
                .to_string();
            d.engine(move |eng| Ok(eng.rename(&id, &new)?)).await?;
            Ok(empty(204))
        }
        ContainerOp::Wait => wait(d, id, &q).await,
        ContainerOp::Update => {
            let body: berth_service::create::UpdateBody =
                crate::read_json(call.req, JSON_LIMIT).await?;
            let u = body.into_update()?;
            d.engine(move |eng| Ok(eng.update(&id, &u)?)).await?;
            Ok(json(200, &json!({"Warnings": []})))
        }
        ContainerOp::Export => export(d, id).await,
        ContainerOp::Resize => {
            let (h, w) = size(&q)?;
            d.engine(move |eng| Ok(eng.resize(&id, h, w)?)).await?;
            Ok(empty(200))
        }
        ContainerOp::Logs => logs(d, id, &q).await,
        ContainerOp::Stats => stats(d, id, &q).await,
        ContainerOp::Top => {
            let ps: Vec<String> = q
                .get("ps_args")
                .filter(|a| !a.is_empty())
                .map(|a| a.split_whitespace().map(String::from).collect())
                .unwrap_or_default();
            let (header, rows) = d.engine(move |eng| Ok(eng.top(&id, &ps)?)).await?;
            let titles: Vec<&str> = header.split_whitespace().collect();
            let n = titles.len().max(1);
            let procs: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    // The last column (the command) keeps its spaces.
                    let mut cols: Vec<String> = Vec::new();
                    let mut rest = r.trim_start();
                    while cols.len() + 1 < n {
                        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
                        cols.push(rest[..end].to_string());
                        rest = rest[end..].trim_start();
                    }
                    cols.push(rest.to_string());
                    cols
                })
                .collect();
            Ok(json(200, &json!({"Titles": titles, "Processes": procs})))
        }
        ContainerOp::Changes => {
            let changes = d
                .engine(move |eng| Ok(berth_engine::changes::diff(eng, &id)?))
                .await?;
            let v: Vec<_> = changes
                .iter()
                .map(|c| {
                    let kind = match c.kind.letter() {
                        'C' => 0,
                        'A' => 1,
                        _ => 2,
                    };
                    json!({"Path": c.path, "Kind": kind})
                })
                .collect();
            Ok(json(200, &v))
        }
        other => Err(crate::unserved(&crate::route::Route::Container(id, other))),
    }
}

/// A resize's `h` and `w`.
pub(super) fn size(q: &crate::query::Query) -> Result<(u16, u16), ApiError> {
    let dim = |k: &str| -> Result<u16, ApiError> {
        q.int(k)?
            .and_then(|n| u16::try_from(n).ok())
            .ok_or_else(|| ApiError::bad_request(format!("{k} must be a number from 0 to 65535")))
    };
    Ok((dim("h")?, dim("w")?))
}

fn libc_sigkill() -> i32 {
    9
}

/// `POST /containers/{id}/wait`: the status line goes out at once (the
/// docker CLI waits for it before it starts the container), the body
/// when the condition holds. The waiter subscribes before the answer
/// goes, so an exit right after is not missed.
async fn wait(d: &Arc<Daemon>, id: String, q: &crate::query::Query) -> Reply {
    use berth_service::containers::WaitCondition;
    let condition = match q.get("condition").unwrap_or("") {
        "" | "not-running" => WaitCondition::NotRunning,
        "next-exit" => WaitCondition::NextExit,
        "removed" => WaitCondition::Removed,
        other => {
            return Err(ApiError::bad_request(format!(
                "invalid condition: {other:?}: use not-running, next-exit or removed"
            )))
        }
    };
    let permit = d.stream_permit()?;
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<Result<(), ApiError>>();
    let (tx, body) = Body::channel();
    let paths = d.paths.clone();
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let probe = tx.clone();
        let alive = move || !probe.is_closed();
        let answer = (|| -> Result<_, ApiError> {
            let mut eng = berth_engine::Engine::open(&paths)?;
            match berth_service::containers::waiter(&mut eng, &id) {
                Ok(w) => {
                    let _ = ready_tx.send(Ok(()));
                    // None: the client went; nobody to answer.
                    match berth_service::containers::wait_on_while(&mut eng, w, condition, &alive)?
                    {
                        Some(r) => Ok(r),
                        None => Err(ApiError::new(499, "the client went away")),
                    }
                }
                // Gone already: the code `--rm` kept, or not found.
                Err(_) if condition == WaitCondition::NotRunning => {
                    let r = berth_service::containers::wait(&mut eng, &id, condition);
                    match r {
                        Ok(r) => {
                            let _ = ready_tx.send(Ok(()));
                            Ok(r)
                        }
                        Err(e) => {
                            let e: ApiError = e.into();
                            let _ = ready_tx.send(Err(e.clone()));
                            Err(e)
                        }
                    }
                }
                Err(e) => {
                    let e: ApiError = e.into();
                    let _ = ready_tx.send(Err(e.clone()));
                    Err(e)
                }
            }
        })();
        let body = match answer {
            Ok(r) => serde_json::to_vec(&r).unwrap_or_default(),
            Err(e) => {
                serde_json::to_vec(&json!({"StatusCode": -1, "Error": {"Message": e.message}}))
                    .unwrap_or_default()
            }
        };
        let _ = tx.blocking_send(Bytes::from(body));
    });
    match ready_rx.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e),
        Err(_) => return Err(ApiError::new(500, "the wait failed")),
    }
    Ok(Response::builder()
        .status(200)
        .header("Content-Type", "application/json")
        .body(body)
        .expect("a valid response"))
}

/// `GET /containers/{id}/logs`: the entries asked for, framed as docker's
/// multiplexed stream (raw for a tty container); with `follow`, until the
/// container stops or the client goes.
pub(super) async fn logs(d: &Arc<Daemon>, id: String, q: &crate::query::Query) -> Reply {
    use berth_service::containers::{parse_tail, parse_time, LogsOptions};
    let (stdout, stderr) = (q.bool("stdout"), q.bool("stderr"));
    if !stdout && !stderr {
        return Err(ApiError::bad_request(
            "Bad parameters: you must choose at least one stream",
        ));
    }
    let time = |k: &str| -> Result<_, ApiError> {
        match q.get(k) {
            None | Some("") | Some("0") => Ok(None),
            Some(t) => Ok(Some(parse_time(t)?)),
        }
    };
    let opts = LogsOptions {
        since: time("since")?,
        until: time("until")?,
        tail: parse_tail(q.get("tail").filter(|t| !t.is_empty()).unwrap_or("all"))?,
        follow: q.bool("follow"),
    };
    let timestamps = q.bool("timestamps");
    let rec = d
        .engine(move |eng| Ok(berth_service::containers::logs_of(eng, &id)?))
        .await?;
    let tty = rec.config.tty;
    let permit = d.stream_permit()?;
    let (tx, body) = Body::channel();
    let paths = d.paths.clone();
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let Ok(mut eng) = berth_engine::Engine::open(&paths) else {
            return;
        };
        let probe = tx.clone();
        let mut sink =
            |e: &berth_engine::logs::Entry| match log_chunk(e, tty, timestamps, stdout, stderr) {
                None => true,
                Some(chunk) => tx.blocking_send(Bytes::from(chunk)).is_ok(),
            };
        let alive = || !probe.is_closed();
        let _ = berth_service::containers::logs_while(&mut eng, &rec.id, &opts, &mut sink, &alive);
    });
    let content_type = if tty {
        "application/vnd.docker.raw-stream"
    } else {
        "application/vnd.docker.multiplexed-stream"
    };
    Ok(Response::builder()
        .status(200)
        .header("Content-Type", content_type)
        .body(body)
        .expect("a valid response"))
}

/// One log entry as a logs or attach stream carries it: raw with a tty,
/// framed by stream without; None for a stream not asked for.
pub(super) fn log_chunk(
    e: &berth_engine::logs::Entry,
    tty: bool,
    timestamps: bool,
    stdout: bool,
    stderr: bool,
) -> Option<Vec<u8>> {
    let is_err = e.stream == "stderr";
    if (is_err && !stderr) || (!is_err && !stdout) {
        return None;
    }
    let mut line = Vec::with_capacity(e.log.len() + 40);
    if timestamps {
        line.extend_from_slice(e.time.as_bytes());
        line.push(b' ');
    }
    line.extend_from_slice(e.log.as_bytes());
    if tty {
        return Some(line);
    }
    use berth_engine::stream::{frame, Stream};
    let s = if is_err {
        Stream::Stderr
    } else {
        Stream::Stdout
    };
    Some(frame(s, &line))
}

/// `GET /containers/{id}/stats`: samples of the container's resource use
/// as JSON, one a second (`stream`, the default), or one answer: with
/// `one-shot` a single sample, otherwise two a second apart so the CPU
/// share can be computed from `precpu_stats`, as docker's daemon does.
pub(super) async fn stats(d: &Arc<Daemon>, id: String, q: &crate::query::Query) -> Reply {
    let stream = q.get("stream").is_none_or(|_| q.bool("stream"));
    let one_shot = q.bool("one-shot");
    // A missing container is a 404 before any stream starts.
    let first = d
        .engine({
            let id = id.clone();
            move |eng| Ok(eng.stats(&id)?)
        })
        .await?;
    let view = |(id, name, s): &(String, String, berth_engine::stats::Sample),
                pre: Option<&berth_engine::stats::Sample>| {
        let mut v = serde_json::to_value(s).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.insert("id".into(), json!(id));
            o.insert("name".into(), json!(format!("/{name}")));
            o.insert(
                "preread".into(),
                json!(pre.map_or("0001-01-01T00:00:00Z".to_string(), |p| p.read.clone())),
            );
            o.insert(
                "precpu_stats".into(),
                pre.map_or(
                    json!({"cpu_usage": {"total_usage": 0}, "throttling_data": {}}),
                    |p| serde_json::to_value(&p.cpu_stats).unwrap_or_default(),
                ),
            );
            o.insert("storage_stats".into(), json!({}));
        }
        v
    };
    if !stream {
        let answer = if one_shot {
            view(&first, None)
        } else {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            let second = d.engine(move |eng| Ok(eng.stats(&id)?)).await?;
            view(&second, Some(&first.2))
        };
        return Ok(json(200, &answer));
    }
    let permit = d.stream_permit()?;
    let (tx, body) = Body::channel();
    let daemon = d.clone();
    tokio::spawn(async move {
        let _permit = permit;
        let mut pre: Option<berth_engine::stats::Sample> = None;
        let mut cur = first;
        loop {
            let mut line = serde_json::to_vec(&view(&cur, pre.as_ref())).unwrap_or_default();
            line.push(b'\n');
            if tx.send(Bytes::from(line)).await.is_err() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            let key = cur.0.clone();
            let next = match daemon.engine(move |eng| Ok(eng.stats(&key)?)).await {
                Ok(n) => n,
                // Removed: the stream ends.
                Err(_) => return,
            };
            pre = Some(std::mem::replace(&mut cur, next).2);
        }
    });
    Ok(Response::builder()
        .status(200)
        .header("Content-Type", "application/json")
        .body(body)
        .expect("a valid response"))
}

/// `GET /containers/{id}/export`: the container's file system as a tar
/// stream; a failure midway breaks the stream off (never a short archive
/// that looks whole).
async fn export(d: &Arc<Daemon>, id: String) -> Reply {
    // A missing container is a 404 before anything streams.
    let id = d.engine(move |eng| Ok(eng.get(&id)?.id)).await?;
    crate::tar_stream(d, format!("export of {id}"), move |paths, w| {
        let mut eng = berth_engine::Engine::open(paths).map_err(|e| e.to_string())?;
        berth_engine::cp::export(&mut eng, &id, w).map_err(|e| e.to_string())
    })
}
