//! samenop-server: the consultation service of samenop.
//!
//! # Layout
//! - [`config`]: the TOML configuration, typed and checked before anything binds.
//! - [`tls`]: mutual TLS (rustls, ring, TLS 1.3, client certificates with CRLs)
//!   and the stream of handshaken connections.
//! - [`auth`]: certificate → organisation (OIN), metadata → acting professional.
//! - [`audit`]: one audit event per call, committed with the change it
//!   describes or before the answer leaves.
//! - [`domain`]: types and rules, parsed from the wire once; no I/O.
//! - [`store`]: the [`store::Store`] trait, the redb backend, typed records.
//! - [`services`]: one file per gRPC service: decode, authorise, act, encode.
//! - [`error`]: the service error and its single mapping to gRPC status codes.
//! - [`layers`]: per-call tracing span and transport-level status fixes.
//! - [`bootstrap`]: first admins from configuration, and the demo network.
//! - [`clock`]: the time source, replaceable in tests.
//! - [`dev`]: `dev` mode: development PKI, demo network, welcome text.
//!
//! [`run`] serves on an already-bound listener until a shutdown future
//! completes, so tests bind `127.0.0.1:0` and inject both.

pub mod audit;
pub mod audit_key;
pub mod auth;
pub mod bootstrap;
pub mod clock;
pub mod config;
pub mod delivery;
pub mod dev;
pub mod domain;
pub mod error;
pub mod layers;
pub mod metrics;
mod periodic;
mod retention;
pub mod services;
pub mod store;
mod sweep;
pub mod tls;

use std::{future::Future, sync::Arc};

use samenop_proto::v1::{
    audit_service_server::AuditServiceServer, consult_service_server::ConsultServiceServer,
    directory_service_server::DirectoryServiceServer, family_service_server::FamilyServiceServer,
    thread_service_server::ThreadServiceServer,
};
use tokio::net::TcpListener;

use crate::{
    auth::Authenticator,
    clock::{Clock, SystemClock},
    config::Config,
    delivery::Hub,
    services::{AuditApi, ConsultApi, Context, DirectoryApi, FamilyApi, ThreadApi},
    store::{
        Store, StoreError, audit::Trail, consults::Consults, directory::Directory,
        families::Families, redb::RedbStore, threads::Threads,
    },
};

/// How long one connection may live before the server closes it gracefully.
pub const MAX_CONNECTION_AGE: std::time::Duration = std::time::Duration::from_secs(3600);

/// Why the server stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// The store could not be opened, seeded or flushed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The gRPC transport failed.
    #[error("transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The reflection service could not be built.
    #[error("reflection: {0}")]
    Reflection(String),
    /// The audit key could not be read or made.
    #[error(transparent)]
    AuditKey(#[from] audit_key::AuditKeyError),
    /// The admin listener could not be bound.
    #[error("cannot listen on {addr} for /metrics and /health: {reason}")]
    Admin {
        /// The configured address.
        addr: std::net::SocketAddr,
        /// Why.
        reason: std::io::Error,
    },
}

/// Aborts a background task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Opens the configured store: the embedded one in the data directory, or
/// the PostgreSQL database (its migrations applied).
///
/// # Errors
/// [`StoreError`] when the directory cannot be created or opened, or the
/// database cannot be reached or migrated.
pub async fn open_store(config: &Config) -> Result<Arc<dyn Store>, StoreError> {
    create_durably(&config.data_dir)?;
    if let config::StoreChoice::Postgres(postgres) = &config.store {
        return Ok(Arc::new(
            store::postgres::PostgresStore::connect(postgres).await?,
        ));
    }
    // A store of an earlier samenop (sled: files `conf` and `db`) is not
    // read by this one; starting an empty store beside it would look like
    // lost data.
    let dir = &config.data_dir;
    if !RedbStore::file(dir).exists() && dir.join("conf").is_file() && dir.join("db").is_file() {
        return Err(StoreError::Backend(format!(
            "{} holds the sled store of an earlier samenop, which this version does not read \
             (it stores in redb): start with an empty data directory",
            dir.display()
        )));
    }
    Ok(Arc::new(RedbStore::open_tuned(
        dir,
        true,
        config.checkpoint_bytes,
    )?))
}

/// Creates `dir` and its missing parents so that they survive a power cut:
/// each directory created has its parent `fsync`ed.
///
/// # Errors
/// [`StoreError::Backend`] when a directory cannot be created or synced.
pub fn create_durably(dir: &std::path::Path) -> Result<(), StoreError> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_durably(parent)?;
    }
    std::fs::create_dir(dir)
        .or_else(|e| if dir.is_dir() { Ok(()) } else { Err(e) })
        .map_err(|e| StoreError::Backend(format!("cannot create {}: {e}", dir.display())))?;
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    store::redb::sync_dir(parent)
}

/// Runs the server with the system clock: opens the store, registers the
/// configured bootstrap admins, and serves on `listener` until `shutdown`
/// completes; then drains in-flight calls for the grace period and flushes
/// the store.
///
/// # Errors
/// [`RunError`] when the store or the transport fails.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    let store = open_store(&config).await?;
    run_with(config, store, Arc::new(SystemClock), listener, shutdown).await
}

/// Like [`run`], on a given store and clock; binds the configured admin
/// listener.
///
/// # Errors
/// [`RunError`] when the store or the transport fails, or the admin
/// listener cannot be bound.
pub async fn run_with(
    config: Config,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    let admin = match config.admin_listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|reason| RunError::Admin { addr, reason })?,
        ),
        None => None,
    };
    serve(config, store, clock, listener, admin, shutdown).await
}

/// Like [`run_with`], with the admin listener (`/metrics`, `/health`)
/// already bound, or none.
///
/// # Errors
/// [`RunError`] when the store or the transport fails.
pub async fn serve(
    config: Config,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    listener: TcpListener,
    admin: Option<TcpListener>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    if store::audit_index::upgrade(&store).await? {
        tracing::info!("store upgraded: audit trail indexed by family, consult and professional");
    }
    let directory = Directory::new(store.clone());
    bootstrap::register_admins(
        &directory,
        &config.organisations,
        clock::now_ms(clock.as_ref()),
    )
    .await?;
    let audit_key = Arc::new(audit_key::AuditKey::load_or_create(&config.audit_key)?);
    let ctx = Context {
        auth: Authenticator::new(&config.organisations, directory.clone()),
        directory,
        families: Families::new(store.clone()),
        consults: Consults::new(store.clone()),
        threads: Threads::new(store.clone()),
        attachments: store::attachments::Attachments::new(store.clone()),
        hub: Hub::new(),
        trail: Trail::new(store.clone()),
        audit_key,
        clock,
        store: store.clone(),
    };
    let hub = ctx.hub.clone();
    // What other replicas append reaches the subscriptions here.
    let follower = store.others_appended().map(|appended| {
        AbortOnDrop(tokio::spawn(delivery::follow_others(
            store.clone(),
            hub.clone(),
            appended,
        )))
    });
    // Ends with this function, however it returns.
    let sweeper = AbortOnDrop(tokio::spawn(sweep::run(ctx.clone(), config.sweep_interval)));
    let purger = AbortOnDrop(tokio::spawn(retention::run(ctx.clone(), config.retention)));
    let checkpointer = AbortOnDrop(tokio::spawn(sweep::checkpoints(
        ctx.clone(),
        config.audit_checkpoint_interval,
    )));
    let mut metrics = metrics::Metrics::new(
        &[
            samenop_proto::FILE_DESCRIPTOR_SET,
            tonic_health::pb::FILE_DESCRIPTOR_SET,
        ],
        hub.live_subscriptions(),
    );
    store.register_metrics(metrics.registry());
    hub.register_metrics(metrics.registry());
    let metrics = Arc::new(metrics);
    let serving = metrics::Serving::default();
    serving.set(true);
    let _admin = admin.map(|listener| {
        AbortOnDrop(tokio::spawn(metrics::serve_admin(
            listener,
            metrics.clone(),
            ctx.clone(),
            serving.clone(),
        )))
    });
    let max = config.limits.max_message_bytes;
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<DirectoryServiceServer<DirectoryApi>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(samenop_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| RunError::Reflection(e.to_string()))?;

    let router = tonic::transport::Server::builder()
        // Connections are closed gracefully after an hour, so every client
        // re-handshakes (certificate and CRL checked again) at least hourly.
        .max_connection_age(MAX_CONNECTION_AGE)
        .trace_fn(layers::request_span)
        // Outermost: every call is counted and timed as the caller sees it.
        .layer(metrics.layer())
        // The audit layer sees each answer as it leaves (after the status
        // fix below), and commits the call's event before it does.
        .layer(audit::AuditLayer::new(store.clone(), ctx.clock.clone()))
        .layer(layers::StatusFixLayer::new(max))
        .add_service(health_service)
        .add_service(reflection)
        .add_service(
            DirectoryServiceServer::new(DirectoryApi::new(ctx.clone()))
                .max_decoding_message_size(max),
        )
        .add_service(
            FamilyServiceServer::new(FamilyApi::new(ctx.clone())).max_decoding_message_size(max),
        )
        .add_service(
            ConsultServiceServer::new(ConsultApi::new(ctx.clone())).max_decoding_message_size(max),
        )
        .add_service(
            ThreadServiceServer::new(ThreadApi::new(ctx.clone(), &config.limits))
                .max_decoding_message_size(max),
        )
        .add_service(
            AuditServiceServer::new(AuditApi::new(ctx.clone())).max_decoding_message_size(max),
        );

    let local = listener.local_addr().ok();
    let incoming = tls::incoming(listener, config.tls.clone(), config.handshake_timeout);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let serve = router.serve_with_incoming_shutdown(incoming, async {
        let _ = stop_rx.await;
    });
    tokio::pin!(serve);
    tracing::info!(listen = ?local, "serving samenop.v1 over mutual TLS");

    tokio::select! {
        result = &mut serve => result?,
        () = shutdown => {
            tracing::info!(grace = ?config.shutdown_grace, "shutting down: draining in-flight calls");
            serving.set(false);
            health
                .set_service_status("", tonic_health::ServingStatus::NotServing)
                .await;
            health.set_not_serving::<DirectoryServiceServer<DirectoryApi>>().await;
            // Subscriptions never end by themselves: end them, so the
            // drain below waits only for calls that do.
            hub.close();
            let _ = stop_tx.send(());
            match tokio::time::timeout(config.shutdown_grace, &mut serve).await {
                Ok(result) => result?,
                // Calls still running go on in their connection tasks until
                // the runtime stops; every commit flushes itself, so what
                // they acknowledge is durable.
                Err(_) => tracing::warn!("grace period over: no longer waiting for remaining calls"),
            }
        }
    }
    drop(sweeper);
    drop(purger);
    drop(checkpointer);
    drop(follower);
    // A last checkpoint, so a restart finds the trail's end signed.
    if let Err(err) = ctx
        .trail
        .checkpoint(&ctx.audit_key, clock::now_ms(ctx.clock.as_ref()))
        .await
    {
        tracing::warn!(error = %err, "no audit checkpoint at shutdown");
    }
    store.flush().await?;
    tracing::info!("stopped; store flushed");
    Ok(())
}
