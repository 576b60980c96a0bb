//! Mutual TLS: the rustls server configuration (TLS 1.3 only, ring provider,
//! client certificates required, verified against the trust anchors and the
//! revocation lists) and the stream of accepted, handshaken connections that
//! tonic serves.
//!
//! Handshakes run in their own tasks with a time limit, so a slow or hostile
//! client never holds up the accept loop. A failed handshake is logged at
//! debug level with its reason and the peer address, and the connection is
//! dropped.

use std::{io, path::Path, path::PathBuf, sync::Arc, time::Duration};

use rustls::{
    RootCertStore, ServerConfig,
    pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, pem::PemObject},
    server::WebPkiClientVerifier,
};
use tokio::{net::TcpListener, net::TcpStream, sync::mpsc};
use tokio_rustls::{TlsAcceptor, server::TlsStream};
use tokio_stream::wrappers::ReceiverStream;

/// Why the TLS configuration cannot be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A PEM file could not be read or parsed.
    #[error("cannot read {what} from {path}: {reason}")]
    Pem {
        /// What the file should hold.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// rustls refused the material (e.g. a key that does not match the
    /// certificate, or an unusable trust anchor or CRL).
    #[error("TLS configuration refused: {0}")]
    Refused(String),
}

/// Paths of the server's TLS material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsPaths {
    /// The server's certificate chain (PEM), leaf first.
    pub certificate: PathBuf,
    /// The server's private key (PEM, PKCS#8 or SEC1 or PKCS#1).
    pub private_key: PathBuf,
    /// The trust anchors for client certificates (PEM, one or more CAs).
    pub client_ca: Vec<PathBuf>,
    /// Certificate revocation lists (PEM) for client certificates.
    pub crls: Vec<PathBuf>,
}

fn pem_error(what: &'static str, path: &Path, err: impl std::fmt::Display) -> TlsError {
    TlsError::Pem {
        what,
        path: path.to_owned(),
        reason: err.to_string(),
    }
}

fn certificates(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(what, path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(what, path, e))?;
    if certs.is_empty() {
        return Err(pem_error(what, path, "no certificate in the file"));
    }
    Ok(certs)
}

/// Builds the server's TLS configuration from files.
///
/// # Errors
/// [`TlsError`] when a file is missing or malformed or rustls refuses it.
pub fn server_config(paths: &TlsPaths) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = certificates("the server certificate", &paths.certificate)?;
    let key = PrivateKeyDer::from_pem_file(&paths.private_key)
        .map_err(|e| pem_error("the server private key", &paths.private_key, e))?;
    if paths.client_ca.is_empty() {
        return Err(TlsError::Refused(
            "no client CA configured: client certificates cannot be verified".into(),
        ));
    }
    if paths.crls.is_empty() {
        return Err(TlsError::Refused(
            "no CRL configured (tls.crls): revoked client certificates would be accepted".into(),
        ));
    }
    let mut roots = RootCertStore::empty();
    for path in &paths.client_ca {
        for cert in certificates("a client CA certificate", path)? {
            roots
                .add(cert)
                .map_err(|e| pem_error("a client CA certificate", path, e))?;
        }
    }
    let mut crls = Vec::new();
    for path in &paths.crls {
        let list = CertificateRevocationListDer::pem_file_iter(path)
            .map_err(|e| pem_error("a CRL", path, e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| pem_error("a CRL", path, e))?;
        if list.is_empty() {
            return Err(pem_error("a CRL", path, "no CRL in the file"));
        }
        crls.extend(list);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .with_crls(crls)
        // A CRL past its nextUpdate no longer vouches for anyone: fail closed.
        .enforce_revocation_expiration()
        .build()
        .map_err(|e| TlsError::Refused(e.to_string()))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Refused(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Refused(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    // No session resumption: a resumed session would carry the client
    // certificate of an earlier handshake without checking its validity or
    // revocation again. Every connection verifies the certificate afresh.
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

/// Accepts connections on `listener` and completes their TLS handshakes,
/// yielding the connections that succeed. The accept loop ends when the
/// returned stream is dropped (the listener closes with it).
pub fn incoming(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    handshake_timeout: Duration,
) -> ReceiverStream<io::Result<TlsStream<TcpStream>>> {
    let (tx, rx) = mpsc::channel(64);
    let acceptor = TlsAcceptor::from(config);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                () = tx.closed() => break,
                accepted = listener.accept() => accepted,
            };
            let (tcp, remote) = match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    // Out of file descriptors and the like: back off briefly.
                    tracing::warn!(cause = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let _ = tx.send(Ok(stream)).await;
                    }
                    Ok(Err(err)) => {
                        tracing::debug!(%remote, cause = %err, "TLS handshake refused");
                    }
                    Err(_) => tracing::debug!(%remote, "TLS handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}
