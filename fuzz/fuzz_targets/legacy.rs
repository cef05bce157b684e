//! cargo +nightly fuzz run legacy — see node_agent::sources::probe::fuzz::legacy for what is checked.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| node_agent::sources::probe::fuzz::legacy(data));
