//! `-u`/`USER` resolved through the image's /etc/passwd and /etc/group, as
//! Docker does: `name`, `uid`, `name:group`, `uid:gid`; numeric ids need no
//! entry; a named user gets its primary group and the groups listing it.

use std::io::Read;
use std::path::Path;

use rustix::fs::OFlags;

use crate::EngineError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    /// The passwd home directory, for HOME.
    pub home: String,
}

/// Reads a file of the container's rootfs, resolving symlinks inside it (a
/// link in the image cannot make berth read a host file). Missing: empty.
fn read_in_root(rootfs: &Path, rel: &str) -> Result<String, EngineError> {
    let root = inroot::open_root(rootfs)
        .map_err(|e| EngineError::io(format!("open {}", rootfs.display()), e))?;
    let fd = match inroot::open_in_root(&root, rel, OFlags::RDONLY) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Ok(String::new()),
        Err(e) => {
            return Err(EngineError::io(
                format!("read /{rel} of the image"),
                e.into(),
            ))
        }
    };
    let mut s = String::new();
    std::fs::File::from(fd)
        .take(8 << 20)
        .read_to_string(&mut s)
        .map_err(|e| EngineError::io(format!("read /{rel} of the image"), e))?;
    Ok(s)
}

/// A directory of the rootfs, resolved inside it (symlinks cannot lead
/// out); None if it is missing or not a directory.
pub(crate) fn open_dir_in_root(rootfs: &Path, rel: &str) -> Option<std::os::fd::OwnedFd> {
    let root = inroot::open_root(rootfs).ok()?;
    inroot::open_in_root(&root, rel, OFlags::RDONLY | OFlags::DIRECTORY).ok()
}

/// Resolves `spec` ("" means root) in the rootfs.
pub fn resolve(rootfs: &Path, spec: &str) -> Result<User, EngineError> {
    let (user_part, group_part) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let passwd = read_in_root(rootfs, "etc/passwd")?;
    // name:x:uid:gid:gecos:home:shell
    let entries: Vec<Vec<&str>> = passwd
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 4)
        .collect();
    let user_part = if user_part.is_empty() { "0" } else { user_part };
    let found = entries
        .iter()
        .find(|f| f[0] == user_part || (user_part.parse::<u32>().is_ok() && f[2] == user_part));
    let (uid, mut gid, name, home) = match (found, user_part.parse::<u32>()) {
        (Some(f), _) => (
            f[2].parse::<u32>().unwrap_or(0),
            f[3].parse::<u32>().unwrap_or(0),
            Some(f[0].to_string()),
            f.get(5)
                .map(|h| h.to_string())
                .unwrap_or_else(|| "/".into()),
        ),
        (None, Ok(uid)) => (uid, 0, None, "/".to_string()),
        (None, Err(_)) => {
            return Err(EngineError::Invalid(format!(
                "unable to find user {user_part}: no matching entries in passwd file"
            )))
        }
    };
    let group = read_in_root(rootfs, "etc/group")?;
    // name:x:gid:member,member
    let groups: Vec<Vec<&str>> = group
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 3)
        .collect();
    if let Some(g) = group_part {
        gid = match groups
            .iter()
            .find(|f| f[0] == g || (g.parse::<u32>().is_ok() && f[2] == g))
        {
            Some(f) => f[2].parse().unwrap_or(0),
            None => g.parse().map_err(|_| {
                EngineError::Invalid(format!(
                    "unable to find group {g}: no matching entries in group file"
                ))
            })?,
        };
    }
    // Docker gives the process its primary group as a supplementary one
    // too (`id` shows groups=GID), then the groups that list the user.
    let mut additional_gids = vec![gid];
    if let (Some(name), None) = (&name, group_part) {
        for f in &groups {
            let members = f.get(3).copied().unwrap_or("");
            if members.split(',').any(|m| m == name) {
                if let Ok(g) = f[2].parse::<u32>() {
                    if g != gid && !additional_gids.contains(&g) {
                        additional_gids.push(g);
                    }
                }
            }
        }
    }
    Ok(User {
        uid,
        gid,
        additional_gids,
        home,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_and_groups() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("etc")).unwrap();
        std::fs::write(
            d.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            d.path().join("etc/group"),
            "root:x:0:\napp:x:1000:\nwheel:x:10:root,app\naudio:x:29:app\n",
        )
        .unwrap();
        let r = |s| resolve(d.path(), s).unwrap();
        assert_eq!(r("").uid, 0);
        assert_eq!(r("").additional_gids, vec![0, 10]);
        let app = r("app");
        assert_eq!(
            (app.uid, app.gid, app.home.as_str()),
            (1000, 1000, "/home/app")
        );
        assert_eq!(app.additional_gids, vec![1000, 10, 29]);
        assert_eq!(r("1000").uid, 1000);
        let x = r("4242");
        assert_eq!((x.uid, x.gid), (4242, 0));
        let x = r("app:wheel");
        assert_eq!((x.uid, x.gid), (1000, 10));
        assert_eq!(x.additional_gids, vec![10]);
        assert_eq!(r("5:7").gid, 7);
        let e = resolve(d.path(), "nobody").unwrap_err().to_string();
        assert!(e.contains("unable to find user nobody"), "{e}");
        assert!(resolve(d.path(), "app:nogroup").is_err());
    }

    #[test]
    fn passwd_symlink_stays_inside() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("etc")).unwrap();
        std::fs::write(d.path().join("inside"), "x:x:4321:4321::/:/bin/sh\n").unwrap();
        // An absolute link resolves inside the rootfs, never on the host.
        std::os::unix::fs::symlink("/../../inside", d.path().join("etc/passwd")).unwrap();
        assert_eq!(resolve(d.path(), "x").unwrap().uid, 4321);
        assert!(resolve(d.path(), "daemon").is_err());
    }
}
