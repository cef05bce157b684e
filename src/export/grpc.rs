//! OTLP/gRPC transport: sends already-encoded `ExportMetricsServiceRequest` bytes.
//!
//! The queue holds encoded requests (that is what the disk spool stores and what merging batches
//! concatenates), so the gRPC call uses a pass-through codec instead of re-decoding every request
//! into prost structs just to encode it again.

use super::config::ExportConfig;
use super::signal::max_attempt_timeout;
use super::{SendError, SetupError, Signal};
use bytes::{Buf, BufMut, Bytes};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
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
        // A collector's response is tiny; cap it anyway.
        if src.remaining() > 1 << 20 {
            return Err(Status::resource_exhausted("response larger than 1 MiB"));
        }
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

pub struct GrpcTransport {
    channel: Channel,
    pub(crate) timeout: Duration,
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
            let key = MetadataKey::from_bytes(k.to_ascii_lowercase().as_bytes()).map_err(|_| {
                SetupError::new(
                    "otlp_headers",
                    format!("`{k}` is not a valid gRPC metadata key"),
                )
            })?;
            let value = MetadataValue::try_from(v.as_str()).map_err(|_| {
                SetupError::new(
                    "otlp_headers",
                    format!("the value of `{k}` is not valid ASCII"),
                )
            })?;
            metadata.push((key, value));
        }
        Ok(GrpcTransport {
            channel: endpoint.connect_lazy(),
            timeout: cfg.timeout,
            gzip: cfg.gzip,
            metadata,
        })
    }

    pub(crate) async fn send(
        &self,
        signal: Signal,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<(), SendError> {
        let mut client = tonic::client::Grpc::new(self.channel.clone());
        if self.gzip {
            client = client
                .send_compressed(CompressionEncoding::Gzip)
                .accept_compressed(CompressionEncoding::Gzip);
        }
        client.ready().await.map_err(|e| SendError::Retryable {
            reason: format!("gRPC channel not ready: {e}"),
            retry_after: None,
        })?;
        let mut request = tonic::Request::new(payload);
        // The queue bounds the attempt by `timeout`; the server gets a little more to answer.
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
                if let Ok(r) = ExportMetricsServiceResponse::decode(response.into_inner())
                    && let Some(p) = r.partial_success
                    && p.rejected_data_points > 0
                {
                    tracing::warn!(rejected = p.rejected_data_points, message = %p.error_message, "collector rejected part of a batch");
                }
                Ok(())
            }
            Err(status) => Err(classify(&status)),
        }
    }
}

/// A server's "message larger than the limit" (grpc-go: `ResourceExhausted` "received message
/// larger than max"; tonic: `OutOfRange` "decoded message length too large").
fn too_large(status: &Status) -> bool {
    matches!(status.code(), Code::ResourceExhausted | Code::OutOfRange) && {
        let m = status.message().to_ascii_lowercase();
        m.contains("larger than") || m.contains("too large")
    }
}

/// Which gRPC failures are worth retrying (OTLP spec, "Failures").
fn classify(status: &Status) -> SendError {
    let reason = format!("gRPC {:?}: {}", status.code(), status.message());
    match status.code() {
        Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::OutOfRange
        | Code::Unavailable
        | Code::DataLoss
        | Code::ResourceExhausted
        | Code::Unknown
            if !too_large(status) =>
        {
            SendError::Retryable {
                reason,
                retry_after: None,
            }
        }
        Code::ResourceExhausted | Code::OutOfRange => SendError::TooLarge { reason },
        Code::InvalidArgument => SendError::Invalid { reason },
        _ => SendError::Permanent { reason },
    }
}
