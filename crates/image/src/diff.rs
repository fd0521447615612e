//! A container's changes, read from its overlay upper directory (never a
//! walk of the whole root filesystem): the A/C/D list `docker diff` prints,
//! and the layer tar `commit` stores, with overlay whiteouts turned back
//! into OCI ones (`.wh.NAME` files, `.wh..wh..opq` markers).

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::layer::{OVERLAY_OPAQUE_XATTR, WHITEOUT_OPAQUE, WHITEOUT_PREFIX};

/// One line of `docker diff`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Added,
    Changed,
    Deleted,
}

impl Kind {
    pub fn letter(self) -> char {
        match self {
            Kind::Added => 'A',
            Kind::Changed => 'C',
            Kind::Deleted => 'D',
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Absolute, as seen in the container.
    pub path: String,
    pub kind: Kind,
}

fn is_whiteout(md: &fs::Metadata) -> bool {
    md.file_type().is_char_device() && md.rdev() == 0
}

fn is_opaque(path: &Path) -> bool {
    let mut v = [0u8; 4];
    matches!(rustix::fs::lgetxattr(path, OVERLAY_OPAQUE_XATTR, &mut v), Ok(1) if v[0] == b'y')
}

/// Whether `rel` exists in the image below the upper dir: `lowers` top
/// first, each an overlay layer directory (whiteouts as overlay whiteouts).
fn in_lowers(lowers: &[PathBuf], rel: &Path) -> bool {
    for lower in lowers {
        let p = lower.join(rel);
        if let Ok(md) = fs::symlink_metadata(&p) {
            return !is_whiteout(&md);
        }
        // An opaque ancestor in this layer hides everything below it.
        let mut anc = rel.parent();
        while let Some(a) = anc {
            if a.as_os_str().is_empty() {
                break;
            }
            if is_opaque(&lower.join(a)) {
                return false;
            }
            anc = a.parent();
        }
    }
    false
}

/// Sorted directory entries (a stable order for the list and the tar).
fn sorted_entries(dir: &Path) -> io::Result<Vec<OsString>> {
    let mut names: Vec<OsString> = fs::read_dir(dir)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<_>>()?;
    names.sort();
    Ok(names)
}

/// The changes in `upper` against the image layers `lowers` (top first),
/// sorted by path, as `docker diff` lists them.
pub fn changes(upper: &Path, lowers: &[PathBuf]) -> io::Result<Vec<Change>> {
    let mut out = Vec::new();
    walk_changes(upper, Path::new(""), lowers, false, &mut out)?;
    Ok(out)
}

fn walk_changes(
    upper: &Path,
    rel: &Path,
    lowers: &[PathBuf],
    under_new: bool,
    out: &mut Vec<Change>,
) -> io::Result<()> {
    for name in sorted_entries(&upper.join(rel))? {
        let r = rel.join(&name);
        let md = fs::symlink_metadata(upper.join(&r))?;
        let path = format!("/{}", r.display());
        if is_whiteout(&md) {
            out.push(Change {
                path,
                kind: Kind::Deleted,
            });
            continue;
        }
        let existed = !under_new && in_lowers(lowers, &r);
        out.push(Change {
            path,
            kind: if existed { Kind::Changed } else { Kind::Added },
        });
        if md.is_dir() {
            let opaque = is_opaque(&upper.join(&r));
            walk_changes(upper, &r, lowers, under_new || !existed || opaque, out)?;
        }
    }
    Ok(())
}

/// Writes the upper directory as an OCI layer tar: entries in path order,
/// owners, modes, times, hardlinks and `security.capability` kept; an
/// overlay whiteout becomes a `.wh.NAME` file and an opaque directory gets
/// a `.wh..wh..opq` marker.
pub fn write_tar(upper: &Path, out: impl Write) -> io::Result<()> {
    write_layer_tar(upper, out, None).map(|_| ())
}

/// `write_tar`, with every modification time later than `clamp` set to it
/// (`SOURCE_DATE_EPOCH`, for reproducible layers). Returns the bytes of
/// file content written.
pub fn write_layer_tar(upper: &Path, out: impl Write, clamp: Option<u64>) -> io::Result<u64> {
    let mut w = TreeWriter::new(out, true, None);
    w.clamp = clamp;
    w.dir(upper, Path::new(""))?;
    let content = w.content;
    w.finish()?;
    Ok(content)
}

/// `berth cp`'s archive: the file, directory or link at `src` (followed
/// when `follow`) named `top` in the tar, or, when `top` is None, only
/// the contents of directory `src`. `owner` replaces every entry's owner.
pub fn write_path_tar(
    src: &Path,
    top: Option<&str>,
    follow: bool,
    owner: Option<(u32, u32)>,
    out: impl Write,
) -> io::Result<()> {
    let mut w = TreeWriter::new(out, false, owner);
    let md = if follow {
        fs::metadata(src)?
    } else {
        fs::symlink_metadata(src)?
    };
    match top {
        None => {
            if !md.is_dir() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "only a directory's contents can be copied with /.",
                ));
            }
            w.dir(src, Path::new(""))?;
        }
        Some(name) => {
            w.follow_top = follow;
            w.entry(src, Path::new(name), md)?;
        }
    }
    w.finish()
}

/// Opens the regular file `full` was when `md` was read, or fails: the
/// tree may be a running container's, which can swap a file for a device
/// node, a FIFO or a symlink between the look and the open. Nothing is
/// followed (unless `follow`: a symlink the user asked to follow, `cp -L`),
/// nothing blocks (a FIFO), no terminal is taken, and what was opened
/// must be the very file looked at.
fn open_regular(full: &Path, md: &fs::Metadata, follow: bool) -> io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let nofollow = if follow { 0 } else { libc::O_NOFOLLOW };
    let f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(nofollow | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(full)?;
    let now = f.metadata()?;
    if !now.file_type().is_file() || now.dev() != md.dev() || now.ino() != md.ino() {
        return Err(io::Error::other(format!(
            "{} changed while it was being read",
            full.display()
        )));
    }
    Ok(f)
}

fn header_for(md: &fs::Metadata, kind: tar::EntryType, owner: Option<(u32, u32)>) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(md.mode() & 0o7777);
    let (uid, gid) = owner.unwrap_or((md.uid(), md.gid()));
    h.set_uid(uid as u64);
    h.set_gid(gid as u64);
    h.set_mtime(md.mtime().max(0) as u64);
    h.set_size(0);
    h
}

fn xattrs<W: Write>(b: &mut tar::Builder<W>, path: &Path) -> io::Result<()> {
    let mut buf = [0u8; 1024];
    if let Ok(n) = rustix::fs::lgetxattr(path, "security.capability", &mut buf) {
        b.append_pax_extensions([("SCHILY.xattr.security.capability", &buf[..n])])?;
    }
    Ok(())
}

/// Writes a tree as tar entries: with `whiteouts`, overlay whiteouts and
/// opaque directories become their OCI forms (a layer); `owner` replaces
/// every entry's uid and gid.
struct TreeWriter<W: Write> {
    b: tar::Builder<W>,
    whiteouts: bool,
    owner: Option<(u32, u32)>,
    links: HashMap<(u64, u64), PathBuf>,
    /// Modification times later than this are written as this.
    clamp: Option<u64>,
    /// Bytes of file content written.
    content: u64,
    /// The next entry was looked at through its symlink (`cp -L`'s top).
    follow_top: bool,
}

impl<W: Write> TreeWriter<W> {
    fn new(out: W, whiteouts: bool, owner: Option<(u32, u32)>) -> Self {
        let mut b = tar::Builder::new(out);
        b.follow_symlinks(false);
        TreeWriter {
            b,
            whiteouts,
            owner,
            links: HashMap::new(),
            clamp: None,
            content: 0,
            follow_top: false,
        }
    }

    fn finish(self) -> io::Result<()> {
        self.b.into_inner()?.flush()
    }

    fn header(&self, md: &fs::Metadata, kind: tar::EntryType) -> tar::Header {
        let mut h = header_for(md, kind, self.owner);
        if let Some(c) = self.clamp {
            if h.mtime().unwrap_or(0) > c {
                h.set_mtime(c);
            }
        }
        h
    }

    /// One entry: the file at `full`, named `r`.
    fn entry(&mut self, full: &Path, r: &Path, md: fs::Metadata) -> io::Result<()> {
        let follow = std::mem::take(&mut self.follow_top);
        let ft = md.file_type();
        if self.whiteouts && is_whiteout(&md) {
            let mut wh = OsString::from(WHITEOUT_PREFIX);
            wh.push(r.file_name().unwrap_or_default());
            let mut h = self.header(&md, tar::EntryType::Regular);
            h.set_mode(0o600);
            let name = r.parent().unwrap_or(Path::new("")).join(wh);
            return self.b.append_data(&mut h, name, io::empty());
        }
        if ft.is_dir() {
            let mut h = self.header(&md, tar::EntryType::Directory);
            xattrs(&mut self.b, full)?;
            // Directory names end in a slash, as Docker and GNU tar write
            // them.
            let mut name = r.as_os_str().to_owned();
            name.push("/");
            self.b.append_data(&mut h, name, io::empty())?;
            if self.whiteouts && is_opaque(full) {
                let mut h = self.header(&md, tar::EntryType::Regular);
                h.set_mode(0o600);
                self.b
                    .append_data(&mut h, r.join(WHITEOUT_OPAQUE), io::empty())?;
            }
            return self.dir(full, r);
        }
        if md.nlink() > 1 {
            if let Some(first) = self.links.get(&(md.dev(), md.ino())) {
                let first = first.clone();
                let mut h = self.header(&md, tar::EntryType::Link);
                return self.b.append_link(&mut h, r, first);
            }
            self.links.insert((md.dev(), md.ino()), r.to_path_buf());
        }
        if ft.is_file() {
            let mut h = self.header(&md, tar::EntryType::Regular);
            h.set_size(md.len());
            xattrs(&mut self.b, full)?;
            // Exactly the size in the header, whatever the file does
            // meanwhile (a file growing during the copy must not spill
            // into the next header): cut or zero-padded.
            let len = md.len();
            self.content += len;
            let body = io::Read::take(
                io::Read::chain(
                    io::Read::take(open_regular(full, &md, follow)?, len),
                    io::repeat(0),
                ),
                len,
            );
            self.b.append_data(&mut h, r, body)?;
        } else if ft.is_symlink() {
            let target = fs::read_link(full)?;
            let mut h = self.header(&md, tar::EntryType::Symlink);
            self.b.append_link(&mut h, r, target)?;
        } else if ft.is_fifo() {
            let mut h = self.header(&md, tar::EntryType::Fifo);
            self.b.append_data(&mut h, r, io::empty())?;
        } else if ft.is_char_device() || ft.is_block_device() {
            let kind = if ft.is_char_device() {
                tar::EntryType::Char
            } else {
                tar::EntryType::Block
            };
            let mut h = self.header(&md, kind);
            let rdev = md.rdev();
            h.set_device_major(rustix::fs::major(rdev))?;
            h.set_device_minor(rustix::fs::minor(rdev))?;
            self.b.append_data(&mut h, r, io::empty())?;
        }
        // Sockets are not carried in archives.
        Ok(())
    }

    /// The children of directory `full`, named under `r`.
    fn dir(&mut self, full: &Path, r: &Path) -> io::Result<()> {
        for name in sorted_entries(full)? {
            let child = full.join(&name);
            let md = fs::symlink_metadata(&child)?;
            self.entry(&child, &r.join(&name), md)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file swapped for a FIFO, a device node or a symlink after it was
    /// looked at is not opened as what it became (a running container's
    /// tree, exported or copied, can do this on purpose).
    #[test]
    fn a_file_swapped_after_the_look_is_not_opened() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        fs::write(&p, "data").unwrap();
        let md = fs::symlink_metadata(&p).unwrap();
        assert!(open_regular(&p, &md, false).is_ok());
        // Through a symlink only when following was asked for (`cp -L`).
        let l = dir.path().join("l");
        std::os::unix::fs::symlink(&p, &l).unwrap();
        assert!(open_regular(&l, &md, true).is_ok());
        assert!(open_regular(&l, &md, false).is_err());
        // A FIFO: refused at once, not waited on.
        fs::remove_file(&p).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &p,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        assert!(open_regular(&p, &md, false).is_err());
        // /dev/null's node: refused (and never opened as a device).
        fs::remove_file(&p).unwrap();
        std::os::unix::fs::symlink("/dev/null", &p).unwrap();
        assert!(open_regular(&p, &md, false).is_err());
        fs::remove_file(&p).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &p,
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::from_raw_mode(0o644),
            rustix::fs::makedev(1, 3),
        )
        .unwrap();
        assert!(open_regular(&p, &md, false).is_err());
    }

    fn mknod_whiteout(p: &Path) {
        rustix::fs::mknodat(
            rustix::fs::CWD,
            p,
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::from_raw_mode(0),
            0,
        )
        .expect("mknod a whiteout (needs root)");
    }

    #[test]
    fn lists_and_tars_added_changed_deleted() {
        let t = tempfile::tempdir().unwrap();
        let lower = t.path().join("lower");
        let upper = t.path().join("upper");
        for d in ["etc", "var/old", "opq/inner"] {
            fs::create_dir_all(lower.join(d)).unwrap();
        }
        fs::write(lower.join("etc/passwd"), "root").unwrap();
        fs::write(lower.join("etc/gone"), "x").unwrap();
        fs::write(lower.join("opq/inner/f"), "x").unwrap();
        fs::create_dir_all(upper.join("etc")).unwrap();
        fs::create_dir_all(upper.join("new/sub")).unwrap();
        fs::create_dir_all(upper.join("opq")).unwrap();
        rustix::fs::lsetxattr(
            upper.join("opq"),
            OVERLAY_OPAQUE_XATTR,
            b"y",
            rustix::fs::XattrFlags::empty(),
        )
        .unwrap();
        fs::write(upper.join("opq/fresh"), "x").unwrap();
        fs::write(upper.join("etc/passwd"), "root2").unwrap();
        fs::hard_link(upper.join("etc/passwd"), upper.join("new/link")).unwrap();
        mknod_whiteout(&upper.join("etc/gone"));
        std::os::unix::fs::symlink("/etc/passwd", upper.join("new/sub/s")).unwrap();
        let list: Vec<String> = changes(&upper, std::slice::from_ref(&lower))
            .unwrap()
            .iter()
            .map(|c| format!("{} {}", c.kind.letter(), c.path))
            .collect();
        assert_eq!(
            list,
            [
                "C /etc",
                "D /etc/gone",
                "C /etc/passwd",
                "A /new",
                "A /new/link",
                "A /new/sub",
                "A /new/sub/s",
                "C /opq",
                "A /opq/fresh",
            ]
        );
        let mut tar_bytes = Vec::new();
        write_tar(&upper, &mut tar_bytes).unwrap();
        let mut a = tar::Archive::new(&tar_bytes[..]);
        let names: Vec<(String, tar::EntryType)> = a
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.path().unwrap().display().to_string(),
                    e.header().entry_type(),
                )
            })
            .collect();
        use tar::EntryType as T;
        assert_eq!(
            names,
            [
                ("etc/".to_string(), T::Directory),
                ("etc/.wh.gone".to_string(), T::Regular),
                ("etc/passwd".to_string(), T::Regular),
                ("new/".to_string(), T::Directory),
                ("new/link".to_string(), T::Link),
                ("new/sub/".to_string(), T::Directory),
                ("new/sub/s".to_string(), T::Symlink),
                ("opq/".to_string(), T::Directory),
                ("opq/.wh..wh..opq".to_string(), T::Regular),
                ("opq/fresh".to_string(), T::Regular),
            ]
        );
        // Applied as a layer, the tar gives back the same upper dir.
        let back = t.path().join("back");
        fs::create_dir(&back).unwrap();
        crate::layer::apply(&tar_bytes[..], &back, None).unwrap();
        let again: Vec<Change> = changes(&back, &[lower]).unwrap();
        assert_eq!(again.len(), list.len());
    }
}
