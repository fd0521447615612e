//! ADD's remote sources: an HTTP download with its checksum checked.

use std::io::Write;
use std::path::Path;

use sha2::{Digest as _, Sha256};

use super::dirs::set_mode;
use crate::BuildError;

/// The file name ADD gives a URL's download: its path's last part.
pub(super) fn url_file_name(u: &str) -> String {
    let path = u.split(['?', '#']).next().unwrap_or(u);
    let after_host = path.splitn(4, '/').nth(3).unwrap_or("");
    match after_host.rsplit('/').next() {
        Some(n) if !n.is_empty() => n.to_string(),
        _ => "__unnamed__".to_string(),
    }
}

/// Downloads `url` into `dest` (mode 0600, as ADD gives it, with the
/// server's Last-Modified time), checking `checksum` (`sha256:HEX`) when
/// given; returns the content's sha256.
pub(super) fn fetch(url: &str, dest: &Path, checksum: Option<&str>) -> Result<String, BuildError> {
    let want = match checksum {
        Some(c) => Some(
            c.strip_prefix("sha256:")
                .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
                .ok_or_else(|| {
                    BuildError::Invalid(format!("--checksum={c}: use sha256:<64 hex digits>"))
                })?
                .to_ascii_lowercase(),
        ),
        None => None,
    };
    let agent = ureq::Agent::config_builder()
        .timeout_global(Some(std::time::Duration::from_secs(600)))
        .build()
        .new_agent();
    let resp = agent
        .get(url)
        .call()
        .map_err(|e| BuildError::Invalid(format!("ADD {url}: {e}")))?;
    let modified = resp
        .headers()
        .get("last-modified")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| chrono::DateTime::parse_from_rfc2822(v).ok())
        .map(|t| t.timestamp());
    let mut body = resp.into_body();
    let mut reader = body.as_reader();
    let mut f =
        std::fs::File::create_new(dest).map_err(|e| BuildError::io("create a download", e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = std::io::Read::read(&mut reader, &mut buf)
            .map_err(|e| BuildError::Invalid(format!("ADD {url}: reading the body: {e}")))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        f.write_all(&buf[..n])
            .map_err(|e| BuildError::io("write a download", e))?;
    }
    let got = hex::encode(h.finalize());
    if let Some(w) = want {
        if w != got {
            return Err(BuildError::Invalid(format!(
                "ADD {url}: digest mismatch: --checksum wants sha256:{w}, the download is sha256:{got}"
            )));
        }
    }
    drop(f);
    set_mode(dest, 0o600)?;
    if let Some(t) = modified {
        let ts = rustix::fs::Timespec {
            tv_sec: t,
            tv_nsec: 0,
        };
        let _ = rustix::fs::utimensat(
            rustix::fs::CWD,
            dest,
            &rustix::fs::Timestamps {
                last_access: ts,
                last_modification: ts,
            },
            rustix::fs::AtFlags::empty(),
        );
    }
    Ok(got)
}
