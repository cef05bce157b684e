//! Retries that make progress: a collector that refuses large requests (413), one undecodable
//! batch among good ones (the real rotel collector answers 400), and a collector slower than the
//! request timeout.

use crate::delivery::{NODE, http_get, prom_value};
use crate::delivery::{passes, segments, spawn_agent, spool_records};
use crate::harness::*;
use std::time::Duration;

#[test]
fn a_request_too_large_is_split_until_it_passes_and_nothing_is_lost() {
    let work = tempfile::tempdir().unwrap();
    let port = free_port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let spool = work.path().join("spool");
    let http = free_port();
    let listen = format!("127.0.0.1:{http}");
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        // Uncompressed, so the collector's limit applies to the protobuf the agent splits.
        ("OTEL_EXPORTER_OTLP_COMPRESSION", "none"),
        ("NODE_AGENT_SPOOL_DIR", spool.to_str().unwrap()),
        ("AGENT_SEND_BACKOFF_MAX_SEC", "0.5"),
        ("NODE_AGENT_HTTP_LISTEN", listen.as_str()),
        ("AGENT_SAMPLE_INTERVAL_MIN_SEC", "0.2"),
        ("AGENT_SAMPLE_INTERVAL_MAX_SEC", "0.2"),
    ];
    // A backlog while the collector is down…
    let a = Agent::start(work.path(), "agent", &env);
    wait_until(Duration::from_secs(30), "a backlog", || {
        segments(&spool)
            .iter()
            .flat_map(|s| spool_records(s))
            .count()
            >= 30
    });
    // …then a collector that takes at most a third of one sample per request: merged catch-up
    // requests are halved, and every single sample is split in parts.
    let one = spool_records(&segments(&spool)[0])[0].1 as u64 - 16;
    let limit = (one / 3).to_string();
    let receiver = Receiver::start_on(port, &["--max-bytes", &limit]);
    let taken = prom_value(
        &http_get(http, "/metrics").1,
        "node_agent_sampler_passes_total",
        NODE,
    )
    .unwrap() as u64;
    wait_until(Duration::from_secs(60), "the catch-up", || {
        passes(&receiver).iter().any(|p| p.1 >= taken + 5)
    });
    let (n, log) = a.stop(Duration::from_secs(30));
    let got: Vec<u64> = passes(&receiver).iter().map(|p| p.1).collect();
    assert_eq!(got, (1..=n).collect::<Vec<_>>(), "all, once, in order");
    assert!(log.contains("too large"), "{log}");
    assert!(!log.contains("batches dropped"), "{log}");
    let requests = receiver.requests();
    assert!(
        requests.len() as u64 >= 3 * n,
        "every sample went in parts: {} requests for {n} samples",
        requests.len()
    );
    assert!(
        requests
            .iter()
            .all(|r| r["bytes"].as_u64().unwrap() <= limit.parse().unwrap()),
        "every accepted request within the limit"
    );
    eprintln!(
        "413 at {limit} bytes (a sample is {one}): {n} samples in {} accepted requests",
        requests.len()
    );
}

#[test]
fn an_undecodable_batch_is_isolated_and_its_neighbours_delivered() {
    let work = tempfile::tempdir().unwrap();
    let spool = work.path().join("spool");
    let closed = format!("http://127.0.0.1:{}", free_port());
    let env = [
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ("NODE_AGENT_SPOOL_DIR", spool.to_str().unwrap()),
        ("NODE_AGENT_SHUTDOWN_GRACE_SEC", "0.3"),
    ];
    let mut env_a = env.to_vec();
    env_a.push(("OTEL_EXPORTER_OTLP_ENDPOINT", &closed));
    let a = spawn_agent(work.path(), "agent-a", &env_a);
    wait_until(Duration::from_secs(30), "20 spooled samples", || {
        segments(&spool)
            .iter()
            .flat_map(|s| spool_records(s))
            .count()
            >= 21
    });
    let (n_a, _) = a.stop(Duration::from_secs(20));
    // A checksum-valid record that is not protobuf, in the middle of the first segment.
    let seg = &segments(&spool)[0];
    let recs = spool_records(seg);
    assert!(recs.len() >= 10);
    let mut bytes = std::fs::read(seg).unwrap();
    let at = recs[recs.len() / 2].0;
    let garbage = [0xffu8; 40];
    let mut crc = flate2::Crc::new();
    crc.update(&garbage);
    let mut bad = b"NAS1".to_vec();
    bad.extend_from_slice(&(garbage.len() as u32).to_le_bytes());
    bad.extend_from_slice(&1u32.to_le_bytes());
    bad.extend_from_slice(&crc.sum().to_le_bytes());
    bad.extend_from_slice(&garbage);
    bytes.splice(at..at, bad);
    std::fs::write(seg, bytes).unwrap();
    let _ = std::fs::remove_file(spool.join("metrics/ack"));
    // The real collector refuses the request that carries it with a 400.
    let receiver = Receiver::start(&[]);
    let rotel = Rotel::start(&receiver.url(), &[]);
    let endpoint = format!("http://127.0.0.1:{}", rotel.http_port);
    let mut env_b = env.to_vec();
    env_b.push(("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint));
    let b = spawn_agent(work.path(), "agent-b", &env_b);
    wait_until(Duration::from_secs(60), "the replay", || {
        passes(&receiver)
            .iter()
            .filter(|p| p.0 == passes(&receiver)[0].0)
            .count() as u64
            >= n_a
    });
    let (_, log) = b.stop(Duration::from_secs(20));
    let got = passes(&receiver);
    let start_a = got.iter().map(|p| p.0).min().unwrap();
    let mut from_a: Vec<u64> = got.iter().filter(|p| p.0 == start_a).map(|p| p.1).collect();
    from_a.sort_unstable();
    assert_eq!(
        from_a,
        (1..=n_a).collect::<Vec<_>>(),
        "every good neighbour, once"
    );
    let dropped: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("batches dropped"))
        .collect();
    assert_eq!(dropped.len(), 1, "{log}");
    assert!(
        dropped[0].contains("batches=1 ") && dropped[0].contains("HTTP 400"),
        "{log}"
    );
}

#[test]
fn a_collector_slower_than_the_timeout_still_gets_everything_with_bounded_repeats() {
    let work = tempfile::tempdir().unwrap();
    let port = free_port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let spool = work.path().join("spool");
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "1000"),
        ("NODE_AGENT_SPOOL_DIR", spool.to_str().unwrap()),
        ("AGENT_SEND_BACKOFF_MAX_SEC", "0.5"),
        ("AGENT_SAMPLE_INTERVAL_MIN_SEC", "0.5"),
        ("AGENT_SAMPLE_INTERVAL_MAX_SEC", "0.5"),
    ];
    // Answers after 2.5 s: more than the 1 s timeout, less than its 4 s bound.
    let receiver = Receiver::start_on(port, &["--delay-ms", "2500"]);
    let a = Agent::start(work.path(), "agent", &env);
    wait_until(Duration::from_secs(90), "progress", || {
        passes(&receiver).iter().map(|p| p.1).max().unwrap_or(0) >= 20
    });
    let (n, log) = a.stop(Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(3));
    let mut got: Vec<u64> = passes(&receiver).iter().map(|p| p.1).collect();
    let received = got.len();
    got.sort_unstable();
    got.dedup();
    assert_eq!(got, (1..=n).collect::<Vec<_>>(), "every sample arrived");
    // Repeats come only from attempts that timed out (the collector processed them late), and
    // the timeouts stop once the timeout has grown past the collector's pace.
    let timeouts: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("export timed out"))
        .collect();
    let timed_out_batches: usize = timeouts
        .iter()
        .filter_map(|l| {
            l.split(" bytes, ")
                .nth(1)?
                .split(' ')
                .next()?
                .parse::<usize>()
                .ok()
        })
        .sum();
    let repeats = received - got.len();
    assert!(
        repeats <= timed_out_batches,
        "{repeats} repeats, {timed_out_batches} batches timed out\n{log}"
    );
    assert!(timeouts.len() <= 3, "{}", timeouts.join("\n"));
    assert!(
        log.contains("next timeout 4.0 s") || log.contains("next timeout 2.0 s"),
        "{log}"
    );
    eprintln!(
        "collector answering in 2.5 s, timeout 1 s: {n} samples, {} timed-out attempts, {repeats} repeated samples",
        timeouts.len()
    );
}
