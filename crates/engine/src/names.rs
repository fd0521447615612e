//! Docker-style random names: `adjective_surname`.

const LEFT: &[&str] = &[
    "admiring",
    "agile",
    "amazing",
    "awesome",
    "blissful",
    "bold",
    "brave",
    "busy",
    "charming",
    "clever",
    "cool",
    "dazzling",
    "determined",
    "eager",
    "ecstatic",
    "elegant",
    "epic",
    "fervent",
    "festive",
    "focused",
    "friendly",
    "gallant",
    "gifted",
    "happy",
    "hopeful",
    "inspiring",
    "jolly",
    "keen",
    "kind",
    "laughing",
    "lucid",
    "magical",
    "modest",
    "nice",
    "nifty",
    "optimistic",
    "peaceful",
    "practical",
    "quirky",
    "relaxed",
    "serene",
    "sharp",
    "stoic",
    "sweet",
    "tender",
    "trusting",
    "upbeat",
    "vibrant",
    "vigilant",
    "wizardly",
    "youthful",
    "zealous",
];

const RIGHT: &[&str] = &[
    "albattani",
    "babbage",
    "bardeen",
    "bohr",
    "cerf",
    "curie",
    "darwin",
    "dijkstra",
    "einstein",
    "euler",
    "fermat",
    "feynman",
    "galileo",
    "gauss",
    "goldberg",
    "hamilton",
    "hopper",
    "hypatia",
    "johnson",
    "kepler",
    "knuth",
    "lamarr",
    "lovelace",
    "mccarthy",
    "meitner",
    "napier",
    "newton",
    "noether",
    "pasteur",
    "perlman",
    "pike",
    "poincare",
    "ritchie",
    "shannon",
    "sinoussi",
    "thompson",
    "torvalds",
    "turing",
    "wilson",
    "wing",
    "wozniak",
];

/// A random name; `taken` says whether one is in use (then a digit is
/// appended, as Docker does after a collision).
pub fn random(taken: impl Fn(&str) -> bool) -> String {
    let id = crate::new_id();
    let n = u64::from_str_radix(&id[..16], 16).unwrap_or(0);
    let base = format!(
        "{}_{}",
        LEFT[(n % LEFT.len() as u64) as usize],
        RIGHT[((n >> 20) % RIGHT.len() as u64) as usize]
    );
    if !taken(&base) {
        return base;
    }
    for i in 0..1000 {
        let c = format!("{base}{}", (n >> 40) % 10 + i);
        if !taken(&c) {
            return c;
        }
    }
    format!("{base}_{}", &id[..12])
}

/// Docker's rule for names: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub fn valid(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() >= 2
        && b[0].is_ascii_alphanumeric()
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

#[cfg(test)]
mod tests {
    #[test]
    fn names() {
        let n = super::random(|_| false);
        assert!(n.contains('_') && super::valid(&n), "{n}");
        let m = super::random(|c| !c.chars().last().unwrap().is_ascii_digit());
        assert!(m.chars().last().unwrap().is_ascii_digit(), "{m}");
        assert!(super::valid("web-1.a_b"));
        assert!(!super::valid("-x"));
        assert!(!super::valid("a"));
        assert!(!super::valid("a/b"));
    }
}
