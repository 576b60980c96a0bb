//! Transport-level pieces around every call: the tracing span, and the one
//! status that tonic reports differently from the protocol.

use std::task::{Context, Poll};

use http::{HeaderValue, Request, Response};
use tower::{Layer, Service};

/// The span of one call: method, request id (the caller's `x-request-id` when
/// it is a short token; else the audit layer records the one it makes), and
/// the organisation, professional and certificate, which authentication fills
/// in. Never family data.
pub fn request_span(request: &Request<()>) -> tracing::Span {
    let span = tracing::info_span!(
        "call",
        method = %request.uri().path(),
        request_id = tracing::field::Empty,
        org = tracing::field::Empty,
        professional = tracing::field::Empty,
        cert = tracing::field::Empty,
    );
    if let Some(id) = crate::audit::caller_request_id(request) {
        span.record("request_id", id);
    }
    span
}

/// Maps tonic's answer to an oversized request message (OUT_OF_RANGE, "decoded
/// message length too large") to RESOURCE_EXHAUSTED, the protocol's code for
/// size limits, with a message that says so.
#[derive(Debug, Clone)]
pub struct StatusFixLayer {
    /// The grpc-message sent instead (percent-encoded), naming the limit.
    message: HeaderValue,
}

impl StatusFixLayer {
    /// The layer for a server whose message limit is `max_bytes`.
    pub fn new(max_bytes: usize) -> Self {
        let text = format!("request message is too large: the limit is {max_bytes} bytes");
        let encoded = text
            .replace('%', "%25")
            .replace(' ', "%20")
            .replace(':', "%3A");
        StatusFixLayer {
            message: HeaderValue::from_str(&encoded).unwrap_or_else(|_| {
                HeaderValue::from_static("request%20message%20is%20too%20large")
            }),
        }
    }
}

impl<S> Layer<S> for StatusFixLayer {
    type Service = StatusFix<S>;

    fn layer(&self, inner: S) -> Self::Service {
        StatusFix {
            inner,
            message: self.message.clone(),
        }
    }
}

/// The service of [`StatusFixLayer`].
#[derive(Debug, Clone)]
pub struct StatusFix<S> {
    /// The wrapped service.
    inner: S,
    /// The replacement grpc-message.
    message: HeaderValue,
}

const OUT_OF_RANGE: &str = "11";
const RESOURCE_EXHAUSTED: &str = "8";
const TOO_LARGE_PREFIX: &str = "Error, decoded message length too large";

impl<S, B, ResBody> Service<Request<B>> for StatusFix<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let future = self.inner.call(request);
        let message = self.message.clone();
        Box::pin(async move {
            let mut response = future.await?;
            let headers = response.headers_mut();
            let oversized = headers
                .get("grpc-status")
                .is_some_and(|v| v == OUT_OF_RANGE)
                && headers
                    .get("grpc-message")
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|m| {
                        m.starts_with(TOO_LARGE_PREFIX) || m.starts_with("Error,%20decoded")
                    });
            if oversized {
                headers.insert("grpc-status", HeaderValue::from_static(RESOURCE_EXHAUSTED));
                headers.insert("grpc-message", message);
            }
            Ok(response)
        })
    }
}
