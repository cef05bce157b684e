//! cargo +nightly fuzz run logs_mux — see node_agent::logs::fuzz::mux for what is checked.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| node_agent::logs::fuzz::mux(data));
