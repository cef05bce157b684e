//! cargo +nightly fuzz run bedrock — see node_agent::sources::probe::fuzz::bedrock for what is checked.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| node_agent::sources::probe::fuzz::bedrock(data));
