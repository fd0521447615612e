//! Where a registry keeps its content. The filesystem layout (the embedded
//! default) is designed so that several registry processes may share one
//! store: every state change is a file created or renamed atomically, no
//! state lives only in one process's memory.
//!
//! ```text
//! DIR/blobs/<alg>/<hex>                        content, written once, renamed in
//! DIR/uploads/<id>/data                        an upload in progress
//! DIR/repos/<name>/_blobs/<alg>/<hex>          the blob is part of the repository
//! DIR/repos/<name>/_manifests/<alg>/<hex>      a manifest of it (content: media type)
//! DIR/repos/<name>/_tags/<tag>                 a tag (content: the manifest digest)
//! ```

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use berth_image::digest::Digest;

/// Repository names as the distribution spec allows them:
/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`,
/// at most 255 characters.
pub fn valid_name(name: &str) -> bool {
    if name.is_empty() || name.len() > 255 {
        return false;
    }
    name.split('/').all(|comp| {
        let b = comp.as_bytes();
        if b.is_empty() || !is_alnum(b[0]) || !is_alnum(b[b.len() - 1]) {
            return false;
        }
        let mut i = 0;
        while i < b.len() {
            if is_alnum(b[i]) {
                i += 1;
                continue;
            }
            // A separator: ".", "_", "__" or one or more "-".
            let start = i;
            while i < b.len() && !is_alnum(b[i]) {
                i += 1;
            }
            let sep = &comp[start..i];
            let ok = matches!(sep, "." | "_" | "__") || sep.bytes().all(|c| c == b'-');
            if !ok {
                return false;
            }
        }
        true
    })
}

fn is_alnum(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// Tags: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
pub fn valid_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// The filesystem store.
#[derive(Debug, Clone)]
pub struct FsStorage {
    dir: PathBuf,
}

/// Writes `data` to `path` through a temporary file renamed into place.
fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    let dir = path.parent().expect("store paths have parents");
    fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".tmp-{}", random_id()));
    let mut f = fs::File::create_new(&tmp)?;
    f.write_all(data)?;
    drop(f);
    fs::rename(&tmp, path).inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })
}

/// 32 random hex digits.
pub fn random_id() -> String {
    let mut b = [0u8; 16];
    let mut filled = 0;
    while filled < b.len() {
        match rustix::rand::getrandom(&mut b[filled..], rustix::rand::GetRandomFlags::empty()) {
            Ok(n) => filled += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => panic!("getrandom: {e}"),
        }
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl FsStorage {
    pub fn open(dir: &Path) -> io::Result<FsStorage> {
        for d in ["blobs", "uploads", "repos"] {
            fs::create_dir_all(dir.join(d))?;
        }
        Ok(FsStorage {
            dir: dir.to_path_buf(),
        })
    }

    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.dir
            .join("blobs")
            .join(d.algorithm().as_str())
            .join(d.hex())
    }

    fn repo(&self, name: &str) -> PathBuf {
        self.dir.join("repos").join(name)
    }

    fn link(&self, name: &str, kind: &str, d: &Digest) -> PathBuf {
        self.repo(name)
            .join(kind)
            .join(d.algorithm().as_str())
            .join(d.hex())
    }

    /// The blob's size, if repository `name` has it.
    pub fn blob_size(&self, name: &str, d: &Digest) -> Option<u64> {
        if !self.link(name, "_blobs", d).exists() && !self.link(name, "_manifests", d).exists() {
            return None;
        }
        fs::metadata(self.blob_path(d)).ok().map(|m| m.len())
    }

    /// Whether the store holds the blob at all (any repository).
    pub fn has_blob(&self, d: &Digest) -> bool {
        self.blob_path(d).exists()
    }

    /// Makes blob `d` part of repository `name`.
    pub fn link_blob(&self, name: &str, d: &Digest) -> io::Result<()> {
        write_atomic(&self.link(name, "_blobs", d), b"")
    }

    /// Moves a verified upload file into the blob store (a blob that is
    /// already there is kept; the content is the same).
    pub fn commit_blob(&self, file: &Path, d: &Digest) -> io::Result<()> {
        let dest = self.blob_path(d);
        fs::create_dir_all(dest.parent().expect("has parent"))?;
        if dest.exists() {
            return fs::remove_file(file);
        }
        fs::rename(file, &dest)
    }

    /// A new upload: its id and its data file.
    pub fn new_upload(&self) -> io::Result<(String, PathBuf)> {
        let id = random_id();
        let dir = self.dir.join("uploads").join(&id);
        fs::create_dir_all(&dir)?;
        let data = dir.join("data");
        fs::File::create_new(&data)?;
        Ok((id, data))
    }

    /// The data file of upload `id`, if it exists (ids are checked: hex).
    pub fn upload(&self, id: &str) -> Option<PathBuf> {
        if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let p = self.dir.join("uploads").join(id).join("data");
        p.exists().then_some(p)
    }

    /// Removes uploads untouched for `ttl` (abandoned by their clients);
    /// returns how many.
    pub fn expire_uploads(&self, ttl: std::time::Duration) -> usize {
        let Ok(dir) = fs::read_dir(self.dir.join("uploads")) else {
            return 0;
        };
        let mut n = 0;
        for e in dir.flatten() {
            let data = e.path().join("data");
            let age = fs::metadata(&data)
                .or_else(|_| e.metadata())
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok());
            if age.is_some_and(|a| a > ttl) && fs::remove_dir_all(e.path()).is_ok() {
                n += 1;
            }
        }
        n
    }

    pub fn remove_upload(&self, id: &str) {
        if self.upload(id).is_some() {
            let _ = fs::remove_dir_all(self.dir.join("uploads").join(id));
        }
    }

    /// Stores a manifest's exact bytes as a blob of repository `name`, with
    /// its media type; tags it when `tag` is given.
    pub fn put_manifest(
        &self,
        name: &str,
        d: &Digest,
        media_type: &str,
        bytes: &[u8],
        tag: Option<&str>,
    ) -> io::Result<()> {
        let blob = self.blob_path(d);
        if !blob.exists() {
            write_atomic(&blob, bytes)?;
        }
        write_atomic(&self.link(name, "_manifests", d), media_type.as_bytes())?;
        if let Some(t) = tag {
            write_atomic(
                &self.repo(name).join("_tags").join(t),
                d.to_string().as_bytes(),
            )?;
        }
        Ok(())
    }

    /// Records manifest `d` (its descriptor) as a referrer of `subject`.
    pub fn add_referrer(
        &self,
        name: &str,
        subject: &Digest,
        d: &Digest,
        descriptor: &serde_json::Value,
    ) -> io::Result<()> {
        let path = self
            .repo(name)
            .join("_referrers")
            .join(subject.algorithm().as_str())
            .join(subject.hex())
            .join(format!("{}-{}", d.algorithm().as_str(), d.hex()));
        write_atomic(&path, descriptor.to_string().as_bytes())
    }

    /// The descriptors of the manifests that name `subject`, still in the
    /// repository.
    pub fn referrers(&self, name: &str, subject: &Digest) -> Vec<serde_json::Value> {
        let dir = self
            .repo(name)
            .join("_referrers")
            .join(subject.algorithm().as_str())
            .join(subject.hex());
        let mut out: Vec<(String, serde_json::Value)> = fs::read_dir(dir)
            .map(|d| {
                d.filter_map(|e| {
                    let e = e.ok()?;
                    let fname = e.file_name().into_string().ok()?;
                    let (alg, hex) = fname.split_once('-')?;
                    let digest: Digest = format!("{alg}:{hex}").parse().ok()?;
                    // Deleted since: no longer a referrer.
                    if !self.link(name, "_manifests", &digest).exists() {
                        return None;
                    }
                    let v = serde_json::from_slice(&fs::read(e.path()).ok()?).ok()?;
                    Some((fname, v))
                })
                .collect()
            })
            .unwrap_or_default();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out.into_iter().map(|(_, v)| v).collect()
    }

    /// The digest a tag points to.
    pub fn tag(&self, name: &str, tag: &str) -> Option<Digest> {
        fs::read_to_string(self.repo(name).join("_tags").join(tag))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// A manifest of repository `name`: its bytes and media type.
    pub fn manifest(&self, name: &str, d: &Digest) -> Option<(Vec<u8>, String)> {
        let media = fs::read_to_string(self.link(name, "_manifests", d)).ok()?;
        let bytes = fs::read(self.blob_path(d)).ok()?;
        Some((bytes, media))
    }

    /// Removes a manifest from the repository, with the tags pointing to
    /// it; false if it was not there.
    pub fn delete_manifest(&self, name: &str, d: &Digest) -> io::Result<bool> {
        let link = self.link(name, "_manifests", d);
        if !link.exists() {
            return Ok(false);
        }
        for t in self.tags(name) {
            if self.tag(name, &t).as_ref() == Some(d) {
                let _ = fs::remove_file(self.repo(name).join("_tags").join(&t));
            }
        }
        fs::remove_file(link)?;
        Ok(true)
    }

    /// Removes a tag; false if it was not there.
    pub fn delete_tag(&self, name: &str, tag: &str) -> io::Result<bool> {
        match fs::remove_file(self.repo(name).join("_tags").join(tag)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Unlinks a blob from the repository; false if it was not there.
    pub fn delete_blob(&self, name: &str, d: &Digest) -> io::Result<bool> {
        match fs::remove_file(self.link(name, "_blobs", d)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The repository's tags, sorted.
    pub fn tags(&self, name: &str) -> Vec<String> {
        let mut out: Vec<String> = fs::read_dir(self.repo(name).join("_tags"))
            .map(|d| {
                d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .filter(|n| !n.starts_with(".tmp-"))
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    }

    pub fn repo_exists(&self, name: &str) -> bool {
        self.repo(name).is_dir()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_tags() {
        for ok in ["a", "library/busybox", "a.b_c__d-e---f/g0", "x/y/z"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in [
            "", "A", "a/", "/a", "a//b", "a..b", "a___b", "-a", "a-", "a/.b", "a b",
        ] {
            assert!(!valid_name(bad), "{bad}");
        }
        assert!(valid_name(&"a".repeat(255)) && !valid_name(&"a".repeat(256)));
        assert!(valid_tag("1.0") && valid_tag("_x") && valid_tag("Latest-2"));
        assert!(!valid_tag(".x") && !valid_tag("-x") && !valid_tag("a/b") && !valid_tag(""));
        assert!(!valid_tag(&"a".repeat(129)));
    }

    #[test]
    fn manifests_tags_and_links() {
        let t = tempfile::tempdir().unwrap();
        let s = FsStorage::open(t.path()).unwrap();
        let m = br#"{"schemaVersion":2}"#;
        let d = Digest::sha256_of(m);
        s.put_manifest(
            "a/b",
            &d,
            "application/vnd.oci.image.manifest.v1+json",
            m,
            Some("1.0"),
        )
        .unwrap();
        assert_eq!(s.tag("a/b", "1.0"), Some(d.clone()));
        let (bytes, media) = s.manifest("a/b", &d).unwrap();
        assert_eq!(bytes, m);
        assert_eq!(media, "application/vnd.oci.image.manifest.v1+json");
        assert!(
            s.manifest("other", &d).is_none(),
            "not linked to another repository"
        );
        assert_eq!(s.tags("a/b"), ["1.0"]);
        assert!(s.delete_manifest("a/b", &d).unwrap());
        assert!(s.tags("a/b").is_empty());
        assert!(s.manifest("a/b", &d).is_none());
    }
}
