//! Game-server probe results as OTLP metrics: `gameserver.players.online`/`.max`,
//! `gameserver.status` (every state with 1 or 0, so a change never leaves a stale 1) and
//! `gameserver.ping.duration`, per target.

use crate::otlp::builder::{MetricsBuilder, kv, kv_int};
use crate::sources::probe::prober::TargetResult;
use crate::sources::probe::{State, Status};
use opentelemetry_proto::tonic::common::v1::KeyValue;

/// Attributes of one target's points.
fn attributes(r: &TargetResult) -> Vec<KeyValue> {
    let mut a = Vec::with_capacity(4);
    if let Some(u) = &r.uuid {
        a.push(kv("pterodactyl.server.uuid", u.clone()));
    }
    a.push(kv("gameserver.protocol", r.protocol.attribute()));
    a.push(kv("server.address", r.address.clone()));
    a.push(kv_int("server.port", r.port as i64));
    a
}

/// The `gameserver.*` metrics of one pass.
pub(crate) fn players(results: &[TargetResult], b: &mut MetricsBuilder) {
    fn st(r: &TargetResult) -> Option<&Status> {
        r.status.as_ref()
    }
    b.gauge(
        "gameserver.players.online",
        "{player}",
        "Players online, as the game server reports it",
        results
            .iter()
            .filter_map(|r| Some((st(r)?.online? as i64, attributes(r)))),
    );
    b.gauge(
        "gameserver.players.max",
        "{player}",
        "Player slots, as the game server reports it",
        results
            .iter()
            .filter_map(|r| Some((st(r)?.max? as i64, attributes(r)))),
    );
    b.gauge(
        "gameserver.status",
        "1",
        "1 for the game server's current state (up, starting, down), 0 for the others",
        results.iter().flat_map(|r| {
            State::ALL.into_iter().map(move |s| {
                let mut a = attributes(r);
                a.push(kv("gameserver.state", s.name()));
                ((r.state == s) as i64, a)
            })
        }),
    );
    b.gauge(
        "gameserver.ping.duration",
        "s",
        "Round trip of the status ping",
        results
            .iter()
            .filter_map(|r| Some((st(r)?.latency?.as_secs_f64(), attributes(r)))),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::probe::Protocol;
    use std::time::Duration;

    fn result(state: State, status: Option<Status>) -> TargetResult {
        TargetResult {
            key: "u".into(),
            uuid: Some("u".into()),
            name: "n".into(),
            protocol: Protocol::MinecraftLegacy,
            address: "127.0.0.1".into(),
            port: 25565,
            state,
            probed: true,
            status,
            error: None,
        }
    }

    #[test]
    fn status_gauge_has_all_three_states() {
        let up = result(
            State::Up,
            Some(Status {
                online: Some(7),
                max: Some(50),
                latency: Some(Duration::from_millis(2)),
                ..Default::default()
            }),
        );
        let mut b = MetricsBuilder::new(1);
        players(&[up, result(State::Down, None)], &mut b);
        let names: Vec<_> = b.metrics.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "gameserver.players.online",
                "gameserver.players.max",
                "gameserver.status",
                "gameserver.ping.duration"
            ]
        );
        let Some(opentelemetry_proto::tonic::metrics::v1::metric::Data::Gauge(g)) =
            &b.metrics[2].data
        else {
            panic!()
        };
        assert_eq!(g.data_points.len(), 6);
        let ones: i64 = g
            .data_points
            .iter()
            .map(|p| match p.value {
                Some(opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsInt(
                    i,
                )) => i,
                _ => 0,
            })
            .sum();
        assert_eq!(ones, 2);
        let Some(opentelemetry_proto::tonic::metrics::v1::metric::Data::Gauge(g)) =
            &b.metrics[0].data
        else {
            panic!()
        };
        assert_eq!(g.data_points.len(), 1);
        let keys: Vec<_> = g.data_points[0]
            .attributes
            .iter()
            .map(|a| a.key.as_str())
            .collect();
        assert_eq!(
            keys,
            [
                "pterodactyl.server.uuid",
                "gameserver.protocol",
                "server.address",
                "server.port"
            ]
        );
        // The legacy ping is reported as minecraft-java.
        assert_eq!(
            g.data_points[0].attributes[1]
                .value
                .as_ref()
                .map(crate::otlp::builder::attr_str),
            Some("minecraft-java".into())
        );
    }
}
