//! TLS for PostgreSQL connections through rustls (no OpenSSL: neither the build nor the Python
//! wheel needs libssl), with libpq's meaning of the modes that `pg_config` parses:
//!
//! - `prefer` and `require` without a root certificate encrypt without verifying the server
//!   (the handshake signatures are still checked, so the peer holds the certificate's key);
//! - `verify-ca` (and `require` given a root certificate) checks that the certificate chain
//!   leads to a trusted root, not the host name;
//! - `verify-full` checks the chain and that the certificate is for the host connected to
//!   (a DNS name or an IP address in its subject alternative names).
//!
//! The trusted roots are `sslrootcert`, else `~/.postgresql/root.crt` if it exists, else the
//! system's store (read by `rustls-native-certs` from the usual files, `SSL_CERT_FILE` and
//! `SSL_CERT_DIR` included), else, on a system with none, the Mozilla roots compiled in
//! (`webpki-roots`). A client certificate (`sslcert`, PEM, chain allowed) goes with its key
//! (`sslkey`, default: the certificate's path with the extension `.key`; PKCS#8, PKCS#1 or SEC1
//! PEM). Cryptography is `ring`'s, chosen explicitly so no process-wide default is needed.

use super::config::TlsMode;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What [`connector`] returns: a `MakeTlsConnect<Socket>` for `postgres`/`tokio-postgres`
/// (cheap to clone; `Send + Sync`).
pub(crate) type MakeTlsConnector = tokio_postgres_rustls::MakeRustlsConnect;

/// The TLS connector for `mode`, trusting `rootcert` (or the defaults above) and presenting
/// `cert`/`key` if given. Errors are messages naming the file that could not be used.
pub(crate) fn connector(
    mode: TlsMode,
    rootcert: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
) -> Result<MakeTlsConnector, String> {
    // Deprecated only because `ring` has no post-quantum key exchange; `aws-lc-rs`, which has,
    // needs a C/assembly build that the portable wheel's toolchain does not do as easily.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verify = match mode {
        TlsMode::VerifyCa | TlsMode::VerifyFull => true,
        TlsMode::Require => rootcert.is_some(),
        TlsMode::Disable | TlsMode::Prefer => false,
    };
    let verifier: Arc<dyn ServerCertVerifier> = if verify {
        let default_root = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".postgresql/root.crt"));
        let roots = match rootcert.or_else(|| default_root.filter(|p| p.exists())) {
            Some(ca) => roots_from_file(&ca)?,
            None => system_roots(),
        };
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| format!("cannot use the trusted roots: {e}"))?;
        if mode == TlsMode::VerifyFull {
            webpki
        } else {
            Arc::new(Lenient { chain: Some(webpki), provider: provider.clone() })
        }
    } else {
        Arc::new(Lenient { chain: None, provider: provider.clone() })
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let config = match cert {
        Some(cert) => {
            let chain =
                read_certs(&cert).map_err(|e| format!("cannot read client certificate {}: {e}", cert.display()))?;
            let key = key.unwrap_or_else(|| cert.with_extension("key"));
            let pk = PrivateKeyDer::from_pem_file(&key)
                .map_err(|e| format!("cannot read client key {}: {e}", key.display()))?;
            builder
                .with_client_auth_cert(chain, pk)
                .map_err(|e| format!("cannot use client certificate {}: {e}", cert.display()))?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(MakeTlsConnector::new(config))
}

/// Every certificate of a PEM file; an error if it has none.
fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| e.to_string())?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    if certs.is_empty() {
        return Err("no PEM certificate in it".into());
    }
    Ok(certs)
}

fn roots_from_file(path: &Path) -> Result<RootCertStore, String> {
    let bad = |e: String| format!("cannot read root certificate {}: {e}", path.display());
    let mut roots = RootCertStore::empty();
    for c in read_certs(path).map_err(bad)? {
        roots.add(c).map_err(|e| bad(e.to_string()))?;
    }
    Ok(roots)
}

/// The system's trusted roots, or the compiled-in Mozilla roots where the system has none.
fn system_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        tracing::debug!("reading the system's root certificates: {e}");
    }
    roots.add_parsable_certificates(found.certs);
    if roots.is_empty() {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    roots
}

/// The modes that check less than `verify-full`: `verify-ca` (`chain` set: the chain must lead
/// to a trusted root; the name is not checked, and as WebPKI checks the chain and validity
/// dates before the name, a name mismatch means the chain passed) and `prefer`/`require` (no
/// `chain`: any certificate is accepted). The handshake signatures are verified either way.
/// The outcome of a handshake signature check.
type Signed = Result<HandshakeSignatureValid, rustls::Error>;

#[derive(Debug)]
struct Lenient {
    chain: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Lenient {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else { return Ok(ServerCertVerified::assertion()) };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(&self, msg: &[u8], cert: &CertificateDer<'_>, dss: &DigitallySignedStruct) -> Signed {
        verify_tls12_signature(msg, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(&self, msg: &[u8], cert: &CertificateDer<'_>, dss: &DigitallySignedStruct) -> Signed {
        verify_tls13_signature(msg, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_files_are_named() {
        let e = connector(TlsMode::VerifyCa, Some("/nonexistent/ca.crt".into()), None, None).err().unwrap();
        assert!(e.contains("/nonexistent/ca.crt"), "{e}");
        let e = connector(TlsMode::Require, None, Some("/nonexistent/c.crt".into()), None).err().unwrap();
        assert!(e.contains("/nonexistent/c.crt"), "{e}");
    }

    #[test]
    fn modes_without_files_build() {
        for m in [TlsMode::Prefer, TlsMode::Require, TlsMode::VerifyCa, TlsMode::VerifyFull] {
            assert!(connector(m, None, None, None).is_ok(), "{m:?}");
        }
    }
}
