//! Text that came from a peer (a collector's error message, a Docker or Wings body, a game
//! server's MOTD) made safe to put in one log line, an error or a `/readyz` field, and URLs made
//! safe to print.
//!
//! A peer controls these bytes. Written raw they can forge log lines (a newline followed by a
//! fake `ERROR`), smuggle terminal escape sequences, or make one line megabytes long. Every stage
//! that shows a peer's text passes it through [`peer_text`] (or [`peer_bytes`]) first: control
//! characters become visible escapes, and the result is at most a fixed number of characters
//! with a note of how much was cut.

use std::borrow::Cow;
use std::fmt::Write as _;

/// How much of a peer's message the agent shows, in characters: enough for any real error
/// message, short enough for one log line.
pub(crate) const PEER_TEXT_MAX: usize = 512;

/// `s` with control characters (C0, DEL, C1, the Unicode line and paragraph separators and
/// bidirectional overrides) escaped as `\n`, `\r`, `\t` or `\u{..}`, cut to at most `max`
/// characters of output; a cut ends with `…(+N bytes)`.
pub(crate) fn peer_text(s: &str, max: usize) -> String {
    escape(s.char_indices(), s.len(), max)
}

/// [`peer_text`] of bytes that may not be UTF-8 (each invalid sequence becomes U+FFFD). Only
/// what is shown is decoded: a peer's 100 MB body costs no more than a short one.
pub(crate) fn peer_bytes(b: &[u8], max: usize) -> String {
    // `max` characters are at most 4 × `max` bytes; one more byte makes the cut visible.
    let head = &b[..b.len().min(max.saturating_mul(4).saturating_add(4))];
    let chars = head.utf8_chunks().scan(0usize, |pos, chunk| {
        let base = *pos;
        *pos += chunk.valid().len() + chunk.invalid().len();
        let valid = chunk
            .valid()
            .char_indices()
            .map(move |(i, c)| (base + i, c));
        let bad = (!chunk.invalid().is_empty())
            .then_some((base + chunk.valid().len(), char::REPLACEMENT_CHARACTER));
        Some(valid.chain(bad))
    });
    escape(chars.flatten(), b.len(), max)
}

/// Escapes `(byte offset, char)` pairs of an input of `len` bytes into at most `max` characters.
fn escape(chars: impl Iterator<Item = (usize, char)>, len: usize, max: usize) -> String {
    let mut out = String::with_capacity(len.min(max) + 16);
    let mut used = 0usize;
    for (i, c) in chars {
        let start = out.len();
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\\' => out.push_str("\\\\"),
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
        let width = out[start..].chars().count();
        if used + width > max {
            out.truncate(start);
            let _ = write!(out, "…(+{} bytes)", len - i);
            return out;
        }
        used += width;
    }
    out
}

fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}')
        || ('\u{202a}'..='\u{202e}').contains(&c)
        || ('\u{2066}'..='\u{2069}').contains(&c)
}

/// `url` with any `user:password@` part replaced by `***@`, so a URL can be printed in `config`,
/// `check`, errors and logs. Anything that is not a URL with userinfo comes back unchanged.
pub(crate) fn redact_userinfo(url: &str) -> Cow<'_, str> {
    let Some(scheme_end) = url.find("://") else {
        return Cow::Borrowed(url);
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => Cow::Owned(format!("{}***@{}", &url[..scheme_end + 3], &rest[at + 1..])),
        None => Cow::Borrowed(url),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_nothing_forges_a_line() {
        let s = peer_text(
            "bad\nERROR forged\r\x1b[31mred\x07\u{85}\u{2028}\u{202e}x\\",
            100,
        );
        assert_eq!(
            s,
            "bad\\nERROR forged\\r\\u{1b}[31mred\\u{7}\\u{85}\\u{2028}\\u{202e}x\\\\"
        );
        assert!(!s.chars().any(char::is_control));
    }

    #[test]
    fn long_text_is_cut_with_the_remaining_size() {
        let s = peer_text(&"é".repeat(1000), 10);
        assert_eq!(s, format!("{}…(+1980 bytes)", "é".repeat(10)));
        // An escape is never cut in half.
        let s = peer_text("abcdefgh\n", 9);
        assert_eq!(s, "abcdefgh…(+1 bytes)");
        assert_eq!(peer_text("short", 10), "short");
    }

    #[test]
    fn bytes_are_decoded_only_as_far_as_shown() {
        let mut big = vec![b'a'; 100 << 20];
        big[0] = 0xff;
        let s = peer_bytes(&big, 20);
        assert!(s.starts_with('\u{fffd}'), "{s}");
        assert!(
            s.ends_with(&format!("(+{} bytes)", (100 << 20) - 20)),
            "{s}"
        );
        assert!(s.chars().count() < 60);
    }

    #[test]
    fn userinfo_is_redacted() {
        assert_eq!(
            redact_userinfo("https://user:pa%40ss@collector:4318/v1/metrics?a=b@c"),
            "https://***@collector:4318/v1/metrics?a=b@c"
        );
        assert_eq!(redact_userinfo("http://c:4318/x@y"), "http://c:4318/x@y");
        assert_eq!(redact_userinfo("not a url"), "not a url");
        assert_eq!(redact_userinfo("http://u@h"), "http://***@h");
    }
}
