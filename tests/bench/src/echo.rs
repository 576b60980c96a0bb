//! The bare stack: a tonic server that only answers, behind the very TLS
//! configuration and accept loop of samenop-server (`dev` mode's: TLS 1.3,
//! ring, mutual TLS with the CRL), on the same runtime, so that what the
//! two differ in is samenop's own work.

use std::{
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use tokio_stream::{StreamExt, wrappers::BroadcastStream};
use tonic::{Request, Response, Status};

/// The generated echo service.
#[allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
pub(crate) mod pb {
    tonic::include_proto!("samenop.bench.v1");
}

use pb::echo_service_server::{EchoService, EchoServiceServer};

/// The service: echo, and a broadcast every subscriber receives.
struct Echo {
    /// The broadcast channel of subscriptions.
    hub: tokio::sync::broadcast::Sender<pb::SubscribeResponse>,
    /// The last broadcast's number.
    sequence: AtomicU64,
}

#[tonic::async_trait]
impl EchoService for Echo {
    async fn echo(
        &self,
        request: Request<pb::EchoRequest>,
    ) -> Result<Response<pb::EchoResponse>, Status> {
        Ok(Response::new(pb::EchoResponse {
            payload: request.into_inner().payload,
        }))
    }

    async fn broadcast(
        &self,
        request: Request<pb::BroadcastRequest>,
    ) -> Result<Response<pb::BroadcastResponse>, Status> {
        let sequence = self.sequence.fetch_add(1, Ordering::SeqCst) + 1;
        let _ = self.hub.send(pb::SubscribeResponse {
            sequence,
            payload: request.into_inner().payload,
        });
        Ok(Response::new(pb::BroadcastResponse { sequence }))
    }

    type SubscribeStream = std::pin::Pin<
        Box<dyn tokio_stream::Stream<Item = Result<pb::SubscribeResponse, Status>> + Send>,
    >;

    async fn subscribe(
        &self,
        _request: Request<pb::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let stream = BroadcastStream::new(self.hub.subscribe())
            .map(|item| item.map_err(|_| Status::data_loss("the subscriber fell behind")));
        Ok(Response::new(Box::pin(stream)))
    }
}

/// Serves the echo service on a free loopback port with the PKI in `pki`,
/// printing its address on the first line of standard output.
pub(crate) async fn serve(pki: PathBuf) -> Result<(), String> {
    let pki = samenop_certs_dev::PkiPaths::new(pki);
    let unused = tempfile::tempdir().map_err(|e| e.to_string())?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let config =
        samenop_server::dev::config(&pki, unused.path(), addr).map_err(|e| e.to_string())?;
    println!("{addr}");
    let incoming =
        samenop_server::tls::incoming(listener, config.tls.clone(), config.handshake_timeout);
    let (hub, _) = tokio::sync::broadcast::channel(65_536);
    let echo = Arc::new(Echo {
        hub,
        sequence: AtomicU64::new(0),
    });
    tonic::transport::Server::builder()
        .max_connection_age(samenop_server::MAX_CONNECTION_AGE)
        .add_service(EchoServiceServer::from_arc(echo))
        .serve_with_incoming(incoming)
        .await
        .map_err(|e| e.to_string())
}
