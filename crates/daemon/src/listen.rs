//! Listening: unix sockets (group-owned as docker's, `docker` when that
//! group exists), a pid file, and a clean shutdown on SIGTERM or SIGINT.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

use crate::Daemon;

/// Told the addresses (`unix:///path`, `tcp://ip:port`) once they
/// listen.
pub type OnListening = Box<dyn FnOnce(&[String]) + Send>;

pub use crate::tls::TlsSettings;

enum Listener {
    Unix(tokio::net::UnixListener),
    Tcp(tokio::net::TcpListener, Option<tokio_rustls::TlsAcceptor>),
}

enum Conn {
    Unix(tokio::net::UnixStream),
    Tcp(tokio::net::TcpStream, Option<tokio_rustls::TlsAcceptor>),
}

impl Listener {
    async fn accept(&self) -> std::io::Result<Conn> {
        match self {
            Listener::Unix(l) => l.accept().await.map(|(s, _)| Conn::Unix(s)),
            Listener::Tcp(l, tls) => l.accept().await.map(|(s, _)| Conn::Tcp(s, tls.clone())),
        }
    }
}

/// The sockets systemd passed (`-H fd://`, socket activation:
/// `LISTEN_PID` is us, `LISTEN_FDS` sockets from fd 3 on).
fn systemd_listeners() -> Result<Vec<Listener>, ListenError> {
    let none = || {
        ListenError::Host(
            "fd:// (systemd passed no sockets: LISTEN_FDS is unset or not for this process)".into(),
        )
    };
    let pid: u32 = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse().ok())
        .ok_or_else(none)?;
    if pid != std::process::id() {
        return Err(none());
    }
    let n: i32 = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|p| p.parse().ok())
        .filter(|n| *n > 0 && *n < 64)
        .ok_or_else(none)?;
    let mut out = Vec::new();
    for fd in 3..3 + n {
        // SAFETY: systemd passed fds 3.. LISTEN_FDS to this process (the
        // pid was checked); each is taken once, here, and owned from now.
        let owned = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        let unix = matches!(
            rustix::net::getsockname(&owned),
            Ok(a) if a.address_family() == rustix::net::AddressFamily::UNIX
        );
        if unix {
            let l = std::os::unix::net::UnixListener::from(owned);
            l.set_nonblocking(true).map_err(io("fd:// socket"))?;
            out.push(Listener::Unix(
                tokio::net::UnixListener::from_std(l).map_err(io("fd:// socket"))?,
            ));
        } else {
            let l = std::net::TcpListener::from(owned);
            l.set_nonblocking(true).map_err(io("fd:// socket"))?;
            out.push(Listener::Tcp(
                tokio::net::TcpListener::from_std(l).map_err(io("fd:// socket"))?,
                None,
            ));
        }
    }
    std::env::remove_var("LISTEN_FDS");
    std::env::remove_var("LISTEN_PID");
    Ok(out)
}

/// Serves HTTP/1.1 (with upgrades, for hijacked streams) on one
/// connection.
async fn serve_conn<S>(daemon: Arc<Daemon>, io: S, fd: crate::ConnFd)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        let daemon = daemon.clone();
        req.extensions_mut().insert(fd);
        async move { Ok::<_, std::convert::Infallible>(crate::handle(daemon, req).await) }
    });
    // A client may shut down its side once its request is sent (docker's
    // ssh transport through `dial-stdio` does): it still gets the answer.
    // A client that sends a request's headers this slowly is dropped
    // (idle keep-alive connections are not: the clock starts with a
    // request's first byte).
    let _ = http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .half_close(true)
        .serve_connection(TokioIo::new(io), svc)
        .with_upgrades()
        .await;
}

/// How long a request's headers may take to arrive.
const HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Raises the soft limit of open files to the hard one: every client
/// connection is a descriptor (dockerd does the same).
fn raise_nofile() {
    if let Some(l) = rustix::process::getrlimit(rustix::process::Resource::Nofile).maximum {
        let _ = rustix::process::setrlimit(
            rustix::process::Resource::Nofile,
            rustix::process::Rlimit {
                current: Some(l),
                maximum: Some(l),
            },
        );
    }
}

/// glibc gives each thread that allocates an arena of its own, and the
/// blocking pool's threads come and go: a few arenas keep an idle
/// daemon's memory small.
fn few_arenas() {
    // SAFETY: mallopt with a documented parameter and value; called before
    // the runtime's other threads allocate.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 2) };
}

/// Gives freed memory back to the system once the daemon has been idle a
/// while (`requests` unchanged since the last look).
async fn trim_when_idle(requests: Arc<std::sync::atomic::AtomicU64>) {
    use std::sync::atomic::Ordering;
    let mut seen = u64::MAX;
    let mut trimmed = false;
    loop {
        tokio::time::sleep(IDLE_TRIM).await;
        let now = requests.load(Ordering::Relaxed);
        if now != seen {
            seen = now;
            trimmed = false;
        } else if !trimmed {
            // SAFETY: malloc_trim only returns free pages to the kernel.
            unsafe { libc::malloc_trim(0) };
            trimmed = true;
        }
    }
}

/// How long without a request before freed memory is given back.
const IDLE_TRIM: std::time::Duration = std::time::Duration::from_secs(5);

/// What `serve` needs.
pub struct Settings {
    pub paths: berth_engine::Paths,
    /// `unix:///path` and `tcp://ip:port` addresses.
    pub hosts: Vec<String>,
    /// TLS for the TCP addresses.
    pub tls: Option<TlsSettings>,
    pub pid_file: Option<PathBuf>,
    pub on_listening: Option<OnListening>,
    /// What containers get when their create request does not say.
    pub defaults: berth_service::create::Defaults,
    /// Containers keep running when the daemon stops (`false`: they are
    /// stopped with it, as dockerd without live-restore does).
    pub live_restore: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("unsupported host {0:?}: use unix:///path/to/socket or tcp://ip:port")]
    Host(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ListenError {
    let what = what.into();
    move |source| ListenError::Io { what, source }
}

/// The gid of group `name`, from /etc/group.
fn group_id(name: &str) -> Option<u32> {
    let text = std::fs::read_to_string("/etc/group").ok()?;
    text.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next()? == name).then_some(())?;
        f.next();
        f.next()?.parse().ok()
    })
}

fn bind(path: &Path) -> Result<tokio::net::UnixListener, ListenError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io(format!("create {}", dir.display())))?;
    }
    // A socket left by a daemon that died; a live one answers a connect.
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(ListenError::Io {
            what: format!("listen on {}", path.display()),
            source: std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                "a daemon is serving this socket already",
            ),
        });
    }
    // Only a dead daemon's socket is replaced, never another file.
    match std::fs::symlink_metadata(path) {
        Ok(md) if std::os::unix::fs::FileTypeExt::is_socket(&md.file_type()) => {
            let _ = std::fs::remove_file(path);
        }
        Ok(_) => {
            return Err(ListenError::Io {
                what: format!("listen on {}", path.display()),
                source: std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "a file that is not a socket is there: remove it or choose another path",
                ),
            })
        }
        Err(_) => {}
    }
    // Born 0660: no moment where others may connect (this runs before
    // any other thread makes files).
    let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o117));
    let bound = tokio::net::UnixListener::bind(path);
    rustix::process::umask(old);
    let l = bound.map_err(io(format!("listen on {}", path.display())))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .map_err(io(format!("chmod {}", path.display())))?;
    if let Some(gid) = group_id("docker") {
        let _ = rustix::fs::chown(path, None, Some(rustix::fs::Gid::from_raw(gid)));
    }
    Ok(l)
}

/// Serves the Engine API until SIGTERM or SIGINT.
pub async fn serve(settings: Settings) -> Result<(), ListenError> {
    raise_nofile();
    few_arenas();
    berth_engine::watch::close_in_background();
    let mut paths = Vec::new();
    let mut listeners = Vec::new();
    let mut bound = Vec::new();
    let tls = match &settings.tls {
        Some(t) => Some(tokio_rustls::TlsAcceptor::from(
            crate::tls::server_config(t).map_err(ListenError::Tls)?,
        )),
        None => None,
    };
    for h in &settings.hosts {
        if let Some(p) = h.strip_prefix("unix://").filter(|p| p.starts_with('/')) {
            let p = PathBuf::from(p);
            listeners.push(Listener::Unix(bind(&p)?));
            bound.push(format!("unix://{}", p.display()));
            paths.push(p);
        } else if h == "fd://" {
            for l in systemd_listeners()? {
                bound.push(match &l {
                    Listener::Unix(u) => format!(
                        "fd:// (unix://{})",
                        u.local_addr()
                            .ok()
                            .and_then(|a| a.as_pathname().map(|p| p.display().to_string()))
                            .unwrap_or_default()
                    ),
                    Listener::Tcp(t, _) => format!(
                        "fd:// (tcp://{})",
                        t.local_addr().map(|a| a.to_string()).unwrap_or_default()
                    ),
                });
                listeners.push(match l {
                    Listener::Tcp(t, _) => Listener::Tcp(t, tls.clone()),
                    u => u,
                });
            }
        } else if let Some(addr) = h.strip_prefix("tcp://") {
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(io(format!("listen on {h}")))?;
            let local = l.local_addr().map_err(io("the bound address"))?;
            bound.push(format!("tcp://{local}"));
            listeners.push(Listener::Tcp(l, tls.clone()));
        } else {
            return Err(ListenError::Host(h.clone()));
        }
    }
    if let Some(pf) = &settings.pid_file {
        if let Some(dir) = pf.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        std::fs::write(pf, format!("{}\n", std::process::id()))
            .map_err(io(format!("write {}", pf.display())))?;
    }
    if let Some(f) = settings.on_listening {
        f(&bound);
    }
    // Containers whose restart policies bring them back with the daemon.
    let restore_paths = settings.paths.clone();
    let restored =
        tokio::task::spawn_blocking(move || berth_service::containers::restore(&restore_paths))
            .await;
    match restored {
        Ok(Ok(list)) => {
            for (id, r) in list {
                match r {
                    Ok(()) => tracing::info!("started container {id} again (its restart policy)"),
                    Err(e) => tracing::warn!("cannot start container {id} again: {e}"),
                }
            }
        }
        Ok(Err(e)) => tracing::warn!("cannot restore containers: {e}"),
        Err(e) => tracing::warn!("cannot restore containers: {e}"),
    }
    let mut daemon = Daemon::new(settings.paths);
    daemon.defaults = settings.defaults;
    let daemon = Arc::new(daemon);
    tokio::spawn(trim_when_idle(daemon.requests.clone()));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    for l in listeners {
        let daemon = daemon.clone();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    c = l.accept() => c,
                    _ = stop.changed() => return,
                };
                let Ok(conn) = accepted else {
                    // Out of fds or the like: breathe, then go on.
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                };
                let daemon = daemon.clone();
                tokio::spawn(async move {
                    match conn {
                        Conn::Unix(s) => {
                            let fd = crate::ConnFd(std::os::fd::AsRawFd::as_raw_fd(&s));
                            serve_conn(daemon, s, fd).await
                        }
                        Conn::Tcp(s, None) => {
                            let fd = crate::ConnFd(std::os::fd::AsRawFd::as_raw_fd(&s));
                            serve_conn(daemon, s, fd).await
                        }
                        Conn::Tcp(s, Some(acceptor)) => {
                            let fd = crate::ConnFd(std::os::fd::AsRawFd::as_raw_fd(&s));
                            // A handshake that stalls is dropped.
                            let hs = tokio::time::timeout(
                                std::time::Duration::from_secs(10),
                                acceptor.accept(s),
                            )
                            .await;
                            if let Ok(Ok(tls)) = hs {
                                serve_conn(daemon, tls, fd).await
                            }
                        }
                    }
                });
            }
        });
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(io("SIGTERM handler"))?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    let _ = stop_tx.send(true);
    if !settings.live_restore {
        let paths = daemon.paths.clone();
        let _ = tokio::task::spawn_blocking(move || stop_all(&paths)).await;
    }
    for p in &paths {
        let _ = std::fs::remove_file(p);
    }
    if let Some(pf) = &settings.pid_file {
        let _ = std::fs::remove_file(pf);
    }
    Ok(())
}

/// Stops every running container (each with its own stop timeout, all
/// at once): the daemon's shutdown without live restore.
fn stop_all(paths: &berth_engine::Paths) {
    let running = match berth_engine::Engine::open(paths).and_then(|mut e| e.running_ids()) {
        Ok(ids) => ids,
        Err(e) => {
            tracing::warn!("cannot list the running containers to stop them: {e}");
            return;
        }
    };
    std::thread::scope(|s| {
        for id in running {
            s.spawn(move || {
                let stopped =
                    berth_engine::Engine::open(paths).and_then(|mut e| e.stop_for_shutdown(&id));
                if let Err(e) = stopped {
                    tracing::warn!("cannot stop container {id}: {e}");
                }
            });
        }
    });
}
