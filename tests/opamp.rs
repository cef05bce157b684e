//! OpAMP client tests: proto generation, the real `@elastic/mockopampserver` (HTTP), and a
//! WebSocket server in the suite speaking the spec's framing.

/// The committed generated code is what prost-build makes from the vendored protos today
/// (protox parses them, so no protoc is needed). `NODE_AGENT_REGENERATE=1` rewrites the file.
#[test]
fn generated_proto_code_is_current() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let fds = protox::compile(["opamp.proto"], [root.join("proto/opamp/v1")])
        .unwrap_or_else(|e| panic!("proto/opamp/v1/opamp.proto: {e}"));
    let out = tempfile::tempdir().unwrap();
    prost_build::Config::new()
        .out_dir(out.path())
        .compile_fds(fds)
        .unwrap();
    let fresh = std::fs::read_to_string(out.path().join("opamp.proto.v1.rs")).unwrap();
    let committed_path = root.join("src/control/opamp.proto.v1.rs");
    if std::env::var_os("NODE_AGENT_REGENERATE").is_some() {
        std::fs::write(&committed_path, &fresh).unwrap();
    }
    let committed = std::fs::read_to_string(&committed_path).unwrap_or_default();
    assert!(
        committed == fresh,
        "{} is stale: run NODE_AGENT_REGENERATE=1 cargo test --test opamp generated_proto_code_is_current",
        committed_path.display()
    );
}
