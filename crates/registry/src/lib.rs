//! berth's registry: an OCI distribution server (`berth registry serve`)
//! over a storage layer that several processes may share.

/// htpasswd users, basic auth, public repositories, per-repository rules.
pub mod auth;

/// push and pull.
pub mod client;
/// The registry's config file.
pub mod config;
/// Webhooks on push, pull and delete.
pub mod notify;
/// Progress of push and pull: bars, lines or nothing.
pub mod progress;
/// Blobs sent with sendfile over plain HTTP.
pub mod sendfile;
/// The HTTP API.
pub mod server;
/// Blobs, uploads, manifests and tags on disk.
pub mod storage;
/// Signed bearer tokens (ES256 JWTs).
pub mod token;
