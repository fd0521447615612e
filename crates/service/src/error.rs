//! Errors with a kind: one mapping to the CLI's exit codes and to the
//! Engine API's HTTP status codes.

use std::fmt;

/// What went wrong, as a front end needs to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// No such container, image, volume or object (404).
    NotFound,
    /// The request conflicts with the state: a name in use, an image in
    /// use, a running container (409).
    Conflict,
    /// A bad flag, field or value (400).
    InvalidArgument,
    /// Nothing to do: already started, already stopped (304).
    NotModified,
    /// The container's command cannot be executed (docker's 126).
    NotExecutable,
    /// The container's command is not found (docker's 127).
    CommandNotFound,
    /// Credentials refused by a registry (401).
    Unauthorized,
    /// Everything else: i/o, the store, the runtime (500).
    Internal,
}

impl ErrorKind {
    /// The Engine API's status code for this kind.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorKind::NotFound => 404,
            ErrorKind::Conflict => 409,
            ErrorKind::InvalidArgument => 400,
            ErrorKind::NotModified => 304,
            ErrorKind::Unauthorized => 401,
            ErrorKind::NotExecutable | ErrorKind::CommandNotFound | ErrorKind::Internal => 500,
        }
    }

    /// The exit code docker's `run`, `create` and `start` give: 126 and
    /// 127 for a command that cannot run, else 125 (an engine error).
    pub fn run_exit_code(self) -> u8 {
        match self {
            ErrorKind::NotExecutable => 126,
            ErrorKind::CommandNotFound => 127,
            _ => 125,
        }
    }
}

/// An error of the service: a kind and the error itself (its message and
/// causes, as the library that failed gave them).
pub struct Error {
    kind: ErrorKind,
    inner: Box<dyn std::error::Error + Send + Sync + 'static>,
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            inner: message.into().into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::InvalidArgument, message)
    }

    pub fn not_found(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::NotFound, message)
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The same error as another kind (a front end's context: a flag
    /// error of `run` is an engine error).
    pub fn with_kind(self, kind: ErrorKind) -> Error {
        Error { kind, ..self }
    }

    fn wrap(kind: ErrorKind, e: impl std::error::Error + Send + Sync + 'static) -> Error {
        Error {
            kind,
            inner: Box::new(e),
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {:?}", self.kind, self.inner)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, f)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner.source()
    }
}

fn store_kind(e: &berth_image::store::StoreError) -> ErrorKind {
    use berth_image::store::StoreError as S;
    match e {
        S::NoSuchImage(_) | S::MissingBlob(_) => ErrorKind::NotFound,
        S::Ambiguous { .. } => ErrorKind::InvalidArgument,
        S::InUse { .. } => ErrorKind::Conflict,
        _ => ErrorKind::Internal,
    }
}

impl From<berth_image::store::StoreError> for Error {
    fn from(e: berth_image::store::StoreError) -> Error {
        Error::wrap(store_kind(&e), e)
    }
}

impl From<berth_engine::EngineError> for Error {
    fn from(e: berth_engine::EngineError) -> Error {
        use berth_engine::EngineError as E;
        let kind = match &e {
            E::Invalid(_) | E::Ambiguous(_) => ErrorKind::InvalidArgument,
            E::NoSuchContainer(_)
            | E::NoSuchImage(_)
            | E::NoSuchExec(_)
            | E::NoSuchVolume(_)
            | E::NoSuchPath(_) => ErrorKind::NotFound,
            E::NameInUse { .. } | E::Conflict(_) => ErrorKind::Conflict,
            E::Image(s) => store_kind(s),
            E::Exec { code: 127, .. } => ErrorKind::CommandNotFound,
            E::Exec { .. } => ErrorKind::NotExecutable,
            E::Io { .. } | E::Db(_) | E::Runtime(_) | E::Helper(_) => ErrorKind::Internal,
        };
        Error::wrap(kind, e)
    }
}

impl From<berth_image::reference::ReferenceError> for Error {
    fn from(e: berth_image::reference::ReferenceError) -> Error {
        Error::wrap(ErrorKind::InvalidArgument, e)
    }
}

impl From<berth_image::load::LoadError> for Error {
    fn from(e: berth_image::load::LoadError) -> Error {
        use berth_image::load::LoadError as L;
        let kind = match &e {
            L::Store(s) => store_kind(s),
            _ => ErrorKind::InvalidArgument,
        };
        Error::wrap(kind, e)
    }
}

impl From<berth_registry_client::ClientError> for Error {
    fn from(e: berth_registry_client::ClientError) -> Error {
        use berth_registry_client::ClientError as C;
        let kind = match &e {
            C::Invalid(_) => ErrorKind::InvalidArgument,
            C::Store(s) => store_kind(s),
            C::Http { .. } | C::Load(_) => ErrorKind::Internal,
        };
        Error::wrap(kind, e)
    }
}

impl From<berth_builder::BuildError> for Error {
    fn from(e: berth_builder::BuildError) -> Error {
        use berth_builder::BuildError as B;
        let kind = match &e {
            B::Dockerfile { .. } | B::Invalid(_) => ErrorKind::InvalidArgument,
            B::Store(s) => store_kind(s),
            _ => ErrorKind::Internal,
        };
        Error::wrap(kind, e)
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Error {
        Error::wrap(ErrorKind::Internal, e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_map_to_docker_exit_codes_and_http_statuses() {
        let e: Error = berth_engine::EngineError::NoSuchContainer("x".into()).into();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert_eq!(e.kind().http_status(), 404);
        assert_eq!(e.kind().run_exit_code(), 125);
        assert_eq!(e.to_string(), "No such container: x");
        let e: Error = berth_engine::EngineError::Exec {
            code: 127,
            message: "not found".into(),
        }
        .into();
        assert_eq!(e.kind().run_exit_code(), 127);
        let e: Error = berth_image::store::StoreError::NoSuchImage("busybox".into()).into();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        let e: Error = berth_engine::EngineError::NameInUse {
            name: "a".into(),
            id: "b".into(),
        }
        .into();
        assert_eq!(e.kind().http_status(), 409);
    }
}
