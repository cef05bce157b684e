//! `system.uptime` from `/proc/uptime`.

pub(crate) fn parse_uptime(text: &str) -> Option<f64> {
    text.split_ascii_whitespace()
        .next()?
        .parse()
        .ok()
        .filter(|v: &f64| v.is_finite() && *v >= 0.0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses() {
        assert_eq!(super::parse_uptime("12.5 30.1\n"), Some(12.5));
        assert_eq!(super::parse_uptime("-1 0"), None);
        assert_eq!(super::parse_uptime(""), None);
    }
}
