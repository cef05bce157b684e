//! Network interface I/O from `/proc/net/dev`: `system.network.io`, `system.network.errors`,
//! `system.network.packet.dropped`.
//!
//! `lo` and Docker's per-container `veth*` peers are left out: loopback is not node traffic, and a
//! veth appears and disappears with every container start, which would churn series and count
//! container traffic twice (once on the veth, once on the bridge or uplink).

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub(crate) struct InterfaceSample {
    pub(crate) interface: String,
    pub(crate) rx_bytes: u64,
    pub(crate) tx_bytes: u64,
    pub(crate) rx_errors: u64,
    pub(crate) tx_errors: u64,
    pub(crate) rx_dropped: u64,
    pub(crate) tx_dropped: u64,
}

pub(crate) fn is_excluded(name: &str) -> bool {
    name == "lo" || name.starts_with("veth")
}

pub(crate) fn parse_net_dev(text: &str) -> Vec<InterfaceSample> {
    let mut out = Vec::new();
    for line in text.lines().skip(2) {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        if name.is_empty() || is_excluded(name) {
            continue;
        }
        let f: Vec<u64> = rest
            .split_ascii_whitespace()
            .map(|x| x.parse().unwrap_or(0))
            .collect();
        if f.len() < 16 {
            continue;
        }
        out.push(InterfaceSample {
            interface: name.to_string(),
            rx_bytes: f[0],
            rx_errors: f[2],
            rx_dropped: f[3],
            tx_bytes: f[8],
            tx_errors: f[10],
            tx_dropped: f[11],
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_skips_loopback_and_veth() {
        let t = "Inter-|   Receive |  Transmit\n face |bytes packets errs drop fifo frame compressed multicast|bytes packets errs drop fifo colls carrier compressed\n    lo: 10 1 0 0 0 0 0 0 10 1 0 0 0 0 0 0\n  eth0: 1000 10 1 2 0 0 0 0 2000 20 3 4 0 0 0 0\nveth12: 5 1 0 0 0 0 0 0 5 1 0 0 0 0 0 0\nbad: 1 2\n";
        let i = parse_net_dev(t);
        assert_eq!(i.len(), 1);
        assert_eq!(
            (
                i[0].rx_bytes,
                i[0].tx_bytes,
                i[0].rx_errors,
                i[0].tx_dropped
            ),
            (1000, 2000, 1, 4)
        );
    }
}
