//! cargo +nightly fuzz run opamp — see node_agent::control::fuzz::server_to_agent for what is
//! checked (every server message decoding path, the protocol state machine, the allow-list).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| node_agent::control::fuzz::server_to_agent(data));
