//! cargo +nightly fuzz run a2s — see node_agent::sources::probe::fuzz::a2s for what is checked.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| node_agent::sources::probe::fuzz::a2s(data));
