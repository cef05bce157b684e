//! Console logs of containers (work in progress).
mod budget;
mod decode;
mod timestamp;
