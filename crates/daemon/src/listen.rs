//! Listening: unix sockets (group-owned as docker's, `docker` when that
//! group exists), a pid file, and a clean shutdown on SIGTERM or SIGINT.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

use crate::Daemon;

/// Told the sockets once they listen.
pub type OnListening = Box<dyn FnOnce(&[PathBuf]) + Send>;

/// What `serve` needs.
pub struct Settings {
    pub paths: berth_engine::Paths,
    /// `unix:///path` addresses.
    pub hosts: Vec<String>,
    pub pid_file: Option<PathBuf>,
    pub on_listening: Option<OnListening>,
}

#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("unsupported host {0:?}: use unix:///path/to/socket")]
    Host(String),
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
    let mut paths = Vec::new();
    for h in &settings.hosts {
        match h.strip_prefix("unix://") {
            Some(p) if p.starts_with('/') => paths.push(PathBuf::from(p)),
            _ => return Err(ListenError::Host(h.clone())),
        }
    }
    let mut listeners = Vec::new();
    for p in &paths {
        listeners.push(bind(p)?);
    }
    if let Some(pf) = &settings.pid_file {
        if let Some(dir) = pf.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        std::fs::write(pf, format!("{}\n", std::process::id()))
            .map_err(io(format!("write {}", pf.display())))?;
    }
    if let Some(f) = settings.on_listening {
        f(&paths);
    }
    let daemon = Arc::new(Daemon::new(settings.paths));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    for l in listeners {
        let daemon = daemon.clone();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            loop {
                let conn = tokio::select! {
                    c = l.accept() => c,
                    _ = stop.changed() => return,
                };
                let Ok((stream, _)) = conn else {
                    // Out of fds or the like: breathe, then go on.
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                };
                let daemon = daemon.clone();
                let fd = crate::ConnFd(std::os::fd::AsRawFd::as_raw_fd(&stream));
                tokio::spawn(async move {
                    let svc = service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                        let daemon = daemon.clone();
                        req.extensions_mut().insert(fd);
                        async move {
                            Ok::<_, std::convert::Infallible>(crate::handle(daemon, req).await)
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .with_upgrades()
                        .await;
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
    for p in &paths {
        let _ = std::fs::remove_file(p);
    }
    if let Some(pf) = &settings.pid_file {
        let _ = std::fs::remove_file(pf);
    }
    Ok(())
}
