//! cargo +nightly fuzz run query — see node_agent::sources::probe::fuzz::query for what is checked.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| node_agent::sources::probe::fuzz::query(data));
