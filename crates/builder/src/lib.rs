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
pub mod progress;
pub mod sources;
pub mod state;

pub use builder::{build, sweep_leftovers, BuildOptions, Built};

/// The largest Dockerfile or .dockerignore read.
pub const MAX_TEXT: u64 = 16 << 20;

/// A directory only root may enter (made if missing): build steps hold
/// files from images and secrets.
pub(crate) fn private_dir(dir: &std::path::Path) -> Result<std::path::PathBuf, BuildError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)
        .map_err(|e| BuildError::io(format!("create {}", dir.display()), e))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| BuildError::io(format!("chmod {}", dir.display()), e))?;
    Ok(dir.to_path_buf())
}

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

    /// The message with the Dockerfile named as the user gave it (docker:
    /// `other.Dockerfile:3: ...`).
    pub fn describe(&self, file: &str) -> String {
        let s = self.to_string();
        match self {
            BuildError::Dockerfile { .. } | BuildError::RunFailed { .. } => {
                s.replacen("Dockerfile:", &format!("{file}:"), 1)
            }
            _ => s,
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
