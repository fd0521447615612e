//! Builds the exec stub (stub/exec-stub.c): a static, libc-free program of
//! a few KB that the runtime embeds and execs a container's process
//! through (see `confine::exec_through`).

use std::path::PathBuf;

fn main() {
    let src = "stub/exec-stub.c";
    println!("cargo:rerun-if-changed={src}");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR")).join("exec-stub");
    let compiler = cc::Build::new().get_compiler();
    let mut cmd = std::process::Command::new(compiler.path());
    cmd.args([
        "-static",
        "-nostdlib",
        "-ffreestanding",
        "-Os",
        "-fno-stack-protector",
        "-fno-asynchronous-unwind-tables",
        "-fno-pie",
        "-no-pie",
        "-Wl,--build-id=none",
        "-Wl,-z,noexecstack",
        "-Wl,-z,max-page-size=4096",
        "-s",
        "-o",
    ])
    .arg(&out)
    .arg(src);
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("running {:?} for the exec stub: {e}", compiler.path()));
    assert!(status.success(), "building the exec stub failed: {cmd:?}");
}
