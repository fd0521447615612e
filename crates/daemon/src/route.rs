//! The Engine API's paths, as moby's router has them: an optional
//! version prefix (`/v1.50/...`), then the object and the operation.
//! Image names hold slashes and colons (`localhost:5000/a/b:tag`), so an
//! image route is found by its last segment, as docker's `{name:.*}`
//! patterns do. Pure: no I/O, any input gives a route or an error (the
//! fuzz target `daemon_route` holds it to that).

/// The oldest API version served (docker's own minimum).
pub const MIN_VERSION: ApiVersion = ApiVersion(1, 24);
/// The newest: what the docker CLI 28 asks for.
pub const MAX_VERSION: ApiVersion = ApiVersion(1, 50);

/// An API version, `major.minor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ApiVersion(pub u32, pub u32);

impl std::fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.0, self.1)
    }
}

impl std::str::FromStr for ApiVersion {
    type Err = ();

    fn from_str(s: &str) -> Result<ApiVersion, ()> {
        let (a, b) = s.split_once('.').ok_or(())?;
        let num = |x: &str| {
            if x.is_empty() || x.len() > 4 || !x.bytes().all(|c| c.is_ascii_digit()) {
                return Err(());
            }
            x.parse::<u32>().map_err(|_| ())
        };
        Ok(ApiVersion(num(a)?, num(b)?))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerOp {
    Inspect,
    Start,
    Stop,
    Restart,
    Kill,
    Wait,
    Pause,
    Unpause,
    Rename,
    Logs,
    Top,
    Changes,
    Export,
    Stats,
    Attach,
    AttachWs,
    Resize,
    Update,
    ArchiveGet,
    ArchiveHead,
    ArchivePut,
    ExecCreate,
    Delete,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageOp {
    Inspect,
    History,
    Push,
    Tag,
    Get,
    Delete,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecOp {
    Start,
    Inspect,
    Resize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkOp {
    Inspect,
    Delete,
    Connect,
    Disconnect,
}

/// One endpoint of the Engine API, with the object it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Ping,
    Version,
    Info,
    SystemDf,
    Events,
    Auth,
    ContainerList,
    ContainerCreate,
    ContainerPrune,
    Container(String, ContainerOp),
    Exec(String, ExecOp),
    ImageList,
    ImageCreate,
    ImageLoad,
    ImageGetAll,
    ImagePrune,
    ImageSearch,
    Build,
    BuildPrune,
    Commit,
    Image(String, ImageOp),
    VolumeList,
    VolumeCreate,
    VolumePrune,
    Volume(String, bool),
    NetworkList,
    NetworkCreate,
    NetworkPrune,
    Network(String, NetworkOp),
}

/// Why a path is not served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteError {
    /// No such endpoint (404, docker's "page not found").
    NotFound,
    /// A version prefix older than `MIN_VERSION` (400).
    TooOld(ApiVersion),
    /// Newer than `MAX_VERSION` (400).
    TooNew(ApiVersion),
}

impl std::fmt::Display for RouteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RouteError::NotFound => write!(f, "page not found"),
            RouteError::TooOld(v) => write!(
                f,
                "client version {v} is too old. Minimum supported API version is {MIN_VERSION}, please upgrade your client to a newer version"
            ),
            RouteError::TooNew(v) => write!(
                f,
                "client version {v} is too new. Maximum supported API version is {MAX_VERSION}"
            ),
        }
    }
}

/// Decodes `%XX` escapes (invalid UTF-8 is replaced, as a name with it
/// matches nothing).
fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// The version a path asks for (None: unversioned, the newest) and the
/// route. `path` is the URI's path, without the query.
pub fn route(method: &str, path: &str) -> Result<(Option<ApiVersion>, Route), RouteError> {
    let path = path.strip_prefix('/').ok_or(RouteError::NotFound)?;
    // docker's version matcher: `/v[0-9.]+/`; a path such as
    // `/volumes/x` has none.
    let (version, rest) = match path.split_once('/') {
        Some((v, rest))
            if v.len() > 1
                && v.starts_with('v')
                && v[1..].bytes().all(|c| c.is_ascii_digit() || c == b'.') =>
        {
            match v[1..].parse::<ApiVersion>() {
                Ok(ver) => (Some(ver), rest),
                Err(()) => return Err(RouteError::NotFound),
            }
        }
        _ => (None, path),
    };
    if let Some(v) = version {
        if v < MIN_VERSION {
            return Err(RouteError::TooOld(v));
        }
        if v > MAX_VERSION {
            return Err(RouteError::TooNew(v));
        }
    }
    let rest = decode(rest);
    let segs: Vec<&str> = rest.split('/').collect();
    let r = match_route(method, &segs, &rest).ok_or(RouteError::NotFound)?;
    Ok((version, r))
}

fn one(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

fn match_route(method: &str, segs: &[&str], rest: &str) -> Option<Route> {
    use ContainerOp as C;
    let get = method == "GET";
    let post = method == "POST";
    let head = method == "HEAD";
    let del = method == "DELETE";
    let put = method == "PUT";
    Some(match (segs, method) {
        (["_ping"], "GET" | "HEAD") => Route::Ping,
        (["version"], "GET") => Route::Version,
        (["info"], "GET") => Route::Info,
        (["system", "df"], "GET") => Route::SystemDf,
        (["events"], "GET") => Route::Events,
        (["auth"], "POST") => Route::Auth,
        (["containers", "json"], "GET") => Route::ContainerList,
        (["containers", "create"], "POST") => Route::ContainerCreate,
        (["containers", "prune"], "POST") => Route::ContainerPrune,
        (["containers", id], "DELETE") => Route::Container(one(id)?, C::Delete),
        (["containers", id, op], _) => {
            let op = match *op {
                "json" if get => C::Inspect,
                "start" if post => C::Start,
                "stop" if post => C::Stop,
                "restart" if post => C::Restart,
                "kill" if post => C::Kill,
                "wait" if post => C::Wait,
                "pause" if post => C::Pause,
                "unpause" if post => C::Unpause,
                "rename" if post => C::Rename,
                "logs" if get => C::Logs,
                "top" if get => C::Top,
                "changes" if get => C::Changes,
                "export" if get => C::Export,
                "stats" if get => C::Stats,
                "attach" if post => C::Attach,
                "resize" if post => C::Resize,
                "update" if post => C::Update,
                "exec" if post => C::ExecCreate,
                "archive" if get => C::ArchiveGet,
                "archive" if head => C::ArchiveHead,
                "archive" if put => C::ArchivePut,
                _ => return None,
            };
            Route::Container(one(id)?, op)
        }
        (["containers", id, "attach", "ws"], "GET") => Route::Container(one(id)?, C::AttachWs),
        (["exec", id, op], _) => {
            let op = match *op {
                "start" if post => ExecOp::Start,
                "json" if get => ExecOp::Inspect,
                "resize" if post => ExecOp::Resize,
                _ => return None,
            };
            Route::Exec(one(id)?, op)
        }
        (["images", "json"], "GET") => Route::ImageList,
        (["images", "create"], "POST") => Route::ImageCreate,
        (["images", "load"], "POST") => Route::ImageLoad,
        (["images", "get"], "GET") => Route::ImageGetAll,
        (["images", "prune"], "POST") => Route::ImagePrune,
        (["images", "search"], "GET") => Route::ImageSearch,
        (["build"], "POST") => Route::Build,
        (["build", "prune"], "POST") => Route::BuildPrune,
        (["commit"], "POST") => Route::Commit,
        (["images", ..], _) if segs.len() >= 2 => {
            // The name is everything between "images/" and the operation.
            let name = &rest["images/".len()..];
            if del {
                return Some(Route::Image(one(name)?, ImageOp::Delete));
            }
            let (name, op) = name.rsplit_once('/')?;
            let op = match op {
                "json" if get => ImageOp::Inspect,
                "history" if get => ImageOp::History,
                "push" if post => ImageOp::Push,
                "tag" if post => ImageOp::Tag,
                "get" if get => ImageOp::Get,
                _ => return None,
            };
            Route::Image(one(name)?, op)
        }
        (["volumes"], "GET") => Route::VolumeList,
        (["volumes", "create"], "POST") => Route::VolumeCreate,
        (["volumes", "prune"], "POST") => Route::VolumePrune,
        (["volumes", name], _) if get || del => Route::Volume(one(name)?, del),
        (["networks"], "GET") => Route::NetworkList,
        (["networks", "create"], "POST") => Route::NetworkCreate,
        (["networks", "prune"], "POST") => Route::NetworkPrune,
        (["networks", name], _) if get || del => Route::Network(
            one(name)?,
            if del {
                NetworkOp::Delete
            } else {
                NetworkOp::Inspect
            },
        ),
        (["networks", name, "connect"], "POST") => Route::Network(one(name)?, NetworkOp::Connect),
        (["networks", name, "disconnect"], "POST") => {
            Route::Network(one(name)?, NetworkOp::Disconnect)
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(method: &str, path: &str) -> Result<(Option<ApiVersion>, Route), RouteError> {
        route(method, path)
    }

    #[test]
    fn versions_prefix_any_path_and_are_bounded() {
        assert_eq!(r("HEAD", "/_ping"), Ok((None, Route::Ping)));
        assert_eq!(
            r("GET", "/v1.50/containers/json"),
            Ok((Some(ApiVersion(1, 50)), Route::ContainerList))
        );
        assert_eq!(
            r("GET", "/v1.24/version"),
            Ok((Some(ApiVersion(1, 24)), Route::Version))
        );
        assert_eq!(
            r("GET", "/v1.12/version"),
            Err(RouteError::TooOld(ApiVersion(1, 12)))
        );
        assert_eq!(
            r("GET", "/v1.99/version"),
            Err(RouteError::TooNew(ApiVersion(1, 99)))
        );
        assert!(RouteError::TooOld(ApiVersion(1, 12))
            .to_string()
            .contains("Minimum supported API version is 1.24"));
        assert_eq!(r("GET", "/v1/version"), Err(RouteError::NotFound));
        assert_eq!(r("GET", "/v1.50.1/version"), Err(RouteError::NotFound));
        assert_eq!(
            r("GET", "/volumes/v1.50").unwrap().1,
            Route::Volume("v1.50".into(), false)
        );
        assert_eq!(r("GET", "/v1.50"), Err(RouteError::NotFound));
        assert_eq!(r("GET", ""), Err(RouteError::NotFound));
    }

    #[test]
    fn image_names_with_slashes_and_ports_route_on_the_last_segment() {
        assert_eq!(
            r("GET", "/v1.50/images/localhost:5000/a/b:1.0/json")
                .unwrap()
                .1,
            Route::Image("localhost:5000/a/b:1.0".into(), ImageOp::Inspect)
        );
        assert_eq!(
            r("POST", "/images/reg%3A5000/app/push").unwrap().1,
            Route::Image("reg:5000/app".into(), ImageOp::Push)
        );
        assert_eq!(
            r("DELETE", "/images/busybox:1.35").unwrap().1,
            Route::Image("busybox:1.35".into(), ImageOp::Delete)
        );
        assert_eq!(
            r("DELETE", "/images/a/json").unwrap().1,
            Route::Image("a/json".into(), ImageOp::Delete)
        );
        assert_eq!(r("GET", "/images//json"), Err(RouteError::NotFound));
        assert_eq!(r("GET", "/images/x/unknown"), Err(RouteError::NotFound));
        assert_eq!(r("POST", "/images/json"), Err(RouteError::NotFound));
    }

    /// Any bytes route or fail cleanly (the fuzz target `daemon_request`
    /// goes further; this runs with every test run).
    #[test]
    fn arbitrary_paths_never_panic() {
        let alphabet: &[u8] = b"/v1.50%2F3Aimagescontainersjsonexec:.-_ \xc3\xa9";
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            let len = (x % 40) as usize;
            let mut p = String::new();
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                p.push(alphabet[(x % alphabet.len() as u64) as usize] as char);
            }
            for m in ["GET", "POST", "DELETE", "HEAD", "PUT"] {
                let _ = route(m, &p);
            }
        }
    }

    #[test]
    fn container_operations_need_their_methods() {
        assert_eq!(
            r("POST", "/containers/web/start").unwrap().1,
            Route::Container("web".into(), ContainerOp::Start)
        );
        assert_eq!(
            r("DELETE", "/containers/web").unwrap().1,
            Route::Container("web".into(), ContainerOp::Delete)
        );
        assert_eq!(
            r("HEAD", "/containers/web/archive").unwrap().1,
            Route::Container("web".into(), ContainerOp::ArchiveHead)
        );
        assert_eq!(r("GET", "/containers/web/start"), Err(RouteError::NotFound));
        assert_eq!(r("POST", "/containers//start"), Err(RouteError::NotFound));
        assert_eq!(
            r("POST", "/exec/abc/start").unwrap().1,
            Route::Exec("abc".into(), ExecOp::Start)
        );
        assert_eq!(
            r("GET", "/volumes/data").unwrap().1,
            Route::Volume("data".into(), false)
        );
    }
}
