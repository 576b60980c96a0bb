//! Forwarding, and the bearer token.
//!
//! [`Forward`] passes every `samenop.v1` call except `ThreadService` on to
//! the server as it came: by its path, its metadata (the acting
//! professional) and its body, frames and trailers untouched, over the
//! organisation's mutual-TLS connection. It is an HTTP/2 relay, not a
//! method table, so a method added to `samenop.v1` is forwarded without a
//! change here, unary or streaming alike, and the server sees the very call
//! a system would have made itself: its answer, its audit event and its
//! refusals are the server's.
//!
//! [`TokenLayer`] guards a TCP listener: each call must carry
//! `authorization: Bearer <token>`. The header stops at the agent.

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use tonic::{Status, body::Body, transport::Channel};
use tower::{Service, ServiceExt};

/// The package whose services are forwarded.
const FORWARDED: &str = "/samenop.v1.";
/// The service that is not: threads go through the agent's own calls.
const THREADS: &str = "/samenop.v1.ThreadService/";

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// A refusal as a gRPC response.
pub(crate) fn refusal(status: &Status) -> http::Response<Body> {
    status.clone().into_http()
}

/// The relay to the server.
#[derive(Clone)]
pub(crate) struct Forward {
    channel: Channel,
}

impl Forward {
    /// Forwards over `channel`, the organisation's connection.
    pub(crate) fn new(channel: Channel) -> Self {
        Forward { channel }
    }
}

impl<B> Service<http::Request<B>> for Forward
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let channel = self.channel.clone();
        Box::pin(async move { Ok(forward(channel, request).await) })
    }
}

async fn forward<B>(channel: Channel, request: http::Request<B>) -> http::Response<Body>
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let path = request.uri().path().to_owned();
    if path.starts_with(THREADS) {
        return refusal(&Status::unimplemented(format!(
            "{path}: threads go through samenop.agent.v1.AgentService, as the agent holds the keys \
             (SendMessage, SendAttachment, ReadThread, DownloadAttachment, Watch)"
        )));
    }
    if !path.starts_with(FORWARDED) {
        return refusal(&Status::unimplemented(format!(
            "{path}: the agent serves samenop.agent.v1 and forwards samenop.v1"
        )));
    }
    let (mut parts, body) = request.into_parts();
    // The token is for the agent; the server knows the organisation by its
    // certificate.
    parts.headers.remove(http::header::AUTHORIZATION);
    // The channel sets the server's scheme and authority.
    parts.uri = match http::Uri::builder()
        .path_and_query(parts.uri.path_and_query().map_or("/", |pq| pq.as_str()))
        .build()
    {
        Ok(uri) => uri,
        Err(_) => return refusal(&Status::invalid_argument("the call's path is not valid")),
    };
    let request = http::Request::from_parts(parts, Body::new(body));
    match channel.oneshot(request).await {
        Ok(response) => response,
        Err(err) => refusal(&Status::unavailable(format!(
            "the samenop server cannot be reached: {err}"
        ))),
    }
}

/// Checks the bearer token of every call.
#[derive(Clone)]
pub(crate) struct TokenLayer {
    /// SHA-256 of the token; compared digest to digest, so how long a
    /// comparison takes says nothing about the token.
    digest: Option<Arc<[u8]>>,
}

impl TokenLayer {
    /// Every call must present `token`; `None` lets every call through (a
    /// Unix socket, whose mode guards it).
    pub(crate) fn new(token: Option<&str>) -> Self {
        TokenLayer {
            digest: token.map(|t| Arc::from(sha256(t.as_bytes()).as_slice())),
        }
    }
}

fn sha256(bytes: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .to_vec()
}

impl<S> tower::Layer<S> for TokenLayer {
    type Service = TokenCheck<S>;

    fn layer(&self, inner: S) -> TokenCheck<S> {
        TokenCheck {
            inner,
            digest: self.digest.clone(),
        }
    }
}

/// The service behind [`TokenLayer`].
#[derive(Clone)]
pub(crate) struct TokenCheck<S> {
    inner: S,
    digest: Option<Arc<[u8]>>,
}

impl<S, B> Service<http::Request<B>> for TokenCheck<S>
where
    S: Service<http::Request<B>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if let Some(expected) = &self.digest {
            let given = request
                .headers()
                .get(http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "));
            let ok = given.is_some_and(|t| sha256(t.as_bytes()).as_slice() == &expected[..]);
            if !ok {
                let status = Status::unauthenticated(
                    "this agent needs `authorization: Bearer <token>` with the token of its token_file",
                );
                return Box::pin(async move { Ok(refusal(&status)) });
            }
        }
        let future = self.inner.call(request);
        Box::pin(future)
    }
}
