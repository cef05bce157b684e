//! What the client asks of the agent it reports for: the seam between the protocol and the rest
//! of node-agent.
//!
//! The client never reaches into the agent's state. It asks, at each report, for a description
//! (identity and where the agent runs), the health of its parts, and the effective configuration
//! with secrets already redacted; and it hands a remote configuration that passed the local
//! allow-list to the agent to validate and apply. Reports are only sent when one of these
//! changed, so the answers must be stable when nothing changed (no "now" timestamps that move
//! on every call).

use super::proto;
use crate::config::ConfigError;
use crate::config::remote::RemoteLayer;
use std::collections::BTreeMap;

/// The agent as the client sees it. Methods are called from the client's task and should be
/// cheap; `apply_remote_config` runs on a blocking thread.
pub(crate) trait AgentHandle: Send + Sync + 'static {
    /// Identity and environment (sent when it changes).
    fn description(&self) -> Description;
    /// Health of the agent and its parts (sent when it changes).
    fn health(&self) -> Health;
    /// The effective configuration as TOML text, secrets redacted by the caller.
    fn effective_config(&self) -> String;
    /// Validates and applies a remote configuration that passed the allow-list; the layer with
    /// no keys means "no remote configuration" (the server withdrew it). On error, the previous
    /// configuration must stay in force and the error must name the setting at fault.
    fn apply_remote_config(&self, layer: &RemoteLayer) -> Result<(), ApplyError>;
}

/// Why a remote configuration that passed the allow-list was not applied. Both name the setting.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApplyError {
    /// The layers with it do not make a valid configuration.
    #[error(transparent)]
    Invalid(#[from] ConfigError),
    /// It changes a setting that is only read at start.
    #[error(
        "`{0}` cannot change while the agent runs (it is read at start); set it on the node, or leave it out of the remote configuration"
    )]
    NeedsRestart(&'static str),
    /// The applying thread did not finish (panic or timeout).
    #[error("applying the configuration failed: {0}")]
    Aborted(String),
}

/// One attribute value (the OTLP/OpAMP AnyValue kinds the agent uses).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum AttrValue {
    Str(String),
    Int(i64),
    Bool(bool),
    Double(f64),
    StrList(Vec<String>),
}

impl From<&str> for AttrValue {
    fn from(v: &str) -> Self {
        AttrValue::Str(v.to_string())
    }
}
impl From<String> for AttrValue {
    fn from(v: String) -> Self {
        AttrValue::Str(v)
    }
}
impl From<i64> for AttrValue {
    fn from(v: i64) -> Self {
        AttrValue::Int(v)
    }
}
impl From<bool> for AttrValue {
    fn from(v: bool) -> Self {
        AttrValue::Bool(v)
    }
}
impl From<f64> for AttrValue {
    fn from(v: f64) -> Self {
        AttrValue::Double(v)
    }
}
impl From<Vec<String>> for AttrValue {
    fn from(v: Vec<String>) -> Self {
        AttrValue::StrList(v)
    }
}

fn any_value(v: &AttrValue) -> proto::AnyValue {
    use proto::any_value::Value;
    let value = match v {
        AttrValue::Str(s) => Value::StringValue(s.clone()),
        AttrValue::Int(i) => Value::IntValue(*i),
        AttrValue::Bool(b) => Value::BoolValue(*b),
        AttrValue::Double(d) => Value::DoubleValue(*d),
        AttrValue::StrList(l) => Value::ArrayValue(proto::ArrayValue {
            values: l
                .iter()
                .map(|s| proto::AnyValue {
                    value: Some(Value::StringValue(s.clone())),
                })
                .collect(),
        }),
    };
    proto::AnyValue { value: Some(value) }
}

fn key_values(attrs: &[(String, AttrValue)]) -> Vec<proto::KeyValue> {
    attrs
        .iter()
        .map(|(k, v)| proto::KeyValue {
            key: k.clone(),
            value: Some(any_value(v)),
        })
        .collect()
}

/// The AgentDescription: identifying attributes (who) and non-identifying ones (where, what).
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Description {
    pub(crate) identifying: Vec<(String, AttrValue)>,
    pub(crate) non_identifying: Vec<(String, AttrValue)>,
}

impl Description {
    /// `service.name`, `service.version` (this build) and `service.instance.id`, the same
    /// identity as the agent's own OTLP Resource.
    #[cfg(any(test, feature = "fuzz"))]
    pub(crate) fn new(service_name: &str, instance_id: &str) -> Self {
        Description {
            identifying: vec![
                ("service.name".into(), service_name.into()),
                ("service.version".into(), env!("CARGO_PKG_VERSION").into()),
                ("service.instance.id".into(), instance_id.into()),
            ],
            non_identifying: Vec::new(),
        }
    }

    /// The description from the agent's OTLP Resource: `service.name`, `service.version` and
    /// `service.instance.id` identify it, everything else (`host.*`, `os.*`, the `node.*`
    /// capabilities, cgroup setup, container runtime, Wings version) describes it.
    pub(crate) fn from_resource(
        attrs: &[opentelemetry_proto::tonic::common::v1::KeyValue],
    ) -> Self {
        use opentelemetry_proto::tonic::common::v1::any_value::Value as V;
        const IDENTIFYING: [&str; 3] = ["service.name", "service.version", "service.instance.id"];
        let mut d = Description::default();
        for want in IDENTIFYING {
            if let Some(a) = attrs.iter().find(|a| a.key == want) {
                d.identifying.push((
                    want.to_string(),
                    otlp_value(a.value.as_ref().and_then(|v| v.value.as_ref())),
                ));
            }
        }
        for a in attrs
            .iter()
            .filter(|a| !IDENTIFYING.contains(&a.key.as_str()))
        {
            d.non_identifying.push((
                a.key.clone(),
                otlp_value(a.value.as_ref().and_then(|v| v.value.as_ref())),
            ));
        }
        fn otlp_value(v: Option<&V>) -> AttrValue {
            match v {
                Some(V::StringValue(s)) => AttrValue::Str(s.clone()),
                Some(V::IntValue(i)) => AttrValue::Int(*i),
                Some(V::BoolValue(b)) => AttrValue::Bool(*b),
                Some(V::DoubleValue(x)) => AttrValue::Double(*x),
                Some(V::ArrayValue(a)) => AttrValue::StrList(
                    a.values
                        .iter()
                        .filter_map(|v| match &v.value {
                            Some(V::StringValue(s)) => Some(s.clone()),
                            _ => None,
                        })
                        .collect(),
                ),
                _ => AttrValue::Str(String::new()),
            }
        }
        d
    }

    /// Adds a non-identifying attribute (`host.*`, `os.*`, `node.*` capabilities).
    #[cfg(test)]
    pub(crate) fn with(mut self, key: &str, value: impl Into<AttrValue>) -> Self {
        self.non_identifying.push((key.to_string(), value.into()));
        self
    }

    pub(crate) fn to_proto(&self) -> proto::AgentDescription {
        proto::AgentDescription {
            identifying_attributes: key_values(&self.identifying),
            non_identifying_attributes: key_values(&self.non_identifying),
        }
    }
}

/// Health of the agent or one of its parts, nestable (samplers, exporter queue, game probes).
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Health {
    pub(crate) healthy: bool,
    /// Short agent-defined state, e.g. `running`, `degraded`, `stale`.
    pub(crate) status: String,
    /// Human-readable error, set when not healthy. Must hold no secret.
    pub(crate) last_error: String,
    /// When the component started, Unix nanoseconds (0 when it is not running).
    pub(crate) start_time_unix_nano: u64,
    /// When this status was first observed, Unix nanoseconds (not "now": a moving value would
    /// make every heartbeat carry the health again).
    pub(crate) status_time_unix_nano: u64,
    pub(crate) components: BTreeMap<String, Health>,
}

impl Health {
    pub(crate) fn to_proto(&self) -> proto::ComponentHealth {
        proto::ComponentHealth {
            healthy: self.healthy,
            start_time_unix_nano: self.start_time_unix_nano,
            last_error: self.last_error.clone(),
            status: self.status.clone(),
            status_time_unix_nano: self.status_time_unix_nano,
            component_health_map: self
                .components
                .iter()
                .map(|(k, v)| (k.clone(), v.to_proto()))
                .collect(),
        }
    }
}

/// The name and content type under which the effective configuration is reported, and under
/// which a remote configuration is looked for.
pub(crate) const CONFIG_FILE_NAME: &str = "node-agent.toml";
pub(crate) const TOML_CONTENT_TYPE: &str = "application/toml";

pub(crate) fn effective_config(text: String) -> proto::EffectiveConfig {
    proto::EffectiveConfig {
        config_map: Some(proto::AgentConfigMap {
            config_map: [(
                CONFIG_FILE_NAME.to_string(),
                proto::AgentConfigFile {
                    body: text.into_bytes(),
                    content_type: TOML_CONTENT_TYPE.to_string(),
                },
            )]
            .into_iter()
            .collect(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn description_carries_identity_and_capabilities() {
        let d = Description::new("node-agent", "node-7")
            .with("host.name", "n7")
            .with("node.cpu.count", 8i64)
            .with("node.gpu.models", vec!["A".to_string(), "B".to_string()])
            .to_proto();
        let keys: Vec<_> = d
            .identifying_attributes
            .iter()
            .map(|k| k.key.as_str())
            .collect();
        assert_eq!(
            keys,
            ["service.name", "service.version", "service.instance.id"]
        );
        assert_eq!(d.non_identifying_attributes.len(), 3);
        let cpu = &d.non_identifying_attributes[1];
        assert_eq!(
            cpu.value.as_ref().unwrap().value,
            Some(proto::any_value::Value::IntValue(8))
        );
    }

    #[test]
    fn health_nests() {
        let mut h = Health {
            healthy: false,
            status: "degraded".into(),
            ..Default::default()
        };
        h.components.insert(
            "exporter".into(),
            Health {
                healthy: false,
                last_error: "collector unreachable".into(),
                ..Default::default()
            },
        );
        let p = h.to_proto();
        assert_eq!(
            p.component_health_map["exporter"].last_error,
            "collector unreachable"
        );
    }
}
