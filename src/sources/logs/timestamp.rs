//! Docker's log timestamps, read at the start of a message.
//!
//! With `timestamps=1` every message the Engine API writes begins with the time the daemon's
//! copier read it, formatted as Go's `RFC3339NanoFixed` (always nine fraction digits) and one
//! space: `2026-11-30T09:23:31.689741219Z ` (json-file), or with the daemon's local offset,
//! `2026-11-30T14:53:31.689741219+05:30 `, from the `local` driver when dockerd runs outside UTC.
//! The parser works on bytes as they arrive: it says when it needs more before it can decide, so
//! a prefix split across reads decodes the same as one read whole.

/// The longest prefix: 35 bytes of time with an offset plus the space.
pub(crate) const MAX_PREFIX: usize = 36;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Prefix {
    /// Unix nanoseconds and the bytes taken, the trailing space included.
    Time(u64, usize),
    /// Everything so far fits the format; more bytes are needed to decide.
    NeedMore,
    Invalid,
}

fn digits(b: &[u8], at: usize, n: usize) -> Result<i64, Prefix> {
    let mut v = 0i64;
    for i in at..at + n {
        match b.get(i) {
            None => return Err(Prefix::NeedMore),
            Some(c) if c.is_ascii_digit() => v = v * 10 + i64::from(c - b'0'),
            Some(_) => return Err(Prefix::Invalid),
        }
    }
    Ok(v)
}

fn byte(b: &[u8], at: usize, want: u8) -> Result<(), Prefix> {
    match b.get(at) {
        None => Err(Prefix::NeedMore),
        Some(&c) if c == want => Ok(()),
        Some(_) => Err(Prefix::Invalid),
    }
}

fn parse_inner(b: &[u8], strict: bool) -> Result<(u64, usize), Prefix> {
    let year = digits(b, 0, 4)?;
    byte(b, 4, b'-')?;
    let month = digits(b, 5, 2)?;
    byte(b, 7, b'-')?;
    let day = digits(b, 8, 2)?;
    byte(b, 10, b'T')?;
    let hour = digits(b, 11, 2)?;
    byte(b, 13, b':')?;
    let min = digits(b, 14, 2)?;
    byte(b, 16, b':')?;
    let sec = digits(b, 17, 2)?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || min > 59 || sec > 60 {
        return Err(Prefix::Invalid);
    }
    let mut at = 19;
    let mut nanos = 0i64;
    if b.get(at) == Some(&b'.') {
        at += 1;
        let mut n = 0;
        while let Some(c) = b.get(at).copied().filter(u8::is_ascii_digit) {
            if n == 9 {
                return Err(Prefix::Invalid);
            }
            nanos = nanos * 10 + i64::from(c - b'0');
            n += 1;
            at += 1;
        }
        if at == b.len() {
            return Err(Prefix::NeedMore);
        }
        if n == 0 || (strict && n != 9) {
            return Err(Prefix::Invalid);
        }
        for _ in n..9 {
            nanos *= 10;
        }
    } else if strict {
        return match b.get(at) {
            None => Err(Prefix::NeedMore),
            Some(_) => Err(Prefix::Invalid),
        };
    }
    let offset = match b.get(at) {
        None => return Err(Prefix::NeedMore),
        Some(b'Z') => {
            at += 1;
            0
        }
        Some(&s @ (b'+' | b'-')) => {
            let oh = digits(b, at + 1, 2)?;
            byte(b, at + 3, b':')?;
            let om = digits(b, at + 4, 2)?;
            if oh > 23 || om > 59 {
                return Err(Prefix::Invalid);
            }
            at += 6;
            let o = oh * 3600 + om * 60;
            if s == b'-' { -o } else { o }
        }
        Some(_) => return Err(Prefix::Invalid),
    };
    byte(b, at, b' ')?;
    let secs = crate::sys::clock::days_from_civil(year, month, day) * 86_400
        + hour * 3600
        + min * 60
        + sec
        - offset;
    // Before 1970 or past what u64 nanoseconds hold (year 2554): not a time Docker writes.
    let ns = u64::try_from(secs)
        .ok()
        .filter(|&s| s > 0)
        .and_then(|s| s.checked_mul(1_000_000_000))
        .and_then(|s| s.checked_add(nanos as u64))
        .ok_or(Prefix::Invalid)?;
    Ok((ns, at + 1))
}

/// Reads a timestamp and its space at the start of `b`. `strict` accepts only Docker's own
/// fixed nine-digit form (used to recognise a message boundary inside raw TTY text).
pub(crate) fn parse_prefix(b: &[u8], strict: bool) -> Prefix {
    match parse_inner(b, strict) {
        Ok((t, n)) => Prefix::Time(t, n),
        Err(p) => p,
    }
}

/// `since=` for the logs API: `<seconds>.<nanoseconds>` (the daemon keeps nanoseconds and the
/// bound is inclusive: a message at exactly this time is returned).
pub(crate) fn since_param(nanos: u64) -> String {
    format!("{}.{:09}", nanos / 1_000_000_000, nanos % 1_000_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_forms() {
        let z = b"2026-11-30T09:23:31.689741219Z first\n";
        assert_eq!(
            parse_prefix(z, true),
            Prefix::Time(1_796_030_611_689_741_219, 31)
        );
        let off = b"2026-11-30T14:53:31.689741219+05:30 first\n";
        assert_eq!(
            parse_prefix(off, true),
            Prefix::Time(1_796_030_611_689_741_219, 36)
        );
        // Looser forms are read at a message start, never as a boundary inside text.
        assert_eq!(
            parse_prefix(b"2026-11-30T09:23:31.5Z x", false),
            Prefix::Time(1_796_030_611_500_000_000, 23)
        );
        assert_eq!(
            parse_prefix(b"2026-11-30T09:23:31.5Z x", true),
            Prefix::Invalid
        );
        assert_eq!(
            parse_prefix(b"2026-11-30T09:23:31Z x", false),
            Prefix::Time(1_796_030_611_000_000_000, 21)
        );
    }

    #[test]
    fn every_cut_of_a_prefix_needs_more() {
        for full in [
            &b"2026-11-30T09:23:31.689741219Z "[..],
            &b"2026-11-30T14:53:31.689741219-05:30 "[..],
        ] {
            for n in 0..full.len() {
                assert_eq!(parse_prefix(&full[..n], true), Prefix::NeedMore, "{n}");
            }
        }
    }

    #[test]
    fn rejects_near_misses() {
        for bad in [
            &b"2026-13-30T09:23:31.689741219Z "[..],
            b"2026-11-30 09:23:31.689741219Z ",
            b"2026-11-30T09:23:31.6897412190Z ",
            b"2026-11-30T09:23:31.689741219Zx",
            b"2026-11-30T09:23:31.689741219+5:30 ",
            b"1970-01-01T00:00:00.000000000Z ",
            b"x",
            b"2026-11-30T09:23:31.Z ",
            b"4052-11-30T09:23:32.392769603Z ",
            b"9999-12-31T23:59:59.999999999-23:59 ",
        ] {
            assert_eq!(parse_prefix(bad, false), Prefix::Invalid, "{bad:?}");
        }
    }

    #[test]
    fn since_keeps_nanoseconds() {
        assert_eq!(
            since_param(1_796_030_611_000_000_001),
            "1796030611.000000001"
        );
    }
}
