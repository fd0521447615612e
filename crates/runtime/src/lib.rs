//! berth's OCI runtime: turns an OCI bundle into an isolated process.
//!
//! The `berth-runc` binary (runc's command line) and `berth run` both call
//! this library. The process that clones a container is single-threaded.

/// Control groups: v1 (and hybrid) and v2 behind one trait.
pub mod cgroups;
/// Capabilities: bounding, effective, permitted, inheritable and ambient sets.
pub mod caps;
/// Seccomp: OCI filters compiled to BPF, and Docker's profile format.
pub mod seccomp;
