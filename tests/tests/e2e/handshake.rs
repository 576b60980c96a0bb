//! The TLS handshake: only certificates from the trusted CA, valid and not
//! revoked, of an allowed organisation, get through.

use samenop_client::{Client, ClientConfig, ClientError};
use samenop_tests::{NOT_ALLOWED, ORG_A, TestServer};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};
use tonic_health::pb::health_client::HealthClient;

/// A call over a connection made with `config` (the first call is where a
/// TLS 1.3 client learns that its certificate was refused).
async fn first_call(config: ClientConfig) -> Result<bool, ClientError> {
    let client = Client::connect(config).await?;
    client.health().await
}

#[tokio::test]
async fn a_valid_certificate_of_an_allowed_organisation_is_served() {
    let server = TestServer::start().await;
    let config = server.client_config(server.pki.org_cert(ORG_A), server.pki.org_key(ORG_A));
    assert_eq!(first_call(config).await, Ok(true));
}

#[tokio::test]
async fn a_client_without_a_certificate_is_refused() {
    let server = TestServer::start().await;
    let ca = std::fs::read(server.pki.ca_cert()).unwrap();
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name("localhost");
    let result = async {
        let channel = Endpoint::from_shared(server.endpoint())?
            .tls_config(tls)?
            .connect()
            .await?;
        let mut health = HealthClient::new(channel);
        Ok::<_, Box<dyn std::error::Error>>(
            health
                .check(tonic_health::pb::HealthCheckRequest::default())
                .await?,
        )
    }
    .await;
    let chain = format!("{result:?}");
    assert!(
        result.is_err(),
        "a client without certificate must not be served"
    );
    assert!(chain.contains("CertificateRequired"), "{chain}");
}

/// The refusal of a handshake with `cert`/`key`, as the client reports it.
async fn refusal(server: &TestServer, cert: std::path::PathBuf, key: std::path::PathBuf) -> String {
    match first_call(server.client_config(cert, key)).await {
        Err(ClientError::Unavailable(message)) => message,
        other => panic!("expected the connection to be refused, got {other:?}"),
    }
}

#[tokio::test]
async fn a_certificate_from_an_unknown_ca_is_refused() {
    let server = TestServer::start().await;
    let message = refusal(
        &server,
        server.pki.untrusted_cert(),
        server.pki.untrusted_key(),
    )
    .await;
    assert!(message.contains("UnknownCA"), "{message}");
}

#[tokio::test]
async fn an_expired_certificate_is_refused() {
    let server = TestServer::start().await;
    let message = refusal(&server, server.pki.expired_cert(), server.pki.expired_key()).await;
    assert!(message.contains("CertificateExpired"), "{message}");
}

#[tokio::test]
async fn a_revoked_certificate_is_refused() {
    let server = TestServer::start().await;
    let message = refusal(&server, server.pki.revoked_cert(), server.pki.revoked_key()).await;
    assert!(message.contains("CertificateRevoked"), "{message}");
}

#[tokio::test]
async fn a_trusted_certificate_without_an_oin_is_unauthenticated() {
    let server = TestServer::start().await;
    let config = server.client_config(server.pki.no_oin_cert(), server.pki.no_oin_key());
    let client = Client::connect(config).await.unwrap();
    let result = client
        .acting_as(server.admins[ORG_A])
        .list_specialists(None, false)
        .await;
    match result {
        Err(ClientError::Unauthenticated(message)) => {
            assert!(message.contains("no OIN"), "{message}");
        }
        other => panic!("expected UNAUTHENTICATED, got {other:?}"),
    }
}

#[tokio::test]
async fn a_trusted_certificate_of_an_organisation_not_allowed_gets_permission_denied() {
    let server = TestServer::start().await;
    let client = server.connect(NOT_ALLOWED.slug).await;
    let result = client
        .acting_as(uuid::Uuid::now_v7())
        .list_specialists(None, false)
        .await;
    match result {
        Err(ClientError::PermissionDenied(message)) => {
            assert!(message.contains(NOT_ALLOWED.oin), "{message}");
            assert!(message.contains("not allowed"), "{message}");
        }
        other => panic!("expected PERMISSION_DENIED, got {other:?}"),
    }
}

/// A raw TLS handshake with organisation A's certificate, offering only
/// `version`.
async fn handshake_with(
    server: &TestServer,
    version: &'static rustls::SupportedProtocolVersion,
) -> std::io::Result<()> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject};
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(server.pki.ca_cert()).unwrap())
        .unwrap();
    let chain = vec![CertificateDer::from_pem_file(server.pki.org_cert(ORG_A)).unwrap()];
    let key = PrivateKeyDer::from_pem_file(server.pki.org_key(ORG_A)).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(server.addr).await?;
    let name = ServerName::try_from("localhost").unwrap();
    connector.connect(name, tcp).await.map(|_| ())
}

#[tokio::test]
async fn only_tls_1_3_is_offered() {
    let server = TestServer::start().await;
    handshake_with(&server, &rustls::version::TLS13)
        .await
        .expect("a TLS 1.3 handshake with a valid certificate succeeds");
    let refused = handshake_with(&server, &rustls::version::TLS12)
        .await
        .expect_err("a TLS 1.2 handshake must fail");
    assert!(refused.to_string().contains("ProtocolVersion"), "{refused}");
}
