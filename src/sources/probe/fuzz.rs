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
    use crate::sys::fuzz::{corpus, replay};

    /// The seed corpus plus 4000 mutations per target (fixed seed: reproducible), and random
    /// bytes, through every parser. Runs on stable in every `cargo test`.
    #[test]
    fn corpus_and_mutations_never_panic() {
        const INTERESTING: &[u8] = &[0x00, 0x7f, 0x80, 0xff, b';', b'\\', 0x0a];
        for (name, f) in TARGETS {
            replay(name, 0x5eed_0000 + name.len() as u64, 4000, INTERESTING, f);
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
