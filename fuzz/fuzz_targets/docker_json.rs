//! cargo +nightly fuzz run docker_json — see node_agent::sources::containers::fuzz::docker for what is checked.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| node_agent::sources::containers::fuzz::docker(data));
