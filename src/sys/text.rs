//! Text from peers (Docker, Wings, collectors) on its way into a log line, an error or `/readyz`:
//! capped in length and escaped, so a hostile or broken peer can neither flood the log with a
//! 10 MB message nor forge log lines with newlines and terminal control characters.

use std::fmt::Write;

/// How much of a peer's message is kept: enough for any real error text.
pub(crate) const PEER_TEXT_MAX: usize = 300;

/// `text` cut to at most `max` characters (then `…` and the original length), with control
/// characters (newlines, tabs, ESC, C1 and Unicode line/paragraph separators) written as `\n`,
/// `\t` or `\u{…}`, and backslashes doubled so an escape cannot be forged either.
pub(crate) fn sanitize(text: &str, max: usize) -> String {
    sanitize_of(text, max, text.len())
}

fn sanitize_of(text: &str, max: usize, total: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max) + 16);
    for (taken, c) in text.chars().enumerate() {
        if taken == max {
            let _ = write!(out, "… ({total} bytes in all)");
            return out;
        }
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control()
                || matches!(c, '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}') =>
            {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// [`sanitize`] of bytes that may not be UTF-8 (invalid sequences become U+FFFD); only the
/// first `4 * max` bytes are looked at, so a huge body costs nothing to summarise.
pub(crate) fn sanitize_bytes(bytes: &[u8], max: usize) -> String {
    let head = &bytes[..bytes.len().min(4 * max + 4)];
    let mut s = sanitize_of(&String::from_utf8_lossy(head), max, bytes.len());
    if head.len() < bytes.len() && !s.ends_with("in all)") {
        let _ = write!(s, "… ({} bytes in all)", bytes.len());
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_and_escapes() {
        assert_eq!(
            sanitize("No such container: abc", 100),
            "No such container: abc"
        );
        assert_eq!(
            sanitize("a\nlevel=ERROR msg=forged\r\u{1b}[31m\\x", 100),
            "a\\nlevel=ERROR msg=forged\\r\\u{1b}[31m\\\\x"
        );
        let long = "é".repeat(10_000);
        let s = sanitize(&long, 10);
        assert!(
            s.starts_with(&"é".repeat(10)) && s.ends_with("(20000 bytes in all)"),
            "{s}"
        );
        assert_eq!(sanitize("\u{2028}", 5), "\\u{2028}");
        let big = vec![b'x'; 10 << 20];
        let s = sanitize_bytes(&big, 300);
        assert!(
            s.len() < 400 && s.ends_with("(10485760 bytes in all)"),
            "{}",
            s.len()
        );
        assert_eq!(sanitize_bytes(b"bad \xff\n", 50), "bad \u{fffd}\\n");
    }
}
