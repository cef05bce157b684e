//! gzip (RFC 1952) with one deflate state for the life of the transport.
//!
//! `flate2::write::GzEncoder::new` allocates and initialises a fresh deflate state (hundreds of
//! KiB of window and hash tables) for every request; at one small request per sample that was
//! the largest single cost of a cycle (issue 15's profile: gzip 28.6 % of the agent's
//! instructions, mostly state set-up). Here the raw deflate state is created once and `reset`
//! between requests, the gzip header and trailer (CRC-32, length) are written by hand, and the
//! output goes into a buffer whose allocation comes back once the previous request's body has
//! been dropped (`BytesMut` reclaims it).

use bytes::{Bytes, BytesMut};
use flate2::{Compress, Compression, Crc, FlushCompress, Status};

/// The gzip member header: magic, deflate, no flags, no mtime, no level flag (XFL 0: neither
/// fastest nor best), unknown OS.
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];

/// zlib-rs level 2 (its "fast" deflate). On the 1000-container request, each container with its
/// own start times as Docker's are (one 926 KB part, docs/export.md), level 2 gives 55.6 KB in
/// 1.50 ms and level 7 52.1 KB in 3.93 ms; on 100 real containers' request 16.1 KB in 0.31 ms
/// against 15.1 KB in 0.84 ms. The slower search wins 6–7 % of the bytes for 2.6× the CPU, a
/// fifth of a 1000-container cycle; level 1 ("quick", a one-entry hash) loses 26–37 % of them.
const LEVEL: u32 = 2;

/// The state is made at the first request, not with the transport: it is 380 KB (heaptrack; the
/// window and memory level set its size, not the compression level), and a lane that never sends
/// (the logs lane of a node without game servers) should not hold one.
#[derive(Default)]
pub(crate) struct Gzip {
    deflate: Option<Compress>,
    out: BytesMut,
}

impl Gzip {
    /// `input` as one gzip member.
    pub(crate) fn compress(&mut self, input: &[u8]) -> Result<Bytes, flate2::CompressError> {
        // Raw deflate (no zlib header): gzip wraps it itself.
        let deflate = self
            .deflate
            .get_or_insert_with(|| Compress::new(Compression::new(LEVEL), false));
        deflate.reset();
        // zlib's compressBound: one pass is enough in all but odd cases.
        let n = input.len();
        let bound = n + (n >> 12) + (n >> 14) + (n >> 25) + 13;
        self.out.clear();
        self.out.reserve(HEADER.len() + bound + 8);
        self.out.extend_from_slice(&HEADER);
        let mut consumed = 0usize;
        let mut room = bound;
        loop {
            self.out.reserve(room);
            let (in0, out0) = (deflate.total_in(), deflate.total_out());
            // Deflate writes into the spare capacity as it is: no zeroing of a request-sized
            // buffer first (that memset was 4 % of a 1000-container cycle).
            let status = deflate.compress_uninit(
                &input[consumed..],
                self.out.spare_capacity_mut(),
                FlushCompress::Finish,
            );
            consumed += (deflate.total_in() - in0) as usize;
            let written = (deflate.total_out() - out0) as usize;
            // SAFETY: deflate initialised the first `written` bytes of the spare capacity.
            unsafe { self.out.set_len(self.out.len() + written) };
            match status? {
                Status::StreamEnd => break,
                Status::Ok | Status::BufError => room = bound / 4 + 64,
            }
        }
        let mut crc = Crc::new();
        crc.update(input);
        self.out.extend_from_slice(&crc.sum().to_le_bytes());
        self.out
            .extend_from_slice(&(input.len() as u32).to_le_bytes());
        Ok(self.out.split().freeze())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn gunzip(b: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(b)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn round_trips_and_reuses_its_state() {
        let mut g = Gzip::default();
        let text: Vec<u8> = (0..200_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let random: Vec<u8> = (0..70_000).map(|_| fastrand::u8(..)).collect();
        for input in [&b""[..], b"a", &text, &random, &text[..1000]] {
            let z = g.compress(input).unwrap();
            assert_eq!(gunzip(&z), input);
            // Python's and Go's readers check the trailer too; so does GzDecoder.
            assert_eq!(&z[..3], &[0x1f, 0x8b, 8]);
        }
    }

    #[test]
    fn the_output_allocation_comes_back_after_the_body_is_dropped() {
        let mut g = Gzip::default();
        let input = vec![7u8; 50_000];
        let first = g.compress(&input).unwrap();
        let ptr = first.as_ptr();
        drop(first);
        let second = g.compress(&input).unwrap();
        assert_eq!(second.as_ptr(), ptr, "the buffer was reallocated");
    }
}
