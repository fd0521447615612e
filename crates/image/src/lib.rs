//! The berth image store.
//!
//! Everything berth knows about images lives here: Docker's reference
//! grammar, the content-addressed blob store, image metadata in SQLite,
//! layer extraction into overlay-ready snapshots, and the interchange
//! formats (OCI image layout, docker-archive).

/// Layers and images made by `berth build`, and the layers it holds.
pub mod built;
/// A container's changes from its overlay upper dir: `diff` and `commit`.
pub mod diff;
/// Content digests (`sha256:...`, `sha512:...`) and streaming verification.
pub mod digest;
/// Go-style durations.
pub mod duration;
/// Image removal and garbage collection.
pub mod gc;
/// `berth import`: a root filesystem tar into a one-layer image.
pub mod import;
/// Docker-shaped inspect and history views.
pub mod inspect;
/// Layer apply: tar layers into overlay-ready snapshot directories.
pub mod layer;
/// `berth load`: OCI layouts and docker-archives into the store.
pub mod load;
/// Docker's image reference grammar and normalisation.
pub mod reference;
/// `berth save`: docker-archive, OCI archive and OCI layout output.
pub mod save;
/// The on-disk store: blobs, snapshots and image metadata.
pub mod store;
/// Sizes with units and random hex ids, shared by every crate above.
pub mod units;
