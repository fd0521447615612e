//! A running container's resource use, read from its cgroups (v1
//! controllers, v2, or both on a hybrid host) and its network namespace,
//! in the shape of the Engine API's stats (`docker stats`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::db::State;
use crate::{Engine, EngineError};

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// One sample. Field names are the Engine API's.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Sample {
    pub read: String,
    pub cpu_stats: CpuStats,
    pub memory_stats: MemoryStats,
    pub pids_stats: PidsStats,
    pub blkio_stats: BlkioStats,
    pub num_procs: u32,
    pub networks: BTreeMap<String, NetworkStats>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct CpuUsage {
    /// Nanoseconds.
    pub total_usage: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu_usage: Vec<u64>,
    pub usage_in_kernelmode: u64,
    pub usage_in_usermode: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct CpuStats {
    pub cpu_usage: CpuUsage,
    /// The host's CPU time in nanoseconds (from /proc/stat).
    pub system_cpu_usage: u64,
    pub online_cpus: u32,
    pub throttling_data: Throttling,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Throttling {
    pub periods: u64,
    pub throttled_periods: u64,
    pub throttled_time: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct MemoryStats {
    pub usage: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_usage: Option<u64>,
    pub stats: BTreeMap<String, u64>,
    pub limit: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct PidsStats {
    pub current: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct BlkioEntry {
    pub major: u64,
    pub minor: u64,
    pub op: String,
    pub value: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct BlkioStats {
    pub io_service_bytes_recursive: Vec<BlkioEntry>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct NetworkStats {
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_dropped: u64,
}

fn read(p: &Path) -> Option<String> {
    std::fs::read_to_string(p).ok()
}

fn read_u64(p: &Path) -> Option<u64> {
    read(p)?.trim().parse().ok()
}

/// `key value` lines.
fn flat_keyed(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

/// The container's cgroup directories: by v1 controller name, and the
/// v2 directory ("" key) when there is one.
fn cgroup_dirs(pid: i32) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    let Some(text) = read(Path::new(&format!("/proc/{pid}/cgroup"))) else {
        return out;
    };
    let pure_v2 = Path::new(CGROUP_ROOT).join("cgroup.controllers").exists();
    for line in text.lines() {
        let mut f = line.splitn(3, ':');
        let (Some(_), Some(ctrls), Some(path)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        let rel = path.trim_start_matches('/');
        if ctrls.is_empty() {
            let base = if pure_v2 {
                PathBuf::from(CGROUP_ROOT)
            } else {
                Path::new(CGROUP_ROOT).join("unified")
            };
            out.insert(String::new(), base.join(rel));
            continue;
        }
        for name in ctrls.split(',') {
            let name = name.trim_start_matches("name=");
            // Mounted as the joined name (cpu,cpuacct) or each alone.
            for mount in [ctrls.trim_start_matches("name="), name] {
                let dir = Path::new(CGROUP_ROOT).join(mount).join(rel);
                if dir.is_dir() {
                    out.insert(name.to_string(), dir);
                    break;
                }
            }
        }
    }
    out
}

/// The host's CPU time in nanoseconds, as docker reads it.
fn system_cpu_usage() -> u64 {
    let ticks_per_sec = 100u64;
    read(Path::new("/proc/stat"))
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("cpu "))?;
            Some(
                line.split_whitespace()
                    .skip(1)
                    .take(7)
                    .filter_map(|v| v.parse::<u64>().ok())
                    .sum::<u64>(),
            )
        })
        .map_or(0, |t| t * (1_000_000_000 / ticks_per_sec))
}

fn networks(pid: i32) -> BTreeMap<String, NetworkStats> {
    let mut out = BTreeMap::new();
    let Some(text) = read(Path::new(&format!("/proc/{pid}/net/dev"))) else {
        return out;
    };
    for line in text.lines().skip(2) {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        if name == "lo" {
            continue;
        }
        let v: Vec<u64> = rest
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        if v.len() < 12 {
            continue;
        }
        out.insert(
            name.to_string(),
            NetworkStats {
                rx_bytes: v[0],
                rx_packets: v[1],
                rx_errors: v[2],
                rx_dropped: v[3],
                tx_bytes: v[8],
                tx_packets: v[9],
                tx_errors: v[10],
                tx_dropped: v[11],
            },
        );
    }
    out
}

/// Reads one sample of the cgroups of the process `pid`.
pub fn sample_of(pid: i32) -> Sample {
    let dirs = cgroup_dirs(pid);
    let mut s = Sample {
        read: crate::clock::now(),
        ..Sample::default()
    };
    s.cpu_stats.online_cpus = std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1);
    s.cpu_stats.system_cpu_usage = system_cpu_usage();
    let v2 = dirs.get("");
    // CPU: cpuacct (v1) or cpu.stat (v2).
    if let Some(d) = dirs.get("cpuacct") {
        s.cpu_stats.cpu_usage.total_usage = read_u64(&d.join("cpuacct.usage")).unwrap_or(0);
        s.cpu_stats.cpu_usage.percpu_usage = read(&d.join("cpuacct.usage_percpu"))
            .map(|t| {
                t.split_whitespace()
                    .filter_map(|x| x.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        let st = read(&d.join("cpuacct.stat"))
            .map(|t| flat_keyed(&t))
            .unwrap_or_default();
        // USER_HZ ticks to nanoseconds.
        s.cpu_stats.cpu_usage.usage_in_usermode = st.get("user").copied().unwrap_or(0) * 10_000_000;
        s.cpu_stats.cpu_usage.usage_in_kernelmode =
            st.get("system").copied().unwrap_or(0) * 10_000_000;
    } else if let Some(d) = v2.filter(|d| d.join("cpu.stat").exists()) {
        let st = read(&d.join("cpu.stat"))
            .map(|t| flat_keyed(&t))
            .unwrap_or_default();
        let us = |k: &str| st.get(k).copied().unwrap_or(0) * 1000;
        s.cpu_stats.cpu_usage.total_usage = us("usage_usec");
        s.cpu_stats.cpu_usage.usage_in_usermode = us("user_usec");
        s.cpu_stats.cpu_usage.usage_in_kernelmode = us("system_usec");
        s.cpu_stats.throttling_data = Throttling {
            periods: st.get("nr_periods").copied().unwrap_or(0),
            throttled_periods: st.get("nr_throttled").copied().unwrap_or(0),
            throttled_time: us("throttled_usec"),
        };
    }
    if let Some(d) = dirs.get("cpu").filter(|d| d.join("cpu.stat").exists()) {
        if dirs.contains_key("cpuacct") {
            let st = read(&d.join("cpu.stat"))
                .map(|t| flat_keyed(&t))
                .unwrap_or_default();
            s.cpu_stats.throttling_data = Throttling {
                periods: st.get("nr_periods").copied().unwrap_or(0),
                throttled_periods: st.get("nr_throttled").copied().unwrap_or(0),
                throttled_time: st.get("throttled_time").copied().unwrap_or(0),
            };
        }
    }
    // Memory: the v1 controller or v2's files.
    let host_mem = read(Path::new("/proc/meminfo"))
        .and_then(|m| {
            let kb = m.lines().find_map(|l| l.strip_prefix("MemTotal:"))?;
            kb.trim().trim_end_matches("kB").trim().parse::<u64>().ok()
        })
        .map_or(0, |kb| kb * 1024);
    if let Some(d) = dirs.get("memory") {
        s.memory_stats.usage = read_u64(&d.join("memory.usage_in_bytes")).unwrap_or(0);
        s.memory_stats.max_usage = read_u64(&d.join("memory.max_usage_in_bytes"));
        let limit = read_u64(&d.join("memory.limit_in_bytes")).unwrap_or(u64::MAX);
        s.memory_stats.limit = limit.min(host_mem);
        s.memory_stats.stats = read(&d.join("memory.stat"))
            .map(|t| flat_keyed(&t))
            .unwrap_or_default();
    } else if let Some(d) = v2.filter(|d| d.join("memory.current").exists()) {
        s.memory_stats.usage = read_u64(&d.join("memory.current")).unwrap_or(0);
        let limit = read(&d.join("memory.max"))
            .and_then(|m| m.trim().parse::<u64>().ok())
            .unwrap_or(u64::MAX);
        s.memory_stats.limit = limit.min(host_mem);
        s.memory_stats.stats = read(&d.join("memory.stat"))
            .map(|t| flat_keyed(&t))
            .unwrap_or_default();
    }
    // Pids.
    let pids_dir = dirs
        .get("pids")
        .or(v2.filter(|d| d.join("pids.current").exists()));
    if let Some(d) = pids_dir {
        s.pids_stats.current = read_u64(&d.join("pids.current")).unwrap_or(0);
        s.pids_stats.limit = read(&d.join("pids.max")).and_then(|m| m.trim().parse().ok());
    }
    // Block I/O: v1's throttle counters or v2's io.stat.
    if let Some(d) = dirs.get("blkio") {
        for l in read(&d.join("blkio.throttle.io_service_bytes"))
            .unwrap_or_default()
            .lines()
        {
            let f: Vec<&str> = l.split_whitespace().collect();
            let [dev, op, value] = f.as_slice() else {
                continue;
            };
            if let Some((ma, mi)) = dev.split_once(':') {
                if let (Ok(major), Ok(minor), Ok(value)) = (ma.parse(), mi.parse(), value.parse()) {
                    s.blkio_stats.io_service_bytes_recursive.push(BlkioEntry {
                        major,
                        minor,
                        op: op.to_string(),
                        value,
                    });
                }
            }
        }
    } else if let Some(d) = v2.filter(|d| d.join("io.stat").exists()) {
        for l in read(&d.join("io.stat")).unwrap_or_default().lines() {
            let mut f = l.split_whitespace();
            let Some((ma, mi)) = f.next().and_then(|d| d.split_once(':')) else {
                continue;
            };
            let (Ok(major), Ok(minor)) = (ma.parse(), mi.parse()) else {
                continue;
            };
            for kv in f {
                let op = match kv.split_once('=') {
                    Some(("rbytes", v)) => ("read", v),
                    Some(("wbytes", v)) => ("write", v),
                    _ => continue,
                };
                if let Ok(value) = op.1.parse() {
                    s.blkio_stats.io_service_bytes_recursive.push(BlkioEntry {
                        major,
                        minor,
                        op: op.0.to_string(),
                        value,
                    });
                }
            }
        }
    }
    s.networks = networks(pid);
    s
}

impl Engine {
    /// One sample of running container `key`'s resource use, and its id
    /// and name.
    pub fn stats(&mut self, key: &str) -> Result<(String, String, Sample), EngineError> {
        let rec = self.get(key)?;
        if !matches!(rec.state, State::Running | State::Paused) || rec.pid <= 0 {
            // Docker gives a stopped container's stats as zeros.
            return Ok((
                rec.id,
                rec.name,
                Sample {
                    read: crate::clock::now(),
                    ..Sample::default()
                },
            ));
        }
        Ok((rec.id, rec.name.clone(), sample_of(rec.pid)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This test process's own cgroups read as a container's would: CPU
    /// time used and memory charged are there on v1, v2 and hybrid hosts.
    #[test]
    fn a_process_of_its_own_cgroups_has_cpu_and_memory() {
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert_ne!(x, 1);
        let s = sample_of(std::process::id() as i32);
        assert!(s.cpu_stats.system_cpu_usage > 0);
        assert!(s.cpu_stats.cpu_usage.total_usage > 0, "{s:?}");
        assert!(s.cpu_stats.online_cpus >= 1);
        assert!(!s.read.is_empty());
    }

    #[test]
    fn net_dev_and_keyed_files_parse() {
        let m = flat_keyed("cache 4096\nrss 8192\nbad line here\n");
        assert_eq!(m.get("rss"), Some(&8192));
        assert_eq!(m.len(), 2);
    }
}
