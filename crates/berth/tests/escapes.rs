//! Regression tests for container escapes, each attacking the way an
//! attacker would, through the berth binary as root.

mod util;

use std::fs;

use util::*;

/// The range of fd numbers an attacker tries (CVE-2024-21626's exploit
/// walks them); the CLI holds its store, database and cgroup fds there.
const FDS: std::ops::RangeInclusive<u32> = 3..=64;

#[track_caller]
fn refused(r: &Run, what: &str) {
    assert!(
        !r.success() && !r.stdout.contains("RAN"),
        "{what}: the process ran with its cwd through a leaked fd: {r}"
    );
    assert!(r.stderr.contains("/proc/self/fd"), "{what}: {r}");
}

/// `berth run -w /proc/self/fd/N` never starts the process.
#[test]
fn run_workdir_through_a_leaked_fd_is_refused() {
    let b = Berth::with_busybox();
    for n in FDS {
        let w = format!("/proc/self/fd/{n}");
        let r = b.run(&[
            "run",
            "--rm",
            "-w",
            &w,
            "busybox:1.35",
            "sh",
            "-c",
            "echo RAN; ls",
        ]);
        refused(&r, &format!("run -w {w}"));
    }
    assert_eq!(b.ok(&["ps", "-aq"]), "");
}

/// An image whose WORKDIR is /proc/self/fd/N (as a hostile image author
/// writes it), and a Dockerfile WORKDIR followed by RUN: the build fails
/// at that RUN, and running the image fails too.
#[test]
fn image_and_dockerfile_workdir_through_a_leaked_fd_are_refused() {
    let b = Berth::with_busybox();
    for n in FDS {
        let dir = b.path(&format!("ctx{n}"));
        fs::create_dir_all(&dir).unwrap();
        fs::write(
            dir.join("Dockerfile"),
            format!("FROM busybox:1.35\nWORKDIR /proc/self/fd/{n}\nRUN echo RAN; ls\n"),
        )
        .unwrap();
        let r = b.run(&["build", "-t", "evil:run", dir.to_str().unwrap()]);
        assert!(
            !r.success(),
            "build with WORKDIR /proc/self/fd/{n} + RUN succeeded: {r}"
        );
        assert!(r.stderr.contains("/proc/self/fd"), "{r}");
        fs::write(
            dir.join("Dockerfile"),
            format!("FROM busybox:1.35\nWORKDIR /proc/self/fd/{n}\nCMD [\"sh\", \"-c\", \"echo RAN; ls\"]\n"),
        )
        .unwrap();
        b.ok(&[
            "build",
            "-q",
            "-t",
            &format!("evil:{n}"),
            dir.to_str().unwrap(),
        ]);
        let r = b.run(&["run", "--rm", &format!("evil:{n}")]);
        refused(&r, &format!("image WORKDIR /proc/self/fd/{n}"));
    }
}

/// `berth exec -w /proc/self/fd/N` in a running container.
#[test]
fn exec_workdir_through_a_leaked_fd_is_refused() {
    let b = Berth::with_busybox();
    b.ok(&[
        "run",
        "-d",
        "--name",
        "target",
        "busybox:1.35",
        "sleep",
        "60",
    ]);
    for n in FDS {
        let w = format!("/proc/self/fd/{n}");
        let r = b.run(&["exec", "-w", &w, "target", "sh", "-c", "echo RAN; ls"]);
        refused(&r, &format!("exec -w {w}"));
    }
    // The container is unharmed.
    assert_eq!(b.ok(&["exec", "-w", "/etc", "target", "pwd"]), "/etc\n");
    b.ok(&["rm", "-f", "target"]);
}
