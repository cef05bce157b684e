//! cargo +nightly fuzz run query — see node_agent::probe::fuzz::query for what is checked.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| node_agent::probe::fuzz::query(data));
