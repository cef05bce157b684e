//! The stable half of fuzzing, shared by every parser's corpus replay (`cargo test`, no nightly):
//! the committed seed corpus of a cargo-fuzz target and a small mutator in the spirit of
//! libFuzzer's (flip, insert, delete, truncate, splice, overwrite with an interesting byte,
//! append noise), seeded so every run replays the same inputs.

use std::path::PathBuf;

/// One mutation of `seed`; `interesting` are the bytes worth planting (format delimiters, tags).
pub(crate) fn mutate(rng: &mut fastrand::Rng, seed: &[u8], interesting: &[u8]) -> Vec<u8> {
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
            4 if len > 0 && !interesting.is_empty() => {
                let i = rng.usize(..len);
                v[i] = interesting[rng.usize(..interesting.len())];
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

/// Where a target's committed seed corpus is.
pub(crate) fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

/// The seeds of a target, sorted (a stable order for the seeded mutations).
pub(crate) fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = corpus_dir(target);
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    seeds.sort();
    seeds
}

/// The seeds, then `n` inputs (nine in ten mutated seeds, one in ten random bytes), each given
/// to `f`. Returns how many seeds there were.
pub(crate) fn replay(
    target: &str,
    rng_seed: u64,
    n: usize,
    interesting: &[u8],
    f: fn(&[u8]),
) -> usize {
    let seeds = corpus(target);
    assert!(!seeds.is_empty(), "no seeds for {target}");
    for s in &seeds {
        f(s);
    }
    let mut rng = fastrand::Rng::with_seed(rng_seed);
    for i in 0..n {
        let input = if i % 10 == 9 {
            (0..rng.usize(0..256)).map(|_| rng.u8(..)).collect()
        } else {
            let pick = rng.usize(..seeds.len());
            mutate(&mut rng, &seeds[pick], interesting)
        };
        f(&input);
    }
    seeds.len()
}
