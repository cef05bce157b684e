//! cargo +nightly fuzz run logs_raw — see node_agent::sources::logs::fuzz::raw for what is checked.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| node_agent::sources::logs::fuzz::raw(data));
