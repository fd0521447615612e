//! berth's OCI runtime: turns an OCI bundle into an isolated process.
//!
//! The `berth-runc` binary (runc's command line) and `berth run` both call
//! this library. The process that clones a container is single-threaded.

/// Capabilities: bounding, effective, permitted, inheritable and ambient sets.
pub mod caps;
/// Control groups: v1 (and hybrid) and v2 behind one trait.
pub mod cgroups;
/// What keeps a process from the host: fds it may hold, its cwd.
pub mod confine;
/// The container's terminal and the console socket.
pub mod console;
/// The lifecycle: create, start, kill, delete, run.
pub mod container;
/// OCI hooks.
pub mod hooks;
/// Log lines in runc's (logrus) text and JSON formats.
pub mod log;
/// Root filesystem: mounts, devices, pivot_root, masked paths.
pub mod rootfs;
/// Seccomp: OCI filters compiled to BPF, and Docker's profile format.
pub mod seccomp;
/// Signal names and wait statuses.
pub mod signal;
/// Loading and checking a bundle's config.json.
pub mod spec;
/// Persisted container state and live status.
pub mod state;

/// A unit test that cannot run on this host says so to the runner:
/// `scripts/test.sh` sets `BERTH_SKIP_LOG` and counts every line of it in
/// its summary. Run any other way, the test fails with the reason, so a
/// skip never passes unseen.
#[cfg(test)]
pub(crate) fn skip(test: &str, why: &str) {
    use std::io::Write;
    let Some(path) = std::env::var_os("BERTH_SKIP_LOG") else {
        panic!("{test} cannot run here: {why} (scripts/test.sh counts it as a skip)");
    };
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("{test}: cannot record its skip in {path:?}: {e}"));
    writeln!(f, "berth-runtime {test}: {why}")
        .unwrap_or_else(|e| panic!("{test}: cannot record its skip in {path:?}: {e}"));
}
