//! `samenop-agent`: end-to-end encrypted consult threads for registration
//! systems in any language.
//!
//! # Layout
//! - [`config`]: the TOML file, overrides, `check`.
//! - `lock`: one agent per data directory.
//! - `forward`: the HTTP/2 relay of `samenop.v1` to the server, and the
//!   bearer token of a TCP listener.
//! - `devices`: one device per professional, each with its follower.
//! - `log`: the events kept for `Watch`.
//! - `service`: `samenop.agent.v1.AgentService`.
//! - `status`: errors, messages and who a call acts for.
//!
//! [`run`] takes the lock, opens the log and the devices, binds and serves
//! until the shutdown future ends, then drains for the grace period.

pub mod config;
mod devices;
mod forward;
mod fsutil;
mod lock;
mod log;
mod service;
mod status;

use std::{future::Future, sync::Arc};

use samenop_client::{Client, ClientConfig};
use samenop_proto::agent::v1::agent_service_server::AgentServiceServer;
use tokio_stream::wrappers::{TcpListenerStream, UnixListenerStream};
use tonic::service::Routes;
use tracing::info;

pub use config::{Config, ConfigError, FileConfig, Listen, Overrides};
pub use lock::LockError;

/// The most an attachment may be, as the server's default limit.
const MAX_ATTACHMENT: u64 = 25 * 1024 * 1024;
/// The largest message the agent decodes (a chunk of an attachment, with
/// room).
const MAX_MESSAGE: usize = 4 * 1024 * 1024;

/// Why the agent stopped.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// Another agent owns the data directory, or it cannot be locked.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// The event log cannot be opened.
    #[error("{0}")]
    Log(String),
    /// The connection to the server cannot be set up.
    #[error("the connection to the server: {0}")]
    Client(String),
    /// The listener cannot be bound.
    #[error("cannot listen on {listen}: {source}")]
    Listen {
        /// Where.
        listen: String,
        /// Why.
        source: std::io::Error,
    },
    /// Serving failed.
    #[error("serving: {0}")]
    Serve(String),
}

/// Runs the agent with `config` until `shutdown` ends.
///
/// # Errors
/// [`AgentError`] for what keeps it from starting or serving.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), AgentError> {
    let _lock = lock::take(&config.data_dir)?;
    let log =
        Arc::new(log::Log::open(&config.data_dir).map_err(|e| AgentError::Log(e.to_string()))?);
    let client = Client::connect_lazy(&ClientConfig {
        endpoint: config.server.clone(),
        server_name: config.server_name.clone(),
        ca_certificate_pem: config.ca_pem.clone(),
        certificate_pem: config.certificate_pem.clone(),
        private_key_pem: config.key_pem.clone(),
        timeout: config.timeout,
    })
    .map_err(|e| AgentError::Client(e.to_string()))?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let devices = devices::Devices::new(
        client.clone(),
        config.data_dir.join("devices"),
        log,
        stopped,
    );
    devices.resume_all();

    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(samenop_proto::AGENT_FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| AgentError::Serve(e.to_string()))?;
    let agent = AgentServiceServer::new(service::Agent::new(
        Arc::clone(&devices),
        MAX_ATTACHMENT,
        stop.subscribe(),
    ))
    .max_decoding_message_size(MAX_MESSAGE);
    let router = Routes::new(agent)
        .add_service(reflection)
        .prepare()
        .into_axum_router()
        .fallback_service(forward::Forward::new(client.channel()));
    let mut server = tonic::transport::Server::builder()
        .layer(forward::TokenLayer::new(config.token.as_deref()));
    let router = server.add_routes(Routes::from(router));

    // At the shutdown signal the followers and every Watch stop (callers
    // resume from their cursors), tonic stops accepting and drains the
    // calls in flight, for the grace period at most.
    let grace = config.shutdown_grace;
    let (fired, on_fire) = tokio::sync::oneshot::channel::<()>();
    let signal = async move {
        shutdown.await;
        info!("stopping: draining calls in flight");
        let _ = stop.send(true);
        let _ = fired.send(());
    };
    let grace_over = async move {
        if on_fire.await.is_ok() {
            tokio::time::sleep(grace).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    let listen = config.listen.to_string();
    let bind_error = |source| AgentError::Listen {
        listen: listen.clone(),
        source,
    };
    macro_rules! serve {
        ($incoming:expr) => {{
            info!(listen = %listen, "samenop-agent serving");
            let serving = router.serve_with_incoming_shutdown($incoming, signal);
            tokio::select! {
                served = serving => served.map_err(|e| AgentError::Serve(e.to_string())),
                () = grace_over => {
                    tracing::warn!("calls still in flight after the grace period; stopping anyway");
                    Ok(())
                }
            }
        }};
    }
    match &config.listen {
        Listen::Unix(path) => {
            fsutil::socket_place(path).map_err(bind_error)?;
            let listener = tokio::net::UnixListener::bind(path).map_err(bind_error)?;
            restrict_socket(path).map_err(bind_error)?;
            let served = serve!(UnixListenerStream::new(listener));
            let _ = std::fs::remove_file(path);
            served
        }
        Listen::Tcp(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(bind_error)?;
            serve!(TcpListenerStream::new(listener))
        }
    }
}

fn restrict_socket(path: &std::path::Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}
