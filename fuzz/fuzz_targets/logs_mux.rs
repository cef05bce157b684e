//! cargo +nightly fuzz run logs_mux — see node_agent::sources::logs::fuzz::mux for what is checked.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| node_agent::sources::logs::fuzz::mux(data));
