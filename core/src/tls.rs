//! TLS for all three services: one policy for what is trusted and verified.
//!
//! Trusted roots are the system store (which honours `SSL_CERT_FILE` /
//! `SSL_CERT_DIR`), the bundle a Node user points to with
//! `NODE_EXTRA_CA_CERTS`, and the CAs the user gives for a service. Certificates
//! are verified (chain and host name) unless the user asked for less; the crypto
//! provider is ring.

use crate::error::{self, CoreError, CoreResult};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use serde::Deserialize;
use std::sync::{Arc, OnceLock};

/// How much of the server's certificate is checked.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum Verify {
    /// The chain to a trusted root and the host name (the default everywhere).
    #[default]
    Full,
    /// The chain only, not the host name (libpq's `verify-ca`).
    Chain,
    /// Nothing: encrypted but open to a man in the middle. Only on explicit request.
    None,
}

/// A service's TLS settings, as the JS layer reads them from the user's client
/// objects and URLs. PEM text, never file names (files are read before this).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub struct TlsSettings {
    /// Extra CAs to trust (PEM, one or more certificates).
    pub ca: Option<String>,
    /// Client certificate chain (PEM), for servers that ask for one.
    pub cert: Option<String>,
    /// The client certificate's private key (PEM).
    pub key: Option<String>,
    /// The name to verify and send as SNI, when it is not the host connected to.
    pub server_name: Option<String>,
    #[serde(default)]
    pub verify: Verify,
}

fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider())).clone()
}

/// Parses PEM certificates, saying where they came from when they are not PEM.
pub fn parse_certs(pem: &[u8], what: &str) -> CoreResult<Vec<CertificateDer<'static>>> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| CoreError::InvalidArgument(format!("{what} is not a PEM certificate bundle: {e}")))?;
    if certs.is_empty() {
        return Err(CoreError::InvalidArgument(format!(
            "{what} holds no certificate (expected -----BEGIN CERTIFICATE----- blocks)"
        )));
    }
    Ok(certs)
}

/// Reads a file of PEM certificates named by the user (a URL parameter or an
/// environment variable).
pub fn read_pem_file(path: &str, what: &str) -> CoreResult<String> {
    std::fs::read_to_string(path).map_err(|e| CoreError::InvalidArgument(format!("cannot read {what} {path:?}: {e}")))
}

/// The system roots and `NODE_EXTRA_CA_CERTS`, loaded once per process.
fn base_roots() -> &'static Result<RootCertStore, String> {
    static ROOTS: OnceLock<Result<RootCertStore, String>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let mut store = RootCertStore::empty();
        // Unreadable system certificates are skipped, as Node and OpenSSL skip them.
        let native = rustls_native_certs::load_native_certs();
        store.add_parsable_certificates(native.certs);
        if let Some(path) = std::env::var_os("NODE_EXTRA_CA_CERTS").filter(|p| !p.is_empty()) {
            let path = path.to_string_lossy().into_owned();
            let pem = read_pem_file(&path, "NODE_EXTRA_CA_CERTS").map_err(|e| e.to_string())?;
            let certs = parse_certs(pem.as_bytes(), "NODE_EXTRA_CA_CERTS").map_err(|e| e.to_string())?;
            store.add_parsable_certificates(certs);
        }
        Ok(store)
    })
}

/// The PEM text of `NODE_EXTRA_CA_CERTS` and the user's CA, for clients that
/// take a root bundle rather than a rustls configuration (the redis crate:
/// it trusts only that bundle when one is given, so the system bundle goes in too).
pub fn root_bundle_pem(settings: &TlsSettings) -> CoreResult<Option<Vec<u8>>> {
    let extra = std::env::var_os("NODE_EXTRA_CA_CERTS").filter(|p| !p.is_empty());
    if settings.ca.is_none() && extra.is_none() {
        return Ok(None);
    }
    let mut pem = String::new();
    // The bundle file rustls-native-certs reads too (SSL_CERT_FILE, else the distribution's).
    if let Some(system) = openssl_probe::probe().cert_file.and_then(|p| std::fs::read_to_string(p).ok()) {
        pem.push_str(&system);
        pem.push('\n');
    }
    if let Some(path) = extra {
        pem.push_str(&read_pem_file(&path.to_string_lossy(), "NODE_EXTRA_CA_CERTS")?);
        pem.push('\n');
    }
    if let Some(ca) = &settings.ca {
        parse_certs(ca.as_bytes(), "the CA certificate")?;
        pem.push_str(ca);
    }
    Ok(Some(pem.into_bytes()))
}

/// A rustls client configuration for these settings.
pub fn client_config(settings: &TlsSettings, service: &str) -> CoreResult<ClientConfig> {
    let mut roots = base_roots().clone().map_err(|e| CoreError::InvalidArgument(format!("TLS to {service}: {e}")))?;
    if let Some(ca) = &settings.ca {
        let certs = parse_certs(ca.as_bytes(), &format!("the CA certificate for {service}"))?;
        let (_, ignored) = roots.add_parsable_certificates(certs);
        if ignored > 0 {
            return Err(CoreError::InvalidArgument(format!(
                "TLS to {service}: {ignored} CA certificate(s) could not be used as trust anchors"
            )));
        }
    }
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| CoreError::InvalidArgument(format!("TLS to {service}: {e}")))?;
    let builder = match settings.verify {
        Verify::Full => builder.with_root_certificates(roots),
        Verify::Chain | Verify::None => {
            let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| CoreError::InvalidArgument(format!("TLS to {service}: {e}")))?;
            builder.dangerous().with_custom_certificate_verifier(Arc::new(Relaxed {
                webpki,
                provider,
                verify: settings.verify,
            }))
        }
    };
    match (&settings.cert, &settings.key) {
        (None, None) => Ok(builder.with_no_client_auth()),
        (Some(cert), Some(key)) => {
            let chain = parse_certs(cert.as_bytes(), &format!("the client certificate for {service}"))?;
            let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).map_err(|e| {
                CoreError::InvalidArgument(format!("the client key for {service} is not a PEM private key: {e}"))
            })?;
            builder.with_client_auth_cert(chain, key).map_err(|e| {
                CoreError::InvalidArgument(format!("TLS to {service}: the client certificate and key do not fit: {e}"))
            })
        }
        _ => Err(CoreError::InvalidArgument(format!(
            "TLS to {service}: a client certificate needs both `cert` and `key`"
        ))),
    }
}

/// The name a certificate is checked against.
pub fn server_name(settings: &TlsSettings, host: &str, service: &str) -> CoreResult<ServerName<'static>> {
    let name = settings.server_name.as_deref().unwrap_or(host);
    let name = name.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(name.to_string())
        .map_err(|e| CoreError::InvalidArgument(format!("TLS to {service}: {name:?} is not a valid server name: {e}")))
}

/// The verifier for `Verify::Chain` and `Verify::None`. Handshake signatures
/// are still checked, so the peer holds the key of the certificate it shows.
#[derive(Debug)]
struct Relaxed {
    webpki: Arc<WebPkiServerVerifier>,
    provider: Arc<CryptoProvider>,
    verify: Verify,
}

impl ServerCertVerifier for Relaxed {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.verify == Verify::None {
            return Ok(ServerCertVerified::assertion());
        }
        match self.webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// The TLS failure inside an error chain, if there is one: a certificate that
/// does not verify, or a server that does not speak TLS.
pub fn tls_failure(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<rustls::Error>() {
            return Some(describe(r));
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if let Some(r) = io.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
                return Some(describe(r));
            }
        }
        cur = err.source();
    }
    // Some clients (the redis crate) keep the I/O error behind a type-erased
    // Arc, out of reach of a downcast; rustls' own wording still shows.
    let text = error::chain(e);
    ["invalid peer certificate", "received corrupt message", "peer is incompatible"]
        .iter()
        .any(|marker| text.contains(marker))
        .then(|| {
            if text.contains("received corrupt message") {
                format!("the server does not speak TLS on this port ({text})")
            } else {
                format!("the server's certificate does not verify ({text})")
            }
        })
}

fn describe(e: &rustls::Error) -> String {
    match e {
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => {
            format!("the server does not speak TLS on this port ({e})")
        }
        rustls::Error::InvalidCertificate(c) => format!("the server's certificate does not verify: {c:?}"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_is_not_pem() {
        assert!(parse_certs(b"hello", "x").unwrap_err().to_string().contains("holds no certificate"));
        let half = TlsSettings { cert: Some("x".into()), ..Default::default() };
        assert!(client_config(&half, "Redis").unwrap_err().to_string().contains("both `cert` and `key`"));
    }

    #[test]
    fn builds_a_verifying_config_by_default() {
        let c = client_config(&TlsSettings::default(), "RabbitMQ").unwrap();
        assert!(!c.client_auth_cert_resolver.has_certs());
        let off = TlsSettings { verify: Verify::None, ..Default::default() };
        assert!(client_config(&off, "PostgreSQL").is_ok());
    }
}
