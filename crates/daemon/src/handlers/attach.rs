//! `POST /containers/{id}/attach`: the connection is hijacked (101
//! UPGRADED) and joined to the container's monitor, whose attach socket
//! speaks Docker's stream format already (multiplexed, raw with a tty).
//! An attach to a created container waits for its start: the start hands
//! it a connection made before the container runs, so no output is lost.

use std::os::unix::net::UnixStream;
use std::sync::Arc;

use hyper::Response;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{ApiError, Body, Call, Daemon, Reply};

/// What the client asked to see and send.
#[derive(Debug, Clone)]
pub(super) struct Wanted {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    /// With a tty, typing these on stdin ends the attach and leaves the
    /// container running (docker's ctrl-p ctrl-q by default).
    pub detach_keys: Vec<u8>,
    /// The end of the client's input closes the process's stdin (an exec;
    /// a `StdinOnce` container without a tty).
    pub close_stdin: bool,
}

pub(super) async fn attach(d: &Arc<Daemon>, id: String, mut call: Call) -> Reply {
    let q = &call.query;
    let want = Wanted {
        stdin: q.bool("stdin"),
        stdout: q.bool("stdout"),
        stderr: q.bool("stderr"),
        detach_keys: match q.get("detachKeys").filter(|k| !k.is_empty()) {
            Some(k) => berth_engine::attach::parse_detach_keys(k)
                .map_err(|e| ApiError::bad_request(e.to_string()))?,
            None => berth_engine::attach::DETACH_KEYS.to_vec(),
        },
        close_stdin: false,
    };
    let rec = d.engine(move |eng| Ok(eng.get(&id)?)).await?;
    let tty = rec.config.tty;
    let want = Wanted {
        close_stdin: rec.config.stdin_once && !tty,
        ..want
    };
    // `logs`: what the container wrote so far comes first; without
    // `stream`, only that.
    let past = if q.bool("logs") {
        Some(past_logs(d, &rec.id, tty, want.clone())?)
    } else {
        None
    };
    let stream = q.get("stream").is_none() || q.bool("stream");
    if !stream {
        let Some(mut past) = past else {
            return Ok(hijacked(tty));
        };
        let on_upgrade = hyper::upgrade::on(&mut call.req);
        tokio::spawn(async move {
            let Ok(upgraded) = on_upgrade.await else {
                return;
            };
            let mut io = TokioIo::new(upgraded);
            while let Some(chunk) = past.recv().await {
                if io.write_all(&chunk).await.is_err() {
                    return;
                }
            }
            let _ = io.shutdown().await;
        });
        return Ok(hijacked(tty));
    }
    let source = match rec.state {
        berth_engine::State::Paused => {
            return Err(ApiError::new(
                409,
                "You cannot attach to a paused container, unpause it first",
            ))
        }
        // A restart by the policy keeps the monitor and its socket.
        berth_engine::State::Running | berth_engine::State::Restarting => {
            let id = rec.id.clone();
            let s = d
                .engine(move |eng| {
                    UnixStream::connect(eng.attach_socket(&id)).map_err(|e| {
                        ApiError::new(500, format!("attach to container {id}: its monitor: {e}"))
                    })
                })
                .await?;
            let (tx, rx) = tokio::sync::oneshot::channel();
            let _ = tx.send(s);
            rx
        }
        _ => d.pending_attach(&rec.id)?,
    };
    let conn = call.req.extensions().get::<crate::ConnFd>().copied();
    let on_upgrade = hyper::upgrade::on(&mut call.req);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let mut io = TokioIo::new(upgraded);
        if let Some(mut past) = past {
            while let Some(chunk) = past.recv().await {
                if io.write_all(&chunk).await.is_err() {
                    return;
                }
            }
        }
        // A client that goes while it waits for the start is forgotten.
        let sock = tokio::select! {
            s = source => match s {
                Ok(s) => s,
                Err(_) => return,
            },
            _ = crate::gone(conn) => return,
        };
        tokio::select! {
            _ = relay_or_fail(io, sock, tty, want, async { None }) => {}
            _ = crate::gone(conn) => {}
        }
    });
    Ok(hijacked(tty))
}

/// The container's log so far, as the attach stream carries it, read by
/// a blocking task into a bounded channel (a client that does not read
/// holds the reader, not memory).
fn past_logs(
    d: &Arc<Daemon>,
    id: &str,
    tty: bool,
    want: Wanted,
) -> Result<tokio::sync::mpsc::Receiver<bytes::Bytes>, ApiError> {
    let permit = d.stream_permit()?;
    let (tx, rx) = tokio::sync::mpsc::channel(crate::body::STREAM_DEPTH);
    let paths = d.paths.clone();
    let id = id.to_string();
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let Ok(mut eng) = berth_engine::Engine::open(&paths) else {
            return;
        };
        let opts = berth_service::containers::LogsOptions {
            since: None,
            until: None,
            tail: None,
            follow: false,
        };
        let probe = tx.clone();
        let mut sink = |e: &berth_engine::logs::Entry| match super::containers::log_chunk(
            e,
            tty,
            false,
            want.stdout,
            want.stderr,
        ) {
            None => true,
            Some(c) => tx.blocking_send(bytes::Bytes::from(c)).is_ok(),
        };
        let alive = || !probe.is_closed();
        let _ = berth_service::containers::logs_while(&mut eng, &id, &opts, &mut sink, &alive);
    });
    Ok(rx)
}

/// The answer that hijacks the connection (101 UPGRADED): a raw stream
/// with a tty, docker's multiplexed one without.
pub(super) fn hijacked(tty: bool) -> Response<Body> {
    let content_type = if tty {
        "application/vnd.docker.raw-stream"
    } else {
        "application/vnd.docker.multiplexed-stream"
    };
    Response::builder()
        .status(101)
        .header("Content-Type", content_type)
        .header("Connection", "Upgrade")
        .header("Upgrade", "tcp")
        .body(Body::empty())
        .expect("a valid response")
}

/// An error told to a hijacked client (on its stderr; raw with a tty),
/// then its connection closed.
pub(super) async fn fail<C>(mut client: C, tty: bool, e: &ApiError)
where
    C: tokio::io::AsyncWrite + Unpin,
{
    let _ = client.write_all(&error_bytes(tty, e)).await;
    let _ = client.shutdown().await;
}

fn error_bytes(tty: bool, e: &ApiError) -> Vec<u8> {
    let text = format!("{}\r\n", e.message);
    if tty {
        text.into_bytes()
    } else {
        berth_engine::stream::frame(berth_engine::stream::Stream::Stderr, text.as_bytes())
    }
}

/// Copies the container's output to the client (only the streams it
/// asked for) until the monitor closes it, and the client's input to the
/// container's stdin when it asked to send it. The client's end of input
/// is passed on as a half-close (the monitor closes the container's stdin
/// for a `StdinOnce` container). When the output ends, `failure` says
/// whether the process failed to start; its words go to the client.
pub(super) async fn relay_or_fail<C>(
    client: C,
    sock: UnixStream,
    tty: bool,
    want: Wanted,
    failure: impl std::future::Future<Output = Option<ApiError>>,
) where
    C: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    if sock.set_nonblocking(true).is_err() {
        return;
    }
    let Ok(sock) = tokio::net::UnixStream::from_std(sock) else {
        return;
    };
    let (mut sr, mut sw) = sock.into_split();
    let (mut cr, mut cw) = tokio::io::split(client);
    // Ends only when the client types the detach keys (with a tty, as
    // docker's).
    let keys: &[u8] = if tty { &want.detach_keys } else { &[] };
    let input = async {
        if want.stdin {
            let mut buf = vec![0u8; 32 * 1024];
            let mut held: Vec<u8> = Vec::new();
            loop {
                let n = match cr.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let mut out = Vec::with_capacity(n + held.len());
                for &b in &buf[..n] {
                    if keys.is_empty() {
                        out.push(b);
                        continue;
                    }
                    if b != keys[held.len()] {
                        // Not the keys after all: what was held goes on.
                        out.append(&mut held);
                    }
                    if b == keys[held.len()] {
                        held.push(b);
                        if held.len() == keys.len() {
                            if !out.is_empty() {
                                let _ = sw.write_all(&out).await;
                            }
                            return;
                        }
                    } else {
                        out.push(b);
                    }
                }
                if !out.is_empty() && sw.write_all(&out).await.is_err() {
                    break;
                }
            }
            // docker's rule: the end of a client's input closes the
            // container's stdin when that was asked for (and the output
            // goes on to the end); otherwise it ends the attach.
            if !want.close_stdin {
                return;
            }
            let _ = sw.shutdown().await;
        }
        // Without stdin the monitor never hears from this client; wait
        // for the output side to end.
        std::future::pending::<()>().await
    };
    let all = tty || (want.stdout && want.stderr);
    let output = async {
        let mut buf = vec![0u8; 32 * 1024];
        let mut deframer = berth_engine::stream::Deframer::default();
        loop {
            let n = match sr.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let out = if all {
                buf[..n].to_vec()
            } else {
                let mut kept = Vec::new();
                deframer.push(&buf[..n], |s, data| {
                    use berth_engine::stream::Stream;
                    let keep = match s {
                        Stream::Stdout => want.stdout,
                        Stream::Stderr => want.stderr,
                        Stream::Stdin => false,
                    };
                    if keep {
                        kept.extend(berth_engine::stream::frame(s, data));
                    }
                });
                kept
            };
            if !out.is_empty() && cw.write_all(&out).await.is_err() {
                return;
            }
            let _ = cw.flush().await;
        }
        if let Some(e) = failure.await {
            let _ = cw.write_all(&error_bytes(tty, &e)).await;
        }
        let _ = cw.shutdown().await;
    };
    // Detached: the connection closes, the container runs on (with a tty
    // its stdin stays open whatever its clients do).
    tokio::select! {
        _ = output => {}
        _ = input => {}
    }
}
