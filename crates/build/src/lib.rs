//! `berth build`: a Dockerfile and its context become an image in the
//! store. Each stage starts from its base (an image, `scratch`, or another
//! stage), each instruction changes the stage's state, RUN and COPY make a
//! layer each (a RUN's layer is its overlay upper directory, moved into the
//! store), and every layer-making step is cached under a key computed from
//! content, so an unchanged step costs a lookup.

pub mod builder;
pub mod cache;
pub mod context;
mod fsutil;
pub mod mounts;
pub mod sources;
pub mod state;

pub use builder::{build, BuildOptions, Built};

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// An error in the Dockerfile, at a line.
    #[error("Dockerfile:{line}: {message}")]
    Dockerfile { line: usize, message: String },
    /// A RUN whose command failed.
    #[error("Dockerfile:{line}: {instruction}: the command exited with code {code}{tail}")]
    RunFailed {
        line: usize,
        instruction: String,
        code: i32,
        tail: String,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] berth_image::store::StoreError),
    #[error(transparent)]
    Load(#[from] berth_image::load::LoadError),
    #[error(transparent)]
    Engine(#[from] berth_engine::EngineError),
    #[error(transparent)]
    Db(#[from] rusqlite::Error),
}

impl BuildError {
    pub fn io(what: impl Into<String>, source: std::io::Error) -> BuildError {
        BuildError::Io {
            what: what.into(),
            source,
        }
    }

    /// An error without a line gets the instruction's.
    pub(crate) fn at(self, line: usize) -> BuildError {
        match self {
            BuildError::Invalid(message) => BuildError::Dockerfile { line, message },
            BuildError::Io { what, source } => BuildError::Dockerfile {
                line,
                message: format!("{what}: {source}"),
            },
            BuildError::Engine(e) => BuildError::Dockerfile {
                line,
                message: e.to_string(),
            },
            other => other,
        }
    }
}
