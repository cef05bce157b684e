//! Fuzz entry points, one per parser: shared by the cargo-fuzz targets (`fuzz/`, nightly) and
//! by a stable test that replays the committed seed corpus plus mutated inputs, so every CI run
//! exercises them even without nightly. Each runs the parser on arbitrary bytes and asserts the
//! output is bounded; a panic anywhere is a finding.

use super::{MAX_COUNT, MAX_TEXT, Status};

fn check(s: &Status) {
    for c in [s.online, s.max].into_iter().flatten() {
        assert!(c as i64 <= MAX_COUNT, "count {c} over the clamp");
    }
    for t in [&s.motd, &s.version].into_iter().flatten() {
        assert!(t.chars().count() <= MAX_TEXT, "text of {} chars", t.len());
    }
}

pub fn java(data: &[u8]) {
    let _ = super::java::read_varint(data, 5);
    if let Ok(Some((len, n))) = super::java::frame_header(data, 1024) {
        assert!(len <= 1024 && (1..=3).contains(&n));
    }
    if let Ok(s) = super::java::parse(data) {
        check(&s);
    }
    // The body alone (packet id + JSON string), and the raw JSON text.
    if let Ok(s) = super::java::parse_status_body(data, 64 * 1024) {
        check(&s);
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(s) = super::java::parse_json(text)
    {
        check(&s);
    }
    let _ = super::java::parse_pong_body(data);
}

pub fn legacy(data: &[u8]) {
    if let Ok(s) = super::legacy::parse(data) {
        check(&s);
    }
}

pub fn query(data: &[u8]) {
    let _ = super::query::parse_handshake(data);
    if let Ok(f) = super::query::parse_full(data) {
        check(&f.status);
        assert!(f.players_listed <= super::query::MAX_NAMES);
    }
    if let Ok((_, s)) = super::query::parse_basic(data) {
        check(&s);
    }
}

pub fn bedrock(data: &[u8]) {
    if let Ok(p) = super::bedrock::parse(data) {
        check(&p.status);
        assert!(p.status.online.is_some() && p.status.max.is_some());
    }
}

pub fn a2s(data: &[u8]) {
    if let Ok(super::a2s::Reply::Info(i)) = super::a2s::parse(data) {
        check(&i.status());
    }
}

/// A fuzz target: its name and entry point.
pub type Target = (&'static str, fn(&[u8]));

/// Every target by name (for the stable replay).
pub const TARGETS: [Target; 5] = [
    ("java", java),
    ("legacy", legacy),
    ("query", query),
    ("bedrock", bedrock),
    ("a2s", a2s),
];

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// One mutation of `seed`: flip, insert, delete, truncate, splice or overwrite with an
    /// interesting value.
    fn mutate(rng: &mut fastrand::Rng, seed: &[u8]) -> Vec<u8> {
        let mut v = seed.to_vec();
        for _ in 0..rng.usize(1..6) {
            let len = v.len();
            match rng.u8(0..7) {
                0 if len > 0 => {
                    let i = rng.usize(..len);
                    v[i] ^= 1 << rng.u8(0..8);
                }
                1 => {
                    let i = rng.usize(..=len);
                    v.insert(i, rng.u8(..));
                }
                2 if len > 0 => {
                    v.remove(rng.usize(..len));
                }
                3 if len > 0 => v.truncate(rng.usize(..len)),
                4 if len > 0 => {
                    let i = rng.usize(..len);
                    v[i] = [0x00, 0x7f, 0x80, 0xff, b';', b'\\', 0x0a][rng.usize(..7)];
                }
                5 if len > 1 => {
                    let (a, b) = (rng.usize(..len), rng.usize(..len));
                    let chunk = v[a.min(b)..a.max(b)].to_vec();
                    let at = rng.usize(..=len);
                    v.splice(at..at, chunk);
                }
                _ => v.extend((0..rng.usize(0..16)).map(|_| rng.u8(..))),
            }
        }
        v
    }

    fn corpus(target: &str) -> Vec<Vec<u8>> {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/corpus")
            .join(target);
        let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| std::fs::read(e.unwrap().path()).unwrap())
            .collect();
        seeds.sort();
        seeds
    }

    /// The seed corpus plus 4000 mutations per target (fixed seed: reproducible), and random
    /// bytes, through every parser. Runs on stable in every `cargo test`.
    #[test]
    fn corpus_and_mutations_never_panic() {
        for (name, f) in TARGETS {
            let seeds = corpus(name);
            assert!(!seeds.is_empty(), "no seeds for {name}");
            let mut ok_seeds = 0;
            for s in &seeds {
                f(s);
                ok_seeds += 1;
            }
            let mut rng = fastrand::Rng::with_seed(0x5eed_0000 + name.len() as u64);
            for i in 0..4000 {
                let input = if i % 10 == 9 {
                    (0..rng.usize(0..256)).map(|_| rng.u8(..)).collect()
                } else {
                    let pick = rng.usize(..seeds.len());
                    mutate(&mut rng, &seeds[pick])
                };
                f(&input);
            }
            assert_eq!(ok_seeds, seeds.len());
        }
    }

    /// The seeds are real replies: each parses (so mutations start from valid input).
    #[test]
    fn seeds_are_valid_replies() {
        for s in corpus("java") {
            assert!(super::super::java::parse(&s).is_ok());
        }
        for s in corpus("legacy") {
            assert!(super::super::legacy::parse(&s).is_ok());
        }
        for s in corpus("query") {
            assert!(
                super::super::query::parse_full(&s).is_ok()
                    || super::super::query::parse_basic(&s).is_ok()
                    || super::super::query::parse_handshake(&s).is_ok()
            );
        }
        for s in corpus("bedrock") {
            assert!(super::super::bedrock::parse(&s).is_ok());
        }
        for s in corpus("a2s") {
            assert!(super::super::a2s::parse(&s).is_ok());
        }
    }
}
