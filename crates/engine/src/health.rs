//! Health checks, as Docker runs them: the image's HEALTHCHECK or the
//! `--health-*` flags; every interval the monitor forks a checker that
//! runs the test in the container (as `exec` does), with a timeout, and
//! records the result: status starting/healthy/unhealthy, the failing
//! streak and the last five results, shown by `ps` and `inspect`.

use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::config::ContainerConfig;
use crate::Engine;
use crate::EngineError;

/// Docker's defaults.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_RETRIES: u32 = 3;
/// Output kept per result, as Docker keeps it.
const MAX_OUTPUT: usize = 4096;
const MAX_LOG: usize = 5;

pub use crate::config::HealthFlags;

/// The check a container gets.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    /// The command run in the container.
    pub args: Vec<String>,
    pub interval: Duration,
    pub timeout: Duration,
    pub start_period: Duration,
    pub retries: u32,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Result1 {
    pub start: String,
    pub end: String,
    pub exit_code: i32,
    pub output: String,
}

/// Docker's State.Health.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Health {
    pub status: String,
    pub failing_streak: u32,
    pub log: Vec<Result1>,
}

/// A Go duration: `30s`, `1m30s`, `100ms`, `1.5h`, `0`.
pub fn parse_duration(s: &str) -> Result<Duration, EngineError> {
    berth_image::duration::parse(s).map_err(EngineError::Invalid)
}

/// The check of a container: the flags over the image's HEALTHCHECK
/// (`healthcheck`, Docker's config form with nanosecond durations).
pub fn check_for(
    flags: &HealthFlags,
    healthcheck: Option<&serde_json::Value>,
) -> Result<Option<Check>, EngineError> {
    if flags.disabled {
        return Ok(None);
    }
    let img = healthcheck.cloned().unwrap_or_default();
    let ns = |k: &str| {
        img.get(k)
            .and_then(serde_json::Value::as_u64)
            .filter(|n| *n > 0)
            .map(Duration::from_nanos)
    };
    let args: Vec<String> = match (&flags.cmd, &flags.test) {
        (Some(c), None) => vec!["/bin/sh".into(), "-c".into(), c.clone()],
        (_, given) => {
            let test: Vec<String> = match given {
                Some(t) if !t.is_empty() => t.clone(),
                _ => img
                    .get("Test")
                    .and_then(|t| serde_json::from_value(t.clone()).ok())
                    .unwrap_or_default(),
            };
            match test.first().map(String::as_str) {
                Some("CMD") => test[1..].to_vec(),
                Some("CMD-SHELL") => {
                    vec!["/bin/sh".into(), "-c".into(), test[1..].join(" ")]
                }
                _ => return Ok(None),
            }
        }
    };
    if args.is_empty() {
        return Ok(None);
    }
    // Past a year is a year: a clock cannot add any length of time.
    let dur =
        |flag: &Option<String>, key: &str, default: Duration| -> Result<Duration, EngineError> {
            let d = match flag {
                Some(s) => parse_duration(s)?,
                None => ns(key).unwrap_or(default),
            };
            Ok(d.min(Duration::from_secs(365 * 24 * 3600)))
        };
    let interval = dur(&flags.interval, "Interval", DEFAULT_INTERVAL)?;
    let timeout = dur(&flags.timeout, "Timeout", DEFAULT_TIMEOUT)?;
    let start_period = dur(&flags.start_period, "StartPeriod", Duration::ZERO)?;
    let retries = flags.retries.unwrap_or_else(|| {
        img.get("Retries")
            .and_then(serde_json::Value::as_u64)
            .filter(|n| *n > 0)
            .map_or(DEFAULT_RETRIES, |n| n as u32)
    });
    Ok(Some(Check {
        args,
        interval: if interval.is_zero() {
            DEFAULT_INTERVAL
        } else {
            interval
        },
        timeout: if timeout.is_zero() {
            DEFAULT_TIMEOUT
        } else {
            timeout
        },
        start_period,
        retries,
    }))
}

/// The container's check, if it has one.
pub fn check_of(
    eng: &Engine,
    config: &ContainerConfig,
    image_id: &str,
) -> Result<Option<Check>, EngineError> {
    let image = eng.image_config(image_id)?;
    check_for(&config.health, image.healthcheck.as_ref())
}

/// Runs the check once in the container and returns its result.
fn run_once(eng: &Engine, id: &str, check: &Check) -> Result1 {
    let start = crate::clock::now();
    let (code, output) = match run_command(eng, id, check) {
        Ok(r) => r,
        Err(e) => (-1, e.to_string()),
    };
    Result1 {
        start,
        end: crate::clock::now(),
        exit_code: code,
        output,
    }
}

fn run_command(eng: &Engine, id: &str, check: &Check) -> Result<(i32, String), EngineError> {
    let rt = eng.paths.runtime();
    let mut process = berth_runtime::container::exec_base(&rt, id)?;
    process.set_args(Some(check.args.clone()));
    process.set_terminal(Some(false));
    let (r, w) = crate::io::pipe()?;
    let null = crate::io::dev_null()?;
    let opts = berth_runtime::container::ExecOptions {
        root: rt,
        id: id.to_string(),
        process,
        detach: true,
        pid_file: None,
        console_socket: None,
        preserve_fds: 0,
        stdio: Some([null.as_raw_fd(), w.as_raw_fd(), w.as_raw_fd()]),
        console_fd: None,
    };
    let pid = berth_runtime::container::spawn(&opts)?;
    drop(w);
    // Read the output while keeping the deadline (no thread: this process
    // has joined the container's pid namespace, where it may not clone
    // one).
    let deadline = Instant::now() + check.timeout;
    let mut out = Vec::new();
    let mut r = Some(r);
    let mut buf = [0u8; 4096];
    let code = loop {
        if let Some(fd) = &r {
            let mut fds = [rustix::event::PollFd::new(fd, rustix::event::PollFlags::IN)];
            let ts = rustix::event::Timespec {
                tv_sec: 0,
                tv_nsec: 10_000_000,
            };
            if rustix::event::poll(&mut fds, Some(&ts)).unwrap_or(0) > 0 {
                match rustix::io::read(fd, &mut buf) {
                    Ok(0) | Err(_) => r = None,
                    Ok(n) => {
                        if out.len() < MAX_OUTPUT {
                            out.extend_from_slice(&buf[..n]);
                        }
                    }
                }
            }
        } else {
            std::thread::sleep(Duration::from_millis(5));
        }
        if r.is_none() {
            if let Some(c) = crate::io::try_wait(pid) {
                break Some(c);
            }
        }
        if Instant::now() >= deadline {
            // SAFETY: kill and reap our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, std::ptr::null_mut(), 0);
            }
            break None;
        }
    };
    let mut text = String::from_utf8_lossy(&out[..out.len().min(MAX_OUTPUT)]).into_owned();
    Ok(match code {
        Some(c) => (c, text),
        None => {
            text = format!(
                "Health check exceeded timeout ({})",
                go_duration(check.timeout)
            );
            (-1, text)
        }
    })
}

/// A duration as Go prints it: `150ms`, `30s`, `1m30s`, `2h0m0s`.
fn go_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let secs = d.as_secs_f64();
    let (h, m) = ((secs / 3600.0) as u64, ((secs % 3600.0) / 60.0) as u64);
    let s = secs % 60.0;
    let s = if s.fract() == 0.0 {
        format!("{}s", s as u64)
    } else {
        format!("{s}s")
    };
    match (h, m) {
        (0, 0) => s,
        (0, m) => format!("{m}m{s}"),
        (h, m) => format!("{h}h{m}m{s}"),
    }
}

/// Folds a result into the state, as Docker does: a success makes the
/// container healthy; `retries` failures in a row (not counting those in
/// the start period) make it unhealthy.
pub fn record(h: &mut Health, r: Result1, check: &Check, in_start_period: bool) {
    if r.exit_code == 0 {
        h.status = "healthy".into();
        h.failing_streak = 0;
    } else if !(in_start_period && h.status == "starting") {
        h.failing_streak += 1;
        if h.failing_streak >= check.retries {
            h.status = "unhealthy".into();
        }
    }
    h.log.push(r);
    if h.log.len() > MAX_LOG {
        let extra = h.log.len() - MAX_LOG;
        h.log.drain(..extra);
    }
}

/// The checker (helper role `health`): one check of container `id`,
/// recorded in the database. `start_period_left`: milliseconds of the
/// start period left when the monitor started it (a failure within it
/// does not count).
pub(crate) fn checker_main(paths: &crate::Paths, id: &str, start_period_left: &str) -> i32 {
    let until = Instant::now() + Duration::from_millis(start_period_left.parse().unwrap_or(0));
    let Ok(eng) = Engine::open(paths) else {
        return 1;
    };
    let Ok(Some(rec)) = eng.db.get(id) else {
        return 1;
    };
    let Ok(Some(check)) = check_of(&eng, &rec.config, &rec.image_id) else {
        return 1;
    };
    let result = run_once(&eng, id, &check);
    let Ok(Some(rec)) = eng.db.get(id) else {
        return 1;
    };
    let mut h: Health = serde_json::from_str(&rec.health).unwrap_or_default();
    if h.status.is_empty() {
        h.status = "starting".into();
    }
    record(&mut h, result, &check, Instant::now() < until);
    match eng
        .db
        .set_health(id, &serde_json::to_string(&h).expect("serializes"))
    {
        Ok(()) => 0,
        Err(_) => 1,
    }
}

/// At start: "starting" with no results yet, or none without a check
/// (`current`: the record's health now; nothing is written when it is
/// already none).
pub fn reset(
    eng: &Engine,
    id: &str,
    current: &str,
    check: Option<&Check>,
) -> Result<(), EngineError> {
    if check.is_none() && current.is_empty() {
        return Ok(());
    }
    let h = match check {
        Some(_) => serde_json::to_string(&Health {
            status: "starting".into(),
            ..Default::default()
        })
        .expect("serializes"),
        None => String::new(),
    };
    eng.db.set_health(id, &h)
}

/// The status word of a record's health JSON ("" for none).
pub fn status_of(health: &str) -> String {
    serde_json::from_str::<Health>(health)
        .map(|h| h.status)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(go_duration(Duration::from_millis(150)), "150ms");
        assert_eq!(go_duration(Duration::from_secs(30)), "30s");
        assert_eq!(go_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(go_duration(Duration::from_secs(7200)), "2h0m0s");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("100ms").unwrap(), Duration::from_millis(100));
        assert_eq!(parse_duration("0.5s").unwrap(), Duration::from_millis(500));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn flags_override_the_image() {
        let img =
            serde_json::json!({"Test": ["CMD-SHELL", "test -f /x"], "Interval": 5_000_000_000u64});
        let c = check_for(&HealthFlags::default(), Some(&img))
            .unwrap()
            .unwrap();
        assert_eq!(c.args, ["/bin/sh", "-c", "test -f /x"]);
        assert_eq!(c.interval, Duration::from_secs(5));
        assert_eq!(c.retries, 3);
        let flags = HealthFlags {
            interval: Some("200ms".into()),
            retries: Some(1),
            ..Default::default()
        };
        let c = check_for(&flags, Some(&img)).unwrap().unwrap();
        assert_eq!(c.interval, Duration::from_millis(200));
        assert_eq!(c.retries, 1);
        // The Engine API's Test form wins over the image's.
        let api = HealthFlags {
            test: Some(vec!["CMD".into(), "/bin/true".into()]),
            ..Default::default()
        };
        assert_eq!(
            check_for(&api, Some(&img)).unwrap().unwrap().args,
            ["/bin/true"]
        );
        let api_none = HealthFlags {
            test: Some(vec!["NONE".into()]),
            ..Default::default()
        };
        assert!(check_for(&api_none, Some(&img)).unwrap().is_none());
        let none = serde_json::json!({"Test": ["NONE"]});
        assert!(check_for(&HealthFlags::default(), Some(&none))
            .unwrap()
            .is_none());
        let off = HealthFlags {
            disabled: true,
            ..Default::default()
        };
        assert!(check_for(&off, Some(&img)).unwrap().is_none());
    }

    #[test]
    fn streaks_and_start_period() {
        let check = Check {
            args: vec!["x".into()],
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            start_period: Duration::from_secs(10),
            retries: 2,
        };
        let fail = || Result1 {
            exit_code: 1,
            ..Default::default()
        };
        let mut h = Health {
            status: "starting".into(),
            ..Default::default()
        };
        record(&mut h, fail(), &check, true);
        assert_eq!((h.status.as_str(), h.failing_streak), ("starting", 0));
        record(&mut h, fail(), &check, false);
        record(&mut h, fail(), &check, false);
        assert_eq!((h.status.as_str(), h.failing_streak), ("unhealthy", 2));
        record(&mut h, Result1::default(), &check, false);
        assert_eq!((h.status.as_str(), h.failing_streak), ("healthy", 0));
        for _ in 0..10 {
            record(&mut h, fail(), &check, false);
        }
        assert_eq!(h.log.len(), MAX_LOG);
    }
}
