//! Each source's sample as OTLP metrics, one file per source. This folder is the metric contract:
//! every name, unit, kind and attribute the agent exports is written here and nowhere else.

pub(crate) mod agent;
pub(crate) mod containers;
pub(crate) mod gpu;
pub(crate) mod node;
pub(crate) mod players;
