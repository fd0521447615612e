//! berth's registry: an OCI distribution server (`berth registry serve`)
//! over a storage layer that several processes may share.

/// htpasswd users, basic auth, public repositories.
pub mod auth;

/// push and pull.
pub mod client;
/// The HTTP API.
pub mod server;
/// Blobs, uploads, manifests and tags on disk.
pub mod storage;
