//! cargo +nightly fuzz run wings_json — see node_agent::sources::containers::fuzz::wings for what is checked.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| node_agent::sources::containers::fuzz::wings(data));
