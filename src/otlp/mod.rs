//! OTLP: what goes on the wire. Samples from the sources become OpenTelemetry messages here,
//! built from the reference `opentelemetry-proto` types (docs/design.md says why not the SDK's
//! metric pipeline).
//!
//! - [`builder`]: data points, metrics and the request, stamped with the sample's time.
//! - [`pb`]: protobuf written straight into bytes (and patched from templates) for the one
//!   resource per container, the part of a request that grows with the node.
//! - [`metrics`]: one file per source, mapping its sample to the semantic conventions' names.
//! - [`resource`]: the node's identity and capabilities as the Resource of every request.
//!
//! - [`logs`]: container console lines as log records; [`agent_log`]: the agent's own log.

pub(crate) mod agent_log;
pub(crate) mod builder;
pub(crate) mod logs;
pub(crate) mod metrics;
pub(crate) mod pb;
pub(crate) mod resource;

pub(crate) use builder::{MetricsBuilder, attr_str};
