//! OTLP/gRPC transport: sends already-encoded export requests (`MetricsService/Export` or
//! `LogsService/Export`, by signal).
//!
//! The queue holds encoded requests (that is what the disk spool stores and what merging batches
//! concatenates), so the gRPC call uses a pass-through codec instead of re-decoding every request
//! into prost structs just to encode it again.
//!
//! Status codes are read as the OTLP specification's table says ("Failures"): `CANCELLED`,
//! `DEADLINE_EXCEEDED`, `ABORTED`, `OUT_OF_RANGE`, `UNAVAILABLE` and `DATA_LOSS` are retried;
//! `RESOURCE_EXHAUSTED` only when the server sends `RetryInfo` (it can recover); everything else,
//! `UNKNOWN` included, is not retried: the batch is dropped and counted. A status the server never
//! sent (the connection reset or closed under the call: tonic calls that `INTERNAL`) is no answer
//! and is retried, as OTLP/HTTP retries a reset connection ([`no_answer`]). Two refusals say more
//! and let the sender do better than drop: a server's "message larger than the limit"
//! (`RESOURCE_EXHAUSTED` or `OUT_OF_RANGE` saying so, without `RetryInfo`) is *too large* (the
//! sender splits the request), and `INVALID_ARGUMENT` is *invalid* (the sender bisects a merged
//! request to drop only the bad batch). A `RetryInfo` delay is honoured on any retried code. A
//! response's `partial_success` is handled as for OTLP/HTTP.

use super::config::ExportConfig;
use super::response::{PartialLog, RpcStatus, partial_success};
use super::signal::max_attempt_timeout;
use super::{Accepted, SendError, SetupError, Signal};
use crate::sys::text::{PEER_TEXT_MAX, peer_text};
use bytes::{Buf, BufMut, Bytes};
use prost::Message;
use std::time::Duration;
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::metadata::{MetadataKey, MetadataValue};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Status};

#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

#[derive(Debug, Clone, Copy, Default)]
struct RawEncoder;

#[derive(Debug, Clone, Copy, Default)]
struct RawDecoder;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

impl Encoder for RawEncoder {
    type Item = Bytes;
    type Error = Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawDecoder {
    type Item = Bytes;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        // tonic bounds the message (4 MiB by default) before it gets here; keep a prefix only. A
        // larger answer is still an accepted request: refusing it would make tonic report
        // OUT_OF_RANGE, a retryable code, and the accepted batch would be sent again forever.
        let keep = src.remaining().min(RESPONSE_MAX);
        let head = src.copy_to_bytes(keep);
        src.advance(src.remaining());
        Ok(Some(head))
    }
}

/// The most of a response kept (an `ExportMetricsServiceResponse` is a few bytes).
const RESPONSE_MAX: usize = 64 * 1024;

pub struct GrpcTransport {
    channel: Channel,
    pub(crate) timeout: Duration,
    /// For log lines and errors (never carries userinfo).
    endpoint: String,
    /// Per signal.
    partial: [PartialLog; 2],
    gzip: bool,
    metadata: Vec<(
        MetadataKey<tonic::metadata::Ascii>,
        MetadataValue<tonic::metadata::Ascii>,
    )>,
}

impl GrpcTransport {
    /// Must be called inside the Tokio runtime (the lazy channel spawns its worker there).
    pub(crate) fn new(cfg: &ExportConfig) -> Result<Self, SetupError> {
        let mut endpoint = Endpoint::from_shared(cfg.endpoint.clone())
            .map_err(|e| SetupError::new("otlp_endpoint", format!("`{}`: {e}", cfg.endpoint)))?
            .connect_timeout(Duration::from_secs(5).min(cfg.timeout))
            // Each request carries its own (adaptive) timeout; this only caps it.
            .timeout(max_attempt_timeout(cfg.timeout) + Duration::from_secs(1))
            .tcp_keepalive(Some(Duration::from_secs(30)))
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(10));
        if cfg.endpoint.starts_with("https://") {
            let mut tls = ClientTlsConfig::new();
            tls = match &cfg.tls.ca_pem {
                Some(ca) => tls.ca_certificate(Certificate::from_pem(ca)),
                None => tls.with_native_roots(),
            };
            if let (Some(cert), Some(key)) = (&cfg.tls.client_cert_pem, &cfg.tls.client_key_pem) {
                tls = tls.identity(Identity::from_pem(cert, key));
            }
            endpoint = endpoint.tls_config(tls).map_err(|e| {
                SetupError::new(
                    "otlp_certificate",
                    format!("TLS setup for {}: {e}", cfg.endpoint),
                )
            })?;
        }
        let mut metadata = Vec::new();
        for (k, v) in &cfg.headers {
            // Neither name nor value is echoed: a misplaced `:` puts the secret in the name.
            let key = MetadataKey::from_bytes(k.to_ascii_lowercase().as_bytes()).map_err(|_| {
                SetupError::new(
                    "otlp_headers",
                    "a name is not a valid gRPC metadata key".into(),
                )
            })?;
            let value = MetadataValue::try_from(v.as_str()).map_err(|_| {
                SetupError::new("otlp_headers", "a value is not visible ASCII".into())
            })?;
            metadata.push((key, value));
        }
        Ok(GrpcTransport {
            channel: endpoint.connect_lazy(),
            timeout: cfg.timeout,
            endpoint: crate::sys::text::redact_userinfo(&cfg.endpoint).into_owned(),
            partial: Default::default(),
            gzip: cfg.gzip,
            metadata,
        })
    }

    pub(crate) async fn send(
        &self,
        signal: Signal,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<Accepted, SendError> {
        let mut client = tonic::client::Grpc::new(self.channel.clone())
            .max_decoding_message_size(RESPONSE_DECODE_MAX);
        if self.gzip {
            client = client
                .send_compressed(CompressionEncoding::Gzip)
                .accept_compressed(CompressionEncoding::Gzip);
        }
        client.ready().await.map_err(|e| SendError::Retryable {
            reason: format!("gRPC {}: channel not ready: {e}", self.endpoint),
            retry_after: None,
        })?;
        let mut request = tonic::Request::new(payload);
        // The sender bounds the attempt by `timeout`; the server gets a little more to answer.
        request.set_timeout(timeout + Duration::from_secs(1));
        for (k, v) in &self.metadata {
            request.metadata_mut().insert(k.clone(), v.clone());
        }
        match client
            .unary(
                request,
                PathAndQuery::from_static(signal.grpc_path()),
                RawCodec,
            )
            .await
        {
            Ok(response) => {
                let body = response.into_inner();
                let rejected = self.partial[signal.index()].note(
                    signal,
                    &self.endpoint,
                    partial_success(signal, &body, false),
                );
                Ok(Accepted { rejected })
            }
            Err(status) if answer_too_large(&status) => {
                // A server sends a message only with success: the request was accepted.
                tracing::warn!(endpoint = %self.endpoint, signal = %signal.name(), "the collector's answer is larger than the agent reads; the request counts as accepted");
                Ok(Accepted::default())
            }
            Err(status) => Err(classify(&self.endpoint, &status)),
        }
    }
}

/// The most of an answer tonic buffers (or inflates) before it reaches [`RawDecoder`]. One byte
/// under tonic's default 4 MiB, so that tonic's own "decoded message length too large … the
/// limit is: 4194303 bytes" (or "size limit, of 4194303 bytes, exceeded while decompressing")
/// about the *answer* is never mistaken for a server refusing the *request* as too large (which,
/// with the default limit, names 4194304).
const RESPONSE_DECODE_MAX: usize = 4 * 1024 * 1024 - 1;

/// tonic refused the collector's answer for its size (a local status, not the server's).
fn answer_too_large(status: &Status) -> bool {
    matches!(status.code(), Code::OutOfRange | Code::ResourceExhausted)
        && status
            .message()
            .contains(&format!(" {RESPONSE_DECODE_MAX} bytes"))
}

/// A server's "message larger than the limit" about the request (grpc-go: `ResourceExhausted`
/// "received message larger than max"; tonic: `OutOfRange` "decoded message length too large").
fn too_large(status: &Status) -> bool {
    matches!(status.code(), Code::ResourceExhausted | Code::OutOfRange) && {
        let m = status.message().to_ascii_lowercase();
        m.contains("larger than") || m.contains("too large")
    }
}

/// The collector never answered the call: the status is the client's account of a broken
/// connection, not a `grpc-status` the server sent. tonic makes one when the stream is reset or
/// the connection goes away under the call, and maps h2's `NO_ERROR` reset, a collector shutting
/// down with the request in flight, to `INTERNAL`; a status the server sent has no source.
/// Such a call is "no answer", which is retried as OTLP/HTTP retries a reset connection: dropping
/// it lost a batch each time a collector restarted during a send.
fn no_answer(status: &Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(e) = source {
        if e.is::<hyper::Error>() {
            return true;
        }
        source = e.source();
    }
    false
}

/// Which gRPC failures are worth retrying, and after how long (OTLP specification, "Failures"
/// and "OTLP/gRPC Throttling"), and which refusals the sender can work around (too large,
/// invalid).
fn classify(endpoint: &str, status: &Status) -> SendError {
    let details = RpcStatus::decode(status.details()).ok();
    let retry_delay = details.as_ref().and_then(RpcStatus::retry_delay);
    let reason = format!(
        "gRPC {endpoint}: {:?}: {}",
        status.code(),
        peer_text(status.message(), PEER_TEXT_MAX)
    );
    let has_retry_info = details.as_ref().is_some_and(RpcStatus::has_retry_info);
    if no_answer(status) {
        return SendError::Retryable {
            reason,
            retry_after: None,
        };
    }
    if too_large(status) && !has_retry_info {
        return SendError::TooLarge { reason };
    }
    match status.code() {
        Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::OutOfRange
        | Code::Unavailable
        | Code::DataLoss => SendError::Retryable {
            reason,
            retry_after: retry_delay,
        },
        // The server can recover only when it says when (RetryInfo); otherwise it is a quota
        // or a size limit that another attempt will hit again.
        Code::ResourceExhausted if has_retry_info => SendError::Retryable {
            reason,
            retry_after: retry_delay,
        },
        Code::InvalidArgument => SendError::Invalid { reason },
        _ => SendError::Permanent { reason },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::response::ProtoAny;

    fn status(code: Code, retry_secs: Option<i64>) -> Status {
        let mut details = RpcStatus {
            code: code as i32,
            message: "m".into(),
            details: vec![],
        };
        if let Some(s) = retry_secs {
            // google.rpc.RetryInfo { retry_delay: Duration { seconds } }: field 1 of field 1.
            let duration = [0x08, s as u8];
            let mut retry = vec![0x0a, duration.len() as u8];
            retry.extend_from_slice(&duration);
            details.details.push(ProtoAny {
                type_url: "type.googleapis.com/google.rpc.RetryInfo".into(),
                value: retry,
            });
        }
        Status::with_details(code, "m\nforged", Bytes::from(details.encode_to_vec()))
    }

    #[test]
    fn codes_follow_the_specification_table() {
        let retried = [
            Code::Cancelled,
            Code::DeadlineExceeded,
            Code::Aborted,
            Code::OutOfRange,
            Code::Unavailable,
            Code::DataLoss,
        ];
        for code in [
            Code::Cancelled,
            Code::Unknown,
            Code::InvalidArgument,
            Code::DeadlineExceeded,
            Code::NotFound,
            Code::AlreadyExists,
            Code::PermissionDenied,
            Code::Unauthenticated,
            Code::ResourceExhausted,
            Code::FailedPrecondition,
            Code::Aborted,
            Code::OutOfRange,
            Code::Unimplemented,
            Code::Internal,
            Code::Unavailable,
            Code::DataLoss,
        ] {
            let e = classify("e", &status(code, None));
            assert_eq!(
                matches!(e, SendError::Retryable { .. }),
                retried.contains(&code),
                "{code:?}"
            );
        }
    }

    /// A byte-exact HTTP/2 peer for one gRPC call: it settles the connection, waits for the
    /// call's HEADERS, then either resets the stream with `NO_ERROR` (what a collector shutting
    /// down does to a call in flight) or answers it with a trailers-only `grpc-status: 13`.
    fn h2_peer(reset: bool) -> String {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut c, _) = listener.accept().unwrap();
            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut preface = [0u8; 24];
            c.read_exact(&mut preface).unwrap();
            let frame = |kind: u8, flags: u8, stream: u32, payload: &[u8]| {
                let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
                f.extend([kind, flags]);
                f.extend(stream.to_be_bytes());
                f.extend(payload);
                f
            };
            c.write_all(&frame(4, 0, 0, &[])).unwrap(); // SETTINGS
            loop {
                let mut head = [0u8; 9];
                if c.read_exact(&mut head).is_err() {
                    return;
                }
                let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
                let (kind, flags) = (head[3], head[4]);
                let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
                let mut payload = vec![0u8; len];
                c.read_exact(&mut payload).unwrap();
                if kind == 4 && flags & 1 == 0 {
                    c.write_all(&frame(4, 1, 0, &[])).unwrap(); // SETTINGS ACK
                } else if kind == 1 {
                    if reset {
                        // RST_STREAM, NO_ERROR.
                        c.write_all(&frame(3, 0, stream, &[0, 0, 0, 0])).unwrap();
                    } else {
                        // HPACK: `:status: 200` indexed, the rest literal without indexing.
                        let mut block = vec![0x88];
                        for (k, v) in [("content-type", "application/grpc"), ("grpc-status", "13")]
                        {
                            block.extend([0, k.len() as u8]);
                            block.extend(k.as_bytes());
                            block.push(v.len() as u8);
                            block.extend(v.as_bytes());
                        }
                        // HEADERS with END_STREAM and END_HEADERS.
                        c.write_all(&frame(1, 5, stream, &block)).unwrap();
                    }
                }
            }
        });
        format!("http://{addr}")
    }

    async fn call(url: String) -> Status {
        let channel = Endpoint::from_shared(url).unwrap().connect_lazy();
        let mut client = tonic::client::Grpc::new(channel);
        client.ready().await.unwrap();
        let path = PathAndQuery::from_static(Signal::Metrics.grpc_path());
        let request = tonic::Request::new(Bytes::from_static(b"x"));
        client.unary(request, path, RawCodec).await.unwrap_err()
    }

    #[tokio::test]
    async fn a_call_the_connection_dropped_is_retried_a_status_the_server_sent_is_not() {
        let reset = call(h2_peer(true)).await;
        // tonic reports the reset as INTERNAL: by its code alone it would be dropped.
        assert_eq!(reset.code(), Code::Internal, "{reset:?}");
        assert!(no_answer(&reset));
        assert!(matches!(classify("e", &reset), SendError::Retryable { .. }));
        let sent = call(h2_peer(false)).await;
        assert_eq!(sent.code(), Code::Internal, "{sent:?}");
        assert!(!no_answer(&sent));
        assert!(matches!(classify("e", &sent), SendError::Permanent { .. }));
    }

    #[test]
    fn too_large_and_invalid_are_told_apart_from_other_refusals() {
        let large = |code, msg: &str| classify("e", &Status::new(code, msg.to_string()));
        // grpc-go and tonic servers refusing the request for its size: split, not dropped.
        for (code, msg) in [
            (
                Code::ResourceExhausted,
                "grpc: received message larger than max (5000000 vs. 4194304)",
            ),
            (
                Code::OutOfRange,
                "Error, decoded message length too large: found 5000000 bytes, the limit is: 4194304 bytes",
            ),
        ] {
            assert!(
                matches!(large(code, msg), SendError::TooLarge { .. }),
                "{code:?}"
            );
        }
        // A quota is not a size: dropped, not retried, not split.
        assert!(matches!(
            large(Code::ResourceExhausted, "quota exceeded"),
            SendError::Permanent { .. }
        ));
        assert!(matches!(
            large(Code::InvalidArgument, "bad"),
            SendError::Invalid { .. }
        ));
        // RetryInfo on a "too large" status: the server says it can recover.
        let mut s = status(Code::ResourceExhausted, Some(2));
        s = Status::with_details(
            s.code(),
            "message larger than max",
            Bytes::copy_from_slice(s.details()),
        );
        assert!(matches!(classify("e", &s), SendError::Retryable { .. }));
        // tonic refusing the *answer* for its size is not the server refusing the request.
        let local = Status::out_of_range(format!(
            "Error, decoded message length too large: found 9999999 bytes, the limit is: {RESPONSE_DECODE_MAX} bytes"
        ));
        assert!(answer_too_large(&local));
        let inflated = Status::resource_exhausted(format!(
            "Error decompressing: size limit, of {RESPONSE_DECODE_MAX} bytes, exceeded while decompressing message"
        ));
        assert!(answer_too_large(&inflated));
        assert!(!answer_too_large(&Status::out_of_range(
            "Error, decoded message length too large: found 5000000 bytes, the limit is: 4194304 bytes"
        )));
    }

    #[test]
    fn retry_info_makes_resource_exhausted_retryable_and_sets_the_delay() {
        match classify("e", &status(Code::ResourceExhausted, Some(3))) {
            SendError::Retryable {
                retry_after,
                reason,
            } => {
                assert_eq!(retry_after, Some(Duration::from_secs(3)));
                assert!(
                    reason.contains("m\\nforged") && !reason.contains('\n'),
                    "{reason}"
                );
            }
            e => panic!("{e:?}"),
        }
        match classify("e", &status(Code::Unavailable, Some(5))) {
            SendError::Retryable { retry_after, .. } => {
                assert_eq!(retry_after, Some(Duration::from_secs(5)))
            }
            e => panic!("{e:?}"),
        }
        // A zero delay still says "recoverable", but the backoff decides when.
        match classify("e", &status(Code::ResourceExhausted, Some(0))) {
            SendError::Retryable { retry_after, .. } => assert_eq!(retry_after, None),
            e => panic!("{e:?}"),
        }
        // RetryInfo does not make a non-retryable code retryable.
        assert!(matches!(
            classify("e", &status(Code::Unknown, Some(1))),
            SendError::Permanent { .. }
        ));
    }
}
