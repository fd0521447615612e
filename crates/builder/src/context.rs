//! A build context given as `-`: a tar archive (plain or compressed) on
//! standard input, unpacked with the store's safe extractor into a
//! directory of its own, or, when the input is not an archive, a
//! Dockerfile alone with an empty context.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::BuildError;

/// A context directory that is removed when dropped.
pub struct TempContext {
    pub dir: PathBuf,
    /// The Dockerfile, when the input was one rather than an archive.
    pub dockerfile: Option<String>,
}

impl Drop for TempContext {
    fn drop(&mut self) {
        let _ = berth_image::layer::remove_dir_all(&self.dir);
    }
}

/// Reads the context from `input` into a new directory under
/// `ROOT/builds`.
pub fn from_reader(root: &Path, mut input: impl Read) -> Result<TempContext, BuildError> {
    // PID first: a later build's sweep knows whose it is.
    let builds = crate::private_dir(&root.join("builds"))?;
    let base = builds.join(format!(
        "{}-context-{}",
        std::process::id(),
        &berth_engine::new_id()[..16]
    ));
    let dir = base.join("ctx");
    std::fs::create_dir_all(&dir)
        .map_err(|e| BuildError::io(format!("create {}", dir.display()), e))?;
    let ctx = TempContext {
        dir: base.clone(),
        dockerfile: None,
    };
    let spool = base.join("input");
    let mut f =
        std::fs::File::create_new(&spool).map_err(|e| BuildError::io("spool the context", e))?;
    std::io::copy(&mut input, &mut f)
        .map_err(|e| BuildError::io("read the context from stdin", e))?;
    f.flush()
        .map_err(|e| BuildError::io("spool the context", e))?;
    drop(f);
    let mut ctx = ctx;
    if crate::sources::is_archive(&spool) {
        let f = std::fs::File::open(&spool)
            .map_err(|e| BuildError::io("open the spooled context", e))?;
        let input = berth_image::layer::decompress(std::io::BufReader::new(f))
            .map_err(|e| BuildError::io("read the context archive", e))?;
        berth_image::layer::apply_with(
            input,
            &dir,
            None,
            berth_image::layer::ApplyOptions::ARCHIVE,
        )
        .map_err(|e| BuildError::Invalid(format!("the context archive on stdin: {e}")))?;
    } else {
        let text = std::fs::read_to_string(&spool).map_err(|_| {
            BuildError::Invalid(
                "stdin is neither a tar archive nor a Dockerfile (not UTF-8 text)".into(),
            )
        })?;
        ctx.dockerfile = Some(text);
    }
    let _ = std::fs::remove_file(&spool);
    Ok(ctx)
}

impl TempContext {
    /// The unpacked context.
    pub fn path(&self) -> PathBuf {
        self.dir.join("ctx")
    }
}

/// A file of the context, read with its symlinks resolved inside the
/// context (a `Dockerfile` linking to a host file reads nothing of it);
/// `None` when it does not exist.
pub fn read_in_context(dir: &Path, rel: &str) -> Result<Option<String>, BuildError> {
    let root = crate::fsutil::open_root(dir)?;
    let fd = match inroot::open_in_root(&root, rel, rustix::fs::OFlags::RDONLY) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Ok(None),
        Err(e) => {
            return Err(BuildError::io(
                format!("open {rel} in the context"),
                e.into(),
            ))
        }
    };
    let mut text = String::new();
    std::fs::File::from(fd)
        .take(crate::MAX_TEXT)
        .read_to_string(&mut text)
        .map_err(|e| BuildError::io(format!("read {rel} in the context"), e))?;
    Ok(Some(text))
}
