//! `/containers/{id}/archive` (HEAD, GET, PUT): what `docker cp` uses.
//! The container's side is the engine's cp (a helper chrooted into the
//! container); the stat docker wants in `X-Docker-Container-Path-Stat` is
//! read from the first entry of the archive the engine makes.

use std::io::Read;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::json;

use crate::{empty, ApiError, Call, Daemon, Reply};

/// Bytes of an archive read before its first entry's header must have
/// been seen (long names and PAX headers included).
const HEADER_LIMIT: usize = 1 << 20;

/// Go's `os.FileMode` bits for a directory and a symlink.
const GO_DIR: u32 = 1 << 31;
const GO_SYMLINK: u32 = 1 << 27;

/// The stat of an archive's first entry, as docker's `PathStat`; None
/// if more bytes are needed.
fn first_entry_stat(prefix: &[u8], complete: bool) -> Result<Option<serde_json::Value>, String> {
    let mut ar = tar::Archive::new(std::io::Cursor::new(prefix));
    let mut entries = ar.entries().map_err(|e| e.to_string())?;
    match entries.next() {
        None if complete => Err("the archive is empty".into()),
        None => Ok(None),
        Some(Err(_)) if !complete => Ok(None),
        Some(Err(e)) => Err(e.to_string()),
        Some(Ok(e)) => {
            let h = e.header();
            let name = e
                .path()
                .map(|p| {
                    p.file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_else(|| "/".into())
                })
                .unwrap_or_default();
            let mut mode = h.mode().unwrap_or(0) & 0o7777;
            let kind = h.entry_type();
            if kind.is_dir() {
                mode |= GO_DIR;
            } else if kind.is_symlink() {
                mode |= GO_SYMLINK;
            }
            let mtime = h.mtime().unwrap_or(0);
            let mtime = chrono::DateTime::from_timestamp(mtime as i64, 0)
                .unwrap_or_default()
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            let link = e
                .link_name()
                .ok()
                .flatten()
                .map(|l| l.to_string_lossy().into_owned())
                .unwrap_or_default();
            Ok(Some(json!({
                "name": name,
                "size": h.size().unwrap_or(0),
                "mode": mode,
                "mtime": mtime,
                "linkTarget": link,
            })))
        }
    }
}

/// The container path an archive request names (`?path=`).
fn path_param(q: &crate::query::Query) -> Result<String, ApiError> {
    q.get("path")
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .ok_or_else(|| ApiError::bad_request("path is required: ?path="))
}

/// HEAD and GET: the stat header, and for GET the archive.
pub(super) async fn get(d: &Arc<Daemon>, id: String, call: Call, head: bool) -> Reply {
    let path = path_param(&call.query)?;
    let permit = d.stream_permit()?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(crate::body::STREAM_DEPTH);
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<Result<(), ApiError>>();
    let paths = d.paths.clone();
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let r = (|| -> Result<(), ApiError> {
            let mut eng = berth_engine::Engine::open(&paths)?;
            let mut out = std::io::BufWriter::new(crate::bridge::ChannelWriter::new(tx));
            berth_engine::cp::copy(
                &mut eng,
                &id,
                &berth_engine::cp::Side::Container(path),
                &berth_engine::cp::Side::Stream,
                &berth_engine::cp::CpOptions {
                    archive: true,
                    follow: false,
                },
                berth_engine::cp::Streams {
                    input: &mut std::io::empty(),
                    output: &mut out,
                },
            )?;
            std::io::Write::flush(&mut out)
                .map_err(|e| ApiError::new(500, format!("sending the archive: {e}")))?;
            Ok(())
        })();
        let _ = done_tx.send(r);
    });
    // Read until the first entry's header is known.
    let mut prefix = Vec::new();
    let stat = loop {
        let chunk = rx.recv().await;
        let complete = chunk.is_none();
        if let Some(c) = chunk {
            prefix.extend_from_slice(&c);
        }
        if complete && prefix.is_empty() {
            // Nothing came: the copy's own error says why.
            return Err(match done_rx.await {
                Ok(Err(e)) => e,
                _ => ApiError::new(500, "the copy ended with nothing"),
            });
        }
        match first_entry_stat(&prefix, complete) {
            Ok(Some(s)) => break s,
            Ok(None) if prefix.len() < HEADER_LIMIT => continue,
            Ok(None) => return Err(ApiError::new(500, "the archive's first header is too long")),
            Err(e) => return Err(ApiError::new(500, format!("the archive: {e}"))),
        }
    };
    use base64::Engine as _;
    let header = base64::engine::general_purpose::STANDARD.encode(stat.to_string());
    let builder = hyper::Response::builder()
        .status(200)
        .header("X-Docker-Container-Path-Stat", header)
        .header("Content-Type", "application/x-tar");
    if head {
        return Ok(builder
            .body(crate::Body::empty())
            .expect("a valid response"));
    }
    let (abort_tx, abort, body) = crate::Body::abortable();
    tokio::spawn(async move {
        if abort_tx.send(Bytes::from(prefix)).await.is_err() {
            return;
        }
        while let Some(c) = rx.recv().await {
            if abort_tx.send(c).await.is_err() {
                return;
            }
        }
        if !matches!(done_rx.await, Ok(Ok(()))) {
            abort.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        drop(abort_tx);
    });
    Ok(builder.body(body).expect("a valid response"))
}

/// PUT: the body's archive unpacked into the directory `path`.
pub(super) async fn put(d: &Arc<Daemon>, id: String, call: Call) -> Reply {
    let path = path_param(&call.query)?;
    let archive = call.query.bool("copyUIDGID");
    let permit = d.stream_permit()?;
    let mut reader = crate::bridge::BodyReader::new(call.req.into_body());
    let paths = d.paths.clone();
    tokio::task::spawn_blocking(move || -> Result<(), ApiError> {
        let _permit = permit;
        let mut eng = berth_engine::Engine::open(&paths)?;
        let dest = if path.ends_with('/') {
            path
        } else {
            format!("{path}/")
        };
        let r = berth_engine::cp::copy(
            &mut eng,
            &id,
            &berth_engine::cp::Side::Stream,
            &berth_engine::cp::Side::Container(dest),
            &berth_engine::cp::CpOptions {
                archive,
                follow: false,
            },
            berth_engine::cp::Streams {
                input: &mut reader,
                output: &mut std::io::sink(),
            },
        );
        // Whatever the copy left unread is drained, so the client gets
        // its answer.
        let _ = std::io::copy(&mut reader.by_ref().take(u64::MAX), &mut std::io::sink());
        Ok(r?)
    })
    .await
    .map_err(|e| ApiError::new(500, e.to_string()))??;
    Ok(empty(200))
}
