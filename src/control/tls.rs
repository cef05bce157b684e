//! One rustls client configuration for both transports.
//!
//! Verification is on by default against the system's roots plus an optional CA file; a client
//! certificate gives mutual TLS. Skipping verification needs the operator's explicit flag, and
//! even then the handshake signatures are still checked (only the chain and the name are not).
//! The crypto provider is `ring`, passed explicitly, so nothing depends on a process default.

use super::OpampError;
use crate::config::opamp::OpampTls;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::sync::Arc;

fn tls_err(what: &str, e: impl std::fmt::Display) -> OpampError {
    OpampError::Config(format!("{what}: {e}"))
}

fn certs(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, OpampError> {
    let certs: Vec<_> = rustls_pemfile::certs(&mut &pem[..])
        .collect::<Result<_, _>>()
        .map_err(|e| tls_err(what, e))?;
    if certs.is_empty() {
        return Err(tls_err(what, "no PEM certificate in it"));
    }
    Ok(certs)
}

/// Builds the client configuration. `with_roots` is false for plain `http://`/`ws://`
/// endpoints (no TLS will happen, so the system store is not read).
pub fn client_config(tls: &OpampTls, with_roots: bool) -> Result<ClientConfig, OpampError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err("TLS", e))?;
    let builder = if tls.insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
    } else {
        let mut roots = RootCertStore::empty();
        if with_roots {
            let native = rustls_native_certs::load_native_certs();
            for c in native.certs {
                let _ = roots.add(c);
            }
            if let Some(ca) = &tls.ca_pem {
                for c in certs(ca, "opamp CA certificate")? {
                    roots
                        .add(c)
                        .map_err(|e| tls_err("opamp CA certificate", e))?;
                }
            }
            if roots.is_empty() {
                return Err(OpampError::Config(
                    "no trusted CA certificate: the system store is empty and no CA file is set"
                        .into(),
                ));
            }
        }
        builder.with_root_certificates(roots)
    };
    match (&tls.client_cert_pem, &tls.client_key_pem) {
        (Some(cert), Some(key)) => {
            let chain = certs(cert, "opamp client certificate")?;
            let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut &key[..])
                .map_err(|e| tls_err("opamp client key", e))?
                .ok_or_else(|| tls_err("opamp client key", "no PEM private key in it"))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| tls_err("opamp client certificate/key", e))
        }
        _ => Ok(builder.with_no_client_auth()),
    }
}

/// Accepts any server certificate (explicit insecure flag only); signatures are still checked.
#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_pem_is_named() {
        let tls = OpampTls {
            ca_pem: Some(b"not a pem".to_vec()),
            ..Default::default()
        };
        let e = client_config(&tls, true).unwrap_err().to_string();
        assert!(e.contains("opamp CA certificate"), "{e}");
        let tls = OpampTls {
            client_cert_pem: Some(b"x".to_vec()),
            client_key_pem: Some(b"y".to_vec()),
            ..Default::default()
        };
        let e = client_config(&tls, false).unwrap_err().to_string();
        assert!(e.contains("opamp client certificate"), "{e}");
        assert!(client_config(&OpampTls::default(), false).is_ok());
    }
}
