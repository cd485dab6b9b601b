//! OpenTelemetry: the tracer provider exporting over OTLP (HTTP/protobuf or gRPC, as the
//! standard `OTEL_*` variables say), export failures logged at a bounded rate, and W3C trace
//! context in and out of gRPC metadata.

use opentelemetry::{
    Context,
    propagation::{Extractor, Injector},
};
use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use opentelemetry_otlp::WithHttpConfig as _;
use opentelemetry_sdk::{
    Resource,
    error::{OTelSdkError, OTelSdkResult},
    trace::{SdkTracerProvider, SpanData, SpanExporter},
};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The W3C trace context key, in gRPC metadata and in the per-message `trace_context` maps.
pub const TRACEPARENT: &str = "traceparent";

/// Whether spans are exported by this process: per-message span work is skipped when not.
static EXPORTING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether this process exports spans; hot paths skip building spans when it does not.
pub fn exporting() -> bool {
    EXPORTING.load(std::sync::atomic::Ordering::Relaxed)
}

pub(crate) fn set_exporting() {
    EXPORTING.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// The provider, kept so its buffered spans can be flushed at exit.
pub struct Telemetry {
    pub(crate) provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are being exported.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Sends what is buffered and stops the exporter, off the async threads (the SDK blocks
    /// while the runtime keeps driving the exporter's gRPC channel).
    pub async fn shutdown(self) {
        let _ = tokio::task::spawn_blocking(move || self.shutdown_blocking()).await;
    }

    fn shutdown_blocking(self) {
        if let Some(provider) = self.provider
            && let Err(error) = provider.shutdown()
        {
            tracing::warn!(%error, "OpenTelemetry spans may have been lost at shutdown");
        }
    }
}

/// An endpoint is set and exporting is not switched off (`OTEL_SDK_DISABLED=true`,
/// `OTEL_TRACES_EXPORTER=none`).
pub(crate) fn exporter_configured() -> bool {
    let var = |name: &str| {
        std::env::var(name)
            .map(|v| v.trim().to_owned())
            .unwrap_or_default()
    };
    let disabled = var("OTEL_SDK_DISABLED").eq_ignore_ascii_case("true");
    let off = var("OTEL_TRACES_EXPORTER") == "none";
    let endpoint = !var("OTEL_EXPORTER_OTLP_ENDPOINT").is_empty()
        || !var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_empty();
    !disabled && !off && endpoint
}

/// The OTLP transports this service speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Protocol {
    Grpc,
    HttpProtobuf,
}

/// `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`, else `OTEL_EXPORTER_OTLP_PROTOCOL`, else the
/// specification's default, `http/protobuf`.
fn protocol() -> Result<Protocol, String> {
    let chosen = [
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ]
    .into_iter()
    .find_map(|name| std::env::var(name).ok().filter(|v| !v.trim().is_empty()));
    match chosen.as_deref().map(str::trim) {
        None | Some("http/protobuf") => Ok(Protocol::HttpProtobuf),
        Some("grpc") => Ok(Protocol::Grpc),
        Some(other) => Err(format!(
            "OTEL_EXPORTER_OTLP_PROTOCOL {other:?} is not supported (grpc or http/protobuf)"
        )),
    }
}

/// The provider: batch export over OTLP, the resource from `OTEL_SERVICE_NAME` and
/// `OTEL_RESOURCE_ATTRIBUTES` (the crate's name when unset), the sampler from
/// `OTEL_TRACES_SAMPLER`/`_ARG`.
pub(crate) fn provider(service: &'static str) -> Result<SdkTracerProvider, String> {
    let builder = opentelemetry_otlp::SpanExporter::builder();
    let exporter = match protocol()? {
        Protocol::Grpc => builder.with_tonic().build(),
        Protocol::HttpProtobuf => builder
            .with_http()
            .with_http_client(OnRuntime::new())
            .build(),
    }
    .map_err(|e| e.to_string())?;
    let mut resource = Resource::builder();
    if std::env::var("OTEL_SERVICE_NAME").is_err() {
        resource = resource.with_service_name(service);
    }
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(Logged::new(exporter))
        .with_resource(resource.build())
        .build())
}

/// How long one export over HTTP may take.
const HTTP_EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// The OTLP/HTTP client: hyper's, with its requests run on the service's tokio runtime (the
/// SDK's batch processor calls the exporter from a thread of its own, outside the runtime,
/// where hyper's timers and sockets cannot run).
#[derive(Debug)]
struct OnRuntime {
    client: std::sync::Arc<
        opentelemetry_http::hyper::HyperClient<hyper_util::client::legacy::connect::HttpConnector>,
    >,
    runtime: tokio::runtime::Handle,
}

impl OnRuntime {
    /// Call inside the runtime.
    fn new() -> Self {
        Self {
            client: std::sync::Arc::new(
                opentelemetry_http::hyper::HyperClient::with_default_connector(
                    HTTP_EXPORT_TIMEOUT,
                    None,
                ),
            ),
            runtime: tokio::runtime::Handle::current(),
        }
    }
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for OnRuntime {
    async fn send_bytes(
        &self,
        request: axum::http::Request<bytes::Bytes>,
    ) -> Result<axum::http::Response<bytes::Bytes>, opentelemetry_http::HttpError> {
        let client = self.client.clone();
        self.runtime
            .spawn(async move { client.send_bytes(request).await })
            .await?
    }
}

/// How often a failing export is logged at most: the first failure at once, then a summary of
/// those since.
const FAILURE_LOG_EVERY: Duration = Duration::from_secs(60);

/// An exporter whose failures are logged (a collector that is down or refuses spans would
/// otherwise go unnoticed), at most once per [`FAILURE_LOG_EVERY`].
#[derive(Debug)]
struct Logged<E> {
    inner: E,
    failures: Mutex<Failures>,
}

#[derive(Debug, Default)]
struct Failures {
    logged_at: Option<Instant>,
    since: u64,
}

impl<E> Logged<E> {
    fn new(inner: E) -> Self {
        Self {
            inner,
            failures: Mutex::default(),
        }
    }

    fn failed(&self, error: &OTelSdkError) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        failures.since += 1;
        if failures
            .logged_at
            .is_none_or(|at| at.elapsed() >= FAILURE_LOG_EVERY)
        {
            tracing::warn!(
                %error,
                failures = failures.since,
                "OpenTelemetry spans could not be exported (failures since the last report)"
            );
            failures.logged_at = Some(Instant::now());
            failures.since = 0;
        }
    }
}

impl<E: SpanExporter> SpanExporter for Logged<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let result = self.inner.export(batch).await;
        if let Err(error) = &result {
            self.failed(error);
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// Makes `span` a child of the W3C context in `headers` (a gRPC request's metadata). Call it
/// before the span is first entered: entering starts the span, and its parent is fixed then.
pub fn continue_from(span: &tracing::Span, headers: &tonic::metadata::MetadataMap) {
    let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(&Metadata(headers)));
    let _ = span.set_parent(parent);
}

/// Writes the current span's W3C context into outgoing gRPC metadata.
pub fn inject_current(headers: &mut tonic::metadata::MetadataMap) {
    let context = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&context, &mut MetadataMut(headers))
    });
}

/// The current span's context as a `traceparent` value, if it is being traced.
pub fn current_traceparent() -> Option<String> {
    let context = tracing::Span::current().context();
    let mut carrier = std::collections::HashMap::new();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&context, &mut carrier));
    carrier.remove(TRACEPARENT)
}

/// Makes `span` a child of a `traceparent` value; before the span is first entered.
pub fn continue_traceparent(span: &tracing::Span, traceparent: &str) {
    let carrier: std::collections::HashMap<String, String> =
        [(TRACEPARENT.to_owned(), traceparent.to_owned())].into();
    let parent: Context = opentelemetry::global::get_text_map_propagator(|p| p.extract(&carrier));
    let _ = span.set_parent(parent);
}

struct Metadata<'a>(&'a tonic::metadata::MetadataMap);

impl Extractor for Metadata<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0
            .keys()
            .filter_map(|k| match k {
                tonic::metadata::KeyRef::Ascii(k) => Some(k.as_str()),
                tonic::metadata::KeyRef::Binary(_) => None,
            })
            .collect()
    }
}

struct MetadataMut<'a>(&'a mut tonic::metadata::MetadataMap);

impl Injector for MetadataMut<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
            tonic::metadata::MetadataValue::try_from(value),
        ) {
            self.0.insert(key, value);
        }
    }
}
