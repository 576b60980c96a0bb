//! samenop-client: the embedded Rust client library of samenop.
//!
//! An organisation's registration system links this crate to talk to the
//! samenop service over mutual TLS, acting for its professionals. It hides
//! gRPC behind typed async calls and typed errors.
//!
//! # Layout
//! - [`Client`] (this file): connection, acting professional, health.
//! - [`directory`]: the directory calls (professionals, devices, specialists).
//! - [`family`]: families, handover and consent.
//! - [`consult`]: consults: open, route, accept, invite, close, report.
//! - [`audit`]: the caller's share of the audit trail, and its verification.
//! - [`mls`]: end-to-end encrypted threads: a device's MLS state, sending,
//!   reading, group membership and live events.
//! - [`types`]: the domain types callers pass and receive.
//! - [`error`]: [`ClientError`], matched from the server's status codes.
//!
//! ```no_run
//! # async fn demo() -> Result<(), samenop_client::ClientError> {
//! use samenop_client::{Client, ClientConfig, Expertise, ViolenceType};
//! let config = ClientConfig::from_files(
//!     "https://localhost:7443",
//!     "certs-dev/generated/ca.pem",
//!     "certs-dev/generated/orgs/wijkteam-demostad-oost.pem",
//!     "certs-dev/generated/orgs/wijkteam-demostad-oost.key",
//! )?;
//! let client = Client::connect(config).await?;
//! let me = client.acting_as("248df1e1-1206-8b0a-9b05-957c9d5abc80".parse().unwrap());
//! let specialists = me
//!     .list_specialists(Some(Expertise::Violence(ViolenceType::PartnerViolence)), true)
//!     .await?;
//! # Ok(()) }
//! ```

pub mod audit;
pub mod consult;
pub mod directory;
pub mod error;
pub mod family;
pub mod mls;
pub mod rights;
pub mod types;

use std::{path::Path, time::Duration};

use samenop_proto::PROFESSIONAL_METADATA_KEY;
use tonic::{
    Request,
    metadata::MetadataValue,
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity},
};
use uuid::Uuid;

pub use error::{ClientError, Result};
pub use types::{Availability, Device, Expertise, Professional, Role, ViolenceType};

/// How to reach the server and who the organisation is.
#[derive(Clone)]
pub struct ClientConfig {
    /// The server's address, e.g. `https://samenop.example.nl:7443`.
    pub endpoint: String,
    /// The name the server's certificate must carry; the endpoint's host
    /// when unset.
    pub server_name: Option<String>,
    /// The CA that issued the server's certificate (PEM).
    pub ca_certificate_pem: Vec<u8>,
    /// The organisation's client certificate (PEM), carrying its OIN.
    pub certificate_pem: Vec<u8>,
    /// The certificate's private key (PEM). Never logged.
    pub private_key_pem: Vec<u8>,
    /// How long a call may take.
    pub timeout: Duration,
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("endpoint", &self.endpoint)
            .field("server_name", &self.server_name)
            .field("private_key_pem", &"***")
            .finish_non_exhaustive()
    }
}

impl ClientConfig {
    /// A configuration from PEM files.
    ///
    /// # Errors
    /// [`ClientError::Config`] when a file cannot be read.
    pub fn from_files(
        endpoint: impl Into<String>,
        ca_certificate: impl AsRef<Path>,
        certificate: impl AsRef<Path>,
        private_key: impl AsRef<Path>,
    ) -> Result<Self> {
        let read = |path: &Path| {
            std::fs::read(path)
                .map_err(|e| ClientError::Config(format!("cannot read {}: {e}", path.display())))
        };
        Ok(ClientConfig {
            endpoint: endpoint.into(),
            server_name: None,
            ca_certificate_pem: read(ca_certificate.as_ref())?,
            certificate_pem: read(certificate.as_ref())?,
            private_key_pem: read(private_key.as_ref())?,
            timeout: Duration::from_secs(30),
        })
    }
}

/// A connection to the samenop service, acting for one professional at a
/// time. Cloning is cheap and shares the connection.
#[derive(Clone, Debug)]
pub struct Client {
    /// The HTTP/2 channel over mutual TLS.
    channel: Channel,
    /// The acting professional, sent as `samenop-professional` metadata.
    professional: Option<Uuid>,
}

impl Client {
    /// The endpoint of `config`: mutual TLS, timeouts.
    fn endpoint(config: &ClientConfig) -> Result<Endpoint> {
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&config.ca_certificate_pem))
            .identity(Identity::from_pem(
                &config.certificate_pem,
                &config.private_key_pem,
            ));
        if let Some(name) = &config.server_name {
            tls = tls.domain_name(name.clone());
        }
        let endpoint = Endpoint::from_shared(config.endpoint.clone())
            .map_err(|e| ClientError::Config(format!("endpoint {:?}: {e}", config.endpoint)))?
            .tls_config(tls)
            .map_err(|e| ClientError::Config(format!("TLS: {e}")))?
            .timeout(config.timeout)
            .connect_timeout(Duration::from_secs(10));
        Ok(endpoint)
    }

    /// Connects over mutual TLS; see [`Client::connect_lazy`] for a
    /// connection made on first use.
    ///
    /// With TLS 1.3 the server checks the client certificate after the
    /// client considers the handshake done: a refused certificate shows on
    /// the first call, as [`ClientError::Unavailable`].
    ///
    /// # Errors
    /// [`ClientError::Config`] for an unusable configuration,
    /// [`ClientError::Unavailable`] when the server cannot be reached.
    pub async fn connect(config: ClientConfig) -> Result<Self> {
        let channel = Self::endpoint(&config)?.connect().await?;
        Ok(Client {
            channel,
            professional: None,
        })
    }

    /// A connection made on its first call, and made again by later calls
    /// after the server went away: for a long-running process (the agent)
    /// that starts whether or not the server is up.
    ///
    /// # Errors
    /// [`ClientError::Config`] for an unusable configuration.
    pub fn connect_lazy(config: &ClientConfig) -> Result<Self> {
        Ok(Client {
            channel: Self::endpoint(config)?.connect_lazy(),
            professional: None,
        })
    }

    /// The same connection, acting for `professional`.
    pub fn acting_as(&self, professional: Uuid) -> Client {
        Client {
            channel: self.channel.clone(),
            professional: Some(professional),
        }
    }

    /// The acting professional, if set.
    pub fn professional(&self) -> Option<Uuid> {
        self.professional
    }

    /// The underlying channel, for calls this library does not wrap.
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// Asks the server's gRPC health service whether it serves.
    ///
    /// # Errors
    /// [`ClientError`] when the call fails (e.g. a refused certificate).
    pub async fn health(&self) -> Result<bool> {
        use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};
        let mut health = tonic_health::pb::health_client::HealthClient::new(self.channel.clone());
        let answer = health
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await?;
        Ok(answer.into_inner().status == ServingStatus::Serving as i32)
    }

    /// Wraps `message` in a request naming the acting professional.
    pub(crate) fn request<T>(&self, message: T) -> Result<Request<T>> {
        let professional = self.professional.ok_or(ClientError::NoProfessional)?;
        let mut request = Request::new(message);
        let value = MetadataValue::try_from(professional.hyphenated().to_string())
            .map_err(|_| ClientError::InvalidInput("professional id".into()))?;
        request
            .metadata_mut()
            .insert(PROFESSIONAL_METADATA_KEY, value);
        Ok(request)
    }
}
