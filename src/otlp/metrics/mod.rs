//! Each source's sample as OTLP metrics, one file per source. This folder is the metric contract:
//! every name, unit, kind and attribute the agent exports is written here and nowhere else.

pub mod agent;
pub mod containers;
pub mod gpu;
pub mod node;
pub mod players;
