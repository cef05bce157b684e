//! cargo +nightly fuzz run java — see node_agent::sources::probe::fuzz::java for what is checked.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| node_agent::sources::probe::fuzz::java(data));
