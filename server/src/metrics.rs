//! The server measures itself: Prometheus metrics with `prometheus-client`,
//! served in the OpenMetrics text format as `/metrics` on the admin
//! listener (plain HTTP, loopback by default), beside `/health` for load
//! balancers.
//!
//! The call metrics use the names the gRPC ecosystem's dashboards expect
//! (those of go-grpc-prometheus and its successors):
//! `grpc_server_started_total`, `grpc_server_handled_total` and the
//! `grpc_server_handling_seconds` histogram, labelled by service, method,
//! call type and (when handled) code. The store adds its commit latency,
//! how many batches each commit carried and how many syncs it made;
//! the hub its live subscriptions; and at each scrape the consult requests
//! waiting and past their respond-by time per expertise, and the audit
//! chain's length. No label ever holds a family, professional, consult or
//! device id, nor anything else a caller chose: an unknown method path is
//! counted as `unknown`.

use std::{
    collections::HashMap,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
    time::Instant,
};

use http::HeaderMap;
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};
use tonic::Code;
use tower::{Layer, Service};

use crate::services::Context as Services;

/// A method's labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    /// `samenop.v1.ConsultService`, …
    grpc_service: &'static str,
    /// `OpenConsult`, …
    grpc_method: &'static str,
    /// `unary`, `server_stream`, `client_stream` or `bidi_stream`.
    grpc_type: &'static str,
}

/// A handled call's labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HandledLabels {
    /// See [`MethodLabels`].
    grpc_service: &'static str,
    /// See [`MethodLabels`].
    grpc_method: &'static str,
    /// See [`MethodLabels`].
    grpc_type: &'static str,
    /// `OK`, `PERMISSION_DENIED`, …
    grpc_code: &'static str,
}

/// An expertise, as a label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ExpertiseLabels {
    /// `CHILD`, `ADULT`, or a violence type (`CHILD_ABUSE`, …).
    expertise: String,
}

/// The gRPC call metrics.
#[derive(Clone)]
struct Calls {
    started: Family<MethodLabels, Counter>,
    handled: Family<HandledLabels, Counter>,
    handling: Family<MethodLabels, Histogram>,
    /// Known method paths and their labels.
    methods: Arc<HashMap<String, MethodLabels>>,
}

/// The labels of a path no service serves.
const UNKNOWN: MethodLabels = MethodLabels {
    grpc_service: "unknown",
    grpc_method: "unknown",
    grpc_type: "unknown",
};

/// Every method of the file descriptor sets `sets`, by path.
fn methods(sets: &[&[u8]]) -> HashMap<String, MethodLabels> {
    let mut methods = HashMap::new();
    for raw in sets {
        let Ok(set) = <prost_types::FileDescriptorSet as prost::Message>::decode(*raw) else {
            continue;
        };
        for file in set.file {
            for service in &file.service {
                let full = format!("{}.{}", file.package(), service.name());
                // Labels live as long as the server: leaked once, at start.
                let full: &'static str = Box::leak(full.into_boxed_str());
                for method in &service.method {
                    let name: &'static str = Box::leak(method.name().to_owned().into_boxed_str());
                    let kind = match (method.client_streaming(), method.server_streaming()) {
                        (false, false) => "unary",
                        (false, true) => "server_stream",
                        (true, false) => "client_stream",
                        (true, true) => "bidi_stream",
                    };
                    methods.insert(
                        format!("/{full}/{name}"),
                        MethodLabels {
                            grpc_service: full,
                            grpc_method: name,
                            grpc_type: kind,
                        },
                    );
                }
            }
        }
    }
    methods
}

/// The scrape-time gauges.
#[derive(Clone, Default)]
struct Scraped {
    waiting: Family<ExpertiseLabels, Gauge>,
    past_due: Family<ExpertiseLabels, Gauge>,
    audit_chain: Gauge,
}

/// The registry and what fills it.
pub struct Metrics {
    /// Every metric.
    registry: Registry,
    /// The call metrics (the layer's).
    calls: Calls,
    /// Set at scrape time.
    scraped: Scraped,
    /// One scrape at a time: each clears and refills the scraped gauges.
    scraping: tokio::sync::Mutex<()>,
}

/// Consult requests looked at per scrape; beyond, the gauges count these.
const SCRAPE_REQUESTS: usize = 10_000;

impl Metrics {
    /// The metrics of a server serving the services of the descriptor sets
    /// `sets`, with the hub's live-subscription gauge `subscriptions`.
    pub fn new(sets: &[&[u8]], subscriptions: Gauge) -> Metrics {
        let mut registry = Registry::default();
        let calls = Calls {
            started: Family::default(),
            handled: Family::default(),
            handling: Family::new_with_constructor(|| {
                // 50 µs to about 100 s.
                Histogram::new(exponential_buckets(0.000_05, 2.0, 22))
            }),
            methods: Arc::new(methods(sets)),
        };
        registry.register(
            "grpc_server_started",
            "RPCs started on the server",
            calls.started.clone(),
        );
        registry.register(
            "grpc_server_handled",
            "RPCs completed on the server, whatever their outcome",
            calls.handled.clone(),
        );
        registry.register(
            "grpc_server_handling_seconds",
            "Response latency of RPCs handled by the server (to the end of the stream for streams)",
            calls.handling.clone(),
        );
        registry.register(
            "samenop_subscriptions",
            "Device subscriptions (Subscribe streams) open now",
            subscriptions,
        );
        let scraped = Scraped::default();
        registry.register(
            "samenop_consult_requests_waiting",
            "Consult requests not yet accepted, declined or expired, by expertise",
            scraped.waiting.clone(),
        );
        registry.register(
            "samenop_consult_requests_past_respond_by",
            "Consult requests still waiting after their respond-by time (the sweep expires them), by expertise",
            scraped.past_due.clone(),
        );
        registry.register(
            "samenop_audit_chain_length",
            "Events in the audit chain (its last sequence number)",
            scraped.audit_chain.clone(),
        );
        Metrics {
            registry,
            calls,
            scraped,
            scraping: tokio::sync::Mutex::new(()),
        }
    }

    /// The registry, for parts that register their own metrics (the store).
    pub fn registry(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// The layer counting and timing every call.
    pub fn layer(&self) -> MetricsLayer {
        MetricsLayer {
            calls: self.calls.clone(),
        }
    }

    /// The text of `/metrics` now.
    async fn scrape(&self, services: &Services) -> String {
        let _one = self.scraping.lock().await;
        self.scraped.waiting.clear();
        self.scraped.past_due.clear();
        // Every expertise shows, at 0 when nothing waits, so a dashboard
        // tells "none waiting" from "not measured".
        let every = [
            crate::domain::Expertise::Child,
            crate::domain::Expertise::Adult,
        ]
        .into_iter()
        .chain(
            (1..64)
                .filter_map(|n| samenop_proto::v1::ViolenceType::try_from(n).ok())
                .map(crate::domain::Expertise::Violence),
        );
        for expertise in every {
            let labels = ExpertiseLabels {
                expertise: crate::dev::expertise_code(expertise),
            };
            drop(self.scraped.waiting.get_or_create(&labels));
            drop(self.scraped.past_due.get_or_create(&labels));
        }
        match services
            .consults
            .waiting(services.now(), SCRAPE_REQUESTS)
            .await
        {
            Ok(waiting) => {
                for (expertise, past_due) in waiting {
                    let labels = ExpertiseLabels {
                        expertise: crate::dev::expertise_code(expertise),
                    };
                    self.scraped.waiting.get_or_create(&labels).inc();
                    if past_due {
                        self.scraped.past_due.get_or_create(&labels).inc();
                    }
                }
            }
            Err(err) => tracing::warn!(error = %err, "metrics: cannot count the waiting requests"),
        }
        match services.trail.head().await {
            Ok(head) => {
                self.scraped
                    .audit_chain
                    .set(i64::try_from(head.sequence).unwrap_or(i64::MAX));
            }
            Err(err) => tracing::warn!(error = %err, "metrics: cannot read the audit head"),
        }
        let mut text = String::new();
        if let Err(err) = encode(&mut text, &self.registry) {
            tracing::warn!(error = %err, "metrics: cannot encode");
        }
        text
    }
}

/// The protocol's name of `code`.
fn code_label(code: Code) -> &'static str {
    crate::audit::code_name(code)
}

/// The code a status header map carries, if it carries one.
fn code_in(headers: &HeaderMap) -> Option<Code> {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map(Code::from_i32)
}

/// A call being counted: recorded once, when its status is known, or as
/// CANCELLED when it is dropped unfinished (the caller went away before
/// the answer or before the end of its stream).
struct Pending {
    calls: Calls,
    labels: MethodLabels,
    started: Instant,
    finished: bool,
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.finish(Code::Cancelled);
    }
}

impl Pending {
    fn finish(&mut self, code: Code) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        let MethodLabels {
            grpc_service,
            grpc_method,
            grpc_type,
        } = self.labels.clone();
        self.calls
            .handled
            .get_or_create(&HandledLabels {
                grpc_service,
                grpc_method,
                grpc_type,
                grpc_code: code_label(code),
            })
            .inc();
        self.calls
            .handling
            .get_or_create(&self.labels)
            .observe(self.started.elapsed().as_secs_f64());
    }
}

/// The layer of [`Metrics::layer`].
#[derive(Clone)]
pub struct MetricsLayer {
    calls: Calls,
}

impl<S> Layer<S> for MetricsLayer {
    type Service = Measured<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Measured {
            inner,
            calls: self.calls.clone(),
        }
    }
}

/// The service of [`MetricsLayer`].
#[derive(Clone)]
pub struct Measured<S> {
    inner: S,
    calls: Calls,
}

impl<S, B> Service<http::Request<B>> for Measured<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future =
        Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let labels = self
            .calls
            .methods
            .get(request.uri().path())
            .cloned()
            .unwrap_or(UNKNOWN);
        self.calls.started.get_or_create(&labels).inc();
        let mut pending = Pending {
            calls: self.calls.clone(),
            labels,
            started: Instant::now(),
            finished: false,
        };
        let future = self.inner.call(request);
        Box::pin(async move {
            let response = future.await?;
            // An error answered at once is in the headers (trailers-only);
            // otherwise the code comes with the trailers at the end.
            if let Some(code) = code_in(response.headers()) {
                pending.finish(code);
                return Ok(response);
            }
            Ok(response.map(|body| {
                tonic::body::Body::new(MeasuredBody {
                    inner: body,
                    pending: Some(pending),
                })
            }))
        })
    }
}

/// An answer's body, recording the call when its trailers pass (or, by
/// [`Pending`]'s drop, when it is dropped before: CANCELLED).
struct MeasuredBody {
    inner: tonic::body::Body,
    pending: Option<Pending>,
}

impl http_body::Body for MeasuredBody {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(code) = frame.trailers_ref().and_then(code_in)
                    && let Some(mut pending) = self.pending.take()
                {
                    pending.finish(code);
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(mut pending) = self.pending.take() {
                    pending.finish(Code::Internal);
                }
            }
            Poll::Ready(None) => {
                // Ended without trailers: not a complete gRPC answer.
                if let Some(mut pending) = self.pending.take() {
                    pending.finish(Code::Unknown);
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Whether the server serves (false once it is shutting down), for
/// `/health`.
#[derive(Clone, Default)]
pub struct Serving(Arc<AtomicBool>);

impl Serving {
    /// Sets whether it serves.
    pub fn set(&self, serving: bool) {
        self.0.store(serving, Ordering::SeqCst);
    }

    fn get(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Serves `/metrics` and `/health` over plain HTTP on `listener` until
/// the task is dropped.
pub async fn serve_admin(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    services: Services,
    serving: Serving,
) {
    use axum::{http::StatusCode, response::IntoResponse, routing::get};
    let router = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let (metrics, services) = (metrics.clone(), services.clone());
                async move {
                    (
                        [(
                            http::header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        metrics.scrape(&services).await,
                    )
                }
            }),
        )
        .route(
            "/health",
            get(move || {
                let serving = serving.get();
                async move {
                    if serving {
                        (StatusCode::OK, "serving\n").into_response()
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response()
                    }
                }
            }),
        );
    let local: Option<SocketAddr> = listener.local_addr().ok();
    tracing::info!(listen = ?local, "serving /metrics and /health over HTTP");
    if let Err(err) = axum::serve(listener, router).await {
        tracing::warn!(error = %err, "the admin listener stopped");
    }
}
