//! The OCI Distribution API over HTTP (axum on tokio): blobs, uploads
//! (monolithic, chunked with 416 for an out-of-order chunk, resumable
//! with status, cancel), cross-repository mounts, manifests stored
//! byte-exact, tags with pagination, deletes. Bodies stream to and from
//! disk; blob digests are checked before anything is stored.

// Helpers return a finished HTTP response as their error: it is built only
// on the error path, where its size does not matter.
#![allow(clippy::result_large_err)]

mod access;
mod blobs;
mod http;
mod listen;
mod manifests;
mod router;
mod uploads;

pub use access::form_pairs;
pub use listen::{serve, tls_config, Settings};
pub use router::router;

use std::sync::Arc;

use axum::http::{header, HeaderMap, Method};
use berth_image::digest::Digest;

use crate::storage::Storage;
use access::authorization;

/// The largest manifest accepted (the spec asks for at least 4 MiB).
pub const MAX_MANIFEST: usize = 4 << 20;

/// The media types a manifest may have.
const MANIFEST_TYPES: &[&str] = &[
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

pub struct Registry {
    pub storage: Arc<dyn Storage>,
    pub auth: crate::auth::Auth,
    /// Served over TLS (for the token realm's scheme).
    pub tls: bool,
    /// Webhooks.
    pub notify: Option<crate::notify::Notifier>,
}

impl Registry {
    pub fn new(storage: Arc<dyn Storage>, auth: crate::auth::Auth) -> Registry {
        Registry {
            storage,
            auth,
            tls: false,
            notify: None,
        }
    }

    /// Tells the webhooks about a manifest event (when there are any).
    #[allow(clippy::too_many_arguments)]
    fn event(
        &self,
        action: &'static str,
        headers: &HeaderMap,
        name: &str,
        d: &Digest,
        media_type: &str,
        size: usize,
        tag: Option<&str>,
        method: &Method,
    ) {
        let Some(n) = &self.notify else { return };
        let h = |k: header::HeaderName| {
            headers
                .get(k)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        let scheme = if self.tls { "https" } else { "http" };
        n.send(&crate::notify::Event {
            action,
            repository: name.to_string(),
            digest: d.to_string(),
            media_type: media_type.to_string(),
            size: size as u64,
            tag: tag.map(str::to_string),
            base: format!("{scheme}://{}", h(header::HOST)),
            method: method.to_string(),
            user_agent: h(header::USER_AGENT),
            actor: self.auth.actor(authorization(headers)),
        });
    }
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::storage::{BlobSource, FsStorage, GcReport, UploadSink, WriteLock};

    /// A store whose blobs come as streams, as an object store's would:
    /// everything else is the filesystem's.
    struct Streaming(FsStorage);

    impl Storage for Streaming {
        fn blob_size(&self, repo: &str, d: &Digest) -> Option<u64> {
            self.0.blob_size(repo, d)
        }
        fn open_blob(&self, d: &Digest) -> std::io::Result<BlobSource> {
            match self.0.open_blob(d)? {
                BlobSource::File(f) => Ok(BlobSource::Reader(Box::new(f))),
                other => Ok(other),
            }
        }
        fn link_blob(&self, repo: &str, d: &Digest) -> std::io::Result<()> {
            self.0.link_blob(repo, d)
        }
        fn delete_blob(&self, repo: &str, d: &Digest) -> std::io::Result<bool> {
            self.0.delete_blob(repo, d)
        }
        fn touch_blob(&self, d: &Digest) -> bool {
            self.0.touch_blob(d)
        }
        fn new_upload(&self, owner: &str) -> std::io::Result<String> {
            self.0.new_upload(owner)
        }
        fn upload_owner(&self, id: &str) -> Option<String> {
            self.0.upload_owner(id)
        }
        fn upload_size(&self, id: &str) -> Option<u64> {
            self.0.upload_size(id)
        }
        fn lock_upload(&self, id: &str) -> std::io::Result<Option<WriteLock>> {
            self.0.lock_upload(id)
        }
        fn append_upload(&self, id: &str) -> std::io::Result<Box<dyn UploadSink>> {
            self.0.append_upload(id)
        }
        fn read_upload(&self, id: &str) -> std::io::Result<Box<dyn std::io::Read + Send>> {
            self.0.read_upload(id)
        }
        fn commit_upload(&self, id: &str, d: &Digest) -> std::io::Result<()> {
            self.0.commit_upload(id, d)
        }
        fn remove_upload(&self, id: &str) {
            self.0.remove_upload(id)
        }
        fn expire_uploads(&self, ttl: std::time::Duration) -> usize {
            self.0.expire_uploads(ttl)
        }
        fn put_manifest(
            &self,
            name: &str,
            d: &Digest,
            media_type: &str,
            bytes: &[u8],
            tag: Option<&str>,
        ) -> std::io::Result<()> {
            self.0.put_manifest(name, d, media_type, bytes, tag)
        }
        fn manifest(&self, name: &str, d: &Digest) -> Option<(Vec<u8>, String)> {
            self.0.manifest(name, d)
        }
        fn delete_manifest(&self, name: &str, d: &Digest) -> std::io::Result<bool> {
            self.0.delete_manifest(name, d)
        }
        fn tag(&self, name: &str, tag: &str) -> Option<Digest> {
            self.0.tag(name, tag)
        }
        fn tags(&self, name: &str) -> Vec<String> {
            self.0.tags(name)
        }
        fn delete_tag(&self, name: &str, tag: &str) -> std::io::Result<bool> {
            self.0.delete_tag(name, tag)
        }
        fn repo_exists(&self, name: &str) -> bool {
            self.0.repo_exists(name)
        }
        fn add_referrer(
            &self,
            name: &str,
            subject: &Digest,
            d: &Digest,
            descriptor: &serde_json::Value,
        ) -> std::io::Result<()> {
            self.0.add_referrer(name, subject, d, descriptor)
        }
        fn referrers(&self, name: &str, subject: &Digest) -> Vec<serde_json::Value> {
            self.0.referrers(name, subject)
        }
        fn try_write_lock(&self) -> std::io::Result<Option<WriteLock>> {
            self.0.try_write_lock()
        }
        fn gc(&self, grace: std::time::Duration, dry_run: bool) -> std::io::Result<GcReport> {
            self.0.gc(grace, dry_run)
        }
    }

    #[test]
    fn a_streaming_store_serves_blobs_and_ranges() {
        let t = tempfile::tempdir().unwrap();
        let storage: Arc<dyn Storage> = Arc::new(Streaming(FsStorage::open(t.path()).unwrap()));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let app = router(Arc::new(Registry::new(storage, crate::auth::Auth::open())));
        rt.spawn(async move { axum::serve(listener, app).await });
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        // 1 MiB of varied bytes, pushed in one request.
        let data: Vec<u8> = (0..(1u32 << 20)).map(|i| (i * 7 % 251) as u8).collect();
        let d = Digest::sha256_of(&data);
        let r = agent
            .post(format!("http://{addr}/v2/s/blobs/uploads/?digest={d}"))
            .send(&data[..])
            .unwrap();
        assert_eq!(r.status(), 201);
        let mut r = agent
            .get(format!("http://{addr}/v2/s/blobs/{d}"))
            .call()
            .unwrap();
        assert_eq!(r.status(), 200);
        let body = r
            .body_mut()
            .with_config()
            .limit(2 << 20)
            .read_to_vec()
            .unwrap();
        assert!(body == data, "the whole blob, streamed");
        let mut r = agent
            .get(format!("http://{addr}/v2/s/blobs/{d}"))
            .header("Range", "bytes=1000-299999")
            .call()
            .unwrap();
        assert_eq!(r.status(), 206);
        let body = r.body_mut().read_to_vec().unwrap();
        assert!(body == data[1000..300000], "a range from the middle");
    }
}
