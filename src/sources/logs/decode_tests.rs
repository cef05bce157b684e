use super::*;
use std::path::PathBuf;

fn corpus(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn mem() -> Arc<Memory> {
    Memory::new(64 << 20)
}

/// (stream, ts, body, cut) of each line, feeding `data` in pieces of `step` bytes.
fn decode(
    tty: bool,
    data: &[u8],
    step: usize,
    max_line: usize,
    finish: bool,
) -> Vec<(Stream, u64, Vec<u8>, u64)> {
    let mut d = Decoder::new(tty, max_line, mem());
    let mut out = Vec::new();
    for c in data.chunks(step.max(1)) {
        d.feed(c, &mut out).unwrap();
    }
    if finish {
        assert!(d.finish(&mut out));
    }
    out.into_iter()
        .map(|l| (l.stream, l.ts, l.body, l.cut))
        .collect()
}

fn long_line() -> Vec<u8> {
    let mut v = vec![b'a'; 16383];
    v.extend_from_slice("é".as_bytes());
    v.extend(std::iter::repeat_n(b'b', 23615));
    v
}

fn bodies(lines: &[(Stream, u64, Vec<u8>, u64)]) -> Vec<(Stream, Vec<u8>)> {
    lines.iter().map(|l| (l.0, l.2.clone())).collect()
}

/// The `local` driver, no TTY: 3 pieces for the 40,000-byte line, the `é` split between the
/// first two, the last piece without `\n`; raw bytes kept; a last line without newline.
#[test]
fn local_driver_multiplexed() {
    let data = corpus("logs_mux/local-40000-invalid-nonl");
    let want = vec![
        (Stream::Stdout, b"first".to_vec()),
        (Stream::Stderr, b"err1".to_vec()),
        (Stream::Stdout, long_line()),
        (Stream::Stdout, b"bad\xff\xfeutf8".to_vec()),
        (Stream::Stdout, b"crlf".to_vec()),
        (Stream::Stdout, b"nonl".to_vec()),
    ];
    for step in [1, 7, 8, 31, 4096, 16_384, 1 << 20] {
        let got = decode(false, &data, step, 1 << 20, false);
        assert_eq!(bodies(&got), want, "step {step}");
        assert_eq!(got[0].1, 1_796_030_611_689_741_219);
        assert!(got.iter().all(|l| l.3 == 0));
    }
}

/// json-file, no TTY: the last piece keeps its `\n`; invalid bytes were already replaced by the
/// driver (U+FFFD), the split `é` too.
#[test]
fn json_file_driver_multiplexed() {
    let data = corpus("logs_mux/json-file-40000-invalid-nonl");
    let got = decode(false, &data, 1000, 1 << 20, false);
    assert_eq!(got.len(), 6);
    assert_eq!(got[2].2.len(), 40_000 - 2 + 6);
    assert_eq!(got[5].2, b"nonl");
}

/// TTY: raw stream, `\r\n` endings (`\r\r\n` for a program's own `\r\n`), all on stdout; the
/// last piece of the long line (`local`) is followed directly by the next timestamp.
#[test]
fn tty_raw_both_drivers() {
    let want = vec![
        b"first".to_vec(),
        b"err1".to_vec(),
        long_line(),
        b"bad\xff\xfeutf8".to_vec(),
        b"crlf".to_vec(),
        b"nonl".to_vec(),
    ];
    let data = corpus("logs_raw/local-tty-40000-invalid-nonl");
    for step in [1, 3, 5, 31, 36, 1000, 16_415, 1 << 20] {
        let got = decode(true, &data, step, 1 << 20, true);
        let b: Vec<Vec<u8>> = got.iter().map(|l| l.2.clone()).collect();
        assert_eq!(b, want, "step {step}");
        assert!(got.iter().all(|l| l.0 == Stream::Stdout));
    }
    let json = decode(
        true,
        &corpus("logs_raw/json-file-tty-40000-invalid-nonl"),
        999,
        1 << 20,
        true,
    );
    assert_eq!(json.len(), 6);
    assert_eq!(json[5].2, b"nonl");
}

/// A container restarted: the text it held at exit (no newline) is one line, the new run's
/// first line another, in both formats.
#[test]
fn restart_after_unterminated_line() {
    let want_raw: Vec<&[u8]> = vec![
        b"one",
        b"two",
        b"tail-no-newline",
        b"one",
        b"two",
        b"tail-no-newline",
    ];
    for step in [1, 2, 17, 4096] {
        let raw = decode(
            true,
            &corpus("logs_raw/local-tty-restart"),
            step,
            1 << 20,
            true,
        );
        let b: Vec<&[u8]> = raw.iter().map(|l| l.2.as_slice()).collect();
        assert_eq!(b, want_raw, "step {step}");
        let mux = decode(
            false,
            &corpus("logs_mux/local-restart"),
            step,
            1 << 20,
            false,
        );
        let b: Vec<&[u8]> = mux.iter().map(|l| l.2.as_slice()).collect();
        assert_eq!(b, want_raw, "step {step}");
        assert_eq!(mux[1].0, Stream::Stderr);
    }
}

/// Cut at the bound: never inside a character, marked by the bytes left out.
#[test]
fn cut_at_bound_on_a_character_boundary() {
    let data = corpus("logs_mux/local-40000-invalid-nonl");
    let got = decode(false, &data, 4096, 16_384, false);
    let l = &got[2];
    // 16,383 'a' then the 2-byte é would cross 16,384: the é goes too.
    assert_eq!(l.2.len(), 16_383);
    assert_eq!(l.3, 40_000 - 16_383);
    assert!(std::str::from_utf8(&l.2).is_ok());
    assert_eq!(got[3].2, b"bad\xff\xfeutf8");
}

fn frame(stream: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![stream, 0, 0, 0];
    v.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    v.extend_from_slice(payload);
    v
}

fn msg(ts: &str, text: &[u8]) -> Vec<u8> {
    let mut v = format!("{ts} ").into_bytes();
    v.extend_from_slice(text);
    v
}

const T1: &str = "2026-11-30T09:00:00.000000001Z";
const T2: &str = "2026-11-30T09:00:00.000000002Z";
const T3: &str = "2026-11-30T09:00:00.000000003Z";

/// A line of exactly 16 KiB: its piece is full, so it stays open until the next message shows
/// it ended (another time) or continued (same time), or until the container stopped.
#[test]
fn full_piece_waits_for_the_next_message() {
    let full = vec![b'x'; PIECE];
    let mut d = Decoder::new(false, 1 << 20, mem());
    let mut out = Vec::new();
    d.feed(&frame(1, &msg(T1, &full)), &mut out).unwrap();
    assert!(out.is_empty() && d.is_open(Stream::Stdout));
    // stderr in between does not end it
    d.feed(&frame(2, &msg(T2, b"e\n")), &mut out).unwrap();
    assert_eq!(out.len(), 1);
    d.feed(&frame(1, &msg(T1, b"yy")), &mut out).unwrap(); // continuation, short: ends
    assert_eq!(out.len(), 2);
    assert_eq!(out[1].body.len(), PIECE + 2);
    d.feed(&frame(1, &msg(T2, &full)), &mut out).unwrap();
    d.feed(&frame(1, &msg(T3, b"next\n")), &mut out).unwrap();
    assert_eq!(out.len(), 4);
    assert_eq!(out[2].body.len(), PIECE);
    assert_eq!(out[2].ts, 1_796_029_200_000_000_002);
    d.feed(&frame(1, &msg(T3, &full)), &mut out).unwrap();
    assert!(d.finish(&mut out));
    assert_eq!(out.len(), 5);
}

/// Raw: a text that looks like a Docker time but is older than its message is text.
#[test]
fn raw_older_timestamp_in_text_is_text() {
    let mut data = msg(T2, b"log at ");
    data.extend_from_slice(format!("{T1} says hi\r\n").as_bytes());
    data.extend_from_slice(&msg(T3, b"next\r\n"));
    for step in [1, 9, 1000] {
        let got = decode(true, &data, step, 1 << 20, true);
        assert_eq!(got.len(), 2, "step {step}");
        assert_eq!(got[0].2, format!("log at {T1} says hi").into_bytes());
    }
}

/// Raw: a live line without newline is ended by idleness only when its piece was short.
#[test]
fn raw_idle_ends_short_pieces_only() {
    let mut d = Decoder::new(true, 1 << 20, mem());
    let mut out = Vec::new();
    d.feed(&msg(T1, b"> prompt"), &mut out).unwrap();
    assert!(out.is_empty());
    d.idle(&mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].body, b"> prompt");
    d.feed(&msg(T2, &vec![b'z'; PIECE]), &mut out).unwrap();
    d.idle(&mut out);
    assert_eq!(out.len(), 1);
    d.feed(&msg(T2, b"tail\r\n"), &mut out).unwrap();
    assert_eq!(out.len(), 2);
    assert_eq!(out[1].body.len(), PIECE + 4);
}

/// The local driver outside UTC writes the daemon's offset.
#[test]
fn offsets_are_read() {
    let data = frame(1, b"2026-11-30T14:53:31.689741219+05:30 hi\n");
    let got = decode(false, &data, 5, 1 << 20, false);
    assert_eq!(got[0].1, 1_796_030_611_689_741_219);
    let mut raw = b"2026-11-30T14:53:31.689741219+05:30 a".to_vec();
    raw.extend_from_slice(b"2026-11-30T14:53:32.000000000+05:30 b\r\n");
    let got = decode(true, &raw, 3, 1 << 20, true);
    assert_eq!(
        bodies(&got),
        vec![
            (Stream::Stdout, b"a".to_vec()),
            (Stream::Stdout, b"b".to_vec())
        ]
    );
}

#[test]
fn memory_is_charged_cut_and_given_back() {
    let m = Memory::new(100);
    let mut d = Decoder::new(false, 1 << 20, m.clone());
    let mut out = Vec::new();
    d.feed(&frame(1, &msg(T1, &[b'q'; 60])), &mut out).unwrap();
    d.feed(&frame(1, &msg(T2, &[b'r'; 60])), &mut out).unwrap();
    assert_eq!(out[0].cut, 0);
    assert_eq!(out[1].body.len(), 40);
    assert_eq!(out[1].cut, 20);
    assert_eq!(m.used(), 100);
    drop(out);
    assert_eq!(m.used(), 0);
    // An open line's charge goes back when the decoder is dropped.
    let mut out = Vec::new();
    d.feed(&frame(1, &msg(T3, &vec![b's'; PIECE])), &mut out)
        .unwrap();
    assert!(out.is_empty());
    drop(d);
    assert_eq!(m.used(), 0);
}

#[test]
fn bad_frames_and_daemon_errors() {
    let mut d = Decoder::new(false, 1 << 20, mem());
    let mut out = Vec::new();
    assert!(matches!(
        d.feed(&[1, 9, 0, 0, 0, 0, 0, 1, b'x'], &mut out),
        Err(DecodeError::Frame(_))
    ));
    let mut d = Decoder::new(false, 1 << 20, mem());
    assert_eq!(
        d.feed(&frame(3, b"log file rotated\n"), &mut out),
        Err(DecodeError::Daemon("log file rotated".into()))
    );
    // A message without a timestamp keeps its text and is counted.
    let mut d = Decoder::new(false, 1 << 20, mem());
    d.feed(&frame(1, b"no time here\n"), &mut out).unwrap();
    assert_eq!(out[0].body, b"no time here");
    assert_eq!(d.errors(), 1);
    // Ended inside a frame: not finished (it will be read again).
    let mut d = Decoder::new(false, 1 << 20, mem());
    d.feed(&frame(1, &msg(T1, b"abc"))[..12], &mut out).unwrap();
    assert!(!d.finish(&mut out));
}

#[test]
fn incomplete_utf8_tails() {
    assert_eq!(incomplete_tail(b"abc"), 0);
    assert_eq!(incomplete_tail("é".as_bytes()), 0);
    assert_eq!(incomplete_tail(&"é".as_bytes()[..1]), 1);
    assert_eq!(incomplete_tail(&"€".as_bytes()[..2]), 2);
    assert_eq!(incomplete_tail(&"😀".as_bytes()[..3]), 3);
    assert_eq!(incomplete_tail(b"\xff"), 0);
    assert_eq!(incomplete_tail(b""), 0);
}
