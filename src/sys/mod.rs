//! The operating system, read cheaply: kept-descriptor file reads, the host's mount table parsed
//! once, clocks and process limits. Everything above this module reads the host through it.

pub(crate) mod clock;
#[cfg(test)]
pub(crate) mod fuzz;
pub(crate) mod limits;
pub mod mountinfo;
pub(crate) mod procfile;
pub(crate) mod text;
