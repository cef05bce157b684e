//! cargo +nightly fuzz run logs_raw — see node_agent::logs::fuzz::raw for what is checked.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| node_agent::logs::fuzz::raw(data));
