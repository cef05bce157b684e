//! Bytes on the wire: the WebSocket frame (a varint header, 0 in this version of the
//! specification, then the protobuf message), bounded decoding of `ServerToAgent`, and bounded
//! gzip. Everything the server sends passes through here first, which is why this is the part
//! that is fuzzed (see [`super::fuzz`]).

use super::Refusal;
use super::proto::{AgentToServer, ServerToAgent};
use prost::Message;
use std::io::Read;

/// A WebSocket message: header 0, then the encoded `AgentToServer`.
pub fn encode_frame(msg: &AgentToServer) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + msg.encoded_len());
    prost::encoding::encode_varint(0, &mut out);
    msg.encode(&mut out)
        .expect("a Vec grows to fit any message");
    out
}

/// Decodes a `ServerToAgent` of at most `max` bytes.
pub fn decode_message(data: &[u8], max: usize) -> Result<ServerToAgent, Refusal> {
    if data.len() > max {
        return Err(Refusal(format!(
            "server message of {} bytes is over the {max}-byte limit",
            data.len()
        )));
    }
    ServerToAgent::decode(data).map_err(|e| Refusal(format!("not a ServerToAgent message: {e}")))
}

/// Decodes one WebSocket message: the header must be 0 (other values are reserved and mean
/// the message is malformed), the rest is the protobuf message (possibly empty).
pub fn decode_frame(frame: &[u8], max: usize) -> Result<ServerToAgent, Refusal> {
    let mut rest = frame;
    let header = prost::encoding::decode_varint(&mut rest)
        .map_err(|_| Refusal("WebSocket message without a valid varint header".into()))?;
    if header != 0 {
        return Err(Refusal(format!(
            "WebSocket message header {header} is not 0"
        )));
    }
    decode_message(rest, max)
}

/// Inflates a gzip body, refusing to produce more than `max` bytes (a small compressed body can
/// expand a thousandfold).
pub fn gunzip_bounded(data: &[u8], max: usize) -> Result<Vec<u8>, Refusal> {
    let mut out = Vec::with_capacity(data.len().saturating_mul(4).min(max));
    flate2::read::MultiGzDecoder::new(data)
        .take(max as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| Refusal(format!("gzip body: {e}")))?;
    if out.len() > max {
        return Err(Refusal(format!(
            "gzip body inflates past the {max}-byte limit"
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn frame_round_trip_and_reserved_header() {
        let msg = AgentToServer {
            instance_uid: vec![7; 16],
            ..Default::default()
        };
        let f = encode_frame(&msg);
        assert_eq!(f[0], 0);
        // The same layout carries a ServerToAgent (field 1 is instance_uid in both).
        let s = decode_frame(&f, 1024).unwrap();
        assert_eq!(s.instance_uid, vec![7; 16]);
        assert!(decode_frame(&[0], 1024).unwrap() == ServerToAgent::default());
        assert!(
            decode_frame(&[1, 0x0a, 0], 1024)
                .unwrap_err()
                .0
                .contains("header 1")
        );
        assert!(decode_frame(&[], 1024).is_err());
        assert!(decode_frame(&[0xff; 11], 1024).is_err());
        assert!(
            decode_frame(&[0, 0x0a, 0x05, 1], 1024).is_err(),
            "truncated field"
        );
        assert!(
            decode_message(&[0; 2000], 1024)
                .unwrap_err()
                .0
                .contains("limit")
        );
    }

    #[test]
    fn gzip_is_bounded() {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(&vec![0u8; 1 << 20]).unwrap();
        let bomb = enc.finish().unwrap();
        assert!(bomb.len() < 4096);
        assert!(
            gunzip_bounded(&bomb, 64 * 1024)
                .unwrap_err()
                .0
                .contains("limit")
        );
        assert_eq!(gunzip_bounded(&bomb, 1 << 20).unwrap().len(), 1 << 20);
        assert!(gunzip_bounded(b"not gzip", 1024).is_err());
    }
}
