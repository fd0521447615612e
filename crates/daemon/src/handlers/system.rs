//! `/_ping`, `/version`, `/info`, `/system/df`.

use std::sync::Arc;

use hyper::Response;
use serde_json::{json, Value};

use crate::route::{MAX_VERSION, MIN_VERSION};
use crate::{Body, Call, Daemon, Reply};

pub(super) fn ping(call: &Call) -> Response<Body> {
    let head = call.req.method() == hyper::Method::HEAD;
    Response::builder()
        .status(200)
        .header("Content-Type", "text/plain; charset=utf-8")
        .header("Builder-Version", "1")
        .header("Cache-Control", "no-cache, no-store, must-revalidate")
        .header("Pragma", "no-cache")
        .body(if head {
            Body::empty()
        } else {
            Body::full("OK")
        })
        .expect("a valid response")
}

fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

pub(super) async fn version(_d: &Arc<Daemon>) -> Reply {
    let v = berth_service::system::version();
    let api = MAX_VERSION.to_string();
    let min = MIN_VERSION.to_string();
    Ok(crate::json(
        200,
        &json!({
            "Platform": {"Name": "berth"},
            "Components": [{
                "Name": "Engine",
                "Version": v.version,
                "Details": {
                    "ApiVersion": api,
                    "MinAPIVersion": min,
                    "Os": v.os,
                    "Arch": go_arch(&v.arch),
                    "KernelVersion": kernel(),
                    "Experimental": "false",
                },
            }],
            "Version": v.version,
            "ApiVersion": api,
            "MinAPIVersion": min,
            "GitCommit": "",
            "GoVersion": "",
            "Os": v.os,
            "Arch": go_arch(&v.arch),
            "KernelVersion": kernel(),
            "BuildTime": "",
        }),
    ))
}

/// Go's name for an architecture (what docker reports).
pub(super) fn go_arch(rust: &str) -> &str {
    match rust {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

pub(super) async fn info(d: &Arc<Daemon>) -> Reply {
    let info = d
        .engine(|eng| {
            let i = berth_service::system::info(&eng.paths, &eng.store)?;
            let recs = eng.list()?;
            Ok((i, recs))
        })
        .await?;
    let (i, recs) = info;
    let count = |s: &[berth_engine::State]| recs.iter().filter(|r| s.contains(&r.state)).count();
    use berth_engine::State as S;
    let mut v = serde_json::to_value(&i).unwrap_or(Value::Null);
    let hostname = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    let mem_total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|k| k.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024;
    if let Some(o) = v.as_object_mut() {
        let extra = json!({
            "ID": hostname,
            "Name": hostname,
            "Containers": recs.len(),
            "ContainersRunning": count(&[S::Running, S::Restarting]),
            "ContainersPaused": count(&[S::Paused]),
            "ContainersStopped": count(&[S::Created, S::Exited, S::Dead]),
            "OSType": "linux",
            "Architecture": i.architecture,
            "MemTotal": mem_total,
            "LoggingDriver": "json-file",
            "CgroupDriver": "cgroupfs",
            "DefaultRuntime": "berth-runc",
            "Runtimes": {"berth-runc": {"path": "berth-runc"}},
            "SecurityOptions": ["name=seccomp,profile=builtin"],
            "Swarm": {"LocalNodeState": "inactive", "NodeID": "", "NodeAddr": ""},
            "IndexServerAddress": "https://index.docker.io/v1/",
            "DriverStatus": [["Backing Filesystem", "extfs"]],
            "Plugins": {"Volume": ["local"], "Network": ["host", "null"], "Log": ["json-file", "none"]},
            "ExperimentalBuild": false,
            "Labels": [],
        });
        if let Some(e) = extra.as_object() {
            for (k, x) in e {
                o.insert(k.clone(), x.clone());
            }
        }
    }
    Ok(crate::json(200, &v))
}

pub(super) async fn df(d: &Arc<Daemon>) -> Reply {
    let usage = d.engine(|eng| Ok(berth_service::system::df(eng)?)).await?;
    Ok(crate::json(200, &usage))
}

/// The network modes berth has today, as `GET /networks` lists networks.
pub(super) fn networks() -> Value {
    json!([
        {"Name": "host", "Id": "host", "Driver": "host", "Scope": "local",
         "IPAM": {"Driver": "default", "Config": []}, "Containers": {}, "Options": {}, "Labels": {}},
        {"Name": "none", "Id": "none", "Driver": "null", "Scope": "local",
         "IPAM": {"Driver": "default", "Config": []}, "Containers": {}, "Options": {}, "Labels": {}},
    ])
}

/// `GET /events`: the event log, filtered; replayed from `since`, and
/// followed until `until` or for as long as the client stays.
pub(super) async fn events(d: &Arc<Daemon>, call: Call) -> Reply {
    use berth_service::containers::parse_time;
    let q = &call.query;
    let time = |k: &str| -> Result<_, crate::ApiError> {
        match q.get(k) {
            None | Some("") => Ok(None),
            Some(t) => Ok(Some(parse_time(t)?)),
        }
    };
    let opts = berth_service::events::EventsOptions {
        since: time("since")?,
        until: time("until")?,
        filters: q.filters()?,
    };
    // Bad filters and windows are answered before the stream starts.
    let paths = d.paths.clone();
    berth_service::events::check(&paths, &opts)?;
    let permit = d.stream_permit()?;
    let (tx, body) = Body::channel();
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let probe = tx.clone();
        let mut sink = |e: &berth_engine::events::Event| {
            let mut line = serde_json::to_vec(e).unwrap_or_default();
            line.push(b'\n');
            tx.blocking_send(bytes::Bytes::from(line)).is_ok()
        };
        let alive = || !probe.is_closed();
        let _ = berth_service::events::events_while(&paths, &opts, &mut sink, &alive);
    });
    Ok(Response::builder()
        .status(200)
        .header("Content-Type", "application/json")
        .body(body)
        .expect("a valid response"))
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct AuthBody {
    username: String,
    password: String,
    serveraddress: String,
}

/// `POST /auth` (`docker login`): whether the registry takes the
/// credentials; the client keeps them.
pub(super) async fn auth(call: Call) -> Reply {
    let body: AuthBody = crate::read_json(call.req, 64 * 1024).await?;
    // docker sends Docker Hub as its v1 URL, others as host[:port].
    let host = body
        .serveraddress
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .trim_end_matches("/v1")
        .to_string();
    if host.is_empty() || host.contains('/') {
        return Err(crate::ApiError::bad_request(format!(
            "invalid registry address {:?}: give host[:port]",
            body.serveraddress
        )));
    }
    let (user, password) = (body.username, body.password);
    let checked = tokio::task::spawn_blocking(move || {
        berth_registry_client::check_login(&host, &user, &password)
    })
    .await
    .map_err(|e| crate::ApiError::new(500, e.to_string()))?;
    match checked {
        Ok(_) => Ok(crate::json(
            200,
            &json!({"Status": "Login Succeeded", "IdentityToken": ""}),
        )),
        Err(e) => Err(crate::ApiError::new(401, e.to_string())),
    }
}
