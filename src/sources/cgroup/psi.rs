//! Pressure stall information (`cpu.pressure`, `io.pressure`, `memory.pressure`): the share of
//! wall time in which some task of the cgroup waited for the resource. Present in v2 cgroups
//! (also the `unified` ones runc creates on hybrid hosts) when the kernel has PSI.

/// The `some` line: `some avg10=1.50 avg60=… avg300=… total=<µs>`.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Pressure {
    /// Percent of the last 10 s.
    pub some_avg10: f64,
    /// Cumulative stall time, µs.
    pub some_total_us: u64,
}

pub(crate) fn parse(text: &str) -> Option<Pressure> {
    let line = text.lines().find(|l| l.starts_with("some "))?;
    let mut p = Pressure::default();
    let mut total = false;
    for f in line.split_ascii_whitespace().skip(1) {
        match f.split_once('=') {
            Some(("avg10", v)) => p.some_avg10 = v.parse().ok().filter(|x: &f64| x.is_finite())?,
            Some(("total", v)) => {
                p.some_total_us = v.parse().ok()?;
                total = true;
            }
            _ => {}
        }
    }
    total.then_some(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn some_line() {
        let t = "some avg10=10.39 avg60=2.02 avg300=0.42 total=1963209\nfull avg10=10.39 avg60=2.02 avg300=0.42 total=1956076\n";
        assert_eq!(
            parse(t),
            Some(Pressure {
                some_avg10: 10.39,
                some_total_us: 1_963_209
            })
        );
        assert_eq!(parse("full avg10=1 total=2\n"), None);
        assert_eq!(parse("some avg10=NaN total=1"), None);
        assert_eq!(parse(""), None);
    }
}
