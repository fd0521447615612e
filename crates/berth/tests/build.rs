//! `berth build`, through the binary, as root, with the busybox fixture as
//! the base: Docker's sample Dockerfile built to the same run output and
//! config as Docker's own build, the cache, reproducible digests, and the
//! errors a bad Dockerfile gets.

mod util;

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;
use util::*;

fn berth() -> Berth {
    Berth::with_busybox()
}

/// A context directory with a Dockerfile and files.
fn context(b: &Berth, name: &str, dockerfile: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = b.path(name);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("Dockerfile"), dockerfile).unwrap();
    for (p, text) in files {
        let f = dir.join(p);
        fs::create_dir_all(f.parent().unwrap()).unwrap();
        fs::write(f, text).unwrap();
    }
    dir
}

fn config(b: &Berth, image: &str) -> Value {
    let out = b.ok(&["image", "inspect", "--format", "{{json .Config}}", image]);
    serde_json::from_str(out.trim()).unwrap()
}

fn build(b: &Berth, dir: &Path, tag: &str) -> Run {
    b.run(&["build", "-t", tag, dir.to_str().unwrap()])
}

#[test]
fn the_sample_dockerfile_builds_to_what_docker_built() {
    let b = berth();
    let dir = b.path("sample");
    fs::create_dir_all(&dir).unwrap();
    fs::copy(fixture("sample-app.Dockerfile"), dir.join("Dockerfile")).unwrap();
    let r = build(&b, &dir, "mine/app:1.0").ok();
    assert!(r.stdout.contains("Successfully tagged mine/app:1.0"), "{r}");
    assert_eq!(
        b.ok(&["run", "--rm", "mine/app:1.0"]),
        "built\n1234\n/app\nprod\n"
    );

    // Docker's build of the same file, loaded from its `docker save`.
    b.ok(&[
        "load",
        "-i",
        fixture("sample-app.docker-save.tar").to_str().unwrap(),
    ]);
    let mine = config(&b, "mine/app:1.0");
    let docker = config(&b, "sample/app:1.0");
    for k in [
        "User",
        "ExposedPorts",
        "Env",
        "Cmd",
        "WorkingDir",
        "Labels",
        "StopSignal",
        "Healthcheck",
        "Entrypoint",
    ] {
        assert_eq!(
            mine.get(k),
            docker.get(k),
            "Config.{k}: berth {mine} docker {docker}"
        );
    }
    // The files, as seen from inside.
    let list = "ls -lnR /app | grep -v ^total; cat /etc/passwd /etc/group; ls -la /var/empty | grep wh; readlink /app/link";
    let a = b.ok(&[
        "run",
        "--rm",
        "--entrypoint",
        "sh",
        "mine/app:1.0",
        "-c",
        list,
    ]);
    let d = b.ok(&[
        "run",
        "--rm",
        "--entrypoint",
        "sh",
        "sample/app:1.0",
        "-c",
        list,
    ]);
    let strip_dates = |s: &str| -> Vec<String> {
        s.lines()
            .map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                if f.len() >= 9
                    && (f[0].starts_with('-') || f[0].starts_with('d') || f[0].starts_with('l'))
                {
                    format!("{} {} {} {} {}", f[0], f[2], f[3], f[4], f[8..].join(" "))
                } else {
                    l.to_string()
                }
            })
            .collect()
    };
    assert_eq!(
        strip_dates(&a),
        strip_dates(&d),
        "berth:\n{a}\ndocker:\n{d}"
    );
    // Three layers, as Docker's build has: busybox, the COPY, the RUN
    // (the build stage's RUN is not in the final image).
    let layers = b.ok(&[
        "image",
        "inspect",
        "--format",
        "{{json .RootFS.Layers}}",
        "mine/app:1.0",
    ]);
    let layers: Vec<String> = serde_json::from_str(layers.trim()).unwrap();
    assert_eq!(layers.len(), 3, "{layers:?}");
}

#[test]
fn a_cached_rebuild_reuses_every_step_and_gives_the_same_image() {
    let b = berth();
    let dir = context(
        &b,
        "ctx",
        "FROM busybox:1.35\nCOPY a.txt /a.txt\nRUN cat /a.txt > /b.txt && echo ran\nCMD [\"cat\", \"/b.txt\"]\n",
        &[("a.txt", "one\n")],
    );
    let first = build(&b, &dir, "c:1").ok();
    assert!(first.stdout.contains("ran"), "{first}");
    let id1 = b.ok(&["images", "-q", "--no-trunc", "c:1"]);
    let second = build(&b, &dir, "c:1").ok();
    assert_eq!(second.stdout.matches("CACHED").count(), 2, "{second}");
    assert!(
        !second.stdout.contains("\nran\n"),
        "the RUN ran again: {second}"
    );
    assert_eq!(b.ok(&["images", "-q", "--no-trunc", "c:1"]), id1);
    assert_eq!(b.ok(&["run", "--rm", "c:1"]), "one\n");

    // A changed file: COPY and the RUN after it run again.
    fs::write(dir.join("a.txt"), "two\n").unwrap();
    let third = build(&b, &dir, "c:2").ok();
    assert_eq!(third.stdout.matches("CACHED").count(), 0, "{third}");
    assert_eq!(b.ok(&["run", "--rm", "c:2"]), "two\n");
    // Touching a file (same content) keeps the cache.
    fs::write(dir.join("a.txt"), "two\n").unwrap();
    let fourth = build(&b, &dir, "c:3").ok();
    assert_eq!(fourth.stdout.matches("CACHED").count(), 2, "{fourth}");

    // --no-cache runs everything; builder prune forgets it all.
    let fifth = b
        .run(&["build", "--no-cache", "-t", "c:4", dir.to_str().unwrap()])
        .ok();
    assert!(fifth.stdout.contains("ran"), "{fifth}");
    let p = b.ok(&["builder", "prune", "-f"]);
    assert!(p.contains("Deleted build cache objects"), "{p}");
    let sixth = build(&b, &dir, "c:5").ok();
    assert_eq!(sixth.stdout.matches("CACHED").count(), 0, "{sixth}");
    // The images built before the prune still run.
    assert_eq!(b.ok(&["run", "--rm", "c:1"]), "one\n");
}

#[test]
fn reproducible_with_source_date_epoch() {
    let df = "FROM busybox:1.35\nCOPY f /f\nRUN echo hi > /g && touch /h\nENV X=1\n";
    let mut ids = Vec::new();
    for _ in 0..2 {
        let b = berth();
        let dir = context(&b, "ctx", df, &[("f", "content\n")]);
        let r = b
            .command(&["build", "-t", "r:1", dir.to_str().unwrap()])
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .output()
            .unwrap();
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
        ids.push(b.ok(&["images", "-q", "--no-trunc", "r:1"]));
    }
    assert_eq!(ids[0], ids[1]);
}

#[test]
fn instructions_set_the_config_as_docker_does() {
    let b = berth();
    let dir = context(
        &b,
        "ctx",
        r#"# syntax=docker/dockerfile:1
ARG BASE=busybox:1.35
FROM ${BASE} AS base
ARG WHO=world
ENV GREETING="hello ${WHO}" \
    OTHER=x
ENV A=1 B=$A
LABEL a=b "c d"=e
WORKDIR /srv
WORKDIR sub
USER 1000:1000
EXPOSE 80 53/udp 9000-9001
VOLUME ["/data"]
STOPSIGNAL SIGTERM
SHELL ["/bin/sh", "-ec"]
HEALTHCHECK --interval=30s --timeout=5s --retries=2 CMD true
ONBUILD RUN echo triggered
ENTRYPOINT ["/bin/echo"]
CMD ["$GREETING"]
FROM base
RUN --network=none echo "$GREETING from $(pwd) as $(id -u)"
"#,
        &[],
    );
    let r = b
        .run(&[
            "build",
            "--build-arg",
            "WHO=berth",
            "-t",
            "cfg:1",
            dir.to_str().unwrap(),
        ])
        .ok();
    assert!(r.stdout.contains("triggered"), "ONBUILD did not run: {r}");
    assert!(
        r.stdout.contains("hello berth from /srv/sub as 1000"),
        "{r}"
    );
    let c = config(&b, "cfg:1");
    let env: Vec<&str> = c["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(env.contains(&"GREETING=hello berth"), "{env:?}");
    assert!(
        env.contains(&"B="),
        "ENV sees the values from before it: {env:?}"
    );
    assert_eq!(c["Labels"]["c d"], "e");
    assert_eq!(c["WorkingDir"], "/srv/sub");
    assert_eq!(c["User"], "1000:1000");
    let ports: Vec<&String> = c["ExposedPorts"].as_object().unwrap().keys().collect();
    assert_eq!(ports, ["53/udp", "80/tcp", "9000/tcp", "9001/tcp"]);
    assert!(c["Volumes"]["/data"].is_object());
    assert_eq!(c["StopSignal"], "SIGTERM");
    assert_eq!(c["Shell"], serde_json::json!(["/bin/sh", "-ec"]));
    assert_eq!(c["Healthcheck"]["Interval"], 30_000_000_000u64);
    assert_eq!(c["Healthcheck"]["Retries"], 2);
    assert_eq!(c["Entrypoint"], serde_json::json!(["/bin/echo"]));
    // CMD's exec form is not expanded; the triggers ran and are gone.
    assert_eq!(c["Cmd"], serde_json::json!(["$GREETING"]));
    assert!(c.get("OnBuild").is_none_or(Value::is_null), "{c}");
}

#[test]
fn bad_dockerfiles_get_line_numbers_and_tag_nothing() {
    let b = berth();
    let cases: &[(&str, &str)] = &[
        (
            "FROM busybox:1.35\nRUNN echo\n",
            "Dockerfile:2: unknown instruction: RUNN (did you mean RUN?)",
        ),
        (
            "FROM busybox:1.35\nCOPY --bogus a /a\n",
            "Dockerfile:2: unknown flag: --bogus",
        ),
        (
            "FROM busybox:1.35\nCOPY missing.txt /a\n",
            "Dockerfile:2: missing.txt: not found",
        ),
        (
            "FROM busybox:1.35\nCOPY ../outside /a\n",
            "Dockerfile:2: ../outside: not found",
        ),
        (
            "FROM busybox:1.35\nRUN echo about to fail; exit 7\n",
            "Dockerfile:2: RUN echo about to fail; exit 7: the command exited with code 7",
        ),
        ("FROM busybox:1.35\nCOPY --from=nostage /a /b\n", "nostage"),
        (
            "FROM busybox:1.35 AS a\nCOPY --from=a /bin/sh /x\n",
            "Dockerfile:2: circular dependency",
        ),
        (
            "FROM busybox:1.35\nRUN <<EOF\necho never ends\n",
            "Dockerfile:2: unterminated heredoc",
        ),
        (
            "ENV X=1\nFROM busybox:1.35\n",
            "Dockerfile:1: ENV before the first FROM",
        ),
    ];
    for (i, (df, want)) in cases.iter().enumerate() {
        let dir = context(&b, &format!("bad{i}"), df, &[]);
        let r = build(&b, &dir, "bad:1");
        assert_ne!(r.code, Some(0), "{df}: {r}");
        assert!(r.stderr.contains(want), "{df}: wanted {want:?} in {r}");
        assert_eq!(b.ok(&["images", "-q", "bad:1"]), "", "{df} tagged an image");
    }
    // A failing RUN shows its last output lines.
    let dir = context(
        &b,
        "tail",
        "FROM busybox:1.35\nRUN echo the-last-words >&2; false\n",
        &[],
    );
    let r = build(&b, &dir, "bad:1");
    assert!(r.stderr.contains("the-last-words"), "{r}");
}

#[test]
fn copy_follows_dockers_rules_and_dockerignore() {
    let b = berth();
    let dir = context(
        &b,
        "ctx",
        "FROM busybox:1.35\n\
         COPY dir /d1\n\
         COPY dir/ /d2/\n\
         COPY a.txt /newdir/\n\
         COPY a.txt /renamed.txt\n\
         COPY *.txt /globbed/\n\
         COPY --chown=1234:5678 --chmod=0600 a.txt /owned\n\
         COPY . /all\n\
         RUN ls -n /owned | cut -c1-10,16-30 && cat /renamed.txt && ls /d1 /d2 /newdir /globbed && ls -a /all | tr '\\n' ' '\n",
        &[
            ("a.txt", "A\n"),
            ("b.txt", "B\n"),
            ("dir/inner/x", "X\n"),
            ("secret.key", "no"),
            ("logs/one.log", "no"),
            (".dockerignore", "*.key\nlogs\n"),
        ],
    );
    let r = build(&b, &dir, "cp:1").ok();
    let out = &r.stdout;
    assert!(out.contains("-rw-------"), "{out}");
    assert!(out.contains("1234     5678"), "{out}");
    assert!(out.contains("/d1:\ninner"), "{out}");
    assert!(out.contains("/d2:\ninner"), "{out}");
    assert!(out.contains("/newdir:\na.txt"), "{out}");
    assert!(out.contains("/globbed:\na.txt\nb.txt"), "{out}");
    assert!(
        out.contains(". .. .dockerignore Dockerfile a.txt b.txt dir"),
        "{out}"
    );
    assert!(
        !out.contains("secret.key") && !out.contains("logs"),
        "{out}"
    );
}

#[test]
fn run_mounts_cache_bind_tmpfs_and_secrets() {
    let b = berth();
    let dir = context(
        &b,
        "ctx",
        "FROM busybox:1.35\n\
         RUN --mount=type=cache,target=/cache sh -c 'n=$(cat /cache/n 2>/dev/null || echo 0); echo $((n + 1)) > /cache/n; echo count=$((n + 1))'\n\
         RUN --mount=type=bind,source=data,target=/mnt/data cat /mnt/data/file\n\
         RUN --mount=type=bind,source=data,target=/w,rw sh -c 'echo scribble > /w/file && cat /w/file'\n\
         RUN --mount=type=tmpfs,target=/scratch sh -c 'echo x > /scratch/y && ls /scratch'\n\
         RUN --mount=type=secret,id=tok sh -c 'echo secret=$(cat /run/secrets/tok)'\n\
         RUN --mount=type=secret,id=tok,env=TOK sh -c 'echo env=$TOK'\n\
         RUN ls -a / > /rootlist\n",
        &[("data/file", "from the context\n")],
    );
    let secret = b.path("tok.txt");
    fs::write(&secret, "s3cr3t").unwrap();
    let args = |tag: &str| {
        vec![
            "build".to_string(),
            "--secret".into(),
            format!("id=tok,src={}", secret.display()),
            "-t".into(),
            tag.to_string(),
            dir.to_str().unwrap().to_string(),
        ]
    };
    let r = b.run(&args("m:1")).ok();
    for want in [
        "count=1",
        "from the context",
        "scribble",
        "\ny\n",
        "secret=s3cr3t",
        "env=s3cr3t",
    ] {
        assert!(r.stdout.contains(want), "{want:?} missing: {r}");
    }
    // The cache mount outlives the build; the bind's writes did not land.
    let mut again = args("m:2");
    again.insert(1, "--no-cache".into());
    let r = b.run(&again).ok();
    assert!(r.stdout.contains("count=2"), "{r}");
    assert_eq!(
        fs::read_to_string(dir.join("data/file")).unwrap(),
        "from the context\n"
    );
    // Nothing of the mounts is in the image: no mount points, no secret.
    let list = b.ok(&["run", "--rm", "m:1", "cat", "/rootlist"]);
    for gone in ["cache", "scratch", "w\n"] {
        assert!(!list.contains(gone), "{gone:?} left in the image: {list}");
    }
    let r = b.run(&["run", "--rm", "m:1", "ls", "/run/secrets", "/mnt/data"]);
    assert_ne!(r.code, Some(0), "{r}");
    let save = b.path("m.tar");
    b.ok(&["save", "-o", save.to_str().unwrap(), "m:1"]);
    let bytes = fs::read(&save).unwrap();
    assert!(
        !bytes.windows(6).any(|w| w == b"s3cr3t"),
        "the secret is in the image"
    );
    // A changed bind source reruns its step; a missing required secret fails.
    fs::write(dir.join("data/file"), "changed\n").unwrap();
    let r = b.run(&args("m:3")).ok();
    assert!(r.stdout.contains("changed"), "{r}");
    let dir2 = context(
        &b,
        "ctx2",
        "FROM busybox:1.35\nRUN --mount=type=secret,id=nope,required cat /run/secrets/nope\n",
        &[],
    );
    let r = build(&b, &dir2, "m:4");
    assert!(r.stderr.contains("secret nope is required"), "{r}");
}

#[test]
fn add_unpacks_archives_fetches_urls_and_copy_takes_heredocs() {
    use std::io::Write as _;
    let b = berth();
    // A gzip tar in the context, and one served over HTTP.
    let tar = tar_of(&[
        Member::Dir("inner"),
        Member::File("inner/hello.txt", b"from the tar\n"),
    ]);
    let served = b.path("served");
    fs::create_dir_all(&served).unwrap();
    fs::write(served.join("page.txt"), "fetched\n").unwrap();
    let digest = sha256_hex(b"fetched\n");
    let mut server = Server(
        std::process::Command::new("python3")
            .args(["-m", "http.server", "--bind", "127.0.0.1", "0"])
            .current_dir(&served)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(server.0.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let port: u16 = line
        .split("port ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/page.txt");
    let dir = context(
        &b,
        "ctx",
        &format!(
            "FROM busybox:1.35\n\
             ADD archive.tar.gz /unpacked/\n\
             ADD --unpack=false archive.tar.gz /packed/\n\
             ADD --checksum=sha256:{digest} {url} /downloads/\n\
             COPY <<EOF /etc/greeting\nhello $NAME\nEOF\n\
             COPY <<one <<two /many/\nfirst\none\nsecond\ntwo\n\
             COPY --parents a/b/c.txt /p/\n\
             COPY --link a /linked/\n\
             ENV NAME=world\n\
             RUN cat /unpacked/inner/hello.txt /downloads/page.txt /etc/greeting /many/one /many/two /p/a/b/c.txt /linked/b/c.txt && ls /packed && stat -c %a /downloads/page.txt\n"
        ),
        &[("a/b/c.txt", "deep\n")],
    );
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    fs::write(dir.join("archive.tar.gz"), gz.finish().unwrap()).unwrap();
    let r = build(&b, &dir, "add:1").ok();
    for want in [
        "from the tar",
        "fetched",
        "hello \n",
        "first\nsecond",
        "deep\ndeep",
        "archive.tar.gz",
        "\n600\n",
    ] {
        assert!(r.stdout.contains(want), "{want:?} missing: {r}");
    }
    // A wrong checksum fails the build and names both digests.
    let dir2 = context(
        &b,
        "ctx2",
        &format!(
            "FROM busybox:1.35\nADD --checksum=sha256:{} {url} /x\n",
            "0".repeat(64)
        ),
        &[],
    );
    let r = build(&b, &dir2, "add:2");
    drop(server);
    assert!(
        r.stderr.contains("Dockerfile:2") && r.stderr.contains("digest mismatch"),
        "{r}"
    );
    assert_eq!(b.ok(&["images", "-q", "add:2"]), "");
}

/// A child process killed and reaped when dropped.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn context_on_stdin_output_archives_and_targets() {
    let b = berth();
    // A tar context on stdin, with -f naming a file inside it.
    let tar = tar_of(&[
        Member::File("build.df", b"FROM busybox:1.35 AS one\nCOPY hi /hi\nFROM one AS two\nRUN cat /hi > /copied\nFROM busybox:1.35\nRUN echo never built\n"),
        Member::File("hi", b"hi from stdin\n"),
    ]);
    let tarfile = b.path("ctx.tar");
    fs::write(&tarfile, &tar).unwrap();
    let r = b
        .run_with_stdin(
            &[
                "build", "-f", "build.df", "--target", "two", "-t", "s:1", "-",
            ],
            fs::File::open(&tarfile).unwrap(),
        )
        .ok();
    assert!(
        !r.stdout.contains("never built"),
        "the unneeded stage ran: {r}"
    );
    assert_eq!(
        b.ok(&["run", "--rm", "s:1", "cat", "/copied"]),
        "hi from stdin\n"
    );
    // A Dockerfile alone on stdin, and the image written as an archive.
    let df = b.path("lone.df");
    fs::write(&df, "FROM busybox:1.35\nRUN echo lone > /lone\n").unwrap();
    let out = b.path("out.tar");
    let r = b
        .run_with_stdin(
            &[
                "build",
                "-t",
                "s:2",
                "--output",
                &format!("type=oci,dest={}", out.display()),
                "-",
            ],
            fs::File::open(&df).unwrap(),
        )
        .ok();
    assert!(r.stdout.contains("Successfully tagged s:2"), "{r}");
    let fresh = Berth::new();
    fresh.ok(&["load", "-i", out.to_str().unwrap()]);
    let id = fresh.ok(&["images", "-q"]);
    assert_eq!(
        fresh.ok(&["run", "--rm", id.trim(), "cat", "/lone"]),
        "lone\n"
    );
    // Bad --output and a missing target are refused before any work.
    let dir = context(&b, "ctx", "FROM busybox:1.35\n", &[]);
    let r = b.run(&[
        "build",
        "--output",
        "type=local,dest=x",
        dir.to_str().unwrap(),
    ]);
    assert!(r.stderr.contains("type=local"), "{r}");
    let r = b.run(&["build", "--target", "nope", dir.to_str().unwrap()]);
    assert!(
        r.stderr
            .contains("target stage \"nope\" could not be found"),
        "{r}"
    );
}

#[test]
fn a_base_image_missing_from_the_store_is_pulled() {
    let b = berth();
    let dir = tempfile::tempdir().unwrap();
    let mut reg = Server(
        std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(["registry", "serve", "--addr", "127.0.0.1:0", "--storage"])
            .arg(dir.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(reg.0.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let addr = line
        .trim()
        .strip_prefix("berth registry listening on ")
        .unwrap()
        .to_string();
    let name = format!("{addr}/base/busybox:1.35");
    b.ok(&["tag", "busybox:1.35", &name]);
    b.ok(&["push", &name]);
    // A fresh store has no base image: the build pulls it.
    let fresh = Berth::new();
    let ctx = context(
        &fresh,
        "ctx",
        &format!("FROM {name}\nRUN echo pulled-and-ran\n"),
        &[],
    );
    let r = fresh
        .run(&["build", "-t", "p:1", ctx.to_str().unwrap()])
        .ok();
    assert!(r.stdout.contains("pulled-and-ran"), "{r}");
    assert!(fresh.ok(&["images"]).contains("base/busybox"));
    // --pull pulls again even though it is there now.
    let r = fresh
        .run(&["build", "--pull", "-t", "p:2", ctx.to_str().unwrap()])
        .ok();
    assert!(r.stderr.contains(": Pulling from base/busybox"), "{r}");
    drop(reg);
}

#[test]
fn independent_stages_run_at_the_same_time() {
    let b = berth();
    // Each stage waits for the other's mark in a shared cache mount: built
    // one after the other, the first would give up after 20 s and fail.
    let wait = |me: &str, other: &str| {
        format!("RUN --mount=type=cache,target=/sync,id=sync sh -c 'touch /sync/{me}; for i in $(seq 200); do [ -e /sync/{other} ] && exit 0; sleep 0.1; done; echo {me} never saw {other}; exit 1'")
    };
    let df = format!(
        "FROM busybox:1.35 AS a\n{}\nRUN echo a > /a\nFROM busybox:1.35 AS b\n{}\nRUN echo b > /b\nFROM busybox:1.35 AS unused\nRUN echo unused-stage-ran\nFROM busybox:1.35\nCOPY --from=a /a /a\nCOPY --from=b /b /b\nCMD [\"cat\", \"/a\", \"/b\"]\n",
        wait("a", "b"),
        wait("b", "a")
    );
    let dir = context(&b, "ctx", &df, &[]);
    let r = build(&b, &dir, "par:1").ok();
    assert!(!r.stdout.contains("unused-stage-ran"), "{r}");
    assert_eq!(b.ok(&["run", "--rm", "par:1"]), "a\nb\n");
    // A failing stage fails the build, whatever its sibling does.
    let dir = context(
        &b,
        "ctx2",
        "FROM busybox:1.35 AS a\nRUN exit 3\nFROM busybox:1.35 AS b\nRUN true\nFROM busybox:1.35\nCOPY --from=a /bin/sh /a\nCOPY --from=b /bin/sh /b\n",
        &[],
    );
    let r = build(&b, &dir, "par:2");
    assert!(
        r.stderr.contains("Dockerfile:2") && r.stderr.contains("code 3"),
        "{r}"
    );
    assert_eq!(b.ok(&["images", "-q", "par:2"]), "");
}

#[test]
fn context_symlinks_never_reach_the_host() {
    let b = berth();
    let secret = b.path("host-secret.txt");
    fs::write(&secret, "host-only\n").unwrap();
    let dir = context(
        &b,
        "ctx",
        "FROM busybox:1.35\n",
        &[("real.txt", "inside\n")],
    );
    std::os::unix::fs::symlink(&secret, dir.join("to-host-file")).unwrap();
    std::os::unix::fs::symlink(b.path(""), dir.join("to-host-dir")).unwrap();
    std::os::unix::fs::symlink("../../../../../../..", dir.join("up")).unwrap();
    std::os::unix::fs::symlink("real.txt", dir.join("to-real")).unwrap();
    for (i, src) in [
        "to-host-file",
        "to-host-dir/host-secret.txt",
        "up/host-secret.txt",
        "../host-secret.txt",
    ]
    .iter()
    .enumerate()
    {
        let df = format!("FROM busybox:1.35\nCOPY {src} /x\n");
        fs::write(dir.join("Dockerfile"), &df).unwrap();
        let r = build(&b, &dir, &format!("esc:{i}"));
        assert_ne!(r.code, Some(0), "{src}: {r}");
        assert!(r.stderr.contains("not found"), "{src}: {r}");
        let df =
            format!("FROM busybox:1.35\nRUN --mount=type=bind,source={src},target=/m cat /m\n");
        fs::write(dir.join("Dockerfile"), &df).unwrap();
        let r = build(&b, &dir, &format!("esc:{i}"));
        assert!(
            !r.stdout.contains("host-only"),
            "{src} through a bind mount: {r}"
        );
    }
    // A link inside the context is followed inside it; a link copied as
    // part of a directory stays a link.
    fs::write(dir.join("Dockerfile"), "FROM busybox:1.35\nCOPY to-real /a\nCOPY . /ctx/\nRUN cat /a && readlink /ctx/to-host-file\n").unwrap();
    let r = build(&b, &dir, "esc:ok").ok();
    assert!(r.stdout.contains("inside\n"), "{r}");
    assert!(r.stdout.contains(secret.to_str().unwrap()), "{r}");
    assert!(!r.stdout.contains("host-only"), "{r}");
    // COPY --exclude.
    fs::write(
        dir.join("Dockerfile"),
        "FROM busybox:1.35\nCOPY --exclude=*.txt . /e/\nRUN ls -a /e | tr '\\n' ' '\n",
    )
    .unwrap();
    let r = build(&b, &dir, "esc:ex").ok();
    assert!(
        !r.stdout.contains("real.txt") && r.stdout.contains("to-real"),
        "{r}"
    );
}

#[test]
fn run_heredocs_platform_args_and_dockerignore_exceptions() {
    let b = berth();
    let dir = context(
        &b,
        "ctx",
        "FROM busybox:1.35\n\
         ARG TARGETPLATFORM\n\
         ARG TARGETARCH\n\
         RUN echo platform=$TARGETPLATFORM arch=$TARGETARCH\n\
         RUN <<EOF\n\
         echo first line\n\
         echo second line\n\
         EOF\n\
         RUN <<EOF\n\
         #!/bin/sh -e\n\
         echo from a script run by its own interpreter: $0\n\
         EOF\n\
         RUN cat <<EOF > /written && cat /written\n\
         written by a heredoc on stdin\n\
         EOF\n\
         COPY . /ctx/\n\
         RUN find /ctx -type f | sort\n",
        &[
            ("logs/a.log", "no"),
            ("logs/keep.log", "yes"),
            ("src/main.c", "yes"),
            ("src/gen/out.o", "no"),
            (".dockerignore", "logs\n!logs/keep.log\n**/*.o\n"),
        ],
    );
    let r = b
        .run(&[
            "build",
            "--build-arg",
            "UNUSED=1",
            "-t",
            "h:1",
            dir.to_str().unwrap(),
        ])
        .ok();
    for want in [
        "platform=linux/amd64 arch=amd64",
        "first line\nsecond line",
        "from a script run by its own interpreter",
        "written by a heredoc on stdin",
        "/ctx/logs/keep.log\n",
        "/ctx/src/main.c\n",
    ] {
        assert!(r.stdout.contains(want), "{want:?} missing: {r}");
    }
    for gone in ["/ctx/logs/a.log", "out.o"] {
        assert!(!r.stdout.contains(gone), "{gone:?} should be ignored: {r}");
    }
    assert!(
        r.stderr
            .contains("[Warning] One or more build-args [UNUSED] were not consumed"),
        "{r}"
    );
}

#[test]
fn errors_name_the_dockerfile_given_with_f() {
    let b = berth();
    let dir = context(&b, "ctx", "FROM busybox:1.35\n", &[]);
    fs::write(
        dir.join("other.Dockerfile"),
        "FROM busybox:1.35\n\nBOGUS x\n",
    )
    .unwrap();
    let r = b.run(&[
        "build",
        "-f",
        dir.join("other.Dockerfile").to_str().unwrap(),
        dir.to_str().unwrap(),
    ]);
    assert_ne!(r.code, Some(0), "{r}");
    r.one_error_line(&["other.Dockerfile:3: unknown instruction: BOGUS"]);
}

#[test]
fn a_killed_build_leaves_nothing_behind_after_the_next_one() {
    use std::io::BufRead as _;
    let b = berth();
    let dir = context(
        &b,
        "ctx",
        "FROM busybox:1.35 AS a\nRUN --mount=type=cache,target=/c --mount=type=tmpfs,target=/t echo started && sleep 60\n",
        &[],
    );
    let mut child = b
        .command(&["build", dir.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    // The step's own output (the step line names the word too).
    while out.read_line(&mut line).unwrap() > 0 && line != "started\n" {
        line.clear();
    }
    assert_eq!(line, "started\n", "the step never started");
    child.kill().unwrap();
    child.wait().unwrap();
    let root = b.root.to_string_lossy().into_owned();
    let mounted = || {
        fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .filter(|l| l.contains(&root))
            .count()
    };
    assert!(
        mounted() > 0,
        "the killed build should have left its mounts"
    );
    // The base image is held while a build uses it.
    let r = b.run(&["rmi", "busybox:1.35"]);
    assert_ne!(r.code, Some(0), "a base image in use was removed: {r}");
    // The next build sweeps what the dead one left.
    let ok = context(&b, "ok", "FROM busybox:1.35\nRUN true\n", &[]);
    build(&b, &ok, "next:1").ok();
    assert_eq!(mounted(), 0, "mounts left under the store");
    let left: Vec<_> = fs::read_dir(b.root.join("builds")).unwrap().collect();
    assert!(left.is_empty(), "step directories left: {left:?}");
    // And its lease is gone: the image can be removed now.
    b.ok(&["rmi", "-f", "next:1"]);
    b.ok(&["rmi", "busybox:1.35"]);
}

/// A build killed with SIGKILL at random moments: its RUN process dies
/// with it (not at the next build), and `builder prune` (or any prune)
/// leaves no step directory, mount or cgroup of it. 10 trials, delays
/// spread from before the step starts to well into it.
#[test]
fn killed_builds_leave_no_processes_mounts_or_cgroups() {
    let b = berth();
    let dir = context(
        &b,
        "ctx",
        "FROM busybox:1.35\nRUN echo started-$RANDOM && sleep 77\n",
        &[],
    );
    let root = b.root.to_string_lossy().into_owned();
    let sleepers = || {
        fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter(|e| {
                fs::read(e.path().join("cmdline"))
                    .map(|c| c == b"sleep\x0077\x00")
                    .unwrap_or(false)
            })
            .count()
    };
    let cgroups_of = |pid: u32| -> Vec<String> {
        let mut left = Vec::new();
        for h in fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
            let berth = h.path().join("berth");
            for c in fs::read_dir(&berth).into_iter().flatten().flatten() {
                let n = c.file_name().to_string_lossy().into_owned();
                if n.starts_with(&format!("{pid}-")) {
                    left.push(c.path().display().to_string());
                }
            }
        }
        left
    };
    for trial in 0..10u64 {
        let mut child = b
            .command(&["build", "--no-cache", dir.to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50 + trial * 60));
        let pid = child.id();
        child.kill().unwrap();
        child.wait().unwrap();
        let mut gone = false;
        for _ in 0..100 {
            if sleepers() == 0 {
                gone = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(
            gone,
            "trial {trial}: the RUN step outlived its killed build"
        );
        b.ok(&["builder", "prune"]);
        let mounts = fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .filter(|l| l.contains(&root))
            .count();
        assert_eq!(mounts, 0, "trial {trial}: mounts left");
        let left: Vec<_> = fs::read_dir(b.root.join("builds"))
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        assert!(
            left.is_empty(),
            "trial {trial}: step directories left: {left:?}"
        );
        assert_eq!(
            cgroups_of(pid),
            Vec::<String>::new(),
            "trial {trial}: cgroups left"
        );
    }
}
