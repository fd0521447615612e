//! berth's registry: an OCI distribution server (`berth registry serve`)
//! over a storage layer that several processes may share. The client is
//! `berth-registry-client`.

/// htpasswd users, basic auth, public repositories, per-repository rules.
pub mod auth;

/// The registry's config file.
pub mod config;
/// Webhooks on push, pull and delete.
pub mod notify;
/// Blobs sent with sendfile over plain HTTP.
pub mod sendfile;
/// The HTTP API.
pub mod server;
/// Blobs, uploads, manifests and tags on disk.
pub mod storage;
/// Signed bearer tokens (ES256 JWTs).
pub mod token;
