//! The spool's record format and how a damaged file is read.
//!
//! A record is `magic | length | batches | crc32 | body` (little-endian u32s). `NAS1` records carry
//! the encoded request as the body; `NAS2` records carry `meta length | meta | request`, where
//! the meta is the producer's own note (the logs source stores the cursor positions a batch
//! completes) and is handed back when the spool is replayed. Metrics write `NAS1` records, so a
//! metrics spool reads the same as before meta existed. The checksum covers the body, so a torn
//! tail or a flipped bit is found; the reader then resynchronises on the next valid magic and
//! checksum, keeping everything intact.

use bytes::Bytes;
use std::fs::File;
use std::os::unix::fs::FileExt;

pub(crate) const MAGIC_V1: [u8; 4] = *b"NAS1";
pub(crate) const MAGIC_V2: [u8; 4] = *b"NAS2";
pub(crate) const HEADER: u64 = 16;
/// No request we write is near this; a larger length field is damage.
pub(crate) const MAX_RECORD: u64 = 64 << 20;

pub(crate) fn crc(data: &[u8]) -> u32 {
    let mut c = flate2::Crc::new();
    c.update(data);
    c.sum()
}

/// The bytes of one record.
pub(crate) fn encode(payload: &[u8], meta: &[u8], batches: u64) -> Vec<u8> {
    let v2 = !meta.is_empty();
    let body_len = payload.len() + if v2 { 4 + meta.len() } else { 0 };
    let mut rec = Vec::with_capacity(HEADER as usize + body_len);
    rec.extend_from_slice(if v2 { &MAGIC_V2 } else { &MAGIC_V1 });
    rec.extend_from_slice(&(body_len as u32).to_le_bytes());
    rec.extend_from_slice(&(batches.clamp(1, u32::MAX as u64) as u32).to_le_bytes());
    rec.extend_from_slice(&[0; 4]);
    if v2 {
        rec.extend_from_slice(&(meta.len() as u32).to_le_bytes());
        rec.extend_from_slice(meta);
    }
    rec.extend_from_slice(payload);
    let sum = crc(&rec[HEADER as usize..]);
    rec[12..16].copy_from_slice(&sum.to_le_bytes());
    rec
}

/// One record read back.
#[derive(Debug, Clone)]
pub(crate) struct Decoded {
    /// Offset just past the record.
    pub(crate) end: u64,
    pub(crate) batches: u64,
    pub(crate) meta: Bytes,
    pub(crate) payload: Bytes,
}

/// Why a record could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Damage {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Invalid(&'static str),
}

/// Why a spooled record could not be read back for delivery (the record is then counted as lost).
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadBack {
    #[error("segment {seg} of {dir} is missing")]
    Missing { seg: u64, dir: std::path::PathBuf },
    #[error("cannot read back segment {seg} offset {off} of {dir}: {damage}")]
    Damaged {
        seg: u64,
        off: u64,
        dir: std::path::PathBuf,
        damage: Damage,
    },
}

/// Checks and splits a record's header and body (`buf` holds the whole record).
fn parse(buf: Bytes, off: u64) -> Result<Decoded, Damage> {
    let h = &buf[..HEADER as usize];
    let v2 = match [h[0], h[1], h[2], h[3]] {
        MAGIC_V1 => false,
        MAGIC_V2 => true,
        _ => return Err(Damage::Invalid("no record magic")),
    };
    let n = u32::from_le_bytes([h[4], h[5], h[6], h[7]]) as u64;
    let batches = u32::from_le_bytes([h[8], h[9], h[10], h[11]]) as u64;
    let sum = u32::from_le_bytes([h[12], h[13], h[14], h[15]]);
    if HEADER + n != buf.len() as u64 {
        return Err(Damage::Invalid("length does not match"));
    }
    let body = buf.slice(HEADER as usize..);
    if crc(&body) != sum {
        return Err(Damage::Invalid("checksum mismatch"));
    }
    if batches == 0 {
        return Err(Damage::Invalid("record of zero batches"));
    }
    let (meta, payload) = if v2 {
        if body.len() < 4 {
            return Err(Damage::Invalid("meta length missing"));
        }
        let m = u32::from_le_bytes([body[0], body[1], body[2], body[3]]) as usize;
        if 4 + m > body.len() {
            return Err(Damage::Invalid("meta longer than the record"));
        }
        (body.slice(4..4 + m), body.slice(4 + m..))
    } else {
        (Bytes::new(), body)
    };
    Ok(Decoded {
        end: off + buf.len() as u64,
        batches,
        meta,
        payload,
    })
}

/// Reads the record that starts at `off` in a file of `len` bytes, checking everything.
pub(crate) fn read_at(f: &File, off: u64, len: u64) -> Result<Decoded, Damage> {
    if off + HEADER > len {
        return Err(Damage::Invalid("torn header"));
    }
    let mut h = [0u8; HEADER as usize];
    f.read_exact_at(&mut h, off)?;
    if h[0..4] != MAGIC_V1 && h[0..4] != MAGIC_V2 {
        return Err(Damage::Invalid("no record magic"));
    }
    let n = u32::from_le_bytes([h[4], h[5], h[6], h[7]]) as u64;
    if n > MAX_RECORD {
        return Err(Damage::Invalid("impossible length"));
    }
    if off + HEADER + n > len {
        return Err(Damage::Invalid("torn record"));
    }
    read_exact(f, off, HEADER + n)
}

/// Reads a record whose place and size are known (from the index) and checks it.
pub(crate) fn read_exact(f: &File, off: u64, size: u64) -> Result<Decoded, Damage> {
    if !(HEADER..=HEADER + MAX_RECORD).contains(&size) {
        return Err(Damage::Invalid("impossible length"));
    }
    let mut buf = vec![0u8; size as usize];
    f.read_exact_at(&mut buf, off)?;
    parse(Bytes::from(buf), off)
}

/// The next offset after `from` where a valid record starts.
fn resync(f: &File, from: u64, len: u64) -> Option<u64> {
    let mut pos = from;
    let mut chunk = vec![0u8; 64 << 10];
    while pos + HEADER <= len {
        let want = ((len - pos) as usize).min(chunk.len());
        let got = f.read_at(&mut chunk[..want], pos).ok()?;
        if got < 4 {
            return None;
        }
        for i in 0..=got - 4 {
            let m = &chunk[i..i + 4];
            if (m == MAGIC_V1 || m == MAGIC_V2) && read_at(f, pos + i as u64, len).is_ok() {
                return Some(pos + i as u64);
            }
        }
        pos += (got - 3) as u64;
    }
    None
}

/// A span of a segment that held no valid record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Skipped {
    pub(crate) offset: u64,
    pub(crate) bytes: u64,
    /// Whether it runs to the end of the file (a torn or damaged tail).
    pub(crate) tail: bool,
}

/// Every valid record of a file from `from`, in order, with the spans skipped between them.
pub(crate) fn scan(
    f: &File,
    from: u64,
    len: u64,
    mut visit: impl FnMut(u64, &Decoded),
) -> Vec<Skipped> {
    let mut skipped = Vec::new();
    let mut off = from;
    while off < len {
        match read_at(f, off, len) {
            Ok(d) => {
                visit(off, &d);
                off = d.end;
            }
            Err(_) => match resync(f, off + 1, len) {
                Some(next) => {
                    skipped.push(Skipped {
                        offset: off,
                        bytes: next - off,
                        tail: false,
                    });
                    off = next;
                }
                None => {
                    skipped.push(Skipped {
                        offset: off,
                        bytes: len - off,
                        tail: true,
                    });
                    break;
                }
            },
        }
    }
    skipped
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn both_versions_round_trip_and_damage_is_found() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s");
        let a = encode(b"metrics payload", b"", 1);
        let b = encode(b"logs payload", b"cursor", 3);
        assert_eq!(&a[..4], b"NAS1");
        assert_eq!(&b[..4], b"NAS2");
        let mut f = File::create(&p).unwrap();
        f.write_all(&a).unwrap();
        f.write_all(&b).unwrap();
        f.write_all(&b[..10]).unwrap();
        drop(f);
        let f = File::open(&p).unwrap();
        let len = f.metadata().unwrap().len();
        let mut got = Vec::new();
        let skipped = scan(&f, 0, len, |off, d| {
            got.push((off, d.batches, d.meta.clone(), d.payload.clone()))
        });
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].3.as_ref(), b"metrics payload");
        assert_eq!((got[1].1, got[1].2.as_ref()), (3, &b"cursor"[..]));
        assert_eq!(got[1].3.as_ref(), b"logs payload");
        assert_eq!(
            skipped,
            vec![Skipped {
                offset: (a.len() + b.len()) as u64,
                bytes: 10,
                tail: true
            }]
        );
        let e = read_exact(&f, a.len() as u64, b.len() as u64).unwrap();
        assert_eq!(e.end, (a.len() + b.len()) as u64);
        // A flipped bit is found by the checksum.
        let mut bad = b.clone();
        bad[HEADER as usize + 6] ^= 1;
        std::fs::write(&p, &bad).unwrap();
        let f = File::open(&p).unwrap();
        assert!(matches!(
            read_exact(&f, 0, bad.len() as u64),
            Err(Damage::Invalid("checksum mismatch"))
        ));
    }
}
