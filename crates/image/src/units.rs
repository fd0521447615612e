//! Docker's sizes with units (`64m`, `1.5g`, `512k`, `1024`) and random
//! hex ids, written once for every crate above the store.

/// Docker's `RAMInBytes`: a number (fractions allowed) with an optional
/// binary unit `b`, `k`, `m`, `g`, `t` (and an optional trailing `b`).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let bad = || {
        format!("invalid size: {s:?}: use a number with an optional unit (b, k, m, g), e.g. 64m")
    };
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').map(str::to_string).unwrap_or(t);
    let (num, mult): (&str, u64) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        Some(_) => (&t[..], 1),
        None => return Err(bad()),
    };
    let n: f64 = num.parse().map_err(|_| bad())?;
    if !n.is_finite() || n < 0.0 || n * mult as f64 >= u64::MAX as f64 {
        return Err(bad());
    }
    Ok((n * mult as f64) as u64)
}

/// `bytes` random bytes from the kernel, as hex.
pub fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    let mut filled = 0;
    while filled < b.len() {
        match rustix::rand::getrandom(&mut b[filled..], rustix::rand::GetRandomFlags::empty()) {
            Ok(n) => filled += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => panic!("getrandom: {e}"),
        }
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_as_docker_reads_them() {
        assert_eq!(parse_size("123"), Ok(123));
        assert_eq!(parse_size("64k"), Ok(64 << 10));
        assert_eq!(parse_size("16M"), Ok(16 << 20));
        assert_eq!(parse_size("2g"), Ok(2 << 30));
        assert_eq!(parse_size("1gb"), Ok(1 << 30));
        assert_eq!(parse_size("1.5k"), Ok(1536));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("-1m").is_err());
        assert!(parse_size("").is_err());
        assert_eq!(random_hex(16).len(), 32);
        assert_ne!(random_hex(8), random_hex(8));
    }
}
