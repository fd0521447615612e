//! `berth registry serve` against a real client (skopeo pushes and pulls
//! the busybox fixture and reads the same bytes back) and against bad
//! requests, sent raw: each gets the spec's error code and stores nothing.

mod util;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use util::*;

/// A registry on a free local port, stopped when dropped.
struct Server {
    child: Child,
    addr: String,
    storage: PathBuf,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start() -> Server {
        Server::start_with(&[])
    }

    fn start_with(extra: &[&str]) -> Server {
        Server::start_wrapped(&[], extra)
    }

    /// Started through `wrapper` (a program and its arguments, `berth`
    /// then following), such as `prlimit --nofile=256:256`.
    fn start_wrapped(wrapper: &[&str], extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let storage = dir.path().join("storage");
        // Port 0: the server picks a free port and says which.
        let addr: &[&str] = if extra.contains(&"--addr") {
            &[]
        } else {
            &["--addr", "127.0.0.1:0"]
        };
        let mut cmd = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(BERTH);
                c
            }
            None => Command::new(BERTH),
        };
        let mut child = cmd
            .args(["registry", "serve"])
            .args(addr)
            .arg("--storage")
            .arg(&storage)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        let addr = line
            .trim()
            .strip_prefix("berth registry listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        Server {
            child,
            addr,
            storage,
            _dir: dir,
        }
    }

    /// One raw HTTP/1.1 request; returns status, headers (lower-case
    /// names) and body.
    fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, Vec<(String, String)>, Vec<u8>) {
        let mut s = TcpStream::connect(&self.addr).unwrap();
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.addr,
            body.len()
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).unwrap();
        // A server may answer (413, say) and close before it has read the
        // whole body: the write then fails, and the answer is still there
        // to read.
        if let Err(e) = s.write_all(body) {
            assert!(
                matches!(
                    e.kind(),
                    std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
                ),
                "{e}"
            );
        }
        let mut resp = Vec::new();
        if let Err(e) = s.read_to_end(&mut resp) {
            // Reset after its answer: what came is the answer.
            assert!(
                e.kind() == std::io::ErrorKind::ConnectionReset && !resp.is_empty(),
                "{e}"
            );
        }
        let split = resp
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a complete response head");
        let head = String::from_utf8_lossy(&resp[..split]).into_owned();
        let mut lines = head.lines();
        let status: u16 = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        (status, headers, resp[split + 4..].to_vec())
    }

    fn blob_files(&self) -> usize {
        walk(&self.storage.join("blobs"))
    }
}

fn walk(p: &Path) -> usize {
    match std::fs::read_dir(p) {
        Ok(d) => d
            .map(|e| {
                let e = e.unwrap();
                if e.file_type().unwrap().is_dir() {
                    walk(&e.path())
                } else {
                    1
                }
            })
            .sum(),
        Err(_) => 0,
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn error_code(body: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(body).expect("an error body in JSON");
    v["errors"][0]["code"].as_str().unwrap_or("").to_string()
}

fn skopeo(args: &[&str]) -> std::process::Output {
    Command::new("skopeo")
        .arg("--insecure-policy")
        .args(args)
        .output()
        .expect("skopeo (installed by scripts/install-deps.sh)")
}

#[test]
fn skopeo_pushes_and_pulls_the_same_bytes() {
    let s = Server::start();
    let src = format!("oci:{}:1.35", fixture("busybox-1.35").display());
    let dest = format!("docker://{}/test/busybox:1.35", s.addr);
    let out = skopeo(&["copy", "--dest-tls-verify=false", &src, &dest]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The manifest comes back byte for byte, with its digest.
    let layout = fixture("busybox-1.35");
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let digest = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let original = std::fs::read(blob_path(&layout, &digest)).unwrap();
    let (status, h, body) = s.request("GET", "/v2/test/busybox/manifests/1.35", &[], b"");
    assert_eq!(status, 200);
    assert_eq!(body, original);
    assert_eq!(header(&h, "docker-content-digest"), Some(digest.as_str()));
    // skopeo reads it back into an OCI layout: the same blobs.
    let back = tempfile::tempdir().unwrap();
    let out = skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &dest,
        &format!("oci:{}:1.35", back.path().display()),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let names = |p: &Path| {
        let mut v: Vec<String> = std::fs::read_dir(p.join("blobs/sha256"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(names(back.path()), names(&layout));
    // Tags, with pagination.
    let out = skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &src,
        &format!("docker://{}/test/busybox:2", s.addr),
    ]);
    assert!(out.status.success());
    let (_, h, body) = s.request("GET", "/v2/test/busybox/tags/list?n=1", &[], b"");
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["tags"], serde_json::json!(["1.35"]));
    assert!(header(&h, "link").unwrap().contains("last=1.35"), "{h:?}");
    let (_, _, body) = s.request("GET", "/v2/test/busybox/tags/list?n=1&last=1.35", &[], b"");
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["tags"], serde_json::json!(["2"]));
    // A ranged blob read.
    let layer = index_layer(&layout, &original);
    let (status, h, body) = s.request(
        "GET",
        &format!("/v2/test/busybox/blobs/{layer}"),
        &[("Range", "bytes=0-9")],
        b"",
    );
    assert_eq!(status, 206);
    assert_eq!(body.len(), 10);
    assert!(header(&h, "content-range")
        .unwrap()
        .starts_with("bytes 0-9/"));
}

/// The first layer digest of a manifest.
fn index_layer(_layout: &Path, manifest: &[u8]) -> String {
    let m: serde_json::Value = serde_json::from_slice(manifest).unwrap();
    m["layers"][0]["digest"].as_str().unwrap().to_string()
}

#[test]
fn bad_requests_get_the_spec_errors_and_store_nothing() {
    let s = Server::start();
    let data = b"some blob content";
    let good = digest_of(data);
    let wrong = digest_of(b"other content");
    // A monolithic upload whose bytes do not match its digest.
    let (status, _, body) = s.request(
        "POST",
        &format!("/v2/r/blobs/uploads/?digest={wrong}"),
        &[],
        data,
    );
    assert_eq!(status, 400);
    assert_eq!(error_code(&body), "DIGEST_INVALID");
    assert_eq!(s.blob_files(), 0);
    // Invalid names and digests.
    let (status, _, body) = s.request("GET", "/v2/Bad_Name/tags/list", &[], b"");
    assert_eq!((status, error_code(&body).as_str()), (400, "NAME_INVALID"));
    let (status, _, body) = s.request("GET", "/v2/r/blobs/sha256:xyz", &[], b"");
    assert_eq!(
        (status, error_code(&body).as_str()),
        (400, "DIGEST_INVALID")
    );
    // Chunked: a chunk out of order is 416; the upload goes on.
    let (status, h, _) = s.request("POST", "/v2/r/blobs/uploads/", &[], b"");
    assert_eq!(status, 202);
    let loc = header(&h, "location").unwrap().to_string();
    let (status, _, _) = s.request("PATCH", &loc, &[("Content-Range", "0-4")], &data[..5]);
    assert_eq!(status, 202);
    let (status, _, _) = s.request("PATCH", &loc, &[("Content-Range", "9-12")], &data[9..13]);
    assert_eq!(status, 416);
    let (status, h, _) = s.request("GET", &loc, &[], b"");
    assert_eq!((status, header(&h, "range")), (204, Some("0-4")));
    let (status, _, _) = s.request("PATCH", &loc, &[("Content-Range", "5-16")], &data[5..]);
    assert_eq!(status, 202);
    let (status, h, _) = s.request("PUT", &format!("{loc}?digest={good}"), &[], b"");
    assert_eq!(status, 201);
    assert_eq!(header(&h, "docker-content-digest"), Some(good.as_str()));
    let (status, _, body) = s.request("GET", &format!("/v2/r/blobs/{good}"), &[], b"");
    assert_eq!((status, body.as_slice()), (200, &data[..]));
    // A range that starts inside a page, and one past the end.
    let (status, h, body) = s.request(
        "GET",
        &format!("/v2/r/blobs/{good}"),
        &[("Range", "bytes=5-11")],
        b"",
    );
    assert_eq!((status, body.as_slice()), (206, &data[5..12]));
    assert_eq!(header(&h, "content-range"), Some("bytes 5-11/17"));
    let (status, _, _) = s.request(
        "GET",
        &format!("/v2/r/blobs/{good}"),
        &[("Range", "bytes=40-50")],
        b"",
    );
    assert_eq!(status, 416);
    // Not readable from another repository until mounted there.
    let (status, _, _) = s.request("HEAD", &format!("/v2/other/blobs/{good}"), &[], b"");
    assert_eq!(status, 404);
    let (status, _, _) = s.request(
        "POST",
        &format!("/v2/other/blobs/uploads/?mount={good}&from=r"),
        &[],
        b"",
    );
    assert_eq!(status, 201);
    let (status, _, _) = s.request("HEAD", &format!("/v2/other/blobs/{good}"), &[], b"");
    assert_eq!(status, 200);
    // A manifest whose layer is missing; a manifest over the size limit.
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": good, "size": data.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": wrong, "size": 1}],
    })
    .to_string();
    let ct = [("Content-Type", "application/vnd.oci.image.manifest.v1+json")];
    let (status, _, body) = s.request("PUT", "/v2/r/manifests/v1", &ct, manifest.as_bytes());
    assert_eq!(
        (status, error_code(&body).as_str()),
        (400, "MANIFEST_BLOB_UNKNOWN")
    );
    let big = vec![b' '; (4 << 20) + 1];
    let (status, _, _) = s.request("PUT", "/v2/r/manifests/v1", &ct, &big);
    assert_eq!(status, 413);
    let (status, _, body) = s.request("GET", "/v2/r/manifests/v1", &[], b"");
    assert_eq!(
        (status, error_code(&body).as_str()),
        (404, "MANIFEST_UNKNOWN")
    );
    // An upload cancelled is gone.
    let (_, h, _) = s.request("POST", "/v2/r/blobs/uploads/", &[], b"");
    let loc = header(&h, "location").unwrap().to_string();
    assert_eq!(s.request("DELETE", &loc, &[], b"").0, 204);
    let (status, _, body) = s.request("GET", &loc, &[], b"");
    assert_eq!(
        (status, error_code(&body).as_str()),
        (404, "BLOB_UPLOAD_UNKNOWN")
    );
}

#[test]
fn berth_pushes_pulls_and_runs_through_its_registry() {
    let s = Server::start();
    let a = Berth::new();
    a.load(&fixture("sample-app.docker-save.tar"));
    let target = format!("{}/sample/app:1.0", s.addr);
    a.ok(&["tag", "sample/app:1.0", &target]);
    let out = a.ok(&["push", &target]);
    assert!(
        out.contains(": Pushed") && out.contains("1.0: digest: sha256:"),
        "{out}"
    );
    // Again: every blob is there already.
    let out = a.ok(&["push", &target]);
    assert!(
        !out.contains(": Pushed") && out.contains("Layer already exists"),
        "{out}"
    );
    // A fresh store pulls it and runs it, the same image.
    let b = Berth::new();
    let out = b.ok(&["pull", &target]);
    assert!(out.ends_with(&format!("{target}\n")), "{out}");
    assert_eq!(b.inspect(&target)["Id"], a.inspect("sample/app:1.0")["Id"]);
    assert_eq!(b.ok(&["run", "--rm", &target]), "built\n1234\n/app\nprod\n");
    // run pulls an image it does not have, as docker does.
    let c = Berth::new();
    let r = c.run(&["run", "--rm", &target]);
    assert_eq!(r.code, Some(0), "{r}");
    assert_eq!(r.stdout, "built\n1234\n/app\nprod\n");
    assert!(r.stderr.contains("Unable to find image"), "{r}");
    // A pull that fails (no such tag) leaves the store as it was.
    let before = b.state();
    let r = b.run(&["pull", &format!("{}/sample/app:nope", s.addr)]);
    assert_ne!(r.code, Some(0));
    r.one_error_line(&["MANIFEST_UNKNOWN"]);
    assert_eq!(b.state(), before);
}

/// Debian's docker-registry (distribution 2.8) on a free local port,
/// stopped when dropped.
struct Distribution {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Distribution {
    fn start() -> Distribution {
        let dir = tempfile::tempdir().unwrap();
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let addr = format!("127.0.0.1:{port}");
            let config = dir.path().join("config.yml");
            std::fs::write(
                &config,
                format!(
                    "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
                    dir.path().join("data").display()
                ),
            )
            .unwrap();
            let mut child = Command::new("docker-registry")
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("docker-registry (installed by scripts/install-deps.sh)");
            for _ in 0..250 {
                if TcpStream::connect(&addr).is_ok() {
                    return Distribution {
                        child,
                        addr,
                        _dir: dir,
                    };
                }
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("docker-registry did not start");
    }
}

impl Drop for Distribution {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn berth_pushes_to_and_pulls_from_distribution() {
    let reg = Distribution::start();
    // berth pushes the sample app; a fresh store pulls it back and runs it.
    let a = Berth::new();
    a.load(&fixture("sample-app.docker-save.tar"));
    let target = format!("{}/sample/app:1.0", reg.addr);
    a.ok(&["tag", "sample/app:1.0", &target]);
    let out = a.ok(&["push", &target]);
    assert!(out.contains("1.0: digest: sha256:"), "{out}");
    let b = Berth::new();
    b.ok(&["pull", &target]);
    assert_eq!(b.inspect(&target)["Id"], a.inspect("sample/app:1.0")["Id"]);
    assert_eq!(b.ok(&["run", "--rm", &target]), "built\n1234\n/app\nprod\n");
    // What skopeo pushed there, berth pulls.
    let src = format!("oci:{}:1.35", fixture("busybox-1.35").display());
    let bb = format!("{}/library/busybox:1.35", reg.addr);
    let out = skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &src,
        &format!("docker://{bb}"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    b.ok(&["pull", &bb]);
    assert_eq!(
        b.ok(&["run", "--rm", &bb, "echo", "from distribution"]),
        "from distribution\n"
    );
}

#[test]
fn referrers_and_sha512_blobs() {
    let s = Server::start();
    // A sha512 blob, monolithic.
    let data = b"sha512 content";
    let d512 = {
        use sha2::Digest as _;
        let h = sha2::Sha512::digest(data);
        format!(
            "sha512:{}",
            h.iter().map(|b| format!("{b:02x}")).collect::<String>()
        )
    };
    let (status, h, _) = s.request(
        "POST",
        &format!("/v2/art/blobs/uploads/?digest={d512}"),
        &[],
        data,
    );
    assert_eq!(status, 201);
    assert_eq!(header(&h, "docker-content-digest"), Some(d512.as_str()));
    let (status, _, body) = s.request("GET", &format!("/v2/art/blobs/{d512}"), &[], b"");
    assert_eq!((status, body.as_slice()), (200, &data[..]));
    // An artifact manifest that refers to a subject (which need not exist).
    let config = b"{}";
    let cd = digest_of(config);
    assert_eq!(
        s.request(
            "POST",
            &format!("/v2/art/blobs/uploads/?digest={cd}"),
            &[],
            config
        )
        .0,
        201
    );
    let subject = digest_of(b"the subject manifest");
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.example.sbom",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": cd, "size": 2},
        "layers": [{"mediaType": "application/octet-stream", "digest": d512, "size": data.len()}],
        "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": subject, "size": 20},
        "annotations": {"org.example": "yes"},
    })
    .to_string();
    let md = digest_of(manifest.as_bytes());
    let ct = [("Content-Type", "application/vnd.oci.image.manifest.v1+json")];
    let (status, h, _) = s.request(
        "PUT",
        &format!("/v2/art/manifests/{md}"),
        &ct,
        manifest.as_bytes(),
    );
    assert_eq!(status, 201);
    assert_eq!(header(&h, "oci-subject"), Some(subject.as_str()));
    let (status, h, body) = s.request("GET", &format!("/v2/art/referrers/{subject}"), &[], b"");
    assert_eq!(status, 200);
    assert_eq!(
        header(&h, "content-type"),
        Some("application/vnd.oci.image.index.v1+json")
    );
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["manifests"][0]["digest"], md.as_str());
    assert_eq!(
        v["manifests"][0]["artifactType"],
        "application/vnd.example.sbom"
    );
    assert_eq!(v["manifests"][0]["annotations"]["org.example"], "yes");
    // Filtered by artifact type; none is an empty index, never a 404.
    let (status, h, body) = s.request(
        "GET",
        &format!("/v2/art/referrers/{subject}?artifactType=application/other"),
        &[],
        b"",
    );
    assert_eq!(status, 200);
    assert_eq!(header(&h, "oci-filters-applied"), Some("artifactType"));
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["manifests"], serde_json::json!([]));
    // Deleted: no longer a referrer.
    assert_eq!(
        s.request("DELETE", &format!("/v2/art/manifests/{md}"), &[], b"")
            .0,
        202
    );
    let (_, _, body) = s.request("GET", &format!("/v2/art/referrers/{subject}"), &[], b"");
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["manifests"], serde_json::json!([]));
}

#[test]
fn abandoned_uploads_expire() {
    let s = Server::start_with(&["--upload-ttl", "300ms"]);
    let (status, h, _) = s.request("POST", "/v2/r/blobs/uploads/", &[], b"");
    assert_eq!(status, 202);
    let loc = header(&h, "location").unwrap().to_string();
    let (status, _, _) = s.request("PATCH", &loc, &[], b"part");
    assert_eq!(status, 202);
    std::thread::sleep(std::time::Duration::from_millis(900));
    let (status, _, body) = s.request("GET", &loc, &[], b"");
    assert_eq!(
        (status, error_code(&body).as_str()),
        (404, "BLOB_UPLOAD_UNKNOWN")
    );
    assert_eq!(walk(&s.storage.join("uploads")), 0);
}

#[test]
fn private_registry_with_htpasswd_login_and_public_repos() {
    // An htpasswd file made by berth itself.
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    let out = Command::new(BERTH)
        .args(["registry", "htpasswd", "alice"])
        .stdin({
            let p = dir.path().join("pw");
            std::fs::write(&p, "s3cret\n").unwrap();
            std::fs::File::open(p).unwrap()
        })
        .output()
        .unwrap();
    assert!(out.status.success());
    std::fs::write(&htpasswd, &out.stdout).unwrap();
    let s = Server::start_with(&[
        "--htpasswd",
        htpasswd.to_str().unwrap(),
        "--public",
        "pub/*",
    ]);
    // Anonymous: 401 with the basic challenge.
    let (status, h, body) = s.request("GET", "/v2/", &[], b"");
    assert_eq!((status, error_code(&body).as_str()), (401, "UNAUTHORIZED"));
    assert_eq!(
        header(&h, "www-authenticate"),
        Some("Basic realm=\"berth registry\"")
    );
    let docker_config = dir.path().join("docker");
    let with_config = |args: &[&str], stdin: &str| {
        let b = Berth::new();
        let mut c = b.command(args);
        c.env("DOCKER_CONFIG", &docker_config);
        let p = dir.path().join("stdin");
        std::fs::write(&p, stdin).unwrap();
        let out = c.stdin(std::fs::File::open(&p).unwrap()).output().unwrap();
        (b, out)
    };
    // A push without logging in is refused; a wrong password too.
    let a = Berth::new();
    a.load(&fixture("sample-app.docker-save.tar"));
    let private = format!("{}/team/app:1.0", s.addr);
    let public = format!("{}/pub/app:1.0", s.addr);
    a.ok(&["tag", "sample/app:1.0", &private]);
    a.ok(&["tag", "sample/app:1.0", &public]);
    let mut push = a.command(&["push", &private]);
    push.env("DOCKER_CONFIG", &docker_config);
    let out = push.output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("UNAUTHORIZED"), "{err}");
    let (_, out) = with_config(
        &["login", "-u", "alice", "--password-stdin", &s.addr],
        "wrong\n",
    );
    assert!(!out.status.success());
    let (_, out) = with_config(
        &["login", "-u", "alice", "--password-stdin", &s.addr],
        "s3cret\n",
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "Login Succeeded\n");
    // The docker config holds docker's base64 auth.
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(docker_config.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["auths"][&s.addr]["auth"], "YWxpY2U6czNjcmV0");
    // Logged in: push both, pull back.
    for target in [&private, &public] {
        let mut push = a.command(&["push", target]);
        push.env("DOCKER_CONFIG", &docker_config);
        let out = push.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // skopeo, with the same credentials.
    let out = skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--creds",
        "alice:s3cret",
        &format!("docker://{private}"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Without credentials: the public repository pulls, the private one
    // does not.
    let b = Berth::new();
    let mut pull = b.command(&["pull", &public]);
    pull.env("DOCKER_CONFIG", dir.path().join("nobody"));
    assert!(pull.output().unwrap().status.success());
    let mut pull = b.command(&["pull", &private]);
    pull.env("DOCKER_CONFIG", dir.path().join("nobody"));
    let out = pull.output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("UNAUTHORIZED"));
    // Logout forgets them.
    let (_, out) = with_config(&["logout", &s.addr], "");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("Removing login credentials for {}\n", s.addr)
    );
}

/// A CA and a server certificate it signed for `name` (and localhost,
/// 127.0.0.1), made with openssl: (ca.pem, cert.pem, key.pem).
fn make_certs(dir: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl (scripts/install-deps.sh installs it)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    run(&[
        &["req", "-x509"][..],
        &ec,
        &[
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=berth test CA",
        ],
    ]
    .concat());
    run(&[
        &["req"][..],
        &ec,
        &[
            "-keyout",
            "key.pem",
            "-out",
            "leaf.csr",
            "-subj",
            &format!("/CN={name}"),
        ],
    ]
    .concat());
    std::fs::write(
        dir.join("ext"),
        format!("subjectAltName=DNS:{name},DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"),
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "cert.pem",
        "-days",
        "2",
        "-extfile",
        "ext",
    ]);
    (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    )
}

/// htpasswd lines made by `berth registry htpasswd`.
fn htpasswd_file(dir: &Path, users: &[(&str, &str)]) -> PathBuf {
    let mut text = String::new();
    for (u, p) in users {
        let pw = dir.join("pw");
        std::fs::write(&pw, format!("{p}\n")).unwrap();
        let out = Command::new(BERTH)
            .args(["registry", "htpasswd", u])
            .stdin(std::fs::File::open(&pw).unwrap())
            .output()
            .unwrap();
        assert!(out.status.success());
        text.push_str(&String::from_utf8_lossy(&out.stdout));
    }
    let f = dir.join("htpasswd");
    std::fs::write(&f, text).unwrap();
    f
}

#[test]
fn tls_and_the_bearer_token_flow_with_per_repository_grants() {
    // A name that is not "localhost", so that the client verifies the
    // certificate (local names are tried without verification, as docker
    // does).
    let host = String::from_utf8(Command::new("hostname").output().unwrap().stdout)
        .unwrap()
        .trim()
        .to_string();
    let resolved = std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), 1))
        .unwrap_or_else(|e| panic!("the test needs this machine's name {host:?} to resolve: {e}"))
        .find(|a| a.is_ipv4())
        .expect("an IPv4 address for the host name");
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = make_certs(dir.path(), &host);
    let htpasswd = htpasswd_file(dir.path(), &[("alice", "s3cret"), ("bob", "hunter2")]);
    let config = dir.path().join("registry.json");
    std::fs::write(
        &config,
        serde_json::json!({
            "tls": {"cert": cert, "key": key},
            "auth": {
                "htpasswd": htpasswd,
                "public": ["pub/*"],
                "access": [
                    {"repos": ["team/*", "pub/*"], "users": ["alice"], "actions": ["pull", "push"]},
                    {"repos": ["team/*"], "users": ["bob"], "actions": ["pull"]},
                    {"repos": ["{user}/*"], "users": ["*"], "actions": ["*"]}
                ],
                "token": {"issuer": "berth-test", "service": "berth-test-registry"}
            }
        })
        .to_string(),
    )
    .unwrap();
    let bind = format!("{}:0", resolved.ip());
    let s = Server::start_with(&["--config", config.to_str().unwrap(), "--addr", &bind]);
    let port = s.addr.rsplit_once(':').unwrap().1;
    let reg = format!("{host}:{port}");
    // The client trusts the CA through a certs.d directory.
    let certs = dir.path().join("certs.d");
    std::fs::create_dir_all(certs.join(&reg)).unwrap();
    std::fs::copy(&ca, certs.join(&reg).join("ca.crt")).unwrap();
    let user = |name: &str| {
        let b = Berth::new();
        std::fs::write(
            b.config_path(),
            serde_json::json!({"certs-dir": certs}).to_string(),
        )
        .unwrap();
        let docker = b.path("docker");
        (b, docker, name.to_string())
    };
    let berth = |who: &(Berth, PathBuf, String), args: &[&str], stdin: &str| {
        let p = who.0.path("stdin");
        std::fs::write(&p, stdin).unwrap();
        let out = who
            .0
            .command(args)
            .env("DOCKER_CONFIG", &who.1)
            .stdin(std::fs::File::open(&p).unwrap())
            .output()
            .unwrap();
        (
            out.status.code(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let alice = user("alice");
    alice.0.load(&fixture("sample-app.docker-save.tar"));
    let team = format!("{reg}/team/app:1.0");
    alice.0.ok(&["tag", "sample/app:1.0", &team]);
    // Not signed in: refused, with the way out named.
    let (code, out) = berth(&alice, &["push", &team], "");
    assert_ne!(code, Some(0), "{out}");
    assert!(
        out.contains("UNAUTHORIZED") && out.contains("berth login"),
        "{out}"
    );
    // A wrong password is refused at login, over verified TLS.
    let (code, out) = berth(
        &alice,
        &["login", "-u", "alice", "--password-stdin", &reg],
        "nope\n",
    );
    assert_ne!(code, Some(0), "{out}");
    let (code, out) = berth(
        &alice,
        &["login", "-u", "alice", "--password-stdin", &reg],
        "s3cret\n",
    );
    assert_eq!((code, out.as_str()), (Some(0), "Login Succeeded\n"));
    let (code, out) = berth(&alice, &["push", &team], "");
    assert_eq!(code, Some(0), "{out}");
    let digest = out
        .lines()
        .find_map(|l| l.split("digest: ").nth(1))
        .and_then(|l| l.split(' ').next())
        .unwrap()
        .to_string();
    // skopeo goes through the same token flow and reads the same manifest.
    let out = skopeo(&[
        "inspect",
        "--cert-dir",
        certs.join(&reg).to_str().unwrap(),
        "--creds",
        "alice:s3cret",
        &format!("docker://{team}"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["Digest"], digest.as_str());
    // skopeo copies into the public repository as alice.
    let public = format!("{reg}/pub/app:1.0");
    let cert_dir = certs.join(&reg);
    let cert_dir = cert_dir.to_str().unwrap();
    let out = skopeo(&[
        "copy",
        "--src-cert-dir",
        cert_dir,
        "--src-creds",
        "alice:s3cret",
        "--dest-cert-dir",
        cert_dir,
        "--dest-creds",
        "alice:s3cret",
        &format!("docker://{team}"),
        &format!("docker://{public}"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // bob may pull team/*, not push there; he has a namespace of his own.
    let bob = user("bob");
    let (code, out) = berth(
        &bob,
        &["login", "-u", "bob", "--password-stdin", &reg],
        "hunter2\n",
    );
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = berth(&bob, &["pull", &team], "");
    assert_eq!(code, Some(0), "{out}");
    bob.0.ok(&["tag", &team, &format!("{reg}/team/app:bob")]);
    let (code, out) = berth(&bob, &["push", &format!("{reg}/team/app:bob")], "");
    assert_ne!(code, Some(0), "{out}");
    assert!(out.contains("denied"), "{out}");
    bob.0.ok(&["tag", &team, &format!("{reg}/bob/app:1")]);
    let (code, out) = berth(&bob, &["push", &format!("{reg}/bob/app:1")], "");
    assert_eq!(code, Some(0), "{out}");
    // Anonymous: the public repository pulls, the private ones do not.
    let nobody = user("nobody");
    let (code, out) = berth(&nobody, &["pull", &public], "");
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = berth(&nobody, &["pull", &team], "");
    assert_ne!(code, Some(0), "{out}");
    assert!(out.contains("denied"), "{out}");
    // Without the CA the certificate is not trusted, and the error says
    // where a CA goes.
    let stranger = user("stranger");
    std::fs::remove_file(stranger.0.config_path()).unwrap();
    let (code, out) = berth(&stranger, &["pull", &public], "");
    assert_ne!(code, Some(0), "{out}");
    assert!(out.contains("certs.d"), "{out}");
    // Named insecure, the same registry is used without verification.
    std::fs::write(
        stranger.0.config_path(),
        serde_json::json!({"insecure-registries": [reg]}).to_string(),
    )
    .unwrap();
    let (code, out) = berth(&stranger, &["pull", &public], "");
    assert_eq!(code, Some(0), "{out}");
}

#[test]
fn bad_expired_and_forged_tokens_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = htpasswd_file(dir.path(), &[("alice", "s3cret")]);
    let config = dir.path().join("registry.json");
    std::fs::write(
        &config,
        serde_json::json!({"auth": {"htpasswd": htpasswd, "token": {"issuer": "t", "lifetime": "1s"}}})
            .to_string(),
    )
    .unwrap();
    let s = Server::start_with(&["--config", config.to_str().unwrap()]);
    let basic = "Basic YWxpY2U6czNjcmV0";
    // The challenge names the realm, the service and the scope needed.
    let (status, h, _) = s.request("GET", "/v2/a/manifests/latest", &[], b"");
    assert_eq!(status, 401);
    assert_eq!(
        header(&h, "www-authenticate").unwrap(),
        format!(
            "Bearer realm=\"http://{}/token\",service=\"t\",scope=\"repository:a:pull\"",
            s.addr
        )
    );
    let (status, _, body) = s.request(
        "GET",
        "/token?service=t&scope=repository%3Aa%3Apull%2Cpush",
        &[("Authorization", basic)],
        b"",
    );
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let token = v["token"].as_str().unwrap().to_string();
    assert_eq!(v["access_token"], token.as_str());
    let bearer = format!("Bearer {token}");
    let (status, _, body) = s.request("GET", "/v2/a/tags/list", &[("Authorization", &bearer)], b"");
    assert_eq!((status, error_code(&body).as_str()), (404, "NAME_UNKNOWN"));
    // Good for a, not for b: 401 insufficient_scope, to ask again.
    let (status, h, body) = s.request("GET", "/v2/b/tags/list", &[("Authorization", &bearer)], b"");
    assert_eq!((status, error_code(&body).as_str()), (401, "DENIED"));
    assert!(header(&h, "www-authenticate")
        .unwrap()
        .contains("error=\"insufficient_scope\""));
    // A forged token (claims changed, signature kept) and garbage.
    let mut parts: Vec<&str> = token.split('.').collect();
    let forged_claims = {
        use base64::Engine as _;
        let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut c: serde_json::Value =
            serde_json::from_slice(&e.decode(parts[1]).unwrap()).unwrap();
        c["access"][0]["name"] = "b".into();
        e.encode(c.to_string())
    };
    parts[1] = &forged_claims;
    for bad in [
        format!("Bearer {}", parts.join(".")),
        "Bearer x.y.z".into(),
        "Bearer ".into(),
    ] {
        let (status, h, body) =
            s.request("GET", "/v2/b/tags/list", &[("Authorization", &bad)], b"");
        assert_eq!(
            (status, error_code(&body).as_str()),
            (401, "UNAUTHORIZED"),
            "{bad}"
        );
        assert!(header(&h, "www-authenticate")
            .unwrap()
            .contains("invalid_token"));
    }
    // The OAuth2 password grant (containerd's way) gives a token too.
    let (status, _, body) = s.request(
        "POST",
        "/token",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"grant_type=password&username=alice&password=s3cret&service=t&scope=repository%3Aa%3Apull",
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let (status, _, _) = s.request(
        "POST",
        "/token",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"grant_type=password&username=alice&password=nope&service=t",
    );
    assert_eq!(status, 401);
    // Expired: the same token a second later.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let (status, h, body) = s.request("GET", "/v2/a/tags/list", &[("Authorization", &bearer)], b"");
    assert_eq!(status, 401);
    assert!(String::from_utf8_lossy(&body).contains("expired"));
    assert!(header(&h, "www-authenticate")
        .unwrap()
        .contains("invalid_token"));
    // Nothing was stored by any of it.
    assert_eq!(walk(&s.storage.join("repos")), 0);
}

impl Server {
    /// Pushes one blob (monolithic upload); returns its digest.
    fn push_blob(&self, repo: &str, data: &[u8]) -> String {
        let d = digest_of(data);
        let (status, _, body) = self.request(
            "POST",
            &format!("/v2/{repo}/blobs/uploads/?digest={d}"),
            &[],
            data,
        );
        assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
        d
    }

    /// Pushes an image of one random layer as `repo:tag`; returns the
    /// manifest's status, its body and the blob digests.
    fn push_image(&self, repo: &str, tag: &str, seed: u64) -> (u16, String, Vec<String>) {
        let layer: Vec<u8> = (0..4096u64)
            .map(|i| (i.wrapping_mul(seed | 1).wrapping_add(seed >> 3) % 251) as u8)
            .collect();
        let config = format!(r#"{{"architecture":"amd64","os":"linux","seed":{seed}}}"#);
        let l = self.push_blob(repo, &layer);
        let c = self.push_blob(repo, config.as_bytes());
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": c, "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": l, "size": layer.len()}]
        })
        .to_string();
        let (status, _, body) = self.request(
            "PUT",
            &format!("/v2/{repo}/manifests/{tag}"),
            &[("Content-Type", "application/vnd.oci.image.manifest.v1+json")],
            manifest.as_bytes(),
        );
        (
            status,
            String::from_utf8_lossy(&body).into_owned(),
            vec![l, c],
        )
    }

    fn gc_dry_run(&self) -> String {
        let out = Command::new(BERTH)
            .args(["registry", "gc", "--dry-run", "--grace", "0s", "--storage"])
            .arg(&self.storage)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn gc(&self, grace: &str) -> String {
        let out = Command::new(BERTH)
            .args(["registry", "gc", "--grace", grace, "--storage"])
            .arg(&self.storage)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

#[test]
fn online_gc_removes_garbage_and_nothing_in_use() {
    let s = Server::start();
    // Garbage: a blob never referenced, and an image whose manifest was
    // deleted (its config, layer and manifest bytes).
    let orphan = s.push_blob("g", b"never referenced");
    let (status, body, dead) = s.push_image("g", "dead", 1);
    assert_eq!(status, 201, "{body}");
    let (status, h, _) = s.request("HEAD", "/v2/g/manifests/dead", &[], b"");
    assert_eq!(status, 200);
    let dead_manifest = header(&h, "docker-content-digest").unwrap().to_string();
    let (status, _, _) = s.request(
        "DELETE",
        &format!("/v2/g/manifests/{dead_manifest}"),
        &[],
        b"",
    );
    assert_eq!(status, 202);
    // Kept: an image still tagged.
    let (status, body, live) = s.push_image("g", "live", 2);
    assert_eq!(status, 201, "{body}");
    // Within the grace period, nothing goes.
    let out = s.gc("1h");
    assert!(out.starts_with("Removed 0 blobs"), "{out}");
    let dry = s.gc_dry_run();
    assert!(dry.starts_with("Would remove 4 blobs"), "{dry}");
    // An upload in progress is not touched by a collection, even with no
    // grace at all.
    let (status, h, _) = s.request("POST", "/v2/g/blobs/uploads/", &[], b"");
    assert_eq!(status, 202);
    let loc = header(&h, "location").unwrap().to_string();
    let (status, _, _) = s.request("PATCH", &loc, &[], b"first half ");
    assert_eq!(status, 202);
    std::thread::sleep(std::time::Duration::from_millis(20));
    let out = s.gc("0s");
    assert!(out.starts_with("Removed 4 blobs"), "{out}");
    let sep = if loc.contains('?') { '&' } else { '?' };
    let late = digest_of(b"first half second half");
    let (status, _, body) = s.request(
        "PUT",
        &format!("{loc}{sep}digest={late}"),
        &[],
        b"second half",
    );
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    // The garbage is gone; everything referenced still reads.
    for d in [&orphan, &dead[0], &dead[1], &dead_manifest] {
        let (status, _, body) = s.request("GET", &format!("/v2/g/blobs/{d}"), &[], b"");
        assert_eq!(
            (status, error_code(&body).as_str()),
            (404, "BLOB_UNKNOWN"),
            "{d}"
        );
    }
    for d in &live {
        let (status, _, _) = s.request("GET", &format!("/v2/g/blobs/{d}"), &[], b"");
        assert_eq!(status, 200, "{d}");
    }
    let (status, _, _) = s.request("GET", "/v2/g/manifests/live", &[], b"");
    assert_eq!(status, 200);
}

#[test]
fn online_gc_is_safe_under_concurrent_pushes() {
    let s = Server::start();
    let garbage: Vec<String> = (0..20)
        .map(|i| s.push_blob("junk", format!("garbage {i}").as_bytes()))
        .collect();
    // Older than the grace period below.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let stop = std::sync::atomic::AtomicBool::new(false);
    let collections = std::thread::scope(|scope| {
        let gc = scope.spawn(|| {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // A push takes milliseconds: one second of grace covers it.
                s.gc("1s");
                n += 1;
            }
            n
        });
        let pushers: Vec<_> = (0..3)
            .map(|p| {
                let s = &s;
                scope.spawn(move || {
                    for i in 0..15u64 {
                        let (status, body, _) =
                            s.push_image(&format!("app{p}"), &format!("v{i}"), 1000 * p + i + 7);
                        assert_eq!(status, 201, "push {p}/{i} during collections: {body}");
                    }
                })
            })
            .collect();
        for p in pushers {
            p.join().unwrap();
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        gc.join().unwrap()
    });
    assert!(collections > 3, "only {collections} collections ran");
    // Every image pushed is whole; the old garbage is gone.
    for p in 0..3u64 {
        for i in 0..15u64 {
            let (status, _, body) =
                s.request("GET", &format!("/v2/app{p}/manifests/v{i}"), &[], b"");
            assert_eq!(status, 200);
            let m: serde_json::Value = serde_json::from_slice(&body).unwrap();
            for d in [&m["config"]["digest"], &m["layers"][0]["digest"]] {
                let (status, _, _) = s.request(
                    "GET",
                    &format!("/v2/app{p}/blobs/{}", d.as_str().unwrap()),
                    &[],
                    b"",
                );
                assert_eq!(status, 200, "app{p}:v{i} lost {d}");
            }
        }
    }
    for d in &garbage {
        let (status, _, _) = s.request("HEAD", &format!("/v2/junk/blobs/{d}"), &[], b"");
        assert_eq!(status, 404, "{d} survived");
    }
}

/// A webhook receiver: answers the first request 500, the others 200;
/// keeps (content type, body) of every request.
struct Hook {
    addr: String,
    seen: std::sync::Arc<std::sync::Mutex<Vec<(String, serde_json::Value)>>>,
}

impl Hook {
    fn start(respond: bool) -> Hook {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let keep = seen.clone();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for (n, conn) in l.incoming().enumerate() {
                let Ok(mut c) = conn else { continue };
                if !respond {
                    // Never answers.
                    held.push(c);
                    continue;
                }
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let (head_end, len) = loop {
                    let k = c.read(&mut chunk).unwrap_or(0);
                    if k == 0 {
                        break (None, 0);
                    }
                    buf.extend_from_slice(&chunk[..k]);
                    if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..p]).to_ascii_lowercase();
                        let len = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        break (Some(p + 4), len);
                    }
                };
                let Some(start) = head_end else { continue };
                while buf.len() < start + len {
                    let k = c.read(&mut chunk).unwrap_or(0);
                    if k == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..k]);
                }
                let head = String::from_utf8_lossy(&buf[..start]).to_ascii_lowercase();
                let ctype = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-type:"))
                    .unwrap_or("")
                    .trim()
                    .to_string();
                let status = if n == 0 {
                    "500 Internal Server Error"
                } else {
                    "200 OK"
                };
                let _ = c.write_all(
                    format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                        .as_bytes(),
                );
                if n > 0 {
                    let body = serde_json::from_slice(&buf[start..]).unwrap_or_default();
                    keep.lock().unwrap().push((ctype, body));
                }
            }
        });
        Hook { addr, seen }
    }

    fn wait_for(&self, n: usize) -> Vec<(String, serde_json::Value)> {
        for _ in 0..100 {
            if self.seen.lock().unwrap().len() >= n {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        self.seen.lock().unwrap().clone()
    }
}

#[test]
fn webhooks_get_push_and_delete_events_retried_without_blocking() {
    let hook = Hook::start(true);
    let silent = Hook::start(false);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("registry.json");
    std::fs::write(
        &config,
        serde_json::json!({"notifications": [
            {"url": format!("http://{}/events", hook.addr), "events": ["push", "delete"],
             "backoff": "100ms", "attempts": 3, "headers": {"Authorization": "Bearer hook-secret"}},
            {"url": format!("http://{}/", silent.addr), "timeout": "30s", "attempts": 1}
        ]})
        .to_string(),
    )
    .unwrap();
    let s = Server::start_with(&["--config", config.to_str().unwrap()]);
    // The silent endpoint never answers, and pushes and pulls go on.
    let (status, body, _) = s.push_image("hooked/app", "v1", 5);
    assert_eq!(status, 201, "{body}");
    let (status, h, _) = s.request("GET", "/v2/hooked/app/manifests/v1", &[], b"");
    assert_eq!(status, 200);
    let digest = header(&h, "docker-content-digest").unwrap().to_string();
    let (status, _, _) = s.request("DELETE", "/v2/hooked/app/manifests/v1", &[], b"");
    assert_eq!(status, 202);
    // The first delivery got a 500 and was retried; the pull was not
    // asked for.
    let seen = hook.wait_for(2);
    assert_eq!(seen.len(), 2, "{seen:?}");
    for ((ctype, body), action) in seen.iter().zip(["push", "delete"]) {
        assert_eq!(ctype, "application/vnd.docker.distribution.events.v1+json");
        let e = &body["events"][0];
        assert_eq!(e["action"], action, "{body}");
        assert_eq!(e["target"]["repository"], "hooked/app");
        assert_eq!(e["target"]["digest"], digest.as_str());
        assert_eq!(e["target"]["tag"], "v1");
        assert_eq!(
            e["target"]["url"],
            format!("http://{}/v2/hooked/app/manifests/{digest}", s.addr)
        );
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(hook.seen.lock().unwrap().len(), 2, "nothing more was sent");
}

/// A TCP proxy in front of a registry that cuts connections: each of the
/// first `cuts` connections that carry more than `after` bytes back to the
/// client is closed at that point. It notes whether a client asked for a
/// `Range`.
struct Cutter {
    addr: String,
    saw_range: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Cutter {
    fn start(upstream: &str, after: usize, cuts: usize) -> Cutter {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        use std::sync::Arc;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let saw_range = Arc::new(AtomicBool::new(false));
        let left = Arc::new(AtomicUsize::new(cuts));
        let upstream = upstream.to_string();
        let saw = saw_range.clone();
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(client) = conn else { continue };
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let (mut c_in, mut s_out) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                let saw = saw.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16384];
                    while let Ok(n) = c_in.read(&mut buf) {
                        if n == 0 || s_out.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        if String::from_utf8_lossy(&buf[..n])
                            .to_ascii_lowercase()
                            .contains("\r\nrange: bytes=")
                        {
                            saw.store(true, Ordering::Relaxed);
                        }
                    }
                    let _ = s_out.shutdown(std::net::Shutdown::Write);
                });
                let left = left.clone();
                std::thread::spawn(move || {
                    let (mut s_in, mut c_out) = (server, client);
                    let mut sent = 0usize;
                    let mut buf = [0u8; 16384];
                    while let Ok(n) = s_in.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        if sent + n > after
                            && left
                                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |k| {
                                    k.checked_sub(1)
                                })
                                .is_ok()
                        {
                            let _ = c_out.write_all(&buf[..after.saturating_sub(sent)]);
                            let _ = c_out.shutdown(std::net::Shutdown::Both);
                            let _ = s_in.shutdown(std::net::Shutdown::Both);
                            return;
                        }
                        sent += n;
                        if c_out.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = c_out.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        Cutter { addr, saw_range }
    }
}

#[test]
fn pulls_resume_after_a_dropped_connection_and_a_failed_pull_changes_nothing() {
    let s = Server::start();
    let a = Berth::new();
    let layout = fixture("busybox-1.35");
    a.ok(&["load", "-i", layout.to_str().unwrap()]);
    let id = a.ids()[0].clone();
    let name = format!("{}/lib/busybox:1.35", s.addr);
    a.ok(&["tag", &id, &name]);
    a.ok(&["push", &name]);
    // Once, the connection drops half way through the 1 MB layer: the pull
    // asks for the rest and completes, with the same image.
    let cutter = Cutter::start(&s.addr, 600_000, 1);
    let b = Berth::new();
    let via = format!("{}/lib/busybox:1.35", cutter.addr);
    let out = b.ok(&["pull", &via]);
    assert!(out.contains("Pull complete"), "{out}");
    assert!(
        cutter.saw_range.load(std::sync::atomic::Ordering::Relaxed),
        "the pull resumed with a Range request"
    );
    assert_eq!(b.ids(), vec![id.clone()]);
    let run = b.ok(&["run", "--rm", &via, "echo", "resumed"]);
    assert_eq!(run, "resumed\n");
    // Every connection drops: after its retries the pull fails, says why,
    // and the store is as it was.
    let always = Cutter::start(&s.addr, 100_000, usize::MAX);
    let c = Berth::new();
    let before = c.ok(&["images", "-q"]);
    let r = c.run(&["pull", &format!("{}/lib/busybox:1.35", always.addr)]);
    assert_ne!(r.code, Some(0), "{r}");
    assert!(
        r.stderr.contains("the download from") && r.stderr.contains("failed 5 times"),
        "{r}"
    );
    assert_eq!(c.ok(&["images", "-q"]), before);
    let blobs = c.root.join("blobs/sha256");
    assert_eq!(walk(&blobs), 0, "no blob was left behind");
}

#[test]
fn progress_bars_on_a_terminal_lines_otherwise_and_quiet() {
    let s = Server::start();
    let a = Berth::new();
    a.ok(&["load", "-i", fixture("busybox-1.35").to_str().unwrap()]);
    let name = format!("{}/p/busybox:1", s.addr);
    a.ok(&["tag", &a.ids()[0], &name]);
    // Quiet: the name only.
    assert_eq!(a.ok(&["push", "-q", &name]), format!("{name}\n"));
    // Not a terminal: docker's plain lines.
    let b = Berth::new();
    let out = b.ok(&["pull", &name]);
    let layer = "e524c65fa47c";
    assert!(out.starts_with("1: Pulling from p/busybox\n"), "{out}");
    assert!(
        out.contains(&format!(
            "{layer}: Pulling fs layer\n{layer}: Pull complete\n"
        )),
        "{out}"
    );
    assert!(!out.contains('\x1b'), "{out}");
    // A terminal: rows redrawn in place, with a bar.
    let c = Berth::new();
    let run = run_on_pty(c.command(&["pull", &name]), 24, 120, "", b"");
    let screen = &run.output;
    assert_eq!(run.code, Some(0), "{screen:?}");
    assert!(screen.contains("\x1b[2K"), "{screen:?}");
    assert!(
        screen.contains("Downloading") && screen.contains("[====="),
        "{screen:?}"
    );
    assert!(screen.contains("1.1MB/1.1MB"), "{screen:?}");
    assert!(screen.contains("Pull complete"), "{screen:?}");
}

/// Sends raw bytes on a new connection and goes away without reading.
fn send_and_vanish(addr: &str, bytes: &[u8]) {
    if let Ok(mut s) = TcpStream::connect(addr) {
        let _ = s.write_all(bytes);
        let _ = s.shutdown(std::net::Shutdown::Both);
    }
}

#[test]
fn a_mixed_load_of_good_and_bad_clients() {
    let s = Server::start();
    // Slow clients that never finish their request head, held open all
    // along.
    let slow: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut c = TcpStream::connect(&s.addr).unwrap();
            c.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n").unwrap();
            c
        })
        .collect();
    // An upload whose chunk is cut off by a client that goes away.
    let (status, h, _) = s.request("POST", "/v2/bad/cut/blobs/uploads/", &[], b"");
    assert_eq!(status, 202);
    let cut_upload = header(&h, "location").unwrap().to_string();
    let good: Vec<(String, String, Vec<String>)> = std::thread::scope(|scope| {
        let goods: Vec<_> = (0..4u64)
            .map(|t| {
                let s = &s;
                scope.spawn(move || {
                    let mut pushed = Vec::new();
                    for i in 0..8u64 {
                        let repo = format!("good/t{t}");
                        let tag = format!("v{i}");
                        let (status, body, blobs) = s.push_image(&repo, &tag, 100 * t + i + 11);
                        assert_eq!(status, 201, "{body}");
                        // Pulled back, byte for byte.
                        for d in &blobs {
                            let (status, _, data) =
                                s.request("GET", &format!("/v2/{repo}/blobs/{d}"), &[], b"");
                            assert_eq!(status, 200);
                            assert_eq!(&digest_of(&data), d);
                        }
                        pushed.push((repo, tag, blobs));
                    }
                    pushed
                })
            })
            .collect();
        let bad = scope.spawn(|| {
            for i in 0..10 {
                // A wrong digest.
                let (status, _, body) = s.request(
                    "POST",
                    &format!("/v2/bad/x/blobs/uploads/?digest={}", digest_of(b"other")),
                    &[],
                    format!("content {i}").as_bytes(),
                );
                assert_eq!((status, error_code(&body).as_str()), (400, "DIGEST_INVALID"));
                // A monolithic upload cut short by a client that vanishes.
                send_and_vanish(
                    &s.addr,
                    format!(
                        "POST /v2/bad/x/blobs/uploads/?digest={} HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n{}",
                        digest_of(&vec![b'a'; 100_000]),
                        "a".repeat(5000)
                    )
                    .as_bytes(),
                );
                // A chunk cut short.
                send_and_vanish(
                    &s.addr,
                    format!(
                        "PATCH {cut_upload} HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n{}",
                        "b".repeat(3000)
                    )
                    .as_bytes(),
                );
                // Not HTTP at all.
                send_and_vanish(&s.addr, b"\x16\x03\x01\x00garbage\r\n\r\n");
                // An oversized manifest, one naming blobs nobody pushed,
                // an invalid name.
                let (status, _, body) = s.request(
                    "PUT",
                    "/v2/bad/x/manifests/big",
                    &[("Content-Type", "application/vnd.oci.image.manifest.v1+json")],
                    &vec![b' '; 5 << 20],
                );
                assert_eq!((status, error_code(&body).as_str()), (413, "SIZE_INVALID"));
                let missing = format!(
                    r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":5}},"layers":[]}}"#,
                    digest_of(format!("nope {i}").as_bytes())
                );
                let (status, _, body) = s.request(
                    "PUT",
                    "/v2/bad/x/manifests/missing",
                    &[("Content-Type", "application/vnd.oci.image.manifest.v1+json")],
                    missing.as_bytes(),
                );
                assert_eq!((status, error_code(&body).as_str()), (400, "MANIFEST_BLOB_UNKNOWN"));
                let (status, _, body) = s.request("GET", "/v2/Bad..Name/tags/list", &[], b"");
                assert_eq!((status, error_code(&body).as_str()), (400, "NAME_INVALID"));
            }
        });
        bad.join().unwrap();
        goods.into_iter().flat_map(|g| g.join().unwrap()).collect()
    });
    drop(slow);
    // Every good image is whole; nothing of the bad clients was kept: the
    // blobs are exactly the good ones and their manifests, and the cut
    // upload is still at zero bytes.
    assert_eq!(good.len(), 32);
    for (repo, tag, _) in &good {
        let (status, _, _) = s.request("GET", &format!("/v2/{repo}/manifests/{tag}"), &[], b"");
        assert_eq!(status, 200);
    }
    let unique: std::collections::HashSet<&String> =
        good.iter().flat_map(|(_, _, blobs)| blobs).collect();
    assert_eq!(s.blob_files(), unique.len() + 32, "blobs and manifests");
    let (status, h, _) = s.request("GET", &cut_upload, &[], b"");
    assert_eq!(status, 204);
    assert_eq!(header(&h, "range"), Some("0-0"));
    let (status, _, _) = s.request("DELETE", &cut_upload, &[], b"");
    assert_eq!(status, 204);
    // Let the server notice the vanished monolithic uploads.
    for _ in 0..50 {
        if walk(&s.storage.join("uploads")) == 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(walk(&s.storage.join("uploads")), 0, "uploads left behind");
}

/// `run --pull always` pulls even an image the store has, and sees the
/// registry's newer tag; the default (missing) does not pull it again.
#[test]
fn run_pull_always_takes_the_registrys_tag() {
    let s = Server::start();
    let a = Berth::with_busybox();
    let name = format!("{}/pol/app:1", s.addr);
    let df = a.path("Dockerfile");
    std::fs::write(&df, "FROM busybox:1.35\nRUN echo one > /v\n").unwrap();
    a.ok(&["build", "-q", "-t", &name, a.work.to_str().unwrap()]);
    a.ok(&["push", &name]);
    let b = Berth::new();
    assert_eq!(b.ok(&["run", "--rm", &name, "cat", "/v"]), "one\n");
    std::fs::write(&df, "FROM busybox:1.35\nRUN echo two > /v\n").unwrap();
    a.ok(&["build", "-q", "-t", &name, a.work.to_str().unwrap()]);
    a.ok(&["push", &name]);
    let r = b.run(&["run", "--rm", &name, "cat", "/v"]);
    assert_eq!(r.stdout, "one\n", "{r}");
    assert!(!r.stderr.contains("Pulling"), "{r}");
    let r = b.run(&["run", "--rm", "--pull", "always", &name, "cat", "/v"]);
    assert_eq!(r.stdout, "two\n", "{r}");
    assert!(!r.stderr.contains("Unable to find image"), "{r}");
}

#[test]
fn a_push_mounts_layers_the_registry_has_in_another_repository() {
    let s = Server::start();
    let a = Berth::new();
    a.ok(&["load", "-i", fixture("busybox-1.35").to_str().unwrap()]);
    let id = a.ids()[0].clone();
    let first = format!("{}/team/one:1", s.addr);
    let second = format!("{}/team/two:1", s.addr);
    a.ok(&["tag", &id, &first]);
    a.ok(&["push", &first]);
    a.ok(&["tag", &id, &second]);
    let out = a.ok(&["push", &second]);
    assert!(out.contains("e524c65fa47c: Mounted from team/one"), "{out}");
    // The mounted layer is whole in the second repository.
    let b = Berth::new();
    b.ok(&["pull", &second]);
    assert_eq!(
        b.ok(&["run", "--rm", &second, "echo", "mounted"]),
        "mounted\n"
    );
    // Nothing was left open by the mounts.
    assert_eq!(walk(&s.storage.join("uploads")), 0);
}

/// A pulled image that repeats a layer fetches and unpacks it once: the
/// second copy's chain shares the directory of the first.
#[test]
fn a_pulled_image_repeating_a_layer_unpacks_it_once() {
    let s = Server::start();
    let a = Berth::with_busybox();
    let df = a.path("Dockerfile");
    std::fs::write(&df, "FROM busybox:1.35\nCOPY f /f\nRUN rm /f\nCOPY f /f\n").unwrap();
    std::fs::write(a.path("f"), "one\n").unwrap();
    let name = format!("{}/rep/img:1", s.addr);
    a.ok(&["build", "-q", "-t", &name, a.work.to_str().unwrap()]);
    a.ok(&["push", &name]);
    let b = Berth::new();
    b.ok(&["pull", &name]);
    // busybox, "one", the removal: three diffs for four layers.
    assert_eq!(b.snapshot_dirs().len(), 3, "{:?}", b.snapshot_dirs());
    assert_eq!(b.ok(&["run", "--rm", &name, "cat", "/f"]), "one\n");
}

#[test]
fn pushes_and_pulls_record_repo_digests() {
    let s = Server::start();
    let a = Berth::new();
    a.ok(&["load", "-i", fixture("busybox-1.35").to_str().unwrap()]);
    let id = a.ids()[0].clone();
    let name = format!("{}/lib/busybox:1.35", s.addr);
    a.ok(&["tag", &id, &name]);
    assert_eq!(a.inspect(&name)["RepoDigests"], serde_json::json!([]));
    let out = a.ok(&["push", &name]);
    let digest = out
        .lines()
        .find_map(|l| l.split("digest: ").nth(1))
        .and_then(|l| l.split(' ').next())
        .unwrap()
        .to_string();
    let repo_digest = format!("{}/lib/busybox@{digest}", s.addr);
    assert_eq!(
        a.inspect(&name)["RepoDigests"],
        serde_json::json!([repo_digest])
    );
    // Pulled elsewhere: the same, in inspect and in images --digests.
    let b = Berth::new();
    b.ok(&["pull", &name]);
    assert_eq!(
        b.inspect(&name)["RepoDigests"],
        serde_json::json!([repo_digest])
    );
    let table = b.ok(&["images", "--digests"]);
    assert!(table.contains(&digest), "{table}");
    // By digest: pulled and run by that name.
    let c = Berth::new();
    c.ok(&["pull", &repo_digest]);
    assert_eq!(
        c.ok(&["run", "--rm", &repo_digest, "echo", "by digest"]),
        "by digest\n"
    );
}

#[test]
fn review_regressions_tags_cannot_name_paths_and_uploads_are_used_one_request_at_a_time() {
    let s = Server::start();
    let (status, body, blobs) = s.push_image("u/app", "v1", 3);
    assert_eq!(status, 201, "{body}");
    let layer = blobs[0].strip_prefix("sha256:").unwrap().to_string();
    // A "tag" that climbs out of the tags directory is refused, and the
    // blob it aimed at is still there.
    let path = format!("/v2/u/app/manifests/..%2F..%2F..%2F..%2Fblobs%2Fsha256%2F{layer}");
    let (status, _, body) = s.request("DELETE", &path, &[], b"");
    assert_eq!((status, error_code(&body).as_str()), (400, "TAG_INVALID"));
    let (status, _, _) = s.request("GET", &format!("/v2/u/app/blobs/{}", blobs[0]), &[], b"");
    assert_eq!(status, 200);
    // An upload another request is writing cannot be closed (or written)
    // meanwhile; once that request is gone, it can.
    let (status, h, _) = s.request("POST", "/v2/u/app/blobs/uploads/", &[], b"");
    assert_eq!(status, 202);
    let loc = header(&h, "location").unwrap().to_string();
    let mut slow = TcpStream::connect(&s.addr).unwrap();
    slow.write_all(
        format!("PATCH {loc} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nsome").as_bytes(),
    )
    .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let data = b"the real content";
    let sep = if loc.contains('?') { '&' } else { '?' };
    let close = format!("{loc}{sep}digest={}", digest_of(data));
    let (status, _, body) = s.request("PUT", &close, &[], data);
    assert_eq!(
        (status, error_code(&body).as_str()),
        (416, "BLOB_UPLOAD_INVALID")
    );
    drop(slow);
    std::thread::sleep(std::time::Duration::from_millis(200));
    let (status, _, body) = s.request("PUT", &close, &[], data);
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
}

#[test]
fn a_multi_platform_image_pulls_by_its_index_digest() {
    let s = Server::start();
    let a = Berth::new();
    a.ok(&["load", "-i", fixture("busybox-1.35").to_str().unwrap()]);
    let name = format!("{}/multi/busybox:single", s.addr);
    a.ok(&["tag", &a.ids()[0], &name]);
    a.ok(&["push", &name]);
    let (status, h, manifest) = s.request(
        "GET",
        "/v2/multi/busybox/manifests/single",
        &[("Accept", "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json")],
        b"",
    );
    assert_eq!(status, 200);
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": header(&h, "content-type").unwrap(), "digest": digest_of(&manifest),
             "size": manifest.len(), "platform": {"architecture": "arm64", "os": "linux"}},
            {"mediaType": header(&h, "content-type").unwrap(), "digest": digest_of(&manifest),
             "size": manifest.len(), "platform": {"architecture": "amd64", "os": "linux"}}
        ]
    })
    .to_string();
    let (status, _, body) = s.request(
        "PUT",
        "/v2/multi/busybox/manifests/multi",
        &[("Content-Type", "application/vnd.oci.image.index.v1+json")],
        index.as_bytes(),
    );
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    let by_digest = format!("{}/multi/busybox@{}", s.addr, digest_of(index.as_bytes()));
    let b = Berth::new();
    b.ok(&["pull", &by_digest]);
    assert_eq!(
        b.inspect(&by_digest)["RepoDigests"],
        serde_json::json!([by_digest])
    );
    assert_eq!(
        b.ok(&["run", "--rm", &by_digest, "echo", "amd64"]),
        "amd64\n"
    );
}

/// What the OCI distribution conformance suite checks and berth missed: a
/// malformed or out-of-order Content-Range is 416 (on a PATCH and on the
/// closing PUT), a suffix range is served, and a manifest whose layers are
/// non-distributable (`urls`, nondistributable media types) is accepted
/// without those blobs.
#[test]
fn conformance_content_ranges_suffix_ranges_and_non_distributable_layers() {
    let s = Server::start();
    let data: Vec<u8> = (0..2000u32).map(|i| (i % 251) as u8).collect();
    let d = digest_of(&data);
    let open = |s: &Server| {
        let (status, h, _) = s.request("POST", "/v2/conf/app/blobs/uploads/", &[], b"");
        assert_eq!(status, 202);
        header(&h, "location").unwrap().to_string()
    };
    for bad in ["0--1", "5-2", "x-3", "-4", "1-4", "0-9"] {
        let loc = open(&s);
        let (status, _, body) = s.request("PATCH", &loc, &[("Content-Range", bad)], &data[..4]);
        assert_eq!(
            status,
            416,
            "Content-Range {bad}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    // In order, then a final chunk out of order with the PUT: 416.
    let loc = open(&s);
    let (status, h, _) = s.request("PATCH", &loc, &[("Content-Range", "0-999")], &data[..1000]);
    assert_eq!(status, 202);
    let loc = header(&h, "location").unwrap().to_string();
    let sep = if loc.contains('?') { '&' } else { '?' };
    let (status, _, _) = s.request(
        "PUT",
        &format!("{loc}{sep}digest={d}"),
        &[("Content-Range", "1001-1999")],
        &data[1001..],
    );
    assert_eq!(status, 416);
    let (status, _, body) = s.request(
        "PUT",
        &format!("{loc}{sep}digest={d}"),
        &[("Content-Range", "1000-1999")],
        &data[1000..],
    );
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    // A suffix range: the last 500 bytes.
    let (status, h, body) = s.request(
        "GET",
        &format!("/v2/conf/app/blobs/{d}"),
        &[("Range", "bytes=-500")],
        b"",
    );
    assert_eq!(status, 206);
    assert_eq!(body, &data[1500..]);
    assert_eq!(header(&h, "content-range"), Some("bytes 1500-1999/2000"));
    // Non-distributable layers need not be in the registry.
    let config = br#"{"architecture":"amd64","os":"windows"}"#;
    let c = s.push_blob("conf/app", config);
    let absent = digest_of(b"a foreign layer");
    for layer in [
        serde_json::json!({"mediaType": "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", "digest": absent, "size": 15, "urls": ["https://example.invalid/layer"]}),
        serde_json::json!({"mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", "digest": absent, "size": 15, "urls": ["https://example.invalid/layer"]}),
    ] {
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": c, "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": data.len()}, layer]
        })
        .to_string();
        let (status, _, body) = s.request(
            "PUT",
            "/v2/conf/app/manifests/foreign",
            &[("Content-Type", "application/vnd.oci.image.manifest.v1+json")],
            manifest.as_bytes(),
        );
        assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    }
    // A missing ordinary layer is still refused, with urls or not, and so
    // is a non-distributable one with nowhere to fetch it from.
    for layer in [
        serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": absent, "size": 15}),
        serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": absent, "size": 15, "urls": ["https://example.invalid/layer"]}),
        serde_json::json!({"mediaType": "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", "digest": absent, "size": 15}),
    ] {
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": c, "size": config.len()},
            "layers": [layer]
        })
        .to_string();
        let (status, _, body) = s.request(
            "PUT",
            "/v2/conf/app/manifests/missing",
            &[("Content-Type", "application/vnd.oci.image.manifest.v1+json")],
            manifest.as_bytes(),
        );
        assert_eq!(
            (status, error_code(&body).as_str()),
            (400, "MANIFEST_BLOB_UNKNOWN")
        );
    }
}

/// An upload session belongs to its repository and its user: through
/// another repository's URL (where the attacker may push), or as another
/// user, it is unknown, and what its owner wrote is untouched.
#[test]
fn upload_sessions_are_bound_to_their_repository_and_user() {
    let dir = tempfile::tempdir().unwrap();
    let mut lines = String::new();
    for (user, pw) in [("alice", "a-pass"), ("bob", "b-pass")] {
        let p = dir.path().join("pw");
        std::fs::write(&p, format!("{pw}\n")).unwrap();
        let out = Command::new(BERTH)
            .args(["registry", "htpasswd", user])
            .stdin(std::fs::File::open(&p).unwrap())
            .output()
            .unwrap();
        assert!(out.status.success());
        lines.push_str(&String::from_utf8_lossy(&out.stdout));
    }
    let htpasswd = dir.path().join("htpasswd");
    std::fs::write(&htpasswd, lines).unwrap();
    let s = Server::start_with(&["--htpasswd", htpasswd.to_str().unwrap()]);
    use base64::Engine as _;
    let basic = |u: &str, p: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
        )
    };
    let alice = basic("alice", "a-pass");
    let bob = basic("bob", "b-pass");
    let (status, h, _) = s.request(
        "POST",
        "/v2/team/secret/blobs/uploads/",
        &[("Authorization", &alice)],
        b"",
    );
    assert_eq!(status, 202);
    let loc = header(&h, "location").unwrap().to_string();
    let (status, _, _) = s.request(
        "PATCH",
        &loc,
        &[("Authorization", &alice), ("Content-Range", "0-3")],
        b"good",
    );
    assert_eq!(status, 202);
    let id = loc
        .split("/blobs/uploads/")
        .nth(1)
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_string();
    let other = format!("/v2/bob/app/blobs/uploads/{id}");
    for (who, path) in [
        (&alice, other.as_str()),
        (&bob, other.as_str()),
        (&bob, loc.as_str()),
    ] {
        for method in ["PATCH", "GET", "DELETE"] {
            let (status, _, body) = s.request(
                method,
                path,
                &[("Authorization", who), ("Content-Range", "4-7")],
                b"evil",
            );
            assert_eq!(
                (status, error_code(&body).as_str()),
                (404, "BLOB_UPLOAD_UNKNOWN"),
                "{method} {path}"
            );
        }
    }
    // Alice's upload is intact and closes as hers.
    let d = digest_of(b"good");
    let sep = if loc.contains('?') { '&' } else { '?' };
    let (status, _, body) = s.request(
        "PUT",
        &format!("{loc}{sep}digest={d}"),
        &[("Authorization", &alice)],
        b"",
    );
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    // A finished upload leaves nothing in uploads/, not even a directory.
    let left: Vec<_> = std::fs::read_dir(s.storage.join("uploads"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// An unknown user name costs the registry a bcrypt check as a known one
/// with a wrong password does, so user names cannot be told by timing.
#[test]
fn unknown_users_cost_a_password_check_too() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("pw");
    std::fs::write(&p, "pw\n").unwrap();
    let out = Command::new(BERTH)
        .args(["registry", "htpasswd", "alice"])
        .stdin(std::fs::File::open(&p).unwrap())
        .output()
        .unwrap();
    let htpasswd = dir.path().join("htpasswd");
    std::fs::write(&htpasswd, &out.stdout).unwrap();
    let s = Server::start_with(&["--htpasswd", htpasswd.to_str().unwrap()]);
    use base64::Engine as _;
    let time = |user: &str| {
        let auth = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:wrong"))
        );
        let mut times: Vec<std::time::Duration> = (0..3)
            .map(|_| {
                let t = std::time::Instant::now();
                let (status, _, _) = s.request("GET", "/v2/", &[("Authorization", &auth)], b"");
                assert_eq!(status, 401);
                t.elapsed()
            })
            .collect();
        times.sort();
        times[1]
    };
    let known = time("alice");
    let unknown = time("nosuchuser");
    assert!(
        unknown * 3 >= known,
        "an unknown user is answered in {unknown:?}, a known one in {known:?}: names can be enumerated"
    );
}

/// Slow clients cannot make the registry unreachable: with 256 fds, 300
/// connections from one address that send a request head and stall are
/// capped (16 per client here) and the fds kept for others, so a client
/// at another address is answered at once; a body that sends nothing for
/// the body timeout gets 408.
#[test]
fn slow_clients_cannot_take_every_connection() {
    use std::net::{SocketAddr, TcpStream};
    let s = Server::start_wrapped(
        &["prlimit", "--nofile=256:256"],
        &["--body-timeout", "3s", "--max-client-conns", "16"],
    );
    let server: SocketAddr = s.addr.parse().unwrap();
    let from = |ip: &str| -> Option<TcpStream> {
        let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).ok()?;
        sock.bind(&SocketAddr::new(ip.parse().unwrap(), 0).into())
            .ok()?;
        sock.connect_timeout(&server.into(), std::time::Duration::from_secs(2))
            .ok()?;
        Some(sock.into())
    };
    let head = format!(
        "POST /v2/drip/x/blobs/uploads/?digest={} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nx",
        digest_of(&[b'x'; 1000])
    );
    let mut drippers = Vec::new();
    for _ in 0..300 {
        if let Some(mut c) = from("127.0.0.2") {
            let _ = c.write_all(head.as_bytes());
            drippers.push(c);
        }
    }
    // Another client is answered while they hold what they got.
    let t = std::time::Instant::now();
    for _ in 0..5 {
        let (status, _, _) = s.request("GET", "/v2/", &[], b"");
        assert_eq!(status, 200);
    }
    assert!(
        t.elapsed() < std::time::Duration::from_secs(3),
        "answered in {:?}",
        t.elapsed()
    );
    // A stalled body is answered 408 once the body timeout passes.
    let mut slow = from("127.0.0.3").unwrap();
    slow.set_read_timeout(Some(std::time::Duration::from_secs(15)))
        .unwrap();
    slow.write_all(head.as_bytes()).unwrap();
    let mut resp = Vec::new();
    let _ = slow.read_to_end(&mut resp);
    let resp = String::from_utf8_lossy(&resp);
    assert!(resp.starts_with("HTTP/1.1 408"), "{resp}");
    drop(drippers);
}

/// A registry whose starter closes its stdout at once (or after reading
/// the first line, as a script reading the address does) keeps serving:
/// it used to panic writing its start-up lines to the closed pipe, which
/// made the TLS test flaky ("connection refused").
#[test]
fn registry_keeps_serving_when_its_stdout_is_closed() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BERTH)
        .args([
            "registry",
            "serve",
            "--addr",
            &format!("127.0.0.1:{port}"),
            "--storage",
        ])
        .arg(dir.path().join("s"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let mut up = false;
    for _ in 0..100 {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            up = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    let exited = child.try_wait().unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(up && exited.is_none(), "the registry died: {exited:?}");
}

/// Runs the distribution-spec conformance checks (`tests/conformance/
/// distribution.py`, the OCI suite's checks re-expressed) against `base`;
/// returns the report and whether every check passed.
fn distribution_conformance(base: &str, creds: Option<(&str, &str)>) -> (String, bool) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance/distribution.py");
    let mut cmd = Command::new("python3");
    cmd.arg(script).arg(base);
    if let Some((u, p)) = creds {
        cmd.args(["--user", u, "--password", p]);
    }
    let out = cmd.output().expect("python3 runs the conformance checks");
    let report =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (report, out.status.success())
}

/// Every check of the OCI distribution conformance suite (pull, push,
/// content discovery, content management) passes on berth's registry:
/// open, behind htpasswd, and behind bearer tokens. The suite's checks fail
/// on Debian's docker-registry where it is known to differ from the spec
/// (no referrers API, `n` ignored on tag lists): the checker can fail.
#[test]
fn the_oci_distribution_conformance_checks_pass() {
    let s = Server::start();
    let (report, ok) = distribution_conformance(&format!("http://{}", s.addr), None);
    assert!(ok, "open registry:\n{report}");
    let summary = report.lines().last().unwrap_or_default().to_string();
    let passed: usize = summary
        .split_whitespace()
        .nth(2)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(passed >= 70, "{summary}");

    let dir = tempfile::tempdir().unwrap();
    let htpasswd = htpasswd_file(dir.path(), &[("alice", "s3cret")]);
    let s = Server::start_with(&["--htpasswd", htpasswd.to_str().unwrap()]);
    let base = format!("http://{}", s.addr);
    let (report, ok) = distribution_conformance(&base, Some(("alice", "s3cret")));
    assert!(ok, "htpasswd:\n{report}");
    let (report, ok) = distribution_conformance(&base, Some(("alice", "wrong")));
    assert!(
        !ok && report.contains("401"),
        "a wrong password passed:\n{report}"
    );
    let s = Server::start_with(&[
        "--htpasswd",
        htpasswd.to_str().unwrap(),
        "--token-issuer",
        "conformance",
    ]);
    let (report, ok) =
        distribution_conformance(&format!("http://{}", s.addr), Some(("alice", "s3cret")));
    assert!(ok, "bearer tokens:\n{report}");

    let d = Distribution::start();
    let (report, ok) = distribution_conformance(&format!("http://{}", d.addr), None);
    assert!(!ok, "docker-registry passed every check:\n{report}");
    for known in ["listing references", "number of tags should be limitable"] {
        assert!(
            report
                .lines()
                .any(|l| l.starts_with("not ok") && l.contains(known)),
            "docker-registry should fail {known:?}:\n{report}"
        );
    }
}
