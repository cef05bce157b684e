//! Text that came from a peer (a Docker or Wings error message, a collector's answer) on its way
//! to a log line or `/readyz`: cut to a length and escaped, so a 10 MB message stays a short line
//! and a `\n` in it cannot forge a second log line or break a terminal.

/// `text` with every control character escaped (`\n`, `\r`, `\t` as such, others as `\u{..}`,
/// including the Unicode line and paragraph separators), cut after `max_chars` characters of
/// output with a note of how much was left out.
pub(crate) fn capped(text: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max_chars) + 16);
    let mut shown = 0;
    for (i, c) in text.char_indices() {
        let escaped;
        let piece: &str = match c {
            '\n' => "\\n",
            '\r' => "\\r",
            '\t' => "\\t",
            c if c.is_control() || c == '\u{2028}' || c == '\u{2029}' => {
                escaped = format!("\\u{{{:x}}}", c as u32);
                &escaped
            }
            c => {
                escaped = c.to_string();
                &escaped
            }
        };
        let n = piece.chars().count();
        if shown + n > max_chars {
            out.push_str(&format!("… ({} more bytes)", text.len() - i));
            return out;
        }
        out.push_str(piece);
        shown += n;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_caps() {
        assert_eq!(capped("plain", 10), "plain");
        assert_eq!(
            capped("a\nINFO forged\r\x1b[2J\u{2028}", 100),
            "a\\nINFO forged\\r\\u{1b}[2J\\u{2028}"
        );
        let long = "x".repeat(10 << 20);
        let c = capped(&long, 200);
        assert!(c.starts_with(&"x".repeat(200)));
        assert!(c.ends_with(&format!("… ({} more bytes)", (10 << 20) - 200)));
        assert!(c.len() < 240);
        // Never cuts inside a character or an escape.
        assert_eq!(capped("éé\n", 3), "éé… (1 more bytes)");
    }
}
