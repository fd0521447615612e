//! `berth daemon`: the Docker Engine API over berth's service layer, so
//! that the docker CLI, the SDKs and Compose drive berth unchanged. It
//! parses requests and renders answers; every Docker decision is the
//! service's. Engine work (SQLite, the store, helper processes) runs on
//! tokio's blocking pool, one engine handle per request.

pub mod body;
pub mod bridge;
pub mod config;
pub mod error;
mod handlers;
pub mod listen;
pub mod progress;
pub mod query;
pub mod route;
pub mod tls;

use std::sync::Arc;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Request, Response};

pub use body::Body;
pub use error::ApiError;
pub use listen::{serve, Settings, TlsSettings};
use route::{ApiVersion, Route, MAX_VERSION};

/// The client connection's socket, for noticing a client that went
/// (`gone`); put in each request's extensions by the listener.
#[derive(Debug, Clone, Copy)]
pub struct ConnFd(pub std::os::fd::RawFd);

/// Resolves once the client's connection is hung up (both directions
/// closed, or an error): a hijacked stream whose client sends nothing,
/// or work waiting for a start, notices a client that went. `fd` must
/// stay open while this runs: the caller holds the connection.
pub(crate) async fn gone(fd: Option<ConnFd>) {
    let Some(ConnFd(fd)) = fd else {
        return std::future::pending().await;
    };
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        // SAFETY: the caller holds the connection that owns `fd` open for
        // as long as this future runs; it is only polled, never closed.
        let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        let mut fds = [rustix::event::PollFd::new(
            &borrowed,
            rustix::event::PollFlags::empty(),
        )];
        let zero = rustix::event::Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        if let Ok(n) = rustix::event::poll(&mut fds, Some(&zero)) {
            let r = fds[0].revents();
            if n > 0
                && r.intersects(
                    rustix::event::PollFlags::HUP
                        | rustix::event::PollFlags::ERR
                        | rustix::event::PollFlags::NVAL,
                )
            {
                return;
            }
        }
    }
}

/// Streams (follows, waits, pulls, builds) served at once: each holds a
/// thread of the blocking pool for its life, and short requests must
/// always find one.
pub const MAX_STREAMS: usize = 256;

/// Attaches one container may have waiting for its start.
pub const MAX_PENDING_ATTACHES: usize = 32;

/// An attach waiting for its container's start.
type PendingAttach = tokio::sync::oneshot::Sender<std::os::unix::net::UnixStream>;

/// What every request shares.
pub struct Daemon {
    pub paths: berth_engine::Paths,
    /// What containers get when their create request does not say.
    pub defaults: berth_service::create::Defaults,
    /// Attaches to created containers, by container id, waiting for the
    /// start that will hand them their connections.
    pending: std::sync::Mutex<std::collections::HashMap<String, Vec<PendingAttach>>>,
    streams: Arc<tokio::sync::Semaphore>,
    /// A connection to the store's database held for the daemon's life:
    /// SQLite checkpoints and deletes the write-ahead log when its last
    /// connection closes, which every request's own connections would
    /// otherwise do, at the cost of fsyncs and a copy of the log on the
    /// answer's path.
    _keep: std::sync::Mutex<Option<berth_image::store::Store>>,
    /// Requests answered so far (an idle daemon trims its memory).
    pub requests: Arc<std::sync::atomic::AtomicU64>,
}

impl Daemon {
    pub fn new(paths: berth_engine::Paths) -> Daemon {
        let keep = berth_image::store::Store::open(&paths.root).ok();
        Daemon {
            paths,
            defaults: Default::default(),
            pending: Default::default(),
            streams: Arc::new(tokio::sync::Semaphore::new(MAX_STREAMS)),
            _keep: std::sync::Mutex::new(keep),
            requests: Default::default(),
        }
    }

    /// A slot for a long-lived stream, or 503 when all are taken.
    pub(crate) fn stream_permit(&self) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
        self.streams.clone().try_acquire_owned().map_err(|_| {
            ApiError::new(
                503,
                format!("the daemon serves {MAX_STREAMS} streams at once; try again later"),
            )
        })
    }

    /// Registers an attach to container `id` until its start.
    pub(crate) fn pending_attach(
        &self,
        id: &str,
    ) -> Result<tokio::sync::oneshot::Receiver<std::os::unix::net::UnixStream>, ApiError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let mut m = self
            .pending
            .lock()
            .map_err(|_| ApiError::new(500, "the attach table is poisoned"))?;
        // Attaches whose clients went away are forgotten.
        m.retain(|_, list| {
            list.retain(|t| !t.is_closed());
            !list.is_empty()
        });
        let list = m.entry(id.to_string()).or_default();
        if list.len() >= MAX_PENDING_ATTACHES {
            return Err(ApiError::new(
                409,
                format!("{MAX_PENDING_ATTACHES} attaches are waiting for this container's start already"),
            ));
        }
        list.push(tx);
        Ok(rx)
    }

    /// The attaches waiting for container `id`'s start.
    pub(crate) fn take_attaches(&self, id: &str) -> Vec<PendingAttach> {
        let mut list = self
            .pending
            .lock()
            .ok()
            .and_then(|mut m| m.remove(id))
            .unwrap_or_default();
        list.retain(|t| !t.is_closed());
        list
    }
}

/// A request, parsed: what handlers see.
pub struct Call {
    pub version: ApiVersion,
    pub query: query::Query,
    pub req: Request<Incoming>,
}

pub type Reply = Result<Response<Body>, ApiError>;

impl Daemon {
    /// Runs `f` with an engine on the blocking pool.
    pub async fn engine<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut berth_engine::Engine) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let paths = self.paths.clone();
        tokio::task::spawn_blocking(move || {
            let mut eng = berth_engine::Engine::open(&paths)?;
            f(&mut eng)
        })
        .await
        .map_err(|e| ApiError::new(500, format!("the request's work failed: {e}")))?
    }
}

impl Daemon {
    /// Runs `f` with an engine it owns (work that hands the engine on,
    /// such as a start to its monitor) on the blocking pool.
    pub async fn owned_engine<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(berth_engine::Engine) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let paths = self.paths.clone();
        tokio::task::spawn_blocking(move || f(berth_engine::Engine::open(&paths)?))
            .await
            .map_err(|e| ApiError::new(500, format!("the request's work failed: {e}")))?
    }
}

/// Headers every answer carries, as dockerd's do.
fn common_headers(resp: &mut Response<Body>) {
    let h = resp.headers_mut();
    h.insert(
        "Api-Version",
        MAX_VERSION.to_string().parse().expect("ascii"),
    );
    h.insert("Ostype", "linux".parse().expect("ascii"));
    h.insert(
        "Server",
        concat!("berth/", env!("CARGO_PKG_VERSION"), " (linux)")
            .parse()
            .expect("ascii"),
    );
    h.insert("Docker-Experimental", "false".parse().expect("ascii"));
}

/// A JSON answer.
pub fn json(status: u16, v: &impl serde::Serialize) -> Response<Body> {
    let body = serde_json::to_vec(v).unwrap_or_else(|_| b"null".to_vec());
    Response::builder()
        .status(status)
        .header("Content-Type", "application/json")
        .body(Body::full(body))
        .expect("a valid response")
}

/// An empty answer (204 and the like).
pub fn empty(status: u16) -> Response<Body> {
    Response::builder()
        .status(status)
        .body(Body::empty())
        .expect("a valid response")
}

fn error_response(e: &ApiError) -> Response<Body> {
    Response::builder()
        .status(e.status)
        .header("Content-Type", "application/json")
        .body(Body::full(Bytes::from(e.body())))
        .expect("a valid response")
}

/// Answers one request.
pub async fn handle(d: Arc<Daemon>, req: Request<Incoming>) -> Response<Body> {
    d.requests
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    let mut resp = match route::route(&method, &path) {
        Err(e) => error_response(&e.into()),
        Ok((version, r)) => {
            let call = Call {
                version: version.unwrap_or(MAX_VERSION),
                query: query::Query::parse(req.uri().query()),
                req,
            };
            match handlers::dispatch(&d, r, call).await {
                Ok(r) => r,
                Err(mut e) => {
                    if e.status == 501 && e.message.is_empty() {
                        e.message =
                            format!("{method} {path} is not implemented by berth daemon yet");
                    }
                    tracing::debug!("{method} {path}: {e}");
                    error_response(&e)
                }
            }
        }
    };
    common_headers(&mut resp);
    resp
}

/// A `200 application/x-tar` answer whose body `write` produces on the
/// blocking pool; a failure midway breaks the stream off, so the client
/// never takes a short archive for a whole one (`what` names it in the
/// log).
pub(crate) fn tar_stream(
    d: &Daemon,
    what: String,
    write: impl FnOnce(&berth_engine::Paths, &mut dyn std::io::Write) -> Result<(), String>
        + Send
        + 'static,
) -> Result<Response<Body>, ApiError> {
    let permit = d.stream_permit()?;
    let (tx, abort, body) = Body::abortable();
    let paths = d.paths.clone();
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        // Holds the stream open until the outcome is known.
        let keep = tx.clone();
        let mut w = std::io::BufWriter::new(crate::bridge::ChannelWriter::new(tx));
        let done = write(&paths, &mut w)
            .and_then(|()| std::io::Write::flush(&mut w).map_err(|e| e.to_string()));
        drop(w);
        if let Err(e) = done {
            tracing::warn!("{what} broke off: {e}");
            abort.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        drop(keep);
    });
    Ok(Response::builder()
        .status(200)
        .header("Content-Type", "application/x-tar")
        .body(body)
        .expect("a valid response"))
}

/// Reads a JSON request body (at most `limit` bytes; an empty body is
/// `T::default()` as docker allows for optional bodies).
pub async fn read_json<T: serde::de::DeserializeOwned + Default>(
    req: Request<Incoming>,
    limit: usize,
) -> Result<T, ApiError> {
    use http_body_util::BodyExt;
    let body = http_body_util::Limited::new(req.into_body(), limit)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                ApiError::new(413, format!("the request body is over {limit} bytes"))
            } else {
                ApiError::bad_request(format!("reading the request body: {e}"))
            }
        })?
        .to_bytes();
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON in the request body: {e}")))
}

/// Routes the daemon has but does not serve yet answer this.
/// (The message names the request; `handle` fills it in.)
pub(crate) fn unserved(_: &Route) -> ApiError {
    ApiError::new(501, "")
}
