//! berth's registry client: push, pull and login against OCI
//! distribution registries (docker's token and basic auth, TLS settings
//! per registry), apart from the server so that what pulls does not link
//! it.

/// Push and pull.
pub mod client;
/// Progress of push and pull: the sink front ends render, plain lines,
/// or nothing.
pub mod progress;

pub use client::*;
