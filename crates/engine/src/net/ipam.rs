//! Address management: networks' subnets and the addresses their
//! endpoints hold, in the store's database, so that concurrent starts in
//! any process never hand out one address twice (a write transaction and
//! `UNIQUE (network, ip)`), and a stop gives its address back.

use std::net::{IpAddr, Ipv4Addr};

use ipnet::{IpNet, Ipv4Net};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use crate::EngineError;

/// One network's addressing, as kept.
#[derive(Debug, Clone, PartialEq)]
pub struct Pool {
    pub network: String,
    pub subnet: IpNet,
    pub gateway: IpAddr,
    /// Where addresses are handed out from (`--ip-range`), inside `subnet`.
    pub range: Option<IpNet>,
}

impl Pool {
    /// Checks a subnet, gateway and range as `network create` takes them.
    pub fn new(
        network: &str,
        subnet: IpNet,
        gateway: Option<IpAddr>,
        range: Option<IpNet>,
    ) -> Result<Pool, EngineError> {
        let subnet = subnet.trunc();
        let IpNet::V4(v4) = subnet else {
            return Err(EngineError::Invalid(format!(
                "subnet {subnet}: berth hands out IPv4 addresses only for now"
            )));
        };
        if v4.prefix_len() > 30 {
            return Err(EngineError::Invalid(format!(
                "subnet {subnet} is too small: it needs room for a gateway and containers (/30 at most)"
            )));
        }
        let gateway = match gateway {
            Some(g) if !subnet.contains(&g) => {
                return Err(EngineError::Invalid(format!(
                    "gateway {g} is not in subnet {subnet}"
                )))
            }
            Some(g) => g,
            None => IpAddr::V4(Ipv4Addr::from(u32::from(v4.network()) + 1)),
        };
        if let Some(r) = range {
            if !subnet.contains(&r) {
                return Err(EngineError::Invalid(format!(
                    "ip range {r} is not in subnet {subnet}"
                )));
            }
        }
        Ok(Pool {
            network: network.to_string(),
            subnet,
            gateway,
            range,
        })
    }

    /// Whether `ip` may be given to a container: in the subnet, neither
    /// its network nor broadcast address nor the gateway.
    fn usable(&self, ip: Ipv4Addr) -> bool {
        let IpNet::V4(n) = self.subnet else {
            return false;
        };
        n.contains(&ip)
            && ip != n.network()
            && ip != n.broadcast()
            && IpAddr::V4(ip) != self.gateway
    }

    /// Hands container `container` an address: `want` if it is free, else
    /// the lowest free one of the range (or subnet).
    pub fn allocate(
        &self,
        conn: &Connection,
        container: &str,
        want: Option<IpAddr>,
    ) -> Result<IpAddr, EngineError> {
        let tx = rusqlite::Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
        let held: Option<String> = tx
            .query_row(
                "SELECT ip FROM endpoints WHERE network = ?1 AND container = ?2",
                params![self.network, container],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(ip) = held.and_then(|h| h.parse::<IpAddr>().ok()) {
            return Ok(ip);
        }
        let mut used = std::collections::HashSet::new();
        {
            let mut st = tx.prepare("SELECT ip FROM endpoints WHERE network = ?1")?;
            let rows = st.query_map(params![self.network], |r| r.get::<_, String>(0))?;
            for ip in rows {
                if let Ok(ip) = ip?.parse::<IpAddr>() {
                    used.insert(ip);
                }
            }
        }
        let ip = match want {
            Some(IpAddr::V4(w)) => {
                if !self.usable(w) {
                    return Err(EngineError::Invalid(format!(
                        "address {w} is not usable in network {} ({}, gateway {})",
                        self.network, self.subnet, self.gateway
                    )));
                }
                if used.contains(&IpAddr::V4(w)) {
                    return Err(EngineError::Conflict(format!(
                        "address {w} is already in use on network {}",
                        self.network
                    )));
                }
                IpAddr::V4(w)
            }
            Some(w) => {
                return Err(EngineError::Invalid(format!(
                    "address {w}: berth hands out IPv4 addresses only for now"
                )))
            }
            None => {
                let from = match (self.range, self.subnet) {
                    (Some(IpNet::V4(r)), _) | (None, IpNet::V4(r)) => r,
                    _ => unreachable!("IPv4 pools only"),
                };
                free(&from, |a| self.usable(a) && !used.contains(&IpAddr::V4(a)))
                    .map(IpAddr::V4)
                    .ok_or_else(|| {
                        EngineError::Conflict(format!(
                            "no address left on network {} ({}): every one is in use",
                            self.network,
                            self.range.unwrap_or(self.subnet)
                        ))
                    })?
            }
        };
        tx.execute(
            "INSERT INTO endpoints (network, container, ip) VALUES (?1, ?2, ?3)",
            params![self.network, container, ip.to_string()],
        )?;
        tx.commit()?;
        Ok(ip)
    }
}

/// The lowest address of `net` that `ok` accepts.
fn free(net: &Ipv4Net, ok: impl Fn(Ipv4Addr) -> bool) -> Option<Ipv4Addr> {
    let (lo, hi) = (u32::from(net.network()), u32::from(net.broadcast()));
    (lo..=hi).map(Ipv4Addr::from).find(|a| ok(*a))
}

/// Gives back what container `container` holds on network `network`.
pub fn release(conn: &Connection, network: &str, container: &str) -> Result<(), EngineError> {
    conn.execute(
        "DELETE FROM endpoints WHERE network = ?1 AND container = ?2",
        params![network, container],
    )?;
    Ok(())
}

/// The first of `candidates` that overlaps none of `taken` (the host's
/// routes and the subnets of other networks): Docker's 172.17.0.0/16
/// first, then the next /16s.
pub fn pick_subnet(candidates: &[IpNet], taken: &[IpNet]) -> Option<IpNet> {
    candidates
        .iter()
        .find(|c| !taken.iter().any(|t| overlaps(c, t)))
        .copied()
}

/// Whether two networks share an address.
pub fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// Docker's default address pools, in order: 172.17.0.0/16 to
/// 172.31.0.0/16, then 192.168.0.0/20 steps.
pub fn default_pools() -> Vec<IpNet> {
    let mut out: Vec<IpNet> = (17..=31)
        .map(|b| format!("172.{b}.0.0/16").parse().expect("a valid subnet"))
        .collect();
    out.extend((0..16).map(|i| {
        format!("192.168.{}.0/20", i * 16)
            .parse::<IpNet>()
            .expect("a valid subnet")
    }));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> (tempfile::TempDir, crate::db::Db) {
        let dir = tempfile::tempdir().unwrap();
        berth_image::store::Store::open(dir.path()).unwrap();
        let db = crate::db::Db::open(dir.path()).unwrap();
        (dir, db)
    }

    #[test]
    fn addresses_are_handed_out_lowest_first_and_never_twice() {
        let (dir, db) = db();
        let pool = Pool::new("n1", "10.5.0.0/29".parse().unwrap(), None, None).unwrap();
        assert_eq!(pool.gateway.to_string(), "10.5.0.1");
        let a = pool.allocate(db.conn(), "c1", None).unwrap();
        assert_eq!(a.to_string(), "10.5.0.2");
        // The same container again: the same address.
        assert_eq!(pool.allocate(db.conn(), "c1", None).unwrap(), a);
        // Twenty threads, each its own connection, at once: .3 to .6 (4
        // addresses) go, distinct; the rest are told the network is full.
        let path = dir.path().to_path_buf();
        let got: Vec<Result<IpAddr, String>> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..20)
                .map(|i| {
                    let path = path.clone();
                    let pool = pool.clone();
                    s.spawn(move || {
                        let db = crate::db::Db::open(&path).unwrap();
                        pool.allocate(db.conn(), &format!("t{i}"), None)
                            .map_err(|e| e.to_string())
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut ok: Vec<String> = got.iter().flatten().map(|i| i.to_string()).collect();
        ok.sort();
        assert_eq!(ok, ["10.5.0.3", "10.5.0.4", "10.5.0.5", "10.5.0.6"]);
        let full: Vec<&String> = got.iter().filter_map(|r| r.as_ref().err()).collect();
        assert_eq!(full.len(), 16);
        assert!(full[0].contains("no address left"), "{}", full[0]);
        // A stop gives the address back; the next start takes it.
        release(db.conn(), "n1", "c1").unwrap();
        assert_eq!(pool.allocate(db.conn(), "late", None).unwrap(), a);
        // An address asked for: free, taken, or not usable.
        let pool = Pool::new("n2", "10.6.0.0/24".parse().unwrap(), None, None).unwrap();
        let want: IpAddr = "10.6.0.77".parse().unwrap();
        assert_eq!(pool.allocate(db.conn(), "x", Some(want)).unwrap(), want);
        assert!(matches!(
            pool.allocate(db.conn(), "y", Some(want)),
            Err(EngineError::Conflict(_))
        ));
        for bad in ["10.6.0.1", "10.6.0.0", "10.6.0.255", "10.7.0.5"] {
            assert!(matches!(
                pool.allocate(db.conn(), "z", Some(bad.parse().unwrap())),
                Err(EngineError::Invalid(_))
            ));
        }
    }

    #[test]
    fn a_range_and_a_gateway_are_checked_and_used() {
        let (_dir, db) = db();
        let pool = Pool::new(
            "r",
            "10.8.0.0/16".parse().unwrap(),
            Some("10.8.0.254".parse().unwrap()),
            Some("10.8.5.0/24".parse().unwrap()),
        )
        .unwrap();
        // The range's first address is a host of the subnet: handed out,
        // as Docker's IPAM does.
        assert_eq!(
            pool.allocate(db.conn(), "a", None).unwrap().to_string(),
            "10.8.5.0"
        );
        assert!(Pool::new(
            "x",
            "10.8.0.0/16".parse().unwrap(),
            Some("10.9.0.1".parse().unwrap()),
            None
        )
        .is_err());
        assert!(Pool::new(
            "x",
            "10.8.0.0/16".parse().unwrap(),
            None,
            Some("10.9.0.0/24".parse().unwrap())
        )
        .is_err());
        assert!(Pool::new("x", "10.8.0.0/31".parse().unwrap(), None, None).is_err());
        // A subnet written with host bits is its network.
        let p = Pool::new("x", "10.8.3.7/24".parse().unwrap(), None, None).unwrap();
        assert_eq!(p.subnet.to_string(), "10.8.3.0/24");
    }

    #[test]
    fn the_default_subnet_is_the_first_free_of_dockers_pools() {
        let pools = default_pools();
        assert_eq!(pools[0].to_string(), "172.17.0.0/16");
        assert_eq!(pick_subnet(&pools, &[]), Some(pools[0]));
        // A host route inside 172.17/16 (a VPN, say) moves it on.
        let taken = [
            "172.17.5.0/24".parse().unwrap(),
            "172.16.0.0/12".parse().unwrap(),
        ];
        assert_eq!(
            pick_subnet(&pools, &taken[..1]).unwrap().to_string(),
            "172.18.0.0/16"
        );
        assert_eq!(
            pick_subnet(&pools, &taken).unwrap().to_string(),
            "192.168.0.0/20"
        );
    }
}
