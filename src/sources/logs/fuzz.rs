//! Fuzz entry points for the log stream decoders, shared by the cargo-fuzz targets (`fuzz/`,
//! nightly) and a stable test replaying the committed seeds (real captures from dockerd) plus
//! mutations. Each checks more than "no panic": every line is within its bound, the memory charged
//! comes back to zero, and the lines do not depend on how the bytes were split into reads.

use super::budget::Memory;
use super::decode::{Decoder, Line};

const MAX_LINE: usize = 64 * 1024;

fn run(tty: bool, data: &[u8], splits: &[usize]) -> Vec<(super::Stream, u64, Vec<u8>, u64)> {
    let mem = Memory::new(4 << 20);
    let mut d = Decoder::new(tty, MAX_LINE, mem.clone());
    let mut out: Vec<Line> = Vec::new();
    let mut at = 0;
    let mut ok = true;
    for &s in splits.iter().chain(std::iter::once(&data.len())) {
        let end = s.clamp(at, data.len());
        if d.feed(&data[at..end], &mut out).is_err() {
            ok = false;
            break;
        }
        at = end;
    }
    if ok {
        d.finish(&mut out);
    }
    for l in &out {
        assert!(l.body.len() <= MAX_LINE, "line of {} bytes", l.body.len());
    }
    let lines = out
        .into_iter()
        .map(|l| (l.stream, l.ts, l.body, l.cut))
        .collect();
    drop(d);
    assert_eq!(mem.used(), 0, "memory charge leaked");
    lines
}

fn splits(data: &[u8]) -> Vec<usize> {
    // Deterministic split points derived from the input itself.
    let mut v: Vec<usize> = data
        .iter()
        .enumerate()
        .filter(|(i, b)| (**b as usize + i).is_multiple_of(7))
        .map(|(i, _)| i)
        .collect();
    v.dedup();
    v
}

fn check(tty: bool, data: &[u8]) {
    let whole = run(tty, data, &[]);
    // Byte by byte for short inputs (every split point at once); long ones get fewer splits.
    if data.len() <= 4096 {
        let bytewise = run(tty, data, &(1..data.len()).collect::<Vec<_>>());
        assert_eq!(whole, bytewise, "lines depend on how the bytes were read");
    }
    let split = run(tty, data, &splits(data));
    assert_eq!(whole, split, "lines depend on how the bytes were read");
}

/// The multiplexed (no TTY) decoder.
pub fn mux(data: &[u8]) {
    check(false, data);
}

/// The raw (TTY) decoder.
pub fn raw(data: &[u8]) {
    check(true, data);
}

pub type Target = (&'static str, fn(&[u8]));

pub const TARGETS: [Target; 2] = [("logs_mux", mux), ("logs_raw", raw)];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::fuzz::corpus;

    /// Bytes that matter to these decoders: stream header bytes, newlines, carriage returns,
    /// spaces, UTF-8 lead and continuation bytes, timestamp punctuation.
    const INTERESTING: [u8; 12] = [0, 1, 2, 3, b'\n', b'\r', b' ', 0xC3, 0xA9, 0xFF, b'Z', b'T'];
    const STAMP: &[u8] = b"2026-11-30T09:23:31.689741219Z ";

    fn mutate(rng: &mut fastrand::Rng, seed: &[u8]) -> Vec<u8> {
        let mut v = seed.to_vec();
        for _ in 0..rng.usize(1..6) {
            let len = v.len();
            match rng.u8(0..8) {
                0 if len > 0 => {
                    let i = rng.usize(..len);
                    v[i] ^= 1 << rng.u8(0..8);
                }
                1 => {
                    let i = rng.usize(..=len);
                    v.insert(i, INTERESTING[rng.usize(..INTERESTING.len())]);
                }
                2 if len > 0 => {
                    v.remove(rng.usize(..len));
                }
                3 if len > 0 => v.truncate(rng.usize(..len)),
                4 => {
                    // a Docker timestamp somewhere (a boundary, or text that looks like one)
                    let i = rng.usize(..=len);
                    v.splice(i..i, STAMP.iter().copied());
                }
                5 if len > 1 => {
                    let (a, b) = (rng.usize(..len), rng.usize(..len));
                    let chunk = v[a.min(b)..a.max(b)].to_vec();
                    let at = rng.usize(..=len);
                    v.splice(at..at, chunk);
                }
                6 if len > 8 => {
                    // a frame length changed
                    let i = rng.usize(..len - 4);
                    v[i..i + 4].copy_from_slice(&rng.u32(..70_000).to_be_bytes());
                }
                _ => v.extend((0..rng.usize(0..32)).map(|_| rng.u8(..))),
            }
        }
        v
    }

    /// The seeds (real dockerd captures) and 600 mutations of them per target, plus random
    /// bytes: every check in [`check`] holds. Fixed seed: reproducible.
    #[test]
    fn corpus_and_mutations() {
        for (name, f) in TARGETS {
            let seeds = corpus(name);
            assert!(seeds.len() >= 3, "seeds for {name}");
            for s in &seeds {
                f(s);
            }
            let mut rng = fastrand::Rng::with_seed(0x106_5eed + name.len() as u64);
            for i in 0..600 {
                let input = if i % 10 == 9 {
                    (0..rng.usize(0..512)).map(|_| rng.u8(..)).collect()
                } else {
                    let pick = rng.usize(..seeds.len());
                    // Long seeds: mutate a window so the byte-by-byte run stays quick.
                    let s = &seeds[pick];
                    let start = rng.usize(..s.len().max(1));
                    let end = (start + rng.usize(64..20_000)).min(s.len());
                    mutate(&mut rng, &s[start.min(end)..end])
                };
                f(&input);
            }
        }
    }
}
